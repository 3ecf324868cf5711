//! What an evaluation writes, built in memory before anything is written, so that the
//! runs of several seeds can be combined first ([`super::seeds`]): `metrics.json`,
//! `metrics.parquet` (kind `metrics`, long format), `metrics.csv` (Avalanche's
//! `eval_results.csv` columns), the plot `metrics.png` / `.svg` and the accuracy matrix's
//! heatmap `metrics_matrix.png` / `.svg`. One writer for both tasks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use serde_json::Value;

use crate::artifact::atomic::write_bytes;
use crate::artifact::{write_table_with, Producer};
use crate::plot::Figure;

/// The rows of a `metrics.parquet` (long format): a metric's value per method and
/// evaluation point (boundary -1: the whole stream's, e.g. Omega).
#[derive(Debug, Clone, Default)]
pub struct MetricRows {
    pub method: Vec<String>,
    pub boundary: Vec<i64>,
    /// The stream position of the point (VQA: questions seen; classification: classes
    /// seen or images streamed, as the plan's positions say).
    pub position: Vec<u64>,
    pub metric: Vec<String>,
    /// A fraction in [0, 1] (accuracy, Omega, ...); the mean over runs when `spread` is set.
    pub value: Vec<f64>,
    /// Over several runs: per row the sample standard deviation, min, max and run count.
    pub spread: Option<Spread>,
}

/// Per row of [`MetricRows`], how the runs' values spread around their mean.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    pub std: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub runs: Vec<u64>,
}

impl MetricRows {
    pub fn push(&mut self, method: &str, boundary: i64, position: u64, metric: String, value: f64) {
        self.method.push(method.to_string());
        self.boundary.push(boundary);
        self.position.push(position);
        self.metric.push(metric);
        self.value.push(value);
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Writes the rows to `path`, a `metrics` table with the metadata `meta` (the spread
    /// as the kind's optional columns `std`, `min`, `max`, `runs`).
    pub fn write(
        &self,
        path: &Path,
        producer: &Producer,
        meta: HashMap<String, String>,
    ) -> Result<PathBuf> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.method.clone())),
            Arc::new(Int64Array::from(self.boundary.clone())),
            Arc::new(UInt64Array::from(self.position.clone())),
            Arc::new(StringArray::from(self.metric.clone())),
            Arc::new(Float64Array::from(self.value.clone())),
        ];
        let optional: Vec<(&str, ArrayRef)> = match &self.spread {
            None => Vec::new(),
            Some(s) => vec![
                ("std", Arc::new(Float64Array::from(s.std.clone()))),
                ("min", Arc::new(Float64Array::from(s.min.clone()))),
                ("max", Arc::new(Float64Array::from(s.max.clone()))),
                ("runs", Arc::new(UInt64Array::from(s.runs.clone()))),
            ],
        };
        write_table_with(path, "metrics", producer, cols, optional, meta)
    }
}

/// Everything one evaluation writes.
pub struct Outputs {
    /// `metrics.json`.
    pub json: Value,
    /// `metrics.parquet` and its metadata.
    pub rows: MetricRows,
    pub meta: HashMap<String, String>,
    /// `metrics.csv`.
    pub csv: String,
    /// `metrics.png` / `.svg`.
    pub plot: Figure,
    /// `metrics_matrix.png` / `.svg`.
    pub matrix: Figure,
}

impl Outputs {
    /// Writes every output into `out` (each file atomically); returns their paths,
    /// `metrics.json` first.
    pub fn write(&self, out: &Path, producer: &Producer) -> Result<Vec<PathBuf>> {
        let json_path = out.join("metrics.json");
        let mut text = serde_json::to_vec_pretty(&self.json)?;
        text.push(b'\n');
        write_bytes(&json_path, &text)?;
        let parquet_path =
            self.rows
                .write(&out.join("metrics.parquet"), producer, self.meta.clone())?;
        let csv_path = out.join("metrics.csv");
        write_bytes(&csv_path, self.csv.as_bytes())?;
        let mut written = vec![json_path, parquet_path, csv_path];
        written.extend(self.plot.write(out, "metrics")?);
        written.extend(self.matrix.write(out, "metrics_matrix")?);
        Ok(written)
    }
}
