//! Evaluation metrics from labels and model outputs: accuracy, macro-F1, per-class precision and
//! recall, the confusion matrix, and for binary tasks ROC-AUC, the Brier score and the expected
//! calibration error with its reliability table; MSE, MAE and R² for regression.
//! Every metric comes with a 95 % confidence interval and the number of rows it rests on: Wilson
//! score intervals for proportions (accuracy, per-class precision and recall), a seeded
//! bootstrap for the rest (anyone can recompute it). Pure functions: no files, no model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bins of the reliability table (equal width over [0, 1]).
pub const CALIBRATION_BINS: usize = 10;

/// The metrics of one set of rows (overall, or one subgroup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: u64,
    /// Share of rows whose predicted class is the true class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Unweighted mean of the per-class F1 scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// Precision, recall and support per class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassStats>,
    /// `confusion[true][predicted]` row counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion: Vec<Vec<u64>>,
    /// Binary tasks: area under the ROC curve of the second class's probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Binary tasks: mean squared difference between the second class's probability and 0/1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    /// Binary tasks: expected calibration error over [`CALIBRATION_BINS`] equal-width bins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_error: Option<f64>,
    /// Binary tasks: the reliability table behind the calibration error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reliability: Vec<Bin>,
    /// Regression: mean squared error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Regression: mean absolute error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// Regression: coefficient of determination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// 95 % confidence intervals by metric name (`accuracy`, `macro_f1`, …, and
    /// `precision:<class>`, `recall:<class>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intervals: BTreeMap<String, Interval>,
}

/// A 95 % confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// `wilson` (a proportion) or `bootstrap` (percentile, seeded).
    pub method: String,
    /// Rows it rests on (the proportion's denominator, or the rows resampled).
    pub rows: u64,
    /// Bootstrap resamples drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resamples: Option<u32>,
}

/// One class's precision, recall and support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Class name.
    pub class: String,
    /// Of the rows predicted as this class, the share that are (0 when none were predicted).
    pub precision: f64,
    /// Of the rows of this class, the share predicted as it (0 when there are none).
    pub recall: f64,
    /// Rows of this class.
    pub support: u64,
}

/// One bin of the reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bin {
    /// Lower edge (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive; the last bin includes 1).
    pub upper: f64,
    /// Rows whose predicted probability falls in the bin.
    pub rows: u64,
    /// Mean predicted probability of those rows.
    pub mean_predicted: f64,
    /// Share of those rows that are of the second class.
    pub observed: f64,
}

impl Metrics {
    /// The scalar metrics defined for these rows, by name, in a fixed order.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        [
            ("accuracy", self.accuracy),
            ("macro_f1", self.macro_f1),
            ("roc_auc", self.roc_auc),
            ("brier", self.brier),
            ("calibration_error", self.calibration_error),
            ("mse", self.mse),
            ("mae", self.mae),
            ("r2", self.r2),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// A named metric (`accuracy`, `macro_f1`, `roc_auc`, `brier`, `calibration_error`, `mse`,
    /// `mae`, `r2`, or `precision`/`recall` of `class`), when defined for these rows.
    pub fn value(&self, metric: &str, class: Option<&str>) -> Option<f64> {
        let per_class = |f: fn(&ClassStats) -> f64| {
            self.per_class
                .iter()
                .find(|c| Some(c.class.as_str()) == class)
                .map(f)
        };
        match metric {
            "accuracy" => self.accuracy,
            "macro_f1" => self.macro_f1,
            "roc_auc" => self.roc_auc,
            "brier" => self.brier,
            "calibration_error" => self.calibration_error,
            "mse" => self.mse,
            "mae" => self.mae,
            "r2" => self.r2,
            "precision" => per_class(|c| c.precision),
            "recall" => per_class(|c| c.recall),
            _ => None,
        }
    }
}

/// Classification metrics of rows with true class `truth[i]` and class probabilities
/// `probs[i]` (one per class, in `classes` order).
pub fn classification(truth: &[usize], probs: &[Vec<f32>], classes: &[String]) -> Metrics {
    let k = classes.len();
    let n = truth.len().min(probs.len());
    let mut confusion = vec![vec![0u64; k]; k];
    for (t, p) in truth.iter().zip(probs).take(n) {
        let pred = argmax(p);
        if *t < k && pred < k {
            confusion[*t][pred] += 1;
        }
    }
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassStats> = (0..k)
        .map(|i| {
            let predicted: u64 = (0..k).map(|t| confusion[t][i]).sum();
            let support: u64 = confusion[i].iter().sum();
            ClassStats {
                class: classes[i].clone(),
                precision: ratio(confusion[i][i], predicted),
                recall: ratio(confusion[i][i], support),
                support,
            }
        })
        .collect();
    let macro_f1 = macro_f1(&confusion);
    let mut m = Metrics {
        rows: n as u64,
        accuracy: Some(ratio(correct, n as u64)),
        macro_f1: Some(macro_f1),
        per_class,
        confusion,
        ..Default::default()
    };
    if k == 2 && n > 0 {
        let p1: Vec<f64> = probs
            .iter()
            .take(n)
            .map(|p| f64::from(p.get(1).copied().unwrap_or(0.0)))
            .collect();
        let y: Vec<bool> = truth.iter().take(n).map(|&t| t == 1).collect();
        m.roc_auc = roc_auc(&p1, &y);
        m.brier = Some(
            p1.iter()
                .zip(&y)
                .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
                .sum::<f64>()
                / n as f64,
        );
        let (ece, bins) = calibration(&p1, &y);
        m.calibration_error = Some(ece);
        m.reliability = bins;
    }
    intervals::classification(&mut m, &truth[..n], &probs[..n], k);
    m
}

/// The mean F1 over the classes present among the true or predicted labels (scikit-learn's
/// `average="macro"` semantics: a class absent from both does not count).
pub fn macro_f1(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.len();
    let (mut sum, mut present) = (0.0, 0usize);
    for (i, row) in confusion.iter().enumerate() {
        let support: u64 = row.iter().sum();
        let predicted: u64 = (0..k).map(|t| confusion[t][i]).sum();
        if support + predicted > 0 {
            sum += ratio(2 * row[i], support + predicted);
            present += 1;
        }
    }
    if present == 0 {
        0.0
    } else {
        sum / present as f64
    }
}

/// Regression metrics.
pub fn regression(truth: &[f64], predicted: &[f64]) -> Metrics {
    let n = truth.len().min(predicted.len());
    if n == 0 {
        return Metrics::default();
    }
    let mean = truth.iter().take(n).sum::<f64>() / n as f64;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (t, p) in truth.iter().zip(predicted).take(n) {
        se += (t - p).powi(2);
        ae += (t - p).abs();
        tot += (t - mean).powi(2);
    }
    let mut m = Metrics {
        rows: n as u64,
        mse: Some(se / n as f64),
        mae: Some(ae / n as f64),
        r2: Some(if tot == 0.0 { 0.0 } else { 1.0 - se / tot }),
        ..Default::default()
    };
    intervals::regression(&mut m, &truth[..n], &predicted[..n]);
    m
}

mod intervals;
pub use intervals::{of_labels, of_values};

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The index of the largest value (the first on ties; NaN never wins).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if v.total_cmp(&p[best]).is_gt() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// ROC-AUC as the Mann–Whitney statistic: the chance that a random positive row scores above a
/// random negative one, ties counting half. `None` without both classes.
pub(crate) fn roc_auc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if positive[k] {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let (pos, neg) = (pos as f64, neg as f64);
    Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Expected calibration error and the reliability table.
pub(crate) fn calibration(p: &[f64], y: &[bool]) -> (f64, Vec<Bin>) {
    let mut sums = vec![(0u64, 0.0f64, 0u64); CALIBRATION_BINS];
    for (&p, &y) in p.iter().zip(y) {
        let b = ((p * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += u64::from(y);
    }
    let n = p.len().max(1) as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(rows, psum, pos))| {
            let (mean_predicted, observed) = if rows == 0 {
                (0.0, 0.0)
            } else {
                (psum / rows as f64, pos as f64 / rows as f64)
            };
            ece += rows as f64 / n * (mean_predicted - observed).abs();
            Bin {
                lower: i as f64 / CALIBRATION_BINS as f64,
                upper: (i + 1) as f64 / CALIBRATION_BINS as f64,
                rows,
                mean_predicted,
                observed,
            }
        })
        .collect();
    (ece, bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["benign".into(), "malignant".into()]
    }

    #[test]
    fn binary_metrics_match_hand_computed_values() {
        let truth = [0, 0, 1, 1];
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.4, 0.6],
            vec![0.35, 0.65],
            vec![0.2, 0.8],
        ];
        let m = classification(&truth, &probs, &names());
        assert_eq!(m.accuracy, Some(0.75));
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert_eq!(m.value("recall", Some("malignant")), Some(1.0));
        assert_eq!(m.value("precision", Some("malignant")), Some(2.0 / 3.0));
        // Positives score 0.65 and 0.8; negatives 0.1 and 0.6: 4 of 4 pairs ordered.
        assert_eq!(m.roc_auc, Some(1.0));
        let brier = (0.01 + 0.36 + 0.1225 + 0.04) / 4.0;
        assert!((m.brier.unwrap() - brier).abs() < 1e-6);
        assert_eq!(m.reliability.iter().map(|b| b.rows).sum::<u64>(), 4);
    }

    #[test]
    fn auc_counts_ties_as_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
    }

    #[test]
    fn macro_averages_skip_classes_absent_from_a_subgroup() {
        // The penguins case: a subgroup holding only one species, all predicted right.
        let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let probs = vec![vec![0.1, 0.8, 0.1]; 4];
        let m = classification(&[1, 1, 1, 1], &probs, &three);
        assert_eq!(m.macro_f1, Some(1.0));
    }

    #[test]
    fn intervals_come_with_every_metric() {
        let probs: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                if i % 4 == 0 {
                    vec![0.3, 0.7]
                } else {
                    vec![0.8, 0.2]
                }
            })
            .collect();
        let truth: Vec<usize> = (0..40).map(|i| usize::from(i % 5 == 0)).collect();
        let m = classification(&truth, &probs, &names());
        let acc = &m.intervals["accuracy"];
        assert_eq!(acc.method, "wilson");
        assert!(acc.lower < m.accuracy.unwrap() && m.accuracy.unwrap() < acc.upper);
        let f1 = &m.intervals["macro_f1"];
        assert_eq!(f1.method, "bootstrap");
        assert!(f1.lower <= m.macro_f1.unwrap() && m.macro_f1.unwrap() <= f1.upper);
        assert!(m.intervals.contains_key("recall:malignant"));
        // Seeded: recomputing gives the same interval.
        assert_eq!(
            classification(&truth, &probs, &names()).intervals,
            m.intervals
        );
        let r = regression(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.1, 1.9, 3.2, 3.9, 5.3]);
        assert!(r.intervals.contains_key("r2") && r.intervals.contains_key("mae"));
    }

    #[test]
    fn regression_metrics() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert_eq!(m.mse, Some(1.0 / 3.0));
        assert_eq!(m.mae, Some(1.0 / 3.0));
        assert_eq!(m.r2, Some(0.5));
    }
}

/// The metrics of the rows sharing one value of a subgroup column (`eval --by`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subgroup {
    /// The column.
    pub column: String,
    /// The value.
    pub value: String,
    /// Whether it has fewer rows than the minimum to judge it (reported, never used in a gap).
    pub too_small: bool,
    /// Its metrics.
    pub metrics: Metrics,
}
