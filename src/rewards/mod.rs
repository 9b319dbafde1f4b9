//! Rewards: a pool split between a run's data owners (by measured value), its compute provider
//! (the manifest's signer) and the signers of verdicts about it, written as an OpenZeppelin
//! `StandardMerkleTree` dump ([`tree`]) that any Merkle distributor pays out, and a signed
//! statement binding the tree's root to the run's manifest.
//!
//! Arithmetic is on `uint256` integers: each share is `floor(pool · share)`, the data owners'
//! part is split by weights `max(value, 0) / Σ max(value, 0)` rounded down to 1e-18, and what
//! rounding leaves goes to the owner with the largest value (the first in source order on a
//! tie), so the amounts add up to the pool exactly. Recipients with the same address are paid
//! once (their amounts added); nothing is paid twice, nothing below one unit is listed.

pub mod issue;
#[cfg(feature = "train")]
pub mod shapley;
pub mod tree;

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

/// The predicate type of a reward statement.
pub const REWARDS_PREDICATE: &str = "https://auditai.dev/rewards/v1";

/// `1e18`: shares and weights are fixed-point with 18 decimals.
fn unit() -> U256 {
    U256::from(10u64).pow(U256::from(18u64))
}

/// Errors from splitting a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardsError {
    /// A share or amount cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// A share between 0 and 1 as a decimal (`0.1`, `0.025`), at most 18 decimals.
pub fn parse_share(s: &str) -> Result<U256, RewardsError> {
    let bad = || RewardsError::Invalid(format!("`{s}` is not a share between 0 and 1 (e.g. 0.1)"));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > 18
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits = format!("{int}{frac:0<18}");
    let v: U256 = digits.trim_start_matches('0').parse().unwrap_or(U256::ZERO);
    if v > unit() {
        return Err(bad());
    }
    Ok(v)
}

/// A pool amount: a non-negative integer in the token's smallest unit.
pub fn parse_amount(s: &str) -> Result<U256, RewardsError> {
    s.parse::<U256>()
        .ok()
        .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            RewardsError::Invalid(format!(
                "`{s}` is not an amount (a whole number of the token's smallest unit)"
            ))
        })
}

/// Who is paid and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// A data owner, by measured value.
    Data,
    /// The run's signer, as compute provider.
    Compute,
    /// A verdict's signer.
    Verifier,
}

/// One party owed a reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    /// Its role.
    pub role: Role,
    /// A data source's name, or a signer's key id.
    pub id: String,
    /// Where it is paid.
    pub address: String,
    /// A data source's measured value (before flooring at zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Its amount, decimal.
    pub amount: String,
}

/// How a pool is split.
#[derive(Debug, Clone)]
pub struct Split {
    /// The pool, in the token's smallest unit.
    pub pool: U256,
    /// The compute provider's share (1e18 = all).
    pub compute_share: U256,
    /// The verifiers' share, split evenly among them (1e18 = all).
    pub verifier_share: U256,
}

/// A data source to pay: its name, address and value.
#[derive(Debug, Clone)]
pub struct Source {
    /// The source's name (its file as the manifest names it).
    pub name: String,
    /// Its owner's reward address.
    pub address: Address,
    /// Its measured value.
    pub value: f64,
}

/// Split `split.pool` between `sources`, the compute provider `(keyid, address)` and the
/// verifiers `(keyid, address)`. Returns every party (in that order) and the leaves (distinct
/// addresses, non-zero amounts, in first-seen order).
pub fn allocate(
    split: &Split,
    sources: &[Source],
    compute: Option<(&str, Address)>,
    verifiers: &[(String, Address)],
) -> Result<(Vec<Party>, Vec<tree::Leaf>), RewardsError> {
    let u = unit();
    if split.compute_share + split.verifier_share > u {
        return Err(RewardsError::Invalid(
            "--compute-share and --verifier-share add up to more than 1".into(),
        ));
    }
    let compute_amount = if compute.is_some() {
        split.pool * split.compute_share / u
    } else if split.compute_share > U256::ZERO {
        return Err(RewardsError::Invalid(
            "a compute share needs the compute provider's address".into(),
        ));
    } else {
        U256::ZERO
    };
    if verifiers.is_empty() && split.verifier_share > U256::ZERO {
        return Err(RewardsError::Invalid(
            "a verifier share needs at least one verdict about the run (--verdict)".into(),
        ));
    }
    let verifier_total = split.pool * split.verifier_share / u;
    let n_verifiers = U256::from(verifiers.len().max(1));
    let each_verifier = verifier_total / n_verifiers;
    if sources.is_empty() {
        return Err(RewardsError::Invalid(
            "the run records no data source to pay".into(),
        ));
    }
    let data_pool = split.pool - compute_amount - each_verifier * U256::from(verifiers.len());
    let data_amounts = by_value(data_pool, sources);
    let mut parties: Vec<Party> = sources
        .iter()
        .zip(&data_amounts)
        .map(|(s, a)| Party {
            role: Role::Data,
            id: s.name.clone(),
            address: s.address.to_checksum(None),
            value: Some(s.value),
            amount: a.to_string(),
        })
        .collect();
    if let Some((keyid, address)) = compute {
        parties.push(party(Role::Compute, keyid, address, compute_amount));
    }
    for (keyid, address) in verifiers {
        parties.push(party(Role::Verifier, keyid, *address, each_verifier));
    }
    Ok((parties.clone(), leaves(&parties)))
}

fn party(role: Role, id: &str, address: Address, amount: U256) -> Party {
    Party {
        role,
        id: id.to_string(),
        address: address.to_checksum(None),
        value: None,
        amount: amount.to_string(),
    }
}

/// `pool` split by `max(value, 0)`, the rounding remainder to the largest value; evenly when
/// no value is positive.
fn by_value(pool: U256, sources: &[Source]) -> Vec<U256> {
    let u = unit();
    let floored: Vec<f64> = sources.iter().map(|s| s.value.max(0.0)).collect();
    let total: f64 = floored.iter().sum();
    let weights: Vec<U256> = if total > 0.0 && total.is_finite() {
        floored
            .iter()
            .map(|v| U256::from(((v / total) * 1e18).floor() as u128))
            .collect()
    } else {
        vec![u / U256::from(sources.len()); sources.len()]
    };
    let mut amounts: Vec<U256> = weights.iter().map(|w| pool * *w / u).collect();
    let paid = amounts.iter().fold(U256::ZERO, |a, b| a + *b);
    let best = (0..sources.len())
        .rev()
        .max_by(|&a, &b| floored[a].total_cmp(&floored[b]))
        .unwrap_or(0);
    amounts[best] += pool - paid;
    amounts
}

/// Parties merged by address, zero amounts left out.
fn leaves(parties: &[Party]) -> Vec<tree::Leaf> {
    let mut order: Vec<Address> = Vec::new();
    let mut sums: BTreeMap<Address, U256> = BTreeMap::new();
    for p in parties {
        let (Ok(a), Ok(amount)) = (p.address.parse::<Address>(), p.amount.parse::<U256>()) else {
            continue;
        };
        if !sums.contains_key(&a) {
            order.push(a);
        }
        *sums.entry(a).or_default() += amount;
    }
    order
        .into_iter()
        .filter_map(|address| {
            let amount = sums[&address];
            (amount > U256::ZERO).then_some(tree::Leaf { address, amount })
        })
        .collect()
}

/// The run a reward statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRef {
    /// The manifest's path relative to the statement.
    pub manifest: String,
    /// sha256 of the manifest's bytes.
    pub sha256: String,
}

/// The reward statement's predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewards {
    /// The run.
    pub run: RunRef,
    /// The tree's root, `0x`-hex.
    pub root: String,
    /// The pool, decimal.
    pub pool: String,
    /// The compute share, decimal.
    pub compute_share: String,
    /// The verifiers' share, decimal.
    pub verifier_share: String,
    /// `in-run` (first-order in-run value, from the manifest) or `shapley`.
    pub value_method: String,
    /// Every party and its amount.
    pub parties: Vec<Party>,
    /// The verdicts whose signers are paid: sha256 of each.
    #[serde(default)]
    pub verdicts: Vec<String>,
    /// RFC 3339 time of issue.
    pub issued_on: String,
}

/// The reward statement (an in-toto Statement v1 about `rewards.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `https://in-toto.io/Statement/v1`.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The tree dump file.
    pub subject: Vec<crate::manifest::ResourceDescriptor>,
    /// [`REWARDS_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The allocation.
    pub predicate: Rewards,
}

/// The statement over the dump's bytes, named `dump_name`.
pub fn statement(dump_name: &str, dump_bytes: &[u8], rewards: Rewards) -> Statement {
    Statement {
        statement_type: crate::manifest::STATEMENT_TYPE.to_string(),
        subject: vec![crate::manifest::ResourceDescriptor::file(
            dump_name,
            None,
            &crate::hash::bytes_digest(dump_bytes),
        )],
        predicate_type: REWARDS_PREDICATE.to_string(),
        predicate: rewards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, byte: u8, value: f64) -> Source {
        Source {
            name: name.into(),
            address: Address::repeat_byte(byte),
            value,
        }
    }

    #[test]
    fn shares_parse_exactly() {
        assert_eq!(parse_share("0.1").unwrap(), unit() / U256::from(10));
        assert_eq!(parse_share("1").unwrap(), unit());
        assert!(parse_share("1.5").is_err() && parse_share("-0.1").is_err());
        assert!(parse_share("abc").is_err() && parse_share(".").is_err());
        assert!(parse_amount("12e3").is_err());
    }

    #[test]
    fn the_amounts_add_up_to_the_pool_and_negative_values_get_nothing() {
        let split = Split {
            pool: U256::from(1_000_003u64),
            compute_share: parse_share("0.1").unwrap(),
            verifier_share: parse_share("0.05").unwrap(),
        };
        let sources = [src("a", 1, 3.0), src("b", 2, 1.0), src("c", 3, -2.0)];
        let verifiers = vec![
            ("v1".to_string(), Address::repeat_byte(9)),
            ("v2".into(), Address::repeat_byte(8)),
        ];
        let (parties, leaves) = allocate(
            &split,
            &sources,
            Some(("k", Address::repeat_byte(7))),
            &verifiers,
        )
        .unwrap();
        let total = leaves.iter().fold(U256::ZERO, |a, l| a + l.amount);
        assert_eq!(total, split.pool);
        assert_eq!(parties[2].amount, "0");
        assert_eq!(leaves.len(), 5, "the zero amount is not a leaf");
        assert_eq!(parties[3].amount, "100000");
        let a: U256 = parties[0].amount.parse().unwrap();
        let b: U256 = parties[1].amount.parse().unwrap();
        assert!(a > b * U256::from(2));
    }

    #[test]
    fn one_address_is_paid_once() {
        let split = Split {
            pool: U256::from(100u64),
            compute_share: U256::ZERO,
            verifier_share: U256::ZERO,
        };
        let (_, leaves) =
            allocate(&split, &[src("a", 1, 1.0), src("b", 1, 1.0)], None, &[]).unwrap();
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].amount, U256::from(100u64));
        assert!(allocate(&split, &[], None, &[]).is_err());
        let greedy = Split {
            compute_share: parse_share("0.1").unwrap(),
            ..split
        };
        assert!(allocate(&greedy, &[src("a", 1, 1.0)], None, &[]).is_err());
    }
}
