//! Choosing the compute device: burn's flex CPU backend or a wgpu adapter, probed without panics.

use std::sync::OnceLock;

use burn::prelude::Device;
use burn::tensor::wgpu::WgpuInitError;

use crate::spec::DeviceChoice;

pub use crate::transcript::BackendKind;

/// A ready device and what it is.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The burn device (without autodiff).
    pub device: Device,
    /// Backend family.
    pub kind: BackendKind,
    /// Adapter description, e.g. `NVIDIA H100 (Vulkan)` or `flex (CPU)`.
    pub adapter: String,
    /// The kernel family that computes on it, recorded in the training commitment: a replay is
    /// bitwise only with the same kernels ([`cpu_kernels`], or the wgpu adapter and driver).
    pub kernels: String,
}

/// Why no wgpu device could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no usable wgpu adapter: {0}")]
pub struct NoAdapter(pub String);

/// A wgpu adapter found by probing, and whether it is a software rasteriser.
#[derive(Debug, Clone)]
struct Probed {
    device: Device,
    adapter: String,
    kernels: String,
    software: bool,
}

/// burn's wgpu runtime can be initialised once per process; the probe result is shared.
static WGPU: OnceLock<Result<Probed, NoAdapter>> = OnceLock::new();

fn probe_wgpu() -> Result<Probed, NoAdapter> {
    WGPU.get_or_init(|| {
        // `init_with_setup` asks wgpu for an adapter and returns an error when there is none,
        // where a lazily created device would panic later on a background thread.
        let (device, setup) = Device::wgpu_options()
            .init_with_setup()
            .map_err(|e| match e {
                WgpuInitError::AdapterUnavailable { message, .. } => {
                    NoAdapter(format!("none found ({message})"))
                }
                other => NoAdapter(other.to_string()),
            })?;
        let info = setup.adapter.get_info();
        Ok(Probed {
            device,
            adapter: format!("{} ({:?})", info.name, info.backend),
            // burn is built without autotune: kernels are chosen by shape, not by timing.
            kernels: format!(
                "burn-cubecl 0.22 on {} ({:?}), driver {} {}, no autotune",
                info.name, info.backend, info.driver, info.driver_info
            ),
            software: info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu,
        })
    })
    .clone()
}

/// The CPU backend.
pub fn cpu() -> Backend {
    Backend {
        device: Device::flex(),
        kind: BackendKind::Cpu,
        adapter: "flex (CPU)".to_string(),
        kernels: cpu_kernels(),
    }
}

/// The CPU kernel family: burn's flex backend and its gemm, which pick their vector
/// instructions at run time, so the instruction-set level is part of what a replay must match.
pub fn cpu_kernels() -> String {
    format!("burn-flex 0.22 with gemm 0.19, {}", simd_level())
}

/// The widest vector instruction set flex and gemm dispatch to on this CPU.
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "x86-64 avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "x86-64 avx2+fma"
        } else if std::arch::is_x86_feature_detected!("sse4.1") {
            "x86-64 sse4.1"
        } else {
            "x86-64 sse2"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "aarch64 neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        std::env::consts::ARCH
    }
}

/// Why a run or replay is not on the device one might expect (shown as a notice).
#[derive(Debug, Clone)]
pub enum Notice {
    /// `auto` found only a software wgpu adapter and trains on the CPU.
    SoftwareOnly {
        /// The software adapter.
        adapter: String,
    },
    /// `auto` found no wgpu adapter and trains on the CPU.
    NoAdapter(NoAdapter),
    /// A wgpu-trained run is replayed on the CPU (the auditor accepted tolerances).
    ReplayOnCpu(NoAdapter),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::SoftwareOnly { adapter } => write!(
                f,
                "only a software wgpu adapter ({adapter}) is available; training on the CPU"
            ),
            Notice::NoAdapter(e) => write!(f, "{e}; training on the CPU"),
            Notice::ReplayOnCpu(e) => write!(f, "{e}; replaying on the CPU"),
        }
    }
}

/// Resolve a device choice. `auto` prefers a hardware wgpu adapter and otherwise takes the CPU,
/// returning a one-line notice that says why.
pub fn select(choice: DeviceChoice) -> Result<(Backend, Option<Notice>), NoAdapter> {
    match choice {
        DeviceChoice::Cpu => Ok((cpu(), None)),
        DeviceChoice::Wgpu => {
            let p = probe_wgpu()?;
            Ok((wgpu_backend(p), None))
        }
        DeviceChoice::Auto => match probe_wgpu() {
            Ok(p) if !p.software => Ok((wgpu_backend(p), None)),
            Ok(p) => Ok((cpu(), Some(Notice::SoftwareOnly { adapter: p.adapter }))),
            Err(e) => Ok((cpu(), Some(Notice::NoAdapter(e)))),
        },
    }
}

fn wgpu_backend(p: Probed) -> Backend {
    Backend {
        device: p.device,
        kind: BackendKind::Wgpu,
        adapter: p.adapter,
        kernels: p.kernels,
    }
}
