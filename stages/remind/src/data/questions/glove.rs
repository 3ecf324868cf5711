//! Word vectors in GloVe's text format (`word v1 v2 ... vD` per line), aligned with a
//! vocabulary and written as a `word_vectors` tensor artifact.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::artifact::tensor::write_tensor;
use crate::artifact::{DType, Payload, Producer, TensorSpec};

/// Vectors for a vocabulary: row i belongs to token i; rows of tokens GloVe lacks are zero.
#[derive(Debug, Clone)]
pub struct WordVectors {
    pub dim: usize,
    pub data: Vec<f32>,
    pub found: usize,
    pub missing: Vec<String>,
}

/// What the report says about the word vectors.
#[derive(Debug, Clone, Serialize)]
pub struct GloveReport {
    pub source: PathBuf,
    pub dim: usize,
    pub found: usize,
    pub missing: usize,
    /// Up to 50 tokens without a vector (besides `<pad>` and `<unk>`).
    pub missing_examples: Vec<String>,
}

/// Reads the vectors of `vocabulary`'s tokens from the GloVe file `path`. Words are matched
/// case-insensitively (vocabulary tokens are lower-case); an exactly lower-case entry wins
/// over other casings, otherwise the first one in the file. Words may contain spaces (as in
/// GloVe 840B): the last D fields of a line are the vector, D taken from the first line.
pub fn read_glove(path: &Path, vocabulary: &[String]) -> Result<WordVectors> {
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
    let wanted: HashMap<&str, usize> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut dim = 0usize;
    let mut data: Vec<f32> = Vec::new();
    // Per vocabulary row: None, Some(false) from a cased entry, Some(true) exact.
    let mut have: Vec<Option<bool>> = vec![None; vocabulary.len()];
    let mut line = String::new();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read {p} after line {line_no}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(' ').filter(|f| !f.is_empty()).collect();
        if dim == 0 {
            ensure!(
                fields.len() >= 2,
                "{p}: line {line_no}: expected a word and its vector, found '{}'",
                truncate(text)
            );
            dim = fields.len() - 1;
            data = vec![0.0; vocabulary.len() * dim];
        }
        if fields.len() < dim + 1 {
            bail!(
                "{p}: line {line_no}: expected a word and {dim} numbers, found {} fields",
                fields.len()
            );
        }
        let word = fields[..fields.len() - dim].join(" ");
        let lower = word.to_lowercase();
        let Some(&row) = wanted.get(lower.as_str()) else {
            continue;
        };
        let exact = word == lower;
        match have[row] {
            Some(true) => continue,
            Some(false) if !exact => continue,
            _ => {}
        }
        let dst = &mut data[row * dim..(row + 1) * dim];
        for (k, (d, f)) in dst
            .iter_mut()
            .zip(&fields[fields.len() - dim..])
            .enumerate()
        {
            *d = f.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{p}: line {line_no}: value {} of '{word}' is not a number: '{f}'",
                    k + 1
                )
            })?;
        }
        have[row] = Some(exact);
    }
    ensure!(dim > 0, "{p}: no word vectors in the file");
    let missing: Vec<String> = vocabulary
        .iter()
        .zip(&have)
        .filter(|(t, h)| h.is_none() && !t.starts_with('<'))
        .map(|(t, _)| t.clone())
        .collect();
    Ok(WordVectors {
        dim,
        data,
        found: have.iter().filter(|h| h.is_some()).count(),
        missing,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Writes `vectors` as the `word_vectors` artifact `path` (ids = vocabulary indices).
pub fn write_word_vectors(
    path: &Path,
    vectors: &WordVectors,
    producer: &Producer,
) -> Result<PathBuf> {
    let rows = vectors.data.len() / vectors.dim.max(1);
    let ids: Vec<u64> = (0..rows as u64).collect();
    let spec = TensorSpec::new(
        "word_vectors",
        &[vectors.dim],
        "D",
        DType::F32,
        producer.clone(),
    );
    write_tensor(path, spec, &ids, Payload::F32(&vectors.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_vectors_with_the_vocabulary() {
        let dir = std::env::temp_dir().join(format!("remind-glove-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.txt");
        std::fs::write(
            &path,
            "The 9 9\nthe 1 2\ncat 3 4\nnew york 5 6\nzebra 7 8\n",
        )
        .unwrap();
        let vocab: Vec<String> = ["<pad>", "<unk>", "the", "cat", "dog", "new york"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = read_glove(&path, &vocab).unwrap();
        assert_eq!(v.dim, 2);
        assert_eq!(v.data, [0., 0., 0., 0., 1., 2., 3., 4., 0., 0., 5., 6.]);
        assert_eq!((v.found, v.missing.clone()), (3, vec!["dog".to_string()]));
        std::fs::write(&path, "the 1 2\ncat 3 x\n").unwrap();
        let err = read_glove(&path, &vocab).unwrap_err().to_string();
        assert!(
            err.contains("g.txt: line 2") && err.contains("'x'"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
