//! What `calmline score` writes: one JSON line per conversation (DESIGN.md, "Files people feed
//! it"; docs/QA.md), one CSV summary row per conversation, and one JSON line per record that
//! failed. The lines are typed both ways: the writer builds a `ConversationLine` from a
//! `TranscriptReport`, and the summary, the HTML report and `--resume` read lines back into it.
//!
//! Fields are declared in alphabetical order and maps are `BTreeMap`s with name keys: the files
//! have always had their keys sorted (they were first written through `serde_json::Value`, whose
//! maps sort), and this keeps them as they were — except `final_state`, the domain's
//! `ConversationState` written as it is (its own field order, as in docs/QA.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::conduct::ConductKind;
use crate::domain::conversation::{Incident, Speaker, TranscriptReport, TranscriptSummary, TurnAssessment, Versions};
use crate::domain::labels::Label;
use crate::domain::policy::{Action, ConversationState, Guidance, Severity};
use crate::domain::spans::Span;

/// Where a conversation came from: the input file (as given, "-" for stdin) and the line its
/// record starts on. It is also the key `--resume` uses, so repeated ids are never confused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

/// One conversation: a line of `conversations.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationLine {
    pub agent_id: String,
    pub conduct_version: String,
    pub id: String,
    /// The turns where the guidance reached SET_BOUNDARY or above.
    pub incidents: Vec<LineIncident>,
    pub locale: String,
    pub model_version: String,
    pub policy_hash: String,
    pub source: Source,
    pub summary: LineSummary,
    pub turns: Vec<TurnLine>,
}

/// One turn of a conversation line; also what the Python package's live conversation returns
/// for each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnLine {
    /// Agent turns only, and on every agent turn (empty when nothing was flagged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conduct: Option<Vec<ConductKind>>,
    pub flags: Vec<Label>,
    /// Customer turns only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<LineGuidance>,
    pub language: String,
    pub language_measured: bool,
    /// Every label's score by name, rounded to 4 decimals.
    pub scores: BTreeMap<String, f64>,
    pub severity: Severity,
    pub speaker: Speaker,
    pub text: String,
    pub turn_index: u32,
}

/// What the agent should do after a customer turn, why, and the words that drove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineGuidance {
    pub action: Action,
    pub donts: Vec<LineDont>,
    /// The flagged labels that drove the action.
    pub evidence: Vec<Label>,
    pub hint: String,
    /// The locale `hint` is in (the conversation's, or the English fallback).
    pub hint_locale: String,
    pub rule: String,
    pub source: String,
    /// The turn's evidence spans (empty with spans off, or when no word drove a flag).
    pub spans: Vec<LineSpan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDont {
    pub hint: String,
    pub rule: String,
}

/// An evidence span (`domain::spans::Span`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSpan {
    pub begin: usize,
    pub byte_begin: usize,
    pub byte_end: usize,
    pub end: usize,
    pub label: Label,
    /// The span head's f32 probability, widened: the lines have always carried its f64 digits
    /// (0.8999999761581421, not 0.9).
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineIncident {
    pub action: Action,
    pub labels: Vec<Label>,
    pub severity: Severity,
    pub turn_index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSummary {
    /// Agent turns flagged, per conduct kind name (kinds never flagged are left out).
    pub agent_conduct: BTreeMap<String, u32>,
    pub agent_turns: u32,
    pub customer_turns: u32,
    /// The guidance ladder's state after the last turn, in its own field order.
    pub final_state: ConversationState,
    /// Customer turns flagged, per label name (labels never flagged are left out).
    pub flagged_turns: BTreeMap<String, u32>,
    pub max_action: Action,
    pub max_severity: Severity,
}

/// A record that could not be read or scored: a line of `errors.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorLine {
    pub error: String,
    pub file: String,
    /// The conversation id, when it could be read (null otherwise).
    pub id: Option<String>,
    pub line: usize,
}

impl ConversationLine {
    /// `texts` are the turns' texts, in order: QA reads the flagged words next to their scores.
    pub fn new(report: &TranscriptReport, texts: &[&str], locale: &str, source: &Source, versions: &Versions) -> ConversationLine {
        ConversationLine {
            agent_id: report.agent_id.clone(),
            conduct_version: versions.conduct.to_string(),
            id: report.id.clone(),
            incidents: report.incidents.iter().map(LineIncident::from).collect(),
            locale: locale.to_string(),
            model_version: versions.model.to_string(),
            policy_hash: versions.policy_hash.to_string(),
            source: source.clone(),
            summary: LineSummary::from(&report.summary),
            turns: report.turns.iter().zip(texts).map(|(turn, text)| TurnLine::new(turn, text)).collect(),
        }
    }

    /// The line as written, without its newline.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl TurnLine {
    pub fn new(turn: &TurnAssessment, text: &str) -> TurnLine {
        let (guidance, conduct) = match turn.speaker {
            Speaker::Customer => (turn.guidance.as_ref().map(|g| LineGuidance::new(g, &turn.spans)), None),
            Speaker::Agent => (None, Some(turn.conduct.clone())),
        };
        TurnLine {
            conduct,
            flags: turn.flags.clone(),
            guidance,
            language: turn.language.clone(),
            language_measured: turn.language_measured,
            scores: turn.scores.rounded().map(|(label, score)| (label.name().to_string(), score)).collect(),
            severity: turn.severity,
            speaker: turn.speaker,
            text: text.to_string(),
            turn_index: turn.turn_index,
        }
    }

    /// The turn's JSON, without a newline.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl LineGuidance {
    fn new(guidance: &Guidance, spans: &[Span]) -> LineGuidance {
        LineGuidance {
            action: guidance.action,
            donts: guidance.donts.iter().map(|d| LineDont { hint: d.hint.text.clone(), rule: d.rule.clone() }).collect(),
            evidence: guidance.evidence.clone(),
            hint: guidance.hint.text.clone(),
            hint_locale: guidance.hint.locale.clone(),
            rule: guidance.rule.clone(),
            source: guidance.source.clone(),
            spans: spans.iter().map(LineSpan::from).collect(),
        }
    }
}

impl From<&Span> for LineSpan {
    fn from(span: &Span) -> LineSpan {
        // No `..`: a field added to `Span` must be placed in the line, or left out here on purpose.
        let Span { label, begin, end, byte_begin, byte_end, score } = *span;
        LineSpan { begin, byte_begin, byte_end, end, label, score: f64::from(score) }
    }
}

impl From<&Incident> for LineIncident {
    fn from(incident: &Incident) -> LineIncident {
        LineIncident { action: incident.action, labels: incident.labels.clone(), severity: incident.severity, turn_index: incident.turn_index }
    }
}

impl From<&TranscriptSummary> for LineSummary {
    fn from(summary: &TranscriptSummary) -> LineSummary {
        LineSummary {
            agent_conduct: summary.agent_conduct.iter().map(|(kind, n)| (kind.name().to_string(), *n)).collect(),
            agent_turns: summary.agent_turns,
            customer_turns: summary.customer_turns,
            final_state: summary.final_state,
            flagged_turns: summary.flagged_turns.iter().map(|(label, n)| (label.name().to_string(), *n)).collect(),
            max_action: summary.max_action,
            max_severity: summary.max_severity,
        }
    }
}

impl ErrorLine {
    pub fn new(source: &Source, id: Option<&str>, message: &str) -> ErrorLine {
        ErrorLine { error: message.to_string(), file: source.file.clone(), id: id.map(str::to_string), line: source.line }
    }

    /// Where the failed record starts (what `--resume` skips).
    pub fn source(&self) -> Source {
        Source { file: self.file.clone(), line: self.line }
    }

    /// The line as written, without its newline.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

fn to_json(line: &impl Serialize) -> String {
    // The line types hold only name-keyed maps, strings, numbers and flags, which serde_json
    // always writes (a non-finite score as null).
    serde_json::to_string(line).expect("an output line always serialises")
}

/// Columns of the per-conversation CSV summary.
pub fn summary_header() -> Vec<String> {
    let mut columns: Vec<String> = [
        "conversation_id",
        "agent_id",
        "file",
        "line",
        "customer_turns",
        "agent_turns",
        "max_severity",
        "max_action",
        "incidents",
        "boundary_set",
        "manager_involved",
        "languages",
    ]
    .map(String::from)
    .to_vec();
    columns.extend(Label::ALL.iter().map(|l| format!("turns_{}", l.name())));
    columns.extend(ConductKind::ALL.iter().map(|k| format!("agent_{}", k.name())));
    columns
}

/// One CSV summary row from a conversation line (the summary is made from the lines written so
/// that a resumed run's summary covers every conversation).
pub fn summary_row(line: &ConversationLine) -> Vec<String> {
    let summary = &line.summary;
    let mut languages: Vec<&str> = line.turns.iter().filter(|t| t.speaker == Speaker::Customer).map(|t| t.language.as_str()).collect();
    languages.sort_unstable();
    languages.dedup();
    let mut row = vec![
        line.id.clone(),
        line.agent_id.clone(),
        line.source.file.clone(),
        line.source.line.to_string(),
        summary.customer_turns.to_string(),
        summary.agent_turns.to_string(),
        summary.max_severity.name().to_string(),
        summary.max_action.name().to_string(),
        line.incidents.len().to_string(),
        summary.final_state.boundary_set.to_string(),
        summary.final_state.manager_involved.to_string(),
        languages.join(" "),
    ];
    let count = |counts: &BTreeMap<String, u32>, name: &str| counts.get(name).copied().unwrap_or(0).to_string();
    row.extend(Label::ALL.iter().map(|l| count(&summary.flagged_turns, l.name())));
    row.extend(ConductKind::ALL.iter().map(|k| count(&summary.agent_conduct, k.name())));
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conversation::StageTimings;
    use crate::domain::labels::LabelScores;
    use crate::domain::policy::{DontHint, Hint};

    fn turn(turn_index: u32, speaker: Speaker) -> TurnAssessment {
        TurnAssessment {
            turn_index,
            speaker,
            scores: LabelScores([0.91234, 0.2, 0.00004, 0.0, 0.5, 0.123_456, 1.0]),
            flags: Vec::new(),
            severity: Severity::None,
            language: "hu".into(),
            language_measured: true,
            thresholds_language: "hu".into(),
            guidance: None,
            conduct: Vec::new(),
            spans: Vec::new(),
            timings: StageTimings::default(),
        }
    }

    /// A customer turn that set a boundary (with a span and a "don't"), and an agent turn that
    /// blamed others.
    fn report() -> TranscriptReport {
        let hint = |text: &str| Hint { text: text.into(), locale: "en".into() };
        let mut customer = turn(0, Speaker::Customer);
        customer.flags = vec![Label::Frustration, Label::Insult];
        customer.severity = Severity::High;
        customer.guidance = Some(Guidance {
            action: Action::SetBoundary,
            rule: "r-boundary".into(),
            source: "seed 004".into(),
            hint: hint("Name the line."),
            evidence: vec![Label::Insult],
            donts: vec![DontHint { rule: "r-dont".into(), source: "seed 003".into(), hint: hint("Don't argue.") }],
        });
        customer.spans = vec![Span { label: Label::Insult, begin: 5, end: 10, byte_begin: 5, byte_end: 11, score: 0.9 }];
        let mut agent = turn(1, Speaker::Agent);
        agent.conduct = vec![ConductKind::BlamesOthers];
        let final_state = ConversationState { turns: 2, customer_turns: 1, heated_turns: 1, boundary_set: true, manager_involved: false, calm_streak: 0 };
        TranscriptReport {
            id: "c1".into(),
            agent_id: "a7".into(),
            incidents: vec![Incident { turn_index: 0, action: Action::SetBoundary, severity: Severity::High, labels: vec![Label::Insult] }],
            summary: TranscriptSummary {
                customer_turns: 1,
                agent_turns: 1,
                max_severity: Severity::High,
                max_action: Action::SetBoundary,
                flagged_turns: vec![(Label::Frustration, 1), (Label::Insult, 1)],
                agent_conduct: vec![(ConductKind::BlamesOthers, 1)],
                final_state,
            },
            turns: vec![customer, agent],
        }
    }

    fn line() -> ConversationLine {
        let versions = Versions { model: "m-1", policy_hash: "p0", conduct: "conduct-2" };
        ConversationLine::new(&report(), &["Menj, hülye!", "A futár hibája."], "hu", &Source { file: "in.jsonl".into(), line: 3 }, &versions)
    }

    #[test]
    fn a_line_written_and_read_back_is_the_same_line() {
        let written = line();
        let read: ConversationLine = serde_json::from_str(&written.to_json()).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.to_json(), written.to_json());
        let error = ErrorLine::new(&Source { file: "-".into(), line: 9 }, None, "not json");
        assert_eq!(serde_json::from_str::<ErrorLine>(&error.to_json()).unwrap(), error);
    }

    #[test]
    fn a_line_keeps_the_schema_its_files_have_always_had() {
        // Keys sorted at every level, scores rounded to 4 decimals, span scores at f64 digits,
        // guidance on customer turns only, conduct on agent turns only.
        let scores =
            r#""scores":{"frustration":0.9123,"identity_attack":0.1235,"insult":0.0,"profanity":0.0,"rudeness":0.2,"sexual_harassment":1.0,"threat":0.5}"#;
        let expected = [
            r#"{"agent_id":"a7","conduct_version":"conduct-2","id":"c1","#,
            r#""incidents":[{"action":"SET_BOUNDARY","labels":["insult"],"severity":"high","turn_index":0}],"#,
            r#""locale":"hu","model_version":"m-1","policy_hash":"p0","source":{"file":"in.jsonl","line":3},"#,
            r#""summary":{"agent_conduct":{"blames_others":1},"agent_turns":1,"customer_turns":1,"#,
            r#""final_state":{"turns":2,"customer_turns":1,"heated_turns":1,"boundary_set":true,"manager_involved":false,"calm_streak":0},"#,
            r#""flagged_turns":{"frustration":1,"insult":1},"max_action":"SET_BOUNDARY","max_severity":"high"},"#,
            r#""turns":[{"flags":["frustration","insult"],"#,
            r#""guidance":{"action":"SET_BOUNDARY","donts":[{"hint":"Don't argue.","rule":"r-dont"}],"evidence":["insult"],"#,
            r#""hint":"Name the line.","hint_locale":"en","rule":"r-boundary","source":"seed 004","#,
            r#""spans":[{"begin":5,"byte_begin":5,"byte_end":11,"end":10,"label":"insult","score":0.8999999761581421}]},"#,
            r#""language":"hu","language_measured":true,"#,
            scores,
            r#","severity":"high","speaker":"customer","text":"Menj, hülye!","turn_index":0},"#,
            r#"{"conduct":["blames_others"],"flags":[],"language":"hu","language_measured":true,"#,
            scores,
            r#","severity":"none","speaker":"agent","text":"A futár hibája.","turn_index":1}]}"#,
        ]
        .concat();
        assert_eq!(line().to_json(), expected);
        let error = ErrorLine::new(&Source { file: "in.jsonl".into(), line: 4 }, Some("c2"), "no turns");
        assert_eq!(error.to_json(), r#"{"error":"no turns","file":"in.jsonl","id":"c2","line":4}"#);
    }

    #[test]
    fn a_summary_row_reads_the_line() {
        let row = summary_row(&line());
        assert_eq!(row.len(), summary_header().len());
        assert_eq!(row[..12], ["c1", "a7", "in.jsonl", "3", "1", "1", "high", "SET_BOUNDARY", "1", "true", "false", "hu"]);
        assert_eq!(row[12..19], ["1", "0", "1", "0", "0", "0", "0"], "customer turns per label, in label order");
        assert_eq!(row[19..], ["0", "1", "0", "0"], "agent turns per conduct kind, in kind order");
    }
}
