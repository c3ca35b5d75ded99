//! SIGTERM on the real binary: open streams end with UNAVAILABLE, silent connections do not hold
//! the process past `--drain-timeout-s`, and a second signal exits at once.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{ServeProcess, TriageClient};
use calmline::grpc::pb;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;

/// The server, and a client once it answers with a model.
async fn serve(drain_timeout_s: u64) -> (ServeProcess, TriageClient<tonic::transport::Channel>) {
    let mut server = ServeProcess::spawn(&["--drain-timeout-s", &drain_timeout_s.to_string()], "info", None);
    let client = server.ready().await;
    (server, client)
}

/// Waits for the process to exit, at most `limit`; its status code and when it exited.
async fn exit_within(server: &mut ServeProcess, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        if started.elapsed() > limit {
            panic!("the server was still running {limit:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_a_status_and_exits_within_the_drain_timeout() {
    let (mut server, mut client) = serve(2).await;
    let port = server.port;
    // A live conversation that answered one turn and now waits for the next.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConverseRequest { turn: Some(common::customer("Where is my parcel?")), locale: "en".into() }).await.unwrap();
    let mut replies = client.converse(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(replies.message().await.unwrap().is_some());
    // A connection that never says anything, and one that sent only the HTTP/2 preface.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut preface_only = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    preface_only.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();

    server.terminate();
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
    let (mut server, _client) = serve(60).await;
    let port = server.port;
    // A peer that sent only the HTTP/2 preface holds the drain open (a silent one no longer
    // does: with HTTP/1.1 served too, a connection that never sent a request is closed at once).
    let mut preface_only = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    preface_only.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let (code, after) = exit_within(&mut server, Duration::from_secs(5)).await;
    assert_eq!(code, Some(130));
    assert!(after < Duration::from_secs(2), "exit took {after:?} after the second signal");
}
