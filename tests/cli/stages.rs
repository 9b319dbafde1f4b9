//! Multi-stage pipelines: graph errors, skip and re-run decisions, parallel stages, failing and
//! interrupted stages, lock tampering, `audit --rerun`, and verify / anchor of a pipeline
//! manifest.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chain::{Anvil, DEV_KEY};
use crate::support::{Output, Workspace, check, output, payload_of, repo};

/// Three stages: `double` (python, reads a param), then `left` (metrics) and `right`, which
/// are independent.
const PIPELINE: &str = r#"version: 1
name: demo
params:
  scale:
    factor: 3
stages:
  double:
    cmd: python3 double.py data/raw.csv build/doubled.csv
    deps: [double.py, data/raw.csv]
    outs: [build/doubled.csv]
    params: [scale.factor]
  left:
    cmd: "wc -l < build/doubled.csv > build/left.txt && echo '{\"rows\": 3}' > build/m.json"
    deps: [build/doubled.csv]
    outs: [build/left.txt]
    metrics: [build/m.json]
  right:
    cmd: sort build/doubled.csv > build/right.txt
    deps: [build/doubled.csv]
    outs: [build/right.txt]
"#;

const DOUBLE: &str = r#"import csv, json, os, sys
k = json.loads(os.environ["AUDITAI_PARAMS"])["scale.factor"]
rows = list(csv.reader(open(sys.argv[1])))
with open(sys.argv[2], "w") as f:
    f.write(",".join(rows[0]) + "\n")
    for r in rows[1:]:
        f.write(",".join(str(int(x) * k) for x in r) + "\n")
print("doubled", len(rows) - 1)
"#;

fn demo() -> Workspace {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    std::fs::write(ws.path().join("data/raw.csv"), "a,b\n1,2\n3,4\n").unwrap();
    std::fs::write(ws.path().join("double.py"), DOUBLE).unwrap();
    std::fs::write(ws.path().join("pipeline.yaml"), PIPELINE).unwrap();
    ws
}

fn run_json(ws: &Workspace, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["run", "pipeline.yaml", "--json", "-q"];
    args.extend_from_slice(extra);
    let out = ws.run(&args);
    assert_eq!(out.stderr, "", "stdout:\n{}", out.stdout);
    (out.code, out.json())
}

/// `status` per stage from a `run --json` report.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of(report: &Value, stage: &str) -> String {
    statuses(report)
        .into_iter()
        .find(|(s, _)| s == stage)
        .map(|(_, st)| st)
        .unwrap_or_else(|| panic!("no stage {stage} in {report}"))
}

/// The reasons `status --json` gives for one stage.
fn reasons(ws: &Workspace, stage: &str) -> Vec<Value> {
    let out = ws.run(&["status", "pipeline.yaml", "--json"]);
    let v = out.json();
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap()["why"]
        .as_array()
        .unwrap()
        .clone()
}

fn write(ws: &Workspace, rel: &str, text: &str) {
    std::fs::write(ws.path().join(rel), text).unwrap();
}

fn graph_error(body: &str) -> Output {
    let ws = Workspace::new();
    std::fs::write(ws.path().join("in.txt"), "x").unwrap();
    write(
        &ws,
        "pipeline.yaml",
        &format!("version: 1\nname: g\nstages:\n{body}"),
    );
    let out = ws.run(&["run", "pipeline.yaml", "-q"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stdout, "");
    // Refused before anything ran: no lock, no run directory.
    assert!(!ws.path().join("auditai.lock").exists());
    assert!(!ws.path().join("runs").exists());
    out
}

#[test]
fn graph_errors_are_refused_before_anything_runs_naming_line_and_column() {
    let cycle = graph_error(
        "  a:\n    cmd: cp b.txt a.txt\n    deps: [b.txt]\n    outs: [a.txt]\n  b:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n",
    );
    assert_eq!(
        cycle.stderr,
        "error: pipeline.yaml:4:3: the stages form a cycle: a -> b -> a\n"
    );
    let twice = graph_error(
        "  a:\n    cmd: touch o\n    outs: [o]\n  b:\n    cmd: touch o\n    outs: [o]\n",
    );
    assert_eq!(
        twice.stderr,
        "error: pipeline.yaml:9:12: stages `a` and `b` both write `o`\n"
    );
    let outside = graph_error("  a:\n    cmd: touch ../x\n    outs: [../x]\n");
    assert!(
        outside.stderr.starts_with(
            "error: pipeline.yaml:6:12: out `../x` of stage `a` lies outside the project "
        ),
        "{}",
        outside.stderr
    );
    let wdir = graph_error("  a:\n    cmd: touch x\n    wdir: ..\n    outs: [x]\n");
    assert!(
        wdir.stderr.starts_with(
            "error: pipeline.yaml:4:3: wdir `..` of stage `a` lies outside the project "
        ),
        "{}",
        wdir.stderr
    );
    let missing = graph_error("  a:\n    cmd: cat nope.txt\n    deps: [nope.txt]\n    outs: [o]\n");
    assert_eq!(
        missing.stderr,
        "error: pipeline.yaml:6:12: dep `nope.txt` of stage `a` does not exist and no stage produces it\n"
    );
    let both = graph_error(
        "  a:\n    cmd: x\n    data: {path: in.txt, label: y, task: regression}\n    model: {type: mlp}\n",
    );
    assert!(
        both.stderr
            .contains("pipeline.yaml:5:10: stage `a` has both `cmd` and training sections"),
        "{}",
        both.stderr
    );
}

#[test]
fn runs_in_order_then_reuses_everything_when_nothing_changed() {
    let ws = demo();
    let (code, first) = run_json(&ws, &[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["schema"], "auditai.pipeline-report/v1");
    assert_eq!(status_of(&first, "double"), "ran");
    assert_eq!(statuses(&first)[0].0, "double");
    assert_eq!(first["stages"][1]["status"], "ran");
    let left = first["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "left")
        .unwrap();
    assert_eq!(left["metrics"]["build/m.json"]["rows"], 3);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("build/doubled.csv")).unwrap(),
        "a,b\n3,6\n9,12\n"
    );
    let log = std::fs::read_to_string(ws.path().join("runs/demo/logs/double.stdout.log")).unwrap();
    assert_eq!(log, "doubled 2\n");
    let manifest = ws.path().join("runs/demo/manifest.intoto.json");
    let before = std::fs::read(&manifest).unwrap();

    let (code, again) = run_json(&ws, &[]);
    assert_eq!(code, 0);
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "reused"),
        "{again}"
    );
    assert_eq!(again["unchanged"], true);
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "an unchanged run rewrote the manifest"
    );

    let status = ws.run(&["status", "pipeline.yaml"]).success();
    assert!(
        status.stdout.ends_with("pipeline demo: up to date\n"),
        "{}",
        status.stdout
    );
}

#[test]
fn each_kind_of_change_reruns_exactly_the_stages_it_affects() {
    let ws = demo();
    assert_eq!(run_json(&ws, &[]).0, 0);

    // A dep changed: its stage and, because its out changes, the stages after it.
    write(&ws, "data/raw.csv", "a,b\n1,2\n3,4\n5,6\n");
    let why = reasons(&ws, "double");
    assert_eq!(
        why,
        vec![serde_json::json!({"reason": "dep-changed", "path": "data/raw.csv"})]
    );
    assert_eq!(
        reasons(&ws, "left"),
        vec![serde_json::json!({"reason": "upstream", "stage": "double"})]
    );
    let status = ws.run(&["status", "pipeline.yaml"]);
    assert_eq!(status.code, 1);
    assert!(
        status.stdout.contains("dep data/raw.csv changed"),
        "{}",
        status.stdout
    );
    let (_, r) = run_json(&ws, &[]);
    assert_eq!(
        statuses(&r).into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
        ["ran", "ran", "ran"]
    );

    // A change that leaves the out identical re-runs the stage and reuses the ones after it.
    let script = std::fs::read_to_string(ws.path().join("double.py")).unwrap();
    write(&ws, "double.py", &format!("# a comment\n{script}"));
    let (_, r) = run_json(&ws, &[]);
    assert_eq!(status_of(&r, "double"), "ran");
    assert_eq!(status_of(&r, "left"), "reused");
    assert_eq!(status_of(&r, "right"), "reused");

    // Params, command, a missing out, a modified out.
    let spec = PIPELINE.replace("factor: 3", "factor: 4");
    write(&ws, "pipeline.yaml", &spec);
    assert_eq!(
        reasons(&ws, "double"),
        vec![serde_json::json!({"reason": "params-changed", "params": ["scale.factor"]})]
    );
    write(
        &ws,
        "pipeline.yaml",
        &PIPELINE.replace("sort build", "sort -r build"),
    );
    assert_eq!(
        reasons(&ws, "right"),
        vec![serde_json::json!({"reason": "command-changed"})]
    );
    write(&ws, "pipeline.yaml", PIPELINE);
    std::fs::remove_file(ws.path().join("build/right.txt")).unwrap();
    assert_eq!(
        reasons(&ws, "right"),
        vec![serde_json::json!({"reason": "out-missing", "path": "build/right.txt"})]
    );
    write(&ws, "build/left.txt", "edited by hand\n");
    assert_eq!(
        reasons(&ws, "left"),
        vec![serde_json::json!({"reason": "out-modified", "path": "build/left.txt"})]
    );
    let (_, r) = run_json(&ws, &[]); // both outs come back from the run cache
    assert_eq!(status_of(&r, "double"), "reused");
    assert_eq!(status_of(&r, "left"), "restored");
    assert_eq!(status_of(&r, "right"), "restored");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("build/right.txt")).unwrap(),
        "15,18\n3,6\n9,12\na,b\n"
    );
    ws.run(&["status", "pipeline.yaml"]).success();

    // --force, --dry-run, --stage with and without its upstream.
    let (_, r) = run_json(&ws, &["--force"]);
    assert!(statuses(&r).iter().all(|(_, s)| s == "ran"), "{r}");
    write(&ws, "data/raw.csv", "a,b\n7,8\n");
    let dry = ws.run(&["run", "pipeline.yaml", "--dry-run"]).success();
    assert!(dry.stdout.contains("would run"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .ends_with("dry run: nothing was run or written\n")
    );
    assert_eq!(
        reasons(&ws, "double").len(),
        1,
        "the dry run recorded something"
    );
    // `right` alone is up to date (its dep has not changed yet): reused, nothing upstream ran.
    let (_, r) = run_json(&ws, &["--stage", "right", "--no-upstream"]);
    assert_eq!(statuses(&r), [("right".to_string(), "reused".to_string())]);
    assert_eq!(
        r["manifest"],
        Value::Null,
        "a partial run wrote the run's manifest"
    );
    let (_, r) = run_json(&ws, &["--stage", "right"]);
    assert_eq!(status_of(&r, "double"), "ran");
    assert_eq!(status_of(&r, "right"), "ran");
    assert_eq!(statuses(&r).len(), 2);
}

#[test]
fn independent_stages_run_at_the_same_time() {
    // Each stage waits (up to 10 s) until the other has started: both finish only if they
    // overlap. With --jobs 1 they cannot, and the first one gives up.
    let wait = |me: &str, other: &str| {
        format!(
            "touch {me}.started; i=0; while [ ! -e {other}.started ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -e {other}.started ] && touch {me}.done"
        )
    };
    let spec = format!(
        "version: 1\nname: par\nstages:\n  a:\n    cmd: \"{}\"\n    outs: [a.done]\n  b:\n    cmd: \"{}\"\n    outs: [b.done]\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let ws = Workspace::new();
    write(&ws, "pipeline.yaml", &spec);
    let (code, r) = run_json(&ws, &["--jobs", "2"]);
    assert_eq!(code, 0, "{r}");
    assert!(statuses(&r).iter().all(|(_, s)| s == "ran"));

    let ws = Workspace::new();
    write(&ws, "pipeline.yaml", &spec.replace("-lt 100", "-lt 5"));
    let (code, r) = run_json(&ws, &["--jobs", "1"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(status_of(&r, "a"), "failed");
}

#[test]
fn a_failing_stage_stops_its_dependents_and_records_only_what_completed() {
    let ws = demo();
    let spec = PIPELINE.replace(
        "sort build/doubled.csv > build/right.txt",
        "echo broken >&2; exit 3",
    ) + "  after:\n    cmd: cp build/right.txt build/after.txt\n    deps: [build/right.txt]\n    outs: [build/after.txt]\n";
    write(&ws, "pipeline.yaml", &spec);
    let (code, r) = run_json(&ws, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(status_of(&r, "right"), "failed");
    assert_eq!(
        r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == "right")
            .unwrap()["error"],
        "exited with status 3"
    );
    assert_eq!(status_of(&r, "after"), "blocked");
    assert_eq!(
        status_of(&r, "left"),
        "ran",
        "a sibling was not left to finish"
    );
    assert_eq!(r["manifest"], Value::Null);
    assert!(!ws.path().join("runs/demo/manifest.intoto.json").exists());
    let lock: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("auditai.lock")).unwrap()).unwrap();
    let locked: Vec<&String> = lock["stages"].as_object().unwrap().keys().collect();
    assert_eq!(locked, ["double", "left"]);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("runs/demo/logs/right.stderr.log")).unwrap(),
        "broken\n"
    );
    // The completed stages are reused next time.
    write(
        &ws,
        "pipeline.yaml",
        &spec.replace(
            "echo broken >&2; exit 3",
            "sort build/doubled.csv > build/right.txt",
        ),
    );
    let (code, r) = run_json(&ws, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(status_of(&r, "double"), "reused");
    assert_eq!(status_of(&r, "right"), "ran");

    // A declared out the command did not write fails the stage.
    let ws = Workspace::new();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: m\nstages:\n  a:\n    cmd: \"true\"\n    outs: [never.txt]\n",
    );
    let (code, r) = run_json(&ws, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        r["stages"][0]["error"],
        "declared out never.txt is missing after the stage"
    );
}

#[test]
fn ctrl_c_stops_the_stages_process_group_and_records_nothing_false() {
    let ws = Workspace::new();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: slow\nstages:\n  fast:\n    cmd: echo ok > fast.txt\n    outs: [fast.txt]\n  slow:\n    cmd: \"sleep 60 & echo $! > sleeper.pid; wait\"\n    deps: [fast.txt]\n    outs: [slow.txt]\n",
    );
    let child = ws
        .cmd(&["run", "pipeline.yaml", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = ws.path().join("sleeper.pid");
    let start = Instant::now();
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slow stage never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // The stage's own child was in its process group: it is gone too.
    let alive = Path::new(&format!("/proc/{sleeper}")).exists()
        && !std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the stage's sleep survived Ctrl-C");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("auditai.lock")).unwrap()).unwrap();
    let locked: Vec<&String> = lock["stages"].as_object().unwrap().keys().collect();
    assert_eq!(locked, ["fast"]);
    assert!(!ws.path().join("runs/slow/manifest.intoto.json").exists());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let _ = report;
}

#[test]
fn a_tampered_lock_is_not_trusted() {
    let ws = demo();
    assert_eq!(run_json(&ws, &[]).0, 0);
    // Forge an out and make the lock agree with it: the manifest the lock names disagrees.
    write(&ws, "build/right.txt", "forged\n");
    let lock_path = ws.path().join("auditai.lock");
    let mut lock: Value = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    lock["stages"]["right"]["outs"][0]["blake3"] =
        Value::String(blake3::hash(b"forged\n").to_hex().to_string());
    std::fs::write(&lock_path, serde_json::to_vec_pretty(&lock).unwrap()).unwrap();
    let why = reasons(&ws, "right");
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(why[0]["reason"], "lock-not-backed");
    assert!(
        why[0]["detail"]
            .as_str()
            .unwrap()
            .contains("records other dep or out digests for right"),
        "{why:?}"
    );
    // The forged out is replaced by the one the backed run made (from the run cache).
    let (_, r) = run_json(&ws, &[]);
    assert_eq!(status_of(&r, "right"), "restored");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("build/right.txt")).unwrap(),
        "3,6\n9,12\na,b\n"
    );

    // The manifest a lock entry names, removed: nothing backs the entry.
    for e in std::fs::read_dir(ws.path().join("runs/demo/history")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let why = reasons(&ws, "double");
    assert_eq!(why[0]["reason"], "lock-not-backed");

    // A lock that is not JSON is an error naming the file and position.
    write(
        &ws,
        "auditai.lock",
        "{\"schema\": \"auditai.lock/v1\",\n  \"stages\": [}",
    );
    let out = ws.run(&["status", "pipeline.yaml"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: ./auditai.lock:2:12: not an auditai lock file: invalid type: sequence, expected a map\n"
    );
}

#[test]
fn stages_see_only_their_declared_environment_and_secrets_stay_out_of_records() {
    let ws = Workspace::new();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: env\nstages:\n  e:\n    cmd: env | sort > env.txt\n    outs: [env.txt]\n    env: [VISIBLE]\n    secret_env: [TOKEN]\n",
    );
    let mut cmd = ws.cmd(&["run", "pipeline.yaml", "-q", "--json"]);
    cmd.env("VISIBLE", "yes")
        .env("TOKEN", "s3cr3t-value")
        .env("HIDDEN", "no")
        .env("AUDITAI_SIGNING_KEY", "not-a-key");
    let out = output(cmd);
    assert_eq!(out.code, 2, "{out:?}");
    // The signing key variable is checked before anything runs; without it the run proceeds.
    let mut cmd = ws.cmd(&["run", "pipeline.yaml", "-q", "--json"]);
    cmd.env("VISIBLE", "yes")
        .env("TOKEN", "s3cr3t-value")
        .env("HIDDEN", "no")
        .env("HOME", "/home/h0me-value")
        .env("LANG", "C.UTF-8")
        .env_remove("USER")
        .env_remove("TMPDIR");
    let out = output(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    let env = std::fs::read_to_string(ws.path().join("env.txt")).unwrap();
    let names: Vec<&str> = env
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .filter(|n| *n != "PWD" && *n != "SHLVL" && *n != "_")
        .collect();
    assert_eq!(
        names,
        [
            "AUDITAI_PARAMS",
            "AUDITAI_STAGE",
            "HOME",
            "LANG",
            "PATH",
            "TOKEN",
            "VISIBLE"
        ]
    );
    for f in ["auditai.lock", "runs/env/manifest.intoto.json"] {
        let text = std::fs::read_to_string(ws.path().join(f)).unwrap();
        assert!(!text.contains("s3cr3t"), "{f} holds the secret");
        assert!(!text.contains("h0me-value"), "{f} records HOME's value");
    }
    let manifest = std::fs::read(ws.path().join("runs/env/manifest.intoto.json")).unwrap();
    let payload = payload_of(std::str::from_utf8(&manifest).unwrap());
    assert!(!payload.contains("s3cr3t") && !payload.contains("h0me-value"));
    let st: Value = serde_json::from_str(&payload).unwrap();
    let rec = &st["predicate"]["auditaiPipeline"]["stages"][0];
    assert_eq!(rec["env"]["VISIBLE"], "yes");
    assert_eq!(rec["secretEnv"], serde_json::json!(["TOKEN"]));
    // HOME, USER, LANG and TMPDIR reach every stage by default, recorded by name only.
    assert_eq!(rec["ambientEnv"], serde_json::json!(["HOME", "LANG"]));
    assert!(rec["env"].get("HIDDEN").is_none());
}

#[test]
fn rerun_reproduces_a_deterministic_stage_and_reports_a_nondeterministic_one() {
    let ws = demo();
    let spec = PIPELINE.to_string()
        + "  stamp:\n    cmd: \"cat build/doubled.csv > build/stamp.txt; date +%s%N >> build/stamp.txt\"\n    deps: [build/doubled.csv]\n    outs: [build/stamp.txt]\n";
    write(&ws, "pipeline.yaml", &spec);
    assert_eq!(run_json(&ws, &[]).0, 0);
    // Rerunning executes the recorded command: only with a trusted signer named, or by choice.
    let out = ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "double",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("name whom you trust to have signed it with --key or --policy"),
        "{}",
        out.stderr
    );
    ws.run(&["keygen", "--out", "me"]).success();
    let out = ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "double",
        "--key",
        "me.pub",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the manifest is unsigned"),
        "{}",
        out.stderr
    );
    let out = ws
        .run(&[
            "audit",
            "runs/demo/manifest.intoto.json",
            "--rerun",
            "double",
            "--trust-recorded-command",
        ])
        .success();
    assert!(
        out.stdout
            .ends_with("stage double: reproduced (exit status 0; every out bitwise identical)\n"),
        "{}",
        out.stdout
    );
    let out = ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "stamp",
        "--json",
        "--trust-recorded-command",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let v = out.json();
    assert_eq!(v["verdict"], "differs");
    assert_eq!(v["outs"][0]["path"], "build/stamp.txt");
    assert_eq!(v["outs"][0]["same"], false);
    // The project's files were not touched by the rerun.
    assert_eq!(
        std::fs::read_to_string(ws.path().join("build/doubled.csv")).unwrap(),
        "a,b\n3,6\n9,12\n"
    );
    // A reused stage is rerun from the manifest that recorded it running.
    write(
        &ws,
        "pipeline.yaml",
        &spec.replace("date +%s%N", "date +%N"),
    );
    let (_, r) = run_json(&ws, &[]);
    assert_eq!(status_of(&r, "double"), "reused");
    ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "double",
        "--trust-recorded-command",
    ])
    .success();
    // A dep that changed since the run cannot be reassembled: exit 2, naming it.
    write(&ws, "data/raw.csv", "a,b\n0,0\n");
    let out = ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "double",
        "--trust-recorded-command",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: cannot rerun on the recorded inputs: dep data/raw.csv changed since the run"
        ),
        "{}",
        out.stderr
    );
    let out = ws.run(&[
        "audit",
        "runs/demo/manifest.intoto.json",
        "--rerun",
        "nope",
        "--trust-recorded-command",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("the manifest records no stage `nope`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_signed_pipeline_manifest_verifies_and_tampering_is_named_per_stage() {
    let ws = demo();
    ws.run(&["keygen", "--out", "me"]).success();
    assert_eq!(run_json(&ws, &["--key", "me.key"]).0, 0);
    let m = "runs/demo/manifest.intoto.json";
    let out = ws.run(&["verify", m, "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = out.json();
    assert_eq!(check(&v, "pipeline")["status"], "pass");
    assert_eq!(check(&v, "stage double")["status"], "pass");
    assert_eq!(check(&v, "subject build/right.txt")["status"], "pass");

    write(&ws, "build/doubled.csv", "tampered\n");
    let out = ws.run(&["verify", m, "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(check(&v, "stage double")["status"], "fail");
    assert_eq!(
        check(&v, "stage double")["detail"],
        "build/doubled.csv changed"
    );
    assert_eq!(check(&v, "stage left")["status"], "fail");

    // Re-running restores it; the reused stage points at the manifest that produced it.
    write(&ws, "data/raw.csv", "a,b\n1,2\n3,4\n");
    assert_eq!(run_json(&ws, &["--key", "me.key"]).0, 0);
    write(&ws, "build/right.txt", "x\n");
    assert_eq!(run_json(&ws, &["--key", "me.key"]).0, 0);
    let out = ws.run(&["verify", m, "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = out.json();
    let double = check(&v, "stage double");
    assert_eq!(double["status"], "pass");
    assert!(
        double["detail"].as_str().unwrap().contains("reused"),
        "{double}"
    );
    assert!(
        double["detail"]
            .as_str()
            .unwrap()
            .contains("signed by a trusted key"),
        "{double}"
    );
}

#[test]
fn a_pipeline_manifest_is_cosigned_anchored_and_inspected_like_a_training_manifest() {
    let chain = Anvil::start(31337);
    let ws = demo();
    ws.run(&["keygen", "--out", "me"]).success();
    assert_eq!(run_json(&ws, &["--key", "me.key"]).0, 0);
    let m = "runs/demo/manifest.intoto.json";
    // A co-signature, as on a training manifest.
    ws.run(&["keygen", "--out", "co"]).success();
    ws.run(&["sign", m, "--key", "co.key"])
        .success_with_stderr();
    let out = ws.run(&["verify", m, "--key", "me.pub", "--key", "co.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let mut cmd = ws.cmd(&["anchor", m, "--chain", "local", "--rpc", &chain.url, "-q"]);
    cmd.env("AUDITAI_ANCHOR_KEY", DEV_KEY);
    output(cmd).success();
    let out = ws.run(&[
        "verify", m, "--key", "me.pub", "--key", "co.pub", "--rpc", &chain.url, "--chain", "local",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "anchor evm")["status"], "pass");
    let out = ws.run(&["inspect", m]).success();
    assert!(out.stdout.contains("double"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("python3 double.py data/raw.csv build/doubled.csv"),
        "{}",
        out.stdout
    );

    // A re-run moves the anchored manifest, with its receipt, into the history.
    write(&ws, "data/raw.csv", "a,b\n2,2\n");
    assert_eq!(run_json(&ws, &["--key", "me.key"]).0, 0);
    let receipts = std::fs::read_dir(ws.path().join("runs/demo/history"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".anchor.json")
        })
        .count();
    assert_eq!(receipts, 1);
}

/// A workspace holding the healthcare pipeline and its data, as in the repository.
fn healthcare() -> Workspace {
    let ws = Workspace::new();
    let dir = ws.path().join("pipelines/healthcare");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(ws.path().join("fixtures")).unwrap();
    for f in ["pipeline.yaml", "prepare.py", "evaluate.py"] {
        std::fs::copy(repo().join("pipelines/healthcare").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        repo().join("fixtures/breast_cancer.csv"),
        ws.path().join("fixtures/breast_cancer.csv"),
    )
    .unwrap();
    ws
}

#[test]
fn the_healthcare_pipeline_trains_evaluates_and_audits() {
    let ws = healthcare();
    ws.run(&["keygen", "--out", "me"]).success();
    let out = ws.run(&[
        "run",
        "pipelines/healthcare/pipeline.yaml",
        "--key",
        "me.key",
        "-q",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = out.json();
    assert_eq!(
        statuses(&r).into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
        ["prepare", "train", "evaluate"]
    );
    let eval = r["stages"][2]["metrics"]["build/report/metrics.json"].clone();
    assert!(eval["accuracy"].as_f64().unwrap() > 0.9, "{eval}");
    let m = "runs/breast-cancer-pipeline/manifest.intoto.json";
    let out = ws.run(&["verify", m, "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "stage train")["status"], "pass");
    // The training stage is an ordinary run directory: verify and audit it as one.
    let inner = "pipelines/healthcare/build/model/manifest.intoto.json";
    let out = ws.run(&["verify", inner, "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let out = ws.run(&[
        "audit",
        inner,
        "--segments",
        "2",
        "--challenge",
        "00",
        "--json",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    ws.run(&["audit", m, "--rerun", "prepare", "--key", "me.pub"])
        .success();
    let other = ws.path().join("other");
    ws.run(&["keygen", "--out", other.to_str().unwrap()])
        .success();
    let out = ws.run(&["audit", m, "--rerun", "prepare", "--key", "other.pub"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("signature 1: not valid under any trusted key"),
        "{}",
        out.stderr
    );
    // The pipeline manifest is not a model; a training run's manifest has no stages to rerun.
    let out = ws.run(&[
        "predict",
        m,
        "--input",
        "pipelines/healthcare/build/data/holdout.csv",
        "--key",
        "me.pub",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("a pipeline manifest, not a training run's manifest; pass the training stage's run directory"),
        "{}",
        out.stderr
    );
    // export describes the pipeline's training stage, back to the raw data.
    let out = ws.run(&["export", m, "--format", "model-card"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("1. **prepare** `python3 prepare.py "),
        "{}",
        out.stdout
    );
    let out = ws.run(&["audit", inner, "--rerun", "prepare", "--key", "me.pub"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("not a pipeline manifest"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["audit", m, "--rerun", "train", "--key", "me.pub"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is a training stage"), "{}", out.stderr);
}

#[test]
fn status_and_pipeline_flags_name_the_kind_of_spec_they_need() {
    let ws = Workspace::new();
    ws.tiny_spec();
    let out = ws.run(&["status", "spec.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: status applies to multi-stage specs (with `stages:`)"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["run", "spec.yaml", "--stage", "x"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("apply to multi-stage specs"),
        "{}",
        out.stderr
    );
    write(&ws, "pipeline.yaml", PIPELINE);
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    write(&ws, "data/raw.csv", "a,b\n1,2\n");
    write(&ws, "double.py", DOUBLE);
    let out = ws.run(&["run", "pipeline.yaml", "--resume"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--resume applies to single training specs"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["run", "pipeline.yaml", "--stage", "nope"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr, "error: the pipeline has no stage `nope`\n");
    // A run directory that auditai did not make is refused, and left alone.
    std::fs::create_dir_all(ws.path().join("mine")).unwrap();
    write(&ws, "mine/notes.txt", "mine");
    let out = ws.run(&["run", "pipeline.yaml", "--out", "mine", "-q"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not an auditai run directory"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(ws.path().join("mine")).unwrap().count(),
        1
    );
}

#[test]
fn a_training_stage_finishes_on_a_single_thread() {
    // A training stage runs on a scheduler thread; with one rayon thread in all, the work it hands
    // to the pool must still be done (it once waited forever for the main thread).
    let ws = healthcare();
    let mut child = ws
        .cmd(&["run", "pipelines/healthcare/pipeline.yaml", "-q"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the pipeline did not finish within 300 s on one thread");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}");
}
