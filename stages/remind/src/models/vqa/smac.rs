//! S-MAC: a simplified MAC network (Hudson & Manning, ICLR 2018) as REMIND uses on CLEVR.
//!
//! - Knowledge base: two 3x3 convolutions with ELU take the features from C to `dim`
//!   channels; its H*W positions are the items the read unit attends over.
//! - Question: token states projected to `dim` ("contextual words") and the question vector
//!   q (2h wide); with gensen input the projected sentence vector is the only word.
//! - Per step i: control c_i = attention over the words of W_c [c_{i-1}, P_i q] (P_i a
//!   per-step projection); read r_i = attention over the knowledge base of
//!   W_r [m' * k, k] gated by c_i (m' = W_m m_{i-1}); memory m_i = W_w [r_i, m_{i-1}].
//!   Control and memory start from learned vectors and carry variational dropout: one mask
//!   per forward pass, shared by all steps.
//! - Output: Linear-ELU-Linear on [m_T, q].
//!
//! The attention logits are computed without forming the `[B, positions, dim]`
//! intermediates: for attention weight vector w, w . (c * (W1 (m' * k) + W2 k + b)) equals
//! k . (m' * (W1^T (w * c)) + W2^T (w * c)) plus a term constant over positions, which the
//! softmax ignores. So the read unit's cost per step is two `[B, dim] x [dim, dim]`
//! products and two batched products with the knowledge base; the biases that cancel in a
//! softmax are left out.

use anyhow::Result;
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::question::QuestionInputNet;
use super::{prepare_features, ModelConfig, Questions};

#[derive(Debug)]
pub struct SMac {
    cfg: ModelConfig,
    device: Device,
    question: QuestionInputNet,
    stem1: nn::Conv2D,
    stem2: nn::Conv2D,
    /// Token states (2h) -> dim.
    word_proj: nn::Linear,
    /// Per-step projections of the question vector (2h -> dim).
    step_proj: Vec<nn::Linear>,
    /// [c_{i-1}, P_i q] (2 dim) -> dim.
    control_in: nn::Linear,
    /// Control attention weights (dim).
    control_attn: Tensor,
    /// m_{i-1} -> m' (dim -> dim).
    read_mem: nn::Linear,
    /// [W1 | W2] of the read unit's concat layer, `[dim, 2 dim]`.
    read_concat: Tensor,
    /// Read attention weights (dim).
    read_attn: Tensor,
    /// [r_i, m_{i-1}] (2 dim) -> dim.
    write: nn::Linear,
    control0: Tensor,
    memory0: Tensor,
    out1: nn::Linear,
    out2: nn::Linear,
}

impl SMac {
    /// Builds an S-MAC under `path` (`cfg.kind` is not checked; see [`super::VqaModel`]).
    pub fn new(path: &nn::Path, cfg: &ModelConfig, word_vectors: Option<&Tensor>) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.dim as i64;
        let qd = cfg.question_dim();
        let conv = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let lin = |name: &str, i: i64, o: i64| nn::linear(path.sub(name), i, o, Default::default());
        let attn_init = nn::Init::Uniform {
            lo: -1.0 / (d as f64).sqrt(),
            up: 1.0 / (d as f64).sqrt(),
        };
        let concat_bound = 1.0 / ((2 * d) as f64).sqrt();
        Ok(Self {
            question: QuestionInputNet::new(path, cfg, word_vectors)?,
            stem1: nn::conv2d(path.sub("stem1"), cfg.in_channels as i64, d, 3, conv),
            stem2: nn::conv2d(path.sub("stem2"), d, d, 3, conv),
            word_proj: lin("word_proj", qd, d),
            step_proj: (0..cfg.steps)
                .map(|i| lin(&format!("step_proj{i}"), qd, d))
                .collect(),
            control_in: lin("control_in", 2 * d, d),
            control_attn: path.var("control_attn", &[d], attn_init),
            read_mem: lin("read_mem", d, d),
            read_concat: path.var(
                "read_concat",
                &[d, 2 * d],
                nn::Init::Uniform {
                    lo: -concat_bound,
                    up: concat_bound,
                },
            ),
            read_attn: path.var("read_attn", &[d], attn_init),
            write: lin("write", 2 * d, d),
            control0: path.var("control0", &[1, d], nn::Init::Const(0.0)),
            memory0: path.var("memory0", &[1, d], nn::Init::Const(0.0)),
            out1: lin("out1", d + qd, d),
            out2: lin("out2", d, cfg.num_answers as i64),
            cfg: cfg.clone(),
            device: path.device(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Answer logits `[B, num_answers]`; see [`super::VqaModel::forward_t`].
    pub fn forward_t(&self, feats: &Tensor, questions: &Questions, train: bool) -> Result<Tensor> {
        let q = self.question.encode(questions)?;
        let x = prepare_features(feats, &self.cfg, self.device, questions.batch())?;
        let b = x.size()[0];
        let d = self.cfg.dim as i64;
        // Knowledge base [B, HW, d].
        let know = x
            .apply(&self.stem1)
            .elu()
            .apply(&self.stem2)
            .elu()
            .flatten(2, 3)
            .transpose(1, 2)
            .contiguous();
        let words = q.words.apply(&self.word_proj); // [B, T, d]
        let pad = q.mask.logical_not();
        let mut control = self.control0.expand([b, d], false);
        let mut memory = self.memory0.expand([b, d], false);
        let p = self.cfg.dropout;
        let masks = (train && p > 0.0).then(|| {
            let ones = Tensor::ones([2, b, d], (Kind::Float, self.device));
            ones.dropout(p, true)
        });
        control = masked(control, masks.as_ref(), 0);
        memory = masked(memory, masks.as_ref(), 1);
        for step in &self.step_proj {
            // Control unit.
            let cq = Tensor::cat(&[&control, &q.vector.apply(step)], 1).apply(&self.control_in);
            let logits = words
                .bmm(&(cq * &self.control_attn).unsqueeze(2))
                .squeeze_dim(2)
                .masked_fill(&pad, f64::NEG_INFINITY);
            let attn = logits.softmax(1, Kind::Float);
            control = masked(
                attn.unsqueeze(1).bmm(&words).squeeze_dim(1),
                masks.as_ref(),
                0,
            );
            // Read unit.
            let m_proj = memory.apply(&self.read_mem);
            let v = (&control * &self.read_attn).matmul(&self.read_concat); // [B, 2d]
            let parts = v.split(d, 1);
            let u = m_proj * &parts[0] + &parts[1];
            let logits = know.bmm(&u.unsqueeze(2)).squeeze_dim(2);
            let attn = logits.softmax(1, Kind::Float);
            let read = attn.unsqueeze(1).bmm(&know).squeeze_dim(1);
            // Write unit.
            memory = masked(
                Tensor::cat(&[&read, &memory], 1).apply(&self.write),
                masks.as_ref(),
                1,
            );
        }
        let out = Tensor::cat(&[&memory, &q.vector], 1)
            .apply(&self.out1)
            .elu()
            .apply(&self.out2);
        Ok(out)
    }
}

/// `x` times row `i` of the dropout masks, if any (out of place: autograd needs `x`).
fn masked(x: Tensor, masks: Option<&Tensor>, i: i64) -> Tensor {
    match masks {
        Some(m) => x * m.get(i),
        None => x,
    }
}
