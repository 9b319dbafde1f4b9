//! `auditai report`: write one self-contained HTML page about a run.

use std::path::PathBuf;

use auditai::html_report::{self, Inputs};
use auditai::trust::Required;

use super::EXIT_OK;

#[derive(Debug, clap::Args)]
pub(super) struct ReportArgs {
    /// The run: its directory or its manifest (a training run or a pipeline run).
    run: PathBuf,
    /// Where to write the page (default: report.html in the run's directory).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// An evaluation attestation of the run's model to show (repeatable): its confusion
    /// matrix, subgroups, reliability diagram and criteria.
    #[arg(long = "eval", value_name = "FILE")]
    evaluations: Vec<PathBuf>,
    /// A public key (SPKI PEM) the manifest and attestations must be signed by (repeatable);
    /// the page then says who signed. Without --key or --policy the signatures are shown as
    /// claimed, not checked.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the signatures must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// `auditai report`: render the page, write it atomically, print its path.
pub(super) fn report_cmd(args: &ReportArgs) -> anyhow::Result<u8> {
    let trust = super::trust::trust_of(&args.keys, args.policy.as_deref())?;
    let required = if trust.is_empty() {
        Required::Unchecked
    } else {
        Required::Signers(&trust)
    };
    let page = html_report::render(&Inputs {
        run: &args.run,
        evaluations: &args.evaluations,
        required,
    })?;
    let output = args.output.clone().unwrap_or_else(|| {
        let dir = if args.run.is_dir() {
            args.run.clone()
        } else {
            auditai::run_dir::of_manifest(&args.run).to_path_buf()
        };
        dir.join("report.html")
    });
    auditai::fsio::write_atomic(&output, page.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    println!("report: {}", output.display());
    if trust.is_empty() {
        eprintln!(
            "notice: no --key or --policy: the page shows the signatures as claimed, not checked"
        );
    }
    Ok(EXIT_OK)
}
