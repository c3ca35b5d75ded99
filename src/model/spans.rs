//! Which words drove a flag: a span head reads the encoder's per-token outputs and scores each
//! token as toxic or not; a word is evidence when one of its tokens is.
//!
//! The head is one logistic output over the token-level counterpart of the label head's
//! features (`Encoder::token_features`), trained on SemEval-2021 Task 5's character-level toxic
//! spans (`calmline train-spans`) and carried to every language by the multilingual encoder.
//! One encoder pass over the text serves every word. Leaving words out and scoring again
//! (occlusion) was tried first: one pass per word, and on SemEval's trial posts a character F1
//! of 0.39 against the span head's (see the model card) — a rude sentence stays rude without
//! any one of its words.

use std::path::Path;

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

pub use super::error::SpanHeadError;
use super::gemm::{Activation, PackedWeights};
use super::{Classifier, ModelError};
use crate::domain::spans::{SpanCut, WordScore};

/// The span head's file, beside the label head.
pub const SPAN_HEAD_FILE: &str = "span-head.json";

/// Windows of a long text looked at for its words: the first four (about 2,000 tokens); a
/// longer text's later words get no spans, though its scores cover every window.
pub const SPAN_WINDOWS: usize = 4;

/// One logistic output per token (`models/span-head.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpanHead {
    pub model_version: String,
    /// What it was trained on and how its threshold was chosen.
    pub trained: serde_json::Value,
    /// A word is evidence when one of its tokens' probability reaches this.
    pub threshold: f32,
    /// A text gets spans only when its most likely word reaches this (at least `threshold`):
    /// a text whose words are all near the threshold is more often one with no toxic words.
    /// Heads saved before it have 0 (no such gate).
    #[serde(default)]
    pub min_peak: f32,
    pub bias: f32,
    /// The output's weights: over the features, or over the hidden layer's units.
    pub weight: Vec<f32>,
    /// A hidden layer (ReLU) between the token features and the output, if trained with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<HiddenLayer>,
}

/// `units` ReLU units over the token features: `weight` is `units` rows of the features' width.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HiddenLayer {
    pub units: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl SpanHead {
    /// The span head in `dir`, if it has one.
    pub fn load(dir: &Path) -> Result<Option<SpanHead>, ModelError> {
        let path = dir.join(SPAN_HEAD_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| SpanHeadError::Read { path: path.clone(), source })?;
        let head: SpanHead = serde_json::from_str(&text).map_err(|source| SpanHeadError::Parse { path: path.clone(), source })?;
        let invalid = |reason| ModelError::from(SpanHeadError::Invalid { path: path.clone(), reason });
        if !(0.0..=1.0).contains(&head.threshold) || !(0.0..=1.0).contains(&head.min_peak) || head.weight.iter().any(|w| !w.is_finite()) {
            return Err(invalid("threshold or min_peak outside [0, 1], or a weight not finite"));
        }
        if let Some(h) = &head.hidden {
            let shaped = h.units == head.weight.len() && h.bias.len() == h.units && h.units > 0 && h.weight.len() % h.units == 0;
            if !shaped || h.weight.iter().chain(&h.bias).any(|w| !w.is_finite()) {
                return Err(invalid("the hidden layer's shapes disagree with the output's, or a weight is not finite"));
            }
        }
        Ok(Some(head))
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(SPAN_HEAD_FILE), serde_json::to_string(self).map_err(std::io::Error::other)? + "\n")
    }

    /// How many features per token it reads.
    pub fn input_width(&self) -> usize {
        match &self.hidden {
            Some(h) => h.weight.len() / h.units,
            None => self.weight.len(),
        }
    }

    /// Where its word scores are cut into spans.
    pub fn cut(&self) -> SpanCut {
        SpanCut { threshold: self.threshold, min_peak: self.min_peak }
    }

    /// The head ready for whole batches of tokens: its hidden layer packed for calmline's GEMM.
    pub fn token_probe(&self) -> TokenProbe<'_> {
        let hidden = self.hidden.as_ref().map(|h| PackedWeights::pack(&h.weight, Some(&h.bias), h.units, h.weight.len() / h.units));
        TokenProbe { head: self, hidden }
    }

    /// The probability that a token with these features is toxic.
    pub fn probability(&self, features: &[f32]) -> f32 {
        match &self.hidden {
            None => self.output(features),
            Some(h) => {
                let width = h.weight.len() / h.units;
                let units: Vec<f32> = h.weight.chunks_exact(width).zip(&h.bias).map(|(row, b)| (b + dot(row, features)).max(0.0)).collect();
                self.output(&units)
            }
        }
    }

    /// The logistic output over what it reads: the features, or the hidden layer's units.
    fn output(&self, input: &[f32]) -> f32 {
        1.0 / (1.0 + (-(self.bias + dot(&self.weight, input))).exp())
    }
}

/// A span head over a batch's tokens at once: the hidden layer as one product over every
/// token's features (done token by token, its dot products were 4% of the service's time at 32
/// callers, measured with `perf`).
pub struct TokenProbe<'a> {
    head: &'a SpanHead,
    hidden: Option<PackedWeights>,
}

impl TokenProbe<'_> {
    /// `SpanHead::probability` of each of `rows` tokens, their features side by side in `features`.
    pub fn probabilities(&self, features: &[f32], rows: usize) -> Vec<f32> {
        let head = self.head;
        match &self.hidden {
            None => features.chunks_exact(head.weight.len()).take(rows).map(|row| head.output(row)).collect(),
            Some(packed) => {
                let mut units = packed.apply(features, rows, Activation::None);
                units.iter_mut().for_each(|u| *u = u.max(0.0));
                units.chunks_exact(packed.outer()).map(|row| head.output(row)).collect()
            }
        }
    }
}

/// The dot product in 16 independent sums, which the compiler keeps in vector registers (one
/// running sum cannot be reordered, so it would stay scalar): the hidden layer takes 128 of
/// these per token.
fn dot(w: &[f32], x: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (w_chunks, x_chunks) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = w_chunks.remainder().iter().zip(x_chunks.remainder()).map(|(a, b)| a * b).sum();
    let mut sums = [0f32; LANES];
    for (a, b) in w_chunks.zip(x_chunks) {
        for lane in 0..LANES {
            sums[lane] += a[lane] * b[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// The words of `text` as Unicode word boundaries (UAX #29) cut it, keeping those with a letter,
/// a digit or a symbol (emoji): one ideograph at a time in Chinese and Japanese, whole words in
/// spaced scripts, Hebrew and Arabic with their prefixes attached.
pub fn words(text: &str) -> Vec<(usize, usize)> {
    text.split_word_bound_indices()
        .filter(|(_, w)| w.chars().any(|c| c.is_alphanumeric() || (!c.is_whitespace() && !c.is_ascii_punctuation() && !is_punctuation(c))))
        .map(|(start, w)| (start, start + w.len()))
        .collect()
}

/// General punctuation outside ASCII (quotes, dashes, CJK and Arabic punctuation).
fn is_punctuation(c: char) -> bool {
    matches!(c, '\u{2000}'..='\u{206F}' | '\u{3000}'..='\u{303F}' | '\u{FF01}'..='\u{FF0F}' | '\u{060C}' | '\u{061B}' | '\u{061F}' | '\u{05BE}' | '\u{05C3}' | '\u{00A1}' | '\u{00BF}' | '\u{00AB}' | '\u{00BB}')
}

/// Per-token features of a text's first `SPAN_WINDOWS` windows, with each token's byte range.
pub type TokenFeatures = Vec<(Vec<f32>, Option<(usize, usize)>)>;

impl Classifier {
    /// The per-token features of `texts` and their byte ranges (see `SPAN_WINDOWS`).
    pub fn token_features(&self, texts: &[&str]) -> Result<Vec<TokenFeatures>, ModelError> {
        let (mut owners, mut sequences, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        for (i, text) in texts.iter().enumerate() {
            for (ids, offs) in self.extractor.tokenizer.windows_with_offsets(text)?.into_iter().take(SPAN_WINDOWS) {
                owners.push(i);
                sequences.push(ids);
                offsets.push(offs);
            }
        }
        let mut out: Vec<TokenFeatures> = vec![Vec::new(); texts.len()];
        for batch in self.extractor.limits.plan(&sequences.iter().map(Vec::len).collect::<Vec<_>>()) {
            let batch_sequences: Vec<Vec<u32>> = batch.iter().map(|&s| sequences[s].clone()).collect();
            for (&s, features) in batch.iter().zip(self.extractor.encoder.token_features(&batch_sequences)?) {
                out[owners[s]].extend(features.into_iter().zip(offsets[s].iter().copied()));
            }
        }
        Ok(out)
    }

    /// Each word of `text` with its toxic probability, in text order; empty without a span head.
    pub fn word_scores(&self, text: &str) -> Result<Vec<WordScore>, ModelError> {
        let Some(head) = &self.spans else { return Ok(Vec::new()) };
        let tokens = self.token_features(&[text])?.remove(0);
        Ok(word_scores(text, tokens.iter().map(|(f, range)| (head.probability(f), *range))))
    }
}

/// Each word's highest token probability, from each token's probability and byte range (words
/// without tokens in the windows left out).
pub fn word_scores(text: &str, tokens: impl IntoIterator<Item = (f32, Option<(usize, usize)>)>) -> Vec<WordScore> {
    let scored: Vec<(f32, (usize, usize))> = tokens.into_iter().filter_map(|(p, range)| range.map(|r| (p, r))).collect();
    words(text)
        .into_iter()
        .filter_map(|(start, end)| {
            let best = scored.iter().filter(|(_, (from, to))| *from < end && start < *to).map(|(p, _)| *p).reduce(f32::max)?;
            Some(WordScore { start, end, probability: best })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{HiddenLayer, SpanHead, word_scores, words};

    #[test]
    fn a_hidden_layer_is_relu_then_the_logistic_output() {
        // Two units over three features: u1 = relu(1·x0 − 1·x2 + 0.5), u2 = relu(−x1 − 1).
        let hidden = HiddenLayer { units: 2, weight: vec![1.0, 0.0, -1.0, 0.0, -1.0, 0.0], bias: vec![0.5, -1.0] };
        let head = SpanHead {
            model_version: String::new(),
            trained: serde_json::Value::Null,
            threshold: 0.5,
            min_peak: 0.0,
            bias: -1.0,
            weight: vec![2.0, 3.0],
            hidden: Some(hidden),
        };
        // x = (1, 0, 0): u = (1.5, 0); logit = −1 + 3 = 2.
        let expected = 1.0 / (1.0 + (-2.0f32).exp());
        assert!((head.probability(&[1.0, 0.0, 0.0]) - expected).abs() < 1e-6);
        // x = (0, −3, 2): u = (0, 2); logit = −1 + 6 = 5.
        let expected = 1.0 / (1.0 + (-5.0f32).exp());
        assert!((head.probability(&[0.0, -3.0, 2.0]) - expected).abs() < 1e-6);
    }

    #[test]
    fn a_batch_of_tokens_gets_each_tokens_own_probability() {
        // The model's shapes (768 features, 128 units) and a head without a hidden layer, on
        // enough tokens that the product splits over threads.
        let value = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.2;
        let (width, units, rows) = (768, 128, 300);
        let features: Vec<f32> = (0..rows * width).map(|i| value(i * 3 + 1)).collect();
        let with_hidden = SpanHead {
            model_version: String::new(),
            trained: serde_json::Value::Null,
            threshold: 0.5,
            min_peak: 0.0,
            bias: 0.1,
            weight: (0..units).map(value).collect(),
            hidden: Some(HiddenLayer { units, weight: (0..units * width).map(|i| value(i + 5)).collect(), bias: (0..units).map(|i| value(i + 11)).collect() }),
        };
        let linear = SpanHead { weight: (0..width).map(|i| value(i + 3)).collect(), hidden: None, ..with_hidden.clone() };
        for head in [with_hidden, linear] {
            let batch = head.token_probe().probabilities(&features, rows);
            assert_eq!(batch.len(), rows);
            for (p, row) in batch.iter().zip(features.chunks_exact(width)) {
                assert!((p - head.probability(row)).abs() < 1e-5, "{p} vs {}", head.probability(row));
            }
        }
    }

    fn texts(text: &str) -> Vec<&str> {
        words(text).into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn words_in_every_script() {
        assert_eq!(texts("You're an idiot, seriously!"), ["You're", "an", "idiot", "seriously"]);
        assert_eq!(texts("אתה אידיוט, ברצינות"), ["אתה", "אידיוט", "ברצינות"]);
        assert_eq!(texts("你是白痴"), ["你", "是", "白", "痴"]);
        assert_eq!(texts("ok 👍 — done…"), ["ok", "👍", "done"]);
        assert_eq!(texts("e\u{301}gal"), ["e\u{301}gal"], "a combining mark stays with its letter");
        assert!(texts("  ... !!").is_empty());
    }

    #[test]
    fn a_word_takes_its_most_toxic_token() {
        let text = "you absolute moron";
        // Tokens: "you", "absol", "ute", "mor", "on", and a special token without a range.
        let tokens = [(0.1, Some((0, 3))), (0.2, Some((4, 9))), (0.4, Some((9, 12))), (0.9, Some((13, 16))), (0.3, Some((16, 18))), (0.99, None)];
        let scores = word_scores(text, tokens);
        let got: Vec<(&str, f32)> = scores.iter().map(|w| (&text[w.start..w.end], w.probability)).collect();
        assert_eq!(got, [("you", 0.1), ("absolute", 0.4), ("moron", 0.9)]);
    }

    #[test]
    fn a_broken_span_head_names_its_file_and_keeps_the_cause() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        assert!(SpanHead::load(dir.path()).unwrap().is_none(), "no file, no span head");
        std::fs::write(dir.path().join(super::SPAN_HEAD_FILE), "{\"threshold\": ").unwrap();
        let error = SpanHead::load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with("span head: ") && error.to_string().contains("span-head.json"), "{error}");
        // `ModelError::Spans` is transparent: its source is the span head error's own.
        let cause = error.source().expect("the parser's error is the source");
        assert!(cause.is::<serde_json::Error>(), "{cause}");
    }
}
