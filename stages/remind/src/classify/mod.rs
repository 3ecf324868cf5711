//! Image classification, REMIND's ImageNet protocol: the label table, base
//! initialisation of the whole ResNet, and the class-incremental stream over PQ codes
//! (replay with mixup and feature-map crops, the per-class learning-rate schedule).

pub mod augment;
pub mod base_train;
pub mod labels;
pub mod schedule;
pub mod stream;
