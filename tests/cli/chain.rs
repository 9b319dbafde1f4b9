//! Local services for the anchoring tests: a real anvil chain and an OpenTimestamps calendar,
//! both on 127.0.0.1, both stopped when dropped (even when a test fails).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auditai::anchor::ots::{Attestation, Op, Timestamp};
use serde_json::{Value, json};

/// anvil's first development key.
pub const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The anvil binary: `$AUDITAI_ANVIL`, else `anvil` on PATH, else where `.ci/run` installs it.
fn anvil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AUDITAI_ANVIL") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("anvil").is_file() {
                return dir.join("anvil");
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/auditai/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// A running anvil, killed by PID on drop.
pub struct Anvil {
    child: Child,
    pub url: String,
}

impl Anvil {
    pub fn start(chain_id: u64) -> Anvil {
        let bin = anvil_bin();
        let mut child = Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--chain-id",
                &chain_id.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start anvil at {} ({e}); run .ci/run or set AUDITAI_ANVIL",
                    bin.display()
                )
            });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            assert!(Instant::now() < deadline, "anvil did not start");
            let line = lines.next().expect("anvil exited").unwrap();
            if let Some(addr) = line.strip_prefix("Listening on ") {
                break format!("http://{}", addr.trim());
            }
        };
        // Keep draining stdout so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Anvil { child, url }
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        auditai::anchor::install_crypto_provider();
        let v: Value = reqwest::blocking::Client::new()
            .post(&self.url)
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    pub fn block_number(&self) -> u64 {
        u64::from_str_radix(
            self.rpc("eth_blockNumber", json!([]))
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal OpenTimestamps calendar speaking the real protocol: `POST /digest` answers with a
/// pending attestation; `GET /timestamp/<hex>` answers 404 until `complete` is set, then with a
/// Bitcoin attestation at height 800000.
pub struct Calendar {
    pub url: String,
    pub complete: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

pub const BITCOIN_HEIGHT: u64 = 800_000;

impl Calendar {
    pub fn start() -> Calendar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let complete = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, u) = (complete.clone(), stop.clone(), url.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &u, c.load(Ordering::Relaxed)),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Calendar {
            url,
            complete,
            stop,
        }
    }
}

impl Drop for Calendar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: std::net::TcpStream, url: &str, complete: bool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let (status, payload) = match (parts[0], parts[1]) {
        ("POST", "/digest") => {
            // What public calendars do: append a nonce, hash, promise a later attestation.
            let mut t = Timestamp::new(body.clone());
            t.add_op(Op::Append(vec![0xab; 16]))
                .add_op(Op::Sha256)
                .attestations
                .push(Attestation::Pending(url.to_string()));
            let mut out = Vec::new();
            t.serialize(&mut out);
            ("200 OK", out)
        }
        ("GET", path) if path.starts_with("/timestamp/") => {
            if complete {
                let hex = &path["/timestamp/".len()..];
                let msg: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let mut t = Timestamp::new(msg);
                t.add_op(Op::Prepend(vec![0x11; 32]))
                    .add_op(Op::Sha256)
                    .attestations
                    .push(Attestation::Bitcoin(BITCOIN_HEIGHT));
                let mut out = Vec::new();
                t.serialize(&mut out);
                ("200 OK", out)
            } else {
                (
                    "404 Not Found",
                    b"Pending confirmation in Bitcoin blockchain".to_vec(),
                )
            }
        }
        _ => ("400 Bad Request", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&payload).unwrap();
}
