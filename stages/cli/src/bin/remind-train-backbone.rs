//! Trains the frozen backbone G on a CLEVR-format training split, supervised by the scene
//! annotations (the stand-in for ImageNet pre-training), and writes its weights.

use std::path::PathBuf;

use clap::Parser;
use remind::backbone::scenes::{train_backbone, EpochReport, TrainBackboneConfig};
use remind_stages::{stage, ComputeStage, LearningRate, NetworkShape, Training};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Train a small ResNet's G on CLEVR scene annotations (attribute presence, (color, shape) pairs, object count); write G's weights with torchvision names"
)]
struct Cli {
    #[command(flatten)]
    common: ComputeStage,
    #[command(flatten)]
    section: TrainBackboneFlags,
    /// No random horizontal flips.
    #[arg(long)]
    no_flip: bool,
}

/// Flags laid over the config section `train_backbone`.
#[derive(clap::Args, Serialize)]
struct TrainBackboneFlags {
    /// CLEVR-format root: images/train/*.png and scenes/CLEVR_train_scenes.json.
    #[arg(long)]
    clevr_dir: Option<PathBuf>,
    /// Output weights (safetensors), loadable by remind-extract-features --weights.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Report (JSON) [default: train_report.json beside --out].
    #[arg(long)]
    report: Option<PathBuf>,
    /// Use only the first N training images by image index (the base-init subset).
    #[arg(long)]
    max_images: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    shape: NetworkShape,
    #[command(flatten)]
    #[serde(flatten)]
    training: Training<Adam>,
    /// L2 weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Weight of the count loss against the summed presence losses.
    #[arg(long)]
    count_weight: Option<f64>,
    /// Fraction of the used images (the last by index) held out for the metrics.
    #[arg(long)]
    heldout_fraction: Option<f64>,
    /// Seed of the initialisation, the order and the augmentation.
    #[arg(long)]
    seed: Option<u64>,
    /// Image decoding threads.
    #[arg(long)]
    decode_threads: Option<usize>,
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
}

fn print_epoch(e: &EpochReport, epochs: usize) {
    let held = match &e.heldout {
        Some(h) => format!(
            ", held-out mean AUC {} (color {}, shape {}, color+shape {}), attribute acc {:.3}, count acc {:.3}",
            fmt_opt(h.mean_auc),
            fmt_opt(h.group_auc.get("color").copied().flatten()),
            fmt_opt(h.group_auc.get("shape").copied().flatten()),
            fmt_opt(h.group_auc.get("color_shape").copied().flatten()),
            h.attribute_accuracy,
            h.count_accuracy
        ),
        None => String::new(),
    };
    eprintln!(
        "remind-train-backbone: epoch {}/{epochs}: loss {:.4} (presence {:.4}, count {:.4}){held}, {:.1}s",
        e.epoch, e.loss, e.presence_loss, e.count_loss, e.seconds
    );
}

/// The rate of --lr: Adam.
struct Adam;

impl LearningRate for Adam {
    const HELP: &'static str = "Peak learning rate of Adam (warm-up, then cosine decay)";
}

stage!(
    Cli,
    "train_backbone",
    TrainBackboneConfig,
    |cli, mut cfg| {
        if cli.no_flip {
            cfg.flip = false;
        }
        let (root, out) = cfg.required()?;
        let mut contract = cli
            .common
            .contract("train-backbone")?
            .config("train_backbone", &cfg)?
            .input("clevr_dir", root)
            .output(out)
            .output(&cfg.report_path(out));
        if contract.up_to_date()? {
            return Ok(());
        }
        let device = cli.common.compute.setup()?;
        let epochs = cfg.epochs;
        let outcome = train_backbone(&cfg, device, |e| print_epoch(e, epochs))?;
        contract.record(&outcome.producer)?;
        let r = &outcome.report;
        eprintln!(
            "remind-train-backbone: wrote {} ({} {} width {}, G up to {}: {:?} HWC features at {} px) and {}; {} train / {} held-out images, {:.1}s",
            outcome.weights.display(),
            r.arch,
            r.stem,
            r.width,
            r.cut,
            r.feature_shape,
            r.image_size,
            outcome.report_path.display(),
            r.train_images,
            r.heldout_images,
            r.total_seconds
        );
        Ok(())
    }
);
