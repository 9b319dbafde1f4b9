//! Signed manifests: keys, signing, co-signing, verification, and every tampering it must catch.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::support::{Output, Workspace, output};

/// A workspace holding its own copy of the iris data and a 2-epoch spec, so tests can tamper
/// with the inputs.
struct Run {
    ws: Workspace,
}

impl Run {
    fn new() -> Run {
        let ws = Workspace::new();
        ws.tiny_spec();
        Run { ws }
    }

    fn path(&self) -> &Path {
        self.ws.path()
    }

    fn keygen(&self, prefix: &str) -> (PathBuf, PathBuf) {
        self.ws.run(&["keygen", "--out", prefix]).success();
        (
            self.path().join(format!("{prefix}.key")),
            self.path().join(format!("{prefix}.pub")),
        )
    }

    fn train(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            "r",
            "-q",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.ws.run(&args)
    }

    fn manifest(&self) -> PathBuf {
        self.path().join("r/manifest.intoto.json")
    }

    fn verify(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["verify", "r/manifest.intoto.json", "--root", ".", "--json"];
        args.extend_from_slice(extra);
        let out = self.ws.run(&args);
        assert!(
            matches!(out.code, 0 | 1),
            "exit {}: {}",
            out.code,
            out.stderr
        );
        let v = out.json();
        assert_eq!(v["ok"], out.code == 0);
        (out.code, v)
    }

    fn envelope(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.manifest()).unwrap()).unwrap()
    }

    fn write_envelope(&self, v: &serde_json::Value) {
        std::fs::write(self.manifest(), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }
}

/// The failed checks as `check: detail` lines.
fn failures(v: &serde_json::Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect()
}

fn signed_run() -> (Run, PathBuf) {
    let run = Run::new();
    let (key, public) = run.keygen("me");
    let v = run
        .train(&["--key", key.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(v["signed"], true);
    (run, public)
}

/// A change made to a copy of a finished run.
type Tamper = Box<dyn Fn(&Path)>;

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_signed_run_verifies_and_reports_every_check() {
    let (run, public) = signed_run();
    let (code, v) = run.verify(&["--key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{:?}", failures(&v));
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for expected in [
        "envelope",
        "signature 1",
        "signers",
        "subject model.bpk",
        "subject model.safetensors",
        "subject summary.json",
        "byproduct spec.yaml",
        "byproduct preprocessing.json",
        "byproduct metrics.jsonl",
        "directory checkpoints/",
        "dependency iris.csv",
        "dependency spec.yaml",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    // Outside a git repository the manifest says so, and verify warns instead of failing.
    let code = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "code")
        .unwrap();
    assert_eq!(code["status"], "warn");
    assert_eq!(
        code["detail"],
        "trained outside a git repository (no commit recorded)"
    );
    // The table form says so in words.
    let table = run.ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(table.code, 0);
    assert!(
        table
            .stdout
            .ends_with("verified: r/manifest.intoto.json (provenance manifest)\n"),
        "{}",
        table.stdout
    );
}

#[test]
fn tampered_files_fail_with_the_right_reason() {
    let (run, public) = signed_run();
    let key = ["--key", public.to_str().unwrap()];
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "data",
            Box::new(|d: &Path| flip_byte(&d.join("iris.csv"), 100)),
            "dependency iris.csv: changed: blake3 is ",
        ),
        (
            "weights",
            Box::new(|d: &Path| flip_byte(&d.join("r/model.bpk"), 200)),
            "subject model.bpk: changed: blake3 is ",
        ),
        (
            "spec",
            Box::new(|d: &Path| flip_byte(&d.join("spec.yaml"), 3)),
            "dependency spec.yaml: changed: blake3 is ",
        ),
        (
            "added checkpoint file",
            Box::new(|d: &Path| std::fs::write(d.join("r/checkpoints/extra.bpk"), b"x").unwrap()),
            "directory checkpoints/: added: extra.bpk",
        ),
        (
            "removed checkpoint",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("r/checkpoints/epoch-0001.bpk")).unwrap()
            }),
            "directory checkpoints/: missing: epoch-0001.bpk",
        ),
        (
            "changed checkpoint",
            Box::new(|d: &Path| flip_byte(&d.join("r/checkpoints/epoch-0002.optim.bpk"), 50)),
            "directory checkpoints/: changed: epoch-0002.optim.bpk",
        ),
        (
            "removed output",
            Box::new(|d: &Path| std::fs::remove_file(d.join("r/model.safetensors")).unwrap()),
            "subject model.safetensors: missing: ",
        ),
    ];
    for (what, tamper, reason) in cases {
        let snapshot = Workspace::new();
        copy_tree(run.path(), snapshot.path());
        tamper(snapshot.path());
        let shadow = Run { ws: snapshot };
        let (code, v) = shadow.verify(&key);
        assert_eq!(code, 1, "{what} not detected");
        let f = failures(&v);
        assert_eq!(f.len(), 1, "{what}: {f:?}");
        assert!(f[0].starts_with(reason), "{what}: {f:?}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let e = entry.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn tampered_envelopes_fail_with_the_right_reason() {
    let (run, public) = signed_run();
    let key = ["--key", public.to_str().unwrap()];
    let original = run.envelope();
    let check = |env: serde_json::Value, reason: &str| {
        run.write_envelope(&env);
        let (code, v) = run.verify(&key);
        assert_eq!(code, 1, "{reason}");
        let f = failures(&v);
        assert!(
            f.iter().any(|l| l.starts_with(reason)),
            "expected {reason}, got {f:?}"
        );
    };

    // One byte of the payload: a digest character, so the JSON still parses.
    let text =
        String::from_utf8(B64.decode(original["payload"].as_str().unwrap()).unwrap()).unwrap();
    let at = text.find("\"blake3\":\"").unwrap() + 10;
    let mut changed = text.clone().into_bytes();
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    let mut env = original.clone();
    env["payload"] = B64.encode(&changed).into();
    check(env, "signature 1: not valid under any trusted key");

    // One byte of the signature.
    let mut sig = B64
        .decode(original["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 0x01;
    let mut env = original.clone();
    env["signatures"][0]["sig"] = B64.encode(&sig).into();
    check(env, "signature 1: not valid under any trusted key");

    // A truncated signature.
    let mut env = original.clone();
    env["signatures"][0]["sig"] = B64.encode(&sig[..40]).into();
    check(
        env,
        "signature 1: signature is 40 bytes, an ed25519 signature is 64",
    );

    // Another payload type.
    let mut env = original.clone();
    env["payloadType"] = "application/json".into();
    check(
        env,
        "envelope: unknown payload type `application/json` (expected application/vnd.in-toto+json)",
    );

    // A payload that is not a Statement.
    let mut env = original.clone();
    env["payload"] = B64
        .encode(br#"{"_type":"https://example.com/Other"}"#)
        .into();
    check(
        env,
        "envelope: payload is not an in-toto Statement v1 (_type is `https://example.com/Other`)",
    );

    // Not JSON at all.
    std::fs::write(run.manifest(), b"not json").unwrap();
    let (code, v) = run.verify(&key);
    assert_eq!(code, 1);
    assert!(
        failures(&v)[0].starts_with("envelope: not a DSSE envelope: "),
        "{v}"
    );

    // Unsigned.
    let mut env = original.clone();
    env["signatures"] = serde_json::json!([]);
    check(env, "signatures: the manifest is unsigned");
}

#[test]
fn a_signature_over_another_payload_type_is_rejected() {
    let run = Run::new();
    let (key, public) = run.keygen("me");
    run.train(&[]).success();
    // Sign the same payload bytes, but under a different payload type, with openssl.
    let env = run.envelope();
    let body = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let other = "application/json";
    let mut pae = format!("DSSEv1 {} {} {} ", other.len(), other, body.len()).into_bytes();
    pae.extend_from_slice(&body);
    std::fs::write(run.path().join("pae.bin"), &pae).unwrap();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(run.path().join("pae.bin"))
        .arg("-out")
        .arg(run.path().join("sig.bin"));
    assert_eq!(output(cmd).code, 0);
    let sig = std::fs::read(run.path().join("sig.bin")).unwrap();
    let mut env = env.clone();
    env["signatures"] = serde_json::json!([{ "keyid": "", "sig": B64.encode(sig) }]);
    run.write_envelope(&env);
    let (code, v) = run.verify(&["--key", public.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        failures(&v)[0].starts_with("signature 1: not valid under any trusted key"),
        "{v}"
    );
}

#[test]
fn wrong_key_and_keys_outside_the_policy_are_not_trusted() {
    let (run, _) = signed_run();
    let (_, stranger) = run.keygen("stranger");
    let (code, v) = run.verify(&["--key", stranger.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        failures(&v),
        vec![
            format!(
                "signature 1: not valid under any trusted key (keyid hint {})",
                keyid(&run, "me")
            ),
            "signers: no signature by a trusted key".to_string()
        ]
    );
    std::fs::write(
        run.path().join("policy.yaml"),
        "version: 1\nsigners:\n  - name: stranger\n    key: stranger.pub\n",
    )
    .unwrap();
    let (code, v) = run.verify(&["--policy", "policy.yaml"]);
    assert_eq!(code, 1);
    assert!(
        failures(&v).contains(
            &"policy: 0 valid signature(s) from policy signers, the policy requires 1".to_string()
        ),
        "{v}"
    );

    // No trusted key at all is a failure, not a pass.
    let (code, v) = run.verify(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        failures(&v),
        vec![
            "signatures: 1 signature(s) present but no trusted key given: pass --key PUB or --policy FILE"
        ]
    );
}

fn keyid(run: &Run, prefix: &str) -> String {
    // The keyid of `prefix`.pub, computed the documented way: sha256 of the SPKI DER.
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(run.path().join(format!("{prefix}.pub")));
    let der = cmd.output().unwrap().stdout;
    use sha2::Digest as _;
    sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn co_signatures_and_policies_with_thresholds() {
    let (run, me) = signed_run();
    let (provider_key, provider) = run.keygen("provider");
    std::fs::write(
        run.path().join("policy.yaml"),
        "version: 1\nthreshold: 2\nsigners:\n  - name: ml-team\n    key: me.pub\n  - name: data-provider\n    key: provider.pub\nrequired: [data-provider]\n",
    )
    .unwrap();
    let (code, v) = run.verify(&["--policy", "policy.yaml"]);
    assert_eq!(code, 1);
    assert!(
        failures(&v).contains(
            &"policy: 1 valid signature(s) from policy signers, the policy requires 2".to_string()
        ),
        "{v}"
    );

    let before = run.envelope();
    let out = run
        .ws
        .run(&[
            "sign",
            "r/manifest.intoto.json",
            "--key",
            provider_key.to_str().unwrap(),
        ])
        .success();
    assert!(
        out.stdout.starts_with("signed r/manifest.intoto.json as "),
        "{}",
        out.stdout
    );
    let after = run.envelope();
    // The payload and the first signature are untouched.
    assert_eq!(after["payload"], before["payload"]);
    assert_eq!(after["signatures"][0], before["signatures"][0]);
    assert_eq!(after["signatures"].as_array().unwrap().len(), 2);

    let (code, v) = run.verify(&["--policy", "policy.yaml"]);
    assert_eq!(code, 0, "{:?}", failures(&v));
    let (code, _) = run.verify(&[
        "--key",
        me.to_str().unwrap(),
        "--key",
        provider.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    // Signing twice with the same key is refused.
    let again = run.ws.run(&[
        "sign",
        "r/manifest.intoto.json",
        "--key",
        provider_key.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("already signed by"),
        "{}",
        again.stderr
    );
}

#[test]
fn openssl_keys_interoperate_both_ways() {
    let run = Run::new();
    // A key from openssl signs a run that auditai verifies.
    let mut genpkey = std::process::Command::new("openssl");
    genpkey
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(run.path().join("o.key"));
    assert_eq!(output(genpkey).code, 0);
    let mut chmod = std::process::Command::new("chmod");
    chmod.arg("600").arg(run.path().join("o.key"));
    assert_eq!(output(chmod).code, 0);
    let mut pubout = std::process::Command::new("openssl");
    pubout
        .args(["pkey", "-pubout", "-in"])
        .arg(run.path().join("o.key"))
        .arg("-out")
        .arg(run.path().join("o.pub"));
    assert_eq!(output(pubout).code, 0);
    run.train(&["--key", "o.key"]).success();
    let (code, v) = run.verify(&["--key", "o.pub"]);
    assert_eq!(code, 0, "{:?}", failures(&v));

    // A key from auditai keygen is read by openssl, which derives the same public key.
    let (key, public) = run.keygen("a");
    let mut read = std::process::Command::new("openssl");
    read.args(["pkey", "-pubout", "-in"]).arg(&key);
    let out = output(read);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, std::fs::read_to_string(&public).unwrap());
}

#[test]
fn keys_come_from_env_and_loose_permissions_are_refused() {
    let run = Run::new();
    let (key, public) = run.keygen("me");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run.train(&["--key", "me.key"]);
        assert_eq!(out.code, 2);
        assert_eq!(
            out.stderr,
            "error: me.key: private key is readable by group or others (mode 644); run `chmod 600 me.key`\n"
        );
        assert!(!run.path().join("r").exists());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let pem = std::fs::read_to_string(&key).unwrap();
    let mut cmd = run.ws.cmd(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--json",
    ]);
    cmd.env("AUDITAI_SIGNING_KEY", &pem);
    let out = output(cmd).success_with_stderr();
    assert!(!out.stderr.contains("PRIVATE KEY"), "secret printed");
    assert!(!out.stdout.contains("PRIVATE KEY"), "secret printed");
    assert!(!out.stderr.contains("unsigned"), "{}", out.stderr);
    let (code, _) = run.verify(&["--key", public.to_str().unwrap()]);
    assert_eq!(code, 0);

    let mut cmd = run
        .ws
        .cmd(&["run", "spec.yaml", "--device", "cpu", "--out", "r2", "-q"]);
    cmd.env(
        "AUDITAI_SIGNING_KEY",
        "-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n",
    );
    let bad = output(cmd);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .starts_with("error: AUDITAI_SIGNING_KEY: not an ed25519 private key in PEM form"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("nonsense"));

    // keygen never overwrites a key.
    let again = run.ws.run(&["keygen", "--out", "me"]);
    assert_eq!(again.code, 2);
    assert_eq!(
        again.stderr,
        "error: me.key: already exists; refusing to overwrite a key\n"
    );
}

#[test]
fn unsigned_runs_say_so_and_do_not_verify() {
    let run = Run::new();
    let out = run
        .ws
        .run(&["run", "spec.yaml", "--device", "cpu", "--out", "r"])
        .success_with_stderr();
    assert!(out.stderr.contains("notice: no signing key (--key, AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE); the manifest will be unsigned"));
    let (_, public) = run.keygen("me");
    let (code, v) = run.verify(&["--key", public.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(failures(&v), vec!["signatures: the manifest is unsigned"]);
}

#[test]
fn the_git_commit_is_recorded_and_checked() {
    let run = Run::new();
    let git = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        cmd.args(args)
            .current_dir(run.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com");
        output(cmd).success().stdout.trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(
        run.path().join(".gitignore"),
        "r/\n.cache/\n.xdg/\n*.key\n*.pub\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "data and spec"]);
    let head = git(&["rev-parse", "HEAD"]);
    let (key, public) = run.keygen("me");
    run.train(&["--key", key.to_str().unwrap()]).success();

    let statement: serde_json::Value = {
        let env = run.envelope();
        serde_json::from_slice(&B64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap()
    };
    let code = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "code")
        .unwrap()
        .clone();
    assert_eq!(code["digest"]["gitCommit"], head);
    assert_eq!(code["annotations"]["branch"], "main");
    assert_eq!(code["annotations"]["dirty"], false);

    let (status, v) = run.verify(&["--key", public.to_str().unwrap()]);
    assert_eq!(status, 0, "{:?}", failures(&v));
    let code_check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "code")
        .unwrap()
        .clone();
    assert_eq!(
        code_check["detail"],
        format!("commit {head} exists locally")
    );

    // The same manifest checked against another repository: the commit is not there.
    let other = Workspace::new();
    let mut init = std::process::Command::new("git");
    init.args(["init", "-q"]).current_dir(other.path());
    output(init).success();
    std::fs::copy(run.path().join("iris.csv"), other.path().join("iris.csv")).unwrap();
    std::fs::copy(run.path().join("spec.yaml"), other.path().join("spec.yaml")).unwrap();
    let out = run.ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--root",
        other.path().to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(
        failures(&out.json()),
        vec![format!(
            "code: commit {head} is not in the repository at {}",
            other.path().display()
        )]
    );
}

#[test]
fn inspect_summarises_without_verifying() {
    let (run, _) = signed_run();
    let out = run.ws.run(&["inspect", "r/manifest.intoto.json"]).success();
    for needle in [
        "│ pipeline ",
        "tiny",
        "│ seed ",
        "5",
        "iris.csv  sha256 ",
        "model.bpk  sha256 ",
        "│ commitment ",
        "commitment.json blake3 ",
        "│ transcript ",
        "2 segments, chain head ",
        "(not checked here; use auditai verify)",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} not in\n{}",
            out.stdout
        );
    }
    let json = run
        .ws
        .run(&["inspect", "r/manifest.intoto.json", "--json"])
        .success()
        .json();
    assert_eq!(json["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(json["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        json["predicate"]["buildDefinition"]["externalParameters"]["spec"]["seed"],
        5
    );
    let bad = run.ws.run(&["inspect", "spec.yaml"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .starts_with("error: spec.yaml: not a DSSE envelope: "),
        "{}",
        bad.stderr
    );
}
