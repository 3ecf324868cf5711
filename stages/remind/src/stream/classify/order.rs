//! The stream orders of image classification, as the streaming-learning literature
//! defines them (Hayes, Cahill & Kanan, "Memory Efficient Experience Replay for Streaming
//! Learning", ICRA 2019; Roady, Hayes, Vaidya & Kanan, "Stream-51: Streaming
//! Classification and Novelty Detection from Videos", CVPRW 2020), which REMIND's paper
//! (section 5, CORe50) uses to probe robustness to ordering:
//!
//! - `class_iid`: classes one after another (in the label table's class order, itself a
//!   seeded shuffle or a given ordering file), each class's items shuffled. With base
//!   classes this is REMIND's ImageNet protocol (paper, section 4.1), the default.
//! - `iid`: every streamed item in one seeded shuffle.
//! - `instance`: objects one after another in a seeded shuffle, each object's frames in
//!   temporal order (session, then frame index): the temporally correlated stream of video.
//! - `class_instance`: classes one after another (class order), and within a class its
//!   objects in a seeded shuffle, each object's frames in temporal order.
//!
//! The base-initialisation items (the label table's base set) come first in every order;
//! evaluation points fall every `increment` classes in the class orders and every
//! `eval_every` streamed items in the others.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ClassifySettings;
use crate::data::images::labels::{Frame, LabelSet};
use crate::stream::plan::StreamPlan;

/// A stream order of image classification (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamOrder {
    #[default]
    ClassIid,
    Iid,
    Instance,
    ClassInstance,
}

named_enum!(StreamOrder, "stream order", {
    ClassIid => "class_iid",
    Iid => "iid",
    Instance => "instance",
    ClassInstance => "class_instance",
});

impl StreamOrder {
    /// Whether classes arrive one after another (evaluation per class increment).
    pub fn by_class(self) -> bool {
        matches!(self, Self::ClassIid | Self::ClassInstance)
    }

    /// Whether each object's frames stream in temporal order (needs the video columns).
    pub fn by_instance(self) -> bool {
        matches!(self, Self::Instance | Self::ClassInstance)
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `rows` grouped by object, the objects in a seeded shuffle, each object's rows in
/// temporal order (session, frame).
fn by_object(rows: &[usize], frames: &[Frame], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut objects: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        objects.entry(frames[r].instance).or_default().push(r);
    }
    let mut runs: Vec<Vec<usize>> = objects.into_values().collect();
    runs.shuffle(rng);
    runs.into_iter()
        .flat_map(|mut run| {
            run.sort_by_key(|&r| (frames[r].session, frames[r].frame, r));
            run
        })
        .collect()
}

/// The stream plan of `s.order` over the training items of `set` (see the module docs).
/// Positions count the streamed items only. Errors: a class without training items, no
/// item left to stream, an instance order on a table without the video columns.
pub fn stream_plan(set: &LabelSet, s: &ClassifySettings) -> Result<StreamPlan> {
    let (b, k) = (set.base_classes, set.num_classes());
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (row, &y) in set.train.labels.iter().enumerate() {
        by_class[y as usize].push(row);
    }
    if let Some(c) = (0..k).find(|&c| by_class[c].is_empty()) {
        bail!(
            "{}: class {c} ('{}') has no training images",
            set.path.display(),
            set.class_names[c]
        );
    }
    let frames = if s.order.by_instance() {
        Some(set.frames_for(s.order.name())?)
    } else {
        None
    };
    let is_stream = |r: &usize| !set.train_base[*r];
    ensure!(
        set.train_base.iter().any(|b| !b),
        "{}: every training item is a base-initialisation item: nothing to stream",
        set.path.display()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x636c_6173);
    let mut stream = Vec::new();
    let mut ends = Vec::new();
    let mut seen_classes = vec![b];
    if s.order.by_class() {
        if let Some(every) = s.eval_every {
            // Said, not refused: one config may serve every order (pipelines/core50.yaml).
            eprintln!(
                "stream-train: note: eval_every {every} is not used: the {} order evaluates \
                 after every class increment (classify_stream.increment {})",
                s.order.name(),
                s.increment
            );
        }
        let last = (0..k).rev().find(|&c| by_class[c].iter().any(is_stream));
        let mut streamed = 0;
        for (c, rows) in by_class.iter().enumerate() {
            let mut rows: Vec<usize> = match frames {
                // Every class's rows are shuffled, the base classes' too: so the draws of
                // the stream's classes are those of the plan before base sets existed.
                None => {
                    let mut all = rows.clone();
                    all.shuffle(&mut rng);
                    all.retain(is_stream);
                    all
                }
                Some(frames) => {
                    let rows: Vec<usize> = rows.iter().copied().filter(is_stream).collect();
                    by_object(&rows, frames, &mut rng)
                }
            };
            if rows.is_empty() {
                continue;
            }
            if let Some(cap) = s.max_train_per_class {
                rows.truncate(cap.max(1));
            }
            stream.extend(rows);
            streamed += 1;
            if streamed % s.increment == 0 || Some(c) == last {
                ends.push(stream.len());
                seen_classes.push((c + 1).max(b));
            }
        }
    } else {
        let rows: Vec<usize> = (0..set.train.len()).filter(is_stream).collect();
        stream = match frames {
            None => {
                let mut rows = rows;
                rows.shuffle(&mut rng);
                rows
            }
            Some(frames) => by_object(&rows, frames, &mut rng),
        };
        let n = stream.len();
        let every = s.eval_every.unwrap_or(n.div_ceil(10)).max(1);
        ends = (1..=n.div_ceil(every))
            .map(|i| (i * every).min(n))
            .collect();
        // Every class is scored at every point: an iid or instance stream has no "classes
        // seen so far" (the base set spans the classes it spans).
        seen_classes = vec![k; ends.len() + 1];
    }
    let base = set.base_rows();
    let n = base.len();
    let mut boundaries = vec![n];
    boundaries.extend(ends.iter().map(|e| n + e));
    let mut items = base;
    items.extend(stream);
    Ok(StreamPlan {
        items,
        segment_groups: vec![None; boundaries.len()],
        boundaries,
        seen_classes,
        positions_count_base: false,
        order: None,
        seed: None,
    }
    .drawn(s.order.name(), s.seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::labels::Items;
    use std::path::PathBuf;

    fn positions(p: &StreamPlan) -> Vec<usize> {
        (0..p.boundaries.len()).map(|k| p.position(k)).collect()
    }

    fn items(labels: &[i64]) -> Items {
        Items {
            ids: (0..labels.len() as u64).collect(),
            labels: labels.to_vec(),
            sources: vec![String::new(); labels.len()],
        }
    }

    /// Class-based base set: the items of labels 0..base.
    fn set(labels_train: &[i64], base: usize, k: usize) -> LabelSet {
        LabelSet {
            path: PathBuf::from("labels.parquet"),
            train: items(labels_train),
            val: items(&[0]),
            class_names: (0..k).map(|c| c.to_string()).collect(),
            base_classes: base,
            train_base: labels_train.iter().map(|&l| (l as usize) < base).collect(),
            train_frames: None,
            image_root: None,
        }
    }

    /// Video data: `k` classes of 2 objects, sessions 1..=3 of 4 frames, in a scrambled
    /// table order; session 1 is the base set.
    fn video_set(k: usize) -> LabelSet {
        let mut rows = Vec::new();
        for c in 0..k as i64 {
            for o in 0..2 {
                for session in 1..=3 {
                    for frame in 0..4 {
                        rows.push((
                            c,
                            Frame {
                                instance: 10 * c + o + 1,
                                session,
                                frame,
                            },
                        ));
                    }
                }
            }
        }
        // A table order that is not the temporal one.
        rows.sort_by_key(|(_, f)| (f.frame * 7 + f.session * 3 + f.instance) % 11);
        let labels: Vec<i64> = rows.iter().map(|r| r.0).collect();
        LabelSet {
            train_base: rows.iter().map(|r| r.1.session == 1).collect(),
            train_frames: Some(rows.iter().map(|r| r.1).collect()),
            ..set(&labels, k, k)
        }
    }

    fn settings(order: StreamOrder, seed: u64) -> ClassifySettings {
        ClassifySettings {
            order,
            seed,
            increment: 1,
            eval_every: Some(10),
            ..Default::default()
        }
    }

    /// Runs of equal `key` over the streamed items, in stream order.
    fn runs<K: PartialEq + Copy>(p: &StreamPlan, key: impl Fn(usize) -> K) -> Vec<K> {
        let mut out: Vec<K> = Vec::new();
        for &r in &p.items[p.base_len()..] {
            if out.last() != Some(&key(r)) {
                out.push(key(r));
            }
        }
        out
    }

    fn is_permutation_of_stream(p: &StreamPlan, set: &LabelSet) {
        let mut all = p.items.clone();
        all.sort_unstable();
        assert_eq!(all, (0..set.train.len()).collect::<Vec<_>>());
        assert!(p.items[..p.base_len()].iter().all(|&r| set.train_base[r]));
        assert!(p.items[p.base_len()..].iter().all(|&r| !set.train_base[r]));
    }

    #[test]
    fn class_iid_streams_classes_in_order_with_increments() {
        let labels = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 4];
        let s = ClassifySettings {
            increment: 2,
            ..Default::default()
        };
        let p = stream_plan(&set(&labels, 1, 5), &s).unwrap();
        assert_eq!(p.items[..p.base_len()], [0, 5]);
        assert_eq!(p.seen_classes, vec![1, 3, 5]);
        // Classes 1,2 (2 + 3 images), then 3,4 (2 + 3 images).
        assert_eq!(positions(&p), vec![0, 5, 10]);
        assert_eq!(p.boundaries, vec![2, 7, 12]);
        let stream_labels: Vec<i64> = p.items[2..].iter().map(|&r| labels[r]).collect();
        assert_eq!(stream_labels, vec![1, 1, 2, 2, 2, 3, 3, 4, 4, 4]);
        let capped = ClassifySettings {
            increment: 3,
            max_train_per_class: Some(1),
            ..Default::default()
        };
        let p = stream_plan(&set(&labels, 1, 5), &capped).unwrap();
        // A last, partial increment still gets an evaluation point.
        assert_eq!(p.seen_classes, vec![1, 4, 5]);
        assert_eq!(positions(&p), vec![0, 3, 4]);
    }

    #[test]
    fn a_class_without_images_is_refused() {
        let e = stream_plan(&set(&[0, 1, 3], 1, 4), &ClassifySettings::default()).unwrap_err();
        assert!(e.to_string().contains("class 2"), "{e}");
    }

    #[test]
    fn iid_is_one_shuffle_scored_on_every_class_every_n_items() {
        let set = video_set(3);
        let p = stream_plan(&set, &settings(StreamOrder::Iid, 1)).unwrap();
        is_permutation_of_stream(&p, &set);
        // 48 streamed items, a point every 10 and at the end.
        assert_eq!(positions(&p), vec![0, 10, 20, 30, 40, 48]);
        assert_eq!(p.seen_classes, vec![3; 6]);
        // Not grouped by class: far more class runs than classes.
        assert!(runs(&p, |r| set.train.labels[r]).len() > 10);
    }

    #[test]
    fn instance_streams_each_object_contiguous_in_temporal_order() {
        let set = video_set(3);
        let frames = set.train_frames.as_ref().unwrap();
        let p = stream_plan(&set, &settings(StreamOrder::Instance, 1)).unwrap();
        is_permutation_of_stream(&p, &set);
        let objects = runs(&p, |r| frames[r].instance);
        assert_eq!(objects.len(), 6, "each object in one run: {objects:?}");
        let stream = &p.items[p.base_len()..];
        for w in stream.windows(2) {
            let (a, b) = (frames[w[0]], frames[w[1]]);
            if a.instance == b.instance {
                assert!(
                    (a.session, a.frame) < (b.session, b.frame),
                    "{a:?} then {b:?}"
                );
            }
        }
        // Objects of one class need not be adjacent: the objects are shuffled.
        assert_eq!(p.seen_classes, vec![3; p.boundaries.len()]);
    }

    #[test]
    fn class_instance_streams_classes_then_objects_in_temporal_order() {
        let set = video_set(4);
        let frames = set.train_frames.as_ref().unwrap();
        let p = stream_plan(&set, &settings(StreamOrder::ClassInstance, 3)).unwrap();
        is_permutation_of_stream(&p, &set);
        assert_eq!(runs(&p, |r| set.train.labels[r]), vec![0, 1, 2, 3]);
        assert_eq!(runs(&p, |r| frames[r].instance).len(), 8);
        let stream = &p.items[p.base_len()..];
        for w in stream.windows(2) {
            let (a, b) = (frames[w[0]], frames[w[1]]);
            if a.instance == b.instance {
                assert!((a.session, a.frame) < (b.session, b.frame));
            }
        }
        // A point per class (increment 1), every class scored (the base set covers all).
        assert_eq!(positions(&p), vec![0, 16, 32, 48, 64]);
        assert_eq!(p.seen_classes, vec![4; 5]);
    }

    #[test]
    fn each_order_is_a_function_of_its_seed() {
        let set = video_set(4);
        for order in [
            StreamOrder::ClassIid,
            StreamOrder::Iid,
            StreamOrder::Instance,
            StreamOrder::ClassInstance,
        ] {
            let a = stream_plan(&set, &settings(order, 5)).unwrap();
            assert_eq!(
                a,
                stream_plan(&set, &settings(order, 5)).unwrap(),
                "{order}"
            );
            assert_ne!(
                a,
                stream_plan(&set, &settings(order, 6)).unwrap(),
                "{order}"
            );
        }
    }

    #[test]
    fn instance_orders_need_the_video_columns() {
        let labels = [0, 1, 2, 0, 1, 2];
        for order in [StreamOrder::Instance, StreamOrder::ClassInstance] {
            let e = stream_plan(&set(&labels, 1, 3), &settings(order, 0)).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("instance") && msg.contains("labels.parquet"),
                "{msg}"
            );
        }
        // The other orders stream data without them.
        for order in [StreamOrder::Iid, StreamOrder::ClassIid] {
            stream_plan(&set(&labels, 1, 3), &settings(order, 0)).unwrap();
        }
    }
}
