//! Reading CORe50's release layout (Lomonaco & Maltoni, "CORe50: a New Dataset and
//! Benchmark for Continuous Object Recognition", CoRL 2017): `root/s{session}/o{object}/
//! C_{ss}_{oo}_{fff}.png`, `ss` the session (01..11), `oo` the object (01..50), `fff` the
//! frame's index in the session's sequence. Objects 5c+1..5c+5 are category c of
//! [`CATEGORY_NAMES`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::backbone::features::images::{list_images, IdFrom};
use crate::data::images::labels::Frame;

/// Sessions of the release (and of every generated data set): `s1`..`s11`.
pub const SESSIONS: usize = 11;
/// Categories of the release; category `c` owns objects `o{5c+1}..o{5c+5}`.
pub const CATEGORIES: usize = 10;
/// Objects per category in the release.
pub const OBJECTS_PER_CATEGORY: usize = 5;
/// CORe50's category names, in category order (objects o1-o5 are `plug_adapter`, ...).
pub const CATEGORY_NAMES: [&str; CATEGORIES] = [
    "plug_adapter",
    "mobile_phone",
    "scissors",
    "light_bulb",
    "can",
    "glass",
    "ball",
    "marker",
    "cup",
    "remote_control",
];
/// The release's training sessions (the rest, 3, 7 and 10, are its test sessions; CORe50
/// paper, section 4).
pub const TRAIN_SESSIONS: [i64; 8] = [1, 2, 4, 5, 6, 8, 9, 11];
pub const TEST_SESSIONS: [i64; 3] = [3, 7, 10];

/// One frame of the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core50Image {
    /// Position in `list_images(root, IdFrom::Sorted)`: the features' id.
    pub id: u64,
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    /// Object (`instance`), session and frame index.
    pub at: Frame,
    /// Index into [`CATEGORY_NAMES`].
    pub category: usize,
}

/// Object number (1-based, `o{n}`) of the `k`-th object (0-based) of category `c`.
pub fn object_number(category: usize, k: usize) -> usize {
    category * OBJECTS_PER_CATEGORY + k + 1
}

/// Category (0-based, an index of [`CATEGORY_NAMES`]) of object number `object` (1..=50).
pub fn category_of(object: usize) -> usize {
    (object - 1) / OBJECTS_PER_CATEGORY
}

/// File name of a frame: `C_{ss}_{oo}_{fff}.png` (session and object 1-based, frame
/// 0-based).
pub fn image_file_name(session: usize, object: usize, frame: usize) -> String {
    format!("C_{session:02}_{object:02}_{frame:03}.png")
}

/// Path of a frame under the data-set root: `root/s{session}/o{object}/C_...png`.
pub fn image_path(root: &Path, session: usize, object: usize, frame: usize) -> PathBuf {
    root.join(format!("s{session}"))
        .join(format!("o{object}"))
        .join(image_file_name(session, object, frame))
}

/// The category of object `object` read from `path`, or an error naming it.
pub fn checked_category(object: i64, path: &str) -> Result<usize> {
    let most = (CATEGORIES * OBJECTS_PER_CATEGORY) as i64;
    ensure!(
        (1..=most).contains(&object),
        "{path}: object {object}: expected 1 to {most} (CORe50 has {CATEGORIES} categories of \
         {OBJECTS_PER_CATEGORY} objects)"
    );
    Ok(category_of(object as usize))
}

/// Parses `C_{ss}_{oo}_{fff}.{png,jpg}` into (session, object, frame).
pub fn parse_file_name(name: &str) -> Option<(i64, i64, i64)> {
    let stem = name.rsplit_once('.')?.0;
    let mut parts = stem.split('_');
    if parts.next()? != "C" {
        return None;
    }
    let mut num = |digits: usize| -> Option<i64> {
        let p = parts.next()?;
        (p.len() == digits && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    let (s, o, f) = (num(2)?, num(2)?, num(3)?);
    parts.next().is_none().then_some((s, o, f))
}

/// A sub-folder name `<prefix><N>` (`s4`, `o17`): N.
fn numbered(name: &str, prefix: char) -> Option<i64> {
    let digits = name.strip_prefix(prefix)?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Scans `root` for the frames of `sessions`: every session folder must exist and hold
/// the same objects, every image file under them must be named `C_{ss}_{oo}_{fff}` with
/// its folder's session and object. Errors name the path.
pub fn scan(root: &Path, sessions: &[i64]) -> Result<Vec<Core50Image>> {
    let r = root.display();
    ensure!(
        root.is_dir(),
        "{r}: no such folder (expected CORe50's layout {r}/s{{1..11}}/o{{1..50}}/C_ss_oo_fff.png)"
    );
    let listing = list_images(root, IdFrom::Sorted)?;
    let wanted: BTreeSet<i64> = sessions.iter().copied().collect();
    let mut objects: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for &s in &wanted {
        let dir = root.join(format!("s{s}"));
        ensure!(
            dir.is_dir(),
            "{}: missing session folder (session {s} is one of the sessions imported, {:?}; \
             CORe50's layout is {r}/s{{1..11}}/o{{1..50}}/)",
            dir.display(),
            sessions
        );
        let mut found = BTreeSet::new();
        for e in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.path().is_dir() {
                continue;
            }
            let o = numbered(&name, 'o').with_context(|| {
                format!(
                    "{}: folder name does not parse: expected o<object> (o1..o50)",
                    e.path().display()
                )
            })?;
            checked_category(o, &e.path().display().to_string())?;
            found.insert(o);
        }
        ensure!(
            !found.is_empty(),
            "{}: no object folders o1..o50",
            dir.display()
        );
        objects.insert(s, found);
    }
    let all: BTreeSet<i64> = objects.values().flatten().copied().collect();
    for (s, found) in &objects {
        if let Some(o) = all.difference(found).next() {
            let has: Vec<i64> = objects
                .iter()
                .filter(|(_, f)| f.contains(o))
                .map(|(s, _)| *s)
                .collect();
            bail!(
                "{}: missing object folder (object {o} is in session(s) {has:?}; every session \
                 must hold every object)",
                root.join(format!("s{s}")).join(format!("o{o}")).display()
            );
        }
    }
    let mut out = Vec::new();
    let mut per_sequence: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for item in listing {
        let mut parts = item.rel.split('/');
        let (Some(sd), Some(od), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Some(s), Some(o)) = (numbered(sd, 's'), numbered(od, 'o')) else {
            continue;
        };
        if !wanted.contains(&s) {
            continue;
        }
        let p = root.join(&item.rel);
        let (fs, fo, frame) = parse_file_name(file).with_context(|| {
            format!(
                "{}: file name does not parse: expected C_{s:02}_{o:02}_<frame, 3 digits>.png",
                p.display()
            )
        })?;
        ensure!(
            (fs, fo) == (s, o),
            "{}: file name says session {fs}, object {fo}; its folder is session {s}, object {o}",
            p.display()
        );
        *per_sequence.entry((s, o)).or_default() += 1;
        out.push(Core50Image {
            id: item.id,
            rel: item.rel,
            at: Frame {
                instance: o,
                session: s,
                frame,
            },
            category: checked_category(o, &p.display().to_string())?,
        });
    }
    for (s, found) in &objects {
        for o in found {
            ensure!(
                per_sequence.contains_key(&(*s, *o)),
                "{}: no frames C_{s:02}_{o:02}_fff.png",
                root.join(format!("s{s}")).join(format!("o{o}")).display()
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_as_the_release_names_them() {
        assert_eq!(parse_file_name("C_01_01_000.png"), Some((1, 1, 0)));
        assert_eq!(parse_file_name("C_11_50_299.png"), Some((11, 50, 299)));
        for bad in [
            "C_1_01_000.png",
            "C_01_01_00.png",
            "D_01_01_000.png",
            "C_01_01_000_x.png",
            "C_01_01_0a0.png",
            "C_01_01_000",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn objects_map_to_their_category_block() {
        assert_eq!(checked_category(1, "x").unwrap(), 0);
        assert_eq!(checked_category(5, "x").unwrap(), 0);
        assert_eq!(checked_category(6, "x").unwrap(), 1);
        assert_eq!(checked_category(50, "x").unwrap(), 9);
        assert!(checked_category(51, "x").is_err());
        assert!(checked_category(0, "x").is_err());
    }
}
