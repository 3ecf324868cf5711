//! The codebook artifact: one row per PQ sub-space (id = m) holding its 2^nbits centroids
//! of d/M floats; the PQ parameters and fit results in `remind.pq` metadata.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::artifact::{DType, Payload, Producer, TensorFile, TensorSpec, TensorWriter};
use crate::pq::{PqParams, ProductQuantizer};

pub const PQ_KEY: &str = "remind.pq";
pub const CODEBOOK_HASH_KEY: &str = "remind.codebook_hash";

/// What `remind.pq` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodebookInfo {
    pub d: usize,
    pub num_subspaces: usize,
    pub nbits: u32,
    pub dsub: usize,
    pub params: PqParams,
    pub train_vectors: usize,
    /// None for codebooks imported from elsewhere.
    pub train_mse: Option<f64>,
    pub codebook_hash: String,
}

/// Writes `pq` to `path` atomically.
pub fn save_codebook(
    path: &Path,
    pq: &ProductQuantizer,
    info: &CodebookInfo,
    producer: Producer,
) -> Result<PathBuf> {
    let spec = TensorSpec::new(
        "codebook",
        &[pq.ksub(), pq.dsub()],
        "KD",
        DType::F32,
        producer,
    )
    .with(PQ_KEY, serde_json::to_string(info)?)
    .with(CODEBOOK_HASH_KEY, info.codebook_hash.clone());
    let ids: Vec<u64> = (0..pq.num_subspaces() as u64).collect();
    let mut w = TensorWriter::create(path, spec)?;
    w.write(&ids, Payload::F32(&pq.centroids_vec()?), vec![])?;
    w.finish()
}

/// Reads a codebook artifact (validated) into a CPU quantizer.
pub fn load_codebook(path: &Path) -> Result<(ProductQuantizer, CodebookInfo)> {
    let p = path.display();
    let file = TensorFile::open(path, "codebook")?;
    let info: CodebookInfo = serde_json::from_str(file.meta(PQ_KEY)?)
        .with_context(|| format!("{p}: field '{PQ_KEY}' is not valid codebook information"))?;
    let shape = file.shape().to_vec();
    ensure!(
        shape.len() == 2 && shape[0] == 1 << info.nbits && shape[1] == info.dsub,
        "{p}: field 'remind.shape': expected [{}, {}], found {shape:?}",
        1usize << info.nbits,
        info.dsub
    );
    ensure!(
        file.len() == info.num_subspaces,
        "{p}: expected {} sub-space rows, found {}",
        info.num_subspaces,
        file.len()
    );
    let mut values = Vec::with_capacity(file.len() * file.width());
    for b in 0..file.num_batches() {
        values.extend_from_slice(file.batch_f32(b)?);
    }
    let centroids = Tensor::from_slice(&values).view([
        info.num_subspaces as i64,
        shape[0] as i64,
        shape[1] as i64,
    ]);
    let pq = ProductQuantizer::from_centroids(centroids)
        .with_context(|| format!("{p}: invalid codebook"))?;
    let hash = pq.hash()?;
    ensure!(
        hash == info.codebook_hash,
        "{p}: field '{CODEBOOK_HASH_KEY}': expected {}, found {hash}",
        info.codebook_hash
    );
    Ok((pq, info))
}
