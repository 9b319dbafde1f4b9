//! Anchoring manifest digests on public chains, batched in a Merkle tree, and the receipts that
//! prove each manifest's inclusion.
//!
//! Each manifest's digest (sha256 of its file bytes) is a leaf of an RFC 6962 Merkle tree; only
//! the root goes on chain: in an EVM transaction ([`evm`]) and/or to OpenTimestamps calendars
//! ([`ots`]). Every manifest gets `manifest.anchor.json` (its leaf index, sibling path, root and
//! each backend's record) and, with OpenTimestamps, a standard `.ots` proof. The only module that
//! talks to a network. Receipts are written only for anchors that happened.

#[cfg(feature = "anchor")]
mod batch;
pub mod bitcoin;
pub mod chain;
#[cfg(feature = "anchor")]
pub mod evm;
pub mod merkle;
pub mod ots;

#[cfg(feature = "anchor")]
pub use batch::{EvmOptions, Options, Outcome, Upgraded, anchor, install_crypto_provider, upgrade};
#[cfg(feature = "anchor")]
pub(crate) use batch::{http_client, read_body};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fsio;
use chain::EvmAnchor;

/// The receipt format tag.
pub const RECEIPT_SCHEMA: &str = "auditai.anchor-receipt/v1";

/// A URL as it may appear in messages: scheme, host and port, with `/…` where a path or query
/// was cut (RPC providers put API keys there; user-info is never shown).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparsable URL)".to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let cut = if rest[end..].trim_matches('/').is_empty() {
        ""
    } else {
        "/…"
    };
    format!("{scheme}://{host}{cut}")
}

/// Errors from anchoring.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A manifest or receipt could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A receipt or proof on disk is malformed.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The EVM backend failed.
    #[cfg(feature = "anchor")]
    #[error(transparent)]
    Evm(#[from] evm::EvmError),
    /// Every OpenTimestamps calendar failed.
    #[error("no OpenTimestamps calendar accepted the root: {0}")]
    Calendars(String),
    /// Neither backend was asked for.
    #[error("nothing to anchor with")]
    NoBackend,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A manifest's anchor receipt (`manifest.anchor.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// [`RECEIPT_SCHEMA`].
    pub schema: String,
    /// The manifest's file name.
    pub manifest: String,
    /// sha256 of the manifest's bytes (the leaf datum).
    pub manifest_sha256: String,
    /// The leaf's index in the tree.
    pub leaf_index: usize,
    /// Leaves in the tree.
    pub tree_size: usize,
    /// Sibling hashes, bottom-up (RFC 6962 audit path), hex.
    pub path: Vec<String>,
    /// The Merkle root that was anchored, hex.
    pub root: String,
    /// The EVM anchor, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<EvmAnchor>,
    /// The OpenTimestamps anchor, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ots: Option<OtsRecord>,
}

/// The OpenTimestamps part of a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtsRecord {
    /// The `.ots` proof's file name, next to the manifest.
    pub proof: String,
    /// Calendars that accepted the root.
    pub calendars: Vec<String>,
    /// `pending` until a calendar returns a Bitcoin attestation, then `bitcoin`.
    pub status: String,
    /// Bitcoin attestations: block height and the block's merkle root (hex, internal byte order).
    #[serde(default)]
    pub bitcoin: Vec<BitcoinAttestation>,
}

/// A Bitcoin block attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BitcoinAttestation {
    /// Block height.
    pub height: u64,
    /// The message attested: the block header's merkle root, hex in internal byte order.
    pub merkle_root: String,
}

/// The receipt path of an anchored file: `X.intoto.json` or `X.json` → `X.anchor.json`, else
/// `X.anchor.json` for any other name `X`.
pub fn receipt_path(manifest: &Path) -> PathBuf {
    let name = manifest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".intoto.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    manifest.with_file_name(format!("{stem}.anchor.json"))
}

/// The `.ots` proof path of a manifest: the manifest's name plus `.ots`.
pub fn ots_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_os_string();
    s.push(".ots");
    PathBuf::from(s)
}

/// Read a receipt.
pub fn read_receipt(path: &Path) -> Result<Receipt, AnchorError> {
    let bytes = fsio::read_bounded(path, fsio::MAX_DOCUMENT).map_err(io_err(path))?;
    parse_receipt(&bytes, path)
}

/// Parse a receipt's bytes (`path` names it in errors).
pub fn parse_receipt(bytes: &[u8], path: &Path) -> Result<Receipt, AnchorError> {
    let r: Receipt = serde_json::from_slice(bytes).map_err(|e| AnchorError::Malformed {
        path: path.to_path_buf(),
        message: format!("not an anchor receipt: {e}"),
    })?;
    if r.schema != RECEIPT_SCHEMA {
        return Err(AnchorError::Malformed {
            path: path.to_path_buf(),
            message: format!("unknown receipt schema `{}`", r.schema),
        });
    }
    Ok(r)
}

/// An EVM anchor found on the canonical chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// Blocks on top of the anchor's, counting its own.
    pub confirmations: u64,
    /// The anchor block's timestamp, as the node reports it.
    pub block_timestamp: u64,
}

/// Check an EVM anchor of `root` online against `chain`: the transaction, its calldata and
/// status, and that its block is still canonical. `Err` says why it does not hold, or why it
/// could not be checked.
#[cfg(feature = "anchor")]
pub fn check_evm_online(
    chain: &chain::Chain,
    e: &EvmAnchor,
    root: &[u8; 32],
) -> Result<Confirmed, OnlineError> {
    let checked = evm::Rpc::new(&chain.rpc, std::time::Duration::from_secs(20))
        .and_then(|rpc| evm::check_online(&rpc, e, root));
    match checked {
        Ok(evm::OnlineCheck::Confirmed {
            confirmations,
            block_timestamp,
        }) => Ok(Confirmed {
            confirmations,
            block_timestamp,
        }),
        Ok(evm::OnlineCheck::Failed(why)) => Err(OnlineError::Failed(why)),
        Err(err) => Err(OnlineError::Unreachable(err.to_string())),
    }
}

/// Why an anchor did not check out online.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnlineError {
    /// The chain answered, and the anchor does not hold there (missing, reverted, reorged out,
    /// other calldata).
    #[error("{0}")]
    Failed(String),
    /// The chain could not be asked.
    #[error("cannot check online: {0}")]
    Unreachable(String),
}

/// Without the `anchor` feature nothing is checked online.
#[cfg(not(feature = "anchor"))]
pub fn check_evm_online(
    _chain: &chain::Chain,
    _e: &EvmAnchor,
    _root: &[u8; 32],
) -> Result<Confirmed, OnlineError> {
    Err(OnlineError::Unreachable(
        "this auditai was built without the `anchor` feature".into(),
    ))
}

/// Why a receipt or `.ots` proof does not prove a file's inclusion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InclusionError {
    /// The receipt is for other bytes.
    #[error("the manifest's sha256 is {actual}, the receipt records {recorded}")]
    OtherFile {
        /// The file's sha256.
        actual: String,
        /// The receipt's.
        recorded: String,
    },
    /// A path entry is not 32 bytes of hex.
    #[error("malformed path entry `{0}`")]
    PathEntry(String),
    /// The root is not 32 bytes of hex.
    #[error("malformed root")]
    Root,
    /// The path leads elsewhere.
    #[error("the Merkle path does not lead to the recorded root")]
    WrongRoot,
    /// The path has the wrong length for its index and tree size.
    #[error("the Merkle path has the wrong length for its leaf index and tree size")]
    PathLength,
    /// The `.ots` proof is malformed.
    #[error("{0}")]
    Proof(#[from] ots::OtsError),
    /// The `.ots` proof timestamps other bytes.
    #[error("the proof timestamps another file")]
    ProofOtherFile,
    /// The `.ots` proof does not pass through the anchored root.
    #[error("the proof does not commit to the anchored Merkle root")]
    ProofOtherRoot,
}

/// Check a receipt against the manifest bytes: digest, and that the Merkle path leads to the
/// root. Returns the root on success.
pub fn check_inclusion(r: &Receipt, manifest_bytes: &[u8]) -> Result<[u8; 32], InclusionError> {
    check_inclusion_of(r, Sha256::digest(manifest_bytes).into())
}

/// [`check_inclusion`] of a file known by its sha256 (e.g. a prefix of a growing log).
pub fn check_inclusion_of(r: &Receipt, digest: [u8; 32]) -> Result<[u8; 32], InclusionError> {
    if !crate::hash::hex_eq(&hex::encode(digest), &r.manifest_sha256) {
        return Err(InclusionError::OtherFile {
            actual: hex::encode(digest),
            recorded: r.manifest_sha256.clone(),
        });
    }
    let hash32 = |h: &str| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).ok().map(|_| out)
    };
    let mut proof = Vec::new();
    for h in &r.path {
        proof.push(hash32(h).ok_or_else(|| InclusionError::PathEntry(h.clone()))?);
    }
    let root = hash32(&r.root).ok_or(InclusionError::Root)?;
    match merkle::root_from_proof(merkle::leaf(&digest), r.leaf_index, r.tree_size, &proof) {
        Some(got) if got == root => Ok(root),
        Some(_) => Err(InclusionError::WrongRoot),
        None => Err(InclusionError::PathLength),
    }
}

/// Check an `.ots` proof: it timestamps the manifest's sha256 and passes through the root.
pub fn check_ots(
    proof: &[u8],
    manifest_sha256: &[u8; 32],
    root: &[u8; 32],
) -> Result<ots::Timestamp, InclusionError> {
    let (digest, ts) = ots::decode_file(proof)?;
    if &digest != manifest_sha256 {
        return Err(InclusionError::ProofOtherFile);
    }
    fn passes(t: &ots::Timestamp, root: &[u8]) -> bool {
        t.msg == root || t.ops.iter().any(|(_, c)| passes(c, root))
    }
    if !passes(&ts, root) {
        return Err(InclusionError::ProofOtherRoot);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_in_messages_keep_only_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://eth-mainnet.g.alchemy.com/v2/SECRETKEY",
                "https://eth-mainnet.g.alchemy.com/…",
            ),
            (
                "https://user:pw@rpc.example:8545/?key=S",
                "https://rpc.example:8545/…",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            ("not a url SECRET", "(unparsable URL)"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
