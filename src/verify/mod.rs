//! Verifying evidence: one checker per document kind, each starting from the gate in
//! [`crate::trust`] and returning a [`Report`].
//!
//! [`verify`] tells what the file is from its content, refuses it when its name (or `--expect`)
//! says it should be something else, and hands it to the checker of its kind: `provenance`
//! (training and pipeline manifests, with `files` and `pipeline`), `eval`, `verdict`, `card`
//! (model cards and ML-BOMs) and `log` (prediction logs); `anchor` checks the receipt next to
//! any of them. Pure checks; never prints, never exits. Biased to fail: a check that cannot be
//! made (no trusted key, a missing file) fails rather than passes, and a hashed directory must
//! hold exactly the files the manifest lists. Files are re-read from disk (the stat cache is not
//! consulted), digests are compared in constant time, every recorded path is joined below the
//! document's directory or the root and refused when absolute or escaping, and no file's digest
//! is printed when the document's signatures do not hold.

mod anchor;
mod card;
mod eval;
mod files;
mod log;
mod pipeline;
mod provenance;
mod sources;
mod statements;
mod verdict;

use std::path::{Path, PathBuf};

use crate::report::{CheckId, Report, Status};
use crate::trust::{self, DocumentKind, Expect, Trust, TrustError};

pub use files::check_files;

/// Errors that stop verification before it can judge anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to verify and whom to trust.
#[derive(Debug, Default)]
pub struct Options {
    /// Whom to trust: `--key`s and `--policy`.
    pub trust: Trust,
    /// Where the data and spec dependencies live (default: the git work tree holding the
    /// manifest, else the current directory); for other documents, what their recorded paths
    /// are relative to (default: the document's directory).
    pub root: Option<PathBuf>,
    /// Check an EVM anchor online against this chain's RPC endpoint.
    pub online: Option<crate::anchor::chain::Chain>,
    /// Top-level names in the run directory that the manifest does not name but that are
    /// expected there (files or directories).
    pub allow_extra: Vec<String>,
    /// Where OpenTimestamps Bitcoin attestations are checked: block headers the auditor trusts.
    pub bitcoin: crate::anchor::bitcoin::Headers,
    /// What the file must be (`--expect`); otherwise what its name says, if anything.
    pub expect: Option<Expect>,
    /// Prediction logs: fail unless every entry is covered by an anchor or a signed checkpoint.
    pub require_covered: bool,
    /// Which of the files a manifest records are checked.
    pub files: FileScope,
    /// Salts of withheld data sources (`--reveal SOURCE=SALT_FILE`).
    pub reveal: crate::contribution::Reveal,
}

/// Which of the files a manifest records are checked (`verify --partial`, `--artifact`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum FileScope {
    /// Every recorded file must be here and match, and the run directory hold nothing else.
    #[default]
    All,
    /// The files that are here must match; the others are reported `absent` (a dependency as
    /// withheld), never as verified, and the run directory may hold other files.
    Present,
    /// Only these files, each of which must be a subject or byproduct of the signed statement,
    /// found by digest under any name; nothing else is read.
    Artifacts(Vec<PathBuf>),
}

/// A finished verification: what was checked, as what.
#[derive(Debug)]
pub struct Verified {
    /// The kind the file was checked as (`None` when it is no document auditai reads).
    pub kind: Option<DocumentKind>,
    /// Every check.
    pub report: Report,
}

/// Verify the document at `path` as what its content says it is, provided that is what its
/// name or `opts.expect` says it must be.
pub fn verify(path: &Path, opts: &Options) -> Result<Verified, VerifyError> {
    let mut report = Report::default();
    let sniffed = match trust::sniff(path) {
        Ok(s) => s,
        Err(TrustError::Unreadable { path, source }) => {
            return Err(VerifyError::Read { path, source });
        }
        Err(e) => {
            report.push_row(CheckId::Envelope, Status::Fail, why_of(e));
            return Ok(Verified { kind: None, report });
        }
    };
    let kind = sniffed.kind;
    let expected = opts.expect.or_else(|| trust::expected_from_name(path));
    if let Some(e) = expected.filter(|e| !e.admits(kind)) {
        report.push_row(
            CheckId::DocumentKind,
            Status::Fail,
            format!(
                "{} is {}, not {e}; it is not checked as what it is not{}",
                path.display(),
                kind.with_article(),
                if opts.expect.is_some() {
                    ""
                } else {
                    " (its name says what it should be; --expect KIND to insist on a kind)"
                }
            ),
        );
        return Ok(Verified {
            kind: Some(kind),
            report,
        });
    }
    let bytes = sniffed.bytes.unwrap_or_default();
    match kind {
        DocumentKind::Provenance | DocumentKind::Pipeline => {
            provenance::check(path, &bytes, opts, &mut report)
        }
        DocumentKind::Evaluation => eval::check(path, &bytes, opts, &mut report),
        DocumentKind::Verdict => verdict::check(path, &bytes, opts, &mut report),
        DocumentKind::ModelCard | DocumentKind::MlBom => {
            card::check(path, &bytes, kind, opts, &mut report)
        }
        DocumentKind::PredictionLog => log::check(path, opts, &mut report)?,
        DocumentKind::Contribution => statements::contribution(path, &bytes, opts, &mut report),
        DocumentKind::Rewards => statements::rewards(path, &bytes, opts, &mut report),
    }
    Ok(Verified {
        kind: Some(kind),
        report,
    })
}

/// A gate refusal as one row's detail.
fn why_of(e: TrustError) -> String {
    match e {
        TrustError::Malformed { why, .. } => why,
        other => other.to_string(),
    }
}

/// The root a non-manifest document's recorded paths are joined to.
fn document_root(path: &Path, opts: &Options) -> PathBuf {
    match &opts.root {
        Some(r) => r.clone(),
        None => crate::run_dir::of_manifest(path).to_path_buf(),
    }
}

/// Open a DSSE-wrapped statement of type `T` and push its envelope and signature rows; `None`
/// (after a failing envelope row) when it is not one. The second value says whether the
/// signatures hold under the trust.
fn open_statement<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    ok: &str,
    opts: &Options,
    report: &mut Report,
) -> Option<(T, bool)> {
    let parsed = crate::manifest::open_envelope(bytes)
        .map_err(|e| e.to_string())
        .and_then(|(env, payload, value)| {
            serde_json::from_value::<T>(value)
                .map(|st| (env, payload, st))
                .map_err(|e| format!("not {what}: {e}"))
        });
    match parsed {
        Ok((envelope, payload, st)) => {
            report.push_row(CheckId::Envelope, Status::Pass, ok);
            let before = report.checks.len();
            trust::signature_rows(&envelope, &payload, &opts.trust, report);
            let signed = report.checks[before..]
                .iter()
                .all(|c| c.status == Status::Pass);
            Some((st, signed))
        }
        Err(why) => {
            report.push_row(CheckId::Envelope, Status::Fail, why);
            None
        }
    }
}

fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
