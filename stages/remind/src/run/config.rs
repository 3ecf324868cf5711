//! Pipeline configs: one YAML file per experiment (`pipelines/X.yaml`), one section per
//! stage. A stage reads its section into a typed struct; unknown keys are refused with the
//! closest known key suggested.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The top-level keys a pipeline file may have: shared keys and one section per stage.
pub const SECTIONS: &[&str] = &[
    "name",
    "task",
    "description",
    "run_dir",
    "synth_features",
    "fit_pq",
    "extract_codes",
    "generate_clevr",
    "import_questions",
    "import_images",
    "train_backbone",
    "extract_features",
    "import_gensen",
    "stream",
    "train_classifier",
    "classify_stream",
    "model",
    "evaluate",
];

/// Reads section `section` of the pipeline file `config` into `T` (defaults for absent
/// keys; `T::default()` without a file or section).
pub fn load_section<T: DeserializeOwned + Default>(
    config: Option<&Path>,
    section: &str,
) -> Result<T> {
    let Some(path) = config else {
        return Ok(T::default());
    };
    let p = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {p}"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| anyhow!("{p}: invalid YAML: {e}"))?;
    let serde_yaml::Value::Mapping(map) = doc else {
        if doc.is_null() {
            return Ok(T::default());
        }
        bail!("{p}: expected a mapping of sections at the top level");
    };
    for key in map.keys() {
        let key = key
            .as_str()
            .ok_or_else(|| anyhow!("{p}: top-level keys must be strings"))?;
        if !SECTIONS.contains(&key) {
            bail!(
                "{p}: unknown section '{key}'{}",
                suggestion(key, SECTIONS.iter().copied())
            );
        }
    }
    match map.get(section) {
        None | Some(serde_yaml::Value::Null) => Ok(T::default()),
        Some(value) => serde_yaml::from_value(value.clone()).map_err(|e| {
            let msg = e.to_string();
            let hint = unknown_field_hint(&msg);
            anyhow!("{p}: section '{section}': {msg}{hint}")
        }),
    }
}

/// Short stable hash of a resolved config, recorded by every artifact it produces.
pub fn config_hash<T: Serialize>(value: &T) -> Result<String> {
    let bytes = serde_json::to_vec(value)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message: the closest of the
/// expected names.
fn unknown_field_hint(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return String::new();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let names = expected.split('`').skip(1).step_by(2);
    suggestion(field, names)
}

fn suggestion<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 2).max(2))
        .min()
        .map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether section `section` of the pipeline file `config` sets `key` (to tell a value the
/// file gives from a default).
pub fn section_sets(config: Option<&Path>, section: &str, key: &str) -> Result<bool> {
    let Some(path) = config else {
        return Ok(false);
    };
    let p = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {p}"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| anyhow!("{p}: invalid YAML: {e}"))?;
    Ok(doc
        .get(section)
        .and_then(|s| s.get(key))
        .is_some_and(|v| !v.is_null()))
}

/// A top-level string value of a pipeline file (such as `run_dir`), if present.
pub fn top_level_string(config: &Path, key: &str) -> Result<Option<String>> {
    let p = config.display();
    let text =
        std::fs::read_to_string(config).with_context(|| format!("cannot read config {p}"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| anyhow!("{p}: invalid YAML: {e}"))?;
    match doc.get(key) {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| anyhow!("{p}: '{key}' must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        nbits: u32,
        iterations: u32,
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let dir = std::env::temp_dir().join(format!("remind-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(&path, "fit_pq:\n  nbit: 8\n").unwrap();
        let err = load_section::<Demo>(Some(&path), "fit_pq")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nbit") && err.contains("did you mean 'nbits'"),
            "{err}"
        );
        std::fs::write(&path, "fit_pqq:\n  nbits: 8\n").unwrap();
        let err = load_section::<Demo>(Some(&path), "fit_pq")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean 'fit_pq'"), "{err}");
        std::fs::write(&path, "fit_pq:\n  nbits: 4\n").unwrap();
        let d: Demo = load_section(Some(&path), "fit_pq").unwrap();
        assert_eq!((d.nbits, d.iterations), (4, 0));
        assert!(section_sets(Some(&path), "fit_pq", "nbits").unwrap());
        assert!(!section_sets(Some(&path), "fit_pq", "iterations").unwrap());
        assert!(!section_sets(Some(&path), "stream", "nbits").unwrap());
        assert!(!section_sets(None, "fit_pq", "nbits").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
