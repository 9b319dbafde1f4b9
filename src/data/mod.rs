//! Tabular data: CSV loading, label encoding, seeded (stratified) splits and normalisation.
//!
//! Owns everything between the CSV bytes and the `f32` matrices training consumes, plus the
//! preprocessing record needed to apply a trained model to new rows. Never trains, never writes.
//! Errors about columns point back at the spec line that named them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::shuffle;
use crate::spec::{Located, Normalize, Pos, Spec, Task};

/// Errors from loading and preparing the data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A spec field does not fit the data (missing column, wrong shape, unreadable file).
    #[error("{}:{pos}: {message}", spec.display())]
    Spec {
        /// The spec file.
        spec: PathBuf,
        /// The field's position.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
    /// The CSV content is malformed.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
}

/// The targets of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices into [`Prepared::classes`].
    Classes(Vec<u32>),
    /// Regression values.
    Values(Vec<f32>),
}

impl Targets {
    fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// One split: normalised features (row-major) and targets.
#[derive(Debug, Clone)]
pub struct Part {
    /// `rows × features` values, row-major.
    pub x: Vec<f32>,
    /// Targets, one per row.
    pub targets: Targets,
    /// Number of rows.
    pub rows: usize,
    /// 0-based data-row numbers (header excluded) of these rows in the CSV.
    pub source_rows: Vec<usize>,
}

/// How raw feature values become model inputs: `(x - offset) / scale`, per feature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Format tag.
    pub schema: String,
    /// Feature column names, in input order.
    pub features: Vec<String>,
    /// Label column name.
    pub label: String,
    /// Task.
    pub task: Task,
    /// Class names in index order (classification).
    pub classes: Option<Vec<String>>,
    /// Normalisation kind.
    pub normalize: Normalize,
    /// Per-feature offset.
    pub offset: Vec<f32>,
    /// Per-feature scale.
    pub scale: Vec<f32>,
}

impl Preprocessing {
    /// Parse and validate a recorded `preprocessing.json`: one finite offset and non-zero scale
    /// per feature, class names for classification.
    pub fn from_json(bytes: &[u8]) -> Result<Preprocessing, RecordError> {
        let p: Preprocessing = serde_json::from_slice(bytes).map_err(RecordError::Json)?;
        let n = p.features.len();
        if n == 0 || p.offset.len() != n || p.scale.len() != n {
            return Err(RecordError::Shape {
                features: n,
                offsets: p.offset.len(),
                scales: p.scale.len(),
            });
        }
        if let Some(i) = (0..n)
            .find(|&i| !p.offset[i].is_finite() || !p.scale[i].is_finite() || p.scale[i] == 0.0)
        {
            return Err(RecordError::Scaling(p.features[i].clone()));
        }
        match (&p.task, &p.classes) {
            (Task::Classification, Some(c)) if !c.is_empty() => Ok(p),
            (Task::Regression, _) => Ok(p),
            _ => Err(RecordError::NoClasses),
        }
    }
}

/// Why a recorded `preprocessing.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the record's shape.
    #[error("not a preprocessing record: {0}")]
    Json(serde_json::Error),
    /// Lists of different lengths.
    #[error("{features} features but {offsets} offsets and {scales} scales")]
    Shape {
        /// Features.
        features: usize,
        /// Offsets.
        offsets: usize,
        /// Scales.
        scales: usize,
    },
    /// A feature's scaling is unusable.
    #[error("feature `{0}` has a non-finite offset or a zero scale")]
    Scaling(String),
    /// Classification without classes.
    #[error("a classification run without class names")]
    NoClasses,
}

/// The data ready for training.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The CSV file read.
    pub path: PathBuf,
    /// Total data rows in the CSV.
    pub rows: usize,
    /// Training rows.
    pub train: Part,
    /// Validation rows.
    pub validation: Part,
    /// Test rows (absent when `split.test` is 0).
    pub test: Option<Part>,
    /// Normalisation and label encoding.
    pub preprocessing: Preprocessing,
}

impl Prepared {
    /// Number of input features.
    pub fn features(&self) -> usize {
        self.preprocessing.features.len()
    }

    /// Number of classes (1 output for regression).
    pub fn outputs(&self) -> usize {
        self.preprocessing.classes.as_ref().map_or(1, Vec::len)
    }
}

/// The largest CSV auditai loads (it is held in memory while splits are prepared).
pub const MAX_DATA_BYTES: u64 = 8 << 30;

/// Read the bytes of the spec's data file.
pub fn read(spec: &Spec) -> Result<Vec<u8>, DataError> {
    let path = spec.data.resolved_path(&spec.source);
    std::fs::read(&path).map_err(|e| DataError::Spec {
        spec: spec.source.clone(),
        pos: spec.data.path.pos,
        message: format!("cannot read data file {}: {e}", path.display()),
    })
}

/// Read the spec's CSV and prepare splits.
pub fn load(spec: &Spec) -> Result<Prepared, DataError> {
    parse(spec, &read(spec)?)
}

/// Prepare splits from the bytes of the spec's CSV (as returned by [`read`]), so that what is
/// parsed is exactly what the caller hashed.
pub fn parse(spec: &Spec, bytes: &[u8]) -> Result<Prepared, DataError> {
    let ctx = Ctx {
        spec,
        path: spec.data.resolved_path(&spec.source),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ctx.csv_err(Some(1), csv_message(&e)))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let (label_col, feature_cols) = ctx.columns(&header)?;
    let (x, raw_labels) = ctx.rows(&mut reader, &header, label_col, &feature_cols)?;
    let rows = raw_labels.len();
    let d = feature_cols.len();
    let (targets, classes) = ctx.targets(&raw_labels, &header[label_col])?;
    let [train_idx, val_idx, test_idx] = split_indices(&targets, rows, spec);
    if train_idx.is_empty() || val_idx.is_empty() {
        return Err(ctx.csv_err(
            None,
            format!("{rows} rows are too few for the train/validation split"),
        ));
    }

    let (offset, scale) = fit_normalisation(&x, d, &train_idx, spec.data.normalize);
    let part = |idx: Vec<usize>| -> Part {
        let mut px = Vec::with_capacity(idx.len() * d);
        for &r in &idx {
            for f in 0..d {
                px.push((x[r * d + f] - offset[f]) / scale[f]);
            }
        }
        Part {
            x: px,
            targets: targets.select(&idx),
            rows: idx.len(),
            source_rows: idx,
        }
    };
    let test = (!test_idx.is_empty()).then(|| part(test_idx));
    Ok(Prepared {
        path: ctx.path.clone(),
        rows,
        train: part(train_idx),
        validation: part(val_idx),
        test,
        preprocessing: Preprocessing {
            schema: "auditai.preprocessing/v1".to_string(),
            features: feature_cols.iter().map(|&c| header[c].clone()).collect(),
            label: header[label_col].clone(),
            task: spec.data.task,
            classes,
            normalize: spec.data.normalize,
            offset,
            scale,
        },
    })
}

/// The spec and the data file being parsed, for errors that name a spec position or a CSV line.
struct Ctx<'a> {
    spec: &'a Spec,
    path: PathBuf,
}

impl Ctx<'_> {
    fn spec_err(&self, pos: Pos, message: String) -> DataError {
        DataError::Spec {
            spec: self.spec.source.clone(),
            pos,
            message,
        }
    }

    fn csv_err(&self, line: Option<u64>, message: String) -> DataError {
        DataError::Csv {
            path: self.path.clone(),
            line,
            message,
        }
    }

    /// The label column and the feature columns (after include/exclude), checked against
    /// `data.shape`.
    fn columns(&self, header: &[String]) -> Result<(usize, Vec<usize>), DataError> {
        let data = &self.spec.data;
        let find = |name: &Located<String>, what: &str| -> Result<usize, DataError> {
            header.iter().position(|h| *h == name.value).ok_or_else(|| {
                self.spec_err(
                    name.pos,
                    format!(
                        "{what} `{}` is not a column of {} (columns: {})",
                        name.value,
                        self.path.display(),
                        header.join(", ")
                    ),
                )
            })
        };
        let label_col = find(&data.label, "label column")?;
        let mut feature_cols: Vec<usize> = match &data.include {
            Some(list) => {
                let mut cols = Vec::new();
                for name in list {
                    let c = find(name, "feature")?;
                    if c == label_col {
                        return Err(self.spec_err(
                            name.pos,
                            format!(
                                "`{}` is the label column and cannot be a feature",
                                name.value
                            ),
                        ));
                    }
                    cols.push(c);
                }
                cols
            }
            None => (0..header.len()).filter(|&c| c != label_col).collect(),
        };
        for name in &data.exclude {
            let c = find(name, "excluded feature")?;
            feature_cols.retain(|&f| f != c);
        }
        if feature_cols.is_empty() {
            return Err(self.spec_err(
                data.label.pos,
                "no feature columns are left after include/exclude".to_string(),
            ));
        }
        if let Some(shape) = &data.shape {
            let [c, h, w] = shape.value;
            if c * h * w != feature_cols.len() {
                return Err(self.spec_err(
                    shape.pos,
                    format!(
                        "data.shape {c}x{h}x{w} holds {} values but there are {} feature columns",
                        c * h * w,
                        feature_cols.len()
                    ),
                ));
            }
        }
        Ok((label_col, feature_cols))
    }

    /// Every data row: the features (finite numbers) row-major, and the raw labels (non-empty).
    fn rows(
        &self,
        reader: &mut csv::Reader<&[u8]>,
        header: &[String],
        label_col: usize,
        feature_cols: &[usize],
    ) -> Result<(Vec<f32>, Vec<String>), DataError> {
        let mut x: Vec<f32> = Vec::new();
        let mut raw_labels: Vec<String> = Vec::new();
        for record in reader.records() {
            let record = record
                .map_err(|e| self.csv_err(e.position().map(|p| p.line()), csv_message(&e)))?;
            let line = record.position().map(|p| p.line());
            for &c in feature_cols {
                let cell = record.get(c).unwrap_or("").trim();
                let v: f32 = cell.parse().map_err(|_| {
                    self.csv_err(
                        line,
                        format!("column `{}`: `{cell}` is not a number", header[c]),
                    )
                })?;
                if !v.is_finite() {
                    return Err(self.csv_err(
                        line,
                        format!("column `{}`: `{cell}` is not a finite number", header[c]),
                    ));
                }
                x.push(v);
            }
            let label = record.get(label_col).unwrap_or("").trim();
            if label.is_empty() {
                return Err(self.csv_err(
                    line,
                    format!("label column `{}` is empty", header[label_col]),
                ));
            }
            raw_labels.push(label.to_string());
        }
        if raw_labels.is_empty() {
            return Err(self.csv_err(None, "no data rows after the header".to_string()));
        }
        Ok((x, raw_labels))
    }

    /// The targets: class indices in sorted class-name order (at least two classes), or the
    /// label values for regression.
    fn targets(
        &self,
        raw_labels: &[String],
        label_name: &str,
    ) -> Result<(Targets, Option<Vec<String>>), DataError> {
        match self.spec.data.task {
            Task::Classification => {
                let classes: Vec<String> = raw_labels
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if classes.len() < 2 {
                    return Err(self.spec_err(
                        self.spec.data.label.pos,
                        format!(
                            "classification needs at least 2 classes in `{}`, found {}",
                            self.spec.data.label.value,
                            classes.len()
                        ),
                    ));
                }
                let index: BTreeMap<&str, u32> = classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i as u32))
                    .collect();
                let t = raw_labels
                    .iter()
                    .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
                    .collect();
                Ok((Targets::Classes(t), Some(classes)))
            }
            Task::Regression => {
                let mut values = Vec::with_capacity(raw_labels.len());
                for (i, l) in raw_labels.iter().enumerate() {
                    let v: f32 = l.parse().ok().filter(|v: &f32| v.is_finite()).ok_or_else(|| {
                        self.csv_err(
                            Some(i as u64 + 2),
                            format!(
                                "label `{l}` in column `{label_name}` is not a number, but the task is regression"
                            ),
                        )
                    })?;
                    values.push(v);
                }
                Ok((Targets::Values(values), None))
            }
        }
    }
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    }
}

/// Seeded split: per class for classification (stratified), over all rows for regression.
fn split_indices(targets: &Targets, rows: usize, spec: &Spec) -> [Vec<usize>; 3] {
    let groups: Vec<Vec<usize>> = match targets {
        Targets::Classes(c) => {
            let k = c.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut g = vec![Vec::new(); k];
            for (i, &class) in c.iter().enumerate() {
                g[class as usize].push(i);
            }
            g
        }
        Targets::Values(_) => vec![(0..rows).collect()],
    };
    let split = spec.data.split;
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for (gi, mut group) in groups.into_iter().enumerate() {
        shuffle::shuffle(&mut group, &shuffle::key(spec.seed, "split", gi as u64));
        let n = group.len() as f64;
        let n_val = ((n * split.validation).round() as usize).min(group.len());
        let n_test = ((n * split.test).round() as usize).min(group.len() - n_val);
        let n_train = group.len() - n_val - n_test;
        out[0].extend_from_slice(&group[..n_train]);
        out[1].extend_from_slice(&group[n_train..n_train + n_val]);
        out[2].extend_from_slice(&group[n_train + n_val..]);
    }
    for part in &mut out {
        part.sort_unstable();
    }
    out
}

/// Offsets and scales from the training rows only, so no test statistics leak into training.
fn fit_normalisation(
    x: &[f32],
    d: usize,
    train: &[usize],
    kind: Normalize,
) -> (Vec<f32>, Vec<f32>) {
    let mut offset = vec![0.0f32; d];
    let mut scale = vec![1.0f32; d];
    let n = train.len() as f64;
    for f in 0..d {
        let col = train.iter().map(|&r| f64::from(x[r * d + f]));
        match kind {
            Normalize::None => {}
            Normalize::Standard => {
                let mean = col.clone().sum::<f64>() / n;
                let var = col.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                offset[f] = mean as f32;
                let sd = var.sqrt() as f32;
                scale[f] = if sd > 1e-12 { sd } else { 1.0 };
            }
            Normalize::Minmax => {
                let (lo, hi) = col.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
                offset[f] = lo as f32;
                let range = (hi - lo) as f32;
                scale[f] = if range > 1e-12 { range } else { 1.0 };
            }
        }
    }
    (offset, scale)
}

#[cfg(test)]
mod tests;
