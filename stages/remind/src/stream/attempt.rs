//! One attempt of `stream-train` at a method: what it writes is kept only when it succeeds.
//!
//! A run that fails (bad input found at an update, a full disk at a checkpoint, divergence)
//! leaves the method folder as it found it: the checkpoints, predictions and `plan.json`
//! this attempt created are removed, and a previous set it was replacing (a fresh start over
//! an earlier run, or a restart over a stale one) is put back. A run that is killed cannot
//! clean up; its checkpoints stay, for `--resume`. Issue #12, "atomic sets".

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::layout::{MethodDir, RunLayout};

/// The attempt in progress; see the module docs.
pub struct Attempt {
    plan: PathBuf,
    plan_existed: bool,
    dir: PathBuf,
    dir_existed: bool,
    before: HashSet<PathBuf>,
    aside: PathBuf,
}

impl Attempt {
    /// Notes what exists before the attempt writes anything.
    pub fn begin(layout: &RunLayout, dir: &MethodDir) -> Result<Self> {
        let path = dir.path().to_path_buf();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let aside = layout.root().join(format!(".{name}.previous"));
        Ok(Self {
            plan: layout.plan(),
            plan_existed: layout.plan().exists(),
            dir_existed: path.exists(),
            before: entries(&path),
            dir: path,
            aside,
        })
    }

    /// Moves the method folder aside before a fresh start over it: put back if the attempt
    /// fails, removed when it succeeds.
    pub fn set_aside(&mut self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        if self.aside.exists() {
            // Left by an attempt that was killed: older than what the folder holds now.
            fs::remove_dir_all(&self.aside)
                .with_context(|| format!("cannot remove {}", self.aside.display()))?;
        }
        fs::rename(&self.dir, &self.aside).with_context(|| {
            format!(
                "cannot move {} aside to {}",
                self.dir.display(),
                self.aside.display()
            )
        })?;
        self.before.clear();
        Ok(())
    }

    /// The attempt succeeded: the set it replaced goes.
    pub fn finish(self) -> Result<()> {
        if self.aside.exists() {
            fs::remove_dir_all(&self.aside)
                .with_context(|| format!("cannot remove {}", self.aside.display()))?;
        }
        Ok(())
    }

    /// The attempt failed: removes what it created and puts back what it replaced (best
    /// effort; the error that made it fail is what the user needs to see).
    pub fn roll_back(self) {
        if self.aside.exists() {
            let _ = fs::remove_dir_all(&self.dir);
            let _ = fs::rename(&self.aside, &self.dir);
        } else if !self.dir_existed {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            let mut created: Vec<PathBuf> = entries(&self.dir)
                .into_iter()
                .filter(|p| !self.before.contains(p))
                .collect();
            // Children before their folders.
            created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for p in created {
                if p.is_dir() {
                    let _ = fs::remove_dir_all(&p);
                } else {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        if !self.plan_existed {
            let _ = fs::remove_file(&self.plan);
        }
    }
}

/// Every file and folder under `dir`.
fn entries(dir: &Path) -> HashSet<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .collect()
}
