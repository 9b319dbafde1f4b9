//! The prediction log (`auditai predict --log FILE`): JSON Lines, one entry per prediction,
//! each carrying the hash of the one before, so that editing, deleting, inserting or reordering
//! an entry breaks the chain (`docs/eval.md`, "The prediction log").
//!
//! Owns the entry format, crash-safe appending and the chain check. Appends never rewrite a
//! complete entry: a batch is one write followed by fsync, and a torn last line left by a crash
//! (no newline) is cut off before the next append. Bounded: lines of at most 1 MiB.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The log format's tag, in every entry.
pub const LOG_SCHEMA: &str = "auditai.prediction-log/v1";
/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The longest line read.
const MAX_LINE: u64 = 1 << 20;

/// Errors reading or appending to a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// It could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An entry is malformed or the chain is broken at `line`.
    #[error("{}:{line}: {message}", path.display())]
    Broken {
        /// The log.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The model an entry's prediction came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// The manifest's path as given to `predict`, made absolute.
    pub manifest: String,
    /// blake3 of the manifest's bytes.
    pub blake3: String,
    /// Whether it was verified before loading (false with `--no-verify`).
    pub verified: bool,
}

/// One entry without its hash, in the order its fields are serialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Always [`LOG_SCHEMA`].
    pub schema: String,
    /// 0-based position in the log.
    pub seq: u64,
    /// When the prediction was made (RFC 3339, UTC).
    pub time: String,
    /// blake3 of the input row's features (see [`crate::predict::row_digest`]).
    pub input_blake3: String,
    /// The output row (prediction and probabilities).
    pub output: serde_json::Value,
    /// The model.
    pub model: ModelRef,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev: String,
}

/// What a chain check found.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Complete entries.
    pub entries: u64,
    /// The last entry's hash ([`GENESIS`] when empty).
    pub head: String,
    /// Every distinct model the entries name, in first-seen order.
    pub models: Vec<ModelRef>,
    /// Bytes of complete lines (a torn tail after them is not counted).
    pub complete_bytes: u64,
    /// Whether a torn last line (no newline) follows the complete entries.
    pub torn_tail: bool,
    /// For an anchored digest: the number of entries whose bytes hash to it.
    pub anchored_entries: Option<u64>,
}

/// The line of an entry: its body's JSON with `"hash":"…"` added as the last field, where the
/// hash is blake3 of the body's JSON.
fn line(body: &Body) -> (String, String) {
    let json = serde_json::to_string(body).unwrap_or_default();
    let hash = blake3::hash(json.as_bytes()).to_hex().to_string();
    let mut s = json;
    s.pop();
    s.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
    (s, hash)
}

/// Split a line into its body JSON (as hashed) and its recorded hash.
fn split(l: &str) -> Option<(String, &str)> {
    let at = l.rfind(",\"hash\":\"")?;
    let rest = &l[at + 9..];
    let hash = rest.strip_suffix("\"}")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((format!("{}}}", &l[..at]), hash))
}

/// Check the chain of the log at `path`, streaming; with `anchored`, also find the prefix of
/// whole entries whose sha256 is that digest.
pub fn check(path: &Path, anchored: Option<[u8; 32]>) -> Result<Chain, LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::fsio::open_regular(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut chain = Chain {
        head: GENESIS.to_string(),
        ..Default::default()
    };
    let mut sha = Sha256::new();
    if anchored.is_some_and(|a| a == <[u8; 32]>::from(Sha256::digest(b""))) {
        chain.anchored_entries = Some(0);
    }
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let broken = |message: String| LogError::Broken {
            path: path.to_path_buf(),
            line: lineno,
            message,
        };
        if buf.last() != Some(&b'\n') {
            if n as u64 > MAX_LINE {
                return Err(broken(format!("line longer than {MAX_LINE} bytes")));
            }
            chain.torn_tail = true;
            break;
        }
        let text = std::str::from_utf8(&buf[..n - 1]).map_err(|_| broken("not UTF-8".into()))?;
        let (body_json, hash) = split(text).ok_or_else(|| {
            broken("not a log entry (no trailing \"hash\" field of 64 hex digits)".into())
        })?;
        let actual = blake3::hash(body_json.as_bytes()).to_hex().to_string();
        if !crate::hash::hex_eq(&actual, hash) {
            return Err(broken(format!(
                "entry edited: its hash is {hash} but its content hashes to {actual}"
            )));
        }
        let body: Body = serde_json::from_str(&body_json)
            .map_err(|e| broken(format!("not a log entry: {e}")))?;
        if body.schema != LOG_SCHEMA {
            return Err(broken(format!(
                "schema is `{}`, expected {LOG_SCHEMA}",
                body.schema
            )));
        }
        if body.seq != chain.entries {
            return Err(broken(format!(
                "entry {} where entry {} belongs (an entry was deleted, inserted or moved)",
                body.seq, chain.entries
            )));
        }
        if !crate::hash::hex_eq(&body.prev, &chain.head) {
            return Err(broken(format!(
                "the chain is broken: prev is {}, the entry before hashes to {}",
                body.prev, chain.head
            )));
        }
        chain.entries += 1;
        chain.head = hash.to_string();
        chain.complete_bytes += n as u64;
        if !chain.models.contains(&body.model) {
            chain.models.push(body.model);
        }
        sha.update(&buf);
        if let Some(a) = anchored
            && <[u8; 32]>::from(sha.clone().finalize()) == a
        {
            chain.anchored_entries = Some(chain.entries);
        }
    }
    Ok(chain)
}

/// Appends entries to a log whose chain checked out.
pub struct Appender {
    path: PathBuf,
    file: std::fs::File,
    head: String,
    next: u64,
    /// Whether a torn last line was cut off when the log was opened.
    pub repaired: bool,
}

impl Appender {
    /// Open (or create) the log at `path`: check its chain, cut off a torn last line left by a
    /// crash, and position at the end. A broken chain is an error: nothing is appended to it.
    pub fn open(path: &Path) -> Result<Appender, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let exists = std::fs::symlink_metadata(path).is_ok();
        let chain = if exists {
            check(path, None)?
        } else {
            Chain {
                head: GENESIS.to_string(),
                ..Default::default()
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if chain.torn_tail {
            file.set_len(chain.complete_bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(chain.complete_bytes))
            .map_err(io)?;
        if !exists {
            crate::fsio::sync_parent(path).map_err(io)?;
        }
        Ok(Appender {
            path: path.to_path_buf(),
            file,
            head: chain.head,
            next: chain.entries,
            repaired: chain.torn_tail,
        })
    }

    /// Append one entry per `(input digest, output)` for `model`, in one write, then fsync.
    pub fn append(
        &mut self,
        model: &ModelRef,
        rows: &[(String, serde_json::Value)],
    ) -> Result<(), LogError> {
        let mut out = String::new();
        for (input, output) in rows {
            let body = Body {
                schema: LOG_SCHEMA.to_string(),
                seq: self.next,
                time: crate::manifest::now_rfc3339(),
                input_blake3: input.clone(),
                output: output.clone(),
                model: model.clone(),
                prev: self.head.clone(),
            };
            let (l, hash) = line(&body);
            out.push_str(&l);
            self.head = hash;
            self.next += 1;
        }
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(out.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Entries in the log.
    pub fn entries(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelRef {
        ModelRef {
            manifest: "/r/manifest.intoto.json".into(),
            blake3: "ab".repeat(32),
            verified: true,
        }
    }

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let mut a = Appender::open(&path).unwrap();
        let rows: Vec<_> = (0..n)
            .map(|i| (format!("{i:064x}"), serde_json::json!({ "prediction": i })))
            .collect();
        a.append(&model(), &rows).unwrap();
        (dir, path)
    }

    #[test]
    fn a_log_checks_and_continues_its_chain() {
        let (_d, path) = log_with(3);
        let c = check(&path, None).unwrap();
        assert_eq!(c.entries, 3);
        let mut a = Appender::open(&path).unwrap();
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        assert_eq!(check(&path, None).unwrap().entries, 4);
        assert_eq!(check(&path, None).unwrap().models, vec![model()]);
    }

    #[test]
    fn edits_deletions_and_reordering_are_detected() {
        let (_d, path) = log_with(3);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            (
                text.replacen("\"prediction\":1", "\"prediction\":7", 1),
                "2: entry edited",
            ),
            (
                format!("{}\n{}\n", lines[0], lines[2]),
                "2: entry 2 where entry 1 belongs",
            ),
            (
                format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
                "1: entry 1 where entry 0",
            ),
        ];
        for (bad, want) in cases {
            std::fs::write(&path, bad).unwrap();
            let e = check(&path, None).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let (_d, path) = log_with(2);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"schema\":\"auditai.predic").unwrap();
        let c = check(&path, None).unwrap();
        assert!(c.torn_tail);
        assert_eq!(c.entries, 2);
        let mut a = Appender::open(&path).unwrap();
        assert!(a.repaired);
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        let c = check(&path, None).unwrap();
        assert_eq!((c.entries, c.torn_tail), (3, false));
    }

    #[test]
    fn the_anchored_prefix_is_found() {
        let (_d, path) = log_with(2);
        let bytes = std::fs::read(&path).unwrap();
        let anchored: [u8; 32] = Sha256::digest(&bytes).into();
        let mut a = Appender::open(&path).unwrap();
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        assert_eq!(
            check(&path, Some(anchored)).unwrap().anchored_entries,
            Some(2)
        );
    }
}
