//! `calmline score`, run as the binary on real files: formats, outputs, bad records, exit codes,
//! and a run killed midway that resumes to the same result as an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn calmline() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calmline"));
    cmd.arg("score").arg("--progress").arg("never");
    cmd
}

fn run(args: &[&str]) -> Output {
    calmline().args(args).output().expect("running calmline score")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Conversations assembled from the project's in-domain turns: a customer turn and an agent
/// reply, four times, with ids that repeat (resume must not confuse them).
fn write_transcripts(path: &Path, conversations: usize) {
    let turns: Vec<Value> = std::fs::read_to_string("data/indomain/turns.jsonl").unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let replies =
        ["I'm sorry about that, let me check it right away.", "Ez nem a mi hibánk, a futárcég rontotta el.", "תודה על הסבלנות, אני בודק את זה עכשיו."];
    let mut out = std::fs::File::create(path).unwrap();
    for c in 0..conversations {
        let mut conv_turns = Vec::new();
        for t in 0..4 {
            let customer = &turns[(c * 7 + t * 13) % turns.len()];
            conv_turns.push(serde_json::json!({"speaker": "customer", "text": customer["text"]}));
            conv_turns.push(serde_json::json!({"speaker": "agent", "text": replies[(c + t) % replies.len()]}));
        }
        let locale = ["en", "hu", "he"][c % 3];
        let conv = serde_json::json!({"id": format!("c{}", c % 25), "locale": locale, "agent_id": format!("a{}", c % 4), "turns": conv_turns});
        writeln!(out, "{conv}").unwrap();
    }
}

/// What must be equal between two runs: order, sources, flags, guidance, conduct; scores to 1e-3
/// (batches of different make-up may differ in the last float bits).
fn assert_same_conversations(a: &[Value], b: &[Value]) {
    assert_eq!(a.len(), b.len(), "conversation count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["source"], y["source"]);
        assert_eq!(x["id"], y["id"]);
        assert_eq!(x["summary"], y["summary"], "summary of {}", x["source"]);
        let (tx, ty) = (x["turns"].as_array().unwrap(), y["turns"].as_array().unwrap());
        assert_eq!(tx.len(), ty.len());
        for (s, t) in tx.iter().zip(ty) {
            for key in ["text", "flags", "severity", "guidance", "conduct"] {
                assert_eq!(s[key], t[key], "{key} of turn {} of {}", s["turn_index"], x["source"]);
            }
            for (label, score) in s["scores"].as_object().unwrap() {
                let other = t["scores"][label].as_f64().unwrap();
                assert!((score.as_f64().unwrap() - other).abs() < 1e-3, "{label}: {score} vs {other}");
            }
        }
    }
}

#[test]
fn jsonl_and_csv_give_the_same_scores_and_every_output_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = run(&["docs/examples/transcripts.jsonl", "--out", a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["docs/examples/transcripts.csv", "--out", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ja, jb) = (lines(&a.join("conversations.jsonl")), lines(&b.join("conversations.jsonl")));
    assert_eq!(ja.len(), 3);
    for (x, y) in ja.iter().zip(&jb) {
        assert_eq!(x["id"], y["id"]);
        assert_eq!(x["agent_id"], y["agent_id"]);
        assert_eq!(x["summary"], y["summary"]);
    }
    // The contract's fields: customer turns with guidance, agent turns with conduct.
    let first = &ja[1];
    assert_eq!(first["id"], "c2");
    let turns = first["turns"].as_array().unwrap();
    assert_eq!(turns[0]["speaker"], "customer");
    assert!(turns[0]["guidance"]["action"].is_string() && turns[0]["guidance"]["hint"].is_string() && turns[0]["guidance"]["rule"].is_string());
    assert_eq!(turns[0]["guidance"]["hint_locale"], "hu");
    assert_eq!(turns[0]["scores"].as_object().unwrap().len(), 7);
    assert_eq!(turns[1]["speaker"], "agent");
    assert!(turns[1]["conduct"].as_array().unwrap().iter().any(|k| k == "blames_others"), "{}", turns[1]);
    assert!(turns[1].get("guidance").is_none());

    let csv = std::fs::read_to_string(a.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and one row per conversation");
    assert!(csv.starts_with("conversation_id,agent_id,"));
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Agent conduct per agent") && html.contains("Language mix"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the report must work offline");
    assert_eq!(std::fs::read_to_string(a.join("errors.jsonl")).unwrap(), "");

    // Without --out the conversations go to stdout, in the same form.
    let out = calmline().arg("-").stdin(std::fs::File::open("docs/examples/transcripts.jsonl").unwrap()).output().unwrap();
    assert!(out.status.success());
    let stdout: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stdout.len(), 3);
    assert_eq!(stdout[2]["summary"], ja[2]["summary"]);
}

/// `--shard I/N`: N runs score every conversation exactly once between them, split by id (a
/// repeated id stays in one shard), each into its own folder.
#[test]
fn shards_split_the_conversations_by_id_without_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.jsonl");
    write_transcripts(&input, 30);
    let mut seen: Vec<(String, usize)> = Vec::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let out = dir.path().join(shard.replace('/', "-of-"));
        let result = run(&[input.to_str().unwrap(), "--shard", shard, "--no-spans", "--out", out.to_str().unwrap()]);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let conversations = lines(&out.join("conversations.jsonl"));
        assert!(!conversations.is_empty(), "shard {shard} got nothing of 30");
        seen.extend(conversations.iter().map(|c| (c["id"].as_str().unwrap().to_string(), shard.as_bytes()[0] as usize)));
    }
    assert_eq!(seen.len(), 30, "every conversation once: {seen:?}");
    for (id, shard) in &seen {
        assert!(seen.iter().filter(|(other, _)| other == id).all(|(_, s)| s == shard), "{id} is in two shards");
    }
    let bad = run(&[input.to_str().unwrap(), "--shard", "3/3"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("0 <= I < N"));
}

#[test]
fn unreadable_records_go_to_the_errors_file_with_their_lines_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let good = r#"{"id": "ok1", "turns": [{"speaker": "customer", "text": "Where is my parcel?"}]}"#;
    let body = [
        good,
        "{not json",
        r#"{"id": "blank", "turns": [{"speaker": "customer", "text": "   "}]}"#,
        r#"{"id": "who", "turns": [{"speaker": "robot", "text": "hello"}]}"#,
        r#"{"id": "none", "turns": []}"#,
        &good.replace("ok1", "ok2"),
    ]
    .join("\n");
    let mut bytes = body.into_bytes();
    bytes.extend_from_slice(b"\n{\"id\": \"latin1\", \"turns\": [{\"speaker\": \"customer\", \"text\": \"caf\xe9\"}]}\n");
    std::fs::write(&input, bytes).unwrap();
    let out_dir = dir.path().join("out");
    let out = run(&[input.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "some records failed: exit 1; {}", String::from_utf8_lossy(&out.stderr));
    let scored = lines(&out_dir.join("conversations.jsonl"));
    assert_eq!(scored.iter().map(|c| c["id"].as_str().unwrap()).collect::<Vec<_>>(), ["ok1", "ok2"]);
    let errors = lines(&out_dir.join("errors.jsonl"));
    let error_lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(error_lines, [2, 3, 4, 5, 7]);
    assert_eq!(errors[1]["id"], "blank");
    for e in &errors {
        assert!(!e["error"].as_str().unwrap().is_empty());
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Records that could not be scored (5)"));
}

#[test]
fn bad_invocations_fail_clearly_before_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["no/such/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    let odd = dir.path().join("transcripts.txt");
    std::fs::write(&odd, "x").unwrap();
    let out = run(&[odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format"));
    // An output folder that holds results is never overwritten without --resume.
    let out_dir = dir.path().join("out");
    assert!(run(&["docs/examples/transcripts.jsonl", "--out", out_dir.to_str().unwrap()]).status.success());
    let out = run(&["docs/examples/transcripts.jsonl", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
}

fn wait_for_lines(path: &Path, at_least: usize, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        let n = std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0);
        if n >= at_least {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupted_then_resumed(signal: &str) -> (Vec<Value>, Vec<Value>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("calls.jsonl");
    write_transcripts(&input, 40);
    let full = dir.path().join("full");
    let out = run(&[input.to_str().unwrap(), "--out", full.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cut = dir.path().join("cut");
    let mut child = calmline()
        .args([input.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lines(&cut.join("conversations.jsonl"), 5, &mut child);
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let partial = lines(&cut.join("conversations.jsonl")).len();
    assert!(partial < 40, "the run was interrupted midway ({partial} of 40 written)");
    if signal == "-KILL" {
        // A kill can cut a line in half; make sure the resume meets one.
        let mut f = std::fs::OpenOptions::new().append(true).open(cut.join("conversations.jsonl")).unwrap();
        f.write_all(br#"{"id":"c9","turns":[{"spea"#).unwrap();
    } else {
        assert_eq!(status.code(), Some(130), "a stopped run says so");
    }
    let out = run(&[input.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (lines(&full.join("conversations.jsonl")), lines(&cut.join("conversations.jsonl")), cut, dir)
}

#[test]
fn a_killed_run_resumes_with_nothing_lost_or_duplicated() {
    let (full, resumed, cut, _dir) = interrupted_then_resumed("-KILL");
    assert_same_conversations(&full, &resumed);
    let csv = std::fs::read_to_string(cut.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 41, "a header and one row per conversation");
}

#[test]
fn a_terminated_run_finishes_what_it_started_and_resumes() {
    let (full, resumed, _cut, _dir) = interrupted_then_resumed("-TERM");
    assert_same_conversations(&full, &resumed);
}
