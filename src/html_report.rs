//! `auditai report`: one self-contained HTML page about a run — its evidence (manifest digests,
//! signers, anchors, verdicts, subjects), training curves from `metrics.jsonl`, a pipeline's
//! stage graph, and, from evaluation attestations, the confusion matrix, per-subgroup metrics
//! and the reliability diagram. Charts are inline SVG; the page loads nothing (a
//! Content-Security-Policy forbids it) and runs no script.
//!
//! Owns the page. Reads the run through the trust gate (files digest-checked against the
//! manifest) and says, for every piece of evidence, whether it was checked or only claimed.
//! Writes nothing: the caller writes the page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::eval::{EvalStatement, metrics::Metrics};
use crate::manifest::{PipelineExtension, ResourceDescriptor};
use crate::trust::{DocumentKind, Required, RunKind, SignedRun, TrustError};

/// Largest `metrics.jsonl` read.
const MAX_METRICS: u64 = 64 << 20;

/// What to put in the page.
pub struct Inputs<'a> {
    /// The run (its directory or manifest).
    pub run: &'a Path,
    /// Evaluation attestations about its model.
    pub evaluations: &'a [PathBuf],
    /// Whom the signatures must satisfy; `Unchecked` shows them as claimed.
    pub required: Required<'a>,
}

/// Build the page.
pub fn render(inputs: &Inputs<'_>) -> Result<String, TrustError> {
    let run = SignedRun::open(inputs.run, RunKind::Any, inputs.required)?;
    let checked = matches!(inputs.required, Required::Signers(_));
    let mut evals = Vec::new();
    for e in inputs.evaluations {
        let st = crate::trust::open_statement_as::<EvalStatement>(
            e,
            DocumentKind::Evaluation,
            inputs.required,
        )?;
        evals.push((e.clone(), st));
    }
    let name = run
        .pipeline()
        .map(|p| p.name.clone())
        .or_else(|| run.spec().ok().map(|s| s.name))
        .unwrap_or_else(|| run.path().display().to_string());
    let mut page = Page::default();
    page.evidence(&run, checked);
    match run.pipeline() {
        Some(ext) => {
            page.pipeline(ext);
            page.training_stages(&run, ext, inputs.required);
        }
        None => {
            page.h2("Training");
            page.training(&run);
        }
    }
    for (path, st) in &evals {
        page.evaluation(path, &st.statement, checked, &st.signers);
    }
    Ok(page.finish(&name))
}

#[derive(Default)]
struct Page {
    body: String,
}

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' => o.push_str(&format!("&#x{:x};", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "–".into()
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let _ = write!(t, "<td>{}</td>", esc(c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.6em 0;max-width:100%}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}\
th{background:#f3f3f3}code,.digest{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}\
.claimed{color:#9a5b00;font-weight:600}.checked{color:#176b1a;font-weight:600}.fail{color:#a00;font-weight:600}\
svg{background:#fff;border:1px solid #ddd;margin:.4em 0}";

impl Page {
    fn h2(&mut self, title: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", esc(title));
    }

    fn finish(self, name: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>auditai report: {n}</title><style>{STYLE}</style></head><body>\
<h1>auditai report: {n}</h1>{b}<p><small>Written by auditai {v}. This page shows what the files say; \
every row marked <span class=\"claimed\">claimed</span> was read, not checked. \
<code>auditai verify</code> checks the rest.</small></p></body></html>\n",
            n = esc(name),
            b = self.body,
            v = env!("CARGO_PKG_VERSION"),
        )
    }

    fn evidence(&mut self, run: &SignedRun, checked: bool) {
        self.h2("Evidence");
        let unsigned = run.opened().envelope.signatures.is_empty();
        let signers = if checked {
            format!("checked: valid signature(s) by {}", run.keyids().join(", "))
        } else if unsigned {
            "none: the manifest is unsigned".to_string()
        } else {
            let n = run.opened().envelope.signatures.len();
            let ids: Vec<String> = run
                .opened()
                .envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect();
            format!(
                "claimed, not checked: {n} signature(s) naming key(s) {}",
                ids.join(", ")
            )
        };
        let class = match (checked, unsigned) {
            (true, _) => "checked",
            (false, true) => "fail",
            _ => "claimed",
        };
        let _ = write!(
            self.body,
            "<table><tr><th>manifest</th><td><code>{}</code></td></tr>\
<tr><th>blake3</th><td class=\"digest\">{}</td></tr><tr><th>sha256</th><td class=\"digest\">{}</td></tr>\
<tr><th>signers</th><td><span class=\"{class}\">{}</span></td></tr></table>",
            esc(&run.path().display().to_string()),
            run.blake3_hex(),
            run.sha256_hex(),
            esc(&signers)
        );
        self.anchors(run.path());
        self.verdicts(run.dir());
        let rows: Vec<Vec<String>> = run.statement().subject.iter().map(descriptor_row).collect();
        self.body.push_str("<h3>Subjects</h3>");
        self.body
            .push_str(&table(&["name", "blake3", "sha256"], &rows));
    }

    fn anchors(&mut self, manifest: &Path) {
        let path = crate::anchor::receipt_path(manifest);
        let Ok(r) = crate::anchor::read_receipt(&path) else {
            self.body
                .push_str("<p>Anchors: no anchor receipt beside the manifest.</p>");
            return;
        };
        let mut rows = Vec::new();
        if let Some(e) = &r.evm {
            rows.push(vec![
                format!("{} (chain id {})", e.chain, e.chain_id),
                format!(
                    "tx {} in block {} ({})",
                    e.tx_hash, e.block_number, e.block_hash
                ),
            ]);
        }
        if let Some(o) = &r.ots {
            let heights: Vec<String> = o.bitcoin.iter().map(|b| b.height.to_string()).collect();
            rows.push(vec![
                "OpenTimestamps".into(),
                format!("{} (Bitcoin blocks: {})", o.status, heights.join(", ")),
            ]);
        }
        let _ = write!(
            self.body,
            "<h3>Anchors <span class=\"claimed\">claimed</span></h3><p>Merkle root <code>{}</code>, leaf {} of {}.</p>{}",
            esc(&r.root),
            r.leaf_index,
            r.tree_size,
            table(&["where", "receipt"], &rows)
        );
    }

    fn verdicts(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| crate::vsa::is_verdict_file(n))
            .collect();
        if names.is_empty() {
            return;
        }
        names.sort();
        let rows: Vec<Vec<String>> = names
            .iter()
            .map(|n| {
                let d = crate::fsio::read_bounded(&dir.join(n), crate::fsio::MAX_DOCUMENT)
                    .map(|b| crate::hash::Digest::of(&b).hex())
                    .unwrap_or_default();
                vec![n.clone(), d]
            })
            .collect();
        self.body.push_str(
            "<h3>Verdicts beside the manifest <span class=\"claimed\">claimed</span></h3>",
        );
        self.body.push_str(&table(&["file", "blake3"], &rows));
    }

    fn training(&mut self, run: &SignedRun) {
        if let Some(ext) = &run.statement().predicate.auditai {
            let _ = write!(
                self.body,
                "<p>Backend <code>{}</code>; final epoch {}; held-out split: {}.</p>",
                esc(&ext.backend),
                ext.final_epoch,
                esc(&ext.held_out)
            );
            self.metrics_table(&ext.metrics);
        }
        match run.read(crate::run_dir::METRICS, MAX_METRICS) {
            Ok(bytes) => self.curves(&bytes),
            Err(e) => {
                let _ = write!(
                    self.body,
                    "<p class=\"fail\">No training curves: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
    }

    /// Each training stage's own run (pinned by the digest the pipeline manifest records): its
    /// metrics and curves.
    fn training_stages(
        &mut self,
        run: &SignedRun,
        ext: &PipelineExtension,
        required: Required<'_>,
    ) {
        let root = crate::run_dir::project_root(run.path(), ext.run_dir.as_deref());
        for s in ext.stages.iter().filter(|s| s.manifest.is_some()) {
            let Some(m) = &s.manifest else { continue };
            let (Some(name), Some(b3)) = (m.name.as_deref(), m.digest.get("blake3")) else {
                continue;
            };
            let _ = write!(self.body, "<h2>Training stage {}</h2>", esc(&s.name));
            let opened = crate::fsio::safe_join(&root, name)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    SignedRun::open_pinned(
                        &p,
                        crate::trust::Pin::Blake3(b3),
                        RunKind::Training,
                        required,
                    )
                    .map_err(|e| e.to_string())
                });
            match opened {
                Ok(stage_run) => self.training(&stage_run),
                Err(e) => {
                    let _ = write!(
                        self.body,
                        "<p class=\"fail\">Its run cannot be shown: {}</p>",
                        esc(&e)
                    );
                }
            }
        }
    }

    fn metrics_table(&mut self, metrics: &serde_json::Value) {
        let rows: Vec<Vec<String>> = crate::spec::params::leaves(metrics)
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|f| vec![k, num(f)]))
            .collect();
        if !rows.is_empty() {
            self.body.push_str(&table(&["metric", "value"], &rows));
        }
    }

    fn curves(&mut self, jsonl: &[u8]) {
        #[derive(Deserialize)]
        struct Epoch {
            epoch: usize,
            train_loss: f64,
            val_loss: f64,
            val_metric: f64,
            metric: String,
        }
        let epochs: Vec<Epoch> = String::from_utf8_lossy(jsonl)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if epochs.is_empty() {
            return;
        }
        let x: Vec<f64> = epochs.iter().map(|e| e.epoch as f64).collect();
        let train: Vec<f64> = epochs.iter().map(|e| e.train_loss).collect();
        let val: Vec<f64> = epochs.iter().map(|e| e.val_loss).collect();
        let metric: Vec<f64> = epochs.iter().map(|e| e.val_metric).collect();
        self.body
            .push_str("<h3>Training curves (metrics.jsonl, digest-checked)</h3>");
        self.body.push_str(&line_chart(
            "loss per epoch",
            &x,
            &[
                ("train loss", &train, "#1f77b4"),
                ("validation loss", &val, "#d62728"),
            ],
        ));
        let name = format!("validation {}", epochs[0].metric);
        self.body.push_str(&line_chart(
            &name,
            &x,
            &[(name.as_str(), &metric, "#2ca02c")],
        ));
    }

    fn pipeline(&mut self, ext: &PipelineExtension) {
        self.h2("Pipeline");
        let _ = write!(
            self.body,
            "<p>Spec <code>{}</code>; {} stage(s); {}.</p>",
            esc(&ext.spec),
            ext.stages.len(),
            if ext.complete {
                "complete"
            } else {
                "not complete"
            }
        );
        self.body.push_str(&stage_graph(ext));
        let mut rows = Vec::new();
        for s in &ext.stages {
            let how = match (s.status, s.restored) {
                (crate::manifest::StageStatus::Ran, _) => "ran",
                (_, true) => "restored from the run cache",
                _ => "reused",
            };
            let metrics: Vec<String> = s
                .metrics
                .iter()
                .flat_map(|(f, v)| {
                    crate::spec::params::leaves(v)
                        .into_iter()
                        .filter_map(move |(k, x)| {
                            x.as_f64().map(|n| format!("{f}: {k} = {}", num(n)))
                        })
                })
                .collect();
            let place = match (&s.executor, s.status) {
                (Some(j), _) => format!("Slurm job {} on {} ({})", j.job_id, j.nodes, j.cluster),
                (None, crate::manifest::StageStatus::Ran) => "locally".to_string(),
                _ => "–".to_string(),
            };
            rows.push(vec![
                s.name.clone(),
                s.kind.clone(),
                how.into(),
                place,
                metrics.join("; "),
            ]);
        }
        self.body.push_str(&table(
            &["stage", "kind", "status", "where", "metrics"],
            &rows,
        ));
        let outs: Vec<Vec<String>> = ext
            .stages
            .iter()
            .flat_map(|s| s.outs.iter().map(|o| (s.name.clone(), o)))
            .map(|(s, o)| {
                let mut r = descriptor_row(o);
                r.insert(0, s);
                r
            })
            .collect();
        self.body.push_str("<h3>Outs</h3>");
        self.body
            .push_str(&table(&["stage", "out", "blake3", "sha256"], &outs));
    }

    fn evaluation(
        &mut self,
        path: &Path,
        st: &EvalStatement,
        checked: bool,
        signers: &[crate::sign::PublicKey],
    ) {
        let e = &st.predicate;
        self.h2(&format!("Evaluation: {}", path.display()));
        let who = if checked {
            let ids: Vec<&str> = signers.iter().map(|k| k.keyid.as_str()).collect();
            format!(
                "<span class=\"checked\">signed by {}</span>",
                esc(&ids.join(", "))
            )
        } else {
            "<span class=\"claimed\">signatures not checked</span>".to_string()
        };
        let _ = write!(
            self.body,
            "<p>{who}; {} rows of <code>{}</code>; criteria verdict: <b>{}</b>.</p>",
            e.overall.rows,
            esc(&e.data.name),
            esc(&e.verdict.to_string())
        );
        if let Some(c) = &e.criteria {
            let rows: Vec<Vec<String>> = c
                .results
                .iter()
                .map(|j| {
                    let v = j.value.map(num).unwrap_or_default();
                    let ok = if j.passed { "holds" } else { "FAILS" };
                    vec![j.criterion.clone(), v, ok.into(), j.detail.clone()]
                })
                .collect();
            self.body
                .push_str(&table(&["criterion", "value", "verdict", "detail"], &rows));
        }
        let scalars = |m: &Metrics| {
            m.scalars()
                .into_iter()
                .map(|(k, v)| format!("{k} {}", num(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(self.body, "<p>Overall: {}.</p>", esc(&scalars(&e.overall)));
        let classes = e.classes.clone().unwrap_or_default();
        if !e.overall.confusion.is_empty() {
            self.body
                .push_str(&confusion(&e.overall.confusion, &classes));
        }
        if !e.subgroups.is_empty() {
            let rows: Vec<Vec<String>> = e
                .subgroups
                .iter()
                .map(|g| {
                    let small = if g.too_small {
                        " (too small to judge)"
                    } else {
                        ""
                    };
                    vec![
                        format!("{} = {}{small}", g.column, g.value),
                        g.metrics.rows.to_string(),
                        scalars(&g.metrics),
                    ]
                })
                .collect();
            self.body.push_str("<h3>Subgroups</h3>");
            self.body
                .push_str(&table(&["subgroup", "rows", "metrics"], &rows));
        }
        if !e.overall.reliability.is_empty() {
            self.body.push_str(&reliability(&e.overall.reliability));
        }
    }
}

fn descriptor_row(d: &ResourceDescriptor) -> Vec<String> {
    vec![
        d.name.clone().unwrap_or_default(),
        d.digest.get("blake3").cloned().unwrap_or_default(),
        d.digest.get("sha256").cloned().unwrap_or_default(),
    ]
}

/// A line chart: series over `x`, scaled to fit, with axis labels.
fn line_chart(title: &str, x: &[f64], series: &[(&str, &[f64], &str)]) -> String {
    let (w, h, pad) = (640.0, 260.0, 46.0);
    let finite = |v: &&f64| v.is_finite();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().filter(finite).copied())
        .collect();
    let (x0, x1) = (
        x.first().copied().unwrap_or(0.0),
        x.last().copied().unwrap_or(1.0),
    );
    let (mut y0, mut y1) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if y1.partial_cmp(&y0) != Some(std::cmp::Ordering::Greater) {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let sx = |v: f64| pad + (v - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * pad);
    let sy = |v: f64| h - pad - (v - y0) / (y1 - y0) * (h - 2.0 * pad);
    let mut svg = format!(
        "<figure><svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\">\
<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#888\"/>\
<text x=\"{pad}\" y=\"{ty}\" font-size=\"11\">{y1l}</text><text x=\"{pad}\" y=\"{by}\" font-size=\"11\">{y0l}</text>\
<text x=\"{r}\" y=\"{lx}\" font-size=\"11\" text-anchor=\"end\">epoch {x1l}</text>",
        t = esc(title),
        b = h - pad,
        r = w - pad,
        ty = pad - 4.0,
        by = h - pad + 14.0,
        lx = h - pad + 28.0,
        y1l = num(y1),
        y0l = num(y0),
        x1l = x1,
    );
    for (k, (name, ys, color)) in series.iter().enumerate() {
        let pts: Vec<String> = x
            .iter()
            .zip(ys.iter())
            .filter(|(_, y)| y.is_finite())
            .map(|(&a, &b)| format!("{:.1},{:.1}", sx(a), sy(b)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{color}\">{}</text>",
            pts.join(" "),
            pad + 10.0 + 150.0 * k as f64,
            pad - 18.0,
            esc(name)
        );
    }
    let _ = write!(
        svg,
        "</svg><figcaption>{}</figcaption></figure>",
        esc(title)
    );
    svg
}

/// The confusion matrix as a shaded table (rows: true class; columns: predicted).
fn confusion(m: &[Vec<u64>], classes: &[String]) -> String {
    let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut t = String::from("<h3>Confusion matrix</h3><table><tr><th>true \\ predicted</th>");
    for j in 0..m.first().map_or(0, Vec::len) {
        let _ = write!(t, "<th>{}</th>", esc(&name(j)));
    }
    t.push_str("</tr>");
    for (i, row) in m.iter().enumerate() {
        let _ = write!(t, "<tr><th>{}</th>", esc(&name(i)));
        for &c in row {
            let a = 0.08 + 0.6 * c as f64 / max;
            let _ = write!(
                t,
                "<td style=\"background:rgba(31,119,180,{a:.2})\">{c}</td>"
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

/// The reliability diagram: observed frequency against mean predicted probability per bin.
fn reliability(bins: &[crate::eval::metrics::Bin]) -> String {
    let (s, pad) = (300.0, 36.0);
    let at = |v: f64| pad + v.clamp(0.0, 1.0) * (s - 2.0 * pad);
    let up = |v: f64| s - at(v);
    let mut svg = format!(
        "<h3>Reliability diagram</h3><figure><svg width=\"{s}\" height=\"{s}\" role=\"img\" aria-label=\"reliability diagram\">\
<line x1=\"{a}\" y1=\"{b}\" x2=\"{c}\" y2=\"{d}\" stroke=\"#aaa\" stroke-dasharray=\"4\"/>",
        a = at(0.0),
        b = up(0.0),
        c = at(1.0),
        d = up(1.0)
    );
    let pts: Vec<String> = bins
        .iter()
        .filter(|b| b.rows > 0)
        .map(|b| format!("{:.1},{:.1}", at(b.mean_predicted), up(b.observed)))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"{}\"/>",
        pts.join(" ")
    );
    for p in &pts {
        let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
        let _ = write!(
            svg,
            "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"#d62728\"/>"
        );
    }
    svg.push_str("</svg><figcaption>observed share of the second class against the mean predicted probability, per bin; the dashed line is perfect calibration</figcaption></figure>");
    svg
}

/// The stage graph: stages in columns by depth, an arrow from each stage to the stages that
/// read one of its outs.
fn stage_graph(ext: &PipelineExtension) -> String {
    let stages = &ext.stages;
    let reads = |b: usize, a: usize| {
        stages[b].deps.iter().any(|d| {
            stages[a].outs.iter().any(|o| {
                let (d, o) = (
                    d.name.as_deref().unwrap_or(""),
                    o.name.as_deref().unwrap_or(""),
                );
                crate::stages::graph::within(d, o) || crate::stages::graph::within(o, d)
            })
        })
    };
    let n = stages.len();
    let mut depth = vec![0usize; n];
    for _ in 0..n {
        for b in 0..n {
            for a in (0..n).filter(|&a| a != b && reads(b, a)) {
                depth[b] = depth[b].max(depth[a] + 1).min(n);
            }
        }
    }
    let mut row_of = vec![0usize; n];
    let mut per_col = vec![0usize; n + 1];
    for i in 0..n {
        row_of[i] = per_col[depth[i]];
        per_col[depth[i]] += 1;
    }
    let (bw, bh, gx, gy) = (170.0, 30.0, 60.0, 16.0);
    let pos = |i: usize| {
        (
            10.0 + depth[i] as f64 * (bw + gx),
            10.0 + row_of[i] as f64 * (bh + gy),
        )
    };
    let w = 20.0 + (depth.iter().max().copied().unwrap_or(0) + 1) as f64 * (bw + gx);
    let h = 20.0 + per_col.iter().max().copied().unwrap_or(1) as f64 * (bh + gy);
    let mut svg = format!(
        "<h3>Stage graph</h3><svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"stage graph\">"
    );
    for b in 0..n {
        for a in (0..n).filter(|&a| a != b && reads(b, a)) {
            let ((ax, ay), (bx, by)) = (pos(a), pos(b));
            let _ = write!(
                svg,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{bx}\" y2=\"{}\" stroke=\"#888\"/>",
                ax + bw,
                ay + bh / 2.0,
                by + bh / 2.0
            );
        }
    }
    for (i, s) in stages.iter().enumerate() {
        let (x, y) = pos(i);
        let label: String = s.name.chars().take(24).collect();
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{bw}\" height=\"{bh}\" rx=\"5\" fill=\"#eef4fb\" stroke=\"#1f77b4\"/>\
<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            x + 8.0,
            y + 19.0,
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_charts_are_well_formed() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let c = line_chart("t<", &[1.0, 2.0], &[("a", &[0.5, f64::NAN], "#000")]);
        assert!(c.contains("t&lt;") && c.starts_with("<figure><svg") && c.ends_with("</figure>"));
        let m = confusion(&[vec![3, 1], vec![0, 4]], &["a<".into(), "b".into()]);
        assert!(m.contains("a&lt;") && m.contains(">4</td>"));
    }
}
