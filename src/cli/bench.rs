//! `calmline bench`: a load generator that drives a running server over gRPC with N concurrent
//! callers (unary `Analyze`) or N concurrent `Converse` streams for a bounded time, and reports
//! throughput and latency percentiles. It sends whatever texts it is given and reports only
//! counts and timings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::config::{BenchArgs, BenchRpc, value_name};
use crate::grpc::pb::{self, triage_client::TriageClient};

/// Short customer turns in several languages, used when no `--texts` file is given (and by the
/// stage benchmarks).
pub const BUILT_IN_TURNS: &[&str] = &[
    "Where is my parcel? I ordered it two weeks ago and nobody calls me back.",
    "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!",
    "אני מחכה כבר שעה על הקו ואף אחד לא עונה",
    "Ich warte seit zwei Wochen auf meinen Ersatzrouter.",
    "You people are useless, fix my internet now.",
    "¿Por qué me habéis cobrado dos veces la misma factura?",
    "Merci beaucoup, c'est réglé, bonne journée !",
    "This damn router has dropped five times today!",
];

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub rpc: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: usize,
    pub errors: BTreeMap<String, u64>,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn load_texts(path: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    let Some(path) = path else { return Ok(BUILT_IN_TURNS.iter().map(|t| t.to_string()).collect()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let texts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .filter(|t| !t.trim().is_empty())
        .collect();
    anyhow::ensure!(!texts.is_empty(), "{}: no lines with a \"text\"", path.display());
    Ok(texts)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let texts = Arc::new(load_texts(args.texts.as_deref())?);
    let runtime = crate::infer::runtime(Some(2))?;
    let report = runtime.block_on(drive(args, texts))?;
    println!(
        "{} × {} for {:.1} s: {} ok, {:.1} turns/s; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors {:?}",
        report.rpc, report.concurrency, report.seconds, report.ok, report.per_second, report.p50_ms, report.p95_ms, report.p99_ms, report.max_ms, report.errors
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn with_key<T>(message: T, key: &Option<String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn turn(text: &str) -> pb::Turn {
    pb::Turn { speaker: pb::Speaker::Customer as i32, text: text.to_string(), ..Default::default() }
}

async fn drive(args: &BenchArgs, texts: Arc<Vec<String>>) -> anyhow::Result<LoadReport> {
    let channel = Channel::from_shared(args.target.clone())?.connect().await.with_context(|| format!("connecting to {}", args.target))?;
    let duration = Duration::from_secs_f64(args.seconds);
    // Warm-up: one call, not counted.
    TriageClient::new(channel.clone()).analyze(with_key(pb::AnalyzeRequest { turn: Some(turn(&texts[0])), ..Default::default() }, &args.api_key)).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + duration;
    let mut callers = Vec::new();
    for caller in 0..args.concurrency as usize {
        let (channel, texts, tally, key, rpc) = (channel.clone(), Arc::clone(&texts), Arc::clone(&tally), args.api_key.clone(), args.rpc);
        callers.push(tokio::spawn(async move {
            let mut client = TriageClient::new(channel);
            let mut i = caller;
            if rpc == BenchRpc::Converse {
                // One stream per caller; each turn awaited before the next, as a live platform.
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let mut replies = match client.converse(with_key(tokio_stream::wrappers::ReceiverStream::new(rx), &key)).await {
                    Ok(r) => r.into_inner(),
                    Err(s) => {
                        *tally.lock().await.errors.entry(format!("{:?}", s.code())).or_default() += 1;
                        return;
                    }
                };
                while Instant::now() < until {
                    let sent = Instant::now();
                    if tx.send(pb::ConverseRequest { turn: Some(turn(&texts[i % texts.len()])), locale: "en".into() }).await.is_err() {
                        break;
                    }
                    let outcome = replies.message().await;
                    let mut t = tally.lock().await;
                    match outcome {
                        Ok(Some(_)) => t.latencies.push(sent.elapsed()),
                        Ok(None) => break,
                        Err(s) => {
                            *t.errors.entry(format!("{:?}", s.code())).or_default() += 1;
                            break;
                        }
                    }
                    i += 1;
                }
            } else {
                while Instant::now() < until {
                    let sent = Instant::now();
                    let outcome = client
                        .analyze(with_key(pb::AnalyzeRequest { turn: Some(turn(&texts[i % texts.len()])), locale: "en".into(), ..Default::default() }, &key))
                        .await;
                    let mut t = tally.lock().await;
                    match outcome {
                        Ok(_) => t.latencies.push(sent.elapsed()),
                        Err(s) => *t.errors.entry(format!("{:?}", s.code())).or_default() += 1,
                    }
                    i += 1;
                }
            }
        }));
    }
    for c in callers {
        c.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut t = std::mem::take(&mut *tally.lock().await);
    t.latencies.sort();
    let pct = |p: f64| t.latencies.get(((t.latencies.len().max(1) - 1) as f64 * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(LoadReport {
        rpc: value_name(&args.rpc),
        concurrency: args.concurrency as usize,
        seconds,
        ok: t.latencies.len(),
        per_second: t.latencies.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        errors: t.errors,
    })
}
