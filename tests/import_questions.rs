//! End to end: `remind-import-questions` on a generated mini-CLEVR and on a small
//! TDIUC-format fixture written here; malformed input fails naming the file and line.

use std::path::Path;

use arrow::array::{Array, Int32Array, Int64Array, ListArray, StringArray, UInt64Array};
use remind::artifact::{Table, TensorFile};
use remind_e2e::{run_fail, run_ok, run_python, scratch, stage};
use serde_json::{json, Value};

fn import(args: &[&str], dir_flag: &str, data: &Path, out: &Path, run_dir: &Path) {
    run_ok(
        stage("remind-import-questions")
            .arg(dir_flag)
            .arg(data)
            .arg("--out")
            .arg(out)
            .arg("--run-dir")
            .arg(run_dir)
            .args(args),
    );
}

fn strings(t: &Table, col: &str) -> Vec<String> {
    let a = t.column::<StringArray>(col).unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

#[test]
fn imports_generated_mini_clevr() {
    let dir = scratch("import_questions_clevr");
    let (data, out, run_dir) = (dir.join("clevr"), dir.join("out"), dir.join("run"));
    run_ok(
        stage("remind-generate-clevr")
            .args(["--size", "tiny", "--seed", "11", "--out"])
            .arg(&data)
            .arg("--run-dir")
            .arg(&run_dir),
    );
    import(&[], "--clevr-dir", &data, &out, &run_dir);

    let questions = Table::read(&out.join("questions.parquet"), "questions").unwrap();
    assert_eq!(questions.num_rows(), 600);
    let splits = strings(&questions, "split");
    assert_eq!(splits.iter().filter(|s| *s == "train").count(), 400);
    assert_eq!(splits.iter().filter(|s| *s == "val").count(), 200);
    let qtype = questions.column::<Int32Array>("question_type").unwrap();
    let mut per_type = [0usize; 5];
    for t in qtype.values() {
        per_type[*t as usize] += 1;
    }
    assert!(per_type.iter().all(|&n| n >= 100), "{per_type:?}");
    let ids = questions.column::<UInt64Array>("question_id").unwrap();
    let mut sorted: Vec<u64> = ids.values().to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 600, "question ids are not unique");
    assert_eq!(
        ids.value(400),
        1_000_000_000,
        "val ids start at the val offset"
    );
    let answer_ids = questions.column::<Int64Array>("answer_id").unwrap();
    assert!(answer_ids.values().iter().all(|&a| (0..28).contains(&a)));
    let tokens = questions.column::<ListArray>("tokens").unwrap();
    let lengths = questions.column::<Int32Array>("length").unwrap();
    for i in 0..questions.num_rows() {
        assert_eq!(tokens.value(i).len() as i32, lengths.value(i));
        assert!(lengths.value(i) > 0 && lengths.value(i) <= 45);
    }

    let answers = Table::read(&out.join("answers.parquet"), "vocabulary").unwrap();
    assert_eq!(answers.num_rows(), 28);
    let vocab = Table::read(&out.join("vocabulary.parquet"), "vocabulary").unwrap();
    assert_eq!(&strings(&vocab, "token")[..2], ["<pad>", "<unk>"]);
    let types = Table::read(&out.join("question_types.parquet"), "vocabulary").unwrap();
    assert_eq!(
        strings(&types, "token"),
        [
            "count",
            "exist",
            "compare_integer",
            "compare_attribute",
            "query_attribute"
        ]
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap()).unwrap();
    assert_eq!(report["answers"], 28);
    assert_eq!(report["splits"]["val"]["unknown_answers"], 0);
    assert_eq!(report["splits"]["train"]["questions"], 400);

    // The same row seen from Python, against the source JSON.
    let source: Value = serde_json::from_slice(
        &std::fs::read(data.join("questions/CLEVR_val_questions.json")).unwrap(),
    )
    .unwrap();
    let q3 = &source["questions"][3];
    let py = run_python(
        "import sys, json, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1]).to_pylist()\n\
         row = [r for r in t if r['split'] == 'val'][3]\n\
         print(json.dumps(row))",
        &[out.join("questions.parquet").to_str().unwrap()],
    );
    let row: Value = serde_json::from_str(py.trim()).unwrap();
    assert_eq!(row["text"], q3["question"]);
    assert_eq!(row["answer"], q3["answer"]);
    assert_eq!(row["image_id"], q3["image_index"]);
    assert_eq!(
        row["question_id"].as_u64().unwrap(),
        1_000_000_000 + q3["question_index"].as_u64().unwrap()
    );
    assert_eq!(
        row["tokens"].as_array().unwrap().len() as u64,
        row["length"].as_u64().unwrap()
    );

    let manifest = std::fs::read_to_string(run_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("import-questions"), "{manifest}");
}

#[test]
fn malformed_input_fails_naming_file_and_line() {
    let dir = scratch("import_questions_bad");
    let data = dir.join("clevr");
    std::fs::create_dir_all(data.join("questions")).unwrap();
    let good = json!({"info": {}, "questions": [{
        "question": "Are there any cubes?", "answer": "yes", "image_index": 0,
        "question_index": 0, "split": "train", "image_filename": "CLEVR_train_000000.png",
        "question_family_index": 3,
        "program": [{"function": "scene", "inputs": [], "value_inputs": []},
                    {"function": "filter_shape", "inputs": [0], "value_inputs": ["cube"]},
                    {"function": "exist", "inputs": [1], "value_inputs": []}]}]});
    std::fs::write(
        data.join("questions/CLEVR_train_questions.json"),
        serde_json::to_vec_pretty(&good).unwrap(),
    )
    .unwrap();
    let val = data.join("questions/CLEVR_val_questions.json");
    std::fs::write(
        &val,
        "{\"info\": {},\n \"questions\": [\n  {\"question\": \"x\" \"answer\": \"no\"}\n]}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut cmd = stage("remind-import-questions");
    cmd.arg("--clevr-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--run-dir")
        .arg(dir.join("run"));
    let err = run_fail(&mut cmd);
    assert!(
        err.contains("CLEVR_val_questions.json") && err.contains("line 3"),
        "{err}"
    );
    assert!(
        !out.join("questions.parquet").exists(),
        "half-written output"
    );

    // A question without its answer is named by position.
    let mut missing = good.clone();
    missing["questions"][0]
        .as_object_mut()
        .unwrap()
        .remove("answer");
    std::fs::write(&val, serde_json::to_vec(&missing).unwrap()).unwrap();
    let err = run_fail(&mut cmd);
    assert!(
        err.contains("CLEVR_val_questions.json") && err.contains("question 0 has no 'answer'"),
        "{err}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0);
}

/// Writes a TDIUC-layout split: Questions/OpenEnded_mscoco_{sub}_questions.json and
/// Annotations/mscoco_{sub}_annotations.json.
fn write_tdiuc_split(root: &Path, sub: &str, rows: &[(u64, u64, &str, &str, &str)]) {
    let questions: Vec<Value> = rows
        .iter()
        .map(
            |(qid, img, text, _, _)| json!({"question_id": qid, "image_id": img, "question": text}),
        )
        .collect();
    let annotations: Vec<Value> = rows
        .iter()
        .map(|(qid, img, _, qtype, answer)| {
            json!({"question_id": qid, "image_id": img, "question_type": qtype,
                   "ans_source": "generation",
                   "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": 1}]})
        })
        .collect();
    std::fs::create_dir_all(root.join("Questions")).unwrap();
    std::fs::create_dir_all(root.join("Annotations")).unwrap();
    std::fs::write(
        root.join(format!("Questions/OpenEnded_mscoco_{sub}_questions.json")),
        serde_json::to_vec(&json!({"task_type": "Open-Ended", "data_subtype": sub,
                                   "questions": questions}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("Annotations/mscoco_{sub}_annotations.json")),
        serde_json::to_vec(&json!({"data_subtype": sub, "annotations": annotations})).unwrap(),
    )
    .unwrap();
}

#[test]
fn imports_a_tdiuc_format_fixture() {
    let dir = scratch("import_questions_tdiuc");
    let data = dir.join("tdiuc");
    let long = "Is there a dog or a cat or a bird or a horse or a sheep or a cow or an \
                elephant or a bear or a zebra or a giraffe in the picture?";
    write_tdiuc_split(
        &data,
        "train2014",
        &[
            (9001, 9, "What color is the man's shirt?", "color", "Blue"),
            (9002, 9, "How many dogs are there?", "counting", "2"),
            (1001, 1, "Is there a cat?", "object_presence", "yes"),
            (
                1002,
                1,
                "What sport is being played?",
                "sport_recognition",
                "tennis",
            ),
            (1003, 1, long, "object_presence", "yes"),
        ],
    );
    write_tdiuc_split(
        &data,
        "val2014",
        &[
            (5001, 5, "What is the giraffe's color?", "color", "brown"),
            (5002, 5, "What is on the table?", "absurd", "doesnotapply"),
        ],
    );
    let (out, run_dir) = (dir.join("out"), dir.join("run"));
    import(&[], "--tdiuc-dir", &data, &out, &run_dir);

    let q = Table::read(&out.join("questions.parquet"), "questions").unwrap();
    assert_eq!(q.num_rows(), 7);
    assert_eq!(
        q.column::<UInt64Array>("question_id")
            .unwrap()
            .values()
            .to_vec(),
        [9001, 9002, 1001, 1002, 1003, 5001, 5002]
    );
    assert_eq!(
        q.column::<Int32Array>("question_type")
            .unwrap()
            .values()
            .to_vec(),
        // Ids in the sorted list of TDIUC's 12 types.
        [3, 4, 5, 10, 5, 3, 0]
    );
    assert_eq!(strings(&q, "answer")[0], "blue");
    let lengths = q.column::<Int32Array>("length").unwrap();
    assert_eq!(
        lengths.value(4),
        30,
        "TDIUC questions are capped at 30 tokens"
    );
    let answer_ids = q.column::<Int64Array>("answer_id").unwrap();
    assert_eq!(answer_ids.value(5), -1, "'brown' is not a training answer");
    assert_eq!(answer_ids.value(6), -1);

    let types = Table::read(&out.join("question_types.parquet"), "vocabulary").unwrap();
    let names = strings(&types, "token");
    assert_eq!(names.len(), 12);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    let counts = types.column::<UInt64Array>("count").unwrap();
    assert_eq!(counts.value(5), 2, "two object_presence questions in train");

    let answers = Table::read(&out.join("answers.parquet"), "vocabulary").unwrap();
    assert_eq!(strings(&answers, "token"), ["yes", "2", "blue", "tennis"]);
    let vocab = strings(
        &Table::read(&out.join("vocabulary.parquet"), "vocabulary").unwrap(),
        "token",
    );
    assert!(vocab.contains(&"'s".to_string()) && vocab.contains(&"man".to_string()));
    assert!(!vocab.iter().any(|t| t.contains('?') || t.contains(',')));

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap()).unwrap();
    assert_eq!(report["dataset"], "tdiuc");
    assert_eq!(report["max_length"], 30);
    assert_eq!(report["splits"]["val"]["unknown_answers"], 2);
    assert_eq!(report["splits"]["train"]["truncated"], 1);

    // With GloVe vectors: one row per vocabulary index, zeros where GloVe has no word.
    let glove = dir.join("glove.txt");
    std::fs::write(&glove, "the 0.5 1 -1\nMan 9 9 9\nman 1 2 3\nzebra 4 4 4\n").unwrap();
    let out_glove = dir.join("out_glove");
    import(
        &["--glove", glove.to_str().unwrap()],
        "--tdiuc-dir",
        &data,
        &out_glove,
        &run_dir,
    );
    let wv = TensorFile::open(&out_glove.join("word_vectors.arrow"), "word_vectors").unwrap();
    assert_eq!(wv.len(), vocab.len());
    assert_eq!(wv.shape(), [3]);
    let man = vocab.iter().position(|t| t == "man").unwrap();
    assert_eq!(wv.row_f32(man).unwrap(), [1.0, 2.0, 3.0]);
    assert_eq!(wv.row_f32(0).unwrap(), [0.0, 0.0, 0.0]);
    let report: Value =
        serde_json::from_slice(&std::fs::read(out_glove.join("import_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["word_vectors"]["found"], 3);
    std::fs::write(&glove, "the 0.5 1 -1\nman 1 2\n").unwrap();
    let err = run_fail(
        stage("remind-import-questions")
            .arg("--tdiuc-dir")
            .arg(&data)
            .arg("--glove")
            .arg(&glove)
            .arg("--out")
            .arg(dir.join("out_bad_glove")),
    );
    assert!(err.contains("glove.txt: line 2"), "{err}");
    assert!(!dir.join("out_bad_glove").exists(), "half-written output");

    // An unknown question type is refused, naming the annotation file.
    write_tdiuc_split(
        &data,
        "val2014",
        &[(5001, 5, "What is it?", "weather", "sunny")],
    );
    let err = run_fail(
        stage("remind-import-questions")
            .arg("--tdiuc-dir")
            .arg(&data)
            .arg("--out")
            .arg(dir.join("out2")),
    );
    assert!(
        err.contains("mscoco_val2014_annotations.json") && err.contains("'weather'"),
        "{err}"
    );
}
