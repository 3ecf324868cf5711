//! How long the offline baseline trains, for every task: a fixed number of epochs, or until
//! its validation score stops improving (issue #15: the upper bound every Omega divides
//! by must be trained to convergence, on every evaluation point).

use anyhow::Result;
use tch::nn::VarStore;
use tch::Tensor;

use super::driver::Net;
use crate::train::schedule::{Plateau, PlateauStep};

/// Learning-rate reductions (by 10) before a plateau stops training.
pub const PLATEAU_REDUCTIONS: usize = 2;

/// Every variable of a VarStore by name (weights and batch-norm statistics).
type Snapshot = Vec<(String, Tensor)>;

/// Trains `net` for at most `max_epochs` epochs of `epoch(net, e, factor)`.
///
/// - `patience: None`: exactly `max_epochs` epochs, `factor` None (the task's own fixed
///   schedule).
/// - `patience: Some(p)`: after every epoch `score(net)` (the seen-class validation score,
///   higher is better) drives a [`Plateau`]: `factor` is the multiplier of the task's base
///   rate (1, then 0.1 and 0.01 after `p` epochs each without a better score); the next
///   plateau stops training, and the weights of the best epoch are restored. Selecting on
///   the validation set can only raise the bound, the safe side for an upper bound.
///
/// `label` prefixes the log lines (one per epoch with a score).
pub fn train_offline<M>(
    net: &mut Net<M>,
    max_epochs: usize,
    patience: Option<usize>,
    label: &str,
    mut epoch: impl FnMut(&mut Net<M>, usize, Option<f64>) -> Result<()>,
    mut score: impl FnMut(&Net<M>) -> Result<f64>,
) -> Result<()> {
    let Some(patience) = patience else {
        for e in 0..max_epochs {
            epoch(net, e, None)?;
        }
        return Ok(());
    };
    let mut plateau = Plateau::new(patience, PLATEAU_REDUCTIONS);
    let mut best: Option<(f64, usize, Snapshot)> = None;
    for e in 0..max_epochs {
        epoch(net, e, Some(plateau.factor()))?;
        let val = score(net)?;
        let verdict = plateau.observe(val);
        let note = match verdict {
            PlateauStep::Improved => "best so far".to_string(),
            PlateauStep::Wait => "no better".to_string(),
            PlateauStep::Reduced => format!("plateau: rate x{:.0e} from now", plateau.factor()),
            PlateauStep::Stop => "plateau: stopping".to_string(),
        };
        eprintln!(
            "{label}: epoch {}: validation {:.2}% ({note})",
            e + 1,
            100.0 * val
        );
        match verdict {
            PlateauStep::Improved => best = Some((val, e, snapshot(&net.vs))),
            PlateauStep::Stop => break,
            PlateauStep::Wait | PlateauStep::Reduced => {}
        }
    }
    if let Some((val, e, weights)) = best {
        restore(&net.vs, &weights);
        eprintln!(
            "{label}: kept epoch {} (validation {:.2}%)",
            e + 1,
            100.0 * val
        );
    }
    Ok(())
}

/// A copy of every variable of `vs` (weights and batch-norm statistics), sorted by name.
fn snapshot(vs: &VarStore) -> Snapshot {
    let _g = tch::no_grad_guard();
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes a [`snapshot`] back into `vs`.
fn restore(vs: &VarStore, saved: &Snapshot) {
    let _g = tch::no_grad_guard();
    let vars = vs.variables();
    for (name, t) in saved {
        if let Some(v) = vars.get(name) {
            v.shallow_clone().copy_(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::{OptimKind, Optimizer};
    use tch::Device;

    fn net() -> Net<()> {
        let vs = VarStore::new(Device::Cpu);
        let _w = vs.root().zeros("w", &[1]);
        let opt = Optimizer::new(&vs, OptimKind::adamax());
        Net {
            vs,
            model: (),
            opt,
            counters: Vec::new(),
        }
    }

    fn w(net: &Net<()>) -> f64 {
        net.vs.variables()["w"].double_value(&[0])
    }

    #[test]
    fn keeps_the_best_epoch_and_stops_at_a_plateau() {
        // Each epoch sets w to the epoch's score; the scores rise, then fall for good.
        let scores = [0.1, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1, 0.0, 0.0, 0.0];
        let mut n = net();
        let mut epochs = Vec::new();
        train_offline(
            &mut n,
            scores.len(),
            Some(1),
            "test",
            |net, e, f| {
                epochs.push((e, f.unwrap()));
                let _g = tch::no_grad_guard();
                let _ = net.vs.variables()["w"].shallow_clone().fill_(scores[e]);
                Ok(())
            },
            |net| Ok(w(net)),
        )
        .unwrap();
        // patience 1: a reduction after epochs 3 and 4, a stop after epoch 5.
        assert_eq!(epochs.len(), 5);
        assert_eq!(epochs[2].1, 1.0);
        assert!((epochs[3].1 - 0.1).abs() < 1e-12 && (epochs[4].1 - 0.01).abs() < 1e-12);
        assert_eq!(w(&n), 0.5, "the best epoch's weights are restored");
        // Without patience: exactly max_epochs, no factor, no restore.
        let mut n = net();
        let mut count = 0;
        train_offline(
            &mut n,
            4,
            None,
            "test",
            |net, e, f| {
                assert!(f.is_none());
                count += 1;
                let _g = tch::no_grad_guard();
                let _ = net.vs.variables()["w"].shallow_clone().fill_(scores[e]);
                Ok(())
            },
            |_| unreachable!("no score without patience"),
        )
        .unwrap();
        assert_eq!(count, 4);
        assert!((w(&n) - 0.3).abs() < 1e-6, "the last epoch's weights stay");
    }
}
