//! Dense tensor artifacts (features, codes, codebooks, buffers): uncompressed Arrow IPC
//! files with an `id` column and one fixed-size payload per row, memory-mapped on read so
//! that payload slices point straight into the page cache.
//!
//! The payload column `data` is Arrow's canonical extension type `arrow.fixed_shape_tensor`:
//! storage `FixedSizeList<float32|uint8>[prod(shape)]`, field metadata
//! `ARROW:extension:name` and `ARROW:extension:metadata` (`{"shape":[..],"dim_names":[..]}`,
//! the names from the layout, e.g. H, W, C), so pyarrow, Polars and DuckDB see the shape
//! without the `remind.*` keys (which stay: kind, producer, checksum). Files written before
//! (no extension metadata; uint8 payloads as `FixedSizeBinary`) are read as well.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, RecordBatch,
    UInt64Array, UInt8Array,
};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::ipc::reader::FileDecoder;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::{convert::try_fb_to_schema, reader::read_footer_length, root_as_footer};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::atomic::AtomicFile;
use super::schema::{require_meta, schema_of, tensor_field_shape, ArtifactSchema};

pub const SHAPE_KEY: &str = "remind.shape";
/// The most values one row may hold (2^31: a 64 GiB float32 row; Arrow's fixed-size lists
/// count values in i32).
pub const MAX_ROW_WIDTH: usize = 1 << 31;
pub const LAYOUT_KEY: &str = "remind.layout";
pub const DTYPE_KEY: &str = "remind.dtype";
pub const PRODUCER_KEY: &str = "remind.producer";
const ROWS_KEY: &str = "remind.rows";
const CRC_KEY: &str = "remind.crc32";

/// Element type of a tensor payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    U8,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::U8 => "uint8",
        }
    }
    fn parse(path: &Path, s: &str) -> Result<Self> {
        match s {
            "float32" => Ok(DType::F32),
            "uint8" => Ok(DType::U8),
            other => bail!(
                "{}: field '{DTYPE_KEY}': expected float32 or uint8, found '{other}'",
                path.display()
            ),
        }
    }
}

/// Who made an artifact: recorded in its metadata and in the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Producer {
    pub stage: String,
    pub version: String,
    pub config_hash: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl Producer {
    pub fn new(stage: &str, config_hash: &str) -> Self {
        Self {
            stage: stage.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_hash: config_hash.into(),
            params: Default::default(),
        }
    }
    pub fn param(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }
}

/// What a tensor artifact holds, apart from its rows.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub kind: String,
    /// Shape of one row's tensor, e.g. `[14, 14, 1024]`.
    pub shape: Vec<usize>,
    pub layout: String,
    pub dtype: DType,
    pub producer: Producer,
    /// Further kind-specific metadata (e.g. `remind.codebook_hash`).
    pub extra: HashMap<String, String>,
}

impl TensorSpec {
    pub fn new(
        kind: &str,
        shape: &[usize],
        layout: &str,
        dtype: DType,
        producer: Producer,
    ) -> Self {
        Self {
            kind: kind.into(),
            shape: shape.to_vec(),
            layout: layout.into(),
            dtype,
            producer,
            extra: HashMap::new(),
        }
    }
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
    /// Values per row.
    pub fn width(&self) -> usize {
        self.shape.iter().product()
    }
    /// Dimension names for the tensor type: the layout's letters (`HWC` -> H, W, C) when
    /// there is one per dimension.
    fn dim_names(&self) -> Option<Vec<String>> {
        let names: Vec<String> = self.layout.chars().map(String::from).collect();
        (names.len() == self.shape.len()).then_some(names)
    }
    fn metadata(&self) -> Result<HashMap<String, String>> {
        let mut m = self.extra.clone();
        m.insert(SHAPE_KEY.into(), serde_json::to_string(&self.shape)?);
        m.insert(LAYOUT_KEY.into(), self.layout.clone());
        m.insert(DTYPE_KEY.into(), self.dtype.name().into());
        m.insert(PRODUCER_KEY.into(), serde_json::to_string(&self.producer)?);
        Ok(m)
    }
}

/// A row payload handed to the writer.
pub enum Payload<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

/// Streams rows into one tensor file; see [`TensorWriter::finish`].
pub struct TensorWriter {
    atomic: AtomicFile,
    writer: FileWriter<BufWriter<File>>,
    schema: SchemaRef,
    spec: TensorSpec,
    rows: u64,
    last_id: Option<u64>,
    crc: crc32fast::Hasher,
}

impl TensorWriter {
    /// Creates `path` (under a temporary name until `finish`).
    pub fn create(path: &Path, spec: TensorSpec) -> Result<Self> {
        let schema_def = schema_of(&spec.kind)?;
        let dim_names = spec.dim_names();
        let schema = Arc::new(schema_def.tensor_schema(
            &spec.shape,
            dim_names.as_deref(),
            spec.metadata()?,
        )?);
        let mut atomic = AtomicFile::create(path)?;
        let file = atomic.take_file()?;
        let options = IpcWriteOptions::default(); // 64-byte aligned buffers, no compression
        let writer = FileWriter::try_new_with_options(
            BufWriter::with_capacity(1 << 20, file),
            &schema,
            options,
        )
        .with_context(|| format!("cannot start Arrow IPC file {}", path.display()))?;
        Ok(Self {
            atomic,
            writer,
            schema,
            spec,
            rows: 0,
            last_id: None,
            crc: crc32fast::Hasher::new(),
        })
    }

    pub fn spec(&self) -> &TensorSpec {
        &self.spec
    }

    /// Appends rows: `ids` strictly increasing across calls, `payload` of `ids.len() * width`
    /// values, `extra` the kind's further columns in schema order.
    pub fn write(&mut self, ids: &[u64], payload: Payload<'_>, extra: Vec<ArrayRef>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let width = self.spec.width();
        let path = self.atomic.final_path().display().to_string();
        for &id in ids {
            if let Some(last) = self.last_id {
                ensure!(
                    id > last,
                    "{path}: ids must be strictly increasing, got {id} after {last}"
                );
            }
            self.last_id = Some(id);
        }
        let data: ArrayRef = match (payload, self.spec.dtype) {
            (Payload::F32(v), DType::F32) => {
                ensure!(
                    v.len() == ids.len() * width,
                    "{path}: {} values for {} rows of width {width}",
                    v.len(),
                    ids.len()
                );
                self.crc.update(bytemuck::cast_slice(ids));
                self.crc.update(bytemuck::cast_slice(v));
                let values = Arc::new(Float32Array::from(v.to_vec()));
                let field = Arc::new(Field::new("item", DataType::Float32, false));
                Arc::new(FixedSizeListArray::try_new(
                    field,
                    width as i32,
                    values,
                    None,
                )?)
            }
            (Payload::U8(v), DType::U8) => {
                ensure!(
                    v.len() == ids.len() * width,
                    "{path}: {} bytes for {} rows of width {width}",
                    v.len(),
                    ids.len()
                );
                self.crc.update(bytemuck::cast_slice(ids));
                self.crc.update(v);
                let values = Arc::new(UInt8Array::from(v.to_vec()));
                let field = Arc::new(Field::new("item", DataType::UInt8, false));
                Arc::new(FixedSizeListArray::try_new(
                    field,
                    width as i32,
                    values,
                    None,
                )?)
            }
            _ => bail!(
                "{path}: payload type does not match dtype {}",
                self.spec.dtype.name()
            ),
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(ids.to_vec())), data];
        columns.extend(extra);
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .with_context(|| format!("{path}: rows do not fit the '{}' schema", self.spec.kind))?;
        self.writer
            .write(&batch)
            .with_context(|| format!("cannot write {path}"))?;
        self.rows += ids.len() as u64;
        Ok(())
    }

    /// Writes the footer (row count, checksum), syncs, and renames into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer.write_metadata(ROWS_KEY, self.rows.to_string());
        self.writer
            .write_metadata(CRC_KEY, self.crc.clone().finalize().to_string());
        let path = self.atomic.final_path().to_path_buf();
        let buffered = self
            .writer
            .into_inner()
            .with_context(|| format!("cannot finish {}", path.display()))?;
        let file = buffered
            .into_inner()
            .map_err(|e| anyhow!("cannot flush {}: {}", path.display(), e.error()))?;
        self.atomic.commit(file)
    }
}

/// Writes a whole tensor artifact in one call.
pub fn write_tensor(
    path: &Path,
    spec: TensorSpec,
    ids: &[u64],
    payload: Payload<'_>,
) -> Result<PathBuf> {
    let mut w = TensorWriter::create(path, spec)?;
    w.write(ids, payload, vec![])?;
    w.finish()
}

/// A memory-mapped tensor file. Payload slices borrow the mapping: no copy.
pub struct TensorFile {
    path: PathBuf,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// First row of each batch, plus the total at the end.
    starts: Vec<usize>,
    shape: Vec<usize>,
    dtype: DType,
    footer: HashMap<String, String>,
    _mmap: Arc<Mmap>,
}

impl TensorFile {
    /// Opens and validates `path` as an artifact of `kind` (structure, schema, metadata,
    /// row count, id order and checksum).
    pub fn open(path: &Path, kind: &str) -> Result<Self> {
        let file = TensorFile::open_unchecked(path)?;
        file.validate(schema_of(kind)?.as_ref())?;
        file.verify_checksum()?;
        Ok(file)
    }

    /// Opens whatever tensor artifact `path` holds, validating its structure and schema
    /// against the kind it names.
    pub fn open_any(path: &Path) -> Result<Self> {
        let file = TensorFile::open_unchecked(path)?;
        let kind = require_meta(path, file.schema.metadata(), super::schema::KIND_KEY)?.to_string();
        file.validate(schema_of(&kind)?.as_ref())?;
        file.verify_checksum()?;
        Ok(file)
    }

    /// The producer recorded in `path`'s metadata, without validating rows or checksum
    /// (cheap: for comparing the parameters of a dataset's parts).
    pub fn read_producer(path: &Path) -> Result<Producer> {
        TensorFile::open_unchecked(path)?.producer()
    }

    fn open_unchecked(path: &Path) -> Result<Self> {
        let p = path.display();
        let handle = File::open(path).with_context(|| format!("cannot open {p}"))?;
        // SAFETY: artifacts are immutable once renamed into place (writers never modify a
        // committed file), so the mapping is not changed under us.
        let mmap =
            Arc::new(unsafe { Mmap::map(&handle) }.with_context(|| format!("cannot map {p}"))?);
        let len = mmap.len();
        if !(len >= 18 && &mmap[..6] == b"ARROW1" && &mmap[len - 6..] == b"ARROW1") {
            // Say what was given instead, when its first bytes tell ("an empty file", "a
            // Parquet file"); a cut Arrow file still starts with the magic.
            let head = &mmap[..len.min(super::sniff::SNIFF_LEN)];
            let what = match super::sniff::describe(head) {
                Some(kind) if !head.starts_with(b"ARROW1") => format!(": it is {kind}"),
                _ => String::new(),
            };
            bail!(
                "{p}: not a complete Arrow IPC file (missing ARROW1 magic: truncated or another \
                 format){what}"
            );
        }
        let buffer = Buffer::from(bytes::Bytes::from_owner(MmapOwner(mmap.clone())));
        let trailer: [u8; 10] = mmap[len - 10..]
            .try_into()
            .map_err(|_| anyhow!("{p}: short trailer"))?;
        let footer_len =
            read_footer_length(trailer).with_context(|| format!("{p}: corrupt footer length"))?;
        ensure!(
            footer_len + 10 <= len - 8,
            "{p}: footer length {footer_len} exceeds the file size {len} (truncated or corrupt)"
        );
        let footer = root_as_footer(&mmap[len - 10 - footer_len..len - 10])
            .map_err(|e| anyhow!("{p}: corrupt Arrow IPC footer: {e}"))?;
        let fb_schema = footer
            .schema()
            .with_context(|| format!("{p}: footer has no schema"))?;
        let schema = Arc::new(
            try_fb_to_schema(fb_schema)
                .map_err(|e| anyhow!("{p}: corrupt schema in footer: {e}"))?,
        );
        let footer_meta: HashMap<String, String> = footer
            .custom_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| Some((kv.key()?.to_string(), kv.value()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let decoder = FileDecoder::new(schema.clone(), footer.version());
        let mut batches = Vec::new();
        let mut starts = vec![0usize];
        for block in footer.recordBatches().into_iter().flatten() {
            let (offset, meta_len, body_len) = (
                usize::try_from(block.offset()),
                usize::try_from(block.metaDataLength()),
                usize::try_from(block.bodyLength()),
            );
            let (Ok(offset), Ok(meta_len), Ok(body_len)) = (offset, meta_len, body_len) else {
                bail!("{p}: corrupt Arrow IPC footer: a record batch block with a negative size");
            };
            let block_len = meta_len.checked_add(body_len);
            ensure!(
                block_len
                    .and_then(|b| offset.checked_add(b))
                    .is_some_and(|end| end <= len),
                "{p}: record batch at byte {offset} runs past the end of the file (truncated or corrupt)"
            );
            let block_len = meta_len + body_len;
            check_batch_message(&mmap[offset..offset + block_len], meta_len, body_len)
                .with_context(|| format!("{p}: corrupt record batch at byte {offset}"))?;
            let data = buffer.slice_with_length(offset, block_len);
            let what = format!("{p}: record batch at byte {offset}");
            let batch = super::guard::decode_guarded(&what, || {
                decoder
                    .read_record_batch(block, &data)
                    .with_context(|| format!("{p}: corrupt record batch at byte {offset}"))?
                    .with_context(|| format!("{p}: empty record batch block at byte {offset}"))
            })?;
            starts.push(starts.last().copied().unwrap_or(0) + batch.num_rows());
            batches.push(batch);
        }
        let meta = schema.metadata();
        let shape: Vec<usize> = serde_json::from_str(require_meta(path, meta, SHAPE_KEY)?)
            .with_context(|| format!("{p}: field '{SHAPE_KEY}': expected a JSON list of sizes"))?;
        // The row width is the product of the sizes: checked here, once, so that no size a
        // file declares can wrap around to match the payload (issue #12).
        ensure!(
            shape.iter().all(|&s| s > 0)
                && shape
                    .iter()
                    .try_fold(1usize, |a, &s| a.checked_mul(s))
                    .is_some_and(|w| w <= MAX_ROW_WIDTH),
            "{p}: field '{SHAPE_KEY}': expected sizes >= 1 whose product is at most \
             {MAX_ROW_WIDTH} values per row, found {shape:?}"
        );
        let dtype = DType::parse(path, require_meta(path, meta, DTYPE_KEY)?)?;
        // The shape the tensor type declares (files of before #17 have none) is the one of
        // remind.shape.
        if let Ok(field) = schema.field_with_name("data") {
            if let Some(declared) = tensor_field_shape(path, field)? {
                ensure!(
                    declared == shape,
                    "{p}: column 'data': expected the shape of '{SHAPE_KEY}' {shape:?} in \
                     its arrow.fixed_shape_tensor type, found {declared:?}"
                );
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            schema,
            batches,
            starts,
            shape,
            dtype,
            footer: footer_meta,
            _mmap: mmap,
        })
    }

    fn validate(&self, kind: &ArtifactSchema) -> Result<()> {
        kind.validate(&self.path, &self.schema, Some(self.width()))?;
        let p = self.path.display();
        // Readers take the columns by position (zero-copy slices of each batch); kinds with
        // more columns (replay buffers) have them after these two.
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        ensure!(
            names.starts_with(&["id", "data"]),
            "{p}: columns: expected 'id' then 'data' first, found {names:?}"
        );
        let rows: usize = require_meta(&self.path, &self.footer, ROWS_KEY)?
            .parse()
            .with_context(|| format!("{p}: field '{ROWS_KEY}' is not a number"))?;
        ensure!(
            rows == self.len(),
            "{p}: field '{ROWS_KEY}': expected {rows} rows (footer), found {}",
            self.len()
        );
        let mut last: Option<u64> = None;
        for batch in &self.batches {
            ensure!(
                batch.column(1).null_count() == 0,
                "{p}: column 'data' has null rows"
            );
            for &id in ids_of(batch)? {
                if let Some(l) = last {
                    ensure!(
                        id > l,
                        "{p}: column 'id': expected strictly increasing ids, found {id} after {l}"
                    );
                }
                last = Some(id);
            }
        }
        Ok(())
    }

    /// Recomputes the checksum of ids and payload and compares it with the footer's.
    pub fn verify_checksum(&self) -> Result<()> {
        let p = self.path.display();
        let expected: u32 = require_meta(&self.path, &self.footer, CRC_KEY)?
            .parse()
            .with_context(|| format!("{p}: field '{CRC_KEY}' is not a number"))?;
        let mut crc = crc32fast::Hasher::new();
        for i in 0..self.batches.len() {
            crc.update(bytemuck::cast_slice(ids_of(&self.batches[i])?));
            crc.update(self.batch_bytes(i)?);
        }
        let found = crc.finalize();
        ensure!(found == expected, "{p}: field '{CRC_KEY}': expected checksum {expected}, found {found} (the file is corrupt)");
        Ok(())
    }

    /// The footer's checksum of ids and payload (verified when the file was opened): a
    /// cheap fingerprint of the content.
    pub fn checksum(&self) -> Result<&str> {
        require_meta(&self.path, &self.footer, CRC_KEY)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one row's tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn width(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    pub fn metadata(&self) -> &arrow::datatypes::Metadata {
        self.schema.metadata()
    }
    /// A metadata value, or an error naming the file and key.
    pub fn meta(&self, key: &str) -> Result<&str> {
        require_meta(&self.path, self.schema.metadata(), key)
    }
    pub fn layout(&self) -> Result<&str> {
        self.meta(LAYOUT_KEY)
    }
    pub fn producer(&self) -> Result<Producer> {
        serde_json::from_str(self.meta(PRODUCER_KEY)?).with_context(|| {
            format!(
                "{}: field '{PRODUCER_KEY}' is not valid JSON",
                self.path.display()
            )
        })
    }
    pub fn num_batches(&self) -> usize {
        self.batches.len()
    }
    pub fn batch(&self, i: usize) -> &RecordBatch {
        &self.batches[i]
    }
    /// Ids of batch `i` (zero-copy).
    pub fn batch_ids(&self, i: usize) -> Result<&[u64]> {
        ids_of(&self.batches[i])
    }
    /// Float payload of batch `i`, row-major (zero-copy).
    pub fn batch_f32(&self, i: usize) -> Result<&[f32]> {
        let list: &FixedSizeListArray = self.payload(i, DType::F32, "a fixed-size list")?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .with_context(|| {
                format!(
                    "{}: column 'data' does not hold float32",
                    self.path.display()
                )
            })?;
        let w = self.width();
        let start = list.offset() * w;
        Ok(&values.values()[start..start + list.len() * w])
    }
    /// Byte payload of batch `i`, row-major (zero-copy): a `FixedSizeList<uint8>` (the
    /// tensor type's storage) or, in files of before #17, `FixedSizeBinary`.
    pub fn batch_u8(&self, i: usize) -> Result<&[u8]> {
        let w = self.width();
        let column = self.batches[i].column(1);
        if let Some(bin) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() {
            ensure!(
                self.dtype == DType::U8,
                "{}: payload is {}, not uint8",
                self.path.display(),
                self.dtype.name()
            );
            let start = bin.offset() * w;
            return Ok(&bin.value_data()[start..start + bin.len() * w]);
        }
        let list: &FixedSizeListArray = self.payload(i, DType::U8, "a fixed-size list")?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<UInt8Array>()
            .with_context(|| {
                format!("{}: column 'data' does not hold uint8", self.path.display())
            })?;
        let start = list.offset() * w;
        Ok(&values.values()[start..start + list.len() * w])
    }
    /// Column 'data' of batch `i` as an `A` (`what` in the error), the payload being `dtype`.
    fn payload<A: 'static>(&self, i: usize, dtype: DType, what: &str) -> Result<&A> {
        let p = self.path.display();
        ensure!(
            self.dtype == dtype,
            "{p}: payload is {}, not {}",
            self.dtype.name(),
            dtype.name()
        );
        self.batches[i]
            .column(1)
            .as_any()
            .downcast_ref::<A>()
            .with_context(|| format!("{p}: column 'data' is not {what}"))
    }
    fn batch_bytes(&self, i: usize) -> Result<&[u8]> {
        Ok(match self.dtype {
            DType::F32 => bytemuck::cast_slice(self.batch_f32(i)?),
            DType::U8 => self.batch_u8(i)?,
        })
    }
    /// Batch index and row within it of global row `row`.
    pub fn locate(&self, row: usize) -> Result<(usize, usize)> {
        ensure!(
            row < self.len(),
            "{}: row {row} out of range ({} rows)",
            self.path.display(),
            self.len()
        );
        let b = self.starts.partition_point(|&s| s <= row) - 1;
        Ok((b, row - self.starts[b]))
    }
    pub fn id(&self, row: usize) -> Result<u64> {
        let (b, r) = self.locate(row)?;
        Ok(self.batch_ids(b)?[r])
    }
    /// Float payload of row `row` (zero-copy).
    pub fn row_f32(&self, row: usize) -> Result<&[f32]> {
        let (b, r) = self.locate(row)?;
        let w = self.width();
        Ok(&self.batch_f32(b)?[r * w..(r + 1) * w])
    }
    /// Byte payload of row `row` (zero-copy).
    pub fn row_u8(&self, row: usize) -> Result<&[u8]> {
        let (b, r) = self.locate(row)?;
        let w = self.width();
        Ok(&self.batch_u8(b)?[r * w..(r + 1) * w])
    }
    /// All ids in row order.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.batches.len() {
            out.extend_from_slice(self.batch_ids(i)?);
        }
        Ok(out)
    }
    /// Address range of the mapping, for zero-copy checks.
    pub fn mapped_range(&self) -> std::ops::Range<usize> {
        let start = self._mmap.as_ptr() as usize;
        start..start + self._mmap.len()
    }
}

fn ids_of(batch: &RecordBatch) -> Result<&[u64]> {
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .context("column 'id' is not uint64")?;
    Ok(ids.values())
}

/// Lets `bytes::Bytes` (and so an Arrow `Buffer`) own a shared memory mapping.
struct MmapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MmapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Checks a record batch block (`meta_len` bytes of encapsulated message, then `body_len`
/// bytes of body) before arrow's decoder reads it: the decoder slices every buffer the
/// message declares without checking that it lies inside the body, and panics on a
/// damaged file where it should fail.
fn check_batch_message(block: &[u8], meta_len: usize, body_len: usize) -> Result<()> {
    let meta = &block[..meta_len];
    // The encapsulated message: a 0xFFFFFFFF continuation marker (absent before Arrow
    // 0.15), its flatbuffer's length as i32, the flatbuffer.
    let prefix = if meta.starts_with(&[0xff; 4]) { 8 } else { 4 };
    ensure!(
        meta.len() >= prefix,
        "message header of {} bytes",
        meta.len()
    );
    let declared = i32::from_le_bytes(meta[prefix - 4..prefix].try_into()?);
    let message = usize::try_from(declared)
        .ok()
        .and_then(|n| meta.get(prefix..prefix.checked_add(n)?))
        .with_context(|| {
            format!(
                "message length {declared} does not fit its {} bytes",
                meta.len()
            )
        })?;
    let message = arrow::ipc::root_as_message(message).map_err(|e| anyhow!("message: {e}"))?;
    let batch = message
        .header_as_record_batch()
        .context("the block holds no record batch message")?;
    ensure!(batch.length() >= 0, "negative row count {}", batch.length());
    for node in batch.nodes().into_iter().flatten() {
        ensure!(
            node.length() >= 0 && node.null_count() >= 0 && node.null_count() <= node.length(),
            "array of {} rows with {} nulls",
            node.length(),
            node.null_count()
        );
    }
    for b in batch.buffers().into_iter().flatten() {
        let end = usize::try_from(b.offset())
            .ok()
            .zip(usize::try_from(b.length()).ok())
            .and_then(|(o, l)| o.checked_add(l));
        ensure!(
            end.is_some_and(|end| end <= body_len),
            "a buffer at body offset {} of {} bytes lies outside the {body_len}-byte body",
            b.offset(),
            b.length()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any one damaged byte of a tensor file is an error or a readable file, never a panic
    /// (arrow's decoder once panicked on buffer offsets past the body).
    #[test]
    fn no_damaged_byte_panics() {
        let dir = scratch("flips");
        let path = dir.join("c.arrow");
        let spec = TensorSpec::new(
            "features",
            &[2, 2, 2],
            "HWC",
            DType::F32,
            Producer::new("t", "0"),
        );
        let payload: Vec<f32> = (0..24).map(|v| v as f32).collect();
        write_tensor(&path, spec, &[1, 2, 3], Payload::F32(&payload)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.arrow");
        let refused = crate::testing::each_damaged_byte(&bytes, &bad, |_| {
            match TensorFile::open(&bad, "features") {
                Err(_) => true,
                Ok(f) => (0..f.len()).any(|r| f.row_f32(r).is_err()) || f.ids().is_err(),
            }
        });
        // Flips in the batches' bytes (ids, payload: the checksum) and in the footer's
        // structure are refused; many others land in padding, in the stream head's copy of
        // the schema (readers use the footer's) or in free-text metadata.
        assert!(refused * 3 >= bytes.len(), "{refused} of {}", bytes.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("remind-tensor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `spec`'s rows the way writers did before #17: no extension metadata on
    /// `data`, uint8 payloads as `FixedSizeBinary`.
    fn write_old_layout(path: &Path, spec: &TensorSpec, ids: &[u64], payload: Payload<'_>) {
        let w = spec.width() as i32;
        let (ty, data, bytes): (DataType, ArrayRef, Vec<u8>) = match payload {
            Payload::F32(v) => {
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                let values = Arc::new(Float32Array::from(v.to_vec()));
                (
                    DataType::FixedSizeList(item.clone(), w),
                    Arc::new(FixedSizeListArray::try_new(item, w, values, None).unwrap()),
                    bytemuck::cast_slice(v).to_vec(),
                )
            }
            Payload::U8(v) => (
                DataType::FixedSizeBinary(w),
                Arc::new(
                    FixedSizeBinaryArray::try_new(w, Buffer::from_slice_ref(v), None).unwrap(),
                ),
                v.to_vec(),
            ),
        };
        let mut meta = spec.metadata().unwrap();
        meta.insert(super::super::schema::KIND_KEY.into(), spec.kind.clone());
        meta.insert(super::super::schema::VERSION_KEY.into(), "1".into());
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            vec![
                Field::new("id", DataType::UInt64, false),
                Field::new("data", ty, false),
            ],
            meta,
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt64Array::from(ids.to_vec())), data],
        )
        .unwrap();
        let mut crc = crc32fast::Hasher::new();
        crc.update(bytemuck::cast_slice(ids));
        crc.update(&bytes);
        let mut writer = FileWriter::try_new(File::create(path).unwrap(), &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.write_metadata(ROWS_KEY, ids.len().to_string());
        writer.write_metadata(CRC_KEY, crc.finalize().to_string());
        writer.finish().unwrap();
    }

    /// Files written before the tensor type (#17) open, zero-copy, with the checksum a new
    /// file of the same rows has; new files carry `arrow.fixed_shape_tensor` with the shape.
    #[test]
    fn old_layout_files_still_open_zero_copy_with_the_same_checksum() {
        let dir = scratch("old-layout");
        let producer = Producer::new("t", "0");
        let ids = [3u64, 5, 9];
        let codes: Vec<u8> = (0..ids.len() * 8).map(|i| (i * 13 % 256) as u8).collect();
        let feats: Vec<f32> = (0..ids.len() * 8).map(|i| i as f32 * 0.5).collect();
        let cases = [
            (
                TensorSpec::new("codes", &[2, 2, 2], "HWM", DType::U8, producer.clone())
                    .with("remind.codebook_hash", "abc"),
                Payload::U8(&codes),
            ),
            (
                TensorSpec::new("features", &[2, 2, 2], "HWC", DType::F32, producer.clone()),
                Payload::F32(&feats),
            ),
        ];
        for (spec, payload) in cases {
            let kind = spec.kind.clone();
            let old = dir.join(format!("old-{kind}.arrow"));
            let new = dir.join(format!("new-{kind}.arrow"));
            fn again<'a>(p: &Payload<'a>) -> Payload<'a> {
                match p {
                    Payload::F32(v) => Payload::F32(v),
                    Payload::U8(v) => Payload::U8(v),
                }
            }
            write_old_layout(&old, &spec, &ids, again(&payload));
            write_tensor(&new, spec.clone(), &ids, again(&payload)).unwrap();
            let (a, b) = (
                TensorFile::open(&old, &kind).unwrap(),
                TensorFile::open(&new, &kind).unwrap(),
            );
            assert_eq!(a.checksum().unwrap(), b.checksum().unwrap(), "{kind}");
            assert_eq!(a.shape(), &[2, 2, 2]);
            assert_eq!(a.ids().unwrap(), ids);
            for f in [&a, &b] {
                let row = match f.dtype() {
                    DType::U8 => {
                        assert_eq!(f.row_u8(1).unwrap(), &codes[8..16]);
                        f.row_u8(1).unwrap().as_ptr() as usize
                    }
                    DType::F32 => {
                        assert_eq!(f.row_f32(1).unwrap(), &feats[8..16]);
                        f.row_f32(1).unwrap().as_ptr() as usize
                    }
                };
                assert!(f.mapped_range().contains(&row), "{kind}: payload copied");
            }
            assert!(a.schema().field(1).metadata().is_empty());
            let field = b.schema().field(1);
            let item = if kind == "codes" {
                DataType::UInt8
            } else {
                DataType::Float32
            };
            assert!(
                matches!(field.data_type(), DataType::FixedSizeList(f, 8) if f.data_type() == &item),
                "{kind}: {field:?}"
            );
            let m = field.metadata();
            assert_eq!(m["ARROW:extension:name"], "arrow.fixed_shape_tensor");
            let ext: serde_json::Value =
                serde_json::from_str(&m["ARROW:extension:metadata"]).unwrap();
            assert_eq!(ext["shape"], serde_json::json!([2, 2, 2]));
            let names = if kind == "codes" {
                ["H", "W", "M"]
            } else {
                ["H", "W", "C"]
            };
            assert_eq!(ext["dim_names"], serde_json::json!(names));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A tensor type whose shape contradicts remind.shape is refused, naming both.
    #[test]
    fn a_tensor_type_of_another_shape_is_refused() {
        let dir = scratch("ext-shape");
        let path = dir.join("x.arrow");
        let spec = TensorSpec::new(
            "features",
            &[1, 2],
            "HW",
            DType::F32,
            Producer::new("t", "0"),
        );
        write_tensor(&path, spec, &[1], Payload::F32(&[1.0, 2.0])).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Both copies of the schema (stream head and footer) say [2, 1] instead.
        let (from, to) = (br#""shape":[1,2]"#, br#""shape":[2,1]"#);
        let mut bad = bytes.clone();
        let mut at = 0;
        while let Some(k) = bad[at..].windows(from.len()).position(|w| w == from) {
            bad[at + k..at + k + from.len()].copy_from_slice(to);
            at += k + from.len();
        }
        assert!(at > 0, "no tensor shape in the file");
        std::fs::write(&path, &bad).unwrap();
        let err = match TensorFile::open(&path, "features") {
            Ok(_) => panic!("a contradicting tensor shape was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("[1, 2]") && err.contains("[2, 1]"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A shape whose product wraps around 2^64 to the payload width is refused on open.
    /// (Release builds only: a debug build's writer panics on the overflow itself.)
    #[cfg(not(debug_assertions))]
    #[test]
    fn shapes_whose_product_wraps_are_refused() {
        let dir = std::env::temp_dir().join(format!("remind-shape-wrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.arrow");
        // 2 x (2^63 + 1) = 2^64 + 2, which wraps to 2: the width of the payload.
        let spec = TensorSpec::new(
            "features",
            &[2, (1usize << 63) + 1],
            "HW",
            DType::F32,
            Producer::new("t", "0"),
        );
        write_tensor(&path, spec, &[1], Payload::F32(&[1.0, 2.0])).unwrap();
        let err = match TensorFile::open(&path, "features") {
            Ok(_) => panic!("a wrapped shape was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("field 'remind.shape'") && err.contains("product"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
