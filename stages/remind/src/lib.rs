//! remind: the library behind the remind-rs stage binaries.
//!
//! - [`artifact`]: every artifact file, read and written (Arrow IPC tensors, Parquet tables,
//!   atomic writes, the run manifest).
//! - [`run`]: what stage runs share (pipeline configs, sharding, devices, progress).
//! - [`pq`]: product quantization (fit, encode, decode, faiss format).
//! - [`buffer`]: the replay buffer (codes, labels, class index, eviction, sampling).
//! - [`stages`]: the stage bodies the binaries call.
//! - [`vqa`]: VQA models (S-MAC, UpDown, question encoder) and the Adamax optimiser.
//! - [`synth`]: synthetic feature maps for tests and benchmarks.

pub mod artifact;
pub mod buffer;
pub mod pq;
pub mod run;
pub mod stages;
pub mod synth;
pub mod vqa;

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
