//! [`SignedRun`]: a run's manifest opened once at the gate. Opening checks the envelope, the
//! kind of run and, when required, the signatures under the trust; afterwards every file of the
//! run is read through its recorded digest, inside the run directory only, and the typed spec,
//! preprocessing and stage records come from here.

use std::path::{Path, PathBuf};

use super::document::classify;
use super::{DocumentKind, Expect, Required, TrustError};
use crate::hash::{self, PinnedError};
use crate::manifest::{self, Opened, PipelineExtension, StageRecord, Statement};
use crate::sign::PublicKey;

/// Which kind of run a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A training run (its model, preprocessing, transcript).
    Training,
    /// A multi-stage pipeline run.
    Pipeline,
    /// Either.
    Any,
}

/// How another document pins a manifest: by the digest of its bytes.
#[derive(Debug, Clone, Copy)]
pub enum Pin<'a> {
    /// blake3, hex.
    Blake3(&'a str),
    /// sha256, hex.
    Sha256(&'a str),
}

/// A run whose manifest passed the gate.
pub struct SignedRun {
    path: PathBuf,
    dir: PathBuf,
    bytes: Vec<u8>,
    opened: Opened,
    kind: DocumentKind,
    checked: bool,
    signers: Vec<PublicKey>,
}

impl std::fmt::Debug for SignedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRun")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

impl SignedRun {
    /// Open the run at `path` (its run directory or its manifest) as a run of `kind`, checking
    /// its signatures as `required` says.
    pub fn open(
        path: &Path,
        kind: RunKind,
        required: Required<'_>,
    ) -> Result<SignedRun, TrustError> {
        let manifest = if path.is_dir() {
            path.join(crate::run_dir::MANIFEST)
        } else {
            path.to_path_buf()
        };
        let bytes =
            crate::fsio::read_bounded(&manifest, crate::fsio::MAX_DOCUMENT).map_err(|source| {
                TrustError::Unreadable {
                    path: manifest.clone(),
                    source,
                }
            })?;
        SignedRun::from_bytes(manifest, bytes, kind, required)
    }

    /// Open the manifest at `path` that another document pins by digest: refused unless its
    /// bytes have that digest.
    pub fn open_pinned(
        path: &Path,
        pin: Pin<'_>,
        kind: RunKind,
        required: Required<'_>,
    ) -> Result<SignedRun, TrustError> {
        let bytes =
            match pin {
                Pin::Blake3(want) => hash::read_pinned(path, want, crate::fsio::MAX_DOCUMENT)
                    .map_err(|e| match e {
                        PinnedError::Changed { actual, expected } => TrustError::Pinned {
                            path: path.to_path_buf(),
                            alg: "blake3",
                            actual: actual.to_string(),
                            expected: expected.to_string(),
                        },
                        PinnedError::Read(source) => TrustError::Unreadable {
                            path: path.to_path_buf(),
                            source,
                        },
                    })?,
                Pin::Sha256(want) => {
                    let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT)
                        .map_err(|source| TrustError::Unreadable {
                            path: path.to_path_buf(),
                            source,
                        })?;
                    let actual = hash::sha256_hex(&bytes);
                    if !hash::hex_eq(&actual, want) {
                        return Err(TrustError::Pinned {
                            path: path.to_path_buf(),
                            alg: "sha256",
                            actual,
                            expected: want.to_string(),
                        });
                    }
                    bytes
                }
            };
        SignedRun::from_bytes(path.to_path_buf(), bytes, kind, required)
    }

    /// The gate itself, over bytes already read from `path`.
    pub fn from_bytes(
        path: PathBuf,
        bytes: Vec<u8>,
        kind: RunKind,
        required: Required<'_>,
    ) -> Result<SignedRun, TrustError> {
        let malformed = |why: String| TrustError::Malformed {
            path: path.clone(),
            why,
        };
        let found = classify(&bytes).map_err(malformed)?;
        if !Expect::Run(kind).admits(found) {
            return Err(TrustError::WrongKind {
                path,
                found,
                expected: Expect::Run(kind),
            });
        }
        let opened = manifest::open(&bytes).map_err(|e| malformed(e.to_string()))?;
        let (checked, signers) = match required {
            Required::Unchecked => (false, Vec::new()),
            Required::Signers(trust) => {
                let valid = super::signatures::check(&opened.envelope, &opened.payload, trust)
                    .map_err(|(check, why)| TrustError::Untrusted {
                        path: path.clone(),
                        check,
                        why,
                    })?;
                (true, valid)
            }
        };
        let dir = crate::run_dir::of_manifest(&path).to_path_buf();
        Ok(SignedRun {
            path,
            dir,
            bytes,
            opened,
            kind: found,
            checked,
            signers,
        })
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run directory (the manifest's directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest's exact bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The statement (its signatures checked when [`SignedRun::checked`]).
    pub fn statement(&self) -> &Statement {
        &self.opened.statement
    }

    /// The envelope and payload, for checkers that print every signature row.
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// Provenance or pipeline manifest.
    pub fn kind(&self) -> DocumentKind {
        self.kind
    }

    /// Whether the signatures were checked against a trust (false under
    /// [`Required::Unchecked`]).
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// The trusted keys whose signatures are valid (empty when not checked).
    pub fn signers(&self) -> &[PublicKey] {
        &self.signers
    }

    /// The key ids the signatures claim (checked or not).
    pub fn keyids(&self) -> Vec<String> {
        self.opened
            .envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect()
    }

    /// blake3 of the manifest's bytes, hex.
    pub fn blake3_hex(&self) -> String {
        hash::Digest::of(&self.bytes).hex()
    }

    /// sha256 of the manifest's bytes, hex.
    pub fn sha256_hex(&self) -> String {
        hash::sha256_hex(&self.bytes)
    }

    /// The pipeline section of a pipeline manifest.
    pub fn pipeline(&self) -> Option<&PipelineExtension> {
        self.opened.statement.predicate.pipeline.as_ref()
    }

    /// A stage the pipeline manifest records, by name.
    pub fn stage(&self, name: &str) -> Result<&StageRecord, TrustError> {
        let stages = self.pipeline().map(|p| p.stages.as_slice()).unwrap_or(&[]);
        stages.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            TrustError::Malformed {
                path: self.path.clone(),
                why: format!(
                    "the manifest records no stage `{name}` (it records: {})",
                    names.join(", ")
                ),
            }
        })
    }

    /// Read a run-directory file the manifest records (a subject or byproduct), at most `max`
    /// bytes, refused unless its blake3 is the recorded one.
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, TrustError> {
        let recorded = self
            .statement()
            .run_file(name)
            .and_then(|d| d.digest.get("blake3"))
            .ok_or_else(|| TrustError::File {
                path: self.path.clone(),
                name: name.to_string(),
                why: "the manifest does not record it".into(),
            })?;
        self.read_pinned(name, recorded, max)
    }

    /// Read the file `name` inside the run directory, pinned to `blake3` (a digest the manifest
    /// or a record it pins gives, such as a transcript entry's checkpoint), at most `max` bytes.
    pub fn read_pinned(&self, name: &str, blake3: &str, max: u64) -> Result<Vec<u8>, TrustError> {
        let refuse = |why: String| TrustError::File {
            path: self.path.clone(),
            name: name.to_string(),
            why,
        };
        let path = crate::fsio::safe_join(&self.dir, name).map_err(|e| refuse(e.to_string()))?;
        hash::read_pinned(&path, blake3, max).map_err(|e| match e {
            PinnedError::Changed { actual, expected } => refuse(format!(
                "changed: blake3 is {actual}, the manifest records {expected}"
            )),
            PinnedError::Read(e) if e.kind() == std::io::ErrorKind::NotFound => {
                refuse("missing".into())
            }
            PinnedError::Read(source) => TrustError::Unreadable { path, source },
        })
    }

    /// The stage of a pipeline this training run was (`None` for a lone spec).
    pub fn stage_name(&self) -> Option<&str> {
        self.statement()
            .predicate
            .build_definition
            .external_parameters
            .get("spec")
            .and_then(|s| s.get("stage"))
            .and_then(serde_json::Value::as_str)
    }

    /// The resolved spec the run recorded (`spec.yaml`, digest-checked), for its stage.
    pub fn spec(&self) -> Result<crate::spec::Spec, TrustError> {
        let bytes = self.read(crate::run_dir::SPEC, crate::fsio::MAX_DOCUMENT)?;
        let path = self.dir.join(crate::run_dir::SPEC);
        crate::spec::Spec::parse_stage(&String::from_utf8_lossy(&bytes), &path, self.stage_name())
            .map_err(|e| TrustError::Malformed {
                path,
                why: e.to_string(),
            })
    }

    /// The run's fitted preprocessing (`preprocessing.json`, digest-checked, validated).
    pub fn preprocessing(&self) -> Result<crate::data::Preprocessing, TrustError> {
        let bytes = self.read(crate::run_dir::PREPROCESSING, crate::fsio::MAX_DOCUMENT)?;
        crate::data::Preprocessing::from_json(&bytes).map_err(|e| TrustError::Malformed {
            path: self.dir.join(crate::run_dir::PREPROCESSING),
            why: e.to_string(),
        })
    }
}
