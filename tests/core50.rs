//! CORe50 and the four stream orders end to end, every stage a real process on a tiny
//! mini-CORe50 (remind-generate-core50 in the release layout): the import's video columns
//! and base sessions; each order's plan (read from plan.json) has its defining property, is
//! the same for the same seed and differs for another; the three methods and evaluate on
//! the instance order; a killed instance-order run resumes to the same probabilities;
//! broken release layouts and an instance order on data without video columns refused,
//! naming the path or column, with nothing written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use remind_e2e::{
    kill_once_exists, probabilities, run_fail, run_ok, run_python, scratch, stage, ClassRun,
};

const CONFIG: &str = "
task: classification
import_images:
  seed: 0
train_classifier:
  arch: resnet18
  width: 8
  stem: small
  image_size: 16
  epochs: 4
  batch: 16
  lr: 0.05
  seed: 0
extract_features:
  arch: resnet18
  width: 8
  stem: small
  cut: layer4.0
  image_size: 16
  batch: 64
fit_pq:
  num_subspaces: 8
  nbits: 4
  seed: 1
classify_stream:
  cut: layer4.0
  increment: 3
  eval_every: 60
  replay: 4
  mixup_alpha: 0.1
  buffer_capacity: 100
  lr: { start: 0.05, end: 0.001, step: 10, decay_over: 28 }
  offline_epochs: 2
  offline_batch: 32
  offline_lr: 0.05
  eval_batch: 128
  seed: 2
";

const ORDERS: [&str; 4] = ["iid", "class_iid", "instance", "class_instance"];

type Run = ClassRun;

/// `remind-stream-train` of `method` in stream order `order` on `labels`.
fn train_on(run: &Run, labels: &Path, method: &str, order: &str, out: &Path) -> Command {
    let mut c = run.train_on(labels, method, out);
    c.args(["--order", order]);
    c
}

/// [`train_on`] the run's own label table.
fn train(run: &Run, method: &str, order: &str, out: &Path) -> Command {
    train_on(run, &run.p("data/labels.parquet"), method, order, out)
}

/// A tiny mini-CORe50: 10 categories of three objects, 11 sessions of 2 frames, 16 px.
fn generate(root: &Path) {
    run_ok(
        stage("remind-generate-core50")
            .arg("--out")
            .arg(root)
            .args(["--objects-per-category", "3", "--frames-per-session", "2"])
            .args(["--image-size", "16", "--seed", "3"]),
    );
}

/// Generates, imports, base-trains, extracts features and codes under `dir`.
fn prepare(dir: &Path) -> Run {
    let root = dir.join("core50_mini");
    generate(&root);
    let run = Run::new(dir, CONFIG);
    run_ok(
        run.cmd("remind-import-images")
            .arg("--core50")
            .arg(&root)
            .arg("--out")
            .arg(run.p("data")),
    );
    run.build_after_import(&root);
    run
}

/// One training row of the label table.
#[derive(Debug, Clone, Copy)]
struct Row {
    label: i64,
    instance: i64,
    session: i64,
    frame: i64,
    base: bool,
}

/// The training rows of `labels.parquet` in table order (the plan's item indices), and
/// the sessions of the validation rows.
fn read_labels(path: &Path) -> (Vec<Row>, Vec<i64>) {
    let out = run_python(
        "import json, sys, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1]).to_pydict()\n\
         print(json.dumps(t))",
        &[path.to_str().unwrap()],
    );
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let col = |c: &str| {
        t[c].as_array()
            .unwrap_or_else(|| panic!("no column {c}"))
            .clone()
    };
    let (split, label, inst, sess, frame, base) = (
        col("split"),
        col("label"),
        col("instance"),
        col("session"),
        col("frame"),
        col("base"),
    );
    let mut train = Vec::new();
    let mut val_sessions = Vec::new();
    for i in 0..split.len() {
        if split[i] == "train" {
            train.push(Row {
                label: label[i].as_i64().unwrap(),
                instance: inst[i].as_i64().unwrap(),
                session: sess[i].as_i64().unwrap(),
                frame: frame[i].as_i64().unwrap(),
                base: base[i].as_bool().unwrap(),
            });
        } else {
            assert!(
                !base[i].as_bool().unwrap(),
                "a test item is never a base item"
            );
            val_sessions.push(sess[i].as_i64().unwrap());
        }
    }
    (train, val_sessions)
}

/// Items and boundaries of a run's plan.json.
fn plan(out: &Path) -> (Vec<usize>, Vec<usize>) {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    let list = |k: &str| -> Vec<usize> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("plan.json has no {k}: {v}"))
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    (list("items"), list("boundaries"))
}

/// Runs of equal `key` along `items`.
fn runs<K: PartialEq + Copy>(items: &[usize], key: impl Fn(usize) -> K) -> Vec<K> {
    let mut out: Vec<K> = Vec::new();
    for &r in items {
        if out.last() != Some(&key(r)) {
            out.push(key(r));
        }
    }
    out
}

/// Asserts that every object's frames are one contiguous run in temporal order.
fn objects_contiguous_in_time(stream: &[usize], rows: &[Row]) {
    let objects = runs(stream, |r| rows[r].instance);
    let mut unique = objects.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        objects.len(),
        "an object's frames split: {objects:?}"
    );
    for w in stream.windows(2) {
        let (a, b) = (rows[w[0]], rows[w[1]]);
        if a.instance == b.instance {
            assert!(
                (a.session, a.frame) < (b.session, b.frame),
                "object {}: ({}, {}) streamed before ({}, {})",
                a.instance,
                a.session,
                a.frame,
                b.session,
                b.frame
            );
        }
    }
}

#[test]
fn core50_orders_stream_as_defined_evaluate_and_resume() {
    let dir = scratch("core50-orders");
    let run = prepare(&dir);

    // The import: the release's split, the base sessions, the video columns.
    let (rows, val_sessions) = read_labels(&run.p("data/labels.parquet"));
    let sessions: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.session).collect();
    assert_eq!(
        sessions.into_iter().collect::<Vec<_>>(),
        [1, 2, 4, 5, 6, 8, 9, 11]
    );
    let mut val: Vec<i64> = val_sessions.clone();
    val.sort_unstable();
    val.dedup();
    assert_eq!(val, [3, 7, 10]);
    assert_eq!(rows.len(), 30 * 8 * 2);
    assert_eq!(val_sessions.len(), 30 * 3 * 2);
    // The base set: the first object of every category (o1, o6, ...), every session.
    for r in &rows {
        assert_eq!(r.base, (r.instance - 1) % 5 == 0, "{r:?}");
    }
    let mut label_of_object: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &rows {
        assert_eq!(
            *label_of_object.entry(r.instance).or_insert(r.label),
            r.label
        );
    }
    assert_eq!(label_of_object.len(), 30);

    let stream = |items: &[usize]| -> Vec<usize> {
        items.iter().copied().filter(|&r| !rows[r].base).collect()
    };
    for order in ORDERS {
        let out = run.p(&format!("plans/{order}"));
        run_ok(&mut train(&run, "finetune", order, &out));
        let (items, boundaries) = plan(&out);
        // Every training item once, the base items first.
        let base_len = rows.iter().filter(|r| r.base).count();
        assert_eq!(boundaries[0], base_len, "{order}");
        assert!(items[..base_len].iter().all(|&r| rows[r].base), "{order}");
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..rows.len()).collect::<Vec<_>>(), "{order}");
        let s = stream(&items);
        let classes = runs(&s, |r| rows[r].label);
        match order {
            "iid" => {
                assert!(
                    classes.len() > 40,
                    "iid mixes classes: {} runs",
                    classes.len()
                );
                // A point every 60 streamed images (320 in all).
                let at: Vec<usize> = boundaries.iter().map(|b| b - base_len).collect();
                assert_eq!(at, [0, 60, 120, 180, 240, 300, 320]);
            }
            "class_iid" => {
                assert_eq!(classes, (0..10).collect::<Vec<i64>>());
                assert!(
                    runs(&s, |r| rows[r].session).len() > 10,
                    "shuffled within class"
                );
                // A point every 3 classes and after the last.
                assert_eq!(boundaries.len(), 1 + 4);
            }
            "instance" => objects_contiguous_in_time(&s, &rows),
            "class_instance" => {
                assert_eq!(classes, (0..10).collect::<Vec<i64>>());
                objects_contiguous_in_time(&s, &rows);
            }
            _ => unreachable!(),
        }
        // The same seed gives the same plan; another seed another.
        let again = run.p(&format!("plans/{order}-again"));
        run_ok(&mut train(&run, "finetune", order, &again));
        assert_eq!(plan(&again), (items.clone(), boundaries), "{order}");
        let other = run.p(&format!("plans/{order}-seed"));
        run_ok(train(&run, "finetune", order, &other).args(["--seed", "9"]));
        assert_ne!(plan(&other).0, items, "{order}: seed 9 = seed 2");
    }

    // The three methods and evaluate on the instance order.
    let out = run.p("stream-instance");
    for method in ["offline", "remind", "finetune"] {
        run_ok(&mut train(&run, method, "instance", &out));
    }
    run_ok(
        run.cmd("remind-evaluate")
            .args(["--task", "classification"])
            .arg("--labels")
            .arg(run.p("data/labels.parquet"))
            .arg("--stream-dir")
            .arg(&out)
            .arg("--out")
            .arg(run.p("eval-instance")),
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.p("eval-instance/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(m["order"], "instance", "{m}");
    assert_eq!(m["remind"]["images_streamed"][6], 320, "{m}");
    assert_eq!(
        m["remind"]["seen_classes"][1], 10,
        "every class is scored: {m}"
    );
    assert_eq!(m["offline"]["omega_all_top1"], 1.0);
    assert!(m["remind"]["omega_all_top1"].as_f64().unwrap() > 0.0, "{m}");

    // Kill a remind run once its second point is checkpointed, then resume.
    let killed = run.p("stream-killed");
    kill_once_exists(
        &mut train(&run, "remind", "instance", &killed),
        &killed.join("remind/boundary-001/state.json"),
        &killed.join("remind/complete.json"),
    );
    run_ok(train(&run, "remind", "instance", &killed).arg("--resume"));
    for k in 0..7 {
        assert_eq!(
            probabilities(&killed, "remind", k),
            probabilities(&out, "remind", k),
            "evaluation {k}: a resumed run must give the uninterrupted run's probabilities"
        );
    }

    // An instance order on a label table without the video columns.
    let bare = run.p("data-bare/labels.parquet");
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    run_python(
        "import sys, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1])\n\
         t = t.drop_columns(['instance', 'session', 'frame', 'base'])\n\
         meta = dict(t.schema.metadata)\n\
         meta[b'remind.base_classes'] = b'2'\n\
         pq.write_table(t.replace_schema_metadata(meta), sys.argv[2])",
        &[
            run.p("data/labels.parquet").to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    for order in ["instance", "class_instance"] {
        let out = run.p(&format!("bare-{order}"));
        let err = run_fail(&mut train_on(&run, &bare, "finetune", order, &out));
        assert!(
            err.contains("labels.parquet") && err.contains("\"instance\"") && err.contains(order),
            "{err}"
        );
        assert!(!out.join("plan.json").exists(), "{order}: nothing written");
    }
}

#[test]
fn broken_release_layouts_are_refused_by_path() {
    let dir = scratch("core50-bad");
    let root = dir.join("core50_mini");
    generate(&root);
    let import = |root: &Path, out: &Path| {
        let mut c = stage("remind-import-images");
        c.arg("--core50").arg(root).arg("--out").arg(out);
        c
    };
    // A copy of the release with one change, imported into a fresh folder.
    let case = |name: &str, change: &dyn Fn(&Path)| -> (String, PathBuf) {
        let copy = dir.join(name).join("root");
        std::fs::create_dir_all(dir.join(name)).unwrap();
        run_ok(Command::new("cp").arg("-r").arg(&root).arg(&copy));
        change(&copy);
        let out = dir.join(name).join("data");
        let err = run_fail(&mut import(&copy, &out));
        assert!(
            !out.join("labels.parquet").exists(),
            "{name}: nothing written"
        );
        (err, copy)
    };
    let (err, copy) = case("no-session", &|r| {
        std::fs::remove_dir_all(r.join("s4")).unwrap()
    });
    assert!(
        err.contains(&format!("{}", copy.join("s4").display())) && err.contains("missing session"),
        "{err}"
    );
    let (err, copy) = case("no-object", &|r| {
        std::fs::remove_dir_all(r.join("s7").join("o6")).unwrap()
    });
    assert!(
        err.contains(&format!("{}", copy.join("s7/o6").display())) && err.contains("object 6"),
        "{err}"
    );
    let (err, copy) = case("bad-name", &|r| {
        std::fs::rename(
            r.join("s2/o1/C_02_01_001.png"),
            r.join("s2/o1/C_02_01_1.png"),
        )
        .unwrap()
    });
    assert!(
        err.contains(&format!("{}", copy.join("s2/o1/C_02_01_1.png").display()))
            && err.contains("does not parse"),
        "{err}"
    );
    let (err, _) = case("wrong-folder", &|r| {
        std::fs::rename(
            r.join("s2/o1/C_02_01_001.png"),
            r.join("s2/o1/C_05_01_001.png"),
        )
        .unwrap()
    });
    assert!(
        err.contains("session 5") && err.contains("session 2"),
        "{err}"
    );
    // Sessions that overlap, or leave nothing to stream.
    let out = dir.join("sessions/data");
    let err = run_fail(import(&root, &out).args(["--test-sessions", "3,4"]));
    assert!(err.contains("[4]") && err.contains("both"), "{err}");
    let err = run_fail(import(&root, &out).args(["--base-sessions", "3"]));
    assert!(
        err.contains("base_sessions") && err.contains("[3]"),
        "{err}"
    );
    let err = run_fail(import(&root, &out).args(["--base-objects-per-category", "3"]));
    assert!(err.contains("nothing would stream"), "{err}");
    assert!(!out.join("labels.parquet").exists());

    // The release's file lists: only the listed frames, split as listed.
    let lists = dir.join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    let mut train = String::new();
    for s in [1, 2] {
        for o in [
            1, 2, 6, 7, 11, 12, 16, 17, 21, 22, 26, 27, 31, 32, 36, 37, 41, 42, 46, 47,
        ] {
            train.push_str(&format!("s{s}/o{o}/C_{s:02}_{o:02}_000.png 0\n"));
        }
    }
    std::fs::write(lists.join("train.txt"), &train).unwrap();
    std::fs::write(
        lists.join("test.txt"),
        "s3/o1/C_03_01_001.png 0\ns3/o6/C_03_06_001.png 1\n",
    )
    .unwrap();
    let listed = |train: &str, out: &Path| {
        let mut c = import(&root, out);
        c.arg("--train-list")
            .arg(lists.join(train))
            .arg("--test-list")
            .arg(lists.join("test.txt"));
        c
    };
    let out = dir.join("lists/data");
    run_ok(&mut listed("train.txt", &out));
    let (rows, val_sessions) = read_labels(&out.join("labels.parquet"));
    assert_eq!(rows.len(), 40);
    assert_eq!(val_sessions, [3, 3]);
    assert!(rows.iter().all(|r| r.frame == 0 && r.session <= 2));
    // A listed frame the release does not hold: the list and its line named.
    std::fs::write(
        lists.join("bad.txt"),
        format!("{train}s2/o1/C_02_01_099.png 0\n"),
    )
    .unwrap();
    let out = dir.join("lists/bad");
    let err = run_fail(&mut listed("bad.txt", &out));
    assert!(
        err.contains("bad.txt: line 41") && err.contains("C_02_01_099.png"),
        "{err}"
    );
    assert!(!out.join("labels.parquet").exists());
}
