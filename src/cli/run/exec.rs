//! `auditai run`'s execution: progress on stderr, a results table (or JSON) on stdout.

use std::io::Write;

use serde_json::json;
use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::pipeline::{self, Event, RunOptions, RunReport};
use auditai::sign;
use auditai::train::{Metrics, Progress};

use auditai::spec::SpecFile;

use super::super::printer::Printer;
use super::super::stages;
use super::super::{EXIT_OK, hints, write_json};
use super::RunArgs;

pub(in crate::cli) fn run(args: &RunArgs) -> anyhow::Result<u8> {
    if let SpecFile::Pipeline(_) = SpecFile::load(&args.spec)? {
        return pipeline_run(args);
    }
    if !args.stage.is_empty() || args.jobs.is_some() || args.dry_run {
        anyhow::bail!(
            "--stage, --jobs and --dry-run apply to multi-stage specs (with `stages:`); {} is a single training spec",
            args.spec.display()
        );
    }
    let opts = RunOptions {
        spec: args.spec.clone(),
        device: args.device.map(Into::into),
        out: args.out.clone(),
        resume: args.resume,
        force: args.force,
        stage: None,
        skip_bad_rows: args.skip_bad_rows,
        terms: run_terms(args)?,
    };
    let key = sign::signing_key(args.key.as_deref())?;
    let commit_anchor = match (args.anchor_commitment, args.target.any()) {
        (true, true) => Some(args.target.options(false, false)?),
        (true, false) => anyhow::bail!(
            "--anchor-commitment needs a target: --chain or --rpc, and/or --ots or --calendar"
        ),
        (false, true) => anyhow::bail!(
            "--chain, --rpc, --ots and --calendar apply to --anchor-commitment; add it or drop them"
        ),
        (false, false) => None,
    };
    let mut display = Display::new(args.quiet, key.is_none());
    let report = pipeline::run(
        &opts,
        key.as_ref().map(|(k, _)| k),
        commit_anchor.as_ref(),
        &mut |e| display.event(e),
    );
    display.finish();
    let report = report?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &json_report(&report))?;
    } else {
        write_table(&mut out, &report)?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn pipeline_run(args: &RunArgs) -> anyhow::Result<u8> {
    if args.resume {
        anyhow::bail!(
            "--resume applies to single training specs; a multi-stage run skips the stages that are up to date by itself"
        );
    }
    if args.anchor_commitment || args.target.any() {
        anyhow::bail!(
            "--anchor-commitment applies to single training specs; anchor a pipeline's manifest with `auditai anchor`"
        );
    }
    let key = if args.dry_run {
        None
    } else {
        sign::signing_key(args.key.as_deref())?
    };
    stages::run_pipeline(
        &stages::PipelineRun {
            spec: args.spec.clone(),
            out: args.out.clone(),
            stages: args.stage.clone(),
            no_upstream: args.no_upstream,
            force: args.force,
            jobs: args.jobs.map(usize::from),
            dry_run: args.dry_run,
            no_run_cache: args.no_run_cache,
            executor: args.executor.map(Into::into),
            json: args.json,
            quiet: args.quiet,
            device: args.device.map(Into::into),
            skip_bad_rows: args.skip_bad_rows,
            terms: run_terms(args)?,
        },
        key.as_ref().map(|(k, _)| k),
    )
}

/// `--jurisdiction` and the `contributions:` section of `--policy`.
fn run_terms(args: &RunArgs) -> anyhow::Result<auditai::contribution::RunTerms> {
    let policy = args
        .policy
        .as_deref()
        .map(auditai::trust::Policy::load)
        .transpose()?;
    let c = policy.and_then(|p| p.contributions).unwrap_or_default();
    Ok(auditai::contribution::RunTerms {
        jurisdiction: args.jurisdiction.clone(),
        required: c.required,
        licenses: c.licenses,
    })
}

/// Progress bar per epoch when stderr is a terminal; one line per epoch otherwise.
struct Display {
    printer: Printer,
    unsigned: bool,
}

impl Display {
    fn new(quiet: bool, unsigned: bool) -> Display {
        Display {
            printer: Printer::new(quiet),
            unsigned,
        }
    }

    fn line(&self, msg: &str) {
        self.printer.line(msg);
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Device {
                kind,
                adapter,
                notice,
            } => {
                if let Some(n) = notice {
                    self.line(&format!("notice: {}", hints::notice(n)));
                }
                self.line(&format!("device: {kind} ({adapter})"));
                if self.unsigned {
                    self.line("notice: no signing key (--key, AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE); the manifest will be unsigned");
                }
            }
            Event::Anchoring(msg) => self.line(&format!("anchoring commitment: {msg}")),
            Event::MovedAside(path) => self.line(&format!(
                "notice: --force moved the previous run aside to {}",
                path.display()
            )),
            Event::Notice(msg) => self.line(&format!("notice: {msg}")),
            Event::Committed { path, receipt } => {
                let anchored = receipt.map_or(String::new(), |r| {
                    let evm = r.evm.as_ref().map_or(String::new(), |e| {
                        format!(", anchored on {} in block {}", e.chain, e.block_number)
                    });
                    let ots = r.ots.as_ref().map_or(String::new(), |o| {
                        format!(", timestamped by {} calendar(s)", o.calendars.len())
                    });
                    format!("{evm}{ots}")
                });
                self.line(&format!("committed: {}{anchored}", path.display()));
            }
            Event::Train(Progress::Resumed { epoch }) => {
                self.line(&format!("resuming after epoch {epoch}"));
            }
            Event::Train(Progress::EpochStart {
                epoch,
                epochs,
                batches,
            }) => self.printer.start_bar(
                batches as u64,
                "epoch {prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise}",
                format!("{epoch}/{epochs}"),
            ),
            Event::Train(Progress::Batch) => self.printer.tick(),
            Event::Train(Progress::EpochEnd(r)) => {
                self.printer.finish();
                self.line(&format!(
                    "epoch {:>3}  lr {:.2e}  train_loss {:.4}  val_loss {:.4}  val_{} {:.4}  {:.0} samples/s",
                    r.epoch, r.lr, r.train_loss, r.val_loss, r.metric, r.val_metric, r.samples_per_sec
                ));
            }
        }
    }

    fn finish(&mut self) {
        self.printer.finish();
    }
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in m.scalars() {
        map.insert(k.to_string(), json!(v));
    }
    if let Metrics::Classification { confusion, .. } = m {
        map.insert("confusion".to_string(), json!(confusion));
    }
    serde_json::Value::Object(map)
}

/// `run --json`: fields in sorted order (as the earlier `json!` objects printed them).
#[derive(serde::Serialize)]
struct RunJson<'a> {
    adapter: &'a str,
    best_epoch: usize,
    classes: &'a Option<Vec<String>>,
    commitment_blake3: &'a str,
    /// Per data source, the first-order in-run value (two or more sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    credit: &'a Option<Vec<auditai::pipeline::SourceCredit>>,
    device: auditai::train::BackendKind,
    epochs_run: usize,
    final_epoch: usize,
    held_out: &'a str,
    manifest: &'a std::path::Path,
    metrics: serde_json::Value,
    resumed_from: Option<usize>,
    run_dir: &'a std::path::Path,
    samples_per_sec: f64,
    /// `auditai.run-report/v1`.
    schema: &'static str,
    signed: bool,
    signers: &'a [String],
    stopped_early: bool,
    transcript_entries: usize,
    transcript_head: &'a str,
    weights_blake3: &'a str,
}

fn json_report(r: &RunReport) -> RunJson<'_> {
    let s = &r.summary;
    RunJson {
        adapter: &s.adapter,
        best_epoch: s.best_epoch,
        classes: &s.classes,
        commitment_blake3: &r.commitment_blake3,
        credit: &s.credit,
        device: s.device,
        epochs_run: s.epochs_run,
        final_epoch: s.final_epoch,
        held_out: s.held_out,
        manifest: &r.manifest,
        metrics: metrics_json(&s.metrics),
        resumed_from: r.resumed_from,
        run_dir: &r.run_dir,
        samples_per_sec: s.samples_per_sec,
        schema: "auditai.run-report/v1",
        signed: !r.signers.is_empty(),
        signers: &r.signers,
        stopped_early: s.stopped_early,
        transcript_entries: r.transcript_entries,
        transcript_head: &r.transcript_head,
        weights_blake3: &s.weights_blake3,
    }
}

fn write_table(out: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
    let s = &r.summary;
    let mut b = Builder::default();
    b.push_record(["run", &s.name]);
    b.push_record(["run directory", &r.run_dir.display().to_string()]);
    b.push_record(["device", &format!("{} ({})", s.device, s.adapter)]);
    let mut epochs = format!(
        "{} (final weights from epoch {})",
        s.epochs_run, s.final_epoch
    );
    if s.stopped_early {
        epochs.push_str(", stopped early");
    }
    b.push_record(["epochs", &epochs]);
    b.push_record([
        "rows train/val/test",
        &format!("{}/{}/{}", s.rows.train, s.rows.validation, s.rows.test),
    ]);
    if s.held_out == "validation" && s.spec.training.early_stopping.is_some() {
        b.push_record([
            "metrics split",
            "validation: it chose the stopping epoch, so it is not held out",
        ]);
    }
    for (k, v) in s.metrics.scalars() {
        let value = match s.metrics.interval(k) {
            Some(i) => format!("{v:.4} (95 % CI {:.4}-{:.4})", i.lower, i.upper),
            None => format!("{v:.4}"),
        };
        b.push_record([format!("{}: {k}", s.held_out), value]);
    }
    for c in s.credit.iter().flatten() {
        b.push_record([
            format!("credit {}", super::super::clean(&c.source)),
            format!("{:+.6e} (first-order in-run value)", c.value),
        ]);
    }
    b.push_record(["weights blake3", &s.weights_blake3]);
    b.push_record([
        "transcript",
        &format!(
            "{} segments, chain head {}",
            r.transcript_entries, r.transcript_head
        ),
    ]);
    let signed = match r.signers.as_slice() {
        [] => "unsigned".to_string(),
        keys => format!("signed by {}", keys.join(", ")),
    };
    b.push_record(["manifest", &format!("{} ({signed})", r.manifest.display())]);
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    if let (Metrics::Classification { confusion, .. }, Some(classes)) = (&s.metrics, &s.classes) {
        let mut c = Builder::default();
        let mut header = vec!["true \\ predicted".to_string()];
        header.extend(classes.iter().cloned());
        c.push_record(header);
        for (name, row) in classes.iter().zip(confusion) {
            let mut rec = vec![name.clone()];
            rec.extend(row.iter().map(u64::to_string));
            c.push_record(rec);
        }
        writeln!(out, "confusion matrix ({} split):", s.held_out)?;
        writeln!(out, "{}", c.build().with(Style::sharp()))?;
    }
    Ok(())
}
