//! Training machinery shared by every stage that trains: optimisers with checkpointable
//! state ([`optim`]), learning-rate schedules ([`schedule`]) and [`top1_hits`].

pub mod optim;
pub mod schedule;

use tch::{Kind, Tensor};

/// How many rows of `logits` (`[N, K]`) have their largest value at the label in `labels`
/// (`[N]`, int64, same device): the numerator of top-1 accuracy.
pub fn top1_hits(logits: &Tensor, labels: &Tensor) -> i64 {
    logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .sum(Kind::Int64)
        .int64_value(&[])
}
