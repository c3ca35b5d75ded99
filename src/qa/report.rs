//! The self-contained HTML report of a `calmline score` run: what a QA lead looks at first.
//! No network: CSS, the little JavaScript and the SVG charts are inline. Built from the
//! conversation lines in constant memory (counts, plus the most serious conversations, bounded).

use std::collections::BTreeMap;
use std::fmt::Write;

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
        let mut h = String::with_capacity(64 * 1024);
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>calmline QA report</title>\n<style>");
        h.push_str(CSS);
        h.push_str("</style></head><body>\n<h1>calmline QA report</h1>\n");
        if interrupted {
            h.push_str("<p class=\"warn\">This run was interrupted: the report covers the conversations scored so far. Run <code>calmline score … --resume</code> to finish it.</p>\n");
        }
        let _ = writeln!(
            h,
            "<div class=\"cards\">{}{}{}{}{}</div>",
            card("conversations", self.conversations),
            card("customer turns", self.customer_turns),
            card("agent turns", self.agent_turns),
            card_class("boundary crossed", self.crossed, if self.crossed > 0 { "alert" } else { "" }),
            card_class("records failed", self.errors, if self.errors > 0 { "alert" } else { "" }),
        );

        h.push_str("<section class=\"charts\">\n");
        let severity: Vec<(String, u64)> = Severity::ALL.iter().map(|s| (s.name().to_string(), self.severity.get(s).copied().unwrap_or(0))).collect();
        chart(&mut h, "Severity of customer turns", &severity, true);
        let actions: Vec<(String, u64)> = Action::ALL.iter().map(|a| (a.name().to_string(), self.actions.get(a).copied().unwrap_or(0))).collect();
        chart(&mut h, "Guidance given", &actions, true);
        let mut languages: Vec<(String, u64)> = self.languages.into_iter().collect();
        languages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        languages.truncate(12);
        chart(&mut h, "Language mix (customer turns)", &languages, false);
        h.push_str("</section>\n");

        h.push_str("<h2>Where a boundary was crossed, and agent conduct</h2>\n");
        if self.serious.is_empty() {
            h.push_str("<p>No conversation reached SET_BOUNDARY and no agent turn was flagged.</p>\n");
        } else {
            let _ = write!(
                h,
                "<p>The {} most serious conversations, most serious first. Open one to see its turns; incidents link to the turn.</p>\n<input id=\"filter\" placeholder=\"filter by conversation or agent id\">\n",
                self.serious.len()
            );
            for (n, (_, c)) in self.serious.iter().enumerate() {
                conversation(&mut h, n, c);
            }
        }

        h.push_str("<h2>Agent conduct per agent</h2>\n<table><tr><th>agent</th><th>conversations</th><th>agent turns</th><th>incidents handled</th>");
        for k in ConductKind::ALL {
            let _ = write!(h, "<th>{}</th>", k.name().replace('_', " "));
        }
        h.push_str("</tr>\n");
        let mut agents: Vec<(String, AgentTotals)> = self.agents.into_iter().collect();
        agents.sort_by(|a, b| b.1.conduct.values().sum::<u64>().cmp(&a.1.conduct.values().sum::<u64>()).then(a.0.cmp(&b.0)));
        for (agent, t) in agents.iter().take(200) {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>", esc(agent), t.conversations, t.agent_turns, t.incidents);
            for k in ConductKind::ALL {
                let n = t.conduct.get(&k).copied().unwrap_or(0);
                let _ = write!(h, "<td class=\"{}\">{n}</td>", if n > 0 { "flag" } else { "" });
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        if agents.len() > 200 {
            let _ = writeln!(h, "<p>{} more agents in summary.csv.</p>", agents.len() - 200);
        }

        if self.errors > 0 {
            let _ =
                write!(h, "<h2>Records that could not be scored ({})</h2>\n<table><tr><th>file</th><th>line</th><th>id</th><th>error</th></tr>\n", self.errors);
            for e in &self.error_rows {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&e.file),
                    e.line,
                    esc(e.id.as_deref().unwrap_or("")),
                    esc(&e.error)
                );
            }
            h.push_str("</table>\n");
        }
        h.push_str("<p class=\"foot\">Every conversation, turn and score is in conversations.jsonl; one row per conversation in summary.csv.</p>\n<script>");
        h.push_str(JS);
        h.push_str("</script></body></html>\n");
        h
    }
}

fn card(title: &str, n: u64) -> String {
    card_class(title, n, "")
}

fn card_class(title: &str, n: u64, class: &str) -> String {
    format!("<div class=\"card {class}\"><div class=\"n\">{n}</div><div>{}</div></div>", esc(title))
}

/// A horizontal bar chart in inline SVG.
fn chart(h: &mut String, title: &str, rows: &[(String, u64)], ladder_colours: bool) {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let (row_h, label_w, bar_w) = (22, 130, 220);
    let height = rows.len() * row_h + 8;
    let _ = write!(h, "<figure><figcaption>{}</figcaption><svg width=\"{}\" height=\"{height}\" role=\"img\">", esc(title), label_w + bar_w + 60);
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = i * row_h + 4;
        let w = (*n as f64 / max * bar_w as f64).round();
        let colour = if ladder_colours { PALETTE[(i * PALETTE.len() / rows.len().max(1)).min(PALETTE.len() - 1)] } else { "#4a78b5" };
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{n}</text>",
            label_w - 6,
            y + 13,
            esc(label),
            label_w,
            label_w as f64 + w + 4.0,
            y + 13
        );
    }
    h.push_str("</svg></figure>\n");
}

const PALETTE: [&str; 7] = ["#9bb7a6", "#7fb069", "#e6c229", "#f17105", "#d11149", "#8c1c4a", "#4b1d3f"];

fn conversation(h: &mut String, n: usize, c: &ConversationLine) {
    let (id, agent, s) = (&c.id, c.agent_id.as_str(), &c.summary);
    let conduct: Vec<String> = s.agent_conduct.iter().map(|(k, v)| format!("{} ×{v}", k.replace('_', " "))).collect();
    let _ = writeln!(
        h,
        "<details class=\"conv\" data-key=\"{} {}\"><summary><b>{}</b> · agent {} · <span class=\"act a{}\">{}</span> · max severity {} · {} incident(s){}</summary>",
        esc(id),
        esc(agent),
        esc(id),
        esc(if agent.is_empty() { "–" } else { agent }),
        // Its place on the ladder (the CSS colours a4 and up): `Action` is declared in ladder order.
        s.max_action as usize,
        esc(s.max_action.name()),
        esc(s.max_severity.name()),
        c.incidents.len(),
        if conduct.is_empty() { String::new() } else { format!(" · agent conduct: {}", esc(&conduct.join(", "))) }
    );
    let incidents: Vec<String> =
        c.incidents.iter().map(|i| format!("<a href=\"#c{n}-t{}\">turn {}: {}</a>", i.turn_index, i.turn_index, esc(i.action.name()))).collect();
    if !incidents.is_empty() {
        let _ = writeln!(h, "<p>Incidents: {}</p>", incidents.join(" · "));
    }
    h.push_str("<table class=\"turns\"><tr><th>#</th><th>speaker</th><th>text</th><th>flags</th><th>severity</th><th>guidance / conduct</th></tr>\n");
    for t in &c.turns {
        let flags: Vec<&str> = t.flags.iter().map(|l| l.name()).collect();
        let detail = match t.speaker {
            Speaker::Customer => {
                let (action, hint) = t.guidance.as_ref().map_or(("", ""), |g| (g.action.name(), g.hint.as_str()));
                format!("{} <span class=\"hint\">{}</span>", esc(action), esc(hint))
            }
            Speaker::Agent => {
                let kinds: Vec<&str> = conduct_of(t).iter().map(|k| k.name()).collect();
                if kinds.is_empty() { String::new() } else { format!("<span class=\"flag\">{}</span>", esc(&kinds.join(", "))) }
            }
        };
        let speaker = t.speaker.name();
        let spans = t.guidance.as_ref().map_or(&[][..], |g| &g.spans);
        let _ = writeln!(
            h,
            "<tr id=\"c{n}-t{}\" class=\"{}\"><td>{}</td><td>{}</td><td dir=\"auto\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.turn_index,
            esc(speaker),
            t.turn_index,
            esc(speaker),
            highlighted(&t.text, spans),
            esc(&flags.join(", ")),
            esc(t.severity.name()),
            detail
        );
    }
    h.push_str("</table></details>\n");
}

/// The text, escaped, with its evidence spans (byte ranges) in `<mark>`; ranges that do not fit
/// the text (out of order, overlapping, off a character boundary) are left unmarked.
fn highlighted(text: &str, spans: &[LineSpan]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for span in spans {
        let (begin, end) = (span.byte_begin, span.byte_end);
        if begin < at || begin >= end || end > text.len() || !text.is_char_boundary(begin) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&esc(&text[at..begin]));
        out.push_str(&format!("<mark title=\"{}\">{}</mark>", esc(span.label.name()), esc(&text[begin..end])));
        at = end;
    }
    out.push_str(&esc(&text[at..]));
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
    use super::highlighted;
    use crate::domain::labels::Label;
    use crate::qa::output::LineSpan;

    #[test]
    fn spans_are_marked_escaped_and_bad_ranges_left_alone() {
        let text = "<b>אתה</b> אידיוט & idiot";
        let at = |w: &str| text.find(w).unwrap();
        // Only the byte offsets and the label matter here.
        let span = |byte_begin: usize, byte_end: usize| LineSpan { begin: 0, byte_begin, byte_end, end: 0, label: Label::Insult, score: 0.9 };
        let spans = [span(at("אידיוט"), at("אידיוט") + "אידיוט".len()), span(at("idiot"), at("idiot") + 5), span(1, 4), span(at("אתה") + 1, 400)];
        assert_eq!(highlighted(text, &spans), "&lt;b&gt;אתה&lt;/b&gt; <mark title=\"insult\">אידיוט</mark> &amp; <mark title=\"insult\">idiot</mark>");
        assert_eq!(highlighted("plain", &[]), "plain");
    }
}
