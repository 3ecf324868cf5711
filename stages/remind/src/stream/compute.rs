//! What a stream's training cost, next to its accuracy (issue #17): the `compute` block
//! every method writes into its `complete.json` and `remind-evaluate` reports.
//!
//! One [`Meter`] per run, started by the driver. The optimiser steps of a run are counted
//! where they are taken: the driver counts the streamed updates, the tasks count the
//! mini-batch steps of base initialisation and offline training ([`count_step`]). The
//! counts live in a thread-local tally (training runs on the driver's thread), so tests
//! running streams on parallel threads do not mix them. Time spent in evaluation points
//! and in the bare-step floor measurement is taken out of the wall time ([`excluded`]).

use std::cell::Cell;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// FLOPs of training per item relative to its forward pass: the forward pass, then a
/// backward pass of about twice its cost (gradients with respect to the activations and
/// to the weights, one matmul each per forward matmul) — the usual 3x of Kaplan et al.
/// (2020) and of the `6 N` per token rule.
pub const TRAIN_OVER_FORWARD: f64 = 3.0;

/// A run's compute (key `compute` of `complete.json`).
///
/// - `updates`: optimiser steps this run took: the streamed updates (`remind`,
///   `finetune`), the mini-batch steps of base initialisation where the task trains one
///   (VQA: `stream.base_epochs` over the first segment, every method), and for `offline`
///   every mini-batch step of every evaluation point's training. The bare-step floor
///   measurement after the stream is not counted.
/// - `items`: items those steps trained on (the sum of their batch sizes);
///   `items_per_update` is their mean (the streamed batch is 1 new + r replayed items,
///   or 1 + r after mixup's pairing).
/// - `wall_seconds`: the run's wall time less its evaluation points (predictions on the
///   evaluation split, checkpoint writes) and the floor measurement; base
///   initialisation, buffer filling, code decoding and, for `offline` with
///   `offline_patience`, its per-epoch validation scoring (part of how it trains) are in.
///   `updates_per_s` is `updates / wall_seconds`.
/// - `forward_flops_per_item`: estimated forward FLOPs of the trained model on one item,
///   from its layer shapes and input shape ([`crate::models::flops`]: 2 FLOPs per
///   multiply-add, convolutions, linear layers, LSTM and attention matmuls counted;
///   element-wise work left out). `train_flops` = [`TRAIN_OVER_FORWARD`] x that x `items`.
/// - `peak_rss_bytes`: the process's peak resident memory ([`peak_rss_bytes`]), evaluation
///   passes included (a peak cannot be split); host memory only (not a GPU's).
/// - `buffer_bytes`: `remind`: the replay buffer's heap bytes at the end of the stream
///   ([`crate::buffer::ReplayBuffer::memory_bytes`]: the codes plus 16 bytes per item of
///   ids, labels, insertion counters and class lists, arrays by allocated capacity, plus
///   O(classes) of index); at most `1.05 x buffer_items x item_code_bytes + 16 x
///   buffer_items` plus about 1 KiB per class. `offline`: the stored data it trains on at
///   the last evaluation point, counted as its codes only (`buffer_items x
///   item_code_bytes`: every item seen, as the offline model rereads them every epoch).
///   `finetune`: 0 (it stores nothing).
/// - `resumed_from`: the checkpoint (evaluation point) a resumed run continued from; the
///   counts and times then cover only what this process did after it. None: the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    pub updates: u64,
    pub items: u64,
    pub items_per_update: f64,
    pub updates_per_s: f64,
    pub wall_seconds: f64,
    pub forward_flops_per_item: f64,
    pub train_flops: f64,
    pub peak_rss_bytes: u64,
    pub buffer_bytes: u64,
    pub buffer_items: u64,
    pub item_code_bytes: u64,
    pub resumed_from: Option<usize>,
}

/// What a method keeps of the stream at its end (see [`Compute`]'s `buffer_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub bytes: u64,
    pub items: u64,
    pub item_code_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    steps: u64,
    items: u64,
    excluded_seconds: f64,
}

thread_local! {
    static TALLY: Cell<Tally> = Cell::new(Tally::default());
}

/// Counts one optimiser step on `items` items towards this thread's running [`Meter`].
pub fn count_step(items: usize) {
    TALLY.with(|t| {
        let mut v = t.get();
        v.steps += 1;
        v.items += items as u64;
        t.set(v);
    });
}

/// Runs `f`, its wall time left out of this thread's running [`Meter`].
pub fn excluded<T>(f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    let s = t.elapsed().as_secs_f64();
    TALLY.with(|c| {
        let mut v = c.get();
        v.excluded_seconds += s;
        c.set(v);
    });
    out
}

/// Measures one run on this thread: started before the run, finished after it.
pub struct Meter {
    started: Instant,
}

impl Meter {
    /// Starts measuring (resets this thread's tally).
    pub fn start() -> Self {
        TALLY.with(|t| t.set(Tally::default()));
        Self {
            started: Instant::now(),
        }
    }

    /// The run's [`Compute`], given the model's forward FLOPs per item and what the method
    /// stores.
    pub fn finish(
        self,
        forward_flops_per_item: f64,
        stored: Stored,
        resumed_from: Option<usize>,
    ) -> Compute {
        let tally = TALLY.with(|t| t.get());
        let wall = (self.started.elapsed().as_secs_f64() - tally.excluded_seconds).max(0.0);
        let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Compute {
            updates: tally.steps,
            items: tally.items,
            items_per_update: per(tally.items as f64, tally.steps as f64),
            updates_per_s: per(tally.steps as f64, wall),
            wall_seconds: wall,
            forward_flops_per_item,
            train_flops: TRAIN_OVER_FORWARD * forward_flops_per_item * tally.items as f64,
            peak_rss_bytes: peak_rss_bytes(),
            buffer_bytes: stored.bytes,
            buffer_items: stored.items,
            item_code_bytes: stored.item_code_bytes,
            resumed_from,
        }
    }
}

/// The process's peak resident set size in bytes: `VmHWM` of `/proc/self/status`, else
/// `getrusage`'s `ru_maxrss` (KiB on Linux) x 1024; 0 when neither answers.
pub fn peak_rss_bytes() -> u64 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kib) = status.lines().find_map(vm_hwm_kib) {
            return kib * 1024;
        }
    }
    // SAFETY: rusage is plain integers, for which all zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given, which lives through the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
        return (usage.ru_maxrss.max(0) as u64) * 1024;
    }
    0
}

/// The KiB of a `VmHWM:   1234 kB` line.
fn vm_hwm_kib(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("VmHWM:")?.trim();
    rest.strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_counts_steps_items_and_leaves_out_excluded_time() {
        let m = Meter::start();
        count_step(9);
        count_step(9);
        count_step(3);
        excluded(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        let c = m.finish(
            1000.0,
            Stored {
                bytes: 10,
                items: 2,
                item_code_bytes: 4,
            },
            None,
        );
        assert_eq!((c.updates, c.items), (3, 21));
        assert!((c.items_per_update - 7.0).abs() < 1e-12);
        assert_eq!(c.train_flops, 3.0 * 1000.0 * 21.0);
        assert!(c.wall_seconds < 0.15, "the excluded sleep counted: {c:?}");
        assert!(c.peak_rss_bytes > 1 << 20, "{c:?}");
        assert_eq!(
            (c.buffer_bytes, c.buffer_items, c.item_code_bytes),
            (10, 2, 4)
        );
        // A new meter starts from zero.
        let c = Meter::start().finish(1.0, Stored::default(), Some(2));
        assert_eq!((c.updates, c.items, c.train_flops), (0, 0, 0.0));
        assert_eq!((c.items_per_update, c.updates_per_s), (0.0, 0.0));
        assert_eq!(c.resumed_from, Some(2));
    }

    #[test]
    fn reads_vm_hwm() {
        assert_eq!(vm_hwm_kib("VmHWM:\t  123456 kB"), Some(123456));
        assert_eq!(vm_hwm_kib("VmRSS:\t  1 kB"), None);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.lines().any(|l| vm_hwm_kib(l).is_some()), "{status}");
    }
}
