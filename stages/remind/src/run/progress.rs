//! Progress of long work: a live bar (percentage, elapsed time, items/s to 3 significant
//! digits, ETA) on a terminal, plain log lines with the same figures every few seconds
//! otherwise (batch jobs, CI logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        let quiet = std::env::var_os("REMIND_QUIET").is_some();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} {percent}% {elapsed} {rate} items/s ETA {eta}",
            ) {
                let style = style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&significant(state.per_sec(), 3));
                    },
                );
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            label: label.into(),
            total,
            done: 0,
            start: now,
            last_log: now,
            bar,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.last_log.elapsed() >= LOG_EVERY && std::env::var_os("REMIND_QUIET").is_none()
        {
            self.last_log = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            f64::NAN
        };
        let percent = 100.0 * self.done as f64 / self.total.max(1) as f64;
        format!(
            "{}: {}/{} ({percent:.0}%, {secs:.0}s elapsed, {} items/s, ETA {eta:.0}s)",
            self.label,
            self.done,
            self.total,
            significant(rate, 3)
        )
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if std::env::var_os("REMIND_QUIET").is_none() {
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!("{}: {} items in {secs:.1}s", self.label, self.done);
        }
    }
}

/// `x` to `digits` significant digits, without an exponent (1234.5 -> "1230", 0.01234 ->
/// "0.0123"); a rate shown to four decimals says nothing the first three do not.
pub fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let scale = 10f64.powi(digits - 1 - magnitude);
    format!("{:.*}", decimals, (x * scale).round() / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_show_three_significant_digits() {
        assert_eq!(significant(1234.5, 3), "1230");
        assert_eq!(significant(20.517, 3), "20.5");
        assert_eq!(significant(0.012345, 3), "0.0123");
        assert_eq!(significant(999.7, 3), "1000");
        assert_eq!(significant(0.0, 3), "0");
        let mut p = Progress::new("x", 200);
        p.done = 50;
        let line = p.line();
        assert!(line.starts_with("x: 50/200 (25%, "), "{line}");
        assert!(
            line.contains("s elapsed, ") && line.contains(" items/s, ETA "),
            "{line}"
        );
    }
}
