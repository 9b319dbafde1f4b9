//! The dispute commands' execution: runs read through the gate, moves signed and appended,
//! the referee's replay, the verdict written; results on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use auditai::audit::Trained;
use auditai::dispute::{self, DisputeFile, Game, Header, Move, play, verdict};
use auditai::sign::{Envelope, SecretKey};
use auditai::train::device::Backend;
use auditai::trust::{Required, RunKind, SignedRun};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::super::{EXIT_FAILED, EXIT_OK, clean, write_json};
use super::{DataArgs, DisputeCmd, JudgeArgs, LocalArgs, OpenArgs, RefereeArgs, RespondArgs};

pub(super) fn dispute_cmd(cmd: &DisputeCmd) -> anyhow::Result<u8> {
    match cmd {
        DisputeCmd::Open(a) => open(a),
        DisputeCmd::Respond(a) => respond(a),
        DisputeCmd::Next(a) => next(a),
        DisputeCmd::Judge(a) => judge(a),
    }
}

/// A run read through the gate with what it trained on.
struct Loaded {
    run: SignedRun,
    trained: Trained,
}

impl Loaded {
    fn side(&self) -> play::Side<'_> {
        play::Side {
            run: &self.run,
            trained: &self.trained,
        }
    }
}

fn load(path: &Path, data: &DataArgs) -> anyhow::Result<Loaded> {
    let run = SignedRun::open(path, RunKind::Training, Required::Unchecked)?;
    let reveal = auditai::contribution::Reveal::parse(&data.reveal)?;
    let trained = auditai::audit::trained_on(&run, data.root.as_deref(), &reveal)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Loaded { run, trained })
}

fn backend(
    data: &DataArgs,
    committed: auditai::transcript::BackendKind,
) -> anyhow::Result<Backend> {
    use auditai::spec::DeviceChoice;
    let choice = data.device.map(Into::into).unwrap_or(match committed {
        auditai::transcript::BackendKind::Cpu => DeviceChoice::Cpu,
        auditai::transcript::BackendKind::Wgpu => DeviceChoice::Wgpu,
    });
    Ok(auditai::train::device::select(choice)?.0)
}

fn read(path: &Path) -> anyhow::Result<(DisputeFile, Game)> {
    let file = DisputeFile::read(path)?;
    let game = dispute::fold(&file).map_err(|w| anyhow!("{}: {w}", path.display()))?;
    Ok((file, game))
}

fn states(path: &Path, h: &Header) -> anyhow::Result<PathBuf> {
    let base = auditai::run_dir::of_manifest(path);
    Ok(auditai::fsio::safe_join(base, &h.states)?)
}

/// The referee's key, which must be the one that opened the dispute.
fn referee_key(path: &Path, h: &Header) -> anyhow::Result<SecretKey> {
    let key = SecretKey::read(path)?;
    if key.public().to_pem() != h.referee {
        bail!(
            "{} is not the key of the referee who opened this dispute",
            path.display()
        );
    }
    Ok(key)
}

fn open(a: &OpenArgs) -> anyhow::Result<u8> {
    let key = SecretKey::read(&a.key)?;
    if std::fs::symlink_metadata(&a.out).is_ok() {
        bail!(
            "{} already exists; not replacing it (pass another --out)",
            a.out.display()
        );
    }
    let (x, y) = (load(&a.run_a, &a.data)?, load(&a.run_b, &a.data)?);
    let mut out = std::io::stdout().lock();
    let header = match play::open(&x.side(), &y.side(), &a.out, &key.public())? {
        play::Opening::Agree { entries } => {
            writeln!(
                out,
                "no dispute: the runs agree on all {entries} transcript segment(s)"
            )?;
            return Ok(EXIT_OK);
        }
        play::Opening::Dispute(h) => *h,
    };
    let mut file = DisputeFile {
        header,
        moves: Vec::new(),
    };
    let game = dispute::fold(&file).map_err(anyhow::Error::msg)?;
    if !game.narrowed() {
        file.push(&dispute::request(&game, game.lo, game.hi), &key);
    }
    file.write(&a.out)?;
    let seg = &file.header.segment;
    if a.json {
        write_json(&mut out, &file.header)?;
    } else {
        writeln!(
            out,
            "{}: the runs first differ in transcript segment {} (epoch {}, steps {}..{}), compared {}",
            a.out.display(),
            seg.entry,
            seg.epoch,
            seg.steps[0],
            seg.steps[1],
            comparison(&file.header)
        )?;
        say_next(&mut out, &a.out, &file)?;
    }
    Ok(EXIT_OK)
}

fn comparison(h: &Header) -> &'static str {
    match h.comparison {
        dispute::Comparison::Bitwise => "bitwise",
        dispute::Comparison::Tolerance => "within tolerances (different backends)",
    }
}

/// What the dispute waits for.
fn say_next(out: &mut dyn Write, path: &Path, file: &DisputeFile) -> anyhow::Result<()> {
    let game = dispute::fold(file).map_err(anyhow::Error::msg)?;
    match game.open_request() {
        Some(r) => writeln!(
            out,
            "round {}: each party's state after step {}: `auditai dispute respond {} RUN --key NODE.pem`",
            game.rounds.len(),
            r.step,
            path.display()
        )?,
        None => writeln!(
            out,
            "one step is left: `auditai dispute judge {} --key REFEREE.pem`",
            path.display()
        )?,
    }
    Ok(())
}

fn respond(a: &RespondArgs) -> anyhow::Result<u8> {
    let (mut file, game) = read(&a.dispute)?;
    let h = file.header.clone();
    let Some(r) = game.open_request().cloned() else {
        bail!(
            "no request is open in {}: it is the referee's move (`dispute next` or `dispute judge`)",
            a.dispute.display()
        );
    };
    let x = load(&a.run, &a.data)?;
    let sha = x.run.sha256_hex();
    let p = h
        .parties
        .iter()
        .position(|q| auditai::hash::hex_eq(&q.manifest_sha256, &sha))
        .with_context(|| format!("{} is not a party to this dispute", a.run.display()))?;
    if r.answers[p].is_some() {
        bail!(
            "party {} has already answered round {}",
            p + 1,
            game.rounds.len()
        );
    }
    let key = SecretKey::read(&a.key)?;
    if !h.parties[p].signers.contains(&key.public().keyid) {
        bail!(
            "{} did not sign party {}'s run; answer with the key that did",
            a.key.display(),
            p + 1
        );
    }
    let dir = states(&a.dispute, &h)?;
    let be = backend(&a.data, x.trained.commitment.backend)?;
    let (state, steps) = play::answer(&x.side(), &h, p, r.step, &dir, &be)?;
    file.push(
        &Move::Answer {
            round: game.rounds.len(),
            party: p,
            step: r.step,
            state,
            files: dispute::state_files(p, r.step),
            head: h.parties[p].head.clone(),
            public_key: key.public().to_pem(),
            prev: game.last.clone(),
        },
        &key,
    );
    file.write(&a.dispute)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "party {} answered round {}: its state after step {} (replayed {steps} step(s))",
        p + 1,
        game.rounds.len(),
        r.step
    )?;
    Ok(EXIT_OK)
}

/// The game with the last complete round's decision applied.
fn settled(path: &Path, file: &DisputeFile, mut game: Game) -> anyhow::Result<Game> {
    if game
        .rounds
        .last()
        .is_some_and(|r| r.answers.iter().all(Option::is_some))
    {
        let agree = play::decide(&file.header, &game, &states(path, &file.header)?)?;
        game.settle(agree);
    }
    Ok(game)
}

fn next(a: &RefereeArgs) -> anyhow::Result<u8> {
    let (mut file, game) = read(&a.dispute)?;
    let key = referee_key(&a.key, &file.header)?;
    if let Some(r) = game.open_request() {
        let missing: Vec<String> = (0..2)
            .filter(|p| r.answers[*p].is_none())
            .map(|p| format!("party {}", p + 1))
            .collect();
        bail!(
            "round {} still waits for {}",
            game.rounds.len(),
            missing.join(" and ")
        );
    }
    let last = game.last.clone();
    let game = settled(&a.dispute, &file, game)?;
    let mut out = std::io::stdout().lock();
    if game.narrowed() {
        writeln!(
            out,
            "the parties agree after step {} and differ after step {}",
            game.lo, game.hi
        )?;
    } else {
        let mut g = game.clone();
        g.last = last;
        file.push(&dispute::request(&g, game.lo, game.hi), &key);
        file.write(&a.dispute)?;
        writeln!(
            out,
            "the disagreement lies in steps {}..{}",
            game.lo, game.hi
        )?;
    }
    say_next(&mut out, &a.dispute, &file)?;
    Ok(EXIT_OK)
}

fn judge(a: &JudgeArgs) -> anyhow::Result<u8> {
    let (file, game) = read(&a.dispute)?;
    let key = referee_key(&a.key, &file.header)?;
    let out_path = verdict_path(&a.dispute, a.out.as_deref())?;
    let h = &file.header;
    let ending = if let Some(r) = game.open_request() {
        let silent: Vec<usize> = (0..2).filter(|p| r.answers[*p].is_none()).collect();
        let [party] = silent.as_slice() else {
            bail!(
                "round {} has no answer yet from either party; wait for them",
                game.rounds.len()
            );
        };
        verdict::Ending::NoAnswer {
            round: game.rounds.len(),
            party: *party,
        }
    } else {
        let game = settled(&a.dispute, &file, game)?;
        if !game.narrowed() {
            bail!(
                "the disagreement is not yet one step wide (steps {}..{}): `auditai dispute next`",
                game.lo,
                game.hi
            );
        }
        let base = auditai::run_dir::of_manifest(&a.dispute);
        let run = auditai::fsio::recorded(base, &h.parties[0].run)?;
        let x = load(&run, &a.data)?;
        let be = backend(&a.data, x.trained.commitment.backend)?;
        let j = play::judge(&x.trained, h, &game, &states(&a.dispute, h)?, &be)?;
        verdict::Ending::Replayed {
            step: j.step,
            replayed: j.replayed,
            matches: j.matches,
            details: j.details,
        }
    };
    let st = verdict::statement(&file, &a.dispute, ending, &out_path);
    let mut env = Envelope::new(
        auditai::sign::IN_TOTO_PAYLOAD_TYPE,
        &serde_json::to_vec(&st)?,
    );
    env.sign(&key);
    auditai::fsio::write_atomic(&out_path, &env.to_bytes())
        .with_context(|| out_path.display().to_string())?;
    let d = st
        .predicate
        .auditai
        .dispute
        .as_deref()
        .context("the verdict")?;
    report(a.json, h, d, game_rounds(&file), Some(out_path), None)
}

fn game_rounds(file: &DisputeFile) -> usize {
    dispute::fold(file).map_or(0, |g| g.rounds.len())
}

/// Print the outcome; exit 1 when a party is wrong.
fn report(
    json: bool,
    h: &Header,
    d: &verdict::DisputeSummary,
    rounds: usize,
    verdict_file: Option<PathBuf>,
    costs: Option<([usize; 2], usize)>,
) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    let step = match &d.ending {
        verdict::Ending::Replayed { step, .. } => Some(*step),
        verdict::Ending::NoAnswer { .. } => None,
    };
    if json {
        write_json(
            &mut out,
            &Outcome {
                schema: "auditai.dispute-outcome/v1",
                dispute: true,
                winner: d.winner.map(|w| party_out(h, w)),
                losers: d.losers.iter().map(|p| party_out(h, *p)).collect(),
                step,
                rounds,
                verdict: verdict_file,
                party_steps: costs.map(|c| c.0),
                referee_steps: costs.map(|_| 1),
                audit_steps: costs.map(|c| c.1),
            },
        )?;
    } else {
        match &d.ending {
            verdict::Ending::Replayed { step, details, .. } => {
                writeln!(out, "the referee replayed step {step} -> {}:", step + 1)?;
                for (p, detail) in details.iter().enumerate() {
                    writeln!(
                        out,
                        "  party {} ({}): {}",
                        p + 1,
                        clean(&h.parties[p].run),
                        clean(detail)
                    )?;
                }
            }
            verdict::Ending::NoAnswer { round, party } => writeln!(
                out,
                "party {} ({}) did not answer round {round}",
                party + 1,
                clean(&h.parties[*party].run)
            )?,
        }
        if let Some(p) = &verdict_file {
            writeln!(out, "verdict: {} (signed)", p.display())?;
        }
        let names = |ps: &[usize]| {
            ps.iter()
                .map(|p| clean(&h.parties[*p].run))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        match (d.winner, d.losers.as_slice()) {
            (_, []) => writeln!(
                out,
                "no fault found: both claims match the referee's replay"
            )?,
            (Some(w), l) => writeln!(
                out,
                "{} trained honestly; {} did not",
                names(&[w]),
                names(l)
            )?,
            (None, l) => writeln!(out, "both parties are wrong: {}", names(l))?,
        }
    }
    out.flush()?;
    Ok(if d.losers.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

pub(super) fn local_cmd(a: &LocalArgs) -> anyhow::Result<u8> {
    let (x, y) = (load(&a.run_a, &a.data)?, load(&a.run_b, &a.data)?);
    let be = backend(&a.data, x.trained.commitment.backend)?;
    let scratch = tempfile::tempdir()?;
    let mut table = Builder::default();
    table.push_record([
        "round",
        "interval",
        "step",
        "party 1 weights",
        "party 2 weights",
    ]);
    let short = |s: &Option<dispute::State>| {
        s.as_ref().map_or("-".to_string(), |s| {
            s.weights_blake3.chars().take(16).collect()
        })
    };
    let mut n = 0;
    let played = play::play_local(&x.side(), &y.side(), scratch.path(), &be, &mut |r| {
        n += 1;
        table.push_record([
            n.to_string(),
            format!("{}..{}", r.lo, r.hi),
            r.step.to_string(),
            short(&r.answers[0]),
            short(&r.answers[1]),
        ]);
    })?;
    let total: usize = x
        .trained
        .entries
        .iter()
        .map(|e| e.body.steps[1].saturating_sub(e.body.steps[0]))
        .sum();
    let Some(mut local) = played else {
        let mut out = std::io::stdout().lock();
        if a.json {
            write_json(
                &mut out,
                &serde_json::json!({"schema": "auditai.dispute-outcome/v1", "dispute": false, "losers": [], "rounds": 0}),
            )?;
        } else {
            writeln!(
                out,
                "no dispute: the runs agree on all {} transcript segment(s)",
                x.trained.entries.len()
            )?;
        }
        return Ok(EXIT_OK);
    };
    // Name the runs as the user gave them, not relative to the scratch directory.
    for (p, l) in [&x, &y].into_iter().enumerate() {
        local.header.parties[p].run = l.run.path().display().to_string();
    }
    let ending = verdict::Ending::Replayed {
        step: local.judgement.step,
        replayed: local.judgement.replayed.clone(),
        matches: local.judgement.matches,
        details: local.judgement.details.clone(),
    };
    let (winner, losers) = verdict::DisputeSummary::decide(&ending);
    let d = verdict::DisputeSummary {
        header: local.header.clone(),
        moves: Vec::new(),
        ending,
        winner,
        losers,
    };
    if !a.json {
        let seg = &local.header.segment;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "the runs first differ in transcript segment {} (epoch {}, steps {}..{}), compared {}",
            seg.entry,
            seg.epoch,
            seg.steps[0],
            seg.steps[1],
            comparison(&local.header)
        )?;
        if local.rounds.is_empty() {
            writeln!(out, "the segment is one step long: no bisection needed")?;
        } else {
            writeln!(out, "{}", table.build().with(Style::sharp()))?;
        }
        writeln!(
            out,
            "steps replayed: party 1 {}, party 2 {}, referee 1 (a full audit replays {total})",
            local.party_steps[0], local.party_steps[1]
        )?;
    }
    report(
        a.json,
        &local.header,
        &d,
        local.rounds.len(),
        None,
        Some((local.party_steps, total)),
    )
}

/// A party in `--json`.
#[derive(Serialize)]
struct PartyOut {
    run: String,
    signers: Vec<String>,
}

/// `--json` of `judge` and `audit dispute`.
#[derive(Serialize)]
struct Outcome {
    schema: &'static str,
    dispute: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    winner: Option<PartyOut>,
    losers: Vec<PartyOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<usize>,
    rounds: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    party_steps: Option<[usize; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referee_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_steps: Option<usize>,
}

fn party_out(h: &auditai::dispute::Header, p: usize) -> PartyOut {
    PartyOut {
        run: h.parties[p].run.clone(),
        signers: h.parties[p].signers.clone(),
    }
}

/// Where a verdict goes: `--out`, else beside the dispute file.
fn verdict_path(dispute: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    match out {
        Some(p) if std::fs::symlink_metadata(p).is_ok() => {
            anyhow::bail!("{} already exists; pass another --out", p.display())
        }
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(auditai::vsa::default_path(
            dispute,
            auditai::vsa::VerdictKind::Dispute,
        )),
    }
}
