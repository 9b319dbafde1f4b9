//! Issuing rewards for a run read through the gate: who is owed what (the sources' reward
//! addresses and values from the manifest, the run's signer, the passed verdicts about this very
//! manifest), the tree dump and the signed statement of its root, both written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;

use super::{Party, Rewards, RewardsError, RunRef, Source, Split, tree};
use crate::sign::{Envelope, SecretKey};
use crate::trust::{SignedRun, SignedStatement};
use crate::vsa::{VerdictStatement, VerificationResult};

/// Where the values of the data sources come from.
#[derive(Debug, Clone)]
pub enum Values {
    /// The first-order in-run value each source's manifest record carries.
    InRun,
    /// Group Shapley values computed by retraining (one per source, in order).
    Shapley(Vec<f64>),
}

/// What to issue.
pub struct Issue<'a> {
    /// The run.
    pub run: &'a SignedRun,
    /// The sources' values.
    pub values: Values,
    /// The pool and shares.
    pub split: Split,
    /// Reward addresses of signers, by key id (`--address KEYID=0x…`).
    pub addresses: &'a BTreeMap<String, Address>,
    /// Verdicts about the run whose signers share the verifier part (signatures checked).
    pub verdicts: &'a [SignedStatement<VerdictStatement>],
    /// Where the dump goes; the statement is written beside it (`.intoto.json`).
    pub out: &'a Path,
    /// The issuer's signing key.
    pub key: &'a SecretKey,
}

/// What was written.
#[derive(Debug)]
pub struct Issued {
    /// The dump.
    pub dump: tree::Dump,
    /// The statement's path.
    pub statement: PathBuf,
    /// Every party.
    pub parties: Vec<Party>,
}

/// The statement's path beside the dump `out`: `rewards.json` → `rewards.intoto.json`.
pub fn statement_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "rewards".into(), |s| s.to_string_lossy().to_string());
    out.with_file_name(format!("{stem}.intoto.json"))
}

fn invalid(m: impl Into<String>) -> RewardsError {
    RewardsError::Invalid(m.into())
}

/// The data sources with their owners' addresses and values.
pub fn sources(run: &SignedRun, values: &Values) -> Result<Vec<Source>, RewardsError> {
    let recorded = run
        .statement()
        .predicate
        .auditai
        .as_ref()
        .map(|e| e.sources.clone())
        .unwrap_or_default();
    if recorded.is_empty() {
        return Err(invalid(
            "the run records no data sources (a spec with data.sources)",
        ));
    }
    recorded
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let address = s
                .contribution
                .as_ref()
                .and_then(|c| c.terms.reward_address.as_deref())
                .ok_or_else(|| {
                    invalid(format!(
                        "source {} has no reward address in its contribution",
                        s.name
                    ))
                })?
                .parse::<Address>()
                .map_err(|_| invalid(format!("source {}: a malformed reward address", s.name)))?;
            let value = match values {
                Values::InRun => s.credit.ok_or_else(|| {
                    invalid(format!(
                        "source {} has no measured value (the run needs two or more sources); use --value shapley",
                        s.name
                    ))
                })?,
                Values::Shapley(v) => v.get(i).copied().unwrap_or(0.0),
            };
            Ok(Source {
                name: s.name.clone(),
                address,
                value,
            })
        })
        .collect()
}

/// Split, build the tree and write the dump and the signed statement.
pub fn issue(i: Issue<'_>) -> Result<Issued, RewardsError> {
    let sources = sources(i.run, &i.values)?;
    let address_of = |keyid: &str, what: &str| {
        i.addresses.get(keyid).copied().ok_or_else(|| {
            invalid(format!(
                "no reward address for {what} {keyid}: pass --address {keyid}=0x…"
            ))
        })
    };
    let compute = if i.split.compute_share.is_zero() {
        None
    } else {
        let keyid = i
            .run
            .signers()
            .first()
            .map(|k| k.keyid.clone())
            .ok_or_else(|| {
                invalid("a compute share needs the run's signature checked (--key or --policy)")
            })?;
        Some((keyid.clone(), address_of(&keyid, "the run's signer")?))
    };
    let manifest_sha = i.run.sha256_hex();
    let mut verifiers: Vec<(String, Address)> = Vec::new();
    for v in i.verdicts {
        let about = v.statement.predicate.input_attestations.iter().any(|a| {
            a.digest
                .get("sha256")
                .is_some_and(|d| crate::hash::hex_eq(d, &manifest_sha))
        });
        if !about || v.statement.predicate.verification_result != VerificationResult::Passed {
            return Err(invalid(format!(
                "{} is not a passed verdict about this run's manifest",
                v.path.display()
            )));
        }
        let Some(k) = v.signers.first() else {
            return Err(invalid(format!(
                "{}: no trusted signature",
                v.path.display()
            )));
        };
        if !verifiers.iter().any(|(id, _)| id == &k.keyid) {
            verifiers.push((k.keyid.clone(), address_of(&k.keyid, "the verdict signer")?));
        }
    }
    let compute_ref = compute.as_ref().map(|(k, a)| (k.as_str(), *a));
    let (parties, leaves) = super::allocate(&i.split, &sources, compute_ref, &verifiers)?;
    if leaves.is_empty() {
        return Err(invalid("nothing to pay: every amount is zero"));
    }
    let dump = tree::build(&leaves);
    let dump_bytes = serde_json::to_vec_pretty(&dump).unwrap_or_default();
    let statement_path = statement_path(i.out);
    let out_dir = crate::run_dir::of_manifest(i.out);
    let rewards = Rewards {
        run: RunRef {
            manifest: crate::fsio::relative_to(out_dir, i.run.path()),
            sha256: manifest_sha,
        },
        root: dump.root().to_string(),
        pool: i.split.pool.to_string(),
        compute_share: fixed(i.split.compute_share),
        verifier_share: fixed(i.split.verifier_share),
        value_method: match i.values {
            Values::InRun => "in-run",
            Values::Shapley(_) => "shapley",
        }
        .into(),
        parties: parties.clone(),
        verdicts: i
            .verdicts
            .iter()
            .map(|v| crate::hash::sha256_hex(&v.bytes))
            .collect(),
        issued_on: crate::manifest::now_rfc3339(),
    };
    let name = i.out.file_name().map_or_else(
        || "rewards.json".into(),
        |n| n.to_string_lossy().to_string(),
    );
    let statement = super::statement(&name, &dump_bytes, rewards);
    let payload = serde_json::to_vec(&statement).unwrap_or_default();
    let mut envelope = Envelope::new(crate::sign::IN_TOTO_PAYLOAD_TYPE, &payload);
    envelope.sign(i.key);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| invalid(format!("{}: {e}", p.display()))
    };
    crate::fsio::write_atomic(i.out, &dump_bytes).map_err(io(i.out))?;
    crate::fsio::write_atomic(&statement_path, &envelope.to_bytes())
        .map_err(io(&statement_path))?;
    Ok(Issued {
        dump,
        statement: statement_path,
        parties,
    })
}

/// A 1e18 fixed-point share as a decimal.
fn fixed(v: alloy_primitives::U256) -> String {
    let s = format!("{v:0>19}");
    let (int, frac) = s.split_at(s.len() - 18);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_print_as_decimals() {
        let p = |s| super::fixed(super::super::parse_share(s).unwrap());
        assert_eq!(p("0.1"), "0.1");
        assert_eq!(p("1"), "1");
        assert_eq!(p("0"), "0");
        assert_eq!(p("0.025"), "0.025");
    }
}
