//! Comparing two versions of a JSON or CSV out value by value: which numbers differ, by how
//! much relatively, and whether every difference is within a relative tolerance (a
//! multi-threaded BLAS summing in another order changes the 16th digit, not the result).
//!
//! Owns the value walk; reads the two files (bounded), writes nothing.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// Largest file compared value by value.
const MAX_BYTES: u64 = 64 << 20;
/// Most differing values kept for the report.
const MAX_SHOWN: usize = 20;

/// One value that differs.
#[derive(Debug, Clone, Serialize)]
pub struct ValueDiff {
    /// Where: a JSON path (`$.a[2].b`) or `row R, column C`.
    pub at: String,
    /// The recorded out's value.
    pub recorded: String,
    /// The rerun's value.
    pub rerun: String,
}

/// How two versions of one out compare value by value.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// How many values differ (numbers and anything else).
    pub differing: usize,
    /// The largest relative difference between two numbers (0 when none differ).
    pub max_relative: f64,
    /// Whether something other than a number differs (text, shape, a missing key or row).
    pub structural: bool,
    /// The first differing values.
    pub values: Vec<ValueDiff>,
}

impl Comparison {
    fn new() -> Comparison {
        Comparison {
            differing: 0,
            max_relative: 0.0,
            structural: false,
            values: Vec::new(),
        }
    }

    /// Whether every difference is a number within `rtol` relatively.
    pub fn within(&self, rtol: f64) -> bool {
        !self.structural && self.max_relative <= rtol
    }

    fn push(&mut self, at: String, recorded: String, rerun: String, relative: Option<f64>) {
        self.differing += 1;
        match relative {
            Some(r) => self.max_relative = self.max_relative.max(r),
            None => self.structural = true,
        }
        if self.values.len() < MAX_SHOWN {
            self.values.push(ValueDiff {
                at,
                recorded,
                rerun,
            });
        }
    }

    fn numbers(&mut self, at: impl FnOnce() -> String, a: f64, b: f64) {
        if a == b || (a.is_nan() && b.is_nan()) {
            return;
        }
        let scale = a.abs().max(b.abs());
        let rel = if scale.is_finite() && scale > 0.0 {
            (a - b).abs() / scale
        } else {
            f64::INFINITY
        };
        self.push(at(), a.to_string(), b.to_string(), Some(rel));
    }
}

/// Compare `recorded` and `rerun` value by value when both are JSON (`.json`) or CSV/TSV
/// (`.csv`, `.tsv`); `None` for other files or ones that do not parse.
pub fn compare(recorded: &Path, rerun: &Path) -> Option<Comparison> {
    let ext = recorded
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)?;
    let a = crate::fsio::read_bounded(recorded, MAX_BYTES).ok()?;
    let b = crate::fsio::read_bounded(rerun, MAX_BYTES).ok()?;
    match ext.as_str() {
        "json" => {
            let (a, b): (Value, Value) = (
                serde_json::from_slice(&a).ok()?,
                serde_json::from_slice(&b).ok()?,
            );
            let mut c = Comparison::new();
            json(&mut c, "$".into(), &a, &b);
            Some(c)
        }
        "csv" | "tsv" => csv(&a, &b),
        _ => None,
    }
}

fn json(c: &mut Comparison, at: String, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) {
                c.numbers(|| at, x, y);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => json(c, format!("{at}.{k}"), v, w),
                    None => c.push(format!("{at}.{k}"), v.to_string(), "-".into(), None),
                }
            }
            for (k, w) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                c.push(format!("{at}.{k}"), "-".into(), w.to_string(), None);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                json(c, format!("{at}[{i}]"), v, w);
            }
        }
        _ if a == b => {}
        _ => c.push(at, short(&a.to_string()), short(&b.to_string()), None),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

fn csv(a: &[u8], b: &[u8]) -> Option<Comparison> {
    let read = |bytes: &[u8]| -> Option<Vec<csv::StringRecord>> {
        let delim = crate::data::table::sniff(bytes).byte();
        csv::ReaderBuilder::new()
            .delimiter(delim)
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes)
            .records()
            .collect::<Result<_, _>>()
            .ok()
    };
    let (ra, rb) = (read(a)?, read(b)?);
    let header = ra.first().cloned().unwrap_or_default();
    let mut c = Comparison::new();
    for (r, (x, y)) in ra.iter().zip(&rb).enumerate() {
        for k in 0..x.len().max(y.len()) {
            let (u, v) = (x.get(k).unwrap_or(""), y.get(k).unwrap_or(""));
            if u == v {
                continue;
            }
            let col = header
                .get(k)
                .filter(|_| r > 0)
                .map_or_else(|| (k + 1).to_string(), str::to_string);
            let at = || format!("row {}, column {col}", r + 1);
            match (u.trim().parse::<f64>(), v.trim().parse::<f64>()) {
                (Ok(p), Ok(q)) => c.numbers(at, p, q),
                _ => c.push(at(), short(u), short(v), None),
            }
        }
    }
    if ra.len() != rb.len() {
        c.push(
            "rows".into(),
            ra.len().to_string(),
            rb.len().to_string(),
            None,
        );
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(name: &str, a: &str, b: &str) -> Comparison {
        let d = tempfile::tempdir().unwrap();
        let (pa, pb) = (
            d.path().join(format!("a.{name}")),
            d.path().join(format!("b.{name}")),
        );
        std::fs::write(&pa, a).unwrap();
        std::fs::write(&pb, b).unwrap();
        compare(&pa, &pb).unwrap()
    }

    #[test]
    fn json_and_csv_within_and_beyond_a_tolerance() {
        let c = cmp(
            "json",
            r#"{"acc": 0.1, "n": [1, 2]}"#,
            r#"{"acc": 0.10000000000000002, "n": [1, 2]}"#,
        );
        assert_eq!(c.differing, 1);
        assert!(c.within(1e-9) && !c.within(1e-18));
        assert_eq!(c.values[0].at, "$.acc");
        let c = cmp("json", r#"{"a": "x"}"#, r#"{"a": "y", "b": 1}"#);
        assert!(c.structural && !c.within(1.0));
        let c = cmp("csv", "x,y\n1.0,a\n2.5,b\n", "x,y\n1.0000001,a\n2.5,b\n");
        assert_eq!(c.values[0].at, "row 2, column x");
        assert!(c.within(1e-6) && !c.within(1e-9));
        let c = cmp("csv", "x\n1\n", "x\n1\n2\n");
        assert!(c.structural);
    }
}
