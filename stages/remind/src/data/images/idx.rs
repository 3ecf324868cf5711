//! IDX files (the MNIST / Fashion-MNIST format, LeCun's MNIST page): a big-endian header
//! (magic: two zero bytes, the type code — 0x08 = unsigned byte —, the number of dimensions,
//! then one u32 per dimension) followed by the raw bytes. Gzipped files (detected by the
//! 1f 8b magic, whatever the name) are inflated on read, never beyond the size the header
//! declares. Files are found under the distribution's names in any case, with `-` or `.`
//! before `idx` (`train-images-idx3-ubyte`, `train-images.idx3-ubyte`, `TRAIN-IMAGES-IDX3-UBYTE.GZ`).
//! An IDX file of another type (floats...), a labels file where images are expected (or the
//! reverse) and a gzip of something else are refused, saying what the file is.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use flate2::read::GzDecoder;

use crate::artifact::sniff;

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

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// What an unsigned-byte IDX file of `ndims` dimensions is, for messages.
fn kind_name(ndims: u8) -> String {
    match ndims {
        1 => "an IDX labels file (1 dimension: count)".into(),
        3 => "an IDX images file (3 dimensions: count, rows, columns)".into(),
        n => format!("an IDX file of {n} dimension(s)"),
    }
}

/// Checks the magic at the start of `head` (the first bytes of `path`) against `magic`,
/// saying what the file is when they differ. `gz`: the bytes were inflated from a gzip.
fn check_magic(path: &Path, head: &[u8], magic: u32, what: &str, gz: bool) -> Result<()> {
    let p = path.display();
    let found = be_u32(head, 0);
    if found == magic {
        return Ok(());
    }
    let want = format!("expected magic 0x{magic:08x}, found 0x{found:08x}");
    let (ty, ndims) = (head[2], head[3]);
    if head[0] != 0 || head[1] != 0 || sniff::idx_type_name(ty).is_none() {
        let inner = sniff::describe(head)
            .map(|k| format!("it is {k}"))
            .unwrap_or_else(|| "unknown content".into());
        let kind = if gz {
            format!("a gzip file whose content is not IDX ({inner})")
        } else {
            format!("not an IDX file ({inner})")
        };
        bail!("{p}: {kind}, where IDX {what} are expected: {want}");
    }
    if ty != (magic >> 8) as u8 {
        bail!(
            "{p}: an IDX file of {} (type 0x{ty:02X}), where IDX {what} of unsigned bytes \
             (type 0x08) are expected: {want}",
            sniff::idx_type_name(ty).unwrap_or("unknown type")
        );
    }
    let (expected, other_ndims, other) = if what == "images" {
        (
            "IDX images (3 dimensions: count, rows, columns)",
            1,
            "labels",
        )
    } else {
        ("IDX labels (1 dimension: count)", 3, "images")
    };
    let hint = if ndims == other_ndims {
        format!(" (is it the {other} file?)")
    } else {
        String::new()
    };
    bail!(
        "{p}: {}, where {expected} are expected{hint}: {want}",
        kind_name(ndims)
    )
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
    check_magic(path, bytes, magic, what, false)?;
    ensure!(
        bytes.len() >= header,
        "{p}: {} bytes, too short for the {header}-byte IDX header",
        bytes.len()
    );
    let dims = dims_of(&bytes[4..header]);
    let expected = payload_size(path, &dims)?.saturating_add(header as u64);
    if expected != bytes.len() as u64 {
        bail!(
            "{p}: size does not match the header ({what} {}): expected {expected} bytes, found {}",
            shape(&dims),
            bytes.len()
        );
    }
    Ok(dims)
}

fn dims_of(bytes: &[u8]) -> Vec<usize> {
    bytes
        .chunks_exact(4)
        .map(|c| be_u32(c, 0) as usize)
        .collect()
}

fn shape(dims: &[usize]) -> String {
    let s: Vec<String> = dims.iter().map(usize::to_string).collect();
    s.join(" x ")
}

fn payload_size(path: &Path, dims: &[usize]) -> Result<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .context("dimensions overflow")
        .with_context(|| format!("{}: header dimensions {dims:?}", path.display()))
}

/// Reads the IDX file `path` (raw or gzipped) of `magic`: its dimensions and payload. The
/// payload is read up to the size the header declares (plus one byte, to detect a longer
/// file), so a small gzip cannot inflate into an unbounded allocation.
fn read_idx(path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot read {p}"))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut raw = BufReader::new(file);
    let mut first = [0u8; 2];
    let n = read_full(&mut raw, &mut first).with_context(|| format!("cannot read {p}"))?;
    let gz = n == 2 && first == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gz {
        Box::new(GzDecoder::new(first.as_slice().chain(raw)))
    } else {
        Box::new(first[..n].chain(raw))
    };
    let corrupt = || format!("{p}: corrupt or truncated gzip data");
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut head = vec![0u8; header_len];
    let got = if gz {
        read_full(&mut reader, &mut head).with_context(corrupt)?
    } else {
        read_full(&mut reader, &mut head).with_context(|| format!("cannot read {p}"))?
    };
    ensure!(
        got >= 4,
        "{p}: {got} bytes{}, too short for an IDX file (expected a {header_len}-byte header)",
        if gz { " once inflated" } else { "" }
    );
    check_magic(path, &head, magic, what, gz)?;
    ensure!(
        got == header_len,
        "{p}: {got} bytes, too short for the {header_len}-byte IDX header"
    );
    let dims = dims_of(&head[4..]);
    let payload = payload_size(path, &dims)?;
    let expected = payload.saturating_add(header_len as u64);
    let mismatch = |found: String| {
        anyhow::anyhow!(
            "{p}: size does not match the header ({what} {}): expected {expected} bytes, \
             found {found}",
            shape(&dims)
        )
    };
    // A raw file's size is known before reading it.
    if !gz && file_len != expected {
        return Err(mismatch(file_len.to_string()));
    }
    let mut data = Vec::with_capacity(payload.min(file_len.max(1 << 20)) as usize);
    reader
        .take(payload.saturating_add(1))
        .read_to_end(&mut data)
        .with_context(|| {
            if gz {
                corrupt()
            } else {
                format!("cannot read {p}")
            }
        })?;
    let found = data.len() as u64;
    if found > payload {
        return Err(mismatch(format!("more than {expected} once inflated")));
    }
    if found < payload {
        return Err(mismatch((found + header_len as u64).to_string()));
    }
    Ok((dims, data))
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads an IDX images file (magic 0x00000803: count, rows, columns).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, "images")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    ensure!(
        rows > 0 && cols > 0,
        "{}: images of {rows}x{cols} pixels: expected both sides positive",
        path.display()
    );
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
    let (_, labels) = read_idx(path, LABELS_MAGIC, "labels")?;
    Ok(IdxLabels {
        path: path.to_path_buf(),
        labels,
    })
}

/// A file name as [`find_file`] compares it: lower case, `.idx` as `-idx`, no `.gz`.
fn normalized(name: &str) -> (String, bool) {
    let lower = name.to_ascii_lowercase().replace(".idx", "-idx");
    match lower.strip_suffix(".gz") {
        Some(stem) => (stem.to_string(), true),
        None => (lower, false),
    }
}

/// The file `stem` in `dir`, raw or gzipped (`stem.gz`), under the names the distributions
/// use: any case, `.` or `-` before `idx` (Kaggle's `train-images.idx3-ubyte`). The raw
/// file wins when both exist; two raw (or two gzipped) candidates are refused.
pub fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let d = dir.display();
    let (want, _) = normalized(stem);
    let mut raw = Vec::new();
    let mut gz = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {d}"))? {
        let entry = entry.with_context(|| format!("cannot list {d}"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let (norm, is_gz) = normalized(&name);
        if norm == want && entry.path().is_file() {
            if is_gz { &mut gz } else { &mut raw }.push(name);
        }
    }
    for found in [raw, gz] {
        match found.len() {
            0 => continue,
            1 => return Ok(dir.join(&found[0])),
            _ => {
                let mut found = found;
                found.sort();
                bail!(
                    "{d}: {} files could be {stem}: {}; keep one",
                    found.len(),
                    found.join(", ")
                )
            }
        }
    }
    bail!("{d}: no IDX file {stem} or {stem}.gz in the folder")
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

    #[test]
    fn other_kinds_are_named_and_inflation_is_bounded() {
        let dir = std::env::temp_dir().join(format!("remind-idx-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gz = |b: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(b).unwrap();
            enc.finish().unwrap()
        };
        let err = |name: &str, bytes: &[u8], images: bool| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let e = if images {
                read_images(&path).map(|_| ())
            } else {
                read_labels(&path).map(|_| ())
            };
            format!("{:#}", e.unwrap_err())
        };
        let labels = encode_labels(&[1, 2, 3]);
        let e = err("l", &labels, true);
        assert!(
            e.contains("an IDX labels file") && e.contains("is it the labels file?"),
            "{e}"
        );
        let e = err("i", &encode_images(2, 2, &[0; 8]), false);
        assert!(
            e.contains("an IDX images file") && e.contains("is it the images file?"),
            "{e}"
        );
        let mut floats = IMAGES_MAGIC.to_be_bytes();
        floats[2] = 0x0D;
        let e = err("f", &floats, true);
        assert!(e.contains("32-bit floats (type 0x0D)"), "{e}");
        let e = err("t.gz", &gz(b"hello, these are not pixels\n"), true);
        assert!(
            e.contains("a gzip file whose content is not IDX (it is a text file)"),
            "{e}"
        );
        // A header declaring 3 labels in front of a gzip that inflates to 10 MB.
        let mut bomb = encode_labels(&[1, 2, 3]);
        bomb.extend(vec![0u8; 10 << 20]);
        let e = err("bomb.gz", &gz(&bomb), false);
        assert!(
            e.contains("expected 11 bytes, found more than 11 once inflated"),
            "{e}"
        );
        let e = err("short.gz", &gz(&labels[..9]), false);
        assert!(e.contains("expected 11 bytes, found 9"), "{e}");
        // Names as other distributions spell them.
        for name in ["TRAIN-LABELS-IDX1-UBYTE", "train-labels.idx1-ubyte.gz"] {
            let sub = dir.join(name.replace('.', "_"));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(name), &labels).unwrap();
            assert_eq!(
                find_file(&sub, "train-labels-idx1-ubyte").unwrap(),
                sub.join(name)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
