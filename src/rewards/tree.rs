//! OpenZeppelin's `StandardMerkleTree` for leaves `[address, uint256]`, byte for byte as
//! `@openzeppelin/merkle-tree` builds, dumps and proves it: each leaf is
//! `keccak256(keccak256(abi.encode(address, uint256)))`, leaves are sorted by hash and laid out at
//! the end of one array (the root at index 0), each inner node is the keccak256 of its two
//! children sorted, and a proof is the siblings from the leaf up. What a Solidity contract checks
//! with OpenZeppelin's `MerkleProof.verify`.

use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

/// The dump format's tag.
pub const FORMAT: &str = "standard-v1";

/// One allocation: who and how much (in the token's smallest unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The recipient.
    pub address: Address,
    /// The amount.
    pub amount: U256,
}

/// A dumped value as the library writes it: `[address, amount]` (strings) and its tree index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DumpValue {
    /// `[address, decimal amount]`.
    pub value: [String; 2],
    /// Where its leaf is in `tree`.
    pub tree_index: usize,
}

/// `StandardMerkleTree.dump()`'s JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dump {
    /// [`FORMAT`].
    pub format: String,
    /// `["address", "uint256"]`.
    pub leaf_encoding: Vec<String>,
    /// The nodes, root first, `0x`-hex.
    pub tree: Vec<String>,
    /// The values in the order given.
    pub values: Vec<DumpValue>,
}

/// Errors reading a dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The dump is not a tree auditai can read or is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The leaf hash of `leaf`.
pub fn leaf_hash(leaf: &Leaf) -> B256 {
    let mut encoded = [0u8; 64];
    encoded[12..32].copy_from_slice(leaf.address.as_slice());
    encoded[32..].copy_from_slice(&leaf.amount.to_be_bytes::<32>());
    keccak256(keccak256(encoded))
}

fn hash_pair(a: &B256, b: &B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// Build the tree of `leaves` (at least one) and dump it.
pub fn build(leaves: &[Leaf]) -> Dump {
    let mut hashed: Vec<(usize, B256)> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| (i, leaf_hash(l)))
        .collect();
    hashed.sort_by_key(|a| a.1);
    let n = hashed.len();
    let len = (2 * n).saturating_sub(1);
    let mut tree = vec![B256::ZERO; len];
    let mut index = vec![0; n];
    for (leaf_index, (value_index, h)) in hashed.iter().enumerate() {
        tree[len - 1 - leaf_index] = *h;
        index[*value_index] = len - 1 - leaf_index;
    }
    for i in (0..len.saturating_sub(n)).rev() {
        tree[i] = hash_pair(&tree[2 * i + 1], &tree[2 * i + 2]);
    }
    Dump {
        format: FORMAT.to_string(),
        leaf_encoding: vec!["address".into(), "uint256".into()],
        tree: tree.iter().map(|h| format!("{h:#x}")).collect(),
        values: leaves
            .iter()
            .zip(index)
            .map(|(l, tree_index)| DumpValue {
                value: [l.address.to_checksum(None), l.amount.to_string()],
                tree_index,
            })
            .collect(),
    }
}

impl Dump {
    /// The root, `0x`-hex.
    pub fn root(&self) -> &str {
        self.tree.first().map_or("", String::as_str)
    }

    /// Check a dump read from elsewhere: its format, that every value's leaf sits where it says
    /// and that every inner node is the hash of its children. Returns the leaves.
    pub fn validate(&self) -> Result<Vec<Leaf>, TreeError> {
        let bad = |m: String| TreeError::Invalid(m);
        if self.format != FORMAT || self.leaf_encoding != ["address", "uint256"] {
            return Err(bad(format!(
                "not a {FORMAT} tree of [address, uint256] leaves"
            )));
        }
        let nodes: Vec<B256> = self
            .tree
            .iter()
            .map(|h| {
                h.parse::<B256>()
                    .map_err(|_| bad(format!("`{h}` is not a node hash")))
            })
            .collect::<Result<_, _>>()?;
        if self.values.is_empty() || nodes.len() != 2 * self.values.len() - 1 {
            return Err(bad("the tree does not have 2n-1 nodes for n values".into()));
        }
        let inner = nodes.len() - self.values.len();
        for i in 0..inner {
            if nodes[i] != hash_pair(&nodes[2 * i + 1], &nodes[2 * i + 2]) {
                return Err(bad(format!("node {i} is not the hash of its children")));
            }
        }
        let mut leaves = Vec::new();
        let mut seen = vec![false; nodes.len()];
        for v in &self.values {
            let leaf = Leaf {
                address: v.value[0]
                    .parse()
                    .map_err(|_| bad(format!("`{}` is not an address", v.value[0])))?,
                amount: v.value[1]
                    .parse()
                    .map_err(|_| bad(format!("`{}` is not a uint256", v.value[1])))?,
            };
            let ok = v.tree_index >= inner
                && v.tree_index < nodes.len()
                && !std::mem::replace(&mut seen[v.tree_index], true)
                && nodes[v.tree_index] == leaf_hash(&leaf);
            if !ok {
                return Err(bad(format!(
                    "the value of {} is not the leaf at tree index {}",
                    v.value[0], v.tree_index
                )));
            }
            leaves.push(leaf);
        }
        Ok(leaves)
    }

    /// The proof of the value at `value_index`: sibling hashes from the leaf up.
    pub fn proof(&self, value_index: usize) -> Vec<String> {
        let mut i = self.values[value_index].tree_index;
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.tree[sibling].clone());
            i = (i - 1) / 2;
        }
        proof
    }
}

/// Whether `proof` takes `leaf` to `root` (as `MerkleProof.verify` does).
pub fn verify(root: &B256, leaf: &Leaf, proof: &[B256]) -> bool {
    let computed = proof
        .iter()
        .fold(leaf_hash(leaf), |acc, p| hash_pair(&acc, p));
    &computed == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(a: u8, amount: u64) -> Leaf {
        Leaf {
            address: Address::repeat_byte(a),
            amount: U256::from(amount),
        }
    }

    #[test]
    fn every_proof_reaches_the_root_and_a_wrong_amount_does_not() {
        for n in 1..=7 {
            let leaves: Vec<Leaf> = (1..=n).map(|i| leaf(i, u64::from(i) * 100)).collect();
            let dump = build(&leaves);
            assert_eq!(dump.validate().unwrap(), leaves);
            let root: B256 = dump.root().parse().unwrap();
            for (i, l) in leaves.iter().enumerate() {
                let proof: Vec<B256> = dump.proof(i).iter().map(|p| p.parse().unwrap()).collect();
                assert!(verify(&root, l, &proof), "n={n} i={i}");
                let mut wrong = l.clone();
                wrong.amount += U256::from(1);
                assert!(!verify(&root, &wrong, &proof));
            }
        }
    }

    #[test]
    fn a_tampered_dump_is_refused() {
        let mut dump = build(&[leaf(1, 5), leaf(2, 6)]);
        dump.values[0].value[1] = "7".into();
        assert!(dump.validate().is_err());
        let mut dump = build(&[leaf(1, 5), leaf(2, 6)]);
        dump.tree[0] = format!("{:#x}", B256::ZERO);
        assert!(dump.validate().is_err());
    }
}
