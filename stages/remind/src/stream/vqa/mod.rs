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

use anyhow::{bail, ensure, Result};
use arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::artifact::{write_table, Producer, Table, TensorDataset};
use crate::buffer::Eviction;
use crate::models::vqa::{ModelConfig, QuestionInput, Questions, VqaModel};
use crate::run::{config_hash, Precision, Progress};
use crate::stream::compute;
use crate::stream::decode::StreamCodes;
use crate::stream::driver::{self, BareStep, Learner, Net, Resume, RunSpec, Step, Update};
use crate::stream::layout::MethodDir;
use crate::stream::metrics::vqa_score;
use crate::stream::offline;
use crate::stream::plan::{Order, StreamPlan};
use crate::stream::Method;
use crate::train::optim::{OptimKind, Optimizer};

pub mod data;

use data::{
    answer_batch, gather_codes, load_split, question_batch, LoadReport, QuestionFeatures, VqaItems,
};

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
    /// Epochs of base initialisation.
    pub base_epochs: usize,
    /// Epochs of each offline model (with `offline_patience`, the most).
    pub offline_epochs: usize,
    /// Train each offline model until its mean-per-type accuracy on the evaluation split
    /// stops improving (the rate divided by 10 after this many epochs without a better
    /// one, twice; the next plateau stops; the best epoch is kept), so that it bounds the
    /// streaming methods (issue #15). None: exactly `offline_epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_patience: Option<usize>,
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
    /// Compute precision of every method's forward passes ([`Precision`]: fp32, or bf16
    /// mixed precision with fp32 master weights, optimiser and losses). Left out of the
    /// config hash while fp32, so earlier runs hash as before.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
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
            offline_patience: None,
            batch_size: 64,
            eval_batch: 256,
            max_question_len: 45,
            l2_normalize_features: false,
            l2_normalize_questions: false,
            question_features: Vec::new(),
            max_per_type: None,
            precision: Precision::Fp32,
        }
    }
}

impl StreamSettings {
    /// Refuses values no run can use, naming the key, before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "stream.lr: expected a positive learning rate, found {}",
            self.lr
        );
        for (key, v) in [
            ("batch_size", self.batch_size),
            ("eval_batch", self.eval_batch),
            ("max_question_len", self.max_question_len),
            ("iid_segments", self.iid_segments),
        ] {
            ensure!(v > 0, "stream.{key}: expected at least 1, found 0");
        }
        ensure!(
            self.offline_patience != Some(0),
            "stream.offline_patience: expected at least 1 (or absent), found 0"
        );
        for (key, value) in [
            ("buffer_capacity", self.buffer_capacity),
            ("max_per_type", self.max_per_type),
        ] {
            ensure!(
                value != Some(0),
                "stream.{key}: expected at least 1 (or absent), found 0"
            );
        }
        Ok(())
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

/// Input artifacts of a run.
pub struct VqaInputs<'a> {
    pub questions: &'a Path,
    pub train_codes: &'a Path,
    pub val_codes: &'a Path,
    pub codebook: &'a Path,
    /// Sentence vectors per question: required when the model takes gensen input, refused
    /// otherwise.
    pub question_features: Option<&'a QuestionFeatures>,
    /// The content digest of every input ([`crate::run::contract`]): checkpoints made from
    /// other inputs are stale. `None` keys them by the codebook and config alone.
    pub inputs_digest: Option<&'a str>,
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
    run: RunSpec,
    device: Device,
}

impl Ctx<'_> {
    /// The PQ codes of training item `item`'s image (a slice of the memory-mapped dataset).
    fn item_codes(&self, item: usize) -> Result<&[u8]> {
        self.train_codes.row_u8(self.train.image_rows[item])
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
pub fn run_vqa_stream(
    s: &StreamSettings,
    model: &ModelConfig,
    inputs: &VqaInputs,
    out: &Path,
    method: Method,
    device: Device,
    resume: Resume,
) -> Result<()> {
    s.validate()?;
    let mut record = s.precision.prepare(device, "stream.precision")?;
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
    let questions = data::read_questions(inputs.questions)?;
    let train_codes = TensorDataset::open(inputs.train_codes, "codes")?;
    let val_codes = TensorDataset::open(inputs.val_codes, "codes")?;
    let mut codes = StreamCodes::open(
        inputs.codebook,
        &[&train_codes, &val_codes],
        device,
        s.l2_normalize_features,
    )?;
    codes.channels_last = !s.precision.is_fp32();
    let codebook_hash = &codes.codebook_hash;
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
    let vocab = match model.question_input {
        QuestionInput::Tokens => Some(model.vocab_size),
        QuestionInput::Gensen => None,
    };
    // The type table beside the questions (absent for hand-made question tables).
    let types_path = inputs.questions.with_file_name("question_types.parquet");
    let num_types = match types_path.is_file() {
        true => Some(Table::read(&types_path, "vocabulary")?.num_rows()),
        false => None,
    };
    for (items, split) in [(&train, "train"), (&val, "val")] {
        data::check_ids(
            items,
            split,
            inputs.questions,
            model.num_answers,
            vocab,
            num_types,
        )?;
    }
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
    let mut config = serde_json::json!({"stream": s, "model": model, "codebook": codebook_hash});
    if let Some(f) = inputs.question_features {
        config["question_features"] = serde_json::json!(f.fingerprint()?);
    }
    let hash = config_hash(&config)?;
    eprintln!(
        "stream-train[{}]: {} train / {} val questions ({} dropped: answer not in the table), {} boundaries, base init on {}",
        method.name(), report.train_questions, report.val_questions, report.dropped_unknown_answer, plan.boundaries.len(), plan.base_len()
    );
    // The buffer never holds more than this: each update replays all it holds, fewer.
    let most = s
        .buffer_capacity
        .unwrap_or(usize::MAX)
        .min(report.train_questions);
    if method == Method::Remind && s.replay > most {
        eprintln!(
            "stream-train[remind]: note: stream.replay {} is more than the buffer can hold ({most}: \
             stream.buffer_capacity or the training questions); each update replays all it holds",
            s.replay
        );
    }
    let ctx = Ctx {
        s,
        model,
        train,
        val,
        train_codes,
        val_codes,
        features: inputs.question_features,
        run: RunSpec {
            task: "vqa",
            plan,
            config_hash: hash,
            config,
            inputs_digest: inputs.inputs_digest.map(str::to_string),
            codes,
            seed: s.seed,
            buffer_capacity: s.buffer_capacity,
            eviction: s.eviction,
            lr_key: "stream.lr",
        },
        device,
    };
    driver::run(&ctx, out, method, resume, {
        record["load"] = serde_json::to_value(report)?;
        record
    })
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

/// The loss of training items `idx` with their codes `codes` (dropout seeded by
/// `dropout_seed`).
fn loss(
    ctx: &Ctx,
    model: &VqaModel,
    idx: &[usize],
    codes: &[u8],
    dropout_seed: u64,
) -> Result<Tensor> {
    tch::manual_seed(dropout_seed as i64);
    let feats = ctx.run.codes.decode(codes)?;
    let questions = ctx.questions(&ctx.train, idx)?;
    let target = answer_batch(&ctx.train, idx, ctx.device);
    let logits = (ctx.s.precision).try_forward(ctx.device, &feats, |x| {
        model.forward_t(x, &questions.view(), true)
    })?;
    Ok(logits.cross_entropy_for_logits(&target))
}

/// One optimiser step with rate `lr` on items `idx` (train split) with their codes `codes`;
/// returns the loss (detached, on the device: reading it would wait for the GPU).
fn step(
    ctx: &Ctx,
    net: &mut Net<VqaModel>,
    idx: &[usize],
    codes: &[u8],
    dropout_seed: u64,
    lr: f64,
) -> Result<Tensor> {
    let loss = loss(ctx, &net.model, idx, codes, dropout_seed)?;
    net.opt.backward_step(&loss, lr)?;
    Ok(loss.detach())
}

/// Shuffled mini-batch epochs over train items `items`, from the model's current state.
fn train_epochs(
    ctx: &Ctx,
    net: &mut Net<VqaModel>,
    items: &[usize],
    epochs: usize,
    seed: u64,
    label: &str,
) -> Result<()> {
    let mut progress = Progress::new(label, (epochs * items.len()) as u64);
    for epoch in 0..epochs {
        train_epoch(ctx, net, items, epoch, seed, ctx.s.lr, &mut progress)?;
    }
    progress.finish();
    Ok(())
}

/// Epoch `epoch` (0-based; it seeds the shuffle and dropout) over train items `items` at
/// rate `lr`.
fn train_epoch(
    ctx: &Ctx,
    net: &mut Net<VqaModel>,
    items: &[usize],
    epoch: usize,
    seed: u64,
    lr: f64,
    progress: &mut Progress,
) -> Result<()> {
    let mut codes = Vec::new();
    let mut order = items.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed ^ ((epoch as u64 + 1) << 32),
    ));
    for (b, batch) in order.chunks(ctx.s.batch_size).enumerate() {
        codes.clear();
        gather_codes(&ctx.train, batch, &ctx.train_codes, &mut codes)?;
        let _loss = step(
            ctx,
            net,
            batch,
            &codes,
            seed ^ ((epoch as u64) << 40) ^ b as u64,
            lr,
        )?;
        compute::count_step(batch.len());
        progress.inc(batch.len() as u64);
    }
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
        let feats = ctx.run.codes.decode(&codes)?;
        let questions = ctx.questions(&ctx.val, batch)?;
        let logits = (ctx.s.precision).try_forward(ctx.device, &feats, |x| {
            model.forward_t(x, &questions.view(), false)
        })?;
        let pred = logits.argmax(-1, false).to_device(Device::Cpu);
        out.extend(Vec::<i64>::try_from(&pred.to_kind(Kind::Int64))?);
    }
    Ok(out)
}

/// Writes the predictions of boundary `k` (atomically).
fn write_predictions(
    ctx: &Ctx,
    dir: &MethodDir,
    method: Method,
    k: usize,
    pred: &[i64],
) -> Result<PathBuf> {
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
        ctx.run.plan.position(k).to_string(),
    );
    let producer =
        Producer::new("stream-train", &ctx.run.config_hash).param("method", method.name());
    write_table(&dir.predictions(k), "predictions", &producer, cols, meta)
}

impl Learner for Ctx<'_> {
    type Prepared = ();
    type Model = VqaModel;

    fn spec(&self) -> &RunSpec {
        &self.run
    }

    /// A freshly initialised model (seeded: every method starts from the same weights).
    fn fresh(&self) -> Result<Net<VqaModel>> {
        tch::manual_seed(self.s.seed as i64);
        let vs = VarStore::new(self.device);
        let model = VqaModel::new(&vs.root(), self.model, None)?;
        let opt = Optimizer::new(&vs, OptimKind::adamax());
        Ok(Net {
            vs,
            model,
            opt,
            counters: Vec::new(),
        })
    }

    /// Offline epochs on the first segment, the same for every method.
    fn base_init(&self, net: &mut Net<VqaModel>, method: Method) -> Result<()> {
        train_epochs(
            self,
            net,
            &self.run.plan.items[..self.run.plan.base_len()],
            self.s.base_epochs,
            self.s.seed,
            &format!("{} base init", method.name()),
        )
    }

    fn replay_draws(&self) -> usize {
        self.s.replay
    }

    /// The question's index in the training split, its answer and its image's codes.
    fn buffer_item(&self, item: usize) -> Result<(u64, i64, &[u8])> {
        Ok((
            item as u64,
            self.train.answers[item],
            self.item_codes(item)?,
        ))
    }

    fn describe(&self, item: usize) -> String {
        format!("question id {}", self.train.question_ids[item])
    }

    /// One Adamax step on the new question and the replayed ones (no augmentation; dropout
    /// seeded by the position).
    fn update(&self, net: &mut Net<VqaModel>, at: Update<'_>) -> Result<Step> {
        let Update {
            pos, item, replay, ..
        } = at;
        let mut idx = vec![item];
        let mut codes = self.item_codes(item)?.to_vec();
        if let Some(r) = replay {
            for &slot in r.slots {
                idx.push(r.buffer.id(slot) as usize);
                codes.extend_from_slice(r.buffer.codes(slot));
            }
        }
        let loss = step(
            self,
            net,
            &idx,
            &codes,
            self.s.seed ^ ((pos as u64) << 20) ^ 0x5354,
            self.s.lr,
        )?;
        Ok(Step {
            loss,
            batch: idx.len(),
        })
    }

    /// From scratch on everything the stream has shown up to boundary `k`.
    /// A fresh model trained on every question seen at boundary `k`
    /// ([`offline::train_offline`]: `offline_epochs` epochs, or to a plateau of the
    /// mean-per-type accuracy with `offline_patience`).
    fn train_offline(&self, net: &mut Net<VqaModel>, k: usize) -> Result<()> {
        let items = &self.run.plan.items[..self.run.plan.boundaries[k]];
        let seed = self.s.seed ^ (k as u64) << 48;
        let label = format!("offline boundary {k}");
        let mut progress = Progress::new(&label, (self.s.offline_epochs * items.len()) as u64);
        offline::train_offline(
            net,
            self.s.offline_epochs,
            self.s.offline_patience,
            &format!("stream-train[offline]: boundary {k}: mean-per-type"),
            |net, e, factor| {
                let lr = self.s.lr * factor.unwrap_or(1.0);
                train_epoch(self, net, items, e, seed, lr, &mut progress)
            },
            |net| {
                let pred = predict(self, &net.model)?;
                Ok(vqa_score(&pred, &self.val.answers, &self.val.types).mean_per_type)
            },
        )?;
        progress.finish();
        Ok(())
    }

    fn evaluate(
        &self,
        net: &Net<VqaModel>,
        k: usize,
        dir: &MethodDir,
        method: Method,
    ) -> Result<()> {
        let pred = predict(self, &net.model)?;
        let acc = vqa_score(&pred, &self.val.answers, &self.val.types);
        eprintln!(
            "stream-train[{}]: boundary {k} at position {}: mean-per-type {:.2}%, overall {:.2}%",
            method.name(),
            self.run.plan.position(k),
            100.0 * acc.mean_per_type,
            100.0 * acc.overall
        );
        write_predictions(self, dir, method, k, &pred)?;
        Ok(())
    }

    /// The model's forward FLOPs on one question ([`ModelConfig::forward_flops`]), at the
    /// mean length of the training questions.
    fn forward_flops_per_item(&self) -> Result<f64> {
        let [h, w, _] = self.run.codes.code_shape;
        let n = self.train.lengths.len().max(1) as f64;
        let tokens = self.train.lengths.iter().sum::<i64>() as f64 / n;
        Ok(self.model.forward_flops((h, w), tokens))
    }

    /// The step on the first `batch` items of the stream.
    fn bare_step<'a>(&'a self, net: &'a mut Net<VqaModel>, idx: &[usize]) -> Result<BareStep<'a>> {
        let mut codes = Vec::new();
        gather_codes(&self.train, idx, &self.train_codes, &mut codes)?;
        let feats = self.run.codes.decode(&codes)?;
        let questions = self.questions(&self.train, idx)?;
        let target = answer_batch(&self.train, idx, self.device);
        Ok(Box::new(move || {
            let logits = (self.s.precision).try_forward(self.device, &feats, |x| {
                net.model.forward_t(x, &questions.view(), true)
            })?;
            let loss = logits.cross_entropy_for_logits(&target);
            net.opt.backward_step(&loss, self.s.lr)?;
            Ok(loss.detach())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values no run can use are refused with the key named (a negative rate once ran to
    /// the end as gradient ascent).
    #[test]
    fn unusable_settings_are_refused_by_key() {
        assert!(StreamSettings::default().validate().is_ok());
        let with = |f: fn(&mut StreamSettings)| {
            let mut s = StreamSettings::default();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(with(|s| s.lr = -0.003).contains("stream.lr"));
        assert!(with(|s| s.lr = f64::NAN).contains("stream.lr"));
        assert!(with(|s| s.max_question_len = 0).contains("stream.max_question_len"));
        assert!(with(|s| s.batch_size = 0).contains("stream.batch_size"));
        assert!(with(|s| s.offline_patience = Some(0)).contains("stream.offline_patience"));
        // Only the key that was set is named.
        let e = with(|s| s.max_per_type = Some(0));
        assert!(
            e.starts_with("stream.max_per_type:") && !e.contains("buffer_capacity"),
            "{e}"
        );
        assert!(with(|s| s.buffer_capacity = Some(0)).starts_with("stream.buffer_capacity:"));
    }
}
