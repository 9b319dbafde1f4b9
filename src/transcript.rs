//! The training commitment and the training transcript: what a run promises before its first
//! step, and a hash-chained record of every segment it trained.
//!
//! `commitment.json` is written before training starts; its blake3 digest is `h_0`. Each
//! transcript entry `i` (one per epoch, or per `audit.every_steps` steps) records the digests of
//! the weights and optimizer state after the segment, the digest of the segment's batch order and
//! its learning rate, and `h_i = blake3_derive_key(CONTEXT, h_{i-1} ‖ body_i)`, where `body_i` is
//! the entry's compact JSON without `prev` and `chain`. The manifest records the chain head, so
//! signing or anchoring the manifest covers every entry. Formats only: no training, no files
//! beyond reading and writing these two.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The backend family a run trained on; weights are bitwise reproducible within one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12 or GL through wgpu).
    Wgpu,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
        })
    }
}

/// The commitment's schema tag.
pub const COMMITMENT_SCHEMA: &str = "auditai.commitment/v1";
/// The blake3 key-derivation context of the chain.
const CONTEXT: &str = "auditai 2025 transcript v1";

/// A file the commitment pins: its name (as the manifest records it) and digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the project root (absolute when outside it).
    pub name: String,
    /// blake3, hex.
    pub blake3: String,
    /// sha256, hex (empty for a withheld file).
    pub sha256: String,
    /// Whether `blake3` is a withheld file's salted commitment (keyed BLAKE3) instead of its
    /// digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub salted: bool,
}

/// The code a run was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// The HEAD commit, when inside a git repository with commits.
    pub git_commit: Option<String>,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
    /// blake3 of the uncommitted diff, when dirty.
    pub diff_blake3: Option<String>,
}

/// Everything a run promises before its first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commitment {
    /// [`COMMITMENT_SCHEMA`].
    pub schema: String,
    /// Pipeline name.
    pub name: String,
    /// blake3 of the resolved spec (every hyper-parameter and the seed).
    pub spec_blake3: String,
    /// The seed (also inside the spec; repeated for readers).
    pub seed: u64,
    /// The spec file as written.
    pub spec_file: FileRef,
    /// The data files.
    pub data: Vec<FileRef>,
    /// The code state; `None` outside git.
    pub code: Option<CodeRef>,
    /// The backend that trains.
    pub backend: BackendKind,
    /// The kernels that compute it (CPU: the flex/gemm build and the instruction-set level it
    /// dispatches to; wgpu: adapter, driver and kernel selection): a replay is bitwise only on
    /// the same kernels. Absent in runs from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    /// blake3 of the initial weights (burnpack) drawn from the seed.
    pub initial_weights_blake3: String,
    /// RFC 3339 UTC time the commitment was made (claimed; an anchor proves it).
    pub committed_on: String,
}

impl Commitment {
    /// The file's bytes (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Per-source credit summed over `entries` in transcript order (`None` when no entry carries
/// credit, or their lengths disagree).
pub fn credit_totals(entries: &[Entry]) -> Option<Vec<f64>> {
    let mut total: Option<Vec<f64>> = None;
    for e in entries {
        let c = e.body.credit.as_ref()?;
        let t = total.get_or_insert_with(|| vec![0.0; c.len()]);
        if t.len() != c.len() {
            return None;
        }
        for (a, b) in t.iter_mut().zip(c) {
            *a += b;
        }
    }
    total
}

/// `h_0`: the digest of the commitment file's bytes.
pub fn chain_start(commitment_bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(commitment_bytes).as_bytes()
}

/// What a transcript entry records about one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// 1-based position in the transcript.
    pub index: usize,
    /// 1-based epoch the segment belongs to.
    pub epoch: usize,
    /// Steps `[start, end)` within the epoch.
    pub steps: [usize; 2],
    /// Learning rate of the segment.
    pub lr: f64,
    /// blake3 of the training-row indices visited by the segment, in order, as u64 LE.
    pub batch_order_blake3: String,
    /// Weights after the segment, relative to the run directory.
    pub weights: String,
    /// blake3 of the weights file.
    pub weights_blake3: String,
    /// Optimizer state after the segment, relative to the run directory.
    pub optimizer: String,
    /// blake3 of the optimizer-state file.
    pub optimizer_blake3: String,
    /// Per data source, the first-order value of the segment's steps (`data.sources` with two
    /// or more sources; docs/contributors.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<Vec<f64>>,
}

/// One transcript line: the body and its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The segment.
    #[serde(flatten)]
    pub body: Body,
    /// `h_{i-1}`, hex.
    pub prev: String,
    /// `h_i`, hex.
    pub chain: String,
}

/// `h_i` from `h_{i-1}` and entry `i`'s body.
pub fn link(prev: &[u8; 32], body: &Body) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(prev);
    // Serialising a struct of numbers and strings cannot fail.
    h.update(&serde_json::to_vec(body).unwrap_or_default());
    *h.finalize().as_bytes()
}

impl Entry {
    /// Chain `body` after `prev`.
    pub fn new(prev: &[u8; 32], body: Body) -> Entry {
        let chain = link(prev, &body);
        Entry {
            body,
            prev: hex::encode(prev),
            chain: hex::encode(chain),
        }
    }
}

/// The digest of a segment's batch order: the visited row indices as u64 LE.
pub fn order_digest(rows: &[usize]) -> String {
    let mut h = blake3::Hasher::new();
    for &r in rows {
        h.update(&(r as u64).to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Why a transcript's chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line of the first bad entry.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Recompute the chain from `h_0` over `entries`; returns the head.
pub fn check_chain(start: &[u8; 32], entries: &[Entry]) -> Result<[u8; 32], Broken> {
    let mut prev = *start;
    for (i, e) in entries.iter().enumerate() {
        let line = i + 1;
        if e.prev != hex::encode(prev) {
            return Err(Broken {
                line,
                message: format!(
                    "entry {line} does not follow entry {} (prev {} ≠ {})",
                    i,
                    e.prev,
                    hex::encode(prev)
                ),
            });
        }
        let h = link(&prev, &e.body);
        if e.chain != hex::encode(h) {
            return Err(Broken {
                line,
                message: format!("entry {line} was altered after it was chained"),
            });
        }
        prev = h;
    }
    Ok(prev)
}

/// Transcript lines as text (one compact JSON object per line).
pub fn to_jsonl(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Parse transcript text; the error names the 1-based line.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Entry>, TranscriptError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|reason| TranscriptError {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })
        })
        .collect()
}

/// A line of a transcript that is not an entry.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: not a transcript entry: {reason}", path.display())]
pub struct TranscriptError {
    /// The transcript file.
    pub path: std::path::PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What serde_json found (printed in the message, not chained as a source).
    pub reason: serde_json::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(index: usize) -> Body {
        Body {
            index,
            epoch: index,
            steps: [0, 4],
            lr: 0.01,
            batch_order_blake3: order_digest(&[3, 1, 2]),
            weights: format!("checkpoints/epoch-{index:04}.bpk"),
            weights_blake3: "aa".into(),
            optimizer: format!("checkpoints/epoch-{index:04}.optim.bpk"),
            optimizer_blake3: "bb".into(),
            credit: None,
        }
    }

    fn chain(start: &[u8; 32], n: usize) -> Vec<Entry> {
        let mut prev = *start;
        (1..=n)
            .map(|i| {
                let e = Entry::new(&prev, body(i));
                hex::decode_to_slice(&e.chain, &mut prev).unwrap();
                e
            })
            .collect()
    }

    #[test]
    fn chain_checks_and_names_the_first_bad_entry() {
        let start = chain_start(b"commitment");
        let entries = chain(&start, 3);
        let head = check_chain(&start, &entries).unwrap();
        assert_eq!(hex::encode(head), entries[2].chain);
        // Round trip through the file format.
        let parsed = parse_jsonl(&to_jsonl(&entries), Path::new("t")).unwrap();
        assert_eq!(parsed, entries);

        let mut altered = entries.clone();
        altered[1].body.lr = 0.02;
        let e = check_chain(&start, &altered).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "entry 2 was altered after it was chained");

        let mut dropped = entries.clone();
        dropped.remove(1);
        assert_eq!(check_chain(&start, &dropped).unwrap_err().line, 2);

        let other = chain_start(b"another commitment");
        assert_eq!(check_chain(&other, &entries).unwrap_err().line, 1);
    }

    #[test]
    fn order_digest_is_pinned() {
        assert_eq!(order_digest(&[]), blake3::hash(b"").to_hex().to_string());
        assert_ne!(order_digest(&[1, 2]), order_digest(&[2, 1]));
    }
}
