//! A CLEVR-layout data set (mini-CLEVR or real CLEVR) rewritten in TDIUC's file layout, so
//! the TDIUC path of the pipeline (`import-questions --tdiuc-dir`, COCO file names, TDIUC
//! question types) runs on small generated data:
//!
//! ```text
//! Questions/OpenEnded_mscoco_{train2014,val2014}_questions.json  {"info", "questions": [{question_id, image_id, question}]}
//! Annotations/mscoco_{train2014,val2014}_annotations.json        {"info", "annotations": [{question_id, image_id, question_type, answers: [{answer, answer_confidence, answer_id}], ...}]}
//! Images/{train2014,val2014}/COCO_{split}2014_{NNNNNNNNNNNN}.png  hard links to (or copies of) the CLEVR images
//! ```
//!
//! Ids: a question keeps the id `import-questions` gives it in the CLEVR layout
//! (`question_index`, plus 1,000,000,000 for val), so features imported for one layout fit
//! the other; an image's id is its `image_index`, plus [`VAL_IMAGE_OFFSET`] for val (COCO
//! ids are unique across splits). Question types map CLEVR's programs onto TDIUC's type
//! names by their last function ([`tdiuc_type`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use serde::Serialize;

use super::format::QuestionsFile;
use crate::artifact::atomic::write_bytes;
use crate::backbone::features::images::clevr_index;
use crate::data::questions::sources::{CLEVR_SPLIT_OFFSETS, TDIUC_TYPES};

/// Added to a val image's index to make its (COCO-style) image id.
pub const VAL_IMAGE_OFFSET: u64 = 1_000_000;

/// TDIUC's `question_type` for a CLEVR program ending in `function`: counting (`count` and
/// the integer comparisons), object_presence (`exist`), color (`query_color`),
/// object_recognition (`query_shape`), attribute (`query_size`, `query_material` and the
/// attribute comparisons).
pub fn tdiuc_type(function: &str) -> Option<&'static str> {
    Some(match function {
        "count" | "greater_than" | "less_than" | "equal_integer" => "counting",
        "exist" => "object_presence",
        "query_color" => "color",
        "query_shape" => "object_recognition",
        "query_size" | "query_material" | "equal_color" | "equal_material" | "equal_shape"
        | "equal_size" => "attribute",
        _ => return None,
    })
}

#[derive(Serialize)]
struct Info {
    description: String,
    split: String,
}

#[derive(Serialize)]
struct Question<'a> {
    question_id: u64,
    image_id: u64,
    question: &'a str,
}

#[derive(Serialize)]
struct QuestionsOut<'a> {
    info: Info,
    data_subtype: String,
    questions: Vec<Question<'a>>,
}

#[derive(Serialize)]
struct Answer<'a> {
    answer: &'a str,
    answer_confidence: &'static str,
    answer_id: u32,
}

#[derive(Serialize)]
struct Annotation<'a> {
    question_id: u64,
    image_id: u64,
    question_type: &'static str,
    answer_type: &'static str,
    ans_source: &'static str,
    answers: Vec<Answer<'a>>,
}

#[derive(Serialize)]
struct AnnotationsOut<'a> {
    info: Info,
    data_subtype: String,
    annotations: Vec<Annotation<'a>>,
}

/// What a conversion wrote, per split.
#[derive(Debug, Clone, Serialize)]
pub struct TdiucSplit {
    pub split: String,
    pub questions: usize,
    pub images: usize,
    /// Questions per TDIUC type.
    pub per_type: BTreeMap<String, usize>,
    pub files: Vec<PathBuf>,
}

/// Writes the CLEVR-layout data set under `clevr_root` in TDIUC's layout under `out`.
pub fn write_tdiuc(clevr_root: &Path, out: &Path) -> Result<Vec<TdiucSplit>> {
    let mut summaries = Vec::new();
    for (split, q_offset) in CLEVR_SPLIT_OFFSETS {
        let img_offset = if split == "train" {
            0
        } else {
            VAL_IMAGE_OFFSET
        };
        let subtype = format!("{split}2014");
        let src = clevr_root
            .join("questions")
            .join(format!("CLEVR_{split}_questions.json"));
        let bytes =
            std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        let file: QuestionsFile = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("{}: not a CLEVR questions file: {e}", src.display()))?;
        let mut questions = Vec::with_capacity(file.questions.len());
        let mut annotations = Vec::with_capacity(file.questions.len());
        let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
        for (pos, q) in file.questions.iter().enumerate() {
            let function = q
                .program
                .last()
                .map(|n| n.function.as_str())
                .ok_or_else(|| anyhow!("{}: question {pos} has an empty program", src.display()))?;
            let qtype = tdiuc_type(function).ok_or_else(|| {
                anyhow!(
                    "{}: question {pos}: program ends in '{function}', which maps to no TDIUC type",
                    src.display()
                )
            })?;
            debug_assert!(TDIUC_TYPES.contains(&qtype));
            *per_type.entry(qtype.into()).or_default() += 1;
            let question_id = q_offset + q.question_index as u64;
            let image_id = img_offset + q.image_index as u64;
            questions.push(Question {
                question_id,
                image_id,
                question: &q.question,
            });
            annotations.push(Annotation {
                question_id,
                image_id,
                question_type: qtype,
                answer_type: if matches!(q.answer.as_str(), "yes" | "no") {
                    "yes/no"
                } else if q.answer.parse::<u32>().is_ok() {
                    "number"
                } else {
                    "other"
                },
                ans_source: "generation",
                answers: vec![Answer {
                    answer: &q.answer,
                    answer_confidence: "yes",
                    answer_id: 1,
                }],
            });
        }
        let info = || Info {
            description: format!(
                "{} in TDIUC's layout (remind-generate-clevr --format tdiuc)",
                clevr_root.display()
            ),
            split: split.into(),
        };
        let qpath = out
            .join("Questions")
            .join(format!("OpenEnded_mscoco_{subtype}_questions.json"));
        write_bytes(
            &qpath,
            &serde_json::to_vec(&QuestionsOut {
                info: info(),
                data_subtype: subtype.clone(),
                questions,
            })?,
        )?;
        let apath = out
            .join("Annotations")
            .join(format!("mscoco_{subtype}_annotations.json"));
        write_bytes(
            &apath,
            &serde_json::to_vec(&AnnotationsOut {
                info: info(),
                data_subtype: subtype.clone(),
                annotations,
            })?,
        )?;
        let images = link_images(
            &clevr_root.join("images").join(split),
            &out.join("Images").join(&subtype),
            &subtype,
            img_offset,
        )?;
        summaries.push(TdiucSplit {
            split: split.into(),
            questions: file.questions.len(),
            images,
            per_type,
            files: vec![qpath, apath],
        });
    }
    Ok(summaries)
}

/// Links (or copies) every `CLEVR_*_NNNNNN.png` of `src` to `dst` as
/// `COCO_{subtype}_{offset + N:012}.png`; returns how many.
fn link_images(src: &Path, dst: &Path, subtype: &str, offset: u64) -> Result<usize> {
    std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let mut n = 0;
    let entries =
        std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", src.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".png") || name.starts_with('.') {
            continue;
        }
        let index = clevr_index(&name).with_context(|| format!("{}", src.display()))?;
        let target = dst.join(format!("COCO_{subtype}_{:012}.png", offset + index));
        if target.exists() {
            std::fs::remove_file(&target)
                .with_context(|| format!("cannot replace {}", target.display()))?;
        }
        if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
        n += 1;
    }
    ensure!(n > 0, "{}: no CLEVR images to convert", src.display());
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clevr_function_maps_to_a_tdiuc_type() {
        for f in [
            "count",
            "exist",
            "greater_than",
            "less_than",
            "equal_integer",
            "equal_color",
            "equal_material",
            "equal_shape",
            "equal_size",
            "query_color",
            "query_material",
            "query_shape",
            "query_size",
        ] {
            let t = tdiuc_type(f).unwrap();
            assert!(TDIUC_TYPES.contains(&t), "{f} -> {t}");
        }
        assert_eq!(tdiuc_type("unique"), None);
    }
}
