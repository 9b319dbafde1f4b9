//! Auditing a training run: check its commitment and transcript, then replay challenged segments.
//!
//! An audit reads a run directory through its manifest and returns an [`AuditReport`]: rows of
//! checks (commitment, spec, data, initial weights, transcript chain and schedule, final model,
//! checkpoint files, challenge) and one result per replayed segment. The segments are chosen from
//! a challenge the trainer could not know while training; each is replayed from the checkpoint
//! before it and compared with the checkpoint after it, bitwise on the backend that trained and
//! under [`tolerance`] across backends. Never prints; reports progress through a callback.
//! The manifest's signatures are not checked here: that is `auditai verify`.

mod distance;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::anchor;
use crate::data;
use crate::manifest::Extension;
use crate::shuffle;
use crate::spec::{DeviceChoice, Spec};
use crate::train::{self, BackendKind, device};
use crate::transcript::{self, Commitment, Entry};
use crate::verify::{self, Report, Status};

pub use distance::{Distance, tolerance};

/// The key-derivation context that turns a challenge into a choice of segments.
const CHALLENGE_CONTEXT: &str = "auditai 2025 audit challenge v1";
/// With `--challenge-from-anchor`, the challenge is the hash of the block this many blocks after
/// the manifest's anchor block: it did not exist when the prover anchored, so the prover could not
/// choose it by picking what to anchor.
pub const CHALLENGE_DELAY_BLOCKS: u64 = 6;

/// Where the challenge comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Bytes the auditor chose.
    Explicit(Vec<u8>),
    /// From the chain the manifest is anchored on: the hash of the block
    /// [`CHALLENGE_DELAY_BLOCKS`] after the anchor's, read online. With `unconfirmed`, the
    /// auditor accepts the anchor block hash the receipt claims, unchecked (reported as claimed).
    FromAnchor {
        /// Accept the receipt's block hash without an online check.
        unconfirmed: bool,
    },
    /// Fresh randomness from the operating system, printed so the audit can be repeated.
    Random,
}

/// How to audit.
#[derive(Debug)]
pub struct Options {
    /// How many segments to replay (at most all of them).
    pub segments: usize,
    /// The challenge.
    pub challenge: Challenge,
    /// Where to replay; `None`: the backend that trained, else the CPU.
    pub device: Option<DeviceChoice>,
    /// Where the data files named by the commitment live (default as for `auditai verify`).
    pub root: Option<PathBuf>,
    /// Check the anchor behind `--challenge-from-anchor` online against this chain.
    pub online: Option<anchor::chain::Chain>,
    /// Accept a replay on another backend than the one that trained, compared within the
    /// documented tolerances instead of bitwise.
    pub tolerance: bool,
    /// Expected extra files in the run directory (as for `verify`).
    pub allow_extra: Vec<String>,
}

/// Errors that stop an audit before it can judge anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The manifest could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No challenge could be formed.
    #[error("{0}")]
    Challenge(String),
    /// The replay would run on another backend than the one that trained, and the auditor did
    /// not accept a comparison within tolerances.
    #[error(
        "the run trained on {trained}; a replay on {replay} can only be compared within tolerances, not bitwise: pass --tolerance to accept that, or replay on {trained}{why}"
    )]
    NeedsTolerance {
        /// The training backend.
        trained: BackendKind,
        /// The replay backend.
        replay: BackendKind,
        /// Why the training backend is not used (e.g. no adapter).
        why: String,
    },
    /// The requested replay device is not available.
    #[error("{0} (use --device cpu)")]
    Device(#[from] device::NoAdapter),
}

/// Progress of an audit.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The replay device is chosen; `notice` says why it is not the training backend.
    Device {
        /// Backend family.
        kind: BackendKind,
        /// Adapter description.
        adapter: &'a str,
        /// A one-line notice, if any.
        notice: Option<&'a str>,
    },
    /// Segments are chosen: this many steps will be replayed.
    Plan {
        /// Steps to replay in all.
        steps: usize,
    },
    /// A segment's replay starts.
    Segment {
        /// 1-based transcript index.
        index: usize,
        /// 1-based epoch.
        epoch: usize,
        /// Steps `[start, end)` within the epoch.
        steps: [usize; 2],
    },
    /// One step was replayed.
    Step,
}

/// The result of replaying one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentResult {
    /// 1-based transcript index.
    pub index: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps `[start, end)` within the epoch.
    pub steps: [usize; 2],
    /// Learning rate.
    pub lr: f64,
    /// Pass or fail.
    pub status: Status,
    /// `bitwise` (same backend) or `tolerance` (across backends).
    pub comparison: &'static str,
    /// Why.
    pub detail: String,
    /// blake3 of the replayed weights.
    pub replayed_blake3: Option<String>,
    /// blake3 the transcript records.
    pub recorded_blake3: String,
    /// Distances between replayed and recorded weights.
    pub distance: Option<Distance>,
    /// Seconds the replay took.
    pub seconds: f64,
}

/// Everything an audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// The checks before replay.
    pub checks: Report,
    /// The challenge, hex (absent when the audit stopped before choosing).
    pub challenge: Option<String>,
    /// `explicit`, `anchor` or `random`.
    pub challenge_source: &'static str,
    /// Segments in the transcript.
    pub segments_total: usize,
    /// The chosen segments (1-based transcript indices, ascending).
    pub selected: Vec<usize>,
    /// Replay results, in the order of `selected`.
    pub segments: Vec<SegmentResult>,
    /// The backend that trained.
    pub trained_on: Option<BackendKind>,
    /// The backend that replayed.
    pub replayed_on: Option<BackendKind>,
    /// Steps replayed.
    pub replayed_steps: usize,
    /// Steps in the whole transcript.
    pub total_steps: usize,
}

impl AuditReport {
    /// Whether every check and every replayed segment passed, and something was replayed.
    pub fn ok(&self) -> bool {
        self.checks.ok()
            && !self.segments.is_empty()
            && self.segments.iter().all(|s| s.status == Status::Pass)
    }
}

/// Steps in an entry's segment (0 for a malformed one).
fn steps_of(e: &Entry) -> usize {
    e.body.steps[1].saturating_sub(e.body.steps[0])
}

/// Steps in all of `entries` (saturating: the counts come from an untrusted transcript).
fn sum_steps<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> usize {
    entries
        .into_iter()
        .fold(0usize, |acc, e| acc.saturating_add(steps_of(e)))
}

/// The largest run-directory file the audit reads (weights, optimizer state, transcript).
const MAX_RUN_FILE: u64 = 4 << 30;

/// Read a file named by the manifest (relative to `base`) and check its blake3.
fn read_pinned(base: &Path, name: &str, blake3_hex: &str, max: u64) -> Result<Vec<u8>, String> {
    let path = crate::fsio::safe_join(base, name).map_err(|e| e.to_string())?;
    let bytes = crate::fsio::read_bounded(&path, max).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "missing".to_string(),
        _ => format!("{}: {e}", path.display()),
    })?;
    let actual = blake3::hash(&bytes).to_hex();
    if actual.as_str() != blake3_hex {
        return Err(format!(
            "changed: blake3 is {actual}, the manifest records {blake3_hex}"
        ));
    }
    Ok(bytes)
}

/// Audit the run behind the manifest at `path`.
pub fn audit(
    path: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<AuditReport, AuditError> {
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
        AuditError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut report = AuditReport::default();
    let r = &mut report.checks;
    let opened = match verify::open(&bytes) {
        Ok(o) => o,
        Err(why) => {
            r.push("manifest", Status::Fail, why);
            return Ok(report);
        }
    };
    run_directory(path, &opened.statement, opts, r);
    let ext = opened.statement.predicate.auditai.clone();
    let Some((ext, c_ref, t_ref)) = ext.and_then(|e| {
        let (c, t) = (e.commitment.clone()?, e.transcript.clone()?);
        Some((e, c, t))
    }) else {
        r.push(
            "manifest",
            Status::Fail,
            "no training commitment and transcript: the run cannot be audited",
        );
        return Ok(report);
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));

    // The commitment, and everything it pins.
    let committed = read_pinned(dir, &c_ref.path, &c_ref.blake3, crate::fsio::MAX_DOCUMENT)
        .and_then(|b| {
            serde_json::from_slice::<Commitment>(&b)
                .map(|c| (b, c))
                .map_err(|e| format!("not a training commitment: {e}"))
        });
    let (c_bytes, commitment) = match committed {
        Ok(x) => x,
        Err(why) => {
            r.push("commitment", Status::Fail, why);
            return Ok(report);
        }
    };
    r.push(
        "commitment",
        Status::Pass,
        format!(
            "blake3 {}, made {} (claimed) for {} training",
            c_ref.blake3, commitment.committed_on, commitment.backend
        ),
    );
    report.trained_on = Some(commitment.backend);
    let (status, detail) = commitment_anchor(path, dir, &c_ref.path, &c_bytes, opts);
    r.push("commitment anchor", status, detail);
    let Some(spec) = check_spec(dir, &commitment, &ext, r) else {
        return Ok(report);
    };
    let root = opts
        .root
        .clone()
        .unwrap_or_else(|| verify::default_root(dir));
    let Some(data) = check_data(&root, &spec, &commitment, r) else {
        return Ok(report);
    };
    // The weights the committed seed draws: checked here, the start of the first segment and
    // the model layout every checkpoint must have.
    let initial = match train::initial_weights(&spec, &data) {
        Ok(w) => w,
        Err(e) => {
            r.push("initial weights", Status::Fail, e.to_string());
            return Ok(report);
        }
    };
    let got = blake3::hash(&initial).to_hex().to_string();
    if got == commitment.initial_weights_blake3 {
        r.push(
            "initial weights",
            Status::Pass,
            format!("drawn from seed {}: blake3 {got}", spec.seed),
        );
    } else {
        r.push(
            "initial weights",
            Status::Fail,
            format!(
                "not from the committed seed: seed {} gives blake3 {got}, the commitment records {}",
                spec.seed, commitment.initial_weights_blake3
            ),
        );
    }

    // The transcript.
    let entries = match read_pinned(dir, &t_ref.path, &t_ref.blake3, crate::fsio::MAX_DOCUMENT)
        .and_then(|b| transcript::parse_jsonl(&String::from_utf8_lossy(&b), &dir.join(&t_ref.path)))
    {
        Ok(e) => e,
        Err(why) => {
            r.push("transcript", Status::Fail, why);
            return Ok(report);
        }
    };
    let start = transcript::chain_start(&c_bytes);
    let head = match transcript::check_chain(&start, &entries) {
        Ok(h) => hex::encode(h),
        Err(b) => {
            r.push("transcript chain", Status::Fail, b.message);
            return Ok(report);
        }
    };
    if head != t_ref.head || entries.len() != t_ref.entries {
        r.push(
            "transcript chain",
            Status::Fail,
            format!(
                "{} entries with head {head}; the manifest records {} entries with head {}",
                entries.len(),
                t_ref.entries,
                t_ref.head
            ),
        );
        return Ok(report);
    }
    r.push(
        "transcript chain",
        Status::Pass,
        format!(
            "{} entries chained from the commitment, head {head}",
            entries.len()
        ),
    );
    let schedule_ok = match check_schedule(&spec, &data, &entries) {
        Ok(detail) => {
            r.push("transcript schedule", Status::Pass, detail);
            true
        }
        Err(why) => {
            r.push("transcript schedule", Status::Fail, why);
            false
        }
    };
    check_final_model(&opened.statement, &ext, &entries, r);
    let pruned = spec.outputs.checkpoints == crate::spec::KeepCheckpoints::Last;
    let files_ok = check_checkpoints(dir, &entries, pruned, r);
    report.segments_total = entries.len();
    report.total_steps = sum_steps(&entries);

    // The challenge and the segments it picks.
    let (challenge, source) = challenge_bytes(path, opts, &mut report.checks)?;
    report.challenge = Some(hex::encode(&challenge));
    report.challenge_source = source;
    report.selected = select(&challenge, &head, entries.len(), opts.segments);
    report.replayed_steps = sum_steps(report.selected.iter().map(|&i| &entries[i - 1]));

    // Replay.
    let (backend, notice) = replay_device(commitment.backend, opts)?;
    progress(Progress::Device {
        kind: backend.kind,
        adapter: &backend.adapter,
        notice: notice.as_deref(),
    });
    report.replayed_on = Some(backend.kind);
    let bitwise = backend.kind == commitment.backend;
    report.checks.push(
        "replay",
        if bitwise { Status::Pass } else { Status::Warn },
        if bitwise {
            format!(
                "on {} ({}), the backend that trained: compared bitwise",
                backend.kind, backend.adapter
            )
        } else {
            format!(
                "on {} ({}), trained on {}: compared within tolerances, not bitwise (--tolerance)",
                backend.kind, backend.adapter, commitment.backend
            )
        },
    );
    progress(Progress::Plan {
        steps: report.replayed_steps,
    });
    let ctx = Replayer {
        dir,
        spec: &spec,
        data: &data,
        backend: &backend,
        initial: &initial,
        bitwise,
    };
    for &i in &report.selected.clone() {
        let e = &entries[i - 1];
        progress(Progress::Segment {
            index: i,
            epoch: e.body.epoch,
            steps: e.body.steps,
        });
        let before = (i >= 2).then(|| &entries[i - 2]);
        report
            .segments
            .push(ctx.segment(before, e, files_ok, progress));
    }
    if files_ok && schedule_ok {
        let (status, detail) = ctx.validation(&entries, &ext);
        report.checks.push("validation", status, detail);
    }
    Ok(report)
}

/// Relative tolerance on a validation loss recomputed on another backend.
const VAL_LOSS_REL: f64 = 1e-5;

/// What replays and recomputations need: the run directory, the committed inputs, the initial
/// weights and the replay device.
struct Replayer<'a> {
    dir: &'a Path,
    spec: &'a Spec,
    data: &'a data::Prepared,
    backend: &'a device::Backend,
    initial: &'a [u8],
    bitwise: bool,
}

impl Replayer<'_> {
    /// Every epoch's validation loss must be the recorded one, and the early-stopping rule run on
    /// them must end training where the transcript ends and pick the manifest's final epoch.
    fn validation(&self, entries: &[Entry], ext: &Extension) -> (Status, String) {
        let t = &self.spec.training;
        let last = entries.last().map_or(0, |e| e.body.epoch);
        let mut tracker = train::Tracker::default();
        for epoch in 1..=last {
            let Some(e) = entries.iter().rev().find(|e| e.body.epoch == epoch) else {
                return (
                    Status::Fail,
                    format!("no transcript entry ends epoch {epoch}"),
                );
            };
            let Some(recorded) = ext
                .checkpoints
                .iter()
                .find(|c| c.epoch == epoch)
                .map(|c| c.val_loss)
            else {
                return (
                    Status::Fail,
                    format!("the manifest records no validation loss for epoch {epoch}"),
                );
            };
            let loss = read_pinned(
                self.dir,
                &e.body.weights,
                &e.body.weights_blake3,
                MAX_RUN_FILE,
            )
            .and_then(|w| {
                distance::same_layout(&w, self.initial)?;
                train::validation_loss(self.spec, self.data, &self.backend.device, &w)
                    .map_err(|err| err.to_string())
            });
            let loss = match loss {
                Ok(l) => l,
                Err(why) => return (Status::Fail, format!("epoch {epoch}: {why}")),
            };
            let same = if self.bitwise {
                loss == recorded
            } else {
                (loss - recorded).abs() <= VAL_LOSS_REL * recorded.abs().max(1.0)
            };
            if !same {
                return (
                    Status::Fail,
                    format!(
                        "epoch {epoch}: the validation loss is {loss}, the manifest records {recorded}"
                    ),
                );
            }
            tracker.after_epoch(t, epoch, loss);
            if tracker.stop && epoch < last {
                return (
                    Status::Fail,
                    format!(
                        "early stopping ends training after epoch {epoch}, but the transcript goes on to epoch {last}"
                    ),
                );
            }
        }
        if last < t.epochs && !tracker.stop {
            return (
                Status::Fail,
                format!(
                    "the transcript ends after epoch {last} of {}, but early stopping does not stop there",
                    t.epochs
                ),
            );
        }
        let final_epoch = tracker.final_epoch(t, last);
        if final_epoch != ext.final_epoch {
            return (
                Status::Fail,
                format!(
                    "the validation losses make epoch {final_epoch} the final model; the manifest says epoch {}",
                    ext.final_epoch
                ),
            );
        }
        let how = if self.bitwise {
            "bitwise".to_string()
        } else {
            format!("within {VAL_LOSS_REL:.0e}")
        };
        (
            Status::Pass,
            format!(
                "{last} epochs' validation losses recomputed ({how}); training ends after epoch {last} and the final model is epoch {final_epoch}, as recorded"
            ),
        )
    }

    /// Replay one segment from the checkpoint `before` it (the initial weights for the first)
    /// and compare with the checkpoint it records.
    fn segment(
        &self,
        before: Option<&Entry>,
        e: &Entry,
        files_ok: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> SegmentResult {
        let b = &e.body;
        let mut result = SegmentResult {
            index: b.index,
            epoch: b.epoch,
            steps: b.steps,
            lr: b.lr,
            status: Status::Fail,
            comparison: if self.bitwise { "bitwise" } else { "tolerance" },
            detail: String::new(),
            replayed_blake3: None,
            recorded_blake3: b.weights_blake3.clone(),
            distance: None,
            seconds: 0.0,
        };
        let batches = self.data.train.rows.div_ceil(self.spec.training.batch_size);
        if !(1..=self.spec.training.epochs).contains(&b.epoch)
            || b.steps[0] > b.steps[1]
            || b.steps[1] > batches
        {
            result.detail = format!(
                "cannot replay epoch {} steps {}..{}: outside the committed {} epochs of {batches} steps",
                b.epoch, b.steps[0], b.steps[1], self.spec.training.epochs
            );
            return result;
        }
        let loaded = (|| -> Result<_, String> {
            let start = match before {
                None => None,
                Some(p) => Some((
                    read_pinned(
                        self.dir,
                        &p.body.weights,
                        &p.body.weights_blake3,
                        MAX_RUN_FILE,
                    )?,
                    read_pinned(
                        self.dir,
                        &p.body.optimizer,
                        &p.body.optimizer_blake3,
                        MAX_RUN_FILE,
                    )?,
                )),
            };
            let recorded = read_pinned(self.dir, &b.weights, &b.weights_blake3, MAX_RUN_FILE)?;
            Ok((start, recorded))
        })();
        let (start, recorded) = match loaded {
            Ok(x) => x,
            Err(why) => {
                result.detail = format!("cannot replay: {why}");
                if files_ok {
                    result.detail.push_str(" (changed during the audit)");
                }
                return result;
            }
        };
        let before_weights = start.as_ref().map_or(self.initial, |(w, _)| w.as_slice());
        // burn panics on a record whose tensors do not fit the model: refuse such checkpoints first.
        for (what, w) in [("before", before_weights), ("after", recorded.as_slice())] {
            if let Err(why) = distance::same_layout(w, self.initial) {
                result.detail =
                    format!("the checkpoint {what} the segment is not this model's: {why}");
                return result;
            }
        }
        let started = Instant::now();
        let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train::replay(
                self.spec,
                self.data,
                &self.backend.device,
                start.as_ref().map(|(w, o)| (w.as_slice(), o.as_slice())),
                b.epoch,
                b.steps[0]..b.steps[1],
                &mut || progress(Progress::Step),
            )
        }));
        result.seconds = started.elapsed().as_secs_f64();
        let (weights, optim) = match replayed {
            Ok(Ok(x)) => x,
            Ok(Err(err)) => {
                result.detail = format!("replay failed: {err}");
                return result;
            }
            Err(_) => {
                result.detail =
                    "replay failed: the checkpoint's optimizer state does not fit the model".into();
                return result;
            }
        };
        let got = blake3::hash(&weights).to_hex().to_string();
        result.replayed_blake3 = Some(got.clone());
        let distance = Distance::between(&weights, &recorded, before_weights);
        match &distance {
            Err(why) => {
                result.detail = why.clone();
                return result;
            }
            Ok(d) => result.distance = Some(*d),
        }
        if self.bitwise {
            let optim_got = blake3::hash(&optim).to_hex().to_string();
            if got == b.weights_blake3 && optim_got == b.optimizer_blake3 {
                result.status = Status::Pass;
                result.detail = "replayed weights and optimizer state are bitwise identical".into();
            } else if got == b.weights_blake3 {
                result.detail = format!(
                    "the weights match but the optimizer state does not (blake3 {optim_got}, recorded {})",
                    b.optimizer_blake3
                );
            } else {
                result.detail = format!(
                    "the replay does not reproduce the recorded weights{}",
                    result.distance.map_or(String::new(), |d| format!(" ({d})"))
                );
            }
        } else if let Some(d) = result.distance {
            match d.within_tolerance() {
                Ok(()) => {
                    result.status = Status::Pass;
                    result.detail = format!("within tolerance: {d}");
                }
                Err(why) => result.detail = format!("outside tolerance: {why} ({d})"),
            }
        }
        result
    }
}

fn check_spec(dir: &Path, c: &Commitment, ext: &Extension, r: &mut Report) -> Option<Spec> {
    let path = dir.join(crate::pipeline::layout::SPEC);
    let parsed = crate::fsio::read_bounded(&path, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|b| {
            let file = blake3::hash(&b).to_hex().to_string();
            if file != c.spec_file.blake3 {
                return Err(format!(
                    "{} changed: blake3 is {file}, the commitment records {}",
                    path.display(),
                    c.spec_file.blake3
                ));
            }
            Spec::parse(&String::from_utf8_lossy(&b), &path).map_err(|e| e.to_string())
        });
    match parsed {
        Ok(spec) => {
            let d = spec.digest().to_hex().to_string();
            if d != c.spec_blake3 || d != ext.spec_blake3 {
                r.push(
                    "spec",
                    Status::Fail,
                    format!(
                        "resolved spec blake3 {d}; the commitment records {} and the manifest {}",
                        c.spec_blake3, ext.spec_blake3
                    ),
                );
                return None;
            }
            r.push(
                "spec",
                Status::Pass,
                format!(
                    "committed hyper-parameters and seed {}: blake3 {d}",
                    spec.seed
                ),
            );
            Some(spec)
        }
        Err(why) => {
            r.push("spec", Status::Fail, why);
            None
        }
    }
}

fn check_data(root: &Path, spec: &Spec, c: &Commitment, r: &mut Report) -> Option<data::Prepared> {
    let [d] = c.data.as_slice() else {
        r.push(
            "data",
            Status::Fail,
            format!(
                "the commitment names {} data files, expected 1",
                c.data.len()
            ),
        );
        return None;
    };
    let path = match crate::fsio::safe_join(root, &d.name) {
        Ok(p) => p,
        Err(why) => {
            r.push(format!("data {}", d.name), Status::Fail, why.to_string());
            return None;
        }
    };
    let bytes = match crate::fsio::read_bounded(&path, crate::data::MAX_DATA_BYTES) {
        Ok(b) => b,
        Err(e) => {
            r.push(
                format!("data {}", d.name),
                Status::Fail,
                format!(
                    "{}: {e} (pass --root to say where the data lives)",
                    path.display()
                ),
            );
            return None;
        }
    };
    let got = blake3::hash(&bytes).to_hex().to_string();
    if got != d.blake3 {
        r.push(
            format!("data {}", d.name),
            Status::Fail,
            format!(
                "changed: blake3 is {got}, the commitment records {}",
                d.blake3
            ),
        );
        return None;
    }
    match data::parse(spec, &bytes) {
        Ok(p) => {
            r.push(
                format!("data {}", d.name),
                Status::Pass,
                format!("blake3 {got}, {} training rows", p.train.rows),
            );
            Some(p)
        }
        Err(e) => {
            r.push(format!("data {}", d.name), Status::Fail, e.to_string());
            None
        }
    }
}

/// The entries the committed spec and data call for must be exactly the recorded ones: every
/// epoch in order, every segment of it, with the committed learning rate and batch order.
pub(crate) fn check_schedule(
    spec: &Spec,
    data: &data::Prepared,
    entries: &[Entry],
) -> Result<String, String> {
    let t = &spec.training;
    let rows = data.train.rows;
    let batches = rows.div_ceil(t.batch_size);
    let Some(last) = entries.last() else {
        return Err("the transcript is empty".into());
    };
    let epochs = last.body.epoch;
    if epochs == 0 || epochs > t.epochs {
        return Err(format!(
            "the transcript ends in epoch {epochs}; the spec trains 1 to {} epochs",
            t.epochs
        ));
    }
    if epochs < t.epochs && t.early_stopping.is_none() {
        return Err(format!(
            "the transcript ends after epoch {epochs} of {}, and the spec has no early stopping",
            t.epochs
        ));
    }
    // Count before listing: the epoch count comes from an untrusted transcript.
    let ends = spec.audit.segment_ends(batches);
    let want = epochs.saturating_mul(ends.len());
    if want != entries.len() {
        let have: Vec<usize> = entries.iter().map(|e| e.body.epoch).collect();
        return Err(format!(
            "{} entries for {epochs} epochs, the committed schedule calls for {want} (epochs recorded: {})",
            entries.len(),
            compact(&have)
        ));
    }
    let expected = (1..=epochs).flat_map(|epoch| {
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts
            .zip(ends.iter().copied())
            .map(move |(from, to)| (epoch, from, to))
    });
    for (i, (e, (epoch, from, to))) in entries.iter().zip(expected).enumerate() {
        let b = &e.body;
        let n = i + 1;
        if b.index != n || b.epoch != epoch || b.steps != [from, to] {
            return Err(format!(
                "entry {n} is epoch {} steps {}..{}, the committed schedule calls for epoch {epoch} steps {from}..{to} (an epoch or segment is missing, repeated or out of order)",
                b.epoch, b.steps[0], b.steps[1]
            ));
        }
        let lr = t.schedule.lr_at(t.optimizer.lr, epoch - 1, t.epochs);
        if b.lr != lr {
            return Err(format!(
                "entry {n} (epoch {epoch}) records learning rate {}, the committed schedule gives {lr}",
                b.lr
            ));
        }
        let order = shuffle::epoch_order(spec.seed, epoch - 1, rows);
        let seg = &order[from * t.batch_size..(to * t.batch_size).min(rows)];
        if b.batch_order_blake3 != transcript::order_digest(seg) {
            return Err(format!(
                "entry {n} (epoch {epoch}) records a batch order that is not the committed seed's"
            ));
        }
    }
    Ok(format!(
        "{epochs} epoch(s) of {batches} steps in {} segment(s); learning rates and batch orders as committed",
        entries.len()
    ))
}

/// `1-3, 5` style list of numbers.
fn compact(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j].checked_add(1) == Some(v[j + 1]) {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    out.join(", ")
}

fn check_final_model(
    st: &crate::manifest::Statement,
    ext: &Extension,
    entries: &[Entry],
    r: &mut Report,
) {
    let subject = st
        .subject
        .iter()
        .find(|s| s.name.as_deref() == Some(crate::pipeline::layout::MODEL_BPK))
        .and_then(|s| s.digest.get("blake3"));
    let epoch_end = entries
        .iter()
        .rev()
        .find(|e| e.body.epoch == ext.final_epoch);
    match (subject, epoch_end) {
        (Some(s), Some(e)) if *s == e.body.weights_blake3 => r.push(
            "final model",
            Status::Pass,
            format!(
                "model.bpk is the transcript's weights after epoch {}",
                ext.final_epoch
            ),
        ),
        (Some(s), Some(e)) => r.push(
            "final model",
            Status::Fail,
            format!(
                "model.bpk has blake3 {s}; the transcript's weights after epoch {} are {}",
                ext.final_epoch, e.body.weights_blake3
            ),
        ),
        _ => r.push(
            "final model",
            Status::Fail,
            format!(
                "the manifest's model.bpk or final epoch {} is not in the transcript",
                ext.final_epoch
            ),
        ),
    }
}

/// Every checkpoint the transcript names must be on disk with its digest. Returns whether all are.
fn check_checkpoints(dir: &Path, entries: &[Entry], pruned: bool, r: &mut Report) -> bool {
    let mut bad = Vec::new();
    let mut bytes = 0u64;
    for e in entries {
        for (name, digest) in [
            (&e.body.weights, &e.body.weights_blake3),
            (&e.body.optimizer, &e.body.optimizer_blake3),
        ] {
            match read_pinned(dir, name, digest, MAX_RUN_FILE) {
                Ok(b) => bytes += b.len() as u64,
                Err(why) => bad.push(format!("{name}: {why}")),
            }
        }
    }
    if bad.is_empty() {
        r.push(
            "checkpoints",
            Status::Pass,
            format!(
                "{} files ({:.1} MB) match the transcript",
                entries.len() * 2,
                bytes as f64 / 1e6
            ),
        );
        true
    } else {
        let more = if bad.len() > 3 {
            format!(" and {} more", bad.len() - 3)
        } else {
            String::new()
        };
        let hint = if pruned {
            " (the spec's `outputs.checkpoints: last` deleted them; keep `all` for auditable runs)"
        } else {
            ""
        };
        r.push(
            "checkpoints",
            Status::Fail,
            format!("{}{more}{hint}", bad[..bad.len().min(3)].join("; ")),
        );
        false
    }
}

/// The commitment's anchor receipt, when there is one: it must include the commitment.
fn commitment_anchor(
    manifest: &Path,
    dir: &Path,
    name: &str,
    c_bytes: &[u8],
    opts: &Options,
) -> (Status, String) {
    let rpath = match crate::fsio::safe_join(dir, name) {
        Ok(p) => anchor::receipt_path(&p),
        Err(why) => return (Status::Fail, why.to_string()),
    };
    if !rpath.exists() {
        return (
            Status::Skip,
            "not anchored before training (run with --anchor-commitment)".into(),
        );
    }
    let receipt = match anchor::read_receipt(&rpath) {
        Ok(r) => r,
        Err(e) => return (Status::Fail, e.to_string()),
    };
    let root = match anchor::check_inclusion(&receipt, c_bytes) {
        Ok(root) => root,
        Err(why) => return (Status::Fail, why),
    };
    let Some(e) = &receipt.evm else {
        let ots = receipt.ots.as_ref().map_or("none", |o| o.status.as_str());
        return (
            Status::Pass,
            format!("OpenTimestamps ({ots}); check with `auditai verify` on the proof"),
        );
    };
    let manifest_block = anchor::read_receipt(&anchor::receipt_path(manifest))
        .ok()
        .and_then(|m| m.evm)
        .filter(|m| m.chain_id == e.chain_id);
    let order = match &manifest_block {
        Some(m) if m.block_number > e.block_number => format!(
            "; the manifest is anchored later, in block {}",
            m.block_number
        ),
        Some(m) => {
            return (
                Status::Fail,
                format!(
                    "the commitment's block {} is not before the manifest's block {}",
                    e.block_number, m.block_number
                ),
            );
        }
        None => String::new(),
    };
    let claimed = format!(
        "{} block {} at {}{order}",
        e.chain,
        e.block_number,
        crate::manifest::format_unix(e.block_timestamp)
    );
    match &opts.online {
        None => (
            Status::Claimed,
            format!("{claimed} (receipt; not checked online)"),
        ),
        Some(chain) => match on_chain(chain, e, &root) {
            Ok(confirmations) => (
                Status::Pass,
                format!("{claimed}, verified online ({confirmations} confirmations)"),
            ),
            Err(why) => (Status::Fail, why),
        },
    }
}

/// Check an EVM anchor on chain: its confirmations, or why it does not hold.
fn on_chain(
    chain: &anchor::chain::Chain,
    e: &anchor::chain::EvmAnchor,
    root: &[u8; 32],
) -> Result<u64, String> {
    anchor::check_evm_online(chain, e, root).map(|c| c.confirmations)
}

fn challenge_bytes(
    manifest: &Path,
    opts: &Options,
    r: &mut Report,
) -> Result<(Vec<u8>, &'static str), AuditError> {
    match &opts.challenge {
        Challenge::Explicit(b) => Ok((b.clone(), "explicit")),
        Challenge::Random => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b)
                .map_err(|e| AuditError::Challenge(format!("no OS randomness: {e}")))?;
            Ok((b.to_vec(), "random"))
        }
        Challenge::FromAnchor { unconfirmed } => {
            let fail = |m: String| AuditError::Challenge(format!("--challenge-from-anchor: {m}"));
            if opts.online.is_none() && !unconfirmed {
                return Err(fail(
                    "the challenge must come from the chain, not from the receipt the prover wrote: pass --rpc or --chain (or accept an unchecked challenge with --allow-unconfirmed-challenge)".into(),
                ));
            }
            let rpath = anchor::receipt_path(manifest);
            let receipt = anchor::read_receipt(&rpath).map_err(|e| fail(e.to_string()))?;
            let Some(e) = &receipt.evm else {
                return Err(fail(format!(
                    "{} records no EVM anchor (OpenTimestamps gives no block hash yet)",
                    rpath.display()
                )));
            };
            let manifest_bytes = crate::fsio::read_bounded(manifest, crate::fsio::MAX_DOCUMENT)
                .map_err(|source| AuditError::Read {
                    path: manifest.to_path_buf(),
                    source,
                })?;
            let root = match anchor::check_inclusion(&receipt, &manifest_bytes) {
                Ok(root) => root,
                Err(why) => {
                    r.push(
                        "challenge",
                        Status::Fail,
                        format!("the anchor receipt does not match the manifest: {why}"),
                    );
                    return Ok((Vec::new(), "anchor"));
                }
            };
            let Some(chain) = &opts.online else {
                let hash = hex::decode(e.block_hash.trim_start_matches("0x"))
                    .ok()
                    .filter(|h| h.len() == 32)
                    .ok_or_else(|| fail(format!("{}: malformed block hash", rpath.display())))?;
                r.push(
                    "challenge",
                    Status::Claimed,
                    format!(
                        "block hash {} of {} block {}, taken from the receipt and not checked on chain (--allow-unconfirmed-challenge): the prover could have chosen it",
                        e.block_hash, e.chain, e.block_number
                    ),
                );
                return Ok((hash, "anchor-unconfirmed"));
            };
            if let Err(why) = on_chain(chain, e, &root) {
                r.push("challenge", Status::Fail, why);
                return Ok((Vec::new(), "anchor"));
            }
            let (number, hash) = challenge_block(chain, e.block_number).map_err(fail)?;
            r.push(
                "challenge",
                Status::Pass,
                format!(
                    "hash {hash} of {} block {number}, {CHALLENGE_DELAY_BLOCKS} blocks after the anchor's block {} (verified online)",
                    e.chain, e.block_number
                ),
            );
            let bytes = hex::decode(hash.trim_start_matches("0x"))
                .map_err(|_| fail(format!("the node returned a malformed block hash {hash}")))?;
            Ok((bytes, "anchor"))
        }
    }
}

/// The number and hash of the block [`CHALLENGE_DELAY_BLOCKS`] after `anchor_block`, read from
/// the chain; an error while it is not mined yet.
fn challenge_block(
    chain: &anchor::chain::Chain,
    anchor_block: u64,
) -> Result<(u64, String), String> {
    let number = anchor_block
        .checked_add(CHALLENGE_DELAY_BLOCKS)
        .ok_or("the anchor's block number is out of range")?;
    let rpc = anchor::evm::Rpc::new(&chain.rpc, std::time::Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    let head = rpc.block_number().map_err(|e| e.to_string())?;
    if head < number {
        return Err(format!(
            "the challenge block {number} ({CHALLENGE_DELAY_BLOCKS} blocks after the anchor) is not mined yet (the chain is at block {head}); audit again once it is"
        ));
    }
    let block = rpc
        .block(number)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the node has no block {number}"))?;
    let hash = block
        .get("hash")
        .and_then(|h| h.as_str())
        .filter(|h| h.len() == 66)
        .ok_or_else(|| format!("the node returned block {number} without a hash"))?;
    Ok((number, hash.to_string()))
}

/// The run directory against the manifest, exactly as `verify` checks it (every subject,
/// byproduct and dependency re-hashed, nothing unnamed), so that a run directory `verify` rejects
/// can never pass an audit. Signatures stay `verify`'s.
fn run_directory(path: &Path, st: &crate::manifest::Statement, opts: &Options, r: &mut Report) {
    let vopts = verify::Options {
        root: opts.root.clone(),
        allow_extra: opts.allow_extra.clone(),
        ..Default::default()
    };
    let mut files = Report::default();
    verify::check_files(path, st, &vopts, &mut files);
    let failed: Vec<String> = files
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if failed.is_empty() {
        r.push(
            "run directory",
            Status::Pass,
            format!(
                "{} files and directories match the manifest, nothing unnamed",
                files.checks.len().saturating_sub(1)
            ),
        );
    } else {
        r.push("run directory", Status::Fail, failed.join("; "));
    }
}

/// The segments a challenge picks: the first `k` of a permutation of `1..=n` keyed by the
/// challenge and the transcript head, ascending.
pub fn select(challenge: &[u8], head: &str, n: usize, k: usize) -> Vec<usize> {
    let mut key = blake3::Hasher::new_derive_key(CHALLENGE_CONTEXT);
    key.update(challenge);
    key.update(head.as_bytes());
    let mut all: Vec<usize> = (1..=n).collect();
    shuffle::shuffle(&mut all, key.finalize().as_bytes());
    let mut chosen: Vec<usize> = all.into_iter().take(k.min(n)).collect();
    chosen.sort_unstable();
    chosen
}

fn replay_device(
    trained: BackendKind,
    opts: &Options,
) -> Result<(device::Backend, Option<String>), AuditError> {
    let asked = opts.device.unwrap_or(match trained {
        BackendKind::Cpu => DeviceChoice::Cpu,
        BackendKind::Wgpu => DeviceChoice::Wgpu,
    });
    let (backend, why) = match device::select(asked) {
        Ok((b, notice)) => (b, notice),
        Err(e) if opts.device.is_none() && opts.tolerance => {
            let (b, _) = device::select(DeviceChoice::Cpu)?;
            (b, Some(format!("{e}; replaying on the CPU")))
        }
        Err(e) if opts.device.is_none() => {
            return Err(AuditError::NeedsTolerance {
                trained,
                replay: BackendKind::Cpu,
                why: format!(" (not possible here: {e})"),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if backend.kind != trained && !opts.tolerance {
        return Err(AuditError::NeedsTolerance {
            trained,
            replay: backend.kind,
            why: String::new(),
        });
    }
    Ok((backend, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_epoch_numbers_do_not_overflow() {
        assert_eq!(compact(&[1, 2, 3, 5]), "1-3, 5");
        assert_eq!(
            compact(&[usize::MAX, usize::MAX]),
            format!("{}, {}", usize::MAX, usize::MAX)
        );
    }

    #[test]
    fn selection_is_pinned_and_bounded() {
        assert_eq!(select(b"x", "head", 10, 3), select(b"x", "head", 10, 3));
        assert_eq!(select(b"x", "head", 10, 3), vec![3, 5, 7]);
        assert_ne!(select(b"y", "head", 10, 3), select(b"x", "head", 10, 3));
        assert_ne!(select(b"x", "head2", 10, 3), select(b"x", "head", 10, 3));
        assert_eq!(select(b"x", "head", 4, 9), vec![1, 2, 3, 4]);
        assert_eq!(compact(&[1, 2, 4, 6, 7, 8]), "1-2, 4, 6-8");
    }

    #[test]
    fn tolerances_refuse_nan_and_name_the_bound() {
        let d = |linf, relative_l2, cosine_distance| Distance {
            linf,
            l2: 0.0,
            cosine_distance,
            update_l2: 1.0,
            relative_l2,
        };
        assert_eq!(d(1e-6, 1e-6, 0.0).within_tolerance(), Ok(()));
        assert_eq!(
            d(2e-4, 0.0, 0.0).within_tolerance(),
            Err("L∞ 2.00e-4 exceeds 1e-4".to_string())
        );
        assert_eq!(
            d(0.0, 5e-3, 0.0).within_tolerance(),
            Err("L2 is 5.00e-3 of the update, above 1e-3".to_string())
        );
        assert!(d(f64::NAN, 0.0, 0.0).within_tolerance().is_err());
        assert!(d(0.0, 0.0, 1e-3).within_tolerance().is_err());
    }
}
