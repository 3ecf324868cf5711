//! remind: the library behind the remind-rs stage binaries.
//!
//! - [`artifact`]: every artifact file, read and written (Arrow IPC tensors, Parquet tables,
//!   atomic writes, the run manifest).
//! - [`run`]: what stage runs share (pipeline configs, sharding, devices, progress).
//! - [`pq`]: product quantization (fit, encode, decode, faiss format).
//! - [`buffer`]: the replay buffer (codes, labels, class index, eviction, sampling).
//! - [`stages`]: the stage bodies the binaries call.
//! - [`synth`]: synthetic feature maps for tests and benchmarks.

pub mod artifact;
pub mod buffer;
pub mod pq;
pub mod run;
pub mod stages;
pub mod synth;
