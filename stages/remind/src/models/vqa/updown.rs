//! UpDown-style attention VQA model (Anderson et al., CVPR 2018; Teney et al.), the
//! paper's TDIUC model, over the H*W positions of a feature map instead of object boxes.
//!
//! - v: the `[B, H*W, C]` position features (optionally L2-normalised per position);
//!   q: the question vector (LSTM or projected sentence vector).
//! - Attention: logits `[B, H*W, glimpses]` = Linear(dropout(fc(v) * fc(q))); a softmax
//!   over positions per glimpse; the attended features of all glimpses are concatenated.
//! - Fusion: fc(q) * fc(attended); classifier fc (2 dim) -> dropout -> Linear.
//!   `fc` is Linear followed by gated tanh or ReLU (`fusion`).

use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

use super::question::QuestionInputNet;
use super::{prepare_features, Fc, ModelConfig, Questions};

#[derive(Debug)]
pub struct UpDown {
    cfg: ModelConfig,
    device: Device,
    question: QuestionInputNet,
    att_v: Fc,
    att_q: Fc,
    att_out: nn::Linear,
    q_net: Fc,
    v_net: Fc,
    cls_hidden: Fc,
    cls_out: nn::Linear,
}

impl UpDown {
    /// Builds an UpDown model under `path` (`cfg.kind` is not checked; see
    /// [`super::VqaModel`]).
    pub fn new(path: &nn::Path, cfg: &ModelConfig, word_vectors: Option<&Tensor>) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.dim as i64;
        let c = cfg.in_channels as i64;
        let qd = cfg.question_dim();
        let g = cfg.glimpses as i64;
        let f = cfg.fusion;
        Ok(Self {
            question: QuestionInputNet::new(path, cfg, word_vectors)?,
            att_v: Fc::new(path.sub("att_v"), c, d, f),
            att_q: Fc::new(path.sub("att_q"), qd, d, f),
            att_out: nn::linear(path.sub("att_out"), d, g, Default::default()),
            q_net: Fc::new(path.sub("q_net"), qd, d, f),
            v_net: Fc::new(path.sub("v_net"), g * c, d, f),
            cls_hidden: Fc::new(path.sub("cls_hidden"), d, 2 * d, f),
            cls_out: nn::linear(
                path.sub("cls_out"),
                2 * d,
                cfg.num_answers as i64,
                Default::default(),
            ),
            cfg: cfg.clone(),
            device: path.device(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Answer logits `[B, num_answers]`; see [`super::VqaModel::forward_t`].
    pub fn forward_t(&self, feats: &Tensor, questions: &Questions, train: bool) -> Result<Tensor> {
        let q = self.question.encode(questions)?.vector;
        let x = prepare_features(feats, &self.cfg, self.device, questions.batch())?;
        let b = x.size()[0];
        let v = x.flatten(2, 3).transpose(1, 2).contiguous(); // [B, N, C]
        let p = self.cfg.dropout;
        let joint = self.att_v.forward(&v) * self.att_q.forward(&q).unsqueeze(1);
        let logits = joint.dropout(p, train).apply(&self.att_out); // [B, N, G]
        let attn = logits.softmax(1, Kind::Float);
        let attended = attn.transpose(1, 2).bmm(&v).reshape([b, -1]); // [B, G*C]
        let h = self.q_net.forward(&q) * self.v_net.forward(&attended);
        Ok(self
            .cls_hidden
            .forward(&h)
            .dropout(p, train)
            .apply(&self.cls_out))
    }
}
