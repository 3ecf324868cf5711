//! The divergence check of the streaming updates' losses, read from the device in windows.
//!
//! Reading a loss from a GPU waits for everything queued before it, so checking every
//! update's loss on the spot kept the host from preparing update n + 1 (sampling, gathers,
//! crop taps, uploads) while the GPU still ran update n. On a GPU the losses of
//! [`GPU_WINDOW`] updates are queued and read together; on the CPU every loss is read at
//! once, as before. A divergence is reported for the first update whose loss is not
//! finite, as before; the driver reads the window out before every evaluation point and
//! checkpoint, so nothing is saved from a network that diverged.

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

/// Updates whose losses are read together on a GPU.
pub const GPU_WINDOW: usize = 32;

/// Losses waiting to be checked, with the items their updates learnt.
#[derive(Default)]
pub struct LossWatch {
    pending: Vec<(Tensor, usize)>,
}

impl LossWatch {
    /// Queues the (scalar) `loss` of the update on `item`; checks the queue when it is full
    /// (at once on the CPU). Errors as [`check`](Self::check).
    pub fn push(
        &mut self,
        loss: Tensor,
        item: usize,
        describe: &dyn Fn(usize) -> String,
        lr_key: &str,
    ) -> Result<()> {
        let window = if loss.device().is_cuda() {
            GPU_WINDOW
        } else {
            1
        };
        self.pending.push((loss, item));
        if self.pending.len() >= window {
            self.check(describe, lr_key)?;
        }
        Ok(())
    }

    /// Reads every queued loss (one transfer) and empties the queue. Errors naming the first
    /// item whose loss is not finite ("the network diverged on ..."), with the key of the
    /// learning rate to lower.
    pub fn check(&mut self, describe: &dyn Fn(usize) -> String, lr_key: &str) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let losses: Vec<Tensor> = self.pending.iter().map(|(l, _)| l.view([1])).collect();
        let values = Vec::<f64>::try_from(Tensor::f_cat(&losses, 0)?.to_kind(Kind::Double))?;
        let items: Vec<usize> = self.pending.drain(..).map(|(_, item)| item).collect();
        for (loss, item) in values.into_iter().zip(items) {
            ensure!(
                loss.is_finite(),
                "the network diverged on {} (loss {}); lower {}",
                describe(item),
                loss,
                lr_key
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(item: usize) -> String {
        format!("item {item}")
    }

    #[test]
    fn names_the_first_item_whose_loss_is_not_finite() {
        let mut w = LossWatch::default();
        w.push(Tensor::from(0.5f32), 1, &describe, "lr").unwrap();
        let err = w
            .push(Tensor::from(f32::NAN), 2, &describe, "stream.lr")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the network diverged on item 2 (loss NaN); lower stream.lr"
        );
    }

    #[test]
    fn a_window_is_read_in_order_and_emptied() {
        let mut w = LossWatch::default();
        for (item, loss) in [(3, 1.0f32), (4, f32::INFINITY), (5, f32::NAN)] {
            w.pending.push((Tensor::from(loss), item));
        }
        let err = w.check(&describe, "lr").unwrap_err().to_string();
        assert!(err.contains("item 4 (loss inf)"), "{err}");
        assert!(w.pending.is_empty());
        w.check(&describe, "lr").unwrap();
    }
}
