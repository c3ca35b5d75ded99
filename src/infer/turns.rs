//! Conversation turns through the pipeline: score them (batched with every other caller's
//! texts), then assess them in order with the domain's judges.

use std::time::Instant;

use super::{Admitted, Pipeline};
use crate::domain::conversation::{AgentContext, Judges, Speaker, TranscriptInput, TranscriptReport, TurnAssessment, TurnInput, assess, assess_transcript};
use crate::domain::policy::{ConversationState, Policy};
use crate::error::Error;

impl Pipeline {
    /// What judges this pipeline's scores under `policy`.
    pub fn judges<'a>(&'a self, policy: &'a Policy) -> Judges<'a> {
        Judges { head: &self.classifier().head, conduct: self.conduct(), policy }
    }

    /// Scores one turn of an admitted request and assesses it (validated first).
    pub async fn analyze_turn(
        &self,
        policy: &Policy,
        admitted: &Admitted,
        state: &mut ConversationState,
        turn: &TurnInput,
        locale: &str,
        deadline: Option<Instant>,
    ) -> Result<TurnAssessment, Error> {
        turn.validate()?;
        let scored = self.score(admitted, &[turn.text.as_str()], deadline).await?.remove(0);
        let mut assessment = assess(self.judges(policy), state, turn, scored, locale, AgentContext::default());
        self.add_spans(admitted, &mut assessment, &turn.text, deadline).await?;
        Ok(assessment)
    }

    /// Evidence spans for a flagged customer turn, when the pipeline gives spans and the model
    /// has a span head.
    async fn add_spans(&self, admitted: &Admitted, assessment: &mut TurnAssessment, text: &str, deadline: Option<Instant>) -> Result<(), Error> {
        let Some(head) = &self.classifier().spans else { return Ok(()) };
        let Some(label) = crate::domain::spans::span_label(&assessment.flags, &assessment.scores) else { return Ok(()) };
        if !self.config().evidence_spans || assessment.speaker != Speaker::Customer {
            return Ok(());
        }
        let words = self.word_scores(admitted, text, deadline).await?;
        assessment.spans = crate::domain::spans::select(text, &words, head.threshold, label);
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
        let scored = self.score(admitted, &texts, deadline).await?;
        let mut report = assess_transcript(self.judges(policy), transcript, scored);
        for (assessment, turn) in report.turns.iter_mut().zip(&transcript.turns) {
            self.add_spans(admitted, assessment, &turn.text, deadline).await?;
        }
        Ok(report)
    }
}
