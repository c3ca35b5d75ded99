//! Stream limits on the real server: concurrent streams are capped (RESOURCE_EXHAUSTED at once,
//! a slot frees when a stream ends), silent streams are closed, and GetInfo reports both.

use crate::common;

use std::time::{Duration, Instant};

use calmline::grpc::pb;
use tokio_stream::wrappers::ReceiverStream;

fn request(text: &str) -> pb::ConverseRequest {
    pb::ConverseRequest { turn: Some(common::customer(text)), locale: "en".into() }
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_and_a_closed_one_frees_its_slot() {
    let server = common::start(&["--max-streams", "1"]).await;
    let mut client = server.client().await;
    let info = client.get_info(pb::GetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.limits.unwrap().max_streams, 1);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut first = client.converse(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(request("Where is my parcel?")).await.unwrap();
    assert!(first.message().await.unwrap().is_some());

    let (_tx2, rx2) = tokio::sync::mpsc::channel(4);
    let refused = client.converse(ReceiverStream::new(rx2)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("streams are open"));
    let transcripts = tokio_stream::iter(Vec::<pb::Transcript>::new());
    assert_eq!(client.score_transcripts(transcripts).await.unwrap_err().code(), tonic::Code::ResourceExhausted);
    // Unary calls are not streams: still served.
    assert!(client.analyze(pb::AnalyzeRequest { turn: Some(common::customer("Hello")), ..Default::default() }).await.is_ok());

    drop(tx);
    assert!(first.message().await.unwrap().is_none(), "the first stream ends");
    // The slot is released when the stream's task ends, a moment after its last message.
    let started = Instant::now();
    loop {
        let (tx3, rx3) = tokio::sync::mpsc::channel(4);
        match client.converse(ReceiverStream::new(rx3)).await {
            Ok(reply) => {
                tx3.send(request("Thanks!")).await.unwrap();
                assert!(reply.into_inner().message().await.unwrap().is_some());
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted);
                assert!(started.elapsed() < Duration::from_secs(5), "the slot never came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_stream_is_closed_after_the_idle_limit() {
    let server = common::start(&["--stream-idle-timeout-s", "1"]).await;
    let mut client = server.client().await;
    assert_eq!(client.get_info(pb::GetInfoRequest {}).await.unwrap().into_inner().limits.unwrap().stream_idle_timeout_s, 1);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client.converse(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(request("My router keeps dropping.")).await.unwrap();
    assert!(replies.message().await.unwrap().is_some());
    let started = Instant::now();
    let closed = replies.message().await.unwrap_err();
    assert_eq!(closed.code(), tonic::Code::DeadlineExceeded);
    assert!(closed.message().contains("idle"), "{}", closed.message());
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(10));
    drop(tx);
    server.stop().await.unwrap();
}
