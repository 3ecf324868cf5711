//! The TDIUC pipeline end to end through the Makefile: tiny mini-CLEVR written in TDIUC's
//! layout (`remind-generate-clevr --format tdiuc`: Questions/, Annotations/, COCO-named
//! images, CLEVR's programs mapped onto TDIUC question types), then `make tdiuc-qtype` with
//! a test-sized config: import through the TDIUC reader, COCO-filename image ids, UpDown
//! with 2 glimpses and L2-normalised features, the three methods, evaluation. Without
//! TDIUC_DIR the target refuses with a message saying what to pass.

use std::path::Path;
use std::process::Command;

use remind::artifact::Table;
use remind_e2e::{bin_dir, init_test_backbone, run_fail, run_ok, scratch, stage};

const CONFIG: &str = "
extract_features:
  arch: resnet18
  width: 8
  cut: layer3
  image_size: 64
  id_from: coco-filename
fit_pq:
  num_subspaces: 8
  nbits: 4
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
  max_per_type: 40
model:
  kind: updown
  dim: 16
  glimpses: 2
  embed_dim: 8
  lstm_hidden: 8
  dropout: 0.15
  freeze_embeddings: false
  l2_normalize_features: true
";

fn make(args: &[String]) -> Command {
    let mut c = Command::new("make");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .args(args)
        // One libtorch thread: the run is small and the machine shared.
        .env("OMP_NUM_THREADS", "1")
        // Under `make test`, the outer make's flags and overrides must not leak in.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    c
}

#[test]
fn make_tdiuc_qtype_runs_the_tdiuc_chain() {
    let dir = scratch("tdiuc-pipeline");
    let data = dir.join("data");
    run_ok(
        stage("remind-generate-clevr")
            .args(["--size", "tiny", "--seed", "5", "--format", "tdiuc"])
            .arg("--out")
            .arg(&data)
            .arg("--run-dir")
            .arg(&dir),
    );
    let tdiuc = data.join("tdiuc");
    for f in [
        "Questions/OpenEnded_mscoco_train2014_questions.json",
        "Questions/OpenEnded_mscoco_val2014_questions.json",
        "Annotations/mscoco_train2014_annotations.json",
        "Annotations/mscoco_val2014_annotations.json",
        "Images/train2014/COCO_train2014_000000000000.png",
        "Images/val2014/COCO_val2014_000001000019.png",
    ] {
        assert!(tdiuc.join(f).exists(), "{f} missing");
    }
    let weights = dir.join("bb.safetensors");
    init_test_backbone(&weights);
    let cfg = dir.join("tdiuc-tiny.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let art = dir.join("art");
    let arg = |k: &str, v: &Path| format!("{k}={}", v.display());
    let common = vec![
        arg("BIN", &bin_dir()),
        arg("ART", &art),
        arg("CONFIG", &cfg),
        "SETUP=".to_string(),
        "QUIET=1".to_string(),
    ];

    // Without TDIUC_DIR (or weights) the target says what to pass, and runs nothing.
    let mut args = vec!["tdiuc-qtype".to_string()];
    args.extend(common.clone());
    let err = run_fail(&mut make(&args));
    assert!(
        err.contains("needs TDIUC_DIR=/path/to/TDIUC") && err.contains("BACKBONE_WEIGHTS="),
        "{err}"
    );
    args.push(arg("TDIUC_DIR", &tdiuc));
    let err = run_fail(&mut make(&args));
    assert!(err.contains("needs BACKBONE_WEIGHTS="), "{err}");
    assert!(!art.exists(), "a refused target must not start the chain");

    args.push(arg("BACKBONE_WEIGHTS", &weights));
    let out = run_ok(&mut make(&args));
    let log = String::from_utf8_lossy(&out.stdout);
    let run = art.join("tdiuc-qtype");
    assert!(log.contains("--tdiuc-dir"), "{log}");
    assert!(log.contains("tdiuc-qtype: metrics in"), "{log}");

    // The questions came through the TDIUC reader, with TDIUC's type names.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("questions/import_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["dataset"], "tdiuc", "{report}");
    let types = Table::read(&run.join("questions/question_types.parquet"), "vocabulary").unwrap();
    assert_eq!(types.num_rows(), 12, "TDIUC's 12 question types");
    let questions = Table::read(&run.join("questions/questions.parquet"), "questions").unwrap();
    let images = questions
        .column::<arrow::array::UInt64Array>("image_id")
        .unwrap();
    assert!(
        images.values().contains(&1_000_019),
        "val image ids are COCO-style (offset)"
    );

    // Every method predicted at every boundary: 5 TDIUC types in the stream.
    for method in ["remind", "finetune", "offline"] {
        let done: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join("stream").join(method).join("complete.json")).unwrap(),
        )
        .unwrap();
        let boundaries = done["boundaries"].as_array().unwrap().len();
        assert_eq!(boundaries, 5, "{done}");
        for k in 0..boundaries {
            let p = run
                .join("stream")
                .join(method)
                .join(format!("predictions/boundary-{k:03}.parquet"));
            assert_eq!(Table::read(&p, "predictions").unwrap().num_rows(), 200);
        }
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    let text = metrics.to_string();
    for t in [
        "counting",
        "object_presence",
        "color",
        "object_recognition",
        "attribute",
    ] {
        assert!(text.contains(t), "metrics name type {t}: {text}");
    }

    // A second run finds everything up to date.
    let again = run_ok(&mut make(&args));
    let log = String::from_utf8_lossy(&again.stdout);
    assert!(!log.contains("remind-stream-train"), "{log}");
}
