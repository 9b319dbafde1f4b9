//! Inference and evaluation: data uploaded to the device in chunks, validation losses, metrics,
//! and a trained network loaded from its weights for prediction.

use super::*;

/// Rows per forward pass when evaluating (memory bound only; results do not depend on it).
pub(super) const EVAL_CHUNK: usize = 2048;

/// Rows of one split on a device: inputs `[rows, features]` and targets.
pub(super) struct DeviceSplit {
    pub(super) x: Tensor<2>,
    pub(super) targets: DeviceTargets,
    pub(super) rows: usize,
    /// Per-class loss weights (`training.class_weight: balanced`).
    pub(super) weights: Option<Vec<f32>>,
}

pub(super) enum DeviceTargets {
    Classes(Tensor<1, Int>),
    Values(Tensor<1>),
}

/// Upload rows `range` of a part of `data`.
pub(super) fn upload(
    data: &Prepared,
    part: &Part,
    range: std::ops::Range<usize>,
    device: &Device,
) -> DeviceSplit {
    let features = data.features();
    let rows = range.len();
    let x = part.x[range.start * features..range.end * features].to_vec();
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, features]), device);
    let targets = match &part.targets {
        Targets::Classes(c) => {
            let c: Vec<i64> = c[range].iter().map(|&v| i64::from(v)).collect();
            DeviceTargets::Classes(Tensor::from_data(TensorData::new(c, [rows]), device))
        }
        Targets::Values(v) => DeviceTargets::Values(Tensor::from_data(
            TensorData::new(v[range].to_vec(), [rows]),
            device,
        )),
    };
    DeviceSplit {
        x,
        targets,
        rows,
        weights: data.class_weights.clone(),
    }
}

/// Upload a whole part of `data` in chunks of [`EVAL_CHUNK`] rows.
pub(super) fn upload_chunks(data: &Prepared, part: &Part, device: &Device) -> Vec<DeviceSplit> {
    (0..part.rows)
        .step_by(EVAL_CHUNK)
        .map(|start| {
            upload(
                data,
                part,
                start..(start + EVAL_CHUNK).min(part.rows),
                device,
            )
        })
        .collect()
}

impl DeviceSplit {
    /// Mean loss of `out` against the targets of rows `idx` (all rows when `None`).
    pub(super) fn loss(&self, out: Tensor<2>, idx: Option<&Tensor<1, Int>>) -> Tensor<1> {
        match &self.targets {
            DeviceTargets::Classes(c) => {
                let targets = idx.map_or_else(|| c.clone(), |i| c.clone().select(0, i.clone()));
                match &self.weights {
                    None => CrossEntropyLossConfig::new()
                        .init(&out.device())
                        .forward(out, targets),
                    Some(w) => weighted_cross_entropy(out, targets, w),
                }
            }
            DeviceTargets::Values(v) => {
                let targets = idx.map_or_else(|| v.clone(), |i| v.clone().select(0, i.clone()));
                let [b, _] = out.dims();
                MseLoss::new().forward(out.reshape([b]), targets, Reduction::Mean)
            }
        }
    }
}

/// Cross-entropy weighted per class: `Σ w[t]·(−log_softmax(x)[t]) / Σ w[t]`. Reduced with
/// `sum_dim` only: burn's weighted loss ends in a full `sum()`, which on a GPU may finish with
/// float atomic adds in any order, so two runs could differ in the last bits.
fn weighted_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: &[f32],
) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let weights = Tensor::<1>::from_data(
        TensorData::new(weights.to_vec(), [weights.len()]),
        &logits.device(),
    );
    let nll = burn::tensor::activation::log_softmax(logits, 1)
        .gather(1, targets.clone().reshape([batch, 1]))
        .reshape([batch])
        .neg();
    let w = weights.gather(0, targets);
    (nll * w.clone()).sum_dim(0) / w.sum_dim(0)
}

/// Mean loss and metrics of `net` (inference mode) over uploaded chunks of `part`.
pub(super) fn evaluate_chunks(
    net: &Net,
    chunks: &[DeviceSplit],
    part: &Part,
    data: &Prepared,
    intervals: bool,
) -> (f64, Metrics) {
    let classes = data.outputs();
    let mut loss_sum = 0.0;
    let mut predicted_classes = Vec::new();
    let mut predicted_values = Vec::new();
    for chunk in chunks {
        let out = net.forward(chunk.x.clone());
        match chunk.targets {
            DeviceTargets::Classes(_) => predicted_classes.extend(
                out.clone()
                    .argmax(1)
                    .into_data()
                    .iter::<i64>()
                    .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            ),
            DeviceTargets::Values(_) => {
                predicted_values.extend(out.clone().into_data().iter::<f32>())
            }
        }
        let loss: f32 = chunk.loss(out, None).into_scalar();
        loss_sum += f64::from(loss) * chunk.rows as f64;
    }
    let metrics = match &part.targets {
        Targets::Classes(t) => metrics::classification(t, &predicted_classes, classes, intervals),
        Targets::Values(t) => {
            // Metrics in the target's original units.
            let pre = &data.preprocessing;
            let unscale = |v: &[f32]| {
                v.iter()
                    .map(|&y| pre.unscale_target(y))
                    .collect::<Vec<f32>>()
            };
            metrics::regression(&unscale(t), &unscale(&predicted_values), intervals)
        }
    };
    (loss_sum / part.rows.max(1) as f64, metrics)
}

/// The validation loss of the weights `weights` (burnpack bytes), evaluated on `device` as
/// training does after each epoch.
pub fn validation_loss(
    spec: &Spec,
    data: &Prepared,
    device: &Device,
    weights: &[u8],
) -> Result<f64, TrainError> {
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec())).map_err(record_err)?;
    let net = initial_model(spec, data).load_record(record).fork(device);
    let chunks = upload_chunks(data, &data.validation, device);
    Ok(evaluate_chunks(&net, &chunks, &data.validation, data, false).0)
}

/// A trained network: `spec`'s architecture with `features` inputs and `outputs` logits, its
/// weights from burnpack bytes, on `device`. The size is checked before anything is allocated.
pub fn load_net(
    spec: &Spec,
    features: usize,
    outputs: usize,
    weights: &[u8],
    device: &Device,
) -> Result<Net, TrainError> {
    let count = model::parameter_count(spec, features, outputs);
    if count.is_none_or(|c| c > model::MAX_PARAMETERS) {
        return Err(TrainError::TooLarge {
            spec: spec.source.clone(),
            features,
            count,
        });
    }
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec())).map_err(record_err)?;
    let cpu = Device::flex();
    let net = model::CanonicalIds::apply(Net::new(spec, features, outputs, &cpu));
    Ok(net.load_record(record).fork(device))
}

/// The network's outputs for `rows` rows of normalised inputs (row-major): per row, the class
/// probabilities (softmax of the logits), or the one predicted value for regression.
pub fn infer(
    net: &Net,
    x: Vec<f32>,
    rows: usize,
    features: usize,
    device: &Device,
    classify: bool,
) -> Vec<f32> {
    if rows == 0 {
        return Vec::new();
    }
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, features]), device);
    let out = net.forward(x);
    let out = if classify {
        burn::tensor::activation::softmax(out, 1)
    } else {
        out
    };
    out.into_data().iter::<f32>().collect()
}

/// Held-out metrics of `net` (inference mode) on `part`.
pub fn evaluate(net: &Net, part: &Part, data: &Prepared, device: &Device) -> Metrics {
    let chunks = upload_chunks(data, part, device);
    evaluate_chunks(net, &chunks, part, data, true).1
}

pub(super) fn validation_metric(m: &Metrics) -> (f64, &'static str) {
    match m {
        Metrics::Classification { accuracy, .. } => (*accuracy, "accuracy"),
        Metrics::Regression { r2, .. } => (*r2, "r2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weighted_loss_is_burns_without_a_full_sum() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(
                vec![0.3f32, -1.2, 2.0, 0.0, 0.5, -0.5, 1.5, 1.0, -2.0],
                [3, 3],
            ),
            &dev,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0, 1], [3]), &dev);
        let weights = [0.5f32, 2.0, 1.25];
        let burns: f32 = CrossEntropyLossConfig::new()
            .with_weights(Some(weights.to_vec()))
            .init(&dev)
            .forward(logits.clone(), targets.clone())
            .into_scalar();
        let ours: f32 =
            weighted_cross_entropy(logits.clone(), targets.clone(), &weights).into_scalar();
        assert!((burns - ours).abs() < 1e-6, "{burns} vs {ours}");
        // Equal weights give the plain mean.
        let plain: f32 = CrossEntropyLossConfig::new()
            .init(&dev)
            .forward(logits.clone(), targets.clone())
            .into_scalar();
        let even: f32 = weighted_cross_entropy(logits, targets, &[1.0; 3]).into_scalar();
        assert!((plain - even).abs() < 1e-6, "{plain} vs {even}");
    }
}
