//! Stage `fit-pq`: fits the product quantizer on the feature vectors of a features dataset
//! (optionally only the items listed in a split table), every spatial position one vector.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::codebook::{save_codebook, CodebookInfo};
use crate::artifact::atomic::write_bytes;
use crate::artifact::table::read_id_column;
use crate::artifact::{Producer, TensorDataset};
use crate::pq::{PqParams, ProductQuantizer};
use crate::run::config_hash;

/// Which items of the features dataset to fit on.
pub struct IdFilter<'a> {
    pub table: &'a Path,
    pub column: &'a str,
}

/// The fit report written beside the codebook.
#[derive(Debug, Serialize, Deserialize)]
pub struct FitReport {
    pub features: String,
    pub codebook: String,
    pub items: usize,
    pub input_vectors: usize,
    pub train_vectors: usize,
    pub d: usize,
    pub num_subspaces: usize,
    pub nbits: u32,
    pub iterations: usize,
    pub seed: u64,
    pub empty_cluster_splits: usize,
    pub train_mse: f64,
    /// Mean squared error relative to the mean squared norm of the training vectors.
    pub relative_mse: f64,
    pub fit_seconds: f64,
    pub device: String,
}

/// Rows of `ds` to use: all, or those whose id `filter` lists (every listed id must exist).
pub fn select_rows(ds: &TensorDataset, filter: Option<&IdFilter>) -> Result<Vec<usize>> {
    let Some(f) = filter else {
        return Ok((0..ds.len()).collect());
    };
    let wanted: HashSet<u64> = read_id_column(f.table, f.column)?.into_iter().collect();
    ensure!(
        !wanted.is_empty(),
        "{}: column '{}' lists no ids: the split is empty",
        f.table.display(),
        f.column
    );
    let ids = ds.ids()?;
    let rows: Vec<usize> = (0..ids.len())
        .filter(|&r| wanted.contains(&ids[r]))
        .collect();
    if rows.len() < wanted.len() {
        let present: HashSet<u64> = rows.iter().map(|&r| ids[r]).collect();
        let mut missing: Vec<u64> = wanted.difference(&present).copied().collect();
        missing.sort_unstable();
        missing.truncate(5);
        bail!(
            "{}: {} id(s) of {} are not in {} (first: {missing:?})",
            f.table.display(),
            wanted.len() - rows.len(),
            f.table.display(),
            ds.root().display()
        );
    }
    Ok(rows)
}

/// Checks every value of the given rows is finite, naming the first bad item.
pub fn check_finite(ds: &TensorDataset, rows: &[usize]) -> Result<()> {
    for &r in rows {
        if ds.row_f32(r)?.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: item id {} has NaN or Inf feature values",
                ds.root().display(),
                ds.id(r)?
            );
        }
    }
    Ok(())
}

/// Fits and writes the codebook to `out` and the report to `report`.
pub fn fit_pq(
    features: &Path,
    filter: Option<&IdFilter>,
    params: &PqParams,
    device: Device,
    out: &Path,
    report: &Path,
) -> Result<(FitReport, Producer)> {
    let ds = TensorDataset::open(features, "features")?;
    let shape = ds.shape().to_vec();
    ensure!(
        ds.meta("remind.layout")? == "HWC" && shape.len() == 3,
        "{}: expected HWC feature maps, found layout {} shape {shape:?}",
        features.display(),
        ds.meta("remind.layout")?
    );
    let (hw, c) = (shape[0] * shape[1], shape[2]);
    params.check(c).with_context(|| {
        format!(
            "{}: cannot fit PQ on features with C={c}",
            features.display()
        )
    })?;
    let rows = select_rows(&ds, filter)?;
    ensure!(
        !rows.is_empty(),
        "{}: no items to fit on (empty dataset or split)",
        features.display()
    );
    check_finite(&ds, &rows)?;

    // Sample the training vectors here (seeded) so only they are copied out of the map.
    let total = rows.len() * hw;
    let limit = params.max_points_per_centroid.saturating_mul(params.ksub());
    let picks: Vec<usize> = if total > limit {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut v = sample(&mut rng, total, limit).into_vec();
        v.sort_unstable(); // read the map in order; k-means initialises from its own draw
        v
    } else {
        (0..total).collect()
    };
    let mut data = Vec::with_capacity(picks.len() * c);
    for &g in &picks {
        let row = ds.row_f32(rows[g / hw])?;
        let pos = g % hw;
        data.extend_from_slice(&row[pos * c..(pos + 1) * c]);
    }
    let x = Tensor::from_slice(&data)
        .view([picks.len() as i64, c as i64])
        .to_device(device);
    drop(data);
    let (pq, stats) = ProductQuantizer::fit(&x, params)?;
    let norm = x.square().sum(tch::Kind::Double).double_value(&[]) / picks.len() as f64;

    let info = CodebookInfo {
        d: c,
        num_subspaces: params.num_subspaces,
        nbits: params.nbits,
        dsub: c / params.num_subspaces,
        params: params.clone(),
        train_vectors: stats.train_vectors,
        train_mse: Some(stats.train_mse),
        codebook_hash: pq.hash()?,
    };
    let producer = Producer::new("fit-pq", &config_hash(params)?)
        .param("features", features.display().to_string())
        .param("device", format!("{device:?}"));
    let cpu = pq.to_device(Device::Cpu)?;
    let path: PathBuf = save_codebook(out, &cpu, &info, producer.clone())?;
    let rep = FitReport {
        features: features.display().to_string(),
        codebook: path.display().to_string(),
        items: rows.len(),
        input_vectors: total,
        train_vectors: stats.train_vectors,
        d: c,
        num_subspaces: params.num_subspaces,
        nbits: params.nbits,
        iterations: params.iterations,
        seed: params.seed,
        empty_cluster_splits: stats.empty_cluster_splits,
        train_mse: stats.train_mse,
        relative_mse: stats.train_mse / norm.max(f64::MIN_POSITIVE),
        fit_seconds: stats.seconds,
        device: format!("{device:?}"),
    };
    write_bytes(report, &serde_json::to_vec_pretty(&rep)?)?;
    Ok((rep, producer))
}
