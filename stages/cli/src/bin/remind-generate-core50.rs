//! Generates mini-CORe50: a small continual-learning image data set in CORe50's release
//! layout (`s{1..11}/o{oo}/C_{ss}_{oo}_{fff}.png`; Lomonaco & Maltoni, CoRL 2017).

use std::path::PathBuf;

use clap::Parser;
use remind::artifact::Producer;
use remind::data::core50::generate::{generate, GenerateCore50Config};
use remind::data::core50::layout::CATEGORIES;
use remind::run::config_hash;
use remind_stages::{stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Generate a mini-CORe50 data set (CORe50's release layout: 10 categories, 11 \
             sessions, video-like frame sequences) from a seed"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Data-set root: s1/..s11/ and mini_core50.json are written under it (an earlier
    /// mini-CORe50 there is replaced once the new one is complete; other data is refused).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    section: GenerateCore50Flags,
}

/// Flags laid over the config section `generate_core50`.
#[derive(clap::Args, Serialize)]
struct GenerateCore50Flags {
    /// Seed: the data set is a function of the config and this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Objects per category, 1..=5: objects o{5c+1}.. of each category c, as in the release.
    #[arg(long)]
    objects_per_category: Option<usize>,
    /// Frames per (session, object) sequence, 1..=999.
    #[arg(long)]
    frames_per_session: Option<usize>,
    /// Image side in pixels, 8..=512 (the release has 128).
    #[arg(long)]
    image_size: Option<usize>,
}

stage!(Cli, "generate_core50", GenerateCore50Config, |cli, cfg| {
    cfg.validate()?;
    let mut contract = cli
        .common
        .contract("generate-core50")?
        .config("generate_core50", &cfg)?
        .output(&cli.out);
    if contract.up_to_date()? {
        return Ok(());
    }
    let report = generate(&cfg, &cli.out)?;
    let producer = Producer::new("generate-core50", &config_hash(&cfg)?);
    contract.record(&producer)?;
    eprintln!(
        "remind-generate-core50: {} objects ({} per category x {CATEGORIES} categories), {} \
         sessions, {} frames each: {} images of {}x{} px; wrote {}",
        report.objects,
        cfg.objects_per_category,
        report.sessions,
        report.frames_per_session,
        report.images,
        report.image_size,
        report.image_size,
        report.out.display()
    );
    Ok(())
});
