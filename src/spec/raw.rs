//! The spec as written: serde types that mirror the YAML, with positions kept for validation.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored setting.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

pub(super) type Sp<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub version: Sp<u32>,
    pub name: Sp<String>,
    pub seed: Sp<u64>,
    pub data: RawData,
    pub model: Sp<RawModel>,
    #[serde(default)]
    pub training: Option<RawTraining>,
    #[serde(default)]
    pub outputs: Option<RawOutputs>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub card: Option<super::CardSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawData {
    #[serde(default)]
    pub path: Option<Sp<String>>,
    #[serde(default)]
    pub sources: Option<Sp<Vec<Sp<RawSource>>>>,
    pub label: Sp<String>,
    pub task: Task,
    #[serde(default)]
    pub features: Option<RawFeatures>,
    #[serde(default)]
    pub split: Option<Sp<RawSplit>>,
    #[serde(default)]
    pub normalize: Option<Normalize>,
    #[serde(default)]
    pub shape: Option<Sp<Vec<Sp<usize>>>>,
    #[serde(default)]
    pub delimiter: Option<Sp<String>>,
    #[serde(default)]
    pub missing_values: Option<Sp<Vec<Sp<String>>>>,
    #[serde(default)]
    pub columns: Option<Sp<std::collections::BTreeMap<String, Sp<ColumnRole>>>>,
    #[serde(default)]
    pub impute: Option<Sp<RawImpute>>,
    #[serde(default)]
    pub max_categories: Option<Sp<usize>>,
    #[serde(default)]
    pub target_scaling: Option<Sp<TargetScaling>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImpute {
    #[serde(default)]
    pub numeric: Option<NumericImpute>,
    #[serde(default)]
    pub categorical: Option<CategoricalImpute>,
}

/// What a column is, when the user says it rather than letting the training rows tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnRole {
    /// Numbers: imputed and scaled.
    Numeric,
    /// Categories: one-hot encoded.
    Categorical,
    /// Not used.
    Exclude,
    /// An identifier: not a feature, carried through predictions with `--keep`.
    Id,
}

/// How gaps in numeric columns are filled, from the training rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericImpute {
    /// The training rows' median (scikit-learn's `SimpleImputer(strategy="median")`).
    #[default]
    Median,
    /// The training rows' mean.
    Mean,
    /// Zero.
    Zero,
    /// Training rows with a gap are dropped; a row to predict with one cannot be scored.
    Drop,
}

/// How gaps in categorical columns are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CategoricalImpute {
    /// A gap is a category of its own.
    #[default]
    Category,
    /// The training rows' most frequent category.
    Mode,
}

/// How regression targets are scaled for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetScaling {
    /// Zero mean, unit variance on the training rows (scikit-learn's
    /// `TransformedTargetRegressor` with a `StandardScaler`); predictions and metrics in the
    /// original units.
    #[default]
    Standard,
    /// The raw values.
    None,
}

/// Class weights in the classification loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every row counts the same.
    #[default]
    None,
    /// `n / (classes × n_class)` from the training rows, as scikit-learn's `balanced`.
    Balanced,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeatures {
    #[serde(default)]
    pub include: Option<Sp<Vec<Sp<String>>>>,
    #[serde(default)]
    pub exclude: Option<Sp<Vec<Sp<String>>>>,
}

/// One entry of `data.sources`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub path: Sp<String>,
    #[serde(default)]
    pub contribution: Option<Sp<String>>,
    #[serde(default)]
    pub owner: Option<Sp<String>>,
    #[serde(default)]
    pub salt: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSplit {
    pub train: Sp<f64>,
    pub validation: Sp<f64>,
    #[serde(default)]
    pub test: Option<Sp<f64>>,
    #[serde(default)]
    pub group: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    #[serde(rename = "type")]
    pub kind: Sp<ModelKind>,
    #[serde(default)]
    pub hidden: Option<Sp<Vec<Sp<usize>>>>,
    #[serde(default)]
    pub activation: Option<Activation>,
    #[serde(default)]
    pub dropout: Option<Sp<f64>>,
    #[serde(default)]
    pub conv: Option<Sp<RawConv>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConv {
    #[serde(default)]
    pub channels: Option<Sp<Vec<Sp<usize>>>>,
    #[serde(default)]
    pub kernel: Option<Sp<usize>>,
    #[serde(default)]
    pub pool: Option<Pool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraining {
    #[serde(default)]
    pub epochs: Option<Sp<usize>>,
    #[serde(default)]
    pub batch_size: Option<Sp<usize>>,
    #[serde(default)]
    pub optimizer: Option<Sp<RawOptimizer>>,
    #[serde(default)]
    pub schedule: Option<Sp<RawSchedule>>,
    #[serde(default)]
    pub early_stopping: Option<Sp<RawEarlyStopping>>,
    #[serde(default)]
    pub device: Option<DeviceChoice>,
    #[serde(default)]
    pub class_weight: Option<ClassWeight>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOptimizer {
    #[serde(default, rename = "type")]
    pub kind: Option<OptimizerKind>,
    #[serde(default)]
    pub lr: Option<Sp<f64>>,
    #[serde(default)]
    pub weight_decay: Option<Sp<f64>>,
    #[serde(default)]
    pub momentum: Option<Sp<f64>>,
    #[serde(default)]
    pub nesterov: Option<Sp<bool>>,
    #[serde(default)]
    pub betas: Option<Sp<Vec<Sp<f64>>>>,
    #[serde(default)]
    pub epsilon: Option<Sp<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    #[serde(default, rename = "type")]
    pub kind: Option<ScheduleKind>,
    #[serde(default)]
    pub min_lr: Option<Sp<f64>>,
    #[serde(default)]
    pub step_size: Option<Sp<usize>>,
    #[serde(default)]
    pub gamma: Option<Sp<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEarlyStopping {
    #[serde(default)]
    pub patience: Option<Sp<usize>>,
    #[serde(default)]
    pub min_delta: Option<Sp<f64>>,
    #[serde(default)]
    pub restore_best: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutputs {
    #[serde(default)]
    pub dir: Option<Sp<String>>,
    #[serde(default)]
    pub checkpoints: Option<KeepCheckpoints>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    #[serde(default)]
    pub every_steps: Option<Sp<usize>>,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A class label (cross-entropy loss; accuracy, macro-F1, confusion matrix).
    Classification,
    /// A number (MSE loss; MSE, MAE, R²).
    Regression,
}

/// Feature scaling, fitted on the training split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Zero mean, unit variance.
    Standard,
    /// Scaled to [0, 1].
    Minmax,
    /// Raw values.
    None,
}

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Dense layers.
    Mlp,
    /// Conv layers, then dense layers (needs `data.shape`).
    Cnn,
}

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// max(0.01x, x).
    LeakyRelu,
}

/// Pooling after each conv layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// 2x2 max pooling.
    Max,
    /// 2x2 average pooling.
    Avg,
    /// No pooling.
    None,
}

/// Optimizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (weight decay as L2 penalty).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// Stochastic gradient descent, optional (Nesterov) momentum.
    Sgd,
}

/// Learning-rate schedule, applied per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The optimizer's lr throughout.
    Constant,
    /// Cosine decay from lr to min_lr over the epochs.
    Cosine,
    /// lr × gamma every step_size epochs.
    Step,
}

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A wgpu adapter when one exists, else the CPU.
    Auto,
    /// A wgpu adapter; an error when there is none.
    Wgpu,
    /// burn's flex CPU backend.
    Cpu,
}

/// Which per-epoch checkpoints stay on disk after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepCheckpoints {
    /// Every epoch's checkpoint.
    All,
    /// The latest and the best epoch's checkpoints.
    Last,
}
