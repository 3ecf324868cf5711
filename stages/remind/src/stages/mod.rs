//! Stage bodies: each composes the artifact layer with one piece of computation. The
//! binaries in `stages/cli` are thin command lines over these functions.

pub mod bench_pq;
pub mod codebook;
pub mod cuda_check;
pub mod evaluate;
pub mod extract_codes;
pub mod fit_pq;
