//! Models. They build tch modules under a `VarStore` path and know nothing of files; the
//! weights of a `VarStore` are matched by name against a weight file here, the file itself
//! being read and written by [`crate::artifact::weights`].
//!
//! - [`resnet`]: the ResNet family with torchvision names, split into G and F at a cut.
//! - [`flops`]: forward FLOPs per item of every model, from its layer shapes.
//! - [`tools`]: random initial weights, and running a part on a tensor file.
//! - [`vqa`]: the VQA models (S-MAC, UpDown) and their question encoder.

pub mod flops;
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

/// Name prefixes that wrap a state_dict: `module.` (`nn.DataParallel` /
/// `DistributedDataParallel`), `model.` and `state_dict.` (a training wrapper's attribute,
/// as PyTorch Lightning names it, or a checkpoint dict flattened into one namespace).
const WRAPPER_PREFIXES: [&str; 3] = ["module.", "model.", "state_dict."];

/// The wrapper prefixes to drop from `names`: repeatedly, a prefix that every name has and
/// no variable of the model has.
fn wrapper_prefix(names: &[&str], vars: &HashMap<String, Tensor>) -> String {
    let mut prefix = String::new();
    'outer: loop {
        for w in WRAPPER_PREFIXES {
            let p = format!("{prefix}{w}");
            if !names.is_empty()
                && names.iter().all(|n| n.starts_with(&p))
                && !vars.keys().any(|v| v.starts_with(w))
            {
                prefix = p;
                continue 'outer;
            }
        }
        return prefix;
    }
}

/// Loads the variables of `vs` from the weight file `path` (safetensors, or a libtorch
/// archive) by name. Every variable must be present with its exact shape; a file whose
/// names all start with a wrapper prefix (`module.` from DataParallel, `model.`,
/// `state_dict.`) is read without it; BatchNorm's `num_batches_tracked` counters are
/// skipped. A mismatch fails naming the file and, when the file is a ResNet of another
/// depth or holds none of the model's names, what the file is; otherwise the first few
/// missing, wrong-shape and (with [`Unexpected::Refuse`]) unexpected names.
pub fn load_weights(vs: &VarStore, path: &Path, unexpected: Unexpected) -> Result<LoadReport> {
    let file = read_weights(path)?;
    let vars = vs.variables();
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let strip = wrapper_prefix(&names, &vars);
    let mut from_file: HashMap<String, Tensor> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (name, t) in file.tensors {
        let name = name[strip.len()..].to_string();
        if name.rsplit('.').next() == Some(NUM_BATCHES_TRACKED) {
            continue;
        }
        order.push(name.clone());
        from_file.insert(name, t);
    }
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
                // An integer tensor for a float layer would be cast silently: refuse it.
                let tk = t.kind();
                if vars[*name].is_floating_point() && !t.is_floating_point() {
                    bail!(
                        "{}: tensor '{name}': expected floating-point values, found {tk:?}",
                        path.display()
                    );
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
        if let Some(why) = what_the_file_is(&order, &from_file, &var_names) {
            bail!("{}: {why}", path.display());
        }
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

/// A ResNet's layout as its torchvision names show it: blocks per `layerN` and whether
/// they are bottlenecks (a `conv3` in each block).
fn resnet_layout<'a>(names: impl Iterator<Item = &'a str>) -> Option<([usize; 4], bool)> {
    let mut blocks = [0usize; 4];
    let mut bottleneck = false;
    let mut any = false;
    for name in names {
        let mut parts = name.split('.');
        let (Some(layer), Some(block)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(l) = layer
            .strip_prefix("layer")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| (1..=4).contains(l))
        else {
            continue;
        };
        let Ok(b) = block.parse::<usize>() else {
            continue;
        };
        any = true;
        blocks[l - 1] = blocks[l - 1].max(b + 1);
        bottleneck |= parts.next() == Some("conv3");
    }
    any.then_some((blocks, bottleneck))
}

/// Why the file's tensors cannot be this model's, when the cause is the file's kind rather
/// than a few names: a ResNet of another depth, or no name of the model at all.
fn what_the_file_is(
    order: &[String],
    from_file: &HashMap<String, Tensor>,
    var_names: &[&String],
) -> Option<String> {
    let model = resnet_layout(var_names.iter().map(|n| n.as_str()));
    let file = resnet_layout(order.iter().map(String::as_str));
    if let (Some((want, want_bn)), Some((have, have_bn))) = (model, file) {
        // The model may be a part (G or F): it lacks whole layers, and G cut inside a layer
        // (at `layer4.0`) has fewer blocks in its last one.
        let last = want.iter().rposition(|&b| b > 0).unwrap_or(0);
        let fits = |i: usize, model: usize, full: usize| {
            model == full || model == 0 || full == 0 || (i == last && model < full)
        };
        let differs = want_bn != have_bn || (0..4).any(|i| !fits(i, want[i], have[i]));
        if differs {
            // The file's layout must match an architecture exactly, the model's as a part.
            let describe = |blocks: [usize; 4], bn: bool, exact: bool| {
                let kind = if bn { "bottleneck" } else { "basic" };
                let name = Arch::ALL
                    .iter()
                    .filter(|a| {
                        a.bottleneck() == bn
                            && (0..4).all(|i| {
                                let (b, full) = (blocks[i], a.blocks()[i]);
                                b == full || (!exact && (b == 0 || (i == last && b < full)))
                            })
                    })
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(" or ");
                // A part (G cut at layer3) lists only the layers it holds.
                let held = if exact {
                    4
                } else {
                    blocks.iter().rposition(|&b| b > 0).map_or(4, |l| l + 1)
                };
                let counts: Vec<String> = blocks[..held].iter().map(|b| b.to_string()).collect();
                let shape = if held < 4 {
                    format!(
                        "{kind} blocks {} in the part built, up to layer{held}",
                        counts.join("-")
                    )
                } else {
                    format!("{kind} blocks {}", counts.join("-"))
                };
                if name.is_empty() {
                    format!("a ResNet ({shape})")
                } else {
                    format!("{name} ({shape})")
                }
            };
            return Some(format!(
                "these are the weights of {}, but the model is {}: give weights of the \
                 configured architecture, or set the architecture (--arch) the weights were \
                 trained with",
                describe(have, have_bn, true),
                describe(want, want_bn, false)
            ));
        }
    }
    if !var_names.is_empty() && var_names.iter().all(|n| !from_file.contains_key(*n)) {
        let shown: Vec<String> = order
            .iter()
            .take(3)
            .map(|n| format!("'{n}' {:?}", from_file[n].size()))
            .collect();
        return Some(format!(
            "the file holds none of the model's {} tensors (e.g. '{}'): its {} tensor(s) are \
             named {}{}; expected a state_dict of this network",
            var_names.len(),
            var_names[0],
            order.len(),
            shown.join(", "),
            if order.len() > 3 { ", ..." } else { "" }
        ));
    }
    None
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

        // The error of loading the file into a whole network of `arch` and `width`.
        let full_err = |arch, width| {
            let vs = nn::VarStore::new(Device::Cpu);
            ResNet::full(&vs.root(), ResNetConfig::new(arch, width, Stem::ImageNet)).unwrap();
            load_weights(&vs, &path, Unexpected::Ignore)
                .unwrap_err()
                .to_string()
        };

        // Another width: wrong shapes, named with both shapes.
        let err = full_err(Arch::ResNet18, 16);
        assert!(
            err.contains("wrong shape: bn1.bias (expected [16], found [8])"),
            "{err}"
        );

        // Another depth: the file's architecture is named, not its missing names.
        let err = full_err(Arch::ResNet34, 8);
        assert!(
            err.contains("weights of resnet18 (basic blocks 2-2-2-2)")
                && err.contains("the model is resnet34 (basic blocks 3-4-6-3)"),
            "{err}"
        );
        // A file of other tensors altogether.
        let other = dir.join("feats.safetensors");
        write_safetensors(
            &other,
            &[(
                "features".into(),
                Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            )],
            HashMap::new(),
        )
        .unwrap();
        let err = load_weights(&b, &other, Unexpected::Ignore)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("feats.safetensors: the file holds none of the model's")
                && err.contains("'features' [2, 3]"),
            "{err}"
        );
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
        // A Lightning-style wrapper around DataParallel: both prefixes go.
        let nested: Vec<(String, Tensor)> = prefixed
            .iter()
            .map(|(n, t)| (format!("model.{n}"), t.shallow_clone()))
            .collect();
        write_safetensors(&path, &nested, HashMap::new()).unwrap();
        load_weights(&b, &path, Unexpected::Refuse).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
