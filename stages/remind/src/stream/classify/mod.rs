//! Streaming image classification over PQ codes (REMIND's ImageNet protocol, and CORe50's
//! stream orders): F (the network after the cut) starts from the base-initialisation
//! weights, the buffer from the base set's codes; then the stream shows the other training
//! images one at a time in the order of `classify_stream.order` ([`order`]: by default
//! class by class), and at every evaluation point the model is scored on the validation
//! images of the classes seen so far (every class, in the iid and instance orders).
//!
//! - `remind`: per image, one SGD step on [the image] + r replayed items (2r drawn with
//!   mixup, mixed pairwise with lambda ~ Beta(alpha, alpha)), replayed maps randomly
//!   crop-resized; the per-class learning-rate schedule ([`LrSchedule`]); the image's codes
//!   then join the buffer (capacity-bounded, a random item of the largest class evicted).
//! - `finetune`: the same step on the image alone (no replay): the lower bound.
//! - `offline`: at each evaluation point, F from the base weights trained for several
//!   shuffled epochs on the codes of every training item of the classes seen so far: the
//!   upper bound Omega divides by.
//!
//! Every evaluation point writes the probabilities (artifact `probabilities`) and a
//! checkpoint (F, optimiser, buffer, RNG position, per-class counters) from which a run
//! resumes to the same result.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

pub mod augment;
pub mod loss;
pub mod order;

use crate::artifact::weights::read_weights;
use crate::artifact::{DType, Payload, Producer, TensorDataset, TensorSpec, TensorWriter};
use crate::buffer::Eviction;
use crate::data::images::labels::{Items, LabelSet};
use crate::models::{load_weights, Arch, Cut, ResNet, ResNetConfig, Stem, Unexpected};
use crate::run::device::upload;
use crate::run::{config_hash, Precision, Progress};
use crate::stream::compute;
use crate::stream::decode::{Decoder, StreamCodes};
use crate::stream::driver::{
    self, BareStep, Learner, Net, Overlap, Prepare, Replay, Resume, RunSpec, Step, Update,
};
use crate::stream::layout::MethodDir;
use crate::stream::offline;
use crate::stream::Method;
use crate::train::optim::{OptimKind, Optimizer};
use crate::train::schedule::{lr_at, LrSchedule};
use crate::train::top1_hits;
use augment::{draw_lambda, random_resized_crops};
use loss::{batch_loss, MixupLoss};
pub use order::{stream_plan, StreamOrder};

/// Config section `classify_stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifySettings {
    /// Where G ends (F = the rest); must match the features the codes were made from.
    pub cut: Cut,
    /// The network, for base weights without `remind.*` metadata (torchvision files).
    pub arch: Arch,
    pub width: i64,
    pub stem: Stem,
    /// The stream order ([`StreamOrder`]): `class_iid` (default; with base classes,
    /// REMIND's ImageNet protocol), `iid`, `instance`, `class_instance`. Left out of the
    /// config hash while the default, so earlier runs hash as before.
    #[serde(skip_serializing_if = "StreamOrder::is_default")]
    pub order: StreamOrder,
    /// Class orders: classes per evaluation point after the base classes.
    pub increment: usize,
    /// `iid` and `instance` orders: streamed items per evaluation point (default: a tenth
    /// of the stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// r: replayed items per update.
    pub replay: usize,
    /// Mixup's alpha (0 turns mixup off).
    pub mixup_alpha: f64,
    /// Random resized crops on the decoded maps (paper, section 3.3).
    pub random_crops: bool,
    /// Crop the new item too, as the authors' code does (all 2r + 1 maps); false crops only
    /// the replayed ones.
    pub crop_new_item: bool,
    /// Buffer capacity in items (None: unbounded).
    pub buffer_capacity: Option<usize>,
    pub eviction: Eviction,
    pub lr: LrSchedule,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Stream at most this many training images per class (seeded choice); None: all.
    pub max_train_per_class: Option<usize>,
    /// Offline baseline (the upper bound Omega divides by): F from the base weights trained
    /// at every evaluation point for this many shuffled epochs on the decoded codes of every
    /// training image seen, warm-up then cosine from `offline_lr`. With
    /// `offline_patience`, the most epochs.
    pub offline_epochs: usize,
    /// Train the offline baseline until its validation accuracy stops improving (issue
    /// #15): `offline_lr` after a one-epoch warm-up, the seen-class validation top-1
    /// measured after every epoch, the rate divided by 10 after this many epochs without a
    /// better one (twice), then stop at the next plateau, keeping the best epoch's weights
    /// ([`offline::train_offline`]). None: exactly `offline_epochs` epochs, warm-up then
    /// cosine. Left out of the config hash while None, so earlier runs hash as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_patience: Option<usize>,
    pub offline_batch: usize,
    pub offline_lr: f64,
    pub offline_weight_decay: f64,
    /// The stream's random resized crops in offline training too (off: the offline model
    /// sees the maps as evaluation does).
    pub offline_crops: bool,
    /// At the base point, the offline model is the base network itself (it was trained
    /// offline on those classes); true retrains F there too.
    pub offline_retrain_base: bool,
    pub eval_batch: usize,
    pub seed: u64,
    /// Compute precision of every method's forward passes ([`Precision`]: fp32, or bf16
    /// mixed precision with fp32 master weights, optimiser and losses). Left out of the
    /// config hash while fp32, so earlier runs hash as before.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for ClassifySettings {
    fn default() -> Self {
        Self {
            cut: Cut {
                stage: 4,
                block: Some(0),
            },
            arch: Arch::ResNet18,
            width: 64,
            stem: Stem::ImageNet,
            order: StreamOrder::ClassIid,
            increment: 100,
            eval_every: None,
            replay: 50,
            mixup_alpha: 0.1,
            random_crops: true,
            crop_new_item: true,
            buffer_capacity: Some(959_665),
            eviction: Eviction::Random,
            lr: LrSchedule::default(),
            momentum: 0.9,
            weight_decay: 1e-5,
            max_train_per_class: None,
            offline_epochs: 10,
            offline_patience: None,
            offline_batch: 128,
            offline_lr: 0.05,
            offline_weight_decay: 5e-4,
            offline_crops: false,
            offline_retrain_base: false,
            eval_batch: 512,
            seed: 0,
            precision: Precision::Fp32,
        }
    }
}

impl ClassifySettings {
    fn validate(&self) -> Result<()> {
        ensure!(
            self.increment >= 1,
            "classify_stream.increment must be at least 1"
        );
        ensure!(
            self.eval_every != Some(0),
            "classify_stream.eval_every: expected at least 1 (or absent), found 0"
        );
        ensure!(
            self.max_train_per_class.is_none() || self.order == StreamOrder::ClassIid,
            "classify_stream.max_train_per_class applies to order class_iid only (found order \
             {}): subsample at import instead (import_images.frame_step for video)",
            self.order
        );
        ensure!(
            self.mixup_alpha >= 0.0 && self.mixup_alpha.is_finite(),
            "classify_stream.mixup_alpha must be >= 0"
        );
        ensure!(
            self.offline_patience != Some(0),
            "classify_stream.offline_patience must be at least 1 (or absent)"
        );
        ensure!(
            self.offline_batch >= 1 && self.eval_batch >= 1,
            "classify_stream batches must be positive"
        );
        ensure!(
            self.buffer_capacity != Some(0),
            "classify_stream.buffer_capacity must be positive (or absent)"
        );
        self.lr.validate()
    }
}

/// Input artifacts of a run.
pub struct ClassifyInputs<'a> {
    pub labels: &'a Path,
    /// Codes of every item (training and validation).
    pub codes: &'a Path,
    pub codebook: &'a Path,
    /// The base-initialisation weights of the whole network (F is read from them).
    pub base_weights: &'a Path,
    /// The content digest of every input ([`crate::run::contract`]): checkpoints made from
    /// other inputs are stale. `None` keys them by the codebook, weights and config alone.
    pub inputs_digest: Option<&'a str>,
}

struct Ctx<'a> {
    s: &'a ClassifySettings,
    set: LabelSet,
    codes: TensorDataset,
    /// Row in `codes` of each training / validation item.
    train_rows: Vec<usize>,
    val_rows: Vec<usize>,
    net: ResNetConfig,
    base_weights: &'a Path,
    num_classes: usize,
    run: RunSpec,
    device: Device,
}

impl Ctx<'_> {
    /// The codes of training item `row` of the label table.
    fn train_codes(&self, row: usize) -> Result<&[u8]> {
        self.codes.row_u8(self.train_rows[row])
    }
    fn updater(&self) -> Updater<'_> {
        Updater {
            s: self.s,
            decoder: self.run.codes.decoder(),
            loss: MixupLoss::for_device(self.device),
        }
    }
}

/// The network shape of the base weights: from their `remind.*` metadata (weights written
/// here), else the config's `arch`/`width`/`stem` with `fc.weight`'s rows as the classes
/// (torchvision-format checkpoints).
fn net_config(weights: &Path, s: &ClassifySettings) -> Result<ResNetConfig> {
    let file = read_weights(weights)?;
    let meta = &file.metadata;
    let p = weights.display();
    let mut cfg = ResNetConfig::new(s.arch, s.width, s.stem);
    if let Some(arch) = meta.get("remind.arch") {
        cfg.arch = arch.parse()?;
    }
    if let Some(stem) = meta.get("remind.stem") {
        cfg.stem = stem.parse()?;
    }
    if let Some(w) = meta.get("remind.width") {
        cfg.width = w
            .parse()
            .with_context(|| format!("{p}: remind.width '{w}' is not a number"))?;
    }
    let fc = file
        .tensors
        .iter()
        .find(|(n, _)| n == "fc.weight" || n == "module.fc.weight")
        .with_context(|| format!("{p}: no fc.weight: F needs the whole network's weights"))?;
    cfg.num_classes = fc.1.size()[0];
    // F starts from these values: a NaN would only show later as a diverged update.
    for (name, t) in &file.tensors {
        if t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0 {
            bail!("{p}: tensor '{name}' holds NaN or infinite values: base weights must be finite");
        }
    }
    Ok(cfg)
}

/// Checks that `base_weights` are the weights the features behind `codes` were extracted
/// with (G and F of one network, REMIND sec. 3.1), when the codes name their features and
/// those are still there to ask; silent otherwise.
fn check_same_network(codes: &TensorDataset, base_weights: &Path, weights_sha: &str) -> Result<()> {
    let producer = codes.head().producer()?;
    let Some(features) = producer.params.get("features").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let Ok(fds) = TensorDataset::open(Path::new(features), "features") else {
        return Ok(());
    };
    let fp = fds.head().producer()?;
    let Some(made_with) = fp.params.get("weights_sha256").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    if made_with != weights_sha {
        let show = |k: &str| fp.params.get(k).map_or("?".into(), |v| v.to_string());
        let meta = read_weights(base_weights)?.metadata;
        let arch = meta
            .get("remind.arch")
            .map_or("unknown arch", String::as_str);
        let width = meta.get("remind.width").map_or("?", String::as_str);
        bail!(
            "{}: base weights ({arch}, width {width}, sha256 {}) are not the weights the codes' \
             features were extracted with ({features}: arch {}, width {}, weights sha256 {}): \
             F and G must come from one network",
            base_weights.display(),
            &weights_sha[..12.min(weights_sha.len())],
            show("arch"),
            show("width"),
            &made_with[..12.min(made_with.len())]
        );
    }
    Ok(())
}

/// Rows of `codes` holding `items`' ids.
fn rows_of(
    items: &Items,
    codes: &TensorDataset,
    all_ids: &[u64],
    labels: &Path,
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(items.len());
    let mut missing = Vec::new();
    for &id in &items.ids {
        match codes.find(id, all_ids) {
            Some(r) => out.push(r),
            None => missing.push(id),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: {} item(s) of {} have no codes (first ids: {:?}): extract the codes of every image",
            codes.root().display(),
            missing.len(),
            labels.display(),
            &missing[..missing.len().min(5)]
        );
    }
    Ok(out)
}

/// Runs `method` over the stream, writing under `<out>/<method>/`.
pub fn run_classify_stream(
    s: &ClassifySettings,
    inputs: &ClassifyInputs,
    out: &Path,
    method: Method,
    device: Device,
    resume: Resume,
) -> Result<()> {
    s.validate()?;
    let record = s.precision.prepare(device, "classify_stream.precision")?;
    let set = LabelSet::read(inputs.labels)?;
    let codes = TensorDataset::open(inputs.codes, "codes")?;
    let mut stream_codes = StreamCodes::open(inputs.codebook, &[&codes], device, false)?;
    stream_codes.channels_last = !s.precision.is_fp32();
    let pq = &stream_codes.pq;
    let codebook_hash = &stream_codes.codebook_hash;
    let net = net_config(inputs.base_weights, s)?;
    ensure!(
        net.num_classes as usize == set.num_classes(),
        "{}: the network has {} outputs but {} has {} classes",
        inputs.base_weights.display(),
        net.num_classes,
        inputs.labels.display(),
        set.num_classes()
    );
    let channels = net.channels_after(s.cut)? as usize;
    ensure!(
        channels == pq.dim(),
        "F after cut {} takes {channels} channels but the codebook {} has d = {}: the cut differs from the features'",
        s.cut,
        inputs.codebook.display(),
        pq.dim()
    );
    let all_ids = codes.ids()?;
    let train_rows = rows_of(&set.train, &codes, &all_ids, inputs.labels)?;
    let val_rows = rows_of(&set.val, &codes, &all_ids, inputs.labels)?;
    let plan = stream_plan(&set, s)?;
    let num_classes = set.num_classes();
    let weights_sha = crate::artifact::weights::file_sha256(inputs.base_weights)?;
    check_same_network(&codes, inputs.base_weights, &weights_sha)?;
    // Keyed by the config's section name, so a refused resume names `classify_stream.lr`.
    let config = serde_json::json!({
        "classify_stream": s,
        "codebook": codebook_hash,
        "base_weights_sha256": weights_sha,
        "train_images": set.train.ids.len(),
    });
    let hash = config_hash(&config)?;
    eprintln!(
        "stream-train[{}]: {} base images of {} classes, {} streamed images of {} classes in \
         order {}, {} evaluation points",
        method.name(),
        plan.base_len(),
        set.base_classes,
        plan.items.len() - plan.base_len(),
        set.num_classes(),
        s.order,
        plan.boundaries.len()
    );
    let ctx = Ctx {
        s,
        set,
        codes,
        train_rows,
        val_rows,
        num_classes,
        net,
        base_weights: inputs.base_weights,
        run: RunSpec {
            task: "classification",
            plan,
            config_hash: hash,
            config,
            inputs_digest: inputs.inputs_digest.map(str::to_string),
            codes: stream_codes,
            seed: s.seed,
            buffer_capacity: s.buffer_capacity,
            eviction: s.eviction,
            lr_key: "classify_stream.lr.start",
        },
        device,
    };
    driver::run(&ctx, out, method, resume, record)
}

/// Scores the validation items of the first `seen` classes; returns their ids and the
/// softmax probabilities (row-major, all classes).
fn predict(ctx: &Ctx, f: &ResNet, seen: usize) -> Result<(Vec<u64>, Vec<f32>)> {
    let _g = tch::no_grad_guard();
    let rows = LabelSet::among(&ctx.set.val, seen);
    let mut probs = Vec::with_capacity(rows.len() * ctx.num_classes);
    let mut codes = Vec::new();
    for chunk in rows.chunks(ctx.s.eval_batch) {
        codes.clear();
        for &r in chunk {
            codes.extend_from_slice(ctx.codes.row_u8(ctx.val_rows[r])?);
        }
        let x = ctx.run.codes.decode(&codes)?;
        let p = ctx
            .s
            .precision
            .forward(ctx.device, &x, |x| f.forward_t(x, false))
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu)
            .flatten(0, -1);
        probs.extend(Vec::<f32>::try_from(&p)?);
    }
    let ids = rows.iter().map(|&r| ctx.set.val.ids[r]).collect();
    Ok((ids, probs))
}

/// Top-1 on the seen classes, for the log line.
fn top1(ctx: &Ctx, ids: &[u64], probs: &[f32]) -> f64 {
    let k = ctx.num_classes;
    let label: std::collections::HashMap<u64, i64> = ctx
        .set
        .val
        .ids
        .iter()
        .copied()
        .zip(ctx.set.val.labels.iter().copied())
        .collect();
    let correct = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| {
            let row = &probs[i * k..(i + 1) * k];
            let best = (0..k).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            label.get(id) == Some(&(best as i64))
        })
        .count();
    correct as f64 / ids.len().max(1) as f64
}

/// Writes the probabilities of evaluation point `k` on the validation items of the classes
/// seen, and logs their top-1.
fn write_probabilities(
    ctx: &Ctx,
    net: &Net<ResNet>,
    k: usize,
    dir: &MethodDir,
    method: Method,
) -> Result<()> {
    let seen = ctx.run.plan.seen_classes[k];
    let (ids, probs) = predict(ctx, &net.model, seen)?;
    eprintln!(
        "stream-train[{}]: {seen} classes scored (position {}): top-1 {:.2}% on {} validation images",
        method.name(),
        ctx.run.plan.position(k),
        100.0 * top1(ctx, &ids, &probs),
        ids.len()
    );
    let producer = Producer::new("stream-train", &ctx.run.config_hash)
        .param("method", method.name())
        .param("evaluation", k)
        .param("seen_classes", seen)
        .param("position", ctx.run.plan.position(k));
    // Named only when not the default, so class_iid files are as they were.
    let producer = if ctx.s.order.is_default() {
        producer
    } else {
        producer.param("order", ctx.s.order.name())
    };
    let spec = TensorSpec::new(
        "probabilities",
        &[ctx.num_classes],
        "K",
        DType::F32,
        producer,
    );
    let mut w = TensorWriter::create(&dir.probabilities(k), spec)?;
    w.write(&ids, Payload::F32(&probs), vec![])?;
    w.finish()?;
    Ok(())
}

/// What one streaming update needs besides the model: the settings, the decoder and how
/// the mixed loss is computed ([`MixupLoss::for_device`]).
pub struct Updater<'a> {
    pub s: &'a ClassifySettings,
    pub decoder: Decoder<'a>,
    pub loss: MixupLoss,
}

impl Updater<'_> {
    /// Items drawn from the buffer per update: r, or 2r when mixup pairs them.
    pub fn replay_draws(&self) -> usize {
        if self.s.mixup_alpha > 0.0 {
            2 * self.s.replay
        } else {
            self.s.replay
        }
    }

    /// One SGD step of F on a new item (`codes`, label `y`) and the replayed items drawn
    /// for it ([`replay_draws`](Self::replay_draws) of them; with mixup, mixed pairwise
    /// into r items with lambda ~ Beta(alpha, alpha)), replayed maps crop-augmented (paper,
    /// section 3.3). Uses and advances class `y`'s learning-rate counter in `counters`.
    /// [`prepare`](Self::prepare) then [`train`](Self::train).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        f: &ResNet,
        opt: &mut Optimizer,
        codes: &[u8],
        y: i64,
        replay: Option<Replay<'_>>,
        rng: &mut ChaCha8Rng,
        counters: &mut [u64],
    ) -> Result<Step> {
        let batch = self.prepare(codes, y, replay, rng)?;
        self.train(f, opt, batch, counters)
    }

    /// The part of an update that does not touch F: the new item's and the replayed items'
    /// codes decoded, cropped and mixed, the labels uploaded. Draws the crops and lambda
    /// from `rng`, in the order the update always drew them.
    pub fn prepare(
        &self,
        codes: &[u8],
        y: i64,
        replay: Option<Replay<'_>>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch> {
        let s = self.s;
        let device = self.decoder.device;
        let (mut ya, mut yb) = (vec![y], vec![y]);
        let mut lambda = 1.0;
        // The new item's codes first, then the replayed ones: decoded together and, as in
        // the authors' code, every map cropped (the new one first, when `crop_new_item`).
        let mut scratch = codes.to_vec();
        let (slots, labels) = match replay {
            Some(Replay { buffer: b, slots }) if !slots.is_empty() => {
                let mut slots = slots.to_vec();
                if s.mixup_alpha > 0.0 && slots.len() % 2 == 1 && slots.len() > 1 {
                    slots.pop();
                }
                let mut replayed = Vec::new();
                b.gather(&slots, &mut replayed);
                scratch.extend_from_slice(&replayed);
                let labels = b.labels_of(&slots);
                (slots, labels)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let all = self.decoder.decode(&scratch)?;
        let all = match (s.random_crops, s.crop_new_item) {
            (true, true) => random_resized_crops(&all, rng)?,
            (true, false) if !slots.is_empty() => {
                let n = slots.len() as i64;
                let replay = random_resized_crops(&all.narrow(0, 1, n), rng)?;
                Tensor::cat(&[all.narrow(0, 0, 1), replay], 0)
            }
            _ => all,
        };
        let x = if slots.is_empty() {
            all
        } else if s.mixup_alpha > 0.0 && slots.len() >= 2 {
            // Mixup (paper, section 3.3): the first r replayed maps with the other r, one
            // lambda ~ Beta(alpha, alpha) per update; the new item stays unmixed.
            let r = (slots.len() / 2) as i64;
            lambda = draw_lambda(s.mixup_alpha, rng)?;
            let a = all.narrow(0, 1, r);
            let bb = all.narrow(0, 1 + r, r);
            ya.extend_from_slice(&labels[..r as usize]);
            yb.extend_from_slice(&labels[r as usize..]);
            Tensor::cat(&[all.narrow(0, 0, 1), a * lambda + bb * (1.0 - lambda)], 0)
        } else {
            ya.extend_from_slice(&labels);
            yb.extend_from_slice(&labels);
            all
        };
        // With mixup both label sets travel in one upload.
        if lambda < 1.0 {
            ya.extend_from_slice(&yb);
        }
        Ok(Batch {
            targets: upload(&Tensor::from_slice(&ya), device),
            mix_weights: self.loss.weights(lambda, x.size()[0] as usize, device),
            x,
            lambda,
            y,
        })
    }

    /// The SGD step of F on a prepared batch at class `batch.y`'s learning rate; advances
    /// that class's counter in `counters`.
    pub fn train(
        &self,
        f: &ResNet,
        opt: &mut Optimizer,
        batch: Batch,
        counters: &mut [u64],
    ) -> Result<Step> {
        let Batch {
            x,
            targets,
            mix_weights,
            lambda,
            y,
        } = batch;
        let s = self.s;
        let logits = s
            .precision
            .forward(self.decoder.device, &x, |x| f.forward_t(x, true));
        let loss = batch_loss(&logits, &targets, lambda, mix_weights.as_ref());
        let counter = &mut counters[y as usize];
        let lr = s.lr.rate(*counter);
        *counter += 1;
        opt.backward_step(&loss, lr)?;
        Ok(Step {
            loss: loss.detach(),
            batch: x.size()[0] as usize,
        })
    }
}

/// One update's inputs for F, made by [`Updater::prepare`] (on the training device).
pub struct Batch {
    /// `[B, C, H, W]` maps: the new item first, then the replayed (mixed) ones.
    pub x: Tensor,
    /// `[B]` labels, or `[2B]` with mixup (both label sets of the mixed pairs).
    pub targets: Tensor,
    /// The label sets' weights of the gathered mixup loss ([`MixupLoss::weights`]).
    pub mix_weights: Option<Tensor>,
    /// Mixup's weight of the first label set (1: no mixup).
    pub lambda: f64,
    /// The new item's class (its learning-rate counter).
    pub y: i64,
}

/// The half of a classification update that does not touch F, for a second thread
/// ([`Learner::preparer`]): borrows only what may be shared across threads.
struct ClassifyPrep<'a> {
    updater: Updater<'a>,
    codes: &'a TensorDataset,
    train_rows: &'a [usize],
    train: &'a Items,
}

impl Prepare<Batch> for ClassifyPrep<'_> {
    fn prepare(
        &self,
        item: usize,
        replay: Option<Replay<'_>>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch> {
        let codes = self.codes.row_u8(self.train_rows[item])?;
        self.updater
            .prepare(codes, self.train.labels[item], replay, rng)
    }

    fn buffer_item(&self, item: usize) -> Result<(u64, i64, &[u8])> {
        Ok((
            self.train.ids[item],
            self.train.labels[item],
            self.codes.row_u8(self.train_rows[item])?,
        ))
    }
}

impl Learner for Ctx<'_> {
    type Model = ResNet;
    type Prepared = Batch;

    /// On a GPU (host-bound: BENCHMARKS.md, "On a GPU"); on the CPU every update runs whole
    /// (its work is arithmetic, which a second thread would only contend for), unless
    /// `overlap` says always or never ([`Overlap`]).
    fn preparer(&self, overlap: Overlap) -> Option<Box<dyn Prepare<Batch> + '_>> {
        let split = match overlap {
            Overlap::Default => self.device.is_cuda(),
            Overlap::Always => true,
            Overlap::Never => false,
        };
        split.then(|| {
            Box::new(ClassifyPrep {
                updater: self.updater(),
                codes: &self.codes,
                train_rows: &self.train_rows,
                train: &self.set.train,
            }) as Box<dyn Prepare<Batch> + '_>
        })
    }

    fn train(&self, net: &mut Net<ResNet>, prepared: Batch) -> Result<Step> {
        self.updater()
            .train(&net.model, &mut net.opt, prepared, &mut net.counters)
    }

    fn spec(&self) -> &RunSpec {
        &self.run
    }

    /// F with the base weights, and its optimiser.
    fn fresh(&self) -> Result<Net<ResNet>> {
        let vs = VarStore::new(self.device);
        let f = ResNet::f(&vs.root(), self.net, self.s.cut)?;
        load_weights(&vs, self.base_weights, Unexpected::Ignore)
            .with_context(|| format!("cannot load F from {}", self.base_weights.display()))?;
        let opt = Optimizer::new(
            &vs,
            OptimKind::Sgd {
                momentum: self.s.momentum,
                weight_decay: self.s.weight_decay,
            },
        );
        Ok(Net {
            vs,
            model: f,
            opt,
            counters: vec![0; self.num_classes],
        })
    }

    /// F already holds the base initialisation (`remind-train-classifier`'s weights).
    fn base_init(&self, _net: &mut Net<ResNet>, _method: Method) -> Result<()> {
        Ok(())
    }

    fn replay_draws(&self) -> usize {
        self.updater().replay_draws()
    }

    /// The image's id, label and codes.
    fn buffer_item(&self, row: usize) -> Result<(u64, i64, &[u8])> {
        Ok((
            self.set.train.ids[row],
            self.set.train.labels[row],
            self.train_codes(row)?,
        ))
    }

    fn describe(&self, row: usize) -> String {
        format!("training item id {}", self.set.train.ids[row])
    }

    fn update(&self, net: &mut Net<ResNet>, at: Update<'_>) -> Result<Step> {
        let Update {
            item: row,
            replay,
            rng,
            ..
        } = at;
        self.updater().update(
            &net.model,
            &mut net.opt,
            self.train_codes(row)?,
            self.set.train.labels[row],
            replay,
            rng,
            &mut net.counters,
        )
    }

    /// F from the base weights, trained on the codes of every training item of the classes
    /// seen at point `k`, in shuffled epochs ([`offline::train_offline`]: `offline_epochs`
    /// of them, or to a validation plateau with `offline_patience`).
    fn train_offline(&self, net: &mut Net<ResNet>, k: usize) -> Result<()> {
        if k == 0 && !self.s.offline_retrain_base {
            return Ok(());
        }
        let mut rows = self.run.plan.items[..self.run.plan.boundaries[k]].to_vec();
        let n = rows.len();
        let b = self.s.offline_batch;
        let per_epoch = n.div_ceil(b);
        let total = self.s.offline_epochs * per_epoch;
        let seen = self.run.plan.seen_classes[k];
        let mut order_rng = ChaCha8Rng::seed_from_u64(self.s.seed ^ ((k as u64 + 1) << 40));
        let mut progress = Progress::new(
            &format!("offline, {seen} classes"),
            (self.s.offline_epochs * n) as u64,
        );
        net.opt = Optimizer::new(
            &net.vs,
            OptimKind::Sgd {
                momentum: self.s.momentum,
                weight_decay: self.s.offline_weight_decay,
            },
        );
        let mut codes = Vec::new();
        let mut step = 0;
        let mut correct = 0i64;
        let epoch = |net: &mut Net<ResNet>, _e: usize, factor: Option<f64>| -> Result<()> {
            correct = 0;
            rows.shuffle(&mut order_rng);
            for chunk in rows.chunks(b) {
                codes.clear();
                for &r in chunk {
                    codes.extend_from_slice(self.train_codes(r)?);
                }
                let mut x = self.run.codes.decode(&codes)?;
                if self.s.offline_crops {
                    x = random_resized_crops(&x, &mut order_rng)?;
                }
                let y: Vec<i64> = chunk.iter().map(|&r| self.set.train.labels[r]).collect();
                let y = upload(&Tensor::from_slice(&y), self.device);
                let logits =
                    (self.s.precision).forward(self.device, &x, |x| net.model.forward_t(x, true));
                let loss = logits.cross_entropy_for_logits(&y);
                let lr = match factor {
                    // Linear warm-up over the first epoch, then the plateau's rate.
                    Some(f) => {
                        let warm = ((step + 1) as f64 / per_epoch as f64).min(1.0);
                        self.s.offline_lr * f * warm
                    }
                    None => lr_at(step, total, self.s.offline_lr),
                };
                net.opt.backward_step(&loss, lr)?;
                compute::count_step(chunk.len());
                correct += top1_hits(&logits, &y);
                step += 1;
                progress.inc(chunk.len() as u64);
            }
            Ok(())
        };
        let score = |net: &Net<ResNet>| -> Result<f64> {
            let (ids, probs) = predict(self, &net.model, seen)?;
            Ok(top1(self, &ids, &probs))
        };
        offline::train_offline(
            net,
            self.s.offline_epochs,
            self.s.offline_patience,
            &format!("stream-train[offline]: {seen} classes"),
            epoch,
            score,
        )?;
        progress.finish();
        let fit = correct as f64 / n.max(1) as f64;
        let note = if fit < 0.99 && self.s.offline_patience.is_none() {
            " (below 99%: raise classify_stream.offline_epochs, or set offline_patience)"
        } else {
            ""
        };
        eprintln!(
            "stream-train[offline]: {seen} classes: training top-1 {:.2}% in the last epoch{note}",
            100.0 * fit
        );
        Ok(())
    }

    fn evaluate(&self, net: &Net<ResNet>, k: usize, dir: &MethodDir, method: Method) -> Result<()> {
        write_probabilities(self, net, k, dir, method)
    }

    /// F's forward FLOPs on one decoded map ([`ResNetConfig::f_flops`]).
    fn forward_flops_per_item(&self) -> Result<f64> {
        let [h, w, _] = self.run.codes.code_shape;
        self.net.f_flops(self.s.cut, (h, w))
    }

    /// The SGD step of F on the first `batch` streamed images, decoded once.
    fn bare_step<'a>(&'a self, net: &'a mut Net<ResNet>, rows: &[usize]) -> Result<BareStep<'a>> {
        let mut codes = Vec::new();
        for &r in rows {
            codes.extend_from_slice(self.train_codes(r)?);
        }
        let x = self.run.codes.decode(&codes)?;
        let y: Vec<i64> = rows.iter().map(|&r| self.set.train.labels[r]).collect();
        let y = upload(&Tensor::from_slice(&y), self.device);
        let lr = self.s.lr.start;
        Ok(Box::new(move || {
            let loss = (self.s.precision)
                .forward(self.device, &x, |x| net.model.forward_t(x, true))
                .cross_entropy_for_logits(&y);
            net.opt.backward_step(&loss, lr)?;
            Ok(loss.detach())
        }))
    }
}
