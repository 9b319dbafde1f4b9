//! The prediction log (`auditai predict --log FILE`): JSON Lines, one entry per prediction,
//! each carrying the hash of the one before, so that editing, deleting, inserting or reordering
//! an entry breaks the chain (`docs/eval.md`, "The prediction log").
//!
//! The chain alone is unkeyed: whoever can write the file can rewrite and re-hash it. What makes
//! entries tamper-evident is coverage: an anchor of a prefix of whole entries, or a signed
//! checkpoint (`predict --log LOG --sign-with KEY`, [`checkpoint_path`]) over the prefix's
//! sha256 and head; `auditai verify LOG` reports how many entries are covered.
//!
//! Owns the entry format, the checkpoint format, crash-safe appending under an exclusive lock,
//! and the chain check. Appends never rewrite a complete entry: a batch is one write followed by
//! fsync, and only a torn tail that follows a complete entry and could be the start of one (a
//! crash mid-write) is cut off before the next append; any other file is refused untouched.
//! Bounded: lines of at most 1 MiB.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::manifest::ResourceDescriptor;
use crate::sign::{Envelope, SecretKey};

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
    /// Another process holds the log (a concurrent `predict --log`).
    #[error("{}: in use by another auditai process (the log is locked); try again when it finishes", path.display())]
    Busy {
        /// The log.
        path: PathBuf,
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// The manifest's path, relative to the log's directory (absolute when it lies outside it,
    /// and then never opened by `verify`).
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
    /// For each digest asked about: the number of entries whose bytes hash to it.
    pub prefixes: Vec<Option<u64>>,
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

/// Check the chain of the log at `path`, streaming; for each of `digests`, also find the prefix
/// of whole entries whose sha256 it is (an anchor's, a checkpoint's).
pub fn check(path: &Path, digests: &[[u8; 32]]) -> Result<Chain, LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::fsio::open_regular(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut chain = Chain {
        head: GENESIS.to_string(),
        prefixes: vec![None; digests.len()],
        ..Default::default()
    };
    let mut seen: HashSet<ModelRef> = HashSet::new();
    let mut sha = Sha256::new();
    mark_prefixes(&mut chain, digests, &sha);
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
            if chain.entries == 0 || !could_be_entry(&buf) {
                return Err(broken(
                    "an incomplete last line that is not the start of a log entry: not a prediction log (nothing was changed)".into(),
                ));
            }
            chain.torn_tail = true;
            break;
        }
        let body = entry(&buf[..n - 1], &chain).map_err(broken)?;
        chain.entries += 1;
        chain.head = body.1;
        chain.complete_bytes += n as u64;
        if seen.insert(body.0.model.clone()) {
            chain.models.push(body.0.model);
        }
        sha.update(&buf);
        mark_prefixes(&mut chain, digests, &sha);
    }
    Ok(chain)
}

/// Whether a torn tail could be the beginning of an entry an interrupted append left.
fn could_be_entry(tail: &[u8]) -> bool {
    let start = format!("{{\"schema\":\"{LOG_SCHEMA}\"");
    let n = tail.len().min(start.len());
    tail[..n] == start.as_bytes()[..n]
}

/// Record which of `digests` the entries so far hash to.
fn mark_prefixes(chain: &mut Chain, digests: &[[u8; 32]], sha: &Sha256) {
    if digests.is_empty() {
        return;
    }
    let now: [u8; 32] = sha.clone().finalize().into();
    for (slot, d) in chain.prefixes.iter_mut().zip(digests) {
        if *d == now {
            *slot = Some(chain.entries);
        }
    }
}

/// One complete line: its body and hash, checked against the chain so far.
fn entry(line_bytes: &[u8], chain: &Chain) -> Result<(Body, String), String> {
    let text = std::str::from_utf8(line_bytes).map_err(|_| "not UTF-8".to_string())?;
    let (body_json, hash) = split(text).ok_or_else(|| {
        "not a log entry (no trailing \"hash\" field of 64 hex digits)".to_string()
    })?;
    let actual = blake3::hash(body_json.as_bytes()).to_hex().to_string();
    if !crate::hash::hex_eq(&actual, hash) {
        return Err(format!(
            "entry edited: its hash is {hash} but its content hashes to {actual}"
        ));
    }
    let body: Body =
        serde_json::from_str(&body_json).map_err(|e| format!("not a log entry: {e}"))?;
    if body.schema != LOG_SCHEMA {
        return Err(format!(
            "schema is `{}`, expected {LOG_SCHEMA}",
            body.schema
        ));
    }
    if body.seq != chain.entries {
        return Err(format!(
            "entry {} where entry {} belongs (an entry was deleted, inserted or moved)",
            body.seq, chain.entries
        ));
    }
    if !crate::hash::hex_eq(&body.prev, &chain.head) {
        return Err(format!(
            "the chain is broken: prev is {}, the entry before hashes to {}",
            body.prev, chain.head
        ));
    }
    Ok((body, hash.to_string()))
}

/// The predicate type of a signed log checkpoint.
pub const CHECKPOINT_PREDICATE: &str = "https://auditai.dev/prediction-log-checkpoint/v1";

/// Where a log's signed checkpoint lives: `LOG.checkpoint.intoto.json` next to it.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_os_string();
    s.push(".checkpoint.intoto.json");
    PathBuf::from(s)
}

/// A signed checkpoint: an in-toto Statement about the log's first `entries` entries (their
/// bytes' sha256 as the subject's digest) ending at `head`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointStatement {
    /// The in-toto Statement v1 type.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The log, with the sha256 of the covered prefix.
    pub subject: Vec<ResourceDescriptor>,
    /// [`CHECKPOINT_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What is covered.
    pub predicate: Checkpoint,
}

/// What a checkpoint covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Entries covered (the first `entries` of the log).
    pub entries: u64,
    /// The hash of the last covered entry.
    pub head: String,
    /// When it was signed (the signer's clock).
    pub time: String,
}

impl CheckpointStatement {
    /// The covered prefix's sha256, when well-formed.
    pub fn prefix_sha256(&self) -> Option<[u8; 32]> {
        let hex = self.subject.first()?.digest.get("sha256")?;
        let mut d = [0u8; 32];
        hex::decode_to_slice(hex, &mut d).ok()?;
        Some(d)
    }
}

/// Take an exclusive, non-blocking advisory lock on the open log.
fn lock(file: &std::fs::File, path: &Path) -> Result<(), LogError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is touched.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(LogError::Busy {
            path: path.to_path_buf(),
        })
    } else {
        Err(LogError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }
}

/// Appends entries to a log whose chain checked out, holding an exclusive lock on it.
pub struct Appender {
    path: PathBuf,
    file: std::fs::File,
    head: String,
    next: u64,
    bytes: u64,
    /// Whether a torn last line was cut off when the log was opened.
    pub repaired: bool,
}

impl Appender {
    /// Open (or create) the log at `path`: lock it (refused while another process holds it),
    /// check its chain, cut off a torn last line left by a crash, and position at the end. A
    /// broken chain, or a file that is not a log, is an error and is left untouched.
    pub fn open(path: &Path) -> Result<Appender, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let exists = match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is not a regular file (symlinks are not followed)",
                )));
            }
            Ok(_) => true,
            Err(_) => false,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).write(true).truncate(false);
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let mut file = opts.open(path).map_err(io)?;
        lock(&file, path)?;
        let chain = if exists {
            check(path, &[])?
        } else {
            Chain {
                head: GENESIS.to_string(),
                ..Default::default()
            }
        };
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
            bytes: chain.complete_bytes,
            repaired: chain.torn_tail,
        })
    }

    /// Sign a checkpoint over every entry so far with `key`, written next to the log
    /// ([`checkpoint_path`], replacing the previous one atomically).
    pub fn checkpoint(&self, key: &SecretKey) -> Result<PathBuf, LogError> {
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut sha = Sha256::new();
        let mut reader = crate::fsio::open_regular(&self.path)
            .map_err(io)?
            .take(self.bytes);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
        }
        let digest: [u8; 32] = sha.finalize().into();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let st = CheckpointStatement {
            statement_type: crate::manifest::STATEMENT_TYPE.to_string(),
            subject: vec![ResourceDescriptor {
                name: Some(name),
                digest: [("sha256".to_string(), hex::encode(digest))].into(),
                ..Default::default()
            }],
            predicate_type: CHECKPOINT_PREDICATE.to_string(),
            predicate: Checkpoint {
                entries: self.next,
                head: self.head.clone(),
                time: crate::manifest::now_rfc3339(),
            },
        };
        let payload = serde_json::to_vec(&st).unwrap_or_default();
        let mut env = Envelope::new(crate::sign::IN_TOTO_PAYLOAD_TYPE, &payload);
        env.sign(key);
        let out = checkpoint_path(&self.path);
        crate::fsio::write_atomic(&out, &env.to_bytes()).map_err(|source| LogError::Io {
            path: out.clone(),
            source,
        })?;
        Ok(out)
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
        self.bytes += out.len() as u64;
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
        let c = check(&path, &[]).unwrap();
        assert_eq!(c.entries, 3);
        let mut a = Appender::open(&path).unwrap();
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        assert_eq!(check(&path, &[]).unwrap().entries, 4);
        assert_eq!(check(&path, &[]).unwrap().models, vec![model()]);
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
            let e = check(&path, &[]).unwrap_err().to_string();
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
        let c = check(&path, &[]).unwrap();
        assert!(c.torn_tail);
        assert_eq!(c.entries, 2);
        let mut a = Appender::open(&path).unwrap();
        assert!(a.repaired);
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        let c = check(&path, &[]).unwrap();
        assert_eq!((c.entries, c.torn_tail), (3, false));
    }

    #[test]
    fn a_file_that_is_not_a_log_is_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("token", &b"ghp_abcdef0123456789"[..]),
            ("min.json", &br#"{"a":1,"b":[1,2,3]}"#[..]),
            (
                "torn-first",
                &br#"{"schema":"auditai.prediction-log/v1","seq":0"#[..],
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let e = Appender::open(&path).err().unwrap().to_string();
            assert!(e.contains("not a prediction log"), "{name}: {e}");
            assert_eq!(std::fs::read(&path).unwrap(), content, "{name} changed");
        }
        let (_d, path) = log_with(1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"garbage").unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(Appender::open(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_log_in_use_is_refused() {
        let (_d, path) = log_with(1);
        let held = Appender::open(&path).unwrap();
        let e = Appender::open(&path).err().unwrap();
        assert!(matches!(e, LogError::Busy { .. }), "{e}");
        drop(held);
        Appender::open(&path).unwrap();
    }

    #[test]
    fn the_anchored_prefix_is_found() {
        let (_d, path) = log_with(2);
        let bytes = std::fs::read(&path).unwrap();
        let anchored: [u8; 32] = Sha256::digest(&bytes).into();
        let mut a = Appender::open(&path).unwrap();
        a.append(&model(), &[("00".repeat(32), serde_json::json!(1))])
            .unwrap();
        assert_eq!(check(&path, &[anchored]).unwrap().prefixes, vec![Some(2)]);
    }
}
