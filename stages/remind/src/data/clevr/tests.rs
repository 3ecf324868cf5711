//! Tests of the generator through its written files: every answer is re-derived by a
//! small program executor written independently of the generator (it works on the JSON
//! scenes' strings), and the question mix is checked for coverage and balance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::format::{ProgramNode, QuestionsFile, SceneObject, ScenesFile};
use super::*;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Set(Vec<usize>),
    Object(usize),
    Number(usize),
    Bool(bool),
    Text(String),
}

fn attribute_of<'a>(o: &'a SceneObject, name: &str) -> &'a str {
    match name {
        "color" => &o.color,
        "shape" => &o.shape,
        "size" => &o.size,
        "material" => &o.material,
        other => panic!("unknown attribute {other}"),
    }
}

/// Runs a CLEVR program on a scene; panics on anything malformed.
fn execute(program: &[ProgramNode], objects: &[SceneObject]) -> String {
    let mut values: Vec<Value> = Vec::new();
    for (i, node) in program.iter().enumerate() {
        for &input in &node.inputs {
            assert!(input < i, "node {i} reads a later node {input}");
        }
        let arg = |k: usize| values[node.inputs[k]].clone();
        let f = node.function.as_str();
        let v = if f == "scene" {
            Value::Set((0..objects.len()).collect())
        } else if let Some(attr) = f.strip_prefix("filter_") {
            let Value::Set(set) = arg(0) else {
                panic!("{f} on a non-set")
            };
            let want = &node.value_inputs[0];
            Value::Set(
                set.into_iter()
                    .filter(|&o| attribute_of(&objects[o], attr) == want)
                    .collect(),
            )
        } else if f == "unique" {
            let Value::Set(set) = arg(0) else {
                panic!("unique on a non-set")
            };
            assert_eq!(set.len(), 1, "unique referent expected, found {set:?}");
            Value::Object(set[0])
        } else if f == "count" {
            let Value::Set(set) = arg(0) else {
                panic!("count on a non-set")
            };
            Value::Number(set.len())
        } else if f == "exist" {
            let Value::Set(set) = arg(0) else {
                panic!("exist on a non-set")
            };
            Value::Bool(!set.is_empty())
        } else if let Some(attr) = f.strip_prefix("query_") {
            let Value::Object(o) = arg(0) else {
                panic!("{f} on a non-object")
            };
            Value::Text(attribute_of(&objects[o], attr).to_string())
        } else if f.starts_with("equal_") && f != "equal_integer" {
            let (Value::Text(a), Value::Text(b)) = (arg(0), arg(1)) else {
                panic!("{f} on non-values")
            };
            Value::Bool(a == b)
        } else {
            let (Value::Number(a), Value::Number(b)) = (arg(0), arg(1)) else {
                panic!("{f} on non-numbers")
            };
            Value::Bool(match f {
                "greater_than" => a > b,
                "less_than" => a < b,
                "equal_integer" => a == b,
                other => panic!("unknown function {other}"),
            })
        };
        values.push(v);
    }
    match values.pop().expect("empty program") {
        Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t,
        other => panic!("program ends in {other:?}"),
    }
}

fn type_of(program: &[ProgramNode]) -> usize {
    let last = program.last().expect("empty program").function.as_str();
    match last {
        "count" => 0,
        "exist" => 1,
        "greater_than" | "less_than" | "equal_integer" => 2,
        f if f.starts_with("equal_") => 3,
        f if f.starts_with("query_") => 4,
        other => panic!("unexpected last function {other}"),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("remind-clevr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_split(root: &Path, split: &str) -> (QuestionsFile, ScenesFile) {
    let q = std::fs::read(root.join(format!("questions/CLEVR_{split}_questions.json"))).unwrap();
    let s = std::fs::read(root.join(format!("scenes/CLEVR_{split}_scenes.json"))).unwrap();
    (
        serde_json::from_slice(&q).unwrap(),
        serde_json::from_slice(&s).unwrap(),
    )
}

fn small_config(seed: u64, train: usize, val: usize) -> GenerateClevrConfig {
    GenerateClevrConfig {
        seed,
        image_size: 48,
        train_images: train,
        val_images: val,
        questions_per_image: 10,
        ..Default::default()
    }
}

#[test]
fn answers_match_an_independent_executor_and_types_are_balanced() {
    let dir = temp_dir("answers");
    let summaries = generate(&small_config(7, 400, 10), &dir).unwrap();
    assert_eq!(summaries[0].questions, 4000);
    let (qf, sf) = read_split(&dir, "train");
    assert_eq!(qf.questions.len(), 4000);
    assert_eq!(sf.scenes.len(), 400);
    let answers = attributes::answer_vocabulary();
    let mut per_type = [0usize; 5];
    let mut per_family: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
    let mut count_answers: BTreeMap<String, usize> = BTreeMap::new();
    for (k, q) in qf.questions.iter().enumerate() {
        assert_eq!(q.question_index, k);
        assert_eq!(q.split, "train");
        let scene = &sf.scenes[q.image_index];
        assert_eq!(scene.image_filename, q.image_filename);
        assert!((3..=8).contains(&scene.objects.len()));
        assert_eq!(
            execute(&q.program, &scene.objects),
            q.answer,
            "question {k}: {}",
            q.question
        );
        assert!(answers.contains(&q.answer), "{}", q.answer);
        assert!(q.question.ends_with('?'), "{}", q.question);
        let t = type_of(&q.program);
        per_type[t] += 1;
        *per_family
            .entry(q.question_family_index)
            .or_default()
            .entry(q.answer.clone())
            .or_default() += 1;
        if t == 0 {
            *count_answers.entry(q.answer.clone()).or_default() += 1;
        }
    }
    // Roughly equal numbers per type (exactly equal unless a type had no valid question).
    for n in per_type {
        assert!((700..=900).contains(&n), "{per_type:?}");
    }
    // Yes/no families: about 50/50 each.
    for (family, hist) in &per_family {
        let yes = hist.get("yes").copied().unwrap_or(0);
        let no = hist.get("no").copied().unwrap_or(0);
        if yes + no > 0 {
            let share = yes as f64 / (yes + no) as f64;
            assert!(
                (0.4..=0.6).contains(&share),
                "family {family}: {yes} yes / {no} no"
            );
        }
    }
    // Counts spread over several values, none dominant.
    let total: usize = count_answers.values().sum();
    assert!(count_answers.len() >= 6, "{count_answers:?}");
    assert!(
        count_answers.values().all(|&n| n * 100 <= total * 25),
        "{count_answers:?}"
    );
    // A blind model that answers each template's most frequent answer scores low.
    let blind: usize = per_family
        .values()
        .map(|h| h.values().max().copied().unwrap_or(0))
        .sum();
    let blind_acc = blind as f64 / qf.questions.len() as f64;
    assert!(blind_acc < 0.5, "blind per-template accuracy {blind_acc}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_type_and_every_answer_kind_appears() {
    let dir = temp_dir("types");
    generate(&small_config(1, 40, 20), &dir).unwrap();
    for split in ["train", "val"] {
        let (qf, sf) = read_split(&dir, split);
        assert_eq!(qf.info.split, split);
        let mut types = [0usize; 5];
        let mut last_functions: HashMap<String, usize> = HashMap::new();
        for q in &qf.questions {
            types[type_of(&q.program)] += 1;
            *last_functions
                .entry(q.program.last().unwrap().function.clone())
                .or_default() += 1;
            assert_eq!(
                execute(&q.program, &sf.scenes[q.image_index].objects),
                q.answer
            );
        }
        assert!(types.iter().all(|&n| n > 0), "{split}: {types:?}");
        for f in [
            "count",
            "exist",
            "greater_than",
            "less_than",
            "equal_integer",
        ] {
            assert!(last_functions.contains_key(f), "{split}: no {f}");
        }
    }
    let png = std::fs::read(dir.join("images/val/CLEVR_val_000019.png")).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (48, 48));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tree_bytes(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (a, b, c) = (temp_dir("det-a"), temp_dir("det-b"), temp_dir("det-c"));
    generate(&small_config(5, 12, 4), &a).unwrap();
    generate(&small_config(5, 12, 4), &b).unwrap();
    generate(&small_config(6, 12, 4), &c).unwrap();
    let (ta, tb, tc) = (tree_bytes(&a), tree_bytes(&b), tree_bytes(&c));
    assert_eq!(ta.len(), 12 + 4 + 4);
    assert!(ta == tb, "same seed gave different files");
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>());
    assert!(
        ta.iter().all(|(k, v)| tc[k] != *v),
        "another seed repeated a file"
    );
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn metal_and_rubber_render_differently() {
    use scene::{Object, Scene};
    let obj = |material: usize, shape: usize| Object {
        attrs: [attributes::LARGE, 1, material, shape],
        x: 0.0,
        y: 0.0,
        rotation: 0.0,
    };
    for shape in [attributes::CUBE, attributes::SPHERE, attributes::CYLINDER] {
        let rubber = render::render(
            &Scene {
                objects: vec![obj(0, shape)],
            },
            64,
        );
        let metal = render::render(
            &Scene {
                objects: vec![obj(attributes::METAL, shape)],
            },
            64,
        );
        // Same silhouette, visibly different pixels: the metal one has a bright highlight.
        assert_eq!(rubber.covered, metal.covered);
        let max = |img: &render::Rendered| img.rgb.chunks(3).map(|p| p[1]).max().unwrap();
        assert!(max(&metal) > max(&rubber) + 40, "shape {shape}");
    }
    let areas: Vec<u32> = [attributes::CUBE, attributes::SPHERE, attributes::CYLINDER]
        .into_iter()
        .map(|s| {
            render::render(
                &Scene {
                    objects: vec![obj(0, s)],
                },
                64,
            )
            .covered[0]
        })
        .collect();
    assert!(areas[0] != areas[1] && areas[1] != areas[2], "{areas:?}");
    let mut small = obj(0, attributes::SPHERE);
    small.attrs[0] = attributes::SMALL;
    let small_area = render::render(
        &Scene {
            objects: vec![small],
        },
        64,
    )
    .covered[0];
    let ratio = areas[1] as f64 / small_area as f64;
    assert!((3.0..5.0).contains(&ratio), "area ratio {ratio}");
}
