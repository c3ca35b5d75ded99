//! The self-contained HTML report of a `calmline score` run: what a QA lead looks at first.
//! No network: CSS, the little JavaScript and the SVG charts are inline. Built from the
//! conversation lines in constant memory (counts, plus the most serious conversations, bounded).

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::conduct::ConductKind;
use crate::domain::conversation::Speaker;
use crate::domain::policy::{Action, Severity};
use crate::qa::output::{ConversationLine, ErrorLine, LineSpan, TurnLine};

/// Conversations shown in full (the most serious first).
const SHOWN_CONVERSATIONS: usize = 100;
/// Errors listed.
const SHOWN_ERRORS: usize = 50;

#[derive(Default)]
struct AgentTotals {
    conversations: u64,
    agent_turns: u64,
    conduct: BTreeMap<ConductKind, u64>,
    incidents: u64,
}

#[derive(Default)]
pub struct Report {
    conversations: u64,
    customer_turns: u64,
    agent_turns: u64,
    crossed: u64,
    severity: BTreeMap<Severity, u64>,
    actions: BTreeMap<Action, u64>,
    languages: BTreeMap<String, u64>,
    agents: BTreeMap<String, AgentTotals>,
    /// (rank, conversation line) of the most serious conversations.
    serious: Vec<((Action, Severity, usize), ConversationLine)>,
    errors: u64,
    error_rows: Vec<ErrorLine>,
}

/// A turn's agent-conduct flags (a customer turn has none).
fn conduct_of(turn: &TurnLine) -> &[ConductKind] {
    turn.conduct.as_deref().unwrap_or_default()
}

impl Report {
    pub fn add_conversation(&mut self, c: ConversationLine) {
        self.conversations += 1;
        let agent = if c.agent_id.is_empty() { "(no agent id)" } else { c.agent_id.as_str() };
        let incidents = c.incidents.len();
        let totals = self.agents.entry(agent.to_string()).or_default();
        totals.conversations += 1;
        totals.incidents += incidents as u64;
        for t in &c.turns {
            match t.speaker {
                Speaker::Customer => {
                    self.customer_turns += 1;
                    *self.severity.entry(t.severity).or_default() += 1;
                    *self.actions.entry(t.guidance.as_ref().map_or(Action::None, |g| g.action)).or_default() += 1;
                    *self.languages.entry(t.language.clone()).or_default() += 1;
                }
                Speaker::Agent => {
                    self.agent_turns += 1;
                    totals.agent_turns += 1;
                    for &kind in conduct_of(t) {
                        *totals.conduct.entry(kind).or_default() += 1;
                    }
                }
            }
        }
        let max_action = c.summary.max_action;
        if max_action >= Action::SetBoundary {
            self.crossed += 1;
        }
        let conduct_flags: usize = c.turns.iter().map(|t| conduct_of(t).len()).sum();
        if incidents > 0 || conduct_flags > 0 {
            let rank = (max_action, c.summary.max_severity, incidents + conduct_flags);
            self.serious.push((rank, c));
            if self.serious.len() >= 2 * SHOWN_CONVERSATIONS {
                self.keep_most_serious();
            }
        }
    }

    fn keep_most_serious(&mut self) {
        // Stable: among equals, the earlier conversation stays first.
        self.serious.sort_by_key(|s| std::cmp::Reverse(s.0));
        self.serious.truncate(SHOWN_CONVERSATIONS);
    }

    pub fn add_error(&mut self, e: ErrorLine) {
        self.errors += 1;
        if self.error_rows.len() < SHOWN_ERRORS {
            self.error_rows.push(e);
        }
    }

    pub fn render(mut self, interrupted: bool) -> String {
        self.keep_most_serious();
        let severity: Vec<(String, u64)> = Severity::ALL.iter().map(|s| (s.name().to_string(), self.severity.get(s).copied().unwrap_or(0))).collect();
        let actions: Vec<(String, u64)> = Action::ALL.iter().map(|a| (a.name().to_string(), self.actions.get(a).copied().unwrap_or(0))).collect();
        let mut languages: Vec<(String, u64)> = std::mem::take(&mut self.languages).into_iter().collect();
        languages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        languages.truncate(12);
        let mut agents: Vec<(String, AgentTotals)> = std::mem::take(&mut self.agents).into_iter().collect();
        agents.sort_by(|a, b| b.1.conduct.values().sum::<u64>().cmp(&a.1.conduct.values().sum::<u64>()).then(a.0.cmp(&b.0)));
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "calmline QA report" }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    h1 { "calmline QA report" }
                    @if interrupted {
                        p.warn {
                            "This run was interrupted: the report covers the conversations scored so far. Run "
                            code { "calmline score … --resume" } " to finish it."
                        }
                    }
                    div.cards {
                        (card("conversations", self.conversations, false))
                        (card("customer turns", self.customer_turns, false))
                        (card("agent turns", self.agent_turns, false))
                        (card("boundary crossed", self.crossed, self.crossed > 0))
                        (card("records failed", self.errors, self.errors > 0))
                    }
                    section.charts {
                        (chart("Severity of customer turns", &severity, true))
                        (chart("Guidance given", &actions, true))
                        (chart("Language mix (customer turns)", &languages, false))
                    }
                    h2 { "Where a boundary was crossed, and agent conduct" }
                    @if self.serious.is_empty() {
                        p { "No conversation reached SET_BOUNDARY and no agent turn was flagged." }
                    } @else {
                        p { "The " (self.serious.len()) " most serious conversations, most serious first. Open one to see its turns; incidents link to the turn." }
                        input #filter placeholder="filter by conversation or agent id";
                        @for (n, (_, c)) in self.serious.iter().enumerate() {
                            (conversation(n, c))
                        }
                    }
                    h2 { "Agent conduct per agent" }
                    table {
                        tr {
                            th { "agent" } th { "conversations" } th { "agent turns" } th { "incidents handled" }
                            @for k in ConductKind::ALL { th { (k.name().replace('_', " ")) } }
                        }
                        @for (agent, t) in agents.iter().take(SHOWN_AGENTS) {
                            tr {
                                td { (agent) } td { (t.conversations) } td { (t.agent_turns) } td { (t.incidents) }
                                @for k in ConductKind::ALL {
                                    @let n = t.conduct.get(&k).copied().unwrap_or(0);
                                    td.flag[n > 0] { (n) }
                                }
                            }
                        }
                    }
                    @if agents.len() > SHOWN_AGENTS {
                        p { (agents.len() - SHOWN_AGENTS) " more agents in summary.csv." }
                    }
                    @if self.errors > 0 {
                        h2 { "Records that could not be scored (" (self.errors) ")" }
                        table {
                            tr { th { "file" } th { "line" } th { "id" } th { "error" } }
                            @for e in &self.error_rows {
                                tr { td { (e.file) } td { (e.line) } td { (e.id.as_deref().unwrap_or("")) } td { (e.error) } }
                            }
                        }
                    }
                    p.foot { "Every conversation, turn and score is in conversations.jsonl; one row per conversation in summary.csv." }
                    script { (PreEscaped(JS)) }
                }
            }
        };
        page.into_string()
    }
}

/// Agents listed in the conduct table (all of them are in summary.csv).
const SHOWN_AGENTS: usize = 200;

fn card(title: &str, n: u64, alert: bool) -> Markup {
    html! {
        div.card.alert[alert] { div.n { (n) } div { (title) } }
    }
}

/// A horizontal bar chart in inline SVG.
fn chart(title: &str, rows: &[(String, u64)], ladder_colours: bool) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let (row_h, label_w, bar_w) = (22, 130, 220);
    let height = rows.len() * row_h + 8;
    html! {
        figure {
            figcaption { (title) }
            svg width=(label_w + bar_w + 60) height=(height) role="img" {
                @for (i, (label, n)) in rows.iter().enumerate() {
                    @let y = i * row_h + 4;
                    @let w = (*n as f64 / max * bar_w as f64).round();
                    @let colour = if ladder_colours { PALETTE[(i * PALETTE.len() / rows.len().max(1)).min(PALETTE.len() - 1)] } else { "#4a78b5" };
                    // SVG elements are closed explicitly: inline SVG in HTML has no void elements.
                    text x=(label_w - 6) y=(y + 13) text-anchor="end" { (label) }
                    rect x=(label_w) y=(y) width=(w) height="16" fill=(colour) {}
                    text x=(label_w as f64 + w + 4.0) y=(y + 13) { (n) }
                }
            }
        }
    }
}

const PALETTE: [&str; 7] = ["#9bb7a6", "#7fb069", "#e6c229", "#f17105", "#d11149", "#8c1c4a", "#4b1d3f"];

fn conversation(n: usize, c: &ConversationLine) -> Markup {
    let (id, agent, s) = (&c.id, c.agent_id.as_str(), &c.summary);
    let conduct: Vec<String> = s.agent_conduct.iter().map(|(k, v)| format!("{} ×{v}", k.replace('_', " "))).collect();
    html! {
        details.conv data-key={ (id) " " (agent) } {
            summary {
                b { (id) } " · agent " (if agent.is_empty() { "–" } else { agent }) " · "
                // Its place on the ladder (the CSS colours a4 and up): `Action` is declared in ladder order.
                span class={ "act a" (s.max_action as usize) } { (s.max_action.name()) }
                " · max severity " (s.max_severity.name()) " · " (c.incidents.len()) " incident(s)"
                @if !conduct.is_empty() { " · agent conduct: " (conduct.join(", ")) }
            }
            @if !c.incidents.is_empty() {
                p {
                    "Incidents: "
                    @for (i, incident) in c.incidents.iter().enumerate() {
                        @if i > 0 { " · " }
                        a href={ "#c" (n) "-t" (incident.turn_index) } { "turn " (incident.turn_index) ": " (incident.action.name()) }
                    }
                }
            }
            table.turns {
                tr { th { "#" } th { "speaker" } th { "text" } th { "flags" } th { "severity" } th { "guidance / conduct" } }
                @for t in &c.turns {
                    @let flags: Vec<&str> = t.flags.iter().map(|l| l.name()).collect();
                    @let spans = t.guidance.as_ref().map_or(&[][..], |g| &g.spans);
                    tr id={ "c" (n) "-t" (t.turn_index) } class=(t.speaker.name()) {
                        td { (t.turn_index) }
                        td { (t.speaker.name()) }
                        td dir="auto" { (highlighted(&t.text, spans)) }
                        td { (flags.join(", ")) }
                        td { (t.severity.name()) }
                        td {
                            @match t.speaker {
                                Speaker::Customer => {
                                    @if let Some(g) = &t.guidance { (g.action.name()) " " span.hint { (g.hint) } }
                                }
                                Speaker::Agent => {
                                    @let kinds: Vec<&str> = conduct_of(t).iter().map(|k| k.name()).collect();
                                    @if !kinds.is_empty() { span.flag { (kinds.join(", ")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The text with its evidence spans (byte ranges) in `<mark>`; ranges that do not fit the text
/// (out of order, overlapping, off a character boundary) are left unmarked.
fn highlighted(text: &str, spans: &[LineSpan]) -> Markup {
    let mut pieces: Vec<(&str, Option<&LineSpan>)> = Vec::new();
    let mut at = 0;
    for span in spans {
        let (begin, end) = (span.byte_begin, span.byte_end);
        if begin < at || begin >= end || end > text.len() || !text.is_char_boundary(begin) || !text.is_char_boundary(end) {
            continue;
        }
        pieces.push((&text[at..begin], None));
        pieces.push((&text[begin..end], Some(span)));
        at = end;
    }
    pieces.push((&text[at..], None));
    html! {
        @for (piece, span) in pieces {
            @if let Some(span) = span { mark title=(span.label.name()) { (piece) } } @else { (piece) }
        }
    }
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:120px}
.card .n{font-size:24px;font-weight:600}.card.alert{border-color:#d11149;color:#8c1c4a}
.charts{display:flex;flex-wrap:wrap;gap:20px}figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}svg text{font-size:12px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e2e2e2;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.flag,span.flag{color:#b00020;font-weight:600}.hint{color:#555}mark{background:#ffe08a;border-radius:2px}
details.conv{border:1px solid #ddd;border-radius:6px;margin:6px 0;padding:6px 10px}details.conv summary{cursor:pointer}
tr.agent{background:#f7f9fc}tr:target{outline:2px solid #f17105}.act{padding:0 5px;border-radius:3px;color:#fff;background:#888}
.act.a4{background:#d11149}.act.a5{background:#8c1c4a}.act.a6{background:#4b1d3f}
.warn{background:#fff4e5;border:1px solid #f17105;padding:8px}#filter{margin:6px 0;padding:4px;width:280px}.foot{color:#666;margin-top:24px}";

const JS: &str = "var f=document.getElementById('filter');if(f){f.addEventListener('input',function(){var q=f.value.toLowerCase();document.querySelectorAll('details.conv').forEach(function(d){d.style.display=d.dataset.key.toLowerCase().indexOf(q)<0?'none':'';});});}
document.querySelectorAll('a[href^=\"#c\"]').forEach(function(a){a.addEventListener('click',function(){var t=document.getElementById(a.getAttribute('href').slice(1));if(t){t.closest('details').open=true;}});});";

#[cfg(test)]
mod tests {
    use super::{Report, highlighted};
    use crate::domain::labels::Label;
    use crate::qa::output::{ConversationLine, ErrorLine, LineSpan};

    /// Transcripts are untrusted: ids, agent ids, texts and error messages reach the page escaped,
    /// so the report's own script is the only one.
    #[test]
    fn hostile_transcripts_cannot_inject_markup() {
        let hostile = "</td><script>alert(1)</script>";
        let line = serde_json::json!({
            "agent_id": "<img src=x onerror=alert(2)>", "conduct_version": "c", "id": "\"><b>id</b>", "locale": "en",
            "incidents": [{"action": "SET_BOUNDARY", "labels": ["insult"], "severity": "high", "turn_index": 0}],
            "model_version": "m", "policy_hash": "p", "source": {"file": "-", "line": 1},
            "summary": {"agent_conduct": {"blames_others": 1}, "agent_turns": 0, "customer_turns": 1,
                "final_state": {"turns": 1, "customer_turns": 1, "heated_turns": 1, "boundary_set": true, "manager_involved": false, "calm_streak": 0},
                "flagged_turns": {"insult": 1}, "max_action": "SET_BOUNDARY", "max_severity": "high"},
            "turns": [{"flags": ["insult"], "language": "en", "language_measured": true, "scores": {}, "severity": "high",
                "speaker": "customer", "text": hostile, "turn_index": 0,
                "guidance": {"action": "SET_BOUNDARY", "donts": [], "evidence": ["insult"], "hint": "<i>hint</i>", "hint_locale": "en",
                    "rule": "r", "source": "s", "spans": [{"begin": 5, "byte_begin": 5, "byte_end": 13, "end": 13, "label": "insult", "score": 0.9}]}}]
        });
        let mut report = Report::default();
        report.add_conversation(serde_json::from_value::<ConversationLine>(line).unwrap());
        report.add_error(ErrorLine { error: hostile.into(), file: "<f>".into(), id: Some("<i>".into()), line: 3 });
        let html = report.render(false);
        assert_eq!(html.matches("<script").count(), 1, "only the report's own script");
        assert!(html.contains("&lt;/td&gt;<mark title=\"insult\">&lt;script&gt;</mark>alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;") && html.contains("&quot;&gt;&lt;b&gt;id&lt;/b&gt;"));
        assert!(!html.contains("<img") && !html.contains("<i>") && !html.contains("<b>id"));
        assert!(html.contains("Records that could not be scored (1)") && html.contains("boundary crossed"));
    }

    #[test]
    fn spans_are_marked_escaped_and_bad_ranges_left_alone() {
        let text = "<b>אתה</b> אידיוט & idiot";
        let at = |w: &str| text.find(w).unwrap();
        // Only the byte offsets and the label matter here.
        let span = |byte_begin: usize, byte_end: usize| LineSpan { begin: 0, byte_begin, byte_end, end: 0, label: Label::Insult, score: 0.9 };
        let spans = [span(at("אידיוט"), at("אידיוט") + "אידיוט".len()), span(at("idiot"), at("idiot") + 5), span(1, 4), span(at("אתה") + 1, 400)];
        assert_eq!(
            highlighted(text, &spans).into_string(),
            "&lt;b&gt;אתה&lt;/b&gt; <mark title=\"insult\">אידיוט</mark> &amp; <mark title=\"insult\">idiot</mark>"
        );
        assert_eq!(highlighted("plain", &[]).into_string(), "plain");
    }
}
