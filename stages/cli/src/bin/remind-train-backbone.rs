//! Trains the frozen backbone G on a CLEVR-format training split, supervised by the scene
//! annotations (the stand-in for ImageNet pre-training), and writes its weights.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::backbone_train::{train_backbone, EpochReport, TrainBackboneConfig};
use remind::models::{Arch, Cut, Stem};
use remind::run::load_section;
use remind_stages::{main_with, Common, Compute};

#[derive(Parser)]
#[command(
    version,
    about = "Train a small ResNet's G on CLEVR scene annotations (attribute presence, (color, shape) pairs, object count); write G's weights with torchvision names"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    compute: Compute,
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
    /// Images are resized (bicubic) to this square side [default: 128].
    #[arg(long)]
    image_size: Option<usize>,
    /// resnet18, resnet34, resnet50, resnet101 or resnet152 [default: resnet18].
    #[arg(long)]
    arch: Option<Arch>,
    /// Base channels [default: 16].
    #[arg(long)]
    width: Option<i64>,
    /// imagenet (7x7/2 conv + max-pool) or small (3x3/1 conv, no pool) [default: imagenet].
    #[arg(long)]
    stem: Option<Stem>,
    /// Last layer of G, trained and saved: layer1..layer4 or a block such as layer4.0
    /// [default: layer3].
    #[arg(long)]
    cut: Option<Cut>,
    /// [default: 10]
    #[arg(long)]
    epochs: Option<usize>,
    /// [default: 32]
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate of Adam (warm-up, then cosine decay) [default: 0.004].
    #[arg(long)]
    lr: Option<f64>,
    /// L2 weight decay [default: 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Weight of the count loss against the summed presence losses [default: 1].
    #[arg(long)]
    count_weight: Option<f64>,
    /// Fraction of the used images (the last by index) held out for the metrics [default: 0.1].
    #[arg(long)]
    heldout_fraction: Option<f64>,
    /// No random horizontal flips.
    #[arg(long)]
    no_flip: bool,
    /// [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Image decoding threads [default: 2].
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

fn main() -> ExitCode {
    main_with("remind-train-backbone", || {
        let cli = Cli::parse();
        let mut cfg: TrainBackboneConfig =
            load_section(cli.common.config.as_deref(), "train_backbone")?;
        cfg.clevr_dir = cli.clevr_dir.or(cfg.clevr_dir);
        cfg.out = cli.out.or(cfg.out);
        cfg.report = cli.report.or(cfg.report);
        cfg.max_images = cli.max_images.or(cfg.max_images);
        cfg.image_size = cli.image_size.unwrap_or(cfg.image_size);
        cfg.arch = cli.arch.unwrap_or(cfg.arch);
        cfg.width = cli.width.unwrap_or(cfg.width);
        cfg.stem = cli.stem.unwrap_or(cfg.stem);
        cfg.cut = cli.cut.unwrap_or(cfg.cut);
        cfg.epochs = cli.epochs.unwrap_or(cfg.epochs);
        cfg.batch = cli.batch.unwrap_or(cfg.batch);
        cfg.lr = cli.lr.unwrap_or(cfg.lr);
        cfg.weight_decay = cli.weight_decay.unwrap_or(cfg.weight_decay);
        cfg.count_weight = cli.count_weight.unwrap_or(cfg.count_weight);
        cfg.heldout_fraction = cli.heldout_fraction.unwrap_or(cfg.heldout_fraction);
        cfg.flip &= !cli.no_flip;
        cfg.seed = cli.seed.unwrap_or(cfg.seed);
        cfg.decode_threads = cli.decode_threads.unwrap_or(cfg.decode_threads);
        cli.compute.apply_threads();
        let device = cli.compute.device.device()?;
        let epochs = cfg.epochs;
        let outcome = train_backbone(&cfg, device, |e| print_epoch(e, epochs))?;
        let run_dir = cli.common.run_dir()?;
        let inputs: Vec<&std::path::Path> = cfg.clevr_dir.as_deref().into_iter().collect();
        record_output(&run_dir, &outcome.weights, &outcome.producer, &inputs)?;
        record_output(&run_dir, &outcome.report_path, &outcome.producer, &inputs)?;
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
    })
}
