//! `auditai run` end to end, as a short list of phases: inputs (spec, data, code) → run
//! directory (checked, moved aside on `--force`, marked) → commitment (anchored on request) →
//! training → export (`model.bpk`, `model.safetensors`, `summary.json`) → manifest, written last:
//! its presence marks a complete run. Everything is checked before the run directory is touched.
//! File names are [`crate::run_dir`]'s; the statement is built by [`crate::manifest`].
//! Reports progress through a callback; never prints.

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::Serialize;

use crate::anchor::{self, AnchorError, Receipt};
use crate::contribution::{self, Admitted, ContributionError, RunTerms};
use crate::data::{self, DataError, Prepared};
use crate::fsio;
use crate::hash::{self, HashError};
use crate::manifest;
use crate::provenance;
use crate::run_dir::{self, RunDirError};
use crate::sign::{self, Envelope, SecretKey};
use crate::spec::{DeviceChoice, Spec, SpecError};
use crate::train::{self, BackendKind, EpochRecord, Metrics, Progress, TrainError, device};
use crate::transcript::{self, CodeRef, Commitment, FileRef};

/// Errors from running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The data does not fit the spec.
    #[error(transparent)]
    Data(#[from] DataError),
    /// No wgpu adapter for `--device wgpu`.
    #[error("{0}")]
    Device(#[from] device::NoAdapter),
    /// Training or checkpointing failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The run directory already holds a run.
    #[error("{} already holds a run", dir.display())]
    Exists {
        /// The run directory.
        dir: PathBuf,
    },
    /// `--force` on a directory that may not be replaced.
    #[error(transparent)]
    Replace(#[from] RunDirError),
    /// `--resume` on a directory with nothing to resume.
    #[error("cannot resume {}: {message}", dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Hashing an input or output failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Anchoring the commitment failed (training did not start).
    #[error("anchoring the training commitment failed, so training did not start: {0}")]
    Anchor(#[from] AnchorError),
    /// A data source's contribution refuses the run, or cannot be read.
    #[error(transparent)]
    Contribution(#[from] ContributionError),
    /// Exporting the weights failed.
    #[error("exporting {}: {message}", path.display())]
    Export {
        /// The target file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The spec file.
    pub spec: PathBuf,
    /// Overrides `training.device`.
    pub device: Option<DeviceChoice>,
    /// Overrides `outputs.dir`.
    pub out: Option<PathBuf>,
    /// Continue from the last complete checkpoint.
    pub resume: bool,
    /// Replace an existing run directory.
    pub force: bool,
    /// The training stage to run when the spec is a multi-stage pipeline.
    pub stage: Option<String>,
    /// Train without the data's bad rows (recorded in the manifest) instead of failing.
    pub skip_bad_rows: bool,
    /// The run's jurisdiction and the policy's demands on data sources.
    pub terms: RunTerms,
}

/// Progress of a run, for the command line to display.
#[derive(Debug)]
pub enum Event<'a> {
    /// The device is chosen; `notice` says why `auto` fell back to the CPU.
    Device {
        /// Backend family.
        kind: BackendKind,
        /// Adapter description.
        adapter: &'a str,
        /// A one-line notice, if any.
        notice: Option<&'a device::Notice>,
    },
    /// The commitment is written (and, when asked, anchored) and training starts.
    Committed {
        /// `commitment.json`.
        path: &'a Path,
        /// Its anchor receipt, when anchored now.
        receipt: Option<&'a Receipt>,
    },
    /// A message from anchoring the commitment.
    Anchoring(&'a str),
    /// `--force` moved the previous run aside, to this path.
    MovedAside(&'a Path),
    /// Something the user should know that does not stop the run.
    Notice(&'a str),
    /// Training progress.
    Train(Progress<'a>),
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Format tag.
    pub schema: &'static str,
    /// auditai version.
    pub auditai_version: &'static str,
    /// Pipeline name.
    pub name: String,
    /// The resolved spec (all defaults filled in).
    pub spec: Spec,
    /// blake3 of the resolved spec's canonical JSON.
    pub spec_blake3: String,
    /// Backend family.
    pub device: BackendKind,
    /// Adapter description.
    pub adapter: String,
    /// Row counts.
    pub rows: Rows,
    /// Which split the final metrics are on: `test`, or `validation` when there is no test split.
    pub held_out: &'static str,
    /// Final held-out metrics.
    pub metrics: Metrics,
    /// Class names in index order (classification).
    pub classes: Option<Vec<String>>,
    /// Epochs completed.
    pub epochs_run: usize,
    /// The epoch whose weights are the final model.
    pub final_epoch: usize,
    /// The epoch with the lowest validation loss.
    pub best_epoch: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// blake3 of `model.bpk`.
    pub weights_blake3: String,
    /// blake3 of `model.safetensors`.
    pub safetensors_blake3: String,
    /// Per-epoch records (also in `metrics.jsonl`).
    pub epochs: Vec<EpochRecord>,
    /// Mean training throughput over all epochs, samples per second.
    pub samples_per_sec: f64,
    /// Per data source, the first-order in-run value summed over all steps (two or more
    /// sources; docs/contributors.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<Vec<SourceCredit>>,
}

/// One source's measured value.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCredit {
    /// The data file, relative to the project root.
    pub source: String,
    /// Its summed first-order value.
    pub value: f64,
}

/// Row counts per split.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rows {
    /// All data rows.
    pub total: usize,
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub validation: usize,
    /// Test rows.
    pub test: usize,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The summary written to `summary.json`.
    pub summary: Summary,
    /// The epoch a resumed run continued after.
    pub resumed_from: Option<usize>,
    /// The manifest written.
    pub manifest: PathBuf,
    /// Key ids of the manifest's signatures (empty: unsigned).
    pub signers: Vec<String>,
    /// blake3 of `commitment.json` (`h_0`).
    pub commitment_blake3: String,
    /// Transcript entries.
    pub transcript_entries: usize,
    /// The transcript's chain head.
    pub transcript_head: String,
}

/// Run the pipeline described by `opts`.
///
/// With `commit_anchor`, the training commitment is anchored before the first step; a failure to
/// anchor stops the run before training.
pub fn run(
    opts: &RunOptions,
    key: Option<&SecretKey>,
    commit_anchor: Option<&anchor::Options>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<RunReport, PipelineError> {
    let inputs = read_inputs(opts)?;
    for n in &inputs.data.notices {
        on_event(Event::Notice(n));
    }
    if !inputs.data.skipped.is_empty() {
        let shown: Vec<String> = inputs
            .data
            .skipped
            .iter()
            .take(3)
            .map(|b| format!("line {}: {}", b.line, b.why))
            .collect();
        let more = inputs.data.skipped.len() - shown.len();
        on_event(Event::Notice(&format!(
            "left out {} data row(s) ({}{}); the manifest records them",
            inputs.data.skipped.len(),
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )));
    }
    let (run_dir, backend, initial) = prepare_run_dir(opts, &inputs, on_event)?;
    let commitment_bytes = commit_phase(
        opts,
        &inputs,
        &run_dir,
        &backend,
        &initial,
        commit_anchor,
        on_event,
    )?;
    let session = train::Session {
        spec: &inputs.spec,
        data: &inputs.data,
        backend: &backend,
        dir: &run_dir,
        commitment: transcript::chain_start(&commitment_bytes),
    };
    let outcome = train::train(&session, opts.resume, &mut |p| on_event(Event::Train(p)))?;
    let exported = export(&run_dir, &inputs, &backend, &outcome)?;
    let written = write_manifest(
        &run_dir,
        inputs,
        &backend,
        &outcome,
        &exported,
        &commitment_bytes,
        key,
    )?;
    Ok(RunReport {
        run_dir,
        summary: exported.summary,
        resumed_from: outcome.resumed_from,
        manifest: written.path,
        signers: written.signers,
        commitment_blake3: written.commitment_blake3,
        transcript_entries: outcome.transcript.len(),
        transcript_head: written.transcript_head,
    })
}

/// What a run starts from, read and hashed once: the digests are of exactly the bytes that were
/// parsed, not of a second read.
struct Inputs {
    spec_bytes: Vec<u8>,
    spec: Spec,
    data: Prepared,
    code: provenance::Code,
    /// The project root (the git work tree, else the current directory).
    root: PathBuf,
    /// The data sources, then the spec file, as manifest dependencies.
    dependencies: Vec<manifest::ResourceDescriptor>,
    /// Each data source with its checked contribution.
    admitted: Vec<Admitted>,
    /// `--jurisdiction`.
    jurisdiction: Option<String>,
    started_on: String,
}

impl Inputs {
    /// The spec file's dependency (after the sources).
    fn spec_dependency(&self) -> &manifest::ResourceDescriptor {
        &self.dependencies[self.admitted.len()]
    }
}

fn read_inputs(opts: &RunOptions) -> Result<Inputs, PipelineError> {
    let spec_bytes = std::fs::read(&opts.spec).map_err(|source| SpecError::Read {
        path: opts.spec.clone(),
        source,
    })?;
    let spec = Spec::parse_stage(
        &String::from_utf8_lossy(&spec_bytes),
        &opts.spec,
        opts.stage.as_deref(),
    )?;
    let files = data::read_all(&spec)?;
    let started_on = manifest::now_rfc3339();
    let admitted = contribution::admit(&spec, &files, &opts.terms, &started_on)?;
    let data = data::parse_sources(
        &spec,
        &files,
        data::ParseOptions {
            skip_bad_rows: opts.skip_bad_rows,
        },
    )?;
    let spec_dir = opts
        .spec
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let code = provenance::code(spec_dir);
    let root = match &code {
        provenance::Code::Git(g) => g.root.clone(),
        provenance::Code::None { .. } => std::env::current_dir().map_err(io_err(Path::new(".")))?,
    };
    let mut dependencies: Vec<manifest::ResourceDescriptor> = admitted
        .iter()
        .zip(&files)
        .map(|(a, f)| source_descriptor(&root, a, &f.bytes))
        .collect();
    let rel = fsio::relative_to(&root, &opts.spec);
    dependencies.push(manifest::ResourceDescriptor::file(
        &rel,
        Some(format!("file:{rel}")),
        &hash::bytes_digest(&spec_bytes),
    ));
    Ok(Inputs {
        spec_bytes,
        spec,
        data,
        code,
        root,
        dependencies,
        admitted,
        jurisdiction: opts.terms.jurisdiction.clone(),
        started_on,
    })
}

/// A data source as a manifest dependency: the file by digest, or a withheld file by its salted
/// commitment alone (no `file:` URI, so nothing re-hashes it without the salt).
fn source_descriptor(root: &Path, a: &Admitted, bytes: &[u8]) -> manifest::ResourceDescriptor {
    let rel = fsio::relative_to(root, &a.path);
    match &a.commitment {
        None => manifest::ResourceDescriptor::file(
            &rel,
            Some(format!("file:{rel}")),
            &hash::bytes_digest(bytes),
        ),
        Some(c) => manifest::ResourceDescriptor {
            name: Some(rel),
            uri: None,
            digest: [(contribution::SALTED_DIGEST.to_string(), c.clone())].into(),
            annotations: Some(serde_json::json!({ "withheld": true })),
        },
    }
}

/// Check the run directory against `--resume` / `--force` and the model's size before touching
/// anything; then choose the device, move a replaced run aside, mark the directory and write the
/// spec and preprocessing. Returns the directory, the device and the initial weights.
fn prepare_run_dir(
    opts: &RunOptions,
    inputs: &Inputs,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<(PathBuf, device::Backend, Vec<u8>), PipelineError> {
    let spec = &inputs.spec;
    let run_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&spec.outputs.dir));
    check_dir(&run_dir, opts)?;
    // Before the run directory is touched: this also refuses a model too large to build.
    let initial = train::initial_weights(spec, &inputs.data)?;
    for d in &inputs.dependencies {
        if let Some(name) = d.name.as_deref().filter(|n| Path::new(n).is_absolute()) {
            on_event(Event::Notice(&format!(
                "{name} lies outside the project root {}; the manifest records its absolute path, which `auditai verify` refuses (move it under the root)",
                inputs.root.display()
            )));
        }
    }
    let (backend, notice) = device::select(opts.device.unwrap_or(spec.training.device))?;
    on_event(Event::Device {
        kind: backend.kind,
        adapter: &backend.adapter,
        notice: notice.as_ref(),
    });
    if opts.force && !opts.resume && occupied(&run_dir) {
        let aside = run_dir::move_aside(&run_dir)?;
        on_event(Event::MovedAside(&aside));
    }
    std::fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;
    if !opts.resume {
        run_dir::mark(&run_dir).map_err(io_err(&run_dir.join(run_dir::MARKER)))?;
    }
    if !opts.resume || !run_dir.join(run_dir::SPEC).exists() {
        write(&run_dir.join(run_dir::SPEC), &inputs.spec_bytes)?;
        let pre = serde_json::to_vec_pretty(&inputs.data.preprocessing).unwrap_or_default();
        write(&run_dir.join(run_dir::PREPROCESSING), &pre)?;
    }
    write_contributions(&run_dir, &inputs.admitted)?;
    Ok((run_dir, backend, initial))
}

/// Copy each source's contribution statement into the run directory, so that the run carries
/// the terms it was admitted under.
fn write_contributions(run_dir: &Path, admitted: &[Admitted]) -> Result<(), PipelineError> {
    for (i, a) in admitted.iter().enumerate() {
        if let Some(c) = &a.contribution {
            let path = run_dir.join(run_dir::contribution_file(i));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            write(&path, &c.bytes)?;
        }
    }
    Ok(())
}

/// Write (or on `--resume` re-check) the training commitment and, when asked, anchor it before
/// the first step. Returns the commitment file's bytes.
fn commit_phase(
    opts: &RunOptions,
    inputs: &Inputs,
    run_dir: &Path,
    backend: &device::Backend,
    initial: &[u8],
    commit_anchor: Option<&anchor::Options>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<u8>, PipelineError> {
    let file_ref = |d: &manifest::ResourceDescriptor| {
        let salted = d.digest.get(contribution::SALTED_DIGEST);
        FileRef {
            name: d.name.clone().unwrap_or_default(),
            blake3: salted
                .or(d.digest.get("blake3"))
                .cloned()
                .unwrap_or_default(),
            sha256: d.digest.get("sha256").cloned().unwrap_or_default(),
            salted: salted.is_some(),
        }
    };
    let spec = &inputs.spec;
    let commitment = Commitment {
        schema: transcript::COMMITMENT_SCHEMA.to_string(),
        name: spec.name.clone(),
        spec_blake3: spec.digest().to_hex().to_string(),
        seed: spec.seed,
        spec_file: file_ref(inputs.spec_dependency()),
        data: inputs.dependencies[..inputs.admitted.len()]
            .iter()
            .map(file_ref)
            .collect(),
        code: match &inputs.code {
            provenance::Code::Git(g) => Some(CodeRef {
                git_commit: g.commit.clone(),
                dirty: g.dirty,
                diff_blake3: g.diff_blake3.clone(),
            }),
            provenance::Code::None { .. } => None,
        },
        backend: backend.kind,
        kernels: Some(backend.kernels.clone()),
        initial_weights_blake3: hash::Digest::of(initial).hex(),
        committed_on: manifest::now_rfc3339(),
    };
    let commitment_path = run_dir.join(run_dir::COMMITMENT);
    let commitment_bytes = commit(&commitment_path, commitment, opts.resume)?;
    let receipt = match commit_anchor {
        Some(a) => {
            let mut progress = |m: &str| on_event(Event::Anchoring(m));
            let outcome = anchor::anchor(std::slice::from_ref(&commitment_path), a, &mut progress)?;
            outcome.anchored.into_iter().next().map(|(_, r)| r)
        }
        None => None,
    };
    on_event(Event::Committed {
        path: &commitment_path,
        receipt: receipt.as_ref(),
    });
    Ok(commitment_bytes)
}

/// The final files: `model.bpk`, `model.safetensors` and `summary.json`.
struct Exported {
    summary: Summary,
    safetensors: Vec<u8>,
    summary_json: Vec<u8>,
}

/// Evaluate the final model on the held-out split and write the final files.
fn export(
    run_dir: &Path,
    inputs: &Inputs,
    backend: &device::Backend,
    outcome: &train::TrainOutcome,
) -> Result<Exported, PipelineError> {
    let (spec, data) = (&inputs.spec, &inputs.data);
    let (part, held_out) = train::held_out(data);
    let metrics = train::evaluate(&outcome.model, part, data, &backend.device);
    write(&run_dir.join(run_dir::MODEL_BPK), &outcome.model_bytes)?;
    let st_path = run_dir.join(run_dir::MODEL_SAFETENSORS);
    let export_err = |message: String| PipelineError::Export {
        path: st_path.clone(),
        message,
    };
    let mut store = SafetensorsStore::from_bytes(None);
    outcome
        .model
        .save_into(&mut store)
        .map_err(|e| export_err(e.to_string()))?;
    let safetensors = store
        .get_bytes()
        .map_err(|e| e.to_string())
        .and_then(|b| canonical_safetensors(&b))
        .map_err(export_err)?;
    write(&st_path, &safetensors)?;

    let total_secs: f64 = outcome.epochs.iter().map(|e| e.seconds).sum();
    let summary = Summary {
        schema: "auditai.summary/v1",
        auditai_version: env!("CARGO_PKG_VERSION"),
        name: spec.name.clone(),
        spec_blake3: spec.digest().to_hex().to_string(),
        spec: spec.clone(),
        device: backend.kind,
        adapter: backend.adapter.clone(),
        rows: rows(data),
        held_out,
        metrics,
        classes: data.preprocessing.classes.clone(),
        epochs_run: outcome.epochs.len(),
        final_epoch: outcome.final_epoch,
        best_epoch: outcome.best_epoch,
        stopped_early: outcome.stopped_early,
        weights_blake3: hash::Digest::of(&outcome.model_bytes).hex(),
        safetensors_blake3: hash::Digest::of(&safetensors).hex(),
        samples_per_sec: (data.train.rows * outcome.epochs.len()) as f64 / total_secs.max(1e-9),
        epochs: outcome.epochs.clone(),
        credit: transcript::credit_totals(&outcome.transcript).map(|values| {
            inputs
                .dependencies
                .iter()
                .zip(values)
                .map(|(d, value)| SourceCredit {
                    source: d.name.clone().unwrap_or_default(),
                    value,
                })
                .collect()
        }),
    };
    let summary_json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    write(&run_dir.join(run_dir::SUMMARY), &summary_json)?;
    Ok(Exported {
        summary,
        safetensors,
        summary_json,
    })
}

/// The manifest as written.
struct Written {
    path: PathBuf,
    signers: Vec<String>,
    commitment_blake3: String,
    transcript_head: String,
}

/// The byproducts (spec copy, preprocessing, metrics, commitment, transcript and the whole
/// checkpoint tree) re-hashed from disk, and the transcript's blake3.
fn byproducts(
    run_dir: &Path,
    admitted: &[Admitted],
) -> Result<(Vec<manifest::ResourceDescriptor>, String), PipelineError> {
    let plain = hash::Hasher::new(None, true);
    let mut byproducts = Vec::new();
    let mut transcript_blake3 = String::new();
    for name in [
        run_dir::SPEC,
        run_dir::PREPROCESSING,
        run_dir::METRICS,
        run_dir::COMMITMENT,
        run_dir::TRANSCRIPT,
    ] {
        let d = plain.hash_file(&run_dir.join(name))?;
        if name == run_dir::TRANSCRIPT {
            transcript_blake3 = d.blake3.hex();
        }
        byproducts.push(manifest::ResourceDescriptor::file(name, None, &d));
    }
    for (i, a) in admitted.iter().enumerate() {
        if a.contribution.is_some() {
            let name = run_dir::contribution_file(i);
            let d = plain.hash_file(&run_dir.join(&name))?;
            byproducts.push(manifest::ResourceDescriptor::file(&name, None, &d));
        }
    }
    let tree = plain.hash_tree(&run_dir.join(run_dir::CHECKPOINTS))?;
    byproducts.push(manifest::ResourceDescriptor::tree(
        run_dir::CHECKPOINTS,
        &tree,
    ));
    Ok((byproducts, transcript_blake3))
}

/// Hash the byproducts, build the statement (see [`manifest::provenance_statement`]), sign it
/// and write `manifest.intoto.json`, last.
fn write_manifest(
    run_dir: &Path,
    inputs: Inputs,
    backend: &device::Backend,
    outcome: &train::TrainOutcome,
    exported: &Exported,
    commitment_bytes: &[u8],
    key: Option<&SecretKey>,
) -> Result<Written, PipelineError> {
    let subjects = vec![
        manifest::ResourceDescriptor::file(
            run_dir::MODEL_BPK,
            None,
            &hash::bytes_digest(&outcome.model_bytes),
        ),
        manifest::ResourceDescriptor::file(
            run_dir::MODEL_SAFETENSORS,
            None,
            &hash::bytes_digest(&exported.safetensors),
        ),
        manifest::ResourceDescriptor::file(
            run_dir::SUMMARY,
            None,
            &hash::bytes_digest(&exported.summary_json),
        ),
    ];
    let (byproducts, transcript_blake3) = byproducts(run_dir, &inputs.admitted)?;
    let commitment = manifest::CommitmentRef {
        path: run_dir::COMMITMENT.to_string(),
        blake3: hash::Digest::of(commitment_bytes).hex(),
    };
    let transcript = manifest::TranscriptRef {
        path: run_dir::TRANSCRIPT.to_string(),
        blake3: transcript_blake3,
        entries: outcome.transcript.len(),
        head: outcome.transcript.last().map_or_else(
            || hex::encode(transcript::chain_start(commitment_bytes)),
            |e| e.chain.clone(),
        ),
    };
    let (commitment_blake3, transcript_head) = (commitment.blake3.clone(), transcript.head.clone());
    let s = &exported.summary;
    let sources = source_records(&inputs, s);
    let mut dependencies = inputs.dependencies;
    dependencies.push(manifest::code_descriptor(&inputs.code));
    dependencies.push(manifest::toolchain_descriptor(
        &backend.kind.to_string(),
        &backend.adapter,
    ));
    let facts = manifest::RunFacts {
        spec: serde_json::to_value(&s.spec).unwrap_or_default(),
        spec_blake3: s.spec_blake3.clone(),
        backend: s.device.to_string(),
        adapter: s.adapter.clone(),
        held_out: s.held_out.to_string(),
        metrics: serde_json::to_value(s.metrics.without_intervals()).unwrap_or_default(),
        final_epoch: s.final_epoch,
        checkpoints: s
            .epochs
            .iter()
            .map(|e| manifest::CheckpointEntry {
                epoch: e.epoch,
                path: e.checkpoint.clone(),
                blake3: e.checkpoint_blake3.clone(),
                optimizer_blake3: e.optimizer_blake3.clone(),
                val_loss: e.val_loss,
            })
            .collect(),
        commitment,
        transcript,
        sources,
        jurisdiction: inputs.jurisdiction.clone(),
        started_on: inputs.started_on,
        skipped_rows: skipped_rows(&inputs.data),
    };
    let statement = manifest::provenance_statement(facts, subjects, dependencies, byproducts);
    let mut envelope = Envelope::new(sign::IN_TOTO_PAYLOAD_TYPE, &statement.to_payload());
    if let Some(k) = key {
        envelope.sign(k);
    }
    let path = run_dir.join(run_dir::MANIFEST);
    write(&path, &envelope.to_bytes())?;
    Ok(Written {
        path,
        signers: envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect(),
        commitment_blake3,
        transcript_head,
    })
}

/// Each source's record: its contribution's terms, rows per split and measured value.
fn source_records(inputs: &Inputs, summary: &Summary) -> Vec<manifest::SourceRecord> {
    if inputs.spec.data.sources.is_empty() {
        return Vec::new();
    }
    let d = &inputs.data;
    let per = |p: Option<&data::Part>| {
        p.map_or_else(|| vec![0; d.sources.len()], |p| d.rows_by_source(p))
    };
    let (train, val, test) = (
        per(Some(&d.train)),
        per(Some(&d.validation)),
        per(d.test.as_ref()),
    );
    inputs
        .admitted
        .iter()
        .enumerate()
        .map(|(i, a)| manifest::SourceRecord {
            name: inputs.dependencies[i].name.clone().unwrap_or_default(),
            commitment: a.commitment.clone(),
            contribution: a
                .contribution
                .as_ref()
                .map(|c| c.record(&run_dir::contribution_file(i))),
            rows: manifest::SourceRows {
                total: d.sources[i].records.len(),
                train: train[i],
                validation: val[i],
                test: test[i],
            },
            credit: summary.credit.as_ref().map(|c| c[i].value),
        })
        .collect()
}

/// The rows training left out, as the manifest records them (the first
/// [`manifest::MAX_SKIPPED_LISTED`] one by one).
fn skipped_rows(data: &Prepared) -> Option<manifest::SkippedRows> {
    (!data.skipped.is_empty()).then(|| manifest::SkippedRows {
        count: data.skipped.len(),
        rows: data
            .skipped
            .iter()
            .take(manifest::MAX_SKIPPED_LISTED)
            .map(|b| manifest::SkippedRow {
                line: b.line,
                why: b.why.clone(),
            })
            .collect(),
    })
}

/// Rewrite a safetensors header with its JSON keys sorted.
///
/// burn writes the `__metadata__` map from a hash map, so its key order (and the file's digest)
/// changes from run to run. Sorting the keys makes the bytes a function of the weights alone; the
/// tensor data and its offsets are untouched.
fn canonical_safetensors(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "malformed safetensors header".to_string();
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad())?;
    let header = bytes.get(8..8 + len).ok_or_else(bad)?;
    // serde_json's map is a BTreeMap: serialising sorts every object's keys.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    // Pad with spaces to keep the data section 8-byte aligned, as the format recommends.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

/// Write the commitment, or on `--resume` keep the one the run started with after checking that
/// nothing it pins has changed. Returns the commitment file's bytes.
fn commit(path: &Path, fresh: Commitment, resume: bool) -> Result<Vec<u8>, PipelineError> {
    if resume && path.exists() {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let kept: Commitment =
            serde_json::from_slice(&bytes).map_err(|e| PipelineError::Resume {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                message: format!("{} is not a training commitment: {e}", path.display()),
            })?;
        let changed = [
            ("spec", !hash::hex_eq(&kept.spec_blake3, &fresh.spec_blake3)),
            ("data", kept.data != fresh.data),
            ("backend", kept.backend != fresh.backend),
            (
                "kernel family",
                kept.kernels.is_some() && kept.kernels != fresh.kernels,
            ),
            (
                "initial-weights digest",
                !hash::hex_eq(&kept.initial_weights_blake3, &fresh.initial_weights_blake3),
            ),
        ];
        if let Some((what, _)) = changed.iter().find(|(_, c)| *c) {
            return Err(PipelineError::Resume {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                message: format!(
                    "the {what} differs from the run's training commitment; start a new run"
                ),
            });
        }
        return Ok(bytes);
    }
    let bytes = fresh.to_bytes();
    write(path, &bytes)?;
    Ok(bytes)
}

fn rows(data: &Prepared) -> Rows {
    Rows {
        total: data.rows,
        train: data.train.rows,
        validation: data.validation.rows,
        test: data.test.as_ref().map_or(0, |t| t.rows),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    fsio::write_atomic(path, bytes).map_err(io_err(path))
}

fn occupied(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Check the run directory against `--resume` / `--force` before any work is done.
fn check_dir(dir: &Path, opts: &RunOptions) -> Result<(), PipelineError> {
    let occupied = occupied(dir);
    if opts.resume {
        if !occupied {
            return Err(PipelineError::Resume {
                dir: dir.to_path_buf(),
                message: "it holds no run".into(),
            });
        }
        if !run_dir::is_run_dir(dir) {
            return Err(PipelineError::Resume {
                dir: dir.to_path_buf(),
                message: format!(
                    "it is not an auditai run directory (no valid {} marker)",
                    run_dir::MARKER
                ),
            });
        }
        if dir.join(run_dir::MANIFEST).exists() {
            return Err(PipelineError::Resume {
                dir: dir.to_path_buf(),
                message: format!("the run is already complete ({} exists)", run_dir::MANIFEST),
            });
        }
    } else if occupied {
        if !opts.force {
            return Err(PipelineError::Exists {
                dir: dir.to_path_buf(),
            });
        }
        // --force moves a previous run aside, never a directory that is not one.
        run_dir::check_replaceable(dir, &opts.spec)?;
    }
    Ok(())
}
