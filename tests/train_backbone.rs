//! End to end: `remind-train-backbone` on a generated mini-CLEVR training split, then
//! `remind-extract-features` with the weights it wrote; bad inputs are refused by name.

use std::path::Path;
use std::process::Command;

use remind::artifact::weights::read_weights;
use remind::artifact::TensorDataset;
use remind_e2e::{run_fail, run_ok, scratch, stage};

/// ResNet-18, width 8, cut after layer3, 96 px images: 96 / 4 / 2 / 2 = 6, 4 * 8 channels.
const SHAPE: [usize; 3] = [6, 6, 32];

fn generate(out: &Path, run_dir: &Path) {
    run_ok(
        stage("remind-generate-clevr")
            .args([
                "--size",
                "tiny",
                "--train-images",
                "820",
                "--val-images",
                "8",
            ])
            .args(["--image-size", "96", "--questions-per-image", "0"])
            .arg("--out")
            .arg(out)
            .arg("--run-dir")
            .arg(run_dir),
    );
}

fn train(clevr: &Path, weights: &Path, run_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = stage("remind-train-backbone");
    cmd.arg("--clevr-dir")
        .arg(clevr)
        .arg("--out")
        .arg(weights)
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--width", "8", "--image-size", "96", "--batch", "16"])
        .args(["--device", "cpu", "--threads", "1"])
        .args(extra);
    cmd
}

#[test]
fn trained_g_beats_chance_and_feeds_feature_extraction() {
    let dir = scratch("train_backbone");
    let clevr = dir.join("clevr");
    let run_dir = dir.join("run");
    generate(&clevr, &run_dir);

    let weights = dir.join("g").join("g.safetensors");
    let out = run_ok(&mut train(
        &clevr,
        &weights,
        &run_dir,
        &["--max-images", "800", "--epochs", "6", "--lr", "0.004"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("epoch 6/6") && stderr.contains("held-out mean AUC"),
        "{stderr}"
    );

    // The report sits beside the weights.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("g").join("train_report.json")).expect("train_report.json"),
    )
    .unwrap();
    assert_eq!(report["images"], 800);
    assert_eq!(report["train_images"], 720);
    assert_eq!(report["heldout_images"], 80);
    // --max-images keeps the first images by index; the held-out ones are the last of those.
    assert_eq!(report["heldout_index_range"], serde_json::json!([720, 799]));
    assert_eq!(report["epochs"], 6);
    assert_eq!(report["steps"], 6 * 45);
    assert_eq!(report["feature_shape"], serde_json::json!(SHAPE));
    assert_eq!(report["labels"].as_array().unwrap().len(), 39);
    assert_eq!(report["count_classes"], 11);
    assert_eq!(report["optimizer"], "adam");
    assert!(report["total_seconds"].as_f64().unwrap() > 0.0);
    let epochs = report["per_epoch"].as_array().unwrap();
    assert_eq!(epochs.len(), 6);
    let loss = |e: &serde_json::Value| e["loss"].as_f64().unwrap();
    assert!(epochs.iter().all(|e| loss(e).is_finite()));
    assert!(
        loss(&epochs[5]) < loss(&epochs[0]),
        "the loss did not go down: {epochs:?}"
    );
    // Chance is 0.5; colors are the easiest attribute to see.
    let held = &report["heldout"];
    let mean_auc = held["mean_auc"].as_f64().unwrap();
    let color_auc = held["group_auc"]["color"].as_f64().unwrap();
    assert!(mean_auc > 0.6, "held-out mean AUC {mean_auc}: {held}");
    assert!(color_auc > 0.6, "held-out color AUC {color_auc}: {held}");
    // Labels present (or absent) in every held-out image have no AUC.
    assert!(held["labels_scored"].as_u64().unwrap() >= 30, "{held}");

    // The file holds G only, under torchvision's names.
    let file = read_weights(&weights).unwrap();
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"conv1.weight") && names.contains(&"layer3.1.bn2.running_var"));
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("head.") && !n.starts_with("layer4.") && !n.starts_with("fc.")),
        "{names:?}"
    );
    assert_eq!(file.metadata["remind.cut"], "layer3");
    let manifest = std::fs::read_to_string(run_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("train-backbone"), "{manifest}");

    // remind-extract-features loads them for G cut at layer3.
    let features = dir.join("features");
    run_ok(
        stage("remind-extract-features")
            .arg("--images")
            .arg(clevr.join("images").join("val"))
            .arg("--out")
            .arg(&features)
            .arg("--weights")
            .arg(&weights)
            .args(["--arch", "resnet18", "--width", "8", "--cut", "layer3"])
            .args(["--image-size", "96", "--id-from", "clevr-filename"])
            .args(["--device", "cpu", "--threads", "1"])
            .arg("--run-dir")
            .arg(&run_dir),
    );
    let ds = TensorDataset::open(&features, "features").unwrap();
    assert_eq!(ds.shape(), SHAPE);
    assert_eq!(ds.ids().unwrap(), (0..8).collect::<Vec<u64>>());
    let row = ds.row_f32(0).unwrap();
    assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(row.iter().any(|v| *v > 0.0));
}

#[test]
fn missing_scenes_or_images_are_named() {
    let dir = scratch("train_backbone_bad");
    let root = dir.join("clevr");
    let images = root.join("images").join("train");
    std::fs::create_dir_all(&images).unwrap();
    let weights = dir.join("g.safetensors");
    let run_dir = dir.join("run");

    let err = run_fail(&mut train(&root, &weights, &run_dir, &["--epochs", "1"]));
    assert!(
        err.contains("scenes/CLEVR_train_scenes.json") && err.contains("no such scenes file"),
        "{err}"
    );
    assert!(!weights.exists());

    // A scene whose image is missing: the error names the image file.
    let img = image::RgbImage::from_pixel(96, 96, image::Rgb([120, 120, 120]));
    for k in 0..2 {
        img.save(images.join(format!("CLEVR_train_{k:06}.png")))
            .unwrap();
    }
    let object = r#"{"color": "red", "shape": "cube", "size": "large", "material": "rubber"}"#;
    let scenes: Vec<String> = (0..3)
        .map(|k| {
            format!(
                r#"{{"image_index": {k}, "image_filename": "CLEVR_train_{k:06}.png", "objects": [{object}]}}"#
            )
        })
        .collect();
    std::fs::create_dir_all(root.join("scenes")).unwrap();
    std::fs::write(
        root.join("scenes").join("CLEVR_train_scenes.json"),
        format!(r#"{{"scenes": [{}]}}"#, scenes.join(", ")),
    )
    .unwrap();
    let err = run_fail(&mut train(&root, &weights, &run_dir, &["--epochs", "1"]));
    assert!(err.contains("CLEVR_train_000002.png"), "{err}");
    assert!(!weights.exists());
}
