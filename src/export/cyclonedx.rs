//! The CycloneDX 1.6 ML-BOM: a `machine-learning-model` component with its model card and the
//! training data as a `data` component, sealed to the run by [`super::binding::seal_bom`].

use std::path::Path;

use serde_json::{Value, json};

use super::Run;
use super::card::join_str;
use crate::manifest::{self, ResourceDescriptor};
use crate::run_dir;

/// The CycloneDX 1.6 ML-BOM for the document written to `out`, sealed to the run.
pub fn cyclonedx(run: &Run, out: &Path) -> Value {
    let b = run.binding(out);
    let weights = run
        .statement
        .subject
        .iter()
        .find(|s| s.name.as_deref() == Some(run_dir::MODEL_SAFETENSORS));
    let model_card = model_card(run);
    let mut component = json!({
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": run.name(),
        "hashes": weights.map(hashes).unwrap_or_default(),
        "modelCard": model_card,
        "properties": []
    });
    let mut props = super::binding::bom_properties(&b);
    props.push(json!({ "name": "auditai:parameters", "value": run.parameters.to_string() }));
    props.push(json!({ "name": "auditai:signers", "value": run.signers.join(",") }));
    component["properties"] = Value::Array(props);
    let card = &run.card;
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
    super::binding::seal_bom(json!({
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
    }))
}

/// A resource's digests as CycloneDX hashes.
fn hashes(d: &ResourceDescriptor) -> Vec<Value> {
    let mut h = Vec::new();
    if let Some(s) = d.digest.get("sha256") {
        h.push(json!({ "alg": "SHA-256", "content": s }));
    }
    if let Some(s) = d.digest.get("blake3") {
        h.push(json!({ "alg": "BLAKE3", "content": s }));
    }
    h
}

/// The component's `modelCard`: parameters, metrics and the human considerations.
fn model_card(run: &Run) -> Value {
    let spec = run.spec();
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
    model_card
}
