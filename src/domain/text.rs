//! One text: the limits and checks it meets before the model sees it, and its analysis — its
//! language, label scores, flags and severity (the `Analyze` RPC's and `calmline analyze`'s
//! result; format: DESIGN.md, "Texts").

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::domain::labels::{Label, LabelScores};
use crate::domain::policy::{Policy, Severity};
use crate::error::Error;
use crate::model::Classifier;
use crate::model::head::Head;

/// Texts longer than this are refused: windowing handles any length, but one megabyte-sized
/// "turn" is an upload error, not a conversation turn.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// One text to analyse, with the caller's optional language hint.
#[derive(Debug, Clone, Copy)]
pub struct TextInput<'a> {
    pub text: &'a str,
    pub lang: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub language: String,
    /// Whether the model card measures this language's quality (`GetInfo` lists them).
    pub language_measured: bool,
    pub scores: Scores,
    pub flags: Vec<Label>,
    pub severity: Severity,
    /// The words that drove the flags (see `domain::spans`).
    pub spans: Vec<crate::domain::spans::Span>,
}

/// Label scores serialised as a map in label order, rounded to 4 decimals.
#[derive(Debug, Clone, Copy)]
pub struct Scores(pub LabelScores);

impl Serialize for Scores {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Label::ALL.len()))?;
        for (label, score) in self.0.rounded() {
            map.serialize_entry(label.name(), &score)?;
        }
        map.end()
    }
}

/// Checks one text before it reaches the model.
pub fn validate(input: &TextInput) -> Result<(), Error> {
    if input.text.trim().is_empty() {
        return Err(Error::Validation("text is empty".into()));
    }
    if input.text.len() > MAX_TEXT_BYTES {
        return Err(Error::Validation(format!("text is {} bytes; the limit is {MAX_TEXT_BYTES}", input.text.len())));
    }
    if let Some(lang) = input.lang
        && (lang.is_empty() || lang.len() > 16 || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(Error::Validation("lang must be a language code such as \"hu\" or \"pt-BR\"".into()));
    }
    Ok(())
}

/// How a text's scores read: its language (given, else detected), the flags at the thresholds
/// of that language (or of `locale` when the text is too short to tell), whether the model card
/// measures the language, and the severity the policy gives the flags. The one reading behind
/// `analyze` and every turn of a conversation.
pub struct Reading {
    pub language: String,
    pub language_measured: bool,
    /// The language whose thresholds decided the flags.
    pub thresholds_language: String,
    pub flags: Vec<Label>,
    pub severity: Severity,
}

impl Reading {
    pub fn of(head: &Head, policy: &Policy, text: &str, lang: Option<&str>, locale: &str, scores: &LabelScores) -> Reading {
        let language = lang.map(str::to_string).unwrap_or_else(|| crate::domain::lang::detect(text).to_string());
        let thresholds_language = crate::domain::lang::thresholds_language(&language, locale, text, &head.meta.measured_languages);
        let flags = head.flags(scores, &thresholds_language);
        Reading { language_measured: head.is_measured(&language), severity: policy.severity_of(&flags, scores), language, thresholds_language, flags }
    }
}

/// Analyses valid texts in one model call (callers validate first).
pub fn analyze(classifier: &Classifier, policy: &Policy, inputs: &[TextInput]) -> Result<Vec<Analysis>, Error> {
    let texts: Vec<&str> = inputs.iter().map(|i| i.text).collect();
    let scores = classifier.scores(&texts)?;
    inputs
        .iter()
        .zip(scores)
        .map(|(input, scores)| {
            let Reading { language, language_measured, flags, severity, .. } = Reading::of(&classifier.head, policy, input.text, input.lang, "", &scores);
            let spans = match (&classifier.spans, crate::domain::spans::span_label(&flags, &scores)) {
                (Some(head), Some(label)) => crate::domain::spans::select(input.text, &classifier.word_scores(input.text)?, head.cut(), label),
                _ => Vec::new(),
            };
            Ok(Analysis { language, language_measured, severity, scores: Scores(scores), spans, flags })
        })
        .collect()
}
