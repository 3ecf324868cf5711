//! faiss's serialisation of a `ProductQuantizer` (`faiss.write_ProductQuantizer` /
//! `faiss.read_ProductQuantizer`): little-endian u64 d, M, nbits, then the centroid vector
//! as a u64 length and M * 2^nbits * d/M float32 values in (m, k, dsub) order — the same
//! layout as ours.

use anyhow::{ensure, Context, Result};
use tch::Tensor;

use super::ProductQuantizer;

/// Bytes of `pq` in faiss's format.
pub fn to_faiss_bytes(pq: &ProductQuantizer) -> Result<Vec<u8>> {
    anyhow::ensure!(
        pq.rotation().is_none(),
        "this codebook has an OPQ rotation, which a faiss ProductQuantizer file cannot hold \
         (faiss keeps it in a separate OPQMatrix transform)"
    );
    let c = pq.centroids_vec()?;
    let mut out = Vec::with_capacity(32 + 4 * c.len());
    for v in [
        pq.dim() as u64,
        pq.num_subspaces() as u64,
        u64::from(pq.nbits()),
        c.len() as u64,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in c {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// A quantizer from bytes in faiss's format; `what` names the source in errors.
pub fn from_faiss_bytes(bytes: &[u8], what: &str) -> Result<ProductQuantizer> {
    let word = |i: usize| -> Result<u64> {
        let b = bytes
            .get(i * 8..i * 8 + 8)
            .with_context(|| format!("{what}: truncated faiss ProductQuantizer header"))?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    let (d, m, nbits, len) = (
        word(0)? as usize,
        word(1)? as usize,
        word(2)? as usize,
        word(3)? as usize,
    );
    ensure!(
        m > 0 && d.is_multiple_of(m),
        "{what}: d={d} is not a multiple of M={m}"
    );
    ensure!(
        (1..=8).contains(&nbits),
        "{what}: nbits={nbits} is not supported (1 to 8)"
    );
    let k = 1usize << nbits;
    ensure!(
        len == d * k,
        "{what}: expected {} centroid values for d={d}, nbits={nbits}, found {len}",
        d * k
    );
    let body = &bytes[32..];
    ensure!(
        body.len() == 4 * len,
        "{what}: expected {} bytes of centroids, found {}",
        4 * len,
        body.len()
    );
    let values: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ProductQuantizer::from_centroids(Tensor::from_slice(&values).view([
        m as i64,
        k as i64,
        (d / m) as i64,
    ]))
    .with_context(|| format!("{what}: invalid centroids"))
}
