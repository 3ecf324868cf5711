//! Checks of the `compute` block (issue #17) that a stream's `complete.json` records and
//! `remind-evaluate` copies into `metrics.json` and prints; included by the stream tests
//! (`#[path = "support/compute_check.rs"] mod compute_check;`).

use std::path::Path;

use remind::buffer::ReplayBuffer;
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;

/// The `compute` block of `method` in `metrics`, checked against what the run folder
/// `stream` holds:
///
/// - every method: `updates` > 0, `items` >= `updates`, `train_flops` = 3 x forward FLOPs
///   per item x `items` > 0, `updates_per_s` = `updates / wall_seconds`, peak RSS above
///   10 MiB, the same block as the method's `complete.json`;
/// - `remind`: the buffer's items and code bytes are those of its last checkpoint's
///   `buffer.arrow`, and `buffer_bytes` lies between their product and the documented
///   bound (5% slack on the codes, 16 bytes per item, 1 KiB per class);
/// - `finetune`: no buffer; `offline`: every item of the plan's last point, as codes.
///
/// `table` is evaluate's stdout: it must hold the compute table with a row per method.
pub fn check_compute(metrics: &Value, stream: &Path, methods: &[&str], table: &str) -> Vec<Value> {
    let header = table
        .lines()
        .position(|l| l.starts_with("Compute ("))
        .unwrap_or_else(|| panic!("no compute table in the evaluate output:\n{table}"));
    let plan: Value =
        serde_json::from_slice(&std::fs::read(stream.join("plan.json")).unwrap()).unwrap();
    let seen = plan["boundaries"].as_array().unwrap();
    let last_point = seen.len() - 1;
    let mut blocks = Vec::new();
    for &method in methods {
        let c = &metrics[method]["compute"];
        assert!(
            c.is_object(),
            "{method}: no compute block in metrics.json: {metrics}"
        );
        let done: Value = serde_json::from_slice(
            &std::fs::read(stream.join(method).join("complete.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            &done["compute"], c,
            "{method}: metrics.json copies complete.json"
        );
        let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{method} {k}: {c}"));
        let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{method} {k}: {c}"));
        assert!(
            u("updates") > 0 && u("items") >= u("updates"),
            "{method}: {c}"
        );
        let flops = 3.0 * f("forward_flops_per_item") * u("items") as f64;
        assert!(f("train_flops") > 0.0, "{method}: {c}");
        assert!(
            (f("train_flops") / flops - 1.0).abs() < 1e-9,
            "{method}: {c}"
        );
        assert!(
            (f("items_per_update") - u("items") as f64 / u("updates") as f64).abs() < 1e-9,
            "{method}: {c}"
        );
        assert!(f("wall_seconds") > 0.0, "{method}: {c}");
        assert!(
            (f("updates_per_s") * f("wall_seconds") / u("updates") as f64 - 1.0).abs() < 1e-6,
            "{method}: {c}"
        );
        assert!(f("peak_rss_bytes") > 10.0 * MIB, "{method}: {c}");
        assert!(c["resumed_from"].is_null(), "{method}: {c}");
        let (bytes, items, width) = (u("buffer_bytes"), u("buffer_items"), u("item_code_bytes"));
        match method {
            "remind" => {
                let ckpt = stream.join(format!("remind/boundary-{last_point:03}/buffer.arrow"));
                let saved = ReplayBuffer::load(&ckpt).unwrap().buffer;
                assert_eq!(items, saved.len() as u64, "{c}");
                assert_eq!(width, saved.item_bytes() as u64, "{c}");
                let codes = (items * width) as f64;
                let classes = saved.class_sizes().len() as f64;
                let bound = 1.05 * codes + 16.0 * items as f64 + 1024.0 * classes;
                assert!(
                    bytes as f64 >= codes && bytes as f64 <= bound,
                    "remind buffer: {bytes} bytes for {items} items of {width} code bytes \
                     (bound {bound}): {c}"
                );
            }
            "finetune" => assert_eq!((bytes, items), (0, 0), "{c}"),
            "offline" => {
                assert_eq!(items, seen[last_point].as_u64().unwrap(), "{c}");
                assert_eq!(bytes, items * width, "{c}");
                assert!(width > 0, "{c}");
            }
            _ => {}
        }
        assert!(
            table
                .lines()
                .skip(header)
                .any(|l| l.starts_with(method) && l.contains(&format!(" {} ", u("updates")))),
            "{method}: no row in the compute table:\n{table}"
        );
        blocks.push(c.clone());
    }
    blocks
}
