//! The run directory: every file name in it, the checkpoint naming scheme, what makes a
//! directory a run directory, and the only way one is replaced.
//!
//! Every other module asks this one for a run-directory path; no other module spells a file name.
//!
//! A run directory carries a marker file, [`MARKER`], that auditai writes when it creates the
//! directory and that holds exactly [`MARKER_CONTENT`]. `--force` replaces a directory only when
//! that marker is there (a regular file, not a symlink, with the exact content) and the directory
//! is none of the places a careless flag could name: the current directory or one above it, the
//! spec's directory or one above it, the home directory, the file-system root, or a git work tree's
//! root. Even then nothing is deleted: the old run is renamed aside. Never deletes anything.

use std::path::{Path, PathBuf};

use crate::fsio;

/// The spec file, byte for byte.
pub const SPEC: &str = "spec.yaml";
/// Feature names, class names and normalisation statistics.
pub const PREPROCESSING: &str = "preprocessing.json";
/// One JSON object per completed epoch.
pub const METRICS: &str = "metrics.jsonl";
/// Final weights, burnpack.
pub const MODEL_BPK: &str = "model.bpk";
/// Final weights, safetensors.
pub const MODEL_SAFETENSORS: &str = "model.safetensors";
/// Run summary.
pub const SUMMARY: &str = "summary.json";
/// Checkpoint directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The DSSE-wrapped provenance manifest; written last, it marks the run complete.
pub const MANIFEST: &str = "manifest.intoto.json";
/// The training commitment, written before the first step.
pub const COMMITMENT: &str = "commitment.json";
/// The hash-chained training transcript.
pub const TRANSCRIPT: &str = "transcript.jsonl";

/// The checkpoint stem after step `end` of 1-based `epoch` (the epoch's own when `last`):
/// `epoch-NNNN` or `epoch-NNNN-step-SSSSS`.
fn stem(epoch: usize, end: usize, last: bool) -> String {
    if last {
        format!("epoch-{epoch:04}")
    } else {
        format!("epoch-{epoch:04}-step-{end:05}")
    }
}

/// Weights and optimizer-state paths, relative to the run directory, of the checkpoint after
/// step `end` of 1-based `epoch` (the epoch's own checkpoint when `last`). The only names
/// pruning ever deletes.
pub fn segment_files(epoch: usize, end: usize, last: bool) -> [String; 2] {
    let stem = stem(epoch, end, last);
    [
        format!("{CHECKPOINTS}/{stem}.bpk"),
        format!("{CHECKPOINTS}/{stem}.optim.bpk"),
    ]
}

/// The weights, optimizer-state and state-file paths of epoch `epoch`'s checkpoint.
pub fn epoch_files(run_dir: &Path, epoch: usize) -> [PathBuf; 3] {
    let [weights, optimizer] = segment_files(epoch, 0, true);
    [
        run_dir.join(weights),
        run_dir.join(optimizer),
        run_dir.join(format!("{CHECKPOINTS}/{}.json", stem(epoch, 0, true))),
    ]
}

/// The marker file's name inside a run directory.
pub const MARKER: &str = ".auditai-run";

/// The directory of the data sources' contribution statements, copied in by `run`.
pub const CONTRIBUTIONS: &str = "contributions";

/// The copy of source `i`'s (0-based) contribution statement.
pub fn contribution_file(i: usize) -> String {
    format!("{CONTRIBUTIONS}/source-{}.contribution.json", i + 1)
}
/// The marker file's exact content.
pub const MARKER_CONTENT: &[u8] = b"auditai.run-dir/v1\n";

/// Why a directory may not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// The directory has no valid marker.
    #[error(
        "{} is not an auditai run directory (no valid {MARKER} marker); refusing to replace it",
        dir.display()
    )]
    NotARun {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory is one a careless flag could name.
    #[error("{} is {what}; refusing to replace it", dir.display())]
    Protected {
        /// The directory.
        dir: PathBuf,
        /// What it is, e.g. `the current directory or one above it`.
        what: &'static str,
    },
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `dir` carries a valid marker (checked strictly: a regular file with the exact content).
pub fn is_run_dir(dir: &Path) -> bool {
    fsio::read_bounded(&dir.join(MARKER), 64).is_ok_and(|b| b == MARKER_CONTENT)
}

/// Mark `dir` as a run directory.
pub fn mark(dir: &Path) -> std::io::Result<()> {
    fsio::write_atomic(&dir.join(MARKER), MARKER_CONTENT)
}

/// Check that `dir` may be replaced by a new run of the spec at `spec`.
pub fn check_replaceable(dir: &Path, spec: &Path) -> Result<(), RunDirError> {
    let canon = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    let protected = |what| RunDirError::Protected {
        dir: dir.to_path_buf(),
        what,
    };
    if canon.parent().is_none() {
        return Err(protected("the file-system root"));
    }
    if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize)
        && cwd.starts_with(&canon)
    {
        return Err(protected("the current directory or one above it"));
    }
    if let Ok(spec) = std::fs::canonicalize(spec)
        && spec.parent().is_some_and(|p| p.starts_with(&canon))
    {
        return Err(protected("the spec's directory or one above it"));
    }
    if let Some(home) = std::env::var_os("HOME").and_then(|h| std::fs::canonicalize(h).ok())
        && home.starts_with(&canon)
    {
        return Err(protected("the home directory or one above it"));
    }
    if std::fs::symlink_metadata(canon.join(".git")).is_ok() {
        return Err(protected("the root of a git work tree"));
    }
    if !is_run_dir(dir) {
        return Err(RunDirError::NotARun {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Rename the run directory `dir` aside, to a free sibling name `<name>.replaced-<unix time>[-n]`,
/// and return the new path. Nothing is deleted.
pub fn move_aside(dir: &Path) -> Result<PathBuf, RunDirError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| RunDirError::Protected {
            dir: dir.to_path_buf(),
            what: "not a named directory",
        })?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in 0..1000u32 {
        let suffix = if n == 0 {
            format!("{name}.replaced-{secs}")
        } else {
            format!("{name}.replaced-{secs}-{n}")
        };
        let target = dir.with_file_name(suffix);
        if std::fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        std::fs::rename(dir, &target).map_err(io_err(dir))?;
        fsio::sync_parent(&target).map_err(io_err(&target))?;
        return Ok(target);
    }
    Err(RunDirError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "no free name to move the old run aside",
        ),
    })
}

/// The run directory of a manifest: the directory holding it.
pub fn of_manifest(manifest: &Path) -> &Path {
    manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The project root of a pipeline manifest: the manifest's directory with the recorded run
/// directory's components removed (only when that relative path is what the directory's path
/// really ends with), else the git work tree, else the current directory.
pub fn project_root(manifest_path: &Path, run_dir: Option<&str>) -> PathBuf {
    let dir = of_manifest(manifest_path);
    if let Some(rel) = run_dir.filter(|r| fsio::is_plain_relative(r)) {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if abs.ends_with(rel) {
            let mut root = abs.as_path();
            for _ in Path::new(rel).components() {
                root = root.parent().unwrap_or(root);
            }
            return root.to_path_buf();
        }
    }
    crate::provenance::project_root(dir)
}

/// The root that the paths a document records are relative to: `root` when the verifier names
/// one, else the git work tree holding the document, else the document's own directory.
pub fn document_root(doc: &Path, root: Option<&Path>) -> PathBuf {
    if let Some(r) = root {
        return r.to_path_buf();
    }
    let dir = of_manifest(doc);
    crate::provenance::work_tree_root(dir).unwrap_or_else(|| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_checked_strictly() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_run_dir(d.path()));
        std::fs::write(d.path().join(MARKER), b"auditai.run-dir/v1").unwrap();
        assert!(!is_run_dir(d.path()), "content must be exact");
        mark(d.path()).unwrap();
        assert!(is_run_dir(d.path()));
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(d.path().join(MARKER), other.path().join(MARKER)).unwrap();
        assert!(!is_run_dir(other.path()), "a symlinked marker is refused");
    }

    #[test]
    fn protected_directories_are_refused_and_runs_move_aside() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::create_dir(run.join(".git")).unwrap();
        mark(&run).unwrap();
        let spec = d.path().join("spec.yaml");
        assert!(matches!(
            check_replaceable(&run, &spec),
            Err(RunDirError::Protected { .. })
        ));
        std::fs::remove_dir(run.join(".git")).unwrap();
        check_replaceable(&run, &spec).unwrap();
        let nested_spec = run.join("sub/spec.yaml");
        std::fs::create_dir(run.join("sub")).unwrap();
        std::fs::write(&nested_spec, "x").unwrap();
        assert!(matches!(
            check_replaceable(&run, &nested_spec),
            Err(RunDirError::Protected { .. })
        ));
        let aside = move_aside(&run).unwrap();
        assert!(!run.exists());
        assert!(is_run_dir(&aside));
    }
}
