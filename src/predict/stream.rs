//! `auditai predict`'s stream: raw CSV rows through the run's recorded preprocessing and the
//! network, in batches, one output row per input row (a row that cannot be scored gets an empty
//! prediction and its reason), the kept columns carried through, and scored rows appended to the
//! prediction log after the output says them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::input::{Columns, Wanted};
use super::{Model, PredictError};
use crate::data::table::{self, Dialect};

/// Rows per batch through the network.
const BATCH: usize = 4096;

/// Names an output row uses for itself, which a kept column may not take.
const RESERVED: &[&str] = &[
    "row",
    "id",
    "prediction",
    "probabilities",
    "unseen",
    "reason",
    "model_verified",
];

/// One output row.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// 1-based data row number in the input (header excluded).
    pub row: u64,
    /// The input's id column, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Input columns carried through (`--keep`).
    #[serde(flatten)]
    pub kept: BTreeMap<String, String>,
    /// The predicted class name, or the predicted value (null when the row cannot be scored).
    pub prediction: serde_json::Value,
    /// Class probabilities by class name (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<serde_json::Map<String, serde_json::Value>>,
    /// Categorical values the training rows never had (encoded as all zeros).
    #[serde(skip_serializing_if = "is_zero")]
    pub unseen: u32,
    /// Why the row could not be scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the model was verified before it was loaded (false with `--no-verify`).
    pub model_verified: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

impl Model {
    /// The output row of a scored input row from its network output, or `None` when the output
    /// is not finite (then the row is reported as unscorable).
    fn prediction(
        &self,
        out: &[f32],
    ) -> Option<(
        serde_json::Value,
        Option<serde_json::Map<String, serde_json::Value>>,
    )> {
        if out.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(match self.classes() {
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
        })
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
    /// Append one hash-chained entry per prediction to this log.
    pub log: Option<PathBuf>,
    /// The id column (default: a column named `id`, when there is one).
    pub id_column: Option<String>,
    /// Input columns to copy to every output row.
    pub keep: Vec<String>,
    /// Sign a checkpoint of the log with this key at the end.
    pub checkpoint_key: Option<crate::sign::SecretKey>,
}

/// What a prediction run did.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    /// Rows predicted.
    pub rows: u64,
    /// Rows that could not be scored (each has an output row with its reason).
    pub unscored: u64,
    /// The first few of them and why.
    pub unscored_examples: Vec<String>,
    /// Categorical values never seen in training, over all rows.
    pub unseen: u64,
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

/// One input row waiting for the network.
struct Pending {
    base: Prediction,
    /// Its row in the batch's feature matrix, when it encoded.
    slot: Option<usize>,
    digest: String,
}

/// Stream `opts.input` through `model`, writing one output row per input row to `opts.output`
/// (a temporary file renamed into place at the end) or to `out`. Nothing is written before the
/// header matched and the first batch was read and scored.
pub fn run(
    model: &Model,
    opts: &PredictOptions,
    out: &mut dyn Write,
) -> Result<PredictReport, PredictError> {
    check_options(opts)?;
    let input_err = |line: Option<u64>, message: String| PredictError::Input {
        path: opts.input.clone(),
        line,
        message,
    };
    let file =
        crate::fsio::open_regular(&opts.input).map_err(|e| input_err(None, e.to_string()))?;
    let (head, rest) = peek(file).map_err(|e| input_err(None, e.to_string()))?;
    let dialect = Dialect {
        delimiter: table::sniff(&head),
        missing: model.pre.dialect.missing.clone(),
    };
    let (mut reader, meter) = table::reader(std::io::Cursor::new(head).chain(rest), &dialect);
    let header = reader
        .headers()
        .map_err(|e| input_err(Some(1), table::csv_message(&e)))?
        .clone();
    let want = Wanted {
        id: opts.id_column.as_deref(),
        keep: &opts.keep,
        ..Wanted::default()
    };
    let cols = Columns::match_header(&header, &model.pre, &want)
        .map_err(|e| input_err(Some(1), e.to_string()))?;
    let mut log = match &opts.log {
        Some(p) => Some(crate::predlog::Appender::open(p)?),
        None => None,
    };
    let mut sink = Sink::open(opts, out)?;
    let mut report = PredictReport {
        rows: 0,
        unscored: 0,
        unscored_examples: Vec::new(),
        unseen: 0,
        ignored_columns: cols.ignored.clone(),
        output: opts.output.clone(),
        log_entries: None,
        log_repaired: log.as_ref().is_some_and(|l| l.repaired),
        checkpoint: None,
    };
    let model_ref = model_ref(model, opts);
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut started = false;
    loop {
        let mut batch = Vec::new();
        let mut x = Vec::new();
        while batch.len() < BATCH {
            let more = reader.read_record(&mut record).map_err(|e| {
                input_err(
                    e.position().map(csv::Position::line),
                    table::csv_message(&e),
                )
            })?;
            if !more {
                break;
            }
            meter.next_record();
            row += 1;
            batch.push(pending(model, &cols, &header, &record, row, &mut x));
        }
        if batch.is_empty() && started {
            break;
        }
        if !started {
            sink.header(model, opts, &cols)?;
            started = true;
        }
        let done = batch.len() < BATCH;
        let logged = score(model, batch, x, &mut sink, &mut report)?;
        // The output is flushed before the log records what it says.
        sink.flush()?;
        if let Some(l) = log.as_mut() {
            l.append(&model_ref, &logged)?;
        }
        if done {
            break;
        }
    }
    sink.finish(opts)?;
    report.log_entries = log.as_ref().map(crate::predlog::Appender::entries);
    if let (Some(l), Some(k)) = (&log, &opts.checkpoint_key) {
        report.checkpoint = Some(l.checkpoint(k)?);
    }
    Ok(report)
}

/// Refuse an output or log that is the input (or each other), an output that exists, and a kept
/// column whose name an output row uses itself.
fn check_options(opts: &PredictOptions) -> Result<(), PredictError> {
    let input_err = |message: String| PredictError::Input {
        path: opts.input.clone(),
        line: None,
        message,
    };
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
            return Err(input_err(format!(
                "{what} names the input file; auditai never writes over its input"
            )));
        }
    }
    if let (Some(o), Some(l)) = (&opts.output, &opts.log)
        && same(o, l)
    {
        return Err(input_err("--output and --log name the same file".into()));
    }
    if let Some(k) = opts.keep.iter().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(input_err(format!(
            "--keep {k}: an output row has a field of that name already"
        )));
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
    Ok(())
}

/// The first 64 KiB of a stream (for sniffing its dialect) and the stream after them.
fn peek<R: Read>(mut r: R) -> std::io::Result<(Vec<u8>, R)> {
    let mut head = vec![0u8; 1 << 16];
    let mut n = 0;
    while n < head.len() {
        let k = r.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    Ok((head, r))
}

/// One input row, encoded onto `x` when it can be.
fn pending(
    model: &Model,
    cols: &Columns,
    header: &csv::StringRecord,
    record: &csv::StringRecord,
    row: u64,
    x: &mut Vec<f32>,
) -> Pending {
    let get = |i: usize| {
        record
            .get(i)
            .map_or(String::new(), |s| s.trim().to_string())
    };
    let mut base = Prediction {
        row,
        id: cols.id.map(get),
        kept: cols
            .keep
            .iter()
            .map(|(n, i)| (n.clone(), get(*i)))
            .collect(),
        prediction: serde_json::Value::Null,
        probabilities: None,
        unseen: 0,
        reason: None,
        model_verified: model.verified,
    };
    if record.len() != header.len() {
        base.reason = Some(format!(
            "{} fields, the header has {}",
            record.len(),
            header.len()
        ));
        return Pending {
            base,
            slot: None,
            digest: String::new(),
        };
    }
    let cells = cols.cells(record);
    let width = model.pre.width();
    match model.pre.encode(&cells, x) {
        Ok(e) => {
            base.unseen = e.unseen;
            Pending {
                base,
                slot: Some(x.len() / width - 1),
                digest: hex::encode(model.pre.row_digest(&cells, None)),
            }
        }
        Err(e) => {
            base.reason = Some(e.to_string());
            Pending {
                base,
                slot: None,
                digest: String::new(),
            }
        }
    }
}

/// Run the batch through the network and write its rows in input order; returns the log
/// entries of the scored rows.
fn score(
    model: &Model,
    batch: Vec<Pending>,
    x: Vec<f32>,
    sink: &mut Sink<'_>,
    report: &mut PredictReport,
) -> Result<Vec<(String, serde_json::Value)>, PredictError> {
    let rows = x.len() / model.pre.width().max(1);
    let outputs = model.infer(x, rows);
    let mut logged = Vec::new();
    for p in batch {
        let mut out = p.base;
        match p.slot.map(|s| model.prediction(&outputs[s])) {
            Some(Some((prediction, probabilities))) => {
                out.prediction = prediction;
                out.probabilities = probabilities;
                report.rows += 1;
                report.unseen += u64::from(out.unseen);
                let mut v = serde_json::to_value(&out).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("model_verified");
                }
                logged.push((p.digest, v));
            }
            Some(None) => out.reason = Some("the model's output is not a finite number".into()),
            None => {}
        }
        if let Some(why) = &out.reason {
            report.unscored += 1;
            if report.unscored_examples.len() < 5 {
                report
                    .unscored_examples
                    .push(format!("row {}: {why}", out.row));
            }
        }
        sink.write(model, &out)?;
    }
    Ok(logged)
}

/// The log's reference to the model: its manifest relative to the log's directory.
fn model_ref(model: &Model, opts: &PredictOptions) -> crate::predlog::ModelRef {
    let log_dir = opts
        .log
        .as_deref()
        .map_or(Path::new("."), crate::run_dir::of_manifest);
    crate::predlog::ModelRef {
        manifest: crate::fsio::relative_to(log_dir, &model.manifest),
        blake3: model.manifest_blake3.clone(),
        verified: model.verified,
    }
}

/// Where output rows go: a temporary file renamed over `--output` at the end, or the writer.
struct Sink<'a> {
    temp: Option<tempfile::NamedTempFile>,
    out: std::io::BufWriter<Box<dyn Write + 'a>>,
    path: PathBuf,
    json: bool,
}

impl<'a> Sink<'a> {
    fn open(opts: &PredictOptions, out: &'a mut dyn Write) -> Result<Sink<'a>, PredictError> {
        let path = opts.output.clone().unwrap_or_else(|| PathBuf::from("-"));
        let io = |source| PredictError::Io {
            path: path.clone(),
            source,
        };
        let (temp, w): (Option<tempfile::NamedTempFile>, Box<dyn Write + 'a>) = match &opts.output {
            Some(p) => {
                let dir = crate::run_dir::of_manifest(p);
                let t = tempfile::Builder::new()
                    .prefix(".auditai-predict-")
                    .tempfile_in(dir)
                    .map_err(io)?;
                let f = t.reopen().map_err(io)?;
                (Some(t), Box::new(f))
            }
            None => (None, Box::new(out)),
        };
        Ok(Sink {
            temp,
            out: std::io::BufWriter::with_capacity(1 << 16, w),
            path,
            json: opts.json,
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> PredictError + '_ {
        |source| PredictError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The CSV header (nothing for JSON Lines).
    fn header(
        &mut self,
        model: &Model,
        opts: &PredictOptions,
        cols: &Columns,
    ) -> Result<(), PredictError> {
        if opts.json {
            return Ok(());
        }
        let mut head = vec!["row".to_string()];
        if cols.id.is_some() {
            head.push("id".into());
        }
        head.extend(cols.keep.iter().map(|(n, _)| n.clone()));
        head.push("prediction".into());
        for c in model.classes().unwrap_or_default() {
            head.push(format!("p_{c}"));
        }
        head.extend(["unseen".into(), "reason".into(), "model_verified".into()]);
        let r = csv_record(&mut self.out, &head);
        r.map_err(self.io())
    }

    fn write(&mut self, model: &Model, p: &Prediction) -> Result<(), PredictError> {
        let r = if self.json {
            let mut line = serde_json::to_vec(p).unwrap_or_default();
            line.push(b'\n');
            self.out.write_all(&line)
        } else {
            let mut fields = vec![p.row.to_string()];
            fields.extend(p.id.clone());
            fields.extend(p.kept.values().cloned());
            fields.push(match &p.prediction {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            });
            for c in model.classes().unwrap_or_default() {
                fields.push(
                    p.probabilities
                        .as_ref()
                        .and_then(|m| m.get(c))
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                );
            }
            fields.push(p.unseen.to_string());
            fields.push(p.reason.clone().unwrap_or_default());
            fields.push(p.model_verified.to_string());
            csv_record(&mut self.out, &fields)
        };
        r.map_err(self.io())
    }

    fn flush(&mut self) -> Result<(), PredictError> {
        let r = self.out.flush();
        r.map_err(self.io())
    }

    /// Flush, and move the temporary file over `--output`.
    fn finish(mut self, opts: &PredictOptions) -> Result<(), PredictError> {
        self.flush()?;
        let io = |source| PredictError::Io {
            path: self.path.clone(),
            source,
        };
        drop(self.out);
        if let (Some(t), Some(p)) = (self.temp, &opts.output) {
            t.as_file().sync_all().map_err(io)?;
            t.persist(p).map_err(|e| io(e.error))?;
            crate::fsio::sync_parent(p).map_err(io)?;
        }
        Ok(())
    }
}

fn csv_record(w: &mut dyn Write, fields: &[String]) -> std::io::Result<()> {
    let mut wtr = csv::WriterBuilder::new().from_writer(Vec::new());
    wtr.write_record(fields)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let bytes = wtr
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(&bytes)
}
