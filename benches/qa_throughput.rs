//! QA throughput: the batch scorer (`calmline score`) against the service, on the same turns.
//!
//! Transcripts are assembled here, until `QA_BENCH_TURNS` turns (10,000 by default), from one of
//! two sources (`QA_BENCH_SOURCE`):
//!
//! - `convabuse` (the default): ConvAbuse (`../shared/data/convabuse_en`, CC-BY-4.0; no data is
//!   committed): each row's `prev_agent`, `prev_user`, `agent`, `user` become a four-turn
//!   conversation. Its turns are short (median 14 characters).
//! - `support`: the project's gold conversations (`data/conversations/`, twelve languages since 2026-12-06, six before; both
//!   speakers, each with its locale), repeated as often as needed: support-chat turns of one to
//!   three sentences (median 74 characters), the lengths a contact center sends.
//!
//! Then, in one run:
//!
//! 1. batch: the release `calmline score FILE --out DIR` (its own report of scoring time, the
//!    model load excluded);
//! 2. live: the service started in-process on loopback, one `Converse` stream per conversation,
//!    16 conversations at once, each turn awaited before the next (as a platform does);
//! 3. QA over gRPC: one `ScoreTranscripts` stream with every conversation.
//!
//! ```sh
//! cargo bench --bench qa_throughput            # QA_BENCH_TURNS=2000 for a quick look
//! QA_BENCH_SOURCE=support cargo bench --bench qa_throughput
//! ```
//!
//! `QA_BENCH_SAVE=FILE` keeps the assembled transcripts (for batch-size studies by hand).
//!
//! Results and the machine they came from are in BENCHMARKS.md.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use calmline::grpc::pb;
use pb::triage_client::TriageClient;
use tokio::sync::Semaphore;

const DATA: &str = "../shared/data/convabuse_en/ConvAbuseEMNLPtrain.csv";
const LIVE_CONVERSATIONS_AT_ONCE: usize = 16;

const SUPPORT: &str = "data/conversations";

#[derive(Clone)]
struct Conversation {
    locale: String,
    turns: Vec<(bool, String)>, // (is_customer, text)
}

/// Whole conversations from `source`, cycled, the last one cut so that there are exactly
/// `target_turns` turns.
fn take_turns(source: impl Iterator<Item = Conversation>, target_turns: usize) -> Vec<Conversation> {
    let mut conversations = Vec::new();
    let mut total = 0;
    for mut c in source {
        if total == target_turns {
            break;
        }
        c.turns.truncate(target_turns - total);
        total += c.turns.len();
        if !c.turns.is_empty() {
            conversations.push(c);
        }
    }
    conversations
}

fn assemble(source: &str, target_turns: usize) -> Vec<Conversation> {
    match source {
        "convabuse" => take_turns(convabuse().into_iter().cycle(), target_turns),
        "support" => take_turns(support().into_iter().cycle(), target_turns),
        other => panic!("QA_BENCH_SOURCE is `convabuse` or `support`, not {other:?}"),
    }
}

/// The project's gold conversations, every split, both speakers.
fn support() -> Vec<Conversation> {
    let mut files: Vec<_> = std::fs::read_dir(SUPPORT).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    files.sort();
    let mut conversations = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            let turns = c["turns"].as_array().unwrap().iter().map(|t| (t["speaker"] == "customer", t["text"].as_str().unwrap().to_string())).collect();
            conversations.push(Conversation { locale: c["locale"].as_str().unwrap().to_string(), turns });
        }
    }
    conversations
}

fn convabuse() -> Vec<Conversation> {
    let mut reader = csv::Reader::from_path(DATA).expect("ConvAbuse in ../shared/data (see MANIFEST.md)");
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (pa, pu, a, u) = (col("prev_agent"), col("prev_user"), col("agent"), col("user"));
    reader
        .records()
        .map(Result::unwrap)
        .map(|row| Conversation {
            locale: "en".into(),
            turns: [(false, pa), (true, pu), (false, a), (true, u)]
                .into_iter()
                .map(|(customer, i)| (customer, row.get(i).unwrap_or("").trim().to_string()))
                .filter(|(_, t)| !t.is_empty())
                .collect(),
        })
        .filter(|c| !c.turns.is_empty())
        .collect()
}

fn write_jsonl(conversations: &[Conversation], path: &Path) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (i, c) in conversations.iter().enumerate() {
        let turns: Vec<_> =
            c.turns.iter().map(|(customer, text)| serde_json::json!({"speaker": if *customer { "customer" } else { "agent" }, "text": text})).collect();
        writeln!(out, "{}", serde_json::json!({"id": format!("bench-{i}"), "locale": c.locale, "agent_id": format!("a{}", i % 20), "turns": turns})).unwrap();
    }
}

fn turn(customer: bool, text: &str) -> pb::Turn {
    pb::Turn { speaker: if customer { pb::Speaker::Customer } else { pb::Speaker::Agent } as i32, text: text.to_string(), ..Default::default() }
}

fn main() {
    let target: usize = std::env::var("QA_BENCH_TURNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let source = std::env::var("QA_BENCH_SOURCE").unwrap_or_else(|_| "convabuse".into());
    let conversations = Arc::new(assemble(&source, target));
    let turns: usize = conversations.iter().map(|c| c.turns.len()).sum();
    println!("{} conversations, {turns} turns assembled from {source}", conversations.len());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("transcripts.jsonl");
    write_jsonl(&conversations, &input);
    if let Ok(keep) = std::env::var("QA_BENCH_SAVE") {
        // The assembled transcripts, for batch-size studies with `calmline score` by hand.
        std::fs::copy(&input, &keep).unwrap();
    }

    // 1. The batch path, as a user runs it.
    let out = Command::new(env!("CARGO_BIN_EXE_calmline"))
        .args(["score", input.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap(), "--progress", "never"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let batch_rate: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("scored ").and_then(|l| l.split('(').nth(1)).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok()))
        .expect("calmline score reports its rate");
    println!("batch  calmline score              {batch_rate:8.1} turns/s");

    // 2 and 3. The service, in-process, on loopback.
    let runtime = calmline::infer::runtime(Some(2)).unwrap();
    runtime.block_on(async {
        use clap::Parser;
        let args = match calmline::config::Cli::parse_from(["calmline", "serve"]).command {
            calmline::config::Command::Serve(a) => a,
            _ => unreachable!(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            calmline::run(&args, listener, None, async {
                let _ = stopped.await;
            })
            .await
        });
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let mut client = TriageClient::new(channel.clone());
        // Ready when GetInfo reports a model.
        while client.get_info(pb::GetInfoRequest {}).await.map(|r| r.into_inner().model_version.is_empty()).unwrap_or(true) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(LIVE_CONVERSATIONS_AT_ONCE));
        let mut tasks = Vec::new();
        for i in 0..conversations.len() {
            let permit = Arc::clone(&slots).acquire_owned().await.unwrap();
            let (conversations, mut client) = (Arc::clone(&conversations), TriageClient::new(channel.clone()));
            tasks.push(tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let mut replies = client.converse(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
                for (customer, text) in &conversations[i].turns {
                    tx.send(pb::ConverseRequest { turn: Some(turn(*customer, text)), locale: conversations[i].locale.clone() }).await.unwrap();
                    replies.message().await.unwrap().expect("one assessment per turn");
                }
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let live_rate = turns as f64 / started.elapsed().as_secs_f64();
        println!("live   Converse, {LIVE_CONVERSATIONS_AT_ONCE} at once          {live_rate:8.1} turns/s");

        let started = Instant::now();
        let transcripts: Vec<pb::Transcript> = conversations
            .iter()
            .enumerate()
            .map(|(i, c)| pb::Transcript {
                id: i.to_string(),
                locale: c.locale.clone(),
                agent_id: String::new(),
                turns: c.turns.iter().map(|(cu, t)| turn(*cu, t)).collect(),
            })
            .collect();
        let mut reports = client.score_transcripts(tokio_stream::iter(transcripts)).await.unwrap().into_inner();
        let mut scored = 0;
        while let Some(r) = reports.message().await.unwrap() {
            assert!(r.error.is_none());
            scored += r.turns.len();
        }
        assert_eq!(scored, turns);
        let grpc_rate = turns as f64 / started.elapsed().as_secs_f64();
        println!("qa     ScoreTranscripts (1 stream) {grpc_rate:8.1} turns/s");
        println!("ratio  batch / live {:.2}, batch / ScoreTranscripts {:.2}", batch_rate / live_rate, batch_rate / grpc_rate);
        let _ = stop.send(());
        let _ = server.await;
    });
}
