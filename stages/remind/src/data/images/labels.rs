//! The label table of an image-classification data set (kind `labels`, written by
//! `remind-import-images`): per item its id (the features' row id), split, source path
//! relative to the image root, original class name and ordered label (position in the
//! class order). Table metadata holds the image root and the number of base classes.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{BooleanArray, Int64Array, StringArray, UInt64Array};

use crate::artifact::Table;

pub const IMAGE_ROOT_KEY: &str = "remind.image_root";
pub const BASE_CLASSES_KEY: &str = "remind.base_classes";
pub const NUM_CLASSES_KEY: &str = "remind.num_classes";

/// One split of the label table, in table order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Items {
    pub ids: Vec<u64>,
    pub labels: Vec<i64>,
    /// Paths relative to the image root.
    pub sources: Vec<String>,
}

impl Items {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    fn push(&mut self, id: u64, label: i64, source: &str) {
        self.ids.push(id);
        self.labels.push(label);
        self.sources.push(source.to_string());
    }
}

/// Where a frame of video data sits: its object, session and index in the session's
/// sequence (CORe50's `C_{session}_{object}_{frame}.png`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame {
    pub instance: i64,
    pub session: i64,
    pub frame: i64,
}

/// The columns video data adds; an order that needs them refuses a table without them.
pub const VIDEO_COLUMNS: [&str; 3] = ["instance", "session", "frame"];

/// The whole label table.
#[derive(Debug, Clone)]
pub struct LabelSet {
    pub path: PathBuf,
    pub train: Items,
    pub val: Items,
    /// Class names by ordered label.
    pub class_names: Vec<String>,
    /// The base-initialisation classes are labels `0..base_classes`.
    pub base_classes: usize,
    /// Whether each training item is in the base-initialisation set.
    pub train_base: Vec<bool>,
    /// Per training item, its place in the videos (tables with the video columns).
    pub train_frames: Option<Vec<Frame>>,
    pub image_root: Option<PathBuf>,
}

impl LabelSet {
    pub fn read(path: &Path) -> Result<Self> {
        let t = Table::read(path, "labels")?;
        let p = path.display();
        for c in ["id", "split", "source", "class_name", "label"] {
            t.require_non_null(c)?;
        }
        let ids = t.column::<UInt64Array>("id")?;
        let split = t.column::<StringArray>("split")?;
        let source = t.column::<StringArray>("source")?;
        let names = t.column::<StringArray>("class_name")?;
        let labels = t.column::<Int64Array>("label")?;
        let meta = t.batch.schema_ref().metadata().clone();
        let num_classes: usize = match meta.get(NUM_CLASSES_KEY) {
            Some(v) => v
                .parse()
                .with_context(|| format!("{p}: metadata {NUM_CLASSES_KEY} '{v}' is not a count"))?,
            None => labels.values().iter().max().map_or(0, |&m| m as usize + 1),
        };
        // Bounded before anything is sized from it: a class holds at least one row.
        ensure!(
            num_classes <= t.num_rows(),
            "{p}: metadata {NUM_CLASSES_KEY}: expected at most {} classes (one per row of the \
             table), found {num_classes}",
            t.num_rows()
        );
        let base_classes: usize = meta
            .get(BASE_CLASSES_KEY)
            .with_context(|| format!("{p}: no metadata {BASE_CLASSES_KEY}"))?
            .parse()
            .with_context(|| format!("{p}: metadata {BASE_CLASSES_KEY} is not a count"))?;
        let base_col = if t.has_column("base") {
            t.require_non_null("base")?;
            Some(t.column::<BooleanArray>("base")?)
        } else {
            None
        };
        // With a `base` column the base set is a choice of items, which may cover every
        // class; without it, the base classes' items, and one class must stream after.
        let most = if base_col.is_some() {
            num_classes
        } else {
            num_classes.saturating_sub(1)
        };
        ensure!(
            base_classes >= 1 && base_classes <= most,
            "{p}: metadata {BASE_CLASSES_KEY}: expected 1 to {most} base classes of \
             {num_classes}, found {base_classes}"
        );
        let present: Vec<&str> = VIDEO_COLUMNS
            .into_iter()
            .filter(|c| t.has_column(c))
            .collect();
        let video = match present.len() {
            0 => None,
            3 => {
                let [i, s, f] = VIDEO_COLUMNS;
                for c in VIDEO_COLUMNS {
                    t.require_non_null(c)?;
                }
                Some([
                    t.column::<Int64Array>(i)?,
                    t.column::<Int64Array>(s)?,
                    t.column::<Int64Array>(f)?,
                ])
            }
            _ => bail!(
                "{p}: the video columns come together: expected all of {VIDEO_COLUMNS:?}, found \
                 only {present:?}"
            ),
        };
        let mut train_base = Vec::new();
        let mut train_frames = Vec::new();
        let mut class_names = vec![String::new(); num_classes];
        let (mut train, mut val) = (Items::default(), Items::default());
        // Ids are the features' row ids: one item each (issue #12).
        let mut first_row = std::collections::HashMap::with_capacity(t.num_rows());
        // Items in id order, whatever the table's row order: a table sorted or shuffled by
        // another tool streams and scores the same (predictions are written in id order).
        let mut rows: Vec<usize> = (0..t.num_rows()).collect();
        rows.sort_by_key(|&r| ids.value(r));
        for r in rows {
            if let Some(first) = first_row.insert(ids.value(r), r) {
                bail!(
                    "{p}: column 'id': id {} appears twice (rows {first} and {r})",
                    ids.value(r)
                );
            }
            let label = labels.value(r);
            ensure!(
                label >= 0 && (label as usize) < num_classes,
                "{p}: row {r} (id {}): label {label} outside 0..{num_classes}",
                ids.value(r)
            );
            let name = &mut class_names[label as usize];
            if name.is_empty() {
                *name = names.value(r).to_string();
            } else if name != names.value(r) {
                bail!(
                    "{p}: label {label} names two classes, '{name}' and '{}'",
                    names.value(r)
                );
            }
            match split.value(r) {
                "train" => {
                    train.push(ids.value(r), label, source.value(r));
                    train_base.push(match base_col {
                        Some(b) => b.value(r),
                        None => (label as usize) < base_classes,
                    });
                    if let Some([i, s, f]) = &video {
                        train_frames.push(Frame {
                            instance: i.value(r),
                            session: s.value(r),
                            frame: f.value(r),
                        });
                    }
                }
                "val" => val.push(ids.value(r), label, source.value(r)),
                other => bail!("{p}: row {r}: unknown split '{other}' (expected train or val)"),
            }
        }
        ensure!(!train.is_empty(), "{p}: no training items");
        ensure!(!val.is_empty(), "{p}: no validation items");
        if base_col.is_some() {
            // Evaluation scores labels 0..base_classes as the base classes.
            let mut covered = vec![false; num_classes];
            for (i, _) in train_base.iter().enumerate().filter(|(_, &b)| b) {
                covered[train.labels[i] as usize] = true;
            }
            let expected: Vec<bool> = (0..num_classes).map(|c| c < base_classes).collect();
            ensure!(
                covered == expected,
                "{p}: column 'base': expected base items of exactly labels 0..{base_classes} \
                 ({BASE_CLASSES_KEY}), found labels {:?}",
                (0..num_classes).filter(|&c| covered[c]).collect::<Vec<_>>()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            train,
            val,
            class_names,
            base_classes,
            train_base,
            train_frames: video.is_some().then_some(train_frames),
            image_root: meta.get(IMAGE_ROOT_KEY).map(PathBuf::from),
        })
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Positions in `train` of the base-initialisation items, ascending.
    pub fn base_rows(&self) -> Vec<usize> {
        (0..self.train.len())
            .filter(|&i| self.train_base[i])
            .collect()
    }

    /// Each training item's place in the videos, or an error naming the missing columns:
    /// `order` needs them.
    pub fn frames_for(&self, order: &str) -> Result<&[Frame]> {
        self.train_frames.as_deref().with_context(|| {
            format!(
                "{}: no columns {VIDEO_COLUMNS:?}: order {order} streams each object's frames \
                 in temporal order and needs them (video data such as CORe50: \
                 remind-import-images --core50)",
                self.path.display()
            )
        })
    }

    /// Positions in `items` whose label is below `classes`.
    pub fn among(items: &Items, classes: usize) -> Vec<usize> {
        (0..items.len())
            .filter(|&i| (items.labels[i] as usize) < classes)
            .collect()
    }

    /// The image root: `given` or else the one the table records.
    pub fn root(&self, given: Option<&Path>) -> Result<PathBuf> {
        given
            .map(Path::to_path_buf)
            .or_else(|| self.image_root.clone())
            .with_context(|| {
                format!(
                    "{}: no image root recorded ({IMAGE_ROOT_KEY}); give one",
                    self.path.display()
                )
            })
    }
}
