//! The VQA data a stream needs in memory: per question its padded tokens, answer, type, the
//! row of its image's codes and (gensen input) the row of its sentence vector; plus batch
//! assembly (codes gathered and PQ-decoded into feature maps, tokens into a padded tensor,
//! sentence vectors into a `[B, D]` tensor).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{Array, Int32Array, Int64Array, ListArray, StringArray, UInt64Array};
use tch::{Device, Tensor};

use crate::artifact::{Table, TensorDataset};
use crate::run::device::upload;

/// Questions of one split.
#[derive(Debug, Default)]
pub struct VqaItems {
    pub question_ids: Vec<u64>,
    /// Row of each question's image in the split's codes dataset.
    pub image_rows: Vec<usize>,
    /// `len x max_len` token ids, 0-padded.
    pub tokens: Vec<i64>,
    pub lengths: Vec<i64>,
    pub answers: Vec<i64>,
    pub types: Vec<i64>,
    pub max_len: usize,
    /// (dataset, row) of each question's sentence vector in the [`QuestionFeatures`]; empty
    /// until [`QuestionFeatures::attach`] (token input).
    pub sentence_rows: Vec<(usize, usize)>,
}

impl VqaItems {
    pub fn len(&self) -> usize {
        self.question_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.question_ids.is_empty()
    }

    /// The items at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> VqaItems {
        let t = self.max_len;
        VqaItems {
            question_ids: idx.iter().map(|&i| self.question_ids[i]).collect(),
            image_rows: idx.iter().map(|&i| self.image_rows[i]).collect(),
            tokens: idx
                .iter()
                .flat_map(|&i| self.tokens[i * t..(i + 1) * t].iter().copied())
                .collect(),
            lengths: idx.iter().map(|&i| self.lengths[i]).collect(),
            answers: idx.iter().map(|&i| self.answers[i]).collect(),
            types: idx.iter().map(|&i| self.types[i]).collect(),
            max_len: t,
            sentence_rows: if self.sentence_rows.is_empty() {
                Vec::new()
            } else {
                idx.iter().map(|&i| self.sentence_rows[i]).collect()
            },
        }
    }
}

/// What a load dropped, for the run log.
#[derive(Debug, Default, serde::Serialize)]
pub struct LoadReport {
    pub train_questions: usize,
    pub val_questions: usize,
    /// Training questions whose answer is outside the answer table (dropped, as the reference does).
    pub dropped_unknown_answer: usize,
    pub truncated_questions: usize,
}

/// Loads the questions of `split` from a questions table, keeping only those whose image is
/// in `codes`; `drop_unknown` removes questions with answer -1.
pub fn load_split(
    questions: &Table,
    split: &str,
    codes: &TensorDataset,
    max_len: usize,
    drop_unknown: bool,
    report: &mut LoadReport,
) -> Result<VqaItems> {
    let p = questions.path.display();
    let qid = questions.column::<UInt64Array>("question_id")?;
    let img = questions.column::<UInt64Array>("image_id")?;
    let splits = questions.column::<StringArray>("split")?;
    let toks = questions.column::<ListArray>("tokens")?;
    let ans = questions.column::<Int64Array>("answer_id")?;
    let qtype = questions.column::<Int32Array>("question_type")?;
    for c in [
        "question_id",
        "image_id",
        "split",
        "tokens",
        "answer_id",
        "question_type",
    ] {
        questions.require_non_null(c)?;
    }
    let image_ids = codes.ids()?;
    let mut out = VqaItems {
        max_len,
        ..Default::default()
    };
    let mut missing_image: Option<u64> = None;
    // Questions in id order, whatever the table's row order: the stream's order is drawn
    // over these positions, so a table sorted or shuffled by another tool streams the same.
    let mut rows: Vec<usize> = (0..questions.num_rows()).collect();
    rows.sort_by_key(|&i| qid.value(i));
    for i in rows {
        if splits.value(i) != split {
            continue;
        }
        if drop_unknown && ans.value(i) < 0 {
            // -1 is "not in the answer table" (schemas/questions.yaml): dropped, as the
            // reference drops it; any other negative id is a damaged table.
            ensure!(
                ans.value(i) == -1,
                "{p}: column 'answer_id': question id {}: expected -1 (not in the answer \
                 table) or an answer id >= 0, found {}",
                qid.value(i),
                ans.value(i)
            );
            report.dropped_unknown_answer += 1;
            continue;
        }
        let Ok(row) = image_ids.binary_search(&img.value(i)) else {
            missing_image.get_or_insert(img.value(i));
            continue;
        };
        let list = toks.value(i);
        let t = list
            .as_any()
            .downcast_ref::<Int32Array>()
            .with_context(|| format!("{p}: column 'tokens' must hold int32"))?;
        let n = t.len().min(max_len);
        report.truncated_questions += usize::from(t.len() > max_len);
        out.tokens
            .extend(t.values()[..n].iter().map(|&v| i64::from(v)));
        out.tokens.extend(std::iter::repeat_n(0, max_len - n));
        out.lengths.push(n.max(1) as i64);
        out.question_ids.push(qid.value(i));
        out.image_rows.push(row);
        out.answers.push(ans.value(i));
        out.types.push(i64::from(qtype.value(i)));
    }
    if let Some(id) = missing_image {
        bail!("{p}: {split} question(s) refer to image id {id} (and maybe others) which {} does not hold: \
               were the features extracted for this split?", codes.root().display());
    }
    ensure!(!out.is_empty(), "{p}: no usable '{split}' questions");
    Ok(out)
}

/// Checks that the ids of `items` (split `split` of the questions table `path`) lie inside
/// the tables the model is sized for, before libtorch indexes with them: answers in
/// `0..num_answers` (and -1, "not in the answer table", in the validation split, scored as
/// wrong), tokens in `0..vocab_size` when the model reads tokens, question types >= 0, and
/// question ids unique. The error names the file, the column, the question id, what was
/// expected and what was found (issue #12).
pub fn check_ids(
    items: &VqaItems,
    split: &str,
    path: &Path,
    num_answers: usize,
    vocab_size: Option<usize>,
    num_types: Option<usize>,
) -> Result<()> {
    let p = path.display();
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let t = items.max_len;
    for i in 0..items.len() {
        let q = items.question_ids[i];
        ensure!(
            seen.insert(q),
            "{p}: column 'question_id': question id {q} appears twice in split '{split}'"
        );
        let a = items.answers[i];
        let lowest = if split == "train" { 0 } else { -1 };
        ensure!(
            a >= lowest && a < num_answers as i64,
            "{p}: column 'answer_id': question id {q}: expected {lowest}..{} (the model's \
             answer table, model.num_answers), found {a}",
            num_answers - 1
        );
        let ty = items.types[i];
        match num_types {
            Some(n) => ensure!(
                ty >= 0 && (ty as usize) < n,
                "{p}: column 'question_type': question id {q}: expected 0..{} (the question \
                 types of question_types.parquet), found {ty}",
                n.saturating_sub(1)
            ),
            None => ensure!(
                ty >= 0,
                "{p}: column 'question_type': question id {q}: expected a type id >= 0, found {ty}"
            ),
        }
        if let Some(v) = vocab_size {
            if let Some(&tok) = items.tokens[i * t..(i + 1) * t]
                .iter()
                .find(|&&tok| tok < 0 || tok >= v as i64)
            {
                bail!(
                    "{p}: column 'tokens': question id {q}: expected token ids 0..{} (the \
                     vocabulary, model.vocab_size), found {tok}",
                    v - 1
                );
            }
        }
    }
    Ok(())
}

/// Padded token tensor `[B, T]` and lengths `[B]` of the given items.
pub fn question_batch(items: &VqaItems, idx: &[usize], device: Device) -> (Tensor, Tensor) {
    let t = items.max_len;
    let mut tokens = Vec::with_capacity(idx.len() * t);
    let mut lengths = Vec::with_capacity(idx.len());
    for &i in idx {
        tokens.extend_from_slice(&items.tokens[i * t..(i + 1) * t]);
        lengths.push(items.lengths[i]);
    }
    (
        upload(
            &Tensor::from_slice(&tokens).view([idx.len() as i64, t as i64]),
            device,
        ),
        upload(&Tensor::from_slice(&lengths), device),
    )
}

/// Answers of the given items as an int64 tensor.
pub fn answer_batch(items: &VqaItems, idx: &[usize], device: Device) -> Tensor {
    let a: Vec<i64> = idx.iter().map(|&i| items.answers[i]).collect();
    upload(&Tensor::from_slice(&a), device)
}

/// Codes of the images of the given items, back to back.
pub fn gather_codes(
    items: &VqaItems,
    idx: &[usize],
    codes: &TensorDataset,
    out: &mut Vec<u8>,
) -> Result<()> {
    for &i in idx {
        out.extend_from_slice(codes.row_u8(items.image_rows[i])?);
    }
    Ok(())
}

/// How many example ids an error lists.
const EXAMPLES: usize = 10;

/// Imported sentence vectors per question ("gensen"): one or more `question_features`
/// datasets written by `remind-import-gensen` (e.g. one per split), memory-mapped and
/// looked up by question id. A question id may appear in only one of them.
pub struct QuestionFeatures {
    sets: Vec<TensorDataset>,
    ids: Vec<Vec<u64>>,
    dim: usize,
}

impl QuestionFeatures {
    /// Opens and checks the datasets `paths` (files or folders of parts).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        ensure!(
            !paths.is_empty(),
            "no question features given (the output of remind-import-gensen)"
        );
        let mut sets = Vec::with_capacity(paths.len());
        let mut ids: Vec<Vec<u64>> = Vec::with_capacity(paths.len());
        let mut dim = 0;
        for (k, path) in paths.iter().enumerate() {
            let ds = TensorDataset::open(path, "question_features")?;
            let p = ds.root().display().to_string();
            let shape = ds.shape().to_vec();
            ensure!(
                shape.len() == 1 && shape[0] > 0,
                "{p}: question features must be vectors [D], found shape {shape:?}"
            );
            if k == 0 {
                dim = shape[0];
            } else {
                ensure!(
                    shape[0] == dim,
                    "{p}: sentence vectors are {} wide, but those of {} are {dim} wide",
                    shape[0],
                    sets_root(&sets, 0)
                );
            }
            let these = ds.ids()?;
            for (j, earlier) in ids.iter().enumerate() {
                if let Some(id) = these.iter().find(|id| earlier.binary_search(id).is_ok()) {
                    bail!(
                        "{p}: question id {id} also has features in {}: give each question's \
                         features once",
                        sets_root(&sets, j)
                    );
                }
            }
            ids.push(these);
            sets.push(ds);
        }
        Ok(Self { sets, ids, dim })
    }

    /// D, the width of the sentence vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The datasets' paths.
    pub fn paths(&self) -> Vec<&Path> {
        self.sets.iter().map(TensorDataset::root).collect()
    }

    /// A fingerprint of the content (width, and rows and checksum of every part), for
    /// the run's config hash: equal files under another path keep checkpoints valid.
    pub fn fingerprint(&self) -> Result<Vec<String>> {
        let mut out = vec![format!("dim={}", self.dim)];
        for ds in &self.sets {
            for part in ds.parts() {
                out.push(format!("{}:{}", part.len(), part.checksum()?));
            }
        }
        Ok(out)
    }

    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        self.ids
            .iter()
            .enumerate()
            .find_map(|(k, ids)| ids.binary_search(&id).ok().map(|row| (k, row)))
    }

    /// Finds the sentence vector of every question of `items` (of split `split`); an error
    /// names the files and the first question ids without features.
    pub fn attach(&self, items: &mut VqaItems, split: &str) -> Result<()> {
        let mut rows = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for &id in &items.question_ids {
            match self.locate(id) {
                Some(r) => rows.push(r),
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            let files: Vec<String> = self
                .paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let mut head: Vec<String> = missing.iter().take(EXAMPLES).map(u64::to_string).collect();
            if missing.len() > EXAMPLES {
                head.push("...".into());
            }
            bail!(
                "{}: {} of the {} {split} questions have no sentence features (question ids \
                 {}): import features for every question the stream uses \
                 (remind-import-gensen on the same questions table, for all splits or once \
                 per split)",
                files.join(", "),
                missing.len(),
                items.len(),
                head.join(", ")
            );
        }
        items.sentence_rows = rows;
        Ok(())
    }

    /// Sentence vectors `[B, D]` of the given items (attached first), each divided by its
    /// L2 norm (plus 1e-8, as the reference does) if `l2_normalize`.
    pub fn batch(
        &self,
        items: &VqaItems,
        idx: &[usize],
        device: Device,
        l2_normalize: bool,
    ) -> Result<Tensor> {
        ensure!(
            items.sentence_rows.len() == items.len(),
            "sentence vectors were not attached to the questions"
        );
        let d = self.dim;
        let mut values = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            let (set, row) = items.sentence_rows[i];
            let v = self.sets[set].row_f32(row)?;
            if l2_normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-8;
                values.extend(v.iter().map(|x| x / norm));
            } else {
                values.extend_from_slice(v);
            }
        }
        Ok(upload(
            &Tensor::from_slice(&values).view([idx.len() as i64, d as i64]),
            device,
        ))
    }
}

fn sets_root(sets: &[TensorDataset], k: usize) -> String {
    sets[k].root().display().to_string()
}

/// Reads a questions table and checks it has what streaming needs.
pub fn read_questions(path: &Path) -> Result<Table> {
    Table::read(path, "questions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::tensor::write_tensor;
    use crate::artifact::{DType, Payload, Producer, TensorSpec};
    use crate::data::gensen::{DIM_KEY, SOURCE_FORMAT_KEY, SOURCE_KEY};

    /// A question_features file with rows `ids`, row i being `[id, id + 0.5, ...]` (D wide).
    fn features(path: &Path, ids: &[u64], d: usize) -> PathBuf {
        let values: Vec<f32> = ids
            .iter()
            .flat_map(|&id| (0..d).map(move |c| id as f32 + c as f32 * 0.5))
            .collect();
        let spec = TensorSpec::new(
            "question_features",
            &[d],
            "D",
            DType::F32,
            Producer::new("test", "0"),
        )
        .with(SOURCE_KEY, "test")
        .with(SOURCE_FORMAT_KEY, "npy")
        .with(DIM_KEY, d.to_string());
        write_tensor(path, spec, ids, Payload::F32(&values)).unwrap()
    }

    fn items(ids: &[u64]) -> VqaItems {
        VqaItems {
            question_ids: ids.to_vec(),
            image_rows: vec![0; ids.len()],
            lengths: vec![1; ids.len()],
            tokens: vec![1; ids.len()],
            answers: vec![0; ids.len()],
            types: vec![0; ids.len()],
            max_len: 1,
            sentence_rows: Vec::new(),
        }
    }

    #[test]
    fn sentence_vectors_join_by_question_id_across_files() {
        let dir = std::env::temp_dir().join(format!("remind-qfeat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let train = features(&dir.join("train.arrow"), &[3, 5, 9], 2);
        let val = features(&dir.join("val.arrow"), &[100, 101], 2);
        let f = QuestionFeatures::open(&[train.clone(), val.clone()]).unwrap();
        assert_eq!(f.dim(), 2);

        let mut tr = items(&[9, 3, 5]);
        f.attach(&mut tr, "train").unwrap();
        assert_eq!(tr.sentence_rows, [(0, 2), (0, 0), (0, 1)]);
        // Subsets keep each question's own row (replay looks items up by index).
        let sub = tr.subset(&[2, 0]);
        assert_eq!(sub.sentence_rows, [(0, 1), (0, 2)]);
        let b = f.batch(&tr, &[1, 0, 1], Device::Cpu, false).unwrap();
        assert_eq!(b.size(), [3, 2]);
        assert_eq!(
            Vec::<f32>::try_from(b.flatten(0, 1)).unwrap(),
            [3.0, 3.5, 9.0, 9.5, 3.0, 3.5]
        );
        let n = f.batch(&tr, &[1], Device::Cpu, true).unwrap();
        let v = Vec::<f32>::try_from(n.flatten(0, 1)).unwrap();
        assert!((v[0] * v[0] + v[1] * v[1] - 1.0).abs() < 1e-5, "{v:?}");
        let mut va = items(&[101]);
        f.attach(&mut va, "val").unwrap();
        assert_eq!(va.sentence_rows, [(1, 1)]);

        // Missing vectors name the files and the first ids.
        let mut bad = items(&[3, 7, 8, 100]);
        let err = format!("{:#}", f.attach(&mut bad, "train").unwrap_err());
        assert!(
            err.contains("train.arrow, ")
                && err.contains("val.arrow")
                && err.contains("2 of the 4 train questions have no sentence features")
                && err.contains("question ids 7, 8)"),
            "{err}"
        );
        // A question in two files, and files of different widths, are refused.
        let dup = features(&dir.join("dup.arrow"), &[1, 5], 2);
        let err = format!(
            "{:#}",
            QuestionFeatures::open(&[train.clone(), dup]).err().unwrap()
        );
        assert!(err.contains("question id 5 also has features in"), "{err}");
        let wide = features(&dir.join("wide.arrow"), &[200], 3);
        let err = format!(
            "{:#}",
            QuestionFeatures::open(&[train, wide]).err().unwrap()
        );
        assert!(
            err.contains("3 wide") && err.contains("are 2 wide"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two questions whose ids all lie in tables of 4 answers and 6 tokens.
    fn in_range() -> VqaItems {
        VqaItems {
            tokens: vec![3, 4, 0, 5, 0, 0],
            lengths: vec![2, 1],
            answers: vec![1, 0],
            types: vec![0, 2],
            max_len: 3,
            ..items(&[7, 8])
        }
    }

    fn err(items: &VqaItems, split: &str) -> String {
        let e = check_ids(items, split, Path::new("q.parquet"), 4, Some(6), Some(3)).unwrap_err();
        format!("{e:#}")
    }

    #[test]
    fn ids_outside_their_tables_are_named() {
        check_ids(
            &in_range(),
            "train",
            Path::new("q.parquet"),
            4,
            Some(6),
            Some(3),
        )
        .unwrap();
        let mut bad = in_range();
        bad.answers[1] = 4;
        let e = err(&bad, "train");
        assert!(
            e.contains("q.parquet: column 'answer_id': question id 8: expected 0..3")
                && e.contains("found 4"),
            "{e}"
        );
        bad.answers[1] = -1;
        assert!(err(&bad, "train").contains("found -1"));
        check_ids(&bad, "val", Path::new("q.parquet"), 4, Some(6), Some(3)).unwrap();
        let mut bad = in_range();
        bad.tokens[1] = 6;
        assert!(err(&bad, "train").contains("column 'tokens': question id 7"));
        check_ids(&bad, "train", Path::new("q.parquet"), 4, None, Some(3)).unwrap();
        let mut bad = in_range();
        bad.types[0] = -2;
        assert!(err(&bad, "train").contains("column 'question_type': question id 7"));
        bad.types[0] = 3;
        let e = err(&bad, "train");
        assert!(
            e.contains("column 'question_type': question id 7: expected 0..2")
                && e.contains("found 3"),
            "{e}"
        );
        let mut bad = in_range();
        bad.question_ids[1] = 7;
        assert!(err(&bad, "val").contains("question id 7 appears twice"));
    }
}
