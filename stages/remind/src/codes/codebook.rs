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
/// OPQ rotation (`[d, d]` float32, row-major, little-endian), base64 in the metadata.
pub const OPQ_KEY: &str = "remind.opq_rotation";

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
    let spec = match pq.rotation_vec()? {
        Some(r) => {
            use base64::Engine;
            let bytes: &[u8] = bytemuck::cast_slice(&r);
            spec.with(
                OPQ_KEY,
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )
        }
        None => spec,
    };
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
    // Before any shift or product: codes are bytes, so at most 2^8 centroids (a claimed
    // `nbits: 200` would otherwise wrap around in `1 << nbits`).
    ensure!(
        (1..=8).contains(&info.nbits),
        "{p}: field '{PQ_KEY}': nbits must be 1 to 8 (codes are bytes), found {}",
        info.nbits
    );
    ensure!(
        info.num_subspaces >= 1
            && info.dsub >= 1
            && info.num_subspaces.checked_mul(info.dsub) == Some(info.d),
        "{p}: field '{PQ_KEY}': expected d = M x dsub, found d {}, M {}, dsub {}",
        info.d,
        info.num_subspaces,
        info.dsub
    );
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
    let mut pq = ProductQuantizer::from_centroids(centroids)
        .with_context(|| format!("{p}: invalid codebook"))?;
    if let Ok(text) = file.meta(OPQ_KEY) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| anyhow::anyhow!("{p}: field '{OPQ_KEY}' is not base64: {e}"))?;
        let d = info.d;
        ensure!(
            d.checked_mul(d).and_then(|dd| dd.checked_mul(4)) == Some(bytes.len()),
            "{p}: field '{OPQ_KEY}': expected {d}x{d} float32 ({} bytes), found {} bytes",
            d * d * 4,
            bytes.len()
        );
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        pq = pq
            .with_rotation(Tensor::from_slice(&values).view([d as i64, d as i64]))
            .with_context(|| format!("{p}: field '{OPQ_KEY}'"))?;
    }
    let hash = pq.hash()?;
    ensure!(
        hash == info.codebook_hash,
        "{p}: field '{CODEBOOK_HASH_KEY}': expected {}, found {hash}",
        info.codebook_hash
    );
    Ok((pq, info))
}
