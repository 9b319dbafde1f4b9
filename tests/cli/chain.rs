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
        self.try_rpc(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A call whose JSON-RPC error (a revert) is the answer the test wants.
    pub fn try_rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        auditai::anchor::install_crypto_provider();
        let v: Value = reqwest::blocking::Client::new()
            .post(&self.url)
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v["result"].clone()),
        }
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

/// A local HTTP/1.1 server on 127.0.0.1 answering each request with `handle(request)`; stopped
/// when dropped.
struct Stub {
    url: String,
    stop: Arc<AtomicBool>,
}

/// What a stub sees of a request.
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl Stub {
    fn start(handle: impl Fn(&Request) -> (&'static str, Vec<u8>) + Send + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &handle),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Stub { url, stop }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: std::net::TcpStream, handle: &dyn Fn(&Request) -> (&'static str, Vec<u8>)) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let (mut length, mut authorization) = (0, None);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if lower.starts_with("authorization:") {
            authorization = Some(h["authorization:".len()..].trim().to_string());
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let request = Request {
        method: parts[0].to_string(),
        path: parts[1].to_string(),
        authorization,
        body,
    };
    let (status, payload) = handle(&request);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&payload).unwrap();
}

/// A minimal OpenTimestamps calendar speaking the real protocol: `POST /digest` answers with a
/// pending attestation; `GET /timestamp/<hex>` answers 404 until `complete` is set, then with a
/// Bitcoin attestation at height 800000.
pub struct Calendar {
    pub url: String,
    pub complete: Arc<AtomicBool>,
    _stub: Stub,
}

pub const BITCOIN_HEIGHT: u64 = 800_000;

impl Calendar {
    pub fn start() -> Calendar {
        let complete = Arc::new(AtomicBool::new(false));
        let c = complete.clone();
        // The pending attestation names the calendar's own URL, known once it listens.
        let own = Arc::new(std::sync::OnceLock::<String>::new());
        let url_cell = own.clone();
        let stub =
            Stub::start(move |r| calendar(r, url_cell.get().unwrap(), c.load(Ordering::Relaxed)));
        own.set(stub.url.clone()).unwrap();
        Calendar {
            url: stub.url.clone(),
            complete,
            _stub: stub,
        }
    }
}

fn calendar(r: &Request, url: &str, complete: bool) -> (&'static str, Vec<u8>) {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/digest") => {
            // What public calendars do: append a nonce, hash, promise a later attestation.
            let mut t = Timestamp::new(r.body.clone());
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
                let msg = hex::decode(&path["/timestamp/".len()..]).unwrap();
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
    }
}

/// A bitcoind JSON-RPC stand-in that knows one block (height, merkle root as bitcoind prints it)
/// and requires basic auth `user:SECRETPW`, as a real node does.
pub struct Bitcoind {
    pub url_with_credentials: String,
    _stub: Stub,
}

impl Bitcoind {
    pub fn start(height: u64, merkleroot: String) -> Bitcoind {
        let stub = Stub::start(move |r| {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("user:SECRETPW")
            );
            if r.authorization.as_deref() != Some(expected.as_str()) {
                return ("401 Unauthorized", Vec::new());
            }
            let req: Value = serde_json::from_slice(&r.body).unwrap();
            let result = match req["method"].as_str().unwrap() {
                "getblockhash" if req["params"][0] == height => json!("00".repeat(32)),
                "getblockheader" => json!({ "height": height, "merkleroot": merkleroot }),
                _ => Value::Null,
            };
            let error = if result.is_null() {
                json!({"code": -8, "message": "Block height out of range"})
            } else {
                Value::Null
            };
            let body = json!({"result": result, "error": error, "id": req["id"]});
            ("200 OK", serde_json::to_vec(&body).unwrap())
        });
        Bitcoind {
            url_with_credentials: stub.url.replace("http://", "http://user:SECRETPW@"),
            _stub: stub,
        }
    }
}
