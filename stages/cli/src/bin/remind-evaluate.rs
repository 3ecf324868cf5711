//! Stage evaluate: scores every method's predictions at every stream boundary (per-type,
//! mean-per-type and overall accuracy, Omega against the offline model) and writes
//! metrics.json, metrics.parquet, metrics.png and a printed table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::run::{config_hash, load_section};
use remind::stages::evaluate::report::{render_tables, write_outputs};
use remind::stages::evaluate::{
    classify_eval, evaluate_vqa, EvaluateSettings, Task, VqaEvalInputs,
};
use remind_stages::{main_with, Common};

#[derive(Parser)]
#[command(
    version,
    about = "Score streaming predictions per boundary (per-type, mean-per-type, overall accuracy, Omega) and plot them"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// vqa, or classification (not wired yet: its inputs are not produced by any stage).
    #[arg(long)]
    task: Option<Task>,
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

fn main() -> ExitCode {
    main_with("remind-evaluate", || {
        let cli = Cli::parse();
        let mut s: EvaluateSettings = load_section(cli.common.config.as_deref(), "evaluate")?;
        s.task = cli.task.unwrap_or(s.task);
        if cli.methods.is_some() {
            s.methods = cli.methods.clone();
        }
        s.baseline = cli.baseline.clone().unwrap_or(s.baseline);
        s.split = cli.split.clone().unwrap_or(s.split);
        s.allow_partial |= cli.allow_partial;
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
