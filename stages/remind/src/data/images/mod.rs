//! Image-classification data import (the ImageNet protocol of REMIND: class-incremental
//! streaming): reads Fashion-MNIST-style IDX files, an ImageNet-style image folder or
//! CORe50's release layout, fixes the class order and writes the labels table the later
//! stages join on.
//!
//! Outputs under the output folder:
//!
//! - `images/{train,val}/<class>/<NNNNN>.png` (IDX mode only): the kept images as 8-bit
//!   grayscale PNGs, `NNNNN` the item's index in its IDX file (zero-padded to 5 digits, more
//!   when the file holds more items) and `<class>` the class name made file-system safe
//!   (characters other than ASCII letters, digits, `-`, `_` and `.` become `_`, as does a
//!   leading `.`; a name that collides gets `_2`, `_3`, ...). Folder mode copies nothing:
//!   its image root is the given folder.
//! - `labels.parquet` (kind `labels`): one row per kept item in id order: `id`, `split`
//!   (`train`/`val`), `source` (path relative to the image root, `/`-separated),
//!   `class_name` (the original name), `label` (position in the class order). The id is
//!   the item's position in `list_images(image_root, IdFrom::Sorted)`, the id
//!   `remind-extract-features --id-from sorted` gives it. Metadata: `remind.image_root`,
//!   `remind.num_classes`, `remind.base_classes`. CORe50 adds the columns `instance` (the
//!   object, 1..50), `session`, `frame` and `base` (training items of the base sessions).
//! - `base_train.parquet` (kind `ids`): the ids of the base-initialisation items: the
//!   training items of the first `base_classes` classes of the order, or for CORe50 the
//!   frames of the base objects in the base sessions (`remind-fit-pq --ids` reads it).
//! - `class_order.txt`: the class order, one original name per line.
//! - `import_report.json`: counts per split and class, the files read, seed, outputs.
//!
//! Everything is read and checked before anything is written; every file is written
//! atomically and the PNG folder is written under a temporary name and renamed into place
//! at the end.

pub mod class_order;
mod core50;
pub mod folder;
pub mod idx;
pub mod labels;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artifact::atomic::write_bytes;
use crate::artifact::{write_table, write_table_with, Producer};
use crate::backbone::features::images::{list_images, IdFrom};
use crate::run::{config_hash, Progress};

const LOG: &str = "remind-import-images";

/// A split of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train = 0,
    Val = 1,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Config section `import_images` (every key is also a flag of `remind-import-images`).
///
/// - `idx`: folder holding the four IDX files of an MNIST-format data set,
///   `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, raw or gzipped (`.gz`; gzip is
///   recognised by its magic). Train is `train-*`, val is `t10k-*`.
/// - `folder`: ImageNet-style root with `train/<class>/*` and `val/<class>/*` images.
///   Exactly one of `idx` and `folder` must be given.
/// - `out`: output folder.
/// - `class_names`: names of IDX labels 0..n-1 (default: the label numbers "0", "1", ...);
///   IDX only.
/// - `class_order`: ordering file, one class name per line (blank lines and surrounding
///   whitespace ignored); label = position in it; every class exactly once. Default: the
///   sorted class names shuffled with `ChaCha8Rng::seed_from_u64(seed)`.
/// - `seed` (default 0): class-order shuffle and per-class subsampling.
/// - `base_classes` (default 1): the first `base_classes` classes of the order are the
///   base-initialisation classes (`base_train.parquet`); 1 to number of classes - 1.
/// - `max_train_per_class`, `max_val_per_class`: keep at most this many items per class
///   and split, a seeded sample kept in original order (default: all).
/// - `core50`: CORe50's release root (`s{1..11}/o{1..50}/C_ss_oo_fff.png`): the classes
///   are its 10 categories, each item carries its object (`instance`), session and frame.
///   With it only: `train_sessions` (default 1, 2, 4, 5, 6, 8, 9, 11) and `test_sessions`
///   (3, 7, 10), the release's split (CORe50 paper, section 4). The base-initialisation
///   set is the frames of the first `base_objects_per_category` objects (default 1) of every
///   category in `base_sessions` (default: every training session); `base_classes` is unused (our
///   choice, see README "CORe50");
///   `frame_step` (default 1): keep the frames whose index is a multiple of it (20 keeps
///   one frame a second of the 20 fps release). `train_list` and `test_list` (together):
///   the release's file lists (one frame path relative to the root per line, then its
///   label, which is not read): only the listed frames are imported, split as listed, and
///   their sessions are the default training and test sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportImagesConfig {
    pub idx: Option<PathBuf>,
    pub folder: Option<PathBuf>,
    pub out: PathBuf,
    pub class_names: Option<Vec<String>>,
    pub class_order: Option<PathBuf>,
    pub seed: u64,
    pub base_classes: usize,
    pub max_train_per_class: Option<usize>,
    pub max_val_per_class: Option<usize>,
    // The CORe50 keys are left out of the config hash while unset, so the hashes of
    // other imports stay what they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core50: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_sessions: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_sessions: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_sessions: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_objects_per_category: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_list: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_list: Option<PathBuf>,
}

impl Default for ImportImagesConfig {
    fn default() -> Self {
        Self {
            idx: None,
            folder: None,
            out: PathBuf::new(),
            class_names: None,
            class_order: None,
            seed: 0,
            base_classes: 1,
            max_train_per_class: None,
            max_val_per_class: None,
            core50: None,
            train_sessions: None,
            test_sessions: None,
            base_sessions: None,
            base_objects_per_category: None,
            frame_step: None,
            train_list: None,
            test_list: None,
        }
    }
}

/// Where the images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Idx,
    Folder,
    Core50,
}

impl ImportImagesConfig {
    /// The source kind and its path: exactly one of `idx`, `folder`, `core50`.
    pub fn source(&self) -> Result<(SourceKind, &Path)> {
        let given: Vec<(SourceKind, &Path)> = [
            (SourceKind::Idx, &self.idx),
            (SourceKind::Folder, &self.folder),
            (SourceKind::Core50, &self.core50),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_deref().map(|p| (k, p)))
        .collect();
        match given[..] {
            [one] => Ok(one),
            [] => bail!("give --idx, --folder or --core50 (or set one in the config)"),
            _ => bail!("give one of --idx, --folder and --core50, not several"),
        }
    }

    fn max_per_class(&self, split: Split) -> Option<usize> {
        match split {
            Split::Train => self.max_train_per_class,
            Split::Val => self.max_val_per_class,
        }
    }

    fn check(&self) -> Result<(SourceKind, &Path)> {
        let source = self.source()?;
        ensure!(
            !self.out.as_os_str().is_empty(),
            "give --out (or import_images.out in the config)"
        );
        for split in [Split::Train, Split::Val] {
            ensure!(
                self.max_per_class(split) != Some(0),
                "import_images.max_{}_per_class is 0: expected at least 1 (or unset for all)",
                split.name()
            );
        }
        if source.0 != SourceKind::Core50 {
            for (key, set) in [
                ("train_sessions", self.train_sessions.is_some()),
                ("test_sessions", self.test_sessions.is_some()),
                ("base_sessions", self.base_sessions.is_some()),
                (
                    "base_objects_per_category",
                    self.base_objects_per_category.is_some(),
                ),
                ("frame_step", self.frame_step.is_some()),
                ("train_list", self.train_list.is_some()),
                ("test_list", self.test_list.is_some()),
            ] {
                ensure!(
                    !set,
                    "import_images.{key} applies to CORe50 (import_images.core50) only"
                );
            }
        }
        ensure!(
            source.0 == SourceKind::Idx || self.class_names.is_none(),
            "import_images.class_names applies to IDX files only (folder classes are named \
             by their folders)"
        );
        Ok(source)
    }
}

/// One kept item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub split: Split,
    /// Index into [`Prepared::classes`].
    pub class: usize,
    /// Path relative to the image root, `/`-separated.
    pub rel: String,
    /// Index of the item in its IDX file (IDX mode).
    pub index: usize,
    /// Position in the sorted image listing (IDX mode: set when the PNGs are written).
    pub id: u64,
    /// CORe50: the frame's object, session and index; whether it is a base item.
    pub video: Option<(labels::Frame, bool)>,
}

/// An import read and checked, ready to write.
pub struct Prepared {
    pub kind: SourceKind,
    /// Root the `source` paths are relative to (IDX mode: `out/images`).
    pub image_root: PathBuf,
    /// Original class names (IDX: by label number; folder: sorted folder names).
    pub classes: Vec<String>,
    /// Folder name of each class under `{train,val}/`.
    pub dirs: Vec<String>,
    /// The class order (original names); label = position.
    pub order: Vec<String>,
    /// Label of each class.
    pub labels: Vec<i64>,
    pub base_classes: usize,
    /// Kept items, `(split, class)` groups in original order.
    pub items: Vec<Item>,
    /// Items available per class and split, before subsampling.
    pub available: Vec<[usize; 2]>,
    /// The IDX data (train, val) in IDX mode.
    pub idx: Option<[idx::IdxSplit; 2]>,
    pub sources: Vec<PathBuf>,
    /// `file <path>` or `seeded shuffle`.
    pub order_from: String,
    /// Folder mode: images outside `train/` and `val/`.
    pub ignored: usize,
    pub cfg: ImportImagesConfig,
}

/// Counts of one split in the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitReport {
    pub items: usize,
    pub available: usize,
}

/// One class in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub label: i64,
    pub name: String,
    pub folder: String,
    pub base: bool,
    pub train: usize,
    pub val: usize,
    pub train_available: usize,
    pub val_available: usize,
}

/// `import_report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImportImagesReport {
    pub source: SourceKind,
    pub sources: Vec<PathBuf>,
    pub image_root: PathBuf,
    /// IDX mode: image height and width of each split.
    pub image_size: BTreeMap<String, [usize; 2]>,
    pub seed: u64,
    pub class_order: String,
    pub num_classes: usize,
    pub base_classes: usize,
    pub base_train_items: usize,
    pub max_train_per_class: Option<usize>,
    pub max_val_per_class: Option<usize>,
    pub splits: BTreeMap<String, SplitReport>,
    /// In label order.
    pub classes: Vec<ClassReport>,
    pub ignored_images: usize,
    pub outputs: Vec<PathBuf>,
}

/// Checks class names can round-trip through `class_order.txt`: non-empty, one line, no
/// surrounding whitespace, unique.
fn check_class_names(what: &str, names: &[String]) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        ensure!(!name.is_empty(), "{what}: empty class name");
        ensure!(
            !name.contains(['\n', '\r']) && name.trim() == name,
            "{what}: class name '{name}' has line breaks or surrounding whitespace \
             (class_order.txt could not hold it)"
        );
        ensure!(
            seen.insert(name.as_str()),
            "{what}: class name '{name}' appears twice"
        );
    }
    Ok(())
}

/// File-system-safe, unique folder names for `names` (see the module docs).
pub fn safe_dir_names(names: &[String]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::new();
    names
        .iter()
        .map(|name| {
            let mut safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if safe.is_empty() || safe.starts_with('.') {
                safe.replace_range(..safe.chars().next().map_or(0, char::len_utf8), "_");
            }
            // Compared case-insensitively: case-insensitive file systems would merge them.
            let mut candidate = safe.clone();
            let mut k = 2;
            while used.contains(&candidate.to_ascii_lowercase()) {
                candidate = format!("{safe}_{k}");
                k += 1;
            }
            used.insert(candidate.to_ascii_lowercase());
            candidate
        })
        .collect()
}

/// Indices `0..n` to keep: all, or a seeded sample of `max`, ascending.
fn subsample(rng: &mut ChaCha8Rng, n: usize, max: Option<usize>) -> Vec<usize> {
    match max {
        Some(m) if m < n => {
            let mut v = sample(rng, n, m).into_vec();
            v.sort_unstable();
            v
        }
        _ => (0..n).collect(),
    }
}

/// The rng of the per-class subsampling (stream 1 of the seed; the class order uses 0).
fn subsample_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rng
}

/// Class order and labels for `classes`.
fn order_classes(cfg: &ImportImagesConfig, classes: &[String]) -> Result<(Vec<String>, String)> {
    match &cfg.class_order {
        Some(path) => Ok((
            class_order::read_order(path, classes)?,
            format!("file {}", path.display()),
        )),
        None => Ok((
            class_order::shuffled_order(classes, cfg.seed),
            "seeded shuffle".to_string(),
        )),
    }
}

/// What a source yields, before the class order.
struct Loaded {
    classes: Vec<String>,
    dirs: Vec<String>,
    items: Vec<Item>,
    available: Vec<[usize; 2]>,
    idx: Option<[idx::IdxSplit; 2]>,
    sources: Vec<PathBuf>,
    image_root: PathBuf,
    ignored: usize,
}

/// Reads and checks the IDX data set in `dir`.
fn load_idx(cfg: &ImportImagesConfig, dir: &Path) -> Result<Loaded> {
    eprintln!("{LOG}: reading IDX files in {}", dir.display());
    let splits = [
        idx::read_split(dir, "train")?,
        idx::read_split(dir, "t10k")?,
    ];
    let classes: Vec<String> = match &cfg.class_names {
        Some(names) => {
            ensure!(
                !names.is_empty(),
                "import_images.class_names is empty: expected one name per IDX label"
            );
            for s in &splits {
                if let Some((i, l)) = s
                    .labels
                    .labels
                    .iter()
                    .enumerate()
                    .find(|(_, &l)| l as usize >= names.len())
                {
                    bail!(
                        "{}: item {i} has label {l}, but only {} class names are given \
                         (labels 0 to {})",
                        s.labels.path.display(),
                        names.len(),
                        names.len() - 1
                    );
                }
            }
            names.clone()
        }
        None => {
            let max = splits
                .iter()
                .flat_map(|s| s.labels.labels.iter().copied())
                .max()
                .with_context(|| format!("{}: the IDX files hold no items", dir.display()))?;
            (0..=max).map(|l| l.to_string()).collect()
        }
    };
    check_class_names("import_images.class_names", &classes)?;
    let dirs = safe_dir_names(&classes);

    let mut available = vec![[0usize; 2]; classes.len()];
    let mut items = Vec::new();
    let mut rng = subsample_rng(cfg.seed);
    for (split, s) in [Split::Train, Split::Val].into_iter().zip(&splits) {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
        for (i, &l) in s.labels.labels.iter().enumerate() {
            members[l as usize].push(i);
        }
        let empty: Vec<String> = (0..classes.len())
            .filter(|&c| members[c].is_empty())
            .map(|c| format!("label {c} '{}'", classes[c]))
            .collect();
        ensure!(
            empty.is_empty(),
            "{}: class(es) with no items: {}",
            s.labels.path.display(),
            empty.join(", ")
        );
        let width = s.images.count.saturating_sub(1).to_string().len().max(5);
        for (c, m) in members.iter().enumerate() {
            available[c][split as usize] = m.len();
            for k in subsample(&mut rng, m.len(), cfg.max_per_class(split)) {
                let index = m[k];
                items.push(Item {
                    split,
                    class: c,
                    rel: format!("{}/{}/{index:0width$}.png", split.name(), dirs[c]),
                    index,
                    id: 0,
                    video: None,
                });
            }
        }
    }
    let sources = splits
        .iter()
        .flat_map(|s| [s.images.path.clone(), s.labels.path.clone()])
        .collect();
    Ok(Loaded {
        classes,
        dirs,
        items,
        available,
        idx: Some(splits),
        sources,
        image_root: cfg.out.join("images"),
        ignored: 0,
    })
}

/// Scans and checks the ImageNet-style folder `root`.
fn load_folder(cfg: &ImportImagesConfig, root: &Path) -> Result<Loaded> {
    eprintln!("{LOG}: listing {}", root.display());
    let scan = folder::scan(root)?;
    check_class_names(&root.display().to_string(), &scan.classes)?;
    let mut groups: BTreeMap<(Split, usize), Vec<&folder::FolderImage>> = BTreeMap::new();
    for im in &scan.images {
        groups.entry((im.split, im.class)).or_default().push(im);
    }
    let mut available = vec![[0usize; 2]; scan.classes.len()];
    let mut items = Vec::new();
    let mut rng = subsample_rng(cfg.seed);
    for ((split, class), members) in &groups {
        available[*class][*split as usize] = members.len();
        for k in subsample(&mut rng, members.len(), cfg.max_per_class(*split)) {
            let im = members[k];
            items.push(Item {
                split: *split,
                class: *class,
                rel: im.rel.clone(),
                index: k,
                id: im.id,
                video: None,
            });
        }
    }
    Ok(Loaded {
        dirs: scan.classes.clone(),
        classes: scan.classes,
        items,
        available,
        idx: None,
        sources: vec![root.to_path_buf()],
        image_root: root.to_path_buf(),
        ignored: scan.ignored,
    })
}

/// Reads and checks everything `cfg` names; writes nothing.
pub fn load(cfg: &ImportImagesConfig) -> Result<Prepared> {
    let (kind, path) = cfg.check()?;
    let loaded = match kind {
        SourceKind::Idx => load_idx(cfg, path)?,
        SourceKind::Folder => load_folder(cfg, path)?,
        SourceKind::Core50 => core50::load(cfg, path)?,
    };
    let classes = loaded.classes;
    let n = classes.len();
    ensure!(
        kind == SourceKind::Core50 || (cfg.base_classes >= 1 && cfg.base_classes < n),
        "import_images.base_classes is {}: expected 1 to {} (the data has {n} classes, and at \
         least one must stream after the base initialisation)",
        cfg.base_classes,
        n.saturating_sub(1)
    );
    let (order, order_from) = order_classes(cfg, &classes)?;
    let position: HashMap<&str, i64> = order
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as i64))
        .collect();
    let labels: Vec<i64> = classes.iter().map(|c| position[c.as_str()]).collect();
    // CORe50: the base classes are those the base sessions cover, which must be the first
    // labels (evaluation scores labels 0..base_classes as the base classes).
    let base_classes = match kind {
        SourceKind::Core50 => core50::base_classes(&loaded.items, &labels, &order)?,
        _ => cfg.base_classes,
    };
    let mut sources = loaded.sources;
    if let Some(p) = &cfg.class_order {
        sources.push(p.clone());
    }
    Ok(Prepared {
        kind,
        image_root: loaded.image_root,
        classes,
        dirs: loaded.dirs,
        order,
        labels,
        base_classes,
        items: loaded.items,
        available: loaded.available,
        idx: loaded.idx,
        sources,
        order_from,
        ignored: loaded.ignored,
        cfg: cfg.clone(),
    })
}

/// A folder being written under a temporary name; removed on drop unless moved into place.
struct StagedDir {
    path: PathBuf,
}

impl StagedDir {
    fn create(parent: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create folder {}", parent.display()))?;
        remove_stale(parent);
        let path = parent.join(format!(".tmp-{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create folder {}", path.display()))?;
        Ok(Self { path })
    }

    /// Renames the folder to `dest`, replacing what was there.
    fn move_to(mut self, dest: &Path) -> Result<()> {
        let d = dest.display();
        let old = dest.with_file_name(format!(".old-images.{}", std::process::id()));
        let replaced = dest.exists();
        if replaced {
            std::fs::rename(dest, &old)
                .with_context(|| format!("cannot move the previous {d} aside"))?;
        }
        std::fs::rename(&self.path, dest)
            .with_context(|| format!("cannot rename {} to {d}", self.path.display()))?;
        self.path = PathBuf::new();
        if replaced {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("cannot remove the previous {d}"))?;
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes temporary folders of earlier imports into `parent` whose process is gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = name
            .strip_prefix(".tmp-images.")
            .or_else(|| name.strip_prefix(".old-images."));
        if let Some(pid) = pid {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn write_png(path: &Path, rows: usize, cols: usize, pixels: &[u8]) -> Result<()> {
    let p = path.display();
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {p}"))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), cols as u32, rows as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .with_context(|| format!("cannot write {p}"))?;
    w.write_image_data(pixels)
        .with_context(|| format!("cannot write {p}"))?;
    w.finish().with_context(|| format!("cannot write {p}"))?;
    Ok(())
}

/// Writes the kept IDX images as PNGs into a staged folder under `out`; sets the items' ids
/// from the listing of that folder.
fn write_pngs(p: &Prepared, splits: &[idx::IdxSplit; 2], items: &mut [Item]) -> Result<StagedDir> {
    let staged = StagedDir::create(&p.cfg.out, "images")?;
    for split in [Split::Train, Split::Val] {
        for d in &p.dirs {
            let dir = staged.path.join(split.name()).join(d);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
    }
    let mut progress = Progress::new(&format!("{LOG}: writing PNGs"), items.len() as u64);
    for item in items.iter() {
        let images = &splits[item.split as usize].images;
        write_png(
            &staged.path.join(&item.rel),
            images.rows,
            images.cols,
            images.image(item.index),
        )?;
        progress.inc(1);
    }
    progress.finish();
    let listing = list_images(&staged.path, IdFrom::Sorted)?;
    ensure!(
        listing.len() == items.len(),
        "{}: {} images listed, {} written",
        staged.path.display(),
        listing.len(),
        items.len()
    );
    let ids: HashMap<&str, u64> = listing.iter().map(|i| (i.rel.as_str(), i.id)).collect();
    for item in items.iter_mut() {
        item.id = *ids
            .get(item.rel.as_str())
            .with_context(|| format!("{}: not in the image listing", item.rel))?;
    }
    Ok(staged)
}

/// Writes the artifacts of `p` under `cfg.out`; returns the report (with the outputs).
pub fn write(p: &Prepared, producer: &Producer) -> Result<ImportImagesReport> {
    let out = &p.cfg.out;
    let mut items = p.items.clone();
    let staged = match (&p.idx, p.kind) {
        (Some(splits), SourceKind::Idx) => Some(write_pngs(p, splits, &mut items)?),
        _ => None,
    };
    items.sort_by_key(|i| i.id);

    eprintln!("{LOG}: writing tables in {}", out.display());
    let label = |i: &Item| p.labels[i.class];
    let base = |i: &Item| match i.video {
        Some((_, base)) => base,
        None => i.split == Split::Train && label(i) < p.base_classes as i64,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(items.iter().map(|i| i.id))),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|i| i.split.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|i| i.rel.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|i| p.classes[i.class].as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(items.iter().map(label))),
    ];
    let meta = HashMap::from([
        (
            "remind.image_root".to_string(),
            p.image_root.display().to_string(),
        ),
        (
            "remind.num_classes".to_string(),
            p.classes.len().to_string(),
        ),
        (
            "remind.base_classes".to_string(),
            p.base_classes.to_string(),
        ),
    ]);
    let optional = match p.kind {
        SourceKind::Core50 => core50::columns(&items, base),
        _ => Vec::new(),
    };
    let mut outputs = vec![write_table_with(
        &out.join("labels.parquet"),
        "labels",
        producer,
        columns,
        optional,
        meta.clone(),
    )?];
    let base_ids: Vec<u64> = items.iter().filter(|i| base(i)).map(|i| i.id).collect();
    let base_meta = HashMap::from([
        (
            "remind.image_root".to_string(),
            meta["remind.image_root"].clone(),
        ),
        ("remind.split".to_string(), "base_train".to_string()),
    ]);
    outputs.push(write_table(
        &out.join("base_train.parquet"),
        "ids",
        producer,
        vec![Arc::new(UInt64Array::from_iter_values(
            base_ids.iter().copied(),
        ))],
        base_meta,
    )?);
    let order_path = out.join("class_order.txt");
    let mut order_text = p.order.join("\n");
    order_text.push('\n');
    write_bytes(&order_path, order_text.as_bytes())?;
    outputs.push(order_path);

    let mut splits: BTreeMap<String, SplitReport> = BTreeMap::new();
    for split in [Split::Train, Split::Val] {
        splits.insert(
            split.name().to_string(),
            SplitReport {
                items: items.iter().filter(|i| i.split == split).count(),
                available: p.available.iter().map(|a| a[split as usize]).sum(),
            },
        );
    }
    let mut classes: Vec<ClassReport> = (0..p.classes.len())
        .map(|c| {
            let count = |s: Split| {
                items
                    .iter()
                    .filter(|i| i.class == c && i.split == s)
                    .count()
            };
            ClassReport {
                label: p.labels[c],
                name: p.classes[c].clone(),
                folder: p.dirs[c].clone(),
                base: p.labels[c] < p.base_classes as i64,
                train: count(Split::Train),
                val: count(Split::Val),
                train_available: p.available[c][0],
                val_available: p.available[c][1],
            }
        })
        .collect();
    classes.sort_by_key(|c| c.label);
    let image_size = p
        .idx
        .iter()
        .flat_map(|s| {
            [Split::Train, Split::Val]
                .into_iter()
                .zip(s)
                .map(|(split, s)| (split.name().to_string(), [s.images.rows, s.images.cols]))
        })
        .collect();
    let report_path = out.join("import_report.json");
    if staged.is_some() {
        outputs.push(out.join("images"));
    }
    outputs.push(report_path.clone());
    let report = ImportImagesReport {
        source: p.kind,
        sources: p.sources.clone(),
        image_root: p.image_root.clone(),
        image_size,
        seed: p.cfg.seed,
        class_order: p.order_from.clone(),
        num_classes: p.classes.len(),
        base_classes: p.base_classes,
        base_train_items: base_ids.len(),
        max_train_per_class: p.cfg.max_train_per_class,
        max_val_per_class: p.cfg.max_val_per_class,
        splits,
        classes,
        ignored_images: p.ignored,
        outputs,
    };
    write_bytes(&report_path, &serde_json::to_vec_pretty(&report)?)?;
    if let Some(staged) = staged {
        eprintln!("{LOG}: moving the PNG folder into place");
        staged.move_to(&out.join("images"))?;
    }
    Ok(report)
}

/// Producer stamp of an import with `cfg` (the output folder is not part of the hash).
pub fn producer(cfg: &ImportImagesConfig) -> Result<Producer> {
    let (kind, _) = cfg.source()?;
    let hashed = ImportImagesConfig {
        out: PathBuf::new(),
        ..cfg.clone()
    };
    let kind = match kind {
        SourceKind::Idx => "idx",
        SourceKind::Folder => "folder",
        SourceKind::Core50 => "core50",
    };
    Ok(Producer::new("import-images", &config_hash(&hashed)?).param("source", kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn folder_names_are_safe_and_unique() {
        let got = safe_dir_names(&names(&[
            "T-shirt/top",
            "Ankle boot",
            "T-shirt_top",
            ".hidden",
            "t-SHIRT/TOP",
            "é",
            "a.b",
        ]));
        assert_eq!(
            got,
            names(&[
                "T-shirt_top",
                "Ankle_boot",
                "T-shirt_top_2",
                "_hidden",
                "t-SHIRT_TOP_3",
                "_",
                "a.b"
            ])
        );
    }

    #[test]
    fn subsampling_is_seeded_sorted_and_capped() {
        let a = subsample(&mut subsample_rng(3), 50, Some(7));
        assert_eq!(a.len(), 7);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, subsample(&mut subsample_rng(3), 50, Some(7)));
        assert_ne!(a, subsample(&mut subsample_rng(4), 50, Some(7)));
        assert_eq!(subsample(&mut subsample_rng(3), 4, Some(7)), [0, 1, 2, 3]);
        assert_eq!(subsample(&mut subsample_rng(3), 4, None), [0, 1, 2, 3]);
    }

    #[test]
    fn class_names_must_round_trip_through_the_order_file() {
        check_class_names("x", &names(&["a", "b c"])).unwrap();
        for bad in [&["a", "a"][..], &[""], &[" a"], &["a\nb"]] {
            assert!(check_class_names("x", &names(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exactly_one_source_and_sane_limits() {
        let mut cfg = ImportImagesConfig {
            out: "o".into(),
            ..Default::default()
        };
        assert!(cfg.check().unwrap_err().to_string().contains("give --idx"));
        cfg.idx = Some("i".into());
        cfg.folder = Some("f".into());
        assert!(cfg.check().unwrap_err().to_string().contains("not several"));
        cfg.folder = None;
        cfg.frame_step = Some(2);
        assert!(cfg.check().unwrap_err().to_string().contains("CORe50"));
        cfg.frame_step = None;
        cfg.folder = None;
        cfg.check().unwrap();
        cfg.max_val_per_class = Some(0);
        assert!(cfg.check().is_err());
    }
}
