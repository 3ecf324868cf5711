//! Backbone training (stage `remind-train-backbone`): trains the frozen part G of REMIND's
//! network on a CLEVR-format data set, supervised by the scene annotations.
//!
//! REMIND's G is pre-trained on ImageNet and then frozen. No ImageNet weights can be
//! fetched here, so for the embedded mini-CLEVR pipeline this stage stands in for that
//! pre-training: a small ResNet is trained on the training split's images (optionally only
//! the first `max_images` by image index: the base-initialisation subset) and its G is
//! saved with torchvision names, ready for `remind-extract-features --weights`.
//!
//! - **Network**: the ResNet stem and blocks up to and including the cut (G, default
//!   `layer3`), so the features REMIND quantizes are exactly the ones trained; nothing after
//!   the cut is built. Two heads read the global average pool of G's output: a linear layer
//!   of 39 presence logits and a linear layer of 11 count logits. Only G is saved.
//! - **Targets** (per image, from its scene; see [`targets`]): presence of each of the 8
//!   colors, 3 shapes, 2 sizes and 2 materials, and of each of the 24 (color, shape) pairs
//!   (so that G has to bind color to shape at each place, not only detect colors), with
//!   binary cross-entropy summed over the 39 labels; the object count as one of 0..=10 with
//!   cross-entropy, weighted by `count_weight`. Summing the binary losses (rather than
//!   averaging them) keeps the presence labels from being drowned by the count loss.
//! - **Preprocessing**: exactly feature extraction's ([`crate::backbone::features::decode_image`],
//!   bicubic resize to `image_size`, [`crate::backbone::features::normalise_images`]); augmentation is
//!   a random horizontal flip, which keeps presence and count labels valid.
//! - **Optimiser**: Adam (beta 0.9/0.999, optional L2 weight decay) with a learning rate
//!   set explicitly per step: linear warm-up over the first 5% of steps, then cosine decay
//!   to zero. Adam was chosen over SGD because it reaches a usable G in the few epochs the
//!   time budget allows.
//! - **Held-out check**: the last `heldout_fraction` of the used images (by image index)
//!   are not trained on; after every epoch they are scored in eval mode: mean ROC AUC over
//!   the presence labels that have both classes there (also per group), accuracy of the
//!   presence labels at probability 0.5, count accuracy and mean absolute count error.
//! - **Determinism**: the initial weights (libtorch's generator), the example order and the
//!   flips (ChaCha8) all come from `seed`; on the CPU with a fixed thread count, two runs
//!   write identical weights.
//!
//! Outputs: the weights (safetensors, G's torchvision names, BatchNorm counters included,
//! metadata `remind.*` describing the network) and `train_report.json` beside them
//! ([`TrainReport`]).

pub mod metrics;
pub mod targets;

use crate::train::schedule::lr_at;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::artifact::atomic::write_bytes;
use crate::artifact::weights::file_sha256;
use crate::artifact::Producer;
use crate::backbone::features::{
    decode_image, normalise_images, normalise_images_for_training, InputNorm,
};
use crate::models::{save_weights, Arch, Cut, ResNet, ResNetConfig, Stem};
use crate::run::{config_hash, Precision, Progress};
use metrics::{mean_defined, roc_auc};
use targets::{label_groups, label_names, read_examples, Example, COUNT_CLASSES, NUM_LABELS};

/// Config section `train_backbone`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainBackboneConfig {
    /// CLEVR-format root: `images/train/*.png` and `scenes/CLEVR_train_scenes.json`.
    pub clevr_dir: Option<PathBuf>,
    /// Output weights (safetensors).
    pub out: Option<PathBuf>,
    /// Report (JSON); default: `train_report.json` beside `out`.
    pub report: Option<PathBuf>,
    /// Use only the first N training images by image index (the base-init subset).
    pub max_images: Option<usize>,
    /// Side of the square the images are resized to.
    pub image_size: usize,
    pub arch: Arch,
    /// Base channels.
    pub width: i64,
    pub stem: Stem,
    /// Where G ends (the network is trained up to here).
    pub cut: Cut,
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate of Adam.
    pub lr: f64,
    /// L2 weight decay (Adam's coupled form).
    pub weight_decay: f64,
    /// Weight of the count cross-entropy against the summed presence losses.
    pub count_weight: f64,
    /// Fraction of the used images (the last ones by index) held out for the metrics.
    pub heldout_fraction: f64,
    /// Random horizontal flips.
    pub flip: bool,
    pub seed: u64,
    /// Image decoding threads.
    pub decode_threads: usize,
    /// Compute precision of the training and evaluation forward passes ([`Precision`]:
    /// fp32, or bf16 mixed precision with fp32 master weights, optimiser and losses). Left
    /// out of the config hash while fp32, so earlier runs hash as before.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for TrainBackboneConfig {
    fn default() -> Self {
        Self {
            clevr_dir: None,
            out: None,
            report: None,
            max_images: None,
            image_size: 128,
            arch: Arch::ResNet18,
            width: 16,
            stem: Stem::ImageNet,
            cut: Cut {
                stage: 3,
                block: None,
            },
            epochs: 10,
            batch: 32,
            lr: 4e-3,
            weight_decay: 0.0,
            count_weight: 1.0,
            heldout_fraction: 0.1,
            flip: true,
            seed: 0,
            decode_threads: 2,
            precision: Precision::Fp32,
        }
    }
}

impl TrainBackboneConfig {
    pub fn backbone(&self) -> ResNetConfig {
        ResNetConfig::new(self.arch, self.width, self.stem)
    }

    /// The report path: `report`, else `train_report.json` beside `out`.
    pub fn report_path(&self, out: &Path) -> PathBuf {
        self.report.clone().unwrap_or_else(|| {
            out.parent()
                .map(|d| d.join("train_report.json"))
                .unwrap_or_else(|| "train_report.json".into())
        })
    }

    pub fn required(&self) -> Result<(&Path, &Path)> {
        let root = self
            .clevr_dir
            .as_deref()
            .context("no data set: give --clevr-dir or train_backbone.clevr_dir")?;
        let out = self
            .out
            .as_deref()
            .context("no output: give --out or train_backbone.out")?;
        Ok((root, out))
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            (16..=1024).contains(&self.image_size),
            "train_backbone.image_size {} out of range (16..=1024)",
            self.image_size
        );
        ensure!(
            (1..=10_000).contains(&self.epochs),
            "train_backbone.epochs must be 1..=10000, found {}",
            self.epochs
        );
        ensure!(self.batch >= 1, "train_backbone.batch must be at least 1");
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "train_backbone.lr must be a positive number, found {}",
            self.lr
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "train_backbone.weight_decay must be >= 0, found {}",
            self.weight_decay
        );
        ensure!(
            self.count_weight.is_finite() && self.count_weight >= 0.0,
            "train_backbone.count_weight must be >= 0, found {}",
            self.count_weight
        );
        ensure!(
            (0.0..=0.5).contains(&self.heldout_fraction),
            "train_backbone.heldout_fraction must be in [0, 0.5], found {}",
            self.heldout_fraction
        );
        ensure!(
            self.max_images != Some(0),
            "train_backbone.max_images must be at least 1"
        );
        ensure!(
            (1..=64).contains(&self.decode_threads),
            "train_backbone.decode_threads must be 1..=64"
        );
        self.backbone().validate()?;
        self.backbone().cut_index(self.cut)?;
        Ok(())
    }
}

/// Held-out scores after one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// Mean ROC AUC over the presence labels with both classes among the held-out images
    /// (0.5 is chance); `None` when no label has both.
    pub mean_auc: Option<f64>,
    /// Mean AUC per label group (color, shape, size, material, color_shape).
    pub group_auc: BTreeMap<String, Option<f64>>,
    /// How many labels the mean AUC covers.
    pub labels_scored: usize,
    /// Presence labels right at probability 0.5, over all labels and images.
    pub attribute_accuracy: f64,
    pub count_accuracy: f64,
    pub count_mae: f64,
}

/// One epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean over the epoch's batches of the total loss and of its two parts.
    pub loss: f64,
    pub presence_loss: f64,
    pub count_loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub heldout: Option<HeldOut>,
    /// Training plus held-out scoring.
    pub seconds: f64,
}

/// `train_report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub clevr_dir: String,
    pub scenes_file: String,
    pub weights: String,
    pub arch: Arch,
    pub width: i64,
    pub stem: Stem,
    pub cut: Cut,
    pub image_size: usize,
    /// G's output for one image, HWC.
    pub feature_shape: [usize; 3],
    /// Images used (first by index), of which trained on and held out.
    pub images: usize,
    pub train_images: usize,
    pub heldout_images: usize,
    /// Image indices of the first and last held-out images.
    pub heldout_index_range: Option<[usize; 2]>,
    pub labels: Vec<String>,
    pub count_classes: usize,
    pub optimizer: String,
    pub epochs: usize,
    pub batch: usize,
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub count_weight: f64,
    pub flip: bool,
    pub seed: u64,
    pub device: String,
    pub threads: i32,
    pub per_epoch: Vec<EpochReport>,
    /// Held-out scores of the saved weights (the last epoch's).
    pub heldout: Option<HeldOut>,
    pub decode_seconds: f64,
    pub train_seconds: f64,
    pub total_seconds: f64,
}

/// What a run wrote.
#[derive(Debug)]
pub struct TrainOutcome {
    pub weights: PathBuf,
    pub report_path: PathBuf,
    pub report: TrainReport,
    pub producer: Producer,
}

/// What determines the weights: hashed into the producer's config hash.
#[derive(Serialize)]
struct OutputParams<'a> {
    scenes_sha256: &'a str,
    max_images: Option<usize>,
    image_size: usize,
    arch: Arch,
    width: i64,
    stem: Stem,
    cut: Cut,
    epochs: usize,
    batch: usize,
    lr: f64,
    weight_decay: f64,
    count_weight: f64,
    heldout_fraction: f64,
    flip: bool,
    seed: u64,
}

/// The network being trained: G and the two heads on its pooled output.
struct Model {
    g: ResNet,
    presence: nn::Linear,
    count: nn::Linear,
    /// G's forward passes run in this precision; the heads and losses in fp32.
    precision: Precision,
}

impl Model {
    /// Presence logits `[N, 39]` and count logits `[N, 11]`.
    fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let z = (self.precision)
            .forward(x.device(), x, |x| self.g.forward_t(x, train))
            .mean_dim(&[2i64, 3][..], false, Kind::Float);
        (z.apply(&self.presence), z.apply(&self.count))
    }
}

/// Decoded images and their targets, on the CPU.
struct Data {
    /// `[N, S, S, 3]` bytes.
    pixels: Tensor,
    /// `[N, 39]` float.
    labels: Tensor,
    /// `[N]` int64.
    counts: Tensor,
}

impl Data {
    fn rows(&self, idx: &[i64]) -> (Tensor, Tensor, Tensor) {
        let i = Tensor::from_slice(idx);
        (
            self.pixels.index_select(0, &i),
            self.labels.index_select(0, &i),
            self.counts.index_select(0, &i),
        )
    }
}

/// Trains G on `cfg.clevr_dir`'s training split, writes the weights and the report.
/// `on_epoch` sees every epoch's report as soon as it is done.
pub fn train_backbone(
    cfg: &TrainBackboneConfig,
    device: Device,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<TrainOutcome> {
    let start = Instant::now();
    cfg.validate()?;
    cfg.precision.prepare(device, "train_backbone.precision")?;
    let (root, out) = cfg.required()?;
    ensure!(
        root.is_dir(),
        "{}: no such data-set folder (expected a CLEVR-format root)",
        root.display()
    );
    let scenes_file = root.join("scenes").join("CLEVR_train_scenes.json");
    let image_dir = root.join("images").join("train");
    let mut examples = read_examples(&scenes_file, &image_dir)?;
    if let Some(n) = cfg.max_images {
        examples.truncate(n);
    }
    let n = examples.len();
    let held = ((n as f64) * cfg.heldout_fraction).round() as usize;
    let held = held.min(n.saturating_sub(1));
    let n_train = n - held;
    ensure!(
        n_train >= 2,
        "{}: {n} image(s) leave {n_train} to train on after holding out {held}; at least 2 are needed",
        scenes_file.display()
    );

    let backbone = cfg.backbone();
    let feature_shape = backbone.feature_shape(cfg.cut, cfg.image_size)?;
    let scenes_sha = file_sha256(&scenes_file)?;
    let hash = config_hash(&OutputParams {
        scenes_sha256: &scenes_sha,
        max_images: cfg.max_images,
        image_size: cfg.image_size,
        arch: cfg.arch,
        width: cfg.width,
        stem: cfg.stem,
        cut: cfg.cut,
        epochs: cfg.epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        count_weight: cfg.count_weight,
        heldout_fraction: cfg.heldout_fraction,
        flip: cfg.flip,
        seed: cfg.seed,
    })?;
    let producer = Producer::new("train-backbone", &hash)
        .param("arch", cfg.arch.name())
        .param("width", cfg.width)
        .param("stem", cfg.stem.name())
        .param("cut", cfg.cut.to_string())
        .param("image_size", cfg.image_size)
        .param("images", n)
        .param("scenes", scenes_file.display().to_string())
        .param("scenes_sha256", scenes_sha.clone());

    let data = decode_all(&examples, cfg.image_size, cfg.decode_threads)?;
    let decode_seconds = start.elapsed().as_secs_f64();

    let train_start = Instant::now();
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let root_path = vs.root();
    let g = ResNet::g(&root_path, backbone, cfg.cut)?;
    let channels = g.out_channels();
    let heads = &root_path / "head";
    let model = Model {
        presence: nn::linear(
            &heads / "presence",
            channels,
            NUM_LABELS as i64,
            Default::default(),
        ),
        count: nn::linear(
            &heads / "count",
            channels,
            COUNT_CLASSES as i64,
            Default::default(),
        ),
        g,
        precision: cfg.precision,
    };
    let mut opt = nn::Adam {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&vs, cfg.lr)
    .map_err(|e| anyhow!("cannot build the optimiser: {e}"))?;

    let steps_per_epoch = n_train.div_ceil(cfg.batch);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..n_train as i64).collect();
    let heldout_rows: Vec<i64> = (n_train as i64..n as i64).collect();
    let mut per_epoch = Vec::with_capacity(cfg.epochs);
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let mut progress = Progress::new(
            &format!("train-backbone epoch {epoch}/{}", cfg.epochs),
            n_train as u64,
        );
        let mut sums = [0f64; 3];
        let mut lr = cfg.lr;
        for chunk in order.chunks(cfg.batch) {
            let flips: Vec<bool> = chunk.iter().map(|_| cfg.flip && rng.random()).collect();
            lr = lr_at(step, total_steps, cfg.lr);
            opt.set_lr(lr);
            let losses = guarded(|| {
                let (pixels, labels, counts) = data.rows(chunk);
                let mut x =
                    normalise_images_for_training(&pixels.to_device(device), &InputNorm::default());
                if flips.iter().any(|&f| f) {
                    let mask = Tensor::from_slice(&flips)
                        .view([-1, 1, 1, 1])
                        .to_device(device);
                    x = x.flip([3]).where_self(&mask, &x);
                }
                let (p, c) = model.forward(&x, true);
                let b = chunk.len() as f64;
                let presence = p.binary_cross_entropy_with_logits::<Tensor>(
                    &labels.to_device(device),
                    None,
                    None,
                    Reduction::Sum,
                ) / b;
                let count = c.cross_entropy_for_logits(&counts.to_device(device));
                let loss = &presence + &count * cfg.count_weight;
                opt.zero_grad();
                loss.backward();
                opt.step();
                [
                    loss.double_value(&[]),
                    presence.double_value(&[]),
                    count.double_value(&[]),
                ]
            })
            .with_context(|| format!("training step {} (epoch {epoch})", step + 1))?;
            ensure!(
                losses[0].is_finite(),
                "training diverged at step {} (epoch {epoch}): loss {}; lower train_backbone.lr",
                step + 1,
                losses[0]
            );
            for (s, l) in sums.iter_mut().zip(losses) {
                *s += l;
            }
            step += 1;
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        let heldout = if heldout_rows.is_empty() {
            None
        } else {
            Some(evaluate(&model, &data, &heldout_rows, device, cfg.batch)?)
        };
        let k = steps_per_epoch as f64;
        let report = EpochReport {
            epoch,
            loss: sums[0] / k,
            presence_loss: sums[1] / k,
            count_loss: sums[2] / k,
            lr,
            heldout,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        per_epoch.push(report);
    }
    let train_seconds = train_start.elapsed().as_secs_f64();

    // Only G is saved: a CPU store holding G's names, copied from the trained one.
    let mut out_vs = nn::VarStore::new(Device::Cpu);
    ResNet::g(&out_vs.root(), backbone, cfg.cut)?;
    out_vs
        .copy(&vs)
        .map_err(|e| anyhow!("cannot copy G's trained weights: {e}"))?;
    let heldout = per_epoch.last().and_then(|e| e.heldout.clone());
    let report_path = cfg.report_path(out);
    let mut report = TrainReport {
        clevr_dir: root.display().to_string(),
        scenes_file: scenes_file.display().to_string(),
        weights: out.display().to_string(),
        arch: cfg.arch,
        width: cfg.width,
        stem: cfg.stem,
        cut: cfg.cut,
        image_size: cfg.image_size,
        feature_shape,
        images: n,
        train_images: n_train,
        heldout_images: held,
        heldout_index_range: (held > 0)
            .then(|| [examples[n_train].image_index, examples[n - 1].image_index]),
        labels: label_names(),
        count_classes: COUNT_CLASSES,
        optimizer: "adam".into(),
        epochs: cfg.epochs,
        batch: cfg.batch,
        steps: total_steps,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        count_weight: cfg.count_weight,
        flip: cfg.flip,
        seed: cfg.seed,
        device: format!("{device:?}"),
        threads: tch::get_num_threads(),
        per_epoch,
        heldout,
        decode_seconds,
        train_seconds,
        total_seconds: 0.0,
    };
    let mut metadata = HashMap::from([
        ("remind.arch".to_string(), cfg.arch.name().to_string()),
        ("remind.width".into(), cfg.width.to_string()),
        ("remind.stem".into(), cfg.stem.name().into()),
        ("remind.cut".into(), cfg.cut.to_string()),
        ("remind.part".into(), "g".into()),
        ("remind.image_size".into(), cfg.image_size.to_string()),
        ("remind.producer".into(), "train-backbone".into()),
        ("remind.config_hash".into(), hash.clone()),
    ]);
    if let Some(auc) = report.heldout.as_ref().and_then(|h| h.mean_auc) {
        metadata.insert("remind.heldout_mean_auc".into(), format!("{auc:.4}"));
    }
    report.total_seconds = start.elapsed().as_secs_f64();
    // The report first: once the weights exist under their name, so does their report.
    write_bytes(&report_path, &serde_json::to_vec_pretty(&report)?)?;
    let weights = save_weights(&out_vs, out, metadata)?;
    Ok(TrainOutcome {
        weights,
        report_path,
        report,
        producer,
    })
}

/// Decodes every example's image to `size x size` RGB on `threads` threads.
fn decode_all(examples: &[Example], size: usize, threads: usize) -> Result<Data> {
    let per_image = size * size * 3;
    let mut pixels = vec![0u8; examples.len() * per_image];
    let chunk = examples.len().div_ceil(threads).max(1);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = pixels
            .chunks_mut(chunk * per_image)
            .zip(examples.chunks(chunk))
            .map(|(buf, items)| {
                s.spawn(move || -> Result<()> {
                    for (dst, ex) in buf.chunks_mut(per_image).zip(items) {
                        let px = decode_image(&ex.path, size as u32).with_context(|| {
                            format!("training image of image_index {}", ex.image_index)
                        })?;
                        dst.copy_from_slice(&px);
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow!("an image decoding thread panicked"))??;
        }
        Ok(())
    })?;
    let n = examples.len() as i64;
    let s = size as i64;
    let labels: Vec<f32> = examples.iter().flat_map(|e| e.labels).collect();
    let counts: Vec<i64> = examples.iter().map(|e| e.count as i64).collect();
    Ok(Data {
        pixels: Tensor::from_slice(&pixels).view([n, s, s, 3]),
        labels: Tensor::from_slice(&labels).view([n, NUM_LABELS as i64]),
        counts: Tensor::from_slice(&counts),
    })
}

/// Scores `rows` of `data` in eval mode.
fn evaluate(
    model: &Model,
    data: &Data,
    rows: &[i64],
    device: Device,
    batch: usize,
) -> Result<HeldOut> {
    let mut scores: Vec<f32> = Vec::with_capacity(rows.len() * NUM_LABELS);
    let mut predicted: Vec<i64> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch.max(1)) {
        let (p, c) = guarded(|| {
            let _guard = tch::no_grad_guard();
            let (pixels, _, _) = data.rows(chunk);
            let x = normalise_images(&pixels.to_device(device));
            let (p, c) = model.forward(&x, false);
            (
                p.to_device(Device::Cpu).flatten(0, -1),
                c.argmax(1, false).to_device(Device::Cpu),
            )
        })
        .context("scoring the held-out images")?;
        scores.extend(Vec::<f32>::try_from(&p)?);
        predicted.extend(Vec::<i64>::try_from(&c)?);
    }
    let (_, labels, counts) = data.rows(rows);
    let labels = Vec::<f32>::try_from(&labels.flatten(0, -1))?;
    let counts = Vec::<i64>::try_from(&counts)?;
    let n = rows.len();
    let auc: Vec<Option<f64>> = (0..NUM_LABELS)
        .map(|j| {
            let s: Vec<f32> = (0..n).map(|i| scores[i * NUM_LABELS + j]).collect();
            let l: Vec<bool> = (0..n).map(|i| labels[i * NUM_LABELS + j] > 0.5).collect();
            roc_auc(&s, &l)
        })
        .collect();
    let group_auc = label_groups()
        .into_iter()
        .map(|(name, range)| (name.to_string(), mean_defined(auc[range].iter().copied())))
        .collect();
    let right = scores
        .iter()
        .zip(&labels)
        .filter(|(s, l)| (**s > 0.0) == (**l > 0.5))
        .count();
    let count_right = predicted
        .iter()
        .zip(&counts)
        .filter(|(p, c)| p == c)
        .count();
    let count_err: i64 = predicted
        .iter()
        .zip(&counts)
        .map(|(p, c)| (p - c).abs())
        .sum();
    Ok(HeldOut {
        mean_auc: mean_defined(auc.iter().copied()),
        group_auc,
        labels_scored: auc.iter().flatten().count(),
        attribute_accuracy: right as f64 / scores.len() as f64,
        count_accuracy: count_right as f64 / n as f64,
        count_mae: count_err as f64 / n as f64,
    })
}

/// Runs libtorch work, turning its panics (shape errors, out of memory) into errors.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let text = if let Some(s) = p.downcast_ref::<String>() {
            s.lines().next().unwrap_or("").to_string()
        } else if let Some(s) = p.downcast_ref::<&str>() {
            s.to_string()
        } else {
            "unknown panic".into()
        };
        anyhow!("libtorch failed: {text}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::clevr::{generate, GenerateClevrConfig};
    use crate::train::schedule::lr_at;

    #[test]
    fn lr_warms_up_then_decays_to_zero() {
        let total = 100;
        assert!((lr_at(0, total, 1.0) - 0.2).abs() < 1e-12);
        assert!((lr_at(4, total, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(5, total, 1.0) - 1.0).abs() < 1e-12);
        assert!(lr_at(50, total, 1.0) < 1.0 && lr_at(50, total, 1.0) > lr_at(80, total, 1.0));
        assert!(lr_at(99, total, 1.0) < 0.01);
        assert!(lr_at(0, 1, 0.5) == 0.5);
    }

    #[test]
    fn config_section_parses_and_validates() {
        let dir = std::env::temp_dir().join(format!("remind-tb-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(
            &path,
            "train_backbone:\n  clevr_dir: data/clevr\n  width: 8\n  cut: layer2\n  max_images: 100\n  epochs: 3\n",
        )
        .unwrap();
        let cfg: TrainBackboneConfig =
            crate::run::load_section(Some(&path), "train_backbone").unwrap();
        assert_eq!((cfg.width, cfg.epochs, cfg.max_images), (8, 3, Some(100)));
        assert_eq!(cfg.cut.to_string(), "layer2");
        assert_eq!(cfg.image_size, 128);
        cfg.validate().unwrap();
        let bad = TrainBackboneConfig {
            heldout_fraction: 0.9,
            ..cfg.clone()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("heldout_fraction"));
        assert_eq!(
            cfg.report_path(Path::new("a/w.safetensors")),
            Path::new("a/train_report.json")
        );
        std::fs::write(&path, "train_backbone:\n  epoch: 3\n").unwrap();
        let err = crate::run::load_section::<TrainBackboneConfig>(Some(&path), "train_backbone")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean 'epochs'"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Same seed, same thread count: the same weights, byte for byte; another seed differs.
    #[test]
    fn training_is_deterministic_on_cpu() {
        let _rng = crate::testing::tch_rng_lock();
        let dir = std::env::temp_dir().join(format!("remind-tb-det-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let gen = GenerateClevrConfig {
            image_size: 32,
            train_images: 10,
            val_images: 0,
            questions_per_image: 0,
            ..Default::default()
        };
        generate(&gen, &dir.join("clevr")).unwrap();
        let run = |name: &str, seed: u64| {
            let cfg = TrainBackboneConfig {
                clevr_dir: Some(dir.join("clevr")),
                out: Some(dir.join(name).join("w.safetensors")),
                image_size: 32,
                width: 4,
                epochs: 2,
                batch: 4,
                seed,
                ..Default::default()
            };
            let mut seen = 0;
            let outcome = train_backbone(&cfg, Device::Cpu, |_| seen += 1).unwrap();
            assert_eq!(seen, 2);
            assert_eq!(outcome.report.train_images, 9);
            assert_eq!(outcome.report.heldout_images, 1);
            assert_eq!(outcome.report.feature_shape, [2, 2, 16]);
            outcome.weights
        };
        let (a, b, c) = (run("a", 1), run("b", 1), run("c", 2));
        let all = |p: &Path| crate::artifact::weights::read_weights(p).unwrap().tensors;
        let (ta, tb) = (all(&a), all(&b));
        assert_eq!(ta.len(), tb.len());
        for ((na, x), (nb, y)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            assert!(x.equal(y), "same seed, different weights: {na}");
        }
        let tensor = |p: &Path| {
            crate::artifact::weights::read_weights(p)
                .unwrap()
                .tensors
                .into_iter()
                .find(|(n, _)| n == "layer3.1.conv2.weight")
                .unwrap()
                .1
        };
        assert!(!tensor(&a).equal(&tensor(&c)), "another seed, same weights");
        // Only G is saved, under torchvision's names.
        let names: Vec<String> = crate::artifact::weights::read_weights(&a)
            .unwrap()
            .tensors
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"bn1.num_batches_tracked".to_string()));
        assert!(names
            .iter()
            .all(|n| !n.starts_with("head") && !n.starts_with("layer4") && !n.starts_with("fc")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
