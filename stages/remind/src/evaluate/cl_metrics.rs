//! The continual-learning metrics of a run, from its accuracy matrix R (R[k][j]: top-1 on
//! experience j's validation items after evaluation point k; an experience is a group of
//! classes):
//!
//! - average incremental accuracy: the mean over the evaluation points of the top-1 on
//!   every class seen (Rebuffi et al., "iCaRL", CVPR 2017);
//! - forgetting: per experience j, the drop from its best earlier accuracy to the final
//!   one, max_{l<T} R[l][j] - R[T][j], averaged over the experiences scored before the
//!   last point (Chaudhry et al., "Riemannian Walk", ECCV 2018); per point in the CSV;
//! - backward transfer: the mean over the experiences learnt before the last of
//!   R[T][j] - R[j][j], accuracy at the end against accuracy just after learning them
//!   (Lopez-Paz & Ranzato, "Gradient Episodic Memory", NeurIPS 2017); only where
//!   experience j is learnt at point j (class-incremental streams).

/// Top-1 hits and items per class at one evaluation point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassHits {
    pub correct: Vec<usize>,
    pub total: Vec<usize>,
}

impl ClassHits {
    /// Counts the top-1 hits of `scores` (row-major, `classes` per item) against `labels`
    /// (each in 0..classes; the caller has checked them).
    pub fn count(scores: &[f32], classes: usize, labels: &[i64]) -> Self {
        let mut h = Self {
            correct: vec![0; classes],
            total: vec![0; classes],
        };
        for (row, &y) in scores.chunks_exact(classes).zip(labels) {
            let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            h.total[y as usize] += 1;
            h.correct[y as usize] += usize::from(best == y as usize);
        }
        h
    }

    /// Top-1 over the items of `classes`, None when they have none.
    pub fn accuracy(&self, classes: &[usize]) -> Option<f64> {
        let total: usize = classes.iter().map(|&c| self.total[c]).sum();
        let correct: usize = classes.iter().map(|&c| self.correct[c]).sum();
        (total > 0).then(|| correct as f64 / total as f64)
    }
}

/// R: one row per evaluation point, one column per experience (None: not scored there).
pub fn accuracy_matrix(points: &[ClassHits], experiences: &[Vec<usize>]) -> Vec<Vec<Option<f64>>> {
    points
        .iter()
        .map(|h| experiences.iter().map(|e| h.accuracy(e)).collect())
        .collect()
}

/// max_{l<k} R[l][j] - R[k][j]; None without an earlier score or a score at k.
pub fn forgetting_at(r: &[Vec<Option<f64>>], k: usize, j: usize) -> Option<f64> {
    let now = r[k][j]?;
    let best = r[..k]
        .iter()
        .filter_map(|row| row[j])
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
    Some(best - now)
}

/// Mean forgetting at the last point over the experiences scored before it.
pub fn forgetting(r: &[Vec<Option<f64>>]) -> Option<f64> {
    let last = r.len().checked_sub(1)?;
    let cols = r.first().map_or(0, Vec::len);
    mean((0..cols).filter_map(|j| forgetting_at(r, last, j)))
}

/// Mean of R[T][j] - R[j][j] over j < T, where experience j is learnt at point j.
pub fn backward_transfer(r: &[Vec<Option<f64>>]) -> Option<f64> {
    let last = r.len().checked_sub(1)?;
    let cols = r.first().map_or(0, Vec::len);
    mean((0..cols.min(last)).filter_map(|j| Some(r[last][j]? - r[j][j]?)))
}

/// `metrics.csv`, the columns of Avalanche's `eval_results.csv` after the method:
/// `method,eval_exp,training_exp,eval_accuracy,forgetting`, one row per evaluation point
/// (`training_exp`) and experience scored there (`eval_exp`, a column of the accuracy
/// matrix `r`); forgetting ([`forgetting_at`] on `learnt`, R with None before each
/// experience is learnt; `r` itself where every score counts) is empty at the first score.
pub fn eval_results_csv<'a>(runs: impl IntoIterator<Item = (&'a str, Matrix, Matrix)>) -> String {
    let mut out = String::from("method,eval_exp,training_exp,eval_accuracy,forgetting\n");
    for (name, r, learnt) in runs {
        for (k, row) in r.iter().enumerate() {
            for (j, acc) in row.iter().enumerate() {
                let Some(acc) = acc else { continue };
                let f = forgetting_at(&learnt, k, j).map_or(String::new(), |f| format!("{f:.6}"));
                out.push_str(&format!("{name},{j},{k},{acc:.6},{f}\n"));
            }
        }
    }
    out
}

/// An accuracy matrix: a row per evaluation point, a column per experience.
pub type Matrix = Vec<Vec<Option<f64>>>;

/// The mean of the values that exist.
pub fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = values.fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(correct: &[usize], total: &[usize]) -> ClassHits {
        ClassHits {
            correct: correct.to_vec(),
            total: total.to_vec(),
        }
    }

    #[test]
    fn hits_count_top1_per_class() {
        // Two classes; items of class 0, 1, 1: the second is wrong.
        let scores = [0.9, 0.1, 0.8, 0.2, 0.3, 0.7];
        let h = ClassHits::count(&scores, 2, &[0, 1, 1]);
        assert_eq!(h, hits(&[1, 1], &[1, 2]));
        assert_eq!(h.accuracy(&[1]), Some(0.5));
        assert_eq!(h.accuracy(&[0, 1]), Some(2.0 / 3.0));
    }

    #[test]
    fn matrix_forgetting_and_transfer_of_a_class_incremental_run() {
        // Experience 0 = classes 0,1 (base), 1 = class 2, 2 = class 3.
        let ex = vec![vec![0, 1], vec![2], vec![3]];
        let points = [
            hits(&[8, 8, 0, 0], &[10, 10, 0, 0]),
            hits(&[6, 6, 9, 0], &[10, 10, 10, 0]),
            hits(&[5, 5, 4, 10], &[10, 10, 10, 10]),
        ];
        let r = accuracy_matrix(&points, &ex);
        assert_eq!(r[0], vec![Some(0.8), None, None]);
        assert_eq!(r[2], vec![Some(0.5), Some(0.4), Some(1.0)]);
        // Experience 0: 0.8 -> 0.5; experience 1: 0.9 -> 0.4; the last has no past.
        let f = forgetting(&r).unwrap();
        assert!((f - (0.3 + 0.5) / 2.0).abs() < 1e-12, "{f}");
        assert!((forgetting_at(&r, 1, 0).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(forgetting_at(&r, 0, 0), None);
        let bwt = backward_transfer(&r).unwrap();
        assert!((bwt + (0.3 + 0.5) / 2.0).abs() < 1e-12, "{bwt}");
        assert_eq!(forgetting(&r[..1]), None);
    }
}
