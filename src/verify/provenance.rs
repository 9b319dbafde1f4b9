//! The checker of a provenance or pipeline manifest: its envelope, its signatures under the
//! trust, every file it names (digests withheld when the signatures do not hold), the verdicts a
//! policy requires next to it, and its anchor.

use std::path::Path;

use super::{Options, anchor, files, sha256_of, sources, verdict};
use crate::manifest;
use crate::report::{CheckId, Report, Status};
use crate::trust;

/// Check the manifest at `path` whose bytes are `bytes`.
pub(super) fn check(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let opened = match manifest::open(bytes) {
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
            return;
        }
    };
    let before = report.checks.len();
    trust::signature_rows(&opened.envelope, &opened.payload, &opts.trust, report);
    let signed = report.checks[before..]
        .iter()
        .all(|c| c.status == Status::Pass);
    files::check_files_as(path, &opened.statement, opts, signed, report);
    sources::check_sources(path, &opened.statement, opts, report);
    verdict::check_required(path, bytes, opts, report);
    anchor::check_anchor(path, sha256_of(bytes), opts, report);
}
