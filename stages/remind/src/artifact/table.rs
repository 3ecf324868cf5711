//! Tabular artifacts (questions, labels, predictions, metrics): Parquet files whose Arrow
//! schema carries the artifact kind, validated against `schemas/` on read. The `remind.*`
//! metadata is written twice: in the embedded Arrow schema (`ARROW:schema`) and as the
//! file's key-value metadata, where DuckDB and Polars read it. Readers take either (files
//! written before #17 have only the first).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, ensure, Context, Result};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::atomic::AtomicFile;
use super::content::{table_crc, TABLE_CRC_KEY};
use super::schema::schema_of;
use super::tensor::{Producer, PRODUCER_KEY};

/// `batch` with every column of the schema in the type the schema names: Polars writes
/// strings as `large_string` and lists as `large_list`, DuckDB may write string views, which
/// the schema accepts ([`super::schema::ArtifactSchema::validate`]) and readers take as the plain types.
fn narrow_types(
    def: &super::schema::ArtifactSchema,
    path: &Path,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut changed = false;
    for spec in def.columns.iter().chain(&def.optional_columns) {
        let Ok(i) = schema.index_of(&spec.name) else {
            continue;
        };
        // Only the types of tables; tensor columns (a width from metadata) are not here.
        let Ok(expected) = super::schema::arrow_type(&spec.ty, None) else {
            continue;
        };
        if fields[i].data_type() == &expected {
            continue;
        }
        columns[i] = arrow::compute::cast(&columns[i], &expected).map_err(|e| {
            anyhow!(
                "{}: column '{}': cannot read {} as {expected}: {e}",
                path.display(),
                spec.name,
                fields[i].data_type()
            )
        })?;
        fields[i] = Arc::new(fields[i].as_ref().clone().with_data_type(expected));
        changed = true;
    }
    if !changed {
        return Ok(batch);
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Writes one Parquet artifact of `kind` from `columns` (in schema order) atomically.
pub fn write_table(
    path: &Path,
    kind: &str,
    producer: &Producer,
    columns: Vec<ArrayRef>,
    extra_meta: HashMap<String, String>,
) -> Result<PathBuf> {
    write_table_with(path, kind, producer, columns, Vec::new(), extra_meta)
}

/// [`write_table`] with optional columns of the kind (`optional_columns` in its schema)
/// appended, by name.
pub fn write_table_with(
    path: &Path,
    kind: &str,
    producer: &Producer,
    mut columns: Vec<ArrayRef>,
    optional: Vec<(&str, ArrayRef)>,
    extra_meta: HashMap<String, String>,
) -> Result<PathBuf> {
    let def = schema_of(kind)?;
    let mut meta = extra_meta;
    meta.insert(PRODUCER_KEY.into(), serde_json::to_string(producer)?);
    let names: Vec<&str> = optional.iter().map(|(n, _)| *n).collect();
    let schema = Arc::new(def.arrow_schema_with(None, &names, meta)?);
    columns.extend(optional.into_iter().map(|(_, c)| c));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .with_context(|| format!("{}: columns do not fit the '{kind}' schema", path.display()))?;
    // The content checksum (content.rs), verified by every read.
    let mut meta = schema.metadata().clone();
    meta.insert(TABLE_CRC_KEY.to_string(), table_crc(&batch)?.to_string());
    let schema = Arc::new(schema.as_ref().clone().with_metadata(meta));
    let batch = batch.with_schema(schema.clone())?;
    let mut atomic = AtomicFile::create(path)?;
    let file = atomic.take_file()?;
    // The schema's metadata (remind.kind, remind.producer, ...) also as the Parquet file's
    // own key-value metadata: tools that do not decode the embedded Arrow schema (DuckDB's
    // parquet_kv_metadata, Polars' read_parquet_metadata) see it there.
    let mut kv: Vec<KeyValue> = schema
        .metadata()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(kv))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .with_context(|| format!("cannot start Parquet file {}", path.display()))?;
    writer
        .write(&batch)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let file = writer
        .into_inner()
        .with_context(|| format!("cannot finish {}", path.display()))?;
    atomic.commit(file)
}

/// A Parquet artifact read whole into memory (tables are small next to tensors).
pub struct Table {
    pub path: PathBuf,
    pub batch: RecordBatch,
}

impl Table {
    /// Reads and validates `path` as an artifact of `kind`.
    pub fn read(path: &Path, kind: &str) -> Result<Self> {
        // The Parquet decoder asserts on some damaged values instead of failing.
        super::guard::decode_guarded(&path.display().to_string(), || {
            Self::read_unguarded(path, kind)
        })
    }

    fn read_unguarded(path: &Path, kind: &str) -> Result<Self> {
        let p = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| anyhow!("{p}: not a readable Parquet file: {e}"))?;
        let schema: Arc<Schema> = builder.schema().clone();
        // Written by this project's writer (the Rust parquet crate), not rewritten by
        // another tool (pyarrow, Polars, DuckDB keep the schema's metadata, so an edited
        // table still carries the checksum of the values before the edit).
        let ours = builder
            .metadata()
            .file_metadata()
            .created_by()
            .is_some_and(|by| by.starts_with("parquet-rs"));
        let def = schema_of(kind)?;
        def.validate(path, &schema, None)?;
        let reader = builder.build().map_err(|e| anyhow!("{p}: {e}"))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{p}: corrupt Parquet data: {e}"))?;
        let batch = narrow_types(&def, path, concat_batches(&schema, &batches)?)?;
        // Files written before the checksum have none; a table another tool rewrote is
        // checked by its values alone (below).
        if let Some(expected) = schema.metadata().get(TABLE_CRC_KEY).filter(|_| ours) {
            let found = table_crc(&batch)?.to_string();
            ensure!(
                *expected == found,
                "{p}: field '{TABLE_CRC_KEY}': expected checksum {expected}, found {found} \
                 (the file is corrupt: its values are not those written)"
            );
        }
        super::values::check(&def, path, &batch)?;
        Ok(Self {
            path: path.to_path_buf(),
            batch,
        })
    }

    /// Metadata key `key` of the Parquet file at `path`, without reading its rows.
    pub fn metadata_value(path: &Path, key: &str) -> Result<Option<String>> {
        let p = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| anyhow!("{p}: not a readable Parquet file: {e}"))?;
        Ok(builder.schema().metadata().get(key).cloned())
    }

    /// Reads `path` as whatever artifact kind its metadata names, validated against it.
    pub fn read_any(path: &Path) -> Result<Self> {
        let p = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| anyhow!("{p}: not a readable Parquet file: {e}"))?;
        let kind = super::schema::require_meta(
            path,
            builder.schema().metadata(),
            super::schema::KIND_KEY,
        )?
        .to_string();
        Self::read(path, &kind)
    }

    pub fn kind(&self) -> &str {
        self.batch
            .schema_ref()
            .metadata()
            .get(super::schema::KIND_KEY)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Column `name` downcast to the Arrow array type `A`.
    pub fn column<A: 'static>(&self, name: &str) -> Result<&A> {
        let col = self
            .batch
            .column_by_name(name)
            .with_context(|| format!("{}: no column '{name}'", self.path.display()))?;
        col.as_any().downcast_ref::<A>().with_context(|| {
            format!(
                "{}: column '{name}' has type {}",
                self.path.display(),
                col.data_type()
            )
        })
    }

    pub fn producer(&self) -> Result<Producer> {
        let raw = self
            .batch
            .schema_ref()
            .metadata()
            .get(PRODUCER_KEY)
            .cloned()
            .unwrap_or_default();
        serde_json::from_str(&raw).with_context(|| {
            format!(
                "{}: field '{PRODUCER_KEY}' is not valid JSON",
                self.path.display()
            )
        })
    }

    /// Whether the table has column `name` (an optional column of its kind).
    pub fn has_column(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    /// Checks a column has no nulls (tables written by other tools may have them).
    pub fn require_non_null(&self, name: &str) -> Result<()> {
        let col = self
            .batch
            .column_by_name(name)
            .with_context(|| format!("{}: no column '{name}'", self.path.display()))?;
        ensure!(
            col.null_count() == 0,
            "{}: column '{name}' has {} null values",
            self.path.display(),
            col.null_count()
        );
        Ok(())
    }
}

/// The values of integer column `column` of any Parquet file (e.g. the ids of a split),
/// without schema-kind validation: split tables may come from other tools.
pub fn read_id_column(path: &Path, column: &str) -> Result<Vec<u64>> {
    use arrow::array::{Array, Int32Array, Int64Array, UInt32Array, UInt64Array};
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| anyhow!("{p}: not a readable Parquet file: {e}"))?;
    let reader = builder.build().map_err(|e| anyhow!("{p}: {e}"))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| anyhow!("{p}: corrupt Parquet data: {e}"))?;
        let col = batch
            .column_by_name(column)
            .with_context(|| format!("{p}: no column '{column}'"))?;
        ensure!(
            col.null_count() == 0,
            "{p}: column '{column}' has null values"
        );
        let any = col.as_any();
        if let Some(a) = any.downcast_ref::<UInt64Array>() {
            out.extend(a.values().iter().copied());
        } else if let Some(a) = any.downcast_ref::<Int64Array>() {
            for &v in a.values() {
                out.push(
                    u64::try_from(v)
                        .with_context(|| format!("{p}: column '{column}': negative id {v}"))?,
                );
            }
        } else if let Some(a) = any.downcast_ref::<UInt32Array>() {
            out.extend(a.values().iter().map(|&v| u64::from(v)));
        } else if let Some(a) = any.downcast_ref::<Int32Array>() {
            for &v in a.values() {
                out.push(
                    u64::try_from(v)
                        .with_context(|| format!("{p}: column '{column}': negative id {v}"))?,
                );
            }
        } else {
            anyhow::bail!(
                "{p}: column '{column}': expected an integer column, found {}",
                col.data_type()
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("remind-table-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Any one damaged byte of a table is refused, or reads back the values written (it
    /// fell in padding or in statistics): never other values, never a panic.
    #[test]
    fn no_damaged_byte_changes_the_values_read() {
        let dir = scratch("flips");
        let path = dir.join("t.parquet");
        write_ids(&path, (0..40u64).map(|i| i * 977).collect());
        let written = Table::read(&path, "ids").unwrap().batch;
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.parquet");
        let refused =
            crate::testing::each_damaged_byte(&bytes, &bad, |at| match Table::read(&bad, "ids") {
                Err(_) => true,
                Ok(t) => {
                    assert!(
                        t.batch.columns() == written.columns(),
                        "byte {at} damaged: other values read without an error"
                    );
                    false
                }
            });
        assert!(refused * 2 >= bytes.len(), "{refused} of {}", bytes.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An `ids` table of `ids` written at `path`.
    fn write_ids(path: &Path, ids: Vec<u64>) {
        let ids: ArrayRef = Arc::new(UInt64Array::from(ids));
        let producer = Producer::new("t", "0");
        write_table(path, "ids", &producer, vec![ids], HashMap::new()).unwrap();
    }

    /// Values changed by a rewrite that kept the checksum: refused when the file claims
    /// this project's writer made it (damage), read when another tool rewrote it (an
    /// edit, checked by the values' rules alone).
    #[test]
    fn the_checksum_binds_our_writer_only() {
        let dir = scratch("rewrite");
        let path = dir.join("t.parquet");
        write_ids(&path, vec![1, 2, 3]);
        let schema = Table::read(&path, "ids").unwrap().batch.schema();
        let edited: ArrayRef = Arc::new(UInt64Array::from(vec![1u64, 2, 4]));
        let batch = RecordBatch::try_new(schema.clone(), vec![edited]).unwrap();
        let rewrite = |created_by: Option<&str>| {
            let mut props = WriterProperties::builder();
            if let Some(by) = created_by {
                props = props.set_created_by(by.into());
            }
            let file = File::create(&path).unwrap();
            let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props.build())).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        };
        rewrite(None);
        let err = Table::read(&path, "ids").err().unwrap().to_string();
        assert!(err.contains("remind.crc32"), "{err}");
        rewrite(Some("parquet-cpp-arrow version 20.0.0"));
        assert_eq!(Table::read(&path, "ids").unwrap().num_rows(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The file's own key-value metadata holds the remind.* keys (what DuckDB and Polars
    /// read); a file with them only in the embedded Arrow schema (before #17) still reads.
    #[test]
    fn metadata_is_in_the_parquet_key_values_and_old_files_still_read() {
        let dir = scratch("kv");
        let producer = Producer::new("t", "beef");
        let ids: ArrayRef = Arc::new(UInt64Array::from(vec![1u64, 2, 3]));
        let new = dir.join("new.parquet");
        let extra = HashMap::from([("remind.note".to_string(), "x".to_string())]);
        write_table(&new, "ids", &producer, vec![ids.clone()], extra).unwrap();
        let reader = SerializedFileReader::new(File::open(&new).unwrap()).unwrap();
        let kv: HashMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["remind.kind"], "ids");
        assert_eq!(kv["remind.schema_version"], "1");
        assert_eq!(kv["remind.note"], "x");
        let stored: Producer = serde_json::from_str(&kv["remind.producer"]).unwrap();
        assert_eq!(stored.config_hash, "beef");
        assert!(kv.contains_key("ARROW:schema"));
        let t = Table::read(&new, "ids").unwrap();
        assert_eq!((t.num_rows(), t.kind()), (3, "ids"));
        assert_eq!(t.producer().unwrap().config_hash, "beef");

        // The layout of before: the keys in the Arrow schema only.
        let old = dir.join("old.parquet");
        let def = schema_of("ids").unwrap();
        let meta = HashMap::from([(
            PRODUCER_KEY.to_string(),
            serde_json::to_string(&producer).unwrap(),
        )]);
        let schema = Arc::new(def.arrow_schema(None, meta).unwrap());
        let batch = RecordBatch::try_new(schema.clone(), vec![ids]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&old).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let reader = SerializedFileReader::new(File::open(&old).unwrap()).unwrap();
        let keys: Vec<String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| kv.iter().map(|k| k.key.clone()).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["ARROW:schema"]);
        let t = Table::read_any(&old).unwrap();
        assert_eq!((t.num_rows(), t.kind()), (3, "ids"));
        assert_eq!(t.producer().unwrap().config_hash, "beef");
        assert_eq!(
            Table::metadata_value(&old, "remind.kind")
                .unwrap()
                .as_deref(),
            Some("ids")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
