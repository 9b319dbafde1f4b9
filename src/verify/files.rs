//! A manifest's files: subjects and byproducts next to the manifest, the checkpoint tree,
//! dependencies under the root, the code commit, and nothing unnamed in the run directory.
//! Digests of what is on disk are shown only when the manifest's signatures hold, so an
//! unsigned document cannot use `verify` as an oracle for any file's digest.

use std::collections::BTreeMap;
use std::path::Path;

use super::{FileScope, Options, pipeline};
use crate::anchor;
use crate::hash::{Digest, FileDigest, Hasher, TreeEntry};
use crate::manifest::{self, ResourceDescriptor, Statement};
use crate::report::{CheckId, Hint, Report, Status};

/// How files are checked: the hasher, whether digests of what is on disk may be shown, and
/// whether a file that is not here is `absent` rather than a failure.
pub(super) struct Files {
    hasher: Hasher<'static>,
    reveal: bool,
    partial: bool,
}

impl Files {
    /// A checker that shows digests only when `reveal` (the document's signatures hold).
    pub(super) fn new(sha256: bool, reveal: bool) -> Files {
        Files {
            hasher: Hasher::new(None, sha256),
            reveal,
            partial: false,
        }
    }

    /// The same checker for `verify --partial`: files that are not here are `absent`.
    pub(super) fn partial(self, partial: bool) -> Files {
        Files { partial, ..self }
    }

    /// Whether absent files are reported as `absent` instead of failing.
    pub(super) fn is_partial(&self) -> bool {
        self.partial
    }

    /// The hasher.
    pub(super) fn hasher(&self) -> &Hasher<'static> {
        &self.hasher
    }

    /// A digest for a detail line: itself when it may be shown, else a placeholder.
    pub(super) fn show(&self, d: &Digest) -> String {
        if self.reveal {
            d.hex()
        } else {
            "(withheld: the signatures do not hold)".to_string()
        }
    }
}

/// Re-hash every file the statement names (subjects and byproducts next to the manifest,
/// dependencies under the root), look up the code commit, and check that the run directory holds
/// nothing the manifest does not name. The part of `verify` that `audit` repeats before replay;
/// the caller has checked the signatures (digests are shown).
pub fn check_files(path: &Path, st: &Statement, opts: &Options, report: &mut Report) {
    check_files_as(path, st, opts, true, report);
}

/// [`check_files`], showing digests of what is on disk only when `signed`.
pub(super) fn check_files_as(
    path: &Path,
    st: &Statement,
    opts: &Options,
    signed: bool,
    report: &mut Report,
) {
    let dir = crate::run_dir::of_manifest(path);
    if let FileScope::Artifacts(given) = &opts.files {
        check_artifacts(st, given, signed, report);
        return;
    }
    let files = Files::new(true, signed).partial(opts.files == FileScope::Present);
    if let Some(ext) = &st.predicate.pipeline {
        pipeline::check_pipeline(path, st, ext, opts, &files, report);
        return;
    }
    for s in &st.subject {
        check_file(CheckId::Subject, s, dir, &files, report);
    }
    for b in &st.predicate.run_details.byproducts {
        if b.is_directory() {
            check_tree(b, dir, &files, report);
        } else {
            check_file(CheckId::Byproduct, b, dir, &files, report);
        }
    }
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| crate::provenance::project_root(dir));
    for d in &st.predicate.build_definition.resolved_dependencies {
        if d.uri.as_deref().is_some_and(|u| u.starts_with("file:")) {
            check_file(CheckId::Dependency, d, &root, &files, report);
        } else if d.name.as_deref() == Some("code") {
            check_code(d, &root, report);
        }
    }
    check_extras(path, st, opts, report);
}

/// `--artifact`: each given file must be a subject or byproduct of the statement, found by its
/// digest under any name. Nothing else is read; digests are shown only when `signed`.
fn check_artifacts(
    st: &Statement,
    given: &[std::path::PathBuf],
    signed: bool,
    report: &mut Report,
) {
    let files = Files::new(true, signed);
    let recorded: Vec<(&str, &ResourceDescriptor)> = st
        .subject
        .iter()
        .map(|d| ("subject", d))
        .chain(
            st.predicate
                .run_details
                .byproducts
                .iter()
                .map(|d| ("byproduct", d)),
        )
        .filter(|(_, d)| !d.is_directory())
        .collect();
    for path in given {
        let label = format!("artifact {}", path.display());
        let actual = match files.hasher.hash_file(path) {
            Ok(a) => a,
            Err(e) => {
                report.push(CheckId::Artifact, label, Status::Fail, e.to_string());
                continue;
            }
        };
        match recorded
            .iter()
            .find(|(_, d)| compare(d, &actual, &files).is_ok())
        {
            Some((role, d)) => report.push(
                CheckId::Artifact,
                label,
                Status::Pass,
                format!(
                    "is the {role} {} of the statement (blake3 {})",
                    d.name.as_deref().unwrap_or("(unnamed)"),
                    files.show(&actual.blake3)
                ),
            ),
            None => report.push(
                CheckId::Artifact,
                label,
                Status::Fail,
                "matches no subject or byproduct of the statement by digest",
            ),
        }
    }
}

/// The run directory must hold only what the manifest names, the manifest with its receipts and
/// proofs, the run-directory marker, and the extras the verifier declared. Not checked with
/// `--partial`, whose run directory may hold anything beside the files that are checked.
pub(super) fn check_extras(path: &Path, st: &Statement, opts: &Options, report: &mut Report) {
    if opts.files == FileScope::Present {
        report.push_row(
            CheckId::RunDirectory,
            Status::Skip,
            "not checked in a partial verification: other files may lie beside the recorded ones",
        );
        return;
    }
    let allow = &opts.allow_extra;
    let dir = crate::run_dir::of_manifest(path);
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
        expected.insert(crate::stages::JOBS.to_string());
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

fn expected(d: &ResourceDescriptor, alg: &str) -> Option<Digest> {
    d.digest.get(alg).and_then(|h| Digest::from_hex(h))
}

fn compare(d: &ResourceDescriptor, actual: &FileDigest, files: &Files) -> Result<(), String> {
    let mut checked = 0;
    for (alg, have) in [("blake3", Some(actual.blake3)), ("sha256", actual.sha256)] {
        if !d.digest.contains_key(alg) {
            continue;
        }
        let (Some(want), Some(have)) = (expected(d, alg), have) else {
            return Err(format!("{alg} digest in the manifest is malformed"));
        };
        if !want.ct_eq(&have) {
            return Err(if files.reveal {
                format!("changed: {alg} is {have}, the manifest records {want}")
            } else {
                format!("changed: its {alg} is not the one the manifest records")
            });
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

pub(super) fn check_file(
    kind: CheckId,
    d: &ResourceDescriptor,
    base: &Path,
    files: &Files,
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
        Err(_) if files.partial => {
            report.push(kind, label, Status::Absent, absent_detail(kind, base));
            return;
        }
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
    match files.hasher.hash_file(&path) {
        Ok(actual) => match compare(d, &actual, files) {
            Ok(()) => report.push(
                kind,
                label,
                Status::Pass,
                format!("blake3 {}", files.show(&actual.blake3)),
            ),
            Err(why) => report.push(kind, label, Status::Fail, why),
        },
        Err(e) => report.push(kind, label, Status::Fail, e.to_string()),
    }
}

pub(super) fn check_tree(d: &ResourceDescriptor, base: &Path, files: &Files, report: &mut Report) {
    let name = d.name.clone().unwrap_or_default();
    let label = format!("directory {name}/");
    let path = match crate::fsio::safe_join(base, &name) {
        Ok(p) => p,
        Err(why) => {
            report.push(CheckId::Directory, label, Status::Fail, why.to_string());
            return;
        }
    };
    if files.partial && std::fs::symlink_metadata(&path).is_err() {
        let detail = absent_detail(CheckId::Directory, base);
        report.push(CheckId::Directory, label, Status::Absent, detail);
        return;
    }
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
    let actual = match files.hasher.hash_tree(&path) {
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
            format!(
                "{} files, blake3 {}",
                have.len(),
                files.show(&actual.blake3)
            ),
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

/// What an absent file's row says under `--partial`: a dependency is withheld (training data a
/// receiver never gets), anything else simply not here.
pub(super) fn absent_detail(kind: CheckId, base: &Path) -> String {
    if kind == CheckId::Dependency {
        format!("withheld: not under {}; not verified", base.display())
    } else {
        "not here; not checked".to_string()
    }
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

pub(super) fn check_code(d: &ResourceDescriptor, root: &Path, report: &mut Report) {
    let Some(commit) = d.digest.get("gitCommit") else {
        report.push_row(
            CheckId::Code,
            Status::Warn,
            "trained outside a git repository (no commit recorded)",
        );
        return;
    };
    match crate::provenance::commit_exists(root, commit) {
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
