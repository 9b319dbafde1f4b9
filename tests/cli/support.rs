//! The shared harness: a temp workspace, a way to run the binary, and file helpers.

// The verify-only build runs only the offline tests, which use a few of these helpers.
#![cfg_attr(not(feature = "train"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a finished command returned.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Exit 0 and nothing on stderr: the default expectation of every successful command.
    pub fn success(self) -> Self {
        assert_eq!(
            (self.code, self.stderr.as_str()),
            (0, ""),
            "expected exit 0 and an empty stderr\nstdout:\n{}",
            self.stdout
        );
        self
    }

    /// Exit 0, with whatever progress or notices the test then checks on stderr.
    pub fn success_with_stderr(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temporary directory to run commands in.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A workspace holding a copy of `fixtures/offline`: a signed run in `run/`, its data,
    /// spec and public key `signer.pub`.
    pub fn golden() -> Workspace {
        let ws = Workspace::new();
        let from = repo().join("fixtures/offline");
        let mut stack = vec![PathBuf::new()];
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
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditai"));
        cmd.args(args).current_dir(self.path());
        // libwayland complains on stderr when probing EGL without a runtime dir.
        let xdg = self.path().join(".xdg");
        std::fs::create_dir_all(&xdg).unwrap();
        cmd.env("XDG_RUNTIME_DIR", &xdg)
            .env("AUDITAI_CACHE_DIR", self.path().join(".cache"))
            .env_remove("BURN_DEVICE")
            // Help text wraps to COLUMNS when set: the snapshots assume the default width.
            .env_remove("COLUMNS")
            .env_remove("AUDITAI_SIGNING_KEY")
            .env_remove("AUDITAI_SIGNING_KEY_FILE");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        output(self.cmd(args))
    }

    /// Write a spec file whose data path is absolute (into the repo's fixtures).
    pub fn spec(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// A copy of the iris data and `spec.yaml`, a two-epoch MLP on it: a run small enough to
    /// train, tamper with and anchor in a test.
    pub fn tiny_spec(&self) {
        std::fs::copy(
            repo().join("fixtures/iris.csv"),
            self.path().join("iris.csv"),
        )
        .unwrap();
        std::fs::write(
            self.path().join("spec.yaml"),
            "version: 1\nname: tiny\nseed: 5\ndata:\n  path: iris.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [8]\ntraining:\n  epochs: 2\n",
        )
        .unwrap();
    }

    /// [`Workspace::tiny_spec`] trained on the CPU into `r/`, signed with a new key `me.key`
    /// (public key `me.pub`); returns the manifest's path.
    pub fn signed_run(&self) -> PathBuf {
        self.tiny_spec();
        self.signed_run_of_spec()
    }

    /// The workspace's `spec.yaml` trained on the CPU into `r/`, signed with a new key `me.key`
    /// (public key `me.pub`); returns the manifest's path.
    pub fn signed_run_of_spec(&self) -> PathBuf {
        self.run(&["keygen", "--out", "me"]).success();
        self.run(&[
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            "r",
            "-q",
            "--key",
            "me.key",
        ])
        .success();
        self.path().join("r/manifest.intoto.json")
    }

    /// `verify --json` of [`Workspace::signed_run`]'s manifest, trusting `me.pub`, with the
    /// data under the workspace: the exit code and the report.
    pub fn verify_json(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec![
            "verify",
            "r/manifest.intoto.json",
            "--key",
            "me.pub",
            "--root",
            ".",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        (out.code, out.json())
    }

    /// `audit --json -q` of the run in `r/`, with the data under the workspace: the exit code
    /// and the report.
    pub fn audit_json(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec![
            "audit",
            "r/manifest.intoto.json",
            "--root",
            ".",
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        (out.code, out.json())
    }

    /// Write `name`, a copy of the workspace's `spec.yaml` rewritten with `edit`.
    /// Fails when the edit changes nothing (its target text is missing from the spec).
    pub fn derive_spec(&self, name: &str, edit: impl Fn(String) -> String) {
        let spec = std::fs::read_to_string(self.path().join("spec.yaml")).unwrap();
        std::fs::write(self.path().join(name), edited(&spec, edit, name)).unwrap();
    }

    /// A bundled pipeline rewritten with `edit`, saved into the workspace with a copy of the
    /// fixtures it reads (data stays inside the project root, where `verify` looks for it).
    pub fn pipeline_copy(&self, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(pipeline(name)).unwrap();
        let fixtures = self.path().join("fixtures");
        std::fs::create_dir_all(&fixtures).unwrap();
        for f in ["iris.csv", "digits.csv", "breast_cancer.csv"] {
            std::fs::copy(repo().join("fixtures").join(f), fixtures.join(f)).unwrap();
        }
        let text = text.replace("../fixtures", "fixtures");
        assert!(
            text.contains("path: fixtures/"),
            "{name}: no fixture path to rewrite"
        );
        self.spec(&format!("{name}.yaml"), &edited(&text, edit, name))
    }
}

/// `edit(text)`, which must change something: a spec edit whose target text is missing (because
/// the example changed) fails the test instead of silently testing the unedited spec.
fn edited(text: &str, edit: impl Fn(String) -> String, name: &str) -> String {
    let out = edit(text.to_string());
    assert_ne!(
        out, text,
        "the edit of {name} changed nothing: its target text is missing"
    );
    out
}

pub fn output(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn pipeline(name: &str) -> PathBuf {
    repo().join("pipelines").join(format!("{name}.yaml"))
}

pub fn b3(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// Every file under `dir`, relative path -> blake3, sorted.
pub fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, b3(&p)));
            }
        }
    }
    out.sort();
    out
}

/// The row of a `verify` or `audit` JSON report whose label is exactly `name`, else the first
/// row whose check id is `name` (spaces read as underscores: `anchor evm` is `anchor_evm`).
pub fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let rows = v["checks"].as_array().unwrap();
    let id = name.replace(' ', "_");
    rows.iter()
        .find(|c| c["check"] == name)
        .or_else(|| rows.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("no check {name} in {v:#}"))
}

/// A DSSE envelope's decoded payload.
pub fn payload_of(envelope: &str) -> String {
    use base64::Engine;
    let env: serde_json::Value = serde_json::from_str(envelope).unwrap();
    let b = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

/// A DSSE envelope with its payload edited and its signatures left as they were: a forgery.
pub fn edit_payload(envelope: &str, edit: impl Fn(String) -> String) -> String {
    use base64::Engine;
    let mut env: serde_json::Value = serde_json::from_str(envelope).unwrap();
    let edited = edit(payload_of(envelope));
    env["payload"] =
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(edited));
    env.to_string()
}
