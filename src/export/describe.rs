//! Plain-language facts about a run's data handling that the model card and the ML-BOM both
//! state: how each input column becomes features, which columns and rows were left out, which
//! split the training-time metrics rest on (and whether it is really held out), and how a
//! metric's confidence interval reads.

use std::collections::BTreeMap;

use super::Run;
use crate::data::Preprocessing;
use crate::data::transform::{Column, MISSING, OTHER};
use crate::eval::metrics::Interval;
use crate::spec::{Delimiter, NumericImpute, Task};

/// One input column, described.
pub struct ColumnLine {
    /// The column.
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// What a missing cell becomes.
    pub gaps: String,
    /// How the value becomes features.
    pub encoding: String,
}

/// Every input column of `pre`, in feature order.
pub fn columns(pre: &Preprocessing) -> Vec<ColumnLine> {
    pre.columns.iter().map(|c| column(pre, c)).collect()
}

fn column(pre: &Preprocessing, c: &Column) -> ColumnLine {
    match c {
        Column::Numeric {
            name,
            impute,
            fill,
            indicator,
            offset,
            scale,
        } => {
            let mut gaps = match impute {
                NumericImpute::Drop => "the row is left out (and cannot be scored)".to_string(),
                NumericImpute::Median => format!("the training median {fill}"),
                NumericImpute::Mean => format!("the training mean {fill}"),
                NumericImpute::Zero => "0".to_string(),
            };
            if *indicator {
                gaps.push_str(&format!(", flagged by the feature `{name}__missing`"));
            }
            let encoding = if *offset == 0.0 && *scale == 1.0 {
                "the value as it is".to_string()
            } else {
                format!("(x − {offset}) / {scale} ({})", word(&pre.normalize))
            };
            ColumnLine {
                name: name.clone(),
                kind: "numeric",
                gaps,
                encoding,
            }
        }
        Column::Categorical {
            name,
            categories,
            other,
            missing_as,
        } => {
            let gaps = match missing_as {
                Some(m) => format!("the training mode `{m}`"),
                None if categories.iter().any(|c| c == MISSING) => {
                    format!("its own category `{MISSING}`")
                }
                None => "all zero (the training rows had no gap here)".to_string(),
            };
            let mut encoding = format!(
                "one-hot over {} categories ({})",
                categories.len(),
                categories.join(", ")
            );
            if !other.is_empty() {
                encoding.push_str(&format!("; {} rarer ones pooled as `{OTHER}`", other.len()));
            }
            encoding.push_str("; a category unseen in training encodes as all zero");
            ColumnLine {
                name: name.clone(),
                kind: "categorical",
                gaps,
                encoding,
            }
        }
    }
}

/// The columns of the CSV that are not inputs, with why.
pub fn ignored(pre: &Preprocessing) -> Vec<String> {
    pre.ignored
        .iter()
        .map(|i| format!("`{}` ({})", i.name, i.why))
        .collect()
}

/// How the label is handled.
pub fn label(pre: &Preprocessing) -> String {
    match (pre.task, &pre.target) {
        (Task::Classification, _) => format!(
            "`{}`, {} classes: {}",
            pre.label,
            pre.classes.as_ref().map_or(0, Vec::len),
            pre.classes.as_deref().unwrap_or_default().join(", ")
        ),
        (Task::Regression, Some(t)) => format!(
            "`{}`, trained as (y − {}) / {}; predictions and metrics in the label's own units",
            pre.label, t.offset, t.scale
        ),
        (Task::Regression, None) => format!("`{}`, trained unscaled", pre.label),
    }
}

/// The dialect the CSV was read with.
pub fn dialect(pre: &Preprocessing) -> String {
    let missing: Vec<String> = pre
        .dialect
        .missing
        .iter()
        .map(|m| {
            if m.is_empty() {
                "empty cells".to_string()
            } else {
                format!("`{m}`")
            }
        })
        .collect();
    let delimiter = match pre.dialect.delimiter {
        Delimiter::Comma => "`,`",
        Delimiter::Semicolon => "`;`",
        Delimiter::Tab => "tabs",
        Delimiter::Pipe => "`|`",
        Delimiter::Whitespace => "runs of spaces or tabs",
    };
    format!(
        "The CSV is split on {delimiter}; {} count as missing.",
        missing.join(", ")
    )
}

/// The split the training-time metrics rest on, and whether it is held out: a validation split
/// that chose the stopping epoch is never called held out.
pub fn metrics_split(run: &Run) -> String {
    let split = run.summary["held_out"].as_str().unwrap_or("?");
    let early = !run.spec()["training"]["early_stopping"].is_null();
    match split {
        "test" => "the test split, held out from training and from early stopping".into(),
        "validation" if early => {
            "the validation split, which chose the stopping epoch: not held out".into()
        }
        "validation" => "the validation split (no test split; it was scored after every epoch but chose nothing)".into(),
        other => format!("the {other} split"),
    }
}

/// The training-time metrics' intervals from `summary.json`.
pub fn summary_intervals(run: &Run) -> BTreeMap<String, Interval> {
    serde_json::from_value(run.summary["metrics"]["intervals"].clone()).unwrap_or_default()
}

/// `0.9500 (95 % CI 0.910–0.975, Wilson, 120 rows)`, or the bare value without an interval.
pub fn with_interval(v: f64, iv: Option<&Interval>) -> String {
    match iv {
        Some(i) => format!(
            "{v:.4} (95 % CI {:.4}–{:.4}, {}, {} rows)",
            i.lower,
            i.upper,
            match i.resamples {
                Some(b) => format!("bootstrap of {b} resamples"),
                None => i.method.clone(),
            },
            i.rows
        ),
        None => format!("{v:.4}"),
    }
}

/// A unit enum's serde name.
fn word<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
