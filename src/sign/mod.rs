//! ed25519 keys and DSSE envelopes.
//!
//! Owns key generation, PEM encoding (PKCS#8 for private keys, SPKI for public keys, the formats
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` use), where signing keys may
//! come from, the DSSE envelope and its pre-authentication encoding (PAE). Signing and checking
//! work on the exact payload bytes; nothing is re-serialised. Secret key types implement neither
//! Debug nor Display and are zeroed on drop. No files other than keys, no network.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The DSSE payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Errors from keys and envelopes.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file is readable by group or others.
    #[error("{}: private key is readable by group or others (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not an ed25519 key in the expected PEM form.
    #[error("{source_name}: not an ed25519 {kind} key in PEM form ({reason})")]
    BadKey {
        /// Where the key came from (a path or an environment variable).
        source_name: String,
        /// `private` or `public`.
        kind: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The output file exists.
    #[error("{}: already exists; refusing to overwrite a key", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// No randomness from the operating system.
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
}

/// A private signing key. Zeroed on drop; never printed.
pub struct SecretKey(SigningKey);

/// A public key with its DSSE key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// The key id: lower-case hex sha256 of the SPKI DER encoding of the public key.
    pub keyid: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

impl PublicKey {
    fn new(key: VerifyingKey) -> PublicKey {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let keyid = hex::encode(sha2::Sha256::digest(&der));
        PublicKey { key, keyid }
    }

    /// Parse an SPKI PEM public key.
    pub fn from_pem(pem: &str, source_name: &str) -> Result<PublicKey, SignError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey::new)
            .map_err(|e| SignError::BadKey {
                source_name: source_name.to_string(),
                kind: "public",
                reason: e.to_string(),
            })
    }

    /// Read an SPKI PEM public key file.
    pub fn read(path: &Path) -> Result<PublicKey, SignError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_pem(&text, &path.display().to_string())
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Check an ed25519 signature over `message` (strict verification).
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify_strict(message, &sig).is_ok() && self.key.verify(message, &sig).is_ok()
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<SecretKey, SignError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| SignError::Random(e.to_string()))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Parse a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str, source_name: &str) -> Result<SecretKey, SignError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(SecretKey)
            .map_err(|e| SignError::BadKey {
                source_name: source_name.to_string(),
                kind: "private",
                reason: e.to_string(),
            })
    }

    /// Read a PKCS#8 PEM private key file, refusing one that group or others can read.
    pub fn read(path: &Path) -> Result<SecretKey, SignError> {
        check_private_permissions(path)?;
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            SignError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?);
        SecretKey::from_pem(&text, &path.display().to_string())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.0.verifying_key())
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// PKCS#8 v1 PEM text (zeroed on drop). v1 carries no public key, which is what
    /// `openssl genpkey` writes and what OpenSSL 3.0 reads.
    pub fn to_pem(&self) -> Result<zeroize::Zeroizing<String>, SignError> {
        let v1 = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        v1.to_pkcs8_pem(LineEnding::LF)
            .map(|s| zeroize::Zeroizing::new(s.to_string()))
            .map_err(|e| SignError::BadKey {
                source_name: "generated key".into(),
                kind: "private",
                reason: e.to_string(),
            })
    }
}

/// Refuse a secret file (private key, keystore, password file) that group or others can read,
/// as ssh does.
pub fn check_private_permissions(path: &Path) -> Result<(), SignError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SignError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// Where a signing key comes from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--key FILE`.
    File(PathBuf),
    /// `AUDITAI_SIGNING_KEY` (PEM text).
    EnvPem,
    /// `AUDITAI_SIGNING_KEY_FILE`.
    EnvFile(PathBuf),
}

/// The signing key from `--key`, else `AUDITAI_SIGNING_KEY`, else `AUDITAI_SIGNING_KEY_FILE`;
/// `Ok(None)` when none is set.
pub fn signing_key(flag: Option<&Path>) -> Result<Option<(SecretKey, KeySource)>, SignError> {
    if let Some(path) = flag {
        return Ok(Some((
            SecretKey::read(path)?,
            KeySource::File(path.to_path_buf()),
        )));
    }
    if let Some(pem) = std::env::var_os("AUDITAI_SIGNING_KEY") {
        let pem = zeroize::Zeroizing::new(pem.to_string_lossy().into_owned());
        return Ok(Some((
            SecretKey::from_pem(&pem, "AUDITAI_SIGNING_KEY")?,
            KeySource::EnvPem,
        )));
    }
    if let Some(path) = std::env::var_os("AUDITAI_SIGNING_KEY_FILE") {
        let path = PathBuf::from(path);
        return Ok(Some((SecretKey::read(&path)?, KeySource::EnvFile(path))));
    }
    Ok(None)
}

/// Write a new key pair: `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub` (SPKI PEM).
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf, PublicKey), SignError> {
    let priv_path = with_suffix(prefix, "key");
    let pub_path = with_suffix(prefix, "pub");
    for p in [&priv_path, &pub_path] {
        if p.exists() {
            return Err(SignError::Exists { path: p.clone() });
        }
    }
    let key = SecretKey::generate()?;
    let pem = key.to_pem()?;
    write_new(&priv_path, pem.as_bytes(), 0o600)?;
    let public = key.public();
    write_new(&pub_path, public.to_pem().as_bytes(), 0o644)?;
    Ok((priv_path, pub_path, public))
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Create a file that must not exist yet, with `mode` from the start (no window where a private
/// key is readable by others).
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SignError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source| SignError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The payload's media type.
    pub payload_type: String,
    /// The payload, standard base64.
    pub payload: String,
    /// Signatures over `PAE(payloadType, payload bytes)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key (see [`PublicKey::keyid`]).
    #[serde(default)]
    pub keyid: String,
    /// The signature, standard base64.
    pub sig: String,
}

/// The DSSE pre-authentication encoding:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// An unsigned envelope around `payload`.
    pub fn new(payload_type: &str, payload: &[u8]) -> Envelope {
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: Vec::new(),
        }
    }

    /// The payload bytes (`None` when the base64 is invalid).
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        B64.decode(&self.payload).ok()
    }

    /// Add a signature by `key` over the exact payload bytes.
    pub fn sign(&mut self, key: &SecretKey) -> Option<()> {
        let body = self.payload_bytes()?;
        let sig = key.sign(&pae(&self.payload_type, &body));
        let keyid = key.public().keyid;
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(EnvelopeSignature {
            keyid,
            sig: B64.encode(sig),
        });
        Some(())
    }

    /// Serialise for writing to disk (pretty JSON with a trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The result of checking one signature against a set of public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigCheck {
    /// Valid under this key.
    Valid(PublicKey),
    /// Well-formed but no given key verifies it.
    NoMatchingKey,
    /// Not valid base64 or not 64 bytes.
    Malformed(String),
}

/// Check `sig` over the envelope's PAE against each of `keys`.
pub fn check_signature(
    env: &Envelope,
    body: &[u8],
    sig: &EnvelopeSignature,
    keys: &[PublicKey],
) -> SigCheck {
    let raw = match B64.decode(&sig.sig) {
        Ok(r) => r,
        Err(e) => return SigCheck::Malformed(format!("signature is not base64 ({e})")),
    };
    if raw.len() != 64 {
        return SigCheck::Malformed(format!(
            "signature is {} bytes, an ed25519 signature is 64",
            raw.len()
        ));
    }
    let message = pae(&env.payload_type, body);
    // The keyid is only a hint: try the key it names first, then every other trusted key.
    let mut order: Vec<&PublicKey> = keys.iter().filter(|k| k.keyid == sig.keyid).collect();
    order.extend(keys.iter().filter(|k| k.keyid != sig.keyid));
    match order.into_iter().find(|k| k.verify(&message, &raw)) {
        Some(k) => SigCheck::Valid(k.clone()),
        None => SigCheck::NoMatchingKey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_then_check_and_detect_tampering() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let mut env = Envelope::new(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        env.sign(&key).unwrap();
        let body = env.payload_bytes().unwrap();
        let sig = env.signatures[0].clone();
        assert_eq!(sig.keyid, key.public().keyid);
        assert_eq!(
            check_signature(&env, &body, &sig, &[other.public(), key.public()]),
            SigCheck::Valid(key.public())
        );
        assert_eq!(
            check_signature(&env, &body, &sig, &[other.public()]),
            SigCheck::NoMatchingKey
        );
        assert_eq!(
            check_signature(&env, b"{\"a\":2}", &sig, &[key.public()]),
            SigCheck::NoMatchingKey
        );
        let mut wrong_type = env.clone();
        wrong_type.payload_type = "text/plain".into();
        assert_eq!(
            check_signature(&wrong_type, &body, &sig, &[key.public()]),
            SigCheck::NoMatchingKey
        );
    }

    #[test]
    fn pem_round_trip() {
        let key = SecretKey::generate().unwrap();
        let pem = key.to_pem().unwrap();
        let back = SecretKey::from_pem(&pem, "t").unwrap();
        assert_eq!(back.public(), key.public());
        let public = PublicKey::from_pem(&key.public().to_pem(), "t").unwrap();
        assert_eq!(public, key.public());
    }
}
