//! Multi-stage pipelines on the command line: `auditai run` of a spec with `stages:`,
//! `auditai status`, and `auditai audit --rerun`. Progress on stderr, results on stdout.

use std::io::Write;
use std::path::PathBuf;

use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::stages::rerun::RerunReport;
use auditai::stages::{self, Planned, Project};
#[cfg(feature = "train")]
use auditai::stages::{Event, Outcome, PipelineReport};

#[cfg(feature = "train")]
use super::printer::Printer;
use super::{EXIT_FAILED, EXIT_OK, clean, write_json};

#[cfg(feature = "train")]
/// Exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub(super) const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    /// The pipeline spec (YAML with `stages:`).
    spec: PathBuf,
    /// Only these stages and their upstream stages (repeatable).
    #[arg(long, value_name = "NAME")]
    stage: Vec<String>,
    /// The pipeline run directory whose history/ backs the lock (default: the spec's
    /// outputs.dir), as given to `auditai run --out`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The key the pipeline is signed with (its public half is used: a lock entry counts only
    /// when the manifest backing it is signed by it). Otherwise AUDITAI_SIGNING_KEY or
    /// AUDITAI_SIGNING_KEY_FILE, as for `auditai run`; with none, an unsigned pipeline is assumed.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Draw the stage graph (each stage under the stages it reads from) with each stage's
    /// state, instead of the table; with --json, add the graph's edges.
    #[arg(long)]
    dag: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// `auditai status`: which stages are stale and why. Exit 0 when up to date, 1 when stale.
pub(super) fn status_cmd(args: &StatusArgs) -> anyhow::Result<u8> {
    if let auditai::spec::SpecFile::Single(_) = auditai::spec::SpecFile::load(&args.spec)? {
        anyhow::bail!(
            "status applies to multi-stage specs (with `stages:`); {} is a single training spec (its run directory's manifest marks it complete)",
            args.spec.display()
        );
    }
    let project = Project::open_at(&args.spec, args.out.as_deref())?;
    let selection = project.select(&args.stage, true)?;
    let key = auditai::sign::signing_key(args.key.as_deref())?;
    let run_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&project.spec.run_dir));
    let backing = stages::Backing::of(&run_dir, key.as_ref().map(|(k, _)| k));
    let plan = stages::plan(&project, &selection, false, backing)?;
    let stale = plan.iter().filter(|p| !p.up_to_date()).count();
    let jobs = stages::slurm::active_jobs(&run_dir);
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(
            &mut out,
            &PlanJson {
                schema: "auditai.pipeline-status/v1",
                up_to_date: stale == 0,
                lock: &project.lock_path,
                stages: &plan,
                edges: args.dag.then(|| edges(&project)),
                jobs: &jobs,
            },
        )?;
    } else if args.dag {
        write_dag(&mut out, &project, &plan)?;
    } else {
        write_plan(&mut out, &plan, "up to date", "stale")?;
        for (stage, id, state) in &jobs {
            writeln!(out, "stage {}: Slurm job {id} {state}", clean(stage))?;
        }
        if stale == 0 {
            writeln!(out, "pipeline {}: up to date", project.spec.name)?;
        } else {
            writeln!(
                out,
                "pipeline {}: {stale} of {} stage(s) stale",
                project.spec.name,
                plan.len()
            )?;
        }
    }
    out.flush()?;
    Ok(if stale == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// The graph's edges by stage name, `[from, to]`.
fn edges(p: &Project) -> Vec<[String; 2]> {
    let name = |i: usize| p.spec.stages[i].name.value.clone();
    p.graph
        .edges()
        .into_iter()
        .map(|(a, b)| [name(a), name(b)])
        .collect()
}

/// `status --dag`: the graph as a tree, each stage with its state.
fn write_dag(out: &mut dyn Write, p: &Project, plan: &[Planned]) -> std::io::Result<()> {
    let label = |i: usize, full: bool| {
        let name = clean(&p.spec.stages[i].name.value);
        let state = plan.iter().find(|s| s.stage == p.spec.stages[i].name.value);
        match state {
            Some(s) if full && s.up_to_date() => format!("{name}  [up to date]"),
            Some(s) if full => {
                let why: Vec<String> = s.why.iter().map(|w| clean(&w.to_string())).collect();
                format!("{name}  [stale: {}]", why.join("; "))
            }
            _ => name,
        }
    };
    for line in p.graph.draw(&label) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct PlanJson<'a> {
    /// `auditai.pipeline-status/v1` or `auditai.pipeline-plan/v1`.
    schema: &'static str,
    up_to_date: bool,
    lock: &'a std::path::Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    edges: Option<Vec<[String; 2]>>,
    /// Slurm jobs of a running pipeline still queued or running: `[stage, job id, state]`.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    jobs: &'a [(String, String, String)],
    stages: &'a [Planned],
}

fn write_plan(
    out: &mut dyn Write,
    plan: &[Planned],
    fresh: &str,
    stale: &str,
) -> std::io::Result<()> {
    let mut b = Builder::default();
    b.push_record(["stage", "kind", "state", "why"]);
    for p in plan {
        let why: Vec<String> = p.why.iter().map(|w| clean(&w.to_string())).collect();
        b.push_record([
            p.stage.clone(),
            p.kind.to_string(),
            if p.up_to_date() { fresh } else { stale }.to_string(),
            why.join("; "),
        ]);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))
}

#[cfg(feature = "train")]
/// Stages at once by default when stages run as Slurm jobs.
const SLURM_JOBS: usize = 64;

#[cfg(feature = "train")]
/// `--jobs` by default: the cores here, or, when stages run on Slurm (where the controller only
/// waits), as many as the cluster takes.
fn default_jobs(args: &PipelineRun, project: &Project) -> usize {
    use auditai::spec::ExecutorKind;
    let on_slurm = match args.executor {
        Some(e) => e == ExecutorKind::Slurm,
        None => project
            .spec
            .stages
            .iter()
            .any(|s| s.executor.kind == ExecutorKind::Slurm),
    };
    if on_slurm {
        SLURM_JOBS
    } else {
        std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(1)
    }
}

#[cfg(feature = "train")]
/// The pipeline flags of `auditai run`.
pub(super) struct PipelineRun {
    pub spec: PathBuf,
    pub out: Option<PathBuf>,
    pub stages: Vec<String>,
    pub no_upstream: bool,
    pub force: bool,
    pub jobs: Option<usize>,
    pub dry_run: bool,
    pub no_run_cache: bool,
    pub executor: Option<auditai::spec::ExecutorKind>,
    pub json: bool,
    pub quiet: bool,
    pub device: Option<auditai::spec::DeviceChoice>,
    pub skip_bad_rows: bool,
    pub terms: auditai::contribution::RunTerms,
}

#[cfg(feature = "train")]
/// `auditai run` of a multi-stage spec.
pub(super) fn run_pipeline(
    args: &PipelineRun,
    key: Option<&auditai::sign::SecretKey>,
) -> anyhow::Result<u8> {
    if args.dry_run {
        let project = Project::open_at(&args.spec, args.out.as_deref())?;
        let selection = project.select(&args.stages, !args.no_upstream)?;
        let run_dir = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(&project.spec.run_dir));
        let backing = stages::Backing::of(&run_dir, key);
        let plan = stages::plan(&project, &selection, args.force, backing)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            write_json(
                &mut out,
                &PlanJson {
                    schema: "auditai.pipeline-plan/v1",
                    up_to_date: plan.iter().all(Planned::up_to_date),
                    lock: &project.lock_path,
                    stages: &plan,
                    edges: None,
                    jobs: &[],
                },
            )?;
        } else {
            write_plan(&mut out, &plan, "would reuse", "would run")?;
            writeln!(out, "dry run: nothing was run or written")?;
        }
        out.flush()?;
        return Ok(EXIT_OK);
    }
    // Refuse a bad spec, graph or --stage before saying anything else.
    let project = Project::open_at(&args.spec, args.out.as_deref())?;
    let selected = project.select(&args.stages, !args.no_upstream)?.len();
    let jobs = args.jobs.unwrap_or_else(|| default_jobs(args, &project));
    let opts = stages::RunOptions {
        spec: args.spec.clone(),
        out: args.out.clone(),
        stages: args.stages.clone(),
        no_upstream: args.no_upstream,
        force: args.force,
        no_run_cache: args.no_run_cache,
        executor: args.executor,
        jobs,
        device: args.device,
        skip_bad_rows: args.skip_bad_rows,
        terms: args.terms.clone(),
    };
    stages::install_interrupt_handler();
    let mut printer = Printer::new(args.quiet);
    if key.is_none() {
        printer.line("notice: no signing key (--key, AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE); the manifest will be unsigned");
    }
    // On a terminal, one bar for the whole graph: stages settled, and which are running.
    printer.start_bar(
        selected as u64,
        "pipeline [{bar:30}] {pos}/{len} stages  {msg}",
        String::new(),
    );
    let mut running: Vec<String> = Vec::new();
    let report = stages::run(&opts, key, &mut |e| event(&printer, &mut running, e));
    printer.finish();
    let report = report?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(
            &mut out,
            &ReportJson {
                schema: "auditai.pipeline-report/v1",
                signed: !report.signers.is_empty(),
                report: &report,
            },
        )?;
    } else {
        write_report(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.ok {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

#[cfg(feature = "train")]
#[derive(serde::Serialize)]
struct ReportJson<'a> {
    /// `auditai.pipeline-report/v1`.
    schema: &'static str,
    signed: bool,
    #[serde(flatten)]
    report: &'a PipelineReport,
}

#[cfg(feature = "train")]
fn event(printer: &Printer, running: &mut Vec<String>, e: Event<'_>) {
    let status = |running: &Vec<String>| {
        if running.is_empty() {
            String::new()
        } else {
            clean(&format!("running: {}", running.join(", ")))
        }
    };
    match e {
        Event::Started { stage, why } => {
            let why: Vec<String> = why.iter().map(ToString::to_string).collect();
            printer.line(&clean(&format!("[{stage}] started ({})", why.join("; "))));
            running.push(stage.to_string());
            if printer.drawing() {
                printer.status(status(running));
            }
        }
        Event::Output { stage, line } => printer.line(&clean(&format!("[{stage}] {line}"))),
        Event::Finished {
            stage,
            outcome,
            done,
            total,
        } => {
            let what = match outcome {
                Outcome::Ran { seconds, .. } => format!("done in {seconds:.2} s"),
                Outcome::Reused => "up to date, reused".to_string(),
                Outcome::Restored { manifest } => {
                    format!("restored from cache (first produced by {manifest})")
                }
                Outcome::Failed { error } => format!("FAILED: {error}"),
                Outcome::Blocked { after } => format!("not run: {after} failed"),
                Outcome::Interrupted => "interrupted".to_string(),
            };
            printer.line(&clean(&format!("[{stage}] {what} ({done}/{total} stages)")));
            running.retain(|r| r != stage);
            printer.tick();
            if printer.drawing() {
                printer.status(status(running));
            }
        }
        Event::Notice(m) => printer.line(&clean(&format!("notice: {m}"))),
    }
}

#[cfg(feature = "train")]
fn write_report(out: &mut dyn Write, r: &PipelineReport) -> std::io::Result<()> {
    let mut b = Builder::default();
    b.push_record(["stage", "kind", "result", "seconds", "why"]);
    for s in &r.stages {
        let (result, secs, why) = match &s.outcome {
            Outcome::Ran { seconds, why } => (
                "ran".to_string(),
                format!("{seconds:.2}"),
                why.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Outcome::Reused => ("reused".into(), String::new(), "up to date".into()),
            Outcome::Restored { manifest } => (
                "restored".into(),
                String::new(),
                format!("restored from cache ({manifest})"),
            ),
            Outcome::Failed { error } => ("FAILED".into(), String::new(), error.clone()),
            Outcome::Blocked { after } => {
                ("not run".into(), String::new(), format!("{after} failed"))
            }
            Outcome::Interrupted => ("interrupted".into(), String::new(), String::new()),
        };
        b.push_record([
            s.stage.clone(),
            s.kind.to_string(),
            result,
            secs,
            clean(&why),
        ]);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    let mut m = Builder::default();
    let mut any = false;
    m.push_record(["stage", "metric", "value"]);
    for s in &r.stages {
        for (file, value) in &s.metrics {
            let mut flat = Vec::new();
            flatten("", value, &mut flat);
            for (k, v) in flat {
                any = true;
                m.push_record([s.stage.clone(), clean(&format!("{file}: {k}")), clean(&v)]);
            }
        }
    }
    if any {
        writeln!(out, "metrics:")?;
        writeln!(out, "{}", m.build().with(Style::sharp()))?;
    }
    let signed = match r.signers.as_slice() {
        [] => "unsigned".to_string(),
        keys => format!("signed by {}", keys.join(", ")),
    };
    match (&r.manifest, r.unchanged) {
        (Some(m), true) => writeln!(
            out,
            "pipeline {}: up to date; manifest {} unchanged",
            r.name,
            m.display()
        )?,
        (Some(m), false) => writeln!(out, "manifest: {} ({signed})", m.display())?,
        (None, _) => match &r.history_manifest {
            Some(h) => writeln!(
                out,
                "the pipeline did not complete; completed stages recorded in {} ({signed})",
                h.display()
            )?,
            None => writeln!(out, "the pipeline did not complete; nothing was recorded")?,
        },
    }
    writeln!(out, "lock: {}", r.lock.display())
}

#[cfg(feature = "train")]
/// Scalars of a metrics document as `key.sub = value` pairs (at most 64).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    if out.len() >= 64 {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Number(n) => out.push((
            prefix.to_string(),
            match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.4}"),
                _ => n.to_string(),
            },
        )),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
        _ => {}
    }
}

/// `auditai audit MANIFEST --rerun STAGE`.
pub(super) fn rerun_cmd(
    manifest: &std::path::Path,
    stage: &str,
    root: Option<&std::path::Path>,
    required: auditai::trust::Required<'_>,
    limits: &stages::rerun::Limits,
    json: bool,
) -> anyhow::Result<u8> {
    let report = stages::rerun::rerun(manifest, stage, root, required, limits)?;
    let accepted = report.reproduced || report.within_tolerance == Some(true);
    let mut out = std::io::stdout().lock();
    if json {
        #[derive(serde::Serialize)]
        struct J<'a> {
            schema: &'static str,
            verdict: &'static str,
            #[serde(flatten)]
            report: &'a RerunReport,
        }
        let verdict = match (report.reproduced, accepted) {
            (true, _) => "reproduced",
            (false, true) => "reproduced-within-tolerance",
            _ => "differs",
        };
        let j = J {
            schema: "auditai.rerun-report/v1",
            verdict,
            report: &report,
        };
        write_json(&mut out, &j)?;
    } else {
        write_rerun(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if accepted { EXIT_OK } else { EXIT_FAILED })
}

/// A rerun's outs table, the differing values, and the verdict line.
fn write_rerun(out: &mut dyn Write, report: &RerunReport) -> std::io::Result<()> {
    let mut b = Builder::default();
    b.push_record(["out", "result", "recorded blake3", "rerun blake3"]);
    for o in &report.outs {
        let result = match (&o.values, report.tolerance) {
            _ if o.same => "identical".to_string(),
            _ if o.rerun.is_none() => "MISSING".to_string(),
            (Some(v), Some(t)) if v.within(t) => format!(
                "within {t:e}: {} value(s) differ, by at most {:.1e}",
                v.differing, v.max_relative
            ),
            (Some(v), _) => format!(
                "DIFFERS: {} value(s){}",
                v.differing,
                if v.structural { "" } else { " (numbers only)" }
            ),
            _ if o.differing.is_empty() => "DIFFERS".to_string(),
            _ => format!("DIFFERS: {}", o.differing.join(", ")),
        };
        b.push_record([
            clean(&o.path),
            clean(&result),
            o.recorded.clone(),
            o.rerun.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    for o in &report.outs {
        let Some(v) = o.values.as_ref().filter(|v| !v.values.is_empty()) else {
            continue;
        };
        writeln!(
            out,
            "{}: differing values (recorded -> rerun):",
            clean(&o.path)
        )?;
        for d in &v.values {
            writeln!(
                out,
                "  {}: {} -> {}",
                clean(&d.at),
                clean(&d.recorded),
                clean(&d.rerun)
            )?;
        }
        if v.differing > v.values.len() {
            writeln!(out, "  … and {} more", v.differing - v.values.len())?;
        }
    }
    if let Some(t) = &report.stderr_tail {
        writeln!(out, "the rerun's stderr ends with:")?;
        for line in t.lines() {
            writeln!(out, "  {}", clean(line))?;
        }
    }
    if !report.missing_secrets.is_empty() {
        writeln!(
            out,
            "note: secret variable(s) {} were not set for the rerun",
            report.missing_secrets.join(", ")
        )?;
    }
    let code = report
        .exit_code
        .map_or("a signal".to_string(), |c| format!("exit status {c}"));
    match (report.reproduced, report.within_tolerance, report.tolerance) {
        (true, ..) => writeln!(
            out,
            "stage {}: reproduced ({code}; every out bitwise identical)",
            report.stage
        ),
        (false, Some(true), Some(t)) => writeln!(
            out,
            "stage {}: reproduced within a relative tolerance of {t:e} ({code}; not bitwise)",
            report.stage
        ),
        _ => writeln!(out, "stage {}: NOT reproduced ({code})", report.stage),
    }
}
