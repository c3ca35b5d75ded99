//! The HTTP/JSON API on the gRPC port: the Perspective drop-in called by two clients nobody on
//! the team wrote (Google's Python client and Google's Node.js client, each built from the
//! discovery document, changed in nothing but base URL and key), its refusals in Google's
//! error shape, calmline's own RPCs as JSON, and the README's `curl` examples run as written.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use calmline::grpc::auth::hash_key;

const KEY: &str = "perspective-Xy7-secret";

async fn start_with_key() -> (common::TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("forum {}\n", hash_key(KEY))).unwrap();
    let server = common::start(&["--api-keys", keys.to_str().unwrap()]).await;
    (server, dir)
}

/// Runs a client script with the server's address and the key; returns the JSON it printed.
async fn run_client(program: &Path, script: &str, addr: SocketAddr) -> Value {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(script).parent().unwrap().join("node_modules");
    assert!(
        program.exists() && (!script.ends_with(".mjs") || installed.exists()),
        "the client of {script} is not installed: run `make test` (it installs both clients)"
    );
    let output =
        tokio::process::Command::new(program).arg(script).arg(addr.to_string()).arg(KEY).current_dir(env!("CARGO_MANIFEST_DIR")).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// The code points `[begin, end)` of `text`, as Perspective's spans count them.
fn chars(text: &str, span: &Value) -> String {
    let (begin, end) = (span["begin"].as_u64().unwrap() as usize, span["end"].as_u64().unwrap() as usize);
    text.chars().skip(begin).take(end - begin).collect()
}

fn summary(response: &Value, attribute: &str) -> f64 {
    let score = &response["attributeScores"][attribute]["summaryScore"];
    assert_eq!(score["type"], "PROBABILITY", "{response}");
    score["value"].as_f64().unwrap_or_else(|| panic!("no {attribute} in {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_python_and_node_clients_get_scores_and_spans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (server, _keys) = start_with_key().await;

    let py = run_client(&root.join(".venv-interop/bin/python"), "tests/interop/perspective_client.py", server.addr).await;
    let insult = &py["insult"];
    assert!(summary(insult, "TOXICITY") >= 0.5 && summary(insult, "INSULT") >= 0.5, "{insult}");
    assert!(summary(insult, "THREAT") < 0.5, "{insult}");
    let text = "You are a complete idiot, just fix my internet.";
    let words: Vec<String> = insult["attributeScores"]["INSULT"]["spanScores"].as_array().unwrap().iter().map(|s| chars(text, s)).collect();
    assert!(words.iter().any(|w| w.contains("idiot")), "the insult's span names the word: {words:?}");
    let threat_spans = insult["attributeScores"]["THREAT"]["spanScores"].as_array().unwrap();
    assert_eq!(chars(text, &threat_spans[0]), text, "an unflagged attribute spans the whole comment");
    assert_eq!((insult["clientToken"].clone(), insult["languages"].clone()), (json!("py-1"), json!(["en"])));
    let calm = &py["calm_hu"];
    assert!(summary(calm, "TOXICITY") < 0.5 && summary(calm, "SEVERE_TOXICITY") < 0.5, "{calm}");
    assert_eq!(calm["detectedLanguages"], json!(["hu"]), "{calm}");
    assert!(calm["attributeScores"]["TOXICITY"].get("spanScores").is_none(), "spans only when asked: {calm}");
    assert_eq!(py["threshold"]["attributeScores"], json!({}), "below scoreThreshold nothing is returned");
    for (case, message) in
        [("unknown_attribute", "FLIRTATION"), ("empty_text", "Comment must be non-empty."), ("unsupported_language", "tlh"), ("wrong_key", "API key not valid")]
    {
        let refusal = &py[case];
        assert_eq!(refusal["status"], 400, "{case}: {refusal}");
        assert_eq!(refusal["error"]["status"], "INVALID_ARGUMENT", "{case}: {refusal}");
        assert!(refusal["error"]["message"].as_str().unwrap().contains(message), "{case}: {refusal}");
    }
    assert_eq!(py["unsupported_language"]["error"]["details"][0]["errorType"], "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE");

    let node = run_client(&which("node"), "tests/perspective/client.mjs", server.addr).await;
    let insult = &node["insult"];
    assert!(summary(insult, "TOXICITY") >= 0.5, "{insult}");
    assert_eq!((insult["clientToken"].clone(), insult["detectedLanguages"].clone()), (json!("node-1"), json!(["he"])));
    let text = "אתה אידיוט מוחלט, תתקן לי את האינטרנט";
    for span in insult["attributeScores"]["TOXICITY"]["spanScores"].as_array().unwrap() {
        assert!(!chars(text, span).trim().is_empty(), "a span of Hebrew text lands on its letters: {insult}");
    }
    let calm = &node["calm"];
    assert!(summary(calm, "TOXICITY") < 0.5 && summary(calm, "PROFANITY") < 0.5, "{calm}");
    assert_eq!(calm["detectedLanguages"], json!(["pt"]), "{calm}");
    assert_eq!((node["unknown_attribute"]["status"].clone(), node["wrong_key"]["status"].clone()), (json!(400), json!(400)), "{node}");
    server.stop().await.unwrap();
}

/// A program on the PATH.
fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.exists()))
        .unwrap_or_else(|| panic!("{program} is not on the PATH"))
}

/// One HTTP/1.1 exchange on a fresh connection (`head` without the final blank line): the
/// status and the JSON body.
async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await.expect("an answer within 30 s").unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {head}\n{body}"));
    (status, json)
}

fn post(path: &str, extra: &str, body: &str) -> (String, Vec<u8>) {
    (format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}{extra}", body.len()), body.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_googles_error_shape_and_status() {
    let (server, _keys) = start_with_key().await;
    let analyze = format!("/v1alpha1/comments:analyze?key={KEY}");
    let refused = |(status, body): (u16, Value), want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!((body["error"]["code"].clone(), body["error"]["status"].clone()), (json!(want), json!(code)), "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    let (head, body) = post(&analyze, "", r#"{"comment": {"text": "hi"}, "requestedAttributes": "#);
    let message = refused(http(server.addr, &head, &body).await, 400, "INVALID_ARGUMENT");
    assert!(message.starts_with("Invalid JSON payload received."), "{message}");
    let (head, body) = post(&analyze, "", r#"{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}, "colour": "blue"}"#);
    assert!(refused(http(server.addr, &head, &body).await, 400, "INVALID_ARGUMENT").contains("colour"), "unknown fields are named");
    let (head, body) = post(&analyze, "", r#"{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}"#);
    let (status, ok) = http(server.addr, &head, &body).await;
    assert_eq!(status, 200, "{ok}");
    let (head, body) = post("/v1alpha1/comments:analyze", "", r#"{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}"#);
    assert!(refused(http(server.addr, &head, &body).await, 403, "PERMISSION_DENIED").contains("missing a valid API key"));
    let (head, body) = post(&format!("{analyze}&alt=media"), "", r#"{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}"#);
    refused(http(server.addr, &head, &body).await, 400, "INVALID_ARGUMENT");

    // 10 MB: refused from the declared length before a byte of the body is read (a client
    // waiting on `Expect: 100-continue` is never asked for it).
    let head = format!("POST {analyze} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue", 10 * 1024 * 1024);
    refused(http(server.addr, &head, b"").await, 413, "OUT_OF_RANGE");

    // calmline's own RPCs: 401 as on gRPC, and the proto3 JSON mapping's names.
    let turn = r#"{"turn": {"speaker": "SPEAKER_CUSTOMER", "text": "Where is my parcel?"}}"#;
    let (head, body) = post("/v1/analyze", "\r\nx-api-key: wrong", turn);
    refused(http(server.addr, &head, &body).await, 401, "UNAUTHENTICATED");
    let (head, body) = post("/v1/analyze", &format!("\r\nAuthorization: Bearer {KEY}"), r#"{"turn": {"speaker": "SPEAKER_ROBOT", "text": "hi"}}"#);
    refused(http(server.addr, &head, &body).await, 400, "INVALID_ARGUMENT");
    let (head, body) = post("/v1/analyze", &format!("\r\nAuthorization: Bearer {KEY}"), r#"{"turn": {"speaker": "SPEAKER_CUSTOMER", "text": " "}}"#);
    assert!(refused(http(server.addr, &head, &body).await, 400, "INVALID_ARGUMENT").contains("empty"));
    let (head, body) = post("/v1/analyze", &format!("\r\nAuthorization: Bearer {KEY}"), turn);
    let (status, answer) = http(server.addr, &head, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["assessment"]["speaker"].clone(), answer["state"]["turns"].clone()), (json!("SPEAKER_CUSTOMER"), json!(1)), "{answer}");
    assert_eq!(answer["assessment"]["scores"].as_array().unwrap().len(), 7, "{answer}");
    let (status, info) = http(server.addr, &format!("GET /v1/info?key={KEY} HTTP/1.1"), b"").await;
    assert_eq!((status, info["labels"][0].clone()), (200, json!("frustration")), "{info}");

    // Discovery: open, names this server as the root; other versions and paths are 404s.
    let (status, doc) = http(server.addr, "GET /$discovery/rest?version=v1alpha1 HTTP/1.1", b"").await;
    assert_eq!((status, doc["rootUrl"].clone()), (200, json!(format!("http://{}/", server.addr))), "{doc}");
    refused(http(server.addr, "GET /$discovery/rest?version=v2 HTTP/1.1", b"").await, 404, "NOT_FOUND");
    refused(http(server.addr, "GET /nothing/here HTTP/1.1", b"").await, 404, "NOT_FOUND");
    server.stop().await.unwrap();
}

/// Every `curl` example in the README, run as written against a server with no keys file (as
/// `make run` serves), on this test's port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_examples_work() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("curl ") {
            let mut command = line.to_string();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().unwrap());
            }
            commands.push(command);
        }
    }
    assert!(commands.len() >= 2, "the README shows curl for /v1/analyze and for the Perspective drop-in: {commands:?}");
    let server = common::start(&[]).await;
    for command in &commands {
        let command = command.replace("127.0.0.1:50051", &server.addr.to_string());
        let output = tokio::process::Command::new("sh").arg("-c").arg(&command).output().await.unwrap();
        assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{command}: {e}"));
        assert!(answer.get("assessment").is_some() || answer.get("attributeScores").is_some(), "{command}: {answer}");
    }
    server.stop().await.unwrap();
}
