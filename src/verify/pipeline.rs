//! A pipeline manifest's files: subjects and external deps under the project root, the logs in
//! the run directory, every stage's deps and outs, and for a reused stage the manifest that
//! recorded it running, opened through the gate.

use std::path::Path;

use super::Options;
use super::files::{Files, check_code, check_extras, check_file, check_tree};
use crate::manifest::{self, ResourceDescriptor, Statement};
use crate::report::{CheckId, Report, Status};
use crate::trust::{Required, RunKind, SignedRun, TrustError};

/// A pipeline manifest's files: subjects and external deps under the project root, the logs in
/// the run directory, then every stage's deps and outs, and where a stage was reused, the
/// manifest that recorded it running.
pub(super) fn check_pipeline(
    path: &Path,
    st: &Statement,
    ext: &manifest::PipelineExtension,
    opts: &Options,
    files: &Files,
    report: &mut Report,
) {
    let dir = crate::run_dir::of_manifest(path);
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| crate::run_dir::project_root(path, ext.run_dir.as_deref()));
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
            check_tree(s, &root, files, report);
        } else {
            check_file(CheckId::Subject, s, &root, files, report);
        }
    }
    for b in &st.predicate.run_details.byproducts {
        check_file(CheckId::Byproduct, b, dir, files, report);
    }
    for d in &st.predicate.build_definition.resolved_dependencies {
        if d.uri.as_deref().is_some_and(|u| u.starts_with("file:")) {
            if d.is_directory() {
                check_tree(d, &root, files, report);
            } else {
                check_file(CheckId::Dependency, d, &root, files, report);
            }
        } else if d.name.as_deref() == Some("code") {
            check_code(d, &root, report);
        }
    }
    for rec in &ext.stages {
        check_stage(rec, &root, opts, files, report);
    }
    check_extras(path, st, opts, report);
}

/// One stage: its deps and outs as recorded, its training manifest, and for a reused stage the
/// manifest that recorded it running (digest, same outs, signatures).
fn check_stage(
    rec: &manifest::StageRecord,
    root: &Path,
    opts: &Options,
    files: &Files,
    report: &mut Report,
) {
    let label = format!("stage {}", rec.name);
    let hasher = files.hasher();
    let mut bad = Vec::new();
    let mut absent = Vec::new();
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
            Err(_) if files.is_partial() => absent.push(name),
            Err(_) => bad.push(format!("{name} missing")),
        }
    }
    if !bad.is_empty() {
        report.push(CheckId::Stage, label, Status::Fail, bad.join("; "));
        return;
    }
    if !absent.is_empty() {
        let detail = format!("not here, not checked: {}", absent.join(", "));
        report.push(CheckId::Stage, label, Status::Absent, detail);
        return;
    }
    let how = match (rec.status, rec.exit_code) {
        (manifest::StageStatus::Ran, Some(c)) => format!("ran (exit {c})"),
        (manifest::StageStatus::Ran, None) => "ran".to_string(),
        (manifest::StageStatus::Reused, _) if rec.restored => {
            "restored from the run cache".to_string()
        }
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

/// Whether the manifest a reused stage names is the one recorded (digest), records the stage
/// running with the same outs and command, and is signed as the trust requires: opened through
/// the gate, inside the project only.
fn check_produced_by(
    rec: &manifest::StageRecord,
    by: &manifest::ProducedBy,
    root: &Path,
    opts: &Options,
) -> (Status, String) {
    let path = match crate::fsio::safe_join(root, &by.manifest) {
        Ok(p) => p,
        Err(e) => {
            return (
                Status::Fail,
                format!("the manifest it was reused from: {e}"),
            );
        }
    };
    let required = if opts.trust.is_empty() {
        Required::Unchecked
    } else {
        Required::Signers(&opts.trust)
    };
    let pin = crate::trust::Pin::Blake3(&by.blake3);
    let run = match SignedRun::open_pinned(&path, pin, RunKind::Pipeline, required) {
        Ok(r) => r,
        Err(e @ TrustError::Untrusted { .. }) => {
            return (
                Status::Fail,
                format!(
                    "outs first recorded by {}, which is refused: {e}",
                    by.manifest
                ),
            );
        }
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
    let outs = |d: &[ResourceDescriptor]| -> Vec<(Option<String>, Option<String>)> {
        d.iter()
            .map(|x| (x.name.clone(), x.digest.get("blake3").cloned()))
            .collect()
    };
    let same = run.pipeline().is_some_and(|ext| {
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
    if !run.checked() {
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
