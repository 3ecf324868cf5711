//! The one REMIND driver: the order of a streaming run, for every task.
//!
//! The driver owns the order; a task owns the maths through its [`Learner`] (in the spirit
//! of ripgrep's `Searcher`, which drives, and the `Sink` its caller implements). For
//! `remind` and `finetune` ([`run`] with a streaming method):
//!
//! 1. a fresh network ([`Learner::fresh`]), then base initialisation
//!    ([`Learner::base_init`]) and, for `remind`, every base item into the replay buffer;
//!    evaluation point 0 (predictions and a checkpoint);
//! 2. per streamed item, in plan order (paper, section 3.3 and Algorithm 1): draw
//!    [`Learner::replay_draws`] items from the buffer (`remind` only), one update on the new
//!    item plus the drawn ones ([`Learner::update`]), a divergence check on its loss, then
//!    store the new item (evicting when the buffer is full);
//! 3. at every boundary of the plan, an evaluation point ([`Learner::evaluate`]) and a
//!    checkpoint (network, optimiser, per-class counters, buffer, RNG position) from which a
//!    resumed run continues to the same bytes.
//!
//! For `offline`, at every evaluation point a fresh network trained on everything seen so far
//! ([`Learner::train_offline`]), then the same evaluation point.
//!
//! All draws of the stream (replay, augmentation, eviction) come from one ChaCha8 generator
//! seeded from the task's seed, whose word position is checkpointed.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::nn::VarStore;
use tch::Tensor;

use super::attempt::Attempt;
use super::checkpoint::{
    accept_checkpoint, config_change, latest_checkpoint, read_state, write_checkpoint,
    CheckpointState,
};
use super::compute::{self, Meter, Stored};
use super::decode::StreamCodes;
use super::divergence::LossWatch;
use super::layout::{checkpoint_index, MethodDir, RunLayout};
use super::overlap::overlapped;
use super::plan::StreamPlan;
use super::Method;
use crate::artifact::atomic::write_bytes;
use crate::buffer::{Eviction, ReplayBuffer};
use crate::run::Progress;
use crate::train::optim::Optimizer;

/// A network being trained: its variables, the model over them, the optimiser and the
/// per-class update counters of the learning-rate schedule (empty where the rate is fixed).
/// Everything here is checkpointed.
pub struct Net<M> {
    pub vs: VarStore,
    pub model: M,
    pub opt: Optimizer,
    pub counters: Vec<u64>,
}

/// The replay part of one update: the buffer and the slots drawn from it (with the order
/// of the draws).
pub struct Replay<'a> {
    pub buffer: &'a ReplayBuffer,
    pub slots: &'a [usize],
}

/// What one update works on: the item at stream position `pos`, the replay part (with
/// `remind`) and the stream's generator.
pub struct Update<'a> {
    pub pos: usize,
    pub item: usize,
    pub replay: Option<Replay<'a>>,
    pub rng: &'a mut ChaCha8Rng,
}

/// What one update reports.
pub struct Step {
    /// The loss of the step (a scalar on the training device, detached; checked for
    /// divergence by [`LossWatch`], which reads it without stalling a GPU).
    pub loss: Tensor,
    /// Items in the step's batch (the new one and the replayed ones after mixing).
    pub batch: usize,
}

/// What the driver needs to know of a run, besides the maths; each task's context owns one.
pub struct RunSpec {
    pub task: &'static str,
    pub plan: StreamPlan,
    /// Hash of everything the results depend on ([`RunSpec::config`]); checkpoints of
    /// another hash are stale.
    pub config_hash: String,
    /// Everything the results depend on, by key (the settings, the codebook's and the
    /// weights' hashes): recorded in each checkpoint so that a refused resume names the keys
    /// that changed.
    pub config: serde_json::Value,
    /// The inputs' content digest ([`crate::run::contract`]): checkpoints made from other
    /// inputs are stale too. Kept in the method folder's `.inputs-digest`, not in the
    /// checkpoints, since it depends on how a dataset is sharded and the checkpoints of a
    /// sharded run must equal those of an unsharded one byte for byte.
    pub inputs_digest: Option<String>,
    /// The codebook the codes (and so the buffer) were made with, and the codes' shape.
    pub codes: StreamCodes,
    /// Seed of the stream's generator (replay, augmentation, eviction).
    pub seed: u64,
    pub buffer_capacity: Option<usize>,
    pub eviction: Eviction,
    /// The config key to lower when an update diverges (for the error message).
    pub lr_key: &'static str,
}

/// A task's side of a streaming run. The driver calls, in order: [`fresh`](Self::fresh),
/// then [`base_init`](Self::base_init) (or a checkpoint's weights), then per streamed item
/// [`update`](Self::update) and [`buffer_item`](Self::buffer_item), and
/// [`evaluate`](Self::evaluate) at every boundary; for `offline`, [`fresh`](Self::fresh),
/// [`train_offline`](Self::train_offline) and [`evaluate`](Self::evaluate) per boundary.
pub trait Learner {
    type Model;
    /// What [`Prepare::prepare`] makes for [`train`](Self::train) (`()` where the update
    /// is not split).
    type Prepared: Send;
    fn spec(&self) -> &RunSpec;
    /// A network in its starting state (seeded, or the base weights): every method of a run
    /// starts from the same one.
    fn fresh(&self) -> Result<Net<Self::Model>>;
    /// Base initialisation before the stream (a no-op where `fresh` already holds it).
    fn base_init(&self, net: &mut Net<Self::Model>, method: Method) -> Result<()>;
    /// Items drawn from the buffer per update (r, or 2r when mixup pairs them).
    fn replay_draws(&self) -> usize;
    /// Item `item`'s entry in the buffer: id, label, codes.
    fn buffer_item(&self, item: usize) -> Result<(u64, i64, &[u8])>;
    /// How errors name item `item` (e.g. "item id 17").
    fn describe(&self, item: usize) -> String;
    /// One update on the item at stream position `pos` and, with `remind`, the replayed
    /// items ([`Update`]); advances the per-class counters it uses.
    fn update(&self, net: &mut Net<Self::Model>, at: Update<'_>) -> Result<Step>;
    /// The half of [`update`](Self::update) that does not touch the network, for a second
    /// thread ([`super::overlap`]), where that pays: on a GPU, whose updates are bound by
    /// the host issuing kernels; `overlap` is the user's choice ([`Overlap`]). `None` (the
    /// default): every update runs whole.
    fn preparer(&self, _overlap: Overlap) -> Option<Box<dyn Prepare<Self::Prepared> + '_>> {
        None
    }
    /// The other half: the network's step on what [`Prepare::prepare`] made, with the
    /// per-class counters it uses. Called only when [`preparer`](Self::preparer) is `Some`.
    fn train(&self, _net: &mut Net<Self::Model>, _prepared: Self::Prepared) -> Result<Step> {
        bail!("this task's updates are not split")
    }
    /// Trains a fresh network on everything the stream has shown up to boundary `k`.
    fn train_offline(&self, net: &mut Net<Self::Model>, k: usize) -> Result<()>;
    /// Scores the network at boundary `k`, writing its predictions under `dir`.
    fn evaluate(
        &self,
        net: &Net<Self::Model>,
        k: usize,
        dir: &MethodDir,
        method: Method,
    ) -> Result<()>;
    /// One bare training step (forward, backward, optimiser step) for `net` on a prepared
    /// batch of `items` (the stream's first): the compute floor the streamed updates are
    /// timed against.
    fn bare_step<'a>(
        &'a self,
        net: &'a mut Net<Self::Model>,
        items: &[usize],
    ) -> Result<BareStep<'a>>;
    /// Estimated forward FLOPs of the trained model on one training item, from its layer
    /// and input shapes (the `compute` block of `complete.json`, [`super::compute`]).
    fn forward_flops_per_item(&self) -> Result<f64>;
}

/// The half of an update that does not touch the network ([`Learner::preparer`]), run on
/// a second thread: from the item, its replay draw and the stream's generator, everything
/// the step needs; drawing from the generator exactly as [`Learner::update`] does.
pub trait Prepare<P>: Send + Sync {
    fn prepare(&self, item: usize, replay: Option<Replay<'_>>, rng: &mut ChaCha8Rng) -> Result<P>;
    /// Item `item`'s entry in the buffer, as [`Learner::buffer_item`].
    fn buffer_item(&self, item: usize) -> Result<(u64, i64, &[u8])>;
}

/// The environment variable choosing whether streaming updates run in two halves on two
/// threads ([`Overlap`]).
pub const OVERLAP_ENV: &str = "REMIND_OVERLAP";

/// Whether a task's streaming updates run in two halves on two threads
/// ([`Learner::preparer`]), from [`OVERLAP_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Unset: where the task finds it pays (classification: on a GPU).
    Default,
    /// `1`: split wherever the task can (classification on the CPU too: how the tests
    /// check, without a GPU, that the split update computes what the whole one does).
    Always,
    /// `0`: never.
    Never,
}

impl Overlap {
    /// Reads [`OVERLAP_ENV`]. Errors: any value but `0` or `1`.
    pub fn from_env() -> Result<Self> {
        match std::env::var(OVERLAP_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::Default),
            Ok(v) if v == "1" => Ok(Self::Always),
            Ok(v) if v == "0" => Ok(Self::Never),
            Ok(v) => bail!(
                "{OVERLAP_ENV} must be 1 (split the update on two threads) or 0 (never), found \
                 {v:?}; unset it for the default (split on a GPU only)"
            ),
            Err(e) => bail!("{OVERLAP_ENV} is not valid text: {e}"),
        }
    }
}

/// A prepared training step ([`Learner::bare_step`]), run again and again to time it;
/// returns its loss, detached and not read (reading it would wait for a GPU every step).
pub type BareStep<'a> = Box<dyn FnMut() -> Result<Tensor> + 'a>;

/// Where a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From scratch: an existing method folder is set aside, removed once the run succeeds
    /// and put back if it fails ([`super::attempt`]).
    No,
    /// The latest checkpoint; one made under another configuration is refused.
    Latest,
    /// The latest checkpoint when it matches this configuration and inputs, else start
    /// afresh, the stale folder set aside as with `No` (what `make` uses after a change).
    RestartStale,
    /// The checkpoint of this evaluation point (0 = after base initialisation).
    From(usize),
}

/// Wall time of the streamed updates against the bare compute floor, both measured in this
/// process with the same threads: the floor is a fresh network's forward, backward and
/// optimiser step on a prepared batch of the last update's size (after the stream, so the
/// run itself is untouched).
#[derive(Debug, Clone, Serialize)]
pub struct UpdateRate {
    pub updates: usize,
    pub batch: usize,
    pub updates_per_s: f64,
    pub floor_updates_per_s: f64,
    pub update_over_floor: f64,
    /// The update's halves ran on two threads ([`Learner::preparer`]).
    pub two_threads: bool,
}

/// Steps of the floor measurement.
const FLOOR_STEPS: usize = 50;

/// Runs `method` of a task, writing under `out` (see [`super::layout`]); `extra` joins the
/// completion marker (e.g. what loading dropped).
pub fn run<L: Learner>(
    learner: &L,
    out: &Path,
    method: Method,
    resume: Resume,
    extra: serde_json::Value,
) -> Result<()> {
    // A bad setting is refused before anything is trained, written or set aside (read
    // again where it is used).
    Overlap::from_env()?;
    let layout = RunLayout::new(out);
    let dir = layout.method(method.name());
    let mut attempt = Attempt::begin(&layout, &dir)?;
    if resume == Resume::No {
        // Starting over discards an unfinished run's checkpoints (once this run
        // finishes): say so, and how to continue it instead.
        if !dir.complete().exists() {
            let last = std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| checkpoint_index(&e.file_name().to_string_lossy()))
                .max();
            if let Some(k) = last {
                eprintln!(
                    "stream-train: {} holds an unfinished run (checkpoints up to boundary {k}); \
                     starting over without it (--resume would continue it)",
                    dir.path().display()
                );
            }
        }
        attempt.set_aside()?;
    }
    match run_attempt(learner, &layout, &dir, method, resume, extra, &mut attempt) {
        Ok(()) => attempt.finish(),
        Err(e) => {
            attempt.roll_back();
            Err(e)
        }
    }
}

fn run_attempt<L: Learner>(
    learner: &L,
    layout: &RunLayout,
    dir: &MethodDir,
    method: Method,
    resume: Resume,
    extra: serde_json::Value,
    attempt: &mut Attempt,
) -> Result<()> {
    let spec = learner.spec();
    write_bytes(&layout.plan(), &serde_json::to_vec(&spec.plan)?)?;
    let dir = dir.clone();
    let started = Instant::now();
    let meter = Meter::start();
    let ran = match method {
        Method::Offline => run_offline(learner, &dir, resume, attempt)?,
        Method::Remind | Method::Finetune => run_streaming(learner, &dir, method, resume, attempt)?,
    };
    let compute = meter.finish(
        learner.forward_flops_per_item()?,
        ran.stored,
        ran.resumed_from,
    );
    let plan = &spec.plan;
    let positions: Vec<usize> = (0..plan.boundaries.len())
        .map(|k| plan.position(k))
        .collect();
    let mut done = serde_json::json!({
        "task": spec.task,
        "method": method.name(),
        "boundaries": positions,
        "config_hash": spec.config_hash,
        "seconds": started.elapsed().as_secs_f64(),
        "update_rate": ran.rate,
        "compute": compute,
    });
    if !plan.seen_classes.is_empty() {
        done["seen_classes"] = serde_json::json!(plan.seen_classes);
    }
    if let (Some(o), serde_json::Value::Object(e)) = (done.as_object_mut(), extra) {
        o.extend(e);
    }
    // Written last: its presence means every boundary is done.
    write_bytes(&dir.complete(), &serde_json::to_vec_pretty(&done)?)?;
    Ok(())
}

/// The checkpoint a run continues from, per `resume`; then records the inputs' digest in
/// the method folder for the next run to compare.
fn resume_point(
    dir: &MethodDir,
    resume: Resume,
    spec: &RunSpec,
    points: usize,
    attempt: &mut Attempt,
) -> Result<Option<(std::path::PathBuf, CheckpointState)>> {
    let found = match resume {
        Resume::No => None,
        Resume::From(k) => {
            ensure!(
                k < points,
                "--resume-from {k}: this run has evaluation points 0..{}",
                points - 1
            );
            let ckpt = dir.checkpoint(k);
            if !ckpt.join("state.json").is_file() {
                let have = latest_checkpoint(dir.path())?
                    .map(|(_, st)| format!("the latest is {}", st.boundary))
                    .unwrap_or_else(|| "there is none".into());
                bail!(
                    "--resume-from {k}: {} holds no checkpoint of evaluation point {k} ({have})",
                    dir.path().display()
                );
            }
            let state = read_state(&ckpt)?;
            Some((ckpt, state))
        }
        Resume::Latest | Resume::RestartStale => latest_checkpoint(dir.path())?,
    };
    let digest_file = dir.path().join(INPUTS_DIGEST_FILE);
    let inputs_changed = spec
        .inputs_digest
        .as_deref()
        .is_some_and(|d| std::fs::read_to_string(&digest_file).map_or(true, |was| was.trim() != d));
    let decided = match found {
        Some((_, state))
            if resume == Resume::RestartStale
                && (state.config_hash != spec.config_hash || inputs_changed) =>
        {
            let why = match config_change(&state, &spec.config_hash, &spec.config) {
                Some(change) => format!("another configuration ({change})"),
                None => "other inputs".to_string(),
            };
            eprintln!(
                "stream-train: {} was made from {why}; starting afresh",
                dir.path().display()
            );
            attempt.set_aside()?;
            None
        }
        Some((ckpt, _)) if inputs_changed => bail!(
            "{}: checkpoint made from other inputs than these ({} differs or is missing): \
             resuming is refused (--restart-stale starts afresh; or use a fresh output folder)",
            ckpt.display(),
            digest_file.display()
        ),
        found => accept_checkpoint(dir.path(), found, &spec.config_hash, &spec.config, false)?,
    };
    if let Some(d) = &spec.inputs_digest {
        std::fs::create_dir_all(dir.path())
            .with_context(|| format!("cannot create {}", dir.path().display()))?;
        write_bytes(&digest_file, d.as_bytes())?;
    }
    Ok(decided)
}

/// The inputs' digest of the run a method folder holds (hidden: bookkeeping, not a result).
const INPUTS_DIGEST_FILE: &str = ".inputs-digest";

/// Everything a checkpoint holds: the network, the buffer (`remind`) and the stream's
/// generator.
struct State<M> {
    net: Net<M>,
    buffer: Option<ReplayBuffer>,
    rng: ChaCha8Rng,
}

/// Evaluation point `k`: the task's predictions, then a checkpoint of `state`.
fn evaluation_point<L: Learner>(
    learner: &L,
    dir: &MethodDir,
    method: Method,
    k: usize,
    state: &State<L::Model>,
) -> Result<()> {
    compute::excluded(|| evaluation_point_timed(learner, dir, method, k, state))
}

/// [`evaluation_point`], its time counted by the caller.
fn evaluation_point_timed<L: Learner>(
    learner: &L,
    dir: &MethodDir,
    method: Method,
    k: usize,
    state: &State<L::Model>,
) -> Result<()> {
    let spec = learner.spec();
    let State { net, buffer, rng } = state;
    learner.evaluate(net, k, dir, method)?;
    let state = CheckpointState {
        method: method.name().into(),
        boundary: k,
        position: spec.plan.position(k),
        config_hash: spec.config_hash.clone(),
        config: spec.config.clone(),
        rng_word_pos: rng.get_word_pos(),
        counters: net.counters.clone(),
        files: Default::default(),
    };
    write_checkpoint(dir.path(), &state, |ckpt| {
        net.vs
            .save(ckpt.join("model.safetensors"))
            .context("cannot save the model")?;
        net.opt.save(&ckpt.join("optim.safetensors"))?;
        if let Some(b) = buffer {
            b.save(
                &ckpt.join("buffer.arrow"),
                &spec.codes.codebook_hash,
                &spec.codes.code_shape,
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Loads checkpoint `ckpt` (whose state is `saved`) into `state`.
fn restore<M>(
    ckpt: &Path,
    saved: &CheckpointState,
    spec: &RunSpec,
    state: &mut State<M>,
) -> Result<()> {
    let State { net, buffer, rng } = state;
    net.vs
        .load(ckpt.join("model.safetensors"))
        .with_context(|| format!("cannot load {}", ckpt.display()))?;
    net.opt.load(&ckpt.join("optim.safetensors"))?;
    if let Some(b) = buffer {
        let loaded = ReplayBuffer::load(&ckpt.join("buffer.arrow"))?;
        ensure!(
            loaded.codebook_hash == spec.codes.codebook_hash,
            "{}: buffer codes were made with another codebook",
            ckpt.display()
        );
        *b = loaded.buffer;
    }
    rng.set_word_pos(saved.rng_word_pos);
    ensure!(
        saved.counters.len() == net.counters.len(),
        "{}: {} learning-rate counters, the run has {}",
        ckpt.display(),
        saved.counters.len(),
        net.counters.len()
    );
    net.counters.copy_from_slice(&saved.counters);
    Ok(())
}

/// What a method's run tells its completion record besides the plan.
struct Ran {
    /// Streamed updates against the floor (`remind`, `finetune`; None without updates).
    rate: Option<UpdateRate>,
    /// What the method keeps of the stream at its end.
    stored: Stored,
    /// The evaluation point a resumed run continued from.
    resumed_from: Option<usize>,
}

/// The buffer slots drawn for one update: `draws` of them, none without a buffer or while
/// it is empty.
fn draw_slots(buffer: Option<&ReplayBuffer>, draws: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    match buffer {
        Some(b) if draws > 0 && !b.is_empty() => b.sample(draws, rng),
        _ => Vec::new(),
    }
}

fn run_streaming<L: Learner>(
    learner: &L,
    dir: &MethodDir,
    method: Method,
    resume: Resume,
    attempt: &mut Attempt,
) -> Result<Ran> {
    let spec = learner.spec();
    let plan = &spec.plan;
    let points = plan.boundaries.len();
    let preparer = learner.preparer(Overlap::from_env()?);
    let mut state = State {
        net: learner.fresh()?,
        buffer: match method {
            Method::Remind => Some(ReplayBuffer::new(
                spec.codes.code_shape.iter().product(),
                spec.buffer_capacity,
                spec.eviction,
            )?),
            _ => None,
        },
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x7265_6d69_6e64),
    };
    let mut resumed_from = None;
    let start = match resume_point(dir, resume, spec, points, attempt)? {
        Some((ckpt, saved)) => {
            restore(&ckpt, &saved, spec, &mut state)?;
            resumed_from = Some(saved.boundary);
            eprintln!(
                "stream-train[{}]: resumed from {} (position {})",
                method.name(),
                ckpt.display(),
                saved.position
            );
            // Later checkpoints belong to the abandoned continuation: drop them.
            for k in saved.boundary + 1..points {
                let d = dir.checkpoint(k);
                if d.exists() {
                    std::fs::remove_dir_all(&d)
                        .with_context(|| format!("cannot remove {}", d.display()))?;
                }
            }
            saved.boundary + 1
        }
        None => {
            learner.base_init(&mut state.net, method)?;
            if let Some(b) = state.buffer.as_mut() {
                let base = &plan.items[..plan.base_len()];
                b.reserve(base.len());
                for &item in base {
                    let (id, label, codes) = learner.buffer_item(item)?;
                    b.insert(id, label, codes, &mut state.rng)?;
                }
            }
            evaluation_point(learner, dir, method, 0, &state)?;
            1
        }
    };
    let remaining = plan.items.len() - plan.boundaries[start - 1];
    let mut progress = Progress::new(method.name(), remaining as u64);
    let draws = learner.replay_draws();
    let (mut updates, mut seconds, mut batch) = (0usize, 0.0f64, 0usize);
    let mut watch = LossWatch::default();
    let describe = |item: usize| learner.describe(item);
    for k in start..points {
        let segment = plan.boundaries[k - 1]..plan.boundaries[k];
        if let Some(prep) = preparer.as_deref() {
            // The update's halves on two threads (a GPU: host-bound); the same draws in
            // the same order as below.
            let t = Instant::now();
            let State { net, buffer, rng } = &mut state;
            let first = segment.start;
            let produce = |i: usize| -> Result<(usize, L::Prepared)> {
                let pos = first + i;
                let item = plan.items[pos];
                let slots = draw_slots(buffer.as_ref(), draws, rng);
                let replay = buffer.as_ref().map(|b| Replay {
                    buffer: b,
                    slots: &slots,
                });
                let prepared = prep
                    .prepare(item, replay, rng)
                    .with_context(|| format!("preparing the update at stream position {pos}"))?;
                if let Some(b) = buffer.as_mut() {
                    let (id, label, codes) = prep.buffer_item(item)?;
                    b.insert(id, label, codes, rng)?;
                }
                Ok((item, prepared))
            };
            overlapped(segment.len(), 2, produce, |i, (item, prepared)| {
                let pos = first + i;
                let step = learner.train(net, prepared).with_context(|| {
                    format!(
                        "update at stream position {pos} ({})",
                        learner.describe(item)
                    )
                })?;
                watch.push(step.loss, item, &describe, spec.lr_key)?;
                updates += 1;
                batch = step.batch;
                compute::count_step(step.batch);
                progress.inc(1);
                Ok(())
            })?;
            watch.check(&describe, spec.lr_key)?;
            seconds += t.elapsed().as_secs_f64();
            evaluation_point(learner, dir, method, k, &state)?;
            continue;
        }
        for pos in segment {
            let t = Instant::now();
            let item = plan.items[pos];
            let State { net, buffer, rng } = &mut state;
            let slots = draw_slots(buffer.as_ref(), draws, rng);
            let replay = buffer.as_ref().map(|b| Replay {
                buffer: b,
                slots: &slots,
            });
            let step = learner
                .update(
                    net,
                    Update {
                        pos,
                        item,
                        replay,
                        rng,
                    },
                )
                .with_context(|| {
                    format!(
                        "update at stream position {pos} ({})",
                        learner.describe(item)
                    )
                })?;
            watch.push(step.loss, item, &describe, spec.lr_key)?;
            if let Some(b) = buffer.as_mut() {
                let (id, label, codes) = learner.buffer_item(item)?;
                b.insert(id, label, codes, rng)?;
            }
            seconds += t.elapsed().as_secs_f64();
            updates += 1;
            batch = step.batch;
            compute::count_step(step.batch);
            progress.inc(1);
        }
        // Before anything is evaluated or checkpointed, and inside the timed part.
        let t = Instant::now();
        watch.check(&describe, spec.lr_key)?;
        seconds += t.elapsed().as_secs_f64();
        evaluation_point(learner, dir, method, k, &state)?;
    }
    progress.finish();
    let stored = state
        .buffer
        .as_ref()
        .map_or_else(Stored::default, |b| Stored {
            bytes: b.memory_bytes() as u64,
            items: b.len() as u64,
            item_code_bytes: b.item_bytes() as u64,
        });
    if updates == 0 {
        return Ok(Ran {
            rate: None,
            stored,
            resumed_from,
        });
    }
    let floor = compute::excluded(|| floor_seconds(learner, batch))?;
    let per_update = seconds / updates as f64;
    let rate = UpdateRate {
        updates,
        batch,
        updates_per_s: 1.0 / per_update,
        floor_updates_per_s: 1.0 / floor,
        update_over_floor: floor / per_update,
        two_threads: preparer.is_some(),
    };
    eprintln!(
        "stream-train[{}]: {:.1} updates/s over {} updates of batch {}; bare forward+backward+step on a prepared batch: {:.1}/s (ratio {:.3})",
        method.name(), rate.updates_per_s, updates, rate.batch, rate.floor_updates_per_s, rate.update_over_floor
    );
    Ok(Ran {
        rate: Some(rate),
        stored,
        resumed_from,
    })
}

/// Seconds of one bare step on a fresh network (one warm-up step, then the mean of
/// [`FLOOR_STEPS`]).
fn floor_seconds<L: Learner>(learner: &L, batch: usize) -> Result<f64> {
    let mut net = learner.fresh()?;
    let items = &learner.spec().plan.items;
    let mut step = learner.bare_step(&mut net, &items[..batch.min(items.len())])?;
    let _ = step()?.double_value(&[]);
    let t = Instant::now();
    let mut loss = Tensor::new();
    for _ in 0..FLOOR_STEPS {
        loss = step()?;
    }
    // Reading the last loss waits for every queued step (a GPU's); its value is not
    // checked (the floor times a fresh network, whatever it learns).
    let _ = loss.double_value(&[]);
    Ok(t.elapsed().as_secs_f64() / FLOOR_STEPS as f64)
}

/// The offline baseline; what it stores is every item of the last point, as codes.
fn run_offline<L: Learner>(
    learner: &L,
    dir: &MethodDir,
    resume: Resume,
    attempt: &mut Attempt,
) -> Result<Ran> {
    let spec = learner.spec();
    let points = spec.plan.boundaries.len();
    let resumed_from = resume_point(dir, resume, spec, points, attempt)?.map(|(_, s)| s.boundary);
    let start = resumed_from.map_or(0, |k| k + 1);
    for k in start..points {
        let mut net = learner.fresh()?;
        learner.train_offline(&mut net, k)?;
        // Offline draws nothing from the stream's generator: its position stays 0.
        let state = State {
            net,
            buffer: None,
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
        };
        evaluation_point(learner, dir, Method::Offline, k, &state)?;
    }
    let item_code_bytes = spec.codes.code_shape.iter().product::<usize>() as u64;
    let items = spec.plan.boundaries.last().copied().unwrap_or(0) as u64;
    Ok(Ran {
        rate: None,
        stored: Stored {
            bytes: items * item_code_bytes,
            items,
            item_code_bytes,
        },
        resumed_from,
    })
}
