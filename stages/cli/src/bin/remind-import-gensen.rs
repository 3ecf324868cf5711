//! Imports gensen sentence features per question (HDF5 as the reference pipeline writes
//! them, or .npy) as a `question_features` artifact aligned with the questions table.

use std::path::PathBuf;

use clap::Parser;
use remind::data::gensen::{inputs, producer, run, ImportGensenConfig};
use remind_stages::{replace_sources, stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Import gensen sentence features (HDF5 feats/qids, or .npy) for the questions of a \
             questions table, as a question_features artifact"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// HDF5 file with datasets feats [N x D] float32, qids [N] and (optional) questions [N].
    #[arg(long)]
    h5: Option<PathBuf>,
    /// .npy features [N x D] (float32, either byte order, C or Fortran order), instead of --h5.
    #[arg(long)]
    npy: Option<PathBuf>,
    #[command(flatten)]
    section: ImportGensenFlags,
}

/// Flags laid over the config section `import_gensen` (--h5 and --npy replace the config's
/// source as a whole, so they are applied in `main`).
#[derive(clap::Args, Serialize)]
struct ImportGensenFlags {
    /// Question id of every .npy row: a .npy int64 array, a .json list, or a text file.
    #[arg(long)]
    npy_ids: Option<PathBuf>,
    /// Questions table (questions.parquet from remind-import-questions).
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Only the questions of this split of the table (default: all).
    #[arg(long)]
    split: Option<String>,
    /// Added to every question id of the file (CLEVR val: 1000000000).
    #[arg(long)]
    id_offset: Option<u64>,
    /// Output artifact file; the report is written beside it as <stem>_report.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

stage!(Cli, "import_gensen", ImportGensenConfig, |cli, mut cfg| {
    // A source given here replaces the config's (and its row ids) as a whole.
    if replace_sources([(&mut cfg.h5, &cli.h5), (&mut cfg.npy, &cli.npy)]) {
        cfg.npy_ids = cli.section.npy_ids.clone();
    }
    let mut contract = cli
        .common
        .contract("import-gensen")?
        .config("import_gensen", &cfg)?;
    for (i, source) in inputs(&cfg).iter().enumerate() {
        contract = contract.input(&format!("source.{i}"), source);
    }
    if let Some(out) = &cfg.out {
        contract = contract.output(out);
    }
    if contract.up_to_date()? {
        return Ok(());
    }
    let producer = producer(&cfg)?;
    let report = run(&cfg, &producer)?;
    for path in &report.outputs[1..] {
        contract = contract.output(path);
    }
    contract.record(&producer)?;
    eprintln!(
        "remind-import-gensen: {} of {} rows of {} ({} wide) matched the {} questions{}; \
             {} extra rows not imported; wrote {}",
        report.matched,
        report.in_file,
        report.source.display(),
        report.dim,
        report.in_table,
        report
            .split
            .as_ref()
            .map(|s| format!(" of split '{s}'"))
            .unwrap_or_default(),
        report.extra_in_file,
        report.outputs[0].display()
    );
    if let Some(bad) = report.text_mismatches.filter(|&b| b > 0) {
        eprintln!(
            "remind-import-gensen: warning: {bad} question texts of the file differ from \
                 the table's (e.g. question ids {:?}): are the ids of the same data set?",
            report.text_mismatch_examples
        );
    }
    Ok(())
});
