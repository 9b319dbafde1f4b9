//! Disputes between two training nodes given the same job: a refereed bisection over their
//! transcripts down to one step, which the referee replays (docs/audit.md, "Disputes").
//!
//! A dispute file (`auditai.dispute/v1`) holds a header, written once by the referee (the two
//! runs, the job they share, the first segment where their recorded states differ, and how
//! states are compared), and a hash chain of signed moves: the referee's requests ("your state
//! after step m") and the parties' answers (the digests of their full state at step m, whose
//! files lie in the dispute's state directory). Each move names the hash of the one before (the
//! first, the header's), so no move can be dropped, reordered or edited without breaking the
//! chain. [`fold`] checks every move and derives where the game stands; it reads no state file
//! and replays nothing (that is [`play`], behind the `train` feature). Owns the format; never
//! prints.

#[cfg(feature = "train")]
pub mod play;
pub mod verdict;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sign::{self, Envelope, PublicKey, SecretKey};

/// The dispute file's schema tag.
pub const DISPUTE_SCHEMA: &str = "auditai.dispute/v1";
/// The DSSE payload type of a move.
pub const MOVE_PAYLOAD_TYPE: &str = "application/vnd.auditai.dispute-move+json";
/// The blake3 key-derivation context of the move chain.
const CONTEXT: &str = "auditai 2026 dispute moves v1";

/// Errors reading, checking or extending a dispute.
#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The dispute file is malformed or a move breaks the rules.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The dispute file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The game cannot be played (different jobs, missing runs or checkpoints).
    #[error("{0}")]
    Unplayable(String),
    /// A move is asked that the game's state does not allow now.
    #[error("{0}")]
    OutOfTurn(String),
}

/// A training state's digests: weights and optimizer state (`None` for the fresh optimizer of
/// the initial weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    /// blake3 of the weights (burnpack).
    pub weights_blake3: String,
    /// blake3 of the optimizer state (burnpack); absent before the first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer_blake3: Option<String>,
}

/// How states are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Both parties committed to one backend: states must be bitwise equal.
    Bitwise,
    /// Different backends: weights within the documented tolerances (docs/audit.md).
    Tolerance,
}

/// One party: its run and what it claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Party {
    /// The run's manifest, relative to the dispute file's directory.
    pub run: String,
    /// sha256 of the manifest.
    pub manifest_sha256: String,
    /// Key ids of the manifest's signatures: an answer must be signed by one of them.
    pub signers: Vec<String>,
    /// The backend it committed to (`cpu`, `wgpu`) and its kernels.
    pub backend: String,
    /// The transcript's chain head, which every answer names.
    pub head: String,
    /// Its recorded state before the disputed segment.
    pub before: State,
    /// Its recorded state at the end of the disputed segment.
    pub claimed: State,
}

/// The segment in dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    /// 1-based transcript entry.
    pub entry: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps `[start, end)` within the epoch.
    pub steps: [usize; 2],
    /// The state both parties recorded before the segment.
    pub agreed: State,
}

/// What both runs committed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// blake3 of the resolved spec.
    pub spec_blake3: String,
    /// The seed.
    pub seed: u64,
    /// blake3 (or salted commitment) of each data file.
    pub data: Vec<String>,
    /// blake3 of the initial weights.
    pub initial_weights_blake3: String,
}

/// The header the referee writes when opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    /// [`DISPUTE_SCHEMA`].
    pub schema: String,
    /// The shared job.
    pub job: Job,
    /// Party 1 (`RUN_A`) and party 2 (`RUN_B`).
    pub parties: [Party; 2],
    /// The first segment whose recorded states differ.
    pub segment: Segment,
    /// Bitwise or within tolerances.
    pub comparison: Comparison,
    /// The referee's public key (SPKI PEM).
    pub referee: String,
    /// Where the parties' state files go, relative to the dispute file.
    pub states: String,
}

impl Header {
    /// The hash the first move chains from.
    pub fn hash(&self) -> String {
        chain_hash(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Move {
    /// The referee asks both parties for their state after `step` (steps of the segment's
    /// epoch); the disagreement is known to lie in `(lo, hi]`.
    #[serde(rename_all = "camelCase")]
    Request {
        /// 1-based round.
        round: usize,
        /// The step asked for.
        step: usize,
        /// The last step both agree on.
        lo: usize,
        /// The first step known to differ.
        hi: usize,
        /// The previous move's hash (the header's for the first).
        prev: String,
    },
    /// A party's state after `step`: digests of the files it wrote into the state directory.
    #[serde(rename_all = "camelCase")]
    Answer {
        /// 1-based round.
        round: usize,
        /// 0 for party 1, 1 for party 2.
        party: usize,
        /// The step.
        step: usize,
        /// Its state there.
        state: State,
        /// The weights and optimizer files, relative to the state directory.
        files: [String; 2],
        /// The party's transcript head (its own recorded chain, which this answer extends).
        head: String,
        /// The signer's public key (SPKI PEM).
        public_key: String,
        /// The previous move's hash.
        prev: String,
    },
}

/// The dispute file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisputeFile {
    /// The header.
    pub header: Header,
    /// The moves, each a DSSE envelope of a [`Move`].
    pub moves: Vec<Envelope>,
}

fn chain_hash(bytes: &[u8]) -> String {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(bytes);
    h.finalize().to_hex().to_string()
}

/// One round as the moves tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Round {
    /// The step asked for.
    pub step: usize,
    /// The interval before the round.
    pub lo: usize,
    /// The interval before the round.
    pub hi: usize,
    /// Each party's answer.
    pub answers: [Option<State>; 2],
}

/// Where a game stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Game {
    /// The last step both agree on.
    pub lo: usize,
    /// The first step known to differ.
    pub hi: usize,
    /// Every round so far.
    pub rounds: Vec<Round>,
    /// The last move's hash (what the next one names).
    pub last: String,
}

impl Game {
    /// The open request, when one waits for answers.
    pub fn open_request(&self) -> Option<&Round> {
        self.rounds
            .last()
            .filter(|r| r.answers.iter().any(Option::is_none))
    }

    /// Whether the disagreement is one step wide.
    pub fn narrowed(&self) -> bool {
        self.hi == self.lo + 1
    }

    /// Apply the last round's decision (`agree`: the parties agree at its step) to the interval,
    /// when every answer is in and no request has applied it yet.
    pub fn settle(&mut self, agree: bool) {
        if let Some(r) = self.rounds.last()
            && r.answers.iter().all(Option::is_some)
            && (r.lo, r.hi) == (self.lo, self.hi)
        {
            if agree {
                self.lo = r.step;
            } else {
                self.hi = r.step;
            }
        }
    }

    /// The party's claim about the state at `step`: its answer, or at the segment's end its
    /// recorded state.
    pub fn claim(&self, header: &Header, party: usize, step: usize) -> Option<State> {
        if step == header.segment.steps[1] {
            return Some(header.parties[party].claimed.clone());
        }
        self.rounds
            .iter()
            .rev()
            .find(|r| r.step == step)
            .and_then(|r| r.answers[party].clone())
    }
}

impl DisputeFile {
    /// Read a dispute file (bounded).
    pub fn read(path: &std::path::Path) -> Result<DisputeFile, DisputeError> {
        let bytes =
            crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(|source| {
                DisputeError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        serde_json::from_slice(&bytes).map_err(|e| DisputeError::Invalid {
            path: path.to_path_buf(),
            why: format!("not a dispute file: {e}"),
        })
    }

    /// Write it atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<(), DisputeError> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        crate::fsio::write_atomic(path, &bytes).map_err(|source| DisputeError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Append `m`, signed with `key`.
    pub fn push(&mut self, m: &Move, key: &SecretKey) {
        let mut env = Envelope::new(
            MOVE_PAYLOAD_TYPE,
            &serde_json::to_vec(m).unwrap_or_default(),
        );
        env.sign(key);
        self.moves.push(env);
    }
}

/// Check every move of `file` (signatures, the hash chain, whose turn it was, the steps asked
/// and the interval each request states) and return where the game stands. `agree` decides, in
/// bitwise games, whether two answers agree; in tolerance games the referee's next request is
/// taken as its decision (and reported as such).
pub fn fold(file: &DisputeFile) -> Result<Game, String> {
    let h = &file.header;
    if h.schema != DISPUTE_SCHEMA {
        return Err(format!("schema `{}` is not {DISPUTE_SCHEMA}", h.schema));
    }
    let referee =
        PublicKey::from_pem(&h.referee, "the referee's key").map_err(|e| e.to_string())?;
    let [s0, s1] = h.segment.steps;
    if s0 >= s1 {
        return Err(format!("segment steps {s0}..{s1} are empty"));
    }
    let mut game = Game {
        lo: s0,
        hi: s1,
        rounds: Vec::new(),
        last: h.hash(),
    };
    for (i, env) in file.moves.iter().enumerate() {
        let n = i + 1;
        let payload = env
            .payload_bytes()
            .filter(|_| env.payload_type == MOVE_PAYLOAD_TYPE)
            .ok_or_else(|| format!("move {n} is not a dispute move"))?;
        let m: Move =
            serde_json::from_slice(&payload).map_err(|e| format!("move {n} is malformed: {e}"))?;
        match &m {
            Move::Request { .. } => signed_by(env, &payload, &referee)
                .map_err(|w| format!("move {n} (request): {w}"))?,
            Move::Answer {
                party, public_key, ..
            } => {
                let p = h
                    .parties
                    .get(*party)
                    .ok_or_else(|| format!("move {n}: no party {party}"))?;
                let key = PublicKey::from_pem(public_key, "an answer's key")
                    .map_err(|e| format!("move {n}: {e}"))?;
                if !p.signers.contains(&key.keyid) {
                    return Err(format!(
                        "move {n}: answered for party {} by key {}, which did not sign its run",
                        party + 1,
                        key.keyid
                    ));
                }
                signed_by(env, &payload, &key).map_err(|w| format!("move {n} (answer): {w}"))?;
            }
        }
        apply(h, &mut game, &m).map_err(|w| format!("move {n}: {w}"))?;
        game.last = chain_hash(&payload);
    }
    Ok(game)
}

fn signed_by(env: &Envelope, payload: &[u8], key: &PublicKey) -> Result<(), String> {
    let ok = env.signatures.iter().any(|s| {
        matches!(
            sign::check_signature(env, payload, s, std::slice::from_ref(key)),
            sign::SigCheck::Valid(_)
        )
    });
    if ok {
        Ok(())
    } else {
        Err(format!("not signed by {}", key.keyid))
    }
}

/// Apply one move to the game, or say why it breaks the rules.
fn apply(h: &Header, game: &mut Game, m: &Move) -> Result<(), String> {
    match m {
        Move::Request {
            round,
            step,
            lo,
            hi,
            prev,
        } => {
            if prev != &game.last {
                return Err("does not chain from the move before".into());
            }
            if game.open_request().is_some() {
                return Err("a request before both parties answered the last".into());
            }
            if *round != game.rounds.len() + 1 {
                return Err(format!("round {round}, expected {}", game.rounds.len() + 1));
            }
            narrow_to(h, game, *lo, *hi)?;
            if game.narrowed() || !(game.lo < *step && *step < game.hi) {
                return Err(format!(
                    "asks for step {step}, outside the open interval ({}, {})",
                    game.lo, game.hi
                ));
            }
            if *step != game.lo + (game.hi - game.lo) / 2 {
                return Err(format!(
                    "asks for step {step}, not the middle of ({lo}, {hi})"
                ));
            }
            game.rounds.push(Round {
                step: *step,
                lo: *lo,
                hi: *hi,
                answers: [None, None],
            });
            Ok(())
        }
        Move::Answer {
            round,
            party,
            step,
            state,
            head,
            prev,
            ..
        } => {
            if prev != &game.last {
                return Err("does not chain from the move before".into());
            }
            let open = game.rounds.len();
            let r = game
                .rounds
                .last_mut()
                .filter(|r| r.answers.iter().any(Option::is_none))
                .ok_or("an answer with no open request")?;
            if *round != open || *step != r.step {
                return Err(format!(
                    "answers round {round} step {step}, not the open request"
                ));
            }
            if head != &h.parties[*party].head {
                return Err(format!(
                    "does not extend party {}'s recorded chain (head {head})",
                    party + 1
                ));
            }
            let slot = &mut r.answers[*party];
            if slot.is_some() {
                return Err(format!("party {} answered twice", party + 1));
            }
            *slot = Some(state.clone());
            Ok(())
        }
    }
}

/// Move the interval to `(lo, hi)` as a request states it: in a bitwise game it must follow from
/// the last round's answers (equal: the step is agreed, else it differs).
fn narrow_to(h: &Header, game: &mut Game, lo: usize, hi: usize) -> Result<(), String> {
    let expected = match (game.rounds.last(), next_interval(h, game)) {
        (None, _) => (game.lo, game.hi),
        (Some(_), Some(next)) => next,
        // A tolerance game: the referee decided from the state files; either half may follow.
        (Some(r), None) if (lo, hi) == (r.step, game.hi) || (lo, hi) == (game.lo, r.step) => {
            (lo, hi)
        }
        (Some(_), None) => return Err(format!("the interval ({lo}, {hi}) does not follow")),
    };
    if expected != (lo, hi) {
        return Err(format!(
            "states the interval ({lo}, {hi}); the answers give ({}, {})",
            expected.0, expected.1
        ));
    }
    game.lo = lo;
    game.hi = hi;
    Ok(())
}

/// The interval after the last round, when every answer is in and the game is bitwise (the
/// referee's `next` for a tolerance game decides from the state files).
pub fn next_interval(h: &Header, game: &Game) -> Option<(usize, usize)> {
    let r = game.rounds.last()?;
    match (&r.answers[0], &r.answers[1]) {
        (Some(a), Some(b)) if h.comparison == Comparison::Bitwise => Some(if a == b {
            (r.step, game.hi)
        } else {
            (game.lo, r.step)
        }),
        _ => None,
    }
}

/// The request of the next round over `(lo, hi)`: the middle step.
pub fn request(game: &Game, lo: usize, hi: usize) -> Move {
    Move::Request {
        round: game.rounds.len() + 1,
        step: lo + (hi - lo) / 2,
        lo,
        hi,
        prev: game.last.clone(),
    }
}

/// The state file names of `party` (0 or 1) at `step`.
pub fn state_files(party: usize, step: usize) -> [String; 2] {
    let stem = format!("party-{}-step-{step:05}", party + 1);
    [format!("{stem}.bpk"), format!("{stem}.optim.bpk")]
}

#[cfg(test)]
pub(crate) mod tests;
