//! How an exported document is bound to its run: which manifest (by sha256) and which subjects it
//! describes, and a digest of the document's whole body, so that an edited metric, an added
//! claim or a swapped model is caught by `auditai verify`.
//!
//! A model card's first line is `<!-- auditai-model-card/v1 {binding} -->`; its binding carries
//! `bodySha256`, the sha256 of every byte after that line. A CycloneDX BOM carries the binding as
//! component properties, and `auditai:body-sha256` is the sha256 of the BOM's canonical JSON
//! (keys sorted, no whitespace) with that one property removed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::trust::CARD_MARKER;
use crate::trust::DocumentKind;

/// The BOM property naming the manifest's sha256.
pub const BOM_MANIFEST_PROPERTY: &str = "auditai:manifest-sha256";
/// The BOM property naming the manifest's path.
pub const BOM_MANIFEST_PATH_PROPERTY: &str = "auditai:manifest";
/// The BOM property sealing the rest of the BOM.
pub const BOM_BODY_PROPERTY: &str = "auditai:body-sha256";
/// The prefix of the BOM properties naming a subject.
const BOM_SUBJECT_PREFIX: &str = "auditai:subject:";

/// The binding a document carries: which manifest and which subjects it describes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// The manifest, relative to the document's directory.
    pub manifest: String,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// The subjects (name and sha256).
    pub subjects: Vec<Subject>,
    /// sha256 of the document's body (cards); absent in documents from before bodies were
    /// sealed, which `verify` refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// One subject of a binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// File name.
    pub name: String,
    /// sha256, hex.
    pub sha256: String,
}

/// A document's binding as read back, and whether its body is the one the binding seals.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    /// Model card or ML-BOM.
    pub kind: DocumentKind,
    /// The binding.
    pub binding: Binding,
    /// Whether the body's digest is the sealed one (false: edited after export, or never
    /// sealed).
    pub body_intact: bool,
}

/// A model card: the binding line, sealing `body`, then `body`.
pub fn seal_card(mut binding: Binding, body: &str) -> String {
    binding.body_sha256 = Some(crate::hash::sha256_hex(body.as_bytes()));
    format!(
        "{CARD_MARKER}{} -->\n{body}",
        serde_json::to_string(&binding).unwrap_or_default()
    )
}

/// A BOM with its body property (re)computed over everything else.
pub fn seal_bom(mut bom: Value) -> Value {
    let digest = bom_body_digest(&mut bom);
    if let Some(props) = bom
        .pointer_mut("/metadata/component/properties")
        .and_then(Value::as_array_mut)
    {
        props.push(json!({ "name": BOM_BODY_PROPERTY, "value": digest }));
    }
    bom
}

/// Remove the body property from `bom` and return the digest of what is left, canonical.
fn bom_body_digest(bom: &mut Value) -> String {
    if let Some(props) = bom
        .pointer_mut("/metadata/component/properties")
        .and_then(Value::as_array_mut)
    {
        props.retain(|p| p["name"] != BOM_BODY_PROPERTY);
    }
    crate::hash::sha256_hex(&serde_json::to_vec(bom).unwrap_or_default())
}

/// The binding of a document auditai exported, or `None` when it carries none.
pub fn open(bytes: &[u8]) -> Option<Sealed> {
    if let Some(rest) = bytes.strip_prefix(CARD_MARKER.as_bytes()) {
        return open_card(rest);
    }
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    if v["bomFormat"] != "CycloneDX" {
        return None;
    }
    let props = v["metadata"]["component"]["properties"].as_array()?.clone();
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
            let name = p["name"].as_str()?.strip_prefix(BOM_SUBJECT_PREFIX)?;
            Some(Subject {
                name: name.to_string(),
                sha256: p["value"].as_str()?.to_string(),
            })
        })
        .collect();
    let sealed = get(BOM_BODY_PROPERTY);
    let actual = bom_body_digest(&mut v);
    Some(Sealed {
        kind: DocumentKind::MlBom,
        body_intact: sealed.is_some_and(|s| crate::hash::hex_eq(&s, &actual)),
        binding: Binding {
            manifest: get(BOM_MANIFEST_PATH_PROPERTY)?,
            manifest_sha256: get(BOM_MANIFEST_PROPERTY)?,
            subjects,
            body_sha256: None,
        },
    })
}

/// A card's binding line (after the marker) and body.
fn open_card(rest: &[u8]) -> Option<Sealed> {
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Binding>();
    let binding = stream.next()?.ok()?;
    let after = &rest[stream.byte_offset()..];
    let body = after.strip_prefix(b" -->\n")?;
    let actual = crate::hash::sha256_hex(body);
    Some(Sealed {
        kind: DocumentKind::ModelCard,
        body_intact: binding
            .body_sha256
            .as_deref()
            .is_some_and(|s| crate::hash::hex_eq(s, &actual)),
        binding,
    })
}

/// The binding's properties in a BOM component.
pub fn bom_properties(b: &Binding) -> Vec<Value> {
    let mut props = vec![
        json!({ "name": BOM_MANIFEST_PROPERTY, "value": b.manifest_sha256 }),
        json!({ "name": BOM_MANIFEST_PATH_PROPERTY, "value": b.manifest }),
    ];
    for s in &b.subjects {
        props.push(json!({ "name": format!("{BOM_SUBJECT_PREFIX}{}", s.name), "value": s.sha256 }));
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            manifest: "r/manifest.intoto.json".into(),
            manifest_sha256: "ab".repeat(32),
            subjects: vec![Subject {
                name: "model.bpk".into(),
                sha256: "cd".repeat(32),
            }],
            body_sha256: None,
        }
    }

    #[test]
    fn a_card_seals_its_whole_body() {
        let card = seal_card(binding(), "# Model card\n\naccuracy 0.95\n");
        let s = open(card.as_bytes()).unwrap();
        assert!(s.body_intact);
        assert_eq!(s.binding.manifest, "r/manifest.intoto.json");
        let edited = card.replace("0.95", "0.99");
        assert!(!open(edited.as_bytes()).unwrap().body_intact);
        let added = format!("{card}- claim: approved by the FDA\n");
        assert!(!open(added.as_bytes()).unwrap().body_intact);
    }

    #[test]
    fn a_bom_seals_everything_but_its_seal() {
        let mut props = bom_properties(&binding());
        props.push(json!({ "name": "auditai:parameters", "value": "10" }));
        let bom = seal_bom(json!({
            "bomFormat": "CycloneDX",
            "metadata": { "component": { "name": "m", "properties": props } },
            "components": [ { "name": "data" } ]
        }));
        let bytes = serde_json::to_vec_pretty(&bom).unwrap();
        let s = open(&bytes).unwrap();
        assert!(s.body_intact);
        assert_eq!(s.binding.subjects.len(), 1);
        let mut edited = bom.clone();
        edited["components"][0]["name"] = json!("other data");
        assert!(
            !open(&serde_json::to_vec(&edited).unwrap())
                .unwrap()
                .body_intact
        );
    }
}
