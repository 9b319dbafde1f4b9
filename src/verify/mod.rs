//! Verifying a provenance manifest: signatures, signer trust, and every file it names.
//!
//! Pure checks that return a [`Report`]; never prints, never exits. Biased to fail: a check that
//! cannot be made (no trusted key, a missing file) fails rather than passes, and a hashed
//! directory must hold exactly the files the manifest lists. Files are re-read from disk (the
//! stat cache is not consulted) and digests are compared in constant time.

pub mod policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::anchor;
use crate::hash::{Digest, FileDigest, Hasher, TreeEntry};
use crate::manifest::{self, ResourceDescriptor, Statement};
use crate::provenance;
use crate::sign::{self, PublicKey, SigCheck};

pub use policy::{Policy, PolicyError};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check holds.
    Pass,
    /// The check failed: verification fails.
    Fail,
    /// Worth knowing, not a failure.
    Warn,
    /// Not applicable here.
    Skip,
    /// Recorded in a file but not checked (no online check, no header to compare with): not a
    /// failure, and never shown as a pass.
    Claimed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Claimed => "claimed",
        })
    }
}

/// Which check a row reports: what callers and tests match on. The row's `check` is the human
/// label (the id's label, plus the file or chain it is about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    /// The manifest's envelope and statement.
    Envelope,
    /// Whether the manifest carries signatures at all.
    Signatures,
    /// One signature.
    Signature,
    /// Trusted signers without a policy.
    Signers,
    /// The trust policy.
    Policy,
    /// A subject file.
    Subject,
    /// A byproduct file.
    Byproduct,
    /// A hashed directory.
    Directory,
    /// A data or spec dependency.
    Dependency,
    /// The code commit.
    Code,
    /// The work tree's state at training.
    CodeState,
    /// Nothing unnamed in the run directory (audit: the whole file check).
    RunDirectory,
    /// Whether an anchor receipt exists.
    Anchor,
    /// The receipt file itself.
    AnchorReceipt,
    /// The receipt's Merkle path.
    AnchorMerklePath,
    /// The EVM anchor.
    AnchorEvm,
    /// The OpenTimestamps proof.
    AnchorOpentimestamps,
    /// Audit: the manifest can be audited.
    Manifest,
    /// Audit: the training commitment.
    Commitment,
    /// Audit: the commitment's anchor.
    CommitmentAnchor,
    /// Audit: the committed spec.
    Spec,
    /// Audit: the committed data.
    Data,
    /// Audit: the initial weights from the seed.
    InitialWeights,
    /// Audit: the transcript file.
    Transcript,
    /// Audit: the transcript's hash chain.
    TranscriptChain,
    /// Audit: the committed schedule.
    TranscriptSchedule,
    /// Audit: the final model.
    FinalModel,
    /// Audit: the checkpoint files.
    Checkpoints,
    /// Audit: the challenge.
    Challenge,
    /// Audit: the replay backend and comparison.
    Replay,
    /// Audit: the recomputed validation losses.
    Validation,
    /// Pipeline manifests: whether every stage completed.
    Pipeline,
    /// Pipeline manifests: one stage's deps, outs and provenance.
    Stage,
    /// Evaluation attestations: the evaluated model's manifest and subjects.
    EvalModel,
    /// Evaluation attestations: the evaluation data.
    EvalData,
    /// Evaluation attestations: the criteria file and the recorded verdicts.
    EvalCriteria,
    /// Evaluation attestations: whether the criteria predate the evaluation.
    PreRegistration,
    /// Evaluation attestations: the verdict.
    EvalVerdict,
    /// Verdicts: the manifest a verdict is about.
    VerdictResource,
    /// Verdicts: the result it records.
    VerdictResult,
    /// A verdict the trust policy requires next to the manifest.
    RequiredVerdict,
    /// Model cards and BOMs: the run they describe.
    Document,
    /// Prediction logs: the hash chain.
    LogChain,
    /// Prediction logs: a model the entries name.
    LogModel,
}

impl CheckId {
    /// The row label's first words.
    pub fn label(self) -> &'static str {
        match self {
            CheckId::Envelope => "envelope",
            CheckId::Signatures => "signatures",
            CheckId::Signature => "signature",
            CheckId::Signers => "signers",
            CheckId::Policy => "policy",
            CheckId::Subject => "subject",
            CheckId::Byproduct => "byproduct",
            CheckId::Directory => "directory",
            CheckId::Dependency => "dependency",
            CheckId::Code => "code",
            CheckId::CodeState => "code state",
            CheckId::RunDirectory => "run directory",
            CheckId::Anchor => "anchor",
            CheckId::AnchorReceipt => "anchor receipt",
            CheckId::AnchorMerklePath => "anchor merkle path",
            CheckId::AnchorEvm => "anchor evm",
            CheckId::AnchorOpentimestamps => "anchor opentimestamps",
            CheckId::Manifest => "manifest",
            CheckId::Commitment => "commitment",
            CheckId::CommitmentAnchor => "commitment anchor",
            CheckId::Spec => "spec",
            CheckId::Data => "data",
            CheckId::InitialWeights => "initial weights",
            CheckId::Transcript => "transcript",
            CheckId::TranscriptChain => "transcript chain",
            CheckId::TranscriptSchedule => "transcript schedule",
            CheckId::FinalModel => "final model",
            CheckId::Checkpoints => "checkpoints",
            CheckId::Challenge => "challenge",
            CheckId::Replay => "replay",
            CheckId::Validation => "validation",
            CheckId::Pipeline => "pipeline",
            CheckId::Stage => "stage",
            CheckId::EvalModel => "evaluated model",
            CheckId::EvalData => "evaluation data",
            CheckId::EvalCriteria => "criteria",
            CheckId::PreRegistration => "pre-registration",
            CheckId::EvalVerdict => "evaluation verdict",
            CheckId::VerdictResource => "verdict resource",
            CheckId::VerdictResult => "verdict result",
            CheckId::RequiredVerdict => "required verdict",
            CheckId::Document => "document",
            CheckId::LogChain => "log chain",
            CheckId::LogModel => "log model",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check this is.
    pub id: CheckId,
    /// What was checked, e.g. `subject model.bpk`.
    pub check: String,
    /// Its outcome.
    pub status: Status,
    /// Why.
    pub detail: String,
    /// What the user could do about it; the command line words it (flags live only there).
    #[serde(skip)]
    pub hint: Option<Hint>,
}

/// Something the user could do about a row, in the library's terms. `cli/` turns it into the
/// flag to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Name the keys or policy to trust.
    TrustKeys,
    /// Check the anchor online against a chain.
    CheckOnline,
    /// Declare expected extra files.
    AllowExtra,
    /// Supply a Bitcoin header or node.
    BitcoinHeader,
    /// Say where the data lives.
    Root,
    /// Anchor the commitment before training.
    AnchorCommitment,
    /// The auditor accepted an unconfirmed challenge by name.
    UnconfirmedChallenge,
    /// The auditor accepted a comparison within tolerances by name.
    Tolerance,
}

/// All checks, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    pub(crate) fn push(
        &mut self,
        id: CheckId,
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check {
            id,
            check: check.into(),
            status,
            detail: detail.into(),
            hint: None,
        });
    }

    /// A row with a hint for the user.
    pub(crate) fn push_hinted(
        &mut self,
        id: CheckId,
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        hint: Hint,
    ) {
        self.push(id, check, status, detail);
        if let Some(last) = self.checks.last_mut() {
            last.hint = Some(hint);
        }
    }

    /// A row whose label is its id's label.
    pub(crate) fn push_row(&mut self, id: CheckId, status: Status, detail: impl Into<String>) {
        self.push(id, id.label(), status, detail);
    }

    /// The first row of `id`.
    pub fn find(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Whether every required check holds (no failures).
    pub fn ok(&self) -> bool {
        !self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// How many rows are claims that were not checked.
    pub fn claimed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Claimed)
            .count()
    }
}

/// Errors that stop verification before it can judge anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The manifest file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to verify and whom to trust.
#[derive(Debug, Default)]
pub struct Options {
    /// Trusted public keys from `--key`.
    pub keys: Vec<PublicKey>,
    /// A trust policy.
    pub policy: Option<Policy>,
    /// Where the data and spec dependencies live (default: the git work tree holding the
    /// manifest, else the current directory).
    pub root: Option<PathBuf>,
    /// Check an EVM anchor online against this chain's RPC endpoint.
    pub online: Option<anchor::chain::Chain>,
    /// Top-level names in the run directory that the manifest does not name but that are
    /// expected there (files or directories).
    pub allow_extra: Vec<String>,
    /// Where OpenTimestamps Bitcoin attestations are checked: block headers the auditor trusts.
    pub bitcoin: anchor::bitcoin::Headers,
}

/// Verify the manifest at `path`.
pub fn verify(path: &Path, opts: &Options) -> Result<Report, VerifyError> {
    let bytes = read_manifest(path)?;
    let mut report = Report::default();
    let opened = match manifest::open(&bytes) {
        Ok(o) => {
            report.push_row(
                CheckId::Envelope,
                Status::Pass,
                "DSSE, in-toto Statement v1, SLSA Provenance v1",
            );
            o
        }
        Err(reason) => {
            report.push_row(CheckId::Envelope, Status::Fail, reason.to_string());
            return Ok(report);
        }
    };
    check_signatures(&opened, opts, &mut report);
    check_files(path, &opened.statement, opts, &mut report);
    check_required_verdicts(path, &bytes, opts, &mut report);
    check_anchor(path, sha256_of(&bytes), opts, &mut report);
    Ok(report)
}

/// Whom a command that acts on a manifest (runs its recorded command, loads its model) trusts to
/// have signed it.
pub enum Trust<'a> {
    /// The manifest must be signed as these options require (as `verify` checks it).
    Signers(&'a Options),
    /// The user chose to skip the signature check (`--trust-recorded-command`, `--no-verify`).
    Unchecked,
}

struct Signed<'a> {
    envelope: &'a sign::Envelope,
    payload: &'a [u8],
}

/// Whether the manifest's signatures satisfy the trust in `opts` (its `--key`s or policy): the
/// signature checks of `verify` alone. `Err` says why not, in the words of the failing row.
pub fn signatures_trusted(o: &manifest::Opened, opts: &Options) -> Result<(), String> {
    let mut report = Report::default();
    check_signatures(o, opts, &mut report);
    match report
        .checks
        .iter()
        .find(|c| matches!(c.status, Status::Fail | Status::Claimed | Status::Warn))
    {
        Some(c) => Err(format!("{}: {}", c.check, c.detail)),
        None => Ok(()),
    }
}

fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Verify a prediction log (`auditai predict --log`): its hash chain, that every model it names
/// still has the recorded manifest digest and that manifest's signatures satisfy the trust, and
/// the anchor receipt next to it (which covers a prefix of whole entries).
pub fn verify_log(path: &Path, opts: &Options) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    let rpath = anchor::receipt_path(path);
    let receipt = if rpath.exists() {
        match anchor::read_receipt(&rpath) {
            Ok(r) => Some(r),
            Err(e) => {
                report.push_row(CheckId::AnchorReceipt, Status::Fail, e.to_string());
                None
            }
        }
    } else {
        None
    };
    let target = receipt.as_ref().and_then(|r| {
        let mut d = [0u8; 32];
        hex::decode_to_slice(&r.manifest_sha256, &mut d)
            .ok()
            .map(|_| d)
    });
    let chain = match crate::predlog::check(path, target) {
        Ok(c) => c,
        Err(crate::predlog::LogError::Io { path, source }) => {
            return Err(VerifyError::Read { path, source });
        }
        Err(e) => {
            report.push_row(CheckId::LogChain, Status::Fail, e.to_string());
            return Ok(report);
        }
    };
    report.push_row(
        CheckId::LogChain,
        Status::Pass,
        format!(
            "{} entries, every hash and link holds; head {}",
            chain.entries, chain.head
        ),
    );
    if chain.torn_tail {
        report.push_row(
            CheckId::LogChain,
            Status::Warn,
            format!(
                "a torn last line follows entry {} (an interrupted write; the next append cuts it off)",
                chain.entries
            ),
        );
    }
    for m in &chain.models {
        let label = format!("{} {}", CheckId::LogModel.label(), m.manifest);
        let (status, detail) = log_model(m, opts);
        report.push(CheckId::LogModel, label, status, detail);
    }
    match (&receipt, chain.anchored_entries) {
        (None, _) => report.push_row(
            CheckId::Anchor,
            Status::Skip,
            "no anchor receipt next to the log",
        ),
        (Some(_), None) => report.push_row(
            CheckId::AnchorMerklePath,
            Status::Fail,
            "the receipt's digest is not that of any prefix of whole entries: anchored entries were changed",
        ),
        (Some(_), Some(n)) => {
            report.push_row(
                CheckId::Anchor,
                Status::Pass,
                format!("the receipt covers the first {n} of {} entries", chain.entries),
            );
            if let Some(d) = target {
                check_anchor(path, d, opts, &mut report);
            }
        }
    }
    Ok(report)
}

/// One model a prediction log names: its manifest unchanged and signed as the trust requires.
fn log_model(m: &crate::predlog::ModelRef, opts: &Options) -> (Status, String) {
    let path = Path::new(&m.manifest);
    let bytes = match crate::hash::read_pinned(path, &m.blake3, crate::fsio::MAX_DOCUMENT) {
        Ok(b) => b,
        Err(e) => {
            return (
                Status::Fail,
                format!("the manifest is not as the entries record: {e}"),
            );
        }
    };
    let opened = match manifest::open(&bytes) {
        Ok(o) => o,
        Err(e) => return (Status::Fail, e.to_string()),
    };
    match signatures_trusted(&opened, opts) {
        Err(why) => (Status::Fail, why),
        Ok(()) if !m.verified => (
            Status::Warn,
            "the manifest verifies now, but these predictions were made with --no-verify".into(),
        ),
        Ok(()) => (
            Status::Pass,
            format!(
                "manifest blake3 {} unchanged, signed by a trusted key",
                m.blake3
            ),
        ),
    }
}

/// Open a DSSE-wrapped statement of type `T` and push its envelope and signature rows; `None`
/// (after a failing envelope row) when it is not one.
fn open_signed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    ok: &str,
    opts: &Options,
    report: &mut Report,
) -> Option<T> {
    let parsed = manifest::open_envelope(bytes)
        .map_err(|e| e.to_string())
        .and_then(|(env, payload, value)| {
            serde_json::from_value::<T>(value)
                .map(|st| (env, payload, st))
                .map_err(|e| format!("not {what}: {e}"))
        });
    match parsed {
        Ok((envelope, payload, st)) => {
            report.push_row(CheckId::Envelope, Status::Pass, ok);
            check_envelope_signatures(&envelope, &payload, opts, report);
            Some(st)
        }
        Err(why) => {
            report.push_row(CheckId::Envelope, Status::Fail, why);
            None
        }
    }
}

/// Verify an evaluation attestation (`auditai eval`): its signatures, that the model's
/// manifest and subjects are the ones it names, the evaluation data and criteria files where
/// present, the recorded verdicts against the recorded metrics, pre-registration, the verdict
/// itself (FAILED fails), and its anchor.
pub fn verify_eval(path: &Path, opts: &Options) -> Result<Report, VerifyError> {
    use crate::eval::EvalStatement;
    let bytes = read_manifest(path)?;
    let mut report = Report::default();
    let Some(st) = open_signed::<EvalStatement>(
        &bytes,
        "an auditai evaluation attestation",
        "DSSE, in-toto Statement v1, auditai evaluation v1",
        opts,
        &mut report,
    ) else {
        return Ok(report);
    };
    let dir = run_dir_of(path);
    let ev = &st.predicate;
    let resolve = |name: &str| crate::fsio::recorded(dir, name).map_err(|e| e.to_string());
    // The model: its manifest unchanged, and the subjects are its own.
    let model = resolve(&ev.model.manifest).and_then(|p| {
        crate::hash::read_pinned(&p, &ev.model.manifest_blake3, crate::fsio::MAX_DOCUMENT)
            .map_err(|e| format!("{}: {e}", p.display()))
    });
    match model.map(|b| manifest::open(&b).map_err(|e| e.to_string())) {
        Ok(Ok(m)) => {
            let theirs: Vec<&ResourceDescriptor> = m.statement.subject.iter().collect();
            let all_match = st.subject.iter().all(|s| theirs.contains(&s));
            let signed = signatures_trusted(&m, opts);
            let (status, detail) = match (all_match, signed) {
                (false, _) => (
                    Status::Fail,
                    "the attestation's subjects are not the manifest's subjects".to_string(),
                ),
                (true, Ok(())) => (
                    Status::Pass,
                    format!(
                        "{} unchanged; its subjects are this attestation's; signed by a trusted key",
                        ev.model.manifest
                    ),
                ),
                (true, Err(why)) => (
                    Status::Warn,
                    format!(
                        "{} unchanged and its subjects match, but its signatures do not satisfy the trust ({why})",
                        ev.model.manifest
                    ),
                ),
            };
            report.push_row(CheckId::EvalModel, status, detail);
        }
        Ok(Err(why)) | Err(why) => report.push_row(CheckId::EvalModel, Status::Fail, why),
    }
    // The data, when it is here to re-hash.
    match resolve(&ev.data.name) {
        Ok(p) if p.exists() => match Hasher::new(None, true).hash_file(&p) {
            Ok(d) => {
                let same = crate::hash::hex_eq(&d.blake3.hex(), &ev.data.blake3)
                    && d.sha256
                        .is_some_and(|s| crate::hash::hex_eq(&s.hex(), &ev.data.sha256));
                report.push_row(
                    CheckId::EvalData,
                    if same { Status::Pass } else { Status::Fail },
                    if same {
                        format!(
                            "{}: {} rows, blake3 {}",
                            ev.data.name, ev.data.rows, ev.data.blake3
                        )
                    } else {
                        format!(
                            "{} changed since the evaluation: blake3 is {}",
                            ev.data.name, d.blake3
                        )
                    },
                );
            }
            Err(e) => report.push_row(CheckId::EvalData, Status::Fail, e.to_string()),
        },
        _ => report.push_row(
            CheckId::EvalData,
            Status::Claimed,
            format!(
                "{} is not here to re-hash; the attestation records blake3 {}",
                ev.data.name, ev.data.blake3
            ),
        ),
    }
    // The criteria: the file where present, and verdicts that follow from the metrics.
    match &ev.criteria {
        None => report.push_row(
            CheckId::EvalCriteria,
            Status::Skip,
            "evaluated without criteria",
        ),
        Some(c) => {
            let rejudged: Vec<crate::eval::Judged> = c
                .criteria
                .criteria
                .iter()
                .map(|k| k.judge(&ev.overall, &ev.subgroups))
                .collect();
            let consistent = rejudged
                .iter()
                .zip(&c.results)
                .all(|(a, b)| a.passed == b.passed && a.value == b.value)
                && Some(crate::eval::Evaluation::verdict_of(Some(c))) == Some(ev.verdict.as_str());
            let file = resolve(&c.name).ok().filter(|p| p.exists());
            let file_ok = file
                .as_ref()
                .map(|p| crate::hash::read_pinned(p, &c.blake3, crate::fsio::MAX_DOCUMENT).is_ok());
            let (status, detail) = match (consistent, file_ok) {
                (false, _) => (
                    Status::Fail,
                    "the recorded verdicts do not follow from the recorded metrics".to_string(),
                ),
                (true, Some(false)) => (
                    Status::Fail,
                    format!("{} changed since the evaluation", c.name),
                ),
                (true, Some(true)) => (
                    Status::Pass,
                    format!(
                        "{} unchanged; every verdict follows from the metrics",
                        c.name
                    ),
                ),
                (true, None) => (
                    Status::Claimed,
                    format!(
                        "{} is not here to re-hash; every verdict follows from the recorded metrics",
                        c.name
                    ),
                ),
            };
            report.push_row(CheckId::EvalCriteria, status, detail);
        }
    }
    let pr = &ev.pre_registration;
    let status = match pr.status.as_str() {
        "anchored-before" => Status::Pass,
        "claimed-before" => Status::Claimed,
        _ if ev.criteria.is_none() => Status::Skip,
        _ => Status::Warn,
    };
    let label = match pr.status.as_str() {
        "anchored-before" | "claimed-before" => "pre-registered",
        _ => "NOT pre-registered",
    };
    report.push_row(
        CheckId::PreRegistration,
        status,
        format!("{label}: {}", pr.detail),
    );
    match ev.verdict.as_str() {
        "PASSED" => report.push_row(
            CheckId::EvalVerdict,
            Status::Pass,
            "PASSED: every criterion holds",
        ),
        "NO-CRITERIA" => report.push_row(CheckId::EvalVerdict, Status::Skip, "no criteria"),
        _ => {
            let failed: Vec<String> = ev
                .criteria
                .iter()
                .flat_map(|c| &c.results)
                .filter(|r| !r.passed)
                .map(|r| r.criterion.clone())
                .collect();
            report.push_row(
                CheckId::EvalVerdict,
                Status::Fail,
                format!("FAILED: {}", failed.join("; ")),
            );
        }
    }
    check_anchor(path, sha256_of(&bytes), opts, &mut report);
    Ok(report)
}

/// The verdicts a trust policy requires: for each, a verdict file next to the manifest of that
/// kind, about exactly these manifest bytes, PASSED, signed by one of the named verifiers, and for
/// audits with enough replayed segments, all matching.
fn check_required_verdicts(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let Some(policy) = &opts.policy else { return };
    if policy.verdicts.is_empty() {
        return;
    }
    let dir = run_dir_of(path);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .is_some_and(|n| {
                            n.starts_with(crate::vsa::FILE_PREFIX) && n.ends_with(".intoto.json")
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let manifest_sha = hex::encode(sha256_of(bytes));
    for req in &policy.verdicts {
        let names: Vec<&str> = req.by.iter().map(|s| s.name.as_str()).collect();
        let label = format!(
            "{} {} by {}{}",
            CheckId::RequiredVerdict.label(),
            req.kind,
            names.join(" or "),
            if req.kind == "audit" && req.min_segments > 0 {
                format!(", at least {} segments", req.min_segments)
            } else {
                String::new()
            }
        );
        let keys: Vec<PublicKey> = req.by.iter().map(|s| s.key.clone()).collect();
        let mut why_not = Vec::new();
        let found = files
            .iter()
            .find(|f| match verdict_meets(f, req, &keys, &manifest_sha) {
                Ok(()) => true,
                Err(why) => {
                    why_not.push(format!(
                        "{}: {why}",
                        f.file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default()
                    ));
                    false
                }
            });
        match found {
            Some(f) => report.push(
                CheckId::RequiredVerdict,
                label,
                Status::Pass,
                format!("{} satisfies it", f.display()),
            ),
            None => report.push(
                CheckId::RequiredVerdict,
                label,
                Status::Fail,
                if why_not.is_empty() {
                    "no verdict next to the manifest".to_string()
                } else {
                    format!("no verdict satisfies it ({})", why_not.join("; "))
                },
            ),
        }
    }
}

fn verdict_meets(
    file: &Path,
    req: &policy::VerdictRequirement,
    keys: &[PublicKey],
    manifest_sha: &str,
) -> Result<(), String> {
    let bytes =
        crate::fsio::read_bounded(file, crate::fsio::MAX_DOCUMENT).map_err(|e| e.to_string())?;
    let (envelope, payload, value) = manifest::open_envelope(&bytes).map_err(|e| e.to_string())?;
    let st: crate::vsa::VerdictStatement =
        serde_json::from_value(value).map_err(|_| "not a verdict".to_string())?;
    let v = &st.predicate;
    if st.predicate_type != crate::vsa::VSA_PREDICATE || v.auditai.kind != req.kind {
        return Err(format!("a {} verdict", v.auditai.kind));
    }
    if v.verification_result != "PASSED" {
        return Err(v.verification_result.clone());
    }
    let about = v
        .input_attestations
        .first()
        .and_then(|i| i.digest.get("sha256"))
        .is_some_and(|d| crate::hash::hex_eq(d, manifest_sha));
    if !about {
        return Err("about another manifest".into());
    }
    let signed = envelope.signatures.iter().any(|sig| {
        matches!(
            sign::check_signature(&envelope, &payload, sig, keys),
            SigCheck::Valid(_)
        )
    });
    if !signed {
        return Err("not signed by a named verifier".into());
    }
    if req.kind == "audit" {
        let a = v.auditai.audit.as_ref().ok_or("no audit summary")?;
        if a.segments.len() < req.min_segments || a.segments_passed < a.segments.len() {
            return Err(format!(
                "{} of {} replayed segments matched, {} required",
                a.segments_passed,
                a.segments.len(),
                req.min_segments
            ));
        }
    }
    Ok(())
}

/// Verify a verdict (`verify --attest`, `audit --attest`): its signatures, that the manifest it
/// names is still those bytes and has those subjects, the result it records, and its anchor.
pub fn verify_verdict(path: &Path, opts: &Options) -> Result<Report, VerifyError> {
    let bytes = read_manifest(path)?;
    let mut report = Report::default();
    let Some(st) = open_signed::<crate::vsa::VerdictStatement>(
        &bytes,
        "an auditai verdict",
        "DSSE, in-toto Statement v1, SLSA Verification Summary v1",
        opts,
        &mut report,
    ) else {
        return Ok(report);
    };
    let v = &st.predicate;
    let dir = run_dir_of(path);
    let resource = v
        .input_attestations
        .first()
        .ok_or_else(|| "the verdict names no manifest".to_string())
        .and_then(|i| {
            let p = crate::fsio::recorded(dir, &i.uri).map_err(|e| e.to_string())?;
            let b = crate::fsio::read_bounded(&p, crate::fsio::MAX_DOCUMENT)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let sha = hex::encode(sha256_of(&b));
            if !i
                .digest
                .get("sha256")
                .is_some_and(|d| crate::hash::hex_eq(d, &sha))
            {
                return Err(format!(
                    "{} is not the manifest the verdict is about (sha256 {sha})",
                    i.uri
                ));
            }
            let subjects_match = manifest::open(&b)
                .map(|o| o.statement.subject == st.subject)
                .unwrap_or(false);
            if !subjects_match {
                return Err("the verdict's subjects are not the manifest's".to_string());
            }
            Ok(i.uri.clone())
        });
    match resource {
        Ok(uri) => report.push_row(
            CheckId::VerdictResource,
            Status::Pass,
            format!(
                "about {uri} (unchanged) and its {} subject(s)",
                st.subject.len()
            ),
        ),
        Err(why) => report.push_row(CheckId::VerdictResource, Status::Fail, why),
    }
    let replay = v.auditai.audit.as_ref().map_or(String::new(), |a| {
        format!(
            "; challenge {} ({}), {} of {} replayed segments matched",
            a.challenge.as_deref().unwrap_or("?"),
            a.challenge_source,
            a.segments_passed,
            a.segments.len()
        )
    });
    let detail = format!(
        "{} {} by {} at {}: {} checks{replay}",
        v.auditai.kind,
        v.verification_result,
        v.verifier.id,
        v.time_verified,
        v.auditai.checks.len()
    );
    report.push_row(
        CheckId::VerdictResult,
        if v.verification_result == "PASSED" {
            Status::Pass
        } else {
            Status::Fail
        },
        detail,
    );
    check_anchor(path, sha256_of(&bytes), opts, &mut report);
    Ok(report)
}

/// Verify a model card or CycloneDX BOM from `auditai export`: that the manifest it names is
/// those bytes and its subjects are the document's, and that the manifest is signed as the
/// trust requires.
pub fn verify_document(path: &Path, opts: &Options) -> Result<Report, VerifyError> {
    let bytes = read_manifest(path)?;
    let mut report = Report::default();
    let Some(b) = crate::export::binding_of(&bytes) else {
        report.push_row(
            CheckId::Document,
            Status::Fail,
            "not a model card or BOM exported by auditai",
        );
        return Ok(report);
    };
    match crate::export::check_binding(path, &b) {
        Ok(detail) => report.push_row(CheckId::Document, Status::Pass, detail),
        Err(why) => {
            report.push_row(CheckId::Document, Status::Fail, why);
            return Ok(report);
        }
    }
    let opened = crate::fsio::recorded(run_dir_of(path), &b.manifest)
        .ok()
        .and_then(|p| read_manifest(&p).ok())
        .and_then(|m| manifest::open(&m).ok());
    match opened {
        Some(o) => check_signatures(&o, opts, &mut report),
        None => report.push_row(
            CheckId::Signatures,
            Status::Fail,
            "the manifest cannot be opened",
        ),
    }
    Ok(report)
}

/// Whether `path` looks like a prediction log (its first line is a log entry).
pub fn is_prediction_log(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 64];
    let prefix = format!("{{\"schema\":\"{}\"", crate::predlog::LOG_SCHEMA);
    crate::fsio::open_regular(path)
        .and_then(|mut f| f.read(&mut head))
        .is_ok_and(|n| head[..n].starts_with(prefix.as_bytes()))
}

/// Read a manifest named on the command line (bounded, regular files only).
pub fn read_manifest(path: &Path) -> Result<Vec<u8>, VerifyError> {
    crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| VerifyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The run directory of a manifest: the directory holding it.
pub fn run_dir_of(manifest: &Path) -> &Path {
    manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Re-hash every file the statement names (subjects and byproducts next to the manifest,
/// dependencies under the root), look up the code commit, and check that the run directory holds
/// nothing the manifest does not name. The part of `verify` that `audit` repeats before replay.
pub fn check_files(path: &Path, st: &Statement, opts: &Options, report: &mut Report) {
    let dir = run_dir_of(path);
    let hasher = Hasher::new(None, true);
    if let Some(ext) = &st.predicate.pipeline {
        check_pipeline(path, st, ext, opts, report);
        return;
    }
    for s in &st.subject {
        check_file(CheckId::Subject, s, dir, &hasher, report);
    }
    for b in &st.predicate.run_details.byproducts {
        if b.is_directory() {
            check_tree(b, dir, &hasher, report);
        } else {
            check_file(CheckId::Byproduct, b, dir, &hasher, report);
        }
    }
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| provenance::project_root(dir));
    for d in &st.predicate.build_definition.resolved_dependencies {
        if d.uri.as_deref().is_some_and(|u| u.starts_with("file:")) {
            check_file(CheckId::Dependency, d, &root, &hasher, report);
        } else if d.name.as_deref() == Some("code") {
            check_code(d, &root, report);
        }
    }
    check_extras(path, st, &opts.allow_extra, report);
}

/// A pipeline manifest's files: subjects and external deps under the project root, the logs in
/// the run directory, then every stage's deps and outs, and where a stage was reused, the
/// manifest that recorded it running.
fn check_pipeline(
    path: &Path,
    st: &Statement,
    ext: &manifest::PipelineExtension,
    opts: &Options,
    report: &mut Report,
) {
    let dir = run_dir_of(path);
    let hasher = Hasher::new(None, true);
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| crate::stages::rerun::project_root(path, ext.run_dir.as_deref()));
    if ext.complete {
        report.push_row(
            CheckId::Pipeline,
            Status::Pass,
            format!(
                "{}: every stage ran or was reused ({})",
                ext.name,
                ext.stages.len()
            ),
        );
    } else {
        report.push_row(
            CheckId::Pipeline,
            Status::Warn,
            format!(
                "{}: the run did not complete; only the {} stage(s) below are recorded",
                ext.name,
                ext.stages.len()
            ),
        );
    }
    for s in &st.subject {
        if s.is_directory() {
            check_tree(s, &root, &hasher, report);
        } else {
            check_file(CheckId::Subject, s, &root, &hasher, report);
        }
    }
    for b in &st.predicate.run_details.byproducts {
        check_file(CheckId::Byproduct, b, dir, &hasher, report);
    }
    for d in &st.predicate.build_definition.resolved_dependencies {
        if d.uri.as_deref().is_some_and(|u| u.starts_with("file:")) {
            if d.is_directory() {
                check_tree(d, &root, &hasher, report);
            } else {
                check_file(CheckId::Dependency, d, &root, &hasher, report);
            }
        } else if d.name.as_deref() == Some("code") {
            check_code(d, &root, report);
        }
    }
    for rec in &ext.stages {
        check_stage(rec, &root, opts, report);
    }
    check_extras(path, st, &opts.allow_extra, report);
}

/// One stage: its deps and outs as recorded, its training manifest, and for a reused stage the
/// manifest that recorded it running (digest, same outs, signatures).
fn check_stage(rec: &manifest::StageRecord, root: &Path, opts: &Options, report: &mut Report) {
    let label = format!("stage {}", rec.name);
    let hasher = Hasher::new(None, false);
    let mut bad = Vec::new();
    let manifest = rec.manifest.iter();
    for d in rec.deps.iter().chain(&rec.outs).chain(manifest) {
        let name = d.name.as_deref().unwrap_or_default();
        let recorded = d
            .digest
            .get("blake3")
            .map(String::as_str)
            .unwrap_or_default();
        let actual = crate::fsio::safe_join(root, name)
            .map_err(|e| e.to_string())
            .and_then(|p| hasher.hash_path(&p).map_err(|e| e.to_string()));
        match actual {
            Ok(crate::hash::Hashed::File(f)) if crate::hash::hex_eq(&f.blake3.hex(), recorded) => {}
            Ok(crate::hash::Hashed::Dir(t)) if crate::hash::hex_eq(&t.blake3.hex(), recorded) => {}
            Ok(_) => bad.push(format!("{name} changed")),
            Err(_) => bad.push(format!("{name} missing")),
        }
    }
    if !bad.is_empty() {
        report.push(CheckId::Stage, label, Status::Fail, bad.join("; "));
        return;
    }
    let how = match (rec.status, rec.exit_code) {
        (manifest::StageStatus::Ran, Some(c)) => format!("ran (exit {c})"),
        (manifest::StageStatus::Ran, None) => "ran".to_string(),
        (manifest::StageStatus::Reused, _) => "reused".to_string(),
    };
    let detail = format!(
        "{how}; {} dep(s) and {} out(s) match{}",
        rec.deps.len(),
        rec.outs.len(),
        if rec.manifest.is_some() {
            ", and its training manifest"
        } else {
            ""
        }
    );
    let Some(by) = rec
        .produced_by
        .as_ref()
        .filter(|_| rec.status == manifest::StageStatus::Reused)
    else {
        report.push(CheckId::Stage, label, Status::Pass, detail);
        return;
    };
    let (status, why) = check_produced_by(rec, by, root, opts);
    report.push(CheckId::Stage, label, status, format!("{detail}; {why}"));
}

/// Whether the manifest a reused stage names exists with its digest, records the stage running
/// with the same outs, and is signed by a trusted key.
fn check_produced_by(
    rec: &manifest::StageRecord,
    by: &manifest::ProducedBy,
    root: &Path,
    opts: &Options,
) -> (Status, String) {
    let bytes = match crate::fsio::safe_join(root, &by.manifest)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            crate::hash::read_pinned(&p, &by.blake3, crate::fsio::MAX_DOCUMENT)
                .map_err(|e| e.to_string())
        }) {
        Ok(b) => b,
        Err(e) => {
            return (
                Status::Fail,
                format!(
                    "the manifest it was reused from, {}, is not as recorded: {e}",
                    by.manifest
                ),
            );
        }
    };
    let Ok(opened) = manifest::open(&bytes) else {
        return (Status::Fail, format!("{} is not a manifest", by.manifest));
    };
    let outs = |d: &[ResourceDescriptor]| -> Vec<(Option<String>, Option<String>)> {
        d.iter()
            .map(|x| (x.name.clone(), x.digest.get("blake3").cloned()))
            .collect()
    };
    let same = opened
        .statement
        .predicate
        .pipeline
        .as_ref()
        .is_some_and(|ext| {
            ext.stages.iter().any(|s| {
                s.name == rec.name
                    && s.status == manifest::StageStatus::Ran
                    && outs(&s.outs) == outs(&rec.outs)
                    && s.cmd == rec.cmd
            })
        });
    if !same {
        return (
            Status::Fail,
            format!(
                "{} does not record this stage running with these outs",
                by.manifest
            ),
        );
    }
    let mut scratch = Report::default();
    check_signatures(&opened, opts, &mut scratch);
    if !scratch.ok() {
        let why = scratch
            .checks
            .iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| c.detail.clone())
            .unwrap_or_default();
        return (
            Status::Fail,
            format!(
                "outs first recorded by {}, whose signature check fails: {why}",
                by.manifest
            ),
        );
    }
    if scratch.claimed() > 0 || scratch.checks.iter().any(|c| c.status == Status::Warn) {
        return (
            Status::Claimed,
            format!(
                "outs first recorded by {} (its signers not checked against trusted keys)",
                by.manifest
            ),
        );
    }
    (
        Status::Pass,
        format!(
            "outs first recorded by {}, signed by a trusted key",
            by.manifest
        ),
    )
}

/// The run directory must hold only what the manifest names, the manifest with its receipts and
/// proofs, the run-directory marker, and the extras the verifier declared.
fn check_extras(path: &Path, st: &Statement, allow: &[String], report: &mut Report) {
    let dir = run_dir_of(path);
    let manifest_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut expected: std::collections::BTreeSet<String> = allow
        .iter()
        .map(|a| a.trim_end_matches('/').to_string())
        .collect();
    expected.insert(crate::run_dir::MARKER.to_string());
    if st.predicate.pipeline.is_some() {
        expected.insert(crate::stages::LOGS.to_string());
        expected.insert(crate::stages::HISTORY.to_string());
    }
    for name in st
        .subject
        .iter()
        .chain(&st.predicate.run_details.byproducts)
        .filter_map(|d| d.name.as_deref())
    {
        expected.insert(name.split('/').next().unwrap_or_default().to_string());
    }
    // Receipts and proofs only of what auditai anchors: the manifest and the commitment.
    let commitment = st
        .predicate
        .auditai
        .as_ref()
        .and_then(|e| e.commitment.as_ref())
        .map(|c| c.path.clone());
    for anchored in std::iter::once(manifest_name).chain(commitment) {
        for sidecar in [
            anchor::receipt_path(Path::new(&anchored)),
            anchor::ots_path(Path::new(&anchored)),
        ] {
            expected.insert(sidecar.to_string_lossy().into_owned());
        }
        expected.insert(anchored);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            report.push_row(
                CheckId::RunDirectory,
                Status::Fail,
                format!("{}: {e}", dir.display()),
            );
            return;
        }
    };
    let mut extra: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(n) && !crate::vsa::is_verdict_file(n))
        .collect();
    extra.sort();
    if extra.is_empty() {
        report.push_row(
            CheckId::RunDirectory,
            Status::Pass,
            "holds only files the manifest names, its receipts and proofs",
        );
    } else {
        let shown: Vec<&str> = extra.iter().take(10).map(String::as_str).collect();
        let more = extra.len().saturating_sub(shown.len());
        report.push_hinted(
            CheckId::RunDirectory,
            CheckId::RunDirectory.label(),
            Status::Fail,
            format!(
                "{} not named by the manifest: {}{}",
                if extra.len() == 1 { "a file" } else { "files" },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            Hint::AllowExtra,
        );
    }
}

/// The anchor receipt's checks, when a receipt sits next to the manifest.
fn check_anchor(path: &Path, sha256: [u8; 32], opts: &Options, report: &mut Report) {
    let rpath = anchor::receipt_path(path);
    if !rpath.exists() {
        report.push_row(
            CheckId::Anchor,
            Status::Skip,
            "no anchor receipt next to the manifest",
        );
        return;
    }
    let receipt = match anchor::read_receipt(&rpath) {
        Ok(r) => r,
        Err(e) => {
            report.push_row(CheckId::AnchorReceipt, Status::Fail, e.to_string());
            return;
        }
    };
    let root = match anchor::check_inclusion_of(&receipt, sha256) {
        Ok(root) => {
            report.push_row(
                CheckId::AnchorMerklePath,
                Status::Pass,
                format!(
                    "leaf {} of {} leads to root {}",
                    receipt.leaf_index, receipt.tree_size, receipt.root
                ),
            );
            root
        }
        Err(why) => {
            report.push_row(CheckId::AnchorMerklePath, Status::Fail, why.to_string());
            return;
        }
    };
    if let Some(e) = &receipt.evm {
        check_evm_anchor(e, &root, opts, report);
    }
    if let Some(o) = &receipt.ots {
        check_ots_anchor(path, o, &sha256, &root, opts, report);
    }
}

/// The EVM part of a receipt: claimed offline, checked on chain with `--rpc`/`--chain`.
fn check_evm_anchor(
    e: &anchor::chain::EvmAnchor,
    root: &[u8; 32],
    opts: &Options,
    report: &mut Report,
) {
    let label = format!("anchor evm {} ({})", e.chain, e.chain_id);
    match &opts.online {
        None => report.push_hinted(
            CheckId::AnchorEvm,
            label,
            Status::Claimed,
            format!(
                "anchored (claimed; not checked online): block {} tx {}",
                e.block_number, e.tx_hash
            ),
            Hint::CheckOnline,
        ),
        Some(chain) => match anchor::check_evm_online(chain, e, root) {
            Ok(c) => report.push(
                CheckId::AnchorEvm,
                label,
                Status::Pass,
                format!(
                    "verified online: block {} at {} ({} confirmations), tx {}",
                    e.block_number,
                    crate::manifest::format_unix(c.block_timestamp),
                    c.confirmations,
                    e.tx_hash
                ),
            ),
            Err(why) => report.push(CheckId::AnchorEvm, label, Status::Fail, why),
        },
    }
}

/// The OpenTimestamps part of a receipt: the `.ots` proof next to the manifest timestamps it
/// through the anchored root, and its Bitcoin attestations against trusted headers.
fn check_ots_anchor(
    path: &Path,
    o: &anchor::OtsRecord,
    digest: &[u8; 32],
    root: &[u8; 32],
    opts: &Options,
    report: &mut Report,
) {
    let proof_path = match crate::fsio::safe_join(run_dir_of(path), &o.proof) {
        Ok(p) => p,
        Err(why) => {
            report.push_row(CheckId::AnchorOpentimestamps, Status::Fail, why.to_string());
            return;
        }
    };
    let checked = crate::fsio::read_bounded(&proof_path, anchor::ots::MAX_PROOF)
        .map_err(|e| format!("{}: {e}", proof_path.display()))
        .and_then(|b| anchor::check_ots(&b, digest, root).map_err(|e| e.to_string()));
    match checked {
        Err(why) => report.push_row(CheckId::AnchorOpentimestamps, Status::Fail, why),
        Ok(ts) => {
            let bitcoin: Vec<(u64, Vec<u8>)> = ts
                .attestations()
                .into_iter()
                .filter_map(|(msg, a)| match a {
                    anchor::ots::Attestation::Bitcoin(h) => Some((*h, msg.to_vec())),
                    _ => None,
                })
                .collect();
            if bitcoin.is_empty() {
                report.push_row(
                    CheckId::AnchorOpentimestamps,
                    Status::Warn,
                    format!(
                        "pending at {}; run `auditai anchor upgrade`",
                        o.calendars.join(", ")
                    ),
                );
            } else {
                use anchor::bitcoin::Judgement;
                let (status, detail) = match anchor::bitcoin::judge(&opts.bitcoin, &bitcoin) {
                    Judgement::Checked(d) => (Status::Pass, d),
                    Judgement::Claimed(d) => (Status::Claimed, d),
                    Judgement::Mismatch(d) => (Status::Fail, d),
                    Judgement::Unavailable(d) => (
                        Status::Fail,
                        format!("cannot check the Bitcoin header: {d}"),
                    ),
                };
                let label = CheckId::AnchorOpentimestamps.label();
                if status == Status::Claimed {
                    let hint = Hint::BitcoinHeader;
                    report.push_hinted(CheckId::AnchorOpentimestamps, label, status, detail, hint);
                } else {
                    report.push(CheckId::AnchorOpentimestamps, label, status, detail);
                }
            }
        }
    }
}

fn check_signatures(o: &manifest::Opened, opts: &Options, report: &mut Report) {
    check_envelope_signatures(&o.envelope, &o.payload, opts, report);
}

/// The signature rows of any DSSE envelope (a manifest, an evaluation attestation).
fn check_envelope_signatures(
    envelope: &sign::Envelope,
    payload: &[u8],
    opts: &Options,
    report: &mut Report,
) {
    let o = Signed { envelope, payload };
    let mut trusted: Vec<PublicKey> = opts.keys.clone();
    if let Some(p) = &opts.policy {
        trusted.extend(p.signers.iter().map(|s| s.key.clone()));
    }
    if o.envelope.signatures.is_empty() {
        report.push_row(
            CheckId::Signatures,
            Status::Fail,
            "the manifest is unsigned",
        );
        return;
    }
    if trusted.is_empty() {
        report.push_hinted(
            CheckId::Signatures,
            CheckId::Signatures.label(),
            Status::Fail,
            format!(
                "{} signature(s) present but no trusted key given",
                o.envelope.signatures.len()
            ),
            Hint::TrustKeys,
        );
        return;
    }
    let mut valid: Vec<PublicKey> = Vec::new();
    for (i, sig) in o.envelope.signatures.iter().enumerate() {
        let name = format!("signature {}", i + 1);
        match sign::check_signature(o.envelope, o.payload, sig, &trusted) {
            SigCheck::Valid(k) => {
                let who = signer_name(&k, opts).unwrap_or_else(|| k.keyid.clone());
                report.push(
                    CheckId::Signature,
                    name,
                    Status::Pass,
                    format!("valid, by {who}"),
                );
                if !valid.contains(&k) {
                    valid.push(k);
                }
            }
            SigCheck::NoMatchingKey => report.push(
                CheckId::Signature,
                name,
                Status::Fail,
                format!(
                    "not valid under any trusted key (keyid hint {})",
                    if sig.keyid.is_empty() {
                        "none"
                    } else {
                        &sig.keyid
                    }
                ),
            ),
            SigCheck::Malformed(reason) => {
                report.push(CheckId::Signature, name, Status::Fail, reason)
            }
        }
    }
    check_trust(&valid, opts, report);
}

/// Whether the valid signatures satisfy the trust: the policy's threshold and required names,
/// or at least one trusted key without a policy.
fn check_trust(valid: &[PublicKey], opts: &Options, report: &mut Report) {
    match &opts.policy {
        Some(p) => {
            let names: Vec<&str> = valid
                .iter()
                .filter_map(|k| {
                    p.signers
                        .iter()
                        .find(|s| &s.key == k)
                        .map(|s| s.name.as_str())
                })
                .collect();
            let missing: Vec<&str> = p
                .required
                .iter()
                .map(String::as_str)
                .filter(|r| !names.contains(r))
                .collect();
            let policy_valid = names.len();
            if policy_valid < p.threshold {
                report.push_row(CheckId::Policy,
                    Status::Fail,
                    format!(
                        "{policy_valid} valid signature(s) from policy signers, the policy requires {}",
                        p.threshold
                    ),
                );
            } else if !missing.is_empty() {
                report.push_row(
                    CheckId::Policy,
                    Status::Fail,
                    format!("required signer(s) missing: {}", missing.join(", ")),
                );
            } else {
                report.push_row(
                    CheckId::Policy,
                    Status::Pass,
                    format!("signed by {} (threshold {})", names.join(", "), p.threshold),
                );
            }
        }
        None if valid.is_empty() => {
            report.push_row(
                CheckId::Signers,
                Status::Fail,
                "no signature by a trusted key",
            );
        }
        None => report.push_row(
            CheckId::Signers,
            Status::Pass,
            format!("{} trusted signer(s)", valid.len()),
        ),
    }
}

fn signer_name(k: &PublicKey, opts: &Options) -> Option<String> {
    let p = opts.policy.as_ref()?;
    p.signers
        .iter()
        .find(|s| &s.key == k)
        .map(|s| s.name.clone())
}

fn expected(d: &ResourceDescriptor, alg: &str) -> Option<Digest> {
    d.digest.get(alg).and_then(|h| Digest::from_hex(h))
}

fn compare(d: &ResourceDescriptor, actual: &FileDigest) -> Result<(), String> {
    let mut checked = 0;
    for (alg, have) in [("blake3", Some(actual.blake3)), ("sha256", actual.sha256)] {
        if !d.digest.contains_key(alg) {
            continue;
        }
        let (Some(want), Some(have)) = (expected(d, alg), have) else {
            return Err(format!("{alg} digest in the manifest is malformed"));
        };
        if !want.ct_eq(&have) {
            return Err(format!(
                "changed: {alg} is {have}, the manifest records {want}"
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err("the manifest records no blake3 or sha256 digest".to_string());
    }
    if let Some(size) = d.size()
        && size != actual.size
    {
        return Err(format!(
            "changed: {} bytes, the manifest records {size}",
            actual.size
        ));
    }
    Ok(())
}

fn check_file(
    kind: CheckId,
    d: &ResourceDescriptor,
    base: &Path,
    hasher: &Hasher<'_>,
    report: &mut Report,
) {
    let Some(name) = d.name.as_deref() else {
        report.push(
            kind,
            kind.label(),
            Status::Fail,
            "descriptor without a name",
        );
        return;
    };
    let label = format!("{} {name}", kind.label());
    let path = match crate::fsio::safe_join(base, name) {
        Ok(p) => p,
        Err(why) => {
            report.push(kind, label, Status::Fail, why.to_string());
            return;
        }
    };
    match std::fs::symlink_metadata(&path) {
        Err(_) => {
            report.push(
                kind,
                label,
                Status::Fail,
                format!("missing: {} not found", path.display()),
            );
            return;
        }
        Ok(m) if m.file_type().is_symlink() => {
            report.push(kind, label, Status::Fail, "is a symlink; not followed");
            return;
        }
        Ok(m) if !m.is_file() => {
            report.push(
                kind,
                label,
                Status::Fail,
                "is not a regular file; not opened",
            );
            return;
        }
        Ok(_) => {}
    }
    match hasher.hash_file(&path) {
        Ok(actual) => match compare(d, &actual) {
            Ok(()) => report.push(
                kind,
                label,
                Status::Pass,
                format!("blake3 {}", actual.blake3),
            ),
            Err(why) => report.push(kind, label, Status::Fail, why),
        },
        Err(e) => report.push(kind, label, Status::Fail, e.to_string()),
    }
}

fn check_tree(d: &ResourceDescriptor, base: &Path, hasher: &Hasher<'_>, report: &mut Report) {
    let name = d.name.clone().unwrap_or_default();
    let label = format!("directory {name}/");
    let path = match crate::fsio::safe_join(base, &name) {
        Ok(p) => p,
        Err(why) => {
            report.push(CheckId::Directory, label, Status::Fail, why.to_string());
            return;
        }
    };
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
        report.push(
            CheckId::Directory,
            label,
            Status::Fail,
            "is not a directory (symlinks are not followed)",
        );
        return;
    }
    let Some(listed) = d
        .annotations_as::<manifest::TreeAnnotations>()
        .entries
        .map(|v| {
            v.into_iter()
                .filter_map(entry_from_view)
                .collect::<Vec<_>>()
        })
    else {
        report.push(
            CheckId::Directory,
            label,
            Status::Fail,
            "the manifest lists no entries for this directory",
        );
        return;
    };
    let actual = match hasher.hash_tree(&path) {
        Ok(t) => t,
        Err(e) => {
            report.push(
                CheckId::Directory,
                label,
                Status::Fail,
                format!("missing or unreadable: {e}"),
            );
            return;
        }
    };
    let want: BTreeMap<&str, &TreeEntry> = listed.iter().map(|e| (e.path(), e)).collect();
    let have: BTreeMap<&str, &TreeEntry> = actual.entries.iter().map(|e| (e.path(), e)).collect();
    let added: Vec<&str> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .copied()
        .collect();
    let missing: Vec<&str> = want
        .keys()
        .filter(|k| !have.contains_key(*k))
        .copied()
        .collect();
    let changed: Vec<&str> = want
        .iter()
        .filter(|(k, w)| have.get(*k).is_some_and(|h| !same_entry(w, h)))
        .map(|(k, _)| *k)
        .collect();
    let digest_ok = expected(d, "blake3").is_some_and(|w| w.ct_eq(&actual.blake3));
    if added.is_empty() && missing.is_empty() && changed.is_empty() && digest_ok {
        report.push(
            CheckId::Directory,
            label,
            Status::Pass,
            format!("{} files, blake3 {}", have.len(), actual.blake3),
        );
        return;
    }
    let mut parts = Vec::new();
    for (what, list) in [
        ("changed", &changed),
        ("missing", &missing),
        ("added", &added),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what}: {}", list.join(", ")));
        }
    }
    if parts.is_empty() {
        parts.push("directory digest differs from the listed entries".to_string());
    }
    report.push(CheckId::Directory, label, Status::Fail, parts.join("; "));
}

fn same_entry(a: &TreeEntry, b: &TreeEntry) -> bool {
    match (a, b) {
        (TreeEntry::File { digest: x, .. }, TreeEntry::File { digest: y, .. }) => {
            x.size == y.size && x.blake3.ct_eq(&y.blake3)
        }
        _ => a == b,
    }
}

fn entry_from_view(v: manifest::TreeEntryView) -> Option<TreeEntry> {
    match v.kind.as_str() {
        "file" => Some(TreeEntry::File {
            path: v.path,
            digest: FileDigest {
                size: v.size?,
                blake3: Digest::from_hex(v.blake3.as_deref()?)?,
                sha256: None,
            },
        }),
        "symlink" => Some(TreeEntry::Symlink {
            path: v.path,
            target: v.target?,
        }),
        "special" => Some(TreeEntry::Special { path: v.path }),
        _ => None,
    }
}

fn check_code(d: &ResourceDescriptor, root: &Path, report: &mut Report) {
    let Some(commit) = d.digest.get("gitCommit") else {
        report.push_row(
            CheckId::Code,
            Status::Warn,
            "trained outside a git repository (no commit recorded)",
        );
        return;
    };
    match provenance::commit_exists(root, commit) {
        Some(true) => report.push_row(
            CheckId::Code,
            Status::Pass,
            format!("commit {commit} exists locally"),
        ),
        Some(false) => report.push_row(
            CheckId::Code,
            Status::Fail,
            format!(
                "commit {commit} is not in the repository at {}",
                root.display()
            ),
        ),
        None => report.push_row(
            CheckId::Code,
            Status::Skip,
            format!(
                "commit {commit}: no git repository at {} to check it in",
                root.display()
            ),
        ),
    }
    let code = d.annotations_as::<manifest::CodeAnnotations>();
    if code.dirty == Some(true) {
        let n = code.changed.map_or(0, |c| c.len());
        report.push_row(
            CheckId::CodeState,
            Status::Warn,
            format!("trained from a work tree with {n} uncommitted change(s)"),
        );
    }
}
