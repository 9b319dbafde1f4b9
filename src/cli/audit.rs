//! `auditai audit`: its arguments; the execution (behind the `train` feature) is in `exec`.

use std::path::PathBuf;

use super::run::DeviceArg;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    /// The manifest (manifest.intoto.json) of the run to audit.
    #[arg(required = true)]
    manifest: Option<PathBuf>,
    /// Pipeline manifest: re-execute this command stage in a scratch copy of its recorded deps,
    /// with its recorded environment, and compare its outs bitwise with the recorded digests.
    /// Exit 0 when reproduced, 1 when an out differs or is missing.
    #[arg(long, value_name = "STAGE", help_heading = "Pipeline stages")]
    rerun: Option<String>,
    /// A public key (SPKI PEM) trusted to have signed the manifest; repeat for several. The
    /// manifest's signatures are checked first, as `auditai verify` checks them, and the audit
    /// (or, with --rerun, the recorded command) goes ahead only when they hold.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the manifest's signatures must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// With --challenge-from-anchor: wait this long (`90s`, `10m`) for the challenge block to
    /// be mined instead of stopping at once. With --rerun: stop the command after this long; it
    /// is then not reproduced.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<humantime::Duration>,
    /// With --rerun: execute the recorded command without checking who signed the manifest.
    /// The command runs in a scratch directory but is not sandboxed: use this only for a
    /// manifest you produced yourself.
    #[arg(long, requires = "rerun", conflicts_with_all = ["keys", "policy"], help_heading = "Pipeline stages")]
    trust_recorded_command: bool,
    /// How many transcript segments to replay. Replaying K of E segments costs about K/E of
    /// the training time.
    #[arg(long, value_name = "K", default_value_t = 3)]
    segments: usize,
    /// The challenge that picks the segments, hex (e.g. a beacon value the auditor trusts).
    /// Without it and without --challenge-from-anchor, fresh OS randomness is used and printed.
    #[arg(long, value_name = "HEX", conflicts_with = "challenge_from_anchor")]
    challenge: Option<String>,
    /// Take the challenge from the chain the manifest is anchored on: the hash of the block 6
    /// blocks after the anchor's, read online (needs --rpc or --chain). The prover cannot choose
    /// that block by choosing what to anchor; what grinding remains (anchoring many runs, block
    /// producers) is in docs/audit.md.
    #[arg(long)]
    challenge_from_anchor: bool,
    /// With --challenge-from-anchor and no --rpc/--chain: take the anchor block hash the receipt
    /// claims, unchecked. The prover wrote that receipt and could have chosen it; the challenge
    /// is reported as claimed, never as verified.
    #[arg(long, requires = "challenge_from_anchor")]
    allow_unconfirmed_challenge: bool,
    /// Where to replay: default the backend that trained (compared bitwise). Another backend
    /// needs --tolerance.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Accept a replay on another backend than the one that trained (for example a wgpu run on
    /// a machine without a GPU), compared within the tolerances in docs/audit.md, not bitwise.
    /// With --rerun: accept JSON and CSV outs whose numbers differ by at most --rtol
    /// relatively (and nothing else differs); the differing values are printed either way.
    #[arg(long)]
    tolerance: bool,
    /// With --rerun --tolerance: the relative tolerance for numbers in JSON and CSV outs.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1e-9,
        requires = "tolerance",
        help_heading = "Pipeline stages"
    )]
    rtol: f64,
    /// A file or directory in the run directory that the manifest does not name but that is
    /// expected there (repeatable), as for `auditai verify`.
    #[arg(long, value_name = "NAME")]
    allow_extra: Vec<String>,
    /// Check a withheld data source (a salted contribution) with its salt: SOURCE is the data
    /// file as the manifest names it (or its file name), SALT_FILE the owner's salt
    /// (repeatable). Without it a withheld source cannot be replayed.
    #[arg(long, value_name = "SOURCE=SALT_FILE")]
    reveal: Vec<String>,
    /// Where the data files named by the commitment live (default: the git work tree holding
    /// the manifest, else the current directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Check the anchors (commitment and challenge) online against this JSON-RPC endpoint.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Check the anchors online against this chain preset's endpoint.
    #[arg(long, value_name = "NAME")]
    chain: Option<String>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    attest: super::verdict::AttestArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCmd {
    /// Play a whole dispute between two runs of the same job on this machine: bisect their
    /// transcripts to the first step where they differ, replay that one step, and say which
    /// run trained honestly. Exit 0 when the runs agree (or no fault is found), 1 when one run
    /// (or both) is wrong, 2 when the game cannot be played.
    Dispute(super::dispute::LocalArgs),
}

#[cfg(feature = "train")]
mod exec;

pub(super) fn audit_cmd(args: &AuditArgs) -> anyhow::Result<u8> {
    if let Some(AuditCmd::Dispute(d)) = &args.cmd {
        return super::dispute::local_cmd(d);
    }
    let Some(manifest) = &args.manifest else {
        anyhow::bail!("name the manifest to audit, or `audit dispute RUN_A RUN_B`");
    };
    if let Some(stage) = &args.rerun {
        let trust = super::trust::trust_of(&args.keys, args.policy.as_deref())?;
        if trust.is_empty() && !args.trust_recorded_command {
            anyhow::bail!(
                "--rerun executes the command recorded in the manifest: name whom you trust to have signed it with --key or --policy, or pass --trust-recorded-command for a manifest you produced yourself"
            );
        }
        let required = if args.trust_recorded_command {
            auditai::trust::Required::Unchecked
        } else {
            auditai::trust::Required::Signers(&trust)
        };
        if !(args.rtol >= 0.0 && args.rtol.is_finite()) {
            anyhow::bail!(
                "--rtol must be a relative tolerance of 0 or more, got {}",
                args.rtol
            );
        }
        let limits = auditai::stages::rerun::Limits {
            timeout: args.timeout.map(Into::into),
            rtol: args.tolerance.then_some(args.rtol),
        };
        return super::stages::rerun_cmd(
            manifest,
            stage,
            args.root.as_deref(),
            required,
            &limits,
            args.json,
        );
    }
    #[cfg(feature = "train")]
    return exec::audit_cmd(args, manifest);
    #[cfg(not(feature = "train"))]
    Err(super::needs_feature("train", "auditai audit"))
}
