//! What a file is: one enum of the document kinds auditai writes and reads, told from the bytes
//! (never from the file name), and what a file's name says it should be.

use std::path::Path;

use serde_json::Value;

use super::{RunKind, TrustError};
use crate::manifest;

/// The first bytes of a model card: the binding comment.
pub const CARD_MARKER: &str = "<!-- auditai-model-card/v1 ";

/// The kinds of document auditai writes and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentKind {
    /// A training run's provenance manifest (SLSA Provenance, `auditai run` of a training spec).
    Provenance,
    /// A multi-stage pipeline's manifest (SLSA Provenance with the pipeline build type).
    Pipeline,
    /// An evaluation attestation (`auditai eval`).
    Evaluation,
    /// A signed verdict (SLSA VSA, `verify --attest`, `audit --attest`).
    Verdict,
    /// A Markdown model card (`auditai export --format model-card`).
    ModelCard,
    /// A CycloneDX ML-BOM (`auditai export --format cyclonedx`).
    MlBom,
    /// A hash-chained prediction log (`auditai predict --log`).
    PredictionLog,
    /// A data owner's contribution statement (`auditai contribute`).
    Contribution,
    /// A reward statement (`auditai rewards --pool`).
    Rewards,
}

impl DocumentKind {
    /// Its name in messages and `--json` output.
    pub fn label(self) -> &'static str {
        match self {
            DocumentKind::Provenance => "provenance manifest",
            DocumentKind::Pipeline => "pipeline manifest",
            DocumentKind::Evaluation => "evaluation attestation",
            DocumentKind::Verdict => "verdict",
            DocumentKind::ModelCard => "model card",
            DocumentKind::MlBom => "ML-BOM",
            DocumentKind::PredictionLog => "prediction log",
            DocumentKind::Contribution => "contribution statement",
            DocumentKind::Rewards => "reward statement",
        }
    }

    /// Its label with an article (`a model card`, `an ML-BOM`).
    pub fn with_article(self) -> String {
        let l = self.label();
        let article = if matches!(self, DocumentKind::Evaluation | DocumentKind::MlBom) {
            "an"
        } else {
            "a"
        };
        format!("{article} {l}")
    }
}

impl std::fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What a caller needs a document to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A run's manifest of this kind.
    Run(RunKind),
    /// Exactly this kind.
    Kind(DocumentKind),
}

impl Expect {
    /// Whether `kind` is what is expected.
    pub fn admits(self, kind: DocumentKind) -> bool {
        match self {
            Expect::Run(RunKind::Any) => {
                matches!(kind, DocumentKind::Provenance | DocumentKind::Pipeline)
            }
            Expect::Run(RunKind::Training) => kind == DocumentKind::Provenance,
            Expect::Run(RunKind::Pipeline) => kind == DocumentKind::Pipeline,
            Expect::Kind(k) => k == kind,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Run(RunKind::Any) => f.write_str("a provenance or pipeline manifest"),
            Expect::Run(RunKind::Training) => f.write_str("a training run's manifest"),
            Expect::Run(RunKind::Pipeline) => f.write_str("a pipeline manifest"),
            Expect::Kind(k) => f.write_str(&k.with_article()),
        }
    }
}

impl std::str::FromStr for Expect {
    type Err = String;

    /// The `--expect` words: `manifest`, `provenance`, `pipeline`, `evaluation`, `verdict`,
    /// `model-card`, `ml-bom`, `prediction-log`, `contribution`, `rewards`.
    fn from_str(s: &str) -> Result<Expect, String> {
        Ok(match s {
            "manifest" => Expect::Run(RunKind::Any),
            "provenance" => Expect::Kind(DocumentKind::Provenance),
            "pipeline" => Expect::Kind(DocumentKind::Pipeline),
            "evaluation" => Expect::Kind(DocumentKind::Evaluation),
            "verdict" => Expect::Kind(DocumentKind::Verdict),
            "model-card" => Expect::Kind(DocumentKind::ModelCard),
            "ml-bom" => Expect::Kind(DocumentKind::MlBom),
            "prediction-log" => Expect::Kind(DocumentKind::PredictionLog),
            "contribution" => Expect::Kind(DocumentKind::Contribution),
            "rewards" => Expect::Kind(DocumentKind::Rewards),
            _ => {
                return Err(format!(
                    "`{s}` is not a document kind (manifest, provenance, pipeline, evaluation, verdict, model-card, ml-bom, prediction-log, contribution, rewards)"
                ));
            }
        })
    }
}

/// What a file's name says it is: `manifest.intoto.json` a run's manifest, `verdict-*.intoto.json`
/// a verdict, `*eval.intoto.json` an evaluation, `*.md` a model card, `*.cdx.json` an ML-BOM,
/// `*.jsonl` a prediction log. A name that says nothing gives `None`.
pub fn expected_from_name(path: &Path) -> Option<Expect> {
    let name = path.file_name()?.to_str()?;
    if name == crate::run_dir::MANIFEST || name.ends_with(".manifest.intoto.json") {
        Some(Expect::Run(RunKind::Any))
    } else if name.starts_with("verdict-") && name.ends_with(".intoto.json") {
        Some(Expect::Kind(DocumentKind::Verdict))
    } else if name.ends_with("eval.intoto.json") {
        Some(Expect::Kind(DocumentKind::Evaluation))
    } else if name.ends_with(".contribution.json") {
        Some(Expect::Kind(DocumentKind::Contribution))
    } else if name.ends_with(".md") {
        Some(Expect::Kind(DocumentKind::ModelCard))
    } else if name.ends_with(".cdx.json") {
        Some(Expect::Kind(DocumentKind::MlBom))
    } else if name.ends_with(".jsonl") {
        Some(Expect::Kind(DocumentKind::PredictionLog))
    } else {
        None
    }
}

/// A file told by its content: its kind and, except for a prediction log (streamed, possibly
/// large), its bytes.
#[derive(Debug)]
pub struct Sniffed {
    /// What it is.
    pub kind: DocumentKind,
    /// Its bytes (bounded), `None` for a prediction log.
    pub bytes: Option<Vec<u8>>,
}

/// Tell what the file at `path` is from its content.
pub fn sniff(path: &Path) -> Result<Sniffed, TrustError> {
    use std::io::Read as _;
    let unreadable = |source| TrustError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 64];
    let n = crate::fsio::open_regular(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(unreadable)?;
    let prefix = format!("{{\"schema\":\"{}\"", crate::predlog::LOG_SCHEMA);
    if head[..n].starts_with(prefix.as_bytes()) {
        return Ok(Sniffed {
            kind: DocumentKind::PredictionLog,
            bytes: None,
        });
    }
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(unreadable)?;
    let kind = classify(&bytes).map_err(|why| TrustError::Malformed {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(Sniffed {
        kind,
        bytes: Some(bytes),
    })
}

/// The kind of a document's bytes, or why it is none auditai reads.
pub(crate) fn classify(bytes: &[u8]) -> Result<DocumentKind, String> {
    if bytes.starts_with(CARD_MARKER.as_bytes()) {
        return Ok(DocumentKind::ModelCard);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes)
        && v.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX")
    {
        return Ok(DocumentKind::MlBom);
    }
    let (_, _, value) = manifest::open_envelope(bytes).map_err(|e| e.to_string())?;
    let predicate = value
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or("");
    match predicate {
        manifest::PREDICATE_TYPE => {
            let build = value
                .pointer("/predicate/buildDefinition/buildType")
                .and_then(Value::as_str);
            Ok(if build == Some(manifest::PIPELINE_BUILD_TYPE) {
                DocumentKind::Pipeline
            } else {
                DocumentKind::Provenance
            })
        }
        manifest::EVAL_PREDICATE => Ok(DocumentKind::Evaluation),
        manifest::VSA_PREDICATE => Ok(DocumentKind::Verdict),
        crate::contribution::CONTRIBUTION_PREDICATE => Ok(DocumentKind::Contribution),
        crate::rewards::REWARDS_PREDICATE => Ok(DocumentKind::Rewards),
        other => Err(format!(
            "predicate type `{other}` is not one auditai reads (SLSA Provenance, Verification Summary, auditai evaluation, contribution or rewards)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_a_file_should_be() {
        let cases = [
            ("r/manifest.intoto.json", Some(Expect::Run(RunKind::Any))),
            (
                "verdict-audit-1.intoto.json",
                Some(Expect::Kind(DocumentKind::Verdict)),
            ),
            (
                "eval.intoto.json",
                Some(Expect::Kind(DocumentKind::Evaluation)),
            ),
            ("card.md", Some(Expect::Kind(DocumentKind::ModelCard))),
            ("bom.cdx.json", Some(Expect::Kind(DocumentKind::MlBom))),
            ("p.jsonl", Some(Expect::Kind(DocumentKind::PredictionLog))),
            ("whatever.json", None),
        ];
        for (name, want) in cases {
            assert_eq!(expected_from_name(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn a_card_is_not_a_manifest() {
        assert!(!Expect::Run(RunKind::Any).admits(DocumentKind::ModelCard));
        assert!(Expect::Run(RunKind::Any).admits(DocumentKind::Pipeline));
        assert!(!Expect::Run(RunKind::Training).admits(DocumentKind::Pipeline));
        assert_eq!(
            classify(b"<!-- auditai-model-card/v1 {} -->\n# x").unwrap(),
            DocumentKind::ModelCard
        );
        assert!(classify(b"{}").is_err());
    }
}
