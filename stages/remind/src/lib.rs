//! remind: the library behind the remind-rs stage binaries, in pipeline order. Foundations
//! first (they know no task), then one module per pipeline step, each holding the bodies of
//! the stage binaries named in its docs.
//!
//! Foundations:
//! - [`artifact`]: every artifact file, read and written (Arrow IPC tensors, Parquet tables,
//!   safetensors weights, atomic writes, the run manifest).
//! - [`run`]: what stage runs share: pipeline configs, sharding, devices, progress.
//! - [`pq`]: product quantization (fit, encode, decode, OPQ, the faiss format).
//! - [`buffer`]: the replay buffer (codes, labels, class index, eviction, sampling).
//! - [`models`]: networks and their weights: ResNet (split into G and F), the VQA models.
//! - [`train`]: optimisers with checkpointable state and learning-rate schedules.
//! - [`plot`]: the evaluation's charts (line charts, heatmaps) as PNG and SVG, via plotters.
//! - [`text`]: text inputs as people and other tools write them (byte-order marks, CRLF).
//!
//! The pipeline:
//! 1. [`data`]: imports: mini-CLEVR generator, questions, gensen features, images and labels.
//! 2. [`backbone`]: G: trained on CLEVR scenes or as a base-initialised classifier; feature
//!    extraction.
//! 3. [`codes`]: fit PQ, extract codes, the codebook artifact.
//! 4. [`stream`]: REMIND and its baselines: the one driver, the plan, the run-folder
//!    layout, checkpoints; each task's maths in [`stream::vqa`] and [`stream::classify`].
//! 5. [`evaluate`]: scores, Omega, tables and plots of a streaming run.
//!
//! And [`diag`]: the CUDA check, benchmarks and synthetic data.

#[macro_use]
mod named;

pub mod artifact;
pub mod backbone;
pub mod buffer;
pub mod codes;
pub mod data;
pub mod diag;
pub mod evaluate;
pub mod models;
pub mod plot;
pub mod pq;
pub mod run;
pub mod stream;
pub mod text;
pub mod train;

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

    /// Writes `bytes` with each one byte damaged in turn (XOR 0x5a) to `damaged` and calls
    /// `read` on it, which returns whether the damage was refused; a panic fails the test
    /// naming the byte. Returns how many damaged copies were refused.
    pub fn each_damaged_byte(
        bytes: &[u8],
        damaged: &std::path::Path,
        read: impl Fn(usize) -> bool,
    ) -> usize {
        let mut refused = 0;
        for at in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[at] ^= 0x5a;
            std::fs::write(damaged, &b).unwrap();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(at))) {
                Err(_) => panic!("byte {at} of {} damaged: a panic", bytes.len()),
                Ok(was_refused) => refused += usize::from(was_refused),
            }
        }
        refused
    }
}
