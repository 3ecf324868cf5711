//! Stage evaluate: scores every method's predictions at every stream boundary (per-type,
//! mean-per-type and overall accuracy, Omega against the offline model) and writes
//! metrics.json, metrics.parquet, the plot metrics.png / metrics.svg (classification:
//! metrics.csv and the accuracy-matrix heatmap metrics_matrix.png / .svg too) and a printed
//! table. Several stream folders (seeds of one protocol): each evaluated alone under
//! `seeds/seed-N/`, their mean and spread at the output folder ([`remind::evaluate::seeds`]).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use clap::Parser;
use remind::artifact::Producer;
use remind::data::questions::check_same_import;
use remind::evaluate::outputs::Outputs;
use remind::evaluate::report::{self, render_tables};
use remind::evaluate::{classify_eval, evaluate_vqa, seeds, EvaluateSettings, Task, VqaEvalInputs};
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
    /// Repeat it for several runs of one protocol (seeds): each is written alone under
    /// <out>/seeds/seed-N/, and <out> gets their mean with std, min and max (plot: min-max bars).
    #[arg(long)]
    stream_dir: Vec<PathBuf>,
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
    let vqa = s.task == Task::Vqa;
    let task = if vqa { "vqa" } else { "classification" };
    ensure!(
        !cli.stream_dir.is_empty(),
        "--stream-dir is required for --task {task}"
    );
    // A baseline named on purpose (not the default offline model) must exist: a misspelt
    // one would only leave Omega blank.
    if s.baseline != EvaluateSettings::default().baseline {
        for dir in &cli.stream_dir {
            let method = dir.join(&s.baseline);
            ensure!(
                method.is_dir(),
                "baseline '{}' (--baseline or evaluate.baseline): {} has no such method \
                 folder ({} does not exist)",
                s.baseline,
                dir.display(),
                method.display()
            );
        }
    }
    let (_, out) = cli.folders()?;
    let mut contract = cli.common.contract("evaluate")?.config("evaluate", &s)?;
    if vqa {
        let questions = required(&cli.questions, "questions", task)?;
        let mut tables = vec![questions];
        tables.extend(cli.question_types.as_deref());
        check_same_import(&tables)?;
        contract = contract
            .input("questions", questions)
            .input_opt("question_types", cli.question_types.as_deref());
    } else {
        contract = contract.input("labels", required(&cli.labels, "labels", task)?);
    }
    for (k, dir) in cli.stream_dir.iter().enumerate() {
        let role = if k == 0 {
            "stream".to_string()
        } else {
            format!("stream.{k}")
        };
        contract = contract.input(&role, dir);
    }
    let mut contract = contract.output(&out.join("metrics.json"));
    if contract.up_to_date()? {
        return Ok(());
    }
    if let [dir] = &cli.stream_dir[..] {
        let run = evaluate_one(&cli, &s, dir)?;
        let written = run.outputs.write(&out, &run.producer)?;
        seeds::clear_stale(&out, &[])?;
        let listed = record_written(contract, &written, &run.producer)?;
        print!("{}", run.table);
        eprintln!("remind-evaluate: {} -> {listed}", run.summary);
        return Ok(());
    }
    // Several runs of one protocol (seeds): all evaluated and combined before anything is
    // written (runs that do not fit together write nothing), then each alone under
    // seeds/<label>/ and their mean and spread at `out`.
    let labels = seeds::labels(&cli.stream_dir)?;
    let mut runs = Vec::new();
    let mut producer = None;
    for (dir, label) in cli.stream_dir.iter().zip(&labels) {
        // Named first, so that the run's own warnings follow its name.
        eprintln!("remind-evaluate: {label} ({}):", dir.display());
        let run = evaluate_one(&cli, &s, dir)?;
        eprintln!("remind-evaluate: {label}: {}", run.summary);
        producer.get_or_insert(run.producer);
        runs.push(seeds::SeedRun {
            label: label.clone(),
            stream_dir: dir.clone(),
            outputs: run.outputs,
        });
    }
    let producer = producer
        .context("no run evaluated")?
        .param("runs", labels.clone());
    let combined = seeds::combine(&runs)?;
    seeds::clear_stale(&out, &labels)?;
    let mut all = combined.write(&out, &producer)?;
    for run in &runs {
        let sub = out.join(seeds::RUNS_DIR).join(&run.label);
        all.extend(run.outputs.write(&sub, &producer)?);
    }
    let listed = record_written(contract, &all, &producer)?;
    let (main, point) = if vqa {
        ("mean_per_type", "questions seen")
    } else {
        ("seen_classes_top1", "images streamed")
    };
    print!(
        "{}",
        seeds::render_table(&combined.rows, main, point, &labels)
    );
    eprintln!(
        "remind-evaluate: each seed's scores per type and compute figures: \
         {}/<seed>/metrics.json; their means: metrics.json",
        out.join(seeds::RUNS_DIR).display()
    );
    eprintln!(
        "remind-evaluate: {} runs -> {} (and each run under {})",
        runs.len(),
        listed.split(", ").take(7).collect::<Vec<_>>().join(", "),
        out.join(seeds::RUNS_DIR).display()
    );
    Ok(())
});

/// One stream folder evaluated: its outputs, the printed table, a summary line and the
/// producer of its files.
struct OneRun {
    outputs: Outputs,
    table: String,
    summary: String,
    producer: Producer,
}

fn evaluate_one(cli: &Cli, s: &EvaluateSettings, stream_dir: &Path) -> anyhow::Result<OneRun> {
    if s.task == Task::Classification {
        let labels = required(&cli.labels, "labels", "classification")?;
        let ev = classify_eval::evaluate_classification(labels, stream_dir, s)?;
        return Ok(OneRun {
            producer: producer(s, "classification", ev.methods.iter().map(|m| &m.name))?,
            outputs: classify_eval::outputs(&ev)?,
            table: classify_eval::render_table(&ev),
            summary: format!("{} method(s)", ev.methods.len()),
        });
    }
    let inputs = VqaEvalInputs {
        questions: required(&cli.questions, "questions", "vqa")?,
        question_types: cli.question_types.as_deref(),
        stream_dir,
    };
    let ev = evaluate_vqa(&inputs, s)?;
    Ok(OneRun {
        producer: producer(s, "vqa", ev.methods.iter().map(|m| &m.name))?,
        outputs: report::outputs(&ev)?,
        table: render_tables(&ev),
        summary: format!(
            "{} method(s), {} boundaries, {} questions",
            ev.methods.len(),
            ev.positions.len(),
            ev.questions
        ),
    })
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

/// Records the written files in the run manifest under `contract`'s fingerprint (which
/// already names `<out>/metrics.json`, written first); returns them listed for the summary
/// line.
fn record_written(
    mut contract: Contract,
    written: &[PathBuf],
    producer: &Producer,
) -> anyhow::Result<String> {
    for path in written.iter().skip(1) {
        contract = contract.output(path);
    }
    contract.record(producer)?;
    Ok(written
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", "))
}
