//! Converts codebooks between remind's artifact and faiss's ProductQuantizer file
//! (`faiss.read_ProductQuantizer` / `faiss.write_ProductQuantizer`); `from-faiss` also
//! takes the quantizer of an IndexPQ file (`faiss.write_index`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remind::artifact::atomic::write_bytes;
use remind::artifact::Producer;
use remind::codes::codebook::{load_codebook, save_codebook, CodebookInfo};
use remind::pq::{from_faiss_bytes, to_faiss_bytes, PqParams};
use remind_stages::main_with;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Convert PQ codebooks to and from faiss's ProductQuantizer format"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// remind codebook artifact -> faiss ProductQuantizer file.
    ToFaiss {
        /// remind codebook artifact (.arrow).
        codebook: PathBuf,
        /// faiss ProductQuantizer file to write.
        out: PathBuf,
    },
    /// faiss ProductQuantizer file, or IndexPQ file (faiss.write_index) -> remind codebook
    /// artifact.
    FromFaiss {
        /// faiss ProductQuantizer or IndexPQ file.
        faiss: PathBuf,
        /// remind codebook artifact to write (.arrow).
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    main_with("remind-pq-convert", || {
        match remind_stages::parse_args::<Cli>().command {
            Command::ToFaiss { codebook, out } => {
                let (pq, _) = load_codebook(&codebook)?;
                write_bytes(&out, &to_faiss_bytes(&pq)?)?;
            }
            Command::FromFaiss { faiss, out } => {
                let bytes = std::fs::read(&faiss)
                    .with_context(|| format!("cannot read {}", faiss.display()))?;
                let pq = from_faiss_bytes(&bytes, &faiss.display().to_string())?;
                let params = PqParams {
                    num_subspaces: pq.num_subspaces(),
                    nbits: pq.nbits(),
                    ..PqParams::default()
                };
                let info = CodebookInfo {
                    d: pq.dim(),
                    num_subspaces: pq.num_subspaces(),
                    nbits: pq.nbits(),
                    dsub: pq.dsub(),
                    params,
                    train_vectors: 0,
                    train_mse: None,
                    codebook_hash: pq.hash()?,
                };
                let producer = Producer::new("pq-convert", "faiss-import")
                    .param("source", faiss.display().to_string());
                save_codebook(&out, &pq, &info, producer)?;
            }
        }
        Ok(())
    })
}
