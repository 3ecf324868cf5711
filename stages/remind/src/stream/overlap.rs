//! Two halves of a loop on two threads: a producer preparing item i + 1 while the calling
//! thread consumes item i.
//!
//! On a GPU a streaming update is bound by the host issuing kernels (BENCHMARKS.md, "On a
//! GPU"): the half that does not touch the network (buffer draws, decoding, crops, mixup,
//! uploads, the buffer insertion) issues its kernels from a second thread while the
//! network's step issues its own. Both threads queue on the same CUDA stream, which runs
//! their kernels in the order they were issued; each prepared batch is sent only after its
//! kernels are queued, so the step that reads it is queued after them.

use anyhow::{anyhow, Result};

/// Runs `produce(i)` for i in `0..n` on a second thread, at most `ahead` items ahead, and
/// `consume(i, produced)` on the calling thread in order. Stops at the first error of
/// either side and returns it (the consumer's first when both fail); a producer that panics
/// is reported as an error.
pub fn overlapped<P: Send>(
    n: usize,
    ahead: usize,
    produce: impl FnMut(usize) -> Result<P> + Send,
    mut consume: impl FnMut(usize, P) -> Result<()>,
) -> Result<()> {
    let mut produce = produce;
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::bounded::<Result<P>>(ahead.max(1));
        let producer = scope.spawn(move || {
            for i in 0..n {
                let item = produce(i);
                let failed = item.is_err();
                // A closed channel: the consumer stopped (its error is reported).
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        let (mut outcome, mut producer_gone) = (Ok(()), false);
        for i in 0..n {
            let Ok(next) = rx.recv() else {
                producer_gone = true;
                break;
            };
            if let Err(e) = next.and_then(|p| consume(i, p)) {
                outcome = Err(e);
                break;
            }
        }
        drop(rx);
        match producer.join() {
            // The consumer's own failure comes first; a panic is the cause otherwise.
            Err(payload) if outcome.is_ok() => {
                outcome = Err(anyhow!(
                    "the preparing thread panicked: {}",
                    panic_message(payload.as_ref())
                ))
            }
            Ok(()) if producer_gone => outcome = Err(anyhow!("the preparing thread stopped early")),
            _ => {}
        }
        outcome
    })
}

/// The text a panic was raised with (`panic!` with a message or a format string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_every_item_in_order() {
        let mut seen = Vec::new();
        overlapped(
            50,
            2,
            |i| Ok(i * i),
            |i, p| {
                assert_eq!(p, i * i);
                seen.push(i);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_of_either_side_stops_both() {
        let err = overlapped(
            10,
            2,
            |i| {
                if i == 3 {
                    Err(anyhow!("bad item {i}"))
                } else {
                    Ok(i)
                }
            },
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "bad item 3");
        let mut made = std::sync::atomic::AtomicUsize::new(0);
        let err = overlapped(
            1000,
            2,
            |i| {
                made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(i)
            },
            |i, _| {
                if i == 5 {
                    Err(anyhow!("step {i} failed"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "step 5 failed");
        // The producer stops within `ahead` + 2 items of the failed step.
        assert!(*made.get_mut() <= 10, "{}", made.get_mut());
    }

    #[test]
    fn a_producer_panic_is_reported_with_its_message() {
        let err = overlapped(
            10,
            2,
            |i| {
                if i == 4 {
                    panic!("codes of item {i} out of range");
                }
                Ok(i)
            },
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the preparing thread panicked: codes of item 4 out of range"
        );
    }
}
