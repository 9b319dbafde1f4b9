//! The CycloneDX 1.6 ML-BOM: a `machine-learning-model` component with its model card and the
//! training data as a `data` component, sealed to the run by [`super::binding::seal_bom`].

use std::path::Path;

use serde_json::{Value, json};

use super::Run;
use super::describe;
use crate::eval::metrics::Interval;
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
    let (data_component, mut raw) = data_components(run);
    raw.extend(source_components(run));
    let mut components = vec![data_component];
    let raw_refs: Vec<Value> = raw.iter().map(|c| c["bom-ref"].clone()).collect();
    components.extend(raw);
    let mut dependencies = vec![
        json!({ "ref": "model", "dependsOn": ["training-data"] }),
        json!({ "ref": "training-data", "dependsOn": raw_refs }),
    ];
    dependencies.extend(raw_refs.iter().map(|r| json!({ "ref": r })));
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
        "components": components,
        "dependencies": dependencies
    }))
}

/// The training data as a `data` component (with how it was made, for a pipeline), and the raw
/// files it was made from as components of their own.
fn data_components(run: &Run) -> (Value, Vec<Value>) {
    let data = run.data();
    let name = data
        .and_then(|d| d.name.clone())
        .unwrap_or_else(|| "training data".into());
    let mut contents = vec![
        json!({ "name": "rows", "value": run.summary["rows"]["total"].to_string() }),
        json!({ "name": "label", "value": run.preprocessing.label }),
    ];
    if let Some(sk) = run.skipped_rows() {
        contents.push(json!({ "name": "rows left out", "value": sk.count.to_string() }));
    }
    let mut component = json!({
        "type": "data",
        "bom-ref": "training-data",
        "name": name,
        "hashes": data.map(hashes).unwrap_or_default(),
        "data": [ { "type": "dataset", "name": name, "contents": { "properties": contents } } ]
    });
    let steps: Vec<Value> = run
        .lineage
        .iter()
        .map(|st| {
            let files = |v: &[(String, String)]| {
                v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            };
            json!({
                "name": format!("auditai:stage:{}", st.stage),
                "value": format!("{}; reads {}; writes {}", st.cmd.as_deref().unwrap_or("(training)"), files(&st.inputs), files(&st.outputs))
            })
        })
        .collect();
    if !steps.is_empty() {
        component["properties"] = Value::Array(steps);
    }
    let mut raw: Vec<Value> = Vec::new();
    for st in &run.lineage {
        for (n, b3) in st.inputs.iter().filter(|(n, _)| st.raw.contains(n)) {
            let r = format!("raw:{n}");
            if raw.iter().any(|c| c["bom-ref"] == r.as_str()) {
                continue;
            }
            raw.push(json!({
                "type": "data",
                "bom-ref": r,
                "name": n,
                "hashes": [ { "alg": "BLAKE3", "content": b3 } ],
                "data": [ { "type": "dataset", "name": n } ]
            }));
        }
    }
    (component, raw)
}

/// Each data source (`data.sources`) as a data component: its owner as the dataset's
/// governance owner, its licence, and its terms, rows and credit as properties.
fn source_components(run: &Run) -> Vec<Value> {
    run.sources()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut props = vec![
                json!({ "name": "auditai:rows", "value": format!("train {}, validation {}, test {}", s.rows.train, s.rows.validation, s.rows.test) }),
            ];
            if let Some(v) = s.credit {
                props.push(json!({ "name": "auditai:credit", "value": v.to_string() }));
            }
            let mut dataset = json!({ "type": "dataset", "name": s.name });
            let mut component = json!({
                "type": "data",
                "bom-ref": format!("source:{}", i + 1),
                "name": s.name,
            });
            match &s.commitment {
                Some(c) => props.push(json!({ "name": "auditai:withheld-commitment", "value": c })),
                None => {
                    let dep = run.statement.predicate.build_definition.resolved_dependencies.iter().find(|d| d.name.as_deref() == Some(s.name.as_str()));
                    component["hashes"] = Value::Array(dep.map(hashes).unwrap_or_default());
                }
            }
            if let Some(c) = &s.contribution {
                let owner = c.owner_name.clone().unwrap_or_else(|| c.owner.clone());
                dataset["governance"] = json!({ "owners": [ { "organization": { "name": owner } } ] });
                component["licenses"] = json!([ { "expression": c.terms.license } ]);
                props.extend([
                    json!({ "name": "auditai:owner-keyid", "value": c.owner }),
                    json!({ "name": "auditai:legal-basis", "value": c.terms.legal_basis }),
                    json!({ "name": "cawg.ai_training", "value": c.terms.permissions.ai_training.word() }),
                    json!({ "name": "cawg.ai_inference", "value": c.terms.permissions.ai_inference.word() }),
                    json!({ "name": "cawg.data_mining", "value": c.terms.permissions.data_mining.word() }),
                    json!({ "name": "auditai:jurisdictions", "value": c.terms.places() }),
                    json!({ "name": "auditai:expires", "value": c.terms.expires }),
                    json!({ "name": "auditai:contribution-sha256", "value": c.sha256 }),
                ]);
            }
            component["data"] = json!([dataset]);
            component["properties"] = Value::Array(props);
            component
        })
        .collect()
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

/// A performance metric with its interval.
fn metric(name: &str, v: f64, iv: Option<&Interval>, slice: &str) -> Value {
    let mut m = json!({ "type": name, "value": format!("{v}"), "slice": slice });
    if let Some(i) = iv {
        m["confidenceInterval"] =
            json!({ "lowerBound": format!("{}", i.lower), "upperBound": format!("{}", i.upper) });
    }
    m
}

/// Every metric of the run and its evaluations, with 95 % intervals.
fn performance_metrics(run: &Run) -> Vec<Value> {
    let split = describe::metrics_split(run);
    let intervals = describe::summary_intervals(run);
    let mut out: Vec<Value> = run
        .held_out_metrics()
        .into_iter()
        .map(|(k, v)| metric(&k, v, intervals.get(&k), &split))
        .collect();
    for e in &run.evaluations {
        let slice = format!("evaluation on {}", e.data.name);
        for (k, v) in e.overall.scalars() {
            out.push(metric(k, v, e.overall.intervals.get(k), &slice));
        }
        for g in &e.subgroups {
            let slice = format!("{slice}, subgroup {}={}", g.column, g.value);
            for (k, v) in g.metrics.scalars() {
                out.push(metric(k, v, g.metrics.intervals.get(k), &slice));
            }
        }
    }
    out
}

/// The component's `modelCard`: parameters, inputs, metrics and the human considerations.
fn model_card(run: &Run) -> Value {
    let spec = run.spec();
    let metrics = performance_metrics(run);
    let pre = &run.preprocessing;
    let inputs: Vec<Value> = describe::columns(pre)
        .into_iter()
        .map(|c| json!({ "format": format!("CSV column `{}` ({}): a missing cell becomes {}; encoded as {}", c.name, c.kind, c.gaps, c.encoding) }))
        .collect();
    let output = match &pre.classes {
        Some(classes) => format!("class probabilities: {}", classes.join(", ")),
        None => format!("a number in the units of `{}`", pre.label),
    };
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
            "inputs": inputs,
            "outputs": [ { "format": output } ]
        },
        "quantitativeAnalysis": { "performanceMetrics": metrics }
    });
    if !considerations.is_empty() {
        model_card["considerations"] = Value::Object(considerations);
    }
    model_card
}
