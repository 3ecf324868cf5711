//! What a file is, from its first bytes: so a reader given the wrong kind of file can say
//! what it was given ("a PyTorch checkpoint", "an .npz archive", "a text file") instead of
//! reading numbers from the wrong place. The signatures are the formats' own magic numbers
//! (zip's `PK\x03\x04` local header, pickle's `\x80` PROTO opcode, NumPy's `\x93NUMPY`,
//! gzip's `1f 8b`, HDF5's `\x89HDF`, PNG, JPEG, Arrow's `ARROW1`, Parquet's `PAR1`,
//! safetensors' u64 header length followed by `{`).

use std::io::Read;
use std::path::Path;

/// Bytes enough to recognise every kind [`describe`] knows.
pub const SNIFF_LEN: usize = 4096;

/// The first [`SNIFF_LEN`] bytes of `path` (fewer for a shorter file; empty if unreadable).
pub fn head(path: &Path) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SNIFF_LEN);
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(SNIFF_LEN as u64).read_to_end(&mut buf);
    }
    buf
}

/// A short description of the file starting with `bytes` ("a gzip file"), or `None` when
/// no known signature matches.
pub fn describe(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return Some("an empty file".into());
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Some(describe_zip(bytes).into());
    }
    // torch.save's legacy (non-zip) format pickles this magic number first.
    const LEGACY_TORCH: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    if bytes.starts_with(LEGACY_TORCH) {
        return Some(
            "a PyTorch checkpoint in torch.save's legacy pickle format (a Python pickle)".into(),
        );
    }
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return Some(format!("a Python pickle (protocol {})", bytes[1]));
    }
    let simple: [(&[u8], &str); 11] = [
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"\x1f\x8b", "a gzip file"),
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"ARROW1", "an Arrow IPC file"),
        (b"PAR1", "a Parquet file"),
        (b"BZh", "a bzip2 file"),
    ];
    if let Some((_, what)) = simple.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some((*what).into());
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("a WebP image".into());
    }
    if bytes.len() > 8 && bytes[8] == b'{' {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        if (2..(1 << 32)).contains(&n) {
            return Some("a safetensors file".into());
        }
    }
    if let Some(idx) = describe_idx(bytes) {
        return Some(idx);
    }
    if let Some(faiss) = describe_faiss(bytes) {
        return Some(faiss);
    }
    looks_like_text(bytes).then(|| {
        let t = String::from_utf8_lossy(bytes)
            .trim_start()
            .to_ascii_lowercase();
        if t.starts_with("<!doctype html") || t.starts_with("<html") {
            "an HTML page (a failed download?)".into()
        } else if t.starts_with('{') || t.starts_with('[') {
            "a JSON text file".into()
        } else {
            "a text file".into()
        }
    })
}

/// [`describe`] of the file `path`, for error messages: " (it is a gzip file)" or "".
pub fn it_is(path: &Path) -> String {
    describe(&head(path))
        .map(|d| format!(" (it is {d})"))
        .unwrap_or_default()
}

/// A zip archive by the name of its first entry: torch.save writes `<name>/data.pkl`
/// (or `<name>/byteorder`, `<name>/version` first in some versions), numpy.savez `<key>.npy`.
fn describe_zip(bytes: &[u8]) -> &'static str {
    let first = bytes
        .get(26..30)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .and_then(|n| bytes.get(30..30 + n))
        .unwrap_or_default();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if first.ends_with(b".npy") {
        "an .npz archive (numpy.savez: a zip of .npy arrays)"
    } else if has(b"data.pkl") || has(b"/byteorder") || has(b"/version") {
        "a PyTorch checkpoint (torch.save's zip archive holding a Python pickle)"
    } else {
        "a zip archive"
    }
}

/// IDX (MNIST): two zero bytes, a type code, a dimension count; then 4-byte sizes.
fn describe_idx(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 8 || bytes[0] != 0 || bytes[1] != 0 || !(1..=4).contains(&bytes[3]) {
        return None;
    }
    let kind = idx_type_name(bytes[2])?;
    Some(format!(
        "an IDX file of {kind} with {} dimension(s)",
        bytes[3]
    ))
}

/// The element type of IDX type code `code` (LeCun's MNIST page).
pub fn idx_type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x08 => "unsigned bytes",
        0x09 => "signed bytes",
        0x0B => "16-bit integers",
        0x0C => "32-bit integers",
        0x0D => "32-bit floats",
        0x0E => "64-bit floats",
        _ => return None,
    })
}

/// faiss's index files start with a fourcc naming the object (faiss/impl/index_write.cpp).
fn describe_faiss(bytes: &[u8]) -> Option<String> {
    let four = bytes.get(..4)?;
    crate::pq::faiss_object_name(four).map(|name| format!("a faiss {name} file"))
}

/// Valid UTF-8 (allowing a character cut at the end) without NULs or other control bytes
/// than tab, newline, carriage return and form feed.
fn looks_like_text(bytes: &[u8]) -> bool {
    let s = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len() => {
            // A multi-byte character cut by the sniff length.
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_kinds_readers_are_given_by_mistake() {
        let d = |b: &[u8]| describe(b).unwrap_or_default();
        assert!(d(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00a.npy").contains(".npz"));
        assert!(d(b"PK\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0e\x00\x00\x00archive/data.pkl").contains("PyTorch"));
        assert!(d(b"\x80\x04\x95").contains("pickle"));
        assert!(d(b"\x93NUMPY\x01\x00").contains(".npy"));
        assert!(d(&[0, 0, 8, 3, 0, 0, 0, 1]).contains("IDX file of unsigned bytes with 3"));
        assert!(d(b"hello\nworld\n").contains("text"));
        assert!(d(b"<!DOCTYPE html><html>").contains("HTML"));
        assert_eq!(d(b""), "an empty file");
        assert!(describe(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2]).is_none());
        let mut st = 16u64.to_le_bytes().to_vec();
        st.extend(b"{\"a\":{}}        ");
        assert_eq!(d(&st), "a safetensors file");
    }
}
