//! Pre-registered acceptance criteria: the criteria file (`docs/eval.md`), its commitment
//! (`auditai eval --commit-criteria`), and judging metrics against it.
//!
//! Reads the criteria and commitment files; writes only the commitment. No model, no network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::metrics::{Metrics, Subgroup};
use crate::spec::SpecError;

/// Subgroups with fewer rows than this are reported but not judged (default).
pub const DEFAULT_MIN_SUBGROUP_ROWS: u64 = 30;
/// The commitment format's tag.
pub const COMMITMENT_SCHEMA: &str = "auditai.criteria-commitment/v1";
/// Metrics a criterion may name.
pub const METRICS: [&str; 10] = [
    "accuracy",
    "macro_f1",
    "precision",
    "recall",
    "roc_auc",
    "brier",
    "calibration_error",
    "mse",
    "mae",
    "r2",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCriteria {
    version: Spanned<u32>,
    #[serde(default)]
    min_subgroup_rows: Option<Spanned<u64>>,
    #[serde(default)]
    allow_leakage: Option<bool>,
    #[serde(default)]
    require_preregistration: Option<bool>,
    criteria: Spanned<Vec<Spanned<RawCriterion>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCriterion {
    metric: Spanned<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    gap_by: Option<String>,
    #[serde(default)]
    min: Option<Spanned<f64>>,
    #[serde(default)]
    max: Option<Spanned<f64>>,
}

/// A validated criteria file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Criteria {
    /// Subgroups with fewer rows are reported as too small and not judged.
    pub min_subgroup_rows: u64,
    /// Whether evaluation rows that also trained the model are acceptable.
    pub allow_leakage: bool,
    /// Whether criteria that were not committed before the evaluation fail it.
    pub require_preregistration: bool,
    /// The criteria.
    pub criteria: Vec<Criterion>,
}

/// One criterion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Criterion {
    /// The metric.
    pub metric: String,
    /// The class, for `precision` and `recall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Judge the largest difference of the metric between the subgroups of this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_by: Option<String>,
    /// The value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A criterion's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Judged {
    /// The criterion, in words (`recall[malignant] >= 0.98`).
    pub criterion: String,
    /// The number behind the verdict.
    pub value: Option<f64>,
    /// Whether it holds.
    pub passed: bool,
    /// Why, when it does not hold or cannot be judged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Criteria {
    /// Read and validate a criteria file.
    pub fn load(path: &Path) -> Result<(Criteria, Vec<u8>), SpecError> {
        let bytes =
            crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
                SpecError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Ok((
            Criteria::parse(&String::from_utf8_lossy(&bytes), path)?,
            bytes,
        ))
    }

    /// Validate criteria text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Criteria, SpecError> {
        let raw: RawCriteria =
            serde_saphyr::from_str(text).map_err(|e| crate::spec::yaml_error(&e, path))?;
        let fail = |at: &serde_saphyr::Location, message: String| SpecError::Invalid {
            path: path.to_path_buf(),
            pos: crate::spec::Pos {
                line: at.line(),
                column: at.column(),
            },
            message,
        };
        if raw.version.value != 1 {
            return Err(fail(
                &raw.version.referenced,
                format!(
                    "unsupported criteria version {} (this auditai reads 1)",
                    raw.version.value
                ),
            ));
        }
        if raw.criteria.value.is_empty() {
            return Err(fail(
                &raw.criteria.referenced,
                "criteria must list at least one criterion".into(),
            ));
        }
        let mut criteria = Vec::new();
        for c in raw.criteria.value {
            let at = c.referenced;
            let c = c.value;
            if !METRICS.contains(&c.metric.value.as_str()) {
                return Err(fail(
                    &c.metric.referenced,
                    format!(
                        "unknown metric `{}` (one of {})",
                        c.metric.value,
                        METRICS.join(", ")
                    ),
                ));
            }
            let per_class = matches!(c.metric.value.as_str(), "precision" | "recall");
            if per_class != c.class.is_some() {
                return Err(fail(
                    &at,
                    if per_class {
                        format!("`{}` needs a `class`", c.metric.value)
                    } else {
                        format!(
                            "`class` applies to precision and recall, not `{}`",
                            c.metric.value
                        )
                    },
                ));
            }
            for b in [&c.min, &c.max].into_iter().flatten() {
                if !b.value.is_finite() {
                    return Err(fail(&b.referenced, "bounds must be finite numbers".into()));
                }
            }
            match (&c.min, &c.max, &c.gap_by) {
                (None, None, _) => {
                    return Err(fail(&at, "a criterion needs `min` or `max`".into()));
                }
                (Some(m), _, Some(_)) => {
                    return Err(fail(
                        &m.referenced,
                        "a `gap_by` criterion takes `max` (the largest gap allowed)".into(),
                    ));
                }
                _ => {}
            }
            criteria.push(Criterion {
                metric: c.metric.value,
                class: c.class,
                gap_by: c.gap_by,
                min: c.min.map(|m| m.value),
                max: c.max.map(|m| m.value),
            });
        }
        Ok(Criteria {
            min_subgroup_rows: raw
                .min_subgroup_rows
                .map_or(DEFAULT_MIN_SUBGROUP_ROWS, |m| m.value),
            allow_leakage: raw.allow_leakage.unwrap_or(false),
            require_preregistration: raw.require_preregistration.unwrap_or(false),
            criteria,
        })
    }

    /// The subgroup columns the criteria need (`gap_by`).
    pub fn gap_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = self
            .criteria
            .iter()
            .filter_map(|c| c.gap_by.clone())
            .collect();
        cols.dedup();
        cols
    }
}

impl Criterion {
    /// The criterion in words.
    pub fn describe(&self) -> String {
        let name = match &self.class {
            Some(c) => format!("{}[{c}]", self.metric),
            None => self.metric.clone(),
        };
        let name = match &self.gap_by {
            Some(by) => format!("largest {name} gap between subgroups of {by}"),
            None => name,
        };
        let mut bounds = Vec::new();
        if let Some(m) = self.min {
            bounds.push(format!(">= {m}"));
        }
        if let Some(m) = self.max {
            bounds.push(format!("<= {m}"));
        }
        format!("{name} {}", bounds.join(" and "))
    }

    /// Judge the criterion on the overall metrics and the subgroups.
    pub fn judge(&self, overall: &Metrics, groups: &[Subgroup]) -> Judged {
        let class = self.class.as_deref();
        let value = match &self.gap_by {
            None => overall.value(&self.metric, class).ok_or_else(|| {
                format!(
                    "{} is not defined for these rows and this model",
                    self.metric
                )
            }),
            Some(by) => {
                let judged: Vec<f64> = groups
                    .iter()
                    .filter(|g| g.column == *by && !g.too_small)
                    .filter_map(|g| g.metrics.value(&self.metric, class))
                    .collect();
                if judged.len() < 2 {
                    Err(format!(
                        "fewer than two subgroups of `{by}` are large enough to judge"
                    ))
                } else {
                    let hi = judged.iter().copied().fold(f64::MIN, f64::max);
                    let lo = judged.iter().copied().fold(f64::MAX, f64::min);
                    Ok(hi - lo)
                }
            }
        };
        match value {
            Err(detail) => Judged {
                criterion: self.describe(),
                value: None,
                passed: false,
                detail,
            },
            Ok(v) => {
                let passed = self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m);
                Judged {
                    criterion: self.describe(),
                    value: Some(v),
                    passed,
                    detail: String::new(),
                }
            }
        }
    }
}

/// `<criteria>.commitment.json`: the criteria's digests and when they were committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Commitment {
    /// Always [`COMMITMENT_SCHEMA`].
    pub schema: String,
    /// The criteria file's name.
    pub criteria: String,
    /// sha256 of the criteria file.
    pub sha256: String,
    /// blake3 of the criteria file.
    pub blake3: String,
    /// When it was committed (the committer's clock; an anchor proves it).
    pub committed_on: String,
}

/// Where the commitment of `criteria` lives.
pub fn commitment_path(criteria: &Path) -> PathBuf {
    let mut s = criteria.as_os_str().to_os_string();
    s.push(".commitment.json");
    PathBuf::from(s)
}

/// Write the commitment of the criteria file at `path` (validated first); returns its path.
pub fn commit(path: &Path) -> Result<PathBuf, SpecError> {
    let (_, bytes) = Criteria::load(path)?;
    let d = crate::hash::bytes_digest(&bytes);
    let c = Commitment {
        schema: COMMITMENT_SCHEMA.to_string(),
        criteria: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: d.sha256.map(|s| s.hex()).unwrap_or_default(),
        blake3: d.blake3.hex(),
        committed_on: crate::manifest::now_rfc3339(),
    };
    let out = commitment_path(path);
    if std::fs::symlink_metadata(&out).is_ok() {
        return Err(SpecError::Yaml {
            path: out,
            message: "a commitment already exists and is never replaced: it is the record of when the criteria were fixed (to change the criteria, write a new criteria file and commit it)".into(),
        });
    }
    let mut json = serde_json::to_vec_pretty(&c).unwrap_or_default();
    json.push(b'\n');
    crate::fsio::write_atomic(&out, &json).map_err(|source| SpecError::Read {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}
