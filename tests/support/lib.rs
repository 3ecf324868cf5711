//! Helpers for the end-to-end tests: locate the release binaries and the Python
//! environment, make scratch folders, run processes and check their exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Folder of the stage binaries (`REMIND_BIN_DIR`, set by the Makefile; else target/release).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("REMIND_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release"))
}

/// A command for stage binary `name`, quiet progress.
pub fn stage(name: &str) -> Command {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build with `make build` first",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.env("REMIND_QUIET", "1");
    cmd
}

/// The Python of the project's environment (`REMIND_PYTHON`, set by the Makefile).
pub fn python() -> Command {
    let py = std::env::var_os("REMIND_PYTHON").unwrap_or_else(|| "python3".into());
    Command::new(py)
}

/// A fresh scratch folder for one test, under target/e2e/.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Runs `cmd`, panicking with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, expecting a non-zero exit; returns its stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a Python snippet (argv after it in `args`), returning stdout; panics on failure.
pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = run_ok(python().arg("-c").arg(code).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Data, questions, features, codebook and codes of a tiny mini-CLEVR under `dir`: every
/// stage as a real process, as `make clevr-qtype` chains them, at test sizes (random
/// ResNet-18 of width 8, 64 px images, M=8, nbits=4): `data/`, `questions/`,
/// `features/{train,val}`, `codebook.arrow`, `codes/{train,val}`.
pub fn prepare_mini_clevr(dir: &Path) {
    let data = dir.join("data");
    run_ok(
        stage("remind-generate-clevr")
            .args(["--size", "tiny", "--seed", "5"])
            .arg("--out")
            .arg(&data)
            .arg("--run-dir")
            .arg(dir),
    );
    run_ok(
        stage("remind-import-questions")
            .arg("--clevr-dir")
            .arg(&data)
            .arg("--out")
            .arg(dir.join("questions"))
            .arg("--run-dir")
            .arg(dir),
    );
    let w = dir.join("bb.safetensors");
    init_test_backbone(&w);
    for split in ["train", "val"] {
        run_ok(
            stage("remind-extract-features")
                .args([
                    "--arch",
                    "resnet18",
                    "--width",
                    "8",
                    "--cut",
                    "layer3",
                    "--image-size",
                    "64",
                    "--id-from",
                    "clevr-filename",
                ])
                .arg("--images")
                .arg(data.join("images").join(split))
                .arg("--weights")
                .arg(&w)
                .arg("--out")
                .arg(dir.join("features").join(split))
                .arg("--run-dir")
                .arg(dir),
        );
    }
    let cb = dir.join("codebook.arrow");
    run_ok(
        stage("remind-fit-pq")
            .args(["--num-subspaces", "8", "--nbits", "4"])
            .arg("--features")
            .arg(dir.join("features/train"))
            .arg("--out")
            .arg(&cb)
            .arg("--run-dir")
            .arg(dir),
    );
    for split in ["train", "val"] {
        run_ok(
            stage("remind-extract-codes")
                .arg("--features")
                .arg(dir.join("features").join(split))
                .arg("--codebook")
                .arg(&cb)
                .arg("--out")
                .arg(dir.join("codes").join(split))
                .arg("--run-dir")
                .arg(dir),
        );
    }
}

/// Writes a randomly initialised ResNet-18 of width 8 (4 classes): the tests' backbone.
pub fn init_test_backbone(out: &Path) {
    run_ok(
        stage("remind-backbone")
            .args([
                "init",
                "--arch",
                "resnet18",
                "--width",
                "8",
                "--num-classes",
                "4",
            ])
            .arg("--out")
            .arg(out),
    );
}

/// `remind-stream-train` of `method` under config `cfg` on what [`prepare_mini_clevr`]
/// made in `dir` (one thread, CPU), into `out`.
pub fn mini_clevr_stream_cmd(dir: &Path, cfg: &Path, method: &str, out: &Path) -> Command {
    let mut c = stage("remind-stream-train");
    c.arg("--config")
        .arg(cfg)
        .arg("--run-dir")
        .arg(dir)
        .args(["--method", method, "--threads", "1", "--device", "cpu"])
        .arg("--questions")
        .arg(dir.join("questions"))
        .arg("--train-codes")
        .arg(dir.join("codes/train"))
        .arg("--val-codes")
        .arg(dir.join("codes/val"))
        .arg("--codebook")
        .arg(dir.join("codebook.arrow"))
        .arg("--out")
        .arg(out);
    c
}

/// Starts `cmd` (output discarded) and kills it as soon as `marker` exists (a checkpoint,
/// within 120 s), then checks that it had not finished: `done` must not exist yet. For the
/// kill-and-resume tests.
pub fn kill_once_exists(cmd: &mut Command, marker: &Path, done: &Path) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} did not appear",
            marker.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill the run");
    child.wait().expect("reap the run");
    assert!(
        !done.exists(),
        "the run finished before it was killed ({} exists)",
        done.display()
    );
}

/// An image-classification run folder of the tests, laid out as `make fashion-mnist`
/// lays it out: `data/` (the import), `base/weights.safetensors`, `features/`,
/// `pq/codebook.arrow`, `codes/`; every stage under config `cfg`.
pub struct ClassRun {
    pub dir: PathBuf,
    pub cfg: PathBuf,
}

impl ClassRun {
    /// A run in `dir` with `config` written to `dir/pipeline.yaml`.
    pub fn new(dir: &Path, config: &str) -> Self {
        let cfg = dir.join("pipeline.yaml");
        std::fs::write(&cfg, config).expect("write the config");
        Self {
            dir: dir.to_path_buf(),
            cfg,
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Stage `name` with `--config` and `--run-dir`.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = stage(name);
        c.arg("--config")
            .arg(&self.cfg)
            .arg("--run-dir")
            .arg(&self.dir);
        c
    }

    /// After the import into `data/`: base training, the features of every image under
    /// `images`, PQ on the base ids, the codes; one thread each.
    pub fn build_after_import(&self, images: &Path) {
        let weights = self.p("base/weights.safetensors");
        run_ok(&mut self.train_classifier(&weights));
        run_ok(
            self.cmd("remind-extract-features")
                .arg("--images")
                .arg(images)
                .arg("--weights")
                .arg(&weights)
                .args(["--id-from", "sorted", "--threads", "1"])
                .arg("--out")
                .arg(self.p("features")),
        );
        run_ok(
            self.cmd("remind-fit-pq")
                .arg("--features")
                .arg(self.p("features"))
                .arg("--ids")
                .arg(self.p("data/base_train.parquet"))
                .arg("--out")
                .arg(self.p("pq/codebook.arrow")),
        );
        run_ok(
            self.cmd("remind-extract-codes")
                .arg("--features")
                .arg(self.p("features"))
                .arg("--codebook")
                .arg(self.p("pq/codebook.arrow"))
                .arg("--out")
                .arg(self.p("codes")),
        );
    }

    /// `remind-train-classifier` on the run's label table into `out`, one thread.
    pub fn train_classifier(&self, out: &Path) -> Command {
        let mut c = self.cmd("remind-train-classifier");
        c.arg("--labels")
            .arg(self.p("data/labels.parquet"))
            .arg("--out")
            .arg(out)
            .args(["--threads", "1"]);
        c
    }

    /// `remind-stream-train` of `method` on the label table `labels` into `out`.
    pub fn train_on(&self, labels: &Path, method: &str, out: &Path) -> Command {
        let mut c = self.cmd("remind-stream-train");
        c.args(["--method", method, "--threads", "1"])
            .arg("--labels")
            .arg(labels)
            .arg("--codes")
            .arg(self.p("codes"))
            .arg("--codebook")
            .arg(self.p("pq/codebook.arrow"))
            .arg("--base-weights")
            .arg(self.p("base/weights.safetensors"))
            .arg("--out")
            .arg(out);
        c
    }

    /// [`train_on`](Self::train_on) the run's own label table.
    pub fn train(&self, method: &str, out: &Path) -> Command {
        self.train_on(&self.p("data/labels.parquet"), method, out)
    }
}

/// The bytes of `<out>/<method>/probabilities/eval-KKK.arrow` (classification point `k`).
pub fn probabilities(out: &Path, method: &str, k: usize) -> Vec<u8> {
    let path = out
        .join(method)
        .join(format!("probabilities/eval-{k:03}.arrow"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir` (recursively), sorted.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
