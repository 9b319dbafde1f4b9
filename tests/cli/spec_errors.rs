//! Bad specs and bad data are refused before any work, naming file, line and column.

use crate::support::{Workspace, repo};

/// A valid iris spec; tests break one thing at a time.
fn iris(ws: &Workspace) -> String {
    format!(
        "version: 1
name: bad
seed: 1
data:
  path: {}
  label: species
  task: classification
  split: {{ train: 0.6, validation: 0.2, test: 0.2 }}
model:
  type: mlp
  hidden: [8]
training:
  epochs: 2
",
        repo().join("fixtures/iris.csv").display()
    )
    .replace("\r", "")
        + &format!("outputs:\n  dir: {}\n", ws.path().join("never").display())
}

/// Run a broken spec: exit 2, one line on stderr, nothing on stdout, no run directory.
fn refused(ws: &Workspace, yaml: &str) -> String {
    let spec = ws.spec("bad.yaml", yaml);
    let out = ws.run(&["run", spec.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(out.code, 2, "accepted:\n{yaml}\nstderr: {}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!ws.path().join("never").exists(), "run directory created");
    out.stderr
        .trim_end()
        .strip_prefix("error: ")
        .unwrap()
        .replace(&format!("{}/", ws.path().display()), "")
}

#[test]
fn unknown_field_is_refused_with_its_position() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace("  epochs: 2\n", "  epochs: 2\n  epocs: 3\n");
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml:14:3: unknown field `epocs`, expected one of epochs, batch_size, optimizer, schedule, early_stopping, device, class_weight"
    );
}

#[test]
fn wrong_type_is_refused() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace("hidden: [8]", "hidden: eight");
    assert!(refused(&ws, &yaml).starts_with("bad.yaml:11:11: "));
}

#[test]
fn missing_label_column_is_refused_naming_the_columns() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace("label: species", "label: kind");
    let csv = repo().join("fixtures/iris.csv");
    assert_eq!(
        refused(&ws, &yaml),
        format!(
            "bad.yaml:6:10: label column `kind` is not a column of {} (columns: sepal_length, sepal_width, petal_length, petal_width, species)",
            csv.display()
        )
    );
}

#[test]
fn split_fractions_above_one_are_refused() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace("train: 0.6", "train: 1.6");
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml:8:19: data.split.train must be a fraction between 0 and 1, got 1.6"
    );
}

#[test]
fn zero_epochs_are_refused() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace("epochs: 2", "epochs: 0");
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml:13:11: training.epochs must be at least 1"
    );
}

#[test]
fn sizes_that_would_exhaust_memory_are_refused_before_any_work() {
    let ws = Workspace::new();
    for (from, to, message) in [
        (
            "epochs: 2",
            "epochs: 18446744073709551615",
            "bad.yaml:13:11: training.epochs must be at most 1000000",
        ),
        (
            "hidden: [8]",
            "hidden: [100000]",
            "bad.yaml:11:12: model.hidden layer widths must be at most 65536",
        ),
        (
            "hidden: [8]",
            "hidden: [60000, 60000]",
            "bad.yaml:11:19: model.hidden: a 60000x60000 layer has over 268435456 weights",
        ),
        (
            "epochs: 2",
            "epochs: 2\n  batch_size: 99999999",
            "bad.yaml:14:15: training.batch_size must be at most 1048576",
        ),
    ] {
        let yaml = iris(&ws).replace(from, to);
        assert_eq!(refused(&ws, &yaml), message, "{to}");
    }
    // Each layer within bounds, the whole model not: counted before anything is allocated.
    let yaml = iris(&ws).replace("hidden: [8]", "hidden: [65536, 4096, 65536, 4096, 65536]");
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml with 4 input features has 1074405379 parameters, over the limit of 1073741824 parameters"
    );
}

#[test]
fn shape_that_does_not_match_the_columns_is_refused() {
    let ws = Workspace::new();
    let yaml = iris(&ws).replace(
        "  task: classification\n",
        "  task: classification\n  shape: [1, 2, 3]\n",
    );
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml:8:10: data.shape 1x2x3 holds 6 values but there are 4 feature columns"
    );
}

#[test]
fn missing_data_file_is_refused() {
    let ws = Workspace::new();
    let csv = repo().join("fixtures/iris.csv");
    let yaml = iris(&ws).replace(csv.to_str().unwrap(), "nope.csv");
    assert_eq!(
        refused(&ws, &yaml),
        "bad.yaml:5:9: cannot read data file nope.csv: No such file or directory (os error 2)"
    );
}

#[test]
fn text_in_a_declared_numeric_column_is_refused_with_every_bad_line() {
    let ws = Workspace::new();
    let mut csv = String::from("a,b,y\n");
    for i in 0..20 {
        let b = match i {
            3 => "six".to_string(),
            11 => "1,5".to_string(),
            _ => i.to_string(),
        };
        csv.push_str(&format!("{i},\"{b}\",{}\n", ["x", "z"][i % 2]));
    }
    // A row with a field too many, and one too few.
    csv.push_str("1,2,x,9\n3,z\n");
    std::fs::write(ws.path().join("d.csv"), csv).unwrap();
    let data = repo().join("fixtures/iris.csv");
    let yaml = iris(&ws)
        .replace(data.to_str().unwrap(), "d.csv")
        .replace("label: species", "label: y\n  columns: { b: numeric }");
    assert_eq!(
        refused(&ws, &yaml),
        "d.csv: 4 bad row(s): line 5: column `b`: `six` is not a number; line 13: column `b`: `1,5` is not a number; line 22: 4 fields, the header has 3; line 23: 2 fields, the header has 3 (pass --skip-bad-rows to train without them; the manifest records them)"
    );
}

#[test]
fn new_data_fields_are_checked_where_they_are_written() {
    let ws = Workspace::new();
    let cases = [
        (
            "label: species\n  columns: { sepal_length: number }",
            "bad.yaml:7:28: unknown variant `number`, expected one of numeric, categorical, exclude, id",
        ),
        (
            "label: species\n  impute: { numeric: mode }",
            "bad.yaml:7:22: unknown variant `mode`, expected one of median, mean, zero, drop",
        ),
        (
            "label: species\n  max_categories: 1",
            "bad.yaml:7:19: data.max_categories must be between 2 and 1024",
        ),
        (
            "label: species\n  target_scaling: none",
            "bad.yaml:7:19: data.target_scaling applies to regression; classification targets are classes",
        ),
        (
            "label: species\n  delimiter: colon",
            "bad.yaml:7:14: data.delimiter `colon` is not `,`, `;`, `tab`, `|` or `whitespace`",
        ),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(edit, _)| refused(&ws, &iris(&ws).replace("label: species", edit)))
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
    let yaml = iris(&ws).replace("  epochs: 2\n", "  epochs: 2\n  class_weight: heavy\n");
    let msg = refused(&ws, &yaml);
    assert!(
        msg == "bad.yaml:14:17: unknown variant `heavy`, expected one of none, balanced",
        "{msg}"
    );
    // Columns the spec names must exist in the data.
    let yaml = iris(&ws).replace("label: species", "label: species\n  columns: { petal: id }");
    assert_eq!(
        refused(&ws, &yaml),
        format!(
            "bad.yaml:7:21: column `petal` is not a column of {} (columns: sepal_length, sepal_width, petal_length, petal_width, species)",
            repo().join("fixtures/iris.csv").display()
        )
    );
    let yaml = iris(&ws).replace(
        "split: { train: 0.6, validation: 0.2, test: 0.2 }",
        "split: { train: 0.6, validation: 0.2, test: 0.2, group: site }",
    );
    let msg = refused(&ws, &yaml);
    assert!(
        msg.starts_with("bad.yaml:8:59: group column `site` is not a column of "),
        "{msg}"
    );
}

#[test]
fn unreadable_spec_and_invalid_yaml_are_refused() {
    let ws = Workspace::new();
    let out = ws.run(&["run", "missing.yaml"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: missing.yaml: cannot read pipeline spec: No such file or directory (os error 2)\n"
    );
    let msg = refused(&ws, "version: 1\nname: [unclosed\n");
    assert!(msg.starts_with("bad.yaml:"), "{msg}");
}
