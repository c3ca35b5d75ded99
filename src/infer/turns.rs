//! Conversation turns through the pipeline: score them (batched with every other caller's
//! texts), then assess them in order with the domain's judges.

use std::time::Instant;

use super::{Admitted, Pipeline};
use crate::domain::conversation::{AgentContext, Judges, TranscriptInput, TranscriptReport, TurnAssessment, TurnInput, assess, assess_transcript};
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
        Ok(assess(self.judges(policy), state, turn, scored, locale, AgentContext::default()))
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
        Ok(assess_transcript(self.judges(policy), transcript, scored))
    }
}
