//! `auditai rewards`: what each data source of a run is worth, a pool split as an OpenZeppelin
//! Merkle tree with a signed statement of its root, and the proof of one claim.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use auditai::rewards::{self, issue, tree};
use auditai::trust::{DocumentKind, Required, SignedRun};
use serde::Serialize;

use super::EXIT_OK;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct RewardsArgs {
    #[command(subcommand)]
    cmd: Option<RewardsCmd>,
    #[command(flatten)]
    split: SplitArgs,
}

#[derive(Debug, clap::Subcommand)]
enum RewardsCmd {
    /// Print the proof of one address's claim in a rewards file (what a Merkle distributor's
    /// `claim` takes): its amount, the root and the sibling hashes.
    Proof {
        /// The rewards file (`auditai rewards … -o rewards.json`).
        file: PathBuf,
        /// The claimant's EVM address.
        address: String,
    },
}

#[derive(Debug, clap::Args)]
struct SplitArgs {
    /// The run: its run directory or its manifest (a training run with data.sources).
    #[arg(required = true)]
    run: Option<PathBuf>,
    /// How each source's value is measured: `in-run` (the first-order value the run measured
    /// and its replay audit re-derives) or `shapley` (exact group Shapley values by retraining
    /// on every subset of the sources; at most 6).
    #[arg(long, value_enum, default_value = "in-run")]
    value: ValueArg,
    /// The pool to split, in the token's smallest unit (e.g. wei). Without it, only the values
    /// are printed.
    #[arg(long, value_name = "AMOUNT", value_parser = amount)]
    pool: Option<String>,
    /// The compute provider's share (the run's signer), 0 to 1.
    #[arg(long, value_name = "F", default_value = "0", requires = "pool")]
    compute_share: String,
    /// The verifiers' share, split evenly between the signers of --verdict, 0 to 1.
    #[arg(long, value_name = "F", default_value = "0", requires = "pool")]
    verifier_share: String,
    /// A passed verdict about this run (`verify --attest`, `audit --attest`) whose signer is
    /// paid from the verifiers' share (repeatable; its signature is checked under --key).
    #[arg(long = "verdict", value_name = "FILE", requires = "pool")]
    verdicts: Vec<PathBuf>,
    /// The reward address of a signer (the run's, a verdict's): KEYID=0x… (repeatable).
    #[arg(long = "address", value_name = "KEYID=0x…")]
    addresses: Vec<String>,
    /// A public key (SPKI PEM) the run's manifest and the verdicts must be signed by
    /// (repeatable).
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A trust policy the run's manifest must satisfy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Sign the statement of the root with this ed25519 private key (otherwise
    /// AUDITAI_SIGNING_KEY, then AUDITAI_SIGNING_KEY_FILE; one is required with --pool).
    #[arg(long, value_name = "FILE")]
    sign_with: Option<PathBuf>,
    /// Where to write the tree (an OpenZeppelin StandardMerkleTree dump); the signed statement
    /// goes beside it as NAME.intoto.json. Never replaces a file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "rewards.json",
        requires = "pool"
    )]
    out: PathBuf,
    /// Where the run's data lives (for --value shapley; default as for `verify`).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The salt of a withheld source (for --value shapley): SOURCE=SALT_FILE (repeatable).
    #[arg(long, value_name = "SOURCE=SALT_FILE")]
    reveal: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ValueArg {
    InRun,
    Shapley,
}

fn amount(s: &str) -> Result<String, String> {
    rewards::parse_amount(s)
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct ValuesOut {
    schema: &'static str,
    method: &'static str,
    sources: Vec<SourceValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rewards: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parties: Vec<rewards::Party>,
}

#[derive(Serialize)]
struct SourceValue {
    source: String,
    value: f64,
}

pub(super) fn rewards_cmd(args: &RewardsArgs) -> anyhow::Result<u8> {
    match &args.cmd {
        Some(RewardsCmd::Proof { file, address }) => proof(file, address),
        None => split(&args.split),
    }
}

fn split(a: &SplitArgs) -> anyhow::Result<u8> {
    let Some(run_path) = &a.run else {
        bail!("name a run, or `rewards proof FILE ADDRESS`");
    };
    let trust = super::trust::trust_of(&a.keys, a.policy.as_deref())?;
    let required = if trust.is_empty() {
        Required::Unchecked
    } else {
        Required::Signers(&trust)
    };
    let run = SignedRun::open(run_path, auditai::trust::RunKind::Training, required)?;
    let (values, method) = match a.value {
        ValueArg::InRun => (issue::Values::InRun, "in-run"),
        ValueArg::Shapley => (issue::Values::Shapley(shapley(a, &run)?), "shapley"),
    };
    let listed = issue::sources(&run, &values)?;
    let mut out = ValuesOut {
        schema: "auditai.rewards/v1",
        method,
        sources: listed
            .iter()
            .map(|s| SourceValue {
                source: s.name.clone(),
                value: s.value,
            })
            .collect(),
        root: None,
        rewards: None,
        statement: None,
        parties: Vec::new(),
    };
    if let Some(pool) = &a.pool {
        let issued = pay(a, &run, values, pool, &trust)?;
        out.root = Some(issued.dump.root().to_string());
        out.rewards = Some(a.out.clone());
        out.statement = Some(issued.statement);
        out.parties = issued.parties;
    }
    print(a.json, &out)?;
    Ok(EXIT_OK)
}

fn pay(
    a: &SplitArgs,
    run: &SignedRun,
    values: issue::Values,
    pool: &str,
    trust: &auditai::trust::Trust,
) -> anyhow::Result<issue::Issued> {
    for p in [a.out.clone(), issue::statement_path(&a.out)] {
        if std::fs::symlink_metadata(&p).is_ok() {
            bail!(
                "{} already exists; not replacing it (pass another -o)",
                p.display()
            );
        }
    }
    let Some((key, _)) = auditai::sign::signing_key(a.sign_with.as_deref())? else {
        bail!(
            "the statement of the root must be signed: pass --sign-with KEY (or set AUDITAI_SIGNING_KEY)"
        );
    };
    let mut addresses = BTreeMap::new();
    for pair in &a.addresses {
        let (keyid, addr) = pair
            .split_once('=')
            .with_context(|| format!("--address `{pair}`: expected KEYID=0x…"))?;
        let addr =
            auditai::contribution::terms::reward_address(addr).map_err(anyhow::Error::msg)?;
        addresses.insert(keyid.to_string(), addr.parse()?);
    }
    if !a.verdicts.is_empty() && trust.is_empty() {
        bail!("--verdict needs --key (or --policy) to check who signed each verdict");
    }
    let verdicts = a
        .verdicts
        .iter()
        .map(|p| auditai::trust::open_statement(p, DocumentKind::Verdict, trust))
        .collect::<Result<Vec<_>, _>>()?;
    let split = rewards::Split {
        pool: rewards::parse_amount(pool)?,
        compute_share: rewards::parse_share(&a.compute_share)?,
        verifier_share: rewards::parse_share(&a.verifier_share)?,
    };
    Ok(issue::issue(issue::Issue {
        run,
        values,
        split,
        addresses: &addresses,
        verdicts: &verdicts,
        out: &a.out,
        key: &key,
    })?)
}

#[cfg(feature = "train")]
fn shapley(a: &SplitArgs, run: &SignedRun) -> anyhow::Result<Vec<f64>> {
    let reveal = auditai::contribution::Reveal::parse(&a.reveal)?;
    let t =
        auditai::audit::trained_on(run, a.root.as_deref(), &reveal).map_err(anyhow::Error::msg)?;
    let backend_kind = run
        .statement()
        .predicate
        .auditai
        .as_ref()
        .map(|e| e.backend.clone())
        .unwrap_or_default();
    let choice = if backend_kind == "wgpu" {
        auditai::spec::DeviceChoice::Wgpu
    } else {
        auditai::spec::DeviceChoice::Cpu
    };
    let (backend, _) = auditai::train::device::select(choice)?;
    let printer = super::printer::Printer::new(a.json);
    let s = rewards::shapley::shapley(&t.spec, &t.data, &backend, &mut |done, total| {
        printer.line(&format!("shapley: trained on subset {done} of {total}"));
    })?;
    Ok(s.values)
}

#[cfg(not(feature = "train"))]
fn shapley(_: &SplitArgs, _: &SignedRun) -> anyhow::Result<Vec<f64>> {
    Err(super::needs_feature("train", "--value shapley"))
}

fn print(json: bool, out: &ValuesOut) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        super::write_json(&mut stdout, out)?;
        return Ok(());
    }
    writeln!(stdout, "value of each data source ({}):", out.method)?;
    for s in &out.sources {
        writeln!(
            stdout,
            "  {:<40} {:>+.9e}",
            super::clean(&s.source),
            s.value
        )?;
    }
    if let (Some(root), Some(path), Some(st)) = (&out.root, &out.rewards, &out.statement) {
        writeln!(
            stdout,
            "rewards to {} parties, root {root}:",
            out.parties.len()
        )?;
        for p in &out.parties {
            writeln!(
                stdout,
                "  {:<9} {:<42} {} ({})",
                format!("{:?}", p.role).to_lowercase(),
                p.address,
                p.amount,
                super::clean(&p.id)
            )?;
        }
        writeln!(
            stdout,
            "wrote {} and {} (signed)",
            path.display(),
            st.display()
        )?;
    }
    stdout.flush()?;
    Ok(())
}

#[derive(Serialize)]
struct ProofOut {
    address: String,
    amount: String,
    root: String,
    proof: Vec<String>,
}

fn proof(file: &std::path::Path, address: &str) -> anyhow::Result<u8> {
    let bytes = auditai::fsio::read_bounded(file, auditai::fsio::MAX_DOCUMENT)
        .with_context(|| file.display().to_string())?;
    let dump: tree::Dump = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a rewards tree", file.display()))?;
    let leaves = dump
        .validate()
        .with_context(|| format!("{}", file.display()))?;
    let want: alloy_primitives::Address = address
        .parse()
        .map_err(|_| anyhow::anyhow!("`{address}` is not an EVM address"))?;
    let Some(i) = leaves.iter().position(|l| l.address == want) else {
        eprintln!("error: {} has no claim for {address}", file.display());
        return Ok(super::EXIT_FAILED);
    };
    let out = ProofOut {
        address: leaves[i].address.to_checksum(None),
        amount: leaves[i].amount.to_string(),
        root: dump.root().to_string(),
        proof: dump.proof(i),
    };
    let mut stdout = std::io::stdout().lock();
    super::write_json(&mut stdout, &out)?;
    Ok(EXIT_OK)
}
