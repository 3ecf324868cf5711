//! What every stage run shares: configuration, sharding, device choice, progress.

pub mod config;
pub mod contract;
pub mod device;
pub mod precision;
pub mod progress;
pub mod shard;

pub use config::{config_hash, load_section, load_section_over};
pub use contract::{Contract, Status};
pub use device::DeviceChoice;
pub use precision::Precision;
pub use progress::Progress;
pub use shard::Shard;
