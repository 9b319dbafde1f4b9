//! auditai: auditable AI pipelines.
//!
//! Train models from YAML pipeline specs on wgpu or the CPU ([`pipeline`], [`train`]), with
//! deterministic, resumable training whose every epoch leaves a digest-checked checkpoint.
//! Each module owns one concern and says at its top what it must not do.

pub mod anchor;
#[cfg(feature = "train")]
pub mod audit;
pub mod bundle;
pub mod cancel;
pub mod contribution;
pub mod data;
pub mod dispute;
pub mod eval;
pub mod experiments;
pub mod export;
pub mod fsio;
pub mod hash;
pub mod html_report;
pub mod manifest;
#[cfg(feature = "train")]
pub mod pipeline;
#[cfg(feature = "train")]
pub mod predict;
pub mod predlog;
pub mod provenance;
pub mod report;
pub mod rewards;
pub mod run_dir;
pub mod shuffle;
pub mod sign;
pub mod spec;
pub mod stages;
#[cfg(feature = "train")]
pub mod train;
pub mod transcript;
pub mod trust;
pub mod verify;
pub mod vsa;

#[cfg(test)]
mod fuzz_tests;
