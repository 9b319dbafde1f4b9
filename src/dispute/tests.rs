use super::*;

fn state(w: &str) -> State {
    State {
        weights_blake3: w.repeat(64),
        optimizer_blake3: Some(w.repeat(64)),
    }
}

struct Keys {
    referee: SecretKey,
    a: SecretKey,
    b: SecretKey,
}

fn game() -> (DisputeFile, Keys) {
    let keys = Keys {
        referee: SecretKey::generate().unwrap(),
        a: SecretKey::generate().unwrap(),
        b: SecretKey::generate().unwrap(),
    };
    let party = |k: &SecretKey, claim: &str| Party {
        run: "r/manifest.intoto.json".into(),
        manifest_sha256: "00".repeat(32),
        signers: vec![k.public().keyid],
        backend: "cpu".into(),
        head: format!("head-{claim}"),
        before: state("a"),
        claimed: state(claim),
    };
    let header = Header {
        schema: DISPUTE_SCHEMA.into(),
        job: Job {
            spec_blake3: "s".into(),
            seed: 1,
            data: vec!["d".into()],
            initial_weights_blake3: "i".into(),
        },
        parties: [party(&keys.a, "b"), party(&keys.b, "c")],
        segment: Segment {
            entry: 2,
            epoch: 1,
            steps: [8, 16],
            agreed: state("a"),
        },
        comparison: Comparison::Bitwise,
        referee: keys.referee.public().to_pem(),
        states: "d.states".into(),
    };
    (
        DisputeFile {
            header,
            moves: Vec::new(),
        },
        keys,
    )
}

fn answer(file: &mut DisputeFile, party: usize, key: &SecretKey, st: State) {
    let g = fold(file).unwrap();
    let r = g.open_request().unwrap();
    let m = Move::Answer {
        round: g.rounds.len(),
        party,
        step: r.step,
        state: st,
        files: state_files(party, r.step),
        head: file.header.parties[party].head.clone(),
        public_key: key.public().to_pem(),
        prev: g.last.clone(),
    };
    file.push(&m, key);
}

#[test]
fn a_game_narrows_by_halves_and_every_move_is_checked() {
    let (mut file, k) = game();
    let g = fold(&file).unwrap();
    file.push(&request(&g, g.lo, g.hi), &k.referee);
    assert_eq!(fold(&file).unwrap().open_request().unwrap().step, 12);
    answer(&mut file, 0, &k.a, state("x"));
    answer(&mut file, 1, &k.b, state("x"));
    let g = fold(&file).unwrap();
    assert_eq!(next_interval(&file.header, &g), Some((12, 16)));
    file.push(&request(&g, 12, 16), &k.referee);
    answer(&mut file, 0, &k.a, state("y"));
    answer(&mut file, 1, &k.b, state("z"));
    let mut g = fold(&file).unwrap();
    assert_eq!((g.lo, g.hi, g.rounds.len()), (12, 16, 2));
    g.settle(false);
    assert_eq!((g.lo, g.hi), (12, 14));
    assert_eq!(g.claim(&file.header, 1, 14), Some(state("z")));
    assert_eq!(g.claim(&file.header, 1, 16), Some(state("c")));

    // A request whose interval does not follow from the answers.
    let mut bad = file.clone();
    let g = fold(&bad).unwrap();
    bad.push(&request(&g, 14, 16), &k.referee);
    assert!(
        fold(&bad)
            .unwrap_err()
            .contains("the answers give (12, 14)")
    );
    // A request signed by someone else.
    let mut bad = file.clone();
    bad.push(&request(&g, 12, 14), &k.a);
    assert!(fold(&bad).unwrap_err().contains("(request): not signed by"));
    // An answer by a key that did not sign the party's run, and one out of turn.
    let mut bad = file.clone();
    bad.push(&request(&g, 12, 14), &k.referee);
    let mut wrong = bad.clone();
    answer(&mut wrong, 0, &k.b, state("q"));
    assert!(
        fold(&wrong)
            .unwrap_err()
            .contains("which did not sign its run")
    );
    answer(&mut bad, 0, &k.a, state("q"));
    let g2 = fold(&bad).unwrap();
    let twice = Move::Answer {
        round: 3,
        party: 0,
        step: 13,
        state: state("q"),
        files: state_files(0, 13),
        head: bad.header.parties[0].head.clone(),
        public_key: k.a.public().to_pem(),
        prev: g2.last.clone(),
    };
    bad.push(&twice, &k.a);
    assert!(fold(&bad).unwrap_err().contains("party 1 answered twice"));
    // A dropped move breaks the chain; an edited header breaks the first link.
    let mut dropped = file.clone();
    dropped.moves.remove(1);
    assert!(fold(&dropped).unwrap_err().contains("does not chain"));
    let mut edited = file.clone();
    edited.header.segment.steps = [8, 17];
    assert!(fold(&edited).unwrap_err().contains("does not chain"));
}

#[test]
fn an_answer_must_extend_its_partys_recorded_chain() {
    let (mut file, k) = game();
    let g = fold(&file).unwrap();
    file.push(&request(&g, g.lo, g.hi), &k.referee);
    file.header.parties[0].head = "another".into();
    let g = fold(&file);
    assert!(g.is_err(), "the header edit breaks the chain first");
    let (mut file, k) = game();
    let g = fold(&file).unwrap();
    file.push(&request(&g, g.lo, g.hi), &k.referee);
    let g = fold(&file).unwrap();
    let m = Move::Answer {
        round: 1,
        party: 0,
        step: 12,
        state: state("x"),
        files: state_files(0, 12),
        head: "not-its-head".into(),
        public_key: k.a.public().to_pem(),
        prev: g.last.clone(),
    };
    file.push(&m, &k.a);
    assert!(
        fold(&file)
            .unwrap_err()
            .contains("does not extend party 1's recorded chain")
    );
}

/// A dispute file two rounds in, for the property tests.
pub(crate) fn seed() -> Vec<u8> {
    let (mut file, k) = game();
    let g = fold(&file).unwrap();
    file.push(&request(&g, g.lo, g.hi), &k.referee);
    answer(&mut file, 0, &k.a, state("x"));
    answer(&mut file, 1, &k.b, state("y"));
    let g = fold(&file).unwrap();
    file.push(&request(&g, 8, 12), &k.referee);
    serde_json::to_vec_pretty(&file).unwrap()
}
