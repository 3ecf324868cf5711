//! The artifact layer end to end: every artifact kind written, read back zero-copy, opened
//! from Python (pyarrow, DuckDB); corrupt, truncated and wrong-schema files refused; a
//! writer killed mid-write leaves nothing under the final name; shards form one dataset.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, StringArray, UInt64Array,
};
use arrow::datatypes::Int32Type;
use remind::artifact::dataset::complete_parts;
use remind::artifact::schema::{all_schemas, ArtifactSchema, Format};
use remind::artifact::{
    write_table, DType, Payload, Producer, Table, TensorDataset, TensorFile, TensorSpec,
    TensorWriter,
};
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};

const ROWS: usize = 5;

/// A column of `ROWS` deterministic values for a schema type, within the value rules the
/// kind declares for it (`one_of` columns cycle through their values).
fn valid_column(schema: &ArtifactSchema, name: &str, ty: &str) -> ArrayRef {
    let allowed = schema
        .values
        .iter()
        .find(|r| r.column.as_deref() == Some(name) && !r.values.is_empty());
    match allowed {
        Some(rule) => Arc::new(StringArray::from_iter_values(
            (0..ROWS).map(|i| rule.values[i % rule.values.len()].clone()),
        )),
        None => column(ty),
    }
}

/// A column of `ROWS` deterministic values for a schema type (non-negative integers: ids,
/// labels and counts).
fn column(ty: &str) -> ArrayRef {
    match ty {
        "uint64" => Arc::new(UInt64Array::from_iter_values(
            (0..ROWS as u64).map(|i| i * 10 + 1),
        )),
        "int64" => Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
        "int32" => Arc::new(Int32Array::from_iter_values(0..ROWS as i32)),
        "float64" => Arc::new(Float64Array::from_iter_values(
            (0..ROWS).map(|i| i as f64 * 0.5),
        )),
        "utf8" => Arc::new(StringArray::from_iter_values(
            (0..ROWS).map(|i| format!("v{i}")),
        )),
        "list<int32>" => Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..ROWS as i32).map(|i| Some((0..=i).map(Some).collect::<Vec<_>>())),
        )),
        other => panic!("no test column for {other}"),
    }
}

/// Writes one artifact of every kind into `dir`; returns (kind, path) pairs.
fn write_every_kind(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let producer = Producer::new("test", "cafe").param("purpose", "e2e");
    let mut out = Vec::new();
    for schema in all_schemas() {
        match schema.format {
            Format::ArrowIpc => {
                let payload_ty = &schema.columns[1].ty;
                let dtype = if payload_ty == "fixed_shape_tensor<uint8>" {
                    DType::U8
                } else {
                    DType::F32
                };
                let mut spec =
                    TensorSpec::new(&schema.kind, &[2, 3], "HW", dtype, producer.clone());
                for key in &schema.metadata {
                    if !key.starts_with("remind.shape")
                        && !["remind.layout", "remind.dtype", "remind.producer"]
                            .contains(&key.as_str())
                    {
                        spec = spec.with(key, "abc123");
                    }
                }
                let path = dir.join(format!("{}.arrow", schema.kind));
                let mut w = TensorWriter::create(&path, spec).unwrap();
                let ids: Vec<u64> = (0..ROWS as u64).map(|i| i * 3 + 1).collect();
                let extra: Vec<ArrayRef> =
                    schema.columns[2..].iter().map(|c| column(&c.ty)).collect();
                match dtype {
                    DType::F32 => {
                        let v: Vec<f32> = (0..ROWS * 6).map(|i| i as f32 * 0.25).collect();
                        w.write(&ids, Payload::F32(&v), extra).unwrap();
                    }
                    DType::U8 => {
                        let v: Vec<u8> = (0..ROWS * 6).map(|i| (i * 7 % 256) as u8).collect();
                        w.write(&ids, Payload::U8(&v), extra).unwrap();
                    }
                }
                out.push((schema.kind.clone(), w.finish().unwrap()));
            }
            Format::Parquet => {
                let path = dir.join(format!("{}.parquet", schema.kind));
                let cols = schema
                    .columns
                    .iter()
                    .map(|c| valid_column(&schema, &c.name, &c.ty))
                    .collect();
                write_table(&path, &schema.kind, &producer, cols, HashMap::new()).unwrap();
                out.push((schema.kind.clone(), path));
            }
        }
    }
    out
}

#[test]
fn every_kind_round_trips_zero_copy_and_opens_in_pyarrow_and_duckdb() {
    let dir = scratch("artifacts-every-kind");
    let written = write_every_kind(&dir);
    assert_eq!(written.len(), all_schemas().len());
    for (kind, path) in &written {
        if path.extension().is_some_and(|e| e == "arrow") {
            let f = TensorFile::open(path, kind).unwrap();
            assert_eq!(f.len(), ROWS);
            assert_eq!(f.shape(), &[2, 3]);
            assert_eq!(f.id(4).unwrap(), 13);
            let map = f.mapped_range();
            let ptr = match f.dtype() {
                DType::F32 => {
                    assert_eq!(f.row_f32(1).unwrap(), &[1.5, 1.75, 2.0, 2.25, 2.5, 2.75]);
                    f.row_f32(1).unwrap().as_ptr() as usize
                }
                DType::U8 => {
                    assert_eq!(f.row_u8(1).unwrap(), &[42, 49, 56, 63, 70, 77]);
                    f.row_u8(1).unwrap().as_ptr() as usize
                }
            };
            assert!(
                map.contains(&ptr),
                "{kind}: payload is not read from the mapping (copied)"
            );
            assert_eq!(f.producer().unwrap().params["purpose"], "e2e");
            run_ok(stage("remind-artifact").arg("verify").arg(path));
        } else {
            let t = Table::read(path, kind).unwrap();
            assert_eq!(t.num_rows(), ROWS);
            assert_eq!(t.producer().unwrap().config_hash, "cafe");
        }
    }
    // pyarrow and DuckDB, as separate processes, on the same files.
    let py = r#"
import json, sys, os
import pyarrow as pa, pyarrow.parquet as pq, duckdb
d = sys.argv[1]
out = {}
for name in sorted(os.listdir(d)):
    path = os.path.join(d, name)
    if name.endswith(".arrow"):
        with pa.memory_map(path) as src:
            t = pa.ipc.open_file(src).read_all()
        meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
        first = t.column("data")[1].as_py()
        if isinstance(first, bytes):
            first = list(first)
        n = duckdb.sql("select count(*), sum(id) from t").fetchall()[0]
        out[meta["remind.kind"]] = {"rows": t.num_rows, "shape": json.loads(meta["remind.shape"]),
            "row1": first, "duck": list(n), "producer": json.loads(meta["remind.producer"])["stage"]}
    elif name.endswith(".parquet"):
        t = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
        n = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0]
        out[meta["remind.kind"]] = {"rows": t.num_rows, "duck": list(n), "cols": t.column_names}
print(json.dumps(out))
"#;
    let got: serde_json::Value =
        serde_json::from_str(&run_python(py, &[dir.to_str().unwrap()])).unwrap();
    for (kind, path) in &written {
        let v = &got[kind.as_str()];
        assert_eq!(v["rows"], ROWS, "{kind}: {v}");
        assert_eq!(v["duck"][0], ROWS, "{kind}: {v}");
        if path.extension().is_some_and(|e| e == "arrow") {
            assert_eq!(v["shape"], serde_json::json!([2, 3]));
            assert_eq!(v["duck"][1], 1 + 4 + 7 + 10 + 13);
            assert_eq!(v["producer"], "test");
            let row1: Vec<f64> = serde_json::from_value(v["row1"].clone()).unwrap();
            let expected: Vec<f64> = if row1[0] == 42.0 {
                vec![42., 49., 56., 63., 70., 77.]
            } else {
                vec![1.5, 1.75, 2.0, 2.25, 2.5, 2.75]
            };
            assert_eq!(row1, expected, "{kind}");
        } else {
            let cols: Vec<String> = serde_json::from_value(v["cols"].clone()).unwrap();
            let schema = remind::artifact::schema::schema_of(kind).unwrap();
            assert_eq!(
                cols,
                schema
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn corrupt_truncated_and_wrong_schema_files_are_refused() {
    let dir = scratch("artifacts-corrupt");
    let written = write_every_kind(&dir);
    let path_of = |k: &str| {
        written
            .iter()
            .find(|(kind, _)| kind == k)
            .unwrap()
            .1
            .clone()
    };

    // Truncated tensor file.
    let feats = std::fs::read(path_of("features")).unwrap();
    let cut = dir.join("truncated.arrow");
    std::fs::write(&cut, &feats[..feats.len() - 100]).unwrap();
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&cut));
    assert!(
        err.contains("truncated.arrow") && err.contains("truncated"),
        "{err}"
    );

    // One flipped payload byte: caught by the checksum.
    let mut bad = feats.clone();
    let pos = bad
        .windows(4)
        .position(|w| w == 1.5f32.to_le_bytes())
        .unwrap();
    bad[pos] ^= 0x40;
    let flipped = dir.join("flipped.arrow");
    std::fs::write(&flipped, &bad).unwrap();
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&flipped));
    assert!(
        err.contains("flipped.arrow") && err.contains("checksum"),
        "{err}"
    );

    // Garbage.
    let junk = dir.join("junk.arrow");
    std::fs::write(&junk, b"this is not arrow at all").unwrap();
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&junk));
    assert!(err.contains("junk.arrow"), "{err}");

    // Wrong kind where features are expected: file, field, expected, found.
    let out = dir.join("codes-out");
    let err = run_fail(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(path_of("codes"))
            .arg("--codebook")
            .arg(path_of("codebook"))
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(&dir),
    );
    assert!(
        err.contains("codes.arrow")
            && err.contains("remind.kind")
            && err.contains("expected 'features', found 'codes'"),
        "{err}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());

    // An Arrow file from another tool, without our metadata.
    let foreign = dir.join("foreign.arrow");
    run_python("import pyarrow as pa, sys\nt = pa.table({'id': pa.array([1, 2], pa.uint64())})\n\
with pa.OSFile(sys.argv[1], 'wb') as f:\n    w = pa.ipc.new_file(f, t.schema); w.write_table(t); w.close()", &[foreign.to_str().unwrap()]);
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&foreign));
    assert!(
        err.contains("foreign.arrow") && err.contains("remind"),
        "{err}"
    );

    // A tensor file rewritten with its columns in another order (readers take them by
    // position): refused naming the file and the order.
    let swapped = dir.join("swapped.arrow");
    run_python(
        "import pyarrow as pa, sys\n\
t = pa.ipc.open_file(sys.argv[1]).read_all().select(['data', 'id'])\n\
with pa.OSFile(sys.argv[2], 'wb') as f:\n    w = pa.ipc.new_file(f, t.schema); w.write_table(t); w.close()",
        &[
            path_of("features").to_str().unwrap(),
            swapped.to_str().unwrap(),
        ],
    );
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&swapped));
    assert!(
        err.contains("swapped.arrow: columns: expected 'id' then 'data' first"),
        "{err}"
    );

    // Truncated Parquet.
    let q = std::fs::read(path_of("questions")).unwrap();
    let qcut = dir.join("cut.parquet");
    std::fs::write(&qcut, &q[..q.len() / 2]).unwrap();
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&qcut));
    assert!(err.contains("cut.parquet"), "{err}");
    // A Parquet table of one kind read as another.
    let err = Table::read(&path_of("labels"), "questions")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("expected 'questions', found 'labels'"),
        "{err}"
    );
}

#[test]
fn a_killed_writer_leaves_no_file_under_the_final_name() {
    let dir = scratch("artifacts-kill");
    let out = dir.join("features");
    let mut child = stage("remind-synth-features")
        .args([
            "--items",
            "200000",
            "--height",
            "4",
            "--width",
            "4",
            "--channels",
            "256",
            "--batch",
            "64",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--run-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the temporary part has data, then kill -9.
    let start = Instant::now();
    loop {
        let growing = std::fs::read_dir(&out).ok().and_then(|mut it| {
            it.find_map(|e| {
                let e = e.ok()?;
                (e.file_name().to_string_lossy().starts_with(".tmp-")
                    && e.metadata().ok()?.len() > 1 << 20)
                    .then_some(())
            })
        });
        if growing.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "writer produced no temporary file"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "writer finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("part-00000-of-00001.arrow").exists());
    let err = complete_parts(&out).err().unwrap().to_string();
    assert!(err.contains("no part files"), "{err}");
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&out));
    assert!(err.contains("no part files"), "{err}");
    // A rerun completes the dataset and clears the dead writer's temporary file.
    run_ok(
        stage("remind-synth-features")
            .args([
                "--items",
                "50",
                "--height",
                "4",
                "--width",
                "4",
                "--channels",
                "256",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(&dir),
    );
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["part-00000-of-00001.arrow".to_string()]);
    assert_eq!(TensorDataset::open(&out, "features").unwrap().len(), 50);
}

#[test]
fn shards_form_one_dataset_equal_to_a_single_run() {
    let dir = scratch("artifacts-shards");
    let args = [
        "--items",
        "70",
        "--height",
        "2",
        "--width",
        "3",
        "--channels",
        "8",
        "--batch",
        "16",
    ];
    let whole = dir.join("whole");
    run_ok(
        stage("remind-synth-features")
            .args(args)
            .arg("--out")
            .arg(&whole)
            .arg("--run-dir")
            .arg(&dir),
    );
    let sharded = dir.join("sharded");
    for k in [2, 0] {
        run_ok(
            stage("remind-synth-features")
                .args(args)
                .arg("--shard")
                .arg(format!("{k}/3"))
                .arg("--out")
                .arg(&sharded)
                .arg("--run-dir")
                .arg(&dir),
        );
    }
    let err = run_fail(stage("remind-artifact").arg("verify").arg(&sharded));
    assert!(err.contains("missing shard(s) 1/3"), "{err}");
    let err = run_fail(stage("remind-artifact").arg("check-complete").arg(&sharded));
    assert!(
        err.contains("incomplete dataset: missing shard(s) 1/3 of 3"),
        "{err}"
    );
    // Slurm's array variables stand in for --shard.
    run_ok(
        stage("remind-synth-features")
            .args(args)
            .arg("--out")
            .arg(&sharded)
            .arg("--run-dir")
            .arg(&dir)
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
    );
    let a = TensorDataset::open(&whole, "features").unwrap();
    let b = TensorDataset::open(&sharded, "features").unwrap();
    assert_eq!(b.parts().len(), 3);
    assert_eq!(a.ids().unwrap(), b.ids().unwrap());
    for r in 0..a.len() {
        assert_eq!(a.row_f32(r).unwrap(), b.row_f32(r).unwrap(), "row {r}");
    }
    let out = run_ok(
        stage("remind-artifact")
            .arg("compare")
            .arg(&whole)
            .arg(&sharded),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("same: 70 rows"));
    let out = run_ok(
        stage("remind-artifact")
            .args(["check-complete", "--shards", "3", "--covers"])
            .arg(&whole)
            .arg(&sharded),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("complete: 3 features part(s), 70 rows"),
        "{text}"
    );
    let err = run_fail(
        stage("remind-artifact")
            .args(["check-complete", "--shards", "2"])
            .arg(&sharded),
    );
    assert!(err.contains("shard count changed"), "{err}");
    // A finished part is not rewritten; a different shard count is refused.
    let part = sharded.join("part-00001-of-00003.arrow");
    let before = std::fs::metadata(&part).unwrap().modified().unwrap();
    run_ok(
        stage("remind-synth-features")
            .args(args)
            .arg("--shard")
            .arg("1/3")
            .arg("--out")
            .arg(&sharded)
            .arg("--run-dir")
            .arg(&dir),
    );
    assert_eq!(
        std::fs::metadata(&part).unwrap().modified().unwrap(),
        before
    );
    let err = run_fail(
        stage("remind-synth-features")
            .args(args)
            .arg("--shard")
            .arg("0/2")
            .arg("--out")
            .arg(&sharded)
            .arg("--run-dir")
            .arg(&dir),
    );
    assert!(err.contains("shard count changed"), "{err}");
    // Shards run with different parameters are refused when read together.
    run_ok(
        stage("remind-synth-features")
            .args([
                "--items",
                "70",
                "--height",
                "2",
                "--width",
                "3",
                "--channels",
                "8",
                "--batch",
                "16",
                "--seed",
                "5",
            ])
            .arg("--shard")
            .arg("1/3")
            .arg("--out")
            .arg(dir.join("mixed"))
            .arg("--run-dir")
            .arg(&dir),
    );
    // A shard submitted with other parameters than a finished one refuses to run...
    let err = run_fail(
        stage("remind-synth-features")
            .args(args)
            .arg("--shard")
            .arg("0/3")
            .arg("--out")
            .arg(dir.join("mixed"))
            .arg("--run-dir")
            .arg(&dir),
    );
    assert!(err.contains("different parameters"), "{err}");
    // ...and parts mixed by hand are refused by readers and by the completeness check.
    std::fs::copy(
        dir.join("mixed/part-00001-of-00003.arrow"),
        dir.join("sharded/part-00001-of-00003.arrow"),
    )
    .unwrap();
    let err = TensorDataset::open(&sharded, "features")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("different parameters"), "{err}");
    let err = run_fail(stage("remind-artifact").arg("check-complete").arg(&sharded));
    assert!(err.contains("different parameters"), "{err}");
    // The manifest records each part with its stage and config hash.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest["artifacts"]["sharded/part-00002-of-00003.arrow"];
    assert_eq!(entry["stage"], "synth-features", "{manifest}");
    assert_eq!(entry["config_hash"].as_str().unwrap().len(), 16);
}

#[test]
fn config_files_are_validated() {
    let dir = scratch("artifacts-config");
    let cfg = dir.join("p.yaml");
    std::fs::write(&cfg, "run_dir: somewhere\nsynth_features:\n  itemz: 5\n").unwrap();
    let err = run_fail(
        stage("remind-synth-features")
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(dir.join("f")),
    );
    assert!(
        err.contains("p.yaml") && err.contains("itemz") && err.contains("did you mean 'items'"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        format!(
            "run_dir: {}\nsynth_features:\n  items: 6\n  channels: 4\n",
            dir.join("run").display()
        ),
    )
    .unwrap();
    run_ok(
        stage("remind-synth-features")
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(dir.join("f"))
            .arg("--height")
            .arg("1"),
    );
    let ds = TensorDataset::open(&dir.join("f"), "features").unwrap();
    assert_eq!((ds.len(), ds.shape().to_vec()), (6, vec![1, 7, 4]));
    assert!(
        dir.join("run/manifest.json").exists(),
        "run_dir from the config holds the manifest"
    );
}
