//! Rust half of `make bench-pq`: prints fit/encode/decode timings and held-out MSE as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::diag::bench_pq::bench_pq;
use remind::pq::PqParams;
use remind_stages::{main_with, Compute};

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Time PQ fit, encode and decode on a features dataset"
)]
struct Cli {
    #[command(flatten)]
    compute: Compute,
    /// Features dataset (folder of parts or one .arrow file).
    #[arg(long)]
    features: PathBuf,
    /// Items held out for the reconstruction error (the last ones).
    #[arg(long, default_value_t = 200)]
    holdout_items: usize,
    /// M: number of sub-spaces.
    #[arg(long, default_value_t = 32)]
    num_subspaces: usize,
    /// Bits per code: 2^nbits centroids per sub-space.
    #[arg(long, default_value_t = 8)]
    nbits: u32,
    /// Timed repetitions of encode and decode (the best is reported).
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Seed of the training subsample and the k-means initialisation.
    #[arg(long, default_value_t = PqParams::default().seed)]
    seed: u64,
}

fn main() -> ExitCode {
    main_with("remind-bench-pq", || {
        let cli = remind_stages::parse_args::<Cli>();
        cli.compute.apply_threads()?;
        let params = PqParams {
            num_subspaces: cli.num_subspaces,
            nbits: cli.nbits,
            seed: cli.seed,
            ..PqParams::default()
        };
        let r = bench_pq(
            &cli.features,
            cli.holdout_items,
            &params,
            cli.compute.device.device()?,
            cli.repeats,
        )?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        Ok(())
    })
}
