//! Distances between two sets of weights (burnpack bytes), for comparing a replay across
//! backends, and the tolerances a cross-backend replay must meet.

use serde::Serialize;

/// The documented cross-backend tolerances (docs/audit.md): `(max L∞, max relative L2, max
/// cosine distance)`.
///
/// The relative L2 is the replay's L2 distance from the recorded weights divided by the L2 norm
/// of the segment's update (recorded minus the weights before the segment): a replay passes when
/// it lands within a small fraction of the step it claims to reproduce. Measured honest
/// wgpu-versus-CPU replays stay at least 67 times below each bound (BENCHMARKS.md).
pub fn tolerance() -> (f64, f64, f64) {
    (LINF_MAX, REL_L2_MAX, COSINE_MAX)
}

const LINF_MAX: f64 = 1e-4;
const REL_L2_MAX: f64 = 1e-3;
const COSINE_MAX: f64 = 1e-6;

/// How far the replayed weights are from the recorded ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distance {
    /// Largest absolute difference of one parameter.
    pub linf: f64,
    /// Euclidean distance.
    pub l2: f64,
    /// 1 − cosine similarity of the flattened weights.
    pub cosine_distance: f64,
    /// Euclidean norm of the recorded update (recorded − before).
    pub update_l2: f64,
    /// `l2 / update_l2` (infinite when the recorded update is zero and the replay differs).
    pub relative_l2: f64,
}

impl std::fmt::Display for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "L∞ {:.2e}, L2 {:.2e} ({:.2e} of the update), cosine distance {:.2e}",
            self.linf, self.l2, self.relative_l2, self.cosine_distance
        )
    }
}

/// Why two checkpoints cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistanceError {
    /// The bytes are not a burnpack record.
    #[error("not a burnpack: {0}")]
    NotBurnpack(String),
    /// A tensor is not f32.
    #[error("tensor {name} is {dtype}, not f32")]
    NotF32 {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A checkpoint's tensors are not the model's.
    #[error("its tensors' names or shapes differ from the model's")]
    Layout,
    /// The three checkpoints of a segment hold different tensors.
    #[error("the checkpoints hold different tensors than the model")]
    Different,
}

/// One tensor: name, shape, values.
type Flat = (String, Vec<usize>, Vec<f32>);

/// All float parameters of a burnpack, sorted by tensor name, flattened.
fn flatten(bytes: &[u8]) -> Result<Vec<Flat>, DistanceError> {
    let not_burnpack = |e: &dyn std::fmt::Display| DistanceError::NotBurnpack(e.to_string());
    let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| not_burnpack(&e))?;
    let mut out = Vec::new();
    for t in reader.into_tensors().map_err(|e| not_burnpack(&e))? {
        if t.dtype != burn_pack::DType::F32 {
            return Err(DistanceError::NotF32 {
                name: t.name.clone(),
                dtype: format!("{:?}", t.dtype),
            });
        }
        let shape = t.shape.to_vec();
        let name = t.name.clone();
        let raw = t.into_bytes().map_err(|e| not_burnpack(&e))?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((name, shape, values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Tensor names and shapes, sorted by name.
fn layout(v: &[Flat]) -> Vec<(&str, &[usize])> {
    v.iter()
        .map(|(n, s, _)| (n.as_str(), s.as_slice()))
        .collect()
}

/// Whether two burnpacks hold the same tensors (names and shapes).
pub fn same_layout(a: &[u8], b: &[u8]) -> Result<(), DistanceError> {
    if layout(&flatten(a)?) == layout(&flatten(b)?) {
        Ok(())
    } else {
        Err(DistanceError::Layout)
    }
}

impl Distance {
    /// Distances of `replayed` from `recorded`, with the update measured from `before`.
    pub fn between(
        replayed: &[u8],
        recorded: &[u8],
        before: &[u8],
    ) -> Result<Distance, DistanceError> {
        let (a, b, z) = (flatten(replayed)?, flatten(recorded)?, flatten(before)?);
        if layout(&a) != layout(&b) || layout(&b) != layout(&z) {
            return Err(DistanceError::Different);
        }
        let (mut linf, mut d2, mut dot, mut na, mut nb, mut u2) =
            (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
        for ((x, y), w) in a
            .iter()
            .flat_map(|t| &t.2)
            .zip(b.iter().flat_map(|t| &t.2))
            .zip(z.iter().flat_map(|t| &t.2))
        {
            let (x, y, w) = (f64::from(*x), f64::from(*y), f64::from(*w));
            let d = (x - y).abs();
            linf = linf.max(if d.is_nan() { f64::INFINITY } else { d });
            d2 += d * d;
            dot += x * y;
            na += x * x;
            nb += y * y;
            u2 += (y - w) * (y - w);
        }
        let l2 = d2.sqrt();
        let update_l2 = u2.sqrt();
        let cosine = if na > 0.0 && nb > 0.0 {
            (1.0 - dot / (na.sqrt() * nb.sqrt())).max(0.0)
        } else {
            1.0
        };
        let relative_l2 = if l2 == 0.0 {
            0.0
        } else if update_l2 == 0.0 {
            f64::INFINITY
        } else {
            l2 / update_l2
        };
        Ok(Distance {
            linf,
            l2,
            cosine_distance: cosine,
            update_l2,
            relative_l2,
        })
    }

    /// Whether a cross-backend replay is close enough; the error names the bound exceeded.
    pub fn within_tolerance(&self) -> Result<(), Exceeded> {
        // NaN exceeds every bound.
        let exceeds = |v: f64, max: f64| v.is_nan() || v > max;
        if exceeds(self.linf, LINF_MAX) {
            return Err(Exceeded::Linf(self.linf));
        }
        if exceeds(self.relative_l2, REL_L2_MAX) {
            return Err(Exceeded::RelativeL2(self.relative_l2));
        }
        if exceeds(self.cosine_distance, COSINE_MAX) {
            return Err(Exceeded::Cosine(self.cosine_distance));
        }
        Ok(())
    }
}

/// The tolerance a cross-backend replay exceeded, with the distance found.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Exceeded {
    /// The largest weight difference.
    #[error("L∞ {0:.2e} exceeds {LINF_MAX:.0e}")]
    Linf(f64),
    /// The L2 distance relative to the segment's update.
    #[error("L2 is {0:.2e} of the update, above {REL_L2_MAX:.0e}")]
    RelativeL2(f64),
    /// The cosine distance.
    #[error("cosine distance {0:.2e} exceeds {COSINE_MAX:.0e}")]
    Cosine(f64),
}
