//! Atomic file creation: write under a hidden temporary name in the target folder, fsync,
//! then rename into place, so a killed writer never leaves a file under the final name.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Prefix of temporary files; dataset readers skip names that start with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A file being written; it appears under its final name only after [`AtomicFile::commit`].
/// Dropping it uncommitted (an error, a panic) removes the temporary file.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Option<File>,
    /// The folders `create` made, deepest first: removed again (when empty) if the file is
    /// dropped uncommitted, so a failed writer leaves no empty output folder behind.
    made: Vec<PathBuf>,
}

impl AtomicFile {
    /// Starts writing `path`: creates its folder and a temporary file beside it. Stale
    /// temporaries of the same final name (left by a killed writer) are removed first.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = parent_dir(path);
        let made: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        let name = path
            .file_name()
            .with_context(|| format!("{} has no file name", path.display()))?
            .to_string_lossy()
            .into_owned();
        remove_stale_temps(&dir, &name);
        let temp_path = dir.join(format!(
            "{TEMP_PREFIX}{name}.{}.{}",
            host_tag(),
            std::process::id()
        ));
        let file = File::create(&temp_path)
            .with_context(|| format!("cannot create {}", temp_path.display()))?;
        Ok(Self {
            final_path: path.to_path_buf(),
            temp_path,
            file: Some(file),
            made,
        })
    }

    /// The file to write into (owned handle; give it back to [`AtomicFile::commit`]).
    pub fn take_file(&mut self) -> Result<File> {
        self.file.take().context("atomic file handle already taken")
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The path the file will have once committed.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes `file` to disk and renames it into place (then syncs the folder entry).
    pub fn commit(mut self, mut file: File) -> Result<PathBuf> {
        file.flush()?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.temp_path.display()))?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.temp_path.display(),
                self.final_path.display()
            )
        })?;
        if let Ok(dir) = File::open(parent_dir(&self.final_path)) {
            // Best effort: some file systems refuse fsync on folders.
            let _ = dir.sync_all();
        }
        self.temp_path = PathBuf::new();
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp_path);
            // remove_dir removes only empty folders: anything written there since stays.
            for d in &self.made {
                if fs::remove_dir(d).is_err() {
                    break;
                }
            }
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut atomic = AtomicFile::create(path)?;
    let mut file = atomic.take_file()?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", atomic.temp_path().display()))?;
    atomic.commit(file)?;
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// This machine's short host name, as it appears in temporary file names: on a shared file
/// system, writers on several nodes (the shards of a job array) may work in one folder, and a
/// process id means something only on the node that issued it.
pub fn host_tag() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let short: String = name
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if short.is_empty() {
        "localhost".into()
    } else {
        short
    }
}

/// The final file name a temporary file stands for (`.tmp-<name>.<host>.<pid>`), if it is one.
pub fn temp_target(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix(TEMP_PREFIX)?;
    let (rest, pid) = rest.rsplit_once('.')?;
    let (name, _host) = rest.rsplit_once('.')?;
    pid.parse::<u32>().ok().map(|_| name)
}

/// Removes the temporaries of `name` left by dead writers of this host. Those of live
/// processes, and those of other hosts (whose processes cannot be seen from here), stay.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!("{TEMP_PREFIX}{name}.{}.", host_tag());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if let Some(pid) = n.strip_prefix(&prefix) {
            let alive = pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists();
            if !alive {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("remind-atomic-{}", std::process::id()));
        let path = dir.join("a.bin");
        let partial = |path: &Path| {
            let mut f = AtomicFile::create(path).unwrap();
            let mut h = f.take_file().unwrap();
            h.write_all(b"partial").unwrap();
        };
        // The folders made for it go too (no empty output folder after a failure)...
        partial(&dir.join("made/deeper/a.bin"));
        assert!(!dir.exists());
        // ... but not a folder that was there before.
        fs::create_dir_all(&dir).unwrap();
        partial(&path);
        assert!(!path.exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        write_bytes(&path, b"whole").unwrap();
        // A dead writer's temporary of this host is cleared; another host's is left alone.
        let dead = dir.join(format!("{TEMP_PREFIX}a.bin.{}.4000000", host_tag()));
        let other = dir.join(format!("{TEMP_PREFIX}a.bin.elsewhere-node.1"));
        fs::write(&dead, b"x").unwrap();
        fs::write(&other, b"x").unwrap();
        assert_eq!(
            temp_target(&dead.file_name().unwrap().to_string_lossy()),
            Some("a.bin")
        );
        write_bytes(&path, b"again").unwrap();
        assert!(!dead.exists() && other.exists());
        assert_eq!(fs::read(&path).unwrap(), b"again");
        fs::remove_dir_all(&dir).unwrap();
    }
}
