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
    match &p.preprocessing.columns[0] {
        transform::Column::Numeric { offset, .. } => assert_eq!(*offset, raw_mean),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_bad_row_is_reported_at_once_or_skipped_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,y\n");
    for i in 0..40 {
        csv.push_str(&format!(
            "{i},{},{}\n",
            i * 2,
            if i % 2 == 0 { "x" } else { "z" }
        ));
    }
    csv.push_str("1,2\n");
    csv.push_str("3,4,NA\n");
    let spec = spec_for(&csv, "", dir.path());
    // A row without a label is left out, not an error.
    let e = load(&spec).unwrap_err().to_string();
    assert!(
        e.ends_with("1 bad row(s): line 42: 2 fields, the header has 3"),
        "{e}"
    );
    let bytes = std::fs::read(dir.path().join("d.csv")).unwrap();
    let p = parse_with(
        &spec,
        &bytes,
        ParseOptions {
            skip_bad_rows: true,
        },
    )
    .unwrap();
    assert_eq!(
        p.skipped.iter().map(|b| b.line).collect::<Vec<_>>(),
        [42, 43]
    );
    assert_eq!(
        p.train.rows + p.validation.rows + p.test.as_ref().map_or(0, |t| t.rows),
        40
    );
}

#[test]
fn raw_columns_become_categories_gaps_and_indicators() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("island;mass;y\n");
    for i in 0..60 {
        let island = ["Biscoe", "Dream", "Torgersen", "NA"][i % 4];
        let mass = if i % 5 == 0 {
            "NA".to_string()
        } else {
            format!("{}", 3000 + i * 10)
        };
        csv.push_str(&format!(
            "{island};{mass};{}\n",
            if i % 3 == 0 { "a" } else { "b" }
        ));
    }
    let spec = spec_for(&csv, "", dir.path());
    let p = load(&spec).unwrap();
    let pre = &p.preprocessing;
    assert_eq!(pre.dialect.delimiter, crate::spec::Delimiter::Semicolon);
    assert_eq!(
        pre.features,
        [
            "island=<missing>",
            "island=Biscoe",
            "island=Dream",
            "island=Torgersen",
            "mass",
            "mass__missing"
        ]
    );
    assert!(
        p.notices[0].starts_with("columns from the training rows: numeric: mass"),
        "{:?}",
        p.notices
    );
    // Every training row is one-hot in exactly one island column.
    let d = p.features();
    for r in 0..p.train.rows {
        let ones: f32 = p.train.x[r * d..r * d + 4].iter().sum();
        assert_eq!(ones, 1.0);
    }
    // The record applies to a raw row the same way.
    let mut out = Vec::new();
    pre.encode(&["Dream", "NA"], &mut out).unwrap();
    assert_eq!(&out[..4], [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(out[5], 1.0);
}

#[test]
fn declared_roles_max_categories_and_target_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,code,kind,y\n");
    for i in 0..100 {
        let kind = ["a", "a", "a", "b", "b", "c", "d", "e", "f", "g"][i % 10];
        csv.push_str(&format!("{i},{},{kind},{}\n", i % 7, 100 + i * 3));
    }
    std::fs::write(dir.path().join("d.csv"), &csv).unwrap();
    let yaml = "version: 1\nname: t\nseed: 1\ndata:\n  path: d.csv\n  label: y\n  task: regression\n  columns: { id: id, code: categorical }\n  max_categories: 3\nmodel:\n  type: mlp\n";
    let spec = Spec::parse(yaml, &dir.path().join("p.yaml")).unwrap();
    let p = load(&spec).unwrap();
    let pre = &p.preprocessing;
    assert_eq!(pre.ignored[0].name, "id");
    // `code` holds numbers but is declared categorical; both columns keep 3 categories.
    assert!(
        pre.features.iter().any(|f| f == "code=<other>"),
        "{:?}",
        pre.features
    );
    assert!(
        pre.features.iter().any(|f| f == "kind=<other>"),
        "{:?}",
        pre.features
    );
    assert_eq!(
        pre.features
            .iter()
            .filter(|f| f.starts_with("kind="))
            .count(),
        4
    );
    assert!(
        pre.features.iter().any(|f| f == "kind=a"),
        "the most frequent is kept"
    );
    let t = pre.target.unwrap();
    let Targets::Values(v) = &p.train.targets else {
        panic!()
    };
    let mean: f32 = v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean.abs() < 1e-4, "scaled targets have mean {mean}");
    assert!(t.offset > 200.0 && t.scale > 10.0);
}

#[test]
fn a_text_cell_in_a_declared_numeric_column_is_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,y\n");
    for i in 0..30 {
        csv.push_str(&format!(
            "{i},{},{}\n",
            if i == 7 { "oops".into() } else { i.to_string() },
            if i % 2 == 0 { "x" } else { "z" }
        ));
    }
    let spec = spec_for(&csv, "  columns: { b: numeric }\n", dir.path());
    let e = load(&spec).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: 1 bad row(s): line 9: column `b`: `oops` is not a number",
            dir.path().join("d.csv").display()
        )
    );
}

#[test]
fn id_like_constant_and_rare_class_columns_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("serial,site,x,y\n");
    for i in 0..80 {
        // One row of class `rare`: the split cannot show it to both training and validation.
        let y = if i == 5 { "rare" } else { ["a", "b"][i % 2] };
        csv.push_str(&format!("{},lab-1,{},{y}\n", 1000 + i, i % 9));
    }
    let spec = spec_for(&csv, "", dir.path());
    let p = load(&spec).unwrap();
    let all = p.notices.join("\n");
    assert!(
        all.contains("column `serial` has a distinct value in every training row: it looks like an identifier"),
        "{all}"
    );
    assert!(
        all.contains(
            "column `site` has one value in every training row: it carries no information"
        ),
        "{all}"
    );
    assert!(
        all.contains("class `rare` has 1 training and 0 validation rows"),
        "{all}"
    );
}

#[test]
fn imputation_modes_and_balanced_class_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x,c,y\n");
    for i in 0..60 {
        let x = if i % 6 == 0 {
            "NA".to_string()
        } else {
            (i % 10).to_string()
        };
        let c = if i % 7 == 0 {
            ""
        } else {
            ["p", "p", "q"][i % 3]
        };
        // Three times as many `a` rows as `b` rows.
        csv.push_str(&format!("{x},{c},{}\n", if i % 4 == 0 { "b" } else { "a" }));
    }
    let spec = spec_for(
        &csv,
        "  impute: { numeric: zero, categorical: mode }\n",
        dir.path(),
    );
    let p = load(&spec).unwrap();
    let [num, cat] = p.preprocessing.columns.as_slice() else {
        panic!("{:?}", p.preprocessing.columns)
    };
    assert!(
        matches!(num, Column::Numeric { fill, indicator: true, .. } if *fill == 0.0),
        "{num:?}"
    );
    assert!(
        matches!(cat, Column::Categorical { missing_as: Some(m), categories, .. } if m == "p" && !categories.iter().any(|c| c == transform::MISSING)),
        "{cat:?}"
    );
    assert!(p.class_weights.is_none(), "weights only when asked for");

    // `drop`: rows with a numeric gap leave training and are recorded as skipped.
    let spec = spec_for(&csv, "  impute: { numeric: drop }\n", dir.path());
    let p = load(&spec).unwrap();
    assert_eq!(p.skipped.len(), 10);
    assert!(
        p.skipped[0].why.contains("column `x`"),
        "{:?}",
        p.skipped[0]
    );

    // balanced: n / (classes × n_class) over the training rows.
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nname: t\nseed: 1\ndata:\n  path: d.csv\n  label: y\n  task: classification\nmodel:\n  type: mlp\ntraining:\n  class_weight: balanced\n",
    )
    .unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let p = load(&spec).unwrap();
    let w = p.class_weights.expect("balanced weights");
    assert!(
        w[1] > 2.5 * w[0] && w[1] < 3.5 * w[0],
        "the rarer class weighs about 3 times more: {w:?}"
    );
}

#[test]
fn a_column_too_wide_to_record_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::with_capacity(150_000 * 100);
    csv.push_str("note,x,y\n");
    for i in 0..150_000u32 {
        csv.push_str(&format!(
            "\"a free-text note, long enough that a hundred thousand of them fill megabytes {i:010}\",{},{}\n",
            i % 10,
            ["a", "b"][i as usize % 2]
        ));
    }
    let spec = spec_for(&csv, "  max_categories: 2\n", dir.path());
    let e = load(&spec).unwrap_err().to_string();
    assert!(
        e.ends_with("column `note` has too many distinct values to encode; declare it `id` or `exclude` in data.columns"),
        "{e}"
    );
}
