//! Staleness: why a stage must run ([`Why`]), the lock entries a run may trust ([`Backing`]),
//! the digests of deps and outs through the stat cache ([`Checker`]), and the plan of a
//! selection ([`plan`]: `auditai status`, `run --dry-run`). Reads only; never runs or writes
//! anything but the stat cache.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Graph, HISTORY, LockedPath, LockedStage, Project, StageError};
use crate::hash::{self, HashError, Hashed, Hasher, StatCache};
use crate::manifest::{self, StageStatus};
use crate::sign::SecretKey;
use crate::spec::{Stage, StageKind};
use crate::trust::{Pin, Required, RunKind, SignedRun, Trust, TrustError};

/// Why a stage must run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Why {
    /// `--force`.
    Forced,
    /// The lock has no entry for it.
    NeverRan,
    /// The lock entry is not backed by the manifest it names (missing, changed, or recording
    /// something else): the lock was edited or the manifest removed.
    LockNotBacked {
        /// What does not match.
        detail: String,
    },
    /// The command line changed.
    CommandChanged,
    /// The working directory changed.
    WdirChanged,
    /// The training configuration changed.
    ConfigChanged,
    /// A stage changed between command and training.
    KindChanged,
    /// Declared params changed.
    ParamsChanged {
        /// The params whose values (or presence) changed.
        params: Vec<String>,
    },
    /// Declared env changed.
    EnvChanged {
        /// The variables whose values (or presence) changed.
        names: Vec<String>,
    },
    /// The list of deps changed.
    DepsListChanged,
    /// The list of outs changed.
    OutsListChanged,
    /// A dep's content changed.
    DepChanged {
        /// The dep.
        path: String,
    },
    /// A dep is missing.
    DepMissing {
        /// The dep.
        path: String,
    },
    /// An out is missing.
    OutMissing {
        /// The out.
        path: String,
    },
    /// An out was modified after the stage wrote it.
    OutModified {
        /// The out.
        path: String,
    },
    /// `always_changed: true`.
    AlwaysChanged,
    /// A stage it depends on will run first.
    Upstream {
        /// That stage.
        stage: String,
    },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Forced => f.write_str("--force"),
            Why::NeverRan => f.write_str("not in the lock"),
            Why::LockNotBacked { detail } => {
                write!(f, "lock entry not backed by its manifest: {detail}")
            }
            Why::CommandChanged => f.write_str("command changed"),
            Why::WdirChanged => f.write_str("wdir changed"),
            Why::ConfigChanged => f.write_str("training configuration changed"),
            Why::KindChanged => f.write_str("stage kind changed"),
            Why::ParamsChanged { params } => write!(f, "params changed: {}", params.join(", ")),
            Why::EnvChanged { names } => write!(f, "env changed: {}", names.join(", ")),
            Why::DepsListChanged => f.write_str("deps list changed"),
            Why::OutsListChanged => f.write_str("outs list changed"),
            Why::DepChanged { path } => write!(f, "dep {path} changed"),
            Why::DepMissing { path } => write!(f, "dep {path} missing"),
            Why::OutMissing { path } => write!(f, "out {path} missing"),
            Why::OutModified { path } => write!(f, "out {path} modified"),
            Why::AlwaysChanged => f.write_str("always_changed"),
            Why::Upstream { stage } => write!(f, "upstream stage {stage} will run"),
        }
    }
}

/// What may back a lock entry: a manifest inside the pipeline run's `history/`, signed under
/// `trust` (the key `run` signs with, or a policy). Without a trust (an unsigned pipeline) the
/// signatures are not checked, and reuse is only as strong as write access to the run directory.
#[derive(Debug, Clone)]
pub struct Backing {
    /// The pipeline run directory (its `history/` holds the manifests that back the lock).
    pub run_dir: PathBuf,
    /// Whom the history's manifests must be signed by.
    pub trust: Option<Trust>,
}

impl Backing {
    /// The backing of a run signing with `key` (or unsigned) into `run_dir`.
    pub fn of(run_dir: &Path, key: Option<&SecretKey>) -> Backing {
        Backing {
            run_dir: run_dir.to_path_buf(),
            trust: key.map(|k| Trust::key(k.public())),
        }
    }
}

/// Hashes deps and outs for staleness decisions through the stat cache, and reads each
/// manifest a lock names once, through the gate.
pub struct Checker {
    cache: Option<StatCache>,
    backing: Backing,
    manifests: HashMap<String, Result<manifest::PipelineExtension, String>>,
}

impl Checker {
    /// A checker using the default stat cache, accepting lock entries backed as `backing` says.
    pub fn new(backing: Backing) -> Checker {
        Checker {
            cache: StatCache::default_path().map(StatCache::open),
            backing,
            manifests: HashMap::new(),
        }
    }

    /// Save the stat cache (best effort: it is only an optimisation).
    pub fn save(&self) {
        if let Some(c) = &self.cache {
            let _ = c.save();
        }
    }

    /// The blake3 and kind of a dep or out, `None` when it does not exist.
    pub fn digest(&self, path: &Path, rel: &str) -> Result<Option<LockedPath>, HashError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let hasher = Hasher::new(self.cache.as_ref(), false);
        let (blake3, kind) = match hasher.hash_path(path)? {
            Hashed::File(d) => (d.blake3.hex(), "file"),
            Hashed::Dir(t) => (t.blake3.hex(), "directory"),
            Hashed::Symlink(target) => (hash::Digest::of(target.as_bytes()).hex(), "symlink"),
            Hashed::Special => (String::new(), "special"),
        };
        Ok(Some(LockedPath {
            path: rel.to_string(),
            blake3,
            kind: kind.to_string(),
        }))
    }

    /// Why stage `i` must run, leaving upstream stages aside; empty when it can be reused.
    pub fn why(&mut self, p: &Project, i: usize) -> Result<Vec<Why>, StageError> {
        let name = &p.spec.stages[i].name.value;
        let Some(locked) = p.lock.stages.get(name) else {
            return Ok(vec![Why::NeverRan]);
        };
        let mut why = Vec::new();
        let now = p.identity(i);
        if now.kind != locked.kind {
            return Ok(vec![Why::KindChanged]);
        }
        if now.cmd != locked.cmd {
            why.push(Why::CommandChanged);
        }
        if now.wdir != locked.wdir {
            why.push(Why::WdirChanged);
        }
        if now.config_blake3 != locked.config_blake3 {
            why.push(Why::ConfigChanged);
        }
        let params = diff_keys(&now.params, &locked.params);
        if !params.is_empty() {
            why.push(Why::ParamsChanged { params });
        }
        let names = diff_keys(&now.env, &locked.env);
        if !names.is_empty() {
            why.push(Why::EnvChanged { names });
        }
        let node = &p.graph.nodes[i];
        let paths = |l: &[LockedPath]| l.iter().map(|x| x.path.clone()).collect::<Vec<_>>();
        if node.deps != paths(&locked.deps) {
            why.push(Why::DepsListChanged);
        } else {
            for d in &locked.deps {
                match self.digest(&p.graph.path(&d.path), &d.path)? {
                    None => why.push(Why::DepMissing {
                        path: d.path.clone(),
                    }),
                    Some(now) if now != *d => why.push(Why::DepChanged {
                        path: d.path.clone(),
                    }),
                    Some(_) => {}
                }
            }
        }
        if node.outs != paths(&locked.outs) {
            why.push(Why::OutsListChanged);
        } else {
            for o in &locked.outs {
                match self.digest(&p.graph.path(&o.path), &o.path)? {
                    None => why.push(Why::OutMissing {
                        path: o.path.clone(),
                    }),
                    Some(now) if now != *o => why.push(Why::OutModified {
                        path: o.path.clone(),
                    }),
                    Some(_) => {}
                }
            }
        }
        let stage = &p.spec.stages[i];
        if stage.frozen {
            // A frozen stage keeps what it made whatever its inputs do; only its outs count.
            why.retain(|w| {
                matches!(
                    w,
                    Why::OutMissing { .. } | Why::OutModified { .. } | Why::OutsListChanged
                )
            });
        }
        if why.is_empty()
            && let Err(detail) = self.backed(p, name, locked)
        {
            why.push(Why::LockNotBacked { detail });
        }
        if stage.always_changed {
            why.push(Why::AlwaysChanged);
        }
        Ok(why)
    }

    /// Whether the manifest a lock entry names exists with the recorded digest and records this
    /// stage with the same command, deps and outs.
    pub(super) fn backed(
        &mut self,
        p: &Project,
        name: &str,
        locked: &LockedStage,
    ) -> Result<(), String> {
        let by = &locked.produced_by;
        let ext = self
            .manifests
            .entry(format!("{}\0{}", by.manifest, by.blake3))
            .or_insert_with(|| read_history(&p.graph, &self.backing, by))
            .as_ref()
            .map_err(Clone::clone)?;
        let rec = ext
            .stages
            .iter()
            .find(|s| s.name == name && s.status == StageStatus::Ran)
            .ok_or_else(|| format!("{} does not record stage {name} running", by.manifest))?;
        let same = |descs: &[manifest::ResourceDescriptor], l: &[LockedPath]| {
            descs.len() == l.len()
                && descs.iter().zip(l).all(|(d, l)| {
                    d.name.as_deref() == Some(l.path.as_str())
                        && d.digest
                            .get("blake3")
                            .is_some_and(|b| hash::hex_eq(b, &l.blake3))
                })
        };
        if rec.cmd != locked.cmd || rec.config_blake3 != locked.config_blake3 {
            return Err(format!(
                "{} records another command for {name}",
                by.manifest
            ));
        }
        if !same(&rec.deps, &locked.deps) || !same(&rec.outs, &locked.outs) {
            return Err(format!(
                "{} records other dep or out digests for {name}",
                by.manifest
            ));
        }
        if rec.params != locked.params {
            return Err(format!("{} records other params for {name}", by.manifest));
        }
        Ok(())
    }
}

/// The pipeline extension of a manifest in the run's history, opened through the gate: its path
/// relative and inside `history/`, its digest the recorded one, its signatures under the
/// backing's trust.
fn read_history(
    graph: &Graph,
    backing: &Backing,
    by: &manifest::ProducedBy,
) -> Result<manifest::PipelineExtension, String> {
    let path = crate::fsio::safe_join(&graph.root, &by.manifest)
        .map_err(|e| format!("{}: {e}", by.manifest))?;
    let inside = |p: &Path| std::fs::canonicalize(p).ok();
    let history = inside(&backing.run_dir.join(HISTORY));
    let parent = path.parent().and_then(inside);
    if history.is_none() || parent != history {
        return Err(format!(
            "{} is not in the run's {HISTORY}/ directory, where every manifest backing the lock lives",
            by.manifest
        ));
    }
    let required = match &backing.trust {
        Some(t) => Required::Signers(t),
        None => Required::Unchecked,
    };
    let run = SignedRun::open_pinned(&path, Pin::Blake3(&by.blake3), RunKind::Pipeline, required)
        .map_err(|e| match e {
        TrustError::Pinned { .. } => format!("{} changed", by.manifest),
        other => other.to_string(),
    })?;
    run.pipeline()
        .cloned()
        .ok_or_else(|| format!("{} is not a pipeline manifest", by.manifest))
}

fn diff_keys<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// One stage's state in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// The stage.
    pub stage: String,
    /// `command` or `train`.
    pub kind: &'static str,
    /// Why it must run; empty when it is up to date.
    pub why: Vec<Why>,
}

impl Planned {
    /// Whether it is up to date.
    pub fn up_to_date(&self) -> bool {
        self.why.is_empty()
    }
}

/// Which of `selection` are stale and why, in run order: `auditai status` and `run --dry-run`.
/// A stage whose upstream will run is stale for that reason too.
pub fn plan(
    p: &Project,
    selection: &[usize],
    force: bool,
    backing: Backing,
) -> Result<Vec<Planned>, StageError> {
    let mut checker = Checker::new(backing);
    let mut stale = vec![false; p.spec.stages.len()];
    let mut out = Vec::with_capacity(selection.len());
    for &i in selection {
        let stage = &p.spec.stages[i];
        let mut why = if force && !stage.frozen {
            vec![Why::Forced]
        } else {
            checker.why(p, i)?
        };
        for &u in &p.graph.nodes[i].upstream {
            if stale[u] && selection.contains(&u) {
                why.push(Why::Upstream {
                    stage: p.spec.stages[u].name.value.clone(),
                });
            }
        }
        stale[i] = !why.is_empty();
        out.push(Planned {
            stage: stage.name.value.clone(),
            kind: kind_of(stage),
            why,
        });
    }
    checker.save();
    Ok(out)
}

pub(super) fn kind_of(stage: &Stage) -> &'static str {
    match stage.kind {
        StageKind::Command(_) => "command",
        StageKind::Train(_) => "train",
    }
}
