//! `--attest KEY [--attest-out FILE]` of `verify` and `audit`: write the signed verdict.

use std::path::{Path, PathBuf};

use auditai::report::Report;
use auditai::sign::{self, Envelope};
use auditai::vsa;

#[derive(Debug, clap::Args)]
pub(super) struct AttestArgs {
    /// Write a signed verdict (an in-toto Statement with the SLSA Verification Summary v1
    /// predicate, docs/attestations.md) of this check, signed with this ed25519 private key:
    /// next to the manifest as verdict-<kind>-<time>.intoto.json, or to --attest-out. A failed
    /// check yields a verdict that says FAILED.
    #[arg(long, value_name = "KEY", help_heading = "Verdicts")]
    pub attest: Option<PathBuf>,
    /// Where to write the verdict (an existing file is not replaced).
    #[arg(
        long,
        value_name = "FILE",
        requires = "attest",
        help_heading = "Verdicts"
    )]
    pub attest_out: Option<PathBuf>,
}

/// What the verdict says, as the command learned it.
pub(super) struct Outcome<'a> {
    pub kind: vsa::VerdictKind,
    pub manifest: &'a Path,
    pub report: &'a Report,
    pub passed: bool,
    pub audit: Option<vsa::AuditSummary>,
    pub policy: Option<&'a Path>,
    pub keys: &'a [auditai::sign::PublicKey],
}

/// Sign and write the verdict, when `--attest` asks; returns its path and result.
pub(super) fn write(
    args: &AttestArgs,
    o: Outcome<'_>,
) -> anyhow::Result<Option<(PathBuf, String)>> {
    let Some(key_path) = &args.attest else {
        return Ok(None);
    };
    let key = sign::SecretKey::read(key_path)?;
    let out = match &args.attest_out {
        Some(p) => {
            if std::fs::symlink_metadata(p).is_ok() {
                anyhow::bail!("{} already exists; pass another --attest-out", p.display());
            }
            p.clone()
        }
        None => vsa::default_path(o.manifest, o.kind),
    };
    let bytes = super::trust::read_document(o.manifest)?;
    let subjects = auditai::manifest::open(&bytes)
        .map(|m| m.statement.subject)
        .unwrap_or_default();
    let keyids: Vec<String> = o.keys.iter().map(|k| k.keyid.clone()).collect();
    let statement = vsa::statement(vsa::Facts {
        kind: o.kind,
        manifest: o.manifest,
        manifest_bytes: &bytes,
        subjects,
        policy: vsa::policy_ref(o.policy, &keyids),
        passed: o.passed,
        report: o.report,
        audit: o.audit,
        out: &out,
    });
    let mut envelope = Envelope::new(
        sign::IN_TOTO_PAYLOAD_TYPE,
        &serde_json::to_vec(&statement).unwrap_or_default(),
    );
    envelope.sign(&key);
    auditai::fsio::write_atomic(&out, &envelope.to_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    Ok(Some((
        out,
        statement.predicate.verification_result.to_string(),
    )))
}
