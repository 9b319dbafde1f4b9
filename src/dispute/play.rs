//! Playing a dispute: opening it from two runs, a party's answer (a replay from its own last
//! agreed checkpoint to the requested step), the referee's narrowing, and the referee's judgement
//! (a replay of the one step left); and the whole game at once when one machine holds both
//! runs ([`play_local`]). Writes state files only into the dispute's state directory.

use std::path::{Path, PathBuf};

use super::{Comparison, DisputeError, Game, Header, Job, Party, Segment, State, state_files};
use crate::audit::{Distance, Trained};
use crate::train::device::Backend;
use crate::transcript::Entry;
use crate::trust::SignedRun;

/// The most a state file may be (as the audit bounds checkpoints).
const MAX_STATE: u64 = 4 << 30;

/// One side of a dispute: its run and what it trained on.
pub struct Side<'a> {
    /// The run.
    pub run: &'a SignedRun,
    /// Its spec, data, commitment and transcript.
    pub trained: &'a Trained,
}

/// A state's files: weights and optimizer bytes (`None` for the fresh optimizer).
pub struct StateBytes {
    /// Weights (burnpack).
    pub weights: Vec<u8>,
    /// Optimizer state (burnpack), absent before the first step.
    pub optimizer: Option<Vec<u8>>,
}

impl StateBytes {
    fn digest(&self) -> State {
        State {
            weights_blake3: crate::hash::Digest::of(&self.weights).hex(),
            optimizer_blake3: self
                .optimizer
                .as_ref()
                .map(|o| crate::hash::Digest::of(o).hex()),
        }
    }
}

fn unplayable(m: impl Into<String>) -> DisputeError {
    DisputeError::Unplayable(m.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DisputeError + '_ {
    move |source| DisputeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opening finds.
pub enum Opening {
    /// Every recorded state agrees: no dispute.
    Agree {
        /// Transcript entries compared.
        entries: usize,
    },
    /// The first segment whose states differ, as a header.
    Dispute(Box<Header>),
}

/// The job both runs committed to, or why they were not given the same job.
fn same_job(a: &Trained, b: &Trained) -> Result<Job, DisputeError> {
    let (ca, cb) = (&a.commitment, &b.commitment);
    let data = |c: &crate::transcript::Commitment| -> Vec<String> {
        c.data.iter().map(|d| d.blake3.clone()).collect()
    };
    let differ = [
        ("spec", ca.spec_blake3 != cb.spec_blake3),
        ("seed", ca.seed != cb.seed),
        ("data", data(ca) != data(cb)),
        (
            "initial weights",
            ca.initial_weights_blake3 != cb.initial_weights_blake3,
        ),
    ];
    let what: Vec<&str> = differ.iter().filter(|d| d.1).map(|d| d.0).collect();
    if !what.is_empty() {
        return Err(unplayable(format!(
            "the runs were not given the same job: their commitments differ in {}",
            what.join(", ")
        )));
    }
    Ok(Job {
        spec_blake3: ca.spec_blake3.clone(),
        seed: ca.seed,
        data: data(ca),
        initial_weights_blake3: ca.initial_weights_blake3.clone(),
    })
}

fn initial_state(t: &Trained) -> State {
    State {
        weights_blake3: t.commitment.initial_weights_blake3.clone(),
        optimizer_blake3: None,
    }
}

fn entry_state(e: &Entry) -> State {
    State {
        weights_blake3: e.body.weights_blake3.clone(),
        optimizer_blake3: Some(e.body.optimizer_blake3.clone()),
    }
}

/// A side's recorded state after entry `index` (1-based; 0: the initial weights), read through
/// its digests.
fn recorded(side: &Side<'_>, index: usize) -> Result<StateBytes, DisputeError> {
    if index == 0 {
        let w = crate::train::initial_weights(&side.trained.spec, &side.trained.data)
            .map_err(|e| unplayable(e.to_string()))?;
        return Ok(StateBytes {
            weights: w,
            optimizer: None,
        });
    }
    let e = &side.trained.entries[index - 1].body;
    let read = |name: &str, digest: &str| {
        side.run
            .read_pinned(name, digest, MAX_STATE)
            .map_err(|e| unplayable(format!("{}: {e}", side.run.path().display())))
    };
    Ok(StateBytes {
        weights: read(&e.weights, &e.weights_blake3)?,
        optimizer: Some(read(&e.optimizer, &e.optimizer_blake3)?),
    })
}

/// Whether two states agree: bitwise, or weights within the tolerances of the update from
/// `before`.
fn agree(cmp: Comparison, a: &StateBytes, b: &StateBytes, before: &[u8]) -> bool {
    match cmp {
        Comparison::Bitwise => a.digest() == b.digest(),
        Comparison::Tolerance => Distance::between(&a.weights, &b.weights, before)
            .is_ok_and(|d| d.within_tolerance().is_ok()),
    }
}

/// Compare the two transcripts and, at the first segment whose states differ, write the header
/// (the parties' states before and after the segment copied into `states`).
pub fn open(
    a: &Side<'_>,
    b: &Side<'_>,
    dispute: &Path,
    referee: &crate::sign::PublicKey,
) -> Result<Opening, DisputeError> {
    let job = same_job(a.trained, b.trained)?;
    let cmp = if a.trained.commitment.backend == b.trained.commitment.backend {
        Comparison::Bitwise
    } else {
        Comparison::Tolerance
    };
    let (ea, eb) = (&a.trained.entries, &b.trained.entries);
    for (i, (x, y)) in ea.iter().zip(eb).enumerate() {
        let (bx, by) = (&x.body, &y.body);
        if (bx.epoch, bx.steps, &bx.batch_order_blake3)
            != (by.epoch, by.steps, &by.batch_order_blake3)
            || bx.lr.to_bits() != by.lr.to_bits()
        {
            return Err(unplayable(format!(
                "transcript entry {} covers other steps, batches or learning rates in the two runs: not the same schedule",
                i + 1
            )));
        }
        let differ = match cmp {
            // The transcripts' digests decide; no checkpoint needs reading.
            Comparison::Bitwise => entry_state(x) != entry_state(y),
            Comparison::Tolerance => {
                let (sa, sb) = (recorded(a, i + 1)?, recorded(b, i + 1)?);
                !agree(cmp, &sa, &sb, &recorded(a, i)?.weights)
            }
        };
        if differ {
            return header(a, b, job, cmp, i + 1, dispute, referee)
                .map(|h| Opening::Dispute(Box::new(h)));
        }
    }
    if ea.len() != eb.len() {
        return Err(unplayable(format!(
            "the transcripts agree on their first {} entries but one has {} and the other {}",
            ea.len().min(eb.len()),
            ea.len(),
            eb.len()
        )));
    }
    Ok(Opening::Agree { entries: ea.len() })
}

/// The state directory of a dispute file: `NAME.states/` beside it.
pub fn states_dir(dispute: &Path) -> PathBuf {
    let stem = dispute
        .file_stem()
        .map_or_else(|| "dispute".into(), |s| s.to_string_lossy().to_string());
    dispute.with_file_name(format!("{stem}.states"))
}

fn header(
    a: &Side<'_>,
    b: &Side<'_>,
    job: Job,
    comparison: Comparison,
    entry: usize,
    dispute: &Path,
    referee: &crate::sign::PublicKey,
) -> Result<Header, DisputeError> {
    let body = &a.trained.entries[entry - 1].body;
    let [s0, s1] = body.steps;
    let dir = states_dir(dispute);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let base = crate::run_dir::of_manifest(dispute);
    let mut parties = Vec::new();
    for (p, side) in [a, b].into_iter().enumerate() {
        write_state(&dir, p, s0, &recorded(side, entry - 1)?)?;
        write_state(&dir, p, s1, &recorded(side, entry)?)?;
        parties.push(Party {
            run: crate::fsio::relative_to(base, side.run.path()),
            manifest_sha256: side.run.sha256_hex(),
            signers: side.run.keyids(),
            backend: side.trained.commitment.backend.to_string(),
            head: side.trained.head.clone(),
            before: match entry {
                1 => initial_state(side.trained),
                _ => entry_state(&side.trained.entries[entry - 2]),
            },
            claimed: entry_state(&side.trained.entries[entry - 1]),
        });
    }
    let [p1, p2]: [Party; 2] = parties.try_into().map_err(|_| unplayable("two parties"))?;
    Ok(Header {
        schema: super::DISPUTE_SCHEMA.to_string(),
        job,
        parties: [p1, p2],
        segment: Segment {
            entry,
            epoch: body.epoch,
            steps: [s0, s1],
            agreed: match entry {
                1 => initial_state(a.trained),
                _ => entry_state(&a.trained.entries[entry - 2]),
            },
        },
        comparison,
        referee: referee.to_pem(),
        states: dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().to_string()),
    })
}

/// Write party `p`'s state at `step` into `dir` (an initial state has no optimizer file).
fn write_state(dir: &Path, p: usize, step: usize, s: &StateBytes) -> Result<(), DisputeError> {
    let [w, o] = state_files(p, step);
    let wp = dir.join(w);
    crate::fsio::write_atomic(&wp, &s.weights).map_err(io(&wp))?;
    if let Some(opt) = &s.optimizer {
        let op = dir.join(o);
        crate::fsio::write_atomic(&op, opt).map_err(io(&op))?;
    }
    Ok(())
}

/// Read party `p`'s state at `step` from `dir`, checked against `want`.
pub fn read_state(
    dir: &Path,
    p: usize,
    step: usize,
    want: &State,
) -> Result<StateBytes, DisputeError> {
    let [w, o] = state_files(p, step);
    let read = |name: &str, digest: &str| {
        let path = crate::fsio::safe_join(dir, name).map_err(|e| unplayable(e.to_string()))?;
        crate::hash::read_pinned(&path, digest, MAX_STATE)
            .map_err(|e| unplayable(format!("{}: {e}", path.display())))
    };
    Ok(StateBytes {
        weights: read(&w, &want.weights_blake3)?,
        optimizer: want
            .optimizer_blake3
            .as_ref()
            .map(|d| read(&o, d))
            .transpose()?,
    })
}

/// The state after `steps` of the disputed epoch, replayed from `before`.
fn replay(
    trained: &Trained,
    header: &Header,
    before: &StateBytes,
    steps: std::ops::Range<usize>,
    backend: &Backend,
) -> Result<StateBytes, DisputeError> {
    let start = before
        .optimizer
        .as_ref()
        .map(|o| (before.weights.as_slice(), o.as_slice()));
    let (weights, optimizer, _) = crate::train::replay(
        &trained.spec,
        &trained.data,
        &backend.device,
        start,
        header.segment.epoch,
        steps,
        &mut || {},
    )
    .map_err(|e| unplayable(format!("replay failed: {e}")))?;
    Ok(StateBytes {
        weights,
        optimizer: Some(optimizer),
    })
}

/// Party `p`'s answer to a request for `step`: replayed from its own state at the segment's
/// start (its recorded checkpoint, copied into the state directory when the dispute opened) and
/// written into the state directory. Returns the state's digests and the steps replayed.
pub fn answer(
    side: &Side<'_>,
    header: &Header,
    p: usize,
    step: usize,
    dir: &Path,
    backend: &Backend,
) -> Result<(State, usize), DisputeError> {
    let s0 = header.segment.steps[0];
    let own_start = recorded(side, header.segment.entry - 1)?;
    let st = replay(side.trained, header, &own_start, s0..step, backend)?;
    write_state(dir, p, step, &st)?;
    Ok((st.digest(), step - s0))
}

/// The referee's decision on a round: whether the answers agree. Bitwise games compare digests;
/// tolerance games the weights files, against the update from the state at `lo`.
pub fn decide(header: &Header, game: &Game, dir: &Path) -> Result<bool, DisputeError> {
    let r = game
        .rounds
        .last()
        .ok_or_else(|| DisputeError::OutOfTurn("no round to decide".into()))?;
    let (Some(a), Some(b)) = (&r.answers[0], &r.answers[1]) else {
        return Err(DisputeError::OutOfTurn(format!(
            "round {} is still waiting for an answer",
            game.rounds.len()
        )));
    };
    if header.comparison == Comparison::Bitwise {
        return Ok(a == b);
    }
    let before = lo_state(header, game, 0, dir)?;
    Ok(agree(
        header.comparison,
        &read_state(dir, 0, r.step, a)?,
        &read_state(dir, 1, r.step, b)?,
        &before.weights,
    ))
}

/// Party `p`'s state at the game's `lo`: the recorded start of the segment, or its answer.
fn lo_state(
    header: &Header,
    game: &Game,
    p: usize,
    dir: &Path,
) -> Result<StateBytes, DisputeError> {
    let lo = game.lo;
    let want = if lo == header.segment.steps[0] {
        header.parties[p].before.clone()
    } else {
        game.claim(header, p, lo)
            .ok_or_else(|| unplayable(format!("party {} has no state at step {lo}", p + 1)))?
    };
    read_state(dir, p, lo, &want)
}

/// The referee's judgement of the one step left.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The step replayed: from the state after `step` to the state after `step + 1`.
    pub step: usize,
    /// The state the referee's replay reached (from party 1's state at `step`).
    pub replayed: State,
    /// Per party: whether its claim at `step + 1` matches the replay.
    pub matches: [bool; 2],
    /// Per party: how its claim compares.
    pub details: [String; 2],
}

/// Replay the one step left and compare each party's claim with it.
pub fn judge(
    trained: &Trained,
    header: &Header,
    game: &Game,
    dir: &Path,
    backend: &Backend,
) -> Result<Judgement, DisputeError> {
    if !game.narrowed() || game.open_request().is_some() {
        return Err(DisputeError::OutOfTurn(format!(
            "the disagreement is not yet one step wide (steps {}..{})",
            game.lo, game.hi
        )));
    }
    let mut matches = [false; 2];
    let mut details = [String::new(), String::new()];
    let mut replayed = None;
    for p in 0..2 {
        // In a bitwise game both parties' states at `lo` are the same bytes: one replay serves.
        let start = lo_state(header, game, p, dir)?;
        let st = match (&replayed, header.comparison) {
            (Some((_, s)), Comparison::Bitwise) => clone_state(s),
            _ => replay(trained, header, &start, game.lo..game.hi, backend)?,
        };
        let claim = game.claim(header, p, game.hi).ok_or_else(|| {
            unplayable(format!("party {} made no claim at step {}", p + 1, game.hi))
        })?;
        (matches[p], details[p]) = match header.comparison {
            Comparison::Bitwise => {
                let same = st.digest() == claim;
                (
                    same,
                    if same {
                        "bitwise identical to the referee's replay".into()
                    } else {
                        format!(
                            "differs from the referee's replay (weights blake3 {}, claimed {})",
                            st.digest().weights_blake3,
                            claim.weights_blake3
                        )
                    },
                )
            }
            Comparison::Tolerance => {
                let claimed = read_state(dir, p, game.hi, &claim)?;
                match Distance::between(&claimed.weights, &st.weights, &start.weights) {
                    Ok(d) => match d.within_tolerance() {
                        Ok(()) => (
                            true,
                            format!("within tolerance of the referee's replay: {d}"),
                        ),
                        Err(why) => (false, format!("outside tolerance: {why} ({d})")),
                    },
                    Err(e) => (false, e.to_string()),
                }
            }
        };
        if replayed.is_none() {
            replayed = Some((p, st));
        }
    }
    Ok(Judgement {
        step: game.lo,
        replayed: replayed
            .map(|(_, s)| s.digest())
            .unwrap_or(header.segment.agreed.clone()),
        matches,
        details,
    })
}

fn clone_state(s: &StateBytes) -> StateBytes {
    StateBytes {
        weights: s.weights.clone(),
        optimizer: s.optimizer.clone(),
    }
}

/// A whole game played on one machine.
pub struct Local {
    /// The header.
    pub header: Header,
    /// Every round.
    pub rounds: Vec<super::Round>,
    /// Steps each party replayed (summed over its answers).
    pub party_steps: [usize; 2],
    /// The judgement.
    pub judgement: Judgement,
}

/// Play the game between `a` and `b` in `scratch` (a directory the caller owns), with no
/// signed moves: open, answer both, narrow, until one step is left; then judge.
pub fn play_local(
    a: &Side<'_>,
    b: &Side<'_>,
    scratch: &Path,
    backend: &Backend,
    on_round: &mut dyn FnMut(&super::Round),
) -> Result<Option<Local>, DisputeError> {
    let dispute = scratch.join("dispute.json");
    let key = crate::sign::SecretKey::generate().map_err(|e| unplayable(e.to_string()))?;
    let header = match open(a, b, &dispute, &key.public())? {
        Opening::Agree { .. } => return Ok(None),
        Opening::Dispute(h) => *h,
    };
    let dir = states_dir(&dispute);
    let [s0, s1] = header.segment.steps;
    let mut game = Game {
        lo: s0,
        hi: s1,
        rounds: Vec::new(),
        last: String::new(),
    };
    let mut party_steps = [0; 2];
    while !game.narrowed() {
        let step = game.lo + (game.hi - game.lo) / 2;
        let mut round = super::Round {
            step,
            lo: game.lo,
            hi: game.hi,
            answers: [None, None],
        };
        for (p, side) in [a, b].into_iter().enumerate() {
            let (st, n) = answer(side, &header, p, step, &dir, backend)?;
            round.answers[p] = Some(st);
            party_steps[p] += n;
        }
        game.rounds.push(round.clone());
        on_round(&round);
        if decide(&header, &game, &dir)? {
            game.lo = step;
        } else {
            game.hi = step;
        }
    }
    let judgement = judge(a.trained, &header, &game, &dir, backend)?;
    Ok(Some(Local {
        header,
        rounds: game.rounds,
        party_steps,
        judgement,
    }))
}
