//! The agent console end to end: `calmline serve --console` in process, and
//! `tests/console/e2e.mjs` driving Debian's headless Chromium through playwright-core against it
//! (an English conversation typed, a Hebrew one replayed from a file; screenshots in
//! `target/console-e2e/`). `make test` installs Chromium and the npm lockfile first.

use crate::common;

use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_plays_an_english_and_a_hebrew_conversation_in_chromium() {
    let chromium = std::env::var("CALMLINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: `make test` installs Debian's chromium (or set CALMLINE_CHROMIUM)");
    assert!(Path::new("tests/console/node_modules/playwright-core").exists(), "playwright-core is missing: `make test` runs `npm ci --prefix tests/console`");
    let server = common::start(&["--console"]).await;
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../console-e2e");
    let run = tokio::process::Command::new("node")
        .arg("tests/console/e2e.mjs")
        .arg(format!("http://{}", server.addr))
        .arg(&out_dir)
        .env("CALMLINE_CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the browser test finishes within 2 minutes").expect("node runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the console's end-to-end test failed:\n{report}");
    for shot in ["console-en.png", "console-he.png"] {
        let size = std::fs::metadata(out_dir.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot} was not saved ({size} bytes)");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_flag_there_is_no_console() {
    let server = common::start(&[]).await;
    let answer = get_page(server.addr, &server.addr.to_string()).await;
    assert!(!answer.contains("<html"), "the page is served without --console: {answer}");
    assert!(answer.starts_with("HTTP/1.1 404"), "HTTP/1.1 is served (the JSON API), the page is not: {answer}");
    server.stop().await.unwrap();
}

/// `GET /console/index.html` naming `host`; the whole answer.
async fn get_page(addr: std::net::SocketAddr, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET /console/index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_console_answers_only_for_its_own_host() {
    // DNS rebinding: a page on attacker.example re-points its name at 127.0.0.1; the browser
    // still names attacker.example in Host.
    let server = common::start(&["--console", "--allowed-host", "console.example:8443"]).await;
    let port = server.addr.port();
    for host in [server.addr.to_string(), format!("localhost:{port}"), "console.example:8443".to_string()] {
        let answer = get_page(server.addr, &host).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("<html"), "{host}: {answer}");
    }
    let answer = get_page(server.addr, &format!("attacker.example:{port}")).await;
    assert!(answer.starts_with("HTTP/1.1 403") && !answer.contains("<html"), "{answer}");
    let request = prost::Message::encode_to_vec(&calmline::grpc::pb::GetInfoRequest {});
    let (head, _) = grpc_web_call(server.addr, &format!("attacker.example:{port}"), "GetInfo", &request, None).await;
    assert!(head.starts_with("http/1.1 403"), "gRPC-web for another host: {head}");
    let (head, _) = grpc_web_call(server.addr, &server.addr.to_string(), "GetInfo", &request, None).await;
    assert!(head.starts_with("http/1.1 200") && head.contains("application/grpc-web"), "{head}");
    server.stop().await.unwrap();
}

/// One gRPC-web call as the browser makes it (HTTP/1.1 POST, 5-byte framing); returns the
/// response head and body.
async fn grpc_web_call(addr: std::net::SocketAddr, host: &str, method: &str, message: &[u8], api_key: Option<&str>) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let key = api_key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /calmline.v1.Triage/{method} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.expect("an answer").unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head") + 4;
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(&answer[split..]) } else { answer[split..].to_vec() };
    (head, body)
}

/// HTTP/1.1 chunked transfer coding: `<hex size>\r\n<bytes>\r\n` … `0\r\n\r\n`.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[line_end + 2 + size + 2..];
    }
}

#[tokio::test]
async fn grpc_web_calls_need_the_api_key_like_any_other() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("console {}\n", calmline::grpc::auth::hash_key("console-secret"))).unwrap();
    let server = common::start(&["--console", "--api-keys", keys.to_str().unwrap()]).await;
    let request = calmline::grpc::pb::GetInfoRequest {}.encode_to_vec();

    let (head, _) = grpc_web_call(server.addr, &server.addr.to_string(), "GetInfo", &request, None).await;
    assert!(head.contains("grpc-status: 16"), "no key must be UNAUTHENTICATED: {head}");
    let (head, _) = grpc_web_call(server.addr, &server.addr.to_string(), "GetInfo", &request, Some("wrong")).await;
    assert!(head.contains("grpc-status: 16"), "a wrong key must be UNAUTHENTICATED: {head}");

    let (head, body) = grpc_web_call(server.addr, &server.addr.to_string(), "GetInfo", &request, Some("console-secret")).await;
    assert!(head.starts_with("http/1.1 200") && head.contains("application/grpc-web"), "{head}");
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(body[0], 0, "the first frame is the message");
    let info = calmline::grpc::pb::GetInfoResponse::decode(&body[5..5 + length]).unwrap();
    assert!(!info.model_version.is_empty());
    let trailers = String::from_utf8_lossy(&body[5 + length + 5..]);
    assert_eq!(body[5 + length], 0x80, "then the trailers frame");
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    server.stop().await.unwrap();
}
