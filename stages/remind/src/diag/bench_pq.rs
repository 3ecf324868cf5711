//! The Rust half of `make bench-pq`: fit, encode and decode timings and the held-out
//! reconstruction error on a features dataset. scripts/bench_pq.py runs faiss on the same
//! split in the same run and reports the ratios.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::artifact::TensorDataset;
use crate::pq::{PqParams, ProductQuantizer};

#[derive(Debug, Serialize)]
pub struct PqBench {
    pub d: usize,
    pub num_subspaces: usize,
    pub nbits: u32,
    pub threads: i32,
    pub device: String,
    pub train_vectors: usize,
    pub holdout_vectors: usize,
    pub fit_seconds: f64,
    pub encode_vectors_per_s: f64,
    pub decode_vectors_per_s: f64,
    pub holdout_mse: f64,
}

/// All vectors (every spatial position) of rows `rows` as one `[n, C]` tensor.
fn vectors(ds: &TensorDataset, rows: std::ops::Range<usize>, c: usize) -> Result<Tensor> {
    let mut data = Vec::with_capacity(rows.len() * ds.width());
    for r in rows {
        data.extend_from_slice(ds.row_f32(r)?);
    }
    let n = (data.len() / c) as i64;
    Ok(Tensor::from_slice(&data).view([n, c as i64]))
}

/// Uses the first `len - holdout_items` items for fit/encode/decode timing and the last
/// `holdout_items` for the reconstruction error. The fit runs once (scripts/bench_pq.py
/// repeats it with other seeds); encode and decode timings are the best of `repeats`.
pub fn bench_pq(
    features: &Path,
    holdout_items: usize,
    params: &PqParams,
    device: Device,
    repeats: usize,
) -> Result<PqBench> {
    let ds = TensorDataset::open(features, "features")?;
    ensure!(
        ds.len() > holdout_items,
        "{}: {} items, need more than the {holdout_items} held out",
        features.display(),
        ds.len()
    );
    let c = *ds.shape().last().unwrap_or(&0);
    let split = ds.len() - holdout_items;
    let train = vectors(&ds, 0..split, c)?.to_device(device);
    let holdout = vectors(&ds, split..ds.len(), c)?.to_device(device);
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let best = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) {
            sync();
            let t = Instant::now();
            f()?;
            sync();
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    sync();
    let t = Instant::now();
    let (pq, _) = ProductQuantizer::fit(&train, params)?;
    sync();
    let fit_seconds = t.elapsed().as_secs_f64();
    let mut codes = Tensor::zeros([0], (Kind::Uint8, device));
    let enc = best(&mut || {
        codes = pq.encode(&train)?;
        Ok(())
    })?;
    let dec = best(&mut || {
        let _ = pq.decode(&codes)?;
        Ok(())
    })?;
    let n = train.size()[0] as f64;
    Ok(PqBench {
        d: c,
        num_subspaces: params.num_subspaces,
        nbits: params.nbits,
        threads: tch::get_num_threads(),
        device: format!("{device:?}"),
        train_vectors: train.size()[0] as usize,
        holdout_vectors: holdout.size()[0] as usize,
        fit_seconds,
        encode_vectors_per_s: n / enc,
        decode_vectors_per_s: n / dec,
        holdout_mse: pq.mse(&holdout)?,
    })
}
