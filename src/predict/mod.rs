//! Using a trained model: open a run only after its manifest verifies (signatures, and the
//! digests of exactly the files that will be loaded), then stream CSV rows through the run's
//! recorded preprocessing and the network (`auditai predict`; `auditai eval` shares [`Model`] and
//! [`Columns`]).
//!
//! Owns the mapping from input columns to features and the output row format. Writes its output
//! to a temporary file renamed into place; appends to a prediction log through
//! [`crate::predlog`]. Never writes into the run directory.

mod input;

use std::path::{Path, PathBuf};

use std::io::Write as _;

use serde::Serialize;

use crate::manifest;
use crate::run_dir;
use crate::spec::{DeviceChoice, Spec};
use crate::train::{self, Net, TrainError, device};
use crate::trust::{Required, RunKind, SignedRun, TrustError};

pub use input::{Columns, Label, LineLimit, RowError, parse_row, row_digest};

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
    /// The manifest's data dependency (the training CSV), when recorded.
    pub data: Option<manifest::ResourceDescriptor>,
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
            .first()
            .filter(|d| d.uri.as_deref().is_some_and(|u| u.starts_with("file:")))
            .cloned();
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

    /// Per row, the class probabilities (or the one predicted value) of `rows` rows of
    /// normalised features.
    pub fn infer(&self, x: Vec<f32>, rows: usize) -> Vec<Vec<f32>> {
        let width = self.classes().map_or(1, <[String]>::len);
        let out = train::infer(
            &self.net,
            x,
            rows,
            self.pre.features.len(),
            &self.backend.device,
            self.classes().is_some(),
        );
        out.chunks(width).map(<[f32]>::to_vec).collect()
    }

    /// The device description (`cpu (flex (CPU))`).
    pub fn device(&self) -> String {
        format!("{} ({})", self.backend.kind, self.backend.adapter)
    }
}

/// One output row.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// 1-based data row number in the input (header excluded).
    pub row: u64,
    /// The input's id column, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The predicted class name, or the predicted value.
    pub prediction: serde_json::Value,
    /// Class probabilities by class name (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether the model was verified before it was loaded (false with `--no-verify`).
    pub model_verified: bool,
}

impl Model {
    /// The output row of one input row from its network output.
    pub fn prediction(&self, row: u64, id: Option<String>, out: &[f32]) -> Prediction {
        let (prediction, probabilities) = match self.classes() {
            Some(classes) => {
                let best = out
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                let probs = classes
                    .iter()
                    .zip(out)
                    .map(|(c, p)| (c.clone(), json_f32(*p)))
                    .collect();
                (
                    serde_json::Value::String(classes.get(best).cloned().unwrap_or_default()),
                    Some(probs),
                )
            }
            None => (json_f32(out.first().copied().unwrap_or(f32::NAN)), None),
        };
        Prediction {
            row,
            id,
            prediction,
            probabilities,
            model_verified: self.verified,
        }
    }
}

/// An f32 as a JSON number with its shortest round-trip spelling (null when not finite).
pub fn json_f32(v: f32) -> serde_json::Value {
    if v.is_finite() {
        serde_json::Number::from_f64(f64::from(v))
            .and_then(|_| v.to_string().parse::<serde_json::Number>().ok())
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    } else {
        serde_json::Value::Null
    }
}

/// How to predict.
#[derive(Default)]
pub struct PredictOptions {
    /// The input CSV.
    pub input: PathBuf,
    /// Where to write (default: the writer given to [`run`]).
    pub output: Option<PathBuf>,
    /// JSON Lines instead of CSV.
    pub json: bool,
    /// Skip (and count) rows with an empty or non-numeric feature instead of stopping.
    pub skip_bad_rows: bool,
    /// Append one hash-chained entry per prediction to this log.
    pub log: Option<PathBuf>,
    /// The id column (default: a column named `id`, when there is one).
    pub id_column: Option<String>,
    /// Sign a checkpoint of the log with this key at the end.
    pub checkpoint_key: Option<crate::sign::SecretKey>,
}

/// What a prediction run did.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    /// Rows predicted.
    pub rows: u64,
    /// Rows skipped (`--skip-bad-rows`).
    pub skipped: u64,
    /// The first few skipped rows and why.
    pub skipped_examples: Vec<String>,
    /// Input columns nothing used.
    pub ignored_columns: Vec<String>,
    /// The output file, when one was written.
    pub output: Option<PathBuf>,
    /// Entries in the log afterwards.
    pub log_entries: Option<u64>,
    /// Whether a torn last log line (from a crash) was cut off first.
    pub log_repaired: bool,
    /// The signed checkpoint written next to the log.
    pub checkpoint: Option<PathBuf>,
}

/// Rows per batch through the network.
const BATCH: usize = 4096;

/// Stream `opts.input` through `model`, writing one output row per input row to `opts.output`
/// (a temporary file renamed into place at the end) or to `out`.
pub fn run(
    model: &Model,
    opts: &PredictOptions,
    out: &mut dyn std::io::Write,
) -> Result<PredictReport, PredictError> {
    let input_err = |line: Option<u64>, message: String| PredictError::Input {
        path: opts.input.clone(),
        line,
        message,
    };
    let file =
        crate::fsio::open_regular(&opts.input).map_err(|e| input_err(None, e.to_string()))?;
    // Never write over the input (or the log over either): the input is the user's.
    let same = |a: &Path, b: &Path| {
        let canon = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p));
        canon(a)
            .ok()
            .zip(canon(b).ok())
            .is_some_and(|(a, b)| a == b)
    };
    for (what, p) in [
        ("--output", opts.output.as_ref()),
        ("--log", opts.log.as_ref()),
    ] {
        if p.is_some_and(|p| same(p, &opts.input)) {
            return Err(input_err(None, format!("{what} names the input file")));
        }
    }
    if let (Some(o), Some(l)) = (&opts.output, &opts.log)
        && same(o, l)
    {
        return Err(input_err(
            None,
            "--output and --log name the same file".into(),
        ));
    }
    if let Some(o) = &opts.output
        && std::fs::symlink_metadata(o).is_ok()
    {
        return Err(PredictError::Io {
            path: o.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; pass another --output (auditai never replaces a file it was not asked to write)",
            ),
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(input::LineLimit::new(std::io::BufReader::new(file)));
    let header = reader
        .headers()
        .map_err(|e| input_err(Some(1), e.to_string()))?
        .clone();
    let cols = Columns::match_header(&header, &model.pre, opts.id_column.as_deref(), false, &[])
        .map_err(|m| input_err(Some(1), m))?;
    let mut log = match &opts.log {
        Some(p) => Some(crate::predlog::Appender::open(p)?),
        None => None,
    };
    let log_dir = opts
        .log
        .as_deref()
        .map_or(Path::new("."), crate::run_dir::of_manifest);
    let model_ref = crate::predlog::ModelRef {
        manifest: crate::fsio::relative_to(log_dir, &model.manifest),
        blake3: model.manifest_blake3.clone(),
        verified: model.verified,
    };
    let mut temp = match &opts.output {
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Some(
                tempfile::Builder::new()
                    .prefix(".auditai-predict-")
                    .tempfile_in(dir)
                    .map_err(|source| PredictError::Io {
                        path: p.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let out_path = opts.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    let io_err = |source: std::io::Error| PredictError::Io {
        path: out_path.clone(),
        source,
    };
    let mut report = PredictReport {
        rows: 0,
        skipped: 0,
        skipped_examples: Vec::new(),
        ignored_columns: cols.ignored.clone(),
        output: opts.output.clone(),
        log_entries: None,
        log_repaired: log.as_ref().is_some_and(|l| l.repaired),
        checkpoint: None,
    };
    {
        let sink: &mut dyn std::io::Write = match temp.as_mut() {
            Some(t) => t.as_file_mut(),
            None => out,
        };
        let mut sink = std::io::BufWriter::new(sink);
        if !opts.json {
            let mut head = vec!["row".to_string()];
            if cols.id.is_some() {
                head.push("id".into());
            }
            head.push("prediction".into());
            for c in model.classes().unwrap_or_default() {
                head.push(format!("p_{c}"));
            }
            head.push("model_verified".into());
            write_csv_record(&mut sink, &head).map_err(io_err)?;
        }
        let mut batch = Batch::default();
        let mut record = csv::StringRecord::new();
        let mut row = 0u64;
        let (mut raw, mut x) = (Vec::new(), Vec::new());
        loop {
            let more = reader.read_record(&mut record).map_err(|e| {
                let line = e.position().map(csv::Position::line);
                input_err(line, e.to_string())
            })?;
            if more {
                row += 1;
                let line = record.position().map(csv::Position::line);
                let before = x.len();
                match parse_row(&record, &cols, &model.pre, &mut raw, &mut x) {
                    Ok(()) => {
                        batch.rows.push(row);
                        batch
                            .ids
                            .push(cols.id.and_then(|i| record.get(i)).map(str::to_string));
                        batch.digests.push(hex::encode(row_digest(&raw, None)));
                    }
                    Err(e) => {
                        x.truncate(before);
                        let why = format!(
                            "line {}: column `{}`: {}",
                            line.unwrap_or(row + 1),
                            e.column,
                            e.message
                        );
                        if !opts.skip_bad_rows {
                            return Err(input_err(
                                line,
                                format!(
                                    "column `{}`: {} (or pass --skip-bad-rows)",
                                    e.column, e.message
                                ),
                            ));
                        }
                        report.skipped += 1;
                        if report.skipped_examples.len() < 5 {
                            report.skipped_examples.push(why);
                        }
                    }
                }
            }
            if batch.rows.len() >= BATCH || (!more && !batch.rows.is_empty()) {
                let n = batch.rows.len();
                let outputs = model.infer(std::mem::take(&mut x), n);
                let mut logged = Vec::with_capacity(n);
                for (k, o) in outputs.iter().enumerate() {
                    let p = model.prediction(batch.rows[k], batch.ids[k].clone(), o);
                    write_prediction(&mut sink, &p, opts.json, model).map_err(io_err)?;
                    if log.is_some() {
                        let mut v = serde_json::to_value(&p).unwrap_or_default();
                        if let Some(m) = v.as_object_mut() {
                            m.remove("model_verified");
                        }
                        logged.push((batch.digests[k].clone(), v));
                    }
                }
                // The output is flushed before the log records what it says.
                sink.flush().map_err(io_err)?;
                if let Some(l) = log.as_mut() {
                    l.append(&model_ref, &logged)?;
                }
                report.rows += n as u64;
                batch = Batch::default();
            }
            if !more {
                break;
            }
        }
        sink.flush().map_err(io_err)?;
    }
    if let (Some(t), Some(p)) = (temp, &opts.output) {
        t.as_file().sync_all().map_err(io_err)?;
        t.persist(p).map_err(|e| io_err(e.error))?;
        crate::fsio::sync_parent(p).map_err(io_err)?;
    }
    report.log_entries = log.as_ref().map(crate::predlog::Appender::entries);
    if let (Some(l), Some(k)) = (&log, &opts.checkpoint_key) {
        report.checkpoint = Some(l.checkpoint(k)?);
    }
    Ok(report)
}

#[derive(Default)]
struct Batch {
    rows: Vec<u64>,
    ids: Vec<Option<String>>,
    digests: Vec<String>,
}

fn write_csv_record(w: &mut dyn std::io::Write, fields: &[String]) -> std::io::Result<()> {
    let mut wtr = csv::WriterBuilder::new().from_writer(Vec::new());
    wtr.write_record(fields)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let bytes = wtr
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(&bytes)
}

fn write_prediction(
    w: &mut dyn std::io::Write,
    p: &Prediction,
    json: bool,
    model: &Model,
) -> std::io::Result<()> {
    if json {
        let mut line = serde_json::to_vec(p).unwrap_or_default();
        line.push(b'\n');
        return w.write_all(&line);
    }
    let mut fields = vec![p.row.to_string()];
    if let Some(id) = &p.id {
        fields.push(id.clone());
    }
    fields.push(match &p.prediction {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if let Some(probs) = &p.probabilities {
        for c in model.classes().unwrap_or_default() {
            fields.push(probs.get(c).map(ToString::to_string).unwrap_or_default());
        }
    }
    fields.push(p.model_verified.to_string());
    write_csv_record(w, &fields)
}
