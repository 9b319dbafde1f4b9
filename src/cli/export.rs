//! `auditai export`: a model card or a CycloneDX ML-BOM bound to a signed run.

use std::io::Write;
use std::path::PathBuf;

use auditai::export::{self, ExportError};
use auditai::verify::Trust;

use super::{EXIT_FAILED, EXIT_OK, clean};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    /// Markdown model card (Mitchell et al.).
    ModelCard,
    /// CycloneDX 1.6 JSON ML-BOM.
    Cyclonedx,
}

#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    /// The run: its run directory or its manifest.
    run: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: Format,
    /// Write here (atomically) instead of stdout. An existing file is replaced only when it is a
    /// document auditai exported.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// A public key (SPKI PEM) the run's manifest must be signed by; the document then names
    /// its signers as verified (otherwise as claimed). Repeatable.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the run's manifest must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// An evaluation attestation of this run (`auditai eval`) whose results to include
    /// (repeatable).
    #[arg(long = "eval", value_name = "FILE")]
    evals: Vec<PathBuf>,
    /// Where the run's training data lives, for the class balance (default: the git work tree
    /// holding the run, else the current directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

pub(super) fn export_cmd(args: &ExportArgs) -> anyhow::Result<u8> {
    let opts = super::trust::trust_options(&args.keys, args.policy.as_deref())?;
    let trust = if opts.keys.is_empty() && opts.policy.is_none() {
        Trust::Unchecked
    } else {
        Trust::Signers(&opts)
    };
    if let Some(out) = &args.out
        && std::fs::symlink_metadata(out).is_ok()
    {
        let ours = auditai::fsio::read_bounded(out, auditai::fsio::MAX_DOCUMENT)
            .ok()
            .and_then(|b| export::binding_of(&b))
            .is_some();
        if !ours {
            anyhow::bail!(
                "{} exists and is not a document auditai exported; pass another --out",
                out.display()
            );
        }
    }
    let run = match export::read_run(&args.run, &trust, args.root.as_deref(), &args.evals) {
        Ok(r) => r,
        Err(e @ ExportError::Mismatch { .. }) => {
            eprintln!("error: refusing to export: {}", clean(&e.to_string()));
            return Ok(EXIT_FAILED);
        }
        Err(e) => return Err(e.into()),
    };
    let target = args.out.clone().unwrap_or_else(|| PathBuf::from("-"));
    let bytes = match args.format {
        Format::ModelCard => export::model_card(&run, &target).into_bytes(),
        Format::Cyclonedx => {
            let mut b = serde_json::to_vec_pretty(&export::cyclonedx(&run, &target))?;
            b.push(b'\n');
            b
        }
    };
    match &args.out {
        Some(p) => auditai::fsio::write_atomic(p, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(EXIT_OK)
}
