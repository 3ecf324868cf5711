//! Inspects and verifies artifacts: schema, metadata, rows, checksums.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use remind::artifact::schema::{all_schemas, Format};
use remind::artifact::{Table, TensorDataset, TensorFile};
use remind_stages::main_with;

#[derive(Parser)]
#[command(version, about = "Inspect and verify remind-rs artifacts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the artifact kinds defined in schemas/.
    Schemas,
    /// Print an artifact's kind, rows, shape and metadata (validating it).
    Inspect { path: PathBuf },
    /// Fully validate an artifact (schema, structure, ids, checksums); exit 1 if invalid.
    Verify { path: PathBuf },
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
        match Cli::parse().command {
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
                    let kind = first_kind(&path)?;
                    let ds = TensorDataset::open(&path, &kind)?;
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

/// The kind named by the first part of a dataset folder.
fn first_kind(dir: &Path) -> Result<String> {
    let parts = remind::artifact::dataset::complete_parts(dir)?;
    let file = TensorFile::open_any(&parts[0])?;
    Ok(file.meta("remind.kind")?.to_string())
}
