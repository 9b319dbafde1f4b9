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

pub mod device;
pub mod metrics;
pub mod model;
mod store;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig,
    momentum::MomentumConfig,
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

pub use device::{Backend, BackendKind};
pub use metrics::Metrics;
pub use model::Net;

/// Rows per forward pass when evaluating (memory bound only; results do not depend on it).
const EVAL_CHUNK: usize = 2048;

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

/// The dropout key of step `step` (0-based) of 0-based `epoch`:
/// `seed (LE) ‖ "dropout" ‖ epoch (LE) ‖ step (LE)`.
fn dropout_key(seed: u64, epoch: usize, step: usize) -> Vec<u8> {
    let mut key = shuffle::key(seed, "dropout", epoch as u64);
    key.extend_from_slice(&(step as u64).to_le_bytes());
    key
}

/// Which steps to train: steps `range` of 0-based `epoch`, whose row order is `order`, at
/// learning rate `lr`.
struct Steps<'a> {
    spec: &'a Spec,
    split: &'a DeviceSplit,
    order: &'a [usize],
    epoch: usize,
    range: std::ops::Range<usize>,
    lr: f64,
}

/// Train `steps` and return the model; adds each batch's loss (times its size) to `loss_sum`.
fn train_steps(
    steps: Steps<'_>,
    mut model: Net,
    optim: &mut ModuleOptimizer,
    loss_sum: &mut Tensor<1>,
    on_step: &mut dyn FnMut(),
) -> Net {
    let Steps {
        spec,
        split,
        order,
        epoch,
        range,
        lr,
    } = steps;
    let ad = split.x.device();
    let bs = spec.training.batch_size;
    for step in range {
        let chunk = &order[step * bs..((step + 1) * bs).min(order.len())];
        let idx: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [chunk.len()]), &ad);
        let key = dropout_key(spec.seed, epoch, step);
        let out = model.forward_train(split.x.clone().select(0, idx.clone()), Some(&key));
        let loss = split.loss(out, Some(&idx));
        *loss_sum = loss_sum.clone() + loss.clone().detach() * (chunk.len() as f32);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        on_step();
    }
    model
}

/// Weights and canonical optimizer bytes of a training model.
fn snapshot(model: &Net, optim: &ModuleOptimizer) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
    let weights = model
        .valid()
        .into_record()
        .into_bytes()
        .map_err(record_err)?
        .to_vec();
    let optim_bytes = canonical_burnpack(optim.into_bytes().map_err(record_err)?)?;
    Ok((weights, optim_bytes))
}

/// Replay steps `steps` of 1-based `epoch` on `device`, starting from the checkpoint `before`
/// (weights and optimizer bytes; `None`: the initial weights and a fresh optimizer). Returns the
/// weights and canonical optimizer bytes after the last step, as training wrote them.
pub fn replay(
    spec: &Spec,
    data: &Prepared,
    device: &Device,
    before: Option<(&[u8], &[u8])>,
    epoch: usize,
    steps: std::ops::Range<usize>,
    on_step: &mut dyn FnMut(),
) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
    let t = &spec.training;
    let ad = device.clone().autodiff();
    let fresh = initial_model(spec, data);
    let (model, mut optim) = match before {
        None => (fresh, optimizer(spec)),
        Some((w, o)) => {
            let record =
                ModuleRecord::from_bytes(Bytes::from_bytes_vec(w.to_vec())).map_err(record_err)?;
            let optim = optimizer(spec)
                .from_bytes(Bytes::from_bytes_vec(o.to_vec()))
                .map_err(record_err)?;
            (fresh.load_record(record), optim)
        }
    };
    let split = upload(&data.train, 0..data.train.rows, data.features(), &ad);
    let order = shuffle::epoch_order(spec.seed, epoch - 1, split.rows);
    let lr = t.schedule.lr_at(t.optimizer.lr, epoch - 1, t.epochs);
    let mut loss_sum = Tensor::<1>::zeros([1], &ad);
    let model = train_steps(
        Steps {
            spec,
            split: &split,
            order: &order,
            epoch: epoch - 1,
            range: steps,
            lr,
        },
        model.fork(&ad).train(),
        &mut optim,
        &mut loss_sum,
        on_step,
    );
    snapshot(&model, &optim)
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

fn optimizer(spec: &Spec) -> ModuleOptimizer {
    let o = &spec.training.optimizer;
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
    match o.kind {
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(o.betas[0] as f32)
            .with_beta_2(o.betas[1] as f32)
            .with_epsilon(o.epsilon as f32)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(o.betas[0] as f32)
            .with_beta_2(o.betas[1] as f32)
            .with_epsilon(o.epsilon as f32)
            .with_weight_decay(o.weight_decay as f32)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((o.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(o.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(o.nesterov)
            }))
            .init(),
    }
}

/// Rows of one split on a device: inputs `[rows, features]` and targets.
struct DeviceSplit {
    x: Tensor<2>,
    targets: DeviceTargets,
    rows: usize,
}

enum DeviceTargets {
    Classes(Tensor<1, Int>),
    Values(Tensor<1>),
}

/// Upload rows `range` of a part.
fn upload(
    part: &Part,
    range: std::ops::Range<usize>,
    features: usize,
    device: &Device,
) -> DeviceSplit {
    let rows = range.len();
    let x = part.x[range.start * features..range.end * features].to_vec();
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, features]), device);
    let targets = match &part.targets {
        Targets::Classes(c) => {
            let c: Vec<i64> = c[range].iter().map(|&v| i64::from(v)).collect();
            DeviceTargets::Classes(Tensor::from_data(TensorData::new(c, [rows]), device))
        }
        Targets::Values(v) => DeviceTargets::Values(Tensor::from_data(
            TensorData::new(v[range].to_vec(), [rows]),
            device,
        )),
    };
    DeviceSplit { x, targets, rows }
}

/// Upload a whole part in chunks of [`EVAL_CHUNK`] rows.
fn upload_chunks(part: &Part, features: usize, device: &Device) -> Vec<DeviceSplit> {
    (0..part.rows)
        .step_by(EVAL_CHUNK)
        .map(|start| {
            upload(
                part,
                start..(start + EVAL_CHUNK).min(part.rows),
                features,
                device,
            )
        })
        .collect()
}

impl DeviceSplit {
    /// Mean loss of `out` against the targets of rows `idx` (all rows when `None`).
    fn loss(&self, out: Tensor<2>, idx: Option<&Tensor<1, Int>>) -> Tensor<1> {
        match &self.targets {
            DeviceTargets::Classes(c) => {
                let targets = idx.map_or_else(|| c.clone(), |i| c.clone().select(0, i.clone()));
                CrossEntropyLossConfig::new()
                    .init(&out.device())
                    .forward(out, targets)
            }
            DeviceTargets::Values(v) => {
                let targets = idx.map_or_else(|| v.clone(), |i| v.clone().select(0, i.clone()));
                let [b, _] = out.dims();
                MseLoss::new().forward(out.reshape([b]), targets, Reduction::Mean)
            }
        }
    }
}

/// Mean loss and metrics of `net` (inference mode) over uploaded chunks of `part`.
fn evaluate_chunks(
    net: &Net,
    chunks: &[DeviceSplit],
    part: &Part,
    classes: usize,
) -> (f64, Metrics) {
    let mut loss_sum = 0.0;
    let mut predicted_classes = Vec::new();
    let mut predicted_values = Vec::new();
    for chunk in chunks {
        let out = net.forward(chunk.x.clone());
        match chunk.targets {
            DeviceTargets::Classes(_) => predicted_classes.extend(
                out.clone()
                    .argmax(1)
                    .into_data()
                    .iter::<i64>()
                    .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            ),
            DeviceTargets::Values(_) => {
                predicted_values.extend(out.clone().into_data().iter::<f32>())
            }
        }
        let loss: f32 = chunk.loss(out, None).into_scalar();
        loss_sum += f64::from(loss) * chunk.rows as f64;
    }
    let metrics = match &part.targets {
        Targets::Classes(t) => metrics::classification(t, &predicted_classes, classes),
        Targets::Values(t) => metrics::regression(t, &predicted_values),
    };
    (loss_sum / part.rows.max(1) as f64, metrics)
}

/// The validation loss of the weights `weights` (burnpack bytes), evaluated on `device` as
/// training does after each epoch.
pub fn validation_loss(
    spec: &Spec,
    data: &Prepared,
    device: &Device,
    weights: &[u8],
) -> Result<f64, TrainError> {
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec())).map_err(record_err)?;
    let net = initial_model(spec, data).load_record(record).fork(device);
    let chunks = upload_chunks(&data.validation, data.features(), device);
    Ok(evaluate_chunks(&net, &chunks, &data.validation, data.outputs()).0)
}

/// A trained network: `spec`'s architecture with `features` inputs and `outputs` logits, its
/// weights from burnpack bytes, on `device`. The size is checked before anything is allocated.
pub fn load_net(
    spec: &Spec,
    features: usize,
    outputs: usize,
    weights: &[u8],
    device: &Device,
) -> Result<Net, TrainError> {
    let count = model::parameter_count(spec, features, outputs);
    if count.is_none_or(|c| c > model::MAX_PARAMETERS) {
        return Err(TrainError::TooLarge {
            spec: spec.source.clone(),
            features,
            count,
        });
    }
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec())).map_err(record_err)?;
    let cpu = Device::flex();
    let net = model::CanonicalIds::apply(Net::new(spec, features, outputs, &cpu));
    Ok(net.load_record(record).fork(device))
}

/// The network's outputs for `rows` rows of normalised inputs (row-major): per row, the class
/// probabilities (softmax of the logits), or the one predicted value for regression.
pub fn infer(
    net: &Net,
    x: Vec<f32>,
    rows: usize,
    features: usize,
    device: &Device,
    classify: bool,
) -> Vec<f32> {
    if rows == 0 {
        return Vec::new();
    }
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, features]), device);
    let out = net.forward(x);
    let out = if classify {
        burn::tensor::activation::softmax(out, 1)
    } else {
        out
    };
    out.into_data().iter::<f32>().collect()
}

/// Held-out metrics of `net` (inference mode) on `part`.
pub fn evaluate(net: &Net, part: &Part, data: &Prepared, device: &Device) -> Metrics {
    let chunks = upload_chunks(part, data.features(), device);
    evaluate_chunks(net, &chunks, part, data.outputs()).1
}

fn validation_metric(m: &Metrics) -> (f64, &'static str) {
    match m {
        Metrics::Classification { accuracy, .. } => (*accuracy, "accuracy"),
        Metrics::Regression { r2, .. } => (*r2, "r2"),
    }
}

struct Resumed {
    model: Net,
    optim: ModuleOptimizer,
    states: Vec<CheckpointState>,
}

fn load_weights(net: Net, path: &Path, blake3_hex: &str) -> Result<Net, TrainError> {
    let bytes = read_verified(path, blake3_hex)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(net.load_record(record))
}

fn resume(s: &Session<'_>, fresh: Net) -> Result<Option<Resumed>, TrainError> {
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

/// Train (or, with `resume`, continue training) and return the final model.
pub fn train(
    s: &Session<'_>,
    resume_run: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainOutcome, TrainError> {
    let t = &s.spec.training;
    let ad = s.backend.device.clone().autodiff();
    let ckpt_dir = s.dir.join(run_dir::CHECKPOINTS);
    std::fs::create_dir_all(&ckpt_dir).map_err(io_err(&ckpt_dir))?;
    // Checkpoints are written and pruned only inside the run directory, never through a link.
    if std::fs::symlink_metadata(&ckpt_dir).is_ok_and(|m| !m.is_dir()) {
        return Err(TrainError::Checkpoint {
            path: ckpt_dir,
            message:
                "is not a directory but a symlink or file; refusing to write or prune through it"
                    .into(),
        });
    }
    let fresh = initial_model(s.spec, s.data);
    let (model, optim, states) = match resume_run.then(|| resume(s, fresh.clone())) {
        Some(Ok(Some(r))) => {
            if let Some(last) = r.states.last() {
                progress(Progress::Resumed {
                    epoch: last.record.epoch,
                });
            }
            (r.model, r.optim, r.states)
        }
        Some(Err(e)) => return Err(e),
        Some(Ok(None)) | None => (fresh, optimizer(s.spec), Vec::new()),
    };
    let resumed_from = states.last().map(|st| st.record.epoch);
    let mut lp = Loop::start(s, &ad, optim, states)?;
    let mut model = model.fork(&ad).train();
    for epoch in lp.states.len()..t.epochs {
        if lp.tracker.stop {
            break;
        }
        let (trained, record) = lp.train_epoch(epoch, model, progress)?;
        model = trained;
        progress(Progress::EpochEnd(&record));
    }
    write_transcript(s.dir, &lp.states)?;
    lp.finish(model, resumed_from)
}

/// The training loop's state between epochs.
struct Loop<'a> {
    s: &'a Session<'a>,
    optim: ModuleOptimizer,
    states: Vec<CheckpointState>,
    tracker: Tracker,
    train_split: DeviceSplit,
    val_chunks: Vec<DeviceSplit>,
    /// The last transcript entry's chain hash (`h_0` before the first).
    prev: [u8; 32],
    metrics_path: PathBuf,
}

impl<'a> Loop<'a> {
    /// Upload the data, rewrite the metrics log from the checkpoint states (a crash between a
    /// checkpoint and its log line must not leave the log one epoch short or long) and pick up
    /// the transcript chain where the states end.
    fn start(
        s: &'a Session<'a>,
        ad: &Device,
        optim: ModuleOptimizer,
        states: Vec<CheckpointState>,
    ) -> Result<Loop<'a>, TrainError> {
        let metrics_path = s.dir.join(run_dir::METRICS);
        let mut log = String::new();
        for st in &states {
            log.push_str(&serde_json::to_string(&st.record).map_err(record_err)?);
            log.push('\n');
        }
        fsio::write_atomic(&metrics_path, log.as_bytes()).map_err(io_err(&metrics_path))?;
        let features = s.data.features();
        let prev = match states.last().and_then(|st| st.transcript.last()) {
            Some(e) => link_hash(e)?,
            None => s.commitment,
        };
        Ok(Loop {
            s,
            optim,
            tracker: states.last().map(|st| st.tracker).unwrap_or_default(),
            states,
            train_split: upload(&s.data.train, 0..s.data.train.rows, features, ad),
            val_chunks: upload_chunks(&s.data.validation, features, &s.backend.device),
            prev,
            metrics_path,
        })
    }

    /// Train 0-based `epoch` segment by segment, writing each segment's checkpoint and transcript
    /// entry, then evaluate, write the epoch's state (last) and log line, and prune.
    fn train_epoch(
        &mut self,
        epoch: usize,
        mut model: Net,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(Net, EpochRecord), TrainError> {
        let (s, t) = (self.s, &self.s.spec.training);
        let number = epoch + 1;
        let lr = t.schedule.lr_at(t.optimizer.lr, epoch, t.epochs);
        let order = shuffle::epoch_order(s.spec.seed, epoch, self.train_split.rows);
        let batches = order.len().div_ceil(t.batch_size);
        progress(Progress::EpochStart {
            epoch: number,
            epochs: t.epochs,
            batches,
        });
        let started = Instant::now();
        let mut loss_sum = Tensor::<1>::zeros([1], &self.train_split.x.device());
        let prev_entries: usize = self.states.iter().map(|st| st.transcript.len()).sum();
        let mut entries = Vec::new();
        let mut from = 0;
        let ends = s.spec.audit.segment_ends(batches);
        let mut epoch_files = (Vec::new(), Vec::new());
        for (k, &to) in ends.iter().enumerate() {
            let steps = Steps {
                spec: s.spec,
                split: &self.train_split,
                order: &order,
                epoch,
                range: from..to,
                lr,
            };
            model = train_steps(steps, model, &mut self.optim, &mut loss_sum, &mut || {
                progress(Progress::Batch)
            });
            let last = k + 1 == ends.len();
            let (weights, optim_bytes) = snapshot(&model, &self.optim)?;
            let [w_name, o_name] = run_dir::segment_files(number, to, last);
            let (w_path, o_path) = (s.dir.join(&w_name), s.dir.join(&o_name));
            fsio::write_atomic(&w_path, &weights).map_err(io_err(&w_path))?;
            fsio::write_atomic(&o_path, &optim_bytes).map_err(io_err(&o_path))?;
            let rows = &order[from * t.batch_size..(to * t.batch_size).min(order.len())];
            let entry = Entry::new(
                &self.prev,
                transcript::Body {
                    index: prev_entries + entries.len() + 1,
                    epoch: number,
                    steps: [from, to],
                    lr,
                    batch_order_blake3: transcript::order_digest(rows),
                    weights: w_name,
                    weights_blake3: crate::hash::Digest::of(&weights).hex(),
                    optimizer: o_name,
                    optimizer_blake3: crate::hash::Digest::of(&optim_bytes).hex(),
                },
            );
            self.prev = link_hash(&entry)?;
            entries.push(entry);
            if last {
                epoch_files = (weights, optim_bytes);
            }
            from = to;
        }
        let rows = self.train_split.rows;
        let train_loss = f64::from(loss_sum.into_scalar::<f32>()) / rows as f64;
        let seconds = started.elapsed().as_secs_f64();
        if !train_loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch: number,
                loss: train_loss,
            });
        }
        let eval = model.valid();
        let (val_loss, val_metrics) = evaluate_chunks(
            &eval,
            &self.val_chunks,
            &s.data.validation,
            s.data.outputs(),
        );
        let (val_metric, metric) = validation_metric(&val_metrics);
        self.tracker.after_epoch(t, number, val_loss);
        let record = EpochRecord {
            epoch: number,
            lr,
            train_loss,
            val_loss,
            val_metric,
            metric: metric.to_string(),
            seconds,
            samples_per_sec: rows as f64 / seconds.max(1e-9),
            checkpoint: run_dir::segment_files(number, 0, true)[0].clone(),
            checkpoint_blake3: crate::hash::Digest::of(&epoch_files.0).hex(),
            optimizer_blake3: crate::hash::Digest::of(&epoch_files.1).hex(),
        };
        self.record_epoch(&record, entries)?;
        Ok((model, record))
    }

    /// Write the epoch's state file (last: its presence marks the checkpoint complete) and log
    /// line, the transcript so far, and prune under `checkpoints: last`.
    fn record_epoch(
        &mut self,
        record: &EpochRecord,
        entries: Vec<Entry>,
    ) -> Result<(), TrainError> {
        let s = self.s;
        let state = CheckpointState {
            schema: STATE_SCHEMA.to_string(),
            spec_blake3: s.spec.digest().to_hex().to_string(),
            backend: s.backend.kind,
            record: record.clone(),
            tracker: self.tracker,
            transcript: entries,
        };
        let [_, _, json_path] = run_dir::epoch_files(s.dir, record.epoch);
        let json = serde_json::to_vec_pretty(&state).map_err(record_err)?;
        fsio::write_atomic(&json_path, &json).map_err(io_err(&json_path))?;
        let line = serde_json::to_string(record).map_err(record_err)?;
        fsio::append_line(&self.metrics_path, &line).map_err(io_err(&self.metrics_path))?;
        self.states.push(state);
        write_transcript(s.dir, &self.states)?;
        if s.spec.outputs.checkpoints == KeepCheckpoints::Last {
            prune(s.dir, &self.states, self.tracker.best_epoch)?;
        }
        Ok(())
    }

    /// The final model: the last epoch's, or the best epoch's checkpoint read back (its digest
    /// checked) when early stopping restores it.
    fn finish(self, model: Net, resumed_from: Option<usize>) -> Result<TrainOutcome, TrainError> {
        let (s, t) = (self.s, &self.s.spec.training);
        let last = self.states.last().map_or(0, |st| st.record.epoch);
        let final_epoch = self.tracker.final_epoch(t, last);
        let eval = if final_epoch == last {
            model.valid()
        } else {
            let st = &self.states[final_epoch - 1];
            let [w_path, _, _] = run_dir::epoch_files(s.dir, final_epoch);
            load_weights(
                initial_model(s.spec, s.data),
                &w_path,
                &st.record.checkpoint_blake3,
            )?
            .fork(&s.backend.device)
            .valid()
        };
        let model_bytes = eval
            .clone()
            .into_record()
            .into_bytes()
            .map_err(record_err)?;
        Ok(TrainOutcome {
            model: eval,
            model_bytes: model_bytes.to_vec(),
            epochs: self.states.iter().map(|st| st.record.clone()).collect(),
            final_epoch,
            best_epoch: self.tracker.best_epoch,
            stopped_early: self.tracker.stop && last < t.epochs,
            resumed_from,
            transcript: self
                .states
                .into_iter()
                .flat_map(|st| st.transcript)
                .collect(),
        })
    }
}

/// Re-serialise burnpack bytes with tensors sorted by name.
///
/// burn writes optimizer state in hash-map order, which changes from process to process; sorted,
/// the bytes (and their digest) depend only on the state itself.
fn canonical_burnpack(bytes: Bytes) -> Result<Vec<u8>, TrainError> {
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(record_err)?;
    let metadata = reader.metadata().clone();
    let scalars = reader.scalars().clone();
    let mut tensors = reader.into_tensors().map_err(record_err)?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    for (k, v) in scalars {
        writer = writer.with_scalar(&k, v);
    }
    Ok(writer.into_bytes().map_err(record_err)?.to_vec())
}

fn link_hash(e: &Entry) -> Result<[u8; 32], TrainError> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(&e.chain, &mut h).map_err(record_err)?;
    Ok(h)
}

/// The task's held-out split: the test part, or validation when `split.test` is 0.
pub fn held_out(data: &Prepared) -> (&Part, &'static str) {
    match &data.test {
        Some(t) => (t, "test"),
        None => (&data.validation, "validation"),
    }
}
