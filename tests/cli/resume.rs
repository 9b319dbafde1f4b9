//! Interrupted runs: no half-written outputs, and `--resume` ends with the same weights.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Workspace, b3, output, tree};

fn spec(ws: &Workspace) -> String {
    // Dropout on, so resuming must also draw the same dropout masks.
    ws.pipeline_copy("iris-mlp", |t| t.replace("epochs: 60", "epochs: 12"))
        .to_str()
        .unwrap()
        .to_string()
}

fn weights(ws: &Workspace, args: &[&str]) -> String {
    let v = ws.run(args).success_with_stderr().json();
    v["weights_blake3"].as_str().unwrap().to_string()
}

/// Make `dir` look like a run that crashed right after `epoch`'s checkpoint was complete.
fn crash_after(dir: &Path, epoch: usize) {
    for f in [
        "model.bpk",
        "model.safetensors",
        "summary.json",
        "manifest.intoto.json",
    ] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    for e in epoch + 1..=12 {
        for ext in ["bpk", "optim.bpk", "json"] {
            std::fs::remove_file(dir.join(format!("checkpoints/epoch-{e:04}.{ext}"))).unwrap();
        }
    }
    // What a kill during the next write leaves: a temp file and a half-written weights file
    // without its state file, which marks a checkpoint complete.
    std::fs::write(dir.join("checkpoints/.auditai-tmp-x1"), b"partial").unwrap();
    std::fs::write(
        dir.join(format!("checkpoints/epoch-{:04}.bpk", epoch + 1)),
        b"truncated",
    )
    .unwrap();
}

#[test]
fn resume_after_a_crash_ends_with_the_uninterrupted_weights() {
    let ws = Workspace::new();
    let spec = spec(&ws);
    let full = weights(
        &ws,
        &["run", &spec, "--device", "cpu", "--out", "full", "--json"],
    );
    weights(
        &ws,
        &["run", &spec, "--device", "cpu", "--out", "cut", "--json"],
    );
    let cut = ws.path().join("cut");
    crash_after(&cut, 5);

    let out = ws
        .run(&[
            "run", &spec, "--device", "cpu", "--out", "cut", "--json", "--resume",
        ])
        .success_with_stderr();
    assert!(
        out.stderr.contains("resuming after epoch 5"),
        "{}",
        out.stderr
    );
    let v = out.json();
    assert_eq!(v["resumed_from"], 5);
    assert_eq!(v["weights_blake3"], full);
    // The metrics log has exactly one line per epoch again.
    let log = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
    let epochs: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(epochs, (1..=12).collect::<Vec<_>>());
    assert_eq!(
        b3(&cut.join("checkpoints/epoch-0012.bpk")),
        b3(&ws.path().join("full/checkpoints/epoch-0012.bpk"))
    );
    // The transcript continues the chain across the interruption: every segment audits.
    let audit = ws
        .run(&[
            "audit",
            "cut/manifest.intoto.json",
            "--segments",
            "12",
            "--challenge",
            "00",
            "--json",
            "-q",
        ])
        .success()
        .json();
    assert_eq!(audit["segments_total"], 12);
    assert_eq!(audit["ok"], true);
}

#[test]
fn resume_refuses_a_tampered_checkpoint() {
    let ws = Workspace::new();
    let spec = spec(&ws);
    weights(
        &ws,
        &["run", &spec, "--device", "cpu", "--out", "r", "--json"],
    );
    let dir = ws.path().join("r");
    crash_after(&dir, 4);
    std::fs::remove_file(dir.join("checkpoints/epoch-0005.bpk")).unwrap();
    let ckpt = dir.join("checkpoints/epoch-0004.bpk");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&ckpt, &bytes).unwrap();
    let out = ws.run(&[
        "run", &spec, "--device", "cpu", "--out", "r", "--resume", "-q",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(&format!(
            "error: {}: blake3 is ",
            Path::new("r/checkpoints/epoch-0004.bpk").display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(", the checkpoint state records "),
        "{}",
        out.stderr
    );
}

#[test]
fn resume_refuses_a_changed_spec_and_a_complete_run() {
    let ws = Workspace::new();
    let spec = spec(&ws);
    weights(
        &ws,
        &["run", &spec, "--device", "cpu", "--out", "r", "--json"],
    );
    let done = ws.run(&["run", &spec, "--device", "cpu", "--out", "r", "--resume"]);
    assert_eq!(done.code, 2);
    assert_eq!(
        done.stderr,
        "error: cannot resume r: the run is already complete (manifest.intoto.json exists)\n"
    );

    crash_after(&ws.path().join("r"), 3);
    let changed = ws.pipeline_copy("iris-mlp", |t| {
        t.replace("epochs: 60", "epochs: 12")
            .replace("lr: 0.01", "lr: 0.02")
    });
    let out = ws.run(&[
        "run",
        changed.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        "r",
        "--resume",
        "-q",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: cannot resume r: the spec differs from the run's training commitment; start a new run\n"
    );

    let nothing = ws.run(&[
        "run", &spec, "--device", "cpu", "--out", "empty", "--resume",
    ]);
    assert_eq!(nothing.code, 2);
    assert_eq!(
        nothing.stderr,
        "error: cannot resume empty: it holds no run\n"
    );
}

#[test]
fn interrupted_by_a_signal_then_resumed_matches_an_uninterrupted_run() {
    let ws = Workspace::new();
    let spec = ws
        .pipeline_copy("digits-cnn", |t| t.replace("epochs: 15", "epochs: 4"))
        .to_str()
        .unwrap()
        .to_string();
    let full = weights(
        &ws,
        &["run", &spec, "--device", "cpu", "--out", "full", "--json"],
    );

    let mut child = ws
        .cmd(&["run", &spec, "--device", "cpu", "--out", "cut", "-q"])
        .spawn()
        .unwrap();
    let first = ws.path().join("cut/checkpoints/epoch-0001.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !first.exists() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut kill = std::process::Command::new("kill");
    kill.args(["-INT", &child.id().to_string()]);
    assert_eq!(output(kill).code, 0);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let cut = ws.path().join("cut");
    // Nothing that looks complete but is not: no final outputs after an interrupt.
    assert!(!cut.join("summary.json").exists());
    assert!(!cut.join("model.bpk").exists());
    assert!(
        tree(&cut)
            .iter()
            .any(|(p, _)| p == "checkpoints/epoch-0001.bpk")
    );

    let v = ws
        .run(&[
            "run", &spec, "--device", "cpu", "--out", "cut", "--json", "--resume", "-q",
        ])
        .success()
        .json();
    assert_eq!(v["weights_blake3"], full);
}
