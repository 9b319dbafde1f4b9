//! The signature rows of a DSSE envelope under a [`Trust`]: each signature, then the trust
//! (threshold and required names under a policy, one trusted key without). The one place that
//! judges signatures; the gate and every checker call it.

use super::Trust;
use crate::report::{CheckId, Hint, Report, Status};
use crate::sign::{self, Envelope, PublicKey, SigCheck};

/// Push the signature rows of `envelope` (whose payload bytes are `payload`) under `trust`;
/// returns the trusted keys whose signatures are valid.
pub fn signature_rows(
    envelope: &Envelope,
    payload: &[u8],
    trust: &Trust,
    report: &mut Report,
) -> Vec<PublicKey> {
    let trusted = trust.trusted_keys();
    if envelope.signatures.is_empty() {
        report.push_row(
            CheckId::Signatures,
            Status::Fail,
            "the manifest is unsigned",
        );
        return Vec::new();
    }
    if trusted.is_empty() {
        report.push_hinted(
            CheckId::Signatures,
            CheckId::Signatures.label(),
            Status::Fail,
            format!(
                "{} signature(s) present but no trusted key given",
                envelope.signatures.len()
            ),
            Hint::TrustKeys,
        );
        return Vec::new();
    }
    let mut valid: Vec<PublicKey> = Vec::new();
    for (i, sig) in envelope.signatures.iter().enumerate() {
        let name = format!("signature {}", i + 1);
        match sign::check_signature(envelope, payload, sig, &trusted) {
            SigCheck::Valid(k) => {
                let who = trust
                    .signer_name(&k)
                    .map_or_else(|| k.keyid.clone(), str::to_string);
                report.push(
                    CheckId::Signature,
                    name,
                    Status::Pass,
                    format!("valid, by {who}"),
                );
                if !valid.contains(&k) {
                    valid.push(k);
                }
            }
            SigCheck::NoMatchingKey => report.push(
                CheckId::Signature,
                name,
                Status::Fail,
                format!(
                    "not valid under any trusted key (keyid hint {})",
                    if sig.keyid.is_empty() {
                        "none"
                    } else {
                        &sig.keyid
                    }
                ),
            ),
            SigCheck::Malformed(reason) => {
                report.push(CheckId::Signature, name, Status::Fail, reason)
            }
        }
    }
    trust_row(&valid, trust, report);
    valid
}

/// Whether the valid signatures satisfy the trust: the policy's threshold and required names,
/// or at least one trusted key without a policy.
fn trust_row(valid: &[PublicKey], trust: &Trust, report: &mut Report) {
    // A policy that names no signers (one about data sources) leaves the signers to --key.
    let Some(p) = trust.policy.as_ref().filter(|p| !p.signers.is_empty()) else {
        if valid.is_empty() {
            report.push_row(
                CheckId::Signers,
                Status::Fail,
                "no signature by a trusted key",
            );
        } else {
            report.push_row(
                CheckId::Signers,
                Status::Pass,
                format!("{} trusted signer(s)", valid.len()),
            );
        }
        return;
    };
    let names: Vec<&str> = valid.iter().filter_map(|k| trust.signer_name(k)).collect();
    let missing: Vec<&str> = p
        .required
        .iter()
        .map(String::as_str)
        .filter(|r| !names.contains(r))
        .collect();
    if names.len() < p.threshold {
        report.push_row(
            CheckId::Policy,
            Status::Fail,
            format!(
                "{} valid signature(s) from policy signers, the policy requires {}",
                names.len(),
                p.threshold
            ),
        );
    } else if !missing.is_empty() {
        report.push_row(
            CheckId::Policy,
            Status::Fail,
            format!("required signer(s) missing: {}", missing.join(", ")),
        );
    } else {
        report.push_row(
            CheckId::Policy,
            Status::Pass,
            format!("signed by {} (threshold {})", names.join(", "), p.threshold),
        );
    }
}

/// The signature check as a gate: the valid trusted keys, or the first row that is not a pass
/// (its label and detail).
pub(super) fn check(
    envelope: &Envelope,
    payload: &[u8],
    trust: &Trust,
) -> Result<Vec<PublicKey>, (String, String)> {
    let mut report = Report::default();
    let valid = signature_rows(envelope, payload, trust, &mut report);
    match report.checks.iter().find(|c| c.status != Status::Pass) {
        Some(c) => Err((c.check.clone(), c.detail.clone())),
        None => Ok(valid),
    }
}
