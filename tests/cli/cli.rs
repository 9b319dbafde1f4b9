//! The command surface: help and completions.

use crate::support::{Workspace, repo};

#[test]
fn committed_completions_are_fresh() {
    let ws = Workspace::new();
    for (shell, file) in [
        ("bash", "auditai.bash"),
        ("zsh", "_auditai"),
        ("fish", "auditai.fish"),
    ] {
        let out = ws.run(&["completions", shell]).success();
        let committed =
            std::fs::read_to_string(repo().join("completions").join(file)).unwrap_or_default();
        assert!(
            out.stdout == committed,
            "completions/{file} is stale: run `auditai completions {shell} > completions/{file}`"
        );
        assert!(
            out.stdout.contains("resume"),
            "{shell} script lacks run's flags"
        );
    }
}

#[test]
fn audit_help_names_its_challenge_sources() {
    let ws = Workspace::new();
    let help = ws.run(&["audit", "--help"]).success();
    for flag in [
        "--segments <K>",
        "--challenge <HEX>",
        "--challenge-from-anchor",
        "--device <DEVICE>",
        "Exit codes: 0 success; 1 verification or audit failed",
    ] {
        assert!(help.stdout.contains(flag), "{flag}:\n{}", help.stdout);
    }
    // The two challenge sources exclude each other.
    let out = ws.run(&[
        "audit",
        "m.json",
        "--challenge",
        "00",
        "--challenge-from-anchor",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

#[test]
fn help_documents_exit_codes_and_usage_errors_exit_2() {
    let ws = Workspace::new();
    let help = ws.run(&["run", "--help"]).success();
    assert!(help.stdout.contains(
        "Exit codes: 0 success; 1 verification or audit failed, a pipeline stage failed"
    ));
    assert!(help.stdout.contains("--resume"));
    let bad = ws.run(&["run", "x.yaml", "--device", "tpu"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("invalid value 'tpu'"), "{}", bad.stderr);
    let conflict = ws.run(&["run", "x.yaml", "--resume", "--force"]);
    assert_eq!(conflict.code, 2);
}
