//! Several runs of one protocol evaluated together: the streams of seeds 0, 1, 2 of one
//! config (`remind-evaluate --stream-dir A --stream-dir B ...`), for the mean and spread
//! over seeds that papers report.
//!
//! Each run is evaluated alone and written as a single run would be, under
//! `<out>/seeds/<label>/` (label `seed-N` from the run's `plan.json`). At `<out>`:
//! `metrics.parquet` with `value` the runs' mean and the columns `std` (sample standard
//! deviation, n - 1), `min`, `max` and `runs`; `metrics.json` with the runs' mean at every
//! number (a number equal in every run kept as it is) and under `seeds` the labels, the
//! stream folders and the standard deviations at the same places; `metrics.csv` with the
//! mean accuracy and forgetting per row; the plot with a min-max bar at every point; the
//! heatmap of mean accuracies. Runs that differ in methods, evaluation points or metrics
//! are refused: they are not seeds of one protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Map, Value};

use super::outputs::{MetricRows, Outputs, Spread};
use crate::plot::Figure;

/// The folder under the output folder that holds each run's own outputs.
pub const RUNS_DIR: &str = "seeds";

/// One evaluated run.
pub struct SeedRun {
    /// `seed-N`, or `run-K` (its place among the runs) when its plan names no seed.
    pub label: String,
    pub stream_dir: PathBuf,
    pub outputs: Outputs,
}

/// The label of every stream folder: `seed-N` from its `plan.json`, else `run-K`. Errors
/// when two runs were drawn with the same seed (the same run twice, or not seeds of one
/// protocol) or follow different orders.
pub fn labels(stream_dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut seen: HashMap<u64, &Path> = HashMap::new();
    let mut order: Option<(String, &Path)> = None;
    let mut labels = Vec::new();
    let mut folders: HashMap<PathBuf, &Path> = HashMap::new();
    for (k, dir) in stream_dirs.iter().enumerate() {
        ensure!(
            dir.is_dir(),
            "--stream-dir {}: no such folder (a stream-train --out folder is expected)",
            dir.display()
        );
        let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if let Some(first) = folders.insert(real, dir) {
            bail!(
                "--stream-dir {} is given twice (also as {}): give each seed's stream folder once",
                dir.display(),
                first.display()
            );
        }
        let plan = super::read_plan(dir)?;
        let seed = plan.as_ref().and_then(|p| p.seed);
        if let Some(o) = plan.as_ref().and_then(|p| p.order.clone()) {
            match &order {
                Some((first, at)) if *first != o => bail!(
                    "{} follows the order '{o}' and {} the order '{first}': the runs \
                     evaluated together must be seeds of one protocol",
                    dir.display(),
                    at.display()
                ),
                Some(_) => {}
                None => order = Some((o, dir)),
            }
        }
        labels.push(match seed {
            Some(s) => {
                if let Some(other) = seen.insert(s, dir) {
                    bail!(
                        "{} and {} were both drawn with seed {s}: give runs of different \
                         seeds (stream-train --seed)",
                        other.display(),
                        dir.display()
                    );
                }
                format!("seed-{s}")
            }
            None => format!("run-{k}"),
        });
    }
    Ok(labels)
}

/// The files one evaluation writes into its folder.
const OUTPUT_FILES: [&str; 7] = [
    "metrics.json",
    "metrics.parquet",
    "metrics.csv",
    "metrics.png",
    "metrics.svg",
    "metrics_matrix.png",
    "metrics_matrix.svg",
];

/// Removes the folders of earlier runs under `<out>/seeds/` that are not among `labels`
/// (so the folder never mixes runs of two evaluations), each only when it holds nothing
/// but an evaluation's outputs; a folder holding anything else is left and named.
pub fn clear_stale(out: &Path, labels: &[String]) -> Result<()> {
    let dir = out.join(RUNS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !path.is_dir() || labels.contains(&name) {
            continue;
        }
        let ours = std::fs::read_dir(&path)?.all(|f| {
            f.is_ok_and(|f| OUTPUT_FILES.contains(&f.file_name().to_string_lossy().as_ref()))
        });
        if ours {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            eprintln!(
                "remind-evaluate: removed {} (a run not evaluated this time)",
                path.display()
            );
        } else {
            eprintln!(
                "remind-evaluate: warning: {} is not a run evaluated this time and holds \
                 other files: left as it is",
                path.display()
            );
        }
    }
    if labels.is_empty() && std::fs::read_dir(&dir)?.next().is_none() {
        std::fs::remove_dir(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// The outputs of `runs` together (see the module's docs); at least two runs.
pub fn combine(runs: &[SeedRun]) -> Result<Outputs> {
    ensure!(runs.len() >= 2, "combining needs at least two runs");
    let rows = combine_rows(runs)?;
    let plots: Vec<Figure> = runs.iter().map(|r| r.outputs.plot.clone()).collect();
    let matrices: Vec<Figure> = runs.iter().map(|r| r.outputs.matrix.clone()).collect();
    let jsons: Vec<&Value> = runs.iter().map(|r| &r.outputs.json).collect();
    let mut json = reduce(&jsons, &mean);
    if let Value::Object(top) = &mut json {
        top.insert(
            "seeds".into(),
            json!({
                "labels": runs.iter().map(|r| &r.label).collect::<Vec<_>>(),
                "stream_dirs": runs.iter().map(|r| r.stream_dir.display().to_string()).collect::<Vec<_>>(),
                "runs_dir": RUNS_DIR,
                "std": numbers_only(reduce(&jsons, &sample_std)),
            }),
        );
    }
    let mut meta = runs[0].outputs.meta.clone();
    meta.insert(
        "remind.runs".into(),
        runs.iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let csvs: Vec<&str> = runs.iter().map(|r| r.outputs.csv.as_str()).collect();
    Ok(Outputs {
        json,
        rows,
        meta,
        csv: mean_csv(&csvs)?,
        plot: Figure::merge_runs(&plots)?,
        matrix: Figure::merge_runs(&matrices)?,
    })
}

/// The long-format rows of the runs as one table: per (method, boundary, metric) the mean
/// and spread of the runs' values. Every run must hold the same rows at the same positions.
fn combine_rows(runs: &[SeedRun]) -> Result<MetricRows> {
    let first = &runs[0];
    let key = |r: &MetricRows, i: usize| (r.method[i].clone(), r.boundary[i], r.metric[i].clone());
    let mut index: Vec<HashMap<(String, i64, String), usize>> = Vec::new();
    for run in runs {
        let r = &run.outputs.rows;
        index.push((0..r.len()).map(|i| (key(r, i), i)).collect());
    }
    let base = &first.outputs.rows;
    let methods = |r: &MetricRows| {
        let mut m: Vec<String> = Vec::new();
        for name in &r.method {
            if !m.contains(name) {
                m.push(name.clone());
            }
        }
        m
    };
    for run in &runs[1..] {
        let (a, b) = (methods(base), methods(&run.outputs.rows));
        if a != b {
            let missing: Vec<&String> = a.iter().filter(|m| !b.contains(m)).collect();
            let extra: Vec<&String> = b.iter().filter(|m| !a.contains(m)).collect();
            bail!(
                "{} has the methods {b:?} and {} {a:?} (missing there: {missing:?}, not in the \
                 first: {extra:?}): the runs evaluated together must be seeds of one protocol \
                 (--methods picks the ones they share)",
                run.stream_dir.display(),
                first.stream_dir.display()
            );
        }
    }
    let mut out = MetricRows::default();
    let mut spread = Spread::default();
    for i in 0..base.len() {
        let k = key(base, i);
        let mut values = Vec::with_capacity(runs.len());
        for (run, idx) in runs.iter().zip(&index) {
            let Some(&j) = idx.get(&k) else {
                bail!(
                    "{} has no '{}' of method '{}' at boundary {}, which {} has: the runs \
                     evaluated together must be seeds of one protocol",
                    run.stream_dir.display(),
                    k.2,
                    k.0,
                    k.1,
                    first.stream_dir.display()
                );
            };
            let r = &run.outputs.rows;
            ensure!(
                r.position[j] == base.position[i],
                "{}: boundary {} of '{}' is at position {} where {} has it at {}: the runs \
                 evaluated together must be seeds of one protocol",
                run.stream_dir.display(),
                k.1,
                k.0,
                r.position[j],
                first.stream_dir.display(),
                base.position[i]
            );
            values.push(r.value[j]);
        }
        out.push(&k.0, k.1, base.position[i], k.2, mean(&values));
        spread.std.push(sample_std(&values));
        spread
            .min
            .push(values.iter().copied().fold(f64::INFINITY, f64::min));
        spread
            .max
            .push(values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        spread.runs.push(values.len() as u64);
    }
    // Every row of the first run is in every run; one with more rows has others too.
    for (run, idx) in runs.iter().zip(&index) {
        let first_keys = &index[0];
        if let Some((k, _)) = idx.iter().find(|(k, _)| !first_keys.contains_key(*k)) {
            bail!(
                "{} has a '{}' of method '{}' at boundary {}, which {} has not: the runs \
                 evaluated together must be seeds of one protocol (same boundaries: \
                 --allow-partial cannot combine runs that stopped at different points)",
                run.stream_dir.display(),
                k.2,
                k.0,
                k.1,
                first.stream_dir.display()
            );
        }
    }
    out.spread = Some(spread);
    Ok(out)
}

/// [`super::cl_metrics::mean`] of a slice (NaN when empty, as 0 / 0).
fn mean(v: &[f64]) -> f64 {
    super::cl_metrics::mean(v.iter().copied()).unwrap_or(f64::NAN)
}

/// The sample standard deviation (n - 1 in the denominator); 0 for one value.
fn sample_std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// The runs' JSON documents as one of the same shape: `f` of the runs' numbers at every
/// place that holds a number in some run (null where none does; a number equal in every
/// run kept as it is when `f` is the mean, so counts stay integers), other values kept
/// when equal in every run, else listed per run.
fn reduce(values: &[&Value], f: &dyn Fn(&[f64]) -> f64) -> Value {
    let first = values[0];
    if let Value::Object(o) = first {
        if values.iter().all(|v| v.is_object()) {
            let mut out = Map::new();
            for k in o.keys() {
                let at: Vec<&Value> = values
                    .iter()
                    .map(|v| v.get(k).unwrap_or(&Value::Null))
                    .collect();
                out.insert(k.clone(), reduce(&at, f));
            }
            return Value::Object(out);
        }
    }
    if let Value::Array(a) = first {
        let same_len = values
            .iter()
            .all(|v| v.as_array().is_some_and(|b| b.len() == a.len()));
        // Lists of names (e.g. the question types in learning order) are kept per run
        // when they differ, not paired name by name.
        let names = values.iter().all(|v| {
            v.as_array()
                .is_some_and(|b| !b.is_empty() && b.iter().all(Value::is_string))
        });
        if same_len && !names {
            return Value::Array(
                (0..a.len())
                    .map(|i| {
                        let at: Vec<&Value> = values.iter().map(|v| &v[i]).collect();
                        reduce(&at, f)
                    })
                    .collect(),
            );
        }
    }
    let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
    let all_numbers_or_null = values.iter().all(|v| v.is_number() || v.is_null());
    if all_numbers_or_null {
        if numbers.is_empty() {
            return Value::Null;
        }
        let r = f(&numbers);
        // A count or setting equal in every run keeps its JSON form (3000, not 3000.0).
        if numbers.len() == values.len() && values.iter().all(|v| *v == first) && r == numbers[0] {
            return first.clone();
        }
        return json!(r);
    }
    if values.iter().all(|v| *v == first) {
        first.clone()
    } else {
        Value::Array(values.iter().map(|v| (*v).clone()).collect())
    }
}

/// `v` with only its numbers: strings and booleans dropped, objects and arrays left with
/// nothing but nulls dropped too (nulls kept inside arrays that hold a number, where a
/// position means something).
fn numbers_only(v: Value) -> Value {
    fn keep(v: Value) -> Option<Value> {
        match v {
            Value::Number(_) => Some(v),
            Value::Array(a) => {
                let kept: Vec<Option<Value>> = a.into_iter().map(keep).collect();
                kept.iter()
                    .any(|x| matches!(x, Some(y) if !y.is_null()))
                    .then(|| {
                        Value::Array(kept.into_iter().map(|x| x.unwrap_or(Value::Null)).collect())
                    })
            }
            Value::Object(o) => {
                let kept: Map<String, Value> = o
                    .into_iter()
                    .filter_map(|(k, v)| keep(v).map(|v| (k, v)))
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            _ => None,
        }
    }
    keep(v).unwrap_or(Value::Null)
}

/// The runs' `metrics.csv` (one header, rows keyed by their non-numeric and index
/// columns: `method,eval_exp,training_exp`) as one: the mean of each numeric column over
/// the runs that have a value there.
fn mean_csv(csvs: &[&str]) -> Result<String> {
    const KEYS: usize = 3;
    let mut lines = csvs[0].lines();
    let header = lines.next().unwrap_or_default().to_string();
    let mut order: Vec<String> = Vec::new();
    let mut sums: HashMap<String, Vec<(f64, usize)>> = HashMap::new();
    for (k, csv) in csvs.iter().enumerate() {
        let mut it = csv.lines();
        let h = it.next().unwrap_or_default();
        ensure!(
            h == header,
            "the runs' metrics.csv differ in their header: '{h}' against '{header}' (run {k})"
        );
        for line in it {
            let fields: Vec<&str> = line.split(',').collect();
            ensure!(
                fields.len() > KEYS,
                "metrics.csv row '{line}' has too few fields"
            );
            let key = fields[..KEYS].join(",");
            let slot = sums.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                vec![(0.0, 0); fields.len() - KEYS]
            });
            for (s, v) in slot.iter_mut().zip(&fields[KEYS..]) {
                if let Ok(x) = v.parse::<f64>() {
                    s.0 += x;
                    s.1 += 1;
                }
            }
        }
    }
    let mut out = header + "\n";
    for key in order {
        let vals: Vec<String> = sums[&key]
            .iter()
            .map(|&(s, n)| {
                if n == 0 {
                    String::new()
                } else {
                    format!("{:.6}", s / n as f64)
                }
            })
            .collect();
        out.push_str(&format!("{key},{}\n", vals.join(",")));
    }
    Ok(out)
}

/// The printed report of combined runs: `main` (e.g. `mean_per_type`) per evaluation point
/// (its stream position, named `point`) and method as mean ± std (%), then every
/// whole-stream metric (boundary -1; Omega as a ratio).
pub fn render_table(rows: &MetricRows, main: &str, point: &str, labels: &[String]) -> String {
    let Some(spread) = &rows.spread else {
        return String::new();
    };
    let mut methods: Vec<&str> = Vec::new();
    for m in &rows.method {
        if !methods.contains(&m.as_str()) {
            methods.push(m);
        }
    }
    let cell = |i: usize, metric: &str| {
        if metric.starts_with("omega") {
            format!("{:.3} ± {:.3}", rows.value[i], spread.std[i])
        } else {
            format!(
                "{:.2} ± {:.2}",
                100.0 * rows.value[i],
                100.0 * spread.std[i]
            )
        }
    };
    let find = |m: &str, b: i64, metric: &str| {
        (0..rows.len())
            .find(|&i| rows.method[i] == m && rows.boundary[i] == b && rows.metric[i] == metric)
    };
    let mut points: Vec<(i64, u64)> = Vec::new();
    for i in 0..rows.len() {
        let p = (rows.boundary[i], rows.position[i]);
        if rows.metric[i] == main && p.0 >= 0 && !points.contains(&p) {
            points.push(p);
        }
    }
    points.sort_unstable();
    let mut whole: Vec<&str> = Vec::new();
    for i in 0..rows.len() {
        if rows.boundary[i] < 0 && !whole.contains(&rows.metric[i].as_str()) {
            whole.push(&rows.metric[i]);
        }
    }
    let mut out = format!(
        "{main} (%), mean ± std over {} runs ({}):\n{:<30}",
        labels.len(),
        labels.join(", "),
        point
    );
    for m in &methods {
        out.push_str(&format!(" {m:>17}"));
    }
    out.push('\n');
    let mut line = |name: String, b: i64, metric: &str| {
        out.push_str(&format!("{name:<30}"));
        for m in &methods {
            let c = find(m, b, metric).map_or_else(|| "-".into(), |i| cell(i, metric));
            out.push_str(&format!(" {c:>17}"));
        }
        out.push('\n');
    };
    for (b, p) in points {
        line(p.to_string(), b, main);
    }
    for metric in whole {
        line(metric.to_string(), -1, metric);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_become_means_and_equal_values_stay() {
        let a = json!({"m": {"acc": [0.5, null], "n": 3000, "name": "x", "omega": 0.9}});
        let b = json!({"m": {"acc": [0.7, 0.2], "n": 3000, "name": "y", "omega": 1.0}});
        let m = reduce(&[&a, &b], &mean);
        assert_eq!(m["m"]["n"], json!(3000));
        assert!((m["m"]["acc"][0].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(m["m"]["acc"][1], json!(0.2));
        assert_eq!(m["m"]["name"], json!(["x", "y"]));
        // std of 0.5 and 0.7 with n - 1 = 1: sqrt(0.1^2 + 0.1^2) = 0.1414...
        let s = numbers_only(reduce(&[&a, &b], &sample_std));
        assert!((s["m"]["acc"][0].as_f64().unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(s["m"]["n"], json!(0.0));
        assert!(s["m"].get("name").is_none(), "{s}");
        // Names in learning order, differing by run, are kept per run.
        let (x, y) = (json!({"t": ["a", "b"]}), json!({"t": ["b", "a"]}));
        assert_eq!(
            reduce(&[&x, &y], &mean)["t"],
            json!([["a", "b"], ["b", "a"]])
        );
        assert_eq!(reduce(&[&x, &x], &mean)["t"], json!(["a", "b"]));
        assert_eq!(numbers_only(reduce(&[&x, &y], &sample_std)), Value::Null);
    }

    #[test]
    fn sample_std_uses_n_minus_one() {
        assert!((sample_std(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert_eq!(sample_std(&[4.0]), 0.0);
    }

    #[test]
    fn csv_rows_are_averaged_by_key() {
        let a =
            "method,eval_exp,training_exp,eval_accuracy,forgetting\nr,0,0,0.5,\nr,0,1,0.25,0.25\n";
        let b =
            "method,eval_exp,training_exp,eval_accuracy,forgetting\nr,0,0,0.7,\nr,0,1,0.35,0.35\n";
        let m = mean_csv(&[a, b]).unwrap();
        assert_eq!(
            m,
            "method,eval_exp,training_exp,eval_accuracy,forgetting\nr,0,0,0.600000,\nr,0,1,0.300000,0.300000\n"
        );
        assert!(mean_csv(&[a, "method,x\n"]).is_err());
    }
}
