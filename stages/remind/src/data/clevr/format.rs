//! CLEVR v1.0's JSON files, as the generator writes them: `questions/CLEVR_{split}_questions.json`
//! and `scenes/CLEVR_{split}_scenes.json`. Field names and nesting follow the released
//! data set, so one importer reads both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::attributes::Attr;
use super::scene::{Camera, Scene};

/// One step of a CLEVR functional program: `function` applied to the outputs of the
/// nodes listed in `inputs`, with literal arguments in `value_inputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramNode {
    pub inputs: Vec<usize>,
    pub function: String,
    pub value_inputs: Vec<String>,
}

/// The `info` block of a generated file (real CLEVR has `date`, `license`, `version`,
/// `split`; readers must not rely on its fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub split: String,
    pub version: String,
    pub license: String,
    pub generator: String,
    pub seed: u64,
    pub image_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRecord {
    pub image_index: usize,
    pub program: Vec<ProgramNode>,
    pub question_index: usize,
    pub image_filename: String,
    pub question_family_index: usize,
    pub split: String,
    pub answer: String,
    pub question: String,
}

/// An answer as CLEVR's question files write it: a string in the released v1.0 files;
/// `true`/`false` for `exist` and the comparisons and an integer for `count` in files
/// written by CLEVR's own generator (clevr-dataset-gen, `generate_questions.py`, which dumps
/// its question engine's Python values).
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerValue {
    Text(String),
    Bool(bool),
    Int(i64),
}

/// By hand rather than `#[serde(untagged)]`: a wrong value is then reported as what it is
/// and what was expected ("invalid type: floating point `1.5`, expected a string, a
/// boolean or an integer") where untagged says only that no variant matched.
impl<'de> Deserialize<'de> for AnswerValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Answer;
        impl serde::de::Visitor<'_> for Answer {
            type Value = AnswerValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, a boolean or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AnswerValue, E> {
                Ok(AnswerValue::Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<AnswerValue, E> {
                Ok(AnswerValue::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AnswerValue, E> {
                Ok(AnswerValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AnswerValue, E> {
                i64::try_from(v)
                    .map(AnswerValue::Int)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(Answer)
    }
}

impl AnswerValue {
    /// The answer as the released files spell it: `yes`/`no` for booleans, decimal for
    /// integers, strings as they are.
    pub fn into_text(self) -> String {
        match self {
            AnswerValue::Text(s) => s,
            AnswerValue::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            AnswerValue::Int(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionsFile {
    pub info: Info,
    pub questions: Vec<QuestionRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    pub shape: String,
    pub color: String,
    pub size: String,
    pub material: String,
    #[serde(rename = "3d_coords")]
    pub coords_3d: [f32; 3],
    /// Image x, image y (pixels, rounded) and distance from the camera, as in CLEVR.
    pub pixel_coords: (i64, i64, f32),
    pub rotation: f32,
}

impl SceneObject {
    /// The value of `attr` ("red", "cube", ...).
    pub fn value(&self, attr: Attr) -> &str {
        match attr {
            Attr::Size => &self.size,
            Attr::Color => &self.color,
            Attr::Material => &self.material,
            Attr::Shape => &self.shape,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneRecord {
    pub image_index: usize,
    pub objects: Vec<SceneObject>,
    /// CLEVR's spatial relations: `relationships[rel][i]` lists the objects that are `rel`
    /// of object i (left, right, front, behind).
    pub relationships: BTreeMap<String, Vec<Vec<usize>>>,
    pub image_filename: String,
    pub split: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenesFile {
    pub info: Info,
    pub scenes: Vec<SceneRecord>,
}

fn round4(x: f32) -> f32 {
    (x * 1e4).round() / 1e4
}

/// Image file name of image `index` of `split`: `CLEVR_{split}_{NNNNNN}.png`.
pub fn image_filename(split: &str, index: usize) -> String {
    format!("CLEVR_{split}_{index:06}.png")
}

/// The JSON record of `scene`, rendered at `image_size` pixels.
pub fn scene_record(scene: &Scene, split: &str, index: usize, image_size: usize) -> SceneRecord {
    let cam = Camera::new(image_size as f32);
    let objects = scene
        .objects
        .iter()
        .map(|o| {
            let (px, ground, k) = cam.project(o.x, o.y);
            let py = ground - o.radius() * k;
            SceneObject {
                shape: o.value(Attr::Shape).into(),
                color: o.value(Attr::Color).into(),
                size: o.value(Attr::Size).into(),
                material: o.value(Attr::Material).into(),
                coords_3d: [round4(o.x), round4(o.y), o.radius()],
                pixel_coords: (
                    px.round() as i64,
                    py.round() as i64,
                    round4(Camera::camera_distance(o.x, o.y)),
                ),
                rotation: round4(o.rotation),
            }
        })
        .collect();
    let rel = |keep: &dyn Fn(usize, usize) -> bool| -> Vec<Vec<usize>> {
        (0..scene.objects.len())
            .map(|i| {
                (0..scene.objects.len())
                    .filter(|&j| j != i && keep(i, j))
                    .collect()
            })
            .collect()
    };
    let o = &scene.objects;
    let mut relationships = BTreeMap::new();
    relationships.insert("left".into(), rel(&|i, j| o[j].x < o[i].x));
    relationships.insert("right".into(), rel(&|i, j| o[j].x > o[i].x));
    relationships.insert("front".into(), rel(&|i, j| o[j].y < o[i].y));
    relationships.insert("behind".into(), rel(&|i, j| o[j].y > o[i].y));
    SceneRecord {
        image_index: index,
        objects,
        relationships,
        image_filename: image_filename(split, index),
        split: split.into(),
    }
}
