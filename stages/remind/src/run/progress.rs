//! Progress of long work: a live bar (items/s, ETA) on a terminal, plain log lines every
//! few seconds otherwise (batch jobs, CI logs).

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
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            {
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
        format!(
            "{}: {}/{} ({rate:.1} items/s, ETA {eta:.0}s)",
            self.label, self.done, self.total
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
