//! Portable evidence: signed verdicts of `verify` and `audit`, policies that require them, and
//! model cards and CycloneDX ML-BOMs bound to their run.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Workspace, check, edit_payload, payload_of};

fn verdict_files(ws: &Workspace, kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(ws.path().join("r"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("verdict-{kind}-")) && n.ends_with(".intoto.json")
        })
        .collect();
    v.sort();
    v
}

fn payload(path: &std::path::Path) -> Value {
    serde_json::from_str(&payload_of(&std::fs::read_to_string(path).unwrap())).unwrap()
}

#[test]
fn verify_and_audit_write_signed_verdicts_that_verify_check() {
    let ws = Workspace::new();
    ws.signed_run();
    ws.run(&["keygen", "--out", "auditor"]).success();
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let path = PathBuf::from(out.json()["verdict"].as_str().unwrap());
    let v = payload(&ws.path().join(&path));
    assert_eq!(
        v["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(v["predicate"]["verificationResult"], "PASSED");
    assert_eq!(
        v["predicate"]["verifiedLevels"],
        serde_json::json!(["AUDITAI_VERIFIED"])
    );
    assert_eq!(v["predicate"]["auditai"]["kind"], "verify");
    assert_eq!(v["predicate"]["resourceUri"], "manifest.intoto.json");
    assert!(
        v["predicate"]["auditai"]["checks"]
            .as_array()
            .unwrap()
            .len()
            > 5
    );
    // The run directory with a verdict in it still verifies.
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // The verdict verifies under the auditor's key, and inspect shows it.
    let out = ws.run(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        "auditor.pub",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "verdict resource")["status"], "pass");
    let out = ws.run(&["inspect", path.to_str().unwrap()]).success();
    assert!(out.stdout.contains("verify PASSED"), "{}", out.stdout);

    // An audit verdict records the challenge and the replayed segments.
    let out = ws.run(&[
        "audit",
        "r/manifest.intoto.json",
        "--segments",
        "2",
        "--challenge",
        "00",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let audit = verdict_files(&ws, "audit");
    assert_eq!(audit.len(), 1);
    let v = payload(&audit[0]);
    let a = &v["predicate"]["auditai"]["audit"];
    assert_eq!(a["challenge"], "00");
    assert_eq!(a["challengeSource"], "explicit");
    assert_eq!(a["segments"].as_array().unwrap().len(), 2);
    assert_eq!(a["segmentsPassed"], 2);

    // --attest is for manifests; an existing --attest-out is never replaced.
    let out = ws.run(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        "auditor.pub",
        "--attest",
        "auditor.key",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: --attest applies to provenance manifests (training or pipeline runs)\n"
    );
    std::fs::write(ws.path().join("mine.txt"), "mine").unwrap();
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "--attest-out",
        "mine.txt",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("mine.txt already exists"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("mine.txt")).unwrap(),
        "mine"
    );
    // A failed verification still yields a verdict, which says FAILED (and verify fails on it).
    let mut w = std::fs::read(ws.path().join("r/model.bpk")).unwrap();
    w[0] ^= 1;
    std::fs::write(ws.path().join("r/model.bpk"), &w).unwrap();
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "--attest-out",
        "failed.intoto.json",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .ends_with("verdict: failed.intoto.json (FAILED, signed)\n"),
        "{}",
        out.stdout
    );
    let out = ws.run(&[
        "verify",
        "failed.intoto.json",
        "--key",
        "auditor.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "verdict result")["status"], "fail");
}

#[test]
fn tampered_or_misdirected_verdicts_fail_verify() {
    let ws = Workspace::new();
    ws.signed_run();
    ws.run(&["keygen", "--out", "auditor"]).success();
    ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "--attest-out",
        "r/v.intoto.json",
    ]);
    // Edited: the signature no longer holds.
    let text = std::fs::read_to_string(ws.path().join("r/v.intoto.json")).unwrap();
    let forged = edit_payload(&text, |p| p.replace("\"PASSED\"", "\"FAILED\""));
    std::fs::write(ws.path().join("r/forged.intoto.json"), forged).unwrap();
    let out = ws.run(&[
        "verify",
        "r/forged.intoto.json",
        "--key",
        "auditor.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "signature 1")["status"], "fail");
    // Pointed at another manifest: a second run's directory.
    ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r2",
        "-q",
        "--key",
        "me.key",
        "--force",
    ])
    .success();
    std::fs::copy(
        ws.path().join("r/v.intoto.json"),
        ws.path().join("r2/v.intoto.json"),
    )
    .unwrap();
    let out = ws.run(&[
        "verify",
        "r2/v.intoto.json",
        "--key",
        "auditor.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let row = check(&out.json(), "verdict resource").clone();
    assert_eq!(row["status"], "fail");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("not the document recorded (its sha256 is not the recorded"),
        "{row}"
    );
}

#[test]
fn a_policy_can_require_an_audit_verdict() {
    let ws = Workspace::new();
    ws.signed_run();
    ws.run(&["keygen", "--out", "auditor"]).success();
    ws.run(&["keygen", "--out", "stranger"]).success();
    let policy = |min: usize| {
        format!(
            "version: 1\nsigners:\n  - name: ml\n    key: me.pub\nverifiers:\n  - name: auditor\n    key: auditor.pub\nverdicts:\n  - kind: audit\n    by: [auditor]\n    min_segments: {min}\n"
        )
    };
    std::fs::write(ws.path().join("policy.yaml"), policy(2)).unwrap();
    let verify = || {
        ws.run(&[
            "verify",
            "r/manifest.intoto.json",
            "--policy",
            "policy.yaml",
            "--root",
            ".",
            "--json",
        ])
    };
    let out = verify();
    assert_eq!(out.code, 1, "no verdict yet: {}", out.stdout);
    let v = out.json();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "required_verdict")
        .unwrap()
        .clone();
    assert_eq!(row["detail"], "no verdict next to the manifest");
    // Signed by a key the policy does not name: refused.
    let audit = |key: &str| {
        ws.run(&[
            "audit",
            "r/manifest.intoto.json",
            "--segments",
            "2",
            "--challenge",
            "01",
            "--root",
            ".",
            "--attest",
            key,
            "-q",
        ])
    };
    assert_eq!(audit("stranger.key").code, 0);
    assert_eq!(verify().code, 1);
    // The auditor's verdict with 2 segments: accepted.
    assert_eq!(audit("auditor.key").code, 0);
    let out = verify();
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A policy that asks for more segments than were replayed: refused, saying why.
    std::fs::write(ws.path().join("policy.yaml"), policy(3)).unwrap();
    let out = verify();
    assert_eq!(out.code, 1);
    let v = out.json();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "required_verdict")
        .unwrap()
        .clone();
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("2 of 2 replayed segments matched, 3 required"),
        "{row}"
    );
    // A policy that wants the challenge read from the chain: an explicit one does not do.
    std::fs::write(
        ws.path().join("policy.yaml"),
        format!("{}    challenge: anchor\n    bitwise: true\n", policy(2)),
    )
    .unwrap();
    let out = verify();
    assert_eq!(out.code, 1);
    let v = out.json();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "required_verdict")
        .unwrap()
        .clone();
    assert_eq!(
        row["check"],
        "required verdict audit by auditor, at least 2 segments, bitwise, challenge from the anchor"
    );
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("a challenge from --challenge, the policy requires one read from the chain after the anchor"),
        "{row}"
    );
    // Those requirements belong to audit verdicts.
    std::fs::write(
        ws.path().join("policy.yaml"),
        "version: 1\nsigners:\n  - name: ml\n    key: me.pub\nverifiers:\n  - name: auditor\n    key: auditor.pub\nverdicts:\n  - kind: verify\n    by: [auditor]\n    bitwise: true\n",
    )
    .unwrap();
    let out = verify();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("min_segments, challenge and bitwise apply to `kind: audit` verdicts"),
        "{}",
        out.stderr
    );
}

/// The Python with the CycloneDX project's own library (`cyclonedx-python-lib`), which
/// `scripts/setup-debian.sh` installs.
/// Validate a CycloneDX 1.6 JSON file with the CycloneDX project's own (strict) validator.
pub(crate) fn assert_valid_bom(bom: &std::path::Path) {
    let python = cyclonedx_python();
    let validated = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nerr = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nprint(err or 'valid')\nsys.exit(1 if err else 0)",
            bom.to_str().unwrap(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); run scripts/setup-debian.sh or set AUDITAI_CYCLONEDX_PYTHON", python.display()));
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

fn cyclonedx_python() -> PathBuf {
    if let Some(p) = std::env::var_os("AUDITAI_CYCLONEDX_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/auditai/venv/bin/python")
}

#[test]
fn model_cards_and_cyclonedx_boms_are_bound_to_their_run() {
    let ws = Workspace::new();
    ws.signed_run();
    let spec = std::fs::read_to_string(ws.path().join("spec.yaml")).unwrap();
    std::fs::write(
        ws.path().join("card.yaml"),
        spec.replace("name: tiny", "name: carded")
            + "card:\n  intended_use: Teaching example for iris flowers.\n  out_of_scope: [Medical use]\n  owners: [{name: ML team, contact: ml@example.org}]\n  limitations: [150 rows]\n  ethical_considerations: [None known]\n",
    )
    .unwrap();
    ws.run(&[
        "run",
        "card.yaml",
        "--device",
        "cpu",
        "--out",
        "c",
        "-q",
        "--key",
        "me.key",
    ])
    .success();
    ws.run(&[
        "export",
        "c",
        "--format",
        "model-card",
        "--key",
        "me.pub",
        "--out",
        "card.md",
    ])
    .success();
    let card = std::fs::read_to_string(ws.path().join("card.md")).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("c/summary.json")).unwrap()).unwrap();
    let manifest = std::fs::read(ws.path().join("c/manifest.intoto.json")).unwrap();
    let st = auditai::manifest::open(&manifest).unwrap().statement;
    let weights = st
        .subject
        .iter()
        .find(|s| s.name.as_deref() == Some("model.safetensors"))
        .unwrap();
    for want in [
        "# Model card: carded",
        "| Parameters | 67 |",
        &format!("sha256 `{}`", weights.digest["sha256"]),
        "Teaching example for iris flowers.",
        "- Medical use",
        "- ML team (ml@example.org)",
        &format!("| Rows | {} (train", summary["rows"]["total"]),
        "| Class balance | setosa 50, versicolor 50, virginica 50 |",
        "(verified against the trusted keys given to export)",
    ] {
        assert!(card.contains(want), "the card lacks {want:?}:\n{card}");
    }
    let out = ws.run(&["verify", "card.md", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "document")["status"], "pass");

    // The CycloneDX BOM passes the CycloneDX project's own JSON schema validator.
    ws.run(&[
        "export",
        "c/manifest.intoto.json",
        "--format",
        "cyclonedx",
        "--out",
        "bom.json",
    ])
    .success();
    assert_valid_bom(&ws.path().join("bom.json"));
    let bom: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("bom.json")).unwrap()).unwrap();
    let model = &bom["metadata"]["component"];
    assert_eq!(model["type"], "machine-learning-model");
    assert_eq!(model["hashes"][0]["content"], weights.digest["sha256"]);
    assert_eq!(
        model["modelCard"]["modelParameters"]["task"],
        "classification"
    );
    let out = ws.run(&["verify", "bom.json", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);

    // Export replaces only a document it wrote.
    std::fs::write(ws.path().join("README.txt"), "mine").unwrap();
    let out = ws.run(&[
        "export",
        "c",
        "--format",
        "model-card",
        "--out",
        "README.txt",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("README.txt exists and is not a document auditai exported"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("README.txt")).unwrap(),
        "mine"
    );
    ws.run(&["export", "c", "--format", "model-card", "--out", "card.md"])
        .success();
    // Another run's card presented as this run's: detected.
    let other = card.replacen(
        "\"manifest\":\"c/manifest.intoto.json\"",
        "\"manifest\":\"r/manifest.intoto.json\"",
        1,
    );
    assert_ne!(other, card);
    std::fs::write(ws.path().join("swapped.md"), other).unwrap();
    let out = ws.run(&["verify", "swapped.md", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    let row = check(&out.json(), "document").clone();
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("not the document recorded (its sha256 is not the recorded"),
        "{row}"
    );
    // A run whose weights changed is refused for export (exit 1).
    let mut w = std::fs::read(ws.path().join("c/model.safetensors")).unwrap();
    let last = w.len() - 1;
    w[last] ^= 1;
    std::fs::write(ws.path().join("c/model.safetensors"), &w).unwrap();
    let out = ws.run(&["export", "c", "--format", "model-card"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: refusing c/manifest.intoto.json: file model.safetensors: "),
        "{}",
        out.stderr
    );
}

#[test]
fn a_verdict_is_anchored_with_its_manifest_in_one_batch() {
    let chain = crate::chain::Anvil::start(31337);
    let ws = Workspace::new();
    ws.signed_run();
    ws.run(&["keygen", "--out", "auditor"]).success();
    ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--attest",
        "auditor.key",
        "--attest-out",
        "r/verdict-verify-1.intoto.json",
    ]);
    let before = chain.block_number();
    let mut cmd = ws.cmd(&[
        "anchor",
        "r/manifest.intoto.json",
        "r/verdict-verify-1.intoto.json",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "-q",
    ]);
    cmd.env("AUDITAI_ANCHOR_KEY", crate::chain::DEV_KEY);
    crate::support::output(cmd).success();
    assert_eq!(chain.block_number(), before + 1, "one transaction for both");
    let out = ws.run(&[
        "verify",
        "r/verdict-verify-1.intoto.json",
        "--key",
        "auditor.pub",
        "--rpc",
        &chain.url,
        "--chain",
        "local",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(check(&out.json(), "anchor evm")["status"], "pass");
    // The manifest's run directory, with the verdict and both receipts, still verifies.
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}
