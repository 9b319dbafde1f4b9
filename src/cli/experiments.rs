//! Comparing experiments on the command line: `auditai params diff|show`, `auditai metrics
//! diff|show` and `auditai runs`. Results on stdout (a table, or JSON with `--json`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::experiments::{self, Change, Point};

use super::{EXIT_OK, clean, write_json};

#[derive(Debug, clap::Subcommand)]
pub(super) enum ParamsCmd {
    /// Show the params that differ between two points, as `dvc params diff` does.
    ///
    /// A point is a pipeline manifest or pipeline run directory (the params its stages ran
    /// with), or a spec file (its params as they resolve now, from params.yaml and the spec).
    /// Without points: the last complete run against the working tree; with one: that point
    /// against the working tree.
    Diff(DiffArgs),
    /// Show the params of one point (default: the working tree).
    Show(ShowArgs),
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum MetricsCmd {
    /// Show the metrics that differ between two points, with the change, as `dvc metrics diff`.
    ///
    /// Points as for `auditai params diff`; the working tree's metrics are the stages' metrics
    /// files (and training stages' summary.json) as they are on disk now.
    Diff(DiffArgs),
    /// Show the metrics of one point (default: the working tree).
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct DiffArgs {
    /// The first point (default: the last complete run of the spec).
    a: Option<PathBuf>,
    /// The second point (default: the working tree).
    b: Option<PathBuf>,
    /// The pipeline spec (default: dvc.yaml, pipeline.yaml, or the one YAML file with `stages:`
    /// in the current directory).
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Show unchanged values too.
    #[arg(long)]
    all: bool,
    /// Print `{file: {key: {old, new, diff}}}` instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// A pipeline manifest, pipeline run directory or spec file (default: the working tree).
    point: Option<PathBuf>,
    /// The pipeline spec, as for `diff`.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Print `{file: {key: value}}` instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct RunsArgs {
    /// Directories to look for runs in (default: runs).
    dirs: Vec<PathBuf>,
    /// Print a JSON array instead of the table.
    #[arg(long)]
    json: bool,
}

/// The spec the points default to.
fn find_spec(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = given {
        return Ok(s.to_path_buf());
    }
    for name in ["dvc.yaml", "pipeline.yaml"] {
        if Path::new(name).is_file() {
            return Ok(PathBuf::from(name));
        }
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(".")?.flatten().take(1024) {
        let p = e.path();
        let yaml = matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"));
        if yaml
            && std::fs::read_to_string(&p)
                .is_ok_and(|t| t.lines().any(|l| l.starts_with("stages:")))
        {
            found.push(p);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "no pipeline spec here (dvc.yaml, pipeline.yaml, or a YAML file with `stages:`); name one with --spec"
        ),
        _ => anyhow::bail!("several pipeline specs here; name one with --spec"),
    }
}

/// A point given on the command line: a spec file is its working tree, anything else a run.
fn point(path: &Path) -> anyhow::Result<Point> {
    let spec = matches!(
        path.extension().and_then(|x| x.to_str()),
        Some("yaml" | "yml")
    );
    Ok(if spec {
        experiments::workspace(path)?
    } else {
        experiments::of_manifest(path)?.0
    })
}

/// The last complete run of `spec`.
fn last_run(spec: &Path) -> anyhow::Result<Point> {
    let project = auditai::stages::Project::open(spec)?;
    let manifest = Path::new(&project.spec.run_dir).join(auditai::run_dir::MANIFEST);
    if !manifest.is_file() {
        anyhow::bail!(
            "{}: no complete run of {} yet ({} is missing); run it first, or name two points",
            spec.display(),
            project.spec.name,
            manifest.display()
        );
    }
    let mut p = experiments::of_manifest(&manifest)?.0;
    p.label = "last run".into();
    Ok(p)
}

fn points(args: &DiffArgs) -> anyhow::Result<(Point, Point)> {
    let spec = || find_spec(args.spec.as_deref());
    let a = match &args.a {
        Some(a) => point(a)?,
        None => last_run(&spec()?)?,
    };
    let b = match &args.b {
        Some(b) => point(b)?,
        None => experiments::workspace(&spec()?)?,
    };
    Ok((a, b))
}

fn show_value(v: Option<&Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1e5).round() / 1e5),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn write_changes(
    out: &mut dyn Write,
    changes: &[Change],
    labels: (&str, &str),
    what: &str,
    with_change: bool,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        writeln!(
            out,
            "no {what} changed between {} and {}",
            labels.0, labels.1
        )?;
        return Ok(());
    }
    let mut b = Builder::default();
    let mut head = vec![
        "Path",
        if what == "params" { "Param" } else { "Metric" },
        labels.0,
        labels.1,
    ];
    if with_change {
        head.push("Change");
    }
    b.push_record(head.iter().map(|h| clean(h)));
    for c in changes {
        let mut row = vec![
            clean(&c.path),
            clean(&c.key),
            clean(&show_value(c.old.as_ref())),
            clean(&show_value(c.new.as_ref())),
        ];
        if with_change {
            row.push(
                c.diff
                    .map_or("-".into(), |d| format!("{:+}", (d * 1e5).round() / 1e5)),
            );
        }
        b.push_record(row);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    Ok(())
}

/// `auditai params diff|show`.
pub(super) fn params_cmd(cmd: &ParamsCmd) -> anyhow::Result<u8> {
    match cmd {
        ParamsCmd::Diff(args) => diff_cmd(args, "params"),
        ParamsCmd::Show(args) => show_cmd(args, "params"),
    }
}

/// `auditai metrics diff|show`.
pub(super) fn metrics_cmd(cmd: &MetricsCmd) -> anyhow::Result<u8> {
    match cmd {
        MetricsCmd::Diff(args) => diff_cmd(args, "metrics"),
        MetricsCmd::Show(args) => show_cmd(args, "metrics"),
    }
}

fn diff_cmd(args: &DiffArgs, what: &str) -> anyhow::Result<u8> {
    let (a, b) = points(args)?;
    let (da, db) = if what == "params" {
        (&a.params, &b.params)
    } else {
        (&a.metrics, &b.metrics)
    };
    let changes = experiments::diff(da, db, args.all);
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &experiments::to_json(&changes))?;
    } else {
        write_changes(
            &mut out,
            &changes,
            (&a.label, &b.label),
            what,
            what == "metrics",
        )?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn show_cmd(args: &ShowArgs, what: &str) -> anyhow::Result<u8> {
    let p = match &args.point {
        Some(path) => point(path)?,
        None => experiments::workspace(&find_spec(args.spec.as_deref())?)?,
    };
    let values = if what == "params" {
        &p.params
    } else {
        &p.metrics
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut j = serde_json::Map::new();
        for ((file, key), v) in values {
            let f = j
                .entry(file.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = f {
                m.insert(key.clone(), v.clone());
            }
        }
        write_json(&mut out, &Value::Object(j))?;
    } else {
        let mut b = Builder::default();
        b.push_record([
            "Path",
            if what == "params" { "Param" } else { "Metric" },
            "Value",
        ]);
        for ((file, key), v) in values {
            b.push_record([clean(file), clean(key), clean(&show_value(Some(v)))]);
        }
        writeln!(out, "{}", b.build().with(Style::sharp()))?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// `auditai runs`: every run manifest under the given directories, newest first.
pub(super) fn runs_cmd(args: &RunsArgs) -> anyhow::Result<u8> {
    let dirs = if args.dirs.is_empty() {
        vec![PathBuf::from("runs")]
    } else {
        args.dirs.clone()
    };
    for d in &dirs {
        if !d.is_dir() {
            anyhow::bail!("{}: not a directory", d.display());
        }
    }
    let rows = experiments::runs(&dirs).context("listing runs")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &rows)?;
        out.flush()?;
        return Ok(EXIT_OK);
    }
    let mut b = Builder::default();
    b.push_record([
        "finished", "kind", "name", "params", "metrics", "signer", "manifest",
    ]);
    let short = |m: &std::collections::BTreeMap<String, Value>, n: usize| {
        let mut s: Vec<String> = m
            .iter()
            .take(n)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    k.rsplit(':').next().unwrap_or(k),
                    show_value(Some(v))
                )
            })
            .collect();
        if m.len() > n {
            s.push(format!("(+{})", m.len() - n));
        }
        s.join(" ")
    };
    for r in &rows {
        let name = if r.complete {
            r.name.clone()
        } else {
            format!("{} (incomplete)", r.name)
        };
        let signer: Vec<String> = r
            .signers
            .iter()
            .map(|s| s.chars().take(16).collect())
            .collect();
        b.push_record([
            clean(&r.finished),
            r.kind.to_string(),
            clean(&name),
            clean(&short(&r.params, 4)),
            clean(&short(&r.metrics, 3)),
            clean(&signer.join(",")),
            clean(&r.manifest.display().to_string()),
        ]);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    writeln!(out, "{} run(s)", rows.len())?;
    out.flush()?;
    Ok(EXIT_OK)
}
