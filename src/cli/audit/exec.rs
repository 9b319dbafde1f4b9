//! `auditai audit`'s execution: progress on stderr, tables (or JSON) on stdout.

use std::io::Write;

use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::audit::{self, AuditReport, Challenge, Progress};
use auditai::report::Status;

use super::super::printer::Printer;
use super::super::{EXIT_FAILED, EXIT_OK, claimed_note, clean, hints, write_json};
use super::AuditArgs;

pub(in crate::cli) fn audit_cmd(
    args: &AuditArgs,
    manifest: &std::path::Path,
) -> anyhow::Result<u8> {
    let opts = audit_options(args)?;
    let mut printer = Printer::new(args.quiet);
    let result = audit::audit(manifest, &opts, &mut |p| show(&mut printer, p));
    printer.finish();
    let report = result?;
    let verdict = super::super::verdict::write(
        &args.attest,
        super::super::verdict::Outcome {
            kind: auditai::vsa::VerdictKind::Audit,
            manifest,
            report: &report.checks,
            passed: report.ok(),
            audit: Some(summary(&report)),
            policy: None,
            keys: &[],
        },
    )?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(json_report(manifest, &report))?;
        if let (Some(m), Some((p, _))) = (v.as_object_mut(), &verdict) {
            m.insert("verdict".into(), serde_json::json!(p));
        }
        write_json(&mut out, &v)?;
    } else {
        write_tables(&mut out, manifest, &report)?;
        if let Some((p, result)) = &verdict {
            writeln!(out, "verdict: {} ({result}, signed)", p.display())?;
        }
    }
    out.flush()?;
    Ok(if report.ok() { EXIT_OK } else { EXIT_FAILED })
}

/// The audit's options from its flags.
fn audit_options(args: &AuditArgs) -> anyhow::Result<audit::Options> {
    if args.segments == 0 {
        anyhow::bail!("--segments must be at least 1");
    }
    if args.timeout.is_some() && !args.challenge_from_anchor {
        anyhow::bail!(
            "--timeout applies to --challenge-from-anchor (how long to wait for the challenge block) and to --rerun (the stage's time limit)"
        );
    }
    let challenge = match (&args.challenge, args.challenge_from_anchor) {
        (Some(h), _) => {
            let bytes = hex::decode(h.trim_start_matches("0x"))
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("--challenge `{h}` is not a non-empty hex string")
                })?;
            Challenge::Explicit(bytes)
        }
        (None, true) => Challenge::FromAnchor {
            unconfirmed: args.allow_unconfirmed_challenge,
        },
        (None, false) => Challenge::Random,
    };
    let online =
        auditai::anchor::chain::Chain::resolve_online(args.chain.as_deref(), args.rpc.as_deref())?;
    Ok(audit::Options {
        segments: args.segments,
        challenge,
        device: args.device.map(Into::into),
        root: args.root.clone(),
        online,
        tolerance: args.tolerance,
        allow_extra: args.allow_extra.clone(),
        trust: super::super::trust::trust_of(&args.keys, args.policy.as_deref())?,
        wait: args.timeout.map(Into::into),
        reveal: auditai::contribution::Reveal::parse(&args.reveal)?,
    })
}

/// One progress event on stderr.
fn show(printer: &mut Printer, p: Progress<'_>) {
    match p {
        Progress::Device {
            kind,
            adapter,
            notice,
        } => {
            if let Some(n) = notice {
                printer.line(&format!("notice: {}", hints::notice(n)));
            }
            printer.line(&format!("replaying on {kind} ({adapter})"));
        }
        Progress::Plan { steps } => printer.start_bar(
            steps as u64,
            "{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise}",
            String::new(),
        ),
        Progress::Segment {
            index,
            epoch,
            steps,
        } => {
            let msg = format!(
                "segment {index} (epoch {epoch}, steps {}..{})",
                steps[0], steps[1]
            );
            if printer.drawing() {
                printer.status(msg);
            } else {
                printer.line(&format!("replaying {msg}"));
            }
        }
        Progress::Step => printer.tick(),
        Progress::Waiting { block, head } => printer.status(format!(
            "waiting for the challenge block {block} (the chain is at block {head})"
        )),
    }
}

/// What a signed audit verdict records of the audit.
fn summary(report: &AuditReport) -> auditai::vsa::AuditSummary {
    auditai::vsa::AuditSummary {
        challenge: report.challenge.clone(),
        challenge_source: report
            .challenge_source
            .unwrap_or(auditai::vsa::ChallengeSource::Explicit),
        segments_total: report.segments_total,
        segments: report
            .segments
            .iter()
            .map(|s| auditai::vsa::SegmentRow {
                index: s.index,
                epoch: s.epoch,
                status: auditai::vsa::status_word(s.status).to_string(),
                comparison: s.comparison,
                detail: s.detail.clone(),
            })
            .collect(),
        segments_passed: report
            .segments
            .iter()
            .filter(|s| s.status == Status::Pass)
            .count(),
    }
}

/// `audit --json`: fields in sorted order (as the earlier `json!` object printed them).
#[derive(serde::Serialize)]
struct AuditJson<'a> {
    challenge: &'a Option<String>,
    challenge_source: String,
    /// The rows and segments go through `serde_json::Value` so that their keys stay sorted as
    /// before.
    checks: serde_json::Value,
    manifest: &'a std::path::Path,
    ok: bool,
    replayed_on: Option<auditai::train::BackendKind>,
    replayed_steps: usize,
    /// `auditai.audit-report/v1`.
    schema: &'static str,
    segments: serde_json::Value,
    segments_total: usize,
    selected: &'a [usize],
    tolerance: Tolerance,
    total_steps: usize,
    trained_on: Option<auditai::train::BackendKind>,
}

/// The cross-backend bounds, as `audit --json` reports them.
#[derive(serde::Serialize)]
struct Tolerance {
    cosine_distance: f64,
    linf: f64,
    relative_l2: f64,
}

fn json_report<'a>(manifest: &'a std::path::Path, r: &'a AuditReport) -> AuditJson<'a> {
    let (linf, relative_l2, cosine_distance) = audit::tolerance();
    AuditJson {
        challenge: &r.challenge,
        challenge_source: r.challenge_source.map_or(String::new(), |c| c.to_string()),
        checks: serde_json::to_value(hints::rows(&r.checks.checks)).unwrap_or_default(),
        manifest,
        ok: r.ok(),
        replayed_on: r.replayed_on,
        replayed_steps: r.replayed_steps,
        schema: "auditai.audit-report/v1",
        segments: serde_json::to_value(&r.segments).unwrap_or_default(),
        segments_total: r.segments_total,
        selected: &r.selected,
        tolerance: Tolerance {
            cosine_distance,
            linf,
            relative_l2,
        },
        total_steps: r.total_steps,
        trained_on: r.trained_on,
    }
}

fn write_tables(
    out: &mut dyn Write,
    manifest: &std::path::Path,
    r: &AuditReport,
) -> std::io::Result<()> {
    let mut b = Builder::default();
    b.push_record(["check", "status", "detail"]);
    for c in &hints::rows(&r.checks.checks) {
        b.push_record([clean(&c.check), c.status.to_string(), clean(&c.detail)]);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    if let Some(ch) = &r.challenge {
        writeln!(
            out,
            "challenge ({}): {ch}\nsegments chosen: {} of {}",
            r.challenge_source.map_or(String::new(), |c| c.to_string()),
            r.selected
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            r.segments_total
        )?;
    }
    if !r.segments.is_empty() {
        let mut s = Builder::default();
        s.push_record([
            "segment", "epoch", "steps", "lr", "result", "seconds", "detail",
        ]);
        for seg in &r.segments {
            s.push_record([
                seg.index.to_string(),
                seg.epoch.to_string(),
                format!("{}..{}", seg.steps[0], seg.steps[1]),
                format!("{:.3e}", seg.lr),
                format!("{} ({})", seg.status, seg.comparison),
                format!("{:.2}", seg.seconds),
                clean(&seg.detail),
            ]);
        }
        writeln!(out, "{}", s.build().with(Style::sharp()))?;
    }
    let failed = r
        .checks
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count()
        + r.segments
            .iter()
            .filter(|s| s.status == Status::Fail)
            .count();
    let share = if r.total_steps > 0 {
        100.0 * r.replayed_steps as f64 / r.total_steps as f64
    } else {
        0.0
    };
    if r.ok() {
        writeln!(
            out,
            "audit passed: {} — replayed {} of {} segments ({} of {} steps, {share:.1}%){}",
            manifest.display(),
            r.segments.len(),
            r.segments_total,
            r.replayed_steps,
            r.total_steps,
            claimed_note(r.checks.claimed())
        )?;
    } else {
        writeln!(out, "audit FAILED: {failed} check(s) or segment(s) failed")?;
    }
    Ok(())
}
