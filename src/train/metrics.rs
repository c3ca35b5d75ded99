//! Binary classification metrics: precision, recall, F1, ROC AUC, calibration, and threshold
//! search.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BinaryMetrics {
    pub n: usize,
    pub positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// ROC AUC; `None` when only one class is present.
    pub auc: Option<f64>,
    /// Macro-F1 over the positive and the negative class (how GermEval and ToLD-Br report).
    pub macro_f1: f64,
    pub accuracy: f64,
    /// Share of negatives flagged: the number that matters where a set has no positives.
    pub false_positive_rate: f64,
    /// Expected calibration error of the scores read as probabilities (10 equal-width bins).
    pub ece: f64,
    /// Brier score: mean squared gap between score and truth.
    pub brier: f64,
}

/// Metrics of `scores` against `truth` at `threshold`.
pub fn binary_metrics(scores: &[f32], truth: &[bool], threshold: f32) -> BinaryMetrics {
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &t) in scores.iter().zip(truth) {
        match (s >= threshold, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let f1_of = |tp: usize, fp: usize, fn_: usize| {
        let denom = 2 * tp + fp + fn_;
        if denom == 0 { 0.0 } else { 2.0 * tp as f64 / denom as f64 }
    };
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let f1 = f1_of(tp, fp, fn_);
    BinaryMetrics {
        n: scores.len(),
        positives: tp + fn_,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1,
        auc: roc_auc(scores, truth),
        macro_f1: (f1 + f1_of(tn, fn_, fp)) / 2.0,
        accuracy: ratio(tp + tn, scores.len()),
        false_positive_rate: ratio(fp, fp + tn),
        ece: calibration_error(scores, truth, CALIBRATION_BINS),
        brier: if scores.is_empty() {
            0.0
        } else {
            scores.iter().zip(truth).map(|(&s, &t)| (s as f64 - f64::from(u8::from(t))).powi(2)).sum::<f64>() / scores.len() as f64
        },
    }
}

const CALIBRATION_BINS: usize = 10;

/// Expected calibration error (Naeini et al. 2015; Guo et al. 2017): scores fall into `bins`
/// equal-width bins over [0, 1]; each bin's |share of positives − mean score| is weighted by the
/// share of examples in it. 0 is perfectly calibrated.
pub fn calibration_error(scores: &[f32], truth: &[bool], bins: usize) -> f64 {
    if scores.is_empty() || bins == 0 {
        return 0.0;
    }
    let (mut count, mut positives, mut score_sum) = (vec![0usize; bins], vec![0usize; bins], vec![0f64; bins]);
    for (&s, &t) in scores.iter().zip(truth) {
        let s = f64::from(s).clamp(0.0, 1.0);
        let b = ((s * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        positives[b] += usize::from(t);
        score_sum[b] += s;
    }
    (0..bins).filter(|&b| count[b] > 0).map(|b| (positives[b] as f64 / count[b] as f64 - score_sum[b] / count[b] as f64).abs() * count[b] as f64).sum::<f64>()
        / scores.len() as f64
}

/// ROC AUC by the rank-sum (Mann–Whitney) formula, ties counted half.
pub fn roc_auc(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&k| truth[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// The threshold in 0.02..=0.98 that maximises F1 (ties: the lower one). `None` without positives.
pub fn best_f1_threshold(scores: &[f32], truth: &[bool]) -> Option<f32> {
    if !truth.iter().any(|&t| t) {
        return None;
    }
    Some(best_threshold(|t| binary_metrics(scores, truth, t).f1))
}

/// Scores of one label and the truths they are judged against.
pub type Scored = (Vec<f32>, Vec<bool>);

/// The threshold in 0.02..=0.98 that maximises the mean F1 over groups (each a data set and
/// language: scores and truths), counting only groups with positives (ties: the lower one).
/// Pooling all dev texts instead lets the largest sets choose the cut for everyone.
pub fn best_mean_f1_threshold(groups: &[Scored]) -> Option<f32> {
    let with_positives: Vec<&Scored> = groups.iter().filter(|(_, truth)| truth.iter().any(|&t| t)).collect();
    if with_positives.is_empty() {
        return None;
    }
    Some(best_threshold(|t| with_positives.iter().map(|(s, truth)| binary_metrics(s, truth, t).f1).sum::<f64>() / with_positives.len() as f64))
}

/// F-beta: beta < 1 weighs precision more (a false alarm costs more than a miss).
pub fn f_beta(m: &BinaryMetrics, beta: f64) -> f64 {
    let b2 = beta * beta;
    let denom = b2 * m.precision + m.recall;
    if denom == 0.0 { 0.0 } else { (1.0 + b2) * m.precision * m.recall / denom }
}

/// What one point of neutral text flagged over budget costs in F-beta points, when a threshold
/// is chosen: false alarms on everyday text cost the agent's trust more than a missed borderline
/// case.
pub const NEUTRAL_PENALTY: f64 = 4.0;

/// The threshold with the highest mean F-beta over the groups with positives, less
/// `NEUTRAL_PENALTY` × the excess of the groups without positives' mean false-positive rate over
/// `budget`. `None` without positives.
pub fn best_budgeted_threshold(groups: &[&Scored], budget: f64, beta: f64) -> Option<f32> {
    let (with, without): (Vec<&Scored>, Vec<&Scored>) = groups.iter().copied().partition(|(_, truth)| truth.iter().any(|&t| t));
    if with.is_empty() {
        return None;
    }
    Some(best_threshold(|t| {
        let f1 = with.iter().map(|(s, truth)| f_beta(&binary_metrics(s, truth, t), beta)).sum::<f64>() / with.len() as f64;
        let fpr = if without.is_empty() {
            0.0
        } else {
            without.iter().map(|(s, _)| s.iter().filter(|&&x| x >= t).count() as f64 / s.len().max(1) as f64).sum::<f64>() / without.len() as f64
        };
        f1 - NEUTRAL_PENALTY * (fpr - budget).max(0.0)
    }))
}

/// The point of the 0.02 grid in 0.02..=0.98 where `objective` is highest (ties: the lower one).
fn best_threshold(objective: impl Fn(f32) -> f64) -> f32 {
    let mut best = (0.02, f64::NEG_INFINITY);
    for t in (1..50).map(|i| i as f32 * 0.02) {
        let value = objective(t);
        if value > best.1 {
            best = (t, value);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_rule_gives_a_small_set_an_equal_say() {
        // A big set best cut at 0.7, a small one at 0.3: pooled follows the big one.
        let big: Scored = ((0..100).map(|i| if i < 50 { 0.6 } else { 0.8 }).collect(), (0..100).map(|i| i >= 50).collect());
        let small: Scored = (vec![0.1, 0.4, 0.4], vec![false, true, true]);
        let pooled_scores: Vec<f32> = big.0.iter().chain(&small.0).copied().collect();
        let pooled_truth: Vec<bool> = big.1.iter().chain(&small.1).copied().collect();
        let pooled = best_f1_threshold(&pooled_scores, &pooled_truth).unwrap();
        assert!(pooled > 0.6, "{pooled}");
        let mean = best_mean_f1_threshold(&[big.clone(), small.clone()]).unwrap();
        assert!(mean > 0.1 && mean < 0.4, "{mean}");
        assert_eq!(best_mean_f1_threshold(&[(vec![0.5], vec![false])]), None);
    }

    #[test]
    fn the_budget_raises_a_threshold_that_flags_too_much_neutral_text() {
        // F1 alone is best at 0.3; neutral text scores 0.35 a third of the time, so the budget
        // moves the cut above it.
        let labelled: Scored = (vec![0.2, 0.4, 0.5, 0.9, 0.9], vec![false, true, true, true, true]);
        let neutral: Scored = (vec![0.1, 0.1, 0.35, 0.1, 0.1, 0.35], vec![false; 6]);
        let free = best_budgeted_threshold(&[&labelled], 0.02, 1.0).unwrap();
        let held = best_budgeted_threshold(&[&labelled, &neutral], 0.02, 1.0).unwrap();
        assert!(free < 0.35 && held > 0.35, "{free} {held}");
        assert_eq!(best_budgeted_threshold(&[&neutral], 0.02, 1.0), None);
    }

    #[test]
    fn calibration_error_is_the_weighted_gap_between_scores_and_outcomes() {
        // A quarter of the 0.25s are positive, all the 0.95s: perfectly calibrated.
        let scores = [0.25f32, 0.25, 0.25, 0.25, 0.95, 0.95];
        let truth = [true, false, false, false, true, true];
        assert!(calibration_error(&scores, &truth, 10) < 0.05 + 1e-9);
        // Confident and always wrong.
        assert!((calibration_error(&[1.0, 0.0], &[false, true], 10) - 1.0).abs() < 1e-9);
        // Scores of 0.4 where half are positive: off by 0.1.
        assert!((calibration_error(&[0.4, 0.4], &[true, false], 10) - 0.1).abs() < 1e-6);
        assert_eq!(calibration_error(&[], &[], 10), 0.0);
    }

    #[test]
    fn perfect_ranking_has_auc_one_and_inverted_zero() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let t = [false, false, true, true];
        assert!((roc_auc(&s, &t).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5], &[true]), None);
    }

    #[test]
    fn f1_and_macro_f1_by_hand() {
        // tp=1 fp=1 fn=1 tn=1
        let m = binary_metrics(&[0.9, 0.8, 0.1, 0.2], &[true, false, true, false], 0.5);
        assert_eq!((m.precision, m.recall, m.f1, m.macro_f1, m.accuracy), (0.5, 0.5, 0.5, 0.5, 0.5));
        assert_eq!(m.positives, 2);
        assert_eq!(m.false_positive_rate, 0.5);
    }

    #[test]
    fn threshold_search_separates_the_classes() {
        let t = best_f1_threshold(&[0.1, 0.2, 0.7, 0.9], &[false, false, true, true]).unwrap();
        assert!(t > 0.2 && t <= 0.7, "{t}");
        assert_eq!(best_f1_threshold(&[0.1], &[false]), None);
    }
}
