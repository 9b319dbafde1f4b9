//! `auditai anchor` and `auditai anchor upgrade`: their arguments, shared with
//! `run --anchor-commitment`; the execution (behind the `anchor` feature) is in `exec`.

use std::path::PathBuf;

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
    /// The JSON-RPC URL (overrides the preset's). Alone, it needs --chain-id: the endpoint never
    /// chooses which chain the key signs for.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// The chain id the transaction is signed for; the node's eth_chainId must match it.
    /// Required with a bare --rpc; with --chain it must equal the preset's.
    #[arg(long, value_name = "ID")]
    chain_id: Option<u64>,
    /// The most the anchor may pay per gas (max fee per gas), in gwei; the node's fee
    /// suggestion is capped at this, and a base fee above it is an error.
    #[arg(long, value_name = "GWEI", default_value_t = 200.0)]
    max_fee_gwei: f64,
    /// The most the anchor may tip per gas (max priority fee per gas), in gwei.
    #[arg(long, value_name = "GWEI", default_value_t = 2.0)]
    max_priority_fee_gwei: f64,
    /// The most gas the anchor transaction may use (it needs about 22,600); a larger estimate
    /// from the node is an error.
    #[arg(long, value_name = "GAS", default_value_t = 100_000)]
    max_gas: u64,
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

#[derive(Debug, clap::Subcommand)]
pub(super) enum AnchorCommand {
    /// Ask the OpenTimestamps calendars for completed Bitcoin attestations and update each
    /// manifest's .ots proof and receipt. Still pending is a status, not an error.
    Upgrade {
        /// Anchored manifests, or evidence bundles (upgraded in place).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// A calendar that may be asked (repeatable; default: the public calendars). Pending
        /// attestations naming any other URL are left as they are: a proof someone sent cannot
        /// make auditai contact a server of their choosing.
        #[arg(long = "calendar", value_name = "URL")]
        calendars: Vec<String>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(feature = "anchor")]
mod exec;
#[cfg(feature = "anchor")]
pub(super) use exec::anchor_cmd;

#[cfg(not(feature = "anchor"))]
pub(super) fn anchor_cmd(_: &AnchorArgs) -> anyhow::Result<u8> {
    Err(super::needs_feature("anchor", "auditai anchor"))
}
