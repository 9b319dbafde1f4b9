//! Pass 3 over the CSV (every kept row's values), then fitting on the training rows only and
//! encoding every part through the same functions `predict` uses.

use std::collections::HashMap;

use super::infer::{Kind, Roles, Seen};
use super::transform::{self, Affine, Column, MISSING};
use super::{
    BadRow, Ctx, DataError, ParseOptions, Part, Prepared, Preprocessing, Scan, Targets, Values,
    table,
};
use crate::spec::{CategoricalImpute, ClassWeight, Normalize, NumericImpute, TargetScaling, Task};

/// Category codes: a gap.
const GAP: u32 = u32::MAX;

impl Ctx<'_> {
    /// Pass 3: every kept row's value of every feature column. A non-number in a numeric column
    /// is a bad row (dropped from the kept rows).
    pub(super) fn materialize(
        &self,
        bytes: &[u8],
        roles: &Roles,
        seen: &[Seen],
        scan: &mut Scan,
    ) -> Result<Vec<Option<Values>>, DataError> {
        let n = scan.records.len();
        scan.dropped = vec![false; n];
        let mut cols: Vec<Option<Values>> = seen
            .iter()
            .map(|s| match s.kind {
                Some(Kind::Numeric) => Some(Values::Numeric(Vec::with_capacity(n))),
                Some(Kind::Categorical) => Some(Values::Categorical {
                    codes: Vec::with_capacity(n),
                    texts: Vec::new(),
                }),
                None => None,
            })
            .collect();
        let mut dicts: Vec<HashMap<String, u32>> = vec![HashMap::new(); cols.len()];
        let (mut r, meter) = table::reader(bytes, &self.dialect);
        let mut rec = csv::StringRecord::new();
        let (mut index, mut k) = (0usize, 0usize);
        while k < n
            && r.read_record(&mut rec).map_err(|e| {
                self.csv_err(
                    e.position().map(csv::Position::line),
                    table::csv_message(&e),
                )
            })?
        {
            meter.next_record();
            index += 1;
            if scan.records[k] != index - 1 {
                continue;
            }
            for (f, &(c, _)) in roles.features.iter().enumerate() {
                let cell = table::cell(&rec, c);
                let gap = self.dialect.is_missing(cell);
                match &mut cols[f] {
                    Some(Values::Numeric(v)) => match (gap, transform::parse_number(cell)) {
                        (true, _) => v.push(f32::NAN),
                        (false, Some(x)) => v.push(x),
                        (false, None) => {
                            v.push(f32::NAN);
                            if !scan.dropped[k] {
                                scan.dropped[k] = true;
                                scan.bad.push(BadRow {
                                    line: scan.lines[k],
                                    why: format!(
                                        "column `{}`: `{}` is not a number",
                                        roles.header[c],
                                        short(cell)
                                    ),
                                });
                            }
                        }
                    },
                    Some(Values::Categorical { codes, texts }) => {
                        if gap {
                            codes.push(GAP);
                        } else {
                            let next = texts.len() as u32;
                            let code = *dicts[f].entry(cell.to_string()).or_insert_with(|| {
                                texts.push(cell.to_string());
                                next
                            });
                            codes.push(code);
                        }
                    }
                    None => {}
                }
            }
            k += 1;
        }
        Ok(cols)
    }

    /// Under `impute: drop`, kept rows with a numeric gap are dropped (returned, for a notice).
    pub(super) fn drop_gaps(
        &self,
        cols: &[Option<Values>],
        roles: &Roles,
        scan: &mut Scan,
    ) -> Vec<BadRow> {
        if !super::drops_gaps(self.spec) {
            return Vec::new();
        }
        let mut dropped = Vec::new();
        for k in 0..scan.records.len() {
            let gap = cols.iter().position(|c| match c {
                Some(Values::Numeric(v)) => v[k].is_nan(),
                _ => false,
            });
            if let Some(f) = gap.filter(|_| !scan.dropped[k]) {
                scan.dropped[k] = true;
                dropped.push(BadRow {
                    line: scan.lines[k],
                    why: format!(
                        "column `{}`: missing (data.impute.numeric: drop)",
                        roles.header[roles.features[f].0]
                    ),
                });
            }
        }
        dropped
    }

    /// Fit every column on the training rows.
    pub(super) fn fit(
        &self,
        cols: &mut [Option<Values>],
        seen: &[Seen],
        train: &[usize],
    ) -> Vec<Option<Column>> {
        cols.iter()
            .zip(seen)
            .map(|(c, s)| match c {
                Some(Values::Numeric(v)) => Some(self.fit_numeric(v, s, train)),
                Some(Values::Categorical { codes, texts }) => {
                    Some(self.fit_categorical(codes, texts, train))
                }
                None => None,
            })
            .collect()
    }

    fn fit_numeric(&self, v: &[f32], s: &Seen, train: &[usize]) -> Column {
        let impute = self.spec.data.impute.numeric;
        let present: Vec<f32> = train
            .iter()
            .map(|&k| v[k])
            .filter(|x| !x.is_nan())
            .collect();
        let fill = match impute {
            NumericImpute::Median => median(&present),
            NumericImpute::Mean => {
                (present.iter().map(|&x| f64::from(x)).sum::<f64>() / present.len().max(1) as f64)
                    as f32
            }
            NumericImpute::Zero | NumericImpute::Drop => 0.0,
        };
        let imputed: Vec<f32> = train
            .iter()
            .map(|&k| if v[k].is_nan() { fill } else { v[k] })
            .collect();
        let (offset, scale) = scaling(&imputed, self.spec.data.normalize);
        Column::Numeric {
            name: String::new(),
            impute,
            fill,
            indicator: s.gaps > 0 && impute != NumericImpute::Drop,
            offset,
            scale,
        }
    }

    fn fit_categorical(&self, codes: &[u32], texts: &[String], train: &[usize]) -> Column {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &k in train {
            *counts.entry(codes[k]).or_default() += 1;
        }
        let gaps = counts.remove(&GAP).unwrap_or(0);
        let mut ranked: Vec<(&str, usize)> = counts
            .iter()
            .map(|(&c, &n)| (texts[c as usize].as_str(), n))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let cap = self
            .spec
            .data
            .max_categories
            .unwrap_or(crate::spec::MAX_CATEGORIES);
        let mode = ranked.first().map(|(t, _)| (*t).to_string());
        let (mut keep, mut other): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for (i, (t, _)) in ranked.iter().enumerate() {
            if i < cap {
                keep.push((*t).to_string());
            } else {
                other.push((*t).to_string());
            }
        }
        let missing_as = match self.spec.data.impute.categorical {
            CategoricalImpute::Mode => mode,
            CategoricalImpute::Category => {
                if gaps > 0 {
                    keep.push(MISSING.to_string());
                }
                None
            }
        };
        keep.sort();
        other.sort();
        Column::Categorical {
            name: String::new(),
            categories: keep,
            other,
            missing_as,
        }
    }

    /// The record of everything fitted.
    pub(super) fn record(
        &self,
        roles: &Roles,
        fitted: Vec<Option<Column>>,
        classes: Option<Vec<String>>,
    ) -> Preprocessing {
        let mut ignored: Vec<transform::Ignored> = roles
            .ignored
            .iter()
            .map(|(n, w)| transform::Ignored {
                name: n.clone(),
                why: (*w).to_string(),
            })
            .collect();
        let mut columns = Vec::new();
        for (f, c) in fitted.into_iter().enumerate() {
            let name = roles.header[roles.features[f].0].clone();
            match c {
                Some(mut c) => {
                    match &mut c {
                        Column::Numeric { name: n, .. } | Column::Categorical { name: n, .. } => {
                            *n = name
                        }
                    }
                    columns.push(c);
                }
                None => ignored.push(transform::Ignored {
                    name,
                    why: "empty".into(),
                }),
            }
        }
        Preprocessing {
            schema: transform::SCHEMA.to_string(),
            dialect: self.dialect.clone(),
            label: roles.header[roles.label].clone(),
            task: self.spec.data.task,
            classes,
            normalize: self.spec.data.normalize,
            features: columns.iter().flat_map(Column::feature_names).collect(),
            columns,
            ignored,
            target: None,
        }
    }

    /// Regression targets standardised on the training rows (recorded in `pre.target`).
    pub(super) fn scale_targets(
        &self,
        targets: Targets,
        train: &[usize],
        pre: &mut Preprocessing,
    ) -> Targets {
        let Targets::Values(v) = targets else {
            return targets;
        };
        if self.spec.data.target_scaling == TargetScaling::None {
            return Targets::Values(v);
        }
        let t: Vec<f32> = train.iter().map(|&k| v[k]).collect();
        let (offset, scale) = scaling(&t, Normalize::Standard);
        pre.target = Some(Affine { offset, scale });
        Targets::Values(v.iter().map(|y| (y - offset) / scale).collect())
    }

    /// Every part's features through the recorded columns (a value that overflows is a bad
    /// row, dropped from its part).
    pub(super) fn encode(
        &self,
        cols: &[Option<Values>],
        pre: &Preprocessing,
        targets: &Targets,
        parts: &[Vec<usize>; 3],
        scan: &mut Scan,
    ) -> (Vec<Part>, u64) {
        let present: Vec<&Values> = cols.iter().flatten().collect();
        let slots: Vec<Vec<Option<usize>>> = present
            .iter()
            .zip(&pre.columns)
            .map(|(v, c)| match v {
                Values::Categorical { texts, .. } => texts
                    .iter()
                    .map(|t| transform::category_slot(c, Some(t)))
                    .collect(),
                Values::Numeric(_) => Vec::new(),
            })
            .collect();
        let gap_slot: Vec<Option<usize>> = pre
            .columns
            .iter()
            .map(|c| transform::category_slot(c, None))
            .collect();
        let mut unseen = 0u64;
        let mut out = Vec::new();
        for rows in parts {
            let mut x = Vec::with_capacity(rows.len() * pre.width());
            let mut kept = Vec::with_capacity(rows.len());
            for &k in rows {
                let start = x.len();
                let mut row_unseen = 0u64;
                let ok = present
                    .iter()
                    .zip(&pre.columns)
                    .enumerate()
                    .all(|(f, (v, c))| match v {
                        Values::Numeric(vals) => {
                            let val = (!vals[k].is_nan()).then_some(vals[k]);
                            transform::encode_numeric(c, val, &mut x).is_ok()
                        }
                        Values::Categorical { codes, .. } => {
                            let slot = match codes[k] {
                                GAP => gap_slot[f],
                                code => slots[f][code as usize],
                            };
                            let s0 = x.len();
                            x.resize(s0 + c.width(), 0.0);
                            match slot {
                                Some(i) => x[s0 + i] = 1.0,
                                None => row_unseen += 1,
                            }
                            true
                        }
                    });
                if ok {
                    unseen += row_unseen;
                    kept.push(k);
                } else {
                    x.truncate(start);
                    scan.bad.push(BadRow {
                        line: scan.lines[k],
                        why: "a value overflows the fitted scaling".into(),
                    });
                }
            }
            out.push(Part {
                x,
                targets: targets.select(&kept),
                rows: kept.len(),
                source_rows: kept.iter().map(|&k| scan.records[k]).collect(),
            });
        }
        (out, unseen)
    }

    /// Check what was prepared and assemble it: bad rows fail unless skipped; too few rows,
    /// an image shape that does not fit, and the notices.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &self,
        mut scan: Scan,
        (mut parts, unseen): (Vec<Part>, u64),
        pre: Preprocessing,
        seen: &[Seen],
        roles: &Roles,
        dropped: Vec<BadRow>,
        opts: ParseOptions,
    ) -> Result<Prepared, DataError> {
        scan.bad.sort_by_key(|b| b.line);
        if !scan.bad.is_empty() && !opts.skip_bad_rows {
            return Err(DataError::BadRows {
                path: self.path.clone(),
                bad: scan.bad,
            });
        }
        let test = parts.pop().filter(|p| p.rows > 0);
        let validation = parts.pop().unwrap_or_else(|| empty(&pre));
        let train = parts.pop().unwrap_or_else(|| empty(&pre));
        if train.rows == 0 || validation.rows == 0 {
            return Err(self.csv_err(
                None,
                format!(
                    "{} rows are too few for the train/validation split",
                    train.rows + validation.rows + test.as_ref().map_or(0, |t| t.rows)
                ),
            ));
        }
        self.check_shape(&pre)?;
        let mut notices = super::infer::notices(roles, seen, train.rows, &pre);
        notices.extend(self.class_notices(&pre, &train, &validation));
        if !dropped.is_empty() {
            notices.push(format!(
                "{} row(s) with a numeric gap dropped (data.impute.numeric: drop)",
                dropped.len()
            ));
        }
        if unseen > 0 {
            notices.push(format!(
                "{unseen} value(s) in validation or test rows are categories the training rows never had (encoded as all zeros)"
            ));
        }
        let class_weights = self.class_weights(&pre, &train);
        let mut skipped = scan.bad;
        skipped.extend(dropped);
        skipped.extend(scan.unlabeled);
        skipped.sort_by_key(|b| b.line);
        Ok(Prepared {
            path: self.path.clone(),
            rows: scan.total,
            train,
            validation,
            test,
            preprocessing: pre,
            notices,
            skipped,
            class_weights,
            sources: vec![super::SourceSpan {
                path: self.path.clone(),
                records: 0..scan.total,
            }],
        })
    }

    /// `data.shape` must hold exactly the features.
    fn check_shape(&self, pre: &Preprocessing) -> Result<(), DataError> {
        if let Some(shape) = &self.spec.data.shape {
            let [c, h, w] = shape.value;
            if c * h * w != pre.width() {
                return Err(self.spec_err(
                    shape.pos,
                    format!(
                        "data.shape {c}x{h}x{w} holds {} values but there are {} feature columns",
                        c * h * w,
                        pre.width()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Classes the split leaves out of a part.
    fn class_notices(&self, pre: &Preprocessing, train: &Part, validation: &Part) -> Vec<String> {
        let Some(classes) = &pre.classes else {
            return Vec::new();
        };
        let count = |p: &Part, c: usize| match &p.targets {
            Targets::Classes(t) => t.iter().filter(|&&x| x as usize == c).count(),
            Targets::Values(_) => 0,
        };
        classes
            .iter()
            .enumerate()
            .filter(|(c, _)| count(train, *c) == 0 || count(validation, *c) == 0)
            .map(|(c, name)| {
                format!(
                    "class `{name}` has {} training and {} validation rows: too few for the split to show it to both",
                    count(train, c),
                    count(validation, c)
                )
            })
            .collect()
    }

    /// `n / (classes × n_class)` over the training rows, with `training.class_weight: balanced`.
    fn class_weights(&self, pre: &Preprocessing, train: &Part) -> Option<Vec<f32>> {
        if self.spec.training.class_weight != ClassWeight::Balanced
            || self.spec.data.task != Task::Classification
        {
            return None;
        }
        let k = pre.classes.as_ref().map_or(0, Vec::len);
        let Targets::Classes(t) = &train.targets else {
            return None;
        };
        let mut n = vec![0usize; k];
        for &c in t {
            n[c as usize] += 1;
        }
        let total = t.len() as f64;
        Some(
            n.iter()
                .map(|&c| (total / (k as f64 * c.max(1) as f64)) as f32)
                .collect(),
        )
    }
}

fn empty(pre: &Preprocessing) -> Part {
    Part {
        x: Vec::new(),
        targets: match pre.task {
            Task::Classification => Targets::Classes(Vec::new()),
            Task::Regression => Targets::Values(Vec::new()),
        },
        rows: 0,
        source_rows: Vec::new(),
    }
}

/// The median of `v` (0 when empty), as scikit-learn's: the mean of the middle two.
fn median(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    // Selection, not a sort: linear in the rows.
    let mut s = v.to_vec();
    let m = s.len() / 2;
    let (low, &mut upper, _) = s.select_nth_unstable_by(m, f32::total_cmp);
    if v.len() % 2 == 1 {
        upper
    } else {
        let lower = low.iter().copied().max_by(f32::total_cmp).unwrap_or(upper);
        ((f64::from(lower) + f64::from(upper)) / 2.0) as f32
    }
}

/// Offset and scale of `kind` from `v` (accumulated in f64): the mean and population standard
/// deviation, or the minimum and range; a zero spread scales by 1.
fn scaling(v: &[f32], kind: Normalize) -> (f32, f32) {
    if v.is_empty() {
        return (0.0, 1.0);
    }
    let n = v.len() as f64;
    match kind {
        Normalize::None => (0.0, 1.0),
        Normalize::Standard => {
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v
                .iter()
                .map(|&x| (f64::from(x) - mean) * (f64::from(x) - mean))
                .sum::<f64>()
                / n;
            let sd = var.sqrt() as f32;
            (mean as f32, if sd > 1e-12 { sd } else { 1.0 })
        }
        Normalize::Minmax => {
            let (lo, hi) = v
                .iter()
                .map(|&x| f64::from(x))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(x), hi.max(x))
                });
            let range = (hi - lo) as f32;
            (lo as f32, if range > 1e-12 { range } else { 1.0 })
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_is_selected_not_sorted_for() {
        assert_eq!(super::median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(super::median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(super::median(&[7.0]), 7.0);
        assert_eq!(super::median(&[]), 0.0);
    }
}
