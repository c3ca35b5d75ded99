//! Load and faults on loopback, bounded in time: ten times the service's capacity, then a
//! SIGTERM-equivalent shutdown under that load. Not a timing test: it reports what happened.
//!
//!     cargo bench --bench overload          # OVERLOAD_SECONDS=20 by default
//!
//! Checks (the run fails if one does not hold):
//! - every request ends OK or RESOURCE_EXHAUSTED under overload (nothing hangs, nothing fails
//!   otherwise), refusals come back fast, and resident memory stays bounded;
//! - after shutdown starts, requests already admitted are answered OK and new ones are refused
//!   (UNAVAILABLE or a closed connection), and the server returns cleanly.
//!
//! The figures of a run are in docs/RELIABILITY.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calmline::grpc::pb;
use pb::triage_client::TriageClient;
use tokio::sync::Mutex;

const CAPACITY: usize = 4;
const CALLERS: usize = 10 * CAPACITY;

const TEXTS: &[&str] = &[
    "Where is my parcel? I ordered it two weeks ago.",
    "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!",
    "אני מחכה כבר שעה על הקו",
    "You people are useless, fix my internet now.",
];

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Default)]
struct Outcomes {
    ok: Vec<Duration>,
    refused: Vec<Duration>,
    other: Vec<String>,
    /// Sent before shutdown began, answered after.
    in_flight_answered: usize,
    /// Refused after shutdown began, by how (the connection closing is a refusal too).
    refused_at_shutdown: std::collections::BTreeMap<String, usize>,
}

fn main() {
    let seconds: u64 = std::env::var("OVERLOAD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = calmline::infer::runtime(Some(2)).unwrap();
    runtime.block_on(async move {
        use clap::Parser;
        let args = match calmline::config::Cli::parse_from(["calmline", "serve", "--max-in-flight", &CAPACITY.to_string()]).command {
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
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().timeout(Duration::from_secs(30)).connect_lazy();
        let mut probe = TriageClient::new(channel.clone());
        while probe.get_info(pb::GetInfoRequest {}).await.map(|r| r.into_inner().model_version.is_empty()).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rss_before = rss_mb();
        let peak = Arc::new(Mutex::new(rss_before));
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let mut p = peak.lock().await;
                    *p = p.max(rss_mb());
                    drop(p);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };

        // Phase 1: ten times capacity for `seconds`; phase 2: shut down under the same load.
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let shutting_down = Arc::new(AtomicBool::new(false));
        let load_until = Instant::now() + Duration::from_secs(seconds) + Duration::from_secs(3);
        let mut callers = Vec::new();
        for c in 0..CALLERS {
            let (channel, outcomes, shutting_down) = (channel.clone(), Arc::clone(&outcomes), Arc::clone(&shutting_down));
            callers.push(tokio::spawn(async move {
                let mut client = TriageClient::new(channel);
                let mut i = c;
                while Instant::now() < load_until {
                    let sent_before_shutdown = !shutting_down.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let turn = pb::Turn { speaker: pb::Speaker::Customer as i32, text: TEXTS[i % TEXTS.len()].into(), ..Default::default() };
                    let result = client.analyze(pb::AnalyzeRequest { turn: Some(turn), locale: "en".into(), ..Default::default() }).await;
                    let elapsed = started.elapsed();
                    let mut o = outcomes.lock().await;
                    match result {
                        Ok(_) => {
                            o.ok.push(elapsed);
                            if sent_before_shutdown && shutting_down.load(Ordering::Relaxed) {
                                o.in_flight_answered += 1;
                            }
                        }
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => o.refused.push(elapsed),
                        Err(s) if !sent_before_shutdown && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled) => {
                            *o.refused_at_shutdown.entry(format!("{:?}", s.code())).or_default() += 1;
                        }
                        Err(s) => o.other.push(format!("{:?}: {}", s.code(), s.message())),
                    }
                    drop(o);
                    if shutting_down.load(Ordering::Relaxed) {
                        // As clients back off once the server goes away.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    i += CALLERS;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let phase1 = {
            let o = outcomes.lock().await;
            (o.ok.len(), o.refused.len(), o.other.len())
        };
        shutting_down.store(true, Ordering::Relaxed);
        let shutdown_started = Instant::now();
        let _ = stop.send(());
        let served = server.await.unwrap();
        let drained_in = shutdown_started.elapsed();
        for c in callers {
            c.await.unwrap();
        }
        running.store(false, Ordering::Relaxed);
        let _ = sampler.await;

        let mut o = outcomes.lock().await;
        o.ok.sort();
        o.refused.sort();
        let peak = *peak.lock().await;
        println!("capacity {CAPACITY} in flight, {CALLERS} callers, {seconds} s of overload (then shutdown under load)");
        println!("phase 1: {} answered OK, {} refused RESOURCE_EXHAUSTED, {} other", phase1.0, phase1.1, phase1.2);
        println!(
            "answered: p50 {:.1} ms, p99 {:.1} ms; refused: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(percentile(&o.ok, 0.5)),
            ms(percentile(&o.ok, 0.99)),
            ms(percentile(&o.refused, 0.5)),
            ms(percentile(&o.refused, 0.99)),
            ms(o.refused.last().copied().unwrap_or_default())
        );
        println!("resident memory: {rss_before:.0} MB before the load, peak {peak:.0} MB");
        println!(
            "shutdown under load: drained and returned in {:.0} ms ({:?}); {} requests in flight when it began were answered OK; new ones refused: {:?}",
            drained_in.as_secs_f64() * 1e3,
            served.as_ref().map(|_| "clean").map_err(|e| e.to_string()),
            o.in_flight_answered,
            o.refused_at_shutdown
        );
        if !o.other.is_empty() {
            println!("other outcomes: {} ({:?} …)", o.other.len(), &o.other[..o.other.len().min(3)]);
        }
        assert!(o.other.is_empty(), "requests failed otherwise than refused: {:?}", &o.other[..o.other.len().min(5)]);
        assert!(phase1.1 > 0, "ten times capacity was never refused");
        assert!(served.is_ok());
        assert!(peak - rss_before < 200.0, "memory grew by {:.0} MB under overload", peak - rss_before);
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
