//! EVM anchor formats that need no network: the chain presets, the anchor calldata layout and
//! what a receipt records of an EVM anchor. Shared by anchoring (`evm`, behind the `anchor`
//! feature) and by offline verification. No network, no keys.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The calldata prefix: ASCII `auditai`.
pub const CALLDATA_TAG: &[u8; 7] = b"auditai";
/// The calldata layout version.
pub const CALLDATA_VERSION: u8 = 1;
/// anvil's default chain id.
pub const ANVIL_CHAIN_ID: u64 = 31337;

/// Why `--chain` / `--rpc` name no chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Not a preset name.
    #[error("unknown chain `{0}` (known: {known})", known = PRESETS.map(|p| p.0).join(", "))]
    Unknown(String),
    /// Neither a preset nor a URL.
    #[error("no chain and no RPC endpoint given")]
    Missing,
}

/// A chain preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Preset name (or `custom`).
    pub name: String,
    /// RPC URL.
    pub rpc: String,
    /// The chain id the endpoint must report (`None` for a bare `--rpc`).
    pub chain_id: Option<u64>,
    /// Default confirmations to wait for.
    pub confirmations: u64,
}

/// The chain presets: `(name, chain id, rpc, default confirmations)`.
pub const PRESETS: [(&str, u64, &str, u64); 5] = [
    ("0g-mainnet", 16661, "https://evmrpc.0g.ai", 3),
    ("0g-galileo", 16602, "https://evmrpc-testnet.0g.ai", 3),
    ("ethereum", 1, "https://ethereum-rpc.publicnode.com", 6),
    (
        "sepolia",
        11155111,
        "https://ethereum-sepolia-rpc.publicnode.com",
        3,
    ),
    ("local", ANVIL_CHAIN_ID, "http://127.0.0.1:8545", 1),
];

impl Chain {
    /// [`Chain::resolve`] when `--chain` or `--rpc` is given, `None` when neither is (offline).
    pub fn resolve_online(
        chain: Option<&str>,
        rpc: Option<&str>,
    ) -> Result<Option<Chain>, ChainError> {
        if chain.is_none() && rpc.is_none() {
            return Ok(None);
        }
        Chain::resolve(chain, rpc).map(Some)
    }

    /// Resolve `--chain` and `--rpc`: a preset (its URL replaced by `rpc` when given), or a bare
    /// RPC URL whose chain id is whatever it reports.
    pub fn resolve(chain: Option<&str>, rpc: Option<&str>) -> Result<Chain, ChainError> {
        match (chain, rpc) {
            (Some(name), rpc) => {
                let (n, id, url, conf) = PRESETS
                    .iter()
                    .find(|p| p.0 == name)
                    .ok_or_else(|| ChainError::Unknown(name.to_string()))?;
                Ok(Chain {
                    name: n.to_string(),
                    rpc: rpc.unwrap_or(url).to_string(),
                    chain_id: Some(*id),
                    confirmations: *conf,
                })
            }
            (None, Some(url)) => Ok(Chain {
                name: "custom".to_string(),
                rpc: url.to_string(),
                chain_id: None,
                confirmations: 1,
            }),
            (None, None) => Err(ChainError::Missing),
        }
    }
}

/// Parse a JSON-RPC hex quantity.
pub fn parse_quantity(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// The calldata of an anchor of `root`.
pub fn calldata(root: &[u8; 32]) -> Vec<u8> {
    let mut d = CALLDATA_TAG.to_vec();
    d.push(CALLDATA_VERSION);
    d.extend_from_slice(root);
    d
}

/// The root in anchor calldata, if it has the layout.
pub fn root_from_calldata(input: &[u8]) -> Option<[u8; 32]> {
    let rest = input.strip_prefix(CALLDATA_TAG.as_slice())?;
    let (version, root) = rest.split_first()?;
    if *version != CALLDATA_VERSION || root.len() != 32 {
        return None;
    }
    root.try_into().ok()
}

/// What an EVM anchor records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvmAnchor {
    /// Preset name or `custom`.
    pub chain: String,
    /// Chain id reported by the node.
    pub chain_id: u64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Sender (= recipient).
    pub from: String,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// Block timestamp (seconds since the epoch).
    pub block_timestamp: u64,
    /// Gas used.
    pub gas_used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calldata_round_trips_and_rejects_other_layouts() {
        let root = [7u8; 32];
        let d = calldata(&root);
        assert_eq!(d.len(), 40);
        assert_eq!(&d[..8], b"auditai\x01");
        assert_eq!(root_from_calldata(&d), Some(root));
        assert_eq!(root_from_calldata(&d[..39]), None);
        let mut v2 = d.clone();
        v2[7] = 2;
        assert_eq!(root_from_calldata(&v2), None);
    }

    #[test]
    fn presets_resolve() {
        let c = Chain::resolve(Some("0g-galileo"), None).unwrap();
        assert_eq!(
            (c.chain_id, c.rpc.as_str()),
            (Some(16602), "https://evmrpc-testnet.0g.ai")
        );
        let c = Chain::resolve(Some("local"), Some("http://127.0.0.1:9")).unwrap();
        assert_eq!(
            (c.chain_id, c.rpc.as_str()),
            (Some(31337), "http://127.0.0.1:9")
        );
        assert!(Chain::resolve(Some("nope"), None).is_err());
    }
}
