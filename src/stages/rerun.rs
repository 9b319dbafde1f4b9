//! `auditai audit --rerun STAGE`: re-execute a command stage recorded in a pipeline manifest in
//! a scratch copy of exactly its recorded deps, with its recorded environment, and compare its
//! outs bitwise with the recorded digests.
//!
//! Reads the project only to copy deps whose digests match the manifest; writes only inside a
//! temporary directory, removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::hash::{Hashed, Hasher};
use crate::manifest::{self, StageRecord};

/// Errors that stop a rerun before a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The manifest cannot be read or is not a pipeline manifest.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The stage is not in the manifest, or is not a command stage.
    #[error("{0}")]
    Stage(String),
    /// A recorded dep is missing or changed, so the recorded inputs cannot be reassembled.
    #[error("cannot rerun on the recorded inputs: {0}")]
    Inputs(String),
    /// The scratch directory or the command could not be set up.
    #[error("{0}")]
    Io(String),
}

/// How one out compared.
#[derive(Debug, Clone, Serialize)]
pub struct OutComparison {
    /// Root-relative path.
    pub path: String,
    /// The recorded blake3.
    pub recorded: String,
    /// The rerun's blake3 (absent: the rerun did not produce it).
    pub rerun: Option<String>,
    /// Whether they are equal.
    pub same: bool,
    /// For directories: the files that differ, are missing or were added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differing: Vec<String>,
}

/// A rerun's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct RerunReport {
    /// The stage.
    pub stage: String,
    /// The command.
    pub cmd: String,
    /// The rerun's exit code.
    pub exit_code: Option<i32>,
    /// Whether every out is bitwise identical.
    pub reproduced: bool,
    /// Each out.
    pub outs: Vec<OutComparison>,
    /// Secret variables that were recorded by name and were not set now.
    pub missing_secrets: Vec<String>,
    /// The tail of the rerun's stderr (at most 2 KiB), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

pub use crate::verify::Trust;

/// Rerun `stage` of the pipeline manifest at `path`; `root` overrides the project root.
///
/// This executes the command the manifest records: with [`Trust::Signers`] only after the
/// manifest's signatures (and, for a reused stage, those of the manifest that recorded it
/// running) satisfy the trust.
pub fn rerun(
    path: &Path,
    stage: &str,
    root: Option<&Path>,
    trust: &Trust<'_>,
) -> Result<RerunReport, RerunError> {
    let bad = |message: String| RerunError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| bad(e.to_string()))?;
    let opened = manifest::open(&bytes).map_err(|e| bad(e.to_string()))?;
    if let Trust::Signers(opts) = trust {
        crate::verify::signatures_trusted(&opened, opts).map_err(|why| {
            bad(format!(
                "not rerunning a command from a manifest whose signatures do not satisfy the trust ({why})"
            ))
        })?;
    }
    let ext = opened
        .statement
        .predicate
        .pipeline
        .ok_or_else(|| bad("not a pipeline manifest (no auditaiPipeline section)".into()))?;
    let rec = ext.stages.iter().find(|s| s.name == stage).ok_or_else(|| {
        let names: Vec<&str> = ext.stages.iter().map(|s| s.name.as_str()).collect();
        RerunError::Stage(format!(
            "the manifest records no stage `{stage}` (it records: {})",
            names.join(", ")
        ))
    })?;
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => project_root(path, ext.run_dir.as_deref()),
    };
    let produced;
    let rec = match (&rec.status, &rec.produced_by) {
        (manifest::StageStatus::Reused, Some(by)) => {
            produced = producing_record(&root, by, stage, trust)?;
            &produced
        }
        _ => rec,
    };
    let cmd = match (&rec.kind[..], &rec.cmd) {
        ("command", Some(c)) => c.clone(),
        _ => {
            return Err(RerunError::Stage(format!(
                "stage `{stage}` is a training stage; audit its run directory's manifest instead (auditai audit {})",
                rec.manifest
                    .as_ref()
                    .and_then(|m| m.name.clone())
                    .unwrap_or_default()
            )));
        }
    };
    let scratch = tempfile::Builder::new()
        .prefix("auditai-rerun-")
        .tempdir()
        .map_err(|e| RerunError::Io(format!("cannot create a scratch directory: {e}")))?;
    let base = scratch.path();
    copy_deps(rec, &root, base)?;
    let wdir = safe(base, rec.wdir.as_deref().unwrap_or("."))?;
    std::fs::create_dir_all(&wdir)
        .map_err(|e| RerunError::Io(format!("{}: {e}", wdir.display())))?;
    for o in &rec.outs {
        let name = o.name.as_deref().unwrap_or_default();
        if let Some(parent) = safe(base, name)?.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let mut missing_secrets = Vec::new();
    let secrets: Vec<(String, String)> = rec
        .secret_env
        .iter()
        .filter_map(|n| match std::env::var(n) {
            Ok(v) => Some((n.clone(), v)),
            Err(_) => {
                missing_secrets.push(n.clone());
                None
            }
        })
        .collect();
    let output = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(&wdir)
            .env_clear()
            .envs(&rec.env)
            .envs(secrets)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .output()
            .map_err(|e| RerunError::Io(format!("cannot run `sh -c`: {e}")))?
    };
    let hasher = Hasher::new(None, false);
    let mut outs = Vec::new();
    for o in &rec.outs {
        let name = o.name.clone().unwrap_or_default();
        let recorded = o.digest.get("blake3").cloned().unwrap_or_default();
        let at = safe(base, &name)?;
        let (rerun, differing) = match hasher.hash_path(&at) {
            Ok(Hashed::File(d)) => (Some(d.blake3.hex()), Vec::new()),
            Ok(Hashed::Dir(t)) => {
                let differing = tree_differences(o, &t);
                (Some(t.blake3.hex()), differing)
            }
            _ => (None, Vec::new()),
        };
        let same = rerun
            .as_deref()
            .is_some_and(|r| crate::hash::hex_eq(r, &recorded));
        outs.push(OutComparison {
            path: name,
            recorded,
            rerun,
            same,
            differing,
        });
    }
    let ok = output.status.success();
    let stderr_tail = (!ok).then(|| {
        let s = String::from_utf8_lossy(&output.stderr);
        let start = s.len().saturating_sub(2048);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].trim().to_string()
    });
    Ok(RerunReport {
        stage: stage.to_string(),
        cmd,
        exit_code: output.status.code(),
        reproduced: ok && outs.iter().all(|o| o.same),
        outs,
        missing_secrets,
        stderr_tail,
    })
}

/// The project root of a pipeline manifest: the manifest's directory with the recorded run
/// directory's components removed, else the git work tree, else the current directory.
pub fn project_root(manifest_path: &Path, run_dir: Option<&str>) -> PathBuf {
    let dir = crate::verify::run_dir_of(manifest_path);
    if let Some(rel) = run_dir {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let parts = rel
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .count();
        let mut root = abs.as_path();
        let tail_ok = abs.ends_with(rel);
        for _ in 0..parts {
            root = root.parent().unwrap_or(root);
        }
        if tail_ok && !rel.split('/').any(|p| p == "..") {
            return root.to_path_buf();
        }
    }
    crate::provenance::project_root(dir)
}

/// The record of the run that produced a reused stage, from the manifest the reuse names (its
/// digest checked).
fn producing_record(
    root: &Path,
    by: &manifest::ProducedBy,
    stage: &str,
    trust: &Trust<'_>,
) -> Result<StageRecord, RerunError> {
    let path = safe(root, &by.manifest)?;
    let bytes =
        crate::hash::read_pinned(&path, &by.blake3, crate::fsio::MAX_DOCUMENT).map_err(|e| {
            RerunError::Stage(format!(
                "stage `{stage}` was reused from {}, which cannot be read as recorded: {}",
                by.manifest,
                match e {
                    crate::hash::PinnedError::Changed { .. } => "its digest changed".to_string(),
                    crate::hash::PinnedError::Read(e) => e.to_string(),
                }
            ))
        })?;
    let opened =
        manifest::open(&bytes).map_err(|e| RerunError::Stage(format!("{}: {e}", by.manifest)))?;
    if let Trust::Signers(opts) = trust {
        crate::verify::signatures_trusted(&opened, opts).map_err(|why| {
            RerunError::Stage(format!(
                "stage `{stage}` was reused from {}, whose signatures do not satisfy the trust ({why})",
                by.manifest
            ))
        })?;
    }
    Some(opened)
        .and_then(|o| o.statement.predicate.pipeline)
        .and_then(|ext| {
            ext.stages
                .into_iter()
                .find(|s| s.name == stage && s.status == manifest::StageStatus::Ran)
        })
        .ok_or_else(|| {
            RerunError::Stage(format!(
                "{} does not record stage `{stage}` running",
                by.manifest
            ))
        })
}

/// `base/rel`, refusing a recorded path that would leave `base`.
fn safe(base: &Path, rel: &str) -> Result<PathBuf, RerunError> {
    if rel == "." {
        return Ok(base.to_path_buf());
    }
    crate::fsio::safe_join(base, rel)
        .map_err(|e| RerunError::Inputs(format!("recorded path `{rel}`: {e}")))
}

/// Copy each recorded dep from the project into the scratch directory, checking its digest.
fn copy_deps(rec: &StageRecord, root: &Path, base: &Path) -> Result<(), RerunError> {
    let hasher = Hasher::new(None, false);
    for d in &rec.deps {
        let name = d.name.as_deref().unwrap_or_default();
        let recorded = d.digest.get("blake3").cloned().unwrap_or_default();
        let from = safe(root, name)?;
        let to = safe(base, name)?;
        let actual = match hasher.hash_path(&from) {
            Ok(Hashed::File(f)) => f.blake3.hex(),
            Ok(Hashed::Dir(t)) => t.blake3.hex(),
            Ok(_) => {
                return Err(RerunError::Inputs(format!(
                    "dep {name} is not a file or directory"
                )));
            }
            Err(e) => return Err(RerunError::Inputs(e.to_string())),
        };
        if !crate::hash::hex_eq(&actual, &recorded) {
            return Err(RerunError::Inputs(format!(
                "dep {name} changed since the run (blake3 {actual}, the manifest records {recorded})"
            )));
        }
        copy(&from, &to).map_err(|e| RerunError::Io(format!("copying {name}: {e}")))?;
    }
    Ok(())
}

/// Copy a file, or a directory's files and subdirectories (symlinks are not followed or copied).
fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// The files of a recorded directory out that differ from the rerun's tree.
fn tree_differences(
    recorded: &manifest::ResourceDescriptor,
    t: &crate::hash::TreeDigest,
) -> Vec<String> {
    let listed = recorded
        .annotations_as::<manifest::TreeAnnotations>()
        .entries
        .unwrap_or_default();
    let mut out = Vec::new();
    for e in &listed {
        let now = t.entries.iter().find(|x| x.path() == e.path);
        let same = match (now, &e.blake3) {
            (Some(crate::hash::TreeEntry::File { digest, .. }), Some(b)) => {
                crate::hash::hex_eq(&digest.blake3.hex(), b)
            }
            _ => false,
        };
        if !same {
            out.push(e.path.clone());
        }
    }
    for x in &t.entries {
        if !listed.iter().any(|e| e.path == x.path()) {
            out.push(x.path().to_string());
        }
    }
    out
}
