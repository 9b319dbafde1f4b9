//! `auditai export`: a model card or a CycloneDX ML-BOM bound to a signed run.

use std::io::Write;
use std::path::PathBuf;

use auditai::export;
use auditai::trust::Required;

use super::EXIT_OK;

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
    /// document auditai exported and nobody edited since (its body still has the sealed digest).
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
    /// (repeatable); included only when its signatures hold under --key/--policy.
    #[arg(long = "eval", value_name = "FILE")]
    evals: Vec<PathBuf>,
    /// Where the run's training data lives, for the class balance (default: the git work tree
    /// holding the run, else the current directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// With a pipeline manifest: the training stage whose model to describe (needed only when
    /// the pipeline has several). The document then traces the training file back to the raw
    /// data through the stages that made it.
    #[arg(long, value_name = "NAME")]
    stage: Option<String>,
}

pub(super) fn export_cmd(args: &ExportArgs) -> anyhow::Result<u8> {
    let trust = super::trust::trust_of(&args.keys, args.policy.as_deref())?;
    let required = if trust.is_empty() {
        Required::Unchecked
    } else {
        Required::Signers(&trust)
    };
    if let Some(out) = &args.out
        && std::fs::symlink_metadata(out).is_ok()
    {
        let sealed = auditai::fsio::read_bounded(out, auditai::fsio::MAX_DOCUMENT)
            .ok()
            .and_then(|b| export::binding::open(&b));
        match sealed {
            None => anyhow::bail!(
                "{} exists and is not a document auditai exported; pass another --out",
                out.display()
            ),
            Some(s) if !s.body_intact => anyhow::bail!(
                "{} was edited after auditai exported it (its body no longer has the sealed digest); not replacing a person's edits: pass another --out",
                out.display()
            ),
            Some(_) => {}
        }
    }
    let run = export::read_run(
        &args.run,
        required,
        args.root.as_deref(),
        &args.evals,
        args.stage.as_deref(),
    )?;
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
