//! Replay-buffer memory and speed at scale: fills a buffer with synthetic codes and prints,
//! per size, one JSON line {items, code_bytes, memory_bytes, ratio, bound_ratio, ...}.
//! `ratio` is memory over raw code bytes; `bound_ratio` is memory over the budget
//! (1.05 x code bytes + 16 bytes per item), at most 1 when the budget holds.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remind::buffer::{Eviction, ReplayBuffer};
use remind_stages::main_with;

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Measure replay-buffer memory and insert/sample speed"
)]
struct Cli {
    /// Buffer sizes to measure (items).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000usize, 959_665])]
    items: Vec<usize>,
    /// Shape of one item's codes (bytes).
    #[arg(long, value_delimiter = ',', default_values_t = [7usize, 7, 32])]
    item_shape: Vec<usize>,
    /// Distinct labels.
    #[arg(long, default_value_t = 1000)]
    classes: i64,
    /// Items inserted past capacity (evictions) after the fill.
    #[arg(long, default_value_t = 10_000)]
    overflow: usize,
    /// Items per replay sample.
    #[arg(long, default_value_t = 50)]
    replay: usize,
    /// Eviction policy once full: random, or oldest (a queue).
    #[arg(long, default_value = "random")]
    eviction: String,
}

fn main() -> ExitCode {
    main_with("remind-bench-buffer", || {
        let cli = remind_stages::parse_args::<Cli>();
        let eviction = Eviction::parse(&cli.eviction)?;
        for &n in &cli.items {
            bench(&cli, n, eviction)?;
        }
        Ok(())
    })
}

fn bench(cli: &Cli, n: usize, eviction: Eviction) -> Result<()> {
    let bytes: usize = cli.item_shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut buf = ReplayBuffer::new(bytes, Some(n), eviction)?;
    let mut codes = vec![0u8; bytes];
    let t = Instant::now();
    for id in 0..n as u64 {
        codes[..8].copy_from_slice(&id.to_le_bytes());
        buf.insert(id, rng.random_range(0..cli.classes), &codes, &mut rng)?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let memory = buf.memory_bytes();
    let t = Instant::now();
    for id in n as u64..(n + cli.overflow) as u64 {
        buf.insert(id, rng.random_range(0..cli.classes), &codes, &mut rng)?;
    }
    let evict_us = t.elapsed().as_secs_f64() * 1e6 / cli.overflow.max(1) as f64;
    let samples = 2000;
    let mut out = Vec::new();
    let t = Instant::now();
    for _ in 0..samples {
        let slots = buf.sample(cli.replay, &mut rng);
        buf.gather(&slots, &mut out);
    }
    let sample_us = t.elapsed().as_secs_f64() * 1e6 / samples as f64;
    let code_bytes = buf.code_bytes();
    let line = serde_json::json!({
        "items": buf.len(),
        "item_bytes": bytes,
        "code_bytes": code_bytes,
        "memory_bytes": memory,
        "memory_bytes_after_evictions": buf.memory_bytes(),
        "ratio": memory as f64 / code_bytes as f64,
        "bound_ratio": memory as f64 / (1.05 * code_bytes as f64 + 16.0 * n as f64),
        "overhead_bytes_per_item": (memory as f64 - code_bytes as f64) / n as f64,
        "fill_s": fill_s,
        "evicting_insert_us": evict_us,
        "sample_and_gather_us": sample_us,
        "replay": cli.replay,
    });
    println!("{line}");
    Ok(())
}
