//! ImageNet-style image folders: `root/train/<class>/*` and `root/val/<class>/*` (PNG or
//! JPEG files, as `list_images` finds them; class folders may nest further).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::Split;
use crate::backbone::features::images::{list_images, IdFrom};

/// One image of the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderImage {
    /// Position in `list_images(root, IdFrom::Sorted)`.
    pub id: u64,
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    pub split: Split,
    /// Index into [`FolderScan::classes`].
    pub class: usize,
}

/// What an ImageNet-style folder holds.
#[derive(Debug, Clone)]
pub struct FolderScan {
    pub root: PathBuf,
    /// Class folder names, sorted byte-wise.
    pub classes: Vec<String>,
    /// The images under `train/` and `val/`, in id order.
    pub images: Vec<FolderImage>,
    /// Images elsewhere under the root (they still take ids in the listing).
    pub ignored: usize,
}

/// The class folders of `dir` (sub-folders, links followed, hidden names skipped).
fn class_folders(dir: &Path) -> Result<BTreeSet<String>> {
    let d = dir.display();
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {d}"))? {
        let entry = entry.with_context(|| format!("cannot list {d}"))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{}: name is not valid UTF-8", entry.path().display()))?;
        if !name.starts_with('.') && entry.path().is_dir() {
            out.insert(name.to_string());
        }
    }
    Ok(out)
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scans the ImageNet-style folder `root`: checks that `train/` and `val/` exist, hold the
/// same class folders and that every class has images in both; lists every image with the
/// id `remind-extract-features --id-from sorted` gives it.
pub fn scan(root: &Path) -> Result<FolderScan> {
    let r = root.display();
    ensure!(root.is_dir(), "{r}: no such image folder");
    let mut per_split = Vec::new();
    for split in [Split::Train, Split::Val] {
        let dir = root.join(split.name());
        ensure!(
            dir.is_dir(),
            "{r}: no {}/ folder (expected the ImageNet layout {r}/train/<class>/*, \
             {r}/val/<class>/*)",
            split.name()
        );
        per_split.push(class_folders(&dir)?);
    }
    let (train, val) = (&per_split[0], &per_split[1]);
    if train != val {
        let only_train: Vec<&String> = train.difference(val).collect();
        let only_val: Vec<&String> = val.difference(train).collect();
        bail!(
            "{r}: train/ and val/ hold different classes: only in train/: [{}]; only in val/: [{}]",
            quoted(&only_train),
            quoted(&only_val)
        );
    }
    ensure!(
        !train.is_empty(),
        "{r}/train: no class folders: expected one folder per class, \
         {r}/train/<class>/<image> and {r}/val/<class>/<image>"
    );
    let classes: Vec<String> = train.iter().cloned().collect();
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();

    let listing = list_images(root, IdFrom::Sorted)?;
    let mut images = Vec::new();
    let mut ignored = 0;
    let mut counts = vec![[0usize; 2]; classes.len()];
    for item in listing {
        let mut parts = item.rel.splitn(3, '/');
        let split = match parts.next() {
            Some("train") => Split::Train,
            Some("val") => Split::Val,
            _ => {
                ignored += 1;
                continue;
            }
        };
        let (Some(class), Some(_)) = (parts.next(), parts.next()) else {
            bail!(
                "{r}: {} is not inside a class folder (expected {}/<class>/<file>)",
                item.rel,
                split.name()
            );
        };
        let class = *index
            .get(class)
            .with_context(|| format!("{r}: {}: class folder '{class}' not found", item.rel))?;
        counts[class][split as usize] += 1;
        images.push(FolderImage {
            id: item.id,
            rel: item.rel,
            split,
            class,
        });
    }
    let mut empty = Vec::new();
    for (c, n) in counts.iter().enumerate() {
        for split in [Split::Train, Split::Val] {
            if n[split as usize] == 0 {
                empty.push(format!("{}/{}", split.name(), classes[c]));
            }
        }
    }
    ensure!(
        empty.is_empty(),
        "{r}: class folder(s) with no PNG or JPEG images: {}",
        empty.join(", ")
    );
    Ok(FolderScan {
        root: root.to_path_buf(),
        classes,
        images,
        ignored,
    })
}
