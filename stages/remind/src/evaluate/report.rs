//! What a VQA evaluation writes: `metrics.json`, `metrics.parquet` (kind `metrics`),
//! `metrics.csv`, the printed tables, the plot `metrics.png` / `metrics.svg` and the
//! accuracy matrix's heatmap `metrics_matrix.png` / `.svg` (question types as experiences,
//! [`super::vqa_cl`]).

use std::collections::HashMap;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::cl_metrics::eval_results_csv;
use super::outputs::{MetricRows, Outputs};
use super::vqa_cl::TypeExperiences;
use super::{VqaEvaluation, TYPES_KEY};
use crate::plot::{self, tick_label, Boundary, Figure, Heatmap, LineChart, Point, Series};

/// `metrics.json`: one key per method, plus `question_types` (type names, id order).
pub fn metrics_json(ev: &VqaEvaluation) -> Value {
    let mut top = Map::new();
    top.insert(TYPES_KEY.into(), json!(ev.type_names));
    let x = TypeExperiences::of(ev);
    // The accuracy matrix's columns: the types in learning order, and where each is learnt.
    top.insert("experiences".into(), json!(x.names));
    top.insert("learnt_at_boundary".into(), json!(x.learnt_at));
    for m in &ev.methods {
        let mut per_type = Map::new();
        for (id, name) in ev.type_ids.iter().zip(&ev.type_names) {
            let v: Vec<Option<f64>> = m
                .boundaries
                .iter()
                .map(|b| b.score.per_type.get(id).copied())
                .collect();
            per_type.insert(name.clone(), json!(v));
        }
        let mut o = Map::new();
        // A list of one value per boundary.
        let per_boundary = |value: fn(&super::BoundaryScore) -> Value| {
            Value::Array(m.boundaries.iter().map(value).collect())
        };
        o.insert("boundaries".into(), per_boundary(|b| json!(b.position)));
        o.insert("boundary_index".into(), per_boundary(|b| json!(b.boundary)));
        o.insert(
            "mean_per_type".into(),
            per_boundary(|b| json!(b.score.mean_per_type)),
        );
        o.insert("overall".into(), per_boundary(|b| json!(b.score.overall)));
        o.insert("per_type".into(), Value::Object(per_type));
        o.insert("omega".into(), json!(m.omega));
        for (name, v) in x.summary(m) {
            o.insert(name.into(), json!(v));
        }
        o.insert("accuracy_matrix".into(), json!(x.matrix(m)));
        if let Some(note) = &m.omega_note {
            o.insert("omega_note".into(), json!(note));
        }
        o.insert("questions".into(), json!(ev.questions));
        o.insert("split".into(), json!(ev.split));
        top.insert(m.name.clone(), Value::Object(o));
    }
    super::compute::insert_compute(&mut top, &ev.compute);
    Value::Object(top)
}

/// The rows of `metrics.parquet`: per method and boundary `mean_per_type`, `overall` and
/// `type:<name>` for every question type; the whole stream's Omega, average incremental
/// accuracy, forgetting and backward transfer at boundary -1 and the last position.
pub fn metric_rows(ev: &VqaEvaluation) -> MetricRows {
    let mut rows = MetricRows::default();
    let x = TypeExperiences::of(ev);
    for m in &ev.methods {
        let end = m.boundaries.last().map_or(0, |b| b.position);
        let whole = [("omega", m.omega)].into_iter().chain(x.summary(m));
        for (name, v) in whole {
            if let Some(v) = v {
                rows.push(&m.name, -1, end, name.to_string(), v);
            }
        }
        for b in &m.boundaries {
            let mut push = |name: String, v: f64| {
                rows.push(&m.name, b.boundary as i64, b.position, name, v);
            };
            push("mean_per_type".into(), b.score.mean_per_type);
            push("overall".into(), b.score.overall);
            for (id, name) in ev.type_ids.iter().zip(&ev.type_names) {
                if let Some(&v) = b.score.per_type.get(id) {
                    push(format!("type:{name}"), v);
                }
            }
        }
    }
    rows
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

/// The printed report: MPT per boundary and method with an Omega row, then per-type
/// accuracy at the final boundary.
pub fn render_tables(ev: &VqaEvaluation) -> String {
    let mut out = String::new();
    let widths: Vec<usize> = ev.methods.iter().map(|m| m.name.len().max(9)).collect();
    let seg_w = ev
        .segment_types
        .values()
        .map(|s| s.len())
        .max()
        .map(|w| w.max(7));
    let row = |first: String, cells: Vec<String>| -> String {
        let mut line = first;
        for (c, w) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {c:>w$}"));
        }
        line.push('\n');
        line
    };
    out.push_str(&format!(
        "Mean-per-type accuracy (%) on '{}' ({} questions, {} question types)\n",
        ev.split,
        ev.questions,
        ev.type_ids.len()
    ));
    let head = |seg: Option<usize>| -> String {
        let mut s = format!("{:>8}  {:>10}", "boundary", "position");
        if let Some(w) = seg {
            s.push_str(&format!("  {:<w$}", "segment"));
        }
        s
    };
    let lead_w = head(seg_w).len();
    out.push_str(&row(
        head(seg_w),
        ev.methods.iter().map(|m| m.name.clone()).collect(),
    ));
    for (&k, &pos) in &ev.positions {
        let mut first = format!("{k:>8}  {pos:>10}");
        if let Some(w) = seg_w {
            let seg = ev.segment_types.get(&k).map(String::as_str).unwrap_or("-");
            first.push_str(&format!("  {seg:<w$}"));
        }
        out.push_str(&row(
            first,
            ev.methods
                .iter()
                .map(|m| pct(m.at(k).map(|b| b.score.mean_per_type)))
                .collect(),
        ));
    }
    let omega_cells = ev
        .methods
        .iter()
        .map(|m| {
            m.omega
                .map(|o| format!("{o:.3}"))
                .unwrap_or_else(|| "n/a".into())
        })
        .collect();
    out.push_str(&row(
        format!("{:<lead_w$}", format!("Omega (vs {})", ev.baseline)),
        omega_cells,
    ));
    // The whole stream's continual-learning metrics (question types as experiences).
    let x = TypeExperiences::of(ev);
    let summaries: Vec<_> = ev.methods.iter().map(|m| x.summary(m)).collect();
    for (i, label) in ["avg_inc (learnt types)", "forgetting", "backward transfer"]
        .iter()
        .enumerate()
    {
        let cells = summaries.iter().map(|s| pct(s[i].1)).collect();
        out.push_str(&row(format!("{label:<lead_w$}"), cells));
    }

    if let Some((&last, &pos)) = ev.positions.iter().next_back() {
        out.push_str(&format!(
            "\nPer-type accuracy (%) at the final boundary ({last}, position {pos})\n"
        ));
        let type_w = ev
            .type_names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(0)
            .max(13);
        out.push_str(&row(
            format!("{:<type_w$}", "question type"),
            ev.methods.iter().map(|m| m.name.clone()).collect(),
        ));
        // A row of one score per method at the final boundary.
        let score_row = |label: &str, score: &dyn Fn(&super::BoundaryScore) -> Option<f64>| {
            let cells = ev
                .methods
                .iter()
                .map(|m| pct(m.at(last).and_then(score)))
                .collect();
            row(format!("{label:<type_w$}"), cells)
        };
        for (id, name) in ev.type_ids.iter().zip(&ev.type_names) {
            out.push_str(&score_row(name, &|b| b.score.per_type.get(id).copied()));
        }
        out.push_str(&score_row("mean per type", &|b| {
            Some(b.score.mean_per_type)
        }));
        out.push_str(&score_row("overall", &|b| Some(b.score.overall)));
    }
    for m in &ev.methods {
        if let Some(note) = &m.omega_note {
            out.push_str(&format!("note: {}: Omega {note}\n", m.name));
        }
    }
    for note in &ev.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&super::compute::render_compute(&ev.compute));
    out
}

fn series_of(
    ev: &VqaEvaluation,
    value: impl Fn(&super::BoundaryScore) -> Option<f64>,
) -> Vec<Series> {
    plot::method_lines(
        ev.methods.iter().map(|m| {
            let points = m
                .boundaries
                .iter()
                .filter_map(|b| Some(Point::one(b.position as f64, 100.0 * value(b)?)))
                .collect();
            (m.name.as_str(), points)
        }),
        &ev.baseline,
    )
}

/// The plot: MPT against stream position for every method (top, with the legend; every
/// boundary marked, each segment named by the question type learned in it), then one
/// small chart per question type.
pub fn render_plot(ev: &VqaEvaluation) -> Result<Figure> {
    let x_max = ev.positions.values().copied().max().unwrap_or(1).max(1) as f64;
    let boundaries: Vec<Boundary> = ev
        .positions
        .iter()
        .map(|(k, &p)| Boundary {
            x: p as f64,
            labels: ev.segment_types.get(k).cloned().into_iter().collect(),
        })
        .collect();
    let chart = |title: String, x_label: &str, series: Vec<Series>, named: bool| LineChart {
        title,
        x_label: x_label.into(),
        y_label: "accuracy (%)".into(),
        x_range: (0.0, x_max),
        y_range: (0.0, 100.0),
        boundaries: boundaries
            .iter()
            .map(|b| Boundary {
                x: b.x,
                labels: if named { b.labels.clone() } else { Vec::new() },
            })
            .collect(),
        series,
    };
    let main = chart(
        format!(
            "Mean-per-type accuracy on '{}' ({} questions)",
            ev.split, ev.questions
        ),
        "stream position (training questions seen)",
        series_of(ev, |b| Some(b.score.mean_per_type)),
        true,
    );
    let per_type = ev
        .type_ids
        .iter()
        .zip(&ev.type_names)
        .map(|(id, name)| {
            chart(
                format!("type: {name}"),
                "stream position",
                series_of(ev, |b| b.score.per_type.get(id).copied()),
                false,
            )
        })
        .collect();
    Figure::lines(main, per_type)
}

/// The accuracy matrix of every method as a heatmap: a row per boundary (named by the
/// question type learnt in its segment, in `qtype` order), a column per question type in
/// learning order.
pub fn render_matrix(ev: &VqaEvaluation) -> Figure {
    let x = TypeExperiences::of(ev);
    let maps = ev
        .methods
        .iter()
        .map(|m| {
            let named = !ev.segment_types.is_empty();
            let rows = m
                .boundaries
                .iter()
                .map(|b| match ev.segment_types.get(&b.boundary) {
                    Some(t) if named => t.clone(),
                    _ => tick_label(b.position as f64),
                })
                .collect();
            Heatmap {
                title: m.name.clone(),
                row_title: if named {
                    "after learning type".into()
                } else {
                    "after questions streamed".into()
                },
                col_title: "accuracy (%) on type".into(),
                rows,
                cols: x.names.clone(),
                values: x.matrix(m),
            }
        })
        .collect();
    Figure::heatmaps(maps)
}

/// Everything a VQA evaluation writes ([`Outputs`]): `metrics.json`, `metrics.parquet`,
/// `metrics.csv` (Avalanche's `eval_results.csv` columns), the plot and the accuracy
/// matrix's heatmap.
pub fn outputs(ev: &VqaEvaluation) -> Result<Outputs> {
    let x = TypeExperiences::of(ev);
    let csv = eval_results_csv(
        ev.methods
            .iter()
            .map(|m| (m.name.as_str(), x.matrix(m), x.learnt(m))),
    );
    let meta = HashMap::from([
        ("remind.split".to_string(), ev.split.clone()),
        ("remind.baseline".to_string(), ev.baseline.clone()),
    ]);
    Ok(Outputs {
        json: metrics_json(ev),
        rows: metric_rows(ev),
        meta,
        csv,
        plot: render_plot(ev)?,
        matrix: render_matrix(ev),
    })
}
