//! The run manifest: `<run_dir>/manifest.json` records, for every artifact of a run, the
//! stage, version and config hash that made it and the inputs it was made from. Stages
//! running concurrently (shards) serialise updates through a lock file.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::atomic::write_bytes;

pub const MANIFEST_FILE: &str = "manifest.json";

/// One artifact's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub stage: String,
    pub version: String,
    pub config_hash: String,
    pub inputs: Vec<String>,
    /// Seconds since the Unix epoch when the artifact was completed.
    pub completed_at: u64,
    /// The stage's fingerprint when it made the artifact ([`crate::run::contract`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// What the fingerprint was made of, to say later what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<crate::run::contract::Basis>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub artifacts: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Reads `<run_dir>/manifest.json` (empty when absent).
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a valid manifest", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Records `artifact` (a path; stored relative to `run_dir` when inside it).
    pub fn record(run_dir: &Path, artifact: &Path, entry: ManifestEntry) -> Result<()> {
        fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let lock_path = run_dir.join(".manifest.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut manifest = Self::load(run_dir)?;
        manifest
            .artifacts
            .insert(relative_key(run_dir, artifact), entry);
        let text = serde_json::to_vec_pretty(&manifest)?;
        write_bytes(&run_dir.join(MANIFEST_FILE), &text)?;
        Ok(()) // the lock is released when `lock` is dropped
    }

    pub fn get(&self, run_dir: &Path, artifact: &Path) -> Option<&ManifestEntry> {
        self.artifacts.get(&relative_key(run_dir, artifact))
    }
}

fn relative_key(run_dir: &Path, artifact: &Path) -> String {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (root, art) = (canon(run_dir), canon(artifact));
    art.strip_prefix(&root)
        .unwrap_or(&art)
        .to_string_lossy()
        .into_owned()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Records an artifact `path` made by `producer` from `inputs` in `run_dir`'s manifest.
pub fn record_output(
    run_dir: &Path,
    path: &Path,
    producer: &super::Producer,
    inputs: &[&Path],
) -> Result<()> {
    let entry = ManifestEntry {
        stage: producer.stage.clone(),
        version: producer.version.clone(),
        config_hash: producer.config_hash.clone(),
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        completed_at: now_secs(),
        fingerprint: None,
        basis: None,
    };
    Manifest::record(run_dir, path, entry)
}
