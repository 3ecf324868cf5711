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
    "generate_core50",
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
    load_section_over(config, section, &())
}

/// Reads section `section` of the pipeline file `config` into `T` with `flags` laid over
/// it: the one place where command-line flags and the config meet. `flags` serialises to a
/// map of the flags the user gave (a `None` field, null, is skipped, so the config's value, else
/// `T`'s default, stands); each replaces the key of the same name before `T` is
/// deserialised, so defaults live only in `T::default()` and every value is checked once.
/// `()` lays nothing over. Errors name the file, the section and the key.
pub fn load_section_over<T: DeserializeOwned + Default, F: Serialize>(
    config: Option<&Path>,
    section: &str,
    flags: &F,
) -> Result<T> {
    let given = match serde_yaml::to_value(flags)
        .with_context(|| format!("cannot represent the flags of section '{section}'"))?
    {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        other => bail!("flags of section '{section}' must form a map, not {other:?}"),
    };
    let (origin, value) = match config {
        None => ("the command line".to_string(), serde_yaml::Value::Null),
        Some(path) => (path.display().to_string(), read_section(path, section)?),
    };
    let mut map = match value {
        serde_yaml::Value::Null => {
            if given.is_empty() {
                return Ok(T::default());
            }
            serde_yaml::Mapping::new()
        }
        serde_yaml::Value::Mapping(m) => m,
        // Not a map: let serde say what it expected.
        other => {
            return serde_yaml::from_value(other)
                .map_err(|e| anyhow!("{origin}: section '{section}': {e}"))
        }
    };
    let base = map.clone();
    let mut flags = Vec::new();
    for (k, v) in given {
        if !v.is_null() {
            flags.extend(k.as_str().map(str::to_string));
            map.insert(k, v);
        }
    }
    serde_yaml::from_value(serde_yaml::Value::Mapping(map.clone())).map_err(|e| {
        let msg = e.to_string();
        // A flag this section has no key for (e.g. VQA's --order in a classification run).
        if let Some(flag) = flags
            .iter()
            .find(|f| msg.starts_with(&format!("unknown field `{f}`")))
        {
            return anyhow!(
                "--{} does not apply here: section '{section}' has no key '{flag}'",
                flag.replace('_', "-")
            );
        }
        // A flag's value the key does not take (e.g. --order bogus): name the flag, not the
        // section, when the config alone reads and that flag laid over it alone fails.
        let culprit = serde_yaml::from_value::<T>(serde_yaml::Value::Mapping(base.clone()))
            .is_ok()
            .then(|| {
                flags.iter().find(|f| {
                    let mut one = base.clone();
                    let key = serde_yaml::Value::from(f.as_str());
                    one.insert(key.clone(), map[&key].clone());
                    serde_yaml::from_value::<T>(serde_yaml::Value::Mapping(one)).is_err()
                })
            })
            .flatten();
        if let Some(flag) = culprit {
            let value = serde_yaml::to_string(&map[&serde_yaml::Value::from(flag.as_str())])
                .unwrap_or_default();
            return anyhow!(
                "--{} {}: {msg} (key '{flag}' of section '{section}')",
                flag.replace('_', "-"),
                value.trim()
            );
        }
        let hint = unknown_field_hint(&msg);
        // serde_yaml names no key for a wrong value ("invalid value: integer `-8`,
        // expected usize"): find the key that fails alone over the defaults.
        let key = map
            .iter()
            .find(|(k, v)| {
                let mut one = serde_yaml::Mapping::new();
                one.insert((*k).clone(), (*v).clone());
                serde_yaml::from_value::<T>(serde_yaml::Value::Mapping(one)).is_err()
            })
            .and_then(|(k, _)| k.as_str())
            .filter(|_| hint.is_empty() && !msg.starts_with("unknown field"))
            .map(|k| format!(" (key '{k}')"))
            .unwrap_or_default();
        anyhow!("{origin}: section '{section}': {msg}{key}{hint}")
    })
}

/// Section `section` of the pipeline file at `path` (`Null` when absent), after checking
/// that every top-level key is a known section.
fn read_section(path: &Path, section: &str) -> Result<serde_yaml::Value> {
    let p = path.display();
    let text = crate::text::read_text(path).with_context(|| format!("cannot read config {p}"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| anyhow!("{p}: invalid YAML: {e}"))?;
    let serde_yaml::Value::Mapping(mut map) = doc else {
        if doc.is_null() {
            return Ok(serde_yaml::Value::Null);
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
    Ok(map.remove(section).unwrap_or(serde_yaml::Value::Null))
}

/// Writes every section of the pipeline file `config` as canonical JSON (keys sorted,
/// comments and layout gone) to `<out>/<section>.json`, one file per known section (`null`
/// for an absent one), rewriting only the files whose content changed. These are the
/// Makefile's section stamps: each stage's rule depends on the sections it reads, so a
/// `touch` or a comment re-runs nothing and an edit re-runs only the stages that read the
/// edited section. Returns the sections whose stamp changed.
pub fn write_section_stamps(config: &Path, out: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut changed = Vec::new();
    for section in SECTIONS {
        let value = read_section(config, section)?;
        let json: serde_json::Value = serde_json::to_value(&value)
            .with_context(|| format!("{}: section '{section}'", config.display()))?;
        let text = format!("{json}\n");
        let path = out.join(format!("{section}.json"));
        let before = std::fs::read(&path).ok();
        if before.as_deref() != Some(text.as_bytes()) {
            crate::artifact::atomic::write_bytes(&path, text.as_bytes())?;
            // A first stamp is no change worth naming.
            if before.is_some() {
                changed.push(section.to_string());
            }
        }
    }
    Ok(changed)
}

/// Short stable hash of a resolved config, recorded by every artifact it produces.
pub fn config_hash<T: Serialize>(value: &T) -> Result<String> {
    let bytes = serde_json::to_vec(value)?;
    Ok(crate::artifact::weights::hex(&Sha256::digest(&bytes)[..8]))
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
    let text = crate::text::read_text(path).with_context(|| format!("cannot read config {p}"))?;
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
    let text = crate::text::read_text(config).with_context(|| format!("cannot read config {p}"))?;
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
        // Flags lay over the section; a flag not given leaves the file's value.
        #[derive(Serialize)]
        struct Flags {
            #[serde(skip_serializing_if = "Option::is_none")]
            iterations: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nbits: Option<u32>,
        }
        let given = Flags {
            iterations: Some(7),
            nbits: None,
        };
        let d: Demo = load_section_over(Some(&path), "fit_pq", &given).unwrap();
        assert_eq!((d.nbits, d.iterations), (4, 7));
        let d: Demo = load_section_over(None, "fit_pq", &given).unwrap();
        assert_eq!((d.nbits, d.iterations), (0, 7));
        std::fs::write(&path, "stream: {}\n").unwrap();
        let d: Demo = load_section_over(Some(&path), "fit_pq", &given).unwrap();
        assert_eq!((d.nbits, d.iterations), (0, 7));
        // A flag the section has no key for is named as the flag.
        #[derive(Serialize)]
        struct Other {
            max_per_type: Option<u32>,
        }
        let e = load_section_over::<Demo, _>(
            Some(&path),
            "fit_pq",
            &Other {
                max_per_type: Some(3),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--max-per-type does not apply"), "{e}");
        // A flag's value the key does not take is named as the flag with its value.
        #[derive(Serialize)]
        struct Bad {
            nbits: i64,
        }
        let e = load_section_over::<Demo, _>(Some(&path), "fit_pq", &Bad { nbits: -3 })
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--nbits -3: ") && e.contains("key 'nbits' of section 'fit_pq'"),
            "{e}"
        );
        // A wrong value in the file names its key (serde's message alone does not).
        std::fs::write(&path, "fit_pq:\n  nbits: 4\n  iterations: -8\n").unwrap();
        let e = load_section::<Demo>(Some(&path), "fit_pq")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("section 'fit_pq'") && e.contains("-8") && e.contains("(key 'iterations')"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
