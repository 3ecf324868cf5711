//! Streaming VQA end to end on a tiny generated mini-CLEVR: every stage as a real process
//! (generate, import, backbone, features, PQ, codes, stream-train for the three methods),
//! predictions and checkpoints at every boundary, and a killed run resumed to the same
//! predictions as an uninterrupted one.

use std::path::{Path, PathBuf};

use remind::artifact::Table;
use remind_e2e::{
    kill_once_exists, mini_clevr_stream_cmd, prepare_mini_clevr, run_fail, run_ok, scratch, stage,
};

#[path = "support/compute_check.rs"]
mod compute_check;

const CONFIG: &str = "
stream:
  order: qtype
  seed: 3
  replay: 8
  lr: 0.003
  base_epochs: 2
  offline_epochs: 2
  batch_size: 16
  eval_batch: 64
  max_question_len: 20
  max_per_type: 60
model:
  kind: smac
  dim: 16
  steps: 2
  embed_dim: 8
  lstm_hidden: 8
  dropout: 0.15
  freeze_embeddings: false
";

/// The tiny mini-CLEVR chain under `dir` and this test's config.
fn prepare(dir: &Path) -> PathBuf {
    prepare_mini_clevr(dir);
    let cfg = dir.join("p.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    cfg
}

fn predictions(out: &Path, method: &str) -> Vec<(u64, i64)> {
    let dir = out.join(method).join("predictions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let t = Table::read(&f, "predictions").unwrap();
        let ids = t.column::<arrow::array::UInt64Array>("id").unwrap();
        let pred = t.column::<arrow::array::Int64Array>("predicted").unwrap();
        all.extend(
            ids.values()
                .iter()
                .copied()
                .zip(pred.values().iter().copied()),
        );
    }
    all
}

#[test]
fn three_methods_stream_and_a_killed_run_resumes_identically() {
    let dir = scratch("stream-vqa");
    let cfg = prepare(&dir);
    let out = dir.join("stream");
    for method in ["remind", "finetune", "offline"] {
        run_ok(&mut mini_clevr_stream_cmd(&dir, &cfg, method, &out));
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(method).join("complete.json")).unwrap())
                .unwrap();
        let boundaries = done["boundaries"].as_array().unwrap().len();
        assert_eq!(boundaries, 5, "qtype order over the 5 CLEVR types: {done}");
        for k in 0..boundaries {
            assert!(out
                .join(method)
                .join(format!("boundary-{k:03}/model.safetensors"))
                .exists());
            assert!(out
                .join(method)
                .join(format!("predictions/boundary-{k:03}.parquet"))
                .exists());
        }
        assert_eq!(
            out.join(method).join("boundary-004/buffer.arrow").exists(),
            method == "remind"
        );
    }
    // The streamed updates are timed against the bare step on a prepared batch of the same
    // size (1 new + r replayed), in the same process.
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("remind/complete.json")).unwrap()).unwrap();
    let rate = &done["update_rate"];
    assert!(rate["updates"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(rate["batch"], 9, "1 new + 8 replayed: {done}");
    assert!(rate["update_over_floor"].as_f64().unwrap() > 0.0, "{done}");
    // evaluate reports every method's compute beside the accuracy (issue #17).
    let eval = run_ok(
        stage("remind-evaluate")
            .arg("--questions")
            .arg(dir.join("questions/questions.parquet"))
            .arg("--question-types")
            .arg(dir.join("questions/question_types.parquet"))
            .arg("--stream-dir")
            .arg(&out)
            .arg("--out")
            .arg(dir.join("eval"))
            .arg("--run-dir")
            .arg(&dir),
    );
    let table = String::from_utf8_lossy(&eval.stdout);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("eval/metrics.json")).unwrap()).unwrap();
    let blocks =
        compute_check::check_compute(&metrics, &out, &["remind", "finetune", "offline"], &table);
    // remind and finetune: base initialisation's mini-batches (2 epochs of batches of 16
    // over the first segment) and then one update per streamed question.
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    let b = plan["boundaries"].as_array().unwrap();
    let (base, all) = (b[0].as_u64().unwrap(), b[b.len() - 1].as_u64().unwrap());
    let base_steps = 2 * base.div_ceil(16);
    for c in &blocks[..2] {
        assert_eq!(c["updates"].as_u64(), Some(base_steps + all - base), "{c}");
    }
    assert_eq!(rate["updates"].as_u64(), Some(all - base), "{done}");
    let uninterrupted = predictions(&out, "remind");

    // Kill a remind run once its second checkpoint exists, then resume it.
    let out2 = dir.join("stream-killed");
    kill_once_exists(
        &mut mini_clevr_stream_cmd(&dir, &cfg, "remind", &out2),
        &out2.join("remind/boundary-001/state.json"),
        &out2.join("remind/complete.json"),
    );
    run_ok(mini_clevr_stream_cmd(&dir, &cfg, "remind", &out2).arg("--resume"));
    assert_eq!(
        predictions(&out2, "remind"),
        uninterrupted,
        "a resumed run must predict exactly as an uninterrupted one"
    );
    // --resume-from an earlier boundary replays the rest to the same predictions, and drops
    // the later checkpoints of the abandoned continuation first.
    let from = std::fs::read(out2.join("remind/boundary-002/state.json")).unwrap();
    run_ok(mini_clevr_stream_cmd(&dir, &cfg, "remind", &out2).args(["--resume-from", "1"]));
    assert_eq!(
        predictions(&out2, "remind"),
        uninterrupted,
        "a run resumed from boundary 1 must predict exactly as an uninterrupted one"
    );
    assert_eq!(
        std::fs::read(out2.join("remind/boundary-002/state.json")).unwrap(),
        from,
        "the re-made checkpoint of boundary 2 is the same"
    );
    let err =
        run_fail(mini_clevr_stream_cmd(&dir, &cfg, "remind", &out2).args(["--resume-from", "9"]));
    assert!(
        err.contains("--resume-from 9") && err.contains("0..4"),
        "{err}"
    );

    // A resume under another configuration is refused.
    let other = dir.join("other.yaml");
    std::fs::write(&other, CONFIG.replace("replay: 8", "replay: 9")).unwrap();
    let err = run_fail(mini_clevr_stream_cmd(&dir, &other, "remind", &out2).arg("--resume"));
    assert!(
        err.contains("another configuration (stream.replay: 8 -> 9;"),
        "{err}"
    );
    // Unknown config keys name the closest one.
    std::fs::write(&other, CONFIG.replace("replay: 8", "replays: 8")).unwrap();
    let err = run_fail(&mut mini_clevr_stream_cmd(
        &dir,
        &other,
        "remind",
        &dir.join("x"),
    ));
    assert!(err.contains("did you mean 'replay'"), "{err}");
    // More replay than the buffer can ever hold runs, and says so once.
    std::fs::write(&other, CONFIG.replace("replay: 8", "replay: 100000")).unwrap();
    let ran = run_ok(&mut mini_clevr_stream_cmd(
        &dir,
        &other,
        "remind",
        &dir.join("replay-all"),
    ));
    let log = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(
        log.matches("note: stream.replay 100000 is more than the buffer can hold")
            .count(),
        1,
        "{log}"
    );
}
