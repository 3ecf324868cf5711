//! Import of fixed sentence features per question ("gensen"), as the reference REMIND
//! pipeline writes them, into a `question_features` tensor artifact.
//!
//! Inputs, one of:
//!
//! - an HDF5 file with the datasets `feats` (`[N, D]` float32; D = 2048 in the reference),
//!   `qids` (`[N]` integers) and optionally `questions` (`[N]` strings, compared with the
//!   questions table's text for the report only). Read with the pure-Rust `hdf5-reader`:
//!   contiguous or chunked layouts, deflate/shuffle filters, either byte order.
//! - a `.npy` file of features (`[N, D]`, `<f4`, C order) and the question ids, as a `.npy`
//!   `<i8` array, a JSON list, or a text file of integers separated by white space or commas.
//!
//! and the questions table (`questions.parquet` from `remind-import-questions`), optionally
//! one split of it. `id_offset` is added to every id of the file first (CLEVR's val ids are
//! `question_index + 1_000_000_000` in the table, from 0 in a per-split file).
//!
//! Output: one row per selected question of the table, in question-id order (`id` = the
//! question id, `data` = its D features), plus `<stem>_report.json` beside it with the
//! counts: rows in the file, matched, extra rows of the file (reported, not an error).
//!
//! Everything is checked before the artifact appears, and nothing is left half-written: a
//! file without `feats`/`qids`, features that are not 2-D float32, ids of another length
//! than the features, duplicate ids, questions of the table without features, and NaN or
//! infinite features (of a question that is imported) are errors naming the file, and so
//! are rows of all zeros: rows an interrupted extraction never wrote (HDF5 storage reads as
//! its fill value, 0, where nothing was written).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use arrow::array::{Array, StringArray, UInt64Array};
use hdf5_reader::{Dataset, Datatype, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem};
use serde::{Deserialize, Serialize};

pub mod npy;

use crate::artifact::atomic::write_bytes;
use crate::artifact::tensor::TensorWriter;
use crate::artifact::{DType, Payload, Producer, Table, TensorSpec};
use crate::run::config_hash;
use npy::{NpyArray, NpyDType};

/// Metadata key of the artifact: the file the features were read from.
pub const SOURCE_KEY: &str = "remind.source";
/// Metadata key of the artifact: `hdf5` or `npy`.
pub const SOURCE_FORMAT_KEY: &str = "remind.source_format";
/// Metadata key of the artifact: the width D of the features.
pub const DIM_KEY: &str = "remind.dim";

/// Decoded HDF5 chunks kept in memory while reading (a chunked file of up to this size,
/// decoded, is decompressed once whatever its row order).
const H5_CHUNK_CACHE_BYTES: usize = 1 << 30;
const H5_CHUNK_CACHE_SLOTS: usize = 1 << 16;

/// How many example ids a report or an error lists.
const EXAMPLES: usize = 10;

/// Config section `import_gensen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportGensenConfig {
    /// HDF5 file with `feats`, `qids` (and `questions`).
    pub h5: Option<PathBuf>,
    /// `.npy` features `[N, D]` (instead of `h5`).
    pub npy: Option<PathBuf>,
    /// Question ids of the `.npy` rows: `.npy` int64, `.json` list, or text.
    pub npy_ids: Option<PathBuf>,
    /// Questions table (`questions.parquet`).
    pub questions: Option<PathBuf>,
    /// Only the questions of this split of the table (default: all).
    pub split: Option<String>,
    /// Added to every question id of the file.
    pub id_offset: u64,
    /// Output artifact file (e.g. `gensen/train.arrow`).
    pub out: Option<PathBuf>,
}

/// `<stem>_report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GensenReport {
    pub source: PathBuf,
    pub source_format: String,
    pub ids_source: PathBuf,
    pub questions: PathBuf,
    pub split: Option<String>,
    pub id_offset: u64,
    pub dim: usize,
    /// Rows of the file.
    pub in_file: usize,
    /// Questions selected from the table.
    pub in_table: usize,
    /// Questions of the table found in the file (= rows written).
    pub matched: usize,
    /// Rows of the file whose question the selection lacks (not imported).
    pub extra_in_file: usize,
    /// Up to 10 of their ids, smallest first.
    pub extra_examples: Vec<u64>,
    /// Question texts compared with the file's `questions` (HDF5 only; after lower-casing
    /// and dropping punctuation), or null when the file has none.
    pub text_compared: Option<usize>,
    pub text_mismatches: Option<usize>,
    /// Up to 10 question ids whose texts differ.
    pub text_mismatch_examples: Vec<u64>,
    pub outputs: Vec<PathBuf>,
}

/// Where the rows of features come from.
enum Rows {
    H5(Box<Dataset>),
    Npy(NpyArray),
}

/// An opened feature file: ids and texts read, feature rows read on demand.
pub struct FeatureFile {
    pub path: PathBuf,
    pub format: &'static str,
    pub ids_path: PathBuf,
    pub n: usize,
    pub dim: usize,
    /// Question ids of the rows (with the offset added).
    pub ids: Vec<u64>,
    pub texts: Option<Vec<String>>,
    rows: Rows,
}

impl FeatureFile {
    /// Opens the HDF5 file `path` and reads its ids (and question texts).
    pub fn open_h5(path: &Path, id_offset: u64) -> Result<Self> {
        let p = path.display();
        ensure!(path.is_file(), "{p}: no such HDF5 file");
        // Rows are read in question-id order, which may be any order in the file: a large
        // cache keeps chunked (compressed) files from being decompressed once per row.
        let options = OpenOptions::default()
            .with_chunk_cache_bytes(H5_CHUNK_CACHE_BYTES)
            .with_chunk_cache_slots(H5_CHUNK_CACHE_SLOTS);
        let file = Hdf5File::open_with_options(path, options)
            .map_err(|e| anyhow!("{p}: not a readable HDF5 file: {e}"))?;
        let (_, names) = file
            .root_group()
            .and_then(|g| g.member_names())
            .map_err(|e| anyhow!("{p}: cannot list the datasets: {e}"))?;
        let dataset = |name: &str| -> Result<Option<Dataset>> {
            if !names.iter().any(|n| n == name) {
                return Ok(None);
            }
            file.dataset(name)
                .map(Some)
                .map_err(|e| anyhow!("{p}: cannot open dataset '{name}': {e}"))
        };
        let require = |name: &str, ds: Option<Dataset>| -> Result<Dataset> {
            ds.ok_or_else(|| {
                let have = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                };
                anyhow!("{p}: no dataset '{name}' (the file has: {have})")
            })
        };
        let feats = require("feats", dataset("feats")?)?;
        let qids = require("qids", dataset("qids")?)?;
        let shape = feats.shape().to_vec();
        ensure!(
            shape.len() == 2,
            "{p}: dataset 'feats': expected 2-D [N x D], found shape {shape:?}"
        );
        ensure!(
            matches!(feats.dtype(), Datatype::FloatingPoint { size: 4, .. }),
            "{p}: dataset 'feats': expected float32, found {}",
            type_name(feats.dtype())
        );
        let (n, dim) = (shape[0] as usize, shape[1] as usize);
        ensure!(dim > 0, "{p}: dataset 'feats': the rows are empty (D = 0)");
        ensure!(
            qids.shape().len() == 1,
            "{p}: dataset 'qids': expected 1-D [N], found shape {:?}",
            qids.shape()
        );
        ensure!(
            qids.shape()[0] as usize == n,
            "{p}: dataset 'qids' has {} ids but 'feats' has {n} rows",
            qids.shape()[0]
        );
        let raw = read_h5_ids(&qids).with_context(|| format!("{p}: dataset 'qids'"))?;
        let ids = offset_ids(raw, id_offset, path)?;
        let texts = match dataset("questions")? {
            None => None,
            Some(q) => {
                ensure!(
                    q.shape() == [n as u64],
                    "{p}: dataset 'questions': expected {n} strings (as 'feats' has rows), \
                     found shape {:?}",
                    q.shape()
                );
                Some(
                    q.read_strings()
                        .map_err(|e| anyhow!("{p}: dataset 'questions': {e}"))?,
                )
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            format: "hdf5",
            ids_path: path.to_path_buf(),
            n,
            dim,
            ids,
            texts,
            rows: Rows::H5(Box::new(feats)),
        })
    }

    /// Opens the `.npy` features `path` with the ids of `ids_path`.
    pub fn open_npy(path: &Path, ids_path: &Path, id_offset: u64) -> Result<Self> {
        let p = path.display();
        let feats = NpyArray::open(path)?;
        feats.expect(NpyDType::F32, 2, "features", "[N x D]")?;
        let (n, dim) = (feats.shape[0], feats.shape[1]);
        ensure!(dim > 0, "{p}: the rows are empty (D = 0)");
        let raw = read_id_list(ids_path)?;
        ensure!(
            raw.len() == n,
            "{}: {} question ids, but {p} has {n} rows",
            ids_path.display(),
            raw.len()
        );
        let ids = offset_ids(raw, id_offset, ids_path)?;
        Ok(Self {
            path: path.to_path_buf(),
            format: "npy",
            ids_path: ids_path.to_path_buf(),
            n,
            dim,
            ids,
            texts: None,
            rows: Rows::Npy(feats),
        })
    }

    /// Appends the features of file rows `rows` to `out`, row after row.
    fn read_rows(&self, rows: &[usize], out: &mut Vec<f32>) -> Result<()> {
        let p = self.path.display();
        match &self.rows {
            Rows::Npy(array) => {
                let values = array.f32_values()?;
                for &r in rows {
                    out.extend_from_slice(&values[r * self.dim..(r + 1) * self.dim]);
                }
            }
            Rows::H5(ds) => {
                // One read per run of consecutive rows: a file written in question order is
                // read in large blocks, a shuffled one row by row (through the chunk cache).
                let mut i = 0;
                while i < rows.len() {
                    let mut j = i + 1;
                    while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                        j += 1;
                    }
                    let selection = SliceInfo {
                        selections: vec![
                            SliceInfoElem::Slice {
                                start: rows[i] as u64,
                                end: rows[j - 1] as u64 + 1,
                                step: 1,
                            },
                            SliceInfoElem::Slice {
                                start: 0,
                                end: self.dim as u64,
                                step: 1,
                            },
                        ],
                    };
                    let block = ds.read_slice::<f32>(&selection).map_err(|e| {
                        anyhow!(
                            "{p}: dataset 'feats': cannot read rows {}..{}: {e}",
                            rows[i],
                            rows[j - 1] + 1
                        )
                    })?;
                    match block.as_slice() {
                        Some(s) => out.extend_from_slice(s),
                        None => out.extend(block.iter().copied()),
                    }
                    i = j;
                }
            }
        }
        Ok(())
    }
}

/// A short name of an HDF5 datatype for messages.
fn type_name(t: &Datatype) -> String {
    match t {
        Datatype::FloatingPoint { size, .. } => format!("float{}", 8 * u32::from(*size)),
        Datatype::FixedPoint { size, signed, .. } => {
            format!(
                "{}int{}",
                if *signed { "" } else { "u" },
                8 * u32::from(*size)
            )
        }
        Datatype::String { .. } | Datatype::VarLen { .. } => "strings".into(),
        other => format!("{other:?}"),
    }
}

fn read_h5_ids(ds: &Dataset) -> Result<Vec<i128>> {
    fn all<T: hdf5_reader::H5Type + Copy + Into<i128>>(ds: &Dataset) -> Result<Vec<i128>> {
        let values = ds
            .read_array::<T>()
            .map_err(|e| anyhow!("cannot read: {e}"))?;
        Ok(values.iter().map(|&v| v.into()).collect())
    }
    match ds.dtype() {
        Datatype::FixedPoint {
            size: 8,
            signed: true,
            ..
        } => all::<i64>(ds),
        Datatype::FixedPoint {
            size: 8,
            signed: false,
            ..
        } => all::<u64>(ds),
        Datatype::FixedPoint {
            size: 4,
            signed: true,
            ..
        } => all::<i32>(ds),
        Datatype::FixedPoint {
            size: 4,
            signed: false,
            ..
        } => all::<u32>(ds),
        other => bail!(
            "expected integer question ids (int64), found {}",
            type_name(other)
        ),
    }
}

/// Reads question ids: a `.npy` `<i8` array, a `.json` list, or text (integers separated
/// by white space or commas).
pub fn read_id_list(path: &Path) -> Result<Vec<i128>> {
    let p = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => {
            let array = NpyArray::open(path)?;
            array.expect(NpyDType::I64, 1, "question ids", "[N]")?;
            Ok(array.i64_values()?.iter().map(|&v| v as i128).collect())
        }
        Some("json") => {
            let values: Vec<serde_json::Value> = crate::text::read_json(path)
                .with_context(|| format!("{p}: expected a JSON list of question ids"))?;
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64()
                        .map(i128::from)
                        .or_else(|| v.as_u64().map(i128::from))
                        .with_context(|| {
                            format!("{p}: entry {i}: expected an integer id, found {v}")
                        })
                })
                .collect()
        }
        _ => {
            let text = crate::text::read_text(path)?;
            text.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<i128>().map_err(|_| {
                        anyhow!("{p}: entry {}: expected an integer id, found '{s}'", i + 1)
                    })
                })
                .collect()
        }
    }
}

/// Adds `offset` to every id, refusing negative or overflowing ones.
fn offset_ids(raw: Vec<i128>, offset: u64, path: &Path) -> Result<Vec<u64>> {
    raw.into_iter()
        .enumerate()
        .map(|(row, id)| {
            u64::try_from(id + i128::from(offset)).map_err(|_| {
                anyhow!(
                    "{}: row {row}: question id {id} (plus offset {offset}) is not a valid id",
                    path.display()
                )
            })
        })
        .collect()
}

/// Lower-case words of a question, for comparing texts written by different tools.
fn normalized(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn listing(ids: &[u64]) -> String {
    let head: Vec<String> = ids.iter().take(EXAMPLES).map(u64::to_string).collect();
    if ids.len() > EXAMPLES {
        format!("{}, ...", head.join(", "))
    } else {
        head.join(", ")
    }
}

/// Opens the input `cfg` names.
pub fn open_source(cfg: &ImportGensenConfig) -> Result<FeatureFile> {
    match (&cfg.h5, &cfg.npy) {
        (Some(h5), None) => {
            ensure!(
                cfg.npy_ids.is_none(),
                "--npy-ids goes with --npy, not with --h5 (the HDF5 file holds its ids)"
            );
            FeatureFile::open_h5(h5, cfg.id_offset)
        }
        (None, Some(npy)) => {
            let ids = cfg
                .npy_ids
                .as_deref()
                .context("--npy needs --npy-ids (the question id of every row)")?;
            FeatureFile::open_npy(npy, ids, cfg.id_offset)
        }
        (Some(_), Some(_)) => bail!("give one of --h5 and --npy, not both"),
        (None, None) => bail!("give --h5 or --npy (or set one in the config)"),
    }
}

/// The selected questions of the table: ids (ascending) and their texts.
fn selected_questions(table: &Table, split: Option<&str>) -> Result<Vec<(u64, String)>> {
    let p = table.path.display();
    for c in ["question_id", "split", "text"] {
        table.require_non_null(c)?;
    }
    let ids = table.column::<UInt64Array>("question_id")?;
    let splits = table.column::<StringArray>("split")?;
    let texts = table.column::<StringArray>("text")?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..table.num_rows() {
        if split.is_some_and(|s| s != splits.value(i)) {
            continue;
        }
        let id = ids.value(i);
        ensure!(seen.insert(id), "{p}: question id {id} appears twice");
        out.push((id, texts.value(i).to_string()));
    }
    if out.is_empty() {
        let mut have: Vec<&str> = (0..splits.len()).map(|i| splits.value(i)).collect();
        have.sort();
        have.dedup();
        match split {
            Some(s) => bail!(
                "{p}: no questions of split '{s}' (splits: {})",
                have.join(", ")
            ),
            None => bail!("{p}: the table has no questions"),
        }
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Imports the features `cfg` names: reads and checks everything, writes the artifact and
/// the report atomically. Returns the report (with the outputs).
pub fn run(cfg: &ImportGensenConfig, producer: &Producer) -> Result<GensenReport> {
    let questions_path = cfg
        .questions
        .as_deref()
        .context("give --questions (the questions table, questions.parquet)")?;
    let out = cfg.out.as_deref().context("give --out (the output file)")?;
    let table = Table::read(questions_path, "questions")?;
    let wanted = selected_questions(&table, cfg.split.as_deref())?;
    let source = open_source(cfg)?;
    let sp = source.path.display();
    let ip = source.ids_path.display();

    let mut row_of: HashMap<u64, usize> = HashMap::with_capacity(source.n);
    for (row, &id) in source.ids.iter().enumerate() {
        if let Some(first) = row_of.insert(id, row) {
            bail!("{ip}: question id {id} appears twice (rows {first} and {row})");
        }
    }
    let mut missing = Vec::new();
    let mut rows = Vec::with_capacity(wanted.len());
    for (id, _) in &wanted {
        match row_of.get(id) {
            Some(&r) => rows.push(r),
            None => missing.push(*id),
        }
    }
    let selection = match &cfg.split {
        Some(s) => format!("split '{s}' of {}", questions_path.display()),
        None => questions_path.display().to_string(),
    };
    if !missing.is_empty() {
        let ids_from = if source.ids_path == source.path {
            String::new()
        } else {
            format!(" (ids from {ip})")
        };
        let hint = if missing.len() == wanted.len() {
            format!(
                "; no id matches: do the file's ids number the questions as the table does \
                 (id_offset, now {})?",
                cfg.id_offset
            )
        } else {
            String::new()
        };
        bail!(
            "{sp}{ids_from}: {} of the {} questions of {selection} have no features in the \
             file (question ids {}){hint}",
            missing.len(),
            wanted.len(),
            listing(&missing),
        );
    }
    let wanted_ids: HashSet<u64> = wanted.iter().map(|(id, _)| *id).collect();
    let mut extra: Vec<u64> = source
        .ids
        .iter()
        .copied()
        .filter(|id| !wanted_ids.contains(id))
        .collect();
    extra.sort_unstable();

    let (mut text_compared, mut text_mismatches, mut mismatch_examples) = (None, None, vec![]);
    if let Some(texts) = &source.texts {
        let mut bad = 0;
        for ((id, text), &r) in wanted.iter().zip(&rows) {
            if normalized(text) != normalized(&texts[r]) {
                bad += 1;
                if mismatch_examples.len() < EXAMPLES {
                    mismatch_examples.push(*id);
                }
            }
        }
        text_compared = Some(wanted.len());
        text_mismatches = Some(bad);
    }

    let spec = TensorSpec::new(
        "question_features",
        &[source.dim],
        "D",
        DType::F32,
        producer.clone(),
    )
    .with(SOURCE_KEY, source.path.display().to_string())
    .with(SOURCE_FORMAT_KEY, source.format)
    .with(DIM_KEY, source.dim.to_string());
    let mut writer = TensorWriter::create(out, spec)?;
    let chunk = ((32usize << 20) / (4 * source.dim)).max(1);
    let mut values = Vec::with_capacity(chunk * source.dim);
    let ids: Vec<u64> = wanted.iter().map(|(id, _)| *id).collect();
    // (question id, file row) of rows that are all zeros: never written.
    let mut unwritten: Vec<(u64, usize)> = Vec::new();
    for (id_chunk, row_chunk) in ids.chunks(chunk).zip(rows.chunks(chunk)) {
        values.clear();
        source.read_rows(row_chunk, &mut values)?;
        for (k, row) in values.chunks_exact(source.dim).enumerate() {
            if row.iter().all(|&v| v == 0.0) {
                unwritten.push((id_chunk[k], row_chunk[k]));
            }
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                bail!(
                    "{sp}: the features of question id {} (row {}) hold {}",
                    id_chunk[k],
                    row_chunk[k],
                    if v.is_nan() {
                        "NaN"
                    } else {
                        "an infinite value"
                    }
                );
            }
        }
        writer.write(id_chunk, Payload::F32(&values), vec![])?;
    }
    if !unwritten.is_empty() {
        // A gensen vector (a GRU state through a tanh) is never all zeros; zeros are the
        // fill value of HDF5 storage (or a pre-allocated array) an extraction never wrote.
        unwritten.sort_by_key(|&(_, row)| row);
        let first: Vec<String> = unwritten
            .iter()
            .take(EXAMPLES)
            .map(|(id, row)| format!("{id} (row {row})"))
            .collect();
        let what = match source.format {
            "hdf5" => "dataset 'feats'",
            _ => "the features",
        };
        bail!(
            "{sp}: {what}: {} of the {} rows to import are all zeros, i.e. never written (an \
             interrupted extraction?); a sentence vector is never all zeros. First question \
             ids: {}{}",
            unwritten.len(),
            rows.len(),
            first.join(", "),
            if unwritten.len() > EXAMPLES {
                ", ..."
            } else {
                ""
            }
        );
    }
    let written = writer.finish()?;

    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "question_features".into());
    let report_path = out.with_file_name(format!("{stem}_report.json"));
    let report = GensenReport {
        source: source.path.clone(),
        source_format: source.format.into(),
        ids_source: source.ids_path.clone(),
        questions: questions_path.to_path_buf(),
        split: cfg.split.clone(),
        id_offset: cfg.id_offset,
        dim: source.dim,
        in_file: source.n,
        in_table: wanted.len(),
        matched: rows.len(),
        extra_in_file: extra.len(),
        extra_examples: extra.iter().take(EXAMPLES).copied().collect(),
        text_compared,
        text_mismatches,
        text_mismatch_examples: mismatch_examples,
        outputs: vec![written, report_path.clone()],
    };
    write_bytes(&report_path, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// The files an import reads (for the manifest).
pub fn inputs(cfg: &ImportGensenConfig) -> Vec<PathBuf> {
    [&cfg.h5, &cfg.npy, &cfg.npy_ids, &cfg.questions]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// Producer stamp of an import with `cfg`.
pub fn producer(cfg: &ImportGensenConfig) -> Result<Producer> {
    let mut p = Producer::new("import-gensen", &config_hash(cfg)?);
    if let Some(split) = &cfg.split {
        p = p.param("split", split.as_str());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_compare_as_lower_case_words() {
        assert_eq!(
            normalized("What color is the  big cube?"),
            "what color is the big cube"
        );
        assert_eq!(
            normalized("Is there a cube;"),
            normalized("is there a cube ?")
        );
        assert_eq!(listing(&[1, 2]), "1, 2");
        assert_eq!(
            listing(&(0..12).collect::<Vec<_>>()),
            "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..."
        );
    }

    #[test]
    fn id_lists_from_json_and_text() {
        let dir = std::env::temp_dir().join(format!("remind-gensen-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.json"), "[3, 1, 2]").unwrap();
        std::fs::write(dir.join("a.txt"), "3\n1, 2\n").unwrap();
        std::fs::write(dir.join("b.txt"), "3\nx\n").unwrap();
        // A Windows-saved list reads as its ids; a JSON object (ids under a key) is named.
        std::fs::write(dir.join("w.txt"), "\u{feff}3\r\n1\r\n2").unwrap();
        assert_eq!(read_id_list(&dir.join("w.txt")).unwrap(), [3, 1, 2]);
        std::fs::write(dir.join("o.json"), r#"{"qids": [1]}"#).unwrap();
        let err = format!("{:#}", read_id_list(&dir.join("o.json")).unwrap_err());
        assert!(
            err.contains("o.json: expected a JSON list of question ids"),
            "{err}"
        );
        assert_eq!(read_id_list(&dir.join("a.json")).unwrap(), [3, 1, 2]);
        assert_eq!(read_id_list(&dir.join("a.txt")).unwrap(), [3, 1, 2]);
        let err = format!("{:#}", read_id_list(&dir.join("b.txt")).unwrap_err());
        assert!(
            err.contains("b.txt: entry 2") && err.contains("'x'"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            offset_ids(vec![1, -5], 2, Path::new("i.txt")).unwrap_err()
        );
        assert!(err.contains("i.txt: row 1: question id -5"), "{err}");
        assert_eq!(offset_ids(vec![1, -1], 2, Path::new("i")).unwrap(), [3, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
