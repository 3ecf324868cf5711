//! Artifact I/O: the one place that opens or writes artifact files. Dense tensors are
//! memory-mapped Arrow IPC files, tables are Parquet, every write is atomic and every read
//! is validated against `schemas/`.

pub mod atomic;
pub mod content;
pub mod dataset;
pub mod digest;
pub mod guard;
pub mod manifest;
pub mod schema;
pub mod sniff;
pub mod table;
pub mod tensor;
pub mod values;
pub mod weights;

pub use dataset::TensorDataset;
pub use manifest::{Manifest, ManifestEntry};
pub use table::{write_table, write_table_with, Table};
pub use tensor::{DType, Payload, Producer, TensorFile, TensorSpec, TensorWriter};
