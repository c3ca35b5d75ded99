//! SIGTERM on the real binary: open streams end with UNAVAILABLE, silent connections do not hold
//! the process past `--drain-timeout-s`, and a second signal exits at once.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TriageClient;
use calmline::grpc::pb;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server on a free port, and a client once it answers with a model.
#[expect(clippy::zombie_processes, reason = "the child goes to the caller, which waits for it (or kills and waits)")]
async fn serve(drain_timeout_s: u64) -> (Child, u16, TriageClient<tonic::transport::Channel>) {
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_calmline"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--drain-timeout-s", &drain_timeout_s.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(ch) = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
            let mut c = TriageClient::new(ch);
            if c.get_info(pb::GetInfoRequest {}).await.map(|r| !r.into_inner().model_version.is_empty()).unwrap_or(false) {
                return (server, port, c);
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = server.kill();
            let _ = server.wait();
            panic!("server never became ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(server: &Child) {
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
}

/// Waits for the process to exit, at most `limit`; its status code and when it exited.
async fn exit_within(server: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the server was still running {limit:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_a_status_and_exits_within_the_drain_timeout() {
    let (mut server, port, mut client) = serve(2).await;
    // A live conversation that answered one turn and now waits for the next.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConverseRequest { turn: Some(common::customer("Where is my parcel?")), locale: "en".into() }).await.unwrap();
    let mut replies = client.converse(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(replies.message().await.unwrap().is_some());
    // A connection that never says anything, and one that sent only the HTTP/2 preface.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut preface_only = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    preface_only.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();

    signal(&server);
    let sent = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), replies.message()).await.expect("the stream ends after SIGTERM");
    let status = ended.expect_err("the stream ends with a status, not a clean end");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), calmline::error::Error::ShuttingDown.to_string());
    assert!(sent.elapsed() < Duration::from_secs(1), "the idle stream ended at once, not at the deadline: {:?}", sent.elapsed());
    let (code, after) = exit_within(&mut server, Duration::from_secs(6)).await;
    assert_eq!(code, Some(0));
    assert!(after <= Duration::from_secs(3), "exit took {after:?}; the drain timeout is 2 s");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let (mut server, port, _client) = serve(60).await;
    // A peer that sent only the HTTP/2 preface holds the drain open (a silent one no longer
    // does: with HTTP/1.1 served too, a connection that never sent a request is closed at once).
    let mut preface_only = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    preface_only.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    signal(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&server);
    let (code, after) = exit_within(&mut server, Duration::from_secs(5)).await;
    assert_eq!(code, Some(130));
    assert!(after < Duration::from_secs(2), "exit took {after:?} after the second signal");
}
