//! Files that are either whole or not there: every file selfsup writes for a user (checkpoints,
//! embeddings, exports, reports) goes through [`write_atomic`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Where the bytes are written: a file, or in tests a sink that fails like a full disk.
pub trait DurableWrite: Write {
    /// Flush to stable storage (fsync).
    fn sync(&mut self) -> std::io::Result<()>;
}

impl DurableWrite for std::fs::File {
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_all()
    }
}

/// Test hook: `SELFSUP_TEST_CHECKPOINT_PAUSE_MS=N` pauses N ms halfway through writing the
/// temporary file, so the crash test can kill the process mid-write reliably.
const PAUSE_ENV: &str = "SELFSUP_TEST_CHECKPOINT_PAUSE_MS";

/// The temporary name a file is written under before its rename (`x.safetensors` →
/// `x.safetensors.tmp`).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `data` written to `path` (its directory created if missing) through a temporary file in the
/// same directory: written, synced,
/// renamed over `path`, directory synced. On any failure the temporary file is removed and
/// `path` is left as it was.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, &|p| Ok(Box::new(std::fs::File::create(p)?)))
}

/// [`write_atomic`] through `create` (tests pass a writer that fails like a full disk).
pub fn write_atomic_with(
    path: &Path,
    data: &[u8],
    create: &dyn Fn(&Path) -> std::io::Result<Box<dyn DurableWrite>>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = temp_path(path);
    let pause = std::env::var(PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis);
    let write = || -> std::io::Result<()> {
        let mut f = create(&tmp)?;
        let (head, tail) = data.split_at(data.len() / 2);
        f.write_all(head)?;
        if let Some(pause) = pause {
            f.flush()?;
            std::thread::sleep(pause);
        }
        f.write_all(tail)?;
        f.sync()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e
    })
    .with_context(|| {
        format!(
            "could not write {} (the previous file is untouched; free disk space or fix the permissions of {})",
            path.display(),
            dir.display()
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file that takes `room` bytes and then fails like a full disk.
    pub(crate) struct FullDisk {
        pub file: std::fs::File,
        pub room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.file.write(&buf[..n])
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }

    impl DurableWrite for FullDisk {
        fn sync(&mut self) -> std::io::Result<()> {
            self.file.sync_all()
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("selfsup-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.html");
        write_atomic(&path, b"old").unwrap();
        for room in [0, 2, 5] {
            let err = write_atomic_with(&path, b"new contents", &|p| {
                Ok(Box::new(FullDisk {
                    file: std::fs::File::create(p)?,
                    room,
                }))
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("report.html") && err.contains("no storage space"),
                "{err}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
            assert!(!temp_path(&path).exists());
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
