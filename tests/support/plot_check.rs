//! Checks of the figures remind-evaluate draws (`metrics.png` / `metrics.svg`, the
//! accuracy-matrix heatmap `metrics_matrix.png` / `.svg`).

use std::ops::RangeInclusive;
use std::path::Path;

/// The texts of an SVG's `<text>` elements, trimmed.
pub fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_string())
        })
        .collect()
}

/// `<stem>.png` in `dir` decodes to a picture of a size within `width` x `height` that is
/// not blank, and `<stem>.svg` is an SVG document of the same size with every one of
/// `texts` as the whole of some text element. Returns the size.
pub fn check_figure(
    dir: &Path,
    stem: &str,
    texts: &[&str],
    width: RangeInclusive<u32>,
    height: RangeInclusive<u32>,
) -> (u32, u32) {
    let png_path = dir.join(format!("{stem}.png"));
    let png = image::open(&png_path)
        .unwrap_or_else(|e| panic!("{}: {e}", png_path.display()))
        .to_rgb8();
    let (w, h) = png.dimensions();
    assert!(width.contains(&w), "{stem}.png is {w} wide");
    assert!(height.contains(&h), "{stem}.png is {h} high");
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 20, "{stem}.png looks blank");

    let svg_path = dir.join(format!("{stem}.svg"));
    let svg = std::fs::read_to_string(&svg_path)
        .unwrap_or_else(|e| panic!("{}: {e}", svg_path.display()));
    let head = svg.trim_start();
    assert!(
        head.starts_with("<svg") || head.starts_with("<?xml"),
        "{stem}.svg starts {:?}",
        &head[..head.len().min(40)]
    );
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{stem}.svg is cut short"
    );
    assert!(
        svg.contains(&format!("width=\"{w}\" height=\"{h}\"")),
        "{stem}.svg is not {w} x {h}"
    );
    let found = svg_texts(&svg);
    for t in texts {
        assert!(
            found.iter().any(|f| f == t),
            "{stem}.svg lacks {t:?}: {found:?}"
        );
    }
    (w, h)
}
