//! Every file name of a streaming run folder, in one place: `stream-train` writes them,
//! `evaluate` and the Slurm driver read them.
//!
//! ```text
//! <out>/plan.json                                the plan (items, boundaries)
//! <out>/<method>/complete.json                   written last: every boundary is done
//! <out>/<method>/boundary-KKK/                   checkpoint of evaluation point K
//!     model.safetensors optim.safetensors [buffer.arrow] state.json
//! <out>/<method>/predictions/boundary-KKK.parquet   VQA: predicted answers at K
//! <out>/<method>/probabilities/eval-KKK.arrow       classification: softmax outputs at K
//! ```

use std::path::{Path, PathBuf};

/// The folder of one streaming run (`stream-train --out`).
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The stream plan (`plan.json`).
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    /// The folder of one method (`remind`, `finetune`, `offline`).
    pub fn method(&self, method: &str) -> MethodDir {
        MethodDir {
            dir: self.root.join(method),
        }
    }
}

/// The folder of one method of a run.
#[derive(Debug, Clone)]
pub struct MethodDir {
    dir: PathBuf,
}

/// Prefix of checkpoint folders and VQA prediction files.
const BOUNDARY: &str = "boundary-";
/// Prefix of classification probability files.
const EVAL: &str = "eval-";

impl MethodDir {
    /// A method folder given by its path.
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// The completion marker, written after the last boundary.
    pub fn complete(&self) -> PathBuf {
        self.dir.join("complete.json")
    }
    /// The checkpoint folder of evaluation point `k`.
    pub fn checkpoint(&self, k: usize) -> PathBuf {
        self.dir.join(format!("{BOUNDARY}{k:03}"))
    }
    pub fn predictions_dir(&self) -> PathBuf {
        self.dir.join("predictions")
    }
    /// VQA: the predictions of evaluation point `k`.
    pub fn predictions(&self, k: usize) -> PathBuf {
        self.predictions_dir()
            .join(format!("{BOUNDARY}{k:03}.parquet"))
    }
    pub fn probabilities_dir(&self) -> PathBuf {
        self.dir.join("probabilities")
    }
    /// Classification: the class probabilities of evaluation point `k`.
    pub fn probabilities(&self, k: usize) -> PathBuf {
        self.probabilities_dir().join(format!("{EVAL}{k:03}.arrow"))
    }
}

/// The evaluation point a checkpoint folder name stands for (`boundary-012` -> 12).
pub fn checkpoint_index(name: &str) -> Option<usize> {
    digits(name.strip_prefix(BOUNDARY)?)
}

/// The evaluation point of a VQA predictions file name (`boundary-012.parquet` -> 12).
pub fn predictions_index(name: &str) -> Option<usize> {
    digits(name.strip_prefix(BOUNDARY)?.strip_suffix(".parquet")?)
}

/// The evaluation point of a probabilities file name (`eval-012.arrow` -> 12).
pub fn probabilities_index(name: &str) -> Option<usize> {
    digits(name.strip_prefix(EVAL)?.strip_suffix(".arrow")?)
}

fn digits(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let m = RunLayout::new(Path::new("s")).method("remind");
        assert_eq!(m.checkpoint(3), Path::new("s/remind/boundary-003"));
        assert_eq!(
            m.predictions(3),
            Path::new("s/remind/predictions/boundary-003.parquet")
        );
        assert_eq!(
            m.probabilities(12),
            Path::new("s/remind/probabilities/eval-012.arrow")
        );
        assert_eq!(checkpoint_index("boundary-1234"), Some(1234));
        assert_eq!(predictions_index("boundary-012.parquet"), Some(12));
        assert_eq!(predictions_index("boundary-.parquet"), None);
        assert_eq!(predictions_index("boundary-0x1.parquet"), None);
        assert_eq!(predictions_index("boundary-001.arrow"), None);
        assert_eq!(probabilities_index("eval-007.arrow"), Some(7));
        assert_eq!(probabilities_index("eval-7.parquet"), None);
    }
}
