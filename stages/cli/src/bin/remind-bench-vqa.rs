//! Times one VQA training update (forward, backward, Adamax step) on random inputs and
//! prints one JSON line {ms_per_update, updates_per_s, ...} (median over the timed
//! updates; min_ms_per_update the fastest).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use remind::models::vqa::{ModelConfig, ModelKind, QuestionInput, Questions, VqaModel};
use remind::run::precision::CpuBf16;
use remind::run::Precision;
use remind::train::optim::{OptimKind, Optimizer};
use remind_stages::{main_with, tune_allocator, Compute};
use tch::{nn, Kind, Tensor};

#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version = remind_stages::VERSION, about = "Time VQA model updates (S-MAC or UpDown)")]
struct Cli {
    #[command(flatten)]
    compute: Compute,
    /// VQA model: smac or updown.
    #[arg(long, default_value = "smac")]
    model: String,
    /// Model width (S-MAC's d; UpDown's hidden size).
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// S-MAC reasoning steps.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Channels of the decoded feature maps (the codebook's d).
    #[arg(long, default_value_t = 256)]
    in_channels: usize,
    /// Feature map height and width.
    #[arg(long, default_value_t = 8)]
    map: i64,
    /// Items per update (1 new + r replayed: 51 is the paper's r = 50).
    #[arg(long, default_value_t = 51)]
    batch: i64,
    /// Question length in tokens (gensen: ignored).
    #[arg(long, default_value_t = 12)]
    tokens: i64,
    /// Vocabulary size (token ids).
    #[arg(long, default_value_t = 100)]
    vocab: usize,
    /// Answer classes (28: CLEVR's).
    #[arg(long, default_value_t = 28)]
    answers: usize,
    /// Word-embedding width (300: GloVe's).
    #[arg(long, default_value_t = 300)]
    embed_dim: usize,
    /// LSTM units per direction (default: dim).
    #[arg(long)]
    lstm_hidden: Option<usize>,
    /// Use 2048-d sentence vectors instead of tokens.
    #[arg(long)]
    gensen: bool,
    /// What to time: forward only, forward + backward, or the whole update.
    #[arg(long, value_enum, default_value = "update")]
    phase: Phase,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Leave glibc's allocator settings alone (see `remind_stages::tune_allocator`).
    #[arg(long)]
    default_allocator: bool,
    /// Timed iterations.
    #[arg(long, default_value_t = 30)]
    iters: usize,
    /// fp32, or bf16 mixed precision (the forward under autocast, fp32 master weights,
    /// optimiser and loss; refused on a CPU without bf16 instructions).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Phase {
    Forward,
    Backward,
    Update,
}

fn main() -> ExitCode {
    main_with("remind-bench-vqa", || {
        let cli = remind_stages::parse_args::<Cli>();
        if !cli.default_allocator {
            tune_allocator();
        }
        cli.compute.apply_threads()?;
        bench(&cli)
    })
}

fn bench(cli: &Cli) -> Result<()> {
    let device = cli.compute.device.device()?;
    cli.precision.check(device, "--precision")?;
    let kind = match cli.model.as_str() {
        "smac" => ModelKind::SMac,
        "updown" => ModelKind::UpDown,
        other => anyhow::bail!("--model: expected smac or updown, found '{other}'"),
    };
    let cfg = ModelConfig {
        kind,
        in_channels: cli.in_channels,
        dim: cli.dim,
        steps: cli.steps,
        embed_dim: cli.embed_dim,
        lstm_hidden: cli.lstm_hidden.unwrap_or(cli.dim),
        num_answers: cli.answers,
        vocab_size: cli.vocab,
        question_input: if cli.gensen {
            QuestionInput::Gensen
        } else {
            QuestionInput::Tokens
        },
        ..ModelConfig::default()
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = VqaModel::new(&vs.root(), &cfg, None)?;
    let mut opt = Optimizer::new(&vs, OptimKind::adamax());
    let b = cli.batch;
    let feats = Tensor::randn(
        [b, cli.in_channels as i64, cli.map, cli.map],
        (Kind::Float, device),
    );
    let tokens = Tensor::randint_low(1, cli.vocab as i64, [b, cli.tokens], (Kind::Int64, device));
    let lengths = Tensor::randint_low(cli.tokens / 2, cli.tokens + 1, [b], (Kind::Int64, device))
        .clamp_min(1);
    let sentences = Tensor::randn([b, cfg.gensen_dim as i64], (Kind::Float, device));
    let answers = Tensor::randint(cli.answers as i64, [b], (Kind::Int64, device));
    let questions = if cli.gensen {
        Questions::Sentences(&sentences)
    } else {
        Questions::Tokens {
            tokens: &tokens,
            lengths: &lengths,
        }
    };
    let mut update = || -> Result<f64> {
        let logits = (cli.precision)
            .try_forward(device, &feats, |x| model.forward_t(x, &questions, true))?;
        let loss = logits.cross_entropy_for_logits(&answers);
        match cli.phase {
            Phase::Forward => {}
            Phase::Backward => {
                opt.zero_grad()?;
                loss.backward();
            }
            Phase::Update => opt.backward_step(&loss, 3e-4)?,
        }
        Ok(f64::try_from(loss)?)
    };
    for _ in 0..cli.warmup {
        update()?;
    }
    // Each update timed alone: the median and the minimum are robust to other load.
    let mut times = Vec::with_capacity(cli.iters);
    let cpu_start = process_cpu_seconds();
    let mut last = 0.0;
    for _ in 0..cli.iters {
        let t = Instant::now();
        last = update()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) / cli.iters.max(1) as f64),
        _ => None,
    };
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let min = times.first().copied().unwrap_or(f64::NAN);
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    println!(
        "{}",
        serde_json::json!({
            "model": cli.model,
            "device": format!("{device:?}"),
            "threads": tch::get_num_threads(),
            "dim": cli.dim,
            "steps": cli.steps,
            "input": [cli.in_channels, cli.map, cli.map],
            "batch": b,
            "tokens": cli.tokens,
            "gensen": cli.gensen,
            "trainable_parameters": params,
            "ms_per_update": median * 1e3,
            "updates_per_s": 1.0 / median,
            "min_ms_per_update": min * 1e3,
            "cpu_ms_per_update": cpu.map(|c| c * 1e3),
            "tuned_allocator": !cli.default_allocator,
            "phase": format!("{:?}", cli.phase).to_lowercase(),
            "final_loss": last,
            "precision": cli.precision.name(),
            "cpu_bf16": CpuBf16::detect(),
        })
    );
    Ok(())
}

/// User + system CPU time of this process (all threads), from /proc (Linux only; 10 ms
/// ticks). Unlike wall time, it barely moves when other processes share the cores.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
