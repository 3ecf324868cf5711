//! Question import for the VQA experiments: reads CLEVR (real or mini-CLEVR) or TDIUC
//! question files, tokenises the questions, builds the token vocabulary, the answer table
//! and the question-type table from the training split, and writes them as Parquet
//! artifacts with a JSON report.
//!
//! Outputs under the output folder:
//!
//! - `questions.parquet` (kind `questions`): one row per question, train then val, in file
//!   order. `tokens` holds the token ids, unpadded and truncated to the length cap
//!   (`length` is their number). `answer_id` is -1 for answers outside the answer table.
//!   Ids: TDIUC keeps its `question_id` and COCO `image_id`; CLEVR's `question_id` is
//!   `question_index` plus 0 for train and 1,000,000,000 for val (CLEVR numbers each split
//!   from 0), and `image_id` is CLEVR's `image_index`, unique only within a split (the pair
//!   (split, image_id) names an image).
//! - `vocabulary.parquet`, `answers.parquet`, `question_types.parquet` (kind `vocabulary`:
//!   index, token, count). Counts are over the training split. The vocabulary has `<pad>`
//!   at 0 and `<unk>` at 1 (its count: token occurrences, all splits, mapped to it), then
//!   every training token seen at least `min_token_count` times by descending count, ties by
//!   token. The answer table is ordered the same way and capped at `max_answers` (all
//!   answers for CLEVR, 1480 for TDIUC); for CLEVR, CLEVR's 28 answers that the training
//!   split lacks are appended with count 0 (`clevr_all_answers`), so every CLEVR import has
//!   the same 28 classes.
//! - `word_vectors.arrow` (kind `word_vectors`, only with `glove`): one vector per
//!   vocabulary index from a GloVe text file, zeros for tokens GloVe lacks.
//! - `import_report.json`: counts per split and type, unknown answers and tokens,
//!   truncations, word-vector coverage, the files read.
//!
//! Everything is read and checked before anything is written; each file is written
//! atomically.

pub mod glove;
pub mod sources;
pub mod tokenize;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Result};
use arrow::array::{
    ArrayRef, Int32Array, Int32Builder, Int64Array, ListBuilder, StringArray, UInt64Array,
};
use serde::{Deserialize, Serialize};

use crate::artifact::atomic::write_bytes;
use crate::artifact::{write_table, Producer, Table};
use crate::run::config_hash;
use glove::{read_glove, write_word_vectors, GloveReport, WordVectors};
use sources::{read_clevr, read_tdiuc, RawQuestion, CLEVR_TYPES, TDIUC_TYPES};
use tokenize::tokenize;

pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";

/// Which data set an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    Clevr,
    Tdiuc,
}

impl Dataset {
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Clevr => "clevr",
            Dataset::Tdiuc => "tdiuc",
        }
    }

    /// The folders of the data set's root that the import reads.
    pub fn question_folders(self) -> &'static [&'static str] {
        match self {
            Dataset::Clevr => &["questions"],
            Dataset::Tdiuc => &["Questions", "Annotations"],
        }
    }

    pub fn type_names(self) -> &'static [&'static str] {
        match self {
            Dataset::Clevr => &CLEVR_TYPES,
            Dataset::Tdiuc => &TDIUC_TYPES,
        }
    }

    /// Token cap of the reference pipelines: 45 for CLEVR, 30 for TDIUC.
    pub fn default_max_length(self) -> usize {
        match self {
            Dataset::Clevr => 45,
            Dataset::Tdiuc => 30,
        }
    }

    /// Answer classes of the reference pipelines: all of CLEVR's, TDIUC's 1480 most frequent.
    pub fn default_max_answers(self) -> Option<usize> {
        match self {
            Dataset::Clevr => None,
            Dataset::Tdiuc => Some(1480),
        }
    }
}

/// Config section `import_questions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportQuestionsConfig {
    /// CLEVR data-set root (holding `questions/`).
    pub clevr_dir: Option<PathBuf>,
    /// TDIUC root (holding `Questions/` and `Annotations/`).
    pub tdiuc_dir: Option<PathBuf>,
    /// Token cap (default: 45 CLEVR, 30 TDIUC).
    pub max_length: Option<usize>,
    /// Answer-table size (default: all for CLEVR, 1480 for TDIUC).
    pub max_answers: Option<usize>,
    /// Tokens seen fewer times in training map to `<unk>`.
    pub min_token_count: u64,
    /// Append CLEVR's 28 answers that training lacks to the CLEVR answer table (count 0).
    pub clevr_all_answers: bool,
    /// GloVe text file: write `word_vectors.arrow` for the vocabulary.
    pub glove: Option<PathBuf>,
}

impl Default for ImportQuestionsConfig {
    fn default() -> Self {
        Self {
            clevr_dir: None,
            tdiuc_dir: None,
            max_length: None,
            max_answers: None,
            min_token_count: 1,
            clevr_all_answers: true,
            glove: None,
        }
    }
}

impl ImportQuestionsConfig {
    /// The data set and its root folder: exactly one of `clevr_dir`, `tdiuc_dir`.
    pub fn source(&self) -> Result<(Dataset, &Path)> {
        match (&self.clevr_dir, &self.tdiuc_dir) {
            (Some(d), None) => Ok((Dataset::Clevr, d)),
            (None, Some(d)) => Ok((Dataset::Tdiuc, d)),
            (Some(_), Some(_)) => bail!("give one of --clevr-dir and --tdiuc-dir, not both"),
            (None, None) => bail!("give --clevr-dir or --tdiuc-dir (or set one in the config)"),
        }
    }
}

/// A table of names with counts, ordered by descending count then name.
fn ranked(counts: HashMap<String, u64>, min_count: u64) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Per-split counters of the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SplitReport {
    pub questions: usize,
    pub per_type: BTreeMap<String, usize>,
    pub unknown_answers: usize,
    pub unknown_tokens: usize,
    pub truncated: usize,
    pub longest: usize,
}

/// `import_report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dataset: Dataset,
    pub sources: Vec<PathBuf>,
    pub max_length: usize,
    pub vocabulary_size: usize,
    pub answers: usize,
    pub question_types: Vec<String>,
    pub splits: BTreeMap<String, SplitReport>,
    pub word_vectors: Option<GloveReport>,
    pub outputs: Vec<PathBuf>,
}

/// Tokenised questions with their tables, ready to write.
pub struct Imported {
    pub dataset: Dataset,
    pub questions: Vec<RawQuestion>,
    /// Token ids per question (truncated to the cap).
    pub tokens: Vec<Vec<i32>>,
    pub answer_ids: Vec<i64>,
    pub vocabulary: Vec<(String, u64)>,
    pub answers: Vec<(String, u64)>,
    pub types: Vec<(String, u64)>,
    pub word_vectors: Option<WordVectors>,
    pub report: ImportReport,
}

/// Tokenises `questions` and builds the tables from their training split.
pub fn build(
    dataset: Dataset,
    questions: Vec<RawQuestion>,
    sources: Vec<PathBuf>,
    cfg: &ImportQuestionsConfig,
) -> Result<Imported> {
    let max_length = cfg.max_length.unwrap_or(dataset.default_max_length());
    ensure!(
        max_length > 0,
        "import_questions.max_length must be positive"
    );
    let mut seen_ids = HashSet::with_capacity(questions.len());
    for q in &questions {
        ensure!(
            seen_ids.insert(q.question_id),
            "question_id {} appears twice ({} split)",
            q.question_id,
            q.split
        );
    }
    let token_lists: Vec<Vec<String>> = questions.iter().map(|q| tokenize(&q.text)).collect();
    let is_train = |q: &RawQuestion| q.split == "train";
    ensure!(
        questions.iter().any(is_train),
        "the training split has no questions: no vocabulary can be built"
    );

    let mut token_counts: HashMap<String, u64> = HashMap::new();
    let mut answer_counts: HashMap<String, u64> = HashMap::new();
    let mut type_counts = vec![0u64; dataset.type_names().len()];
    for (q, toks) in questions.iter().zip(&token_lists) {
        if is_train(q) {
            for t in toks {
                *token_counts.entry(t.clone()).or_default() += 1;
            }
            *answer_counts.entry(q.answer.clone()).or_default() += 1;
            type_counts[q.question_type] += 1;
        }
    }
    let mut vocabulary = vec![(PAD.to_string(), 0), (UNK.to_string(), 0)];
    vocabulary.extend(ranked(token_counts, cfg.min_token_count.max(1)));
    let token_index: HashMap<&str, i32> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (t.as_str(), i as i32))
        .collect();

    let max_answers = cfg.max_answers.or(dataset.default_max_answers());
    let mut answers = ranked(answer_counts, 1);
    if let Some(cap) = max_answers {
        answers.truncate(cap);
    }
    if dataset == Dataset::Clevr && cfg.clevr_all_answers {
        let have: HashSet<String> = answers.iter().map(|(a, _)| a.clone()).collect();
        let mut missing: Vec<String> = crate::data::clevr::attributes::answer_vocabulary()
            .into_iter()
            .filter(|a| !have.contains(a))
            .collect();
        missing.sort();
        for a in missing {
            if max_answers.is_none_or(|cap| answers.len() < cap) {
                answers.push((a, 0));
            }
        }
    }
    let answer_index: HashMap<&str, i64> = answers
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (a.as_str(), i as i64))
        .collect();
    let types: Vec<(String, u64)> = dataset
        .type_names()
        .iter()
        .zip(&type_counts)
        .map(|(n, c)| (n.to_string(), *c))
        .collect();

    let mut splits: BTreeMap<String, SplitReport> = BTreeMap::new();
    let mut tokens = Vec::with_capacity(questions.len());
    let mut answer_ids = Vec::with_capacity(questions.len());
    let mut unk_total = 0u64;
    for (q, toks) in questions.iter().zip(&token_lists) {
        let rep = splits
            .entry(q.split.clone())
            .or_insert_with(|| SplitReport {
                per_type: dataset
                    .type_names()
                    .iter()
                    .map(|t| (t.to_string(), 0))
                    .collect(),
                ..Default::default()
            });
        rep.questions += 1;
        *rep.per_type
            .entry(dataset.type_names()[q.question_type].to_string())
            .or_default() += 1;
        rep.longest = rep.longest.max(toks.len());
        if toks.len() > max_length {
            rep.truncated += 1;
        }
        let ids: Vec<i32> = toks
            .iter()
            .map(|t| token_index.get(t.as_str()).copied().unwrap_or(1))
            .collect();
        let unknown = ids.iter().filter(|&&i| i == 1).count();
        rep.unknown_tokens += unknown;
        unk_total += unknown as u64;
        tokens.push(ids.into_iter().take(max_length).collect());
        let aid = answer_index.get(q.answer.as_str()).copied().unwrap_or(-1);
        if aid < 0 {
            rep.unknown_answers += 1;
        }
        answer_ids.push(aid);
    }
    vocabulary[1].1 = unk_total;
    let report = ImportReport {
        dataset,
        sources,
        max_length,
        vocabulary_size: vocabulary.len(),
        answers: answers.len(),
        question_types: dataset.type_names().iter().map(|s| s.to_string()).collect(),
        splits,
        word_vectors: None,
        outputs: Vec::new(),
    };
    Ok(Imported {
        dataset,
        questions,
        tokens,
        answer_ids,
        vocabulary,
        answers,
        types,
        word_vectors: None,
        report,
    })
}

/// Reads the data set `cfg` names and builds its tables (writes nothing).
pub fn load(cfg: &ImportQuestionsConfig) -> Result<Imported> {
    let (dataset, dir) = cfg.source()?;
    let (questions, sources) = match dataset {
        Dataset::Clevr => read_clevr(dir)?,
        Dataset::Tdiuc => read_tdiuc(dir)?,
    };
    let mut imported = build(dataset, questions, sources, cfg)?;
    if let Some(path) = &cfg.glove {
        let tokens: Vec<String> = imported.vocabulary.iter().map(|(t, _)| t.clone()).collect();
        let vectors = read_glove(path, &tokens)?;
        imported.report.word_vectors = Some(GloveReport {
            source: path.clone(),
            dim: vectors.dim,
            found: vectors.found,
            missing: vectors.missing.len(),
            missing_examples: vectors.missing.iter().take(50).cloned().collect(),
        });
        imported.report.sources.push(path.clone());
        imported.word_vectors = Some(vectors);
    }
    Ok(imported)
}

fn vocabulary_columns(rows: &[(String, u64)]) -> Vec<ArrayRef> {
    vec![
        Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(t, _)| t.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, c)| *c))),
    ]
}

/// Writes the artifacts of `imported` under `out`; returns the report (with the outputs).
pub fn write(imported: &Imported, out: &Path, producer: &Producer) -> Result<ImportReport> {
    let qs = &imported.questions;
    let mut token_lists = ListBuilder::new(Int32Builder::new());
    for ids in &imported.tokens {
        token_lists.values().append_slice(ids);
        token_lists.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            qs.iter().map(|q| q.question_id),
        )),
        Arc::new(UInt64Array::from_iter_values(qs.iter().map(|q| q.image_id))),
        Arc::new(StringArray::from_iter_values(
            qs.iter().map(|q| q.split.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            qs.iter().map(|q| q.text.as_str()),
        )),
        Arc::new(token_lists.finish()),
        Arc::new(Int32Array::from_iter_values(
            imported.tokens.iter().map(|t| t.len() as i32),
        )),
        Arc::new(Int64Array::from_iter_values(
            imported.answer_ids.iter().copied(),
        )),
        Arc::new(StringArray::from_iter_values(
            qs.iter().map(|q| q.answer.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            qs.iter().map(|q| q.question_type as i32),
        )),
    ];
    let import_id = import_id(imported, producer);
    let meta = |table: &str| -> HashMap<String, String> {
        HashMap::from([
            (
                "remind.dataset".to_string(),
                imported.dataset.name().to_string(),
            ),
            ("remind.table".to_string(), table.to_string()),
            (IMPORT_ID_KEY.to_string(), import_id.clone()),
        ])
    };
    let mut outputs = vec![write_table(
        &out.join("questions.parquet"),
        "questions",
        producer,
        columns,
        meta("questions"),
    )?];
    for (name, rows) in [
        ("vocabulary", &imported.vocabulary),
        ("answers", &imported.answers),
        ("question_types", &imported.types),
    ] {
        outputs.push(write_table(
            &out.join(format!("{name}.parquet")),
            "vocabulary",
            producer,
            vocabulary_columns(rows),
            meta(name),
        )?);
    }
    if let Some(vectors) = &imported.word_vectors {
        outputs.push(write_word_vectors(
            &out.join("word_vectors.arrow"),
            vectors,
            producer,
        )?);
    }
    let report_path = out.join("import_report.json");
    outputs.push(report_path.clone());
    let mut report = imported.report.clone();
    report.outputs = outputs;
    write_bytes(&report_path, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// Metadata key naming the import run a table of a questions folder comes from: the
/// tables of one folder must agree ([`check_same_import`]), so a folder that mixes two
/// imports (one interrupted between its writes, or two racing) is refused, not read.
pub const IMPORT_ID_KEY: &str = "remind.import_id";

/// The import's id: a digest of everything its tables hold (questions, tokens, answer ids,
/// vocabulary, answers, types) and of the config, so the same import gives the same bytes
/// (runs stay reproducible bit for bit) and two imports that differ get different ids.
fn import_id(imported: &Imported, producer: &Producer) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(producer.config_hash.as_bytes());
    for (q, (tokens, a)) in imported
        .questions
        .iter()
        .zip(imported.tokens.iter().zip(&imported.answer_ids))
    {
        h.update(q.question_id.to_le_bytes());
        h.update(q.image_id.to_le_bytes());
        h.update((q.question_type as u64).to_le_bytes());
        for text in [&q.split, &q.text, &q.answer] {
            h.update(text.as_bytes());
            h.update([0]);
        }
        h.update(a.to_le_bytes());
        h.update((tokens.len() as u64).to_le_bytes());
        for t in tokens {
            h.update(t.to_le_bytes());
        }
    }
    for table in [&imported.vocabulary, &imported.answers, &imported.types] {
        h.update((table.len() as u64).to_le_bytes());
        for (name, count) in table {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(count.to_le_bytes());
        }
    }
    crate::artifact::weights::hex(&h.finalize()[..8])
}

/// Checks that the tables at `paths` (questions, vocabulary, answers, question types) come
/// from one import run ([`IMPORT_ID_KEY`]). Tables written before the key existed carry
/// none and are not compared. Errors name both files and their import ids.
pub fn check_same_import(paths: &[&Path]) -> Result<()> {
    let mut first: Option<(&Path, String)> = None;
    for path in paths {
        let Some(id) = Table::metadata_value(path, IMPORT_ID_KEY)? else {
            continue;
        };
        match &first {
            None => first = Some((path, id)),
            Some((p0, id0)) if *id0 != id => bail!(
                "{} comes from import {id} but {} from import {id0}: the questions folder mixes \
                 two runs of import-questions (one interrupted, or two at once); import again",
                path.display(),
                p0.display()
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Producer stamp of an import with `cfg`.
pub fn producer(cfg: &ImportQuestionsConfig, dataset: Dataset) -> Result<Producer> {
    Ok(Producer::new("import-questions", &config_hash(cfg)?).param("dataset", dataset.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: u64, split: &str, text: &str, answer: &str, t: usize) -> RawQuestion {
        RawQuestion {
            question_id: id,
            image_id: id / 10,
            split: split.into(),
            text: text.into(),
            answer: answer.into(),
            question_type: t,
        }
    }

    #[test]
    fn tables_rank_by_training_counts() {
        let questions = vec![
            q(1, "train", "Is it red?", "yes", 1),
            q(2, "train", "Is it blue?", "no", 1),
            q(3, "train", "How many red cubes?", "2", 0),
            q(4, "train", "Is it red?", "yes", 1),
            q(5, "val", "Is it green or red or blue?", "maybe", 1),
        ];
        let cfg = ImportQuestionsConfig {
            max_length: Some(4),
            clevr_all_answers: false,
            ..Default::default()
        };
        let im = build(Dataset::Clevr, questions, vec![], &cfg).unwrap();
        let names: Vec<&str> = im.vocabulary.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            names,
            [PAD, UNK, "is", "it", "red", "blue", "cubes", "how", "many"]
        );
        assert_eq!(im.vocabulary[4], ("red".to_string(), 3));
        // "green" and "or" (twice) are unknown in val; "maybe" is not an answer.
        assert_eq!(im.vocabulary[1].1, 3);
        assert_eq!(im.tokens[4], vec![2, 3, 1, 1]);
        assert_eq!(im.report.splits["val"].truncated, 1);
        assert_eq!(im.report.splits["val"].unknown_answers, 1);
        assert_eq!(im.answer_ids, vec![0, 2, 1, 0, -1]);
        let answers: Vec<&str> = im.answers.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(answers, ["yes", "2", "no"]);
        assert_eq!(im.types[1], ("exist".to_string(), 3));

        let cfg = ImportQuestionsConfig::default();
        let im = build(
            Dataset::Clevr,
            vec![q(1, "train", "a", "yes", 0)],
            vec![],
            &cfg,
        )
        .unwrap();
        assert_eq!(im.answers.len(), 28);
        assert_eq!(im.answers[0], ("yes".to_string(), 1));

        let dup = vec![q(1, "train", "a", "yes", 0), q(1, "val", "b", "no", 0)];
        assert!(build(Dataset::Clevr, dup, vec![], &cfg).is_err());
    }
}
