//! Trust policies: which public keys may sign, how many must, and which names are required.
//!
//! ```yaml
//! version: 1
//! threshold: 2            # valid signatures from listed signers needed (default 1)
//! signers:
//!   - name: ml-team
//!     key: keys/ml-team.pub   # SPKI PEM file, relative to the policy file
//!   - name: data-provider
//!     key: |                  # or the PEM text itself
//!       -----BEGIN PUBLIC KEY-----
//!       ...
//! required: [ml-team]     # names that must have signed (default none)
//! verifiers:              # who may sign verdicts (`verify --attest`, `audit --attest`)
//!   - name: auditor
//!     key: keys/auditor.pub
//! verdicts:               # verdicts the manifest needs next to it (default none)
//!   - kind: audit         # `audit`, `verify` or `dispute` (a dispute verdict that does not
//!                         # find this manifest's run wrong)
//!     by: [auditor]       # signed by one of these verifiers
//!     min_segments: 3     # audits: at least this many replayed segments, all matching
//!     challenge: anchor   # audits: the challenge came from the chain (default: any)
//!     bitwise: true       # audits: every segment compared bitwise (default: false)
//! contributions:          # data sources (`run --policy`, `verify`)
//!   required: true        # every data source needs a contribution statement
//!   licenses: [CC-BY-4.0, CC0-1.0]   # SPDX ids a source's licence must be satisfiable with
//! ```
//!
//! A policy with `contributions` may list no signers (a run's policy about its data).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sign::PublicKey;

/// Errors reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read policy: {source}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The policy is malformed.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default)]
    threshold: Option<usize>,
    signers: Vec<RawSigner>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    verifiers: Vec<RawSigner>,
    #[serde(default)]
    verdicts: Vec<RawVerdict>,
    #[serde(default)]
    contributions: Option<ContributionPolicy>,
}

/// What a policy demands of a run's data sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionPolicy {
    /// Every data source needs a contribution statement.
    #[serde(default)]
    pub required: bool,
    /// The licences (SPDX ids, `LicenseRef-…`) a source's licence expression must be
    /// satisfiable with; absent: any.
    #[serde(default)]
    pub licenses: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerdict {
    kind: VerdictKind,
    by: Vec<String>,
    #[serde(default)]
    min_segments: usize,
    #[serde(default)]
    challenge: ChallengeRequirement,
    #[serde(default)]
    bitwise: bool,
}

/// Which command signed a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    /// `auditai verify --attest`.
    Verify,
    /// `auditai audit --attest`.
    Audit,
    /// `auditai dispute judge`: the manifest was a party and not found wrong.
    Dispute,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerdictKind::Verify => "verify",
            VerdictKind::Audit => "audit",
            VerdictKind::Dispute => "dispute",
        })
    }
}

/// Where an audit verdict's challenge must come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeRequirement {
    /// Any source (explicit, random, anchor).
    #[default]
    Any,
    /// The block after the manifest's anchor, read from the chain.
    Anchor,
}

/// A verdict the policy requires next to the manifest.
#[derive(Debug, Clone)]
pub struct VerdictRequirement {
    /// Which command signed it.
    pub kind: VerdictKind,
    /// The verifiers, one of whom must have signed it.
    pub by: Vec<Signer>,
    /// For audits: the fewest replayed segments (all must match).
    pub min_segments: usize,
    /// For audits: where the challenge must come from.
    pub challenge: ChallengeRequirement,
    /// For audits: every replayed segment compared bitwise, none within tolerances.
    pub bitwise: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    name: String,
    key: String,
}

/// A named trusted key.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The signer's name.
    pub name: String,
    /// Their public key.
    pub key: PublicKey,
}

/// The first licence a contribution policy lists that is not an SPDX id or `LicenseRef-…`.
fn unknown_license(c: Option<&ContributionPolicy>) -> Option<&str> {
    c?.licenses
        .as_ref()?
        .iter()
        .find(|id| spdx::license_id(id).is_none() && !id.starts_with("LicenseRef-"))
        .map(String::as_str)
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Trusted signers.
    pub signers: Vec<Signer>,
    /// Valid signatures from distinct listed signers required.
    pub threshold: usize,
    /// Names that must be among the signers.
    pub required: Vec<String>,
    /// Verdicts required next to the manifest.
    pub verdicts: Vec<VerdictRequirement>,
    /// What the run's data sources need.
    pub contributions: Option<ContributionPolicy>,
}

impl Policy {
    /// Read and validate a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes =
            crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
                PolicyError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Policy::parse(&String::from_utf8_lossy(&bytes), path)
    }

    /// Parse and validate a policy's text; `path` names it in errors, and key files it names are
    /// read relative to its directory.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawPolicy =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.without_snippet().to_string()))?;
        if raw.version != 1 {
            return Err(invalid(format!(
                "unsupported policy version {}",
                raw.version
            )));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let read_key = |s: &RawSigner| {
            if s.key.contains("-----BEGIN") {
                PublicKey::from_pem(&s.key, &format!("policy signer {}", s.name))
            } else {
                PublicKey::read(&base.join(&s.key))
            }
            .map_err(|e| invalid(format!("signer `{}`: {e}", s.name)))
        };
        let mut verifiers: Vec<Signer> = Vec::new();
        for v in &raw.verifiers {
            verifiers.push(Signer {
                name: v.name.clone(),
                key: read_key(v)?,
            });
        }
        let mut verdicts = Vec::new();
        for v in raw.verdicts {
            if v.kind != VerdictKind::Audit
                && (v.min_segments > 0 || v.bitwise || v.challenge != ChallengeRequirement::Any)
            {
                return Err(invalid(
                    "min_segments, challenge and bitwise apply to `kind: audit` verdicts".into(),
                ));
            }
            let mut by = Vec::new();
            for name in &v.by {
                let s = verifiers.iter().find(|s| &s.name == name).ok_or_else(|| {
                    invalid(format!("verdict signer `{name}` is not in verifiers"))
                })?;
                by.push(s.clone());
            }
            if by.is_empty() {
                return Err(invalid("a required verdict needs `by`".to_string()));
            }
            verdicts.push(VerdictRequirement {
                kind: v.kind,
                by,
                min_segments: v.min_segments,
                challenge: v.challenge,
                bitwise: v.bitwise,
            });
        }
        let mut signers = Vec::new();
        for s in raw.signers {
            let key = if s.key.contains("-----BEGIN") {
                PublicKey::from_pem(&s.key, &format!("policy signer {}", s.name))
            } else {
                PublicKey::read(&base.join(&s.key))
            }
            .map_err(|e| invalid(format!("signer `{}`: {e}", s.name)))?;
            if signers.iter().any(|x: &Signer| x.name == s.name) {
                return Err(invalid(format!("signer `{}` is listed twice", s.name)));
            }
            signers.push(Signer { name: s.name, key });
        }
        if signers.is_empty() && raw.contributions.is_none() {
            return Err(invalid("the policy lists no signers".to_string()));
        }
        if let Some(bad) = unknown_license(raw.contributions.as_ref()) {
            return Err(invalid(format!(
                "contributions.licenses: `{bad}` is not an SPDX licence id"
            )));
        }
        for r in &raw.required {
            if !signers.iter().any(|s| &s.name == r) {
                return Err(invalid(format!("required signer `{r}` is not in signers")));
            }
        }
        let threshold = raw.threshold.unwrap_or(1);
        if !signers.is_empty() && (threshold == 0 || threshold > signers.len()) {
            return Err(invalid(format!(
                "threshold must be between 1 and the number of signers ({}), got {threshold}",
                signers.len()
            )));
        }
        Ok(Policy {
            signers,
            threshold,
            required: raw.required,
            verdicts,
            contributions: raw.contributions,
        })
    }
}
