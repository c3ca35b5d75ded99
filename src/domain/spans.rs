//! Evidence spans: the words that drove a turn's abuse flags, as character offsets a reader can
//! highlight, from the span head's word scores (`model::spans` produces the `WordScore`s).
//!
//! The span head finds toxic words, whatever the label; the spans are given under the turn's
//! strongest flagged label among those aimed at people and profanity. A turn flagged only with
//! frustration gets none: frustration is seldom in single words.

use serde::Serialize;

use crate::domain::labels::{Label, LabelScores};

/// Where word scores become spans: words reaching `threshold`, in texts whose most likely word
/// reaches `min_peak`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanCut {
    pub threshold: f32,
    pub min_peak: f32,
}

/// One word of a text and the highest toxic probability among its tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordScore {
    /// The word's byte range in the text.
    pub start: usize,
    pub end: usize,
    pub probability: f32,
}

/// Words that drove a flag, `[begin, end)` in Unicode code points (what Python's `str` and
/// JavaScript's `Array.from(text)` index) and in UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub label: Label,
    pub begin: usize,
    pub end: usize,
    pub byte_begin: usize,
    pub byte_end: usize,
    /// The span head's probability that these words are toxic (the highest of its words').
    pub score: f32,
}

/// The label spans are given under: the highest-scoring flag other than frustration.
pub fn span_label(flags: &[Label], scores: &LabelScores) -> Option<Label> {
    flags.iter().copied().filter(|&l| l != Label::Frustration).max_by(|&a, &b| scores.get(a).total_cmp(&scores.get(b)))
}

/// The words whose probability reaches the cut's threshold, neighbours joined (only spaces or
/// punctuation between them), in text order; none when no word reaches its `min_peak`.
pub fn select(text: &str, words: &[WordScore], cut: SpanCut, label: Label) -> Vec<Span> {
    let threshold = cut.threshold;
    if !words.iter().any(|w| w.probability >= cut.min_peak) {
        return Vec::new();
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut previous_counted = false;
    for w in words {
        let counts = w.probability >= threshold;
        if counts {
            match spans.last_mut() {
                Some(last) if previous_counted => {
                    last.byte_end = w.end;
                    last.score = last.score.max(w.probability);
                }
                _ => spans.push(Span { label, begin: 0, end: 0, byte_begin: w.start, byte_end: w.end, score: w.probability }),
            }
        }
        previous_counted = counts;
    }
    for s in &mut spans {
        s.begin = text[..s.byte_begin].chars().count();
        s.end = s.begin + text[s.byte_begin..s.byte_end].chars().count();
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(threshold: f32) -> SpanCut {
        SpanCut { threshold, min_peak: 0.0 }
    }

    fn scored(text: &str, parts: &[(&str, f32)]) -> Vec<WordScore> {
        let mut at = 0;
        parts
            .iter()
            .map(|&(word, probability)| {
                let start = at + text[at..].find(word).expect("the word is in the text");
                at = start + word.len();
                WordScore { start, end: at, probability }
            })
            .collect()
    }

    #[test]
    fn the_words_that_count_joined_with_their_neighbours_in_code_points() {
        let text = "Ügyfél: maga egy hülye, ostoba alak!";
        let w = scored(text, &[("Ügyfél", 0.0), ("maga", 0.2), ("egy", 0.1), ("hülye", 0.9), ("ostoba", 0.7), ("alak", 0.3)]);
        let spans = select(text, &w, cut(0.5), Label::Insult);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(&text[s.byte_begin..s.byte_end], "hülye, ostoba");
        assert_eq!((s.begin, s.end), (17, 30));
        assert_eq!(text.chars().skip(s.begin).take(s.end - s.begin).collect::<String>(), "hülye, ostoba");
        assert_eq!((s.label, s.score), (Label::Insult, 0.9));
    }

    #[test]
    fn separate_words_make_separate_spans_in_right_to_left_text() {
        let text = "אתה אידיוט ואתה גם שקרן";
        let w = scored(text, &[("אתה", 0.0), ("אידיוט", 0.8), ("ואתה", 0.1), ("גם", 0.0), ("שקרן", 0.6)]);
        let spans = select(text, &w, cut(0.5), Label::Insult);
        assert_eq!(spans.iter().map(|s| &text[s.byte_begin..s.byte_end]).collect::<Vec<_>>(), ["אידיוט", "שקרן"]);
        assert_eq!((spans[0].begin, spans[0].end), (4, 10));
        assert!(select(text, &w, cut(0.95), Label::Insult).is_empty());
    }

    #[test]
    fn spans_go_under_the_strongest_flag_that_is_not_frustration() {
        let mut scores = LabelScores::default();
        scores.0[Label::Frustration.index()] = 0.99;
        scores.0[Label::Rudeness.index()] = 0.7;
        scores.0[Label::Insult.index()] = 0.8;
        assert_eq!(span_label(&[Label::Frustration, Label::Rudeness, Label::Insult], &scores), Some(Label::Insult));
        assert_eq!(span_label(&[Label::Frustration], &scores), None);
    }
}
