//! The seeded train / validation / test split: stratified per class for classification, over all
//! rows for regression, and with `data.split.group`, by group, so that every row of one group
//! lands on one side.

use crate::shuffle;
use crate::spec::Spec;

use super::Targets;

/// Row indices (into the kept rows) of the train, validation and test parts, each sorted.
pub(super) fn split(targets: &Targets, groups: Option<&[u32]>, spec: &Spec) -> [Vec<usize>; 3] {
    let mut out = match groups {
        Some(g) => by_group(g, spec),
        None => stratified(targets, spec),
    };
    for part in &mut out {
        part.sort_unstable();
    }
    out
}

/// Per class for classification (each class split in the fractions), else over all rows.
fn stratified(targets: &Targets, spec: &Spec) -> [Vec<usize>; 3] {
    let rows = match targets {
        Targets::Classes(c) => c.len(),
        Targets::Values(v) => v.len(),
    };
    let strata: Vec<Vec<usize>> = match targets {
        Targets::Classes(c) => {
            let k = c.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut g = vec![Vec::new(); k];
            for (i, &class) in c.iter().enumerate() {
                g[class as usize].push(i);
            }
            g
        }
        Targets::Values(_) => vec![(0..rows).collect()],
    };
    let split = spec.data.split;
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for (gi, mut group) in strata.into_iter().enumerate() {
        shuffle::shuffle(&mut group, &shuffle::key(spec.seed, "split", gi as u64));
        let n = group.len() as f64;
        let n_val = ((n * split.validation).round() as usize).min(group.len());
        let n_test = ((n * split.test).round() as usize).min(group.len() - n_val);
        let n_train = group.len() - n_val - n_test;
        out[0].extend_from_slice(&group[..n_train]);
        out[1].extend_from_slice(&group[n_train..n_train + n_val]);
        out[2].extend_from_slice(&group[n_train + n_val..]);
    }
    out
}

/// Whole groups to each part: the groups shuffled by the seed, then taken in turn for
/// validation and test until each holds its fraction of the rows; the rest train.
fn by_group(group_of: &[u32], spec: &Spec) -> [Vec<usize>; 3] {
    let n_groups = group_of.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, &g) in group_of.iter().enumerate() {
        members[g as usize].push(i);
    }
    let mut order: Vec<usize> = (0..n_groups).collect();
    shuffle::shuffle(&mut order, &shuffle::key(spec.seed, "split-groups", 0));
    let split = spec.data.split;
    let rows = group_of.len() as f64;
    let want = [rows * split.validation, rows * split.test];
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    let mut filled = [0usize; 2];
    for g in order {
        let m = &members[g];
        let part = (0..2).find(|&p| (filled[p] as f64) < want[p].round());
        match part {
            Some(p) => {
                filled[p] += m.len();
                out[p + 1].extend_from_slice(m);
            }
            None => out[0].extend_from_slice(m),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_never_straddle_parts() {
        let yaml = "version: 1\nname: t\nseed: 3\ndata:\n  path: d.csv\n  label: y\n  task: regression\nmodel:\n  type: mlp\n";
        let spec = Spec::parse(yaml, std::path::Path::new("s.yaml")).unwrap();
        let groups: Vec<u32> = (0..300).map(|i| (i / 7) as u32).collect();
        let targets = Targets::Values(vec![0.0; 300]);
        let parts = split(&targets, Some(&groups), &spec);
        let side = |i: usize| {
            parts
                .iter()
                .position(|p| p.binary_search(&i).is_ok())
                .unwrap()
        };
        for i in 0..300 {
            for j in 0..300 {
                if groups[i] == groups[j] {
                    assert_eq!(side(i), side(j));
                }
            }
        }
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 300);
        assert!(
            parts[1].len() >= 40 && parts[2].len() >= 40,
            "{:?}",
            parts.map(|p| p.len())
        );
    }
}
