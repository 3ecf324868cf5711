//! The continual-learning metrics of a VQA run ([`super::cl_metrics`]), with question types
//! as the experiences: the accuracy matrix R (R[k][j]: accuracy on type j's questions at
//! boundary k), average incremental accuracy, forgetting and backward transfer.
//!
//! Types are the columns in the order the stream learns them (the `qtype` order's segments;
//! in `iid` every type is learnt from the first segment, in the question-type table's
//! order). Unlike classification, where only the classes seen are scored, every type is
//! scored at every boundary, so R is full; forgetting and backward transfer read it only
//! from the boundary where each type is learnt on (a type's accuracy before it is learnt
//! is not something to forget), average incremental accuracy is the mean over boundaries
//! of the mean-per-type accuracy on the types learnt so far.

use super::cl_metrics::{backward_transfer, forgetting, mean, Matrix};
use super::{MethodResult, VqaEvaluation};

/// The question types as experiences, in learning order.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExperiences {
    /// Type ids (columns of R).
    pub ids: Vec<i64>,
    pub names: Vec<String>,
    /// Per type, the boundary index it is learnt by (its segment's); None: never streamed.
    pub learnt_at: Vec<Option<usize>>,
    /// Whether type j is learnt at boundary j for every j (one type per segment, in
    /// order): backward transfer is defined.
    pub one_per_boundary: bool,
}

impl TypeExperiences {
    pub fn of(ev: &VqaEvaluation) -> Self {
        let mut out = TypeExperiences {
            ids: Vec::new(),
            names: Vec::new(),
            learnt_at: Vec::new(),
            one_per_boundary: false,
        };
        let all = || ev.type_ids.iter().zip(&ev.type_names);
        if ev.segment_types.is_empty() {
            for (&id, name) in all() {
                out.push(id, name, Some(0));
            }
            return out;
        }
        for (&k, name) in &ev.segment_types {
            if let Some((&id, _)) = all().find(|(_, n)| *n == name) {
                if !out.ids.contains(&id) {
                    out.push(id, name, Some(k));
                }
            }
        }
        for (&id, name) in all() {
            if !out.ids.contains(&id) {
                out.push(id, name, None);
            }
        }
        out.one_per_boundary = out
            .learnt_at
            .iter()
            .enumerate()
            .all(|(j, at)| at.is_none_or(|k| k == j));
        out
    }

    fn push(&mut self, id: i64, name: &str, at: Option<usize>) {
        self.ids.push(id);
        self.names.push(name.to_string());
        self.learnt_at.push(at);
    }

    /// R of `m`: a row per boundary it scored, a column per type.
    pub fn matrix(&self, m: &MethodResult) -> Matrix {
        m.boundaries
            .iter()
            .map(|b| {
                self.ids
                    .iter()
                    .map(|id| b.score.per_type.get(id).copied())
                    .collect()
            })
            .collect()
    }

    /// R with None before each type is learnt (and for types never learnt): what
    /// forgetting, backward transfer and average incremental accuracy read.
    pub fn learnt(&self, m: &MethodResult) -> Matrix {
        m.boundaries
            .iter()
            .zip(self.matrix(m))
            .map(|(b, row)| {
                row.into_iter()
                    .zip(&self.learnt_at)
                    .map(|(v, at)| v.filter(|_| at.is_some_and(|k| k <= b.boundary)))
                    .collect()
            })
            .collect()
    }

    /// The whole stream's metrics of `m` (fractions), named as in classification.
    pub fn summary(&self, m: &MethodResult) -> [(&'static str, Option<f64>); 3] {
        let learnt = self.learnt(m);
        let avg_inc = mean(
            learnt
                .iter()
                .filter_map(|row| mean(row.iter().flatten().copied())),
        );
        [
            ("average_incremental_accuracy", avg_inc),
            ("forgetting", forgetting(&learnt)),
            (
                "backward_transfer",
                if self.one_per_boundary {
                    backward_transfer(&learnt)
                } else {
                    None
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{BoundaryScore, VqaScore};
    use std::collections::BTreeMap;

    fn method(per_boundary: &[[f64; 2]]) -> MethodResult {
        MethodResult {
            name: "remind".into(),
            boundaries: per_boundary
                .iter()
                .enumerate()
                .map(|(k, acc)| BoundaryScore {
                    boundary: k,
                    position: 10 * (k as u64 + 1),
                    file: Default::default(),
                    score: VqaScore {
                        // Type 7 first in the table, type 3 second.
                        per_type: BTreeMap::from([(7, acc[1]), (3, acc[0])]),
                        mean_per_type: (acc[0] + acc[1]) / 2.0,
                        overall: 0.0,
                    },
                })
                .collect(),
            omega: None,
            omega_note: None,
        }
    }

    fn evaluation(segments: &[(usize, &str)]) -> VqaEvaluation {
        VqaEvaluation {
            type_ids: vec![7, 3],
            type_names: vec!["exist".into(), "count".into()],
            segment_types: segments.iter().map(|(k, n)| (*k, n.to_string())).collect(),
            ..Default::default()
        }
    }

    /// qtype order: count (type 3) learnt in segment 0, exist (type 7) in segment 1.
    #[test]
    fn qtype_columns_follow_the_stream_and_ignore_scores_before_learning() {
        let ev = evaluation(&[(0, "count"), (1, "exist")]);
        let x = TypeExperiences::of(&ev);
        assert_eq!(x.ids, vec![3, 7]);
        assert_eq!(x.learnt_at, vec![Some(0), Some(1)]);
        assert!(x.one_per_boundary);
        // count: 0.8 then 0.5; exist: 0.6 (before learning) then 0.9.
        let m = method(&[[0.8, 0.6], [0.5, 0.9]]);
        assert_eq!(
            x.matrix(&m),
            vec![vec![Some(0.8), Some(0.6)], vec![Some(0.5), Some(0.9)]]
        );
        assert_eq!(x.learnt(&m)[0], vec![Some(0.8), None]);
        let [avg, f, bwt] = x.summary(&m);
        // (0.8 + (0.5 + 0.9) / 2) / 2; count forgets 0.3; exist's 0.6 before it is learnt
        // is not forgotten.
        assert!((avg.1.unwrap() - 0.75).abs() < 1e-12, "{avg:?}");
        assert!((f.1.unwrap() - 0.3).abs() < 1e-12, "{f:?}");
        assert!((bwt.1.unwrap() + 0.3).abs() < 1e-12, "{bwt:?}");
    }

    /// iid order: every type learnt from the start; no backward transfer.
    #[test]
    fn iid_types_are_learnt_from_the_first_boundary() {
        let x = TypeExperiences::of(&evaluation(&[]));
        assert_eq!(x.ids, vec![7, 3]);
        assert_eq!(x.learnt_at, vec![Some(0), Some(0)]);
        let m = method(&[[0.8, 0.6], [0.5, 0.9]]);
        let [_, f, bwt] = x.summary(&m);
        // count 0.8 -> 0.5 forgets 0.3; exist 0.6 -> 0.9 forgets -0.3: mean 0.
        assert!(f.1.unwrap().abs() < 1e-12, "{f:?}");
        assert_eq!(bwt.1, None);
    }
}
