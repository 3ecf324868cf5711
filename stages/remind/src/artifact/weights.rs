//! Weight files: named tensors in safetensors (read and written, with string metadata),
//! and TorchScript / libtorch archives (`.pt`, `.pth`, `.bin`; read only, as far as libtorch
//! can parse them). A `torch.save`d pickled `state_dict` is not readable from Rust:
//! `scripts/convert_weights.py IN.pth OUT.safetensors` converts it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, View};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::atomic::write_bytes;

/// Named tensors read from a weight file, in file order, on the CPU.
pub struct WeightFile {
    pub path: PathBuf,
    pub tensors: Vec<(String, Tensor)>,
    /// safetensors `__metadata__` (empty for other formats).
    pub metadata: HashMap<String, String>,
}

const CONVERT_HINT: &str = "a torch.save()d state_dict is a Python pickle that libtorch cannot \
     read from Rust; convert it with `python scripts/convert_weights.py IN.pth OUT.safetensors`";

/// Reads `path`: `.safetensors`, or a TorchScript / libtorch archive (`.pt`, `.pth`, `.bin`).
pub fn read_weights(path: &Path) -> Result<WeightFile> {
    let p = path.display();
    if !path.is_file() {
        bail!("{p}: no such weights file");
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("safetensors") => read_safetensors(path),
        Some("pt" | "pth" | "bin" | "ckpt") => {
            // libtorch reads the archives its own C++ API writes (tch's save_multi,
            // torch.jit.save of a module holding the tensors), not Python pickles.
            let tensors = Tensor::loadz_multi_with_device(path, Device::Cpu)
                .or_else(|_| Tensor::load_multi_with_device(path, Device::Cpu))
                .map_err(|e| {
                    anyhow!(
                        "{p}: not a weights archive libtorch can read ({}); {CONVERT_HINT}",
                        first_line(&e.to_string())
                    )
                })?;
            Ok(WeightFile {
                path: path.to_path_buf(),
                tensors,
                metadata: HashMap::new(),
            })
        }
        _ => bail!("{p}: unknown weights format (expected .safetensors, or .pt/.pth as a libtorch archive)"),
    }
}

/// The first sentence of a (possibly long, multi-line) libtorch message.
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    line.split_once(". ").map_or(line, |(head, _)| head)
}

fn read_safetensors(path: &Path) -> Result<WeightFile> {
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
    // SAFETY: the mapping is read once, here, and copied into tensors; weight files are
    // not modified in place by this program (writes go to a new file and rename).
    let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {p}"))?;
    let (_, header) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| anyhow!("{p}: not a valid safetensors file: {e:?}"))?;
    let st = SafeTensors::deserialize(&mmap)
        .map_err(|e| anyhow!("{p}: not a valid safetensors file: {e:?}"))?;
    let mut names: Vec<(usize, String)> = header
        .tensors()
        .into_iter()
        .map(|(name, info)| (info.data_offsets.0, name))
        .collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for (_, name) in names {
        let view = st
            .tensor(&name)
            .map_err(|e| anyhow!("{p}: tensor '{name}': {e:?}"))?;
        let kind = kind_of(view.dtype()).with_context(|| format!("{p}: tensor '{name}'"))?;
        let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &size, kind)
            .map_err(|e| anyhow!("{p}: tensor '{name}': {e}"))?;
        tensors.push((name, t));
    }
    Ok(WeightFile {
        path: path.to_path_buf(),
        tensors,
        metadata: header.metadata().clone().unwrap_or_default(),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        other => bail!("unsupported dtype {other:?}"),
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        other => bail!("unsupported tensor kind {other:?}"),
    })
}

/// One tensor's bytes, ready for the safetensors serializer.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes named tensors as a safetensors file, atomically, with `metadata` as its
/// `__metadata__` (PyTorch: `safetensors.torch.load_file`).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<PathBuf> {
    let p = path.display();
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let dtype = dtype_of(t.kind()).with_context(|| format!("{p}: tensor '{name}'"))?;
        let nbytes = t.numel() * t.kind().elt_size_in_bytes();
        let mut data = vec![0u8; nbytes];
        t.f_copy_data_u8(&mut data, t.numel())
            .map_err(|e| anyhow!("{p}: tensor '{name}': {e}"))?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        owned.push((name.clone(), Bytes { dtype, shape, data }));
    }
    let views: Vec<(&str, &Bytes)> = owned.iter().map(|(n, b)| (n.as_str(), b)).collect();
    let meta = (!metadata.is_empty()).then_some(metadata);
    let bytes = safetensors::tensor::serialize(views, &meta)
        .map_err(|e| anyhow!("{p}: cannot serialise safetensors: {e:?}"))?;
    write_bytes(path, &bytes)?;
    Ok(path.to_path_buf())
}

/// SHA-256 of a file's bytes, hex (recorded by artifacts made from it).
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_with_metadata() {
        let _rng = crate::testing::tch_rng_lock();
        let dir = std::env::temp_dir().join(format!("remind-weights-{}", std::process::id()));
        let path = dir.join("w.safetensors");
        let a = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::from(7i64);
        let meta = HashMap::from([("remind.arch".to_string(), "resnet18".to_string())]);
        write_safetensors(
            &path,
            &[("a.weight".into(), a.shallow_clone()), ("b".into(), b)],
            meta,
        )
        .unwrap();
        let w = read_weights(&path).unwrap();
        assert_eq!(w.metadata["remind.arch"], "resnet18");
        assert_eq!(w.tensors.len(), 2);
        let get = |n: &str| &w.tensors.iter().find(|(k, _)| k == n).unwrap().1;
        assert!(get("a.weight").equal(&a));
        assert_eq!(get("b").int64_value(&[]), 7);
        assert_eq!(file_sha256(&path).unwrap().len(), 64);
        std::fs::write(dir.join("bad.safetensors"), b"nonsense").unwrap();
        let err = read_weights(&dir.join("bad.safetensors"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("not a valid"),
            "{err}"
        );
        std::fs::write(dir.join("x.pth"), b"nonsense").unwrap();
        let err = read_weights(&dir.join("x.pth")).err().unwrap().to_string();
        assert!(err.contains("convert_weights.py"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
