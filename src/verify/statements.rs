//! The checkers of a contribution statement (its owner's signature, its expiry, the data it
//! names when the file lies next to it) and of a reward statement (its signature under the
//! trust, the tree file it names, the tree's consistency and root, and the run's manifest it is
//! bound to).

use std::path::Path;

use super::{Options, anchor, document_root, open_statement, sha256_of};
use crate::contribution;
use crate::report::{CheckId, Report, Status};
use crate::rewards;

/// A contribution statement.
pub(super) fn contribution(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let opened = match contribution::from_bytes(path, bytes.to_vec()) {
        Ok(o) => o,
        Err(e) => {
            let status = Status::Fail;
            report.push_row(CheckId::Statement, status, e.to_string());
            return;
        }
    };
    let st = &opened.statement;
    report.push_row(
        CheckId::Statement,
        Status::Pass,
        format!(
            "contribution signed by its declared owner {}",
            st.owner_label()
        ),
    );
    // Whom the verifier trusts: with --key or --policy, the owner must be one of them; without,
    // who the owner is rests on the statement's own word.
    if opts.trust.is_empty() {
        report.push_row(
            CheckId::Signers,
            Status::Claimed,
            "signed by the key the statement names; --key OWNER.pub checks whose key that is",
        );
    } else {
        let trusted = opts.trust.trusted_keys().contains(&opened.owner);
        report.push_row(
            CheckId::Signers,
            if trusted { Status::Pass } else { Status::Fail },
            if trusted {
                "the owner is a trusted key".to_string()
            } else {
                format!("the owner {} is not a trusted key", opened.owner.keyid)
            },
        );
    }
    let p = &st.predicate;
    let now = crate::manifest::now_rfc3339();
    let (status, detail) = if contribution::terms::expired(&p.terms.expires, &now) {
        (
            Status::Warn,
            format!("the terms expired at {}", p.terms.expires),
        )
    } else {
        (
            Status::Pass,
            format!("the terms hold until {}", p.terms.expires),
        )
    };
    report.push(CheckId::Statement, "expiry".to_string(), status, detail);
    let name = st.data().map_or("", |d| d.name.as_str());
    let data = crate::fsio::safe_join(&document_root(path, opts), name);
    let label = format!("data {name}");
    match data.ok().filter(|d| d.is_file()) {
        None => report.push(
            CheckId::Statement,
            label,
            Status::Skip,
            "the data file is not next to the statement (--root DIR to say where)",
        ),
        Some(d) => {
            let salt = opts.reveal.salt_for(name);
            let checked = crate::fsio::read_bounded(&d, crate::data::MAX_DATA_BYTES)
                .map_err(|e| e.to_string())
                .and_then(|b| opened.check_data(&b, salt).map_err(|e| e.to_string()));
            match checked {
                Ok(()) => report.push(
                    CheckId::Statement,
                    label,
                    Status::Pass,
                    "the file is the data the owner signed",
                ),
                Err(_) if st.commitment().is_some() && salt.is_none() => report.push(
                    CheckId::Statement,
                    label,
                    Status::Claimed,
                    format!(
                        "withheld: committed by {} (--reveal {name}=SALT_FILE)",
                        st.owner_label()
                    ),
                ),
                Err(why) => report.push(CheckId::Statement, label, Status::Fail, why),
            }
        }
    }
    anchor::check_anchor(path, sha256_of(bytes), opts, report);
}

/// A reward statement.
pub(super) fn rewards(path: &Path, bytes: &[u8], opts: &Options, report: &mut Report) {
    let Some((st, signed)) = open_statement::<rewards::Statement>(
        bytes,
        "a reward statement",
        "DSSE, in-toto Statement v1, auditai rewards",
        opts,
        report,
    ) else {
        return;
    };
    let dir = crate::run_dir::of_manifest(path);
    let r = &st.predicate;
    let tree_row = st
        .subject
        .first()
        .ok_or_else(|| "names no tree file".to_string())
        .and_then(|s| {
            let name = s.name.clone().unwrap_or_default();
            let file = crate::fsio::safe_join(dir, &name).map_err(|e| e.to_string())?;
            let b = crate::fsio::read_bounded(&file, crate::fsio::MAX_DOCUMENT)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let want = s.digest.get("sha256").cloned().unwrap_or_default();
            if !crate::hash::hex_eq(&crate::hash::sha256_hex(&b), &want) {
                return Err(format!("{name} is not the tree the statement signed"));
            }
            let dump: rewards::tree::Dump =
                serde_json::from_slice(&b).map_err(|e| format!("{name}: {e}"))?;
            let leaves = dump.validate().map_err(|e| format!("{name}: {e}"))?;
            if dump.root() != r.root {
                return Err(format!(
                    "{name}'s root {} is not the signed root {}",
                    dump.root(),
                    r.root
                ));
            }
            Ok(format!("{name}: {} claims, root {}", leaves.len(), r.root))
        });
    match tree_row {
        Ok(d) if signed => report.push_row(CheckId::Subject, Status::Pass, d),
        Ok(d) => report.push_row(
            CheckId::Subject,
            Status::Claimed,
            format!("{d} (the signatures do not hold)"),
        ),
        Err(why) => report.push_row(CheckId::Subject, Status::Fail, why),
    }
    let manifest = crate::fsio::safe_join(dir, &r.run.manifest)
        .map_err(|e| e.to_string())
        .and_then(|m| {
            crate::fsio::read_bounded(&m, crate::fsio::MAX_DOCUMENT)
                .map_err(|e| format!("{}: {e}", m.display()))
        });
    let label = format!("run {}", r.run.manifest);
    match manifest {
        Ok(b) if crate::hash::hex_eq(&crate::hash::sha256_hex(&b), &r.run.sha256) => report.push(
            CheckId::Document,
            label,
            Status::Pass,
            "the statement is about this manifest",
        ),
        Ok(_) => report.push(
            CheckId::Document,
            label,
            Status::Fail,
            "the manifest changed after the rewards were issued",
        ),
        Err(why) => report.push(CheckId::Document, label, Status::Absent, why),
    }
    anchor::check_anchor(path, sha256_of(bytes), opts, report);
}
