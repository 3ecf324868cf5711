//! Text inputs as people and other tools write them: class orders, id lists, word vectors,
//! YAML pipelines, JSON question files. Every reader of such a file goes through here, so
//! that a file saved by a Windows editor (a UTF-8 byte-order mark, CRLF line ends), an old
//! Mac tool (CR line ends) or a script that never ends its last line reads as the text it
//! carries. Text in another encoding (UTF-16/32, detected by its byte-order mark or by NUL
//! bytes) and bytes that are not UTF-8 are refused, naming the file and where.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

/// The UTF-8 byte-order mark, as Notepad and Excel ("CSV UTF-8") write it.
pub const UTF8_BOM: &str = "\u{feff}";

/// Reads the text file `path` as the text it carries: a leading UTF-8 byte-order mark is
/// dropped and CRLF / CR line ends become `\n`.
///
/// Errors: the file cannot be read; it is UTF-16 or UTF-32 (byte-order mark or NUL bytes:
/// "save it as UTF-8"); it is not UTF-8 (the line and byte offset of the first bad byte).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// [`read_text`] on bytes already read; the error does not name a file.
pub fn decode(bytes: &[u8]) -> Result<String> {
    if let Some(encoding) = utf16_or_32(bytes) {
        bail!("the text is {encoding}, not UTF-8: save it as UTF-8");
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        anyhow!(
            "not UTF-8 text: byte {at} (line {line}) is 0x{:02x}; a binary file, or text in \
             another encoding (save it as UTF-8)",
            bytes[at]
        )
    })?;
    Ok(normalize(text).into_owned())
}

/// `text` without a leading byte-order mark, with CRLF and lone CR line ends as `\n`.
pub fn normalize(text: &str) -> Cow<'_, str> {
    let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// One line of a file read line by line (files too large to hold, such as GloVe's): the
/// line end (`\n`, `\r\n`), trailing white space and, on the first line, a byte-order mark
/// removed.
pub fn clean_line(line: &str, first: bool) -> &str {
    let line = if first {
        line.strip_prefix(UTF8_BOM).unwrap_or(line)
    } else {
        line
    };
    line.trim_end()
}

/// The non-blank lines of `text` (already [`normalize`]d or not), each trimmed of
/// surrounding white space, with their 1-based line numbers.
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
    // `\n` ends LF and CRLF lines (the `\r` goes with the trim); a file without any `\n`
    // may be an old Mac one, whose lines end in a lone `\r`.
    let end = if text.contains('\n') { '\n' } else { '\r' };
    text.split(end)
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Reads and parses the JSON file `path` (byte-order mark allowed, as [`read_text`]); the
/// error names the file and, from serde_json, the line and column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    // The path (`questions[41].answer`) names the record in a file of 700,000 questions,
    // where serde_json's line and column alone would point into one long line.
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text)).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        match at.as_str() {
            "." | "" => anyhow!("{}: invalid JSON: {inner}", path.display()),
            _ => anyhow!("{}: invalid JSON at {at}: {inner}", path.display()),
        }
    })
}

/// "UTF-16 (little-endian)" etc. when `bytes` starts with such a byte-order mark or has the
/// NUL bytes of UTF-16/32 text in its first characters.
fn utf16_or_32(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xFE, 0, 0, ..] => Some("UTF-32 (little-endian)"),
        [0, 0, 0xFE, 0xFF, ..] => Some("UTF-32 (big-endian)"),
        [0xFF, 0xFE, ..] => Some("UTF-16 (little-endian)"),
        [0xFE, 0xFF, ..] => Some("UTF-16 (big-endian)"),
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => Some("UTF-16 (little-endian, no mark)"),
        [0, a, 0, b, ..] if *a != 0 && *b != 0 => Some("UTF-16 (big-endian, no mark)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_and_line_ends_read_as_the_text() {
        for bytes in [
            &b"\xEF\xBB\xBFdog\r\ncat\r\n"[..],
            b"dog\rcat\r",
            b"dog\ncat",
            b"dog  \n\ncat\t\n",
        ] {
            let text = decode(bytes).unwrap();
            let lines: Vec<_> = content_lines(&text).map(|(_, l)| l).collect();
            assert_eq!(lines, ["dog", "cat"], "{bytes:?}");
        }
        assert_eq!(decode(b"\xEF\xBB\xBFa\r\nb").unwrap(), "a\nb");
        let numbered: Vec<_> = content_lines("a\r\n\r\nb").collect();
        assert_eq!(numbered, [(1, "a"), (3, "b")]);
        assert_eq!(clean_line("\u{feff}w 1 2 \r\n", true), "w 1 2");
        assert_eq!(clean_line("\u{feff}w\n", false), "\u{feff}w");
    }

    #[test]
    fn other_encodings_and_binary_are_refused() {
        let err = decode(b"\xFF\xFEd\0o\0g\0").unwrap_err().to_string();
        assert!(err.contains("UTF-16 (little-endian)"), "{err}");
        let err = decode(b"d\0o\0g\0").unwrap_err().to_string();
        assert!(err.contains("UTF-16"), "{err}");
        let err = decode(b"dog\ncat\xE9\n").unwrap_err().to_string();
        assert!(
            err.contains("byte 7 (line 2)") && err.contains("0xe9"),
            "{err}"
        );
    }

    #[test]
    fn json_with_a_bom_parses() {
        let dir = std::env::temp_dir().join(format!("remind-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        std::fs::write(&path, b"\xEF\xBB\xBF[1,\r\n2]").unwrap();
        assert_eq!(read_json::<Vec<u8>>(&path).unwrap(), [1, 2]);
        std::fs::write(&path, b"[1,").unwrap();
        let err = read_json::<Vec<u8>>(&path).unwrap_err().to_string();
        assert!(err.contains("a.json: invalid JSON"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
