//! Judging a model: metrics on external data overall and per subgroup, a leakage check against
//! the run's training rows, pre-registered acceptance criteria, and the evaluation attestation
//! (an in-toto Statement with auditai's evaluation predicate, `docs/eval.md`).
//!
//! The types and the criteria are always compiled (`verify` reads attestations); running an
//! evaluation needs the model ([`run`], behind `train`). Writes only the criteria commitment;
//! the attestation is written by the command line.

pub mod criteria;
pub mod metrics;
pub mod prereg;
#[cfg(feature = "train")]
mod run;

use serde::{Deserialize, Serialize};

use crate::manifest::ResourceDescriptor;

pub use criteria::{Commitment, Criteria, Criterion, Judged};
pub use metrics::{Metrics, Subgroup};
pub use prereg::PreRegStatus;
#[cfg(feature = "train")]
pub use run::{EvalError, EvalOptions, evaluate};

pub use crate::manifest::EVAL_PREDICATE;

/// An evaluation attestation: an in-toto Statement v1 about the model's weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalStatement {
    /// Always the in-toto Statement v1 type.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The model's weights (and summary) as its manifest records them.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`EVAL_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The evaluation.
    pub predicate: Evaluation,
}

/// The evaluation predicate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The model evaluated.
    pub model: ModelRef,
    /// Who evaluated: the tool and its version.
    pub evaluator: Evaluator,
    /// When the evaluation started.
    pub started_on: String,
    /// When it finished.
    pub finished_on: String,
    /// The evaluation data.
    pub data: DataRef,
    /// `classification` or `regression`.
    pub task: String,
    /// Class names in index order (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Metrics over every evaluated row.
    pub overall: Metrics,
    /// Metrics per value of each subgroup column.
    #[serde(default)]
    pub subgroups: Vec<Subgroup>,
    /// Subgroups with fewer rows are reported as too small.
    pub min_subgroup_rows: u64,
    /// Whether evaluation rows also trained or validated the model.
    pub leakage: Leakage,
    /// The criteria and their verdicts (absent without `--criteria`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<CriteriaRef>,
    /// Whether the criteria provably predate the evaluation.
    pub pre_registration: PreRegistration,
    /// The verdict of the criteria.
    pub verdict: EvalVerdict,
}

/// The model an attestation is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    /// Its manifest: relative to the attestation's directory, or absolute.
    pub manifest: String,
    /// blake3 of the manifest's bytes.
    pub manifest_blake3: String,
    /// Whether it was verified before it was loaded.
    pub verified: bool,
}

/// The evaluator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluator {
    /// The builder id of the auditai command line.
    pub id: String,
    /// auditai's version.
    pub version: String,
}

/// The evaluation data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataRef {
    /// The CSV: relative to the attestation's directory, or absolute.
    pub name: String,
    /// sha256 of the file.
    pub sha256: String,
    /// blake3 of the file.
    pub blake3: String,
    /// Rows evaluated.
    pub rows: u64,
    /// Rows not evaluated: rows without a label, and bad rows with `--skip-bad-rows`.
    pub skipped: u64,
    /// The label column.
    pub label: String,
}

/// The leakage check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Leakage {
    /// `checked` or `not-checked`.
    pub status: String,
    /// Evaluation rows equal (features and label) to a training or validation row.
    pub overlapping_rows: u64,
    /// Training and validation rows compared with.
    pub reference_rows: u64,
    /// Why it was not checked, or which rows overlap (the first few, 1-based).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The criteria file and its verdicts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CriteriaRef {
    /// The file: relative to the attestation's directory, or absolute.
    pub name: String,
    /// sha256 of the file.
    pub sha256: String,
    /// blake3 of the file.
    pub blake3: String,
    /// The criteria as read.
    pub criteria: Criteria,
    /// Each criterion's verdict (the leakage and pre-registration requirements included).
    pub results: Vec<Judged>,
}

/// Whether the criteria were committed before the evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreRegistration {
    /// Whether the criteria provably predate the evaluation.
    pub status: PreRegStatus,
    /// Why.
    pub detail: String,
    /// The commitment, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentRef>,
}

/// A criteria commitment as the evaluation found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitmentRef {
    /// The commitment file: relative to the attestation's directory, or absolute.
    pub name: String,
    /// blake3 of the commitment file.
    pub blake3: String,
    /// When it says it was committed.
    pub committed_on: String,
    /// Its anchor: chain, block and the block's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorRef>,
}

/// An anchor of a criteria commitment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnchorRef {
    /// Chain name.
    pub chain: String,
    /// Block number.
    pub block_number: u64,
    /// The block's time (unix seconds).
    pub block_timestamp: u64,
    /// Whether it was checked against the chain during the evaluation.
    pub checked_online: bool,
}

/// An evaluation's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalVerdict {
    /// Every criterion holds.
    #[serde(rename = "PASSED")]
    Passed,
    /// A criterion fails.
    #[serde(rename = "FAILED")]
    Failed,
    /// Evaluated without criteria.
    #[serde(rename = "NO-CRITERIA")]
    NoCriteria,
}

impl std::fmt::Display for EvalVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalVerdict::Passed => "PASSED",
            EvalVerdict::Failed => "FAILED",
            EvalVerdict::NoCriteria => "NO-CRITERIA",
        })
    }
}

impl Evaluation {
    /// The verdict from the criteria results.
    pub fn verdict_of(criteria: Option<&CriteriaRef>) -> EvalVerdict {
        match criteria {
            None => EvalVerdict::NoCriteria,
            Some(c) if c.results.iter().all(|r| r.passed) => EvalVerdict::Passed,
            Some(_) => EvalVerdict::Failed,
        }
    }
}
