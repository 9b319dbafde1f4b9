//! The audit's challenge: where it comes from (the auditor, OS randomness, or the chain a block
//! after the anchor), the anchors it depends on, and which segments it picks.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{AuditError, Challenge, Options, Progress};

/// How often the chain is asked whether the challenge block is mined.
const POLL: Duration = Duration::from_secs(1);
use crate::anchor;
use crate::report::{CheckId, Hint, Report, Status};
use crate::shuffle;
use crate::vsa::ChallengeSource;

/// The key-derivation context that turns a challenge into a choice of segments.
pub(super) const CHALLENGE_CONTEXT: &str = "auditai 2025 audit challenge v1";

/// With `--challenge-from-anchor`, the challenge is the hash of the block this many blocks after
/// the manifest's anchor block: it did not exist when the prover anchored, so the prover could not
/// choose it by picking what to anchor.
pub const CHALLENGE_DELAY_BLOCKS: u64 = 6;

/// The commitment's anchor receipt, when there is one: it must include the commitment.
pub(super) fn commitment_anchor(
    manifest: &Path,
    dir: &Path,
    name: &str,
    c_bytes: &[u8],
    opts: &Options,
) -> (Status, String) {
    let rpath = match crate::fsio::safe_join(dir, name) {
        Ok(p) => anchor::receipt_path(&p),
        Err(why) => return (Status::Fail, why.to_string()),
    };
    if !rpath.exists() {
        return (Status::Skip, "not anchored before training".into());
    }
    let receipt = match anchor::read_receipt(&rpath) {
        Ok(r) => r,
        Err(e) => return (Status::Fail, e.to_string()),
    };
    let root = match anchor::check_inclusion(&receipt, c_bytes) {
        Ok(root) => root,
        Err(why) => return (Status::Fail, why.to_string()),
    };
    let Some(e) = &receipt.evm else {
        let ots = receipt.ots.as_ref().map_or("none", |o| o.status.as_str());
        return (
            Status::Pass,
            format!("OpenTimestamps ({ots}); check with `auditai verify` on the proof"),
        );
    };
    let manifest_block = anchor::read_receipt(&anchor::receipt_path(manifest))
        .ok()
        .and_then(|m| m.evm)
        .filter(|m| m.chain_id == e.chain_id);
    let order = match &manifest_block {
        Some(m) if m.block_number > e.block_number => format!(
            "; the manifest is anchored later, in block {}",
            m.block_number
        ),
        Some(m) => {
            return (
                Status::Fail,
                format!(
                    "the commitment's block {} is not before the manifest's block {}",
                    e.block_number, m.block_number
                ),
            );
        }
        None => String::new(),
    };
    let claimed = format!(
        "{} block {} at {}{order}",
        e.chain,
        e.block_number,
        crate::manifest::format_unix(e.block_timestamp)
    );
    match &opts.online {
        None => (
            Status::Claimed,
            format!("{claimed} (receipt; not checked online)"),
        ),
        Some(chain) => match on_chain(chain, e, &root) {
            Ok(confirmations) => (
                Status::Pass,
                format!("{claimed}, verified online ({confirmations} confirmations)"),
            ),
            Err(why) => (Status::Fail, why),
        },
    }
}

/// Check an EVM anchor on chain: its confirmations, or why it does not hold.
pub(super) fn on_chain(
    chain: &anchor::chain::Chain,
    e: &anchor::chain::EvmAnchor,
    root: &[u8; 32],
) -> Result<u64, String> {
    anchor::check_evm_online(chain, e, root)
        .map(|c| c.confirmations)
        .map_err(|e| e.to_string())
}

pub(super) fn challenge_bytes(
    manifest: &Path,
    opts: &Options,
    r: &mut Report,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<u8>, ChallengeSource), AuditError> {
    match &opts.challenge {
        Challenge::Explicit(b) => Ok((b.clone(), ChallengeSource::Explicit)),
        Challenge::Random => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b)
                .map_err(|e| AuditError::Challenge(format!("no OS randomness: {e}")))?;
            Ok((b.to_vec(), ChallengeSource::Random))
        }
        Challenge::FromAnchor { unconfirmed } => {
            let fail = AuditError::FromAnchor;
            if opts.online.is_none() && !unconfirmed {
                return Err(AuditError::Unconfirmed);
            }
            let rpath = anchor::receipt_path(manifest);
            let receipt = anchor::read_receipt(&rpath).map_err(|e| fail(e.to_string()))?;
            let Some(e) = &receipt.evm else {
                return Err(fail(format!(
                    "{} records no EVM anchor (OpenTimestamps gives no block hash yet)",
                    rpath.display()
                )));
            };
            let manifest_bytes = crate::fsio::read_bounded(manifest, crate::fsio::MAX_DOCUMENT)
                .map_err(|source| AuditError::Read {
                    path: manifest.to_path_buf(),
                    source,
                })?;
            let root = match anchor::check_inclusion(&receipt, &manifest_bytes) {
                Ok(root) => root,
                Err(why) => {
                    r.push_row(
                        CheckId::Challenge,
                        Status::Fail,
                        format!("the anchor receipt does not match the manifest: {why}"),
                    );
                    return Ok((Vec::new(), ChallengeSource::Anchor));
                }
            };
            let Some(chain) = &opts.online else {
                let hash = hex::decode(e.block_hash.trim_start_matches("0x"))
                    .ok()
                    .filter(|h| h.len() == 32)
                    .ok_or_else(|| fail(format!("{}: malformed block hash", rpath.display())))?;
                r.push_hinted(CheckId::Challenge, CheckId::Challenge.label(),
                    Status::Claimed,
                    format!(
                        "block hash {} of {} block {}, taken from the receipt and not checked on chain, so the prover could have chosen it",
                        e.block_hash, e.chain, e.block_number
                    ), Hint::UnconfirmedChallenge);
                return Ok((hash, ChallengeSource::AnchorUnconfirmed));
            };
            if let Err(why) = on_chain(chain, e, &root) {
                r.push_row(CheckId::Challenge, Status::Fail, why);
                return Ok((Vec::new(), ChallengeSource::Anchor));
            }
            let (number, hash) =
                challenge_block(chain, e.block_number, opts.wait, progress).map_err(fail)?;
            r.push_row(CheckId::Challenge,
                Status::Pass,
                format!(
                    "hash {hash} of {} block {number}, {CHALLENGE_DELAY_BLOCKS} blocks after the anchor's block {} (verified online)",
                    e.chain, e.block_number
                ),
            );
            let bytes = hex::decode(hash.trim_start_matches("0x"))
                .map_err(|_| fail(format!("the node returned a malformed block hash {hash}")))?;
            Ok((bytes, ChallengeSource::Anchor))
        }
    }
}

/// The number and hash of the block [`CHALLENGE_DELAY_BLOCKS`] after `anchor_block`, read from
/// the chain, waiting up to `wait` for it to be mined; an error while it is not mined yet.
pub(super) fn challenge_block(
    chain: &anchor::chain::Chain,
    anchor_block: u64,
    wait: Option<Duration>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(u64, String), String> {
    let number = anchor_block
        .checked_add(CHALLENGE_DELAY_BLOCKS)
        .ok_or("the anchor's block number is out of range")?;
    let rpc =
        anchor::evm::Rpc::new(&chain.rpc, Duration::from_secs(20)).map_err(|e| e.to_string())?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let head = rpc.block_number().map_err(|e| e.to_string())?;
        if head >= number {
            break;
        }
        if deadline.is_none_or(|d| Instant::now() >= d) {
            return Err(format!(
                "the challenge block {number} ({CHALLENGE_DELAY_BLOCKS} blocks after the anchor) is not mined yet (the chain is at block {head}); {}",
                if wait.is_some() {
                    "it was not mined within --timeout; audit again once it is"
                } else {
                    "audit again once it is, or wait for it with --timeout"
                }
            ));
        }
        progress(Progress::Waiting {
            block: number,
            head,
        });
        std::thread::sleep(POLL);
    }
    let block = rpc
        .block(number)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the node has no block {number}"))?;
    let hash = block
        .get("hash")
        .and_then(|h| h.as_str())
        .filter(|h| h.len() == 66)
        .ok_or_else(|| format!("the node returned block {number} without a hash"))?;
    Ok((number, hash.to_string()))
}

/// The segments a challenge picks: the first `k` of a permutation of `1..=n` keyed by the
/// challenge and the transcript head, ascending.
pub fn select(challenge: &[u8], head: &str, n: usize, k: usize) -> Vec<usize> {
    let mut key = blake3::Hasher::new_derive_key(CHALLENGE_CONTEXT);
    key.update(challenge);
    key.update(head.as_bytes());
    let mut all: Vec<usize> = (1..=n).collect();
    shuffle::shuffle(&mut all, key.finalize().as_bytes());
    let mut chosen: Vec<usize> = all.into_iter().take(k.min(n)).collect();
    chosen.sort_unstable();
    chosen
}
