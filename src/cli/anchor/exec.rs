//! `auditai anchor` and `anchor upgrade`'s execution (behind the `anchor` feature).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tabled::builder::Builder;
use tabled::settings::Style;

use auditai::anchor::{self, evm};

use super::super::printer::Printer;
use super::super::{EXIT_OK, hints, write_json};
use super::{AnchorArgs, AnchorCommand, TargetArgs};

/// The public OpenTimestamps calendars used when `--calendar` is not given.
const PUBLIC_CALENDARS: [&str; 4] = [
    "https://a.pool.opentimestamps.org",
    "https://b.pool.opentimestamps.org",
    "https://a.pool.eternitywall.com",
    "https://ots.btc.catallaxy.com",
];

impl TargetArgs {
    /// The chain to check anchors against online (`--chain`/`--rpc`), when given.
    #[cfg(feature = "train")]
    pub(in crate::cli) fn online(&self) -> anyhow::Result<Option<auditai::anchor::chain::Chain>> {
        Ok(auditai::anchor::chain::Chain::resolve_online(
            self.chain.as_deref(),
            self.rpc.as_deref(),
        )?)
    }

    /// Whether any anchoring target was given.
    #[cfg(feature = "train")]
    pub(in crate::cli) fn any(&self) -> bool {
        self.chain.is_some() || self.rpc.is_some() || self.ots || !self.calendars.is_empty()
    }

    /// The anchoring options: loads the key for an EVM chain, picks the calendars.
    pub(in crate::cli) fn options(
        &self,
        dry_run: bool,
        force: bool,
    ) -> anyhow::Result<anchor::Options> {
        let evm = if self.chain.is_some() || self.rpc.is_some() {
            let mut chain = evm::Chain::resolve(self.chain.as_deref(), self.rpc.as_deref())?;
            match (chain.chain_id, self.chain_id) {
                (None, None) => anyhow::bail!(
                    "a bare --rpc needs --chain-id ID (or a --chain preset), so that the endpoint cannot choose which chain the key signs for"
                ),
                (Some(preset), Some(given)) if preset != given => anyhow::bail!(
                    "--chain-id {given} contradicts --chain {}, which is chain id {preset}",
                    chain.name
                ),
                (_, Some(given)) => chain.chain_id = Some(given),
                (Some(_), None) => {}
            }
            let fees = evm::FeeCaps {
                max_fee_per_gas: gwei(self.max_fee_gwei, "--max-fee-gwei")?,
                max_priority_fee_per_gas: gwei(
                    self.max_priority_fee_gwei,
                    "--max-priority-fee-gwei",
                )?,
                max_gas: self.max_gas,
            };
            let signer = evm::load_key(self.keystore.as_deref(), self.password_file.as_deref())?;
            Some(anchor::EvmOptions {
                confirmations: self.confirmations.unwrap_or(chain.confirmations),
                chain,
                signer,
                timeout: Duration::from_secs(self.timeout),
                dry_run,
                fees,
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

/// A fee in gwei from the command line, as wei.
fn gwei(value: f64, flag: &str) -> anyhow::Result<u128> {
    if !value.is_finite() || value <= 0.0 || value > 1e9 {
        anyhow::bail!("{flag} must be a positive number of gwei up to 1e9, not {value}");
    }
    // Exact for any value a user types with up to 9 decimals.
    Ok((value * 1e9).round() as u128)
}

/// An upgrade's warnings: calendars that failed, then calendars not contacted.
fn warnings(u: &anchor::Upgraded) -> Vec<String> {
    let skipped = u.not_contacted.iter().map(|url| hints::not_contacted(url));
    u.errors.iter().cloned().chain(skipped).collect()
}

/// `anchor --dry-run --json` (sorted keys, as before).
#[derive(serde::Serialize)]
struct DryRunJson<'a> {
    dry_run: bool,
    raw_transaction: &'a str,
    /// `auditai.anchor-dry-run/v1`.
    schema: &'static str,
}

/// `anchor --json` (sorted keys, as before; receipts through `serde_json::Value`).
#[derive(serde::Serialize)]
struct AnchorJson<'a> {
    anchored: Vec<serde_json::Value>,
    calendar_errors: &'a [String],
    /// `auditai.anchor-report/v1`.
    schema: &'static str,
    skipped: &'a [PathBuf],
}

/// `anchor upgrade --json` (sorted keys, as before).
#[derive(serde::Serialize)]
struct UpgradeJson {
    /// `auditai.anchor-upgrade/v1`.
    schema: &'static str,
    upgraded: Vec<serde_json::Value>,
}

pub(in crate::cli) fn anchor_cmd(args: &AnchorArgs) -> anyhow::Result<u8> {
    if let Some(AnchorCommand::Upgrade {
        manifests,
        calendars,
        json,
    }) = &args.command
    {
        let allowed: Vec<String> = if calendars.is_empty() {
            PUBLIC_CALENDARS.iter().map(|s| s.to_string()).collect()
        } else {
            calendars.clone()
        };
        return upgrade(manifests, &allowed, *json);
    }
    let opts = args.target.options(args.dry_run, args.force)?;
    let mut printer = Printer::new(args.quiet);
    printer.start_spinner();
    let result = anchor::anchor(&args.manifests, &opts, &mut |msg: &str| {
        printer.status(msg.to_string())
    });
    printer.finish();
    let outcome = result?;
    for e in &outcome.calendar_errors {
        printer.line(&format!("warning: {e}"));
    }
    let mut out = std::io::stdout().lock();
    if let Some(tx) = &outcome.dry_run_tx {
        if args.json {
            write_json(
                &mut out,
                &DryRunJson {
                    dry_run: true,
                    raw_transaction: tx,
                    schema: "auditai.anchor-dry-run/v1",
                },
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
        let v = AnchorJson {
            anchored,
            calendar_errors: &outcome.calendar_errors,
            schema: "auditai.anchor-report/v1",
            skipped: &outcome.skipped,
        };
        write_json(&mut out, &v)?;
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

fn upgrade(given: &[PathBuf], calendars: &[String], json: bool) -> anyhow::Result<u8> {
    let printer = Printer::new(false);
    // A bundle's proof is upgraded where it is unpacked, then written back into the bundle.
    let mut bundles = Vec::new();
    let mut manifests = Vec::new();
    for m in given {
        match crate::cli::bundle::unpacked(m)? {
            Some(u) => {
                manifests.push(u.manifest.clone());
                bundles.push((m, u));
            }
            None => manifests.push(m.clone()),
        }
    }
    let mut results = anchor::upgrade(&manifests, calendars, &mut |m| printer.line(m))
        .map_err(|e| anyhow::anyhow!("upgrade failed: {e}"))?;
    for (path, u) in &mut bundles {
        if u.bundle.refresh(u.dir.path())? {
            let mut bytes = serde_json::to_vec_pretty(&u.bundle)?;
            bytes.push(b'\n');
            auditai::fsio::write_atomic(path, &bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        for r in results.iter_mut().filter(|r| r.manifest == u.manifest) {
            r.manifest = path.to_path_buf();
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|u| json!({ "manifest": u.manifest, "status": u.status, "bitcoin": u.bitcoin, "errors": warnings(u) }))
            .collect();
        write_json(
            &mut out,
            &UpgradeJson {
                schema: "auditai.anchor-upgrade/v1",
                upgraded: v,
            },
        )?;
        return Ok(EXIT_OK);
    }
    for u in &results {
        let detail = match u.bitcoin.first() {
            Some(b) => format!("Bitcoin block {} (merkle root {})", b.height, b.merkle_root),
            None => "pending: the calendars have not committed it to Bitcoin yet".to_string(),
        };
        writeln!(out, "{}: {detail}", u.manifest.display())?;
        for e in &warnings(u) {
            printer.line(&format!("warning: {e}"));
        }
    }
    Ok(EXIT_OK)
}
