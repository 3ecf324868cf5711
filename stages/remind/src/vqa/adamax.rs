//! Adamax (Kingma & Ba 2015, section 7.1), the optimiser REMIND's VQA models use, with
//! PyTorch's update rule and defaults (betas 0.9, 0.999; eps 1e-8):
//! m = b1 m + (1 - b1) g;  u = max(b2 u, |g| + eps);  p -= lr / (1 - b1^t) * m / u
//! (g includes weight decay wd * p when wd > 0).

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use tch::{nn, Kind, Tensor};

/// Adamax over the trainable variables of a `VarStore`; its state can be checkpointed
/// through [`Adamax::state`] / [`Adamax::load_state`].
#[derive(Debug)]
pub struct Adamax {
    /// (name, variable, first moment, infinity norm), by name.
    vars: Vec<(String, Tensor, Tensor, Tensor)>,
    steps: i64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Adamax {
    /// Optimises every trainable variable of `vs` with learning rate `lr`.
    pub fn new(vs: &nn::VarStore, lr: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let vars = named
            .into_iter()
            .map(|(name, t)| {
                let m = t.zeros_like();
                let u = t.zeros_like();
                (name, t, m, u)
            })
            .collect();
        Self {
            vars,
            steps: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Updates taken so far.
    pub fn steps(&self) -> i64 {
        self.steps
    }

    pub fn zero_grad(&mut self) {
        for (_, t, _, _) in &mut self.vars {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update from the gradients currently held.
    pub fn step(&mut self) {
        self.steps += 1;
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let clr = self.lr / (1.0 - b1.powi(self.steps.min(i32::MAX as i64) as i32));
        tch::no_grad(|| {
            for (_, p, m, u) in &mut self.vars {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if wd != 0.0 {
                    g = g.g_add(&(&*p * wd));
                }
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = u.g_mul_scalar_(b2);
                let mut norm = g.abs();
                let _ = norm.g_add_scalar_(eps);
                let _ = u.maximum_out(u, &norm);
                let mut update = &*m / &*u;
                let _ = update.g_mul_scalar_(clr);
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// zero_grad, backward of `loss`, step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// The state as named tensors (`exp_avg.<var>`, `exp_inf.<var>`, `steps`), e.g. for
    /// `Tensor::write_safetensors`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("steps".to_string(), Tensor::from(self.steps))];
        for (name, _, m, u) in &self.vars {
            out.push((format!("exp_avg.{name}"), m.shallow_clone()));
            out.push((format!("exp_inf.{name}"), u.shallow_clone()));
        }
        out
    }

    /// Restores a state written by [`state`](Self::state) for the same variables.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let map: HashMap<&str, &Tensor> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let steps = map
            .get("steps")
            .context("optimiser state: no 'steps' entry")?;
        ensure!(
            steps.numel() == 1 && steps.kind() == Kind::Int64,
            "optimiser state: 'steps' must be one int64"
        );
        let steps = i64::try_from(*steps)?;
        tch::no_grad(|| -> Result<()> {
            for (name, _, m, u) in &mut self.vars {
                for (key, dst) in [("exp_avg", m), ("exp_inf", u)] {
                    let k = format!("{key}.{name}");
                    let src = map
                        .get(k.as_str())
                        .with_context(|| format!("optimiser state: no '{k}' entry"))?;
                    ensure!(
                        src.size() == dst.size(),
                        "optimiser state: '{k}' has shape {:?}, the variable {:?}",
                        src.size(),
                        dst.size()
                    );
                    dst.copy_(&src.to_device(dst.device()).to_kind(dst.kind()));
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}
