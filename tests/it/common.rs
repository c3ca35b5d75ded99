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

/// The real binary, `calmline serve`, on ports the system picks, its JSON log kept for the test.
/// A port a test picks and frees for the server to bind again can be taken in between by a test
/// running beside it; the server then exits and the test waits for nothing (a CI failure).
pub struct ServeProcess {
    pub child: std::process::Child,
    pub port: u16,
    pub metrics_port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `calmline serve` with `extra` arguments, logging at `level` ("info" or more verbose:
    /// the ports are read from the log), under `ulimit -n fd_limit` when given. Returns once it
    /// listens; [`ServeProcess::ready`] waits for the model.
    pub fn spawn(extra: &[&str], level: &str, fd_limit: Option<u32>) -> ServeProcess {
        use std::io::BufRead;
        let binary = env!("CARGO_BIN_EXE_calmline");
        let mut command = match fd_limit {
            Some(limit) => {
                let mut bash = std::process::Command::new("bash");
                bash.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\""), binary]);
                bash
            }
            None => std::process::Command::new(binary),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .env("CALMLINE_LOG", level)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let mut server = ServeProcess { child, port: 0, metrics_port: 0, log, reader: Some(reader) };
        let started = std::time::Instant::now();
        loop {
            if let (Some(port), Some(metrics_port)) = (server.logged_port("listening"), server.logged_port("metrics at")) {
                (server.port, server.metrics_port) = (port, metrics_port);
                return server;
            }
            server.assert_running("before listening");
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "not listening after 60 s:\n{}", server.log_tail());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits until the server answers GetInfo with a model, failing at once if it exits.
    pub async fn ready(&mut self) -> TriageClient<Channel> {
        let started = std::time::Instant::now();
        loop {
            if let Some(client) = answering_client(self.port).await {
                return client;
            }
            self.assert_running("before it served");
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "never ready in 120 s:\n{}", self.log_tail());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM, as an orchestrator stopping the server would.
    pub fn terminate(&self) {
        assert!(std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for the process to exit and returns its whole log.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        (status, self.log())
    }

    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            self.reader.take().unwrap().join().unwrap();
            panic!("the server exited {when} ({status}):\n{}", self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        log[log.floor_char_boundary(log.len().saturating_sub(3000))..].to_string()
    }

    /// The port in the `address` field of the first log line whose message starts with `message`.
    fn logged_port(&self, message: &str) -> Option<u16> {
        self.log().lines().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            let fields = &entry["fields"];
            fields["message"].as_str()?.starts_with(message).then_some(())?;
            fields["address"].as_str()?.parse::<SocketAddr>().ok().map(|a| a.port())
        })
    }
}

/// A client of the server on `port` once it answers GetInfo with a model, or `None` if it does not
/// within a few seconds (it may be loading, or out of descriptors).
pub async fn answering_client(port: u16) -> Option<TriageClient<Channel>> {
    use std::time::Duration;
    let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    let channel = tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await.ok()?.ok()?;
    let mut client = TriageClient::new(channel);
    let info = tokio::time::timeout(Duration::from_secs(5), client.get_info(pb::GetInfoRequest {})).await.ok()?.ok()?;
    (!info.into_inner().model_version.is_empty()).then_some(client)
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
