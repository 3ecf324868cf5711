//! Models. They build tch modules under a `VarStore` path and know nothing of files; the
//! weights of a `VarStore` are matched by name against a weight file here, the file itself
//! being read and written by [`crate::artifact::weights`].
//!
//! - [`resnet`]: the ResNet family with torchvision names, split into G and F at a cut.
//! - [`tools`]: random initial weights, and running a part on a tensor file.
//! - [`vqa`]: the VQA models (S-MAC, UpDown) and their question encoder.

pub mod resnet;
pub mod tools;
pub mod vqa;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::artifact::weights::{read_weights, write_safetensors};

pub use resnet::{Arch, Cut, ResNet, ResNetConfig, Stem};

/// What to do with tensors of the file that the `VarStore` does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unexpected {
    /// Refuse them (the file must describe exactly this module).
    Refuse,
    /// Ignore them (loading G or F from a whole network's weights).
    Ignore,
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// File tensors left unused (only with [`Unexpected::Ignore`]).
    pub ignored: Vec<String>,
}

/// BatchNorm's step counter: PyTorch keeps it in state_dicts, inference never uses it.
const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// Loads the variables of `vs` from the weight file `path` (safetensors, or a libtorch
/// archive) by name. Every variable must be present with its exact shape; a file whose
/// names all start with `module.` (saved from DataParallel) is read without that prefix;
/// BatchNorm's `num_batches_tracked` counters are skipped. A mismatch fails naming the file
/// and the first few missing, wrong-shape and (with [`Unexpected::Refuse`]) unexpected names.
pub fn load_weights(vs: &VarStore, path: &Path, unexpected: Unexpected) -> Result<LoadReport> {
    let file = read_weights(path)?;
    let strip =
        !file.tensors.is_empty() && file.tensors.iter().all(|(n, _)| n.starts_with("module."));
    let mut from_file: HashMap<String, Tensor> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (name, t) in file.tensors {
        let name = if strip {
            name["module.".len()..].to_string()
        } else {
            name
        };
        if name.rsplit('.').next() == Some(NUM_BATCHES_TRACKED) {
            continue;
        }
        order.push(name.clone());
        from_file.insert(name, t);
    }
    let vars = vs.variables();
    let mut var_names: Vec<&String> = vars.keys().collect();
    var_names.sort();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    for name in &var_names {
        match from_file.get(*name) {
            None => missing.push(name.to_string()),
            Some(t) => {
                let (want, got) = (vars[*name].size(), t.size());
                if want != got {
                    wrong_shape.push(format!("{name} (expected {want:?}, found {got:?})"));
                }
            }
        }
    }
    let extra: Vec<String> = order
        .iter()
        .filter(|n| !vars.contains_key(*n))
        .cloned()
        .collect();
    let refuse_extra = unexpected == Unexpected::Refuse && !extra.is_empty();
    if !missing.is_empty() || !wrong_shape.is_empty() || refuse_extra {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(listing("missing", &missing));
        }
        if !wrong_shape.is_empty() {
            parts.push(listing("wrong shape", &wrong_shape));
        }
        if refuse_extra {
            parts.push(listing("unexpected", &extra));
        }
        bail!(
            "{}: weights do not fit the model: {}",
            path.display(),
            parts.join("; ")
        );
    }
    let _guard = tch::no_grad_guard();
    for (name, var) in &vars {
        let src = &from_file[name];
        let mut var = var.shallow_clone();
        var.f_copy_(&src.to_kind(var.kind()).to_device(var.device()))
            .map_err(|e| anyhow::anyhow!("{}: tensor '{name}': {e}", path.display()))?;
    }
    Ok(LoadReport {
        loaded: vars.len(),
        ignored: if unexpected == Unexpected::Ignore {
            extra
        } else {
            Vec::new()
        },
    })
}

fn listing(what: &str, names: &[String]) -> String {
    const SHOWN: usize = 5;
    let head = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        format!(
            "{} {what}: {head}, ... ({} more)",
            names.len(),
            names.len() - SHOWN
        )
    } else {
        format!("{} {what}: {head}", names.len())
    }
}

/// Saves the variables of `vs` as a safetensors file (atomically), with `metadata` (the
/// bytes do not depend on its order: see [`write_safetensors`]). A
/// `num_batches_tracked` counter is added beside every BatchNorm's `running_mean`, so
/// PyTorch's `load_state_dict(strict=True)` accepts the file.
pub fn save_weights(
    vs: &VarStore,
    path: &Path,
    metadata: impl IntoIterator<Item = (String, String)>,
) -> Result<PathBuf> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let have: HashSet<&str> = vars.keys().map(String::as_str).collect();
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(vars.len());
    for name in names {
        tensors.push((name.clone(), vars[name].detach()));
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let counter = format!("{prefix}.{NUM_BATCHES_TRACKED}");
            if !have.contains(counter.as_str()) {
                tensors.push((counter, Tensor::from(0i64).to_kind(Kind::Int64)));
            }
        }
    }
    write_safetensors(path, &tensors, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;
    use tch::Device;

    #[test]
    fn save_load_round_trip_and_mismatch_reports() {
        let _rng = crate::testing::tch_rng_lock();
        let dir = std::env::temp_dir().join(format!("remind-models-{}", std::process::id()));
        let path = dir.join("r18.safetensors");
        let cfg = ResNetConfig::new(Arch::ResNet18, 8, Stem::ImageNet);
        let a = nn::VarStore::new(Device::Cpu);
        ResNet::full(&a.root(), cfg).unwrap();
        save_weights(&a, &path, HashMap::new()).unwrap();
        let written = read_weights(&path).unwrap();
        assert!(written
            .tensors
            .iter()
            .any(|(n, _)| n == "layer2.0.downsample.1.num_batches_tracked"));

        // Whole network, strict.
        let b = nn::VarStore::new(Device::Cpu);
        ResNet::full(&b.root(), cfg).unwrap();
        load_weights(&b, &path, Unexpected::Refuse).unwrap();
        let (va, vb) = (a.variables(), b.variables());
        for (n, t) in &va {
            assert!(t.equal(&vb[n]), "{n}");
        }

        // G from the whole network's file: F's names are ignored, or refused when strict.
        let cut: Cut = "layer4.0".parse().unwrap();
        let g = nn::VarStore::new(Device::Cpu);
        ResNet::g(&g.root(), cfg, cut).unwrap();
        let report = load_weights(&g, &path, Unexpected::Ignore).unwrap();
        assert!(report.ignored.contains(&"fc.weight".to_string()));
        let err = load_weights(&g, &path, Unexpected::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r18.safetensors") && err.contains("unexpected: fc.bias"),
            "{err}"
        );

        // Another width: wrong shapes, named with both shapes.
        let wide = nn::VarStore::new(Device::Cpu);
        ResNet::full(
            &wide.root(),
            ResNetConfig::new(Arch::ResNet18, 16, Stem::ImageNet),
        )
        .unwrap();
        let err = load_weights(&wide, &path, Unexpected::Ignore)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wrong shape: bn1.bias (expected [16], found [8])"),
            "{err}"
        );

        // Another depth: missing names.
        let deep = nn::VarStore::new(Device::Cpu);
        ResNet::full(
            &deep.root(),
            ResNetConfig::new(Arch::ResNet34, 8, Stem::ImageNet),
        )
        .unwrap();
        let err = load_weights(&deep, &path, Unexpected::Ignore)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing: layer1.2.bn1.bias"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_parallel_prefix_is_stripped() {
        let dir = std::env::temp_dir().join(format!("remind-models-dp-{}", std::process::id()));
        let path = dir.join("dp.safetensors");
        let cfg = ResNetConfig::new(Arch::ResNet18, 4, Stem::Small);
        let a = nn::VarStore::new(Device::Cpu);
        ResNet::full(&a.root(), cfg).unwrap();
        let prefixed: Vec<(String, Tensor)> = a
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("module.{n}"), t))
            .collect();
        write_safetensors(&path, &prefixed, HashMap::new()).unwrap();
        let b = nn::VarStore::new(Device::Cpu);
        ResNet::full(&b.root(), cfg).unwrap();
        assert_eq!(
            load_weights(&b, &path, Unexpected::Refuse).unwrap().loaded,
            a.variables().len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
