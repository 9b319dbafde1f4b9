//! Raw public CSVs through the whole chain: text columns, `NA` cells and other dialects train
//! without a cleaning step; the fitted preprocessing is recorded, replayed by `audit`, applied by
//! `predict` and `eval` to raw rows, and described by `export`.

use serde_json::Value;

use crate::support::{Workspace, check, repo};

/// A workspace with the raw Palmer penguins (`train.csv`: every row but every 8th, which goes to
/// `holdout.csv`), a key pair `me`, and `spec.yaml` for `task` on `label` with `data.columns`
/// holding `columns`.
fn penguins(label: &str, task: &str, columns: &str) -> Workspace {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(repo().join("fixtures/penguins.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut train, mut holdout) = (format!("{header}\n"), format!("{header}\n"));
    for (i, l) in lines.enumerate() {
        let to = if i % 8 == 3 { &mut holdout } else { &mut train };
        to.push_str(l);
        to.push('\n');
    }
    std::fs::write(ws.path().join("train.csv"), train).unwrap();
    std::fs::write(ws.path().join("holdout.csv"), holdout).unwrap();
    std::fs::copy(
        repo().join("pipelines/penguins/new-rows.csv"),
        ws.path().join("new-rows.csv"),
    )
    .unwrap();
    ws.spec(
        "spec.yaml",
        &format!(
            "version: 1\nname: penguins\nseed: 7\ndata:\n  path: train.csv\n  label: {label}\n  task: {task}\n  columns: {{ {columns} }}\nmodel:\n  type: mlp\n  hidden: [16]\ntraining:\n  epochs: 40\n  batch_size: 16\n  optimizer: {{ type: adam, lr: 0.01 }}\n"
        ),
    );
    ws.run(&["keygen", "--out", "me"]).success();
    ws
}

fn train(ws: &Workspace, extra: &[&str]) -> crate::support::Output {
    let mut args = vec![
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--key",
        "me.key",
        "--json",
    ];
    args.extend_from_slice(extra);
    ws.run(&args)
}

fn json_file(ws: &Workspace, rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(ws.path().join(rel)).unwrap()).unwrap()
}

#[test]
fn raw_penguins_train_and_audit_replays_the_fitted_preprocessing() {
    let ws = penguins("species", "classification", "year: exclude");
    let out = train(&ws, &["-q"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    assert!(out.json()["metrics"]["accuracy"].as_f64().unwrap() > 0.95);
    // The notice is not suppressed without -q.
    let again = ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r2",
        "--key",
        "me.key",
    ]);
    assert_eq!(
        again.stderr.lines().next().unwrap(),
        "notice: columns from the training rows: numeric: bill_length_mm (1 gap), bill_depth_mm (1 gap), flipper_length_mm (1 gap), body_mass_g (1 gap); categorical: island (3 values), sex (2 values) (9 gaps); not features: year (excluded)"
    );

    let pre = json_file(&ws, "r/preprocessing.json");
    assert_eq!(pre["schema"], "auditai.preprocessing/v2");
    assert_eq!(pre["dialect"]["delimiter"], "comma");
    let col = |name: &str| {
        pre["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}: {pre:#}"))
            .clone()
    };
    assert_eq!(col("island")["kind"], "categorical");
    assert_eq!(
        col("island")["categories"],
        serde_json::json!(["Biscoe", "Dream", "Torgersen"])
    );
    assert_eq!(
        col("sex")["categories"],
        serde_json::json!(["<missing>", "female", "male"])
    );
    let mass = col("body_mass_g");
    assert_eq!(
        (&mass["kind"], &mass["impute"], &mass["indicator"]),
        (
            &Value::from("numeric"),
            &Value::from("median"),
            &Value::from(true)
        )
    );
    assert_eq!(pre["ignored"][0]["name"], "year");
    assert_eq!(pre["features"].as_array().unwrap().len(), 14);

    // audit refits the preprocessing from the committed data and compares it.
    let (code, v) = ws.audit_json(&["--key", "me.pub", "--segments", "1"]);
    assert_eq!(code, 0, "{v:#}");
    let row = check(&v, "preprocessing");
    assert_eq!(row["status"], "pass", "{row}");
    assert_eq!(
        row["detail"],
        "recomputed from the committed data: 6 input column(s), 14 feature(s), identical"
    );
}

#[test]
fn predict_and_eval_take_raw_rows_with_unseen_categories_gaps_and_bad_cells() {
    let ws = penguins("species", "classification", "year: exclude");
    assert_eq!(train(&ws, &["-q"]).code, 0);
    let out = ws.run(&[
        "predict",
        "r",
        "--input",
        "new-rows.csv",
        "--keep",
        "tag",
        "--key",
        "me.pub",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        lines[0],
        [
            "row",
            "tag",
            "prediction",
            "p_Adelie",
            "p_Chinstrap",
            "p_Gentoo",
            "unseen",
            "reason",
            "model_verified"
        ]
    );
    assert_eq!(lines.len(), 7, "one output row per input row");
    // p-004 is from an island training never saw: scored, and counted as unseen.
    assert_eq!((lines[4][1], lines[4][6], lines[4][7]), ("p-004", "1", ""));
    assert!(!lines[4][2].is_empty());
    // p-005 has gaps (bill length, sex): imputed as in training, scored.
    assert_eq!(
        (lines[5][1], lines[5][2], lines[5][6]),
        ("p-005", "Gentoo", "0")
    );
    // p-006 has a text cell in a numeric column: an empty prediction and the reason.
    assert_eq!(
        lines[6],
        [
            "6",
            "p-006",
            "",
            "",
            "",
            "",
            "0",
            "column `body_mass_g`: `heavy` is not a number",
            "true"
        ]
    );
    assert!(
        out.stderr.starts_with(
            "notice: ignored input column(s) the model does not use: species, year\n\
             not scored: row 6: column `body_mass_g`: `heavy` is not a number\n\
             notice: 1 categorical value(s) the training rows never had were encoded as all zeros (column `unseen` per row)\n\
             predicted 5 row(s), 1 could not be scored (their rows say why)"
        ),
        "{}",
        out.stderr
    );
    // A kept column that is not in the input: refused before anything reaches stdout.
    let out = ws.run(&[
        "predict",
        "r",
        "--input",
        "new-rows.csv",
        "--keep",
        "tag,nosuch",
        "--key",
        "me.pub",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (2, "", "error: new-rows.csv:1: no --keep column `nosuch`\n")
    );

    // eval on raw holdout rows, by a categorical subgroup: macro averages count only the
    // classes present, so a perfectly classified one-species island reads 1, not 1/3.
    let out = ws.run(&[
        "eval",
        "r",
        "--data",
        "holdout.csv",
        "--by",
        "island",
        "--key",
        "me.pub",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ev = out.json()["evaluation"].clone();
    assert_eq!(ev["overall"]["rows"], 43, "{ev:#}");
    let acc = &ev["overall"]["intervals"]["accuracy"];
    assert_eq!(
        (&acc["method"], &acc["rows"]),
        (&Value::from("wilson"), &Value::from(43))
    );
    let torgersen = ev["subgroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["value"] == "Torgersen")
        .unwrap();
    // Torgersen has Adelie penguins only: the mean F1 runs over the classes among its true or
    // predicted labels (scikit-learn's `average="macro"`), never over all three.
    let confusion: Vec<Vec<f64>> =
        serde_json::from_value(torgersen["metrics"]["confusion"].clone()).unwrap();
    let true_classes = confusion
        .iter()
        .filter(|r| r.iter().sum::<f64>() > 0.0)
        .count();
    assert_eq!(true_classes, 1, "{torgersen:#}");
    let mut f1 = Vec::new();
    for (i, row) in confusion.iter().enumerate() {
        let support: f64 = row.iter().sum();
        let predicted: f64 = confusion.iter().map(|r| r[i]).sum();
        if support + predicted > 0.0 {
            f1.push(2.0 * row[i] / (support + predicted));
        }
    }
    let want = f1.iter().sum::<f64>() / f1.len() as f64;
    let got = torgersen["metrics"]["macroF1"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} != {want}: {torgersen:#}");
    assert!(f1.len() < 3, "{torgersen:#}");
}

#[test]
fn other_dialects_are_sniffed_and_a_declared_one_is_kept() {
    let ws = Workspace::new();
    ws.run(&["keygen", "--out", "me"]).success();
    // `;` with decimal commas quoted as text, a quoted header, CRLF; and runs of spaces.
    let mut semi = String::from("\"height (cm)\";\"colour\";\"y\"\r\n");
    let mut spaced = String::from("height   colour  y\n");
    for i in 0..60 {
        let (h, c, y) = (150 + i, ["red", "blue", "NA"][i % 3], ["a", "b"][i % 2]);
        semi.push_str(&format!("{h};{c};{y}\r\n"));
        spaced.push_str(&format!("{h}     {c}   {y}\n"));
    }
    std::fs::write(ws.path().join("semi.csv"), semi).unwrap();
    std::fs::write(ws.path().join("spaced.txt"), spaced).unwrap();
    for (file, delimiter, extra) in [
        ("semi.csv", "semicolon", ""),
        ("spaced.txt", "whitespace", ""),
        ("spaced.txt", "whitespace", "  delimiter: whitespace\n"),
    ] {
        ws.spec(
            "s.yaml",
            &format!("version: 1\nname: d\nseed: 1\ndata:\n  path: {file}\n  label: y\n  task: classification\n{extra}model:\n  type: mlp\n  hidden: [4]\ntraining:\n  epochs: 1\n"),
        );
        let out = ws.run(&[
            "run", "s.yaml", "--device", "cpu", "--out", "d", "--force", "-q",
        ]);
        assert_eq!(out.code, 0, "{file}: {}", out.stderr);
        let pre = json_file(&ws, "d/preprocessing.json");
        assert_eq!(pre["dialect"]["delimiter"], delimiter, "{file}");
        assert_eq!(pre["columns"][1]["kind"], "categorical", "{file}: {pre:#}");
    }
    // A declared delimiter that does not split the header leaves one column: named.
    ws.spec(
        "s.yaml",
        "version: 1\nname: d\nseed: 1\ndata:\n  path: semi.csv\n  label: y\n  task: classification\n  delimiter: ','\nmodel:\n  type: mlp\n",
    );
    let out = ws.run(&["run", "s.yaml", "--device", "cpu", "--out", "d2", "-q"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: s.yaml:6:10: label column `y` is not a column of semi.csv"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_rows_are_listed_together_or_skipped_and_recorded() {
    let ws = penguins(
        "species",
        "classification",
        "year: exclude, body_mass_g: numeric",
    );
    // 25 rows with a stray field or a text mass.
    let mut text = std::fs::read_to_string(ws.path().join("train.csv")).unwrap();
    for i in 0..25 {
        if i % 2 == 0 {
            text.push_str("Adelie,Dream,39.1,18.7,181,3750,male,2007,extra\n");
        } else {
            text.push_str("Adelie,Dream,39.1,18.7,181,heavy,male,2007\n");
        }
    }
    std::fs::write(ws.path().join("train.csv"), &text).unwrap();
    let out = train(&ws, &["-q"]);
    assert_eq!(out.code, 2);
    let err = out.stderr.trim_end();
    assert!(
        err.starts_with(
            "error: train.csv: 25 bad row(s): line 303: 9 fields, the header has 8; line 304: column `body_mass_g`: `heavy` is not a number; "
        ),
        "{err}"
    );
    assert!(
        err.ends_with(
            "; and 5 more (pass --skip-bad-rows to train without them; the manifest records them)"
        ),
        "{err}"
    );
    assert!(
        !ws.path().join("r").exists(),
        "a refused run left a directory"
    );

    let out = train(&ws, &["-q", "--skip-bad-rows"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = std::fs::read_to_string(ws.path().join("r/manifest.intoto.json")).unwrap();
    let st: Value = serde_json::from_str(&crate::support::payload_of(&m)).unwrap();
    let skipped = &st["predicate"]["auditai"]["skippedRows"];
    assert_eq!(skipped["count"], 25);
    assert_eq!(skipped["rows"][0]["line"], 303);
    assert_eq!(
        skipped["rows"][1]["why"],
        "column `body_mass_g`: `heavy` is not a number"
    );
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v:#}");
    let (code, v) = ws.audit_json(&["--key", "me.pub", "--segments", "1"]);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        check(&v, "preprocessing")["detail"]
            .as_str()
            .unwrap()
            .ends_with("; the same 25 row(s) left out"),
        "{v:#}"
    );
}

#[test]
fn a_regression_target_is_scaled_for_training_and_reported_in_its_units() {
    let ws = penguins("body_mass_g", "regression", "year: exclude");
    // A row without a mass is left out, said so, and recorded.
    let out = train(&ws, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("notice: left out 1 data row(s) (line 239: the label `body_mass_g` is missing); the manifest records them\n"),
        "{}",
        out.stderr
    );
    let v = out.json();
    assert!(v["metrics"]["r2"].as_f64().unwrap() > 0.7, "{v:#}");
    // MAE in grams, not in standard deviations.
    assert!(v["metrics"]["mae"].as_f64().unwrap() > 50.0, "{v:#}");
    let pre = json_file(&ws, "r/preprocessing.json");
    assert!(
        pre["target"]["offset"].as_f64().unwrap() > 3000.0,
        "{pre:#}"
    );
    let out = ws.run(&[
        "predict",
        "r",
        "--input",
        "holdout.csv",
        "--key",
        "me.pub",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in out.stdout.lines().skip(1) {
        let grams: f64 = line.split(',').nth(1).unwrap().parse().unwrap_or(0.0);
        assert!((2000.0..7000.0).contains(&grams), "{line}");
    }
    // eval leaves the held-out row without a mass out, and counts it.
    let out = ws.run(&[
        "eval",
        "r",
        "--data",
        "holdout.csv",
        "--key",
        "me.pub",
        "--json",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ev = out.json()["evaluation"].clone();
    assert_eq!(
        (&ev["data"]["rows"], &ev["data"]["skipped"]),
        (&Value::from(42), &Value::from(1))
    );
    assert!(ev["overall"]["r2"].as_f64().unwrap() > 0.7, "{ev:#}");
}

#[test]
fn export_from_a_pipeline_traces_the_model_to_the_raw_file() {
    let ws = Workspace::new();
    ws.run(&["keygen", "--out", "me"]).success();
    let dir = ws.path().join("pipelines/penguins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(ws.path().join("fixtures")).unwrap();
    std::fs::copy(
        repo().join("fixtures/penguins.csv"),
        ws.path().join("fixtures/penguins.csv"),
    )
    .unwrap();
    for f in ["holdout.py", "criteria.yaml", "new-rows.csv"] {
        std::fs::copy(repo().join("pipelines/penguins").join(f), dir.join(f)).unwrap();
    }
    let spec = std::fs::read_to_string(repo().join("pipelines/penguins/pipeline.yaml"))
        .unwrap()
        .replace("epochs: 60", "epochs: 5");
    std::fs::write(dir.join("pipeline.yaml"), spec).unwrap();
    let out = ws.run(&[
        "run",
        "pipelines/penguins/pipeline.yaml",
        "--key",
        "me.key",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = "runs/penguins-raw/manifest.intoto.json";
    let out = ws.run(&[
        "export",
        m,
        "--format",
        "model-card",
        "--key",
        "me.pub",
        "--out",
        "card.md",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let card = std::fs::read_to_string(ws.path().join("card.md")).unwrap();
    assert!(
        card.contains("Traced back to the files no stage produced (`pipelines/penguins/holdout.py`, `fixtures/penguins.csv`)"),
        "{card}"
    );
    assert!(
        card.contains(
            "1. **holdout** `python3 holdout.py ../../fixtures/penguins.csv build/data`: reads"
        ),
        "{card}"
    );
    assert!(
        card.contains("| `island` | categorical | all zero (the training rows had no gap here) | one-hot over 3 categories (Biscoe, Dream, Torgersen)"),
        "{card}"
    );
    assert!(
        card.contains("Metrics from training, on the validation split, which chose the stopping epoch: not held out:"),
        "{card}"
    );
    // The card is bound to the training stage's run, which verify checks.
    let out = ws.run(&["verify", "card.md", "--key", "me.pub"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // A pipeline with no such training stage.
    let out = ws.run(&["export", m, "--format", "cyclonedx", "--stage", "holdout"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: runs/penguins-raw/manifest.intoto.json: the pipeline records no training stage `holdout`\n"
        )
    );
    let out = ws.run(&["export", m, "--format", "cyclonedx", "--out", "bom.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bom = json_file(&ws, "bom.json");
    let raw = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == "raw:fixtures/penguins.csv")
        .unwrap_or_else(|| panic!("{bom:#}"));
    assert_eq!(raw["hashes"][0]["alg"], "BLAKE3");
    let metrics =
        &bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"];
    assert!(
        metrics[0]["confidenceInterval"]["lowerBound"].is_string(),
        "{metrics:#}"
    );
}
