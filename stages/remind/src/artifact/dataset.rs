//! A tensor dataset: one Arrow IPC file, or a folder of part files written by shards
//! (`part-KKKKK-of-NNNNN.arrow`), read as one dataset ordered by id.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::atomic::TEMP_PREFIX;
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
    let d = dir.display();
    let mut found: Vec<(Shard, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {d}"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) || name.starts_with('.') {
            continue; // an unfinished write: its shard counts as missing
        }
        if let Some(shard) = Shard::from_part_name(&name) {
            found.push((shard, entry.path()));
        }
    }
    ensure!(
        !found.is_empty(),
        "{d}: no part files (part-KKKKK-of-NNNNN.arrow) in the dataset folder"
    );
    found.sort_by_key(|(s, _)| s.index);
    let n = found[0].0.count;
    if let Some((other, path)) = found.iter().find(|(s, _)| s.count != n) {
        bail!(
            "{d}: parts were written for different shard counts ({n} and {}; e.g. {}): \
               remove the folder or rerun with one N",
            other.count,
            path.display()
        );
    }
    let missing: Vec<String> = (0..n)
        .filter(|k| !found.iter().any(|(s, _)| s.index == *k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "{d}: incomplete dataset, missing shard(s) {} of {n}",
        missing.join(", ")
    );
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Path of `shard`'s part in dataset folder `dir`.
pub fn part_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(shard.part_name())
}

/// Whether `shard`'s part already exists complete and valid (a re-submitted job skips it).
/// Parts of another shard count make the folder unusable: refused with a clear message.
pub fn part_is_done(dir: &Path, shard: Shard, kind: &str) -> Result<bool> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(other) = Shard::from_part_name(&name) {
                ensure!(other.count == shard.count,
                    "{}: holds parts for {} shards but this job is shard {shard}: the shard count changed \
                     between submissions; remove the folder to start over", dir.display(), other.count);
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
