//! Multi-stage pipelines: decide which stages are stale and why ([`plan`]), run the stale ones
//! in dependency order with independent stages in parallel ([`run`]), and record every stage in
//! `auditai.lock` and in a signed pipeline manifest.
//!
//! Owns the pipeline run directory's layout (`logs/`, `history/`, the manifest) and the rules for
//! reusing a stage: its command, params and env unchanged, every dep and out digest as the lock
//! records, and the lock entry backed by the manifest it names. Never deletes anything: a stage's
//! outs are overwritten only by the stage's own command. Progress goes through a callback; never
//! prints.

mod cache;
mod child;
mod exec;
pub mod graph;
pub mod lock;
pub mod numeric;
mod record;
pub mod rerun;
pub mod slurm;
mod stale;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::hash::{HashError, Hashed, Hasher};
use crate::manifest;
use crate::sign::SecretKey;
use crate::spec::{DeviceChoice, PipelineSpec, SpecError, StageKind};

pub use exec::{install_interrupt_handler, interrupted};
pub use graph::Graph;
pub use lock::{Lock, LockError, LockedPath, LockedStage};
pub use stale::{Backing, Checker, Planned, Why, plan};

/// Logs of the stages' stdout and stderr, in the pipeline run directory.
pub const LOGS: &str = "logs";
/// Every pipeline manifest written, by digest, in the pipeline run directory.
pub const HISTORY: &str = "history";
/// The pipeline run directory's `jobs/<stage>/`: the requests, scripts, results and Slurm output
/// of stages run as Slurm jobs.
pub const JOBS: &str = "jobs";

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
    /// Another run of the same pipeline holds its lock.
    #[error("{}: another auditai run of this pipeline is in progress (it holds the pipeline's lock); wait for it to finish", spec.display())]
    Busy {
        /// The spec.
        spec: PathBuf,
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
        Project::open_at(spec_path, None)
    }

    /// [`Project::open`] with the run directory `run --out`/`status --out` gives instead of the
    /// spec's `outputs.dir` (checked against the project the same way).
    pub fn open_at(spec_path: &Path, run_dir: Option<&Path>) -> Result<Project, StageError> {
        let spec_bytes = std::fs::read(spec_path).map_err(|source| SpecError::Read {
            path: spec_path.to_path_buf(),
            source,
        })?;
        let mut spec = PipelineSpec::parse(&String::from_utf8_lossy(&spec_bytes), spec_path)?;
        if let Some(dir) = run_dir {
            spec.run_dir = dir.display().to_string();
            spec.run_dir_pos = None;
        }
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
                entry.params = stage.template_params.clone();
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
    /// Neither restore from nor save into the run cache.
    pub no_run_cache: bool,
    /// `run --executor`: where every stage runs, over the spec's `executor:`.
    pub executor: Option<crate::spec::ExecutorKind>,
    /// At most this many stages at once.
    pub jobs: usize,
    /// Training stages' device.
    pub device: Option<DeviceChoice>,
    /// Training stages leave their data's bad rows out (recorded) instead of failing.
    pub skip_bad_rows: bool,
    /// Training stages' jurisdiction and the policy's demands on data sources.
    pub terms: crate::contribution::RunTerms,
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
    /// Its outs restored from the run cache: an earlier run had the same command, params, env
    /// and deps.
    Restored {
        /// The manifest that recorded that run (root-relative).
        manifest: String,
    },
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
    let project = Project::open_at(&opts.spec, opts.out.as_deref())?;
    let _held = hold(&opts.spec)?;
    for w in project.spec.warnings() {
        on_event(Event::Notice(&w));
    }
    let selection = project.select(&opts.stages, !opts.no_upstream)?;
    let run_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&project.spec.run_dir));
    prepare_run_dir(&run_dir)?;
    let results = exec::schedule(&project, &selection, opts, &run_dir, key, on_event)?;
    let cache = (!opts.no_run_cache).then(|| cache::RunCache::of(&project.graph.root));
    record::finish(
        &project,
        &selection,
        &run_dir,
        results,
        key,
        cache.as_ref(),
        on_event,
    )
}

/// Hold the pipeline's lock for the whole run: an exclusive advisory lock on the spec file, so
/// that two runs of one pipeline cannot interleave their lock and manifest writes.
fn hold(spec: &Path) -> Result<std::fs::File, StageError> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(spec).map_err(io_err(spec))?;
    // SAFETY: flock on a descriptor owned by `file`; no memory is touched.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StageError::Busy {
            spec: spec.to_path_buf(),
        });
    }
    Ok(file)
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
