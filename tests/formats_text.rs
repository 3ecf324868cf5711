//! End to end: text and JSON inputs as other tools and editors write them (issue #13 and
//! the shared cases 01, 10 and 12), read as the data they carry; files of a related but
//! different kind, and sources that yield nothing, refused with a named error and nothing
//! written.

use std::path::Path;
use std::process::Command;

use arrow::array::{Array, Int64Array, StringArray};
use remind::artifact::Table;
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};
use serde_json::{json, Value};

fn strings(t: &Table, col: &str) -> Vec<String> {
    let a = t.column::<StringArray>(col).unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn import_questions(clevr: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = stage("remind-import-questions");
    cmd.arg("--clevr-dir")
        .arg(clevr)
        .arg("--out")
        .arg(out)
        .arg("--run-dir")
        .arg(out.with_extension("run"))
        .args(extra);
    cmd
}

/// Writes `questions/CLEVR_{train,val}_questions.json` under `root`: three questions per
/// split, answers as given (JSON values), program nodes keyed `key` (`function` in the
/// released files, `type` in clevr-dataset-gen's output).
fn write_clevr_questions(root: &Path, key: &str, answers: [Value; 3]) {
    let programs = [
        vec!["scene", "filter_material", "count"],
        vec!["scene", "filter_shape", "exist"],
        vec!["scene", "filter_shape", "unique", "query_color"],
    ];
    let texts = [
        "How many metal things are there?",
        "Are there any cubes?",
        "What color is the sphere?",
    ];
    std::fs::create_dir_all(root.join("questions")).unwrap();
    for split in ["train", "val"] {
        let questions: Vec<Value> = (0..3)
            .map(|i| {
                let nodes: Vec<Value> = programs[i]
                    .iter()
                    .enumerate()
                    .map(|(k, f)| json!({ key: f, "inputs": if k == 0 { vec![] } else { vec![k - 1] }, "value_inputs": [] }))
                    .collect();
                json!({"split": split, "image_index": i / 2, "question_index": i,
                       "image_filename": format!("CLEVR_{split}_{:06}.png", i / 2),
                       "question": texts[i], "program": nodes, "answer": answers[i].clone()})
            })
            .collect();
        std::fs::write(
            root.join(format!("questions/CLEVR_{split}_questions.json")),
            serde_json::to_vec(&json!({"info": {"split": split}, "questions": questions})).unwrap(),
        )
        .unwrap();
    }
}

/// Case 01: questions as CLEVR's own generator writes them (answers `2`, `true`; nodes keyed
/// `type`) import to the same tables as the released spelling (`"2"`, `"yes"`).
#[test]
fn clevr_generator_answers_import_as_the_released_strings() {
    let dir = scratch("formats_text_clevr_answers");
    let generated = dir.join("generated");
    let released = dir.join("released");
    write_clevr_questions(&generated, "type", [json!(2), json!(true), json!("red")]);
    write_clevr_questions(
        &released,
        "function",
        [json!("2"), json!("yes"), json!("red")],
    );
    let mut tables = Vec::new();
    for root in [&generated, &released] {
        let out = root.join("out");
        run_ok(&mut import_questions(root, &out, &[]));
        let q = Table::read(&out.join("questions.parquet"), "questions").unwrap();
        let answers = Table::read(&out.join("answers.parquet"), "vocabulary").unwrap();
        let ids = q.column::<Int64Array>("answer_id").unwrap();
        let table = strings(&answers, "token");
        let per_question: Vec<String> = (0..ids.len())
            .map(|i| table[ids.value(i) as usize].clone())
            .collect();
        tables.push((per_question, table));
    }
    assert_eq!(tables[0], tables[1]);
    assert_eq!(tables[0].0, ["2", "yes", "red", "2", "yes", "red"]);

    // False is "no"; an answer of another JSON type is refused, naming the question.
    write_clevr_questions(&generated, "type", [json!(0), json!(false), json!(1.5)]);
    let err = run_fail(&mut import_questions(&generated, &dir.join("bad"), &[]));
    assert!(err.contains("CLEVR_train_questions.json"), "{err}");
    assert!(!dir.join("bad").exists());
}

/// Files of a related kind in the questions' place: a scenes file, an annotations file.
#[test]
fn clevr_and_tdiuc_files_of_another_kind_are_named() {
    let dir = scratch("formats_text_question_kinds");
    let clevr = dir.join("clevr");
    std::fs::create_dir_all(clevr.join("questions")).unwrap();
    for split in ["train", "val"] {
        std::fs::write(
            clevr.join(format!("questions/CLEVR_{split}_questions.json")),
            r#"{"info": {}, "scenes": [{"image_index": 0, "objects": []}]}"#,
        )
        .unwrap();
    }
    let err = run_fail(&mut import_questions(&clevr, &dir.join("out"), &[]));
    assert!(err.contains("this is a CLEVR scenes file"), "{err}");

    // TDIUC: the two files swapped.
    let tdiuc = dir.join("tdiuc");
    for sub in ["Questions", "Annotations"] {
        std::fs::create_dir_all(tdiuc.join(sub)).unwrap();
    }
    for infix in ["train2014", "val2014"] {
        std::fs::write(
            tdiuc.join(format!("Questions/OpenEnded_mscoco_{infix}_questions.json")),
            r#"{"annotations": []}"#,
        )
        .unwrap();
        std::fs::write(
            tdiuc.join(format!("Annotations/mscoco_{infix}_annotations.json")),
            r#"{"questions": []}"#,
        )
        .unwrap();
    }
    let mut cmd = stage("remind-import-questions");
    cmd.arg("--tdiuc-dir")
        .arg(&tdiuc)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--run-dir")
        .arg(dir.join("run"));
    let err = run_fail(&mut cmd);
    assert!(
        err.contains("this is an annotations file") && err.contains("questions.json"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
}

/// Word vectors: word2vec's text format and a Windows-saved GloVe file are read; a file
/// matching no vocabulary word is refused.
#[test]
fn word_vector_variants_and_an_empty_match() {
    let dir = scratch("formats_text_glove");
    let clevr = dir.join("clevr");
    write_clevr_questions(&clevr, "function", [json!("2"), json!("yes"), json!("red")]);
    let words = [
        "how", "many", "metal", "things", "are", "there", "any", "cubes",
    ];
    let mut vectors = Vec::new();
    let variants: [(&str, Vec<u8>); 2] = [
        ("w2v.txt", {
            let mut t = format!("{} 2\n", words.len());
            for (i, w) in words.iter().enumerate() {
                t.push_str(&format!("{w} {i} 0.5\n"));
            }
            t.into_bytes()
        }),
        ("windows.txt", {
            let mut t = "\u{feff}".to_string();
            for (i, w) in words.iter().enumerate() {
                t.push_str(&format!("{w} {i} 0.5 \r\n"));
            }
            t.into_bytes()
        }),
    ];
    for (name, bytes) in variants {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = dir.join(format!("out-{name}"));
        run_ok(&mut import_questions(
            &clevr,
            &out,
            &["--glove", path.to_str().unwrap()],
        ));
        let report: Value =
            serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap())
                .unwrap();
        let wv = &report["word_vectors"];
        assert_eq!(wv["dim"], 2, "{name}: {wv}");
        vectors.push(wv["found"].clone());
    }
    assert_eq!(vectors[0], vectors[1]);
    assert!(vectors[0].as_u64().unwrap() >= 6, "{vectors:?}");

    let foreign = dir.join("foreign.txt");
    std::fs::write(&foreign, "der 1 2\nkatze 3 4\n").unwrap();
    let out = dir.join("out-foreign");
    let err = run_fail(&mut import_questions(
        &clevr,
        &out,
        &["--glove", foreign.to_str().unwrap()],
    ));
    assert!(err.contains("none of the vocabulary's"), "{err}");
    assert!(!out.exists());
}

/// Case 10: a gensen HDF5 file whose `feats` was created but never written, or written for
/// the first chunk only, is refused naming the file, the dataset and the first question ids
/// never written.
#[test]
fn gensen_rows_never_written_are_refused() {
    let dir = scratch("formats_text_gensen_unwritten");
    let clevr = dir.join("clevr");
    write_clevr_questions(&clevr, "function", [json!("2"), json!("yes"), json!("red")]);
    let q = dir.join("q");
    run_ok(&mut import_questions(&clevr, &q, &[]));
    run_python(
        r#"
import sys
import numpy as np, h5py
d = sys.argv[1]
for name, done in (("never-written.h5", 0), ("partly-written.h5", 1), ("written.h5", 3)):
    with h5py.File(f"{d}/{name}", "w") as f:
        feats = f.create_dataset("feats", (3, 8), dtype=np.float32, chunks=(1, 8))
        f.create_dataset("qids", (3,), dtype=np.int64)[:] = np.arange(3)
        if done:
            feats[:done] = np.random.default_rng(0).standard_normal((done, 8)).astype(np.float32)
"#,
        &[dir.to_str().unwrap()],
    );
    // `remind-import-gensen` of the train split into `out/<out>`, reading `source`.
    let gensen = |source: &[&std::ffi::OsStr], out: &str| {
        let mut cmd = stage("remind-import-gensen");
        cmd.args(source)
            .arg("--questions")
            .arg(q.join("questions.parquet"))
            .args(["--split", "train", "--out"])
            .arg(dir.join("out").join(out))
            .arg("--run-dir")
            .arg(dir.join("run"));
        cmd
    };
    let import = |name: &str| {
        let h5 = dir.join(name);
        gensen(&["--h5".as_ref(), h5.as_os_str()], &format!("{name}.arrow"))
    };
    let err = run_fail(&mut import("never-written.h5"));
    assert!(
        err.contains("never-written.h5: dataset 'feats': 3 of the 3 rows")
            && err.contains("never written")
            && err.contains("0 (row 0), 1 (row 1), 2 (row 2)"),
        "{err}"
    );
    let err = run_fail(&mut import("partly-written.h5"));
    assert!(
        err.contains("partly-written.h5: dataset 'feats': 2 of the 3 rows")
            && err.contains("First question ids: 1 (row 1), 2 (row 2)"),
        "{err}"
    );
    assert!(!dir.join("out/never-written.h5.arrow").exists());
    assert!(!dir.join("out/partly-written.h5.arrow").exists());
    run_ok(&mut import("written.h5"));
    assert!(dir.join("out/written.h5.arrow").exists());

    // The ids of a .npy import as a Windows editor saves a list: BOM, CRLF, no final newline.
    run_python(
        "import sys, numpy as np\nnp.save(sys.argv[1], np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))",
        &[dir.join("f.npy").to_str().unwrap()],
    );
    std::fs::write(dir.join("ids.txt"), b"\xEF\xBB\xBF2\r\n0\r\n1").unwrap();
    let (npy, ids) = (dir.join("f.npy"), dir.join("ids.txt"));
    run_ok(&mut gensen(
        &[
            "--npy".as_ref(),
            npy.as_os_str(),
            "--npy-ids".as_ref(),
            ids.as_os_str(),
        ],
        "npy.arrow",
    ));
}

fn png(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([value, 0, 0]))
        .save(path)
        .unwrap();
}

/// `remind-import-images` of the folder `root` with the class order `order` into `out`.
fn import_folder_cmd(root: &Path, order: &Path, out: &Path, config: Option<&Path>) -> Command {
    let mut cmd = stage("remind-import-images");
    cmd.arg("--folder")
        .arg(root)
        .arg("--class-order")
        .arg(order)
        .args(["--base-classes", "1", "--out"])
        .arg(out)
        .arg("--run-dir")
        .arg(out.with_extension("run"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd
}

/// [`import_folder_cmd`], which must succeed; returns the class order it wrote.
fn import_folder(root: &Path, order: &Path, out: &Path, config: Option<&Path>) -> String {
    run_ok(&mut import_folder_cmd(root, order, out, config));
    std::fs::read_to_string(out.join("class_order.txt")).unwrap()
}

/// Case 12: a class-order file saved with a byte-order mark and CRLF (or CR) line ends
/// reads as the classes it names; so does a YAML pipeline file saved the same way.
#[test]
fn class_orders_and_yaml_saved_by_windows_editors() {
    let dir = scratch("formats_text_class_order");
    let root = dir.join("imagenet");
    for split in ["train", "val"] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            png(&root.join(split).join(class).join("0.png"), c as u8 * 100);
        }
    }
    let variants: [(&str, &[u8]); 3] = [
        ("bom-crlf.txt", b"\xEF\xBB\xBFdog\r\ncat\r\n"),
        ("cr.txt", b"dog\rcat"),
        ("plain.txt", b"dog\ncat\n"),
    ];
    for (name, bytes) in variants {
        let order = dir.join(name);
        std::fs::write(&order, bytes).unwrap();
        let written = import_folder(&root, &order, &dir.join(format!("out-{name}")), None);
        assert_eq!(
            written.lines().collect::<Vec<_>>(),
            ["dog", "cat"],
            "{name}"
        );
    }
    // UTF-16 (Notepad's "Unicode") is refused naming the encoding, nothing written.
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("dog\r\ncat\r\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let order = dir.join("utf16.txt");
    std::fs::write(&order, utf16).unwrap();
    let out = dir.join("out-utf16");
    let err = run_fail(&mut import_folder_cmd(&root, &order, &out, None));
    assert!(
        err.contains("utf16.txt") && err.contains("UTF-16 (little-endian)"),
        "{err}"
    );
    assert!(!out.exists());

    // A pipeline file with a BOM and CRLF line ends.
    let config = dir.join("pipeline.yaml");
    std::fs::write(
        &config,
        b"\xEF\xBB\xBF# saved by Notepad\r\nimport_images:\r\n  base_classes: 1\r\n",
    )
    .unwrap();
    let order = dir.join("plain.txt");
    let written = import_folder(&root, &order, &dir.join("out-yaml"), Some(&config));
    assert_eq!(written.lines().collect::<Vec<_>>(), ["dog", "cat"]);
}
