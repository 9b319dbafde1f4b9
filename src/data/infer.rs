//! Which CSV columns are features and what they are: roles from the spec (label, group,
//! `include`/`exclude`, `data.columns`), then, in pass 2 over the training rows only, numeric or
//! categorical (a column is numeric when every non-missing value is a finite number), with
//! notices about what was inferred and what looks wrong (identifiers, constants, empty columns).

use std::collections::HashSet;

use super::transform::parse_number;
use super::{Ctx, DataError, Scan, declared, names, table};
use crate::spec::{ColumnRole, Located};

/// A feature column's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Numeric,
    Categorical,
}

/// Where everything sits in the header.
pub(crate) struct Roles {
    /// The header.
    pub header: Vec<String>,
    /// The label's column.
    pub label: usize,
    /// The group column (`data.split.group`).
    pub group: Option<usize>,
    /// Feature columns, in CSV order, with the kind the spec declares (if any).
    pub features: Vec<(usize, Option<Kind>)>,
    /// Columns that are not features, and why.
    pub ignored: Vec<(String, &'static str)>,
}

impl Roles {
    /// The roles of `header` under the spec; a column the spec names that the CSV lacks is an
    /// error at the spec's position.
    pub(crate) fn of(ctx: &Ctx<'_>, header: &[String]) -> Result<Roles, DataError> {
        let data = &ctx.spec.data;
        let find = |name: &Located<String>, what: &str| -> Result<usize, DataError> {
            header.iter().position(|h| *h == name.value).ok_or_else(|| {
                ctx.spec_err(
                    name.pos,
                    format!(
                        "{what} `{}` is not a column of {} (columns: {})",
                        name.value,
                        ctx.path.display(),
                        header.join(", ")
                    ),
                )
            })
        };
        let label = find(&data.label, "label column")?;
        let group = data
            .group
            .as_ref()
            .map(|g| find(g, "group column"))
            .transpose()?;
        for (name, _) in &data.columns {
            find(name, "column")?;
        }
        for name in data.include.iter().flatten().chain(&data.exclude) {
            let c = find(name, "feature")?;
            if c == label {
                return Err(ctx.spec_err(
                    name.pos,
                    format!(
                        "`{}` is the label column and cannot be a feature",
                        name.value
                    ),
                ));
            }
        }
        let include = data.include.as_deref().map(names);
        let exclude = names(&data.exclude);
        let mut features = Vec::new();
        let mut ignored = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if i == label {
                continue;
            }
            let role = declared(ctx.spec, h).map(|(_, r)| r);
            let why = match role {
                Some(ColumnRole::Exclude) => Some("excluded"),
                Some(ColumnRole::Id) => Some("id"),
                _ if exclude.contains(&h.as_str()) => Some("excluded"),
                _ if include
                    .as_ref()
                    .is_some_and(|inc| !inc.contains(&h.as_str())) =>
                {
                    Some("excluded")
                }
                None if Some(i) == group => Some("group"),
                _ => None,
            };
            match why {
                Some(w) => ignored.push((h.clone(), w)),
                None => features.push((
                    i,
                    match role {
                        Some(ColumnRole::Numeric) => Some(Kind::Numeric),
                        Some(ColumnRole::Categorical) => Some(Kind::Categorical),
                        _ => None,
                    },
                )),
            }
        }
        if features.is_empty() {
            return Err(ctx.spec_err(
                data.label.pos,
                "no feature columns are left after include/exclude".to_string(),
            ));
        }
        Ok(Roles {
            header: header.to_vec(),
            label,
            group,
            features,
            ignored,
        })
    }
}

/// What pass 2 learned about one feature column from the training rows.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Its kind (`None`: every training value is missing).
    pub kind: Option<Kind>,
    /// Whether the kind was inferred rather than declared.
    pub inferred: bool,
    /// Training rows with a gap.
    pub gaps: usize,
    /// No value occurs twice (tracked for integer and text columns, up to [`TRACK`] values).
    pub unique: bool,
    /// Every non-missing value is the same.
    pub constant: bool,
    /// Non-missing training values.
    pub present: usize,
    /// Every non-missing value is an integer.
    pub integers: bool,
}

/// The most values a column's uniqueness is tracked over (beyond, it counts as unique).
const TRACK: usize = 1 << 20;

/// What pass 2 tracks of one column's values, cheaply: the first value until another differs,
/// and the values seen while none repeats (dropped at the first repeat or fractional number).
struct Track {
    first: Option<Box<str>>,
    varies: bool,
    seen: Option<HashSet<Box<str>>>,
    capped: bool,
}

impl Track {
    fn new() -> Track {
        Track {
            first: None,
            varies: false,
            seen: Some(HashSet::new()),
            capped: false,
        }
    }

    fn add(&mut self, cell: &str, fractional: bool) {
        if !self.varies {
            match &self.first {
                None => self.first = Some(cell.into()),
                Some(f) => self.varies = **f != *cell,
            }
        }
        if fractional {
            self.seen = None;
        }
        if let Some(set) = &mut self.seen {
            if !set.insert(cell.into()) {
                self.seen = None;
            } else if set.len() >= TRACK {
                self.seen = None;
                self.capped = true;
            }
        }
    }
}

/// Pass 2: each feature column's kind from the training rows (`train`, indices into the kept
/// rows).
pub(crate) fn kinds(
    ctx: &Ctx<'_>,
    bytes: &[u8],
    roles: &Roles,
    scan: &Scan,
    train: &[usize],
) -> Result<Vec<Seen>, DataError> {
    let mut is_train = vec![false; scan.total];
    for &k in train {
        is_train[scan.records[k]] = true;
    }
    let mut seen: Vec<Seen> = roles
        .features
        .iter()
        .map(|&(_, kind)| Seen {
            kind,
            inferred: kind.is_none(),
            gaps: 0,
            unique: true,
            constant: false,
            present: 0,
            integers: true,
        })
        .collect();
    let mut numeric = vec![true; seen.len()];
    let mut track: Vec<Track> = seen.iter().map(|_| Track::new()).collect();
    let (mut r, meter) = table::reader(bytes, &ctx.dialect);
    let mut rec = csv::StringRecord::new();
    let mut index = 0;
    while r.read_record(&mut rec).map_err(|e| {
        ctx.csv_err(
            e.position().map(csv::Position::line),
            table::csv_message(&e),
        )
    })? {
        meter.next_record();
        let train_row = is_train.get(index).copied().unwrap_or(false);
        index += 1;
        if !train_row {
            continue;
        }
        for (f, &(c, _)) in roles.features.iter().enumerate() {
            let cell = table::cell(&rec, c);
            let s = &mut seen[f];
            if ctx.dialect.is_missing(cell) {
                s.gaps += 1;
                continue;
            }
            s.present += 1;
            let fractional = match parse_number(cell) {
                Some(v) => {
                    s.integers &= v.fract() == 0.0;
                    v.fract() != 0.0 && numeric[f]
                }
                None => {
                    numeric[f] = false;
                    s.integers = false;
                    false
                }
            };
            track[f].add(cell, fractional);
        }
    }
    for (f, s) in seen.iter_mut().enumerate() {
        let t = &track[f];
        s.unique = t.seen.is_some() || t.capped;
        s.constant = !t.varies && t.first.is_some();
        if s.kind.is_none() && s.present > 0 {
            s.kind = Some(if numeric[f] {
                Kind::Numeric
            } else {
                Kind::Categorical
            });
        }
    }
    Ok(seen)
}

/// Notices about the columns: what was inferred (only when a column is categorical, has gaps or
/// was left out: an all-numeric CSV without gaps says nothing), and warnings.
pub(crate) fn notices(
    roles: &Roles,
    seen: &[Seen],
    train_rows: usize,
    pre: &super::Preprocessing,
) -> Vec<String> {
    let mut out = Vec::new();
    let name = |f: usize| roles.header[roles.features[f].0].as_str();
    let quiet = seen
        .iter()
        .all(|s| s.kind == Some(Kind::Numeric) && s.gaps == 0)
        && roles.ignored.is_empty();
    if !quiet {
        let list = |k: Kind| {
            seen.iter()
                .enumerate()
                .filter(|(_, s)| s.kind == Some(k))
                .map(|(f, s)| {
                    let mut t = name(f).to_string();
                    if k == Kind::Categorical {
                        t.push_str(&format!(" ({} values)", categories(pre, name(f))));
                    }
                    if s.gaps > 0 {
                        let plural = if s.gaps == 1 { "" } else { "s" };
                        t.push_str(&format!(" ({} gap{plural})", s.gaps));
                    }
                    if !s.inferred {
                        t.push_str(" (declared)");
                    }
                    t
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = vec![
            format!("numeric: {}", or_none(list(Kind::Numeric))),
            format!("categorical: {}", or_none(list(Kind::Categorical))),
        ];
        if !roles.ignored.is_empty() {
            let ig: Vec<String> = roles
                .ignored
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect();
            parts.push(format!("not features: {}", ig.join(", ")));
        }
        out.push(format!(
            "columns from the training rows: {}",
            parts.join("; ")
        ));
    }
    for (f, s) in seen.iter().enumerate() {
        let n = name(f);
        match s.kind {
            None => out.push(format!(
                "column `{n}` is empty in every training row; it is left out"
            )),
            Some(_) if s.inferred && s.present >= 20 && s.unique && (s.integers || s.kind == Some(Kind::Categorical)) => {
                out.push(format!(
                    "column `{n}` has a distinct value in every training row: it looks like an identifier; declare it in data.columns as `id` to leave it out"
                ))
            }
            Some(_) if s.constant && train_rows > 1 => out.push(format!(
                "column `{n}` has one value in every training row: it carries no information"
            )),
            _ => {}
        }
    }
    out
}

/// The training categories of the categorical column `name` (gaps not counted).
fn categories(pre: &super::Preprocessing, name: &str) -> usize {
    pre.columns
        .iter()
        .find(|c| c.name() == name)
        .map_or(0, |c| match c {
            super::Column::Categorical {
                categories, other, ..
            } => {
                categories
                    .iter()
                    .filter(|c| *c != super::transform::MISSING)
                    .count()
                    + other.len()
            }
            super::Column::Numeric { .. } => 0,
        })
}

fn or_none(s: String) -> String {
    if s.is_empty() { "none".into() } else { s }
}
