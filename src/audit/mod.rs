//! Auditing a training run: check its commitment and transcript, then replay challenged segments.
//!
//! An audit reads a run directory through its manifest and returns an [`AuditReport`]: rows of
//! checks (commitment, spec, data, initial weights, transcript chain and schedule, final model,
//! checkpoint files, challenge) and one result per replayed segment. The segments are chosen from
//! a challenge the trainer could not know while training; each is replayed from the checkpoint
//! before it and compared with the checkpoint after it, bitwise on the backend that trained and
//! within [`tolerance`] across backends (only when the auditor asks). Never prints; reports
//! progress through a callback. The manifest's signatures are not checked here: that is
//! `auditai verify`.
//!
//! This file holds the types and the orchestrator, [`audit`]; each check family has its own
//! file: `inputs` (the run directory as `verify` sees it, commitment, spec, data, initial
//! weights), `schedule` (transcript chain and schedule, final model, checkpoint files),
//! `challenge` (where the challenge comes from, the anchors, the segments it picks), `replay`
//! (the replay device, segment replays, validation losses) and `distance` (weight distances).

mod challenge;
mod distance;
mod inputs;
mod replay;
mod schedule;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::anchor;
use crate::report::{CheckId, Report, Status};
use crate::spec::DeviceChoice;
use crate::train::{BackendKind, device};
use crate::transcript::Entry;
use crate::trust::{Required, RunKind, SignedRun};

pub use challenge::{CHALLENGE_DELAY_BLOCKS, select};
use challenge::{challenge_bytes, commitment_anchor};
pub use distance::{Distance, Exceeded, tolerance};
use inputs::{
    check_data, check_initial_weights, check_preprocessing, check_spec, read_commitment,
    run_directory,
};
use replay::Replay;
pub(crate) use schedule::check_schedule;
use schedule::{check_checkpoints, check_final_model, check_transcript};

/// Where the challenge comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Bytes the auditor chose.
    Explicit(Vec<u8>),
    /// From the chain the manifest is anchored on: the hash of the block
    /// [`CHALLENGE_DELAY_BLOCKS`] after the anchor's, read online. With `unconfirmed`, the
    /// auditor accepts the anchor block hash the receipt claims, unchecked (reported as claimed).
    FromAnchor {
        /// Accept the receipt's block hash without an online check.
        unconfirmed: bool,
    },
    /// Fresh randomness from the operating system, printed so the audit can be repeated.
    Random,
}

/// How to audit.
#[derive(Debug)]
pub struct Options {
    /// How many segments to replay (at most all of them).
    pub segments: usize,
    /// The challenge.
    pub challenge: Challenge,
    /// Where to replay; `None`: the backend that trained, else the CPU.
    pub device: Option<DeviceChoice>,
    /// Where the data files named by the commitment live (default as for `auditai verify`).
    pub root: Option<PathBuf>,
    /// Check the anchor behind `--challenge-from-anchor` online against this chain.
    pub online: Option<anchor::chain::Chain>,
    /// Accept a replay on another backend than the one that trained, compared within the
    /// documented tolerances instead of bitwise.
    pub tolerance: bool,
    /// Expected extra files in the run directory (as for `verify`).
    pub allow_extra: Vec<String>,
    /// Whom to trust to have signed the manifest (`--key`, `--policy`); empty: the signatures
    /// are not checked (that is `auditai verify`'s job).
    pub trust: crate::trust::Trust,
    /// With a challenge from the anchor: how long to wait for the challenge block to be mined
    /// (`None`: not at all).
    pub wait: Option<std::time::Duration>,
    /// Salts of withheld data sources (`--reveal`).
    pub reveal: crate::contribution::Reveal,
}

/// Errors that stop an audit before it can judge anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The manifest could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No challenge could be formed.
    #[error("{0}")]
    Challenge(String),
    /// No challenge could be taken from the anchor.
    #[error("challenge from the anchor: {0}")]
    FromAnchor(String),
    /// A challenge from the anchor needs an online check, and the auditor did not accept one
    /// taken from the receipt.
    #[error("the challenge must come from the chain, not from the receipt the prover wrote")]
    Unconfirmed,
    /// The replay would run on another backend than the one that trained, and the auditor did
    /// not accept a comparison within tolerances.
    #[error(
        "the run trained on {trained}; a replay on {replay} can only be compared within tolerances, not bitwise{why}"
    )]
    NeedsTolerance {
        /// The training backend.
        trained: BackendKind,
        /// The replay backend.
        replay: BackendKind,
        /// Why the training backend is not used (e.g. no adapter).
        why: String,
    },
    /// The requested replay device is not available.
    #[error("{0}")]
    Device(#[from] device::NoAdapter),
}

/// Progress of an audit.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The replay device is chosen; `notice` says why it is not the training backend.
    Device {
        /// Backend family.
        kind: BackendKind,
        /// Adapter description.
        adapter: &'a str,
        /// A one-line notice, if any.
        notice: Option<&'a device::Notice>,
    },
    /// Segments are chosen: this many steps will be replayed.
    Plan {
        /// Steps to replay in all.
        steps: usize,
    },
    /// A segment's replay starts.
    Segment {
        /// 1-based transcript index.
        index: usize,
        /// 1-based epoch.
        epoch: usize,
        /// Steps `[start, end)` within the epoch.
        steps: [usize; 2],
    },
    /// One step was replayed.
    Step,
    /// Waiting for the challenge block to be mined.
    Waiting {
        /// The challenge block's number.
        block: u64,
        /// The chain's head.
        head: u64,
    },
}

/// The result of replaying one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentResult {
    /// 1-based transcript index.
    pub index: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps `[start, end)` within the epoch.
    pub steps: [usize; 2],
    /// Learning rate.
    pub lr: f64,
    /// Pass or fail.
    pub status: Status,
    /// Bitwise (same backend) or within tolerances (across backends).
    pub comparison: crate::vsa::Comparison,
    /// Why.
    pub detail: String,
    /// blake3 of the replayed weights.
    pub replayed_blake3: Option<String>,
    /// blake3 the transcript records.
    pub recorded_blake3: String,
    /// Distances between replayed and recorded weights.
    pub distance: Option<Distance>,
    /// Seconds the replay took.
    pub seconds: f64,
}

/// Everything an audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// The checks before replay.
    pub checks: Report,
    /// The challenge, hex (absent when the audit stopped before choosing).
    pub challenge: Option<String>,
    /// Where the challenge came from (absent when the audit stopped before choosing).
    pub challenge_source: Option<crate::vsa::ChallengeSource>,
    /// Segments in the transcript.
    pub segments_total: usize,
    /// The chosen segments (1-based transcript indices, ascending).
    pub selected: Vec<usize>,
    /// Replay results, in the order of `selected`.
    pub segments: Vec<SegmentResult>,
    /// The backend that trained.
    pub trained_on: Option<BackendKind>,
    /// The backend that replayed.
    pub replayed_on: Option<BackendKind>,
    /// Steps replayed.
    pub replayed_steps: usize,
    /// Steps in the whole transcript.
    pub total_steps: usize,
}

impl AuditReport {
    /// Whether every check and every replayed segment passed, and something was replayed.
    pub fn ok(&self) -> bool {
        self.checks.ok()
            && !self.segments.is_empty()
            && self.segments.iter().all(|s| s.status == Status::Pass)
    }
}

/// Steps in an entry's segment (0 for a malformed one).
fn steps_of(e: &Entry) -> usize {
    e.body.steps[1].saturating_sub(e.body.steps[0])
}

/// Steps in all of `entries` (saturating: the counts come from an untrusted transcript).
fn sum_steps<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> usize {
    entries
        .into_iter()
        .fold(0usize, |acc, e| acc.saturating_add(steps_of(e)))
}

/// Audit the run behind the manifest at `path`: opened at the gate (its signatures checked when
/// `opts.trust` names keys or a policy), then the checks before replay, then the replay.
pub fn audit(
    path: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<AuditReport, AuditError> {
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
        AuditError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut report = AuditReport::default();
    let required = if opts.trust.is_empty() {
        Required::Unchecked
    } else {
        Required::Signers(&opts.trust)
    };
    let run = match SignedRun::from_bytes(path.to_path_buf(), bytes, RunKind::Training, required) {
        Ok(run) => run,
        Err(why) => {
            report
                .checks
                .push_row(CheckId::Manifest, Status::Fail, why.to_string());
            return Ok(report);
        }
    };
    if run.checked() {
        report.checks.push_row(
            CheckId::Signers,
            Status::Pass,
            format!("{} trusted signer(s)", run.signers().len()),
        );
    }
    let Some(checked) = check_inputs(&run, opts, &mut report) else {
        return Ok(report);
    };
    let (challenge, source) = challenge_bytes(path, opts, &mut report.checks, progress)?;
    report.challenge = Some(hex::encode(&challenge));
    report.challenge_source = Some(source);
    report.selected = select(
        &challenge,
        &checked.head,
        checked.entries.len(),
        opts.segments,
    );
    report.replayed_steps = sum_steps(report.selected.iter().map(|&i| &checked.entries[i - 1]));
    let replay = Replay {
        run: &run,
        spec: &checked.spec,
        data: &checked.data,
        initial: &checked.initial,
        trained_on: checked.trained_on,
        trained_kernels: checked.trained_kernels.as_deref(),
        files_ok: checked.files_ok,
        schedule_ok: checked.schedule_ok,
    };
    replay.run(&checked.entries, &checked.ext, opts, &mut report, progress)?;
    Ok(report)
}

/// What a run trained on and recorded, each read through its digests and checked against the
/// run's commitment as the audit checks it.
#[derive(Debug)]
pub struct Trained {
    /// The committed spec.
    pub spec: crate::spec::Spec,
    /// The committed data, prepared as training prepared it.
    pub data: crate::data::Prepared,
    /// The commitment.
    pub commitment: crate::transcript::Commitment,
    /// The transcript, its chain checked from the commitment.
    pub entries: Vec<Entry>,
    /// The transcript's chain head.
    pub head: String,
}

/// The spec, data, commitment and transcript of a run (`Err`: the first failed check). For
/// recomputations such as `rewards --value shapley` and disputes.
pub fn trained_on(
    run: &SignedRun,
    root: Option<&Path>,
    reveal: &crate::contribution::Reveal,
) -> Result<Trained, String> {
    let mut r = crate::report::Report::default();
    let fail = |r: &crate::report::Report| {
        r.checks
            .iter()
            .find(|c| c.status == Status::Fail)
            .map_or_else(
                || "the run cannot be read".to_string(),
                |c| format!("{}: {}", c.check, c.detail),
            )
    };
    let ext = run
        .statement()
        .predicate
        .auditai
        .clone()
        .ok_or("the manifest has no auditai extension")?;
    let (c_ref, t_ref) = ext
        .commitment
        .clone()
        .zip(ext.transcript.clone())
        .ok_or("the run has no training commitment and transcript")?;
    let (c_bytes, commitment) = read_commitment(run, &c_ref, &mut r).ok_or_else(|| fail(&r))?;
    let spec = check_spec(run.dir(), &commitment, &ext, run.stage_name(), &mut r)
        .ok_or_else(|| fail(&r))?;
    let root = root.map_or_else(
        || crate::provenance::project_root(run.dir()),
        Path::to_path_buf,
    );
    let data = check_data(&root, &spec, &commitment, reveal, &mut r).ok_or_else(|| fail(&r))?;
    let (entries, head) =
        check_transcript(run, &t_ref, &c_bytes, &mut r).ok_or_else(|| fail(&r))?;
    Ok(Trained {
        spec,
        data,
        commitment,
        entries,
        head,
    })
}

/// What the checks before replay established.
struct Checked {
    ext: crate::manifest::Extension,
    spec: crate::spec::Spec,
    data: crate::data::Prepared,
    initial: Vec<u8>,
    entries: Vec<Entry>,
    head: String,
    trained_on: BackendKind,
    trained_kernels: Option<String>,
    files_ok: bool,
    schedule_ok: bool,
}

/// Every check before replay: the run directory, the commitment and what it pins (spec, data,
/// initial weights), the transcript, its schedule, the final model and the checkpoints.
fn check_inputs(run: &SignedRun, opts: &Options, report: &mut AuditReport) -> Option<Checked> {
    let path = run.path();
    let r = &mut report.checks;
    run_directory(path, run.statement(), opts, r);
    let Some((ext, c_ref, t_ref)) = run.statement().predicate.auditai.clone().and_then(|e| {
        let (c, t) = (e.commitment.clone()?, e.transcript.clone()?);
        Some((e, c, t))
    }) else {
        r.push_row(
            CheckId::Manifest,
            Status::Fail,
            "no training commitment and transcript: the run cannot be audited",
        );
        return None;
    };
    let dir = run.dir();
    let (c_bytes, commitment) = read_commitment(run, &c_ref, r)?;
    report.trained_on = Some(commitment.backend);
    let (status, detail) = commitment_anchor(path, dir, &c_ref.path, &c_bytes, opts);
    if status == Status::Skip {
        let label = CheckId::CommitmentAnchor.label();
        let hint = crate::report::Hint::AnchorCommitment;
        r.push_hinted(CheckId::CommitmentAnchor, label, status, detail, hint);
    } else {
        r.push_row(CheckId::CommitmentAnchor, status, detail);
    }
    let spec = check_spec(dir, &commitment, &ext, run.stage_name(), r)?;
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| crate::provenance::project_root(dir));
    let data = check_data(&root, &spec, &commitment, &opts.reveal, r)?;
    check_preprocessing(run, &data, &ext, r);
    let initial = check_initial_weights(&spec, &data, &commitment, r)?;
    let (entries, head) = check_transcript(run, &t_ref, &c_bytes, r)?;
    let schedule_ok = match check_schedule(&spec, &data, &entries) {
        Ok(detail) => {
            r.push_row(CheckId::TranscriptSchedule, Status::Pass, detail);
            true
        }
        Err(why) => {
            r.push_row(CheckId::TranscriptSchedule, Status::Fail, why);
            false
        }
    };
    check_final_model(run.statement(), &ext, &entries, r);
    let pruned = spec.outputs.checkpoints == crate::spec::KeepCheckpoints::Last;
    let files_ok = check_checkpoints(run, &entries, pruned, r);
    report.segments_total = entries.len();
    report.total_steps = sum_steps(&entries);
    Some(Checked {
        ext,
        spec,
        data,
        initial,
        entries,
        head,
        trained_on: commitment.backend,
        trained_kernels: commitment.kernels.clone(),
        files_ok,
        schedule_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::schedule::compact;
    use super::*;

    #[test]
    fn hostile_epoch_numbers_do_not_overflow() {
        assert_eq!(compact(&[1, 2, 3, 5]), "1-3, 5");
        assert_eq!(
            compact(&[usize::MAX, usize::MAX]),
            format!("{}, {}", usize::MAX, usize::MAX)
        );
    }

    #[test]
    fn selection_is_pinned_and_bounded() {
        assert_eq!(select(b"x", "head", 10, 3), select(b"x", "head", 10, 3));
        assert_eq!(select(b"x", "head", 10, 3), vec![3, 5, 7]);
        assert_ne!(select(b"y", "head", 10, 3), select(b"x", "head", 10, 3));
        assert_ne!(select(b"x", "head2", 10, 3), select(b"x", "head", 10, 3));
        assert_eq!(select(b"x", "head", 4, 9), vec![1, 2, 3, 4]);
        assert_eq!(compact(&[1, 2, 4, 6, 7, 8]), "1-2, 4, 6-8");
    }

    #[test]
    fn tolerances_refuse_nan_and_name_the_bound() {
        let d = |linf, relative_l2, cosine_distance| Distance {
            linf,
            l2: 0.0,
            cosine_distance,
            update_l2: 1.0,
            relative_l2,
        };
        assert_eq!(d(1e-6, 1e-6, 0.0).within_tolerance(), Ok(()));
        assert_eq!(
            d(2e-4, 0.0, 0.0)
                .within_tolerance()
                .unwrap_err()
                .to_string(),
            "L∞ 2.00e-4 exceeds 1e-4"
        );
        assert_eq!(
            d(0.0, 5e-3, 0.0)
                .within_tolerance()
                .unwrap_err()
                .to_string(),
            "L2 is 5.00e-3 of the update, above 1e-3"
        );
        assert!(d(f64::NAN, 0.0, 0.0).within_tolerance().is_err());
        assert!(d(0.0, 0.0, 1e-3).within_tolerance().is_err());
    }
}
