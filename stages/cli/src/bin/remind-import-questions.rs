//! Imports CLEVR or TDIUC questions: questions table, vocabulary, answer table,
//! question types and an import report.

use std::path::PathBuf;

use clap::Parser;
use remind::data::questions::{load, producer, write, ImportQuestionsConfig};
use remind_stages::{replace_sources, stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Import CLEVR or TDIUC questions as Parquet tables (questions, vocabulary, answers, question types)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// CLEVR root holding questions/CLEVR_{train,val}_questions.json (real or mini-CLEVR).
    #[arg(long)]
    clevr_dir: Option<PathBuf>,
    /// TDIUC root holding Questions/ and Annotations/ (VQA-style files).
    #[arg(long)]
    tdiuc_dir: Option<PathBuf>,
    #[command(flatten)]
    section: ImportQuestionsFlags,
}

/// Flags laid over the config section `import_questions` (--clevr-dir and --tdiuc-dir
/// replace the config's source as a whole, so they are applied in `main`).
#[derive(clap::Args, Serialize)]
struct ImportQuestionsFlags {
    /// Token cap per question (default: 45 CLEVR, 30 TDIUC).
    #[arg(long)]
    max_length: Option<usize>,
    /// Answer-table size (default: all CLEVR answers, 1480 for TDIUC).
    #[arg(long)]
    max_answers: Option<usize>,
    /// Training tokens seen fewer times map to <unk>.
    #[arg(long)]
    min_token_count: Option<u64>,
    /// GloVe text file: also write word_vectors.arrow, one vector per vocabulary index.
    #[arg(long)]
    glove: Option<PathBuf>,
}

stage!(
    Cli,
    "import_questions",
    ImportQuestionsConfig,
    |cli, mut cfg| {
        // A source given here replaces the config's as a whole.
        replace_sources([
            (&mut cfg.clevr_dir, &cli.clevr_dir),
            (&mut cfg.tdiuc_dir, &cli.tdiuc_dir),
        ]);
        let (dataset, root) = cfg.source()?;
        let mut contract = cli
            .common
            .contract("import-questions")?
            .config("import_questions", &cfg)?;
        for folder in dataset.question_folders() {
            contract = contract.input(folder, &root.join(folder));
        }
        contract = contract.input_opt("glove", cfg.glove.as_deref());
        for name in [
            "questions.parquet",
            "vocabulary.parquet",
            "answers.parquet",
            "question_types.parquet",
            "import_report.json",
        ] {
            contract = contract.output(&cli.out.join(name));
        }
        if cfg.glove.is_some() {
            contract = contract.output(&cli.out.join("word_vectors.arrow"));
        }
        if contract.up_to_date()? {
            return Ok(());
        }
        let imported = load(&cfg)?;
        let producer = producer(&cfg, imported.dataset)?;
        let report = write(&imported, &cli.out, &producer)?;
        contract.record(&producer)?;
        for (split, s) in &report.splits {
            eprintln!(
                "remind-import-questions: {split}: {} questions, {} with an answer outside the \
                 answer table, {} unknown tokens, {} truncated to {} tokens",
                s.questions, s.unknown_answers, s.unknown_tokens, s.truncated, report.max_length
            );
        }
        if let Some(wv) = &report.word_vectors {
            eprintln!(
                "remind-import-questions: word vectors ({} dims) for {} of {} tokens",
                wv.dim, wv.found, report.vocabulary_size
            );
        }
        eprintln!(
            "remind-import-questions: {}: vocabulary {} tokens, {} answers, {} question types; \
             wrote {}",
            report.dataset.name(),
            report.vocabulary_size,
            report.answers,
            report.question_types.len(),
            cli.out.display()
        );
        Ok(())
    }
);
