//! Checks that this build computes the same on the GPU as on the CPU: PQ encode, decode
//! and fit, the VQA models' logits and gradients, the classification network's logits,
//! gradients and SGD step. Prints one JSON object and a table; exits 1 when a difference
//! is over its limit or no CUDA device is available.

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use remind::diag::cuda_check::cuda_check;
use remind_stages::main_with;

#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version = remind_stages::VERSION, about = "Compare CUDA results against the CPU (needs a GPU)")]
struct Cli {
    /// CUDA device index.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Intra-op threads for the CPU reference (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
}

fn main() -> ExitCode {
    main_with("remind-cuda-check", || {
        let cli = remind_stages::parse_args::<Cli>();
        if let Some(t) = cli.threads {
            tch::set_num_threads(remind_stages::launch::thread_count(t)?);
        }
        if let Err(why) = remind::run::device::cuda_backend() {
            bail!("no CUDA to check: {why}");
        }
        let checks = cuda_check(tch::Device::Cuda(cli.gpu))?;
        let tf32 = if remind::diag::cuda_check::tf32_disabled() {
            "TF32 off (NVIDIA_TF32_OVERRIDE=0)"
        } else {
            "TF32 allowed (the default)"
        };
        eprintln!("CUDA against CPU, {tf32}");
        eprintln!("| check | value | limit | ok |\n|---|---|---|---|");
        for c in &checks {
            eprintln!(
                "| {} | {:.3e} | {:.1e} | {} |",
                c.name,
                c.value,
                c.limit,
                if c.ok { "yes" } else { "NO" }
            );
        }
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "checks": checks, "failed": failed })
            )?
        );
        if !failed.is_empty() {
            bail!(
                "CUDA results differ from the CPU's beyond the limits: {}",
                failed.join(", ")
            );
        }
        Ok(())
    })
}
