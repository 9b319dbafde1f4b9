//! `auditai dispute open|respond|next|judge` (the game with signed moves, one command per move)
//! and `auditai audit dispute` (the whole game on one machine). Arguments always compiled; the
//! moves that replay training need the `train` feature.

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub(super) enum DisputeCmd {
    /// The referee opens a dispute between two runs of the same job: checks their commitments
    /// name the same spec, seed, data and initial weights, finds the first transcript segment
    /// whose states differ, and writes the dispute file with the first signed request (each
    /// party's state at the middle step). Exit 0 with nothing written when the runs agree.
    Open(OpenArgs),
    /// A party answers the open request: replays from its own checkpoint before the disputed
    /// segment to the requested step, writes the state files and appends its signed answer.
    Respond(RespondArgs),
    /// The referee narrows the interval from both answers and signs the next request; says so
    /// when one step is left.
    Next(RefereeArgs),
    /// The referee replays the one step left (or, when a party did not answer, declares it the
    /// loser) and signs a verdict naming the party whose claim matches. Exit 0 when no fault is
    /// found, 1 when a party (or both) is wrong.
    Judge(JudgeArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct OpenArgs {
    /// The first party's run (directory or manifest).
    run_a: PathBuf,
    /// The second party's run.
    run_b: PathBuf,
    /// The referee's ed25519 private key.
    #[arg(long, value_name = "REFEREE.pem")]
    key: PathBuf,
    /// The dispute file (its state files go into NAME.states/ beside it).
    #[arg(long, short, value_name = "FILE", default_value = "dispute.json")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Where the runs' data lives.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct DataArgs {
    /// Where the runs' data lives (default: as for `verify`, the project holding each run).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The salt of a withheld data source: SOURCE=SALT_FILE (repeatable).
    #[arg(long, value_name = "SOURCE=SALT_FILE")]
    reveal: Vec<String>,
    /// Replay on this device (default: the backend the run committed to, else the CPU).
    #[arg(long, value_enum)]
    device: Option<super::run::DeviceArg>,
}

#[derive(Debug, clap::Args)]
pub(super) struct RespondArgs {
    /// The dispute file.
    dispute: PathBuf,
    /// The answering party's run.
    run: PathBuf,
    /// The party's ed25519 private key: one that signed its run's manifest.
    #[arg(long, value_name = "NODE.pem")]
    key: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct RefereeArgs {
    /// The dispute file.
    dispute: PathBuf,
    /// The referee's ed25519 private key (the one that opened the dispute).
    #[arg(long, value_name = "REFEREE.pem")]
    key: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct JudgeArgs {
    /// The dispute file.
    dispute: PathBuf,
    /// The referee's ed25519 private key (the one that opened the dispute).
    #[arg(long, value_name = "REFEREE.pem")]
    key: PathBuf,
    /// Where to write the verdict (default verdict-dispute-<time>.intoto.json beside the
    /// dispute file; never replaced).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct LocalArgs {
    /// The first party's run (directory or manifest).
    run_a: PathBuf,
    /// The second party's run.
    run_b: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn dispute_cmd(cmd: &DisputeCmd) -> anyhow::Result<u8> {
    #[cfg(feature = "train")]
    return exec::dispute_cmd(cmd);
    #[cfg(not(feature = "train"))]
    {
        let _ = cmd;
        Err(super::needs_feature("train", "auditai dispute"))
    }
}

pub(super) fn local_cmd(args: &LocalArgs) -> anyhow::Result<u8> {
    #[cfg(feature = "train")]
    return exec::local_cmd(args);
    #[cfg(not(feature = "train"))]
    {
        let _ = args;
        Err(super::needs_feature("train", "auditai audit dispute"))
    }
}

#[cfg(feature = "train")]
mod exec;
