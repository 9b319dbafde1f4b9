//! Signed verifier verdicts: what `auditai verify --attest` and `auditai audit --attest` checked,
//! as an in-toto Statement with the SLSA Verification Summary Attestation v1 predicate and an
//! auditai extension listing every check row (and, for audits, the challenge and the replayed
//! segments). See `docs/attestations.md`.
//!
//! Owns the verdict format, its file names next to a manifest, and building one from a report.
//! No keys are read here and nothing is written: the command line signs and writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::ResourceDescriptor;
use crate::report::{Report, Status};
pub use crate::trust::VerdictKind;

pub use crate::manifest::VSA_PREDICATE;

/// A verdict's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VerificationResult {
    /// Every check held.
    Passed,
    /// A check failed.
    Failed,
}

impl std::fmt::Display for VerificationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerificationResult::Passed => "PASSED",
            VerificationResult::Failed => "FAILED",
        })
    }
}
/// The auditai extension's schema.
pub const EXTENSION_SCHEMA: &str = "https://auditai.dev/verdict-extension/v1";
/// The verifier id of the auditai command line.
pub const VERIFIER_ID: &str = "https://auditai.dev/verifier/cli";
/// The file-name prefix of verdicts written next to a manifest.
pub const FILE_PREFIX: &str = "verdict-";

/// A verdict statement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictStatement {
    /// Always the in-toto Statement v1 type.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts the verdict is about: the manifest's subjects.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`VSA_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The verification summary.
    pub predicate: Vsa,
}

/// The SLSA VSA v1 predicate with auditai's extension.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vsa {
    /// Who verified.
    pub verifier: Verifier,
    /// When (RFC 3339).
    pub time_verified: String,
    /// The resource verified: the manifest, as a path relative to the verdict's directory.
    pub resource_uri: String,
    /// The trust used: the policy file's digest, or the trusted keys'.
    pub policy: PolicyRef,
    /// The attestations verified: the manifest, with its sha256.
    pub input_attestations: Vec<Input>,
    /// `PASSED` or `FAILED`.
    pub verification_result: VerificationResult,
    /// Levels reached: `AUDITAI_VERIFIED` or `AUDITAI_AUDITED` when passed.
    pub verified_levels: Vec<String>,
    /// The SLSA spec version the predicate follows.
    pub slsa_version: String,
    /// auditai's extension: every check row, and the audit's replay.
    pub auditai: Extension,
}

/// The verifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verifier {
    /// [`VERIFIER_ID`].
    pub id: String,
    /// Tool versions.
    pub version: BTreeMap<String, String>,
}

/// The trust a verdict was reached under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyRef {
    /// `file:<policy path>`, `auditai:trusted-keys` for `--key`s, or `auditai:no-trust-named`
    /// (audits, which do not check signatures).
    pub uri: String,
    /// sha256 of the policy file, or of the sorted trusted key ids joined by newlines.
    pub digest: BTreeMap<String, String>,
}

/// One verified attestation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Input {
    /// Its path relative to the verdict's directory.
    pub uri: String,
    /// Its digests.
    pub digest: BTreeMap<String, String>,
}

/// auditai's extension of the VSA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// [`EXTENSION_SCHEMA`].
    pub schema: String,
    /// `verify` or `audit`.
    pub kind: VerdictKind,
    /// Every check row as the command reported it.
    pub checks: Vec<CheckRow>,
    /// For audits: the challenge and the replayed segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
    /// For disputes: the game, every move, and the referee's judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<Box<crate::dispute::verdict::DisputeSummary>>,
}

/// One check row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckRow {
    /// The check's id (`signature`, `subject`, `replay`, …).
    pub id: String,
    /// Its label.
    pub check: String,
    /// `pass`, `fail`, `warn`, `skip` or `claimed`.
    pub status: String,
    /// Why.
    pub detail: String,
}

/// What an audit replayed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditSummary {
    /// The challenge, hex.
    pub challenge: Option<String>,
    /// Where it came from.
    pub challenge_source: ChallengeSource,
    /// Transcript segments in the run.
    pub segments_total: usize,
    /// Each replayed segment.
    pub segments: Vec<SegmentRow>,
    /// Segments that matched.
    pub segments_passed: usize,
}

/// Where an audit's challenge came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeSource {
    /// Bytes the auditor chose (`--challenge`).
    Explicit,
    /// The block after the manifest's anchor (`--challenge-from-anchor`).
    Anchor,
    /// The block the receipt claims, not checked against the chain
    /// (`--allow-unconfirmed-challenge`).
    #[serde(rename = "anchor-unconfirmed")]
    AnchorUnconfirmed,
    /// Fresh randomness from the operating system.
    Random,
}

impl std::fmt::Display for ChallengeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChallengeSource::Explicit => "explicit",
            ChallengeSource::Anchor => "anchor",
            ChallengeSource::AnchorUnconfirmed => "anchor-unconfirmed",
            ChallengeSource::Random => "random",
        })
    }
}

/// How a replayed segment was compared with the recorded checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Bit for bit, on the backend that trained.
    Bitwise,
    /// Within the documented tolerances, across backends.
    Tolerance,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Comparison::Bitwise => "bitwise",
            Comparison::Tolerance => "tolerance",
        })
    }
}

/// One replayed segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentRow {
    /// Its index in the transcript.
    pub index: usize,
    /// Its epoch.
    pub epoch: usize,
    /// `pass` or `fail`.
    pub status: String,
    /// How the replayed weights were compared.
    pub comparison: Comparison,
    /// Why.
    pub detail: String,
}

/// The check rows of a report as a verdict records them.
pub fn rows(report: &Report) -> Vec<CheckRow> {
    report
        .checks
        .iter()
        .map(|c| CheckRow {
            id: serde_json::to_value(c.id)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            check: c.check.clone(),
            status: status_word(c.status).to_string(),
            detail: c.detail.clone(),
        })
        .collect()
}

/// A status as the `--json` reports spell it.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Warn => "warn",
        Status::Skip => "skip",
        Status::Claimed => "claimed",
        Status::Absent => "absent",
    }
}

/// A new verdict file next to `manifest`: `verdict-<kind>-<unix seconds>[-n].intoto.json`.
pub fn default_path(manifest: &Path, kind: VerdictKind) -> PathBuf {
    let dir = crate::run_dir::of_manifest(manifest);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut path = dir.join(format!("{FILE_PREFIX}{kind}-{now}.intoto.json"));
    let mut n = 1;
    while std::fs::symlink_metadata(&path).is_ok() {
        path = dir.join(format!("{FILE_PREFIX}{kind}-{now}-{n}.intoto.json"));
        n += 1;
    }
    path
}

/// Whether a run-directory entry is a verdict or one of its receipts or proofs.
pub fn is_verdict_file(name: &str) -> bool {
    name.starts_with(FILE_PREFIX)
        && (name.ends_with(".intoto.json")
            || name.ends_with(".anchor.json")
            || name.ends_with(".intoto.json.ots"))
}

/// What a verdict is built from.
pub struct Facts<'a> {
    /// `verify` or `audit`.
    pub kind: VerdictKind,
    /// The manifest verified.
    pub manifest: &'a Path,
    /// Its bytes.
    pub manifest_bytes: &'a [u8],
    /// Its subjects.
    pub subjects: Vec<ResourceDescriptor>,
    /// The trust used.
    pub policy: PolicyRef,
    /// Whether everything held.
    pub passed: bool,
    /// The report.
    pub report: &'a Report,
    /// The audit's replay.
    pub audit: Option<AuditSummary>,
    /// Where the verdict will be written.
    pub out: &'a Path,
}

/// Build the verdict statement.
pub fn statement(f: Facts<'_>) -> VerdictStatement {
    let out_dir = crate::run_dir::of_manifest(f.out);
    let t = crate::provenance::toolchain();
    let manifest_digest = BTreeMap::from([
        (
            "sha256".to_string(),
            crate::hash::sha256_hex(f.manifest_bytes),
        ),
        (
            "blake3".to_string(),
            crate::hash::Digest::of(f.manifest_bytes).hex(),
        ),
    ]);
    let uri = crate::fsio::relative_to(out_dir, f.manifest);
    let level = if f.kind == VerdictKind::Audit {
        "AUDITAI_AUDITED"
    } else {
        "AUDITAI_VERIFIED"
    };
    VerdictStatement {
        statement_type: crate::manifest::STATEMENT_TYPE.to_string(),
        subject: f.subjects,
        predicate_type: VSA_PREDICATE.to_string(),
        predicate: Vsa {
            verifier: Verifier {
                id: VERIFIER_ID.to_string(),
                version: BTreeMap::from([("auditai".to_string(), t.auditai)]),
            },
            time_verified: crate::manifest::now_rfc3339(),
            resource_uri: uri.clone(),
            policy: f.policy,
            input_attestations: vec![Input {
                uri,
                digest: manifest_digest,
            }],
            verification_result: if f.passed {
                VerificationResult::Passed
            } else {
                VerificationResult::Failed
            },
            verified_levels: if f.passed {
                vec![level.to_string()]
            } else {
                Vec::new()
            },
            slsa_version: "1.0".to_string(),
            auditai: Extension {
                schema: EXTENSION_SCHEMA.to_string(),
                kind: f.kind,
                checks: rows(f.report),
                audit: f.audit,
                dispute: None,
            },
        },
    }
}

/// The trust of `--key`s or a policy file, as a verdict records it.
pub fn policy_ref(policy_file: Option<&Path>, keyids: &[String]) -> PolicyRef {
    match policy_file.and_then(|p| std::fs::read(p).ok().map(|b| (p, b))) {
        Some((p, bytes)) => PolicyRef {
            uri: format!("file:{}", p.display()),
            digest: BTreeMap::from([("sha256".to_string(), crate::hash::sha256_hex(&bytes))]),
        },
        None if keyids.is_empty() => PolicyRef {
            uri: "auditai:no-trust-named".to_string(),
            digest: BTreeMap::new(),
        },
        None => {
            let mut ids = keyids.to_vec();
            ids.sort();
            PolicyRef {
                uri: "auditai:trusted-keys".to_string(),
                digest: BTreeMap::from([(
                    "sha256".to_string(),
                    crate::hash::sha256_hex(ids.join("\n").as_bytes()),
                )]),
            }
        }
    }
}
