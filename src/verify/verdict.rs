//! Verdicts: the checker of a verdict file (`verify --attest`, `audit --attest`), and the
//! verdicts a trust policy requires next to a manifest. Both open verdicts and the manifests
//! they name through the gate.

use std::path::{Path, PathBuf};

use super::{Options, anchor, open_statement, sha256_of};
use crate::report::{CheckId, Report, Status};
use crate::trust::{self, ChallengeRequirement, DocumentKind, Pin, Required, RunKind, SignedRun};
use crate::vsa::{ChallengeSource, Comparison, VerdictKind, VerdictStatement, VerificationResult};

/// Check the verdict at `path` with `bytes`: its signatures, that the manifest it names is
/// still those bytes and has those subjects, the result it records, and its anchor.
pub(super) fn check(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let Some((st, _)) = open_statement::<VerdictStatement>(
        bytes,
        "an auditai verdict",
        "DSSE, in-toto Statement v1, SLSA Verification Summary v1",
        opts,
        report,
    ) else {
        return;
    };
    let v = &st.predicate;
    let root = super::document_root(path, opts);
    if let Some(d) = &v.auditai.dispute {
        check_dispute(&st, d, &root, report);
        anchor::check_anchor(path, sha256_of(bytes), opts, report);
        return;
    }
    let resource = v
        .input_attestations
        .first()
        .ok_or_else(|| "the verdict names no manifest".to_string())
        .and_then(|i| {
            let sha = i.digest.get("sha256").map(String::as_str).unwrap_or("");
            let p = crate::fsio::recorded(&root, &i.uri).map_err(|e| e.to_string())?;
            let run =
                SignedRun::open_pinned(&p, Pin::Sha256(sha), RunKind::Any, Required::Unchecked)
                    .map_err(|e| e.to_string())?;
            if run.statement().subject != st.subject {
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
    let status = match v.verification_result {
        VerificationResult::Passed => Status::Pass,
        VerificationResult::Failed => Status::Fail,
    };
    report.push_row(CheckId::VerdictResult, status, detail);
    anchor::check_anchor(path, sha256_of(bytes), opts, report);
}

/// A dispute verdict: the game re-checked move by move, each party's manifest (when present)
/// unchanged, and the result.
fn check_dispute(
    st: &VerdictStatement,
    d: &crate::dispute::verdict::DisputeSummary,
    root: &Path,
    report: &mut Report,
) {
    match crate::dispute::verdict::check(d) {
        Ok(detail) => report.push_row(CheckId::VerdictResource, Status::Pass, detail),
        Err(why) => report.push_row(CheckId::VerdictResource, Status::Fail, why),
    }
    if let crate::dispute::verdict::Ending::Replayed { step, replayed, .. } = &d.ending {
        report.push(
            CheckId::VerdictResult,
            "referee's replay".to_string(),
            Status::Claimed,
            format!(
                "step {step} -> {} reached weights blake3 {} (`auditai audit dispute` replays it)",
                step + 1,
                replayed.weights_blake3
            ),
        );
    }
    for input in &st.predicate.input_attestations {
        let sha = input.digest.get("sha256").map(String::as_str).unwrap_or("");
        let label = format!("party {}", input.uri);
        let status = match crate::fsio::recorded(root, &input.uri)
            .ok()
            .and_then(|p| crate::fsio::read_bounded(&p, crate::fsio::MAX_DOCUMENT).ok())
        {
            Some(b) if crate::hash::hex_eq(&crate::hash::sha256_hex(&b), sha) => {
                (Status::Pass, "the manifest is the one disputed".to_string())
            }
            Some(_) => (
                Status::Fail,
                "the manifest changed since the dispute".to_string(),
            ),
            None => (Status::Absent, "not here to compare".to_string()),
        };
        report.push(CheckId::VerdictResource, label, status.0, status.1);
    }
    let names = |ps: &[usize]| {
        ps.iter()
            .map(|p| d.header.parties[*p].run.clone())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let detail = match (d.winner, d.losers.as_slice()) {
        (_, []) => "no fault found: both parties' claims match the referee's replay".to_string(),
        (Some(w), l) => format!("{} trained honestly; {} did not", names(&[w]), names(l)),
        (None, l) => format!("both parties are wrong: {}", names(l)),
    };
    let status = if d.losers.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    report.push_row(CheckId::VerdictResult, status, detail);
}

/// The verdicts a trust policy requires: for each, a verdict file next to the manifest of that
/// kind, about exactly these manifest bytes, PASSED, signed by one of the named verifiers, and for
/// audits with enough replayed segments, all matching (bitwise, from an anchored challenge, when
/// the policy says so).
pub(super) fn check_required(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let Some(policy) = &opts.trust.policy else {
        return;
    };
    if policy.verdicts.is_empty() {
        return;
    }
    let files = verdict_files(crate::run_dir::of_manifest(path));
    let manifest_sha = hex::encode(sha256_of(bytes));
    for req in &policy.verdicts {
        let label = requirement_label(req);
        let verifiers = trust::Trust {
            keys: req.by.iter().map(|s| s.key.clone()).collect(),
            policy: None,
        };
        let mut why_not = Vec::new();
        let found = files
            .iter()
            .find(|f| match verdict_meets(f, req, &verifiers, &manifest_sha) {
                Ok(()) => true,
                Err(why) => {
                    let name = f
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default();
                    why_not.push(format!("{name}: {why}"));
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

/// Verdict files next to a manifest, sorted.
fn verdict_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(crate::vsa::FILE_PREFIX) && n.ends_with(".intoto.json")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// `required verdict audit by auditor, at least 3 segments, bitwise, anchored challenge`.
fn requirement_label(req: &trust::VerdictRequirement) -> String {
    let names: Vec<&str> = req.by.iter().map(|s| s.name.as_str()).collect();
    let mut label = format!(
        "{} {} by {}",
        CheckId::RequiredVerdict.label(),
        req.kind,
        names.join(" or ")
    );
    if req.kind == VerdictKind::Audit && req.min_segments > 0 {
        label.push_str(&format!(", at least {} segments", req.min_segments));
    }
    if req.bitwise {
        label.push_str(", bitwise");
    }
    if req.challenge == ChallengeRequirement::Anchor {
        label.push_str(", challenge from the anchor");
    }
    label
}

/// Whether the verdict at `file` satisfies `req` for the manifest whose sha256 is given.
fn verdict_meets(
    file: &Path,
    req: &trust::VerdictRequirement,
    verifiers: &trust::Trust,
    manifest_sha: &str,
) -> Result<(), String> {
    let signed = trust::open_statement::<VerdictStatement>(file, DocumentKind::Verdict, verifiers)
        .map_err(|e| match e {
            trust::TrustError::Untrusted { .. } => "not signed by a named verifier".to_string(),
            trust::TrustError::Malformed { .. } | trust::TrustError::WrongKind { .. } => {
                "not a verdict".to_string()
            }
            other => other.to_string(),
        })?;
    let v = &signed.statement.predicate;
    if v.auditai.kind != req.kind {
        return Err(format!("a {} verdict", v.auditai.kind));
    }
    if let Some(d) = &v.auditai.dispute {
        let party = d
            .header
            .parties
            .iter()
            .position(|p| crate::hash::hex_eq(&p.manifest_sha256, manifest_sha))
            .ok_or("a dispute about other manifests")?;
        crate::dispute::verdict::check(d)?;
        return if d.losers.contains(&party) {
            Err("the dispute found this run wrong".into())
        } else {
            Ok(())
        };
    }
    if v.verification_result != VerificationResult::Passed {
        return Err(v.verification_result.to_string());
    }
    let about = v
        .input_attestations
        .first()
        .and_then(|i| i.digest.get("sha256"))
        .is_some_and(|d| crate::hash::hex_eq(d, manifest_sha));
    if !about {
        return Err("about another manifest".into());
    }
    if req.kind == VerdictKind::Audit {
        let a = v.auditai.audit.as_ref().ok_or("no audit summary")?;
        if a.segments.len() < req.min_segments || a.segments_passed < a.segments.len() {
            return Err(format!(
                "{} of {} replayed segments matched, {} required",
                a.segments_passed,
                a.segments.len(),
                req.min_segments
            ));
        }
        if req.bitwise
            && a.segments
                .iter()
                .any(|s| s.comparison != Comparison::Bitwise)
        {
            return Err("segments compared within tolerances, the policy requires bitwise".into());
        }
        let confirmed = v
            .auditai
            .checks
            .iter()
            .any(|c| c.id == "challenge" && c.status == "pass");
        if req.challenge == ChallengeRequirement::Anchor {
            if a.challenge_source != ChallengeSource::Anchor {
                return Err(format!(
                    "a challenge from {}, the policy requires one read from the chain after the anchor",
                    match a.challenge_source {
                        ChallengeSource::Explicit => "--challenge",
                        ChallengeSource::Random => "fresh randomness",
                        _ => "a receipt, unconfirmed",
                    }
                ));
            }
            if !confirmed {
                return Err("its challenge was not confirmed on the chain".into());
            }
        }
    }
    Ok(())
}
