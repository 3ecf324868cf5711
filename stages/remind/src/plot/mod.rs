//! Line charts as PNG, drawn in memory: an RGB canvas with anti-aliased strokes and
//! markers, a small bitmap font for labels ([`font`]), and axes with ticks, grid and legend.
//! Enough for the evaluation plots, with no font files or drawing libraries needed.

pub mod font;

use anyhow::{Context, Result};

pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];
pub const TEXT: Rgb = [34, 34, 34];
pub const GRID: Rgb = [225, 225, 225];
pub const AXIS: Rgb = [90, 90, 90];

/// Distinct series colours (colour-blind-aware picks first).
pub const PALETTE: [Rgb; 10] = [
    [31, 95, 191],
    [224, 108, 0],
    [42, 157, 63],
    [192, 38, 45],
    [123, 79, 176],
    [140, 86, 75],
    [214, 79, 168],
    [77, 77, 77],
    [156, 156, 28],
    [23, 162, 184],
];

/// Marker shapes, cycled with the colours so overlapping series stay distinguishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Diamond,
}

impl Marker {
    pub fn nth(i: usize) -> Self {
        [Marker::Circle, Marker::Square, Marker::Diamond][i % 3]
    }
}

/// An RGB image being drawn.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&background);
        }
        Self { width, height, rgb }
    }

    pub fn pixel(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Mixes `color` into pixel (x, y) with opacity `alpha` in [0, 1]; outside is ignored.
    pub fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f64) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let i = (y as usize * self.width + x as usize) * 3;
        for (slot, &target) in self.rgb[i..i + 3].iter_mut().zip(&color) {
            let old = f64::from(*slot);
            *slot = (old + (f64::from(target) - old) * a).round() as u8;
        }
    }

    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, color, 1.0);
            }
        }
    }

    /// Outline of a rectangle, 1 pixel wide.
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        self.fill_rect(x, y, w, 1, color);
        self.fill_rect(x, y + h - 1, w, 1, color);
        self.fill_rect(x, y, 1, h, color);
        self.fill_rect(x + w - 1, y, 1, h, color);
    }

    /// An anti-aliased polyline of `width` pixels; `dash` = (on, off) lengths in pixels.
    pub fn stroke_polyline(
        &mut self,
        points: &[(f64, f64)],
        width: f64,
        color: Rgb,
        dash: Option<(f64, f64)>,
    ) {
        let mut segments = Vec::new();
        for pair in points.windows(2) {
            match dash {
                None => segments.push((pair[0], pair[1])),
                Some((on, off)) => dash_segment(pair[0], pair[1], on, off, &mut segments),
            }
        }
        if segments.is_empty() {
            return;
        }
        let half = width / 2.0;
        let pad = half + 1.0;
        let xs = segments.iter().flat_map(|(a, b)| [a.0, b.0]);
        let ys = segments.iter().flat_map(|(a, b)| [a.1, b.1]);
        let (x0, x1) = pixel_span(xs, pad, self.width);
        let (y0, y1) = pixel_span(ys, pad, self.height);
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let bw = (x1 - x0) as usize;
        // Coverage is the maximum over segments, so joints are not blended twice.
        let mut coverage = vec![0f64; bw * (y1 - y0) as usize];
        for &(a, b) in &segments {
            let sx0 = ((a.0.min(b.0) - pad).floor() as i64).max(x0);
            let sx1 = ((a.0.max(b.0) + pad).ceil() as i64).min(x1);
            let sy0 = ((a.1.min(b.1) - pad).floor() as i64).max(y0);
            let sy1 = ((a.1.max(b.1) + pad).ceil() as i64).min(y1);
            for y in sy0..sy1 {
                for x in sx0..sx1 {
                    let d = distance_to_segment((x as f64 + 0.5, y as f64 + 0.5), a, b);
                    let c = (half + 0.5 - d).clamp(0.0, 1.0);
                    let slot = &mut coverage[(y - y0) as usize * bw + (x - x0) as usize];
                    *slot = slot.max(c);
                }
            }
        }
        for y in y0..y1 {
            for x in x0..x1 {
                let c = coverage[(y - y0) as usize * bw + (x - x0) as usize];
                self.blend(x, y, color, c);
            }
        }
    }

    /// A filled, anti-aliased marker of radius `r` centred on (cx, cy).
    pub fn marker(&mut self, cx: f64, cy: f64, r: f64, shape: Marker, color: Rgb) {
        let (x0, x1) = ((cx - r - 1.0).floor() as i64, (cx + r + 1.0).ceil() as i64);
        let (y0, y1) = ((cy - r - 1.0).floor() as i64, (cy + r + 1.0).ceil() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = ((x as f64 + 0.5 - cx).abs(), (y as f64 + 0.5 - cy).abs());
                let inside = match shape {
                    Marker::Circle => r - dx.hypot(dy),
                    Marker::Square => r * 0.9 - dx.max(dy),
                    Marker::Diamond => (r * 1.3 - (dx + dy)) / std::f64::consts::SQRT_2,
                };
                self.blend(x, y, color, (inside + 0.5).clamp(0.0, 1.0));
            }
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` x `scale`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        let s = scale as i64;
        for (i, ch) in text.chars().enumerate() {
            let gx0 = x + (i * font::ADVANCE) as i64 * s;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for (col, bit) in bits.bytes().enumerate() {
                    if bit == b'#' {
                        self.fill_rect(gx0 + col as i64 * s, y + row as i64 * s, s, s, color);
                    }
                }
            }
        }
    }

    /// Text turned 90 degrees counter-clockwise (read bottom to top); (x, y) is the top-left
    /// corner of the turned box, which is `GLYPH_H * scale` wide.
    pub fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        let s = scale as i64;
        let bottom = y + (font::text_width(text) * scale) as i64;
        for (i, ch) in text.chars().enumerate() {
            let along = (i * font::ADVANCE) as i64;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for (col, bit) in bits.bytes().enumerate() {
                    if bit == b'#' {
                        let px = x + row as i64 * s;
                        let py = bottom - (along + col as i64 + 1) * s;
                        self.fill_rect(px, py, s, s, color);
                    }
                }
            }
        }
    }

    /// The image as PNG bytes (8-bit RGB).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let w = u32::try_from(self.width).context("image too wide for a PNG")?;
        let h = u32::try_from(self.height).context("image too tall for a PNG")?;
        rgb_png(&self.rgb, w, h)
    }
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

/// The pixels `lo..hi` covering `values` widened by `pad` on both sides, clipped to
/// `0..=limit`.
fn pixel_span(values: impl Iterator<Item = f64> + Clone, pad: f64, limit: usize) -> (i64, i64) {
    let lo = (values.clone().fold(f64::INFINITY, f64::min) - pad)
        .floor()
        .max(0.0) as i64;
    let hi = (values.fold(f64::NEG_INFINITY, f64::max) + pad)
        .ceil()
        .min(limit as f64) as i64;
    (lo, hi)
}

fn distance_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.0 - (a.0 + t * dx)).hypot(p.1 - (a.1 + t * dy))
}

/// A straight piece of a stroke: start and end point.
type Segment = ((f64, f64), (f64, f64));

/// Splits segment a-b into dashes of length `on` separated by gaps of length `off`.
fn dash_segment(a: (f64, f64), b: (f64, f64), on: f64, off: f64, out: &mut Vec<Segment>) {
    let len = (b.0 - a.0).hypot(b.1 - a.1);
    if len == 0.0 || on <= 0.0 {
        return;
    }
    let at = |t: f64| (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len);
    let mut t = 0.0;
    while t < len {
        out.push((at(t), at((t + on).min(len))));
        t += on + off.max(0.0);
    }
}

/// A rectangle on the canvas.
#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// One curve of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: Rgb,
    pub marker: Marker,
    /// Dashed line (e.g. the baseline), so curves it hides show through its gaps.
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The `i`-th method's line: its colour and marker by position, dashed for the
    /// baseline (the offline model), `points` as (x, y).
    pub fn nth(i: usize, name: &str, baseline: bool, points: Vec<(f64, f64)>) -> Self {
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
    methods: impl Iterator<Item = (&'a str, Vec<(f64, f64)>)>,
    baseline: &str,
) -> Vec<Series> {
    methods
        .enumerate()
        .map(|(i, (name, points))| Series::nth(i, name, name == baseline, points))
        .collect()
}

/// The width of a legend ([`draw_legend`]) of the methods `names` at `scale`.
pub fn legend_width<'a>(names: impl Iterator<Item = &'a str>, scale: usize) -> i64 {
    (36 + 6 * names.map(str::len).max().unwrap_or(4)) as i64 * scale as i64 + 40
}

/// What a chart shows besides its series.
#[derive(Debug, Clone)]
pub struct Axes {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    /// Spacing of y ticks (x ticks are chosen from the range).
    pub y_step: f64,
    /// Positions marked by light vertical lines (e.g. evaluation boundaries).
    pub vlines: Vec<f64>,
}

/// Draws a line chart into `area`: title, axes with ticks and grid, labels and the series.
/// `scale` is the font scale (2 gives 10 x 16 pixel letters).
pub fn draw_chart(canvas: &mut Canvas, area: Rect, axes: &Axes, series: &[Series], scale: usize) {
    let s = scale as i64;
    let char_h = (font::GLYPH_H * scale) as i64;
    let y_ticks = ticks(axes.y_range, axes.y_step);
    let y_tick_w = y_ticks
        .iter()
        .map(|&v| font::text_width(&tick_label(v)) as i64 * s)
        .max()
        .unwrap_or(0);
    let left = area.x + char_h + 6 * s + y_tick_w + 4 * s;
    let top = area.y + char_h + 6 * s;
    let right = area.x + area.w - 8 * s;
    let bottom = area.y + area.h - 2 * char_h - 8 * s;
    let (pw, ph) = (right - left, bottom - top);
    if pw <= 10 || ph <= 10 {
        return;
    }
    let x_ticks = ticks_fitting(axes.x_range, pw as f64, scale);
    let title_w = font::text_width(&axes.title) as i64 * s;
    canvas.text(left + (pw - title_w) / 2, area.y, &axes.title, scale, TEXT);

    let (x_lo, x_hi) = axes.x_range;
    let (y_lo, y_hi) = axes.y_range;
    let x_span = if x_hi > x_lo { x_hi - x_lo } else { 1.0 };
    let y_span = if y_hi > y_lo { y_hi - y_lo } else { 1.0 };
    let px = |v: f64| left as f64 + (v - x_lo) / x_span * pw as f64;
    let py = |v: f64| bottom as f64 - (v - y_lo) / y_span * ph as f64;

    for &v in &y_ticks {
        let y = py(v).round() as i64;
        canvas.fill_rect(left, y, pw, 1, GRID);
        let label = tick_label(v);
        let w = font::text_width(&label) as i64 * s;
        canvas.text(left - 4 * s - w, y - char_h / 2 + s, &label, scale, TEXT);
    }
    for &v in &x_ticks {
        let x = px(v).round() as i64;
        canvas.fill_rect(x, top, 1, ph, GRID);
        canvas.fill_rect(x, bottom, 1, 3 * s, AXIS);
        let label = tick_label(v);
        let w = font::text_width(&label) as i64 * s;
        canvas.text(x - w / 2, bottom + 4 * s, &label, scale, TEXT);
    }
    for &v in &axes.vlines {
        let x = px(v);
        canvas.stroke_polyline(
            &[(x, top as f64), (x, bottom as f64)],
            1.0,
            [170, 170, 170],
            Some((4.0, 4.0)),
        );
    }
    canvas.stroke_rect(left, top, pw + 1, ph + 1, AXIS);

    let xl_w = font::text_width(&axes.x_label) as i64 * s;
    canvas.text(
        left + (pw - xl_w) / 2,
        bottom + 4 * s + char_h + 3 * s,
        &axes.x_label,
        scale,
        TEXT,
    );
    let yl_h = font::text_width(&axes.y_label) as i64 * s;
    canvas.text_vertical(area.x, top + (ph - yl_h) / 2, &axes.y_label, scale, TEXT);

    // Earlier series get larger markers, so markers at the same point nest visibly.
    let line_w = 1.0 + scale as f64;
    for (i, sr) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = sr.points.iter().map(|&(x, y)| (px(x), py(y))).collect();
        let dash = sr.dashed.then_some((5.0 * line_w, 3.0 * line_w));
        canvas.stroke_polyline(&pts, line_w, sr.color, dash);
        let r = marker_radius(scale) + (series.len() - 1 - i).min(3) as f64;
        for &(x, y) in &pts {
            canvas.marker(x, y, r, sr.marker, sr.color);
        }
    }
}

/// A legend box at (x, y): one row per series with its line, marker and name. Returns its
/// height.
pub fn draw_legend(canvas: &mut Canvas, x: i64, y: i64, series: &[Series], scale: usize) -> i64 {
    let s = scale as i64;
    let row_h = (font::LINE_H * scale) as i64 + 4 * s;
    let name_w = series
        .iter()
        .map(|sr| font::text_width(&sr.name) as i64 * s)
        .max()
        .unwrap_or(0);
    let (w, h) = (36 * s + name_w, series.len() as i64 * row_h + 6 * s);
    canvas.fill_rect(x, y, w, h, WHITE);
    canvas.stroke_rect(x, y, w, h, AXIS);
    for (i, sr) in series.iter().enumerate() {
        let cy = (y + 3 * s + i as i64 * row_h + row_h / 2) as f64;
        let (lx0, lx1) = ((x + 4 * s) as f64, (x + 26 * s) as f64);
        let line_w = 1.0 + scale as f64;
        let dash = sr.dashed.then_some((5.0 * line_w, 3.0 * line_w));
        canvas.stroke_polyline(&[(lx0, cy), (lx1, cy)], line_w, sr.color, dash);
        let r = marker_radius(scale);
        canvas.marker((lx0 + lx1) / 2.0, cy, r, sr.marker, sr.color);
        let ty = cy as i64 - (font::GLYPH_H * scale) as i64 / 2 + s;
        canvas.text(x + 30 * s, ty, &sr.name, scale, TEXT);
    }
    h
}

fn marker_radius(scale: usize) -> f64 {
    2.0 + 1.5 * scale as f64
}

/// 1, 2 or 5 times a power of ten, giving at most about `max_ticks` ticks over `span`.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&v| v >= raw)
        .unwrap_or(10.0 * mag);
    step.max(1.0)
}

/// The most ticks (up to 8) over `range` whose labels fit `pixels` with room between.
fn ticks_fitting(range: (f64, f64), pixels: f64, scale: usize) -> Vec<f64> {
    let span = range.1 - range.0;
    for max_ticks in (2..=8).rev() {
        let step = nice_step(span, max_ticks);
        let t = ticks(range, step);
        let widest = t
            .iter()
            .map(|&v| font::text_width(&tick_label(v)))
            .max()
            .unwrap_or(0);
        let room = ((widest + 2 * font::ADVANCE) * scale) as f64;
        if span <= 0.0 || pixels * step / span >= room {
            return t;
        }
    }
    ticks(range, nice_step(span, 1))
}

fn ticks(range: (f64, f64), step: f64) -> Vec<f64> {
    if step <= 0.0 || !step.is_finite() {
        return vec![];
    }
    let mut v = (range.0 / step).ceil() * step;
    let mut out = Vec::new();
    while v <= range.1 + step * 1e-9 && out.len() < 1000 {
        out.push(v);
        v += step;
    }
    out
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

    #[test]
    fn ticks_and_labels() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(3000.0, 6), 500.0);
        assert_eq!(nice_step(3.0, 6), 1.0);
        assert_eq!(
            ticks((0.0, 100.0), 25.0),
            vec![0.0, 25.0, 50.0, 75.0, 100.0]
        );
        assert_eq!(tick_label(1500.0), "1500");
        assert_eq!(tick_label(250_000.0), "250k");
        assert_eq!(tick_label(1_250_000.0), "1.25M");
        assert_eq!(tick_label(0.0), "0");
        // 3M over 400 pixels at scale 2: labels like "1.5M" need about 80 pixels each.
        assert_eq!(
            ticks_fitting((0.0, 3e6), 400.0, 2),
            vec![0.0, 1e6, 2e6, 3e6]
        );
        assert_eq!(ticks_fitting((0.0, 120.0), 1000.0, 2).len(), 7);
    }

    #[test]
    fn draws_lines_markers_and_text() {
        let mut c = Canvas::new(60, 40, WHITE);
        c.stroke_polyline(&[(5.0, 5.5), (55.0, 5.5)], 3.0, BLACK, None);
        assert_eq!(c.pixel(30, 5), BLACK);
        assert_eq!(c.pixel(30, 20), WHITE);
        c.marker(30.0, 30.0, 4.0, Marker::Circle, [255, 0, 0]);
        assert_eq!(c.pixel(30, 30), [255, 0, 0]);
        c.text(0, 10, "I", 1, BLACK);
        // 'I' has its stem in column 2 of rows 1-5.
        assert_eq!(c.pixel(2, 13), BLACK);
        assert_eq!(c.pixel(0, 13), WHITE);
        let png = c.to_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
