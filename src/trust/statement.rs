//! Signed statements other than run manifests (evaluation attestations, verdicts): opened at the
//! gate, their kind told from the content and their signatures checked under a trust.

use std::path::{Path, PathBuf};

use super::document::classify;
use super::{DocumentKind, Expect, Trust, TrustError};
use crate::sign::PublicKey;

/// A statement whose signatures hold under the trust it was opened with.
#[derive(Debug)]
pub struct SignedStatement<T> {
    /// Where it was read.
    pub path: PathBuf,
    /// The statement.
    pub statement: T,
    /// Its exact bytes (the envelope).
    pub bytes: Vec<u8>,
    /// The trusted keys whose signatures are valid.
    pub signers: Vec<PublicKey>,
}

/// Open the statement of `kind` at `path`, refused unless its signatures hold under `trust`.
pub fn open_statement<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: DocumentKind,
    trust: &Trust,
) -> Result<SignedStatement<T>, TrustError> {
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
        TrustError::Unreadable {
            path: path.to_path_buf(),
            source,
        }
    })?;
    statement_from_bytes(path, bytes, kind, trust)
}

/// Open the statement of `kind` at `path` as `required` says: under a trust, or, with
/// [`super::Required::Unchecked`], parsed without judging its signatures (`signers` is then
/// empty, and nothing may be said about who signed it beyond the key ids it claims).
pub fn open_statement_as<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: DocumentKind,
    required: super::Required<'_>,
) -> Result<SignedStatement<T>, TrustError> {
    match required {
        super::Required::Signers(trust) => open_statement(path, kind, trust),
        super::Required::Unchecked => {
            let bytes =
                crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
                    TrustError::Unreadable {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            parse(path, bytes, kind, None)
        }
    }
}

/// [`open_statement`] over bytes already read.
pub fn statement_from_bytes<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: Vec<u8>,
    kind: DocumentKind,
    trust: &Trust,
) -> Result<SignedStatement<T>, TrustError> {
    parse(path, bytes, kind, Some(trust))
}

fn parse<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: Vec<u8>,
    kind: DocumentKind,
    trust: Option<&Trust>,
) -> Result<SignedStatement<T>, TrustError> {
    let malformed = |why: String| TrustError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let found = classify(&bytes).map_err(malformed)?;
    if found != kind {
        return Err(TrustError::WrongKind {
            path: path.to_path_buf(),
            found,
            expected: Expect::Kind(kind),
        });
    }
    let (envelope, payload, value) =
        crate::manifest::open_envelope(&bytes).map_err(|e| malformed(e.to_string()))?;
    let statement: T = serde_json::from_value(value)
        .map_err(|e| malformed(format!("not {}: {e}", kind.with_article())))?;
    let signers = match trust {
        None => Vec::new(),
        Some(trust) => {
            super::signatures::check(&envelope, &payload, trust).map_err(|(check, why)| {
                TrustError::Untrusted {
                    path: path.to_path_buf(),
                    check,
                    why,
                }
            })?
        }
    };
    Ok(SignedStatement {
        path: path.to_path_buf(),
        statement,
        bytes,
        signers,
    })
}
