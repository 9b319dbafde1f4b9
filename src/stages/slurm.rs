//! Running a stage as a Slurm job (`executor: slurm`). The controller (`auditai run`) keeps the
//! graph, the decisions and the lock; for a ready stage it writes a job request and a job script
//! into the run directory's `jobs/<stage>/` (on the file system the cluster shares), submits it
//! with `sbatch --parsable`, and polls `squeue` and the job's result file. Inside the allocation
//! `auditai stage-job REQUEST` runs the stage (its command, or the training), writes the logs and
//! a result file with the job's facts from Slurm's environment, and exits with the stage's code.
//! The controller hashes the outs and signs: no key travels to a job, and the job's environment
//! is only what the stage may see (`sbatch --export` names the secret and ambient variables; the
//! recorded ones are in the request).
//!
//! Owns the request and result formats, the job script, submission, polling and `scancel`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::manifest::JobFacts;
use crate::spec::{DeviceChoice, Executor};

const REQUEST_SCHEMA: &str = "auditai.stage-job/v1";
const RESULT_SCHEMA: &str = "auditai.stage-job-result/v1";
/// Largest request or result file read.
const MAX_DOC: u64 = 1 << 20;
/// How often the controller looks at a job.
const POLL: Duration = Duration::from_millis(300);
/// How long a job that left the queue may take to show its result file (shared file systems
/// are not instant).
const RESULT_GRACE: Duration = Duration::from_secs(10);

/// What a job runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobRequest {
    schema: String,
    /// The stage.
    pub stage: String,
    /// The command stage's command line (absent for a training stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Its working directory (absolute).
    pub wdir: PathBuf,
    /// The recorded environment (PATH, declared `env`, `AUDITAI_*`).
    pub env: BTreeMap<String, String>,
    /// Variables the job takes from its own environment (secrets and the ambient ones, which
    /// `sbatch --export` passes by name): values never written anywhere.
    pub pass: Vec<String>,
    /// Stop the command after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Where stdout and stderr go (the pipeline's log files, written as `.partial`).
    pub logs: [PathBuf; 2],
    /// Where the result goes.
    pub result: PathBuf,
    /// A training stage: the spec, the stage's run directory and the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainJob>,
}

/// A training stage's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrainJob {
    /// The pipeline spec.
    pub spec: PathBuf,
    /// The stage's run directory.
    pub out: PathBuf,
    /// `run --device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceChoice>,
    /// `run --skip-bad-rows`.
    pub skip_bad_rows: bool,
    /// `run --jurisdiction` and the policy's demands on data sources.
    #[serde(default)]
    pub terms: crate::contribution::RunTerms,
}

/// What a job reports back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobResult {
    schema: String,
    /// The command's exit code (0 for a training stage that completed).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the stage failed inside the job, when it did not simply exit non-zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where and when it ran.
    pub job: JobFacts,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes =
        crate::fsio::read_bounded(path, MAX_DOC).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl JobRequest {
    /// A request for stage `stage` (the caller fills what its kind needs).
    pub fn new(stage: &str, wdir: PathBuf, logs: [PathBuf; 2], result: PathBuf) -> JobRequest {
        JobRequest {
            schema: REQUEST_SCHEMA.into(),
            stage: stage.into(),
            cmd: None,
            wdir,
            env: BTreeMap::new(),
            pass: Vec::new(),
            timeout_secs: None,
            logs,
            result,
            train: None,
        }
    }
}

/// Inside the allocation: run the request at `path`, write its result, return the exit code.
pub fn run_job(path: &Path) -> Result<i32, String> {
    let req: JobRequest = read_json(path)?;
    if req.schema != REQUEST_SCHEMA {
        return Err(format!(
            "{}: not a {REQUEST_SCHEMA} request",
            path.display()
        ));
    }
    let started_on = crate::manifest::now_rfc3339();
    let (exit_code, error) = match (&req.cmd, &req.train) {
        (Some(cmd), None) => run_command_job(&req, cmd),
        (None, Some(t)) => run_training_job(&req, t),
        _ => (
            None,
            Some("the request names neither a command nor a training".into()),
        ),
    };
    let env = |n: &str| std::env::var(n).unwrap_or_default();
    let result = JobResult {
        schema: RESULT_SCHEMA.into(),
        exit_code,
        error,
        job: JobFacts {
            kind: "slurm".into(),
            job_id: env("SLURM_JOB_ID"),
            cluster: env("SLURM_CLUSTER_NAME"),
            partition: env("SLURM_JOB_PARTITION"),
            nodes: env("SLURM_JOB_NODELIST"),
            cpus: env("SLURM_CPUS_ON_NODE"),
            mem: env("SLURM_MEM_PER_NODE"),
            gpus: env("SLURM_GPUS_ON_NODE"),
            started_on,
            finished_on: crate::manifest::now_rfc3339(),
        },
    };
    let bytes = serde_json::to_vec_pretty(&result).unwrap_or_default();
    crate::fsio::write_atomic(&req.result, &bytes)
        .map_err(|e| format!("{}: {e}", req.result.display()))?;
    Ok(exit_code.unwrap_or(1))
}

fn run_command_job(req: &JobRequest, cmd: &str) -> (Option<i32>, Option<String>) {
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let (out, err) = match (open(&req.logs[0]), open(&req.logs[1])) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(m), _) | (_, Err(m)) => return (None, Some(m)),
    };
    let mut env = req.env.clone();
    for n in &req.pass {
        if let Ok(v) = std::env::var(n) {
            env.insert(n.clone(), v);
        }
    }
    use std::os::unix::process::CommandExt;
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(&req.wdir)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (None, Some(format!("cannot start `sh -c`: {e}"))),
    };
    let timeout = req.timeout_secs.map(Duration::from_secs);
    match super::child::wait(&mut child, timeout, &crate::cancel::requested) {
        Ok(super::child::Exit::TimedOut(d)) => (
            None,
            Some(format!(
                "stopped after its timeout of {}",
                humantime::format_duration(d)
            )),
        ),
        Ok(exit) => (exit.code(), None),
        Err(e) => (None, Some(format!("waiting for the command: {e}"))),
    }
}

#[cfg(feature = "train")]
fn run_training_job(req: &JobRequest, t: &TrainJob) -> (Option<i32>, Option<String>) {
    let opts = crate::pipeline::RunOptions {
        spec: t.spec.clone(),
        device: t.device,
        out: Some(t.out.clone()),
        resume: false,
        force: true,
        stage: Some(req.stage.clone()),
        skip_bad_rows: t.skip_bad_rows,
        terms: t.terms.clone(),
    };
    use std::io::Write;
    let log = std::fs::File::create(&req.logs[1]).ok();
    let mut log = std::io::BufWriter::new(log.map_or_else(
        || Box::new(std::io::sink()) as Box<dyn std::io::Write>,
        |f| Box::new(f),
    ));
    let _ = std::fs::File::create(&req.logs[0]);
    let result = crate::pipeline::run(&opts, None, None, &mut |e| {
        if let crate::pipeline::Event::Notice(m) = e {
            let _ = writeln!(log, "notice: {m}");
        }
    });
    let _ = log.flush();
    match result {
        Ok(_) => (Some(0), None),
        Err(e) => (Some(1), Some(e.to_string())),
    }
}

#[cfg(not(feature = "train"))]
fn run_training_job(_: &JobRequest, _: &TrainJob) -> (Option<i32>, Option<String>) {
    (
        None,
        Some("this auditai was built without the `train` feature".into()),
    )
}

/// A job's end as the controller sees it.
pub(super) enum JobEnd {
    /// The job wrote its result.
    Done(Box<JobResult>),
    /// It ended without one: Slurm's state (FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL,
    /// CANCELLED, …) and the tail of its output file.
    Lost { state: String, tail: String },
    /// The run was interrupted: the job was cancelled.
    Interrupted,
}

/// The job script: resources as `#SBATCH` lines, then `auditai stage-job REQUEST`.
fn script(
    exe: &Path,
    request: &Path,
    dir: &Path,
    name: &str,
    ex: &Executor,
    pass: &[String],
) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "#SBATCH --job-name={}\n",
        shell_safe(&format!("auditai-{name}"))
    ));
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        dir.join("slurm-%j.out").display()
    ));
    // The controller's directory: a training stage resolves its spec and data as it would here.
    let cwd = std::env::current_dir().unwrap_or_else(|_| dir.to_path_buf());
    s.push_str(&format!("#SBATCH --chdir={}\n", cwd.display()));
    let export = if pass.is_empty() {
        "NONE".to_string()
    } else {
        pass.join(",")
    };
    s.push_str(&format!("#SBATCH --export={export}\n"));
    for a in ex.sbatch_args() {
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str(&format!("exec {} stage-job {}\n", q(exe), q(request)));
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn shell_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

/// Submit `req` as a job in `dir` (under the run directory) with `ex`'s resources; returns the
/// job id. The id is also written to `dir/job.id` for `auditai status`.
pub(super) fn submit(req: &JobRequest, dir: &Path, ex: &Executor) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let request = dir.join("request.json");
    let bytes = serde_json::to_vec_pretty(req).unwrap_or_default();
    crate::fsio::write_atomic(&request, &bytes).map_err(io(&request))?;
    let _ = std::fs::remove_file(&req.result);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find auditai itself: {e}"))?;
    let job = dir.join("job.sh");
    let text = script(&exe, &request, dir, &req.stage, ex, &req.pass);
    crate::fsio::write_atomic(&job, text.as_bytes()).map_err(io(&job))?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&job)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sbatch (is Slurm's client installed?): {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("sbatch refused the job: {}", err.trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(format!("sbatch answered `{}`, not a job id", text.trim()));
    }
    let id_file = dir.join("job.id");
    crate::fsio::write_atomic(&id_file, format!("{id}\n").as_bytes()).map_err(io(&id_file))?;
    Ok(id)
}

/// Slurm's state of job `id` (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …): from `squeue`
/// while the controller remembers the job, else from `sacct` where accounting exists; `None`
/// when neither knows it.
pub fn state(id: &str) -> Option<String> {
    let ask = |prog: &str, args: &[&str]| {
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout);
        // sacct may say `CANCELLED by 0`: the state is the first word.
        let first = s.split_whitespace().next()?.to_string();
        Some(first)
    };
    ask("squeue", &["-h", "-t", "all", "-o", "%T", "-j", id])
        .or_else(|| ask("sacct", &["-n", "-X", "-P", "-o", "State", "-j", id]))
}

/// The state job `id` ends in, waiting up to [`RESULT_GRACE`] for Slurm to settle it.
pub(super) fn final_state(id: &str) -> String {
    let start = Instant::now();
    loop {
        let s = state(id);
        let settled = s
            .as_deref()
            .is_none_or(|s| !ACTIVE.contains(&s) && s != "COMPLETING");
        if settled || start.elapsed() > RESULT_GRACE {
            return s.unwrap_or_else(|| "no longer in the queue".into());
        }
        std::thread::sleep(POLL);
    }
}

/// States of a job that has not ended.
const ACTIVE: [&str; 6] = [
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "REQUEUED",
    "RESIZING",
    "SUSPENDED",
];

/// `scancel` job `id` (best effort).
pub fn cancel(id: &str) {
    let _ = Command::new("scancel")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait for job `id` to write `result` or leave the queue; cancel it when interrupted.
pub(super) fn wait(id: &str, result: &Path, dir: &Path) -> JobEnd {
    let mut gone_since: Option<Instant> = None;
    loop {
        if crate::cancel::requested() {
            cancel(id);
            return JobEnd::Interrupted;
        }
        if result.is_file()
            && let Ok(r) = read_json::<JobResult>(result)
        {
            return JobEnd::Done(Box::new(r));
        }
        let state = state(id);
        let ended = state
            .as_deref()
            .is_none_or(|s| !ACTIVE.contains(&s) && s != "COMPLETING");
        if ended {
            let since = *gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > RESULT_GRACE && !result.is_file() {
                let tail = std::fs::read(dir.join(format!("slurm-{id}.out")))
                    .map(|b| {
                        String::from_utf8_lossy(&b[b.len().saturating_sub(1024)..]).into_owned()
                    })
                    .unwrap_or_default();
                return JobEnd::Lost {
                    state: state.unwrap_or_else(|| "UNKNOWN (left the queue)".into()),
                    tail,
                };
            }
        }
        std::thread::sleep(POLL);
    }
}

/// The jobs of a run directory's stages that Slurm still has queued or running: stage, job id,
/// state and nodes (for `auditai status`).
pub fn active_jobs(run_dir: &Path) -> Vec<(String, String, String)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(super::JOBS)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten().take(4096) {
        let stage = e.file_name().to_string_lossy().into_owned();
        let Ok(id) = crate::fsio::read_bounded(&e.path().join("job.id"), 64) else {
            continue;
        };
        let id = String::from_utf8_lossy(&id).trim().to_string();
        if e.path().join("result.json").is_file() {
            continue;
        }
        if let Some(s) = state(&id).filter(|s| ACTIVE.contains(&s.as_str())) {
            out.push((stage, id, s));
        }
    }
    out.sort();
    out
}
