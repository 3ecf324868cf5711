//! Question encoders: word embeddings + bidirectional LSTM over padded token batches, or a
//! linear projection of imported sentence vectors.

use anyhow::{bail, ensure, Result};
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::{ModelConfig, QuestionInput, Questions};

/// cuDNN's RNN mode number of an LSTM.
const CUDNN_LSTM: i64 = 2;

/// Word embeddings (padding index 0) and a one-layer bidirectional LSTM over packed
/// sequences, so each direction sees exactly a question's own tokens: the forward
/// direction ends at the last token, the backward direction starts there and ends at the
/// first. Positions past a question's length get zero states. The LSTM's variables carry
/// PyTorch's `nn.LSTM` names (`weight_ih_l0`, `weight_hh_l0_reverse`, ...) and init
/// (uniform in +-1/sqrt(hidden)).
#[derive(Debug)]
pub struct QuestionEncoder {
    embedding: Tensor,
    /// w_ih, w_hh, b_ih, b_hh of the forward, then of the backward direction.
    lstm: Vec<Tensor>,
    vocab_size: i64,
    hidden: i64,
    device: Device,
}

/// What a question encoder produces.
#[derive(Debug)]
pub struct EncodedQuestions {
    /// Per-token states `[B, T, 2h]` (zero past each question's length).
    pub words: Tensor,
    /// `[B, T]` bool, true at a question's tokens.
    pub mask: Tensor,
    /// The question vector `[B, 2h]`: forward state at the last token, backward state at
    /// the first.
    pub vector: Tensor,
}

impl QuestionEncoder {
    /// Embeddings `vocab_size x embed_dim` (N(0, 1), or copied from `word_vectors`;
    /// row 0, the padding token, zero) under `path / "embedding"`; LSTMs of `hidden` units
    /// per direction under `path / "lstm"`. A frozen embedding is a non-trainable variable
    /// (still saved with the VarStore).
    pub fn new(
        path: &nn::Path,
        vocab_size: usize,
        embed_dim: usize,
        hidden: usize,
        word_vectors: Option<&Tensor>,
        freeze: bool,
    ) -> Result<Self> {
        let (v, e) = (vocab_size as i64, embed_dim as i64);
        ensure!(
            v >= 2 && e > 0 && hidden > 0,
            "question encoder: vocab_size must be at least 2 and embed_dim, hidden positive"
        );
        let p = path.sub("embedding");
        let mut embedding = if freeze {
            p.zeros_no_train("weight", &[v, e])
        } else {
            p.var(
                "weight",
                &[v, e],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
        };
        tch::no_grad(|| -> Result<()> {
            match word_vectors {
                Some(w) => {
                    ensure!(
                        w.size() == [v, e],
                        "word vectors: expected [{v}, {e}] (vocab_size, embed_dim), found {:?}",
                        w.size()
                    );
                    ensure!(
                        w.is_floating_point(),
                        "word vectors: expected floats, found {:?}",
                        w.kind()
                    );
                    embedding.copy_(&w.to_device(embedding.device()).to_kind(embedding.kind()));
                }
                None if freeze => {
                    let r = Tensor::randn([v, e], (embedding.kind(), embedding.device()));
                    embedding.copy_(&r);
                }
                None => {}
            }
            let _ = embedding.get(0).fill_(0.0);
            Ok(())
        })?;
        let h = hidden as i64;
        let bound = 1.0 / (h as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let lp = path.sub("lstm");
        let mut lstm = Vec::with_capacity(8);
        for suffix in ["", "_reverse"] {
            lstm.push(lp.var(&format!("weight_ih_l0{suffix}"), &[4 * h, e], init));
            lstm.push(lp.var(&format!("weight_hh_l0{suffix}"), &[4 * h, h], init));
            lstm.push(lp.var(&format!("bias_ih_l0{suffix}"), &[4 * h], init));
            lstm.push(lp.var(&format!("bias_hh_l0{suffix}"), &[4 * h], init));
        }
        if path.device().is_cuda() {
            // cuDNN wants the LSTM's weights as views of one buffer (else it warns and
            // compacts them on every call); this copies them there and makes the variables
            // such views. Loading and optimiser steps write in place, so they stay views.
            // The returned buffer lives on through the views.
            let _buffer = tch::no_grad(|| {
                Tensor::f_internal_cudnn_rnn_flatten_weight(
                    &lstm, 4, e, CUDNN_LSTM, h, 0, 1, true, true,
                )
            })?;
        }
        Ok(Self {
            lstm,
            embedding,
            vocab_size: v,
            hidden: h,
            device: path.device(),
        })
    }

    /// Width of the question vector and of each token state (2h).
    pub fn out_dim(&self) -> i64 {
        2 * self.hidden
    }

    /// Encodes `tokens` `[B, T]` int64 with `lengths` `[B]` int64 in `1..=T`; fails on
    /// other shapes or kinds, tokens outside the vocabulary, or lengths out of range.
    pub fn forward(&self, tokens: &Tensor, lengths: &Tensor) -> Result<EncodedQuestions> {
        let size = tokens.size();
        let [b, t] = size[..] else {
            bail!("question tokens: expected [B, T], found shape {size:?}");
        };
        ensure!(
            b > 0 && t > 0,
            "question tokens: empty batch or no positions (shape {size:?})"
        );
        ensure!(
            tokens.kind() == Kind::Int64 && lengths.kind() == Kind::Int64,
            "question tokens and lengths: expected int64, found {:?} and {:?}",
            tokens.kind(),
            lengths.kind()
        );
        ensure!(
            lengths.size() == [b],
            "question lengths: expected [{b}], found shape {:?}",
            lengths.size()
        );
        let tokens = tokens.to_device(self.device);
        let lengths = lengths.to_device(self.device);
        let (shortest, longest) = (i64::try_from(lengths.min())?, i64::try_from(lengths.max())?);
        ensure!(
            shortest >= 1 && longest <= t,
            "question lengths: expected values in 1..={t}, found {shortest}..={longest}"
        );
        let pos = Tensor::arange(t, (Kind::Int64, self.device)).unsqueeze(0);
        let valid = pos.lt_tensor(&lengths.unsqueeze(1));
        let used = tokens.masked_select(&valid);
        let (lo, hi) = (i64::try_from(used.min())?, i64::try_from(used.max())?);
        ensure!(
            lo >= 0 && hi < self.vocab_size,
            "question tokens: expected ids in 0..{}, found {lo}..={hi}",
            self.vocab_size
        );
        Ok(self.encode(&tokens, &lengths))
    }

    /// [`forward`](Self::forward) on checked inputs (on this encoder's device).
    fn encode(&self, tokens: &Tensor, lengths: &Tensor) -> EncodedQuestions {
        let (b, t) = (tokens.size()[0], tokens.size()[1]);
        let h = self.hidden;
        let pos = Tensor::arange(t, (Kind::Int64, self.device)).unsqueeze(0);
        let valid = pos.lt_tensor(&lengths.unsqueeze(1));
        // Tokens past the length may hold anything: embed them as padding.
        let tokens = tokens.masked_fill(&valid.logical_not(), 0);
        let emb = Tensor::embedding(&self.embedding, &tokens, 0, false, false);
        // Packing wants lengths in decreasing order, on the CPU.
        let (sorted_len, order) = lengths.to_device(Device::Cpu).sort(0, true);
        let unsort = order.argsort(0, false).to_device(self.device);
        let order = order.to_device(self.device);
        let (data, batch_sizes) = emb
            .index_select(0, &order)
            .internal_pack_padded_sequence(&sorted_len, true);
        let zeros = Tensor::zeros([2, b, h], (emb.kind(), self.device));
        let (out, hn, _) = Tensor::lstm_data(
            &data,
            &batch_sizes,
            &[&zeros, &zeros],
            &self.lstm.iter().collect::<Vec<_>>(),
            true,
            1,
            0.0,
            true,
            true,
        );
        let (words, _) = Tensor::internal_pad_packed_sequence(&out, &batch_sizes, true, 0.0, t);
        let words = words.index_select(0, &unsort);
        // hn: [2, B, h], forward state after the last token, backward after the first.
        let vector = Tensor::cat(&[hn.get(0), hn.get(1)], 1).index_select(0, &unsort);
        EncodedQuestions {
            words,
            mask: valid,
            vector,
        }
    }
}

/// The question front end a model uses: LSTM over tokens, or a projection of sentence
/// vectors (which then also serves as the only "word").
#[derive(Debug)]
pub enum QuestionInputNet {
    Lstm(Box<QuestionEncoder>),
    Gensen {
        proj: nn::Linear,
        dim: i64,
        device: Device,
    },
}

impl QuestionInputNet {
    /// Builds the front end `cfg.question_input` names, under `path / "question"`.
    pub fn new(path: &nn::Path, cfg: &ModelConfig, word_vectors: Option<&Tensor>) -> Result<Self> {
        let p = path.sub("question");
        Ok(match cfg.question_input {
            QuestionInput::Tokens => QuestionInputNet::Lstm(Box::new(QuestionEncoder::new(
                &p,
                cfg.vocab_size,
                cfg.embed_dim,
                cfg.lstm_hidden,
                word_vectors,
                cfg.freeze_embeddings,
            )?)),
            QuestionInput::Gensen => {
                ensure!(
                    word_vectors.is_none(),
                    "word vectors were given, but the model takes gensen sentence vectors"
                );
                QuestionInputNet::Gensen {
                    proj: nn::linear(
                        p.sub("gensen_proj"),
                        cfg.gensen_dim as i64,
                        cfg.question_dim(),
                        Default::default(),
                    ),
                    dim: cfg.gensen_dim as i64,
                    device: p.device(),
                }
            }
        })
    }

    /// Encodes a batch; fails if its form does not match the front end or is malformed.
    pub fn encode(&self, questions: &Questions) -> Result<EncodedQuestions> {
        match (self, questions) {
            (QuestionInputNet::Lstm(enc), Questions::Tokens { tokens, lengths }) => {
                enc.forward(tokens, lengths)
            }
            (QuestionInputNet::Gensen { proj, dim, device }, Questions::Sentences(s)) => {
                let size = s.size();
                ensure!(
                    size.len() == 2 && size[1] == *dim,
                    "sentence vectors: expected [B, {dim}], found shape {size:?}"
                );
                ensure!(
                    s.is_floating_point(),
                    "sentence vectors: expected floats, found {:?}",
                    s.kind()
                );
                let vector = s.to_device(*device).to_kind(Kind::Float).apply(proj);
                let b = size[0];
                Ok(EncodedQuestions {
                    words: vector.unsqueeze(1),
                    mask: Tensor::ones([b, 1], (Kind::Bool, *device)),
                    vector,
                })
            }
            (QuestionInputNet::Lstm(_), Questions::Sentences(_)) => {
                bail!("the model takes question tokens (question_input: tokens), got sentence vectors")
            }
            (QuestionInputNet::Gensen { .. }, Questions::Tokens { .. }) => {
                bail!("the model takes sentence vectors (question_input: gensen), got question tokens")
            }
        }
    }
}
