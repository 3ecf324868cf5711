//! Stage extract-codes: PQ-encodes a features dataset into a codes dataset.

use std::path::PathBuf;

use clap::Parser;
use remind::artifact::dataset::part_path;
use remind::codes::extract_codes::{extract_codes, ExtractCodesConfig};
use remind::run::Shard;
use remind_stages::{stage, ShardedComputeStage};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Encode feature maps into PQ codes (H*W*M bytes per item)"
)]
struct Cli {
    #[command(flatten)]
    common: ShardedComputeStage,
    /// Features dataset (folder of parts or one .arrow file).
    #[arg(long)]
    features: PathBuf,
    /// Codebook written by remind-fit-pq.
    #[arg(long)]
    codebook: PathBuf,
    /// Output codes dataset folder (one part file per shard).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    section: ExtractCodesFlags,
}

/// Flags laid over the config section `extract_codes`.
#[derive(clap::Args, Serialize)]
struct ExtractCodesFlags {
    /// Items per batch.
    #[arg(long)]
    batch: Option<usize>,
}

stage!(Cli, "extract_codes", ExtractCodesConfig, |cli, section| {
    cli.common.compute.apply_threads()?;
    let batch = section.batch;
    let shard = Shard::resolve(cli.common.sharding.shard)?;
    let device = cli.common.compute.device.device()?;
    let part = part_path(&cli.out, shard);
    let mut contract = cli
        .common
        .contract("extract-codes")?
        .config("extract_codes", &section)?
        .input("features", &cli.features)
        .input("codebook", &cli.codebook)
        .param("shard", shard.to_string())
        .output(&part);
    if contract.up_to_date()? {
        return Ok(());
    }
    contract.remove_outputs()?;
    if let Some((path, producer)) =
        extract_codes(&cli.features, &cli.codebook, &cli.out, shard, batch, device)?
    {
        contract.record(&producer)?;
        eprintln!("remind-extract-codes: wrote {}", path.display());
    }
    Ok(())
});
