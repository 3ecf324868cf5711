//! Diagnostics: checks and benchmarks, and the synthetic data they run on.
//!
//! - [`cuda_check`]: CUDA against the CPU (`remind-cuda-check`).
//! - [`bench_pq`]: PQ fit/encode/decode timings (`remind-bench-pq`).
//! - [`synth`]: synthetic post-ReLU feature maps (`remind-synth-features`, tests, benches).

pub mod bench_pq;
pub mod cuda_check;
pub mod synth;
