//! Word vectors in GloVe's text format (`word v1 v2 ... vD` per line), aligned with a
//! vocabulary and written as a `word_vectors` tensor artifact.
//!
//! Also read: word2vec's text format (gensim `save_word2vec_format(binary=False)`, fastText
//! `.vec`), which is GloVe's plus a first line `count dim`; a byte-order mark, CRLF line
//! ends and trailing blanks (through [`crate::text::clean_line`]). Refused, saying what the
//! file is: word2vec's binary format, a gzipped file, a file that is not UTF-8 text, and a
//! file none of whose words is in the vocabulary (an empty import is not data).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::artifact::tensor::write_tensor;
use crate::artifact::{DType, Payload, Producer, TensorSpec};
use crate::text::clean_line;

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
    refuse_non_text(&mut reader, path)?;
    let mut line_no = 0usize;
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("cannot read {p} after line {line_no}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        line.clear();
        line.push_str(std::str::from_utf8(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{p}: line {line_no}: not UTF-8 text (byte {} of the line); a word-vector file \
                 is UTF-8 text",
                e.valid_up_to() + 1
            )
        })?);
        let text = clean_line(&line, line_no == 1);
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
        if dim == 0 {
            ensure!(
                fields.len() >= 2,
                "{p}: line {line_no}: expected a word and its vector, found '{}'",
                truncate(text)
            );
            if let Some(declared) = word2vec_header(&fields) {
                // word2vec's `count dim` line: the vectors follow, `dim` wide.
                ensure!(
                    declared > 0,
                    "{p}: line {line_no}: a word2vec header declaring {declared} dimensions"
                );
                dim = declared;
                data = vec![0.0; vocabulary.len() * dim];
                continue;
            }
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
    let found = have.iter().filter(|h| h.is_some()).count();
    ensure!(
        found > 0 || vocabulary.iter().all(|t| t.starts_with('<')),
        "{p}: none of the vocabulary's {} words has a vector in the file (is it a word-vector \
         file of another language, or of ids rather than words?)",
        vocabulary.len()
    );
    let missing: Vec<String> = vocabulary
        .iter()
        .zip(&have)
        .filter(|(t, h)| h.is_none() && !t.starts_with('<'))
        .map(|(t, _)| t.clone())
        .collect();
    Ok(WordVectors {
        dim,
        data,
        found,
        missing,
    })
}

/// `Some(dim)` when `fields` is word2vec's first line: two integers, `count dim`.
fn word2vec_header(fields: &[&str]) -> Option<usize> {
    match fields {
        [count, dim] => {
            count.parse::<u64>().ok()?;
            dim.parse::<usize>().ok()
        }
        _ => None,
    }
}

/// Refuses a gzipped file and word2vec's binary format (a `count dim` line, then words each
/// followed by raw float32 bytes) before any number is read from them.
fn refuse_non_text(reader: &mut BufReader<File>, path: &Path) -> Result<()> {
    let p = path.display();
    let head = reader
        .fill_buf()
        .with_context(|| format!("cannot read {p}"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        bail!("{p}: a gzip-compressed file: decompress it first (gunzip), then give the text");
    }
    let Some(end) = head.iter().position(|&b| b == b'\n') else {
        return Ok(());
    };
    let first = String::from_utf8_lossy(&head[..end]);
    let fields: Vec<&str> = clean_line(&first, true).split_whitespace().collect();
    let rest = &head[end + 1..head.len().min(end + 1 + 4096)];
    let binary = rest
        .iter()
        .any(|&b| b == 0 || (b < 0x20 && !b"\t\r\n".contains(&b)));
    if word2vec_header(&fields).is_some() && binary {
        bail!(
            "{p}: word2vec's binary format (a '{}' header, then raw float32 values): convert it \
             to text, e.g. gensim's KeyedVectors.load_word2vec_format(path, binary=True)\
             .save_word2vec_format(out, binary=False)",
            fields.join(" ")
        );
    }
    Ok(())
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

    #[test]
    fn reads_word2vec_text_and_windows_files_and_refuses_other_kinds() {
        let dir = std::env::temp_dir().join(format!("remind-w2v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.txt");
        let vocab: Vec<String> = ["<pad>", "the", "cat"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let want = [0., 0., 1., 2., 3., 4.];
        // word2vec text (gensim, fastText .vec): a `count dim` first line.
        std::fs::write(&path, "2 2\nthe 1 2\ncat 3 4\n").unwrap();
        assert_eq!(read_glove(&path, &vocab).unwrap().data, want);
        // Notepad: byte-order mark, CRLF, trailing blanks, no final newline.
        std::fs::write(&path, "\u{feff}the 1 2 \r\ncat\t3 4").unwrap();
        assert_eq!(read_glove(&path, &vocab).unwrap().data, want);
        // word2vec binary: the header, then raw float32 bytes.
        let mut bin = b"2 2\nthe ".to_vec();
        bin.extend(1f32.to_le_bytes());
        bin.extend(2f32.to_le_bytes());
        std::fs::write(&path, &bin).unwrap();
        let err = read_glove(&path, &vocab).unwrap_err().to_string();
        assert!(err.contains("word2vec's binary format"), "{err}");
        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0]).unwrap();
        let err = read_glove(&path, &vocab).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
        std::fs::write(&path, "der 1 2\nkatze 3 4\n").unwrap();
        let err = read_glove(&path, &vocab).unwrap_err().to_string();
        assert!(err.contains("none of the vocabulary's 3 words"), "{err}");
        std::fs::write(&path, b"the 1 2\ncat \xff 4\n").unwrap();
        let err = read_glove(&path, &vocab).unwrap_err().to_string();
        assert!(err.contains("line 2: not UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
