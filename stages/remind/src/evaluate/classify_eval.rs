//! Evaluation of a classification stream: every method's probabilities at every
//! evaluation point (`<stream_dir>/<method>/probabilities/eval-KKK.arrow`, written by
//! stream-train) scored against the label table: top-1 / top-5 on the base classes, the
//! non-base classes seen so far and all seen classes (the reference's names), and
//! Omega_all (top-1, top-5) against the offline model, points paired by stream position.
//! The accuracy matrix over experiences, average incremental accuracy, forgetting and
//! backward transfer ([`super::cl_metrics`]) next to them.
//! Outputs: `metrics.json`, `metrics.parquet` (kind `metrics`; long format, the whole
//! stream's metrics at boundary -1), `metrics.csv` (Avalanche's `eval_results.csv`
//! columns), `metrics.png` / `metrics.svg` (seen-class top-1 against the classes seen, each
//! class increment named, or against the images streamed in the iid and instance orders and
//! after a base set spanning every class), `metrics_matrix.png` / `metrics_matrix.svg` (the
//! accuracy matrix of every method as a heatmap) and a printed table.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Map, Value};

use super::cl_metrics::{self, accuracy_matrix, backward_transfer, forgetting, mean, ClassHits};
use super::classification::{
    classification_metrics, classification_omega, ClassificationOmega, ClassificationScore,
};
use super::outputs::{MetricRows, Outputs};
use super::{discover_methods, warn_above_baseline, EvaluateSettings};
use crate::artifact::TensorFile;
use crate::data::images::labels::LabelSet;
use crate::plot::{self, tick_label, Boundary, Figure, Heatmap, LineChart, Point};
use crate::stream::layout::{probabilities_index, MethodDir, RunLayout};
use crate::stream::metrics::above_baseline;

/// One method's scores.
#[derive(Debug, Clone)]
pub struct ClassMethod {
    pub name: String,
    /// Classes seen at each scored evaluation point.
    pub seen_classes: Vec<usize>,
    /// Images streamed at each scored evaluation point (after the base initialisation).
    pub positions: Vec<usize>,
    pub scores: Vec<ClassificationScore>,
    pub omega: Option<ClassificationOmega>,
    /// Top-1 hits per class at each point (for the accuracy matrix).
    pub hits: Vec<ClassHits>,
}

impl ClassMethod {
    /// R[k][j]: top-1 on experience j after point k.
    pub fn accuracy_matrix(&self, experiences: &[Vec<usize>]) -> Vec<Vec<Option<f64>>> {
        accuracy_matrix(&self.hits, experiences)
    }

    /// Mean seen-class top-1 over the points (Rebuffi et al. 2017).
    pub fn average_incremental_accuracy(&self) -> Option<f64> {
        mean(self.scores.iter().filter_map(|s| s.seen_classes_top1))
    }
}

#[derive(Debug, Clone)]
pub struct ClassEvaluation {
    pub labels: PathBuf,
    pub base_classes: usize,
    pub num_classes: usize,
    pub baseline: String,
    /// The stream order (`class_iid` unless the probabilities name another).
    pub order: String,
    /// The classes of each experience (column of the accuracy matrix): the base classes
    /// then each increment's (class-incremental streams), else one class each.
    pub experiences: Vec<Vec<usize>>,
    pub methods: Vec<ClassMethod>,
    /// Each method's compute from its `complete.json` ([`super::compute`]).
    pub compute: Vec<super::compute::MethodCompute>,
}

/// What one probabilities file says of its point: classes seen, position, order, and
/// the top-1 hits per class.
struct PointOf {
    seen: usize,
    position: usize,
    order: Option<String>,
    hits: ClassHits,
}

/// Method folders holding probabilities: remind, finetune, others, the baseline last.
fn methods_of(stream_dir: &Path, s: &EvaluateSettings) -> Result<Vec<String>> {
    match &s.methods {
        Some(m) => Ok(m.clone()),
        None => discover_methods(stream_dir, &s.baseline, MethodDir::probabilities_dir),
    }
}

/// Evaluation index -> file, for one method.
fn point_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(k) = probabilities_index(&name) {
            out.push((k, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn score_file(
    path: &Path,
    set: &LabelSet,
    label_of: &HashMap<u64, i64>,
) -> Result<(PointOf, ClassificationScore)> {
    let f = TensorFile::open(path, "probabilities")?;
    let p = path.display();
    let k = set.num_classes();
    ensure!(
        f.shape() == [k],
        "{p}: {:?} probabilities per item, the label table has {k} classes",
        f.shape()
    );
    let producer = f.producer()?;
    let count = |key: &str| -> Result<usize> {
        let v = producer
            .params
            .get(key)
            .and_then(|v| v.as_u64())
            .with_context(|| format!("{p}: no producer parameter {key}"))?;
        Ok(v as usize)
    };
    let seen = count("seen_classes")?;
    ensure!(
        (1..=k).contains(&seen),
        "{p}: producer parameter seen_classes: expected 1 to {k}, found {seen}"
    );
    let point = PointOf {
        seen,
        position: count("position")?,
        order: producer
            .params
            .get("order")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        hits: ClassHits::default(),
    };
    let mut probs = Vec::with_capacity(f.len() * k);
    let mut labels = Vec::with_capacity(f.len());
    for b in 0..f.num_batches() {
        for &id in f.batch_ids(b)? {
            labels.push(*label_of.get(&id).with_context(|| {
                format!(
                    "{p}: id {id} is not a validation item of {}",
                    set.path.display()
                )
            })?);
        }
        probs.extend_from_slice(f.batch_f32(b)?);
    }
    let expected = LabelSet::among(&set.val, seen).len();
    ensure!(
        labels.len() == expected,
        "{p}: {} items scored, but the {seen} seen classes have {expected} validation items",
        labels.len()
    );
    let base: Vec<i64> = (0..set.base_classes as i64).collect();
    let seen_list: Vec<i64> = (0..seen as i64).collect();
    let score = classification_metrics(&probs, k, &labels, &base, &seen_list)
        .with_context(|| format!("scoring {p}"))?;
    let point = PointOf {
        hits: ClassHits::count(&probs, k, &labels),
        ..point
    };
    Ok((point, score))
}

/// Scores every method of `stream_dir` against the label table `labels`.
pub fn evaluate_classification(
    labels: &Path,
    stream_dir: &Path,
    s: &EvaluateSettings,
) -> Result<ClassEvaluation> {
    let set = LabelSet::read(labels)?;
    let label_of: HashMap<u64, i64> = set
        .val
        .ids
        .iter()
        .copied()
        .zip(set.val.labels.iter().copied())
        .collect();
    let mut methods = Vec::new();
    let mut order: Option<String> = None;
    // The evaluation points every method should have: the plan's, else up to the last any
    // method has.
    let planned = super::read_plan(stream_dir)?.map(|p| p.boundaries.len());
    for name in methods_of(stream_dir, s)? {
        let method_dir = RunLayout::new(stream_dir).method(&name);
        let dir = method_dir.probabilities_dir();
        let files = point_files(&dir)?;
        ensure!(
            !files.is_empty(),
            "{}: no evaluation points (eval-KKK.arrow)",
            dir.display()
        );
        if !s.allow_partial {
            let last = files.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
            let missing: Vec<usize> = (0..planned.unwrap_or(last).max(last))
                .filter(|k| !files.iter().any(|(i, _)| i == k))
                .collect();
            let complete = method_dir.complete();
            ensure!(
                missing.is_empty(),
                "{}: the run of '{name}' lacks evaluation points {} (eval-KKK.arrow in {}); \
                 finish it (remind-stream-train --resume) or pass --allow-partial",
                stream_dir.display(),
                super::join_numbers(&missing),
                dir.display()
            );
            ensure!(
                complete.is_file(),
                "{}: the run of '{name}' is incomplete (no {}); finish it \
                 (remind-stream-train --resume) or pass --allow-partial",
                stream_dir.display(),
                complete.display()
            );
        }
        let mut m = ClassMethod {
            name: name.clone(),
            seen_classes: Vec::new(),
            positions: Vec::new(),
            scores: Vec::new(),
            omega: None,
            hits: Vec::new(),
        };
        for (_, path) in files {
            let (point, score) = score_file(&path, &set, &label_of)?;
            let named = point.order.unwrap_or_else(|| "class_iid".into());
            match &order {
                None => order = Some(named),
                Some(o) => ensure!(
                    *o == named,
                    "{}: order {named}, but other evaluation points are of order {o}: the \
                     methods' runs must stream one order",
                    path.display()
                ),
            }
            m.seen_classes.push(point.seen);
            m.positions.push(point.position);
            m.hits.push(point.hits);
            m.scores.push(score);
        }
        methods.push(m);
    }
    let order = order.unwrap_or_else(|| "class_iid".into());
    let by_class = points_by_class(&order, set.base_classes, set.num_classes());
    let base = methods.iter().find(|m| m.name == s.baseline).cloned();
    if let Some(base) = base {
        for m in methods.iter_mut() {
            // Pair the points by stream position (classes seen, in the class orders,
            // follow from it): a partial run pairs its points with the baseline's first.
            let (mut mine, mut theirs, mut seen_at) = (Vec::new(), Vec::new(), Vec::new());
            for (i, (at, score)) in m.positions.iter().zip(&m.scores).enumerate() {
                if let Some(j) = base.positions.iter().position(|x| x == at) {
                    mine.push(*score);
                    theirs.push(base.scores[j]);
                    seen_at.push(if by_class { m.seen_classes[i] } else { *at });
                }
            }
            m.omega = Some(classification_omega(&mine, &theirs)?);
            if m.name != base.name {
                let top1 = |v: &[ClassificationScore]| -> Vec<f64> {
                    v.iter()
                        .map(|s| s.seen_classes_top1.unwrap_or(0.0))
                        .collect()
                };
                let above = above_baseline(&seen_at, &top1(&mine), &top1(&theirs));
                let at = if by_class {
                    "classes seen"
                } else {
                    "images streamed"
                };
                warn_above_baseline(&m.name, &base.name, at, &above);
            }
        }
    }
    // Class-incremental: the base classes, then each point's new classes; else one
    // experience per class.
    let k = set.num_classes();
    let experiences: Vec<Vec<usize>> = match methods.iter().max_by_key(|m| m.seen_classes.len()) {
        Some(m) if by_class => {
            let mut ends = m.seen_classes.clone();
            ends.dedup();
            let mut start = 0;
            ends.iter()
                .map(|&end| {
                    let e = (start..end).collect();
                    start = end;
                    e
                })
                .collect()
        }
        _ => (0..k).map(|c| vec![c]).collect(),
    };
    Ok(ClassEvaluation {
        labels: labels.to_path_buf(),
        base_classes: set.base_classes,
        num_classes: k,
        baseline: s.baseline.clone(),
        order,
        experiences,
        compute: super::compute::read_compute(stream_dir, methods.iter().map(|m| m.name.as_str())),
        methods,
    })
}

type Getter = fn(&ClassificationScore) -> Option<f64>;

const FIELDS: [(&str, Getter); 6] = [
    ("base_classes_top1", |s| s.base_classes_top1),
    ("base_classes_top5", |s| s.base_classes_top5),
    ("non_base_classes_top1", |s| s.non_base_classes_top1),
    ("non_base_classes_top5", |s| s.non_base_classes_top5),
    ("seen_classes_top1", |s| s.seen_classes_top1),
    ("seen_classes_top5", |s| s.seen_classes_top5),
];

/// See [`ClassEvaluation::by_class`].
fn points_by_class(order: &str, base_classes: usize, num_classes: usize) -> bool {
    order.starts_with("class") && base_classes < num_classes
}

impl ClassEvaluation {
    /// Whether points are told apart by the classes seen: a class order whose base set
    /// leaves classes to stream (ImageNet's protocol). Otherwise by images streamed (iid
    /// and instance orders, and class orders after a base set spanning every class).
    pub fn by_class(&self) -> bool {
        points_by_class(&self.order, self.base_classes, self.num_classes)
    }

    /// The x value of each point of `m`: classes seen (class orders) or images streamed.
    fn x_of(&self, m: &ClassMethod) -> Vec<usize> {
        if self.by_class() {
            m.seen_classes.clone()
        } else {
            m.positions.clone()
        }
    }
}

/// `metrics.json`: per method the reference's accuracy arrays (fractions, one entry per
/// evaluation point), `seen_classes`, and `omega_all_top1` / `omega_all_top5`.
pub fn metrics_json(ev: &ClassEvaluation) -> Value {
    let mut top = Map::new();
    top.insert("task".into(), json!("classification"));
    top.insert("base_classes".into(), json!(ev.base_classes));
    top.insert("num_classes".into(), json!(ev.num_classes));
    top.insert("experiences".into(), json!(ev.experiences));
    // Named only for the other orders, so class_iid metrics read as they did.
    let by_class = ev.by_class();
    if ev.order != "class_iid" || !by_class {
        top.insert("order".into(), json!(ev.order));
    }
    for m in &ev.methods {
        let mut o = Map::new();
        o.insert("seen_classes".into(), json!(m.seen_classes));
        if !by_class {
            o.insert("images_streamed".into(), json!(m.positions));
        }
        for (name, get) in FIELDS {
            let v: Vec<Option<f64>> = m.scores.iter().map(get).collect();
            o.insert(name.into(), json!(v));
        }
        for (name, v) in stream_summary(ev, m) {
            o.insert(name.into(), json!(v));
        }
        let r = m.accuracy_matrix(&ev.experiences);
        o.insert("accuracy_matrix".into(), json!(r));
        top.insert(m.name.clone(), Value::Object(o));
    }
    super::compute::insert_compute(&mut top, &ev.compute);
    Value::Object(top)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.2}", 100.0 * x))
}

/// The printed table: seen-class top-1 / top-5 per method and point, then Omega.
pub fn render_table(ev: &ClassEvaluation) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Seen-class accuracy (top-1 / top-5, %) on {} ({} base classes of {})\n",
        ev.labels.display(),
        ev.base_classes,
        ev.num_classes
    ));
    if ev.order != "class_iid" {
        out.push_str(&format!("Stream order: {}\n", ev.order));
    }
    let points: Vec<usize> = ev
        .methods
        .iter()
        .flat_map(|m| ev.x_of(m))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let x_name = if ev.by_class() { "classes" } else { "images" };
    out.push_str(&format!("{x_name:<10}"));
    for m in &ev.methods {
        out.push_str(&format!("{:>18}", m.name));
    }
    out.push('\n');
    for p in points {
        out.push_str(&format!("{p:<10}"));
        for m in &ev.methods {
            let cell = match ev.x_of(m).iter().position(|&x| x == p) {
                Some(i) => format!(
                    "{} / {}",
                    pct(m.scores[i].seen_classes_top1),
                    pct(m.scores[i].seen_classes_top5)
                ),
                None => "-".into(),
            };
            out.push_str(&format!("{cell:>18}"));
        }
        out.push('\n');
    }
    // Rows 2 and 3 of the whole stream's metrics (average incremental accuracy, forgetting).
    let summaries: Vec<_> = ev.methods.iter().map(|m| stream_summary(ev, m)).collect();
    for (row, label) in [(2, "avg_inc"), (3, "forgetting")] {
        out.push_str(&format!("{label:<10}"));
        for s in &summaries {
            out.push_str(&format!("{:>18}", pct(s[row].1)));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:<10}", "omega_all"));
    for m in &ev.methods {
        let cell = match m.omega {
            Some(o) => format!(
                "{} / {}",
                o.all_top1.map_or("-".into(), |v| format!("{v:.3}")),
                o.all_top5.map_or("-".into(), |v| format!("{v:.3}"))
            ),
            None => "-".into(),
        };
        out.push_str(&format!("{cell:>18}"));
    }
    out.push('\n');
    out.push_str(&super::compute::render_compute(&ev.compute));
    out
}

/// "2-3" for the classes 2 and 3, "2" for class 2 alone.
fn class_span(classes: &[usize]) -> String {
    match (classes.first(), classes.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    }
}

/// The classes seen once each experience is learnt.
fn experience_ends(ev: &ClassEvaluation) -> Vec<usize> {
    ev.experiences
        .iter()
        .scan(0, |end, e| {
            *end += e.len();
            Some(*end)
        })
        .collect()
}

/// Where each experience ends on the classes-seen axis, and how to name it ("base 0-1",
/// "+classes 2-3", ... with shorter forms for narrow segments).
fn class_boundaries(ev: &ClassEvaluation) -> Vec<Boundary> {
    ev.experiences
        .iter()
        .zip(experience_ends(ev))
        .enumerate()
        .map(|(e, (classes, end))| {
            let span = class_span(classes);
            let labels = if e == 0 {
                vec![format!("base {span}"), span]
            } else {
                let word = if classes.len() == 1 {
                    "class"
                } else {
                    "classes"
                };
                vec![
                    format!("+{word} {span}"),
                    format!("+{span}"),
                    format!("e{e}"),
                ]
            };
            Boundary {
                x: end as f64,
                labels,
            }
        })
        .collect()
}

/// The plot: seen-class top-1 against the number of classes seen (each class increment
/// marked and named), or against the images streamed.
pub fn render_plot(ev: &ClassEvaluation) -> Result<Figure> {
    let series = plot::method_lines(
        ev.methods.iter().map(|m| {
            let points = ev
                .x_of(m)
                .into_iter()
                .zip(&m.scores)
                .filter_map(|(c, s)| Some(Point::one(c as f64, 100.0 * s.seen_classes_top1?)))
                .collect();
            (m.name.as_str(), points)
        }),
        &ev.baseline,
    );
    let (title, x_label, x_max, boundaries) = if ev.by_class() {
        (
            format!(
                "Top-1 accuracy on all seen classes ({} base of {})",
                ev.base_classes, ev.num_classes
            ),
            "classes seen",
            ev.num_classes as f64,
            class_boundaries(ev),
        )
    } else {
        let most = ev.methods.iter().flat_map(|m| m.positions.iter()).max();
        (
            format!(
                "Top-1 accuracy on all {} classes, {} order",
                ev.num_classes, ev.order
            ),
            "images streamed",
            most.map_or(1.0, |&n| n.max(1) as f64),
            Vec::new(),
        )
    };
    let chart = LineChart {
        title,
        x_label: x_label.into(),
        y_label: "accuracy (%)".into(),
        x_range: (0.0, x_max),
        y_range: (0.0, 100.0),
        boundaries,
        series,
    };
    Figure::lines(chart, Vec::new())
}

/// The accuracy matrix of every method as a heatmap: a row per evaluation point, a column
/// per experience. Class-incremental streams whose points are the experiences name both
/// by their classes (row "2-3": after learning classes 2-3); otherwise rows are the images
/// streamed and columns the experiences' classes.
pub fn render_matrix(ev: &ClassEvaluation) -> Figure {
    let spans: Vec<String> = ev.experiences.iter().map(|e| class_span(e)).collect();
    let ends = experience_ends(ev);
    let maps = ev
        .methods
        .iter()
        .map(|m| {
            let per_experience = ev.by_class() && ends.starts_with(&m.seen_classes);
            let (row_title, rows) = if per_experience {
                (
                    "after learning classes",
                    spans[..m.seen_classes.len()].to_vec(),
                )
            } else {
                (
                    "after images streamed",
                    m.positions.iter().map(|&p| tick_label(p as f64)).collect(),
                )
            };
            Heatmap {
                title: m.name.clone(),
                row_title: row_title.into(),
                col_title: "top-1 (%) on classes".into(),
                rows,
                cols: spans.clone(),
                values: m.accuracy_matrix(&ev.experiences),
            }
        })
        .collect();
    Figure::heatmaps(maps)
}

/// Everything a classification evaluation writes ([`Outputs`]): `metrics.json`,
/// `metrics.parquet` (long format: per point its scores at its stream position; the whole
/// stream's Omega, forgetting, ... at boundary -1 and the last position), `metrics.csv`,
/// the plot and the accuracy matrix's heatmap.
pub fn outputs(ev: &ClassEvaluation) -> Result<Outputs> {
    let mut rows = MetricRows::default();
    for m in &ev.methods {
        for (k, (at, s)) in m.positions.iter().zip(&m.scores).enumerate() {
            for (name, get) in FIELDS {
                // Groups without items at a point (no non-base class yet) have no row.
                let Some(v) = get(s) else { continue };
                rows.push(&m.name, k as i64, *at as u64, name.to_string(), v);
            }
        }
        let end = m.positions.last().copied().unwrap_or(0) as u64;
        for (name, v) in stream_summary(ev, m) {
            if let Some(v) = v {
                rows.push(&m.name, -1, end, name.to_string(), v);
            }
        }
    }
    Ok(Outputs {
        json: metrics_json(ev),
        rows,
        meta: HashMap::new(),
        csv: eval_results_csv(ev),
        plot: render_plot(ev)?,
        matrix: render_matrix(ev),
    })
}

/// The whole stream's metrics of `m`: Omega, average incremental accuracy, forgetting,
/// backward transfer (class-incremental streams only).
fn stream_summary(ev: &ClassEvaluation, m: &ClassMethod) -> [(&'static str, Option<f64>); 5] {
    let r = m.accuracy_matrix(&ev.experiences);
    [
        ("omega_all_top1", m.omega.and_then(|o| o.all_top1)),
        ("omega_all_top5", m.omega.and_then(|o| o.all_top5)),
        (
            "average_incremental_accuracy",
            m.average_incremental_accuracy(),
        ),
        ("forgetting", forgetting(&r)),
        (
            "backward_transfer",
            if ev.by_class() {
                backward_transfer(&r)
            } else {
                None
            },
        ),
    ]
}

/// `metrics.csv` ([`cl_metrics::eval_results_csv`]): every score counts for forgetting.
pub fn eval_results_csv(ev: &ClassEvaluation) -> String {
    cl_metrics::eval_results_csv(ev.methods.iter().map(|m| {
        let r = m.accuracy_matrix(&ev.experiences);
        (m.name.as_str(), r.clone(), r)
    }))
}
