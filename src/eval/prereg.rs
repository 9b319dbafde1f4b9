//! Pre-registration: whether a criteria file was committed, and the commitment anchored and
//! confirmed on a chain, before an evaluation started. One judgement, used when `eval` writes an
//! attestation and again when `verify` re-checks one (never trusting the recorded status).
//!
//! Only a commitment whose anchor was checked against the chain's node, with the node's block
//! time before the evaluation's start, is [`PreRegStatus::AnchoredBefore`]; the committer's own
//! clock or a receipt's unchecked timestamp is only [`PreRegStatus::ClaimedBefore`], which does
//! not satisfy `require_preregistration`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::criteria::{Commitment, commitment_path};
use super::{AnchorRef, CommitmentRef, PreRegistration};

/// Whether criteria provably predate an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreRegStatus {
    /// Anchored, and the anchor's block (checked against the chain's node) predates the start.
    AnchoredBefore,
    /// A commitment or an unchecked anchor says so; not proven.
    ClaimedBefore,
    /// Committed or anchored after the evaluation started.
    After,
    /// No usable commitment.
    None,
}

impl PreRegStatus {
    /// Whether it satisfies `require_preregistration`: only a proven anchor does.
    pub fn proven(self) -> bool {
        self == PreRegStatus::AnchoredBefore
    }
}

impl std::fmt::Display for PreRegStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PreRegStatus::AnchoredBefore => "anchored-before",
            PreRegStatus::ClaimedBefore => "claimed-before",
            PreRegStatus::After => "after",
            PreRegStatus::None => "none",
        })
    }
}

/// What the judgement needs: the criteria's bytes, when the evaluation started, the chain to ask
/// (none: offline), and the directory recorded paths are relative to.
pub struct Judge<'a> {
    /// The criteria file's bytes.
    pub criteria: &'a [u8],
    /// When the evaluation started.
    pub started: std::time::SystemTime,
    /// The chain whose node is asked for the anchor's block.
    pub online: Option<&'a crate::anchor::chain::Chain>,
    /// The attestation's directory.
    pub out_dir: &'a Path,
}

/// Judge the commitment next to the criteria file at `criteria_path`.
pub fn judge(criteria_path: &Path, j: &Judge<'_>) -> PreRegistration {
    let cpath = commitment_path(criteria_path);
    match crate::fsio::read_bounded(&cpath, 1 << 20) {
        Ok(cbytes) => judge_commitment(&cpath, &cbytes, j),
        Err(_) => none(format!(
            "no commitment ({}); run `auditai eval --commit-criteria` before opening the evaluation data",
            cpath.display()
        )),
    }
}

fn none(detail: String) -> PreRegistration {
    PreRegistration {
        status: PreRegStatus::None,
        detail,
        commitment: None,
    }
}

/// Judge the commitment at `cpath` whose bytes are `cbytes`.
pub fn judge_commitment(cpath: &Path, cbytes: &[u8], j: &Judge<'_>) -> PreRegistration {
    let c: Commitment = match serde_json::from_slice(cbytes) {
        Ok(c) => c,
        Err(e) => {
            return none(format!(
                "{}: not a criteria commitment: {e}",
                cpath.display()
            ));
        }
    };
    let d = crate::hash::bytes_digest(j.criteria);
    if !crate::hash::hex_eq(&c.blake3, &d.blake3.hex()) {
        return none(format!(
            "{} commits to other criteria (blake3 {}, the criteria file is {})",
            cpath.display(),
            c.blake3,
            d.blake3.hex()
        ));
    }
    let started_unix = j
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let anchored = anchor_of(cpath, cbytes, j.online);
    let (status, detail) = match &anchored {
        Some(a) => judge_anchor(a, started_unix),
        None => judge_clock(&c, j.started),
    };
    PreRegistration {
        status,
        detail,
        commitment: Some(CommitmentRef {
            name: crate::fsio::relative_to(j.out_dir, cpath),
            blake3: crate::hash::Digest::of(cbytes).hex(),
            committed_on: c.committed_on.clone(),
            anchor: anchored,
        }),
    }
}

/// The commitment's EVM anchor: its receipt must include these bytes; online, the block time is
/// the node's, else the receipt's (unchecked).
fn anchor_of(
    cpath: &Path,
    cbytes: &[u8],
    online: Option<&crate::anchor::chain::Chain>,
) -> Option<AnchorRef> {
    let r = crate::anchor::read_receipt(&crate::anchor::receipt_path(cpath)).ok()?;
    let root = crate::anchor::check_inclusion(&r, cbytes).ok()?;
    let e = r.evm?;
    let confirmed = online.and_then(|chain| crate::anchor::check_evm_online(chain, &e, &root).ok());
    Some(AnchorRef {
        chain: e.chain.clone(),
        block_number: e.block_number,
        block_timestamp: confirmed
            .as_ref()
            .map_or(e.block_timestamp, |c| c.block_timestamp),
        checked_online: confirmed.is_some(),
    })
}

fn judge_anchor(a: &AnchorRef, started_unix: u64) -> (PreRegStatus, String) {
    let when = crate::manifest::format_unix(a.block_timestamp);
    if a.block_timestamp > started_unix {
        return (
            PreRegStatus::After,
            format!("anchored at {when}, after the evaluation started"),
        );
    }
    if a.checked_online {
        (
            PreRegStatus::AnchoredBefore,
            format!(
                "committed and anchored on {} in block {} at {when} (the node's block time), before the evaluation started",
                a.chain, a.block_number
            ),
        )
    } else {
        (
            PreRegStatus::ClaimedBefore,
            format!(
                "the receipt says block {} on {} at {when}, before the evaluation started (claimed: not checked against the chain; pass --rpc/--chain)",
                a.block_number, a.chain
            ),
        )
    }
}

fn judge_clock(c: &Commitment, started: std::time::SystemTime) -> (PreRegStatus, String) {
    match humantime::parse_rfc3339(&c.committed_on) {
        Ok(t) if t <= started => (
            PreRegStatus::ClaimedBefore,
            format!(
                "committed at {} by the committer's clock (claimed; anchor the commitment to prove it)",
                c.committed_on
            ),
        ),
        Ok(_) => (
            PreRegStatus::After,
            format!(
                "committed at {}, after the evaluation started",
                c.committed_on
            ),
        ),
        Err(_) => (
            PreRegStatus::None,
            format!("unreadable commitment time `{}`", c.committed_on),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commitment(dir: &Path, criteria: &[u8], committed_on: &str) -> std::path::PathBuf {
        let d = crate::hash::bytes_digest(criteria);
        let c = serde_json::json!({
            "schema": "auditai.criteria-commitment/v1",
            "criteria": "c.yaml",
            "sha256": d.sha256.map(|s| s.hex()).unwrap_or_default(),
            "blake3": d.blake3.hex(),
            "committedOn": committed_on,
        });
        let p = dir.join("c.yaml.commitment.json");
        std::fs::write(&p, c.to_string()).unwrap();
        p
    }

    #[test]
    fn a_backdated_commitment_is_only_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let criteria = b"version: 1\ncriteria: []\n";
        let p = commitment(dir.path(), criteria, "2020-01-01T00:00:00Z");
        let j = Judge {
            criteria,
            started: std::time::SystemTime::now(),
            online: None,
            out_dir: dir.path(),
        };
        let pr = judge_commitment(&p, &std::fs::read(&p).unwrap(), &j);
        assert_eq!(pr.status, PreRegStatus::ClaimedBefore);
        assert!(!pr.status.proven(), "a hand-written date proves nothing");
    }

    #[test]
    fn an_unchecked_anchor_is_only_claimed_and_a_late_one_is_after() {
        let a = AnchorRef {
            chain: "local".into(),
            block_number: 5,
            block_timestamp: 1_000,
            checked_online: false,
        };
        assert_eq!(judge_anchor(&a, 2_000).0, PreRegStatus::ClaimedBefore);
        let checked = AnchorRef {
            checked_online: true,
            ..a.clone()
        };
        assert_eq!(
            judge_anchor(&checked, 2_000).0,
            PreRegStatus::AnchoredBefore
        );
        assert_eq!(judge_anchor(&checked, 500).0, PreRegStatus::After);
    }
}
