//! Confidence intervals (95 %): Wilson score intervals for proportions, and a percentile
//! bootstrap for everything else, seeded by the row count so that anyone recomputes it.

use std::collections::BTreeMap;

use super::{Interval, Metrics, argmax, calibration, macro_f1, roc_auc};

/// A statistic of the rows at some indices.
type Stat<'a> = dyn Fn(&[usize]) -> Option<f64> + 'a;

/// z for a two-sided 95 % interval.
const Z: f64 = 1.959_963_984_540_054;
/// Bootstrap resamples drawn (fewer for large sets, so that the work stays bounded).
const RESAMPLES: usize = 1000;
/// Resamples × rows the bootstrap does at most.
const BUDGET: usize = 50_000_000;

/// The Wilson score interval of `k` successes in `n` trials.
pub(super) fn wilson(k: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (k, nf) = (k as f64, n as f64);
    let p = k / nf;
    let denom = 1.0 + Z * Z / nf;
    let centre = (p + Z * Z / (2.0 * nf)) / denom;
    let half = Z * (p * (1.0 - p) / nf + Z * Z / (4.0 * nf * nf)).sqrt() / denom;
    Some(Interval {
        lower: (centre - half).max(0.0),
        upper: (centre + half).min(1.0),
        method: "wilson".into(),
        rows: n,
        resamples: None,
    })
}

/// Resamples for `n` rows.
fn resamples(n: usize) -> usize {
    (BUDGET / n.max(1)).clamp(100, RESAMPLES)
}

/// The 2.5th and 97.5th percentiles of `stat` over seeded resamples of `n` rows.
fn bootstrap(n: usize, stat: impl Fn(&[usize]) -> Option<f64>) -> Option<Interval> {
    if n < 2 {
        return None;
    }
    let b = resamples(n);
    let mut values: Vec<f64> = (0..b)
        .filter_map(|r| {
            let idx =
                crate::shuffle::resample(&crate::shuffle::key(n as u64, "bootstrap", r as u64), n);
            stat(&idx).filter(|v| v.is_finite())
        })
        .collect();
    if values.len() < b / 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some(Interval {
        lower: at(0.025),
        upper: at(0.975),
        method: "bootstrap".into(),
        rows: n as u64,
        resamples: Some(b as u32),
    })
}

/// Intervals of accuracy (Wilson) and macro-F1 (bootstrap) from true and predicted class
/// indices.
pub fn of_labels(truth: &[usize], pred: &[usize], k: usize) -> BTreeMap<String, Interval> {
    let n = truth.len().min(pred.len());
    let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count() as u64;
    let mut iv = BTreeMap::new();
    if let Some(w) = wilson(correct, n as u64) {
        iv.insert("accuracy".to_string(), w);
    }
    let confusion_of = |idx: &[usize]| {
        let mut c = vec![vec![0u64; k]; k];
        for &i in idx {
            if truth[i] < k && pred[i] < k {
                c[truth[i]][pred[i]] += 1;
            }
        }
        c
    };
    if let Some(b) = bootstrap(n, |idx| Some(macro_f1(&confusion_of(idx)))) {
        iv.insert("macro_f1".to_string(), b);
    }
    iv
}

/// Intervals of the classification metrics of `m`.
pub(super) fn classification(m: &mut Metrics, truth: &[usize], probs: &[Vec<f32>], k: usize) {
    let n = truth.len();
    let pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let mut iv = of_labels(truth, &pred, k);
    for (i, c) in m.per_class.iter().enumerate() {
        let tp = m
            .confusion
            .get(i)
            .and_then(|r| r.get(i))
            .copied()
            .unwrap_or(0);
        let predicted: u64 = m
            .confusion
            .iter()
            .map(|r| r.get(i).copied().unwrap_or(0))
            .sum();
        if let Some(w) = wilson(tp, predicted) {
            iv.insert(format!("precision:{}", c.class), w);
        }
        if let Some(w) = wilson(tp, c.support) {
            iv.insert(format!("recall:{}", c.class), w);
        }
    }
    if k == 2 {
        let p1: Vec<f64> = probs
            .iter()
            .map(|p| f64::from(p.get(1).copied().unwrap_or(0.0)))
            .collect();
        let y: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        let pick = |idx: &[usize]| -> (Vec<f64>, Vec<bool>) {
            (
                idx.iter().map(|&i| p1[i]).collect(),
                idx.iter().map(|&i| y[i]).collect(),
            )
        };
        let stats: [(&str, &Stat); 3] = [
            ("roc_auc", &|idx| {
                let (p, y) = pick(idx);
                roc_auc(&p, &y)
            }),
            ("brier", &|idx| {
                let (p, y) = pick(idx);
                Some(
                    p.iter()
                        .zip(&y)
                        .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
                        .sum::<f64>()
                        / p.len() as f64,
                )
            }),
            ("calibration_error", &|idx| {
                let (p, y) = pick(idx);
                Some(calibration(&p, &y).0)
            }),
        ];
        for (name, f) in stats {
            if let Some(b) = bootstrap(n, f) {
                iv.insert(name.to_string(), b);
            }
        }
    }
    m.intervals = iv;
}

/// Intervals of the regression metrics of `m`.
pub(super) fn regression(m: &mut Metrics, truth: &[f64], predicted: &[f64]) {
    m.intervals = of_values(truth, predicted);
}

/// Bootstrap intervals of MSE, MAE and R² from true and predicted values.
pub fn of_values(truth: &[f64], predicted: &[f64]) -> BTreeMap<String, Interval> {
    let n = truth.len().min(predicted.len());
    let stat = |idx: &[usize], which: &str| -> Option<f64> {
        let t: Vec<f64> = idx.iter().map(|&i| truth[i]).collect();
        let p: Vec<f64> = idx.iter().map(|&i| predicted[i]).collect();
        let len = t.len() as f64;
        let mean = t.iter().sum::<f64>() / len;
        let se: f64 = t.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum();
        let ae: f64 = t.iter().zip(&p).map(|(a, b)| (a - b).abs()).sum();
        let tot: f64 = t.iter().map(|a| (a - mean).powi(2)).sum();
        match which {
            "mse" => Some(se / len),
            "mae" => Some(ae / len),
            _ if tot > 0.0 => Some(1.0 - se / tot),
            _ => None,
        }
    };
    let mut iv = BTreeMap::new();
    for name in ["mse", "mae", "r2"] {
        if let Some(b) = bootstrap(n, |idx| stat(idx, name)) {
            iv.insert(name.to_string(), b);
        }
    }
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_reference_value() {
        // 81 of 100: the Wilson interval is [0.7222, 0.8749] (R's prop.test without correction).
        let w = wilson(81, 100).unwrap();
        assert!(
            (w.lower - 0.7222).abs() < 1e-3 && (w.upper - 0.8749).abs() < 1e-3,
            "{w:?}"
        );
        assert!(wilson(0, 0).is_none());
    }
}
