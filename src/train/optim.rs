//! The optimizer step on the CPU, fused: burn's Adam and AdamW computed element by element in one
//! parallel pass over the parameter, its gradient and both moments, instead of a dozen
//! whole-tensor operations that each allocate and sweep memory. The arithmetic is burn's, operation
//! for operation in f32 and in the same order, so weights, moments and checkpoint records are
//! bitwise those of `burn::optim::{Adam, AdamW}` (tests pin it), and the per-element work does not
//! depend on how rayon splits it. On any other device, or for a tensor that is not f32, burn's own
//! step runs. The state types are burn's, so records written by either are read by both.

use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, Optimizer, decay::WeightDecayConfig,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per parallel task: large enough that scheduling is noise, small enough to spread a
/// layer of a few hundred thousand weights over every core.
const CHUNK: usize = 1 << 14;

/// The adaptive-moment constants both optimizers share.
#[derive(Clone, Copy, Debug)]
pub(super) struct Moments {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

/// Adam with optional L2 weight decay added to the gradient, as burn's `Adam`.
#[derive(Clone)]
pub(super) struct FusedAdam {
    burn: Adam,
    moments: Moments,
    penalty: Option<f32>,
}

impl FusedAdam {
    pub(super) fn new(moments: Moments, penalty: Option<f32>) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(moments.beta_1)
            .with_beta_2(moments.beta_2)
            .with_epsilon(moments.epsilon)
            .with_weight_decay(penalty.map(WeightDecayConfig::new))
            .build();
        FusedAdam {
            burn,
            moments,
            penalty,
        }
    }
}

/// AdamW with decoupled weight decay, as burn's `AdamW` (without cautious decay or AMSGrad).
#[derive(Clone)]
pub(super) struct FusedAdamW {
    burn: AdamW,
    moments: Moments,
    decay: f32,
}

impl FusedAdamW {
    pub(super) fn new(moments: Moments, decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(moments.beta_1)
            .with_beta_2(moments.beta_2)
            .with_epsilon(moments.epsilon)
            .with_weight_decay(decay)
            .build();
        FusedAdamW {
            burn,
            moments,
            decay,
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let penalty = self.penalty;
        let m = self.moments;
        let (tensor, momentum) = fused(
            tensor,
            grad,
            state.map(|s| s.momentum),
            m,
            |p, g| match penalty {
                Some(k) => p * k + g,
                None => g,
            },
            |t| {
                let bc2_sqrt = (1.0 - m.beta_2.powi(t)).sqrt();
                let combined = bc2_sqrt / (1.0 - m.beta_1.powi(t));
                let eps = m.epsilon * bc2_sqrt;
                let lr = lr as f32;
                move |p, m1, m2| p - (m1 * combined) / (m2.sqrt() + eps) * lr
            },
        );
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let m = self.moments;
        let decay_rate = lr * f64::from(self.decay);
        let (tensor, momentum) = fused(
            tensor,
            grad,
            state.map(|s| s.momentum),
            m,
            |_, g| g,
            |t| {
                let bc1 = 1f32 - m.beta_1.powi(t);
                let bc2 = 1f32 - m.beta_2.powi(t);
                let keep = (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32);
                let lr = lr as f32;
                move |p: f32, m1: f32, m2: f32| {
                    let decayed = keep.map_or(p, |k| p * k);
                    decayed - (m1 / bc1) / ((m2 / bc2).sqrt() + m.epsilon) * lr
                }
            },
        );
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

/// Whether the fused pass applies: on the CPU backend, the parameter, its gradient and both
/// moments f32 of one shape, and no AMSGrad maximum (a foreign record may hold anything).
fn fusable<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    momentum: Option<&AdaptiveMomentumState<D>>,
) -> bool {
    let like = |t: &Tensor<D>| t.dtype() == DType::F32 && t.shape() == tensor.shape();
    tensor.device() == Device::flex()
        && like(tensor)
        && like(grad)
        && momentum
            .is_none_or(|s| like(&s.moment_1) && like(&s.moment_2) && s.max_moment_2.is_none())
}

/// One fused pass: `grad_of(p, g)` is the gradient the moments see, the moments are updated as
/// burn does (the first step starts them from zero without reading them), and `update_at(t)`
/// gives, for step `t` (from 1), the new parameter as a function of `(p, m1, m2)`. [`fusable`]
/// has checked every dtype and shape, so the slices exist.
fn fused<const D: usize, U: Fn(f32, f32, f32) -> f32 + Sync>(
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<AdaptiveMomentumState<D>>,
    m: Moments,
    grad_of: impl Fn(f32, f32) -> f32 + Sync,
    update_at: impl FnOnce(i32) -> U,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    let device = tensor.device();
    let shape = tensor.shape();
    let (time, m1, m2) = match state {
        Some(s) => (s.time + 1, Some(s.moment_1), Some(s.moment_2)),
        None => (1, None, None),
    };
    let first = m1.is_none();
    let update = update_at(time as i32);
    let mut p = tensor.into_data();
    let g = grad.into_data();
    let zeros = || TensorData::zeros::<f32, _>(shape.clone());
    let mut m1 = m1.map_or_else(zeros, Tensor::into_data);
    let mut m2 = m2.map_or_else(zeros, Tensor::into_data);
    let (b1, b2) = (m.beta_1, m.beta_2);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    if let (Ok(p), Ok(g), Ok(m1), Ok(m2)) = (
        p.as_mut_slice::<f32>(),
        g.as_slice::<f32>(),
        m1.as_mut_slice::<f32>(),
        m2.as_mut_slice::<f32>(),
    ) {
        let step = |p: &mut [f32], g: &[f32], m1: &mut [f32], m2: &mut [f32]| {
            for (((p, &g), m1), m2) in p.iter_mut().zip(g).zip(m1).zip(m2) {
                let g = grad_of(*p, g);
                let (n1, n2) = (g * f1, (g * g) * f2);
                (*m1, *m2) = if first {
                    (n1, n2)
                } else {
                    (*m1 * b1 + n1, *m2 * b2 + n2)
                };
                *p = update(*p, *m1, *m2);
            }
        };
        if p.len() <= CHUNK {
            // Handing a small tensor to the pool costs more than the pass itself.
            step(p, g, m1, m2);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m1.par_chunks_mut(CHUNK))
                .zip(m2.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m1), m2)| step(p, g, m1, m2));
        }
    }
    let momentum = AdaptiveMomentumState::new(
        time,
        Tensor::from_data(m1, &device),
        Tensor::from_data(m2, &device),
    );
    (Tensor::from_data(p, &device), momentum)
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use burn::prelude::*;

    use super::*;
    use crate::train::fit::canonical_burnpack;

    /// A layer wide enough to span several parallel chunks.
    fn layer() -> Linear {
        let device = Device::flex().autodiff();
        device.seed(7);
        LinearConfig::new(300, 70).init(&device)
    }

    /// Weights and optimizer record bytes after four steps.
    fn steps(mut optim: ModuleOptimizer, mut model: Linear) -> (Vec<u8>, Vec<u8>) {
        let device = Device::flex().autodiff();
        for step in 0..4 {
            let x: Vec<f32> = (0..16 * 300)
                .map(|i| ((i * 7919 + step * 31) % 997) as f32 / 997.0 - 0.5)
                .collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [16, 300]), &device);
            let loss = model.forward(x).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let weights = model.into_record().into_bytes().unwrap().to_vec();
        (
            weights,
            canonical_burnpack(optim.into_bytes().unwrap()).unwrap(),
        )
    }

    const M: Moments = Moments {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    };

    #[test]
    fn fused_adam_is_bitwise_burns_adam() {
        for penalty in [None, Some(1e-2)] {
            let burn = AdamConfig::new()
                .with_epsilon(M.epsilon)
                .with_weight_decay(penalty.map(WeightDecayConfig::new))
                .init();
            let ours = ModuleOptimizer::from(FusedAdam::new(M, penalty));
            let model = layer();
            let (a, b) = (steps(ours, model.clone()), steps(burn, model));
            assert_eq!(a, b, "penalty {penalty:?}");
        }
    }

    #[test]
    fn fused_adamw_is_bitwise_burns_adamw() {
        for decay in [0.0, 1e-2] {
            let burn = AdamWConfig::new()
                .with_epsilon(M.epsilon)
                .with_weight_decay(decay)
                .init();
            let ours = ModuleOptimizer::from(FusedAdamW::new(M, decay));
            let model = layer();
            let (a, b) = (steps(ours, model.clone()), steps(burn, model));
            assert_eq!(a, b, "decay {decay}");
        }
    }
}
