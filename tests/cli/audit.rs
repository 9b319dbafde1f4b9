//! `auditai audit`: honest runs pass; each forgery fails for its own reason, even when the forger
//! holds the signing key and re-signs a manifest whose every digest matches the files (so that
//! `auditai verify` passes).

use std::path::{Path, PathBuf};

use auditai::sign::SecretKey;
use auditai::transcript::{self, Entry};

use crate::chain::{Anvil, DEV_KEY};
use crate::support::{Output, Workspace, check, output};

/// The tiny iris spec, trained for four epochs (4 steps each) on the CPU and signed.
fn honest(ws: &Workspace, out: &str) -> PathBuf {
    ws.tiny_spec();
    ws.derive_spec("spec.yaml", |spec| spec.replace("epochs: 2", "epochs: 4"));
    if !ws.path().join("me.key").exists() {
        ws.run(&["keygen", "--out", "me"]).success();
    }
    train(ws, "spec.yaml", out)
}

fn train(ws: &Workspace, spec: &str, out: &str) -> PathBuf {
    ws.run(&[
        "run", spec, "--device", "cpu", "--out", out, "-q", "--key", "me.key",
    ])
    .success();
    ws.path().join(out)
}

fn audit(ws: &Workspace, extra: &[&str]) -> (i32, serde_json::Value) {
    ws.audit_json(extra)
}

/// Audit every segment with a fixed challenge.
fn audit_all(ws: &Workspace) -> (i32, serde_json::Value) {
    audit(ws, &["--challenge", "00", "--segments", "100"])
}

fn verify_code(ws: &Workspace) -> i32 {
    ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--key",
        "me.pub",
    ])
    .code
}

fn segment(v: &serde_json::Value, index: u64) -> &serde_json::Value {
    v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["index"] == index)
        .unwrap_or_else(|| panic!("segment {index} was not replayed: {v:#}"))
}

fn entries(dir: &Path) -> Vec<Entry> {
    let p = dir.join("transcript.jsonl");
    transcript::parse_jsonl(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

/// What a forger holding the signing key can do after tampering with a run: write `bodies` as
/// the transcript, chained from the commitment on disk, and re-sign a manifest whose digests match
/// every file on disk.
pub(crate) fn reseal(ws: &Workspace, dir: &Path, bodies: Vec<transcript::Body>) {
    reseal_with(ws, dir, bodies, |_| {});
}

/// [`reseal`], with a last edit of the statement before it is signed.
fn reseal_with(
    ws: &Workspace,
    dir: &Path,
    bodies: Vec<transcript::Body>,
    edit: impl FnOnce(&mut auditai::manifest::Statement),
) {
    let key = SecretKey::read(&ws.path().join("me.key")).unwrap();
    crate::forge::reseal(dir, bodies, &key, edit);
}

pub(crate) fn bodies(dir: &Path) -> Vec<transcript::Body> {
    entries(dir).into_iter().map(|e| e.body).collect()
}

#[test]
fn an_honest_run_passes_and_the_challenge_picks_reproducibly() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let e = entries(&dir);
    assert_eq!(e.len(), 4);
    assert_eq!(
        e.iter()
            .map(|e| (e.body.epoch, e.body.steps))
            .collect::<Vec<_>>(),
        vec![(1, [0, 4]), (2, [0, 4]), (3, [0, 4]), (4, [0, 4])]
    );

    // `run --json` reports the commitment and the chain head the manifest records.
    let j = ws
        .run(&[
            "run",
            "spec.yaml",
            "--device",
            "cpu",
            "--out",
            "j",
            "--json",
            "-q",
        ])
        .success()
        .json();
    let je = entries(&ws.path().join("j"));
    assert_eq!(j["transcript_entries"], 4);
    assert_eq!(j["transcript_head"], je[3].chain.as_str());
    assert_eq!(
        j["commitment_blake3"],
        je[0].prev.as_str(),
        "the chain starts from the commitment"
    );

    let (code, v) = audit(&ws, &["--challenge", "c0ffee", "--segments", "2"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["challenge"], "c0ffee");
    assert_eq!(v["challenge_source"], "explicit");
    assert_eq!(v["segments_total"], 4);
    assert_eq!(v["trained_on"], "cpu");
    assert_eq!(v["replayed_on"], "cpu");
    assert_eq!(
        (v["replayed_steps"].clone(), v["total_steps"].clone()),
        (8.into(), 16.into())
    );
    // The choice is the documented function of the challenge and the chain head.
    let head = &e[3].chain;
    let expected = auditai::audit::select(&[0xc0, 0xff, 0xee], head, 4, 2);
    assert_eq!(v["selected"], serde_json::json!(expected));
    for s in v["segments"].as_array().unwrap() {
        assert_eq!(s["status"], "pass", "{s}");
        assert_eq!(s["comparison"], "bitwise");
        assert_eq!(s["replayed_blake3"], s["recorded_blake3"]);
        assert_eq!(s["distance"]["linf"], 0.0);
    }
    for name in [
        "commitment",
        "spec",
        "data iris.csv",
        "initial weights",
        "transcript chain",
        "transcript schedule",
        "final model",
        "checkpoints",
    ] {
        assert_eq!(check(&v, name)["status"], "pass", "{name}: {v:#}");
    }
    assert_eq!(check(&v, "commitment anchor")["status"], "skip");

    // Without a challenge, fresh randomness is used and printed; passing it back repeats the
    // audit's choice.
    let (code, r) = audit(&ws, &["--segments", "2"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["challenge_source"], "random");
    let ch = r["challenge"].as_str().unwrap().to_string();
    assert_eq!(ch.len(), 64);
    let (_, again) = audit(&ws, &["--segments", "2", "--challenge", &ch]);
    assert_eq!(again["selected"], r["selected"]);

    // The table form ends with the verdict.
    let out = ws.run(&[
        "audit",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--challenge",
        "00",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with(
            "audit passed: r/manifest.intoto.json — replayed 3 of 4 segments (12 of 16 steps, 75.0%)\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("challenge (explicit): 00\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn step_segments_checkpoint_within_epochs_and_replay() {
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.derive_spec("spec.yaml", |spec| {
        format!("{spec}audit:\n  every_steps: 3\n")
    });
    ws.run(&["keygen", "--out", "me"]).success();
    let dir = train(&ws, "spec.yaml", "r");
    let steps: Vec<(usize, [usize; 2], String)> = entries(&dir)
        .into_iter()
        .map(|e| (e.body.epoch, e.body.steps, e.body.weights))
        .collect();
    assert_eq!(
        steps,
        vec![
            (
                1,
                [0, 3],
                "checkpoints/epoch-0001-step-00003.bpk".to_string()
            ),
            (1, [3, 4], "checkpoints/epoch-0001.bpk".to_string()),
            (
                2,
                [0, 3],
                "checkpoints/epoch-0002-step-00003.bpk".to_string()
            ),
            (2, [3, 4], "checkpoints/epoch-0002.bpk".to_string()),
        ]
    );
    let (code, v) = audit_all(&ws);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["segments"].as_array().unwrap().len(), 4);
    assert_eq!(verify_code(&ws), 0);
}

#[test]
fn perturbed_weights_fail_the_replay() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    // Nudge one weight of epoch 2's checkpoint by 1e-3, then re-seal everything.
    let path = dir.join("checkpoints/epoch-0002.bpk");
    let mut bytes = std::fs::read(&path).unwrap();
    let reader =
        burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes.clone())).unwrap();
    let name = reader.tensor_names()[0].to_string();
    let data = reader.tensor_data(&name).unwrap();
    let at = bytes
        .windows(data.len())
        .position(|w| w == data.as_slice())
        .unwrap();
    let v = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + 1e-3;
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let mut b = bodies(&dir);
    b[1].weights_blake3 = blake3::hash(&bytes).to_hex().to_string();
    reseal(&ws, &dir, b);
    assert_eq!(verify_code(&ws), 0, "the forgery is consistent for verify");

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "transcript chain")["status"], "pass");
    assert_eq!(check(&v, "checkpoints")["status"], "pass");
    assert_eq!(segment(&v, 1)["status"], "pass");
    let s2 = segment(&v, 2);
    assert_eq!(s2["status"], "fail");
    assert!(
        s2["detail"]
            .as_str()
            .unwrap()
            .starts_with("the replay does not reproduce the recorded weights (L∞ 1.00e-3"),
        "{s2}"
    );
}

#[test]
fn swapped_epochs_fail_the_replay() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let ck = dir.join("checkpoints");
    for ext in ["bpk", "optim.bpk"] {
        let (a, b) = (
            ck.join(format!("epoch-0002.{ext}")),
            ck.join(format!("epoch-0003.{ext}")),
        );
        let tmp = ck.join("swap");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
    }
    let mut b = bodies(&dir);
    let (x, y) = b.split_at_mut(2);
    std::mem::swap(&mut x[1].weights_blake3, &mut y[0].weights_blake3);
    std::mem::swap(&mut x[1].optimizer_blake3, &mut y[0].optimizer_blake3);
    reseal(&ws, &dir, b);
    assert_eq!(verify_code(&ws), 0);

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "transcript schedule")["status"], "pass");
    assert_eq!(segment(&v, 1)["status"], "pass");
    for i in [2, 3, 4] {
        assert_eq!(segment(&v, i)["status"], "fail", "segment {i}: {v:#}");
    }
}

#[test]
fn a_transcript_trained_with_another_learning_rate_fails_the_replay() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    // Train the same spec at ten times the committed learning rate...
    ws.derive_spec("fast.yaml", |spec| {
        format!("{spec}  optimizer:\n    lr: 0.01\n")
    });
    let fast = train(&ws, "fast.yaml", "fast");
    // ...and pass its checkpoints off as the committed run's, claiming the committed rate.
    for f in std::fs::read_dir(fast.join("checkpoints")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join("checkpoints").join(f.file_name().unwrap())).unwrap();
    }
    for f in ["model.bpk", "model.safetensors"] {
        std::fs::copy(fast.join(f), dir.join(f)).unwrap();
    }
    let committed: Vec<f64> = bodies(&dir).iter().map(|b| b.lr).collect();
    let mut b = bodies(&fast);
    assert_ne!(b[0].lr, committed[0]);
    for (body, lr) in b.iter_mut().zip(&committed) {
        body.lr = *lr;
    }
    reseal(&ws, &dir, b);
    assert_eq!(verify_code(&ws), 0);

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "transcript schedule")["status"], "pass");
    assert_eq!(check(&v, "final model")["status"], "pass");
    for i in 1..=4 {
        assert_eq!(segment(&v, i)["status"], "fail", "segment {i}: {v:#}");
    }

    // Recording the rate actually used is caught before any replay.
    let honest_lr = bodies(&fast);
    reseal(&ws, &dir, honest_lr);
    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1);
    assert_eq!(
        check(&v, "transcript schedule")["detail"],
        "entry 1 (epoch 1) records learning rate 0.01, the committed schedule gives 0.001"
    );
}

#[test]
fn a_skipped_epoch_fails_the_schedule() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    for f in ["epoch-0003.bpk", "epoch-0003.optim.bpk", "epoch-0003.json"] {
        std::fs::remove_file(dir.join("checkpoints").join(f)).unwrap();
    }
    let mut b = bodies(&dir);
    b.remove(2);
    b[2].index = 3;
    reseal(&ws, &dir, b);
    assert_eq!(verify_code(&ws), 0);

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    let s = check(&v, "transcript schedule");
    assert_eq!(s["status"], "fail");
    assert_eq!(
        s["detail"],
        "3 entries for 4 epochs, the committed schedule calls for 4 (epochs recorded: 1-2, 4)"
    );
}

#[test]
fn a_malformed_segment_is_a_failure_not_a_crash() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let mut b = bodies(&dir);
    b[1].steps = [3, 999];
    reseal(&ws, &dir, b);
    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "transcript schedule")["status"], "fail");
    assert_eq!(
        segment(&v, 2)["detail"],
        "cannot replay epoch 2 steps 3..999: outside the committed 4 epochs of 4 steps"
    );
    assert_eq!(segment(&v, 1)["status"], "pass");

    // Weights of another architecture are refused, not loaded (burn would panic on them).
    let dir = honest(&ws, "r2");
    ws.derive_spec("wide.yaml", |spec| {
        spec.replace("hidden: [8]", "hidden: [9]")
    });
    let wide = train(&ws, "wide.yaml", "wide");
    std::fs::copy(
        wide.join("checkpoints/epoch-0002.bpk"),
        dir.join("checkpoints/epoch-0002.bpk"),
    )
    .unwrap();
    let mut b = bodies(&dir);
    b[1].weights_blake3 = crate::support::b3(&dir.join("checkpoints/epoch-0002.bpk"));
    reseal(&ws, &dir, b);
    let out = ws.run(&[
        "audit",
        "r2/manifest.intoto.json",
        "--challenge",
        "00",
        "--segments",
        "4",
        "--json",
        "-q",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        segment(&v, 2)["detail"],
        "the checkpoint after the segment is not this model's: its tensors' names or shapes differ from the model's"
    );
    assert_eq!(
        segment(&v, 3)["detail"],
        "the checkpoint before the segment is not this model's: its tensors' names or shapes differ from the model's"
    );
    assert_eq!(check(&v, "validation")["status"], "fail");
}

#[test]
fn initial_weights_not_from_the_committed_seed_fail() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    // The weights another seed draws, claimed in the commitment of this run.
    ws.derive_spec("other.yaml", |spec| spec.replace("seed: 5", "seed: 6"));
    let other = train(&ws, "other.yaml", "other");
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("commitment.json")).unwrap()).unwrap()
    };
    let theirs = read(&other)["initial_weights_blake3"].clone();
    let mut c = read(&dir);
    assert_ne!(c["initial_weights_blake3"], theirs);
    c["initial_weights_blake3"] = theirs.clone();
    std::fs::write(
        dir.join("commitment.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    reseal(&ws, &dir, bodies(&dir));
    assert_eq!(verify_code(&ws), 0);

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    let row = check(&v, "initial weights");
    assert_eq!(row["status"], "fail");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("not from the committed seed: seed 5 gives blake3 "),
        "{row}"
    );
    assert!(row["detail"].as_str().unwrap().ends_with(&format!(
        ", the commitment records {}",
        theirs.as_str().unwrap()
    )));
}

#[test]
fn a_checkpoint_changed_on_disk_fails() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let path = dir.join("checkpoints/epoch-0003.optim.bpk");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    let row = check(&v, "checkpoints");
    assert_eq!(row["status"], "fail");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("checkpoints/epoch-0003.optim.bpk: changed: blake3 is "),
        "{row}"
    );
    let s4 = segment(&v, 4);
    assert_eq!(s4["status"], "fail");
    assert!(
        s4["detail"]
            .as_str()
            .unwrap()
            .starts_with("cannot replay: changed: blake3 is "),
        "{s4}"
    );
    assert_eq!(segment(&v, 3)["status"], "pass");
}

#[test]
fn validation_losses_and_early_stopping_are_recomputed() {
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.derive_spec("spec.yaml", |spec| {
        spec.replace(
            "epochs: 2\n",
            "epochs: 40\n  optimizer:\n    lr: 0.1\n  early_stopping:\n    patience: 2\n",
        )
    });
    ws.run(&["keygen", "--out", "me"]).success();
    let dir = train(&ws, "spec.yaml", "r");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["stopped_early"], true,
        "the fixture must stop early"
    );
    let (last, best) = (
        summary["epochs_run"].as_u64().unwrap(),
        summary["final_epoch"].as_u64().unwrap(),
    );
    let (code, v) = audit(&ws, &["--challenge", "00", "--segments", "1"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        check(&v, "validation")["detail"],
        format!(
            "{last} epochs' validation losses recomputed (bitwise); training ends after epoch {last} and the final model is epoch {best}, as recorded"
        )
    );

    // A re-signed manifest that claims a better validation loss than the weights give.
    reseal_with(&ws, &dir, bodies(&dir), |st| {
        let c = &mut st.predicate.auditai.as_mut().unwrap().checkpoints[0];
        c.val_loss *= 0.5;
    });
    assert_eq!(verify_code(&ws), 0);
    let (code, v) = audit(&ws, &["--challenge", "00", "--segments", "1"]);
    assert_eq!(code, 1, "{v:#}");
    let row = check(&v, "validation");
    assert_eq!(row["status"], "fail");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("epoch 1: the validation loss is "),
        "{row}"
    );

    // A transcript cut short of where early stopping ends it, passed off as an early stop.
    let dir2 = train(&ws, "spec.yaml", "r2");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&dir2, &dir).unwrap();
    let mut b = bodies(&dir);
    b.truncate(b.len() - 1);
    let keep = b.len();
    reseal_with(&ws, &dir, b, |st| {
        let ext = st.predicate.auditai.as_mut().unwrap();
        ext.checkpoints.truncate(keep);
        ext.final_epoch = ext.final_epoch.min(keep);
    });
    let (code, v) = audit(&ws, &["--challenge", "00", "--segments", "1"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        check(&v, "validation")["detail"],
        format!(
            "the transcript ends after epoch {keep} of 40, but early stopping does not stop there"
        )
    );
}

#[test]
fn a_re_signed_preprocessing_that_the_data_does_not_fit_fails() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let (code, v) = audit(&ws, &["--challenge", "00", "--segments", "1"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "preprocessing")["status"], "pass");
    // A forger shifts one column's scaling (so that predict applies another transform) and
    // re-signs a manifest whose digests match: verify passes, the refit does not.
    let path = dir.join("preprocessing.json");
    let mut pre: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let offset = pre["columns"][0]["offset"].as_f64().unwrap();
    pre["columns"][0]["offset"] = serde_json::json!(offset + 1.0);
    std::fs::write(&path, serde_json::to_vec_pretty(&pre).unwrap()).unwrap();
    reseal(&ws, &dir, bodies(&dir));
    assert_eq!(verify_code(&ws), 0);
    let (code, v) = audit(&ws, &["--challenge", "00", "--segments", "1"]);
    assert_eq!(code, 1, "{v:#}");
    let row = check(&v, "preprocessing");
    assert_eq!(
        (&row["status"], &row["detail"]),
        (
            &serde_json::Value::from("fail"),
            &serde_json::Value::from(
                "preprocessing.json is not what the committed data and spec fit: the run's transforms differ from its data"
            )
        )
    );
}

#[test]
fn pruned_checkpoints_cannot_be_audited() {
    let ws = Workspace::new();
    ws.tiny_spec();
    ws.derive_spec("spec.yaml", |spec| {
        format!(
            "{}outputs:\n  checkpoints: last\n",
            spec.replace("epochs: 2", "epochs: 4")
        )
    });
    ws.run(&["keygen", "--out", "me"]).success();
    train(&ws, "spec.yaml", "r");
    let (code, v) = audit_all(&ws);
    assert_eq!(code, 1, "{v:#}");
    let row = check(&v, "checkpoints");
    assert_eq!(row["status"], "fail");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("checkpoints/epoch-0001.bpk: missing; "),
        "{detail}"
    );
    assert!(
        detail.ends_with(
            " (the spec's `outputs.checkpoints: last` deleted them; keep `all` for auditable runs)"
        ),
        "{detail}"
    );
}

#[test]
fn tampering_outside_the_replay_is_caught_by_its_own_check() {
    let ws = Workspace::new();
    let dir = honest(&ws, "r");
    let fails = |name: &str, detail_start: &str| {
        let (code, v) = audit_all(&ws);
        assert_eq!(code, 1, "{v:#}");
        let row = check(&v, name);
        assert_eq!(row["status"], "fail", "{row}");
        let detail = row["detail"].as_str().unwrap();
        assert!(detail.starts_with(detail_start), "{name}: {detail}");
    };
    let edit = |path: &Path, f: &dyn Fn(String) -> String| {
        let text = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, f(text)).unwrap();
    };

    // The commitment file, the transcript file and the data, each changed in place.
    let commitment = dir.join("commitment.json");
    let original = std::fs::read_to_string(&commitment).unwrap();
    edit(&commitment, &|t| t.replace("\"seed\": 5", "\"seed\": 6"));
    fails("commitment", "changed: blake3 is ");
    std::fs::write(&commitment, &original).unwrap();

    let transcript_path = dir.join("transcript.jsonl");
    let original = std::fs::read_to_string(&transcript_path).unwrap();
    edit(&transcript_path, &|t| {
        t.replacen("\"epoch\":2", "\"epoch\":3", 1)
    });
    fails("transcript", "changed: blake3 is ");

    // The same edit with the manifest's transcript digest updated: the chain breaks.
    reseal_with(&ws, &dir, bodies(&dir), |st| {
        let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
        lines[1] = lines[1].replacen("\"epoch\":2", "\"epoch\":3", 1);
        let text = format!("{}\n", lines.join("\n"));
        std::fs::write(&transcript_path, &text).unwrap();
        let t = st
            .predicate
            .auditai
            .as_mut()
            .unwrap()
            .transcript
            .as_mut()
            .unwrap();
        t.blake3 = blake3::hash(text.as_bytes()).to_hex().to_string();
    });
    fails(
        "transcript chain",
        "entry 2 was altered after it was chained",
    );
    reseal(&ws, &dir, bodies(&dir));

    let data = ws.path().join("iris.csv");
    let original = std::fs::read_to_string(&data).unwrap();
    edit(&data, &|t| t.replacen("5.1", "5.2", 1));
    fails("data iris.csv", "changed: blake3 is ");
    std::fs::write(&data, &original).unwrap();

    // A manifest without a commitment cannot be audited.
    reseal_with(&ws, &dir, bodies(&dir), |st| {
        st.predicate.auditai.as_mut().unwrap().commitment = None;
    });
    fails(
        "manifest",
        "no training commitment and transcript: the run cannot be audited",
    );

    // --resume refuses data that no longer matches the commitment.
    let again = train(&ws, "spec.yaml", "again");
    std::fs::remove_file(again.join("manifest.intoto.json")).unwrap();
    edit(&data, &|t| t.replacen("5.1", "5.2", 1));
    let o = ws.run(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "again",
        "--resume",
    ]);
    assert_eq!(
        (o.code, o.stderr.lines().last().unwrap_or("")),
        (
            2,
            "error: cannot resume again: the data differs from the run's training commitment; start a new run"
        )
    );
}

#[test]
fn usage_and_input_errors_exit_2() {
    let ws = Workspace::new();
    honest(&ws, "r");
    let run = |args: &[&str]| -> Output {
        let mut all = vec!["audit", "r/manifest.intoto.json", "--root", "."];
        all.extend_from_slice(args);
        ws.run(&all)
    };
    let o = run(&["--challenge", "xyz"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: --challenge `xyz` is not a non-empty hex string\n"
        )
    );
    let o = run(&["--segments", "0"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "error: --segments must be at least 1\n")
    );
    // A challenge from the anchor must be read from the chain, not from the prover's receipt.
    let o = run(&["--challenge-from-anchor"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (
            2,
            "",
            "error: --challenge-from-anchor: the challenge must come from the chain, not from the receipt the prover wrote: pass --rpc or --chain (or accept an unchecked challenge with --allow-unconfirmed-challenge)\n"
        )
    );
    let o = run(&["--challenge-from-anchor", "--allow-unconfirmed-challenge"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("error: --challenge-from-anchor: r/manifest.anchor.json: "),
        "{}",
        o.stderr
    );
    let o = ws.run(&["audit", "nope.json"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.starts_with("error: nope.json: "), "{}", o.stderr);
    let o = ws.run(&["run", "spec.yaml", "--out", "x", "--anchor-commitment"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: --anchor-commitment needs a target: --chain or --rpc, and/or --ots or --calendar\n"
        )
    );
    assert!(!ws.path().join("x").exists());
    let o = ws.run(&["run", "spec.yaml", "--out", "x", "--chain", "local"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: --chain, --rpc, --ots and --calendar apply to --anchor-commitment; add it or drop them\n"
        )
    );
    // A receipt without an EVM anchor has no block hash to challenge with.
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(ws.path().join("r/manifest.intoto.json")).unwrap(),
        ))
    };
    let receipt = serde_json::json!({
        "schema": "auditai.anchor-receipt/v1",
        "manifest": "manifest.intoto.json",
        "manifestSha256": sha,
        "leafIndex": 0,
        "treeSize": 1,
        "path": [],
        "root": sha,
    });
    std::fs::write(
        ws.path().join("r/manifest.anchor.json"),
        serde_json::to_vec(&receipt).unwrap(),
    )
    .unwrap();
    let o = run(&["--challenge-from-anchor", "--allow-unconfirmed-challenge"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "error: --challenge-from-anchor: r/manifest.anchor.json records no EVM anchor (OpenTimestamps gives no block hash yet)\n"
        )
    );
    // A commitment that cannot be anchored stops the run before training.
    let mut cmd = ws.cmd(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "y",
        "--anchor-commitment",
        "--rpc",
        "http://127.0.0.1:9",
        "--chain-id",
        "31337",
    ]);
    cmd.env("AUDITAI_ANCHOR_KEY", DEV_KEY);
    let o = output(cmd);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains(
            "error: anchoring the training commitment failed, so training did not start (rerun with --resume once fixed): "
        ),
        "{}",
        o.stderr
    );
    assert!(ws.path().join("y/commitment.json").exists());
    assert!(!ws.path().join("y/checkpoints").exists());
}

#[test]
fn commitment_anchored_before_training_and_challenge_from_the_manifest_anchor() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    honest(&ws, "plain");
    let with_key = |args: &[&str]| {
        let mut cmd = ws.cmd(args);
        cmd.env("AUDITAI_ANCHOR_KEY", DEV_KEY);
        output(cmd)
    };
    let out = with_key(&[
        "run",
        "spec.yaml",
        "--device",
        "cpu",
        "--out",
        "r",
        "--key",
        "me.key",
        "--anchor-commitment",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
    ])
    .success_with_stderr();
    assert!(
        out.stderr
            .contains("committed: r/commitment.json, anchored on local in block "),
        "{}",
        out.stderr
    );
    let commit_receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("r/commitment.anchor.json")).unwrap())
            .unwrap();
    with_key(&[
        "anchor",
        "r/manifest.intoto.json",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "-q",
    ])
    .success();
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("r/manifest.anchor.json")).unwrap())
            .unwrap();
    assert!(receipt["evm"]["blockNumber"].as_u64() > commit_receipt["evm"]["blockNumber"].as_u64());

    // The challenge block comes 6 blocks after the anchor: not there yet, the audit waits.
    let anchor_block = receipt["evm"]["blockNumber"].as_u64().unwrap();
    let o = ws.run(&[
        "audit",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--challenge-from-anchor",
        "--rpc",
        &chain.url,
        "-q",
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert_eq!(
        o.stderr,
        format!(
            "error: --challenge-from-anchor: the challenge block {} (6 blocks after the anchor) is not mined yet (the chain is at block {}); audit again once it is, or wait for it with --timeout\n",
            anchor_block + 6,
            chain.block_number()
        )
    );
    // A block that does not come within --timeout: the same refusal, after waiting.
    let o = ws.run(&[
        "audit",
        "r/manifest.intoto.json",
        "--root",
        ".",
        "--challenge-from-anchor",
        "--rpc",
        &chain.url,
        "--timeout",
        "1s",
        "-q",
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.ends_with(
            "is not mined yet (the chain is at block {}); it was not mined within --timeout; audit again once it is\n"
                .replace("{}", &chain.block_number().to_string())
                .as_str()
        ),
        "{}",
        o.stderr
    );
    // With --timeout it waits, printing one line per change of the chain's head (not one per
    // poll), and goes on once the block is mined.
    let started = ws
        .cmd(&[
            "audit",
            "r/manifest.intoto.json",
            "--root",
            ".",
            "--challenge-from-anchor",
            "--rpc",
            &chain.url,
            "--timeout",
            "60s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let head = chain.block_number();
    chain.rpc("anvil_mine", serde_json::json!(["0x6"]));
    let done = started.wait_with_output().unwrap();
    let stderr = String::from_utf8(done.stderr).unwrap();
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    let waiting = format!(
        "waiting for the challenge block {} (the chain is at block {head})\n",
        anchor_block + 6
    );
    assert!(stderr.starts_with(&waiting), "{stderr}");
    assert_eq!(stderr.matches("waiting for").count(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["challenge_source"], "anchor");
    // --timeout means nothing to an audit whose challenge does not come from the chain.
    let o = ws.run(&["audit", "r/manifest.intoto.json", "--timeout", "1s", "-q"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "error: --timeout applies to --challenge-from-anchor (how long to wait for the challenge block) and to --rerun (the stage's time limit)\n"
    );
    let (code, v) = audit(&ws, &["--challenge-from-anchor", "--rpc", &chain.url]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["challenge_source"], "anchor");
    let challenge_block = chain.rpc(
        "eth_getBlockByNumber",
        serde_json::json!([format!("0x{:x}", anchor_block + 6), false]),
    );
    assert_eq!(
        format!("0x{}", v["challenge"].as_str().unwrap()),
        challenge_block["hash"].as_str().unwrap()
    );
    assert_ne!(v["challenge"], receipt["evm"]["blockHash"]);
    assert_eq!(check(&v, "challenge")["status"], "pass");
    let row = check(&v, "commitment anchor");
    assert_eq!(row["status"], "pass");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("; the manifest is anchored later, in block "),
        "{detail}"
    );
    assert!(detail.contains(", verified online ("), "{detail}");

    // Offline, only by name: the receipt's block hash is used and reported as claimed.
    let (code, v) = audit(
        &ws,
        &["--challenge-from-anchor", "--allow-unconfirmed-challenge"],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["challenge_source"], "anchor-unconfirmed");
    assert_eq!(check(&v, "challenge")["status"], "claimed");
    assert_eq!(check(&v, "commitment anchor")["status"], "claimed");

    // A reorg that drops the commitment's block fails the audit online.
    let depth = chain.block_number() - commit_receipt["evm"]["blockNumber"].as_u64().unwrap() + 1;
    chain.rpc("anvil_reorg", serde_json::json!([depth, []]));
    let (code, v) = audit(&ws, &["--challenge", "00", "--rpc", &chain.url]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "commitment anchor")["status"], "fail");
}
