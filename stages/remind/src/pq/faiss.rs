//! faiss's serialisation of a product quantizer, as its own tools write it
//! (faiss/impl/index_write.cpp, read back by index_read.cpp):
//!
//! - `faiss.write_ProductQuantizer`: little-endian u64 d, M, nbits, then the centroid vector
//!   as a u64 length and M * 2^nbits * d/M float32 values in (m, k, dsub) order — the same
//!   layout as ours. Written by [`to_faiss_bytes`].
//! - `faiss.write_index` of an `IndexPQ`: the fourcc `IxPq` (`IxPQ`, `IxPo` from older
//!   versions), the index header (i32 d, i64 ntotal, two i64 dummies, u8 is_trained,
//!   i32 metric_type, then an f32 metric_arg when metric_type > 1), the ProductQuantizer as
//!   above, the codes (u64 length and bytes) and, for `IxPq`/`IxPo`, the search parameters
//!   (i32 search_type, u8 encode_signs, i32 polysemous_ht). Its quantizer is read.
//!
//! Every other faiss object (an IVF index, a flat index, an IndexPreTransform holding OPQ,
//! HNSW...) is recognised by its fourcc and refused by name.

use anyhow::{bail, ensure, Context, Result};
use tch::Tensor;

use super::ProductQuantizer;

/// The class faiss writes under the fourcc `four` (faiss/impl/index_write.cpp), and
/// whether it holds a ProductQuantizer at `index.pq`.
fn faiss_object(four: &[u8]) -> Option<(&'static str, bool)> {
    Some(match four {
        b"IxPQ" | b"IxPq" | b"IxPo" => ("IndexPQ", true),
        b"IxFI" => ("IndexFlatIP", false),
        b"IxF2" => ("IndexFlatL2", false),
        b"IxFl" => ("IndexFlat", false),
        b"IxHE" | b"IxHe" => ("IndexLSH", false),
        b"IxPT" => ("IndexPreTransform", false),
        b"IxSQ" => ("IndexScalarQuantizer", false),
        b"IxRQ" | b"IxRq" => ("IndexResidualQuantizer", false),
        b"IxLS" => ("IndexLocalSearchQuantizer", false),
        b"IxPR" => ("IndexProductResidualQuantizer", false),
        b"IxPL" => ("IndexProductLocalSearchQuantizer", false),
        b"IvFl" | b"IvFL" | b"IwFl" => ("IndexIVFFlat", false),
        b"IwFd" => ("IndexIVFFlatDedup", false),
        b"IvSQ" | b"IwSQ" | b"IwSq" => ("IndexIVFScalarQuantizer", false),
        b"IvPQ" | b"IwPQ" => ("IndexIVFPQ", true),
        b"IvQR" | b"IwQR" => ("IndexIVFPQR", true),
        b"IwSh" => ("IndexIVFSpectralHash", false),
        b"IPfs" => ("IndexPQFastScan", true),
        b"IwPf" => ("IndexIVFPQFastScan", true),
        b"IHNf" => ("IndexHNSWFlat", false),
        b"IHNp" => ("IndexHNSWPQ", false),
        b"IHNs" => ("IndexHNSWSQ", false),
        b"IHN2" => ("IndexHNSW2Level", false),
        b"IxMp" => ("IndexIDMap", false),
        b"IxM2" => ("IndexIDMap2", false),
        b"IxRF" => ("IndexRefine", false),
        b"Ix2L" => ("Index2Layer", true),
        b"IxLa" => ("IndexLattice", false),
        b"null" => ("empty index slot", false),
        _ => return None,
    })
}

/// The faiss class named by the fourcc `four`, if it is one faiss writes.
pub fn faiss_object_name(four: &[u8]) -> Option<&'static str> {
    faiss_object(four).map(|(name, _)| name)
}

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

/// A quantizer from a faiss file's bytes: a bare `write_ProductQuantizer` file or the
/// quantizer of an `IndexPQ` written by `write_index` (layouts in the module docs). Any
/// other faiss object is refused naming it; `what` names the source in errors.
pub fn from_faiss_bytes(bytes: &[u8], what: &str) -> Result<ProductQuantizer> {
    let four = bytes.get(..4).unwrap_or_default();
    let fourcc_like = four.len() == 4 && four.iter().all(u8::is_ascii_alphanumeric);
    if !fourcc_like {
        // A bare ProductQuantizer starts with d as a u64: its high bytes are zero.
        let mut r = Reader { bytes, at: 0, what };
        let pq =
            read_product_quantizer(&mut r).map_err(|e| {
                match crate::artifact::sniff::describe(bytes) {
                    Some(kind) => e.context(format!(
                        "{what} is {kind}, not a faiss ProductQuantizer or IndexPQ file"
                    )),
                    None => e,
                }
            })?;
        r.expect_end("ProductQuantizer")?;
        return Ok(pq);
    }
    let name = String::from_utf8_lossy(four);
    match faiss_object(four) {
        Some(("IndexPQ", _)) => {}
        Some((object, holds_pq)) => {
            let hint = if holds_pq {
                " (this index holds one: faiss.write_ProductQuantizer(index.pq, PATH) writes it)"
            } else if four == b"IxPT" {
                " (faiss keeps an OPQ or PCA transform there, which a faiss import cannot carry)"
            } else {
                ""
            };
            bail!(
                "{what}: an {object} (faiss fourcc {name}), not a product quantizer: give a \
                 ProductQuantizer file (faiss.write_ProductQuantizer) or an IndexPQ file \
                 (faiss.write_index of an IndexPQ){hint}"
            );
        }
        None => {
            let kind = crate::artifact::sniff::describe(bytes)
                .unwrap_or_else(|| format!("an unknown faiss object (fourcc {name:?})"));
            bail!(
                "{what} is {kind}: give a ProductQuantizer file (faiss.write_ProductQuantizer) \
                 or an IndexPQ file (faiss.write_index of an IndexPQ)"
            )
        }
    }
    let mut r = Reader { bytes, at: 4, what };
    let d = r.i32("index d")?;
    let ntotal = r.i64("index ntotal")?;
    r.skip(16, "index header")?;
    r.skip(1, "index is_trained")?;
    let metric = r.i32("index metric_type")?;
    if metric > 1 {
        r.skip(4, "index metric_arg")?;
    }
    let pq = read_product_quantizer(&mut r)?;
    ensure!(
        i64::from(d) == pq.dim() as i64,
        "{what}: the IndexPQ has d={d} but its ProductQuantizer d={}",
        pq.dim()
    );
    let codes = r.u64("IndexPQ codes length")?;
    let code_size = (pq.num_subspaces() * pq.nbits() as usize).div_ceil(8) as u64;
    ensure!(
        u64::try_from(ntotal)
            .ok()
            .and_then(|n| n.checked_mul(code_size))
            == Some(codes),
        "{what}: the IndexPQ holds {codes} code bytes, expected ntotal={ntotal} x {code_size}"
    );
    r.skip(codes, "IndexPQ codes")?;
    if four != b"IxPQ" {
        r.skip(4 + 1 + 4, "IndexPQ search parameters")?;
    }
    r.expect_end("IndexPQ")?;
    Ok(pq)
}

/// A bounds-checked little-endian cursor: no input can make it panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'a str,
}

impl Reader<'_> {
    fn take(&mut self, n: u64, field: &str) -> Result<&[u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&e| e <= self.bytes.len())
            .with_context(|| {
                format!(
                    "{}: truncated faiss file: {field} needs {n} bytes at offset {}, the file \
                     has {}",
                    self.what,
                    self.at,
                    self.bytes.len()
                )
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn skip(&mut self, n: u64, field: &str) -> Result<()> {
        self.take(n, field).map(|_| ())
    }
    fn u64(&mut self, field: &str) -> Result<u64> {
        let b = self.take(8, field)?;
        Ok(u64::from_le_bytes(b.try_into()?))
    }
    fn i64(&mut self, field: &str) -> Result<i64> {
        let b = self.take(8, field)?;
        Ok(i64::from_le_bytes(b.try_into()?))
    }
    fn i32(&mut self, field: &str) -> Result<i32> {
        let b = self.take(4, field)?;
        Ok(i32::from_le_bytes(b.try_into()?))
    }
    fn expect_end(&self, object: &str) -> Result<()> {
        ensure!(
            self.at == self.bytes.len(),
            "{}: {} bytes after the end of the {object} (at offset {}): not a single faiss \
             {object}",
            self.what,
            self.bytes.len() - self.at,
            self.at
        );
        Ok(())
    }
}

/// `write_ProductQuantizer`'s fields at the cursor, checked before anything is allocated.
fn read_product_quantizer(r: &mut Reader) -> Result<ProductQuantizer> {
    let what = r.what.to_string();
    let d = r.u64("ProductQuantizer d")?;
    let m = r.u64("ProductQuantizer M")?;
    let nbits = r.u64("ProductQuantizer nbits")?;
    ensure!(
        m > 0 && d > 0 && d.is_multiple_of(m),
        "{what}: ProductQuantizer d={d} is not a positive multiple of M={m}"
    );
    ensure!(
        (1..=8).contains(&nbits),
        "{what}: ProductQuantizer nbits={nbits} is not supported (1 to 8)"
    );
    let k = 1u64 << nbits;
    let len = r.u64("ProductQuantizer centroids length")?;
    let want = d.checked_mul(k);
    ensure!(
        want == Some(len),
        "{what}: expected d x 2^nbits = {d} x {k} centroid values, found {len}"
    );
    let body = r
        .take(len.saturating_mul(4), "ProductQuantizer centroids")
        .with_context(|| {
            format!(
                "{what}: expected {} bytes of centroids",
                len.saturating_mul(4)
            )
        })?;
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
