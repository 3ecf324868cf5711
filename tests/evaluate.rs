//! End to end: `remind-evaluate` on a hand-made questions table and predictions of three
//! methods over three boundaries whose accuracies are known exactly; error cases: a
//! prediction of an unknown question, a missing boundary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, ListArray, StringArray, UInt64Array};
use arrow::datatypes::Int32Type;
use remind::artifact::{write_table, Producer};
use remind::stream::plan::StreamPlan;

#[path = "support/plot_check.rs"]
mod plot_check;
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};
use serde_json::Value;

const TYPES: [&str; 3] = ["count", "exist", "query_attribute"];
const POSITIONS: [usize; 3] = [40, 80, 120];
/// Correct answers per method, boundary and type (4 val questions per type; the last
/// question of type 2 has no answer in the table, so it is always wrong).
const CORRECT: [(&str, [[usize; 3]; 3]); 3] = [
    ("remind", [[4, 2, 2], [3, 4, 1], [3, 3, 3]]),
    ("finetune", [[4, 2, 2], [0, 4, 0], [0, 0, 3]]),
    ("offline", [[4, 2, 2], [4, 4, 2], [4, 4, 3]]),
];

/// Val question `i` (0..12): id 100 + i, type i / 4, answer i % 5 (-1 for the last).
fn val_question(i: usize) -> (u64, i32, i64) {
    let answer = if i == 11 { -1 } else { (i % 5) as i64 };
    (100 + i as u64, (i / 4) as i32, answer)
}

fn producer() -> Producer {
    Producer::new("test", "0")
}

fn write_questions(path: &Path) {
    // Three train questions (ids 1-3) then the twelve val questions.
    let mut rows: Vec<(u64, &str, i32, i64)> = (1..=3).map(|id| (id, "train", 0, 0)).collect();
    rows.extend((0..12).map(|i| {
        let (id, t, a) = val_question(i);
        (id, "val", t, a)
    }));
    let n = rows.len();
    let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>(
        (0..n).map(|_| Some(vec![Some(2), Some(3)])),
    );
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from(vec![7u64; n])),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec!["what?"; n])),
        Arc::new(tokens),
        Arc::new(Int32Array::from(vec![2; n])),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec!["a"; n])),
        Arc::new(Int32Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
    ];
    write_table(path, "questions", &producer(), cols, HashMap::new()).unwrap();
}

fn write_types(path: &Path) {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![0i64, 1, 2])),
        Arc::new(StringArray::from(TYPES.to_vec())),
        Arc::new(UInt64Array::from(vec![4u64; 3])),
    ];
    write_table(path, "vocabulary", &producer(), cols, HashMap::new()).unwrap();
}

fn write_predictions(path: &Path, method: &str, k: usize, ids: &[u64], predicted: &[i64]) {
    let n = ids.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(predicted.to_vec())),
        Arc::new(Int64Array::from(vec![k as i64; n])),
        Arc::new(StringArray::from(vec![method; n])),
    ];
    let meta = HashMap::from([(
        "remind.stream_position".to_string(),
        POSITIONS[k].to_string(),
    )]);
    write_table(path, "predictions", &producer(), cols, meta).unwrap();
}

/// A second seed's run of the same protocol: other correct counts for remind and offline.
const CORRECT_SEED1: [(&str, [[usize; 3]; 3]); 3] = [
    ("remind", [[4, 2, 2], [4, 4, 2], [2, 3, 3]]),
    ("finetune", [[4, 2, 2], [0, 4, 0], [0, 0, 3]]),
    ("offline", [[4, 2, 2], [4, 4, 3], [4, 4, 3]]),
];

/// Predictions with exactly `correct[t]` right answers of type t (the first ones), in
/// reverse id order for one method so the join cannot rely on row order.
fn make_stream(dir: &Path) {
    make_stream_of(dir, &CORRECT, 0);
}

/// [`make_stream`] with the correct counts `correct` and a plan drawn with `seed`.
fn make_stream_of(dir: &Path, correct: &[(&str, [[usize; 3]; 3]); 3], seed: u64) {
    for &(method, per_boundary) in correct {
        for (k, correct) in per_boundary.iter().enumerate() {
            let (mut ids, mut pred) = (vec![], vec![]);
            for i in 0..12 {
                let (id, t, a) = val_question(i);
                let right = i % 4 < correct[t as usize];
                ids.push(id);
                pred.push(if right { a } else { a + 1 });
            }
            if method == "finetune" {
                ids.reverse();
                pred.reverse();
            }
            let path = dir
                .join(method)
                .join(format!("predictions/boundary-{k:03}.parquet"));
            write_predictions(&path, method, k, &ids, &pred);
        }
    }
    let plan = StreamPlan {
        items: (0..120).collect(),
        boundaries: POSITIONS.to_vec(),
        segment_groups: vec![Some(0), Some(1), Some(2)],
        seen_classes: Vec::new(),
        positions_count_base: true,
        order: None,
        seed: None,
    }
    .drawn("qtype", seed);
    std::fs::write(dir.join("plan.json"), serde_json::to_vec(&plan).unwrap()).unwrap();
}

struct Expected {
    per_type: [[f64; 3]; 3],
    mpt: [f64; 3],
    overall: [f64; 3],
}

fn expected(method: &str) -> Expected {
    expected_of(&CORRECT, method)
}

fn expected_of(table: &[(&str, [[usize; 3]; 3]); 3], method: &str) -> Expected {
    let c = table.iter().find(|m| m.0 == method).unwrap().1;
    let per_type = c.map(|b| b.map(|n| n as f64 / 4.0));
    let mpt = per_type.map(|b| b.iter().sum::<f64>() / 3.0);
    let overall = c.map(|b| b.iter().sum::<usize>() as f64 / 12.0);
    Expected {
        per_type,
        mpt,
        overall,
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(found: &[f64], want: &[f64], what: &str) {
    assert_eq!(found.len(), want.len(), "{what}: {found:?} vs {want:?}");
    for (f, w) in found.iter().zip(want) {
        assert!(
            (f - w).abs() < 1e-12,
            "{what}: found {found:?}, expected {want:?}"
        );
    }
}

fn evaluate(dir: &Path, stream: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = stage("remind-evaluate");
    cmd.arg("--questions")
        .arg(dir.join("questions.parquet"))
        .arg("--question-types")
        .arg(dir.join("question_types.parquet"))
        .arg("--stream-dir")
        .arg(stream)
        .arg("--out")
        .arg(out)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .args(extra);
    cmd
}

fn setup(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    write_questions(&dir.join("questions.parquet"));
    write_types(&dir.join("question_types.parquet"));
    make_stream(&dir.join("stream"));
    dir
}

#[test]
fn scores_three_methods_exactly() {
    let dir = setup("evaluate_exact");
    let out = dir.join("metrics");
    let run = run_ok(&mut evaluate(&dir, &dir.join("stream"), &out, &[]));
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();

    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["question_types"], serde_json::json!(TYPES));
    let offline = expected("offline");
    for method in ["remind", "finetune", "offline"] {
        let e = expected(method);
        let r = &m[method];
        assert_eq!(r["boundaries"], serde_json::json!(POSITIONS), "{method}");
        assert_close(
            &floats(&r["mean_per_type"]),
            &e.mpt,
            &format!("{method} MPT"),
        );
        assert_close(
            &floats(&r["overall"]),
            &e.overall,
            &format!("{method} overall"),
        );
        for (t, name) in TYPES.iter().enumerate() {
            let want: Vec<f64> = e.per_type.iter().map(|b| b[t]).collect();
            assert_close(
                &floats(&r["per_type"][name]),
                &want,
                &format!("{method} {name}"),
            );
        }
        let omega = (0..3).map(|k| e.mpt[k] / offline.mpt[k]).sum::<f64>() / 3.0;
        assert_close(
            &[r["omega"].as_f64().unwrap()],
            &[omega],
            &format!("{method} Omega"),
        );
    }
    // Hand-computed: remind MPT 2/3, 2/3, 3/4; offline 2/3, 5/6, 11/12.
    assert!(
        (m["remind"]["omega"].as_f64().unwrap() - (1.0 + 0.8 + 9.0 / 11.0) / 3.0).abs() < 1e-12
    );
    assert!((m["finetune"]["mean_per_type"][2].as_f64().unwrap() - 0.25).abs() < 1e-15);
    assert_eq!(m["offline"]["omega"].as_f64(), Some(1.0));
    // Hand-made runs have no complete.json, so no compute figures: evaluate still scores
    // them, with the block null and a note saying why, in metrics.json and on stdout.
    for method in ["remind", "finetune", "offline"] {
        assert!(m[method]["compute"].is_null(), "{method}: {m}");
        let note = m[method]["compute_note"].as_str().unwrap();
        assert!(note.contains("complete.json"), "{note}");
        assert!(
            stdout.contains(&format!("note: {method}: compute figures missing")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("Compute ("), "{stdout}");

    // The Parquet table, seen from Python.
    let py = run_python(
        "import sys, json, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1])\n\
         rows = t.to_pylist()\n\
         meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}\n\
         print(json.dumps({'n': len(rows), 'kind': meta['remind.kind'], 'cols': t.column_names,\n\
             'rows': [r for r in rows if r['method'] == 'remind' and r['boundary'] == 1]}))",
        &[out.join("metrics.parquet").to_str().unwrap()],
    );
    let p: Value = serde_json::from_str(py.trim()).unwrap();
    // Per method and boundary MPT, overall and 3 types; per method at boundary -1 Omega,
    // average incremental accuracy, forgetting and backward transfer.
    assert_eq!(p["n"], 3 * 3 * (2 + 3) + 3 * 4);
    assert_eq!(p["kind"], "metrics");
    assert_eq!(
        p["cols"],
        serde_json::json!(["method", "boundary", "position", "metric", "value"])
    );
    let remind = expected("remind");
    let rows: HashMap<String, (u64, f64)> = p["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"].as_str().unwrap().to_string(),
                (
                    r["position"].as_u64().unwrap(),
                    r["value"].as_f64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows["mean_per_type"].0, 80);
    assert_close(&[rows["mean_per_type"].1], &[remind.mpt[1]], "parquet MPT");
    assert_close(
        &[rows["overall"].1],
        &[remind.overall[1]],
        "parquet overall",
    );
    assert_close(&[rows["type:query_attribute"].1], &[0.25], "parquet type");

    // The continual-learning metrics with question types as experiences, learnt in segments
    // 0, 1, 2 (hand-computed from CORRECT; a type's score before it is learnt is not
    // forgotten): remind R = [1 .5 .5; .75 1 .25; .75 .75 .75].
    assert_eq!(m["experiences"], serde_json::json!(TYPES));
    assert_eq!(m["learnt_at_boundary"], serde_json::json!([0, 1, 2]));
    assert_eq!(
        m["remind"]["accuracy_matrix"],
        serde_json::json!([[1.0, 0.5, 0.5], [0.75, 1.0, 0.25], [0.75, 0.75, 0.75]])
    );
    for (method, avg_inc, forgetting, bwt) in [
        ("remind", (1.0 + 0.875 + 0.75) / 3.0, 0.25, -0.25),
        ("finetune", (1.0 + 0.5 + 0.25) / 3.0, 1.0, -1.0),
        ("offline", (1.0 + 1.0 + 2.75 / 3.0) / 3.0, 0.0, 0.0),
    ] {
        let r = &m[method];
        assert_close(
            &[
                r["average_incremental_accuracy"].as_f64().unwrap(),
                r["forgetting"].as_f64().unwrap(),
                r["backward_transfer"].as_f64().unwrap(),
            ],
            &[avg_inc, forgetting, bwt],
            &format!("{method} continual-learning metrics"),
        );
    }
    // metrics.csv, Avalanche's eval_results.csv columns: every type at every boundary.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "method,eval_exp,training_exp,eval_accuracy,forgetting"
    );
    assert_eq!(lines.len(), 1 + 3 * 9, "{csv}");
    assert!(lines.contains(&"remind,0,2,0.750000,0.250000"), "{csv}");
    assert!(lines.contains(&"remind,2,0,0.500000,"), "{csv}");

    // The plot, PNG and SVG: room for the main chart and three type charts, the methods in
    // the legend, each segment named by the question type learned in it, one chart per type.
    plot_check::check_figure(
        &out,
        "metrics",
        &[
            "remind",
            "finetune",
            "offline",
            "count",
            "exist",
            "query_attribute",
            "type: query_attribute",
        ],
        1000..=3000,
        700..=3000,
    );
    // The accuracy matrix's heatmap: a map per method, rows and columns named by type.
    plot_check::check_figure(
        &out,
        "metrics_matrix",
        &[
            "remind",
            "finetune",
            "offline",
            "count",
            "after learning type",
            "75.0",
        ],
        600..=4000,
        300..=3000,
    );
    for needle in ["avg_inc (learnt types)", "forgetting", "backward transfer"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }

    // The printed tables: MPT per boundary, Omega, per type at the final boundary.
    for needle in [
        "Omega (vs offline)",
        "66.67",
        "83.33",
        "91.67",
        "0.873",
        "query_attribute",
        "mean per type",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let final_row = stdout
        .lines()
        .find(|l| l.starts_with("query_attribute"))
        .unwrap();
    assert!(final_row.contains("75.00"), "{final_row}");
    let b1 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(
        b1.contains("exist")
            && b1.contains("66.67")
            && b1.contains("33.33")
            && b1.contains("83.33"),
        "{b1}"
    );

    let manifest = std::fs::read_to_string(dir.join("run/manifest.json")).unwrap();
    assert!(
        manifest.contains("metrics.parquet") && manifest.contains("\"evaluate\""),
        "{manifest}"
    );
}

/// Two seeds' runs evaluated together: each written alone under seeds/seed-N/, their mean
/// and spread at the output folder (Parquet, JSON, CSV, table, plot with min-max bars);
/// the same run twice, runs of different protocols refused; a later single-run evaluation
/// into the folder removes the seeds' folders.
#[test]
fn several_seeds_give_mean_and_spread() {
    let dir = setup("evaluate_seeds");
    let (s0, s1) = (dir.join("stream"), dir.join("stream-seed1"));
    make_stream_of(&s1, &CORRECT_SEED1, 1);
    let out = dir.join("metrics");
    let run = run_ok(&mut evaluate(
        &dir,
        &s0,
        &out,
        &["--stream-dir", s1.to_str().unwrap()],
    ));
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let (a, b) = (expected("remind"), expected_of(&CORRECT_SEED1, "remind"));
    let mean: Vec<f64> = (0..3).map(|k| (a.mpt[k] + b.mpt[k]) / 2.0).collect();
    // Sample std of two values: |a - b| / sqrt(2).
    let std: Vec<f64> = (0..3)
        .map(|k| (a.mpt[k] - b.mpt[k]).abs() / 2f64.sqrt())
        .collect();
    assert!(std[1] > 0.1 && std[0] == 0.0, "{std:?}");

    // Each run alone, as a single evaluation writes it.
    for (label, e) in [("seed-0", &a), ("seed-1", &b)] {
        let m: Value = serde_json::from_slice(
            &std::fs::read(out.join("seeds").join(label).join("metrics.json")).unwrap(),
        )
        .unwrap();
        assert_close(&floats(&m["remind"]["mean_per_type"]), &e.mpt, label);
        assert!(out.join("seeds").join(label).join("metrics.svg").exists());
    }
    // The mean in metrics.json at the same places, the std beside it under "seeds".
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_close(&floats(&m["remind"]["mean_per_type"]), &mean, "mean MPT");
    assert_eq!(m["remind"]["boundaries"], serde_json::json!(POSITIONS));
    assert_eq!(
        m["seeds"]["labels"],
        serde_json::json!(["seed-0", "seed-1"])
    );
    assert_close(
        &floats(&m["seeds"]["std"]["remind"]["mean_per_type"]),
        &std,
        "std MPT",
    );
    // Long format with the spread columns.
    let py = run_python(
        "import sys, json, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1])\n\
         print(json.dumps({'cols': t.column_names, 'rows': [r for r in t.to_pylist()\n\
             if r['method'] == 'remind' and r['metric'] == 'mean_per_type']}))",
        &[out.join("metrics.parquet").to_str().unwrap()],
    );
    let p: Value = serde_json::from_str(py.trim()).unwrap();
    assert_eq!(
        p["cols"],
        serde_json::json!([
            "method", "boundary", "position", "metric", "value", "std", "min", "max", "runs"
        ])
    );
    for r in p["rows"].as_array().unwrap() {
        let k = r["boundary"].as_u64().unwrap() as usize;
        assert_close(
            &[
                r["value"].as_f64().unwrap(),
                r["std"].as_f64().unwrap(),
                r["min"].as_f64().unwrap(),
                r["max"].as_f64().unwrap(),
            ],
            &[
                mean[k],
                std[k],
                a.mpt[k].min(b.mpt[k]),
                a.mpt[k].max(b.mpt[k]),
            ],
            &format!("parquet boundary {k}"),
        );
        assert_eq!(r["runs"], 2);
    }
    // The CSV's mean accuracy: remind's type 0 after boundary 2 is 3/4 and 2/4.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(csv.contains("remind,0,2,0.625000,"), "{csv}");
    // The printed table: mean ± std per boundary; the plot's title says how many runs.
    assert!(
        stdout.contains("over 2 runs (seed-0, seed-1)") && stdout.contains("75.00 ± 11.79"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(out.join("metrics.svg")).unwrap();
    assert!(svg.contains("mean of 2 runs"), "plot title");
    plot_check::check_figure(
        &out,
        "metrics",
        &["remind", "offline"],
        1000..=3000,
        700..=3000,
    );

    // The same run twice, and a run of another protocol (a method missing), are refused
    // with nothing written.
    let bad = dir.join("bad");
    let err = run_fail(&mut evaluate(
        &dir,
        &s0,
        &bad,
        &["--stream-dir", s0.to_str().unwrap()],
    ));
    assert!(err.contains("is given twice"), "{err}");
    // A copy of a run (same seed), and a folder that does not exist.
    let copy = dir.join("stream-copy");
    make_stream_of(&copy, &CORRECT, 0);
    let err = run_fail(&mut evaluate(
        &dir,
        &s0,
        &bad,
        &["--stream-dir", copy.to_str().unwrap()],
    ));
    assert!(err.contains("both drawn with seed 0"), "{err}");
    let err = run_fail(&mut evaluate(
        &dir,
        &s0,
        &bad,
        &["--stream-dir", dir.join("nowhere").to_str().unwrap()],
    ));
    assert!(err.contains("nowhere: no such folder"), "{err}");
    let other = dir.join("stream-other");
    make_stream_of(&other, &CORRECT_SEED1, 2);
    std::fs::remove_dir_all(other.join("finetune")).unwrap();
    let err = run_fail(&mut evaluate(
        &dir,
        &s0,
        &bad,
        &["--stream-dir", other.to_str().unwrap()],
    ));
    assert!(
        err.contains("seeds of one protocol") && err.contains("missing there: [\"finetune\"]"),
        "{err}"
    );
    assert!(!bad.join("metrics.json").exists());

    // One run evaluated into the folder again: the seeds' folders go.
    run_ok(&mut evaluate(&dir, &s0, &out, &[]));
    assert!(!out.join("seeds").exists());
}

#[test]
fn omega_needs_the_offline_method() {
    let dir = setup("evaluate_no_offline");
    let out = dir.join("metrics");
    run_ok(&mut evaluate(
        &dir,
        &dir.join("stream"),
        &out,
        &["--methods", "remind,finetune"],
    ));
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert!(m["remind"]["omega"].is_null());
    assert!(m["remind"]["omega_note"]
        .as_str()
        .unwrap()
        .contains("offline"));
    assert!(m.get("offline").is_none());
    assert_close(
        &floats(&m["finetune"]["mean_per_type"]),
        &expected("finetune").mpt,
        "finetune MPT",
    );
}

#[test]
fn unknown_question_id_is_refused() {
    let dir = setup("evaluate_unknown_id");
    let bad = dir.join("stream/remind/predictions/boundary-001.parquet");
    let ids: Vec<u64> = (100..111).chain([2]).collect();
    write_predictions(&bad, "remind", 1, &ids, &[0; 12]);
    let err = run_fail(&mut evaluate(
        &dir,
        &dir.join("stream"),
        &dir.join("metrics"),
        &[],
    ));
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("question id 2 "),
        "{err}"
    );
    assert!(!dir.join("metrics/metrics.json").exists());
}

#[test]
fn missing_boundary_is_refused_unless_partial() {
    let dir = setup("evaluate_missing");
    let stream = dir.join("stream");
    std::fs::remove_file(stream.join("finetune/predictions/boundary-002.parquet")).unwrap();
    let out = dir.join("metrics");
    let err = run_fail(&mut evaluate(&dir, &stream, &out, &[]));
    assert!(
        err.contains("'finetune'")
            && err.contains("boundary-002.parquet")
            && err.contains("--allow-partial"),
        "{err}"
    );

    let run = run_ok(&mut evaluate(&dir, &stream, &out, &["--allow-partial"]));
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["finetune"]["boundaries"], serde_json::json!([40, 80]));
    let (f, o) = (expected("finetune"), expected("offline"));
    let omega = (f.mpt[0] / o.mpt[0] + f.mpt[1] / o.mpt[1]) / 2.0;
    assert_close(
        &[m["finetune"]["omega"].as_f64().unwrap()],
        &[omega],
        "partial Omega",
    );
    assert!(m["finetune"]["omega_note"]
        .as_str()
        .unwrap()
        .contains("0, 1"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("lacks boundaries 2"), "{stdout}");
}

/// Question tables as Polars writes them (large string and list types, zstd) score the
/// same; one rewritten without this project's metadata is refused with the way to keep it.
#[test]
fn tables_rewritten_by_polars_score_the_same() {
    let dir = setup("evaluate_polars");
    let ours = dir.join("metrics");
    run_ok(&mut evaluate(&dir, &dir.join("stream"), &ours, &[]));
    let polars = dir.join("polars");
    std::fs::create_dir_all(&polars).unwrap();
    run_python(
        "import sys, shutil, polars as pl, pyarrow.parquet as pq\n\
         src, dst = sys.argv[1], sys.argv[2]\n\
         for name in ['questions', 'question_types']:\n\
         \x20   f = f'{src}/{name}.parquet'\n\
         \x20   md = {k.decode(): v.decode() for k, v in pq.read_schema(f).metadata.items() if k.startswith(b'remind.')}\n\
         \x20   pl.read_parquet(f).write_parquet(f'{dst}/{name}.parquet', metadata=md)\n\
         pl.read_parquet(f'{src}/questions.parquet').write_parquet(f'{dst}/bare.parquet')\n\
         print(pq.read_schema(f'{dst}/questions.parquet'))",
        &[dir.to_str().unwrap(), polars.to_str().unwrap()],
    );
    let theirs = dir.join("metrics-polars");
    run_ok(&mut evaluate(&polars, &dir.join("stream"), &theirs, &[]));
    let mpt = |out: &Path| {
        let m: Value =
            serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
        (
            m["remind"]["mean_per_type"].clone(),
            m["offline"]["per_type"].clone(),
        )
    };
    assert_eq!(mpt(&theirs), mpt(&ours));
    let bare = dir.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::rename(polars.join("bare.parquet"), bare.join("questions.parquet")).unwrap();
    let types = "question_types.parquet";
    std::fs::copy(polars.join(types), bare.join(types)).unwrap();
    let mut cmd = evaluate(&bare, &dir.join("stream"), &dir.join("metrics-bare"), &[]);
    let err = run_fail(&mut cmd);
    assert!(
        err.contains("questions.parquet: field 'remind.kind'")
            && err.contains("replace_schema_metadata"),
        "{err}"
    );
}
