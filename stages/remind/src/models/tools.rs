//! The library side of `remind-backbone`: random initial weights for a ResNet, and running
//! a ResNet part on a tensor read from a file (what the torchvision parity test drives).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind};

use super::{load_weights, save_weights, Cut, ResNet, ResNetConfig, Unexpected};
use crate::artifact::weights::{read_weights, write_safetensors};

/// Which part of the network to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Full,
    G(Cut),
    F(Cut),
}

impl Part {
    pub fn build(self, p: &nn::Path, cfg: ResNetConfig) -> Result<ResNet> {
        match self {
            Part::Full => ResNet::full(p, cfg),
            Part::G(cut) => ResNet::g(p, cfg, cut),
            Part::F(cut) => ResNet::f(p, cfg, cut),
        }
    }
}

/// Metadata stamped into weight files written here.
pub fn weights_metadata(cfg: &ResNetConfig) -> HashMap<String, String> {
    HashMap::from([
        ("remind.arch".into(), cfg.arch.name().into()),
        ("remind.width".into(), cfg.width.to_string()),
        ("remind.stem".into(), cfg.stem.name().into()),
        ("remind.num_classes".into(), cfg.num_classes.to_string()),
    ])
}

/// Writes seeded random weights of the whole network `cfg` (torchvision's initialisation)
/// to `out` as safetensors.
pub fn init_weights(cfg: ResNetConfig, seed: u64, out: &Path) -> Result<PathBuf> {
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    ResNet::full(&vs.root(), cfg)?;
    save_weights(&vs, out, weights_metadata(&cfg))
}

/// Runs `part` of `cfg` with `weights` (BatchNorm in eval mode) on the tensor named
/// `input` of the safetensors file `input` (`[N, C, H, W]`), and writes the result as the
/// tensor `output` of `output`.
pub fn forward_file(
    cfg: ResNetConfig,
    part: Part,
    weights: &Path,
    input: &Path,
    output: &Path,
    device: Device,
) -> Result<PathBuf> {
    let vs = nn::VarStore::new(device);
    let net = part.build(&vs.root(), cfg)?;
    let unexpected = match part {
        Part::Full => Unexpected::Refuse,
        Part::G(_) | Part::F(_) => Unexpected::Ignore,
    };
    load_weights(&vs, weights, unexpected)?;
    let file = read_weights(input)?;
    let Some((_, x)) = file.tensors.into_iter().find(|(n, _)| n == "input") else {
        bail!("{}: no tensor named 'input'", input.display());
    };
    let i = input.display();
    ensure!(
        x.dim() == 4 && x.size()[1] == net.in_channels(),
        "{i}: tensor 'input': expected [N, {}, H, W], found {:?}",
        net.in_channels(),
        x.size()
    );
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float).to_device(device);
    let y = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.forward_t(&x, false)))
        .map_err(|_| anyhow!("{i}: the forward pass failed (see the libtorch message above)"))?;
    write_safetensors(
        output,
        &[("output".to_string(), y.to_device(Device::Cpu))],
        HashMap::new(),
    )
    .with_context(|| format!("cannot write {}", output.display()))
}
