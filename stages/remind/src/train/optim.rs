//! Optimisers written out on tensors (Adamax for VQA, SGD with momentum and weight decay for
//! classification), so that their state is ours to checkpoint and the learning rate is set
//! explicitly per step: no framework scheduler objects (the per-class StepLR schedulers of
//! the reference compound on PyTorch > 1.3.1, which is what broke its results).

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

/// Which update rule, with its hyper-parameters (the learning rate is passed per step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimKind {
    Adamax {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    Sgd {
        momentum: f64,
        weight_decay: f64,
    },
}

impl OptimKind {
    /// Adamax with PyTorch's defaults.
    pub fn adamax() -> Self {
        OptimKind::Adamax {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The gradient `g` of parameter `p` with L2 weight decay added (PyTorch's `weight_decay`:
/// `g + wd * p`, applied before the moments).
fn with_weight_decay(g: &Tensor, p: &Tensor, weight_decay: f64) -> Tensor {
    if weight_decay != 0.0 {
        g + p * weight_decay
    } else {
        g.shallow_clone()
    }
}

/// An optimiser over the trainable variables of a VarStore.
pub struct Optimizer {
    kind: OptimKind,
    params: Vec<(String, Tensor)>,
    /// Per parameter: first moment / momentum buffer.
    m: Vec<Tensor>,
    /// Per parameter: Adamax's infinity norm (unused by SGD).
    u: Vec<Tensor>,
    step: i64,
}

impl Optimizer {
    pub fn new(vs: &VarStore, kind: OptimKind) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |params: &[(String, Tensor)]| -> Vec<Tensor> {
            params.iter().map(|(_, t)| t.zeros_like()).collect()
        };
        let (m, u) = (zeros(&params), zeros(&params));
        Self {
            kind,
            params,
            m,
            u,
            step: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Zeroes the gradients, back-propagates `loss` and steps with learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        self.zero_grad();
        loss.backward();
        self.step(lr);
    }

    /// Sets SGD's momentum for the next steps (one-cycle schedules vary it per step); a
    /// no-op for Adamax.
    pub fn set_momentum(&mut self, m: f64) {
        if let OptimKind::Sgd { momentum, .. } = &mut self.kind {
            *momentum = m;
        }
    }

    pub fn steps(&self) -> i64 {
        self.step
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let t = self.step as f64;
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            match self.kind {
                OptimKind::Adamax {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let g = with_weight_decay(&g, p, weight_decay);
                    let _ = self.m[i].g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                    let norm = (&self.u[i] * beta2).maximum(&(g.abs() + eps));
                    self.u[i].copy_(&norm);
                    let step_size = lr / (1.0 - beta1.powf(t));
                    let _ = p.g_sub_(&(&self.m[i] / &self.u[i] * step_size));
                }
                OptimKind::Sgd {
                    momentum,
                    weight_decay,
                } => {
                    let g = with_weight_decay(&g, p, weight_decay);
                    let buf = if momentum != 0.0 {
                        if self.step == 1 {
                            self.m[i].copy_(&g);
                        } else {
                            let _ = self.m[i].g_mul_scalar_(momentum).g_add_(&g);
                        }
                        self.m[i].shallow_clone()
                    } else {
                        g
                    };
                    let _ = p.g_sub_(&(buf * lr));
                }
            }
        }
    }

    /// Saves the optimiser state (moments and step count) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            named.push((format!("m.{name}"), self.m[i].shallow_clone()));
            named.push((format!("u.{name}"), self.u[i].shallow_clone()));
        }
        named.push(("step".into(), Tensor::from_slice(&[self.step])));
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&refs, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Restores state saved by [`Optimizer::save`] for the same parameters.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let p = path.display();
        let loaded = Tensor::read_safetensors(path)
            .with_context(|| format!("cannot read optimiser state {p}"))?;
        let find = |name: &str| -> Result<&Tensor> {
            loaded
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .with_context(|| {
                    format!("{p}: no tensor '{name}' (a checkpoint of another model?)")
                })
        };
        let _guard = tch::no_grad_guard();
        for (i, (name, param)) in self.params.iter().enumerate() {
            let (m, u) = (find(&format!("m.{name}"))?, find(&format!("u.{name}"))?);
            ensure!(
                m.size() == param.size(),
                "{p}: state of '{name}' has shape {:?}, the model {:?}",
                m.size(),
                param.size()
            );
            self.m[i].copy_(m);
            self.u[i].copy_(u);
        }
        self.step = find("step")?.int64_value(&[0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Device, Kind};

    /// Our Adamax matches the textbook update computed by hand for two steps.
    #[test]
    fn adamax_matches_the_update_rule() {
        let _rng = crate::testing::tch_rng_lock();
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = Optimizer::new(&vs, OptimKind::adamax());
        let (mut m, mut u) = ([0f64; 2], [0f64; 2]);
        let mut expected = [1f64; 2];
        for t in 1..=2 {
            opt.zero_grad();
            let loss = (&w * Tensor::from_slice(&[3.0f32, -2.0])).sum(Kind::Float) * (t as f64);
            loss.backward();
            opt.step(0.1);
            for j in 0..2 {
                let g = [3.0, -2.0][j] * t as f64;
                m[j] = 0.9 * m[j] + 0.1 * g;
                u[j] = f64::max(0.999 * u[j], g.abs() + 1e-8);
                expected[j] -= 0.1 / (1.0 - 0.9f64.powi(t)) * m[j] / u[j];
            }
        }
        let got = Vec::<f32>::try_from(&w).unwrap();
        for j in 0..2 {
            assert!(
                (got[j] as f64 - expected[j]).abs() < 1e-6,
                "{got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn state_round_trips_and_training_continues_identically() {
        let _rng = crate::testing::tch_rng_lock();
        tch::manual_seed(0);
        let dir = std::env::temp_dir().join(format!("remind-optim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
        let run = |resume: bool| -> Vec<f32> {
            tch::manual_seed(1);
            let vs = VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root(), 4, 1, Default::default());
            let mut opt = Optimizer::new(
                &vs,
                OptimKind::Sgd {
                    momentum: 0.9,
                    weight_decay: 1e-5,
                },
            );
            for step in 0..6 {
                if resume && step == 3 {
                    vs.save(dir.join("w.safetensors")).unwrap();
                    opt.save(&dir.join("o.safetensors")).unwrap();
                    let mut vs2 = VarStore::new(Device::Cpu);
                    let lin2 = nn::linear(vs2.root(), 4, 1, Default::default());
                    vs2.load(dir.join("w.safetensors")).unwrap();
                    let mut opt2 = Optimizer::new(
                        &vs2,
                        OptimKind::Sgd {
                            momentum: 0.9,
                            weight_decay: 1e-5,
                        },
                    );
                    opt2.load(&dir.join("o.safetensors")).unwrap();
                    for _ in 3..6 {
                        opt2.zero_grad();
                        lin2.forward(&x).square().mean(Kind::Float).backward();
                        opt2.step(0.05);
                    }
                    return Vec::<f32>::try_from(&lin2.ws.view([-1])).unwrap();
                }
                opt.zero_grad();
                lin.forward(&x).square().mean(Kind::Float).backward();
                opt.step(0.05);
            }
            Vec::<f32>::try_from(&lin.ws.view([-1])).unwrap()
        };
        assert_eq!(run(false), run(true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
