//! IDX files (the MNIST / Fashion-MNIST format): a big-endian header (magic `0x000008DD`,
//! type 0x08 = unsigned byte, DD = number of dimensions, then one u32 per dimension)
//! followed by the raw bytes. Gzipped files (`.gz`, detected by the 1f 8b magic) are
//! decompressed on read.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use flate2::read::GzDecoder;

/// Magic of an unsigned-byte, 3-dimensional IDX file (images: count, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an unsigned-byte, 1-dimensional IDX file (labels: count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images of one IDX file, row-major, one byte per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub path: PathBuf,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i` (`rows * cols` bytes).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Labels of one IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxLabels {
    pub path: PathBuf,
    pub labels: Vec<u8>,
}

/// The contents of `path`, gunzipped when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let p = path.display();
    let raw = std::fs::read(path).with_context(|| format!("cannot read {p}"))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{p}: corrupt or truncated gzip data"))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the header of the IDX data `bytes` read from `path`: the magic and that the
/// payload size matches the dimensions. Returns the dimensions.
pub fn parse_header(path: &Path, bytes: &[u8], magic: u32, what: &str) -> Result<Vec<usize>> {
    let p = path.display();
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    ensure!(
        bytes.len() >= 4,
        "{p}: {} bytes, too short for an IDX file (expected a {header}-byte header)",
        bytes.len()
    );
    let found = be_u32(bytes, 0);
    ensure!(
        found == magic,
        "{p}: not an IDX {what} file: expected magic 0x{magic:08x}, found 0x{found:08x}"
    );
    ensure!(
        bytes.len() >= header,
        "{p}: {} bytes, too short for the {header}-byte IDX header",
        bytes.len()
    );
    let dims: Vec<usize> = (0..ndims)
        .map(|d| be_u32(bytes, 4 + 4 * d) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .context("dimensions overflow")
        .with_context(|| format!("{p}: header dimensions {dims:?}"))?;
    let expected = payload.saturating_add(header as u64);
    if expected != bytes.len() as u64 {
        let shape: Vec<String> = dims.iter().map(usize::to_string).collect();
        bail!(
            "{p}: size does not match the header ({what} {}): expected {expected} bytes, found {}",
            shape.join(" x "),
            bytes.len()
        );
    }
    Ok(dims)
}

/// Reads an IDX images file (magic 0x00000803: count, rows, columns).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_gz(path)?;
    let dims = parse_header(path, &bytes, IMAGES_MAGIC, "images")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    ensure!(
        rows > 0 && cols > 0,
        "{}: images of {rows}x{cols} pixels: expected both sides positive",
        path.display()
    );
    let mut pixels = bytes;
    pixels.drain(..16);
    Ok(IdxImages {
        path: path.to_path_buf(),
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX labels file (magic 0x00000801: count).
pub fn read_labels(path: &Path) -> Result<IdxLabels> {
    let bytes = read_maybe_gz(path)?;
    parse_header(path, &bytes, LABELS_MAGIC, "labels")?;
    Ok(IdxLabels {
        path: path.to_path_buf(),
        labels: bytes[8..].to_vec(),
    })
}

/// The file `stem` in `dir`, raw or gzipped (`stem.gz`); the raw name wins when both exist.
pub fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    bail!(
        "{}: no IDX file {stem} or {stem}.gz in the folder",
        dir.display()
    )
}

/// One split of an IDX data set: images with their labels.
#[derive(Debug, Clone)]
pub struct IdxSplit {
    pub images: IdxImages,
    pub labels: IdxLabels,
}

/// Reads split `prefix` (`train` or `t10k`) from `dir`: `{prefix}-images-idx3-ubyte[.gz]`
/// and `{prefix}-labels-idx1-ubyte[.gz]`, checking their counts agree.
pub fn read_split(dir: &Path, prefix: &str) -> Result<IdxSplit> {
    let images = read_images(&find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?)?;
    let labels = read_labels(&find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?)?;
    ensure!(
        images.count == labels.labels.len(),
        "{} holds {} images but {} holds {} labels",
        images.path.display(),
        images.count,
        labels.path.display(),
        labels.labels.len()
    );
    Ok(IdxSplit { images, labels })
}

/// IDX bytes of `count` images of `rows x cols` (tests and fixtures).
pub fn encode_images(rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let count = pixels.len() / (rows * cols);
    let mut out = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [count, rows, cols] {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// IDX bytes of `labels` (tests and fixtures).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = LABELS_MAGIC.to_be_bytes().to_vec();
    out.extend((labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn headers_parse_and_mismatches_name_expected_and_found() {
        let p = Path::new("x-images");
        let pixels: Vec<u8> = (0..40).collect();
        let bytes = encode_images(5, 4, &pixels);
        assert_eq!(
            parse_header(p, &bytes, IMAGES_MAGIC, "images").unwrap(),
            [2, 5, 4]
        );
        let err = parse_header(p, &bytes[..bytes.len() - 3], IMAGES_MAGIC, "images")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x-images") && err.contains("expected 56 bytes, found 53"),
            "{err}"
        );
        let err = parse_header(p, &bytes, LABELS_MAGIC, "labels")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected magic 0x00000801, found 0x00000803"),
            "{err}"
        );
        let err = parse_header(p, &bytes[..10], IMAGES_MAGIC, "images")
            .unwrap_err()
            .to_string();
        assert!(err.contains("16-byte IDX header"), "{err}");
        let err = parse_header(p, &[0, 0], IMAGES_MAGIC, "images")
            .unwrap_err()
            .to_string();
        assert!(err.contains("too short"), "{err}");
        let labels = encode_labels(&[1, 2, 0]);
        assert_eq!(
            parse_header(p, &labels, LABELS_MAGIC, "labels").unwrap(),
            [3]
        );
        // Dimensions whose product overflows are refused, not wrapped.
        let mut huge = IMAGES_MAGIC.to_be_bytes().to_vec();
        for _ in 0..3 {
            huge.extend(u32::MAX.to_be_bytes());
        }
        assert!(parse_header(p, &huge, IMAGES_MAGIC, "images").is_err());
    }

    #[test]
    fn gzip_is_detected_by_magic_and_truncation_fails() {
        let dir = std::env::temp_dir().join(format!("remind-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = encode_images(2, 3, &[9; 18]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&raw).unwrap();
        let gz = enc.finish().unwrap();
        // A gzipped file under a raw name still reads.
        let path = dir.join("a-images-idx3-ubyte");
        std::fs::write(&path, &gz).unwrap();
        let images = read_images(&path).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (3, 2, 3));
        assert_eq!(images.image(2), &[9; 6]);
        std::fs::write(&path, &gz[..gz.len() - 12]).unwrap();
        let err = format!("{:#}", read_images(&path).unwrap_err());
        assert!(err.contains("truncated gzip"), "{err}");
        assert_eq!(
            find_file(&dir, "a-images-idx3-ubyte").unwrap(),
            path.clone()
        );
        assert!(find_file(&dir, "b-images-idx3-ubyte").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
