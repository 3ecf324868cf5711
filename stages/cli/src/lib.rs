//! What the stage binaries share: the common flags and the error-reporting entry point.
//! Every binary is a thin clap front over one library function of the `remind` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use remind::run::{DeviceChoice, Shard};

/// Flags every stage takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Pipeline config (pipelines/X.yaml); flags given here override its values.
    #[arg(long, env = "REMIND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run folder: where the manifest is kept (default: the config's run_dir, else artifacts/run).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

/// Flags of stages that map over items.
#[derive(Debug, Args)]
pub struct Sharding {
    /// This job's slice of the items, K/N with 0-based K (default: from SLURM_ARRAY_TASK_ID
    /// and SLURM_ARRAY_TASK_COUNT when set, else the whole input).
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Flags of stages that compute with libtorch.
#[derive(Debug, Args)]
pub struct Compute {
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Intra-op threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
}

impl Compute {
    pub fn apply_threads(&self) {
        if let Some(t) = self.threads {
            tch::set_num_threads(t);
        }
    }
}

impl Common {
    /// The run folder: flag, else the config's `run_dir`, else `artifacts/run`.
    pub fn run_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.run_dir {
            return Ok(d.clone());
        }
        let from_config: Option<String> = match &self.config {
            Some(path) => remind::run::config::top_level_string(path, "run_dir")?,
            None => None,
        };
        Ok(PathBuf::from(
            from_config.unwrap_or_else(|| "artifacts/run".into()),
        ))
    }
}

/// Keeps freed memory in the process instead of returning it to the OS at once (glibc:
/// mmap threshold 256 MiB, trim threshold 1 GiB, top pad 64 MiB). Training loops free and
/// reallocate the same megabyte-sized activation buffers every update; by default glibc
/// unmaps or trims them, and the kernel zero-fills fresh pages on the next update, which
/// costs about 7% of a small S-MAC update on CPU. Call once at start-up, before other
/// threads run; a no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Runs a stage body, printing its error chain and exiting non-zero on failure.
pub fn main_with(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
