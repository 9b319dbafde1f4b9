//! `auditai eval`: its arguments; the execution (behind the `train` feature) in `exec`.

use std::path::PathBuf;

use super::anchor::TargetArgs;
use super::run::DeviceArg;

#[derive(Debug, clap::Args)]
pub(super) struct EvalArgs {
    /// The run to evaluate: its run directory or its manifest.
    #[arg(required_unless_present = "commit_criteria")]
    run: Option<PathBuf>,
    /// The evaluation data: a CSV with the model's feature columns (matched by name) and its
    /// label column, rows the model never saw.
    #[arg(long, value_name = "FILE", required_unless_present = "commit_criteria")]
    data: Option<PathBuf>,
    /// Also report the metrics per value of this column (repeatable; it need not be a model
    /// feature, e.g. sex or an age band).
    #[arg(long, value_name = "COLUMN")]
    by: Vec<String>,
    /// Acceptance criteria (YAML, docs/eval.md): each reports pass or fail with the number
    /// behind it; exit 1 when one fails.
    #[arg(long, value_name = "FILE")]
    criteria: Option<PathBuf>,
    /// Commit to a criteria file before the evaluation data is opened: write
    /// FILE.commitment.json (its digests and the time) and, with --chain/--rpc and/or --ots,
    /// anchor it, so a later evaluation proves the criteria predate it. Evaluates nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["run", "data", "criteria"])]
    commit_criteria: Option<PathBuf>,
    /// A public key (SPKI PEM) trusted to have signed the run's manifest; repeat for several.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the run's manifest must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Load the model without checking who signed its manifest (its files are still read only
    /// through the manifest's digests; loud; recorded in the attestation).
    #[arg(long, conflicts_with_all = ["keys", "policy"])]
    no_verify: bool,
    /// Sign the attestation with this ed25519 private key. Otherwise the key comes from
    /// AUDITAI_SIGNING_KEY, then AUDITAI_SIGNING_KEY_FILE; with none it is written unsigned.
    #[arg(long, value_name = "FILE")]
    sign_with: Option<PathBuf>,
    /// Where to write the attestation (default: eval.intoto.json; an existing file is not
    /// replaced).
    #[arg(long, value_name = "FILE", default_value = "eval.intoto.json")]
    out: PathBuf,
    /// Where the run's training data lives, for the leakage check (default: the git work tree
    /// holding the run, else the current directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Skip rows with an unusable feature or label (counted) instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Where to run the model.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Print one JSON object (the attestation's predicate) instead of the tables.
    #[arg(long)]
    json: bool,
    /// No notices on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(
        flatten,
        next_help_heading = "Anchoring the criteria commitment (with --commit-criteria), or checking its anchor online"
    )]
    target: TargetArgs,
}

#[cfg(feature = "train")]
mod exec;
#[cfg(feature = "train")]
pub(super) use exec::eval_cmd;

#[cfg(not(feature = "train"))]
pub(super) fn eval_cmd(_: &EvalArgs) -> anyhow::Result<u8> {
    Err(super::needs_feature("train", "auditai eval"))
}
