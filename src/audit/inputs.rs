//! The audit's input checks: the run directory against the manifest (as `verify` checks it),
//! and the files the commitment pins (spec, data), read through bounded, digest-checked reads.

use std::path::Path;

use super::Options;
use crate::data;
use crate::hash;
use crate::manifest::CommitmentRef;
use crate::manifest::Extension;
use crate::report::{CheckId, Hint, Report, Status};
use crate::spec::Spec;
use crate::train;
use crate::transcript::Commitment;
use crate::trust::{SignedRun, TrustError};
use crate::verify;

/// The largest run-directory file the audit reads (weights, optimizer state, transcript).
pub(super) const MAX_RUN_FILE: u64 = 4 << 30;

/// Read a file of the run through the gate, pinned to `blake3_hex`; the error as a row detail.
pub(super) fn read_pinned(
    run: &SignedRun,
    name: &str,
    blake3_hex: &str,
    max: u64,
) -> Result<Vec<u8>, String> {
    run.read_pinned(name, blake3_hex, max).map_err(|e| match e {
        TrustError::File { why, .. } => why,
        other => other.to_string(),
    })
}

pub(super) fn check_spec(
    dir: &Path,
    c: &Commitment,
    ext: &Extension,
    stage: Option<&str>,
    r: &mut Report,
) -> Option<Spec> {
    let path = dir.join(crate::run_dir::SPEC);
    let parsed = crate::fsio::read_bounded(&path, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|b| {
            let file = hash::Digest::of(&b).hex();
            if !hash::hex_eq(&file, &c.spec_file.blake3) {
                return Err(format!(
                    "{} changed: blake3 is {file}, the commitment records {}",
                    path.display(),
                    c.spec_file.blake3
                ));
            }
            Spec::parse_stage(&String::from_utf8_lossy(&b), &path, stage).map_err(|e| e.to_string())
        });
    match parsed {
        Ok(spec) => {
            let d = spec.digest().to_hex().to_string();
            if !hash::hex_eq(&d, &c.spec_blake3) || !hash::hex_eq(&d, &ext.spec_blake3) {
                r.push_row(
                    CheckId::Spec,
                    Status::Fail,
                    format!(
                        "resolved spec blake3 {d}; the commitment records {} and the manifest {}",
                        c.spec_blake3, ext.spec_blake3
                    ),
                );
                return None;
            }
            r.push_row(
                CheckId::Spec,
                Status::Pass,
                format!(
                    "committed hyper-parameters and seed {}: blake3 {d}",
                    spec.seed
                ),
            );
            Some(spec)
        }
        Err(why) => {
            r.push_row(CheckId::Spec, Status::Fail, why);
            None
        }
    }
}

/// Read the committed data files under `root`, each checked against its commitment (a withheld
/// one with its salt from `reveal`), and prepare the splits as training did.
pub(super) fn check_data(
    root: &Path,
    spec: &Spec,
    c: &Commitment,
    reveal: &crate::contribution::Reveal,
    r: &mut Report,
) -> Option<data::Prepared> {
    if c.data.is_empty() {
        r.push_row(
            CheckId::Data,
            Status::Fail,
            "the commitment names no data file",
        );
        return None;
    }
    let mut files = Vec::new();
    let mut digests = Vec::new();
    for d in &c.data {
        let (file, digest) = read_committed(root, d, reveal, r)?;
        files.push(file);
        digests.push(digest);
    }
    // Rows a run left out are recorded in its manifest; the recomputation leaves the same ones
    // out and the audit compares them (check_preprocessing).
    let skip = data::ParseOptions {
        skip_bad_rows: true,
    };
    let label = format!(
        "data {}",
        c.data
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match data::parse_sources(spec, &files, skip) {
        Ok(p) => {
            r.push(
                CheckId::Data,
                label,
                Status::Pass,
                match digests.as_slice() {
                    [one] => format!("blake3 {one}, {} training rows", p.train.rows),
                    _ => format!(
                        "{} training rows from {} files, each as committed",
                        p.train.rows,
                        files.len()
                    ),
                },
            );
            Some(p)
        }
        Err(e) => {
            r.push(CheckId::Data, label, Status::Fail, e.to_string());
            None
        }
    }
}

/// One committed data file, read under `root` and checked against its digest or commitment.
fn read_committed(
    root: &Path,
    d: &crate::transcript::FileRef,
    reveal: &crate::contribution::Reveal,
    r: &mut Report,
) -> Option<(data::SourceBytes, String)> {
    let label = format!("data {}", d.name);
    let path = match crate::fsio::safe_join(root, &d.name) {
        Ok(p) => p,
        Err(why) => {
            r.push(CheckId::Data, label, Status::Fail, why.to_string());
            return None;
        }
    };
    let bytes = match crate::fsio::read_bounded(&path, crate::data::MAX_DATA_BYTES) {
        Ok(b) => b,
        Err(e) => {
            r.push_hinted(
                CheckId::Data,
                label,
                Status::Fail,
                format!("{}: {e}", path.display()),
                Hint::Root,
            );
            return None;
        }
    };
    let (got, how) = if d.salted {
        let Some(salt) = reveal.salt_for(&d.name) else {
            r.push(
                CheckId::Data,
                label,
                Status::Fail,
                "withheld behind a salted commitment; pass --reveal NAME=SALT_FILE to check it",
            );
            return None;
        };
        (
            crate::contribution::salted(salt, &bytes),
            "salted commitment",
        )
    } else {
        (hash::Digest::of(&bytes).hex(), "blake3")
    };
    if !hash::hex_eq(&got, &d.blake3) {
        r.push(
            CheckId::Data,
            label,
            Status::Fail,
            format!(
                "changed: {how} is {got}, the commitment records {}",
                d.blake3
            ),
        );
        return None;
    }
    Some((data::SourceBytes { path, bytes }, got))
}

/// The fitted preprocessing recomputed from the committed data against the run's
/// `preprocessing.json` (every category, fill value, offset and scale), and the rows left out
/// against the ones the manifest records.
pub(super) fn check_preprocessing(
    run: &SignedRun,
    prepared: &data::Prepared,
    ext: &Extension,
    r: &mut Report,
) {
    let recorded = run
        .read(crate::run_dir::PREPROCESSING, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            let v1 = serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .is_some_and(|v| v["schema"] == data::transform::SCHEMA_V1);
            data::Preprocessing::from_json(&b)
                .map(|p| (p, v1))
                .map_err(|e| e.to_string())
        });
    let (recorded, v1) = match recorded {
        Ok(p) => p,
        Err(why) => {
            r.push_row(CheckId::Preprocessing, Status::Fail, why);
            return;
        }
    };
    // A run from before raw data recorded only the features' offsets and scales.
    let same = if v1 {
        scalings(&recorded) == scalings(&prepared.preprocessing)
            && recorded.classes == prepared.preprocessing.classes
    } else {
        recorded == prepared.preprocessing
    };
    if !same {
        r.push_row(
            CheckId::Preprocessing,
            Status::Fail,
            "preprocessing.json is not what the committed data and spec fit: the run's transforms differ from its data",
        );
        return;
    }
    let skipped: Vec<(u64, &str)> = prepared
        .skipped
        .iter()
        .map(|b| (b.line, b.why.as_str()))
        .collect();
    let listed: Vec<(u64, &str)> = ext
        .skipped_rows
        .iter()
        .flat_map(|s| &s.rows)
        .map(|b| (b.line, b.why.as_str()))
        .collect();
    let count = ext.skipped_rows.as_ref().map_or(0, |s| s.count);
    let shown = skipped.len().min(crate::manifest::MAX_SKIPPED_LISTED);
    if count != skipped.len() || listed != skipped[..shown] {
        r.push_row(
            CheckId::Preprocessing,
            Status::Fail,
            format!(
                "the manifest records {count} row(s) left out; the committed data leaves out {}",
                skipped.len()
            ),
        );
        return;
    }
    r.push_row(
        CheckId::Preprocessing,
        Status::Pass,
        format!(
            "recomputed from the committed data: {} input column(s), {} feature(s), identical{}",
            prepared.preprocessing.columns.len(),
            prepared.preprocessing.width(),
            if count > 0 {
                format!("; the same {count} row(s) left out")
            } else {
                String::new()
            }
        ),
    );
}

/// Each numeric column's name, offset and scale.
fn scalings(p: &data::Preprocessing) -> Vec<(&str, f32, f32)> {
    p.columns
        .iter()
        .filter_map(|c| match c {
            data::Column::Numeric {
                name,
                offset,
                scale,
                ..
            } => Some((name.as_str(), *offset, *scale)),
            data::Column::Categorical { .. } => None,
        })
        .collect()
}

/// The run directory against the manifest, exactly as `verify` checks it (every subject,
/// byproduct and dependency re-hashed, nothing unnamed), so that a run directory `verify` rejects
/// can never pass an audit. Signatures stay `verify`'s.
pub(super) fn run_directory(
    path: &Path,
    st: &crate::manifest::Statement,
    opts: &Options,
    r: &mut Report,
) {
    let vopts = verify::Options {
        root: opts.root.clone(),
        allow_extra: opts.allow_extra.clone(),
        ..Default::default()
    };
    let mut files = Report::default();
    verify::check_files(path, st, &vopts, &mut files);
    let failed: Vec<String> = files
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if failed.is_empty() {
        r.push_row(
            CheckId::RunDirectory,
            Status::Pass,
            format!(
                "{} files and directories match the manifest, nothing unnamed",
                files.checks.len().saturating_sub(1)
            ),
        );
    } else {
        let hint = files
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .find_map(|c| c.hint);
        let (label, detail) = (CheckId::RunDirectory.label(), failed.join("; "));
        match hint {
            Some(h) => r.push_hinted(CheckId::RunDirectory, label, Status::Fail, detail, h),
            None => r.push(CheckId::RunDirectory, label, Status::Fail, detail),
        }
    }
}

/// The commitment the manifest pins: its bytes (for `h_0`) and its content.
pub(super) fn read_commitment(
    run: &SignedRun,
    c_ref: &CommitmentRef,
    r: &mut Report,
) -> Option<(Vec<u8>, Commitment)> {
    let committed = read_pinned(run, &c_ref.path, &c_ref.blake3, crate::fsio::MAX_DOCUMENT)
        .and_then(|b| {
            serde_json::from_slice::<Commitment>(&b)
                .map(|c| (b, c))
                .map_err(|e| format!("not a training commitment: {e}"))
        });
    match committed {
        Ok((bytes, commitment)) => {
            r.push_row(
                CheckId::Commitment,
                Status::Pass,
                format!(
                    "blake3 {}, made {} (claimed) for {} training",
                    c_ref.blake3, commitment.committed_on, commitment.backend
                ),
            );
            Some((bytes, commitment))
        }
        Err(why) => {
            r.push_row(CheckId::Commitment, Status::Fail, why);
            None
        }
    }
}

/// The weights the committed seed draws: checked against the commitment, and returned as the
/// start of the first segment and the model layout every checkpoint must have.
pub(super) fn check_initial_weights(
    spec: &Spec,
    data: &data::Prepared,
    commitment: &Commitment,
    r: &mut Report,
) -> Option<Vec<u8>> {
    let initial = match train::initial_weights(spec, data) {
        Ok(w) => w,
        Err(e) => {
            r.push_row(CheckId::InitialWeights, Status::Fail, e.to_string());
            return None;
        }
    };
    let got = hash::Digest::of(&initial).hex();
    if hash::hex_eq(&got, &commitment.initial_weights_blake3) {
        r.push_row(
            CheckId::InitialWeights,
            Status::Pass,
            format!("drawn from seed {}: blake3 {got}", spec.seed),
        );
    } else {
        r.push_row(CheckId::InitialWeights,
            Status::Fail,
            format!(
                "not from the committed seed: seed {} gives blake3 {got}, the commitment records {}",
                spec.seed, commitment.initial_weights_blake3
            ),
        );
    }
    Some(initial)
}
