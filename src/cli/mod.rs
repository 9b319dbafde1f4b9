//! The command line: argument parsing, output formatting and exit codes.
//!
//! The only module that knows clap, anyhow, stdout/stderr and exit codes. Results go to stdout
//! (a table, or one JSON object with `--json`); progress and notices go to stderr.

mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a verification or audit found a definite failure.
#[allow(dead_code)] // returned by `verify` and `audit` once they land
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage, input, I/O, device or network error.
pub const EXIT_ERROR: u8 = 2;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 verification or audit failed; 2 usage, input, I/O, device or network error.";

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
    /// Train a model from a YAML pipeline spec into a run directory.
    ///
    /// Writes per-epoch checkpoints, metrics.jsonl, model.bpk, model.safetensors and summary.json
    /// under the run directory (default runs/<name>/). Prints a results table, or one JSON object
    /// with --json.
    #[command(after_help = EXIT_CODES)]
    Run(run::RunArgs),
    /// Verify a signed provenance manifest and the files it names (not available yet).
    #[command(after_help = EXIT_CODES)]
    Verify(Pending),
    /// Add a co-signature to a provenance manifest (not available yet).
    #[command(after_help = EXIT_CODES)]
    Sign(Pending),
    /// Generate an ed25519 signing key pair (not available yet).
    #[command(after_help = EXIT_CODES)]
    Keygen(Pending),
    /// Print blake3 digests of files and directory trees (not available yet).
    #[command(after_help = EXIT_CODES)]
    Hash(Pending),
    /// Anchor manifest digests on an EVM chain or Bitcoin via OpenTimestamps (not available yet).
    #[command(after_help = EXIT_CODES)]
    Anchor(Pending),
    /// Replay challenged training segments to check a run really happened (not available yet).
    #[command(after_help = EXIT_CODES)]
    Audit(Pending),
    /// Show a provenance manifest as a readable summary (not available yet).
    #[command(after_help = EXIT_CODES)]
    Inspect(Pending),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Arguments of a subcommand that a later release implements.
#[derive(Debug, clap::Args)]
struct Pending {
    /// Arguments (ignored until the command is implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Parse the command line, run the command and return the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_ERROR)
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
        Command::Verify(_) => pending("verify", "signed provenance manifests"),
        Command::Sign(_) => pending("sign", "signed provenance manifests"),
        Command::Keygen(_) => pending("keygen", "signed provenance manifests"),
        Command::Hash(_) => pending("hash", "signed provenance manifests"),
        Command::Inspect(_) => pending("inspect", "signed provenance manifests"),
        Command::Anchor(_) => pending("anchor", "on-chain anchoring"),
        Command::Audit(_) => pending("audit", "training audits"),
    }
}

fn pending(command: &str, feature: &str) -> anyhow::Result<u8> {
    eprintln!(
        "error: `auditai {command}` is not available yet: it arrives with {feature} (see CHANGELOG.md)"
    );
    Ok(EXIT_ERROR)
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

/// The error and its causes on one line, without repeating a cause already in the message.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether stderr is a terminal (progress bars draw only there).
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
