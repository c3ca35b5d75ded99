//! Memory a client without a key can make the server hold (issue 17, item 2): one connection
//! opening stream after stream, each sending most of a 4 MB message and never the rest, took
//! the resident memory from 156 to 732 MB and left 526 MB behind. Now the bytes of messages not
//! yet whole are bounded server-wide (32 MiB), a connection has at most 32 streams, a half-sent unary
//! call times out, and the heap goes back to the system when the client leaves. And a stream
//! far ahead of inference waits alone instead of closing its connection (item 5).

use std::future::poll_fn;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::{ServeProcess, TriageClient};
use calmline::grpc::pb;

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kb / 1024.0
}

/// The real binary (its memory is what is measured), ready to answer.
async fn serve(extra: &[&str]) -> ServeProcess {
    let mut server = ServeProcess::spawn(extra, "info", None);
    server.ready().await;
    server
}

/// An HTTP/2 connection speaking raw frames, as a hostile client would.
async fn connect(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    sender
}

fn analyze_request(port: u16) -> http::Request<()> {
    http::Request::post(format!("http://127.0.0.1:{port}/calmline.v1.Triage/Analyze"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Sends a gRPC message prefix announcing `announced` bytes, then `sent` bytes of it, as fast as
/// flow control lets it, and never the rest.
async fn send_most_of_a_message(stream: &mut h2::SendStream<Bytes>, announced: u32, sent: usize) {
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&announced.to_be_bytes());
    if stream.send_data(Bytes::from(prefix), false).is_err() {
        return;
    }
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let mut left = sent;
    while left > 0 {
        stream.reserve_capacity(chunk.len().min(left));
        match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) if n > 0 => {
                let n = n.min(left);
                if stream.send_data(chunk.slice(..n), false).is_err() {
                    return;
                }
                left -= n;
            }
            Some(Ok(_)) => continue,
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_large_messages_hold_bounded_memory_which_is_returned_after() {
    let server = serve(&[]).await;
    let pid = server.child.id();
    let before = rss_mb(pid);

    // Four connections of 40 streams each: a connection has at most 32 at once (the rest wait
    // for a slot), so only the server-wide budget bounds what four of them hold.
    let mut senders = Vec::new();
    let mut streams = Vec::new();
    let mut refused = 0;
    let sampling = Instant::now();
    let mut peak = before;
    for _ in 0..4 {
        let mut sender = connect(server.port).await;
        for _ in 0..40 {
            let Ok(Ok(ready)) = tokio::time::timeout(Duration::from_millis(500), sender.clone().ready()).await else { break };
            sender = ready;
            let (response, mut stream) = sender.send_request(analyze_request(server.port), false).unwrap();
            streams.push(tokio::spawn(async move {
                send_most_of_a_message(&mut stream, 4_000_000, 3_900_000).await;
                let answer = response.await;
                (answer.ok().and_then(|r| r.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string())), stream)
            }));
            peak = peak.max(rss_mb(pid));
        }
        senders.push(sender);
    }
    let opened = streams.len();
    while sampling.elapsed() < Duration::from_secs(5) {
        peak = peak.max(rss_mb(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another client is still served meanwhile.
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.port)).unwrap().connect().await.unwrap();
    let info = tokio::time::timeout(Duration::from_secs(10), TriageClient::new(channel).get_info(pb::GetInfoRequest {})).await;
    assert!(info.is_ok_and(|r| r.is_ok()), "another client is served during the attack");

    for task in &streams {
        if task.is_finished() {
            refused += 1;
        }
    }
    for task in streams {
        task.abort();
    }
    drop(senders);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mb(pid);
    eprintln!("resident memory: {before:.0} MB before, {peak:.0} MB peak with {opened} streams opened ({refused} refused), {after:.0} MB after");
    assert!(opened >= 32, "only {opened} streams opened");
    assert!(peak - before < 160.0, "the attack grew memory by {:.0} MB (before {before:.0}, peak {peak:.0})", peak - before);
    assert!(after - before < 60.0, "{:.0} MB stayed after the client left (before {before:.0}, after {after:.0})", after - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_unary_call_times_out_and_health_takes_only_small_messages() {
    let server = serve(&["--request-read-timeout-s", "1"]).await;
    let sender = connect(server.port).await;
    let mut sender = sender.ready().await.unwrap();
    let (response, mut stream) = sender.send_request(analyze_request(server.port), false).unwrap();
    send_most_of_a_message(&mut stream, 1000, 500).await;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("answered").unwrap();
    let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status.as_deref(), Some("4"), "DEADLINE_EXCEEDED: {:?}", response.headers());
    assert!(started.elapsed() < Duration::from_secs(5));

    // A health check of 100 KB is refused by its size (tonic: OUT_OF_RANGE), not buffered.
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::post(format!("http://127.0.0.1:{}/grpc.health.v1.Health/Check", server.port))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(request, false).unwrap();
    send_most_of_a_message(&mut stream, 100_000, 100_000).await;
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("answered").unwrap();
    let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status.as_deref(), Some("11"), "OUT_OF_RANGE: {:?}", response.headers());
}

/// Reads the next DATA frame of a response and gives its bytes back to flow control.
async fn next_data(body: &mut h2::RecvStream) -> bool {
    match body.data().await {
        Some(Ok(data)) => {
            let _ = body.flow_control().release_capacity(data.len());
            true
        }
        _ => false,
    }
}

fn converse_request(port: u16) -> http::Request<()> {
    http::Request::post(format!("http://127.0.0.1:{port}/calmline.v1.Triage/Converse"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// One short turn as a gRPC message (prefix and protobuf).
fn turn_message(text: &str) -> Bytes {
    use prost::Message;
    let body = pb::ConverseRequest { turn: Some(crate::common::customer(text)), locale: "en".into() }.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    Bytes::from(framed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_far_ahead_of_inference_waits_alone() {
    // 5,000 short turns, each its own DATA frame, sent as fast as flow control allows: the
    // HTTP/2 library's budget for buffered small frames used to run out at ~3,200 and close the
    // connection (GOAWAY ENHANCE_YOUR_CALM), failing every call on it.
    let server = serve(&[]).await;
    let sender = connect(server.port).await;
    let mut sender = sender.ready().await.unwrap();
    let (quiet_response, mut quiet) = sender.send_request(converse_request(server.port), false).unwrap();
    quiet.send_data(turn_message("Hello, I have a question about my bill."), false).unwrap();
    let mut quiet_body = quiet_response.await.unwrap().into_body();
    assert!(next_data(&mut quiet_body).await, "the quiet stream's first answer");

    let mut sender = sender.ready().await.unwrap();
    let (flood_response, mut flood) = sender.send_request(converse_request(server.port), false).unwrap();
    let flooding = tokio::spawn(async move {
        for i in 0..5_000 {
            let message = turn_message(&format!("Order {i} is late."));
            flood.reserve_capacity(message.len());
            loop {
                match poll_fn(|cx| flood.poll_capacity(cx)).await {
                    Some(Ok(n)) if n >= message.len() => break,
                    Some(Ok(_)) => continue,
                    _ => return i,
                }
            }
            if flood.send_data(message, false).is_err() {
                return i;
            }
        }
        5_000
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut flood_body = flood_response.await.unwrap().into_body();
    assert!(next_data(&mut flood_body).await, "the flooding stream is answered");
    // Its answers are read (as a client does), so they never fill the connection's window.
    let draining = tokio::spawn(async move { while next_data(&mut flood_body).await {} });

    // The other stream on the same connection still works.
    quiet.send_data(turn_message("Can you check it again?"), false).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), next_data(&mut quiet_body)).await.expect("answered in time");
    assert!(answer, "the quiet stream was cut off by the flood");
    flooding.abort();
    draining.abort();
}
