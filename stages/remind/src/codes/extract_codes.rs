//! Stage `extract-codes`: PQ-encodes every item of a features dataset into a codes dataset
//! (H*W*M bytes per item, layout HWM). Streams through the memory-mapped input in batches
//! with bounded memory; a reader thread copies the next batch while this one is encoded.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Result};
use tch::{Device, Tensor};

use super::codebook::{load_codebook, CODEBOOK_HASH_KEY};
use crate::artifact::dataset::{part_is_done, part_path};
use crate::artifact::{DType, Payload, Producer, TensorDataset, TensorSpec, TensorWriter};
use crate::run::{config_hash, Progress, Shard};

/// Config section `extract_codes`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractCodesConfig {
    /// Items per encoded batch.
    pub batch: usize,
}

impl Default for ExtractCodesConfig {
    fn default() -> Self {
        Self { batch: 256 }
    }
}

/// One batch read from the features: ids and their maps, row-major.
struct Batch {
    ids: Vec<u64>,
    values: Vec<f32>,
}

/// Encodes shard `shard` of `features` with `codebook` into the codes dataset `out`.
/// Returns the part written, or None when it already existed complete.
pub fn extract_codes(
    features: &Path,
    codebook: &Path,
    out: &Path,
    shard: Shard,
    batch_items: usize,
    device: Device,
) -> Result<Option<(PathBuf, Producer)>> {
    ensure!(batch_items > 0, "batch size must be positive");
    let ds = TensorDataset::open(features, "features")?;
    let (pq, info) = load_codebook(codebook)?;
    let shape = ds.shape().to_vec();
    ensure!(
        shape.len() == 3,
        "{}: expected HWC feature maps, found shape {shape:?}",
        features.display()
    );
    let (h, w, c) = (shape[0], shape[1], shape[2]);
    ensure!(
        c == pq.dim(),
        "{}: codebook d={} differs from the features' C={c} of {}",
        codebook.display(),
        pq.dim(),
        features.display()
    );
    let producer = Producer::new(
        "extract-codes",
        &config_hash(&(&info.codebook_hash, batch_items))?,
    )
    .param("features", features.display().to_string())
    .param("codebook", codebook.display().to_string());
    if part_is_done(out, shard, "codes", &producer.config_hash)? {
        eprintln!(
            "extract-codes: {} already complete, skipped",
            part_path(out, shard).display()
        );
        return Ok(None);
    }
    let pq = pq.to_device(device)?;
    let spec = TensorSpec::new(
        "codes",
        &[h, w, info.num_subspaces],
        "HWM",
        DType::U8,
        producer.clone(),
    )
    .with(CODEBOOK_HASH_KEY, info.codebook_hash.clone());
    let mut writer = TensorWriter::create(&part_path(out, shard), spec)?;
    let range = shard.range(ds.len());
    let mut progress = Progress::new("extract-codes", range.len() as u64);
    let width = ds.width();

    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Result<Batch>>(2);
        let ds = &ds;
        let range = range.clone();
        scope.spawn(move || {
            for start in range.clone().step_by(batch_items) {
                let end = (start + batch_items).min(range.end);
                let batch = read_batch(ds, start, end, width);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        for batch in rx {
            let batch = batch?;
            let n = batch.ids.len();
            let x = Tensor::from_slice(&batch.values).view([(n * h * w) as i64, c as i64]);
            let codes = pq
                .encode(&x)?
                .to_device(Device::Cpu)
                .contiguous()
                .view([-1]);
            let bytes = Vec::<u8>::try_from(&codes)?;
            writer.write(&batch.ids, Payload::U8(&bytes), vec![])?;
            progress.inc(n as u64);
        }
        Ok(())
    })?;
    progress.finish();
    Ok(Some((writer.finish()?, producer)))
}

fn read_batch(ds: &TensorDataset, start: usize, end: usize, width: usize) -> Result<Batch> {
    let mut ids = Vec::with_capacity(end - start);
    let mut values = Vec::with_capacity((end - start) * width);
    for r in start..end {
        let row = ds.row_f32(r)?;
        let id = ds.id(r)?;
        if row.iter().any(|v| !v.is_finite()) {
            return Err(anyhow!(
                "{}: item id {id} has NaN or Inf feature values",
                ds.root().display()
            ));
        }
        ids.push(id);
        values.extend_from_slice(row);
    }
    Ok(Batch { ids, values })
}
