//! Stage stream-train: the streaming VQA experiment for one method (remind, finetune or
//! offline) over PQ codes, with predictions and a checkpoint at every boundary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::{Producer, Table};
use remind::run::{config_hash, load_section};
use remind::stages::codebook::load_codebook;
use remind::stream::order::Order;
use remind::stream::vqa::{run_vqa_stream, Method, Resume, StreamSettings, VqaInputs};
use remind::vqa::ModelConfig;
use remind_stages::{main_with, tune_allocator, Common, Compute};

#[derive(Parser)]
#[command(
    version,
    about = "Streaming VQA (REMIND, fine-tune or offline) over PQ codes"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    compute: Compute,
    /// remind, finetune or offline.
    #[arg(long)]
    method: Method,
    /// Folder written by remind-import-questions (questions, vocabulary, answers).
    #[arg(long)]
    questions: PathBuf,
    #[arg(long)]
    train_codes: PathBuf,
    #[arg(long)]
    val_codes: PathBuf,
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
    /// iid or qtype.
    #[arg(long)]
    order: Option<Order>,
    #[arg(long)]
    seed: Option<u64>,
    /// r: replayed questions per update.
    #[arg(long)]
    replay: Option<usize>,
    #[arg(long)]
    max_per_type: Option<usize>,
}

fn main() -> ExitCode {
    main_with("remind-stream-train", || {
        let cli = Cli::parse();
        tune_allocator();
        cli.compute.apply_threads();
        let config = cli.common.config.as_deref();
        let mut s: StreamSettings = load_section(config, "stream")?;
        s.order = cli.order.unwrap_or(s.order);
        s.seed = cli.seed.unwrap_or(s.seed);
        s.replay = cli.replay.unwrap_or(s.replay);
        s.max_per_type = cli.max_per_type.or(s.max_per_type);
        let mut model: ModelConfig = load_section(config, "model")?;
        // Sizes the data decide.
        let vocab = Table::read(&cli.questions.join("vocabulary.parquet"), "vocabulary")?;
        let answers = Table::read(&cli.questions.join("answers.parquet"), "vocabulary")?;
        let (_, info) = load_codebook(&cli.codebook)?;
        model.vocab_size = vocab.num_rows();
        model.num_answers = answers.num_rows();
        model.in_channels = info.d;
        let questions = cli.questions.join("questions.parquet");
        let inputs = VqaInputs {
            questions: &questions,
            train_codes: &cli.train_codes,
            val_codes: &cli.val_codes,
            codebook: &cli.codebook,
        };
        let device = cli.compute.device.device()?;
        let resume = match (cli.resume, cli.restart_stale) {
            (false, _) => Resume::No,
            (true, false) => Resume::Strict,
            (true, true) => Resume::RestartStale,
        };
        run_vqa_stream(&s, &model, &inputs, &cli.out, cli.method, device, resume)
            .with_context(|| format!("stream-train {} failed", cli.method.name()))?;
        let producer = Producer::new("stream-train", &config_hash(&(&s, &model))?)
            .param("method", cli.method.name());
        let done = cli.out.join(cli.method.name());
        record_output(
            &cli.common.run_dir()?,
            &done,
            &producer,
            &[&questions, &cli.train_codes, &cli.val_codes, &cli.codebook],
        )?;
        Ok(())
    })
}
