//! Artifact schemas, parsed from the YAML files of the repository's `schemas/` folder
//! (embedded at build time, so binaries do not depend on the working directory).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use arrow::datatypes::{DataType, Field, Schema};
use serde::Deserialize;

/// Metadata key naming the artifact kind.
pub const KIND_KEY: &str = "remind.kind";
/// Metadata key holding the schema version the writer used.
pub const VERSION_KEY: &str = "remind.schema_version";

/// Each kind with its `schemas/<kind>.yaml`.
macro_rules! schema_files {
    ($($kind:literal),* $(,)?) => {
        &[$(($kind, include_str!(concat!("../../../../schemas/", $kind, ".yaml")))),*]
    };
}

const SCHEMA_FILES: &[(&str, &str)] = schema_files![
    "features",
    "codes",
    "codebook",
    "replay_buffer",
    "question_features",
    "questions",
    "vocabulary",
    "labels",
    "predictions",
    "metrics",
    "word_vectors",
    "images",
    "probabilities",
    "ids",
];

/// On-disk format of an artifact kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Format {
    #[serde(rename = "arrow-ipc")]
    ArrowIpc,
    #[serde(rename = "parquet")]
    Parquet,
}

/// One column of an artifact kind.
#[derive(Debug, Clone, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// The schema of one artifact kind, as written in `schemas/<kind>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSchema {
    pub kind: String,
    pub format: Format,
    pub version: u32,
    pub description: String,
    pub columns: Vec<ColumnSpec>,
    /// Columns a writer may add after `columns` (in this order, any subset); a reader that
    /// needs one asks for it and names it when it is missing.
    #[serde(default)]
    pub optional_columns: Vec<ColumnSpec>,
    pub metadata: Vec<String>,
    /// Value rules (`schemas/README.md`, "Value rules"): checked on read of Parquet tables
    /// by [`super::values::check`], or naming the function that checks them.
    #[serde(default)]
    pub values: Vec<super::values::ValueRule>,
}

fn registry() -> &'static HashMap<String, Arc<ArtifactSchema>> {
    static REGISTRY: OnceLock<HashMap<String, Arc<ArtifactSchema>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        SCHEMA_FILES
            .iter()
            .map(|(name, text)| {
                // The schema files are part of the build; a malformed one is a build defect
                // caught by the unit tests, never user input.
                let schema: ArtifactSchema = serde_yaml::from_str(text)
                    .unwrap_or_else(|e| panic!("schemas/{name}.yaml is malformed: {e}"));
                assert_eq!(schema.kind, *name, "schemas/{name}.yaml names another kind");
                (schema.kind.clone(), Arc::new(schema))
            })
            .collect()
    })
}

/// The schema of `kind`; fails for a kind that `schemas/` does not define.
pub fn schema_of(kind: &str) -> Result<Arc<ArtifactSchema>> {
    registry().get(kind).cloned().ok_or_else(|| {
        let mut known: Vec<_> = registry().keys().cloned().collect();
        known.sort();
        anyhow!(
            "unknown artifact kind '{kind}' (known: {})",
            known.join(", ")
        )
    })
}

/// Every artifact kind, sorted by name.
pub fn all_schemas() -> Vec<Arc<ArtifactSchema>> {
    let mut all: Vec<_> = registry().values().cloned().collect();
    all.sort_by(|a, b| a.kind.cmp(&b.kind));
    all
}

/// Field metadata key naming an Arrow extension type (Arrow's columnar format spec).
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Field metadata key holding an Arrow extension type's parameters.
pub const EXTENSION_METADATA_KEY: &str = "ARROW:extension:metadata";
/// Arrow's canonical extension type for one dense tensor per row.
pub const FIXED_SHAPE_TENSOR: &str = "arrow.fixed_shape_tensor";

/// Whether a schema type name is a dense tensor per row (`fixed_shape_tensor<...>`).
pub fn is_tensor_type(ty: &str) -> bool {
    ty.starts_with("fixed_shape_tensor<")
}

/// Arrow type of a schema type name; `width` sizes the fixed-size payload types. A
/// `fixed_shape_tensor<T>` is stored as `FixedSizeList<T>[width]` (the extension type's
/// storage; its name and shape go into the field's metadata, [`tensor_field_metadata`]).
pub fn arrow_type(ty: &str, width: Option<usize>) -> Result<DataType> {
    let fixed = |what: &str| -> Result<i32> {
        let w = width.ok_or_else(|| anyhow!("{what} needs a width (from remind.shape)"))?;
        i32::try_from(w).map_err(|_| anyhow!("{what} width {w} is too large for Arrow"))
    };
    Ok(match ty {
        "uint64" => DataType::UInt64,
        "int64" => DataType::Int64,
        "int32" => DataType::Int32,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" => DataType::Utf8,
        "bool" => DataType::Boolean,
        "list<int32>" => DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
        "fixed_shape_tensor<float32>" => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            fixed(ty)?,
        ),
        "fixed_shape_tensor<uint8>" => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::UInt8, false)),
            fixed(ty)?,
        ),
        other => bail!("unknown schema type '{other}'"),
    })
}

/// The field metadata that makes a `FixedSizeList` column an `arrow.fixed_shape_tensor` of
/// `shape` (per row): the extension name and `{"shape":[...]}`, with `dim_names` when given
/// (one per dimension), as Arrow's canonical extension types specify.
pub fn tensor_field_metadata(
    shape: &[usize],
    dim_names: Option<&[String]>,
) -> Result<HashMap<String, String>> {
    let mut ext = serde_json::json!({ "shape": shape });
    if let Some(names) = dim_names {
        if names.len() != shape.len() {
            bail!(
                "dim_names {names:?} do not name the {} dimensions of {shape:?}",
                shape.len()
            );
        }
        ext["dim_names"] = serde_json::json!(names);
    }
    Ok(HashMap::from([
        (
            EXTENSION_NAME_KEY.to_string(),
            FIXED_SHAPE_TENSOR.to_string(),
        ),
        (EXTENSION_METADATA_KEY.to_string(), ext.to_string()),
    ]))
}

/// The per-row shape an `arrow.fixed_shape_tensor` field declares: `None` for a field
/// without extension metadata (files written before the extension type was used); an
/// error for another extension type or metadata that is not the spec's JSON.
pub fn tensor_field_shape(path: &Path, field: &Field) -> Result<Option<Vec<usize>>> {
    let p = path.display();
    let meta = field.metadata();
    let Some(name) = meta.get(EXTENSION_NAME_KEY) else {
        return Ok(None);
    };
    if name != FIXED_SHAPE_TENSOR {
        bail!(
            "{p}: column '{}': expected extension type '{FIXED_SHAPE_TENSOR}', found '{name}'",
            field.name()
        );
    }
    #[derive(Deserialize)]
    struct Ext {
        shape: Vec<usize>,
    }
    let raw = meta
        .get(EXTENSION_METADATA_KEY)
        .map(String::as_str)
        .unwrap_or("");
    let ext: Ext = serde_json::from_str(raw).with_context(|| {
        format!(
            "{p}: column '{}': metadata '{EXTENSION_METADATA_KEY}': expected JSON with a \
             'shape' list, found '{raw}'",
            field.name()
        )
    })?;
    Ok(Some(ext.shape))
}

impl ArtifactSchema {
    /// The Arrow schema of a tensor artifact of this kind whose rows are tensors of `shape`:
    /// [`arrow_schema`](Self::arrow_schema) with every `fixed_shape_tensor` column
    /// annotated as Arrow's canonical `arrow.fixed_shape_tensor` extension type.
    pub fn tensor_schema(
        &self,
        shape: &[usize],
        dim_names: Option<&[String]>,
        metadata: HashMap<String, String>,
    ) -> Result<Schema> {
        // Sizes are checked on read (a product that wraps is refused there, issue #12).
        let width: usize = shape.iter().product();
        let plain = self.arrow_schema(Some(width), metadata)?;
        let ext = tensor_field_metadata(shape, dim_names)?;
        let fields: Vec<Field> = plain
            .fields()
            .iter()
            .map(|f| {
                let tensor = self
                    .columns
                    .iter()
                    .any(|c| c.name == *f.name() && is_tensor_type(&c.ty));
                let f = f.as_ref().clone();
                if tensor {
                    f.with_metadata(ext.clone())
                } else {
                    f
                }
            })
            .collect();
        Ok(Schema::new_with_metadata(fields, plain.metadata().clone()))
    }

    /// The Arrow schema a writer of this kind produces, with `metadata` stamped in
    /// (kind and version added here).
    pub fn arrow_schema(
        &self,
        width: Option<usize>,
        metadata: HashMap<String, String>,
    ) -> Result<Schema> {
        self.arrow_schema_with(width, &[], metadata)
    }

    /// [`arrow_schema`](Self::arrow_schema) with the optional columns `optional` appended
    /// (each must be one of the kind's `optional_columns`).
    pub fn arrow_schema_with(
        &self,
        width: Option<usize>,
        optional: &[&str],
        mut metadata: HashMap<String, String>,
    ) -> Result<Schema> {
        let mut specs: Vec<&ColumnSpec> = self.columns.iter().collect();
        for name in optional {
            let spec = self
                .optional_columns
                .iter()
                .find(|c| c.name == *name)
                .ok_or_else(|| anyhow!("kind '{}' has no optional column '{name}'", self.kind))?;
            specs.push(spec);
        }
        let fields = specs
            .iter()
            .map(|c| Ok(Field::new(&c.name, arrow_type(&c.ty, width)?, false)))
            .collect::<Result<Vec<_>>>()?;
        for key in &self.metadata {
            if !metadata.contains_key(key) {
                bail!(
                    "writer of '{}' did not provide metadata key '{key}'",
                    self.kind
                );
            }
        }
        metadata.insert(KIND_KEY.into(), self.kind.clone());
        metadata.insert(VERSION_KEY.into(), self.version.to_string());
        Ok(Schema::new_with_metadata(fields, metadata))
    }

    /// Checks a schema read from `path` against this kind: kind, version, columns and their
    /// types, required metadata. `width` is the payload width the metadata implies.
    pub fn validate(&self, path: &Path, schema: &Schema, width: Option<usize>) -> Result<()> {
        let p = path.display();
        let meta = schema.metadata();
        let found_kind = meta
            .get(KIND_KEY)
            .map(String::as_str)
            .unwrap_or("<missing>");
        if found_kind != self.kind {
            let hint = if meta.contains_key(KIND_KEY) {
                ""
            } else {
                " (the file carries none of this project's metadata: a tool that rewrote it \
                 dropped it, as Polars' write_parquet does; carry it over from the original, \
                 e.g. with pyarrow: t.replace_schema_metadata(pq.read_schema(original).metadata))"
            };
            bail!(
                "{p}: field '{KIND_KEY}': expected '{}', found '{found_kind}'{hint}",
                self.kind
            );
        }
        let found_version = meta
            .get(VERSION_KEY)
            .map(String::as_str)
            .unwrap_or("<missing>");
        if found_version != self.version.to_string() {
            bail!(
                "{p}: field '{VERSION_KEY}': expected '{}', found '{found_version}'",
                self.version
            );
        }
        for key in &self.metadata {
            if !meta.contains_key(key) {
                bail!("{p}: metadata '{key}': expected present, found missing");
            }
        }
        for spec in &self.columns {
            let expected = arrow_type(&spec.ty, width)?;
            let field = schema.field_with_name(&spec.name).map_err(|_| {
                anyhow!(
                    "{p}: column '{}': expected {expected}, found no such column",
                    spec.name
                )
            })?;
            if !same_type(field.data_type(), &expected) {
                bail!(
                    "{p}: column '{}': expected {expected}, found {}",
                    spec.name,
                    field.data_type()
                );
            }
        }
        for spec in &self.optional_columns {
            let Ok(field) = schema.field_with_name(&spec.name) else {
                continue;
            };
            let expected = arrow_type(&spec.ty, width)?;
            if !same_type(field.data_type(), &expected) {
                bail!(
                    "{p}: column '{}': expected {expected}, found {}",
                    spec.name,
                    field.data_type()
                );
            }
        }
        Ok(())
    }
}

/// Type equality that ignores child field names and nullability (writers differ there).
/// A `FixedSizeBinary[n]` stands for a `FixedSizeList<uint8>[n]`: the layout of uint8
/// tensors (codes, replay buffers) before they became `arrow.fixed_shape_tensor`.
fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::FixedSizeBinary(n), DataType::FixedSizeList(b, m)) => {
            n == m && b.data_type() == &DataType::UInt8
        }
        (DataType::List(a), DataType::List(b)) | (DataType::LargeList(a), DataType::List(b)) => {
            same_type(a.data_type(), b.data_type())
        }
        (DataType::FixedSizeList(a, n), DataType::FixedSizeList(b, m)) => {
            n == m && same_type(a.data_type(), b.data_type())
        }
        (DataType::LargeUtf8 | DataType::Utf8View, DataType::Utf8) => true,
        _ => found == expected,
    }
}

/// Key-value metadata as Arrow schemas and IPC footers hold it.
pub trait MetaMap {
    fn get_meta(&self, key: &str) -> Option<&str>;
}

impl MetaMap for HashMap<String, String> {
    fn get_meta(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl MetaMap for arrow::datatypes::Metadata {
    fn get_meta(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Reads a metadata value or fails naming the file and key.
pub fn require_meta<'a, M: MetaMap + ?Sized>(
    path: &Path,
    meta: &'a M,
    key: &str,
) -> Result<&'a str> {
    meta.get_meta(key).with_context(|| {
        format!(
            "{}: metadata '{key}': expected present, found missing",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses_and_builds() {
        for s in all_schemas() {
            let mut meta = HashMap::new();
            for k in &s.metadata {
                meta.insert(k.clone(), "x".into());
            }
            let arrow = s.arrow_schema(Some(8), meta).unwrap();
            s.validate(Path::new("mem"), &arrow, Some(8)).unwrap();
        }
        assert!(schema_of("nope").is_err());
    }

    #[test]
    fn validation_names_file_field_expected_found() {
        let s = schema_of("features").unwrap();
        let mut meta = HashMap::new();
        for k in &s.metadata {
            meta.insert(k.clone(), "x".into());
        }
        let arrow = s.arrow_schema(Some(4), meta).unwrap();
        let err = s
            .validate(Path::new("f.arrow"), &arrow, Some(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.arrow") && err.contains("'data'") && err.contains("found"),
            "{err}"
        );
        let codes = schema_of("codes").unwrap();
        let err = codes
            .validate(Path::new("f.arrow"), &arrow, Some(4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 'codes', found 'features'"), "{err}");
    }
}
