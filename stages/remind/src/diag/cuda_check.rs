//! CUDA against CPU: the same inputs and the same weights through PQ (encode, decode, fit),
//! the two VQA models and the classification network F on both devices. Each check
//! reports the largest difference it measured and its limit; `remind-cuda-check` exits
//! non-zero when one is over. The CPU is the reference the test suite verifies.
//!
//! Limits: PQ decode is a gather (exact); PQ encode may differ only on near-ties of the
//! distance (float rounding differs between the CPU kernel and cuBLAS). The networks'
//! convolutions run through cuDNN, which uses TF32 by default on Ampere and later GPUs
//! (about 10 mantissa bits), so their outputs and gradients get relative limits of 5e-2
//! (F's gradients through batch norm in training mode, a difference of nearly equal terms,
//! measured 2.4e-2 on an H200); with `NVIDIA_TF32_OVERRIDE=0` (full float32 in cuDNN and
//! cuBLAS) the limit is 1e-3 (measured at most 5.1e-4).

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::models::vqa::{ModelConfig, ModelKind, QuestionInput, Questions, VqaModel};
use crate::models::{Arch, Cut, ResNet, ResNetConfig, Stem};
use crate::pq::{PqParams, ProductQuantizer};
use crate::stream::classify::loss::{batch_loss, MixupLoss};
use crate::stream::decode::Decoder;
use crate::train::optim::{OptimKind, Optimizer};

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    pub ok: bool,
    pub what: String,
}

fn check(out: &mut Vec<Check>, name: &str, value: f64, limit: f64, what: &str) {
    out.push(Check {
        name: name.into(),
        value,
        limit,
        ok: value.is_finite() && value <= limit,
        what: what.into(),
    });
}

/// `max |a - b| / max |a|` (a on the CPU, b anywhere).
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let b = b.to_device(Device::Cpu);
    let scale = a.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

/// Clustered vectors shaped like ReLU feature maps (non-negative, low rank plus noise).
fn clustered(n: i64, d: i64) -> Tensor {
    let cpu = (Kind::Float, Device::Cpu);
    let centers = Tensor::randn([64, d], cpu) * 2.0;
    let idx = Tensor::randint(64, [n], (Kind::Int64, Device::Cpu));
    (centers.index_select(0, &idx) + Tensor::randn([n, d], cpu) * 0.5).relu()
}

/// Whether cuDNN and cuBLAS are held to full float32 (`NVIDIA_TF32_OVERRIDE=0`).
pub fn tf32_disabled() -> bool {
    std::env::var("NVIDIA_TF32_OVERRIDE").is_ok_and(|v| v.trim() == "0")
}

/// Runs every comparison on `device` (a CUDA device) against the CPU.
pub fn cuda_check(device: Device) -> Result<Vec<Check>> {
    ensure!(
        device.is_cuda(),
        "the CUDA check needs a CUDA device, found {device:?}"
    );
    let net_limit = if tf32_disabled() { 1e-3 } else { 5e-2 };
    compare_devices(device, 40_000, net_limit)
}

/// Every comparison of `device` against the CPU, PQ on `pq_vectors` training vectors,
/// network outputs and gradients within `net_limit` (relative).
fn compare_devices(device: Device, pq_vectors: i64, net_limit: f64) -> Result<Vec<Check>> {
    tch::manual_seed(0);
    let mut out = Vec::new();
    tch::no_grad(|| pq_checks(device, pq_vectors, &mut out))?;
    for kind in [ModelKind::SMac, ModelKind::UpDown] {
        vqa_checks(kind, device, device.is_cuda(), net_limit, &mut out)?;
    }
    classifier_checks(device, net_limit, &mut out)?;
    Ok(out)
}

fn pq_checks(device: Device, n: i64, out: &mut Vec<Check>) -> Result<()> {
    let d = 512i64;
    let x = clustered(n, d);
    let hold = clustered(5_000, d);
    let params = PqParams {
        iterations: 10,
        ..PqParams::default()
    };
    let (pq, _) = ProductQuantizer::fit(&x, &params)?;
    let gpu = pq.to_device(device)?;
    let codes_cpu = pq.encode(&hold)?;
    let codes_gpu = gpu.encode(&hold)?.to_device(Device::Cpu);
    let differ = codes_cpu.ne_tensor(&codes_gpu);
    let mismatches = differ.sum(Kind::Int64).int64_value(&[]);
    check(
        out,
        "pq.encode.mismatch_fraction",
        mismatches as f64 / codes_cpu.numel() as f64,
        1e-3,
        "codes that differ between the CPU kernel and the CUDA encoder",
    );
    // A differing code must be a near-tie: both centroids at (almost) the same distance.
    let mut worst_gap = 0.0f64;
    if mismatches > 0 {
        let at = differ.nonzero();
        let dsub = pq.dsub() as i64;
        for r in 0..at.size()[0].min(2_000) {
            let (i, s) = (at.int64_value(&[r, 0]), at.int64_value(&[r, 1]));
            let sub = hold.get(i).narrow(0, s * dsub, dsub);
            let dist = |code: i64| {
                (pq.centroids().get(s).get(code) - &sub)
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[])
            };
            let (a, b) = (
                dist(codes_cpu.int64_value(&[i, s])),
                dist(codes_gpu.int64_value(&[i, s])),
            );
            worst_gap = worst_gap.max((a - b).abs() / a.max(b).max(1e-12));
        }
    }
    check(
        out,
        "pq.encode.tie_gap",
        worst_gap,
        1e-4,
        "largest relative distance gap between the two devices' choices where they differ",
    );
    let dec_cpu = pq.decode(&codes_cpu)?;
    let dec_gpu = gpu.decode(&codes_cpu.to_device(device))?;
    check(
        out,
        "pq.decode.max_abs_diff",
        (&dec_cpu - dec_gpu.to_device(Device::Cpu))
            .abs()
            .max()
            .double_value(&[]),
        0.0,
        "decoding the same codes on both devices (a gather: exact)",
    );
    // The streams' decoder (codes of 7x7 maps, L2-normalised positions): CPU decode then
    // upload against upload then GPU decode.
    let items = &Vec::<u8>::try_from(&codes_cpu.narrow(0, 0, 49 * 100).view([-1]))?;
    let decode = |pq: &ProductQuantizer| {
        Decoder {
            pq: pq.decode_view(),
            code_shape: [7, 7, pq.num_subspaces()],
            device,
            l2_normalize: true,
            channels_last: false,
        }
        .decode(items)
    };
    check(
        out,
        "decoder.rel_diff",
        rel_diff(&decode(&pq)?.to_device(Device::Cpu), &decode(&gpu)?),
        1e-5,
        "stream decoder, 100 items of 7x7 codes, L2-normalised: CPU decode against GPU decode",
    );
    // A fit on the GPU: another float order, the same quality.
    let (fit_gpu, _) = ProductQuantizer::fit(&x.to_device(device), &params)?;
    check(
        out,
        "pq.fit.cuda_mse_ratio",
        fit_gpu.mse(&hold.to_device(device))? / pq.mse(&hold)?,
        1.02,
        "held-out reconstruction error of a CUDA fit over the CPU fit's",
    );
    // OPQ: the rotation is applied on the device before encoding.
    let opq_params = PqParams {
        num_subspaces: 16,
        iterations: 5,
        opq: true,
        opq_iterations: 3,
        ..PqParams::default()
    };
    let xo = clustered(8_000, 128);
    let (opq, _) = ProductQuantizer::fit(&xo, &opq_params)?;
    let co = opq.encode(&xo)?;
    let cg = opq.to_device(device)?.encode(&xo)?.to_device(Device::Cpu);
    check(
        out,
        "opq.encode.mismatch_fraction",
        co.ne_tensor(&cg).sum(Kind::Int64).int64_value(&[]) as f64 / co.numel() as f64,
        2e-3,
        "OPQ codes that differ between the devices (rotation then nearest centroid)",
    );
    Ok(())
}

/// Variables of `src` copied into a store of the same layout on `device`.
fn copy_store(src: &VarStore, dst: &mut VarStore) -> Result<()> {
    dst.copy(src)?;
    Ok(())
}

/// The worst `||g_a - g_b|| / ||g_a||` over the trainable variables whose gradient is not
/// negligible (norm at least 1e-4 of the largest): a variable whose gradient is zero in
/// exact arithmetic (the bias of attention logits before a softmax) holds only rounding
/// noise on either device. Stores built by the same code list their variables in the same
/// order.
fn worst_grad(a: &VarStore, b: &VarStore) -> f64 {
    let pairs: Vec<(Tensor, Tensor)> = a
        .trainable_variables()
        .iter()
        .zip(b.trainable_variables().iter())
        .filter(|(va, vb)| va.grad().defined() && vb.grad().defined())
        .map(|(va, vb)| (va.grad(), vb.grad().to_device(Device::Cpu)))
        .collect();
    let norm = |t: &Tensor| t.norm().double_value(&[]);
    let largest = pairs.iter().map(|(g, _)| norm(g)).fold(0.0, f64::max);
    pairs
        .iter()
        .filter(|(g, _)| norm(g) >= 1e-4 * largest)
        .map(|(g, h)| norm(&(g - h)) / norm(g))
        .fold(0.0, f64::max)
}

/// A VQA model on `device` against the CPU: eval logits, gradients, and three Adamax steps
/// (`multi_tensor`: the device's optimiser steps with multi-tensor operations, as on a
/// GPU; the CPU's per tensor).
fn vqa_checks(
    kind: ModelKind,
    device: Device,
    multi_tensor: bool,
    limit: f64,
    out: &mut Vec<Check>,
) -> Result<()> {
    let cfg = ModelConfig {
        kind,
        in_channels: 64,
        dim: 64,
        steps: 4,
        embed_dim: 32,
        lstm_hidden: 32,
        dropout: 0.0,
        num_answers: 28,
        vocab_size: 50,
        question_input: QuestionInput::Tokens,
        l2_normalize_features: kind == ModelKind::UpDown,
        freeze_embeddings: false,
        ..ModelConfig::default()
    };
    let vs_cpu = VarStore::new(Device::Cpu);
    let cpu_model = VqaModel::new(&vs_cpu.root(), &cfg, None)?;
    let mut vs_gpu = VarStore::new(device);
    let gpu_model = VqaModel::new(&vs_gpu.root(), &cfg, None)?;
    copy_store(&vs_cpu, &mut vs_gpu)?;
    let b = 16i64;
    let feats = Tensor::randn([b, 64, 8, 8], (Kind::Float, Device::Cpu)).relu();
    let tokens = Tensor::randint_low(1, 50, [b, 10], (Kind::Int64, Device::Cpu));
    let lengths = Tensor::randint_low(3, 11, [b], (Kind::Int64, Device::Cpu));
    let answers = Tensor::randint(28, [b], (Kind::Int64, Device::Cpu));
    let (tg, lg) = (tokens.to_device(device), lengths.to_device(device));
    let q_cpu = Questions::Tokens {
        tokens: &tokens,
        lengths: &lengths,
    };
    let q_gpu = Questions::Tokens {
        tokens: &tg,
        lengths: &lg,
    };
    let name = match kind {
        ModelKind::SMac => "smac",
        ModelKind::UpDown => "updown",
    };
    let fg = feats.to_device(device);
    let eval_cpu = tch::no_grad(|| cpu_model.forward_t(&feats, &q_cpu, false))?;
    let eval_gpu = tch::no_grad(|| gpu_model.forward_t(&fg, &q_gpu, false))?;
    check(
        out,
        &format!("vqa.{name}.logits_rel_diff"),
        rel_diff(&eval_cpu, &eval_gpu),
        limit,
        "eval-mode answer logits, same weights and inputs",
    );
    let loss_cpu = cpu_model
        .forward_t(&feats, &q_cpu, true)?
        .cross_entropy_for_logits(&answers);
    let loss_gpu = gpu_model
        .forward_t(&fg, &q_gpu, true)?
        .cross_entropy_for_logits(&answers.to_device(device));
    loss_cpu.backward();
    loss_gpu.backward();
    check(
        out,
        &format!("vqa.{name}.grad_rel_diff"),
        worst_grad(&vs_cpu, &vs_gpu),
        limit,
        "gradients of the training loss, worst variable (relative norm)",
    );
    // Adamax from these gradients, then two more steps: the updated models stay together.
    let mut opt_cpu = Optimizer::new(&vs_cpu, OptimKind::adamax()).multi_tensor(false);
    let mut opt_gpu = Optimizer::new(&vs_gpu, OptimKind::adamax()).multi_tensor(multi_tensor);
    let ag = answers.to_device(device);
    opt_cpu.step(1e-3)?;
    opt_gpu.step(1e-3)?;
    for _ in 0..2 {
        let l = cpu_model.forward_t(&feats, &q_cpu, true)?;
        opt_cpu.backward_step(&l.cross_entropy_for_logits(&answers), 1e-3)?;
        let l = gpu_model.forward_t(&fg, &q_gpu, true)?;
        opt_gpu.backward_step(&l.cross_entropy_for_logits(&ag), 1e-3)?;
    }
    let eval_cpu = tch::no_grad(|| cpu_model.forward_t(&feats, &q_cpu, false))?;
    let eval_gpu = tch::no_grad(|| gpu_model.forward_t(&fg, &q_gpu, false))?;
    check(
        out,
        &format!("vqa.{name}.after_adamax_logits_rel_diff"),
        rel_diff(&eval_cpu, &eval_gpu),
        limit,
        "eval-mode answer logits after three Adamax steps (lr 1e-3), each device's \
         optimiser (a GPU's multi-tensor)",
    );
    Ok(())
}

fn classifier_checks(device: Device, limit: f64, out: &mut Vec<Check>) -> Result<()> {
    // The ImageNet protocol's F: ResNet-18 from layer4.1, 7x7x512 maps, 1000 classes.
    let mut cfg = ResNetConfig::new(Arch::ResNet18, 64, Stem::ImageNet);
    cfg.num_classes = 1000;
    let cut: Cut = "layer4.0".parse()?;
    let c = cfg.channels_after(cut)?;
    let vs_cpu = VarStore::new(Device::Cpu);
    let f_cpu = ResNet::f(&vs_cpu.root(), cfg, cut)?;
    let mut vs_gpu = VarStore::new(device);
    let f_gpu = ResNet::f(&vs_gpu.root(), cfg, cut)?;
    copy_store(&vs_cpu, &mut vs_gpu)?;
    let x = Tensor::randn([51, c, 7, 7], (Kind::Float, Device::Cpu)).relu();
    let y = Tensor::randint(1000, [51], (Kind::Int64, Device::Cpu));
    let xg = x.to_device(device);
    // Eval-mode logits of both copies of F on the same maps.
    let eval_diff = || {
        let cpu = tch::no_grad(|| f_cpu.forward_t(&x, false));
        rel_diff(&cpu, &tch::no_grad(|| f_gpu.forward_t(&xg, false)))
    };
    check(
        out,
        "classify.f.logits_rel_diff",
        eval_diff(),
        limit,
        "eval-mode logits of F (ResNet-18 layer4.1 + classifier), same weights and maps",
    );
    let loss_cpu = f_cpu.forward_t(&x, true).cross_entropy_for_logits(&y);
    let loss_gpu = f_gpu
        .forward_t(&xg, true)
        .cross_entropy_for_logits(&y.to_device(device));
    loss_cpu.backward();
    loss_gpu.backward();
    check(
        out,
        "classify.f.grad_rel_diff",
        worst_grad(&vs_cpu, &vs_gpu),
        limit,
        "gradients of F's training loss (batch-norm in training mode), worst variable",
    );
    // One SGD step on each: the updated weights stay together.
    let sgd = |vs: &VarStore| {
        let config = nn::Sgd {
            momentum: 0.9,
            wd: 1e-5,
            ..Default::default()
        };
        nn::OptimizerConfig::build(config, vs, 0.1)
    };
    let (mut sgd_cpu, mut sgd_gpu) = (sgd(&vs_cpu)?, sgd(&vs_gpu)?);
    sgd_cpu.step();
    sgd_gpu.step();
    check(
        out,
        "classify.f.after_step_logits_rel_diff",
        eval_diff(),
        limit,
        "eval-mode logits after one SGD step (momentum 0.9, lr 0.1) on each device",
    );
    let arithmetic = MixupLoss::for_device(device);
    remind_step_check(device, arithmetic, cfg, cut, &x, limit, out)
}

/// REMIND's step as `device` computes it with `arithmetic` (on a GPU the gathered mixup
/// loss and multi-tensor SGD: [`MixupLoss::for_device`]) against the CPU's (the authors'
/// two cross-entropies, per-tensor SGD): three mixed steps from the same weights, then the
/// eval-mode logits.
fn remind_step_check(
    device: Device,
    arithmetic: MixupLoss,
    cfg: ResNetConfig,
    cut: Cut,
    x: &Tensor,
    limit: f64,
    out: &mut Vec<Check>,
) -> Result<()> {
    let vs_cpu = VarStore::new(Device::Cpu);
    let f_cpu = ResNet::f(&vs_cpu.root(), cfg, cut)?;
    let mut vs_gpu = VarStore::new(device);
    let f_gpu = ResNet::f(&vs_gpu.root(), cfg, cut)?;
    copy_store(&vs_cpu, &mut vs_gpu)?;
    let n = x.size()[0];
    let targets = Tensor::randint(cfg.num_classes, [2 * n], (Kind::Int64, Device::Cpu));
    let sgd = OptimKind::Sgd {
        momentum: 0.9,
        weight_decay: 1e-5,
    };
    let train = |vs: &VarStore, f: &ResNet, dev: Device, how: MixupLoss| -> Result<Tensor> {
        let multi_tensor = how == MixupLoss::Gathered;
        let mut opt = Optimizer::new(vs, sgd).multi_tensor(multi_tensor);
        let (x, targets) = (x.to_device(dev), targets.to_device(dev));
        for lambda in [0.3, 0.8, 0.55] {
            let w = how.weights(lambda, n as usize, dev);
            let loss = batch_loss(&f.forward_t(&x, true), &targets, lambda, w.as_ref());
            opt.backward_step(&loss, 0.05)?;
        }
        Ok(tch::no_grad(|| f.forward_t(&x, false)))
    };
    let cpu = train(&vs_cpu, &f_cpu, Device::Cpu, MixupLoss::TwoCrossEntropies)?;
    let gpu = train(&vs_gpu, &f_gpu, device, arithmetic)?;
    check(
        out,
        "classify.remind_step.logits_rel_diff",
        rel_diff(&cpu, &gpu),
        limit,
        "eval-mode logits after three of REMIND's mixed steps, each device's arithmetic \
         (a GPU: gathered mixup loss, multi-tensor SGD)",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU against itself: every check runs and measures no difference; a CPU device
    /// is refused by the public entry point.
    #[test]
    fn cpu_against_cpu_is_exact() {
        let _rng = crate::testing::tch_rng_lock();
        assert!(cuda_check(Device::Cpu).is_err());
        let checks = compare_devices(Device::Cpu, 3_000, 0.0).unwrap();
        assert_eq!(checks.len(), 16);
        for c in &checks {
            assert!(c.ok, "{c:?}");
            assert!(c.name.ends_with("mse_ratio") || c.value == 0.0, "{c:?}");
        }
    }

    /// The REMIND-step check tells the two arithmetics apart on the CPU (a difference of
    /// rounding, not zero) and holds them within a tight limit.
    #[test]
    fn remind_step_check_compares_the_gpu_arithmetic() {
        let _rng = crate::testing::tch_rng_lock();
        tch::manual_seed(2);
        let mut cfg = ResNetConfig::new(Arch::ResNet18, 8, Stem::ImageNet);
        cfg.num_classes = 20;
        let cut: Cut = "layer4.0".parse().unwrap();
        let c = cfg.channels_after(cut).unwrap();
        let x = Tensor::randn([9, c, 4, 4], (Kind::Float, Device::Cpu)).relu();
        let mut out = Vec::new();
        let gathered = MixupLoss::Gathered;
        remind_step_check(Device::Cpu, gathered, cfg, cut, &x, 1e-4, &mut out).unwrap();
        assert!(out[0].ok && out[0].value > 0.0, "{:?}", out[0]);
    }

    /// Likewise the VQA checks' Adamax steps: per tensor against multi-tensor on the CPU.
    #[test]
    fn vqa_adamax_check_compares_the_multi_tensor_step() {
        let _rng = crate::testing::tch_rng_lock();
        tch::manual_seed(4);
        let mut out = Vec::new();
        vqa_checks(ModelKind::SMac, Device::Cpu, true, 1e-4, &mut out).unwrap();
        let adamax = out.iter().find(|c| c.name.contains("adamax")).unwrap();
        assert!(adamax.ok && adamax.value > 0.0, "{adamax:?}");
        assert!(out.iter().all(|c| c.ok), "{out:?}");
    }
}
