//! Content digests: blake3 (and, on request, sha256) of files and directory trees.
//!
//! Large files are memory-mapped and hashed on all cores; many small files are hashed in parallel
//! across files. A directory digest covers the complete sorted set of relative paths, entry kinds,
//! sizes and contents, so an added, removed, renamed or changed file changes it. Symlinks and
//! special files are recorded and reported, never followed. A stat cache skips re-reading files
//! whose size, mtime, ctime and inode are unchanged. No keys, no manifests, no network.

mod cache;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::Digest as _;

pub use cache::StatCache;

/// Files at least this large are memory-mapped and hashed with rayon, and kept in the stat cache.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// Errors from hashing.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct HashError {
    /// The path that could not be read.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> HashError + '_ {
    move |source| HashError {
        path: path.to_path_buf(),
        source,
    }
}

/// A 32-byte digest, shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }

    /// The blake3 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Compare in constant time (no early exit on the first differing byte).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

/// The digests of one regular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// blake3 of the content.
    pub blake3: Digest,
    /// sha256 of the content, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
}

/// One entry of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TreeEntry {
    /// A regular file.
    File {
        /// Path relative to the directory, `/`-separated.
        path: String,
        /// Its digests.
        #[serde(flatten)]
        digest: FileDigest,
    },
    /// A symbolic link (not followed).
    Symlink {
        /// Path relative to the directory.
        path: String,
        /// The link target as stored.
        target: String,
    },
    /// A FIFO, socket or device (not read).
    Special {
        /// Path relative to the directory.
        path: String,
    },
}

impl TreeEntry {
    /// The entry's relative path.
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::File { path, .. }
            | TreeEntry::Symlink { path, .. }
            | TreeEntry::Special { path } => path,
        }
    }
}

/// A directory tree: every entry, sorted by path, and the digest over all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeDigest {
    /// The directory digest (see [`tree_digest`]).
    pub blake3: Digest,
    /// Every entry, sorted by path.
    pub entries: Vec<TreeEntry>,
}

/// What a path turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    /// A regular file.
    File(FileDigest),
    /// A directory.
    Dir(TreeDigest),
    /// A symlink given directly (not followed).
    Symlink(String),
    /// A special file given directly (not read).
    Special,
}

/// Hashes files and trees, optionally through a stat cache.
pub struct Hasher<'c> {
    cache: Option<&'c StatCache>,
    sha256: bool,
}

impl<'c> Hasher<'c> {
    /// A hasher; `sha256` also computes sha256 for every file.
    pub fn new(cache: Option<&'c StatCache>, sha256: bool) -> Hasher<'c> {
        Hasher { cache, sha256 }
    }

    /// Hash whatever `path` is, without following a symlink.
    pub fn hash_path(&self, path: &Path) -> Result<Hashed, HashError> {
        let meta = std::fs::symlink_metadata(path).map_err(err(path))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(err(path))?;
            Ok(Hashed::Symlink(target.to_string_lossy().into_owned()))
        } else if ft.is_dir() {
            Ok(Hashed::Dir(self.hash_tree(path)?))
        } else if ft.is_file() {
            Ok(Hashed::File(self.hash_file_meta(path, &meta)?))
        } else {
            Ok(Hashed::Special)
        }
    }

    /// Hash one regular file.
    pub fn hash_file(&self, path: &Path) -> Result<FileDigest, HashError> {
        let meta = std::fs::metadata(path).map_err(err(path))?;
        if !meta.is_file() {
            // A FIFO or device would block or never end: never opened.
            return Err(HashError {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file; not opened",
                ),
            });
        }
        self.hash_file_meta(path, &meta)
    }

    fn hash_file_meta(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<FileDigest, HashError> {
        // Small files are cheaper to re-read than to look up.
        let key = self
            .cache
            .filter(|_| meta.len() >= MMAP_THRESHOLD)
            .and_then(|c| c.key(path, meta));
        if let (Some(cache), Some(key)) = (self.cache, &key)
            && let Some(hit) = cache.get(key)
            && (!self.sha256 || hit.sha256.is_some())
        {
            return Ok(hit);
        }
        let digest = hash_content(path, meta.len(), self.sha256)?;
        if let (Some(cache), Some(key)) = (self.cache, key) {
            cache.put(key, digest.clone());
        }
        Ok(digest)
    }

    /// Hash a directory tree: list it (not following symlinks), then hash the files in parallel.
    pub fn hash_tree(&self, dir: &Path) -> Result<TreeDigest, HashError> {
        let mut listed = Vec::new();
        list(dir, "", &mut listed)?;
        let entries: Result<Vec<TreeEntry>, HashError> = listed
            .into_par_iter()
            .map(|(rel, kind)| match kind {
                Listed::File(meta) => Ok(TreeEntry::File {
                    digest: self.hash_file_meta(&dir.join(&rel), &meta)?,
                    path: rel,
                }),
                Listed::Symlink(target) => Ok(TreeEntry::Symlink { path: rel, target }),
                Listed::Special => Ok(TreeEntry::Special { path: rel }),
            })
            .collect();
        let mut entries = entries?;
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(TreeDigest {
            blake3: tree_digest(&entries),
            entries,
        })
    }
}

enum Listed {
    File(std::fs::Metadata),
    Symlink(String),
    Special,
}

/// List `dir` recursively (never following a symlink), its subdirectories in parallel.
fn list(dir: &Path, prefix: &str, out: &mut Vec<(String, Listed)>) -> Result<(), HashError> {
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // Metadata of the entry itself (a symlink is not followed), relative to the open
        // directory.
        let meta = entry.metadata().map_err(err(&entry.path()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            subdirs.push((entry.path(), rel));
        } else if ft.is_file() {
            out.push((rel, Listed::File(meta)));
        } else if ft.is_symlink() {
            let path = entry.path();
            let target = std::fs::read_link(&path).map_err(err(&path))?;
            out.push((rel, Listed::Symlink(target.to_string_lossy().into_owned())));
        } else {
            out.push((rel, Listed::Special));
        }
    }
    let nested: Result<Vec<Vec<(String, Listed)>>, HashError> = subdirs
        .into_par_iter()
        .map(|(path, rel)| {
            let mut v = Vec::new();
            list(&path, &rel, &mut v).map(|()| v)
        })
        .collect();
    out.extend(nested?.into_iter().flatten());
    Ok(())
}

/// The directory digest: blake3 keyed by `derive_key("auditai 2025 directory v1")` over, for each
/// entry in path order, `kind (1 byte: f, l, s) ‖ u64le(len(path)) ‖ path ‖` then, for a file,
/// `u64le(size) ‖ blake3(content)`, for a symlink `u64le(len(target)) ‖ target`.
pub fn tree_digest(entries: &[TreeEntry]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("auditai 2025 directory v1");
    for e in entries {
        let path = e.path().as_bytes();
        let kind: u8 = match e {
            TreeEntry::File { .. } => b'f',
            TreeEntry::Symlink { .. } => b'l',
            TreeEntry::Special { .. } => b's',
        };
        h.update(&[kind]);
        h.update(&(path.len() as u64).to_le_bytes());
        h.update(path);
        match e {
            TreeEntry::File { digest, .. } => {
                h.update(&digest.size.to_le_bytes());
                h.update(&digest.blake3.0);
            }
            TreeEntry::Symlink { target, .. } => {
                h.update(&(target.len() as u64).to_le_bytes());
                h.update(target.as_bytes());
            }
            TreeEntry::Special { .. } => {}
        }
    }
    Digest(*h.finalize().as_bytes())
}

/// Read a file the listing says has `size` bytes: open, read, read the end, close. `fs::read`
/// and `read_to_end` would stat the file and seek in it again to size their buffer, half as
/// many system calls again on a tree of small files. Reading goes on to the end, so a file that
/// grew since it was listed is read whole.
fn read_small(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; size as usize + 1];
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(n * 2, 0);
        }
        match std::io::Read::read(&mut f, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Hash a file's content. Large files are memory-mapped and hashed on all cores with blake3;
/// sha256, when asked for, runs alongside on another thread.
fn hash_content(path: &Path, size: u64, with_sha256: bool) -> Result<FileDigest, HashError> {
    if size < MMAP_THRESHOLD {
        let bytes = read_small(path, size).map_err(err(path))?;
        return Ok(FileDigest {
            size: bytes.len() as u64,
            blake3: Digest(*blake3::hash(&bytes).as_bytes()),
            // Only when asked for: sha256 costs several times what blake3 does.
            sha256: with_sha256.then(|| Digest(sha2::Sha256::digest(&bytes).into())),
        });
    }
    let blake3 = || -> Result<Digest, HashError> {
        let mut h = blake3::Hasher::new();
        h.update_mmap_rayon(path).map_err(err(path))?;
        Ok(Digest(*h.finalize().as_bytes()))
    };
    let (blake3, sha256) = if with_sha256 {
        let (b, s) = rayon::join(blake3, || sha256_stream(path));
        (b?, Some(s?))
    } else {
        (blake3()?, None)
    };
    Ok(FileDigest {
        size,
        blake3,
        sha256,
    })
}

fn sha256_stream(path: &Path) -> Result<Digest, HashError> {
    let mut f = File::open(path).map_err(err(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest(h.finalize().into()))
}

/// blake3 and sha256 of bytes in memory.
/// Whether two hex digests name the same 32 bytes, compared in constant time. A malformed digest
/// equals nothing: every digest comparison in auditai goes through this or [`Digest::ct_eq`].
///
/// ```
/// use auditai::hash::hex_eq;
/// assert!(hex_eq(&"ab".repeat(32), &"AB".repeat(32)));
/// assert!(!hex_eq(&"ab".repeat(32), &"ab".repeat(31)));
/// assert!(!hex_eq("not hex", "not hex"));
/// ```
pub fn hex_eq(a: &str, b: &str) -> bool {
    match (Digest::from_hex(a), Digest::from_hex(b)) {
        (Some(x), Some(y)) => x.ct_eq(&y),
        _ => false,
    }
}

/// Why a digest-pinned file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinnedError {
    /// It could not be read (missing, not a regular file, over the size limit).
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// Its blake3 is not the recorded one.
    #[error("blake3 is {actual}, expected {expected}")]
    Changed {
        /// What the file hashes to.
        actual: Digest,
        /// What was recorded (hex, as found).
        expected: String,
    },
}

/// Read a file of at most `max` bytes (regular files only, see [`crate::fsio::read_bounded`])
/// and check that its blake3 is `expected` (hex). The one digest-checked read that `verify`,
/// `audit` and `--resume` share.
pub fn read_pinned(path: &Path, expected: &str, max: u64) -> Result<Vec<u8>, PinnedError> {
    let bytes = crate::fsio::read_bounded(path, max)?;
    let actual = Digest::of(&bytes);
    if !Digest::from_hex(expected).is_some_and(|e| e.ct_eq(&actual)) {
        return Err(PinnedError::Changed {
            actual,
            expected: expected.to_string(),
        });
    }
    Ok(bytes)
}

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// blake3 and sha256 of `bytes`.
pub fn bytes_digest(bytes: &[u8]) -> FileDigest {
    FileDigest {
        size: bytes.len() as u64,
        blake3: Digest(*blake3::hash(bytes).as_bytes()),
        sha256: Some(Digest(sha2::Sha256::digest(bytes).into())),
    }
}

#[cfg(test)]
mod tests;
