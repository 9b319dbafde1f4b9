//! The command line: argument parsing, output formatting and exit codes.
//!
//! The only module that knows clap, anyhow, stdout/stderr and exit codes. Results go to stdout
//! (a table, or one JSON object with `--json`); progress and notices go to stderr.

mod anchor;
mod audit;
mod bundle;
mod contribute;
mod dispute;
mod environ;
mod eval;
mod experiments;
mod export;
mod hash;
mod hints;
mod predict;
mod printer;
mod report;
mod rewards;
mod run;
mod stages;
mod trust;
mod verdict;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a verification or audit found a definite failure.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage, input, I/O, device or network error.
pub const EXIT_ERROR: u8 = 2;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 verification or audit failed, a pipeline stage failed, or (status) a stage is stale; 2 usage, input, I/O, device or network error; 130 a pipeline run stopped by Ctrl-C.";

/// auditai: train models from YAML pipeline specs, sign their provenance, anchor it on public
/// chains, and verify all of it.
#[derive(Debug, Parser)]
#[command(name = "auditai", version, about, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline spec: train a model, or run a multi-stage pipeline's stale stages.
    ///
    /// A single training spec writes per-epoch checkpoints, metrics.jsonl, model.bpk,
    /// model.safetensors, summary.json and, last, the provenance manifest manifest.intoto.json
    /// (signed when a key is given) under the run directory (default runs/<name>/). A spec with
    /// `stages:` runs the stages whose command, params, env, deps or outs changed since
    /// auditai.lock recorded them, independent ones in parallel, keeps their logs under the run
    /// directory and signs a manifest covering every stage. Prints a results table, or one JSON
    /// object with --json.
    #[command(after_help = EXIT_CODES)]
    Run(run::RunArgs),
    /// Say which stages of a multi-stage pipeline are stale and exactly why.
    ///
    /// Compares each stage's command, params, env, deps and outs with auditai.lock (next to the
    /// spec) and checks that each lock entry is backed by the manifest it names. Runs nothing,
    /// writes nothing. Exit 0 when every stage is up to date, 1 when one is stale.
    #[command(after_help = EXIT_CODES)]
    Status(stages::StatusArgs),
    /// Verify a provenance manifest: its signatures, who signed it, and every file it names.
    ///
    /// Checks each DSSE signature against the trusted keys (--key, --policy), re-hashes the
    /// outputs next to the manifest, the checkpoint directory (changed, missing and added files)
    /// and the data and spec files under --root, fails on files the manifest does not name
    /// (--allow-extra), and looks up the git commit. Anchors are checked offline, online with
    /// --rpc/--chain, and Bitcoin attestations against --bitcoin-header or --bitcoin-rpc; what
    /// was only read, not checked, is reported as claimed. Exit 0 only when every check holds,
    /// 1 when one fails, 2 on usage or I/O errors.
    #[command(after_help = EXIT_CODES)]
    Verify(trust::VerifyArgs),
    /// Use a trained model: verify its run, then predict one output row per input row.
    ///
    /// Loads the model only after the run's manifest verifies against --key/--policy and the
    /// weights, preprocessing and spec it loads match the manifest's digests (refused: exit 1).
    /// Applies the run's recorded preprocessing to the input columns (matched by name), streams
    /// the rows, and writes the prediction, class probabilities and the id column as CSV (or JSON
    /// Lines with --json). With --log, appends a hash-chained entry per prediction.
    #[command(after_help = EXIT_CODES)]
    Predict(predict::PredictArgs),
    /// Evaluate a trained model on external data against pre-registered acceptance criteria.
    ///
    /// Verifies and loads the model as `predict` does, computes the metrics overall and per
    /// subgroup (--by), checks that no evaluation row trained the model, judges --criteria, and
    /// writes a signed evaluation attestation (an in-toto Statement about the model's weights;
    /// docs/eval.md) that `verify`, `sign`, `anchor` and `inspect` take. --commit-criteria
    /// commits (and anchors) a criteria file before the evaluation data is opened. Exit 1 when a
    /// criterion fails or the model is refused.
    #[command(after_help = EXIT_CODES)]
    Eval(eval::EvalArgs),
    /// Write a model card (Markdown) or a CycloneDX 1.6 ML-BOM bound to a signed run.
    ///
    /// Filled from the run (model, parameters, data digests and rows, preprocessing,
    /// hyper-parameters, compute, metrics, signers, anchors), the spec's `card:` section and any
    /// --eval attestations; the run's files are checked against its manifest first (exit 1 when
    /// they differ). The document carries the manifest's and the weights' digests, so `auditai
    /// verify` on it checks it describes these weights.
    #[command(after_help = EXIT_CODES)]
    Export(export::ExportArgs),
    /// Add a co-signature to a provenance manifest; existing signatures stay valid.
    #[command(after_help = EXIT_CODES)]
    Sign(trust::SignArgs),
    /// Generate an ed25519 key pair (PKCS#8 and SPKI PEM, as openssl writes them).
    #[command(after_help = EXIT_CODES)]
    Keygen(trust::KeygenArgs),
    /// Print blake3 digests of files and directory trees (`digest  path`, like b3sum).
    ///
    /// A directory's digest covers every relative path, size and content beneath it; symlinks
    /// and special files are recorded and reported, never followed. Unchanged files are served
    /// from a stat cache (size, mtime, ctime, inode) unless --no-cache.
    #[command(after_help = EXIT_CODES)]
    Hash(hash::HashArgs),
    /// Anchor manifest digests on an EVM chain (0G, Ethereum, local) and/or Bitcoin through
    /// OpenTimestamps, batched in one Merkle tree; writes a receipt next to each manifest.
    #[command(after_help = EXIT_CODES)]
    Anchor(anchor::AnchorArgs),
    /// Check that a run really trained: its commitment, its hash-chained transcript and its
    /// checkpoints, then replay segments picked by a challenge and compare with the checkpoints.
    ///
    /// The challenge is --challenge HEX, the hash of the block 6 after the manifest's anchor
    /// read from the chain (--challenge-from-anchor with --rpc/--chain), or fresh randomness; it
    /// is printed, and the same challenge picks the same segments. The run directory is first
    /// checked as `auditai verify` checks it. Replays on the training backend must match
    /// bitwise; on another backend, only with --tolerance, within the tolerances in
    /// docs/audit.md. Does not check signatures (use `auditai verify`). Exit 0 only when every
    /// check and replay holds, 1 when one fails, 2 on usage or I/O errors.
    #[command(after_help = EXIT_CODES)]
    Audit(audit::AuditArgs),
    /// Show a provenance manifest as a readable summary (data, code, spec, seed, metrics,
    /// signers). Does not verify anything; use `auditai verify` for that.
    #[command(after_help = EXIT_CODES)]
    Inspect(trust::InspectArgs),
    /// Write one portable evidence file: the signed manifest byte for byte, its anchor receipt
    /// and OpenTimestamps proof, the verdicts beside it and the evaluation attestations given.
    ///
    /// `verify`, `inspect` and `anchor upgrade` take the bundle wherever they take a manifest;
    /// a receiver checks a model with `auditai verify bundle.json --key K --artifact MODEL`.
    #[command(after_help = EXIT_CODES)]
    Bundle(bundle::BundleArgs),
    /// Compare the params stages ran with: `params diff` (two runs, or a run and the working
    /// tree) and `params show`, as DVC's commands of the same names.
    #[command(subcommand, after_help = EXIT_CODES)]
    Params(experiments::ParamsCmd),
    /// Compare metrics: `metrics diff` (with the change) and `metrics show`, as DVC's commands of
    /// the same names.
    #[command(subcommand, after_help = EXIT_CODES)]
    Metrics(experiments::MetricsCmd),
    /// List the runs under a directory (default: runs): pipeline manifests (current and
    /// history) and training runs, newest first, with params, headline metrics and signer.
    ///
    /// Lists what each manifest says; it checks no signature (use `auditai verify`).
    #[command(after_help = EXIT_CODES)]
    Runs(experiments::RunsArgs),
    /// Write one self-contained HTML page about a run: its evidence (digests, signers,
    /// anchors, verdicts), training curves, the stage graph and, with --eval, the confusion
    /// matrix, subgroups and reliability diagram. Inline SVG, no scripts, nothing fetched.
    #[command(after_help = EXIT_CODES)]
    Report(report::ReportArgs),
    /// Sign the terms of a data file as its owner: licence, legal basis, permitted uses,
    /// jurisdictions, expiry and reward address (an in-toto statement; docs/contributors.md).
    ///
    /// The statement names the file by digest, or with --salted only by a salted commitment (the
    /// salt written beside it, kept by the owner). A training spec lists it under
    /// `data.sources`, and `run` refuses data whose terms do not permit the run.
    #[command(after_help = EXIT_CODES)]
    Contribute(contribute::ContributeArgs),
    /// Value a run's data sources and split a reward pool as a Merkle tree any distributor
    /// contract pays out (`rewards RUN --pool N -o rewards.json`), or print one claim's proof
    /// (`rewards proof rewards.json ADDRESS`).
    ///
    /// Values are the first-order in-run values the run measured (re-derived by its replay
    /// audit) or, with --value shapley, exact group Shapley values by retraining. The pool goes
    /// to data owners by value (negatives count as zero), to the run's signer (--compute-share)
    /// and to verdict signers (--verifier-share); the tree is an OpenZeppelin StandardMerkleTree
    /// dump of [address, uint256], with a signed statement binding its root to the manifest.
    #[command(after_help = EXIT_CODES)]
    Rewards(rewards::RewardsArgs),
    /// Settle a dispute between two training nodes given the same job: a refereed bisection
    /// over their transcripts down to one step, which the referee replays (`open`, `respond`,
    /// `next`, `judge`; docs/audit.md, "Disputes"). `auditai audit dispute` plays it all locally.
    #[command(subcommand, after_help = EXIT_CODES)]
    Dispute(dispute::DisputeCmd),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff), as `man 1 auditai` shows it.
    Man,
    /// Run one pipeline stage inside a Slurm allocation (what `executor: slurm` submits; not
    /// for direct use).
    #[command(hide = true)]
    StageJob {
        /// The job request the controller wrote.
        request: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Parse the command line, run the command and return the process exit code.
pub fn main() -> ExitCode {
    environ::prepare();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            write_completions(shell, &mut out);
            out.flush()?;
            Ok(EXIT_OK)
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            out.flush()?;
            Ok(EXIT_OK)
        }
        Command::Status(args) => stages::status_cmd(&args),
        Command::Verify(args) => trust::verify_cmd(&args),
        Command::Sign(args) => trust::sign_cmd(&args),
        Command::Predict(args) => predict::predict_cmd(&args),
        Command::Eval(args) => eval::eval_cmd(&args),
        Command::Export(args) => export::export_cmd(&args),
        Command::Keygen(args) => trust::keygen(&args),
        Command::Hash(args) => hash::hash(&args),
        Command::Inspect(args) => trust::inspect(&args),
        Command::Bundle(args) => bundle::bundle_cmd(&args),
        Command::Anchor(args) => anchor::anchor_cmd(&args),
        Command::Audit(args) => audit::audit_cmd(&args),
        Command::Params(cmd) => experiments::params_cmd(&cmd),
        Command::Metrics(cmd) => experiments::metrics_cmd(&cmd),
        Command::Runs(args) => experiments::runs_cmd(&args),
        Command::Report(args) => report::report_cmd(&args),
        Command::Contribute(args) => contribute::contribute_cmd(&args),
        Command::Rewards(args) => rewards::rewards_cmd(&args),
        Command::Dispute(cmd) => dispute::dispute_cmd(&cmd),
        Command::StageJob { request } => {
            auditai::cancel::install_handler();
            let code = auditai::stages::slurm::run_job(&request).map_err(anyhow::Error::msg)?;
            Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
        }
    }
}

fn write_completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "auditai", out);
}

/// Write one `--json` result to stdout: pretty-printed, then a newline.
fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Text from a file or server made safe for a terminal: control characters (escape sequences,
/// carriage returns, bidirectional overrides) are shown as `\u{..}` escapes, never sent raw.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The error of a command this build left out: which cargo feature it needs (exit 2).
#[cfg(not(all(feature = "train", feature = "anchor")))]
fn needs_feature(feature: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the `{feature}` feature, and this auditai was built without it (build with `cargo build --features {feature}`, or with the default features)"
    )
}

/// What a verdict line adds when some rows are only claimed.
fn claimed_note(claimed: usize) -> String {
    match claimed {
        0 => String::new(),
        n => format!(" ({n} claim(s) not checked: see the rows marked claimed)"),
    }
}

/// The error on one line. Every library error carries its cause in its own message (the
/// `source` chain is there for programs, e.g. [`is_broken_pipe`]), so the message alone is
/// printed and a cause never appears twice.
fn one_line(e: &anyhow::Error) -> String {
    clean(&hints::error(e).replace('\n', " "))
}

/// The exit code of an error: 1 when the library says it is a definite "no" about the evidence
/// (a refused signature, a file that is not what its manifest records), else 2. The one place
/// that decides.
fn exit_code(e: &anyhow::Error) -> u8 {
    let refusal = e.chain().any(|c| {
        c.downcast_ref::<auditai::trust::TrustError>()
            .is_some_and(auditai::trust::TrustError::is_refusal)
            || c.downcast_ref::<auditai::export::ExportError>()
                .is_some_and(auditai::export::ExportError::is_refusal)
            || c.downcast_ref::<auditai::stages::rerun::RerunError>()
                .is_some_and(auditai::stages::rerun::RerunError::is_refusal)
            || refusal_in_train(c)
    });
    if refusal { EXIT_FAILED } else { EXIT_ERROR }
}

#[cfg(feature = "train")]
fn refusal_in_train(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<auditai::predict::PredictError>()
        .is_some_and(auditai::predict::PredictError::is_refusal)
}

#[cfg(not(feature = "train"))]
fn refusal_in_train(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
