//! Class-incremental streaming image classification (REMIND's ImageNet protocol) over PQ
//! codes: F (the network after the cut) starts from the base-initialisation weights, the
//! buffer from the base classes' codes; then the stream shows the other classes' training
//! images one at a time, class by class, and every `increment` classes the model is scored
//! on the validation images of every class seen so far.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use super::augment::{draw_lambda, random_resized_crops};
use super::labels::{Items, LabelSet};
use super::schedule::LrSchedule;
use crate::artifact::atomic::write_bytes;
use crate::artifact::weights::read_weights;
use crate::artifact::{DType, Payload, Producer, TensorDataset, TensorSpec, TensorWriter};
use crate::buffer::{Eviction, ReplayBuffer};
use crate::models::{load_weights, Arch, Cut, ResNet, ResNetConfig, Stem, Unexpected};
use crate::run::{config_hash, Progress};
use crate::stages::codebook::load_codebook;
use crate::stream::checkpoint::{
    accept_checkpoint, checkpoint_dir, latest_checkpoint, read_state, write_checkpoint,
    CheckpointState,
};
use crate::stream::vqa::Method;
use crate::stream::vqa_data::Decoder;
use crate::train::optim::{OptimKind, Optimizer};

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
    /// Classes per evaluation point after the base classes.
    pub increment: usize,
    /// r: replayed items per update.
    pub replay: usize,
    /// Mixup's alpha (0 turns mixup off).
    pub mixup_alpha: f64,
    pub random_crops: bool,
    /// Buffer capacity in items (None: unbounded).
    pub buffer_capacity: Option<usize>,
    pub eviction: Eviction,
    pub lr: LrSchedule,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Stream at most this many training images per class (seeded choice); None: all.
    pub max_train_per_class: Option<usize>,
    pub offline_epochs: usize,
    pub offline_batch: usize,
    pub offline_lr: f64,
    pub eval_batch: usize,
    pub seed: u64,
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
            increment: 100,
            replay: 50,
            mixup_alpha: 0.1,
            random_crops: true,
            buffer_capacity: Some(959_665),
            eviction: Eviction::Random,
            lr: LrSchedule::default(),
            momentum: 0.9,
            weight_decay: 1e-5,
            max_train_per_class: None,
            offline_epochs: 10,
            offline_batch: 128,
            offline_lr: 0.05,
            eval_batch: 512,
            seed: 0,
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
            self.mixup_alpha >= 0.0 && self.mixup_alpha.is_finite(),
            "classify_stream.mixup_alpha must be >= 0"
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

/// The evaluation points and the stream order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPlan {
    pub base_classes: usize,
    pub num_classes: usize,
    /// Classes seen at each evaluation point (the first is the base classes).
    pub seen_classes: Vec<usize>,
    /// Stream position (images streamed) at each evaluation point.
    pub positions: Vec<usize>,
    /// Rows of the label table's training items in stream order (base classes excluded).
    pub stream: Vec<usize>,
    /// Rows of the base classes' training items.
    pub base: Vec<usize>,
}

impl ClassPlan {
    pub fn new(set: &LabelSet, s: &ClassifySettings) -> Result<Self> {
        let (b, k) = (set.base_classes, set.num_classes());
        let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (row, &y) in set.train.labels.iter().enumerate() {
            by_class.entry(y).or_default().push(row);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x636c_6173);
        let mut base = Vec::new();
        let mut stream = Vec::new();
        let mut positions = vec![0];
        let mut seen_classes = vec![b];
        for c in 0..k {
            let mut rows = by_class.remove(&(c as i64)).unwrap_or_default();
            ensure!(
                !rows.is_empty(),
                "{}: class {c} ('{}') has no training images",
                set.path.display(),
                set.class_names[c]
            );
            rows.shuffle(&mut rng);
            if c < b {
                base.extend(rows);
                continue;
            }
            if let Some(cap) = s.max_train_per_class {
                rows.truncate(cap.max(1));
            }
            stream.extend(rows);
            if (c + 1 - b) % s.increment == 0 || c + 1 == k {
                positions.push(stream.len());
                seen_classes.push(c + 1);
            }
        }
        base.sort_unstable();
        Ok(Self {
            base_classes: b,
            num_classes: k,
            seen_classes,
            positions,
            stream,
            base,
        })
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
}

/// Where a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifyResume {
    No,
    /// The latest checkpoint (refused if made under another configuration).
    Latest,
    /// Discard a stale method folder, else continue from its latest checkpoint.
    RestartStale,
    /// The checkpoint of this evaluation index (0 = after the base classes).
    From(usize),
}

struct Ctx<'a> {
    s: &'a ClassifySettings,
    set: LabelSet,
    codes: TensorDataset,
    /// Row in `codes` of each training / validation item.
    train_rows: Vec<usize>,
    val_rows: Vec<usize>,
    pq: crate::pq::ProductQuantizer,
    code_shape: [usize; 3],
    net: ResNetConfig,
    base_weights: &'a Path,
    plan: ClassPlan,
    device: Device,
    hash: String,
    codebook_hash: String,
}

impl Ctx<'_> {
    fn decoder(&self) -> Decoder<'_> {
        Decoder {
            pq: &self.pq,
            code_shape: self.code_shape,
            device: self.device,
            l2_normalize: false,
        }
    }
    fn decode(&self, codes: &[u8]) -> Result<Tensor> {
        self.decoder().decode(codes)
    }
    fn train_codes(&self, row: usize) -> Result<&[u8]> {
        self.codes.row_u8(self.train_rows[row])
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
    Ok(cfg)
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
    resume: ClassifyResume,
) -> Result<()> {
    s.validate()?;
    let set = LabelSet::read(inputs.labels)?;
    let codes = TensorDataset::open(inputs.codes, "codes")?;
    let (pq, info) = load_codebook(inputs.codebook)?;
    let h = codes.meta("remind.codebook_hash")?;
    ensure!(
        h == info.codebook_hash,
        "{}: codes made with codebook {h}, but {} is {}: re-extract the codes",
        codes.root().display(),
        inputs.codebook.display(),
        info.codebook_hash
    );
    let shape = codes.shape().to_vec();
    ensure!(
        shape.len() == 3 && shape[2] == pq.num_subspaces(),
        "{}: codes shape {shape:?} does not fit M={}",
        codes.root().display(),
        pq.num_subspaces()
    );
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
    let plan = ClassPlan::new(&set, s)?;
    let weights_sha = crate::artifact::weights::file_sha256(inputs.base_weights)?;
    let hash = config_hash(&(s, &info.codebook_hash, &weights_sha, &set.train.ids.len()))?;
    eprintln!(
        "stream-train[{}]: {} base images of {} classes, {} streamed images of {} more classes, {} evaluation points",
        method.name(),
        plan.base.len(),
        plan.base_classes,
        plan.stream.len(),
        plan.num_classes - plan.base_classes,
        plan.positions.len()
    );
    let ctx = Ctx {
        s,
        set,
        codes,
        train_rows,
        val_rows,
        // Decoding happens where training does (see `Decoder::decode`).
        pq: pq.to_device(device)?,
        code_shape: [shape[0], shape[1], shape[2]],
        net,
        base_weights: inputs.base_weights,
        plan,
        device,
        hash,
        codebook_hash: info.codebook_hash,
    };
    write_bytes(&out.join("plan.json"), &serde_json::to_vec(&ctx.plan)?)?;
    let started = std::time::Instant::now();
    match method {
        Method::Offline => run_offline(&ctx, out, resume)?,
        _ => run_streaming(&ctx, out, method, resume)?,
    }
    let done = serde_json::json!({
        "task": "classification",
        "method": method.name(),
        "seen_classes": ctx.plan.seen_classes,
        "positions": ctx.plan.positions,
        "config_hash": ctx.hash,
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_bytes(
        &out.join(method.name()).join("complete.json"),
        &serde_json::to_vec_pretty(&done)?,
    )?;
    Ok(())
}

/// F with the base weights, and its optimiser.
fn new_f(ctx: &Ctx) -> Result<(VarStore, ResNet, Optimizer)> {
    let vs = VarStore::new(ctx.device);
    let f = ResNet::f(&vs.root(), ctx.net, ctx.s.cut)?;
    load_weights(&vs, ctx.base_weights, Unexpected::Ignore)
        .with_context(|| format!("cannot load F from {}", ctx.base_weights.display()))?;
    let opt = Optimizer::new(
        &vs,
        OptimKind::Sgd {
            momentum: ctx.s.momentum,
            weight_decay: ctx.s.weight_decay,
        },
    );
    Ok((vs, f, opt))
}

/// Scores the validation items of the first `seen` classes; returns their ids and the
/// softmax probabilities (row-major, all classes).
fn predict(ctx: &Ctx, f: &ResNet, seen: usize) -> Result<(Vec<u64>, Vec<f32>)> {
    let _g = tch::no_grad_guard();
    let rows = LabelSet::among(&ctx.set.val, seen);
    let mut probs = Vec::with_capacity(rows.len() * ctx.plan.num_classes);
    let mut codes = Vec::new();
    for chunk in rows.chunks(ctx.s.eval_batch) {
        codes.clear();
        for &r in chunk {
            codes.extend_from_slice(ctx.codes.row_u8(ctx.val_rows[r])?);
        }
        let x = ctx.decode(&codes)?;
        let p = f
            .forward_t(&x, false)
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
    let k = ctx.plan.num_classes;
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

/// Writes the probabilities of evaluation point `k`.
pub fn probabilities_path(method_dir: &Path, k: usize) -> PathBuf {
    method_dir
        .join("probabilities")
        .join(format!("eval-{k:03}.arrow"))
}

#[allow(clippy::too_many_arguments)]
fn evaluation_point(
    ctx: &Ctx,
    method_dir: &Path,
    method: Method,
    k: usize,
    vs: &VarStore,
    f: &ResNet,
    opt: &Optimizer,
    buffer: Option<&ReplayBuffer>,
    rng: &ChaCha8Rng,
    counters: &[u64],
) -> Result<()> {
    let seen = ctx.plan.seen_classes[k];
    let (ids, probs) = predict(ctx, f, seen)?;
    eprintln!(
        "stream-train[{}]: {seen} classes seen (position {}): top-1 {:.2}% on {} validation images",
        method.name(),
        ctx.plan.positions[k],
        100.0 * top1(ctx, &ids, &probs),
        ids.len()
    );
    let producer = Producer::new("stream-train", &ctx.hash)
        .param("method", method.name())
        .param("evaluation", k)
        .param("seen_classes", seen)
        .param("position", ctx.plan.positions[k]);
    let spec = TensorSpec::new(
        "probabilities",
        &[ctx.plan.num_classes],
        "K",
        DType::F32,
        producer,
    );
    let path = probabilities_path(method_dir, k);
    let mut w = TensorWriter::create(&path, spec)?;
    w.write(&ids, Payload::F32(&probs), vec![])?;
    w.finish()?;
    let state = CheckpointState {
        method: method.name().into(),
        boundary: k,
        position: ctx.plan.positions[k],
        config_hash: ctx.hash.clone(),
        rng_word_pos: rng.get_word_pos(),
        counters: counters.to_vec(),
    };
    write_checkpoint(method_dir, &state, |dir| {
        vs.save(dir.join("model.safetensors"))
            .context("cannot save F")?;
        opt.save(&dir.join("optim.safetensors"))?;
        if let Some(b) = buffer {
            b.save(
                &dir.join("buffer.arrow"),
                &ctx.codebook_hash,
                &ctx.code_shape,
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The checkpoint a run continues from, per `resume`.
fn resume_point(
    method_dir: &Path,
    resume: ClassifyResume,
    hash: &str,
    points: usize,
) -> Result<Option<(PathBuf, CheckpointState)>> {
    let found = match resume {
        ClassifyResume::No => return Ok(None),
        ClassifyResume::From(k) => {
            ensure!(
                k < points,
                "--resume-from {k}: this run has evaluation points 0..{}",
                points - 1
            );
            let dir = checkpoint_dir(method_dir, k);
            if !dir.join("state.json").is_file() {
                let have = latest_checkpoint(method_dir)?
                    .map(|(_, st)| format!("the latest is {}", st.boundary))
                    .unwrap_or_else(|| "there is none".into());
                bail!(
                    "--resume-from {k}: {} holds no checkpoint of evaluation point {k} ({have})",
                    method_dir.display()
                );
            }
            Some((dir.clone(), read_state(&dir)?))
        }
        ClassifyResume::Latest | ClassifyResume::RestartStale => latest_checkpoint(method_dir)?,
    };
    accept_checkpoint(
        method_dir,
        found,
        hash,
        resume == ClassifyResume::RestartStale,
    )
}

/// What one streaming update needs besides the model: the settings and the decoder.
pub struct Updater<'a> {
    pub s: &'a ClassifySettings,
    pub decoder: Decoder<'a>,
}

impl Updater<'_> {
    /// One SGD step of F on a new item (`codes`, label `y`) and, when `buffer` is given,
    /// r replayed items (2r mixed pairwise with mixup), crop-augmented. Uses and advances
    /// class `y`'s learning-rate counter. `scratch` is reused between calls. Returns the
    /// loss.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        f: &ResNet,
        opt: &mut Optimizer,
        codes: &[u8],
        y: i64,
        buffer: Option<&ReplayBuffer>,
        rng: &mut ChaCha8Rng,
        counters: &mut [u64],
        scratch: &mut Vec<u8>,
    ) -> Result<f64> {
        let s = self.s;
        let device = self.decoder.device;
        let (mut ya, mut yb) = (vec![y], vec![y]);
        let mut lambda = 1.0;
        let x = match buffer {
            Some(b) if !b.is_empty() && s.replay > 0 => {
                let mixup = s.mixup_alpha > 0.0;
                let want = if mixup { 2 * s.replay } else { s.replay };
                let mut slots = b.sample(want, rng);
                if mixup && slots.len() % 2 == 1 && slots.len() > 1 {
                    slots.pop();
                }
                b.gather(&slots, scratch);
                let labels = b.labels_of(&slots);
                let mut replay = self.decoder.decode(scratch)?;
                if s.random_crops {
                    replay = random_resized_crops(&replay, rng)?;
                }
                if mixup && slots.len() >= 2 {
                    let r = slots.len() / 2;
                    lambda = draw_lambda(s.mixup_alpha, rng)?;
                    let a = replay.narrow(0, 0, r as i64);
                    let bb = replay.narrow(0, r as i64, r as i64);
                    replay = a * lambda + bb * (1.0 - lambda);
                    ya.extend_from_slice(&labels[..r]);
                    yb.extend_from_slice(&labels[r..]);
                } else {
                    ya.extend_from_slice(&labels);
                    yb.extend_from_slice(&labels);
                }
                Tensor::cat(&[self.decoder.decode(codes)?, replay], 0)
            }
            _ => self.decoder.decode(codes)?,
        };
        let logits = f.forward_t(&x, true);
        let target = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        let loss = if lambda < 1.0 {
            logits.cross_entropy_for_logits(&target(&ya)) * lambda
                + logits.cross_entropy_for_logits(&target(&yb)) * (1.0 - lambda)
        } else {
            logits.cross_entropy_for_logits(&target(&ya))
        };
        let counter = &mut counters[y as usize];
        let lr = s.lr.rate(*counter);
        *counter += 1;
        opt.backward_step(&loss, lr);
        Ok(loss.double_value(&[]))
    }
}

fn run_streaming(ctx: &Ctx, out: &Path, method: Method, resume: ClassifyResume) -> Result<()> {
    let method_dir = out.join(method.name());
    let (mut vs, f, mut opt) = new_f(ctx)?;
    let item_bytes: usize = ctx.code_shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.s.seed ^ 0x7265_6d69_6e64);
    let mut counters = vec![0u64; ctx.plan.num_classes];
    let mut buffer = match method {
        Method::Remind => Some(ReplayBuffer::new(
            item_bytes,
            ctx.s.buffer_capacity,
            ctx.s.eviction,
        )?),
        _ => None,
    };
    let points = ctx.plan.positions.len();
    let start = match resume_point(&method_dir, resume, &ctx.hash, points)? {
        Some((dir, state)) => {
            vs.load(dir.join("model.safetensors"))
                .with_context(|| format!("cannot load {}", dir.display()))?;
            opt.load(&dir.join("optim.safetensors"))?;
            if let Some(b) = buffer.as_mut() {
                let loaded = ReplayBuffer::load(&dir.join("buffer.arrow"))?;
                ensure!(
                    loaded.codebook_hash == ctx.codebook_hash,
                    "{}: buffer codes were made with another codebook",
                    dir.display()
                );
                *b = loaded.buffer;
            }
            rng.set_word_pos(state.rng_word_pos);
            ensure!(
                state.counters.len() == counters.len(),
                "{}: {} learning-rate counters, the run has {} classes",
                dir.display(),
                state.counters.len(),
                counters.len()
            );
            counters.copy_from_slice(&state.counters);
            eprintln!(
                "stream-train[{}]: resumed from {} (position {})",
                method.name(),
                dir.display(),
                state.position
            );
            // Later checkpoints belong to the abandoned continuation: drop them.
            for k in state.boundary + 1..points {
                let d = checkpoint_dir(&method_dir, k);
                if d.exists() {
                    std::fs::remove_dir_all(&d)
                        .with_context(|| format!("cannot remove {}", d.display()))?;
                }
            }
            state.boundary + 1
        }
        None => {
            if let Some(b) = buffer.as_mut() {
                b.reserve(ctx.plan.base.len());
                for &row in &ctx.plan.base {
                    b.insert(
                        ctx.set.train.ids[row],
                        ctx.set.train.labels[row],
                        ctx.train_codes(row)?,
                        &mut rng,
                    )?;
                }
            }
            evaluation_point(
                ctx,
                &method_dir,
                method,
                0,
                &vs,
                &f,
                &opt,
                buffer.as_ref(),
                &rng,
                &counters,
            )?;
            1
        }
    };
    let total = ctx.plan.stream.len() - ctx.plan.positions[start - 1];
    let mut progress = Progress::new(method.name(), total as u64);
    let mut scratch = Vec::new();
    let updater = Updater {
        s: ctx.s,
        decoder: ctx.decoder(),
    };
    for k in start..points {
        for pos in ctx.plan.positions[k - 1]..ctx.plan.positions[k] {
            let row = ctx.plan.stream[pos];
            let id = ctx.set.train.ids[row];
            let loss = updater
                .update(
                    &f,
                    &mut opt,
                    ctx.train_codes(row)?,
                    ctx.set.train.labels[row],
                    buffer.as_ref(),
                    &mut rng,
                    &mut counters,
                    &mut scratch,
                )
                .with_context(|| format!("update at stream position {pos} (item id {id})"))?;
            ensure!(
                loss.is_finite(),
                "F diverged on training item id {id} (loss {loss}); lower classify_stream.lr.start"
            );
            if let Some(b) = buffer.as_mut() {
                b.insert(
                    ctx.set.train.ids[row],
                    ctx.set.train.labels[row],
                    ctx.train_codes(row)?,
                    &mut rng,
                )?;
            }
            progress.inc(1);
        }
        evaluation_point(
            ctx,
            &method_dir,
            method,
            k,
            &vs,
            &f,
            &opt,
            buffer.as_ref(),
            &rng,
            &counters,
        )?;
    }
    progress.finish();
    Ok(())
}

fn run_offline(ctx: &Ctx, out: &Path, resume: ClassifyResume) -> Result<()> {
    let method_dir = out.join("offline");
    let points = ctx.plan.positions.len();
    let start = match resume_point(&method_dir, resume, &ctx.hash, points)? {
        Some((_, state)) => state.boundary + 1,
        None => 0,
    };
    let rng = ChaCha8Rng::seed_from_u64(ctx.s.seed);
    let mut codes = Vec::new();
    for k in start..points {
        let (vs, f, mut opt) = new_f(ctx)?;
        let mut rows = ctx.plan.base.clone();
        rows.extend_from_slice(&ctx.plan.stream[..ctx.plan.positions[k]]);
        let n = rows.len();
        let b = ctx.s.offline_batch;
        let total = ctx.s.offline_epochs * n.div_ceil(b);
        let mut order_rng = ChaCha8Rng::seed_from_u64(ctx.s.seed ^ ((k as u64 + 1) << 40));
        let mut progress = Progress::new(
            &format!("offline, {} classes", ctx.plan.seen_classes[k]),
            (ctx.s.offline_epochs * n) as u64,
        );
        let mut step = 0;
        for _ in 0..ctx.s.offline_epochs {
            rows.shuffle(&mut order_rng);
            for chunk in rows.chunks(b) {
                codes.clear();
                for &r in chunk {
                    codes.extend_from_slice(ctx.train_codes(r)?);
                }
                let mut x = ctx.decode(&codes)?;
                if ctx.s.random_crops {
                    x = random_resized_crops(&x, &mut order_rng)?;
                }
                let y: Vec<i64> = chunk.iter().map(|&r| ctx.set.train.labels[r]).collect();
                let loss = f
                    .forward_t(&x, true)
                    .cross_entropy_for_logits(&Tensor::from_slice(&y).to_device(ctx.device));
                let lr = crate::backbone_train::lr_at(step, total, ctx.s.offline_lr);
                opt.backward_step(&loss, lr);
                step += 1;
                progress.inc(chunk.len() as u64);
            }
        }
        progress.finish();
        let counters = vec![0u64; ctx.plan.num_classes];
        evaluation_point(
            ctx,
            &method_dir,
            Method::Offline,
            k,
            &vs,
            &f,
            &opt,
            None,
            &rng,
            &counters,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels_train: &[i64], base: usize, k: usize) -> LabelSet {
        let items = |labels: &[i64]| Items {
            ids: (0..labels.len() as u64).collect(),
            labels: labels.to_vec(),
            sources: vec![String::new(); labels.len()],
        };
        LabelSet {
            path: PathBuf::from("labels.parquet"),
            train: items(labels_train),
            val: items(&[0]),
            class_names: (0..k).map(|c| c.to_string()).collect(),
            base_classes: base,
            image_root: None,
        }
    }

    #[test]
    fn plan_streams_classes_in_order_with_increments() {
        let labels = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 4];
        let s = ClassifySettings {
            increment: 2,
            ..Default::default()
        };
        let p = ClassPlan::new(&set(&labels, 1, 5), &s).unwrap();
        assert_eq!(p.base, vec![0, 5]);
        assert_eq!(p.seen_classes, vec![1, 3, 5]);
        // Classes 1,2 (2 + 3 images), then 3,4 (2 + 3 images).
        assert_eq!(p.positions, vec![0, 5, 10]);
        let stream_labels: Vec<i64> = p.stream.iter().map(|&r| labels[r]).collect();
        assert_eq!(stream_labels, vec![1, 1, 2, 2, 2, 3, 3, 4, 4, 4]);
        let capped = ClassifySettings {
            increment: 3,
            max_train_per_class: Some(1),
            ..Default::default()
        };
        let p = ClassPlan::new(&set(&labels, 1, 5), &capped).unwrap();
        // A last, partial increment still gets an evaluation point.
        assert_eq!(p.seen_classes, vec![1, 4, 5]);
        assert_eq!(p.positions, vec![0, 3, 4]);
    }

    #[test]
    fn plan_refuses_a_class_without_images() {
        let e = ClassPlan::new(&set(&[0, 1, 3], 1, 4), &ClassifySettings::default()).unwrap_err();
        assert!(e.to_string().contains("class 2"), "{e}");
    }
}
