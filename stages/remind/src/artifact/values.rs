//! Value rules of artifact kinds (the `values:` list of `schemas/<kind>.yaml`), applied to
//! a Parquet table's rows by [`Table::read`](super::Table::read) after its schema is
//! validated. Each violation is an error naming the file, the column, the row (and its id
//! where the table has one), what was expected and what was found (issue #12).
//!
//! Rules that need another artifact or a memory-mapped payload are declared `checked_by`:
//! they name the function that enforces them and are not checked here.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type, UInt64Type};
use serde::Deserialize;

use super::schema::ArtifactSchema;

/// The kind of a value rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// No value appears twice (integer or utf8 columns).
    Unique,
    /// Integers within `min`, `max` (inclusive) and below the metadata value `below_meta`.
    Range,
    /// Strings among `values`.
    OneOf,
    /// Strings not empty.
    NonEmpty,
    /// Floats neither NaN nor infinite.
    Finite,
    /// Enforced elsewhere (`by`), described by `what`.
    CheckedBy,
}

/// One entry of a schema's `values:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRule {
    #[serde(default)]
    pub column: Option<String>,
    pub rule: RuleKind,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// Metadata key whose value is the exclusive upper bound (skipped when absent).
    #[serde(default)]
    pub below_meta: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub what: Option<String>,
    /// `module::function` (path under `src/`) that enforces a `checked_by` rule.
    #[serde(default)]
    pub by: Option<String>,
}

impl ValueRule {
    /// The schema types (as `schemas/` names them) this rule applies to.
    pub fn supported_types(&self) -> &'static [&'static str] {
        match self.rule {
            RuleKind::Unique => &["uint64", "int64", "int32", "utf8"],
            RuleKind::Range => &["uint64", "int64", "int32"],
            RuleKind::OneOf | RuleKind::NonEmpty => &["utf8"],
            RuleKind::Finite => &["float32", "float64"],
            RuleKind::CheckedBy => &[],
        }
    }
}

/// Integer values of a column, read by position.
enum Ints<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
    U64(&'a [u64]),
}

impl Ints<'_> {
    fn of(col: &ArrayRef) -> Option<Ints<'_>> {
        Some(match col.data_type() {
            DataType::Int32 => Ints::I32(col.as_primitive::<Int32Type>().values()),
            DataType::Int64 => Ints::I64(col.as_primitive::<Int64Type>().values()),
            DataType::UInt64 => Ints::U64(col.as_primitive::<UInt64Type>().values()),
            _ => return None,
        })
    }
    fn get(&self, r: usize) -> i128 {
        match self {
            Ints::I32(v) => i128::from(v[r]),
            Ints::I64(v) => i128::from(v[r]),
            Ints::U64(v) => i128::from(v[r]),
        }
    }
}

/// String values of a column, read by position.
fn strings<'a>(col: &'a ArrayRef) -> Option<Box<dyn Fn(usize) -> &'a str + 'a>> {
    match col.data_type() {
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            Some(Box::new(move |r| a.value(r)))
        }
        DataType::LargeUtf8 => {
            let a = col.as_string::<i64>();
            Some(Box::new(move |r| a.value(r)))
        }
        DataType::Utf8View => {
            let a = col.as_string_view();
            Some(Box::new(move |r| a.value(r)))
        }
        _ => None,
    }
}

/// How a value of `column` is named in messages: `question_id` 7 is "question id 7".
fn noun(column: &str) -> String {
    column.replace('_', " ")
}

/// The id column's name and its values as text, by row.
type IdNamer<'a> = (String, Box<dyn Fn(usize) -> String + 'a>);

/// Names rows: "row 12 (id 40)" when the table has an id column (the column of its first
/// `unique` rule), else "row 12".
struct RowNamer<'a> {
    id: Option<IdNamer<'a>>,
}

impl RowNamer<'_> {
    fn row(&self, r: usize) -> String {
        match &self.id {
            Some((name, value)) => format!("row {r} ({name} {})", value(r)),
            None => format!("row {r}"),
        }
    }
}

fn row_namer<'a>(rules: &[ValueRule], batch: &'a RecordBatch) -> RowNamer<'a> {
    let id = rules
        .iter()
        .filter(|r| r.rule == RuleKind::Unique)
        .filter_map(|r| r.column.as_deref())
        .find_map(|c| {
            let col = batch.column_by_name(c)?;
            if col.null_count() > 0 {
                return None;
            }
            let value: Box<dyn Fn(usize) -> String + 'a> = if let Some(ints) = Ints::of(col) {
                Box::new(move |r| ints.get(r).to_string())
            } else {
                let s = strings(col)?;
                Box::new(move |r| format!("'{}'", s(r)))
            };
            Some((noun(c), value))
        });
    RowNamer { id }
}

/// Applies the value rules of `schema` to `batch`, read from `path`. A rule on an optional
/// column that the table lacks is skipped; a required column is there (schema validation
/// ran first).
pub fn check(schema: &ArtifactSchema, path: &Path, batch: &RecordBatch) -> Result<()> {
    let p = path.display();
    let namer = row_namer(&schema.values, batch);
    let meta = batch.schema_ref().metadata();
    for rule in &schema.values {
        if rule.rule == RuleKind::CheckedBy {
            continue;
        }
        let Some(c) = rule.column.as_deref() else {
            bail!(
                "schema '{}': a {:?} rule names no column",
                schema.kind,
                rule.rule
            );
        };
        let Some(col) = batch.column_by_name(c) else {
            continue;
        };
        if col.null_count() > 0 {
            let r = (0..col.len()).find(|&r| col.is_null(r)).unwrap_or(0);
            bail!("{p}: column '{c}': row {r}: expected a value, found null");
        }
        let defect = || {
            format!(
                "schema '{}': rule {:?} does not apply to column '{c}' of type {}",
                schema.kind,
                rule.rule,
                col.data_type()
            )
        };
        match rule.rule {
            RuleKind::Unique => {
                let name = noun(c);
                if let Some(ints) = Ints::of(col) {
                    let mut first: HashMap<i128, usize> = HashMap::with_capacity(col.len());
                    for r in 0..col.len() {
                        let v = ints.get(r);
                        if let Some(f) = first.insert(v, r) {
                            bail!("{p}: column '{c}': {name} {v} appears twice (rows {f} and {r})");
                        }
                    }
                } else {
                    let s = strings(col).with_context(defect)?;
                    let mut first: HashMap<&str, usize> = HashMap::with_capacity(col.len());
                    for r in 0..col.len() {
                        let v = s(r);
                        if let Some(f) = first.insert(v, r) {
                            bail!(
                                "{p}: column '{c}': {name} '{v}' appears twice (rows {f} and {r})"
                            );
                        }
                    }
                }
            }
            RuleKind::Range => {
                let ints = Ints::of(col).with_context(defect)?;
                let lo = rule.min.map(i128::from);
                let mut hi = rule.max.map(i128::from);
                let mut bound_note = String::new();
                if let Some(key) = &rule.below_meta {
                    if let Some(raw) = meta.get(key) {
                        let bound: u64 = raw.trim().parse().with_context(|| {
                            format!("{p}: metadata {key} '{raw}' is not a count")
                        })?;
                        let bound = i128::from(bound);
                        hi = Some(hi.map_or(bound - 1, |h| h.min(bound - 1)));
                        bound_note = format!(" ({key} {bound})");
                    }
                }
                let (range, expected) = match (lo, hi) {
                    (Some(l), Some(h)) => (format!("{l}..{}", h + 1), format!("{l} to {h}")),
                    (Some(l), None) => (format!("{l}.."), format!("at least {l}")),
                    (None, Some(h)) => (format!("..{}", h + 1), format!("at most {h}")),
                    (None, None) => continue,
                };
                let name = noun(c);
                for r in 0..col.len() {
                    let v = ints.get(r);
                    if lo.is_some_and(|l| v < l) || hi.is_some_and(|h| v > h) {
                        bail!(
                            "{p}: column '{c}': {}: {name} {v} outside {range}: expected \
                             {expected}{bound_note}, found {v}",
                            namer.row(r)
                        );
                    }
                }
            }
            RuleKind::OneOf => {
                let s = strings(col).with_context(defect)?;
                let name = noun(c);
                for r in 0..col.len() {
                    let v = s(r);
                    if !rule.values.iter().any(|x| x == v) {
                        bail!(
                            "{p}: column '{c}': {}: unknown {name} '{v}': expected one of {}, \
                             found '{v}'",
                            namer.row(r),
                            rule.values.join(", ")
                        );
                    }
                }
            }
            RuleKind::NonEmpty => {
                let s = strings(col).with_context(defect)?;
                if let Some(r) = (0..col.len()).find(|&r| s(r).is_empty()) {
                    bail!(
                        "{p}: column '{c}': {}: expected a non-empty string, found ''",
                        namer.row(r)
                    );
                }
            }
            RuleKind::Finite => {
                let bad = match col.data_type() {
                    DataType::Float32 => col
                        .as_primitive::<Float32Type>()
                        .values()
                        .iter()
                        .position(|v| !v.is_finite())
                        .map(|r| (r, col.as_primitive::<Float32Type>().value(r).to_string())),
                    DataType::Float64 => col
                        .as_primitive::<Float64Type>()
                        .values()
                        .iter()
                        .position(|v| !v.is_finite())
                        .map(|r| (r, col.as_primitive::<Float64Type>().value(r).to_string())),
                    _ => bail!(defect()),
                };
                if let Some((r, v)) = bad {
                    bail!(
                        "{p}: column '{c}': {}: expected a finite number, found non-finite {v}",
                        namer.row(r)
                    );
                }
            }
            RuleKind::CheckedBy => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int32Array, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};

    use super::super::schema::{all_schemas, Format};
    use super::*;

    fn schema(values: &str, optional: &str) -> ArtifactSchema {
        let text = format!(
            "kind: t\nformat: parquet\nversion: 1\ndescription: t\ncolumns:\n  \
             - {{ name: id, type: uint64 }}\n  - {{ name: label, type: int64 }}\n  \
             - {{ name: split, type: utf8 }}\n  - {{ name: value, type: float64 }}\n\
             optional_columns:\n  - {{ name: frame, type: int32 }}\n\
             metadata: []\nvalues:\n{values}{optional}"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    fn batch(
        ids: Vec<u64>,
        labels: Vec<i64>,
        splits: Vec<&str>,
        values: Vec<f64>,
        frames: Option<Vec<i32>>,
        meta: &[(&str, &str)],
    ) -> RecordBatch {
        let mut fields = vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("label", DataType::Int64, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(Int64Array::from(labels)),
            Arc::new(StringArray::from(splits)),
            Arc::new(Float64Array::from(values)),
        ];
        if let Some(f) = frames {
            fields.push(Field::new("frame", DataType::Int32, false));
            cols.push(Arc::new(Int32Array::from(f)));
        }
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, meta)), cols).unwrap()
    }

    const RULES: &str = "  - { column: id, rule: unique }\n  \
        - { column: label, rule: range, min: 0, below_meta: remind.num_classes }\n  \
        - { column: split, rule: one_of, values: [train, val] }\n  \
        - { column: split, rule: non_empty }\n  \
        - { column: value, rule: finite }\n  \
        - { column: frame, rule: range, min: 0, max: 99 }\n  \
        - { rule: checked_by, what: x, by: artifact::values::check }\n";

    fn good() -> RecordBatch {
        batch(
            vec![5, 7, 9],
            vec![0, 2, 1],
            vec!["train", "val", "train"],
            vec![0.5, 1.0, -3.0],
            Some(vec![0, 1, 99]),
            &[("remind.num_classes", "3")],
        )
    }

    fn err(b: &RecordBatch) -> String {
        check(&schema(RULES, ""), Path::new("t.parquet"), b)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_rule_passes_on_good_rows() {
        check(&schema(RULES, ""), Path::new("t.parquet"), &good()).unwrap();
        // The upper bound is skipped without its metadata key.
        let b = batch(vec![1], vec![40], vec!["val"], vec![0.0], None, &[]);
        check(&schema(RULES, ""), Path::new("t.parquet"), &b).unwrap();
    }

    #[test]
    fn each_rule_fails_naming_file_column_row_expected_found() {
        let meta = [("remind.num_classes", "3")];
        let b = batch(
            vec![5, 7, 5],
            vec![0; 3],
            vec!["val"; 3],
            vec![0.0; 3],
            None,
            &meta,
        );
        assert_eq!(
            err(&b),
            "t.parquet: column 'id': id 5 appears twice (rows 0 and 2)"
        );
        let b = batch(
            vec![1, 2],
            vec![0, 3],
            vec!["val"; 2],
            vec![0.0; 2],
            None,
            &meta,
        );
        assert_eq!(
            err(&b),
            "t.parquet: column 'label': row 1 (id 2): label 3 outside 0..3: expected 0 to 2 \
             (remind.num_classes 3), found 3"
        );
        let b = batch(
            vec![1, 2],
            vec![-1, 0],
            vec!["val"; 2],
            vec![0.0; 2],
            None,
            &[],
        );
        assert_eq!(
            err(&b),
            "t.parquet: column 'label': row 0 (id 1): label -1 outside 0..: expected at least \
             0, found -1"
        );
        let b = batch(
            vec![1, 2],
            vec![0; 2],
            vec!["val", "test"],
            vec![0.0; 2],
            None,
            &meta,
        );
        assert_eq!(
            err(&b),
            "t.parquet: column 'split': row 1 (id 2): unknown split 'test': expected one of \
             train, val, found 'test'"
        );
        let b = batch(vec![1], vec![0], vec!["train"], vec![f64::NAN], None, &meta);
        assert_eq!(
            err(&b),
            "t.parquet: column 'value': row 0 (id 1): expected a finite number, found \
             non-finite NaN"
        );
        let b = batch(
            vec![1],
            vec![0],
            vec!["train"],
            vec![0.0],
            Some(vec![100]),
            &meta,
        );
        assert_eq!(
            err(&b),
            "t.parquet: column 'frame': row 0 (id 1): frame 100 outside 0..100: expected 0 to \
             99, found 100"
        );
        let b = batch(
            vec![1],
            vec![0],
            vec!["train"],
            vec![0.0],
            None,
            &[("remind.num_classes", "four")],
        );
        assert_eq!(
            err(&b),
            "t.parquet: metadata remind.num_classes 'four' is not a count"
        );
        let s = schema("  - { column: split, rule: non_empty }\n", "");
        let b = batch(vec![1], vec![0], vec![""], vec![0.0], None, &[]);
        assert_eq!(
            check(&s, Path::new("t.parquet"), &b)
                .unwrap_err()
                .to_string(),
            "t.parquet: column 'split': row 0: expected a non-empty string, found ''"
        );
        let s = schema("  - { column: split, rule: unique }\n", "");
        let b = batch(
            vec![1, 2],
            vec![0; 2],
            vec!["a", "a"],
            vec![0.0; 2],
            None,
            &[],
        );
        assert_eq!(
            check(&s, Path::new("t.parquet"), &b)
                .unwrap_err()
                .to_string(),
            "t.parquet: column 'split': split 'a' appears twice (rows 0 and 1)"
        );
    }

    #[test]
    fn nulls_are_named_and_optional_columns_absent_are_skipped() {
        let fields = vec![Field::new("id", DataType::UInt64, true)];
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![Arc::new(UInt64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        let s = schema("  - { column: id, rule: unique }\n", "");
        assert_eq!(
            check(&s, Path::new("t.parquet"), &b)
                .unwrap_err()
                .to_string(),
            "t.parquet: column 'id': row 1: expected a value, found null"
        );
        // `frame` (optional) is absent from good rows without it: its rule is skipped.
        let b = batch(vec![1], vec![0], vec!["val"], vec![0.0], None, &[]);
        check(&schema(RULES, ""), Path::new("t.parquet"), &b).unwrap();
    }

    /// Every rule of every schema file names a column of its kind with a type the rule
    /// supports (or, `checked_by`, says what and by whom), and `one_of` lists values.
    #[test]
    fn schema_rules_fit_their_columns() {
        for s in all_schemas() {
            for rule in &s.values {
                let k = &s.kind;
                if rule.rule == RuleKind::CheckedBy {
                    assert!(
                        rule.what.as_deref().is_some_and(|w| !w.is_empty()) && rule.by.is_some(),
                        "{k}: checked_by needs what and by"
                    );
                    continue;
                }
                assert_eq!(
                    s.format,
                    Format::Parquet,
                    "{k}: only Parquet tables get generic rules; declare checked_by"
                );
                let c = rule
                    .column
                    .as_deref()
                    .unwrap_or_else(|| panic!("{k}: no column"));
                let spec = s
                    .columns
                    .iter()
                    .chain(&s.optional_columns)
                    .find(|x| x.name == c)
                    .unwrap_or_else(|| panic!("{k}: rule on unknown column '{c}'"));
                assert!(
                    rule.supported_types().contains(&spec.ty.as_str()),
                    "{k}: rule {:?} does not support column '{c}' of type {}",
                    rule.rule,
                    spec.ty
                );
                match rule.rule {
                    RuleKind::OneOf => assert!(!rule.values.is_empty(), "{k}: empty one_of"),
                    RuleKind::Range => assert!(
                        rule.min.is_some() || rule.max.is_some() || rule.below_meta.is_some(),
                        "{k}: range without bounds"
                    ),
                    _ => {}
                }
            }
        }
    }

    /// Every `by:` names a function that exists in the module it names, so the
    /// declarations cannot rot.
    #[test]
    fn checked_by_names_existing_functions() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut n = 0;
        for s in all_schemas() {
            for rule in s.values.iter().filter(|r| r.rule == RuleKind::CheckedBy) {
                let by = rule.by.as_deref().unwrap();
                let parts: Vec<&str> = by.split("::").collect();
                let func = parts.last().unwrap();
                // The longest module prefix that is a file (types in between, e.g.
                // `Struct::method`, stay in that file).
                let file = (1..parts.len()).rev().find_map(|k| {
                    let m = parts[..k].join("/");
                    [src.join(format!("{m}.rs")), src.join(m).join("mod.rs")]
                        .into_iter()
                        .find(|f| f.is_file())
                });
                let file = file.unwrap_or_else(|| panic!("{}: by '{by}': no such module", s.kind));
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(
                    text.contains(&format!("fn {func}(")) || text.contains(&format!("fn {func}<")),
                    "{}: by '{by}': {} has no fn {func}",
                    s.kind,
                    file.display()
                );
                n += 1;
            }
        }
        assert!(n > 0);
    }
}
