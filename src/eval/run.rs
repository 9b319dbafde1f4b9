//! Running an evaluation: stream the external rows through the verified model, compute the
//! metrics overall and per subgroup, check leakage against the run's training rows, judge the
//! criteria and establish whether they were pre-registered.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::criteria::{self, Criteria, Judged};
use super::metrics::{self, Metrics, Subgroup};
use super::prereg::{self, PreRegStatus};
use super::{CriteriaRef, DataRef, Evaluation, Evaluator, Leakage, ModelRef, PreRegistration};
use crate::data::table::{self, Dialect};
use crate::predict::{Columns, Model, Wanted};
use crate::spec::{SpecError, Task};

/// Most distinct values of one subgroup column.
const MAX_GROUPS: usize = 1000;

/// Errors that stop an evaluation (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The criteria file is invalid.
    #[error(transparent)]
    Criteria(#[from] SpecError),
    /// The data is unusable.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
}

/// How to evaluate.
pub struct EvalOptions<'a> {
    /// The evaluation CSV (with the label column).
    pub data: PathBuf,
    /// Subgroup columns.
    pub by: Vec<String>,
    /// The criteria file.
    pub criteria: Option<PathBuf>,
    /// Where the run's training data lives (default: the git work tree holding the run, else
    /// the current directory).
    pub root: Option<PathBuf>,
    /// Skip rows with an unusable feature or label (counted).
    pub skip_bad_rows: bool,
    /// Check the criteria commitment's anchor online.
    pub online: Option<&'a crate::anchor::chain::Chain>,
    /// The directory the attestation will be written to (recorded paths are relative to it).
    pub out_dir: PathBuf,
}

#[derive(Default)]
struct Rows {
    truth_class: Vec<usize>,
    truth_value: Vec<f64>,
    outputs: Vec<Vec<f32>>,
    groups: Vec<Vec<String>>,
    digests: Vec<([u8; 32], u64)>,
    skipped: u64,
}

/// Evaluate `model` on `opts.data`.
pub fn evaluate(model: &Model, opts: &EvalOptions<'_>) -> Result<Evaluation, EvalError> {
    let started_on = crate::manifest::now_rfc3339();
    let started = std::time::SystemTime::now();
    let criteria = match &opts.criteria {
        Some(p) => Some((p.clone(), Criteria::load(p)?)),
        None => None,
    };
    let mut by = opts.by.clone();
    for c in criteria.iter().flat_map(|(_, (c, _))| c.gap_columns()) {
        if !by.contains(&c) {
            by.push(c);
        }
    }
    let rows = read_rows(model, opts, &by)?;
    let min_subgroup_rows = criteria
        .as_ref()
        .map_or(criteria::DEFAULT_MIN_SUBGROUP_ROWS, |(_, (c, _))| {
            c.min_subgroup_rows
        });
    let overall = metrics_of(model, &rows, None);
    let subgroups = subgroups(model, opts, &rows, &by, min_subgroup_rows)?;
    let leakage = leakage(model, opts, &rows);
    let pre_registration = match &criteria {
        Some((path, (_, bytes))) => prereg::judge(
            path,
            &prereg::Judge {
                criteria: bytes,
                started,
                online: opts.online,
                out_dir: &opts.out_dir,
            },
        ),
        None => PreRegistration {
            status: PreRegStatus::None,
            detail: "no criteria file".into(),
            commitment: None,
        },
    };
    let criteria = criteria.map(|(path, (c, bytes))| {
        let found = Found {
            overall: &overall,
            subgroups: &subgroups,
            leakage: &leakage,
            pre_registration: &pre_registration,
        };
        judged(opts, path, c, &bytes, &found)
    });
    let data_digest = crate::hash::Hasher::new(None, true).hash_file(&opts.data)?;
    let verdict = Evaluation::verdict_of(criteria.as_ref());
    Ok(Evaluation {
        model: ModelRef {
            manifest: crate::fsio::relative_to(&opts.out_dir, &model.manifest),
            manifest_blake3: model.manifest_blake3.clone(),
            verified: model.verified,
        },
        evaluator: Evaluator {
            id: crate::manifest::BUILDER_ID.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        started_on,
        finished_on: crate::manifest::now_rfc3339(),
        data: DataRef {
            name: crate::fsio::relative_to(&opts.out_dir, &opts.data),
            sha256: data_digest.sha256.map(|s| s.hex()).unwrap_or_default(),
            blake3: data_digest.blake3.hex(),
            rows: rows.outputs.len() as u64,
            skipped: rows.skipped,
            label: model.pre.label.clone(),
        },
        task: match model.pre.task {
            Task::Classification => "classification".into(),
            Task::Regression => "regression".into(),
        },
        classes: model.pre.classes.clone(),
        overall,
        subgroups,
        min_subgroup_rows,
        leakage,
        criteria,
        pre_registration,
        verdict,
    })
}

/// Metrics per value of each `by` column.
fn subgroups(
    model: &Model,
    opts: &EvalOptions<'_>,
    rows: &Rows,
    by: &[String],
    min_subgroup_rows: u64,
) -> Result<Vec<Subgroup>, EvalError> {
    let mut subgroups = Vec::new();
    for (k, column) in by.iter().enumerate() {
        let mut values: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, g) in rows.groups.iter().enumerate() {
            values.entry(g[k].as_str()).or_default().push(i);
        }
        if values.len() > MAX_GROUPS {
            return Err(EvalError::Data {
                path: opts.data.clone(),
                line: Some(1),
                message: format!(
                    "subgroup column `{column}` has more than {MAX_GROUPS} distinct values"
                ),
            });
        }
        for (value, idx) in values {
            let metrics = metrics_of(model, rows, Some(&idx));
            subgroups.push(Subgroup {
                column: column.clone(),
                value: value.to_string(),
                too_small: (idx.len() as u64) < min_subgroup_rows,
                metrics,
            });
        }
    }
    Ok(subgroups)
}

/// What the criteria are judged on.
struct Found<'a> {
    overall: &'a Metrics,
    subgroups: &'a [Subgroup],
    leakage: &'a Leakage,
    pre_registration: &'a PreRegistration,
}

/// Every criterion judged, plus the leakage and pre-registration checks.
fn judged(
    opts: &EvalOptions<'_>,
    path: PathBuf,
    c: Criteria,
    bytes: &[u8],
    found: &Found<'_>,
) -> CriteriaRef {
    let Found {
        overall,
        subgroups,
        leakage,
        pre_registration,
    } = found;
    let mut results: Vec<Judged> = c
        .criteria
        .iter()
        .map(|k| k.judge(overall, subgroups))
        .collect();
    results.push(Judged {
        criterion: "no evaluation row trained or validated the model".into(),
        value: Some(leakage.overlapping_rows as f64),
        passed: c.allow_leakage || (leakage.status == "checked" && leakage.overlapping_rows == 0),
        detail: if c.allow_leakage {
            "allowed by the criteria (allow_leakage: true)".into()
        } else if leakage.status != "checked" {
            format!("not checked: {}", leakage.detail)
        } else {
            leakage.detail.clone()
        },
    });
    if c.require_preregistration {
        results.push(Judged {
            criterion: "the criteria were committed before the evaluation".into(),
            value: None,
            passed: pre_registration.status.proven(),
            detail: pre_registration.detail.clone(),
        });
    }
    let d = crate::hash::bytes_digest(bytes);
    CriteriaRef {
        name: crate::fsio::relative_to(&opts.out_dir, &path),
        sha256: d.sha256.map(|s| s.hex()).unwrap_or_default(),
        blake3: d.blake3.hex(),
        criteria: c,
        results,
    }
}

fn metrics_of(model: &Model, rows: &Rows, idx: Option<&[usize]>) -> Metrics {
    let all: Vec<usize>;
    let idx = match idx {
        Some(i) => i,
        None => {
            all = (0..rows.outputs.len()).collect();
            &all
        }
    };
    match model.classes() {
        Some(classes) => {
            let truth: Vec<usize> = idx.iter().map(|&i| rows.truth_class[i]).collect();
            let probs: Vec<Vec<f32>> = idx.iter().map(|&i| rows.outputs[i].clone()).collect();
            metrics::classification(&truth, &probs, classes)
        }
        None => {
            let truth: Vec<f64> = idx.iter().map(|&i| rows.truth_value[i]).collect();
            let pred: Vec<f64> = idx
                .iter()
                .map(|&i| f64::from(rows.outputs[i].first().copied().unwrap_or(f32::NAN)))
                .collect();
            metrics::regression(&truth, &pred)
        }
    }
}

/// Stream the evaluation rows through the model.
fn read_rows(model: &Model, opts: &EvalOptions<'_>, by: &[String]) -> Result<Rows, EvalError> {
    let data_err = |line: Option<u64>, message: String| EvalError::Data {
        path: opts.data.clone(),
        line,
        message,
    };
    let bytes = crate::fsio::read_bounded(&opts.data, crate::data::MAX_DATA_BYTES)
        .map_err(|e| data_err(None, e.to_string()))?;
    let dialect = Dialect {
        delimiter: table::sniff(&bytes),
        missing: model.pre.dialect.missing.clone(),
    };
    let (mut reader, meter) = table::reader(bytes.as_slice(), &dialect);
    let header = reader
        .headers()
        .map_err(|e| data_err(Some(1), table::csv_message(&e)))?
        .clone();
    let want = Wanted {
        label: true,
        by,
        ..Wanted::default()
    };
    let cols = Columns::match_header(&header, &model.pre, &want)
        .map_err(|e| data_err(Some(1), e.to_string()))?;
    let mut rows = Rows::default();
    let mut record = csv::StringRecord::new();
    let mut x = Vec::new();
    let mut pending = 0usize;
    let mut n = 0u64;
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            data_err(
                e.position().map(csv::Position::line),
                table::csv_message(&e),
            )
        })?;
        if more {
            meter.next_record();
            n += 1;
            let line = record.position().map(csv::Position::line);
            let label = cols.label.map_or("", |i| table::cell(&record, i));
            if model.pre.dialect.is_missing(label) && record.len() == header.len() {
                // A row without a label cannot be judged: left out and counted, as in training.
                rows.skipped += 1;
                continue;
            }
            match eval_row(model, &cols, &header, &record, &mut x) {
                Ok((class, value, digest)) => {
                    rows.truth_class.push(class);
                    rows.truth_value.push(value);
                    rows.groups.push(
                        cols.by
                            .iter()
                            .map(|(_, i)| record.get(*i).unwrap_or("").trim().to_string())
                            .collect(),
                    );
                    rows.digests.push((digest, n));
                    pending += 1;
                }
                Err(why) => {
                    if !opts.skip_bad_rows {
                        return Err(data_err(line, format!("{why} (or pass --skip-bad-rows)")));
                    }
                    rows.skipped += 1;
                }
            }
        }
        if pending >= 4096 || (!more && pending > 0) {
            rows.outputs
                .extend(model.infer(std::mem::take(&mut x), pending));
            pending = 0;
        }
        if !more {
            break;
        }
    }
    if rows.outputs.is_empty() {
        return Err(data_err(None, "no usable rows to evaluate".into()));
    }
    Ok(rows)
}

/// One evaluation row: encoded onto `x`, its truth (class index or value) and its digest; or
/// why it cannot be used (nothing is left on `x` then).
fn eval_row(
    model: &Model,
    cols: &Columns,
    header: &csv::StringRecord,
    record: &csv::StringRecord,
    x: &mut Vec<f32>,
) -> Result<(usize, f64, [u8; 32]), String> {
    if record.len() != header.len() {
        return Err(format!(
            "{} fields, the header has {}",
            record.len(),
            header.len()
        ));
    }
    let label = record
        .get(cols.label.unwrap_or(0))
        .map(str::trim)
        .unwrap_or("");
    let truth = match model.classes() {
        Some(classes) => classes
            .iter()
            .position(|c| c == label)
            .map(|c| (c, 0.0))
            .ok_or_else(|| {
                format!(
                    "label `{label}` is not one of the model's classes ({})",
                    classes.join(", ")
                )
            })?,
        None => label
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| (0, v))
            .ok_or_else(|| format!("label `{label}` is not a number"))?,
    };
    let cells = cols.cells(record);
    model.pre.encode(&cells, x).map_err(|e| e.to_string())?;
    Ok((truth.0, truth.1, model.pre.row_digest(&cells, Some(label))))
}

/// The run's training data files under the root, each read through its recorded digest (`Err`:
/// why the leakage check cannot be made).
fn training_files(
    model: &Model,
    opts: &EvalOptions<'_>,
) -> Result<Vec<crate::data::SourceBytes>, String> {
    if model.data.is_empty() {
        return Err("the manifest records no training data".into());
    }
    let root = opts.root.clone().unwrap_or_else(|| {
        crate::provenance::project_root(crate::run_dir::of_manifest(&model.manifest))
    });
    let mut files = Vec::new();
    for dep in &model.data {
        let name = dep.name.clone().unwrap_or_default();
        let Some(recorded) = dep.digest.get("blake3") else {
            return Err(format!(
                "training data {name} is withheld: its rows cannot be compared"
            ));
        };
        let path = crate::fsio::safe_join(&root, &name)
            .map_err(|e| format!("training data {name}: {e}"))?;
        let bytes = crate::hash::read_pinned(&path, recorded, crate::data::MAX_DATA_BYTES)
            .map_err(|e| {
                format!(
                    "training data {} is not as the manifest records it ({e}); pass --root",
                    path.display()
                )
            })?;
        files.push(crate::data::SourceBytes { path, bytes });
    }
    Ok(files)
}

/// Compare the evaluation rows with the run's training and validation rows.
fn leakage(model: &Model, opts: &EvalOptions<'_>, rows: &Rows) -> Leakage {
    let not_checked = |detail: String| Leakage {
        status: "not-checked".into(),
        overlapping_rows: 0,
        reference_rows: 0,
        detail,
    };
    let files = match training_files(model, opts) {
        Ok(f) => f,
        Err(why) => return not_checked(why),
    };
    let skip = crate::data::ParseOptions {
        skip_bad_rows: true,
    };
    let prepared = match crate::data::parse_sources(&model.spec, &files, skip) {
        Ok(p) => p,
        Err(e) => return not_checked(format!("training data: {e}")),
    };
    let used: HashSet<usize> = prepared
        .train
        .source_rows
        .iter()
        .chain(&prepared.validation.source_rows)
        .copied()
        .collect();
    // The rows as training numbered them: each file's records after its header, in order.
    let mut reference = HashSet::new();
    let mut i = 0usize;
    for f in &files {
        let (mut reader, meter) = table::reader(f.bytes.as_slice(), &model.pre.dialect);
        let Ok(header) = reader.headers().cloned() else {
            return not_checked("training data has no header".into());
        };
        let want = Wanted {
            label: true,
            ..Wanted::default()
        };
        let Ok(cols) = Columns::match_header(&header, &model.pre, &want) else {
            return not_checked("training data lacks the model's columns".into());
        };
        let label_col = cols.label.unwrap_or(0);
        let mut rec = csv::StringRecord::new();
        while reader.read_record(&mut rec).unwrap_or(false) {
            meter.next_record();
            i += 1;
            if used.contains(&(i - 1)) {
                let cells = cols.cells(&rec);
                reference.insert(model.pre.row_digest(&cells, rec.get(label_col)));
            }
        }
    }
    let overlapping: Vec<u64> = rows
        .digests
        .iter()
        .filter(|(d, _)| reference.contains(d))
        .map(|(_, n)| *n)
        .collect();
    let shown: Vec<String> = overlapping.iter().take(10).map(u64::to_string).collect();
    Leakage {
        status: "checked".into(),
        overlapping_rows: overlapping.len() as u64,
        reference_rows: reference.len() as u64,
        detail: if overlapping.is_empty() {
            String::new()
        } else {
            format!(
                "evaluation rows {}{} equal training or validation rows",
                shown.join(", "),
                if overlapping.len() > shown.len() {
                    " and more"
                } else {
                    ""
                }
            )
        },
    }
}
