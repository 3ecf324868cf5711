//! Feature maps of a frozen backbone (G) over a folder of images, as a features dataset.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::features::{extract_features, ExtractConfig, IdFrom};
use remind::models::{Arch, Cut, Stem};
use remind::run::{load_section, Shard};
use remind_stages::{main_with, Common, Compute, Sharding};

#[derive(Parser)]
#[command(
    version,
    about = "Images through a frozen ResNet cut at a layer, into a features dataset (HWC float32)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    sharding: Sharding,
    #[command(flatten)]
    compute: Compute,
    /// Image folder (PNG/JPEG, walked recursively).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Output dataset folder (one part file per shard, images.parquet, bad-image reports).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backbone weights: safetensors with torchvision names (see scripts/convert_weights.py).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// resnet18, resnet34, resnet50, resnet101 or resnet152 [default: resnet101].
    #[arg(long)]
    arch: Option<Arch>,
    /// Base channels [default: 64, torchvision's].
    #[arg(long)]
    width: Option<i64>,
    /// imagenet (7x7/2 conv + max-pool) or small (3x3/1 conv, no pool; for 28-32 px images).
    #[arg(long)]
    stem: Option<Stem>,
    /// Last layer of G: layer1..layer4, or a block such as layer4.0 [default: layer3].
    #[arg(long)]
    cut: Option<Cut>,
    /// Images are resized (bicubic) to this square side [default: 224].
    #[arg(long)]
    image_size: Option<usize>,
    /// Ids: sorted (position in the sorted relative paths), clevr-filename (the index in
    /// CLEVR_{split}_{NNNNNN}.png) or coco-filename (the image id in
    /// COCO_{split}_{NNNNNNNNNNNN}.jpg, TDIUC's images) [default: sorted].
    #[arg(long)]
    id_from: Option<IdFrom>,
    /// Images per forward pass [default: 16].
    #[arg(long)]
    batch: Option<usize>,
    /// List undecodable images in bad_images.json instead of failing.
    #[arg(long)]
    skip_bad: bool,
    /// Decoding threads [default: 1].
    #[arg(long)]
    decode_threads: Option<usize>,
}

fn main() -> ExitCode {
    main_with("remind-extract-features", || {
        let cli = Cli::parse();
        let mut cfg: ExtractConfig =
            load_section(cli.common.config.as_deref(), "extract_features")?;
        cfg.images = cli.images.or(cfg.images);
        cfg.out = cli.out.or(cfg.out);
        cfg.weights = cli.weights.or(cfg.weights);
        cfg.arch = cli.arch.unwrap_or(cfg.arch);
        cfg.width = cli.width.unwrap_or(cfg.width);
        cfg.stem = cli.stem.unwrap_or(cfg.stem);
        cfg.cut = cli.cut.unwrap_or(cfg.cut);
        cfg.image_size = cli.image_size.unwrap_or(cfg.image_size);
        cfg.id_from = cli.id_from.unwrap_or(cfg.id_from);
        cfg.batch = cli.batch.unwrap_or(cfg.batch);
        cfg.skip_bad |= cli.skip_bad;
        cfg.decode_threads = cli.decode_threads.unwrap_or(cfg.decode_threads);
        cli.compute.apply_threads();
        let device = cli.compute.device.device()?;
        let shard = Shard::resolve(cli.sharding.shard)?;
        let outcome = extract_features(&cfg, device, shard)?;
        let Some(part) = &outcome.part else {
            eprintln!("remind-extract-features: shard {shard} already complete, skipped");
            return Ok(());
        };
        let run_dir = cli.common.run_dir()?;
        let mut inputs = Vec::new();
        inputs.extend(cfg.images.as_deref());
        inputs.extend(cfg.weights.as_deref());
        record_output(&run_dir, part, &outcome.producer, &inputs)?;
        record_output(&run_dir, &outcome.index, &outcome.producer, &inputs)?;
        eprintln!(
            "remind-extract-features: wrote {} ({} rows of {:?} HWC); backbone busy {:.1}% of the {:.2} s pipeline",
            part.display(),
            outcome.rows,
            outcome.shape,
            100.0 * outcome.busy_seconds / outcome.pipeline_seconds.max(1e-9),
            outcome.pipeline_seconds
        );
        if let Some(report) = &outcome.report {
            eprintln!(
                "remind-extract-features: {} unreadable image(s) listed in {}",
                outcome.bad.len(),
                report.display()
            );
        }
        Ok(())
    })
}
