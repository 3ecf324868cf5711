//! Checkpoints at evaluation boundaries: `<method>/boundary-<k>/` holding the model's and
//! optimiser's tensors (safetensors), the replay buffer (Arrow IPC) and `state.json` (stream
//! position, RNG position, config hash). A checkpoint is assembled in a hidden folder and
//! renamed into place, so an interrupted write never looks complete.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::layout::{checkpoint_index, MethodDir};
use crate::artifact::atomic::{write_bytes, TEMP_PREFIX};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub method: String,
    /// Index of the boundary this checkpoint was taken at.
    pub boundary: usize,
    /// Stream position (items consumed) at the checkpoint.
    pub position: usize,
    /// Hash of the stream configuration; a resume under another config is refused.
    pub config_hash: String,
    /// Word position of the stream's ChaCha RNG.
    pub rng_word_pos: u128,
    /// Learning-rate counters (per class; classification) or empty.
    #[serde(default)]
    pub counters: Vec<u64>,
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
        write_bytes(&tmp.join("state.json"), &serde_json::to_vec_pretty(state)?)?;
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

/// Reads `state.json` of a checkpoint folder.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a valid checkpoint state", path.display()))
}

/// Refuses a checkpoint made under another configuration.
pub fn check_config(dir: &Path, state: &CheckpointState, config_hash: &str) -> Result<()> {
    if state.config_hash != config_hash {
        bail!("{}: checkpoint made with config hash {}, this run has {}: resuming from a run with another \
               configuration is refused (use a fresh output folder)", dir.display(), state.config_hash, config_hash);
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
    restart_stale: bool,
) -> Result<Option<(PathBuf, CheckpointState)>> {
    let Some((dir, state)) = found else {
        return Ok(None);
    };
    if restart_stale && state.config_hash != hash {
        eprintln!(
            "stream-train: {} was made under another configuration; starting afresh",
            method_dir.display()
        );
        fs::remove_dir_all(method_dir)
            .with_context(|| format!("cannot remove {}", method_dir.display()))?;
        return Ok(None);
    }
    check_config(&dir, &state, hash)?;
    Ok(Some((dir, state)))
}
