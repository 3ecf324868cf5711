//! Streaming image classification end to end on tiny generated IDX files: import, base
//! training, features, PQ, codes, stream-train --task classification for the three methods
//! and evaluate, every stage a real process; a killed run resumed (latest checkpoint and
//! --resume-from) to the same probabilities as an uninterrupted one; the update split on
//! two threads (the GPU path) to the same bytes as the whole update; bad inputs refused.

use std::path::Path;

use remind_e2e::{
    kill_once_exists, probabilities, run_fail, run_ok, run_python, scratch, stage, ClassRun,
};

#[path = "support/compute_check.rs"]
mod compute_check;
#[path = "support/plot_check.rs"]
mod plot_check;

const SIDE: usize = 12;
const CLASSES: usize = 4;

const CONFIG: &str = "
task: classification
import_images:
  class_names: [zero, one, two, three]
  base_classes: 2
  seed: 0
train_classifier:
  arch: resnet18
  width: 8
  stem: small
  image_size: 12
  epochs: 3
  batch: 16
  lr: 0.05
  seed: 0
extract_features:
  arch: resnet18
  width: 8
  stem: small
  cut: layer4.0
  image_size: 12
  batch: 32
fit_pq:
  num_subspaces: 8
  nbits: 4
  seed: 1
classify_stream:
  cut: layer4.0
  increment: 1
  replay: 6
  mixup_alpha: 0.1
  buffer_capacity: 70
  lr: { start: 0.05, end: 0.001, step: 10, decay_over: 40 }
  offline_epochs: 3
  offline_batch: 16
  offline_lr: 0.05
  eval_batch: 64
  seed: 2
";

/// Class c: a bright 4x4 patch whose place depends on c, over seeded noise.
fn image(c: usize, i: usize) -> Vec<u8> {
    let mut px = vec![0u8; SIDE * SIDE];
    let mut x = (c * 7919 + i * 104_729 + 1) as u64;
    for p in px.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *p = (x % 60) as u8;
    }
    let (r0, c0) = ((c / 2) * 6 + 1, (c % 2) * 6 + 1);
    for r in r0..r0 + 4 {
        for col in c0..c0 + 4 {
            px[r * SIDE + col] = 200 + (i % 50) as u8;
        }
    }
    px
}

fn write_idx(dir: &Path, prefix: &str, per_class: usize) {
    let n = per_class * CLASSES;
    let mut images = vec![0, 0, 8, 3];
    let mut labels = vec![0, 0, 8, 1];
    for v in [n as u32, SIDE as u32, SIDE as u32] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let c = i % CLASSES;
        images.extend(image(c, i));
        labels.push(c as u8);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

type Run = ClassRun;

/// Imports, base-trains, extracts features and codes of the tiny data set under `dir`.
fn prepare(dir: &Path, config: &str) -> Run {
    let idx = dir.join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    write_idx(&idx, "train", 40);
    write_idx(&idx, "t10k", 10);
    let run = Run::new(dir, config);
    run_ok(
        run.cmd("remind-import-images")
            .arg("--idx")
            .arg(&idx)
            .arg("--out")
            .arg(run.p("data")),
    );
    run.build_after_import(&run.p("data/images"));
    run
}

#[test]
fn three_methods_evaluate_and_a_killed_run_resumes_identically() {
    let dir = scratch("classify-stream");
    let run = prepare(&dir, CONFIG);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.p("base/train_report.json")).unwrap()).unwrap();
    assert_eq!(report["base_classes"], 2, "{report}");
    assert!(
        report["best_val_top1"].as_f64().unwrap() > 0.8,
        "the base classes are easy to tell apart: {report}"
    );
    // Base training is deterministic: the same seed writes the same weights (on AVX2-only
    // CPUs channels-last input made oneDNN corrupt memory here: runs differed or crashed).
    let again = run.p("base-again/weights.safetensors");
    run_ok(&mut run.train_classifier(&again));
    // The tensors' bytes after the safetensors header (whose metadata holds the config
    // hash, which names the output path).
    let tensors = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        b[8 + n..].to_vec()
    };
    assert!(
        tensors(&again) == tensors(&run.p("base/weights.safetensors")),
        "the same seed trained different base weights"
    );

    let out = run.p("stream");
    for method in ["remind", "finetune", "offline"] {
        run_ok(&mut run.train(method, &out));
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(method).join("complete.json")).unwrap())
                .unwrap();
        assert_eq!(done["seen_classes"], serde_json::json!([2, 3, 4]), "{done}");
        for k in 0..3 {
            assert!(out
                .join(method)
                .join(format!("boundary-{k:03}/state.json"))
                .exists());
            assert!(!probabilities(&out, method, k).is_empty());
        }
        assert_eq!(
            out.join(method).join("boundary-002/buffer.arrow").exists(),
            method == "remind"
        );
    }
    // REMIND's update split on two threads (as on a GPU; forced here): the same draws and
    // the same arithmetic, so the same probabilities, buffer, generator position and
    // weights at every boundary.
    let split = run.p("stream-split");
    let err = run_fail(run.train("remind", &split).env("REMIND_OVERLAP", "yes"));
    assert!(
        err.contains("REMIND_OVERLAP must be 1") && err.contains("\"yes\""),
        "{err}"
    );
    assert!(
        !split.join("remind").exists(),
        "nothing written when refused"
    );
    run_ok(run.train("remind", &split).env("REMIND_OVERLAP", "1"));
    let two_threads = |dir: &Path| {
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("remind/complete.json")).unwrap())
                .unwrap();
        done["update_rate"]["two_threads"].clone()
    };
    assert_eq!(two_threads(&split), true);
    assert_eq!(two_threads(&out), false, "whole on the CPU by default");
    for k in 0..3 {
        assert!(
            probabilities(&split, "remind", k) == probabilities(&out, "remind", k),
            "boundary {k}: probabilities differ with the update split on two threads"
        );
        let boundary = format!("remind/boundary-{k:03}");
        let (a, b) = (out.join(&boundary), split.join(&boundary));
        let mut files: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{files:?}");
        for f in files {
            assert!(
                std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(),
                "{boundary}/{f:?} differs with the update split on two threads"
            );
        }
    }

    // The iid order on the same IDX data (no video columns): the base classes first, then
    // every other image in one shuffle, every class scored every eval_every images.
    let iid = run.p("stream-iid");
    run_ok(
        run.train("finetune", &iid)
            .args(["--order", "iid", "--eval-every", "25"]),
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(iid.join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        plan["boundaries"],
        serde_json::json!([80, 105, 130, 155, 160]),
        "{plan}"
    );
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(iid.join("finetune/complete.json")).unwrap())
            .unwrap();
    assert_eq!(
        done["seen_classes"],
        serde_json::json!([4, 4, 4, 4, 4]),
        "{done}"
    );
    // The label table with its rows shuffled (as another tool may write it) streams and
    // scores the same: items are taken in id order.
    let shuffled = run.p("data-shuffled/labels.parquet");
    std::fs::create_dir_all(shuffled.parent().unwrap()).unwrap();
    run_python(
        "import sys, numpy as np, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1])\n\
         t = t.take(np.random.default_rng(0).permutation(t.num_rows))\n\
         pq.write_table(t, sys.argv[2])",
        &[
            run.p("data/labels.parquet").to_str().unwrap(),
            shuffled.to_str().unwrap(),
        ],
    );
    let from_shuffled = run.p("stream-shuffled");
    run_ok(&mut run.train_on(&shuffled, "finetune", &from_shuffled));
    for k in 0..3 {
        assert!(
            probabilities(&from_shuffled, "finetune", k) == probabilities(&out, "finetune", k),
            "boundary {k}: a shuffled label table gave other probabilities"
        );
    }
    let err = run_fail(
        run.train("finetune", &run.p("stream-inst"))
            .args(["--order", "instance"]),
    );
    assert!(
        err.contains("\"instance\"") && err.contains("labels.parquet"),
        "{err}"
    );
    // --task contradicting the config's top-level task is refused, nothing written.
    let other = run.p("stream-other-task");
    let err =
        run_fail(
            run.train("finetune", &other)
                .args(["--task", "vqa", "--questions", "q.parquet"]),
        );
    assert!(err.contains("--task vqa contradicts"), "{err}");
    assert!(!other.exists());

    // Offline to a plateau (offline_patience): a validation score per epoch, the best
    // epoch kept, and the point's evaluation scores exactly the kept epoch's weights.
    let plateau_cfg = run.p("plateau.yaml");
    std::fs::write(
        &plateau_cfg,
        CONFIG.replace(
            "  offline_epochs: 3\n",
            "  offline_epochs: 8\n  offline_patience: 1\n",
        ),
    )
    .unwrap();
    let plateau_run = Run {
        dir: run.dir.clone(),
        cfg: plateau_cfg,
    };
    let plateau = run_ok(&mut plateau_run.train("offline", &run.p("stream-plateau")));
    let log = String::from_utf8_lossy(&plateau.stderr);
    for seen in [3, 4] {
        let prefix = format!("stream-train[offline]: {seen} classes: ");
        let epochs = log
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(": validation "))
            .count();
        assert!((1..=8).contains(&epochs), "{epochs} epochs\n{log}");
        let kept = log
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.strip_prefix("kept epoch "))
            .unwrap_or_else(|| panic!("no kept epoch for {seen} classes\n{log}"));
        let kept_score = kept
            .split("validation ")
            .nth(1)
            .unwrap()
            .trim_end_matches("%)");
        let evaluated = log
            .lines()
            .find(|l| l.contains(&format!("{seen} classes scored")))
            .unwrap_or_else(|| panic!("no evaluation at {seen} classes\n{log}"));
        assert!(
            evaluated.contains(&format!("top-1 {kept_score}%")),
            "kept {kept_score}%, evaluated: {evaluated}"
        );
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("remind/boundary-002/state.json")).unwrap())
            .unwrap();
    // Per-class learning-rate counters: one update per streamed image of classes 2 and 3.
    assert_eq!(
        state["counters"],
        serde_json::json!([0, 0, 40, 40]),
        "{state}"
    );

    let done = run_ok(
        run.cmd("remind-evaluate")
            .args(["--task", "classification"])
            .arg("--labels")
            .arg(run.p("data/labels.parquet"))
            .arg("--stream-dir")
            .arg(&out)
            .arg("--out")
            .arg(run.p("eval")),
    );
    let table = String::from_utf8_lossy(&done.stdout);
    assert!(table.contains("omega_all"), "{table}");
    // A misspelt baseline is refused, not reported as a blank Omega.
    let evaluate = |stream: &Path, out: &str| {
        let mut c = run.cmd("remind-evaluate");
        c.args(["--task", "classification"])
            .arg("--labels")
            .arg(run.p("data/labels.parquet"))
            .arg("--stream-dir")
            .arg(stream)
            .arg("--out")
            .arg(run.p(out));
        c
    };
    let err = run_fail(evaluate(&out, "eval-typo").args(["--baseline", "ofline"]));
    assert!(
        err.contains("baseline 'ofline'") && err.contains("does not exist"),
        "{err}"
    );
    // A run cut after its first evaluation points names the points it lacks (the plan's
    // last ones too), then the missing complete.json.
    let partial = run.p("stream-partial");
    std::fs::create_dir_all(partial.join("remind/probabilities")).unwrap();
    std::fs::copy(out.join("plan.json"), partial.join("plan.json")).unwrap();
    std::fs::copy(
        out.join("remind/probabilities/eval-000.arrow"),
        partial.join("remind/probabilities/eval-000.arrow"),
    )
    .unwrap();
    let err = run_fail(evaluate(&partial, "eval-partial").args(["--methods", "remind"]));
    assert!(err.contains("lacks evaluation points 1, 2"), "{err}");
    for k in 1..3 {
        let f = format!("remind/probabilities/eval-{k:03}.arrow");
        std::fs::copy(out.join(&f), partial.join(&f)).unwrap();
    }
    let err = run_fail(evaluate(&partial, "eval-partial").args(["--methods", "remind"]));
    assert!(
        err.contains("complete.json") && err.contains("--resume"),
        "{err}"
    );

    // A second seed's remind stream evaluated with the first: the mean of the two runs'
    // seen-class top-1 at every point, their spread, each run under seeds/seed-N/.
    let seed1 = run.p("stream-seed1");
    run_ok(run.train("remind", &seed1).args(["--seed", "1"]));
    run_ok(
        run.cmd("remind-evaluate")
            .args(["--task", "classification", "--methods", "remind"])
            .arg("--labels")
            .arg(run.p("data/labels.parquet"))
            .args(["--stream-dir".as_ref(), out.as_os_str()])
            .args(["--stream-dir".as_ref(), seed1.as_os_str()])
            .arg("--out")
            .arg(run.p("eval-seeds")),
    );
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.p(p)).unwrap()).unwrap()
    };
    let (m0, m1, mean) = (
        read("eval-seeds/seeds/seed-2/metrics.json"),
        read("eval-seeds/seeds/seed-1/metrics.json"),
        read("eval-seeds/metrics.json"),
    );
    let top1 =
        |m: &serde_json::Value, k: usize| m["remind"]["seen_classes_top1"][k].as_f64().unwrap();
    // Two seeds, two streams (the task is easy enough that their accuracies may agree).
    let plan = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("plan.json")).unwrap()).unwrap()
    };
    assert_eq!(
        (plan(&out)["seed"].as_u64(), plan(&seed1)["seed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(plan(&seed1)["order"], "class_iid");
    assert_ne!(
        probabilities(&out, "remind", 2),
        probabilities(&seed1, "remind", 2)
    );
    for k in 0..3 {
        let want = (top1(&m0, k) + top1(&m1, k)) / 2.0;
        assert!((top1(&mean, k) - want).abs() < 1e-12, "point {k}: {mean}");
        let std = mean["seeds"]["std"]["remind"]["seen_classes_top1"][k]
            .as_f64()
            .unwrap();
        let want_std = (top1(&m0, k) - top1(&m1, k)).abs() / 2f64.sqrt();
        assert!((std - want_std).abs() < 1e-12, "point {k}: std {std}");
    }
    assert_eq!(mean["seen_classes"], m0["seen_classes"]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.p("eval/metrics.json")).unwrap()).unwrap();
    // The compute block of every method (issue #17): one update per streamed image (80,
    // the learning-rate counters' sum; nothing trains before the stream here), 1 new + 6
    // replayed items per remind update after mixup's pairing, and F's forward FLOPs by
    // hand: after layer4.0 of the width-8 ResNet-18 on 12 px images the maps are 2x2 of
    // 64 channels, so layer4.1's two 3x3 64 -> 64 convs and fc 64 -> 4.
    let blocks = compute_check::check_compute(&m, &out, &["remind", "finetune", "offline"], &table);
    let forward = 2.0 * (2.0 * 64.0 * 64.0 * 9.0 * 4.0) + 2.0 * 64.0 * 4.0;
    for b in &blocks {
        assert_eq!(b["forward_flops_per_item"].as_f64(), Some(forward), "{b}");
    }
    assert_eq!(
        (&blocks[0]["updates"], &blocks[0]["items"]),
        (&80.into(), &560.into())
    );
    assert_eq!(
        (&blocks[1]["updates"], &blocks[1]["items"]),
        (&80.into(), &80.into())
    );
    // At the base point the offline model is the base network itself, as REMIND's F is.
    let top1 = |method: &str, k: usize| m[method]["seen_classes_top1"][k].as_f64().unwrap();
    assert_eq!(top1("offline", 0), top1("remind", 0), "{m}");
    // evaluate warns exactly when a method beats the offline bound somewhere.
    let stderr = String::from_utf8_lossy(&done.stderr);
    for method in ["remind", "finetune"] {
        let above = (0..3).any(|k| top1(method, k) > top1("offline", k));
        assert_eq!(
            stderr.contains(&format!("'{method}' scores above 'offline'")),
            above,
            "{stderr}\n{m}"
        );
    }
    for method in ["remind", "finetune", "offline"] {
        for key in [
            "base_classes_top1",
            "base_classes_top5",
            "non_base_classes_top1",
            "non_base_classes_top5",
            "seen_classes_top1",
            "seen_classes_top5",
        ] {
            assert_eq!(
                m[method][key].as_array().unwrap().len(),
                3,
                "{method} {key}"
            );
        }
        // Top-5 of 4 classes is always right.
        assert_eq!(m[method]["seen_classes_top5"][2], 1.0);
        assert!(m[method]["non_base_classes_top1"][0].is_null());
    }
    let last = |method: &str| m[method]["seen_classes_top1"][2].as_f64().unwrap();
    assert!(
        last("remind") > last("finetune") + 0.2,
        "replay must beat fine-tuning on a class-incremental stream: remind {}, finetune {}",
        last("remind"),
        last("finetune")
    );
    assert_eq!(m["offline"]["omega_all_top1"], 1.0);
    assert!(m["remind"]["omega_all_top1"].as_f64().unwrap() > 0.5, "{m}");
    assert!(run.p("eval/metrics.parquet").exists());
    // The plots, PNG and SVG: seen-class top-1 per method, each class increment named; the
    // accuracy matrix of every method as a heatmap, rows and columns named by the classes.
    let methods = ["remind", "finetune", "offline"];
    let mut texts = methods.to_vec();
    texts.extend(["base 0-1", "+class 2", "+class 3"]);
    plot_check::check_figure(&run.p("eval"), "metrics", &texts, 1000..=2000, 400..=800);
    let mut texts = methods.to_vec();
    texts.extend(["0-1", "2", "3", "after learning classes"]);
    plot_check::check_figure(
        &run.p("eval"),
        "metrics_matrix",
        &texts,
        600..=2000,
        200..=1000,
    );
    // The continual-learning metrics: experiences are the base classes then each
    // increment's; the accuracy matrix is lower-triangular; forgetting, average
    // incremental accuracy and backward transfer agree with it; metrics.csv lists it.
    assert_eq!(
        m["experiences"],
        serde_json::json!([[0, 1], [2], [3]]),
        "{m}"
    );
    for method in ["remind", "finetune", "offline"] {
        let r: Vec<Vec<Option<f64>>> =
            serde_json::from_value(m[method]["accuracy_matrix"].clone()).unwrap();
        assert_eq!(r.len(), 3);
        for (k, row) in r.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(v.is_some(), j <= k, "{method} R[{k}][{j}]");
            }
        }
        let f0 = r[0][0].unwrap().max(r[1][0].unwrap()) - r[2][0].unwrap();
        let f1 = r[1][1].unwrap() - r[2][1].unwrap();
        let forgetting = m[method]["forgetting"].as_f64().unwrap();
        assert!(
            (forgetting - (f0 + f1) / 2.0).abs() < 1e-9,
            "{method}: {forgetting}"
        );
        let bwt = m[method]["backward_transfer"].as_f64().unwrap();
        let expected =
            (r[2][0].unwrap() - r[0][0].unwrap() + r[2][1].unwrap() - r[1][1].unwrap()) / 2.0;
        assert!((bwt - expected).abs() < 1e-9, "{method}: {bwt}");
        let aia = m[method]["average_incremental_accuracy"].as_f64().unwrap();
        assert!(((top1(method, 0) + top1(method, 1) + top1(method, 2)) / 3.0 - aia).abs() < 1e-9);
    }
    let csv = std::fs::read_to_string(run.p("eval/metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("method,eval_exp,training_exp,eval_accuracy,forgetting")
    );
    // Per method 1 + 2 + 3 cells of the matrix.
    assert_eq!(lines.count(), 3 * 6, "{csv}");

    // Kill a remind run once its first streamed increment is checkpointed, then resume.
    let out2 = run.p("stream-killed");
    kill_once_exists(
        &mut run.train("remind", &out2),
        &out2.join("remind/boundary-001/state.json"),
        &out2.join("remind/complete.json"),
    );
    // Rerun without --resume (on a copy; the kill left no complete.json): it says that it
    // starts over, and how not to.
    let copy = run.p("stream-killed-copy");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&out2)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = run_ok(&mut run.train("remind", &copy));
    let log = String::from_utf8_lossy(&fresh.stderr);
    assert!(
        log.contains("holds an unfinished run") && log.contains("--resume would continue it"),
        "{log}"
    );
    run_ok(run.train("remind", &out2).arg("--resume"));
    for k in 0..3 {
        assert_eq!(
            probabilities(&out2, "remind", k),
            probabilities(&out, "remind", k),
            "evaluation {k}: a resumed run must give the uninterrupted run's probabilities"
        );
    }
    // --resume-from an earlier point replays the rest to the same result (and says why
    // it runs).
    let again = run_ok(run.train("remind", &out2).args(["--resume-from", "0"]));
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("--resume-from 0 was given"), "{log}");
    assert_eq!(
        probabilities(&out2, "remind", 2),
        probabilities(&out, "remind", 2)
    );

    // Bad input: a resume point that does not exist, a resume under another config, a cut
    // that does not exist.
    let err = run_fail(run.train("remind", &out2).args(["--resume-from", "7"]));
    assert!(
        err.contains("--resume-from 7") && err.contains("0..2"),
        "{err}"
    );
    let other = dir.join("other.yaml");
    std::fs::write(&other, CONFIG.replace("replay: 6", "replay: 5")).unwrap();
    let mut c = run.train("remind", &out2);
    c.arg("--resume");
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let mut c2 = stage("remind-stream-train");
    for a in &args {
        c2.arg(if a == run.cfg.as_os_str() {
            other.as_os_str()
        } else {
            a
        });
    }
    let err = run_fail(&mut c2);
    assert!(
        err.contains("another configuration (classify_stream.replay: 6 -> 5;"),
        "{err}"
    );
    std::fs::write(
        &other,
        CONFIG.replace("cut: layer4.0\n  increment", "cut: layer4.5\n  increment"),
    )
    .unwrap();
    let mut c3 = stage("remind-stream-train");
    for a in &args {
        c3.arg(if a == run.cfg.as_os_str() {
            other.as_os_str()
        } else {
            a
        });
    }
    let err = run_fail(&mut c3);
    assert!(
        err.contains("layer4.5") && err.contains("layer4.0 .. layer4.1"),
        "{err}"
    );
}

/// Rows of a float32 tensor artifact (probabilities, features), in id order.
fn rows_f32(path: &Path, kind: &str) -> Vec<Vec<f32>> {
    let ds = remind::artifact::TensorDataset::open(path, kind).unwrap();
    (0..ds.len())
        .map(|r| ds.row_f32(r).unwrap().to_vec())
        .collect()
}

/// bf16 mixed precision (issue #16): refused, with nothing written, on a CPU without bf16
/// instructions (a cpuinfo without them); where the CPU has them, a REMIND stream and the
/// feature extraction in bf16 land close to fp32 without equalling it (bf16 really ran),
/// record the precision, and a second bf16 run gives the same bytes.
#[test]
fn bf16_mixed_precision_is_close_to_fp32_reproducible_and_refused_without_bf16() {
    let dir = scratch("classify-bf16");
    let run = prepare(&dir, CONFIG);
    let old_cpu = dir.join("cpuinfo-old");
    std::fs::write(
        &old_cpu,
        "model name\t: Old CPU\nflags\t\t: fpu sse2 avx2 avx512f\n",
    )
    .unwrap();
    let refused = dir.join("refused");
    let err = run_fail(
        run.train("remind", &refused)
            .args(["--precision", "bf16"])
            .env("REMIND_CPUINFO", &old_cpu),
    );
    assert!(
        err.contains("classify_stream.precision")
            && err.contains("Old CPU")
            && err.contains("avx512_bf16 or amx_bf16"),
        "{err}"
    );
    assert!(!refused.join("remind/complete.json").exists());
    let err = run_fail(
        run.cmd("remind-extract-features")
            .arg("--images")
            .arg(run.p("data/images"))
            .arg("--weights")
            .arg(run.p("base/weights.safetensors"))
            .args(["--id-from", "sorted", "--precision", "bf16"])
            .arg("--out")
            .arg(dir.join("features-refused"))
            .env("REMIND_CPUINFO", &old_cpu),
    );
    assert!(err.contains("extract_features.precision"), "{err}");
    assert!(!dir
        .join("features-refused/part-00000-of-00001.arrow")
        .exists());

    if !remind::run::precision::CpuBf16::detect().native() {
        eprintln!("bf16 runs skipped: this CPU has no bf16 instructions");
        return;
    }
    let (fp32, bf16, again) = (dir.join("fp32"), dir.join("bf16"), dir.join("bf16-again"));
    run_ok(&mut run.train("remind", &fp32));
    for out in [&bf16, &again] {
        run_ok(run.train("remind", out).args(["--precision", "bf16"]));
    }
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bf16.join("remind/complete.json")).unwrap()).unwrap();
    assert_eq!(done["precision"], "bf16", "{done}");
    assert!(done["cpu_bf16"]["model"].is_string(), "{done}");
    let last = 2;
    assert_eq!(
        probabilities(&bf16, "remind", last),
        probabilities(&again, "remind", last),
        "two bf16 runs differ"
    );
    let path = |out: &Path| out.join(format!("remind/probabilities/eval-{last:03}.arrow"));
    let (a, b) = (
        rows_f32(&path(&fp32), "probabilities"),
        rows_f32(&path(&bf16), "probabilities"),
    );
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
    let agree = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    let max_diff = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max);
    assert!(
        max_diff > 0.0,
        "bf16 probabilities equal fp32's: bf16 did not run"
    );
    assert!(
        agree as f64 >= 0.9 * a.len() as f64 && max_diff < 0.25,
        "bf16 far from fp32: {agree} of {} top-1 predictions agree, max difference {max_diff}",
        a.len()
    );

    // Features: bf16 maps within a few percent of fp32's (relative L2 over all values).
    let features16 = dir.join("features-bf16");
    run_ok(
        run.cmd("remind-extract-features")
            .arg("--images")
            .arg(run.p("data/images"))
            .arg("--weights")
            .arg(run.p("base/weights.safetensors"))
            .args([
                "--id-from",
                "sorted",
                "--threads",
                "1",
                "--precision",
                "bf16",
            ])
            .arg("--out")
            .arg(&features16),
    );
    let (f32s, f16s) = (
        rows_f32(&run.p("features"), "features"),
        rows_f32(&features16, "features"),
    );
    assert_eq!(f32s.len(), f16s.len());
    let (mut err2, mut norm2) = (0f64, 0f64);
    for (x, y) in f32s.iter().zip(&f16s) {
        for (p, q) in x.iter().zip(y) {
            err2 += f64::from(p - q).powi(2);
            norm2 += f64::from(*p).powi(2);
        }
    }
    let rel = (err2 / norm2).sqrt();
    assert!(
        rel > 0.0 && rel < 0.03,
        "bf16 features' relative L2 error {rel}"
    );
}
