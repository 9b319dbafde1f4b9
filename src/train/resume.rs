//! Resuming: the last complete checkpoint of an interrupted run, digest-checked, and the model
//! and optimizer state it holds.

use super::*;

pub(super) struct Resumed {
    pub(super) model: Net,
    pub(super) optim: ModuleOptimizer,
    pub(super) states: Vec<CheckpointState>,
}

pub(super) fn load_weights(net: Net, path: &Path, blake3_hex: &str) -> Result<Net, TrainError> {
    let bytes = read_verified(path, blake3_hex)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(net.load_record(record))
}

pub(super) fn resume(s: &Session<'_>, fresh: Net) -> Result<Option<Resumed>, TrainError> {
    let states = completed_states(s)?;
    let Some(last) = states.last() else {
        return Ok(None);
    };
    let spec_hex = s.spec.digest().to_hex().to_string();
    if !crate::hash::hex_eq(&last.spec_blake3, &spec_hex) {
        return Err(TrainError::Resume {
            dir: s.dir.to_path_buf(),
            message: "the spec changed since these checkpoints were written (its digest differs); start a new run".into(),
        });
    }
    if last.backend != s.backend.kind {
        return Err(TrainError::BackendChanged {
            dir: s.dir.to_path_buf(),
            trained: last.backend,
            now: s.backend.kind,
        });
    }
    let entries: Vec<Entry> = states.iter().flat_map(|st| st.transcript.clone()).collect();
    if let Err(broken) = transcript::check_chain(&s.commitment, &entries) {
        return Err(TrainError::Resume {
            dir: s.dir.to_path_buf(),
            message: format!(
                "the checkpoints' transcript does not continue the run's commitment: {}",
                broken.message
            ),
        });
    }
    let [weights, optim_path, _] = run_dir::epoch_files(s.dir, last.record.epoch);
    let model = load_weights(fresh, &weights, &last.record.checkpoint_blake3)?;
    let optim_bytes = read_verified(&optim_path, &last.record.optimizer_blake3)?;
    let optim = optimizer(s.spec)
        .from_bytes(Bytes::from_bytes_vec(optim_bytes))
        .map_err(|e| TrainError::Checkpoint {
            path: optim_path.clone(),
            message: e.to_string(),
        })?;
    Ok(Some(Resumed {
        model,
        optim,
        states,
    }))
}
