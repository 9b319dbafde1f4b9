//! Anchoring on EVM chains (0G, Ethereum, a local anvil) over JSON-RPC.
//!
//! The anchor is an EIP-1559 transaction from the anchoring account to itself, no value, whose
//! calldata is [`CALLDATA_TAG`] (7 ASCII bytes), a version byte and the 32-byte Merkle root.
//! Transactions are built and signed with alloy (no hand-written RLP or ECDSA) and sent with
//! `eth_sendRawTransaction`.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde_json::{Value, json};

pub use super::chain::*;

/// The largest JSON-RPC answer read (a block header or receipt is a few KiB).
const MAX_RPC_BODY: u64 = 4 << 20;
/// anvil's (and hardhat's) well-known development keys, from the `test test … junk` mnemonic.
const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Errors from EVM anchoring.
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// The RPC endpoint could not be reached (after retries). `url` is redacted: scheme, host
    /// and port only, since providers put API keys in paths and queries.
    #[error("RPC {url} unreachable: {message}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("RPC {method} failed: {message} (code {code})")]
    Rpc {
        /// The method.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The message.
        message: String,
    },
    /// The node's answer was not what the protocol says.
    #[error("RPC {method}: unexpected answer: {message}")]
    BadAnswer {
        /// The method.
        method: String,
        /// What was wrong.
        message: String,
    },
    /// The node is on another chain than the preset.
    #[error(
        "the RPC endpoint is on chain id {actual}, but {chain} is chain id {expected}; refusing to send"
    )]
    ChainMismatch {
        /// The preset name.
        chain: String,
        /// Its chain id.
        expected: u64,
        /// What the node reports.
        actual: u64,
    },
    /// The fees or gas the node asks for exceed the user's caps.
    #[error("refusing to anchor: {0}")]
    FeeCap(String),
    /// A well-known development key on a real chain.
    #[error(
        "the anchoring key is one of anvil's public development keys; refusing to use it on chain id {chain_id}"
    )]
    DevKey {
        /// The chain id.
        chain_id: u64,
    },
    /// No anchoring key is configured.
    #[error("no anchoring key")]
    NoKey,
    /// A keystore was given without its password.
    #[error("{}: a keystore needs its password", .0.display())]
    KeystorePassword(std::path::PathBuf),
    /// The key could not be read.
    #[error("{0}")]
    Key(String),
    /// Not enough balance for the gas.
    #[error("account {address} holds {balance} wei but the anchor may cost up to {needed} wei")]
    InsufficientFunds {
        /// The account.
        address: String,
        /// Its balance.
        balance: U256,
        /// The maximum cost.
        needed: U256,
    },
    /// The transaction was mined but reverted.
    #[error("transaction {tx} reverted in block {block}")]
    Reverted {
        /// The hash.
        tx: String,
        /// The block.
        block: u64,
    },
    /// The transaction was not mined in time (or dropped).
    #[error(
        "transaction {tx} was not confirmed within {secs} s; it may still be mined, or may have been dropped (no receipt was written)"
    )]
    Timeout {
        /// The hash.
        tx: String,
        /// The timeout.
        secs: u64,
    },
}

/// A JSON-RPC client with retries for transport errors.
pub struct Rpc {
    url: String,
    client: reqwest::blocking::Client,
    retries: u32,
}

impl Rpc {
    /// A client for `url` with a per-request timeout.
    pub fn new(url: &str, timeout: Duration) -> Result<Rpc, EvmError> {
        let client = super::http_client(timeout).map_err(|e| EvmError::Unreachable {
            url: super::redact_url(url),
            message: e.without_url().to_string(),
        })?;
        Ok(Rpc {
            url: url.to_string(),
            client,
            retries: 3,
        })
    }

    /// The endpoint as it may be shown: scheme, host and port.
    pub fn shown(&self) -> String {
        super::redact_url(&self.url)
    }

    /// Call `method`; transport errors are retried with backoff, JSON-RPC errors are not.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, EvmError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay *= 2;
            }
            let resp = match self.client.post(&self.url).json(&body).send() {
                Ok(r) => r,
                Err(e) => {
                    last = e.without_url().to_string();
                    continue;
                }
            };
            if resp.status().is_server_error() || resp.status() == 429 {
                last = format!("HTTP {}", resp.status());
                continue;
            }
            let bytes =
                super::read_body(resp, MAX_RPC_BODY).map_err(|message| EvmError::BadAnswer {
                    method: method.to_string(),
                    message,
                })?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| EvmError::BadAnswer {
                method: method.to_string(),
                message: format!("not JSON-RPC: {e}"),
            })?;
            if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                return Err(EvmError::Rpc {
                    method: method.to_string(),
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
        Err(EvmError::Unreachable {
            url: self.shown(),
            message: last,
        })
    }

    fn quantity(&self, method: &str, params: Value) -> Result<u64, EvmError> {
        let v = self.call(method, params)?;
        parse_quantity(&v).ok_or_else(|| EvmError::BadAnswer {
            method: method.to_string(),
            message: format!("expected a hex quantity, got {v}"),
        })
    }

    /// `eth_chainId`.
    pub fn chain_id(&self) -> Result<u64, EvmError> {
        self.quantity("eth_chainId", json!([]))
    }

    /// `eth_blockNumber`.
    pub fn block_number(&self) -> Result<u64, EvmError> {
        self.quantity("eth_blockNumber", json!([]))
    }

    /// `eth_getBlockByNumber` (header only).
    pub fn block(&self, number: u64) -> Result<Option<Value>, EvmError> {
        let v = self.call(
            "eth_getBlockByNumber",
            json!([format!("0x{number:x}"), false]),
        )?;
        Ok((!v.is_null()).then_some(v))
    }

    /// `eth_getTransactionByHash`.
    pub fn transaction(&self, hash: &str) -> Result<Option<Value>, EvmError> {
        let v = self.call("eth_getTransactionByHash", json!([hash]))?;
        Ok((!v.is_null()).then_some(v))
    }

    /// `eth_getTransactionReceipt`.
    pub fn receipt(&self, hash: &str) -> Result<Option<Value>, EvmError> {
        let v = self.call("eth_getTransactionReceipt", json!([hash]))?;
        Ok((!v.is_null()).then_some(v))
    }
}

fn parse_u256(v: &Value) -> Option<U256> {
    U256::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// The anchoring key from `--keystore` (Web3 Secret Storage v3) or `AUDITAI_ANCHOR_KEY`.
pub fn load_key(
    keystore: Option<&Path>,
    password_file: Option<&Path>,
) -> Result<PrivateKeySigner, EvmError> {
    if let Some(ks) = keystore {
        let secret_mode = |p: &Path| {
            crate::sign::check_private_permissions(p).map_err(|e| EvmError::Key(e.to_string()))
        };
        secret_mode(ks)?;
        let password = match password_file {
            Some(p) => {
                secret_mode(p)?;
                zeroize::Zeroizing::new(
                    std::fs::read_to_string(p)
                        .map_err(|e| EvmError::Key(format!("{}: {e}", p.display())))?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                )
            }
            None => zeroize::Zeroizing::new(
                std::env::var("AUDITAI_KEYSTORE_PASSWORD")
                    .map_err(|_| EvmError::KeystorePassword(ks.to_path_buf()))?,
            ),
        };
        return PrivateKeySigner::decrypt_keystore(ks, password.as_bytes()).map_err(|e| {
            EvmError::Key(format!(
                "{}: cannot decrypt keystore (wrong password or not a Web3 Secret Storage v3 file): {e}",
                ks.display()
            ))
        });
    }
    let hex =
        zeroize::Zeroizing::new(std::env::var("AUDITAI_ANCHOR_KEY").map_err(|_| EvmError::NoKey)?);
    let raw = hex.trim().trim_start_matches("0x");
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(raw, &mut *bytes)
        .map_err(|_| EvmError::Key("AUDITAI_ANCHOR_KEY must be 32 bytes of hex".into()))?;
    PrivateKeySigner::from_slice(&*bytes)
        .map_err(|_| EvmError::Key("AUDITAI_ANCHOR_KEY is not a valid secp256k1 key".into()))
}

/// Whether `signer` is one of anvil's development keys.
pub fn is_dev_key(signer: &PrivateKeySigner) -> bool {
    let mine = hex::encode(signer.to_bytes());
    DEV_KEYS.contains(&mine.as_str())
}

/// A signed, ready-to-send anchor transaction.
pub struct Prepared {
    /// The EIP-2718 raw transaction bytes.
    pub raw: Vec<u8>,
    /// Its hash.
    pub hash: B256,
    /// The sender.
    pub from: Address,
    /// The chain id it is signed for.
    pub chain_id: u64,
}

/// The most an anchor transaction may pay, set by the user: the node's suggestions are capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCaps {
    /// Max fee per gas, wei.
    pub max_fee_per_gas: u128,
    /// Max priority fee (tip) per gas, wei.
    pub max_priority_fee_per_gas: u128,
    /// Gas limit.
    pub max_gas: u64,
}

/// Build and sign an anchor transaction for `root` (reads chain id, nonce, fees and gas from the
/// node, within `caps`).
pub fn prepare(
    rpc: &Rpc,
    chain: &Chain,
    signer: &PrivateKeySigner,
    root: &[u8; 32],
    caps: &FeeCaps,
) -> Result<Prepared, EvmError> {
    let chain_id = rpc.chain_id()?;
    if let Some(expected) = chain.chain_id
        && expected != chain_id
    {
        return Err(EvmError::ChainMismatch {
            chain: chain.name.clone(),
            expected,
            actual: chain_id,
        });
    }
    if is_dev_key(signer) && chain_id != ANVIL_CHAIN_ID && chain.name != "local" {
        return Err(EvmError::DevKey { chain_id });
    }
    let from = signer.address();
    let from_hex = format!("{from:#x}");
    let nonce = rpc.quantity("eth_getTransactionCount", json!([from_hex, "pending"]))?;
    let input = calldata(root);
    let gas_limit = rpc.quantity(
        "eth_estimateGas",
        json!([{"from": from_hex, "to": from_hex, "data": format!("0x{}", hex::encode(&input))}]),
    )?;
    let block = rpc.block(rpc.block_number()?)?.unwrap_or(Value::Null);
    let base_fee = block
        .get("baseFeePerGas")
        .and_then(parse_u256)
        .unwrap_or(U256::ZERO);
    if gas_limit > caps.max_gas {
        return Err(EvmError::FeeCap(format!(
            "the node estimates {gas_limit} gas, over the {} gas cap",
            caps.max_gas
        )));
    }
    let fee_cap = U256::from(caps.max_fee_per_gas);
    let tip = rpc
        .call("eth_maxPriorityFeePerGas", json!([]))
        .ok()
        .and_then(|v| parse_u256(&v))
        .unwrap_or(U256::from(1_000_000_000u64))
        .min(U256::from(caps.max_priority_fee_per_gas));
    if base_fee.saturating_add(tip) > fee_cap {
        return Err(EvmError::FeeCap(format!(
            "the base fee is {base_fee} wei per gas; with a {tip} wei tip that is over the {fee_cap} wei max fee per gas"
        )));
    }
    let max_fee = base_fee
        .saturating_mul(U256::from(2))
        .saturating_add(tip)
        .min(fee_cap);
    let to_u128 = |v: U256| u128::try_from(v).unwrap_or(u128::MAX);
    let balance = rpc
        .call("eth_getBalance", json!([from_hex, "pending"]))
        .ok()
        .and_then(|v| parse_u256(&v))
        .unwrap_or(U256::ZERO);
    let needed = max_fee.saturating_mul(U256::from(gas_limit));
    if balance < needed {
        return Err(EvmError::InsufficientFunds {
            address: from_hex,
            balance,
            needed,
        });
    }
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: to_u128(max_fee),
        max_priority_fee_per_gas: to_u128(tip),
        to: TxKind::Call(from),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::from(input),
    };
    let sig = signer
        .sign_hash_sync(&tx.signature_hash())
        .map_err(|e| EvmError::Key(format!("signing the transaction failed: {e}")))?;
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    Ok(Prepared {
        raw: envelope.encoded_2718(),
        hash: *envelope.tx_hash(),
        from,
        chain_id,
    })
}

/// Send a prepared transaction and wait for `confirmations` blocks on top of its receipt.
pub fn send_and_wait(
    rpc: &Rpc,
    chain: &Chain,
    p: &Prepared,
    confirmations: u64,
    timeout: Duration,
    on_wait: &mut dyn FnMut(&str),
) -> Result<EvmAnchor, EvmError> {
    let tx = format!("{:#x}", p.hash);
    let sent = rpc.call(
        "eth_sendRawTransaction",
        json!([format!("0x{}", hex::encode(&p.raw))]),
    )?;
    if sent.as_str().map(str::to_lowercase) != Some(tx.clone()) {
        return Err(EvmError::BadAnswer {
            method: "eth_sendRawTransaction".into(),
            message: format!("node returned hash {sent}, expected {tx}"),
        });
    }
    let start = Instant::now();
    loop {
        if start.elapsed() > timeout {
            return Err(EvmError::Timeout {
                tx,
                secs: timeout.as_secs(),
            });
        }
        if let Some(r) = rpc.receipt(&tx)? {
            let block_number = r.get("blockNumber").and_then(parse_quantity);
            let status = r.get("status").and_then(parse_quantity);
            if let (Some(block_number), Some(status)) = (block_number, status) {
                if status != 1 {
                    return Err(EvmError::Reverted {
                        tx,
                        block: block_number,
                    });
                }
                let head = rpc.block_number()?;
                let have = head.saturating_sub(block_number).saturating_add(1);
                if have >= confirmations.max(1) {
                    let block_hash = r
                        .get("blockHash")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let block = rpc
                        .block(block_number)?
                        .ok_or_else(|| EvmError::BadAnswer {
                            method: "eth_getBlockByNumber".into(),
                            message: format!("block {block_number} not found"),
                        })?;
                    // A reorg between the receipt and now would leave another block at this height.
                    if block.get("hash").and_then(Value::as_str) != Some(block_hash.as_str()) {
                        on_wait(
                            "the anchor's block was reorganised away; waiting for it to be mined again",
                        );
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    return Ok(EvmAnchor {
                        chain: chain.name.clone(),
                        chain_id: p.chain_id,
                        tx_hash: tx,
                        from: format!("{:#x}", p.from),
                        block_number,
                        block_hash,
                        block_timestamp: block
                            .get("timestamp")
                            .and_then(parse_quantity)
                            .unwrap_or(0),
                        gas_used: r.get("gasUsed").and_then(parse_quantity).unwrap_or(0),
                    });
                }
                on_wait(&format!("{have}/{confirmations} confirmations"));
            }
        } else {
            on_wait("waiting for the transaction to be mined");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The result of checking an anchor online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineCheck {
    /// Everything holds.
    Confirmed {
        /// Confirmations now.
        confirmations: u64,
        /// The block timestamp.
        block_timestamp: u64,
    },
    /// Something does not hold; the reason.
    Failed(String),
}

/// Check an anchor against a node: chain id, the transaction's calldata carries `root`, the
/// receipt succeeded, its block is still canonical at that height, and confirmations.
pub fn check_online(rpc: &Rpc, a: &EvmAnchor, root: &[u8; 32]) -> Result<OnlineCheck, EvmError> {
    let chain_id = rpc.chain_id()?;
    if chain_id != a.chain_id {
        return Ok(OnlineCheck::Failed(format!(
            "the node is on chain id {chain_id}, the anchor on {}",
            a.chain_id
        )));
    }
    // First the block: if the recorded block is no longer canonical at its height, the anchor
    // was reorganised away, whatever else the node still knows about the transaction.
    let canonical = rpc.block(a.block_number)?;
    let canonical_hash = canonical
        .as_ref()
        .and_then(|b| b.get("hash"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !canonical_hash.eq_ignore_ascii_case(&a.block_hash) {
        return Ok(OnlineCheck::Failed(format!(
            "block {} is now {}, not {}: the anchor was reorged out",
            a.block_number,
            if canonical_hash.is_empty() {
                "missing"
            } else {
                canonical_hash
            },
            a.block_hash
        )));
    }
    let Some(tx) = rpc.transaction(&a.tx_hash)? else {
        return Ok(OnlineCheck::Failed(format!(
            "transaction {} not found",
            a.tx_hash
        )));
    };
    let input = tx
        .get("input")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s.trim_start_matches("0x")).ok())
        .unwrap_or_default();
    if root_from_calldata(&input) != Some(*root) {
        return Ok(OnlineCheck::Failed(
            "the transaction's calldata does not carry this Merkle root".into(),
        ));
    }
    let from = tx
        .get("from")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    if from != a.from.to_lowercase() {
        return Ok(OnlineCheck::Failed(format!(
            "the transaction was sent by {from}, the receipt says {}",
            a.from
        )));
    }
    let Some(r) = rpc.receipt(&a.tx_hash)? else {
        return Ok(OnlineCheck::Failed(
            "no receipt: the transaction is not in the canonical chain (reorged out?)".into(),
        ));
    };
    if r.get("status").and_then(parse_quantity) != Some(1) {
        return Ok(OnlineCheck::Failed("the transaction reverted".into()));
    }
    let number = r
        .get("blockNumber")
        .and_then(parse_quantity)
        .unwrap_or(u64::MAX);
    let hash = r.get("blockHash").and_then(Value::as_str).unwrap_or("");
    if number != a.block_number || !hash.eq_ignore_ascii_case(&a.block_hash) {
        return Ok(OnlineCheck::Failed(format!(
            "the transaction is now in block {number} ({hash}), the receipt records block {} ({}): the anchor was reorganised",
            a.block_number, a.block_hash
        )));
    }
    let head = rpc.block_number()?;
    Ok(OnlineCheck::Confirmed {
        confirmations: head.saturating_sub(number).saturating_add(1),
        block_timestamp: canonical
            .as_ref()
            .and_then(|b| b.get("timestamp"))
            .and_then(parse_quantity)
            .unwrap_or(a.block_timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_are_recognised() {
        let dev = PrivateKeySigner::from_slice(&hex::decode(DEV_KEYS[0]).unwrap()).unwrap();
        assert_eq!(
            format!("{:#x}", dev.address()),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        assert!(is_dev_key(&dev));
        assert!(!is_dev_key(&PrivateKeySigner::random()));
    }
}
