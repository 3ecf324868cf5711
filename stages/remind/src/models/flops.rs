//! Forward FLOPs per item of the models, from their layer shapes and the input's shape (the
//! `compute` block of a stream, [`crate::stream::compute`]).
//!
//! Conventions, as in the usual analytic counts:
//!
//! - a multiply-add is 2 FLOPs (fvcore and ptflops report multiply-adds, so their figures
//!   are half of these; torchvision's "GFLOPS" column is multiply-adds too: ResNet-50 at
//!   224 px, 4.09 G there, is 8.2 GFLOPs here);
//! - counted: convolutions `2 Cin Cout kh kw Hout Wout / groups`, linear layers
//!   `2 in out`, LSTM steps `2 x 4h (in + h)` per direction and token (the input and
//!   recurrent matmuls of the four gates), and the matmuls of attention (scores and
//!   weighted sums, `2 n d` each);
//! - left out: element-wise work (batch norm, activations, gates' products, softmax,
//!   residual additions, pooling, biases), a few percent at most for these models.
//!
//! Training costs about 3x the forward pass (see [`crate::stream::compute`]).

use anyhow::Result;

use super::resnet::{Cut, ResNetConfig, Stem};
use super::vqa::{Fusion, ModelConfig, ModelKind, QuestionInput};

/// FLOPs of a linear layer on one input vector.
pub fn linear(input: usize, output: usize) -> f64 {
    2.0 * input as f64 * output as f64
}

/// One LSTM step of one direction: the gates' input and recurrent matmuls,
/// `W_ih [4h, in]` and `W_hh [4h, h]`.
pub fn lstm_step(input: usize, hidden: usize) -> f64 {
    2.0 * 4.0 * hidden as f64 * (input + hidden) as f64
}

/// A square-kernel convolution (groups 1) on an `h x w` map: its FLOPs and output size.
pub fn conv2d(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    (h, w): (usize, usize),
) -> (f64, (usize, usize)) {
    let out = |x: usize| (x + 2 * pad).saturating_sub(k) / stride + 1;
    let (ho, wo) = (out(h), out(w));
    let flops = 2.0 * (cin * cout * k * k) as f64 * (ho * wo) as f64;
    (flops, (ho, wo))
}

impl ResNetConfig {
    /// Forward FLOPs per item of blocks `first..end` (with the stem and/or the head, as
    /// [`super::ResNet::part`] builds them) on an `h x w` input.
    pub fn part_flops(
        &self,
        first: usize,
        end: usize,
        stem: bool,
        head: bool,
        hw: (usize, usize),
    ) -> f64 {
        let arch = self.arch;
        let w = self.width as usize;
        let mut flops = 0.0;
        let mut hw = hw;
        if stem {
            let (f, out) = match self.stem {
                Stem::ImageNet => conv2d(3, w, 7, 2, 3, hw),
                Stem::Small => conv2d(3, w, 3, 1, 1, hw),
            };
            flops += f;
            hw = out;
            if self.stem == Stem::ImageNet {
                // Max-pool 3x3, stride 2, padding 1: no multiply-adds, the size halves.
                hw = conv2d(1, 1, 3, 2, 1, hw).1;
            }
        }
        let specs = self.block_specs();
        // What the first block takes (what the last one gives, for a part of no block).
        let mut channels = specs.get(first).map_or_else(
            || specs.last().map_or(w, |s| s.out_channels(arch) as usize),
            |s| s.in_channels as usize,
        );
        for spec in &specs[first..end] {
            let (i, p, o) = (
                spec.in_channels as usize,
                spec.planes as usize,
                spec.out_channels(arch) as usize,
            );
            let s = spec.stride as usize;
            // (in, out, kernel, stride, padding) of each conv, as `Block::new` builds them.
            let convs: &[(usize, usize, usize, usize, usize)] = if arch.bottleneck() {
                &[(i, p, 1, 1, 0), (p, p, 3, s, 1), (p, o, 1, 1, 0)]
            } else {
                &[(i, p, 3, s, 1), (p, o, 3, 1, 1)]
            };
            let mut y = hw;
            for &(ci, co, k, st, pad) in convs {
                let (f, out) = conv2d(ci, co, k, st, pad, y);
                flops += f;
                y = out;
            }
            if s != 1 || i != o {
                flops += conv2d(i, o, 1, s, 0, hw).0;
            }
            hw = y;
            channels = o;
        }
        if head {
            flops += linear(channels, self.num_classes as usize);
        }
        flops
    }

    /// Forward FLOPs per item of F (the blocks after `cut`, then the head) on the `h x w`
    /// maps G gives.
    pub fn f_flops(&self, cut: Cut, hw: (usize, usize)) -> Result<f64> {
        let k = self.cut_index(cut)?;
        let n = self.block_specs().len();
        Ok(self.part_flops(k, n, false, true, hw))
    }

    /// Forward FLOPs per item of the whole network on `image x image` inputs.
    pub fn full_flops(&self, image: usize) -> f64 {
        let n = self.block_specs().len();
        self.part_flops(0, n, true, true, (image, image))
    }
}

impl ModelConfig {
    /// Forward FLOPs per item of the VQA model on `[in_channels, h, w]` feature maps and
    /// questions of `tokens` tokens (token input; the mean length gives the exact mean, as
    /// every term is affine in it; ignored with gensen input, whose projected sentence
    /// vector is the only "word").
    pub fn forward_flops(&self, (h, w): (usize, usize), tokens: f64) -> f64 {
        let (c, d, qd) = (self.in_channels, self.dim, self.question_dim() as usize);
        let n = (h * w) as f64;
        let (question, words) = match self.question_input {
            // Bidirectional: each direction reads every token.
            QuestionInput::Tokens => (
                2.0 * tokens * lstm_step(self.embed_dim, self.lstm_hidden),
                tokens,
            ),
            QuestionInput::Gensen => (linear(self.gensen_dim, qd), 1.0),
        };
        let (d_f, c_f) = (d as f64, c as f64);
        let model = match self.kind {
            ModelKind::SMac => {
                let stems = conv2d(c, d, 3, 1, 1, (h, w)).0 + conv2d(d, d, 3, 1, 1, (h, w)).0;
                let word_proj = words * linear(qd, d);
                let step = linear(qd, d) // P_i q
                    + linear(2 * d, d) // control_in
                    + 2.0 * (2.0 * words * d_f) // control scores, control = attn . words
                    + linear(d, d) // read_mem
                    + linear(d, 2 * d) // (c * w_r) [W1 | W2]
                    + 2.0 * (2.0 * n * d_f) // read scores, read = attn . knowledge
                    + linear(2 * d, d); // write
                let out = linear(d + qd, d) + linear(d, self.num_answers);
                stems + word_proj + self.steps as f64 * step + out
            }
            ModelKind::UpDown => {
                let g = match self.fusion {
                    Fusion::GatedTanh => 2,
                    Fusion::Relu => 1,
                };
                let glimpses = self.glimpses;
                n * linear(c, g * d) // att_v per position
                    + linear(qd, g * d) // att_q
                    + n * linear(d, glimpses) // att_out per position
                    + 2.0 * glimpses as f64 * n * c_f // attended = attn^T v
                    + linear(qd, g * d) // q_net
                    + linear(glimpses * c, g * d) // v_net
                    + linear(d, g * 2 * d) // cls_hidden
                    + linear(2 * d, self.num_answers) // cls_out
            }
        };
        question + model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resnet::Arch;
    use crate::models::vqa::VqaModel;
    use crate::models::ResNet;
    use tch::{nn, Device};

    #[test]
    fn conv_and_linear_by_hand() {
        // 3 -> 4 channels, 3x3, padding 1 on 5x5: 25 outputs of 4 x 27 multiply-adds.
        assert_eq!(conv2d(3, 4, 3, 1, 1, (5, 5)), (5400.0, (5, 5)));
        // Stride 2: (5 + 2 - 3) / 2 + 1 = 3 per side.
        assert_eq!(conv2d(3, 4, 3, 2, 1, (5, 5)), (2.0 * 108.0 * 9.0, (3, 3)));
        assert_eq!(linear(7, 3), 42.0);
        // 4 gates of 5 units over 2 inputs and 5 recurrent values.
        assert_eq!(lstm_step(2, 5), 2.0 * 20.0 * 7.0);
    }

    #[test]
    fn resnet_f_by_hand() {
        // ResNet-18 of width 1: layer4's blocks take 8 channels (4 after layer3).
        let mut cfg = ResNetConfig::new(Arch::ResNet18, 1, Stem::Small);
        cfg.num_classes = 10;
        // F after layer4.0 on 2x2 maps: layer4.1 (two 3x3 8 -> 8 convs on 2x2) and fc.
        let conv8 = 2.0 * 8.0 * 8.0 * 9.0 * 4.0;
        let fc = 2.0 * 8.0 * 10.0;
        assert_eq!(
            cfg.f_flops("layer4.0".parse().unwrap(), (2, 2)).unwrap(),
            2.0 * conv8 + fc
        );
        // After layer3 on 4x4 maps: layer4.0 adds a stride-2 3x3 4 -> 8 conv (2x2 out),
        // a 3x3 8 -> 8 and the 1x1 stride-2 downsample 4 -> 8.
        let layer40 = 2.0 * 4.0 * 8.0 * 9.0 * 4.0 + conv8 + 2.0 * 4.0 * 8.0 * 4.0;
        assert_eq!(
            cfg.f_flops("layer3".parse().unwrap(), (4, 4)).unwrap(),
            layer40 + 2.0 * conv8 + fc
        );
    }

    #[test]
    fn resnet_matches_its_weights_and_torchvision() {
        // On maps that no block of F downsamples, every conv weight is used once per
        // output position: F's FLOPs are 2 x (conv weights x positions + fc weights).
        let mut cfg = ResNetConfig::new(Arch::ResNet50, 4, Stem::ImageNet);
        cfg.num_classes = 7;
        let cut: Cut = "layer4.0".parse().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _f = ResNet::f(&vs.root(), cfg, cut).unwrap();
        let (mut conv, mut fc) = (0i64, 0i64);
        for (name, t) in vs.variables() {
            match t.size().len() {
                4 => conv += t.numel() as i64,
                2 if name.starts_with("fc") => fc += t.numel() as i64,
                _ => {}
            }
        }
        let want = 2.0 * (conv as f64 * 9.0 + fc as f64);
        assert_eq!(cfg.f_flops(cut, (3, 3)).unwrap(), want);
        // torchvision's table (multiply-adds at 224 px): ResNet-18 1.81 G, ResNet-50 4.09 G.
        for (arch, gmacs) in [(Arch::ResNet18, 1.81), (Arch::ResNet50, 4.09)] {
            let got = ResNetConfig::new(arch, 64, Stem::ImageNet).full_flops(224) / 2e9;
            assert!(
                (got / gmacs - 1.0).abs() < 0.01,
                "{arch}: {got} G multiply-adds"
            );
        }
    }

    fn tiny(kind: ModelKind, input: QuestionInput, fusion: Fusion) -> ModelConfig {
        ModelConfig {
            kind,
            in_channels: 3,
            dim: 2,
            steps: 1,
            embed_dim: 2,
            lstm_hidden: 1,
            num_answers: 3,
            vocab_size: 5,
            question_input: input,
            gensen_dim: 5,
            glimpses: 1,
            fusion,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn smac_by_hand() {
        // C 3, d 2, 2x2 map (4 positions), 1 step, 2-token questions, h 1 (q 2 wide),
        // 3 answers.
        let cfg = tiny(ModelKind::SMac, QuestionInput::Tokens, Fusion::Relu);
        let lstm = 2.0 * 2.0 * (2.0 * 4.0 * 1.0 * 3.0); // 2 directions x 2 tokens
        let stems = 2.0 * 3.0 * 2.0 * 9.0 * 4.0 + 2.0 * 2.0 * 2.0 * 9.0 * 4.0;
        let word_proj = 2.0 * (2.0 * 2.0 * 2.0);
        let step = 8.0 // P q: 2 -> 2
            + 16.0 // control_in: 4 -> 2
            + 8.0 + 8.0 // control scores and weighted sum over 2 words of 2
            + 8.0 // read_mem: 2 -> 2
            + 16.0 // [W1 | W2]: 2 -> 4
            + 16.0 + 16.0 // read scores and weighted sum over 4 positions of 2
            + 16.0; // write: 4 -> 2
        let out = 2.0 * 4.0 * 2.0 + 2.0 * 2.0 * 3.0;
        assert_eq!(
            cfg.forward_flops((2, 2), 2.0),
            lstm + stems + word_proj + step + out
        );
    }

    #[test]
    fn updown_by_hand_and_by_its_weights() {
        // Gensen input (5 wide -> 2), C 3, d 2, 1 glimpse, 2x2 map, 3 answers, ReLU.
        let cfg = tiny(ModelKind::UpDown, QuestionInput::Gensen, Fusion::Relu);
        let want = 20.0 // gensen projection
            + 4.0 * 12.0 // att_v per position: 3 -> 2
            + 8.0 // att_q
            + 4.0 * 4.0 // att_out per position: 2 -> 1
            + 2.0 * 4.0 * 3.0 // attended: 4 positions of 3
            + 8.0 // q_net
            + 12.0 // v_net
            + 16.0 // cls_hidden: 2 -> 4
            + 24.0; // cls_out: 4 -> 3
        assert_eq!(cfg.forward_flops((2, 2), 9.0), want);
        // With one position every weight matrix is used once per item: FLOPs are twice the
        // weights plus the weighted sum (2 x glimpses x C), for both fusions.
        for fusion in [Fusion::Relu, Fusion::GatedTanh] {
            let cfg = tiny(ModelKind::UpDown, QuestionInput::Gensen, fusion);
            let vs = nn::VarStore::new(Device::Cpu);
            let _m = VqaModel::new(&vs.root(), &cfg, None).unwrap();
            let weights: i64 = vs
                .variables()
                .values()
                .filter(|t| t.size().len() == 2)
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(
                cfg.forward_flops((1, 1), 1.0),
                2.0 * weights as f64 + 2.0 * 3.0,
                "{fusion:?}"
            );
        }
    }
}
