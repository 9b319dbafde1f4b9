//! Integration tests: the `auditai` binary run as a user would, asserting exit codes, stdout,
//! stderr and the files it writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "train")]
mod chain;
mod support;

#[cfg(feature = "train")]
mod anchor;
#[cfg(feature = "train")]
mod audit;
mod cli;
#[cfg(feature = "train")]
mod contributors;
#[cfg(feature = "train")]
mod disputes;
#[cfg(feature = "train")]
mod evidence;
#[cfg(feature = "train")]
mod experiments;
#[cfg(feature = "train")]
mod forge;
#[cfg(feature = "train")]
mod hardening;
mod hash;
mod offline;
#[cfg(feature = "train")]
mod package;
#[cfg(feature = "train")]
mod predict;
#[cfg(feature = "train")]
mod provenance;
#[cfg(feature = "train")]
mod rawdata;
#[cfg(feature = "train")]
mod receiver;
#[cfg(feature = "train")]
mod resume;
#[cfg(feature = "train")]
mod run;
#[cfg(feature = "train")]
mod slurm;
mod snapshots;
#[cfg(feature = "train")]
mod spec_errors;
#[cfg(feature = "train")]
mod stages;
#[cfg(feature = "train")]
mod trust;
#[cfg(feature = "train")]
mod wgpu;
