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
use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use super::Adam;
use crate::domain::labels::Label;
use crate::domain::spans::{SpanCut, WordScore};
use crate::domain::spans::{select, span_label};
use crate::model::Classifier;
use crate::model::spans::{HiddenLayer, SpanHead, TokenFeatures, word_scores};

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

/// Each post's words scored by `head` (the same at every cut).
fn scored_words(posts: &[Post], head: &SpanHead) -> Vec<Vec<WordScore>> {
    posts.iter().map(|p| word_scores(&p.text, p.tokens.iter().map(|(f, range)| (head.probability(f), *range)))).collect()
}

/// Mean character F1 at `cut` of posts whose words are scored; `served`: only flagged posts get
/// spans.
fn mean_f1(posts: &[Post], words: &[Vec<WordScore>], cut: SpanCut, served: bool) -> f64 {
    let total: f64 = posts
        .iter()
        .zip(words)
        .map(|(p, words)| {
            let predicted: BTreeSet<usize> = if served && !p.flagged {
                BTreeSet::new()
            } else {
                select(&p.text, words, cut, Label::Insult).into_iter().flat_map(|s| s.begin..s.end).collect()
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

/// Fits a hidden ReLU layer of `units` and the logistic output on the training posts' tokens:
/// mini-batches of `BATCH` tokens, Adam, `epochs` passes, weights drawn from a fixed seed (the
/// same head from the same data).
fn fit_hidden(posts: &[Post], units: usize, epochs: usize) -> Result<(HiddenLayer, Vec<f32>, f32)> {
    const BATCH: usize = 4096;
    const LEARNING_RATE: f64 = 3e-3;
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
    eprintln!("span head: {n} tokens, {} toxic; {units} hidden units, {epochs} epochs", y.iter().sum::<f32>());
    let device = Device::Cpu;
    let x = Tensor::from_vec(x, (n, dim), &device)?;
    let y = Tensor::from_vec(y, (n, 1), &device)?;
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let w1: Vec<f32> = (0..dim * units).map(|_| random.uniform((6.0 / dim as f32).sqrt())).collect();
    let w2: Vec<f32> = (0..units).map(|_| random.uniform((6.0 / units as f32).sqrt())).collect();
    let w1 = Var::from_tensor(&Tensor::from_vec(w1, (dim, units), &device)?)?;
    let b1 = Var::from_tensor(&Tensor::zeros(units, candle_core::DType::F32, &device)?)?;
    let w2 = Var::from_tensor(&Tensor::from_vec(w2, (units, 1), &device)?)?;
    let b2 = Var::from_tensor(&Tensor::zeros(1, candle_core::DType::F32, &device)?)?;
    let params = [&w1, &b1, &w2, &b2];
    let mut adams = params.iter().map(|p| Adam::new(p.as_tensor())).collect::<candle_core::Result<Vec<_>>>()?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut step = 0;
    for epoch in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (random.next() % (i as u64 + 1)) as usize);
        }
        let mut total = 0.0;
        for picks in order.chunks(BATCH) {
            step += 1;
            let picks = Tensor::from_slice(picks, picks.len(), &device)?;
            let (xb, yb) = (x.index_select(&picks, 0)?, y.index_select(&picks, 0)?);
            let z = xb.matmul(w1.as_tensor())?.broadcast_add(b1.as_tensor())?.relu()?.matmul(w2.as_tensor())?.broadcast_add(b2.as_tensor())?;
            // Binary cross-entropy on the logits, stably: max(z, 0) − z·y + ln(1 + e^−|z|).
            let loss = ((z.relu()? - (&z * &yb)?)? + ((z.abs()?.neg()?.exp()? + 1.0)?.log()?))?.mean_all()?;
            total += loss.to_scalar::<f32>()? as f64;
            let grads = loss.backward()?;
            for (param, adam) in params.iter().zip(&mut adams) {
                let grad = grads.get(param.as_tensor()).context("a parameter without a gradient")?;
                let grad = if param.as_tensor().dims() == w1.as_tensor().dims() { (grad + (param.as_tensor() * 2e-4)?)? } else { grad.clone() };
                param.set(&adam.step(param.as_tensor(), &grad, LEARNING_RATE, step)?)?;
            }
        }
        eprintln!("epoch {}: mean loss {:.4}", epoch + 1, total / n.div_ceil(BATCH) as f64);
    }
    let hidden = HiddenLayer { units, weight: w1.as_tensor().t()?.contiguous()?.flatten_all()?.to_vec1()?, bias: b1.as_tensor().to_vec1()? };
    Ok((hidden, w2.as_tensor().flatten_all()?.to_vec1()?, b2.as_tensor().to_vec1::<f32>()?[0]))
}

/// A fixed sequence of pseudo-random numbers (xorshift64): the same weights and token order on
/// every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [−scale, scale).
    fn uniform(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

#[derive(Debug, Serialize)]
pub struct SpanReport {
    pub data: &'static str,
    pub threshold: f32,
    /// The least a post's most likely word must score for it to get spans.
    pub min_peak: f32,
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
    let (trial_words, test_words) = (scored_words(trial, head), scored_words(test, head));
    SpanReport {
        data: "SemEval-2021 Task 5 (en_toxic_spans): trained on tsd_train.csv, threshold chosen on tsd_trial.csv, reported on tsd_test.csv",
        threshold: head.threshold,
        trial_posts: trial.len(),
        test_posts: test.len(),
        test_posts_flagged: test.iter().filter(|p| p.flagged).count(),
        min_peak: head.min_peak,
        trial_f1_localisation: mean_f1(trial, &trial_words, head.cut(), false),
        test_f1_localisation: mean_f1(test, &test_words, head.cut(), false),
        test_f1_as_served: mean_f1(test, &test_words, head.cut(), true),
    }
}

/// Trains the span head on the first `train_posts` training posts of `data_dir`'s SemEval set.
/// `hidden_units` 0: one logistic output over the features, fitted in `steps` full-batch
/// steps; else a hidden layer of that many units, `epochs` passes of mini-batches.
pub fn train(classifier: &Classifier, data_dir: &Path, train_posts: usize, steps: usize, hidden_units: usize, epochs: usize) -> Result<(SpanHead, SpanReport)> {
    let dir = data_dir.join(DIR);
    let train = prepare(classifier, read(&dir.join("tsd_train.csv"), train_posts)?)?;
    let (hidden, weight, bias) = match hidden_units {
        0 => {
            let (weight, bias) = fit(&train, steps)?;
            (None, weight, bias)
        }
        units => {
            let (hidden, weight, bias) = fit_hidden(&train, units, epochs)?;
            (Some(hidden), weight, bias)
        }
    };
    let optimiser = match hidden_units {
        0 => format!("full-batch Adam, {steps} steps, lr 0.01, L2 1e-4"),
        units => format!("{units} ReLU units; Adam on mini-batches of 4,096 tokens, {epochs} epochs, lr 0.003, L2 1e-4 on the hidden weights"),
    };
    drop(train);
    let trial = prepare(classifier, read(&dir.join("tsd_trial.csv"), usize::MAX)?)?;
    let mut head = SpanHead {
        model_version: classifier.model_version().to_string(),
        trained: serde_json::json!({
            "data": "SemEval-2021 Task 5 toxic spans (en_toxic_spans, CC0): tsd_train.csv",
            "train_posts": train_posts,
            "features": "per token: the last layer and the mean of the upper layers, each L2-normalised",
            "optimiser": optimiser,
            "threshold": "max mean character F1 on tsd_trial.csv (every post), over 0.05..0.95 by 0.01; then min_peak likewise over threshold..0.99",
        }),
        threshold: 0.5,
        min_peak: 0.0,
        bias,
        weight,
        hidden,
    };
    let trial_words = scored_words(&trial, &head);
    let best = |candidates: Vec<SpanCut>| {
        let f1_at = |cut| mean_f1(&trial, &trial_words, cut, false);
        candidates.into_iter().max_by(|&a, &b| f1_at(a).total_cmp(&f1_at(b))).expect("candidates")
    };
    let threshold = best((5..=95).map(|i| SpanCut { threshold: i as f32 / 100.0, min_peak: 0.0 }).collect()).threshold;
    let first = (threshold * 100.0).round() as usize;
    let cut = best((first..=99).map(|i| SpanCut { threshold, min_peak: i as f32 / 100.0 }).collect());
    (head.threshold, head.min_peak) = (cut.threshold, cut.min_peak);
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
