//! The one gate for evidence: whom to trust ([`Trust`]), what a document is ([`DocumentKind`]),
//! the signature rows of any DSSE envelope ([`signature_rows`]), and [`SignedRun`], a run whose
//! manifest has been opened, checked against the trust once, and whose recorded files are read
//! only through their recorded digests and only inside the run directory.
//!
//! Every reader of evidence (`predict`, `eval`, `export`, `audit`, `audit --rerun`, the lock's
//! reuse decision and every checker in `verify`) starts here; none opens a manifest by hand.
//! Imports nothing above the formats (`manifest`, `sign`, `hash`, `fsio`, `run_dir`, `spec`,
//! `data`) and the check vocabulary (`report`). Never prints, never exits.

mod document;
pub mod policy;
mod run;
mod signatures;
mod statement;

use std::path::PathBuf;

pub(crate) use document::classify;
pub use document::{CARD_MARKER, DocumentKind, Expect, Sniffed, expected_from_name, sniff};
pub use policy::{
    ChallengeRequirement, ContributionPolicy, Policy, PolicyError, Signer, VerdictKind,
    VerdictRequirement,
};
pub use run::{Pin, RunKind, SignedRun};
pub use signatures::signature_rows;
pub use statement::{SignedStatement, open_statement, open_statement_as, statement_from_bytes};

use crate::sign::PublicKey;

/// Whom to trust: public keys (`--key`) and a policy (`--policy`).
#[derive(Debug, Default, Clone)]
pub struct Trust {
    /// Trusted public keys.
    pub keys: Vec<PublicKey>,
    /// A trust policy: named signers, a threshold, required names, verdicts.
    pub policy: Option<Policy>,
}

impl Trust {
    /// A trust in exactly one key (what `run` signs with, when deciding reuse).
    pub fn key(key: PublicKey) -> Trust {
        Trust {
            keys: vec![key],
            policy: None,
        }
    }

    /// Every key whose signature counts: `--key`s and the policy's signers.
    pub fn trusted_keys(&self) -> Vec<PublicKey> {
        let mut all = self.keys.clone();
        if let Some(p) = &self.policy {
            all.extend(p.signers.iter().map(|s| s.key.clone()));
        }
        all
    }

    /// The policy's name for `key`, when the policy names it.
    pub fn signer_name(&self, key: &PublicKey) -> Option<&str> {
        let p = self.policy.as_ref()?;
        p.signers
            .iter()
            .find(|s| &s.key == key)
            .map(|s| s.name.as_str())
    }

    /// Whether nothing is trusted (no key, no policy).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.policy.is_none()
    }
}

/// What a command that acts on evidence (loads a model, runs a recorded command, exports a
/// card) requires of its signatures.
#[derive(Debug, Clone, Copy)]
pub enum Required<'a> {
    /// Signatures that satisfy this trust, as `verify` checks them.
    Signers(&'a Trust),
    /// The user chose to skip the signature check (`--no-verify`, `--trust-recorded-command`).
    /// Recorded files are still read only through their recorded digests.
    Unchecked,
}

/// Why a document was refused at the gate. [`TrustError::is_refusal`] tells a definite "no"
/// (exit 1) from an input that could not be read or understood (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a document auditai reads.
    #[error("{}: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another kind of document than the one needed.
    #[error("{}: {found}, not {expected}{hint}", path.display(), found = found.with_article(), hint = kind_hint(*found, expected))]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What it is.
        found: DocumentKind,
        /// What was needed.
        expected: Expect,
    },
    /// Its signatures do not satisfy the trust.
    #[error("refusing {}: {check}: {why}", path.display())]
    Untrusted {
        /// The document.
        path: PathBuf,
        /// The failing check, as `verify` labels it.
        check: String,
        /// Why.
        why: String,
    },
    /// A file the document names is not as it records it (changed, not recorded, outside).
    #[error("refusing {}: file {name}: {why}", path.display())]
    File {
        /// The document.
        path: PathBuf,
        /// The recorded name.
        name: String,
        /// Why.
        why: String,
    },
    /// The document is not the one another document pins (its digest differs).
    #[error("{}: not the document recorded (its {alg} is not the recorded {expected})", path.display())]
    Pinned {
        /// The file.
        path: PathBuf,
        /// `blake3` or `sha256`.
        alg: &'static str,
        /// Its digest now (never printed: the document that pins it may be nobody's).
        actual: String,
        /// The recorded digest.
        expected: String,
    },
}

fn kind_hint(found: DocumentKind, expected: &Expect) -> &'static str {
    match (found, expected) {
        (DocumentKind::Pipeline, Expect::Run(RunKind::Training)) => {
            "; pass the training stage's run directory (its `out`)"
        }
        (DocumentKind::Provenance, Expect::Run(RunKind::Pipeline)) => {
            "; audit a training run with `auditai audit` instead"
        }
        _ => "",
    }
}

impl TrustError {
    /// Whether this is a definite "no" about the evidence (exit 1) rather than an input that
    /// could not be read (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            TrustError::Untrusted { .. } | TrustError::File { .. } | TrustError::Pinned { .. }
        )
    }
}
