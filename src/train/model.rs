//! The two model families a spec can name: an MLP and a small CNN, as one burn module.
//!
//! Dropout masks are not drawn from the device's RNG, which differs between backends: they come
//! from a documented blake3 stream keyed by `(seed, epoch, step, layer)` and are uploaded, so a
//! step's masks are the same on every backend and any step can be replayed on its own.

use std::io::Read;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation;

use crate::spec::{Activation, ModelKind, Pool, Spec};

/// The most parameters a model may have (4 GiB of f32 weights).
pub const MAX_PARAMETERS: usize = 1 << 30;

/// The number of parameters [`Net::new`] would allocate for `spec` with `inputs` features and
/// `outputs` logits, or `None` when it does not fit a `usize`. Mirrors `Net::new`'s shapes.
pub fn parameter_count(spec: &Spec, inputs: usize, outputs: usize) -> Option<usize> {
    let m = &spec.model;
    let dense = |i: usize, o: usize| i.checked_mul(o)?.checked_add(o);
    let mut total = 0usize;
    let mut width = inputs;
    if let (ModelKind::Cnn, Some(conv), Some([c, h0, w0])) = (m.kind, &m.conv, spec.image_shape()) {
        let (mut ch, mut h, mut w) = (c, h0, w0);
        let k2 = conv.kernel.checked_mul(conv.kernel)?;
        for &out in &conv.channels {
            let weights = ch.checked_mul(out)?.checked_mul(k2)?.checked_add(out)?;
            total = total.checked_add(weights)?;
            ch = out;
            if conv.pool != Pool::None {
                h /= 2;
                w /= 2;
            }
        }
        width = ch.checked_mul(h)?.checked_mul(w)?;
    }
    for &h in &m.hidden {
        total = total.checked_add(dense(width, h)?)?;
        width = h;
    }
    total.checked_add(dense(width, outputs)?)
}

/// A feed-forward network: optional conv blocks (conv → activation → pool), then dense layers.
#[derive(Module, Debug)]
pub struct Net {
    convs: Vec<Conv2d>,
    max_pool: Option<MaxPool2d>,
    avg_pool: Option<AvgPool2d>,
    dense: Vec<Linear>,
    output: Linear,
    #[module(skip)]
    dropout: f64,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    image: Option<[usize; 3]>,
}

impl Net {
    /// Build the network for `spec` with `inputs` features and `outputs` logits on `device`.
    /// Check [`parameter_count`] first: this allocates every parameter.
    ///
    /// Parameters come from `device`'s RNG; call on a seeded CPU device for reproducible weights.
    pub fn new(spec: &Spec, inputs: usize, outputs: usize, device: &Device) -> Net {
        let m = &spec.model;
        let mut convs = Vec::new();
        let mut width = inputs;
        let mut image = None;
        if let (ModelKind::Cnn, Some(conv), Some([c, h0, w0])) =
            (m.kind, &m.conv, spec.image_shape())
        {
            let (mut ch, mut h, mut w) = (c, h0, w0);
            let pad = conv.kernel / 2;
            for &out in &conv.channels {
                convs.push(
                    Conv2dConfig::new([ch, out], [conv.kernel, conv.kernel])
                        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                        .init(device),
                );
                ch = out;
                if conv.pool != Pool::None {
                    h /= 2;
                    w /= 2;
                }
            }
            width = ch * h * w;
            image = Some([c, h0, w0]);
        }
        let pool = m.conv.as_ref().map_or(Pool::None, |c| c.pool);
        let mut dense = Vec::new();
        for &h in &m.hidden {
            dense.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Net {
            convs,
            max_pool: (pool == Pool::Max).then(|| MaxPool2dConfig::new([2, 2]).init()),
            avg_pool: (pool == Pool::Avg).then(|| AvgPool2dConfig::new([2, 2]).init()),
            dense,
            output: LinearConfig::new(width, outputs).init(device),
            dropout: m.dropout,
            activation: m.activation,
            image,
        }
    }

    /// Logits (or the regression output) for a `[batch, features]` input, without dropout.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_train(x, None)
    }

    /// The forward pass of a training step: with `dropout_key`, every dense hidden layer's
    /// output is masked by [`dropout_mask`] of `(dropout_key, layer)`.
    pub fn forward_train(&self, x: Tensor<2>, dropout_key: Option<&[u8]>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let mut x = x;
        if let Some([c, h, w]) = self.image {
            let mut img: Tensor<4> = x.reshape([batch, c, h, w]);
            for conv in &self.convs {
                img = self.act(conv.forward(img));
                if let Some(p) = &self.max_pool {
                    img = p.forward(img);
                } else if let Some(p) = &self.avg_pool {
                    img = p.forward(img);
                }
            }
            x = img.flatten(1, 3);
        }
        for (i, layer) in self.dense.iter().enumerate() {
            x = self.act(layer.forward(x));
            if let Some(key) = dropout_key.filter(|_| self.dropout > 0.0) {
                let [rows, cols] = x.dims();
                let mask = dropout_mask(key, i, rows * cols, self.dropout);
                let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, cols]), &x.device());
                x = x * mask;
            }
        }
        self.output.forward(x)
    }

    fn act<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.activation {
            Activation::Relu => activation::relu(x),
            Activation::Gelu => activation::gelu(x),
            Activation::Tanh => activation::tanh(x),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
        }
    }
}

/// An inverted-dropout mask of `n` values for layer `layer`: each value is 0 with probability
/// `p`, else `1 / (1 - p)`. Value `j` is dropped when the `j`-th little-endian `u32` of the blake3
/// stream `derive_key("auditai 2025 dropout v1", key ‖ layer as u64 LE)` is below `p × 2^32`.
pub fn dropout_mask(key: &[u8], layer: usize, n: usize, p: f64) -> Vec<f32> {
    let mut h = blake3::Hasher::new_derive_key("auditai 2025 dropout v1");
    h.update(key);
    h.update(&(layer as u64).to_le_bytes());
    let mut stream = h.finalize_xof();
    let threshold = (p * 4_294_967_296.0) as u64;
    let keep = (1.0 / (1.0 - p)) as f32;
    let mut buf = vec![0u8; n * 4];
    // Reading from an XOF never fails.
    let _ = stream.read(&mut buf);
    buf.chunks_exact(4)
        .map(|c| {
            let r = u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            if r < threshold { 0.0 } else { keep }
        })
        .collect()
}

/// Gives every float parameter the id of its position in traversal order (0, 1, 2, ...).
///
/// burn draws random 64-bit ids that end up in the record bytes; canonical ids make the bytes of
/// a checkpoint depend only on the weights. Mapping also materialises lazily initialised params.
pub struct CanonicalIds {
    next: u64,
}

impl CanonicalIds {
    /// Renumber `module`'s parameters.
    pub fn apply<M: Module>(module: M) -> M {
        module.map(&mut CanonicalIds { next: 0 })
    }
}

impl ModuleMapper for CanonicalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        let id = ParamId::from(self.next);
        self.next += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod parameter_tests {
    use super::*;

    #[test]
    fn parameter_count_matches_the_built_network() {
        let mlp = "version: 1\nname: m\nseed: 1\ndata:\n  path: x.csv\n  label: y\n  task: classification\nmodel:\n  type: mlp\n  hidden: [16, 8]\n";
        let cnn = "version: 1\nname: c\nseed: 1\ndata:\n  path: x.csv\n  label: y\n  task: classification\n  shape: [1, 8, 8]\nmodel:\n  type: cnn\n  hidden: [12]\n  conv: { channels: [4, 6], kernel: 3 }\n";
        for (yaml, inputs) in [(mlp, 5), (cnn, 64)] {
            let spec = Spec::parse(yaml, std::path::Path::new("s.yaml")).unwrap();
            let net = Net::new(&spec, inputs, 3, &Device::flex());
            assert_eq!(parameter_count(&spec, inputs, 3), Some(net.num_params()));
        }
        let spec = Spec::parse(mlp, std::path::Path::new("s.yaml")).unwrap();
        assert_eq!(parameter_count(&spec, usize::MAX, 3), None);
    }
}
