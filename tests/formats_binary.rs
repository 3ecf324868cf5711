//! End to end: the binary input formats as their usual writers produce them (faiss, torch,
//! numpy, MNIST's IDX, image folders from cameras and file managers) are read by the real
//! stage binaries; a file of a related but different kind is refused with a message naming
//! the file, what it is and what to give instead, and no output is written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use remind::artifact::TensorDataset;
use remind::data::images::idx::{encode_images, encode_labels};
use remind_e2e::{init_test_backbone, run_fail, run_ok, run_python, scratch, stage};

#[path = "support/questions_table.rs"]
mod questions_table;
use questions_table::{questions_table, QUESTIONS};

/// Runs `cmd`, expecting failure with every one of `needles` in its message and nothing at
/// `out`.
fn refused(cmd: &mut Command, out: &Path, needles: &[&str]) {
    let err = run_fail(cmd);
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in:\n{err}");
    }
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    assert!(!out.exists(), "{} written despite the error", out.display());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------- faiss

fn from_faiss(input: &Path, out: &Path) -> Command {
    let mut c = stage("remind-pq-convert");
    c.arg("from-faiss").arg(input).arg(out);
    c
}

/// faiss writes: a bare ProductQuantizer, an IndexPQ (write_index), and other indexes.
const FAISS_WRITER: &str = r#"
import sys, numpy as np, faiss
d = sys.argv[1]
x = np.random.default_rng(0).standard_normal((2000, 16)).astype("float32")
pq = faiss.IndexPQ(16, 4, 6)
pq.train(x); pq.add(x[:10])
faiss.write_index(pq, f"{d}/pq.index")
faiss.write_ProductQuantizer(pq.pq, f"{d}/pq.faisspq")
for name, spec in [("ivfpq", "IVF4,PQ4x6"), ("opq", "OPQ4,PQ4x6"), ("flat", "Flat")]:
    idx = faiss.index_factory(16, spec)
    idx.train(x); idx.add(x[:10])
    faiss.write_index(idx, f"{d}/{name}.index")
"#;

#[test]
fn faiss_index_pq_file_is_read_like_its_product_quantizer() {
    let dir = scratch("formats_binary_faiss_read");
    run_python(FAISS_WRITER, &[s(&dir)]);
    for name in ["pq.index", "pq.faisspq"] {
        run_ok(&mut from_faiss(
            &dir.join(name),
            &dir.join(format!("{name}.arrow")),
        ));
    }
    // Both give the same codebook: exported again, it is faiss's own ProductQuantizer file.
    let back = dir.join("back.faisspq");
    run_ok(
        stage("remind-pq-convert")
            .arg("to-faiss")
            .arg(dir.join("pq.index.arrow"))
            .arg(&back),
    );
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(dir.join("pq.faisspq")).unwrap()
    );
}

#[test]
fn faiss_indexes_of_other_kinds_are_refused_by_name() {
    let dir = scratch("formats_binary_faiss_refuse");
    run_python(FAISS_WRITER, &[s(&dir)]);
    let out = dir.join("out.arrow");
    for (name, needles) in [
        (
            "ivfpq.index",
            vec![
                "an IndexIVFPQ (faiss fourcc IwPQ)",
                "faiss.write_ProductQuantizer(index.pq",
            ],
        ),
        (
            "opq.index",
            vec!["an IndexPreTransform (faiss fourcc IxPT)"],
        ),
        ("flat.index", vec!["an IndexFlat"]),
    ] {
        let mut n = vec![name, "give a ProductQuantizer file"];
        n.extend(needles);
        refused(&mut from_faiss(&dir.join(name), &out), &out, &n);
    }
    // Truncated anywhere, an IndexPQ is refused, never read short.
    let bytes = std::fs::read(dir.join("pq.index")).unwrap();
    for cut in [3, 30, 60, bytes.len() - 1] {
        std::fs::write(dir.join("cut.index"), &bytes[..cut]).unwrap();
        refused(
            &mut from_faiss(&dir.join("cut.index"), &out),
            &out,
            &["cut.index"],
        );
    }
    std::fs::write(dir.join("notes.index"), "d=16 M=4\n").unwrap();
    refused(
        &mut from_faiss(&dir.join("notes.index"), &out),
        &out,
        &["notes.index is a text file"],
    );
}

// -------------------------------------------------------------------------------- weights

fn forward(weights: &Path, arch: &str, dir: &Path) -> Command {
    let mut c = stage("remind-backbone");
    c.args([
        "forward",
        "--arch",
        arch,
        "--width",
        "8",
        "--num-classes",
        "4",
    ])
    .args(["--device", "cpu", "--threads", "1"])
    .arg("--weights")
    .arg(weights)
    .arg("--input")
    .arg(dir.join("input.safetensors"))
    .arg("--output")
    .arg(dir.join("output.safetensors"));
    c
}

/// From the tests' ResNet-18 (width 8): the input tensor; safetensors with the names under
/// `module.` (DataParallel) and `model.module.` (a Lightning module around it); a
/// `torch.save`d training checkpoint `{"state_dict": ..., "epoch": ...}`; a features file.
const WEIGHTS_WRITER: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
d = sys.argv[1]
sd = load_file(f"{d}/bb.safetensors")
torch.manual_seed(0)
save_file({"input": torch.rand(1, 3, 32, 32)}, f"{d}/input.safetensors")
save_file({f"module.{k}": v for k, v in sd.items()}, f"{d}/dp.safetensors")
save_file({f"model.module.{k}": v for k, v in sd.items()}, f"{d}/lightning.safetensors")
torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, f"{d}/ckpt.pth")
save_file({"features": torch.zeros(4, 8)}, f"{d}/features.safetensors")
"#;

#[test]
fn torch_state_dicts_wrapped_or_prefixed_are_read() {
    let dir = scratch("formats_binary_weights_read");
    init_test_backbone(&dir.join("bb.safetensors"));
    run_python(WEIGHTS_WRITER, &[s(&dir)]);
    run_ok(&mut forward(&dir.join("bb.safetensors"), "resnet18", &dir));
    let reference = std::fs::read(dir.join("output.safetensors")).unwrap();
    for name in ["dp.safetensors", "lightning.safetensors"] {
        run_ok(&mut forward(&dir.join(name), "resnet18", &dir));
        assert_eq!(
            std::fs::read(dir.join("output.safetensors")).unwrap(),
            reference,
            "{name}"
        );
    }
    // A torch.save()d checkpoint is refused with the converter, which reads it.
    std::fs::remove_file(dir.join("output.safetensors")).unwrap();
    refused(
        &mut forward(&dir.join("ckpt.pth"), "resnet18", &dir),
        &dir.join("output.safetensors"),
        &[
            "ckpt.pth",
            "a PyTorch checkpoint (torch.save's zip archive",
            "scripts/convert_weights.py",
        ],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert_weights.py");
    let converted = dir.join("ckpt.safetensors");
    run_ok(
        remind_e2e::python()
            .arg(script)
            .arg(dir.join("ckpt.pth"))
            .arg(&converted),
    );
    run_ok(&mut forward(&converted, "resnet18", &dir));
    assert_eq!(
        std::fs::read(dir.join("output.safetensors")).unwrap(),
        reference
    );
}

#[test]
fn weights_of_another_network_or_not_weights_are_refused() {
    let dir = scratch("formats_binary_weights_refuse");
    init_test_backbone(&dir.join("bb.safetensors"));
    run_python(WEIGHTS_WRITER, &[s(&dir)]);
    let out = dir.join("output.safetensors");
    let r50 = dir.join("r50.safetensors");
    run_ok(
        stage("remind-backbone")
            .args([
                "init",
                "--arch",
                "resnet50",
                "--width",
                "8",
                "--num-classes",
                "4",
            ])
            .arg("--out")
            .arg(&r50),
    );
    refused(
        &mut forward(&r50, "resnet18", &dir),
        &out,
        &[
            "r50.safetensors",
            "weights of resnet50 (bottleneck blocks 3-4-6-3)",
            "the model is resnet18 (basic blocks 2-2-2-2)",
            "--arch",
        ],
    );
    refused(
        &mut forward(&dir.join("features.safetensors"), "resnet18", &dir),
        &out,
        &[
            "features.safetensors",
            "holds none of the model's",
            "'features' [4, 8]",
        ],
    );
    std::fs::write(dir.join("notes.safetensors"), "trained for 3 epochs\n").unwrap();
    refused(
        &mut forward(&dir.join("notes.safetensors"), "resnet18", &dir),
        &out,
        &[
            "notes.safetensors",
            "not a valid safetensors file: it is a text file",
        ],
    );
    std::fs::copy(dir.join("ckpt.pth"), dir.join("renamed.safetensors")).unwrap();
    refused(
        &mut forward(&dir.join("renamed.safetensors"), "resnet18", &dir),
        &out,
        &[
            "renamed.safetensors",
            "a PyTorch checkpoint",
            "convert_weights.py",
        ],
    );
}

// ------------------------------------------------------------------------------------ npy

fn import_npy(dir: &Path, feats: &Path, ids: &Path, out: &Path) -> Command {
    let mut c = stage("remind-import-gensen");
    c.arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--npy")
        .arg(feats)
        .arg("--npy-ids")
        .arg(ids)
        .arg("--questions")
        .arg(questions_table(dir))
        .arg("--out")
        .arg(out);
    c
}

/// Features `qid + c / 1024` (5 wide) of `qids`, in the layout `kind` names, and the ids.
const NPY_WRITER: &str = r#"
import sys, json, pickle, numpy as np
from numpy.lib import format as fmt
feats, ids, kind, qids = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
q = np.array(qids, dtype="<i8")
x = (q.astype(np.float64)[:, None] + np.arange(5)[None, :] / 1024.0).astype("<f4")
if kind in ("v1", "v2", "v3"):
    with open(feats, "wb") as f:
        fmt.write_array(f, x, version=(int(kind[1]), 0))
    np.save(ids, q)
elif kind == "fortran":
    np.save(feats, np.asfortranarray(x)); np.save(ids, q)
elif kind == "big-endian":
    np.save(feats, x.astype(">f4")); np.save(ids, q.astype(">i8"))
elif kind == "npz":
    np.savez(feats, feats=x); np.save(ids, q)
    import os; os.replace(feats + ".npz", feats)
elif kind == "object":
    np.save(feats, np.array([{"q": 1}, None], dtype=object), allow_pickle=True); np.save(ids, q)
elif kind == "pickle":
    pickle.dump(x, open(feats, "wb")); np.save(ids, q)
"#;

fn write_npy(feats: &Path, ids: &Path, kind: &str) {
    let qids: Vec<u64> = QUESTIONS.iter().map(|q| q.0).collect();
    run_python(
        NPY_WRITER,
        &[
            s(feats),
            s(ids),
            kind,
            &serde_json::to_string(&qids).unwrap(),
        ],
    );
}

#[test]
fn npy_versions_fortran_order_and_big_endian_are_read() {
    let dir = scratch("formats_binary_npy_read");
    for kind in ["v1", "v2", "v3", "fortran", "big-endian"] {
        let (feats, ids) = (
            dir.join(format!("{kind}.npy")),
            dir.join(format!("{kind}_ids.npy")),
        );
        write_npy(&feats, &ids, kind);
        let out = dir.join(format!("{kind}.arrow"));
        run_ok(&mut import_npy(&dir, &feats, &ids, &out));
        let ds = TensorDataset::open(&out, "question_features").unwrap();
        let want: Vec<u64> = QUESTIONS.iter().map(|q| q.0).collect();
        assert_eq!(ds.ids().unwrap(), want, "{kind}");
        for (row, &qid) in want.iter().enumerate() {
            let v = ds.row_f32(row).unwrap();
            for (c, &value) in v.iter().enumerate() {
                let expected = (qid as f64 + c as f64 / 1024.0) as f32;
                assert_eq!(value, expected, "{kind}: question {qid}, feature {c}");
            }
        }
    }
}

#[test]
fn npz_archives_and_pickled_arrays_are_refused() {
    let dir = scratch("formats_binary_npy_refuse");
    let out = dir.join("out.arrow");
    for (kind, needles) in [
        (
            "npz",
            vec!["an .npz archive", "numpy.load(PATH)[name]", "numpy.save"],
        ),
        ("object", vec!["an array of Python objects", "numeric"]),
        ("pickle", vec!["a Python pickle", "not an .npy file"]),
    ] {
        let (feats, ids) = (dir.join(format!("{kind}.npy")), dir.join("ids.npy"));
        write_npy(&feats, &ids, kind);
        let mut n = vec![feats.file_name().unwrap().to_str().unwrap()];
        n.extend(needles);
        refused(&mut import_npy(&dir, &feats, &ids, &out), &out, &n);
    }
}

// ------------------------------------------------------------------------------------ IDX

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const LABELS: [u8; 6] = [0, 1, 2, 0, 1, 2];

/// An IDX folder under the names `names` (train images, train labels, t10k images, t10k
/// labels; gzipped when the name ends in .gz, in any case).
fn write_idx(dir: &Path, names: [&str; 4]) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let images = encode_images(3, 2, &(0..36).collect::<Vec<u8>>());
    let labels = encode_labels(&LABELS);
    for (name, bytes) in names.iter().zip([&images, &labels, &images, &labels]) {
        let bytes = if name.to_ascii_lowercase().ends_with(".gz") {
            gzip(bytes)
        } else {
            bytes.clone()
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir.to_path_buf()
}

fn import_idx(idx: &Path, out: &Path) -> Command {
    let mut c = stage("remind-import-images");
    c.arg("--idx")
        .arg(idx)
        .arg("--out")
        .arg(out)
        .arg("--run-dir")
        .arg(out.with_file_name("run"));
    c
}

#[test]
fn idx_files_under_other_distributions_names_are_read() {
    let dir = scratch("formats_binary_idx_read");
    let idx = write_idx(
        &dir.join("idx"),
        [
            "train-images.idx3-ubyte",
            "TRAIN-LABELS-IDX1-UBYTE.GZ",
            "t10k-images-idx3-ubyte.gz",
            "T10K-LABELS.IDX1-UBYTE",
        ],
    );
    let out = dir.join("out");
    run_ok(&mut import_idx(&idx, &out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap()).unwrap();
    assert_eq!(report["splits"]["train"]["available"], 6, "{report}");
}

#[test]
fn idx_files_of_the_wrong_kind_are_refused() {
    let dir = scratch("formats_binary_idx_refuse");
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let out = dir.join("out");
    let fresh = || write_idx(&dir.join("idx"), names);
    // Labels where images are expected, and the reverse.
    let idx = fresh();
    std::fs::copy(idx.join(names[1]), idx.join(names[0])).unwrap();
    refused(
        &mut import_idx(&idx, &out),
        &out,
        &[
            "train-images-idx3-ubyte",
            "an IDX labels file",
            "is it the labels file?",
        ],
    );
    let idx = fresh();
    std::fs::copy(idx.join(names[2]), idx.join(names[3])).unwrap();
    refused(
        &mut import_idx(&idx, &out),
        &out,
        &[
            "t10k-labels-idx1-ubyte",
            "an IDX images file",
            "is it the images file?",
        ],
    );
    // An IDX file of floats.
    let idx = fresh();
    let mut floats = vec![0, 0, 0x0D, 3];
    for d in [2u32, 3, 2] {
        floats.extend(d.to_be_bytes());
    }
    floats.extend([0u8; 4 * 12]);
    std::fs::write(idx.join(names[0]), floats).unwrap();
    refused(
        &mut import_idx(&idx, &out),
        &out,
        &[
            "train-images-idx3-ubyte",
            "32-bit floats (type 0x0D)",
            "unsigned bytes",
        ],
    );
    // A gzip of something else, under an IDX name.
    let idx = fresh();
    std::fs::remove_file(idx.join(names[2])).unwrap();
    std::fs::write(
        idx.join(format!("{}.gz", names[2])),
        gzip(b"<!DOCTYPE html><html>Not Found</html>"),
    )
    .unwrap();
    refused(
        &mut import_idx(&idx, &out),
        &out,
        &[
            "t10k-images-idx3-ubyte.gz",
            "a gzip file whose content is not IDX",
            "HTML",
        ],
    );
    // A small gzip inflating far beyond its header's size stops at the header's size.
    let idx = fresh();
    let mut long = encode_labels(&LABELS);
    long.extend(vec![0u8; 64 << 20]);
    std::fs::write(idx.join(names[1]), gzip(&long)).unwrap();
    std::fs::rename(idx.join(names[1]), idx.join(format!("{}.gz", names[1]))).unwrap();
    refused(
        &mut import_idx(&idx, &out),
        &out,
        &[
            "train-labels-idx1-ubyte.gz",
            "expected 14 bytes, found more than 14",
        ],
    );
}

// -------------------------------------------------------------------------- image folders

fn extract(images: &Path, weights: &Path, out: &Path) -> Command {
    let mut c = stage("remind-extract-features");
    c.args(["--arch", "resnet18", "--width", "8", "--cut", "layer3"])
        .args(["--image-size", "32", "--device", "cpu", "--threads", "1"])
        .arg("--images")
        .arg(images)
        .arg("--weights")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .arg("--run-dir")
        .arg(out.with_file_name("run"));
    c
}

/// An ImageNet-style folder as cameras and file managers leave it: upper-case extensions,
/// grayscale and RGBA PNGs, `.DS_Store` and `Thumbs.db` beside the images.
fn write_camera_folder(root: &Path) {
    for (split, class) in [
        ("train", "cat"),
        ("train", "dog"),
        ("val", "cat"),
        ("val", "dog"),
    ] {
        let d = root.join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]))
            .save_with_format(d.join("IMG_0001.JPEG"), image::ImageFormat::Jpeg)
            .unwrap();
        image::GrayImage::from_fn(4, 4, |x, _| image::Luma([x as u8 * 60]))
            .save_with_format(d.join("gray.PNG"), image::ImageFormat::Png)
            .unwrap();
        image::RgbaImage::from_fn(3, 3, |x, _| image::Rgba([x as u8 * 80, 0, 9, 128]))
            .save_with_format(d.join("alpha.png"), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(d.join("Thumbs.db"), [0xd0, 0xcf, 0x11, 0xe0]).unwrap();
    }
    std::fs::write(
        root.join("train/.DS_Store"),
        [0, 0, 0, 1, b'B', b'u', b'd', b'1'],
    )
    .unwrap();
}

#[test]
fn image_folders_with_camera_and_file_manager_files_are_read() {
    let dir = scratch("formats_binary_folder_read");
    let root = dir.join("photos");
    write_camera_folder(&root);
    let out = dir.join("labels");
    run_ok(
        stage("remind-import-images")
            .arg("--folder")
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(dir.join("run")),
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap()).unwrap();
    assert_eq!(report["splits"]["train"]["available"], 6, "{report}");
    // Every one of them decodes: 12 feature rows.
    let weights = dir.join("bb.safetensors");
    init_test_backbone(&weights);
    let feats = dir.join("features");
    run_ok(&mut extract(&root, &weights, &feats));
    let ds = TensorDataset::open(&feats, "features").unwrap();
    assert_eq!(ds.ids().unwrap().len(), 12);
}

#[test]
fn image_folders_with_non_images_or_no_classes_are_refused() {
    let dir = scratch("formats_binary_folder_refuse");
    let root = dir.join("photos");
    write_camera_folder(&root);
    // A saved error page under an image name: the import lists by name (it decodes
    // nothing); feature extraction refuses it, naming the file and what it is.
    std::fs::write(
        root.join("val/dog/download.jpg"),
        "<!DOCTYPE html><html><body>403 Forbidden</body></html>",
    )
    .unwrap();
    let weights = dir.join("bb.safetensors");
    init_test_backbone(&weights);
    let feats = dir.join("features");
    refused(
        &mut extract(&root, &weights, &feats),
        &feats.join("part-00000-of-00001.arrow"),
        &[
            "val/dog/download.jpg",
            "cannot decode image",
            "it is an HTML page",
        ],
    );
    let left: Vec<_> = std::fs::read_dir(&feats).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "written despite the error: {left:?}");
    // Images straight under train/ and val/, without class folders.
    let flat = dir.join("flat");
    for split in ["train", "val"] {
        std::fs::create_dir_all(flat.join(split)).unwrap();
        image::GrayImage::new(2, 2)
            .save(flat.join(split).join("a.png"))
            .unwrap();
    }
    let out = dir.join("labels");
    refused(
        stage("remind-import-images")
            .arg("--folder")
            .arg(&flat)
            .arg("--out")
            .arg(&out)
            .arg("--run-dir")
            .arg(dir.join("run")),
        &out,
        &["flat/train: no class folders"],
    );
}
