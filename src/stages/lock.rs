//! `auditai.lock`: what each stage last ran with (command, params, env, deps) and produced
//! (outs), and the signed pipeline manifest that recorded it. Kept next to the spec and meant to
//! be committed, like `dvc.lock`.
//!
//! Owns the lock format and its atomic write. A lock is input from outside: it is read bounded,
//! and a stage is reused only when the manifest the lock names still exists with the recorded
//! digest and records the same stage (see [`crate::stages`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsio;
use crate::manifest::ProducedBy;

/// The lock file's name, next to the spec.
pub const LOCK_FILE: &str = "auditai.lock";
/// The lock format's tag.
pub const LOCK_SCHEMA: &str = "auditai.lock/v1";
/// The largest lock auditai reads.
const MAX_LOCK: u64 = 64 << 20;

/// Errors reading or writing the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// It could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not a lock this auditai reads.
    #[error("{}:{line}:{column}: not an auditai lock file: {message}", path.display())]
    Format {
        /// The lock file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// The whole lock.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Always [`LOCK_SCHEMA`].
    pub schema: String,
    /// One entry per stage that has completed, by name.
    pub stages: BTreeMap<String, LockedStage>,
}

/// What one stage last ran with and produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LockedStage {
    /// `command` or `train`.
    pub kind: String,
    /// The command line (command stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// The working directory, root-relative (command stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wdir: Option<String>,
    /// blake3 of the resolved training configuration (training stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_blake3: Option<String>,
    /// Declared params and their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Declared env names and values; secret ones with no value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Option<String>>,
    /// Deps with their digests.
    pub deps: Vec<LockedPath>,
    /// Outs with their digests.
    pub outs: Vec<LockedPath>,
    /// The pipeline manifest that recorded this stage running.
    pub produced_by: ProducedBy,
}

/// A dep or out: its root-relative path and its blake3 (a file's, or the directory digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedPath {
    /// Root-relative path.
    pub path: String,
    /// blake3, hex.
    pub blake3: String,
    /// `file` or `directory`.
    pub kind: String,
}

/// The lock next to `spec`: `auditai.lock` for a spec alone in its directory, `NAME.lock` for
/// `NAME.yaml` when another pipeline spec shares the directory (`dvc.yaml`'s is always
/// `auditai.lock`: `dvc.lock` is DVC's).
pub fn path_for(spec: &Path) -> PathBuf {
    let dir = spec
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem.is_empty() || stem == "dvc" || !shares_directory(dir, spec) {
        return dir.join(LOCK_FILE);
    }
    dir.join(format!("{stem}.lock"))
}

/// Whether another pipeline spec (a `.yaml`/`.yml` file with a top-level `stages:`) lies in
/// `dir` beside `spec`. Looks at most at 256 entries and the first 64 KiB of each candidate.
fn shares_directory(dir: &Path, spec: &Path) -> bool {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let own = spec.file_name();
    entries.flatten().take(256).any(|e| {
        let path = e.path();
        let yaml = matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml")
        );
        if !yaml || path.file_name() == own || !e.file_type().is_ok_and(|t| t.is_file()) {
            return false;
        }
        let mut head = String::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(64 << 10).read_to_string(&mut head))
            .is_ok();
        read && head.lines().any(|l| l.starts_with("stages:"))
    })
}

impl Lock {
    /// Read the lock at `path`; an absent lock is an empty one.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let bytes = match fsio::read_bounded(path, MAX_LOCK) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lock {
                    schema: LOCK_SCHEMA.to_string(),
                    stages: BTreeMap::new(),
                });
            }
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| {
            let full = e.to_string();
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            LockError::Format {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message,
            }
        })?;
        if lock.schema != LOCK_SCHEMA {
            return Err(LockError::Format {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("schema is `{}`, expected {LOCK_SCHEMA}", lock.schema),
            });
        }
        Ok(lock)
    }

    /// Write the lock atomically (pretty JSON, sorted, one trailing newline).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        fsio::write_atomic(path, &bytes).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
