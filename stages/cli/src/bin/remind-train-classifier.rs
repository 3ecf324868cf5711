//! Base initialisation for image classification: trains the whole ResNet on the base
//! classes of a label table (remind-import-images) and writes the best weights.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::classify::base_train::{report_path, train_classifier, TrainClassifierConfig};
use remind::models::{Arch, Stem};
use remind::run::load_section;
use remind_stages::{main_with, Common, Compute};

#[derive(Parser)]
#[command(
    version,
    about = "Train a ResNet from scratch on the base classes (REMIND's base initialisation); keep the checkpoint with the best validation top-1"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    compute: Compute,
    /// Label table (labels.parquet of remind-import-images).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Image root [default: the one the label table records].
    #[arg(long)]
    images: Option<PathBuf>,
    /// Output weights (safetensors, torchvision names of the whole network).
    #[arg(long)]
    out: Option<PathBuf>,
    /// resnet18 ... resnet152 [default: resnet18].
    #[arg(long)]
    arch: Option<Arch>,
    /// Base channels [default: 64].
    #[arg(long)]
    width: Option<i64>,
    /// imagenet (224 px inputs) or small (28-32 px inputs) [default: imagenet].
    #[arg(long)]
    stem: Option<Stem>,
    /// [default: 224]
    #[arg(long)]
    image_size: Option<usize>,
    /// [default: 30]
    #[arg(long)]
    epochs: Option<usize>,
    /// [default: 128]
    #[arg(long)]
    batch: Option<usize>,
    /// Peak SGD learning rate (warm-up, then cosine decay) [default: 0.1].
    #[arg(long)]
    lr: Option<f64>,
    /// [default: 0]
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    main_with("remind-train-classifier", || {
        let cli = Cli::parse();
        let mut cfg: TrainClassifierConfig =
            load_section(cli.common.config.as_deref(), "train_classifier")?;
        cfg.labels = cli.labels.or(cfg.labels);
        cfg.images = cli.images.or(cfg.images);
        cfg.out = cli.out.or(cfg.out);
        cfg.arch = cli.arch.unwrap_or(cfg.arch);
        cfg.width = cli.width.unwrap_or(cfg.width);
        cfg.stem = cli.stem.unwrap_or(cfg.stem);
        cfg.image_size = cli.image_size.unwrap_or(cfg.image_size);
        cfg.epochs = cli.epochs.unwrap_or(cfg.epochs);
        cfg.batch = cli.batch.unwrap_or(cfg.batch);
        cfg.lr = cli.lr.unwrap_or(cfg.lr);
        cfg.seed = cli.seed.unwrap_or(cfg.seed);
        cli.compute.apply_threads();
        let device = cli.compute.device.device()?;
        let epochs = cfg.epochs;
        let report = train_classifier(&cfg, device, |e| {
            eprintln!(
                "remind-train-classifier: epoch {}/{epochs}: loss {:.4}, train top-1 {:.2}%, val top-1 {:.2}%, lr {:.4}, {:.1}s",
                e.epoch, e.loss, 100.0 * e.train_top1, 100.0 * e.val_top1, e.lr, e.seconds
            );
        })?;
        let out = PathBuf::from(&report.weights);
        let producer = Producer::new("train-classifier", &report.config_hash);
        let inputs: Vec<&std::path::Path> = cfg.labels.as_deref().into_iter().collect();
        let run_dir = cli.common.run_dir()?;
        record_output(&run_dir, &out, &producer, &inputs)?;
        record_output(&run_dir, &report_path(&out), &producer, &inputs)?;
        eprintln!(
            "remind-train-classifier: wrote {} (best epoch {}: val top-1 {:.2}% on the {} base classes), {:.1}s",
            out.display(),
            report.best_epoch,
            100.0 * report.best_val_top1,
            report.base_classes,
            report.seconds
        );
        Ok(())
    })
}
