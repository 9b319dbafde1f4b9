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
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hash::Hasher;
use crate::manifest::{self, ResourceDescriptor, StageRecord, StageStatus};
use crate::sign::SecretKey;
use crate::spec::{CommandStage, StageKind};

use super::{
    Checker, Event, LOGS, LockedPath, LockedStage, Outcome, Project, RunOptions, StageError, Why,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM so a pipeline run stops its stages and records only what completed.
pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// The most bytes of one output line shown on the terminal (the log keeps everything).
const MAX_SHOWN_LINE: usize = 4096;
/// How long stopped stages get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

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
    let mut state = vec![State::Pending; p.spec.stages.len()];
    let mut checker = Checker::new();
    let (tx, rx) = mpsc::channel::<Msg>();
    let children: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut results: Vec<Done> = Vec::new();
    let total = selection.len();
    let mut running = 0usize;
    let mut announced = false;
    let selected = |i: usize| selection.contains(&i);
    // Why each ready stage must run, decided once (its upstream has settled by then).
    let mut decided: Vec<Option<Vec<Why>>> = vec![None; p.spec.stages.len()];
    let outcome = std::thread::scope(|scope| -> Result<(), StageError> {
        loop {
            if interrupted() {
                break;
            }
            // Start (or reuse, or block) every stage whose upstream is settled.
            let mut progressed = false;
            for &i in selection {
                if state[i] != State::Pending {
                    continue;
                }
                let up = &p.graph.nodes[i].upstream;
                if let Some(&bad) = up.iter().find(|&&u| selected(u) && state[u] == State::Bad) {
                    state[i] = State::Bad;
                    let done = Done {
                        index: i,
                        outcome: Outcome::Blocked {
                            after: p.spec.stages[bad].name.value.clone(),
                        },
                        record: None,
                        locked: None,
                    };
                    finished(p, &done, results.len() + 1, total, on_event);
                    results.push(done);
                    progressed = true;
                    continue;
                }
                if up.iter().any(|&u| selected(u) && state[u] != State::Ok) {
                    continue;
                }
                let why = match decided[i].take() {
                    Some(w) => w,
                    None if opts.force => vec![Why::Forced],
                    None => checker.why(p, i)?,
                };
                if why.is_empty() {
                    state[i] = State::Ok;
                    let done = reused(p, i);
                    finished(p, &done, results.len() + 1, total, on_event);
                    results.push(done);
                    progressed = true;
                    continue;
                }
                if running >= jobs {
                    decided[i] = Some(why);
                    continue;
                }
                if !announced {
                    announced = true;
                    on_event(Event::Notice(&format!(
                        "running with up to {jobs} stage(s) at once; logs in {}",
                        run_dir.join(LOGS).display()
                    )));
                }
                on_event(Event::Started {
                    stage: &p.spec.stages[i].name.value,
                    why: &why,
                });
                state[i] = State::Running;
                running += 1;
                progressed = true;
                let tx = tx.clone();
                let children = Arc::clone(&children);
                let device = opts.device;
                scope.spawn(move || {
                    let done = run_stage(p, i, why, run_dir, key, device, &children, &tx);
                    let _ = tx.send(Msg::Done(Box::new(done)));
                });
            }
            if running == 0 && !progressed {
                break;
            }
            if progressed && running == 0 {
                continue;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Line(i, line)) => on_event(Event::Output {
                    stage: &p.spec.stages[i].name.value,
                    line: &line,
                }),
                Ok(Msg::Done(done)) => {
                    running -= 1;
                    state[done.index] = if matches!(done.outcome, Outcome::Ran { .. }) {
                        State::Ok
                    } else {
                        State::Bad
                    };
                    finished(p, &done, results.len() + 1, total, on_event);
                    results.push(*done);
                }
                Err(_) => {}
            }
        }
        if interrupted() {
            stop_children(&children);
            // Training stages run in this process and cannot be stopped midway; what they wrote
            // has no manifest, so it never looks complete. Command stages are waited for.
            let training_running = selection.iter().any(|&i| {
                state[i] == State::Running && matches!(p.spec.stages[i].kind, StageKind::Train(_))
            });
            while running > 0 && !training_running {
                match rx.recv_timeout(GRACE + Duration::from_secs(1)) {
                    Ok(Msg::Done(done)) => {
                        running -= 1;
                        state[done.index] = State::Bad;
                        let done = Done {
                            outcome: Outcome::Interrupted,
                            record: None,
                            locked: None,
                            ..*done
                        };
                        finished(p, &done, results.len() + 1, total, on_event);
                        results.push(done);
                    }
                    Ok(Msg::Line(..)) => {}
                    Err(_) => break,
                }
            }
            if training_running {
                // A training stage runs in this process and cannot be stopped midway, and the
                // scope would wait for it: leave now. What it wrote has no manifest, so it never
                // looks complete, and nothing of this run is recorded.
                on_event(Event::Notice(
                    "a training stage was running; stopping without recording anything of this run",
                ));
                std::process::exit(130);
            }
        }
        Ok(())
    });
    checker.save();
    outcome?;
    for &i in selection {
        if state[i] == State::Pending || state[i] == State::Running {
            results.push(Done {
                index: i,
                outcome: Outcome::Interrupted,
                record: None,
                locked: None,
            });
        }
    }
    Ok(results)
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
        // SAFETY: kill(2) on a process group we created; no memory is touched.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGTERM);
        }
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
        // SAFETY: as above.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
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
    };
    Done {
        index: i,
        outcome: Outcome::Reused,
        record: Some(record),
        locked: None,
    }
}

/// Run stage `i` and describe the result.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    p: &Project,
    i: usize,
    why: Vec<Why>,
    run_dir: &Path,
    key: Option<&SecretKey>,
    device: Option<crate::spec::DeviceChoice>,
    children: &Mutex<Vec<u32>>,
    tx: &mpsc::Sender<Msg>,
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
    let mut deps = Vec::new();
    for d in &node.deps {
        match super::describe(&hasher, &p.graph.path(d), d) {
            Ok(x) => deps.push(x),
            Err(e) => return fail(e),
        }
    }
    // What each out looked like before: an out whose stat is unchanged afterwards was not
    // written by the stage (comparing with the start time would trip on coarse file clocks).
    let before: Vec<Option<Stamp>> = node.outs.iter().map(|o| stamp(&p.graph.path(o))).collect();
    let started = Instant::now();
    let started_on = manifest::now_rfc3339();
    let mut identity = p.identity(i);
    let (exit_code, logs, env, secret_env, manifest_desc, train_metrics) = match &stage.kind {
        StageKind::Command(c) => match run_command(p, i, c, run_dir, children, tx) {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        StageKind::Train(_) => match run_training(p, i, key, device, tx) {
            Ok((m, metrics)) => (
                None,
                Vec::new(),
                Default::default(),
                Vec::new(),
                Some(m),
                metrics,
            ),
            Err(e) => return fail(e),
        },
    };
    if let Some(code) = exit_code
        && code != 0
    {
        return fail(format!("exited with status {code}"));
    }
    if exit_code.is_none() && matches!(stage.kind, StageKind::Command(_)) {
        return fail("killed by a signal".into());
    }
    if interrupted() {
        return fail("interrupted".into());
    }
    // Every out must exist and have been written by this stage.
    let mut outs = Vec::new();
    for (k, o) in node.outs.iter().enumerate() {
        let path = p.graph.path(o);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return fail(format!("declared out {o} is missing after the stage")),
        };
        if meta.is_file() && before[k].is_some() && before[k] == stamp(&path) {
            return fail(format!(
                "declared out {o} was not written by the stage (it predates it)"
            ));
        }
        match super::describe(&hasher, &path, o) {
            Ok(x) => outs.push(x),
            Err(e) => return fail(e),
        }
    }
    let mut metrics = match read_metrics(p, i) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    if let Some(m) = train_metrics {
        metrics.insert(node.outs[0].clone(), m);
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
    identity.deps = deps.iter().map(locked_path).collect();
    identity.outs = outs.iter().map(locked_path).collect();
    let record = StageRecord {
        name: stage.name.value.clone(),
        kind: identity.kind.clone(),
        status: StageStatus::Ran,
        cmd: identity.cmd.clone(),
        wdir: identity.wdir.clone(),
        params: identity.params.clone(),
        env,
        secret_env,
        config_blake3: identity.config_blake3.clone(),
        exit_code,
        started_on: Some(started_on),
        finished_on: Some(manifest::now_rfc3339()),
        logs,
        deps,
        outs,
        manifest: manifest_desc,
        metrics,
        produced_by: None,
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

type CommandResult = (
    Option<i32>,
    Vec<ResourceDescriptor>,
    std::collections::BTreeMap<String, String>,
    Vec<String>,
    Option<ResourceDescriptor>,
    Option<serde_json::Value>,
);

/// Run a command stage: `sh -c CMD` in its wdir, in a new process group, with only `PATH`, its
/// declared env and auditai's `AUDITAI_STAGE` / `AUDITAI_PARAMS`; stdout and stderr to logs.
fn run_command(
    p: &Project,
    i: usize,
    c: &CommandStage,
    run_dir: &Path,
    children: &Mutex<Vec<u32>>,
    tx: &mpsc::Sender<Msg>,
) -> Result<CommandResult, String> {
    use std::os::unix::process::CommandExt;
    let name = &p.spec.stages[i].name.value;
    let wdir = p.graph.path(&p.wdir(i));
    let mut env = std::collections::BTreeMap::new();
    if let Some(path) = std::env::var_os("PATH") {
        env.insert("PATH".to_string(), path.to_string_lossy().into_owned());
    }
    for n in &c.env {
        if let Ok(v) = std::env::var(n) {
            env.insert(n.clone(), v);
        }
    }
    env.insert("AUDITAI_STAGE".into(), name.clone());
    env.insert(
        "AUDITAI_PARAMS".into(),
        serde_json::to_string(&c.params).unwrap_or_default(),
    );
    let secrets: Vec<(String, String)> = c
        .secret_env
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
        .collect();
    let log_paths = [
        run_dir.join(LOGS).join(format!("{name}.stdout.log")),
        run_dir.join(LOGS).join(format!("{name}.stderr.log")),
    ];
    let partial = |p: &PathBuf| {
        let mut s = p.as_os_str().to_os_string();
        s.push(".partial");
        PathBuf::from(s)
    };
    // Like the rerun's scratch copy: the directories the outs go into exist before the command.
    for o in &p.graph.nodes[i].outs {
        if let Some(parent) = p.graph.path(o).parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&c.cmd)
        .current_dir(&wdir)
        .env_clear()
        .envs(&env)
        .envs(secrets.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start `sh -c` in {}: {e}", wdir.display()))?;
    let pid = child.id();
    if let Ok(mut c) = children.lock() {
        c.push(pid);
    }
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .zip(&log_paths)
    .map(|(stream, log)| {
        let tx = tx.clone();
        let log = partial(log);
        std::thread::spawn(move || pump(stream, &log, i, &tx))
    })
    .collect();
    let status = child.wait();
    let pumped: Vec<Result<(), String>> = pumps
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err("log writer failed".into())))
        .collect();
    if let Ok(mut c) = children.lock() {
        c.retain(|&x| x != pid);
    }
    let status = status.map_err(|e| format!("waiting for the stage: {e}"))?;
    for r in pumped {
        r?;
    }
    let hasher = Hasher::new(None, true);
    let mut logs = Vec::new();
    for log in &log_paths {
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
    let secret_names = secrets.into_iter().map(|(k, _)| k).collect();
    Ok((status.code(), logs, env, secret_names, None, None))
}

/// Copy a child's stream to its log and, line by line, to the display.
fn pump(
    stream: Option<Box<dyn Read + Send>>,
    log: &Path,
    i: usize,
    tx: &mpsc::Sender<Msg>,
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
        let _ = tx.send(Msg::Line(i, line));
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
    device: Option<crate::spec::DeviceChoice>,
    tx: &mpsc::Sender<Msg>,
) -> Result<(ResourceDescriptor, Option<serde_json::Value>), String> {
    use crate::pipeline::{self, Event as TrainEvent};
    use crate::train::Progress;
    let stage = &p.spec.stages[i];
    let out_rel = &p.graph.nodes[i].outs[0];
    let out = p.graph.path(out_rel);
    let opts = pipeline::RunOptions {
        spec: p.spec.source.clone(),
        stage: Some(stage.name.value.clone()),
        device,
        out: Some(out.clone()),
        resume: false,
        force: true,
    };
    let say = |line: String| {
        let _ = tx.send(Msg::Line(i, line));
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
    let hasher = Hasher::new(None, true);
    let d = hasher
        .hash_file(&report.manifest)
        .map_err(|e| e.to_string())?;
    let rel = format!("{out_rel}/{}", crate::run_dir::MANIFEST);
    let metrics = serde_json::to_value(&report.summary.metrics).ok();
    Ok((ResourceDescriptor::file(&rel, None, &d), metrics))
}

#[cfg(not(feature = "train"))]
fn run_training(
    p: &Project,
    i: usize,
    _: Option<&SecretKey>,
    _: Option<crate::spec::DeviceChoice>,
    _: &mpsc::Sender<Msg>,
) -> Result<(ResourceDescriptor, Option<serde_json::Value>), String> {
    Err(StageError::NoTraining(p.spec.stages[i].name.value.clone()).to_string())
}
