//! What `calmline score` writes: one JSON line per conversation (DESIGN.md, "Files people feed
//! it"), one CSV summary row per conversation, and one JSON line per record that failed.

use serde_json::{Value, json};

use crate::domain::conduct::ConductKind;
use crate::domain::conversation::{Speaker, TranscriptReport, TurnAssessment};
use crate::domain::labels::{Label, LabelScores};

/// Where a conversation came from: the input file (as given, "-" for stdin) and the line its
/// record starts on. It is also the key `--resume` uses, so repeated ids are never confused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

/// Versions that make a score reproducible.
pub struct Versions<'a> {
    pub model: &'a str,
    pub policy_hash: &'a str,
    pub conduct: &'a str,
}

fn round(score: f32) -> f64 {
    (f64::from(score) * 10_000.0).round() / 10_000.0
}

pub fn scores_json(scores: &LabelScores) -> Value {
    Value::Object(scores.iter().map(|(l, s)| (l.name().to_string(), json!(round(s)))).collect())
}

fn names<T: Copy>(items: &[T], name: impl Fn(T) -> &'static str) -> Value {
    json!(items.iter().map(|&i| name(i)).collect::<Vec<_>>())
}

/// One turn of a conversation line; also what the Python package's live conversation returns
/// for each turn.
pub fn turn_json(t: &TurnAssessment, text: &str) -> Value {
    let mut turn = json!({
        "turn_index": t.turn_index,
        "speaker": t.speaker,
        "text": text,
        "language": t.language,
        "language_measured": t.language_measured,
        "scores": scores_json(&t.scores),
        "flags": names(&t.flags, Label::name),
        "severity": t.severity,
    });
    match t.speaker {
        Speaker::Customer => {
            if let Some(g) = &t.guidance {
                turn["guidance"] = json!({
                    "action": g.action.name(),
                    "rule": g.rule,
                    "source": g.source,
                    "hint": g.hint.text,
                    "hint_locale": g.hint.locale,
                    "evidence": names(&g.evidence, Label::name),
                    "donts": g.donts.iter().map(|d| json!({"rule": d.rule, "hint": d.hint.text})).collect::<Vec<_>>(),
                    "spans": t.spans,
                });
            }
        }
        Speaker::Agent => turn["conduct"] = names(&t.conduct, ConductKind::name),
    }
    turn
}

/// The per-conversation JSON line (without the trailing newline).
/// `texts` are the turns' texts, in order: QA reads the flagged words next to their scores.
pub fn conversation_line(report: &TranscriptReport, texts: &[&str], locale: &str, source: &Source, versions: &Versions) -> String {
    let s = &report.summary;
    let value = json!({
        "id": report.id,
        "agent_id": report.agent_id,
        "locale": locale,
        "source": {"file": source.file, "line": source.line},
        "model_version": versions.model,
        "policy_hash": versions.policy_hash,
        "conduct_version": versions.conduct,
        "turns": report.turns.iter().zip(texts).map(|(t, text)| turn_json(t, text)).collect::<Vec<_>>(),
        "incidents": report.incidents.iter().map(|i| json!({
            "turn_index": i.turn_index,
            "action": i.action.name(),
            "severity": i.severity,
            "labels": names(&i.labels, Label::name),
        })).collect::<Vec<_>>(),
        "summary": {
            "customer_turns": s.customer_turns,
            "agent_turns": s.agent_turns,
            "max_severity": s.max_severity,
            "max_action": s.max_action.name(),
            "flagged_turns": s.flagged_turns.iter().map(|(l, n)| (l.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "agent_conduct": s.agent_conduct.iter().map(|(k, n)| (k.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "final_state": s.final_state,
        },
    });
    value.to_string()
}

/// The error line of a record that could not be read or scored.
pub fn error_line(source: &Source, id: Option<&str>, message: &str) -> String {
    json!({"file": source.file, "line": source.line, "id": id, "error": message}).to_string()
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

/// One CSV summary row from a conversation line as written by `conversation_line` (the summary
/// is made from the JSON lines so that a resumed run's summary covers every conversation).
pub fn summary_row(line: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let summary = &line["summary"];
    let mut languages: Vec<String> = line["turns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["speaker"] == "customer")
        .filter_map(|t| t["language"].as_str().map(String::from))
        .collect();
    languages.sort();
    languages.dedup();
    let mut row = vec![
        text(&line["id"]),
        text(&line["agent_id"]),
        text(&line["source"]["file"]),
        text(&line["source"]["line"]),
        text(&summary["customer_turns"]),
        text(&summary["agent_turns"]),
        text(&summary["max_severity"]),
        text(&summary["max_action"]),
        line["incidents"].as_array().map_or(0, Vec::len).to_string(),
        text(&summary["final_state"]["boundary_set"]),
        text(&summary["final_state"]["manager_involved"]),
        languages.join(" "),
    ];
    row.extend(Label::ALL.iter().map(|l| summary["flagged_turns"][l.name()].as_u64().unwrap_or(0).to_string()));
    row.extend(ConductKind::ALL.iter().map(|k| summary["agent_conduct"][k.name()].as_u64().unwrap_or(0).to_string()));
    row
}
