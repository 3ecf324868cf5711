//! remind: the library behind the remind-rs stage binaries.
//!
//! - [`artifact`]: every artifact file, read and written (Arrow IPC tensors, Parquet tables,
//!   atomic writes, the run manifest).
//! - [`run`]: what stage runs share (pipeline configs, sharding, devices, progress).
//! - [`models`]: networks (the ResNet backbone, split into G and F) and their weights.
//! - [`features`]: feature extraction, images to feature maps through a frozen backbone.
//! - [`synth`]: synthetic feature maps for tests and benchmarks.

pub mod artifact;
pub mod features;
pub mod models;
pub mod run;
pub mod synth;
