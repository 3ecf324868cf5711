//! Base initialisation for image classification: trains the whole ResNet on the base
//! classes of a label table (remind-import-images) and writes the best weights.

use std::path::PathBuf;

use clap::Parser;
use remind::artifact::Producer;
use remind::backbone::classifier::{report_path, train_classifier, TrainClassifierConfig};
use remind::data::images::labels::LabelSet;
use remind::models::{Arch, Stem};
use remind_stages::{stage, ComputeStage, LearningRate, Training};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Train a ResNet from scratch on the base classes (REMIND's base initialisation); keep the checkpoint with the best validation top-1"
)]
struct Cli {
    #[command(flatten)]
    common: ComputeStage,
    #[command(flatten)]
    section: TrainClassifierFlags,
}

/// Flags laid over the config section `train_classifier`. The section has no `cut` (the
/// whole network is trained), so the shape flags are its own rather than `NetworkShape`.
#[derive(clap::Args, Serialize)]
struct TrainClassifierFlags {
    /// Label table (labels.parquet of remind-import-images).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Image root [default: the one the label table records].
    #[arg(long)]
    images: Option<PathBuf>,
    /// Output weights (safetensors, torchvision names of the whole network).
    #[arg(long)]
    out: Option<PathBuf>,
    /// resnet18 ... resnet152.
    #[arg(long)]
    arch: Option<Arch>,
    /// Base channels.
    #[arg(long)]
    width: Option<i64>,
    /// imagenet (224 px inputs) or small (28-32 px inputs).
    #[arg(long)]
    stem: Option<Stem>,
    /// Images are resized to this many pixels square.
    #[arg(long)]
    image_size: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    training: Training<ScheduledSgd>,
    /// Seed of the initialisation, the order and the augmentation.
    #[arg(long)]
    seed: Option<u64>,
}

/// The rate of --lr: SGD under `train_classifier.schedule`.
struct ScheduledSgd;

impl LearningRate for ScheduledSgd {
    const HELP: &'static str = "Peak SGD learning rate of the schedule (train_classifier.schedule: warmup_cosine or one_cycle)";
}

stage!(
    Cli,
    "train_classifier",
    TrainClassifierConfig,
    |cli, cfg| {
        let (labels, out) = cfg.required()?;
        let images = LabelSet::read(labels)?.root(cfg.images.as_deref())?;
        let mut contract = cli
            .common
            .contract("train-classifier")?
            .config("train_classifier", &cfg)?
            .input("labels", labels)
            .input("images", &images)
            .output(out)
            .output(&report_path(out));
        if contract.up_to_date()? {
            return Ok(());
        }
        let device = cli.common.compute.setup()?;
        let epochs = cfg.epochs;
        let report = train_classifier(&cfg, device, |e| {
            eprintln!(
                "remind-train-classifier: epoch {}/{epochs}: loss {:.4}, train top-1 {:.2}%, val top-1 {:.2}%, lr {:.4}, {:.1}s",
                e.epoch, e.loss, 100.0 * e.train_top1, 100.0 * e.val_top1, e.lr, e.seconds
            );
        })?;
        contract.record(&Producer::new("train-classifier", &report.config_hash))?;
        eprintln!(
            "remind-train-classifier: wrote {} (best epoch {}: val top-1 {:.2}% on the {} base classes), {:.1}s",
            out.display(),
            report.best_epoch,
            100.0 * report.best_val_top1,
            report.base_classes,
            report.seconds
        );
        Ok(())
    }
);
