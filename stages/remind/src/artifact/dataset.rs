//! A tensor dataset: one Arrow IPC file, or a folder of part files written by shards
//! (`part-KKKKK-of-NNNNN.arrow`), read as one dataset ordered by id.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::atomic::{temp_target, TEMP_PREFIX};
use super::tensor::{DType, Payload, TensorFile, TensorSpec, TensorWriter};
use crate::run::shard::Shard;

pub struct TensorDataset {
    root: PathBuf,
    parts: Vec<TensorFile>,
    /// First global row of each part, plus the total at the end.
    starts: Vec<usize>,
}

impl TensorDataset {
    /// Opens `path` (a file or a complete folder of parts) as a dataset of `kind`.
    pub fn open(path: &Path, kind: &str) -> Result<Self> {
        let p = path.display();
        let files = if path.is_dir() {
            complete_parts(path)?
        } else if path.exists() {
            vec![path.to_path_buf()]
        } else {
            bail!("{p}: no such file or dataset folder");
        };
        let parts = files
            .iter()
            .map(|f| TensorFile::open(f, kind))
            .collect::<Result<Vec<_>>>()?;
        let first = &parts[0];
        let producer = first.producer()?;
        let mut last_id: Option<(u64, &Path)> = None;
        let mut starts = vec![0];
        for part in &parts {
            ensure!(
                part.shape() == first.shape(),
                "{}: field 'remind.shape': expected {:?} (as {}), found {:?}",
                part.path().display(),
                first.shape(),
                first.path().display(),
                part.shape()
            );
            ensure!(
                part.dtype() == first.dtype() && part.layout()? == first.layout()?,
                "{}: dtype or layout differs from {}",
                part.path().display(),
                first.path().display()
            );
            let prod = part.producer()?;
            ensure!(prod.config_hash == producer.config_hash,
                "{}: made with config hash {} but {} with {}: the shards were run with different parameters",
                part.path().display(), prod.config_hash, first.path().display(), producer.config_hash);
            if !part.is_empty() {
                let (lo, hi) = (part.id(0)?, part.id(part.len() - 1)?);
                if let Some((prev, prev_path)) = last_id {
                    ensure!(
                        lo > prev,
                        "{}: first id {lo} is not above the last id {prev} of {}: shards overlap",
                        part.path().display(),
                        prev_path.display()
                    );
                }
                last_id = Some((hi, part.path()));
            }
            starts.push(starts.last().copied().unwrap_or(0) + part.len());
        }
        Ok(Self {
            root: path.to_path_buf(),
            parts,
            starts,
        })
    }

    /// Opens `path` (file or complete folder) as a dataset of the kind its first part names.
    pub fn open_any(path: &Path) -> Result<Self> {
        let first = if path.is_dir() {
            complete_parts(path)?.swap_remove(0)
        } else {
            path.to_path_buf()
        };
        let kind = TensorFile::open_any(&first)?
            .meta("remind.kind")?
            .to_string();
        Self::open(path, &kind)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn parts(&self) -> &[TensorFile] {
        &self.parts
    }
    /// The first part, whose metadata stands for the dataset's.
    pub fn head(&self) -> &TensorFile {
        &self.parts[0]
    }
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn shape(&self) -> &[usize] {
        self.head().shape()
    }
    pub fn width(&self) -> usize {
        self.head().width()
    }
    pub fn dtype(&self) -> DType {
        self.head().dtype()
    }
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.head().meta(key)
    }

    fn locate(&self, row: usize) -> Result<(usize, usize)> {
        ensure!(
            row < self.len(),
            "{}: row {row} out of range ({} rows)",
            self.root.display(),
            self.len()
        );
        let part = self.starts.partition_point(|&s| s <= row) - 1;
        Ok((part, row - self.starts[part]))
    }
    pub fn id(&self, row: usize) -> Result<u64> {
        let (p, r) = self.locate(row)?;
        self.parts[p].id(r)
    }
    pub fn row_f32(&self, row: usize) -> Result<&[f32]> {
        let (p, r) = self.locate(row)?;
        self.parts[p].row_f32(r)
    }
    pub fn row_u8(&self, row: usize) -> Result<&[u8]> {
        let (p, r) = self.locate(row)?;
        self.parts[p].row_u8(r)
    }
    /// All ids in dataset order (ascending).
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.len());
        for part in &self.parts {
            out.extend(part.ids()?);
        }
        Ok(out)
    }
    /// Row of `id`, by binary search over the ascending ids.
    pub fn find(&self, id: u64, ids: &[u64]) -> Option<usize> {
        ids.binary_search(&id).ok()
    }
}

/// The part files of a dataset folder, checked complete: one `N` for all, every `K` in
/// `0..N` present. Fails naming the missing shards.
pub fn complete_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = list_parts(dir)?;
    let n = listing.shard_count(dir, None)?;
    let missing = listing.missing(n);
    ensure!(
        missing.is_empty(),
        "{}: incomplete dataset, missing shard(s) {}",
        dir.display(),
        listing.describe_missing(&missing, n)
    );
    Ok(listing.parts.into_iter().map(|(_, p)| p).collect())
}

/// The part files (by shard) and unfinished writes found in a dataset folder.
struct PartListing {
    parts: Vec<(Shard, PathBuf)>,
    /// Shards with a temporary part file (a writer still running, or killed).
    unfinished: Vec<Shard>,
}

fn list_parts(dir: &Path) -> Result<PartListing> {
    let d = dir.display();
    let mut parts: Vec<(Shard, PathBuf)> = Vec::new();
    let mut unfinished = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {d}"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            // `.tmp-part-KKKKK-of-NNNNN.arrow.<host>.<pid>`: an unfinished write; its
            // shard counts as missing.
            if let Some(shard) = temp_target(&name).and_then(Shard::from_part_name) {
                unfinished.push(shard);
            }
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        if let Some(shard) = Shard::from_part_name(&name) {
            parts.push((shard, entry.path()));
        }
    }
    parts.sort_by_key(|(s, _)| s.index);
    Ok(PartListing { parts, unfinished })
}

impl PartListing {
    /// The one shard count of the parts (or `expect`), refusing mixed or unexpected counts.
    fn shard_count(&self, dir: &Path, expect: Option<usize>) -> Result<usize> {
        let d = dir.display();
        let Some((first, first_path)) = self.parts.first() else {
            return match expect {
                Some(n) => Ok(n),
                None => {
                    bail!("{d}: no part files (part-KKKKK-of-NNNNN.arrow) in the dataset folder")
                }
            };
        };
        let n = first.count;
        if let Some((other, path)) = self.parts.iter().find(|(s, _)| s.count != n) {
            bail!(
                "{d}: parts were written for different shard counts ({n} and {}; e.g. {}): \
                 the shard count changed between submissions; remove the folder or rerun with one N",
                other.count,
                path.display()
            );
        }
        if let Some(expect) = expect {
            ensure!(
                n == expect,
                "{d}: parts were written for {n} shard(s) (e.g. {}) but {expect} were expected: \
                 the shard count changed between submissions; remove the folder to start over \
                 with {expect}, or submit {n} again",
                first_path.display()
            );
        }
        Ok(n)
    }

    fn missing(&self, n: usize) -> Vec<usize> {
        (0..n)
            .filter(|k| !self.parts.iter().any(|(s, _)| s.index == *k))
            .collect()
    }

    /// "1/3, 2/3 of 3 (1/3: an unfinished write, its job was killed or is still running)".
    fn describe_missing(&self, missing: &[usize], n: usize) -> String {
        let mut names: Vec<String> = missing
            .iter()
            .take(20)
            .map(|k| format!("{k}/{n}"))
            .collect();
        if missing.len() > 20 {
            names.push(format!("... ({} in all)", missing.len()));
        }
        let mut text = format!("{} of {n}", names.join(", "));
        let unfinished: Vec<String> = missing
            .iter()
            .filter(|k| {
                self.unfinished
                    .iter()
                    .any(|s| s.index == **k && s.count == n)
            })
            .map(|k| format!("{k}/{n}"))
            .collect();
        if !unfinished.is_empty() {
            text.push_str(&format!(
                " ({}: an unfinished write, its job was killed or is still running)",
                unfinished.join(", ")
            ));
        }
        text
    }
}

/// What [`check_complete`] found in a complete dataset folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Completeness {
    pub kind: String,
    pub shards: usize,
    pub rows: usize,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    pub config_hash: String,
}

/// Checks that dataset folder `dir` is complete, before a next stage may read it: parts of
/// one shard count (`expect_shards` when given), every shard's part present and valid
/// (structure, row count, checksum), all made with the same parameters (config hash),
/// ids ascending and disjoint across parts and, with `covers`, exactly the ids of the
/// input. Fails naming the missing or damaged shards and what to do.
pub fn check_complete(
    dir: &Path,
    expect_shards: Option<usize>,
    covers: Option<&[u64]>,
) -> Result<Completeness> {
    let d = dir.display();
    ensure!(
        dir.is_dir(),
        "{d}: no such dataset folder{}",
        expect_shards
            .map(|n| format!(" (none of its {n} shard(s) has run)"))
            .unwrap_or_default()
    );
    let listing = list_parts(dir)?;
    let n = listing.shard_count(dir, expect_shards)?;
    let missing = listing.missing(n);
    let mut damaged = Vec::new();
    let mut kind: Option<String> = None;
    for (shard, path) in &listing.parts {
        match TensorFile::open_any(path) {
            Ok(file) => {
                if kind.is_none() {
                    kind = Some(file.meta("remind.kind")?.to_string());
                }
            }
            Err(e) => damaged.push(format!("{shard} ({e:#})")),
        }
    }
    if !missing.is_empty() || !damaged.is_empty() {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "missing shard(s) {}",
                listing.describe_missing(&missing, n)
            ));
        }
        if !damaged.is_empty() {
            problems.push(format!(
                "damaged part(s) of shard(s) {}",
                damaged.join("; ")
            ));
        }
        bail!(
            "{d}: incomplete dataset: {}. Resubmit the same job array (--array=0-{}): finished \
             parts are kept, only the missing or damaged shards are redone",
            problems.join("; "),
            n - 1
        );
    }
    let kind = kind.context("no readable part")?;
    let ds = TensorDataset::open(dir, &kind)?;
    let ids = ds.ids()?;
    if let Some(expected) = covers {
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        expected.dedup();
        let (absent, extra) = id_differences(&expected, &ids);
        let examples = |v: &[u64]| {
            v.iter()
                .take(5)
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        ensure!(
            absent.is_empty() && extra.is_empty(),
            "{d}: ids do not cover the input: {} of the input's {} id(s) absent{}, {} id(s) \
             not in the input{}",
            absent.len(),
            expected.len(),
            if absent.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", examples(&absent))
            },
            extra.len(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", examples(&extra))
            },
        );
    }
    Ok(Completeness {
        kind,
        shards: n,
        rows: ds.len(),
        first_id: ids.first().copied(),
        last_id: ids.last().copied(),
        config_hash: ds.head().producer()?.config_hash,
    })
}

/// Ids of sorted `expected` absent from sorted `found`, and ids of `found` not expected.
fn id_differences(expected: &[u64], found: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let (mut i, mut j) = (0, 0);
    let (mut absent, mut extra) = (Vec::new(), Vec::new());
    while i < expected.len() || j < found.len() {
        match (expected.get(i), found.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                absent.push(*a);
                i += 1;
            }
            (Some(_), Some(b)) => {
                extra.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                absent.push(*a);
                i += 1;
            }
            (None, Some(b)) => {
                extra.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (absent, extra)
}

/// Compares two tensor datasets (files or folders of any sharding) by content: kind, shape,
/// layout, dtype and config hash, then every row's id and payload bytes in id order (the
/// producers' other parameters, such as input paths, may differ). Returns the row count;
/// fails naming the first difference.
pub fn compare_datasets(a: &Path, b: &Path) -> Result<usize> {
    let (da, db) = (TensorDataset::open_any(a)?, TensorDataset::open_any(b)?);
    let (pa, pb) = (a.display(), b.display());
    let (ka, kb) = (da.meta("remind.kind")?, db.meta("remind.kind")?);
    ensure!(ka == kb, "kind differs: {pa} holds {ka}, {pb} holds {kb}");
    ensure!(
        da.shape() == db.shape() && da.dtype() == db.dtype(),
        "shape or dtype differs: {pa} {:?} {}, {pb} {:?} {}",
        da.shape(),
        da.dtype().name(),
        db.shape(),
        db.dtype().name()
    );
    let (la, lb) = (da.head().layout()?, db.head().layout()?);
    ensure!(la == lb, "layout differs: {pa} {la}, {pb} {lb}");
    let (ha, hb) = (
        da.head().producer()?.config_hash,
        db.head().producer()?.config_hash,
    );
    ensure!(
        ha == hb,
        "config hash differs: {pa} {ha}, {pb} {hb} (made with different parameters)"
    );
    let (ia, ib) = (da.ids()?, db.ids()?);
    if ia != ib {
        let (only_a, only_b) = id_differences(&ia, &ib);
        bail!(
            "ids differ: {pa} has {} rows, {pb} {}; {} id(s) only in the first (e.g. {:?}), {} only in the second (e.g. {:?})",
            ia.len(),
            ib.len(),
            only_a.len(),
            &only_a[..only_a.len().min(5)],
            only_b.len(),
            &only_b[..only_b.len().min(5)]
        );
    }
    for (row, id) in ia.iter().enumerate() {
        let same = match da.dtype() {
            DType::F32 => {
                let (x, y) = (da.row_f32(row)?, db.row_f32(row)?);
                bytemuck::cast_slice::<f32, u8>(x) == bytemuck::cast_slice::<f32, u8>(y)
            }
            DType::U8 => da.row_u8(row)? == db.row_u8(row)?,
        };
        ensure!(same, "payload of id {id} differs between {pa} and {pb}");
    }
    Ok(ia.len())
}

/// Path of side file `name` of dataset folder `dir`: beside the folder, named after it,
/// `<dir>.<name>` (e.g. `features/` -> `features.images.parquet`). A dataset folder holds
/// only its part files, so that tools reading the folder as one dataset (pyarrow.dataset,
/// DuckDB or Polars globs) find nothing else in it; the stage that writes the folder writes
/// its side tables and reports here.
pub fn side_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let folder = dir.file_name().with_context(|| {
        format!(
            "{}: a dataset folder needs a name (its side files are named after it)",
            dir.display()
        )
    })?;
    let mut side = folder.to_os_string();
    side.push(".");
    side.push(name);
    Ok(dir.with_file_name(side))
}

/// Path of `shard`'s part in dataset folder `dir`.
pub fn part_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(shard.part_name())
}

/// Whether `shard`'s part already exists complete and valid (a re-submitted job skips it;
/// a damaged one is redone). Refused with a clear message: parts of another shard count
/// (N changed between submissions), and finished parts made with parameters other than
/// this job's (`config_hash` differs), whose rows would not belong to one dataset.
pub fn part_is_done(dir: &Path, shard: Shard, kind: &str, config_hash: &str) -> Result<bool> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // pyarrow.dataset, DuckDB and Polars globs read every visible file of the
            // folder as a part (hidden names, such as unfinished writes, they skip).
            ensure!(
                name.starts_with('.')
                    || name.starts_with('_')
                    || Shard::from_part_name(&name).is_some(),
                "{}: holds '{name}', which is not a part file (part-KKKKK-of-NNNNN.arrow): a \
                 dataset folder holds only its parts, as tools reading it as one dataset take \
                 every file in it; move '{name}' out, or write to another folder",
                dir.display()
            );
            if let Some(other) = Shard::from_part_name(&name) {
                ensure!(other.count == shard.count,
                    "{}: holds parts for {} shards but this job is shard {shard}: the shard count changed \
                     between submissions; remove the folder to start over", dir.display(), other.count);
                // A part too damaged to name its producer is redone by its own shard.
                if let Ok(producer) = TensorFile::read_producer(&entry.path()) {
                    ensure!(
                        producer.config_hash == config_hash,
                        "{}: made with config hash {} but this job's parameters hash to {config_hash}: \
                         the shards were configured with different parameters; submit with the \
                         parameters of the finished parts, or remove {} to start over",
                        entry.path().display(),
                        producer.config_hash,
                        dir.display()
                    );
                }
            }
        }
    }
    let path = part_path(dir, shard);
    Ok(path.exists() && TensorFile::open(&path, kind).is_ok())
}

/// Writes a whole single-part dataset (`part-00000-of-00001.arrow`) in one call.
pub fn write_single_part(
    dir: &Path,
    spec: TensorSpec,
    ids: &[u64],
    payload: Payload<'_>,
) -> Result<PathBuf> {
    let mut w = TensorWriter::create(&part_path(dir, Shard::WHOLE), spec)?;
    w.write(ids, payload, vec![])?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Producer;

    fn write_part(dir: &Path, shard: Shard, ids: &[u64], hash: &str) {
        let spec = TensorSpec::new(
            "features",
            &[1, 1, 2],
            "HWC",
            DType::F32,
            Producer::new("test", hash),
        );
        let values: Vec<f32> = ids.iter().flat_map(|&i| [i as f32, 0.5]).collect();
        let mut w = TensorWriter::create(&part_path(dir, shard), spec).unwrap();
        w.write(ids, Payload::F32(&values), vec![]).unwrap();
        w.finish().unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("remind-ds-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn shard(k: usize, n: usize) -> Shard {
        Shard::new(k, n).unwrap()
    }

    #[test]
    fn check_complete_names_missing_unfinished_and_damaged_shards() {
        let dir = scratch("check");
        write_part(&dir, shard(0, 3), &[0, 1, 2], "h");
        write_part(&dir, shard(2, 3), &[6, 7], "h");
        fs::write(
            dir.join(".tmp-part-00001-of-00003.arrow.node7.4242"),
            b"half",
        )
        .unwrap();
        let err = check_complete(&dir, None, None).unwrap_err().to_string();
        assert!(err.contains("missing shard(s) 1/3 of 3"), "{err}");
        assert!(err.contains("1/3: an unfinished write"), "{err}");
        assert!(err.contains("--array=0-2"), "{err}");
        // Expecting another shard count is refused as a changed N.
        let err = check_complete(&dir, Some(2), None).unwrap_err().to_string();
        assert!(err.contains("written for 3 shard(s)"), "{err}");
        assert!(err.contains("shard count changed"), "{err}");
        // A damaged part is named with its shard.
        write_part(&dir, shard(1, 3), &[3, 4, 5], "h");
        let good = fs::read(part_path(&dir, shard(2, 3))).unwrap();
        fs::write(part_path(&dir, shard(2, 3)), &good[..good.len() / 2]).unwrap();
        let err = check_complete(&dir, Some(3), None).unwrap_err().to_string();
        assert!(err.contains("damaged part(s) of shard(s) 2/3"), "{err}");
        fs::write(part_path(&dir, shard(2, 3)), &good).unwrap();
        let done = check_complete(&dir, Some(3), Some(&[7, 6, 5, 4, 3, 2, 1, 0])).unwrap();
        assert_eq!(
            (done.shards, done.rows, done.kind.as_str()),
            (3, 8, "features")
        );
        assert_eq!((done.first_id, done.last_id), (Some(0), Some(7)));
        // Coverage: the input's ids, no more and no fewer.
        let err = check_complete(&dir, Some(3), Some(&[0, 1, 2, 3, 4, 5, 6, 7, 8]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 of the input's 9 id(s) absent (e.g. 8)"),
            "{err}"
        );
        let err = check_complete(&dir, Some(3), Some(&[0, 1, 2, 3, 4, 5, 6]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 id(s) not in the input (e.g. 7)"), "{err}");
        // A folder that never got a part, with the expected count: all shards missing.
        let err = check_complete(&dir.join("none"), Some(2), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of its 2 shard(s)"), "{err}");
        fs::create_dir_all(dir.join("empty")).unwrap();
        let err = check_complete(&dir.join("empty"), Some(2), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing shard(s) 0/2, 1/2 of 2"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn parts_of_other_parameters_or_counts_are_refused() {
        let dir = scratch("params");
        write_part(&dir, shard(0, 2), &[0, 1], "aaaa");
        assert!(part_is_done(&dir, shard(0, 2), "features", "aaaa").unwrap());
        assert!(!part_is_done(&dir, shard(1, 2), "features", "aaaa").unwrap());
        let err = part_is_done(&dir, shard(1, 2), "features", "bbbb")
            .unwrap_err()
            .to_string();
        assert!(err.contains("different parameters"), "{err}");
        let err = part_is_done(&dir, shard(0, 3), "features", "aaaa")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard count changed"), "{err}");
        // A visible file that is not a part would be read as one by pyarrow or DuckDB.
        fs::write(dir.join("notes.txt"), b"x").unwrap();
        let err = part_is_done(&dir, shard(1, 2), "features", "aaaa")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'notes.txt', which is not a part file"),
            "{err}"
        );
        fs::remove_file(dir.join("notes.txt")).unwrap();
        // Written anyway (another tool): the completeness check refuses the mix.
        write_part(&dir, shard(1, 2), &[2, 3], "bbbb");
        let err = check_complete(&dir, None, None).unwrap_err().to_string();
        assert!(err.contains("different parameters"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn datasets_compare_by_id_across_sharding() {
        let dir = scratch("compare");
        let (one, three) = (dir.join("one"), dir.join("three"));
        write_part(&one, Shard::WHOLE, &[0, 1, 2, 3, 4], "h");
        write_part(&three, shard(0, 3), &[0, 1], "h");
        write_part(&three, shard(1, 3), &[2], "h");
        write_part(&three, shard(2, 3), &[3, 4], "h");
        assert_eq!(compare_datasets(&one, &three).unwrap(), 5);
        write_part(&dir.join("short"), Shard::WHOLE, &[0, 1, 2, 3], "h");
        let err = compare_datasets(&one, &dir.join("short"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 id(s) only in the first (e.g. [4])"),
            "{err}"
        );
        write_part(&dir.join("other"), Shard::WHOLE, &[0, 1, 2, 3, 4], "h2");
        let err = compare_datasets(&one, &dir.join("other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config hash differs"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn side_files_lie_beside_the_folder() {
        let side = |d: &str| side_path(Path::new(d), "images.parquet").unwrap();
        assert_eq!(
            side("run/features"),
            Path::new("run/features.images.parquet")
        );
        assert_eq!(
            side("run/features/"),
            Path::new("run/features.images.parquet")
        );
        assert_eq!(side("/a/f.d"), Path::new("/a/f.d.images.parquet"));
        assert_eq!(side("codes"), Path::new("codes.images.parquet"));
        let err = side_path(Path::new(".."), "x").unwrap_err().to_string();
        assert!(err.contains("needs a name"), "{err}");
    }

    #[test]
    fn id_differences_are_both_ways() {
        assert_eq!(
            id_differences(&[1, 2, 4, 9], &[0, 2, 3, 4]),
            (vec![1, 9], vec![0, 3])
        );
        assert_eq!(id_differences(&[], &[]), (vec![], vec![]));
    }
}
