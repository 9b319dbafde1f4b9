//! The flags a user could pass, worded here and nowhere else. The library says what could be
//! done (a row's [`Hint`], an error variant, a device notice); this module names the flag, so
//! that renaming a flag touches `cli/` only.

use auditai::report::{Check, Hint};

/// A row's hint, as the text that follows its detail.
fn row_hint(h: Hint) -> &'static str {
    match h {
        Hint::TrustKeys => ": pass --key PUB or --policy FILE",
        Hint::CheckOnline => "; pass --rpc or --chain to check",
        Hint::AllowExtra => " (declare expected extras with --allow-extra NAME)",
        Hint::BitcoinHeader => "; pass --bitcoin-header HEIGHT:MERKLEROOT or --bitcoin-rpc URL",
        Hint::Root => " (pass --root to say where the data lives)",
        Hint::AnchorCommitment => " (run with --anchor-commitment)",
        Hint::UnconfirmedChallenge => " (--allow-unconfirmed-challenge)",
        Hint::Tolerance => " (--tolerance)",
    }
}

/// Report rows with their hints worded into the detail, for tables and `--json` alike.
pub(super) fn rows(checks: &[Check]) -> Vec<Check> {
    checks
        .iter()
        .cloned()
        .map(|mut c| {
            if let Some(h) = c.hint {
                c.detail.push_str(row_hint(h));
            }
            c
        })
        .collect()
}

/// A device notice, with the flag that overrides it.
#[cfg(feature = "train")]
pub(super) fn notice(n: &auditai::train::device::Notice) -> String {
    match n {
        auditai::train::device::Notice::SoftwareOnly { .. } => {
            format!("{n} (use --device wgpu to force it)")
        }
        _ => n.to_string(),
    }
}

/// An error's message with the flags that would help.
pub(super) fn error(e: &anyhow::Error) -> String {
    #[cfg(feature = "train")]
    {
        if let Some(p) = e.downcast_ref::<auditai::pipeline::PipelineError>() {
            return pipeline(p);
        }
        if let Some(a) = e.downcast_ref::<auditai::audit::AuditError>() {
            return audit(a);
        }
    }
    #[cfg(feature = "anchor")]
    {
        if let Some(a) = e.downcast_ref::<auditai::anchor::AnchorError>() {
            return anchor(a);
        }
        if let Some(x) = e.downcast_ref::<auditai::anchor::evm::EvmError>() {
            return evm(x);
        }
    }
    if let Some(auditai::anchor::chain::ChainError::Missing) =
        e.downcast_ref::<auditai::anchor::chain::ChainError>()
    {
        return "pass --chain NAME or --rpc URL".to_string();
    }
    e.to_string()
}

#[cfg(feature = "train")]
fn pipeline(p: &auditai::pipeline::PipelineError) -> String {
    use auditai::pipeline::PipelineError;
    use auditai::train::TrainError;
    match p {
        PipelineError::Device(e) => format!("{e} (use --device cpu or --device auto)"),
        PipelineError::Exists { dir } => format!(
            "{} already holds a run; pass --resume to continue it or --force to replace it",
            dir.display()
        ),
        PipelineError::Anchor(inner) => format!(
            "anchoring the training commitment failed, so training did not start (rerun with --resume once fixed): {}",
            anchor(inner)
        ),
        PipelineError::Train(TrainError::BackendChanged { trained, .. }) => {
            format!("{p}; pass --device {trained}")
        }
        PipelineError::Data(auditai::data::DataError::BadRows { .. }) => {
            format!("{p} (pass --skip-bad-rows to train without them; the manifest records them)")
        }
        _ => p.to_string(),
    }
}

#[cfg(feature = "train")]
fn audit(a: &auditai::audit::AuditError) -> String {
    use auditai::audit::AuditError;
    match a {
        AuditError::Device(e) => format!("{e} (use --device cpu)"),
        AuditError::NeedsTolerance {
            trained,
            replay,
            why,
        } => format!(
            "the run trained on {trained}; a replay on {replay} can only be compared within tolerances, not bitwise: pass --tolerance to accept that, or replay on {trained}{why}"
        ),
        AuditError::Unconfirmed => format!(
            "--challenge-from-anchor: {a}: pass --rpc or --chain (or accept an unchecked challenge with --allow-unconfirmed-challenge)"
        ),
        AuditError::FromAnchor(m) => format!("--challenge-from-anchor: {m}"),
        _ => a.to_string(),
    }
}

#[cfg(feature = "anchor")]
fn anchor(a: &auditai::anchor::AnchorError) -> String {
    use auditai::anchor::AnchorError;
    match a {
        AnchorError::NoBackend => {
            format!("{a}: pass --chain/--rpc for an EVM chain and/or --ots")
        }
        AnchorError::Evm(x) => evm(x),
        _ => a.to_string(),
    }
}

#[cfg(feature = "anchor")]
fn evm(x: &auditai::anchor::evm::EvmError) -> String {
    use auditai::anchor::evm::EvmError;
    match x {
        EvmError::FeeCap(_) => {
            format!("{x} (raise --max-fee-gwei, --max-priority-fee-gwei or --max-gas to allow it)")
        }
        EvmError::DevKey { .. } => format!("{x} (only on 31337 or --chain local)"),
        EvmError::NoKey => format!(
            "{x}: pass --keystore FILE (password from AUDITAI_KEYSTORE_PASSWORD or --password-file) or set AUDITAI_ANCHOR_KEY"
        ),
        EvmError::KeystorePassword(_) => {
            format!("{x} in AUDITAI_KEYSTORE_PASSWORD or --password-file")
        }
        _ => x.to_string(),
    }
}

/// A calendar `anchor upgrade` did not contact, as its warning.
#[cfg(feature = "anchor")]
pub(super) fn not_contacted(url: &str) -> String {
    format!(
        "calendar {url}: not a configured calendar; not contacted (pass --calendar URL to allow it)"
    )
}
