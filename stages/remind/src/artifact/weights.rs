//! Weight files: named tensors in safetensors (read and written, with string metadata),
//! and TorchScript / libtorch archives (`.pt`, `.pth`, `.bin`; read only, as far as libtorch
//! can parse them). A `torch.save`d pickled `state_dict` is not readable from Rust:
//! `scripts/convert_weights.py IN.pth OUT.safetensors` converts it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};
use serde::ser::{Serialize, SerializeMap, Serializer};
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

const CONVERT_HINT: &str = "a torch.save()d checkpoint is a Python pickle that libtorch cannot \
     read from Rust; convert it with `python scripts/convert_weights.py IN.pth OUT.safetensors` \
     (it takes a bare state_dict, one under 'state_dict', 'model' or 'model_state_dict', and \
     drops a DataParallel 'module.' prefix)";

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
                    let head = super::sniff::head(path);
                    match super::sniff::describe(&head) {
                        Some(kind) if kind.contains("PyTorch") || kind.contains("pickle") => {
                            anyhow!("{p}: {kind}; {CONVERT_HINT}")
                        }
                        Some(kind) => anyhow!(
                            "{p}: {kind}, not a weights file: expected .safetensors, or a \
                             libtorch archive as .pt/.pth"
                        ),
                        None => anyhow!(
                            "{p}: not a weights archive libtorch can read ({}); {CONVERT_HINT}",
                            first_line(&e.to_string())
                        ),
                    }
                })?;
            Ok(WeightFile {
                path: path.to_path_buf(),
                tensors,
                metadata: HashMap::new(),
            })
        }
        _ => bail!(
            "{p}: unknown weights format{} (expected .safetensors, or .pt/.pth as a libtorch \
             archive)",
            super::sniff::it_is(path)
        ),
    }
}

/// The first sentence of a (possibly long, multi-line) libtorch message.
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    line.split_once(". ").map_or(line, |(head, _)| head)
}

/// A safetensors error in words (the crate's Debug names, `TensorInvalidInfo`, say little).
fn explain(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader => "its header is not UTF-8 text".into(),
        E::InvalidHeaderStart => "its header does not start with '{'".into(),
        E::InvalidHeaderDeserialization => "its header is not valid JSON".into(),
        E::HeaderTooLarge => "its header declares more than 100 MB".into(),
        E::HeaderTooSmall => "it is shorter than the 8-byte header length".into(),
        E::InvalidHeaderLength => "its header length is beyond the end of the file".into(),
        E::TensorNotFound(n) => format!("no tensor '{n}'"),
        E::TensorInvalidInfo => {
            "a tensor's shape and dtype do not match its declared byte range".into()
        }
        E::InvalidOffset(n) => format!("tensor '{n}' has byte offsets outside the data"),
        E::MetadataIncompleteBuffer => {
            "the tensors' byte ranges do not cover the data exactly (truncated or padded)".into()
        }
        E::ValidationOverflow => "a tensor's shape overflows when multiplied out".into(),
        E::InvalidTensorView(dtype, shape, len) => {
            format!("{len} bytes cannot hold a {dtype:?} tensor of shape {shape:?}")
        }
        other => format!("{other:?}"),
    }
}

/// The memory-mapped file and its parsed safetensors header (tensor table and
/// `__metadata__`); an error says what the file is when it is not safetensors.
fn open_safetensors(path: &Path) -> Result<(Mmap, safetensors::tensor::Metadata)> {
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
    // SAFETY: the mapping is only read, here and by the caller, and copied into tensors;
    // weight files are not modified in place by this program (writes go to a new file and
    // rename).
    let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {p}"))?;
    let (_, header) =
        SafeTensors::read_metadata(&mmap).map_err(|e| {
            match super::sniff::describe(&mmap[..mmap.len().min(super::sniff::SNIFF_LEN)]) {
                Some(kind) if kind != "a safetensors file" => {
                    let hint = if kind.contains("PyTorch") || kind.contains("pickle") {
                        format!("; {CONVERT_HINT}")
                    } else {
                        String::new()
                    };
                    anyhow!("{p}: not a valid safetensors file: it is {kind}{hint}")
                }
                _ => anyhow!("{p}: not a valid safetensors file: {}", explain(&e)),
            }
        })?;
    Ok((mmap, header))
}

/// The `__metadata__` of a safetensors file (e.g. `remind.arch`), reading only its header;
/// empty for other formats, which carry none.
pub fn weights_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return Ok(HashMap::new());
    }
    if !path.is_file() {
        bail!("{}: no such weights file", path.display());
    }
    let (_, header) = open_safetensors(path)?;
    Ok(header.metadata().clone().unwrap_or_default())
}

fn read_safetensors(path: &Path) -> Result<WeightFile> {
    let p = path.display();
    let (mmap, header) = open_safetensors(path)?;
    let st = SafeTensors::deserialize(&mmap)
        .map_err(|e| anyhow!("{p}: not a valid safetensors file: {}", explain(&e)))?;
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
            .map_err(|e| anyhow!("{p}: tensor '{name}': {}", explain(&e)))?;
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

/// Writes named tensors as a safetensors file, atomically, with `metadata` as its
/// `__metadata__` (PyTorch: `safetensors.torch.load_file`).
///
/// The bytes depend only on the tensors and the metadata, never on the order either is
/// given in: the header lists `__metadata__` first with its keys sorted, then the tensors
/// in file order: by dtype (8-byte types first, in safetensors' order), then by name, as
/// the `safetensors` crate lays them out. So two identical trainings write identical files.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: impl IntoIterator<Item = (String, String)>,
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
    let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
    let bytes = serialize_safetensors(owned, &metadata)
        .with_context(|| format!("{p}: cannot serialise safetensors"))?;
    write_bytes(path, &bytes)?;
    Ok(path.to_path_buf())
}

/// The safetensors encoding of `tensors` with `metadata`: an 8-byte little-endian header
/// length, the JSON header (space-padded to a multiple of 8 bytes), then the tensor data
/// back to back. Equal inputs give equal bytes whatever their order.
fn serialize_safetensors(
    mut tensors: Vec<(String, Bytes)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    tensors.sort_by(|(a, x), (b, y)| y.dtype.cmp(&x.dtype).then_with(|| a.cmp(b)));
    if let Some(w) = tensors.windows(2).find(|w| w[0].0 == w[1].0) {
        bail!("tensor '{}' is given twice", w[0].0);
    }
    ensure!(
        !tensors.iter().any(|(n, _)| n == "__metadata__"),
        "a tensor may not be named '__metadata__'"
    );
    /// The header as a JSON object whose keys keep the order given.
    struct Header<'a> {
        metadata: &'a BTreeMap<String, String>,
        tensors: Vec<(&'a str, TensorInfo)>,
    }
    impl Serialize for Header<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let with_meta = !self.metadata.is_empty();
            let mut map = s.serialize_map(Some(self.tensors.len() + usize::from(with_meta)))?;
            if with_meta {
                map.serialize_entry("__metadata__", self.metadata)?;
            }
            for (name, info) in &self.tensors {
                map.serialize_entry(name, info)?;
            }
            map.end()
        }
    }
    let mut offset = 0;
    let mut infos = Vec::with_capacity(tensors.len());
    for (name, b) in &tensors {
        infos.push((
            name.as_str(),
            TensorInfo {
                dtype: b.dtype,
                shape: b.shape.clone(),
                data_offsets: (offset, offset + b.data.len()),
            },
        ));
        offset += b.data.len();
    }
    let mut header = serde_json::to_vec(&Header {
        metadata,
        tensors: infos,
    })?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, b) in &tensors {
        out.extend_from_slice(&b.data);
    }
    Ok(out)
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
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes` (digests in artifacts, manifests and checkpoints).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert!(
            err.contains("x.pth: a text file, not a weights file"),
            "{err}"
        );
        // A pickle (torch.save's legacy format starts with protocol 2) gets the converter.
        std::fs::write(dir.join("y.pth"), b"\x80\x02}q\x00.").unwrap();
        let err = read_weights(&dir.join("y.pth")).err().unwrap().to_string();
        assert!(
            err.contains("y.pth: a Python pickle") && err.contains("convert_weights.py"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safetensors_bytes_do_not_depend_on_input_order() {
        let _rng = crate::testing::tch_rng_lock();
        let dir = std::env::temp_dir().join(format!("remind-weights-det-{}", std::process::id()));
        let a = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::from_slice(&[1i64, 2, 3]);
        let c = Tensor::randn([4], (Kind::Double, Device::Cpu));
        let d = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let named = |n: &str, t: &Tensor| (n.to_string(), t.shallow_clone());
        // Every HashMap has its own random seed, so these two iterate in different orders
        // (with 16 keys, equal orders by chance are all but impossible).
        let meta = || -> HashMap<String, String> {
            (0..16)
                .map(|i| (format!("remind.key{i}"), format!("value {i}")))
                .collect()
        };
        let first = dir.join("first.safetensors");
        let second = dir.join("second.safetensors");
        write_safetensors(
            &first,
            &[
                named("z", &a),
                named("b", &b),
                named("c", &c),
                named("a", &d),
            ],
            meta(),
        )
        .unwrap();
        let mut reversed: Vec<(String, String)> = meta().into_iter().collect();
        reversed.sort_by(|x, y| y.cmp(x));
        write_safetensors(
            &second,
            &[
                named("a", &d),
                named("c", &c),
                named("b", &b),
                named("z", &a),
            ],
            reversed,
        )
        .unwrap();
        let bytes = std::fs::read(&first).unwrap();
        assert_eq!(bytes, std::fs::read(&second).unwrap());
        // The header: metadata first, keys sorted; tensors by descending dtype in safetensors'
        // order (I64, F64, F32), then by name.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        let at = |k: &str| header.find(k).unwrap();
        assert!(at("__metadata__") < at("remind.key0") && at("remind.key0") < at("remind.key1"));
        assert!(at("remind.key1\"") < at("remind.key10") && at("remind.key9") < at("\"b\""));
        assert!(
            at("\"b\"") < at("\"c\"") && at("\"c\"") < at("\"a\"") && at("\"a\"") < at("\"z\"")
        );
        // Still a valid file for the safetensors reader, values and metadata intact.
        let w = read_weights(&first).unwrap();
        let names: Vec<&str> = w.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c", "a", "z"]);
        assert!(w.tensors[0].1.equal(&b) && w.tensors[1].1.equal(&c));
        assert!(w.tensors[2].1.equal(&d) && w.tensors[3].1.equal(&a));
        assert_eq!(w.metadata, meta());
        // Without metadata there is no __metadata__ entry, as before.
        write_safetensors(&first, &[named("a", &d)], HashMap::new()).unwrap();
        let w = read_weights(&first).unwrap();
        assert!(w.metadata.is_empty());
        let dup = write_safetensors(&first, &[named("a", &d), named("a", &a)], HashMap::new());
        assert!(format!("{:#}", dup.unwrap_err()).contains("'a' is given twice"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
