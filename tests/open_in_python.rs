//! Every artifact kind, opened outside remind (issue #17): the tiny classification and VQA
//! chains run through `make` as real processes; the kinds they do not write (gensen
//! question features, GloVe word vectors) are written by the library. Then
//! `tests/open_in_python.py` opens each file with pyarrow, Polars and DuckDB and checks
//! the shapes and dtypes the schemas document, from the tensors' `arrow.fixed_shape_tensor`
//! type and the Parquet files' key-value metadata, never from the remind.* schema keys;
//! every dataset folder holds only its parts and reads as one data set
//! (`pyarrow.dataset(format="ipc")`, DuckDB and Polars globs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, UInt64Array};
use remind::artifact::schema::{all_schemas, Format};
use remind::artifact::{DType, Payload, Producer, Table, TensorFile, TensorSpec, TensorWriter};
use remind_e2e::{bin_dir, python, run_ok, scratch, walk_files};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `make <target>` into `art` with this build's binaries.
fn make(target: &str, art: &Path) {
    let out = Command::new("make")
        .current_dir(repo())
        .arg(target)
        .arg(format!("ART={}", art.display()))
        .arg(format!("BIN={}", bin_dir().display()))
        .args(["SETUP=", "QUIET=1", "STAGE_THREADS=1"])
        .output()
        .expect("make runs");
    assert!(
        out.status.success(),
        "make {target} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small artifact of tensor kind `kind` (its documented layout) in `dir`.
fn write_tensor_kind(dir: &Path, kind: &str) -> PathBuf {
    let (layout, shape): (&str, &[usize]) = match kind {
        "features" => ("HWC", &[2, 2, 4]),
        "codes" | "replay_buffer" => ("HWM", &[2, 2, 3]),
        "codebook" => ("KD", &[4, 2]),
        "probabilities" => ("K", &[5]),
        "question_features" | "word_vectors" => ("D", &[6]),
        other => panic!("no documented layout for tensor kind {other}"),
    };
    let schema = remind::artifact::schema::schema_of(kind).unwrap();
    let dtype = if schema.columns[1].ty == "fixed_shape_tensor<uint8>" {
        DType::U8
    } else {
        DType::F32
    };
    let mut spec = TensorSpec::new(kind, shape, layout, dtype, Producer::new("test", "0"));
    for key in &schema.metadata {
        if ![
            "remind.shape",
            "remind.layout",
            "remind.dtype",
            "remind.producer",
        ]
        .contains(&key.as_str())
        {
            spec = spec.with(key, "1");
        }
    }
    let rows = 3;
    let ids: Vec<u64> = (0..rows as u64).map(|i| i * 2 + 1).collect();
    let extra: Vec<ArrayRef> = schema.columns[2..]
        .iter()
        .map(|c| -> ArrayRef {
            match c.ty.as_str() {
                "int64" => Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                "uint64" => Arc::new(UInt64Array::from_iter_values(0..rows as u64)),
                other => panic!("no test column for {other}"),
            }
        })
        .collect();
    let path = dir.join(format!("{kind}.arrow"));
    let mut w = TensorWriter::create(&path, spec.clone()).unwrap();
    let n = rows * spec.width();
    match dtype {
        DType::F32 => {
            let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
            w.write(&ids, Payload::F32(&v), extra).unwrap();
        }
        DType::U8 => {
            let v: Vec<u8> = (0..n).map(|i| (i * 7 % 16) as u8).collect();
            w.write(&ids, Payload::U8(&v), extra).unwrap();
        }
    }
    w.finish().unwrap()
}

/// What remind's own readers find in `path` (an artifact), for the Python side to match.
fn describe(path: &Path) -> serde_json::Value {
    if path.extension().is_some_and(|e| e == "arrow") {
        let f = TensorFile::open_any(path).unwrap();
        let mut sum = 0f64;
        for row in 0..f.len() {
            sum += match f.dtype() {
                DType::F32 => f
                    .row_f32(row)
                    .unwrap()
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>(),
                DType::U8 => f
                    .row_u8(row)
                    .unwrap()
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>(),
            };
        }
        serde_json::json!({
            "path": path, "kind": f.meta("remind.kind").unwrap(), "rows": f.len(),
            "shape": f.shape(), "dtype": f.dtype().name(), "sum": sum,
        })
    } else {
        let t = Table::read_any(path).unwrap();
        let columns: Vec<String> = t
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        serde_json::json!({
            "path": path, "kind": t.kind(), "rows": t.num_rows(), "columns": columns,
        })
    }
}

#[test]
fn every_artifact_opens_in_pyarrow_polars_and_duckdb() {
    let dir = scratch("open_in_python");
    let art = dir.join("art");
    make("fashion-tiny", &art);
    make("clevr-tiny", &art);
    let mut files: Vec<PathBuf> = walk_files(&art)
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "arrow" || e == "parquet")
        })
        .filter(|p| !p.to_string_lossy().contains("/."))
        .collect();
    let mut listing: Vec<serde_json::Value> = files.iter().map(|p| describe(p)).collect();
    let made: BTreeSet<String> = listing
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_string())
        .collect();
    // Kinds of stages outside the tiny chains, written by the library as they would be.
    let extra = dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    for schema in all_schemas() {
        if made.contains(&schema.kind) {
            continue;
        }
        assert_eq!(
            schema.format,
            Format::ArrowIpc,
            "no tiny chain writes the table kind '{}'",
            schema.kind
        );
        let path = write_tensor_kind(&extra, &schema.kind);
        listing.push(describe(&path));
        files.push(path);
    }
    // The side tables of extract-features lie beside their dataset folders.
    for features in [
        art.join("fashion-tiny/features"),
        art.join("clevr-tiny/features/train"),
    ] {
        let index = remind::backbone::features::index_path(&features).unwrap();
        assert!(index.is_file(), "{} missing", index.display());
        assert!(!features.join("images.parquet").exists());
    }

    let listing_path = dir.join("listing.json");
    std::fs::write(&listing_path, serde_json::to_vec(&listing).unwrap()).unwrap();
    // The script as a file (not `python -c`), so that a failure shows its own traceback.
    let out = run_ok(
        python()
            .arg(repo().join("tests/open_in_python.py"))
            .arg(&listing_path),
    );
    let out = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for schema in all_schemas() {
        assert!(
            summary["kinds"][&schema.kind].as_u64().unwrap_or(0) > 0,
            "kind '{}' was not opened from Python: {summary}",
            schema.kind
        );
    }
    // Each single-kind folder of tensors read as one data set (the features, codes and
    // probabilities folders among them), and each folder of one table kind (predictions).
    let datasets = summary["datasets"].as_object().unwrap();
    for folder in [
        art.join("fashion-tiny/features"),
        art.join("fashion-tiny/codes"),
        art.join("clevr-tiny/features/val"),
        art.join("clevr-tiny/codes/train"),
    ] {
        assert_eq!(
            datasets.get(folder.to_str().unwrap()),
            Some(&serde_json::json!("ipc")),
            "{} was not read as a dataset: {summary}",
            folder.display()
        );
    }
    assert!(
        datasets.values().any(|v| v == "parquet"),
        "no folder of Parquet tables read as one: {summary}"
    );
}
