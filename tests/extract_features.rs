//! End to end: `remind-extract-features` over a folder of generated PNG/JPEG images with
//! random ResNet-18 (width 16) weights written by `remind-backbone init`.

use std::path::{Path, PathBuf};

use arrow::array::{StringArray, UInt64Array};
use remind::artifact::{Table, TensorDataset};
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};

/// The images: (file name, width, height). CLEVR-style names with gaps in the indices.
const IMAGES: &[(&str, u32, u32)] = &[
    ("CLEVR_mini_000003.png", 48, 32),
    ("CLEVR_mini_000007.png", 64, 64),
    ("CLEVR_mini_000008.jpg", 40, 56),
    ("CLEVR_mini_000020.png", 80, 60),
    ("CLEVR_mini_000021.png", 33, 33),
];
const SHAPE: [usize; 3] = [4, 4, 64]; // resnet18, width 16, layer3, 64 px

fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, (name, w, h)) in IMAGES.iter().enumerate() {
        let img = image::RgbImage::from_fn(*w, *h, |x, y| {
            let v = |s: u32| ((x * s + y * (s + 3) + k as u32 * 40) % 256) as u8;
            image::Rgb([v(3), v(7), v(11)])
        });
        img.save(dir.join(name)).unwrap();
    }
}

/// A valid PNG cut to half its length.
fn write_truncated(path: &Path) {
    let img = image::RgbImage::from_fn(50, 50, |x, y| image::Rgb([x as u8, y as u8, 7]));
    img.save(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn init_weights(dir: &Path, width: &str) -> PathBuf {
    let path = dir.join(format!("r18-w{width}.safetensors"));
    run_ok(
        stage("remind-backbone")
            .args([
                "init", "--arch", "resnet18", "--width", width, "--seed", "3",
            ])
            .arg("--out")
            .arg(&path),
    );
    path
}

fn extract(images: &Path, out: &Path, weights: &Path, extra: &[&str]) -> std::process::Command {
    extract_arch("resnet18", images, out, weights, extra)
}

fn extract_arch(
    arch: &str,
    images: &Path,
    out: &Path,
    weights: &Path,
    extra: &[&str],
) -> std::process::Command {
    let mut cmd = stage("remind-extract-features");
    cmd.arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .arg("--weights")
        .arg(weights)
        .args(["--arch", arch, "--width", "16", "--cut", "layer3"])
        .args(["--image-size", "64", "--batch", "2", "--device", "cpu"])
        .arg("--run-dir")
        .arg(out.parent().unwrap().join("run"))
        .args(extra);
    cmd
}

fn rows(ds: &TensorDataset) -> Vec<Vec<f32>> {
    (0..ds.len())
        .map(|i| ds.row_f32(i).unwrap().to_vec())
        .collect()
}

#[test]
fn one_and_two_shards_give_the_same_features() {
    let dir = scratch("extract_features_shards");
    let images = dir.join("images");
    write_images(&images);
    let weights = init_weights(&dir, "16");
    let clevr = ["--id-from", "clevr-filename"];

    let one = dir.join("one");
    run_ok(&mut extract(&images, &one, &weights, &clevr));
    let two = dir.join("two");
    for k in ["0/2", "1/2"] {
        run_ok(&mut extract(
            &images,
            &two,
            &weights,
            &[&clevr[..], &["--shard", k]].concat(),
        ));
    }
    // A re-submitted shard finds its part up to date and skips it.
    let part = two.join("part-00001-of-00002.arrow");
    let written = std::fs::read(&part).unwrap();
    let again = run_ok(&mut extract(
        &images,
        &two,
        &weights,
        &[&clevr[..], &["--shard", "1/2"]].concat(),
    ));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("remind-extract-features: up to date"),
        "{said}"
    );
    assert_eq!(std::fs::read(&part).unwrap(), written);

    let a = TensorDataset::open(&one, "features").unwrap();
    let b = TensorDataset::open(&two, "features").unwrap();
    assert_eq!(b.parts().len(), 2);
    assert_eq!(a.shape(), SHAPE);
    assert_eq!(a.meta("remind.layout").unwrap(), "HWC");
    assert_eq!(a.ids().unwrap(), vec![3, 7, 8, 20, 21]);
    assert_eq!(b.ids().unwrap(), a.ids().unwrap());
    let producer = a.head().producer().unwrap();
    for (key, value) in [
        ("arch", "resnet18"),
        ("cut", "layer3"),
        ("id_from", "clevr-filename"),
    ] {
        assert_eq!(producer.params[key], value, "{key}");
    }
    assert_eq!(producer.params["image_size"], 64);
    assert_eq!(
        producer.params["weights_sha256"].as_str().unwrap().len(),
        64
    );
    let (ra, rb) = (rows(&a), rows(&b));
    for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(scale > 0.0, "row {i} is all zeros");
        assert!(
            diff <= 1e-5 * scale,
            "row {i}: max diff {diff} (scale {scale})"
        );
    }
    // Different images give different features.
    assert_ne!(ra[0], ra[1]);

    // Side files lie beside the dataset folder, which holds only its parts (#17).
    let index = Table::read(&dir.join("one.images.parquet"), "images").unwrap();
    for ds in [&one, &two] {
        let mut names: Vec<String> = std::fs::read_dir(ds)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("part-") && n.ends_with(".arrow")),
            "{names:?}"
        );
    }
    assert!(dir.join("two.images.parquet").exists());
    let ids = index.column::<UInt64Array>("id").unwrap();
    let paths = index.column::<StringArray>("path").unwrap();
    assert_eq!(ids.values().to_vec(), vec![3, 7, 8, 20, 21]);
    assert_eq!(paths.value(2), "CLEVR_mini_000008.jpg");
}

#[test]
fn truncated_image_fails_or_is_reported() {
    let dir = scratch("extract_features_bad");
    let images = dir.join("images");
    write_images(&images);
    write_truncated(&images.join("CLEVR_mini_000010.png"));
    let weights = init_weights(&dir, "16");

    let out = dir.join("strict");
    let err = run_fail(&mut extract(&images, &out, &weights, &[]));
    assert!(err.contains("CLEVR_mini_000010.png"), "{err}");
    assert!(!out.join("part-00000-of-00001.arrow").exists());
    assert!(!dir.join("strict.images.parquet").exists());

    let out = dir.join("skip");
    run_ok(&mut extract(&images, &out, &weights, &["--skip-bad"]));
    // Sorted ids: the truncated file is the 4th of 6 (id 3) and is left out.
    let ds = TensorDataset::open(&out, "features").unwrap();
    assert_eq!(ds.ids().unwrap(), vec![0, 1, 2, 4, 5]);
    assert_eq!(ds.shape(), SHAPE);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("skip.bad_images.json")).unwrap()).unwrap();
    let bad = report.as_array().unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["id"], 3);
    assert_eq!(bad[0]["path"], "CLEVR_mini_000010.png");
    assert!(!bad[0]["error"].as_str().unwrap().is_empty());
    let index = Table::read(&dir.join("skip.images.parquet"), "images").unwrap();
    assert_eq!(index.num_rows(), 6);
    assert!(!out.join("images.parquet").exists() && !out.join("bad_images.json").exists());
    // The completeness check reads the index and report beside the folder: ids 0..6 less 3.
    let done = stdout(run_ok(
        stage("remind-artifact").arg("check-complete").arg(&out),
    ));
    assert!(done.contains("covering the input"), "{done}");
    // A folder of before #17 (index and report inside) is read in that layout.
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(
        out.join("part-00000-of-00001.arrow"),
        old.join("part-00000-of-00001.arrow"),
    )
    .unwrap();
    std::fs::copy(dir.join("skip.images.parquet"), old.join("images.parquet")).unwrap();
    // Its index read there: without the report inside, id 3 is missing.
    let err = run_fail(stage("remind-artifact").arg("check-complete").arg(&old));
    assert!(err.contains("absent (e.g. 3)"), "{err}");
    std::fs::copy(
        dir.join("skip.bad_images.json"),
        old.join("bad_images.json"),
    )
    .unwrap();
    let done = stdout(run_ok(
        stage("remind-artifact").arg("check-complete").arg(&old),
    ));
    assert!(done.contains("covering the input"), "{done}");
}

fn stdout(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weights` saved again without their `__metadata__` (as torchvision's converted weights
/// come), into `name` beside them.
fn without_metadata(weights: &Path, name: &str) -> PathBuf {
    let out = weights.with_file_name(name);
    run_python(
        "import sys\nfrom safetensors.torch import load_file, save_file\n\
         save_file(load_file(sys.argv[1]), sys.argv[2])",
        &[weights.to_str().unwrap(), out.to_str().unwrap()],
    );
    out
}

#[test]
fn weights_of_the_wrong_shape_are_refused_by_name() {
    let dir = scratch("extract_features_wrong_weights");
    let images = dir.join("images");
    write_images(&images);
    // Weights without the network's record: the shapes tell.
    let weights = without_metadata(&init_weights(&dir, "32"), "bare-w32.safetensors");
    let err = run_fail(&mut extract(&images, &dir.join("out"), &weights, &[])); // width 16
    assert!(
        err.contains("bare-w32.safetensors") && err.contains("wrong shape"),
        "{err}"
    );
    assert!(
        err.contains("conv1.weight (expected [16, 3, 7, 7], found [32, 3, 7, 7])"),
        "{err}"
    );
    // A deeper network than the file holds: the missing names are listed.
    let err = run_fail(&mut extract_arch(
        "resnet34",
        &images,
        &dir.join("out"),
        &without_metadata(&init_weights(&dir, "16"), "bare-w16.safetensors"),
        &[],
    ));
    assert!(
        err.contains("these are the weights of resnet18 (basic blocks 2-2-2-2)")
            && err.contains(
                "the model is resnet34 (basic blocks 3-4-6 in the part built, up to layer3)"
            ),
        "{err}"
    );
}

/// The network is read from the weights' record (issue #17): no --arch / --width needed,
/// and a flag that disagrees with the record is refused naming both, before any work.
#[test]
fn the_network_comes_from_the_weights_record() {
    let dir = scratch("extract_features_weights_record");
    let images = dir.join("images");
    write_images(&images);
    let weights = init_weights(&dir, "32"); // resnet18, width 32, recorded
    let err = run_fail(&mut extract(&images, &dir.join("out"), &weights, &[])); // --width 16
    assert!(
        err.contains("r18-w32.safetensors")
            && err.contains("remind.width = 32")
            && err.contains("--width / extract_features.width is 16"),
        "{err}"
    );
    let err = run_fail(&mut extract_arch(
        "resnet34",
        &images,
        &dir.join("out"),
        &weights,
        &[],
    ));
    assert!(
        err.contains("remind.arch = resnet18") && err.contains("extract_features.arch is resnet34"),
        "{err}"
    );
    assert!(!dir.join("out/part-00000-of-00001.arrow").exists());
    // Neither flag: resnet18 of width 32 as recorded, so layer3 gives 4 x 32 = 128 channels.
    let out = dir.join("out");
    let mut cmd = stage("remind-extract-features");
    cmd.arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .arg("--weights")
        .arg(&weights)
        .args([
            "--cut",
            "layer3",
            "--image-size",
            "64",
            "--batch",
            "2",
            "--device",
            "cpu",
        ])
        .arg("--run-dir")
        .arg(dir.join("run"));
    run_ok(&mut cmd);
    let ds = TensorDataset::open(&out, "features").unwrap();
    assert_eq!(ds.shape(), &[4, 4, 128]);
}

/// Runs the stage on the test images with the test backbone's weights after `edit` (Python,
/// `tensors` being the name -> tensor dict) rewrote them; returns the error and whether a
/// features part was written.
fn extract_with_edited_weights(name: &str, edit: &str) -> (String, bool) {
    let dir = scratch(name);
    let images = dir.join("images");
    write_images(&images);
    let weights = init_weights(&dir, "16");
    let edited = dir.join("edited.safetensors");
    let code = format!(
        "import sys, math\nfrom safetensors import safe_open\nfrom safetensors.torch import \
         save_file\nwith safe_open(sys.argv[1], 'pt') as f:\n    meta = f.metadata()\n    \
         tensors = {{k: f.get_tensor(k) for k in f.keys()}}\n{edit}\nsave_file(tensors, \
         sys.argv[2], metadata=meta)\n"
    );
    remind_e2e::run_python(
        &code,
        &[weights.to_str().unwrap(), edited.to_str().unwrap()],
    );
    let out = dir.join("out");
    let err = run_fail(&mut extract(&images, &out, &edited, &[]));
    let written = std::fs::read_dir(&out).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("part-"))
    });
    (err, written)
}

/// Weights that are not finite (a diverged training) give no features file: the stage
/// fails naming the first image whose features hold NaN.
#[test]
fn nan_weights_give_no_features() {
    let (err, written) = extract_with_edited_weights(
        "extract_features_nan_weights",
        "tensors['conv1.weight'].fill_(math.nan)",
    );
    assert!(
        err.contains("the features of image id 0 hold NaN")
            && err.contains("backbone weights finite"),
        "{err}"
    );
    assert!(!written, "a features part was written");
}

/// Weights that make every feature zero (zeroed by a bad conversion) are refused too.
#[test]
fn zero_weights_give_no_features() {
    let (err, written) = extract_with_edited_weights(
        "extract_features_zero_weights",
        "for k, t in tensors.items():\n    if k.endswith('weight') or k.endswith('bias'):\n        t.zero_()",
    );
    assert!(err.contains("are all zeros"), "{err}");
    assert!(!written, "a features part was written");
}
