//! Mini-CLEVR: a small CLEVR-like data set generated deterministically from a seed, in
//! exactly CLEVR v1.0's file layout and formats:
//!
//! ```text
//! images/{train,val}/CLEVR_{split}_{NNNNNN}.png
//! questions/CLEVR_{split}_questions.json   {"info": {...}, "questions": [...]}
//! scenes/CLEVR_{split}_scenes.json         {"info": {...}, "scenes": [...]}
//! ```
//!
//! Scenes hold 3-8 objects with CLEVR's attribute values, drawn by a small software
//! rasteriser ([`render`]); questions cover CLEVR's five question types with CLEVR
//! functional programs ([`questions`]). Each image's scene and questions come from random
//! streams seeded by (seed, split, image index); answer balancing runs over each split in
//! order, so the output is a function of the config alone. [`tdiuc`] rewrites such a data
//! set in TDIUC's layout (`remind-generate-clevr --format tdiuc`).

pub mod attributes;
pub mod format;
pub mod questions;
pub mod render;
pub mod scene;
pub mod tdiuc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artifact::atomic::write_bytes;
use crate::run::Progress;
use format::{image_filename, scene_record, Info, QuestionRecord, QuestionsFile, ScenesFile};
use questions::{families, questions_for_scene, Balancer, QUESTION_TYPES};
use scene::sample_scene;

/// Config section `generate_clevr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateClevrConfig {
    pub seed: u64,
    /// Images are `image_size` x `image_size` RGB.
    pub image_size: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub questions_per_image: usize,
    pub min_objects: usize,
    pub max_objects: usize,
}

impl Default for GenerateClevrConfig {
    fn default() -> Self {
        let mut cfg = Self {
            seed: 0,
            image_size: 128,
            train_images: 0,
            val_images: 0,
            questions_per_image: 0,
            min_objects: 3,
            max_objects: 8,
        };
        cfg.apply_preset(SizePreset::Default);
        cfg
    }
}

/// Named data-set sizes (`--size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizePreset {
    /// 40 train / 20 val images, 10 questions each: for tests, generates in about a second.
    Tiny,
    /// 2000 train / 500 val images, 10 questions each.
    Default,
}

named_enum!(SizePreset, "size", { Tiny => "tiny", Default => "default" });

impl GenerateClevrConfig {
    /// Sets the image and question counts of `preset` (other fields unchanged).
    pub fn apply_preset(&mut self, preset: SizePreset) {
        let (train, val, per_image) = match preset {
            SizePreset::Tiny => (40, 20, 10),
            SizePreset::Default => (2000, 500, 10),
        };
        self.train_images = train;
        self.val_images = val;
        self.questions_per_image = per_image;
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            (32..=1024).contains(&self.image_size),
            "generate_clevr.image_size must be 32..=1024, found {}",
            self.image_size
        );
        ensure!(
            self.min_objects >= 2 && self.min_objects <= self.max_objects,
            "generate_clevr needs 2 <= min_objects <= max_objects, found {}..{}",
            self.min_objects,
            self.max_objects
        );
        ensure!(
            self.max_objects <= 10,
            "generate_clevr.max_objects must be at most 10 (CLEVR's largest count answer), found {}",
            self.max_objects
        );
        ensure!(
            self.questions_per_image <= 100,
            "generate_clevr.questions_per_image must be at most 100, found {}",
            self.questions_per_image
        );
        Ok(())
    }
}

/// What one split's generation produced.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub split: String,
    pub images: usize,
    pub questions: usize,
    /// Questions per type, keyed by [`QUESTION_TYPES`] name.
    pub per_type: BTreeMap<String, usize>,
    pub answers: BTreeMap<String, usize>,
    pub questions_file: PathBuf,
    pub scenes_file: PathBuf,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of the random stream for (seed, split, image, purpose).
fn stream_seed(seed: u64, split: u64, image: u64, purpose: u64) -> u64 {
    [split, image, purpose]
        .into_iter()
        .fold(splitmix(seed), |h, x| splitmix(h ^ x))
}

/// Threads that write image files, so that one file's fsync overlaps rendering the next.
const WRITERS: usize = 4;

/// Generates the data set described by `cfg` under `out` (the data-set root).
pub fn generate(cfg: &GenerateClevrConfig, out: &Path) -> Result<Vec<SplitSummary>> {
    cfg.validate()?;
    let families = families();
    let mut summaries = Vec::new();
    for (split_id, (split, count)) in [("train", cfg.train_images), ("val", cfg.val_images)]
        .into_iter()
        .enumerate()
    {
        summaries.push(generate_split(
            cfg,
            &families,
            out,
            split,
            split_id as u64,
            count,
        )?);
    }
    Ok(summaries)
}

/// `info.generator` of the questions and scenes files this generator writes.
pub const GENERATOR: &str = "remind mini-CLEVR";

fn generate_split(
    cfg: &GenerateClevrConfig,
    families: &[questions::Family],
    out: &Path,
    split: &str,
    split_id: u64,
    count: usize,
) -> Result<SplitSummary> {
    let image_dir = out.join("images").join(split);
    std::fs::create_dir_all(&image_dir)
        .with_context(|| format!("cannot create folder {}", image_dir.display()))?;
    let mut balancer = Balancer::default();
    let mut questions: Vec<QuestionRecord> = Vec::new();
    let mut scenes = Vec::with_capacity(count);
    let mut progress = Progress::new(&format!("generate-clevr {split}"), count as u64);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<(PathBuf, Vec<u8>)>(2 * WRITERS);
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let rx = rx.clone();
                scope.spawn(move || -> Result<()> {
                    for (path, bytes) in rx {
                        write_bytes(&path, &bytes)?;
                    }
                    Ok(())
                })
            })
            .collect();
        drop(rx);
        let mut produce = || -> Result<()> {
            for index in 0..count {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, split_id, index as u64, 0));
                let (scene, rendered) =
                    sample_scene(&mut rng, cfg.min_objects, cfg.max_objects, cfg.image_size)
                        .with_context(|| format!("{split} image {index}"))?;
                let filename = image_filename(split, index);
                if tx
                    .send((image_dir.join(&filename), rendered.to_png()?))
                    .is_err()
                {
                    // Every writer stopped on an error; joining them below reports it.
                    break;
                }
                let mut qrng =
                    ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, split_id, index as u64, 1));
                let slots: Vec<usize> = (0..cfg.questions_per_image)
                    .map(|k| (questions.len() + k) % QUESTION_TYPES.len())
                    .collect();
                for q in questions_for_scene(families, &scene, &slots, &mut balancer, &mut qrng) {
                    questions.push(QuestionRecord {
                        image_index: index,
                        program: q.program,
                        question_index: questions.len(),
                        image_filename: filename.clone(),
                        question_family_index: q.family,
                        split: split.into(),
                        answer: q.answer,
                        question: q.text,
                    });
                }
                scenes.push(scene_record(&scene, split, index, cfg.image_size));
                progress.inc(1);
            }
            Ok(())
        };
        let produced = produce();
        drop(tx);
        for w in writers {
            w.join()
                .map_err(|_| anyhow::anyhow!("an image writer thread panicked"))??;
        }
        produced
    })?;
    progress.finish();
    let mut per_type: BTreeMap<String, usize> =
        QUESTION_TYPES.iter().map(|t| (t.to_string(), 0)).collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for q in &questions {
        let t = QUESTION_TYPES[families[q.question_family_index].kind.question_type()];
        *per_type.entry(t.into()).or_default() += 1;
        *answers.entry(q.answer.clone()).or_default() += 1;
    }
    let info = Info {
        split: split.into(),
        version: "1.0".into(),
        license: "Creative Commons Attribution (CC BY 4.0)".into(),
        generator: GENERATOR.into(),
        seed: cfg.seed,
        image_size: cfg.image_size,
    };
    let n_questions = questions.len();
    let questions_file = out
        .join("questions")
        .join(format!("CLEVR_{split}_questions.json"));
    let qjson = serde_json::to_vec(&QuestionsFile {
        info: info.clone(),
        questions,
    })?;
    write_bytes(&questions_file, &qjson)?;
    let scenes_file = out
        .join("scenes")
        .join(format!("CLEVR_{split}_scenes.json"));
    write_bytes(
        &scenes_file,
        &serde_json::to_vec(&ScenesFile { info, scenes })?,
    )?;
    Ok(SplitSummary {
        split: split.into(),
        images: count,
        questions: n_questions,
        per_type,
        answers,
        questions_file,
        scenes_file,
    })
}

#[cfg(test)]
mod tests;
