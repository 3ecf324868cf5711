//! Visual question answering models on tch: S-MAC (CLEVR) and UpDown (TDIUC), with a
//! bidirectional-LSTM question encoder or imported fixed sentence vectors ("gensen").
//!
//! Every model maps image features `[B, C, H, W]` (decoded PQ codes, float32) and a batch
//! of [`Questions`] to answer logits `[B, num_answers]`. Parameters live under the
//! `tch::nn::Path` the caller gives, so the caller owns the `VarStore` (optimiser,
//! safetensors checkpoints via `VarStore::save` / `load`). Models know nothing of files.
//!
//! ```no_run
//! # use remind::models::vqa::{ModelConfig, VqaModel, Questions};
//! # fn main() -> anyhow::Result<()> {
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let cfg: ModelConfig = serde_yaml::from_str("{kind: smac, in_channels: 256, dim: 128, steps: 4, vocab_size: 100, num_answers: 28}")?;
//! let model = VqaModel::new(&vs.root(), &cfg, None)?;
//! # let (feats, tokens, lengths) = (tch::Tensor::zeros([2, 256, 8, 8], tch::kind::FLOAT_CPU),
//! #     tch::Tensor::ones([2, 5], tch::kind::INT64_CPU), tch::Tensor::from_slice(&[5i64, 3]));
//! let logits = model.forward_t(&feats, &Questions::Tokens { tokens: &tokens, lengths: &lengths }, true)?;
//! # Ok(()) }
//! ```

mod question;
mod smac;
#[cfg(test)]
mod tests;
mod updown;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

pub use question::{EncodedQuestions, QuestionEncoder, QuestionInputNet};
pub use smac::SMac;
pub use updown::UpDown;

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Simplified MAC network (the paper's CLEVR model).
    SMac,
    /// UpDown-style attention model (the paper's TDIUC model).
    UpDown,
}

/// How questions reach the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionInput {
    /// Token ids through word embeddings and a bidirectional LSTM.
    Tokens,
    /// Imported fixed sentence vectors (`gensen_dim` wide), linearly projected.
    Gensen,
}

/// Nonlinearity of UpDown's fully connected layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// tanh(W x) * sigmoid(W' x).
    GatedTanh,
    Relu,
}

/// Model hyper-parameters (config section `model`). Defaults: the paper's CLEVR S-MAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// C of the input feature maps.
    pub in_channels: usize,
    /// Model width (S-MAC: control/memory size; UpDown: hidden size).
    pub dim: usize,
    /// S-MAC reasoning steps.
    pub steps: usize,
    /// Word embedding size.
    pub embed_dim: usize,
    /// LSTM hidden size per direction; the question vector is twice this wide.
    pub lstm_hidden: usize,
    /// S-MAC: variational dropout on control and memory (one mask for all steps).
    /// UpDown: dropout in the attention and the classifier.
    pub dropout: f64,
    pub num_answers: usize,
    /// Vocabulary size including the padding token 0 (token input only).
    pub vocab_size: usize,
    pub question_input: QuestionInput,
    /// Width of the imported sentence vectors (gensen input only).
    pub gensen_dim: usize,
    /// L2-normalise each spatial position's feature vector before the model.
    pub l2_normalize_features: bool,
    /// Keep the word embeddings fixed (at the given word vectors, else at their random
    /// initialisation).
    pub freeze_embeddings: bool,
    /// UpDown attention glimpses.
    pub glimpses: usize,
    /// UpDown nonlinearity.
    pub fusion: Fusion,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::SMac,
            in_channels: 1024,
            dim: 512,
            steps: 12,
            embed_dim: 300,
            lstm_hidden: 512,
            dropout: 0.15,
            num_answers: 28,
            vocab_size: 0,
            question_input: QuestionInput::Tokens,
            gensen_dim: 2048,
            l2_normalize_features: false,
            freeze_embeddings: true,
            glimpses: 2,
            fusion: Fusion::GatedTanh,
        }
    }
}

impl ModelConfig {
    /// Checks the values make a model; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("dim", self.dim),
            ("lstm_hidden", self.lstm_hidden),
            ("num_answers", self.num_answers),
        ];
        for (name, v) in positive {
            ensure!(v > 0, "model config: '{name}' must be positive, found 0");
        }
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "model config: 'dropout' must be in [0, 1), found {}",
            self.dropout
        );
        match self.kind {
            ModelKind::SMac => ensure!(self.steps > 0, "model config: 'steps' must be positive"),
            ModelKind::UpDown => {
                ensure!(
                    self.glimpses > 0,
                    "model config: 'glimpses' must be positive"
                )
            }
        }
        match self.question_input {
            QuestionInput::Tokens => {
                ensure!(
                    self.vocab_size >= 2,
                    "model config: 'vocab_size' must be at least 2 (padding token 0 plus words) for token input, found {}",
                    self.vocab_size
                );
                ensure!(
                    self.embed_dim > 0,
                    "model config: 'embed_dim' must be positive"
                );
            }
            QuestionInput::Gensen => ensure!(
                self.gensen_dim > 0,
                "model config: 'gensen_dim' must be positive for gensen input"
            ),
        }
        Ok(())
    }

    /// Width of the question vector.
    pub fn question_dim(&self) -> i64 {
        2 * self.lstm_hidden as i64
    }
}

/// A batch of questions.
#[derive(Debug, Clone, Copy)]
pub enum Questions<'a> {
    /// `tokens`: int64 `[B, T]`, padded with 0 after each question; `lengths`: int64 `[B]`,
    /// each in `1..=T`. Tokens past a question's length are ignored whatever they hold.
    Tokens {
        tokens: &'a Tensor,
        lengths: &'a Tensor,
    },
    /// Fixed sentence vectors, float `[B, gensen_dim]`.
    Sentences(&'a Tensor),
}

impl Questions<'_> {
    /// Batch size.
    pub fn batch(&self) -> i64 {
        match self {
            Questions::Tokens { tokens, .. } => tokens.size().first().copied().unwrap_or(0),
            Questions::Sentences(s) => s.size().first().copied().unwrap_or(0),
        }
    }
}

/// Either model behind one interface.
#[derive(Debug)]
pub enum VqaModel {
    SMac(Box<SMac>),
    UpDown(Box<UpDown>),
}

impl VqaModel {
    /// Builds the model `cfg` describes under `path`. `word_vectors` (`[vocab_size,
    /// embed_dim]`, e.g. GloVe rows in vocabulary order) initialise the embeddings of token
    /// input; the padding row 0 is zeroed.
    pub fn new(path: &nn::Path, cfg: &ModelConfig, word_vectors: Option<&Tensor>) -> Result<Self> {
        cfg.validate()?;
        Ok(match cfg.kind {
            ModelKind::SMac => VqaModel::SMac(Box::new(SMac::new(path, cfg, word_vectors)?)),
            ModelKind::UpDown => VqaModel::UpDown(Box::new(UpDown::new(path, cfg, word_vectors)?)),
        })
    }

    /// Answer logits `[B, num_answers]`; `train` turns dropout on. Fails on inputs that
    /// do not fit the config (shapes, kinds, token range, lengths).
    pub fn forward_t(&self, feats: &Tensor, questions: &Questions, train: bool) -> Result<Tensor> {
        match self {
            VqaModel::SMac(m) => m.forward_t(feats, questions, train),
            VqaModel::UpDown(m) => m.forward_t(feats, questions, train),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            VqaModel::SMac(m) => m.config(),
            VqaModel::UpDown(m) => m.config(),
        }
    }
}

/// Checks `feats` against the config and returns it as float32 on `device`, each position
/// L2-normalised if the config asks.
pub(crate) fn prepare_features(
    feats: &Tensor,
    cfg: &ModelConfig,
    device: Device,
    batch: i64,
) -> Result<Tensor> {
    let size = feats.size();
    let [b, c, h, w] = size[..] else {
        bail!("image features: expected [B, C, H, W], found shape {size:?}");
    };
    ensure!(
        c == cfg.in_channels as i64,
        "image features: expected C = {} (in_channels), found shape {size:?}",
        cfg.in_channels
    );
    ensure!(h > 0 && w > 0, "image features: empty map, shape {size:?}");
    ensure!(
        b == batch,
        "image features: batch of {b}, but {batch} questions"
    );
    ensure!(
        feats.is_floating_point(),
        "image features: expected a float tensor, found {:?}",
        feats.kind()
    );
    let x = feats.to_device(device).to_kind(Kind::Float);
    Ok(if cfg.l2_normalize_features {
        let norm = x
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        x / norm
    } else {
        x
    })
}

/// A fully connected layer with ReLU or gated-tanh output.
#[derive(Debug)]
pub(crate) struct Fc {
    lin: nn::Linear,
    fusion: Fusion,
}

impl Fc {
    pub(crate) fn new(path: nn::Path, input: i64, output: i64, fusion: Fusion) -> Self {
        let out = match fusion {
            Fusion::GatedTanh => 2 * output,
            Fusion::Relu => output,
        };
        Self {
            lin: nn::linear(path, input, out, Default::default()),
            fusion,
        }
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.apply(&self.lin);
        match self.fusion {
            Fusion::Relu => y.relu(),
            Fusion::GatedTanh => {
                let parts = y.chunk(2, -1);
                parts[0].tanh() * parts[1].sigmoid()
            }
        }
    }
}
