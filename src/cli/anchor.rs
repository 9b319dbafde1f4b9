//! `auditai anchor` and `auditai anchor upgrade`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde_json::json;
use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::anchor::{self, evm};

use super::{EXIT_OK, stderr_is_terminal};

/// The public OpenTimestamps calendars used when `--calendar` is not given.
const PUBLIC_CALENDARS: [&str; 4] = [
    "https://a.pool.opentimestamps.org",
    "https://b.pool.opentimestamps.org",
    "https://a.pool.eternitywall.com",
    "https://ots.btc.catallaxy.com",
];

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct AnchorArgs {
    #[command(subcommand)]
    command: Option<AnchorCommand>,
    /// Manifests to anchor together: their sha256 digests become the leaves of one Merkle tree
    /// and only the root goes on chain.
    #[arg(required = true)]
    manifests: Vec<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    /// Print the signed raw transaction instead of sending it.
    #[arg(long)]
    dry_run: bool,
    /// Anchor manifests that already have a receipt again.
    #[arg(long)]
    force: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Where and how to anchor: shared by `auditai anchor` and `auditai run --anchor-commitment`.
#[derive(Debug, clap::Args)]
pub(super) struct TargetArgs {
    /// An EVM chain preset: 0g-mainnet, 0g-galileo, ethereum, sepolia or local. The node's
    /// eth_chainId must match the preset.
    #[arg(long, value_name = "NAME")]
    chain: Option<String>,
    /// The JSON-RPC URL (overrides the preset's; alone, any chain id is accepted).
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// The anchoring account's Web3 Secret Storage v3 keystore (as cast and geth write). Its
    /// password comes from AUDITAI_KEYSTORE_PASSWORD or --password-file. Without a keystore the
    /// key comes from AUDITAI_ANCHOR_KEY (hex).
    #[arg(long, value_name = "FILE")]
    keystore: Option<PathBuf>,
    /// A file holding the keystore's password.
    #[arg(long, value_name = "FILE", requires = "keystore")]
    password_file: Option<PathBuf>,
    /// Blocks on top of the anchor's block to wait for (default: the preset's, 1 on local).
    #[arg(long, value_name = "N")]
    confirmations: Option<u64>,
    /// Seconds to wait for the confirmations.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    timeout: u64,
    /// Also timestamp the root on Bitcoin through OpenTimestamps calendars.
    #[arg(long)]
    ots: bool,
    /// An OpenTimestamps calendar URL (repeatable; default: the public calendars).
    #[arg(long = "calendar", value_name = "URL")]
    calendars: Vec<String>,
}

impl TargetArgs {
    /// Whether any anchoring target was given.
    pub(super) fn any(&self) -> bool {
        self.chain.is_some() || self.rpc.is_some() || self.ots || !self.calendars.is_empty()
    }

    /// The anchoring options: loads the key for an EVM chain, picks the calendars.
    pub(super) fn options(&self, dry_run: bool, force: bool) -> anyhow::Result<anchor::Options> {
        let evm = if self.chain.is_some() || self.rpc.is_some() {
            let chain = evm::Chain::resolve(self.chain.as_deref(), self.rpc.as_deref())
                .map_err(anyhow::Error::msg)?;
            let signer = evm::load_key(self.keystore.as_deref(), self.password_file.as_deref())?;
            Some(anchor::EvmOptions {
                confirmations: self.confirmations.unwrap_or(chain.confirmations),
                chain,
                signer,
                timeout: Duration::from_secs(self.timeout),
                dry_run,
            })
        } else {
            None
        };
        if dry_run && evm.is_none() {
            anyhow::bail!("--dry-run needs an EVM chain (--chain or --rpc)");
        }
        let calendars = if self.ots && self.calendars.is_empty() {
            PUBLIC_CALENDARS.iter().map(|s| s.to_string()).collect()
        } else if self.ots || !self.calendars.is_empty() {
            self.calendars.clone()
        } else {
            Vec::new()
        };
        Ok(anchor::Options {
            evm,
            calendars,
            force,
        })
    }
}

#[derive(Debug, clap::Subcommand)]
enum AnchorCommand {
    /// Ask the OpenTimestamps calendars for completed Bitcoin attestations and update each
    /// manifest's .ots proof and receipt. Still pending is a status, not an error.
    Upgrade {
        /// Anchored manifests.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

fn spinner(quiet: bool) -> Option<ProgressBar> {
    (!quiet && stderr_is_terminal()).then(|| {
        let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        s.enable_steady_tick(Duration::from_millis(120));
        s
    })
}

pub(super) fn anchor_cmd(args: &AnchorArgs) -> anyhow::Result<u8> {
    if let Some(AnchorCommand::Upgrade { manifests, json }) = &args.command {
        return upgrade(manifests, *json);
    }
    let opts = args.target.options(args.dry_run, args.force)?;
    let bar = spinner(args.quiet);
    let quiet = args.quiet;
    let mut progress = |msg: &str| match &bar {
        Some(b) => b.set_message(msg.to_string()),
        None if !quiet => eprintln!("{msg}"),
        None => {}
    };
    let result = anchor::anchor(&args.manifests, &opts, &mut progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = result?;
    for e in &outcome.calendar_errors {
        if !args.quiet {
            eprintln!("warning: {e}");
        }
    }
    let mut out = std::io::stdout().lock();
    if let Some(tx) = &outcome.dry_run_tx {
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json!({ "dry_run": true, "raw_transaction": tx }))?
            )?;
        } else {
            writeln!(out, "{tx}")?;
        }
        return Ok(EXIT_OK);
    }
    if args.json {
        let anchored: Vec<_> = outcome
            .anchored
            .iter()
            .map(|(m, r)| json!({ "manifest": m, "receipt": anchor::receipt_path(m), "anchor": r }))
            .collect();
        let v = json!({
            "anchored": anchored,
            "skipped": outcome.skipped,
            "calendar_errors": outcome.calendar_errors,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(EXIT_OK);
    }
    for m in &outcome.skipped {
        writeln!(
            out,
            "already anchored (pass --force to anchor again): {}",
            m.display()
        )?;
    }
    if !outcome.anchored.is_empty() {
        let mut b = Builder::default();
        b.push_record(["manifest", "leaf", "root", "evm", "opentimestamps"]);
        for (m, r) in &outcome.anchored {
            let evm = r.evm.as_ref().map_or("-".to_string(), |e| {
                format!("{} block {} tx {}", e.chain, e.block_number, e.tx_hash)
            });
            let ots = r.ots.as_ref().map_or("-".to_string(), |o| o.status.clone());
            b.push_record([
                m.display().to_string(),
                format!("{}/{}", r.leaf_index, r.tree_size),
                r.root.clone(),
                evm,
                ots,
            ]);
        }
        writeln!(out, "{}", b.build().with(Style::sharp()))?;
    }
    Ok(EXIT_OK)
}

fn upgrade(manifests: &[PathBuf], json: bool) -> anyhow::Result<u8> {
    let results =
        anchor::upgrade(manifests, &mut |m| eprintln!("{m}")).context("upgrade failed")?;
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|u| json!({ "manifest": u.manifest, "status": u.status, "bitcoin": u.bitcoin, "errors": u.errors }))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "upgraded": v }))?
        )?;
        return Ok(EXIT_OK);
    }
    for u in &results {
        let detail = match u.bitcoin.first() {
            Some(b) => format!("Bitcoin block {} (merkle root {})", b.height, b.merkle_root),
            None => "pending: the calendars have not committed it to Bitcoin yet".to_string(),
        };
        writeln!(out, "{}: {detail}", u.manifest.display())?;
        for e in &u.errors {
            eprintln!("warning: {e}");
        }
    }
    Ok(EXIT_OK)
}
