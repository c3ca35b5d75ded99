//! A maximal turn shares the encoder (issue 17, item 1): its windows are scored a piece at a
//! time between other callers' texts, it stops when its caller goes, and a turn over the window
//! cap is refused before any encoder work.

use std::time::{Duration, Instant};

use calmline::grpc::pb;
use tonic::Code;

use crate::common::{self, customer};

/// ~15 tokens a sentence: 700 of them are ~10,500 tokens, 27 windows (the cap is 32).
fn maximal_turn() -> String {
    "I am writing again about the invoice that was charged twice this month. ".repeat(700)
}

fn analyze(text: &str, timeout: Duration) -> tonic::Request<pb::AnalyzeRequest> {
    let mut request = tonic::Request::new(pb::AnalyzeRequest { turn: Some(customer(text)), ..Default::default() });
    request.set_timeout(timeout);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_turns_are_answered_while_a_maximal_turn_is_scored() {
    let server = common::start(&[]).await;
    let mut long_client = server.client().await;
    let long = tokio::spawn(async move {
        let started = Instant::now();
        let answer = long_client.analyze(analyze(&maximal_turn(), Duration::from_secs(120))).await;
        (answer, started.elapsed())
    });

    // Another caller's short turns, one after another while the long one is scored.
    let mut client = server.client().await;
    let mut latencies = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while !long.is_finished() {
        let started = Instant::now();
        let answer = client.analyze(analyze("Where is my parcel?", Duration::from_secs(30))).await;
        assert!(answer.is_ok(), "{answer:?}");
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (answer, long_took) = long.await.unwrap();
    assert!(answer.is_ok(), "the maximal turn is answered: {answer:?}");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    // Each short turn waits for one piece (two windows), not for the whole text: under 1 s on
    // this machine alone; under a quarter of the long turn's time whatever else runs beside it.
    let bound = Duration::from_secs(1).max(long_took / 4);
    assert!(latencies.len() >= 3, "{} short turns while the long one took {long_took:?}", latencies.len());
    assert!(slowest < bound, "a short turn took {slowest:?} while the long one took {long_took:?}: {latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximal_turn_whose_caller_has_gone_stops_after_its_piece() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    let status = client.analyze(analyze(&maximal_turn(), Duration::from_millis(500))).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    // The pipeline drops it at its next piece: counted as dropped, and the encoder is free.
    let dropped = |metrics: &str| {
        metrics.lines().find(|l| l.starts_with("calmline_dropped_texts_total")).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let started = Instant::now();
    while dropped(&server.scrape().await) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the gone caller's text was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let short = client.analyze(analyze("Where is my parcel?", Duration::from_secs(30))).await;
    assert!(short.is_ok(), "{short:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_over_the_window_cap_is_refused_with_the_limit() {
    let server = common::start(&["--max-turn-windows", "4"]).await;
    let mut client = server.client().await;
    // 256 KiB of one-letter words, the most a turn may have in bytes: far over 4 windows.
    let letters = "a b c d e f g h ".repeat(256 * 1024 / 16);
    let started = Instant::now();
    let status = client.analyze(analyze(&letters, Duration::from_secs(60))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("the limit is 4 windows per turn"), "{}", status.message());
    assert!(started.elapsed() < Duration::from_secs(10), "refused after {:?}", started.elapsed());
    // A turn within it is scored.
    let within = client.analyze(analyze(&maximal_turn()[..4000], Duration::from_secs(60))).await;
    assert!(within.is_ok(), "{within:?}");
}
