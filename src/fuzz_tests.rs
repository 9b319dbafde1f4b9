//! Property tests over every parser of untrusted input: random bytes and mutations of real
//! documents (from `fixtures/fuzz/`) must give a value or an error, never a panic or a hang.
//!
//! The number of cases per parser is proptest's `PROPTEST_CASES` (256 when unset; CI runs the
//! default). `docs/security.md` says how to run longer and what was found.

use std::path::Path;

use proptest::prelude::*;

use crate::{anchor, data, spec, transcript};

const MANIFEST: &[u8] = include_bytes!("../fixtures/fuzz/manifest.intoto.json");
const RECEIPT: &[u8] = include_bytes!("../fixtures/fuzz/manifest.anchor.json");
const TRANSCRIPT: &[u8] = include_bytes!("../fixtures/fuzz/transcript.jsonl");
#[cfg(feature = "train")]
const STATE: &[u8] = include_bytes!("../fixtures/fuzz/checkpoint-state.json");
const COMMITMENT: &[u8] = include_bytes!("../fixtures/fuzz/commitment.json");
const POLICY: &[u8] = include_bytes!("../fixtures/fuzz/policy.yaml");
const SPEC: &[u8] = include_bytes!("../fixtures/fuzz/spec.yaml");
const CSV: &[u8] = include_bytes!("../fixtures/iris.csv");
const RAW_CSV: &[u8] = include_bytes!("../fixtures/penguins.csv");
/// A spec for the raw penguins: inferred columns, gaps, categories.
const RAW_SPEC: &str = "version: 1\nname: p\nseed: 1\ndata:\n  path: penguins.csv\n  label: species\n  task: classification\n  columns: { year: exclude }\nmodel:\n  type: mlp\n";
const PIPELINE: &[u8] = include_bytes!("../fixtures/fuzz/pipeline.yaml");
const CRITERIA: &[u8] = include_bytes!("../fixtures/fuzz/criteria.yaml");
const LOG: &[u8] = include_bytes!("../fixtures/fuzz/predictions.jsonl");
const CARD: &[u8] = include_bytes!("../fixtures/fuzz/model-card.md");
const BOM: &[u8] = include_bytes!("../fixtures/fuzz/bom.cdx.json");
const CONTRIBUTION: &[u8] = include_bytes!("../fixtures/fuzz/contribution.json");
const REWARDS: &[u8] = include_bytes!("../fixtures/fuzz/rewards.json");
/// A spec over two sources (`data.sources`).
const SOURCES_SPEC: &str = "version: 1\nname: s\nseed: 1\ndata:\n  sources:\n    - path: a.csv\n    - path: b.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n";

/// The fixture spec and data, prepared once (the schedule check needs them).
#[cfg(feature = "train")]
static PREPARED: std::sync::LazyLock<(spec::Spec, data::Prepared)> =
    std::sync::LazyLock::new(|| {
        let spec = spec::Spec::parse(&text(SPEC), Path::new("spec.yaml")).unwrap();
        let data = data::parse(&spec, CSV).unwrap();
        (spec, data)
    });

/// A dispute file two rounds in (built with fresh keys, so made here rather than stored).
static DISPUTE: std::sync::LazyLock<&'static [u8]> =
    std::sync::LazyLock::new(|| Vec::leak(crate::dispute::tests::seed()));

/// The raw penguins, prepared once.
static RAW_PREPARED: std::sync::OnceLock<data::Prepared> = std::sync::OnceLock::new();

/// A valid `.ots` proof with a fork, both attestation kinds and every operation.
fn ots_seed() -> Vec<u8> {
    use anchor::ots::{Attestation, Op, Timestamp, encode_file};
    let mut t = Timestamp::new(vec![7; 32]);
    let c = t.add_op(Op::Prepend(vec![0])).add_op(Op::Sha256);
    c.add_op(Op::Append(vec![1; 32]))
        .add_op(Op::Sha256)
        .attestations
        .push(Attestation::Pending("https://calendar.example".into()));
    c.add_op(Op::Keccak256)
        .attestations
        .push(Attestation::Bitcoin(840_000));
    encode_file(&[7; 32], &t)
}

/// One edit of a document: overwrite, insert or delete a byte, or duplicate a slice (which
/// grows nesting and lengths).
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Repeat(usize, usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 1usize..64, 1u8..32).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
    ]
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match *e {
            Edit::Set(i, b) if !v.is_empty() => v[i % len] = b,
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Delete(i) if !v.is_empty() => {
                v.remove(i % len);
            }
            Edit::Repeat(i, n, k) if !v.is_empty() => {
                let start = i % len;
                let end = (start + n).min(v.len());
                let piece = v[start..end].to_vec();
                for _ in 0..k {
                    v.splice(end..end, piece.iter().copied());
                }
            }
            _ => {}
        }
    }
    v
}

/// Random bytes, or a mutated seed: the input every target gets.
fn input(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::collection::vec(edit(), 1..8).prop_map(move |e| mutate(seed, &e)),
    ]
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

proptest! {
    #[test]
    fn envelopes_and_statements(b in input(MANIFEST)) {
        let _ = crate::manifest::open(&b);
    }

    #[test]
    fn receipts(b in input(RECEIPT)) {
        if let Ok(r) = anchor::parse_receipt(&b, Path::new("r.anchor.json")) {
            let _ = anchor::check_inclusion(&r, MANIFEST);
        }
    }

    #[test]
    fn ots_proofs(edits in proptest::collection::vec(edit(), 0..8), random in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for b in [mutate(&ots_seed(), &edits), random] {
            if let Ok((_, ts)) = anchor::ots::decode_file(&b) {
                let _ = ts.attestations();
                let mut out = Vec::new();
                ts.serialize(&mut out);
            }
        }
    }

    #[test]
    fn transcripts(b in input(TRANSCRIPT)) {
        if let Ok(entries) = transcript::parse_jsonl(&text(&b), Path::new("t.jsonl")) {
            let _ = transcript::check_chain(&[0; 32], &entries);
            #[cfg(feature = "train")]
            {
                let (spec, data) = &*PREPARED;
                let _ = crate::audit::check_schedule(spec, data, &entries);
            }
        }
    }

    #[cfg(feature = "train")]
    #[test]
    fn checkpoint_states(b in input(STATE)) {
        let _ = crate::train::parse_state(&b, Path::new("epoch-0001.json"));
    }

    #[test]
    fn commitments(b in input(COMMITMENT)) {
        let _ = serde_json::from_slice::<transcript::Commitment>(&b);
    }

    #[test]
    fn policies(b in input(POLICY)) {
        let _ = crate::trust::Policy::parse(&text(&b), Path::new("/nonexistent/policy.yaml"));
    }

    #[test]
    fn specs(b in input(SPEC)) {
        let _ = spec::Spec::parse(&text(&b), Path::new("spec.yaml"));
    }

    #[test]
    fn pipeline_specs(b in input(PIPELINE)) {
        let _ = spec::PipelineSpec::parse(&text(&b), Path::new("pipeline.yaml"));
        let _ = spec::SpecFile::parse(&text(&b), Path::new("pipeline.yaml"));
    }

    #[test]
    fn criteria(b in input(CRITERIA)) {
        let _ = crate::eval::Criteria::parse(&text(&b), Path::new("criteria.yaml"));
    }

    #[test]
    fn prediction_logs(b in input(LOG)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, &b).unwrap();
        let _ = crate::predlog::check(&path, &[[0; 32]]);
    }

    #[test]
    fn exported_documents(b in input(CARD)) {
        let _ = crate::export::binding::open(&b);
    }

    #[test]
    fn the_gate(b in input(MANIFEST)) {
        use crate::trust::{Required, RunKind, SignedRun, Trust};
        let _ = crate::trust::classify(&b);
        if let Ok(run) = SignedRun::from_bytes(
            Path::new("/nonexistent/r/manifest.intoto.json").to_path_buf(),
            b.clone(),
            RunKind::Any,
            Required::Unchecked,
        ) {
            let _ = run.read("model.bpk", 1 << 20);
            let _ = run.stage("x");
            let _ = run.spec();
        }
        let trust = Trust::default();
        let _ = crate::trust::statement_from_bytes::<crate::vsa::VerdictStatement>(
            Path::new("v.intoto.json"),
            b.clone(),
            crate::trust::DocumentKind::Verdict,
            &trust,
        );
        if let Ok((_, _, v)) = crate::manifest::open_envelope(&b) {
            let _ = serde_json::from_value::<crate::predlog::CheckpointStatement>(v)
                .map(|c| c.prefix_sha256());
        }
    }

    #[test]
    fn sealed_boms(b in input(BOM)) {
        let _ = crate::export::binding::open(&b);
    }

    #[test]
    fn dispute_files(b in input(&DISPUTE)) {
        if let Ok(file) = serde_json::from_slice::<crate::dispute::DisputeFile>(&b)
            && let Ok(g) = crate::dispute::fold(&file)
        {
            let _ = g.claim(&file.header, 1, g.hi);
            let _ = crate::dispute::next_interval(&file.header, &g);
        }
    }

    #[test]
    fn contributions(b in input(CONTRIBUTION)) {
        let _ = crate::contribution::from_bytes(Path::new("c.contribution.json"), b);
    }

    #[test]
    fn reward_trees(b in input(REWARDS)) {
        if let Ok(d) = serde_json::from_slice::<crate::rewards::tree::Dump>(&b)
            && d.validate().is_ok()
        {
            for i in 0..d.values.len() {
                let _ = d.proof(i);
            }
        }
    }

    #[test]
    fn csv_sources(a in input(CSV), b in input(CSV)) {
        let spec = spec::Spec::parse(SOURCES_SPEC, Path::new("spec.yaml"));
        prop_assert!(spec.is_ok());
        if let Ok(spec) = spec {
            let files = [
                data::SourceBytes { path: "a.csv".into(), bytes: a },
                data::SourceBytes { path: "b.csv".into(), bytes: b },
            ];
            if let Ok(p) = data::parse_sources(&spec, &files, data::ParseOptions::default()) {
                let n: usize = p.rows_by_source(&p.train).iter().sum();
                prop_assert_eq!(n, p.train.rows);
            }
        }
    }

    #[test]
    fn csv_data(b in input(CSV)) {
        let spec = spec::Spec::parse(&text(SPEC), Path::new("spec.yaml"));
        prop_assert!(spec.is_ok());
        if let Ok(spec) = spec {
            let _ = data::parse(&spec, &b);
        }
    }

    #[test]
    fn raw_csv_data(b in input(RAW_CSV), skip in any::<bool>()) {
        let spec = spec::Spec::parse(RAW_SPEC, Path::new("spec.yaml"));
        prop_assert!(spec.is_ok());
        if let Ok(spec) = spec {
            let _ = data::parse_with(&spec, &b, data::ParseOptions { skip_bad_rows: skip });
        }
    }

    /// Any table a CSV writer writes with one of the delimiters reads back cell for cell, and
    /// the sniffer finds that delimiter.
    #[test]
    fn tables_read_back_and_their_delimiter_is_sniffed(
        d in prop::sample::select(vec![
            spec::Delimiter::Comma,
            spec::Delimiter::Semicolon,
            spec::Delimiter::Tab,
            spec::Delimiter::Pipe,
            spec::Delimiter::Whitespace,
        ]),
        width in 2usize..6,
        cells in prop::collection::vec("[a-zA-Z0-9.,;|\" -]{1,8}", 2..60),
    ) {
        let rows: Vec<Vec<String>> = cells
            .chunks(width)
            .filter(|c| c.len() == width)
            .map(|c| c.iter().map(|x| x.trim().to_string()).collect())
            .filter(|r: &Vec<String>| r.iter().all(|x| !x.is_empty()))
            .collect();
        prop_assume!(!rows.is_empty());
        let mut w = csv::WriterBuilder::new()
            .delimiter(d.byte())
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(Vec::new());
        let header: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        prop_assert!(w.write_record(&header).is_ok());
        for r in &rows {
            prop_assert!(w.write_record(r).is_ok());
        }
        let bytes = w.into_inner().unwrap_or_default();
        let dialect = data::Dialect { delimiter: d, missing: Vec::new() };
        let (mut r, _) = data::table::reader(bytes.as_slice(), &dialect);
        let got: Vec<Vec<String>> = r
            .records()
            .map(|rec| rec.map(|x| x.iter().map(str::to_string).collect()).unwrap_or_default())
            .collect();
        prop_assert_eq!(got, rows);
        prop_assert_eq!(data::table::sniff(&bytes), d);
    }

    /// A fitted preprocessing encodes any cells to finite features or refuses the row.
    #[test]
    fn raw_rows_encode_or_are_refused(cells in prop::collection::vec("\\PC{0,12}", 0..10)) {
        let spec = spec::Spec::parse(RAW_SPEC, Path::new("spec.yaml")).unwrap();
        let pre = &RAW_PREPARED.get_or_init(|| data::parse(&spec, RAW_CSV).unwrap()).preprocessing;
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        if pre.encode(&refs, &mut out).is_ok() {
            prop_assert_eq!(out.len(), pre.width());
            prop_assert!(out.iter().all(|v| v.is_finite()));
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn small_formats(s in "\\PC{0,80}") {
        let _ = anchor::bitcoin::parse_header(&s);
        let _ = anchor::chain::parse_quantity(&serde_json::Value::String(s.clone()));
        let _ = anchor::chain::root_from_calldata(s.as_bytes());
        let _ = crate::provenance::strip_userinfo(&s);
        let _ = anchor::redact_url(&s);
    }

    #[test]
    fn unix_times(secs in any::<u64>()) {
        let _ = crate::manifest::format_unix(secs);
    }
}

#[test]
fn the_seeds_parse() {
    assert!(crate::manifest::open(MANIFEST).is_ok());
    assert!(anchor::parse_receipt(RECEIPT, Path::new("r")).is_ok());
    assert!(anchor::ots::decode_file(&ots_seed()).is_ok());
    assert!(transcript::parse_jsonl(&text(TRANSCRIPT), Path::new("t")).is_ok());
    #[cfg(feature = "train")]
    assert!(crate::train::parse_state(STATE, Path::new("s")).is_ok());
    assert!(serde_json::from_slice::<transcript::Commitment>(COMMITMENT).is_ok());
    assert!(crate::trust::Policy::parse(&text(POLICY), Path::new("/p.yaml")).is_ok());
    let spec = spec::Spec::parse(&text(SPEC), Path::new("spec.yaml")).unwrap();
    assert!(data::parse(&spec, CSV).is_ok());
    spec::PipelineSpec::parse(&text(PIPELINE), Path::new("pipeline.yaml")).unwrap();
    crate::eval::Criteria::parse(&text(CRITERIA), Path::new("criteria.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log.jsonl"), LOG).unwrap();
    assert_eq!(
        crate::predlog::check(&dir.path().join("log.jsonl"), &[])
            .unwrap()
            .entries,
        2
    );
    assert!(crate::export::binding::open(CARD).is_some());
}

#[test]
fn a_630_kb_proof_stays_bounded() {
    // The shape that made an earlier parser copy the message at every node: forks whose
    // appends keep growing the message.
    let mut proof = anchor::ots::MAGIC.to_vec();
    proof.extend_from_slice(&[0x01, 0x08]);
    proof.extend_from_slice(&[0; 32]);
    for _ in 0..160 {
        proof.extend_from_slice(&[0xff, 0xf0, 0xff, 0x1f]);
        proof.extend(std::iter::repeat_n(0u8, 0xfff));
    }
    assert!(proof.len() > 630_000);
    let err = anchor::ots::decode_file(&proof).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed OpenTimestamps proof: an operation's result exceeds 4096 bytes"
    );
    assert_eq!(
        crate::manifest::format_unix(u64::MAX),
        "unix time 18446744073709551615 (out of range)"
    );
}
