//! The audit's replays: the device to replay on, each challenged segment replayed from the
//! checkpoint before it and compared with the one after it, and the validation losses.

use std::time::Instant;

use super::distance::{self, Distance};
use super::inputs::{MAX_RUN_FILE, read_pinned};
use super::{AuditError, AuditReport, Options, Progress, SegmentResult};
use crate::data;
use crate::manifest::Extension;
use crate::report::{CheckId, Status};
use crate::spec::{DeviceChoice, Spec};
use crate::train::{self, BackendKind, device};
use crate::transcript::{self, Entry};

/// Relative tolerance on a validation loss recomputed on another backend.
pub(super) const VAL_LOSS_REL: f64 = 1e-5;

/// What replays and recomputations need: the run directory, the committed inputs, the initial
/// weights and the replay device.
pub(super) struct Replayer<'a> {
    pub(super) run: &'a crate::trust::SignedRun,
    pub(super) spec: &'a Spec,
    pub(super) data: &'a data::Prepared,
    pub(super) backend: &'a device::Backend,
    pub(super) initial: &'a [u8],
    pub(super) bitwise: bool,
}

impl Replayer<'_> {
    /// Every epoch's validation loss must be the recorded one, and the early-stopping rule run on
    /// them must end training where the transcript ends and pick the manifest's final epoch.
    pub(super) fn validation(&self, entries: &[Entry], ext: &Extension) -> (Status, String) {
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
                self.run,
                &e.body.weights,
                &e.body.weights_blake3,
                MAX_RUN_FILE,
            )
            .and_then(|w| {
                distance::same_layout(&w, self.initial).map_err(|e| e.to_string())?;
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
    pub(super) fn segment(
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
            comparison: if self.bitwise {
                crate::vsa::Comparison::Bitwise
            } else {
                crate::vsa::Comparison::Tolerance
            },
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
        let loaded = self.load(before, e);
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
        let (weights, optim, credit) = match replayed {
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
        let got = crate::hash::Digest::of(&weights).hex();
        result.replayed_blake3 = Some(got.clone());
        let distance = Distance::between(&weights, &recorded, before_weights);
        match &distance {
            Err(why) => {
                result.detail = why.to_string();
                return result;
            }
            Ok(d) => result.distance = Some(*d),
        }
        self.compare(&mut result, &got, &optim, b);
        if self.bitwise && result.status == Status::Pass {
            judge_credit(&mut result, &credit, &b.credit);
        }
        result
    }

    /// The checkpoint before the segment (weights and optimizer state; none for the first) and
    /// the weights after it, each digest-checked against the transcript.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        before: Option<&Entry>,
        e: &Entry,
    ) -> Result<(Option<(Vec<u8>, Vec<u8>)>, Vec<u8>), String> {
        let read = |name: &str, digest: &str| read_pinned(self.run, name, digest, MAX_RUN_FILE);
        let start = match before {
            None => None,
            Some(p) => Some((
                read(&p.body.weights, &p.body.weights_blake3)?,
                read(&p.body.optimizer, &p.body.optimizer_blake3)?,
            )),
        };
        let recorded = read(&e.body.weights, &e.body.weights_blake3)?;
        Ok((start, recorded))
    }

    /// Judge a replay: bitwise (weights and optimizer state) on the training backend, within
    /// the tolerances on another.
    fn compare(&self, result: &mut SegmentResult, got: &str, optim: &[u8], b: &transcript::Body) {
        if self.bitwise {
            let optim_got = crate::hash::Digest::of(optim).hex();
            let same = crate::hash::hex_eq;
            if same(got, &b.weights_blake3) && same(&optim_got, &b.optimizer_blake3) {
                result.status = Status::Pass;
                result.detail = "replayed weights and optimizer state are bitwise identical".into();
            } else if same(got, &b.weights_blake3) {
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
    }
}

/// A bitwise replay that matched the weights must also re-derive the recorded per-source credit.
fn judge_credit(result: &mut SegmentResult, got: &Option<Vec<f64>>, recorded: &Option<Vec<f64>>) {
    if !same_credit(got, recorded) {
        result.status = Status::Fail;
        result.detail = format!(
            "the weights match but the per-source credit does not (replayed {}, recorded {})",
            show_credit(got),
            show_credit(recorded)
        );
    } else if got.is_some() {
        result.detail =
            "replayed weights, optimizer state and per-source credit are bitwise identical".into();
    }
}

/// Whether two credit vectors are bitwise the same.
fn same_credit(a: &Option<Vec<f64>>, b: &Option<Vec<f64>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        _ => false,
    }
}

fn show_credit(c: &Option<Vec<f64>>) -> String {
    c.as_ref()
        .map_or_else(|| "none".into(), |v| format!("{v:?}"))
}

pub(super) fn replay_device(
    trained: BackendKind,
    opts: &Options,
) -> Result<(device::Backend, Option<device::Notice>), AuditError> {
    let asked = opts.device.unwrap_or(match trained {
        BackendKind::Cpu => DeviceChoice::Cpu,
        BackendKind::Wgpu => DeviceChoice::Wgpu,
    });
    let (backend, why) = match device::select(asked) {
        Ok((b, notice)) => (b, notice),
        Err(e) if opts.device.is_none() && opts.tolerance => {
            let (b, _) = device::select(DeviceChoice::Cpu)?;
            (b, Some(device::Notice::ReplayOnCpu(e)))
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

/// What the replay phase needs from the checks before it.
pub(super) struct Replay<'a> {
    pub(super) run: &'a crate::trust::SignedRun,
    pub(super) spec: &'a Spec,
    pub(super) data: &'a data::Prepared,
    pub(super) initial: &'a [u8],
    pub(super) trained_on: BackendKind,
    /// The kernels the commitment records (absent in older runs).
    pub(super) trained_kernels: Option<&'a str>,
    /// Every checkpoint the transcript names is on disk with its digest.
    pub(super) files_ok: bool,
    /// The transcript follows the committed schedule.
    pub(super) schedule_ok: bool,
}

impl Replay<'_> {
    /// The `replay` row: which comparison runs, and whether the kernels are the ones that
    /// trained (bitwise identity is promised only for the same kernels).
    fn replay_row(&self, backend: &device::Backend, bitwise: bool, report: &mut AuditReport) {
        let on = format!("on {} ({})", backend.kind, backend.adapter);
        let kernels = other_kernels(self.trained_kernels, &backend.kernels);
        let detail = match (bitwise, kernels) {
            (false, _) => format!(
                "{on}, trained on {}: compared within tolerances, not bitwise",
                self.trained_on
            ),
            (true, Some(k)) => format!(
                "{on}, the backend that trained: compared bitwise, but the run's kernels were `{k}` and these are `{}`; they may round differently",
                backend.kernels
            ),
            (true, None) => format!("{on}, the backend that trained: compared bitwise"),
        };
        let label = CheckId::Replay.label();
        if bitwise && kernels.is_none() {
            report
                .checks
                .push(CheckId::Replay, label, Status::Pass, detail);
        } else {
            let hint = crate::report::Hint::Tolerance;
            report
                .checks
                .push_hinted(CheckId::Replay, label, Status::Warn, detail, hint);
        }
    }

    /// Choose the device, replay the selected segments into `report`, then recompute the
    /// validation losses.
    pub(super) fn run(
        &self,
        entries: &[Entry],
        ext: &Extension,
        opts: &Options,
        report: &mut AuditReport,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), AuditError> {
        let (backend, notice) = replay_device(self.trained_on, opts)?;
        progress(Progress::Device {
            kind: backend.kind,
            adapter: &backend.adapter,
            notice: notice.as_ref(),
        });
        report.replayed_on = Some(backend.kind);
        let bitwise = backend.kind == self.trained_on;
        self.replay_row(&backend, bitwise, report);
        progress(Progress::Plan {
            steps: report.replayed_steps,
        });
        let ctx = Replayer {
            run: self.run,
            spec: self.spec,
            data: self.data,
            backend: &backend,
            initial: self.initial,
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
                .push(ctx.segment(before, e, self.files_ok, progress));
        }
        if self.files_ok && self.schedule_ok {
            let (status, detail) = ctx.validation(entries, ext);
            report.checks.push_row(CheckId::Validation, status, detail);
        }
        Ok(())
    }
}

/// The recorded kernel family when it is not the one replaying (runs that predate the record
/// have none, and are compared as before).
fn other_kernels<'a>(trained: Option<&'a str>, ours: &str) -> Option<&'a str> {
    trained.filter(|k| *k != ours)
}

#[cfg(test)]
mod tests {
    use super::other_kernels;

    #[test]
    fn a_replay_names_kernels_other_than_the_recorded_ones() {
        let avx2 = "burn-flex 0.22 with gemm 0.19, x86-64 avx2+fma";
        let avx512 = "burn-flex 0.22 with gemm 0.19, x86-64 avx512f";
        assert_eq!(other_kernels(Some(avx512), avx2), Some(avx512));
        assert_eq!(other_kernels(Some(avx2), avx2), None);
        assert_eq!(other_kernels(None, avx2), None);
    }
}
