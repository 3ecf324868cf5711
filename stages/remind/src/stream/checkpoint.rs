//! Checkpoints at evaluation boundaries: `<method>/boundary-<k>/` holding the model's and
//! optimiser's tensors (safetensors), the replay buffer (Arrow IPC) and `state.json` (stream
//! position, RNG position, config hash). A checkpoint is assembled in a hidden folder and
//! renamed into place, so an interrupted write never looks complete.
//!
//! A checkpoint proves itself: `state.json` records the SHA-256 of every other file of the
//! folder, and `state.sha256` the SHA-256 of `state.json`; reading a checkpoint verifies
//! both and refuses, naming the file, one that was altered (issue #12).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::layout::{checkpoint_index, MethodDir};
use crate::artifact::atomic::{write_bytes, TEMP_PREFIX};
use crate::artifact::weights::{file_sha256, sha256_hex};

/// The file beside `state.json` holding its SHA-256 (hex).
const STATE_DIGEST: &str = "state.sha256";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub method: String,
    /// Index of the boundary this checkpoint was taken at.
    pub boundary: usize,
    /// Stream position (items consumed) at the checkpoint.
    pub position: usize,
    /// Hash of the stream configuration; a resume under another config is refused.
    pub config_hash: String,
    /// The configuration hashed, by key (absent from checkpoints of older versions): a
    /// refusal names the keys that differ, not only the hashes.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
    /// Word position of the stream's ChaCha RNG.
    pub rng_word_pos: u128,
    /// Learning-rate counters (per class; classification) or empty.
    #[serde(default)]
    pub counters: Vec<u64>,
    /// SHA-256 (hex) of every other file of the checkpoint folder, by name; filled in by
    /// [`write_checkpoint`], verified by [`read_state`].
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// Writes a checkpoint: `fill` writes the tensor files into the folder it is given.
pub fn write_checkpoint(
    method_dir: &Path,
    state: &CheckpointState,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = MethodDir::at(method_dir).checkpoint(state.boundary);
    let tmp = method_dir.join(format!(
        "{TEMP_PREFIX}boundary-{:03}.{}",
        state.boundary,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| {
        fill(&tmp)?;
        let mut state = state.clone();
        state.files = digests(&tmp)?;
        let json = serde_json::to_vec_pretty(&state)?;
        write_bytes(&tmp.join("state.json"), &json)?;
        write_bytes(&tmp.join(STATE_DIGEST), sha256_hex(&json).as_bytes())?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir)
                .with_context(|| format!("cannot replace {}", final_dir.display()))?;
        }
        fs::rename(&tmp, &final_dir)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), final_dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(final_dir)
}

/// The latest complete checkpoint of a method, if any.
pub fn latest_checkpoint(method_dir: &Path) -> Result<Option<(PathBuf, CheckpointState)>> {
    let Ok(entries) = fs::read_dir(method_dir) else {
        return Ok(None);
    };
    let mut best: Option<(usize, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(k) = checkpoint_index(&name) {
            if best.as_ref().is_none_or(|(b, _)| k > *b) {
                best = Some((k, e.path()));
            }
        }
    }
    match best {
        None => Ok(None),
        Some((_, dir)) => Ok(Some((dir.clone(), read_state(&dir)?))),
    }
}

/// SHA-256 (hex) of each file of `dir` but the state's own two.
fn digests(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "state.json" && name != STATE_DIGEST && e.file_type()?.is_file() {
            out.insert(name, file_sha256(&e.path())?);
        }
    }
    Ok(out)
}

/// Reads `state.json` of a checkpoint folder after verifying it against `state.sha256` and
/// every file it lists against its recorded SHA-256; a file altered, missing or added since
/// the checkpoint was written is named in the error.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let p = path.display();
    let bytes = fs::read(&path).with_context(|| format!("cannot read {p}"))?;
    let digest_path = dir.join(STATE_DIGEST);
    let recorded = fs::read_to_string(&digest_path).with_context(|| {
        format!(
            "cannot read {}: the checkpoint's state is not verifiable (written by an older \
             remind-rs, or altered); start afresh without --resume",
            digest_path.display()
        )
    })?;
    let found = sha256_hex(&bytes);
    ensure!(
        recorded.trim() == found,
        "{p}: SHA-256 {found}, but {} records {}: the checkpoint's state was altered; refusing \
         to resume from it",
        digest_path.display(),
        recorded.trim()
    );
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{p}: not a valid checkpoint state"))?;
    let on_disk = digests(dir)?;
    for (name, want) in &state.files {
        match on_disk.get(name) {
            None => bail!(
                "{}: missing from the checkpoint (state.json lists it); refusing to resume",
                dir.join(name).display()
            ),
            Some(have) if have != want => bail!(
                "{}: SHA-256 {have}, but state.json records {want}: the file was altered since \
                 the checkpoint was written; refusing to resume from it",
                dir.join(name).display()
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = on_disk.keys().find(|n| !state.files.contains_key(*n)) {
        bail!(
            "{}: not part of the checkpoint as written (state.json does not list it); refusing \
             to resume",
            dir.join(extra).display()
        );
    }
    Ok(state)
}

/// What differs between the configuration `state` was made under and `config` (this run's,
/// hashed as `config_hash`): the keys with both values where the checkpoint records its
/// configuration, the two hashes otherwise; `None` when nothing differs.
pub fn config_change(
    state: &CheckpointState,
    config_hash: &str,
    config: &serde_json::Value,
) -> Option<String> {
    if state.config_hash == config_hash {
        return None;
    }
    let keys = match state.config {
        serde_json::Value::Null => Vec::new(),
        ref was => crate::run::contract::value_differences(was, config),
    };
    Some(match keys.as_slice() {
        [] => format!("config hash {} -> {config_hash}", state.config_hash),
        _ => keys.join(", "),
    })
}

/// Refuses a checkpoint made under another configuration, naming what changed.
pub fn check_config(
    dir: &Path,
    state: &CheckpointState,
    config_hash: &str,
    config: &serde_json::Value,
) -> Result<()> {
    if let Some(change) = config_change(state, config_hash, config) {
        bail!(
            "{}: checkpoint made under another configuration ({change}; checkpoint -> this \
             run): resuming is refused (--restart-stale starts afresh; or use a fresh output \
             folder)",
            dir.display()
        );
    }
    Ok(())
}

/// Accepts `found` (a checkpoint of `method_dir`) for a run whose config hash is `hash`.
/// With `restart_stale`, a checkpoint made under another configuration makes the whole
/// method folder go (the run starts afresh: what `make` wants after a config change);
/// without it, such a checkpoint is refused.
pub fn accept_checkpoint(
    method_dir: &Path,
    found: Option<(PathBuf, CheckpointState)>,
    hash: &str,
    config: &serde_json::Value,
    restart_stale: bool,
) -> Result<Option<(PathBuf, CheckpointState)>> {
    let Some((dir, state)) = found else {
        return Ok(None);
    };
    if let (true, Some(change)) = (restart_stale, config_change(&state, hash, config)) {
        eprintln!(
            "stream-train: {} was made under another configuration ({change}); starting afresh",
            method_dir.display()
        );
        fs::remove_dir_all(method_dir)
            .with_context(|| format!("cannot remove {}", method_dir.display()))?;
        return Ok(None);
    }
    check_config(&dir, &state, hash, config)?;
    Ok(Some((dir, state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altered_checkpoint_files_are_named() {
        let dir = std::env::temp_dir().join(format!("remind-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let state = CheckpointState {
            method: "remind".into(),
            boundary: 2,
            position: 40,
            config_hash: "abc".into(),
            config: serde_json::json!({"stream": {"lr": 0.1, "seed": 3}}),
            rng_word_pos: 7,
            counters: vec![1, 2],
            files: BTreeMap::new(),
        };
        let ckpt = write_checkpoint(&dir, &state, |d| {
            fs::write(d.join("model.safetensors"), b"weights")?;
            fs::write(d.join("buffer.arrow"), b"buffer")?;
            Ok(())
        })
        .unwrap();
        let read = read_state(&ckpt).unwrap();
        assert_eq!(read.files.len(), 2);
        assert_eq!((read.position, read.counters.clone()), (40, vec![1, 2]));
        let err = |d: &Path| format!("{:#}", read_state(d).unwrap_err());

        fs::write(ckpt.join("model.safetensors"), b"weightz").unwrap();
        let e = err(&ckpt);
        assert!(
            e.contains("model.safetensors: SHA-256") && e.contains("altered"),
            "{e}"
        );
        fs::write(ckpt.join("model.safetensors"), b"weights").unwrap();
        read_state(&ckpt).unwrap();

        let json = fs::read_to_string(ckpt.join("state.json")).unwrap();
        fs::write(ckpt.join("state.json"), json.replace("40", "41")).unwrap();
        let e = err(&ckpt);
        assert!(
            e.contains("state.json: SHA-256") && e.contains("state was altered"),
            "{e}"
        );
        fs::write(ckpt.join("state.json"), json).unwrap();

        fs::remove_file(ckpt.join("buffer.arrow")).unwrap();
        assert!(err(&ckpt).contains("buffer.arrow: missing from the checkpoint"));
        fs::remove_file(ckpt.join(STATE_DIGEST)).unwrap();
        assert!(err(&ckpt).contains("not verifiable"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_resume_names_the_keys_that_changed() {
        let state = CheckpointState {
            method: "remind".into(),
            boundary: 1,
            position: 10,
            config_hash: "abc".into(),
            config: serde_json::json!({"stream": {"lr": 0.1, "seed": 3}, "codebook": "c1"}),
            rng_word_pos: 0,
            counters: vec![],
            files: BTreeMap::new(),
        };
        let now = serde_json::json!({"stream": {"lr": 0.2, "seed": 3}, "codebook": "c1"});
        assert_eq!(config_change(&state, "abc", &now), None);
        let e = check_config(Path::new("ck"), &state, "def", &now)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another configuration (stream.lr: 0.1 -> 0.2; checkpoint -> this run)"),
            "{e}"
        );
        // A checkpoint of an older version, without its configuration: the hashes.
        let old = CheckpointState {
            config: serde_json::Value::Null,
            ..state
        };
        let e = check_config(Path::new("ck"), &old, "def", &now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("config hash abc -> def"), "{e}");
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("\"config\""), "{json}");
        assert_eq!(serde_json::from_str::<CheckpointState>(&json).unwrap(), old);
    }
}
