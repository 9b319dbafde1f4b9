//! RFC 6962 / RFC 9162 Merkle trees over sha256: `leaf = sha256(0x00 ‖ d)`,
//! `node = sha256(0x01 ‖ left ‖ right)`, with inclusion proofs.

use sha2::{Digest as _, Sha256};

/// A 32-byte sha256 value.
pub type Hash = [u8; 32];

/// The leaf hash of a datum.
pub fn leaf(d: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(d);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The Merkle tree hash of leaf hashes (MTH in RFC 6962).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof (audit path, bottom-up) of leaf `m` (PATH in RFC 6962).
pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    Tree::new(leaves).path(m)
}

/// A tree that remembers its subtree hashes, so that the paths of all `n` leaves cost
/// O(n log n) hashes rather than O(n²).
pub struct Tree<'a> {
    leaves: &'a [Hash],
    memo: std::collections::HashMap<(usize, usize), Hash>,
}

impl<'a> Tree<'a> {
    /// A tree over leaf hashes.
    pub fn new(leaves: &'a [Hash]) -> Tree<'a> {
        Tree {
            leaves,
            memo: std::collections::HashMap::new(),
        }
    }

    /// The root of the whole tree.
    pub fn root(&mut self) -> Hash {
        self.subtree(0, self.leaves.len())
    }

    fn subtree(&mut self, start: usize, len: usize) -> Hash {
        if len <= 1 {
            return root(&self.leaves[start..start + len]);
        }
        if let Some(h) = self.memo.get(&(start, len)) {
            return *h;
        }
        let k = split(len);
        let h = node(&self.subtree(start, k), &self.subtree(start + k, len - k));
        self.memo.insert((start, len), h);
        h
    }

    /// The inclusion proof of leaf `m`.
    pub fn path(&mut self, m: usize) -> Vec<Hash> {
        let mut out = Vec::new();
        let (mut start, mut len, mut m) = (0, self.leaves.len(), m);
        while len > 1 {
            let k = split(len);
            if m < k {
                out.push(self.subtree(start + k, len - k));
                len = k;
            } else {
                out.push(self.subtree(start, k));
                start += k;
                m -= k;
                len -= k;
            }
        }
        out.reverse();
        out
    }
}

/// One step of an inclusion proof, as the verifier applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The sibling is on the left: `node(sibling, current)`.
    Left(Hash),
    /// The sibling is on the right: `node(current, sibling)`.
    Right(Hash),
}

/// The sides of an inclusion proof for leaf `index` of `size` (RFC 9162 §2.1.3.2); `None` when
/// the proof has the wrong length for that position.
pub fn steps(index: usize, size: usize, proof: &[Hash]) -> Option<Vec<Step>> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut out = Vec::with_capacity(proof.len());
    for p in proof {
        if s == 0 {
            return None;
        }
        if f % 2 == 1 || f == s {
            out.push(Step::Left(*p));
            if f % 2 == 0 {
                while f % 2 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            out.push(Step::Right(*p));
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(out)
}

/// The root an inclusion proof leads to from `leaf_hash`; `None` for a malformed proof.
pub fn root_from_proof(leaf_hash: Hash, index: usize, size: usize, proof: &[Hash]) -> Option<Hash> {
    let mut r = leaf_hash;
    for step in steps(index, size, proof)? {
        r = match step {
            Step::Left(sib) => node(&sib, &r),
            Step::Right(sib) => node(&r, &sib),
        };
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proof_verifies_for_many_sizes_and_wrong_ones_do_not() {
        for n in 1..=33 {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf(&[i as u8])).collect();
            let r = root(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                assert_eq!(root_from_proof(leaves[m], m, n, &p), Some(r), "n={n} m={m}");
                if n > 1 {
                    let other = (m + 1) % n;
                    assert_ne!(root_from_proof(leaves[other], m, n, &p), Some(r));
                    assert_ne!(root_from_proof(leaves[m], other, n, &p), Some(r));
                }
            }
        }
    }

    #[test]
    fn matches_rfc_6962_structure_for_three_leaves() {
        let l: Vec<Hash> = (0..3).map(|i| leaf(&[i])).collect();
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]));
        assert_eq!(path(2, &l), vec![node(&l[0], &l[1])]);
        assert_eq!(path(0, &l), vec![l[1], l[2]]);
    }
}
