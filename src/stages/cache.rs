//! The run cache: what a stage produced, keyed by what it ran with, so that a stage whose
//! command, params, env and dep digests match an earlier run gets its outs back without running
//! (DVC's run cache). Lives under the project's `.auditai/cache/`: `runs/<key>.json` (the lock
//! entry of that run, naming the signed manifest that recorded it, and the files of each out) and
//! `objects/<b3[..2]>/<b3>` (file contents by blake3).
//!
//! Owns the cache key, saving a ran stage's outs and restoring them. Every object is checked
//! against its digest while it is copied out, every restored out against the recorded digest,
//! and a restored entry is trusted only when the manifest it names backs it (as a lock entry is):
//! a cache someone edited is an error for that entry, and the stage simply runs. Restoring
//! overwrites a file out (the stage would have) and moves a differing directory out aside into
//! `.auditai/cache/replaced/`; it never deletes anything.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LockedPath, LockedStage};
use crate::hash::{self, Hashed, Hasher};

/// The cache directory, relative to the project root.
pub const CACHE_DIR: &str = ".auditai/cache";
const SCHEMA: &str = "auditai.run-cache/v1";
/// Largest cache entry read.
const MAX_ENTRY: u64 = 64 << 20;
/// Most files in one cached directory out.
const MAX_FILES: usize = 100_000;

/// One cached run of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Entry {
    schema: String,
    /// The lock entry of the run (with the manifest that recorded it).
    pub locked: LockedStage,
    /// The files of each directory out, by out path: path inside it, blake3, executable.
    #[serde(default)]
    trees: BTreeMap<String, Vec<TreeFile>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeFile {
    path: String,
    blake3: String,
    #[serde(default)]
    executable: bool,
}

/// The cache key of a stage about to run: its identity (kind, command, wdir, configuration,
/// params, env) and its deps' digests.
pub fn key(identity: &LockedStage, deps: &[LockedPath]) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        kind: &'a str,
        cmd: &'a Option<String>,
        wdir: &'a Option<String>,
        config: &'a Option<String>,
        params: &'a BTreeMap<String, serde_json::Value>,
        env: &'a BTreeMap<String, Option<String>>,
        deps: &'a [LockedPath],
        outs: Vec<&'a str>,
    }
    let k = Key {
        kind: &identity.kind,
        cmd: &identity.cmd,
        wdir: &identity.wdir,
        config: &identity.config_blake3,
        params: &identity.params,
        env: &identity.env,
        deps,
        outs: identity.outs.iter().map(|o| o.path.as_str()).collect(),
    };
    hash::Digest::of(&serde_json::to_vec(&k).unwrap_or_default()).hex()
}

/// The run cache of one project.
pub struct RunCache {
    root: PathBuf,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

impl RunCache {
    /// The cache of the project at `root`.
    pub fn of(root: &Path) -> RunCache {
        RunCache {
            root: root.to_path_buf(),
        }
    }

    /// `.auditai/cache/REL` under the project root, refused when a directory on the way is a
    /// symlink (a cloned repository could carry one pointing anywhere).
    fn at(&self, rel: &str) -> Result<PathBuf, String> {
        crate::fsio::safe_join(&self.root, &format!("{CACHE_DIR}/{rel}")).map_err(|e| e.to_string())
    }

    fn object(&self, blake3: &str) -> Result<PathBuf, String> {
        if !blake3.bytes().all(|b| b.is_ascii_hexdigit()) || blake3.len() != 64 {
            return Err(format!("`{blake3}` is not a blake3 digest"));
        }
        self.at(&format!("objects/{}/{blake3}", &blake3[..2]))
    }

    /// The entry for `key`, when there is one; an unreadable entry is an error.
    pub fn find(&self, key: &str) -> Result<Option<Entry>, String> {
        let path = self.at(&format!("runs/{key}.json"))?;
        let bytes = match crate::fsio::read_bounded(&path, MAX_ENTRY) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let entry: Entry =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if entry.schema != SCHEMA {
            return Err(format!("{}: not a {SCHEMA} entry", path.display()));
        }
        Ok(Some(entry))
    }

    /// Save a stage that ran: its outs' files as objects, then the entry under `key`.
    pub fn save(&self, key: &str, locked: &LockedStage) -> Result<(), String> {
        let mut trees = BTreeMap::new();
        for out in &locked.outs {
            let path = self.root.join(&out.path);
            if out.kind == "directory" {
                trees.insert(out.path.clone(), self.save_tree(&path)?);
            } else {
                let d = self.save_file(&path)?;
                if d != out.blake3 {
                    return Err(format!("{} changed while it was cached", out.path));
                }
            }
        }
        let entry = Entry {
            schema: SCHEMA.into(),
            locked: locked.clone(),
            trees,
        };
        let path = self.at(&format!("runs/{key}.json"))?;
        std::fs::create_dir_all(self.at("runs")?).map_err(err(&path))?;
        // Like `.dvc/.gitignore`: the cache is never committed by accident.
        let ignore =
            crate::fsio::safe_join(&self.root, ".auditai/.gitignore").map_err(|e| e.to_string())?;
        if !ignore.exists() {
            crate::fsio::write_atomic(&ignore, b"/cache/\n").map_err(err(&ignore))?;
        }
        let bytes = serde_json::to_vec_pretty(&entry).unwrap_or_default();
        crate::fsio::write_atomic(&path, &bytes).map_err(err(&path))
    }

    /// Copy one file into the objects (once per content); its blake3.
    fn save_file(&self, path: &Path) -> Result<String, String> {
        let d = Hasher::new(None, false)
            .hash_path(path)
            .map_err(|e| e.to_string())?;
        let Hashed::File(d) = d else {
            return Err(format!("{} is not a regular file", path.display()));
        };
        let hex = d.blake3.hex();
        let obj = self.object(&hex)?;
        if obj.is_file() {
            return Ok(hex);
        }
        let parent = obj.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(err(parent))?;
        let tmp = parent.join(format!(".{hex}.{}.tmp", std::process::id()));
        let copied = copy_checked(path, &tmp, &hex);
        match copied.and_then(|()| std::fs::rename(&tmp, &obj).map_err(|e| e.to_string())) {
            Ok(()) => Ok(hex),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(format!("{}: {e}", path.display()))
            }
        }
    }

    /// Save every file of a directory out; refuses symlinks and special files inside it.
    fn save_tree(&self, dir: &Path) -> Result<Vec<TreeFile>, String> {
        let mut files = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let abs = dir.join(&rel);
            let mut entries: Vec<_> = std::fs::read_dir(&abs)
                .map_err(err(&abs))?
                .collect::<Result<_, _>>()
                .map_err(err(&abs))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let t = e.file_type().map_err(err(&e.path()))?;
                let r = rel.join(e.file_name());
                if t.is_dir() {
                    stack.push(r);
                } else if t.is_file() {
                    let exec = e
                        .metadata()
                        .map(|m| m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false);
                    let blake3 = self.save_file(&e.path())?;
                    files.push(TreeFile {
                        path: r.to_string_lossy().into_owned(),
                        blake3,
                        executable: exec,
                    });
                    if files.len() > MAX_FILES {
                        return Err(format!("{} holds too many files", dir.display()));
                    }
                } else {
                    return Err(format!("{} is not a regular file", e.path().display()));
                }
            }
        }
        Ok(files)
    }

    /// Put the entry's outs in place and check each against its recorded digest.
    pub fn restore(&self, entry: &Entry) -> Result<(), String> {
        for out in &entry.locked.outs {
            let path = crate::fsio::safe_join(&self.root, &out.path)
                .map_err(|e| format!("{}: {e}", out.path))?;
            if out.kind == "directory" {
                let files = entry
                    .trees
                    .get(&out.path)
                    .ok_or_else(|| format!("the cache entry lists no files for {}", out.path))?;
                self.restore_tree(&path, files, &out.blake3)?;
            } else {
                self.restore_file(&path, &out.blake3, None)?;
            }
        }
        Ok(())
    }

    fn restore_file(&self, path: &Path, blake3: &str, exec: Option<bool>) -> Result<(), String> {
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(err(parent))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = parent.join(format!(
            ".{}.auditai-restore.{}",
            name.unwrap_or_default(),
            std::process::id()
        ));
        let copied = self
            .object(blake3)
            .and_then(|o| copy_checked(&o, &tmp, blake3))
            .and_then(|()| {
                if exec == Some(true) {
                    let perms = std::fs::Permissions::from_mode(0o755);
                    std::fs::set_permissions(&tmp, perms).map_err(|e| e.to_string())?;
                }
                std::fs::rename(&tmp, path).map_err(|e| e.to_string())
            });
        copied.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
    }

    /// Rebuild a directory out beside it, check its tree digest, then put it in place (moving
    /// a differing one aside into `.auditai/cache/replaced/`).
    fn restore_tree(&self, path: &Path, files: &[TreeFile], want: &str) -> Result<(), String> {
        let hasher = Hasher::new(None, false);
        let digest_of = |p: &Path| match hasher.hash_path(p) {
            Ok(Hashed::Dir(t)) => Some(t.blake3.hex()),
            _ => None,
        };
        if path.is_dir() && digest_of(path).is_some_and(|d| hash::hex_eq(&d, want)) {
            return Ok(());
        }
        let stamp = format!("{}-{}", std::process::id(), unix_nanos());
        let fresh = self.at(&format!("tmp/{stamp}"))?;
        std::fs::create_dir_all(&fresh).map_err(err(&fresh))?;
        let built = files.iter().try_for_each(|f| {
            let target =
                crate::fsio::safe_join(&fresh, &f.path).map_err(|e| format!("{}: {e}", f.path))?;
            self.restore_file(&target, &f.blake3, Some(f.executable))
        });
        let built = built.and_then(|()| match digest_of(&fresh) {
            Some(d) if hash::hex_eq(&d, want) => Ok(()),
            _ => Err(format!(
                "{}: the cached files do not make the recorded directory",
                path.display()
            )),
        });
        if let Err(e) = built {
            // Only the temporary directory this call made under the cache is removed.
            let _ = std::fs::remove_dir_all(&fresh);
            return Err(e);
        }
        if std::fs::symlink_metadata(path).is_ok() {
            let aside = self.at(&format!("replaced/{stamp}"))?;
            std::fs::create_dir_all(&aside).map_err(err(&aside))?;
            let name = path.file_name().unwrap_or_default();
            std::fs::rename(path, aside.join(name)).map_err(err(path))?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        std::fs::rename(&fresh, path).map_err(err(path))
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Copy `from` to a new file `to`, hashing on the way; an error when the bytes are not `blake3`.
fn copy_checked(from: &Path, to: &Path, blake3: &str) -> Result<(), String> {
    let mut src =
        crate::fsio::open_regular(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| format!("{}: {e}", to.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    }
    dst.sync_all().map_err(|e| e.to_string())?;
    if !hash::hex_eq(&h.finalize().to_hex(), blake3) {
        return Err(format!(
            "{} does not have its recorded digest",
            from.display()
        ));
    }
    Ok(())
}
