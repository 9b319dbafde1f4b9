//! Integration tests: the `auditai` binary run as a user would, asserting exit codes, stdout,
//! stderr and the files it writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain;
mod support;

mod anchor;
mod audit;
mod cli;
mod hardening;
mod hash;
mod provenance;
mod resume;
mod run;
mod spec_errors;
mod wgpu;
