//! Input rows: which CSV column feeds which of the model's input columns (by name), the label,
//! kept and subgroup columns, and one row's cells in the model's order. The row's encoding and
//! digest are the fitted record's ([`Preprocessing::encode`], [`Preprocessing::row_digest`]), the
//! very functions training used.

use super::Preprocessing;

/// Where each needed value sits in an input row.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The CSV column of each of the model's input columns, in the record's column order.
    pub inputs: Vec<usize>,
    /// The id column, when the input has one.
    pub id: Option<usize>,
    /// Columns copied to the output (`--keep`), by name.
    pub keep: Vec<(String, usize)>,
    /// The label column (`eval`).
    pub label: Option<usize>,
    /// Subgroup columns (`eval --by`), by name.
    pub by: Vec<(String, usize)>,
    /// Input columns nothing uses.
    pub ignored: Vec<String>,
}

/// Why an input's header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// Input columns of the model are missing.
    #[error("the input lacks {} of the model's input columns: {}", .0.len(), .0.join(", "))]
    Inputs(Vec<String>),
    /// The label is missing (`eval`).
    #[error("the input lacks the label column `{0}`")]
    Label(String),
    /// A named column is missing.
    #[error("no {what} column `{name}`")]
    Named {
        /// `id`, `--keep`, `subgroup (--by)`.
        what: &'static str,
        /// The column.
        name: String,
    },
}

/// What a header must provide beyond the model's inputs.
#[derive(Debug, Clone, Default)]
pub struct Wanted<'a> {
    /// The id column (default: `id` when the input has one).
    pub id: Option<&'a str>,
    /// Columns to copy to the output.
    pub keep: &'a [String],
    /// Whether the label is needed.
    pub label: bool,
    /// Subgroup columns.
    pub by: &'a [String],
}

impl Columns {
    /// Match `header` against the model's input columns and what else is wanted. Missing
    /// columns are an error naming all of them.
    pub fn match_header(
        header: &csv::StringRecord,
        pre: &Preprocessing,
        want: &Wanted<'_>,
    ) -> Result<Columns, ColumnError> {
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        let find = |n: &str| names.iter().position(|h| *h == n);
        let mut missing = Vec::new();
        let mut inputs = Vec::with_capacity(pre.columns.len());
        for c in &pre.columns {
            match find(c.name()) {
                Some(i) => inputs.push(i),
                None => missing.push(c.name().to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(ColumnError::Inputs(missing));
        }
        let label = find(&pre.label).filter(|_| want.label);
        if want.label && label.is_none() {
            return Err(ColumnError::Label(pre.label.clone()));
        }
        let named = |what: &'static str, n: &str| {
            find(n).ok_or_else(|| ColumnError::Named {
                what,
                name: n.to_string(),
            })
        };
        let id = match want.id {
            Some(name) => Some(named("id", name)?),
            None => find("id"),
        };
        let keep = want
            .keep
            .iter()
            .map(|k| named("--keep", k).map(|i| (k.clone(), i)))
            .collect::<Result<Vec<_>, _>>()?;
        let by = want
            .by
            .iter()
            .map(|b| named("subgroup (--by)", b).map(|i| (b.clone(), i)))
            .collect::<Result<Vec<_>, _>>()?;
        let used: Vec<usize> = inputs
            .iter()
            .copied()
            .chain(id)
            .chain(label)
            .chain(keep.iter().map(|(_, i)| *i))
            .chain(by.iter().map(|(_, i)| *i))
            .collect();
        let ignored = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, n)| (*n).to_string())
            .collect();
        Ok(Columns {
            inputs,
            id,
            keep,
            label,
            by,
            ignored,
        })
    }

    /// The trimmed cells of the model's input columns in `record`, in the model's order.
    pub fn cells<'r>(&self, record: &'r csv::StringRecord) -> Vec<&'r str> {
        self.inputs
            .iter()
            .map(|&i| record.get(i).map_or("", str::trim))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transform::{Column, SCHEMA};
    use crate::data::{Dialect, Preprocessing};
    use crate::spec::{Delimiter, Normalize, NumericImpute, Task};

    fn pre() -> Preprocessing {
        let columns = vec![Column::Numeric {
            name: "x".into(),
            impute: NumericImpute::Median,
            fill: 0.0,
            indicator: false,
            offset: 0.0,
            scale: 1.0,
        }];
        Preprocessing {
            schema: SCHEMA.into(),
            dialect: Dialect {
                delimiter: Delimiter::Comma,
                missing: vec![String::new()],
            },
            label: "y".into(),
            task: Task::Regression,
            classes: None,
            normalize: Normalize::Standard,
            features: vec!["x".into()],
            columns,
            ignored: vec![],
            target: None,
        }
    }

    #[test]
    fn regression_labels_compare_by_value_not_spelling() {
        let p = pre();
        let d = |l| p.row_digest(&["1"], Some(l));
        assert_eq!(d("0.2"), d("0.20"));
        assert_eq!(d("0.2"), d("2e-1"));
        assert_eq!(d("0"), d("-0.0"));
        assert_ne!(d("0.2"), d("0.3"));
    }

    #[test]
    fn headers_name_every_missing_column() {
        let p = pre();
        let h = csv::StringRecord::from(vec!["a", "b"]);
        let e = Columns::match_header(&h, &p, &Wanted::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the input lacks 1 of the model's input columns: x"
        );
        let h = csv::StringRecord::from(vec!["x", "name"]);
        let c = Columns::match_header(
            &h,
            &p,
            &Wanted {
                keep: &["name".to_string()],
                ..Wanted::default()
            },
        )
        .unwrap();
        assert_eq!(c.keep, vec![("name".to_string(), 1)]);
        assert!(c.ignored.is_empty());
    }
}
