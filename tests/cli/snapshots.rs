//! Snapshots (insta) of what people read: `--help`, and the tables and JSON of `verify` and
//! `inspect` on the committed golden run. A change to any of them shows up as a reviewable diff
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test` to accept).

use crate::support::Workspace;

#[test]
fn help_texts() {
    let ws = Workspace::new();
    for command in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["verify", "--help"],
        vec!["audit", "--help"],
        vec!["anchor", "--help"],
        vec!["anchor", "upgrade", "--help"],
    ] {
        let out = ws.run(&command).success();
        insta::assert_snapshot!(
            format!(
                "help_{}",
                command.join("_").trim_start_matches("--").replace('-', "")
            ),
            out.stdout
        );
    }
}

#[test]
fn verify_and_inspect_of_the_golden_run() {
    let ws = Workspace::golden();
    let verify = [
        "verify",
        "run/manifest.intoto.json",
        "--key",
        "signer.pub",
        "--root",
        ".",
    ];
    insta::assert_snapshot!("verify_table", ws.run(&verify).success().stdout);
    let mut json = verify.to_vec();
    json.push("--json");
    insta::assert_snapshot!("verify_json", ws.run(&json).success().stdout);
    let inspect = ws.run(&["inspect", "run/manifest.intoto.json"]).success();
    insta::assert_snapshot!("inspect_table", inspect.stdout);
}

/// The audit of the golden run: its table and JSON, with the replay times (the only values
/// that change from run to run) filtered out.
#[cfg(feature = "train")]
#[test]
fn audit_of_the_golden_run() {
    let ws = Workspace::golden();
    let audit = [
        "audit",
        "run/manifest.intoto.json",
        "--root",
        ".",
        "--challenge",
        "00",
        "-q",
    ];
    let filters = vec![
        (r"│ \d+\.\d\d +│", "│ [secs] │"),
        (r#""seconds": [0-9.e-]+"#, r#""seconds": "[secs]""#),
    ];
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!("audit_table", ws.run(&audit).success().stdout);
        let mut json = audit.to_vec();
        json.push("--json");
        insta::assert_snapshot!("audit_json", ws.run(&json).success().stdout);
    });
}
