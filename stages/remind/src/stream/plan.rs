//! The stream plan, one type for every task: which training item comes when, and where the
//! evaluation boundaries fall.
//! `iid`: one seeded shuffle, a boundary after every 10% of the stream. `qtype` (and the
//! class-incremental order of image classification): items grouped by their group (question
//! type or class) in a seeded shuffled or given order of groups, a boundary at each change.

use anyhow::{ensure, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Iid,
    Qtype,
}

named_enum!(Order, "order", { Iid => "iid", Qtype => "qtype" });

/// A planned stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamPlan {
    /// Item indices in stream order.
    pub items: Vec<usize>,
    /// Exclusive end positions of each segment in `items`; the last is `items.len()`.
    /// Everything before `boundaries[0]` is the base-initialisation set.
    pub boundaries: Vec<usize>,
    /// The group of each segment (qtype order), for reports.
    pub segment_groups: Vec<Option<i64>>,
    /// Class-incremental classification: the classes seen at each evaluation point (the
    /// first is the base classes); empty for VQA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_classes: Vec<usize>,
    /// Whether a point's stream position counts the base-initialisation items (VQA, as the
    /// reference's boundaries do) or only the items streamed after them (classification:
    /// images streamed after the base classes).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub positions_count_base: bool,
    /// The stream order's name (`qtype`, `iid`, `class_iid`, ...) and the seed it was drawn
    /// with: what tells runs of one protocol apart when several are evaluated together
    /// (`remind-evaluate --stream-dir A --stream-dir B`). None in plans written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl StreamPlan {
    /// Builds the plan for items whose groups are `groups`; `segments` is the number of iid
    /// segments (10 in the paper); `group_order` fixes the group order (else seeded shuffle).
    pub fn new(
        order: Order,
        groups: &[i64],
        seed: u64,
        segments: usize,
        group_order: Option<&[i64]>,
    ) -> Result<Self> {
        ensure!(
            !groups.is_empty(),
            "the training split is empty: nothing to stream"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match order {
            Order::Iid => {
                ensure!(segments >= 1, "iid order needs at least one segment");
                let mut items: Vec<usize> = (0..groups.len()).collect();
                items.shuffle(&mut rng);
                let n = items.len();
                // Fewer items than segments would merge segments, and the run would report
                // fewer evaluation points than the config asked for.
                ensure!(
                    segments <= n,
                    "iid order: stream.iid_segments is {segments} but the training split holds {n} items; each segment (one evaluation point) needs at least one item: set it to at most {n}"
                );
                let mut boundaries: Vec<usize> =
                    (1..=segments).map(|k| (n * k).div_ceil(segments)).collect();
                boundaries.dedup();
                let segment_groups = vec![None; boundaries.len()];
                Ok(Self::of_segments(items, boundaries, segment_groups).drawn(order.name(), seed))
            }
            Order::Qtype => {
                let mut present: Vec<i64> = groups.to_vec();
                present.sort_unstable();
                present.dedup();
                let order: Vec<i64> = match group_order {
                    Some(given) => {
                        for g in &present {
                            ensure!(
                                given.contains(g),
                                "group {g} occurs in the data but not in the given group order"
                            );
                        }
                        given
                            .iter()
                            .copied()
                            .filter(|g| present.contains(g))
                            .collect()
                    }
                    None => {
                        let mut o = present.clone();
                        o.shuffle(&mut rng);
                        o
                    }
                };
                let mut items = Vec::with_capacity(groups.len());
                let mut boundaries = Vec::new();
                let mut segment_groups = Vec::new();
                for g in order {
                    let mut members: Vec<usize> =
                        (0..groups.len()).filter(|&i| groups[i] == g).collect();
                    members.shuffle(&mut rng);
                    items.extend(members);
                    boundaries.push(items.len());
                    segment_groups.push(Some(g));
                }
                Ok(Self::of_segments(items, boundaries, segment_groups)
                    .drawn(Order::Qtype.name(), seed))
            }
        }
    }

    /// The plan, recording the order it follows and the seed it was drawn with.
    pub fn drawn(self, order: &str, seed: u64) -> Self {
        Self {
            order: Some(order.to_string()),
            seed: Some(seed),
            ..self
        }
    }

    /// A VQA plan: items in stream order, segment ends, the group of each segment;
    /// positions count the base-initialisation items.
    fn of_segments(
        items: Vec<usize>,
        boundaries: Vec<usize>,
        segment_groups: Vec<Option<i64>>,
    ) -> Self {
        Self {
            items,
            boundaries,
            segment_groups,
            seen_classes: Vec::new(),
            positions_count_base: true,
            order: None,
            seed: None,
        }
    }

    /// Number of base-initialisation items (the first segment).
    pub fn base_len(&self) -> usize {
        self.boundaries[0]
    }

    /// The stream position reported for evaluation point `k` (see
    /// [`positions_count_base`](Self::positions_count_base)).
    pub fn position(&self, k: usize) -> usize {
        if self.positions_count_base {
            self.boundaries[k]
        } else {
            self.boundaries[k] - self.boundaries[0]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtype_groups_items_and_marks_each_change() {
        let groups = [2, 0, 1, 2, 0, 0, 1];
        let p = StreamPlan::new(Order::Qtype, &groups, 3, 10, None).unwrap();
        assert_eq!(p.items.len(), 7);
        let mut start = 0;
        for (b, g) in p.boundaries.iter().zip(&p.segment_groups) {
            assert!(p.items[start..*b].iter().all(|&i| Some(groups[i]) == *g));
            start = *b;
        }
        assert_eq!(p.boundaries.len(), 3);
        let mut sorted = p.items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        assert_eq!(
            p,
            StreamPlan::new(Order::Qtype, &groups, 3, 10, None).unwrap()
        );
        let fixed = StreamPlan::new(Order::Qtype, &groups, 3, 10, Some(&[1, 0, 2])).unwrap();
        assert_eq!(fixed.segment_groups, vec![Some(1), Some(0), Some(2)]);
        assert!(StreamPlan::new(Order::Qtype, &groups, 3, 10, Some(&[1, 0])).is_err());
    }

    #[test]
    fn iid_has_ten_boundaries() {
        let groups = vec![0; 95];
        let p = StreamPlan::new(Order::Iid, &groups, 1, 10, None).unwrap();
        assert_eq!(p.boundaries.len(), 10);
        assert_eq!(*p.boundaries.last().unwrap(), 95);
        assert_eq!(p.base_len(), 10);
        let all = StreamPlan::new(Order::Iid, &groups, 1, 95, None).unwrap();
        assert_eq!(all.boundaries.len(), 95);
        let e = StreamPlan::new(Order::Iid, &groups, 1, 96, None).unwrap_err();
        assert!(
            e.to_string().contains("stream.iid_segments is 96")
                && e.to_string().contains("at most 95"),
            "{e}"
        );
    }
}
