//! Transcript readers for the formats of DESIGN.md ("Files people feed it"):
//!
//! - JSON lines, one conversation a line:
//!   `{"id": "c1", "locale": "hu", "agent_id": "a7", "turns": [{"speaker": "customer", "text": "…"}, …]}`
//! - CSV with the columns `conversation_id,turn_index,speaker,text` (optional `locale`,
//!   `agent_id`), a header row, the rows of one conversation consecutive.
//!
//! Both yield `Record`s: a conversation, or the error of one that could not be read, with the
//! line it started on. Memory holds one conversation at a time, whatever the file size.

use std::io::BufRead;

use crate::domain::conversation::{MAX_TURNS_PER_TRANSCRIPT, Speaker, TranscriptInput, TurnInput};
use crate::lines::{Line, read_bounded_line};

/// A conversation that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// 1-based line where the record starts.
    pub line: usize,
    /// The conversation id, when it could be read.
    pub id: Option<String>,
    pub message: String,
}

pub type Record = Result<(usize, TranscriptInput), RecordError>;

/// Longest JSON line read whole; a longer one is skipped with an error.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

fn speaker(value: &str) -> Option<Speaker> {
    match value.trim().to_ascii_lowercase().as_str() {
        "customer" => Some(Speaker::Customer),
        "agent" => Some(Speaker::Agent),
        _ => None,
    }
}

/// Reads JSON-lines transcripts.
pub struct JsonlReader<R> {
    input: R,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        JsonlReader { input, line: 0, buf: Vec::new() }
    }
}

/// Reads one transcript record, the JSON object of one line; `line` is where it starts, for
/// errors. `JsonlReader` and the Python package (which takes one record at a time) share it, so
/// both accept and refuse the same records.
pub fn parse_jsonl_record(raw: &[u8], line: usize) -> Record {
    let fail = |id: Option<String>, message: String| Err(RecordError { line, id, message });
    let Ok(text) = std::str::from_utf8(raw) else { return fail(None, "line is not valid UTF-8".into()) };
    #[derive(serde::Deserialize)]
    struct Turn {
        speaker: String,
        text: String,
        #[serde(default)]
        lang: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Conversation {
        id: serde_json::Value,
        #[serde(default)]
        locale: String,
        #[serde(default)]
        agent_id: Option<serde_json::Value>,
        turns: Vec<Turn>,
    }
    let c: Conversation = match serde_json::from_str(text.trim_end_matches(['\n', '\r'])) {
        Ok(c) => c,
        Err(e) => return fail(None, format!("not a transcript object: {e}")),
    };
    let scalar = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let id = scalar(c.id);
    if c.turns.len() > MAX_TURNS_PER_TRANSCRIPT {
        return fail(Some(id), format!("{} turns; the limit is {MAX_TURNS_PER_TRANSCRIPT}", c.turns.len()));
    }
    let mut turns = Vec::with_capacity(c.turns.len());
    for (i, t) in c.turns.into_iter().enumerate() {
        let Some(speaker) = speaker(&t.speaker) else {
            return fail(Some(id), format!("turn {i}: speaker must be \"customer\" or \"agent\""));
        };
        turns.push(TurnInput { speaker, text: t.text, lang: t.lang });
    }
    Ok((line, TranscriptInput { id, locale: c.locale, agent_id: c.agent_id.map(scalar).unwrap_or_default(), turns }))
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            let outcome = match read_bounded_line(&mut self.input, &mut self.buf, MAX_LINE_BYTES) {
                Ok(o) => o,
                Err(e) => return Some(Err(RecordError { line: self.line + 1, id: None, message: format!("read error: {e}") })),
            };
            match outcome {
                Line::End => return None,
                Line::TooLong => {
                    self.line += 1;
                    return Some(Err(RecordError { line: self.line, id: None, message: format!("line is longer than {MAX_LINE_BYTES} bytes") }));
                }
                Line::Complete => self.line += 1,
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines between records are allowed
            }
            let raw = std::mem::take(&mut self.buf);
            let record = parse_jsonl_record(&raw, self.line);
            self.buf = raw;
            return Some(record);
        }
    }
}

/// Reads CSV transcripts, one conversation (its consecutive rows) at a time.
pub struct CsvReader<R: std::io::Read> {
    /// None once the header proved unreadable.
    rows: Option<csv::StringRecordsIntoIter<R>>,
    columns: Columns,
    pending: Option<(usize, csv::StringRecord)>,
    header_error: Option<String>,
}

#[derive(Default)]
struct Columns {
    conversation: usize,
    index: usize,
    speaker: usize,
    text: usize,
    locale: Option<usize>,
    agent: Option<usize>,
}

impl<R: std::io::Read> CsvReader<R> {
    pub fn new(input: R) -> Self {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let header = reader.headers().cloned();
        let (columns, header_error) = match header {
            Ok(h) => {
                let find = |name: &str| h.iter().position(|c| c.trim().trim_start_matches('\u{feff}') == name);
                match (find("conversation_id"), find("turn_index"), find("speaker"), find("text")) {
                    (Some(conversation), Some(index), Some(speaker), Some(text)) => {
                        (Columns { conversation, index, speaker, text, locale: find("locale"), agent: find("agent_id") }, None)
                    }
                    _ => (Columns::default(), Some("the header must name conversation_id, turn_index, speaker and text".to_string())),
                }
            }
            Err(e) => (Columns::default(), Some(format!("unreadable header: {e}"))),
        };
        CsvReader { rows: Some(reader.into_records()), columns, pending: None, header_error }
    }

    fn next_row(&mut self) -> Option<Result<(usize, csv::StringRecord), RecordError>> {
        if let Some(p) = self.pending.take() {
            return Some(Ok(p));
        }
        let row = self.rows.as_mut()?.next()?;
        Some(match row {
            Ok(r) => Ok((r.position().map(|p| p.line() as usize).unwrap_or(0), r)),
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                Err(RecordError { line, id: None, message: format!("unreadable row: {e}") })
            }
        })
    }
}

impl<R: std::io::Read> Iterator for CsvReader<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if let Some(message) = self.header_error.take() {
            self.rows = None; // nothing after a bad header can be read
            return Some(Err(RecordError { line: 1, id: None, message }));
        }
        let (start, first) = match self.next_row()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let c = &self.columns;
        let (conversation, index_col, speaker_col, text_col) = (c.conversation, c.index, c.speaker, c.text);
        let id = first.get(conversation).unwrap_or("").to_string();
        let locale = c.locale.and_then(|i| first.get(i)).unwrap_or("").to_string();
        let agent_id = c.agent.and_then(|i| first.get(i)).unwrap_or("").to_string();
        let mut rows = vec![(start, first)];
        let mut failure: Option<String> = None;
        // Gather the conversation's consecutive rows; a bad row fails the whole conversation
        // (a turn would be missing), but its other rows are still consumed with it.
        loop {
            match self.next_row() {
                None => break,
                Some(Err(e)) => {
                    failure.get_or_insert(format!("line {}: {}", e.line, e.message));
                }
                Some(Ok((line, row))) => {
                    if row.get(conversation) != Some(id.as_str()) {
                        self.pending = Some((line, row));
                        break;
                    }
                    if rows.len() >= MAX_TURNS_PER_TRANSCRIPT {
                        failure.get_or_insert(format!("more than {MAX_TURNS_PER_TRANSCRIPT} turns"));
                        continue;
                    }
                    rows.push((line, row));
                }
            }
        }
        let fail = |message: String| Some(Err(RecordError { line: start, id: Some(id.clone()), message }));
        if let Some(message) = failure {
            return fail(message);
        }
        let mut turns = Vec::with_capacity(rows.len());
        for (line, row) in &rows {
            let Some(index) = row.get(index_col).and_then(|v| v.trim().parse::<u32>().ok()) else {
                return fail(format!("line {line}: turn_index must be a non-negative integer"));
            };
            let Some(speaker) = row.get(speaker_col).and_then(speaker) else {
                return fail(format!("line {line}: speaker must be \"customer\" or \"agent\""));
            };
            let text = row.get(text_col).unwrap_or("").to_string();
            turns.push((index, TurnInput { speaker, text, lang: None }));
        }
        turns.sort_by_key(|(i, _)| *i);
        if turns.windows(2).any(|w| w[0].0 == w[1].0) {
            return fail("turn_index repeats within the conversation".into());
        }
        Some(Ok((start, TranscriptInput { id, locale, agent_id, turns: turns.into_iter().map(|(_, t)| t).collect() })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_reads_conversations_and_reports_bad_lines_with_their_numbers() {
        let input = concat!(
            r#"{"id": "c1", "locale": "hu", "agent_id": "a7", "turns": [{"speaker": "customer", "text": "Szia"}, {"speaker": "Agent", "text": "Jó napot"}]}"#,
            "\n",
            "\n",
            "{broken\n",
            r#"{"id": 42, "turns": [{"speaker": "robot", "text": "x"}]}"#,
            "\n",
            r#"{"id": "c3", "turns": []}"#,
        );
        let records: Vec<Record> = JsonlReader::new(input.as_bytes()).collect();
        assert_eq!(records.len(), 4);
        let (line, c1) = records[0].as_ref().unwrap();
        assert_eq!((*line, c1.id.as_str(), c1.locale.as_str(), c1.agent_id.as_str(), c1.turns.len()), (1, "c1", "hu", "a7", 2));
        assert_eq!(c1.turns[1].speaker, Speaker::Agent);
        let e = records[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.id.as_deref()), (3, None));
        let e = records[2].as_ref().unwrap_err();
        assert_eq!((e.line, e.id.as_deref()), (4, Some("42")));
        assert!(e.message.contains("speaker"));
        // An empty transcript is read; the scorer's validation refuses it.
        assert_eq!(records[3].as_ref().unwrap().1.turns.len(), 0);
    }

    #[test]
    fn csv_groups_consecutive_rows_orders_turns_and_isolates_bad_conversations() {
        let input = "conversation_id,turn_index,speaker,text,locale\n\
                     c1,1,agent,\"Hello, how can I help?\",en\n\
                     c1,0,customer,My router is down,en\n\
                     c2,0,customer,hi,en\n\
                     c2,1,wizard,abracadabra,en\n\
                     c3,0,customer,\"multi\nline\",he\n";
        let records: Vec<Record> = CsvReader::new(input.as_bytes()).collect();
        assert_eq!(records.len(), 3);
        let (line, c1) = records[0].as_ref().unwrap();
        assert_eq!(*line, 2);
        assert_eq!(c1.turns[0].text, "My router is down", "ordered by turn_index");
        assert_eq!(c1.locale, "en");
        let e = records[1].as_ref().unwrap_err();
        assert_eq!(e.id.as_deref(), Some("c2"));
        assert!(e.message.contains("speaker"), "{}", e.message);
        let (_, c3) = records[2].as_ref().unwrap();
        assert_eq!((c3.id.as_str(), c3.turns[0].text.as_str(), c3.locale.as_str()), ("c3", "multi\nline", "he"));
    }

    #[test]
    fn csv_without_the_required_columns_is_one_clear_error() {
        let records: Vec<Record> = CsvReader::new("id,who,what\n1,customer,hi\n".as_bytes()).collect();
        assert_eq!(records.len(), 1);
        assert!(records[0].as_ref().unwrap_err().message.contains("conversation_id"));
    }
}
