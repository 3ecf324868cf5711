//! Pipeline step 4: REMIND and its baselines over PQ codes (stage `remind-stream-train`).
//!
//! - [`driver`]: the one place that knows the order of a REMIND update, the evaluation
//!   points, checkpoints and resume, the divergence check and progress; each task plugs in
//!   through its [`Learner`].
//! - [`plan`]: stream orders and the one plan type (items, evaluation boundaries).
//! - [`layout`]: every file name of a run folder.
//! - [`checkpoint`]: checkpoint folders, written atomically, and their acceptance on resume.
//! - [`decode`]: PQ codes to feature maps, on the training device.
//! - [`divergence`]: the updates' losses checked for divergence (read in windows on a GPU).
//! - [`metrics`]: VQA accuracy (overall, per type, mean-per-type).
//! - [`overlap`]: an update's two halves on two threads (GPU streams, host-bound).
//! - [`offline`]: how long the offline baseline trains (fixed epochs, or to a plateau).
//! - [`compute`]: what a run's training cost (updates, wall time, FLOPs, memory), written
//!   into its `complete.json`.
//! - [`vqa`]: the VQA task (S-MAC / UpDown over CLEVR or TDIUC codes).
//! - [`classify`]: the class-incremental image-classification task (REMIND's ImageNet
//!   protocol: F over decoded maps, mixup, crops, per-class learning rates).

pub mod attempt;
pub mod checkpoint;
pub mod classify;
pub mod compute;
pub mod decode;
pub mod divergence;
pub mod driver;
pub mod layout;
pub mod metrics;
pub mod offline;
pub mod overlap;
pub mod plan;
pub mod vqa;

use serde::{Deserialize, Serialize};

pub use driver::{Learner, Net, Replay, Resume, Step, Update};

/// A streaming method (paper, section 4: REMIND against its lower bound, fine-tuning one
/// example at a time, and its upper bound, offline training on everything seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// One step on the new example plus r replayed ones, then the new one is stored.
    Remind,
    /// One step on the new example alone (no buffer).
    Finetune,
    /// At every evaluation point, a model trained from the start on everything seen.
    Offline,
}

named_enum!(Method, "method", {
    Remind => "remind",
    Finetune => "finetune",
    Offline => "offline",
});
