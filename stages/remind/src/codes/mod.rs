//! Pipeline step 3, product quantization of the feature maps.
//!
//! - [`fit_pq`]: fit the codebook (`remind-fit-pq`).
//! - [`extract_codes`]: encode feature maps into PQ codes (`remind-extract-codes`).
//! - [`codebook`]: the codebook artifact, read and written (also used by the stream).

pub mod codebook;
pub mod extract_codes;
pub mod fit_pq;
