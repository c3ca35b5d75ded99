//! The agent console end to end: `calmline serve --console` in process, and
//! `tests/console/e2e.mjs` driving Debian's headless Chromium through playwright-core against it
//! (an English conversation typed, a Hebrew one replayed from a file; screenshots in
//! `target/console-e2e/`). `make test` installs Chromium and the npm lockfile first.

mod common;

use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_plays_an_english_and_a_hebrew_conversation_in_chromium() {
    let chromium = std::env::var("CALMLINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: `make test` installs Debian's chromium (or set CALMLINE_CHROMIUM)");
    assert!(
        Path::new("tests/console/node_modules/playwright-core").exists(),
        "playwright-core is missing: `make test` runs `npm ci --prefix tests/console`"
    );
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
async fn without_the_flag_there_is_no_console_and_no_http1() {
    let server = common::start(&[]).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /console/index.html HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("<html"), "the page is served without --console: {answer}");
    server.stop().await.unwrap();
}
