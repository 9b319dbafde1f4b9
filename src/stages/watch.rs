//! Noticing what stages write outside their outs: a stat snapshot of the project (size, mtime,
//! inode of every file and directory), taken before the stages run and again after each one
//! ends, so that a tool writing a config file, a cache or a `.dvc/` directory into the project is
//! reported after the stage (and recorded in the manifest) instead of going unnoticed.
//!
//! Owns the snapshot and its comparison. Reads metadata only; never opens or changes a file.
//! `.git`, `.auditai`, the pipeline run directory, every stage's outs and Python's `__pycache__`
//! directories are left out.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::graph::within;

/// Most entries one snapshot holds; a larger project is not watched (a notice says so).
pub const MAX_ENTRIES: usize = 200_000;
/// Most changed paths reported per stage.
const MAX_REPORTED: usize = 50;

type Stat = (u64, i64, i64, u64, bool);

/// The project's files and directories outside every out.
pub struct Snapshot {
    entries: BTreeMap<String, Stat>,
}

/// What to leave out of a snapshot: root-relative paths (and everything under them).
pub struct Ignored {
    pub(super) paths: Vec<String>,
}

impl Ignored {
    fn skip(&self, rel: &str) -> bool {
        self.paths.iter().any(|p| within(rel, p))
    }
}

impl Snapshot {
    /// Take a snapshot of `root`; `None` when the project holds more than [`MAX_ENTRIES`].
    pub fn take(root: &Path, ignored: &Ignored) -> Option<Snapshot> {
        let mut entries = BTreeMap::new();
        let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in read.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                // Python's bytecode cache is written beside every module a stage imports.
                if ignored.skip(&r) || e.file_name() == "__pycache__" {
                    continue;
                }
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                let is_dir = m.is_dir();
                entries.insert(
                    r.clone(),
                    (m.len(), m.mtime(), m.mtime_nsec(), m.ino(), is_dir),
                );
                if entries.len() > MAX_ENTRIES {
                    return None;
                }
                if is_dir {
                    stack.push((e.path(), r));
                }
            }
        }
        Some(Snapshot { entries })
    }

    /// The files added, changed or removed since `self` (directories only when added or
    /// removed), at most 50, and how many there were.
    pub fn changes(&self, now: &Snapshot) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut n = 0;
        let mut note = |s: String| {
            n += 1;
            if out.len() < MAX_REPORTED {
                out.push(s);
            }
        };
        for (p, s) in &now.entries {
            match self.entries.get(p) {
                None => note(format!("{p} (added)")),
                Some(old) if !s.4 && old != s => note(format!("{p} (changed)")),
                _ => {}
            }
        }
        for p in self
            .entries
            .keys()
            .filter(|p| !now.entries.contains_key(*p))
        {
            note(format!("{p} (removed)"));
        }
        (out, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_writes_outside_the_ignored_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("out")).unwrap();
        std::fs::write(d.path().join("keep.txt"), "a").unwrap();
        let ignored = Ignored {
            paths: vec!["out".into()],
        };
        let before = Snapshot::take(d.path(), &ignored).unwrap();
        std::fs::write(d.path().join("out/x"), "b").unwrap();
        std::fs::create_dir_all(d.path().join(".dvc")).unwrap();
        std::fs::write(d.path().join(".dvc/config"), "c").unwrap();
        std::fs::write(d.path().join("keep.txt"), "changed!").unwrap();
        let after = Snapshot::take(d.path(), &ignored).unwrap();
        let (changes, n) = before.changes(&after);
        assert_eq!(n, 3, "{changes:?}");
        assert!(changes.contains(&".dvc/config (added)".to_string()));
        assert!(changes.contains(&"keep.txt (changed)".to_string()));
    }
}
