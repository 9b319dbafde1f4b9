//! Replaying one transcript segment from the checkpoint before it ([`replay`]): what the audit
//! compares with the checkpoint after it.

use super::fit::{Steps, snapshot, train_steps};
use super::*;

/// What a replay produced: weights, canonical optimizer bytes, and per-source credit.
pub type Replayed = (Vec<u8>, Vec<u8>, Option<Vec<f64>>);

/// Replay steps `steps` of 1-based `epoch` on `device`, starting from the checkpoint `before`
/// (weights and optimizer bytes; `None`: the initial weights and a fresh optimizer). Returns the
/// weights and canonical optimizer bytes after the last step, as training wrote them, and the
/// per-source credit of the steps (with two or more sources).
pub fn replay(
    spec: &Spec,
    data: &Prepared,
    device: &Device,
    before: Option<(&[u8], &[u8])>,
    epoch: usize,
    steps: std::ops::Range<usize>,
    on_step: &mut dyn FnMut(),
) -> Result<Replayed, TrainError> {
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
    let split = upload(data, &data.train, 0..data.train.rows, &ad);
    let order = shuffle::epoch_order(spec.seed, epoch - 1, split.rows);
    let lr = t.schedule.lr_at(t.optimizer.lr, epoch - 1, t.epochs);
    let mut loss_sum = Tensor::<1>::zeros([1], &ad);
    let credit = Credit::new(data, spec.seed, &ad);
    let (model, sums) = train_steps(
        Steps {
            spec,
            split: &split,
            order: &order,
            epoch: epoch - 1,
            range: steps,
            lr,
            credit: credit.as_ref(),
        },
        model.fork(&ad).train(),
        &mut optim,
        &mut loss_sum,
        on_step,
    );
    let (weights, optim) = snapshot(&model, &optim)?;
    Ok((weights, optim, sums))
}
