//! Generates mini-CLEVR: images, questions and scenes in CLEVR v1.0's layout and formats.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use remind::artifact::Producer;
use remind::data::clevr::tdiuc::write_tdiuc;
use remind::data::clevr::{generate, GenerateClevrConfig, SizePreset, GENERATOR};
use remind::run::{config_hash, load_section_over};
use remind_stages::{defaults_of, main_with, parse_with_defaults, Common};
use serde::Serialize;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// CLEVR v1.0's layout only.
    Clevr,
    /// CLEVR's layout, and the same questions and images in TDIUC's layout under
    /// <out>/tdiuc (Questions/, Annotations/, Images/{train2014,val2014}/COCO_*.png), with
    /// CLEVR's programs mapped onto TDIUC question types.
    Tdiuc,
}

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Generate a mini-CLEVR data set (CLEVR v1.0 layout) from a seed"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Data-set root: images/, questions/ and scenes/ are written under it.
    #[arg(long)]
    out: PathBuf,
    /// clevr, or tdiuc: also write the data set in TDIUC's layout under <out>/tdiuc.
    #[arg(long, value_enum, default_value = "clevr")]
    format: Format,
    /// Size preset: tiny (40 train / 20 val images) or default (2000 / 500); sets the image
    /// and question counts, which the flags below override.
    #[arg(long)]
    size: Option<SizePreset>,
    #[command(flatten)]
    section: GenerateClevrFlags,
}

/// Flags laid over the config section `generate_clevr`.
#[derive(clap::Args, Serialize)]
struct GenerateClevrFlags {
    /// Seed: the data set is a function of the config and this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Image side in pixels.
    #[arg(long)]
    image_size: Option<usize>,
    /// Training images.
    #[arg(long)]
    train_images: Option<usize>,
    /// Validation images.
    #[arg(long)]
    val_images: Option<usize>,
    /// Questions drawn per image (before answer balancing).
    #[arg(long)]
    questions_per_image: Option<usize>,
    /// Fewest objects in a scene.
    #[arg(long)]
    min_objects: Option<usize>,
    /// Most objects in a scene.
    #[arg(long)]
    max_objects: Option<usize>,
}

fn main() -> ExitCode {
    main_with("remind-generate-clevr", || {
        let mut cli = parse_with_defaults::<Cli>(&[defaults_of::<GenerateClevrConfig>()]);
        if let Some(preset) = cli.size {
            // The preset's counts stand in for the count flags not given: above the config,
            // below the flags.
            let mut sized = GenerateClevrConfig::default();
            sized.apply_preset(preset);
            let flags = &mut cli.section;
            flags.train_images.get_or_insert(sized.train_images);
            flags.val_images.get_or_insert(sized.val_images);
            flags
                .questions_per_image
                .get_or_insert(sized.questions_per_image);
        }
        let cfg: GenerateClevrConfig =
            load_section_over(cli.common.config.as_deref(), "generate_clevr", &cli.section)?;
        let mut contract = cli
            .common
            .contract("generate-clevr")?
            .config("generate_clevr", &cfg)?
            .param("format", cli.format == Format::Tdiuc);
        for split in ["train", "val"] {
            for kind in ["questions", "scenes"] {
                contract = contract.output(
                    &cli.out
                        .join(kind)
                        .join(format!("CLEVR_{split}_{kind}.json")),
                );
            }
        }
        if contract.up_to_date()? {
            return Ok(());
        }
        clear_generated(&cli.out)?;
        let summaries = generate(&cfg, &cli.out)?;
        let producer = Producer::new("generate-clevr", &config_hash(&cfg)?);
        for s in &summaries {
            let types: Vec<String> = s.per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
            eprintln!(
                "remind-generate-clevr: {}: {} images, {} questions ({}), {} distinct answers",
                s.split,
                s.images,
                s.questions,
                types.join(", "),
                s.answers.len()
            );
        }
        if cli.format == Format::Tdiuc {
            let tdiuc = cli.out.join("tdiuc");
            for s in write_tdiuc(&cli.out, &tdiuc)? {
                let types: Vec<String> =
                    s.per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
                eprintln!(
                    "remind-generate-clevr: {} in TDIUC's layout: {} images, {} questions ({})",
                    s.split,
                    s.images,
                    s.questions,
                    types.join(", ")
                );
            }
            eprintln!("remind-generate-clevr: wrote {}", tdiuc.display());
        }
        contract.record(&producer)?;
        eprintln!("remind-generate-clevr: wrote {}", cli.out.display());
        Ok(())
    })
}

/// Removes an earlier generated data set under `out` (its images, questions, scenes and
/// TDIUC copy), so a smaller one leaves no stale images behind; refuses to touch a folder
/// whose questions were not generated here (a real CLEVR release).
fn clear_generated(out: &Path) -> anyhow::Result<()> {
    let questions = out.join("questions").join("CLEVR_train_questions.json");
    if questions.is_file() {
        let text = std::fs::read(&questions)
            .with_context(|| format!("cannot read {}", questions.display()))?;
        let generator = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["info"]["generator"].as_str().map(str::to_string));
        anyhow::ensure!(
            generator.as_deref() == Some(GENERATOR),
            "{} was not written by remind-generate-clevr (info.generator is {}): refusing to              generate over a data set; give another --out",
            questions.display(),
            generator.map_or("absent".into(), |g| format!("'{g}'"))
        );
    }
    for sub in ["images", "questions", "scenes", "tdiuc"] {
        let d = out.join(sub);
        if d.is_dir() {
            std::fs::remove_dir_all(&d)
                .with_context(|| format!("cannot remove the earlier {}", d.display()))?;
        }
    }
    Ok(())
}
