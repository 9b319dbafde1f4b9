//! Checking OpenTimestamps Bitcoin attestations against block headers the auditor trusts.
//!
//! An `.ots` proof ends in "the message is the merkle root of Bitcoin block H". That is only a
//! claim until the merkle root of block H is compared with a header the auditor trusts: one given
//! on the command line (`HEIGHT:MERKLEROOT`, the root as `bitcoind getblockheader` and block
//! explorers print it) or read from the auditor's own bitcoind over JSON-RPC. Without either, the
//! attestation stays "claimed". Talks only to the bitcoind the auditor names.

use std::collections::BTreeMap;

/// Where trusted block headers come from.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    /// Merkle roots by height, in internal byte order (as OpenTimestamps attests them).
    pub roots: BTreeMap<u64, [u8; 32]>,
    /// A bitcoind JSON-RPC URL (credentials in the URL are used, never shown).
    pub rpc: Option<String>,
}

/// The outcome of checking a proof's Bitcoin attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every attestation matched a trusted header (or at least one did and none contradicted).
    Checked(String),
    /// A trusted header contradicts the proof.
    Mismatch(String),
    /// No trusted header was available for any attestation.
    Claimed(String),
    /// The trusted source could not be asked.
    Unavailable(String),
}

/// A header argument that is not `HEIGHT:MERKLEROOT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not HEIGHT:MERKLEROOT (64 hex digits, as bitcoind prints it)")]
pub struct BadHeader(pub String);

/// Parse `HEIGHT:MERKLEROOT` (64 hex digits in display order).
pub fn parse_header(arg: &str) -> Result<(u64, [u8; 32]), BadHeader> {
    let bad = || BadHeader(arg.to_string());
    let (h, root) = arg.split_once(':').ok_or_else(bad)?;
    let height: u64 = h.parse().map_err(|_| bad())?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(root, &mut bytes).map_err(|_| bad())?;
    bytes.reverse();
    Ok((height, bytes))
}

impl Headers {
    /// Whether no trusted source is configured.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.rpc.is_none()
    }

    /// The trusted merkle root of block `height` (internal byte order), if a source knows it.
    fn root_at(&self, height: u64) -> Result<Option<[u8; 32]>, String> {
        if let Some(r) = self.roots.get(&height) {
            return Ok(Some(*r));
        }
        match &self.rpc {
            Some(url) => node_root(url, height).map(Some),
            None => Ok(None),
        }
    }
}

/// Ask the verifier's bitcoind for the merkle root of block `height`.
#[cfg(feature = "anchor")]
fn node_root(url: &str, height: u64) -> Result<[u8; 32], String> {
    use serde_json::json;
    let rpc =
        super::evm::Rpc::new(url, std::time::Duration::from_secs(20)).map_err(|e| e.to_string())?;
    let hash = rpc
        .call("getblockhash", json!([height]))
        .map_err(|e| e.to_string())?;
    let hash = hash
        .as_str()
        .filter(|h| h.len() == 64)
        .ok_or("bitcoind: getblockhash did not return a block hash")?
        .to_string();
    let header = rpc
        .call("getblockheader", json!([hash, true]))
        .map_err(|e| e.to_string())?;
    let root = header
        .get("merkleroot")
        .and_then(|m| m.as_str())
        .ok_or("bitcoind: getblockheader returned no merkleroot")?;
    parse_header(&format!("{height}:{root}"))
        .map(|(_, r)| r)
        .map_err(|e| format!("bitcoind: {e}"))
}

#[cfg(not(feature = "anchor"))]
fn node_root(_url: &str, _height: u64) -> Result<[u8; 32], String> {
    Err("this auditai was built without the `anchor` feature, so it cannot ask a bitcoind".into())
}

/// Check each `(height, attested message)` against the trusted headers.
pub fn judge(headers: &Headers, attestations: &[(u64, Vec<u8>)]) -> Judgement {
    let (mut checked, mut claimed) = (Vec::new(), Vec::new());
    for (height, msg) in attestations {
        match headers.root_at(*height) {
            Err(why) => return Judgement::Unavailable(why),
            Ok(None) => claimed.push(height.to_string()),
            Ok(Some(root)) if root.as_slice() == msg.as_slice() => checked.push(height.to_string()),
            Ok(Some(root)) => {
                let mut shown = root;
                shown.reverse();
                return Judgement::Mismatch(format!(
                    "the proof attests merkle root {} in Bitcoin block {height}, but that block's merkle root is {}",
                    display(msg),
                    hex::encode(shown)
                ));
            }
        }
    }
    if checked.is_empty() {
        Judgement::Claimed(format!(
            "Bitcoin block {}, claimed: no trusted block header to compare with",
            claimed.join(", ")
        ))
    } else {
        let mut s = format!(
            "Bitcoin block {}: merkle root matches the trusted header",
            checked.join(", ")
        );
        if !claimed.is_empty() {
            s.push_str(&format!(
                "; block {} claimed, not checked",
                claimed.join(", ")
            ));
        }
        Judgement::Checked(s)
    }
}

/// A merkle root in display order (reversed), as bitcoind prints it.
fn display(msg: &[u8]) -> String {
    let mut v = msg.to_vec();
    v.reverse();
    hex::encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decide_between_checked_claimed_and_mismatch() {
        let root = [7u8; 32];
        let mut shown = root;
        shown.reverse();
        let mut h = Headers::default();
        let att = vec![(100, root.to_vec())];
        assert!(matches!(judge(&h, &att), Judgement::Claimed(_)));
        let (height, parsed) = parse_header(&format!("100:{}", hex::encode(shown))).unwrap();
        h.roots.insert(height, parsed);
        assert!(matches!(judge(&h, &att), Judgement::Checked(_)));
        h.roots.insert(100, [8u8; 32]);
        assert!(matches!(judge(&h, &att), Judgement::Mismatch(_)));
        assert!(parse_header("x:00").is_err());
        assert!(parse_header("1:zz").is_err());
    }
}
