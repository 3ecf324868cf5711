//! The CORe50 source of `remind-import-images` (`import_images.core50`): the release's
//! sessions split into training and test, the base sessions, frame subsampling, and the
//! video columns of the label table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{ArrayRef, BooleanArray, Int64Array};

use super::{ImportImagesConfig, Item, Loaded, Split, LOG};
use crate::data::core50::layout::{
    category_of, scan, CATEGORY_NAMES, TEST_SESSIONS, TRAIN_SESSIONS,
};

/// The sessions of an import: training, test, base (a subset of training); the number
/// of base objects per category.
struct Sessions {
    train: Vec<i64>,
    test: Vec<i64>,
    base: Vec<i64>,
    base_objects: usize,
    frame_step: usize,
    /// The official file lists (training, test), when given: they decide the split.
    lists: Option<[FileList; 2]>,
}

/// A file list of the release (`train_filelist.txt`-style): one frame per line, its path
/// relative to the root first (`s1/o1/C_01_01_000.png`), then anything (the label).
struct FileList {
    path: std::path::PathBuf,
    /// Relative path -> line number (1-based).
    frames: BTreeMap<String, usize>,
}

impl FileList {
    fn read(path: &Path) -> Result<Self> {
        let p = path.display();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {p}"))?;
        let mut frames = BTreeMap::new();
        for (n, line) in crate::text::content_lines(&text) {
            let rel = line.split_whitespace().next().unwrap_or_default();
            let rel = rel.trim_start_matches("./").to_string();
            ensure!(
                sessions_of(&rel).is_some(),
                "{p}: line {n}: '{rel}' is not a frame path s<session>/o<object>/C_ss_oo_fff.png"
            );
            if let Some(first) = frames.insert(rel.clone(), n) {
                bail!("{p}: line {n}: '{rel}' is listed twice (first on line {first})");
            }
        }
        ensure!(!frames.is_empty(), "{p}: no frames listed");
        Ok(Self {
            path: path.to_path_buf(),
            frames,
        })
    }

    /// The sessions the list names, ascending.
    fn sessions(&self) -> Vec<i64> {
        let set: BTreeSet<i64> = self.frames.keys().filter_map(|r| sessions_of(r)).collect();
        set.into_iter().collect()
    }
}

/// The session of a frame path `s<N>/...`.
fn sessions_of(rel: &str) -> Option<i64> {
    let first = rel.split('/').next()?;
    first.strip_prefix('s')?.parse().ok()
}

fn sessions(cfg: &ImportImagesConfig) -> Result<Sessions> {
    let lists = match (&cfg.train_list, &cfg.test_list) {
        (None, None) => None,
        (Some(train), Some(test)) => {
            ensure!(
                cfg.train_sessions.is_none() && cfg.test_sessions.is_none(),
                "import_images: train_list and test_list decide the split; leave out \
                 train_sessions and test_sessions"
            );
            Some([FileList::read(train)?, FileList::read(test)?])
        }
        _ => bail!("import_images: give train_list and test_list together"),
    };
    if let Some([train, test]) = &lists {
        if let Some((rel, n)) = train
            .frames
            .iter()
            .find(|(r, _)| test.frames.contains_key(*r))
        {
            bail!(
                "{}: line {n}: '{rel}' is in the test list {} too",
                train.path.display(),
                test.path.display()
            );
        }
    }
    let (train_default, test_default) = match &lists {
        Some([train, test]) => (train.sessions(), test.sessions()),
        None => (TRAIN_SESSIONS.to_vec(), TEST_SESSIONS.to_vec()),
    };
    let s = Sessions {
        train: cfg.train_sessions.clone().unwrap_or(train_default.clone()),
        test: cfg.test_sessions.clone().unwrap_or(test_default),
        base: cfg
            .base_sessions
            .clone()
            .or_else(|| cfg.train_sessions.clone())
            .unwrap_or(train_default),
        base_objects: cfg.base_objects_per_category.unwrap_or(1),
        frame_step: cfg.frame_step.unwrap_or(1),
        lists,
    };
    for (key, list) in [
        ("train_sessions", &s.train),
        ("test_sessions", &s.test),
        ("base_sessions", &s.base),
    ] {
        ensure!(
            !list.is_empty() && list.iter().all(|&x| x >= 1),
            "import_images.{key}: expected a non-empty list of session numbers (1..11 in \
             the release), found {list:?}"
        );
        let unique: BTreeSet<i64> = list.iter().copied().collect();
        ensure!(
            unique.len() == list.len(),
            "import_images.{key}: a session is listed twice in {list:?}"
        );
    }
    let both: Vec<i64> = s
        .train
        .iter()
        .filter(|x| s.test.contains(x))
        .copied()
        .collect();
    ensure!(
        both.is_empty() || s.lists.is_some(),
        "import_images: session(s) {both:?} are in both train_sessions and test_sessions"
    );
    let outside: Vec<i64> = s
        .base
        .iter()
        .filter(|x| !s.train.contains(x))
        .copied()
        .collect();
    ensure!(
        outside.is_empty(),
        "import_images.base_sessions: expected training sessions ({:?}), found {outside:?}",
        s.train
    );
    ensure!(
        s.base_objects >= 1,
        "import_images.base_objects_per_category: expected at least 1, found 0"
    );
    ensure!(
        s.frame_step >= 1,
        "import_images.frame_step: expected at least 1, found 0"
    );
    for (key, set) in [
        ("max_train_per_class", cfg.max_train_per_class.is_some()),
        ("max_val_per_class", cfg.max_val_per_class.is_some()),
    ] {
        ensure!(
            !set,
            "import_images.{key} would cut CORe50's frame sequences: use frame_step or fewer \
             sessions instead"
        );
    }
    Ok(s)
}

/// Scans and checks CORe50's release root `root`.
pub(super) fn load(cfg: &ImportImagesConfig, root: &Path) -> Result<Loaded> {
    let s = sessions(cfg)?;
    eprintln!("{LOG}: listing CORe50 sessions in {}", root.display());
    let mut all = s.train.clone();
    all.extend(&s.test);
    all.sort_unstable();
    all.dedup();
    let images = scan(root, &all)?;
    if let Some(lists) = &s.lists {
        let found: BTreeSet<&str> = images.iter().map(|i| i.rel.as_str()).collect();
        for list in lists {
            if let Some((rel, n)) = list
                .frames
                .iter()
                .find(|(r, _)| !found.contains(r.as_str()))
            {
                bail!(
                    "{}: line {n}: '{rel}' is not a frame of {}",
                    list.path.display(),
                    root.display()
                );
            }
        }
    }
    let objects: BTreeSet<i64> = images.iter().map(|i| i.at.instance).collect();
    // The first `base_objects` objects (by number) of every category.
    let mut per_category: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for &o in &objects {
        per_category
            .entry(category_of(o as usize))
            .or_default()
            .push(o);
    }
    let base_objects: BTreeSet<i64> = per_category
        .values()
        .flat_map(|objs| objs.iter().take(s.base_objects).copied())
        .collect();
    let present: BTreeSet<usize> = images.iter().map(|i| i.category).collect();
    let categories: Vec<usize> = present.into_iter().collect();
    let classes: Vec<String> = categories
        .iter()
        .map(|&c| CATEGORY_NAMES[c].to_string())
        .collect();
    let mut available = vec![[0usize; 2]; classes.len()];
    let mut items = Vec::new();
    for im in images {
        let class = categories
            .iter()
            .position(|&c| c == im.category)
            .expect("category listed above");
        let split = match &s.lists {
            Some([train, test]) => {
                if train.frames.contains_key(&im.rel) {
                    Split::Train
                } else if test.frames.contains_key(&im.rel) {
                    Split::Val
                } else {
                    continue;
                }
            }
            None if s.train.contains(&im.at.session) => Split::Train,
            None => Split::Val,
        };
        available[class][split as usize] += 1;
        if im.at.frame % s.frame_step as i64 != 0 {
            continue;
        }
        let base = split == Split::Train
            && s.base.contains(&im.at.session)
            && base_objects.contains(&im.at.instance);
        items.push(Item {
            split,
            class,
            rel: im.rel,
            index: im.at.frame as usize,
            id: im.id,
            video: Some((im.at, base)),
        });
    }
    ensure!(
        items
            .iter()
            .any(|i| i.video.is_some_and(|v| !v.1) && i.split == Split::Train),
        "import_images: every training frame is a base frame (objects {:?} in sessions {:?}: \
         base_objects_per_category {} of the {} objects per category there, base_sessions): \
         nothing would stream",
        base_objects,
        s.base,
        s.base_objects,
        per_category.values().map(Vec::len).max().unwrap_or(0)
    );
    for split in [Split::Train, Split::Val] {
        ensure!(
            items.iter().any(|i| i.split == split),
            "{}: no {} frames left (frame_step {})",
            root.display(),
            split.name(),
            s.frame_step
        );
    }
    Ok(Loaded {
        dirs: classes.clone(),
        classes,
        items,
        available,
        idx: None,
        sources: vec![root.to_path_buf()],
        image_root: root.to_path_buf(),
        ignored: 0,
    })
}

/// The number of base classes: the labels the base items cover, which must be the first
/// ones (every object is in every session, so the base sessions cover every class).
pub(super) fn base_classes(items: &[Item], labels: &[i64], order: &[String]) -> Result<usize> {
    let covered: BTreeSet<i64> = items
        .iter()
        .filter(|i| matches!(i.video, Some((_, true))))
        .map(|i| labels[i.class])
        .collect();
    let b = covered.len();
    let missing: Vec<&str> = (0..b as i64)
        .filter(|l| !covered.contains(l))
        .map(|l| order[l as usize].as_str())
        .collect();
    ensure!(
        b >= 1 && missing.is_empty(),
        "import_images.base_sessions: the base frames cover {b} classes but not the first of \
         the class order ({missing:?}): every base class must come before the others"
    );
    Ok(b)
}

/// The video columns of the label table, for `items` in table order.
pub(super) fn columns<'a>(
    items: &[Item],
    base: impl Fn(&Item) -> bool,
) -> Vec<(&'a str, ArrayRef)> {
    let field = |f: fn(&Item) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(items.iter().map(f)))
    };
    vec![
        ("instance", field(|i| i.video.map_or(0, |v| v.0.instance))),
        ("session", field(|i| i.video.map_or(0, |v| v.0.session))),
        ("frame", field(|i| i.video.map_or(0, |v| v.0.frame))),
        (
            "base",
            Arc::new(BooleanArray::from(
                items.iter().map(&base).collect::<Vec<bool>>(),
            )),
        ),
    ]
}
