//! Multi-stage pipelines: decide which stages are stale and why ([`plan`]), run the stale ones
//! in dependency order with independent stages in parallel ([`run`]), and record every stage in
//! `auditai.lock` and in a signed pipeline manifest.
//!
//! Owns the pipeline run directory's layout (`logs/`, `history/`, the manifest) and the rules for
//! reusing a stage: its command, params and env unchanged, every dep and out digest as the lock
//! records, and the lock entry backed by the manifest it names. Never deletes anything: a stage's
//! outs are overwritten only by the stage's own command. Progress goes through a callback; never
//! prints.

mod exec;
pub mod graph;
pub mod lock;
mod record;
pub mod rerun;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::hash::{self, HashError, Hashed, Hasher, StatCache};
use crate::manifest::{self, StageStatus};
use crate::sign::SecretKey;
use crate::spec::{DeviceChoice, PipelineSpec, SpecError, Stage, StageKind};

pub use exec::{install_interrupt_handler, interrupted};
pub use graph::Graph;
pub use lock::{Lock, LockError, LockedPath, LockedStage};

/// Logs of the stages' stdout and stderr, in the pipeline run directory.
pub const LOGS: &str = "logs";
/// Every pipeline manifest written, by digest, in the pipeline run directory.
pub const HISTORY: &str = "history";

/// Errors from planning or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The spec is invalid (graph errors included).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The lock could not be read or written.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Hashing a dep or out failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A file of the run directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The run directory holds something auditai did not make.
    #[error("{} is not an auditai run directory (no valid {} marker) and is not empty; choose another --out", dir.display(), crate::run_dir::MARKER)]
    NotRunDir {
        /// The directory.
        dir: PathBuf,
    },
    /// `--stage` named no stage.
    #[error("the pipeline has no stage `{0}`")]
    UnknownStage(String),
    /// A training stage in a build without training.
    #[error(
        "stage `{0}` is a training stage, and this auditai was built without the `train` feature"
    )]
    NoTraining(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A pipeline spec with its graph and lock, ready to plan or run.
pub struct Project {
    /// The spec.
    pub spec: PipelineSpec,
    /// The spec file's bytes.
    pub spec_bytes: Vec<u8>,
    /// The graph.
    pub graph: Graph,
    /// Where the lock lives.
    pub lock_path: PathBuf,
    /// The lock as read.
    pub lock: Lock,
}

impl Project {
    /// Read the spec and its lock and build the graph; nothing is written.
    pub fn open(spec_path: &Path) -> Result<Project, StageError> {
        let spec_bytes = std::fs::read(spec_path).map_err(|source| SpecError::Read {
            path: spec_path.to_path_buf(),
            source,
        })?;
        let spec = PipelineSpec::parse(&String::from_utf8_lossy(&spec_bytes), spec_path)?;
        Project::from_spec(spec, spec_bytes)
    }

    /// Build the graph of an already parsed spec and read its lock.
    pub fn from_spec(spec: PipelineSpec, spec_bytes: Vec<u8>) -> Result<Project, StageError> {
        let graph = Graph::build(&spec)?;
        let lock_path = lock::path_for(&spec.source);
        let lock = Lock::read(&lock_path)?;
        Ok(Project {
            spec,
            spec_bytes,
            graph,
            lock_path,
            lock,
        })
    }

    /// The stage indices `targets` select (all stages when empty), in run order; with
    /// `upstream`, each target's upstream stages too.
    pub fn select(&self, targets: &[String], upstream: bool) -> Result<Vec<usize>, StageError> {
        if targets.is_empty() {
            return Ok(self.graph.order.clone());
        }
        let mut keep = vec![false; self.spec.stages.len()];
        for t in targets {
            let i = self
                .spec
                .stages
                .iter()
                .position(|s| s.name.value == *t)
                .ok_or_else(|| StageError::UnknownStage(t.clone()))?;
            if upstream {
                for u in self.graph.with_upstream(i) {
                    keep[u] = true;
                }
            } else {
                keep[i] = true;
            }
        }
        Ok(self
            .graph
            .order
            .iter()
            .copied()
            .filter(|&i| keep[i])
            .collect())
    }

    /// The identity of stage `i` as the lock records it, without deps and outs: what must be
    /// unchanged for the stage to be reused.
    fn identity(&self, i: usize) -> LockedStage {
        let stage = &self.spec.stages[i];
        let mut entry = LockedStage {
            kind: String::new(),
            cmd: None,
            wdir: None,
            config_blake3: None,
            params: BTreeMap::new(),
            env: BTreeMap::new(),
            deps: Vec::new(),
            outs: Vec::new(),
            produced_by: manifest::ProducedBy {
                manifest: String::new(),
                blake3: String::new(),
            },
        };
        match &stage.kind {
            StageKind::Command(c) => {
                entry.kind = "command".into();
                entry.cmd = Some(c.cmd.clone());
                entry.wdir = Some(self.wdir(i));
                entry.params = c.params.clone();
                entry.env = c
                    .env
                    .iter()
                    .map(|n| (n.clone(), std::env::var(n).ok()))
                    .collect();
            }
            StageKind::Train(s) => {
                entry.kind = "train".into();
                entry.config_blake3 = Some(s.digest().to_hex().to_string());
            }
        }
        entry
    }

    /// A command stage's working directory, root-relative (checked inside the project by
    /// [`Graph::build`]).
    fn wdir(&self, i: usize) -> String {
        self.graph.nodes[i].wdir.clone()
    }
}

/// A dep's or out's descriptor: a file's (sha256 and blake3) or a directory's tree.
fn describe(
    hasher: &Hasher<'_>,
    path: &Path,
    rel: &str,
) -> Result<manifest::ResourceDescriptor, String> {
    match hasher.hash_path(path).map_err(|e| e.to_string())? {
        Hashed::File(d) => Ok(manifest::ResourceDescriptor::file(rel, None, &d)),
        Hashed::Dir(t) => Ok(manifest::ResourceDescriptor::tree(rel, &t)),
        Hashed::Symlink(_) => Err(format!(
            "{rel} is a symlink; deps and outs must be files or directories"
        )),
        Hashed::Special => Err(format!("{rel} is not a regular file or directory")),
    }
}

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
            Why::NeverRan => write!(f, "not in {}", lock::LOCK_FILE),
            Why::LockNotBacked { detail } => {
                write!(
                    f,
                    "{} entry not backed by its manifest: {detail}",
                    lock::LOCK_FILE
                )
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
            Why::Upstream { stage } => write!(f, "upstream stage {stage} will run"),
        }
    }
}

/// Hashes deps and outs for staleness decisions through the stat cache, and reads each
/// manifest a lock names once.
pub struct Checker {
    cache: Option<StatCache>,
    manifests: HashMap<String, Result<manifest::PipelineExtension, String>>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    /// A checker using the default stat cache.
    pub fn new() -> Checker {
        Checker {
            cache: StatCache::default_path().map(StatCache::open),
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
        if why.is_empty()
            && let Err(detail) = self.backed(p, name, locked)
        {
            why.push(Why::LockNotBacked { detail });
        }
        Ok(why)
    }

    /// Whether the manifest a lock entry names exists with the recorded digest and records this
    /// stage with the same command, deps and outs.
    fn backed(&mut self, p: &Project, name: &str, locked: &LockedStage) -> Result<(), String> {
        let by = &locked.produced_by;
        let ext = self
            .manifests
            .entry(format!("{}\0{}", by.manifest, by.blake3))
            .or_insert_with(|| read_history(&p.graph, by))
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

/// The pipeline extension of a manifest in the history, checked against its recorded digest.
fn read_history(
    graph: &Graph,
    by: &manifest::ProducedBy,
) -> Result<manifest::PipelineExtension, String> {
    let path = crate::fsio::recorded(&graph.root, &by.manifest)
        .map_err(|e| format!("{}: {e}", by.manifest))?;
    let bytes =
        hash::read_pinned(&path, &by.blake3, crate::fsio::MAX_DOCUMENT).map_err(|e| match e {
            hash::PinnedError::Changed { .. } => format!("{} changed", by.manifest),
            hash::PinnedError::Read(e) => format!("{}: {e}", by.manifest),
        })?;
    let opened = manifest::open(&bytes).map_err(|e| format!("{}: {e}", by.manifest))?;
    opened
        .statement
        .predicate
        .pipeline
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
pub fn plan(p: &Project, selection: &[usize], force: bool) -> Result<Vec<Planned>, StageError> {
    let mut checker = Checker::new();
    let mut stale = vec![false; p.spec.stages.len()];
    let mut out = Vec::with_capacity(selection.len());
    for &i in selection {
        let stage = &p.spec.stages[i];
        let mut why = if force {
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

fn kind_of(stage: &Stage) -> &'static str {
    match stage.kind {
        StageKind::Command(_) => "command",
        StageKind::Train(_) => "train",
    }
}

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The spec file.
    pub spec: PathBuf,
    /// The pipeline run directory (default: the spec's outputs.dir).
    pub out: Option<PathBuf>,
    /// Stages to run (all when empty).
    pub stages: Vec<String>,
    /// Run the named stages without their upstream stages.
    pub no_upstream: bool,
    /// Run every selected stage even when up to date.
    pub force: bool,
    /// At most this many stages at once.
    pub jobs: usize,
    /// Training stages' device.
    pub device: Option<DeviceChoice>,
}

/// Progress of a pipeline run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage started.
    Started {
        /// Its name.
        stage: &'a str,
        /// Why it runs.
        why: &'a [Why],
    },
    /// A line a stage wrote (stdout or stderr), or a progress line of a training stage.
    Output {
        /// The stage.
        stage: &'a str,
        /// The line, without its newline.
        line: &'a str,
    },
    /// A stage finished.
    Finished {
        /// The stage.
        stage: &'a str,
        /// Its outcome.
        outcome: &'a Outcome,
        /// Stages done so far (run, reused, failed or blocked) and in all.
        done: usize,
        /// Stages in the selection.
        total: usize,
    },
    /// Something worth knowing.
    Notice(&'a str),
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// It ran and completed.
    Ran {
        /// Seconds it took.
        seconds: f64,
        /// Why it ran.
        why: Vec<Why>,
    },
    /// Reused: nothing it depends on changed.
    Reused,
    /// It failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Not run because a stage it depends on failed.
    Blocked {
        /// That stage.
        after: String,
    },
    /// Not run (or stopped) because the run was interrupted.
    Interrupted,
}

/// One stage in a run's report.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// The stage.
    pub stage: String,
    /// `command` or `train`.
    pub kind: &'static str,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Its metrics (from metrics files, or a training stage's held-out metrics).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// What a pipeline run reports.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The pipeline.
    pub name: String,
    /// The pipeline run directory.
    pub run_dir: PathBuf,
    /// The manifest of a complete run (absent when the run did not complete).
    pub manifest: Option<PathBuf>,
    /// The manifest recorded in the history (always, when anything was recorded).
    pub history_manifest: Option<PathBuf>,
    /// Whether the manifest was left as it was because nothing changed.
    pub unchanged: bool,
    /// Key ids of the manifest's signatures.
    pub signers: Vec<String>,
    /// The lock file.
    pub lock: PathBuf,
    /// Every selected stage.
    pub stages: Vec<StageReport>,
    /// Whether every selected stage ran or was reused.
    pub ok: bool,
    /// Whether the run was interrupted.
    pub interrupted: bool,
}

/// Run the pipeline: plan, run the stale stages (independent ones in parallel), then record the
/// completed ones in the lock and a signed manifest.
pub fn run(
    opts: &RunOptions,
    key: Option<&SecretKey>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<PipelineReport, StageError> {
    let project = Project::open(&opts.spec)?;
    let selection = project.select(&opts.stages, !opts.no_upstream)?;
    let run_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&project.spec.run_dir));
    prepare_run_dir(&run_dir)?;
    let results = exec::schedule(&project, &selection, opts, &run_dir, key, on_event)?;
    record::finish(&project, &selection, &run_dir, results, key, on_event)
}

/// Create (or reuse) the pipeline run directory: absent, empty, or already marked as auditai's.
fn prepare_run_dir(dir: &Path) -> Result<(), StageError> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if occupied && !crate::run_dir::is_run_dir(dir) {
        return Err(StageError::NotRunDir {
            dir: dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(dir.join(LOGS)).map_err(io_err(dir))?;
    std::fs::create_dir_all(dir.join(HISTORY)).map_err(io_err(dir))?;
    if !occupied {
        crate::run_dir::mark(dir).map_err(io_err(dir))?;
    }
    Ok(())
}
