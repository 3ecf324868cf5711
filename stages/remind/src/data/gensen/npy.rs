//! NumPy `.npy` files (format versions 1 to 3), read natively: little-endian `float32`
//! (`<f4`) and `int64` (`<i8`) arrays in C order, memory-mapped. Anything else (Fortran
//! order, other dtypes, big-endian) is refused with an error naming the file.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element type of a supported `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDType {
    F32,
    I64,
}

impl NpyDType {
    pub fn descr(self) -> &'static str {
        match self {
            NpyDType::F32 => "<f4",
            NpyDType::I64 => "<i8",
        }
    }
    fn size(self) -> usize {
        match self {
            NpyDType::F32 => 4,
            NpyDType::I64 => 8,
        }
    }
}

/// A memory-mapped `.npy` array.
pub struct NpyArray {
    path: PathBuf,
    pub dtype: NpyDType,
    pub shape: Vec<usize>,
    data_start: usize,
    mmap: Mmap,
}

impl NpyArray {
    /// Opens `path` and checks its header; the data stay on disk until read.
    pub fn open(path: &Path) -> Result<Self> {
        let p = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
        // SAFETY: input files are only read; the mapping lives as long as the array and a
        // concurrent writer truncating the file is outside what this program supports.
        let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {p}"))?;
        let (dtype, shape, data_start) = parse_header(&mmap).with_context(|| format!("{p}"))?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .with_context(|| format!("{p}: shape {shape:?} is too large"))?;
        let expected = count
            .checked_mul(dtype.size())
            .and_then(|n| n.checked_add(data_start))
            .with_context(|| format!("{p}: shape {shape:?} is too large"))?;
        ensure!(
            mmap.len() == expected,
            "{p}: the header promises {count} values of {} ({expected} bytes with the header), \
             but the file has {} bytes (truncated or not a .npy file)",
            dtype.descr(),
            mmap.len()
        );
        Ok(Self {
            path: path.to_path_buf(),
            dtype,
            shape,
            data_start,
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bytes(&self) -> &[u8] {
        &self.mmap[self.data_start..]
    }

    /// The values of a `<f4` array, row-major (copied only where the data are unaligned).
    pub fn f32_values(&self) -> Result<std::borrow::Cow<'_, [f32]>> {
        ensure!(
            self.dtype == NpyDType::F32,
            "{}: expected float32 ('<f4'), found '{}'",
            self.path.display(),
            self.dtype.descr()
        );
        Ok(cast_or_copy(self.bytes()))
    }

    /// The values of a `<i8` array.
    pub fn i64_values(&self) -> Result<std::borrow::Cow<'_, [i64]>> {
        ensure!(
            self.dtype == NpyDType::I64,
            "{}: expected int64 ('<i8'), found '{}'",
            self.path.display(),
            self.dtype.descr()
        );
        Ok(cast_or_copy(self.bytes()))
    }
}

fn cast_or_copy<T: bytemuck::Pod>(bytes: &[u8]) -> std::borrow::Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(values) => std::borrow::Cow::Borrowed(values),
        Err(_) => {
            let mut values = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(bytes);
            std::borrow::Cow::Owned(values)
        }
    }
}

/// Parses the magic, version and header dict; returns dtype, shape and the data offset.
fn parse_header(bytes: &[u8]) -> Result<(NpyDType, Vec<usize>, usize)> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "not a .npy file (no \\x93NUMPY magic)"
    );
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => bail!("unsupported .npy format version {major}.{minor}"),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .context("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[start..end])
        .ok()
        .context(".npy header is not text")?;
    let descr = dict_value(header, "descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.strip_suffix('\''))
        .or_else(|| descr.strip_prefix('"').and_then(|d| d.strip_suffix('"')))
        .with_context(|| format!("header field 'descr': expected a string, found {descr}"))?;
    let dtype = match descr {
        "<f4" => NpyDType::F32,
        "<i8" => NpyDType::I64,
        other => bail!(
            "dtype '{other}' is not supported: expected little-endian float32 ('<f4') or \
             int64 ('<i8') (convert with numpy: a.astype('<f4') or a.astype('<i8'))"
        ),
    };
    match dict_value(header, "fortran_order")? {
        "False" => {}
        "True" => bail!(
            "the array is in Fortran order; only C order is supported \
             (convert with numpy.ascontiguousarray)"
        ),
        other => bail!("header field 'fortran_order': expected True or False, found {other}"),
    }
    let shape = dict_value(header, "shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .with_context(|| format!("header field 'shape': expected a tuple, found {shape}"))?;
    let dims = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!("header field 'shape': '{s}' is not a size"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((dtype, dims, end))
}

/// The source text of the value of `key` in a Python dict literal of literals.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))
        .with_context(|| format!(".npy header has no '{key}' field: {}", header.trim()))?;
    let rest = header[at + key.len() + 2..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .with_context(|| format!(".npy header field '{key}' has no value"))?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else if let Some(q @ ('\'' | '"')) = rest.chars().next() {
        rest[1..].find(q).map(|i| i + 2)
    } else {
        rest.find([',', '}'])
    }
    .with_context(|| format!(".npy header field '{key}' is not terminated"))?;
    Ok(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn parses_headers_and_refuses_what_it_cannot_read() {
        let data: Vec<u8> = [1.5f32, 2.0, -3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let ok = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &data,
        );
        let (dtype, shape, start) = parse_header(&ok).unwrap();
        assert_eq!((dtype, shape, start % 64), (NpyDType::F32, vec![2, 3], 0));
        let (_, shape, _) = parse_header(&npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (7,), }",
            &[],
        ))
        .unwrap();
        assert_eq!(shape, [7]);
        let (_, shape, _) = parse_header(&npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            &[],
        ))
        .unwrap();
        assert!(shape.is_empty());
        let err = |h: &str| format!("{:#}", parse_header(&npy(h, &data)).unwrap_err());
        assert!(
            err("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }")
                .contains("dtype '<f8' is not supported")
        );
        assert!(
            err("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }")
                .contains("dtype '>f4'")
        );
        assert!(
            err("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }")
                .contains("Fortran order")
        );
        assert!(err("{'descr': '<f4', 'shape': (2, 3), }").contains("'fortran_order'"));
        assert!(format!("{:#}", parse_header(b"PK\x03\x04 zip").unwrap_err()).contains("magic"));
    }
}
