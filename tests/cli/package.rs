//! `scripts/package.sh`: the release tarball and .deb, signed by auditai, checked by a receiver
//! with `verify --artifact`, and the .deb's `auditai` run from a clean root.

use std::process::Command;

use crate::support::{Workspace, output, repo};

#[test]
fn the_release_is_packed_signed_and_verifiable_by_artifact() {
    let ws = Workspace::new();
    for f in [
        "Cargo.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "scripts/package.sh",
        "packaging/release.yaml",
        "completions/auditai.bash",
        "completions/_auditai",
        "completions/auditai.fish",
    ] {
        let to = ws.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(f), to).unwrap();
    }
    // The binary under test, without its debug information (what a release binary also lacks).
    let bin = ws.path().join("auditai-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_auditai"), &bin).unwrap();
    assert!(Command::new("strip").arg(&bin).status().unwrap().success());
    ws.run(&["keygen", "--out", "release"]).success();

    // No key: refused before anything is built.
    let mut cmd = Command::new("bash");
    cmd.arg("scripts/package.sh")
        .current_dir(ws.path())
        .env("RELEASE_BIN", &bin)
        .env_remove("AUDITAI_SIGNING_KEY")
        .env_remove("AUDITAI_SIGNING_KEY_FILE");
    let out = output(cmd);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no signing key"), "{}", out.stderr);

    let mut cmd = Command::new("bash");
    cmd.arg("scripts/package.sh")
        .current_dir(ws.path())
        .env("RELEASE_BIN", &bin)
        .env("RELEASE_KEY", "release.key")
        .env("PACKAGE_LEVEL", "1")
        .env("SOURCE_DATE_EPOCH", "1765000000")
        .env("XDG_RUNTIME_DIR", ws.path())
        .env("AUDITAI_CACHE_DIR", ws.path().join(".cache"));
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.ends_with(
            "bundle: dist/auditai-release.bundle.json (manifest manifest.intoto.json, 0 verdict file(s), 0 evaluation(s))\n"
        ),
        "{}",
        out.stdout
    );

    // The .deb holds the binary, the man page and the completions where Debian looks.
    let deb = ws.path().join("dist/auditai-amd64.deb");
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for path in [
        "./usr/bin/auditai",
        "./usr/share/man/man1/auditai.1.gz",
        "./usr/share/bash-completion/completions/auditai",
        "./usr/share/zsh/vendor-completions/_auditai",
        "./usr/share/fish/vendor_completions.d/auditai.fish",
    ] {
        assert!(listing.contains(path), "{path} not in\n{listing}");
    }
    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg(f)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    assert_eq!(field("Package"), "auditai");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    // Unpacked into a clean root, the packaged binary runs.
    let root = ws.path().join("root");
    assert!(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    let v = Command::new(root.join("usr/bin/auditai"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(v.stdout).unwrap(),
        format!("auditai {}\n", env!("CARGO_PKG_VERSION"))
    );

    // A receiver with the bundle, the public key and a download checks it; a changed one fails.
    let verify = |artifact: &str| {
        ws.run(&[
            "verify",
            "dist/auditai-release.bundle.json",
            "--key",
            "release.pub",
            "--artifact",
            artifact,
        ])
    };
    for a in ["dist/auditai-amd64.deb", "dist/auditai-linux-x86_64.tar.gz"] {
        let out = verify(a);
        assert_eq!(out.code, 0, "{a}: {}", out.stdout);
    }
    let mut tampered = std::fs::read(&deb).unwrap();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    std::fs::write(ws.path().join("dist/other.deb"), tampered).unwrap();
    assert_eq!(verify("dist/other.deb").code, 1);
}

fn action(ws: &Workspace, step: &str, env: &[(&str, &str)]) -> crate::support::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/action.sh"))
        .arg(step)
        .current_dir(ws.path())
        .env("XDG_RUNTIME_DIR", ws.path())
        .env("AUDITAI_CACHE_DIR", ws.path().join(".cache"))
        .env_remove("AUDITAI_SIGNING_KEY")
        .env_remove("AUDITAI_ANCHOR_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(cmd)
}

#[test]
fn the_actions_install_step_maps_profiles_to_builds() {
    let ws = Workspace::new();
    for (profile, flags) in [
        ("verifier", "--no-default-features "),
        ("anchorer", "--no-default-features --features anchor "),
        ("trainer", ""),
    ] {
        let out = action(
            &ws,
            "install",
            &[
                ("AUDITAI_DRY_RUN", "1"),
                ("AUDITAI_PROFILE", profile),
                ("AUDITAI_REPOSITORY", "https://example.invalid/auditai"),
                ("AUDITAI_VERSION", "v0.1.0"),
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.stdout,
            format!(
                "cargo install --locked {flags}--git https://example.invalid/auditai --rev v0.1.0 auditai\n"
            )
        );
    }
    let out = action(
        &ws,
        "install",
        &[
            ("AUDITAI_DRY_RUN", "1"),
            ("AUDITAI_PROFILE", "everything"),
            ("AUDITAI_REPOSITORY", "https://example.invalid/auditai"),
            ("AUDITAI_VERSION", "v0.1.0"),
        ],
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "action: profile must be verifier, anchorer or trainer, not 'everything'\n"
    );
}

#[test]
fn the_actions_run_step_runs_auditai_with_keys_only_when_given() {
    let ws = Workspace::new();
    ws.signed_run();
    let bin = env!("CARGO_BIN_EXE_auditai");
    // A verify passes through, exit code and all.
    let out = action(
        &ws,
        "run",
        &[
            ("AUDITAI_BIN", bin),
            (
                "AUDITAI_ARGS",
                "verify r/manifest.intoto.json --key me.pub --root .",
            ),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("verified: r/manifest.intoto.json (provenance manifest)\n")
    );
    let out = action(
        &ws,
        "run",
        &[
            ("AUDITAI_BIN", bin),
            ("AUDITAI_ARGS", "verify missing.json"),
        ],
    );
    assert_eq!(out.code, 2);
    // A secret that is not configured arrives as an empty input: the run is unsigned, not an
    // error about an empty key.
    let out = action(
        &ws,
        "run",
        &[
            ("AUDITAI_BIN", bin),
            ("AUDITAI_ARGS", "run spec.yaml --device cpu --out u -q"),
            ("AUDITAI_SIGNING_KEY", ""),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let manifest = std::fs::read_to_string(ws.path().join("u/manifest.intoto.json")).unwrap();
    assert!(manifest.contains("\"signatures\": []") || manifest.contains("\"signatures\":[]"));
    // Given a key, it signs, and the key is never printed.
    let pem = std::fs::read_to_string(ws.path().join("me.key")).unwrap();
    let out = action(
        &ws,
        "run",
        &[
            ("AUDITAI_BIN", bin),
            ("AUDITAI_ARGS", "run spec.yaml --device cpu --out s"),
            ("AUDITAI_SIGNING_KEY", &pem),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("(signed by "), "{}", out.stdout);
    let body = pem.lines().nth(1).unwrap();
    assert!(!out.stdout.contains(body) && !out.stderr.contains(body));
}
