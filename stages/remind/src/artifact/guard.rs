//! Decoding a damaged file must fail, not panic: the Arrow and Parquet decoders still
//! assert on some impossible values (an overflowing array length, for one) instead of
//! returning an error. [`decode_guarded`] turns such a panic into an error naming the file,
//! without the panic message and backtrace on stderr that a user would take for a crash.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use anyhow::{anyhow, Result};

thread_local! {
    /// Set while this thread runs a guarded decode: its panics are reported as errors.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Runs `f` (decoding `what`); a panic inside it becomes the error "`what`: damaged or not
/// what it claims to be (the decoder failed: MESSAGE)". Other threads' panics are reported
/// as before (the previous panic hook runs for them).
pub fn decode_guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = GUARDED.with(|g| g.replace(true));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    out.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow!(
            "{what}: damaged or not what it claims to be (the decoder failed: {message})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_decoding_is_an_error() {
        let err = decode_guarded("f.arrow", || -> Result<()> { panic!("overflow") })
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.arrow") && err.contains("overflow"), "{err}");
        assert_eq!(decode_guarded("f", || Ok(3)).unwrap(), 3);
        // The guard is off again afterwards.
        assert!(!GUARDED.with(Cell::get));
    }
}
