//! Learning-rate schedules: [`lr_at`] (warm-up then cosine decay, for epoch-based training)
//! and [`LrSchedule`], the per-class learning-rate schedule of REMIND's ImageNet runs ("step per class"),
//! computed in closed form: each class c keeps its own update counter n_c and an update on
//! class c uses `start * gamma^floor(n_c / step)`, with
//! `gamma = exp(step * ln(end / start) / decay_over)`, so the rate reaches `end` after
//! `decay_over` updates of a class. The reference got this from one StepLR scheduler per
//! class under PyTorch 1.3.1; newer PyTorch makes such schedulers compound, which is why its
//! results did not reproduce. No scheduler object here: the rate is a function of n_c.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// Linear warm-up over the first 5% of `total` steps (at least one), then cosine decay
/// from `base` to zero; `step` is 0-based.
pub fn lr_at(step: usize, total: usize, base: f64) -> f64 {
    let warm = (total / 20).max(1);
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    let span = total.saturating_sub(warm).max(1) as f64;
    let t = ((step - warm) as f64 / span).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrSchedule {
    pub start: f64,
    pub end: f64,
    /// Updates between decays.
    pub step: u64,
    /// Updates of one class over which the rate falls from `start` to `end` (1300: about
    /// one ImageNet class).
    pub decay_over: u64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self {
            start: 0.1,
            end: 0.001,
            step: 100,
            decay_over: 1300,
        }
    }
}

impl LrSchedule {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.start > 0.0 && self.end > 0.0 && self.end <= self.start,
            "lr: need 0 < end <= start (start {}, end {})",
            self.start,
            self.end
        );
        ensure!(
            self.step >= 1 && self.decay_over >= 1,
            "lr.step and lr.decay_over must be at least 1"
        );
        Ok(())
    }

    pub fn gamma(&self) -> f64 {
        (self.step as f64 * (self.end / self.start).ln() / self.decay_over as f64).exp()
    }

    /// The rate for an update of a class that has had `n` updates before.
    pub fn rate(&self, n: u64) -> f64 {
        self.start * self.gamma().powf((n / self.step) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedule() {
        let s = LrSchedule::default();
        assert!((s.gamma() - (100f64 * (0.01f64).ln() / 1300.0).exp()).abs() < 1e-15);
        assert_eq!(s.rate(0), 0.1);
        assert_eq!(s.rate(99), 0.1);
        assert!((s.rate(100) - 0.1 * s.gamma()).abs() < 1e-15);
        // After a class's ~1300 updates the rate has fallen to about `end`.
        assert!((s.rate(1300) - 0.001).abs() < 1e-9, "{}", s.rate(1300));
        // Counters are per class: a new class starts again at `start` (the caller keeps one
        // counter per class); rates never compound.
        assert_eq!(s.rate(0), s.start);
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = LrSchedule {
            end: 0.5,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = LrSchedule {
            step: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
