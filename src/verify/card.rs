//! The checker of a model card or ML-BOM from `auditai export`: its body is the one its binding
//! seals, the manifest it names is those bytes (opened through the gate), its subjects are the
//! run's, the manifest is signed as the trust requires, and the run's subject files on disk are
//! still the recorded ones.

use std::path::Path;

use super::Options;
use super::files::{Files, check_file};
use crate::export::binding;
use crate::report::{CheckId, Report, Status};
use crate::trust::{self, DocumentKind, Pin, Required, RunKind, SignedRun};

/// Check the document at `path` with `bytes`.
pub(super) fn check(
    path: &Path,
    bytes: &[u8],
    kind: DocumentKind,
    opts: &Options,
    report: &mut Report,
) {
    let Some(sealed) = binding::open(bytes) else {
        report.push_row(
            CheckId::Document,
            Status::Fail,
            format!(
                "not {} exported by auditai (no binding)",
                kind.with_article()
            ),
        );
        return;
    };
    let b = &sealed.binding;
    if !sealed.body_intact {
        report.push_row(
            CheckId::Document,
            Status::Fail,
            "the document's body is not the one its binding seals: it was edited after export (or exported before bodies were sealed; export it again)",
        );
        return;
    }
    let root = super::document_root(path, opts);
    let run = crate::fsio::recorded(&root, &b.manifest)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            SignedRun::open_pinned(
                &p,
                Pin::Sha256(&b.manifest_sha256),
                RunKind::Training,
                Required::Unchecked,
            )
            .map_err(|e| e.to_string())
        });
    let run = match run {
        Ok(r) => r,
        Err(why) => {
            report.push_row(CheckId::Document, Status::Fail, why);
            return;
        }
    };
    if let Err(why) = same_subjects(b, &run) {
        report.push_row(CheckId::Document, Status::Fail, why);
        return;
    }
    report.push_row(
        CheckId::Document,
        Status::Pass,
        format!(
            "{} describing {} (sha256 {}) and its {} subject(s); its body is unchanged",
            kind.label(),
            b.manifest,
            b.manifest_sha256,
            b.subjects.len()
        ),
    );
    let opened = run.opened();
    let before = report.checks.len();
    trust::signature_rows(&opened.envelope, &opened.payload, &opts.trust, report);
    let signed = report.checks[before..]
        .iter()
        .all(|c| c.status == Status::Pass);
    let files = Files::new(true, signed);
    for s in &run.statement().subject {
        check_file(CheckId::Subject, s, run.dir(), &files, report);
    }
}

/// The document names exactly the run's subjects, by name and sha256.
fn same_subjects(b: &binding::Binding, run: &SignedRun) -> Result<(), String> {
    let st = run.statement();
    for s in &b.subjects {
        let theirs = st
            .subject
            .iter()
            .find(|x| x.name.as_deref() == Some(s.name.as_str()))
            .and_then(|x| x.digest.get("sha256"));
        if !theirs.is_some_and(|t| crate::hash::hex_eq(t, &s.sha256)) {
            return Err(format!("subject {} is not the run's", s.name));
        }
    }
    if b.subjects.len() != st.subject.len() {
        return Err("the document does not name every subject of the run".into());
    }
    Ok(())
}
