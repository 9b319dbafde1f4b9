//! Documents bound to a signed run: a Markdown model card ([`card`]) and a CycloneDX 1.6 ML-BOM
//! ([`cyclonedx`]), filled from the run's manifest, summary, preprocessing, weights header, the
//! spec's `card:` section and any evaluation attestations (`auditai export`;
//! `docs/model-card.md`). Each document is sealed to its run by [`binding`]: the manifest's
//! sha256, the subjects' digests and a digest of the document's whole body.
//!
//! Reads the run only through the gate ([`crate::trust::SignedRun`]), evaluation attestations
//! only when their signatures hold under the same trust; writes nothing (the command line writes
//! the document atomically).

pub mod binding;
mod card;
mod cyclonedx;
mod describe;
pub mod lineage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub use binding::{Binding, Sealed, Subject};
pub use card::model_card;
pub use cyclonedx::cyclonedx;

use crate::manifest::{self, ResourceDescriptor};
use crate::run_dir;
use crate::spec::CardSpec;
use crate::trust::{DocumentKind, Required, RunKind, SignedRun, TrustError};

/// Errors that stop an export: the gate's (a refused run or evaluation is exit 1), or a file of
/// the run that is malformed (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run or an evaluation was refused or unreadable at the gate.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A file is malformed.
    #[error("{}: {message}", path.display())]
    Run {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An evaluation cannot be included.
    #[error("refusing evaluation {}: {why}", path.display())]
    Evaluation {
        /// The attestation.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl ExportError {
    /// Whether this is a definite "no" about the evidence (exit 1).
    pub fn is_refusal(&self) -> bool {
        match self {
            ExportError::Trust(e) => e.is_refusal(),
            ExportError::Evaluation { .. } => true,
            ExportError::Run { .. } => false,
        }
    }
}

/// Everything a document says, gathered from the run.
pub struct Run {
    /// The manifest path.
    pub manifest_path: PathBuf,
    /// Its bytes.
    pub manifest_bytes: Vec<u8>,
    /// The statement.
    pub statement: manifest::Statement,
    /// Signer key ids.
    pub signers: Vec<String>,
    /// Whether the signers were verified against a trust.
    pub signers_verified: bool,
    /// `summary.json`.
    pub summary: Value,
    /// `preprocessing.json`.
    pub preprocessing: crate::data::Preprocessing,
    /// Parameter count (from the safetensors header).
    pub parameters: u64,
    /// The spec's card section.
    pub card: CardSpec,
    /// The anchor receipt next to the manifest, when there is one.
    pub anchor: Option<crate::anchor::Receipt>,
    /// Class counts of the training data, when it could be read.
    pub class_balance: Option<BTreeMap<String, u64>>,
    /// Evaluation attestations to include.
    pub evaluations: Vec<crate::eval::Evaluation>,
    /// How the training file was made from raw data, when exported from a pipeline manifest:
    /// the stages from the raw files to the training file, in run order.
    pub lineage: Vec<lineage::Step>,
    /// The pipeline manifest the lineage comes from (path, sha256), when exported from one.
    pub pipeline: Option<(PathBuf, String)>,
}

/// Read a run for export through the gate: the manifest (its signatures as `required` says),
/// and the summary, preprocessing and weights each through the manifest's digests; each
/// evaluation only when its signatures hold under the same trust and it evaluates this run.
pub fn read_run(
    path: &Path,
    required: Required<'_>,
    root: Option<&Path>,
    evals: &[PathBuf],
    stage: Option<&str>,
) -> Result<Run, ExportError> {
    let opened = SignedRun::open(path, RunKind::Any, required)?;
    let (run, lineage, pipeline) = match opened.kind() {
        DocumentKind::Pipeline => {
            let (run, steps) = lineage::training_run(&opened, stage, required)?;
            let sha = crate::hash::sha256_hex(opened.bytes());
            (run, steps, Some((opened.path().to_path_buf(), sha)))
        }
        _ => (opened, Vec::new(), None),
    };
    let bad = |p: &Path, message: String| ExportError::Run {
        path: p.to_path_buf(),
        message,
    };
    let dir = run.dir().to_path_buf();
    let summary_bytes = run.read(run_dir::SUMMARY, crate::fsio::MAX_DOCUMENT)?;
    let preprocessing = run.preprocessing()?;
    let weights = run.read(run_dir::MODEL_SAFETENSORS, 16 << 30)?;
    let json = |p: &str, b: &[u8]| {
        serde_json::from_slice::<Value>(b).map_err(|e| bad(&dir.join(p), e.to_string()))
    };
    let summary = json(run_dir::SUMMARY, &summary_bytes)?;
    let parameters = safetensors_parameters(&weights).ok_or_else(|| {
        bad(
            &dir.join(run_dir::MODEL_SAFETENSORS),
            "malformed header".into(),
        )
    })?;
    let st = run.statement();
    let card = st
        .predicate
        .build_definition
        .external_parameters
        .get("spec")
        .and_then(|s| s.get("card"))
        .and_then(|c| CardSpec::deserialize(c).ok())
        .unwrap_or_default();
    let anchor = crate::anchor::read_receipt(&crate::anchor::receipt_path(run.path())).ok();
    let class_balance = class_balance(st, run.path(), root, &preprocessing);
    let evaluations = read_evaluations(evals, &run, required)?;
    Ok(Run {
        signers: run.keyids(),
        manifest_path: run.path().to_path_buf(),
        manifest_bytes: run.bytes().to_vec(),
        statement: st.clone(),
        signers_verified: run.checked(),
        summary,
        preprocessing,
        parameters,
        card,
        anchor,
        class_balance,
        evaluations,
        lineage,
        pipeline,
    })
}

/// The evaluations to include: each signed as the trust requires and about this very run.
fn read_evaluations(
    evals: &[PathBuf],
    run: &SignedRun,
    required: Required<'_>,
) -> Result<Vec<crate::eval::Evaluation>, ExportError> {
    let mut out = Vec::new();
    for e in evals {
        let refuse = |why: String| ExportError::Evaluation {
            path: e.clone(),
            why,
        };
        let Required::Signers(trust) = required else {
            return Err(refuse(
                "an evaluation is included only when its signatures hold under --key or --policy, and none was given".into(),
            ));
        };
        let signed = crate::trust::open_statement::<crate::eval::EvalStatement>(
            e,
            DocumentKind::Evaluation,
            trust,
        )?;
        if !crate::hash::hex_eq(
            &signed.statement.predicate.model.manifest_blake3,
            &run.blake3_hex(),
        ) {
            return Err(refuse("it evaluates another run".into()));
        }
        out.push(signed.statement.predicate);
    }
    Ok(out)
}

/// The number of parameters: the sum of the tensors' element counts in a safetensors header.
fn safetensors_parameters(bytes: &[u8]) -> Option<u64> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    let v: Value = serde_json::from_slice(header).ok()?;
    let mut n = 0u64;
    for (k, t) in v.as_object()? {
        if k == "__metadata__" {
            continue;
        }
        let shape = t.get("shape")?.as_array()?;
        n = n.checked_add(
            shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))?,
        )?;
    }
    Some(n)
}

/// Class counts of the training data (digest-checked), for classification runs.
fn class_balance(
    st: &manifest::Statement,
    manifest_path: &Path,
    root: Option<&Path>,
    pre: &crate::data::Preprocessing,
) -> Option<BTreeMap<String, u64>> {
    pre.classes.as_ref()?;
    // With several sources the counts would need every file; the card lists the sources instead.
    if st
        .predicate
        .auditai
        .as_ref()
        .is_some_and(|e| e.sources.len() > 1)
    {
        return None;
    }
    let label = pre.label.as_str();
    let dep = st
        .predicate
        .build_definition
        .resolved_dependencies
        .first()
        .filter(|d| d.uri.as_deref().is_some_and(|u| u.starts_with("file:")))?;
    let root = root.map_or_else(
        || crate::provenance::project_root(crate::run_dir::of_manifest(manifest_path)),
        Path::to_path_buf,
    );
    let path = crate::fsio::safe_join(&root, dep.name.as_deref()?).ok()?;
    let bytes = crate::hash::read_pinned(
        &path,
        dep.digest.get("blake3")?,
        crate::data::MAX_DATA_BYTES,
    )
    .ok()?;
    let (mut reader, meter) = crate::data::table::reader(bytes.as_slice(), &pre.dialect);
    let col = reader.headers().ok()?.iter().position(|h| h == label)?;
    let mut counts = BTreeMap::new();
    let mut rec = csv::StringRecord::new();
    while reader.read_record(&mut rec).ok()? {
        meter.next_record();
        let l = crate::data::table::cell(&rec, col);
        if !pre.dialect.is_missing(l) {
            *counts.entry(l.to_string()).or_insert(0) += 1;
        }
    }
    Some(counts)
}

impl Run {
    /// The binding the document at `out` carries.
    pub fn binding(&self, out: &Path) -> Binding {
        let out_dir = crate::run_dir::of_manifest(out);
        Binding {
            manifest: crate::fsio::relative_to(out_dir, &self.manifest_path),
            manifest_sha256: crate::hash::sha256_hex(&self.manifest_bytes),
            subjects: self
                .statement
                .subject
                .iter()
                .map(|s| Subject {
                    name: s.name.clone().unwrap_or_default(),
                    sha256: s.digest.get("sha256").cloned().unwrap_or_default(),
                })
                .collect(),
            body_sha256: None,
        }
    }

    pub(crate) fn spec(&self) -> &Value {
        self.statement
            .predicate
            .build_definition
            .external_parameters
            .get("spec")
            .unwrap_or(&Value::Null)
    }

    pub(crate) fn name(&self) -> String {
        self.spec()["name"].as_str().unwrap_or("model").to_string()
    }

    pub(crate) fn architecture(&self) -> String {
        let m = &self.spec()["model"];
        let mut s = format!(
            "{} with hidden layers {}, {} activation",
            m["type"].as_str().unwrap_or("?"),
            m["hidden"],
            m["activation"].as_str().unwrap_or("?")
        );
        if let Some(c) = m.get("conv").filter(|c| !c.is_null()) {
            s.push_str(&format!(
                ", conv channels {} kernel {}",
                c["channels"], c["kernel"]
            ));
        }
        s
    }

    pub(crate) fn held_out_metrics(&self) -> Vec<(String, f64)> {
        self.summary["metrics"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn wall_seconds(&self) -> f64 {
        self.summary["epochs"]
            .as_array()
            .map(|e| e.iter().filter_map(|r| r["seconds"].as_f64()).sum())
            .unwrap_or(0.0)
    }

    pub(crate) fn skipped_rows(&self) -> Option<&manifest::SkippedRows> {
        self.statement
            .predicate
            .auditai
            .as_ref()?
            .skipped_rows
            .as_ref()
    }

    /// The data sources the manifest records (`data.sources`).
    pub(crate) fn sources(&self) -> &[manifest::SourceRecord] {
        self.statement
            .predicate
            .auditai
            .as_ref()
            .map_or(&[], |e| e.sources.as_slice())
    }

    /// `run --jurisdiction`, as recorded.
    pub(crate) fn jurisdiction(&self) -> Option<&str> {
        self.statement
            .predicate
            .auditai
            .as_ref()?
            .jurisdiction
            .as_deref()
    }

    pub(crate) fn data(&self) -> Option<&ResourceDescriptor> {
        self.statement
            .predicate
            .build_definition
            .resolved_dependencies
            .first()
    }
}
