//! Turns and conversations: one turn's assessment (scores → flags → severity → guidance), and a
//! whole transcript's report. The gRPC service and the batch scorer both go through here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::conduct::{AgentTurn, ConductKind, ConductModel};
use crate::domain::labels::{Label, LabelScores};
use crate::domain::policy::{Action, ConversationState, Guidance, Policy, Severity};
use crate::domain::spans::Span;
use crate::domain::text::{MAX_TEXT_BYTES, Reading, TextInput, validate};
use crate::error::Error;
use crate::model::head::Head;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Customer,
    Agent,
}

impl Speaker {
    /// The name the JSON outputs and the QA report use.
    pub fn name(self) -> &'static str {
        match self {
            Speaker::Customer => "customer",
            Speaker::Agent => "agent",
        }
    }
}

/// One turn as a caller sends it.
#[derive(Debug, Clone)]
pub struct TurnInput {
    pub speaker: Speaker,
    pub text: String,
    pub lang: Option<String>,
}

impl TurnInput {
    pub fn validate(&self) -> Result<(), Error> {
        validate(&TextInput { text: &self.text, lang: self.lang.as_deref() })
    }
}

#[derive(Debug, Clone)]
pub struct TurnAssessment {
    pub turn_index: u32,
    pub speaker: Speaker,
    pub scores: LabelScores,
    pub flags: Vec<Label>,
    pub severity: Severity,
    pub language: String,
    /// Whether the model card measures quality in `language`.
    pub language_measured: bool,
    /// The language whose thresholds decided the flags (`language`, or the locale when the
    /// turn was too short to tell).
    pub thresholds_language: String,
    /// Customer turns only.
    pub guidance: Option<Guidance>,
    /// Agent turns only: conduct flags (seed 003), in `ConductKind` order.
    pub conduct: Vec<ConductKind>,
    /// Customer turns with flags only: the words that drove each flagged label (filled by
    /// `Pipeline::add_spans`; empty when spans are off).
    pub spans: Vec<Span>,
    pub timings: StageTimings,
}

/// Time spent by one text in each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    pub queue: Duration,
    pub tokenize: Duration,
    pub inference: Duration,
}

#[derive(Debug, Clone)]
pub struct Scored {
    pub scores: LabelScores,
    /// The text's stable sentence embedding (its first window; `model::FeatureExtractor::stable_embed`),
    /// for similarity-based checks such as agent conduct.
    pub embedding: Vec<f32>,
    /// The span head's probability for each token of the text's first `SPAN_WINDOWS` windows,
    /// in order, from the scoring pass (empty without a span head or with spans off): a flagged
    /// turn's evidence spans are read off these.
    pub token_scores: Vec<f32>,
    pub timings: StageTimings,
}

/// What earlier turns tell about an agent turn: whether it answers a complaint, and whether the
/// agent already sent the same words. Unknown (false) for a lone turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentContext {
    pub after_complaint: bool,
    pub repeats_earlier_reply: bool,
}

/// What a conversation so far tells about its next agent turn (`AgentContext`), kept turn by
/// turn: a transcript, a live `Converse` stream and the Python package's conversations all judge
/// agent conduct with the same context. Earlier replies are kept as hashes, not text.
#[derive(Debug, Clone, Default)]
pub struct History {
    after_complaint: bool,
    earlier_replies: std::collections::HashSet<u64>,
}

impl History {
    /// The context of `turn`, which comes next; call `record` with its assessment afterwards.
    pub fn context_of(&mut self, turn: &TurnInput) -> AgentContext {
        let repeats_earlier_reply = turn.speaker == Speaker::Agent && {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            turn.text.trim().hash(&mut hasher);
            !self.earlier_replies.insert(hasher.finish())
        };
        AgentContext { after_complaint: self.after_complaint, repeats_earlier_reply }
    }

    pub fn record(&mut self, assessed: &TurnAssessment) {
        if assessed.speaker == Speaker::Customer {
            self.after_complaint = !assessed.flags.is_empty();
        }
    }
}

/// Versions that make a score reproducible. The gRPC messages carry the model's and the
/// policy's; the QA lines all three.
#[derive(Debug, Clone, Copy)]
pub struct Versions<'a> {
    pub model: &'a str,
    pub policy_hash: &'a str,
    pub conduct: &'a str,
}

/// What judges a scored turn: the head's thresholds (flags), the agent-conduct judge and the
/// guidance policy.
#[derive(Clone, Copy)]
pub struct Judges<'a> {
    pub head: &'a Head,
    pub conduct: &'a ConductModel,
    pub policy: &'a Policy,
}

/// Turns scores into an assessment and moves the conversation state on. Agent turns are
/// scored but leave the ladder where it is and get no guidance.
pub fn assess(judges: Judges, state: &mut ConversationState, turn: &TurnInput, scored: Scored, locale: &str, context: AgentContext) -> TurnAssessment {
    let Judges { head, conduct, policy } = judges;
    // Thresholds are per language; a turn too short to tell goes by the conversation's locale.
    let Reading { language, language_measured, thresholds_language, flags, severity } =
        Reading::of(head, policy, &turn.text, turn.lang.as_deref(), locale, &scored.scores);
    let turn_index = state.turns;
    state.turns = state.turns.saturating_add(1);
    let guidance = match turn.speaker {
        Speaker::Customer => Some(policy.customer_turn(state, &flags, severity, locale)),
        Speaker::Agent => None,
    };
    let conduct = match turn.speaker {
        Speaker::Agent => conduct.judge(&AgentTurn {
            embedding: &scored.embedding,
            scores: &scored.scores,
            flags: &flags,
            after_complaint: context.after_complaint,
            repeats_earlier_reply: context.repeats_earlier_reply,
        }),
        Speaker::Customer => Vec::new(),
    };
    TurnAssessment {
        turn_index,
        speaker: turn.speaker,
        scores: scored.scores,
        flags,
        severity,
        language,
        language_measured,
        thresholds_language,
        guidance,
        conduct,
        spans: Vec::new(),
        timings: scored.timings,
    }
}

/// Most turns in one transcript.
pub const MAX_TURNS_PER_TRANSCRIPT: usize = 2000;

#[derive(Debug, Clone)]
pub struct TranscriptInput {
    pub id: String,
    pub locale: String,
    pub agent_id: String,
    pub turns: Vec<TurnInput>,
}

/// A moment where the guidance reached SET_BOUNDARY or above.
#[derive(Debug, Clone)]
pub struct Incident {
    pub turn_index: u32,
    pub action: Action,
    pub severity: Severity,
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone)]
pub struct TranscriptSummary {
    pub customer_turns: u32,
    pub agent_turns: u32,
    pub max_severity: Severity,
    pub max_action: Action,
    /// Customer turns flagged, per label, in label order (labels never flagged are left out).
    pub flagged_turns: Vec<(Label, u32)>,
    /// Agent turns flagged, per conduct kind, in kind order (kinds never flagged are left out).
    pub agent_conduct: Vec<(ConductKind, u32)>,
    pub final_state: ConversationState,
}

#[derive(Debug, Clone)]
pub struct TranscriptReport {
    pub id: String,
    pub agent_id: String,
    pub turns: Vec<TurnAssessment>,
    pub incidents: Vec<Incident>,
    pub summary: TranscriptSummary,
}

impl TranscriptInput {
    pub fn validate(&self) -> Result<(), Error> {
        if self.turns.is_empty() {
            return Err(Error::Validation(format!("transcript {:?} has no turns", self.id)));
        }
        if self.turns.len() > MAX_TURNS_PER_TRANSCRIPT {
            return Err(Error::Validation(format!("transcript has {} turns; the limit is {MAX_TURNS_PER_TRANSCRIPT}", self.turns.len())));
        }
        for (i, turn) in self.turns.iter().enumerate() {
            turn.validate().map_err(|e| e.at(&format!("turn {i}")))?;
        }
        Ok(())
    }
}

/// Assesses a whole (validated, scored) transcript: every turn as it would have been assessed
/// live, in order, with the state carried through; then its incidents and summary.
pub fn assess_transcript(judges: Judges, transcript: &TranscriptInput, scored: Vec<Scored>) -> TranscriptReport {
    let mut state = ConversationState::default();
    let mut turns: Vec<TurnAssessment> = Vec::with_capacity(transcript.turns.len());
    let mut history = History::default();
    for (turn, s) in transcript.turns.iter().zip(scored) {
        let context = history.context_of(turn);
        let assessed = assess(judges, &mut state, turn, s, &transcript.locale, context);
        history.record(&assessed);
        turns.push(assessed);
    }
    report(transcript, turns, state)
}

fn report(transcript: &TranscriptInput, turns: Vec<TurnAssessment>, final_state: ConversationState) -> TranscriptReport {
    let customer: Vec<&TurnAssessment> = turns.iter().filter(|t| t.speaker == Speaker::Customer).collect();
    let incidents = customer
        .iter()
        .filter_map(|t| {
            let g = t.guidance.as_ref()?;
            (g.action >= Action::SetBoundary).then(|| Incident { turn_index: t.turn_index, action: g.action, severity: t.severity, labels: g.evidence.clone() })
        })
        .collect();
    let flagged_turns = Label::ALL.into_iter().map(|l| (l, customer.iter().filter(|t| t.flags.contains(&l)).count() as u32)).filter(|&(_, n)| n > 0).collect();
    let agent_conduct =
        ConductKind::ALL.into_iter().map(|k| (k, turns.iter().filter(|t| t.conduct.contains(&k)).count() as u32)).filter(|&(_, n)| n > 0).collect();
    let summary = TranscriptSummary {
        customer_turns: customer.len() as u32,
        agent_turns: (turns.len() - customer.len()) as u32,
        max_severity: customer.iter().map(|t| t.severity).max().unwrap_or(Severity::None),
        max_action: customer.iter().filter_map(|t| t.guidance.as_ref().map(|g| g.action)).max().unwrap_or(Action::None),
        flagged_turns,
        agent_conduct,
        final_state,
    };
    TranscriptReport { id: transcript.id.clone(), agent_id: transcript.agent_id.clone(), turns, incidents, summary }
}

/// Text byte limit per turn, re-exported for the contract's `Limits`.
pub const MAX_TURN_BYTES: usize = MAX_TEXT_BYTES;
