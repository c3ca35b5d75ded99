//! Starts the real server through `calmline::run` on ephemeral ports, with a oneshot shutdown,
//! and hands out generated clients (the shape of mini-redis `tests/server.rs`).
#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use calmline::config::{Cli, Command, ServeArgs};
use calmline::grpc::pb;
pub use pb::triage_client::TriageClient;

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// `calmline serve` arguments as a user would give them.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["calmline", "serve"];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Serve(args) => args,
        _ => unreachable!(),
    }
}

/// Starts a server and returns once it is listening (not yet SERVING).
pub async fn spawn(extra: &[&str]) -> TestServer {
    let args = serve_args(extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics_addr) = (listener.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        calmline::run(&args, listener, Some(metrics), async {
            let _ = rx.await;
        })
        .await
    });
    TestServer { addr, metrics_addr, shutdown: Some(tx), task }
}

/// Starts a server and waits (on the health Watch stream, no polling) until it is SERVING.
pub async fn start(extra: &[&str]) -> TestServer {
    let server = spawn(extra).await;
    server.wait_serving().await;
    server
}

impl TestServer {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    pub async fn client(&self) -> TriageClient<Channel> {
        TriageClient::new(self.channel().await)
    }

    /// Health statuses seen on the Watch stream until SERVING.
    pub async fn wait_serving(&self) -> Vec<ServingStatus> {
        let mut health = HealthClient::new(self.channel().await);
        let request = tonic_health::pb::HealthCheckRequest { service: "calmline.v1.Triage".into() };
        let mut stream = health.watch(request).await.unwrap().into_inner();
        let mut seen = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            let status = ServingStatus::try_from(message.status).unwrap();
            seen.push(status);
            if status == ServingStatus::Serving {
                break;
            }
        }
        seen
    }

    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr).await.unwrap();
        // A client that reads to the end says so: HTTP/1.1 keeps the connection open otherwise.
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut body)).await.expect("the scrape ends").unwrap();
        body
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap()
    }
}

pub fn customer(text: &str) -> pb::Turn {
    pb::Turn { speaker: pb::Speaker::Customer as i32, text: text.into(), lang: None }
}

pub fn agent(text: &str) -> pb::Turn {
    pb::Turn { speaker: pb::Speaker::Agent as i32, text: text.into(), lang: None }
}

pub fn action_of(a: &pb::Assessment) -> pb::Action {
    pb::Action::try_from(a.guidance.as_ref().expect("customer turns carry guidance").action).unwrap()
}
