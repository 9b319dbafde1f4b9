//! The receiver of evidence, who has only some of the run: `verify --artifact` (is this file the
//! one that was signed?) and `verify --partial` (check what is here, say what is not).

use std::path::Path;

use crate::support::{Workspace, check};

/// A receiver's directory `recv/` holding only the manifest, the public key and `files`, copied
/// from the signed run `r/` (renamed as given).
fn receiver(ws: &Workspace, files: &[(&str, &str)]) {
    let recv = ws.path().join("recv");
    std::fs::create_dir_all(&recv).unwrap();
    for (from, to) in [
        ("r/manifest.intoto.json", "manifest.intoto.json"),
        ("me.pub", "me.pub"),
    ]
    .iter()
    .chain(files)
    {
        std::fs::copy(ws.path().join(from), recv.join(to)).unwrap();
    }
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_receiver_with_the_manifest_the_key_and_the_model_verifies_the_model() {
    let ws = Workspace::new();
    ws.signed_run();
    receiver(&ws, &[("r/model.safetensors", "delivered.safetensors")]);
    let out = ws.run(&[
        "verify",
        "recv/manifest.intoto.json",
        "--key",
        "recv/me.pub",
        "--artifact",
        "recv/delivered.safetensors",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.ends_with(
        "verified: recv/manifest.intoto.json (provenance manifest): signatures hold and the 1 given file(s) are in the signed statement; no other recorded file was checked\n"
    ), "{}", out.stdout);
    assert_eq!(out.stderr, "");
    // Nothing else the manifest records was looked for.
    assert!(!out.stdout.contains("missing"), "{}", out.stdout);
    let json = ws
        .run(&[
            "verify",
            "recv/manifest.intoto.json",
            "--key",
            "recv/me.pub",
            "--artifact",
            "recv/delivered.safetensors",
            "--json",
        ])
        .success()
        .json();
    let row = check(&json, "artifact recv/delivered.safetensors");
    assert_eq!(row["status"], "pass");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("is the subject model.safetensors of the statement (blake3 "),
        "{row}"
    );
}

#[test]
fn a_tampered_or_foreign_artifact_fails_and_says_which() {
    let ws = Workspace::new();
    ws.signed_run();
    receiver(&ws, &[("r/model.safetensors", "model.safetensors")]);
    flip_last_byte(&ws.path().join("recv/model.safetensors"));
    for given in [
        "recv/model.safetensors",
        "iris.csv",
        "recv/nothing-here.bin",
    ] {
        let out = ws.run(&[
            "verify",
            "recv/manifest.intoto.json",
            "--key",
            "recv/me.pub",
            "--artifact",
            given,
            "--json",
        ]);
        assert_eq!(out.code, 1, "{given}: {}", out.stdout);
        let v = out.json();
        assert_eq!(v["ok"], false);
        let row = check(&v, &format!("artifact {given}"));
        assert_eq!(row["status"], "fail", "{row}");
        if given != "recv/nothing-here.bin" {
            // The data is a dependency, never a subject: it is not "the file that was signed".
            assert_eq!(
                row["detail"],
                "matches no subject or byproduct of the statement by digest"
            );
        }
    }
    let out = ws.run(&[
        "verify",
        "recv/manifest.intoto.json",
        "--key",
        "recv/me.pub",
        "--artifact",
        "recv/model.safetensors",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.ends_with(
            "NOT verified: recv/manifest.intoto.json (provenance manifest): 1 check(s) failed\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn partial_checks_what_is_here_and_names_what_is_not() {
    let ws = Workspace::new();
    ws.signed_run();
    receiver(&ws, &[("r/model.safetensors", "model.safetensors")]);
    let args = [
        "verify",
        "recv/manifest.intoto.json",
        "--key",
        "recv/me.pub",
        "--root",
        "recv",
        "--partial",
    ];
    let out = ws.run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = ws.run(&[&args[..], &["--json"]].concat()).success().json();
    let (checked, absent, total) = (
        v["files"]["checked"].as_u64().unwrap(),
        v["files"]["absent"].as_u64().unwrap(),
        v["files"]["total"].as_u64().unwrap(),
    );
    assert_eq!(checked, 1, "{v}");
    assert_eq!(checked + absent, total);
    assert!(out.stdout.ends_with(&format!(
        "verified (partial): recv/manifest.intoto.json (provenance manifest): signatures hold; 1 of {total} recorded files checked, {absent} absent and not checked\n"
    )), "{}", out.stdout);
    assert_eq!(check(&v, "subject model.safetensors")["status"], "pass");
    // The training data the receiver never had is withheld, not verified.
    let data = check(&v, "dependency iris.csv");
    assert_eq!(data["status"], "absent");
    assert!(
        data["detail"]
            .as_str()
            .unwrap()
            .starts_with("withheld: not under recv"),
        "{data}"
    );
    assert_eq!(check(&v, "subject model.bpk")["status"], "absent");
    assert_eq!(check(&v, "run directory")["status"], "skip");
    // Without --partial the same directory fails, as before.
    let out = ws.run(&args[..args.len() - 1]);
    assert_eq!(out.code, 1);
    // A present file that differs still fails.
    flip_last_byte(&ws.path().join("recv/model.safetensors"));
    let v = ws.run(&[&args[..], &["--json"]].concat());
    assert_eq!(v.code, 1);
    let v = v.json();
    assert_eq!(check(&v, "subject model.safetensors")["status"], "fail");
}

#[test]
fn partial_and_artifact_are_refused_where_they_mean_nothing() {
    let ws = Workspace::new();
    ws.signed_run();
    let out = ws.run(&["verify", "me.pub", "--key", "me.pub", "--partial"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(
        out.stderr,
        "error: --partial and --artifact apply to provenance manifests (training or pipeline runs)\n"
    );
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--partial",
        "--artifact",
        "r/model.bpk",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

fn anchored_pair(ws: &Workspace, chain: &crate::chain::Anvil) {
    ws.signed_run();
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
    ])
    .success();
    let mut cmd = ws.cmd(&[
        "anchor",
        "r/manifest.intoto.json",
        "r2/manifest.intoto.json",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "-q",
    ]);
    cmd.env("AUDITAI_ANCHOR_KEY", crate::chain::DEV_KEY);
    crate::support::output(cmd).success();
}

#[test]
fn a_bundle_carries_the_anchor_and_a_receiver_checks_it_with_only_the_model() {
    let chain = crate::chain::Anvil::start(31337);
    let ws = Workspace::new();
    anchored_pair(&ws, &chain);
    std::fs::create_dir(ws.path().join("recv")).unwrap();
    let out = ws.run(&["bundle", "r", "-o", "recv/evidence.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "bundle: recv/evidence.json (manifest manifest.intoto.json, anchor receipt, 0 verdict file(s), 0 evaluation(s))\n"
    );
    // auditai never replaces a file.
    let again = ws.run(&["bundle", "r", "-o", "recv/evidence.json"]);
    assert_eq!(again.code, 2);
    assert_eq!(
        again.stderr,
        "error: recv/evidence.json exists; auditai does not replace it (choose another --out)\n"
    );
    std::fs::copy(
        ws.path().join("r/model.safetensors"),
        ws.path().join("recv/model.safetensors"),
    )
    .unwrap();
    let out = ws.run(&[
        "verify",
        "recv/evidence.json",
        "--key",
        "me.pub",
        "--artifact",
        "recv/model.safetensors",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = out.json();
    assert_eq!(check(&v, "anchor merkle path")["status"], "pass");
    assert_eq!(check(&v, "anchor evm local (31337)")["status"], "pass");
    assert_eq!(
        check(&v, "artifact recv/model.safetensors")["status"],
        "pass"
    );
    // No row names the private directory the bundle was unpacked into.
    assert!(!out.stdout.contains("auditai-bundle-"), "{}", out.stdout);
    // Without --artifact, every recorded file is absent and the anchor still checked.
    let out = ws.run(&["verify", "recv/evidence.json", "--key", "me.pub"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.lines().last().unwrap().starts_with(
            "verified (partial): recv/evidence.json (provenance manifest): signatures hold; 0 of "
        ),
        "{}",
        out.stdout
    );
    let out = ws.run(&["inspect", "recv/evidence.json"]).success();
    assert!(
        out.stdout
            .contains("manifest manifest.intoto.json, anchor receipt, 0 verdict file(s)"),
        "{}",
        out.stdout
    );
}

/// Replace `field`'s entry in the bundle at `path` with `bytes` (name kept, digest recomputed
/// unless `stale_digest`).
fn swap_entry(path: &Path, field: &str, bytes: &[u8], stale_digest: bool) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    b[field]["base64"] = base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into();
    if !stale_digest {
        b[field]["sha256"] = hex::encode(sha2::Sha256::digest(bytes)).into();
    }
    std::fs::write(path, serde_json::to_vec(&b).unwrap()).unwrap();
}

#[test]
fn a_bundle_with_a_stale_receipt_or_altered_bytes_fails() {
    let chain = crate::chain::Anvil::start(31337);
    let ws = Workspace::new();
    anchored_pair(&ws, &chain);
    // Another run's receipt in this run's bundle: the Merkle path does not include this manifest.
    ws.run(&["bundle", "r", "-o", "stale.json"]).success();
    let other = std::fs::read(ws.path().join("r2/manifest.anchor.json")).unwrap();
    swap_entry(&ws.path().join("stale.json"), "receipt", &other, false);
    let (code, v) = {
        let out = ws.run(&["verify", "stale.json", "--key", "me.pub", "--json"]);
        (out.code, out.json())
    };
    assert_eq!(code, 1, "{v}");
    assert_eq!(check(&v, "anchor merkle path")["status"], "fail");
    // A manifest whose bytes no longer match the digest the bundle records: refused unread.
    ws.run(&["bundle", "r", "-o", "altered.json"]).success();
    swap_entry(&ws.path().join("altered.json"), "manifest", b"{}", true);
    let out = ws.run(&["verify", "altered.json", "--key", "me.pub"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: altered.json: manifest.intoto.json: its bytes do not have the sha256 the bundle records\n"
    );
    // Another run's manifest under this bundle's name, digest recomputed: the signature still
    // holds (it is a signed manifest) but this run's receipt does not include it.
    ws.run(&["bundle", "r", "-o", "swapped.json"]).success();
    let m2 = std::fs::read(ws.path().join("r2/manifest.intoto.json")).unwrap();
    swap_entry(&ws.path().join("swapped.json"), "manifest", &m2, false);
    let out = ws.run(&["verify", "swapped.json", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "anchor merkle path")["status"], "fail");
}

#[test]
fn a_bundle_is_made_only_of_a_manifest_and_evaluation_attestations() {
    let ws = Workspace::new();
    ws.signed_run();
    let out = ws.run(&["bundle", "me.pub", "-o", "b.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: me.pub: not a DSSE envelope: "),
        "{}",
        out.stderr
    );
    let out = ws.run(&["bundle", "r", "--eval", "r/summary.json", "-o", "b.json"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: r/summary.json: not an evaluation attestation\n"
    );
    assert!(!ws.path().join("b.json").exists());
}
