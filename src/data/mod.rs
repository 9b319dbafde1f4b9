//! Tabular data: a raw CSV (any common dialect, gaps, categories) into the `f32` matrices
//! training consumes, with everything fitted on the training rows only and recorded as the
//! run's [`Preprocessing`].
//!
//! The CSV is read in three passes over its bytes: the rows and their labels (wrong widths and
//! missing or non-numeric labels are bad rows), then, once the seeded split is known, the types
//! of the columns from the training rows, then the values (a non-number in a numeric column is a
//! bad row). Every bad row is reported at once, or with `skip_bad_rows` left out and counted.
//! Never trains, never writes. Errors about columns point back at the spec line that named them.

mod fit;
mod infer;
mod read;
mod sources;
mod split;
pub mod table;
#[cfg(test)]
mod tests;
pub mod transform;

use std::path::PathBuf;

use serde::Serialize;

use crate::spec::{ColumnRole, Located, NumericImpute, Pos, Spec};
use infer::Roles;
pub use sources::{SourceBytes, SourceSpan, parse_sources, read_all};
pub use table::Dialect;
pub use transform::{Affine, CellError, Column, Encoded, Preprocessing, RecordError};

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
    /// Rows that cannot be used, all of them (the first few by line).
    #[error("{}: {} bad row(s): {}", path.display(), bad.len(), shown(bad))]
    BadRows {
        /// The CSV file.
        path: PathBuf,
        /// Every bad row.
        bad: Vec<BadRow>,
    },
}

/// How many bad rows a message lists.
const SHOWN_BAD_ROWS: usize = 20;

fn shown(bad: &[BadRow]) -> String {
    let mut s: Vec<String> = bad
        .iter()
        .take(SHOWN_BAD_ROWS)
        .map(|b| format!("line {}: {}", b.line, b.why))
        .collect();
    if bad.len() > SHOWN_BAD_ROWS {
        s.push(format!("and {} more", bad.len() - SHOWN_BAD_ROWS));
    }
    s.join("; ")
}

/// A row that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    /// Its 1-based line in the CSV.
    pub line: u64,
    /// Why.
    pub why: String,
}

/// The targets of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices into [`Prepared::classes`].
    Classes(Vec<u32>),
    /// Regression values (scaled as [`Preprocessing::target`] says).
    Values(Vec<f32>),
}

impl Targets {
    pub(crate) fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// One split: features (row-major) and targets.
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
    /// Everything fitted on the training rows.
    pub preprocessing: Preprocessing,
    /// What was inferred and what looks wrong, for the user (empty for an all-numeric CSV
    /// without gaps).
    pub notices: Vec<String>,
    /// Rows left out with `skip_bad_rows`, and rows dropped for gaps under `impute: drop`.
    pub skipped: Vec<BadRow>,
    /// Per-class loss weights (`training.class_weight: balanced`).
    pub class_weights: Option<Vec<f32>>,
    /// The data files the rows came from, in order (one for `data.path`).
    pub sources: Vec<SourceSpan>,
}

impl Prepared {
    /// Number of input features.
    pub fn features(&self) -> usize {
        self.preprocessing.width()
    }

    /// Number of classes (1 output for regression).
    pub fn outputs(&self) -> usize {
        self.preprocessing.classes.as_ref().map_or(1, Vec::len)
    }
}

/// How to prepare.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Leave bad rows out (recorded in [`Prepared::skipped`]) instead of failing.
    pub skip_bad_rows: bool,
}

/// The largest CSV auditai loads (it is held in memory while splits are prepared).
pub const MAX_DATA_BYTES: u64 = 8 << 30;

/// Read the spec's data (its CSV, or every file of `data.sources`) and prepare splits.
pub fn load(spec: &Spec) -> Result<Prepared, DataError> {
    parse_sources(spec, &read_all(spec)?, ParseOptions::default())
}

/// Prepare splits from the bytes of the spec's CSV (as returned by [`read`]), so that what is
/// parsed is exactly what the caller hashed. Bad rows are an error.
pub fn parse(spec: &Spec, bytes: &[u8]) -> Result<Prepared, DataError> {
    parse_with(spec, bytes, ParseOptions::default())
}

/// [`parse`] with options.
pub fn parse_with(spec: &Spec, bytes: &[u8], opts: ParseOptions) -> Result<Prepared, DataError> {
    let ctx = Ctx::new(spec, bytes);
    let header = ctx.header(bytes)?;
    let roles = Roles::of(&ctx, &header)?;
    let mut scan = ctx.scan(bytes, &roles)?;
    let (targets, classes) = ctx.targets(&mut scan)?;
    let parts = split::split(&targets, scan.groups.as_deref(), spec);
    let kinds = infer::kinds(&ctx, bytes, &roles, &scan, &parts[0])?;
    let mut columns = ctx.materialize(bytes, &roles, &kinds, &mut scan)?;
    let dropped = ctx.drop_gaps(&columns, &roles, &mut scan);
    let parts = parts.map(|p| {
        p.into_iter()
            .filter(|&i| !scan.dropped[i])
            .collect::<Vec<_>>()
    });
    let fitted = ctx.fit(&mut columns, &kinds, &parts[0]);
    let mut pre = ctx.record(&roles, fitted, classes);
    ctx.check_record_size(&pre)?;
    let targets = ctx.scale_targets(targets, &parts[0], &mut pre);
    let encoded = ctx.encode(&columns, &pre, &targets, &parts, &mut scan);
    ctx.finish(scan, encoded, pre, &kinds, &roles, dropped, opts)
}

/// The spec and the data file being parsed, for errors that name a spec position or a CSV line.
pub(crate) struct Ctx<'a> {
    spec: &'a Spec,
    path: PathBuf,
    dialect: Dialect,
}

/// What the first pass found: every kept row's record index, line and label.
struct Scan {
    /// The CSV record index (0-based, header excluded) of each kept row.
    records: Vec<usize>,
    /// Each kept row's 1-based line.
    lines: Vec<u64>,
    /// Each kept row's label text.
    labels: Vec<String>,
    /// Each kept row's group id (`data.split.group`).
    groups: Option<Vec<u32>>,
    /// Rows that cannot be used.
    bad: Vec<BadRow>,
    /// Rows without a label: left out of training (and recorded), never an error.
    unlabeled: Vec<BadRow>,
    /// Kept rows dropped after the split (bad values, gaps under `impute: drop`).
    dropped: Vec<bool>,
    /// Total data records in the CSV.
    total: usize,
}

/// A column's values for every kept row: numbers (`NaN` for a gap) or category codes into its
/// texts (`u32::MAX` for a gap).
pub(crate) enum Values {
    /// Numbers.
    Numeric(Vec<f32>),
    /// Category codes and the texts they stand for.
    Categorical {
        /// Per row.
        codes: Vec<u32>,
        /// Per code.
        texts: Vec<String>,
    },
}

impl<'a> Ctx<'a> {
    fn new(spec: &'a Spec, bytes: &[u8]) -> Ctx<'a> {
        let missing = spec.data.missing_values.clone().unwrap_or_else(|| {
            crate::spec::DEFAULT_MISSING
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        });
        Ctx {
            spec,
            path: spec.data.resolved_path(&spec.source),
            dialect: Dialect {
                delimiter: spec.data.delimiter.unwrap_or_else(|| table::sniff(bytes)),
                missing,
            },
        }
    }

    pub(crate) fn spec_err(&self, pos: Pos, message: String) -> DataError {
        DataError::Spec {
            spec: self.spec.source.clone(),
            pos,
            message,
        }
    }

    /// `preprocessing.json` must stay readable as a document (a categorical column with a
    /// million distinct texts would make it too large to read back).
    fn check_record_size(&self, pre: &Preprocessing) -> Result<(), DataError> {
        let len = serde_json::to_vec(pre).map_or(u64::MAX, |v| v.len() as u64);
        if len <= crate::fsio::MAX_DOCUMENT / 2 {
            return Ok(());
        }
        let widest = pre
            .columns
            .iter()
            .max_by_key(|c| match c {
                Column::Categorical {
                    categories, other, ..
                } => categories.len() + other.len(),
                Column::Numeric { .. } => 0,
            })
            .map_or("", Column::name);
        Err(self.csv_err(
            None,
            format!(
                "the fitted preprocessing would take {} MiB: column `{widest}` has too many distinct values to encode; declare it `id` or `exclude` in data.columns",
                len >> 20
            ),
        ))
    }

    pub(crate) fn csv_err(&self, line: Option<u64>, message: String) -> DataError {
        DataError::Csv {
            path: self.path.clone(),
            line,
            message,
        }
    }

    /// The trimmed header; duplicate names are an error.
    fn header(&self, bytes: &[u8]) -> Result<Vec<String>, DataError> {
        let (mut r, _) = table::reader(bytes, &self.dialect);
        let header: Vec<String> = r
            .headers()
            .map_err(|e| self.csv_err(Some(1), table::csv_message(&e)))?
            .iter()
            .map(str::to_string)
            .collect();
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(self.csv_err(Some(1), format!("column `{h}` appears twice")));
            }
        }
        Ok(header)
    }
}

/// A column's declared or inferred role, for error positions.
pub(crate) fn declared(spec: &Spec, name: &str) -> Option<(Pos, ColumnRole)> {
    spec.data
        .columns
        .iter()
        .find(|(n, _)| n.value == name)
        .map(|(n, r)| (n.pos, *r))
}

/// `Located` names from the spec's include or exclude lists.
pub(crate) fn names(list: &[Located<String>]) -> Vec<&str> {
    list.iter().map(|l| l.value.as_str()).collect()
}

/// Whether a numeric column's gaps drop their rows.
pub(crate) fn drops_gaps(spec: &Spec) -> bool {
    spec.data.impute.numeric == NumericImpute::Drop
}
