//! Where a run's code and toolchain came from: the git state of the repository holding the spec,
//! and the versions of auditai, burn and rustc, the OS and the architecture.
//!
//! Read-only. Outside a git repository the result says so; it never fails a run for it.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The git state of the repository containing a path.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitState {
    /// The work tree root.
    #[serde(skip)]
    pub root: PathBuf,
    /// HEAD commit id (absent in a repository without commits).
    pub commit: Option<String>,
    /// HEAD's tree id.
    pub tree: Option<String>,
    /// The checked-out branch (absent when HEAD is detached).
    pub branch: Option<String>,
    /// URL of `origin`, else of the first remote.
    pub remote: Option<String>,
    /// Whether tracked files differ from HEAD or untracked files exist (ignored files excluded).
    pub dirty: bool,
    /// blake3 of the uncommitted diff (patch text, untracked files included) when dirty.
    pub diff_blake3: Option<String>,
    /// Paths that differ from HEAD, relative to the work tree root, sorted.
    pub changed: Vec<String>,
}

/// The code provenance of a path: its repository, or the fact that there is none.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "vcs", rename_all = "lowercase")]
pub enum Code {
    /// Inside a git work tree.
    Git(GitState),
    /// Not inside a git work tree (or the repository could not be read; `reason` says which).
    None {
        /// Why there is no git state.
        reason: String,
    },
}

/// Inspect the git repository containing `path`.
pub fn code(path: &Path) -> Code {
    match git_state(path) {
        Ok(state) => Code::Git(state),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Code::None {
            reason: "not inside a git repository".to_string(),
        },
        Err(e) => Code::None {
            reason: format!("git repository could not be read: {}", e.message()),
        },
    }
}

fn git_state(path: &Path) -> Result<GitState, git2::Error> {
    let repo = git2::Repository::discover(path)?;
    let root = repo
        .workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| git2::Error::from_str("bare repository"))?;
    let head = repo.head().ok();
    let commit = head.as_ref().and_then(|h| h.peel_to_commit().ok());
    let branch = head
        .as_ref()
        .filter(|h| h.is_branch())
        .and_then(|h| h.shorthand().ok().map(str::to_string));
    let remote = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(str::to_string))
        .or_else(|| {
            let names = repo.remotes().ok()?;
            let first = names.iter().flatten().flatten().next()?.to_string();
            repo.find_remote(&first)
                .ok()?
                .url()
                .ok()
                .map(str::to_string)
        })
        .map(|u| strip_userinfo(&u));

    let mut status_opts = git2::StatusOptions::new();
    status_opts
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut status_opts))?;
    let mut changed: Vec<String> = statuses
        .iter()
        .filter(|s| s.status() != git2::Status::CURRENT)
        .filter_map(|s| s.path().ok().map(str::to_string))
        .collect();
    changed.sort();
    let dirty = !changed.is_empty();

    let diff_blake3 = if dirty {
        let tree = commit.as_ref().and_then(|c| c.tree().ok());
        let mut diff_opts = git2::DiffOptions::new();
        diff_opts
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        let diff = repo.diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut diff_opts))?;
        let mut hasher = blake3::Hasher::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                hasher.update(&[line.origin() as u8]);
            }
            hasher.update(line.content());
            true
        })?;
        Some(hasher.finalize().to_hex().to_string())
    } else {
        None
    };

    Ok(GitState {
        root,
        commit: commit.as_ref().map(|c| c.id().to_string()),
        tree: commit.as_ref().map(|c| c.tree_id().to_string()),
        branch,
        remote,
        dirty,
        diff_blake3,
        changed,
    })
}

/// A URL without its user-info (`https://oauth2:TOKEN@host/x` → `https://host/x`), query and
/// fragment, so that credentials CI puts into remote URLs never reach a manifest or a log.
/// scp-like remotes (`git@host:path`) carry no secret and are kept.
pub fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// The root of the git work tree containing `path`, found without reading the repository's
/// status (so a repository someone else controls is not walked).
///
/// The root is the directory holding the repository's `.git`, and only when `path` lies below
/// it: a `core.worktree` setting (which a repository someone sent could point at `/`) is not
/// followed, so a recorded path can never be resolved outside the tree that holds it.
pub fn work_tree_root(path: &Path) -> Option<PathBuf> {
    let repo = git2::Repository::discover(path).ok()?;
    if repo.is_bare() {
        return None;
    }
    let git_dir = repo.path().canonicalize().ok()?;
    let top = git_dir.parent()?.to_path_buf();
    let here = path.canonicalize().ok()?;
    here.starts_with(&top).then_some(top)
}

/// Where a manifest's data and spec dependencies are looked up by default: the git work tree
/// holding `dir`, else the current directory. Never reads the repository's status.
pub fn project_root(dir: &Path) -> PathBuf {
    work_tree_root(dir).unwrap_or_else(|| PathBuf::from("."))
}

/// Whether `commit` exists in the repository containing `path` (`None`: no repository there).
pub fn commit_exists(path: &Path, commit: &str) -> Option<bool> {
    let repo = git2::Repository::discover(path).ok()?;
    let oid = git2::Oid::from_str(commit).ok()?;
    Some(repo.find_commit(oid).is_ok())
}

/// The software and platform a run used.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Toolchain {
    /// auditai's version.
    pub auditai: String,
    /// burn's version.
    pub burn: String,
    /// `rustc --version` of the compiler that built auditai.
    pub rustc: String,
    /// Operating system (`linux`, `macos`, ...).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
}

/// This binary's toolchain.
pub fn toolchain() -> Toolchain {
    Toolchain {
        auditai: env!("CARGO_PKG_VERSION").to_string(),
        burn: env!("AUDITAI_BURN_VERSION").to_string(),
        rustc: env!("AUDITAI_RUSTC_VERSION").to_string(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::strip_userinfo;

    #[test]
    fn credentials_never_survive_in_a_remote_url() {
        for (url, want) in [
            (
                "https://oauth2:ghp_SECRET@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            (
                "https://x-access-token:T@host:8443/o/r",
                "https://host:8443/o/r",
            ),
            ("https://host/o/r?private_token=T#x", "https://host/o/r"),
            ("ssh://git@host/o/r", "ssh://host/o/r"),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            ("https://host", "https://host"),
        ] {
            assert_eq!(strip_userinfo(url), want, "{url}");
        }
    }
}
