//! What a forger holding a node's signing key can do to a run: rewrite its transcript (chained
//! from the commitment on disk) and re-sign a manifest whose digests match every file on disk;
//! and a cheating node that skips one training step and trains on as if nothing happened.
//! Shared by the integration tests and `examples/dispute_bench.rs`.

#![allow(dead_code)]

use std::path::Path;

use auditai::hash::{self, Hasher};
use auditai::manifest::ResourceDescriptor;
use auditai::sign::{self, Envelope, SecretKey};
use auditai::transcript::{self, Entry};
use auditai::trust::{Required, RunKind, SignedRun};

/// Write `bodies` as the transcript of the run in `dir`, chained from its commitment, and
/// re-sign its manifest with `key` after `edit`.
pub fn reseal(
    dir: &Path,
    bodies: Vec<transcript::Body>,
    key: &SecretKey,
    edit: impl FnOnce(&mut auditai::manifest::Statement),
) {
    let c_bytes = std::fs::read(dir.join("commitment.json")).unwrap();
    let mut prev = transcript::chain_start(&c_bytes);
    let chained: Vec<Entry> = bodies
        .into_iter()
        .map(|b| {
            let e = Entry::new(&prev, b);
            hex::decode_to_slice(&e.chain, &mut prev).unwrap();
            e
        })
        .collect();
    let t_bytes = transcript::to_jsonl(&chained);
    std::fs::write(dir.join("transcript.jsonl"), &t_bytes).unwrap();
    let m = dir.join("manifest.intoto.json");
    let mut st = auditai::manifest::open(&std::fs::read(&m).unwrap())
        .unwrap()
        .statement;
    let hasher = Hasher::new(None, true);
    for d in st
        .subject
        .iter_mut()
        .chain(st.predicate.run_details.byproducts.iter_mut())
    {
        let name = d.name.clone().unwrap();
        let p = dir.join(&name);
        *d = if p.is_dir() {
            ResourceDescriptor::tree(&name, &hasher.hash_tree(&p).unwrap())
        } else {
            ResourceDescriptor::file(
                &name,
                None,
                &hash::bytes_digest(&std::fs::read(&p).unwrap()),
            )
        };
    }
    let ext = st.predicate.auditai.as_mut().unwrap();
    let c = ext.commitment.as_mut().unwrap();
    c.blake3 = blake3::hash(&c_bytes).to_hex().to_string();
    let t = ext.transcript.as_mut().unwrap();
    t.blake3 = blake3::hash(t_bytes.as_bytes()).to_hex().to_string();
    t.entries = chained.len();
    t.head = hex::encode(prev);
    edit(&mut st);
    let mut env = Envelope::new(sign::IN_TOTO_PAYLOAD_TYPE, &st.to_payload());
    env.sign(key);
    std::fs::write(&m, env.to_bytes()).unwrap();
}

/// A state: weights and optimizer bytes (`None`: the initial weights, fresh optimizer).
pub type StateBytes = Option<(Vec<u8>, Vec<u8>)>;

/// A cheater's trace: the honest states of the job until step `step` of transcript entry
/// `entry` (1-based), which it skips, then training on from there as if nothing happened.
pub struct Cheater {
    pub trained: auditai::audit::Trained,
    pub backend: auditai::train::Backend,
    pub entry: usize,
    pub step: usize,
}

impl Cheater {
    /// The cheater of the run in `dir` (its data under `root`).
    pub fn new(dir: &Path, root: &Path, entry: usize, step: usize) -> Cheater {
        let run = SignedRun::open(dir, RunKind::Training, Required::Unchecked).unwrap();
        Cheater {
            trained: auditai::audit::trained_on(&run, Some(root), &Default::default()).unwrap(),
            backend: auditai::train::device::select(auditai::spec::DeviceChoice::Cpu)
                .unwrap()
                .0,
            entry,
            step,
        }
    }

    fn replay(
        &self,
        before: &StateBytes,
        epoch: usize,
        steps: std::ops::Range<usize>,
    ) -> StateBytes {
        let (w, o, _) = auditai::train::replay(
            &self.trained.spec,
            &self.trained.data,
            &self.backend.device,
            before.as_ref().map(|(w, o)| (w.as_slice(), o.as_slice())),
            epoch,
            steps,
            &mut || {},
        )
        .unwrap();
        Some((w, o))
    }

    /// The cheater's state after `to` steps of transcript entry `b`'s epoch, from `before` (its
    /// state at the entry's start).
    pub fn within(&self, b: &transcript::Body, before: &StateBytes, to: usize) -> StateBytes {
        let s0 = b.steps[0];
        if b.index != self.entry || to <= self.step {
            return self.replay(before, b.epoch, s0..to);
        }
        let honest = self.replay(before, b.epoch, s0..self.step);
        if self.step + 1 < to {
            self.replay(&honest, b.epoch, self.step + 1..to)
        } else {
            honest
        }
    }

    /// The state the run in `dir` recorded after entry `index` (0: the initial weights).
    pub fn recorded(&self, dir: &Path, index: usize) -> StateBytes {
        (index > 0).then(|| {
            let b = &self.trained.entries[index - 1].body;
            (
                std::fs::read(dir.join(&b.weights)).unwrap(),
                std::fs::read(dir.join(&b.optimizer)).unwrap(),
            )
        })
    }
}

/// Make the run in `dir` follow the cheater's trace: every checkpoint and transcript entry from
/// the cheated one on re-made, the chain re-hashed and the manifest re-signed with `key`.
pub fn cheat(dir: &Path, root: &Path, entry: usize, step: usize, key: &SecretKey) -> Cheater {
    let c = Cheater::new(dir, root, entry, step);
    let mut bodies: Vec<transcript::Body> =
        c.trained.entries.iter().map(|e| e.body.clone()).collect();
    let mut state = c.recorded(dir, entry - 1);
    for b in bodies.iter_mut().skip(entry - 1) {
        state = c.within(b, &state, b.steps[1]);
        let (w, o) = state.as_ref().unwrap();
        std::fs::write(dir.join(&b.weights), w).unwrap();
        std::fs::write(dir.join(&b.optimizer), o).unwrap();
        b.weights_blake3 = blake3::hash(w).to_hex().to_string();
        b.optimizer_blake3 = blake3::hash(o).to_hex().to_string();
    }
    reseal(dir, bodies, key, |_| {});
    c
}
