//! Training targets from CLEVR scene annotations: which attribute values (and which
//! (color, shape) pairs) are present in an image, and how many objects it holds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::data::clevr::attributes::{Attr, COLORS, MATERIALS, SHAPES, SIZES};

/// Counts are classified into 0..=MAX_COUNT (CLEVR's count answers).
pub const MAX_COUNT: usize = 10;
pub const COUNT_CLASSES: usize = MAX_COUNT + 1;

/// The presence labels, in output order: 8 colors, 3 shapes, 2 sizes, 2 materials, then
/// the 24 (color, shape) pairs, color-major.
pub fn label_names() -> Vec<String> {
    let mut names = Vec::with_capacity(NUM_LABELS);
    for (attr, values) in GROUPS {
        names.extend(values.iter().map(|v| format!("{}={v}", attr.name())));
    }
    for c in COLORS {
        for s in SHAPES {
            names.push(format!("color_shape={c} {s}"));
        }
    }
    names
}

/// The single-attribute groups, in label order.
const GROUPS: [(Attr, &[&str]); 4] = [
    (Attr::Color, &COLORS),
    (Attr::Shape, &SHAPES),
    (Attr::Size, &SIZES),
    (Attr::Material, &MATERIALS),
];

/// Number of presence labels: 15 attribute values and 24 (color, shape) pairs.
pub const NUM_LABELS: usize =
    COLORS.len() + SHAPES.len() + SIZES.len() + MATERIALS.len() + COLORS.len() * SHAPES.len();

/// Label groups for reporting: name and label index range.
pub fn label_groups() -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (attr, values) in GROUPS {
        out.push((attr.name(), start..start + values.len()));
        start += values.len();
    }
    out.push(("color_shape", start..NUM_LABELS));
    out
}

/// One training image: its file and its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub image_index: usize,
    pub path: PathBuf,
    /// 0/1 per label of [`label_names`].
    pub labels: [f32; NUM_LABELS],
    pub count: usize,
}

/// The fields of a CLEVR scenes file this stage reads (others are ignored, so real CLEVR
/// v1.0 scene files are read as well as generated ones).
#[derive(Deserialize)]
struct ScenesFile {
    scenes: Option<Vec<Scene>>,
    /// Only to recognise a questions file given in the scenes' place.
    questions: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Scene {
    image_index: usize,
    image_filename: String,
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct Object {
    color: String,
    shape: String,
    size: String,
    material: String,
}

/// Reads `scenes_file` and returns one example per scene, ordered by image index, with
/// image paths under `image_dir`. Unknown attribute values, repeated image indices and
/// scenes of more than [`MAX_COUNT`] objects are refused, naming the file and the scene.
pub fn read_examples(scenes_file: &Path, image_dir: &Path) -> Result<Vec<Example>> {
    let p = scenes_file.display();
    if !scenes_file.is_file() {
        bail!("{p}: no such scenes file (a CLEVR-format root holds scenes/CLEVR_train_scenes.json and images/train/)");
    }
    let file: ScenesFile = crate::text::read_json(scenes_file)
        .with_context(|| format!("{p}: not a CLEVR scenes file"))?;
    let scenes = match file {
        ScenesFile {
            scenes: Some(s), ..
        } => s,
        ScenesFile {
            questions: Some(_), ..
        } => bail!(
            "{p}: this is a CLEVR questions file (it lists 'questions'): give the scenes file, \
             scenes/CLEVR_<split>_scenes.json"
        ),
        _ => bail!("{p}: not a CLEVR scenes file: no 'scenes' list"),
    };
    ensure!(!scenes.is_empty(), "{p}: the file lists no scenes");
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(scenes.len());
    for (k, scene) in scenes.iter().enumerate() {
        let at = || format!("{p}: scene {k} (image_index {})", scene.image_index);
        ensure!(
            seen.insert(scene.image_index),
            "{}: image_index appears twice",
            at()
        );
        ensure!(
            scene.objects.len() <= MAX_COUNT,
            "{}: {} objects, more than the {MAX_COUNT} the count head knows",
            at(),
            scene.objects.len()
        );
        ensure!(
            !scene.image_filename.is_empty()
                && !scene.image_filename.contains(['/', '\\'])
                && scene.image_filename != ".."
                && scene.image_filename != ".",
            "{}: image_filename '{}' is not a plain file name",
            at(),
            scene.image_filename
        );
        let mut labels = [0f32; NUM_LABELS];
        for (j, o) in scene.objects.iter().enumerate() {
            let index = |attr: Attr, value: &str| {
                attr.value_index(value).with_context(|| {
                    format!(
                        "{}: object {j}: unknown {} '{value}' (expected one of {})",
                        at(),
                        attr.name(),
                        attr.values().join(", ")
                    )
                })
            };
            let color = index(Attr::Color, &o.color)?;
            let shape = index(Attr::Shape, &o.shape)?;
            let size = index(Attr::Size, &o.size)?;
            let material = index(Attr::Material, &o.material)?;
            let mut base = 0;
            for (value, width) in [
                (color, COLORS.len()),
                (shape, SHAPES.len()),
                (size, SIZES.len()),
                (material, MATERIALS.len()),
            ] {
                labels[base + value] = 1.0;
                base += width;
            }
            labels[base + color * SHAPES.len() + shape] = 1.0;
        }
        out.push(Example {
            image_index: scene.image_index,
            path: image_dir.join(&scene.image_filename),
            labels,
            count: scene.objects.len(),
        });
    }
    out.sort_by_key(|e| e.image_index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_files_with_a_bom_read_and_questions_files_are_named() {
        let dir = std::env::temp_dir().join(format!("remind-scenes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        let scene = r#"{"image_index": 0, "image_filename": "a.png", "objects": [
            {"color": "red", "shape": "cube", "size": "large", "material": "metal"}]}"#;
        std::fs::write(&path, format!("\u{feff}{{\"scenes\": [{scene}]}}\r\n")).unwrap();
        assert_eq!(read_examples(&path, &dir).unwrap().len(), 1);
        std::fs::write(&path, r#"{"info": {}, "questions": []}"#).unwrap();
        let err = format!("{:#}", read_examples(&path, &dir).unwrap_err());
        assert!(err.contains("this is a CLEVR questions file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_and_errors() {
        let names = label_names();
        assert_eq!(names.len(), NUM_LABELS);
        assert_eq!(NUM_LABELS, 39);
        assert_eq!(names[0], "color=gray");
        assert_eq!(names[8], "shape=cube");
        assert_eq!(names[15], "color_shape=gray cube");
        let groups = label_groups();
        assert_eq!(groups.last().map(|g| g.1.clone()), Some(15..39));

        let dir = std::env::temp_dir().join(format!("remind-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        let obj = |c: &str, s: &str| {
            format!(
                r#"{{"color": "{c}", "shape": "{s}", "size": "small", "material": "metal", "rotation": 3.0}}"#
            )
        };
        let text = format!(
            r#"{{"info": {{}}, "scenes": [
              {{"image_index": 5, "image_filename": "CLEVR_train_000005.png", "objects": [{}, {}]}},
              {{"image_index": 2, "image_filename": "CLEVR_train_000002.png", "objects": [{}]}}]}}"#,
            obj("red", "sphere"),
            obj("cyan", "cube"),
            obj("gray", "cylinder")
        );
        std::fs::write(&path, text).unwrap();
        let ex = read_examples(&path, &dir).unwrap();
        assert_eq!(ex.iter().map(|e| e.image_index).collect::<Vec<_>>(), [2, 5]);
        assert_eq!(ex[1].count, 2);
        assert_eq!(ex[1].path, dir.join("CLEVR_train_000005.png"));
        let on: Vec<&str> = names
            .iter()
            .zip(ex[1].labels)
            .filter(|(_, v)| *v == 1.0)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            on,
            [
                "color=red",
                "color=cyan",
                "shape=cube",
                "shape=sphere",
                "size=small",
                "material=metal",
                "color_shape=red sphere",
                "color_shape=cyan cube"
            ]
        );

        std::fs::write(
            &path,
            format!(
                r#"{{"scenes": [{{"image_index": 0, "image_filename": "a.png", "objects": [{}]}}]}}"#,
                obj("pink", "cube")
            ),
        )
        .unwrap();
        let err = format!("{:#}", read_examples(&path, &dir).unwrap_err());
        assert!(
            err.contains("s.json: scene 0 (image_index 0): object 0: unknown color 'pink'"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            read_examples(&dir.join("none.json"), &dir).unwrap_err()
        );
        assert!(err.contains("none.json: no such scenes file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
