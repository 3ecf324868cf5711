//! Stage evaluate: scores every method's predictions at every stream boundary (per-type,
//! mean-per-type and overall accuracy, Omega against the offline model) and writes
//! metrics.json, metrics.parquet, metrics.png and a printed table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::evaluate::report::{render_tables, write_outputs};
use remind::evaluate::{classify_eval, evaluate_vqa, EvaluateSettings, Task, VqaEvalInputs};
use remind::run::config_hash;
use remind_stages::{run_stage, stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    version,
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
    /// Output folder for metrics.json, metrics.parquet and metrics.png (default: the run folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    section: EvaluateFlags,
}

/// Flags laid over the config section `evaluate`.
#[derive(clap::Args, Serialize)]
struct EvaluateFlags {
    /// vqa, or classification (not wired yet: its inputs are not produced by any stage).
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_partial: bool,
}

stage!(Cli, "evaluate", EvaluateSettings);

fn main() -> ExitCode {
    run_stage("remind-evaluate", |cli: Cli, s: EvaluateSettings| {
        if s.task == Task::Classification {
            return classification(&cli, &s);
        }
        let questions = cli
            .questions
            .as_deref()
            .context("--questions is required for --task vqa")?;
        let stream_dir = cli
            .stream_dir
            .as_deref()
            .context("--stream-dir is required for --task vqa")?;
        let inputs = VqaEvalInputs {
            questions,
            question_types: cli.question_types.as_deref(),
            stream_dir,
        };
        let ev = evaluate_vqa(&inputs, &s)?;
        let run_dir = cli.common.run_dir()?;
        let out = cli.out.clone().unwrap_or_else(|| run_dir.clone());
        let producer = Producer::new("evaluate", &config_hash(&s)?)
            .param("task", "vqa")
            .param(
                "methods",
                ev.methods
                    .iter()
                    .map(|m| m.name.clone())
                    .collect::<Vec<_>>(),
            );
        let written = write_outputs(&ev, &out, &producer)?;
        let mut used = vec![questions, stream_dir];
        used.extend(cli.question_types.as_deref());
        for path in &written {
            record_output(&run_dir, path, &producer, &used)?;
        }
        print!("{}", render_tables(&ev));
        eprintln!(
            "remind-evaluate: {} method(s), {} boundaries, {} questions -> {}",
            ev.methods.len(),
            ev.positions.len(),
            ev.questions,
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    })
}

fn classification(cli: &Cli, s: &EvaluateSettings) -> anyhow::Result<()> {
    let labels = cli
        .labels
        .as_deref()
        .context("--labels is required for --task classification")?;
    let stream_dir = cli
        .stream_dir
        .as_deref()
        .context("--stream-dir is required for --task classification")?;
    let ev = classify_eval::evaluate_classification(labels, stream_dir, s)?;
    let run_dir = cli.common.run_dir()?;
    let out = cli.out.clone().unwrap_or_else(|| run_dir.clone());
    let producer = Producer::new("evaluate", &config_hash(s)?)
        .param("task", "classification")
        .param(
            "methods",
            ev.methods
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>(),
        );
    let written = classify_eval::write_outputs(&ev, &out, &producer)?;
    for path in &written {
        record_output(&run_dir, path, &producer, &[labels, stream_dir])?;
    }
    print!("{}", classify_eval::render_table(&ev));
    eprintln!(
        "remind-evaluate: {} method(s) -> {}",
        ev.methods.len(),
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
