//! NumPy `.npy` files, read natively as `numpy.save` writes them (the format is NumPy's
//! `numpy/lib/format.py`, NEP 1): format versions 1.0 to 3.0; `float32` and `int64` arrays,
//! little-endian (`<f4`, `<i8`: memory-mapped, no copy) or big-endian (`>f4`, `>i8`: swapped
//! on read); C order, or Fortran order (`fortran_order: True`, reordered to row-major on
//! read). Other dtypes, object (pickled) and structured arrays are refused, as are files of
//! another kind (an `.npz` archive, a pickle), each with an error naming the file and what
//! to give instead.

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
    /// The values' type in messages.
    fn name(self) -> &'static str {
        match self {
            NpyDType::F32 => "float32",
            NpyDType::I64 => "int64",
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
    /// Stored big-endian (`>f4`, `>i8`): values are swapped on read.
    big_endian: bool,
    /// Stored in Fortran (column-major) order: values are reordered on read.
    fortran: bool,
    data_start: usize,
    mmap: Mmap,
}

/// What the `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    dtype: NpyDType,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    data_start: usize,
}

impl NpyArray {
    /// Opens `path` and checks its header; the data stay on disk until read.
    pub fn open(path: &Path) -> Result<Self> {
        let p = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
        // SAFETY: input files are only read; the mapping lives as long as the array and a
        // concurrent writer truncating the file is outside what this program supports.
        let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {p}"))?;
        let Header {
            dtype,
            big_endian,
            fortran,
            shape,
            data_start,
        } = parse_header(&mmap).with_context(|| format!("{p}"))?;
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
            big_endian,
            fortran,
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

    /// The values of a `<f4` (or `>f4`) array, row-major (copied only where the data are
    /// unaligned, big-endian or in Fortran order).
    pub fn f32_values(&self) -> Result<std::borrow::Cow<'_, [f32]>> {
        self.values(NpyDType::F32)
    }

    /// The values of a `<i8` (or `>i8`) array, row-major.
    pub fn i64_values(&self) -> Result<std::borrow::Cow<'_, [i64]>> {
        self.values(NpyDType::I64)
    }

    /// Refuses an array of another dtype or rank: `what` names what it should hold (e.g.
    /// "features") and `dims` its dimensions (e.g. "[N x D]").
    pub fn expect(&self, dtype: NpyDType, rank: usize, what: &str, dims: &str) -> Result<()> {
        let p = self.path.display();
        ensure!(
            self.dtype == dtype,
            "{p}: expected {} ('{}') {what}, found '{}'",
            dtype.name(),
            dtype.descr(),
            self.dtype.descr()
        );
        ensure!(
            self.shape.len() == rank,
            "{p}: expected {rank}-D {what} {dims}, found shape {:?}",
            self.shape
        );
        Ok(())
    }

    /// The values, `T` being `dtype`'s type.
    fn values<T: bytemuck::Pod>(&self, dtype: NpyDType) -> Result<std::borrow::Cow<'_, [T]>> {
        ensure!(
            self.dtype == dtype,
            "{}: expected {} ('{}'), found '{}'",
            self.path.display(),
            dtype.name(),
            dtype.descr(),
            self.dtype.descr()
        );
        let mut values = cast_or_copy::<T>(self.bytes());
        if self.big_endian {
            for v in values.to_mut().iter_mut() {
                bytemuck::bytes_of_mut(v).reverse();
            }
        }
        if self.fortran && self.shape.len() > 1 {
            values = std::borrow::Cow::Owned(fortran_to_c(&values, &self.shape));
        }
        Ok(values)
    }
}

/// Column-major `values` of `shape` in row-major order.
fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    // Column-major strides: the first index varies fastest.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[at]);
        // Row-major odometer: the last index varies fastest.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
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

/// Parses the magic, version and header dict.
fn parse_header(bytes: &[u8]) -> Result<Header> {
    if !(bytes.len() >= 10 && bytes.starts_with(MAGIC)) {
        let hint = match crate::artifact::sniff::describe(bytes) {
            Some(kind) if kind.contains(".npz") => format!(
                "{kind}, not an .npy file: extract the array with numpy.load(PATH)[name] and \
                 save it with numpy.save"
            ),
            Some(kind) if kind.contains("pickle") => {
                format!("{kind}, not an .npy file: save a numeric array with numpy.save")
            }
            Some(kind) => format!("{kind}, not an .npy file (no \\x93NUMPY magic)"),
            None => "not an .npy file (no \\x93NUMPY magic)".into(),
        };
        bail!("{hint}");
    }
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
        _ => bail!("unsupported .npy format version {major}.{minor} (expected 1.0 to 3.0)"),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .context("truncated .npy header")?;
    // Version 3.0 allows UTF-8 field names; 1.0 and 2.0 are Latin-1 (ASCII in practice).
    let header = std::str::from_utf8(&bytes[start..end])
        .ok()
        .context(".npy header is not text")?;
    let descr = dict_value(header, "descr")?;
    if descr.starts_with('[') {
        bail!(
            "a structured array (record dtype {descr}): save one numeric field with \
             numpy.save(PATH, a['name'])"
        );
    }
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.strip_suffix('\''))
        .or_else(|| descr.strip_prefix('"').and_then(|d| d.strip_suffix('"')))
        .with_context(|| format!("header field 'descr': expected a string, found {descr}"))?;
    let (dtype, big_endian) = match descr {
        "<f4" => (NpyDType::F32, false),
        ">f4" => (NpyDType::F32, true),
        "<i8" => (NpyDType::I64, false),
        ">i8" => (NpyDType::I64, true),
        "|O" | "O" | "<O" | ">O" => bail!(
            "an array of Python objects (dtype object, stored as a pickle): save a numeric \
             array instead (numpy.save(PATH, numpy.asarray(a, dtype='<f4')))"
        ),
        other => bail!(
            "dtype '{other}' is not supported: expected float32 ('<f4' or '>f4') or int64 \
             ('<i8' or '>i8') (convert with numpy: a.astype('<f4') or a.astype('<i8'))"
        ),
    };
    let fortran = match dict_value(header, "fortran_order")? {
        "False" => false,
        "True" => true,
        other => bail!("header field 'fortran_order': expected True or False, found {other}"),
    };
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
    Ok(Header {
        dtype,
        big_endian,
        fortran,
        shape: dims,
        data_start: end,
    })
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
    } else if rest.starts_with('[') {
        rest.rfind(']').map(|i| i + 1)
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
        let h = parse_header(&ok).unwrap();
        assert_eq!(
            (h.dtype, h.shape, h.data_start % 64, h.big_endian, h.fortran),
            (NpyDType::F32, vec![2, 3], 0, false, false)
        );
        let Header { shape, .. } = parse_header(&npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (7,), }",
            &[],
        ))
        .unwrap();
        assert_eq!(shape, [7]);
        let Header { shape, .. } = parse_header(&npy(
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
            err("{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }")
                .contains("Python objects")
        );
        assert!(err(
            "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (2,), }"
        )
        .contains("structured array"));
        assert!(err("{'descr': '<f4', 'shape': (2, 3), }").contains("'fortran_order'"));
        assert!(format!("{:#}", parse_header(b"PK\x03\x04 zip").unwrap_err()).contains("zip"));
        assert!(
            format!("{:#}", parse_header(b"\x80\x04\x95 pickled").unwrap_err())
                .contains("a Python pickle (protocol 4), not an .npy file")
        );
    }

    #[test]
    fn big_endian_and_fortran_order_read_as_row_major() {
        let dir = std::env::temp_dir().join(format!("remind-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // [[0, 1, 2], [3, 4, 5]] stored column-major and big-endian: 0 3 1 4 2 5.
        let data: Vec<u8> = [0f32, 3.0, 1.0, 4.0, 2.0, 5.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let path = dir.join("f.npy");
        std::fs::write(
            &path,
            npy(
                "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }",
                &data,
            ),
        )
        .unwrap();
        let a = NpyArray::open(&path).unwrap();
        assert_eq!(*a.f32_values().unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let ids: Vec<u8> = [7i64, -2].iter().flat_map(|v| v.to_be_bytes()).collect();
        std::fs::write(
            &path,
            npy(
                "{'descr': '>i8', 'fortran_order': True, 'shape': (2,), }",
                &ids,
            ),
        )
        .unwrap();
        assert_eq!(
            *NpyArray::open(&path).unwrap().i64_values().unwrap(),
            [7, -2]
        );
        // [2, 2, 2] column-major: element (i, j, k) at i + 2j + 4k.
        let v: Vec<u32> = (0..8).collect();
        assert_eq!(fortran_to_c(&v, &[2, 2, 2]), [0, 4, 2, 6, 1, 5, 3, 7]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
