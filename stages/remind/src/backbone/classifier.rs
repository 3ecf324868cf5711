//! Base initialisation for image classification (stage `remind-train-classifier`): the
//! whole ResNet trained from scratch on the training images of the base classes, the
//! checkpoint with the best validation top-1 on those classes kept. Its G is then frozen
//! (feature extraction) and its F is where every streaming method starts.
//!
//! - Data: the label table's training items with label < base_classes; validation: its
//!   val items of the same classes. Images are decoded once (as feature extraction decodes
//!   them: RGB, bicubic resize to `image_size`, `input_norm`, recorded in the weights) and
//!   held in memory;
//!   `max_preload_gb` bounds that (ImageNet-size bases: give torchvision weights instead).
//! - Augmentation: random horizontal flips and random translations (black padding of `pad`
//!   pixels, then a random crop back to the image size), as is standard for 28-32 px data.
//! - Optimiser: SGD (momentum, weight decay) with the rate set per step: linear warm-up
//!   then cosine decay, or PyTorch's one-cycle schedule ([`EpochSchedule`]).
//! - Deterministic on the CPU for a seed and thread count.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::artifact::atomic::write_bytes;
use crate::backbone::features::{
    decode_image, normalise_images_for_training, normalise_images_with, InputNorm,
};
use crate::data::images::labels::{Items, LabelSet};
use crate::models::tools::weights_metadata;
use crate::models::{save_weights, Arch, ResNet, ResNetConfig, Stem};
use crate::run::{config_hash, Precision, Progress};
use crate::train::optim::{OptimKind, Optimizer};
use crate::train::schedule::EpochSchedule;
use crate::train::top1_hits;

/// Config section `train_classifier`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainClassifierConfig {
    /// Label table (`labels.parquet` of remind-import-images).
    pub labels: Option<PathBuf>,
    /// Image root; default: the one the label table records.
    pub images: Option<PathBuf>,
    /// Output weights (safetensors, torchvision names of the whole network).
    pub out: Option<PathBuf>,
    pub arch: Arch,
    pub width: i64,
    pub stem: Stem,
    pub image_size: usize,
    pub epochs: usize,
    /// Images per step; 256 and `weight_decay` 1e-4 are the defaults of the authors'
    /// base-initialisation script (train_base_init_network_from_scratch.py). On the
    /// parity protocol, batch 64 with 5e-4 gave a base network whose features served the
    /// new classes worse (REMIND 2-4 points lower at 6 to 10 classes; BENCHMARKS.md).
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub flip: bool,
    /// Random translation: pad with black by this many pixels, crop back at a random offset.
    pub pad: i64,
    /// warmup_cosine (the default) or one_cycle (PyTorch's OneCycleLR, momentum cycled).
    pub schedule: EpochSchedule,
    /// Input statistics (default ImageNet's), recorded in the weights for extraction.
    pub input_norm: InputNorm,
    pub seed: u64,
    pub decode_threads: usize,
    pub max_preload_gb: f64,
    /// Compute precision of the training and evaluation forward passes ([`Precision`]:
    /// fp32, or bf16 mixed precision with fp32 master weights, optimiser and losses). Left
    /// out of the config hash while fp32, so earlier runs hash as before.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for TrainClassifierConfig {
    fn default() -> Self {
        Self {
            labels: None,
            images: None,
            out: None,
            arch: Arch::ResNet18,
            width: 64,
            stem: Stem::ImageNet,
            image_size: 224,
            epochs: 30,
            batch: 256,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            flip: true,
            pad: 0,
            schedule: EpochSchedule::WarmupCosine,
            input_norm: InputNorm::default(),
            seed: 0,
            decode_threads: 2,
            max_preload_gb: 8.0,
            precision: Precision::Fp32,
        }
    }
}

impl TrainClassifierConfig {
    /// The label table and the output weights path; an error names the flag and key to set.
    pub fn required(&self) -> Result<(&Path, &Path)> {
        let labels = self
            .labels
            .as_deref()
            .context("no label table: give --labels or train_classifier.labels")?;
        let out = self
            .out
            .as_deref()
            .context("no output: give --out or train_classifier.out")?;
        Ok((labels, out))
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.epochs >= 1 && self.batch >= 2,
            "train_classifier: epochs >= 1 and batch >= 2 needed"
        );
        ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "train_classifier.lr must be positive"
        );
        ensure!(
            (8..=4096).contains(&self.image_size),
            "train_classifier.image_size {} out of range",
            self.image_size
        );
        ensure!(
            self.pad >= 0 && (self.pad as usize) < self.image_size,
            "train_classifier.pad out of range"
        );
        ensure!(
            (1..=64).contains(&self.decode_threads),
            "train_classifier.decode_threads must be 1..=64"
        );
        self.input_norm.validate("train_classifier.input_norm")?;
        ResNetConfig::new(self.arch, self.width, self.stem).validate()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub train_top1: f64,
    pub val_top1: f64,
    pub lr: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierReport {
    pub labels: String,
    pub weights: String,
    pub arch: Arch,
    pub width: i64,
    pub stem: Stem,
    pub image_size: usize,
    pub num_classes: usize,
    pub base_classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub best_epoch: usize,
    pub best_val_top1: f64,
    pub epochs: Vec<EpochReport>,
    pub config_hash: String,
    pub seconds: f64,
}

/// Where the report goes: beside the weights.
pub fn report_path(weights: &Path) -> PathBuf {
    weights.with_file_name("train_report.json")
}

/// Decoded images of some items: `[N, S, S, 3]` bytes and labels, on the CPU.
struct Images {
    pixels: Tensor,
    labels: Tensor,
}

fn decode_items(
    root: &Path,
    items: &Items,
    rows: &[usize],
    size: usize,
    threads: usize,
) -> Result<Images> {
    let per = size * size * 3;
    let mut pixels = vec![0u8; rows.len() * per];
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = pixels
            .chunks_mut(chunk * per)
            .zip(rows.chunks(chunk))
            .map(|(buf, rows)| {
                s.spawn(move || -> Result<()> {
                    for (dst, &r) in buf.chunks_mut(per).zip(rows) {
                        let path = root.join(&items.sources[r]);
                        let px = decode_image(&path, size as u32)
                            .with_context(|| format!("image id {}", items.ids[r]))?;
                        dst.copy_from_slice(&px);
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("an image decoding thread panicked"))??;
        }
        Ok(())
    })?;
    let s = size as i64;
    let labels: Vec<i64> = rows.iter().map(|&r| items.labels[r]).collect();
    Ok(Images {
        pixels: Tensor::from_slice(&pixels).view([rows.len() as i64, s, s, 3]),
        labels: Tensor::from_slice(&labels),
    })
}

/// Flips and translates a normalised batch `[N, 3, S, S]` (per-image draws from `rng`).
/// Translation pads with black (the normalised value of 0), as torchvision's
/// `RandomCrop(padding=p)` does on the image before `Normalize`: padding the normalised
/// batch with 0 would frame shifted images in the mean colour, which no validation or
/// stream image has.
fn augment(x: &Tensor, cfg: &TrainClassifierConfig, rng: &mut ChaCha8Rng) -> Tensor {
    let n = x.size()[0];
    let s = cfg.image_size as i64;
    let mut x = x.shallow_clone();
    if cfg.flip {
        let flips: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let mask = Tensor::from_slice(&flips)
            .view([-1, 1, 1, 1])
            .to_device(x.device());
        x = x.flip([3]).where_self(&mask, &x);
    }
    if cfg.pad > 0 {
        let p = cfg.pad;
        let black = cfg.input_norm.black(x.device());
        let padded = (&x - &black).constant_pad_nd([p, p, p, p]) + &black;
        let rows: Vec<Tensor> = (0..n)
            .map(|i| {
                let (dy, dx) = (rng.random_range(0..=2 * p), rng.random_range(0..=2 * p));
                padded.narrow(0, i, 1).narrow(2, dy, s).narrow(3, dx, s)
            })
            .collect();
        x = Tensor::cat(&rows, 0);
    }
    x
}

/// Top-1 accuracy of `net` on `data` (eval mode).
fn accuracy(
    net: &ResNet,
    data: &Images,
    device: Device,
    batch: usize,
    norm: &InputNorm,
    precision: Precision,
) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let n = data.labels.size()[0];
    let mut correct = 0i64;
    let mut i = 0;
    while i < n {
        let b = (batch as i64).min(n - i);
        let x = normalise_images_with(&data.pixels.narrow(0, i, b).to_device(device), norm);
        let pred = precision
            .forward(device, &x, |x| net.forward_t(x, false))
            .argmax(-1, false)
            .to_device(Device::Cpu);
        correct += pred
            .eq_tensor(&data.labels.narrow(0, i, b))
            .sum(Kind::Int64)
            .int64_value(&[]);
        i += b;
    }
    Ok(correct as f64 / n.max(1) as f64)
}

/// Trains the network on the base classes and writes the best weights and the report.
pub fn train_classifier(
    cfg: &TrainClassifierConfig,
    device: Device,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<ClassifierReport> {
    let start = Instant::now();
    cfg.validate()?;
    cfg.precision
        .prepare(device, "train_classifier.precision")?;
    let (labels_path, out) = cfg.required()?;
    let set = LabelSet::read(labels_path)?;
    let root = set.root(cfg.images.as_deref())?;
    let base = set.base_classes;
    let train_rows = set.base_rows();
    let val_rows = LabelSet::among(&set.val, base);
    ensure!(
        train_rows.len() >= 2 && !val_rows.is_empty(),
        "{}: the {base} base classes have {} training and {} validation images; need >= 2 and >= 1",
        labels_path.display(),
        train_rows.len(),
        val_rows.len()
    );
    let bytes = (train_rows.len() + val_rows.len()) as f64 * (cfg.image_size.pow(2) * 3) as f64;
    ensure!(
        bytes <= cfg.max_preload_gb * 1e9,
        "the base-class images need {:.1} GB decoded, over train_classifier.max_preload_gb = {}: \
         raise it, or skip this stage and give torchvision-format base weights",
        bytes / 1e9,
        cfg.max_preload_gb
    );
    let mut net_cfg = ResNetConfig::new(cfg.arch, cfg.width, cfg.stem);
    net_cfg.num_classes = set.num_classes() as i64;
    let hash = config_hash(&(cfg, crate::artifact::weights::file_sha256(labels_path)?))?;
    eprintln!(
        "train-classifier: {} on {} training / {} validation images of {base} base classes ({} classes in all)",
        cfg.arch.name(), train_rows.len(), val_rows.len(), set.num_classes()
    );
    let train = decode_items(
        &root,
        &set.train,
        &train_rows,
        cfg.image_size,
        cfg.decode_threads,
    )?;
    let val = decode_items(
        &root,
        &set.val,
        &val_rows,
        cfg.image_size,
        cfg.decode_threads,
    )?;

    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = ResNet::full(&vs.root(), net_cfg)?;
    let mut best_vs = nn::VarStore::new(Device::Cpu);
    ResNet::full(&best_vs.root(), net_cfg)?;
    let mut opt = Optimizer::new(
        &vs,
        OptimKind::Sgd {
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
        },
    );
    let n = train_rows.len();
    let steps_per_epoch = n.div_ceil(cfg.batch);
    let total = steps_per_epoch * cfg.epochs;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..n as i64).collect();
    let mut epochs = Vec::new();
    let (mut best, mut best_epoch) = (-1.0, 0);
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let mut progress = Progress::new(
            &format!("train-classifier epoch {epoch}/{}", cfg.epochs),
            n as u64,
        );
        let (mut loss_sum, mut correct, mut lr) = (0.0, 0i64, cfg.lr);
        for chunk in order.chunks(cfg.batch) {
            let momentum;
            (lr, momentum) = cfg.schedule.at(step, total, cfg.lr);
            if let Some(m) = momentum {
                opt.set_momentum(m);
            }
            let idx = Tensor::from_slice(chunk);
            let x = normalise_images_for_training(
                &train.pixels.index_select(0, &idx).to_device(device),
                &cfg.input_norm,
            );
            let x = augment(&x, cfg, &mut rng);
            let y = train.labels.index_select(0, &idx).to_device(device);
            let logits = (cfg.precision).forward(device, &x, |x| net.forward_t(x, true));
            let loss = logits.cross_entropy_for_logits(&y);
            opt.backward_step(&loss, lr)?;
            let l = loss.double_value(&[]);
            ensure!(
                l.is_finite(),
                "training diverged at step {} (epoch {epoch}): loss {l}; lower train_classifier.lr",
                step + 1
            );
            loss_sum += l * chunk.len() as f64;
            correct += top1_hits(&logits, &y);
            step += 1;
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        let val_top1 = accuracy(
            &net,
            &val,
            device,
            cfg.batch,
            &cfg.input_norm,
            cfg.precision,
        )?;
        let report = EpochReport {
            epoch,
            loss: loss_sum / n as f64,
            train_top1: correct as f64 / n as f64,
            val_top1,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        if val_top1 > best {
            best = val_top1;
            best_epoch = epoch;
            best_vs
                .copy(&vs)
                .map_err(|e| anyhow::anyhow!("cannot keep the best weights: {e}"))?;
        }
        epochs.push(report);
    }
    let mut meta = weights_metadata(&net_cfg);
    meta.insert("remind.config_hash".into(), hash.clone());
    meta.insert("remind.base_classes".into(), base.to_string());
    meta.insert("remind.image_size".into(), cfg.image_size.to_string());
    meta.extend(cfg.input_norm.metadata());
    let report = ClassifierReport {
        labels: labels_path.display().to_string(),
        weights: out.display().to_string(),
        arch: cfg.arch,
        width: cfg.width,
        stem: cfg.stem,
        image_size: cfg.image_size,
        num_classes: set.num_classes(),
        base_classes: base,
        train_images: n,
        val_images: val_rows.len(),
        best_epoch,
        best_val_top1: best,
        epochs,
        config_hash: hash,
        seconds: start.elapsed().as_secs_f64(),
    };
    // The report first, the weights last: the weights are what `make` waits for.
    write_bytes(&report_path(out), &serde_json::to_vec_pretty(&report)?)?;
    save_weights(&best_vs, out, meta)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_pad_with_black() {
        let cfg = TrainClassifierConfig {
            image_size: 6,
            pad: 2,
            flip: false,
            input_norm: InputNorm {
                mean: [0.286; 3],
                std: [0.353; 3],
            },
            ..Default::default()
        };
        // A black batch stays black, whatever the shifts: the padding is black too.
        let pixels = Tensor::zeros([8, 6, 6, 3], (Kind::Uint8, Device::Cpu));
        let x = normalise_images_with(&pixels, &cfg.input_norm);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let y = augment(&x, &cfg, &mut rng);
        assert_eq!(y.size(), vec![8, 3, 6, 6]);
        assert!(
            y.allclose(&x, 1e-6, 1e-6, false),
            "a shifted black image changed"
        );
        // A white image shows the black border of its shift somewhere in the batch.
        let white = normalise_images_with(&(pixels + 255), &cfg.input_norm);
        let shifted = augment(&white, &cfg, &mut rng);
        let black = cfg.input_norm.black(Device::Cpu);
        let at_black = (shifted - black)
            .abs()
            .lt(1e-6)
            .sum(Kind::Int64)
            .int64_value(&[]);
        assert!(at_black > 0, "no black border after 8 random shifts");
    }
}
