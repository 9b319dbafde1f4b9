//! The checker of a prediction log (`auditai predict --log`): its hash chain, every model it
//! names (each distinct manifest opened once through the gate), and its coverage: the prefix of
//! whole entries an anchor receipt or a signed checkpoint vouches for. The chain alone is
//! unkeyed, so entries after the covered prefix are reported as uncovered, and
//! `--require-covered` fails on them.

use std::path::Path;

use super::{Options, VerifyError, anchor};
use crate::predlog::{self, CheckpointStatement, LogError, ModelRef};
use crate::report::{CheckId, Report, Status};
use crate::trust::{self, Pin, Required, RunKind, SignedRun};

/// What a sidecar (receipt or checkpoint) offers: the prefix digest it covers, if readable.
struct Sidecars {
    receipt: Option<crate::anchor::Receipt>,
    anchored: Option<[u8; 32]>,
    checkpoint: Option<CheckpointStatement>,
    checkpoint_digest: Option<[u8; 32]>,
}

/// Check the log at `path`.
pub(super) fn check(path: &Path, opts: &Options, report: &mut Report) -> Result<(), VerifyError> {
    let side = sidecars(path, opts, report);
    let digests: Vec<[u8; 32]> = side
        .anchored
        .iter()
        .chain(&side.checkpoint_digest)
        .copied()
        .collect();
    let chain = match predlog::check(path, &digests) {
        Ok(c) => c,
        Err(LogError::Io { path, source }) => return Err(VerifyError::Read { path, source }),
        Err(e) => {
            report.push_row(CheckId::LogChain, Status::Fail, e.to_string());
            return Ok(());
        }
    };
    report.push_row(
        CheckId::LogChain,
        Status::Pass,
        format!(
            "{} entries, every hash and link holds; head {} (an unkeyed chain: only covered entries are tamper-evident)",
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
    let root = super::document_root(path, opts);
    for m in &chain.models {
        let label = format!("{} {}", CheckId::LogModel.label(), m.manifest);
        let (status, detail) = model_row(m, &root, opts);
        report.push(CheckId::LogModel, label, status, detail);
    }
    let mut prefixes = chain.prefixes.iter().copied();
    let anchored = side.anchored.and_then(|_| prefixes.next().flatten());
    let signed = side
        .checkpoint_digest
        .and_then(|_| prefixes.next().flatten());
    anchor_rows(path, &side, anchored, chain.entries, opts, report);
    checkpoint_row(&side, signed, &chain, report);
    coverage_row(chain.entries, anchored, signed, opts, report);
    Ok(())
}

/// The receipt and the signed checkpoint next to the log (a row for each one that is broken).
fn sidecars(path: &Path, opts: &Options, report: &mut Report) -> Sidecars {
    let mut side = Sidecars {
        receipt: None,
        anchored: None,
        checkpoint: None,
        checkpoint_digest: None,
    };
    let rpath = crate::anchor::receipt_path(path);
    if rpath.exists() {
        match crate::anchor::read_receipt(&rpath) {
            Ok(r) => {
                let mut d = [0u8; 32];
                side.anchored = hex::decode_to_slice(&r.manifest_sha256, &mut d)
                    .ok()
                    .map(|_| d);
                side.receipt = Some(r);
            }
            Err(e) => report.push_row(CheckId::AnchorReceipt, Status::Fail, e.to_string()),
        }
    }
    let cpath = predlog::checkpoint_path(path);
    if cpath.exists() {
        let opened = crate::fsio::read_bounded(&cpath, crate::fsio::MAX_DOCUMENT)
            .map_err(|e| format!("{}: {e}", cpath.display()))
            .and_then(|b| crate::manifest::open_envelope(&b).map_err(|e| e.to_string()))
            .and_then(|(env, payload, value)| {
                let st: CheckpointStatement = serde_json::from_value(value)
                    .map_err(|e| format!("not a log checkpoint: {e}"))?;
                if st.predicate_type != predlog::CHECKPOINT_PREDICATE {
                    return Err("not a log checkpoint".to_string());
                }
                Ok((env, payload, st))
            });
        match opened {
            Ok((env, payload, st)) => {
                let before = report.checks.len();
                trust::signature_rows(&env, &payload, &opts.trust, report);
                let ok = report.checks[before..]
                    .iter()
                    .all(|c| c.status == Status::Pass);
                if ok {
                    side.checkpoint_digest = st.prefix_sha256();
                    side.checkpoint = Some(st);
                }
            }
            Err(why) => report.push_row(CheckId::LogCoverage, Status::Fail, why),
        }
    }
    side
}

/// One model the entries name: its manifest is the recorded bytes and signed as the trust
/// requires.
fn model_row(m: &ModelRef, root: &Path, opts: &Options) -> (Status, String) {
    let run = crate::fsio::recorded(root, &m.manifest)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            SignedRun::open_pinned(
                &p,
                Pin::Blake3(&m.blake3),
                RunKind::Training,
                Required::Signers(&opts.trust),
            )
            .map_err(|e| format!("the manifest is not as the entries record: {e}"))
        });
    match run {
        Err(why) => (Status::Fail, why),
        Ok(_) if !m.verified => (
            Status::Warn,
            "the manifest verifies now, but these predictions were made with --no-verify".into(),
        ),
        Ok(_) => (
            Status::Pass,
            format!(
                "manifest blake3 {} unchanged, signed by a trusted key",
                m.blake3
            ),
        ),
    }
}

/// The anchor receipt: the prefix it covers, and the anchor's own checks.
fn anchor_rows(
    path: &Path,
    side: &Sidecars,
    anchored: Option<u64>,
    total: u64,
    opts: &Options,
    report: &mut Report,
) {
    match (&side.receipt, anchored, side.anchored) {
        (None, _, _) => report.push_row(
            CheckId::Anchor,
            Status::Skip,
            "no anchor receipt next to the log",
        ),
        (Some(_), None, _) | (Some(_), _, None) => report.push_row(
            CheckId::AnchorMerklePath,
            Status::Fail,
            "the receipt's digest is not that of any prefix of whole entries: anchored entries were changed",
        ),
        (Some(_), Some(n), Some(d)) => {
            report.push_row(
                CheckId::Anchor,
                Status::Pass,
                format!("the receipt covers the first {n} of {total} entries"),
            );
            anchor::check_anchor(path, d, opts, report);
        }
    }
}

/// The signed checkpoint: the prefix it covers must be a prefix of this log, ending at its head.
fn checkpoint_row(
    side: &Sidecars,
    signed: Option<u64>,
    chain: &predlog::Chain,
    report: &mut Report,
) {
    let Some(cp) = &side.checkpoint else {
        return;
    };
    match signed {
        Some(n) if n == cp.predicate.entries => report.push_row(
            CheckId::LogCoverage,
            Status::Pass,
            format!(
                "a signed checkpoint covers the first {n} entries (signed at {} by its signer's clock)",
                cp.predicate.time
            ),
        ),
        _ => report.push_row(
            CheckId::LogCoverage,
            Status::Fail,
            format!(
                "the signed checkpoint covers {} entries that are not the first entries of this log ({} now): entries were changed, removed or reordered",
                cp.predicate.entries, chain.entries
            ),
        ),
    }
}

/// `N of M entries covered`: a pass when all are, else a warning (a failure with
/// `--require-covered`).
fn coverage_row(
    total: u64,
    anchored: Option<u64>,
    signed: Option<u64>,
    opts: &Options,
    report: &mut Report,
) {
    let covered = anchored.unwrap_or(0).max(signed.unwrap_or(0));
    let how = format!(
        "anchor: {}, signed checkpoint: {}",
        anchored.map_or("none".to_string(), |n| n.to_string()),
        signed.map_or("none".to_string(), |n| n.to_string())
    );
    let (status, detail) = if covered >= total {
        (
            Status::Pass,
            format!("{covered} of {total} entries covered ({how})"),
        )
    } else {
        (
            if opts.require_covered {
                Status::Fail
            } else {
                Status::Warn
            },
            format!(
                "{covered} of {total} entries covered ({how}); the last {} are not tamper-evident: anyone who can write the log could rewrite them",
                total - covered
            ),
        )
    };
    report.push_row(CheckId::LogCoverage, status, detail);
}
