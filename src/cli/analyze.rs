//! The `calmline analyze` command: one text, readable; or JSON lines from stdin, one result line
//! each, in order (format: DESIGN.md, "Texts").

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::config::AnalyzeArgs;
use crate::domain::policy::Policy;
use crate::domain::text::{Analysis, MAX_TEXT_BYTES, TextInput, analyze, validate};
use crate::lines::{Line, read_bounded_line};
use crate::model::Classifier;

/// A JSON line longer than this is answered with an error without being held in memory whole
/// (room for a text at the limit with JSON escaping).
pub const MAX_LINE_BYTES: usize = 4 * MAX_TEXT_BYTES;

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let policy = crate::domain::policy::Policy::load_or_embedded(args.policy.policy.as_deref())?;
    let classifier = crate::model::Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let engine = Engine { classifier: &classifier, policy: &policy };
    match &args.text {
        Some(text) => {
            let input = TextInput { text, lang: None };
            validate(&input)?;
            let analysis = analyze(&classifier, &policy, &[input])?.remove(0);
            print_readable(&classifier, &analysis);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let summary = analyze_jsonl(engine, stdin, stdout, args.batch as usize)?;
            if summary.failed > 0 {
                eprintln!("{} of {} lines failed", summary.failed, summary.lines);
                Ok(ExitCode::from(1))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn print_readable(classifier: &Classifier, a: &Analysis) {
    let flags: Vec<&str> = a.flags.iter().map(|l| l.name()).collect();
    println!("language  {}{}", a.language, if a.language_measured { "" } else { " (quality not measured in this language)" });
    println!("severity  {}", a.severity.name());
    println!("flags     {}", if flags.is_empty() { "none".to_string() } else { flags.join(", ") });
    println!("scores");
    for (label, score) in a.scores.0.iter() {
        let threshold = classifier.head.threshold_in(label, &a.language);
        let bar_len = (score * 20.0).round() as usize;
        let bar: String = "█".repeat(bar_len) + &"·".repeat(20 - bar_len.min(20));
        let mark = if score >= threshold { "  ◀ flagged" } else { "" };
        println!("  {:<18} {score:.3} {bar} (threshold {threshold:.2}){mark}", label.name());
    }
    println!("model     {}", classifier.model_version());
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JsonlSummary {
    pub lines: usize,
    pub failed: usize,
}

#[derive(serde::Deserialize)]
struct JsonlInput {
    #[serde(default)]
    id: Option<serde_json::Value>,
    text: Option<serde_json::Value>,
    #[serde(default)]
    lang: Option<String>,
}

/// A line read from the input, before or after the model ran.
enum Pending {
    Failed { id: Option<serde_json::Value>, line: usize, error: String },
    Ready { id: Option<serde_json::Value>, line: usize, text: String, lang: Option<String> },
}

/// The model and the policy a run uses.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    pub classifier: &'a Classifier,
    pub policy: &'a Policy,
}

/// Reads JSON lines, analyses them in batches of `batch`, and writes one line per input line,
/// in order. A line that cannot be read or analysed yields `{"id" | "line", "error"}` and the
/// run goes on; only an I/O failure of the streams themselves stops it.
pub fn analyze_jsonl(engine: Engine, mut input: impl BufRead, mut output: impl Write, batch: usize) -> anyhow::Result<JsonlSummary> {
    let mut summary = JsonlSummary::default();
    let mut pending = Vec::new();
    let mut buf = Vec::new();
    loop {
        let line = match read_bounded_line(&mut input, &mut buf, MAX_LINE_BYTES).context("reading stdin")? {
            Line::End => break,
            Line::Complete => parse_line(&buf, summary.lines + 1),
            Line::TooLong => Pending::Failed { id: None, line: summary.lines + 1, error: format!("line is longer than {MAX_LINE_BYTES} bytes") },
        };
        summary.lines += 1;
        pending.push(line);
        if pending.iter().filter(|p| matches!(p, Pending::Ready { .. })).count() >= batch {
            summary.failed += flush(engine, &mut pending, &mut output)?;
        }
    }
    summary.failed += flush(engine, &mut pending, &mut output)?;
    Ok(summary)
}

fn parse_line(raw: &[u8], line: usize) -> Pending {
    let fail = |id, error: &str| Pending::Failed { id, line, error: error.to_string() };
    let Ok(text) = std::str::from_utf8(raw) else {
        return fail(None, "line is not valid UTF-8");
    };
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return fail(None, "empty line");
    }
    let parsed: JsonlInput = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => return fail(None, &format!("not a JSON object with a \"text\" field: {e}")),
    };
    let id = parsed.id;
    let text = match parsed.text {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return fail(id, "\"text\" must be a string"),
        None => return fail(id, "missing \"text\""),
    };
    if let Err(e) = validate(&TextInput { text: &text, lang: parsed.lang.as_deref() }) {
        return fail(id, &e.to_string());
    }
    Pending::Ready { id, line, text, lang: parsed.lang }
}

/// One output line, fields in the order of DESIGN.md: id (or line), the analysis or the error.
#[derive(Serialize)]
struct OutputLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    analysis: Option<&'a Analysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Runs the model on the ready lines, writes every pending line in order, returns the failures.
fn flush(engine: Engine, pending: &mut Vec<Pending>, output: &mut impl Write) -> anyhow::Result<usize> {
    let inputs: Vec<TextInput> = pending
        .iter()
        .filter_map(|p| match p {
            Pending::Ready { text, lang, .. } => Some(TextInput { text, lang: lang.as_deref() }),
            Pending::Failed { .. } => None,
        })
        .collect();
    let mut results = match analyze(engine.classifier, engine.policy, &inputs) {
        Ok(r) => r.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => inputs.iter().map(|_| Err(e.to_string())).collect(),
    }
    .into_iter();
    let mut failed = 0;
    for p in pending.drain(..) {
        let (id, line, result) = match p {
            Pending::Failed { id, line, error } => (id, line, Err(error)),
            Pending::Ready { id, line, .. } => (id, line, results.next().unwrap_or_else(|| Err("no result".into()))),
        };
        let (analysis, error) = match &result {
            Ok(a) => (Some(a), None),
            Err(e) => {
                failed += 1;
                (None, Some(e.as_str()))
            }
        };
        // An id names the line when there is one, the line number otherwise.
        let out = OutputLine { line: id.is_none().then_some(line), id: id.as_ref(), analysis, error };
        serde_json::to_writer(&mut *output, &out)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(failed)
}
