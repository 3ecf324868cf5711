//! Accuracy bookkeeping: VQA per-type accuracy, mean-per-type (MPT) and overall accuracy,
//! and Omega (mean over boundaries of a method's score relative to the offline model's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Accuracy of one method at one boundary on the evaluation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaScore {
    /// Accuracy per question type id (types with no evaluation question are absent).
    pub per_type: BTreeMap<i64, f64>,
    pub mean_per_type: f64,
    pub overall: f64,
}

/// Scores predictions against answers. Questions whose answer is outside the answer table
/// (answer -1) count as wrong, as no prediction can match them.
pub fn vqa_score(predicted: &[i64], answers: &[i64], types: &[i64]) -> VqaScore {
    let mut hits: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for ((&p, &a), &t) in predicted.iter().zip(answers).zip(types) {
        let e = hits.entry(t).or_default();
        e.0 += usize::from(a >= 0 && p == a);
        e.1 += 1;
    }
    let per_type: BTreeMap<i64, f64> = hits
        .iter()
        .map(|(&t, &(h, n))| (t, h as f64 / n as f64))
        .collect();
    let mean_per_type = if per_type.is_empty() {
        0.0
    } else {
        per_type.values().sum::<f64>() / per_type.len() as f64
    };
    let total: usize = hits.values().map(|v| v.1).sum();
    let correct: usize = hits.values().map(|v| v.0).sum();
    let overall = if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    };
    VqaScore {
        per_type,
        mean_per_type,
        overall,
    }
}

/// Omega: mean over boundaries of `method[b] / offline[b]` (boundaries where the offline
/// score is 0 are skipped, as the ratio is undefined there).
pub fn omega(method: &[f64], offline: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = method
        .iter()
        .zip(offline)
        .filter(|(_, &o)| o > 0.0)
        .map(|(&m, &o)| m / o)
        .collect();
    (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64)
}

/// The points (labels from `points`) where a method scores above the offline baseline:
/// there the baseline is not the upper bound Omega assumes (paper, section 4: offline
/// training on everything seen bounds every streaming learner), so Omega is not meaningful.
pub fn above_baseline<T: Copy>(points: &[T], method: &[f64], offline: &[f64]) -> Vec<T> {
    points
        .iter()
        .zip(method.iter().zip(offline))
        .filter(|(_, (m, o))| m > o)
        .map(|(&p, _)| p)
        .collect()
}

/// Top-k accuracy of `probs` rows (`n x classes`) restricted to items whose label passes
/// `keep`; None when no item passes.
pub fn topk_accuracy(
    scores: &[f32],
    classes: usize,
    labels: &[i64],
    k: usize,
    keep: impl Fn(i64) -> bool,
) -> Option<f64> {
    let (mut hit, mut n) = (0usize, 0usize);
    for (row, &y) in scores.chunks_exact(classes).zip(labels) {
        if !keep(y) {
            continue;
        }
        n += 1;
        let target = row[y as usize];
        // Rank of the true class: how many classes score strictly higher.
        let higher = row.iter().filter(|&&s| s > target).count();
        hit += usize::from(higher < k);
    }
    (n > 0).then(|| hit as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vqa_scores_per_type_mpt_and_overall() {
        let s = vqa_score(&[1, 2, 3, 3, 0], &[1, 2, 0, 3, -1], &[0, 0, 1, 1, 1]);
        assert_eq!(s.per_type[&0], 1.0);
        assert!((s.per_type[&1] - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.mean_per_type - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((s.overall - 0.6).abs() < 1e-12);
        assert_eq!(omega(&[0.5, 0.3], &[1.0, 0.6]), Some(0.5));
        assert_eq!(omega(&[0.5], &[0.0]), None);
    }

    #[test]
    fn topk_counts_ranks() {
        let scores = [0.1, 0.7, 0.2, 0.5, 0.3, 0.2];
        assert_eq!(topk_accuracy(&scores, 3, &[2, 2], 1, |_| true), Some(0.0));
        assert_eq!(topk_accuracy(&scores, 3, &[2, 2], 2, |_| true), Some(0.5));
        assert_eq!(topk_accuracy(&scores, 3, &[1, 0], 1, |y| y == 0), Some(1.0));
        assert_eq!(topk_accuracy(&scores, 3, &[1, 0], 1, |y| y > 5), None);
    }
}
