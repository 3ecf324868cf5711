//! End to end: `make` on the tiny VQA chain re-runs exactly what a change makes stale
//! (issue #12, fingerprints and section stamps). Every assertion is on the stage commands
//! make actually ran (its echoed recipes) and on what the stages printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use remind_e2e::{bin_dir, scratch, stage, walk_files};

struct Chain {
    art: PathBuf,
    config: PathBuf,
}

/// What one `make` printed: the stage commands it ran and the stages' messages.
struct Ran {
    /// Stage name -> how many times it ran.
    stages: BTreeMap<String, usize>,
    log: String,
}

impl Ran {
    fn only(&self, expected: &[(&str, usize)]) {
        let want: BTreeMap<String, usize> =
            expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        assert_eq!(self.stages, want, "stage commands run:\n{}", self.log);
    }
}

impl Chain {
    fn new(name: &str) -> Self {
        let dir = scratch(name);
        let config = dir.join("clevr-tiny.yaml");
        std::fs::copy(repo().join("pipelines/clevr-tiny.yaml"), &config).unwrap();
        Self {
            art: dir.join("art"),
            config,
        }
    }

    fn make(&self, extra: &[&str]) -> Ran {
        let (ok, log) = self.make_raw(extra);
        assert!(ok, "make failed:\n{log}");
        Ran::from_log(&log)
    }

    /// Runs make; whether it succeeded, and its output.
    fn make_raw(&self, extra: &[&str]) -> (bool, String) {
        let out = Command::new("make")
            .current_dir(repo())
            .arg("clevr-tiny")
            .arg(format!("ART={}", self.art.display()))
            .arg(format!("CONFIG={}", self.config.display()))
            .arg(format!("BIN={}", bin_dir().display()))
            .args(["SETUP=", "QUIET=1", "STAGE_THREADS=1"])
            .args(extra)
            .output()
            .expect("make runs");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), log)
    }
}

impl Ran {
    fn from_log(log: &str) -> Ran {
        let mut stages = BTreeMap::new();
        for line in log.lines() {
            // Echoed recipes: `REMIND_QUIET=1 <bin>/remind-<stage> --config ...`.
            let Some(cmd) = line.strip_prefix("REMIND_QUIET=1 ") else {
                continue;
            };
            let bin = cmd.split_whitespace().next().unwrap_or("");
            let name = Path::new(bin).file_name().unwrap().to_string_lossy();
            let name = name.strip_prefix("remind-").unwrap_or(&name).to_string();
            *stages.entry(name).or_insert(0) += 1;
        }
        Ran {
            stages,
            log: log.to_string(),
        }
    }
}

impl Chain {
    fn run_dir(&self) -> PathBuf {
        self.art.join("clevr-tiny")
    }

    fn edit(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        // Editing within the same second as the last make must still look newer.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(&self.config, f(text)).unwrap();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn make_reruns_exactly_what_a_change_makes_stale() {
    let chain = Chain::new("make_contract");
    let first = chain.make(&[]);
    first.only(&[
        ("evaluate", 1),
        ("extract-codes", 2),
        ("extract-features", 2),
        ("fit-pq", 1),
        ("generate-clevr", 1),
        ("import-questions", 1),
        ("stream-train", 3),
        ("train-backbone", 1),
    ]);
    let metrics = chain.run_dir().join("metrics.json");
    let before = std::fs::read(&metrics).unwrap();

    // Nothing changed: nothing runs.
    chain.make(&[]).only(&[]);

    // SEEDS="0 1": every method streamed once per seed, the runs evaluated together; the
    // same again: nothing runs; without SEEDS: the single stream evaluated again (the
    // run's .seeds stamp changed), as before, and the seeds' folders gone.
    let ran = chain.make(&["SEEDS=0 1"]);
    ran.only(&[("evaluate", 1), ("stream-train", 6)]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert_eq!(
        m["seeds"]["labels"],
        serde_json::json!(["seed-0", "seed-1"])
    );
    assert!(
        m["seeds"]["std"]["remind"]["mean_per_type"].is_array(),
        "{m}"
    );
    let plan = |seed: u64| {
        let dir = chain.run_dir().join(format!("stream-seed-{seed}"));
        std::fs::read_to_string(dir.join("plan.json")).unwrap()
    };
    assert!(plan(1).contains("\"seed\":1") && plan(0) != plan(1));
    assert!(chain.run_dir().join("seeds/seed-1/metrics.svg").is_file());
    chain.make(&["SEEDS=0 1"]).only(&[]);
    chain.make(&[]).only(&[("evaluate", 1)]);
    assert_eq!(std::fs::read(&metrics).unwrap(), before);
    assert!(!chain.run_dir().join("seeds").exists());

    // A touch, then a comment: the config's sections are the same, nothing runs, and
    // `make -n` says so.
    chain.edit(|t| t);
    chain.make(&["-n"]).only(&[]);
    chain.make(&[]).only(&[]);
    chain.edit(|t| format!("# a comment\n{t}"));
    chain.make(&[]).only(&[]);
    // A typo in a later stage's section stops make before any stage runs (it would have
    // surfaced only when fit-pq ran), naming the section, the key and the fix; mended,
    // nothing runs.
    chain.edit(|t| t.replace("  num_subspaces:", "  num_subspace:"));
    let (ok, log) = chain.make_raw(&[]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("section 'fit_pq'") && log.contains("did you mean 'num_subspaces'"),
        "{log}"
    );
    assert!(log.contains("nothing was run"), "{log}");
    assert!(Ran::from_log(&log).stages.is_empty(), "{log}");
    chain.edit(|t| t.replace("  num_subspace:", "  num_subspaces:"));
    chain.make(&[]).only(&[]);

    // fit_pq.iterations: the codebook and what reads it, nothing upstream; `make -n` lists
    // the same commands first.
    chain.edit(|t| t.replace("  iterations: 10", "  iterations: 12"));
    let planned = chain.make(&["-n"]);
    let ran = chain.make(&[]);
    let expected = [
        ("evaluate", 1),
        ("extract-codes", 2),
        ("fit-pq", 1),
        ("stream-train", 3),
    ];
    planned.only(&expected);
    ran.only(&expected);
    assert!(
        ran.log.contains("runs because") && ran.log.contains("fit_pq.iterations: 10 -> 12"),
        "fit-pq says which key changed:\n{}",
        ran.log
    );

    // import_questions: new tables, so the streams restart (never resume) and the metrics
    // change.
    let before_import = std::fs::read(&metrics).unwrap();
    chain.edit(|t| format!("{t}\nimport_questions:\n  max_length: 8\n"));
    let ran = chain.make(&[]);
    ran.only(&[
        ("evaluate", 1),
        ("import-questions", 1),
        ("stream-train", 3),
    ]);
    assert!(
        !ran.log.contains("resumed from"),
        "a stream resumed:\n{}",
        ran.log
    );
    assert_eq!(
        ran.log.matches("starting afresh").count(),
        3,
        "every stream restarts:\n{}",
        ran.log
    );
    assert_ne!(std::fs::read(&metrics).unwrap(), before_import);
    assert_ne!(std::fs::read(&metrics).unwrap(), before);

    // A deleted codebook is rebuilt, and every stage after it is run again: each finds its
    // inputs' content unchanged (the fit is seeded) and says it is up to date.
    let codebook = chain.run_dir().join("pq/codebook.arrow");
    let old_codebook = std::fs::read(&codebook).unwrap();
    std::fs::remove_file(&codebook).unwrap();
    let ran = chain.make(&[]);
    ran.only(&[
        ("evaluate", 1),
        ("extract-codes", 2),
        ("fit-pq", 1),
        ("stream-train", 3),
    ]);
    assert_eq!(std::fs::read(&codebook).unwrap(), old_codebook);
    assert_eq!(
        ran.log.matches(": up to date: ").count(),
        6,
        "codes, streams and evaluate say they are up to date:\n{}",
        ran.log
    );
    chain.make(&[]).only(&[]);

    // A deleted features folder is rebuilt.
    std::fs::remove_dir_all(chain.run_dir().join("features/val")).unwrap();
    let ran = chain.make(&[]);
    assert_eq!(ran.stages.get("extract-features"), Some(&1), "{}", ran.log);
    assert!(chain
        .run_dir()
        .join("features/val/part-00000-of-00001.arrow")
        .is_file());

    // A stage run by hand on up-to-date outputs says so and changes nothing; --force runs it.
    let fit = |force: bool| {
        let mut cmd = stage("remind-fit-pq");
        cmd.arg("--config")
            .arg(&chain.config)
            .arg("--run-dir")
            .arg(chain.run_dir())
            .arg("--features")
            .arg(chain.run_dir().join("features/train"))
            .arg("--out")
            .arg(&codebook)
            .args(["--threads", "1"]);
        if force {
            cmd.arg("--force");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A stream-train that fails (here: it diverges at its first update) leaves nothing of
    // its own, and a previous complete set it was replacing stays as it was.
    let diverging = chain.config.with_file_name("diverging.yaml");
    std::fs::write(
        &diverging,
        std::fs::read_to_string(&chain.config)
            .unwrap()
            .replace("  lr: 0.003", "  lr: 1.0e30"),
    )
    .unwrap();
    let stream = |out: &Path, extra: &[&str]| {
        let r = chain.run_dir();
        let mut cmd = stage("remind-stream-train");
        cmd.arg("--config")
            .arg(&diverging)
            .arg("--run-dir")
            .arg(&r)
            .args(["--method", "remind", "--threads", "1"])
            .arg("--questions")
            .arg(r.join("questions"))
            .arg("--train-codes")
            .arg(r.join("codes/train"))
            .arg("--val-codes")
            .arg(r.join("codes/val"))
            .arg("--codebook")
            .arg(&codebook)
            .arg("--out")
            .arg(out)
            .args(extra);
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let fresh = chain.run_dir().join("stream-failed");
    let err = stream(&fresh, &[]);
    assert!(
        err.contains("diverged") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        !fresh.join("plan.json").exists() && !fresh.join("remind").exists(),
        "a failed attempt left files behind"
    );
    let previous = chain.run_dir().join("stream");
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<PathBuf> = walk_files(dir);
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(&f).unwrap();
                (f, bytes)
            })
            .collect()
    };
    let kept = snapshot(&previous);
    assert!(kept.len() > 10);
    let err = stream(&previous, &["--force"]);
    assert!(err.contains("diverged"), "{err}");
    assert!(snapshot(&previous) == kept, "the previous set was changed");

    // remind-artifact inspect reads weights and checkpoints too, checking a checkpoint's
    // digests.
    let inspect = |p: &Path| {
        stage("remind-artifact")
            .arg("inspect")
            .arg(p)
            .output()
            .unwrap()
    };
    let weights = chain.run_dir().join("backbone/weights.safetensors");
    let shown = String::from_utf8_lossy(&inspect(&weights).stdout).into_owned();
    assert!(
        shown.contains("kind: weights") && shown.contains("remind.arch = resnet18"),
        "{shown}"
    );
    let ckpt = previous.join("remind/boundary-002");
    let shown = String::from_utf8_lossy(&inspect(&ckpt).stdout).into_owned();
    assert!(
        shown.contains("evaluation point: 2") && shown.contains("model.safetensors: sha256"),
        "{shown}"
    );
    let copy = chain.run_dir().join("ckpt-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in walk_files(&ckpt) {
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let mut bytes = std::fs::read(copy.join("optim.safetensors")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(copy.join("optim.safetensors"), bytes).unwrap();
    let out = inspect(&copy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("optim.safetensors"),
        "{err}"
    );

    let said = fit(false);
    assert!(said.contains("remind-fit-pq: up to date"), "{said}");
    let said = fit(true);
    assert!(
        said.contains("runs because --force") && said.contains("codebooks x"),
        "{said}"
    );

    // Another CONFIG, older than the stamps (a copy with its time kept): the stamps follow
    // the config given, by content, not by modification time.
    let other = chain.config.with_file_name("other.yaml");
    let text = std::fs::read_to_string(&chain.config).unwrap();
    std::fs::write(&other, text.replace("  iterations: 12", "  iterations: 10")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let switched = Chain {
        art: chain.art.clone(),
        config: other,
    };
    let ran = switched.make(&[]);
    assert_eq!(ran.stages.get("fit-pq"), Some(&1), "{}", ran.log);
    assert!(
        ran.log.contains("fit_pq.iterations: 12 -> 10"),
        "{}",
        ran.log
    );
}
