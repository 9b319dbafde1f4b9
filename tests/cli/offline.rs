//! What every build can do, the verify-only build (`--no-default-features`) included: verify,
//! inspect, hash, keygen and sign a committed run directory offline; and, in a build without a
//! feature, the commands that need it say which feature and exit 2.

use crate::support::{Workspace, check, repo};

/// A copy of `fixtures/offline` (a signed run in `run/`, its data, spec and public key).
fn golden(ws: &Workspace) {
    let from = repo().join("fixtures/offline");
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        std::fs::create_dir_all(ws.path().join(&rel)).unwrap();
        for entry in std::fs::read_dir(from.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let r = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(r);
            } else {
                std::fs::copy(entry.path(), ws.path().join(&r)).unwrap();
            }
        }
    }
}

#[test]
fn a_committed_run_verifies_inspects_and_hashes_offline() {
    let ws = Workspace::new();
    golden(&ws);
    let out = ws.run(&[
        "verify",
        "run/manifest.intoto.json",
        "--key",
        "signer.pub",
        "--root",
        ".",
        "--json",
    ]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    let v = out.json();
    for row in [
        "envelope",
        "signature 1",
        "signers",
        "subject model.bpk",
        "directory checkpoints/",
        "dependency iris.csv",
        "dependency spec.yaml",
        "run directory",
    ] {
        assert_eq!(check(&v, row)["status"], "pass", "{row}: {v:#}");
    }
    // A flipped byte in the weights is caught by the verify-only build too.
    let model = ws.path().join("run/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let out = ws.run(&[
        "verify",
        "run/manifest.intoto.json",
        "--key",
        "signer.pub",
        "--root",
        ".",
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.ends_with("NOT verified: 1 check(s) failed\n"),
        "{}",
        out.stdout
    );

    let inspect = ws.run(&["inspect", "run/manifest.intoto.json"]);
    assert_eq!((inspect.code, inspect.stderr.as_str()), (0, ""));
    assert!(inspect.stdout.contains("golden"), "{}", inspect.stdout);
    let hash = ws.run(&["hash", "run/checkpoints"]);
    assert_eq!((hash.code, hash.stderr.as_str()), (0, ""));
    assert!(
        hash.stdout.ends_with("  run/checkpoints/\n"),
        "{}",
        hash.stdout
    );
}

#[test]
fn keygen_and_a_co_signature_work_offline() {
    let ws = Workspace::new();
    golden(&ws);
    let out = ws.run(&["keygen", "--out", "auditor"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = ws.run(&["sign", "run/manifest.intoto.json", "--key", "auditor.key"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.ends_with("(2 signature(s))\n"), "{}", out.stdout);
    let out = ws.run(&[
        "verify",
        "run/manifest.intoto.json",
        "--key",
        "signer.pub",
        "--key",
        "auditor.pub",
        "--root",
        ".",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        check(&out.json(), "signers")["detail"],
        "2 trusted signer(s)"
    );
}

#[cfg(not(feature = "train"))]
#[test]
fn commands_left_out_of_this_build_name_the_feature() {
    let ws = Workspace::new();
    golden(&ws);
    for (args, message) in [
        (
            vec!["run", "spec.yaml"],
            "error: auditai run needs the `train` feature, and this auditai was built without it (build with `cargo build --features train`, or with the default features)\n",
        ),
        (
            vec!["audit", "run/manifest.intoto.json"],
            "error: auditai audit needs the `train` feature, and this auditai was built without it (build with `cargo build --features train`, or with the default features)\n",
        ),
        (
            vec!["anchor", "run/manifest.intoto.json", "--ots"],
            "error: auditai anchor needs the `anchor` feature, and this auditai was built without it (build with `cargo build --features anchor`, or with the default features)\n",
        ),
        (
            vec!["verify", "run/manifest.intoto.json", "--chain", "local"],
            "error: checking anchors online (--rpc, --chain, --bitcoin-rpc) needs the `anchor` feature, and this auditai was built without it (build with `cargo build --features anchor`, or with the default features)\n",
        ),
    ] {
        let out = ws.run(&args);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (2, "", message),
            "{args:?}"
        );
    }
}
