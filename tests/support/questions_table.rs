//! The small questions table the gensen tests join features to (shared by
//! tests/import_gensen.rs and tests/formats_binary.rs through `#[path]`: it needs arrow,
//! which the support library does not depend on).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::Int32Builder;
use arrow::array::{ArrayRef, Int32Array, Int64Array, ListBuilder, StringArray, UInt64Array};
use remind::artifact::{write_table, Producer};

/// (question id, split, text) of the fixture table.
pub const QUESTIONS: &[(u64, &str, &str)] = &[
    (10, "train", "Is there a red cube?"),
    (11, "train", "How many spheres are there?"),
    (12, "train", "What color is the big cylinder?"),
    (1_000_000_000, "val", "Are there more cubes than spheres?"),
    (1_000_000_001, "val", "What size is the metal ball?"),
];

/// Writes a `questions` table with the fixture's questions.
pub fn questions_table(dir: &Path) -> PathBuf {
    let path = dir.join("questions.parquet");
    let n = QUESTIONS.len();
    let mut tokens = ListBuilder::new(Int32Builder::new());
    for _ in 0..n {
        tokens.values().append_slice(&[2, 3]);
        tokens.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(QUESTIONS.iter().map(|q| q.0))),
        Arc::new(UInt64Array::from_iter_values(0..n as u64)),
        Arc::new(StringArray::from_iter_values(QUESTIONS.iter().map(|q| q.1))),
        Arc::new(StringArray::from_iter_values(QUESTIONS.iter().map(|q| q.2))),
        Arc::new(tokens.finish()),
        Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(2, n))),
        Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(0, n))),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n("yes", n))),
        Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(1, n))),
    ];
    write_table(
        &path,
        "questions",
        &Producer::new("test", "0"),
        columns,
        Default::default(),
    )
    .unwrap();
    path
}
