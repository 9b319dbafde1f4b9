//! Input rows: which CSV column feeds which model feature (by name), the id, label and subgroup
//! columns, the normalisation of one row, and a row's digest.

use super::Preprocessing;

/// Where each needed value sits in an input row.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The column of each model feature, in the model's feature order.
    pub features: Vec<usize>,
    /// The id column, when the input has one.
    pub id: Option<usize>,
    /// The label column (`eval`).
    pub label: Option<usize>,
    /// Subgroup columns (`eval --by`), by name.
    pub by: Vec<(String, usize)>,
    /// Input columns nothing uses.
    pub ignored: Vec<String>,
}

impl Columns {
    /// Match `header` against the model's features (and, when given, the label, the id and the
    /// subgroup columns). Missing features or columns are an error naming all of them.
    pub fn match_header(
        header: &csv::StringRecord,
        pre: &Preprocessing,
        id: Option<&str>,
        need_label: bool,
        by: &[String],
    ) -> Result<Columns, String> {
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        let find = |n: &str| names.iter().position(|h| *h == n);
        let mut missing: Vec<&str> = Vec::new();
        let mut features = Vec::with_capacity(pre.features.len());
        for f in &pre.features {
            match find(f) {
                Some(i) => features.push(i),
                None => missing.push(f),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "the input lacks {} of the model's features: {}",
                missing.len(),
                missing.join(", ")
            ));
        }
        let label = find(&pre.label).filter(|_| need_label);
        if need_label && label.is_none() {
            return Err(format!("the input lacks the label column `{}`", pre.label));
        }
        let id = match id {
            Some(name) => Some(find(name).ok_or_else(|| format!("no id column `{name}`"))?),
            None => find("id"),
        };
        let mut by_cols = Vec::new();
        for b in by {
            let i = find(b).ok_or_else(|| format!("no subgroup column `{b}` (--by)"))?;
            by_cols.push((b.clone(), i));
        }
        let used: Vec<usize> = features
            .iter()
            .copied()
            .chain(id)
            .chain(label)
            .chain(by_cols.iter().map(|(_, i)| *i))
            .collect();
        let ignored = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, n)| (*n).to_string())
            .collect();
        Ok(Columns {
            features,
            id,
            label,
            by: by_cols,
            ignored,
        })
    }
}

/// Why a row could not be used.
#[derive(Debug, Clone)]
pub struct RowError {
    /// The column.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

/// Parse one row's features (raw values into `raw`, normalised values into `out`, both in the
/// model's feature order).
pub fn parse_row(
    record: &csv::StringRecord,
    cols: &Columns,
    pre: &Preprocessing,
    raw: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> Result<(), RowError> {
    raw.clear();
    for (k, &i) in cols.features.iter().enumerate() {
        let name = &pre.features[k];
        let text = record.get(i).map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Err(RowError {
                column: name.clone(),
                message: "empty value".into(),
            });
        }
        let v: f32 = text.parse().map_err(|_| RowError {
            column: name.clone(),
            message: format!("`{}` is not a number", shorten(text)),
        })?;
        if !v.is_finite() {
            return Err(RowError {
                column: name.clone(),
                message: format!("`{}` is not a finite number", shorten(text)),
            });
        }
        raw.push(v);
    }
    out.extend(
        raw.iter()
            .zip(pre.offset.iter().zip(&pre.scale))
            .map(|(v, (o, s))| (v - o) / s),
    );
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A row's label as the leakage check compares it.
#[derive(Debug, Clone, Copy)]
pub enum Label<'a> {
    /// A class name (compared as text, trimmed).
    Class(&'a str),
    /// A regression target: compared as its parsed value, so `0.2`, `0.20` and `2e-1` are one
    /// value; text that is not a number is compared as text.
    Value(&'a str),
}

/// The digest of a row: blake3 over its feature values (f32, little-endian, in the model's
/// feature order) and, when given, its label (after a 0xff separator). Column order and number
/// spelling (`1` vs `1.0`, in features and regression labels) do not change it.
pub fn row_digest(raw: &[f32], label: Option<Label<'_>>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for v in raw {
        h.update(&v.to_le_bytes());
    }
    match label {
        None => {}
        Some(Label::Value(l)) if l.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
            let v = l.trim().parse::<f64>().unwrap_or_default();
            h.update(&[0xfe]);
            h.update(&(v + 0.0).to_le_bytes());
        }
        Some(Label::Class(l) | Label::Value(l)) => {
            h.update(&[0xff]);
            h.update(l.trim().as_bytes());
        }
    }
    *h.finalize().as_bytes()
}

/// The longest input line read (a row longer than this is an error, not an allocation).
pub const MAX_LINE: usize = 1 << 20;

/// A reader that fails once a line grows past [`MAX_LINE`] bytes, so that a hostile input
/// without newlines cannot make the CSV reader buffer it whole.
pub struct LineLimit<R> {
    inner: R,
    since_newline: usize,
}

impl<R> LineLimit<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> LineLimit<R> {
        LineLimit {
            inner,
            since_newline: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.since_newline = 0;
            } else {
                self.since_newline += 1;
                if self.since_newline > MAX_LINE {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a line longer than {MAX_LINE} bytes"),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_labels_compare_by_value_not_spelling() {
        let raw = [1.0f32, 2.0];
        let d = |l| row_digest(&raw, Some(Label::Value(l)));
        assert_eq!(d("0.2"), d("0.20"));
        assert_eq!(d("0.2"), d("2e-1"));
        assert_eq!(d("0"), d("-0.0"));
        assert_ne!(d("0.2"), d("0.3"));
        let c = |l| row_digest(&raw, Some(Label::Class(l)));
        assert_ne!(c("1"), c("1.0"), "class names are names");
    }
}
