//! The trust layer against an attacker: each finding of the trust-layer review, as the attack
//! that worked before, asserting the exit code, the message, and that no user file changed.

use serde_json::Value;

use crate::support::{Workspace, check, edit_payload, output};

fn write(ws: &Workspace, rel: &str, text: &str) {
    if let Some(p) = ws.path().join(rel).parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(ws.path().join(rel), text).unwrap();
}

/// The signed tiny run in `r/` and a CSV of rows to predict.
fn predictable() -> Workspace {
    let ws = Workspace::new();
    ws.signed_run();
    let iris = std::fs::read_to_string(ws.path().join("iris.csv")).unwrap();
    let rows: Vec<&str> = iris.lines().take(6).collect();
    write(&ws, "rows.csv", &(rows.join("\n") + "\n"));
    ws
}

#[test]
fn predict_log_never_cuts_a_file_that_is_not_a_log() {
    let ws = predictable();
    for (name, content) in [
        ("token.txt", "ghp_0123456789abcdef"),
        ("min.json", r#"{"a":1,"b":[1,2]}"#),
    ] {
        write(&ws, name, content);
        let out = ws.run(&[
            "predict", "r", "--input", "rows.csv", "--key", "me.pub", "--log", name, "-q",
        ]);
        assert_eq!(out.code, 2, "{name}: {out:?}");
        assert_eq!(
            out.stdout, "",
            "{name}: nothing is predicted before the log is usable"
        );
        assert_eq!(
            out.stderr,
            format!(
                "error: {name}:1: an incomplete last line that is not the start of a log entry: not a prediction log (nothing was changed)\n"
            )
        );
        assert_eq!(
            std::fs::read_to_string(ws.path().join(name)).unwrap(),
            content,
            "{name} changed"
        );
    }
}

#[test]
fn verify_checks_a_file_as_what_its_name_says_it_is() {
    let ws = Workspace::new();
    ws.signed_run();
    // A model card of the genuine run, saved under a manifest's name next to a backdoored model.
    ws.run(&[
        "export",
        "r",
        "--format",
        "model-card",
        "--key",
        "me.pub",
        "--out",
        "card.md",
    ])
    .success();
    let card = std::fs::read_to_string(ws.path().join("card.md")).unwrap();
    write(
        &ws,
        "evil/manifest.intoto.json",
        &card.replace("\"manifest\":\"r/", "\"manifest\":\"../r/"),
    );
    let out = ws.run(&["verify", "evil/manifest.intoto.json", "--key", "me.pub"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "evil/manifest.intoto.json is a model card, not a provenance or pipeline manifest"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("NOT verified: evil/manifest.intoto.json (model card): 1 check(s) failed\n"),
        "{}",
        out.stdout
    );
    // The card itself verifies as a card, and --expect insists on a kind.
    let out = ws.run(&["verify", "card.md", "--key", "me.pub"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.ends_with("verified: card.md (model card)\n"),
        "{}",
        out.stdout
    );
    let out = ws.run(&[
        "verify", "card.md", "--key", "me.pub", "--expect", "manifest", "--json",
    ]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["kind"], "model card");
    assert_eq!(check(&v, "document kind")["status"], "fail");
    let out = ws.run(&["verify", "card.md", "--expect", "nonsense"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`nonsense` is not a document kind"),
        "{}",
        out.stderr
    );
}

#[test]
fn cards_and_boms_seal_their_whole_body_and_verify_rehashes_the_model() {
    let ws = Workspace::new();
    ws.signed_run();
    for (format, out) in [("model-card", "card.md"), ("cyclonedx", "bom.cdx.json")] {
        ws.run(&[
            "export", "r", "--format", format, "--key", "me.pub", "--out", out,
        ])
        .success();
        ws.run(&["verify", out, "--key", "me.pub"]).success();
    }
    // Edited metrics, an added claim: the body no longer has its sealed digest.
    let card = std::fs::read_to_string(ws.path().join("card.md")).unwrap();
    for (name, edited) in [
        (
            "metric.md",
            card.replacen("accuracy: ", "accuracy: 0.99 (was ", 1),
        ),
        (
            "claim.md",
            format!("{card}\n- Approved for clinical use.\n"),
        ),
    ] {
        assert_ne!(edited, card);
        write(&ws, name, &edited);
        let out = ws.run(&["verify", name, "--key", "me.pub", "--json"]);
        assert_eq!(out.code, 1, "{name}");
        assert!(
            check(&out.json(), "document")["detail"]
                .as_str()
                .unwrap()
                .starts_with("the document's body is not the one its binding seals"),
            "{name}"
        );
    }
    let bom = std::fs::read_to_string(ws.path().join("bom.cdx.json")).unwrap();
    write(
        &ws,
        "bom2.cdx.json",
        &bom.replacen("\"supervised\"", "\"unsupervised\"", 1),
    );
    assert_eq!(
        ws.run(&["verify", "bom2.cdx.json", "--key", "me.pub"]).code,
        1
    );
    // A swapped model.bpk: the card still binds the manifest, and verify re-hashes the model.
    let model = ws.path().join("r/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[64] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let out = ws.run(&["verify", "card.md", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "subject model.bpk")["status"], "fail");
    // export never replaces a card a person edited.
    let out = ws.run(&[
        "export",
        "r",
        "--format",
        "model-card",
        "--out",
        "metric.md",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("was edited after auditai exported it"),
        "{}",
        out.stderr
    );
}

#[test]
fn export_includes_only_evaluations_signed_under_the_same_trust() {
    let ws = Workspace::new();
    ws.signed_run();
    // A hand-written, unsigned "PASSED, anchored-before" attestation about this run.
    let manifest = std::fs::read(ws.path().join("r/manifest.intoto.json")).unwrap();
    let payload = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [],
        "predicateType": "https://auditai.dev/evaluation/v1",
        "predicate": {
            "model": { "manifest": "r/manifest.intoto.json", "manifestBlake3": blake3::hash(&manifest).to_hex().to_string(), "verified": true },
            "evaluator": { "id": "x", "version": "1" },
            "startedOn": "2026-01-01T00:00:00Z", "finishedOn": "2026-01-01T00:00:00Z",
            "data": { "name": "d.csv", "sha256": "00", "blake3": "00", "rows": 1, "skipped": 0, "label": "species" },
            "task": "classification",
            "overall": { "rows": 1, "accuracy": 1.0 },
            "minSubgroupRows": 1,
            "leakage": { "status": "checked", "overlappingRows": 0, "referenceRows": 1 },
            "preRegistration": { "status": "anchored-before", "detail": "trust me" },
            "verdict": "PASSED"
        }
    });
    use base64::Engine;
    let env = serde_json::json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(payload.to_string()),
        "signatures": []
    });
    write(&ws, "fake.eval.intoto.json", &env.to_string());
    let out = ws.run(&[
        "export",
        "r",
        "--format",
        "model-card",
        "--key",
        "me.pub",
        "--eval",
        "fake.eval.intoto.json",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("refusing fake.eval.intoto.json: signatures: the manifest is unsigned"),
        "{}",
        out.stderr
    );
    let out = ws.run(&[
        "export",
        "r",
        "--format",
        "model-card",
        "--eval",
        "fake.eval.intoto.json",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("an evaluation is included only when its signatures hold"),
        "{}",
        out.stderr
    );
}

#[test]
fn unsigned_documents_cannot_make_verify_print_any_files_digest() {
    let ws = Workspace::new();
    ws.signed_run();
    write(&ws, "secret/token", "s3cr3t\n");
    let secret_digest = blake3::hash(b"s3cr3t\n").to_hex().to_string();
    // An unsigned prediction log naming an absolute path, an unsigned verdict climbing out.
    let log = format!(
        "{{\"schema\":\"auditai.prediction-log/v1\",\"seq\":0,\"time\":\"t\",\"input_blake3\":\"00\",\"output\":{{}},\"model\":{{\"manifest\":\"{}\",\"blake3\":\"{}\",\"verified\":true}},\"prev\":\"{}\"",
        ws.path().join("secret/token").display(),
        "00".repeat(32),
        "0".repeat(64)
    );
    let hash = blake3::hash(format!("{log}}}").as_bytes())
        .to_hex()
        .to_string();
    write(&ws, "p.jsonl", &format!("{log},\"hash\":\"{hash}\"}}\n"));
    let out = ws.run(&["verify", "p.jsonl", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(!out.stdout.contains(&secret_digest), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("is absolute or leaves its directory; refused"),
        "{}",
        out.stdout
    );
    // A manifest whose signature fails: its rows never show what the files hash to.
    let m = std::fs::read_to_string(ws.path().join("r/manifest.intoto.json")).unwrap();
    let forged = edit_payload(&m, |p| {
        p.replace("\"name\":\"summary.json\"", "\"name\":\"../secret/token\"")
    });
    write(&ws, "r/manifest.intoto.json", &forged);
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert!(!out.stdout.contains(&secret_digest), "{}", out.stdout);
    let model_row = check(&out.json(), "subject model.bpk")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(model_row, "blake3 (withheld: the signatures do not hold)");
}

#[test]
fn a_rewritten_prediction_log_is_only_as_covered_as_its_signed_checkpoint() {
    let ws = predictable();
    let predict = |ws: &Workspace, extra: &[&str]| {
        let mut args = vec![
            "predict", "r", "--input", "rows.csv", "--key", "me.pub", "--log", "p.jsonl", "-q",
        ];
        args.extend_from_slice(extra);
        ws.run(&args).success_with_stderr()
    };
    predict(&ws, &["--sign-with", "me.key"]);
    let out = ws.run(&[
        "verify",
        "p.jsonl",
        "--key",
        "me.pub",
        "--require-covered",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "log coverage")["status"], "pass");
    // More predictions without a checkpoint: an uncovered tail, reported apart.
    predict(&ws, &[]);
    let out = ws.run(&["verify", "p.jsonl", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0);
    let rows: Vec<Value> = out.json()["checks"].as_array().unwrap().clone();
    let coverage = rows.iter().rfind(|c| c["id"] == "log_coverage").unwrap();
    assert_eq!(coverage["status"], "warn");
    assert!(
        coverage["detail"]
            .as_str()
            .unwrap()
            .starts_with("5 of 10 entries covered"),
        "{coverage}"
    );
    let out = ws.run(&["verify", "p.jsonl", "--key", "me.pub", "--require-covered"]);
    assert_eq!(out.code, 1);
    // Someone rewrites an early entry and re-hashes the whole chain: the checkpoint catches it.
    let text = std::fs::read_to_string(ws.path().join("p.jsonl")).unwrap();
    let edited = text.replacen("\"row\":1}", "\"row\":99}", 1);
    assert_ne!(edited, text);
    let rehashed = rehash(&edited);
    write(&ws, "p.jsonl", &rehashed);
    let out = ws.run(&["verify", "p.jsonl", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(check(&out.json(), "log chain")["status"], "pass");
    let rows: Vec<Value> = out.json()["checks"].as_array().unwrap().clone();
    assert!(
        rows.iter()
            .any(|c| c["id"] == "log_coverage" && c["status"] == "fail"),
        "{rows:?}"
    );
}

/// A log with every entry's hash and link recomputed, as a forger with write access would.
fn rehash(text: &str) -> String {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in text.lines() {
        let body = &line[..line.rfind(",\"hash\":\"").unwrap()];
        let at = body.find("\"prev\":\"").unwrap() + 8;
        let body = format!("{}{prev}{}}}", &body[..at], &body[at + 64..]);
        let hash = blake3::hash(body.as_bytes()).to_hex().to_string();
        out.push_str(&format!(
            "{},\"hash\":\"{hash}\"}}\n",
            &body[..body.len() - 1]
        ));
        prev = hash;
    }
    out
}

#[test]
fn stages_cannot_read_secrets_from_auditais_environment_block() {
    let ws = Workspace::new();
    ws.run(&["keygen", "--out", "me"]).success();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: peek\nstages:\n  peek:\n    cmd: tr '\\000' '\\n' < /proc/$PPID/environ > seen.txt\n    outs: [seen.txt]\n",
    );
    let key = std::fs::read_to_string(ws.path().join("me.key")).unwrap();
    let mut cmd = ws.cmd(&["run", "pipeline.yaml", "-q"]);
    cmd.env("AUDITAI_SIGNING_KEY", &key)
        .env("AWS_SECRET_ACCESS_KEY", "aws-s3cr3t");
    let out = output(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    let seen = std::fs::read_to_string(ws.path().join("seen.txt")).unwrap();
    assert!(
        !seen.contains("PRIVATE KEY"),
        "the stage read the signing key"
    );
    assert!(!seen.contains("aws-s3cr3t"), "the stage read a credential");
    // The run was still signed with the key from the environment.
    let m = std::fs::read_to_string(ws.path().join("runs/peek/manifest.intoto.json")).unwrap();
    let env: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(env["signatures"].as_array().unwrap().len(), 1);
}

/// The demo pipeline of one stage, signed with `me.key`.
fn signed_pipeline() -> Workspace {
    let ws = Workspace::new();
    ws.run(&["keygen", "--out", "me"]).success();
    write(&ws, "in.txt", "1\n2\n");
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: p\nstages:\n  sort:\n    cmd: sort -r in.txt > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n",
    );
    ws.run(&["run", "pipeline.yaml", "-q", "--key", "me.key"])
        .success();
    ws
}

#[test]
fn a_lock_entry_backed_by_an_unsigned_manifest_is_not_trusted() {
    let ws = signed_pipeline();
    // Tamper with the out, and back the matching lock entry by an unsigned copy of the history's
    // manifest that records the tampered digest, placed inside history/ and elsewhere.
    write(&ws, "out.txt", "tampered\n");
    let tampered = blake3::hash(b"tampered\n").to_hex().to_string();
    let lock_path = ws.path().join("auditai.lock");
    let mut lock: Value = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    let good = lock["stages"]["sort"]["outs"][0]["blake3"]
        .as_str()
        .unwrap()
        .to_string();
    let history = ws.path().join(
        lock["stages"]["sort"]["producedBy"]["manifest"]
            .as_str()
            .unwrap(),
    );
    let text = std::fs::read_to_string(&history).unwrap();
    let mut env: Value =
        serde_json::from_str(&edit_payload(&text, |p| p.replace(&good, &tampered))).unwrap();
    env["signatures"] = Value::Array(Vec::new());
    let forged = env.to_string();
    for place in ["forged.intoto.json", "runs/p/history/forged.intoto.json"] {
        write(&ws, place, &forged);
        lock["stages"]["sort"]["outs"][0]["blake3"] = Value::String(tampered.clone());
        lock["stages"]["sort"]["producedBy"]["manifest"] = Value::String(place.into());
        lock["stages"]["sort"]["producedBy"]["blake3"] =
            Value::String(blake3::hash(forged.as_bytes()).to_hex().to_string());
        std::fs::write(&lock_path, serde_json::to_vec_pretty(&lock).unwrap()).unwrap();
        let out = ws.run(&["status", "pipeline.yaml", "--key", "me.key", "--json"]);
        assert_eq!(out.code, 1, "{place}: {}", out.stdout);
        let why = &out.json()["stages"][0]["why"][0];
        assert_eq!(why["reason"], "lock-not-backed", "{place}");
        let detail = why["detail"].as_str().unwrap();
        if place.starts_with("runs/") {
            assert!(detail.contains("the manifest is unsigned"), "{detail}");
        } else {
            assert!(
                detail.contains("is not in the run's history/ directory"),
                "{detail}"
            );
        }
    }
    // run does not sign over the tampered out: it puts back the out the signed run made, from
    // the run cache (whose entry the genuine, signed manifest backs).
    let out = ws.run(&["run", "pipeline.yaml", "-q", "--key", "me.key", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["stages"][0]["status"], "restored");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "2\n1\n"
    );
}

#[test]
fn graph_refuses_outs_that_would_overwrite_the_pipelines_own_files() {
    let ws = Workspace::new();
    write(&ws, "in.txt", "x");
    std::os::unix::fs::symlink("/etc", ws.path().join("etc-link")).unwrap();
    for (outs, deps, extra, want) in [
        (
            "[pipeline.yaml]",
            "[in.txt]",
            "",
            "out `pipeline.yaml` is (or holds) the pipeline spec",
        ),
        (
            "[auditai.lock]",
            "[in.txt]",
            "",
            "out `auditai.lock` is (or holds) the pipeline's lock",
        ),
        (
            "[.git/config]",
            "[in.txt]",
            "",
            "out `.git/config` is inside `.git`",
        ),
        (
            "[runs]",
            "[in.txt]",
            "",
            "out `runs` is (or holds) the pipeline run directory `runs/g`",
        ),
        (
            "[runs/g/x]",
            "[in.txt]",
            "",
            "out `runs/g/x` lies inside the pipeline run directory",
        ),
        (
            "[o.txt]",
            "[etc-link/passwd]",
            "",
            "dep `etc-link/passwd` goes through the symlink",
        ),
        (
            "[o.txt]",
            "[in.txt]",
            "outputs:\n  dir: /tmp/elsewhere\n",
            "lies outside the project",
        ),
    ] {
        write(
            &ws,
            "pipeline.yaml",
            &format!(
                "version: 1\nname: g\n{extra}stages:\n  s:\n    cmd: cp in.txt o.txt\n    deps: {deps}\n    outs: {outs}\n"
            ),
        );
        let before = std::fs::read_to_string(ws.path().join("pipeline.yaml")).unwrap();
        let out = ws.run(&["run", "pipeline.yaml", "-q"]);
        assert_eq!(out.code, 2, "{outs}: {out:?}");
        assert!(out.stderr.contains(want), "{outs}: {}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(ws.path().join("pipeline.yaml")).unwrap(),
            before
        );
    }
}

#[test]
fn a_stage_past_its_timeout_fails_and_secrets_in_env_are_warned_about() {
    let ws = Workspace::new();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: t\nstages:\n  slow:\n    cmd: sleep 30 && echo done > o.txt\n    outs: [o.txt]\n    timeout: 1s\n    env: [API_TOKEN]\n",
    );
    let started = std::time::Instant::now();
    let out = ws.run(&["run", "pipeline.yaml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        out.stderr.contains("stopped after its timeout of 1s"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "stage `slow` passes API_TOKEN through `env:`, whose value is recorded in plain text"
        ),
        "{}",
        out.stderr
    );
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: t\nstages:\n  s:\n    cmd: 'true'\n    timeout: soon\n",
    );
    let out = ws.run(&["run", "pipeline.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("timeout `soon` is not a duration"),
        "{}",
        out.stderr
    );
}

#[test]
fn two_runs_of_one_pipeline_do_not_interleave() {
    let ws = Workspace::new();
    write(
        &ws,
        "pipeline.yaml",
        "version: 1\nname: c\nstages:\n  s:\n    cmd: sleep 2 && echo x > o.txt\n    outs: [o.txt]\n",
    );
    let mut first = ws.cmd(&["run", "pipeline.yaml", "-q"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = ws.run(&["run", "pipeline.yaml", "-q"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("another auditai run of this pipeline is in progress"),
        "{}",
        out.stderr
    );
    assert!(first.wait().unwrap().success());
    let lock: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("auditai.lock")).unwrap()).unwrap();
    assert!(lock["stages"]["s"].is_object());
}
