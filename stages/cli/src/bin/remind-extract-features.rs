//! Feature maps of a frozen backbone (G) over a folder of images, as a features dataset.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use remind::artifact::dataset::part_path;
use remind::backbone::features::{extract_features, ExtractConfig, IdFrom};
use remind::run::config::section_sets;
use remind::run::{Precision, Shard};
use remind_stages::{stage, NetworkShape, ShardedComputeStage};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Images through a frozen ResNet cut at a layer, into a features dataset (HWC float32)"
)]
struct Cli {
    #[command(flatten)]
    common: ShardedComputeStage,
    #[command(flatten)]
    section: ExtractFeaturesFlags,
}

/// Flags laid over the config section `extract_features`.
#[derive(clap::Args, Serialize)]
struct ExtractFeaturesFlags {
    /// Image folder (PNG/JPEG, walked recursively).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Output dataset folder OUT (one part file per shard); the image index and bad-image
    /// reports go beside it: OUT.images.parquet, OUT.bad_images*.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backbone weights: safetensors with torchvision names (see scripts/convert_weights.py).
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    shape: NetworkShape,
    /// Ids: sorted (position in the sorted relative paths), clevr-filename (the index in
    /// CLEVR_{split}_{NNNNNN}.png) or coco-filename (the image id in
    /// COCO_{split}_{NNNNNNNNNNNN}.jpg, TDIUC's images).
    #[arg(long)]
    id_from: Option<IdFrom>,
    /// Images per forward pass.
    #[arg(long)]
    batch: Option<usize>,
    /// List undecodable images in OUT.bad_images.json instead of failing.
    #[arg(long)]
    skip_bad: bool,
    /// Decoding threads.
    #[arg(long)]
    decode_threads: Option<usize>,
    /// Compute precision of the forward pass: fp32, or bf16 (autocast; features are still
    /// written as fp32; refused on a CPU without bf16 instructions).
    #[arg(long)]
    precision: Option<Precision>,
}

stage!(Cli, "extract_features", ExtractConfig, |cli, cfg| {
    let device = cli.common.compute.setup()?;
    let shard = Shard::resolve(cli.common.sharding.shard)?;
    // The network comes from the weights unless a flag or the config names it.
    let mut cfg = cfg;
    let config = cli.common.config.clone();
    let shape = &cli.section.shape;
    let flag = |key: &str| match key {
        "arch" => shape.arch.is_some(),
        "width" => shape.width.is_some(),
        "stem" => shape.stem.is_some(),
        _ => false,
    };
    cfg.adopt_weights_network(|key| {
        flag(key) || section_sets(config.as_deref(), "extract_features", key).unwrap_or(true)
    })?;
    let (images, out, weights) = cfg.required()?;
    let mut contract = cli
        .common
        .contract("extract-features")?
        .config("extract_features", &cfg)?
        .input("images", images)
        .input("weights", weights)
        .param("shard", shard.to_string())
        // The shard's own part only: the image index beside it is shared by the shards.
        .output(&part_path(out, shard));
    if contract.up_to_date()? {
        return Ok(());
    }
    let part = part_path(out, shard);
    if part.is_file() {
        std::fs::remove_file(&part)
            .with_context(|| format!("cannot remove the stale {}", part.display()))?;
    }
    let outcome = extract_features(&cfg, device, shard)?;
    let Some(part) = &outcome.part else {
        eprintln!("remind-extract-features: shard {shard} already complete, skipped");
        return Ok(());
    };
    contract.record(&outcome.producer)?;
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
});
