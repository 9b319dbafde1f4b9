//! The check vocabulary: [`Status`], [`CheckId`], [`Check`], [`Hint`] and [`Report`].
//!
//! Below every checker (`verify`, `audit`, `trust`, verdicts): it imports nothing of theirs, so
//! that none of them imports another to speak about a check. Never prints.

use serde::Serialize;

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
    /// A recorded file that is not here and was not checked (`verify --partial`): not a failure,
    /// never a pass.
    Absent,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Claimed => "claimed",
            Status::Absent => "absent",
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
    /// A file given with `verify --artifact`.
    Artifact,
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
    /// Audit: the fitted preprocessing, recomputed.
    Preprocessing,
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
    /// Prediction logs: how many entries an anchor or a signed checkpoint covers.
    LogCoverage,
    /// What kind of document a file is, against what its name or `--expect` says.
    DocumentKind,
    /// A data source: its contribution's owner, terms and data (`data.sources`).
    Source,
    /// A contribution or reward statement: its own signature and content.
    Statement,
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
            CheckId::Source => "data source",
            CheckId::Statement => "statement",
            CheckId::Code => "code",
            CheckId::CodeState => "code state",
            CheckId::RunDirectory => "run directory",
            CheckId::Artifact => "artifact",
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
            CheckId::Preprocessing => "preprocessing",
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
            CheckId::LogCoverage => "log coverage",
            CheckId::DocumentKind => "document kind",
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
    /// A row with its own label.
    pub fn push(
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
    pub fn push_hinted(
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
    pub fn push_row(&mut self, id: CheckId, status: Status, detail: impl Into<String>) {
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

    /// Recorded files checked and absent: `(checked, absent, total)` over the subject, byproduct,
    /// directory and dependency rows.
    pub fn file_counts(&self) -> (usize, usize, usize) {
        let rows = self.checks.iter().filter(|c| {
            matches!(
                c.id,
                CheckId::Subject | CheckId::Byproduct | CheckId::Directory | CheckId::Dependency
            )
        });
        let (mut checked, mut absent, mut total) = (0, 0, 0);
        for c in rows {
            total += 1;
            match c.status {
                Status::Pass => checked += 1,
                Status::Absent => absent += 1,
                _ => {}
            }
        }
        (checked, absent, total)
    }

    /// How many rows are claims that were not checked.
    pub fn claimed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Claimed)
            .count()
    }
}
