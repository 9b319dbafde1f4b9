use std::path::Path;

use super::*;

const MINIMAL: &str = "version: 1
name: t
seed: 3
data:
  path: d.csv
  label: y
  task: classification
model:
  type: mlp
";

fn err(yaml: &str) -> String {
    match Spec::parse(yaml, Path::new("p.yaml")) {
        Ok(_) => panic!("spec was accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_filled_in() {
    let s = Spec::parse(MINIMAL, Path::new("dir/p.yaml")).unwrap();
    assert_eq!(s.outputs.dir, "runs/t");
    assert_eq!(s.training.epochs, 20);
    assert_eq!(s.training.batch_size, 32);
    assert_eq!(s.training.optimizer.kind, OptimizerKind::Adam);
    assert_eq!(s.training.optimizer.lr, 1e-3);
    assert_eq!(s.data.normalize, Normalize::Standard);
    assert_eq!(s.model.hidden, vec![64]);
    assert_eq!(s.outputs.checkpoints, KeepCheckpoints::All);
    assert_eq!(
        s.data.resolved_path(Path::new("dir/p.yaml")),
        Path::new("dir/d.csv")
    );
}

#[test]
fn digest_changes_with_any_hyper_parameter() {
    let a = Spec::parse(MINIMAL, Path::new("p.yaml")).unwrap().digest();
    let b = Spec::parse(&MINIMAL.replace("seed: 3", "seed: 4"), Path::new("p.yaml"))
        .unwrap()
        .digest();
    let c = Spec::parse(
        &format!("{MINIMAL}training:\n  batch_size: 31\n"),
        Path::new("p.yaml"),
    )
    .unwrap()
    .digest();
    assert_ne!(a, b);
    assert_ne!(a, c);
}

#[test]
fn errors_name_file_line_and_column() {
    assert_eq!(
        err(&MINIMAL.replace("model:\n", "model:\n  layers: 3\n")),
        "p.yaml:9:3: unknown field `layers`, expected one of type, hidden, activation, dropout, conv"
    );
    assert_eq!(
        err(&format!("{MINIMAL}training:\n  epochs: 0\n")),
        "p.yaml:11:11: training.epochs must be at least 1"
    );
    assert_eq!(
        err(&format!("{MINIMAL}training:\n  epochs: many\n")),
        "p.yaml:11:11: expected a whole number (0 or more)"
    );
    assert_eq!(
        err(&MINIMAL.replace("version: 1", "version: 2")),
        "p.yaml:1:10: unsupported spec version 2 (this auditai reads version 1)"
    );
}

#[test]
fn split_must_be_fractions_that_sum_to_one() {
    let with_split = |s: &str| {
        MINIMAL.replace(
            "  task: classification\n",
            &format!("  task: classification\n  split: {s}\n"),
        )
    };
    assert_eq!(
        err(&with_split("{ train: 1.2, validation: 0.1 }")),
        "p.yaml:8:19: data.split.train must be a fraction between 0 and 1, got 1.2"
    );
    assert_eq!(
        err(&with_split("{ train: 0.5, validation: 0.1, test: 0.1 }")),
        "p.yaml:8:10: data.split fractions must sum to 1, they sum to 0.7"
    );
}

#[test]
fn cnn_needs_a_shape_and_pooling_must_fit() {
    assert_eq!(
        err(&MINIMAL.replace("type: mlp", "type: cnn")),
        "p.yaml:9:9: a cnn model needs data.shape (for example [1, 8, 8]) to see rows as images"
    );
    let yaml = MINIMAL
        .replace("type: mlp", "type: cnn\n  conv: { channels: [4, 4, 4, 4] }")
        .replace(
            "  task: classification\n",
            "  task: classification\n  shape: [1, 8, 8]\n",
        );
    assert_eq!(
        err(&yaml),
        "p.yaml:11:9: 4 conv layers with 2x2 pooling shrink a 8x8 image below 1x1; use fewer layers or `pool: none`"
    );
}

#[test]
fn momentum_is_only_for_sgd() {
    assert_eq!(
        err(&format!(
            "{MINIMAL}training:\n  optimizer: {{ type: adam, momentum: 0.9 }}\n"
        )),
        "p.yaml:11:38: training.optimizer.momentum only applies to `type: sgd` (adam uses betas)"
    );
}

#[test]
fn cosine_schedule_ends_at_min_lr() {
    let s = ScheduleSpec {
        kind: ScheduleKind::Cosine,
        min_lr: 0.1,
        step_size: 1,
        gamma: 1.0,
    };
    assert_eq!(s.lr_at(1.0, 0, 5), 1.0);
    assert!((s.lr_at(1.0, 4, 5) - 0.1).abs() < 1e-12);
    assert!((s.lr_at(1.0, 2, 5) - 0.55).abs() < 1e-12);
    let step = ScheduleSpec {
        kind: ScheduleKind::Step,
        min_lr: 0.0,
        step_size: 2,
        gamma: 0.5,
    };
    assert_eq!(
        (0..5).map(|e| step.lr_at(1.0, e, 5)).collect::<Vec<_>>(),
        vec![1.0, 1.0, 0.5, 0.5, 0.25]
    );
}

#[test]
fn audit_segments_split_each_epoch() {
    let s = Spec::parse(MINIMAL, Path::new("p.yaml")).unwrap();
    assert_eq!(s.audit.every_steps, None);
    assert_eq!(s.audit.segment_ends(10), vec![10]);
    let every = |n| AuditSpec {
        every_steps: Some(n),
    };
    assert_eq!(every(4).segment_ends(10), vec![4, 8, 10]);
    assert_eq!(every(5).segment_ends(10), vec![5, 10]);
    assert_eq!(every(20).segment_ends(10), vec![10]);
    let s = Spec::parse(
        &format!("{MINIMAL}audit:\n  every_steps: 3\n"),
        Path::new("p.yaml"),
    )
    .unwrap();
    assert_eq!(s.audit.every_steps, Some(3));
    assert_eq!(
        err(&format!("{MINIMAL}audit:\n  every_steps: 0\n")),
        "p.yaml:11:16: audit.every_steps must be at least 1"
    );
}

#[test]
fn data_sources_replace_the_path_and_are_checked() {
    let sources = MINIMAL.replace(
        "  path: d.csv\n",
        "  sources:\n    - path: a.csv\n      contribution: a.json\n    - path: b.csv\n",
    );
    let s = Spec::parse(&sources, Path::new("dir/p.yaml")).unwrap();
    assert_eq!(s.data.path.value, "a.csv");
    let files = s.data.files(Path::new("dir/p.yaml"));
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].0, Path::new("dir/b.csv"));
    assert_eq!(
        s.data.sources[0]
            .contribution
            .as_ref()
            .map(|c| c.value.as_str()),
        Some("a.json")
    );
    assert_ne!(
        s.digest(),
        Spec::parse(MINIMAL, Path::new("dir/p.yaml"))
            .unwrap()
            .digest()
    );
    assert_eq!(
        err(&MINIMAL.replace(
            "  path: d.csv\n",
            "  path: d.csv\n  sources:\n    - path: a.csv\n"
        )),
        "p.yaml:5:9: give data.path or data.sources, not both"
    );
    assert_eq!(
        err(&MINIMAL.replace("  path: d.csv\n", "")),
        "p.yaml:5:10: data needs `path` or `sources`"
    );
    assert_eq!(
        err(&MINIMAL.replace("  path: d.csv\n", "  sources: []\n")),
        "p.yaml:5:12: data.sources lists 1 to 256 sources"
    );
    assert_eq!(
        err(&MINIMAL.replace(
            "  path: d.csv\n",
            "  sources:\n    - path: a.csv\n    - path: a.csv\n"
        )),
        "p.yaml:7:13: source `a.csv` is listed twice"
    );
    assert_eq!(
        err(&MINIMAL.replace(
            "  path: d.csv\n",
            "  sources:\n    - path: a.csv\n      owners: x\n"
        )),
        "p.yaml:7:7: unknown field `owners`, expected one of path, contribution, owner, salt"
    );
}
