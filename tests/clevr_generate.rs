//! End to end: `remind-generate-clevr --size tiny` writes a data set in CLEVR v1.0's layout,
//! deterministically from its seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use remind_e2e::{run_fail, run_ok, scratch, stage};

fn generate(out: &Path, run_dir: &Path, seed: u64) {
    run_ok(
        stage("remind-generate-clevr")
            .args(["--size", "tiny", "--seed", &seed.to_string(), "--out"])
            .arg(out)
            .arg("--run-dir")
            .arg(run_dir),
    );
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn tiny_mini_clevr_has_clevr_layout_and_is_deterministic() {
    let dir = scratch("clevr_generate");
    let run_dir = dir.join("run");
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    generate(&a, &run_dir, 3);

    for (split, images) in [("train", 40usize), ("val", 20)] {
        let q: serde_json::Value = serde_json::from_slice(
            &std::fs::read(a.join(format!("questions/CLEVR_{split}_questions.json"))).unwrap(),
        )
        .unwrap();
        let s: serde_json::Value = serde_json::from_slice(
            &std::fs::read(a.join(format!("scenes/CLEVR_{split}_scenes.json"))).unwrap(),
        )
        .unwrap();
        assert!(q["info"].is_object() && s["info"].is_object());
        let questions = q["questions"].as_array().unwrap();
        let scenes = s["scenes"].as_array().unwrap();
        assert_eq!(scenes.len(), images);
        assert_eq!(questions.len(), images * 10);
        for key in [
            "question",
            "answer",
            "image_index",
            "image_filename",
            "split",
            "question_index",
            "question_family_index",
            "program",
        ] {
            assert!(questions[0].get(key).is_some(), "question lacks {key}");
        }
        let node = &questions[0]["program"][0];
        for key in ["function", "inputs", "value_inputs"] {
            assert!(node.get(key).is_some(), "program node lacks {key}");
        }
        let obj = &scenes[0]["objects"][0];
        for key in [
            "shape",
            "color",
            "size",
            "material",
            "3d_coords",
            "pixel_coords",
            "rotation",
        ] {
            assert!(obj.get(key).is_some(), "object lacks {key}");
        }
        for i in [0, images - 1] {
            let name = format!("CLEVR_{split}_{i:06}.png");
            assert_eq!(scenes[i]["image_filename"], name.as_str());
            let bytes = std::fs::read(a.join("images").join(split).join(&name)).unwrap();
            let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let frame = reader.next_frame(&mut buf).unwrap();
            assert_eq!((frame.width, frame.height), (128, 128));
            assert_eq!(frame.color_type, png::ColorType::Rgb);
        }
    }
    let manifest = std::fs::read_to_string(run_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("generate-clevr"), "{manifest}");

    generate(&b, &run_dir, 3);
    generate(&c, &run_dir, 4);
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 60 + 4);
    assert!(fa == fb, "the same seed gave different bytes");
    assert_eq!(fa.keys().collect::<Vec<_>>(), fc.keys().collect::<Vec<_>>());
    let differing = fa.iter().filter(|(k, v)| fc[*k] != **v).count();
    assert_eq!(differing, fa.len(), "another seed repeated some files");
}

#[test]
fn bad_settings_fail_clearly() {
    let dir = scratch("clevr_generate_bad");
    let err = run_fail(
        stage("remind-generate-clevr")
            .args(["--size", "tiny", "--min-objects", "9", "--max-objects", "4"])
            .arg("--out")
            .arg(dir.join("d"))
            .arg("--run-dir")
            .arg(dir.join("run")),
    );
    assert!(err.contains("min_objects"), "{err}");
    let config = dir.join("p.yaml");
    std::fs::write(&config, "generate_clevr:\n  train_image: 3\n").unwrap();
    let err = run_fail(
        stage("remind-generate-clevr")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(dir.join("d")),
    );
    assert!(err.contains("did you mean 'train_images'"), "{err}");
}
