//! The audit's transcript checks: the committed schedule (epochs, segments, learning rates,
//! batch orders), the final model and the checkpoint files the transcript names.

use super::inputs::{MAX_RUN_FILE, read_pinned};
use crate::data;
use crate::manifest::{Extension, TranscriptRef};
use crate::report::{CheckId, Report, Status};
use crate::shuffle;
use crate::spec::Spec;
use crate::transcript::{self, Entry};

/// The entries the committed spec and data call for must be exactly the recorded ones: every
/// epoch in order, every segment of it, with the committed learning rate and batch order.
pub(crate) fn check_schedule(
    spec: &Spec,
    data: &data::Prepared,
    entries: &[Entry],
) -> Result<String, String> {
    let t = &spec.training;
    let rows = data.train.rows;
    let batches = rows.div_ceil(t.batch_size);
    let Some(last) = entries.last() else {
        return Err("the transcript is empty".into());
    };
    let epochs = last.body.epoch;
    if epochs == 0 || epochs > t.epochs {
        return Err(format!(
            "the transcript ends in epoch {epochs}; the spec trains 1 to {} epochs",
            t.epochs
        ));
    }
    if epochs < t.epochs && t.early_stopping.is_none() {
        return Err(format!(
            "the transcript ends after epoch {epochs} of {}, and the spec has no early stopping",
            t.epochs
        ));
    }
    // Count before listing: the epoch count comes from an untrusted transcript.
    let ends = spec.audit.segment_ends(batches);
    let want = epochs.saturating_mul(ends.len());
    if want != entries.len() {
        let have: Vec<usize> = entries.iter().map(|e| e.body.epoch).collect();
        return Err(format!(
            "{} entries for {epochs} epochs, the committed schedule calls for {want} (epochs recorded: {})",
            entries.len(),
            compact(&have)
        ));
    }
    let expected = (1..=epochs).flat_map(|epoch| {
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts
            .zip(ends.iter().copied())
            .map(move |(from, to)| (epoch, from, to))
    });
    for (i, (e, (epoch, from, to))) in entries.iter().zip(expected).enumerate() {
        let b = &e.body;
        let n = i + 1;
        if b.index != n || b.epoch != epoch || b.steps != [from, to] {
            return Err(format!(
                "entry {n} is epoch {} steps {}..{}, the committed schedule calls for epoch {epoch} steps {from}..{to} (an epoch or segment is missing, repeated or out of order)",
                b.epoch, b.steps[0], b.steps[1]
            ));
        }
        let lr = t.schedule.lr_at(t.optimizer.lr, epoch - 1, t.epochs);
        if b.lr != lr {
            return Err(format!(
                "entry {n} (epoch {epoch}) records learning rate {}, the committed schedule gives {lr}",
                b.lr
            ));
        }
        let order = shuffle::epoch_order(spec.seed, epoch - 1, rows);
        let seg = &order[from * t.batch_size..(to * t.batch_size).min(rows)];
        if !crate::hash::hex_eq(&b.batch_order_blake3, &transcript::order_digest(seg)) {
            return Err(format!(
                "entry {n} (epoch {epoch}) records a batch order that is not the committed seed's"
            ));
        }
    }
    Ok(format!(
        "{epochs} epoch(s) of {batches} steps in {} segment(s); learning rates and batch orders as committed",
        entries.len()
    ))
}

/// `1-3, 5` style list of numbers.
pub(super) fn compact(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j].checked_add(1) == Some(v[j + 1]) {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    out.join(", ")
}

pub(super) fn check_final_model(
    st: &crate::manifest::Statement,
    ext: &Extension,
    entries: &[Entry],
    r: &mut Report,
) {
    let subject = st
        .subject
        .iter()
        .find(|s| s.name.as_deref() == Some(crate::run_dir::MODEL_BPK))
        .and_then(|s| s.digest.get("blake3"));
    let epoch_end = entries
        .iter()
        .rev()
        .find(|e| e.body.epoch == ext.final_epoch);
    match (subject, epoch_end) {
        (Some(s), Some(e)) if crate::hash::hex_eq(s, &e.body.weights_blake3) => r.push_row(
            CheckId::FinalModel,
            Status::Pass,
            format!(
                "model.bpk is the transcript's weights after epoch {}",
                ext.final_epoch
            ),
        ),
        (Some(s), Some(e)) => r.push_row(
            CheckId::FinalModel,
            Status::Fail,
            format!(
                "model.bpk has blake3 {s}; the transcript's weights after epoch {} are {}",
                ext.final_epoch, e.body.weights_blake3
            ),
        ),
        _ => r.push_row(
            CheckId::FinalModel,
            Status::Fail,
            format!(
                "the manifest's model.bpk or final epoch {} is not in the transcript",
                ext.final_epoch
            ),
        ),
    }
}

/// Every checkpoint the transcript names must be on disk with its digest. Returns whether all are.
pub(super) fn check_checkpoints(
    run: &crate::trust::SignedRun,
    entries: &[Entry],
    pruned: bool,
    r: &mut Report,
) -> bool {
    let mut bad = Vec::new();
    let mut bytes = 0u64;
    for e in entries {
        for (name, digest) in [
            (&e.body.weights, &e.body.weights_blake3),
            (&e.body.optimizer, &e.body.optimizer_blake3),
        ] {
            match read_pinned(run, name, digest, MAX_RUN_FILE) {
                Ok(b) => bytes += b.len() as u64,
                Err(why) => bad.push(format!("{name}: {why}")),
            }
        }
    }
    if bad.is_empty() {
        r.push_row(
            CheckId::Checkpoints,
            Status::Pass,
            format!(
                "{} files ({:.1} MB) match the transcript",
                entries.len() * 2,
                bytes as f64 / 1e6
            ),
        );
        true
    } else {
        let more = if bad.len() > 3 {
            format!(" and {} more", bad.len() - 3)
        } else {
            String::new()
        };
        let hint = if pruned {
            " (the spec's `outputs.checkpoints: last` deleted them; keep `all` for auditable runs)"
        } else {
            ""
        };
        r.push_row(
            CheckId::Checkpoints,
            Status::Fail,
            format!("{}{more}{hint}", bad[..bad.len().min(3)].join("; ")),
        );
        false
    }
}

/// The transcript the manifest pins, its hash chain from the commitment and its head: the
/// entries and the head when they hold.
pub(super) fn check_transcript(
    run: &crate::trust::SignedRun,
    t_ref: &TranscriptRef,
    c_bytes: &[u8],
    r: &mut Report,
) -> Option<(Vec<Entry>, String)> {
    let entries = match read_pinned(run, &t_ref.path, &t_ref.blake3, crate::fsio::MAX_DOCUMENT)
        .and_then(|b| {
            transcript::parse_jsonl(&String::from_utf8_lossy(&b), &run.dir().join(&t_ref.path))
                .map_err(|e| e.to_string())
        }) {
        Ok(e) => e,
        Err(why) => {
            r.push_row(CheckId::Transcript, Status::Fail, why);
            return None;
        }
    };
    let start = transcript::chain_start(c_bytes);
    let head = match transcript::check_chain(&start, &entries) {
        Ok(h) => hex::encode(h),
        Err(b) => {
            r.push_row(CheckId::TranscriptChain, Status::Fail, b.message);
            return None;
        }
    };
    if head != t_ref.head || entries.len() != t_ref.entries {
        r.push_row(
            CheckId::TranscriptChain,
            Status::Fail,
            format!(
                "{} entries with head {head}; the manifest records {} entries with head {}",
                entries.len(),
                t_ref.entries,
                t_ref.head
            ),
        );
        return None;
    }
    r.push_row(
        CheckId::TranscriptChain,
        Status::Pass,
        format!(
            "{} entries chained from the commitment, head {head}",
            entries.len()
        ),
    );
    Some((entries, head))
}
