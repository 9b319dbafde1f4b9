//! OpenTimestamps: the proof format (`.ots`), and the calendar HTTP protocol.
//!
//! A timestamp is a tree of operations (append, prepend, sha256, keccak256) from a message to
//! attestations (a calendar's pending promise, or a Bitcoin block). The serialisation follows the
//! reference implementation (python-opentimestamps) so the standard client reads our files.

use sha2::{Digest as _, Sha256};

/// The magic bytes that start every `.ots` file.
pub const MAGIC: &[u8] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
/// Pending (calendar) attestation tag.
pub const PENDING_TAG: [u8; 8] = [0x83, 0xdf, 0xe3, 0x0d, 0x2e, 0xf9, 0x0c, 0x8e];
/// Bitcoin block header attestation tag.
pub const BITCOIN_TAG: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];

const OP_SHA256: u8 = 0x08;
const OP_KECCAK256: u8 = 0x67;
const OP_APPEND: u8 = 0xf0;
const OP_PREPEND: u8 = 0xf1;
const FORK: u8 = 0xff;
const ATTESTATION: u8 = 0x00;
/// Bounds that keep a hostile proof from exhausting memory, time or the stack: an operation's
/// argument and result (as python-opentimestamps), the nesting depth, and the number of nodes and
/// attestations. Parsing keeps at most `MAX_NODES × MAX_MSG` bytes of messages (16 MiB).
const MAX_ARG: usize = 4096;
const MAX_MSG: usize = 4096;
const MAX_DEPTH: usize = 256;
const MAX_NODES: usize = 4096;
/// The largest `.ots` file or calendar answer read.
pub const MAX_PROOF: u64 = 1 << 20;

/// Errors in proofs and calendar answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtsError {
    /// The bytes are not a valid timestamp.
    #[error("malformed OpenTimestamps proof: {0}")]
    Malformed(String),
}

fn bad<T>(why: impl Into<String>) -> Result<T, OtsError> {
    Err(OtsError::Malformed(why.into()))
}

/// An operation on the message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// sha256(msg).
    Sha256,
    /// keccak256(msg).
    Keccak256,
    /// msg ‖ arg.
    Append(Vec<u8>),
    /// arg ‖ msg.
    Prepend(Vec<u8>),
}

impl Op {
    fn tag(&self) -> u8 {
        match self {
            Op::Sha256 => OP_SHA256,
            Op::Keccak256 => OP_KECCAK256,
            Op::Append(_) => OP_APPEND,
            Op::Prepend(_) => OP_PREPEND,
        }
    }

    /// Apply the operation.
    pub fn apply(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Op::Sha256 => Sha256::digest(msg).to_vec(),
            Op::Keccak256 => sha3::Keccak256::digest(msg).to_vec(),
            Op::Append(a) => [msg, a].concat(),
            Op::Prepend(p) => [p.as_slice(), msg].concat(),
        }
    }

    fn sort_key(&self) -> (u8, &[u8]) {
        match self {
            Op::Append(a) | Op::Prepend(a) => (self.tag(), a),
            _ => (self.tag(), &[]),
        }
    }
}

/// What a timestamp finally attests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// A calendar promises to anchor the message in Bitcoin; upgrade from this URL later.
    Pending(String),
    /// The message is the merkle root of the Bitcoin block at this height.
    Bitcoin(u64),
    /// An attestation this implementation does not interpret (kept as is).
    Unknown([u8; 8], Vec<u8>),
}

impl Attestation {
    fn tag_and_payload(&self) -> ([u8; 8], Vec<u8>) {
        match self {
            Attestation::Pending(url) => {
                let mut p = Vec::new();
                write_varbytes(&mut p, url.as_bytes());
                (PENDING_TAG, p)
            }
            Attestation::Bitcoin(h) => {
                let mut p = Vec::new();
                write_varuint(&mut p, *h);
                (BITCOIN_TAG, p)
            }
            Attestation::Unknown(t, p) => (*t, p.clone()),
        }
    }
}

/// A timestamp: from `msg`, attestations and further operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// The message at this node.
    pub msg: Vec<u8>,
    /// Attestations of `msg`.
    pub attestations: Vec<Attestation>,
    /// Operations on `msg`, each leading to a further timestamp.
    pub ops: Vec<(Op, Timestamp)>,
}

impl Timestamp {
    /// An empty timestamp of `msg`.
    pub fn new(msg: Vec<u8>) -> Timestamp {
        Timestamp {
            msg,
            attestations: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Add an operation and return the new child timestamp.
    pub fn add_op(&mut self, op: Op) -> &mut Timestamp {
        let child = Timestamp::new(op.apply(&self.msg));
        self.ops.push((op, child));
        let last = self.ops.len() - 1;
        &mut self.ops[last].1
    }

    /// Serialise (no file header).
    pub fn serialize(&self, out: &mut Vec<u8>) {
        let mut atts: Vec<([u8; 8], Vec<u8>)> = self
            .attestations
            .iter()
            .map(Attestation::tag_and_payload)
            .collect();
        atts.sort();
        let mut ops: Vec<&(Op, Timestamp)> = self.ops.iter().collect();
        ops.sort_by(|a, b| a.0.sort_key().cmp(&b.0.sort_key()));
        let items = atts.len() + ops.len();
        let mut written = 0;
        for (tag, payload) in &atts {
            written += 1;
            if written < items {
                out.push(FORK);
            }
            out.push(ATTESTATION);
            out.extend_from_slice(tag);
            write_varbytes(out, payload);
        }
        for (op, child) in ops {
            written += 1;
            if written < items {
                out.push(FORK);
            }
            out.push(op.tag());
            if let Op::Append(a) | Op::Prepend(a) = op {
                write_varbytes(out, a);
            }
            child.serialize(out);
        }
    }

    /// Parse a serialised timestamp of `msg`.
    pub fn parse(bytes: &[u8], msg: Vec<u8>) -> Result<Timestamp, OtsError> {
        let mut r = Reader {
            bytes,
            pos: 0,
            nodes: 0,
        };
        let t = parse_node(&mut r, msg, 0)?;
        if r.pos != bytes.len() {
            return bad("trailing bytes after the timestamp");
        }
        Ok(t)
    }

    /// Every attestation with the message it attests.
    pub fn attestations(&self) -> Vec<(&[u8], &Attestation)> {
        let mut out: Vec<(&[u8], &Attestation)> = self
            .attestations
            .iter()
            .map(|a| (self.msg.as_slice(), a))
            .collect();
        for (_, child) in &self.ops {
            out.extend(child.attestations());
        }
        out
    }

    /// Replace the pending attestation from `url` at the node whose message is `commitment`
    /// with the calendar's upgraded timestamp. Returns whether it was found.
    pub fn merge_upgrade(&mut self, commitment: &[u8], url: &str, upgrade: Timestamp) -> bool {
        let mut upgrade = Some(upgrade);
        self.merge_into(commitment, url, &mut upgrade);
        upgrade.is_none()
    }

    fn merge_into(&mut self, commitment: &[u8], url: &str, upgrade: &mut Option<Timestamp>) {
        if self.msg == commitment
            && let Some(i) = self
                .attestations
                .iter()
                .position(|a| matches!(a, Attestation::Pending(u) if u == url))
            && let Some(up) = upgrade.take()
        {
            self.attestations.remove(i);
            self.attestations.extend(up.attestations);
            self.ops.extend(up.ops);
            return;
        }
        for (_, child) in &mut self.ops {
            if upgrade.is_none() {
                return;
            }
            child.merge_into(commitment, url, upgrade);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Nodes and attestations parsed so far.
    nodes: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, OtsError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| OtsError::Malformed("truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], OtsError> {
        let s = self
            .bytes
            .get(self.pos..self.pos + n)
            .ok_or_else(|| OtsError::Malformed("truncated".into()))?;
        self.pos += n;
        Ok(s)
    }

    fn varuint(&mut self) -> Result<u64, OtsError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bad("varuint too long")
    }

    fn varbytes(&mut self, max: usize) -> Result<Vec<u8>, OtsError> {
        let n = usize::try_from(self.varuint()?).unwrap_or(usize::MAX);
        if n > max {
            return bad(format!("{n}-byte field exceeds the {max}-byte limit"));
        }
        Ok(self.take(n)?.to_vec())
    }
}

fn parse_node(r: &mut Reader<'_>, msg: Vec<u8>, depth: usize) -> Result<Timestamp, OtsError> {
    if depth > MAX_DEPTH {
        return bad("timestamp nested too deeply");
    }
    let mut t = Timestamp::new(msg);
    loop {
        r.nodes += 1;
        if r.nodes > MAX_NODES {
            return bad(format!("more than {MAX_NODES} operations and attestations"));
        }
        let tag = r.byte()?;
        let (tag, more) = if tag == FORK {
            (r.byte()?, true)
        } else {
            (tag, false)
        };
        if tag == ATTESTATION {
            let mut att_tag = [0u8; 8];
            att_tag.copy_from_slice(r.take(8)?);
            let payload = r.varbytes(8192)?;
            let mut p = Reader {
                bytes: &payload,
                pos: 0,
                nodes: 0,
            };
            let att = match att_tag {
                PENDING_TAG => {
                    let url = String::from_utf8(p.varbytes(1000)?)
                        .map_err(|_| OtsError::Malformed("calendar URL is not UTF-8".into()))?;
                    Attestation::Pending(url)
                }
                BITCOIN_TAG => Attestation::Bitcoin(p.varuint()?),
                other => Attestation::Unknown(other, payload.clone()),
            };
            t.attestations.push(att);
        } else {
            let op = match tag {
                OP_SHA256 => Op::Sha256,
                OP_KECCAK256 => Op::Keccak256,
                OP_APPEND => Op::Append(r.varbytes(MAX_ARG)?),
                OP_PREPEND => Op::Prepend(r.varbytes(MAX_ARG)?),
                other => return bad(format!("unsupported operation 0x{other:02x}")),
            };
            if let Op::Append(a) | Op::Prepend(a) = &op
                && t.msg.len() + a.len() > MAX_MSG
            {
                return bad(format!("an operation's result exceeds {MAX_MSG} bytes"));
            }
            let next = op.apply(&t.msg);
            let child = parse_node(r, next, depth + 1)?;
            t.ops.push((op, child));
        }
        if !more {
            return Ok(t);
        }
    }
}

fn write_varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn write_varbytes(out: &mut Vec<u8>, b: &[u8]) {
    write_varuint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A detached `.ots` file: the sha256 of a file and its timestamp.
pub fn encode_file(file_sha256: &[u8; 32], ts: &Timestamp) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    write_varuint(&mut out, 1);
    out.push(OP_SHA256);
    out.extend_from_slice(file_sha256);
    ts.serialize(&mut out);
    out
}

/// Parse a detached `.ots` file into the file's sha256 and its timestamp.
pub fn decode_file(bytes: &[u8]) -> Result<([u8; 32], Timestamp), OtsError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| OtsError::Malformed("not an OpenTimestamps proof (bad magic)".into()))?;
    let mut r = Reader {
        bytes: rest,
        pos: 0,
        nodes: 0,
    };
    if r.varuint()? != 1 {
        return bad("unsupported proof version");
    }
    if r.byte()? != OP_SHA256 {
        return bad("only sha256 file digests are supported");
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(r.take(32)?);
    let ts = Timestamp::parse(&rest[r.pos..], digest.to_vec())?;
    Ok((digest, ts))
}

#[cfg(feature = "anchor")]
/// Errors talking to a calendar.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The calendar could not be reached or answered with an HTTP error.
    #[error("calendar {url}: {message}")]
    Http {
        /// The calendar.
        url: String,
        /// What happened.
        message: String,
    },
    /// The calendar's answer is not a valid timestamp.
    #[error("calendar {url}: {source}")]
    Proof {
        /// The calendar.
        url: String,
        /// The parse error.
        #[source]
        source: OtsError,
    },
}

#[cfg(feature = "anchor")]
fn read_body(url: &str, resp: reqwest::blocking::Response) -> Result<Vec<u8>, CalendarError> {
    super::read_body(resp, MAX_PROOF).map_err(|message| CalendarError::Http {
        url: super::redact_url(url),
        message,
    })
}

#[cfg(feature = "anchor")]
/// Submit `digest` to a calendar (`POST <url>/digest`); returns its timestamp of the digest.
pub fn submit(
    client: &reqwest::blocking::Client,
    url: &str,
    digest: &[u8],
) -> Result<Timestamp, CalendarError> {
    let http = |message: String| CalendarError::Http {
        url: super::redact_url(url),
        message,
    };
    let resp = client
        .post(format!("{}/digest", url.trim_end_matches('/')))
        .header("Accept", "application/vnd.opentimestamps.v1")
        .header("User-Agent", concat!("auditai/", env!("CARGO_PKG_VERSION")))
        .body(digest.to_vec())
        .send()
        .map_err(|e| http(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(http(format!("HTTP {}", resp.status())));
    }
    let body = read_body(url, resp)?;
    Timestamp::parse(&body, digest.to_vec()).map_err(|source| CalendarError::Proof {
        url: super::redact_url(url),
        source,
    })
}

#[cfg(feature = "anchor")]
/// Ask a calendar for the completed timestamp of `commitment`
/// (`GET <url>/timestamp/<hex>`); `Ok(None)` while it is still pending.
pub fn upgrade(
    client: &reqwest::blocking::Client,
    url: &str,
    commitment: &[u8],
) -> Result<Option<Timestamp>, CalendarError> {
    let http = |message: String| CalendarError::Http {
        url: super::redact_url(url),
        message,
    };
    let hex = hex::encode(commitment);
    let resp = client
        .get(format!("{}/timestamp/{hex}", url.trim_end_matches('/')))
        .header("Accept", "application/vnd.opentimestamps.v1")
        .send()
        .map_err(|e| http(e.without_url().to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(http(format!("HTTP {}", resp.status())));
    }
    let body = read_body(url, resp)?;
    Timestamp::parse(&body, commitment.to_vec())
        .map(Some)
        .map_err(|source| CalendarError::Proof {
            url: super::redact_url(url),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_forks_and_both_attestations() {
        let mut t = Timestamp::new(vec![1; 32]);
        {
            let c = t.add_op(Op::Append(vec![9, 9]));
            let c = c.add_op(Op::Sha256);
            c.attestations
                .push(Attestation::Pending("https://a.example".into()));
        }
        {
            let c = t.add_op(Op::Prepend(vec![7]));
            let c = c.add_op(Op::Sha256);
            c.attestations.push(Attestation::Bitcoin(123_456));
        }
        let mut bytes = Vec::new();
        t.serialize(&mut bytes);
        assert_eq!(bytes[0], FORK, "two branches start with a fork");
        let back = Timestamp::parse(&bytes, vec![1; 32]).unwrap();
        assert_eq!(back, t);
        let file = encode_file(&[1; 32], &t);
        assert!(file.starts_with(MAGIC));
        assert_eq!(decode_file(&file).unwrap(), ([1; 32], t));
    }

    #[test]
    fn varuint_matches_the_reference_encoding() {
        let mut v = Vec::new();
        write_varuint(&mut v, 300);
        assert_eq!(v, vec![0xac, 0x02]);
    }

    #[test]
    fn truncated_and_hostile_proofs_are_errors_not_panics() {
        let mut t = Timestamp::new(vec![0; 32]);
        t.add_op(Op::Sha256)
            .attestations
            .push(Attestation::Bitcoin(1));
        let mut bytes = Vec::new();
        t.serialize(&mut bytes);
        for n in 0..bytes.len() {
            assert!(Timestamp::parse(&bytes[..n], vec![0; 32]).is_err());
        }
        let deep = vec![OP_SHA256; 10_000];
        assert!(Timestamp::parse(&deep, vec![0; 32]).is_err());
        // A fork-heavy proof whose appends grow the message: bounded, not gigabytes.
        let mut wide = Vec::new();
        for _ in 0..200_000 {
            wide.extend_from_slice(&[FORK, OP_APPEND, 0xff, 0x1f]);
            wide.extend(std::iter::repeat_n(0u8, 0xfff));
        }
        let e = Timestamp::parse(&wide, vec![0; 32]).unwrap_err();
        assert!(e.to_string().contains("exceeds") || e.to_string().contains("more than"));
        assert!(decode_file(b"not a proof").is_err());
    }
}
