//! `auditai anchor` against a real local chain (anvil) and a local OpenTimestamps calendar, and
//! the anchor checks of `auditai verify`.

use std::path::Path;

use serde_json::json;

use crate::chain::{Anvil, BITCOIN_HEIGHT, Bitcoind, Calendar, DEV_KEY};
use crate::support::{Output, Workspace, check, output};

fn anchor(ws: &Workspace, key: &str, args: &[&str]) -> Output {
    let mut all = vec!["anchor"];
    all.extend_from_slice(args);
    let mut cmd = ws.cmd(&all);
    cmd.env("AUDITAI_ANCHOR_KEY", key);
    output(cmd)
}

fn receipt(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn anchor_one_manifest_then_verify_offline_and_online() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    ws.signed_run();
    let out = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
            "--json",
            "-q",
        ],
    )
    .success();
    let v = out.json();
    let r = &v["anchored"][0]["anchor"];
    assert_eq!(r["schema"], "auditai.anchor-receipt/v1");
    assert_eq!(r["treeSize"], 1);
    assert_eq!(r["evm"]["chainId"], 31337);
    assert_eq!(
        r["evm"]["from"],
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    );
    assert!(r["evm"]["gasUsed"].as_u64().unwrap() > 21_000);
    assert_eq!(receipt(&ws.path().join("r/manifest.anchor.json")), *r);

    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(check(&v, "anchor merkle path")["status"], "pass");
    let evm = check(&v, "anchor evm local (31337)");
    assert_eq!(evm["status"], "claimed");
    assert!(
        evm["detail"]
            .as_str()
            .unwrap()
            .starts_with("anchored (claimed; not checked online)")
    );

    let (code, v) = ws.verify_json(&["--rpc", &chain.url]);
    assert_eq!(code, 0, "{v}");
    let evm = check(&v, "anchor evm");
    assert_eq!(evm["status"], "pass");
    assert!(
        evm["detail"]
            .as_str()
            .unwrap()
            .starts_with("verified online: block "),
        "{evm}"
    );

    // Anchoring again does nothing without --force.
    let before = chain.block_number();
    let again = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
        ],
    )
    .success();
    assert_eq!(
        again.stdout,
        "already anchored (pass --force to anchor again): r/manifest.intoto.json\n"
    );
    assert_eq!(chain.block_number(), before);
    anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
            "--force",
            "-q",
        ],
    )
    .success();
    assert_eq!(chain.block_number(), before + 1);
}

#[test]
fn a_hundred_manifests_share_one_transaction() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    let mut paths = Vec::new();
    for i in 0..100 {
        let dir = ws.path().join(format!("m{i:03}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.intoto.json"), format!("{{\"n\":{i}}}")).unwrap();
        paths.push(format!("m{i:03}/manifest.intoto.json"));
    }
    let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
    args.extend(["--chain", "local", "--rpc", &chain.url, "-q"]);
    let before = chain.block_number();
    anchor(&ws, DEV_KEY, &args).success();
    assert_eq!(
        chain.block_number(),
        before + 1,
        "one transaction, one block"
    );
    let block = chain.rpc(
        "eth_getBlockByNumber",
        json!([format!("0x{:x}", before + 1), false]),
    );
    assert_eq!(block["transactions"].as_array().unwrap().len(), 1);
    let mut txs = std::collections::BTreeSet::new();
    for (i, p) in paths.iter().enumerate() {
        let manifest = ws.path().join(p);
        let r: auditai::anchor::Receipt = serde_json::from_slice(
            &std::fs::read(manifest.with_file_name("manifest.anchor.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(r.leaf_index, i);
        assert_eq!(r.tree_size, 100);
        auditai::anchor::check_inclusion(&r, &std::fs::read(&manifest).unwrap()).unwrap();
        txs.insert(r.evm.unwrap().tx_hash);
    }
    assert_eq!(txs.len(), 1);
}

#[test]
fn tampered_manifests_and_receipts_fail() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    let manifest = ws.signed_run();
    anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
            "-q",
        ],
    )
    .success();
    let receipt_path = ws.path().join("r/manifest.anchor.json");
    let original = std::fs::read(&receipt_path).unwrap();

    let mut r = receipt(&receipt_path);
    r["root"] = json!("00".repeat(32));
    std::fs::write(&receipt_path, serde_json::to_vec(&r).unwrap()).unwrap();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&v, "anchor merkle path")["detail"],
        "the Merkle path does not lead to the recorded root"
    );

    // A receipt that claims another transaction fails online.
    std::fs::write(&receipt_path, &original).unwrap();
    let mut r = receipt(&receipt_path);
    r["evm"]["txHash"] = json!(format!("0x{}", "12".repeat(32)));
    std::fs::write(&receipt_path, serde_json::to_vec(&r).unwrap()).unwrap();
    let (code, v) = ws.verify_json(&["--rpc", &chain.url]);
    assert_eq!(code, 1);
    assert!(
        check(&v, "anchor evm")["detail"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{v}"
    );

    // A changed manifest no longer matches its leaf.
    std::fs::write(&receipt_path, &original).unwrap();
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(&manifest, &bytes).unwrap();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1);
    assert!(
        check(&v, "anchor merkle path")["detail"]
            .as_str()
            .unwrap()
            .starts_with("the manifest's sha256 is "),
        "{v}"
    );
}

#[test]
fn a_reorged_anchor_fails_online_verification() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    ws.signed_run();
    anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
            "-q",
        ],
    )
    .success();
    let (code, _) = ws.verify_json(&["--rpc", &chain.url]);
    assert_eq!(code, 0);
    // Replace the anchor's block (and drop its transaction).
    chain.rpc("anvil_reorg", json!([1, []]));
    let (code, v) = ws.verify_json(&["--rpc", &chain.url]);
    assert_eq!(code, 1);
    let detail = check(&v, "anchor evm")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("reorg"), "{detail}");
}

#[test]
fn wrong_chain_id_dev_keys_and_unreachable_rpc_are_refused() {
    let ws = Workspace::new();
    let manifest = ws.signed_run();
    let galileo = Anvil::start(16602);
    // The local preset expects 31337.
    let out = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &galileo.url,
        ],
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: the RPC endpoint is on chain id 16602, but local is chain id 31337; refusing to send"
    );
    // anvil's public keys are refused on a real chain id.
    let out = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "0g-galileo",
            "--rpc",
            &galileo.url,
        ],
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: the anchoring key is one of anvil's public development keys; refusing to use it on chain id 16602 (only on 31337 or --chain local)"
    );
    // An unfunded key is refused before sending.
    let poor = "11".repeat(32);
    let out = anchor(
        &ws,
        &poor,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "0g-galileo",
            "--rpc",
            &galileo.url,
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("error: account 0x")
            && out
                .stderr
                .contains(" holds 0 wei but the anchor may cost up to "),
        "{}",
        out.stderr
    );
    // A funded non-development key works on that chain.
    let rich = "22".repeat(32);
    let address = format!(
        "{:#x}",
        alloy_signer_local::PrivateKeySigner::from_slice(&[0x22; 32])
            .unwrap()
            .address()
    );
    galileo.rpc("anvil_setBalance", json!([address, "0x56bc75e2d63100000"]));
    let out = anchor(
        &ws,
        &rich,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "0g-galileo",
            "--rpc",
            &galileo.url,
            "--confirmations",
            "1",
            "--json",
            "-q",
        ],
    )
    .success();
    assert_eq!(out.json()["anchored"][0]["anchor"]["evm"]["chainId"], 16602);
    // RPC down: a clear error and no receipt; an API key in the URL is never printed.
    std::fs::remove_file(manifest.with_file_name("manifest.anchor.json")).unwrap();
    let out = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--rpc",
            "http://127.0.0.1:9/v3/SECRETAPIKEY?token=SECRET2",
            "--chain-id",
            "31337",
            "-q",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: RPC http://127.0.0.1:9/… unreachable: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("SECRET"), "{}", out.stderr);
    assert!(!manifest.with_file_name("manifest.anchor.json").exists());

    // A bare --rpc never lets the endpoint choose the chain id the key signs for.
    let out = anchor(
        &ws,
        &rich,
        &["r/manifest.intoto.json", "--rpc", &galileo.url, "-q"],
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: a bare --rpc needs --chain-id ID (or a --chain preset), so that the endpoint cannot choose which chain the key signs for\n"
        )
    );
    let out = anchor(
        &ws,
        &rich,
        &[
            "r/manifest.intoto.json",
            "--rpc",
            &galileo.url,
            "--chain-id",
            "1",
            "-q",
        ],
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: the RPC endpoint is on chain id 16602, but custom is chain id 1; refusing to send\n"
        )
    );
    let out = anchor(
        &ws,
        &rich,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "0g-galileo",
            "--chain-id",
            "16661",
            "-q",
        ],
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: --chain-id 16661 contradicts --chain 0g-galileo, which is chain id 16602\n"
        )
    );
    // Fees the node asks for are capped by the user's maximums.
    for (flag, value, message) in [
        (
            "--max-gas",
            "21000",
            "error: refusing to anchor: the node estimates ",
        ),
        (
            "--max-fee-gwei",
            "0.000000001",
            "error: refusing to anchor: the base fee is ",
        ),
    ] {
        let out = anchor(
            &ws,
            &rich,
            &[
                "r/manifest.intoto.json",
                "--chain",
                "0g-galileo",
                "--rpc",
                &galileo.url,
                flag,
                value,
                "-q",
            ],
        );
        assert_eq!(out.code, 2, "{flag}");
        assert!(out.stderr.starts_with(message), "{flag}: {}", out.stderr);
        assert!(
            out.stderr.ends_with(
                "(raise --max-fee-gwei, --max-priority-fee-gwei or --max-gas to allow it)\n"
            ),
            "{}",
            out.stderr
        );
    }
    let out = anchor(
        &ws,
        &rich,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "0g-galileo",
            "--max-fee-gwei",
            "0",
        ],
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: --max-fee-gwei must be a positive number of gwei up to 1e9, not 0\n"
        )
    );
    assert!(!manifest.with_file_name("manifest.anchor.json").exists());
}

#[test]
fn keystores_decrypt_with_the_right_password_only() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    ws.signed_run();
    let mut rng = rand::thread_rng();
    let (signer, _) = alloy_signer_local::PrivateKeySigner::encrypt_keystore(
        ws.path(),
        &mut rng,
        [0x33u8; 32],
        "correct horse",
        Some("keystore.json"),
    )
    .unwrap();
    chain.rpc(
        "anvil_setBalance",
        json!([format!("{:#x}", signer.address()), "0x56bc75e2d63100000"]),
    );
    std::fs::write(ws.path().join("pw"), "wrong\n").unwrap();
    let chmod = |name: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path().join(name), std::fs::Permissions::from_mode(mode))
            .unwrap();
    };
    // Keystores and password files are secrets: readable by others, they are refused.
    chmod("keystore.json", 0o644);
    chmod("pw", 0o600);
    let args = [
        "anchor",
        "r/manifest.intoto.json",
        "--chain",
        "local",
        "--rpc",
        &chain.url,
        "--keystore",
        "keystore.json",
        "--password-file",
        "pw",
        "-q",
    ];
    let out = ws.run(&args);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: keystore.json: private key is readable by group or others (mode 644); run `chmod 600 keystore.json`\n"
        )
    );
    chmod("keystore.json", 0o600);
    chmod("pw", 0o640);
    let out = ws.run(&args);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: pw: private key is readable by group or others (mode 640); run `chmod 600 pw`\n"
        )
    );
    chmod("pw", 0o600);
    let out = ws.run(&args);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: keystore.json: cannot decrypt keystore (wrong password"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong\n"));
    let mut cmd = ws.cmd(&[
        "anchor",
        "r/manifest.intoto.json",
        "--rpc",
        &chain.url,
        "--chain-id",
        "31337",
        "--keystore",
        "keystore.json",
        "--json",
        "-q",
    ]);
    cmd.env("AUDITAI_KEYSTORE_PASSWORD", "correct horse");
    let v = output(cmd).success().json();
    assert_eq!(
        v["anchored"][0]["anchor"]["evm"]["from"],
        format!("{:#x}", signer.address())
    );
}

#[test]
fn dry_run_prints_a_signed_transaction_and_sends_nothing() {
    let chain = Anvil::start(31337);
    let ws = Workspace::new();
    ws.signed_run();
    let before = chain.block_number();
    let out = anchor(
        &ws,
        DEV_KEY,
        &[
            "r/manifest.intoto.json",
            "--chain",
            "local",
            "--rpc",
            &chain.url,
            "--dry-run",
            "-q",
        ],
    )
    .success();
    let raw = out.stdout.trim();
    assert!(
        raw.starts_with("0x02"),
        "an EIP-1559 (type 2) transaction: {raw}"
    );
    assert_eq!(chain.block_number(), before);
    assert!(!ws.path().join("r/manifest.anchor.json").exists());
    // The node accepts it as is.
    chain.rpc("eth_sendRawTransaction", json!([raw]));
}

#[test]
fn opentimestamps_proofs_are_standard_and_upgrade_to_bitcoin() {
    let calendar = Calendar::start();
    let ws = Workspace::new();
    let manifest = ws.signed_run();
    let out = ws
        .run(&[
            "anchor",
            "r/manifest.intoto.json",
            "--ots",
            "--calendar",
            &calendar.url,
            "--json",
            "-q",
        ])
        .success();
    let v = out.json();
    assert_eq!(v["anchored"][0]["anchor"]["ots"]["status"], "pending");

    // The .ots bytes: magic, version 1, sha256 file hash op, the manifest's sha256, then our ops.
    let proof = std::fs::read(ws.path().join("r/manifest.intoto.json.ots")).unwrap();
    assert!(proof.starts_with(auditai::anchor::ots::MAGIC));
    let rest = &proof[auditai::anchor::ots::MAGIC.len()..];
    assert_eq!(&rest[..2], &[0x01, 0x08]);
    use sha2::Digest as _;
    let digest: [u8; 32] = sha2::Sha256::digest(std::fs::read(&manifest).unwrap()).into();
    assert_eq!(&rest[2..34], &digest);
    // Leaf: prepend 0x00, sha256; then (one leaf, no siblings) the calendar's append and sha256.
    assert_eq!(&rest[34..38], &[0xf1, 0x01, 0x00, 0x08]);
    assert_eq!(rest[38], 0xf0);
    let (_, ts) = auditai::anchor::ots::decode_file(&proof).unwrap();
    let pending: Vec<_> = ts
        .attestations()
        .into_iter()
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(
        pending,
        vec![auditai::anchor::ots::Attestation::Pending(
            calendar.url.clone()
        )]
    );

    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(check(&v, "anchor opentimestamps")["status"], "warn");

    // Still pending: a status, not an error.
    let upgrade = [
        "anchor",
        "upgrade",
        "r/manifest.intoto.json",
        "--calendar",
        &calendar.url,
    ];
    let out = ws.run(&upgrade).success_with_stderr();
    assert_eq!(
        out.stdout,
        "r/manifest.intoto.json: pending: the calendars have not committed it to Bitcoin yet\n"
    );

    // A bundle made now carries the pending proof.
    ws.run(&["bundle", "r", "-o", "b.json"]).success();

    calendar
        .complete
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // A calendar URL inside a proof is not contacted unless the user configured it.
    let before = std::fs::read(ws.path().join("r/manifest.intoto.json.ots")).unwrap();
    let out = ws
        .run(&["anchor", "upgrade", "r/manifest.intoto.json"])
        .success_with_stderr();
    assert_eq!(
        out.stderr,
        format!(
            "warning: calendar {}: not a configured calendar; not contacted (pass --calendar URL to allow it)\n",
            calendar.url
        )
    );
    assert_eq!(
        std::fs::read(ws.path().join("r/manifest.intoto.json.ots")).unwrap(),
        before
    );
    let mut upgrade_json = upgrade.to_vec();
    upgrade_json.push("--json");
    let out = ws.run(&upgrade_json).success_with_stderr();
    assert_eq!(out.stderr, format!("asking {}\n", calendar.url));
    let v = out.json();
    assert_eq!(v["upgraded"][0]["status"], "bitcoin");
    assert_eq!(v["upgraded"][0]["bitcoin"][0]["height"], BITCOIN_HEIGHT);
    let r = receipt(&ws.path().join("r/manifest.anchor.json"));
    assert_eq!(r["ots"]["status"], "bitcoin");
    // The bundle's proof and receipt are upgraded in the bundle itself.
    let out = ws
        .run(&["anchor", "upgrade", "b.json", "--calendar", &calendar.url])
        .success_with_stderr();
    assert_eq!(
        out.stdout.lines().next().unwrap(),
        format!(
            "b.json: Bitcoin block {BITCOIN_HEIGHT} (merkle root {})",
            r["ots"]["bitcoin"][0]["merkleRoot"].as_str().unwrap()
        )
    );
    let bundled: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("b.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let bundled_ots = base64::engine::general_purpose::STANDARD
        .decode(bundled["ots"]["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bundled_ots,
        std::fs::read(ws.path().join("r/manifest.intoto.json.ots")).unwrap()
    );
    let out = ws.run(&["verify", "b.json", "--key", "me.pub", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        check(&out.json(), "anchor opentimestamps")["status"],
        "claimed"
    );
    // Without a header the verifier trusts, the Bitcoin attestation is only claimed.
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 0, "{v}");
    let ots = check(&v, "anchor opentimestamps");
    assert_eq!(ots["status"], "claimed");
    assert_eq!(
        ots["detail"],
        format!(
            "Bitcoin block {BITCOIN_HEIGHT}, claimed: no trusted block header to compare with; pass --bitcoin-header HEIGHT:MERKLEROOT or --bitcoin-rpc URL"
        )
    );
    // Checked against the header's merkle root (display order, as bitcoind prints it).
    let mut root = hex::decode(r["ots"]["bitcoin"][0]["merkleRoot"].as_str().unwrap()).unwrap();
    root.reverse();
    let header = format!("{BITCOIN_HEIGHT}:{}", hex::encode(&root));
    let (code, v) = ws.verify_json(&["--bitcoin-header", &header]);
    assert_eq!(code, 0, "{v}");
    let ots = check(&v, "anchor opentimestamps");
    assert_eq!(ots["status"], "pass");
    assert_eq!(
        ots["detail"],
        format!("Bitcoin block {BITCOIN_HEIGHT}: merkle root matches the trusted header")
    );
    let wrong = format!("{BITCOIN_HEIGHT}:{}", "11".repeat(32));
    let (code, v) = ws.verify_json(&["--bitcoin-header", &wrong]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(check(&v, "anchor opentimestamps")["status"], "fail");
    // Or against the verifier's own bitcoind, whose credentials are used and never printed.
    let node = Bitcoind::start(BITCOIN_HEIGHT, hex::encode(&root));
    let (code, v) = ws.verify_json(&["--bitcoin-rpc", &node.url_with_credentials]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(check(&v, "anchor opentimestamps")["status"], "pass");
    let liar = Bitcoind::start(BITCOIN_HEIGHT, "22".repeat(32));
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--key",
        "me.pub",
        "--root",
        ".",
        "--bitcoin-rpc",
        &liar.url_with_credentials,
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "but that block's merkle root is {}",
            "22".repeat(32)
        )),
        "{}",
        out.stdout
    );
    let down = "http://user:SECRETPW@127.0.0.1:9";
    let (code, v) = ws.verify_json(&["--bitcoin-rpc", down]);
    assert_eq!(code, 1, "{v}");
    let ots = check(&v, "anchor opentimestamps");
    assert!(
        ots["detail"]
            .as_str()
            .unwrap()
            .starts_with("cannot check the Bitcoin header: RPC http://127.0.0.1:9 unreachable: "),
        "{ots}"
    );
    assert!(!out.stdout.contains("SECRETPW") && !v.to_string().contains("SECRETPW"));
    let out = ws.run(&[
        "verify",
        "r/manifest.intoto.json",
        "--bitcoin-header",
        "12:xyz",
    ]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            2,
            "error: --bitcoin-header `12:xyz` is not HEIGHT:MERKLEROOT (64 hex digits, as bitcoind prints it)\n"
        )
    );

    // A proof for another file fails.
    let mut other = proof.clone();
    let at = auditai::anchor::ots::MAGIC.len() + 2;
    other[at] ^= 1;
    std::fs::write(ws.path().join("r/manifest.intoto.json.ots"), other).unwrap();
    let (code, v) = ws.verify_json(&[]);
    assert_eq!(code, 1);
    assert!(
        check(&v, "anchor opentimestamps")["detail"]
            .as_str()
            .unwrap()
            .starts_with("the proof timestamps another file")
    );
}

#[test]
fn a_calendar_that_is_down_is_an_error_and_writes_nothing() {
    let ws = Workspace::new();
    ws.signed_run();
    let out = ws.run(&[
        "anchor",
        "r/manifest.intoto.json",
        "--ots",
        "--calendar",
        "http://127.0.0.1:9",
        "-q",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: no OpenTimestamps calendar accepted the root: calendar http://127.0.0.1:9: "
        ),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("r/manifest.anchor.json").exists());
    assert!(!ws.path().join("r/manifest.intoto.json.ots").exists());
}

#[test]
fn bad_keys_and_missing_backends_are_clear_errors_before_any_network() {
    let ws = Workspace::new();
    ws.signed_run();
    let m = "r/manifest.intoto.json";
    // Nothing listens on port 9: every case below must fail before talking to it.
    let rpc = ["--rpc", "http://127.0.0.1:9", "-q"];
    for (key, message) in [
        ("12", "error: AUDITAI_ANCHOR_KEY must be 32 bytes of hex\n"),
        // 64 bytes, but not 64 hex digits (and not ASCII): an error, not a panic.
        (
            &"é".repeat(32),
            "error: AUDITAI_ANCHOR_KEY must be 32 bytes of hex\n",
        ),
        (
            &"00".repeat(32),
            "error: AUDITAI_ANCHOR_KEY is not a valid secp256k1 key\n",
        ),
    ] {
        let mut args = vec![m, "--chain-id", "31337"];
        args.extend(rpc);
        let out = anchor(&ws, key, &args);
        assert_eq!((out.code, out.stderr.as_str()), (2, message), "key {key:?}");
    }
    let out = ws.run(&[
        "anchor",
        m,
        "--rpc",
        "http://127.0.0.1:9",
        "--chain-id",
        "31337",
        "-q",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: no anchoring key: pass --keystore FILE (password from AUDITAI_KEYSTORE_PASSWORD or --password-file) or set AUDITAI_ANCHOR_KEY\n"
    );
    let out = ws.run(&["anchor", m]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: nothing to anchor with: pass --chain/--rpc for an EVM chain and/or --ots\n"
    );
    let out = ws.run(&["anchor", m, "--chain", "mars"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: unknown chain `mars` (known: 0g-mainnet, 0g-galileo, ethereum, sepolia, local)"
        ),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("r/manifest.anchor.json").exists());
}
