//! The provenance manifest: an in-toto Statement v1 with a SLSA Provenance v1 predicate and an
//! auditai extension, and its exact bytes.
//!
//! Types here serialise to the documented format (`docs/manifest.md`) and parse it back leniently
//! enough to report precise reasons when something is missing; [`provenance_statement`] builds a
//! run's statement from plain facts. No crypto, no files, no network, no burn.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod pipeline;

pub use pipeline::{
    JobFacts, PIPELINE_BUILD_TYPE, PIPELINE_SCHEMA, PipelineExtension, ProducedBy, StageRecord,
    StageStatus,
};

use crate::hash::{FileDigest, TreeDigest};
use crate::sign::{self, Envelope};

/// in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA Provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type of an `auditai run`.
pub const BUILD_TYPE: &str = "https://auditai.dev/run/v1";
/// The evaluation attestation's predicate type (`auditai eval`).
pub const EVAL_PREDICATE: &str = "https://auditai.dev/evaluation/v1";
/// The SLSA Verification Summary Attestation v1 predicate type (verdicts).
pub const VSA_PREDICATE: &str = "https://slsa.dev/verification_summary/v1";
/// The builder id of the auditai command line.
pub const BUILDER_ID: &str = "https://auditai.dev/builder/cli";
/// The schema tag of the auditai extension.
pub const EXTENSION_SCHEMA: &str = "https://auditai.dev/provenance-extension/v1";

/// An in-toto Statement v1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts this statement is about.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The provenance.
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourceDescriptor {
    /// A name (for files: the path relative to the run directory or the project root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Digests by algorithm name (`sha256`, `blake3`, `gitCommit`, `gitTree`, `dirHash`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// Extra information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

impl ResourceDescriptor {
    /// A file's descriptor with sha256 (when known), blake3 and its size.
    pub fn file(name: &str, uri: Option<String>, d: &FileDigest) -> ResourceDescriptor {
        let mut digest = BTreeMap::new();
        if let Some(s) = d.sha256 {
            digest.insert("sha256".to_string(), s.hex());
        }
        digest.insert("blake3".to_string(), d.blake3.hex());
        ResourceDescriptor {
            name: Some(name.to_string()),
            uri,
            digest,
            annotations: Some(serde_json::json!({ "size": d.size })),
        }
    }

    /// A directory's descriptor: the auditai directory digest and its complete file list.
    pub fn tree(name: &str, t: &TreeDigest) -> ResourceDescriptor {
        let mut digest = BTreeMap::new();
        digest.insert("blake3".to_string(), t.blake3.hex());
        ResourceDescriptor {
            name: Some(name.to_string()),
            uri: None,
            digest,
            annotations: Some(serde_json::json!({
                "kind": "directory",
                "digestAlgorithm": "auditai-directory-v1",
                "entries": t.entries,
            })),
        }
    }

    /// The annotations read as `T`: every field of the view types is optional, so a manifest
    /// that omits or mistypes one yields the default, never a panic.
    pub fn annotations_as<T: serde::de::DeserializeOwned + Default>(&self) -> T {
        self.annotations
            .as_ref()
            .and_then(|a| T::deserialize(a).ok())
            .unwrap_or_default()
    }

    /// The `size` annotation, when present.
    pub fn size(&self) -> Option<u64> {
        self.annotations_as::<FileAnnotations>().size
    }

    /// Whether this descriptor is a directory.
    pub fn is_directory(&self) -> bool {
        self.annotations_as::<TreeAnnotations>().kind.as_deref() == Some("directory")
    }
}

/// A file descriptor's annotations.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileAnnotations {
    /// Size in bytes.
    pub size: Option<u64>,
}

/// A directory descriptor's annotations: its complete listing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TreeAnnotations {
    /// `directory`.
    pub kind: Option<String>,
    /// Every entry below the directory.
    pub entries: Option<Vec<TreeEntryView>>,
}

/// One entry of a directory listing, as recorded.
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntryView {
    /// Path relative to the directory.
    pub path: String,
    /// `file`, `symlink` or `special`.
    pub kind: String,
    /// A file's size.
    pub size: Option<u64>,
    /// A file's blake3, hex.
    pub blake3: Option<String>,
    /// A symlink's target.
    pub target: Option<String>,
}

/// The `code` dependency's annotations (the git state).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CodeAnnotations {
    /// The checked-out branch.
    pub branch: Option<String>,
    /// Whether the work tree had uncommitted changes.
    pub dirty: Option<bool>,
    /// The paths that differed from HEAD.
    pub changed: Option<Vec<String>>,
}

/// The `toolchain` dependency's annotations.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolchainAnnotations {
    /// auditai's version.
    pub auditai: Option<String>,
    /// burn's version.
    pub burn: Option<String>,
    /// The compiler.
    pub rustc: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// CPU architecture.
    pub arch: Option<String>,
    /// `cpu` or `wgpu`.
    pub backend: Option<String>,
    /// The adapter description.
    pub adapter: Option<String>,
}

/// What a reader shows of the resolved spec recorded in `externalParameters.spec`. Numbers keep
/// their JSON spelling.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SpecView {
    /// Pipeline name.
    pub name: Option<String>,
    /// The seed.
    pub seed: Option<serde_json::Number>,
    /// The model section.
    #[serde(default)]
    pub model: ModelView,
    /// The training section.
    #[serde(default)]
    pub training: TrainingView,
}

/// The model section of a [`SpecView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelView {
    /// `mlp` or `cnn`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Hidden layer widths.
    pub hidden: Option<Vec<serde_json::Number>>,
}

/// The training section of a [`SpecView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrainingView {
    /// Epochs.
    pub epochs: Option<serde_json::Number>,
    /// Batch size.
    pub batch_size: Option<serde_json::Number>,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerView,
}

/// The optimizer of a [`TrainingView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OptimizerView {
    /// `adam`, `adamw` or `sgd`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Learning rate.
    pub lr: Option<serde_json::Number>,
}

impl Statement {
    /// The recorded spec as a [`SpecView`] (defaults where the manifest omits something).
    pub fn spec_view(&self) -> SpecView {
        self.predicate
            .build_definition
            .external_parameters
            .get("spec")
            .and_then(|v| SpecView::deserialize(v).ok())
            .unwrap_or_default()
    }
}

/// SLSA Provenance v1, plus the auditai extension.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What was run, with which inputs.
    pub build_definition: BuildDefinition,
    /// Who ran it, when, and what else it produced.
    pub run_details: RunDetails,
    /// Training details for ML-aware verifiers (ignored by generic SLSA tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditai: Option<Extension>,
    /// The pipeline extension (multi-stage pipeline runs).
    #[serde(
        default,
        rename = "auditaiPipeline",
        skip_serializing_if = "Option::is_none"
    )]
    pub pipeline: Option<PipelineExtension>,
}

/// SLSA `buildDefinition`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: String,
    /// The resolved pipeline spec (all hyper-parameters and the seed) and the device choice.
    pub external_parameters: Value,
    /// Backend and adapter.
    #[serde(default)]
    pub internal_parameters: Value,
    /// Data files, the spec file, the code and the toolchain.
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// SLSA `runDetails`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// Invocation id and times.
    pub metadata: Metadata,
    /// Other files the run produced (spec copy, preprocessing, metrics, checkpoints).
    #[serde(default)]
    pub byproducts: Vec<ResourceDescriptor>,
}

/// SLSA `builder`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Builder {
    /// [`BUILDER_ID`].
    pub id: String,
    /// Component versions.
    #[serde(default)]
    pub version: BTreeMap<String, String>,
}

/// SLSA `metadata`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// A random id for this run.
    pub invocation_id: String,
    /// RFC 3339 UTC start time.
    pub started_on: String,
    /// RFC 3339 UTC finish time.
    pub finished_on: String,
}

/// The auditai extension: per-epoch checkpoints and final metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// [`EXTENSION_SCHEMA`].
    pub schema: String,
    /// blake3 of the resolved spec's canonical JSON.
    pub spec_blake3: String,
    /// `cpu` or `wgpu`.
    pub backend: String,
    /// The held-out split the metrics are on.
    pub held_out: String,
    /// Final held-out metrics.
    pub metrics: Value,
    /// The epoch whose weights are the final model.
    pub final_epoch: usize,
    /// Per-epoch checkpoint digests.
    pub checkpoints: Vec<CheckpointEntry>,
    /// The training commitment made before the first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentRef>,
    /// The training transcript and its chain head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<TranscriptRef>,
    /// Data rows left out of training (`run --skip-bad-rows`, gaps under `impute: drop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_rows: Option<SkippedRows>,
    /// Where the run declared it processed the data (`run --jurisdiction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// The data sources, their contributions, rows per split and measured value
    /// (`data.sources`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRecord>,
}

/// One data source of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    /// The data file, relative to the project root.
    pub name: String,
    /// The salted commitment, when its contribution withholds the data: the manifest then holds
    /// no digest of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<String>,
    /// Its contribution statement, as checked when the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contribution: Option<ContributionRecord>,
    /// Rows per split.
    pub rows: SourceRows,
    /// The first-order in-run value summed over every step (two or more sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<f64>,
}

/// A source's rows per split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceRows {
    /// All its data rows.
    pub total: usize,
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub validation: usize,
    /// Test rows.
    pub test: usize,
}

/// A contribution's terms as the manifest records them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContributionRecord {
    /// The statement's copy in the run directory.
    pub path: String,
    /// sha256 of the statement.
    pub sha256: String,
    /// The owner's key id.
    pub owner: String,
    /// The owner's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// The terms as the owner signed them.
    #[serde(flatten)]
    pub terms: crate::contribution::Terms,
}

/// Data rows a run left out, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRows {
    /// How many.
    pub count: usize,
    /// The first [`MAX_SKIPPED_LISTED`] of them: 1-based CSV line and reason.
    pub rows: Vec<SkippedRow>,
}

/// One left-out row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedRow {
    /// Its 1-based line in the CSV.
    pub line: u64,
    /// Why.
    pub why: String,
}

/// How many skipped rows a manifest lists one by one.
pub const MAX_SKIPPED_LISTED: usize = 1000;

/// Where the commitment is and what it hashes to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitmentRef {
    /// Path relative to the run directory.
    pub path: String,
    /// blake3 of the file: `h_0` of the transcript chain.
    pub blake3: String,
}

/// Where the transcript is, how long it is, and its chain head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptRef {
    /// Path relative to the run directory.
    pub path: String,
    /// blake3 of the file.
    pub blake3: String,
    /// Number of entries (segments).
    pub entries: usize,
    /// The last entry's chain hash (`h_0` when empty).
    pub head: String,
}

/// One epoch's checkpoint in the extension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointEntry {
    /// 1-based epoch.
    pub epoch: usize,
    /// Path relative to the run directory.
    pub path: String,
    /// blake3 of the weights.
    pub blake3: String,
    /// blake3 of the optimizer state.
    pub optimizer_blake3: String,
    /// Validation loss after the epoch.
    pub val_loss: f64,
}

impl Statement {
    /// The exact payload bytes to sign (compact JSON).
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A run-directory file (a subject or byproduct) by name.
    pub fn run_file(&self, name: &str) -> Option<&ResourceDescriptor> {
        self.subject
            .iter()
            .chain(&self.predicate.run_details.byproducts)
            .find(|d| d.name.as_deref() == Some(name))
    }

    /// A dependency by name.
    pub fn dependency(&self, name: &str) -> Option<&ResourceDescriptor> {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find(|d| d.name.as_deref() == Some(name))
    }
}

/// The current time as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A Unix time (seconds) from an untrusted file or server as RFC 3339, or a plain note when it
/// lies outside what RFC 3339 can show (years 1970 to 9999); never panics.
pub fn format_unix(secs: u64) -> String {
    // 10000-01-01T00:00:00Z: humantime formats only four-digit years.
    const YEAR_10000: u64 = 253_402_300_800;
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs)) {
        Some(t) if secs < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("unix time {secs} (out of range)"),
    }
}

/// A random invocation id (UUID v4 text form).
pub fn invocation_id() -> String {
    let mut b = [0u8; 16];
    // Without OS randomness the id is merely not unique; it is not a secret.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// What a finished run contributes to its provenance statement, as plain values (this module
/// knows no burn types).
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The resolved spec.
    pub spec: Value,
    /// blake3 of the resolved spec's canonical JSON.
    pub spec_blake3: String,
    /// `cpu` or `wgpu`.
    pub backend: String,
    /// The adapter description.
    pub adapter: String,
    /// The held-out split the metrics are on.
    pub held_out: String,
    /// Final held-out metrics.
    pub metrics: Value,
    /// The epoch whose weights are the final model.
    pub final_epoch: usize,
    /// Per-epoch checkpoint digests.
    pub checkpoints: Vec<CheckpointEntry>,
    /// The training commitment.
    pub commitment: CommitmentRef,
    /// The training transcript and its chain head.
    pub transcript: TranscriptRef,
    /// RFC 3339 time the run started.
    pub started_on: String,
    /// Rows left out of training.
    pub skipped_rows: Option<SkippedRows>,
    /// `run --jurisdiction`.
    pub jurisdiction: Option<String>,
    /// The data sources (`data.sources`).
    pub sources: Vec<SourceRecord>,
}

/// The provenance statement of a run: subjects, dependencies and byproducts as given, the
/// builder, timestamps and the auditai extension from `facts`.
pub fn provenance_statement(
    facts: RunFacts,
    subject: Vec<ResourceDescriptor>,
    resolved_dependencies: Vec<ResourceDescriptor>,
    byproducts: Vec<ResourceDescriptor>,
) -> Statement {
    let t = crate::provenance::toolchain();
    Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: PREDICATE_TYPE.to_string(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.to_string(),
                external_parameters: serde_json::json!({
                    "spec": facts.spec,
                    "device": facts.backend,
                }),
                internal_parameters: serde_json::json!({
                    "adapter": facts.adapter,
                }),
                resolved_dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.to_string(),
                    version: [
                        ("auditai".to_string(), t.auditai),
                        ("burn".to_string(), t.burn),
                    ]
                    .into(),
                },
                metadata: Metadata {
                    invocation_id: invocation_id(),
                    started_on: facts.started_on,
                    finished_on: now_rfc3339(),
                },
                byproducts,
            },
            auditai: Some(Extension {
                schema: EXTENSION_SCHEMA.to_string(),
                spec_blake3: facts.spec_blake3,
                backend: facts.backend,
                held_out: facts.held_out,
                metrics: facts.metrics,
                final_epoch: facts.final_epoch,
                checkpoints: facts.checkpoints,
                commitment: Some(facts.commitment),
                transcript: Some(facts.transcript),
                skipped_rows: facts.skipped_rows,
                jurisdiction: facts.jurisdiction,
                sources: facts.sources,
            }),
            pipeline: None,
        },
    }
}

/// The `code` dependency: the git commit and tree, the remote (already credential-free) and the
/// work tree's state, or why there is none.
pub fn code_descriptor(code: &crate::provenance::Code) -> ResourceDescriptor {
    let mut d = ResourceDescriptor {
        name: Some("code".to_string()),
        ..Default::default()
    };
    match code {
        crate::provenance::Code::Git(g) => {
            if let Some(c) = &g.commit {
                d.digest.insert("gitCommit".to_string(), c.clone());
            }
            if let Some(t) = &g.tree {
                d.digest.insert("gitTree".to_string(), t.clone());
            }
            d.uri = g.remote.as_ref().map(|r| match &g.branch {
                Some(b) => format!("git+{r}@refs/heads/{b}"),
                None => format!("git+{r}"),
            });
            d.annotations = serde_json::to_value(g).ok();
        }
        crate::provenance::Code::None { reason } => {
            d.uri = Some("about:no-vcs".to_string());
            d.annotations = Some(serde_json::json!({ "vcs": "none", "reason": reason }));
        }
    }
    d
}

/// The `toolchain` dependency: auditai, burn, rustc, OS, architecture and the backend used.
pub fn toolchain_descriptor(backend: &str, adapter: &str) -> ResourceDescriptor {
    let t = crate::provenance::toolchain();
    ResourceDescriptor {
        name: Some("toolchain".to_string()),
        uri: Some(format!("pkg:cargo/auditai@{}", t.auditai)),
        digest: Default::default(),
        annotations: Some(serde_json::json!({
            "auditai": t.auditai,
            "burn": t.burn,
            "rustc": t.rustc,
            "os": t.os,
            "arch": t.arch,
            "backend": backend,
            "adapter": adapter,
        })),
    }
}

/// A DSSE envelope holding an in-toto Statement v1 of any predicate type: the envelope, its
/// payload bytes and the statement as JSON (for evaluation attestations, co-signing).
pub fn open_envelope(bytes: &[u8]) -> Result<(Envelope, Vec<u8>, Value), OpenError> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(OpenError::Envelope)?;
    if envelope.payload_type != sign::IN_TOTO_PAYLOAD_TYPE {
        return Err(OpenError::PayloadType(envelope.payload_type));
    }
    let payload = envelope.payload_bytes().ok_or(OpenError::Base64)?;
    let value: Value = serde_json::from_slice(&payload).map_err(OpenError::Json)?;
    let statement_type = value.get("_type").and_then(Value::as_str).unwrap_or("");
    if statement_type != STATEMENT_TYPE {
        return Err(OpenError::StatementType(statement_type.to_string()));
    }
    Ok((envelope, payload, value))
}

/// The predicate type of a DSSE-wrapped in-toto statement, when it is one.
pub fn predicate_type_of(bytes: &[u8]) -> Option<String> {
    let (_, _, value) = open_envelope(bytes).ok()?;
    value
        .get("predicateType")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A parsed, not yet trusted, manifest: nothing about it is checked but its shape.
pub struct Opened {
    /// The envelope.
    pub envelope: Envelope,
    /// The exact payload bytes (what the signatures cover).
    pub payload: Vec<u8>,
    /// The statement parsed from them.
    pub statement: Statement,
}

/// Why bytes are not an auditai manifest.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not a DSSE envelope.
    #[error("not a DSSE envelope: {0}")]
    Envelope(serde_json::Error),
    /// Another payload type.
    #[error("unknown payload type `{0}` (expected {ty})", ty = sign::IN_TOTO_PAYLOAD_TYPE)]
    PayloadType(String),
    /// The payload is not base64.
    #[error("payload is not valid base64")]
    Base64,
    /// The payload is not JSON.
    #[error("payload is not JSON: {0}")]
    Json(serde_json::Error),
    /// Not an in-toto Statement v1.
    #[error("payload is not an in-toto Statement v1 (_type is `{0}`)")]
    StatementType(String),
    /// Another predicate.
    #[error("predicate type `{0}` is not SLSA Provenance v1")]
    PredicateType(String),
    /// The statement does not have the auditai provenance shape.
    #[error("statement does not match the auditai provenance format: {0}")]
    Shape(serde_json::Error),
}

/// Parse a DSSE envelope and its statement, or say precisely why not. The one parser of
/// manifests: `verify`, `audit`, `sign` and `inspect` all read them through it.
pub fn open(bytes: &[u8]) -> Result<Opened, OpenError> {
    let (envelope, payload, value) = open_envelope(bytes)?;
    let predicate_type = value
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if predicate_type != PREDICATE_TYPE {
        return Err(OpenError::PredicateType(predicate_type.to_string()));
    }
    let statement: Statement = serde_json::from_value(value).map_err(OpenError::Shape)?;
    Ok(Opened {
        envelope,
        payload,
        statement,
    })
}
