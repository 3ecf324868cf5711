//! The VQA data a stream needs in memory: per question its padded tokens, answer, type and
//! the row of its image's codes; plus batch assembly (codes gathered and PQ-decoded into
//! feature maps, tokens into a padded tensor).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{Array, Int32Array, Int64Array, ListArray, StringArray, UInt64Array};
use tch::{Device, Kind, Tensor};

use crate::artifact::{Table, TensorDataset};
use crate::pq::ProductQuantizer;

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
    for i in 0..questions.num_rows() {
        if splits.value(i) != split {
            continue;
        }
        if drop_unknown && ans.value(i) < 0 {
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

/// Turns batches of codes into feature-map tensors.
pub struct Decoder<'a> {
    pub pq: &'a ProductQuantizer,
    /// `[H, W, M]` of one item's codes.
    pub code_shape: [usize; 3],
    pub device: Device,
    /// L2-normalise every spatial position's vector (TDIUC).
    pub l2_normalize: bool,
}

impl Decoder<'_> {
    /// `codes` holds whole items back to back; returns `[B, C, H, W]` float on the device.
    pub fn decode(&self, codes: &[u8]) -> Result<Tensor> {
        let [h, w, m] = self.code_shape;
        let per_item = h * w * m;
        ensure!(
            codes.len().is_multiple_of(per_item),
            "codes are not whole items of {per_item} bytes"
        );
        let b = codes.len() / per_item;
        let c = self.pq.dim();
        let mut values = vec![0f32; b * h * w * c];
        self.pq.decode_into(codes, &mut values)?;
        let mut x = Tensor::from_slice(&values).view([b as i64, h as i64, w as i64, c as i64]);
        if self.l2_normalize {
            x = &x
                / x.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
                    .clamp_min(1e-12);
        }
        Ok(x.permute([0, 3, 1, 2]).contiguous().to_device(self.device))
    }
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
        Tensor::from_slice(&tokens)
            .view([idx.len() as i64, t as i64])
            .to_device(device),
        Tensor::from_slice(&lengths).to_device(device),
    )
}

/// Answers of the given items as an int64 tensor.
pub fn answer_batch(items: &VqaItems, idx: &[usize], device: Device) -> Tensor {
    let a: Vec<i64> = idx.iter().map(|&i| items.answers[i]).collect();
    Tensor::from_slice(&a)
        .to_kind(Kind::Int64)
        .to_device(device)
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

/// Reads a questions table and checks it has what streaming needs.
pub fn read_questions(path: &Path) -> Result<Table> {
    Table::read(path, "questions")
}
