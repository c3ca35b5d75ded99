//! One transcript through the pipeline into its output line: what `calmline score` does for
//! each record, and what the Python package's `score_transcripts` does, so both write the same
//! records.

use crate::domain::conversation::TranscriptInput;
use crate::domain::conversation::Versions;
use crate::domain::policy::Policy;
use crate::infer::Pipeline;
use crate::qa::output::{ConversationLine, ErrorLine, Source};

/// What became of one record.
pub enum Outcome {
    /// The conversation line (`ConversationLine`) and its number of turns.
    Scored { line: String, turns: u64 },
    /// The error line (`ErrorLine`).
    Failed { line: String },
}

/// Scores `transcript`, waiting for admission (accepted work is never refused), and renders it.
pub async fn score(pipeline: &Pipeline, policy: &Policy, transcript: &TranscriptInput, source: &Source) -> Outcome {
    let scored = match pipeline.admit_wait().await {
        Ok(admitted) => pipeline.score_transcript(policy, &admitted, transcript, None).await,
        Err(e) => Err(e),
    };
    match scored {
        Ok(report) => {
            let versions = Versions { model: pipeline.classifier().model_version(), policy_hash: &policy.hash, conduct: &pipeline.conduct().version };
            let texts: Vec<&str> = transcript.turns.iter().map(|t| t.text.as_str()).collect();
            let line = ConversationLine::new(&report, &texts, &transcript.locale, source, &versions);
            Outcome::Scored { line: line.to_json(), turns: report.turns.len() as u64 }
        }
        Err(e) => Outcome::Failed { line: ErrorLine::new(source, Some(&transcript.id), &e.to_string()).to_json() },
    }
}
