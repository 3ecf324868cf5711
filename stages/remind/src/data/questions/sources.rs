//! Readers of the raw question files: CLEVR v1.0 (real or mini-CLEVR) and TDIUC (VQA-style
//! question and annotation files). Both give [`RawQuestion`]s; every error names the file
//! and, for a bad question, its position in the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Result};
use serde::Deserialize;

use crate::data::clevr::format::AnswerValue;
use crate::text::read_json;

/// A question as read, before tokenisation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawQuestion {
    pub question_id: u64,
    pub image_id: u64,
    pub split: String,
    pub text: String,
    /// Lower-cased, trimmed.
    pub answer: String,
    pub question_type: usize,
}

/// CLEVR's question types by id, derived from each program's last function.
pub const CLEVR_TYPES: [&str; 5] = [
    "count",
    "exist",
    "compare_integer",
    "compare_attribute",
    "query_attribute",
];

/// TDIUC's 12 `question_type` strings, sorted; a type's id is its position here.
pub const TDIUC_TYPES: [&str; 12] = [
    "absurd",
    "activity_recognition",
    "attribute",
    "color",
    "counting",
    "object_presence",
    "object_recognition",
    "positional_reasoning",
    "scene_recognition",
    "sentiment_understanding",
    "sport_recognition",
    "utility_affordance",
];

/// CLEVR question ids: `question_index + offset of its split`, so that train and val ids
/// are disjoint (CLEVR numbers each split's questions from 0).
pub const CLEVR_SPLIT_OFFSETS: [(&str, u64); 2] = [("train", 0), ("val", 1_000_000_000)];

/// The two splits of each data set: (split name, file infix).
const TDIUC_SPLITS: [(&str, &str); 2] = [("train", "train2014"), ("val", "val2014")];

fn normalize_answer(a: &str) -> String {
    a.trim().to_lowercase()
}

/// CLEVR's question type of a program that ends in `function`.
pub fn clevr_type(function: &str) -> Option<usize> {
    Some(match function {
        "count" => 0,
        "exist" => 1,
        "greater_than" | "less_than" | "equal_integer" => 2,
        "equal_color" | "equal_material" | "equal_shape" | "equal_size" => 3,
        "query_color" | "query_material" | "query_shape" | "query_size" => 4,
        _ => return None,
    })
}

/// A CLEVR questions file; `scenes` and `annotations` only to recognise a file of another
/// kind given in its place.
#[derive(Deserialize)]
struct ClevrFile {
    questions: Option<Vec<ClevrQuestion>>,
    scenes: Option<serde::de::IgnoredAny>,
    annotations: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ClevrQuestion {
    question: Option<String>,
    answer: Option<AnswerValue>,
    image_index: Option<u64>,
    question_index: Option<u64>,
    program: Option<Vec<ClevrNode>>,
}

#[derive(Deserialize)]
struct ClevrNode {
    /// `function` in CLEVR v1.0; `type` in files written by CLEVR's generator code.
    #[serde(alias = "type")]
    function: Option<String>,
}

/// Reads `dir/questions/CLEVR_{train,val}_questions.json`.
pub fn read_clevr(dir: &Path) -> Result<(Vec<RawQuestion>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    for (split, offset) in CLEVR_SPLIT_OFFSETS {
        let path = dir
            .join("questions")
            .join(format!("CLEVR_{split}_questions.json"));
        let file: ClevrFile = read_json(&path)?;
        let p = path.display();
        let questions = match file {
            ClevrFile {
                questions: Some(q), ..
            } => q,
            ClevrFile {
                scenes: Some(_), ..
            } => bail!(
                "{p}: this is a CLEVR scenes file (it lists 'scenes', not 'questions'): give \
                 CLEVR_{split}_questions.json from the questions/ folder of the release"
            ),
            ClevrFile {
                annotations: Some(_),
                ..
            } => bail!(
                "{p}: this is a VQA-style annotations file (TDIUC, VQA v2), not CLEVR \
                 questions: import TDIUC with --tdiuc-dir"
            ),
            _ => bail!("{p}: not a CLEVR questions file: no 'questions' list"),
        };
        for (pos, q) in questions.into_iter().enumerate() {
            let missing = |field: &str| anyhow!("{p}: question {pos} has no '{field}'");
            let program = q.program.ok_or_else(|| missing("program"))?;
            let last = program
                .last()
                .ok_or_else(|| anyhow!("{p}: question {pos} has an empty program"))?;
            let function = last.function.as_deref().ok_or_else(|| {
                anyhow!("{p}: question {pos}: last program node has no 'function'")
            })?;
            let question_type = clevr_type(function).ok_or_else(|| {
                anyhow!(
                    "{p}: question {pos}: program ends in '{function}', which is none of CLEVR's \
                     question types"
                )
            })?;
            let index = q.question_index.unwrap_or(pos as u64);
            ensure!(
                index < 1_000_000_000,
                "{p}: question {pos}: question_index {index} is too large for the id scheme"
            );
            out.push(RawQuestion {
                question_id: offset + index,
                image_id: q.image_index.ok_or_else(|| missing("image_index"))?,
                split: split.into(),
                text: q.question.ok_or_else(|| missing("question"))?,
                answer: normalize_answer(&q.answer.ok_or_else(|| missing("answer"))?.into_text()),
                question_type,
            });
        }
        files.push(path);
    }
    Ok((out, files))
}

#[derive(Deserialize)]
struct TdiucQuestions {
    questions: Option<Vec<TdiucQuestion>>,
    annotations: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct TdiucQuestion {
    question_id: Option<u64>,
    image_id: Option<u64>,
    question: Option<String>,
    /// Only in CLEVR's files: recognises CLEVR questions given in TDIUC's place.
    program: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct TdiucAnnotations {
    annotations: Option<Vec<TdiucAnnotation>>,
    questions: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct TdiucAnnotation {
    question_id: Option<u64>,
    image_id: Option<u64>,
    question_type: Option<String>,
    answers: Option<Vec<TdiucAnswer>>,
}

#[derive(Deserialize)]
struct TdiucAnswer {
    answer: Option<AnswerValue>,
}

/// The list `key` of a TDIUC file, or an error naming what the file is instead: the other
/// file of the pair (`has_other`: it lists `other`), or no TDIUC file at all.
fn expect_list<T>(
    list: Option<Vec<T>>,
    has_other: bool,
    path: &Path,
    [key, other]: [&str; 2],
    belongs: &str,
) -> Result<Vec<T>> {
    let p = path.display();
    let a = if other.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    match list {
        Some(list) => Ok(list),
        None if has_other => bail!(
            "{p}: this is {a} {other} file (it lists '{other}'): the {key} file {belongs} \
             belongs here"
        ),
        None => bail!("{p}: not a TDIUC {key} file: no '{key}' list"),
    }
}

/// Reads TDIUC's `dir/Questions/OpenEnded_mscoco_{train2014,val2014}_questions.json` and
/// `dir/Annotations/mscoco_{train2014,val2014}_annotations.json`, joined on question_id;
/// the answer is the first of each annotation's `answers`.
pub fn read_tdiuc(dir: &Path) -> Result<(Vec<RawQuestion>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    for (split, infix) in TDIUC_SPLITS {
        let qpath = dir
            .join("Questions")
            .join(format!("OpenEnded_mscoco_{infix}_questions.json"));
        let apath = dir
            .join("Annotations")
            .join(format!("mscoco_{infix}_annotations.json"));
        let questions: TdiucQuestions = read_json(&qpath)?;
        let annotations: TdiucAnnotations = read_json(&apath)?;
        let (qp, ap) = (qpath.display(), apath.display());
        let question_list = expect_list(
            questions.questions,
            questions.annotations.is_some(),
            &qpath,
            ["questions", "annotations"],
            &format!("OpenEnded_mscoco_{infix}_questions.json"),
        )?;
        if question_list.first().is_some_and(|q| q.program.is_some()) {
            bail!(
                "{qp}: these are CLEVR questions (they carry programs), not TDIUC's: import \
                 CLEVR with --clevr-dir"
            );
        }
        let annotation_list = expect_list(
            annotations.annotations,
            annotations.questions.is_some(),
            &apath,
            ["annotations", "questions"],
            &format!("mscoco_{infix}_annotations.json"),
        )?;
        let mut by_id: HashMap<u64, (usize, TdiucAnnotation)> = HashMap::new();
        for (pos, a) in annotation_list.into_iter().enumerate() {
            let id = a
                .question_id
                .ok_or_else(|| anyhow!("{ap}: annotation {pos} has no 'question_id'"))?;
            if by_id.insert(id, (pos, a)).is_some() {
                bail!("{ap}: annotation {pos}: question_id {id} appears twice");
            }
        }
        for (pos, q) in question_list.into_iter().enumerate() {
            let missing = |field: &str| anyhow!("{qp}: question {pos} has no '{field}'");
            let id = q.question_id.ok_or_else(|| missing("question_id"))?;
            let image_id = q.image_id.ok_or_else(|| missing("image_id"))?;
            let text = q.question.ok_or_else(|| missing("question"))?;
            let (apos, a) = by_id.remove(&id).ok_or_else(|| {
                anyhow!("{qp}: question {pos} (question_id {id}) has no annotation in {ap}")
            })?;
            let amissing = |field: &str| anyhow!("{ap}: annotation {apos} has no '{field}'");
            if let Some(aimg) = a.image_id {
                ensure!(
                    aimg == image_id,
                    "{ap}: annotation {apos} (question_id {id}) names image {aimg}, the question \
                     image {image_id}"
                );
            }
            let qtype = a.question_type.ok_or_else(|| amissing("question_type"))?;
            let question_type = TDIUC_TYPES
                .iter()
                .position(|t| *t == qtype)
                .ok_or_else(|| {
                    anyhow!(
                        "{ap}: annotation {apos}: unknown question_type '{qtype}' (expected one \
                         of {})",
                        TDIUC_TYPES.join(", ")
                    )
                })?;
            let answer = a
                .answers
                .ok_or_else(|| amissing("answers"))?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{ap}: annotation {apos} has an empty 'answers' list"))?
                .answer
                .ok_or_else(|| anyhow!("{ap}: annotation {apos}: first answer has no 'answer'"))?;
            out.push(RawQuestion {
                question_id: id,
                image_id,
                split: split.into(),
                text,
                answer: normalize_answer(&answer.into_text()),
                question_type,
            });
        }
        files.push(qpath);
        files.push(apath);
    }
    Ok((out, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_value_names_its_question_and_field() {
        let dir = std::env::temp_dir().join(format!("remind-sources-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("questions")).unwrap();
        let question = |answer: &str| {
            format!(
                r#"{{"question": "Is it red?", "answer": {answer}, "image_index": 0,
                    "question_index": 0, "program": [{{"function": "exist"}}]}}"#
            )
        };
        let write = |answers: [&str; 3]| {
            let qs: Vec<String> = answers.iter().map(|a| question(a)).collect();
            let text = format!(r#"{{"questions": [{}]}}"#, qs.join(","));
            for split in ["train", "val"] {
                let p = dir.join(format!("questions/CLEVR_{split}_questions.json"));
                std::fs::write(p, &text).unwrap();
            }
        };
        // The three spellings of CLEVR's answers read as the released files write them.
        write([r#""yes""#, "true", "3"]);
        let (qs, _) = read_clevr(&dir).unwrap();
        let answers: Vec<&str> = qs.iter().take(3).map(|q| q.answer.as_str()).collect();
        assert_eq!(answers, ["yes", "yes", "3"]);
        write([r#""yes""#, "true", "1.5"]);
        let err = format!("{:#}", read_clevr(&dir).unwrap_err());
        assert!(
            err.contains("CLEVR_train_questions.json: invalid JSON at questions[2].answer")
                && err.contains("floating point `1.5`, expected a string, a boolean or an integer"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
