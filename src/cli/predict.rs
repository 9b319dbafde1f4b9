//! `auditai predict`: its arguments; the execution (behind the `train` feature) below.

use std::path::PathBuf;

use super::run::DeviceArg;

#[derive(Debug, clap::Args)]
pub(super) struct PredictArgs {
    /// The run to use: its run directory or its manifest (manifest.intoto.json).
    run: PathBuf,
    /// The rows to predict (CSV with a header; columns matched by name, extra columns ignored).
    #[arg(long, value_name = "ROWS.csv")]
    input: PathBuf,
    /// Write the predictions here (written to a temporary file, renamed at the end) instead of
    /// stdout. An existing file is not replaced.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// JSON Lines (one object per row) instead of CSV.
    #[arg(long)]
    json: bool,
    /// Where to run the model (default: the CPU).
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// A public key (SPKI PEM) trusted to have signed the run's manifest; repeat for several.
    /// The model is loaded only when the manifest's signatures satisfy it and the weights,
    /// preprocessing and spec match the manifest's digests.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the manifest's signatures must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Load the model without checking who signed its manifest (its files are still read only
    /// through the manifest's digests). Loud, and recorded: every output row (and log entry)
    /// says the model was not verified.
    #[arg(long, conflicts_with_all = ["keys", "policy"])]
    no_verify: bool,
    /// Kept for compatibility: a row that cannot be scored always gets an output row with an
    /// empty prediction and its reason.
    #[arg(long, hide = true)]
    skip_bad_rows: bool,
    /// Copy these input columns to every output row (comma-separated or repeated), e.g.
    /// `--keep id,name`.
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    keep: Vec<String>,
    /// Append one hash-chained entry per prediction to this JSON Lines log (created when
    /// absent; locked while in use; `auditai verify LOG` checks it, `auditai anchor LOG`
    /// anchors its head). A file that is not a prediction log is refused and left untouched.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// With --log: sign a checkpoint over every entry of the log with this ed25519 private key
    /// (PKCS#8 PEM, mode 0600), written next to it as LOG.checkpoint.intoto.json, so that
    /// `auditai verify LOG --key PUB` reports the entries as covered.
    #[arg(long, value_name = "KEY", requires = "log")]
    sign_with: Option<PathBuf>,
    /// The input column that identifies a row, copied to the output (default: `id` when the
    /// input has it).
    #[arg(long, value_name = "NAME")]
    id_column: Option<String>,
    /// No summary or notices on stderr (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
}

#[cfg(feature = "train")]
pub(super) fn predict_cmd(args: &PredictArgs) -> anyhow::Result<u8> {
    use auditai::predict::{self, PredictOptions};

    use super::printer::Printer;
    use super::{EXIT_OK, clean};

    let trust = super::trust::trust_of(&args.keys, args.policy.as_deref())?;
    let printer = Printer::new(args.quiet);
    let required = model_trust(
        &trust,
        args.no_verify,
        "predict",
        "every output row says model_verified=false",
        &printer,
    )?;
    let checkpoint_key = args
        .sign_with
        .as_deref()
        .map(auditai::sign::SecretKey::read)
        .transpose()?;
    let model = open_model(&args.run, required, args.device.into(), &printer)?;
    let popts = PredictOptions {
        input: args.input.clone(),
        output: args.output.clone(),
        json: args.json,
        log: args.log.clone(),
        keep: args.keep.clone(),
        id_column: args.id_column.clone(),
        checkpoint_key,
    };
    let mut stdout = std::io::stdout().lock();
    let report = predict::run(&model, &popts, &mut stdout)?;
    if !report.ignored_columns.is_empty() {
        printer.line(&clean(&format!(
            "notice: ignored input column(s) the model does not use: {}",
            report.ignored_columns.join(", ")
        )));
    }
    for s in &report.unscored_examples {
        printer.line(&clean(&format!("not scored: {s}")));
    }
    if report.unseen > 0 {
        printer.line(&format!(
            "notice: {} categorical value(s) the training rows never had were encoded as all zeros (column `unseen` per row)",
            report.unseen
        ));
    }
    let dest = report
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let verified = if model.verified {
        "verified"
    } else {
        "NOT verified"
    };
    printer.line(&clean(&format!(
        "predicted {} row(s){} with the {verified} model {} on {}; wrote {dest}{}{}",
        report.rows,
        if report.unscored > 0 {
            format!(
                ", {} could not be scored (their rows say why)",
                report.unscored
            )
        } else {
            String::new()
        },
        model.manifest.display(),
        model.device(),
        report.log_entries.map_or(String::new(), |n| format!(
            "; log {} holds {n} entries{}",
            args.log
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            if report.log_repaired {
                " (a torn last line from an interrupted write was cut off first)"
            } else {
                ""
            }
        )),
        report
            .checkpoint
            .as_ref()
            .map_or(String::new(), |p| format!(
                "; signed checkpoint {}",
                p.display()
            )),
    )));
    Ok(EXIT_OK)
}

/// Whom a command that loads a run's model trusts: the `--key`s or `--policy` in `opts`, or with
/// `--no-verify` nobody, announced with what the output records about it.
#[cfg(feature = "train")]
pub(super) fn model_trust<'a>(
    trust: &'a auditai::trust::Trust,
    no_verify: bool,
    command: &str,
    recorded: &str,
    printer: &super::printer::Printer,
) -> anyhow::Result<auditai::trust::Required<'a>> {
    use auditai::trust::Required;
    if no_verify {
        printer.line(&format!("WARNING: --no-verify: the model is loaded without checking who signed it (its files are still read through the digests its manifest records); {recorded}"));
        return Ok(Required::Unchecked);
    }
    if trust.is_empty() {
        anyhow::bail!(
            "{command} verifies the run before loading its model: name whom you trust with --key or --policy (or, loudly, --no-verify)"
        );
    }
    Ok(Required::Signers(trust))
}

/// Verify and load the model of `run` (a refusal is an error that exits 1).
#[cfg(feature = "train")]
pub(super) fn open_model(
    run: &std::path::Path,
    trust: auditai::trust::Required<'_>,
    device: auditai::spec::DeviceChoice,
    printer: &super::printer::Printer,
) -> anyhow::Result<auditai::predict::Model> {
    use auditai::predict::{Model, OpenOptions};
    let (model, notice) = Model::open(run, &OpenOptions { trust, device })?;
    if let Some(n) = notice {
        printer.line(&format!("notice: {}", super::hints::notice(&n)));
    }
    Ok(model)
}

#[cfg(not(feature = "train"))]
pub(super) fn predict_cmd(_: &PredictArgs) -> anyhow::Result<u8> {
    Err(super::needs_feature("train", "auditai predict"))
}
