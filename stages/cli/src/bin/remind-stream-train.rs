//! Stage stream-train: one streaming method (remind, finetune or offline) over PQ codes,
//! with predictions and a checkpoint at every boundary / evaluation point. Two tasks: VQA
//! (questions over CLEVR/TDIUC codes) and image classification (the class-incremental
//! ImageNet protocol), chosen by --task or the config's top-level `task`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use remind::artifact::{Producer, Table};
use remind::codes::codebook::load_codebook;
use remind::data::questions::check_same_import;
use remind::models::vqa::{ModelConfig, QuestionInput};
use remind::run::config::{section_sets, top_level_string};
use remind::run::{config_hash, load_section, load_section_over, Contract, Precision};
use remind::stream::classify::{run_classify_stream, ClassifyInputs, ClassifySettings};
use remind::stream::layout::RunLayout;
use remind::stream::vqa::data::QuestionFeatures;
use remind::stream::vqa::{run_vqa_stream, StreamSettings, VqaInputs};
use remind::stream::{Method, Resume};
use remind_stages::{defaults_of, main_with, parse_with_defaults, tune_allocator, ComputeStage};
use serde::Serialize;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Task {
    Vqa,
    Classification,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Vqa => "vqa",
            Task::Classification => "classification",
        }
    }
}

#[derive(clap::Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Streaming VQA or class-incremental image classification (REMIND, fine-tune or offline) over PQ codes"
)]
struct Cli {
    #[command(flatten)]
    common: ComputeStage,
    /// remind, finetune or offline.
    #[arg(long)]
    method: Method,
    /// vqa or classification [default: the config's top-level `task`, else vqa].
    #[arg(long, value_enum)]
    task: Option<Task>,
    /// VQA: folder written by remind-import-questions (questions, vocabulary, answers).
    #[arg(long, required_if_eq("task", "vqa"))]
    questions: Option<PathBuf>,
    /// VQA: codes of the training images.
    #[arg(long)]
    train_codes: Option<PathBuf>,
    /// VQA: codes of the validation images.
    #[arg(long)]
    val_codes: Option<PathBuf>,
    /// VQA with gensen input (model.question_input: gensen): the question_features
    /// dataset(s) of remind-import-gensen, covering the train and val questions; repeat the
    /// flag for one file per split [default: stream.question_features].
    #[arg(long)]
    question_features: Vec<PathBuf>,
    /// Classification: the label table (labels.parquet of remind-import-images).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Classification: codes of every image (training and validation).
    #[arg(long)]
    codes: Option<PathBuf>,
    /// Classification: base-initialisation weights of the whole network (F starts there).
    #[arg(long)]
    base_weights: Option<PathBuf>,
    /// Continue from the checkpoint of this evaluation point (0 = after base
    /// initialisation); later checkpoints are dropped.
    #[arg(long, conflicts_with = "resume")]
    resume_from: Option<usize>,
    /// The codebook the codes were made with (remind-fit-pq).
    #[arg(long)]
    codebook: PathBuf,
    /// Output folder (one sub-folder per method).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the latest checkpoint in --out (refused if made under another config).
    #[arg(long)]
    resume: bool,
    /// With --resume: discard checkpoints made under another config instead of refusing.
    #[arg(long, requires = "resume")]
    restart_stale: bool,
    #[command(flatten)]
    section: StreamFlags,
}

/// Flags laid over the config section (`stream` for VQA, `classify_stream` for
/// classification).
#[derive(clap::Args, Serialize)]
struct StreamFlags {
    /// The stream order: VQA iid or qtype (the default); classification class_iid (the
    /// default), iid, instance or class_instance.
    #[arg(long)]
    order: Option<String>,
    /// Classification, orders iid and instance: streamed images per evaluation point.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Seed of the plan and of every draw of the stream.
    #[arg(long)]
    seed: Option<u64>,
    /// r: replayed items per update.
    #[arg(long)]
    replay: Option<usize>,
    /// VQA: use at most this many training questions per question type.
    #[arg(long)]
    max_per_type: Option<usize>,
    /// Compute precision: fp32, or bf16 mixed precision (bf16 forward passes, fp32 master
    /// weights, optimiser and losses; refused on a CPU without bf16 instructions)
    /// [default: fp32].
    #[arg(long)]
    precision: Option<Precision>,
}

fn main() -> ExitCode {
    main_with("remind-stream-train", || {
        // The classification order is left out of its section's serialisation while the
        // default; named here so that --help sees the two tasks' defaults differ.
        let mut classify = defaults_of::<ClassifySettings>();
        classify.insert(
            "order".into(),
            ClassifySettings::default().order.to_string().into(),
        );
        let cli = parse_with_defaults::<Cli>(&[defaults_of::<StreamSettings>(), classify]);
        tune_allocator();
        cli.common.compute.apply_threads()?;
        let configured = match cli.common.config.as_deref() {
            Some(c) => match top_level_string(c, "task")?.as_deref() {
                None => None,
                Some("vqa") => Some(Task::Vqa),
                Some("classification") => Some(Task::Classification),
                Some(other) => anyhow::bail!(
                    "{}: task '{other}' is not vqa or classification",
                    c.display()
                ),
            },
            None => None,
        };
        // A config written for one task run as the other would stream on the other task's
        // defaults without a word.
        if let (Some(given), Some(file), Some(c)) =
            (cli.task, configured, cli.common.config.as_deref())
        {
            anyhow::ensure!(
                given == file,
                "--task {} contradicts {}'s top-level 'task: {}': drop --task, or give a \
                 config of that task",
                given.name(),
                c.display(),
                file.name()
            );
        }
        let task = cli.task.or(configured).unwrap_or(Task::Vqa);
        match task {
            Task::Vqa => vqa(cli),
            Task::Classification => classification(cli),
        }
    })
}

fn need<'a>(v: &'a Option<PathBuf>, flag: &str, task: &str) -> anyhow::Result<&'a PathBuf> {
    v.as_ref()
        .with_context(|| format!("--task {task} needs --{flag}"))
}

/// The contract of one method's stream, for `task`: its output is the method's completion
/// marker; the caller adds the config sections and inputs.
fn stream_contract(cli: &Cli, task: &str) -> anyhow::Result<Contract> {
    let done = RunLayout::new(&cli.out)
        .method(cli.method.name())
        .complete();
    let contract = cli.common.contract("stream-train")?.force(cli.common.force);
    // --resume-from asks for a re-run from a checkpoint: never "up to date".
    let contract = match cli.resume_from {
        Some(k) => contract.forced_by(&format!("--resume-from {k} was given")),
        None => contract,
    };
    Ok(contract
        .param("task", task)
        .param("method", cli.method.name())
        .output(&done))
}

fn resume_mode(cli: &Cli) -> Resume {
    match (cli.resume_from, cli.resume, cli.restart_stale) {
        (Some(k), _, _) => Resume::From(k),
        (None, false, _) => Resume::No,
        (None, true, false) => Resume::Latest,
        (None, true, true) => Resume::RestartStale,
    }
}

fn classification(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.config.as_deref();
    let s: ClassifySettings = load_section_over(config, "classify_stream", &cli.section)?;
    let labels = need(&cli.labels, "labels", "classification")?;
    let codes = need(&cli.codes, "codes", "classification")?;
    let base_weights = need(&cli.base_weights, "base-weights", "classification")?;
    let mut contract = stream_contract(&cli, "classification")?
        .config("classify_stream", &s)?
        .input("labels", labels)
        .input("codes", codes)
        .input("codebook", &cli.codebook)
        .input("base_weights", base_weights);
    if contract.up_to_date()? {
        return Ok(());
    }
    let digest = contract.inputs_digest();
    let inputs = ClassifyInputs {
        labels,
        codes,
        codebook: &cli.codebook,
        base_weights,
        inputs_digest: Some(&digest),
    };
    let resume = resume_mode(&cli);
    let device = cli.common.compute.device.device()?;
    run_classify_stream(&s, &inputs, &cli.out, cli.method, device, resume)
        .with_context(|| format!("stream-train {} failed", cli.method.name()))?;
    let producer = Producer::new("stream-train", &config_hash(&s)?)
        .param("method", cli.method.name())
        .param("task", "classification");
    contract.record(&producer)?;
    Ok(())
}

fn vqa(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.config.as_deref();
    let s: StreamSettings = load_section_over(config, "stream", &cli.section)?;
    let mut model: ModelConfig = load_section(config, "model")?;
    let questions_dir = need(&cli.questions, "questions", "vqa")?;
    let train_codes = need(&cli.train_codes, "train-codes", "vqa")?;
    let val_codes = need(&cli.val_codes, "val-codes", "vqa")?;
    // Sizes the data decide.
    let vocab = Table::read(&questions_dir.join("vocabulary.parquet"), "vocabulary")?;
    let answers = Table::read(&questions_dir.join("answers.parquet"), "vocabulary")?;
    for table in [&vocab, &answers] {
        anyhow::ensure!(
            table.num_rows() > 0,
            "{}: no rows: expected at least one entry (import the questions again)",
            table.path.display()
        );
    }
    let (_, info) = load_codebook(&cli.codebook)?;
    model.vocab_size = vocab.num_rows();
    model.num_answers = answers.num_rows();
    model.in_channels = info.d;
    let feature_paths = if cli.question_features.is_empty() {
        s.question_features.clone()
    } else {
        cli.question_features.clone()
    };
    let features = match model.question_input {
        QuestionInput::Gensen => {
            anyhow::ensure!(
                !feature_paths.is_empty(),
                "model.question_input is gensen: give --question-features (the question_features \
                 output of remind-import-gensen) or stream.question_features in the config"
            );
            let f = QuestionFeatures::open(&feature_paths)?;
            // D comes from the file unless the config names it, which must then agree.
            if section_sets(config, "model", "gensen_dim")? {
                anyhow::ensure!(
                    model.gensen_dim == f.dim(),
                    "{}: sentence vectors are {} wide, but model.gensen_dim is {}",
                    feature_paths[0].display(),
                    f.dim(),
                    model.gensen_dim
                );
            }
            model.gensen_dim = f.dim();
            Some(f)
        }
        QuestionInput::Tokens => {
            anyhow::ensure!(
                feature_paths.is_empty(),
                "question features ({}) were given, but model.question_input is tokens",
                feature_paths[0].display()
            );
            None
        }
    };
    let questions = questions_dir.join("questions.parquet");
    check_same_import(&[
        &questions,
        &questions_dir.join("vocabulary.parquet"),
        &questions_dir.join("answers.parquet"),
    ])?;
    let mut contract = stream_contract(&cli, "vqa")?
        .config("stream", &s)?
        .config("model", &model)?;
    for name in ["questions", "vocabulary", "answers"] {
        contract = contract.input(name, &questions_dir.join(format!("{name}.parquet")));
    }
    contract = contract
        .input("train_codes", train_codes)
        .input("val_codes", val_codes)
        .input("codebook", &cli.codebook);
    for (i, f) in feature_paths.iter().enumerate() {
        contract = contract.input(&format!("question_features.{i}"), f);
    }
    if contract.up_to_date()? {
        return Ok(());
    }
    let digest = contract.inputs_digest();
    let inputs = VqaInputs {
        questions: &questions,
        train_codes,
        val_codes,
        codebook: &cli.codebook,
        question_features: features.as_ref(),
        inputs_digest: Some(&digest),
    };
    let device = cli.common.compute.device.device()?;
    let resume = resume_mode(&cli);
    run_vqa_stream(&s, &model, &inputs, &cli.out, cli.method, device, resume)
        .with_context(|| format!("stream-train {} failed", cli.method.name()))?;
    let producer = Producer::new("stream-train", &config_hash(&(&s, &model))?)
        .param("method", cli.method.name());
    contract.record(&producer)?;
    Ok(())
}
