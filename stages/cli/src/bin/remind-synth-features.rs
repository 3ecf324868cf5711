//! Writes synthetic ReLU-like feature maps as a features dataset (tests, benchmarks).

use std::path::PathBuf;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::diag::synth::{write_synthetic_features, SynthConfig};
use remind::run::{config_hash, Shard};
use remind_stages::{stage, Common, Sharding};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Synthetic post-ReLU feature maps as a features dataset"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    sharding: Sharding,
    /// Output dataset folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    section: SynthFlags,
}

/// Flags laid over the config section `synth_features`.
#[derive(clap::Args, Serialize)]
struct SynthFlags {
    /// Feature maps to generate.
    #[arg(long)]
    items: Option<usize>,
    /// Map height.
    #[arg(long)]
    height: Option<usize>,
    /// Map width.
    #[arg(long)]
    width: Option<usize>,
    /// Channels per position.
    #[arg(long)]
    channels: Option<usize>,
    /// Seed of the generator.
    #[arg(long)]
    seed: Option<u64>,
    /// Maps generated per batch.
    #[arg(long)]
    batch: Option<usize>,
}

stage!(Cli, "synth_features", SynthConfig, |cli, cfg| {
    let shard = Shard::resolve(cli.sharding.shard)?;
    if let Some(path) = write_synthetic_features(&cfg, &cli.out, shard)? {
        let producer = Producer::new("synth-features", &config_hash(&cfg)?);
        record_output(&cli.common.run_dir()?, &path, &producer, &[])?;
        eprintln!("remind-synth-features: wrote {}", path.display());
    }
    Ok(())
});
