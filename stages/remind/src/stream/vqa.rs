//! The streaming VQA experiment: base initialisation, then one question at a time with
//! `remind` (replay of r PQ-coded questions), `finetune` (no replay) or, at each boundary,
//! `offline` (several shuffled epochs over everything seen so far, from scratch). At every
//! boundary: predictions on the evaluation split and a resumable checkpoint.
//!
//! Questions reach the model as tokens or, when the model config says `question_input:
//! gensen`, as imported sentence vectors ([`QuestionFeatures`]) joined by question id;
//! replayed questions are looked up by their index in the training split, so they get
//! their own vectors too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::checkpoint::{accept_checkpoint, latest_checkpoint, write_checkpoint, CheckpointState};
use super::order::{Order, StreamPlan};
use super::vqa_data::{
    answer_batch, gather_codes, load_split, question_batch, Decoder, LoadReport, QuestionFeatures,
    VqaItems,
};
use crate::artifact::{write_table, Producer, TensorDataset};
use crate::buffer::{Eviction, ReplayBuffer};
use crate::run::{config_hash, Progress};
use crate::stages::codebook::load_codebook;
use crate::train::optim::{OptimKind, Optimizer};
use crate::vqa::{ModelConfig, QuestionInput, Questions, VqaModel};

/// A streaming method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Remind,
    Finetune,
    Offline,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Remind => "remind",
            Method::Finetune => "finetune",
            Method::Offline => "offline",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "remind" => Ok(Method::Remind),
            "finetune" => Ok(Method::Finetune),
            "offline" => Ok(Method::Offline),
            other => bail!("unknown method '{other}' (expected remind, finetune or offline)"),
        }
    }
}

/// Streaming settings shared by the methods (config section `stream`, minus the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    pub order: Order,
    pub seed: u64,
    /// Segments of an iid stream (a boundary after each).
    pub iid_segments: usize,
    /// r: replayed questions per update.
    pub replay: usize,
    /// Buffer capacity in questions (None: unbounded, as in the paper's VQA runs).
    pub buffer_capacity: Option<usize>,
    pub eviction: Eviction,
    pub lr: f64,
    /// Epochs of base initialisation (and of each offline model).
    pub base_epochs: usize,
    pub offline_epochs: usize,
    pub batch_size: usize,
    pub eval_batch: usize,
    pub max_question_len: usize,
    pub l2_normalize_features: bool,
    /// Gensen input: divide each sentence vector by its L2 norm (the reference's `qnorm`).
    /// Left out of the config hash while false, so token runs hash as before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub l2_normalize_questions: bool,
    /// Gensen input: the `question_features` datasets of remind-import-gensen (one path or
    /// a list, e.g. one per split). Paths are not hashed: the features' content is.
    #[serde(skip_serializing, deserialize_with = "one_or_many")]
    pub question_features: Vec<PathBuf>,
    /// Use at most this many training questions per question type (seeded choice), to
    /// size a stream to a time budget; None uses all.
    pub max_per_type: Option<usize>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            order: Order::Qtype,
            seed: 0,
            iid_segments: 10,
            replay: 50,
            buffer_capacity: None,
            eviction: Eviction::Random,
            lr: 3e-4,
            base_epochs: 10,
            offline_epochs: 10,
            batch_size: 64,
            eval_batch: 256,
            max_question_len: 45,
            l2_normalize_features: false,
            l2_normalize_questions: false,
            question_features: Vec::new(),
            max_per_type: None,
        }
    }
}

/// A path or a list of paths.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// Whether to continue from checkpoints already in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Start from scratch (existing checkpoints are overwritten as the run passes them).
    No,
    /// Continue from the latest checkpoint; one made under another configuration is an error.
    Strict,
    /// Continue when the latest checkpoint matches this configuration, else discard the
    /// method's folder and start afresh (what `make` uses after a config change).
    RestartStale,
}

/// Input artifacts of a run.
pub struct VqaInputs<'a> {
    pub questions: &'a Path,
    pub train_codes: &'a Path,
    pub val_codes: &'a Path,
    pub codebook: &'a Path,
    /// Sentence vectors per question: required when the model takes gensen input, refused
    /// otherwise.
    pub question_features: Option<&'a QuestionFeatures>,
}

/// Everything loaded once per run.
struct Ctx<'a> {
    s: &'a StreamSettings,
    model: &'a ModelConfig,
    train: VqaItems,
    val: VqaItems,
    train_codes: TensorDataset,
    val_codes: TensorDataset,
    features: Option<&'a QuestionFeatures>,
    pq: crate::pq::ProductQuantizer,
    code_shape: [usize; 3],
    plan: StreamPlan,
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
            l2_normalize: self.s.l2_normalize_features,
        }
    }

    /// The question side of a batch of `items` (train or val) at `idx`.
    fn questions(&self, items: &VqaItems, idx: &[usize]) -> Result<QuestionBatch> {
        Ok(match self.features {
            Some(f) => QuestionBatch::Sentences(f.batch(
                items,
                idx,
                self.device,
                self.s.l2_normalize_questions,
            )?),
            None => {
                let (tokens, lengths) = question_batch(items, idx, self.device);
                QuestionBatch::Tokens { tokens, lengths }
            }
        })
    }
}

/// Owned question tensors of one batch.
enum QuestionBatch {
    Tokens { tokens: Tensor, lengths: Tensor },
    Sentences(Tensor),
}

impl QuestionBatch {
    fn view(&self) -> Questions<'_> {
        match self {
            QuestionBatch::Tokens { tokens, lengths } => Questions::Tokens { tokens, lengths },
            QuestionBatch::Sentences(s) => Questions::Sentences(s),
        }
    }
}

/// Runs `method`, writing predictions and checkpoints under `out` (`<out>/<method>/`).
/// `model_hash` identifies the model configuration (it joins the config hash).
pub fn run_vqa_stream(
    s: &StreamSettings,
    model: &ModelConfig,
    inputs: &VqaInputs,
    out: &Path,
    method: Method,
    device: Device,
    resume: Resume,
) -> Result<()> {
    ensure!(
        s.batch_size > 0 && s.eval_batch > 0,
        "stream.batch_size and stream.eval_batch must be positive"
    );
    match (model.question_input, inputs.question_features) {
        (QuestionInput::Gensen, None) => bail!(
            "the model takes gensen sentence vectors (model.question_input: gensen): give the \
             question features (--question-features, the output of remind-import-gensen)"
        ),
        (QuestionInput::Gensen, Some(f)) => ensure!(
            f.dim() == model.gensen_dim,
            "{}: sentence vectors are {} wide, but model.gensen_dim is {}",
            f.paths()[0].display(),
            f.dim(),
            model.gensen_dim
        ),
        (QuestionInput::Tokens, Some(f)) => bail!(
            "question features ({}) were given, but the model takes question tokens \
             (model.question_input: tokens)",
            f.paths()[0].display()
        ),
        (QuestionInput::Tokens, None) => {}
    }
    let questions = super::vqa_data::read_questions(inputs.questions)?;
    let train_codes = TensorDataset::open(inputs.train_codes, "codes")?;
    let val_codes = TensorDataset::open(inputs.val_codes, "codes")?;
    let (pq, info) = load_codebook(inputs.codebook)?;
    for ds in [&train_codes, &val_codes] {
        let h = ds.meta("remind.codebook_hash")?;
        ensure!(
            h == info.codebook_hash,
            "{}: codes made with codebook {h}, but {} is {}: re-extract the codes",
            ds.root().display(),
            inputs.codebook.display(),
            info.codebook_hash
        );
    }
    let shape = train_codes.shape();
    ensure!(
        shape.len() == 3 && shape[2] == pq.num_subspaces(),
        "{}: codes shape {shape:?} does not fit M={}",
        train_codes.root().display(),
        pq.num_subspaces()
    );
    let code_shape = [shape[0], shape[1], shape[2]];
    let mut report = LoadReport::default();
    let mut train = load_split(
        &questions,
        "train",
        &train_codes,
        s.max_question_len,
        true,
        &mut report,
    )?;
    if let Some(cap) = s.max_per_type {
        train = train.subset(&capped_per_type(&train.types, cap, s.seed));
    }
    let mut val = load_split(
        &questions,
        "val",
        &val_codes,
        s.max_question_len,
        false,
        &mut report,
    )?;
    if let Some(f) = inputs.question_features {
        // Only the questions the stream uses need vectors (after max_per_type).
        f.attach(&mut train, "train")?;
        f.attach(&mut val, "val")?;
    }
    report.train_questions = train.len();
    ensure!(
        !train.is_empty(),
        "{}: no training questions left",
        inputs.questions.display()
    );
    report.val_questions = val.len();
    let plan = StreamPlan::new(s.order, &train.types, s.seed, s.iid_segments, None)?;
    let hash = match inputs.question_features {
        None => config_hash(&(s, model, &info.codebook_hash))?,
        Some(f) => config_hash(&(s, model, &info.codebook_hash, f.fingerprint()?))?,
    };
    eprintln!(
        "stream-train[{}]: {} train / {} val questions ({} dropped: answer not in the table), {} boundaries, base init on {}",
        method.name(), report.train_questions, report.val_questions, report.dropped_unknown_answer, plan.boundaries.len(), plan.base_len()
    );
    let ctx = Ctx {
        s,
        model,
        train,
        val,
        train_codes,
        val_codes,
        features: inputs.question_features,
        // Decoding happens where training does (see `Decoder::decode`).
        pq: pq.to_device(device)?,
        code_shape,
        plan,
        device,
        hash,
        codebook_hash: info.codebook_hash,
    };
    crate::artifact::atomic::write_bytes(&out.join("plan.json"), &serde_json::to_vec(&ctx.plan)?)?;
    let started = std::time::Instant::now();
    let rate = match method {
        Method::Offline => {
            run_offline(&ctx, out, resume)?;
            None
        }
        Method::Remind | Method::Finetune => run_streaming(&ctx, out, method, resume)?,
    };
    // The marker `make` waits for: written last, so its presence means every boundary is done.
    let done = serde_json::json!({
        "method": method.name(),
        "boundaries": ctx.plan.boundaries,
        "config_hash": ctx.hash,
        "seconds": started.elapsed().as_secs_f64(),
        "load": report,
        "update_rate": rate,
    });
    crate::artifact::atomic::write_bytes(
        &out.join(method.name()).join("complete.json"),
        &serde_json::to_vec_pretty(&done)?,
    )?;
    Ok(())
}

/// Indices keeping at most `cap` items of each group (a seeded choice), in their order.
fn capped_per_type(types: &[i64], cap: usize, seed: u64) -> Vec<usize> {
    let mut by_type: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &t) in types.iter().enumerate() {
        by_type.entry(t).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xca9);
    let mut keep: Vec<usize> = Vec::new();
    for (_, mut members) in by_type {
        members.shuffle(&mut rng);
        members.truncate(cap);
        keep.extend(members);
    }
    keep.sort_unstable();
    keep
}

/// The checkpoint to continue from, per the resume policy.
fn resume_point(
    method_dir: &Path,
    resume: Resume,
    hash: &str,
) -> Result<Option<(PathBuf, CheckpointState)>> {
    if resume == Resume::No {
        return Ok(None);
    }
    accept_checkpoint(
        method_dir,
        latest_checkpoint(method_dir)?,
        hash,
        resume == Resume::RestartStale,
    )
}

/// A freshly initialised model (seeded: every method starts from the same weights).
fn new_model(ctx: &Ctx) -> Result<(VarStore, VqaModel, Optimizer)> {
    tch::manual_seed(ctx.s.seed as i64);
    let vs = VarStore::new(ctx.device);
    let model = VqaModel::new(&vs.root(), ctx.model, None)?;
    let opt = Optimizer::new(&vs, OptimKind::adamax());
    Ok((vs, model, opt))
}

/// One optimiser step on items `idx` (train split) with their codes `codes`.
fn step(
    ctx: &Ctx,
    model: &VqaModel,
    opt: &mut Optimizer,
    idx: &[usize],
    codes: &[u8],
    dropout_seed: u64,
) -> Result<f64> {
    tch::manual_seed(dropout_seed as i64);
    let feats = ctx.decoder().decode(codes)?;
    let questions = ctx.questions(&ctx.train, idx)?;
    let target = answer_batch(&ctx.train, idx, ctx.device);
    let logits = model.forward_t(&feats, &questions.view(), true)?;
    let loss = logits.cross_entropy_for_logits(&target);
    opt.zero_grad();
    loss.backward();
    opt.step(ctx.s.lr);
    Ok(loss.double_value(&[]))
}

/// Shuffled mini-batch epochs over train items `items`, from the model's current state.
fn train_epochs(
    ctx: &Ctx,
    model: &VqaModel,
    opt: &mut Optimizer,
    items: &[usize],
    epochs: usize,
    seed: u64,
    label: &str,
) -> Result<()> {
    let mut progress = Progress::new(label, (epochs * items.len()) as u64);
    let mut codes = Vec::new();
    for epoch in 0..epochs {
        let mut order = items.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed ^ ((epoch as u64 + 1) << 32),
        ));
        for (b, batch) in order.chunks(ctx.s.batch_size).enumerate() {
            codes.clear();
            gather_codes(&ctx.train, batch, &ctx.train_codes, &mut codes)?;
            step(
                ctx,
                model,
                opt,
                batch,
                &codes,
                seed ^ ((epoch as u64) << 40) ^ b as u64,
            )?;
            progress.inc(batch.len() as u64);
        }
    }
    progress.finish();
    Ok(())
}

/// Predicted answers on the evaluation split.
fn predict(ctx: &Ctx, model: &VqaModel) -> Result<Vec<i64>> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(ctx.val.len());
    let mut codes = Vec::new();
    let all: Vec<usize> = (0..ctx.val.len()).collect();
    for batch in all.chunks(ctx.s.eval_batch) {
        codes.clear();
        gather_codes(&ctx.val, batch, &ctx.val_codes, &mut codes)?;
        let feats = ctx.decoder().decode(&codes)?;
        let questions = ctx.questions(&ctx.val, batch)?;
        let logits = model.forward_t(&feats, &questions.view(), false)?;
        let pred = logits.argmax(-1, false).to_device(Device::Cpu);
        out.extend(Vec::<i64>::try_from(&pred.to_kind(Kind::Int64))?);
    }
    Ok(out)
}

/// Writes the predictions of boundary `k` (atomically) as `<method>/predictions/boundary-k.parquet`.
fn write_predictions(
    ctx: &Ctx,
    method_dir: &Path,
    method: Method,
    k: usize,
    pred: &[i64],
) -> Result<PathBuf> {
    let path = method_dir
        .join("predictions")
        .join(format!("boundary-{k:03}.parquet"));
    let n = pred.len();
    let cols: Vec<ArrayRef> = vec![
        std::sync::Arc::new(UInt64Array::from(ctx.val.question_ids.clone())),
        std::sync::Arc::new(Int64Array::from(pred.to_vec())),
        std::sync::Arc::new(Int64Array::from(vec![k as i64; n])),
        std::sync::Arc::new(StringArray::from(vec![method.name(); n])),
    ];
    let mut meta = HashMap::new();
    meta.insert(
        "remind.stream_position".to_string(),
        ctx.plan.boundaries[k].to_string(),
    );
    let producer = Producer::new("stream-train", &ctx.hash).param("method", method.name());
    write_table(&path, "predictions", &producer, cols, meta)
}

/// Evaluates, writes predictions and a checkpoint for boundary `k`.
#[allow(clippy::too_many_arguments)]
fn boundary(
    ctx: &Ctx,
    method_dir: &Path,
    method: Method,
    k: usize,
    vs: &VarStore,
    model: &VqaModel,
    opt: &Optimizer,
    buffer: Option<&ReplayBuffer>,
    rng: &ChaCha8Rng,
) -> Result<()> {
    let pred = predict(ctx, model)?;
    let acc = super::metrics::vqa_score(&pred, &ctx.val.answers, &ctx.val.types);
    eprintln!(
        "stream-train[{}]: boundary {k} at position {}: mean-per-type {:.2}%, overall {:.2}%",
        method.name(),
        ctx.plan.boundaries[k],
        100.0 * acc.mean_per_type,
        100.0 * acc.overall
    );
    write_predictions(ctx, method_dir, method, k, &pred)?;
    let state = CheckpointState {
        method: method.name().into(),
        boundary: k,
        position: ctx.plan.boundaries[k],
        config_hash: ctx.hash.clone(),
        rng_word_pos: rng.get_word_pos(),
        counters: vec![],
    };
    write_checkpoint(method_dir, &state, |dir| {
        vs.save(dir.join("model.safetensors"))
            .context("cannot save the model")?;
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

/// Wall time of the streamed updates against the bare compute floor, both measured in this
/// process with the same threads: the floor is the same model's forward, backward and
/// Adamax step on a prepared batch of the last update's size (a fresh model, after the
/// stream, so the run itself is untouched).
#[derive(Debug, Clone, Serialize)]
pub struct UpdateRate {
    pub updates: usize,
    pub batch: usize,
    pub updates_per_s: f64,
    pub floor_updates_per_s: f64,
    pub update_over_floor: f64,
}

/// Steps of the floor measurement.
const FLOOR_STEPS: usize = 50;

fn measure_floor(ctx: &Ctx, idx: &[usize], codes: &[u8]) -> Result<f64> {
    let (_vs, model, mut opt) = new_model(ctx)?;
    let feats = ctx.decoder().decode(codes)?;
    let questions = ctx.questions(&ctx.train, idx)?;
    let target = answer_batch(&ctx.train, idx, ctx.device);
    let mut run = || -> Result<()> {
        let logits = model.forward_t(&feats, &questions.view(), true)?;
        let loss = logits.cross_entropy_for_logits(&target);
        opt.zero_grad();
        loss.backward();
        opt.step(ctx.s.lr);
        let _ = loss.double_value(&[]);
        Ok(())
    };
    run()?;
    let t = std::time::Instant::now();
    for _ in 0..FLOOR_STEPS {
        run()?;
    }
    Ok(t.elapsed().as_secs_f64() / FLOOR_STEPS as f64)
}

fn run_streaming(
    ctx: &Ctx,
    out: &Path,
    method: Method,
    resume: Resume,
) -> Result<Option<UpdateRate>> {
    let method_dir = out.join(method.name());
    let (mut vs, model, mut opt) = new_model(ctx)?;
    let item_bytes: usize = ctx.code_shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.s.seed ^ 0x7265_6d69_6e64);
    let base = ctx.plan.base_len();
    let mut buffer = match method {
        Method::Remind => Some(ReplayBuffer::new(
            item_bytes,
            ctx.s.buffer_capacity,
            ctx.s.eviction,
        )?),
        _ => None,
    };
    let mut start_boundary = 0;
    let mut resumed = None;
    if let Some((dir, state)) = resume_point(&method_dir, resume, &ctx.hash)? {
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
        eprintln!(
            "stream-train[{}]: resumed from {} (position {})",
            method.name(),
            dir.display(),
            state.position
        );
        start_boundary = state.boundary + 1;
        resumed = Some(state.position);
    }
    if resumed.is_none() {
        // Base initialisation: offline epochs on the first segment, the same for every method.
        train_epochs(
            ctx,
            &model,
            &mut opt,
            &ctx.plan.items[..base],
            ctx.s.base_epochs,
            ctx.s.seed,
            &format!("{} base init", method.name()),
        )?;
        if let Some(b) = buffer.as_mut() {
            for &i in &ctx.plan.items[..base] {
                remember(ctx, b, i, &mut rng)?;
            }
        }
        boundary(
            ctx,
            &method_dir,
            method,
            0,
            &vs,
            &model,
            &opt,
            buffer.as_ref(),
            &rng,
        )?;
        start_boundary = 1;
    }
    let mut codes = Vec::new();
    let mut progress = Progress::new(method.name(), (ctx.plan.items.len() - base) as u64);
    let (mut updates, mut update_seconds) = (0usize, 0.0f64);
    let mut last_idx = Vec::new();
    for k in start_boundary..ctx.plan.boundaries.len() {
        let (from, to) = (ctx.plan.boundaries[k - 1], ctx.plan.boundaries[k]);
        for pos in from..to {
            let t = std::time::Instant::now();
            let item = ctx.plan.items[pos];
            let mut idx = vec![item];
            codes.clear();
            codes.extend_from_slice(item_codes(ctx, item)?);
            if let Some(b) = buffer.as_ref() {
                for slot in b.sample(ctx.s.replay, &mut rng) {
                    idx.push(b.id(slot) as usize);
                    codes.extend_from_slice(b.codes(slot));
                }
            }
            step(
                ctx,
                &model,
                &mut opt,
                &idx,
                &codes,
                ctx.s.seed ^ ((pos as u64) << 20) ^ 0x5354,
            )?;
            if let Some(b) = buffer.as_mut() {
                remember(ctx, b, item, &mut rng)?;
            }
            update_seconds += t.elapsed().as_secs_f64();
            updates += 1;
            last_idx = idx;
            progress.inc(1);
        }
        boundary(
            ctx,
            &method_dir,
            method,
            k,
            &vs,
            &model,
            &opt,
            buffer.as_ref(),
            &rng,
        )?;
    }
    progress.finish();
    if updates == 0 {
        return Ok(None);
    }
    // The floor on the last update's batch (its codes: the items' current codes).
    codes.clear();
    for &i in &last_idx {
        codes.extend_from_slice(item_codes(ctx, i)?);
    }
    let floor = measure_floor(ctx, &last_idx, &codes)?;
    let per_update = update_seconds / updates as f64;
    let rate = UpdateRate {
        updates,
        batch: last_idx.len(),
        updates_per_s: 1.0 / per_update,
        floor_updates_per_s: 1.0 / floor,
        update_over_floor: floor / per_update,
    };
    eprintln!(
        "stream-train[{}]: {:.1} updates/s over {} updates of batch {}; bare forward+backward+step on a prepared batch: {:.1}/s (ratio {:.3})",
        method.name(), rate.updates_per_s, updates, rate.batch, rate.floor_updates_per_s, rate.update_over_floor
    );
    Ok(Some(rate))
}

/// The PQ codes of training item `item`'s image (a slice of the memory-mapped dataset).
fn item_codes<'c>(ctx: &'c Ctx, item: usize) -> Result<&'c [u8]> {
    ctx.train_codes.row_u8(ctx.train.image_rows[item])
}

/// Stores training item `item` (its answer and image codes) in the replay buffer.
fn remember(ctx: &Ctx, buffer: &mut ReplayBuffer, item: usize, rng: &mut ChaCha8Rng) -> Result<()> {
    buffer.insert(
        item as u64,
        ctx.train.answers[item],
        item_codes(ctx, item)?,
        rng,
    )?;
    Ok(())
}

fn run_offline(ctx: &Ctx, out: &Path, resume: Resume) -> Result<()> {
    let method_dir = out.join("offline");
    let mut start = 0;
    if let Some((_, state)) = resume_point(&method_dir, resume, &ctx.hash)? {
        start = state.boundary + 1;
    }
    let rng = ChaCha8Rng::seed_from_u64(ctx.s.seed);
    for k in start..ctx.plan.boundaries.len() {
        // From scratch on everything the stream has shown up to boundary k.
        let (vs, model, mut opt) = new_model(ctx)?;
        let seen = &ctx.plan.items[..ctx.plan.boundaries[k]];
        train_epochs(
            ctx,
            &model,
            &mut opt,
            seen,
            ctx.s.offline_epochs,
            ctx.s.seed ^ (k as u64) << 48,
            &format!("offline boundary {k}"),
        )?;
        boundary(
            ctx,
            &method_dir,
            Method::Offline,
            k,
            &vs,
            &model,
            &opt,
            None,
            &rng,
        )?;
    }
    Ok(())
}
