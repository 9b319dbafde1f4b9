//! `auditai audit --rerun STAGE`: re-execute a command stage recorded in a pipeline manifest in
//! a scratch copy of exactly its recorded deps, with its recorded environment, and compare its
//! outs bitwise with the recorded digests.
//!
//! Reads the project only to copy deps whose digests match the manifest; writes only inside a
//! temporary directory, removed afterwards.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::hash::{Hashed, Hasher};
use crate::manifest::{self, StageRecord};
use crate::trust::{Pin, Required, RunKind, SignedRun, TrustError};

/// Errors that stop a rerun before a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The manifest was refused or unreadable at the gate.
    #[error(transparent)]
    Trust(#[from] TrustError),
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

impl RerunError {
    /// Whether this is a definite "no" about the manifest (exit 1): the gate refused it.
    pub fn is_refusal(&self) -> bool {
        matches!(self, RerunError::Trust(e) if e.is_refusal())
    }
}

/// Bounds on a rerun.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Stop the command after this long (then it is not reproduced).
    pub timeout: Option<std::time::Duration>,
    /// Accept JSON and CSV outs whose numbers differ by at most this much relatively.
    pub rtol: Option<f64>,
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
    /// For a differing JSON or CSV file: the values that differ (compared with the project's
    /// copy of the out, when it still has the recorded digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<super::numeric::Comparison>,
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
    /// The relative tolerance numbers in JSON and CSV outs were compared within, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// With a tolerance: whether every out is identical or differs only in numbers within it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_tolerance: Option<bool>,
    /// Each out.
    pub outs: Vec<OutComparison>,
    /// Secret variables that were recorded by name and were not set now.
    pub missing_secrets: Vec<String>,
    /// The tail of the rerun's stderr (at most 2 KiB), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

/// Rerun `stage` of the pipeline manifest at `path`; `root` overrides the project root.
///
/// This executes the command the manifest records: opened through the gate, so with
/// [`Required::Signers`] only after the manifest's signatures (and, for a reused stage, those of
/// the manifest that recorded it running) satisfy the trust.
pub fn rerun(
    path: &Path,
    stage: &str,
    root: Option<&Path>,
    trust: Required<'_>,
    limits: &Limits,
) -> Result<RerunReport, RerunError> {
    let run = SignedRun::open(path, RunKind::Pipeline, trust)?;
    let ext = run
        .pipeline()
        .ok_or_else(|| RerunError::Stage(format!("{}: not a pipeline manifest", path.display())))?;
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => crate::run_dir::project_root(path, ext.run_dir.as_deref()),
    };
    let rec = run.stage(stage)?;
    let produced;
    let rec = match (&rec.status, &rec.produced_by) {
        (manifest::StageStatus::Reused, Some(by)) => {
            produced = producing_record(&root, by, stage, trust)?;
            &produced
        }
        _ => rec,
    };
    let cmd = command_of(rec, stage)?;
    let scratch = tempfile::Builder::new()
        .prefix("auditai-rerun-")
        .tempdir()
        .map_err(|e| RerunError::Io(format!("cannot create a scratch directory: {e}")))?;
    let base = scratch.path();
    let wdir = prepare(rec, &root, base)?;
    let (exit, tail, missing_secrets) = execute(rec, &cmd, &wdir, limits)?;
    let mut outs = compare_outs(rec, base)?;
    compare_values(&mut outs, &root, base);
    let ok = exit.success();
    let within = limits.rtol.map(|t| {
        ok && outs
            .iter()
            .all(|o| o.same || o.values.as_ref().is_some_and(|v| v.within(t)))
    });
    let stderr_tail = (!ok).then(|| match exit {
        super::child::Exit::TimedOut(d) => format!(
            "stopped after its time limit of {}\n{tail}",
            humantime::format_duration(d)
        ),
        _ => tail,
    });
    Ok(RerunReport {
        stage: stage.to_string(),
        cmd,
        exit_code: exit.code(),
        reproduced: ok && outs.iter().all(|o| o.same),
        tolerance: limits.rtol,
        within_tolerance: within,
        outs,
        missing_secrets,
        stderr_tail,
    })
}

/// The recorded command of a command stage.
fn command_of(rec: &StageRecord, stage: &str) -> Result<String, RerunError> {
    match (&rec.kind[..], &rec.cmd) {
        ("command", Some(c)) => Ok(c.clone()),
        _ => Err(RerunError::Stage(format!(
            "stage `{stage}` is a training stage; audit its run directory's manifest instead (auditai audit {})",
            rec.manifest
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default()
        ))),
    }
}

/// Copy the recorded deps into the scratch directory `base` and create the directories the
/// command writes into; returns the working directory.
fn prepare(rec: &StageRecord, root: &Path, base: &Path) -> Result<PathBuf, RerunError> {
    copy_deps(rec, root, base)?;
    let wdir = safe(base, rec.wdir.as_deref().unwrap_or("."))?;
    std::fs::create_dir_all(&wdir)
        .map_err(|e| RerunError::Io(format!("{}: {e}", wdir.display())))?;
    for o in &rec.outs {
        let name = o.name.as_deref().unwrap_or_default();
        if let Some(parent) = safe(base, name)?.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    Ok(wdir)
}

/// Run the command with its recorded environment (and the secrets it declared, from the
/// auditor's environment): how it ended, its stderr's tail, and the secrets that were not set.
fn execute(
    rec: &StageRecord,
    cmd: &str,
    wdir: &Path,
    limits: &Limits,
) -> Result<(super::child::Exit, String, Vec<String>), RerunError> {
    let mut missing_secrets = Vec::new();
    let mut env = rec.env.clone();
    for n in &rec.secret_env {
        match std::env::var(n) {
            Ok(v) => {
                env.insert(n.clone(), v);
            }
            Err(_) => missing_secrets.push(n.clone()),
        }
    }
    for n in &rec.ambient_env {
        if let Ok(v) = std::env::var(n) {
            env.insert(n.clone(), v);
        }
    }
    let mut child = super::child::spawn(cmd, wdir, &env, false)
        .map_err(|e| RerunError::Io(format!("cannot run `sh -c`: {e}")))?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || stderr.map(super::child::tail_of));
    let exit = super::child::wait(&mut child, limits.timeout, &|| false)
        .map_err(|e| RerunError::Io(format!("waiting for the command: {e}")))?;
    let tail = reader.join().ok().flatten().unwrap_or_default();
    Ok((exit, tail, missing_secrets))
}

/// Each recorded out against what the rerun produced in `base`.
fn compare_outs(rec: &StageRecord, base: &Path) -> Result<Vec<OutComparison>, RerunError> {
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
            values: None,
        });
    }
    Ok(outs)
}

/// For each differing file out whose project copy still has the recorded digest: its values
/// against the rerun's.
fn compare_values(outs: &mut [OutComparison], root: &Path, base: &Path) {
    let hasher = Hasher::new(None, false);
    for o in outs.iter_mut().filter(|o| !o.same && o.rerun.is_some()) {
        let (Ok(recorded), Ok(rerun)) = (safe(root, &o.path), safe(base, &o.path)) else {
            continue;
        };
        let intact = matches!(hasher.hash_path(&recorded),
            Ok(Hashed::File(d)) if crate::hash::hex_eq(&d.blake3.hex(), &o.recorded));
        if intact {
            o.values = super::numeric::compare(&recorded, &rerun);
        }
    }
}

/// The record of the run that produced a reused stage, from the manifest the reuse names (its
/// digest checked).
fn producing_record(
    root: &Path,
    by: &manifest::ProducedBy,
    stage: &str,
    trust: Required<'_>,
) -> Result<StageRecord, RerunError> {
    let path = safe(root, &by.manifest)?;
    let run = SignedRun::open_pinned(&path, Pin::Blake3(&by.blake3), RunKind::Pipeline, trust)
        .map_err(|e| {
            RerunError::Stage(format!(
                "stage `{stage}` was reused from {}: {e}",
                by.manifest
            ))
        })?;
    run.pipeline()
        .and_then(|ext| {
            ext.stages
                .iter()
                .find(|s| s.name == stage && s.status == manifest::StageStatus::Ran)
                .cloned()
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
