//! `auditai predict` and `auditai eval`: verify-before-load refusals, column and row errors,
//! streaming in bounded memory, the prediction log's chain and anchor, acceptance criteria,
//! pre-registration, leakage, and the evaluation attestation.

use std::time::Duration;

use serde_json::Value;

use crate::chain::{Anvil, DEV_KEY};
use crate::support::{Workspace, check, edit_payload, output};

const HEADER: &str = "sepal_length,sepal_width,petal_length,petal_width,species";

/// The signed tiny iris run in `r/`, and `external.csv`: iris rows shifted so that none equals
/// a training row, with an id and a subgroup column.
fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.signed_run();
    let iris = std::fs::read_to_string(ws.path().join("iris.csv")).unwrap();
    let mut ext =
        String::from("id,group,petal_width,sepal_length,sepal_width,petal_length,species\n");
    for (i, line) in iris.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let sl: f64 = f[0].parse().unwrap();
        ext.push_str(&format!(
            "r{i},{},{},{:.2},{},{},{}\n",
            if i % 2 == 0 { "A" } else { "B" },
            f[3],
            sl + 0.01,
            f[1],
            f[2],
            f[4]
        ));
    }
    std::fs::write(ws.path().join("external.csv"), ext).unwrap();
    ws
}

fn write(ws: &Workspace, rel: &str, text: &str) {
    std::fs::write(ws.path().join(rel), text).unwrap();
}

#[test]
fn predict_refuses_a_model_that_does_not_verify() {
    let ws = workspace();
    write(
        &ws,
        "rows.csv",
        &format!("{HEADER}\n5.1,3.5,1.4,0.2,setosa\n"),
    );
    // No trust named: a usage error.
    let out = ws.run(&["predict", "r", "--input", "rows.csv"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("name whom you trust with --key or --policy"),
        "{}",
        out.stderr
    );
    // An untrusted signer.
    ws.run(&["keygen", "--out", "other"]).success();
    let out = ws.run(&["predict", "r", "--input", "rows.csv", "--key", "other.pub"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with(
            "error: cannot load the model: refusing r/manifest.intoto.json: signature 1: not valid under any trusted key"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    // Tampered weights.
    let good = std::fs::read(ws.path().join("r/model.bpk")).unwrap();
    let mut w = good.clone();
    let last = w.len() - 1;
    w[last] ^= 1;
    std::fs::write(ws.path().join("r/model.bpk"), &w).unwrap();
    let out = ws.run(&["predict", "r", "--input", "rows.csv", "--key", "me.pub"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with(
            "error: cannot load the model: refusing r/manifest.intoto.json: file model.bpk: changed: blake3 is "
        ),
        "{}",
        out.stderr
    );
    // Even --no-verify reads the weights only through the manifest's digest.
    let out = ws.run(&["predict", "r", "--input", "rows.csv", "--no-verify"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("file model.bpk: changed"),
        "{}",
        out.stderr
    );
    std::fs::write(ws.path().join("r/model.bpk"), &good).unwrap();
    // --no-verify loads it without checking the signers, loudly, and says so in every row.
    let out = ws.run(&["predict", "r", "--input", "rows.csv", "--no-verify"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.starts_with("WARNING: --no-verify"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.lines().nth(1).unwrap().ends_with(",false"),
        "{}",
        out.stdout
    );
    // An unsigned run.
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.run(&["keygen", "--out", "me"]).success();
    ws.run(&["run", "spec.yaml", "--device", "cpu", "--out", "u", "-q"])
        .success_with_stderr();
    write(
        &ws,
        "rows.csv",
        &format!("{HEADER}\n5.1,3.5,1.4,0.2,setosa\n"),
    );
    let out = ws.run(&["predict", "u", "--input", "rows.csv", "--key", "me.pub"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the manifest is unsigned"),
        "{}",
        out.stderr
    );
}

#[test]
fn predict_matches_columns_by_name_and_names_bad_rows() {
    let ws = workspace();
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "r", "--key", "me.pub"];
        args.extend_from_slice(extra);
        ws.run(&args)
    };
    // Columns in another order, an id and an extra column: one row out per row in.
    let out = predict(&["--input", "external.csv"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "row,id,prediction,p_setosa,p_versicolor,p_virginica,unseen,reason,model_verified"
    );
    assert_eq!(lines.len(), 151);
    assert!(lines[1].starts_with("1,r0,"), "{}", lines[1]);
    assert!(
        out.stderr.starts_with(
            "notice: ignored input column(s) the model does not use: group, species\n"
        ),
        "{}",
        out.stderr
    );
    let row: Vec<&str> = lines[1].split(',').collect();
    let total: f64 = row[3..6].iter().map(|p| p.parse::<f64>().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    // JSON Lines to a file.
    let out = predict(&[
        "--input",
        "external.csv",
        "--json",
        "--output",
        "p.jsonl",
        "-q",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(ws.path().join("p.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], "r0");
    assert_eq!(first["model_verified"], true);
    assert!(first["probabilities"]["setosa"].is_number());
    // Neither an existing output nor a file that is not a prediction log is written over.
    let kept = std::fs::read(ws.path().join("p.jsonl")).unwrap();
    let out = predict(&["--input", "external.csv", "--output", "p.jsonl"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: p.jsonl: already exists; pass another --output"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(ws.path().join("p.jsonl")).unwrap(), kept);
    write(&ws, "notes.txt", "my notes\n");
    let out = predict(&["--input", "external.csv", "--log", "notes.txt"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: notes.txt:1: not a log entry"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes.txt")).unwrap(),
        "my notes\n"
    );
    let out = predict(&[
        "--input",
        "external.csv",
        "--output",
        "o.csv",
        "--log",
        "o.csv",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: external.csv: --output and --log name the same file\n"
    );
    // The input is never written over.
    let before = std::fs::read(ws.path().join("external.csv")).unwrap();
    let out = predict(&["--input", "external.csv", "--output", "external.csv"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: external.csv: --output names the input file; auditai never writes over its input\n"
    );
    assert_eq!(
        std::fs::read(ws.path().join("external.csv")).unwrap(),
        before
    );
    // A missing feature, named.
    write(&ws, "few.csv", "sepal_length,sepal_width\n5.1,3.5\n");
    let out = predict(&["--input", "few.csv"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: few.csv:1: the input lacks 2 of the model's input columns: petal_length, petal_width\n"
    );
    // A gap is imputed as in training; a bad value yields an output row with an empty
    // prediction and the reason, never a missing row.
    write(
        &ws,
        "bad.csv",
        &format!("{HEADER}\n5.1,3.5,1.4,0.2,setosa\n5.0,,1.4,0.2,setosa\n4.9,x,1.4,0.2,setosa\n"),
    );
    let out = predict(&["--input", "bad.csv", "--output", "bad.out"]);
    assert_eq!(out.code, 0, "{out:?}");
    let written = std::fs::read_to_string(ws.path().join("bad.out")).unwrap();
    let rows: Vec<&str> = written.lines().collect();
    assert_eq!(rows.len(), 4, "{written}");
    assert!(rows[2].starts_with("2,setosa,"), "{}", rows[2]);
    assert_eq!(
        rows[3],
        "3,,,,,0,column `sepal_width`: `x` is not a number,true"
    );
    assert!(
        out.stderr
            .contains("not scored: row 3: column `sepal_width`: `x` is not a number\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("predicted 2 row(s), 1 could not be scored (their rows say why)"),
        "{}",
        out.stderr
    );
}

/// Peak resident memory (kB) of a predict run over `rows` rows.
fn peak_kb(ws: &Workspace, rows: usize) -> u64 {
    let mut text = String::with_capacity(rows * 24 + 64);
    text.push_str("sepal_length,sepal_width,petal_length,petal_width\n");
    for i in 0..rows {
        text.push_str(&format!("5.{},3.5,1.4,0.{}\n", i % 10, i % 7));
    }
    let input = format!("big{rows}.csv");
    write(ws, &input, &text);
    drop(text);
    let out = format!("big{rows}.out");
    let mut child = ws
        .cmd(&[
            "predict", "r", "--input", &input, "--output", &out, "--key", "me.pub", "-q",
        ])
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(ws.path().join(&out))
            .unwrap()
            .lines()
            .count(),
        rows + 1
    );
    peak
}

#[test]
fn predict_streams_a_large_input_in_bounded_memory() {
    let ws = workspace();
    let small = peak_kb(&ws, 1_000);
    // 400,000 rows: about 9 MB in and 30 MB out, neither of which may stay in memory.
    let large = peak_kb(&ws, 400_000);
    assert!(
        large < small + 12_000,
        "peak memory grew with the input: {small} kB for 1,000 rows, {large} kB for 400,000"
    );
}

#[test]
fn the_prediction_log_chains_every_prediction_and_detects_tampering() {
    let chain = Anvil::start(31337);
    let ws = workspace();
    let predict = |input: &str| {
        ws.run(&[
            "predict",
            "r",
            "--input",
            input,
            "--key",
            "me.pub",
            "--log",
            "log.jsonl",
            "-q",
        ])
    };
    write(
        &ws,
        "a.csv",
        &format!("{HEADER}\n5.1,3.5,1.4,0.2,setosa\n6.7,3.0,5.2,2.3,virginica\n"),
    );
    assert_eq!(predict("a.csv").code, 0);
    let mut cmd = ws.cmd(&[
        "anchor",
        "log.jsonl",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "-q",
    ]);
    cmd.env("AUDITAI_ANCHOR_KEY", DEV_KEY);
    output(cmd).success();
    // More predictions after the anchor: the receipt covers the first two.
    assert_eq!(predict("a.csv").code, 0);
    let out = ws.run(&[
        "verify",
        "log.jsonl",
        "--key",
        "me.pub",
        "--rpc",
        &chain.url,
        "--chain",
        "local",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = out.json();
    assert!(
        check(&v, "log chain")["detail"]
            .as_str()
            .unwrap()
            .starts_with("4 entries")
    );
    assert_eq!(
        check(&v, "anchor")["detail"],
        "the receipt covers the first 2 of 4 entries"
    );
    assert_eq!(check(&v, "anchor evm")["status"], "pass");
    let log = std::fs::read_to_string(ws.path().join("log.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let tampered = [
        (
            "edit",
            log.replacen("\"prediction\":\"", "\"prediction\":\"x", 1),
            "log.jsonl:1: entry edited",
        ),
        (
            "delete",
            format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]),
            "log.jsonl:2: entry 2 where entry 1 belongs",
        ),
        (
            "reorder",
            format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]),
            "log.jsonl:2: entry 2 where entry 1 belongs",
        ),
    ];
    for (what, text, want) in tampered {
        write(&ws, "log.jsonl", &text);
        let out = ws.run(&["verify", "log.jsonl", "--key", "me.pub", "--json"]);
        assert_eq!(out.code, 1, "{what}: {}", out.stdout);
        let row = check(&out.json(), "log chain").clone();
        assert!(
            row["detail"].as_str().unwrap().starts_with(want),
            "{what}: {row}"
        );
        // Nothing is appended to a broken chain.
        let out = predict("a.csv");
        assert_eq!(out.code, 2, "{what}");
    }
    // A log whose model manifest was swapped for another is refused.
    write(&ws, "log.jsonl", &log);
    ws.run(&["sign", "r/manifest.intoto.json", "--key", "me.key"]);
    let mut m = std::fs::read_to_string(ws.path().join("r/manifest.intoto.json")).unwrap();
    m.push(' ');
    write(&ws, "r/manifest.intoto.json", &m);
    let out = ws.run(&["verify", "log.jsonl", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "log_model")
        .unwrap();
    assert_eq!(row["status"], "fail");
}

const CRITERIA: &str = "version: 1\nmin_subgroup_rows: 10\ncriteria:\n  - metric: accuracy\n    min: 0.0\n  - metric: recall\n    class: setosa\n    min: 0.0\n  - metric: accuracy\n    gap_by: group\n    max: 1.0\n";

fn eval(ws: &Workspace, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "eval",
        "r",
        "--key",
        "me.pub",
        "--sign-with",
        "me.key",
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = ws.run(&args);
    assert_eq!(out.stderr, "", "{}", out.stdout);
    (out.code, out.json())
}

#[test]
fn eval_judges_preregistered_criteria_and_writes_a_verifiable_attestation() {
    let ws = workspace();
    write(&ws, "criteria.yaml", CRITERIA);
    let out = ws.run(&["eval", "--commit-criteria", "criteria.yaml", "-q"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "committed criteria.yaml in criteria.yaml.commitment.json\n"
    );
    // A commitment is never replaced.
    let again = ws.run(&["eval", "--commit-criteria", "criteria.yaml", "-q"]);
    assert_eq!(again.code, 2);
    assert!(
        again
            .stderr
            .contains("a commitment already exists and is never replaced"),
        "{}",
        again.stderr
    );
    let (code, v) = eval(
        &ws,
        &[
            "--data",
            "external.csv",
            "--by",
            "group",
            "--criteria",
            "criteria.yaml",
            "--out",
            "e.intoto.json",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    let e = &v["evaluation"];
    assert_eq!(e["verdict"], "PASSED");
    assert_eq!(e["data"]["rows"], 150);
    assert_eq!(e["leakage"]["status"], "checked");
    assert_eq!(e["leakage"]["overlappingRows"], 0);
    assert_eq!(e["preRegistration"]["status"], "claimed-before");
    let groups: Vec<&str> = e["subgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["A", "B"]);
    assert!(e["overall"]["perClass"].as_array().unwrap().len() == 3);
    let out = ws.run(&["verify", "e.intoto.json", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let r = out.json();
    assert_eq!(check(&r, "evaluated model")["status"], "pass");
    assert_eq!(check(&r, "evaluation data")["status"], "pass");
    assert_eq!(check(&r, "criteria")["status"], "pass");
    assert_eq!(check(&r, "pre-registration")["status"], "claimed");
    assert_eq!(check(&r, "evaluation verdict")["status"], "pass");
    ws.run(&["inspect", "e.intoto.json"]).success();
    ws.run(&["keygen", "--out", "co"]).success();
    ws.run(&["sign", "e.intoto.json", "--key", "co.key"])
        .success();

    // Tampering: the data changed since, or the attestation itself edited.
    let data = std::fs::read_to_string(ws.path().join("external.csv")).unwrap();
    write(&ws, "external.csv", &data.replacen("r0,", "r9,", 1));
    let out = ws.run(&[
        "verify",
        "e.intoto.json",
        "--key",
        "me.pub",
        "--key",
        "co.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "evaluation data")["status"], "fail");
    write(&ws, "external.csv", &data);
    let text = std::fs::read_to_string(ws.path().join("e.intoto.json")).unwrap();
    let forged = edit_payload(&text, |p| {
        p.replace("\"verdict\":\"PASSED\"", "\"verdict\":\"FAILED\"")
    });
    write(&ws, "forged.intoto.json", &forged);
    let out = ws.run(&[
        "verify",
        "forged.intoto.json",
        "--key",
        "me.pub",
        "--key",
        "co.pub",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "signature 1")["status"], "fail");
}

#[test]
fn eval_fails_criteria_leakage_and_late_commitments() {
    let ws = workspace();
    // A criterion that does not hold: exit 1, with the number behind it.
    write(
        &ws,
        "strict.yaml",
        "version: 1\ncriteria:\n  - metric: accuracy\n    min: 0.999\n",
    );
    let (code, v) = eval(
        &ws,
        &[
            "--data",
            "external.csv",
            "--criteria",
            "strict.yaml",
            "--out",
            "a.json",
        ],
    );
    assert_eq!(code, 1, "{v:#}");
    let results = v["evaluation"]["criteria"]["results"].as_array().unwrap();
    assert_eq!(results[0]["criterion"], "accuracy >= 0.999");
    assert_eq!(results[0]["passed"], false);
    assert!(results[0]["value"].as_f64().unwrap() < 0.999);
    assert_eq!(v["evaluation"]["verdict"], "FAILED");
    assert_eq!(v["evaluation"]["preRegistration"]["status"], "none");
    let out = ws.run(&["verify", "a.json", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 1);
    assert_eq!(check(&out.json(), "evaluation verdict")["status"], "fail");
    assert_eq!(check(&out.json(), "pre-registration")["status"], "warn");

    // The training rows themselves: leakage.
    write(
        &ws,
        "criteria.yaml",
        "version: 1\ncriteria:\n  - metric: accuracy\n    min: 0.0\n",
    );
    let (code, v) = eval(
        &ws,
        &[
            "--data",
            "iris.csv",
            "--criteria",
            "criteria.yaml",
            "--out",
            "b.json",
        ],
    );
    assert_eq!(code, 1);
    let leak = &v["evaluation"]["leakage"];
    assert_eq!(leak["status"], "checked");
    assert!(leak["overlappingRows"].as_u64().unwrap() > 100, "{leak}");
    let last = v["evaluation"]["criteria"]["results"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["criterion"],
        "no evaluation row trained or validated the model"
    );
    assert_eq!(last["passed"], false);

    // A commitment made after the evaluation started is not a pre-registration.
    write(
        &ws,
        "late.yaml",
        &format!("{CRITERIA}require_preregistration: true\n"),
    );
    ws.run(&["eval", "--commit-criteria", "late.yaml", "-q"])
        .success_with_stderr();
    let cpath = ws.path().join("late.yaml.commitment.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&cpath).unwrap()).unwrap();
    c["committedOn"] = Value::String("2099-01-01T00:00:00Z".into());
    std::fs::write(&cpath, c.to_string()).unwrap();
    let (code, v) = eval(
        &ws,
        &[
            "--data",
            "external.csv",
            "--criteria",
            "late.yaml",
            "--out",
            "c.json",
        ],
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["evaluation"]["preRegistration"]["status"], "after");
    let last = v["evaluation"]["criteria"]["results"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["criterion"],
        "the criteria were committed before the evaluation"
    );
    assert_eq!(last["passed"], false);

    // Evaluating needs a trust named, and the label column.
    let out = ws.run(&["eval", "r", "--data", "external.csv", "--out", "z.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("eval verifies the run before loading its model"),
        "{}",
        out.stderr
    );
    write(
        &ws,
        "nolabel.csv",
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n",
    );
    let out = ws.run(&[
        "eval",
        "r",
        "--key",
        "me.pub",
        "--data",
        "nolabel.csv",
        "--out",
        "z.json",
        "-q",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: nolabel.csv:1: the input lacks the label column `species`\n"
    );
    assert!(!ws.path().join("z.json").exists());
    // Hostile criteria files are refused with a position; an existing --out is never replaced.
    write(
        &ws,
        "typo.yaml",
        "version: 1\ncriteria:\n  - metric: acuracy\n    min: 0.9\n",
    );
    let out = ws.run(&[
        "eval",
        "r",
        "--key",
        "me.pub",
        "--data",
        "external.csv",
        "--criteria",
        "typo.yaml",
        "--out",
        "d.json",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: typo.yaml:3:13: unknown metric `acuracy`"),
        "{}",
        out.stderr
    );
    let out = ws.run(&[
        "eval",
        "r",
        "--key",
        "me.pub",
        "--data",
        "external.csv",
        "--out",
        "a.json",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("a.json already exists"),
        "{}",
        out.stderr
    );
}
