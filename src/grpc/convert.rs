//! Conversions between the core's types and the generated protobuf types. Client-supplied enums
//! are checked here: an unknown or unspecified value is a validation error, never a panic.

use super::pb;
use crate::domain::conduct::ConductKind;
use crate::domain::conversation::StageTimings;
use crate::domain::conversation::{Incident, Speaker, TranscriptInput, TranscriptReport, TurnAssessment, TurnInput, Versions};
use crate::domain::labels::Label;
use crate::domain::policy::{Action, ConversationState, Guidance, Hint, Severity};
use crate::domain::spans::Span;
use crate::error::Error;
use crate::model::head::Head;

pub fn label(l: Label) -> pb::Label {
    match l {
        Label::Frustration => pb::Label::Frustration,
        Label::Rudeness => pb::Label::Rudeness,
        Label::Insult => pb::Label::Insult,
        Label::Profanity => pb::Label::Profanity,
        Label::Threat => pb::Label::Threat,
        Label::IdentityAttack => pb::Label::IdentityAttack,
        Label::SexualHarassment => pb::Label::SexualHarassment,
    }
}

pub fn severity(s: Severity) -> pb::Severity {
    match s {
        Severity::None => pb::Severity::None,
        Severity::Low => pb::Severity::Low,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
        Severity::Critical => pb::Severity::Critical,
    }
}

pub fn action(a: Action) -> pb::Action {
    match a {
        Action::None => pb::Action::None,
        Action::Acknowledge => pb::Action::Acknowledge,
        Action::LetItPass => pb::Action::LetItPass,
        Action::StayCalm => pb::Action::StayCalm,
        Action::SetBoundary => pb::Action::SetBoundary,
        Action::InvolveManager => pb::Action::InvolveManager,
        Action::EndContact => pb::Action::EndContact,
    }
}

fn speaker_to_pb(s: Speaker) -> pb::Speaker {
    match s {
        Speaker::Customer => pb::Speaker::Customer,
        Speaker::Agent => pb::Speaker::Agent,
    }
}

/// A client's turn, checked: the speaker must be a known, specified value.
pub fn turn(t: Option<pb::Turn>, what: &str) -> Result<TurnInput, Error> {
    let t = t.ok_or_else(|| Error::Validation(format!("{what} is missing")))?;
    let speaker = match pb::Speaker::try_from(t.speaker) {
        Ok(pb::Speaker::Customer) => Speaker::Customer,
        Ok(pb::Speaker::Agent) => Speaker::Agent,
        Ok(pb::Speaker::Unspecified) | Err(_) => {
            return Err(Error::Validation(format!("{what}.speaker is {}; expected SPEAKER_CUSTOMER or SPEAKER_AGENT", t.speaker)));
        }
    };
    let turn = TurnInput { speaker, text: t.text, lang: t.lang.filter(|l| !l.is_empty()) };
    turn.validate().map_err(|e| e.at(what))?;
    Ok(turn)
}

pub fn state_from_pb(s: Option<pb::ConversationState>) -> ConversationState {
    let s = s.unwrap_or_default();
    ConversationState {
        turns: s.turns,
        customer_turns: s.customer_turns,
        heated_turns: s.heated_turns,
        boundary_set: s.boundary_set,
        manager_involved: s.manager_involved,
        calm_streak: s.calm_streak,
    }
}

pub fn state_to_pb(s: &ConversationState) -> pb::ConversationState {
    pb::ConversationState {
        turns: s.turns,
        customer_turns: s.customer_turns,
        heated_turns: s.heated_turns,
        boundary_set: s.boundary_set,
        manager_involved: s.manager_involved,
        calm_streak: s.calm_streak,
    }
}

fn hint(h: &Hint) -> pb::Hint {
    pb::Hint { text: h.text.clone(), locale: h.locale.clone() }
}

fn guidance(g: &Guidance, turn_index: u32, spans: &[Span]) -> pb::Guidance {
    pb::Guidance {
        action: action(g.action) as i32,
        hint: Some(hint(&g.hint)),
        rule_id: g.rule.clone(),
        source: g.source.clone(),
        evidence: Some(pb::Evidence { labels: g.evidence.iter().map(|&l| label(l) as i32).collect(), turn_index, spans: spans.iter().map(span).collect() }),
        donts: g.donts.iter().map(|d| pb::Dont { rule_id: d.rule.clone(), source: d.source.clone(), hint: Some(hint(&d.hint)) }).collect(),
    }
}

fn span(s: &Span) -> pb::Span {
    let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::Span { label: label(s.label) as i32, begin: at(s.begin), end: at(s.end), byte_begin: at(s.byte_begin), byte_end: at(s.byte_end), score: s.score }
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

pub fn assessment(a: &TurnAssessment, head: &Head, versions: &Versions, total: std::time::Duration) -> pb::Assessment {
    let StageTimings { queue, tokenize, inference } = a.timings;
    pb::Assessment {
        turn_index: a.turn_index,
        speaker: speaker_to_pb(a.speaker) as i32,
        scores: a
            .scores
            .iter()
            .map(|(l, score)| pb::LabelScore {
                label: label(l) as i32,
                score,
                threshold: head.threshold_in(l, &a.thresholds_language),
                flagged: a.flags.contains(&l),
            })
            .collect(),
        flags: a.flags.iter().map(|&l| label(l) as i32).collect(),
        severity: severity(a.severity) as i32,
        language: a.language.clone(),
        guidance: a.guidance.as_ref().map(|g| guidance(g, a.turn_index, &a.spans)),
        model_version: versions.model.to_string(),
        policy_hash: versions.policy_hash.to_string(),
        timings: Some(pb::Timings { queue_us: micros(queue), tokenize_us: micros(tokenize), inference_us: micros(inference), total_us: micros(total) }),
        conduct: a.conduct.iter().map(|&k| conduct(k) as i32).collect(),
        language_measured: a.language_measured,
    }
}

fn conduct(k: ConductKind) -> pb::AgentConduct {
    match k {
        ConductKind::RudeToCustomer => pb::AgentConduct::RudeToCustomer,
        ConductKind::BlamesOthers => pb::AgentConduct::BlamesOthers,
        ConductKind::QuestionsCustomer => pb::AgentConduct::QuestionsCustomer,
        ConductKind::CannedReply => pb::AgentConduct::CannedReply,
    }
}

pub fn transcript(t: pb::Transcript) -> Result<TranscriptInput, Error> {
    let turns = t.turns.into_iter().enumerate().map(|(i, turn)| self::turn(Some(turn), &format!("turns[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    Ok(TranscriptInput { id: t.id, locale: t.locale, agent_id: t.agent_id, turns })
}

fn incident(i: &Incident) -> pb::Incident {
    pb::Incident {
        turn_index: i.turn_index,
        action: action(i.action) as i32,
        severity: severity(i.severity) as i32,
        labels: i.labels.iter().map(|&l| label(l) as i32).collect(),
    }
}

pub fn report(r: &TranscriptReport, head: &Head, versions: &Versions, total: std::time::Duration) -> pb::TranscriptReport {
    let s = &r.summary;
    pb::TranscriptReport {
        id: r.id.clone(),
        agent_id: r.agent_id.clone(),
        turns: r.turns.iter().map(|a| assessment(a, head, versions, total)).collect(),
        incidents: r.incidents.iter().map(incident).collect(),
        summary: Some(pb::TranscriptSummary {
            customer_turns: s.customer_turns,
            agent_turns: s.agent_turns,
            max_severity: severity(s.max_severity) as i32,
            max_action: action(s.max_action) as i32,
            flagged_turns: s.flagged_turns.iter().map(|(l, n)| (l.name().to_string(), *n)).collect(),
            agent_conduct: s.agent_conduct.iter().map(|(k, n)| (k.name().to_string(), *n)).collect(),
            final_state: Some(state_to_pb(&s.final_state)),
        }),
        error: None,
    }
}
