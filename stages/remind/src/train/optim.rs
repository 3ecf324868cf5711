//! Optimisers written out on tensors (Adamax for VQA, SGD with momentum and weight decay for
//! classification), so that their state is ours to checkpoint and the learning rate is set
//! explicitly per step: no framework scheduler objects (the per-class StepLR schedulers of
//! the reference compound on PyTorch > 1.3.1, which is what broke its results).
//!
//! On a GPU the same rules run as multi-tensor operations (csrc/optim.cpp, PyTorch's
//! `torch._foreach_*`): one kernel launch per operation for all parameters instead of about
//! six per parameter, which is what a host-bound streaming step pays for (BENCHMARKS.md, "On
//! a GPU"). The CPU keeps the per-tensor loop, whose float results every recorded CPU table
//! was made with.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
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

/// Adamax's step size at step `t` (from 1): `lr / (1 - beta1^t)`, the bias correction of
/// the first moment (Kingma & Ba 2015, Algorithm 2; PyTorch's `Adamax`). One definition
/// for the per-tensor and the multi-tensor step.
fn adamax_step_size(lr: f64, beta1: f64, t: f64) -> f64 {
    lr / (1.0 - beta1.powf(t))
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
    /// Step with multi-tensor operations ([`Optimizer::multi_tensor`]).
    multi_tensor: bool,
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
        let multi_tensor = vs.device().is_cuda();
        Self {
            kind,
            params,
            m,
            u,
            step: 0,
            multi_tensor,
        }
    }

    /// Steps with multi-tensor operations (`on`) or one parameter at a time. The default is
    /// multi-tensor on a GPU, per tensor on the CPU (see the module's documentation); the
    /// two give the same update up to float rounding (tested).
    pub fn multi_tensor(mut self, on: bool) -> Self {
        self.multi_tensor = on;
        self
    }

    /// The gradients that are defined, and the indices of their parameters.
    fn with_grads(&self) -> (Vec<Tensor>, Vec<usize>) {
        let mut grads = Vec::with_capacity(self.params.len());
        let mut index = Vec::with_capacity(self.params.len());
        for (i, (_, p)) in self.params.iter().enumerate() {
            let g = p.grad();
            if g.defined() {
                grads.push(g);
                index.push(i);
            }
        }
        (grads, index)
    }

    pub fn zero_grad(&mut self) -> Result<()> {
        if self.multi_tensor {
            let (grads, _) = self.with_grads();
            if grads.is_empty() {
                return Ok(());
            }
            let ptrs: Vec<_> = grads.iter().map(|g| g.as_ptr()).collect();
            // SAFETY: every pointer is an at::Tensor* owned by `grads`, alive for the call;
            // the shim reads `ptrs.len()` of them and catches every C++ exception.
            let rc = unsafe { remind_foreach_zero(ptrs.as_ptr(), ptrs.len() as i32) };
            return shim_result(rc, "zeroing the gradients");
        }
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
        Ok(())
    }

    /// Zeroes the gradients, back-propagates `loss` and steps with learning rate `lr`.
    ///
    /// Errors: only from the multi-tensor path, when libtorch refuses the operation (an
    /// internal fault: the parameters may be partly updated, so training must stop).
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        self.zero_grad()?;
        loss.backward();
        self.step(lr)
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

    /// One update with learning rate `lr`. Errors: as [`Self::backward_step`].
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        if self.multi_tensor {
            return self.step_multi_tensor(lr);
        }
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
                    let step_size = adamax_step_size(lr, beta1, t);
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
        Ok(())
    }

    /// [`Self::step`]'s rules as multi-tensor operations (csrc/optim.cpp).
    fn step_multi_tensor(&mut self, lr: f64) -> Result<()> {
        let (grads, index) = self.with_grads();
        if grads.is_empty() {
            return Ok(());
        }
        let ptrs = |ts: &[Tensor]| -> Vec<*const torch_sys::C_tensor> {
            index.iter().map(|&i| ts[i].as_ptr()).collect()
        };
        let params: Vec<_> = index.iter().map(|&i| self.params[i].1.as_ptr()).collect();
        let grads: Vec<_> = grads.iter().map(|g| g.as_ptr()).collect();
        let (m, u) = (ptrs(&self.m), ptrs(&self.u));
        let n = params.len() as i32;
        let rc = match self.kind {
            OptimKind::Sgd {
                momentum,
                weight_decay,
            } => {
                // SAFETY: every pointer is an at::Tensor* owned by `self` or by the gradient
                // handles above, alive for the call; the shim reads `n` of each and catches
                // every C++ exception.
                unsafe {
                    remind_sgd_foreach(
                        params.as_ptr(),
                        grads.as_ptr(),
                        m.as_ptr(),
                        n,
                        lr,
                        momentum,
                        weight_decay,
                        i32::from(self.step == 1),
                    )
                }
            }
            OptimKind::Adamax {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let step_size = adamax_step_size(lr, beta1, self.step as f64);
                // SAFETY: as for SGD's call.
                unsafe {
                    remind_adamax_foreach(
                        params.as_ptr(),
                        grads.as_ptr(),
                        m.as_ptr(),
                        u.as_ptr(),
                        n,
                        step_size,
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    )
                }
            }
        };
        shim_result(rc, "the optimiser step")
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
            for t in [m, u] {
                ensure!(
                    t.size() == param.size(),
                    "{p}: state of '{name}' has shape {:?}, the model {:?}",
                    t.size(),
                    param.size()
                );
            }
            self.m[i].copy_(m);
            self.u[i].copy_(u);
        }
        self.step = find("step")?.int64_value(&[0]);
        Ok(())
    }
}

/// A multi-tensor shim's return code as a result, with libtorch's message.
fn shim_result(rc: i32, what: &str) -> Result<()> {
    if rc != 0 {
        // SAFETY: the shim returns a NUL-terminated string it owns (thread-local), valid
        // until its next call on this thread; it is copied at once.
        let message = unsafe { std::ffi::CStr::from_ptr(remind_optim_last_error()) };
        bail!(
            "libtorch refused the multi-tensor operations of {what}: {}; the parameters may \
             be partly updated",
            message.to_string_lossy()
        );
    }
    Ok(())
}

type TensorPtrs = *const *const torch_sys::C_tensor;

extern "C" {
    /// csrc/optim.cpp.
    #[allow(clippy::too_many_arguments)]
    fn remind_sgd_foreach(
        params: TensorPtrs,
        grads: TensorPtrs,
        bufs: TensorPtrs,
        n: i32,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        first: i32,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn remind_adamax_foreach(
        params: TensorPtrs,
        grads: TensorPtrs,
        ms: TensorPtrs,
        us: TensorPtrs,
        n: i32,
        step_size: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> i32;
    fn remind_foreach_zero(ts: TensorPtrs, n: i32) -> i32;
    fn remind_optim_last_error() -> *const std::ffi::c_char;
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
            opt.zero_grad().unwrap();
            let loss = (&w * Tensor::from_slice(&[3.0f32, -2.0])).sum(Kind::Float) * (t as f64);
            loss.backward();
            opt.step(0.1).unwrap();
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

    /// The multi-tensor step (a GPU's) and the per-tensor loop (the CPU's) give the same
    /// parameters and state, up to float rounding, for both rules, with and without weight
    /// decay and momentum; a parameter without a gradient is left alone by both.
    #[test]
    fn multi_tensor_step_matches_the_per_tensor_loop() {
        let _rng = crate::testing::tch_rng_lock();
        let kinds = [
            OptimKind::Sgd {
                momentum: 0.9,
                weight_decay: 1e-3,
            },
            OptimKind::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            OptimKind::adamax(),
            OptimKind::Adamax {
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 1e-2,
            },
        ];
        tch::manual_seed(3);
        let x = Tensor::randn([16, 5], (Kind::Float, Device::Cpu));
        for kind in kinds {
            let run = |multi: bool| -> (Vec<f32>, Vec<f32>) {
                tch::manual_seed(4);
                let vs = VarStore::new(Device::Cpu);
                let a = nn::linear(vs.root() / "a", 5, 7, Default::default());
                let b = nn::linear(vs.root() / "b", 7, 3, Default::default());
                // Never in the loss: no gradient, never stepped.
                let idle = vs.root().var("idle", &[4], nn::Init::Const(2.0));
                let mut opt = Optimizer::new(&vs, kind).multi_tensor(multi);
                for step in 0..7 {
                    let loss = b.forward(&a.forward(&x).tanh()).square().mean(Kind::Float);
                    opt.backward_step(&loss, 0.05 / (1 + step) as f64).unwrap();
                }
                assert_eq!(Vec::<f32>::try_from(&idle).unwrap(), [2.0; 4]);
                let flat = |ts: Vec<Tensor>| -> Vec<f32> {
                    let ts: Vec<Tensor> = ts.iter().map(|t| t.view([-1])).collect();
                    Vec::<f32>::try_from(&Tensor::cat(&ts, 0)).unwrap()
                };
                let params = flat(opt.params.iter().map(|(_, p)| p.shallow_clone()).collect());
                let state = flat(
                    opt.m
                        .iter()
                        .chain(&opt.u)
                        .map(|t| t.shallow_clone())
                        .collect(),
                );
                (params, state)
            };
            let (p1, s1) = run(false);
            let (p2, s2) = run(true);
            for (name, one, many) in [("parameters", &p1, &p2), ("state", &s1, &s2)] {
                assert_eq!(one.len(), many.len());
                let worst = one
                    .iter()
                    .zip(many)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{kind:?}: {name} differ by {worst:e} (relative)"
                );
            }
            // The steps moved the parameters (the comparison is not vacuous).
            tch::manual_seed(4);
            let vs = VarStore::new(Device::Cpu);
            let _ = nn::linear(vs.root() / "a", 5, 7, Default::default());
            let b0 = Vec::<f32>::try_from(&vs.variables()["a.bias"]).unwrap();
            assert!(b0.iter().zip(&p1).all(|(a, b)| a != b), "{kind:?}");
        }
    }

    /// A multi-tensor operation libtorch refuses is an error carrying libtorch's message
    /// (without its C++ stack trace), not an abort.
    #[test]
    fn a_refused_multi_tensor_step_is_an_error() {
        let _rng = crate::testing::tch_rng_lock();
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let kind = OptimKind::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::new(&vs, kind).multi_tensor(true);
        // A momentum buffer of another shape (what a corrupted state would hold).
        opt.m[0] = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        let loss = (&w * 2.0).sum(Kind::Float);
        let err = opt.backward_step(&loss, 0.1).unwrap_err().to_string();
        assert!(err.contains("the optimiser step"), "{err}");
        assert!(err.contains("size"), "libtorch's message: {err}");
        assert!(!err.contains("frame #"), "a C++ stack trace: {err}");
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
                        opt2.zero_grad().unwrap();
                        lin2.forward(&x).square().mean(Kind::Float).backward();
                        opt2.step(0.05).unwrap();
                    }
                    return Vec::<f32>::try_from(&lin2.ws.view([-1])).unwrap();
                }
                opt.zero_grad().unwrap();
                lin.forward(&x).square().mean(Kind::Float).backward();
                opt.step(0.05).unwrap();
            }
            Vec::<f32>::try_from(&lin.ws.view([-1])).unwrap()
        };
        assert_eq!(run(false), run(true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
