//! `auditai contribute`: a data owner signs the terms of one data file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use auditai::contribution::{self, Permission, Terms, Uses, terms};
use auditai::sign::SecretKey;
use serde::Serialize;

use super::EXIT_OK;

#[derive(Debug, clap::Args)]
pub(super) struct ContributeArgs {
    /// The data file (CSV) whose terms to sign.
    data: PathBuf,
    /// The owner's ed25519 private key (PKCS#8 PEM, mode 0600); its public key is named in the
    /// statement, which only this key's signature makes valid.
    #[arg(long, value_name = "OWNER.pem")]
    key: PathBuf,
    /// Where to write the statement (default DATA.contribution.json; never replaced).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The owner's display name.
    #[arg(long, value_name = "NAME")]
    owner_name: Option<String>,
    /// SPDX licence expression (`CC-BY-4.0`, `MIT OR Apache-2.0`, `LicenseRef-…`).
    #[arg(long, value_name = "SPDX", value_parser = terms::license)]
    license: String,
    /// The legal basis, a W3C DPV term: Consent, Contract, LegalObligation, VitalInterest,
    /// PublicInterest, LegitimateInterest, ScientificResearch, … (`dpv:` optional).
    #[arg(long, visible_alias = "consent", value_name = "DPV", value_parser = terms::legal_basis)]
    legal_basis: String,
    /// CAWG `cawg.ai_training`: allowed, notAllowed or constrained.
    #[arg(long, value_name = "PERMISSION")]
    ai_training: Permission,
    /// CAWG `cawg.ai_inference` (default notAllowed).
    #[arg(long, value_name = "PERMISSION", default_value = "notAllowed")]
    ai_inference: Permission,
    /// CAWG `cawg.data_mining` (default notAllowed).
    #[arg(long, value_name = "PERMISSION", default_value = "notAllowed")]
    data_mining: Permission,
    /// What `constrained` means (required when a use is constrained).
    #[arg(long, value_name = "TEXT")]
    constraint_info: Option<String>,
    /// Where the data may be processed: ISO 3166-1 alpha-2 code, EU or EEA (repeatable; none:
    /// anywhere not excluded).
    #[arg(long, value_name = "CODE", value_parser = terms::jurisdiction)]
    jurisdiction: Vec<String>,
    /// Where it must not be processed (repeatable).
    #[arg(long, value_name = "CODE", value_parser = terms::jurisdiction)]
    exclude_jurisdiction: Vec<String>,
    /// When these terms expire: YYYY-MM-DD (end of that day, UTC) or RFC 3339.
    #[arg(long, value_name = "DATE", value_parser = terms::expiry)]
    expires: String,
    /// The EVM address rewards for this data are paid to.
    #[arg(long, value_name = "0x…", value_parser = terms::reward_address)]
    reward_address: Option<String>,
    /// Withhold the data: the statement names only a salted commitment to the file, never its
    /// digest. The salt is written to --salt-out (mode 0600); give it to whoever must check
    /// the data (a trainer's `salt:`, a verifier's `--reveal`), to nobody else.
    #[arg(long)]
    salted: bool,
    /// Where to write the salt (default DATA.salt; never replaced).
    #[arg(long, value_name = "FILE", requires = "salted")]
    salt_out: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    schema: &'static str,
    contribution: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    salt: Option<PathBuf>,
    owner: String,
    rows: u64,
    columns: usize,
    sha256: String,
}

fn beside(data: &Path, suffix: &str) -> PathBuf {
    let mut s = data.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn contribute_cmd(args: &ContributeArgs) -> anyhow::Result<u8> {
    let uses = Uses {
        ai_training: args.ai_training,
        ai_inference: args.ai_inference,
        data_mining: args.data_mining,
    };
    let constrained =
        [uses.ai_training, uses.ai_inference, uses.data_mining].contains(&Permission::Constrained);
    if constrained && args.constraint_info.is_none() {
        bail!("a use is `constrained`: say what the constraints are with --constraint-info");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| beside(&args.data, ".contribution.json"));
    let salt_out = args.salted.then(|| {
        args.salt_out
            .clone()
            .unwrap_or_else(|| beside(&args.data, ".salt"))
    });
    for p in std::iter::once(&out).chain(salt_out.as_ref()) {
        if std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "{} already exists; not replacing it (pass another path)",
                p.display()
            );
        }
    }
    let key = SecretKey::read(&args.key)?;
    let bytes = auditai::fsio::read_own(&args.data, contribution::MAX_DATA_BYTES)
        .with_context(|| args.data.display().to_string())?;
    let facts = contribution::describe(&args.data, &bytes)?;
    let name = args
        .data
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().to_string());
    let terms = Terms {
        license: args.license.clone(),
        legal_basis: args.legal_basis.clone(),
        permissions: uses,
        constraint_info: args.constraint_info.clone(),
        jurisdictions: args.jurisdiction.clone(),
        excluded_jurisdictions: args.exclude_jurisdiction.clone(),
        expires: args.expires.clone(),
        reward_address: args.reward_address.clone(),
    };
    let (rows, columns) = (facts.rows, facts.columns.len());
    let salt = args.salted.then(contribution::new_salt).transpose()?;
    let owned = (args.owner_name.clone(), terms);
    let envelope = contribution::create(&name, facts, &bytes, owned, &key, salt.as_ref());
    if let (Some(s), Some(p)) = (&salt, &salt_out) {
        contribution::write_salt(p, s)?;
    }
    auditai::fsio::write_atomic(&out, &envelope).with_context(|| out.display().to_string())?;
    let owner = key.public().keyid;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        super::write_json(
            &mut stdout,
            &Output {
                schema: "auditai.contribute/v1",
                contribution: out,
                salt: salt_out,
                owner,
                rows,
                columns,
                sha256: auditai::hash::sha256_hex(&envelope),
            },
        )?;
    } else {
        writeln!(
            stdout,
            "wrote {}: the terms of {} ({rows} rows, {columns} columns), signed by owner {owner}",
            out.display(),
            args.data.display()
        )?;
        if let Some(p) = &salt_out {
            writeln!(
                stdout,
                "the data is withheld: the salt is in {} (mode 0600); give it only to those who must check the data",
                p.display()
            )?;
        }
    }
    stdout.flush()?;
    Ok(EXIT_OK)
}
