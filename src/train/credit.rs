//! Per-source credit measured during training: the first-order in-run value of each step.
//!
//! At every step, before the optimizer moves the weights `w`, for each data source `s` with
//! rows in the batch `B`: `value_s += lr · ⟨∇L_s(w), ∇L_val(w)⟩`, where `L_s` is the loss on the
//! batch's rows from `s` times their share of the batch (so the sources' gradients add up to the
//! batch gradient) and `L_val` the mean loss on a fixed sample of validation rows. Both are taken
//! without dropout. Under plain SGD, `lr · ⟨∇L_s, ∇L_val⟩` is the first-order drop in validation
//! loss the rows of `s` caused in that step (Wang et al., "Data Shapley in One Training Run",
//! ICLR 2025). The sums are computed with the same kernels as training and reduced in a fixed
//! order, so replaying a segment on the same backend re-derives them bitwise.

use burn::module::{ModuleVisitor, Param};

use super::*;

/// Validation rows the value is measured against: a seeded sample of at most this many.
pub const VALIDATION_ROWS: usize = 256;

/// What the credit of a step needs: each training row's source and the validation sample.
pub(super) struct Credit {
    /// Source index of each training row (training split order).
    source_of: Vec<usize>,
    /// How many sources.
    sources: usize,
    /// The validation split on the training device.
    val: DeviceSplit,
    /// The sample's row indices into `val`.
    val_idx: Tensor<1, Int>,
}

impl Credit {
    /// The credit of a run over `data` on the autodiff device `ad`; `None` with fewer than two
    /// sources (a single source has all the credit) or no validation rows.
    pub(super) fn new(data: &Prepared, seed: u64, ad: &Device) -> Option<Credit> {
        if data.sources.len() < 2 || data.validation.rows == 0 {
            return None;
        }
        let mut sample: Vec<usize> = (0..data.validation.rows).collect();
        shuffle::shuffle(&mut sample, &shuffle::key(seed, "credit", 0));
        sample.truncate(VALIDATION_ROWS);
        sample.sort_unstable();
        let idx: Vec<i64> = sample.iter().map(|&i| i as i64).collect();
        Some(Credit {
            source_of: data
                .train
                .source_rows
                .iter()
                .map(|&r| data.source_of(r))
                .collect(),
            sources: data.sources.len(),
            val: upload(data, &data.validation, 0..data.validation.rows, ad),
            val_idx: Tensor::from_data(TensorData::new(idx, [sample.len()]), ad),
        })
    }

    /// Zeroed sums, one per source.
    pub(super) fn zeros(&self) -> Vec<f64> {
        vec![0.0; self.sources]
    }

    /// Add each source's value of one step over training rows `chunk` (indices into `split`) at
    /// `model`'s current weights.
    pub(super) fn step(
        &self,
        model: &Net,
        split: &DeviceSplit,
        chunk: &[usize],
        lr: f64,
        sums: &mut [f64],
    ) {
        let ad = split.x.device();
        let val_x = self.val.x.clone().select(0, self.val_idx.clone());
        let val_loss = self.val.loss(model.forward(val_x), Some(&self.val_idx));
        let g_val = GradientsParams::from_grads(val_loss.backward(), model);
        for (s, sum) in sums.iter_mut().enumerate() {
            let rows: Vec<i64> = chunk
                .iter()
                .filter(|&&i| self.source_of[i] == s)
                .map(|&i| i as i64)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let share = rows.len() as f32 / chunk.len() as f32;
            let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), &ad);
            let out = model.forward(split.x.clone().select(0, idx.clone()));
            let loss = split.loss(out, Some(&idx)) * share;
            let g_s = GradientsParams::from_grads(loss.backward(), model);
            let mut dot = Dot {
                a: &g_s,
                b: &g_val,
                sum: None,
            };
            model.visit(&mut dot);
            let value = dot.sum.map_or(0.0, |t| f64::from(t.into_scalar::<f32>()));
            *sum += lr * value;
        }
    }
}

/// The dot product of two gradients, parameter by parameter in the module's order.
struct Dot<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for Dot<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(x), Some(y)) = (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) else {
            return;
        };
        let n = x.shape().num_elements();
        let d = (x * y).reshape([n]).sum_dim(0);
        self.sum = Some(match self.sum.take() {
            Some(s) => s + d,
            None => d,
        });
    }
}
