//! `auditai bundle`: one portable evidence file for a receiver; and the unpacking that lets
//! `verify`, `inspect` and `anchor upgrade` take a bundle wherever they take a manifest.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use auditai::bundle::{self, Bundle};

use super::EXIT_OK;

#[derive(Debug, clap::Args)]
pub(super) struct BundleArgs {
    /// The run directory or its manifest (provenance or pipeline).
    target: PathBuf,
    /// Where to write the bundle (default: bundle.json); an existing file is never replaced.
    #[arg(short, long, value_name = "FILE", default_value = "bundle.json")]
    out: PathBuf,
    /// An evaluation attestation about the run to carry too; repeatable.
    #[arg(long = "eval", value_name = "FILE")]
    evals: Vec<PathBuf>,
}

pub(super) fn bundle_cmd(args: &BundleArgs) -> anyhow::Result<u8> {
    if std::fs::symlink_metadata(&args.out).is_ok() {
        anyhow::bail!(
            "{} exists; auditai does not replace it (choose another --out)",
            args.out.display()
        );
    }
    let b = bundle::create(&args.target, &args.evals)?;
    let mut bytes = serde_json::to_vec_pretty(&b)?;
    bytes.push(b'\n');
    auditai::fsio::write_atomic(&args.out, &bytes)
        .with_context(|| format!("{}", args.out.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "bundle: {} ({})", args.out.display(), carried(&b))?;
    out.flush()?;
    Ok(EXIT_OK)
}

/// What a bundle carries, in words.
pub(super) fn carried(b: &Bundle) -> String {
    let mut parts = vec![format!("manifest {}", b.manifest.name)];
    if b.receipt.is_some() {
        parts.push("anchor receipt".to_string());
    }
    if b.ots.is_some() {
        parts.push("OpenTimestamps proof".to_string());
    }
    parts.push(format!("{} verdict file(s)", b.verdicts.len()));
    parts.push(format!("{} evaluation(s)", b.evaluations.len()));
    parts.join(", ")
}

/// A bundle unpacked into a private temporary directory (removed when dropped).
pub(super) struct Unpacked {
    pub(super) bundle: Bundle,
    pub(super) manifest: PathBuf,
    pub(super) dir: tempfile::TempDir,
}

/// `path` unpacked when it is a bundle; `None` when it is anything else (or unreadable, which
/// the command's own reading then reports).
pub(super) fn unpacked(path: &Path) -> anyhow::Result<Option<Unpacked>> {
    let mut head = [0u8; 64];
    let n = match auditai::fsio::open_regular(path) {
        Ok(mut f) => std::io::Read::read(&mut f, &mut head).unwrap_or(0),
        Err(_) => return Ok(None),
    };
    // Prediction logs (JSON Lines, possibly large) and DSSE envelopes are told by their start.
    let start = String::from_utf8_lossy(&head[..n]);
    if !start.trim_start().starts_with('{') || start.contains("\"payloadType\"") {
        return Ok(None);
    }
    let Ok(bytes) = auditai::fsio::read_bounded(path, bundle::MAX_BUNDLE) else {
        return Ok(None);
    };
    if !bundle::is_bundle(&bytes) {
        return Ok(None);
    }
    let b = bundle::parse(&bytes).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("auditai-bundle-")
        .tempdir()?;
    let manifest = bundle::unpack(&b, dir.path()).map_err(|e| match e {
        // Name the bundle, not the private directory.
        bundle::BundleError::Invalid { why, .. } => anyhow::anyhow!("{}: {why}", path.display()),
        other => other.into(),
    })?;
    Ok(Some(Unpacked {
        bundle: b,
        manifest,
        dir,
    }))
}
