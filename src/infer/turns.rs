//! Conversation turns through the pipeline: score them (batched with every other caller's
//! texts), then assess them in order with the domain's judges.

use std::time::Instant;

use super::{Admitted, Pipeline};
use crate::domain::conversation::{History, Judges, Speaker, TranscriptInput, TranscriptReport, TurnAssessment, TurnInput, assess, assess_transcript};
use crate::domain::policy::{ConversationState, Policy};
use crate::error::Error;
use crate::metrics as m;
use crate::model::spans::{SPAN_WINDOWS, word_scores};

impl Pipeline {
    /// What judges this pipeline's scores under `policy`.
    pub fn judges<'a>(&'a self, policy: &'a Policy) -> Judges<'a> {
        Judges { head: &self.classifier().head, conduct: self.conduct(), policy }
    }

    /// Scores one turn of an admitted request and assesses it (validated first). `history` is
    /// the conversation's so far, when known (a stream, a live conversation); it moves on.
    #[allow(clippy::too_many_arguments)]
    pub async fn analyze_turn(
        &self,
        policy: &Policy,
        admitted: &Admitted,
        state: &mut ConversationState,
        history: Option<&mut History>,
        turn: &TurnInput,
        locale: &str,
        deadline: Option<Instant>,
    ) -> Result<TurnAssessment, Error> {
        turn.validate()?;
        let mut scored = self.score(admitted, &[turn.text.as_str()], deadline).await?.remove(0);
        let token_scores = std::mem::take(&mut scored.token_scores);
        let mut history = history;
        let context = history.as_deref_mut().map(|h| h.context_of(turn)).unwrap_or_default();
        let mut assessment = assess(self.judges(policy), state, turn, scored, locale, context);
        record_detections(&assessment);
        if let Some(h) = history {
            h.record(&assessment);
        }
        self.add_spans(&mut assessment, &turn.text, &token_scores)?;
        Ok(assessment)
    }

    /// Evidence spans for a flagged customer turn, from its token scores: the text is
    /// tokenized again, with offsets (a fraction of a millisecond; no encoder pass), to put
    /// each score on its characters.
    fn add_spans(&self, assessment: &mut TurnAssessment, text: &str, token_scores: &[f32]) -> Result<(), Error> {
        let Some(head) = &self.classifier().spans else { return Ok(()) };
        let Some(label) = crate::domain::spans::span_label(&assessment.flags, &assessment.scores) else { return Ok(()) };
        if token_scores.is_empty() || assessment.speaker != Speaker::Customer {
            return Ok(());
        }
        let started = Instant::now();
        let windows = self.classifier().extractor.tokenizer.windows_with_offsets(text).map_err(|e| Error::Model(e.into()))?;
        let offsets: Vec<Option<(usize, usize)>> = windows.into_iter().take(SPAN_WINDOWS).flat_map(|(_, offsets)| offsets).collect();
        if offsets.len() != token_scores.len() {
            // The same tokenizer on the same text: a mismatch is a bug, not the caller's fault.
            tracing::error!(tokens = offsets.len(), scores = token_scores.len(), "evidence spans: token scores and offsets disagree");
            return Err(Error::BatchFailed);
        }
        let words = word_scores(text, token_scores.iter().copied().zip(offsets));
        assessment.spans = crate::domain::spans::select(text, &words, head.cut(), label);
        metrics::histogram!(m::STAGE_SECONDS, "stage" => "spans").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Scores a whole transcript (validated first) and assesses it turn by turn.
    pub async fn score_transcript(
        &self,
        policy: &Policy,
        admitted: &Admitted,
        transcript: &TranscriptInput,
        deadline: Option<Instant>,
    ) -> Result<TranscriptReport, Error> {
        transcript.validate()?;
        let texts: Vec<&str> = transcript.turns.iter().map(|t| t.text.as_str()).collect();
        let mut scored = self.score(admitted, &texts, deadline).await?;
        let token_scores: Vec<Vec<f32>> = scored.iter_mut().map(|s| std::mem::take(&mut s.token_scores)).collect();
        let mut report = assess_transcript(self.judges(policy), transcript, scored);
        for ((assessment, turn), token_scores) in report.turns.iter_mut().zip(&transcript.turns).zip(&token_scores) {
            record_detections(assessment);
            self.add_spans(assessment, &turn.text, token_scores)?;
        }
        Ok(report)
    }
}

/// Counts a served customer turn's flags and guidance (labels from closed sets only: the
/// language is bounded by `metrics::language_label`).
fn record_detections(assessment: &TurnAssessment) {
    let Some(guidance) = &assessment.guidance else { return };
    let language = m::language_label(&assessment.language);
    for label in &assessment.flags {
        metrics::counter!(m::DETECTIONS_TOTAL, "label" => label.name(), "language" => language).increment(1);
    }
    metrics::counter!(m::GUIDANCE_TOTAL, "action" => guidance.action.name()).increment(1);
}
