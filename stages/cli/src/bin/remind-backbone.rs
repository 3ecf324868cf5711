//! ResNet backbone tools: seeded random weights, and a forward pass over a tensor file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use remind::models::tools::{forward_file, init_weights, Part};
use remind::models::{Arch, Cut, ResNetConfig, Stem};
use remind_stages::{main_with, Compute};

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "ResNet backbone tools (torchvision-compatible weights)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The network's shape.
#[derive(Debug, Args)]
struct Net {
    /// resnet18, resnet34, resnet50, resnet101 or resnet152.
    #[arg(long, default_value = "resnet18")]
    arch: Arch,
    /// Base channels (64 is torchvision's).
    #[arg(long, default_value_t = 64)]
    width: i64,
    /// imagenet (7x7/2 conv + max-pool) or small (3x3/1 conv, no pool).
    #[arg(long, default_value = "imagenet")]
    stem: Stem,
    /// Outputs of fc.
    #[arg(long, default_value_t = 1000)]
    num_classes: i64,
}

impl Net {
    fn config(&self) -> ResNetConfig {
        ResNetConfig {
            arch: self.arch,
            width: self.width,
            stem: self.stem,
            num_classes: self.num_classes,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write seeded random weights (torchvision's initialisation) as safetensors.
    Init {
        #[command(flatten)]
        net: Net,
        /// Seed of the initialisation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output weights file (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the network, or G or F at a cut, on the tensor 'input' of a safetensors file
    /// and write the result as the tensor 'output' (BatchNorm in eval mode).
    Forward {
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        compute: Compute,
        /// Weights (safetensors; .pt/.pth only as libtorch archives).
        #[arg(long)]
        weights: PathBuf,
        /// Run G (stem .. cut) only.
        #[arg(long, conflicts_with = "f_after")]
        g_until: Option<Cut>,
        /// Run F (after cut .. fc) only.
        #[arg(long)]
        f_after: Option<Cut>,
        /// Safetensors file holding the tensor 'input' (NCHW images or NHWC maps).
        #[arg(long)]
        input: PathBuf,
        /// Safetensors file to write the tensor 'output' to.
        #[arg(long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    main_with(
        "remind-backbone",
        || match remind_stages::parse_args::<Cli>().command {
            Command::Init { net, seed, out } => {
                let path = init_weights(net.config(), seed, &out)?;
                eprintln!("remind-backbone: wrote {}", path.display());
                Ok(())
            }
            Command::Forward {
                net,
                compute,
                weights,
                g_until,
                f_after,
                input,
                output,
            } => {
                compute.apply_threads()?;
                let part = match (g_until, f_after) {
                    (Some(c), _) => Part::G(c),
                    (None, Some(c)) => Part::F(c),
                    (None, None) => Part::Full,
                };
                let device = compute.device.device()?;
                forward_file(net.config(), part, &weights, &input, &output, device)?;
                Ok(())
            }
        },
    )
}
