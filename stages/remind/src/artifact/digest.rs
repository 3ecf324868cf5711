//! Content digests of a stage's inputs, for its fingerprint ([`crate::run::contract`]).
//!
//! A file's digest is the SHA-256 of its bytes; a folder's is the SHA-256 of its files'
//! relative paths and digests, in sorted order, hidden names (temporaries, markers such as
//! `.complete`) left out. Hashing is what a check costs, so each file's digest is cached in
//! `<run_dir>/.digests.json` under its path, keyed by size, modification time and inode: a
//! cache hit skips the read, and any change to the file (a rewrite, a copy over it) misses.
//! The fingerprint itself holds only digests, never times.
//!
//! One exception, for data sets too large to read on every check: a folder holding more
//! than [`LISTING_LIMIT`] bytes (ImageNet's 140 GB of JPEGs) is digested by its listing,
//! every file's relative path and size, and the digest says so (`listing:` prefix).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::write_bytes;
use super::weights::{file_sha256, hex};

/// Folders holding more bytes than this are digested by their listing (names and sizes).
pub const LISTING_LIMIT: u64 = 4 << 30;

/// The digest cache's file name inside a run folder.
pub const CACHE_FILE: &str = ".digests.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    sha256: String,
}

/// Computes digests, reusing and extending the cache of one run folder.
pub struct Digester {
    cache_path: Option<PathBuf>,
    cache: BTreeMap<String, CacheEntry>,
    dirty: bool,
}

impl Digester {
    /// A digester whose cache lives in `run_dir` (none: no cache).
    pub fn new(run_dir: Option<&Path>) -> Self {
        let cache_path = run_dir.map(|d| d.join(CACHE_FILE));
        // An unreadable or damaged cache is only a cache: start empty.
        let cache = cache_path
            .as_deref()
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            cache_path,
            cache,
            dirty: false,
        }
    }

    /// The digest of the file or folder at `path`. Errors name the path when it is missing
    /// or unreadable.
    pub fn digest(&mut self, path: &Path) -> Result<String> {
        let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_file() {
            return self.file(path, &meta);
        }
        let mut files = Vec::new();
        let mut total = 0u64;
        for entry in walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            if entry.file_type().is_dir() {
                continue;
            }
            let meta = fs::metadata(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            total += meta.len();
            let rel = entry
                .path()
                .strip_prefix(path)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .into_owned();
            files.push((rel, entry.into_path(), meta));
        }
        let listing = total > LISTING_LIMIT;
        let mut h = Sha256::new();
        for (rel, file, meta) in &files {
            h.update(rel.as_bytes());
            h.update([0]);
            if listing {
                h.update(meta.len().to_le_bytes());
            } else {
                h.update(self.file(file, meta)?.as_bytes());
            }
            h.update([0]);
        }
        let d = hex(&h.finalize());
        Ok(if listing { format!("listing:{d}") } else { d })
    }

    fn file(&mut self, path: &Path, meta: &fs::Metadata) -> Result<String> {
        let key = fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let stat = |sha256: String| CacheEntry {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            inode: meta.ino(),
            sha256,
        };
        if let Some(hit) = self.cache.get(&key) {
            if *hit == stat(hit.sha256.clone()) {
                return Ok(hit.sha256.clone());
            }
        }
        let sha = file_sha256(path)?;
        self.cache.insert(key, stat(sha.clone()));
        self.dirty = true;
        Ok(sha)
    }

    /// Saves the cache when it grew (best effort: a cache that cannot be written only
    /// costs a re-read next time).
    pub fn save(&mut self) {
        if let (true, Some(p)) = (self.dirty, &self.cache_path) {
            if let Ok(bytes) = serde_json::to_vec(&self.cache) {
                if write_bytes(p, &bytes).is_ok() {
                    self.dirty = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_not_times_decides_and_hidden_names_are_left_out() {
        let dir = std::env::temp_dir().join(format!("remind-digest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data = dir.join("data");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("a.bin"), b"one").unwrap();
        fs::write(data.join("sub/b.bin"), b"two").unwrap();
        let mut d = Digester::new(Some(&dir));
        let first = d.digest(&data).unwrap();
        d.save();
        assert!(dir.join(CACHE_FILE).is_file());
        // A marker or temporary beside the parts changes nothing; neither does a new mtime.
        fs::write(data.join(".complete"), b"").unwrap();
        let f = fs::File::options()
            .write(true)
            .open(data.join("a.bin"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let mut again = Digester::new(Some(&dir));
        assert_eq!(again.digest(&data).unwrap(), first);
        // Same size, same second: content decides (the cache misses on the new mtime).
        fs::write(data.join("sub/b.bin"), b"TWO").unwrap();
        let changed = Digester::new(Some(&dir)).digest(&data).unwrap();
        assert_ne!(changed, first);
        // A renamed file changes the folder's digest.
        fs::write(data.join("sub/b.bin"), b"two").unwrap();
        fs::rename(data.join("sub/b.bin"), data.join("sub/c.bin")).unwrap();
        assert_ne!(Digester::new(None).digest(&data).unwrap(), first);
        // A file's digest is its SHA-256.
        assert_eq!(
            Digester::new(None).digest(&data.join("a.bin")).unwrap(),
            crate::artifact::weights::sha256_hex(b"one")
        );
        let err = Digester::new(None)
            .digest(&dir.join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
