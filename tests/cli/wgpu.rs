//! The real wgpu backend. CI runs it on Mesa's software Vulkan driver (lavapipe); these tests
//! fail, rather than skip, on a machine without any wgpu adapter.

use crate::support::{Workspace, pipeline};

fn iris_on_wgpu(ws: &Workspace, out: &str) -> serde_json::Value {
    let spec = ws.pipeline_copy("iris-mlp", |t| t.replace("epochs: 60", "epochs: 30"));
    ws.run(&[
        "run",
        spec.to_str().unwrap(),
        "--device",
        "wgpu",
        "--out",
        out,
        "--json",
        "-q",
    ])
    .success()
    .json()
}

#[test]
fn iris_trains_on_wgpu_deterministically() {
    let ws = Workspace::new();
    let a = iris_on_wgpu(&ws, "a");
    assert_eq!(a["device"], "wgpu");
    assert!(a["adapter"].as_str().unwrap().len() > 3, "{a}");
    assert!(a["metrics"]["accuracy"].as_f64().unwrap() >= 0.85, "{a}");
    let b = iris_on_wgpu(&ws, "b");
    assert_eq!(a["weights_blake3"], b["weights_blake3"]);
}

#[test]
fn auto_never_picks_a_software_adapter_silently() {
    let ws = Workspace::new();
    let spec = ws.pipeline_copy("iris-regression", |t| t.replace("epochs: 80", "epochs: 1"));
    let out = ws
        .run(&[
            "run",
            spec.to_str().unwrap(),
            "--device",
            "auto",
            "--out",
            "r",
            "--json",
        ])
        .success_with_stderr();
    let v = out.json();
    if v["device"] == "cpu" {
        // Only a software adapter (or none) here: the fallback is announced in one line.
        let notices: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("notice: ") && l.contains("training on the CPU"))
            .collect();
        assert_eq!(notices.len(), 1, "{}", out.stderr);
        assert!(
            notices[0].ends_with("training on the CPU (use --device wgpu to force it)")
                || notices[0].ends_with("; training on the CPU"),
            "{}",
            notices[0]
        );
    } else {
        assert_eq!(v["device"], "wgpu");
    }
}

#[test]
fn a_successful_wgpu_run_prints_only_auditais_own_output() {
    let ws = Workspace::new();
    ws.tiny_spec();
    // As on a fresh Debian machine or in CI: no desktop session, so no XDG_RUNTIME_DIR.
    let mut cmd = ws.cmd(&["run", "spec.yaml", "--device", "wgpu", "--out", "r"]);
    cmd.env_remove("XDG_RUNTIME_DIR");
    let out = crate::support::output(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("XDG_RUNTIME_DIR"), "{}", out.stderr);
    assert!(out.stderr.starts_with("device: wgpu ("), "{}", out.stderr);
}

#[test]
fn wgpu_without_an_adapter_is_a_clear_error() {
    let ws = Workspace::new();
    let mut cmd = ws.cmd(&[
        "run",
        pipeline("iris-mlp").to_str().unwrap(),
        "--device",
        "wgpu",
        "--out",
        "r",
    ]);
    // Hide every Vulkan driver and every EGL vendor library from the loaders.
    cmd.env("VK_ICD_FILENAMES", "/nonexistent")
        .env("VK_DRIVER_FILES", "/nonexistent")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent");
    let out = crate::support::output(cmd);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: no usable wgpu adapter: none found ("),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .ends_with("(use --device cpu or --device auto)\n"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    assert!(!ws.path().join("r").exists());
}

#[test]
fn a_wgpu_run_audits_bitwise_on_wgpu_and_within_tolerance_on_the_cpu() {
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.run(&["run", "spec.yaml", "--device", "wgpu", "--out", "r", "-q"])
        .success();
    let audit = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "r/manifest.intoto.json",
            "--root",
            ".",
            "--challenge",
            "00",
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        ws.run(&args).success().json()
    };
    let v = audit(&[]);
    assert_eq!(
        (v["trained_on"].as_str(), v["replayed_on"].as_str()),
        (Some("wgpu"), Some("wgpu"))
    );
    for s in v["segments"].as_array().unwrap() {
        assert_eq!(
            (s["status"].as_str(), s["comparison"].as_str()),
            (Some("pass"), Some("bitwise")),
            "{s}"
        );
    }
    assert_eq!(crate::support::check(&v, "replay")["status"], "pass");
    // Another backend compares within tolerances, and only when the auditor asks for it.
    let out = ws.run(&[
        "audit",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--device",
        "cpu",
        "-q",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            2,
            "",
            "error: the run trained on wgpu; a replay on cpu can only be compared within tolerances, not bitwise: pass --tolerance to accept that, or replay on wgpu\n"
        )
    );
    let v = audit(&["--device", "cpu", "--tolerance"]);
    assert_eq!(v["replayed_on"], "cpu");
    let replay = crate::support::check(&v, "replay");
    assert_eq!(replay["status"], "warn");
    assert!(
        replay["detail"]
            .as_str()
            .unwrap()
            .ends_with("trained on wgpu: compared within tolerances, not bitwise (--tolerance)"),
        "{replay}"
    );
    let segments = v["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2);
    for s in segments {
        assert_eq!(
            (s["status"].as_str(), s["comparison"].as_str()),
            (Some("pass"), Some("tolerance")),
            "{s}"
        );
        let d = &s["distance"];
        // Far inside the documented tolerances (1e-4 and 1e-3).
        assert!(d["linf"].as_f64().unwrap() < 1e-5, "{d}");
        assert!(d["relative_l2"].as_f64().unwrap() < 1e-5, "{d}");
    }
}
