//! The streaming loop and what it is made of: stream orders, VQA data in memory, metrics.

pub mod checkpoint;
pub mod metrics;
pub mod order;
pub mod vqa;
pub mod vqa_data;
