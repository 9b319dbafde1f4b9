//! `auditai run`: its arguments; the execution (behind the `train` feature) is in `exec`.

use std::path::PathBuf;

use auditai::spec::DeviceChoice;

use super::anchor::TargetArgs;

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// The pipeline spec (YAML): a single training spec, or a multi-stage spec with `stages:`.
    spec: PathBuf,
    /// Where to train: `auto` picks a hardware wgpu adapter when there is one, else the CPU.
    /// Overrides the spec's training.device.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Run directory (overrides the spec's outputs.dir; default runs/<name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue an interrupted run from its last complete checkpoint (single training specs).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Single training spec: start over in an existing run directory. The old run is moved
    /// aside to <DIR>.replaced-<unix time>, never deleted; only directories auditai marked as
    /// run directories qualify, never the current directory, the spec's directory, their
    /// ancestors, the home directory or a git work-tree root. Multi-stage spec: run every
    /// selected stage even when nothing it depends on changed.
    #[arg(long)]
    force: bool,
    /// Multi-stage spec: run only this stage and the stale stages upstream of it (repeatable).
    #[arg(long, value_name = "NAME", help_heading = "Multi-stage pipelines")]
    stage: Vec<String>,
    /// Multi-stage spec: with --stage, run only the named stages, not their upstream stages
    /// (DVC's --single-item).
    #[arg(
        long,
        alias = "single-item",
        requires = "stage",
        help_heading = "Multi-stage pipelines"
    )]
    no_upstream: bool,
    /// Multi-stage spec: run at most N stages at once (default: the number of cores, or 64 when
    /// stages run as Slurm jobs).
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), help_heading = "Multi-stage pipelines")]
    jobs: Option<u16>,
    /// Multi-stage spec: print which stages would run and why; run and write nothing.
    #[arg(long, help_heading = "Multi-stage pipelines")]
    dry_run: bool,
    /// Multi-stage spec: neither restore stages from the run cache (.auditai/cache/) nor save
    /// the stages that run into it (DVC's --no-run-cache).
    #[arg(long, help_heading = "Multi-stage pipelines")]
    no_run_cache: bool,
    /// Multi-stage spec: run every stage here (`local`) or as Slurm jobs (`slurm`), whatever
    /// the spec's `executor:` says (resources still come from the spec).
    #[arg(
        long,
        value_enum,
        value_name = "WHERE",
        help_heading = "Multi-stage pipelines"
    )]
    executor: Option<ExecutorArg>,
    /// Train without the data's bad rows (a wrong number of fields, text in a column declared
    /// numeric) instead of stopping; how many were left out, and which lines, are recorded in
    /// the manifest (as are rows without a label, which are always left out).
    #[arg(long)]
    skip_bad_rows: bool,
    /// Where the run processes its data: an ISO 3166-1 alpha-2 code (DE, US) or EU / EEA.
    /// Recorded in the manifest; a data source whose contribution does not permit processing
    /// there (or limits jurisdictions when none is declared) refuses the run.
    #[arg(long, value_name = "CODE", value_parser = jurisdiction, help_heading = "Data sources")]
    pub(super) jurisdiction: Option<String>,
    /// A policy whose `contributions:` section the data sources must meet (every source with a
    /// contribution, licences from a list); docs/contributors.md.
    #[arg(long, value_name = "FILE", help_heading = "Data sources")]
    pub(super) policy: Option<PathBuf>,
    /// Sign the manifest with this ed25519 private key (PKCS#8 PEM, mode 0600). Otherwise the key
    /// comes from AUDITAI_SIGNING_KEY (PEM text), then AUDITAI_SIGNING_KEY_FILE; with none the
    /// manifest is written unsigned.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print one JSON object instead of the results table.
    #[arg(long)]
    json: bool,
    /// No progress or notices on stderr (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
    /// Anchor the training commitment (commitment.json) before the first step, with the options
    /// below, so it provably predates the result; writes commitment.anchor.json. A failure to
    /// anchor stops the run before training.
    #[arg(long)]
    anchor_commitment: bool,
    #[command(
        flatten,
        next_help_heading = "Commitment anchoring (with --anchor-commitment)"
    )]
    target: TargetArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum DeviceArg {
    Auto,
    Wgpu,
    Cpu,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Wgpu => DeviceChoice::Wgpu,
            DeviceArg::Cpu => DeviceChoice::Cpu,
        }
    }
}

fn jurisdiction(s: &str) -> Result<String, String> {
    auditai::contribution::terms::jurisdiction(s)
}

/// Where a pipeline's stages run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum ExecutorArg {
    /// Child processes of `auditai run`.
    Local,
    /// Slurm jobs (sbatch).
    Slurm,
}

impl From<ExecutorArg> for auditai::spec::ExecutorKind {
    fn from(e: ExecutorArg) -> Self {
        match e {
            ExecutorArg::Local => auditai::spec::ExecutorKind::Local,
            ExecutorArg::Slurm => auditai::spec::ExecutorKind::Slurm,
        }
    }
}

#[cfg(feature = "train")]
mod exec;
#[cfg(feature = "train")]
pub(super) use exec::run;

#[cfg(not(feature = "train"))]
pub(super) fn run(_: &RunArgs) -> anyhow::Result<u8> {
    Err(super::needs_feature("train", "auditai run"))
}
