//! Training: the burn model, a deterministic training loop, per-epoch checkpoints and resume.
//!
//! Determinism rules (see README, "Reproducibility"): initial weights are drawn on the CPU from the
//! seed and then moved to the training device; parameter ids are renumbered canonically so record
//! bytes depend only on the weights; the batch order of epoch `e` is a documented permutation of
//! `(seed, e)`; dropout masks are a documented function of `(seed, e, step, layer)`
//! ([`model::dropout_mask`]), independent of the backend, so a resumed run draws exactly what an
//! uninterrupted one would and any segment of steps can be replayed on its own ([`replay`]).
//! This module writes checkpoints and transcript entries into the run directory it is given,
//! reports progress through a callback and never prints, signs or hashes files on disk.

mod credit;
pub mod device;
pub(crate) mod fit;
mod infer;
pub mod metrics;
pub mod model;
mod optim;
mod replay;
mod resume;
mod store;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{
    GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::data::{Part, Prepared, Targets};
use crate::fsio;
use crate::run_dir;
use crate::shuffle;
use crate::spec::{KeepCheckpoints, OptimizerKind, Spec, TrainingSpec};
use crate::transcript::{self, Entry};
#[cfg(test)]
pub(crate) use store::parse_state;
use store::{
    CheckpointState, STATE_SCHEMA, completed_states, prune, read_verified, write_transcript,
};

use credit::Credit;
pub use device::{Backend, BackendKind};
pub use fit::train;
use infer::{DeviceSplit, evaluate_chunks, upload, upload_chunks, validation_metric};
pub use infer::{evaluate, infer, load_net, validation_loss};
pub use metrics::Metrics;
pub use model::Net;
pub use replay::replay;
use resume::resume;

/// Errors from training, checkpointing and resuming.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file in the run directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Training was stopped by SIGINT or SIGTERM before it finished; nothing of the stopped
    /// segment was written, and the run has no manifest.
    #[error("training was cancelled")]
    Cancelled,
    /// A checkpoint is corrupt, does not match its digest, or belongs to another spec.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--resume` cannot continue this run directory.
    #[error("cannot resume {}: {message}", dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// `--resume` on another backend than the one that trained.
    #[error(
        "cannot resume {}: the run trained on {trained} and cannot continue bitwise on {now}",
        dir.display()
    )]
    BackendChanged {
        /// The run directory.
        dir: PathBuf,
        /// The backend that trained.
        trained: BackendKind,
        /// The backend asked for now.
        now: BackendKind,
    },
    /// The loss became NaN or infinite.
    #[error(
        "training diverged in epoch {epoch}: the training loss is {loss}; lower the learning rate"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// The loss value.
        loss: f64,
    },
    /// burn could not serialise or load a record.
    #[error("model record: {0}")]
    Record(String),
    /// The model the spec describes for this data is too large to build.
    #[error(
        "{} with {features} input features has {}, over the limit of {} parameters",
        spec.display(),
        count.map_or("more parameters than can be counted".to_string(), |c| format!("{c} parameters")),
        model::MAX_PARAMETERS
    )]
    TooLarge {
        /// The spec file.
        spec: PathBuf,
        /// Input features (columns of the data).
        features: usize,
        /// The parameter count, when it fits a `usize`.
        count: Option<usize>,
    },
}

/// One epoch's results, as written to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used in this epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// Validation accuracy (classification) or R² (regression).
    pub val_metric: f64,
    /// Which metric `val_metric` is: `accuracy` or `r2`.
    pub metric: String,
    /// Wall-clock seconds for the epoch's training steps.
    pub seconds: f64,
    /// Training samples per second in this epoch.
    pub samples_per_sec: f64,
    /// Checkpoint path relative to the run directory.
    pub checkpoint: String,
    /// blake3 of the checkpoint's burnpack bytes.
    pub checkpoint_blake3: String,
    /// blake3 of the optimizer state's burnpack bytes.
    pub optimizer_blake3: String,
}

/// Early-stopping bookkeeping: the best epoch so far and whether training stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    /// The epoch with the lowest validation loss (0 before the first epoch).
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
    /// Whether early stopping ends training after the latest epoch.
    pub stop: bool,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            best_epoch: 0,
            best_val_loss: f64::INFINITY,
            bad_epochs: 0,
            stop: false,
        }
    }
}

impl Tracker {
    /// Account for 1-based `epoch` ending with `val_loss`.
    pub fn after_epoch(&mut self, t: &TrainingSpec, epoch: usize, val_loss: f64) {
        if val_loss < self.best_val_loss - t.early_stopping.map_or(0.0, |e| e.min_delta) {
            self.best_val_loss = val_loss;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if let Some(es) = t.early_stopping {
            self.stop = self.bad_epochs >= es.patience;
        }
    }

    /// The epoch whose weights are the final model when training ended after `last`.
    pub fn final_epoch(&self, t: &TrainingSpec, last: usize) -> usize {
        let restore_best = t.early_stopping.is_some_and(|e| e.restore_best);
        if restore_best && self.best_epoch > 0 {
            self.best_epoch
        } else {
            last
        }
    }
}

/// Progress events for the caller's progress display.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Continuing after a checkpoint.
    Resumed {
        /// The last completed epoch.
        epoch: usize,
    },
    /// An epoch starts.
    EpochStart {
        /// 1-based epoch.
        epoch: usize,
        /// Total epochs planned.
        epochs: usize,
        /// Batches in this epoch.
        batches: usize,
    },
    /// A batch finished.
    Batch,
    /// An epoch finished and its checkpoint is on disk.
    EpochEnd(&'a EpochRecord),
}

/// The result of a training run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The final model (inference mode, on the training device).
    pub model: Net,
    /// The final model's burnpack bytes (what `model.bpk` holds).
    pub model_bytes: Vec<u8>,
    /// Every epoch's record, including epochs completed before a resume.
    pub epochs: Vec<EpochRecord>,
    /// The epoch whose weights are the final model.
    pub final_epoch: usize,
    /// The epoch with the lowest validation loss.
    pub best_epoch: usize,
    /// Whether early stopping ended training before `training.epochs`.
    pub stopped_early: bool,
    /// The epoch a resumed run continued after.
    pub resumed_from: Option<usize>,
    /// The whole transcript, in order.
    pub transcript: Vec<Entry>,
}

/// What to train, where, and into which run directory.
pub struct Session<'a> {
    /// The validated spec.
    pub spec: &'a Spec,
    /// The prepared data.
    pub data: &'a Prepared,
    /// The device.
    pub backend: &'a Backend,
    /// The run directory (must exist).
    pub dir: &'a Path,
    /// `h_0`: the digest of the run's commitment, where the transcript chain starts.
    pub commitment: [u8; 32],
}

/// Initial weights: drawn on the CPU from the seed, with canonical parameter ids.
pub fn initial_model(spec: &Spec, data: &Prepared) -> Net {
    let cpu = Device::flex();
    cpu.seed(spec.seed);
    model::CanonicalIds::apply(Net::new(spec, data.features(), data.outputs(), &cpu))
}

/// The burnpack bytes of the initial weights (what the commitment pins).
pub fn initial_weights(spec: &Spec, data: &Prepared) -> Result<Vec<u8>, TrainError> {
    // Counted with checked arithmetic before anything is allocated: a spec (or a run directory
    // someone sent) must not be able to ask for more memory than exists.
    let count = model::parameter_count(spec, data.features(), data.outputs());
    if count.is_none_or(|c| c > model::MAX_PARAMETERS) {
        return Err(TrainError::TooLarge {
            spec: spec.source.clone(),
            features: data.features(),
            count,
        });
    }
    Ok(initial_model(spec, data)
        .into_record()
        .into_bytes()
        .map_err(record_err)?
        .to_vec())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn record_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Record(e.to_string())
}

/// The spec's optimizer. Adam and AdamW are fused on the CPU ([`optim`]), bitwise burn's.
fn optimizer(spec: &Spec) -> ModuleOptimizer {
    let o = &spec.training.optimizer;
    let moments = optim::Moments {
        beta_1: o.betas[0] as f32,
        beta_2: o.betas[1] as f32,
        epsilon: o.epsilon as f32,
    };
    let penalty = (o.weight_decay > 0.0).then_some(o.weight_decay as f32);
    match o.kind {
        OptimizerKind::Adam => optim::FusedAdam::new(moments, penalty).into(),
        OptimizerKind::Adamw => optim::FusedAdamW::new(moments, o.weight_decay as f32).into(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(penalty.map(WeightDecayConfig::new))
            .with_momentum((o.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(o.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(o.nesterov)
            }))
            .init(),
    }
}

/// The task's held-out split: the test part, or validation when `split.test` is 0.
pub fn held_out(data: &Prepared) -> (&Part, &'static str) {
    match &data.test {
        Some(t) => (t, "test"),
        None => (&data.validation, "validation"),
    }
}
