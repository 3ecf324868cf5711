//! The charts of `remind-evaluate`, drawn with [plotters]: line charts of a metric along the
//! stream (one line per method, the stream's segments marked and named, a min-max bar where
//! a point holds several values) and heatmaps (an accuracy matrix, values in the cells).
//! A [`Figure`] places them and is written as PNG (an RGB buffer encoded with `png`) and as
//! SVG (text as `<text>` elements). Text is set in the embedded DejaVu Sans subset
//! (`assets/DejaVuSans-subset.ttf`, its licence beside it), so the pictures do not depend
//! on the fonts installed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::artifact::atomic::write_bytes;

/// DejaVu Sans cut to Latin-1 and a few signs (see `assets/DejaVuSans-LICENSE.txt`).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
/// The family every text style names: the embedded font is registered under it.
const FAMILY: &str = "sans-serif";

const TEXT: RGBColor = RGBColor(34, 34, 34);
const GRID: RGBColor = RGBColor(225, 225, 225);
const AXIS: RGBColor = RGBColor(90, 90, 90);
const BOUNDARY: RGBColor = RGBColor(140, 140, 140);
const MISSING: RGBColor = RGBColor(238, 238, 238);

/// Distinct series colours (colour-blind-aware picks first).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 95, 191),
    RGBColor(224, 108, 0),
    RGBColor(42, 157, 63),
    RGBColor(192, 38, 45),
    RGBColor(123, 79, 176),
    RGBColor(140, 86, 75),
    RGBColor(214, 79, 168),
    RGBColor(77, 77, 77),
    RGBColor(156, 156, 28),
    RGBColor(23, 162, 184),
];

/// Registers the embedded font with plotters (once); every drawing and text measurement
/// goes through here first.
fn font_ready() -> Result<()> {
    static READY: OnceLock<bool> = OnceLock::new();
    let ok = *READY.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ensure!(ok, "the embedded chart font cannot be read");
    Ok(())
}

fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
}

fn text_style(size: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    let mut style = font(size).color(color);
    style.pos = Pos::new(h, v);
    style
}

/// Width in pixels of `text` at `size`.
fn text_width(text: &str, size: f64) -> Result<u32> {
    font_ready()?;
    let (w, _) = font(size)
        .box_size(text)
        .map_err(|e| anyhow!("cannot measure {text:?}: {e}"))?;
    Ok(w)
}

/// Marker shapes, cycled with the colours so overlapping series stay distinguishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Diamond,
    Triangle,
}

impl Marker {
    pub fn nth(i: usize) -> Self {
        [
            Marker::Circle,
            Marker::Square,
            Marker::Diamond,
            Marker::Triangle,
        ][i % 4]
    }
}

/// The values of a series at one x: one per seed or run. Several are drawn as their mean
/// with a bar from the smallest to the largest.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub values: Vec<f64>,
}

impl Point {
    pub fn one(x: f64, y: f64) -> Self {
        Self { x, values: vec![y] }
    }

    /// The mean of the values (None without any).
    pub fn mean(&self) -> Option<f64> {
        (!self.values.is_empty())
            .then(|| self.values.iter().sum::<f64>() / self.values.len() as f64)
    }

    /// (min, max) of the values, when there are several.
    pub fn spread(&self) -> Option<(f64, f64)> {
        (self.values.len() > 1).then(|| {
            let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = self
                .values
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        })
    }
}

/// One curve of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub marker: Marker,
    /// Dashed line (e.g. the baseline), so curves it hides show through its gaps.
    pub dashed: bool,
    pub points: Vec<Point>,
}

impl Series {
    /// The `i`-th method's line: its colour and marker by position, dashed for the
    /// baseline (the offline model).
    pub fn nth(i: usize, name: &str, baseline: bool, points: Vec<Point>) -> Self {
        Self {
            name: name.to_string(),
            color: PALETTE[i % PALETTE.len()],
            marker: Marker::nth(i),
            dashed: baseline,
            points,
        }
    }
}

/// One line per method, in order ([`Series::nth`]), from each method's name and points; the
/// one named `baseline` is dashed.
pub fn method_lines<'a>(
    methods: impl Iterator<Item = (&'a str, Vec<Point>)>,
    baseline: &str,
) -> Vec<Series> {
    methods
        .enumerate()
        .map(|(i, (name, points))| Series::nth(i, name, name == baseline, points))
        .collect()
}

/// The end of a segment of the stream, at `x`: a dashed vertical line, and above the chart
/// the segment's name. `labels` are ways to name the segment that ends here (since the
/// previous boundary or the start of the x range), longest first: the first that fits the
/// segment's width is drawn, else the last shortened with "…".
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    pub x: f64,
    pub labels: Vec<String>,
}

/// Adds `other`'s values to `chart`'s points, series by series and point by point (same
/// names and x, else an error).
fn merge_chart(chart: &mut LineChart, other: &LineChart) -> Result<()> {
    // A segment named differently in another run (each seed draws its own question-type
    // order) is left unnamed: no one name is true of every run.
    for (b, o) in chart.boundaries.iter_mut().zip(&other.boundaries) {
        if b.labels != o.labels {
            b.labels.clear();
        }
    }
    ensure!(
        chart.series.len() == other.series.len(),
        "the runs' charts '{}' have {} and {} lines",
        chart.title,
        chart.series.len(),
        other.series.len()
    );
    for (s, o) in chart.series.iter_mut().zip(&other.series) {
        ensure!(
            s.name == o.name && s.points.len() == o.points.len(),
            "the runs' charts '{}' differ: line '{}' with {} points against '{}' with {}",
            chart.title,
            s.name,
            s.points.len(),
            o.name,
            o.points.len()
        );
        for (p, q) in s.points.iter_mut().zip(&o.points) {
            ensure!(
                (p.x - q.x).abs() <= 1e-9 * p.x.abs().max(1.0),
                "the runs' line '{}' in '{}' has a point at x = {} against {}",
                s.name,
                chart.title,
                q.x,
                p.x
            );
            p.values.extend_from_slice(&q.values);
        }
    }
    Ok(())
}

/// Where the runs name the rows (or columns) differently, e.g. question types in each
/// seed's learning order, the cells were averaged by position: the labels become the
/// positions ("1st", "2nd", ...) and the axis title says so.
fn positional_labels(map: &mut Heatmap, others: &[&Heatmap]) {
    let ordinal = |k: usize| {
        let suffix = match (k % 10, k % 100) {
            (1, r) if r != 11 => "st",
            (2, r) if r != 12 => "nd",
            (3, r) if r != 13 => "rd",
            _ => "th",
        };
        format!("{k}{suffix}")
    };
    if others.iter().any(|o| o.rows != map.rows) {
        map.rows = (1..=map.rows.len()).map(ordinal).collect();
        map.row_title = format!("{} (by position: runs differ)", map.row_title);
    }
    if others.iter().any(|o| o.cols != map.cols) {
        map.cols = (1..=map.cols.len()).map(ordinal).collect();
        map.col_title = format!("{} (by position: runs differ)", map.col_title);
    }
}

/// Replaces every cell of `map` with the mean of its value and `others`' (the cells that
/// have one; None where none has).
fn mean_cells(map: &mut Heatmap, others: &[&Heatmap]) -> Result<()> {
    for o in others {
        ensure!(
            o.values.len() == map.values.len()
                && o.values
                    .iter()
                    .zip(&map.values)
                    .all(|(a, b)| a.len() == b.len()),
            "the runs' heatmaps '{}' differ in size",
            map.title
        );
    }
    for (r, row) in map.values.iter_mut().enumerate() {
        for (c, cell) in row.iter_mut().enumerate() {
            let found: Vec<f64> = std::iter::once(*cell)
                .chain(others.iter().map(|o| o.values[r][c]))
                .flatten()
                .collect();
            *cell = (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64);
        }
    }
    Ok(())
}

/// A line chart: title, axes, the segments of the stream and the series.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    /// In ascending x.
    pub boundaries: Vec<Boundary>,
    pub series: Vec<Series>,
}

/// A matrix of values in [0, 1] as coloured cells with the value (in %) written in them,
/// e.g. an accuracy matrix: rows are evaluation points, columns what is scored.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    /// Axis titles: down the rows, across the columns.
    pub row_title: String,
    pub col_title: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `values[r][c]`; None is drawn as an empty grey cell.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Text sizes and strokes of a line chart.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    title: f64,
    label: f64,
    tick: f64,
    line: u32,
    marker: u32,
}

const MAIN: Sizes = Sizes {
    title: 22.0,
    label: 17.0,
    tick: 15.0,
    line: 3,
    marker: 5,
};

const SMALL: Sizes = Sizes {
    title: 17.0,
    label: 14.0,
    tick: 13.0,
    line: 2,
    marker: 4,
};

/// Legend text size.
const LEGEND: f64 = 17.0;

#[derive(Debug, Clone)]
enum Panel {
    Chart(LineChart, Sizes),
    Legend(Vec<Series>),
    Heatmap(Heatmap),
}

/// A rectangle of the figure, in pixels.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: i32,
    y: i32,
    w: u32,
    h: u32,
}

/// Charts placed on a white page.
#[derive(Debug, Clone)]
pub struct Figure {
    pub width: u32,
    pub height: u32,
    panels: Vec<(Rect, Panel)>,
}

impl Figure {
    /// `main` with the legend of its series at its right, then the `small` charts in a
    /// grid beneath it (e.g. one per question type).
    pub fn lines(main: LineChart, small: Vec<LineChart>) -> Result<Self> {
        let mut name_w = 0;
        for s in &main.series {
            name_w = name_w.max(text_width(&s.name, LEGEND)?);
        }
        let legend_w = name_w + 90;
        let cols: u32 = match small.len() {
            n @ 0..=3 => n.max(1) as u32,
            4..=9 => 3,
            _ => 4,
        };
        let rows = small.len().div_ceil(cols as usize) as u32;
        let width = (470 * cols).max(1000 + legend_w);
        let (main_h, cell_h, gap) = (540u32, 340u32, 20u32);
        let height = main_h + if rows > 0 { gap + rows * cell_h } else { 0 };
        let legend_h = main.series.len() as u32 * row_height(LEGEND) + 16;
        let mut panels = vec![
            (
                Rect {
                    x: 0,
                    y: 0,
                    w: width - legend_w,
                    h: main_h,
                },
                Panel::Legend(Vec::new()),
            ),
            (
                Rect {
                    x: (width - legend_w + 6) as i32,
                    y: 70,
                    w: legend_w - 16,
                    h: legend_h,
                },
                Panel::Legend(main.series.clone()),
            ),
        ];
        panels[0].1 = Panel::Chart(main, MAIN);
        let cell_w = width / cols;
        for (i, chart) in small.into_iter().enumerate() {
            let (r, c) = (i as u32 / cols, i as u32 % cols);
            let rect = Rect {
                x: (c * cell_w) as i32,
                y: (main_h + gap + r * cell_h) as i32,
                w: cell_w,
                h: cell_h - 8,
            };
            panels.push((rect, Panel::Chart(chart, SMALL)));
        }
        Ok(Self {
            width,
            height,
            panels,
        })
    }

    /// The heatmaps side by side, up to three a row, each sized to its matrix.
    pub fn heatmaps(maps: Vec<Heatmap>) -> Self {
        let sizes: Vec<(u32, u32)> = maps.iter().map(heatmap_size).collect();
        let slot_w = sizes.iter().map(|s| s.0).max().unwrap_or(200);
        let slot_h = sizes.iter().map(|s| s.1).max().unwrap_or(200);
        let cols = maps.len().clamp(1, 3) as u32;
        let rows = maps.len().div_ceil(3).max(1) as u32;
        let panels = maps
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let (r, c) = (i as u32 / cols, i as u32 % cols);
                let rect = Rect {
                    x: (c * slot_w) as i32,
                    y: (r * slot_h) as i32,
                    w: slot_w,
                    h: slot_h,
                };
                (rect, Panel::Heatmap(m))
            })
            .collect();
        Self {
            width: cols * slot_w,
            height: rows * slot_h,
            panels,
        }
    }

    /// One figure of several runs of one protocol (seeds), each drawn alike: every line
    /// chart's point gathers the runs' values at its x (drawn as their mean with a min-max
    /// bar), every heatmap cell their mean; titles say how many runs. Errors when the
    /// figures differ in their charts, series or points (runs of different protocols).
    pub fn merge_runs(figures: &[Figure]) -> Result<Self> {
        let (first, rest) = figures
            .split_first()
            .ok_or_else(|| anyhow!("no figure to merge"))?;
        let n = figures.len();
        ensure!(
            rest.iter().all(|f| f.panels.len() == first.panels.len()),
            "the runs' figures differ in their number of charts"
        );
        let mut merged = first.clone();
        for (i, (_, panel)) in merged.panels.iter_mut().enumerate() {
            let others = rest
                .iter()
                .map(|f| {
                    f.panels
                        .get(i)
                        .map(|p| &p.1)
                        .ok_or_else(|| anyhow!("the runs' figures differ in their charts"))
                })
                .collect::<Result<Vec<_>>>()?;
            match panel {
                Panel::Chart(chart, sizes) => {
                    for other in &others {
                        let Panel::Chart(o, _) = other else {
                            bail!("the runs' figures differ in their charts");
                        };
                        merge_chart(chart, o)?;
                    }
                    if sizes.title == MAIN.title {
                        chart.title = format!("{}: mean of {n} runs, bars min to max", chart.title);
                    }
                }
                Panel::Heatmap(map) => {
                    let maps = others
                        .iter()
                        .map(|o| match o {
                            Panel::Heatmap(m) => Ok(m),
                            _ => Err(anyhow!("the runs' figures differ in their heatmaps")),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    mean_cells(map, &maps)?;
                    positional_labels(map, &maps);
                    map.title = format!("{} (mean of {n} runs)", map.title);
                }
                Panel::Legend(_) => {}
            }
        }
        // Heatmaps whose labels changed are laid out again, sized to their new labels.
        let maps: Vec<Heatmap> = merged
            .panels
            .iter()
            .filter_map(|(_, p)| match p {
                Panel::Heatmap(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if !maps.is_empty() && maps.len() == merged.panels.len() {
            return Ok(Self::heatmaps(maps));
        }
        Ok(merged)
    }

    /// The figure as PNG bytes (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>> {
        font_ready()?;
        let mut rgb = vec![0u8; self.width as usize * self.height as usize * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut rgb, (self.width, self.height)).into_drawing_area();
            self.draw(&root)
                .map_err(|e| anyhow!("cannot draw the PNG figure: {e}"))?;
        }
        rgb_png(&rgb, self.width, self.height)
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String> {
        font_ready()?;
        let mut out = String::new();
        {
            let root =
                SVGBackend::with_string(&mut out, (self.width, self.height)).into_drawing_area();
            self.draw(&root)
                .map_err(|e| anyhow!("cannot draw the SVG figure: {e}"))?;
        }
        Ok(out)
    }

    /// Writes `<stem>.png` and `<stem>.svg` into `dir` (each atomically); returns their
    /// paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        let png_path = dir.join(format!("{stem}.png"));
        write_bytes(&png_path, &self.png()?)?;
        let svg_path = dir.join(format!("{stem}.svg"));
        write_bytes(&svg_path, self.svg()?.as_bytes())?;
        Ok(vec![png_path, svg_path])
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn<DB> {
        root.fill(&WHITE)?;
        for (r, panel) in &self.panels {
            let area = root.clone().shrink((r.x, r.y), (r.w, r.h));
            match panel {
                Panel::Chart(chart, sizes) => draw_chart(&area, chart, sizes)?,
                Panel::Legend(series) => draw_legend(&area, series)?,
                Panel::Heatmap(map) => draw_heatmap(&area, map)?,
            }
        }
        root.present()
    }
}

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn row_height(size: f64) -> u32 {
    (size * 1.7).round() as u32
}

/// Draws a marker of `shape` and radius `r` at `at` (of any coordinate system).
fn draw_markers<DB, CT>(
    area: &DrawingArea<DB, CT>,
    at: &[CT::From],
    shape: Marker,
    r: i32,
    color: RGBColor,
) -> Drawn<DB>
where
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate,
    CT::From: Clone,
{
    let style = color.filled();
    for p in at {
        let p = p.clone();
        match shape {
            Marker::Circle => area.draw(&Circle::new(p, r, style))?,
            Marker::Square => {
                let s = (r as f64 * 0.85).round() as i32;
                area.draw(&(EmptyElement::at(p) + Rectangle::new([(-s, -s), (s, s)], style)))?
            }
            Marker::Diamond => {
                let s = (r as f64 * 1.25).round() as i32;
                let corners = vec![(0, -s), (s, 0), (0, s), (-s, 0)];
                area.draw(&(EmptyElement::at(p) + Polygon::new(corners, style)))?
            }
            Marker::Triangle => {
                let s = (r as f64 * 1.2).round() as i32;
                let corners = vec![(0, -s), (s, s * 3 / 4), (-s, s * 3 / 4)];
                area.draw(&(EmptyElement::at(p) + Polygon::new(corners, style)))?
            }
        }
    }
    Ok(())
}

/// The first of `labels` that is at most `max_w` pixels wide at `size`, else the last one
/// shortened with "…" to fit; None when not even one letter fits.
fn fit_label(labels: &[String], size: f64, max_w: u32) -> Option<String> {
    let fits = |s: &str| text_width(s, size).is_ok_and(|w| w <= max_w);
    if let Some(l) = labels.iter().find(|l| fits(l)) {
        return Some(l.clone());
    }
    let last: Vec<char> = labels.last()?.chars().collect();
    (1..last.len())
        .rev()
        .map(|n| format!("{}…", last[..n].iter().collect::<String>()))
        .find(|s| fits(s))
}

fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: &LineChart,
    s: &Sizes,
) -> Drawn<DB> {
    let (w, _) = area.dim_in_pixel();
    let title_h = (s.title * 1.35).round() as u32 + 8;
    let named = c.boundaries.iter().any(|b| !b.labels.is_empty());
    let band_h = if named {
        (s.tick * 1.4).round() as u32 + 6
    } else {
        4
    };
    area.draw_text(
        &c.title,
        &text_style(s.title, &TEXT, HPos::Center, VPos::Top),
        (w as i32 / 2, 6),
    )?;
    let tick_h = (s.tick * 1.3).round() as u32;
    let label_h = (s.label * 1.3).round() as u32;
    let y_tick_w = text_width(&tick_label(c.y_range.1), s.tick).unwrap_or(30);
    let (x0, x1) = c.x_range;
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let (y0, y1) = c.y_range;
    let mut chart = ChartBuilder::on(area)
        .margin_top(title_h + band_h)
        .margin_right(16)
        .margin_left(6)
        .margin_bottom(6)
        .x_label_area_size(tick_h + label_h + 14)
        .y_label_area_size(y_tick_w + label_h + 16)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let plot_w = chart.plotting_area().dim_in_pixel().0;
    let x_ticks = (plot_w / (7 * s.tick as u32).max(1)).clamp(3, 12) as usize;
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(font(s.tick).color(&TEXT))
        .axis_desc_style(font(s.label).color(&TEXT))
        .x_labels(x_ticks)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .bold_line_style(GRID)
        .max_light_lines(0)
        .axis_style(AXIS)
        .draw()?;

    // Segment boundaries, each segment's name centred over it in the band above the plot.
    let base = area.get_base_pixel();
    let top = chart.plotting_area().get_pixel_range().1.start - base.1;
    let mut start = x0;
    for b in &c.boundaries {
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(b.x, y0), (b.x, y1)],
            6,
            5,
            BOUNDARY.stroke_width(1),
        )))?;
        let a = chart.backend_coord(&(start, y1)).0 - base.0;
        let z = chart.backend_coord(&(b.x, y1)).0 - base.0;
        start = b.x;
        let room = (z - a - 6).max(0) as u32;
        if let Some(label) = fit_label(&b.labels, s.tick, room) {
            area.draw_text(
                &label,
                &text_style(s.tick, &AXIS, HPos::Center, VPos::Bottom),
                ((a + z) / 2, top - 4),
            )?;
        }
    }

    // Earlier series get larger markers, so markers at one point nest visibly.
    let n = c.series.len();
    for (i, sr) in c.series.iter().enumerate() {
        let line = sr.color.stroke_width(s.line);
        let pts: Vec<(f64, f64)> = sr
            .points
            .iter()
            .filter_map(|p| Some((p.x, p.mean()?)))
            .collect();
        if sr.dashed {
            let dash = 4 * s.line;
            chart.draw_series(std::iter::once(DashedPathElement::new(
                pts.clone(),
                dash,
                dash / 2 + 1,
                line,
            )))?;
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), line))?;
        }
        // A min-max bar with caps where a point has several values.
        let bar = sr.color.stroke_width(s.line.max(2) - 1);
        let cap = (2 * s.marker) as i32;
        for (lo, hi, x) in sr
            .points
            .iter()
            .filter_map(|p| p.spread().map(|(lo, hi)| (lo, hi, p.x)))
        {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                bar,
            )))?;
            chart.draw_series([lo, hi].map(|y| {
                EmptyElement::at((x, y)) + PathElement::new(vec![(-cap, 0), (cap, 0)], bar)
            }))?;
        }
        let r = (s.marker + (n - 1 - i).min(3) as u32) as i32;
        draw_markers(chart.plotting_area(), &pts, sr.marker, r, sr.color)?;
    }
    Ok(())
}

/// A framed legend: per series a piece of its line with its marker, and its name.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, series: &[Series]) -> Drawn<DB> {
    if series.is_empty() {
        return Ok(());
    }
    let (w, h) = area.dim_in_pixel();
    area.draw(&Rectangle::new(
        [(0, 0), (w as i32 - 1, h as i32 - 1)],
        AXIS.stroke_width(1),
    ))?;
    let row_h = row_height(LEGEND) as i32;
    for (i, sr) in series.iter().enumerate() {
        let y = 8 + i as i32 * row_h + row_h / 2;
        let line = sr.color.stroke_width(MAIN.line);
        let ends = vec![(10, y), (50, y)];
        if sr.dashed {
            area.draw(&DashedPathElement::new(ends, 8, 5, line))?;
        } else {
            area.draw(&PathElement::new(ends, line))?;
        }
        draw_markers(area, &[(30, y)], sr.marker, MAIN.marker as i32, sr.color)?;
        area.draw_text(
            &sr.name,
            &text_style(LEGEND, &TEXT, HPos::Left, VPos::Center),
            (62, y),
        )?;
    }
    Ok(())
}

/// Pixel layout of a heatmap panel.
struct HeatLayout {
    left: i32,
    top: i32,
    cell_w: f64,
    cell_h: f64,
}

const HEAT_TITLE: f64 = 18.0;
const HEAT_TEXT: f64 = 14.0;
/// Room left of the cells (row title and labels), right (colour scale), above (title)
/// and below (column labels and title).
const HEAT_MARGIN: (u32, u32, u32, u32) = (96, 84, 44, 64);

/// Cell sizes: square up to 64 pixels while the matrix fits 540 pixels, else each side
/// shrunk on its own (down to 2 pixels).
fn heat_cells(m: &Heatmap) -> (f64, f64) {
    let cols = m.cols.len().max(1) as f64;
    let rows = m.rows.len().max(1) as f64;
    let cw = (540.0 / cols).floor().clamp(2.0, 64.0);
    let ch = (540.0 / rows).floor().clamp(2.0, 64.0);
    if cw >= 24.0 && ch >= 24.0 {
        (cw.min(ch), cw.min(ch))
    } else {
        (cw, ch)
    }
}

/// Room left of the cells: the row title and the widest row label.
fn heat_left(m: &Heatmap) -> u32 {
    let widest = m
        .rows
        .iter()
        .map(|r| text_width(r, HEAT_TEXT).unwrap_or(0))
        .max()
        .unwrap_or(0);
    HEAT_MARGIN.0.max(widest + 20 + (HEAT_TEXT * 1.5) as u32)
}

fn heatmap_size(m: &Heatmap) -> (u32, u32) {
    let (cw, ch) = heat_cells(m);
    let (_, r, t, b) = HEAT_MARGIN;
    let l = heat_left(m);
    let w = l + r + (cw * m.cols.len() as f64).ceil() as u32;
    let title_w = text_width(&m.title, HEAT_TITLE).unwrap_or(0) + 20;
    // Upright column labels take the room of their length beneath the cells.
    let b = match col_labels(m, cw) {
        ColLabels::Upright(len) => b + len.saturating_sub(HEAT_TEXT as u32 + 4),
        ColLabels::Level(_) => b,
    };
    (
        w.max(title_w).max(300),
        t + b + (ch * m.rows.len() as f64).ceil() as u32,
    )
}

/// How the column labels are written beneath cells `cell_w` pixels wide.
enum ColLabels {
    /// Level, every n-th (n > 1 when they would overlap).
    Level(usize),
    /// Upright (read bottom to top), every one, the longest this many pixels: when level
    /// labels would have to be thinned but upright ones fit every cell.
    Upright(u32),
}

fn col_labels(m: &Heatmap, cell_w: f64) -> ColLabels {
    let longest = m
        .cols
        .iter()
        .map(|c| text_width(c, HEAT_TEXT).unwrap_or(0))
        .max()
        .unwrap_or(0);
    match label_stride(f64::from(longest), cell_w) {
        1 => ColLabels::Level(1),
        _ if label_stride(HEAT_TEXT * 1.1, cell_w) == 1 => ColLabels::Upright(longest),
        n => ColLabels::Level(n),
    }
}

/// Every how many labels one is written so that labels `extent` pixels long (across
/// cells `cell` pixels apart) do not overlap.
fn label_stride(extent: f64, cell: f64) -> usize {
    ((extent + 6.0) / cell.max(1.0)).ceil().max(1.0) as usize
}

/// Viridis (matplotlib's default colour map, readable in grey and with colour-blindness),
/// linear between these stops.
const VIRIDIS: [(u8, u8, u8); 8] = [
    (68, 1, 84),
    (70, 50, 127),
    (54, 92, 141),
    (39, 127, 143),
    (31, 162, 136),
    (74, 194, 110),
    (160, 219, 57),
    (254, 232, 37),
];

/// The colour of `v` in [0, 1] (clamped).
fn heat_color(v: f64) -> RGBColor {
    let t = v.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heatmap<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, m: &Heatmap) -> Drawn<DB> {
    let (w, _) = area.dim_in_pixel();
    let (cell_w, cell_h) = heat_cells(m);
    let (_, _, t, _) = HEAT_MARGIN;
    let l = heat_left(m);
    let nr = m.rows.len();
    let nc = m.cols.len();
    let grid_w = (cell_w * nc as f64).round() as i32;
    let grid_h = (cell_h * nr as f64).round() as i32;
    // The cells centred in the room left for them.
    let room = w as i32 - (l + HEAT_MARGIN.1) as i32;
    let g = HeatLayout {
        left: l as i32 + (room - grid_w).max(0) / 2,
        top: t as i32,
        cell_w,
        cell_h,
    };
    area.draw_text(
        &m.title,
        &text_style(HEAT_TITLE, &TEXT, HPos::Center, VPos::Top),
        (w as i32 / 2, 8),
    )?;
    let x_at = |c: usize| g.left + (c as f64 * g.cell_w).round() as i32;
    let y_at = |r: usize| g.top + (r as f64 * g.cell_h).round() as i32;
    let digits = if g.cell_w >= 44.0 { 1 } else { 0 };
    let value_chars = if digits == 1 { 4.0 } else { 3.0 };
    let value_size = (g.cell_h * 0.42)
        .min(g.cell_w / (value_chars * 0.62))
        .min(15.0);
    for (r, row) in m.values.iter().enumerate().take(nr) {
        for c in 0..nc {
            let v = row.get(c).copied().flatten();
            let (xa, xb, ya, yb) = (x_at(c), x_at(c + 1), y_at(r), y_at(r + 1));
            let fill = v.map_or(MISSING, heat_color);
            area.draw(&Rectangle::new([(xa, ya), (xb, yb)], fill.filled()))?;
            if let Some(v) = v.filter(|_| value_size >= 8.0) {
                // Light text on the dark (low) end of the scale.
                let ink = if v < 0.55 { WHITE } else { TEXT };
                area.draw_text(
                    &format!("{:.*}", digits, 100.0 * v),
                    &text_style(value_size, &ink, HPos::Center, VPos::Center),
                    ((xa + xb) / 2, (ya + yb) / 2),
                )?;
            }
        }
    }
    area.draw(&Rectangle::new(
        [(g.left, g.top), (g.left + grid_w, g.top + grid_h)],
        AXIS.stroke_width(1),
    ))?;

    // Row labels left of the cells, column labels beneath, each thinned to fit.
    let row_stride = label_stride(HEAT_TEXT * 1.1, g.cell_h);
    let mut widest = 0;
    for (r, label) in m.rows.iter().enumerate().step_by(row_stride) {
        widest = widest.max(text_width(label, HEAT_TEXT).unwrap_or(0));
        area.draw_text(
            label,
            &text_style(HEAT_TEXT, &TEXT, HPos::Right, VPos::Center),
            (g.left - 6, (y_at(r) + y_at(r + 1)) / 2),
        )?;
    }
    let labels_h = match col_labels(m, g.cell_w) {
        ColLabels::Level(stride) => {
            for (c, label) in m.cols.iter().enumerate().step_by(stride) {
                area.draw_text(
                    label,
                    &text_style(HEAT_TEXT, &TEXT, HPos::Center, VPos::Top),
                    ((x_at(c) + x_at(c + 1)) / 2, g.top + grid_h + 5),
                )?;
            }
            (HEAT_TEXT * 1.4) as i32
        }
        ColLabels::Upright(longest) => {
            for (c, label) in m.cols.iter().enumerate() {
                area.draw_text(
                    label,
                    &text_style(HEAT_TEXT, &TEXT, HPos::Right, VPos::Center)
                        .transform(FontTransform::Rotate270),
                    ((x_at(c) + x_at(c + 1)) / 2, g.top + grid_h + 5),
                )?;
            }
            longest as i32 + 6
        }
    };
    area.draw_text(
        &m.col_title,
        &text_style(HEAT_TEXT, &TEXT, HPos::Center, VPos::Top),
        (g.left + grid_w / 2, g.top + grid_h + 8 + labels_h),
    )?;
    let row_title_x = (g.left - 14 - widest as i32 - (HEAT_TEXT * 0.7) as i32).max(8);
    area.draw_text(
        &m.row_title,
        &text_style(HEAT_TEXT, &TEXT, HPos::Center, VPos::Center)
            .transform(FontTransform::Rotate270),
        (row_title_x, g.top + grid_h / 2),
    )?;

    // The colour scale: 0 % at the bottom, 100 % at the top.
    let bar_x = g.left + grid_w + 16;
    let bar_h = grid_h.max(60);
    let steps = 48;
    for i in 0..steps {
        let v = 1.0 - (f64::from(i) + 0.5) / f64::from(steps);
        let (ya, yb) = (i * bar_h / steps, (i + 1) * bar_h / steps);
        area.draw(&Rectangle::new(
            [(bar_x, g.top + ya), (bar_x + 14, g.top + yb)],
            heat_color(v).filled(),
        ))?;
    }
    area.draw(&Rectangle::new(
        [(bar_x, g.top), (bar_x + 14, g.top + bar_h)],
        AXIS.stroke_width(1),
    ))?;
    for (v, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
        let y = g.top + ((1.0 - v) * f64::from(bar_h)).round() as i32;
        area.draw_text(
            label,
            &text_style(12.0, &TEXT, HPos::Left, VPos::Center),
            (bar_x + 18, y),
        )?;
    }
    Ok(())
}

/// Encodes 8-bit RGB bytes, `width` x `height`, as a PNG.
pub fn rgb_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .context("cannot start PNG encoding")?;
        writer
            .write_image_data(rgb)
            .context("cannot encode PNG image data")?;
        writer.finish().context("cannot finish PNG encoding")?;
    }
    Ok(out)
}

/// Short tick label: integers, with k/M suffixes for large values.
pub fn tick_label(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        trim(format!("{v:.2}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts of an SVG's `<text>` elements.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick_label(1500.0), "1500");
        assert_eq!(tick_label(250_000.0), "250k");
        assert_eq!(tick_label(1_250_000.0), "1.25M");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.25), "0.25");
    }

    #[test]
    fn points_mean_and_spread() {
        let p = Point {
            x: 1.0,
            values: vec![0.2, 0.6, 0.4],
        };
        assert!((p.mean().unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(p.spread(), Some((0.2, 0.6)));
        assert_eq!(Point::one(1.0, 0.5).spread(), None);
        assert_eq!(
            Point {
                x: 0.0,
                values: vec![]
            }
            .mean(),
            None
        );
    }

    #[test]
    fn labels_fit_or_shorten() {
        let labels = vec!["+classes 2-3".to_string(), "+2-3".to_string()];
        let wide = text_width("+classes 2-3", 14.0).unwrap();
        assert_eq!(fit_label(&labels, 14.0, wide).unwrap(), "+classes 2-3");
        let short = text_width("+2-3", 14.0).unwrap();
        assert_eq!(fit_label(&labels, 14.0, short).unwrap(), "+2-3");
        let one = vec!["query_attribute".to_string()];
        let cut = fit_label(&one, 14.0, wide / 2).unwrap();
        assert!(
            cut.ends_with('…') && cut.len() < "query_attribute".len() + 2,
            "{cut}"
        );
        assert_eq!(fit_label(&one, 14.0, 2), None);
    }

    fn chart(values: Vec<f64>) -> LineChart {
        let points = vec![Point::one(0.0, 10.0), Point { x: 5.0, values }];
        LineChart {
            title: "A chart".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_range: (0.0, 10.0),
            y_range: (0.0, 100.0),
            boundaries: vec![Boundary {
                x: 5.0,
                labels: vec!["first part".into()],
            }],
            series: method_lines(
                [("remind", points.clone()), ("offline", points)].into_iter(),
                "offline",
            ),
        }
    }

    #[test]
    fn line_figure_in_png_and_svg() {
        let fig = Figure::lines(chart(vec![40.0]), vec![chart(vec![50.0])]).unwrap();
        let png = fig.png().unwrap();
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (fig.width, fig.height));
        let svg = fig.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        let texts = svg_texts(&svg);
        for text in ["remind", "offline", "A chart", "first part"] {
            assert!(texts.iter().any(|t| t == text), "{text} not in {texts:?}");
        }
        // Several values at a point add a min-max bar (three more lines).
        let bars = Figure::lines(chart(vec![30.0, 50.0]), vec![]).unwrap();
        let plain = Figure::lines(chart(vec![40.0]), vec![]).unwrap();
        let lines = |f: &Figure| {
            let svg = f.svg().unwrap();
            svg.matches("<line").count() + svg.matches("<polyline").count()
        };
        assert_eq!(lines(&bars), lines(&plain) + 2 * 3);
    }

    #[test]
    fn runs_merge_into_min_max_points_and_labels_true_of_every_run() {
        let a = Figure::lines(chart(vec![40.0]), vec![]).unwrap();
        let b = Figure::lines(chart(vec![60.0]), vec![]).unwrap();
        let mut other = chart(vec![50.0]);
        other.boundaries[0].labels = vec!["another part".into()];
        let c = Figure::lines(other, vec![]).unwrap();
        let same = Figure::merge_runs(&[a.clone(), b]).unwrap();
        let texts = svg_texts(&same.svg().unwrap());
        assert!(texts.iter().any(|t| t == "first part"), "{texts:?}");
        assert!(
            texts.iter().any(|t| t.contains("mean of 2 runs")),
            "{texts:?}"
        );
        let Panel::Chart(ch, _) = &same.panels[0].1 else {
            panic!("the main chart first")
        };
        assert_eq!(ch.series[0].points[1].values, vec![40.0, 60.0]);
        // A segment named otherwise in one run is left unnamed.
        let differ = Figure::merge_runs(&[a.clone(), c]).unwrap();
        let texts = svg_texts(&differ.svg().unwrap());
        assert!(!texts
            .iter()
            .any(|t| t == "first part" || t == "another part"));
        // Runs of other shapes are refused.
        let longer = Figure::lines(chart(vec![40.0]), vec![chart(vec![1.0])]).unwrap();
        assert!(Figure::merge_runs(&[a, longer]).is_err());
        // Heatmaps: the mean per cell; rows named differently become positions.
        let map = |rows: [&str; 2], v: f64| Heatmap {
            title: "remind".into(),
            row_title: "after learning type".into(),
            col_title: "on type".into(),
            rows: rows.map(String::from).to_vec(),
            cols: vec!["x".into(), "y".into()],
            values: vec![vec![Some(v), None], vec![Some(v), Some(1.0)]],
        };
        let m = Figure::merge_runs(&[
            Figure::heatmaps(vec![map(["count", "exist"], 0.2)]),
            Figure::heatmaps(vec![map(["exist", "count"], 0.6)]),
        ])
        .unwrap();
        let Panel::Heatmap(h) = &m.panels[0].1 else {
            panic!("a heatmap")
        };
        assert_eq!(h.rows, vec!["1st", "2nd"]);
        assert!(h.row_title.contains("by position"));
        assert_eq!(h.cols, vec!["x", "y"]);
        assert!((h.values[0][0].unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(h.values[0][1], None);
        assert_eq!(h.values[1][1], Some(1.0));
    }

    #[test]
    fn heatmap_in_png_and_svg() {
        let map = Heatmap {
            title: "remind".into(),
            row_title: "after experience".into(),
            col_title: "accuracy on experience".into(),
            rows: vec!["0".into(), "1".into()],
            cols: vec!["0-1".into(), "2".into()],
            values: vec![vec![Some(0.9), None], vec![Some(0.5), Some(0.875)]],
        };
        let fig = Figure::heatmaps(vec![map.clone(), map]);
        let svg = fig.svg().unwrap();
        let texts = svg_texts(&svg);
        for text in ["90.0", "87.5", "50.0", "after experience", "0-1"] {
            assert!(texts.iter().any(|t| t == text), "{text} not in {texts:?}");
        }
        let png = image::load_from_memory(&fig.png().unwrap()).unwrap();
        assert_eq!(png.width(), fig.width);
        // Many columns: cells shrink, values are left out, the figure stays bounded.
        let wide = Heatmap {
            title: "wide".into(),
            row_title: "r".into(),
            col_title: "c".into(),
            rows: vec!["0".into(), "1".into()],
            cols: (0..500).map(|c| c.to_string()).collect(),
            values: vec![vec![Some(0.5); 500]; 2],
        };
        let fig = Figure::heatmaps(vec![wide]);
        assert!(fig.width <= 1300, "{}", fig.width);
        assert!(!svg_texts(&fig.svg().unwrap()).iter().any(|t| t == "50"));
    }

    #[test]
    fn long_type_names_are_all_written() {
        // Question-type names longer than a cell: every column label written upright (none
        // thinned out), the room beneath and left of the cells grown to hold them.
        let names: Vec<String> = ["compare_attribute", "query_attribute", "exist", "count"]
            .map(String::from)
            .to_vec();
        let map = Heatmap {
            title: "remind".into(),
            row_title: "after learning type".into(),
            col_title: "accuracy (%) on type".into(),
            rows: names.clone(),
            cols: names.clone(),
            values: vec![vec![Some(0.5); 4]; 4],
        };
        let (cw, _) = heat_cells(&map);
        let longest = text_width("compare_attribute", HEAT_TEXT).unwrap();
        assert!(f64::from(longest) > cw, "the names are longer than a cell");
        assert!(matches!(col_labels(&map, cw), ColLabels::Upright(l) if l == longest));
        assert!(heat_left(&map) > longest + 20);
        let short = Heatmap {
            cols: vec!["0".into(); 4],
            rows: vec!["0".into(); 4],
            ..map.clone()
        };
        assert!(heatmap_size(&map).1 >= heatmap_size(&short).1 + longest - 30);
        let texts = svg_texts(&Figure::heatmaps(vec![map]).svg().unwrap());
        for name in &names {
            let n = texts.iter().filter(|t| *t == name).count();
            assert_eq!(n, 2, "{name}: once as a row, once as a column: {texts:?}");
        }
    }
}
