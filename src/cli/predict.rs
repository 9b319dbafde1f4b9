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
    /// Load the model without checking its signatures or digests. Loud, and recorded: every
    /// output row (and log entry) says the model was not verified.
    #[arg(long, conflicts_with_all = ["keys", "policy"])]
    no_verify: bool,
    /// Skip rows with an empty or non-numeric feature (counted and reported) instead of stopping
    /// at the first one.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Append one hash-chained entry per prediction to this JSON Lines log (created when
    /// absent; `auditai verify LOG` checks it, `auditai anchor LOG` anchors its head).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
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
    use super::{EXIT_FAILED, EXIT_OK, clean};

    let opts = super::trust::trust_options(&args.keys, args.policy.as_deref())?;
    let printer = Printer::new(args.quiet);
    let trust = model_trust(
        &opts,
        args.no_verify,
        "predict",
        "every output row says model_verified=false",
        &printer,
    )?;
    let Some(model) = open_model(&args.run, trust, args.device.into(), &printer)? else {
        return Ok(EXIT_FAILED);
    };
    let popts = PredictOptions {
        input: args.input.clone(),
        output: args.output.clone(),
        json: args.json,
        skip_bad_rows: args.skip_bad_rows,
        log: args.log.clone(),
        id_column: args.id_column.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    let report = predict::run(&model, &popts, &mut stdout)?;
    if !report.ignored_columns.is_empty() {
        printer.line(&clean(&format!(
            "notice: ignored input column(s) the model does not use: {}",
            report.ignored_columns.join(", ")
        )));
    }
    for s in &report.skipped_examples {
        printer.line(&clean(&format!("skipped {s}")));
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
        "predicted {} row(s){} with the {verified} model {} on {}; wrote {dest}{}",
        report.rows,
        if report.skipped > 0 {
            format!(", skipped {}", report.skipped)
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
    )));
    Ok(EXIT_OK)
}

/// Whom a command that loads a run's model trusts: the `--key`s or `--policy` in `opts`, or with
/// `--no-verify` nobody, announced with what the output records about it.
#[cfg(feature = "train")]
pub(super) fn model_trust<'a>(
    opts: &'a auditai::verify::Options,
    no_verify: bool,
    command: &str,
    recorded: &str,
    printer: &super::printer::Printer,
) -> anyhow::Result<auditai::verify::Trust<'a>> {
    use auditai::verify::Trust;
    if no_verify {
        printer.line(&format!("WARNING: --no-verify: the model is loaded without checking who signed it or that its files are the ones its manifest records; {recorded}"));
        return Ok(Trust::Unchecked);
    }
    if opts.keys.is_empty() && opts.policy.is_none() {
        anyhow::bail!(
            "{command} verifies the run before loading its model: name whom you trust with --key or --policy (or, loudly, --no-verify)"
        );
    }
    Ok(Trust::Signers(opts))
}

/// Verify and load the model of `run`; `None` when it is refused (already reported, exit 1).
#[cfg(feature = "train")]
pub(super) fn open_model(
    run: &std::path::Path,
    trust: auditai::verify::Trust<'_>,
    device: auditai::spec::DeviceChoice,
    printer: &super::printer::Printer,
) -> anyhow::Result<Option<auditai::predict::Model>> {
    use auditai::predict::{Model, OpenOptions, PredictError};
    match Model::open(run, &OpenOptions { trust, device }) {
        Ok((model, notice)) => {
            if let Some(n) = notice {
                printer.line(&format!("notice: {}", super::hints::notice(&n)));
            }
            Ok(Some(model))
        }
        Err(e @ PredictError::Refused { .. }) => {
            eprintln!("error: {}", super::clean(&e.to_string()));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(feature = "train"))]
pub(super) fn predict_cmd(_: &PredictArgs) -> anyhow::Result<u8> {
    Err(super::needs_feature("train", "auditai predict"))
}
