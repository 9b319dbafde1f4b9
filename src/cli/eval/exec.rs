//! `auditai eval`'s execution: verify and load the model, evaluate, write the signed
//! attestation; tables (or JSON) on stdout, notices on stderr.

use std::io::Write;

use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::eval::{self, EVAL_PREDICATE, EvalOptions, EvalStatement, Evaluation, Metrics};
use auditai::sign::{self, Envelope};

use super::super::printer::Printer;
use super::super::{EXIT_FAILED, EXIT_OK, clean, write_json};
use super::EvalArgs;

pub(in crate::cli) fn eval_cmd(args: &EvalArgs) -> anyhow::Result<u8> {
    let printer = Printer::new(args.quiet);
    if let Some(c) = &args.commit_criteria {
        return commit(args, c, &printer);
    }
    let (Some(run), Some(data)) = (&args.run, &args.data) else {
        anyhow::bail!("eval needs a run and --data");
    };
    if std::fs::symlink_metadata(&args.out).is_ok() {
        anyhow::bail!(
            "{} already exists; pass another --out (auditai never replaces a file it was not asked to)",
            args.out.display()
        );
    }
    // Refuse a bad criteria file before anything else is said or done.
    if let Some(c) = &args.criteria {
        eval::Criteria::load(c)?;
    }
    let trust = super::super::trust::trust_of(&args.keys, args.policy.as_deref())?;
    let required = super::super::predict::model_trust(
        &trust,
        args.no_verify,
        "eval",
        "the attestation records it",
        &printer,
    )?;
    let key = sign::signing_key(args.sign_with.as_deref())?;
    if key.is_none() {
        printer.line("notice: no signing key (--sign-with, AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE); the attestation will be unsigned");
    }
    let online = args.target.online()?;
    let model = super::super::predict::open_model(run, required, args.device.into(), &printer)?;
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let ev = eval::evaluate(
        &model,
        &EvalOptions {
            data: data.clone(),
            by: args.by.clone(),
            criteria: args.criteria.clone(),
            root: args.root.clone(),
            skip_bad_rows: args.skip_bad_rows,
            online: online.as_ref(),
            out_dir,
        },
    )?;
    let subject = model
        .subjects
        .iter()
        .filter(|s| {
            matches!(
                s.name.as_deref(),
                Some(auditai::run_dir::MODEL_BPK | auditai::run_dir::MODEL_SAFETENSORS)
            )
        })
        .cloned()
        .collect();
    let statement = EvalStatement {
        statement_type: auditai::manifest::STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: EVAL_PREDICATE.to_string(),
        predicate: ev,
    };
    let mut envelope = Envelope::new(
        sign::IN_TOTO_PAYLOAD_TYPE,
        &serde_json::to_vec(&statement).unwrap_or_default(),
    );
    if let Some((k, _)) = &key {
        envelope.sign(k);
    }
    auditai::fsio::write_atomic(&args.out, &envelope.to_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    let ev = &statement.predicate;
    let signers: Vec<String> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        #[derive(serde::Serialize)]
        struct J<'a> {
            schema: &'static str,
            attestation: &'a std::path::Path,
            signers: &'a [String],
            evaluation: &'a Evaluation,
        }
        write_json(
            &mut out,
            &J {
                schema: "auditai.eval-report/v1",
                attestation: &args.out,
                signers: &signers,
                evaluation: ev,
            },
        )?;
    } else {
        write_tables(&mut out, ev)?;
        let signed = match signers.as_slice() {
            [] => "unsigned".to_string(),
            k => format!("signed by {}", k.join(", ")),
        };
        writeln!(out, "attestation: {} ({signed})", args.out.display())?;
        writeln!(out, "verdict: {}", ev.verdict)?;
    }
    out.flush()?;
    Ok(if ev.verdict == eval::EvalVerdict::Failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

fn commit(args: &EvalArgs, path: &std::path::Path, printer: &Printer) -> anyhow::Result<u8> {
    let cpath = eval::criteria::commit(path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "committed {} in {}", path.display(), cpath.display())?;
    if args.target.any() {
        let opts = args.target.options(false, false)?;
        let mut progress = |m: &str| printer.line(&clean(&format!("anchoring: {m}")));
        let outcome = auditai::anchor::anchor(std::slice::from_ref(&cpath), &opts, &mut progress)?;
        for (p, r) in &outcome.anchored {
            if let Some(e) = &r.evm {
                writeln!(
                    out,
                    "anchored {} on {} in block {} at {}",
                    p.display(),
                    e.chain,
                    e.block_number,
                    auditai::manifest::format_unix(e.block_timestamp)
                )?;
            }
            if let Some(o) = &r.ots {
                writeln!(
                    out,
                    "timestamped {} by {} calendar(s)",
                    p.display(),
                    o.calendars.len()
                )?;
            }
        }
    } else {
        printer.line("notice: the commitment is not anchored: its time is only the committer's clock (anchor it with --chain/--rpc or --ots, or `auditai anchor`)");
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.4}"))
}

/// A metric with its 95 % interval: `0.9500 [0.910, 0.975]`.
fn with_interval(m: &Metrics, name: &str, v: Option<f64>) -> String {
    match (v, m.intervals.get(name)) {
        (Some(v), Some(i)) => format!("{v:.4} [{:.3}, {:.3}]", i.lower, i.upper),
        _ => fmt(v),
    }
}

fn metric_cells(m: &Metrics) -> Vec<(&'static str, Option<f64>)> {
    m.scalars().into_iter().map(|(k, v)| (k, Some(v))).collect()
}

fn write_tables(out: &mut dyn Write, ev: &Evaluation) -> std::io::Result<()> {
    writeln!(
        out,
        "evaluated {} on {} ({} rows{}); model {}",
        ev.task,
        clean(&ev.data.name),
        ev.data.rows,
        if ev.data.skipped > 0 {
            format!(", {} skipped", ev.data.skipped)
        } else {
            String::new()
        },
        if ev.model.verified {
            "verified before loading"
        } else {
            "NOT verified (--no-verify)"
        }
    )?;
    writeln!(
        out,
        "metrics with 95 % confidence intervals (Wilson for proportions, a seeded bootstrap otherwise):"
    )?;
    metrics_table(out, ev)?;
    per_class_table(out, ev)?;
    reliability_table(out, ev)?;
    judgement(out, ev)
}

/// Metrics overall and per subgroup.
fn metrics_table(out: &mut dyn Write, ev: &Evaluation) -> std::io::Result<()> {
    let cells = metric_cells(&ev.overall);
    let mut b = Builder::default();
    let mut head = vec!["rows".to_string(), "group".to_string()];
    head.extend(cells.iter().map(|(k, _)| (*k).to_string()));
    b.push_record(head);
    let mut row = vec![ev.overall.rows.to_string(), "overall".to_string()];
    row.extend(cells.iter().map(|(k, v)| with_interval(&ev.overall, k, *v)));
    b.push_record(row);
    for g in &ev.subgroups {
        let mut row = vec![
            g.metrics.rows.to_string(),
            clean(&format!(
                "{}={}{}",
                g.column,
                g.value,
                if g.too_small {
                    " (too small to judge)"
                } else {
                    ""
                }
            )),
        ];
        row.extend(
            cells
                .iter()
                .map(|(k, _)| with_interval(&g.metrics, k, g.metrics.value(k, None))),
        );
        b.push_record(row);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    Ok(())
}

/// Per-class precision, recall, support and the confusion matrix.
fn per_class_table(out: &mut dyn Write, ev: &Evaluation) -> std::io::Result<()> {
    if !ev.overall.per_class.is_empty() {
        let mut c = Builder::default();
        let mut head = vec![
            "class".to_string(),
            "precision".into(),
            "recall".into(),
            "support".into(),
        ];
        head.extend(
            ev.overall
                .per_class
                .iter()
                .map(|k| clean(&format!("predicted {}", k.class))),
        );
        c.push_record(head);
        for (k, row) in ev.overall.per_class.iter().zip(&ev.overall.confusion) {
            let mut r = vec![
                clean(&k.class),
                format!("{:.4}", k.precision),
                format!("{:.4}", k.recall),
                k.support.to_string(),
            ];
            r.extend(row.iter().map(u64::to_string));
            c.push_record(r);
        }
        writeln!(out, "{}", c.build().with(Style::sharp()))?;
    }
    Ok(())
}

/// The reliability diagram's bins (binary classification).
fn reliability_table(out: &mut dyn Write, ev: &Evaluation) -> std::io::Result<()> {
    if !ev.overall.reliability.is_empty() {
        let mut r = Builder::default();
        r.push_record([
            "predicted p(second class)",
            "rows",
            "mean predicted",
            "observed",
        ]);
        for bin in ev.overall.reliability.iter().filter(|b| b.rows > 0) {
            r.push_record([
                format!("{:.1}-{:.1}", bin.lower, bin.upper),
                bin.rows.to_string(),
                format!("{:.3}", bin.mean_predicted),
                format!("{:.3}", bin.observed),
            ]);
        }
        writeln!(out, "reliability (calibration):")?;
        writeln!(out, "{}", r.build().with(Style::sharp()))?;
    }
    Ok(())
}

/// Leakage, the criteria's verdicts and pre-registration.
fn judgement(out: &mut dyn Write, ev: &Evaluation) -> std::io::Result<()> {
    let leak = &ev.leakage;
    writeln!(
        out,
        "leakage: {}",
        clean(&if leak.status == "checked" {
            format!(
                "{} of {} rows overlap the {} training and validation rows{}",
                leak.overlapping_rows,
                ev.data.rows,
                leak.reference_rows,
                if leak.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", leak.detail)
                }
            )
        } else {
            format!("not checked: {}", leak.detail)
        })
    )?;
    if let Some(c) = &ev.criteria {
        let mut t = Builder::default();
        t.push_record(["criterion", "value", "result", "detail"]);
        for r in &c.results {
            t.push_record([
                clean(&r.criterion),
                fmt(r.value),
                if r.passed { "pass" } else { "FAIL" }.to_string(),
                clean(&r.detail),
            ]);
        }
        writeln!(out, "criteria ({}):", clean(&c.name))?;
        writeln!(out, "{}", t.build().with(Style::sharp()))?;
    }
    writeln!(
        out,
        "pre-registration: {} ({})",
        ev.pre_registration.status,
        clean(&ev.pre_registration.detail)
    )
}
