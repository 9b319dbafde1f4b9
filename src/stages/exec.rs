//! Running stages: the scheduler (dependency order, at most `jobs` at once), command stages as
//! child processes in their own process group with a cleared environment, their output kept as
//! logs, training stages through [`crate::pipeline`], and Ctrl-C.
//!
//! Never deletes: a stage's outs are the command's to write; after it exits, every declared out
//! must exist and have been written during the stage. On Ctrl-C while a training stage runs (in
//! this process, not stoppable midway) the process exits with 130 after stopping the command
//! stages, recording nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hash::Hasher;
use crate::manifest::{self, ResourceDescriptor, StageRecord, StageStatus};
use crate::sign::SecretKey;
use crate::spec::{CommandStage, ExecutorKind, StageKind};

use super::{
    Checker, Event, LOGS, LockedPath, LockedStage, Outcome, Project, RunOptions, StageError, Why,
};

pub use crate::cancel::{install_handler as install_interrupt_handler, requested as interrupted};

/// The most bytes of one output line shown on the terminal (the log keeps everything).
const MAX_SHOWN_LINE: usize = 4096;
/// How long stopped stages get between SIGTERM and SIGKILL.
const GRACE: Duration = super::child::GRACE;
/// Output lines waiting for the display; more are dropped from the display, never the log.
const MAX_QUEUED_LINES: usize = 1024;

/// A finished stage, as the recorder needs it.
pub(super) struct Done {
    pub index: usize,
    pub outcome: Outcome,
    /// The manifest record (ran and reused stages).
    pub record: Option<StageRecord>,
    /// The new lock entry (ran stages; `produced_by` filled in by the recorder).
    pub locked: Option<LockedStage>,
}

enum Msg {
    Line(usize, String),
    Done(Box<Done>),
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Ok,
    Bad,
}

/// Run the stale stages of `selection`, at most `opts.jobs` at once, each after the stages it
/// depends on. Returns every selected stage's result, in the order they finished.
pub(super) fn schedule(
    p: &Project,
    selection: &[usize],
    opts: &RunOptions,
    run_dir: &Path,
    key: Option<&SecretKey>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<Done>, StageError> {
    let jobs = opts.jobs.max(1);
    let checker = Checker::new(super::Backing::of(run_dir, key));
    let mut s = Sched::new(p, selection, checker, run_dir);
    s.no_cache = opts.no_run_cache;
    // Bounded: a stage printing faster than the display drains drops display lines (its log
    // keeps every byte), so memory stays flat whatever a stage prints.
    let (tx, rx) = mpsc::sync_channel::<Msg>(MAX_QUEUED_LINES);
    let children: Arc<Mutex<Vec<u32>>> = Arc::default();
    let outcome = std::thread::scope(|scope| -> Result<(), StageError> {
        while !interrupted() {
            let mut progressed = false;
            for &i in selection {
                let Some(why) = s.ready(i, opts.force, on_event, &mut progressed)? else {
                    continue;
                };
                if s.running >= jobs {
                    s.decided[i] = Some(why);
                    continue;
                }
                if !s.announced {
                    s.announced = true;
                    on_event(Event::Notice(&format!(
                        "running with up to {jobs} stage(s) at once; logs in {}",
                        run_dir.join(LOGS).display()
                    )));
                    s.start_watching(on_event);
                }
                on_event(Event::Started {
                    stage: &p.spec.stages[i].name.value,
                    why: &why,
                });
                s.state[i] = State::Running;
                s.running += 1;
                progressed = true;
                let (tx, children) = (tx.clone(), Arc::clone(&children));
                scope.spawn(move || {
                    let done = run_stage(p, i, why, run_dir, key, opts, &children, &tx);
                    let _ = tx.send(Msg::Done(Box::new(done)));
                });
            }
            if s.running == 0 && !progressed {
                break;
            }
            if progressed && s.running == 0 {
                continue;
            }
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                s.receive(m, on_event);
            }
        }
        if interrupted() {
            stop_children(&children);
            s.drain(&rx, on_event);
        }
        Ok(())
    });
    s.checker.save();
    outcome?;
    Ok(s.into_results())
}

/// The scheduler's state: each stage's state, decisions made, results so far.
struct Sched<'a> {
    p: &'a Project,
    selection: &'a [usize],
    checker: Checker,
    state: Vec<State>,
    /// Why each ready stage must run, decided once (its upstream has settled by then).
    decided: Vec<Option<Vec<Why>>>,
    results: Vec<Done>,
    running: usize,
    announced: bool,
    /// What to leave out of the project's snapshots, and the last one (`None`: not watched, or
    /// no stage has started: a run that reuses every stage never walks the project).
    ignored: super::watch::Ignored,
    snapshot: Option<super::watch::Snapshot>,
    /// `--no-run-cache`: never restore from the run cache.
    no_cache: bool,
}

impl<'a> Sched<'a> {
    fn new(p: &'a Project, selection: &'a [usize], checker: Checker, run_dir: &Path) -> Sched<'a> {
        let n = p.spec.stages.len();
        let mut ignored: Vec<String> = [".git", ".auditai"].map(String::from).to_vec();
        ignored.extend(p.graph.relative(run_dir));
        ignored.extend(p.graph.nodes.iter().flat_map(|n| n.outs.iter().cloned()));
        let ignored = super::watch::Ignored { paths: ignored };
        Sched {
            p,
            selection,
            checker,
            state: vec![State::Pending; n],
            decided: vec![None; n],
            results: Vec::new(),
            running: 0,
            announced: false,
            ignored,
            snapshot: None,
            no_cache: false,
        }
    }

    /// Before the first stage starts: the snapshot later looks are compared with.
    fn start_watching(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        self.snapshot = super::watch::Snapshot::take(&self.p.graph.root, &self.ignored);
        if self.snapshot.is_none() {
            on_event(Event::Notice(&format!(
                "the project holds more than {} files and directories: writes outside the stages' outs are not watched",
                super::watch::MAX_ENTRIES
            )));
        }
    }

    /// After stage `i` ended: what changed in the project outside every out since the last
    /// look, told and recorded against it (and the stages still running beside it).
    fn look_outside(&mut self, done: &mut Done, on_event: &mut dyn FnMut(Event<'_>)) {
        let Some(before) = &self.snapshot else {
            return;
        };
        let Some(now) = super::watch::Snapshot::take(&self.p.graph.root, &self.ignored) else {
            return;
        };
        let (changes, n) = before.changes(&now);
        self.snapshot = Some(now);
        if n == 0 {
            return;
        }
        let name = &self.p.spec.stages[done.index].name.value;
        let beside: Vec<&str> = (0..self.state.len())
            .filter(|&j| self.state[j] == State::Running && j != done.index)
            .map(|j| self.p.spec.stages[j].name.value.as_str())
            .collect();
        let who = if beside.is_empty() {
            format!("stage {name}")
        } else {
            format!("stage {name} (or {}, running beside it)", beside.join(", "))
        };
        let more = if n > changes.len() {
            format!(" and {} more", n - changes.len())
        } else {
            String::new()
        };
        on_event(Event::Notice(&format!(
            "{who} changed {n} path(s) outside the stages' outs: {}{more}",
            changes.join(", ")
        )));
        if let Some(r) = done.record.as_mut() {
            r.outside_changes = changes;
        }
    }

    /// Record a finished stage and tell the caller.
    fn settle(&mut self, done: Done, on_event: &mut dyn FnMut(Event<'_>)) {
        let total = self.selection.len();
        finished(self.p, &done, self.results.len() + 1, total, on_event);
        self.results.push(done);
    }

    /// Settle stage `i` if it is blocked by a failed upstream stage or can be reused; return
    /// why it must run when it is ready to start, `None` otherwise.
    fn ready(
        &mut self,
        i: usize,
        force: bool,
        on_event: &mut dyn FnMut(Event<'_>),
        progressed: &mut bool,
    ) -> Result<Option<Vec<Why>>, StageError> {
        if self.state[i] != State::Pending {
            return Ok(None);
        }
        let selected = |u: usize| self.selection.contains(&u);
        let up = &self.p.graph.nodes[i].upstream;
        if let Some(&bad) = up
            .iter()
            .find(|&&u| selected(u) && self.state[u] == State::Bad)
        {
            self.state[i] = State::Bad;
            let after = self.p.spec.stages[bad].name.value.clone();
            self.settle(
                Done {
                    index: i,
                    outcome: Outcome::Blocked { after },
                    record: None,
                    locked: None,
                },
                on_event,
            );
            *progressed = true;
            return Ok(None);
        }
        if up
            .iter()
            .any(|&u| selected(u) && self.state[u] != State::Ok)
        {
            return Ok(None);
        }
        let frozen = self.p.spec.stages[i].frozen;
        let why = match self.decided[i].take() {
            Some(w) if !frozen => w,
            None if force && !frozen => vec![Why::Forced],
            _ => self.checker.why(self.p, i)?,
        };
        if frozen && !why.is_empty() {
            self.state[i] = State::Bad;
            let reasons: Vec<String> = why.iter().map(ToString::to_string).collect();
            let error = format!(
                "stage is frozen and cannot be reused ({}); unfreeze it to run it",
                reasons.join("; ")
            );
            let outcome = Outcome::Failed { error };
            let done = Done {
                index: i,
                outcome,
                record: None,
                locked: None,
            };
            self.settle(done, on_event);
            *progressed = true;
            return Ok(None);
        }
        if !why.is_empty() {
            if force || self.no_cache || self.p.spec.stages[i].always_changed {
                return Ok(Some(why));
            }
            let Some(done) = self.restore_from_cache(i, on_event) else {
                return Ok(Some(why));
            };
            self.state[i] = State::Ok;
            self.settle(done, on_event);
            *progressed = true;
            return Ok(None);
        }
        self.state[i] = State::Ok;
        let done = reused(self.p, i);
        self.settle(done, on_event);
        *progressed = true;
        Ok(None)
    }

    /// Stage `i` restored from the run cache, when an entry matches what it would run with and
    /// the manifest it names backs it; a cache that cannot be used is a notice, and it runs.
    fn restore_from_cache(
        &mut self,
        i: usize,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Option<Done> {
        let p = self.p;
        let mut identity = p.identity(i);
        let node = &p.graph.nodes[i];
        let mut deps = Vec::new();
        for d in &node.deps {
            deps.push(self.checker.digest(&p.graph.path(d), d).ok()??);
        }
        identity.outs = node
            .outs
            .iter()
            .map(|o| LockedPath {
                path: o.clone(),
                blake3: String::new(),
                kind: String::new(),
            })
            .collect();
        let cache = super::cache::RunCache::of(&p.graph.root);
        let name = &p.spec.stages[i].name.value;
        let found = cache.find(&super::cache::key(&identity, &deps));
        let entry = match found {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(e) => {
                on_event(Event::Notice(&format!(
                    "stage {name}: run cache not used: {e}"
                )));
                return None;
            }
        };
        let l = &entry.locked;
        let same_paths = l
            .outs
            .iter()
            .map(|o| &o.path)
            .eq(identity.outs.iter().map(|o| &o.path));
        let same = (
            &l.kind,
            &l.cmd,
            &l.wdir,
            &l.config_blake3,
            &l.params,
            &l.env,
            &l.deps,
        ) == (
            &identity.kind,
            &identity.cmd,
            &identity.wdir,
            &identity.config_blake3,
            &identity.params,
            &identity.env,
            &deps,
        );
        let usable = if same && same_paths {
            self.checker
                .backed(p, name, l)
                .and_then(|()| cache.restore(&entry))
        } else {
            Err("its entry records another command, params, env, deps or outs".into())
        };
        if let Err(e) = usable {
            on_event(Event::Notice(&format!(
                "stage {name}: run cache not used: {e}"
            )));
            return None;
        }
        let mut done = reused_from(p, i, &entry.locked);
        if let Some(r) = done.record.as_mut() {
            r.restored = true;
        }
        done.outcome = Outcome::Restored {
            manifest: entry.locked.produced_by.manifest.clone(),
        };
        done.locked = Some(entry.locked);
        Some(done)
    }

    /// A message from a running stage: a line to show, or its result.
    fn receive(&mut self, m: Msg, on_event: &mut dyn FnMut(Event<'_>)) {
        match m {
            Msg::Line(i, line) => on_event(Event::Output {
                stage: &self.p.spec.stages[i].name.value,
                line: &line,
            }),
            Msg::Done(done) => {
                self.running -= 1;
                let ran = matches!(done.outcome, Outcome::Ran { .. });
                self.state[done.index] = if ran { State::Ok } else { State::Bad };
                // A stage stopped by Ctrl-C failed because of it: say so.
                let mut done = if !ran && interrupted() {
                    interrupted_done(*done)
                } else {
                    *done
                };
                self.look_outside(&mut done, on_event);
                self.settle(done, on_event);
            }
        }
    }

    /// After Ctrl-C: command stages were stopped; a training stage in this process stops at its
    /// next step, with no manifest, so what it wrote never looks complete. Wait for all.
    fn drain(&mut self, rx: &mpsc::Receiver<Msg>, on_event: &mut dyn FnMut(Event<'_>)) {
        while self.running > 0 {
            match rx.recv_timeout(GRACE + Duration::from_secs(1)) {
                Ok(Msg::Done(done)) => {
                    self.running -= 1;
                    self.state[done.index] = State::Bad;
                    self.settle(interrupted_done(*done), on_event);
                }
                Ok(Msg::Line(..)) => {}
                Err(_) => break,
            }
        }
    }

    /// Every result, with the stages that never finished as interrupted.
    fn into_results(mut self) -> Vec<Done> {
        for &i in self.selection {
            if matches!(self.state[i], State::Pending | State::Running) {
                self.results.push(Done {
                    index: i,
                    outcome: Outcome::Interrupted,
                    record: None,
                    locked: None,
                });
            }
        }
        self.results
    }
}

/// A stage's result as an interrupted one: nothing of it is recorded.
fn interrupted_done(done: Done) -> Done {
    Done {
        outcome: Outcome::Interrupted,
        record: None,
        locked: None,
        ..done
    }
}

fn finished(p: &Project, done: &Done, n: usize, total: usize, on_event: &mut dyn FnMut(Event<'_>)) {
    on_event(Event::Finished {
        stage: &p.spec.stages[done.index].name.value,
        outcome: &done.outcome,
        done: n,
        total,
    });
}

/// SIGTERM every stage's process group, then SIGKILL what is left after the grace period.
fn stop_children(children: &Mutex<Vec<u32>>) {
    let pids: Vec<u32> = children.lock().map(|c| c.clone()).unwrap_or_default();
    for &pid in &pids {
        super::child::signal_group(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        let left = children.lock().map(|c| c.len()).unwrap_or(0);
        if left == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids: Vec<u32> = children.lock().map(|c| c.clone()).unwrap_or_default();
    for &pid in &pids {
        super::child::signal_group(pid, libc::SIGKILL);
    }
}

/// The record and outcome of a stage reused from the lock.
fn reused(p: &Project, i: usize) -> Done {
    let stage = &p.spec.stages[i];
    let Some(locked) = p.lock.stages.get(&stage.name.value) else {
        return Done {
            index: i,
            outcome: Outcome::Failed {
                error: "no lock entry".into(),
            },
            record: None,
            locked: None,
        };
    };
    reused_from(p, i, locked)
}

/// The record and outcome of a stage whose outs are those `locked` recorded.
fn reused_from(p: &Project, i: usize, locked: &LockedStage) -> Done {
    let stage = &p.spec.stages[i];
    let desc = |l: &LockedPath| {
        let mut d = ResourceDescriptor {
            name: Some(l.path.clone()),
            ..Default::default()
        };
        d.digest.insert("blake3".into(), l.blake3.clone());
        d.annotations = Some(serde_json::json!({ "kind": l.kind }));
        d
    };
    let record = StageRecord {
        name: stage.name.value.clone(),
        kind: locked.kind.clone(),
        status: StageStatus::Reused,
        cmd: locked.cmd.clone(),
        wdir: locked.wdir.clone(),
        params: locked.params.clone(),
        env: Default::default(),
        secret_env: Vec::new(),
        ambient_env: Vec::new(),
        config_blake3: locked.config_blake3.clone(),
        exit_code: None,
        started_on: None,
        finished_on: None,
        logs: Vec::new(),
        deps: locked.deps.iter().map(desc).collect(),
        outs: locked.outs.iter().map(desc).collect(),
        manifest: None,
        metrics: read_metrics(p, i).unwrap_or_default(),
        produced_by: Some(locked.produced_by.clone()),
        restored: false,
        executor: None,
        outside_changes: Vec::new(),
    };
    Done {
        index: i,
        outcome: Outcome::Reused,
        record: Some(record),
        locked: None,
    }
}

/// What running a stage produced, whatever ran it: the record's facts that only the run knows.
#[derive(Default)]
struct Executed {
    exit_code: Option<i32>,
    logs: Vec<ResourceDescriptor>,
    env: std::collections::BTreeMap<String, String>,
    secret_env: Vec<String>,
    ambient_env: Vec<String>,
    executor: Option<manifest::JobFacts>,
    manifest: Option<ResourceDescriptor>,
    metrics: Option<serde_json::Value>,
}

/// Run stage `i` and describe the result.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    p: &Project,
    i: usize,
    why: Vec<Why>,
    run_dir: &Path,
    key: Option<&SecretKey>,
    opts: &RunOptions,
    children: &Mutex<Vec<u32>>,
    tx: &mpsc::SyncSender<Msg>,
) -> Done {
    let fail = |error: String| Done {
        index: i,
        outcome: Outcome::Failed { error },
        record: None,
        locked: None,
    };
    let stage = &p.spec.stages[i];
    let node = &p.graph.nodes[i];
    let hasher = Hasher::new(None, true);
    // Deps are hashed before the stage runs: the record is of what it read.
    let deps = match describe_all(p, &node.deps, &hasher) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    // What each out looked like before: an out whose stat is unchanged afterwards was not
    // written by the stage (comparing with the start time would trip on coarse file clocks).
    let before: Vec<Option<Stamp>> = node.outs.iter().map(|o| stamp(&p.graph.path(o))).collect();
    let started = Instant::now();
    let started_on = manifest::now_rfc3339();
    let on_slurm = opts.executor.unwrap_or(stage.executor.kind) == ExecutorKind::Slurm;
    let executed = match &stage.kind {
        _ if on_slurm => run_on_slurm(p, i, run_dir, key, opts, tx),
        StageKind::Command(c) => run_command(p, i, c, run_dir, children, tx),
        StageKind::Train(_) => run_training(p, i, key, opts, tx),
    };
    let executed = match executed.and_then(|e| succeeded(e, &stage.kind)) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let outs = match written_outs(p, i, &before, &hasher) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let (record, identity) = match record_of(p, i, started_on, deps, outs, executed) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    Done {
        index: i,
        outcome: Outcome::Ran {
            seconds: started.elapsed().as_secs_f64(),
            why,
        },
        record: Some(record),
        locked: Some(identity),
    }
}

/// Descriptors of root-relative paths.
fn describe_all(
    p: &Project,
    paths: &[String],
    hasher: &Hasher<'_>,
) -> Result<Vec<ResourceDescriptor>, String> {
    paths
        .iter()
        .map(|d| super::describe(hasher, &p.graph.path(d), d))
        .collect()
}

/// The stage's result when it succeeded; why it failed otherwise.
fn succeeded(e: Executed, kind: &StageKind) -> Result<Executed, String> {
    match e.exit_code {
        Some(code) if code != 0 => return Err(format!("exited with status {code}")),
        None if matches!(kind, StageKind::Command(_)) => {
            return Err("killed by a signal".into());
        }
        _ => {}
    }
    if interrupted() {
        return Err("interrupted".into());
    }
    Ok(e)
}

/// Every out exists and was written by this stage: their descriptors.
fn written_outs(
    p: &Project,
    i: usize,
    before: &[Option<Stamp>],
    hasher: &Hasher<'_>,
) -> Result<Vec<ResourceDescriptor>, String> {
    let mut outs = Vec::new();
    for (k, o) in p.graph.nodes[i].outs.iter().enumerate() {
        let path = p.graph.path(o);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| format!("declared out {o} is missing after the stage"))?;
        if meta.is_file() && before[k].is_some() && before[k] == stamp(&path) {
            return Err(format!(
                "declared out {o} was not written by the stage (it predates it)"
            ));
        }
        outs.push(super::describe(hasher, &path, o)?);
    }
    Ok(outs)
}

/// The manifest record and the lock entry of a stage that ran.
fn record_of(
    p: &Project,
    i: usize,
    started_on: String,
    deps: Vec<ResourceDescriptor>,
    outs: Vec<ResourceDescriptor>,
    executed: Executed,
) -> Result<(StageRecord, LockedStage), String> {
    let mut metrics = read_metrics(p, i)?;
    if let Some(m) = executed.metrics {
        metrics.insert(p.graph.nodes[i].outs[0].clone(), m);
    }
    let locked_path = |d: &ResourceDescriptor| LockedPath {
        path: d.name.clone().unwrap_or_default(),
        blake3: d.digest.get("blake3").cloned().unwrap_or_default(),
        kind: if d.is_directory() {
            "directory"
        } else {
            "file"
        }
        .to_string(),
    };
    let mut identity = p.identity(i);
    identity.deps = deps.iter().map(locked_path).collect();
    identity.outs = outs.iter().map(locked_path).collect();
    let record = StageRecord {
        name: p.spec.stages[i].name.value.clone(),
        kind: identity.kind.clone(),
        status: StageStatus::Ran,
        cmd: identity.cmd.clone(),
        wdir: identity.wdir.clone(),
        params: identity.params.clone(),
        env: executed.env,
        secret_env: executed.secret_env,
        ambient_env: executed.ambient_env,
        config_blake3: identity.config_blake3.clone(),
        exit_code: executed.exit_code,
        started_on: Some(started_on),
        finished_on: Some(manifest::now_rfc3339()),
        logs: executed.logs,
        deps,
        outs,
        manifest: executed.manifest,
        restored: false,
        executor: executed.executor,
        outside_changes: Vec::new(),
        metrics,
        produced_by: None,
    };
    Ok((record, identity))
}

/// A file's identity on disk: size, mtime, ctime, inode.
#[derive(PartialEq)]
struct Stamp(u64, i64, i64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(Stamp(
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    ))
}

/// The most bytes of a metrics file.
const MAX_METRICS: u64 = 1 << 20;

/// The stage's metrics files, parsed.
fn read_metrics(
    p: &Project,
    i: usize,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, String> {
    let mut out = std::collections::BTreeMap::new();
    let stage = &p.spec.stages[i];
    for m in &stage.metrics {
        let Some(pos) = stage.outs.iter().position(|o| o.value == *m) else {
            continue;
        };
        let rel = &p.graph.nodes[i].outs[pos];
        let path = p.graph.path(rel);
        let bytes = crate::fsio::read_bounded(&path, MAX_METRICS)
            .map_err(|e| format!("metrics file {rel}: {e}"))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "metrics file {rel}:{}:{}: not JSON: {e}",
                e.line(),
                e.column()
            )
        })?;
        out.insert(rel.clone(), value);
    }
    Ok(out)
}

/// Run a command stage: `sh -c CMD` in its wdir, in a new process group, with only `PATH`, its
/// declared env and auditai's `AUDITAI_STAGE` / `AUDITAI_PARAMS`; stdout and stderr to logs.
fn run_command(
    p: &Project,
    i: usize,
    c: &CommandStage,
    run_dir: &Path,
    children: &Mutex<Vec<u32>>,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<Executed, String> {
    let name = &p.spec.stages[i].name.value;
    let wdir = p.graph.path(&p.wdir(i));
    let (env, secrets, ambient) = stage_env(name, c);
    let log_paths = [
        run_dir.join(LOGS).join(format!("{name}.stdout.log")),
        run_dir.join(LOGS).join(format!("{name}.stderr.log")),
    ];
    out_parents(p, i)?;
    let mut all = env.clone();
    all.extend(secrets.iter().cloned());
    all.extend(ambient.iter().cloned());
    let mut child = super::child::spawn(&c.cmd, &wdir, &all, true)
        .map_err(|e| format!("cannot start `sh -c` in {}: {e}", wdir.display()))?;
    let pid = child.id();
    if let Ok(mut c) = children.lock() {
        c.push(pid);
    }
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    let pumps: Vec<_> = streams
        .into_iter()
        .zip(&log_paths)
        .map(|(stream, log)| {
            let (tx, log) = (tx.clone(), partial(log));
            std::thread::spawn(move || pump(stream, &log, i, &tx))
        })
        .collect();
    let status = super::child::wait(&mut child, c.timeout, &interrupted);
    let pumped: Vec<Result<(), String>> = pumps
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err("log writer failed".into())))
        .collect();
    if let Ok(mut c) = children.lock() {
        c.retain(|&x| x != pid);
    }
    let status = status.map_err(|e| format!("waiting for the stage: {e}"))?;
    pumped.into_iter().collect::<Result<Vec<()>, String>>()?;
    let logs = finish_logs(&log_paths, run_dir)?;
    if let super::child::Exit::TimedOut(d) = status {
        return Err(format!(
            "stopped after its timeout of {} (logs in {})",
            humantime::format_duration(d),
            run_dir.join(LOGS).display()
        ));
    }
    Ok(Executed {
        exit_code: status.code(),
        logs,
        env,
        secret_env: secrets.into_iter().map(|(k, _)| k).collect(),
        ambient_env: ambient.into_iter().map(|(k, _)| k).collect(),
        ..Default::default()
    })
}

/// Variables every command stage gets from the caller unless it declares them itself: most
/// tools (git, pip, dvclive, matplotlib) need a home, a user and a locale. Values not recorded.
pub const AMBIENT_ENV: [&str; 4] = ["HOME", "USER", "LANG", "TMPDIR"];

/// A command stage's environment: `PATH`, its declared variables and auditai's own (recorded),
/// its secret variables and the ambient ones (passed, never recorded).
#[allow(clippy::type_complexity)]
fn stage_env(
    name: &str,
    c: &CommandStage,
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<(String, String)>,
    Vec<(String, String)>,
) {
    let mut env = std::collections::BTreeMap::new();
    if let Some(path) = std::env::var_os("PATH") {
        env.insert("PATH".to_string(), path.to_string_lossy().into_owned());
    }
    for n in &c.env {
        if let Ok(v) = std::env::var(n) {
            env.insert(n.clone(), v);
        }
    }
    env.insert("AUDITAI_STAGE".into(), name.to_string());
    env.insert("AUDITAI_PARAMS".into(), params_json(&c.params));
    let secrets = c
        .secret_env
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
        .collect();
    let ambient = AMBIENT_ENV
        .iter()
        .filter(|n| !c.env.iter().chain(&c.secret_env).any(|d| d == *n))
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect();
    (env, secrets, ambient)
}

/// Run stage `i` as a Slurm job ([`super::slurm`]): the request and script under the run
/// directory's `jobs/<stage>/`, `sbatch`, then wait for the job's result; the controller keeps
/// the logs, hashes the outs (by the caller) and signs a training stage's manifest.
fn run_on_slurm(
    p: &Project,
    i: usize,
    run_dir: &Path,
    key: Option<&SecretKey>,
    opts: &RunOptions,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<Executed, String> {
    use super::slurm;
    let stage = &p.spec.stages[i];
    let name = &stage.name.value;
    let abs = |q: &Path| std::path::absolute(q).map_err(|e| format!("{}: {e}", q.display()));
    let run_dir = abs(run_dir)?;
    let dir = run_dir.join(super::JOBS).join(name);
    let log_paths = [
        run_dir.join(LOGS).join(format!("{name}.stdout.log")),
        run_dir.join(LOGS).join(format!("{name}.stderr.log")),
    ];
    let mut req = slurm::JobRequest::new(
        name,
        abs(&p.graph.path(&p.wdir(i)))?,
        [partial(&log_paths[0]), partial(&log_paths[1])],
        dir.join("result.json"),
    );
    let mut executed = Executed::default();
    match &stage.kind {
        StageKind::Command(c) => {
            let (env, secrets, ambient) = stage_env(name, c);
            out_parents(p, i)?;
            req.cmd = Some(c.cmd.clone());
            req.env = env.clone();
            req.timeout_secs = c.timeout.map(|d| d.as_secs().max(1));
            executed.secret_env = secrets.into_iter().map(|(k, _)| k).collect();
            executed.ambient_env = ambient.into_iter().map(|(k, _)| k).collect();
            req.pass = executed
                .secret_env
                .iter()
                .chain(&executed.ambient_env)
                .cloned()
                .collect();
            executed.env = env;
        }
        StageKind::Train(_) => {
            req.train = Some(slurm::TrainJob {
                // As a local training stage gets it: relative to the controller's directory,
                // which the job starts in, so the run records the same paths.
                spec: p.spec.source.clone(),
                out: abs(&p.graph.path(&p.graph.nodes[i].outs[0]))?,
                device: opts.device,
                skip_bad_rows: opts.skip_bad_rows,
                terms: opts.terms.clone(),
            });
        }
    }
    std::fs::create_dir_all(run_dir.join(LOGS))
        .map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let id = slurm::submit(&req, &dir, &stage.executor)?;
    let _ = tx.try_send(Msg::Line(i, format!("submitted as Slurm job {id}")));
    let result = match slurm::wait(&id, &req.result, &dir) {
        slurm::JobEnd::Done(r) => *r,
        slurm::JobEnd::Interrupted => {
            return Err("interrupted (its Slurm job was cancelled)".into());
        }
        slurm::JobEnd::Lost { state, tail } => {
            let tail = tail.trim().replace('\n', " | ");
            return Err(format!(
                "Slurm job {id} ended {state} without a result (its output: {tail})"
            ));
        }
    };
    executed.logs = finish_logs(&log_paths, &run_dir)?;
    if result.exit_code != Some(0) {
        // Killed or failed: say what Slurm says (TIMEOUT, OUT_OF_MEMORY, CANCELLED, …).
        let state = slurm::final_state(&id);
        let why = result
            .error
            .clone()
            .unwrap_or_else(|| match result.exit_code {
                Some(c) => format!("exited with status {c}"),
                None => "killed by a signal".into(),
            });
        return Err(format!("{why} (Slurm job {id}: {state})"));
    }
    executed.exit_code = result.exit_code;
    let mut facts = result.job;
    if facts.job_id.is_empty() {
        facts.job_id = id;
    }
    executed.executor = Some(facts);
    if matches!(stage.kind, StageKind::Train(_)) {
        trained_on_slurm(p, i, key, &mut executed)?;
    }
    Ok(executed)
}

/// After a training job: sign its manifest here (no key travels to a job), and take its
/// digest and headline metrics as a local training stage does.
fn trained_on_slurm(
    p: &Project,
    i: usize,
    key: Option<&SecretKey>,
    executed: &mut Executed,
) -> Result<(), String> {
    let out_rel = &p.graph.nodes[i].outs[0];
    let out = p.graph.path(out_rel);
    let manifest_path = out.join(crate::run_dir::MANIFEST);
    if let Some(k) = key {
        let bytes = crate::fsio::read_bounded(&manifest_path, crate::fsio::MAX_DOCUMENT)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        let (mut envelope, _, _) = crate::manifest::open_envelope(&bytes)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        envelope.sign(k);
        crate::fsio::write_atomic(&manifest_path, &envelope.to_bytes())
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    }
    executed.manifest = Some(manifest_descriptor(out_rel, &manifest_path)?);
    let summary: serde_json::Value =
        crate::fsio::read_bounded(&out.join("summary.json"), MAX_METRICS)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let headline = crate::experiments::headline_metrics(summary.get("metrics"));
    executed.metrics = Some(serde_json::Value::Object(headline));
    Ok(())
}

/// The directories stage `i`'s outs go into, made before it runs (as the rerun's scratch copy
/// has them).
fn out_parents(p: &Project, i: usize) -> Result<(), String> {
    for o in &p.graph.nodes[i].outs {
        if let Some(parent) = p.graph.path(o).parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
    }
    Ok(())
}

/// A training stage's own manifest as the pipeline records it (root-relative, digested).
fn manifest_descriptor(out_rel: &str, path: &Path) -> Result<ResourceDescriptor, String> {
    let d = Hasher::new(None, true)
        .hash_file(path)
        .map_err(|e| e.to_string())?;
    let rel = format!("{out_rel}/{}", crate::run_dir::MANIFEST);
    Ok(ResourceDescriptor::file(&rel, None, &d))
}

/// `AUDITAI_PARAMS`: the stage's params by key as the stage names them, a parameter file's
/// `FILE:` prefix dropped (kept when two files give the same key), so a script reads
/// `train.lr` wherever the value lives.
fn params_json(params: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    let short = |k: &str| k.split_once(':').map_or(k, |(_, key)| key).to_string();
    let mut out = serde_json::Map::new();
    for (k, v) in params {
        let s = short(k);
        let clash = params.keys().filter(|o| short(o) == s).count() > 1;
        out.insert(if clash { k.clone() } else { s }, v.clone());
    }
    serde_json::Value::Object(out).to_string()
}

/// `LOG.partial`: where a log is written until the stage ends.
fn partial(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".partial");
    PathBuf::from(s)
}

/// Rename the finished logs into place and describe them.
fn finish_logs(log_paths: &[PathBuf], run_dir: &Path) -> Result<Vec<ResourceDescriptor>, String> {
    let hasher = Hasher::new(None, true);
    let mut logs = Vec::new();
    for log in log_paths {
        std::fs::rename(partial(log), log).map_err(|e| format!("{}: {e}", log.display()))?;
        let d = hasher.hash_file(log).map_err(|e| e.to_string())?;
        let rel = format!(
            "{LOGS}/{}",
            log.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        logs.push(ResourceDescriptor::file(&rel, None, &d));
    }
    let _ = crate::fsio::sync_dir(&run_dir.join(LOGS));
    Ok(logs)
}

/// Copy a child's stream to its log and, line by line, to the display.
fn pump(
    stream: Option<Box<dyn Read + Send>>,
    log: &Path,
    i: usize,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<(), String> {
    let mut file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let Some(stream) = stream else {
        return Ok(());
    };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(1 << 20)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading the stage's output: {e}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let shown = &buf[..buf.len().min(MAX_SHOWN_LINE)];
        let line = String::from_utf8_lossy(shown)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        let _ = tx.try_send(Msg::Line(i, line));
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", log.display()))
}

/// Run a training stage through [`crate::pipeline::run`] into its `out` directory.
#[cfg(feature = "train")]
fn run_training(
    p: &Project,
    i: usize,
    key: Option<&SecretKey>,
    run: &RunOptions,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<Executed, String> {
    use crate::pipeline::{self, Event as TrainEvent};
    use crate::train::Progress;
    let stage = &p.spec.stages[i];
    let out_rel = &p.graph.nodes[i].outs[0];
    let out = p.graph.path(out_rel);
    let opts = pipeline::RunOptions {
        spec: p.spec.source.clone(),
        stage: Some(stage.name.value.clone()),
        device: run.device,
        out: Some(out.clone()),
        resume: false,
        force: true,
        skip_bad_rows: run.skip_bad_rows,
        terms: run.terms.clone(),
    };
    let say = |line: String| {
        let _ = tx.try_send(Msg::Line(i, line));
    };
    let report = pipeline::run(&opts, key, None, &mut |e| match e {
        TrainEvent::Device { kind, adapter, .. } => say(format!("device: {kind} ({adapter})")),
        TrainEvent::MovedAside(path) => say(format!(
            "the previous run was moved aside to {}",
            path.display()
        )),
        TrainEvent::Notice(m) => say(format!("notice: {m}")),
        TrainEvent::Train(Progress::EpochEnd(r)) => say(format!(
            "epoch {}: train loss {:.4}, val loss {:.4}",
            r.epoch, r.train_loss, r.val_loss
        )),
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    let manifest = manifest_descriptor(out_rel, &report.manifest)?;
    // The scalars only: the run's own summary keeps the confusion matrix and the intervals.
    let metrics = Some(serde_json::Value::Object(
        report
            .summary
            .metrics
            .scalars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
    ));
    Ok(Executed {
        manifest: Some(manifest),
        metrics,
        ..Default::default()
    })
}

#[cfg(not(feature = "train"))]
fn run_training(
    p: &Project,
    i: usize,
    _: Option<&SecretKey>,
    _: &RunOptions,
    _: &mpsc::SyncSender<Msg>,
) -> Result<Executed, String> {
    Err(StageError::NoTraining(p.spec.stages[i].name.value.clone()).to_string())
}
