//! Parameter files as DVC reads them: `params.yaml` (and any YAML, JSON or TOML file a spec
//! names in `vars:` or a stage's `params:`), read once per spec, bounded in size.
//!
//! Owns reading and caching those files and looking up dotted keys in them. Reads files, writes
//! nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The default parameter file, read when it exists (as `dvc` does).
pub const DEFAULT_FILE: &str = "params.yaml";
/// Largest parameter file read.
const MAX_BYTES: u64 = 16 << 20;
/// Most bytes of param values all the stages of one pipeline may record together.
const MAX_CHOSEN: usize = 256 << 20;

/// The parameter files one spec reads, by path relative to the spec's directory.
#[derive(Debug)]
pub(super) struct ParamFiles {
    base: PathBuf,
    cache: RefCell<BTreeMap<String, Option<Value>>>,
    chosen: std::cell::Cell<usize>,
}

impl ParamFiles {
    pub(super) fn new(base: &Path) -> ParamFiles {
        ParamFiles {
            base: base.to_path_buf(),
            cache: RefCell::new(BTreeMap::new()),
            chosen: std::cell::Cell::new(0),
        }
    }

    /// Count a param value a stage records; an error once the pipeline's stages record more
    /// than 256 MiB of values together.
    pub(super) fn charge(&self, v: &Value) -> Result<(), String> {
        self.charge_bytes(v.to_string().len())
    }

    fn charge_bytes(&self, bytes: usize) -> Result<(), String> {
        let total = self.chosen.get().saturating_add(bytes);
        self.chosen.set(total);
        if total > MAX_CHOSEN {
            return Err("the stages' params add up to more than 256 MiB".into());
        }
        Ok(())
    }

    /// The file at `rel` (relative to the spec's directory): `Ok(None)` when it does not exist,
    /// an error naming the file when it cannot be read or parsed.
    pub(super) fn get(&self, rel: &str) -> Result<Option<Value>, String> {
        if let Some(v) = self.cache.borrow().get(rel) {
            return Ok(v.clone());
        }
        let path = self.base.join(rel);
        let value = read(&path)?;
        self.cache
            .borrow_mut()
            .insert(rel.to_string(), value.clone());
        Ok(value)
    }
}

/// Read and parse one parameter file by its extension (YAML unless `.json` or `.toml`).
fn read(path: &Path) -> Result<Option<Value>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{}: a parameter file is at most 16 MiB",
            path.display()
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let parsed: Result<Value, String> = match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        "toml" => toml::from_str(&text).map_err(|e| e.to_string().replace('\n', " ")),
        _ if text.trim().is_empty() => Ok(Value::Object(Default::default())),
        _ => serde_saphyr::from_str(&text).map_err(|e| e.without_snippet().to_string()),
    };
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => Err(format!(
            "{}: a parameter file must hold a mapping of names to values",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The value at a dotted key (`train.lr`) of a mapping.
pub fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    let mut v = root;
    for part in key.split('.') {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

/// Every leaf of a mapping with its dotted key (lists and scalars are leaves), in key order.
pub fn leaves(root: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            other => out.push((prefix.to_string(), other)),
        }
    }
    let mut out = Vec::new();
    walk("", root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_json_toml_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), "a:\n  b: 3\n").unwrap();
        std::fs::write(dir.path().join("p.json"), "{\"a\": {\"b\": 4}}").unwrap();
        std::fs::write(dir.path().join("p.toml"), "[a]\nb = 5\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "- 1\n").unwrap();
        let files = ParamFiles::new(dir.path());
        for (f, want) in [("p.yaml", 3), ("p.json", 4), ("p.toml", 5)] {
            let v = files.get(f).unwrap().unwrap();
            assert_eq!(lookup(&v, "a.b"), Some(&Value::from(want)), "{f}");
        }
        assert_eq!(files.get("missing.yaml").unwrap(), None);
        assert!(files.charge(&Value::from(1)).is_ok());
        assert!(files.charge_bytes(255 << 20).is_ok());
        assert!(files.charge_bytes(1 << 20).is_err());
        let v = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": {}});
        let keys: Vec<String> = leaves(&v).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a.b", "a.c", "d"]);
        assert!(files.get("bad.yaml").unwrap_err().contains("mapping"));
    }
}
