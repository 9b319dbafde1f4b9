//! A model's data lineage from a pipeline manifest: the training stage's run (opened through the
//! gate, pinned by the digest the pipeline recorded) and the stages that made its training file,
//! back to the raw files no stage produced, each with its command, logs and digests.

use serde::Serialize;

use super::ExportError;
use crate::manifest::{ResourceDescriptor, StageRecord};
use crate::trust::{Pin, Required, RunKind, SignedRun};

/// One stage on the way from raw data to the training file.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The stage.
    pub stage: String,
    /// Its command line (command stages).
    pub cmd: Option<String>,
    /// What it read: root-relative paths with blake3.
    pub inputs: Vec<(String, String)>,
    /// What it wrote: root-relative paths with blake3.
    pub outputs: Vec<(String, String)>,
    /// Its logs (run-directory relative) with blake3.
    pub logs: Vec<(String, String)>,
    /// Inputs no stage produced: the raw files.
    pub raw: Vec<String>,
}

/// The training stage's run named by the pipeline manifest `pipeline` (the stage `stage`, or
/// its only training stage) and the lineage of its training data.
pub fn training_run(
    pipeline: &SignedRun,
    stage: Option<&str>,
    required: Required<'_>,
) -> Result<(SignedRun, Vec<Step>), ExportError> {
    let ext = pipeline.pipeline().ok_or_else(|| ExportError::Run {
        path: pipeline.path().to_path_buf(),
        message: "not a pipeline manifest".into(),
    })?;
    let training: Vec<&StageRecord> = ext
        .stages
        .iter()
        .filter(|s| s.kind == "train" && stage.is_none_or(|n| n == s.name))
        .collect();
    let rec = match training.as_slice() {
        [one] => *one,
        [] => {
            return Err(ExportError::Run {
                path: pipeline.path().to_path_buf(),
                message: match stage {
                    Some(n) => format!("the pipeline records no training stage `{n}`"),
                    None => "the pipeline records no training stage".into(),
                },
            });
        }
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
            return Err(ExportError::Run {
                path: pipeline.path().to_path_buf(),
                message: format!(
                    "the pipeline has several training stages ({}): name one with --stage",
                    names.join(", ")
                ),
            });
        }
    };
    let root = crate::run_dir::project_root(pipeline.path(), ext.run_dir.as_deref());
    let m = rec.manifest.as_ref().ok_or_else(|| ExportError::Run {
        path: pipeline.path().to_path_buf(),
        message: format!("stage `{}` records no run manifest", rec.name),
    })?;
    let name = m.name.as_deref().unwrap_or_default();
    let path = crate::fsio::safe_join(&root, name).map_err(|e| ExportError::Run {
        path: pipeline.path().to_path_buf(),
        message: e.to_string(),
    })?;
    let blake3 = m.digest.get("blake3").map(String::as_str).unwrap_or("");
    let run = SignedRun::open_pinned(&path, Pin::Blake3(blake3), RunKind::Training, required)
        .map_err(ExportError::from)?;
    Ok((run, steps(&ext.stages, rec)))
}

/// The stages that produced `target`'s deps, recursively, in run order.
fn steps(stages: &[StageRecord], target: &StageRecord) -> Vec<Step> {
    let produced_by = |path: &str| {
        stages
            .iter()
            .find(|s| s.outs.iter().any(|o| o.name.as_deref() == Some(path)))
    };
    let mut out: Vec<Step> = Vec::new();
    let mut queue: Vec<&StageRecord> = target
        .deps
        .iter()
        .filter_map(|d| produced_by(d.name.as_deref().unwrap_or("")))
        .collect();
    while let Some(s) = queue.pop() {
        if out.iter().any(|x| x.stage == s.name) {
            continue;
        }
        let mut raw = Vec::new();
        for d in &s.deps {
            let n = d.name.as_deref().unwrap_or("");
            match produced_by(n) {
                Some(up) if up.name != s.name => queue.push(up),
                _ => raw.push(n.to_string()),
            }
        }
        out.push(Step {
            stage: s.name.clone(),
            cmd: s.cmd.clone(),
            inputs: digests(&s.deps),
            outputs: digests(&s.outs),
            logs: digests(&s.logs),
            raw,
        });
    }
    let order: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    out.sort_by_key(|s| order.iter().position(|n| *n == s.stage));
    out
}

fn digests(d: &[ResourceDescriptor]) -> Vec<(String, String)> {
    d.iter()
        .map(|x| {
            (
                x.name.clone().unwrap_or_default(),
                x.digest.get("blake3").cloned().unwrap_or_default(),
            )
        })
        .collect()
}
