//! What every build can do, the verify-only build (`--no-default-features`) included: verify,
//! inspect, hash, keygen and sign a committed run directory offline; and, in a build without a
//! feature, the commands that need it say which feature and exit 2.

use crate::support::{Workspace, check, repo};

#[test]
fn a_committed_run_verifies_inspects_and_hashes_offline() {
    let ws = Workspace::golden();
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
    assert_eq!(v["schema"], "auditai.verify-report/v1");
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
        out.stdout.ends_with(
            "NOT verified: run/manifest.intoto.json (provenance manifest): 1 check(s) failed\n"
        ),
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
    let ws = Workspace::golden();
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
    let ws = Workspace::golden();
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

/// The structure of a JSON value: object keys and value types, recursively, arrays as the union
/// of their elements. The code dependency's annotations are left out (they differ between a run
/// inside and outside git).
fn shape(v: &serde_json::Value, path: &str) -> std::collections::BTreeSet<String> {
    use serde_json::Value;
    let mut out = std::collections::BTreeSet::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if p.ends_with("resolvedDependencies[].annotations") {
                    continue;
                }
                out.insert(p.clone());
                out.extend(shape(x, &p));
            }
        }
        Value::Array(a) => {
            for x in a {
                out.extend(shape(x, &format!("{path}[]")));
            }
        }
        Value::Null => {
            out.insert(format!("{path}: null"));
        }
        Value::Bool(_) => {
            out.insert(format!("{path}: bool"));
        }
        Value::Number(_) => {
            out.insert(format!("{path}: number"));
        }
        Value::String(_) => {
            out.insert(format!("{path}: string"));
        }
    }
    out
}

fn payload(manifest: &[u8]) -> serde_json::Value {
    let st = auditai::manifest::open(manifest).unwrap().statement;
    serde_json::from_slice(&st.to_payload()).unwrap()
}

#[test]
fn the_manifest_example_in_the_docs_has_the_golden_manifests_shape() {
    let docs = std::fs::read_to_string(repo().join("docs/manifest.md")).unwrap();
    let after = docs.split("Its decoded payload:").nth(1).unwrap();
    let block = after.split("```json").nth(1).unwrap();
    let example: serde_json::Value =
        serde_json::from_str(block.split("```").next().unwrap()).unwrap();
    let golden =
        payload(&std::fs::read(repo().join("fixtures/offline/run/manifest.intoto.json")).unwrap());
    let (docs_shape, golden_shape) = (shape(&example, ""), shape(&golden, ""));
    assert_eq!(
        docs_shape
            .symmetric_difference(&golden_shape)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docs/manifest.md's example and fixtures/offline differ in structure: regenerate the stale one"
    );
}

#[cfg(feature = "train")]
#[test]
fn the_golden_manifest_has_the_shape_of_a_fresh_run() {
    let ws = Workspace::golden();
    let out = ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "fresh",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fresh = payload(&std::fs::read(ws.path().join("fresh/manifest.intoto.json")).unwrap());
    let golden = payload(&std::fs::read(ws.path().join("run/manifest.intoto.json")).unwrap());
    let (a, b) = (shape(&fresh, ""), shape(&golden, ""));
    assert_eq!(
        a.symmetric_difference(&b).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fixtures/offline/run is stale: regenerate it (see fixtures/README.md)"
    );
    // Same spec, data and seed: the same weights as the committed run.
    let digest = |p: &str| blake3::hash(&std::fs::read(ws.path().join(p)).unwrap());
    assert_eq!(digest("fresh/model.bpk"), digest("run/model.bpk"));
}
