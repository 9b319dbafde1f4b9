//! Careless flags and hostile files: auditai never destroys what it did not write, never follows
//! a manifest outside its root or into a FIFO, never lets a stray file pass, and never prints a
//! credential or a terminal escape sequence it read.

use std::path::Path;

use auditai::manifest::Statement;
use auditai::sign::{self, Envelope, SecretKey};

use crate::support::{Output, Workspace, check, output, tree};

/// Edit the signed statement and re-sign it with `me.key` (a forger holding the key).
fn reseal(ws: &Workspace, edit: impl FnOnce(&mut Statement)) {
    let m = ws.path().join("r/manifest.intoto.json");
    let mut st = auditai::manifest::open(&std::fs::read(&m).unwrap())
        .unwrap()
        .statement;
    edit(&mut st);
    let mut env = Envelope::new(sign::IN_TOTO_PAYLOAD_TYPE, &st.to_payload());
    env.sign(&SecretKey::read(&ws.path().join("me.key")).unwrap());
    std::fs::write(&m, env.to_bytes()).unwrap();
}

fn force(ws: &Workspace, cwd: &Path, spec: &str, out: &str) -> Output {
    let mut cmd = ws.cmd(&[
        "run", spec, "--device", "cpu", "--out", out, "--force", "-q",
    ]);
    cmd.current_dir(cwd);
    output(cmd)
}

#[test]
fn force_never_replaces_a_project_and_moves_old_runs_aside() {
    let ws = Workspace::new();
    ws.tiny_spec();
    // A project that happens to hold the files an old check took for a run directory.
    let project = ws.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("checkpoints")).unwrap();
    std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(project.join("metrics.jsonl"), "{}\n").unwrap();
    std::fs::copy(ws.path().join("spec.yaml"), project.join("spec.yaml")).unwrap();
    std::fs::copy(ws.path().join("iris.csv"), project.join("iris.csv")).unwrap();
    let refused = |cwd: &Path, spec: &str, out: &str, message: &str| {
        let before = tree(&project);
        let o = force(&ws, cwd, spec, out);
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (2, "", message),
            "--out {out} from {}",
            cwd.display()
        );
        assert_eq!(tree(&project), before, "--out {out} touched the project");
    };
    refused(
        &project,
        "spec.yaml",
        ".",
        "error: . is the current directory or one above it; refusing to replace it\n",
    );
    refused(
        &project.join("checkpoints"),
        "../spec.yaml",
        "..",
        "error: .. is the current directory or one above it; refusing to replace it\n",
    );
    refused(
        ws.path(),
        "project/spec.yaml",
        "project",
        "error: project is the spec's directory or one above it; refusing to replace it\n",
    );
    // A git work tree's root, even with a marker someone copied in.
    std::fs::write(project.join(".auditai-run"), "auditai.run-dir/v1\n").unwrap();
    refused(
        ws.path(),
        "spec.yaml",
        "project",
        "error: project is the root of a git work tree; refusing to replace it\n",
    );
    std::fs::remove_file(project.join(".auditai-run")).unwrap();
    std::fs::remove_dir_all(project.join(".git")).unwrap();
    let before = tree(&project);
    let o = force(&ws, ws.path(), "spec.yaml", "project");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: project is not an auditai run directory (no valid .auditai-run marker); refusing to replace it\n"
        )
    );
    assert_eq!(tree(&project), before);

    // A real previous run is moved aside, not deleted.
    ws.run(&["run", "spec.yaml", "--device", "cpu", "--out", "r", "-q"])
        .success();
    let old = tree(&ws.path().join("r"));
    let mut cmd = ws.cmd(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--force",
    ]);
    cmd.current_dir(ws.path());
    let o = output(cmd);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let aside: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("r.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        o.stderr.contains(&format!(
            "notice: --force moved the previous run aside to {}\n",
            aside[0]
        )),
        "{}",
        o.stderr
    );
    assert_eq!(tree(&ws.path().join(&aside[0])), old);
    assert!(ws.path().join("r/manifest.intoto.json").is_file());
    assert!(ws.path().join("r/.auditai-run").is_file());
}

#[test]
fn stray_files_fail_verify_and_audit_unless_declared() {
    let ws = Workspace::new();
    ws.signed_run();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "run directory")["status"], "pass");

    std::fs::write(ws.path().join("r/model_v2.safetensors"), b"other weights").unwrap();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "run directory")["detail"],
        "a file not named by the manifest: model_v2.safetensors (declare expected extras with --allow-extra NAME)"
    );
    let audit = |extra: &[&str]| {
        let mut args = vec!["--challenge", "00"];
        args.extend_from_slice(extra);
        ws.audit_json(&args)
    };
    let (code, v) = audit(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["schema"], "auditai.audit-report/v1");
    assert_eq!(
        check(&v, "run directory")["detail"],
        "run directory: a file not named by the manifest: model_v2.safetensors (declare expected extras with --allow-extra NAME)"
    );

    let (code, v) = ws.verify_json(&["--allow-extra", "model_v2.safetensors"]);
    assert_eq!(code, 0, "{v:#}");
    let (code, v) = audit(&["--allow-extra", "model_v2.safetensors"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "run directory")["status"], "pass");

    // Receipts and proofs are expected only for what auditai anchors (manifest, commitment).
    std::fs::write(ws.path().join("r/manifest.intoto.json.ots"), b"proof").unwrap();
    std::fs::write(ws.path().join("r/commitment.anchor.json"), b"{}").unwrap();
    std::fs::write(ws.path().join("r/model.bpk.ots"), b"not a proof").unwrap();
    let (code, v) = ws.verify_json(&["--allow-extra", "model_v2.safetensors"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "run directory")["detail"],
        "a file not named by the manifest: model.bpk.ots (declare expected extras with --allow-extra NAME)"
    );
}

#[test]
fn hostile_paths_symlinks_and_fifos_are_refused_not_followed() {
    let ws = Workspace::new();
    ws.signed_run();
    // A manifest that points the verifier outside its root, re-signed by the key holder.
    std::fs::write(ws.path().join("secret.txt"), "outside").unwrap();
    reseal(&ws, |st| {
        let deps = &mut st.predicate.build_definition.resolved_dependencies;
        let mut up = deps[0].clone();
        up.name = Some("../secret.txt".into());
        let mut abs = deps[0].clone();
        abs.name = Some("/etc/passwd".into());
        deps.push(up);
        deps.push(abs);
    });
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "dependency ../secret.txt")["detail"],
        "path `../secret.txt` is absolute or leaves its directory; refused"
    );
    assert_eq!(
        check(&v, "dependency /etc/passwd")["detail"],
        "path `/etc/passwd` is absolute or leaves its directory; refused"
    );

    // Subjects that are a symlink or a FIFO: reported, never followed or opened (a FIFO would
    // block the verifier forever).
    let ws = Workspace::new();
    ws.signed_run();
    let model = ws.path().join("r/model.bpk");
    std::fs::rename(&model, ws.path().join("model.bpk")).unwrap();
    std::os::unix::fs::symlink(ws.path().join("model.bpk"), &model).unwrap();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "subject model.bpk")["detail"],
        "is a symlink; not followed"
    );
    std::fs::remove_file(&model).unwrap();
    let c = std::ffi::CString::new(model.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string and mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "subject model.bpk")["detail"],
        "is not a regular file; not opened"
    );
    // A manifest that is itself a FIFO is an input error, not a hang.
    let out = ws.run(&["verify", "r/model.bpk"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (2, "error: r/model.bpk: is not a regular file\n")
    );
}

#[test]
fn terminal_control_characters_from_a_manifest_are_escaped() {
    let ws = Workspace::new();
    ws.signed_run();
    reseal(&ws, |st| {
        st.subject[0].name = Some("model\u{1b}[2J\u{1b}]0;pwned\u{7}.bpk\r".into());
    });
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
    ]);
    assert_eq!(out.code, 1);
    assert!(!out.stdout.contains('\u{1b}'), "{}", out.stdout);
    assert!(!out.stdout.contains('\r'), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(r"subject model\u{1b}[2J\u{1b}]0;pwned\u{7}.bpk\u{d}"),
        "{}",
        out.stdout
    );
    let out = ws.run(&["inspect", "r/manifest.intoto.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains('\u{1b}'), "{}", out.stdout);
}

#[test]
fn credentials_in_the_git_remote_never_reach_the_manifest_or_the_output() {
    let ws = Workspace::new();
    ws.tiny_spec();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(ws.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://oauth2:glpat-SECRETTOKEN@gitlab.example.com/team/model.git",
    ]);
    git(&["add", "spec.yaml", "iris.csv"]);
    git(&["commit", "-q", "-m", "x"]);
    let out = ws
        .run(&[
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            "r",
            "--json",
        ])
        .success_with_stderr();
    assert_eq!(out.json()["schema"], "auditai.run-report/v1");
    assert!(!out.stdout.contains("SECRET"));
    assert!(!out.stderr.contains("SECRET"));
    let manifest = std::fs::read(ws.path().join("r/manifest.intoto.json")).unwrap();
    let st = auditai::manifest::open(&manifest).unwrap().statement;
    let payload = String::from_utf8(st.to_payload()).unwrap();
    assert!(!payload.contains("SECRET"), "{payload}");
    assert!(
        payload.contains("git+https://gitlab.example.com/team/model.git"),
        "{payload}"
    );
    let inspect = ws.run(&["inspect", "r/manifest.intoto.json"]).success();
    assert!(!inspect.stdout.contains("SECRET"));
}

#[test]
fn data_outside_the_project_root_is_announced_at_run_and_refused_at_verify() {
    let ws = Workspace::new();
    let csv = crate::support::repo().join("fixtures/iris.csv");
    let spec = format!(
        "version: 1\nname: outside\nseed: 5\ndata:\n  path: {}\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [8]\ntraining:\n  epochs: 1\n",
        csv.display()
    );
    std::fs::write(ws.path().join("spec.yaml"), spec).unwrap();
    let out = ws
        .run(&[
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            "r",
            "--json",
        ])
        .success_with_stderr();
    let root = std::fs::canonicalize(ws.path()).unwrap();
    assert!(
        out.stderr.contains(&format!(
            "notice: {} lies outside the project root {}; the manifest records its absolute path, which `auditai verify` refuses (move it under the root)\n",
            csv.display(),
            root.display()
        )),
        "{}",
        out.stderr
    );
    let out = ws.run(&["verify", "r/manifest.intoto.json", "--json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(
        check(&v, &format!("dependency {}", csv.display()))["detail"],
        format!(
            "path `{}` is absolute or leaves its directory; refused",
            csv.display()
        )
    );
}

#[test]
fn resume_never_writes_or_prunes_through_a_symlinked_checkpoint_directory() {
    let ws = Workspace::new();
    ws.signed_run();
    // A run directory someone prepared: resumable (no manifest), its checkpoints a link.
    std::fs::remove_file(ws.path().join("r/manifest.intoto.json")).unwrap();
    std::fs::rename(ws.path().join("r/checkpoints"), ws.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(ws.path().join("elsewhere"), ws.path().join("r/checkpoints"))
        .unwrap();
    let before = tree(&ws.path().join("elsewhere"));
    let out = ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--resume",
        "-q",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            2,
            "",
            "error: r/checkpoints: is not a directory but a symlink or file; refusing to write or prune through it\n"
        )
    );
    assert_eq!(tree(&ws.path().join("elsewhere")), before);
}

#[test]
fn pruning_deletes_only_auditais_own_checkpoint_names() {
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.derive_spec("spec.yaml", |spec| {
        format!(
            "{}outputs:\n  checkpoints: last\n",
            spec.replace("epochs: 2", "epochs: 4")
        )
    });
    // A run directory started earlier, with the user's notes next to the checkpoints.
    let ckpt = ws.path().join("r/checkpoints");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ws.path().join("r/.auditai-run"), "auditai.run-dir/v1\n").unwrap();
    let mine = ["notes.txt", "epoch-0001.bpk.orig", "epoch-0002.bpk~"];
    for name in mine {
        std::fs::write(ckpt.join(name), "mine").unwrap();
    }
    ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--resume",
        "-q",
    ])
    .success();
    for name in mine {
        assert_eq!(std::fs::read_to_string(ckpt.join(name)).unwrap(), "mine");
    }
    assert!(ckpt.join("epoch-0004.bpk").exists());
    assert!(!ckpt.join("epoch-0002.optim.bpk").exists());
}
