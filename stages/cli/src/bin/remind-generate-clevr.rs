//! Generates mini-CLEVR: images, questions and scenes in CLEVR v1.0's layout and formats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use remind::artifact::manifest::record_output;
use remind::artifact::Producer;
use remind::clevr::tdiuc::write_tdiuc;
use remind::clevr::{generate, GenerateClevrConfig, SizePreset};
use remind::run::{config_hash, load_section};
use remind_stages::{main_with, Common};

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
    version,
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
    #[arg(long)]
    seed: Option<u64>,
    /// Image side in pixels.
    #[arg(long)]
    image_size: Option<usize>,
    #[arg(long)]
    train_images: Option<usize>,
    #[arg(long)]
    val_images: Option<usize>,
    #[arg(long)]
    questions_per_image: Option<usize>,
    #[arg(long)]
    min_objects: Option<usize>,
    #[arg(long)]
    max_objects: Option<usize>,
}

fn main() -> ExitCode {
    main_with("remind-generate-clevr", || {
        let cli = Cli::parse();
        let mut cfg: GenerateClevrConfig =
            load_section(cli.common.config.as_deref(), "generate_clevr")?;
        if let Some(preset) = cli.size {
            cfg.apply_preset(preset);
        }
        cfg.seed = cli.seed.unwrap_or(cfg.seed);
        cfg.image_size = cli.image_size.unwrap_or(cfg.image_size);
        cfg.train_images = cli.train_images.unwrap_or(cfg.train_images);
        cfg.val_images = cli.val_images.unwrap_or(cfg.val_images);
        cfg.questions_per_image = cli.questions_per_image.unwrap_or(cfg.questions_per_image);
        cfg.min_objects = cli.min_objects.unwrap_or(cfg.min_objects);
        cfg.max_objects = cli.max_objects.unwrap_or(cfg.max_objects);
        let summaries = generate(&cfg, &cli.out)?;
        let producer = Producer::new("generate-clevr", &config_hash(&cfg)?);
        let run_dir = cli.common.run_dir()?;
        for s in &summaries {
            record_output(&run_dir, &s.questions_file, &producer, &[])?;
            record_output(&run_dir, &s.scenes_file, &producer, &[])?;
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
                for f in &s.files {
                    record_output(&run_dir, f, &producer.clone().param("format", "tdiuc"), &[])?;
                }
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
        eprintln!("remind-generate-clevr: wrote {}", cli.out.display());
        Ok(())
    })
}
