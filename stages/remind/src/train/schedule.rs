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

/// The schedule of an epoch-based training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochSchedule {
    /// [`lr_at`]: linear warm-up, cosine decay; constant momentum.
    #[default]
    WarmupCosine,
    /// [`one_cycle_at`]: PyTorch's `OneCycleLR` with its defaults, momentum cycled.
    OneCycle,
}

impl EpochSchedule {
    /// Learning rate and momentum (None: keep the optimiser's) of 0-based `step` of `total`.
    pub fn at(self, step: usize, total: usize, max_lr: f64) -> (f64, Option<f64>) {
        match self {
            EpochSchedule::WarmupCosine => (lr_at(step, total, max_lr), None),
            EpochSchedule::OneCycle => {
                let (lr, m) = one_cycle_at(step, total, max_lr);
                (lr, Some(m))
            }
        }
    }
}

/// PyTorch's `OneCycleLR` (Smith & Topor, 2019) with its defaults: `pct_start` 0.3, cosine
/// annealing, `div_factor` 25, `final_div_factor` 1e4, momentum cycled between 0.95 and
/// 0.85. The rate rises from `max_lr / 25` to `max_lr` over the first 30% of the `total`
/// steps while momentum falls from 0.95 to 0.85, then the rate falls to `max_lr / 25e4`
/// while momentum rises back. Returns (learning rate, momentum) of 0-based `step`.
pub fn one_cycle_at(step: usize, total: usize, max_lr: f64) -> (f64, f64) {
    let cos = |a: f64, b: f64, p: f64| b + (a - b) / 2.0 * (1.0 + (std::f64::consts::PI * p).cos());
    let lr0 = max_lr / 25.0;
    let lr_min = lr0 / 1e4;
    let end1 = (0.3 * total as f64 - 1.0).max(1.0);
    let end2 = (total as f64 - 1.0).max(end1 + 1.0);
    let t = step as f64;
    if t <= end1 {
        let p = t / end1;
        (cos(lr0, max_lr, p), cos(0.95, 0.85, p))
    } else {
        let p = ((t - end1) / (end2 - end1)).min(1.0);
        (cos(max_lr, lr_min, p), cos(0.85, 0.95, p))
    }
}

/// What [`Plateau::observe`] decided after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateauStep {
    /// A new best score: keep these weights.
    Improved,
    /// No new best, still within the patience.
    Wait,
    /// `patience` epochs without a new best: the rate was divided by 10.
    Reduced,
    /// A plateau with every reduction spent: stop training.
    Stop,
}

/// Training "until the validation accuracy stops improving", as PyTorch's
/// `ReduceLROnPlateau(mode='max', factor=0.1, patience)` followed by early stopping: after
/// `patience` epochs without a higher score the rate is divided by 10 (at most `reductions`
/// times, the counter restarting each time); the next plateau stops training.
#[derive(Debug, Clone)]
pub struct Plateau {
    patience: usize,
    reductions_left: usize,
    best: Option<f64>,
    since_best: usize,
    factor: f64,
}

impl Plateau {
    pub fn new(patience: usize, reductions: usize) -> Self {
        Self {
            patience: patience.max(1),
            reductions_left: reductions,
            best: None,
            since_best: 0,
            factor: 1.0,
        }
    }

    /// The multiplier of the base rate (1, 0.1, 0.01, ...).
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Records one epoch's score (higher is better).
    pub fn observe(&mut self, score: f64) -> PlateauStep {
        if self.best.is_none_or(|b| score > b) {
            self.best = Some(score);
            self.since_best = 0;
            return PlateauStep::Improved;
        }
        self.since_best += 1;
        if self.since_best < self.patience {
            return PlateauStep::Wait;
        }
        if self.reductions_left == 0 {
            return PlateauStep::Stop;
        }
        self.reductions_left -= 1;
        self.factor *= 0.1;
        self.since_best = 0;
        PlateauStep::Reduced
    }
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
            self.start.is_finite() && self.end > 0.0 && self.end <= self.start,
            "lr: need finite rates with 0 < end <= start (start {}, end {})",
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
    fn one_cycle_matches_pytorch_defaults() {
        // PyTorch: OneCycleLR(max_lr=0.1, total_steps=100): lr 0.004 at step 0, 0.1 at
        // step 29 (0.3 * 100 - 1), 4e-7 at the last step; momentum 0.95 -> 0.85 -> 0.95.
        let total = 100;
        let (lr, m) = one_cycle_at(0, total, 0.1);
        assert!((lr - 0.004).abs() < 1e-12 && (m - 0.95).abs() < 1e-12);
        let (lr, m) = one_cycle_at(29, total, 0.1);
        assert!((lr - 0.1).abs() < 1e-12 && (m - 0.85).abs() < 1e-12);
        let (lr, m) = one_cycle_at(99, total, 0.1);
        assert!((lr - 0.004 / 1e4).abs() < 1e-15 && (m - 0.95).abs() < 1e-12);
        let mid = one_cycle_at(64, total, 0.1).0;
        assert!(mid < 0.1 && mid > one_cycle_at(80, total, 0.1).0);
        assert_eq!(
            EpochSchedule::WarmupCosine.at(3, total, 0.1),
            (lr_at(3, total, 0.1), None)
        );
    }

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
    fn plateau_reduces_then_stops() {
        use PlateauStep::*;
        let mut p = Plateau::new(2, 1);
        assert_eq!(p.observe(0.5), Improved);
        assert_eq!(p.observe(0.6), Improved);
        assert_eq!(p.observe(0.6), Wait, "equal is not better");
        assert_eq!(p.observe(0.55), Reduced);
        assert!((p.factor() - 0.1).abs() < 1e-15);
        assert_eq!(
            p.observe(0.59),
            Wait,
            "the counter restarts after a reduction"
        );
        assert_eq!(p.observe(0.7), Improved);
        assert_eq!(p.observe(0.7), Wait);
        assert_eq!(p.observe(0.1), Stop, "no reduction left");
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
