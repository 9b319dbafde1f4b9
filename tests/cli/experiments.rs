//! Experiments as a DVC user runs them: parameter files and `${…}` templating, foreach and
//! matrix stages, frozen and always_changed stages, one lock per spec, the run cache,
//! `params diff`, `metrics diff`, `runs`, `status --dag`, `audit --rerun --tolerance`, writes
//! outside the outs, and `auditai report` rendered in headless Chromium.

use std::path::Path;

use serde_json::Value;

use crate::support::{Workspace, output, payload_of, repo};

fn write(ws: &Workspace, rel: &str, text: &str) {
    let p = ws.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(ws: &Workspace, rel: &str) -> String {
    std::fs::read_to_string(ws.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `run --json -q` of `spec`: the exit code and each stage's status, in spec order.
fn run(ws: &Workspace, spec: &str) -> (i32, Vec<(String, String)>) {
    let out = ws.run(&["run", spec, "--json", "-q"]);
    let mut st: Vec<(String, String)> = out.json()["stages"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    st.sort();
    (out.code, st)
}

const PARAMS: &str = "prep:\n  scale: 2\n  unused: 1\ntrain:\n  lrs: [0.1, 0.01]\n  flags: {depth: 3, fast: true, slow: false}\n";

/// A `dvc.yaml` as DVC writes it (no `version`, no `name`): vars, a params file, templating, a
/// foreach over a list from params.yaml, a foreach over a mapping and a matrix.
const DVC: &str = r#"vars:
  - extra: {tag: v1}
stages:
  prep:
    cmd: echo "scale=${prep.scale} tag=${extra.tag}" > prep.txt && echo "$HOME|$AUDITAI_PARAMS" > env.txt
    params:
      - prep.scale
    outs:
      - prep.txt
      - env.txt
  train:
    foreach: ${train.lrs}
    do:
      cmd: echo "lr=${item} ${train.flags}" > model-${item}.txt
      deps: [prep.txt]
      outs:
        - model-${item}.txt
  region:
    foreach:
      eu: {rows: 10}
      us: {rows: 20}
    do:
      cmd: echo "${key} ${item.rows}" > region-${key}.txt
      outs:
        - region-${key}.txt
  grid:
    matrix:
      opt: [adam, sgd]
      bs: [16, 32]
    cmd: echo ${item.opt} ${item.bs} > grid-${item.opt}-${item.bs}.txt
    outs:
      - grid-${item.opt}-${item.bs}.txt
"#;

fn dvc_project() -> Workspace {
    let ws = Workspace::new();
    write(&ws, "params.yaml", PARAMS);
    write(&ws, "dvc.yaml", DVC);
    ws
}

#[test]
fn a_dvc_yaml_with_params_templating_foreach_and_matrix_runs_unchanged() {
    let ws = dvc_project();
    let (code, st) = run(&ws, "dvc.yaml");
    assert_eq!(code, 0, "{st:?}");
    let names: Vec<&str> = st.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "grid@adam-16",
            "grid@adam-32",
            "grid@sgd-16",
            "grid@sgd-32",
            "prep",
            "region@eu",
            "region@us",
            "train@0.01",
            "train@0.1"
        ]
    );
    assert_eq!(read(&ws, "prep.txt"), "scale=2 tag=v1\n");
    // A mapping in a command unpacks as DVC does: --key value, --flag for true.
    assert_eq!(read(&ws, "model-0.1.txt"), "lr=0.1 --depth 3 --fast\n");
    assert_eq!(read(&ws, "region-us.txt"), "us 20\n");
    assert_eq!(read(&ws, "grid-sgd-32.txt"), "sgd 32\n");
    // Stages get a HOME; AUDITAI_PARAMS names the key as the stage does.
    let env = read(&ws, "env.txt");
    let (home, params) = env.trim_end().split_once('|').unwrap();
    assert!(!home.is_empty());
    assert_eq!(params, r#"{"prep.scale":2}"#);
    // One lock beside the lone spec, each expanded stage with its own entry.
    let lock: Value = serde_json::from_str(&read(&ws, "auditai.lock")).unwrap();
    assert_eq!(
        lock["stages"]["prep"]["params"]["params.yaml:prep.scale"],
        2
    );
    // What `${…}` read from params.yaml is the stage's params, as DVC tracks it.
    assert_eq!(
        lock["stages"]["train@0.01"]["params"],
        serde_json::json!({"params.yaml:train.flags.depth": 3, "params.yaml:train.flags.fast": true, "params.yaml:train.flags.slow": false})
    );
    // Named after the directory when the spec has no `name:` (a leading `.` dropped).
    let dir = ws.path().file_name().unwrap().to_string_lossy();
    let manifest = ws
        .path()
        .join("runs")
        .join(dir.trim_start_matches('.'))
        .join("manifest.intoto.json");
    assert!(manifest.is_file(), "{}", manifest.display());
}

#[test]
fn a_stage_is_stale_only_when_a_key_it_reads_changes() {
    let ws = dvc_project();
    assert_eq!(run(&ws, "dvc.yaml").0, 0);
    write(
        &ws,
        "params.yaml",
        &PARAMS.replace("unused: 1", "unused: 2"),
    );
    // No stage reads `unused`: nothing is stale.
    let out = ws.run(&["status", "dvc.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    write(&ws, "params.yaml", &PARAMS.replace("scale: 2", "scale: 3"));
    let out = ws.run(&["status", "dvc.yaml", "--json"]);
    assert_eq!(out.code, 1);
    let prep = &out.json()["stages"][0];
    assert_eq!(prep["stage"], "prep");
    assert_eq!(
        prep["why"],
        serde_json::json!([
            {"reason": "command-changed"},
            {"reason": "params-changed", "params": ["params.yaml:prep.scale"]}
        ])
    );
}

#[test]
fn templating_errors_name_the_line_and_column_and_nothing_runs() {
    let cases = [
        (
            "stages:\n  a:\n    cmd: echo ${nope.x}\n    outs: [o]\n",
            "error: dvc.yaml:3:10: cannot interpolate `${nope.x}`: `nope` is not defined (names come from vars:, params.yaml, the spec's params: and, in foreach/matrix stages, item and key)\n",
        ),
        (
            "stages:\n  a:\n    cmd: echo ${prep.nope}\n",
            "error: dvc.yaml:3:10: cannot interpolate `${prep.nope}`: `prep.nope` is not defined\n",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    outs:\n      - o-${train.lrs}\n",
            "error: dvc.yaml:5:9: cannot interpolate `${train.lrs}` into a string: it is a list\n",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    params:\n      - other.yaml: [a]\n",
            "error: dvc.yaml:5:9: stage `a` reads parameter file other.yaml, which does not exist\n",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    params: [prep.absent]\n",
            "error: dvc.yaml:4:14: stage `a` reads param `prep.absent`, which neither the spec's params: nor params.yaml defines\n",
        ),
        (
            "stages:\n  a:\n    foreach: [x/y]\n    do: {cmd: echo}\n",
            "error: dvc.yaml:3:14: expanded stage name `a@x/y` may hold only letters, digits and - _ . @ = + , (at most 256 characters); use a mapping to name the items\n",
        ),
        (
            "stages:\n  a:\n    foreach: ${prep.scale}\n    do: {cmd: echo}\n",
            "error: dvc.yaml:3:14: `foreach` must be a list or a mapping\n",
        ),
        (
            "stages:\n  a:\n    foreach: [1]\n    cmd: echo\n",
            "error: dvc.yaml:3:5: stage `a`: `foreach` needs a `do:` stage body\n",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    frozen: true\n    always_changed: true\n",
            "error: dvc.yaml:5:21: stage `a` is both frozen and always_changed\n",
        ),
    ];
    for (spec, want) in cases {
        let ws = Workspace::new();
        write(&ws, "params.yaml", PARAMS);
        write(&ws, "dvc.yaml", spec);
        let out = ws.run(&["run", "dvc.yaml"]);
        assert_eq!((out.code, out.stderr.as_str()), (2, want), "{spec}");
        assert!(!ws.path().join("runs").exists(), "{spec}");
    }
}

#[test]
fn frozen_stages_keep_their_outs_and_always_changed_stages_always_run() {
    let ws = Workspace::new();
    write(&ws, "in.txt", "1\n");
    let spec = "version: 1\nname: f\nstages:\n  a:\n    cmd: cp in.txt a.txt\n    deps: [in.txt]\n    outs: [a.txt]\n  b:\n    cmd: date +%s%N > b.txt\n    outs: [b.txt]\n    always_changed: true\n";
    write(&ws, "p.yaml", spec);
    assert_eq!(run(&ws, "p.yaml").0, 0);
    write(
        &ws,
        "p.yaml",
        &spec.replace("outs: [a.txt]\n", "outs: [a.txt]\n    frozen: true\n"),
    );
    write(&ws, "in.txt", "2\n");
    let (code, st) = run(&ws, "p.yaml");
    assert_eq!(code, 0);
    assert_eq!(
        st,
        [("a".into(), "reused".into()), ("b".into(), "ran".into())]
    );
    assert_eq!(read(&ws, "a.txt"), "1\n");
    // A frozen stage whose out is gone cannot be reused, and is not run either.
    std::fs::remove_file(ws.path().join("a.txt")).unwrap();
    std::fs::remove_dir_all(ws.path().join(".auditai")).unwrap();
    let out = ws.run(&["run", "p.yaml", "-q"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "stage is frozen and cannot be reused (out a.txt missing); unfreeze it to run it"
        ),
        "{}",
        out.stdout
    );
    assert!(!ws.path().join("a.txt").exists());
}

#[test]
fn diffs_and_jobs_refuse_what_they_cannot_read() {
    let ws = Workspace::new();
    write(&ws, "p.yaml", SWEEP);
    let out = ws.run(&["params", "diff", "--spec", "p.yaml"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: p.yaml: no complete run of sweep yet (runs/sweep/manifest.intoto.json is missing); run it first, or name two points\n"
        )
    );
    let out = ws.run(&["metrics", "show", "nothing.intoto.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: nothing.intoto.json: "),
        "{}",
        out.stderr
    );
    write(&ws, "req.json", "{\"schema\": \"other\"}");
    let out = ws.run(&["stage-job", "req.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("error: req.json: "),
        "{}",
        out.stderr
    );
    write(
        &ws,
        "e.yaml",
        "version: 1\nname: e\nexecutor: {type: slurm, mem: '4 G'}\nstages:\n  s:\n    cmd: echo\n",
    );
    let out = ws.run(&["run", "e.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("error: e.yaml:3:")
            && out.stderr.contains("`4 G` is not a Slurm resource value"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_and_status_take_out_from_another_working_directory() {
    let ws = Workspace::new();
    let spec = "version: 1\nname: o\nstages:\n  s:\n    cmd: echo x > o.txt\n    outs: [o.txt]\n";
    write(&ws, "proj/p.yaml", spec);
    write(&ws, "elsewhere/.keep", "");
    let (p, out) = (ws.path().join("proj/p.yaml"), ws.path().join("proj/runs/o"));
    let (p, out) = (p.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["run", p, "--out", out, "-q"],
        vec!["status", p, "--out", out],
    ] {
        let mut cmd = ws.cmd(&args);
        cmd.current_dir(ws.path().join("elsewhere"));
        let o = output(cmd);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
    }
    assert!(ws.path().join("proj/runs/o/manifest.intoto.json").is_file());
}

#[test]
fn a_model_file_a_later_stage_reads_is_still_a_subject() {
    let ws = Workspace::new();
    write(
        &ws,
        "p.yaml",
        "version: 1\nname: m\nstages:\n  train:\n    cmd: echo w > model.pkl && echo d > data.csv\n    outs: [model.pkl, data.csv]\n  evaluate:\n    cmd: cat model.pkl data.csv > score.txt\n    deps: [model.pkl, data.csv]\n    outs: [score.txt]\n",
    );
    assert_eq!(run(&ws, "p.yaml").0, 0);
    let st: Value =
        serde_json::from_str(&payload_of(&read(&ws, "runs/m/manifest.intoto.json"))).unwrap();
    let names: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model.pkl", "score.txt"]);
}

#[test]
fn two_specs_in_one_directory_keep_their_own_locks() {
    let ws = Workspace::new();
    for n in ["one", "two"] {
        write(
            &ws,
            &format!("{n}.yaml"),
            &format!(
                "version: 1\nname: {n}\nstages:\n  s:\n    cmd: echo {n} > {n}.txt\n    outs: [{n}.txt]\n"
            ),
        );
    }
    assert_eq!(run(&ws, "one.yaml").0, 0);
    assert_eq!(run(&ws, "two.yaml").0, 0);
    assert!(!ws.path().join("auditai.lock").exists());
    let one: Value = serde_json::from_str(&read(&ws, "one.lock")).unwrap();
    assert_eq!(one["stages"]["s"]["cmd"], "echo one > one.txt");
    let two: Value = serde_json::from_str(&read(&ws, "two.lock")).unwrap();
    assert_eq!(two["stages"]["s"]["cmd"], "echo two > two.txt");
    assert_eq!(ws.run(&["status", "one.yaml"]).code, 0);
}

const SWEEP: &str = r#"version: 1
name: sweep
params:
  k: 2
stages:
  make:
    cmd: 'echo "${k}" > n.txt && echo "{\"score\": ${k}.5}" > m.json'
    params: [k]
    outs: [n.txt]
    metrics: [m.json]
"#;

#[test]
fn reverting_a_param_restores_the_outs_from_the_run_cache() {
    let ws = Workspace::new();
    ws.run(&["keygen", "--out", "me"]).success();
    write(&ws, "p.yaml", SWEEP);
    let signed = |ws: &Workspace| {
        let out = ws.run(&["run", "p.yaml", "--json", "-q", "--key", "me.key"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        out.json()["stages"][0]["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(signed(&ws), "ran");
    write(&ws, "p.yaml", &SWEEP.replace("k: 2", "k: 3"));
    assert_eq!(signed(&ws), "ran");
    assert_eq!(read(&ws, "n.txt"), "3\n");
    write(&ws, "p.yaml", SWEEP);
    assert_eq!(signed(&ws), "restored");
    assert_eq!(read(&ws, "n.txt"), "2\n");
    assert!(read(&ws, ".auditai/.gitignore").contains("/cache/"));
    let v = ws.run(&[
        "verify",
        "runs/sweep/manifest.intoto.json",
        "--key",
        "me.pub",
    ]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(
        v.stdout.contains("restored from the run cache"),
        "{}",
        v.stdout
    );

    // A cache object someone changed is not restored: the stage runs, and says why.
    write(&ws, "p.yaml", &SWEEP.replace("k: 2", "k: 3"));
    let objects = ws.path().join(".auditai/cache/objects");
    for d in std::fs::read_dir(&objects).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            std::fs::write(f.unwrap().path(), "forged\n").unwrap();
        }
    }
    let out = ws.run(&["run", "p.yaml", "--key", "me.key"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("stage make: run cache not used:")
            && out.stderr.contains("does not have its recorded digest"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&ws, "n.txt"), "3\n");
    // --no-run-cache neither restores nor saves.
    write(&ws, "p.yaml", SWEEP);
    let out = ws.run(&["run", "p.yaml", "--json", "-q", "--no-run-cache"]);
    assert_eq!(out.json()["stages"][0]["status"], "ran");
    assert_eq!(out.stderr, "");
}

#[test]
fn a_run_cache_behind_a_symlink_is_never_written_through() {
    let ws = Workspace::new();
    write(&ws, "proj/p.yaml", SWEEP);
    std::fs::create_dir_all(ws.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(ws.path().join("elsewhere"), ws.path().join("proj/.auditai"))
        .unwrap();
    let mut cmd = ws.cmd(&["run", "p.yaml"]);
    cmd.current_dir(ws.path().join("proj"));
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("notice: stage make: not saved in the run cache: path `.auditai/cache/"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("passes through a symlink; not followed"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(ws.path().join("elsewhere"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_directory_out_is_restored_whole_and_the_one_it_replaces_moved_aside() {
    let ws = Workspace::new();
    let spec = "version: 1\nname: d\nparams:\n  k: 1\nstages:\n  s:\n    cmd: mkdir -p out && echo ${k} > out/a && echo fixed > out/b && chmod +x out/b\n    params: [k]\n    outs: [out]\n";
    write(&ws, "p.yaml", spec);
    assert_eq!(run(&ws, "p.yaml").1[0].1, "ran");
    write(&ws, "p.yaml", &spec.replace("k: 1", "k: 2"));
    assert_eq!(run(&ws, "p.yaml").1[0].1, "ran");
    write(&ws, "out/mine.txt", "a file the stage never wrote\n");
    write(&ws, "p.yaml", spec);
    assert_eq!(run(&ws, "p.yaml").1[0].1, "restored");
    assert_eq!(read(&ws, "out/a"), "1\n");
    assert!(!ws.path().join("out/mine.txt").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.path().join("out/b"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    // Nothing was deleted: the replaced directory, with the file in it, is in the cache.
    let replaced = ws.path().join(".auditai/cache/replaced");
    let kept = std::fs::read_dir(&replaced)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(kept.join("out/mine.txt")).unwrap(),
        "a file the stage never wrote\n"
    );
    assert_eq!(ws.run(&["status", "p.yaml"]).code, 0);
}

#[test]
fn params_and_metrics_diff_runs_and_the_dag() {
    let ws = Workspace::new();
    write(&ws, "p.yaml", SWEEP);
    assert_eq!(run(&ws, "p.yaml").0, 0);
    let first = ws.path().join("runs/sweep/manifest.intoto.json");
    let first_copy = ws.path().join("first.intoto.json");
    std::fs::copy(&first, &first_copy).unwrap();
    write(&ws, "p.yaml", &SWEEP.replace("k: 2", "k: 5"));
    let out = ws.run(&["params", "diff", "--spec", "p.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "┌────────┬───────┬──────────┬───────────┐\n│ Path   │ Param │ last run │ workspace │\n├────────┼───────┼──────────┼───────────┤\n│ p.yaml │ k     │ 2        │ 5         │\n└────────┴───────┴──────────┴───────────┘\n"
    );
    assert_eq!(run(&ws, "p.yaml").0, 0);
    let out = ws.run(&[
        "metrics",
        "diff",
        "first.intoto.json",
        "runs/sweep",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({"m.json": {"score": {"old": 2.5, "new": 5.5, "diff": 3.0}}})
    );
    let out = ws.run(&["metrics", "diff", "--spec", "p.yaml"]);
    assert_eq!(
        out.stdout,
        "no metrics changed between last run and workspace\n"
    );
    let out = ws.run(&["runs", "--json"]);
    assert_eq!(out.code, 0);
    let runs = out.json();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[0]["params"]["p.yaml:k"], 5);
    assert_eq!(runs[1]["metrics"]["m.json:score"], 2.5);
    let bad = ws.run(&["runs", "nope"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (2, "error: nope: not a directory\n")
    );

    write(
        &ws,
        "g.yaml",
        "version: 1\nname: g\nstages:\n  a:\n    cmd: echo > a\n    outs: [a]\n  b:\n    cmd: cat a > b\n    deps: [a]\n    outs: [b]\n  c:\n    cmd: cat a > c\n    deps: [a]\n    outs: [c]\n  d:\n    cmd: cat b c > d\n    deps: [b, c]\n    outs: [d]\n",
    );
    let out = ws.run(&["status", "g.yaml", "--dag"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        "a  [stale: not in the lock]\n├── b  [stale: not in the lock; upstream stage a will run]\n│   └── d  [stale: not in the lock; upstream stage b will run; upstream stage c will run]\n└── c  [stale: not in the lock; upstream stage a will run]\n    └── d (drawn above)\n"
    );
    let out = ws.run(&["status", "g.yaml", "--dag", "--json"]);
    assert_eq!(
        out.json()["edges"],
        serde_json::json!([["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]])
    );
}

#[test]
fn a_rerun_within_a_tolerance_shows_the_values_that_differ() {
    let ws = Workspace::new();
    write(
        &ws,
        "p.yaml",
        "version: 1\nname: noisy\nstages:\n  fit:\n    cmd: >-\n      python3 -c \"import json,random; print(json.dumps({'loss': 1.0 + random.random() * 1e-10, 'n': 3}))\" > m.json\n    metrics: [m.json]\n",
    );
    assert_eq!(run(&ws, "p.yaml").0, 0);
    let audit = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "runs/noisy/manifest.intoto.json",
            "--rerun",
            "fit",
            "--trust-recorded-command",
        ];
        args.extend_from_slice(extra);
        ws.run(&args)
    };
    let out = audit(&[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("m.json: differing values (recorded -> rerun):\n  $.loss: 1.0000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("stage fit: NOT reproduced (exit status 0)\n")
    );
    let out = audit(&["--tolerance"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.ends_with("stage fit: reproduced within a relative tolerance of 1e-9 (exit status 0; not bitwise)\n"), "{}", out.stdout);
    let out = audit(&["--tolerance", "--rtol", "1e-16", "--json"]);
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(j["verdict"], "differs");
    assert_eq!(j["outs"][0]["values"]["values"][0]["at"], "$.loss");
    let out = audit(&["--tolerance", "--rtol=-1"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: --rtol must be a relative tolerance of 0 or more, got -1\n"
        )
    );
}

#[test]
fn writes_outside_the_outs_are_reported_and_recorded() {
    let ws = Workspace::new();
    write(
        &ws,
        "p.yaml",
        "version: 1\nname: w\nstages:\n  s:\n    cmd: mkdir -p .dvc && echo x > .dvc/config && echo y > out.txt\n    outs: [out.txt]\n",
    );
    let out = ws.run(&["run", "p.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("notice: stage s changed 2 path(s) outside the stages' outs: .dvc (added), .dvc/config (added)\n"),
        "{}",
        out.stderr
    );
    let m = read(&ws, "runs/w/manifest.intoto.json");
    let st: Value = serde_json::from_str(&payload_of(&m)).unwrap();
    assert_eq!(
        st["predicate"]["auditaiPipeline"]["stages"][0]["outsideChanges"],
        serde_json::json!([".dvc (added)", ".dvc/config (added)"])
    );
}

/// Headless Chromium's DOM of a local page, and its stderr.
fn chromium_dom(page: &Path) -> (bool, String, String) {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian's `chromium` package; scripts/setup-debian.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_report_is_one_self_contained_page_that_renders_headless() {
    let ws = Workspace::new();
    std::fs::copy(
        repo().join("fixtures/breast_cancer.csv"),
        ws.path().join("bc.csv"),
    )
    .unwrap();
    write(
        &ws,
        "spec.yaml",
        "version: 1\nname: bc\nseed: 3\ndata:\n  path: bc.csv\n  label: diagnosis\n  task: classification\nmodel:\n  type: mlp\n  hidden: [8]\ntraining:\n  epochs: 3\n",
    );
    ws.signed_run_of_spec();
    let ev = ws.run(&[
        "eval",
        "r",
        "--data",
        "bc.csv",
        "--key",
        "me.pub",
        "--sign-with",
        "me.key",
        "--out",
        "eval.json",
        "-q",
    ]);
    assert_eq!(ev.code, 0, "{}", ev.stderr);
    let out = ws.run(&[
        "report",
        "r",
        "--eval",
        "eval.json",
        "--key",
        "me.pub",
        "-o",
        "report.html",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "report: report.html\n", "")
    );
    let html = read(&ws, "report.html");
    for needle in [
        "<title>auditai report: bc</title>",
        "Training curves",
        "Confusion matrix",
        "Reliability diagram",
        "checked: valid signature(s) by",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let (ok, dom, stderr) = chromium_dom(&ws.path().join("report.html"));
    assert!(ok, "{stderr}");
    assert!(
        dom.contains("<svg") && dom.contains("auditai report: bc"),
        "{dom}"
    );
    for bad in ["Refused to", "Uncaught", "ERR_"] {
        assert!(!stderr.contains(bad), "{bad} in chromium's log:\n{stderr}");
    }
    // Without a key the page says the signatures were not checked.
    let out = ws.run(&["report", "r", "-o", "claimed.html"]);
    assert_eq!(out.code, 0);
    assert!(read(&ws, "claimed.html").contains("claimed, not checked"));
    // A tampered metrics.jsonl is not drawn: the page says why.
    let p = ws.path().join("r/metrics.jsonl");
    let mut m = std::fs::read(&p).unwrap();
    m.extend_from_slice(b"\n");
    std::fs::write(&p, m).unwrap();
    assert_eq!(ws.run(&["report", "r", "-o", "t.html"]).code, 0);
    assert!(read(&ws, "t.html").contains("No training curves"));
}
