//! Using a trained model: open a run only after its manifest verifies (signatures, and the
//! digests of exactly the files that will be loaded), then stream CSV rows through the run's
//! recorded preprocessing and the network (`auditai predict`; `auditai eval` shares [`Model`] and
//! [`Columns`]).
//!
//! Owns the mapping from input columns to features and the output row format. Writes its output
//! to a temporary file renamed into place; appends to a prediction log through
//! [`crate::predlog`]. Never writes into the run directory.

mod input;
mod stream;

use std::path::{Path, PathBuf};

use crate::manifest;
use crate::run_dir;
use crate::spec::{DeviceChoice, Spec};
use crate::train::{self, Net, TrainError, device};
use crate::trust::{Required, RunKind, SignedRun, TrustError};

pub use input::{ColumnError, Columns, Wanted};
pub use stream::{PredictOptions, PredictReport, Prediction, json_f32, run};

/// The most bytes of weights auditai loads (4 bytes per parameter at the parameter bound).
const MAX_WEIGHTS: u64 = (train::model::MAX_PARAMETERS as u64) * 4 + (1 << 20);

/// Errors from opening a model or predicting.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The run was refused or unreadable at the gate (a refusal is exit 1).
    #[error("cannot load the model: {0}")]
    Trust(#[from] TrustError),
    /// The input is unusable (exit 2).
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The input file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The output or log could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Building the network failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// No wgpu adapter for `--device wgpu`.
    #[error("{0}")]
    Device(#[from] device::NoAdapter),
    /// The prediction log could not be used.
    #[error(transparent)]
    Log(#[from] crate::predlog::LogError),
}

pub use crate::data::Preprocessing;

impl PredictError {
    /// Whether this is a definite "no" about the run (exit 1): the gate refused it.
    pub fn is_refusal(&self) -> bool {
        matches!(self, PredictError::Trust(e) if e.is_refusal())
    }
}

/// A verified, loaded model.
pub struct Model {
    /// The manifest it was verified against.
    pub manifest: PathBuf,
    /// blake3 of the manifest's bytes.
    pub manifest_blake3: String,
    /// The model's subjects (its weights and summary) as the manifest records them.
    pub subjects: Vec<manifest::ResourceDescriptor>,
    /// Whether the manifest's signatures and the loaded files' digests were checked.
    pub verified: bool,
    /// The resolved spec it was trained from.
    pub spec: Spec,
    /// The run's preprocessing.
    pub pre: Preprocessing,
    /// The manifest's data dependencies (the training CSV, or each of `data.sources`), in order.
    pub data: Vec<manifest::ResourceDescriptor>,
    net: Net,
    backend: device::Backend,
}

/// How to open a model.
pub struct OpenOptions<'a> {
    /// Whose signatures to require (`Unchecked`: `--no-verify`).
    pub trust: Required<'a>,
    /// Where to run the network.
    pub device: DeviceChoice,
}

impl Model {
    /// Open the run at `path` (a run directory or its manifest) through the gate: its
    /// signatures as `opts.trust` requires, then the spec, preprocessing and weights, each read
    /// through the manifest's digest, and build the network.
    pub fn open(
        path: &Path,
        opts: &OpenOptions<'_>,
    ) -> Result<(Model, Option<device::Notice>), PredictError> {
        let run = SignedRun::open(path, RunKind::Training, opts.trust)?;
        let weights = run.read(run_dir::MODEL_BPK, MAX_WEIGHTS)?;
        let pre = run.preprocessing()?;
        let spec = run.spec()?;
        let (backend, notice) = device::select(opts.device)?;
        let outputs = pre.classes.as_ref().map_or(1, Vec::len);
        let net = train::load_net(
            &spec,
            pre.features.len(),
            outputs,
            &weights,
            &backend.device,
        )?;
        let st = run.statement();
        let data = st
            .predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .take(spec.data.sources.len().max(1))
            .cloned()
            .collect();
        Ok((
            Model {
                manifest: run.path().to_path_buf(),
                manifest_blake3: run.blake3_hex(),
                subjects: st.subject.clone(),
                verified: run.checked(),
                spec,
                pre,
                data,
                net,
                backend,
            },
            notice,
        ))
    }

    /// Classification: the class names; regression: `None`.
    pub fn classes(&self) -> Option<&[String]> {
        self.pre.classes.as_deref()
    }

    /// Per row, the class probabilities (or the one predicted value, in the target's original
    /// units) of `rows` rows of encoded features.
    pub fn infer(&self, x: Vec<f32>, rows: usize) -> Vec<Vec<f32>> {
        let width = self.classes().map_or(1, <[String]>::len);
        let out = train::infer(
            &self.net,
            x,
            rows,
            self.pre.width(),
            &self.backend.device,
            self.classes().is_some(),
        );
        out.chunks(width)
            .map(|o| match self.classes() {
                Some(_) => o.to_vec(),
                None => o.iter().map(|&y| self.pre.unscale_target(y)).collect(),
            })
            .collect()
    }

    /// The device description (`cpu (flex (CPU))`).
    pub fn device(&self) -> String {
        format!("{} ({})", self.backend.kind, self.backend.adapter)
    }
}
