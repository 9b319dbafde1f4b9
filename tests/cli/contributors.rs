//! Data owners' contributions: `contribute`, `data.sources` in `run` (refusals before anything
//! runs, per-source records and credit), `verify` and `audit` re-checking them, withheld data
//! revealed with a salt, cards and ML-BOMs listing the sources.

use std::path::Path;

use super::support::{Output, Workspace, check, repo};

/// Iris split between two owners, alternate rows each, so both hold every class.
fn two_files(ws: &Workspace) {
    let text = std::fs::read_to_string(repo().join("fixtures/iris.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut a, mut b) = (format!("{header}\n"), format!("{header}\n"));
    for (i, l) in lines.enumerate() {
        let f = if i % 2 == 0 { &mut a } else { &mut b };
        f.push_str(l);
        f.push('\n');
    }
    std::fs::write(ws.path().join("a.csv"), a).unwrap();
    std::fs::write(ws.path().join("b.csv"), b).unwrap();
}

/// `contribute FILE --key OWNER.key` with default terms, any of which `extra` overrides.
fn contribute(ws: &Workspace, file: &str, owner: &str, extra: &[&str]) -> Output {
    let key = format!("{owner}.key");
    let mut args = vec!["contribute", file, "--key", &key];
    for (flag, value) in [
        ("--license", "CC-BY-4.0"),
        ("--legal-basis", "Consent"),
        ("--ai-training", "allowed"),
        ("--expires", "2099-12-31"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    ws.run(&args)
}

const SPEC: &str = "version: 1
name: owners
seed: 3
data:
  sources:
    - path: a.csv
      contribution: a.csv.contribution.json
      owner: a.pub
    - path: b.csv
      contribution: b.csv.contribution.json
  label: species
  task: classification
model:
  type: mlp
  hidden: [8]
training:
  epochs: 2
  batch_size: 16
audit:
  every_steps: 3
";

/// Two owners (a: anywhere, address 0x11…; b: not in the US, address 0x22…), their statements
/// and the spec; keys `a`, `b` and the trainer's `me`.
fn owners(ws: &Workspace) {
    two_files(ws);
    for k in ["a", "b", "me"] {
        ws.run(&["keygen", "--out", k]).success();
    }
    let addr_a = "0x1111111111111111111111111111111111111111";
    let addr_b = "0x2222222222222222222222222222222222222222";
    contribute(
        ws,
        "a.csv",
        "a",
        &["--owner-name", "Owner A", "--reward-address", addr_a],
    )
    .success();
    contribute(
        ws,
        "b.csv",
        "b",
        &["--exclude-jurisdiction", "US", "--reward-address", addr_b],
    )
    .success();
    std::fs::write(ws.path().join("spec.yaml"), SPEC).unwrap();
}

fn run(ws: &Workspace, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "-q",
        "--key",
        "me.key",
    ];
    args.extend_from_slice(extra);
    ws.run(&args)
}

fn manifest_ext(ws: &Workspace) -> serde_json::Value {
    let env = std::fs::read_to_string(ws.path().join("r/manifest.intoto.json")).unwrap();
    let st: serde_json::Value = serde_json::from_str(&super::support::payload_of(&env)).unwrap();
    st["predicate"]["auditai"].clone()
}

#[test]
fn contribute_signs_the_terms_and_refuses_what_it_cannot_state() {
    let ws = Workspace::new();
    two_files(&ws);
    ws.run(&["keygen", "--out", "a"]).success();
    let out = contribute(&ws, "a.csv", "a", &["--jurisdiction", "eu", "--json"]).success();
    let v = out.json();
    assert_eq!(v["rows"], 75);
    assert_eq!(v["columns"], 5);
    let env = std::fs::read_to_string(ws.path().join("a.csv.contribution.json")).unwrap();
    let st: serde_json::Value = serde_json::from_str(&super::support::payload_of(&env)).unwrap();
    assert_eq!(st["predicateType"], "https://auditai.dev/contribution/v1");
    let p = &st["predicate"];
    assert_eq!(p["license"], "CC-BY-4.0");
    assert_eq!(p["legalBasis"], "dpv:Consent");
    assert_eq!(p["permissions"]["cawg.ai_training"], "allowed");
    assert_eq!(p["permissions"]["cawg.data_mining"], "notAllowed");
    assert_eq!(p["jurisdictions"], serde_json::json!(["EU"]));
    assert_eq!(p["expires"], "2099-12-31T23:59:59Z");
    assert_eq!(p["data"]["columns"][4]["type"], "text");
    assert_eq!(
        st["subject"][0]["digest"]["blake3"],
        super::support::b3(&ws.path().join("a.csv"))
    );

    // verify checks a statement on its own: who signed it only with --key.
    let o = ws.run(&["verify", "a.csv.contribution.json", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    let v = o.json();
    assert_eq!(check(&v, "signers")["status"], "claimed");
    assert_eq!(check(&v, "data a.csv")["status"], "pass");
    let o = ws.run(&[
        "verify",
        "a.csv.contribution.json",
        "--key",
        "a.pub",
        "--json",
    ]);
    assert_eq!(check(&o.json(), "signers")["status"], "pass");
    std::fs::write(ws.path().join("a.csv"), "x\n1\n").unwrap();
    let o = ws.run(&["verify", "a.csv.contribution.json", "--json"]);
    assert_eq!(o.code, 1);
    assert!(
        check(&o.json(), "data a.csv")["detail"]
            .as_str()
            .unwrap()
            .contains("is for other data")
    );
    two_files(&ws);
    let again = contribute(&ws, "a.csv", "a", &[]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("already exists; not replacing it"),
        "{}",
        again.stderr
    );
    for (flag, value, why) in [
        (
            "--license",
            "Not-A-Licence",
            "is not an SPDX licence expression",
        ),
        ("--legal-basis", "Whim", "is not a DPV legal basis"),
        ("--reward-address", "0x12", "is not an EVM address"),
        ("--jurisdiction", "Germany", "is not a jurisdiction"),
    ] {
        let o = contribute(&ws, "b.csv", "a", &[flag, value]);
        assert_eq!(o.code, 2, "{flag}");
        assert!(o.stderr.contains(why), "{flag}: {}", o.stderr);
    }
    let o = contribute(&ws, "b.csv", "a", &["--ai-inference", "constrained"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "error: a use is `constrained`: say what the constraints are with --constraint-info\n"
    );
    assert!(!ws.path().join("b.csv.contribution.json").exists());
}

#[test]
fn a_run_over_two_owners_records_them_and_verify_audit_and_exports_recheck() {
    let ws = Workspace::new();
    owners(&ws);
    let out = run(&ws, &["--jurisdiction", "DE", "--json"]).success();
    let summary = out.json();
    let credit = summary["credit"].as_array().cloned().unwrap_or_default();
    assert_eq!(credit.len(), 2, "{summary:#}");
    let ext = manifest_ext(&ws);
    assert_eq!(ext["jurisdiction"], "DE");
    let sources = ext["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["contribution"]["ownerName"], "Owner A");
    assert_eq!(
        sources[1]["contribution"]["excludedJurisdictions"],
        serde_json::json!(["US"])
    );
    let rows = &sources[0]["rows"];
    assert_eq!(rows["total"], 75);
    let split_sum = rows["train"].as_u64().unwrap()
        + rows["validation"].as_u64().unwrap()
        + rows["test"].as_u64().unwrap();
    assert_eq!(split_sum, 75);
    assert_eq!(sources[0]["credit"], credit[0]["value"]);
    assert!(
        ws.path()
            .join("r/contributions/source-2.contribution.json")
            .is_file()
    );

    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v:#}");
    let a = check(&v, "data source a.csv");
    assert_eq!(a["status"], "pass");
    assert!(
        a["detail"].as_str().unwrap().contains("owner Owner A"),
        "{a}"
    );
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("the data is the file the owner signed")
    );

    let (code, v) = ws.audit_json(&["--segments", "100"]);
    assert_eq!(code, 0, "{v:#}");
    let seg = &v["segments"][0];
    assert_eq!(
        seg["detail"],
        "replayed weights, optimizer state and per-source credit are bitwise identical"
    );

    let card = ws
        .run(&["export", "r/manifest.intoto.json", "--format", "model-card"])
        .success()
        .stdout;
    assert!(card.contains("### Data sources"), "{card}");
    assert!(card.contains("Processed in: DE"));
    assert!(card.contains("| a.csv | Owner A | CC-BY-4.0 | dpv:Consent | allowed / notAllowed / notAllowed | anywhere |"), "{card}");
    assert!(card.contains("anywhere except US"));
    let bom = ws
        .run(&["export", "r/manifest.intoto.json", "--format", "cyclonedx"])
        .success()
        .json();
    let comps = bom["components"].as_array().unwrap();
    std::fs::write(ws.path().join("bom.cdx.json"), bom.to_string()).unwrap();
    super::evidence::assert_valid_bom(&ws.path().join("bom.cdx.json"));
    let b = comps.iter().find(|c| c["bom-ref"] == "source:2").unwrap();
    assert_eq!(b["licenses"][0]["expression"], "CC-BY-4.0");
    assert!(b["data"][0]["governance"]["owners"].is_array());
}

#[test]
fn run_refuses_each_bad_source_before_anything_runs() {
    let ws = Workspace::new();
    owners(&ws);
    let refuse = |ws: &Workspace, extra: &[&str], want: &str| {
        let o = run(ws, extra);
        assert_eq!(o.code, 2, "{want}: {}", o.stderr);
        assert!(o.stderr.starts_with("error: data source "), "{}", o.stderr);
        assert!(o.stderr.contains(want), "want {want}: {}", o.stderr);
        assert!(
            !ws.path().join("r").exists(),
            "{want}: the run directory was touched"
        );
    };
    refuse(
        &ws,
        &["--jurisdiction", "US"],
        "b.csv.contribution.json: does not permit processing in US (allowed: anywhere except US)",
    );
    refuse(
        &ws,
        &[],
        "b.csv.contribution.json: limits where it may be processed (anywhere except US); the run declares no jurisdiction (--jurisdiction)",
    );
    // The spec pins owner a for a.csv: a statement by b for the same file is another owner's.
    std::fs::rename(
        ws.path().join("a.csv.contribution.json"),
        ws.path().join("a.orig.json"),
    )
    .unwrap();
    contribute(&ws, "a.csv", "b", &[]).success();
    refuse(&ws, &["--jurisdiction", "DE"], "but the spec expects owner");
    std::fs::remove_file(ws.path().join("a.csv.contribution.json")).unwrap();
    // A statement whose payload was edited no longer carries its owner's signature.
    let orig = std::fs::read_to_string(ws.path().join("a.orig.json")).unwrap();
    let forged = super::support::edit_payload(&orig, |p| p.replace("CC-BY-4.0", "CC0-1.0"));
    std::fs::write(ws.path().join("a.csv.contribution.json"), forged).unwrap();
    refuse(
        &ws,
        &["--jurisdiction", "DE"],
        "not signed by its declared owner",
    );
    std::fs::write(ws.path().join("a.csv.contribution.json"), &orig).unwrap();
    // The data changed after its owner signed.
    let a = ws.path().join("a.csv");
    let data = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, data.replacen("5.1", "5.2", 1)).unwrap();
    refuse(
        &ws,
        &["--jurisdiction", "DE"],
        "is for other data: the file's blake3 is",
    );
    std::fs::write(&a, &data).unwrap();
    // Expired terms.
    std::fs::remove_file(ws.path().join("b.csv.contribution.json")).unwrap();
    contribute(&ws, "b.csv", "b", &["--expires", "2020-01-01"]).success();
    refuse(
        &ws,
        &["--jurisdiction", "DE"],
        "expired at 2020-01-01T23:59:59Z",
    );
    std::fs::remove_file(ws.path().join("b.csv.contribution.json")).unwrap();
    contribute(&ws, "b.csv", "b", &["--ai-training", "notAllowed"]).success();
    refuse(
        &ws,
        &["--jurisdiction", "DE"],
        "cawg.ai_training is notAllowed",
    );
    std::fs::remove_file(ws.path().join("b.csv.contribution.json")).unwrap();
    // A missing statement.
    refuse(
        &ws,
        &["--jurisdiction", "DE"],
        "b.csv.contribution.json: No such file",
    );
    // A policy: every source needs a statement, and only listed licences.
    contribute(&ws, "b.csv", "b", &["--license", "GPL-3.0-only"]).success();
    std::fs::write(
        ws.path().join("policy.yaml"),
        "version: 1\nsigners: []\ncontributions:\n  required: true\n  licenses: [CC-BY-4.0]\n",
    )
    .unwrap();
    refuse(
        &ws,
        &["--jurisdiction", "DE", "--policy", "policy.yaml"],
        "licence GPL-3.0-only is not accepted by the policy (accepted: CC-BY-4.0)",
    );
    let spec = SPEC.replace("      contribution: b.csv.contribution.json\n", "");
    std::fs::write(ws.path().join("spec.yaml"), spec).unwrap();
    refuse(
        &ws,
        &["--jurisdiction", "DE", "--policy", "policy.yaml"],
        "has no contribution statement (`contribution:` in data.sources), and the policy requires one",
    );
    std::fs::write(
        ws.path().join("bad-policy.yaml"),
        "version: 1\nsigners: []\ncontributions:\n  licenses: [Not-A-Licence]\n",
    )
    .unwrap();
    let o = run(
        &ws,
        &["--jurisdiction", "DE", "--policy", "bad-policy.yaml"],
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("contributions.licenses: `Not-A-Licence` is not an SPDX licence id"),
        "{}",
        o.stderr
    );
    // Sources must share one header; the error names the file and line.
    std::fs::write(
        ws.path().join("spec.yaml"),
        SPEC.replace("      contribution: b.csv.contribution.json\n", ""),
    )
    .unwrap();
    let b = std::fs::read_to_string(ws.path().join("b.csv")).unwrap();
    std::fs::write(ws.path().join("b.csv"), b.replacen("species", "kind", 1)).unwrap();
    let o = run(&ws, &["--jurisdiction", "DE"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("error: b.csv:1: its columns differ from those of"),
        "{}",
        o.stderr
    );
    assert!(!ws.path().join("r").exists());
}

#[test]
fn a_withheld_source_is_claimed_until_its_salt_is_revealed() {
    let ws = Workspace::new();
    owners(&ws);
    std::fs::remove_file(ws.path().join("b.csv.contribution.json")).unwrap();
    let o = contribute(&ws, "b.csv", "b", &["--salted"]).success();
    assert!(
        o.stdout.contains("the salt is in b.csv.salt (mode 0600)"),
        "{}",
        o.stdout
    );
    let spec = SPEC.replace(
        "      contribution: b.csv.contribution.json\n",
        "      contribution: b.csv.contribution.json\n      salt: b.csv.salt\n",
    );
    let o = run(&ws, &["--jurisdiction", "FR"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("the data is withheld behind a salted commitment; give its salt"),
        "{}",
        o.stderr
    );
    std::fs::write(ws.path().join("spec.yaml"), spec).unwrap();
    run(&ws, &["--jurisdiction", "FR"]).success();
    let digest = super::support::b3(&ws.path().join("b.csv"));
    for f in [
        "r/manifest.intoto.json",
        "r/commitment.json",
        "r/summary.json",
    ] {
        let text = std::fs::read_to_string(ws.path().join(f)).unwrap();
        let text = if f.ends_with("intoto.json") {
            super::support::payload_of(&text)
        } else {
            text
        };
        assert!(
            !text.contains(&digest),
            "{f} holds the withheld file's digest"
        );
    }
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v:#}");
    let b = check(&v, "data source b.csv");
    assert_eq!(b["status"], "claimed");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("data withheld, committed by"),
        "{b}"
    );
    let (code, v) = ws.verify_json(&["--reveal", "b.csv=b.csv.salt"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "data source b.csv")["status"], "pass");
    let o = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--reveal",
        "b.csv",
    ]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "error: --reveal `b.csv`: expected SOURCE=SALT_FILE\n")
    );
    std::fs::write(
        ws.path().join("wrong.salt"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    let (code, v) = ws.verify_json(&["--reveal", "b.csv=wrong.salt"]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&v, "data source b.csv")["detail"],
        "revealed: the file and salt do not match the owner's commitment"
    );
    let (code, v) = ws.audit_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        check(&v, "data b.csv")["detail"]
            .as_str()
            .unwrap()
            .contains("withheld behind a salted commitment")
    );
    let (code, v) = ws.audit_json(&["--reveal", "b.csv=b.csv.salt"]);
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn a_forged_credit_is_caught_by_the_replay() {
    let ws = Workspace::new();
    owners(&ws);
    run(&ws, &["--jurisdiction", "DE"]).success();
    let dir = ws.path().join("r");
    let mut bodies = super::audit::bodies(&dir);
    let c = bodies[0].credit.as_mut().unwrap();
    c[0] *= 10.0;
    super::audit::reseal(&ws, &dir, bodies);
    let (code, v) = ws.audit_json(&["--segments", "100"]);
    assert_eq!(code, 1, "{v:#}");
    let first = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["index"] == 1)
        .unwrap();
    assert!(
        first["detail"]
            .as_str()
            .unwrap()
            .starts_with("the weights match but the per-source credit does not"),
        "{first}"
    );
}

/// Path of the reward test's npm tools.
pub(crate) fn npm_dir() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".cache/auditai/npm")
}

/// A two-owner run in `ws` with rewards written to `rewards.json` (pool 10^18 wei, 10 % to the
/// trainer `me`, whose address is 0x33…).
pub(crate) fn rewarded(ws: &Workspace) -> Output {
    owners(ws);
    run(ws, &["--jurisdiction", "DE"]).success();
    let keyid = auditai::sign::PublicKey::read(&ws.path().join("me.pub"))
        .unwrap()
        .keyid;
    let addr = format!("{keyid}=0x3333333333333333333333333333333333333333");
    ws.run(&[
        "rewards",
        "r",
        "--key",
        "me.pub",
        "--pool",
        "1000000000000000000",
        "--compute-share",
        "0.1",
        "--address",
        &addr,
        "--sign-with",
        "me.key",
        "-o",
        "rewards.json",
        "--json",
    ])
}

#[test]
fn rewards_split_the_pool_by_value_and_prove_each_claim() {
    let ws = Workspace::new();
    let v = rewarded(&ws).success().json();
    let parties = v["parties"].as_array().unwrap();
    assert_eq!(parties.len(), 3, "{v:#}");
    let total: u128 = parties
        .iter()
        .map(|p| p["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(total, 1_000_000_000_000_000_000);
    assert_eq!(parties[2]["role"], "compute");
    assert_eq!(parties[2]["amount"], "100000000000000000");
    let proof = ws
        .run(&[
            "rewards",
            "proof",
            "rewards.json",
            "0x1111111111111111111111111111111111111111",
        ])
        .success()
        .json();
    assert_eq!(proof["amount"], parties[0]["amount"]);
    assert_eq!(proof["root"], v["root"]);
    let none = ws.run(&[
        "rewards",
        "proof",
        "rewards.json",
        "0x4444444444444444444444444444444444444444",
    ]);
    assert_eq!(none.code, 1);
    assert_eq!(
        none.stderr,
        "error: rewards.json has no claim for 0x4444444444444444444444444444444444444444\n"
    );
    // The statement of the root is signed and bound to the run's manifest.
    let st = std::fs::read_to_string(ws.path().join("rewards.intoto.json")).unwrap();
    let st: serde_json::Value = serde_json::from_str(&super::support::payload_of(&st)).unwrap();
    assert_eq!(st["predicateType"], "https://auditai.dev/rewards/v1");
    assert_eq!(st["predicate"]["root"], v["root"]);
    assert_eq!(st["predicate"]["run"]["manifest"], "r/manifest.intoto.json");
    let o = ws.run(&["verify", "rewards.intoto.json", "--key", "me.pub"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    // A tampered tree is refused by `proof`, and an existing output is never replaced.
    let text = std::fs::read_to_string(ws.path().join("rewards.json")).unwrap();
    std::fs::write(
        ws.path().join("bad.json"),
        text.replacen("\"0x", "\"0x0", 1),
    )
    .unwrap();
    assert_eq!(
        ws.run(&[
            "rewards",
            "proof",
            "bad.json",
            "0x1111111111111111111111111111111111111111"
        ])
        .code,
        2
    );
    let again = ws.run(&[
        "rewards",
        "r",
        "--pool",
        "5",
        "--sign-with",
        "me.key",
        "-o",
        "rewards.json",
    ]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists; not replacing it"));
    let no_addr = ws.run(&[
        "rewards",
        "r",
        "--key",
        "me.pub",
        "--pool",
        "5",
        "--compute-share",
        "0.5",
        "--sign-with",
        "me.key",
        "-o",
        "x.json",
    ]);
    assert_eq!(no_addr.code, 2);
    assert!(
        no_addr
            .stderr
            .contains("no reward address for the run's signer"),
        "{}",
        no_addr.stderr
    );
    let unchecked = ws.run(&[
        "rewards",
        "r",
        "--pool",
        "5",
        "--compute-share",
        "0.5",
        "--sign-with",
        "me.key",
        "-o",
        "z.json",
    ]);
    assert_eq!(unchecked.code, 2);
    assert!(
        unchecked
            .stderr
            .contains("a compute share needs the run's signature checked (--key or --policy)"),
        "{}",
        unchecked.stderr
    );
    let no_verdict = ws.run(&[
        "rewards",
        "r",
        "--pool",
        "5",
        "--verifier-share",
        "0.5",
        "--sign-with",
        "me.key",
        "-o",
        "y.json",
    ]);
    assert_eq!(no_verdict.code, 2);
    assert!(
        no_verdict
            .stderr
            .contains("a verifier share needs at least one verdict"),
        "{}",
        no_verdict.stderr
    );
}

#[test]
fn shapley_values_retrain_every_subset_and_repeat_exactly() {
    let ws = Workspace::new();
    owners(&ws);
    run(&ws, &["--jurisdiction", "DE"]).success();
    let once = ws
        .run(&["rewards", "r", "--value", "shapley", "--json"])
        .success()
        .json();
    let twice = ws
        .run(&["rewards", "r", "--value", "shapley", "--json"])
        .success()
        .json();
    assert_eq!(once, twice);
    assert_eq!(once["method"], "shapley");
    assert_eq!(once["sources"].as_array().unwrap().len(), 2);
    let single = Path::new("single.yaml");
    let text = std::fs::read_to_string(repo().join("fixtures/iris.csv")).unwrap();
    std::fs::write(ws.path().join("iris.csv"), text).unwrap();
    std::fs::write(
        ws.path().join(single),
        "version: 1\nname: one\nseed: 1\ndata:\n  path: iris.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [4]\ntraining:\n  epochs: 1\n",
    )
    .unwrap();
    ws.run(&["run", "single.yaml", "--device", "cpu", "--out", "s", "-q"])
        .success();
    let o = ws.run(&["rewards", "s", "--value", "shapley"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "error: exact Shapley values need 2 to 6 data sources; the run has 1\n"
    );
}

/// What OpenZeppelin's own library says of the dump: its root, and that every proof verifies
/// and equals the one it computes from the values itself.
const OZ_CHECK: &str = r#"
const { StandardMerkleTree } = require(process.env.NPM_DIR + '/node_modules/@openzeppelin/merkle-tree');
const dump = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const tree = StandardMerkleTree.load(dump);
const fresh = StandardMerkleTree.of(dump.values.map(v => v.value), ['address', 'uint256']);
if (fresh.root !== tree.root) throw new Error(`root ${fresh.root} != ${tree.root}`);
for (const [i, v] of tree.entries()) {
  const proof = tree.getProof(i);
  if (!StandardMerkleTree.verify(tree.root, ['address', 'uint256'], v, proof)) throw new Error('proof ' + i);
  if (JSON.stringify(fresh.getProof(v)) !== JSON.stringify(proof)) throw new Error('proof differs ' + i);
}
console.log(tree.root);
"#;

/// `claim(address,uint256,bytes32[])` calldata.
fn claim_calldata(address: &str, amount: u128, proof: &[String]) -> String {
    use sha3::Digest;
    let selector = &sha3::Keccak256::digest(b"claim(address,uint256,bytes32[])")[..4];
    let word = |hex: &str| format!("{hex:0>64}");
    let mut data = format!("0x{}", hex::encode(selector));
    data.push_str(&word(address.trim_start_matches("0x")));
    data.push_str(&word(&format!("{amount:x}")));
    data.push_str(&word("60"));
    data.push_str(&word(&format!("{:x}", proof.len())));
    for p in proof {
        data.push_str(p.trim_start_matches("0x"));
    }
    data
}

#[test]
fn openzeppelin_reads_the_tree_and_a_distributor_pays_each_claim() {
    use serde_json::json;
    let ws = Workspace::new();
    let v = rewarded(&ws).success().json();
    let root = v["root"].as_str().unwrap().to_string();
    std::fs::write(ws.path().join("oz.js"), OZ_CHECK).unwrap();
    let oz = std::process::Command::new("node")
        .args(["oz.js", "rewards.json"])
        .env("NPM_DIR", npm_dir())
        .current_dir(ws.path())
        .output()
        .expect("node (run .ci/run to install it and @openzeppelin/merkle-tree)");
    assert!(
        oz.status.success(),
        "{}",
        String::from_utf8_lossy(&oz.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&oz.stdout).trim(), root);

    let contract = repo().join("fixtures/contracts/MerkleDistributor.sol");
    let solc = std::process::Command::new(npm_dir().join("node_modules/.bin/solcjs"))
        .args(["--bin", "--optimize", "-o", "solc-out"])
        .arg(&contract)
        .current_dir(ws.path())
        .output()
        .expect("solcjs (run .ci/run to install solc from npm)");
    assert!(
        solc.status.success(),
        "{}",
        String::from_utf8_lossy(&solc.stderr)
    );
    let bin = std::fs::read_dir(ws.path().join("solc-out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_MerkleDistributor.bin"))
        .unwrap();
    let bytecode = std::fs::read_to_string(bin).unwrap();

    let chain = super::chain::Anvil::start(31337);
    let from = chain.rpc("eth_accounts", json!([]))[0].clone();
    let mined = |tx: serde_json::Value| {
        let hash = chain.rpc("eth_sendTransaction", json!([tx]));
        chain.rpc("eth_getTransactionReceipt", json!([hash]))
    };
    let deploy = mined(json!({
        "from": from,
        "data": format!("0x{}{}", bytecode.trim(), root.trim_start_matches("0x")),
        "value": "0xde0b6b3a7640000",
    }));
    let distributor = deploy["contractAddress"].clone();
    for p in v["parties"].as_array().unwrap() {
        let address = p["address"].as_str().unwrap();
        let amount: u128 = p["amount"].as_str().unwrap().parse().unwrap();
        let proof = ws
            .run(&["rewards", "proof", "rewards.json", address])
            .success()
            .json();
        let proof: Vec<String> = serde_json::from_value(proof["proof"].clone()).unwrap();
        let wrong = json!({ "from": from, "to": distributor, "data": claim_calldata(address, amount + 1, &proof) });
        let err = chain
            .try_rpc("eth_call", json!([wrong, "latest"]))
            .unwrap_err();
        assert!(err.to_string().contains("invalid proof"), "{err}");
        let call = json!({ "from": from, "to": distributor, "data": claim_calldata(address, amount, &proof) });
        assert_eq!(mined(call.clone())["status"], "0x1", "{address}");
        let balance = chain.rpc("eth_getBalance", json!([address, "latest"]));
        assert_eq!(balance, json!(format!("{amount:#x}")), "{address}");
        let again = chain
            .try_rpc("eth_call", json!([call, "latest"]))
            .unwrap_err();
        assert!(again.to_string().contains("already claimed"), "{again}");
    }
    assert_eq!(
        chain.rpc("eth_getBalance", json!([distributor, "latest"])),
        json!("0x0")
    );
}

#[test]
fn sources_train_the_same_model_as_their_rows_in_one_file() {
    let ws = Workspace::new();
    owners(&ws);
    let a = std::fs::read_to_string(ws.path().join("a.csv")).unwrap();
    let b = std::fs::read_to_string(ws.path().join("b.csv")).unwrap();
    let body: String = b.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(ws.path().join("all.csv"), format!("{a}{body}")).unwrap();
    let single = SPEC.replace(
        "  sources:\n    - path: a.csv\n      contribution: a.csv.contribution.json\n      owner: a.pub\n    - path: b.csv\n      contribution: b.csv.contribution.json\n",
        "  path: all.csv\n",
    );
    std::fs::write(ws.path().join("single.yaml"), single).unwrap();
    let two = run(&ws, &["--jurisdiction", "DE", "--json"])
        .success()
        .json();
    let one = ws
        .run(&[
            "run",
            "single.yaml",
            "--device",
            "cpu",
            "--out",
            "one",
            "-q",
            "--json",
        ])
        .success()
        .json();
    assert_eq!(two["weights_blake3"], one["weights_blake3"]);
    assert!(one.get("credit").is_none());
}

#[test]
fn verify_fails_a_manifest_that_records_other_terms_than_the_owner_signed() {
    let ws = Workspace::new();
    owners(&ws);
    run(&ws, &["--jurisdiction", "DE"]).success();
    let dir = ws.path().join("r");
    let key = auditai::sign::SecretKey::read(&ws.path().join("me.key")).unwrap();
    // The trainer re-signs a manifest that says owner B allowed CC0, not what B signed.
    super::forge::reseal(&dir, super::audit::bodies(&dir), &key, |st| {
        let ext = st.predicate.auditai.as_mut().unwrap();
        ext.sources[1].contribution.as_mut().unwrap().terms.license = "CC0-1.0".into();
    });
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "signers")["status"], "pass");
    assert_eq!(
        check(&v, "data source b.csv")["detail"],
        "the manifest records other terms than the owner signed"
    );
    assert_eq!(check(&v, "data source a.csv")["status"], "pass");
}

#[test]
fn verdict_signers_share_the_verifier_part_and_a_single_source_run_has_nothing_to_split() {
    let ws = Workspace::new();
    rewarded(&ws).success();
    ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--attest",
        "me.key",
        "--attest-out",
        "v.intoto.json",
    ])
    .success();
    let keyid = auditai::sign::PublicKey::read(&ws.path().join("me.pub"))
        .unwrap()
        .keyid;
    let addr = format!("{keyid}=0x3333333333333333333333333333333333333333");
    let v = ws
        .run(&[
            "rewards",
            "r",
            "--key",
            "me.pub",
            "--pool",
            "1000",
            "--compute-share",
            "0.1",
            "--verifier-share",
            "0.2",
            "--verdict",
            "v.intoto.json",
            "--address",
            &addr,
            "--sign-with",
            "me.key",
            "-o",
            "with-verdict.json",
            "--json",
        ])
        .success()
        .json();
    let roles: Vec<&str> = v["parties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["data", "data", "compute", "verifier"]);
    assert_eq!(v["parties"][3]["amount"], "200");
    // The trainer and the verifier share one address: one leaf of 100 + 200.
    let proof = ws
        .run(&[
            "rewards",
            "proof",
            "with-verdict.json",
            "0x3333333333333333333333333333333333333333",
        ])
        .success()
        .json();
    assert_eq!(proof["amount"], "300");
    let text = std::fs::read_to_string(repo().join("fixtures/iris.csv")).unwrap();
    std::fs::write(ws.path().join("iris.csv"), text).unwrap();
    std::fs::write(
        ws.path().join("single.yaml"),
        "version: 1\nname: one\nseed: 1\ndata:\n  path: iris.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [4]\ntraining:\n  epochs: 1\n",
    )
    .unwrap();
    ws.run(&[
        "run",
        "single.yaml",
        "--device",
        "cpu",
        "--out",
        "s",
        "-q",
        "--key",
        "me.key",
    ])
    .success();
    let o = ws.run(&["rewards", "s"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: the run records no data sources (a spec with data.sources)\n"
        )
    );
    // A verdict about another run pays nobody.
    ws.run(&[
        "verify",
        "s/manifest.intoto.json",
        "--key",
        "me.pub",
        "--attest",
        "me.key",
        "--attest-out",
        "other.intoto.json",
    ])
    .success();
    let o = ws.run(&[
        "rewards",
        "r",
        "--key",
        "me.pub",
        "--pool",
        "1000",
        "--verifier-share",
        "0.2",
        "--verdict",
        "other.intoto.json",
        "--address",
        &addr,
        "--sign-with",
        "me.key",
        "-o",
        "x.json",
    ]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("is not a passed verdict about this run's manifest"),
        "{}",
        o.stderr
    );
}

#[test]
fn eval_compares_its_rows_with_the_training_rows_of_every_source() {
    let ws = Workspace::new();
    owners(&ws);
    run(&ws, &["--jurisdiction", "DE"]).success();
    // The second owner's rows: some of them trained the model.
    let out = ws.run(&[
        "eval",
        "r",
        "--data",
        "b.csv",
        "--key",
        "me.pub",
        "--sign-with",
        "me.key",
        "--json",
        "-q",
    ]);
    let v = out.json();
    let leak = &v["evaluation"]["leakage"];
    assert_eq!(leak["status"], "checked", "{v:#}");
    let overlapping = leak["overlappingRows"].as_u64().unwrap();
    assert!(overlapping > 40 && overlapping < 75, "{leak}");
    assert!(leak["referenceRows"].as_u64().unwrap() > 100, "{leak}");
}
