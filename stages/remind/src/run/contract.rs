//! The stage contract: a stage runs only when what it reads changed, and says why.
//!
//! Every stage declares a [`Contract`]: its config section(s) as typed, default-filled
//! values, the parameters that shape its outputs, its inputs (paths, digested by content:
//! [`crate::artifact::digest`]) and its outputs. The **fingerprint** is the SHA-256 of the
//! stage name, the `remind` version, those values and the inputs' digests, never of times.
//! After a run, [`Contract::record`] stores the fingerprint and its basis in the run
//! manifest beside every output. Before a run, [`Contract::check`] compares: when every
//! output exists with the same fingerprint the stage is **up to date** and exits at once
//! (its outputs' modification times are brought forward, so `make` stops asking); otherwise
//! it runs and says which output is missing, which key or input changed (as Snakemake's
//! `--list-changes` and DVC's `status` do). `--force` runs regardless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::digest::Digester;
use crate::artifact::manifest::{now_secs, Manifest, ManifestEntry};
use crate::artifact::weights::sha256_hex;
use crate::artifact::Producer;
use crate::run::Shard;

/// What a fingerprint is made of (stored in the manifest, to say later what changed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    pub stage: String,
    pub version: String,
    /// Config section name -> its normalised values (defaults filled, flags laid over).
    pub config: BTreeMap<String, Value>,
    /// Other parameters that shape the outputs (method, shard, source kind).
    pub params: BTreeMap<String, Value>,
    /// Input role -> path and content digest.
    pub inputs: BTreeMap<String, InputDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDigest {
    pub path: String,
    pub digest: String,
}

impl Basis {
    /// The fingerprint: SHA-256 of the canonical JSON of everything but the inputs' paths
    /// (a run folder moved elsewhere stays up to date).
    pub fn fingerprint(&self) -> String {
        let inputs: BTreeMap<&str, &str> = self
            .inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.digest.as_str()))
            .collect();
        let canonical = serde_json::json!({
            "stage": self.stage,
            "version": self.version,
            "config": self.config,
            "params": self.params,
            "inputs": inputs,
        });
        sha256_hex(canonical.to_string().as_bytes())
    }
}

/// A stage's declaration of what it reads and writes; see the module docs.
pub struct Contract {
    run_dir: PathBuf,
    basis: Basis,
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<PathBuf>,
    /// Why the stage runs regardless of its outputs (None: it runs only when stale).
    force: Option<String>,
    log: String,
    /// Held from [`Contract::check`] to the end of the run: one writer per output set.
    lock: Option<std::fs::File>,
}

/// What [`Contract::check`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    UpToDate,
    /// The stage must run, for this reason.
    Run(String),
}

impl Contract {
    /// The contract of stage `stage` (`fit-pq`) whose manifest is in `run_dir`.
    pub fn new(stage: &str, run_dir: &Path) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
            basis: Basis {
                stage: stage.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
            inputs: Vec::new(),
            outputs: Vec::new(),
            force: None,
            log: format!("remind-{stage}"),
            lock: None,
        }
    }

    /// Adds config section `section` as the stage reads it (typed, defaults filled).
    pub fn config(mut self, section: &str, value: &impl Serialize) -> Result<Self> {
        let v = serde_json::to_value(value)
            .with_context(|| format!("cannot represent config section '{section}'"))?;
        self.basis.config.insert(section.into(), v);
        Ok(self)
    }

    /// Adds a parameter that shapes the outputs.
    pub fn param(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.basis.params.insert(key.into(), v);
        self
    }

    /// Adds an input file or folder under role `role` (`codebook`, `features`).
    pub fn input(mut self, role: &str, path: &Path) -> Self {
        self.inputs.push((role.into(), path.to_path_buf()));
        self
    }

    /// Adds an optional input.
    pub fn input_opt(self, role: &str, path: Option<&Path>) -> Self {
        match path {
            Some(p) => self.input(role, p),
            None => self,
        }
    }

    /// Adds an output file (or folder) the stage writes.
    pub fn output(mut self, path: &Path) -> Self {
        self.outputs.push(path.to_path_buf());
        self
    }

    /// With `force`, [`Contract::check`] always says run.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force.then(|| "--force was given".to_string());
        self
    }

    /// Runs whatever the outputs hold, saying `reason` (e.g. "--resume-from was given").
    pub fn forced_by(mut self, reason: &str) -> Self {
        self.force = Some(reason.to_string());
        self
    }

    /// The fingerprint (valid after [`Contract::check`], which digests the inputs).
    pub fn fingerprint(&self) -> String {
        self.basis.fingerprint()
    }

    /// The digest of the inputs alone, role by role (valid after [`Contract::check`]).
    pub fn inputs_digest(&self) -> String {
        let inputs: BTreeMap<&str, &str> = self
            .basis
            .inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.digest.as_str()))
            .collect();
        sha256_hex(serde_json::json!(inputs).to_string().as_bytes())
    }

    /// Digests the inputs, then compares with what the manifest recorded for the outputs;
    /// prints the verdict (`up to date`, or why the stage runs). An input that cannot be
    /// read makes the stage run, so that its own reader names what is wrong.
    pub fn check(&mut self) -> Result<Status> {
        self.refuse_overlaps()?;
        self.refuse_unwritable()?;
        self.refuse_foreign_outputs()?;
        self.path_free_config();
        self.lock_outputs()?;
        let mut digester = Digester::new(Some(&self.run_dir));
        let mut unreadable = None;
        for (role, path) in &self.inputs {
            let digest = match digester.digest(path) {
                Ok(d) => d,
                // The stage itself reads it next and says what is wrong, in its own terms.
                Err(e) => {
                    unreadable.get_or_insert(format!(
                        "input {role} ({}) cannot be read: {e:#}",
                        path.display()
                    ));
                    continue;
                }
            };
            self.basis.inputs.insert(
                role.clone(),
                InputDigest {
                    path: path.display().to_string(),
                    digest,
                },
            );
        }
        digester.save();
        let status = match unreadable {
            Some(why) => Status::Run(why),
            None => self.verdict()?,
        };
        match &status {
            Status::UpToDate => {
                for out in &self.outputs {
                    bring_forward(out);
                }
                eprintln!(
                    "{}: up to date: {} (inputs and config unchanged, fingerprint {}); --force runs it again",
                    self.log,
                    self.outputs_shown(),
                    &self.fingerprint()[..12]
                );
            }
            // An unreadable input: the stage's own error says it, better than this would.
            Status::Run(_) if self.basis.inputs.len() < self.inputs.len() => {}
            Status::Run(why) => eprintln!("{}: runs because {why}", self.log),
        }
        Ok(status)
    }

    /// Replaces every config value naming a declared input, an output or an output's
    /// folder by `"<path>"`: inputs count by content and outputs by where they are, so the
    /// same paths spelled otherwise (relative, through `..`) or a moved input folder keep a
    /// stage up to date, as the inputs' paths already do for flags.
    fn path_free_config(&mut self) {
        let inputs: Vec<PathBuf> = self.inputs.iter().map(|(_, p)| resolved(p)).collect();
        let outputs: Vec<PathBuf> = self.outputs.iter().map(|p| resolved(p)).collect();
        let names_one = |s: &str| {
            if s.is_empty() {
                return false;
            }
            let p = resolved(Path::new(s));
            inputs.contains(&p)
                || outputs
                    .iter()
                    .any(|o| o.starts_with(&p) && p.parent().is_some())
        };
        for section in self.basis.config.values_mut() {
            let Value::Object(map) = section else {
                continue;
            };
            for value in map.values_mut() {
                if value.as_str().is_some_and(names_one) {
                    *value = Value::String("<path>".into());
                }
            }
        }
    }

    /// Refuses an output that is an input, lies inside an input dataset folder or is a
    /// folder holding an input: the stage would remove or rewrite what it is about to read
    /// (`extract-codes --out` naming its features folder emptied it). An output inside a
    /// source folder of raw files (IDX, images) is allowed: its reader takes named files.
    fn refuse_overlaps(&self) -> Result<()> {
        for out in &self.outputs {
            let o = resolved(out);
            for (role, input) in &self.inputs {
                let i = resolved(input);
                let how = if o == i {
                    "is"
                } else if o.starts_with(&i) && holds_parts(&i) {
                    "lies inside"
                } else if i.starts_with(&o) {
                    "holds"
                } else {
                    continue;
                };
                anyhow::bail!(
                    "{}: this output {how} the input {role} ({}): a stage never writes where it \
                     reads; give another output path",
                    out.display(),
                    input.display()
                );
            }
            // Any other dataset folder: only its own parts may go there (pyarrow, Polars
            // and DuckDB read every file of the folder as a part).
            let is_part = o
                .file_name()
                .is_some_and(|n| Shard::from_part_name(&n.to_string_lossy()).is_some());
            let skip = if is_part { 2 } else { 1 };
            if let Some(folder) = o.ancestors().skip(skip).find(|a| holds_parts(a)) {
                anyhow::bail!(
                    "{}: this output lies inside the dataset folder {}, which holds only its \
                     parts (tools read every file in it as one data set); give another output \
                     path",
                    out.display(),
                    folder.display()
                );
            }
        }
        Ok(())
    }

    /// Refuses, before any work, a run whose results could not be saved: an output file
    /// path that is a folder, or a run folder or output folder that cannot be written (a
    /// read-only mount was found only after the whole computation).
    fn refuse_unwritable(&self) -> Result<()> {
        const FILE_KINDS: [&str; 5] = ["arrow", "parquet", "json", "safetensors", "csv"];
        for out in &self.outputs {
            let file_like = out
                .extension()
                .is_some_and(|e| FILE_KINDS.contains(&e.to_string_lossy().as_ref()));
            anyhow::ensure!(
                !(file_like && out.is_dir()),
                "{}: is a folder, but this output is a file: give a file path (e.g. {})",
                out.display(),
                out.join(out.file_name().unwrap_or_default()).display()
            );
        }
        let parents = self.outputs.iter().filter_map(|o| o.parent());
        for dir in std::iter::once(self.run_dir.as_path()).chain(parents) {
            // The nearest folder that exists: the stage makes the rest.
            let mut existing = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            while !existing.exists() && existing.pop() {}
            let probe = existing.join(format!(".remind-write-probe.{}", std::process::id()));
            match std::fs::File::create(&probe) {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => anyhow::bail!(
                    "{}: cannot write there ({}: {e}); nothing was computed: give a writable path",
                    dir.display(),
                    existing.display()
                ),
            }
        }
        Ok(())
    }

    /// Refuses to replace an output that another stage made (a features dataset named as
    /// `extract-codes --out`): it is not a stale result of this stage but someone else's
    /// artifact. Known by the run manifest, or by the file's own producer record (a tensor
    /// file made under another run folder).
    fn refuse_foreign_outputs(&self) -> Result<()> {
        let manifest = Manifest::load(&self.run_dir)?;
        let stage = &self.basis.stage;
        for out in self.outputs.iter().filter(|o| o.is_file()) {
            let by_manifest = manifest
                .get(&self.run_dir, out)
                .and_then(|e| e.basis.as_ref())
                .map(|b| b.stage.clone());
            let by_file = crate::artifact::TensorFile::read_producer(out)
                .ok()
                .map(|p| p.stage);
            if let Some(other) = by_manifest.or(by_file).filter(|o| o != stage) {
                anyhow::bail!(
                    "{}: made by stage {other}, not {stage}: refusing to replace another \
                     stage's output; give another output path, or remove it first",
                    out.display()
                );
            }
        }
        Ok(())
    }

    /// Takes the lock of the output set, waiting for a concurrent writer of the same
    /// outputs on this machine, whatever its run folder, to finish: that one then wins
    /// whole, and this one finds its result up to date or writes a whole set after it, never
    /// a mix. The lock file is `<temp dir>/remind-locks/<hash of the first output's absolute
    /// path>`, so a refused run leaves nothing at its destination. (Writers on other nodes
    /// of a cluster are kept apart by the atomic renames and the readers' checks instead.)
    fn lock_outputs(&mut self) -> Result<()> {
        let Some(first) = self.outputs.first() else {
            return Ok(());
        };
        if self.lock.is_some() {
            return Ok(());
        }
        let dir = std::env::temp_dir().join("remind-locks");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        let absolute = std::path::absolute(first).unwrap_or_else(|_| first.clone());
        let path = dir.join(&sha256_hex(absolute.to_string_lossy().as_bytes())[..24]);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!(
                "{}: waiting for another writer of {} to finish",
                self.log,
                first.display()
            );
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        self.lock = Some(file);
        Ok(())
    }

    /// [`Contract::check`] as a yes/no: whether the stage may exit at once.
    pub fn up_to_date(&mut self) -> Result<bool> {
        Ok(self.check()? == Status::UpToDate)
    }

    /// Removes the outputs that exist (files), for a stage that would otherwise keep an
    /// existing part it takes for finished; called after [`Contract::check`] said run.
    pub fn remove_outputs(&self) -> Result<()> {
        for o in &self.outputs {
            if o.is_file() {
                std::fs::remove_file(o)
                    .with_context(|| format!("cannot remove the stale {}", o.display()))?;
            }
        }
        Ok(())
    }

    fn outputs_shown(&self) -> String {
        let shown: Vec<String> = self
            .outputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        shown.join(", ")
    }

    fn verdict(&self) -> Result<Status> {
        if let Some(reason) = &self.force {
            return Ok(Status::Run(reason.clone()));
        }
        let Some(first) = self.outputs.first() else {
            return Ok(Status::Run("it declares no output".into()));
        };
        if !self.outputs.iter().any(|o| o.exists()) {
            return Ok(Status::Run(format!(
                "there is no output yet ({})",
                first.display()
            )));
        }
        if let Some(missing) = self.outputs.iter().find(|o| !o.exists()) {
            return Ok(Status::Run(format!("{} is missing", missing.display())));
        }
        let manifest = Manifest::load(&self.run_dir)?;
        let now = self.fingerprint();
        for out in &self.outputs {
            let recorded = manifest.get(&self.run_dir, out);
            let Some((fp, basis)) =
                recorded.and_then(|e| e.fingerprint.as_ref().zip(e.basis.as_ref()))
            else {
                return Ok(Status::Run(format!(
                    "{} has no fingerprint in {}",
                    out.display(),
                    self.run_dir
                        .join(crate::artifact::manifest::MANIFEST_FILE)
                        .display()
                )));
            };
            if *fp != now {
                return Ok(Status::Run(format!(
                    "{} is stale: {}",
                    out.display(),
                    changes(basis, &self.basis).join("; ")
                )));
            }
        }
        Ok(Status::UpToDate)
    }

    /// Records every output in the manifest with the fingerprint and its basis.
    pub fn record(&self, producer: &Producer) -> Result<()> {
        let fingerprint = self.fingerprint();
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|(_, p)| p.display().to_string())
            .collect();
        for out in &self.outputs {
            let entry = ManifestEntry {
                stage: producer.stage.clone(),
                version: producer.version.clone(),
                config_hash: producer.config_hash.clone(),
                inputs: inputs.clone(),
                completed_at: now_secs(),
                fingerprint: Some(fingerprint.clone()),
                basis: Some(self.basis.clone()),
            };
            if let Err(e) = Manifest::record(&self.run_dir, out, entry) {
                // Nothing unrecorded stays under a final name: the next run redoes it.
                for o in &self.outputs {
                    let _ = std::fs::remove_file(o);
                }
                return Err(e.context(format!(
                    "cannot record {} in the run manifest; its outputs were removed",
                    out.display()
                )));
            }
        }
        Ok(())
    }
}

/// Moves `path`'s modification time to now (best effort): an output found up to date is as
/// new as its inputs, so `make` does not ask again.
fn bring_forward(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// What differs between the `old` and `new` bases, in words (`fit_pq.iterations: 10 -> 12`).
pub fn changes(old: &Basis, new: &Basis) -> Vec<String> {
    let mut out = Vec::new();
    if old.stage != new.stage {
        out.push(format!("made by stage {}, not {}", old.stage, new.stage));
    }
    if old.version != new.version {
        out.push(format!("remind version {} -> {}", old.version, new.version));
    }
    let mut keys = Vec::new();
    for (section, v) in &new.config {
        diff_values(section, old.config.get(section), Some(v), &mut keys);
    }
    for (section, v) in &old.config {
        if !new.config.contains_key(section) {
            diff_values(section, Some(v), None, &mut keys);
        }
    }
    for (k, v) in &new.params {
        diff_values(k, old.params.get(k), Some(v), &mut keys);
    }
    for (k, v) in &old.params {
        if !new.params.contains_key(k) {
            diff_values(k, Some(v), None, &mut keys);
        }
    }
    out.extend(keys);
    for (role, now) in &new.inputs {
        match old.inputs.get(role) {
            None => out.push(format!("input {role} ({}) is new", now.path)),
            Some(was) if was.digest != now.digest => {
                out.push(format!("input {role} ({}) changed", now.path))
            }
            Some(_) => {}
        }
    }
    for (role, was) in &old.inputs {
        if !new.inputs.contains_key(role) {
            out.push(format!("input {role} ({}) is no longer read", was.path));
        }
    }
    if out.is_empty() {
        out.push("its fingerprint differs".into());
    }
    out
}

/// Whether `dir` is a dataset folder: it holds part files (`part-KKKKK-of-NNNNN.arrow`).
fn holds_parts(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| Shard::from_part_name(&e.file_name().to_string_lossy()).is_some())
    })
}

/// `p` as the file system resolves it: absolute, symbolic links followed as far as the
/// path exists (an output not made yet resolves through its existing parent); the rest
/// normalised by its names (`x/../feat` is `feat`).
fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut abs = PathBuf::new();
    for c in std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .components()
    {
        match c {
            Component::ParentDir => {
                abs.pop();
            }
            Component::CurDir => {}
            other => abs.push(other),
        }
    }
    let mut head = abs.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = head.canonicalize() {
            return tail.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

/// `key: old -> new` for every leaf (dotted path from the root) where `new` differs from
/// `old`: what a user changed between two configurations.
pub fn value_differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_values("", Some(old), Some(new), &mut out);
    out.into_iter()
        .map(|d| d.strip_prefix('.').map(str::to_string).unwrap_or(d))
        .collect()
}

/// Appends `key: old -> new` for every leaf that differs.
fn diff_values(key: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (k, v) in b {
                diff_values(&format!("{key}.{k}"), a.get(k), Some(v), out);
            }
            for (k, v) in a {
                if !b.contains_key(k) {
                    diff_values(&format!("{key}.{k}"), Some(v), None, out);
                }
            }
        }
        (a, b) if a != b => {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            out.push(format!("{key}: {} -> {}", show(a), show(b)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Pq {
        iterations: usize,
        nbits: u32,
    }

    fn contract(dir: &Path, iterations: usize, input: &Path, out: &Path) -> Contract {
        Contract::new("fit-pq", dir)
            .config(
                "fit_pq",
                &Pq {
                    iterations,
                    nbits: 8,
                },
            )
            .unwrap()
            .input("features", input)
            .output(out)
    }

    #[test]
    fn up_to_date_until_a_key_or_an_input_changes() {
        let dir = std::env::temp_dir().join(format!("remind-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (input, out) = (dir.join("features.arrow"), dir.join("codebook.arrow"));
        std::fs::write(&input, b"features").unwrap();
        let mut c = contract(&dir, 10, &input, &out);
        assert!(matches!(c.check().unwrap(), Status::Run(w) if w.contains("no output yet")));
        std::fs::write(&out, b"codebook").unwrap();
        // An output nobody recorded is not trusted.
        assert!(matches!(c.check().unwrap(), Status::Run(w) if w.contains("no fingerprint")));
        c.record(&Producer::new("fit-pq", "h")).unwrap();
        assert_eq!(c.check().unwrap(), Status::UpToDate);
        // Each contract holds the output set's lock until dropped, as a stage process does.
        drop(c);
        assert_eq!(
            contract(&dir, 10, &input, &out).check().unwrap(),
            Status::UpToDate
        );
        assert!(matches!(
            contract(&dir, 10, &input, &out).force(true).check().unwrap(),
            Status::Run(w) if w.contains("--force")
        ));
        let key = contract(&dir, 12, &input, &out).check().unwrap();
        assert_eq!(
            key,
            Status::Run(format!(
                "{} is stale: fit_pq.iterations: 10 -> 12",
                out.display()
            ))
        );
        std::fs::write(&input, b"other features").unwrap();
        let Status::Run(why) = contract(&dir, 10, &input, &out).check().unwrap() else {
            panic!("a changed input must re-run");
        };
        assert!(
            why.contains("input features") && why.contains("changed"),
            "{why}"
        );
        std::fs::remove_file(&out).unwrap();
        let Status::Run(why) = contract(&dir, 10, &input, &out).check().unwrap() else {
            panic!("a deleted output must re-run");
        };
        assert!(why.contains("no output yet"), "{why}");
        let Status::Run(why) = contract(&dir, 10, &dir.join("absent"), &out)
            .check()
            .unwrap()
        else {
            panic!("a missing input must leave the stage to say what is wrong");
        };
        assert!(
            why.contains("input features") && why.contains("absent"),
            "{why}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_in_the_config_count_by_what_they_name_not_their_spelling() {
        let dir = std::env::temp_dir().join(format!("remind-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("x")).unwrap();
        let (input, out) = (dir.join("features.arrow"), dir.join("pq/codebook.arrow"));
        std::fs::write(&input, b"features").unwrap();
        let with = |features: &Path, pq: &Path, iterations: u32| {
            let section = serde_json::json!({
                "features": features, "out": pq, "arch": "resnet18", "iterations": iterations
            });
            Contract::new("fit-pq", &dir)
                .config("fit_pq", &section)
                .unwrap()
                .input("features", &input)
                .output(&out)
        };
        let mut c = with(&input, &dir.join("pq"), 10);
        assert!(matches!(c.check().unwrap(), Status::Run(_)));
        std::fs::create_dir_all(dir.join("pq")).unwrap();
        std::fs::write(&out, b"codebook").unwrap();
        c.record(&Producer::new("fit-pq", "h")).unwrap();
        drop(c);
        let respelled = (dir.join("x/../features.arrow"), dir.join("x/../pq"));
        assert_eq!(
            with(&respelled.0, &respelled.1, 10).check().unwrap(),
            Status::UpToDate
        );
        // A value that is not one of the stage's paths still counts.
        assert_eq!(
            with(&input, &dir.join("pq"), 11).check().unwrap(),
            Status::Run(format!(
                "{} is stale: fit_pq.iterations: 10 -> 11",
                out.display()
            ))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_over_inputs_or_another_stages_output_are_refused() {
        let dir = std::env::temp_dir().join(format!("remind-overlap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let feats = dir.join("feat");
        std::fs::create_dir_all(&feats).unwrap();
        let part = feats.join("part-00000-of-00001.arrow");
        std::fs::write(&part, b"features").unwrap();
        let err = |c: &mut Contract| format!("{:#}", c.check().unwrap_err());
        // Inside the input folder, spelled through `..`; the input itself; a folder
        // holding the input.
        let e = err(&mut contract(
            &dir,
            1,
            &feats,
            &dir.join("x/../feat/cb.arrow"),
        ));
        assert!(
            e.contains("this output lies inside the input features"),
            "{e}"
        );
        let e = err(&mut contract(&dir, 1, &part, &part));
        assert!(e.contains("this output is the input features"), "{e}");
        let e = err(&mut contract(&dir, 1, &part, &dir));
        assert!(e.contains("this output holds the input features"), "{e}");
        assert!(std::fs::read(&part).unwrap() == b"features");
        // Inside a dataset folder that is not an input; a part of it stays allowed.
        let e = err(&mut contract(
            &dir,
            1,
            &dir.join("raw"),
            &feats.join("st/done.json"),
        ));
        assert!(e.contains("lies inside the dataset folder"), "{e}");
        let mut c = contract(
            &dir,
            1,
            &dir.join("raw"),
            &feats.join("part-00000-of-00002.arrow"),
        );
        assert!(matches!(c.check().unwrap(), Status::Run(_)));
        drop(c);
        // Inside a folder of raw files (an IDX source) is allowed.
        let raw = dir.join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        std::fs::write(raw.join("train-images-idx3-ubyte"), b"idx").unwrap();
        let mut c = contract(&dir, 1, &raw, &raw.join("out/labels.parquet"));
        assert!(matches!(c.check().unwrap(), Status::Run(_)));
        drop(c);

        // An output another stage recorded is not replaced, even with --force.
        let other = dir.join("other.arrow");
        std::fs::write(&other, b"labels").unwrap();
        Contract::new("import-images", &dir)
            .output(&other)
            .record(&Producer::new("import-images", "h"))
            .unwrap();
        // An output file path that is a folder; a run folder under a file.
        let folder = dir.join("cb.arrow");
        std::fs::create_dir_all(&folder).unwrap();
        let e = err(&mut contract(&dir, 1, &part, &folder));
        assert!(
            e.contains("cb.arrow: is a folder, but this output is a file"),
            "{e}"
        );
        let e = err(&mut contract(
            &part.join("run"),
            1,
            &part,
            &dir.join("x.arrow"),
        ));
        assert!(
            e.contains("cannot write there") && e.contains("nothing was computed"),
            "{e}"
        );
        let e = err(&mut contract(&dir, 1, &part, &other).force(true));
        assert!(
            e.contains("made by stage import-images, not fit-pq") && e.contains("remove it first"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
