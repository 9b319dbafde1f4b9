use std::path::Path;

use super::*;

fn spec_for(csv: &str, extra_data: &str, dir: &Path) -> Spec {
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    let yaml = format!(
        "version: 1\nname: t\nseed: 1\ndata:\n  path: d.csv\n  label: y\n  task: classification\n{extra_data}model:\n  type: mlp\n"
    );
    Spec::parse(&yaml, &dir.join("p.yaml")).unwrap()
}

fn csv_rows(n: usize) -> String {
    let mut s = String::from("a,b,y\n");
    for i in 0..n {
        s.push_str(&format!(
            "{},{},{}\n",
            i,
            i * 2,
            if i % 3 == 0 { "x" } else { "z" }
        ));
    }
    s
}

#[test]
fn split_is_stratified_disjoint_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_for(
        &csv_rows(60),
        "  split: { train: 0.5, validation: 0.25, test: 0.25 }\n",
        dir.path(),
    );
    let p = load(&spec).unwrap();
    let test = p.test.as_ref().unwrap();
    assert_eq!((p.train.rows, p.validation.rows, test.rows), (30, 15, 15));
    let mut all: Vec<usize> = [&p.train, &p.validation, test]
        .iter()
        .flat_map(|part| part.source_rows.clone())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..60).collect::<Vec<_>>());
    // 20 of the 60 rows are class `x`: each split holds a third of them.
    let count_x = |part: &Part| match &part.targets {
        Targets::Classes(c) => c.iter().filter(|&&c| c == 0).count(),
        Targets::Values(_) => unreachable!(),
    };
    assert_eq!(
        (count_x(&p.train), count_x(&p.validation), count_x(test)),
        (10, 5, 5)
    );
}

#[test]
fn normalisation_uses_training_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_for(&csv_rows(30), "", dir.path());
    let p = load(&spec).unwrap();
    let d = p.features();
    let mean_a: f32 =
        (0..p.train.rows).map(|r| p.train.x[r * d]).sum::<f32>() / p.train.rows as f32;
    assert!(mean_a.abs() < 1e-5, "training mean of a is {mean_a}");
    let raw_mean: f32 =
        p.train.source_rows.iter().map(|&r| r as f32).sum::<f32>() / p.train.rows as f32;
    assert_eq!(p.preprocessing.offset[0], raw_mean);
}

#[test]
fn bad_cells_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_for("a,b,y\n1,2,x\n3,oops,z\n", "", dir.path());
    let e = load(&spec).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:3: column `b`: `oops` is not a number",
            dir.path().join("d.csv").display()
        )
    );
}
