//! Feature extraction (stage `remind-extract-features`): images through a frozen backbone
//! G into a `features` dataset.
//!
//! Inputs: a folder of PNG/JPEG images (walked recursively) and backbone weights (a
//! torchvision-named state_dict as safetensors). Each image gets an id ([`IdFrom`]): its
//! position in the sorted list of relative paths, CLEVR's image index or COCO's image id
//! (TDIUC) from its file name.
//! Outputs: the dataset folder `out` holds only its parts; the side files lie beside it,
//! named after it ([`side_path`]: `<out>.<name>`):
//!
//! - `out/part-KKKKK-of-NNNNN.arrow`: one part per shard, rows `(id, HWC float32 feature
//!   map)`, metadata: shape, layout `HWC`, and a producer naming the backbone (arch, width,
//!   stem, cut), the weights file and its SHA-256, the image size and id scheme;
//! - `<out>.images.parquet` (kind `images`): every listed image's id and relative path, so
//!   ids map back to files (written by each shard; all write the same rows);
//! - with `skip_bad`: `<out>.bad_images.json` (`<out>.bad_images-KKKKK-of-NNNNN.json` per
//!   shard when sharded), the images that could not be decoded, as a JSON list of
//!   `{id, path, error}`; their ids are absent from the features.
//!
//! Folders written before #17 hold `images.parquet` and `bad_images*.json` inside; readers
//! ([`expected_ids`]) still take them there when the folder has no side files beside it.
//!
//! Preprocessing: decode, convert to RGB, resize to `image_size x image_size` (bicubic, as
//! PIL does), scale to [0, 1], normalise with ImageNet mean and std. Decoding runs on
//! `decode_threads` threads, the backbone on one, writing on another; crossbeam channels
//! between them keep all three busy.

pub mod images;

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use arrow::array::{ArrayRef, StringArray, UInt64Array};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::artifact::atomic::write_bytes;
use crate::artifact::dataset::{part_is_done, part_path, side_path};
use crate::artifact::weights::{file_sha256, read_weights, weights_metadata};
use crate::artifact::{write_table, DType, Payload, Producer, TensorSpec, TensorWriter};
use crate::models::{load_weights, Arch, Cut, ResNet, ResNetConfig, Stem, Unexpected};
use crate::run::{config_hash, Precision, Progress, Shard};

pub use images::{decode_image, list_images, IdFrom, ImageItem};

/// ImageNet channel statistics (torchvision's `Normalize` values).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Per-channel input statistics: an image scaled to [0, 1] becomes `(x - mean) / std`
/// (torchvision's `Normalize`). ImageNet's by default; a data set's own for networks trained
/// on it from scratch (Fashion-MNIST: 0.2860 / 0.3530 on each of the three replicated grey
/// channels). Recorded in the weights a network is trained into (`remind.input_mean`,
/// `remind.input_std`), so feature extraction feeds it as it was trained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNorm {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Default for InputNorm {
    fn default() -> Self {
        Self {
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// Metadata keys of the input statistics in a weights file.
const MEAN_KEY: &str = "remind.input_mean";
const STD_KEY: &str = "remind.input_std";

impl InputNorm {
    fn stat(v: &[f64; 3], device: Device) -> Tensor {
        Tensor::from_slice(v)
            .to_kind(Kind::Float)
            .view([1, 3, 1, 1])
            .to_device(device)
    }

    /// The value black (0 in [0, 1]) takes after normalisation, `[1, 3, 1, 1]`: what
    /// padding must use so that a padded border is black, not the mean colour.
    pub fn black(&self, device: Device) -> Tensor {
        -Self::stat(&self.mean, device) / Self::stat(&self.std, device)
    }

    /// The metadata entries that record these statistics.
    pub fn metadata(&self) -> [(String, String); 2] {
        let join = |v: &[f64; 3]| v.map(|x| x.to_string()).join(",");
        [
            (MEAN_KEY.into(), join(&self.mean)),
            (STD_KEY.into(), join(&self.std)),
        ]
    }

    /// The statistics recorded in a weights file's metadata, if any. Errors name the file
    /// and the key.
    pub fn from_metadata(
        meta: &std::collections::HashMap<String, String>,
        file: &Path,
    ) -> Result<Option<Self>> {
        let parse = |key: &str| -> Result<Option<[f64; 3]>> {
            let Some(text) = meta.get(key) else {
                return Ok(None);
            };
            let v: Vec<f64> = text
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .ok()
                .filter(|v: &Vec<f64>| v.len() == 3)
                .with_context(|| {
                    format!(
                        "{}: metadata {key} is '{text}', expected three comma-separated numbers",
                        file.display()
                    )
                })?;
            Ok(Some([v[0], v[1], v[2]]))
        };
        match (parse(MEAN_KEY)?, parse(STD_KEY)?) {
            (Some(mean), Some(std)) => Ok(Some(Self { mean, std })),
            (None, None) => Ok(None),
            _ => bail!(
                "{}: metadata has only one of {MEAN_KEY} and {STD_KEY}",
                file.display()
            ),
        }
    }

    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        ensure!(
            self.std.iter().all(|s| *s > 0.0 && s.is_finite())
                && self.mean.iter().all(|m| m.is_finite()),
            "{what}: std must be positive and mean finite, got mean {:?}, std {:?}",
            self.mean,
            self.std
        );
        Ok(())
    }
}

/// The network input for decoded images: `pixels` are RGB bytes `[N, H, W, 3]` (as
/// [`decode_image`] returns them, on any device); the result is `[N, 3, H, W]` float32 on
/// the same device, scaled to [0, 1] and normalised with `norm`. Feature extraction and
/// backbone training both feed their networks through this one function.
pub fn normalise_images_with(pixels: &Tensor, norm: &InputNorm) -> Tensor {
    let device = pixels.device();
    let x = pixels.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    (x - InputNorm::stat(&norm.mean, device)) / InputNorm::stat(&norm.std, device)
}

/// [`normalise_images_with`], laid out NCHW-contiguous: the input of a network that is
/// trained on it (backward passes). [`normalise_images_with`] returns a tensor with NHWC
/// strides (computed from a permuted view), which libtorch takes as channels-last; oneDNN 1x1 strided convolutions' weight gradient
/// on channels-last input writes past its buffers on AVX2-only CPUs (libtorch 2.13, AMD
/// EPYC without AVX-512: heap corruption, crashes, runs that differ under the same seed;
/// PyTorch's own channels-last training does the same there). One copy of the batch.
pub fn normalise_images_for_training(pixels: &Tensor, norm: &InputNorm) -> Tensor {
    normalise_images_with(pixels, norm).contiguous()
}

/// [`normalise_images_with`] ImageNet's statistics.
pub fn normalise_images(pixels: &Tensor) -> Tensor {
    normalise_images_with(pixels, &InputNorm::default())
}

/// Config section `extract_features`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Image folder.
    pub images: Option<PathBuf>,
    /// Output dataset folder.
    pub out: Option<PathBuf>,
    /// Backbone weights (safetensors with torchvision names; G's names are taken from it).
    pub weights: Option<PathBuf>,
    pub arch: Arch,
    /// Base channels of the backbone (64 for torchvision's networks).
    pub width: i64,
    pub stem: Stem,
    /// Where G ends: `layer1`..`layer4` or a block such as `layer4.0`.
    pub cut: Cut,
    /// Side of the square the images are resized to.
    pub image_size: usize,
    pub id_from: IdFrom,
    /// Images per forward pass.
    pub batch: usize,
    /// Record undecodable images in the bad-images report instead of failing.
    pub skip_bad: bool,
    /// Decoding threads.
    pub decode_threads: usize,
    /// Input statistics; absent: those recorded in the weights, else ImageNet's. Given and
    /// different from the recorded ones: refused.
    pub input_norm: Option<InputNorm>,
    /// Compute precision of G's forward pass ([`Precision`]; bf16: autocast, features
    /// still written as fp32). Refused on a CPU without bf16 instructions.
    pub precision: Precision,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            images: None,
            out: None,
            weights: None,
            arch: Arch::ResNet18,
            width: 64,
            stem: Stem::ImageNet,
            cut: Cut {
                stage: 3,
                block: None,
            },
            image_size: 224,
            id_from: IdFrom::Sorted,
            batch: 16,
            skip_bad: false,
            decode_threads: 1,
            input_norm: None,
            precision: Precision::Fp32,
        }
    }
}

/// [`ExtractConfig::adopt_weights_network`] for one key: the weights' `remind.<key>`
/// replaces `value`, unless `given(key)` and they disagree (an error naming both).
fn adopt<T>(
    weights: &Path,
    meta: &std::collections::HashMap<String, String>,
    key: &str,
    value: &mut T,
    given: impl Fn(&str) -> bool,
) -> Result<()>
where
    T: std::str::FromStr + PartialEq + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let p = weights.display();
    let Some(recorded) = meta.get(&format!("remind.{key}")) else {
        return Ok(());
    };
    let theirs: T = recorded
        .parse()
        .map_err(|e| anyhow!("{p}: remind.{key} '{recorded}': {e}"))?;
    if theirs != *value {
        if given(key) {
            bail!(
                "{p}: the weights record remind.{key} = {recorded}, but --{key} / \
                 extract_features.{key} is {value}: leave it out (it is read from the \
                 weights) or give the weights it describes"
            );
        }
        *value = theirs;
    }
    Ok(())
}

impl ExtractConfig {
    pub fn backbone(&self) -> ResNetConfig {
        ResNetConfig::new(self.arch, self.width, self.stem)
    }
    pub fn required(&self) -> Result<(&Path, &Path, &Path)> {
        let images = self
            .images
            .as_deref()
            .context("no image folder: give --images or extract_features.images")?;
        let out = self
            .out
            .as_deref()
            .context("no output folder: give --out or extract_features.out")?;
        let weights = self
            .weights
            .as_deref()
            .context("no backbone weights: give --weights or extract_features.weights")?;
        Ok((images, out, weights))
    }

    /// Takes the network the weights record (`remind.arch`, `remind.width`, `remind.stem`
    /// in a safetensors file's metadata, as train-backbone, train-classifier and
    /// `remind-backbone init` write them) where the config and flags left it at its
    /// default; one that was given (`given(key)`) and disagrees is an error naming both
    /// (issue #17: a silent default built the wrong network and failed with hundreds of
    /// missing and misshapen tensors). Weights without the keys (torchvision's) keep the
    /// config's values.
    pub fn adopt_weights_network(&mut self, given: impl Fn(&str) -> bool) -> Result<()> {
        let (_, _, weights) = self.required()?;
        let weights = weights.to_path_buf();
        let meta = weights_metadata(&weights)?;
        adopt(&weights, &meta, "arch", &mut self.arch, &given)?;
        adopt(&weights, &meta, "width", &mut self.width, &given)?;
        adopt(&weights, &meta, "stem", &mut self.stem, &given)?;
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            (8..=4096).contains(&self.image_size),
            "extract_features.image_size {} out of range (8..=4096)",
            self.image_size
        );
        ensure!(self.batch >= 1, "extract_features.batch must be at least 1");
        ensure!(
            (1..=64).contains(&self.decode_threads),
            "extract_features.decode_threads must be 1..=64"
        );
        self.backbone().validate()?;
        self.backbone().cut_index(self.cut)?;
        Ok(())
    }
}

/// What determines the features' values: hashed into the artifacts' config hash, so shards
/// run with different parameters are refused when the dataset is opened.
#[derive(Serialize)]
struct OutputParams<'a> {
    listing: &'a str,
    weights_sha256: &'a str,
    arch: Arch,
    width: i64,
    stem: Stem,
    cut: Cut,
    image_size: usize,
    id_from: IdFrom,
    skip_bad: bool,
    /// Left out for ImageNet's statistics, so earlier extractions keep their hash.
    #[serde(skip_serializing_if = "is_imagenet")]
    norm: InputNorm,
    /// Left out for fp32, so earlier extractions keep their hash.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    precision: Precision,
}

fn is_imagenet(n: &InputNorm) -> bool {
    *n == InputNorm::default()
}

/// An image that could not be decoded (with `skip_bad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadImage {
    pub id: u64,
    pub path: String,
    pub error: String,
}

/// What one run did.
#[derive(Debug)]
pub struct ExtractOutcome {
    /// The shard's part, or `None` when it was already complete.
    pub part: Option<PathBuf>,
    pub index: PathBuf,
    pub report: Option<PathBuf>,
    pub rows: usize,
    pub bad: Vec<BadImage>,
    pub producer: Producer,
    /// Feature map shape, HWC.
    pub shape: [usize; 3],
    /// Seconds the backbone computed, and wall seconds of the decode-compute-write
    /// pipeline: their ratio says whether decoding or writing starved the model.
    pub busy_seconds: f64,
    pub pipeline_seconds: f64,
}

/// Name of the bad-images report of `shard`.
pub fn report_name(shard: Shard) -> String {
    if shard.count == 1 {
        "bad_images.json".into()
    } else {
        format!("bad_images-{:05}-of-{:05}.json", shard.index, shard.count)
    }
}

/// Name of the image index, a side file of the dataset folder ([`side_path`]:
/// `<out>.images.parquet`).
pub const INDEX_NAME: &str = "images.parquet";

/// The image index of features dataset `dir`: `<dir>.images.parquet`.
pub fn index_path(dir: &Path) -> Result<PathBuf> {
    side_path(dir, INDEX_NAME)
}

/// The bad-images report of `shard` of features dataset `dir`: `<dir>.<report_name>`.
pub fn report_path(dir: &Path, shard: Shard) -> Result<PathBuf> {
    side_path(dir, &report_name(shard))
}

/// The ids a complete features dataset in `dir` must hold: those of its image index
/// (`<dir>.images.parquet`) less the undecodable images its shards reported
/// (`<dir>.bad_images*.json`); `None` when the folder has no index (a dataset of another
/// stage). A folder of before #17, with `images.parquet` and `bad_images*.json` inside and
/// no index beside it, is read in that layout.
pub fn expected_ids(dir: &Path) -> Result<Option<Vec<u64>>> {
    let beside = index_path(dir)?;
    let inside = dir.join(INDEX_NAME);
    // Where the index and reports are, and the prefix of the reports' names there.
    let (index, listing_dir, prefix) = if beside.exists() {
        let folder = dir.file_name().unwrap_or_default().to_string_lossy();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (beside, parent, format!("{folder}.bad_images"))
    } else if inside.exists() {
        (inside, dir.to_path_buf(), "bad_images".to_string())
    } else {
        return Ok(None);
    };
    let mut ids = crate::artifact::table::read_id_column(&index, "id")?;
    let mut bad = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&listing_dir)
        .with_context(|| format!("cannot list {}", listing_dir.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".json") {
            let listed: Vec<BadImage> = serde_json::from_slice(&std::fs::read(&path)?)
                .with_context(|| format!("{}: not a bad-images report", path.display()))?;
            bad.extend(listed.into_iter().map(|b| b.id));
        }
    }
    ids.retain(|id| !bad.contains(id));
    Ok(Some(ids))
}

/// The input statistics of an extraction: the config's, else the weights', else ImageNet's.
fn resolve_norm(cfg: &ExtractConfig, weights: &Path) -> Result<InputNorm> {
    let recorded = InputNorm::from_metadata(&read_weights(weights)?.metadata, weights)?;
    let norm = match (cfg.input_norm, recorded) {
        (Some(given), Some(rec)) if given != rec => bail!(
            "extract_features.input_norm (mean {:?}, std {:?}) differs from the statistics {} was trained with (mean {:?}, std {:?}): drop input_norm to use the recorded ones",
            given.mean, given.std, weights.display(), rec.mean, rec.std
        ),
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => InputNorm::default(),
    };
    norm.validate("extract_features.input_norm")?;
    Ok(norm)
}

/// How the producer names the input statistics ("imagenet" for ImageNet's, as before).
fn normalize_name(norm: &InputNorm) -> String {
    if *norm == InputNorm::default() {
        "imagenet".into()
    } else {
        format!("mean {:?} std {:?}", norm.mean, norm.std)
    }
}

/// Extracts the features of `shard`'s images on `device`.
pub fn extract_features(
    cfg: &ExtractConfig,
    device: Device,
    shard: Shard,
) -> Result<ExtractOutcome> {
    cfg.validate()?;
    cfg.precision
        .prepare(device, "extract_features.precision")?;
    let (images_dir, out, weights) = cfg.required()?;
    let items = list_images(images_dir, cfg.id_from)?;
    let listing = images::listing_hash(&items);
    let weights_sha = file_sha256(weights)?;
    let norm = resolve_norm(cfg, weights)?;
    let hash = config_hash(&OutputParams {
        listing: &listing,
        weights_sha256: &weights_sha,
        arch: cfg.arch,
        width: cfg.width,
        stem: cfg.stem,
        cut: cfg.cut,
        image_size: cfg.image_size,
        id_from: cfg.id_from,
        skip_bad: cfg.skip_bad,
        norm,
        precision: cfg.precision,
    })?;
    let backbone = cfg.backbone();
    let shape = backbone.feature_shape(cfg.cut, cfg.image_size)?;
    let producer = Producer::new("extract-features", &hash)
        .param("arch", cfg.arch.name())
        .param("width", cfg.width)
        .param("stem", cfg.stem.name())
        .param("cut", cfg.cut.to_string())
        .param("weights", weights.display().to_string())
        .param("weights_sha256", weights_sha.clone())
        .param("image_size", cfg.image_size)
        .param("resize", "bicubic")
        .param("normalize", normalize_name(&norm))
        .param("id_from", cfg.id_from.name())
        .param("images", images_dir.display().to_string());
    let producer = match cfg.precision {
        Precision::Fp32 => producer,
        p => producer.param("precision", p.name()),
    };
    let index = index_path(out)?;
    let report_file = report_path(out, shard)?;
    if part_is_done(out, shard, "features", &hash)? {
        return Ok(ExtractOutcome {
            part: None,
            index,
            report: cfg.skip_bad.then_some(report_file),
            rows: 0,
            bad: Vec::new(),
            producer,
            shape,
            busy_seconds: 0.0,
            pipeline_seconds: 0.0,
        });
    }

    let vs = nn::VarStore::new(device);
    let g = ResNet::g(&vs.root(), backbone, cfg.cut)?;
    load_weights(&vs, weights, Unexpected::Ignore)?;
    let mut vs = vs;
    vs.freeze();

    let spec = TensorSpec::new("features", &shape, "HWC", DType::F32, producer.clone());
    let writer = TensorWriter::create(&part_path(out, shard), spec)?;
    let mine = items[shard.range(items.len())].to_vec();
    let run = Pipeline {
        cfg,
        norm,
        g: &g,
        device,
        shape,
    };
    let started = std::time::Instant::now();
    let (writer, rows, bad, progress, busy_seconds) = run.run(mine, writer)?;
    let pipeline_seconds = started.elapsed().as_secs_f64();
    progress.finish();
    let report = if cfg.skip_bad {
        let text = serde_json::to_vec_pretty(&bad)?;
        write_bytes(&report_file, &text)?;
        Some(report_file)
    } else {
        None
    };
    // The part is written last: once it exists, the index and report exist too.
    write_index(&index, &items, &producer)?;
    let part = writer.finish()?;
    Ok(ExtractOutcome {
        part: Some(part),
        index,
        report,
        rows,
        bad,
        producer,
        shape,
        busy_seconds,
        pipeline_seconds,
    })
}

fn write_index(path: &Path, items: &[ImageItem], producer: &Producer) -> Result<PathBuf> {
    let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(items.iter().map(|i| i.id)));
    let paths: ArrayRef = Arc::new(StringArray::from_iter_values(
        items.iter().map(|i| i.rel.as_str()),
    ));
    write_table(path, "images", producer, vec![ids, paths], HashMap::new())
}

/// A batch of decoded images.
struct Decoded {
    seq: usize,
    /// Items in the batch, decoded or not.
    count: usize,
    ids: Vec<u64>,
    /// HWC bytes of the decoded images, back to back.
    pixels: Vec<u8>,
    bad: Vec<BadImage>,
}

/// Features of a batch, for the writer.
struct Computed {
    count: usize,
    ids: Vec<u64>,
    values: Vec<f32>,
}

struct Pipeline<'a> {
    cfg: &'a ExtractConfig,
    norm: InputNorm,
    g: &'a ResNet,
    device: Device,
    shape: [usize; 3],
}

impl Pipeline<'_> {
    /// Decode -> compute -> write over `items`; returns the writer (unfinished), the rows
    /// written, the bad images, the progress (to finish once the outputs are complete) and
    /// the seconds spent in the backbone.
    fn run(
        &self,
        items: Vec<ImageItem>,
        writer: TensorWriter,
    ) -> Result<(TensorWriter, usize, Vec<BadImage>, Progress, f64)> {
        let total = items.len();
        let batches: Vec<Vec<ImageItem>> =
            items.chunks(self.cfg.batch).map(|c| c.to_vec()).collect();
        let n_batches = batches.len();
        let (job_tx, job_rx) = unbounded::<(usize, Vec<ImageItem>)>();
        for job in batches.into_iter().enumerate() {
            // The receiver is alive (held here): sending cannot fail.
            let _ = job_tx.send(job);
        }
        drop(job_tx);
        let threads = self.cfg.decode_threads;
        let (dec_tx, dec_rx) = bounded::<Result<Decoded>>(2 * threads + 1);
        let (out_tx, out_rx) = bounded::<Computed>(2);
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (job_rx, dec_tx) = (job_rx.clone(), dec_tx.clone());
                let (size, skip_bad) = (self.cfg.image_size, self.cfg.skip_bad);
                s.spawn(move || decode_worker(job_rx, dec_tx, size, skip_bad));
            }
            drop(dec_tx);
            let writing = s.spawn(move || write_loop(writer, out_rx, total));
            let computed = self.compute_loop(dec_rx, out_tx, n_batches);
            let written = writing
                .join()
                .map_err(|p| anyhow!("writer thread panicked: {}", panic_text(&p)))?;
            match (computed, written) {
                (_, Err(e)) => Err(e),
                (Err(e), Ok(_)) => Err(e),
                (Ok((bad, busy)), Ok((writer, rows, progress))) => {
                    Ok((writer, rows, bad, progress, busy))
                }
            }
        })
    }

    fn compute_loop(
        &self,
        dec_rx: Receiver<Result<Decoded>>,
        out_tx: Sender<Computed>,
        n_batches: usize,
    ) -> Result<(Vec<BadImage>, f64)> {
        let _guard = tch::no_grad_guard();
        let mut pending: BTreeMap<usize, Decoded> = BTreeMap::new();
        let mut next = 0;
        let mut bad = Vec::new();
        let mut busy = 0.0;
        while next < n_batches {
            let decoded = match dec_rx.recv() {
                Ok(d) => d?,
                Err(_) => bail!("the decoding threads stopped early"),
            };
            pending.insert(decoded.seq, decoded);
            while let Some(batch) = pending.remove(&next) {
                next += 1;
                bad.extend(batch.bad.iter().cloned());
                let t = std::time::Instant::now();
                let values = if batch.ids.is_empty() {
                    Vec::new()
                } else {
                    self.forward(&batch)?
                };
                busy += t.elapsed().as_secs_f64();
                let msg = Computed {
                    count: batch.count,
                    ids: batch.ids,
                    values,
                };
                if out_tx.send(msg).is_err() {
                    // The writer failed; its error is reported by the caller.
                    return Ok((bad, busy));
                }
            }
        }
        Ok((bad, busy))
    }

    fn forward(&self, batch: &Decoded) -> Result<Vec<f32>> {
        let n = batch.ids.len() as i64;
        let s = self.cfg.image_size as i64;
        let [h, w, c] = self.shape.map(|d| d as i64);
        let first = batch.ids[0];
        let run = || -> Result<Vec<f32>> {
            let x = Tensor::from_slice(&batch.pixels)
                .view([n, s, s, 3])
                .to_device(self.device);
            let x = normalise_images_with(&x, &self.norm);
            let y = (self.cfg.precision).forward(self.device, &x, |x| self.g.forward_t(x, false));
            ensure!(
                y.size() == [n, c, h, w],
                "backbone output {:?}, expected {:?}",
                y.size(),
                [n, c, h, w]
            );
            let y = y
                .permute([0, 2, 3, 1])
                .contiguous()
                .to_device(Device::Cpu)
                .flatten(0, -1);
            let values = Vec::<f32>::try_from(&y)?;
            // Features are data only when finite: NaN weights (a diverged training) give
            // NaN maps for every image, which no later stage could use (issue #12).
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                let per_item = (h * w * c).max(1) as usize;
                bail!(
                    "the features of image id {} hold {} (are the backbone weights finite?)",
                    batch.ids[at / per_item],
                    if values[at].is_nan() {
                        "NaN"
                    } else {
                        "an infinite value"
                    }
                );
            }
            // All zeros for a whole batch is no data either (zeroed or never-trained weights
            // past a ReLU): one image's map may be zero, a batch's is not.
            ensure!(
                values.iter().any(|&v| v != 0.0),
                "the features of image ids {}..={} are all zeros (are the backbone weights \
                 trained?)",
                batch.ids[0],
                batch.ids[batch.ids.len() - 1]
            );
            Ok(values)
        };
        catch_unwind(AssertUnwindSafe(run))
            .map_err(|p| anyhow!("libtorch failed: {}", panic_text(&p)))?
            .with_context(|| {
                let weights = self.cfg.weights.as_deref().unwrap_or(Path::new("?"));
                format!(
                    "backbone forward of the batch starting at id {first} (weights {})",
                    weights.display()
                )
            })
    }
}

fn decode_worker(
    jobs: Receiver<(usize, Vec<ImageItem>)>,
    out: Sender<Result<Decoded>>,
    size: usize,
    skip_bad: bool,
) {
    let per_image = size * size * 3;
    for (seq, items) in jobs.iter() {
        let mut d = Decoded {
            seq,
            count: items.len(),
            ids: Vec::with_capacity(items.len()),
            pixels: Vec::with_capacity(items.len() * per_image),
            bad: Vec::new(),
        };
        let mut failed = None;
        for item in &items {
            match decode_image(&item.path, size as u32) {
                Ok(px) => {
                    d.ids.push(item.id);
                    d.pixels.extend_from_slice(&px);
                }
                Err(e) if skip_bad => d.bad.push(BadImage {
                    id: item.id,
                    path: item.rel.clone(),
                    error: format!("{e:#}"),
                }),
                Err(e) => {
                    failed = Some(e.context(format!(
                        "image {} (id {}) is unreadable; --skip-bad records such images in the report instead",
                        item.rel, item.id
                    )));
                    break;
                }
            }
        }
        let msg = match failed {
            Some(e) => Err(e),
            None => Ok(d),
        };
        let stop = msg.is_err();
        if out.send(msg).is_err() || stop {
            return;
        }
    }
}

fn write_loop(
    mut writer: TensorWriter,
    rx: Receiver<Computed>,
    total: usize,
) -> Result<(TensorWriter, usize, Progress)> {
    let mut progress = Progress::new("extract-features", total as u64);
    let mut rows = 0;
    for batch in rx.iter() {
        writer.write(&batch.ids, Payload::F32(&batch.values), vec![])?;
        rows += batch.ids.len();
        progress.inc(batch.count as u64);
    }
    Ok((writer, rows, progress))
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.lines().next().unwrap_or("").to_string()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::TensorDataset;
    use crate::models::tools::init_weights;

    #[test]
    fn input_statistics_round_trip_through_metadata() {
        let fashion = InputNorm {
            mean: [0.286; 3],
            std: [0.353; 3],
        };
        let meta: HashMap<String, String> = fashion.metadata().into_iter().collect();
        let file = Path::new("w.safetensors");
        assert_eq!(
            InputNorm::from_metadata(&meta, file).unwrap(),
            Some(fashion)
        );
        assert_eq!(
            InputNorm::from_metadata(&HashMap::new(), file).unwrap(),
            None
        );
        let mut one = meta.clone();
        one.remove(STD_KEY);
        let e = InputNorm::from_metadata(&one, file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.safetensors") && e.contains(STD_KEY), "{e}");
        one.insert(STD_KEY.into(), "0.3,x,0.3".into());
        let e = InputNorm::from_metadata(&one, file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("three comma-separated numbers"), "{e}");
        // Black normalises to -mean/std, and normalising black pixels gives exactly that.
        let black = Tensor::zeros([1, 2, 2, 3], (Kind::Uint8, Device::Cpu));
        let x = normalise_images_with(&black, &fashion);
        let want = fashion.black(Device::Cpu).expand([1, 3, 2, 2], false);
        assert!(x.allclose(&want, 1e-6, 1e-6, false));
    }

    #[test]
    fn config_section_parses() {
        let dir = std::env::temp_dir().join(format!("remind-extract-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(
            &path,
            "extract_features:\n  images: data/img\n  arch: resnet18\n  width: 32\n  stem: small\n  \
             cut: layer4.0\n  id_from: clevr-filename\n  image_size: 32\n  skip_bad: true\n",
        )
        .unwrap();
        let cfg: ExtractConfig = crate::run::load_section(Some(&path), "extract_features").unwrap();
        assert_eq!(cfg.arch, Arch::ResNet18);
        assert_eq!((cfg.width, cfg.stem, cfg.image_size), (32, Stem::Small, 32));
        assert_eq!(cfg.cut.to_string(), "layer4.0");
        assert_eq!(cfg.id_from, IdFrom::ClevrFilename);
        assert!(cfg.skip_bad && cfg.batch == 16);
        std::fs::write(&path, "extract_features:\n  cut: layer9\n").unwrap();
        let err = crate::run::load_section::<ExtractConfig>(Some(&path), "extract_features")
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer9"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The stored rows are G's output for the normalised image, laid out HWC.
    #[test]
    fn rows_are_hwc_feature_maps_of_normalised_images() {
        let _rng = crate::testing::tch_rng_lock();
        let dir = std::env::temp_dir().join(format!("remind-extract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        for (k, name) in ["a.png", "b.png", "c.png"].iter().enumerate() {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 5 + k as u32 * 60) as u8, (y * 7) as u8, (x * y) as u8])
            });
            img.save(images.join(name)).unwrap();
        }
        let net = ResNetConfig::new(Arch::ResNet34, 8, Stem::Small);
        let weights = init_weights(net, 9, &dir.join("w.safetensors")).unwrap();
        let cfg = ExtractConfig {
            images: Some(images.clone()),
            out: Some(dir.join("out")),
            weights: Some(weights.clone()),
            arch: net.arch,
            width: net.width,
            stem: net.stem,
            cut: "layer2".parse().unwrap(),
            image_size: 32,
            batch: 2,
            decode_threads: 2,
            ..Default::default()
        };
        let outcome = extract_features(&cfg, Device::Cpu, Shard::WHOLE).unwrap();
        assert_eq!(outcome.shape, [16, 16, 16]);
        assert_eq!(outcome.rows, 3);
        let ds = TensorDataset::open(&dir.join("out"), "features").unwrap();
        assert_eq!(ds.ids().unwrap(), vec![0, 1, 2]);

        let vs = nn::VarStore::new(Device::Cpu);
        let g = ResNet::g(&vs.root(), net, cfg.cut).unwrap();
        load_weights(&vs, &weights, Unexpected::Ignore).unwrap();
        let _guard = tch::no_grad_guard();
        let px = decode_image(&images.join("b.png"), 32).unwrap();
        let x = Tensor::from_slice(&px)
            .view([1, 32, 32, 3])
            .to_kind(Kind::Float)
            / 255.0;
        let mean = Tensor::from_slice(&IMAGENET_MEAN).to_kind(Kind::Float);
        let std = Tensor::from_slice(&IMAGENET_STD).to_kind(Kind::Float);
        let x = ((x - mean) / std).permute([0, 3, 1, 2]);
        let y = g.forward_t(&x, false); // [1, C, H, W]
        let row = ds.row_f32(1).unwrap();
        let [h, w, c] = outcome.shape;
        let mut max_diff = 0f64;
        for (i, j, k) in [(0, 0, 0), (3, 5, 7), (15, 15, 15), (8, 2, 11)] {
            let stored = row[(i * w + j) * c + k] as f64;
            let direct = y.double_value(&[0, k as i64, i as i64, j as i64]);
            max_diff = max_diff.max((stored - direct).abs());
        }
        let all = Tensor::from_slice(row).view([h as i64, w as i64, c as i64]);
        let direct = y.squeeze_dim(0).permute([1, 2, 0]);
        let full_diff = (all - direct).abs().max().double_value(&[]);
        assert!(
            max_diff < 1e-4 && full_diff < 1e-4,
            "{max_diff} {full_diff}"
        );

        // A second run of the same shard is skipped.
        let again = extract_features(&cfg, Device::Cpu, Shard::WHOLE).unwrap();
        assert!(again.part.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
