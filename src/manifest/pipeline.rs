//! The pipeline extension of a provenance manifest: one record per stage of a multi-stage
//! pipeline run (`docs/manifest.md`, "Pipeline manifests").
//!
//! Plain serde types; every field a reader needs is checked by [`crate::verify`]. No files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ResourceDescriptor;

/// The build type of a multi-stage pipeline run.
pub const PIPELINE_BUILD_TYPE: &str = "https://auditai.dev/pipeline/v1";
/// The schema tag of the pipeline extension.
pub const PIPELINE_SCHEMA: &str = "https://auditai.dev/pipeline-extension/v1";

/// `predicate.auditaiPipeline`: what every stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExtension {
    /// Always [`PIPELINE_SCHEMA`].
    pub schema: String,
    /// The pipeline's name.
    pub name: String,
    /// The spec file, relative to the project root.
    pub spec: String,
    /// The pipeline's run directory relative to the project root (absent when outside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
    /// Whether every stage ran or was reused (false: a stage failed, was interrupted, or was
    /// left out by `--stage`).
    pub complete: bool,
    /// One record per stage, in the order they completed (reused stages first).
    pub stages: Vec<StageRecord>,
}

/// What happened to a stage in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// It ran and completed.
    Ran,
    /// Nothing it depends on changed: its recorded outs were reused.
    Reused,
}

/// One stage of a pipeline run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// The stage name.
    pub name: String,
    /// `command` or `train`.
    pub kind: String,
    /// Ran or reused.
    pub status: StageStatus,
    /// The command line (command stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// The working directory relative to the project root (command stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wdir: Option<String>,
    /// The params the stage declared, with their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Environment variables the stage saw, with their values (`PATH`, the declared `env`, and
    /// the `AUDITAI_` variables auditai sets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Declared secret variables the stage saw: names only, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// Variables every command stage gets from the caller unless it declares them (`HOME`,
    /// `USER`, `LANG`, `TMPDIR`): the names it got, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ambient_env: Vec<String>,
    /// blake3 of the resolved training configuration (training stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_blake3: Option<String>,
    /// The command's exit code (ran command stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When it started (ran stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// When it finished (ran stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
    /// Its stdout and stderr logs, relative to the run directory (ran command stages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<ResourceDescriptor>,
    /// Its deps, relative to the project root, with their digests.
    pub deps: Vec<ResourceDescriptor>,
    /// Its outs, relative to the project root, with their digests.
    pub outs: Vec<ResourceDescriptor>,
    /// The training run's own manifest, relative to the project root (training stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ResourceDescriptor>,
    /// The values of its metrics files, by path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Value>,
    /// For a reused stage: the manifest that recorded it running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<ProducedBy>,
    /// A reused stage whose outs were restored from the run cache (they had changed since).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
    /// Where the stage ran when it was a Slurm job (absent: a child process of `auditai run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<JobFacts>,
    /// Paths inside the project, outside every stage's outs, that changed while the stage ran
    /// (`path (added|changed|removed)`, at most 50): what its tools wrote where they should not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside_changes: Vec<String>,
}

/// Where a stage ran when not as a child process of `auditai run`: a Slurm job, with the facts
/// the job read from Slurm's environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFacts {
    /// `slurm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The Slurm job id.
    pub job_id: String,
    /// `SLURM_CLUSTER_NAME`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// `SLURM_JOB_PARTITION`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// `SLURM_JOB_NODELIST`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nodes: String,
    /// CPUs allocated on the node (`SLURM_CPUS_ON_NODE`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    /// Memory per node in MB (`SLURM_MEM_PER_NODE`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mem: String,
    /// GPUs on the node (`SLURM_GPUS_ON_NODE`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gpus: String,
    /// When the stage started inside the job.
    pub started_on: String,
    /// When it ended.
    pub finished_on: String,
}

/// The pipeline manifest that first recorded a stage's outs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducedBy {
    /// Its path relative to the project root.
    pub manifest: String,
    /// blake3 of its bytes.
    pub blake3: String,
}
