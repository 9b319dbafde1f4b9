//! `auditai keygen`, `sign`, `verify` and `inspect`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::fsio;
use auditai::manifest;
use auditai::report::Status;
use auditai::sign::{self, PublicKey};
use auditai::trust::{DocumentKind, Expect, Policy, Trust};
use auditai::verify;

use super::{EXIT_FAILED, EXIT_OK, claimed_note, clean, hints, write_json};

#[derive(Debug, clap::Args)]
pub(super) struct KeygenArgs {
    /// Write PREFIX.key (private, PKCS#8 PEM, mode 0600) and PREFIX.pub (public, SPKI PEM).
    #[arg(long, value_name = "PREFIX", default_value = "auditai")]
    out: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct SignArgs {
    /// The manifest (manifest.intoto.json).
    manifest: PathBuf,
    /// The ed25519 private key (PKCS#8 PEM, mode 0600). Otherwise AUDITAI_SIGNING_KEY (PEM
    /// text), then AUDITAI_SIGNING_KEY_FILE.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// The document: a manifest (manifest.intoto.json), an evidence bundle (`auditai bundle`), an
    /// evaluation attestation, a verdict, a model card, an ML-BOM or a prediction log. It is
    /// checked as what its content says it is, and refused when its name (or --expect) says it
    /// should be something else.
    manifest: PathBuf,
    /// What the document must be: manifest (provenance or pipeline), provenance, pipeline,
    /// evaluation, verdict, model-card, ml-bom or prediction-log. Anything else fails.
    #[arg(long, value_name = "KIND", value_parser = parse_expect)]
    expect: Option<Expect>,
    /// Prediction logs: fail unless every entry is covered by an anchor or a signed checkpoint
    /// (an unkeyed hash chain alone does not stop someone who rewrites the whole log).
    #[arg(long)]
    require_covered: bool,
    /// A trusted public key (SPKI PEM); repeat for several.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy (YAML: signers, threshold, required names).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Where the data and spec files named by the manifest live (default: the git work tree
    /// holding the manifest, else the current directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Check the anchor receipt online against this JSON-RPC endpoint.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Check the anchor receipt online against this chain preset's endpoint.
    #[arg(long, value_name = "NAME")]
    chain: Option<String>,
    /// A Bitcoin block header the verifier trusts, as HEIGHT:MERKLEROOT (the merkle root as
    /// `bitcoin-cli getblockheader` prints it); repeatable. An OpenTimestamps Bitcoin
    /// attestation is reported as checked only against such a header or --bitcoin-rpc, else as
    /// claimed.
    #[arg(long = "bitcoin-header", value_name = "HEIGHT:ROOT")]
    bitcoin_headers: Vec<String>,
    /// The verifier's own bitcoind JSON-RPC URL (http://user:password@127.0.0.1:8332), asked for
    /// the headers of attested blocks. Credentials are used, never printed.
    #[arg(long, value_name = "URL")]
    bitcoin_rpc: Option<String>,
    /// A file or directory in the run directory that the manifest does not name but that is
    /// expected there (repeatable). Anything else unnamed fails verification, as in OpenSSF
    /// model-signing; the manifest's own receipts and proofs are always expected.
    #[arg(long, value_name = "NAME")]
    allow_extra: Vec<String>,
    /// Check a withheld data source of a run (a salted contribution) with its salt: SOURCE is
    /// the data file as the manifest names it (or its file name), SALT_FILE the owner's salt
    /// (repeatable). Without it the source is reported as withheld, committed by its owner.
    #[arg(long, value_name = "SOURCE=SALT_FILE")]
    reveal: Vec<String>,
    /// Check only that FILE is a subject or byproduct of the signed statement (found by digest,
    /// under any name), besides the signatures, policy and anchor; repeatable. No other file the
    /// manifest records is needed. Exit 0 only when every given file matches.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["partial", "allow_extra"])]
    artifact: Vec<PathBuf>,
    /// Check the recorded files that are here and report the others as `absent` (dependencies
    /// as withheld), never as verified; a present file that differs still fails. The verdict
    /// line counts both.
    #[arg(long)]
    partial: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    attest: super::verdict::AttestArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct InspectArgs {
    /// The manifest (manifest.intoto.json) or an evidence bundle.
    manifest: PathBuf,
    /// Print the statement as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `keygen --json`: fields in sorted order (as the earlier `json!` object printed them).
#[derive(serde::Serialize)]
struct KeygenJson<'a> {
    keyid: &'a str,
    private_key: &'a std::path::Path,
    public_key: &'a std::path::Path,
    /// `auditai.keygen/v1`.
    schema: &'static str,
}

pub(super) fn keygen(args: &KeygenArgs) -> anyhow::Result<u8> {
    let (private, public, key) = sign::keygen(&args.out)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = KeygenJson {
            keyid: &key.keyid,
            private_key: &private,
            public_key: &public,
            schema: "auditai.keygen/v1",
        };
        write_json(&mut out, &v)?;
    } else {
        writeln!(out, "private key  {}", private.display())?;
        writeln!(out, "public key   {}", public.display())?;
        writeln!(out, "keyid        {}", key.keyid)?;
    }
    Ok(EXIT_OK)
}

pub(super) fn sign_cmd(args: &SignArgs) -> anyhow::Result<u8> {
    let Some((key, _)) = sign::signing_key(args.key.as_deref())? else {
        bail!(
            "no signing key: pass --key FILE or set AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE"
        );
    };
    let bytes = read_document(&args.manifest)?;
    // Any in-toto statement in a DSSE envelope: a manifest or an evaluation attestation.
    let (mut envelope, _, _) = auditai::manifest::open_envelope(&bytes)
        .map_err(|why| anyhow::anyhow!("{}: {why}", args.manifest.display()))?;
    let keyid = key.public().keyid;
    if envelope.signatures.iter().any(|s| s.keyid == keyid) {
        bail!("{}: already signed by {keyid}", args.manifest.display());
    }
    envelope.sign(&key);
    fsio::write_atomic(&args.manifest, &envelope.to_bytes())
        .map_err(|e| anyhow::anyhow!("{}: cannot write manifest: {e}", args.manifest.display()))?;
    writeln!(
        std::io::stdout().lock(),
        "signed {} as {keyid} ({} signature(s))",
        args.manifest.display(),
        envelope.signatures.len()
    )?;
    Ok(EXIT_OK)
}

/// `verify --json`: fields in sorted order (as the earlier `json!` object printed them).
#[derive(serde::Serialize)]
struct VerifyJson<'a> {
    /// The rows, through `serde_json::Value` so that their keys stay sorted as before.
    checks: serde_json::Value,
    /// The kind the document was checked as.
    kind: &'a str,
    manifest: &'a std::path::Path,
    ok: bool,
    /// `auditai.verify-report/v1`.
    schema: &'static str,
    /// The verdict written with `--attest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'a std::path::Path>,
    /// With `--partial`: recorded files checked, absent and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<FileCounts>,
}

/// `verify --partial --json`: what was and was not checked.
#[derive(serde::Serialize)]
struct FileCounts {
    absent: usize,
    checked: usize,
    total: usize,
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    s.parse()
}

/// A document named on the command line (bounded, regular files only).
pub(super) fn read_document(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    fsio::read_bounded(path, fsio::MAX_DOCUMENT)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The trust of `keys` (SPKI PEM files) and `policy`.
pub(super) fn trust_of(
    keys: &[PathBuf],
    policy: Option<&std::path::Path>,
) -> anyhow::Result<Trust> {
    Ok(Trust {
        keys: keys
            .iter()
            .map(|p| PublicKey::read(p))
            .collect::<Result<Vec<_>, _>>()?,
        policy: policy.map(Policy::load).transpose()?,
    })
}

/// The verification options of `verify`'s flags.
fn verify_options(args: &VerifyArgs) -> anyhow::Result<verify::Options> {
    #[cfg(not(feature = "anchor"))]
    if args.rpc.is_some() || args.chain.is_some() || args.bitcoin_rpc.is_some() {
        return Err(super::needs_feature(
            "anchor",
            "checking anchors online (--rpc, --chain, --bitcoin-rpc)",
        ));
    }
    let online =
        auditai::anchor::chain::Chain::resolve_online(args.chain.as_deref(), args.rpc.as_deref())?;
    let mut bitcoin = auditai::anchor::bitcoin::Headers {
        rpc: args.bitcoin_rpc.clone(),
        ..Default::default()
    };
    for h in &args.bitcoin_headers {
        let (height, root) = auditai::anchor::bitcoin::parse_header(h)
            .map_err(|e| anyhow::anyhow!("--bitcoin-header {e}"))?;
        bitcoin.roots.insert(height, root);
    }
    Ok(verify::Options {
        trust: trust_of(&args.keys, args.policy.as_deref())?,
        root: args.root.clone(),
        online,
        allow_extra: args.allow_extra.clone(),
        bitcoin,
        expect: args.expect,
        require_covered: args.require_covered,
        reveal: auditai::contribution::Reveal::parse(&args.reveal)?,
        files: if !args.artifact.is_empty() {
            verify::FileScope::Artifacts(args.artifact.clone())
        } else if args.partial {
            verify::FileScope::Present
        } else {
            verify::FileScope::All
        },
    })
}

/// A bundle is verified as its manifest, unpacked beside nothing: the files it records are
/// absent unless `--artifact` names them, and dependencies are looked for under `--root`,
/// else the bundle's directory. Rows name the bundle, not the private directory.
fn verify_bundle(
    args: &VerifyArgs,
    opts: &mut verify::Options,
    u: &super::bundle::Unpacked,
) -> anyhow::Result<verify::Verified> {
    if opts.files == verify::FileScope::All {
        opts.files = verify::FileScope::Present;
    }
    if opts.root.is_none() {
        opts.root = Some(auditai::run_dir::of_manifest(&args.manifest).to_path_buf());
    }
    let mut verified = verify::verify(&u.manifest, opts)?;
    let private = u.dir.path().display().to_string();
    let shown = format!("{}:", args.manifest.display());
    for c in &mut verified.report.checks {
        c.detail = c.detail.replace(&format!("{private}/"), &shown);
        c.detail = c.detail.replace(&private, &shown);
    }
    Ok(verified)
}

pub(super) fn verify_cmd(args: &VerifyArgs) -> anyhow::Result<u8> {
    let mut opts = verify_options(args)?;
    let unpacked = super::bundle::unpacked(&args.manifest)?;
    let verify::Verified { kind, report } = match &unpacked {
        Some(u) => verify_bundle(args, &mut opts, u)?,
        None => verify::verify(&args.manifest, &opts)?,
    };
    let partial = args.partial || unpacked.is_some() && args.artifact.is_empty();
    let is_run = matches!(
        kind,
        Some(DocumentKind::Provenance | DocumentKind::Pipeline)
    );
    if args.attest.attest.is_some() && !is_run {
        bail!("--attest applies to provenance manifests (training or pipeline runs)");
    }
    if (args.partial || !args.artifact.is_empty()) && !is_run {
        bail!("--partial and --artifact apply to provenance manifests (training or pipeline runs)");
    }
    let verdict = super::verdict::write(
        &args.attest,
        super::verdict::Outcome {
            kind: auditai::vsa::VerdictKind::Verify,
            manifest: &args.manifest,
            report: &report,
            passed: report.ok(),
            audit: None,
            policy: args.policy.as_deref(),
            keys: &opts.trust.keys,
        },
    )?;
    let kind_label = kind.map_or("not a document auditai reads", DocumentKind::label);
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = VerifyJson {
            checks: serde_json::to_value(hints::rows(&report.checks))?,
            kind: kind_label,
            manifest: &args.manifest,
            ok: report.ok(),
            schema: "auditai.verify-report/v1",
            verdict: verdict.as_ref().map(|(p, _)| p.as_path()),
            files: partial.then(|| {
                let (checked, absent, total) = report.file_counts();
                FileCounts {
                    absent,
                    checked,
                    total,
                }
            }),
        };
        write_json(&mut out, &v)?;
    } else {
        let mut b = Builder::default();
        b.push_record(["check", "status", "detail"]);
        for c in &hints::rows(&report.checks) {
            b.push_record([clean(&c.check), c.status.to_string(), clean(&c.detail)]);
        }
        writeln!(out, "{}", b.build().with(Style::sharp()))?;
        writeln!(out, "{}", verdict_line(args, partial, kind_label, &report))?;
        if let Some((p, result)) = &verdict {
            writeln!(out, "verdict: {} ({result}, signed)", p.display())?;
        }
    }
    out.flush()?;
    Ok(if report.ok() { EXIT_OK } else { EXIT_FAILED })
}

/// The line under the table: verified or not, and with `--partial` or `--artifact` exactly
/// what was checked.
fn verdict_line(
    args: &VerifyArgs,
    partial: bool,
    kind_label: &str,
    report: &auditai::report::Report,
) -> String {
    let path = args.manifest.display();
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    if failed > 0 {
        return format!("NOT verified: {path} ({kind_label}): {failed} check(s) failed");
    }
    let claimed = claimed_note(report.claimed());
    if partial {
        let (checked, absent, total) = report.file_counts();
        format!(
            "verified (partial): {path} ({kind_label}): signatures hold; {checked} of {total} recorded files checked, {absent} absent and not checked{claimed}"
        )
    } else if !args.artifact.is_empty() {
        let n = args.artifact.len();
        format!(
            "verified: {path} ({kind_label}): signatures hold and the {n} given file(s) are in the signed statement; no other recorded file was checked{claimed}"
        )
    } else {
        format!("verified: {path} ({kind_label}){claimed}")
    }
}

pub(super) fn inspect(args: &InspectArgs) -> anyhow::Result<u8> {
    let unpacked = super::bundle::unpacked(&args.manifest)?;
    let bytes = match &unpacked {
        Some(u) => u
            .bundle
            .manifest
            .bytes()
            .map_err(|why| anyhow::anyhow!("{}: {why}", args.manifest.display()))?,
        None => read_document(&args.manifest)?,
    };
    match manifest::predicate_type_of(&bytes).as_deref() {
        Some(manifest::EVAL_PREDICATE) => return inspect_eval(args, &bytes),
        Some(manifest::VSA_PREDICATE) => return inspect_verdict(args, &bytes),
        _ => {}
    }
    let opened = auditai::manifest::open(&bytes)
        .map_err(|why| anyhow::anyhow!("{}: {why}", args.manifest.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let payload: serde_json::Value = serde_json::from_slice(&opened.payload)?;
        write_json(&mut out, &payload)?;
        return Ok(EXIT_OK);
    }
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(u) = &unpacked {
        rows.push(("bundle", super::bundle::carried(&u.bundle)));
    }
    summary_rows(&opened.statement, &mut rows);
    let signers = opened
        .envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect::<Vec<_>>();
    print_rows(&mut out, rows, &signers)
}

/// `inspect`'s table: the rows, then the signatures (listed, not checked).
fn print_rows<K: AsRef<str>>(
    out: &mut impl Write,
    rows: Vec<(K, String)>,
    signers: &[String],
) -> anyhow::Result<u8> {
    let mut b = Builder::default();
    for (k, v) in rows {
        b.push_record([clean(k.as_ref()), clean(&v)]);
    }
    b.push_record([
        "signatures".to_string(),
        if signers.is_empty() {
            "none (unsigned)".to_string()
        } else {
            format!(
                "{} (not checked here; use auditai verify)",
                signers.join(", ")
            )
        },
    ]);
    writeln!(out, "{}", b.build().with(Style::sharp()))?;
    Ok(EXIT_OK)
}

/// `inspect` of a verdict: who verified what, when, under which trust, and every row.
fn inspect_verdict(args: &InspectArgs, bytes: &[u8]) -> anyhow::Result<u8> {
    let (envelope, payload, value) = manifest::open_envelope(bytes)
        .map_err(|why| anyhow::anyhow!("{}: {why}", args.manifest.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let payload: serde_json::Value = serde_json::from_slice(&payload)?;
        write_json(&mut out, &payload)?;
        return Ok(EXIT_OK);
    }
    let st: auditai::vsa::VerdictStatement = serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("{}: not an auditai verdict: {e}", args.manifest.display()))?;
    let v = &st.predicate;
    let mut rows: Vec<(String, String)> = vec![
        (
            "verdict".into(),
            format!("{} {}", v.auditai.kind, v.verification_result),
        ),
        ("resource".into(), v.resource_uri.clone()),
        (
            "verifier".into(),
            format!("{} at {}", v.verifier.id, v.time_verified),
        ),
        (
            "trust".into(),
            format!("{} {:?}", v.policy.uri, v.policy.digest),
        ),
    ];
    if let Some(a) = &v.auditai.audit {
        rows.push((
            "replay".into(),
            format!(
                "challenge {} ({}), {} of {} replayed segments matched ({} segments in the run)",
                a.challenge.as_deref().unwrap_or("?"),
                a.challenge_source,
                a.segments_passed,
                a.segments.len(),
                a.segments_total
            ),
        ));
    }
    for c in &v.auditai.checks {
        rows.push((
            format!("check {}", c.check),
            format!("{}: {}", c.status, c.detail),
        ));
    }
    let signers: Vec<String> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    print_rows(&mut out, rows, &signers)
}

/// `inspect` of an evaluation attestation: the model, data, metrics, criteria and verdict.
fn inspect_eval(args: &InspectArgs, bytes: &[u8]) -> anyhow::Result<u8> {
    let (envelope, payload, value) = manifest::open_envelope(bytes)
        .map_err(|why| anyhow::anyhow!("{}: {why}", args.manifest.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let payload: serde_json::Value = serde_json::from_slice(&payload)?;
        write_json(&mut out, &payload)?;
        return Ok(EXIT_OK);
    }
    let st: auditai::eval::EvalStatement = serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an auditai evaluation attestation: {e}",
            args.manifest.display()
        )
    })?;
    let ev = &st.predicate;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "model",
            format!(
                "{} (manifest blake3 {}{})",
                ev.model.manifest,
                ev.model.manifest_blake3,
                if ev.model.verified {
                    ""
                } else {
                    ", NOT verified"
                }
            ),
        ),
        (
            "data",
            format!(
                "{}: {} rows, blake3 {}",
                ev.data.name, ev.data.rows, ev.data.blake3
            ),
        ),
    ];
    let metrics: Vec<String> = [
        ("accuracy", ev.overall.accuracy),
        ("macro_f1", ev.overall.macro_f1),
        ("roc_auc", ev.overall.roc_auc),
        ("brier", ev.overall.brier),
        ("mse", ev.overall.mse),
        ("mae", ev.overall.mae),
        ("r2", ev.overall.r2),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} {v:.4}")))
    .collect();
    rows.push(("metrics", metrics.join(", ")));
    rows.push((
        "subgroups",
        format!(
            "{} ({} too small to judge)",
            ev.subgroups.len(),
            ev.subgroups.iter().filter(|g| g.too_small).count()
        ),
    ));
    rows.push((
        "leakage",
        format!(
            "{}: {} overlapping rows",
            ev.leakage.status, ev.leakage.overlapping_rows
        ),
    ));
    for r in ev.criteria.iter().flat_map(|c| &c.results) {
        rows.push((
            "criterion",
            format!(
                "{}: {}{}",
                r.criterion,
                if r.passed { "pass" } else { "FAIL" },
                r.value.map_or(String::new(), |v| format!(" ({v:.4})"))
            ),
        ));
    }
    rows.push((
        "pre-registration",
        format!(
            "{}: {}",
            ev.pre_registration.status, ev.pre_registration.detail
        ),
    ));
    rows.push(("verdict", ev.verdict.to_string()));
    rows.push((
        "evaluated",
        format!("{} to {}", ev.started_on, ev.finished_on),
    ));
    let signers: Vec<String> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    print_rows(&mut out, rows, &signers)
}

/// `inspect`'s rows for what the statement claims: spec, inputs, code, toolchain, metrics,
/// commitment, outputs and times. Read through typed views; nothing here is checked.
fn summary_rows(st: &manifest::Statement, rows: &mut Vec<(&'static str, String)>) {
    if let Some(p) = &st.predicate.pipeline {
        pipeline_rows(st, p, rows);
        return;
    }
    let q = |v: Option<String>| v.unwrap_or_else(|| "?".to_string());
    let num = |n: &Option<serde_json::Number>| q(n.as_ref().map(ToString::to_string));
    let spec = st.spec_view();
    rows.push(("pipeline", q(spec.name)));
    rows.push(("seed", num(&spec.seed)));
    let hidden = spec.model.hidden.map_or("?".to_string(), |h| {
        let widths: Vec<String> = h.iter().map(ToString::to_string).collect();
        format!("[{}]", widths.join(","))
    });
    rows.push(("model", format!("{} hidden {hidden}", q(spec.model.kind))));
    let t = &spec.training;
    rows.push((
        "training",
        format!(
            "{} epochs, batch {}, {} lr {}",
            num(&t.epochs),
            num(&t.batch_size),
            q(t.optimizer.kind.clone()),
            num(&t.optimizer.lr)
        ),
    ));
    for d in &st.predicate.build_definition.resolved_dependencies {
        dependency_rows(d, rows);
    }
    if let Some(ext) = &st.predicate.auditai {
        let metrics = ext
            .metrics
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| format!("{k} {x:.4}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        rows.push(("metrics", format!("{} split: {metrics}", ext.held_out)));
        rows.push((
            "epochs",
            format!(
                "{} checkpoints, final weights from epoch {}",
                ext.checkpoints.len(),
                ext.final_epoch
            ),
        ));
        if let (Some(c), Some(t)) = (&ext.commitment, &ext.transcript) {
            rows.push(("commitment", format!("{} blake3 {}", c.path, c.blake3)));
            rows.push((
                "transcript",
                format!("{} segments, chain head {}", t.entries, t.head),
            ));
        }
    }
    output_rows(st, rows);
}

/// `inspect`'s rows for a multi-stage pipeline manifest: one row per stage.
fn pipeline_rows(
    st: &manifest::Statement,
    p: &manifest::PipelineExtension,
    rows: &mut Vec<(&'static str, String)>,
) {
    let complete = if p.complete {
        ""
    } else {
        " (did not complete)"
    };
    rows.push(("pipeline", format!("{}{complete}, spec {}", p.name, p.spec)));
    for d in &st.predicate.build_definition.resolved_dependencies {
        if d.name.as_deref() != Some("toolchain") {
            dependency_rows(d, rows);
        }
    }
    for s in &p.stages {
        let how = match (s.status, s.exit_code) {
            (manifest::StageStatus::Ran, Some(c)) => format!("ran, exit {c}"),
            (manifest::StageStatus::Ran, None) => "ran".to_string(),
            (manifest::StageStatus::Reused, _) => format!(
                "reused, first recorded by {}",
                s.produced_by.as_ref().map_or("?", |b| b.manifest.as_str())
            ),
        };
        let what = match (&s.cmd, &s.config_blake3) {
            (Some(c), _) => format!("`{c}`"),
            (None, Some(b)) => format!("training, configuration blake3 {b}"),
            (None, None) => s.kind.clone(),
        };
        rows.push((
            "stage",
            format!(
                "{} ({how}): {what}; {} dep(s), {} out(s)",
                s.name,
                s.deps.len(),
                s.outs.len()
            ),
        ));
    }
    output_rows(st, rows);
}

/// The subjects (sha256, else blake3) and the run's times.
fn output_rows(st: &manifest::Statement, rows: &mut Vec<(&'static str, String)>) {
    for s in &st.subject {
        let (alg, digest) = match (s.digest.get("sha256"), s.digest.get("blake3")) {
            (Some(d), _) => ("sha256", d.as_str()),
            (None, Some(d)) => ("blake3", d.as_str()),
            (None, None) => ("sha256", "?"),
        };
        rows.push((
            "output",
            format!("{}  {alg} {digest}", s.name.clone().unwrap_or_default()),
        ));
    }
    let m = &st.predicate.run_details.metadata;
    rows.push(("ran", format!("{} to {}", m.started_on, m.finished_on)));
}

/// The row(s) of one dependency: the code state, the toolchain and device, or an input file.
fn dependency_rows(d: &manifest::ResourceDescriptor, rows: &mut Vec<(&'static str, String)>) {
    let q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_string());
    let name = d.name.clone().unwrap_or_default();
    match name.as_str() {
        "code" => {
            let a = d.annotations_as::<manifest::CodeAnnotations>();
            let commit = d
                .digest
                .get("gitCommit")
                .cloned()
                .unwrap_or_else(|| "none (no git)".into());
            let dirty = if a.dirty == Some(true) { ", dirty" } else { "" };
            let branch = a.branch.map(|b| format!(" on {b}")).unwrap_or_default();
            rows.push(("code", format!("{commit}{branch}{dirty}")));
        }
        "toolchain" => {
            let a = d.annotations_as::<manifest::ToolchainAnnotations>();
            rows.push((
                "toolchain",
                format!(
                    "auditai {}, burn {}, {}, {}/{}",
                    q(&a.auditai),
                    q(&a.burn),
                    q(&a.rustc),
                    q(&a.os),
                    q(&a.arch)
                ),
            ));
            rows.push(("device", format!("{} ({})", q(&a.backend), q(&a.adapter))));
        }
        _ => rows.push((
            "input",
            format!(
                "{name}  sha256 {}",
                d.digest.get("sha256").map_or("?", String::as_str)
            ),
        )),
    }
}
