//! The training loop: steps over a segment, checkpoints and transcript entries per segment,
//! per-epoch evaluation, early stopping and pruning ([`train`]).

use super::resume::load_weights;
use super::*;

/// The dropout key of step `step` (0-based) of 0-based `epoch`:
/// `seed (LE) ‖ "dropout" ‖ epoch (LE) ‖ step (LE)`.
pub(super) fn dropout_key(seed: u64, epoch: usize, step: usize) -> Vec<u8> {
    let mut key = shuffle::key(seed, "dropout", epoch as u64);
    key.extend_from_slice(&(step as u64).to_le_bytes());
    key
}

/// Which steps to train: steps `range` of 0-based `epoch`, whose row order is `order`, at
/// learning rate `lr`.
pub(super) struct Steps<'a> {
    pub(super) spec: &'a Spec,
    pub(super) split: &'a DeviceSplit,
    pub(super) order: &'a [usize],
    pub(super) epoch: usize,
    pub(super) range: std::ops::Range<usize>,
    pub(super) lr: f64,
    /// Per-source credit, measured when the run has several sources.
    pub(super) credit: Option<&'a Credit>,
}

/// Train `steps` and return the model and, with `steps.credit`, each source's value summed over
/// the steps; adds each batch's loss (times its size) to `loss_sum`.
pub(super) fn train_steps(
    steps: Steps<'_>,
    mut model: Net,
    optim: &mut ModuleOptimizer,
    loss_sum: &mut Tensor<1>,
    on_step: &mut dyn FnMut(),
) -> (Net, Option<Vec<f64>>) {
    let Steps {
        spec,
        split,
        order,
        epoch,
        range,
        lr,
        credit,
    } = steps;
    let mut sums = credit.map(Credit::zeros);
    let ad = split.x.device();
    let bs = spec.training.batch_size;
    for step in range {
        if crate::cancel::requested() {
            break;
        }
        let chunk = &order[step * bs..((step + 1) * bs).min(order.len())];
        if let (Some(c), Some(sums)) = (credit, sums.as_mut()) {
            c.step(&model, split, chunk, lr, sums);
        }
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
    (model, sums)
}

/// Weights and canonical optimizer bytes of a training model.
pub(super) fn snapshot(
    model: &Net,
    optim: &ModuleOptimizer,
) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
    let weights = model
        .valid()
        .into_record()
        .into_bytes()
        .map_err(record_err)?
        .to_vec();
    let optim_bytes = canonical_burnpack(optim.into_bytes().map_err(record_err)?)?;
    Ok((weights, optim_bytes))
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
pub(super) struct Loop<'a> {
    s: &'a Session<'a>,
    optim: ModuleOptimizer,
    states: Vec<CheckpointState>,
    tracker: Tracker,
    train_split: DeviceSplit,
    val_chunks: Vec<DeviceSplit>,
    /// Per-source credit (two or more sources).
    credit: Option<Credit>,
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
        let prev = match states.last().and_then(|st| st.transcript.last()) {
            Some(e) => link_hash(e)?,
            None => s.commitment,
        };
        Ok(Loop {
            s,
            optim,
            tracker: states.last().map(|st| st.tracker).unwrap_or_default(),
            states,
            train_split: upload(s.data, &s.data.train, 0..s.data.train.rows, ad),
            val_chunks: upload_chunks(s.data, &s.data.validation, &s.backend.device),
            credit: Credit::new(s.data, s.spec.seed, ad),
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
                credit: self.credit.as_ref(),
            };
            let (trained, credit) =
                train_steps(steps, model, &mut self.optim, &mut loss_sum, &mut || {
                    progress(Progress::Batch)
                });
            model = trained;
            if crate::cancel::requested() {
                return Err(TrainError::Cancelled);
            }
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
                    credit,
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
        let (val_loss, val_metrics) =
            evaluate_chunks(&eval, &self.val_chunks, &s.data.validation, s.data, false);
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
pub(super) fn canonical_burnpack(bytes: Bytes) -> Result<Vec<u8>, TrainError> {
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

pub(super) fn link_hash(e: &Entry) -> Result<[u8; 32], TrainError> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(&e.chain, &mut h).map_err(record_err)?;
    Ok(h)
}
