//! Group Shapley values of a run's data sources by retraining: for every subset `S` of the
//! sources, the run's spec is trained again (same seed, same preprocessing, same validation
//! rows) on the training rows of `S` only, and `u(S)` is how much the validation loss dropped
//! from the initial weights. Each source's value is its Shapley value under `u`:
//! `φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (u(S ∪ {i}) − u(S))`. Training is deterministic, so
//! anyone with the data recomputes the same numbers on the same backend. `2^n − 1` trainings:
//! at most [`MAX_SOURCES`] sources.

use crate::data::{Part, Prepared};
use crate::spec::Spec;
use crate::train::{self, Backend, TrainError};

/// The most sources exact Shapley values are computed for (63 trainings).
pub const MAX_SOURCES: usize = 6;

/// Errors computing Shapley values.
#[derive(Debug, thiserror::Error)]
pub enum ShapleyError {
    /// Too many or too few sources.
    #[error("{0}")]
    Sources(String),
    /// A retraining failed.
    #[error("retraining on sources {subset}: {source}")]
    Train {
        /// The subset, as source numbers.
        subset: String,
        /// Why.
        #[source]
        source: TrainError,
    },
    /// A scratch directory could not be made.
    #[error("a scratch directory for retraining: {0}")]
    Io(#[from] std::io::Error),
}

/// What the retrainings found.
#[derive(Debug, Clone)]
pub struct Shapley {
    /// Per source, its Shapley value (validation-loss reduction).
    pub values: Vec<f64>,
    /// Validation loss of the initial weights (`u(∅) = 0`).
    pub base_loss: f64,
    /// Validation loss after training on each non-empty subset, indexed by bit mask.
    pub losses: Vec<f64>,
}

/// Compute the sources' Shapley values for `spec` on `data` (prepared as the run did),
/// reporting each finished subset to `progress(done, total)`.
pub fn shapley(
    spec: &Spec,
    data: &Prepared,
    backend: &Backend,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Shapley, ShapleyError> {
    let n = data.sources.len();
    if !(2..=MAX_SOURCES).contains(&n) {
        return Err(ShapleyError::Sources(format!(
            "exact Shapley values need 2 to {MAX_SOURCES} data sources; the run has {n}"
        )));
    }
    let subsets = (1usize << n) - 1;
    let initial = train::initial_weights(spec, data).map_err(|source| ShapleyError::Train {
        subset: "{}".into(),
        source,
    })?;
    let base_loss = loss(spec, data, backend, &initial, 0)?;
    let mut losses = vec![base_loss; subsets + 1];
    for (mask, slot) in losses.iter_mut().enumerate().skip(1) {
        let sub = restricted(data, mask);
        *slot = if sub.train.rows == 0 {
            base_loss
        } else {
            let scratch = tempfile::tempdir()?;
            let session = train::Session {
                spec,
                data: &sub,
                backend,
                dir: scratch.path(),
                commitment: [0; 32],
            };
            let outcome = train::train(&session, false, &mut |_| {})
                .map_err(|source| train_err(mask, source))?;
            loss(spec, &sub, backend, &outcome.model_bytes, mask)?
        };
        progress(mask, subsets);
    }
    let utility = |mask: usize| base_loss - losses[mask];
    let values = (0..n)
        .map(|i| {
            (0..=subsets)
                .filter(|s| s & (1 << i) == 0)
                .map(|s| weight(s.count_ones() as usize, n) * (utility(s | 1 << i) - utility(s)))
                .sum()
        })
        .collect();
    Ok(Shapley {
        values,
        base_loss,
        losses,
    })
}

fn train_err(mask: usize, source: TrainError) -> ShapleyError {
    let members: Vec<String> = (0..usize::BITS as usize)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| (i + 1).to_string())
        .collect();
    ShapleyError::Train {
        subset: format!("{{{}}}", members.join(", ")),
        source,
    }
}

fn loss(
    spec: &Spec,
    data: &Prepared,
    backend: &Backend,
    weights: &[u8],
    mask: usize,
) -> Result<f64, ShapleyError> {
    train::validation_loss(spec, data, &backend.device, weights).map_err(|e| train_err(mask, e))
}

/// `k!(n−k−1)!/n!`.
fn weight(k: usize, n: usize) -> f64 {
    let f = |m: usize| (1..=m).map(|x| x as f64).product::<f64>();
    f(k) * f(n - k - 1) / f(n)
}

/// `data` with only the training rows of the sources in `mask` (validation and test kept, the
/// preprocessing as fitted on every training row); one source span, so no credit is measured.
fn restricted(data: &Prepared, mask: usize) -> Prepared {
    let keep: Vec<usize> = (0..data.train.rows)
        .filter(|&i| mask & (1 << data.source_of(data.train.source_rows[i])) != 0)
        .collect();
    let mut sub = data.clone();
    sub.train = select(&data.train, &keep, data.features());
    sub.sources.truncate(1);
    sub
}

fn select(part: &Part, idx: &[usize], features: usize) -> Part {
    let mut x = Vec::with_capacity(idx.len() * features);
    for &i in idx {
        x.extend_from_slice(&part.x[i * features..(i + 1) * features]);
    }
    Part {
        x,
        targets: part.targets.select(idx),
        rows: idx.len(),
        source_rows: idx.iter().map(|&i| part.source_rows[i]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_sum_to_one_over_subsets() {
        for n in 2..=MAX_SOURCES {
            let total: f64 = (0..n)
                .map(|k| {
                    let subsets = (1..=n - 1).product::<usize>() as f64
                        / ((1..=k).product::<usize>() as f64
                            * (1..=n - 1 - k).product::<usize>() as f64);
                    subsets * weight(k, n)
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-12, "n={n}: {total}");
        }
    }
}
