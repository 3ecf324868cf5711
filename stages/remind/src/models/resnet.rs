//! The ResNet family (18, 34, 50, 101, 152) with torchvision's parameter names, built as
//! contiguous *parts* so that one network splits into REMIND's frozen G and plastic F.
//!
//! A ResNet is a stem (`conv1`, `bn1`, ReLU, max-pool), four stages of blocks
//! (`layer1.0` ... `layer4.2`), then a head (global average pool, `fc`). A [`ResNet`] holds
//! any contiguous run of those pieces:
//!
//! - [`ResNet::full`]: the whole network;
//! - [`ResNet::g`]: stem and every block up to and including a [`Cut`] (G);
//! - [`ResNet::f`]: the blocks after the cut, then the head (F).
//!
//! Every parameter and buffer is created under torchvision's name (`conv1.weight`,
//! `bn1.running_mean`, `layer3.0.downsample.0.weight`, `fc.weight`, ...), so a torchvision
//! `state_dict` loads into G and F alike: each takes the names it holds and the two together
//! hold exactly the full network's names. BatchNorm uses running statistics whenever
//! `forward_t` runs with `train = false` (feature extraction always does).
//!
//! Options beyond torchvision's:
//!
//! - `width` (base channels): stage widths are `width * [1, 2, 4, 8]` (times 4 for the
//!   bottleneck output). 64 is torchvision's network; 16 or 32 make a fast small backbone.
//! - [`Stem::Small`]: for 28-32 px inputs (CIFAR, MNIST-like data), `conv1` is a 3x3
//!   convolution with stride 1 and padding 1 and there is no max-pool, so a 32 px image
//!   gives 32/16/8/4 px maps after `layer1`..`layer4` instead of 8/4/2/1. `conv1.weight` is
//!   then `[width, 3, 3, 3]` instead of `[width, 3, 7, 7]`, so torchvision weights do not fit
//!   it (the loader says so, naming `conv1.weight`).

use std::fmt;
use std::str::FromStr;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Network depth, which fixes the block type and the blocks per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
    ];

    /// Blocks in `layer1` .. `layer4`.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
            Arch::ResNet101 => [3, 4, 23, 3],
            Arch::ResNet152 => [3, 8, 36, 3],
        }
    }

    /// Bottleneck blocks (50 and deeper) rather than basic blocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, Arch::ResNet50 | Arch::ResNet101 | Arch::ResNet152)
    }

    /// Output channels of a block relative to its `planes`.
    pub fn expansion(self) -> i64 {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }
}

named_enum!(Arch, "architecture", {
    ResNet18 => "resnet18",
    ResNet34 => "resnet34",
    ResNet50 => "resnet50",
    ResNet101 => "resnet101",
    ResNet152 => "resnet152",
});

/// The stem: torchvision's (7x7 stride-2 conv + 3x3 stride-2 max-pool, for 224 px
/// images) or the small-image one (3x3 stride-1 conv, no pool, for 28-32 px images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    #[default]
    ImageNet,
    Small,
}

named_enum!(Stem, "stem", { ImageNet => "imagenet", Small => "small" });

/// Where G ends: after a whole stage (`layer3`) or after one block of a stage (`layer4.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Stage, 1..=4.
    pub stage: usize,
    /// Block within the stage (0-based); `None` for the whole stage.
    pub block: Option<usize>,
}

impl FromStr for Cut {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            anyhow::anyhow!(
                "invalid cut '{s}' (expected layer1..layer4, or a block such as layer4.0)"
            )
        };
        let rest = s.strip_prefix("layer").ok_or_else(bad)?;
        let (stage, block) = match rest.split_once('.') {
            Some((st, b)) => (st, Some(b.parse::<usize>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        let stage: usize = stage.parse().map_err(|_| bad())?;
        ensure!((1..=4).contains(&stage), bad());
        Ok(Cut { stage, block })
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.block {
            Some(b) => write!(f, "layer{}.{b}", self.stage),
            None => write!(f, "layer{}", self.stage),
        }
    }
}

impl Serialize for Cut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cut {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Shape of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub arch: Arch,
    /// Base channels (64 in torchvision).
    pub width: i64,
    pub stem: Stem,
    /// Outputs of `fc`.
    pub num_classes: i64,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            arch: Arch::ResNet18,
            width: 64,
            stem: Stem::ImageNet,
            num_classes: 1000,
        }
    }
}

/// One residual block's place in the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// torchvision name, e.g. `layer3.5`.
    pub name: String,
    pub stage: usize,
    pub index: usize,
    pub in_channels: i64,
    pub planes: i64,
    pub stride: i64,
}

impl BlockSpec {
    pub fn out_channels(&self, arch: Arch) -> i64 {
        self.planes * arch.expansion()
    }
    fn needs_downsample(&self, arch: Arch) -> bool {
        self.stride != 1 || self.in_channels != self.out_channels(arch)
    }
}

impl ResNetConfig {
    pub fn new(arch: Arch, width: i64, stem: Stem) -> Self {
        Self {
            arch,
            width,
            stem,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.width >= 1 && self.width <= 4096,
            "ResNet width {} out of range (1..=4096; torchvision's is 64)",
            self.width
        );
        ensure!(
            self.num_classes >= 1,
            "ResNet num_classes must be at least 1"
        );
        Ok(())
    }

    /// Every block in network order.
    pub fn block_specs(&self) -> Vec<BlockSpec> {
        let mut out = Vec::new();
        let mut in_channels = self.width;
        for (s, &n) in self.arch.blocks().iter().enumerate() {
            let planes = self.width << s;
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                out.push(BlockSpec {
                    name: format!("layer{}.{b}", s + 1),
                    stage: s + 1,
                    index: b,
                    in_channels,
                    planes,
                    stride,
                });
                in_channels = planes * self.arch.expansion();
            }
        }
        out
    }

    /// Number of blocks G holds for `cut` (the index of F's first block).
    pub fn cut_index(&self, cut: Cut) -> Result<usize> {
        let blocks = self.arch.blocks();
        let before: usize = blocks[..cut.stage - 1].iter().sum();
        let n = blocks[cut.stage - 1];
        match cut.block {
            None => Ok(before + n),
            Some(b) => {
                ensure!(
                    b < n,
                    "cut '{cut}': {} has {n} blocks in layer{} (layer{}.0 .. layer{}.{})",
                    self.arch,
                    cut.stage,
                    cut.stage,
                    cut.stage,
                    n - 1
                );
                Ok(before + b + 1)
            }
        }
    }

    /// Channels of the feature map after `cut`.
    pub fn channels_after(&self, cut: Cut) -> Result<i64> {
        let k = self.cut_index(cut)?;
        Ok(self.block_specs()[k - 1].out_channels(self.arch))
    }

    /// Spatial size of the stem's output for an `image`-pixel square input.
    fn stem_out(&self, image: usize) -> usize {
        let down = |x: usize| x.saturating_sub(1) / 2 + 1; // k3/s2/p1 and k7/s2/p3 alike
        match self.stem {
            Stem::ImageNet => down(down(image)),
            Stem::Small => image,
        }
    }

    /// Feature map shape `[H, W, C]` after `cut` for `image x image` inputs.
    pub fn feature_shape(&self, cut: Cut, image: usize) -> Result<[usize; 3]> {
        let k = self.cut_index(cut)?;
        let mut side = self.stem_out(image);
        for spec in &self.block_specs()[..k] {
            if spec.stride == 2 {
                side = side.saturating_sub(1) / 2 + 1;
            }
        }
        let c = self.channels_after(cut)? as usize;
        Ok([side, side, c])
    }
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, i, o, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

#[derive(Debug)]
struct Downsample {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl Downsample {
    fn new(p: nn::Path, i: i64, o: i64, stride: i64) -> Self {
        // torchvision: nn.Sequential(conv1x1, BatchNorm2d) -> downsample.0, downsample.1
        Self {
            conv: conv(&p / "0", i, o, 1, stride, 0),
            bn: bn(&p / "1", o),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// A residual block: torchvision's BasicBlock (3x3 (stride) - BN - ReLU - 3x3 - BN) or, for
/// the deeper archs, its Bottleneck (ResNet v1.5, the stride on the 3x3: 1x1 - BN - ReLU -
/// 3x3 (stride) - BN - ReLU - 1x1 (x4) - BN), plus the shortcut. `layers` are the conv-BN
/// pairs `conv1`/`bn1`, `conv2`/`bn2`, ..., a ReLU between consecutive ones.
#[derive(Debug)]
struct Block {
    layers: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(p: nn::Path, spec: &BlockSpec, arch: Arch) -> Self {
        let (i, w, o) = (spec.in_channels, spec.planes, spec.out_channels(arch));
        let s = spec.stride;
        // In and out channels, kernel, stride and padding of each conv.
        let convs: &[(i64, i64, i64, i64, i64)] = if arch.bottleneck() {
            &[(i, w, 1, 1, 0), (w, w, 3, s, 1), (w, o, 1, 1, 0)]
        } else {
            &[(i, w, 3, s, 1), (w, o, 3, 1, 1)]
        };
        let layers = (1..)
            .zip(convs)
            .map(|(n, &(ci, co, k, stride, padding))| {
                (
                    conv(&p / format!("conv{n}"), ci, co, k, stride, padding),
                    bn(&p / format!("bn{n}"), co),
                )
            })
            .collect();
        Self {
            layers,
            downsample: spec
                .needs_downsample(arch)
                .then(|| Downsample::new(&p / "downsample", i, o, s)),
        }
    }
}

impl ModuleT for Block {
    /// `relu(y + shortcut)`, the shortcut being `downsample(x)` where the block changes
    /// shape, else `x` itself.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (conv1, bn1) = &self.layers[0];
        let mut y = x.apply(conv1).apply_t(bn1, train);
        for (conv, bn) in &self.layers[1..] {
            y = y.relu().apply(conv).apply_t(bn, train);
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(x, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

#[derive(Debug)]
struct StemLayers {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    pool: bool,
}

/// A contiguous part of a ResNet: optional stem, a run of blocks, optional head.
#[derive(Debug)]
pub struct ResNet {
    config: ResNetConfig,
    stem: Option<StemLayers>,
    blocks: Vec<(String, Box<dyn ModuleT>)>,
    fc: Option<nn::Linear>,
    in_channels: i64,
    out_channels: i64,
}

impl ResNet {
    /// The whole network (stem, all blocks, average pool and `fc`), under `p`.
    pub fn full(p: &nn::Path, config: ResNetConfig) -> Result<Self> {
        let n = config.block_specs().len();
        Self::part(p, config, 0, n, true, true)
    }

    /// G: the stem and every block up to and including `cut`. Input: images `[N, 3, H, W]`;
    /// output: the feature map after `cut`, `[N, C, H', W']`.
    pub fn g(p: &nn::Path, config: ResNetConfig, cut: Cut) -> Result<Self> {
        let k = config.cut_index(cut)?;
        Self::part(p, config, 0, k, true, false)
    }

    /// F: the blocks after `cut`, the average pool and `fc`. Input: G's output; output:
    /// logits `[N, num_classes]`.
    pub fn f(p: &nn::Path, config: ResNetConfig, cut: Cut) -> Result<Self> {
        let k = config.cut_index(cut)?;
        let n = config.block_specs().len();
        Self::part(p, config, k, n, false, true)
    }

    /// Blocks `first..end` (network order), with the stem and/or head when asked.
    pub fn part(
        p: &nn::Path,
        config: ResNetConfig,
        first: usize,
        end: usize,
        stem: bool,
        head: bool,
    ) -> Result<Self> {
        config.validate()?;
        let specs = config.block_specs();
        ensure!(
            first <= end && end <= specs.len(),
            "block range {first}..{end} out of range for {} ({} blocks)",
            config.arch,
            specs.len()
        );
        ensure!(
            !stem || first == 0,
            "a part with the stem must start at the first block"
        );
        ensure!(
            !head || end == specs.len(),
            "a part with the head must end at the last block"
        );
        let w = config.width;
        let stem_layers = stem.then(|| match config.stem {
            Stem::ImageNet => StemLayers {
                conv1: conv(p / "conv1", 3, w, 7, 2, 3),
                bn1: bn(p / "bn1", w),
                pool: true,
            },
            Stem::Small => StemLayers {
                conv1: conv(p / "conv1", 3, w, 3, 1, 1),
                bn1: bn(p / "bn1", w),
                pool: false,
            },
        });
        let mut blocks: Vec<(String, Box<dyn ModuleT>)> = Vec::new();
        for spec in &specs[first..end] {
            let (stage, index) = (format!("layer{}", spec.stage), spec.index.to_string());
            let bp = p / stage.as_str() / index.as_str();
            let block: Box<dyn ModuleT> = Box::new(Block::new(bp, spec, config.arch));
            blocks.push((spec.name.clone(), block));
        }
        let in_channels = if stem {
            3
        } else {
            specs.get(first).map_or_else(
                || specs[specs.len() - 1].out_channels(config.arch),
                |s| s.in_channels,
            )
        };
        let last_channels = if end == 0 {
            w
        } else {
            specs[end - 1].out_channels(config.arch)
        };
        // torchvision's fc (PyTorch's nn.Linear): weights U(+-1/sqrt(fan_in)), i.e. Kaiming
        // uniform with gain sqrt(1/3); tch's default (gain sqrt(2)) is 2.45x wider.
        let fc_init = nn::LinearConfig {
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Uniform,
                fan: nn::init::FanInOut::FanIn,
                non_linearity: nn::init::NonLinearity::ExplicitGain((1.0f64 / 3.0).sqrt()),
            },
            ..Default::default()
        };
        let fc = head.then(|| nn::linear(p / "fc", last_channels, config.num_classes, fc_init));
        let out_channels = if head {
            config.num_classes
        } else {
            last_channels
        };
        Ok(Self {
            config,
            stem: stem_layers,
            blocks,
            fc,
            in_channels,
            out_channels,
        })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }
    /// torchvision names of the blocks this part holds, in order.
    pub fn block_names(&self) -> Vec<&str> {
        self.blocks.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// Channels this part expects (3 with the stem).
    pub fn in_channels(&self) -> i64 {
        self.in_channels
    }
    /// Channels (or classes, with the head) this part produces.
    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = match &self.stem {
            Some(s) => {
                let y = x.apply(&s.conv1).apply_t(&s.bn1, train).relu();
                if s.pool {
                    y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
                } else {
                    y
                }
            }
            None => x.shallow_clone(),
        };
        for (_, block) in &self.blocks {
            x = block.forward_t(&x, train);
        }
        match &self.fc {
            Some(fc) => x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(fc),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn names(vs: &nn::VarStore) -> Vec<String> {
        let mut v: Vec<String> = vs.variables().into_keys().collect();
        v.sort();
        v
    }

    #[test]
    fn parses_cuts_and_arches() {
        assert_eq!(
            "layer4.0".parse::<Cut>().unwrap(),
            Cut {
                stage: 4,
                block: Some(0)
            }
        );
        assert_eq!("layer3".parse::<Cut>().unwrap().to_string(), "layer3");
        for bad in ["layer5", "layer0", "conv1", "layer3.x", "layer"] {
            assert!(bad.parse::<Cut>().is_err(), "{bad}");
        }
        assert_eq!("resnet101".parse::<Arch>().unwrap(), Arch::ResNet101);
        assert!("resnet19".parse::<Arch>().is_err());
        let c = ResNetConfig::new(Arch::ResNet18, 64, Stem::ImageNet);
        assert!(c.cut_index("layer4.2".parse().unwrap()).is_err());
    }

    #[test]
    fn torchvision_names_and_shapes() {
        let _rng = crate::testing::tch_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ResNetConfig::new(Arch::ResNet50, 64, Stem::ImageNet);
        let _net = ResNet::full(&vs.root(), cfg).unwrap();
        let vars = vs.variables();
        let shape = |n: &str| vars.get(n).map(|t| t.size()).unwrap_or_default();
        assert_eq!(shape("conv1.weight"), vec![64, 3, 7, 7]);
        assert_eq!(shape("bn1.running_mean"), vec![64]);
        assert_eq!(shape("layer1.0.downsample.0.weight"), vec![256, 64, 1, 1]);
        assert_eq!(shape("layer3.0.conv2.weight"), vec![256, 256, 3, 3]);
        assert_eq!(shape("layer4.2.bn3.running_var"), vec![2048]);
        assert_eq!(shape("fc.weight"), vec![1000, 2048]);
        // torchvision resnet50: 320 tensors in the state_dict, 53 of them num_batches_tracked.
        assert_eq!(vars.len(), 320 - 53);
        assert!(!vars.contains_key("layer1.1.downsample.0.weight"));
    }

    #[test]
    fn g_and_f_split_the_full_names() {
        let _rng = crate::testing::tch_rng_lock();
        for (arch, cut) in [(Arch::ResNet18, "layer4.0"), (Arch::ResNet101, "layer3")] {
            let cfg = ResNetConfig::new(arch, 16, Stem::ImageNet);
            let cut: Cut = cut.parse().unwrap();
            let (full, g, f) = (
                nn::VarStore::new(Device::Cpu),
                nn::VarStore::new(Device::Cpu),
                nn::VarStore::new(Device::Cpu),
            );
            ResNet::full(&full.root(), cfg).unwrap();
            let gn = ResNet::g(&g.root(), cfg, cut).unwrap();
            let fn_ = ResNet::f(&f.root(), cfg, cut).unwrap();
            let mut both = names(&g);
            both.extend(names(&f));
            both.sort();
            assert_eq!(both, names(&full));
            assert_eq!(gn.out_channels(), fn_.in_channels());
        }
    }

    #[test]
    fn g_then_f_equals_full_and_shapes_match() {
        let _rng = crate::testing::tch_rng_lock();
        let _guard = tch::no_grad_guard();
        tch::manual_seed(1);
        let cfg = ResNetConfig::new(Arch::ResNet18, 8, Stem::ImageNet);
        let cut: Cut = "layer4.0".parse().unwrap();
        let full_vs = nn::VarStore::new(Device::Cpu);
        let full = ResNet::full(&full_vs.root(), cfg).unwrap();
        let mut g_vs = nn::VarStore::new(Device::Cpu);
        let g = ResNet::g(&g_vs.root(), cfg, cut).unwrap();
        let mut f_vs = nn::VarStore::new(Device::Cpu);
        let f = ResNet::f(&f_vs.root(), cfg, cut).unwrap();
        g_vs.copy(&full_vs).unwrap();
        f_vs.copy(&full_vs).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let z = g.forward_t(&x, false);
        let [h, w, c] = cfg.feature_shape(cut, 64).unwrap();
        assert_eq!(z.size(), vec![2, c as i64, h as i64, w as i64]);
        let y = f.forward_t(&z, false);
        let y_full = full.forward_t(&x, false);
        assert_eq!(y.size(), vec![2, 1000]);
        let diff = (y - y_full).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn small_stem_keeps_resolution() {
        let _rng = crate::testing::tch_rng_lock();
        let _guard = tch::no_grad_guard();
        let cfg = ResNetConfig::new(Arch::ResNet34, 16, Stem::Small);
        for (cut, side, c) in [
            ("layer1", 32, 16),
            ("layer2", 16, 32),
            ("layer3", 8, 64),
            ("layer4", 4, 128),
        ] {
            assert_eq!(
                cfg.feature_shape(cut.parse().unwrap(), 32).unwrap(),
                [side, side, c]
            );
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let g = ResNet::g(&vs.root(), cfg, "layer3".parse().unwrap()).unwrap();
        let z = g.forward_t(
            &Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(z.size(), vec![1, 64, 8, 8]);
        assert_eq!(vs.variables()["conv1.weight"].size(), vec![16, 3, 3, 3]);
        // Odd sizes follow the conv arithmetic too.
        let cfg = ResNetConfig::new(Arch::ResNet50, 8, Stem::ImageNet);
        let vs = nn::VarStore::new(Device::Cpu);
        let cut = "layer3".parse().unwrap();
        let g = ResNet::g(&vs.root(), cfg, cut).unwrap();
        let z = g.forward_t(
            &Tensor::zeros([1, 3, 77, 77], (Kind::Float, Device::Cpu)),
            false,
        );
        let [h, _, c] = cfg.feature_shape(cut, 77).unwrap();
        assert_eq!(z.size(), vec![1, c as i64, h as i64, h as i64]);
    }
}
