//! Fitted transforms: what turns a raw CSV row into the model's input, fitted on the training
//! rows only, recorded in `preprocessing.json` (schema `auditai.preprocessing/v2`, documented in
//! `docs/preprocessing.md`), and applied the same way, value for value, by training, `predict`,
//! `eval` and the audit's recomputation.
//!
//! Numeric columns: gaps imputed (median, mean, zero, or the row dropped), a missing-indicator
//! feature when the training rows had gaps, then scaled. Categorical columns: one-hot over the
//! training rows' categories (sorted; beyond `max_categories` the rarest pooled as `other`), a
//! gap its own category (or the mode); a category never seen in training encodes as all zeros
//! and is counted. Regression targets: standardised on the training rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::table::Dialect;
use crate::spec::{Delimiter, Normalize, NumericImpute, Task};

/// The current `preprocessing.json` schema.
pub const SCHEMA: &str = "auditai.preprocessing/v2";
/// The schema of runs from before raw data (numeric columns, offset and scale only).
pub const SCHEMA_V1: &str = "auditai.preprocessing/v1";

/// Everything fitted on the training rows: the model's input columns and how each becomes
/// features, and the target's scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preprocessing {
    /// [`SCHEMA`].
    pub schema: String,
    /// How the CSV is read.
    pub dialect: Dialect,
    /// The label column.
    pub label: String,
    /// Classification or regression.
    pub task: Task,
    /// Class names in index order (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Numeric scaling kind.
    pub normalize: Normalize,
    /// The model's input columns, in the order their features come.
    pub columns: Vec<Column>,
    /// Columns of the CSV that are not features, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<Ignored>,
    /// The feature names, in input order (derived from `columns`; recorded for readers).
    pub features: Vec<String>,
    /// Regression: the target's scaling (training targets are `(y - offset) / scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Affine>,
}

/// `(x - offset) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// Subtracted first.
    pub offset: f32,
    /// Then divided by (never 0).
    pub scale: f32,
}

/// A CSV column that is not a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ignored {
    /// Its name.
    pub name: String,
    /// `excluded`, `id`, `group` or `empty`.
    pub why: String,
}

/// One input column and how it becomes features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Column {
    /// A number: imputed, then scaled; with an indicator feature when gaps were seen.
    Numeric {
        /// The column.
        name: String,
        /// How a gap is filled.
        impute: NumericImpute,
        /// The fitted fill value (unused with `drop`).
        fill: f32,
        /// Whether a `<name>__missing` feature (1 for a gap) follows the value.
        indicator: bool,
        /// Subtracted from the value (after imputation).
        offset: f32,
        /// Then divided by (never 0).
        scale: f32,
    },
    /// A category: one feature per category (`<name>=<category>`).
    Categorical {
        /// The column.
        name: String,
        /// The categories, sorted; a gap is the category [`MISSING`] when it is listed.
        categories: Vec<String>,
        /// The training rows' rarer categories beyond `max_categories`, sorted, pooled into one
        /// `<name>=<other>` feature (none: no such feature).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other: Vec<String>,
        /// A gap becomes this category (the mode) rather than [`MISSING`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missing_as: Option<String>,
    },
}

/// The category a gap becomes (when gaps are their own category).
pub const MISSING: &str = "<missing>";
/// The pooled category beyond `max_categories`.
pub const OTHER: &str = "<other>";

impl Column {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            Column::Numeric { name, .. } | Column::Categorical { name, .. } => name,
        }
    }

    /// How many features it produces.
    pub fn width(&self) -> usize {
        match self {
            Column::Numeric { indicator, .. } => 1 + usize::from(*indicator),
            Column::Categorical {
                categories, other, ..
            } => categories.len() + usize::from(!other.is_empty()),
        }
    }

    /// Its feature names.
    pub fn feature_names(&self) -> Vec<String> {
        match self {
            Column::Numeric {
                name, indicator, ..
            } => {
                let mut v = vec![name.clone()];
                if *indicator {
                    v.push(format!("{name}__missing"));
                }
                v
            }
            Column::Categorical {
                name,
                categories,
                other,
                ..
            } => {
                let mut v: Vec<String> = categories.iter().map(|c| format!("{name}={c}")).collect();
                if !other.is_empty() {
                    v.push(format!("{name}={OTHER}"));
                }
                v
            }
        }
    }
}

/// Why one cell (and so its row) cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {message}")]
pub struct CellError {
    /// The column.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

/// A number in a cell as training, prediction and evaluation read it: the trimmed text parsed as
/// `f32` (rounded once, directly from the decimal); `None` for text that is not a finite number.
pub fn parse_number(text: &str) -> Option<f32> {
    let v: f32 = text.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// A numeric cell (`None`: a gap) as its features, appended to `out`.
pub fn encode_numeric(col: &Column, v: Option<f32>, out: &mut Vec<f32>) -> Result<(), CellError> {
    let Column::Numeric {
        name,
        impute,
        fill,
        indicator,
        offset,
        scale,
    } = col
    else {
        return Ok(());
    };
    let value = match (v, impute) {
        (Some(v), _) => v,
        (None, NumericImpute::Drop) => {
            return Err(CellError {
                column: name.clone(),
                message: "missing, and the model was trained without imputing it".into(),
            });
        }
        (None, _) => *fill,
    };
    let x = (value - offset) / scale;
    if !x.is_finite() {
        return Err(CellError {
            column: name.clone(),
            message: format!("{value} overflows the model's scaling"),
        });
    }
    out.push(x);
    if *indicator {
        out.push(if v.is_none() { 1.0 } else { 0.0 });
    }
    Ok(())
}

/// Where a categorical cell lands: the index of its feature, or `None` for a category training
/// never saw (all zeros, counted by the caller).
pub fn category_slot(col: &Column, text: Option<&str>) -> Option<usize> {
    let Column::Categorical {
        categories,
        other,
        missing_as,
        ..
    } = col
    else {
        return None;
    };
    let text = match text {
        Some(t) => t,
        None => missing_as.as_deref().unwrap_or(MISSING),
    };
    match categories.binary_search_by(|c| c.as_str().cmp(text)) {
        Ok(i) => Some(i),
        Err(_) if other.binary_search_by(|c| c.as_str().cmp(text)).is_ok() => {
            Some(categories.len())
        }
        Err(_) => None,
    }
}

/// A categorical cell's one-hot features appended to `out`; returns whether it was unseen.
pub fn encode_categorical(col: &Column, text: Option<&str>, out: &mut Vec<f32>) -> bool {
    let start = out.len();
    out.resize(start + col.width(), 0.0);
    match category_slot(col, text) {
        Some(i) => {
            out[start + i] = 1.0;
            false
        }
        None => true,
    }
}

/// The result of encoding one raw row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Categorical cells whose category training never saw (encoded as all zeros).
    pub unseen: u32,
}

impl Preprocessing {
    /// Parse and validate a recorded `preprocessing.json` (v2, or v1 converted).
    pub fn from_json(bytes: &[u8]) -> Result<Preprocessing, RecordError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(RecordError::Json)?;
        let p = match v.get("schema").and_then(serde_json::Value::as_str) {
            Some(SCHEMA_V1) => v1(v)?,
            Some(SCHEMA) => serde_json::from_value(v).map_err(RecordError::Json)?,
            other => return Err(RecordError::Schema(other.unwrap_or("").to_string())),
        };
        p.check()?;
        Ok(p)
    }

    /// Every column's scaling usable, names that match the columns, classes for
    /// classification.
    fn check(&self) -> Result<(), RecordError> {
        if self.columns.is_empty() {
            return Err(RecordError::NoColumns);
        }
        for c in &self.columns {
            match c {
                Column::Numeric {
                    offset,
                    scale,
                    fill,
                    ..
                } => {
                    if !offset.is_finite()
                        || !scale.is_finite()
                        || *scale == 0.0
                        || !fill.is_finite()
                    {
                        return Err(RecordError::Scaling(c.name().to_string()));
                    }
                }
                Column::Categorical {
                    categories, other, ..
                } => {
                    let sorted = |v: &[String]| v.windows(2).all(|w| w[0] < w[1]);
                    if !sorted(categories) || !sorted(other) {
                        return Err(RecordError::Categories(c.name().to_string()));
                    }
                }
            }
        }
        let derived: Vec<String> = self
            .columns
            .iter()
            .flat_map(Column::feature_names)
            .collect();
        if derived != self.features {
            return Err(RecordError::Features);
        }
        if let Some(t) = &self.target
            && (!t.offset.is_finite() || !t.scale.is_finite() || t.scale == 0.0)
        {
            return Err(RecordError::Scaling(self.label.clone()));
        }
        match (&self.task, &self.classes) {
            (Task::Classification, Some(c)) if !c.is_empty() => Ok(()),
            (Task::Regression, _) => Ok(()),
            _ => Err(RecordError::NoClasses),
        }
    }

    /// The model's input width.
    pub fn width(&self) -> usize {
        self.features.len()
    }

    /// Encode one raw row, given the trimmed cells of the model's input columns in
    /// [`Preprocessing::columns`] order, onto `out`.
    pub fn encode(&self, cells: &[&str], out: &mut Vec<f32>) -> Result<Encoded, CellError> {
        let start = out.len();
        let r = self.encode_onto(cells, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// [`Preprocessing::encode`], leaving partial features behind on an error.
    fn encode_onto(&self, cells: &[&str], out: &mut Vec<f32>) -> Result<Encoded, CellError> {
        if cells.len() != self.columns.len() {
            let at = cells.len().min(self.columns.len().saturating_sub(1));
            return Err(CellError {
                column: self.columns.get(at).map_or("", Column::name).to_string(),
                message: format!(
                    "the row has {} cells for the model's {} input columns",
                    cells.len(),
                    self.columns.len()
                ),
            });
        }
        let mut e = Encoded::default();
        for (col, &cell) in self.columns.iter().zip(cells) {
            let missing = self.dialect.is_missing(cell);
            match col {
                Column::Numeric { name, .. } => {
                    let v = if missing {
                        None
                    } else {
                        Some(parse_number(cell).ok_or_else(|| CellError {
                            column: name.clone(),
                            message: format!("`{}` is not a number", shorten(cell)),
                        })?)
                    };
                    encode_numeric(col, v, out)?;
                }
                Column::Categorical { .. } => {
                    let text = (!missing).then_some(cell);
                    e.unseen += u32::from(encode_categorical(col, text, out));
                }
            }
        }
        Ok(e)
    }

    /// A regression prediction in the target's original units.
    pub fn unscale_target(&self, y: f32) -> f32 {
        match &self.target {
            Some(t) => y * t.scale + t.offset,
            None => y,
        }
    }

    /// The digest of a raw row as the leakage check and the prediction log see it: each input
    /// column's value as the model reads it (a number's `f32` bits, a category's text, a gap),
    /// then, when given, the label (a regression target by value). Column order, number
    /// spelling and whitespace do not change it.
    pub fn row_digest(&self, cells: &[&str], label: Option<&str>) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for (col, &cell) in self.columns.iter().zip(cells) {
            if self.dialect.is_missing(cell) {
                h.update(&[0]);
                continue;
            }
            match (col, parse_number(cell)) {
                (Column::Numeric { .. }, Some(v)) => {
                    h.update(&[1]);
                    h.update(&v.to_le_bytes());
                }
                _ => {
                    h.update(&[2]);
                    h.update(&(cell.len() as u64).to_le_bytes());
                    h.update(cell.as_bytes());
                }
            }
        }
        if let Some(l) = label {
            match (self.task, l.trim().parse::<f64>()) {
                (Task::Regression, Ok(v)) if v.is_finite() => {
                    h.update(&[0xfe]);
                    h.update(&(v + 0.0).to_le_bytes());
                }
                _ => {
                    h.update(&[0xff]);
                    h.update(l.trim().as_bytes());
                }
            }
        }
        *h.finalize().as_bytes()
    }

    /// A lookup from column name to position among the model's input columns.
    pub fn column_index(&self) -> HashMap<&str, usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name(), i))
            .collect()
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A v1 record (numeric features with offset and scale) as a v2 one: every column numeric, a
/// gap unscorable, as v1 treated it.
fn v1(v: serde_json::Value) -> Result<Preprocessing, RecordError> {
    #[derive(Deserialize)]
    struct V1 {
        features: Vec<String>,
        label: String,
        task: Task,
        #[serde(default)]
        classes: Option<Vec<String>>,
        #[serde(default = "standard")]
        normalize: Normalize,
        offset: Vec<f32>,
        scale: Vec<f32>,
    }
    fn standard() -> Normalize {
        Normalize::Standard
    }
    let r: V1 = serde_json::from_value(v).map_err(RecordError::Json)?;
    if r.offset.len() != r.features.len() || r.scale.len() != r.features.len() {
        return Err(RecordError::Shape {
            features: r.features.len(),
            offsets: r.offset.len(),
            scales: r.scale.len(),
        });
    }
    let columns = r
        .features
        .iter()
        .zip(r.offset.iter().zip(&r.scale))
        .map(|(name, (&offset, &scale))| Column::Numeric {
            name: name.clone(),
            impute: NumericImpute::Drop,
            fill: 0.0,
            indicator: false,
            offset,
            scale,
        })
        .collect();
    Ok(Preprocessing {
        schema: SCHEMA.to_string(),
        dialect: Dialect {
            delimiter: Delimiter::Comma,
            missing: vec![String::new()],
        },
        label: r.label,
        task: r.task,
        classes: r.classes,
        normalize: r.normalize,
        columns,
        ignored: Vec::new(),
        features: r.features,
        target: None,
    })
}

/// Why a recorded `preprocessing.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the record's shape.
    #[error("not a preprocessing record: {0}")]
    Json(serde_json::Error),
    /// Another schema.
    #[error("unknown preprocessing schema `{0}` (expected {SCHEMA} or {SCHEMA_V1})")]
    Schema(String),
    /// v1 lists of different lengths.
    #[error("{features} features but {offsets} offsets and {scales} scales")]
    Shape {
        /// Features.
        features: usize,
        /// Offsets.
        offsets: usize,
        /// Scales.
        scales: usize,
    },
    /// No input column.
    #[error("the record names no input column")]
    NoColumns,
    /// A column's scaling is unusable.
    #[error("column `{0}` has a non-finite offset, fill or scale, or a zero scale")]
    Scaling(String),
    /// A column's categories are not sorted and distinct.
    #[error("column `{0}`: categories must be sorted and distinct")]
    Categories(String),
    /// The feature names are not the columns'.
    #[error("the feature names are not the ones the columns produce")]
    Features,
    /// Classification without classes.
    #[error("a classification run without class names")]
    NoClasses,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Preprocessing {
        let columns = vec![
            Column::Numeric {
                name: "mass".into(),
                impute: NumericImpute::Median,
                fill: 4000.0,
                indicator: true,
                offset: 4000.0,
                scale: 800.0,
            },
            Column::Categorical {
                name: "island".into(),
                categories: vec![MISSING.into(), "Biscoe".into(), "Dream".into()],
                other: Vec::new(),
                missing_as: None,
            },
        ];
        Preprocessing {
            schema: SCHEMA.into(),
            dialect: Dialect {
                delimiter: Delimiter::Comma,
                missing: vec!["".into(), "NA".into()],
            },
            label: "species".into(),
            task: Task::Classification,
            classes: Some(vec!["a".into(), "b".into()]),
            normalize: Normalize::Standard,
            features: columns.iter().flat_map(Column::feature_names).collect(),
            columns,
            ignored: vec![],
            target: None,
        }
    }

    #[test]
    fn rows_encode_with_gaps_unseen_categories_and_overflow() {
        let p = record();
        let mut out = Vec::new();
        assert_eq!(
            p.encode(&["4800", "Dream"], &mut out),
            Ok(Encoded { unseen: 0 })
        );
        assert_eq!(out, [1.0, 0.0, 0.0, 0.0, 1.0]);
        out.clear();
        assert_eq!(p.encode(&["NA", "NA"], &mut out), Ok(Encoded { unseen: 0 }));
        assert_eq!(out, [0.0, 1.0, 1.0, 0.0, 0.0]);
        out.clear();
        assert_eq!(
            p.encode(&["4000", "Torgersen"], &mut out),
            Ok(Encoded { unseen: 1 })
        );
        assert_eq!(out, [0.0, 0.0, 0.0, 0.0, 0.0]);
        out.clear();
        let e = p.encode(&["heavy", "Dream"], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "column `mass`: `heavy` is not a number");
        assert!(out.is_empty(), "a refused row leaves nothing behind");
        let tiny = Column::Numeric {
            name: "t".into(),
            impute: NumericImpute::Median,
            fill: 0.0,
            indicator: false,
            offset: 0.0,
            scale: 1e-3,
        };
        let e = encode_numeric(&tiny, Some(3e38), &mut out).unwrap_err();
        assert!(e.message.contains("overflows"), "{e}");
    }

    #[test]
    fn records_round_trip_and_v1_converts() {
        let p = record();
        let json = serde_json::to_vec(&p).unwrap();
        assert_eq!(Preprocessing::from_json(&json).unwrap(), p);
        let v1 = br#"{"schema":"auditai.preprocessing/v1","features":["a","b"],"label":"y","task":"regression","classes":null,"normalize":"standard","offset":[1.0,2.0],"scale":[2.0,4.0]}"#;
        let q = Preprocessing::from_json(v1).unwrap();
        let mut out = Vec::new();
        q.encode(&["3", "6"], &mut out).unwrap();
        assert_eq!(out, [1.0, 1.0]);
        assert!(q.encode(&["", "6"], &mut Vec::new()).is_err());
        let text = String::from_utf8(json).unwrap();
        let unsorted = text.replace("\"Biscoe\",\"Dream\"", "\"Dream\",\"Biscoe\"");
        assert_ne!(unsorted, text);
        assert!(matches!(
            Preprocessing::from_json(unsorted.as_bytes()),
            Err(RecordError::Categories(_))
        ));
    }

    #[test]
    fn digests_ignore_spelling_and_see_categories() {
        let p = record();
        assert_eq!(
            p.row_digest(&["4800", "Dream"], None),
            p.row_digest(&["4800.0", "Dream"], None)
        );
        assert_ne!(
            p.row_digest(&["4800", "Dream"], None),
            p.row_digest(&["4800", "Biscoe"], None)
        );
        assert_ne!(
            p.row_digest(&["4800", "Dream"], Some("a")),
            p.row_digest(&["4800", "Dream"], Some("b"))
        );
    }
}
