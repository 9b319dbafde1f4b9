//! Evidence bundles (`auditai.bundle/v1`, docs/bundle.md): one JSON file that carries a signed
//! manifest byte for byte with the evidence about it (its anchor receipt, its OpenTimestamps
//! proof, the verdicts beside it and any evaluation attestations given), for a receiver who gets
//! one file. [`create`] reads a run directory and never writes; [`unpack`] writes a bundle's
//! files into a directory the caller owns (a private temporary one), each under a name checked
//! to be a plain file name of its kind and with the digest the bundle records. Bundles are
//! hostile input: read bounded, unknown fields refused.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::trust::DocumentKind;

/// The schema of a bundle.
pub const SCHEMA: &str = "auditai.bundle/v1";

/// The most a bundle may weigh: a manifest, its proofs and a handful of documents.
pub const MAX_BUNDLE: u64 = 64 << 20;

/// A bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bundle {
    /// [`SCHEMA`].
    pub schema: String,
    /// The signed manifest (provenance or pipeline), as its run directory holds it.
    pub manifest: Entry,
    /// Its anchor receipt (`<stem>.anchor.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Entry>,
    /// Its OpenTimestamps proof (`<manifest>.ots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ots: Option<Entry>,
    /// Verdicts about it (`verdict-*` files next to it, with their receipts and proofs).
    #[serde(default)]
    pub verdicts: Vec<Entry>,
    /// Evaluation attestations about it.
    #[serde(default)]
    pub evaluations: Vec<Entry>,
}

/// One carried file: its name, its sha256 and its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The file's name (a plain name, no directories).
    pub name: String,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// The bytes, standard base64.
    pub base64: String,
}

/// Why a bundle could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not what a bundle may carry, or not a bundle.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, why: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

impl Entry {
    fn of(name: &str, bytes: &[u8]) -> Entry {
        Entry {
            name: name.to_string(),
            sha256: crate::hash::sha256_hex(bytes),
            base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The bytes, checked against the recorded sha256.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.base64)
            .map_err(|e| format!("{}: not base64: {e}", self.name))?;
        let sha = crate::hash::sha256_hex(&bytes);
        if !crate::hash::hex_eq(&sha, &self.sha256) {
            return Err(format!(
                "{}: its bytes do not have the sha256 the bundle records",
                self.name
            ));
        }
        Ok(bytes)
    }
}

/// Read a file `dir/name` bounded, when it exists.
fn carried(dir: &Path, name: &str) -> Result<Option<Entry>, BundleError> {
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = crate::fsio::read_bounded(&path, crate::fsio::MAX_DOCUMENT).map_err(io(&path))?;
    Ok(Some(Entry::of(name, &bytes)))
}

/// The bundle of the manifest at `manifest` (or `manifest/manifest.intoto.json` for a run
/// directory), with the evaluation attestations at `evaluations`.
pub fn create(manifest: &Path, evaluations: &[PathBuf]) -> Result<Bundle, BundleError> {
    let manifest = if manifest.is_dir() {
        manifest.join(crate::run_dir::MANIFEST)
    } else {
        manifest.to_path_buf()
    };
    let bytes =
        crate::fsio::read_bounded(&manifest, crate::fsio::MAX_DOCUMENT).map_err(io(&manifest))?;
    match crate::trust::classify(&bytes) {
        Ok(DocumentKind::Provenance | DocumentKind::Pipeline) => {}
        Ok(kind) => {
            return Err(invalid(
                &manifest,
                format!("is {}, not a manifest", kind.with_article()),
            ));
        }
        Err(why) => return Err(invalid(&manifest, why)),
    }
    let dir = crate::run_dir::of_manifest(&manifest);
    let name = file_name(&manifest);
    let receipt_name = file_name(&crate::anchor::receipt_path(Path::new(&name)));
    let ots_name = file_name(&crate::anchor::ots_path(Path::new(&name)));
    let mut verdicts = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::vsa::is_verdict_file(n))
        .collect();
    names.sort();
    for n in names {
        verdicts.extend(carried(dir, &n)?);
    }
    let mut evals = Vec::new();
    for path in evaluations {
        let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_DOCUMENT).map_err(io(path))?;
        if crate::trust::classify(&bytes) != Ok(DocumentKind::Evaluation) {
            return Err(invalid(path, "not an evaluation attestation"));
        }
        evals.push(Entry::of(&file_name(path), &bytes));
    }
    Ok(Bundle {
        schema: SCHEMA.to_string(),
        manifest: Entry::of(&name, &bytes),
        receipt: carried(dir, &receipt_name)?,
        ots: carried(dir, &ots_name)?,
        verdicts,
        evaluations: evals,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `bytes` are a bundle: a JSON object whose `schema` is [`SCHEMA`] (in any key order).
pub fn is_bundle(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Schema {
        schema: Option<String>,
    }
    serde_json::from_slice::<Schema>(bytes).is_ok_and(|s| s.schema.as_deref() == Some(SCHEMA))
}

/// Read and check a bundle: bounded, unknown fields refused, its schema, and every name plain
/// and of its kind.
pub fn read(path: &Path) -> Result<Bundle, BundleError> {
    let bytes = crate::fsio::read_bounded(path, MAX_BUNDLE).map_err(io(path))?;
    parse(&bytes).map_err(|why| invalid(path, why))
}

/// [`read`] of bytes already read.
pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
    let b: Bundle =
        serde_json::from_slice(bytes).map_err(|e| format!("not an evidence bundle: {e}"))?;
    if b.schema != SCHEMA {
        return Err(format!("schema {} is not {SCHEMA}", b.schema));
    }
    check_names(&b)?;
    Ok(b)
}

/// Every carried name is a plain file name, the receipt and proof are the manifest's, verdict
/// files are named as verdicts, and no two entries share a name.
fn check_names(b: &Bundle) -> Result<(), String> {
    let plain = |n: &str| {
        !n.is_empty()
            && n.len() <= 255
            && n != "."
            && n != ".."
            && !n.contains(['/', '\\', '\0'])
            && !n.starts_with('.')
    };
    let m = &b.manifest.name;
    if !plain(m) || !m.ends_with(".json") {
        return Err(format!(
            "manifest name `{m}` is not a plain .json file name"
        ));
    }
    let want_receipt = file_name(&crate::anchor::receipt_path(Path::new(m)));
    let want_ots = file_name(&crate::anchor::ots_path(Path::new(m)));
    if let Some(r) = b.receipt.as_ref().filter(|r| r.name != want_receipt) {
        return Err(format!("receipt `{}` is not `{want_receipt}`", r.name));
    }
    if let Some(o) = b.ots.as_ref().filter(|o| o.name != want_ots) {
        return Err(format!("proof `{}` is not `{want_ots}`", o.name));
    }
    if let Some(v) = b
        .verdicts
        .iter()
        .find(|v| !plain(&v.name) || !crate::vsa::is_verdict_file(&v.name))
    {
        return Err(format!("`{}` is not a verdict file name", v.name));
    }
    if let Some(e) = b.evaluations.iter().find(|e| !plain(&e.name)) {
        return Err(format!("`{}` is not a plain file name", e.name));
    }
    let mut all: Vec<&str> = std::iter::once(m.as_str())
        .chain(b.receipt.iter().chain(&b.ots).map(|e| e.name.as_str()))
        .chain(
            b.verdicts
                .iter()
                .chain(&b.evaluations)
                .map(|e| e.name.as_str()),
        )
        .collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("`{}` is carried twice", w[0]));
    }
    Ok(())
}

impl Bundle {
    /// Take the receipt and proof again from `dir`, where [`unpack`] wrote them and something
    /// (`anchor upgrade`) may have changed them; whether anything changed.
    pub fn refresh(&mut self, dir: &Path) -> Result<bool, BundleError> {
        let m = Path::new(&self.manifest.name);
        let receipt = carried(dir, &file_name(&crate::anchor::receipt_path(m)))?;
        let ots = carried(dir, &file_name(&crate::anchor::ots_path(m)))?;
        let same = |a: &Option<Entry>, b: &Option<Entry>| {
            a.as_ref().map(|e| &e.sha256) == b.as_ref().map(|e| &e.sha256)
        };
        let changed = !same(&self.receipt, &receipt) || !same(&self.ots, &ots);
        self.receipt = receipt;
        self.ots = ots;
        Ok(changed)
    }
}

/// Write the bundle's files into `dir` (which the caller owns and which holds nothing of the
/// same names) and return the manifest's path there. Evaluation attestations go to `dir/evaluations/`.
pub fn unpack(b: &Bundle, dir: &Path) -> Result<PathBuf, BundleError> {
    let bad = |why: String| invalid(dir, why);
    check_names(b).map_err(bad)?;
    let write = |sub: &Path, e: &Entry| -> Result<(), BundleError> {
        let bytes = e.bytes().map_err(|why| invalid(dir, why))?;
        let path = sub.join(&e.name);
        crate::fsio::write_atomic(&path, &bytes).map_err(io(&path))
    };
    for e in std::iter::once(&b.manifest)
        .chain(&b.receipt)
        .chain(&b.ots)
        .chain(&b.verdicts)
    {
        write(dir, e)?;
    }
    if !b.evaluations.is_empty() {
        let evals = dir.join("evaluations");
        std::fs::create_dir(&evals).map_err(io(&evals))?;
        for e in &b.evaluations {
            write(&evals, e)?;
        }
    }
    Ok(dir.join(&b.manifest.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle {
            schema: SCHEMA.to_string(),
            manifest: Entry::of("manifest.intoto.json", b"{}"),
            receipt: Some(Entry::of("manifest.anchor.json", b"{}")),
            ots: None,
            verdicts: Vec::new(),
            evaluations: Vec::new(),
        }
    }

    #[test]
    fn names_that_leave_the_directory_or_pose_as_others_are_refused() {
        assert!(check_names(&bundle()).is_ok());
        for (edit, want) in [
            (
                (|b: &mut Bundle| b.manifest.name = "../x.json".into()) as fn(&mut Bundle),
                "is not a plain .json file name",
            ),
            (
                |b: &mut Bundle| b.receipt = Some(Entry::of("other.anchor.json", b"{}")),
                "is not `manifest.anchor.json`",
            ),
            (
                |b: &mut Bundle| b.verdicts = vec![Entry::of("model.bpk", b"x")],
                "is not a verdict file name",
            ),
            (
                |b: &mut Bundle| b.evaluations = vec![Entry::of("a/b.json", b"x")],
                "is not a plain file name",
            ),
            (
                |b: &mut Bundle| {
                    b.evaluations = vec![Entry::of("e.json", b"x"), Entry::of("e.json", b"y")]
                },
                "is carried twice",
            ),
        ] {
            let mut b = bundle();
            edit(&mut b);
            let why = check_names(&b).unwrap_err();
            assert!(why.ends_with(want), "{why}");
        }
    }

    #[test]
    fn an_entry_whose_bytes_were_changed_is_refused() {
        let mut e = Entry::of("manifest.intoto.json", b"signed bytes");
        assert_eq!(e.bytes().unwrap(), b"signed bytes");
        e.base64 = base64::engine::general_purpose::STANDARD.encode(b"other bytes");
        assert!(
            e.bytes()
                .unwrap_err()
                .ends_with("do not have the sha256 the bundle records")
        );
    }

    #[test]
    fn a_bundle_is_told_by_its_schema_in_any_key_order() {
        let json = serde_json::to_vec_pretty(&bundle()).unwrap();
        assert!(is_bundle(&json));
        let sorted: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(is_bundle(&serde_json::to_vec(&sorted).unwrap()));
        assert!(!is_bundle(
            br#"{"payloadType":"application/vnd.in-toto+json"}"#
        ));
        assert!(!is_bundle(br#"{"schema":"auditai.bundle/v2"}"#));
    }
}
