//! Contribution statements: a data owner's signed terms for one data file (`auditai
//! contribute`), and the checks a run and a verifier make against them.
//!
//! A contribution is an in-toto Statement v1 in a DSSE envelope signed by the owner, whose
//! predicate ([`CONTRIBUTION_PREDICATE`]) names the owner's public key, the data's row count and
//! column schema, an SPDX licence, a DPV legal basis, the CAWG permissions, the jurisdictions
//! where the data may be processed, an expiry and a reward address. Its subject is the data file:
//! by sha256 and blake3, or, when withheld, only by a salted commitment (keyed BLAKE3 with a
//! 32-byte salt the owner keeps). Owns the format, the salt file and the checks; never prints,
//! never writes anything but a new statement and a new salt file.

pub mod admit;
pub mod terms;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sign::{self, Envelope, PublicKey, SecretKey};
pub use admit::{Admitted, RunTerms, admit};
pub use terms::{Permission, Uses};

/// The predicate type of a contribution statement.
pub const CONTRIBUTION_PREDICATE: &str = "https://auditai.dev/contribution/v1";
/// The digest name of a withheld file's salted commitment: keyed BLAKE3, the salt as key.
pub const SALTED_DIGEST: &str = "blake3Salted";
/// Bytes of a salt.
pub const SALT_LEN: usize = 32;
/// The largest data file `contribute` reads (as training does).
pub const MAX_DATA_BYTES: u64 = crate::data::MAX_DATA_BYTES;

/// Errors from making, reading and checking contributions.
#[derive(Debug, thiserror::Error)]
pub enum ContributionError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a contribution statement, or a malformed one.
    #[error("{}: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A term given on the command line is not in its vocabulary.
    #[error("{0}")]
    Term(String),
    /// The statement does not permit what is asked, or is not for this data.
    #[error("{}: {refusal}", path.display())]
    Refused {
        /// The contribution file.
        path: PathBuf,
        /// Which term refuses.
        refusal: Refusal,
    },
    /// A key could not be used.
    #[error(transparent)]
    Key(#[from] sign::SignError),
    /// A data source is refused: the error names the source, then the term.
    #[error("data source {}: {inner}", source_file.display())]
    Source {
        /// The data file.
        source_file: PathBuf,
        /// Why.
        inner: Box<ContributionError>,
    },
}

/// Why a contribution does not admit a run. Each names the term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The source has no contribution statement and the policy requires one.
    #[error(
        "has no contribution statement (`contribution:` in data.sources), and the policy requires one"
    )]
    Missing,
    /// No valid signature by the owner the statement declares.
    #[error("not signed by its declared owner {keyid}")]
    NotSignedByOwner {
        /// The declared owner's key id.
        keyid: String,
    },
    /// The spec names another owner than the statement.
    #[error("signed by owner {found}, but the spec expects owner {expected}")]
    OtherOwner {
        /// The statement's owner key id.
        found: String,
        /// The key id the spec names.
        expected: String,
    },
    /// The statement had expired when the run started.
    #[error("expired at {expires} (the run started at {at})")]
    Expired {
        /// The expiry.
        expires: String,
        /// The run's time.
        at: String,
    },
    /// The data file is not the one the statement names.
    #[error("is for other data: {why}")]
    OtherData {
        /// What differs.
        why: String,
    },
    /// A withheld file needs its salt to be checked.
    #[error(
        "the data is withheld behind a salted commitment; give its salt (`salt:` in the spec, or `--reveal`)"
    )]
    NeedsSalt,
    /// Training is not allowed.
    #[error("cawg.ai_training is notAllowed")]
    TrainingNotAllowed,
    /// The statement limits jurisdictions and the run declares none.
    #[error(
        "limits where it may be processed ({allowed}); the run declares no jurisdiction (--jurisdiction)"
    )]
    NoJurisdiction {
        /// The allowed list.
        allowed: String,
    },
    /// The run's jurisdiction is not allowed.
    #[error("does not permit processing in {run} (allowed: {allowed})")]
    Jurisdiction {
        /// The run's jurisdiction.
        run: String,
        /// What the statement allows or excludes.
        allowed: String,
    },
    /// The licence is not one the policy accepts.
    #[error("licence {license} is not accepted by the policy (accepted: {accepted})")]
    License {
        /// The statement's licence.
        license: String,
        /// The policy's list.
        accepted: String,
    },
}

/// One column of the contributed data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnFact {
    /// The header name.
    pub name: String,
    /// `numeric` when every present cell is a number, else `text`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// What the statement says about the data itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataFacts {
    /// Data rows (header excluded).
    pub rows: u64,
    /// The columns, in file order.
    pub columns: Vec<ColumnFact>,
    /// Whether the subject carries only a salted commitment.
    pub withheld: bool,
}

/// Who contributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key id of `public_key`.
    pub keyid: String,
    /// The owner's ed25519 public key (SPKI PEM); the statement must be signed by it.
    pub public_key: String,
}

/// The terms an owner states: what `auditai contribute` signs beside the owner and the data
/// facts, and what a run's manifest records of a contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terms {
    /// SPDX licence expression.
    pub license: String,
    /// W3C DPV legal basis.
    pub legal_basis: String,
    /// CAWG permissions.
    pub permissions: Uses,
    /// What `constrained` means, in the owner's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_info: Option<String>,
    /// Where the data may be processed (empty: anywhere not excluded).
    #[serde(default)]
    pub jurisdictions: Vec<String>,
    /// Where it must not be processed.
    #[serde(default)]
    pub excluded_jurisdictions: Vec<String>,
    /// RFC 3339 expiry of these terms.
    pub expires: String,
    /// EVM address for rewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_address: Option<String>,
}

impl Terms {
    /// Where the data may be processed, in words: `EU, CH except FR`, `anywhere except US`.
    pub fn places(&self) -> String {
        let mut s = if self.jurisdictions.is_empty() {
            "anywhere".to_string()
        } else {
            self.jurisdictions.join(", ")
        };
        if !self.excluded_jurisdictions.is_empty() {
            s.push_str(&format!(
                " except {}",
                self.excluded_jurisdictions.join(", ")
            ));
        }
        s
    }
}

/// The predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    /// The owner.
    pub owner: Owner,
    /// The data.
    pub data: DataFacts,
    /// The terms.
    #[serde(flatten)]
    pub terms: Terms,
    /// RFC 3339 time of signing.
    pub issued_on: String,
}

/// The subject: the data file by digest or commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The file's name.
    pub name: String,
    /// `sha256` and `blake3`, or [`SALTED_DIGEST`] alone.
    pub digest: BTreeMap<String, String>,
}

/// The statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `https://in-toto.io/Statement/v1`.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The data file.
    pub subject: Vec<Subject>,
    /// [`CONTRIBUTION_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The terms.
    pub predicate: Contribution,
}

impl Statement {
    /// The one subject.
    pub fn data(&self) -> Option<&Subject> {
        self.subject.first()
    }

    /// The salted commitment, when the data is withheld.
    pub fn commitment(&self) -> Option<&str> {
        self.data()?.digest.get(SALTED_DIGEST).map(String::as_str)
    }

    /// The owner's display: name and key id.
    pub fn owner_label(&self) -> String {
        let o = &self.predicate.owner;
        match &o.name {
            Some(n) => format!("{n} ({})", short(&o.keyid)),
            None => short(&o.keyid).to_string(),
        }
    }
}

fn short(keyid: &str) -> String {
    keyid.chars().take(16).collect()
}

/// The salted commitment to `bytes`: keyed BLAKE3 with the salt as key, hex.
pub fn salted(salt: &[u8; SALT_LEN], bytes: &[u8]) -> String {
    blake3::keyed_hash(salt, bytes).to_hex().to_string()
}

/// A fresh salt from the operating system.
pub fn new_salt() -> Result<[u8; SALT_LEN], ContributionError> {
    let mut s = [0u8; SALT_LEN];
    getrandom::fill(&mut s)
        .map_err(|e| ContributionError::Key(sign::SignError::Random(e.to_string())))?;
    Ok(s)
}

/// Write a salt file (64 hex digits and a newline, mode 0600); refuses an existing file.
pub fn write_salt(path: &Path, salt: &[u8; SALT_LEN]) -> Result<(), ContributionError> {
    sign::write_new(path, format!("{}\n", hex::encode(salt)).as_bytes(), 0o600)?;
    Ok(())
}

/// Read a salt file.
pub fn read_salt(path: &Path) -> Result<[u8; SALT_LEN], ContributionError> {
    let bytes = crate::fsio::read_bounded(path, 1024).map_err(|source| ContributionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut salt = [0u8; SALT_LEN];
    hex::decode_to_slice(String::from_utf8_lossy(&bytes).trim(), &mut salt).map_err(|_| {
        ContributionError::Malformed {
            path: path.to_path_buf(),
            why: format!("not a salt ({} hex digits)", SALT_LEN * 2),
        }
    })?;
    Ok(salt)
}

/// Salts given to a verifier (`--reveal SOURCE=SALT_FILE`), by source name.
#[derive(Debug, Clone, Default)]
pub struct Reveal(Vec<(String, [u8; SALT_LEN])>);

impl Reveal {
    /// Read `SOURCE=SALT_FILE` pairs.
    pub fn parse(pairs: &[String]) -> Result<Reveal, ContributionError> {
        let mut out = Vec::new();
        for p in pairs {
            let Some((name, file)) = p
                .split_once('=')
                .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            else {
                return Err(ContributionError::Term(format!(
                    "--reveal `{p}`: expected SOURCE=SALT_FILE"
                )));
            };
            out.push((name.to_string(), read_salt(Path::new(file))?));
        }
        Ok(Reveal(out))
    }

    /// The salt for the source recorded as `name` (given by that name or its last components).
    pub fn salt_for(&self, name: &str) -> Option<&[u8; SALT_LEN]> {
        self.0
            .iter()
            .find(|(given, _)| name == given || name.ends_with(&format!("/{given}")))
            .map(|(_, s)| s)
    }
}

/// Rows and column schema of a CSV's bytes (delimiter sniffed, the default missing-value texts).
pub fn describe(path: &Path, bytes: &[u8]) -> Result<DataFacts, ContributionError> {
    let dialect = crate::data::Dialect {
        delimiter: crate::data::table::sniff(bytes),
        missing: crate::spec::DEFAULT_MISSING
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
    };
    let malformed = |why: String| ContributionError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let (mut reader, meter) = crate::data::table::reader(bytes, &dialect);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| malformed(crate::data::table::csv_message(&e)))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut numeric = vec![true; header.len()];
    let mut rows = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(malformed(format!(
                    "line {}: {}",
                    rows + 2,
                    crate::data::table::csv_message(&e)
                )));
            }
        }
        meter.next_record();
        rows += 1;
        for (i, n) in numeric.iter_mut().enumerate() {
            let cell = crate::data::table::cell(&rec, i);
            if *n && !dialect.is_missing(cell) && cell.trim().parse::<f64>().is_err() {
                *n = false;
            }
        }
    }
    let columns = header
        .into_iter()
        .zip(numeric)
        .map(|(name, n)| ColumnFact {
            name,
            kind: if n { "numeric" } else { "text" }.to_string(),
        })
        .collect();
    Ok(DataFacts {
        rows,
        columns,
        withheld: false,
    })
}

/// Make and sign a contribution for the data file `name` with content `bytes`; with `salt`, the
/// subject is the salted commitment alone. Returns the envelope's bytes.
pub fn create(
    name: &str,
    mut facts: DataFacts,
    bytes: &[u8],
    (owner_name, terms): (Option<String>, Terms),
    key: &SecretKey,
    salt: Option<&[u8; SALT_LEN]>,
) -> Vec<u8> {
    let mut digest = BTreeMap::new();
    match salt {
        Some(s) => {
            digest.insert(SALTED_DIGEST.to_string(), salted(s, bytes));
        }
        None => {
            let d = crate::hash::bytes_digest(bytes);
            digest.insert("blake3".to_string(), d.blake3.hex());
            digest.insert("sha256".to_string(), crate::hash::sha256_hex(bytes));
        }
    }
    facts.withheld = salt.is_some();
    let public = key.public();
    let statement = Statement {
        statement_type: crate::manifest::STATEMENT_TYPE.to_string(),
        subject: vec![Subject {
            name: name.to_string(),
            digest,
        }],
        predicate_type: CONTRIBUTION_PREDICATE.to_string(),
        predicate: Contribution {
            owner: Owner {
                name: owner_name,
                keyid: public.keyid.clone(),
                public_key: public.to_pem(),
            },
            data: facts,
            terms,
            issued_on: crate::manifest::now_rfc3339(),
        },
    };
    let payload = serde_json::to_vec(&statement).unwrap_or_default();
    let mut envelope = Envelope::new(sign::IN_TOTO_PAYLOAD_TYPE, &payload);
    envelope.sign(key);
    envelope.to_bytes()
}

/// A contribution read from disk, its owner's signature checked.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Where it was read.
    pub path: PathBuf,
    /// The statement.
    pub statement: Statement,
    /// The envelope's exact bytes.
    pub bytes: Vec<u8>,
    /// The owner's key, whose signature is valid.
    pub owner: PublicKey,
}

impl Opened {
    /// sha256 of the envelope's bytes.
    pub fn sha256(&self) -> String {
        crate::hash::sha256_hex(&self.bytes)
    }

    /// The terms as a run's manifest records them, the copy being at `path` in the run
    /// directory.
    pub fn record(&self, path: &str) -> crate::manifest::ContributionRecord {
        let p = &self.statement.predicate;
        crate::manifest::ContributionRecord {
            path: path.to_string(),
            sha256: self.sha256(),
            owner: p.owner.keyid.clone(),
            owner_name: p.owner.name.clone(),
            terms: p.terms.clone(),
        }
    }

    fn refuse(&self, refusal: Refusal) -> ContributionError {
        ContributionError::Refused {
            path: self.path.clone(),
            refusal,
        }
    }
}

/// Read a contribution and check that its declared owner signed it.
pub fn open(path: &Path) -> Result<Opened, ContributionError> {
    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
        ContributionError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    from_bytes(path, bytes)
}

/// [`open`] over bytes already read.
pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Opened, ContributionError> {
    let malformed = |why: String| ContributionError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let (envelope, payload, value) =
        crate::manifest::open_envelope(&bytes).map_err(|e| malformed(e.to_string()))?;
    let pt = value.get("predicateType").and_then(|v| v.as_str());
    if pt != Some(CONTRIBUTION_PREDICATE) {
        return Err(malformed(format!(
            "not a contribution statement (predicate type {})",
            pt.unwrap_or("missing")
        )));
    }
    let statement: Statement = serde_json::from_value(value)
        .map_err(|e| malformed(format!("not a contribution statement: {e}")))?;
    if statement.subject.len() != 1 {
        return Err(malformed(
            "a contribution names exactly one data file".into(),
        ));
    }
    let o = &statement.predicate.owner;
    let owner = PublicKey::from_pem(&o.public_key, "the contribution's owner key")
        .map_err(|e| malformed(e.to_string()))?;
    if owner.keyid != o.keyid {
        return Err(malformed(format!(
            "the owner's key id {} is not that of its public key ({})",
            o.keyid, owner.keyid
        )));
    }
    let signed = envelope.signatures.iter().any(|s| {
        matches!(
            sign::check_signature(&envelope, &payload, s, std::slice::from_ref(&owner)),
            sign::SigCheck::Valid(_)
        )
    });
    let opened = Opened {
        path: path.to_path_buf(),
        statement,
        bytes,
        owner,
    };
    if !signed {
        let keyid = opened.owner.keyid.clone();
        return Err(opened.refuse(Refusal::NotSignedByOwner { keyid }));
    }
    Ok(opened)
}

/// What a run asks of a contribution.
#[derive(Debug, Clone, Default)]
pub struct Use<'a> {
    /// The run's declared jurisdiction.
    pub jurisdiction: Option<&'a str>,
    /// RFC 3339 time of the run.
    pub at: String,
    /// The owner key the spec pins, when it does.
    pub owner: Option<&'a PublicKey>,
    /// Licences a policy accepts (`None`: any).
    pub licenses: Option<&'a [String]>,
}

impl Opened {
    /// Whether this contribution is for `bytes` (with `salt` when withheld).
    pub fn check_data(
        &self,
        bytes: &[u8],
        salt: Option<&[u8; SALT_LEN]>,
    ) -> Result<(), ContributionError> {
        let s = self.statement.data().map(|d| &d.digest);
        let other = |why: String| self.refuse(Refusal::OtherData { why });
        if let Some(c) = self.statement.commitment() {
            let salt = salt.ok_or_else(|| self.refuse(Refusal::NeedsSalt))?;
            return if crate::hash::hex_eq(&salted(salt, bytes), c) {
                Ok(())
            } else {
                Err(other(
                    "the salted commitment does not match this file with this salt".into(),
                ))
            };
        }
        let want = s.and_then(|d| d.get("blake3")).cloned().unwrap_or_default();
        let got = crate::hash::Digest::of(bytes).hex();
        if crate::hash::hex_eq(&got, &want) {
            Ok(())
        } else {
            Err(other(format!(
                "the file's blake3 is {got}, the contribution names {want}"
            )))
        }
    }

    /// Whether the terms admit training under `usage`.
    pub fn check_use(&self, usage: &Use<'_>) -> Result<(), ContributionError> {
        let p = &self.statement.predicate;
        if let Some(k) = usage.owner.filter(|k| k.keyid != self.owner.keyid) {
            return Err(self.refuse(Refusal::OtherOwner {
                found: self.owner.keyid.clone(),
                expected: k.keyid.clone(),
            }));
        }
        if terms::expired(&p.terms.expires, &usage.at) {
            return Err(self.refuse(Refusal::Expired {
                expires: p.terms.expires.clone(),
                at: usage.at.clone(),
            }));
        }
        if !p.terms.permissions.ai_training.permits() {
            return Err(self.refuse(Refusal::TrainingNotAllowed));
        }
        self.check_jurisdiction(usage.jurisdiction)?;
        if let Some(accepted) = usage.licenses
            && !terms::license_within(&p.terms.license, accepted)
        {
            return Err(self.refuse(Refusal::License {
                license: p.terms.license.clone(),
                accepted: accepted.join(", "),
            }));
        }
        Ok(())
    }

    fn check_jurisdiction(&self, run: Option<&str>) -> Result<(), ContributionError> {
        let p = &self.statement.predicate;
        let describe = || p.terms.places();
        let Some(run) = run else {
            if p.terms.jurisdictions.is_empty() && p.terms.excluded_jurisdictions.is_empty() {
                return Ok(());
            }
            return Err(self.refuse(Refusal::NoJurisdiction {
                allowed: describe(),
            }));
        };
        let excluded = p
            .terms
            .excluded_jurisdictions
            .iter()
            .any(|a| terms::within(run, a));
        let allowed = p.terms.jurisdictions.is_empty()
            || p.terms.jurisdictions.iter().any(|a| terms::within(run, a));
        if excluded || !allowed {
            return Err(self.refuse(Refusal::Jurisdiction {
                run: run.to_string(),
                allowed: describe(),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
