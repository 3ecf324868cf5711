//! Stage evaluate: scores every method's predictions at every stream boundary (per-type,
//! mean-per-type and overall accuracy, Omega against the offline model) and writes
//! metrics.json, metrics.parquet, the plot metrics.png / metrics.svg (classification:
//! metrics.csv and the accuracy-matrix heatmap metrics_matrix.png / .svg too) and a printed
//! table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use remind::artifact::Producer;
use remind::data::questions::check_same_import;
use remind::evaluate::report::{render_tables, write_outputs};
use remind::evaluate::{classify_eval, evaluate_vqa, EvaluateSettings, Task, VqaEvalInputs};
use remind::run::config_hash;
use remind::run::Contract;
use remind_stages::{stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Score streaming predictions per boundary (per-type, mean-per-type, overall accuracy, Omega) and plot them"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Questions table (questions.parquet from remind-import-questions).
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Classification: the label table (labels.parquet of remind-import-images).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Question-type names (question_types.parquet); without it types are "type N".
    #[arg(long)]
    question_types: Option<PathBuf>,
    /// Folder of the streaming run: plan.json and <method>/predictions/boundary-KKK.parquet.
    #[arg(long)]
    stream_dir: Option<PathBuf>,
    /// Output folder for metrics.json, .parquet, .png (and .csv) (default: the run folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    section: EvaluateFlags,
}

/// Flags laid over the config section `evaluate`.
#[derive(clap::Args, Serialize)]
struct EvaluateFlags {
    /// vqa (predictions per boundary, scored against --questions) or classification
    /// (probabilities per boundary, scored against --labels).
    #[arg(long)]
    task: Option<Task>,
    /// Methods to evaluate, comma-separated, in table order (default: every method folder).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// The method Omega divides by.
    #[arg(long)]
    baseline: Option<String>,
    /// Split of the questions table the predictions were made on.
    #[arg(long)]
    split: Option<String>,
    /// Evaluate methods that lack some boundaries instead of refusing.
    #[arg(long)]
    allow_partial: bool,
}

stage!(Cli, "evaluate", EvaluateSettings, |cli, s| {
    if s.task == Task::Classification {
        return classification(&cli, &s);
    }
    let questions = required(&cli.questions, "questions", "vqa")?;
    let stream_dir = required(&cli.stream_dir, "stream-dir", "vqa")?;
    let inputs = VqaEvalInputs {
        questions,
        question_types: cli.question_types.as_deref(),
        stream_dir,
    };
    let mut tables = vec![questions];
    tables.extend(cli.question_types.as_deref());
    check_same_import(&tables)?;
    let (_, out) = cli.folders()?;
    let mut contract = cli
        .common
        .contract("evaluate")?
        .config("evaluate", &s)?
        .input("questions", questions)
        .input_opt("question_types", cli.question_types.as_deref())
        .input("stream", stream_dir)
        .output(&out.join("metrics.json"));
    if contract.up_to_date()? {
        return Ok(());
    }
    let ev = evaluate_vqa(&inputs, &s)?;
    let producer = producer(&s, "vqa", ev.methods.iter().map(|m| &m.name))?;
    let written = write_outputs(&ev, &out, &producer)?;
    let listed = record_written(contract, &written, &producer)?;
    print!("{}", render_tables(&ev));
    eprintln!(
        "remind-evaluate: {} method(s), {} boundaries, {} questions -> {listed}",
        ev.methods.len(),
        ev.positions.len(),
        ev.questions,
    );
    Ok(())
});

fn classification(cli: &Cli, s: &EvaluateSettings) -> anyhow::Result<()> {
    let labels = required(&cli.labels, "labels", "classification")?;
    let stream_dir = required(&cli.stream_dir, "stream-dir", "classification")?;
    let (_, out) = cli.folders()?;
    let mut contract = cli
        .common
        .contract("evaluate")?
        .config("evaluate", s)?
        .input("labels", labels)
        .input("stream", stream_dir)
        .output(&out.join("metrics.json"));
    if contract.up_to_date()? {
        return Ok(());
    }
    let ev = classify_eval::evaluate_classification(labels, stream_dir, s)?;
    let producer = producer(s, "classification", ev.methods.iter().map(|m| &m.name))?;
    let written = classify_eval::write_outputs(&ev, &out, &producer)?;
    let listed = record_written(contract, &written, &producer)?;
    print!("{}", classify_eval::render_table(&ev));
    eprintln!(
        "remind-evaluate: {} method(s) -> {listed}",
        ev.methods.len()
    );
    Ok(())
}

/// The path of an input flag the task needs: `--{flag} is required for --task {task}`
/// when it was not given.
fn required<'a>(value: &'a Option<PathBuf>, flag: &str, task: &str) -> anyhow::Result<&'a Path> {
    value
        .as_deref()
        .with_context(|| format!("--{flag} is required for --task {task}"))
}

impl Cli {
    /// The run folder, and the output folder: `--out`, else the run folder.
    fn folders(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let run_dir = self.common.run_dir()?;
        let out = self.out.clone().unwrap_or_else(|| run_dir.clone());
        Ok((run_dir, out))
    }
}

/// The producer of the outputs: the section's hash, the task and the methods scored.
fn producer<'a>(
    s: &EvaluateSettings,
    task: &str,
    methods: impl Iterator<Item = &'a String>,
) -> anyhow::Result<Producer> {
    Ok(Producer::new("evaluate", &config_hash(s)?)
        .param("task", task)
        .param("methods", methods.cloned().collect::<Vec<_>>()))
}

/// Records the written files in the run manifest under `contract`'s fingerprint; returns
/// them listed for the summary line.
fn record_written(
    mut contract: Contract,
    written: &[PathBuf],
    producer: &Producer,
) -> anyhow::Result<String> {
    for path in written {
        if !path.ends_with("metrics.json") {
            contract = contract.output(path);
        }
    }
    contract.record(producer)?;
    Ok(written
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", "))
}
