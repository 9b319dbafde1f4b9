//! `executor: slurm` on a real Slurm 22.05: a two-node cluster on this machine
//! (scripts/slurm-cluster.sh), started and stopped by the test. Independent stages land on both
//! nodes, a foreach sweep runs as jobs, a failing job and one past its time limit fail their
//! stages with Slurm's state, Ctrl-C cancels queued and running jobs, and the outs have the
//! digests the local executor gives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Workspace, payload_of, repo};

/// The cluster; stopped (by PID) when dropped. One at a time: the daemons' ports are fixed.
struct Cluster {
    dir: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    /// `None` (the test says why) when Slurm is not installed or this is not root.
    fn start(ws: &Workspace) -> Option<Cluster> {
        let installed = Command::new("slurmctld").arg("-V").output().is_ok();
        // SAFETY: getuid has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        if !installed || !root {
            eprintln!("skipped: needs root and Slurm (scripts/setup-debian.sh installs it)");
            return None;
        }
        let one = ONE_CLUSTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = ws.path().join("slurm");
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm-cluster.sh"))
            .arg("start")
            .arg(&dir)
            .env("SLURMCTLD_PORT", "26817")
            .env("SLURMD_PORT", "26818")
            .env("NODE1_PORT", "27001")
            .env("NODE2_PORT", "27002")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Cluster { dir, _one: one })
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm-cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn run(ws: &Workspace, c: &Cluster, args: &[&str]) -> crate::support::Output {
    let mut cmd = ws.cmd(args);
    cmd.env("SLURM_CONF", c.conf());
    crate::support::output(cmd)
}

fn records(ws: &Workspace, manifest: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(ws.path().join(manifest)).unwrap();
    let st: Value = serde_json::from_str(&payload_of(&text)).unwrap();
    st["predicate"]["auditaiPipeline"]["stages"]
        .as_array()
        .unwrap()
        .clone()
}

fn lock_outs(ws: &Workspace, lock: &str) -> Vec<(String, String)> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join(lock)).unwrap()).unwrap();
    let mut outs: Vec<(String, String)> = v["stages"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| s["outs"].as_array().unwrap().clone())
        .map(|o| {
            (
                o["path"].as_str().unwrap().into(),
                o["blake3"].as_str().unwrap().into(),
            )
        })
        .collect();
    outs.sort();
    outs
}

#[test]
fn stages_run_as_slurm_jobs_across_both_nodes() {
    let ws = Workspace::new();
    let Some(cluster) = Cluster::start(&ws) else {
        return;
    };
    // One job fills a node, so two at once must use both.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    write(&ws, "params.yaml", "sizes: [1, 2, 3]\n");
    write(
        &ws,
        "p.yaml",
        &format!(
            "version: 1\nname: cl\nexecutor: {{type: slurm, cpus: {cpus}, time: '5:00'}}\nstages:\n  a:\n    cmd: sleep 2 && echo a > a.txt\n    outs: [a.txt]\n  b:\n    cmd: sleep 2 && echo b > b.txt\n    outs: [b.txt]\n  sweep:\n    foreach: ${{sizes}}\n    do:\n      cmd: cat a.txt b.txt > s${{item}}.txt && echo ${{item}} >> s${{item}}.txt\n      deps: [a.txt, b.txt]\n      outs:\n        - s${{item}}.txt\n"
        ),
    );
    ws.run(&["keygen", "--out", "me"]).success();
    let out = run(&ws, &cluster, &["run", "p.yaml", "-q", "--key", "me.key"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = run(
        &ws,
        &cluster,
        &["verify", "runs/cl/manifest.intoto.json", "--key", "me.pub"],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
    let recs = records(&ws, "runs/cl/manifest.intoto.json");
    assert_eq!(recs.len(), 5);
    let mut nodes: Vec<&str> = recs
        .iter()
        .filter(|r| r["name"] == "a" || r["name"] == "b")
        .map(|r| r["executor"]["nodes"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"], "{recs:?}");
    for r in &recs {
        let e = &r["executor"];
        assert_eq!(e["type"], "slurm");
        assert_eq!(e["cluster"], "auditai-test");
        assert_eq!(e["partition"], "debug");
        assert!(e["jobId"].as_str().unwrap().parse::<u64>().is_ok());
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join("s2.txt")).unwrap(),
        "a\nb\n2\n"
    );
    // The same outs, to the byte, from the local executor.
    let slurm = lock_outs(&ws, "auditai.lock");
    let out = run(
        &ws,
        &cluster,
        &[
            "run",
            "p.yaml",
            "-q",
            "--force",
            "--executor",
            "local",
            "--key",
            "me.key",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lock_outs(&ws, "auditai.lock"), slurm);
    assert!(
        records(&ws, "runs/cl/manifest.intoto.json")[0]
            .get("executor")
            .is_none()
    );
}

fn write(ws: &Workspace, rel: &str, text: &str) {
    std::fs::write(ws.path().join(rel), text).unwrap();
}

#[test]
fn failed_timed_out_and_interrupted_jobs() {
    let ws = Workspace::new();
    let Some(cluster) = Cluster::start(&ws) else {
        return;
    };
    std::fs::copy(repo().join("fixtures/iris.csv"), ws.path().join("iris.csv")).unwrap();
    write(
        &ws,
        "p.yaml",
        "version: 1\nname: f\nseed: 3\nexecutor: slurm\nstages:\n  train:\n    data: {path: iris.csv, label: species, task: classification}\n    model: {type: mlp, hidden: [4]}\n    training: {epochs: 2, device: cpu}\n  bad:\n    cmd: echo oops >&2; exit 3\n  slow:\n    cmd: sleep 300\n    executor: {time: '0:01'}\n  envdump:\n    cmd: env > env.txt\n    outs: [env.txt]\n",
    );
    ws.run(&["keygen", "--out", "me"]).success();
    let mut cmd = ws.cmd(&["run", "p.yaml", "-q", "--json"]);
    cmd.env("SLURM_CONF", cluster.conf())
        .env("AUDITAI_SIGNING_KEY_FILE", ws.path().join("me.key"));
    let out = crate::support::output(cmd);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    // No key travels to a job: not in its environment, script or request.
    let env = std::fs::read_to_string(ws.path().join("env.txt")).unwrap();
    assert!(!env.contains("AUDITAI_SIGNING"), "{env}");
    for f in ["job.sh", "request.json"] {
        let t = std::fs::read_to_string(ws.path().join("runs/f/jobs/envdump").join(f)).unwrap();
        assert!(
            !t.contains("AUDITAI_SIGNING") && !t.contains("PRIVATE KEY"),
            "{f}: {t}"
        );
    }
    let j = out.json();
    let stage = |n: &str| {
        j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(stage("train")["status"], "ran");
    let bad = stage("bad")["error"].as_str().unwrap().to_string();
    assert!(bad.starts_with("exited with status 3 (Slurm job "), "{bad}");
    assert!(bad.ends_with(": FAILED)"), "{bad}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("runs/f/logs/bad.stderr.log")).unwrap(),
        "oops\n"
    );
    let slow = stage("slow")["error"].as_str().unwrap().to_string();
    assert!(slow.contains("TIMEOUT"), "{slow}");
    // The training stage's own manifest is signed here, by the controller.
    let v = run(
        &ws,
        &cluster,
        &[
            "verify",
            "models/train/manifest.intoto.json",
            "--key",
            "me.pub",
        ],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);

    // Ctrl-C: running and queued jobs are cancelled (each fills a node: two run, one waits),
    // the run exits 130 and records nothing new.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut q = format!("version: 1\nname: q\nexecutor: {{type: slurm, cpus: {cpus}}}\nstages:\n");
    for n in ["l1", "l2", "l3"] {
        q.push_str(&format!(
            "  {n}:\n    cmd: sleep 300 && echo > {n}.txt\n    outs: [{n}.txt]\n"
        ));
    }
    write(&ws, "q.yaml", &q);
    let mut cmd = ws.cmd(&["run", "q.yaml", "-q", "--jobs", "3"]);
    cmd.env("SLURM_CONF", cluster.conf());
    let child = cmd.spawn().unwrap();
    let id_of = |n: &str| ws.path().join(format!("runs/q/jobs/{n}/job.id"));
    let start = Instant::now();
    while !["l1", "l2", "l3"].iter().all(|n| id_of(n).is_file())
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids: Vec<String> = ["l1", "l2", "l3"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(id_of(n))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let st = run(&ws, &cluster, &["status", "q.yaml", "--json"]);
    let states: Vec<String> = st.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j[2].as_str().unwrap().to_string())
        .collect();
    assert!(states.contains(&"RUNNING".to_string()), "{states:?}");
    assert!(states.contains(&"PENDING".to_string()), "{states:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let left = Command::new("squeue")
        .args(["-h", "-t", "PENDING,RUNNING", "-j", &ids.join(",")])
        .env("SLURM_CONF", cluster.conf())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
    assert!(!Path::new(&ws.path().join("runs/q/manifest.intoto.json")).exists());
}
