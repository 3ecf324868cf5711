//! Inspects and verifies artifacts: schema, metadata, rows, checksums.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{ensure, Result};
use clap::{Parser, Subcommand};
use remind::artifact::dataset::{check_complete, compare_datasets};
use remind::artifact::schema::{all_schemas, Format};
use remind::artifact::table::read_id_column;
use remind::artifact::{Table, TensorDataset, TensorFile};
use remind_stages::main_with;

#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version = remind_stages::VERSION, about = "Inspect and verify remind-rs artifacts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the artifact kinds defined in schemas/.
    Schemas,
    /// Print an artifact's kind, rows, shape and metadata (validating it): tensor files and
    /// datasets, Parquet tables, weights (.safetensors: tensors, dtypes, shapes, metadata)
    /// and stream checkpoints (a boundary-KKK folder: its state, every file's digest checked).
    Inspect {
        /// Artifact file (.arrow, .parquet) or dataset folder.
        path: PathBuf,
    },
    /// Fully validate an artifact (schema, structure, ids, checksums); exit 1 if invalid.
    Verify {
        /// Artifact file (.arrow, .parquet) or dataset folder.
        path: PathBuf,
    },
    /// Check that a sharded dataset folder is complete before the next stage reads it: every
    /// shard's part present and valid, one shard count, the same parameters (config hash),
    /// ids disjoint and covering the input. Exit 1 naming the missing or damaged shards.
    CheckComplete {
        /// Dataset folder.
        dir: PathBuf,
        /// The shard count N the parts must have been written for.
        #[arg(long)]
        shards: Option<usize>,
        /// The input whose ids the dataset must hold exactly: a dataset (folder or .arrow) or
        /// a Parquet table with an `id` column [default: for a features folder DIR, the ids
        /// of DIR.images.parquet beside it less the images listed in DIR.bad_images*.json].
        #[arg(long)]
        covers: Option<PathBuf>,
    },
    /// Compare two artifacts by content; exit 1 at the first difference. Tensor datasets
    /// (file or folder, any sharding): kind, shape, layout, dtype, config hash, then ids and
    /// payload bytes row by row. Parquet tables: schema (without metadata) and rows.
    Compare {
        /// First artifact (file or dataset folder).
        a: PathBuf,
        /// Second artifact, of the same kind.
        b: PathBuf,
    },
    /// Write each section of a pipeline config as canonical JSON to <OUT>/<section>.json,
    /// rewriting only those whose content changed: the Makefile's section stamps (a touch
    /// or a comment in the config re-runs no stage; an edit re-runs the stages reading it).
    Sections {
        /// Pipeline config (pipelines/X.yaml).
        config: PathBuf,
        /// Stamp folder.
        out: PathBuf,
    },
}

fn is_weights(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "safetensors" || e == "pt" || e == "pth")
}

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet")
}

fn describe_tensor(file: &TensorFile) -> Result<()> {
    println!("file: {}", file.path().display());
    println!("kind: {}", file.meta("remind.kind")?);
    println!("rows: {}", file.len());
    println!(
        "shape: {:?}  layout: {}  dtype: {}",
        file.shape(),
        file.layout()?,
        file.dtype().name()
    );
    let mut keys: Vec<_> = file.metadata().iter().collect();
    keys.sort();
    for (k, v) in keys {
        println!("  {k} = {v}");
    }
    Ok(())
}

fn main() -> ExitCode {
    main_with("remind-artifact", || {
        match remind_stages::parse_args::<Cli>().command {
            Command::Schemas => {
                for s in all_schemas() {
                    let fmt = match s.format {
                        Format::ArrowIpc => "arrow-ipc",
                        Format::Parquet => "parquet",
                    };
                    let cols: Vec<_> = s
                        .columns
                        .iter()
                        .map(|c| format!("{}:{}", c.name, c.ty))
                        .collect();
                    println!("{} (v{}, {fmt}): {}", s.kind, s.version, cols.join(", "));
                }
            }
            Command::CheckComplete {
                dir,
                shards,
                covers,
            } => {
                let expected = match &covers {
                    Some(input) => Some(input_ids(input)?),
                    None => remind::backbone::features::expected_ids(&dir)?,
                };
                let done = check_complete(&dir, shards, expected.as_deref())?;
                let ids = match (done.first_id, done.last_id) {
                    (Some(lo), Some(hi)) => format!("ids {lo}..={hi}"),
                    _ => "no ids".into(),
                };
                println!(
                    "{}: complete: {} {} part(s), {} rows, {ids}{}, config hash {}",
                    dir.display(),
                    done.shards,
                    done.kind,
                    done.rows,
                    if expected.is_some() {
                        ", covering the input"
                    } else {
                        ""
                    },
                    done.config_hash
                );
            }
            Command::Compare { a, b } if is_parquet(&a) || is_parquet(&b) => {
                let (ta, tb) = (Table::read_any(&a)?, Table::read_any(&b)?);
                let fields = |t: &Table| {
                    t.batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect::<Vec<_>>()
                };
                ensure!(
                    ta.kind() == tb.kind() && fields(&ta) == fields(&tb),
                    "{} and {} differ in kind or columns",
                    a.display(),
                    b.display()
                );
                ensure!(
                    ta.num_rows() == tb.num_rows(),
                    "{} has {} rows, {} has {}",
                    a.display(),
                    ta.num_rows(),
                    b.display(),
                    tb.num_rows()
                );
                for (i, (ca, cb)) in ta
                    .batch
                    .columns()
                    .iter()
                    .zip(tb.batch.columns())
                    .enumerate()
                {
                    ensure!(
                        ca == cb,
                        "column '{}' differs between {} and {}",
                        ta.batch.schema().field(i).name(),
                        a.display(),
                        b.display()
                    );
                }
                println!("same: {} rows of {}", ta.num_rows(), ta.kind());
            }
            Command::Compare { a, b } => {
                let rows = compare_datasets(&a, &b)?;
                println!("same: {rows} rows");
            }
            Command::Sections { config, out } => {
                remind_stages::sections::check_sections(&config)?;
                let changed = remind::run::config::write_section_stamps(&config, &out)?;
                if !changed.is_empty() {
                    eprintln!(
                        "remind-artifact: {} -> {}: changed section(s): {}",
                        config.display(),
                        out.display(),
                        changed.join(", ")
                    );
                }
            }
            Command::Inspect { path } | Command::Verify { path } if is_weights(&path) => {
                let w = remind::artifact::weights::read_weights(&path)?;
                println!(
                    "file: {}
kind: weights
tensors: {}",
                    path.display(),
                    w.tensors.len()
                );
                let mut meta: Vec<_> = w.metadata.iter().collect();
                meta.sort();
                for (k, v) in meta {
                    println!("  {k} = {v}");
                }
                for (name, t) in &w.tensors {
                    println!("  tensor {name}: {:?} {:?}", t.kind(), t.size());
                    ensure!(
                        !t.is_floating_point() || t.isfinite().all().int64_value(&[]) == 1,
                        "{}: tensor '{name}' holds NaN or infinite values",
                        path.display()
                    );
                }
                println!("ok");
            }
            Command::Inspect { path } | Command::Verify { path }
                if path.join("state.json").is_file() =>
            {
                let st = remind::stream::checkpoint::read_state(&path)?;
                println!(
                    "checkpoint: {}
method: {}
evaluation point: {}
stream position: {}
\
                     config hash: {}
learning-rate counters: {}",
                    path.display(),
                    st.method,
                    st.boundary,
                    st.position,
                    st.config_hash,
                    st.counters.len()
                );
                for (file, digest) in &st.files {
                    println!("  {file}: sha256 {digest} (checked)");
                }
                println!("ok");
            }
            Command::Inspect { path } | Command::Verify { path } if is_parquet(&path) => {
                let table = Table::read_any(&path)?;
                println!(
                    "file: {}\nkind: {}\nrows: {}",
                    path.display(),
                    table.kind(),
                    table.num_rows()
                );
                for f in table.batch.schema().fields() {
                    println!("  column {}: {}", f.name(), f.data_type());
                }
            }
            Command::Inspect { path } | Command::Verify { path } => {
                if path.is_dir() {
                    let ds = TensorDataset::open_any(&path)?;
                    println!(
                        "dataset: {} ({} parts, {} rows)",
                        path.display(),
                        ds.parts().len(),
                        ds.len()
                    );
                    for part in ds.parts() {
                        describe_tensor(part)?;
                    }
                } else {
                    describe_tensor(&TensorFile::open_any(&path)?)?;
                }
                println!("ok");
            }
        }
        Ok(())
    })
}

/// The ids of `input`: a tensor dataset (folder or .arrow file) or a Parquet table's `id`.
fn input_ids(input: &Path) -> Result<Vec<u64>> {
    if is_parquet(input) {
        read_id_column(input, "id")
    } else {
        TensorDataset::open_any(input)?.ids()
    }
}
