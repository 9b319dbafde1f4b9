//! The checker of an evaluation attestation (`auditai eval`): its signatures, the model's
//! manifest (opened through the gate, pinned by digest, signed as the trust requires) and its
//! subjects, the evaluation data and criteria files where present, the recorded verdicts against
//! the recorded metrics, pre-registration re-judged (never the recorded status), the verdict
//! itself, and its anchor.

use std::path::{Path, PathBuf};

use super::{Options, anchor, open_statement, sha256_of};
use crate::eval::prereg::{self, PreRegStatus};
use crate::eval::{EvalStatement, EvalVerdict, Evaluation};
use crate::hash::Hasher;
use crate::report::{CheckId, Report, Status};
use crate::trust::{Pin, Required, RunKind, SignedRun};

/// Check the attestation at `path` with `bytes`.
pub(super) fn check(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let Some((st, signed)) = open_statement::<EvalStatement>(
        bytes,
        "an auditai evaluation attestation",
        "DSSE, in-toto Statement v1, auditai evaluation v1",
        opts,
        report,
    ) else {
        return;
    };
    let root = super::document_root(path, opts);
    let ev = &st.predicate;
    model_row(&st, &root, opts, report);
    data_row(ev, &root, signed, report);
    let criteria = criteria_row(ev, &root, report);
    let prereg = prereg_row(ev, &root, criteria.as_deref(), opts, report);
    verdict_row(ev, prereg, report);
    anchor::check_anchor(path, sha256_of(bytes), opts, report);
}

/// The model: its manifest is the recorded bytes, signed as the trust requires, and the
/// attestation's subjects are its own.
fn model_row(st: &EvalStatement, root: &Path, opts: &Options, report: &mut Report) {
    let ev = &st.predicate;
    let required = Required::Signers(&opts.trust);
    let run = crate::fsio::recorded(root, &ev.model.manifest)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            SignedRun::open_pinned(
                &p,
                Pin::Blake3(&ev.model.manifest_blake3),
                RunKind::Training,
                required,
            )
            .map_err(|e| e.to_string())
        });
    let (status, detail) = match run {
        Err(why) => (Status::Fail, why),
        Ok(m) if !st.subject.iter().all(|s| m.statement().subject.contains(s)) => (
            Status::Fail,
            "the attestation's subjects are not the manifest's subjects".to_string(),
        ),
        Ok(_) => (
            Status::Pass,
            format!(
                "{} unchanged; its subjects are this attestation's; signed by a trusted key",
                ev.model.manifest
            ),
        ),
    };
    report.push_row(CheckId::EvalModel, status, detail);
}

/// The evaluation data, when it is here to re-hash (its digest shown only when signed).
fn data_row(ev: &Evaluation, root: &Path, signed: bool, report: &mut Report) {
    let file = crate::fsio::recorded(root, &ev.data.name)
        .ok()
        .filter(|p| p.exists());
    let Some(p) = file else {
        report.push_row(
            CheckId::EvalData,
            Status::Claimed,
            format!(
                "{} is not here to re-hash (or is recorded outside the attestation's directory); the attestation records blake3 {}",
                ev.data.name, ev.data.blake3
            ),
        );
        return;
    };
    match Hasher::new(None, true).hash_file(&p) {
        Ok(d) => {
            let same = crate::hash::hex_eq(&d.blake3.hex(), &ev.data.blake3)
                && d.sha256
                    .is_some_and(|s| crate::hash::hex_eq(&s.hex(), &ev.data.sha256));
            let detail = if same {
                format!(
                    "{}: {} rows, blake3 {}",
                    ev.data.name, ev.data.rows, ev.data.blake3
                )
            } else if signed {
                format!(
                    "{} changed since the evaluation: blake3 is {}",
                    ev.data.name, d.blake3
                )
            } else {
                format!("{} changed since the evaluation", ev.data.name)
            };
            let status = if same { Status::Pass } else { Status::Fail };
            report.push_row(CheckId::EvalData, status, detail);
        }
        Err(e) => report.push_row(CheckId::EvalData, Status::Fail, e.to_string()),
    }
}

/// The criteria: verdicts that follow from the metrics, and the file where present. Returns the
/// criteria file's path when it is here and unchanged.
fn criteria_row(ev: &Evaluation, root: &Path, report: &mut Report) -> Option<PathBuf> {
    let Some(c) = &ev.criteria else {
        report.push_row(
            CheckId::EvalCriteria,
            Status::Skip,
            "evaluated without criteria",
        );
        return None;
    };
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
        && Evaluation::verdict_of(Some(c)) == ev.verdict;
    let file = crate::fsio::recorded(root, &c.name)
        .ok()
        .filter(|p| p.exists());
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
    file.filter(|_| file_ok == Some(true))
}

/// Pre-registration, judged again from the commitment and its anchor (online with `--rpc`/
/// `--chain`, with the node's block time). Returns the status it found.
fn prereg_row(
    ev: &Evaluation,
    root: &Path,
    criteria: Option<&Path>,
    opts: &Options,
    report: &mut Report,
) -> PreRegStatus {
    let (Some(_), Some(recorded)) = (&ev.criteria, &ev.pre_registration.commitment) else {
        let status = if ev.criteria.is_none() {
            Status::Skip
        } else {
            Status::Warn
        };
        report.push_row(
            CheckId::PreRegistration,
            status,
            format!("NOT pre-registered: {}", ev.pre_registration.detail),
        );
        return PreRegStatus::None;
    };
    let started = humantime::parse_rfc3339(&ev.started_on).ok();
    let cbytes = crate::fsio::recorded(root, &recorded.name)
        .ok()
        .and_then(|p| {
            crate::hash::read_pinned(&p, &recorded.blake3, 1 << 20)
                .ok()
                .map(|b| (p, b))
        });
    let criteria_bytes = criteria.and_then(|p| crate::fsio::read_bounded(p, 1 << 20).ok());
    let (Some((cpath, cbytes)), Some(criteria_bytes), Some(started)) =
        (cbytes, criteria_bytes, started)
    else {
        report.push_row(
            CheckId::PreRegistration,
            Status::Claimed,
            format!(
                "claimed {}: the commitment {} and the criteria are not here to re-check ({})",
                ev.pre_registration.status, recorded.name, ev.pre_registration.detail
            ),
        );
        return match ev.pre_registration.status {
            PreRegStatus::AnchoredBefore | PreRegStatus::ClaimedBefore => {
                PreRegStatus::ClaimedBefore
            }
            other => other,
        };
    };
    let judged = prereg::judge_commitment(
        &cpath,
        &cbytes,
        &prereg::Judge {
            criteria: &criteria_bytes,
            started,
            online: opts.online.as_ref(),
            out_dir: root,
        },
    );
    let status = match judged.status {
        PreRegStatus::AnchoredBefore => Status::Pass,
        PreRegStatus::ClaimedBefore => Status::Claimed,
        PreRegStatus::After | PreRegStatus::None => Status::Warn,
    };
    let label = if judged.status.proven() {
        "pre-registered"
    } else {
        "NOT proven pre-registered"
    };
    report.push_row(
        CheckId::PreRegistration,
        status,
        format!("{label} (re-checked): {}", judged.detail),
    );
    judged.status
}

/// The verdict: FAILED fails; PASSED holds only when a required pre-registration was proven
/// again here (otherwise it is claimed, or fails when the re-check disproves it).
fn verdict_row(ev: &Evaluation, prereg: PreRegStatus, report: &mut Report) {
    let required = ev
        .criteria
        .as_ref()
        .is_some_and(|c| c.criteria.require_preregistration);
    match ev.verdict {
        EvalVerdict::Passed if required && !prereg.proven() => {
            let (status, why) = match prereg {
                PreRegStatus::ClaimedBefore => (
                    Status::Claimed,
                    "claimed: the criteria require pre-registration, which was not proven here (check the anchor online with --rpc/--chain)",
                ),
                _ => (
                    Status::Fail,
                    "the criteria require pre-registration, and the commitment does not prove it",
                ),
            };
            report.push_row(CheckId::EvalVerdict, status, format!("PASSED {why}"));
        }
        EvalVerdict::Passed => report.push_row(
            CheckId::EvalVerdict,
            Status::Pass,
            "PASSED: every criterion holds",
        ),
        EvalVerdict::NoCriteria => {
            report.push_row(CheckId::EvalVerdict, Status::Skip, "no criteria")
        }
        EvalVerdict::Failed => {
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
}
