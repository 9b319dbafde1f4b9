//! `auditai run` on the bundled pipelines: accuracy, outputs, determinism.

use crate::support::{Workspace, b3, output, pipeline, tree};

fn run_pipeline(ws: &Workspace, name: &str, out: &str) -> serde_json::Value {
    output(run_cmd(ws, &pipeline(name), out)).success().json()
}

/// `auditai run SPEC --device cpu --out OUT --json -q`.
fn run_cmd(ws: &Workspace, spec: &std::path::Path, out: &str) -> std::process::Command {
    let args = [
        "run",
        spec.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        out,
    ];
    ws.cmd(&[&args[..], &["--json", "-q"]].concat())
}

fn metric(v: &serde_json::Value, name: &str) -> f64 {
    v["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {v}"))
}

#[test]
fn iris_mlp_reaches_reference_accuracy_and_writes_every_output() {
    let ws = Workspace::new();
    let v = run_pipeline(&ws, "iris-mlp", "out");
    assert!(metric(&v, "accuracy") >= 0.90, "{v}");
    assert!(metric(&v, "macro_f1") >= 0.85, "{v}");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["manifest"], "out/manifest.intoto.json");
    assert_eq!(v["signed"], false);
    assert_eq!(v["held_out"], "test");
    assert_eq!(v["run_dir"], "out");
    assert_eq!(v["epochs_run"], 60);

    let dir = ws.path().join("out");
    for f in [
        "spec.yaml",
        "preprocessing.json",
        "metrics.jsonl",
        "model.bpk",
        "model.safetensors",
        "summary.json",
        "manifest.intoto.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    // The digest printed is the digest of the weights file written.
    assert_eq!(v["weights_blake3"], b3(&dir.join("model.bpk")));
    // The spec copy is byte for byte the spec that ran.
    assert_eq!(
        std::fs::read(dir.join("spec.yaml")).unwrap(),
        std::fs::read(pipeline("iris-mlp")).unwrap()
    );
    // One metrics line per epoch, each naming a checkpoint whose digest matches the file.
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["epoch"], i + 1);
        let ckpt = dir.join(l["checkpoint"].as_str().unwrap());
        assert_eq!(l["checkpoint_blake3"], b3(&ckpt), "epoch {}", i + 1);
    }
    // The last checkpoint is the final model (no early stopping in this pipeline).
    assert_eq!(lines[59]["checkpoint_blake3"], v["weights_blake3"]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["schema"], "auditai.summary/v1");
    assert_eq!(summary["spec"]["seed"], 42);
    assert_eq!(
        summary["classes"],
        serde_json::json!(["setosa", "versicolor", "virginica"])
    );
    let confusion = &summary["metrics"]["confusion"];
    let total: u64 = confusion
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, summary["rows"]["test"].as_u64().unwrap());
    // No temporary files are left behind.
    assert!(tree(&dir).iter().all(|(p, _)| !p.contains(".auditai-tmp-")));
}

#[test]
fn breast_cancer_mlp_reaches_reference_accuracy() {
    let ws = Workspace::new();
    let v = run_pipeline(&ws, "breast-cancer-mlp", "out");
    assert!(metric(&v, "accuracy") >= 0.95, "{v}");
    // Early stopping restored the best epoch's weights.
    assert_eq!(v["final_epoch"], v["best_epoch"]);
    let best = v["best_epoch"].as_u64().unwrap();
    let ckpt = ws
        .path()
        .join(format!("out/checkpoints/epoch-{best:04}.bpk"));
    assert_eq!(v["weights_blake3"], b3(&ckpt));
}

#[test]
fn digits_cnn_reaches_reference_accuracy() {
    let ws = Workspace::new();
    let v = run_pipeline(&ws, "digits-cnn", "out");
    assert!(metric(&v, "accuracy") >= 0.95, "{v}");
    assert_eq!(v["classes"].as_array().unwrap().len(), 10);
}

#[test]
fn iris_regression_reaches_reference_r2() {
    let ws = Workspace::new();
    let v = run_pipeline(&ws, "iris-regression", "out");
    assert!(metric(&v, "r2") >= 0.85, "{v}");
    assert!(metric(&v, "mae") < 0.3, "{v}");
    assert!(metric(&v, "mse") < 0.1, "{v}");
}

#[test]
fn same_spec_and_seed_give_bitwise_identical_run_directories() {
    let ws = Workspace::new();
    let a = run_pipeline(&ws, "iris-mlp", "a");
    let b = run_pipeline(&ws, "iris-mlp", "b");
    assert_eq!(a["weights_blake3"], b["weights_blake3"]);
    // Every checkpoint, the weights in both formats and the preprocessing are identical bytes.
    let files = |d: &str| -> Vec<(String, String)> {
        tree(&ws.path().join(d))
            .into_iter()
            // These hold wall-clock times (the commitment's time also starts the transcript
            // chain); everything else must match.
            .filter(|(p, _)| {
                !(p == "summary.json"
                    || p == "manifest.intoto.json"
                    || p == "metrics.jsonl"
                    || p == "commitment.json"
                    || p == "transcript.jsonl"
                    || (p.starts_with("checkpoints/") && p.ends_with(".json")))
            })
            .collect()
    };
    assert_eq!(files("a"), files("b"));
    assert!(files("a").len() > 120);
    // The transcripts record the same segments; only their chains differ.
    let bodies = |d: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(ws.path().join(d).join("transcript.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("prev").unwrap();
                o.remove("chain").unwrap();
                v
            })
            .collect()
    };
    assert_eq!(bodies("a"), bodies("b"));
    assert_eq!(bodies("a").len(), 60);
}

#[test]
fn the_thread_count_changes_no_bit() {
    // Wide enough that the matrix products are split across threads and the optimizer's fused
    // pass runs in parallel chunks.
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-mlp", |t| {
        t.replace("hidden: [32, 16]", "hidden: [512, 256]")
            .replace("epochs: 60", "epochs: 2")
            .replace("batch_size: 16", "batch_size: 90")
    });
    let run = |threads: &str, out: &str| {
        let mut cmd = run_cmd(&ws, &spec, out);
        cmd.env("RAYON_NUM_THREADS", threads);
        output(cmd).success().json()
    };
    let one = run("1", "one");
    let three = run("3", "three");
    assert_eq!(one["weights_blake3"], three["weights_blake3"]);
    for f in ["epoch-0001.optim.bpk", "epoch-0002.optim.bpk"] {
        let read = |d: &str| std::fs::read(ws.path().join(d).join("checkpoints").join(f)).unwrap();
        assert!(read("one") == read("three"), "{f} differs");
    }
}

#[test]
fn a_different_seed_gives_different_weights() {
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-mlp", |t| t.replace("seed: 42", "seed: 43"));
    let a = run_pipeline(&ws, "iris-mlp", "a");
    let b = ws
        .run(&[
            "run",
            spec.to_str().unwrap(),
            "--device",
            "cpu",
            "--out",
            "b",
            "--json",
            "-q",
        ])
        .success()
        .json();
    assert_ne!(a["weights_blake3"], b["weights_blake3"]);
}

#[test]
fn table_output_names_the_run_and_its_metrics() {
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-mlp", |t| t.replace("epochs: 60", "epochs: 3"));
    let out = ws
        .run(&[
            "run",
            spec.to_str().unwrap(),
            "--device",
            "cpu",
            "--out",
            "t",
        ])
        .success_with_stderr();
    for needle in [
        "│ run ",
        "iris-mlp",
        "test: accuracy",
        "test: macro_f1",
        "weights blake3",
        "confusion matrix (test split):",
        "true \\ predicted",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} not in:\n{}",
            out.stdout
        );
    }
    // Progress goes to stderr: one line per epoch when stderr is not a terminal.
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("epoch "))
            .count(),
        3,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("device: cpu (flex (CPU))"),
        "{}",
        out.stderr
    );
    // --quiet silences progress.
    let quiet = ws
        .run(&[
            "run",
            spec.to_str().unwrap(),
            "--device",
            "cpu",
            "--out",
            "q",
            "--quiet",
        ])
        .success();
    assert_eq!(quiet.stderr, "");
}

#[test]
fn an_existing_run_is_not_overwritten_without_force() {
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-mlp", |t| t.replace("epochs: 60", "epochs: 2"));
    let spec = spec.to_str().unwrap();
    ws.run(&["run", spec, "--device", "cpu", "--out", "r", "-q"])
        .success();
    let before = tree(&ws.path().join("r"));
    let again = ws.run(&["run", spec, "--device", "cpu", "--out", "r", "-q"]);
    assert_eq!(again.code, 2);
    assert_eq!(
        again.stderr,
        "error: r already holds a run; pass --resume to continue it or --force to replace it\n"
    );
    assert_eq!(tree(&ws.path().join("r")), before);
    ws.run(&[
        "run", spec, "--device", "cpu", "--out", "r", "-q", "--force",
    ])
    .success();

    // --force never deletes a directory that is not a run directory.
    std::fs::create_dir(ws.path().join("precious")).unwrap();
    std::fs::write(ws.path().join("precious/notes.txt"), "keep").unwrap();
    let refused = ws.run(&[
        "run", spec, "--device", "cpu", "--out", "precious", "--force",
    ]);
    assert_eq!(refused.code, 2);
    assert_eq!(
        refused.stderr,
        "error: precious is not an auditai run directory (no valid .auditai-run marker); refusing to replace it\n"
    );
    assert!(ws.path().join("precious/notes.txt").exists());
}

#[test]
fn default_run_directory_is_runs_slash_name() {
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-regression", |t| t.replace("epochs: 80", "epochs: 1"));
    let v = ws
        .run(&[
            "run",
            spec.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "-q",
        ])
        .success()
        .json();
    assert_eq!(v["run_dir"], "runs/iris-regression");
    assert!(
        ws.path()
            .join("runs/iris-regression/summary.json")
            .is_file()
    );
}
