//! End to end: `remind-import-gensen` on small HDF5 and .npy files written here with h5py
//! and numpy, joined to a small questions table; each kind of bad input fails naming the
//! file and the problem, and leaves no output behind.

use std::path::Path;
use std::process::Command;

use remind::artifact::TensorDataset;
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};
use serde_json::{json, Value};

#[path = "support/questions_table.rs"]
mod questions_table;
use questions_table::{questions_table, QUESTIONS};

/// Writes a feature file from a spec (see the Python below). Row r of `feats` is
/// `qids[r] + [0, 1, ..., D-1] / 1024` unless the spec says otherwise.
const WRITER: &str = r#"
import sys, json
import numpy as np, h5py
path, spec = sys.argv[1], json.loads(sys.argv[2])
qids = np.array(spec["qids"], dtype=spec.get("qids_dtype", "int64"))
dim = spec.get("dim", 6)
feats = (qids.astype(np.float64)[:, None] + np.arange(dim)[None, :] / 1024.0)
feats = feats.astype(spec.get("feats_dtype", "float32"))
if "feats_shape" in spec:
    feats = np.zeros(spec["feats_shape"], dtype=feats.dtype)
for key, value in (("nan", np.nan), ("inf", -np.inf)):
    if key in spec:
        feats[spec[key][0], spec[key][1]] = value
if "qids_len" in spec:
    qids = qids[: spec["qids_len"]]
omit = spec.get("omit", [])
if path.endswith(".h5"):
    kw = dict(chunks=True, compression="gzip", shuffle=True) if spec.get("chunked") else {}
    with h5py.File(path, "w") as f:
        if "feats" not in omit:
            f.create_dataset("feats", data=feats, **kw)
        if "qids" not in omit:
            f.create_dataset("qids", data=qids, **kw)
        if "questions" in spec:
            f.create_dataset("questions", data=spec["questions"], dtype=h5py.string_dtype())
else:
    np.save(path, np.asfortranarray(feats) if spec.get("fortran") else feats)
    ids = spec.get("ids_path")
    if ids and ids.endswith(".npy"):
        np.save(ids, qids)
    elif ids and ids.endswith(".json"):
        open(ids, "w").write(json.dumps(qids.tolist()))
    elif ids:
        open(ids, "w").write("\n".join(str(q) for q in qids.tolist()) + "\n")
"#;

fn write_features(path: &Path, spec: Value) {
    run_python(WRITER, &[path.to_str().unwrap(), &spec.to_string()]);
}

/// Expected feature `c` of question `qid` (as the writer computes it).
fn expected(qid: u64, c: usize) -> f32 {
    (qid as f64 + c as f64 / 1024.0) as f32
}

fn import(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = stage("remind-import-gensen");
    cmd.arg("--run-dir").arg(dir.join("run")).args(args);
    cmd
}

fn read_report(out: &Path) -> Value {
    let stem = out.file_stem().unwrap().to_str().unwrap();
    let path = out.with_file_name(format!("{stem}_report.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks the artifact at `out` holds exactly `ids`, D wide, with the writer's values.
fn check_features(out: &Path, ids: &[u64], dim: usize) -> TensorDataset {
    let ds = TensorDataset::open(out, "question_features").unwrap();
    assert_eq!(ds.ids().unwrap(), ids);
    assert_eq!(ds.shape(), [dim]);
    for (row, &id) in ids.iter().enumerate() {
        let v = ds.row_f32(row).unwrap();
        for c in [0, 1, dim / 2, dim - 1] {
            assert_eq!(v[c], expected(id, c), "question {id}, feature {c}");
        }
    }
    assert_eq!(ds.meta("remind.dim").unwrap(), dim.to_string());
    ds
}

/// The folder holds no output and no temporary file.
fn assert_nothing_written(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-") || n.starts_with("out"))
        .collect();
    assert!(names.is_empty(), "half-written output: {names:?}");
}

#[test]
fn imports_hdf5_features_in_question_order() {
    let dir = scratch("import_gensen_h5");
    let questions = questions_table(&dir);
    let h5 = dir.join("gensen.h5");
    // File order is not id order; 7 is not in the table; one text differs (case and
    // punctuation do not count).
    let qids = [12u64, 7, 1_000_000_001, 10, 1_000_000_000, 11];
    let texts = [
        "what color is the big cylinder",
        "an extra question",
        "What size is the metal ball?",
        "Is there a red CUBE ?",
        "Are there more cubes than spheres?",
        "How many cubes are there?",
    ];
    write_features(
        &h5,
        json!({"qids": qids, "dim": 2048, "chunked": true, "questions": texts}),
    );
    // The whole table, through the config section, with the output as a flag.
    let config = dir.join("pipeline.yaml");
    std::fs::write(
        &config,
        format!(
            "import_gensen:\n  h5: {}\n  questions: {}\n  out: {}\n",
            h5.display(),
            questions.display(),
            dir.join("elsewhere.arrow").display()
        ),
    )
    .unwrap();
    let out = dir.join("all.arrow");
    run_ok(
        import(&dir, &["--out", out.to_str().unwrap()])
            .arg("--config")
            .arg(&config),
    );
    assert!(
        !dir.join("elsewhere.arrow").exists(),
        "--out overrides the config"
    );
    let all: Vec<u64> = QUESTIONS.iter().map(|q| q.0).collect();
    let ds = check_features(&out, &all, 2048);
    assert_eq!(ds.meta("remind.source").unwrap(), h5.display().to_string());
    assert_eq!(ds.meta("remind.source_format").unwrap(), "hdf5");
    let report = read_report(&out);
    assert_eq!(report["in_file"], 6);
    assert_eq!(report["in_table"], 5);
    assert_eq!(report["matched"], 5);
    assert_eq!(report["extra_in_file"], 1);
    assert_eq!(report["extra_examples"], json!([7]));
    assert_eq!(report["dim"], 2048);
    assert_eq!(report["text_compared"], 5);
    assert_eq!(report["text_mismatches"], 1);
    assert_eq!(report["text_mismatch_examples"], json!([11]));

    // One split: the val questions of the table; the train rows of the file are extra.
    let val = dir.join("val.arrow");
    run_ok(&mut import(
        &dir,
        &[
            "--h5",
            h5.to_str().unwrap(),
            "--questions",
            questions.to_str().unwrap(),
            "--split",
            "val",
            "--out",
            val.to_str().unwrap(),
        ],
    ));
    check_features(&val, &[1_000_000_000, 1_000_000_001], 2048);
    let report = read_report(&val);
    assert_eq!(report["matched"], 2);
    assert_eq!(report["extra_in_file"], 4);
    assert_eq!(report["extra_examples"], json!([7, 10, 11, 12]));
    assert_eq!(report["text_mismatches"], 0);

    // The same rows seen from Python.
    let py = run_python(
        "import sys, json, pyarrow as pa\n\
         t = pa.ipc.open_file(sys.argv[1]).read_all()\n\
         print(json.dumps([t.column('id').to_pylist(), t.column('data')[1].as_py()[:3]]))",
        &[val.to_str().unwrap()],
    );
    let seen: Value = serde_json::from_str(py.trim()).unwrap();
    assert_eq!(seen[0], json!([1_000_000_000u64, 1_000_000_001u64]));
    let row1: Vec<f64> = (0..3).map(|c| expected(1_000_000_001, c) as f64).collect();
    assert_eq!(seen[1], json!(row1));

    let manifest = std::fs::read_to_string(dir.join("run/manifest.json")).unwrap();
    assert!(manifest.contains("import-gensen"), "{manifest}");
}

#[test]
fn imports_npy_features_with_each_id_format() {
    let dir = scratch("import_gensen_npy");
    let questions = questions_table(&dir);
    // A per-split file numbered from 0, as CLEVR's val questions are: id_offset aligns it.
    let qids = [1u64, 0];
    for ext in ["npy", "json", "txt"] {
        let feats = dir.join(format!("feats_{ext}.npy"));
        let ids = dir.join(format!("ids.{ext}"));
        write_features(
            &feats,
            json!({"qids": qids, "dim": 5, "ids_path": ids.to_str().unwrap()}),
        );
        let out = dir.join(format!("val_{ext}.arrow"));
        run_ok(&mut import(
            &dir,
            &[
                "--npy",
                feats.to_str().unwrap(),
                "--npy-ids",
                ids.to_str().unwrap(),
                "--questions",
                questions.to_str().unwrap(),
                "--split",
                "val",
                "--id-offset",
                "1000000000",
                "--out",
                out.to_str().unwrap(),
            ],
        ));
        let ds = TensorDataset::open(&out, "question_features").unwrap();
        assert_eq!(ds.ids().unwrap(), [1_000_000_000, 1_000_000_001]);
        // Row of question 1_000_000_000 is file row 1 (file id 0).
        assert_eq!(ds.row_f32(0).unwrap()[4], expected(0, 4));
        assert_eq!(ds.row_f32(1).unwrap()[4], expected(1, 4));
        assert_eq!(ds.meta("remind.source_format").unwrap(), "npy");
        let report = read_report(&out);
        assert_eq!(
            (report["matched"].clone(), report["extra_in_file"].clone()),
            (json!(2), json!(0))
        );
        assert_eq!(report["text_compared"], Value::Null);
    }

    // Other dtypes are refused, naming the file (Fortran order and big-endian arrays are
    // read: tests/formats_binary.rs).
    let bad = dir.join("bad.npy");
    let ids = dir.join("bad_ids.npy");
    let args = |out: &str| -> Vec<String> {
        [
            "--npy",
            bad.to_str().unwrap(),
            "--npy-ids",
            ids.to_str().unwrap(),
            "--questions",
            questions.to_str().unwrap(),
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let out = dir.join("out.arrow");
    let all: Vec<u64> = QUESTIONS.iter().map(|q| q.0).collect();
    write_features(
        &bad,
        json!({"qids": all, "feats_dtype": "float64", "ids_path": ids.to_str().unwrap()}),
    );
    let err = run_fail(import(&dir, &[]).args(args(out.to_str().unwrap())));
    assert!(err.contains("bad.npy") && err.contains("'<f8'"), "{err}");
    write_features(
        &bad,
        json!({"qids": all, "qids_dtype": "int32", "ids_path": ids.to_str().unwrap()}),
    );
    let err = run_fail(import(&dir, &[]).args(args(out.to_str().unwrap())));
    assert!(
        err.contains("bad_ids.npy") && err.contains("'<i4'"),
        "{err}"
    );
    assert_nothing_written(&dir);
}

/// Runs the import of `h5` for the whole fixture table into `dir/out.arrow`, expecting
/// failure; returns the error, after checking nothing was written.
fn fails_on(dir: &Path, spec: Value) -> String {
    let questions = questions_table(dir);
    let h5 = dir.join("bad.h5");
    write_features(&h5, spec);
    let err = run_fail(&mut import(
        dir,
        &[
            "--h5",
            h5.to_str().unwrap(),
            "--questions",
            questions.to_str().unwrap(),
            "--out",
            dir.join("out.arrow").to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("bad.h5"),
        "the error does not name the file: {err}"
    );
    assert_nothing_written(dir);
    err
}

fn all_ids() -> Vec<u64> {
    QUESTIONS.iter().map(|q| q.0).collect()
}

#[test]
fn fails_on_a_missing_dataset() {
    let dir = scratch("import_gensen_no_dataset");
    let err = fails_on(&dir, json!({"qids": all_ids(), "omit": ["feats"]}));
    assert!(
        err.contains("no dataset 'feats'") && err.contains("the file has: qids"),
        "{err}"
    );
    let err = fails_on(&dir, json!({"qids": all_ids(), "omit": ["qids"]}));
    assert!(err.contains("no dataset 'qids'"), "{err}");
}

#[test]
fn fails_on_features_of_the_wrong_shape_or_type() {
    let dir = scratch("import_gensen_bad_feats");
    let err = fails_on(&dir, json!({"qids": all_ids(), "feats_shape": [5, 2, 3]}));
    assert!(
        err.contains("dataset 'feats': expected 2-D [N x D], found shape [5, 2, 3]"),
        "{err}"
    );
    let err = fails_on(&dir, json!({"qids": all_ids(), "feats_dtype": "float64"}));
    assert!(
        err.contains("dataset 'feats': expected float32, found float64"),
        "{err}"
    );
}

#[test]
fn fails_when_qids_and_feats_differ_in_length() {
    let dir = scratch("import_gensen_qids_len");
    let err = fails_on(&dir, json!({"qids": all_ids(), "qids_len": 4}));
    assert!(
        err.contains("dataset 'qids' has 4 ids but 'feats' has 5 rows"),
        "{err}"
    );
}

#[test]
fn fails_on_duplicate_question_ids() {
    let dir = scratch("import_gensen_dup");
    let mut ids = all_ids();
    ids.push(11);
    let err = fails_on(&dir, json!({"qids": ids}));
    assert!(
        err.contains("question id 11 appears twice (rows 1 and 5)"),
        "{err}"
    );
}

#[test]
fn fails_when_questions_of_the_table_have_no_features() {
    let dir = scratch("import_gensen_missing");
    let err = fails_on(&dir, json!({"qids": [11, 1_000_000_000, 99]}));
    assert!(
        err.contains("3 of the 5 questions of")
            && err.contains("have no features in the file (question ids 10, 12, 1000000001)"),
        "{err}"
    );
}

#[test]
fn fails_on_nan_or_infinite_features() {
    let dir = scratch("import_gensen_nan");
    let err = fails_on(&dir, json!({"qids": all_ids(), "nan": [2, 3]}));
    assert!(
        err.contains("the features of question id 12 (row 2) hold NaN"),
        "{err}"
    );
    let err = fails_on(&dir, json!({"qids": all_ids(), "inf": [4, 0]}));
    assert!(
        err.contains("the features of question id 1000000001 (row 4) hold an infinite value"),
        "{err}"
    );
}
