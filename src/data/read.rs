//! Pass 1 over the CSV: every record's width and label, the group of each kept row, and the
//! targets (class indices, or regression values; a label that is not usable makes a bad row).

use std::collections::HashMap;

use super::{BadRow, Ctx, DataError, Scan, Targets, table, transform};
use crate::spec::Task;

use super::infer::Roles;

impl Ctx<'_> {
    /// Pass 1: every record's width and label; the group of each kept row.
    pub(super) fn scan(&self, bytes: &[u8], roles: &Roles) -> Result<Scan, DataError> {
        let (mut r, meter) = table::reader(bytes, &self.dialect);
        let width = r.headers().map(csv::StringRecord::len).unwrap_or(0);
        let mut scan = Scan {
            records: Vec::new(),
            lines: Vec::new(),
            labels: Vec::new(),
            groups: roles.group.map(|_| Vec::new()),
            bad: Vec::new(),
            unlabeled: Vec::new(),
            dropped: Vec::new(),
            total: 0,
        };
        let mut group_ids: HashMap<String, u32> = HashMap::new();
        let mut rec = csv::StringRecord::new();
        loop {
            let more = r.read_record(&mut rec).map_err(|e| {
                self.csv_err(
                    e.position().map(csv::Position::line),
                    table::csv_message(&e),
                )
            })?;
            if !more {
                break;
            }
            meter.next_record();
            let index = scan.total;
            scan.total += 1;
            let line = rec.position().map_or(index as u64 + 2, csv::Position::line);
            if rec.len() != width {
                scan.bad.push(BadRow {
                    line,
                    why: format!("{} fields, the header has {width}", rec.len()),
                });
                continue;
            }
            let label = table::cell(&rec, roles.label);
            if self.dialect.is_missing(label) {
                scan.unlabeled.push(BadRow {
                    line,
                    why: format!("the label `{}` is missing", self.spec.data.label.value),
                });
                continue;
            }
            if let (Some(g), Some(groups)) = (roles.group, scan.groups.as_mut()) {
                let next = group_ids.len() as u32;
                groups.push(
                    *group_ids
                        .entry(table::cell(&rec, g).to_string())
                        .or_insert(next),
                );
            }
            scan.records.push(index);
            scan.lines.push(line);
            scan.labels.push(label.to_string());
        }
        if scan.total == 0 {
            return Err(self.csv_err(None, "no data rows after the header".to_string()));
        }
        Ok(scan)
    }

    /// The targets of the kept rows: class indices (classes sorted, at least two) or values (a
    /// label that is not a number is a bad row, dropped from the kept rows here).
    pub(super) fn targets(
        &self,
        scan: &mut Scan,
    ) -> Result<(Targets, Option<Vec<String>>), DataError> {
        match self.spec.data.task {
            Task::Classification => {
                let mut classes: Vec<String> = scan.labels.clone();
                classes.sort_unstable();
                classes.dedup();
                if classes.len() < 2 {
                    return Err(self.spec_err(
                        self.spec.data.label.pos,
                        format!(
                            "classification needs at least 2 classes in `{}`, found {}",
                            self.spec.data.label.value,
                            classes.len()
                        ),
                    ));
                }
                let index: HashMap<&str, u32> = classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i as u32))
                    .collect();
                let t = scan.labels.iter().map(|l| index[l.as_str()]).collect();
                Ok((Targets::Classes(t), Some(classes)))
            }
            Task::Regression => {
                let keep: Vec<Option<f32>> = scan
                    .labels
                    .iter()
                    .map(|l| transform::parse_number(l))
                    .collect();
                for (k, v) in keep.iter().enumerate() {
                    if v.is_none() {
                        scan.bad.push(BadRow {
                            line: scan.lines[k],
                            why: format!(
                                "label `{}` is not a number, but the task is regression",
                                scan.labels[k]
                            ),
                        });
                    }
                }
                scan.retain(|k| keep[k].is_some());
                Ok((Targets::Values(keep.into_iter().flatten().collect()), None))
            }
        }
    }
}

impl Scan {
    /// Keep only the kept rows `k` for which `f(k)` holds.
    fn retain(&mut self, f: impl Fn(usize) -> bool) {
        let keep: Vec<bool> = (0..self.records.len()).map(f).collect();
        retain_by(&mut self.records, &keep);
        retain_by(&mut self.lines, &keep);
        retain_by(&mut self.labels, &keep);
        if let Some(g) = self.groups.as_mut() {
            retain_by(g, &keep);
        }
    }
}

/// Keep the elements of `v` whose flag in `keep` is set.
fn retain_by<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut k = 0;
    v.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}
