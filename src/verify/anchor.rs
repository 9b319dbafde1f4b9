//! The anchor receipt next to a document: its Merkle path to the anchored root, the EVM
//! transaction (claimed offline, checked online with `--rpc`/`--chain`) and the OpenTimestamps
//! proof with its Bitcoin attestations against headers the verifier trusts.

use std::path::Path;

use super::Options;
use crate::anchor;
use crate::report::{CheckId, Hint, Report, Status};

/// The anchor receipt's checks, when a receipt sits next to the manifest.
pub(super) fn check_anchor(path: &Path, sha256: [u8; 32], opts: &Options, report: &mut Report) {
    let rpath = anchor::receipt_path(path);
    if !rpath.exists() {
        report.push_row(
            CheckId::Anchor,
            Status::Skip,
            "no anchor receipt next to the manifest",
        );
        return;
    }
    let receipt = match anchor::read_receipt(&rpath) {
        Ok(r) => r,
        Err(e) => {
            report.push_row(CheckId::AnchorReceipt, Status::Fail, e.to_string());
            return;
        }
    };
    let root = match anchor::check_inclusion_of(&receipt, sha256) {
        Ok(root) => {
            report.push_row(
                CheckId::AnchorMerklePath,
                Status::Pass,
                format!(
                    "leaf {} of {} leads to root {}",
                    receipt.leaf_index, receipt.tree_size, receipt.root
                ),
            );
            root
        }
        Err(why) => {
            report.push_row(CheckId::AnchorMerklePath, Status::Fail, why.to_string());
            return;
        }
    };
    if let Some(e) = &receipt.evm {
        check_evm_anchor(e, &root, opts, report);
    }
    if let Some(o) = &receipt.ots {
        check_ots_anchor(path, o, &sha256, &root, opts, report);
    }
}

/// The EVM part of a receipt: claimed offline, checked on chain with `--rpc`/`--chain`.
fn check_evm_anchor(
    e: &anchor::chain::EvmAnchor,
    root: &[u8; 32],
    opts: &Options,
    report: &mut Report,
) {
    let label = format!("anchor evm {} ({})", e.chain, e.chain_id);
    match &opts.online {
        None => report.push_hinted(
            CheckId::AnchorEvm,
            label,
            Status::Claimed,
            format!(
                "anchored (claimed; not checked online): block {} tx {}",
                e.block_number, e.tx_hash
            ),
            Hint::CheckOnline,
        ),
        Some(chain) => match anchor::check_evm_online(chain, e, root) {
            Ok(c) => report.push(
                CheckId::AnchorEvm,
                label,
                Status::Pass,
                format!(
                    "verified online: block {} at {} ({} confirmations), tx {}",
                    e.block_number,
                    crate::manifest::format_unix(c.block_timestamp),
                    c.confirmations,
                    e.tx_hash
                ),
            ),
            Err(why) => report.push(CheckId::AnchorEvm, label, Status::Fail, why.to_string()),
        },
    }
}

/// The OpenTimestamps part of a receipt: the `.ots` proof next to the manifest timestamps it
/// through the anchored root, and its Bitcoin attestations against trusted headers.
fn check_ots_anchor(
    path: &Path,
    o: &anchor::OtsRecord,
    digest: &[u8; 32],
    root: &[u8; 32],
    opts: &Options,
    report: &mut Report,
) {
    let proof_path = match crate::fsio::safe_join(crate::run_dir::of_manifest(path), &o.proof) {
        Ok(p) => p,
        Err(why) => {
            report.push_row(CheckId::AnchorOpentimestamps, Status::Fail, why.to_string());
            return;
        }
    };
    let checked = crate::fsio::read_bounded(&proof_path, anchor::ots::MAX_PROOF)
        .map_err(|e| format!("{}: {e}", proof_path.display()))
        .and_then(|b| anchor::check_ots(&b, digest, root).map_err(|e| e.to_string()));
    match checked {
        Err(why) => report.push_row(CheckId::AnchorOpentimestamps, Status::Fail, why),
        Ok(ts) => {
            let bitcoin: Vec<(u64, Vec<u8>)> = ts
                .attestations()
                .into_iter()
                .filter_map(|(msg, a)| match a {
                    anchor::ots::Attestation::Bitcoin(h) => Some((*h, msg.to_vec())),
                    _ => None,
                })
                .collect();
            if bitcoin.is_empty() {
                report.push_row(
                    CheckId::AnchorOpentimestamps,
                    Status::Warn,
                    format!(
                        "pending at {}; run `auditai anchor upgrade`",
                        o.calendars.join(", ")
                    ),
                );
            } else {
                use anchor::bitcoin::Judgement;
                let (status, detail) = match anchor::bitcoin::judge(&opts.bitcoin, &bitcoin) {
                    Judgement::Checked(d) => (Status::Pass, d),
                    Judgement::Claimed(d) => (Status::Claimed, d),
                    Judgement::Mismatch(d) => (Status::Fail, d),
                    Judgement::Unavailable(d) => (
                        Status::Fail,
                        format!("cannot check the Bitcoin header: {d}"),
                    ),
                };
                let label = CheckId::AnchorOpentimestamps.label();
                if status == Status::Claimed {
                    let hint = Hint::BitcoinHeader;
                    report.push_hinted(CheckId::AnchorOpentimestamps, label, status, detail, hint);
                } else {
                    report.push(CheckId::AnchorOpentimestamps, label, status, detail);
                }
            }
        }
    }
}
