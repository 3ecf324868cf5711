//! Streaming VQA with gensen sentence vectors end to end: the tiny mini-CLEVR chain, seeded
//! random sentence vectors written as the reference pipeline does (one HDF5 file per split,
//! `feats`/`qids`/`questions`, val numbered from 0) and imported with
//! `remind-import-gensen`, then `remind-stream-train` with UpDown on `question_input:
//! gensen` for the three methods: predictions at every boundary, a resume that predicts
//! exactly as the uninterrupted run, and clear refusals of questions without vectors and of
//! a width that does not fit the model.

use std::path::Path;
use std::process::Command;

use remind::artifact::Table;
use remind_e2e::{
    mini_clevr_stream_cmd, prepare_mini_clevr, run_fail, run_ok, run_python, scratch, stage,
};

/// Width of the sentence vectors.
const D: usize = 32;

const CONFIG: &str = "
stream:
  order: qtype
  seed: 3
  replay: 8
  lr: 0.01
  base_epochs: 6
  offline_epochs: 6
  batch_size: 16
  eval_batch: 64
  max_question_len: 20
  max_per_type: 40
  l2_normalize_questions: true
model:
  kind: updown
  dim: 16
  glimpses: 2
  question_input: gensen
  dropout: 0.15
  l2_normalize_features: true
";

/// Writes `<out>` (HDF5: feats [N, D] float32, qids, questions) for the questions of one
/// split of the table, numbered as a per-split file does (`offset` subtracted from the
/// table's ids). A question's vector is the sum of seeded random vectors of its words plus
/// a little seeded noise: random, but carrying the question, so the model can learn.
const WRITER: &str = r#"
import sys, zlib
import numpy as np, h5py, pyarrow.parquet as pq
table, split, offset, dim, seed, out = sys.argv[1:7]
dim = int(dim)
t = pq.read_table(table, columns=["question_id", "split", "text"]).to_pydict()
rows = [(q, x) for q, s, x in zip(t["question_id"], t["split"], t["text"]) if s == split]
def word(w):
    return np.random.default_rng(zlib.crc32(w.encode())).standard_normal(dim)
noise = np.random.default_rng(int(seed)).standard_normal((len(rows), dim))
feats = np.stack([sum(word(w) for w in x.lower().rstrip("?").split()) for _, x in rows])
feats = (feats + 0.1 * noise).astype("float32")
with h5py.File(out, "w") as f:
    f.create_dataset("feats", data=feats)
    f.create_dataset("qids", data=np.array([q - int(offset) for q, _ in rows], dtype="int64"))
    f.create_dataset("questions", data=[x for _, x in rows], dtype=h5py.string_dtype())
"#;

/// Gensen files of both splits under `dir/gensen`, imported: returns (train, val) artifacts.
fn gensen(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let table = dir.join("questions/questions.parquet");
    let g = dir.join("gensen");
    std::fs::create_dir_all(&g).unwrap();
    let mut out = Vec::new();
    for (split, offset, seed) in [("train", 0u64, 1), ("val", 1_000_000_000, 2)] {
        let h5 = g.join(format!("{split}.h5"));
        run_python(
            WRITER,
            &[
                table.to_str().unwrap(),
                split,
                &offset.to_string(),
                &D.to_string(),
                &seed.to_string(),
                h5.to_str().unwrap(),
            ],
        );
        let arrow = g.join(format!("{split}.arrow"));
        run_ok(
            stage("remind-import-gensen")
                .arg("--h5")
                .arg(&h5)
                .arg("--questions")
                .arg(&table)
                .args(["--split", split, "--id-offset", &offset.to_string()])
                .arg("--out")
                .arg(&arrow)
                .arg("--run-dir")
                .arg(dir),
        );
        out.push(arrow);
    }
    (out[0].clone(), out[1].clone())
}

fn train_cmd(dir: &Path, cfg: &Path, method: &str, out: &Path, features: &[&Path]) -> Command {
    let mut c = mini_clevr_stream_cmd(dir, cfg, method, out);
    for f in features {
        c.arg("--question-features").arg(f);
    }
    c
}

/// (boundary, question id, predicted answer) of every prediction file of a method.
fn predictions(out: &Path, method: &str) -> Vec<(usize, u64, i64)> {
    let dir = out.join(method).join("predictions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let t = Table::read(f, "predictions").unwrap();
        let ids = t.column::<arrow::array::UInt64Array>("id").unwrap();
        let pred = t.column::<arrow::array::Int64Array>("predicted").unwrap();
        all.extend(
            ids.values()
                .iter()
                .zip(pred.values())
                .map(|(&i, &p)| (k, i, p)),
        );
    }
    all
}

#[test]
fn gensen_vectors_stream_through_every_method_and_resume_identically() {
    let dir = scratch("stream-vqa-gensen");
    prepare_mini_clevr(&dir);
    let (train_f, val_f) = gensen(&dir);
    let cfg = dir.join("p.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = dir.join("stream");
    let val_questions = 200;
    for method in ["remind", "finetune", "offline"] {
        run_ok(&mut train_cmd(
            &dir,
            &cfg,
            method,
            &out,
            &[&train_f, &val_f],
        ));
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(method).join("complete.json")).unwrap())
                .unwrap();
        let boundaries = done["boundaries"].as_array().unwrap().len();
        assert_eq!(boundaries, 5, "qtype order over the 5 CLEVR types: {done}");
        let pred = predictions(&out, method);
        for k in 0..boundaries {
            assert_eq!(
                pred.iter().filter(|p| p.0 == k).count(),
                val_questions,
                "{method}: boundary {k} predicts every val question"
            );
        }
    }
    let uninterrupted = predictions(&out, "remind");

    // Resume after boundary 2 (later checkpoints and predictions gone, as after a kill),
    // with the feature files given through the config instead of the flag.
    let out2 = dir.join("stream-resumed");
    copy_dir(&out.join("remind"), &out2.join("remind"));
    for k in 3..5 {
        std::fs::remove_dir_all(out2.join(format!("remind/boundary-{k:03}"))).unwrap();
        std::fs::remove_file(out2.join(format!("remind/predictions/boundary-{k:03}.parquet")))
            .unwrap();
    }
    std::fs::remove_file(out2.join("remind/complete.json")).unwrap();
    let cfg2 = dir.join("p2.yaml");
    std::fs::write(
        &cfg2,
        CONFIG.replace(
            "stream:\n",
            &format!(
                "stream:\n  question_features: [{}, {}]\n",
                train_f.display(),
                val_f.display()
            ),
        ),
    )
    .unwrap();
    let resumed = run_ok(train_cmd(&dir, &cfg2, "remind", &out2, &[]).arg("--resume"));
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(log.contains("resumed from"), "{log}");
    assert_eq!(
        predictions(&out2, "remind"),
        uninterrupted,
        "a resumed gensen run must predict exactly as an uninterrupted one"
    );
    for file in ["model.safetensors", "optim.safetensors", "buffer.arrow"] {
        let path = |o: &Path| o.join("remind/boundary-004").join(file);
        assert!(
            std::fs::read(path(&out)).unwrap() == std::fs::read(path(&out2)).unwrap(),
            "{file} at the last boundary differs between the resumed and uninterrupted runs"
        );
    }

    // Questions without vectors: only the train split's were given.
    let err = run_fail(&mut train_cmd(
        &dir,
        &cfg,
        "remind",
        &dir.join("x"),
        &[&train_f],
    ));
    assert!(
        err.contains(train_f.to_str().unwrap())
            && err.contains("200 of the 200 val questions have no sentence features")
            && err.contains("question ids 1000000000, 1000000001"),
        "{err}"
    );
    // No features at all, and a width the config contradicts.
    let err = run_fail(&mut train_cmd(&dir, &cfg, "remind", &dir.join("x"), &[]));
    assert!(err.contains("--question-features"), "{err}");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        CONFIG.replace(
            "question_input: gensen",
            "question_input: gensen\n  gensen_dim: 7",
        ),
    )
    .unwrap();
    let err = run_fail(&mut train_cmd(
        &dir,
        &bad,
        "remind",
        &dir.join("x"),
        &[&train_f, &val_f],
    ));
    assert!(
        err.contains("sentence vectors are 32 wide, but model.gensen_dim is 7"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
