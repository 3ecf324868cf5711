//! `precision: fp32 | bf16`: mixed precision as PyTorch's `torch.autocast` does it.
//!
//! With `bf16`, forward passes run inside libtorch's own autocast region for the device
//! (csrc/autocast.cpp; tch 0.26 only exposes CUDA's float16 switch): convolutions, matrix
//! products, linear layers and LSTMs compute in bfloat16 from bfloat16 copies of the fp32
//! weights (cast once per region and cached there), while losses, softmax and reductions
//! stay in fp32 (autocast's fp32 op list). The weights themselves, their gradients and the
//! optimiser state stay fp32 ("master weights", Micikevicius et al. 2018, "Mixed Precision
//! Training"); the backward pass runs each op in the dtype its forward used, as autograd
//! does. [`Precision::forward`] hands back fp32 outputs, so every loss, prediction and
//! probability downstream is computed and written in fp32.
//!
//! On the CPU bf16 is refused unless the CPU has bf16 instructions (AVX512-BF16 or
//! AMX-BF16 on x86, BF16 on Arm): libtorch would otherwise emulate them at a fraction of
//! fp32's speed ([`Precision::check`]).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The compute precision of a stage (config key `precision`, flag `--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32 (the default).
    #[default]
    Fp32,
    /// Mixed precision: bfloat16 compute, fp32 master weights, optimiser and losses.
    Bf16,
}

named_enum!(Precision, "precision", { Fp32 => "fp32", Bf16 => "bf16" });

extern "C" {
    fn remind_autocast_bf16(cuda: i32, enabled: i32) -> i32;
    fn remind_autocast_enter() -> i32;
    fn remind_autocast_exit() -> i32;
    fn remind_cuda_bf16_native(index: i32) -> i32;
}

/// An autocast region on the calling thread (autocast state is thread-local); leaving it
/// restores the state before and, for the outermost region, drops the cached bf16 weights.
struct Region {
    cuda: i32,
    before: i32,
}

impl Region {
    fn enter(device: Device) -> Region {
        let cuda = i32::from(device.is_cuda());
        // SAFETY: plain C functions of csrc/autocast.cpp that catch every C++ exception;
        // they touch only libtorch's thread-local autocast state.
        let before = unsafe { remind_autocast_bf16(cuda, 1) };
        // SAFETY: as above.
        unsafe { remind_autocast_enter() };
        Region { cuda, before }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; restores the state `enter` found.
        unsafe {
            remind_autocast_exit();
            remind_autocast_bf16(self.cuda, i32::from(self.before == 1));
        }
    }
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// Runs `f` (forward passes) in this precision on `device`: under bf16 autocast, or as
    /// it is for fp32. Tensors `f` returns may be bfloat16; see [`Self::forward`].
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        match self {
            Precision::Fp32 => f(),
            Precision::Bf16 => {
                let _region = Region::enter(device);
                f()
            }
        }
    }

    /// A forward pass `f` on input `x` in this precision: `x` laid out for it
    /// ([`Self::input`]), `f` under autocast ([`Self::autocast`]), the output in fp32 (the
    /// cast is part of the graph, so gradients flow back through it): losses and
    /// predictions stay fp32.
    pub fn forward(self, device: Device, x: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
        match self {
            Precision::Fp32 => f(x),
            Precision::Bf16 => {
                let x = self.input(x);
                self.autocast(device, || f(&x)).to_kind(Kind::Float)
            }
        }
    }

    /// A network's input for this precision: in bf16, a 4-D `[N, C, H, W]` tensor laid out
    /// channels-last (same shape, NHWC strides; a copy unless it is already), which
    /// oneDNN's bf16 convolutions need to pick their AMX kernels: in a PyTorch probe on an
    /// AMX Xeon (2 threads, the machine shared), ResNet-18's layer4.1 + fc training step
    /// ran at 0.63x fp32's speed on NCHW input and 3.6x on channels-last input (BENCHMARKS,
    /// "Mixed precision (bf16)"). Anything else, and fp32, as it is.
    pub fn input(self, x: &Tensor) -> Tensor {
        if self.is_fp32() || x.dim() != 4 || is_channels_last(x) {
            return x.shallow_clone();
        }
        x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    /// [`Self::forward`] for a fallible forward pass.
    pub fn try_forward(
        self,
        device: Device,
        x: &Tensor,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        match self {
            Precision::Fp32 => f(x),
            Precision::Bf16 => {
                let x = self.input(x);
                Ok(self.autocast(device, || f(&x))?.to_kind(Kind::Float))
            }
        }
    }

    /// Refuses bf16 where it would not run natively: on a CPU without bf16 instructions, or
    /// a CUDA card older than Ampere (compute capability below 8.0, no bf16 tensor cores)
    /// or whose libtorch cannot compute a bf16 matrix product. `what` names the setting
    /// for the message (e.g. "classify_stream.precision").
    pub fn check(self, device: Device, what: &str) -> Result<()> {
        if self.is_fp32() {
            return Ok(());
        }
        if device.is_cuda() {
            let index = match device {
                Device::Cuda(i) => i32::try_from(i).unwrap_or(-1),
                _ => 0,
            };
            // SAFETY: a plain C function of csrc/autocast.cpp that catches every C++
            // exception; it only queries the device's properties.
            let why = match unsafe { remind_cuda_bf16_native(index) } {
                1 => None,
                0 => Some(
                    "the card has no native bf16 (expected compute capability 8.0 or later, \
                     Ampere's tensor cores; found an older card), so libtorch would emulate it",
                ),
                2 => Some(
                    "this libtorch was built without cuDNN, so whether the card computes bf16 \
                     natively cannot be told (expected a CUDA build of libtorch with cuDNN)",
                ),
                3 => Some("no CUDA backend is loaded (expected a CUDA build of libtorch)"),
                4 => Some("there is no such CUDA device"),
                _ => Some("libtorch could not query the card's properties"),
            };
            if let Some(why) = why {
                bail!("{what}: bf16 refused on {device:?}: {why}; use fp32 there");
            }
            let probe = Tensor::ones([8, 8], (Kind::BFloat16, device));
            return match probe.f_matmul(&probe) {
                Ok(_) => Ok(()),
                Err(e) => {
                    bail!("{what}: bf16 on {device:?}: the device cannot compute in bf16 ({e})")
                }
            };
        }
        let cpu = CpuBf16::detect();
        if !cpu.native() {
            bail!(
                "{what}: bf16 refused on this CPU ({}): it has no bf16 instructions (expected \
                 avx512_bf16 or amx_bf16 among /proc/cpuinfo's flags, or bf16 on Arm; found \
                 none), so libtorch would emulate bf16 at a fraction of fp32's speed; use \
                 fp32 here",
                cpu.model
            );
        }
        Ok(())
    }

    /// What a stage does before computing in this precision: [`Self::check`], a log line
    /// when bf16, and the record its completion marker keeps (`precision`, and for bf16 on
    /// the CPU the instructions found).
    pub fn prepare(self, device: Device, what: &str) -> Result<serde_json::Value> {
        self.check(device, what)?;
        if self.is_fp32() {
            return Ok(serde_json::json!({ "precision": self.name() }));
        }
        eprintln!("{what}: {}", self.describe(device));
        let mut record = serde_json::json!({ "precision": self.name() });
        if !device.is_cuda() {
            record["cpu_bf16"] = serde_json::to_value(CpuBf16::detect())?;
        }
        Ok(record)
    }

    /// One line for the log: the precision and, for bf16 on the CPU, its instructions.
    pub fn describe(self, device: Device) -> String {
        match (self, device.is_cuda()) {
            (Precision::Fp32, _) => "fp32".into(),
            (Precision::Bf16, true) => format!("bf16 mixed precision (autocast on {device:?})"),
            (Precision::Bf16, false) => {
                format!(
                    "bf16 mixed precision (autocast on the CPU; {})",
                    CpuBf16::detect()
                )
            }
        }
    }
}

/// Whether a 4-D tensor is laid out NHWC in memory (channels-last).
fn is_channels_last(x: &Tensor) -> bool {
    let (size, stride) = (x.size(), x.stride());
    let (c, h, w) = (size[1], size[2], size[3]);
    stride[1] == 1
        && stride[3] == c
        && stride[2] == w * c
        && (size[0] == 1 || stride[0] == h * w * c)
}

/// Names a file read instead of `/proc/cpuinfo` by [`CpuBf16::detect`].
pub const CPUINFO_ENV: &str = "REMIND_CPUINFO";

/// The CPU's bf16 instructions, read from `/proc/cpuinfo` (what the kernel reports the CPU
/// and the OS support).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuBf16 {
    /// The CPU's model name.
    pub model: String,
    /// AVX512-BF16 (x86): bf16 dot products in AVX-512 registers.
    pub avx512_bf16: bool,
    /// AMX-BF16 (x86, Sapphire Rapids and later): bf16 tile matrix multiplication.
    pub amx_bf16: bool,
    /// BF16 (Arm v8.6 and later).
    pub arm_bf16: bool,
}

impl CpuBf16 {
    /// Reads `/proc/cpuinfo` (or the file `REMIND_CPUINFO` names: how the tests show
    /// the refusal on any machine); on a system without it, a CPU with none of them.
    pub fn detect() -> CpuBf16 {
        let path = std::env::var_os(CPUINFO_ENV).unwrap_or_else(|| "/proc/cpuinfo".into());
        std::fs::read_to_string(path)
            .map(|text| CpuBf16::parse(&text))
            .unwrap_or_default()
    }

    /// Parses the text of `/proc/cpuinfo` (its first processor).
    pub fn parse(cpuinfo: &str) -> CpuBf16 {
        let mut out = CpuBf16::default();
        for line in cpuinfo.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key.trim() {
                "model name" if out.model.is_empty() => out.model = value.trim().to_string(),
                "flags" => {
                    let flags: Vec<&str> = value.split_whitespace().collect();
                    out.avx512_bf16 |= flags.contains(&"avx512_bf16");
                    out.amx_bf16 |= flags.contains(&"amx_bf16");
                }
                "Features" => out.arm_bf16 |= value.split_whitespace().any(|f| f == "bf16"),
                _ => {}
            }
        }
        if out.model.is_empty() {
            out.model = "unknown model".into();
        }
        out
    }

    /// Whether bf16 runs natively.
    pub fn native(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16 || self.arm_bf16
    }
}

impl std::fmt::Display for CpuBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "{}: avx512_bf16 {}, amx_bf16 {}",
            self.model,
            yes(self.avx512_bf16),
            yes(self.amx_bf16)
        )?;
        if self.arm_bf16 {
            f.write_str(", arm bf16 yes")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};

    #[test]
    fn parses_cpuinfo_flags() {
        let amx = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n";
        let c = CpuBf16::parse(amx);
        assert_eq!(c.model, "Intel(R) Xeon(R)");
        assert!(c.avx512_bf16 && c.amx_bf16 && c.native());
        let old = "model name\t: Old CPU\nflags\t\t: fpu sse2 avx2\n";
        assert!(!CpuBf16::parse(old).native());
        let arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n";
        let a = CpuBf16::parse(arm);
        assert!(a.arm_bf16 && a.native() && a.model == "unknown model");
    }

    #[test]
    fn bf16_input_is_channels_last_with_the_same_values() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = Precision::Bf16.input(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(is_channels_last(&y) && !is_channels_last(&x));
        assert!(y.equal(&x));
        assert_eq!(Precision::Fp32.input(&x).stride(), x.stride());
        assert_eq!(
            Precision::Bf16.input(&y).data_ptr(),
            y.data_ptr(),
            "copied again"
        );
    }

    #[test]
    fn names_and_default() {
        assert_eq!(Precision::default(), Precision::Fp32);
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        let e = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("expected fp32 or bf16"), "{e}");
    }

    /// Autocast really computes a linear layer in bf16 (its output is bf16 inside the
    /// region, and rounds like bf16), leaves the fp32 weights and their gradients fp32, and
    /// is off again after the region.
    #[test]
    fn bf16_region_computes_in_bf16_with_fp32_master_weights() {
        if !CpuBf16::detect().native() {
            eprintln!("skipped: no bf16 instructions on this CPU");
            return;
        }
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root(), 64, 8, Default::default());
        let x = Tensor::randn([4, 64], (Kind::Float, Device::Cpu));
        let inner = Precision::Bf16.autocast(Device::Cpu, || lin.forward(&x));
        assert_eq!(inner.kind(), Kind::BFloat16);
        let y = Precision::Bf16.forward(Device::Cpu, &x, |x| lin.forward(x));
        assert_eq!(y.kind(), Kind::Float);
        let exact = lin.forward(&x);
        assert_eq!(
            exact.kind(),
            Kind::Float,
            "autocast left on after the region"
        );
        let diff = f64::try_from((&y - &exact).abs().max()).unwrap();
        assert!(
            diff > 0.0 && diff < 0.1,
            "bf16 rounding expected, found max diff {diff}"
        );
        let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
        opt.backward_step(&y.square().mean(Kind::Float));
        for (_, v) in vs.variables() {
            assert_eq!(v.kind(), Kind::Float);
            assert_eq!(v.grad().kind(), Kind::Float);
        }
    }
}
