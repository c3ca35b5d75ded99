//! `calmline analyze`: the JSON-lines contract of DESIGN.md, error lines, exit codes, windowing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use calmline::cli::analyze::{Engine, JsonlSummary, analyze_jsonl};
use calmline::domain::labels::Label;
use calmline::domain::policy::Policy;
use calmline::model::Classifier;

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| Classifier::load(Path::new("models")).expect("run `make setup` first"))
}

fn run_jsonl(input: &[u8], batch: usize) -> (Vec<serde_json::Value>, JsonlSummary) {
    let mut out = Vec::new();
    let policy = Policy::embedded();
    let engine = Engine { classifier: classifier(), policy: &policy };
    let summary = analyze_jsonl(engine, input, &mut out, batch).unwrap();
    let lines = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, summary)
}

#[test]
fn every_line_is_answered_in_order_and_bad_lines_get_error_objects() {
    let mut input = Vec::new();
    input.extend_from_slice(br#"{"id": "t1", "text": "Ez teljesen elfogadhatatlan!"}"#);
    input.extend_from_slice(b"\n\n   \n");
    input.extend_from_slice(b"{not json\n");
    input.extend_from_slice(b"{\"id\": \"bad-utf8\", \"text\": \"caf\xe9\"}\n");
    input.extend_from_slice(br#"{"id": 7, "text": "   "}"#);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"id": "no-text"}"#);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"id": "num-text", "text": 42}"#);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"id": "bad-lang", "text": "hello", "lang": "x y"}"#);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"text": "Thank you, that was very helpful.", "lang": "en"}"#);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice("{\"id\": \"he\", \"text\": \"תודה רבה על העזרה\"}".as_bytes()); // no final newline

    // Batch size 2 forces several model calls between error lines: order must survive.
    let (out, summary) = run_jsonl(&input, 2);
    assert_eq!(summary, JsonlSummary { lines: 11, failed: 8 });
    assert_eq!(out.len(), 11);

    assert_eq!(out[0]["id"], "t1");
    assert_eq!(out[0]["language"], "hu");
    assert_eq!(out[0]["language_measured"], true, "Hungarian is measured in the model card");
    let scores = out[0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 7);
    assert!(scores.values().all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())));
    // In the raw line the labels come in label order (serde_json's map here sorts them).
    let mut raw = Vec::new();
    let policy = Policy::embedded();
    analyze_jsonl(Engine { classifier: classifier(), policy: &policy }, &input[..input.iter().position(|&b| b == b'\n').unwrap() + 1], &mut raw, 1).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let positions: Vec<usize> = Label::ALL.iter().map(|l| raw.find(&format!("\"{}\":", l.name())).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "labels in label order: {raw}");
    assert!(out[0]["flags"].is_array());
    assert!(["none", "low", "medium", "high", "critical"].contains(&out[0]["severity"].as_str().unwrap()));

    let error_of = |i: usize| out[i]["error"].as_str().unwrap_or_else(|| panic!("line {i}: {}", out[i])).to_string();
    assert_eq!((out[1]["line"].as_u64(), error_of(1)), (Some(2), "empty line".to_string()));
    assert_eq!((out[2]["line"].as_u64(), error_of(2)), (Some(3), "empty line".to_string()));
    assert!(error_of(3).starts_with("not a JSON object"));
    assert_eq!(out[4]["line"], 5);
    assert!(error_of(4).contains("UTF-8"));
    assert_eq!((out[5]["id"].as_u64(), error_of(5)), (Some(7), "invalid input: text is empty".to_string()));
    assert_eq!((out[6]["id"].as_str(), error_of(6)), (Some("no-text"), "missing \"text\"".to_string()));
    assert_eq!(error_of(7), "\"text\" must be a string");
    assert!(error_of(8).contains("lang"));

    assert_eq!(out[9]["line"], 10, "a line without id is named by its line number");
    assert_eq!(out[9]["language"], "en", "the lang hint is used");
    assert!(out[9].get("error").is_none());
    assert_eq!(out[10]["id"], "he");
    assert_eq!(out[10]["language"], "he");
    assert!(out[10].get("error").is_none());
}

#[test]
fn an_oversized_line_is_refused_without_stopping_the_run() {
    let huge = format!("{{\"id\": \"big\", \"text\": \"{}\"}}\n", "a".repeat(calmline::cli::analyze::MAX_LINE_BYTES));
    let over_text_limit = format!("{{\"id\": \"long\", \"text\": \"{}\"}}\n", "b ".repeat(calmline::domain::text::MAX_TEXT_BYTES));
    let input = format!("{huge}{over_text_limit}{{\"id\": \"ok\", \"text\": \"Thanks!\"}}\n");
    let (out, summary) = run_jsonl(input.as_bytes(), 8);
    assert_eq!(summary, JsonlSummary { lines: 3, failed: 2 });
    assert_eq!(out[0]["line"], 1);
    assert!(out[0]["error"].as_str().unwrap().contains("longer than"));
    assert_eq!(out[1]["id"], "long");
    assert!(out[1]["error"].as_str().unwrap().contains("limit"));
    assert_eq!(out[2]["id"], "ok");
    assert!(out[2].get("error").is_none());
}

#[test]
fn batching_does_not_change_results() {
    let texts = [
        "I have been waiting for two weeks and nobody calls me back.",
        "Köszönöm szépen a gyors segítséget!",
        "אני מחכה כבר שעה על הקו, זה לא רציני",
        "Das ist wirklich eine Unverschämtheit, ich will mein Geld zurück.",
    ];
    let input: String = texts.iter().enumerate().map(|(i, t)| format!("{{\"id\": {i}, \"text\": {t:?}}}\n")).collect();
    let (one_by_one, _) = run_jsonl(input.as_bytes(), 1);
    let (together, _) = run_jsonl(input.as_bytes(), 64);
    for (a, b) in one_by_one.iter().zip(&together) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["flags"], b["flags"]);
        for label in Label::ALL {
            let (x, y) = (a["scores"][label.name()].as_f64().unwrap(), b["scores"][label.name()].as_f64().unwrap());
            assert!((x - y).abs() < 2e-3, "{label}: {x} vs {y}");
        }
    }
}

#[test]
fn long_texts_are_windowed_not_cut() {
    let c = classifier();
    let neutral = "I would like to ask about the delivery date of my order and the invoice address. ".repeat(60);
    let abusive_end = format!("{neutral} You are a useless idiot and a disgusting liar, I hate you.");
    let polite_end = format!("{neutral} Thank you very much for your kind help today.");
    let windows = c.extractor.tokenizer.windows(&abusive_end).unwrap();
    assert!(windows.len() >= 2, "a text of ~1,500 tokens spans several windows");
    assert!(windows.iter().all(|w| w.len() <= 512));

    let scores = c.scores(&[&abusive_end, &polite_end]).unwrap();
    // Were the text cut at 512 tokens, both would score the same: the end must be seen. (How
    // much it moves depends on the model and the arithmetic: the insult is a few tokens in a
    // 512-token window, and mean pooling dilutes it — judgement-38 in int8 gives 0.027 against
    // 0.007, judgement-29 0.0198 against 0.0060, judgement-22 0.0106 against 0.0054, judgement-19
    // 0.0118 against 0.0058, judgement-6 0.026 against 0.010.)
    let (abusive, polite) = (scores[0].get(Label::Insult), scores[1].get(Label::Insult));
    assert!(abusive > 1.5 * polite && abusive > polite + 0.004, "insult {abusive} vs {polite}");
    // The text's score is the highest of its windows', and it is the last window, the one with
    // the insult, that scores highest.
    let per_window: Vec<f32> = c.extractor.features(&[&abusive_end]).unwrap().remove(0).iter().map(|f| c.head.scores(f).get(Label::Insult)).collect();
    let highest = per_window.iter().copied().fold(f32::MIN, f32::max);
    assert!((highest - abusive).abs() < 1e-6, "text {abusive}, windows {per_window:?}");
    assert!(per_window[per_window.len() - 1] > 2.0 * per_window[0], "windows {per_window:?}");
}

#[test]
fn window_tokens_cover_the_whole_text() {
    let tokenizer = &classifier().extractor.tokenizer;
    let text = (0..700).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    let full = tokenizer.encode(&text).unwrap();
    let windows = tokenizer.windows(&text).unwrap();
    assert!(full.len() > 1024 && windows.len() >= 3);
    // Each window is <s> query: chunk </s>; stitching the chunks back (dropping the overlap)
    // must give every token of the text, in order, with nothing lost.
    let prefix = tokenizer.prefix_len();
    let chunk_of = |w: &Vec<u32>| w[1 + prefix..w.len() - 1].to_vec();
    let first = chunk_of(&windows[0]);
    let overlap = first.len() / 4; // the tokenizer overlaps a quarter of each window
    let mut stitched = first;
    for w in &windows[1..] {
        assert!(w.len() <= 512);
        assert_eq!(w[..1 + prefix], full[..1 + prefix], "every window starts with <s> query:");
        stitched.extend_from_slice(&chunk_of(w)[overlap..]);
    }
    assert_eq!(stitched, full[1 + prefix..full.len() - 1]);
}

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calmline"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run_binary(stdin: &[u8]) -> (i32, String) {
    let mut child = binary().args(["analyze", "--jsonl"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn exit_code_says_whether_any_line_failed() {
    let (code, out) = run_binary(b"{\"id\": 1, \"text\": \"Thanks, all good now.\"}\n");
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1);

    let (code, out) = run_binary(b"{\"id\": 1, \"text\": \"Thanks!\"}\n\xff\xfe\n{\"id\": 3, \"text\": \"ok\"}\n");
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 3, "the run goes on after a bad line");
}

#[test]
fn readable_mode_prints_every_label_and_refuses_empty_text() {
    let out = binary().args(["analyze", "Why does this keep happening?!"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for label in Label::ALL {
        assert!(text.contains(label.name()), "{label} missing from\n{text}");
    }
    let out = binary().args(["analyze", "   "]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("text is empty"));
}

#[test]
fn flagged_lines_carry_the_words_behind_their_flags() {
    let input = "{\"id\": \"insult\", \"text\": \"You are a useless idiot, seriously.\"}\n{\"id\": \"calm\", \"text\": \"Thanks, that works now.\"}\n";
    let (lines, _) = run_jsonl(input.as_bytes(), 8);
    let text = "You are a useless idiot, seriously.";
    let spans = lines[0]["spans"].as_array().expect("a spans array");
    assert!(!spans.is_empty(), "{}", lines[0]);
    let marked: Vec<String> = spans
        .iter()
        .map(|s| text.chars().skip(s["begin"].as_u64().unwrap() as usize).take((s["end"].as_u64().unwrap() - s["begin"].as_u64().unwrap()) as usize).collect())
        .collect();
    assert!(marked.iter().any(|w| w.contains("idiot") || w.contains("useless")), "{marked:?}");
    assert_eq!(lines[1]["spans"], serde_json::json!([]), "an unflagged line has none");
}
