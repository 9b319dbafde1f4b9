//! The YAML pipeline spec: raw YAML in, a validated [`Spec`] out.
//!
//! This module owns the spec format (`version: 1`), its defaults and every check that can be made
//! from the spec alone. Checks that need the data (the label column exists, `shape` matches the
//! feature count) happen in [`crate::data`], which reports them at the spec position kept in
//! [`Located`] values. This module reads the spec file and nothing else: no data, no writes, no burn.

mod executor;
pub mod params;
mod raw;
mod stages;
mod template;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use raw::{
    Activation, CategoricalImpute, ClassWeight, ColumnRole, DeviceChoice, KeepCheckpoints,
    ModelKind, Normalize, NumericImpute, OptimizerKind, Pool, ScheduleKind, TargetScaling, Task,
};

use raw::{RawSpec, Sp};

pub use executor::{Executor, ExecutorKind};
pub use stages::{CommandStage, PipelineSpec, SpecFile, Stage, StageKind};

/// Bounds on what a spec may ask for, so that a hostile or mistyped spec is an error naming the
/// field instead of an allocation that exhausts memory or an arithmetic overflow.
pub const MAX_WIDTH: usize = 1 << 16;
/// Most categories one-hot encoded per column (`data.max_categories`, and the default cap).
pub const MAX_CATEGORIES: usize = 1024;
/// Most hidden or conv layers.
pub const MAX_LAYERS: usize = 64;
/// Most weights in one dense layer between two hidden layers.
pub const MAX_LAYER_PARAMS: usize = 1 << 28;
/// Most conv channels per layer.
pub const MAX_CHANNELS: usize = 4096;
/// Largest conv kernel.
pub const MAX_KERNEL: usize = 31;
/// Most epochs.
pub const MAX_EPOCHS: usize = 1_000_000;
/// Largest batch.
pub const MAX_BATCH: usize = 1 << 20;
/// Most values in one image row (`data.shape`).
pub const MAX_PIXELS: usize = 1 << 24;
/// A position in the spec file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value with the spec position it came from, so later checks can point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Errors from reading or validating a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{}: cannot read pipeline spec: {source}", path.display())]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The spec is malformed or holds an impossible value.
    #[error("{}:{pos}: {message}", path.display())]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// Where in the file.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
    /// The YAML could not be parsed and the parser gave no position.
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The spec file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// A validated pipeline spec with every default filled in.
///
/// Serialises to the resolved spec recorded in `summary.json` (and, later, the manifest).
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Spec format version (always 1).
    pub version: u32,
    /// Pipeline name; names the default run directory.
    pub name: String,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Data section.
    pub data: DataSpec,
    /// Model section.
    pub model: ModelSpec,
    /// Training section.
    pub training: TrainingSpec,
    /// Outputs section.
    pub outputs: OutputsSpec,
    /// Audit section.
    pub audit: AuditSpec,
    /// What only people know about the model (intended use, owners, limitations), for model
    /// cards (`auditai export`). Absent: not part of the resolved spec or its digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardSpec>,
    /// The stage of a multi-stage pipeline spec this training configuration is (absent for a
    /// single-training spec, and then not part of the resolved spec or its digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The spec file this came from.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `data:`: where the rows come from and how they are split and scaled.
#[derive(Debug, Clone, Serialize)]
pub struct DataSpec {
    /// CSV path as written in the spec (relative to the spec file's directory); with
    /// `data.sources`, the first source's.
    pub path: Located<String>,
    /// `data.sources`: several CSV files with the same columns, each with its owner's
    /// contribution (empty when the spec gives `data.path`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSpec>,
    /// Label column name.
    pub label: Located<String>,
    /// Classification or regression.
    pub task: Task,
    /// Feature columns to use (all but the label when absent).
    pub include: Option<Vec<Located<String>>>,
    /// Feature columns to drop.
    pub exclude: Vec<Located<String>>,
    /// Split fractions.
    pub split: Split,
    /// Feature normalisation.
    pub normalize: Normalize,
    /// Image shape `[channels, height, width]` when rows are images.
    pub shape: Option<Located<[usize; 3]>>,
    /// The field delimiter (`,`, `;`, tab, `|`, or runs of whitespace); sniffed when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<Delimiter>,
    /// Cell texts that mean "missing" (default [`DEFAULT_MISSING`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_values: Option<Vec<String>>,
    /// Column roles the user states (otherwise inferred from the training rows).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "columns_map")]
    pub columns: Vec<(Located<String>, ColumnRole)>,
    /// Gap filling.
    #[serde(skip_serializing_if = "Impute::is_default")]
    pub impute: Impute,
    /// Most categories one-hot encoded per column; the rarest beyond are pooled as `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_categories: Option<usize>,
    /// Regression target scaling (default standard).
    #[serde(skip_serializing_if = "is_default_scaling")]
    pub target_scaling: TargetScaling,
    /// Keep every row of one value of this column on one side of the split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Located<String>>,
}

/// One of `data.sources`. Paths are as written, relative to the spec file's directory.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSpec {
    /// The CSV file.
    pub path: Located<String>,
    /// Its owner's contribution statement (`auditai contribute`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<Located<String>>,
    /// The owner's public key (SPKI PEM) the contribution must be signed by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Located<String>>,
    /// The salt of a withheld contribution (kept private; only its path is recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<Located<String>>,
}

/// The most entries of `data.sources`.
pub const MAX_SOURCES: usize = 256;

/// The cell texts that mean "missing" unless `data.missing_values` says otherwise.
pub const DEFAULT_MISSING: &[&str] = &[
    "", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "?",
];

/// The CSV field delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delimiter {
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// A tab.
    Tab,
    /// `|`
    Pipe,
    /// Runs of spaces or tabs (fixed-width-like files); quotes still group.
    Whitespace,
}

impl Delimiter {
    /// The byte the CSV reader splits on.
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
            Delimiter::Pipe => b'|',
            Delimiter::Whitespace => b' ',
        }
    }
}

/// `data.impute:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Impute {
    /// Numeric gaps.
    pub numeric: NumericImpute,
    /// Categorical gaps.
    pub categorical: CategoricalImpute,
}

impl Impute {
    fn is_default(&self) -> bool {
        *self == Impute::default()
    }
}

fn columns_map<S: serde::Serializer>(
    cols: &[(Located<String>, ColumnRole)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(cols.len()))?;
    for (name, role) in cols {
        m.serialize_entry(&name.value, role)?;
    }
    m.end()
}

fn is_default_scaling(t: &TargetScaling) -> bool {
    *t == TargetScaling::Standard
}

impl DataSpec {
    /// The CSV path resolved against the spec file's directory.
    pub fn resolved_path(&self, spec_file: &Path) -> PathBuf {
        resolve(&self.path.value, spec_file)
    }

    /// Every data file with its spec position, resolved: the sources, or the one `path`.
    pub fn files(&self, spec_file: &Path) -> Vec<(PathBuf, Pos)> {
        if self.sources.is_empty() {
            return vec![(self.resolved_path(spec_file), self.path.pos)];
        }
        self.sources
            .iter()
            .map(|s| (resolve(&s.path.value, spec_file), s.path.pos))
            .collect()
    }
}

/// A path as written in a spec, resolved against the spec file's directory.
pub fn resolve(written: &str, spec_file: &Path) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        spec_file.parent().unwrap_or(Path::new("")).join(p)
    }
}

/// Train / validation / test fractions (they sum to 1).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Split {
    /// Training fraction.
    pub train: f64,
    /// Validation fraction (early stopping, per-epoch metrics).
    pub validation: f64,
    /// Held-out test fraction (0 means the validation split is the held-out split).
    pub test: f64,
}

/// `model:`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// `mlp` or `cnn`.
    #[serde(rename = "type")]
    pub kind: ModelKind,
    /// Dense hidden layer widths.
    pub hidden: Vec<usize>,
    /// Activation after every hidden layer.
    pub activation: Activation,
    /// Dropout probability after every dense hidden layer.
    pub dropout: f64,
    /// Convolution stack (cnn only).
    pub conv: Option<ConvSpec>,
}

/// `model.conv:` for the cnn.
#[derive(Debug, Clone, Serialize)]
pub struct ConvSpec {
    /// Output channels of each conv layer.
    pub channels: Vec<usize>,
    /// Square kernel size (odd; `same` padding).
    pub kernel: usize,
    /// Pooling after each conv layer.
    pub pool: Pool,
}

/// `training:`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingSpec {
    /// Number of epochs (an upper bound with early stopping).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerSpec,
    /// Learning-rate schedule.
    pub schedule: ScheduleSpec,
    /// Early stopping on validation loss.
    pub early_stopping: Option<EarlyStopping>,
    /// Device choice (the command line may override it).
    pub device: DeviceChoice,
    /// Class weights in the loss (classification).
    #[serde(skip_serializing_if = "is_unweighted")]
    pub class_weight: ClassWeight,
}

fn is_unweighted(c: &ClassWeight) -> bool {
    *c == ClassWeight::None
}

/// `training.optimizer:`.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizerSpec {
    /// `adam`, `adamw` or `sgd`.
    #[serde(rename = "type")]
    pub kind: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
    /// Weight decay (L2 penalty for adam/sgd, decoupled for adamw).
    pub weight_decay: f64,
    /// SGD momentum (0 disables).
    pub momentum: f64,
    /// Nesterov momentum (sgd).
    pub nesterov: bool,
    /// Adam betas.
    pub betas: [f64; 2],
    /// Adam epsilon.
    pub epsilon: f64,
}

/// `training.schedule:`.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleSpec {
    /// `constant`, `cosine` or `step`.
    #[serde(rename = "type")]
    pub kind: ScheduleKind,
    /// Cosine: the learning rate reached at the last epoch.
    pub min_lr: f64,
    /// Step: epochs between decays.
    pub step_size: usize,
    /// Step: multiplier applied every `step_size` epochs.
    pub gamma: f64,
}

impl ScheduleSpec {
    /// The learning rate for a 0-based epoch.
    pub fn lr_at(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Step => {
                let steps = i32::try_from(epoch / self.step_size).unwrap_or(i32::MAX);
                base * self.gamma.powi(steps)
            }
            ScheduleKind::Cosine => {
                if epochs <= 1 {
                    return base;
                }
                let t = epoch as f64 / (epochs - 1) as f64;
                self.min_lr + 0.5 * (base - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// `training.early_stopping:`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest decrease of validation loss that counts as an improvement.
    pub min_delta: f64,
    /// Whether the final model is the best epoch's weights rather than the last.
    pub restore_best: bool,
}

/// `card:`: the model card's human sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// What the model is for, and for whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use: Option<String>,
    /// Uses it is not meant for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope: Vec<String>,
    /// Who is responsible for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Owner>,
    /// Known limitations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
    /// Ethical considerations and how they are mitigated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ethical_considerations: Vec<String>,
}

/// An owner of a model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Name (a person or a team).
    pub name: String,
    /// How to reach them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// `outputs:`.
#[derive(Debug, Clone, Serialize)]
pub struct OutputsSpec {
    /// Run directory (relative to the working directory); default `runs/<name>`.
    pub dir: String,
    /// Which per-epoch checkpoints to keep.
    pub checkpoints: KeepCheckpoints,
}

/// `audit:`: how finely the training transcript records the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AuditSpec {
    /// A transcript entry (and a checkpoint) every this many steps within an epoch, besides the
    /// one at every epoch end; `None`: one entry per epoch.
    pub every_steps: Option<usize>,
}

impl AuditSpec {
    /// Where the transcript segments of an epoch with `batches` steps end (exclusive step
    /// indices within the epoch, ascending, the last one `batches`).
    pub fn segment_ends(&self, batches: usize) -> Vec<usize> {
        let mut ends: Vec<usize> = match self.every_steps {
            Some(n) if n > 0 => (n..batches).step_by(n).collect(),
            _ => Vec::new(),
        };
        ends.push(batches);
        ends
    }
}

impl Spec {
    /// Map every position kept for later checks through `f`.
    pub(crate) fn remap(&mut self, f: &impl Fn(Pos) -> Pos) {
        let d = &mut self.data;
        for l in [&mut d.path, &mut d.label]
            .into_iter()
            .chain(d.include.iter_mut().flatten())
            .chain(d.exclude.iter_mut())
            .chain(d.columns.iter_mut().map(|(c, _)| c))
            .chain(d.group.iter_mut())
        {
            l.pos = f(l.pos);
        }
        if let Some(s) = &mut d.shape {
            s.pos = f(s.pos);
        }
    }

    /// Read and validate a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Spec::parse(&text, path)
    }

    /// Validate spec text; `path` is used in messages and to resolve relative data paths.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let raw: RawSpec = serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, path))?;
        Checker { path }.spec(raw)
    }

    /// Validate spec text and return the training configuration: the whole spec, or for a
    /// multi-stage pipeline spec the training stage named `stage`.
    pub fn parse_stage(text: &str, path: &Path, stage: Option<&str>) -> Result<Spec, SpecError> {
        let Some(stage) = stage else {
            return Spec::parse(text, path);
        };
        let pipeline = PipelineSpec::parse(text, path)?;
        pipeline
            .stages
            .into_iter()
            .find(|s| s.name.value == stage)
            .and_then(|s| match s.kind {
                StageKind::Train(spec) => Some(*spec),
                StageKind::Command(_) => None,
            })
            .ok_or_else(|| SpecError::Yaml {
                path: path.to_path_buf(),
                message: format!("the pipeline has no training stage `{stage}`"),
            })
    }

    /// The blake3 digest of the resolved spec's canonical JSON: identifies the configuration.
    pub fn digest(&self) -> blake3::Hash {
        // Serialising plain structs of numbers, strings and enums cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        blake3::hash(&bytes)
    }

    /// Whether the data rows are images (`data.shape` set).
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.data.shape.as_ref().map(|s| s.value)
    }
}

pub(crate) fn yaml_error(e: &serde_saphyr::Error, path: &Path) -> SpecError {
    let plain = e.without_snippet().to_string();
    match e.location() {
        Some(loc) if loc.line() > 0 => {
            // The parser appends " at line L, column C"; we print the position up front instead.
            let message = match plain.rfind(" at line ") {
                Some(i) => &plain[..i],
                None => plain.as_str(),
            };
            let message = match message {
                "invalid u32" | "invalid u64" | "invalid usize" => {
                    "expected a whole number (0 or more)".to_string()
                }
                "invalid f64" => "expected a number".to_string(),
                "invalid bool" => "expected true or false".to_string(),
                other => other.to_string(),
            };
            SpecError::Invalid {
                path: path.to_path_buf(),
                pos: Pos {
                    line: loc.line(),
                    column: loc.column(),
                },
                message,
            }
        }
        _ => SpecError::Yaml {
            path: path.to_path_buf(),
            message: plain,
        },
    }
}

/// A pipeline or stage name: 1-128 of letters, digits, `-`, `_`, `.`, not starting with `.`.
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn pos<T>(s: &Sp<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

fn located<T>(s: Sp<T>) -> Located<T> {
    let pos = pos(&s);
    Located {
        value: s.value,
        pos,
    }
}

struct Checker<'a> {
    path: &'a Path,
}

/// The training sections of a spec or of a training stage, as written.
struct Body {
    name: String,
    seed: u64,
    data: raw::RawData,
    model: Sp<raw::RawModel>,
    training: Option<raw::RawTraining>,
    outputs: Option<raw::RawOutputs>,
    audit: Option<raw::RawAudit>,
    card: Option<CardSpec>,
}

impl Checker<'_> {
    fn fail<T>(&self, pos: Pos, message: impl Into<String>) -> Result<T, SpecError> {
        Err(SpecError::Invalid {
            path: self.path.to_path_buf(),
            pos,
            message: message.into(),
        })
    }

    fn spec(&self, raw: RawSpec) -> Result<Spec, SpecError> {
        let name = self.header(&raw.version, &raw.name)?;
        self.training_spec(
            Body {
                name,
                seed: raw.seed.value,
                data: raw.data,
                model: raw.model,
                training: raw.training,
                outputs: raw.outputs,
                audit: raw.audit,
                card: raw.card,
            },
            None,
        )
    }

    /// `version` and `name`, checked; returns the name.
    fn header(&self, version: &Sp<u32>, name: &Sp<String>) -> Result<String, SpecError> {
        if version.value != 1 {
            return self.fail(
                pos(version),
                format!(
                    "unsupported spec version {} (this auditai reads version 1)",
                    version.value
                ),
            );
        }
        if !name_ok(&name.value) {
            return self.fail(
                pos(name),
                format!(
                    "name `{}` must be 1-128 characters of letters, digits, `-`, `_` or `.`, not starting with `.`",
                    name.value
                ),
            );
        }
        Ok(name.value.clone())
    }

    /// The training sections of a spec (or of a pipeline's training stage) validated.
    fn training_spec(&self, b: Body, stage: Option<String>) -> Result<Spec, SpecError> {
        let data = self.data(b.data)?;
        let model = self.model(b.model, &data)?;
        let training = self.training(b.training.unwrap_or_default())?;
        let outputs = b.outputs.unwrap_or_default();
        let dir = match outputs.dir {
            Some(d) if d.value.trim().is_empty() => {
                return self.fail(pos(&d), "outputs.dir must not be empty");
            }
            Some(d) => d.value,
            None => format!("runs/{}", b.name),
        };
        Ok(Spec {
            version: 1,
            name: b.name,
            seed: b.seed,
            data,
            model,
            training,
            outputs: OutputsSpec {
                dir,
                checkpoints: outputs.checkpoints.unwrap_or(KeepCheckpoints::All),
            },
            audit: self.audit(b.audit.unwrap_or_default())?,
            card: b.card,
            stage,
            source: self.path.to_path_buf(),
        })
    }

    fn audit(&self, raw: raw::RawAudit) -> Result<AuditSpec, SpecError> {
        match raw.every_steps {
            Some(n) if n.value == 0 => self.fail(pos(&n), "audit.every_steps must be at least 1"),
            n => Ok(AuditSpec {
                every_steps: n.map(|n| n.value),
            }),
        }
    }

    /// `data.path` or `data.sources` (exactly one): the first source's path stands as `path`.
    fn data_sources(
        &self,
        path: Option<Sp<String>>,
        sources: Option<Sp<Vec<Sp<raw::RawSource>>>>,
        at: Pos,
    ) -> Result<(Located<String>, Vec<SourceSpec>), SpecError> {
        let list = match (path, sources) {
            (Some(p), None) if p.value.trim().is_empty() => {
                return self.fail(pos(&p), "data.path must not be empty");
            }
            (Some(p), None) => return Ok((located(p), Vec::new())),
            (Some(p), Some(_)) => {
                return self.fail(pos(&p), "give data.path or data.sources, not both");
            }
            (None, None) => return self.fail(at, "data needs `path` or `sources`"),
            (None, Some(list)) => list,
        };
        if list.value.is_empty() || list.value.len() > MAX_SOURCES {
            return self.fail(
                pos(&list),
                format!("data.sources lists 1 to {MAX_SOURCES} sources"),
            );
        }
        let mut out: Vec<SourceSpec> = Vec::new();
        for s in list.value {
            let s = s.value;
            if s.path.value.trim().is_empty() {
                return self.fail(pos(&s.path), "a source's path must not be empty");
            }
            if out.iter().any(|o| o.path.value == s.path.value) {
                return self.fail(
                    pos(&s.path),
                    format!("source `{}` is listed twice", s.path.value),
                );
            }
            out.push(SourceSpec {
                path: located(s.path),
                contribution: s.contribution.map(located),
                owner: s.owner.map(located),
                salt: s.salt.map(located),
            });
        }
        Ok((out[0].path.clone(), out))
    }

    fn data(&self, raw: raw::RawData) -> Result<DataSpec, SpecError> {
        let (path, sources) = self.data_sources(raw.path, raw.sources, pos(&raw.label))?;
        if raw.label.value.is_empty() {
            return self.fail(pos(&raw.label), "data.label must name a column");
        }
        let group = raw
            .split
            .as_ref()
            .and_then(|s| s.value.group.clone())
            .map(located);
        let split = match raw.split {
            None => Split {
                train: 0.7,
                validation: 0.15,
                test: 0.15,
            },
            Some(s) => self.split(s)?,
        };
        let (include, exclude) = match raw.features {
            None => (None, Vec::new()),
            Some(f) => {
                let include = match f.include {
                    Some(list) if list.value.is_empty() => {
                        return self.fail(pos(&list), "data.features.include must not be empty");
                    }
                    Some(list) => Some(list.value.into_iter().map(located).collect()),
                    None => None,
                };
                let exclude: Vec<Located<String>> = f
                    .exclude
                    .map(|l| l.value.into_iter().map(located).collect())
                    .unwrap_or_default();
                (include, exclude)
            }
        };
        let shape = raw.shape.map(|s| self.shape(s)).transpose()?;
        let delimiter = raw.delimiter.map(|d| self.delimiter(d)).transpose()?;
        let missing_values = match raw.missing_values {
            None => None,
            Some(list) if list.value.len() > 64 => {
                return self.fail(pos(&list), "data.missing_values lists at most 64 texts");
            }
            Some(list) => Some(list.value.into_iter().map(|v| v.value).collect()),
        };
        let columns = match raw.columns {
            None => Vec::new(),
            Some(map) => map
                .value
                .into_iter()
                .map(|(name, role)| {
                    (
                        Located {
                            value: name,
                            pos: pos(&role),
                        },
                        role.value,
                    )
                })
                .collect(),
        };
        let impute = raw.impute.map_or(Impute::default(), |i| Impute {
            numeric: i.value.numeric.unwrap_or_default(),
            categorical: i.value.categorical.unwrap_or_default(),
        });
        let max_categories = match raw.max_categories {
            Some(m) if m.value < 2 || m.value > MAX_CATEGORIES => {
                return self.fail(
                    pos(&m),
                    format!("data.max_categories must be between 2 and {MAX_CATEGORIES}"),
                );
            }
            m => m.map(|m| m.value),
        };
        if let (Some(t), Task::Classification) = (&raw.target_scaling, raw.task) {
            return self.fail(
                pos(t),
                "data.target_scaling applies to regression; classification targets are classes",
            );
        }
        Ok(DataSpec {
            path,
            sources,
            label: located(raw.label),
            task: raw.task,
            include,
            exclude,
            split,
            normalize: raw.normalize.unwrap_or(Normalize::Standard),
            shape,
            delimiter,
            missing_values,
            columns,
            impute,
            max_categories,
            target_scaling: raw.target_scaling.map(|t| t.value).unwrap_or_default(),
            group,
        })
    }

    fn shape(&self, s: Sp<Vec<Sp<usize>>>) -> Result<Located<[usize; 3]>, SpecError> {
        let p = pos(&s);
        let dims: Vec<usize> = s.value.iter().map(|d| d.value).collect();
        if let Some(zero) = s.value.iter().find(|d| d.value == 0) {
            return self.fail(pos(zero), "data.shape dimensions must be at least 1");
        }
        let pixels = s
            .value
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d.value));
        if pixels.is_none_or(|n| n > MAX_PIXELS) {
            return self.fail(
                pos(&s),
                format!("data.shape must describe at most {MAX_PIXELS} values per row"),
            );
        }
        let shape = match dims.as_slice() {
            [h, w] => [1, *h, *w],
            [c, h, w] => [*c, *h, *w],
            _ => {
                return self.fail(
                    p,
                    format!(
                        "data.shape must be [height, width] or [channels, height, width], got {} dimensions",
                        dims.len()
                    ),
                );
            }
        };
        Ok(Located {
            value: shape,
            pos: p,
        })
    }

    fn delimiter(&self, d: Sp<String>) -> Result<Delimiter, SpecError> {
        Ok(match d.value.as_str() {
            "," | "comma" => Delimiter::Comma,
            ";" | "semicolon" => Delimiter::Semicolon,
            "\t" | "tab" => Delimiter::Tab,
            "|" | "pipe" => Delimiter::Pipe,
            " " | "space" | "spaces" | "whitespace" => Delimiter::Whitespace,
            other => {
                return self.fail(
                    pos(&d),
                    format!("data.delimiter `{other}` is not `,`, `;`, `tab`, `|` or `whitespace`"),
                );
            }
        })
    }

    fn split(&self, s: Sp<raw::RawSplit>) -> Result<Split, SpecError> {
        let at = pos(&s);
        let raw = s.value;
        let mut fracs = [0.0f64; 3];
        for (slot, (name, v)) in fracs.iter_mut().zip([
            ("train", Some(&raw.train)),
            ("validation", Some(&raw.validation)),
            ("test", raw.test.as_ref()),
        ]) {
            let Some(v) = v else { continue };
            if !v.value.is_finite() || v.value < 0.0 || v.value > 1.0 {
                return self.fail(
                    pos(v),
                    format!(
                        "data.split.{name} must be a fraction between 0 and 1, got {}",
                        v.value
                    ),
                );
            }
            *slot = v.value;
        }
        let [train, validation, test] = fracs;
        if train == 0.0 {
            return self.fail(pos(&raw.train), "data.split.train must be greater than 0");
        }
        if validation == 0.0 {
            return self.fail(
                pos(&raw.validation),
                "data.split.validation must be greater than 0 (it drives per-epoch metrics and early stopping)",
            );
        }
        let sum = train + validation + test;
        if (sum - 1.0).abs() > 1e-6 {
            return self.fail(
                at,
                format!("data.split fractions must sum to 1, they sum to {sum}"),
            );
        }
        Ok(Split {
            train,
            validation,
            test,
        })
    }

    fn model(&self, raw: Sp<raw::RawModel>, data: &DataSpec) -> Result<ModelSpec, SpecError> {
        let model_pos = pos(&raw);
        let raw = raw.value;
        let kind = raw.kind.value;
        let hidden: Vec<usize> = match raw.hidden {
            None => vec![64],
            Some(h) => {
                if let Some(zero) = h.value.iter().find(|w| w.value == 0) {
                    return self.fail(pos(zero), "model.hidden layer widths must be at least 1");
                }
                if let Some(big) = h.value.iter().find(|w| w.value > MAX_WIDTH) {
                    return self.fail(
                        pos(big),
                        format!("model.hidden layer widths must be at most {MAX_WIDTH}"),
                    );
                }
                if h.value.len() > MAX_LAYERS {
                    return self.fail(
                        pos(&h),
                        format!("model.hidden may list at most {MAX_LAYERS} layers"),
                    );
                }
                if let Some(pair) = h.value.windows(2).find(|p| {
                    p[0].value
                        .checked_mul(p[1].value)
                        .is_none_or(|n| n > MAX_LAYER_PARAMS)
                }) {
                    return self.fail(
                        pos(&pair[1]),
                        format!(
                            "model.hidden: a {}x{} layer has over {MAX_LAYER_PARAMS} weights",
                            pair[0].value, pair[1].value
                        ),
                    );
                }
                h.value.into_iter().map(|w| w.value).collect()
            }
        };
        let dropout = match raw.dropout {
            None => 0.0,
            Some(d) if !(0.0..1.0).contains(&d.value) => {
                return self.fail(
                    pos(&d),
                    format!("model.dropout must be in [0, 1), got {}", d.value),
                );
            }
            Some(d) => d.value,
        };
        let conv = match (kind, raw.conv) {
            (ModelKind::Mlp, Some(c)) => {
                return self.fail(pos(&c), "model.conv is only valid with `type: cnn`");
            }
            (ModelKind::Mlp, None) => None,
            (ModelKind::Cnn, c) => {
                let Some(shape) = &data.shape else {
                    return self.fail(
                        pos(&raw.kind),
                        "a cnn model needs data.shape (for example [1, 8, 8]) to see rows as images",
                    );
                };
                Some(self.conv(c, shape.value, model_pos)?)
            }
        };
        Ok(ModelSpec {
            kind,
            hidden,
            activation: raw.activation.unwrap_or(Activation::Relu),
            dropout,
            conv,
        })
    }

    fn conv(
        &self,
        raw: Option<Sp<raw::RawConv>>,
        shape: [usize; 3],
        model_pos: Pos,
    ) -> Result<ConvSpec, SpecError> {
        let (at, raw) = match raw {
            Some(c) => (pos(&c), c.value),
            None => (model_pos, raw::RawConv::default()),
        };
        let channels: Vec<usize> = match raw.channels {
            None => vec![16, 32],
            Some(c) if c.value.is_empty() => {
                return self.fail(pos(&c), "model.conv.channels must list at least one layer");
            }
            Some(c) => {
                if let Some(zero) = c.value.iter().find(|w| w.value == 0) {
                    return self.fail(pos(zero), "model.conv.channels must be at least 1");
                }
                if let Some(big) = c.value.iter().find(|w| w.value > MAX_CHANNELS) {
                    return self.fail(
                        pos(big),
                        format!("model.conv.channels must be at most {MAX_CHANNELS}"),
                    );
                }
                if c.value.len() > MAX_LAYERS {
                    return self.fail(
                        pos(&c),
                        format!("model.conv.channels may list at most {MAX_LAYERS} layers"),
                    );
                }
                c.value.into_iter().map(|w| w.value).collect()
            }
        };
        let kernel = match raw.kernel {
            None => 3,
            Some(k) if k.value > MAX_KERNEL => {
                return self.fail(
                    pos(&k),
                    format!("model.conv.kernel must be at most {MAX_KERNEL}"),
                );
            }
            Some(k) if k.value == 0 || k.value % 2 == 0 => {
                return self.fail(
                    pos(&k),
                    format!(
                        "model.conv.kernel must be odd (same padding keeps the image size), got {}",
                        k.value
                    ),
                );
            }
            Some(k) => k.value,
        };
        let pool = raw.pool.unwrap_or(Pool::Max);
        if pool != Pool::None {
            let [_, h, w] = shape;
            let layers = u32::try_from(channels.len()).unwrap_or(u32::MAX);
            let factor = 2usize.checked_pow(layers).unwrap_or(usize::MAX);
            if h / factor == 0 || w / factor == 0 {
                return self.fail(
                    at,
                    format!(
                        "{} conv layers with 2x2 pooling shrink a {h}x{w} image below 1x1; use fewer layers or `pool: none`",
                        channels.len()
                    ),
                );
            }
        }
        Ok(ConvSpec {
            channels,
            kernel,
            pool,
        })
    }

    fn training(&self, raw: raw::RawTraining) -> Result<TrainingSpec, SpecError> {
        let epochs = match raw.epochs {
            None => 20,
            Some(e) if e.value == 0 => {
                return self.fail(pos(&e), "training.epochs must be at least 1");
            }
            Some(e) if e.value > MAX_EPOCHS => {
                return self.fail(
                    pos(&e),
                    format!("training.epochs must be at most {MAX_EPOCHS}"),
                );
            }
            Some(e) => e.value,
        };
        let batch_size = match raw.batch_size {
            None => 32,
            Some(b) if b.value == 0 => {
                return self.fail(pos(&b), "training.batch_size must be at least 1");
            }
            Some(b) if b.value > MAX_BATCH => {
                return self.fail(
                    pos(&b),
                    format!("training.batch_size must be at most {MAX_BATCH}"),
                );
            }
            Some(b) => b.value,
        };
        let optimizer = self.optimizer(raw.optimizer)?;
        let schedule = self.schedule(raw.schedule, optimizer.lr)?;
        let early_stopping = match raw.early_stopping {
            None => None,
            Some(e) => {
                let e = e.value;
                let patience = e.patience.map(|p| (p.value, pos(&p)));
                if let Some((0, p)) = patience {
                    return self.fail(p, "training.early_stopping.patience must be at least 1");
                }
                let min_delta = match e.min_delta {
                    Some(d) if !d.value.is_finite() || d.value < 0.0 => {
                        return self.fail(
                            pos(&d),
                            "training.early_stopping.min_delta must be 0 or more",
                        );
                    }
                    Some(d) => d.value,
                    None => 0.0,
                };
                Some(EarlyStopping {
                    patience: patience.map_or(5, |p| p.0),
                    min_delta,
                    restore_best: e.restore_best.unwrap_or(true),
                })
            }
        };
        Ok(TrainingSpec {
            epochs,
            batch_size,
            optimizer,
            schedule,
            early_stopping,
            device: raw.device.unwrap_or(DeviceChoice::Auto),
            class_weight: raw.class_weight.unwrap_or_default(),
        })
    }

    fn optimizer(&self, raw: Option<Sp<raw::RawOptimizer>>) -> Result<OptimizerSpec, SpecError> {
        let raw = raw.map(|r| r.value).unwrap_or_default();
        let kind = raw.kind.unwrap_or(OptimizerKind::Adam);
        let lr = match raw.lr {
            None => 1e-3,
            Some(l) if !l.value.is_finite() || l.value <= 0.0 => {
                return self.fail(
                    pos(&l),
                    format!(
                        "training.optimizer.lr must be a positive number, got {}",
                        l.value
                    ),
                );
            }
            Some(l) => l.value,
        };
        let weight_decay = match raw.weight_decay {
            None if kind == OptimizerKind::Adamw => 1e-2,
            None => 0.0,
            Some(w) if !w.value.is_finite() || w.value < 0.0 => {
                return self.fail(pos(&w), "training.optimizer.weight_decay must be 0 or more");
            }
            Some(w) => w.value,
        };
        let momentum = match raw.momentum {
            None => 0.0,
            Some(m) if kind != OptimizerKind::Sgd => {
                return self.fail(
                    pos(&m),
                    "training.optimizer.momentum only applies to `type: sgd` (adam uses betas)",
                );
            }
            Some(m) if !(0.0..1.0).contains(&m.value) => {
                return self.fail(pos(&m), "training.optimizer.momentum must be in [0, 1)");
            }
            Some(m) => m.value,
        };
        let nesterov = match raw.nesterov {
            Some(n) if n.value && (kind != OptimizerKind::Sgd || momentum == 0.0) => {
                return self.fail(
                    pos(&n),
                    "training.optimizer.nesterov needs `type: sgd` with a momentum above 0",
                );
            }
            Some(n) => n.value,
            None => false,
        };
        let betas = match raw.betas {
            Some(b) if kind == OptimizerKind::Sgd => {
                return self.fail(
                    pos(&b),
                    "training.optimizer.betas only apply to adam and adamw",
                );
            }
            Some(b) => {
                let v: Vec<f64> = b.value.iter().map(|x| x.value).collect();
                match v.as_slice() {
                    [b1, b2] if (0.0..1.0).contains(b1) && (0.0..1.0).contains(b2) => [*b1, *b2],
                    _ => {
                        return self.fail(
                            pos(&b),
                            "training.optimizer.betas must be two numbers in [0, 1)",
                        );
                    }
                }
            }
            None => [0.9, 0.999],
        };
        let epsilon = match raw.epsilon {
            Some(e) if !e.value.is_finite() || e.value <= 0.0 => {
                return self.fail(pos(&e), "training.optimizer.epsilon must be positive");
            }
            Some(e) => e.value,
            None => 1e-8,
        };
        Ok(OptimizerSpec {
            kind,
            lr,
            weight_decay,
            momentum,
            nesterov,
            betas,
            epsilon,
        })
    }

    fn schedule(
        &self,
        raw: Option<Sp<raw::RawSchedule>>,
        lr: f64,
    ) -> Result<ScheduleSpec, SpecError> {
        let raw = raw.map(|r| r.value).unwrap_or_default();
        let kind = raw.kind.unwrap_or(ScheduleKind::Constant);
        let min_lr = match raw.min_lr {
            Some(m) if kind != ScheduleKind::Cosine => {
                return self.fail(
                    pos(&m),
                    "training.schedule.min_lr only applies to `type: cosine`",
                );
            }
            Some(m) if !m.value.is_finite() || m.value < 0.0 || m.value > lr => {
                return self.fail(
                    pos(&m),
                    format!(
                        "training.schedule.min_lr must be between 0 and the optimizer lr ({lr})"
                    ),
                );
            }
            Some(m) => m.value,
            None => 0.0,
        };
        let step_size = match raw.step_size {
            Some(s) if kind != ScheduleKind::Step => {
                return self.fail(
                    pos(&s),
                    "training.schedule.step_size only applies to `type: step`",
                );
            }
            Some(s) if s.value == 0 => {
                return self.fail(pos(&s), "training.schedule.step_size must be at least 1");
            }
            Some(s) => s.value,
            None => 10,
        };
        let gamma = match raw.gamma {
            Some(g) if kind != ScheduleKind::Step => {
                return self.fail(
                    pos(&g),
                    "training.schedule.gamma only applies to `type: step`",
                );
            }
            Some(g) if !(g.value > 0.0 && g.value <= 1.0) => {
                return self.fail(pos(&g), "training.schedule.gamma must be in (0, 1]");
            }
            Some(g) => g.value,
            None => 0.1,
        };
        Ok(ScheduleSpec {
            kind,
            min_lr,
            step_size,
            gamma,
        })
    }
}

#[cfg(test)]
mod tests;
