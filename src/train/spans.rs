//! The span head (`model::spans`): trained on SemEval-2021 Task 5 (Toxic Spans; Pavlopoulos et
//! al. 2021) and scored by the task's own measure — per post, F1 of the predicted against the
//! gold character offsets (1 when both are empty, 0 when only one is), averaged over posts.
//!
//! Training reads `tsd_train.csv`: every token of a post is a positive when one of its
//! characters is in the gold spans. The threshold is chosen on `tsd_trial.csv`, the figures
//! are reported on `tsd_test.csv`. Every post there is toxic, so two readings are reported:
//! *localisation* (the spans of every post: how well the words are found once a post is known
//! to be toxic) and *as served* (spans only where calmline flags a label they are given under,
//! none elsewhere — what a user sees).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;

use super::Adam;
use crate::domain::labels::Label;
use crate::domain::spans::{select, span_label};
use crate::model::Classifier;
use crate::model::spans::{SpanHead, TokenFeatures, word_scores};

/// One post: its text, gold character offsets, its tokens' features, and whether calmline
/// flags it with a label that spans are given under.
struct Post {
    text: String,
    gold: BTreeSet<usize>,
    tokens: TokenFeatures,
    flagged: bool,
}

/// Reads `tsd_<split>.csv` (columns `spans`, a JSON list of character offsets, and `text`).
fn read(path: &Path, limit: usize) -> Result<Vec<(String, BTreeSet<usize>)>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, row) in reader.records().take(limit).enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        let gold: Vec<usize> = serde_json::from_str(&row[0]).with_context(|| format!("{}: row {}: spans", path.display(), n + 2))?;
        out.push((row[1].to_string(), gold.into_iter().collect()));
    }
    Ok(out)
}

fn prepare(classifier: &Classifier, rows: Vec<(String, BTreeSet<usize>)>) -> Result<Vec<Post>> {
    let mut posts = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let tokens = classifier.token_features(&texts)?;
        let scores = classifier.scores(&texts)?;
        for (((text, gold), tokens), scores) in chunk.iter().zip(tokens).zip(scores) {
            let flagged = span_label(&classifier.head.flags(&scores, "en"), &scores).is_some();
            posts.push(Post { text: text.clone(), gold: gold.clone(), tokens, flagged });
        }
    }
    Ok(posts)
}

/// The code-point offsets of a byte range of `text`.
fn chars_of(text: &str, (from, to): (usize, usize)) -> std::ops::Range<usize> {
    let begin = text[..from].chars().count();
    begin..begin + text[from..to].chars().count()
}

fn f1(predicted: &BTreeSet<usize>, gold: &BTreeSet<usize>) -> f64 {
    if predicted.is_empty() && gold.is_empty() {
        return 1.0;
    }
    let hit = predicted.intersection(gold).count() as f64;
    if hit == 0.0 { 0.0 } else { 2.0 * hit / (predicted.len() + gold.len()) as f64 }
}

/// Mean character F1 at `threshold`; `served`: only flagged posts get spans.
fn mean_f1(posts: &[Post], head: &SpanHead, threshold: f32, served: bool) -> f64 {
    let total: f64 = posts
        .iter()
        .map(|p| {
            let predicted: BTreeSet<usize> = if served && !p.flagged {
                BTreeSet::new()
            } else {
                let words = word_scores(&p.text, p.tokens.iter().map(|(f, range)| (head.probability(f), *range)));
                select(&p.text, &words, threshold, Label::Insult).into_iter().flat_map(|s| s.begin..s.end).collect()
            };
            f1(&predicted, &p.gold)
        })
        .sum();
    total / posts.len().max(1) as f64
}

/// Fits the logistic output on the training posts' tokens: full-batch Adam, L2 on the weights.
fn fit(posts: &[Post], steps: usize) -> Result<(Vec<f32>, f32)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for p in posts {
        for (features, range) in &p.tokens {
            let Some(range) = range else { continue };
            x.extend_from_slice(features);
            y.push(chars_of(&p.text, *range).any(|c| p.gold.contains(&c)) as u8 as f32);
        }
    }
    let (n, dim) = (y.len(), x.len() / y.len().max(1));
    anyhow::ensure!(n > 0, "no training tokens");
    let positives = y.iter().sum::<f32>();
    eprintln!("span head: {n} tokens, {positives} toxic");
    let device = Device::Cpu;
    let x = Tensor::from_vec(x, (n, dim), &device)?;
    let xt = x.t()?.contiguous()?;
    let y = Tensor::from_vec(y, (n, 1), &device)?;
    let mut w = Tensor::zeros((dim, 1), candle_core::DType::F32, &device)?;
    let mut b = Tensor::zeros(1, candle_core::DType::F32, &device)?;
    let (mut adam_w, mut adam_b) = (Adam::new(&w)?, Adam::new(&b)?);
    for step in 1..=steps {
        let probs = candle_nn::ops::sigmoid(&x.matmul(&w)?.broadcast_add(&b)?)?;
        let grad = ((&probs - &y)? / n as f64)?;
        let grad_w = (xt.matmul(&grad)? + (&w * 2e-4)?)?;
        w = adam_w.step(&w, &grad_w, 0.01, step)?;
        b = adam_b.step(&b, &grad.sum(0)?, 0.01, step)?;
    }
    Ok((w.flatten_all()?.to_vec1::<f32>()?, b.to_vec1::<f32>()?[0]))
}

#[derive(Debug, Serialize)]
pub struct SpanReport {
    pub data: &'static str,
    pub threshold: f32,
    pub trial_posts: usize,
    pub test_posts: usize,
    /// Test posts calmline flags with a label spans are given under (English thresholds).
    pub test_posts_flagged: usize,
    pub trial_f1_localisation: f64,
    pub test_f1_localisation: f64,
    pub test_f1_as_served: f64,
}

const DIR: &str = "en_toxic_spans/SemEval2021";

fn report(head: &SpanHead, trial: &[Post], test: &[Post]) -> SpanReport {
    SpanReport {
        data: "SemEval-2021 Task 5 (en_toxic_spans): trained on tsd_train.csv, threshold chosen on tsd_trial.csv, reported on tsd_test.csv",
        threshold: head.threshold,
        trial_posts: trial.len(),
        test_posts: test.len(),
        test_posts_flagged: test.iter().filter(|p| p.flagged).count(),
        trial_f1_localisation: mean_f1(trial, head, head.threshold, false),
        test_f1_localisation: mean_f1(test, head, head.threshold, false),
        test_f1_as_served: mean_f1(test, head, head.threshold, true),
    }
}

/// Trains the span head on the first `train_posts` training posts of `data_dir`'s SemEval set.
pub fn train(classifier: &Classifier, data_dir: &Path, train_posts: usize, steps: usize) -> Result<(SpanHead, SpanReport)> {
    let dir = data_dir.join(DIR);
    let train = prepare(classifier, read(&dir.join("tsd_train.csv"), train_posts)?)?;
    let (weight, bias) = fit(&train, steps)?;
    drop(train);
    let trial = prepare(classifier, read(&dir.join("tsd_trial.csv"), usize::MAX)?)?;
    let mut head = SpanHead {
        model_version: classifier.model_version().to_string(),
        trained: serde_json::json!({
            "data": "SemEval-2021 Task 5 toxic spans (en_toxic_spans, CC0): tsd_train.csv",
            "train_posts": train_posts,
            "features": "per token: the last layer and the mean of the upper layers, each L2-normalised",
            "optimiser": format!("full-batch Adam, {steps} steps, lr 0.01, L2 1e-4"),
            "threshold": "max mean character F1 on tsd_trial.csv (every post), over 0.05..0.95",
        }),
        threshold: 0.5,
        bias,
        weight,
    };
    let candidates: Vec<f32> = (1..20).map(|i| i as f32 * 0.05).collect();
    head.threshold = candidates.into_iter().max_by(|&a, &b| mean_f1(&trial, &head, a, false).total_cmp(&mean_f1(&trial, &head, b, false))).expect("thresholds");
    let test = prepare(classifier, read(&dir.join("tsd_test.csv"), usize::MAX)?)?;
    let report = report(&head, &trial, &test);
    Ok((head, report))
}

/// Scores the classifier's span head on SemEval's trial and test posts (the first `limit`).
pub fn evaluate(classifier: &Classifier, data_dir: &Path, limit: usize) -> Result<SpanReport> {
    let head = classifier.spans.as_ref().context("the model has no span head (span-head.json); run `calmline train-spans`")?;
    let dir = data_dir.join(DIR);
    let trial = prepare(classifier, read(&dir.join("tsd_trial.csv"), limit)?)?;
    let test = prepare(classifier, read(&dir.join("tsd_test.csv"), limit)?)?;
    Ok(report(head, &trial, &test))
}

#[cfg(test)]
mod tests {
    use super::{chars_of, f1};
    use std::collections::BTreeSet;

    #[test]
    fn semeval_f1_per_post() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(f1(&set(&[]), &set(&[])), 1.0);
        assert_eq!(f1(&set(&[1]), &set(&[])), 0.0);
        assert_eq!(f1(&set(&[]), &set(&[1])), 0.0);
        assert_eq!(f1(&set(&[1, 2, 3, 4]), &set(&[3, 4, 5, 6])), 0.5);
    }

    #[test]
    fn byte_ranges_become_code_points() {
        assert_eq!(chars_of("héllo idiot", (7, 12)), 6..11);
    }
}
