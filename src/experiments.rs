//! Experiments as a DVC user compares them: a pipeline's params and metrics at one point (the
//! working tree, or one run's manifest), what changed between two points (`params diff`,
//! `metrics diff`), and the runs a project holds (`auditai runs`).
//!
//! Owns reading those points and diffing them. Manifests are opened through the trust gate
//! without a signature requirement (a diff is not a verdict: each point says who signed it and
//! whether that was checked). Reads only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::manifest::StageRecord;
use crate::spec::StageKind;
use crate::stages::{Project, StageError};
use crate::trust::{Required, RunKind, SignedRun, TrustError};

/// Largest metrics file read from the working tree.
const MAX_METRICS: u64 = 16 << 20;
/// Most manifests `auditai runs` lists.
const MAX_RUNS: usize = 10_000;

/// Why a point could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The working tree's pipeline could not be opened.
    #[error(transparent)]
    Project(#[from] StageError),
    /// A manifest did not pass the gate or is not a pipeline's.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A metrics file could not be read.
    #[error("{path}: {message}")]
    Metrics {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A `(file, key)` pair: a param's parameter file (or the spec, for its own `params:`) and
/// dotted key, or a metric's file and dotted key.
pub type Key = (String, String);

/// A pipeline's params and metrics at one point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// How the point is shown: `workspace`, or the manifest's path.
    pub label: String,
    /// Params by `(file, key)`.
    pub params: BTreeMap<Key, Value>,
    /// Metric leaves by `(file, key)`.
    pub metrics: BTreeMap<Key, Value>,
}

/// The working tree: the spec's params as they resolve now and the metrics files on disk.
pub fn workspace(spec: &Path) -> Result<Point, ExperimentError> {
    let p = Project::open(spec)?;
    let spec_name = p
        .graph
        .relative(&p.spec.source)
        .unwrap_or_else(|| p.spec.source.display().to_string());
    let mut params = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for (i, stage) in p.spec.stages.iter().enumerate() {
        match &stage.kind {
            StageKind::Command(c) => {
                for (k, v) in &c.params {
                    params.insert(param_key(&spec_name, &p.graph.base, k), v.clone());
                }
                for m in &stage.metrics {
                    let Some(k) = stage.outs.iter().position(|o| o.value == *m) else {
                        continue;
                    };
                    let rel = &p.graph.nodes[i].outs[k];
                    if let Some(v) = read_json(&p.graph.path(rel), rel)? {
                        flatten_into(&mut metrics, rel, &v);
                    }
                }
            }
            StageKind::Train(_) => {
                for (k, v) in &stage.template_params {
                    params.insert(param_key(&spec_name, &p.graph.base, k), v.clone());
                }
                let rel = &p.graph.nodes[i].outs[0];
                let summary = p.graph.path(rel).join("summary.json");
                let shown = format!("{rel}/summary.json");
                if let Some(Value::Object(s)) = read_json(&summary, &shown)? {
                    let scalars = headline_metrics(s.get("metrics"));
                    flatten_into(&mut metrics, rel, &Value::Object(scalars));
                }
            }
        }
    }
    Ok(Point {
        label: "workspace".into(),
        params,
        metrics,
    })
}

/// The metrics the manifest records for a training stage: the scalar headline metrics of its
/// summary's (or manifest's) `metrics`.
pub fn headline_metrics(m: Option<&Value>) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    if let Some(Value::Object(m)) = m {
        for k in ["accuracy", "macro_f1", "mse", "mae", "r2"] {
            if let Some(v) = m.get(k).filter(|v| v.is_number()) {
                out.insert(k.into(), v.clone());
            }
        }
    }
    out
}

/// A metrics file's JSON, `None` when it does not exist yet.
fn read_json(path: &Path, shown: &str) -> Result<Option<Value>, ExperimentError> {
    let bytes = match crate::fsio::read_bounded(path, MAX_METRICS) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ExperimentError::Metrics {
                path: shown.into(),
                message: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ExperimentError::Metrics {
            path: shown.into(),
            message: format!("{}:{}: not JSON: {e}", e.line(), e.column()),
        })
}

/// A recorded param key as `(file, key)`: `FILE:key` (spec-relative file) or a key of the
/// spec's own `params:`. Files are shown root-relative.
fn param_key(spec_name: &str, base: &str, recorded: &str) -> Key {
    match recorded.split_once(':') {
        Some((file, key)) => {
            let file = if base == "." {
                file.to_string()
            } else {
                format!("{base}/{file}")
            };
            (file, key.to_string())
        }
        None => (spec_name.to_string(), recorded.to_string()),
    }
}

fn flatten_into(out: &mut BTreeMap<Key, Value>, file: &str, v: &Value) {
    for (k, x) in crate::spec::params::leaves(v) {
        out.insert((file.to_string(), k), x.clone());
    }
}

/// A point from a pipeline manifest (or a pipeline run directory holding one).
pub fn of_manifest(path: &Path) -> Result<(Point, SignedRun), ExperimentError> {
    let run = SignedRun::open(path, RunKind::Pipeline, Required::Unchecked)?;
    let mut point = run.pipeline().map(point_of).unwrap_or(Point {
        label: String::new(),
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
    });
    point.label = run.path().display().to_string();
    Ok((point, run))
}

fn add_record(point: &mut Point, spec: &str, base: &str, rec: &StageRecord) {
    for (k, v) in &rec.params {
        point.params.insert(param_key(spec, base, k), v.clone());
    }
    for (file, v) in &rec.metrics {
        flatten_into(&mut point.metrics, file, v);
    }
}

/// One changed (or, with `all`, unchanged) param or metric.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Its file.
    pub path: String,
    /// Its dotted key.
    pub key: String,
    /// The value at the first point (absent: not there).
    pub old: Option<Value>,
    /// The value at the second point.
    pub new: Option<Value>,
    /// `new - old` when both are numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<f64>,
}

/// What differs between `a` and `b` (everything with `all`), in key order.
pub fn diff(a: &BTreeMap<Key, Value>, b: &BTreeMap<Key, Value>, all: bool) -> Vec<Change> {
    let mut keys: Vec<&Key> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (old, new) = (a.get(k), b.get(k));
            if old == new && !all {
                return None;
            }
            let diff = match (old.and_then(Value::as_f64), new.and_then(Value::as_f64)) {
                (Some(o), Some(n)) => Some(n - o),
                _ => None,
            };
            Some(Change {
                path: k.0.clone(),
                key: k.1.clone(),
                old: old.cloned(),
                new: new.cloned(),
                diff,
            })
        })
        .collect()
}

/// Changes as DVC's `--json` writes them: `{file: {key: {old, new, diff}}}`.
pub fn to_json(changes: &[Change]) -> Value {
    let mut out = serde_json::Map::new();
    for c in changes {
        let file = out
            .entry(c.path.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = file {
            let mut v = serde_json::json!({ "old": c.old, "new": c.new });
            if let Some(d) = c.diff {
                v["diff"] = serde_json::json!(d);
            }
            m.insert(c.key.clone(), v);
        }
    }
    Value::Object(out)
}

/// One run a project holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// The manifest.
    pub manifest: PathBuf,
    /// `pipeline` or `training`.
    pub kind: &'static str,
    /// The run's name.
    pub name: String,
    /// When it finished (RFC 3339), as recorded.
    pub finished: String,
    /// Signer key ids (`unsigned` when none).
    pub signers: Vec<String>,
    /// Whether a pipeline run completed (training runs always do).
    pub complete: bool,
    /// Its params (pipelines) or hyper-parameters (training runs), `file:key=value`.
    pub params: BTreeMap<String, Value>,
    /// Its headline metrics.
    pub metrics: BTreeMap<String, Value>,
}

/// Every run manifest under `dirs` (a run directory's `manifest.intoto.json` and a pipeline's
/// `history/`), newest first. Files that are not run manifests are skipped; one that cannot be
/// read is an error.
pub fn runs(dirs: &[PathBuf]) -> Result<Vec<RunRow>, ExperimentError> {
    let mut found = Vec::new();
    for d in dirs {
        collect(d, 0, &mut found);
    }
    found.sort();
    found.dedup();
    // A run directory's current manifest is also in its history/: list it once, as current.
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == "history")
    });
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for path in found.into_iter().take(MAX_RUNS) {
        let run = match SignedRun::open(&path, RunKind::Any, Required::Unchecked) {
            Ok(r) => r,
            Err(TrustError::Malformed { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if seen.insert(run.blake3_hex()) {
            // Finish times are to the second: the file's modification time orders ties.
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            rows.push((row(path, &run), mtime));
        }
    }
    rows.sort_by(|(a, ma), (b, mb)| b.finished.cmp(&a.finished).then(mb.cmp(ma)));
    Ok(rows.into_iter().map(|(r, _)| r).collect())
}

/// Manifest files under `dir` (at most four levels down, symlinks not followed).
fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else {
            continue;
        };
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if t.is_dir() && depth < 4 && !name.starts_with('.') && name != "checkpoints" {
            collect(&path, depth + 1, out);
        } else if t.is_file()
            && (name == crate::run_dir::MANIFEST
                || (name.ends_with(".intoto.json")
                    && dir.file_name().is_some_and(|d| d == "history")))
            && out.len() < MAX_RUNS
        {
            out.push(path);
        }
    }
}

fn row(manifest: PathBuf, run: &SignedRun) -> RunRow {
    let signers = match run.keyids() {
        k if k.is_empty() => vec!["unsigned".to_string()],
        k => k,
    };
    let st = run.statement();
    let finished = st.predicate.run_details.metadata.finished_on.clone();
    if let Some(ext) = run.pipeline() {
        let point = point_of(ext);
        return RunRow {
            manifest,
            kind: "pipeline",
            name: ext.name.clone(),
            finished,
            signers,
            complete: ext.complete,
            params: flat(&point.params),
            metrics: flat(&point.metrics),
        };
    }
    let mut params = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    if let Ok(spec) = run.spec() {
        let t = &spec.training;
        params.insert("epochs".into(), Value::from(t.epochs));
        params.insert("batch_size".into(), Value::from(t.batch_size));
        params.insert("lr".into(), serde_json::json!(t.optimizer.lr));
        params.insert("seed".into(), Value::from(spec.seed));
    }
    if let Some(ext) = &st.predicate.auditai {
        metrics = headline_metrics(Some(&ext.metrics)).into_iter().collect();
    }
    RunRow {
        manifest,
        kind: "training",
        name: run.stage_name().unwrap_or_default().to_string(),
        finished,
        signers,
        complete: true,
        params,
        metrics,
    }
}

fn point_of(ext: &crate::manifest::PipelineExtension) -> Point {
    let mut point = Point {
        label: String::new(),
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
    };
    let base = Path::new(&ext.spec)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into());
    for rec in &ext.stages {
        add_record(&mut point, &ext.spec, &base, rec);
    }
    point
}

fn flat(m: &BTreeMap<Key, Value>) -> BTreeMap<String, Value> {
    m.iter()
        .map(|((f, k), v)| (format!("{f}:{k}"), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_show_changes_and_numbers() {
        let k = |f: &str, k: &str| (f.to_string(), k.to_string());
        let a = BTreeMap::from([
            (k("m.json", "acc"), json!(0.8)),
            (k("m.json", "n"), json!(3)),
        ]);
        let b = BTreeMap::from([
            (k("m.json", "acc"), json!(0.9)),
            (k("x.json", "y"), json!("s")),
        ]);
        let d = diff(&a, &b, false);
        assert_eq!(d.len(), 3);
        assert!((d[0].diff.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(d[1].new, None);
        assert_eq!(diff(&a, &a, false).len(), 0);
        assert_eq!(diff(&a, &a, true).len(), 2);
        let j = to_json(&d);
        assert_eq!(j["m.json"]["acc"]["old"], json!(0.8));
        assert_eq!(
            param_key("p.yaml", "sub", "params.yaml:a.b"),
            k("sub/params.yaml", "a.b")
        );
        assert_eq!(param_key("p.yaml", ".", "a.b"), k("p.yaml", "a.b"));
    }
}
