//! Documents bound to a signed run: a Markdown model card and a CycloneDX 1.6 ML-BOM, filled from
//! the run's manifest, summary, preprocessing, weights header, the spec's `card:` section and any
//! evaluation attestations (`auditai export`; `docs/model-card.md`). Each document carries the
//! manifest's sha256 and the subjects' digests, and [`check_binding`] (`auditai verify`) checks a
//! document against its run.
//!
//! Reads the run; writes nothing (the command line writes the document atomically).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::manifest::{self, ResourceDescriptor};
use crate::run_dir;
use crate::spec::CardSpec;

/// The marker that starts a model card's binding comment.
pub const CARD_MARKER: &str = "<!-- auditai-model-card/v1 ";
/// The BOM property naming the manifest's sha256.
pub const BOM_MANIFEST_PROPERTY: &str = "auditai:manifest-sha256";

/// Errors that stop an export (exit 2), or a run whose files do not match its manifest (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file is unreadable or malformed.
    #[error("{}: {message}", path.display())]
    Run {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run file differs from the manifest.
    #[error("{check}: {why}")]
    Mismatch {
        /// The file.
        check: String,
        /// How.
        why: String,
    },
}

/// The binding a document carries: which manifest and which subjects it describes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// The manifest, relative to the document's directory (or absolute).
    pub manifest: String,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// The subjects (name and sha256).
    pub subjects: Vec<Subject>,
}

/// One subject of a binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// File name.
    pub name: String,
    /// sha256, hex.
    pub sha256: String,
}

/// Everything a document says, gathered from the run.
pub struct Run {
    /// The manifest path.
    pub manifest_path: PathBuf,
    /// Its bytes.
    pub manifest_bytes: Vec<u8>,
    /// The statement.
    pub statement: manifest::Statement,
    /// Signer key ids.
    pub signers: Vec<String>,
    /// Whether the signers were verified against a trust.
    pub signers_verified: bool,
    /// `summary.json`.
    pub summary: Value,
    /// `preprocessing.json`.
    pub preprocessing: Value,
    /// Parameter count (from the safetensors header).
    pub parameters: u64,
    /// The spec's card section.
    pub card: CardSpec,
    /// The anchor receipt next to the manifest, when there is one.
    pub anchor: Option<crate::anchor::Receipt>,
    /// Class counts of the training data, when it could be read.
    pub class_balance: Option<BTreeMap<String, u64>>,
    /// Evaluation attestations to include.
    pub evaluations: Vec<crate::eval::Evaluation>,
}

/// Read a run for export: the manifest, and the summary, preprocessing and weights each checked
/// against the manifest's digests.
pub fn read_run(
    path: &Path,
    trust: &crate::verify::Trust<'_>,
    root: Option<&Path>,
    evals: &[PathBuf],
) -> Result<Run, ExportError> {
    let manifest_path = if path.is_dir() {
        path.join(run_dir::MANIFEST)
    } else {
        path.to_path_buf()
    };
    let bad = |p: &Path, message: String| ExportError::Run {
        path: p.to_path_buf(),
        message,
    };
    let bytes = crate::fsio::read_bounded(&manifest_path, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| bad(&manifest_path, e.to_string()))?;
    let opened = manifest::open(&bytes).map_err(|e| bad(&manifest_path, e.to_string()))?;
    if opened.statement.predicate.auditai.is_none() {
        return Err(bad(
            &manifest_path,
            "not a training run's manifest (export the training stage's run directory)".into(),
        ));
    }
    let signers_verified = match trust {
        crate::verify::Trust::Signers(o) => {
            crate::verify::signatures_trusted(&opened, o).map_err(|why| ExportError::Mismatch {
                check: "signatures".into(),
                why,
            })?;
            true
        }
        crate::verify::Trust::Unchecked => false,
    };
    let dir = crate::verify::run_dir_of(&manifest_path);
    let st = &opened.statement;
    let pinned = |name: &str, max: u64| -> Result<Vec<u8>, ExportError> {
        let recorded = st
            .run_file(name)
            .and_then(|d| d.digest.get("blake3").cloned())
            .ok_or_else(|| ExportError::Mismatch {
                check: format!("file {name}"),
                why: "the manifest does not record it".into(),
            })?;
        crate::hash::read_pinned(&dir.join(name), &recorded, max).map_err(|e| {
            ExportError::Mismatch {
                check: format!("file {name}"),
                why: e.to_string(),
            }
        })
    };
    let summary_bytes = pinned(run_dir::SUMMARY, crate::fsio::MAX_DOCUMENT)?;
    let pre_bytes = pinned(run_dir::PREPROCESSING, crate::fsio::MAX_DOCUMENT)?;
    let weights = pinned(run_dir::MODEL_SAFETENSORS, 16 << 30)?;
    let json = |p: &str, b: &[u8]| {
        serde_json::from_slice::<Value>(b).map_err(|e| bad(&dir.join(p), e.to_string()))
    };
    let summary = json(run_dir::SUMMARY, &summary_bytes)?;
    let preprocessing = json(run_dir::PREPROCESSING, &pre_bytes)?;
    let parameters = safetensors_parameters(&weights).ok_or_else(|| {
        bad(
            &dir.join(run_dir::MODEL_SAFETENSORS),
            "malformed header".into(),
        )
    })?;
    let card = st
        .predicate
        .build_definition
        .external_parameters
        .get("spec")
        .and_then(|s| s.get("card"))
        .and_then(|c| CardSpec::deserialize(c).ok())
        .unwrap_or_default();
    let anchor = crate::anchor::read_receipt(&crate::anchor::receipt_path(&manifest_path)).ok();
    let class_balance = class_balance(st, &manifest_path, root, &preprocessing);
    let mut evaluations = Vec::new();
    for e in evals {
        let b = crate::fsio::read_bounded(e, crate::fsio::MAX_DOCUMENT)
            .map_err(|x| bad(e, x.to_string()))?;
        let (_, _, value) = manifest::open_envelope(&b).map_err(|x| bad(e, x.to_string()))?;
        let ev: crate::eval::EvalStatement = serde_json::from_value(value)
            .map_err(|x| bad(e, format!("not an evaluation attestation: {x}")))?;
        if !crate::hash::hex_eq(
            &ev.predicate.model.manifest_blake3,
            &crate::hash::Digest::of(&bytes).hex(),
        ) {
            return Err(ExportError::Mismatch {
                check: format!("evaluation {}", e.display()),
                why: "it evaluates another run".into(),
            });
        }
        evaluations.push(ev.predicate);
    }
    Ok(Run {
        signers: opened
            .envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect(),
        manifest_path,
        manifest_bytes: bytes.clone(),
        statement: opened.statement,
        signers_verified,
        summary,
        preprocessing,
        parameters,
        card,
        anchor,
        class_balance,
        evaluations,
    })
}

/// The number of parameters: the sum of the tensors' element counts in a safetensors header.
fn safetensors_parameters(bytes: &[u8]) -> Option<u64> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    let v: Value = serde_json::from_slice(header).ok()?;
    let mut n = 0u64;
    for (k, t) in v.as_object()? {
        if k == "__metadata__" {
            continue;
        }
        let shape = t.get("shape")?.as_array()?;
        n = n.checked_add(
            shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))?,
        )?;
    }
    Some(n)
}

/// Class counts of the training data (digest-checked), for classification runs.
fn class_balance(
    st: &manifest::Statement,
    manifest_path: &Path,
    root: Option<&Path>,
    pre: &Value,
) -> Option<BTreeMap<String, u64>> {
    let label = pre.get("label")?.as_str()?;
    pre.get("classes")?.as_array()?;
    let dep = st
        .predicate
        .build_definition
        .resolved_dependencies
        .first()
        .filter(|d| d.uri.as_deref().is_some_and(|u| u.starts_with("file:")))?;
    let root = root.map_or_else(
        || crate::provenance::project_root(crate::verify::run_dir_of(manifest_path)),
        Path::to_path_buf,
    );
    let path = crate::fsio::safe_join(&root, dep.name.as_deref()?).ok()?;
    let bytes = crate::hash::read_pinned(
        &path,
        dep.digest.get("blake3")?,
        crate::data::MAX_DATA_BYTES,
    )
    .ok()?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let col = reader
        .headers()
        .ok()?
        .iter()
        .position(|h| h.trim() == label)?;
    let mut counts = BTreeMap::new();
    for rec in reader.records().flatten() {
        *counts.entry(rec.get(col)?.trim().to_string()).or_insert(0) += 1;
    }
    Some(counts)
}

impl Run {
    /// The binding the document at `out` carries.
    pub fn binding(&self, out: &Path) -> Binding {
        let out_dir = crate::verify::run_dir_of(out);
        Binding {
            manifest: crate::fsio::relative_to(out_dir, &self.manifest_path),
            manifest_sha256: crate::hash::sha256_hex(&self.manifest_bytes),
            subjects: self
                .statement
                .subject
                .iter()
                .map(|s| Subject {
                    name: s.name.clone().unwrap_or_default(),
                    sha256: s.digest.get("sha256").cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn spec(&self) -> &Value {
        self.statement
            .predicate
            .build_definition
            .external_parameters
            .get("spec")
            .unwrap_or(&Value::Null)
    }

    fn name(&self) -> String {
        self.spec()["name"].as_str().unwrap_or("model").to_string()
    }

    fn architecture(&self) -> String {
        let m = &self.spec()["model"];
        let mut s = format!(
            "{} with hidden layers {}, {} activation",
            m["type"].as_str().unwrap_or("?"),
            m["hidden"],
            m["activation"].as_str().unwrap_or("?")
        );
        if let Some(c) = m.get("conv").filter(|c| !c.is_null()) {
            s.push_str(&format!(
                ", conv channels {} kernel {}",
                c["channels"], c["kernel"]
            ));
        }
        s
    }

    fn held_out_metrics(&self) -> Vec<(String, f64)> {
        self.summary["metrics"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn wall_seconds(&self) -> f64 {
        self.summary["epochs"]
            .as_array()
            .map(|e| e.iter().filter_map(|r| r["seconds"].as_f64()).sum())
            .unwrap_or(0.0)
    }

    fn data(&self) -> Option<&ResourceDescriptor> {
        self.statement
            .predicate
            .build_definition
            .resolved_dependencies
            .first()
    }
}

/// The Markdown model card.
pub fn model_card(run: &Run, out: &Path) -> String {
    let b = run.binding(out);
    let spec = run.spec();
    let s = &run.summary;
    let card = &run.card;
    let mut md = String::new();
    md.push_str(&format!(
        "{CARD_MARKER}{} -->\n",
        serde_json::to_string(&b).unwrap_or_default()
    ));
    md.push_str(&format!("# Model card: {}\n\n", run.name()));
    md.push_str("Generated by `auditai export` from the signed run; the sections marked *human* come from the spec's `card:` section, everything else from the run. Check that this card describes these weights with `auditai verify` on this file.\n\n");
    md.push_str("## Model details\n\n| | |\n|---|---|\n");
    let row = |md: &mut String, k: &str, v: String| {
        md.push_str(&format!(
            "| {k} | {} |\n",
            v.replace('|', "\\|").replace('\n', " ")
        ))
    };
    row(&mut md, "Name", run.name());
    row(
        &mut md,
        "Task",
        spec["data"]["task"].as_str().unwrap_or("?").to_string(),
    );
    row(&mut md, "Architecture", run.architecture());
    row(&mut md, "Parameters", run.parameters.to_string());
    for sub in &b.subjects {
        row(
            &mut md,
            &format!("Subject `{}`", sub.name),
            format!("sha256 `{}`", sub.sha256),
        );
    }
    row(
        &mut md,
        "Manifest",
        format!("`{}` sha256 `{}`", b.manifest, b.manifest_sha256),
    );
    row(
        &mut md,
        "Signed by",
        if run.signers.is_empty() {
            "nobody (unsigned)".into()
        } else if run.signers_verified {
            format!(
                "{} (verified against the trusted keys given to export)",
                run.signers.join(", ")
            )
        } else {
            format!(
                "{} (claimed: not checked against trusted keys)",
                run.signers.join(", ")
            )
        },
    );
    row(
        &mut md,
        "Anchored",
        run.anchor.as_ref().map_or("no".into(), |r| {
            let mut parts = Vec::new();
            if let Some(e) = &r.evm {
                parts.push(format!(
                    "{} block {} ({}), tx `{}`",
                    e.chain,
                    e.block_number,
                    manifest::format_unix(e.block_timestamp),
                    e.tx_hash
                ));
            }
            if let Some(o) = &r.ots {
                parts.push(format!("OpenTimestamps ({})", o.status));
            }
            format!(
                "{} (claimed by the receipt; `auditai verify --rpc` checks it)",
                parts.join("; ")
            )
        }),
    );
    let m = &run.statement.predicate.run_details.metadata;
    row(
        &mut md,
        "Trained",
        format!("{} to {}", m.started_on, m.finished_on),
    );
    row(
        &mut md,
        "Compute",
        format!(
            "{} ({}), {:.1} s of training over {} epochs",
            s["device"].as_str().unwrap_or("?"),
            s["adapter"].as_str().unwrap_or("?"),
            run.wall_seconds(),
            s["epochs_run"]
        ),
    );
    md.push_str("\n## Intended use *(human)*\n\n");
    md.push_str(&format!(
        "{}\n",
        card.intended_use
            .as_deref()
            .unwrap_or("Not stated in the spec's `card:` section.")
    ));
    list(&mut md, "Out-of-scope uses *(human)*", &card.out_of_scope);
    let owners: Vec<String> = card
        .owners
        .iter()
        .map(|o| match &o.contact {
            Some(c) => format!("{} ({c})", o.name),
            None => o.name.clone(),
        })
        .collect();
    list(&mut md, "Owners *(human)*", &owners);
    md.push_str("\n## Training data\n\n| | |\n|---|---|\n");
    if let Some(d) = run.data() {
        row(
            &mut md,
            "File",
            format!("`{}`", d.name.as_deref().unwrap_or("?")),
        );
        row(
            &mut md,
            "sha256",
            format!("`{}`", d.digest.get("sha256").map_or("?", String::as_str)),
        );
    }
    let r = &s["rows"];
    row(
        &mut md,
        "Rows",
        format!(
            "{} (train {}, validation {}, test {})",
            r["total"], r["train"], r["validation"], r["test"]
        ),
    );
    row(
        &mut md,
        "Split",
        format!(
            "{} (seeded by the run's seed {})",
            spec["data"]["split"], spec["seed"]
        ),
    );
    row(
        &mut md,
        "Label",
        run.preprocessing["label"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
    );
    row(
        &mut md,
        "Features",
        run.preprocessing["features"]
            .as_array()
            .map_or(0, Vec::len)
            .to_string()
            + ": "
            + &join_str(&run.preprocessing["features"]),
    );
    if let Some(bal) = &run.class_balance {
        let v: Vec<String> = bal.iter().map(|(k, n)| format!("{k} {n}")).collect();
        row(&mut md, "Class balance", v.join(", "));
    }
    md.push_str("\n## Preprocessing\n\n");
    md.push_str(&format!(
        "Features are normalised `{}` (offset and scale fitted on the training rows, recorded in `preprocessing.json`); classes: {}.\n",
        run.preprocessing["normalize"].as_str().unwrap_or("?"),
        join_str(&run.preprocessing["classes"])
    ));
    md.push_str("\n## Hyper-parameters\n\n```json\n");
    md.push_str(
        &serde_json::to_string_pretty(
            &json!({ "seed": spec["seed"], "model": spec["model"], "training": spec["training"] }),
        )
        .unwrap_or_default(),
    );
    md.push_str("\n```\n\n## Evaluation\n\n");
    md.push_str(&format!(
        "Held-out ({} split) metrics from training:\n\n",
        s["held_out"].as_str().unwrap_or("?")
    ));
    for (k, v) in run.held_out_metrics() {
        md.push_str(&format!("- {k}: {v:.4}\n"));
    }
    for e in &run.evaluations {
        md.push_str(&format!(
            "\nEvaluation on `{}` ({} rows, {}): verdict **{}**; pre-registration: {}.\n\n",
            e.data.name, e.data.rows, e.started_on, e.verdict, e.pre_registration.status
        ));
        for r in e.criteria.iter().flat_map(|c| &c.results) {
            md.push_str(&format!(
                "- {}: {}{}\n",
                r.criterion,
                if r.passed { "pass" } else { "FAIL" },
                r.value.map_or(String::new(), |v| format!(" ({v:.4})"))
            ));
        }
        for g in &e.subgroups {
            md.push_str(&format!(
                "- subgroup {}={}: {} rows{}{}\n",
                g.column,
                g.value,
                g.metrics.rows,
                g.metrics
                    .accuracy
                    .map_or(String::new(), |a| format!(", accuracy {a:.4}")),
                if g.too_small {
                    " (too small to judge)"
                } else {
                    ""
                }
            ));
        }
    }
    list(&mut md, "Limitations *(human)*", &card.limitations);
    list(
        &mut md,
        "Ethical considerations *(human)*",
        &card.ethical_considerations,
    );
    md
}

fn join_str(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn list(md: &mut String, title: &str, items: &[String]) {
    md.push_str(&format!("\n## {title}\n\n"));
    if items.is_empty() {
        md.push_str("Not stated in the spec's `card:` section.\n");
    }
    for i in items {
        md.push_str(&format!("- {i}\n"));
    }
}

/// The CycloneDX 1.6 ML-BOM.
pub fn cyclonedx(run: &Run, out: &Path) -> Value {
    let b = run.binding(out);
    let spec = run.spec();
    let hashes = |d: &ResourceDescriptor| {
        let mut h = Vec::new();
        if let Some(s) = d.digest.get("sha256") {
            h.push(json!({ "alg": "SHA-256", "content": s }));
        }
        if let Some(s) = d.digest.get("blake3") {
            h.push(json!({ "alg": "BLAKE3", "content": s }));
        }
        h
    };
    let weights = run
        .statement
        .subject
        .iter()
        .find(|s| s.name.as_deref() == Some(run_dir::MODEL_SAFETENSORS));
    let metrics: Vec<Value> = run
        .held_out_metrics()
        .into_iter()
        .map(|(k, v)| json!({ "type": k, "value": format!("{v}"), "slice": format!("{} split", run.summary["held_out"].as_str().unwrap_or("held-out")) }))
        .chain(run.evaluations.iter().flat_map(|e| {
            e.overall.accuracy.map(|a| json!({ "type": "accuracy", "value": format!("{a}"), "slice": format!("evaluation on {}", e.data.name) }))
        }))
        .collect();
    let card = &run.card;
    let mut considerations = serde_json::Map::new();
    if let Some(u) = &card.intended_use {
        considerations.insert("useCases".into(), json!([u]));
    }
    if !card.limitations.is_empty() {
        considerations.insert("technicalLimitations".into(), json!(card.limitations));
    }
    if !card.ethical_considerations.is_empty() {
        considerations.insert(
            "ethicalConsiderations".into(),
            Value::Array(
                card.ethical_considerations
                    .iter()
                    .map(|e| json!({ "name": e }))
                    .collect(),
            ),
        );
    }
    let task = spec["data"]["task"].as_str().unwrap_or("classification");
    let mut model_card = json!({
        "modelParameters": {
            "approach": { "type": "supervised" },
            "task": task,
            "architectureFamily": spec["model"]["type"].as_str().unwrap_or("mlp"),
            "modelArchitecture": run.architecture(),
            "datasets": [ { "ref": "training-data" } ],
            "inputs": [ { "format": format!("{} numeric features: {}", run.preprocessing["features"].as_array().map_or(0, Vec::len), join_str(&run.preprocessing["features"])) } ],
            "outputs": [ { "format": if task == "classification" { format!("class probabilities: {}", join_str(&run.preprocessing["classes"])) } else { "a number".to_string() } } ]
        },
        "quantitativeAnalysis": { "performanceMetrics": metrics }
    });
    if !considerations.is_empty() {
        model_card["considerations"] = Value::Object(considerations);
    }
    let mut component = json!({
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": run.name(),
        "hashes": weights.map(hashes).unwrap_or_default(),
        "modelCard": model_card,
        "properties": [
            { "name": BOM_MANIFEST_PROPERTY, "value": b.manifest_sha256 },
            { "name": "auditai:manifest", "value": b.manifest },
            { "name": "auditai:parameters", "value": run.parameters.to_string() },
            { "name": "auditai:signers", "value": run.signers.join(",") }
        ]
    });
    for s in &b.subjects {
        if let Some(p) = component["properties"].as_array_mut() {
            p.push(json!({ "name": format!("auditai:subject:{}", s.name), "value": s.sha256 }));
        }
    }
    if !card.owners.is_empty() {
        component["authors"] = Value::Array(
            card.owners
                .iter()
                .map(|o| {
                    let mut a = json!({ "name": o.name });
                    if let Some(c) = &o.contact {
                        a["email"] = json!(c);
                    }
                    a
                })
                .collect(),
        );
    }
    let data = run.data();
    let data_component = json!({
        "type": "data",
        "bom-ref": "training-data",
        "name": data.and_then(|d| d.name.clone()).unwrap_or_else(|| "training data".into()),
        "hashes": data.map(hashes).unwrap_or_default(),
        "data": [ {
            "type": "dataset",
            "name": data.and_then(|d| d.name.clone()).unwrap_or_else(|| "training data".into()),
            "contents": { "properties": [
                { "name": "rows", "value": run.summary["rows"]["total"].to_string() },
                { "name": "label", "value": run.preprocessing["label"].as_str().unwrap_or("?") }
            ] }
        } ]
    });
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", manifest::invocation_id()),
        "version": 1,
        "metadata": {
            "timestamp": manifest::now_rfc3339(),
            "tools": { "components": [ { "type": "application", "name": "auditai", "version": env!("CARGO_PKG_VERSION") } ] },
            "component": component
        },
        "components": [ data_component ],
        "dependencies": [ { "ref": "model", "dependsOn": ["training-data"] }, { "ref": "training-data" } ]
    })
}

/// The binding a document carries: a model card's marker comment, or a BOM's properties.
pub fn binding_of(bytes: &[u8]) -> Option<Binding> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Some(rest) = text.strip_prefix(CARD_MARKER) {
        let json = rest.split(" -->").next()?;
        return serde_json::from_str(json).ok();
    }
    let v: Value = serde_json::from_str(text).ok()?;
    if v["bomFormat"] != "CycloneDX" {
        return None;
    }
    let props = v["metadata"]["component"]["properties"].as_array()?;
    let get = |n: &str| {
        props
            .iter()
            .find(|p| p["name"] == n)
            .and_then(|p| p["value"].as_str())
            .map(str::to_string)
    };
    let subjects = props
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?.strip_prefix("auditai:subject:")?;
            Some(Subject {
                name: name.to_string(),
                sha256: p["value"].as_str()?.to_string(),
            })
        })
        .collect();
    Some(Binding {
        manifest: get("auditai:manifest")?,
        manifest_sha256: get(BOM_MANIFEST_PROPERTY)?,
        subjects,
    })
}

/// Check a document's binding against the manifest it names (relative to the document's
/// directory): the manifest's sha256, and each subject's sha256 equal to the manifest's.
pub fn check_binding(doc: &Path, b: &Binding) -> Result<String, String> {
    let dir = crate::verify::run_dir_of(doc);
    let path = crate::fsio::recorded(dir, &b.manifest).map_err(|e| e.to_string())?;
    let bytes = crate::fsio::read_bounded(&path, crate::fsio::MAX_DOCUMENT)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let sha = crate::hash::sha256_hex(&bytes);
    if !crate::hash::hex_eq(&sha, &b.manifest_sha256) {
        return Err(format!(
            "{} is another manifest (sha256 {sha}; the document describes {})",
            path.display(),
            b.manifest_sha256
        ));
    }
    let st = manifest::open(&bytes).map_err(|e| e.to_string())?.statement;
    for s in &b.subjects {
        let theirs = st
            .subject
            .iter()
            .find(|x| x.name.as_deref() == Some(s.name.as_str()))
            .and_then(|x| x.digest.get("sha256"));
        if !theirs.is_some_and(|t| crate::hash::hex_eq(t, &s.sha256)) {
            return Err(format!("subject {} is not the run's", s.name));
        }
    }
    if b.subjects.len() != st.subject.len() {
        return Err("the document does not name every subject of the run".into());
    }
    Ok(format!(
        "describes {} (sha256 {}) and its {} subject(s)",
        b.manifest,
        b.manifest_sha256,
        b.subjects.len()
    ))
}
