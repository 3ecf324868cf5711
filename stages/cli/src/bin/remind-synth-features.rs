//! Writes synthetic ReLU-like feature maps as a features dataset (tests, benchmarks).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::run::{config_hash, load_section, Shard};
use remind::synth::{write_synthetic_features, SynthConfig};
use remind_stages::{main_with, Common, Sharding};

#[derive(Parser)]
#[command(
    version,
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
    #[arg(long)]
    items: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    batch: Option<usize>,
}

fn main() -> ExitCode {
    main_with("remind-synth-features", || {
        let cli = Cli::parse();
        let mut cfg: SynthConfig = load_section(cli.common.config.as_deref(), "synth_features")?;
        cfg.items = cli.items.unwrap_or(cfg.items);
        cfg.height = cli.height.unwrap_or(cfg.height);
        cfg.width = cli.width.unwrap_or(cfg.width);
        cfg.channels = cli.channels.unwrap_or(cfg.channels);
        cfg.seed = cli.seed.unwrap_or(cfg.seed);
        cfg.batch = cli.batch.unwrap_or(cfg.batch);
        let shard = Shard::resolve(cli.sharding.shard)?;
        if let Some(path) = write_synthetic_features(&cfg, &cli.out, shard)? {
            let producer = Producer::new("synth-features", &config_hash(&cfg)?);
            record_output(&cli.common.run_dir()?, &path, &producer, &[])?;
            eprintln!("remind-synth-features: wrote {}", path.display());
        }
        Ok(())
    })
}
