//! Imports an image-classification data set (IDX files such as Fashion-MNIST, an
//! ImageNet-style folder, or CORe50's release layout): labels table, class order, base-initialisation split, report;
//! IDX images are written out as PNG folders.

use std::path::PathBuf;

use clap::Parser;
use remind::data::images::{load, producer, write, ImportImagesConfig};
use remind_stages::{replace_sources, stage, Common};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Import an image-classification data set (IDX files, an ImageNet-style folder or \
             CORe50's release layout): labels table with extract-features ids, class order, base-init split"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (e.g. Fashion-MNIST).
    #[arg(long)]
    idx: Option<PathBuf>,
    /// ImageNet-style root with train/<class>/* and val/<class>/* images.
    #[arg(long)]
    folder: Option<PathBuf>,
    /// CORe50's release root, s{1..11}/o{1..50}/C_ss_oo_fff.png (or mini-CORe50's).
    #[arg(long)]
    core50: Option<PathBuf>,
    #[command(flatten)]
    section: ImportImagesFlags,
}

/// Flags laid over the config section `import_images` (--idx and --folder replace the
/// config's source as a whole, so they are applied in `main`).
#[derive(clap::Args, Serialize)]
struct ImportImagesFlags {
    /// Output folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Names of IDX labels 0..n-1, comma-separated (default: the label numbers).
    #[arg(long, value_delimiter = ',')]
    class_names: Option<Vec<String>>,
    /// Class-order file, one class name per line (default: seeded shuffle).
    #[arg(long)]
    class_order: Option<PathBuf>,
    /// Seed of the class-order shuffle and the per-class subsampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of base-initialisation classes (the first ones of the order).
    #[arg(long)]
    base_classes: Option<usize>,
    /// Keep at most this many training items per class (seeded sample).
    #[arg(long)]
    max_train_per_class: Option<usize>,
    /// Keep at most this many validation items per class (seeded sample).
    #[arg(long)]
    max_val_per_class: Option<usize>,
    /// CORe50: the training sessions, comma-separated (default 1,2,4,5,6,8,9,11).
    #[arg(long, value_delimiter = ',')]
    train_sessions: Option<Vec<i64>>,
    /// CORe50: the test sessions, comma-separated (default 3,7,10).
    #[arg(long, value_delimiter = ',')]
    test_sessions: Option<Vec<i64>>,
    /// CORe50: the training sessions of the base initialisation (default: all).
    #[arg(long, value_delimiter = ',')]
    base_sessions: Option<Vec<i64>>,
    /// CORe50: the first N objects of every category are the base initialisation's (1).
    #[arg(long)]
    base_objects_per_category: Option<usize>,
    /// CORe50: keep the frames whose index is a multiple of this (default 1: all).
    #[arg(long)]
    frame_step: Option<usize>,
    /// CORe50: the release's training file list (one frame path per line); with --test-list.
    #[arg(long)]
    train_list: Option<PathBuf>,
    /// CORe50: the release's test file list; with --train-list.
    #[arg(long)]
    test_list: Option<PathBuf>,
}

stage!(Cli, "import_images", ImportImagesConfig, |cli, mut cfg| {
    // A source given here replaces the config's as a whole.
    replace_sources([
        (&mut cfg.idx, &cli.idx),
        (&mut cfg.folder, &cli.folder),
        (&mut cfg.core50, &cli.core50),
    ]);
    let (_, source) = cfg.source()?;
    let mut contract = cli
        .common
        .contract("import-images")?
        .config("import_images", &cfg)?
        .input("source", source)
        .input_opt("class_order", cfg.class_order.as_deref())
        .input_opt("train_list", cfg.train_list.as_deref())
        .input_opt("test_list", cfg.test_list.as_deref());
    for name in [
        "labels.parquet",
        "base_train.parquet",
        "class_order.txt",
        "import_report.json",
    ] {
        contract = contract.output(&cfg.out.join(name));
    }
    if contract.up_to_date()? {
        return Ok(());
    }
    let prepared = load(&cfg)?;
    let producer = producer(&cfg)?;
    let report = write(&prepared, &producer)?;
    contract.record(&producer)?;
    for (split, s) in &report.splits {
        eprintln!(
            "remind-import-images: {split}: {} of {} items",
            s.items, s.available
        );
    }
    eprintln!(
        "remind-import-images: {} classes ({} base, {} base training items), order from {}; \
             image root {}; wrote {}",
        report.num_classes,
        report.base_classes,
        report.base_train_items,
        report.class_order,
        report.image_root.display(),
        cfg.out.display()
    );
    Ok(())
});
