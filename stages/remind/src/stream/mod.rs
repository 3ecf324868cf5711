//! The streaming loop and what it is made of: stream orders, VQA data in memory, metrics.

pub mod checkpoint;
pub mod metrics;
pub mod order;
// pub mod vqa; (enabled once the replay buffer and models land)
pub mod vqa_data;
