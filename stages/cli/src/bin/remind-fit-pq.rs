//! Stage fit-pq: fits the product quantizer on a features dataset and writes the codebook.

use std::path::PathBuf;

use clap::Parser;
use remind::codes::fit_pq::{fit_pq, IdFilter};
use remind::pq::PqParams;
use remind_stages::{stage, ComputeStage};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Fit a product quantizer (M codebooks of 2^nbits centroids) on feature maps"
)]
struct Cli {
    #[command(flatten)]
    common: ComputeStage,
    /// Features dataset (folder of parts or one .arrow file).
    #[arg(long)]
    features: PathBuf,
    /// Fit only on the items whose ids this Parquet table lists (e.g. the base-init split).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Column of --ids holding the item ids.
    #[arg(long, default_value = "id")]
    ids_column: String,
    /// Output codebook file (.arrow).
    #[arg(long)]
    out: PathBuf,
    /// Fit report (JSON); default: beside --out, as fit_report.json for codebook.arrow and
    /// NAME.fit_report.json for any other NAME.arrow (codebooks of a sweep in one folder
    /// keep one report each).
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    section: FitPqFlags,
}

/// Flags laid over the config section `fit_pq`.
#[derive(clap::Args, Serialize)]
struct FitPqFlags {
    /// M: number of sub-spaces.
    #[arg(long)]
    num_subspaces: Option<usize>,
    /// Bits per code: 2^nbits centroids per sub-space.
    #[arg(long)]
    nbits: Option<u32>,
    /// k-means iterations per sub-space.
    #[arg(long)]
    iterations: Option<usize>,
    /// k-means trains on at most this many vectors per centroid (a seeded sample).
    #[arg(long)]
    max_points_per_centroid: Option<usize>,
    /// Seed of the sample and of the k-means initialisation.
    #[arg(long)]
    seed: Option<u64>,
    /// Learn an OPQ rotation before quantizing (codes then decode through it).
    #[arg(long)]
    opq: bool,
    /// Alternations of the OPQ fit.
    #[arg(long)]
    opq_iterations: Option<usize>,
}

stage!(Cli, "fit_pq", PqParams, |cli, p| {
    cli.common.compute.apply_threads()?;
    anyhow::ensure!(
        !cli.out.is_dir(),
        "--out {}: is a folder, but the codebook is a file: give a file path (e.g. {})",
        cli.out.display(),
        cli.out.join("codebook.arrow").display()
    );
    let report = cli.report.clone().unwrap_or_else(|| {
        let name = match cli.out.file_stem().and_then(|s| s.to_str()) {
            None | Some("codebook") => "fit_report.json".to_string(),
            Some(stem) => format!("{stem}.fit_report.json"),
        };
        cli.out.with_file_name(name)
    });
    let mut contract = cli
        .common
        .contract("fit-pq")?
        .config("fit_pq", &p)?
        .input("features", &cli.features)
        .input_opt("ids", cli.ids.as_deref())
        .param("ids_column", &cli.ids_column)
        .output(&cli.out)
        .output(&report);
    if contract.up_to_date()? {
        return Ok(());
    }
    let filter = cli.ids.as_deref().map(|table| IdFilter {
        table,
        column: &cli.ids_column,
    });
    let (rep, producer) = fit_pq(
        &cli.features,
        filter.as_ref(),
        &p,
        cli.common.compute.device.device()?,
        &cli.out,
        &report,
    )?;
    contract.record(&producer)?;
    eprintln!(
            "remind-fit-pq: {}{} codebooks x {} centroids on {} of {} vectors in {:.2}s, train MSE {:.5} ({:.2}% of the mean squared norm) -> {}",
            if p.opq { "OPQ rotation + " } else { "" },
            rep.num_subspaces, 1usize << rep.nbits, rep.train_vectors, rep.input_vectors, rep.fit_seconds,
            rep.train_mse, 100.0 * rep.relative_mse, cli.out.display()
        );
    Ok(())
});
