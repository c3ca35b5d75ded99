//! Privacy: with trace-level logging on, no customer or agent text reaches the logs or the
//! metrics — through every RPC (good and bad requests) and through the batch scorer. The texts
//! carry a canary word that must not appear anywhere but in the answers themselves.

use crate::common;

use std::process::Command;

use crate::common::ServeProcess;
use calmline::grpc::pb;
use tokio_stream::wrappers::ReceiverStream;

const CANARY: &str = "Zorblaxian";

fn turn(customer: bool, text: &str) -> pb::Turn {
    let text = format!("{text} {CANARY}");
    if customer { common::customer(&text) } else { common::agent(&text) }
}

#[test]
fn no_text_reaches_logs_or_metrics_at_trace_level() {
    let mut server = ServeProcess::spawn(&[], "trace", None);
    let metrics_port = server.metrics_port;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(async {
        let mut client = server.ready().await;
        // Analyze: good, an insult (guidance, detections), and refused inputs that echo nothing.
        for text in ["Where is my parcel?", "You are a useless idiot."] {
            client.analyze(pb::AnalyzeRequest { turn: Some(turn(true, text)), locale: "hu".into(), ..Default::default() }).await.unwrap();
        }
        let bad_lang = pb::Turn { lang: Some(format!("{CANARY} x")), ..turn(true, "hello") };
        assert!(client.analyze(pb::AnalyzeRequest { turn: Some(bad_lang), ..Default::default() }).await.is_err());
        let huge = pb::Turn { text: format!("{CANARY} ").repeat(30_000), ..turn(true, "") };
        assert!(client.analyze(pb::AnalyzeRequest { turn: Some(huge), ..Default::default() }).await.is_err());
        // Converse, customer and agent turns.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut replies = client.converse(ReceiverStream::new(rx)).await.unwrap().into_inner();
        for (customer, text) in [(true, "This damn router again!"), (false, "That's the courier's fault, not ours."), (true, "I will find you.")] {
            tx.send(pb::ConverseRequest { turn: Some(turn(customer, text)), locale: "en".into() }).await.unwrap();
            replies.message().await.unwrap().unwrap();
        }
        drop(tx);
        // ScoreTranscripts, with one transcript that fails validation.
        let transcripts = vec![
            pb::Transcript {
                id: "t1".into(), locale: "he".into(), agent_id: "a1".into(), turns: vec![turn(true, "אתה אידיוט"), turn(false, "אני מצטער")]
            },
            pb::Transcript { id: "t2".into(), turns: vec![turn(true, "ok"), pb::Turn { text: "   ".into(), ..turn(true, "") }], ..Default::default() },
        ];
        let mut reports = client.score_transcripts(tokio_stream::iter(transcripts)).await.unwrap().into_inner();
        while reports.message().await.unwrap().is_some() {}

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut body)).await.expect("the scrape ends").unwrap();
        body
    });
    server.terminate();
    let (status, log) = server.finish();
    assert!(status.success());

    assert!(log.contains("\"level\":\"TRACE\""), "trace logging was not on");
    assert!(log.contains("SERVING"));
    assert!(metrics.contains("calmline_requests_total"));
    // What was detected is counted, by label and language only, for live turns and transcripts
    // alike (the pipeline counts served turns; the domain knows nothing of metrics).
    // ("אתה אידיוט" is too short to tell its language: "und".)
    assert!(metrics.contains("calmline_detections_total{label=\"insult\",language=\"und\"}"), "{metrics}");
    assert!(metrics.contains("calmline_guidance_total{action=\"ACKNOWLEDGE\"} 1"), "{metrics}");
    assert!(metrics.contains("calmline_guidance_total{action=\"NONE\"}"), "{metrics}");
    for (place, text) in [("logs", &log), ("metrics", &metrics)] {
        assert!(!text.contains(CANARY), "input text reached the {place}: {}", text.lines().find(|l| l.contains(CANARY)).unwrap());
        for word in ["idiot", "router", "courier", "אידיוט"] {
            assert!(!text.contains(word), "input text ({word}) reached the {place}");
        }
    }

    // The batch scorer: its outputs hold the texts (that is the report); its logs must not.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.jsonl");
    std::fs::write(&input, format!("{{\"id\":\"c1\",\"turns\":[{{\"speaker\":\"customer\",\"text\":\"You idiot {CANARY}\"}},{{\"speaker\":\"agent\",\"text\":\"Not my fault {CANARY}\"}}]}}\nnot json {CANARY}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_calmline"))
        .args(["score", input.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap(), "--progress", "always"])
        .env("CALMLINE_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("TRACE") || log.contains("DEBUG") || log.contains("scored"), "{log}");
    assert!(!log.contains(CANARY), "input text reached the scorer's log: {log}");
}
