//! Synthetic feature maps shaped like a CNN's post-ReLU activations (clustered, low-rank,
//! about half zeros), for tests and benchmarks that need realistic PQ inputs without a
//! data set. Seeded and deterministic on CPU.

use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

/// `items` feature maps of `h x w x c` (HWC, row-major), as one flat vector.
pub fn relu_feature_maps(
    items: usize,
    h: usize,
    w: usize,
    c: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    ensure!(
        items > 0 && h > 0 && w > 0 && c > 0,
        "synthetic features need non-zero sizes"
    );
    let _guard = tch::no_grad_guard();
    tch::manual_seed(seed as i64);
    let opts = (Kind::Float, Device::Cpu);
    let n = (items * h * w) as i64;
    let c = c as i64;
    let (clusters, rank) = (64, 16);
    let centers = Tensor::randn([clusters, c], opts);
    let basis = Tensor::randn([rank, c], opts) / (rank as f64).sqrt();
    let assign = Tensor::randint(clusters, [n], (Kind::Int64, Device::Cpu));
    let coef = Tensor::randn([n, rank], opts);
    let x = centers.index_select(0, &assign)
        + coef.matmul(&basis) * 0.5
        + Tensor::randn([n, c], opts) * 0.1;
    let x = (x - 0.3).relu().contiguous();
    let len = x.numel();
    let mut out = vec![0f32; len];
    x.copy_data(&mut out, len);
    Ok(out)
}

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::dataset::{part_is_done, part_path};
use crate::artifact::{DType, Payload, Producer, TensorSpec, TensorWriter};
use crate::run::{config_hash, Progress, Shard};

/// Config section `synth_features`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    pub items: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub seed: u64,
    /// Items generated and written per batch.
    pub batch: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            items: 1000,
            height: 7,
            width: 7,
            channels: 512,
            seed: 0,
            batch: 256,
        }
    }
}

/// Writes `cfg.items` synthetic feature maps (ids 0..items) as shard `shard`'s part of the
/// features dataset `out`. Each batch is seeded by its first id, so shards of any count
/// produce the same rows.
pub fn write_synthetic_features(
    cfg: &SynthConfig,
    out: &Path,
    shard: Shard,
) -> Result<Option<PathBuf>> {
    // Checked whatever the item count: a zero dimension wrote a file `verify` refused.
    for (key, value) in [
        ("items", cfg.items),
        ("height", cfg.height),
        ("width", cfg.width),
        ("channels", cfg.channels),
        ("batch", cfg.batch),
    ] {
        ensure!(
            value > 0,
            "synth_features.{key}: expected at least 1, found 0"
        );
    }
    let hash = config_hash(cfg)?;
    if part_is_done(out, shard, "features", &hash)? {
        eprintln!(
            "synth-features: {} already complete, skipped",
            part_path(out, shard).display()
        );
        return Ok(None);
    }
    let producer = Producer::new("synth-features", &hash).param("seed", cfg.seed);
    let spec = TensorSpec::new(
        "features",
        &[cfg.height, cfg.width, cfg.channels],
        "HWC",
        DType::F32,
        producer,
    );
    let mut writer = TensorWriter::create(&part_path(out, shard), spec)?;
    let range = shard.range(cfg.items);
    let mut progress = Progress::new("synth-features", range.len() as u64);
    let mut start = range.start;
    while start < range.end {
        // Batches are aligned to multiples of cfg.batch so every shard count gives equal data.
        let end = ((start / cfg.batch + 1) * cfg.batch).min(range.end);
        let block = start / cfg.batch;
        let full = relu_feature_maps(
            cfg.batch,
            cfg.height,
            cfg.width,
            cfg.channels,
            cfg.seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )?;
        let w = cfg.height * cfg.width * cfg.channels;
        let off = start - block * cfg.batch;
        let ids: Vec<u64> = (start as u64..end as u64).collect();
        writer.write(
            &ids,
            Payload::F32(&full[off * w..(off + ids.len()) * w]),
            vec![],
        )?;
        progress.inc(ids.len() as u64);
        start = end;
    }
    progress.finish();
    Ok(Some(writer.finish()?))
}
