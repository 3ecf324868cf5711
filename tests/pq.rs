//! PQ stages end to end: fit-pq and extract-codes on synthetic feature maps, agreement with
//! faiss (its library, in a separate Python process, on the same files), bad input.

use std::path::{Path, PathBuf};

use remind::artifact::dataset::write_single_part;
use remind::artifact::{DType, Payload, Producer, TensorDataset, TensorSpec};
use remind::codes::codebook::load_codebook;
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};
use tch::Tensor;

fn synth(dir: &Path, name: &str, items: usize, hw: usize, c: usize) -> PathBuf {
    let out = dir.join(name);
    run_ok(
        stage("remind-synth-features")
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(dir)
            .args([
                "--items",
                &items.to_string(),
                "--height",
                &hw.to_string(),
                "--width",
                &hw.to_string(),
                "--channels",
                &c.to_string(),
            ]),
    );
    out
}

fn fit(dir: &Path, features: &Path, out: &Path, nbits: u32) -> std::process::Output {
    run_ok(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(features)
            .arg("--out")
            .arg(out)
            .arg("--run-dir")
            .arg(dir)
            .args([
                "--num-subspaces",
                "8",
                "--device",
                "cpu",
                "--nbits",
                &nbits.to_string(),
            ]),
    )
}

#[test]
fn fit_and_extract_codes_shard_and_match_the_library() {
    let dir = scratch("pq-stages");
    let feats = synth(&dir, "features", 120, 4, 64);
    let cb = dir.join("pq/codebook.arrow");
    fit(&dir, &feats, &cb, 6);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pq/fit_report.json")).unwrap()).unwrap();
    assert_eq!(report["train_vectors"], 120 * 16);
    assert!(report["relative_mse"].as_f64().unwrap() < 0.5, "{report}");
    let (pq, info) = load_codebook(&cb).unwrap();
    assert_eq!(
        (pq.num_subspaces(), pq.ksub(), pq.dsub(), info.d),
        (8, 64, 8, 64)
    );

    let whole = dir.join("codes");
    run_ok(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(&feats)
            .arg("--codebook")
            .arg(&cb)
            .arg("--out")
            .arg(&whole)
            .arg("--run-dir")
            .arg(&dir)
            .args(["--batch", "7", "--device", "cpu"]),
    );
    let sharded = dir.join("codes-sharded");
    for k in 0..3 {
        run_ok(
            stage("remind-extract-codes")
                .arg("--features")
                .arg(&feats)
                .arg("--codebook")
                .arg(&cb)
                .arg("--out")
                .arg(&sharded)
                .arg("--run-dir")
                .arg(&dir)
                .arg("--shard")
                .arg(format!("{k}/3")),
        );
    }
    let codes = TensorDataset::open(&whole, "codes").unwrap();
    let codes3 = TensorDataset::open(&sharded, "codes").unwrap();
    let ds = TensorDataset::open(&feats, "features").unwrap();
    assert_eq!(codes.shape(), &[4, 4, 8]);
    assert_eq!(
        codes.meta("remind.codebook_hash").unwrap(),
        info.codebook_hash
    );
    assert_eq!(codes.len(), 120);
    for r in 0..120 {
        let x = Tensor::from_slice(ds.row_f32(r).unwrap()).view([16, 64]);
        let expected = Vec::<u8>::try_from(&pq.encode(&x).unwrap().view([-1])).unwrap();
        assert_eq!(codes.row_u8(r).unwrap(), expected.as_slice(), "item {r}");
        assert_eq!(
            codes3.row_u8(r).unwrap(),
            expected.as_slice(),
            "sharded item {r}"
        );
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"fit-pq\"") && manifest.contains("\"extract-codes\""),
        "{manifest}"
    );
}

#[test]
fn codes_and_decodes_agree_with_faiss_both_ways() {
    let dir = scratch("pq-faiss");
    let feats = synth(&dir, "features", 150, 4, 64);
    let cb = dir.join("codebook.arrow");
    fit(&dir, &feats, &cb, 8);
    let ours_faiss = dir.join("ours.faisspq");
    run_ok(
        stage("remind-pq-convert")
            .arg("to-faiss")
            .arg(&cb)
            .arg(&ours_faiss),
    );
    let codes = dir.join("codes");
    run_ok(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(&feats)
            .arg("--codebook")
            .arg(&cb)
            .arg("--out")
            .arg(&codes)
            .arg("--run-dir")
            .arg(&dir),
    );

    // faiss reads our codebook, encodes the same features; and trains its own for the reverse.
    let theirs_faiss = dir.join("theirs.faisspq");
    let py = r#"
import sys, os, json, numpy as np, pyarrow as pa, faiss
feats, codes, ours, theirs, theirs_codes = sys.argv[1:6]
def load(folder):
    out = []
    for p in sorted(os.listdir(folder)):
        if p.startswith("part-"):
            with pa.memory_map(os.path.join(folder, p)) as s:
                t = pa.ipc.open_file(s).read_all()
            out.append(t)
    return pa.concat_tables(out)
f = load(feats); shape = json.loads(f.schema.metadata[b"remind.shape"])
x = f.column("data").combine_chunks().to_numpy_ndarray().reshape(-1, shape[2]).astype("float32")
c = load(codes)
ours_codes = c.column("data").combine_chunks().to_numpy_ndarray().reshape(-1, 8)
pq = faiss.read_ProductQuantizer(ours)
fc = pq.compute_codes(x)
agree = float((fc == ours_codes).mean())
dec_diff = float(np.abs(pq.decode(ours_codes) - pq.decode(fc)).max()) if agree == 1.0 else None
# Where codes differ, both choices must be (near-)ties in distance.
cent = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
worst = 0.0
for i, m in zip(*np.nonzero(fc != ours_codes)):
    sub = x[i, m * pq.dsub:(m + 1) * pq.dsub]
    da = ((sub - cent[m, fc[i, m]]) ** 2).sum(); db = ((sub - cent[m, ours_codes[i, m]]) ** 2).sum()
    worst = max(worst, abs(da - db) / max(da, 1e-12))
p2 = faiss.ProductQuantizer(shape[2], 8, 8); p2.train(x)
faiss.write_ProductQuantizer(p2, theirs)
np.save(theirs_codes, p2.compute_codes(x))
print(json.dumps({"agree": agree, "tie_gap": worst, "dec_diff": dec_diff}))
"#;
    let theirs_codes = dir.join("theirs_codes.npy");
    let out: serde_json::Value = serde_json::from_str(&run_python(
        py,
        &[
            feats.to_str().unwrap(),
            codes.to_str().unwrap(),
            ours_faiss.to_str().unwrap(),
            theirs_faiss.to_str().unwrap(),
            theirs_codes.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert!(out["agree"].as_f64().unwrap() > 0.999, "{out}");
    assert!(out["tie_gap"].as_f64().unwrap() < 1e-4, "{out}");

    // faiss's codebook imported and used by extract-codes gives faiss's codes.
    let imported = dir.join("imported.arrow");
    run_ok(
        stage("remind-pq-convert")
            .arg("from-faiss")
            .arg(&theirs_faiss)
            .arg(&imported),
    );
    let codes2 = dir.join("codes-faiss-book");
    run_ok(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(&feats)
            .arg("--codebook")
            .arg(&imported)
            .arg("--out")
            .arg(&codes2)
            .arg("--run-dir")
            .arg(&dir),
    );
    let check = r#"
import sys, os, numpy as np, pyarrow as pa
folder, npy = sys.argv[1:3]
parts = [p for p in sorted(os.listdir(folder)) if p.startswith("part-")]
with pa.memory_map(os.path.join(folder, parts[0])) as s:
    t = pa.ipc.open_file(s).read_all()
ours = t.column("data").combine_chunks().to_numpy_ndarray().reshape(-1, 8)
print((np.load(npy) == ours).mean())
"#;
    let agree: f64 = run_python(
        check,
        &[codes2.to_str().unwrap(), theirs_codes.to_str().unwrap()],
    )
    .trim()
    .parse()
    .unwrap();
    assert!(agree > 0.999, "agreement with faiss's own codes: {agree}");
    // Decoding with the imported codebook reproduces faiss's centroids exactly.
    let (pq, _) = load_codebook(&imported).unwrap();
    let back = remind::pq::to_faiss_bytes(&pq).unwrap();
    assert_eq!(back, std::fs::read(&theirs_faiss).unwrap());
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let dir = scratch("pq-bad");
    let feats = synth(&dir, "features", 20, 2, 60);
    let out = dir.join("cb.arrow");
    let fit_args = |extra: &[&str]| {
        let mut c = stage("remind-fit-pq");
        c.arg("--features")
            .arg(&feats)
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(&dir)
            .args(extra);
        c
    };
    let err = run_fail(&mut fit_args(&["--num-subspaces", "8"]));
    assert!(
        err.contains("features") && err.contains("not divisible"),
        "{err}"
    );
    let err = run_fail(&mut fit_args(&["--num-subspaces", "6", "--nbits", "9"]));
    assert!(err.contains("nbits"), "{err}");
    let err = run_fail(&mut fit_args(&["--num-subspaces", "6", "--nbits", "7"]));
    assert!(
        err.contains("80 training vectors are fewer than the 128 centroids"),
        "{err}"
    );
    assert!(!out.exists());

    // NaN in one item: the error names its id.
    let mut values = vec![0.5f32; 10 * 4 * 8];
    values[7 * 32 + 3] = f32::NAN;
    let ids: Vec<u64> = (100..110).collect();
    let spec = TensorSpec::new(
        "features",
        &[2, 2, 8],
        "HWC",
        DType::F32,
        Producer::new("test", "x"),
    );
    let nan = dir.join("nan");
    write_single_part(&nan, spec, &ids, Payload::F32(&values)).unwrap();
    let err = run_fail(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&nan)
            .arg("--out")
            .arg(&out)
            .args(["--num-subspaces", "2", "--nbits", "2"]),
    );
    assert!(err.contains("item id 107") && err.contains("NaN"), "{err}");

    // A codebook for other features: d differs.
    let small = synth(&dir, "small", 40, 2, 16);
    let cb16 = dir.join("cb16.arrow");
    run_ok(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&small)
            .arg("--out")
            .arg(&cb16)
            .arg("--run-dir")
            .arg(&dir)
            .args(["--num-subspaces", "4", "--nbits", "4"]),
    );
    let codes = dir.join("codes");
    let err = run_fail(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(&feats)
            .arg("--codebook")
            .arg(&cb16)
            .arg("--out")
            .arg(&codes)
            .arg("--run-dir")
            .arg(&dir),
    );
    assert!(
        err.contains("cb16.arrow") && err.contains("d=16") && err.contains("C=60"),
        "{err}"
    );
    assert!(!codes.join("part-00000-of-00001.arrow").exists());

    // A split table: ids that exist fit; an empty one and unknown ids are refused.
    let split = dir.join("split.parquet");
    let empty = dir.join("empty.parquet");
    run_python(
        "import pyarrow as pa, pyarrow.parquet as pq, sys\n\
pq.write_table(pa.table({'image_id': pa.array(list(range(0, 40, 2)), pa.int64())}), sys.argv[1])\n\
pq.write_table(pa.table({'image_id': pa.array([], pa.int64())}), sys.argv[2])",
        &[split.to_str().unwrap(), empty.to_str().unwrap()],
    );
    let cb_split = dir.join("cb-split.arrow");
    let ok = run_ok(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&small)
            .arg("--out")
            .arg(&cb_split)
            .arg("--run-dir")
            .arg(&dir)
            .args([
                "--num-subspaces",
                "4",
                "--nbits",
                "4",
                "--ids-column",
                "image_id",
            ])
            .arg("--ids")
            .arg(&split),
    );
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains("on 80 of 80 vectors"),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A codebook not named codebook.arrow keeps its own report (a sweep in one folder).
    assert!(dir.join("cb-split.fit_report.json").exists());
    let err = run_fail(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&small)
            .arg("--out")
            .arg(&dir)
            .arg("--run-dir")
            .arg(&dir)
            .args(["--num-subspaces", "4", "--nbits", "4"]),
    );
    assert!(
        err.contains("is a folder, but the codebook is a file"),
        "{err}"
    );
    // The same table as pyarrow, Polars (zstd is its default) and DuckDB compress it.
    for codec in ["zstd", "gzip", "brotli", "lz4"] {
        let table = dir.join(format!("split-{codec}.parquet"));
        run_python(
            "import pyarrow.parquet as pq, sys
pq.write_table(pq.read_table(sys.argv[1]), sys.argv[2], compression=sys.argv[3])",
            &[split.to_str().unwrap(), table.to_str().unwrap(), codec],
        );
        let ok = run_ok(
            stage("remind-fit-pq")
                .arg("--features")
                .arg(&small)
                .arg("--out")
                .arg(dir.join(format!("cb-split-{codec}.arrow")))
                .arg("--run-dir")
                .arg(&dir)
                .args(["--num-subspaces", "4", "--nbits", "4"])
                .args(["--ids-column", "image_id", "--ids"])
                .arg(&table),
        );
        let log = String::from_utf8_lossy(&ok.stderr);
        assert!(log.contains("on 80 of 80 vectors"), "{codec}: {log}");
    }
    let err = run_fail(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&small)
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(&dir)
            .args([
                "--num-subspaces",
                "4",
                "--nbits",
                "4",
                "--ids-column",
                "image_id",
            ])
            .arg("--ids")
            .arg(&empty),
    );
    assert!(
        err.contains("empty.parquet") && err.contains("empty"),
        "{err}"
    );
    let err = run_fail(
        stage("remind-fit-pq")
            .arg("--features")
            .arg(&feats)
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(&dir)
            .args([
                "--num-subspaces",
                "6",
                "--nbits",
                "2",
                "--ids-column",
                "image_id",
            ])
            .arg("--ids")
            .arg(&split),
    );
    assert!(
        err.contains("split.parquet") && err.contains("not in"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn opq_codebook_lowers_the_error_and_flows_through_the_stages() {
    let dir = scratch("pq-opq");
    let features = synth(&dir, "features", 300, 4, 32);
    let plain = dir.join("plain.arrow");
    fit(&dir, &features, &plain, 6);
    let rotated = dir.join("opq.arrow");
    let mut cmd = stage("remind-fit-pq");
    cmd.arg("--features")
        .arg(&features)
        .arg("--out")
        .arg(&rotated)
        .arg("--report")
        .arg(dir.join("opq_report.json"))
        .arg("--run-dir")
        .arg(&dir)
        .args([
            "--num-subspaces",
            "8",
            "--device",
            "cpu",
            "--nbits",
            "6",
            "--opq",
            "--opq-iterations",
            "6",
        ]);
    let log = String::from_utf8_lossy(&run_ok(&mut cmd).stderr).into_owned();
    assert!(log.contains("OPQ rotation"), "{log}");
    let mse = |report: &str| -> f64 {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(report)).unwrap()).unwrap();
        r["train_mse"].as_f64().unwrap()
    };
    // OPQ starts from plain PQ and keeps the best rotation it sees: never worse (the unit
    // test shows it strictly better on correlated vectors).
    assert!(
        mse("opq_report.json") <= mse("plain.fit_report.json") * (1.0 + 1e-9),
        "OPQ must not fit worse than plain PQ"
    );
    // The rotation travels in the codebook: codes extract, the artifact verifies, and the
    // faiss export (a plain ProductQuantizer) is refused.
    run_ok(
        stage("remind-extract-codes")
            .arg("--features")
            .arg(&features)
            .arg("--codebook")
            .arg(&rotated)
            .arg("--out")
            .arg(dir.join("codes"))
            .arg("--run-dir")
            .arg(&dir),
    );
    run_ok(stage("remind-artifact").arg("verify").arg(&rotated));
    let err = run_fail(
        stage("remind-pq-convert")
            .arg("to-faiss")
            .arg(&rotated)
            .arg(dir.join("x.faiss")),
    );
    assert!(err.contains("OPQ"), "{err}");
    assert!(!dir.join("x.faiss").exists());
}
