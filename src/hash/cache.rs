//! The stat cache: digests of files keyed by (absolute path, size, mtime, ctime, inode, device).
//!
//! Any write to a file changes its ctime, which no user can set back, so a changed file is always
//! re-read. Only files of at least 1 MiB are cached: smaller ones cost less to read than to look
//! up. The cache is an optimisation for `auditai hash`; `auditai verify`
//! never consults it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::{Digest, FileDigest};

const SCHEMA: &str = "auditai.hash-cache/v1";

/// A file's identity as far as the cache is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    path: String,
    stat: Stat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    stat: Stat,
    blake3: String,
    sha256: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    schema: String,
    entries: HashMap<String, Entry>,
}

/// A stat cache loaded (on first use) from, and saved to, one JSON file.
pub struct StatCache {
    file: PathBuf,
    entries: OnceLock<Mutex<HashMap<String, Entry>>>,
    dirty: AtomicBool,
}

impl StatCache {
    /// The default cache file: `$AUDITAI_CACHE_DIR`, else `$XDG_CACHE_HOME/auditai`, else
    /// `$HOME/.cache/auditai`, then `hash-cache-v1.json`.
    pub fn default_path() -> Option<PathBuf> {
        let dir = std::env::var_os("AUDITAI_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("auditai"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/auditai"))
            })?;
        Some(dir.join("hash-cache-v1.json"))
    }

    /// The cache at `file`, read when first consulted; a missing or unreadable cache starts empty.
    pub fn open(file: PathBuf) -> StatCache {
        StatCache {
            file,
            entries: OnceLock::new(),
            dirty: AtomicBool::new(false),
        }
    }

    fn entries(&self) -> &Mutex<HashMap<String, Entry>> {
        self.entries.get_or_init(|| {
            Mutex::new(
                std::fs::read(&self.file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<OnDisk>(&b).ok())
                    .filter(|d| d.schema == SCHEMA)
                    .map(|d| d.entries)
                    .unwrap_or_default(),
            )
        })
    }

    /// The key for a file, or `None` where the platform gives no inode and ctime.
    pub fn key(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Key> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Inode and device pin the file; an absolute path (no symlink resolution, no
            // syscalls) is enough to name it.
            let abs = std::path::absolute(path).ok()?;
            Some(Key {
                path: abs.to_string_lossy().into_owned(),
                stat: Stat {
                    size: meta.len(),
                    mtime_ns: meta
                        .mtime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(meta.mtime_nsec()),
                    ctime_ns: meta
                        .ctime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(meta.ctime_nsec()),
                    ino: meta.ino(),
                    dev: meta.dev(),
                },
            })
        }
        #[cfg(not(unix))]
        {
            let _ = (path, meta);
            None
        }
    }

    /// A cached digest for an unchanged file.
    pub fn get(&self, key: &Key) -> Option<FileDigest> {
        let entries = self.entries().lock().ok()?;
        let e = entries.get(&key.path)?;
        if e.stat != key.stat {
            return None;
        }
        Some(FileDigest {
            size: e.stat.size,
            blake3: Digest::from_hex(&e.blake3)?,
            sha256: match &e.sha256 {
                Some(h) => Some(Digest::from_hex(h)?),
                None => None,
            },
        })
    }

    /// Remember a file's digest.
    pub fn put(&self, key: Key, digest: FileDigest) {
        if let Ok(mut entries) = self.entries().lock() {
            entries.insert(
                key.path,
                Entry {
                    stat: key.stat,
                    blake3: digest.blake3.hex(),
                    sha256: digest.sha256.map(|d| d.hex()),
                },
            );
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Write the cache back if it changed (atomically; errors are the caller's to ignore).
    pub fn save(&self) -> std::io::Result<()> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(mut entries) = self.entries().lock() else {
            return Ok(());
        };
        let disk = OnDisk {
            schema: SCHEMA.to_string(),
            entries: std::mem::take(&mut *entries),
        };
        let bytes = serde_json::to_vec(&disk).map_err(std::io::Error::other)?;
        *entries = disk.entries;
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsio::write_atomic(&self.file, &bytes)
    }
}
