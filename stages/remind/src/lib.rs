//! remind: the library behind the remind-rs stage binaries.
//!
//! - [`artifact`]: every artifact file, read and written (Arrow IPC tensors, Parquet tables,
//!   atomic writes, the run manifest).
//! - [`run`]: what stage runs share (pipeline configs, sharding, devices, progress).
//! - [`clevr`]: the mini-CLEVR data-set generator (images, questions, scenes).
//! - [`vqa_data`]: question import (CLEVR, TDIUC): tokens, vocabulary, answer table;
//!   gensen sentence features (HDF5 or .npy) per question.
//! - [`classify_data`]: image-classification import (IDX files such as Fashion-MNIST, or
//!   ImageNet-style folders): labels table, class order, base-initialisation split.
//! - [`models`]: networks (the ResNet backbone, split into G and F) and their weights.
//! - [`backbone_train`]: training the frozen backbone G on CLEVR scene annotations (the
//!   stand-in for ImageNet pre-training).
//! - [`features`]: feature extraction, images to feature maps through a frozen backbone.
//! - [`pq`]: product quantization (fit, encode, decode, faiss format).
//! - [`buffer`]: the replay buffer (codes, labels, class index, eviction, sampling).
//! - [`classify`]: image classification (label table, base initialisation, the
//!   class-incremental stream).
//! - [`vqa`]: VQA models (question encoder, S-MAC, UpDown).
//! - [`plot`]: line charts drawn to PNG (evaluation plots).
//! - [`stream`]: the streaming loop: orders, in-memory data, metrics, checkpoints.
//! - [`train`]: optimisers with checkpointable state.
//! - [`stages`]: the stage bodies the binaries call.
//! - [`synth`]: synthetic feature maps for tests and benchmarks.

pub mod artifact;
pub mod backbone_train;
pub mod buffer;
pub mod classify;
pub mod classify_data;
pub mod clevr;
pub mod features;
pub mod models;
pub mod plot;
pub mod pq;
pub mod run;
pub mod stages;
pub mod stream;
pub mod synth;
pub mod train;
pub mod vqa;
pub mod vqa_data;

/// Helpers for the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Mutex, MutexGuard};

    /// Serialises the tests that seed or draw from libtorch's global generator
    /// (`tch::manual_seed`, `randn`, dropout, ...): unit tests run on parallel threads, and
    /// a draw on one thread would shift another test's seeded sequence.
    pub fn tch_rng_lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
