//! Disputes between two nodes given the same job: the refereed bisection names a cheater who
//! changed one step inside one segment and re-hashed and re-signed everything after it (so
//! `verify` and the chain checks pass), in the first, a middle and the last segment; a cheater
//! whose answers contradict its own record; a party that does not answer; two honest runs end
//! with "no dispute".

use super::support::{Output, Workspace, check, repo};

/// Iris, batches of 8 (13 steps an epoch), segments of 7 and 6 steps, two epochs: 4 segments.
const SPEC: &str = "version: 1\nname: job\nseed: 11\ndata:\n  path: iris.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [8]\ntraining:\n  epochs: 2\n  batch_size: 8\naudit:\n  every_steps: 7\n";

/// The job, an honest node `h` (run `honest/`) and the cheating node `me` (its run `cheat/`, a
/// copy of an honest run until it cheats) and the referee's key.
fn nodes(ws: &Workspace) {
    std::fs::copy(repo().join("fixtures/iris.csv"), ws.path().join("iris.csv")).unwrap();
    std::fs::write(ws.path().join("spec.yaml"), SPEC).unwrap();
    for k in ["h", "me", "referee"] {
        ws.run(&["keygen", "--out", k]).success();
    }
    for (out, key) in [("honest", "h.key"), ("cheat", "me.key")] {
        ws.run(&[
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            out,
            "-q",
            "--key",
            key,
        ])
        .success();
    }
}

use super::forge::Cheater;

/// Make `cheat/` skip step `step` of transcript entry `entry` and train on from there, re-signed
/// by the cheater (so nothing is visibly broken).
fn cheat(ws: &Workspace, entry: usize, step: usize) -> Cheater {
    let key = auditai::sign::SecretKey::read(&ws.path().join("me.key")).unwrap();
    super::forge::cheat(&ws.path().join("cheat"), ws.path(), entry, step, &key)
}

/// The cheater answering the open request from its own trace, as a cheater defending its record
/// would: its state files written, its answer signed.
fn answer_as_cheater(ws: &Workspace, c: &Cheater, file_name: &str) {
    use auditai::dispute::{self, DisputeFile, Move, State};
    let path = ws.path().join(file_name);
    let mut file = DisputeFile::read(&path).unwrap();
    let game = dispute::fold(&file).unwrap();
    let r = game.open_request().unwrap().clone();
    let b = &c.trained.entries[file.header.segment.entry - 1].body;
    let start = c.recorded(&ws.path().join("cheat"), b.index - 1);
    let (w, o) = c.within(b, &start, r.step).unwrap();
    let files = dispute::state_files(1, r.step);
    let states = ws.path().join(&file.header.states);
    std::fs::write(states.join(&files[0]), &w).unwrap();
    std::fs::write(states.join(&files[1]), &o).unwrap();
    let key = auditai::sign::SecretKey::read(&ws.path().join("me.key")).unwrap();
    let head = file.header.parties[1].head.clone();
    file.push(
        &Move::Answer {
            round: game.rounds.len(),
            party: 1,
            step: r.step,
            state: State {
                weights_blake3: blake3::hash(&w).to_hex().to_string(),
                optimizer_blake3: Some(blake3::hash(&o).to_hex().to_string()),
            },
            files,
            head,
            public_key: key.public().to_pem(),
            prev: game.last.clone(),
        },
        &key,
    );
    file.write(&path).unwrap();
}

fn local(ws: &Workspace, a: &str, b: &str) -> Output {
    ws.run(&["audit", "dispute", a, b, "--device", "cpu", "--json"])
}

#[test]
fn two_honest_runs_have_no_dispute() {
    let ws = Workspace::new();
    nodes(&ws);
    let o = local(&ws, "honest", "cheat").success();
    assert_eq!(o.json()["dispute"], false);
    let o = ws
        .run(&["audit", "dispute", "honest", "cheat", "--device", "cpu"])
        .success();
    assert_eq!(
        o.stdout,
        "no dispute: the runs agree on all 4 transcript segment(s)\n"
    );
    let o = ws
        .run(&["dispute", "open", "honest", "cheat", "--key", "referee.key"])
        .success();
    assert_eq!(
        o.stdout,
        "no dispute: the runs agree on all 4 transcript segment(s)\n"
    );
    assert!(!ws.path().join("dispute.json").exists());
}

#[test]
fn the_bisection_names_a_cheater_in_the_first_a_middle_and_the_last_segment() {
    for (entry, step) in [(1, 3), (2, 10), (4, 12)] {
        let ws = Workspace::new();
        nodes(&ws);
        cheat(&ws, entry, step);
        // Nothing is visibly broken: the cheater's run verifies.
        let v = ws.run(&[
            "verify",
            "cheat/manifest.intoto.json",
            "--key",
            "me.pub",
            "--root",
            ".",
        ]);
        assert_eq!(v.code, 0, "{}", v.stdout);
        let o = local(&ws, "honest", "cheat");
        assert_eq!(o.code, 1, "entry {entry}: {}{}", o.stdout, o.stderr);
        let j = o.json();
        assert_eq!(j["winner"]["run"], "honest/manifest.intoto.json", "{j:#}");
        assert_eq!(j["losers"][0]["run"], "cheat/manifest.intoto.json");
        // The cheater's node answers with auditai's own replays, which contradict its record at
        // the segment's end: the one step left is the segment's last.
        let last = if entry % 2 == 1 { 6 } else { 12 };
        assert_eq!(j["step"], last, "entry {entry} step {step}");
        assert_eq!(j["referee_steps"], 1);
        assert_eq!(j["audit_steps"], 26);
        assert!(j["rounds"].as_u64().unwrap() <= 3, "{j:#}");
        // The same, with the runs the other way round.
        let o = local(&ws, "cheat", "honest");
        assert_eq!(o.code, 1);
        assert_eq!(o.json()["winner"]["run"], "honest/manifest.intoto.json");
    }
}

/// `dispute respond` for the party whose run is `run`, signed with `key`.
fn respond(ws: &Workspace, run: &str, key: &str) -> Output {
    ws.run(&[
        "dispute",
        "respond",
        "dispute.json",
        run,
        "--key",
        key,
        "--device",
        "cpu",
    ])
}

#[test]
fn a_signed_game_ends_in_a_verdict_that_verify_and_a_policy_check() {
    let ws = Workspace::new();
    nodes(&ws);
    let cheater = cheat(&ws, 2, 9);
    let o = ws
        .run(&["dispute", "open", "honest", "cheat", "--key", "referee.key"])
        .success();
    assert_eq!(
        o.stdout,
        "dispute.json: the runs first differ in transcript segment 2 (epoch 1, steps 7..13), compared bitwise\nround 1: each party's state after step 10: `auditai dispute respond dispute.json RUN --key NODE.pem`\n"
    );
    let o = ws.run(&["dispute", "judge", "dispute.json", "--key", "referee.key"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: round 1 has no answer yet from either party; wait for them\n"
        )
    );
    // Out of turn: the referee cannot move before both answered; a party answers once, with
    // the key that signed its run.
    let early = ws.run(&["dispute", "next", "dispute.json", "--key", "referee.key"]);
    assert_eq!(
        (early.code, early.stderr.as_str()),
        (2, "error: round 1 still waits for party 1 and party 2\n")
    );
    let wrong = respond(&ws, "honest", "me.key");
    assert_eq!(wrong.code, 2);
    assert!(
        wrong.stderr.contains("did not sign party 1's run"),
        "{}",
        wrong.stderr
    );
    let mut rounds = 0;
    loop {
        rounds += 1;
        let a = respond(&ws, "honest", "h.key").success();
        assert!(
            a.stdout
                .starts_with(&format!("party 1 answered round {rounds}")),
            "{}",
            a.stdout
        );
        // The cheater defends its record: it answers from its own trace.
        answer_as_cheater(&ws, &cheater, "dispute.json");
        let again = respond(&ws, "cheat", "me.key");
        assert_eq!(again.code, 2);
        if rounds == 1 {
            let early = ws.run(&["dispute", "judge", "dispute.json", "--key", "referee.key"]);
            assert_eq!(early.code, 2);
            assert!(
                early
                    .stderr
                    .contains("the disagreement is not yet one step wide (steps 7..10)"),
                "{}",
                early.stderr
            );
        }
        let n = ws
            .run(&["dispute", "next", "dispute.json", "--key", "referee.key"])
            .success();
        if n.stdout.contains("one step is left") {
            assert!(
                n.stdout
                    .starts_with("the parties agree after step 9 and differ after step 10\n"),
                "{}",
                n.stdout
            );
            break;
        }
        assert!(rounds < 4, "{}", n.stdout);
    }
    let o = respond(&ws, "honest", "h.key");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("no request is open in dispute.json: it is the referee's move"),
        "{}",
        o.stderr
    );
    let bad_judge = ws.run(&["dispute", "judge", "dispute.json", "--key", "h.key"]);
    assert_eq!(bad_judge.code, 2);
    let o = ws.run(&[
        "dispute",
        "judge",
        "dispute.json",
        "--key",
        "referee.key",
        "-o",
        "honest/verdict-dispute-1.intoto.json",
    ]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("the referee replayed step 9 -> 10:\n  party 1 (honest/manifest.intoto.json): bitwise identical to the referee's replay\n  party 2 (cheat/manifest.intoto.json): differs from the referee's replay"), "{}", o.stdout);
    assert!(o.stdout.ends_with(
        "honest/manifest.intoto.json trained honestly; cheat/manifest.intoto.json did not\n"
    ));
    // verify re-checks every move and says who lost.
    let (code, v) = {
        let o = ws.run(&[
            "verify",
            "honest/verdict-dispute-1.intoto.json",
            "--key",
            "referee.pub",
            "--json",
        ]);
        (o.code, o.json())
    };
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "verdict resource")["status"], "pass", "{v:#}");
    assert_eq!(check(&v, "referee's replay")["status"], "claimed");
    assert_eq!(
        check(&v, "verdict result")["detail"],
        "honest/manifest.intoto.json trained honestly; cheat/manifest.intoto.json did not"
    );
    // A policy that requires a dispute verdict: the honest run meets it, the cheater does not.
    std::fs::write(
        ws.path().join("policy.yaml"),
        "version: 1\nsigners:\n  - name: h\n    key: h.pub\n  - name: me\n    key: me.pub\nverifiers:\n  - name: referee\n    key: referee.pub\nverdicts:\n  - kind: dispute\n    by: [referee]\n",
    )
    .unwrap();
    let ok = ws.run(&[
        "verify",
        "honest/manifest.intoto.json",
        "--policy",
        "policy.yaml",
        "--root",
        ".",
        "--allow-extra",
        "verdict-dispute-1.intoto.json",
        "--json",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    std::fs::copy(
        ws.path().join("honest/verdict-dispute-1.intoto.json"),
        ws.path().join("cheat/verdict-dispute-1.intoto.json"),
    )
    .unwrap();
    let no = ws.run(&[
        "verify",
        "cheat/manifest.intoto.json",
        "--policy",
        "policy.yaml",
        "--root",
        ".",
        "--allow-extra",
        "verdict-dispute-1.intoto.json",
        "--json",
    ]);
    assert_eq!(no.code, 1);
    assert!(
        check(&no.json(), "required verdict")["detail"]
            .as_str()
            .unwrap()
            .contains("the dispute found this run wrong")
    );
    // An edited move breaks the chain.
    let text = std::fs::read_to_string(ws.path().join("dispute.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut edited = file.clone();
    edited["moves"].as_array_mut().unwrap().remove(1);
    std::fs::write(ws.path().join("dispute.json"), edited.to_string()).unwrap();
    let broken = ws.run(&["dispute", "next", "dispute.json", "--key", "referee.key"]);
    assert_eq!(broken.code, 2);
    assert!(
        broken
            .stderr
            .contains("does not chain from the move before"),
        "{}",
        broken.stderr
    );
}

#[test]
fn a_cheater_who_answers_against_its_own_record_or_not_at_all_loses() {
    let ws = Workspace::new();
    nodes(&ws);
    cheat(&ws, 3, 2);
    ws.run(&["dispute", "open", "honest", "cheat", "--key", "referee.key"])
        .success();
    // The cheater answers with a state its record cannot reach (another party's digest, re-signed).
    respond(&ws, "honest", "h.key").success();
    let path = ws.path().join("dispute.json");
    let mut file = auditai::dispute::DisputeFile::read(&path).unwrap();
    let game = auditai::dispute::fold(&file).unwrap();
    let r = game.open_request().unwrap().clone();
    let key = auditai::sign::SecretKey::read(&ws.path().join("me.key")).unwrap();
    file.push(
        &auditai::dispute::Move::Answer {
            round: 1,
            party: 1,
            step: r.step,
            state: auditai::dispute::State {
                weights_blake3: "00".repeat(32),
                optimizer_blake3: Some("11".repeat(32)),
            },
            files: auditai::dispute::state_files(1, r.step),
            head: file.header.parties[1].head.clone(),
            public_key: key.public().to_pem(),
            prev: game.last.clone(),
        },
        &key,
    );
    file.write(&path).unwrap();
    ws.run(&["dispute", "next", "dispute.json", "--key", "referee.key"])
        .success();
    while !ws
        .run(&["dispute", "next", "dispute.json", "--key", "referee.key"])
        .stdout
        .contains("one step is left")
    {
        respond(&ws, "honest", "h.key").success();
        respond(&ws, "cheat", "me.key").success();
    }
    let o = ws.run(&[
        "dispute",
        "judge",
        "dispute.json",
        "--key",
        "referee.key",
        "--json",
    ]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert_eq!(o.json()["losers"][0]["run"], "cheat/manifest.intoto.json");

    // A party that does not answer loses.
    let ws = Workspace::new();
    nodes(&ws);
    cheat(&ws, 1, 5);
    ws.run(&[
        "dispute",
        "open",
        "honest",
        "cheat",
        "--key",
        "referee.key",
        "-o",
        "d.json",
    ])
    .success();
    ws.run(&[
        "dispute", "respond", "d.json", "honest", "--key", "h.key", "--device", "cpu",
    ])
    .success();
    let o = ws.run(&["dispute", "judge", "d.json", "--key", "referee.key"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout
            .starts_with("party 2 (cheat/manifest.intoto.json) did not answer round 1\n"),
        "{}",
        o.stdout
    );
}

#[test]
fn runs_of_different_jobs_cannot_be_disputed() {
    let ws = Workspace::new();
    nodes(&ws);
    std::fs::write(
        ws.path().join("other.yaml"),
        SPEC.replace("seed: 11", "seed: 12"),
    )
    .unwrap();
    ws.run(&[
        "run",
        "other.yaml",
        "--device",
        "cpu",
        "--out",
        "other",
        "-q",
        "--key",
        "me.key",
    ])
    .success();
    let o = ws.run(&["audit", "dispute", "honest", "other"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: the runs were not given the same job: their commitments differ in spec, seed, initial weights\n"
        )
    );
    let o = ws.run(&[
        "dispute",
        "respond",
        "missing.json",
        "honest",
        "--key",
        "h.key",
    ]);
    assert_eq!(o.code, 2);
    // A run that is not a party cannot answer.
    cheat(&ws, 1, 3);
    ws.run(&["dispute", "open", "honest", "cheat", "--key", "referee.key"])
        .success();
    let o = ws.run(&[
        "dispute",
        "respond",
        "dispute.json",
        "other",
        "--key",
        "me.key",
    ]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("other is not a party to this dispute"),
        "{}",
        o.stderr
    );
}

#[test]
fn across_backends_the_game_compares_within_tolerances() {
    let ws = Workspace::new();
    nodes(&ws);
    ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "wgpu",
        "--out",
        "gpu",
        "-q",
        "--key",
        "h.key",
    ])
    .success();
    let o = ws.run(&["audit", "dispute", "gpu", "honest"]).success();
    assert_eq!(
        o.stdout,
        "no dispute: the runs agree on all 4 transcript segment(s)\n"
    );
    cheat(&ws, 3, 2);
    let o = ws.run(&["audit", "dispute", "gpu", "cheat", "--device", "cpu"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.starts_with("the runs first differ in transcript segment 3 (epoch 2, steps 0..7), compared within tolerances (different backends)\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(
            "  party 1 (gpu/manifest.intoto.json): within tolerance of the referee's replay"
        ),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.ends_with(
            "gpu/manifest.intoto.json trained honestly; cheat/manifest.intoto.json did not\n"
        ),
        "{}",
        o.stdout
    );
}
