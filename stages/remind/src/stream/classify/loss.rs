//! The loss of a streamed classification batch: cross-entropy, and with mixup (paper,
//! section 3.3; Zhang et al., 2018) the mix of the two label sets' cross-entropies with
//! weights lambda and 1 - lambda.
//!
//! Two ways to compute the same mixed loss ([`MixupLoss`]): the authors' two
//! cross-entropies, which the CPU keeps (every CPU table in BENCHMARKS.md was made with
//! them, and they are what `make fashion-parity` compares), and one log-softmax with both
//! labels' log-probabilities gathered at once, which a GPU takes: there the step is bound
//! by the host issuing kernels and autograd nodes (BENCHMARKS.md, "On a GPU"), and the
//! gathered form issues 4 nodes where the two cross-entropies issue 7.

use tch::{Device, Kind, Tensor};

use crate::run::device::upload;

/// How a mixed batch's loss is computed (the value is the same up to float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixupLoss {
    /// `lambda x CE(logits, y_a) + (1 - lambda) x CE(logits, y_b)`, each cross-entropy a
    /// log-softmax and a mean negative log-likelihood: the authors' arithmetic.
    TwoCrossEntropies,
    /// `-sum_i (lambda log p_i[y_a,i] + (1 - lambda) log p_i[y_b,i]) / B` from one
    /// log-softmax and one gather.
    Gathered,
}

impl MixupLoss {
    /// Gathered on a GPU, the authors' two cross-entropies on the CPU.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            MixupLoss::Gathered
        } else {
            MixupLoss::TwoCrossEntropies
        }
    }

    /// What the loss needs besides the logits and labels, made where the batch is prepared
    /// (on the preparing thread, off the step's critical path): for [`Self::Gathered`] the
    /// two label sets' weights `[-lambda / B, -(1 - lambda) / B]` (a `[2]` f32 tensor on
    /// `device`), for a batch of `b` rows mixed with `lambda`; None without mixup
    /// (`lambda` = 1) or for the two cross-entropies.
    pub fn weights(self, lambda: f64, b: usize, device: Device) -> Option<Tensor> {
        (self == MixupLoss::Gathered && lambda < 1.0).then(|| {
            let b = b as f64;
            let w = [(-lambda / b) as f32, (-(1.0 - lambda) / b) as f32];
            upload(&Tensor::from_slice(&w), device)
        })
    }
}

/// The batch's loss (a scalar): `logits` `[B, K]`; `targets` `[B]` class indices, or `[2B]`
/// with mixup (label set a, then b); `lambda` mixup's weight of set a (used only with
/// `[2B]` targets);
/// `weights` from [`MixupLoss::weights`] (the gathered form), else None (two
/// cross-entropies).
pub fn batch_loss(
    logits: &Tensor,
    targets: &Tensor,
    lambda: f64,
    weights: Option<&Tensor>,
) -> Tensor {
    // Mixed exactly when both label sets came (`Updater::prepare`), whatever lambda holds.
    let b = logits.size()[0];
    if targets.size()[0] != 2 * b {
        return logits.cross_entropy_for_logits(targets);
    }
    match weights {
        Some(w) => {
            // [2B] -> [B, 2]: row i holds item i's label in set a and in set b.
            let index = targets.reshape([2, b]).tr();
            (logits.log_softmax(-1, Kind::Float).gather(1, &index, false) * w).sum(Kind::Float)
        }
        None => {
            logits.cross_entropy_for_logits(&targets.narrow(0, 0, b)) * lambda
                + logits.cross_entropy_for_logits(&targets.narrow(0, b, b)) * (1.0 - lambda)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gathered form gives the two cross-entropies' loss and gradient, up to rounding;
    /// without mixup both are the plain cross-entropy.
    #[test]
    fn gathered_mixup_loss_matches_two_cross_entropies() {
        let _rng = crate::testing::tch_rng_lock();
        tch::manual_seed(5);
        let (b, k) = (51, 1000);
        let logits = Tensor::randn([b, k], (Kind::Float, Device::Cpu)) * 3.0;
        let targets = Tensor::randint(k, [2 * b], (Kind::Int64, Device::Cpu));
        let loss_and_grad = |form: MixupLoss, lambda: f64| -> (f64, Tensor) {
            let x = logits.detach().set_requires_grad(true);
            let w = form.weights(lambda, b as usize, Device::Cpu);
            let t = if lambda < 1.0 {
                targets.shallow_clone()
            } else {
                targets.narrow(0, 0, b)
            };
            let loss = batch_loss(&x, &t, lambda, w.as_ref());
            loss.backward();
            (loss.double_value(&[]), x.grad())
        };
        for lambda in [0.3, 0.97, 1.0] {
            let (l2, g2) = loss_and_grad(MixupLoss::TwoCrossEntropies, lambda);
            let (l1, g1) = loss_and_grad(MixupLoss::Gathered, lambda);
            assert!(
                (l1 - l2).abs() < 1e-5 * l2.abs(),
                "lambda {lambda}: {l1} vs {l2}"
            );
            let dg = (&g1 - &g2).abs().max().double_value(&[]);
            let scale = g2.abs().max().double_value(&[]);
            assert!(
                dg < 1e-5 * scale,
                "lambda {lambda}: gradients differ by {dg}"
            );
            assert!(l2 > 1.0, "a random batch's loss is large: {l2}");
        }
        // The weights are what the formula says, and absent where not needed.
        let w = MixupLoss::Gathered.weights(0.25, 4, Device::Cpu).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), [-0.0625, -0.1875]);
        assert!(MixupLoss::Gathered.weights(1.0, 4, Device::Cpu).is_none());
        assert!(MixupLoss::TwoCrossEntropies
            .weights(0.25, 4, Device::Cpu)
            .is_none());
        assert_eq!(
            MixupLoss::for_device(Device::Cpu),
            MixupLoss::TwoCrossEntropies
        );
        assert_eq!(MixupLoss::for_device(Device::Cuda(0)), MixupLoss::Gathered);
    }
}
