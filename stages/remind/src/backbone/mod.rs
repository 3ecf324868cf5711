//! Pipeline step 2, the frozen network G: training it and running it over images.
//!
//! - [`scenes`]: train G on CLEVR scene annotations (`remind-train-backbone`), the stand-in
//!   for ImageNet pre-training in the VQA pipelines.
//! - [`classifier`]: base initialisation of the whole ResNet on the base classes
//!   (`remind-train-classifier`), the image-classification pipelines' G and F.
//! - [`features`]: images through G into feature maps (`remind-extract-features`).

pub mod classifier;
pub mod features;
pub mod scenes;
