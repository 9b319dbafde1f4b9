//! Recording a pipeline run: the signed manifest (into `history/` always, and as the run
//! directory's `manifest.intoto.json` when every stage ran or was reused), then the lock entries
//! of the stages that completed, each pointing at that manifest.
//!
//! A previous `manifest.intoto.json` is renamed onto its own copy in `history/` (with its
//! receipts) before anything replaces it: nothing auditai recorded is lost, and a manifest whose
//! outs were just rewritten never stays in place looking current.

use std::collections::BTreeMap;
use std::path::Path;

use crate::hash::{self, Hasher};
use crate::manifest::{self, PipelineExtension, ProducedBy, ResourceDescriptor, Statement};
use crate::sign::{self, Envelope, SecretKey};

use super::exec::Done;
use super::{Event, HISTORY, Outcome, PipelineReport, Project, StageError, StageReport, io_err};

pub(super) fn finish(
    p: &Project,
    selection: &[usize],
    run_dir: &Path,
    results: Vec<Done>,
    key: Option<&SecretKey>,
    cache: Option<&super::cache::RunCache>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<PipelineReport, StageError> {
    let interrupted = results
        .iter()
        .any(|d| matches!(d.outcome, Outcome::Interrupted));
    let ok = results.iter().all(|d| {
        matches!(
            d.outcome,
            Outcome::Ran { .. } | Outcome::Reused | Outcome::Restored { .. }
        )
    });
    let complete = ok && selection.len() == p.spec.stages.len();
    let ran = results.iter().any(|d| d.locked.is_some());
    let current = run_dir.join(crate::run_dir::MANIFEST);
    let mut report = PipelineReport {
        name: p.spec.name.clone(),
        run_dir: run_dir.to_path_buf(),
        manifest: None,
        history_manifest: None,
        unchanged: false,
        signers: Vec::new(),
        lock: p.lock_path.clone(),
        stages: results
            .iter()
            .map(|d| StageReport {
                stage: p.spec.stages[d.index].name.value.clone(),
                kind: super::stale::kind_of(&p.spec.stages[d.index]),
                outcome: d.outcome.clone(),
                metrics: d
                    .record
                    .iter()
                    .flat_map(|r| &r.metrics)
                    .map(|(k, v)| (spec_relative(&p.graph.base, k), v.clone()))
                    .collect(),
            })
            .collect(),
        ok,
        interrupted,
    };
    if !ran {
        if complete && current_matches(&current, &results) {
            report.manifest = Some(current);
            report.unchanged = true;
            return Ok(report);
        }
        if !complete {
            return Ok(report);
        }
    }
    retire(&current, run_dir)?;
    let statement = statement(p, run_dir, &results, complete)?;
    let mut envelope = Envelope::new(sign::IN_TOTO_PAYLOAD_TYPE, &statement.to_payload());
    if let Some(k) = key {
        envelope.sign(k);
    }
    let bytes = envelope.to_bytes();
    let digest = hash::Digest::of(&bytes).hex();
    let history = run_dir.join(HISTORY).join(format!("{digest}.intoto.json"));
    crate::fsio::write_atomic(&history, &bytes).map_err(io_err(&history))?;
    if complete {
        crate::fsio::write_atomic(&current, &bytes).map_err(io_err(&current))?;
        report.manifest = Some(current);
    } else {
        on_event(Event::Notice(&format!(
            "the pipeline did not complete: the stages that did are recorded in {} and {}",
            p.lock_path.display(),
            history.display()
        )));
    }
    let by = ProducedBy {
        manifest: p
            .graph
            .relative(&history)
            .unwrap_or_else(|| history.display().to_string()),
        blake3: digest,
    };
    write_lock(p, results, &by, cache, on_event)?;
    report.history_manifest = Some(history);
    report.signers = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    Ok(report)
}

/// The lock with the completed stages' entries (each pointing at the manifest `by`, or, for a
/// stage restored from the run cache, at the manifest that recorded it running), and each stage
/// that ran saved in the run cache.
fn write_lock(
    p: &Project,
    results: Vec<Done>,
    by: &ProducedBy,
    cache: Option<&super::cache::RunCache>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<(), StageError> {
    let mut lock = p.lock.clone();
    lock.schema = super::lock::LOCK_SCHEMA.to_string();
    // Entries of stages the spec no longer has are dropped, as `dvc.lock` drops them.
    lock.stages.retain(|name, _| p.spec.stage(name).is_some());
    for d in results {
        let Some(mut entry) = d.locked else {
            continue;
        };
        // A stage restored from the run cache keeps the manifest that recorded it running.
        if matches!(d.outcome, Outcome::Ran { .. }) {
            entry.produced_by = by.clone();
            let key = super::cache::key(&entry, &entry.deps);
            let saved = cache.map_or(Ok(()), |c| c.save(&key, &entry));
            if let Err(e) = saved {
                on_event(Event::Notice(&format!(
                    "stage {}: not saved in the run cache: {e}",
                    p.spec.stages[d.index].name.value
                )));
            }
        }
        lock.stages
            .insert(p.spec.stages[d.index].name.value.clone(), entry);
    }
    lock.write(&p.lock_path)?;
    Ok(())
}

/// A root-relative path shown relative to the spec's directory when it lies below it.
fn spec_relative(base: &str, rel: &str) -> String {
    if base == "." {
        return rel.to_string();
    }
    rel.strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(rel)
        .to_string()
}

/// Whether the run directory's manifest already records exactly these stages and outs.
fn current_matches(current: &Path, results: &[Done]) -> bool {
    let Ok(bytes) = crate::fsio::read_bounded(current, crate::fsio::MAX_DOCUMENT) else {
        return false;
    };
    let Some(ext) = manifest::open(&bytes)
        .ok()
        .and_then(|o| o.statement.predicate.pipeline)
    else {
        return false;
    };
    let outs = |descs: &[ResourceDescriptor]| -> Vec<(Option<String>, Option<String>)> {
        descs
            .iter()
            .map(|d| (d.name.clone(), d.digest.get("blake3").cloned()))
            .collect()
    };
    ext.complete
        && ext.stages.len() == results.len()
        && results.iter().all(|d| {
            d.record.as_ref().is_some_and(|r| {
                ext.stages
                    .iter()
                    .any(|s| s.name == r.name && outs(&s.outs) == outs(&r.outs))
            })
        })
}

/// Rename a previous manifest (and its receipts) onto its copy in `history/`.
fn retire(current: &Path, run_dir: &Path) -> Result<(), StageError> {
    let Ok(bytes) = crate::fsio::read_bounded(current, crate::fsio::MAX_DOCUMENT) else {
        return Ok(());
    };
    let target = run_dir
        .join(HISTORY)
        .join(format!("{}.intoto.json", hash::Digest::of(&bytes).hex()));
    for (from, to) in [
        (
            crate::anchor::receipt_path(current),
            crate::anchor::receipt_path(&target),
        ),
        (
            crate::anchor::ots_path(current),
            crate::anchor::ots_path(&target),
        ),
        (current.to_path_buf(), target.clone()),
    ] {
        if from.exists() {
            std::fs::rename(&from, &to).map_err(io_err(&from))?;
        }
    }
    let _ = crate::fsio::sync_dir(run_dir);
    Ok(())
}

/// The statement's subjects (final outs and marked subjects) and external deps (deps no stage
/// produces). A stage that ran recorded its deps and outs with sha256 already; a reused one only
/// with blake3 (from the lock), so those are hashed here, once.
fn subjects_and_external(
    p: &Project,
    results: &[Done],
) -> Result<(Vec<ResourceDescriptor>, Vec<ResourceDescriptor>), StageError> {
    let hasher = Hasher::new(None, true);
    let recorded =
        |descs: &[ResourceDescriptor], rel: &str| -> Result<ResourceDescriptor, StageError> {
            match descs
                .iter()
                .find(|x| x.name.as_deref() == Some(rel) && x.digest.contains_key("sha256"))
            {
                Some(x) => Ok(x.clone()),
                None => super::describe(&hasher, &p.graph.path(rel), rel).map_err(|message| {
                    StageError::Io {
                        path: p.graph.path(rel),
                        source: std::io::Error::other(message),
                    }
                }),
            }
        };
    let mut subject = Vec::new();
    let mut external: Vec<ResourceDescriptor> = Vec::new();
    for d in results {
        let Some(rec) = &d.record else { continue };
        let stage = &p.spec.stages[d.index];
        let node = &p.graph.nodes[d.index];
        for (k, out) in node.outs.iter().enumerate() {
            if stage.subjects.contains(&stage.outs[k].value) || p.graph.is_final(d.index) {
                subject.push(recorded(&rec.outs, out)?);
            }
        }
        for dep in &node.deps {
            let produced = p.graph.nodes.iter().any(|n| {
                n.outs
                    .iter()
                    .any(|o| super::graph::within(dep, o) || super::graph::within(o, dep))
            });
            if !produced && !external.iter().any(|e| e.name.as_deref() == Some(dep)) {
                let mut desc = recorded(&rec.deps, dep)?;
                desc.uri = Some(format!("file:{dep}"));
                external.push(desc);
            }
        }
    }
    Ok((subject, external))
}

/// The pipeline's statement: subjects are the final outs (and marked subjects), dependencies the
/// spec, the external deps, the code and the toolchain; byproducts the logs of stages that ran.
fn statement(
    p: &Project,
    run_dir: &Path,
    results: &[Done],
    complete: bool,
) -> Result<Statement, StageError> {
    let records: Vec<manifest::StageRecord> =
        results.iter().filter_map(|d| d.record.clone()).collect();
    let (subject, external) = subjects_and_external(p, results)?;
    let spec_rel = p
        .graph
        .relative(&p.spec.source)
        .unwrap_or_else(|| p.spec.source.display().to_string());
    let mut deps = vec![ResourceDescriptor::file(
        &spec_rel,
        Some(format!("file:{spec_rel}")),
        &hash::bytes_digest(&p.spec_bytes),
    )];
    deps.extend(external);
    let code = crate::provenance::code(p.spec.base());
    deps.push(manifest::code_descriptor(&code));
    deps.push(manifest::toolchain_descriptor("none", "none"));
    let byproducts = records
        .iter()
        .flat_map(|r| r.logs.iter().cloned())
        .collect();
    let started = records
        .iter()
        .filter_map(|r| r.started_on.clone())
        .min()
        .unwrap_or_else(manifest::now_rfc3339);
    let run_dir_rel = p.graph.relative(run_dir);
    let t = crate::provenance::toolchain();
    let statement = Statement {
        statement_type: manifest::STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: manifest::PREDICATE_TYPE.to_string(),
        predicate: manifest::Provenance {
            build_definition: manifest::BuildDefinition {
                build_type: manifest::PIPELINE_BUILD_TYPE.to_string(),
                external_parameters: serde_json::json!({
                    "spec": spec_rel,
                    "stages": records.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                }),
                internal_parameters: serde_json::json!({}),
                resolved_dependencies: deps,
            },
            run_details: manifest::RunDetails {
                builder: manifest::Builder {
                    id: manifest::BUILDER_ID.to_string(),
                    version: BTreeMap::from([("auditai".to_string(), t.auditai)]),
                },
                metadata: manifest::Metadata {
                    invocation_id: manifest::invocation_id(),
                    started_on: started,
                    finished_on: manifest::now_rfc3339(),
                },
                byproducts,
            },
            auditai: None,
            pipeline: Some(PipelineExtension {
                schema: manifest::PIPELINE_SCHEMA.to_string(),
                name: p.spec.name.clone(),
                spec: spec_rel,
                run_dir: run_dir_rel,
                complete,
                stages: records,
            }),
        },
    };
    Ok(statement)
}
