//! Anchoring batches of files over the network: the EVM transaction and the OpenTimestamps
//! calendars, the receipts and proofs they leave, and `anchor upgrade`. Behind the `anchor`
//! feature; offline checks of what this writes live in the parent module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::evm::{self, Chain};
use super::{
    AnchorError, BitcoinAttestation, OtsRecord, RECEIPT_SCHEMA, Receipt, io_err, merkle, ots,
    ots_path, read_receipt, receipt_path, redact_url,
};
use crate::fsio;

/// Install rustls' ring provider once (reqwest is built without a default provider).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The one HTTP client builder (rustls on ring, a per-request timeout) that every network call
/// of auditai uses: EVM JSON-RPC, bitcoind and the calendars.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
}

/// Read an HTTP body of at most `max` bytes.
pub(crate) fn read_body(resp: reqwest::blocking::Response, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(format!("the answer is over the {max}-byte limit"));
    }
    let mut body = Vec::new();
    resp.take(max.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > max {
        return Err(format!("the answer is over the {max}-byte limit"));
    }
    Ok(body)
}

/// EVM settings for a batch.
pub struct EvmOptions {
    /// The chain.
    pub chain: Chain,
    /// The anchoring key.
    pub signer: alloy_signer_local::PrivateKeySigner,
    /// Confirmations to wait for.
    pub confirmations: u64,
    /// How long to wait for them.
    pub timeout: Duration,
    /// Sign but do not send.
    pub dry_run: bool,
    /// The most the transaction may pay.
    pub fees: evm::FeeCaps,
}

/// What to anchor with.
pub struct Options {
    /// The EVM backend.
    pub evm: Option<EvmOptions>,
    /// OpenTimestamps calendars (empty: no OpenTimestamps).
    pub calendars: Vec<String>,
    /// Re-anchor manifests that already have a receipt.
    pub force: bool,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Manifests anchored now, with their receipts.
    pub anchored: Vec<(PathBuf, Receipt)>,
    /// Manifests skipped because they already had a receipt.
    pub skipped: Vec<PathBuf>,
    /// The signed raw transaction (hex) of a dry run.
    pub dry_run_tx: Option<String>,
    /// Calendars that failed while others succeeded.
    pub calendar_errors: Vec<String>,
}

/// Anchor a batch of manifests.
pub fn anchor(
    manifests: &[PathBuf],
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, AnchorError> {
    if opts.evm.is_none() && opts.calendars.is_empty() {
        return Err(AnchorError::NoBackend);
    }
    let mut out = Outcome::default();
    let mut batch: Vec<(PathBuf, [u8; 32])> = Vec::new();
    for m in manifests {
        let bytes = fsio::read_bounded(m, fsio::MAX_DOCUMENT).map_err(io_err(m))?;
        if receipt_path(m).exists() && !opts.force {
            out.skipped.push(m.clone());
            continue;
        }
        batch.push((m.clone(), Sha256::digest(&bytes).into()));
    }
    if batch.is_empty() {
        return Ok(out);
    }
    let leaves: Vec<merkle::Hash> = batch.iter().map(|(_, d)| merkle::leaf(d)).collect();
    let mut tree = merkle::Tree::new(&leaves);
    let root = tree.root();
    progress(&format!(
        "{} manifest(s), Merkle root {}",
        batch.len(),
        hex::encode(root)
    ));

    let mut evm_anchor = None;
    if let Some(e) = &opts.evm {
        let rpc = evm::Rpc::new(&e.chain.rpc, Duration::from_secs(20))?;
        let prepared = evm::prepare(&rpc, &e.chain, &e.signer, &root, &e.fees)?;
        if e.dry_run {
            out.dry_run_tx = Some(format!("0x{}", hex::encode(&prepared.raw)));
            return Ok(out);
        }
        progress(&format!("sent {:#x}", prepared.hash));
        evm_anchor = Some(evm::send_and_wait(
            &rpc,
            &e.chain,
            &prepared,
            e.confirmations,
            e.timeout,
            progress,
        )?);
    }

    let calendar_stamps = submit_to_calendars(&opts.calendars, &root, &mut out, progress)?;
    // Every calendar failed: an error, but an EVM anchor that happened on chain still gets its
    // receipts (written below) before the error is reported.
    let calendars_failed = !opts.calendars.is_empty() && calendar_stamps.is_empty();
    if calendars_failed && evm_anchor.is_none() {
        return Err(AnchorError::Calendars(out.calendar_errors.join("; ")));
    }

    for (i, (path, digest)) in batch.iter().enumerate() {
        let proof = tree.path(i);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ots_record = if calendar_stamps.is_empty() {
            None
        } else {
            let ts = proof_timestamp(digest, i, leaves.len(), &proof, &calendar_stamps);
            Some(write_proof(path, digest, &ts, &calendar_stamps)?)
        };
        let receipt = Receipt {
            schema: RECEIPT_SCHEMA.to_string(),
            manifest: name,
            manifest_sha256: hex::encode(digest),
            leaf_index: i,
            tree_size: leaves.len(),
            path: proof.iter().map(hex::encode).collect(),
            root: hex::encode(root),
            evm: evm_anchor.clone(),
            ots: ots_record,
        };
        write_receipt(path, &receipt)?;
        out.anchored.push((path.clone(), receipt));
    }
    if calendars_failed {
        return Err(AnchorError::Calendars(format!(
            "{} (the EVM anchor's receipts were written)",
            out.calendar_errors.join("; ")
        )));
    }
    Ok(out)
}

/// Submit the root to every calendar; a calendar that fails is recorded in `out`, not fatal.
fn submit_to_calendars(
    calendars: &[String],
    root: &[u8; 32],
    out: &mut Outcome,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(String, ots::Timestamp)>, AnchorError> {
    let mut stamps = Vec::new();
    if calendars.is_empty() {
        return Ok(stamps);
    }
    let client =
        http_client(Duration::from_secs(30)).map_err(|e| AnchorError::Calendars(e.to_string()))?;
    for url in calendars {
        progress(&format!("submitting to {}", redact_url(url)));
        match ots::submit(&client, url, root) {
            Ok(t) => stamps.push((url.clone(), t)),
            Err(e) => out.calendar_errors.push(e.to_string()),
        }
    }
    Ok(stamps)
}

/// Write a manifest's `.ots` proof and return its receipt record.
fn write_proof(
    manifest: &Path,
    digest: &[u8; 32],
    ts: &ots::Timestamp,
    stamps: &[(String, ots::Timestamp)],
) -> Result<OtsRecord, AnchorError> {
    let ots_file = ots_path(manifest);
    fsio::write_atomic(&ots_file, &ots::encode_file(digest, ts)).map_err(io_err(&ots_file))?;
    let record = OtsRecord {
        proof: ots_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        calendars: stamps.iter().map(|(u, _)| u.clone()).collect(),
        status: "pending".into(),
        bitcoin: Vec::new(),
    };
    Ok(with_bitcoin(record, ts))
}

fn write_receipt(manifest: &Path, r: &Receipt) -> Result<(), AnchorError> {
    let path = receipt_path(manifest);
    let mut bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
    bytes.push(b'\n');
    fsio::write_atomic(&path, &bytes).map_err(io_err(&path))
}

/// The timestamp from a manifest digest through its Merkle path to the calendars' stamps of the
/// root: `prepend 00, sha256` for the leaf, then per level `append/prepend sibling, prepend 01,
/// sha256`.
fn proof_timestamp(
    digest: &[u8; 32],
    index: usize,
    size: usize,
    proof: &[merkle::Hash],
    calendars: &[(String, ots::Timestamp)],
) -> ots::Timestamp {
    let mut ts = ots::Timestamp::new(digest.to_vec());
    let mut node = ts
        .add_op(ots::Op::Prepend(vec![0x00]))
        .add_op(ots::Op::Sha256);
    for step in merkle::steps(index, size, proof).unwrap_or_default() {
        node = match step {
            merkle::Step::Left(sib) => node.add_op(ots::Op::Prepend(sib.to_vec())),
            merkle::Step::Right(sib) => node.add_op(ots::Op::Append(sib.to_vec())),
        };
        node = node
            .add_op(ots::Op::Prepend(vec![0x01]))
            .add_op(ots::Op::Sha256);
    }
    for (_, stamp) in calendars {
        node.attestations.extend(stamp.attestations.clone());
        node.ops.extend(stamp.ops.clone());
    }
    ts
}

fn with_bitcoin(mut r: OtsRecord, ts: &ots::Timestamp) -> OtsRecord {
    r.bitcoin = ts
        .attestations()
        .into_iter()
        .filter_map(|(msg, a)| match a {
            ots::Attestation::Bitcoin(h) => Some(BitcoinAttestation {
                height: *h,
                merkle_root: hex::encode(msg),
            }),
            _ => None,
        })
        .collect();
    r.bitcoin.sort_by_key(|b| b.height);
    r.bitcoin.dedup();
    r.status = if r.bitcoin.is_empty() {
        "pending"
    } else {
        "bitcoin"
    }
    .into();
    r
}

/// What upgrading one manifest's proof found.
#[derive(Debug)]
pub struct Upgraded {
    /// The manifest.
    pub manifest: PathBuf,
    /// `pending` or `bitcoin`.
    pub status: String,
    /// Bitcoin attestations now in the proof.
    pub bitcoin: Vec<BitcoinAttestation>,
    /// Calendars that could not be asked (the proof stays as it was for them).
    pub errors: Vec<String>,
    /// Calendars named in the proof but not configured: not contacted (URLs redacted).
    pub not_contacted: Vec<String>,
}

/// Ask the calendars for completed attestations and update each `.ots` proof and receipt.
///
/// Only calendars in `allowed` are contacted; a pending attestation naming any other URL (the
/// proof is untrusted input) is left pending and reported.
pub fn upgrade(
    manifests: &[PathBuf],
    allowed: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Upgraded>, AnchorError> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    let client =
        http_client(Duration::from_secs(30)).map_err(|e| AnchorError::Calendars(e.to_string()))?;
    let mut out = Vec::new();
    for m in manifests {
        let rpath = receipt_path(m);
        let mut receipt = read_receipt(&rpath)?;
        let Some(record) = receipt.ots.clone() else {
            return Err(AnchorError::Malformed {
                path: rpath,
                message: "this receipt has no OpenTimestamps anchor to upgrade".into(),
            });
        };
        let opath = ots_path(m);
        let bytes = fsio::read_bounded(&opath, ots::MAX_PROOF).map_err(io_err(&opath))?;
        let (digest, mut ts) = ots::decode_file(&bytes).map_err(|e| AnchorError::Malformed {
            path: opath.clone(),
            message: e.to_string(),
        })?;
        let pending: Vec<(Vec<u8>, String)> = ts
            .attestations()
            .into_iter()
            .filter_map(|(msg, a)| match a {
                ots::Attestation::Pending(url) => Some((msg.to_vec(), url.clone())),
                _ => None,
            })
            .collect();
        let (mut errors, mut not_contacted) = (Vec::new(), Vec::new());
        for (commitment, url) in pending {
            if !allowed.iter().any(|a| same(a, &url)) {
                not_contacted.push(redact_url(&url));
                continue;
            }
            progress(&format!("asking {}", redact_url(&url)));
            match ots::upgrade(&client, &url, &commitment) {
                Ok(Some(up)) => {
                    ts.merge_upgrade(&commitment, &url, up);
                }
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        let record = with_bitcoin(record, &ts);
        fsio::write_atomic(&opath, &ots::encode_file(&digest, &ts)).map_err(io_err(&opath))?;
        receipt.ots = Some(record.clone());
        write_receipt(m, &receipt)?;
        out.push(Upgraded {
            manifest: m.clone(),
            status: record.status,
            bitcoin: record.bitcoin,
            errors,
            not_contacted,
        });
    }
    Ok(out)
}
