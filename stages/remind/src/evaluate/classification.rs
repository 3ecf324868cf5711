//! Image-classification metrics at one evaluation point (ImageNet protocol): top-1 and
//! top-5 accuracy on the base-initialisation classes, on the classes streamed since
//! (seen, not base) and on every class seen so far; and Omega_all over a run.

use std::collections::HashSet;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

use crate::stream::metrics::{omega, topk_accuracy};

/// Accuracies at one evaluation point; None where no test item belongs to the group (e.g.
/// the non-base classes before the stream has shown any).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassificationScore {
    pub base_classes_top1: Option<f64>,
    pub base_classes_top5: Option<f64>,
    pub non_base_classes_top1: Option<f64>,
    pub non_base_classes_top5: Option<f64>,
    pub seen_classes_top1: Option<f64>,
    pub seen_classes_top5: Option<f64>,
}

/// Scores `scores` (`labels.len() x classes`, row-major: class scores or probabilities per
/// test item) against `labels`. Items whose label is not in `seen_classes` are not scored;
/// `base_classes` must be among the seen ones.
pub fn classification_metrics(
    scores: &[f32],
    classes: usize,
    labels: &[i64],
    base_classes: &[i64],
    seen_classes: &[i64],
) -> Result<ClassificationScore> {
    ensure!(
        classes > 0,
        "classification metrics need at least one class"
    );
    ensure!(
        scores.len() == labels.len() * classes,
        "{} scores do not make {} rows of {classes} classes",
        scores.len(),
        labels.len()
    );
    if let Some((i, &y)) = labels
        .iter()
        .enumerate()
        .find(|(_, &y)| y < 0 || y as usize >= classes)
    {
        bail!("item {i}: label {y} is outside the {classes} classes");
    }
    if let Some(i) = scores.iter().position(|v| !v.is_finite()) {
        bail!(
            "item {}: class {} has a non-finite score {}",
            i / classes,
            i % classes,
            scores[i]
        );
    }
    let seen: HashSet<i64> = seen_classes.iter().copied().collect();
    let base: HashSet<i64> = base_classes.iter().copied().collect();
    if let Some(c) = base_classes.iter().find(|c| !seen.contains(c)) {
        bail!("base class {c} is not among the seen classes");
    }
    let acc =
        |k: usize, keep: &dyn Fn(i64) -> bool| topk_accuracy(scores, classes, labels, k, keep);
    let is_base = |y: i64| base.contains(&y);
    let is_new = |y: i64| seen.contains(&y) && !base.contains(&y);
    let is_seen = |y: i64| seen.contains(&y);
    Ok(ClassificationScore {
        base_classes_top1: acc(1, &is_base),
        base_classes_top5: acc(5, &is_base),
        non_base_classes_top1: acc(1, &is_new),
        non_base_classes_top5: acc(5, &is_new),
        seen_classes_top1: acc(1, &is_seen),
        seen_classes_top5: acc(5, &is_seen),
    })
}

/// Omega_all of a run: mean over evaluation points of the method's accuracy on all seen
/// classes divided by the offline model's at the same point (points where either is
/// missing or the offline accuracy is 0 are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassificationOmega {
    pub all_top1: Option<f64>,
    pub all_top5: Option<f64>,
}

/// Omega_all top-1 and top-5; `method[i]` and `offline[i]` are the same evaluation point.
pub fn classification_omega(
    method: &[ClassificationScore],
    offline: &[ClassificationScore],
) -> Result<ClassificationOmega> {
    ensure!(
        method.len() == offline.len(),
        "Omega needs the same evaluation points: the method has {}, the offline model {}",
        method.len(),
        offline.len()
    );
    let pairs = |get: fn(&ClassificationScore) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
        method
            .iter()
            .zip(offline)
            .filter_map(|(m, o)| Some((get(m)?, get(o)?)))
            .unzip()
    };
    let (m1, o1) = pairs(|s| s.seen_classes_top1);
    let (m5, o5) = pairs(|s| s.seen_classes_top5);
    Ok(ClassificationOmega {
        all_top1: omega(&m1, &o1),
        all_top5: omega(&m5, &o5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores of 7 classes where the true class ranks `rank` (0 = top).
    fn row(label: usize, rank: usize) -> Vec<f32> {
        let mut r: Vec<f32> = (0..7).map(|c| 10.0 - c as f32).collect();
        // Put the label's score just below the `rank` highest of the others.
        let mut others: Vec<f32> = (0..7).filter(|&c| c != label).map(|c| r[c]).collect();
        others.sort_by(|a, b| b.total_cmp(a));
        r[label] = if rank == 0 {
            100.0
        } else {
            others[rank - 1] - 0.5
        };
        r
    }

    #[test]
    fn top1_top5_on_base_new_and_seen() {
        // Base classes {0, 1}; seen {0, 1, 2, 3}; class 6 not seen yet.
        let items = [(0, 0), (0, 3), (1, 6), (2, 0), (2, 1), (3, 5), (6, 0)];
        let labels: Vec<i64> = items.iter().map(|&(y, _)| y as i64).collect();
        let scores: Vec<f32> = items.iter().flat_map(|&(y, r)| row(y, r)).collect();
        let s = classification_metrics(&scores, 7, &labels, &[0, 1], &[0, 1, 2, 3]).unwrap();
        // Base items: ranks 0, 3, 6 -> top-1 1/3, top-5 2/3.
        assert_eq!(s.base_classes_top1, Some(1.0 / 3.0));
        assert_eq!(s.base_classes_top5, Some(2.0 / 3.0));
        // New items: ranks 0, 1, 5 -> top-1 1/3, top-5 2/3.
        assert_eq!(s.non_base_classes_top1, Some(1.0 / 3.0));
        assert_eq!(s.non_base_classes_top5, Some(2.0 / 3.0));
        // Seen: 6 items (class 6 skipped), top-1 2/6, top-5 4/6.
        assert_eq!(s.seen_classes_top1, Some(2.0 / 6.0));
        assert_eq!(s.seen_classes_top5, Some(4.0 / 6.0));

        let only_base = classification_metrics(&scores, 7, &labels, &[0, 1], &[0, 1]).unwrap();
        assert_eq!(only_base.non_base_classes_top1, None);
        assert_eq!(only_base.seen_classes_top1, Some(1.0 / 3.0));
    }

    #[test]
    fn refuses_bad_input() {
        let scores = row(0, 0);
        assert!(classification_metrics(&scores, 7, &[0, 1], &[0], &[0]).is_err());
        assert!(classification_metrics(&scores, 7, &[7], &[0], &[0]).is_err());
        assert!(classification_metrics(&scores, 7, &[-1], &[0], &[0]).is_err());
        assert!(classification_metrics(&scores, 7, &[0], &[1], &[0]).is_err());
        let mut nan = scores.clone();
        nan[3] = f32::NAN;
        let err = classification_metrics(&nan, 7, &[0], &[0], &[0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("item 0: class 3"), "{err}");
    }

    #[test]
    fn omega_all_over_seen_classes() {
        let at = |t1: f64, t5: f64| ClassificationScore {
            base_classes_top1: None,
            base_classes_top5: None,
            non_base_classes_top1: None,
            non_base_classes_top5: None,
            seen_classes_top1: Some(t1),
            seen_classes_top5: Some(t5),
        };
        let method = [at(0.5, 0.75), at(0.25, 0.5)];
        let offline = [at(1.0, 1.0), at(0.5, 1.0)];
        let o = classification_omega(&method, &offline).unwrap();
        assert_eq!(o.all_top1, Some(0.5));
        assert_eq!(o.all_top5, Some(0.625));
        assert!(classification_omega(&method, &offline[..1]).is_err());
    }
}
