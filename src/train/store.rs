//! The checkpoint store: per-epoch state files (written last, so their presence marks a checkpoint
//! complete), digest-checked reads of checkpoints, the completed epochs of a run directory for
//! `--resume`, the transcript rewritten from the states, and pruning under `checkpoints: last`
//! (only names `run_dir`'s scheme produces). Knows no burn types; file names are `run_dir`'s.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BackendKind, EpochRecord, Session, Tracker, TrainError, io_err};
use crate::fsio;
use crate::run_dir;
use crate::transcript::{self, Entry};

/// The state saved next to each checkpoint: everything needed to continue after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub(super) schema: String,
    pub(super) spec_blake3: String,
    pub(super) backend: BackendKind,
    pub(super) record: EpochRecord,
    #[serde(flatten)]
    pub(super) tracker: Tracker,
    /// The epoch's transcript entries.
    pub(super) transcript: Vec<Entry>,
}

pub(super) const STATE_SCHEMA: &str = "auditai.checkpoint/v2";

pub(super) fn read_verified(path: &Path, blake3_hex: &str) -> Result<Vec<u8>, TrainError> {
    crate::hash::read_pinned(path, blake3_hex, u64::MAX).map_err(|e| match e {
        crate::hash::PinnedError::Read(source) => io_err(path)(source),
        crate::hash::PinnedError::Changed { actual, expected } => TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("blake3 is {actual}, the checkpoint state records {expected}"),
        },
    })
}

pub(super) fn read_state(path: &Path) -> Result<CheckpointState, TrainError> {
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(io_err(path))?;
    parse_state(&bytes, path)
}

/// Parse a checkpoint state file's bytes (`path` names it in errors).
pub(crate) fn parse_state(bytes: &[u8], path: &Path) -> Result<CheckpointState, TrainError> {
    serde_json::from_slice(bytes).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("not a checkpoint state: {e}"),
    })
}

/// Completed epochs in a run directory: every `epoch-NNNN.json` state, in order.
pub(super) fn completed_states(s: &Session<'_>) -> Result<Vec<CheckpointState>, TrainError> {
    let mut states = Vec::new();
    for epoch in 1..=s.spec.training.epochs {
        let [_, _, json] = run_dir::epoch_files(s.dir, epoch);
        if !json.exists() {
            break;
        }
        let state = read_state(&json)?;
        if state.schema != STATE_SCHEMA || state.record.epoch != epoch {
            return Err(TrainError::Checkpoint {
                path: json,
                message: format!("expected a {STATE_SCHEMA} state for epoch {epoch}"),
            });
        }
        states.push(state);
    }
    Ok(states)
}

/// Under `checkpoints: last`, delete the weights and optimizer state of epochs (and their step
/// checkpoints) that are neither the latest nor the best. State files stay: they are small and
/// carry the metrics history and the transcript.
pub(super) fn prune(dir: &Path, states: &[CheckpointState], best: usize) -> Result<(), TrainError> {
    let latest = states.last().map_or(0, |st| st.record.epoch);
    for st in states {
        let epoch = st.record.epoch;
        for (k, e) in st.transcript.iter().enumerate() {
            let is_epoch_file = k + 1 == st.transcript.len();
            if epoch == latest || (epoch == best && is_epoch_file) {
                continue;
            }
            // Only names auditai's own scheme produces, inside the run directory: never a path
            // read from a state file, which a hostile run directory controls.
            for name in run_dir::segment_files(epoch, e.body.steps[1], is_epoch_file) {
                let p = dir.join(name);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&p)(e)),
                }
            }
        }
    }
    Ok(())
}

/// Rewrite `transcript.jsonl` from the checkpoint states.
pub(super) fn write_transcript(dir: &Path, states: &[CheckpointState]) -> Result<(), TrainError> {
    let entries: Vec<Entry> = states.iter().flat_map(|st| st.transcript.clone()).collect();
    let path = dir.join(run_dir::TRANSCRIPT);
    fsio::write_atomic(&path, transcript::to_jsonl(&entries).as_bytes()).map_err(io_err(&path))
}
