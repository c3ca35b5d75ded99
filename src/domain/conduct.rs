//! Agent conduct on agent turns, for QA (seed 003, "forbidden practices in conflicts"): rudeness
//! toward the customer, blaming colleagues or suppliers, questioning the customer's word, and a
//! canned reply to a complaint. These are flags in the QA report, never guidance.
//!
//! Rudeness comes from the classifier's own scores. The other kinds are recognised by example
//! (`models/conduct.toml`): the examples are embedded by the same encoder when the model loads
//! (the mean of layer 6's output; adapters that reach below it move it, so the thresholds are
//! tuned for each set of adapters),
//! and an agent turn takes a kind when its nearest example of that kind is close enough and
//! closer than its nearest neutral example by a margin; the nearest kind wins. Examples in three languages carry over to
//! others because the encoder's embeddings are multilingual.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::labels::{Label, LabelScores};
use crate::model::{FeatureExtractor, ModelError};

/// The conduct examples shipped with calmline, embedded in the binary.
pub const EMBEDDED_CONDUCT: &str = include_str!("../../models/conduct.toml");

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumCount,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ConductKind {
    RudeToCustomer,
    BlamesOthers,
    QuestionsCustomer,
    CannedReply,
}

impl ConductKind {
    pub const ALL: [ConductKind; <ConductKind as strum::EnumCount>::COUNT] =
        *<ConductKind as strum::VariantArray>::VARIANTS.first_chunk().expect("VARIANTS has COUNT entries");

    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConductError {
    #[error("conduct file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("embedding the conduct examples: {0}")]
    Model(#[from] ModelError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConductFile {
    version: String,
    min_similarity: f32,
    margin: f32,
    rude_at: f32,
    kinds: BTreeMap<String, KindFile>,
    neutral: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct KindFile {
    source: String,
    #[serde(flatten)]
    languages: BTreeMap<String, Vec<String>>,
}

/// The judge's thresholds (`models/conduct.toml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_similarity: f32,
    pub margin: f32,
    pub rude_at: f32,
}

/// What the judge needs to know about one agent turn.
pub struct AgentTurn<'a> {
    /// The turn's stable sentence embedding (`infer::Scored::embedding`).
    pub embedding: &'a [f32],
    /// The classifier's scores and flags on the agent's own words.
    pub scores: &'a LabelScores,
    pub flags: &'a [Label],
    /// The customer's previous turn was a complaint (flagged by the classifier).
    pub after_complaint: bool,
    /// The agent already sent this exact text earlier in the conversation.
    pub repeats_earlier_reply: bool,
}

/// How close a turn came to each kind, for reports and threshold tuning.
#[derive(Debug, Clone, Copy, Default)]
pub struct Closeness {
    /// Nearest example of the kind.
    pub kind: f32,
    /// Nearest neutral example.
    pub neutral: f32,
}

pub struct ConductModel {
    pub version: String,
    pub min_similarity: f32,
    pub margin: f32,
    /// Rudeness score from which an agent turn counts as rude (an insult flag always does).
    pub rude_at: f32,
    /// Seed reference per kind, for reports.
    pub sources: BTreeMap<ConductKind, String>,
    examples: Vec<(Option<ConductKind>, Vec<f32>)>,
}

impl ConductModel {
    /// The embedded examples, embedded by `extractor`.
    pub fn embedded(extractor: &FeatureExtractor) -> Result<ConductModel, ConductError> {
        ConductModel::parse("models/conduct.toml (embedded)", EMBEDDED_CONDUCT, extractor)
    }

    fn parse(path: &str, text: &str, extractor: &FeatureExtractor) -> Result<ConductModel, ConductError> {
        let invalid = |message: String| ConductError::Invalid { path: path.to_string(), message };
        let file: ConductFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if [file.min_similarity, file.margin, file.rude_at].iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(invalid("min_similarity, margin and rude_at must lie in 0..=1".into()));
        }
        let mut texts: Vec<(Option<ConductKind>, &str)> = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, kind_file) in &file.kinds {
            let kind = name
                .parse::<ConductKind>()
                .ok()
                .filter(|k| *k != ConductKind::RudeToCustomer)
                .ok_or_else(|| invalid(format!("unknown kind {name:?} (blames_others, questions_customer and canned_reply are recognised by example)")))?;
            sources.insert(kind, kind_file.source.clone());
            texts.extend(kind_file.languages.values().flatten().map(|t| (Some(kind), t.as_str())));
        }
        texts.extend(file.neutral.values().flatten().map(|t| (None, t.as_str())));
        if !texts.iter().any(|(k, _)| k.is_none()) {
            return Err(invalid("[neutral] needs at least one example".into()));
        }
        let plain: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
        let embeddings = extractor.stable_embed(&plain)?;
        let examples = texts.into_iter().map(|(k, _)| k).zip(embeddings).collect();
        sources.insert(ConductKind::RudeToCustomer, "003 §5 (no counter-accusations or insults)".to_string());
        Ok(ConductModel { version: file.version, min_similarity: file.min_similarity, margin: file.margin, rude_at: file.rude_at, sources, examples })
    }

    /// Nearest example of `kind` and nearest neutral example.
    pub fn closeness(&self, embedding: &[f32], kind: ConductKind) -> Closeness {
        let mut c = Closeness { kind: -1.0, neutral: -1.0 };
        for (k, example) in &self.examples {
            let sim = dot(embedding, example);
            match k {
                Some(k) if *k == kind => c.kind = c.kind.max(sim),
                None => c.neutral = c.neutral.max(sim),
                _ => {}
            }
        }
        c
    }

    /// The conduct flags of one agent turn, in `ConductKind` order.
    pub fn judge(&self, turn: &AgentTurn) -> Vec<ConductKind> {
        self.judge_with(turn, Thresholds { min_similarity: self.min_similarity, margin: self.margin, rude_at: self.rude_at })
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds { min_similarity: self.min_similarity, margin: self.margin, rude_at: self.rude_at }
    }

    /// `judge` with other thresholds (for choosing them on dev data).
    pub fn judge_with(&self, turn: &AgentTurn, t: Thresholds) -> Vec<ConductKind> {
        let Thresholds { min_similarity, margin, rude_at } = t;
        let mut kinds = Vec::new();
        // Agents' replies are polite in form, so rudeness needs the customer's flag and, on top,
        // a score of `rude_at` (chosen on dev, see docs/AGENT-CONDUCT.md): never less than
        // what flags a customer.
        if turn.flags.contains(&Label::Insult) || (turn.flags.contains(&Label::Rudeness) && turn.scores.get(Label::Rudeness) >= rude_at) {
            kinds.push(ConductKind::RudeToCustomer);
        }
        // Nearest example wins: the kinds are alternatives (a reply that blames the courier is
        // not also doubting the customer), and neutral replies compete with all of them.
        let best = [ConductKind::BlamesOthers, ConductKind::QuestionsCustomer, ConductKind::CannedReply]
            .into_iter()
            .filter(|_| !turn.embedding.is_empty())
            .map(|kind| (kind, self.closeness(turn.embedding, kind)))
            .max_by(|a, b| a.1.kind.total_cmp(&b.1.kind))
            .filter(|(_, c)| c.kind >= min_similarity && c.kind - c.neutral >= margin)
            .map(|(kind, _)| kind);
        // A stock phrase is fine after thanks; after a complaint it abandons the dialogue.
        let canned = turn.after_complaint && (best == Some(ConductKind::CannedReply) || turn.repeats_earlier_reply);
        match best {
            Some(ConductKind::CannedReply) | None => {}
            Some(kind) => kinds.push(kind),
        }
        if canned {
            kinds.push(ConductKind::CannedReply);
        }
        kinds
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Precision and recall of the conduct judge on the project's labelled agent turns
/// (`data/agent-conduct/turns.jsonl`), and the choice of its thresholds on their dev split.
pub mod evaluation {
    use std::collections::BTreeMap;
    use std::path::Path;

    use anyhow::Context;
    use serde::Deserialize;

    use super::{AgentTurn, ConductKind, ConductModel, Thresholds};
    use crate::domain::labels::LabelScores;
    use crate::model::Classifier;

    /// One labelled agent turn, as read.
    #[derive(Deserialize)]
    pub struct Row {
        pub id: String,
        pub lang: String,
        pub split: String,
        /// The customer's turn the reply answers.
        pub customer_before: String,
        pub text: String,
        pub labels: Vec<String>,
    }

    /// One labelled agent turn, scored once; judged for any thresholds.
    #[derive(Clone)]
    pub struct Example {
        pub id: String,
        pub lang: String,
        pub split: String,
        pub labels: Vec<ConductKind>,
        after_complaint: bool,
        scores: LabelScores,
        flags: Vec<crate::domain::labels::Label>,
        embedding: Vec<f32>,
    }

    impl Example {
        pub fn judge(&self, model: &ConductModel, t: Thresholds) -> Vec<ConductKind> {
            let turn = AgentTurn {
                embedding: &self.embedding,
                scores: &self.scores,
                flags: &self.flags,
                after_complaint: self.after_complaint,
                repeats_earlier_reply: false,
            };
            model.judge_with(&turn, t)
        }
    }

    pub fn load(path: &Path, classifier: &Classifier) -> anyhow::Result<Vec<Example>> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let rows: Vec<Row> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1)))
            .collect::<anyhow::Result<_>>()?;
        score(rows, classifier)
    }

    /// Scores labelled agent turns once (the reply, and the customer's turn before it).
    pub fn score(rows: Vec<Row>, classifier: &Classifier) -> anyhow::Result<Vec<Example>> {
        let customers: Vec<&str> = rows.iter().map(|r| r.customer_before.as_str()).collect();
        let agents: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let customer_scores = classifier.scores(&customers)?;
        let agent_scores = classifier.scores(&agents)?;
        let embeddings = classifier.extractor.stable_embed(&agents)?;
        rows.into_iter()
            .zip(customer_scores)
            .zip(agent_scores)
            .zip(embeddings)
            .map(|(((row, before), own), embedding)| {
                let labels = row
                    .labels
                    .iter()
                    .map(|l| l.parse::<ConductKind>().with_context(|| format!("{}: unknown kind {l:?}", row.id)))
                    .collect::<anyhow::Result<_>>()?;
                let (after_complaint, flags) = (!classifier.head.flags(&before, &row.lang).is_empty(), classifier.head.flags(&own, &row.lang));
                Ok(Example { id: row.id, lang: row.lang, split: row.split, labels, after_complaint, flags, scores: own, embedding })
            })
            .collect()
    }

    #[derive(Debug, Default, Clone, Copy)]
    pub struct Counts {
        pub tp: u32,
        pub fp: u32,
        pub fn_: u32,
    }

    impl Counts {
        pub fn precision(&self) -> f64 {
            if self.tp + self.fp == 0 { 0.0 } else { f64::from(self.tp) / f64::from(self.tp + self.fp) }
        }
        pub fn recall(&self) -> f64 {
            if self.tp + self.fn_ == 0 { 0.0 } else { f64::from(self.tp) / f64::from(self.tp + self.fn_) }
        }
        pub fn f1(&self) -> f64 {
            let (p, r) = (self.precision(), self.recall());
            if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
        }
    }

    /// Counts per (language, kind) over `split`, plus "all" languages.
    pub fn count(examples: &[Example], model: &ConductModel, split: &str, t: Thresholds) -> BTreeMap<(String, ConductKind), Counts> {
        let mut counts: BTreeMap<(String, ConductKind), Counts> = BTreeMap::new();
        for e in examples.iter().filter(|e| e.split == split) {
            let got = e.judge(model, t);
            for kind in ConductKind::ALL {
                let (truth, said) = (e.labels.contains(&kind), got.contains(&kind));
                for lang in [e.lang.clone(), "all".to_string()] {
                    let c = counts.entry((lang, kind)).or_default();
                    match (truth, said) {
                        (true, true) => c.tp += 1,
                        (false, true) => c.fp += 1,
                        (true, false) => c.fn_ += 1,
                        (false, false) => {}
                    }
                }
            }
        }
        counts
    }

    /// Replies that should get no flag, and how many did, by kind.
    #[derive(Debug, Default, Clone)]
    pub struct FalseAlarms {
        pub replies: u32,
        pub flagged: u32,
        pub by_kind: BTreeMap<ConductKind, u32>,
    }

    impl FalseAlarms {
        pub fn rate(&self) -> f64 {
            f64::from(self.flagged) / f64::from(self.replies.max(1))
        }
    }

    /// Flags on `split`'s unlabelled replies (all of them false alarms), by language and "all".
    pub fn false_alarms(examples: &[Example], model: &ConductModel, split: &str, t: Thresholds) -> BTreeMap<String, FalseAlarms> {
        let mut alarms: BTreeMap<String, FalseAlarms> = BTreeMap::new();
        for e in examples.iter().filter(|e| e.split == split && e.labels.is_empty()) {
            let got = e.judge(model, t);
            for lang in [e.lang.clone(), "all".to_string()] {
                let a = alarms.entry(lang).or_default();
                a.replies += 1;
                a.flagged += u32::from(!got.is_empty());
                for kind in &got {
                    *a.by_kind.entry(*kind).or_default() += 1;
                }
            }
        }
        alarms
    }

    /// Mean F1 over the kinds, all languages.
    pub fn macro_f1(counts: &BTreeMap<(String, ConductKind), Counts>) -> f64 {
        let f1s: Vec<f64> = ConductKind::ALL.iter().filter_map(|k| counts.get(&("all".to_string(), *k))).map(Counts::f1).collect();
        f1s.iter().sum::<f64>() / f1s.len().max(1) as f64
    }

    /// The thresholds with the best macro F1 on the dev split (ties: the first, most lenient).
    /// `rude_at` decides only rudeness and the similarity thresholds only the other kinds, so
    /// each is chosen on its own kinds' F1: the same optimum as the joint grid, at a tenth of it.
    pub fn tune(examples: &[Example], model: &ConductModel) -> (Thresholds, f64) {
        let f1_of = |t: Thresholds, kinds: &[ConductKind]| {
            let counts = count(examples, model, "dev", t);
            kinds.iter().map(|k| counts.get(&("all".to_string(), *k)).map_or(0.0, Counts::f1)).sum::<f64>()
        };
        let committed = model.thresholds();
        let mut best_rude = (committed.rude_at, -1.0);
        for r in 0..=9 {
            let rude_at = 0.5 + 0.05 * r as f32;
            let f1 = f1_of(Thresholds { rude_at, ..committed }, &[ConductKind::RudeToCustomer]);
            if f1 > best_rude.1 + 1e-9 {
                best_rude = (rude_at, f1);
            }
        }
        let similar = [ConductKind::BlamesOthers, ConductKind::QuestionsCustomer, ConductKind::CannedReply];
        let mut best_similar = (committed, -1.0);
        for s in 0..=30 {
            for m in 0..=12 {
                let t = Thresholds { min_similarity: 0.75 + 0.01 * s as f32, margin: 0.005 * m as f32, ..committed };
                let f1 = f1_of(t, &similar);
                if f1 > best_similar.1 + 1e-9 {
                    best_similar = (t, f1);
                }
            }
        }
        let best = Thresholds { rude_at: best_rude.0, ..best_similar.0 };
        (best, macro_f1(&count(examples, model, "dev", best)))
    }

    pub fn markdown(counts: &BTreeMap<(String, ConductKind), Counts>) -> String {
        let mut out = String::from("| language | conduct | positives | precision | recall | F1 |\n|---|---|---:|---:|---:|---:|\n");
        for ((lang, kind), c) in counts {
            out += &format!("| {lang} | {} | {} | {:.2} | {:.2} | {:.2} |\n", kind.name(), c.tp + c.fn_, c.precision(), c.recall(), c.f1());
        }
        out
    }
}
