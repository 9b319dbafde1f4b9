//! Held-out metrics: accuracy, macro-F1 and the confusion matrix; MSE, MAE and R².

use std::collections::BTreeMap;

use serde::Serialize;

use crate::eval::metrics::Interval;

/// Final metrics on the held-out split.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Metrics {
    /// Classification metrics.
    Classification {
        /// Fraction of rows predicted correctly.
        accuracy: f64,
        /// Unweighted mean of the per-class F1 scores over the classes present among the true or
        /// predicted labels (scikit-learn's semantics: an absent class does not count).
        macro_f1: f64,
        /// `confusion[true][predicted]` row counts.
        confusion: Vec<Vec<u64>>,
        /// 95 % intervals of accuracy (Wilson) and macro-F1 (seeded bootstrap); final metrics only.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        intervals: BTreeMap<String, Interval>,
    },
    /// Regression metrics (in the label's own units).
    Regression {
        /// Mean squared error.
        mse: f64,
        /// Mean absolute error.
        mae: f64,
        /// Coefficient of determination.
        r2: f64,
        /// 95 % seeded-bootstrap intervals of the three; final metrics only.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        intervals: BTreeMap<String, Interval>,
    },
}

impl Metrics {
    /// `(name, value)` pairs of the scalar metrics, for tables.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        match self {
            Metrics::Classification {
                accuracy, macro_f1, ..
            } => vec![("accuracy", *accuracy), ("macro_f1", *macro_f1)],
            Metrics::Regression { mse, mae, r2, .. } => {
                vec![("mse", *mse), ("mae", *mae), ("r2", *r2)]
            }
        }
    }

    /// The same metrics without their intervals (as the manifest records them: the intervals
    /// are in `summary.json`, one of its signed subjects).
    pub fn without_intervals(&self) -> Metrics {
        let mut m = self.clone();
        match &mut m {
            Metrics::Classification { intervals, .. } | Metrics::Regression { intervals, .. } => {
                intervals.clear();
            }
        }
        m
    }

    /// The 95 % interval of the metric `name`, when computed.
    pub fn interval(&self, name: &str) -> Option<&Interval> {
        match self {
            Metrics::Classification { intervals, .. } | Metrics::Regression { intervals, .. } => {
                intervals.get(name)
            }
        }
    }
}

/// Classification metrics from true and predicted class indices, with intervals when
/// `intervals`.
pub fn classification(
    truth: &[u32],
    predicted: &[u32],
    classes: usize,
    intervals: bool,
) -> Metrics {
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        if let Some(cell) = confusion
            .get_mut(t as usize)
            .and_then(|row| row.get_mut(p as usize))
        {
            *cell += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    let accuracy = ratio(correct, truth.len() as u64);
    let (mut f1_sum, mut present) = (0.0, 0usize);
    for c in 0..classes {
        let tp = confusion[c][c];
        let actual: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
        if actual + predicted > 0 {
            f1_sum += ratio(2 * tp, actual + predicted);
            present += 1;
        }
    }
    Metrics::Classification {
        accuracy,
        macro_f1: if present == 0 {
            0.0
        } else {
            f1_sum / present as f64
        },
        confusion,
        intervals: if intervals {
            let idx = |v: &[u32]| v.iter().map(|&c| c as usize).collect::<Vec<_>>();
            crate::eval::metrics::of_labels(&idx(truth), &idx(predicted), classes)
        } else {
            BTreeMap::new()
        },
    }
}

/// Regression metrics from true and predicted values, with intervals when `intervals`.
pub fn regression(truth: &[f32], predicted: &[f32], intervals: bool) -> Metrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (&t, &p) in truth.iter().zip(predicted) {
        let (t, p) = (f64::from(t), f64::from(p));
        se += (t - p) * (t - p);
        ae += (t - p).abs();
        tot += (t - mean) * (t - mean);
    }
    Metrics::Regression {
        mse: se / n,
        mae: ae / n,
        r2: if tot > 0.0 { 1.0 - se / tot } else { 0.0 },
        intervals: if intervals {
            let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
            crate::eval::metrics::of_values(&wide(truth), &wide(predicted))
        } else {
            BTreeMap::new()
        },
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_hand_computation() {
        // truth:     0 0 1 1 2
        // predicted: 0 1 1 1 0
        let m = classification(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3, false);
        let Metrics::Classification {
            accuracy,
            macro_f1,
            confusion,
            intervals,
        } = m
        else {
            panic!("wrong kind")
        };
        assert_eq!(accuracy, 0.6);
        assert_eq!(confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        // F1: class0 2*1/(2+2)=0.5, class1 2*2/(2+3)=0.8, class2 0.
        assert!((macro_f1 - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
        assert!(intervals.is_empty(), "per-epoch metrics carry no intervals");
    }

    #[test]
    fn macro_f1_counts_only_classes_present() {
        // A subgroup where only class 1 occurs and is always predicted: perfect.
        let m = classification(&[1, 1, 1], &[1, 1, 1], 3, true);
        let Metrics::Classification { macro_f1, .. } = m else {
            panic!("wrong kind")
        };
        assert_eq!(macro_f1, 1.0);
        let acc = m
            .interval("accuracy")
            .expect("final metrics carry intervals");
        assert_eq!((acc.method.as_str(), acc.rows), ("wilson", 3));
        assert!(acc.lower < 1.0 && acc.upper == 1.0);
    }

    #[test]
    fn regression_metrics_match_hand_computation() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0], false);
        assert_eq!(
            m,
            Metrics::Regression {
                mse: 4.0 / 3.0,
                mae: 2.0 / 3.0,
                r2: 1.0 - 4.0 / 2.0,
                intervals: BTreeMap::new(),
            }
        );
    }
}
