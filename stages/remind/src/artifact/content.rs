//! A table's content checksum (`remind.crc32` of a Parquet artifact). Parquet pages carry
//! no checksum as the `parquet` crate writes them, and a damaged byte in a page can decode
//! to other, valid-looking values (a question id 73 read as 58274116272201): the checksum,
//! computed over the values themselves when the table is written and again when it is read,
//! catches that. The values are hashed in a canonical form (per column: its name; per row:
//! a validity byte, then the value's little-endian bytes, a string's length and bytes, a
//! list's length and items), so the physical layout the decoder chooses does not matter.
//! It is checked only on files this project's writer made (Parquet's `created_by`): a table
//! edited in pyarrow, Polars or DuckDB keeps the schema's metadata, checksum included, and
//! is checked by its values' rules alone.

use anyhow::{bail, Result};
use arrow::array::{
    Array, AsArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::DataType;

/// Metadata key of the checksum (the same key tensor artifacts use for theirs).
pub const TABLE_CRC_KEY: &str = "remind.crc32";

/// CRC-32 of `batch`'s column names and values in the canonical form above. Errors: a
/// column of a type the artifact schemas do not use.
pub fn table_crc(batch: &RecordBatch) -> Result<u32> {
    let mut h = crc32fast::Hasher::new();
    for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        h.update(field.name().as_bytes());
        hash_array(&mut h, column.as_ref())?;
    }
    Ok(h.finalize())
}

fn hash_array(h: &mut crc32fast::Hasher, a: &dyn Array) -> Result<()> {
    macro_rules! primitive {
        ($ty:ty) => {{
            let a = a
                .as_any()
                .downcast_ref::<$ty>()
                .expect("type checked above");
            for i in 0..a.len() {
                let valid = a.is_valid(i);
                h.update(&[u8::from(valid)]);
                if valid {
                    h.update(&a.value(i).to_le_bytes());
                }
            }
        }};
    }
    match a.data_type() {
        DataType::Int32 => primitive!(Int32Array),
        DataType::Int64 => primitive!(Int64Array),
        DataType::UInt8 => primitive!(UInt8Array),
        DataType::UInt32 => primitive!(UInt32Array),
        DataType::UInt64 => primitive!(UInt64Array),
        DataType::Float32 => primitive!(Float32Array),
        DataType::Float64 => primitive!(Float64Array),
        DataType::Boolean => {
            let a: &BooleanArray = a.as_boolean();
            for i in 0..a.len() {
                h.update(&[if a.is_null(i) {
                    0
                } else {
                    1 + u8::from(a.value(i))
                }]);
            }
        }
        DataType::Utf8 => {
            let a: &StringArray = a.as_string();
            for i in 0..a.len() {
                let valid = a.is_valid(i);
                h.update(&[u8::from(valid)]);
                if valid {
                    let v = a.value(i).as_bytes();
                    h.update(&(v.len() as u64).to_le_bytes());
                    h.update(v);
                }
            }
        }
        DataType::List(_) => {
            let a = a.as_list::<i32>();
            for i in 0..a.len() {
                let valid = a.is_valid(i);
                h.update(&[u8::from(valid)]);
                if valid {
                    let items = a.value(i);
                    h.update(&(items.len() as u64).to_le_bytes());
                    hash_array(h, items.as_ref())?;
                }
            }
        }
        other => bail!("no canonical checksum for a column of type {other}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, ListArray};
    use arrow::datatypes::Int32Type;
    use std::sync::Arc;

    fn batch(ids: Vec<u64>, names: Vec<Option<&str>>) -> RecordBatch {
        let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>(
            ids.iter().map(|&i| Some(vec![Some(i as i32), None])),
        );
        RecordBatch::try_from_iter([
            ("id", Arc::new(UInt64Array::from(ids)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("tokens", Arc::new(tokens) as ArrayRef),
        ])
        .unwrap()
    }

    /// Equal values hash equal however they are laid out (a slice of a larger array);
    /// any changed value, null or boundary between strings changes the checksum.
    #[test]
    fn the_checksum_follows_values_not_layout() {
        let a = batch(vec![1, 2, 3], vec![Some("ab"), None, Some("c")]);
        let wide = batch(
            vec![9, 1, 2, 3],
            vec![Some("x"), Some("ab"), None, Some("c")],
        );
        assert_eq!(
            table_crc(&a).unwrap(),
            table_crc(&wide.slice(1, 3)).unwrap()
        );
        for other in [
            batch(vec![1, 2, 4], vec![Some("ab"), None, Some("c")]),
            batch(vec![1, 2, 3], vec![Some("a"), Some("b"), Some("c")]),
            batch(vec![1, 2, 3], vec![Some("a"), None, Some("bc")]),
            batch(vec![1, 2, 3], vec![Some("ab"), Some(""), Some("c")]),
        ] {
            assert_ne!(table_crc(&a).unwrap(), table_crc(&other).unwrap());
        }
    }
}
