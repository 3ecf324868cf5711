//! The compute figures next to the accuracy (issue #17): each method's `compute` block
//! ([`crate::stream::compute::Compute`]) read from its `complete.json`, written into
//! `metrics.json` (key `compute` of the method; `null` with a `compute_note` when the run
//! has none) and printed as a table under the accuracy table.
//!
//! Runs made before the block existed, or not finished (no `complete.json`), still
//! evaluate: their figures are missing and a note line says why.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::stream::compute::Compute;
use crate::stream::layout::RunLayout;

/// One method's compute, or why it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCompute {
    pub method: String,
    pub compute: Option<Compute>,
    /// Why `compute` is None.
    pub missing: Option<String>,
}

/// Reads the `compute` block of every method's `complete.json` under `stream_dir`.
pub fn read_compute<'a>(
    stream_dir: &Path,
    methods: impl IntoIterator<Item = &'a str>,
) -> Vec<MethodCompute> {
    methods
        .into_iter()
        .map(|m| {
            let path = RunLayout::new(stream_dir).method(m).complete();
            let (compute, missing) = match read_one(&path) {
                Ok(c) => (Some(c), None),
                Err(why) => (None, Some(why)),
            };
            MethodCompute {
                method: m.to_string(),
                compute,
                missing,
            }
        })
        .collect()
}

fn read_one(path: &Path) -> Result<Compute, String> {
    let p = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no {p} (the run did not finish)"))
        }
        Err(e) => return Err(format!("cannot read {p}: {e}")),
    };
    let done: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{p} is not JSON: {e}"))?;
    match done.get("compute") {
        None | Some(Value::Null) => Err(format!(
            "{p} has no 'compute' block (made before stream-train recorded it; run the \
             method again for the figures)"
        )),
        Some(c) => {
            serde_json::from_value(c.clone()).map_err(|e| format!("{p}: key 'compute': {e}"))
        }
    }
}

/// Adds `compute` (and `compute_note` when missing) to each method's object of a
/// `metrics.json` whose top level is `top`.
pub fn insert_compute(top: &mut Map<String, Value>, rows: &[MethodCompute]) {
    for r in rows {
        if let Some(Value::Object(o)) = top.get_mut(&r.method) {
            o.insert("compute".into(), json!(r.compute));
            if let Some(why) = &r.missing {
                o.insert("compute_note".into(), json!(why));
            }
        }
    }
}

/// `v` to 3 significant digits with an SI prefix (`1.23 T`, `456 G`, `7.00 M`).
pub fn si3(v: f64) -> String {
    const PREFIXES: [(f64, &str); 5] =
        [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    let (scale, prefix) = PREFIXES
        .iter()
        .copied()
        .find(|&(s, _)| v.abs() >= s * 0.9995)
        .unwrap_or((1.0, ""));
    let x = v / scale;
    let digits = if x.abs() >= 99.95 {
        0
    } else if x.abs() >= 9.995 {
        1
    } else {
        2
    };
    format!("{x:.digits$} {prefix}").trim_end().to_string()
}

const MIB: f64 = 1024.0 * 1024.0;

/// The printed table: one row per method (updates, updates/s, wall seconds, training
/// FLOPs, peak RSS, buffer), then a note per method without figures.
pub fn render_compute(rows: &[MethodCompute]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let name_w = rows
        .iter()
        .map(|r| r.method.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = String::from(
        "\nCompute (training only: evaluation passes excluded from wall s; FLOPs estimated \
         from layer shapes, 3x forward per item)\n",
    );
    out.push_str(&format!(
        "{:<name_w$}  {:>9}  {:>9}  {:>9}  {:>11}  {:>12}  {:>10}\n",
        "method", "updates", "updates/s", "wall s", "train FLOPs", "peak RSS MiB", "buffer MiB"
    ));
    for r in rows {
        let cells = match &r.compute {
            Some(c) => [
                c.updates.to_string(),
                format!("{:.1}", c.updates_per_s),
                format!("{:.1}", c.wall_seconds),
                si3(c.train_flops),
                format!("{:.1}", c.peak_rss_bytes as f64 / MIB),
                format!("{:.2}", c.buffer_bytes as f64 / MIB),
            ],
            None => std::array::from_fn(|_| "-".to_string()),
        };
        out.push_str(&format!(
            "{:<name_w$}  {:>9}  {:>9}  {:>9}  {:>11}  {:>12}  {:>10}\n",
            r.method, cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        ));
    }
    for r in rows {
        if let Some(c) = &r.compute {
            if let Some(k) = c.resumed_from {
                out.push_str(&format!(
                    "note: {}: compute covers the run resumed from evaluation point {k} only\n",
                    r.method
                ));
            }
        }
        if let Some(why) = &r.missing {
            out.push_str(&format!(
                "note: {}: compute figures missing: {why}\n",
                r.method
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(updates: u64) -> Compute {
        Compute {
            updates,
            items: updates * 9,
            items_per_update: 9.0,
            updates_per_s: 20.5,
            wall_seconds: 117.04,
            forward_flops_per_item: 1e6,
            train_flops: 3.0 * 1e6 * (updates * 9) as f64,
            peak_rss_bytes: 300 << 20,
            buffer_bytes: 3 << 19,
            buffer_items: 10,
            item_code_bytes: 4,
            resumed_from: None,
        }
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(si3(1.234e12), "1.23 T");
        assert_eq!(si3(456.4e9), "456 G");
        assert_eq!(si3(45.66e9), "45.7 G");
        assert_eq!(si3(7e6), "7.00 M");
        assert_eq!(si3(999.96e9), "1.00 T");
        assert_eq!(si3(12.0), "12.0");
        assert_eq!(si3(0.0), "0.00");
    }

    #[test]
    fn reads_writes_and_prints_present_and_missing_blocks() {
        let dir = std::env::temp_dir().join(format!("remind-compute-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (m, done) in [
            (
                "remind",
                json!({"method": "remind", "compute": compute(2400)}),
            ),
            ("finetune", json!({"method": "finetune", "seconds": 3.0})),
        ] {
            std::fs::create_dir_all(dir.join(m)).unwrap();
            std::fs::write(dir.join(m).join("complete.json"), done.to_string()).unwrap();
        }
        let rows = read_compute(&dir, ["remind", "finetune", "offline"]);
        assert_eq!(rows[0].compute, Some(compute(2400)));
        assert!(rows[1]
            .missing
            .as_deref()
            .unwrap()
            .contains("no 'compute' block"));
        assert!(rows[2]
            .missing
            .as_deref()
            .unwrap()
            .contains("did not finish"));
        let mut top = Map::new();
        for m in ["remind", "finetune", "offline"] {
            top.insert(m.into(), json!({"omega": 1.0}));
        }
        insert_compute(&mut top, &rows);
        assert_eq!(top["remind"]["compute"]["updates"], 2400);
        assert!(top["remind"].get("compute_note").is_none());
        assert!(top["finetune"]["compute"].is_null());
        assert!(top["finetune"]["compute_note"].is_string());
        let table = render_compute(&rows);
        let line = table.lines().find(|l| l.starts_with("remind")).unwrap();
        for cell in ["2400", "20.5", "117.0", "64.8 G", "300.0", "1.50"] {
            assert!(line.contains(cell), "{cell}: {table}");
        }
        assert!(
            table.contains("note: finetune: compute figures missing"),
            "{table}"
        );
        assert!(
            table.contains("note: offline: compute figures missing"),
            "{table}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
