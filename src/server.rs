//! `run`: the one entry point of the service, for `main` and for the tests — the shape of
//! mini-redis' `server::run`. It serves at once (health NOT_SERVING), loads and warms the model,
//! then reports SERVING; on shutdown it reports NOT_SERVING, stops accepting and drains.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;
use tonic::service::Routes;
use tonic::transport::Server;
use tower_layer::Layer;

use crate::config::ServeArgs;
use crate::connections::{ConnectionLimits, FIRST_BYTES_TIMEOUT, Guarded};
use crate::domain::conduct::ConductModel;
use crate::grpc::auth::{self, ApiKeys};
use crate::grpc::{self, Limits, Triage, pb::triage_server::TriageServer};
use crate::http::bodies::BodyLimits;
use crate::http::console;
use crate::http::hosts::{AllowedHosts, AllowedHostsLayer};
use crate::http::json::JsonApi;
use crate::infer::{Pipeline, PipelineConfig};
use crate::metrics as m;
use crate::shutdown::CancellationToken;

/// Texts of the warm-up batch: short and long, several scripts.
const WARM_UP: &[&str] = &[
    "Hello, I need help with my order.",
    "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!",
    "אני מחכה כבר שעה על הקו",
    "Ich warte seit zwei Wochen auf eine Antwort und niemand ruft zurück, obwohl mir das mehrfach versprochen wurde.",
];

/// HTTP/2 keepalive: a ping after this long without a frame from the peer (at most a third of
/// the idle timeout, so a live client's answers keep its connection reading) …
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// … and the connection closed if the answer takes longer than this.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 streams one connection may have open at once (h2's default is 200; each may hold
/// a message being received).
const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// HTTP/2 flow control: what a client may send on a stream ahead of what the handler has read.
/// h2 closes a connection whose buffered small DATA frames exceed a budget of half the
/// connection window; with hyper's 1 MiB stream window, one `Converse` stream of short turns
/// far ahead of inference exhausted it at ~3,200 turns and took every call on the connection
/// down. With 64 KiB a stream waits alone after ~600 such turns; the connection's budget holds
/// about ten of them.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// Health and reflection requests are a service name or a file name: a few bytes.
const SMALL_MESSAGE_BYTES: usize = 16 * 1024;

/// The metrics port: a few scrapers, each request done in milliseconds.
const METRICS_CONNECTIONS: ConnectionLimits = ConnectionLimits { listener: "metrics", max_connections: 32, first: Duration::from_secs(30), idle: None };

pub fn pipeline_config(args: &ServeArgs) -> PipelineConfig {
    args.batching.pipeline_config(args.max_in_flight, args.tokenizer_workers, Duration::from_millis(args.max_wait_ms))
}

/// Serves until `shutdown` completes, then drains in-flight work. Returns an error when the
/// policy or the model cannot be loaded (the server stops again at once).
pub async fn run(
    args: &ServeArgs,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let policy = Arc::new(crate::domain::policy::Policy::load_or_embedded(args.policy.policy.as_deref())?);
    let handle = m::install();
    metrics::gauge!(m::READY).set(0.0);
    if let Some(address) = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()? {
        // The bound address, not the asked one: `--metrics-listen 127.0.0.1:0` picks a free port.
        tracing::info!(%address, "metrics at http://{address}/metrics");
    }
    // Aborted when `run` returns, on every path (a bad TLS file or a model that fails to load
    // included): a library caller (the tests, the Python package) must not keep a stray listener.
    let _metrics_task =
        metrics_listener.map(|l| AbortOnDropHandle::new(tokio::spawn(crate::http::metrics::serve(Guarded::new(l, METRICS_CONNECTIONS), handle))));

    let (health, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(SMALL_MESSAGE_BYTES);
    health.set_not_serving::<TriageServer<Triage>>().await;
    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?
        .max_decoding_message_size(SMALL_MESSAGE_BYTES);

    let address = listener.local_addr()?;
    let tls_files =
        auth::TlsFiles { cert: args.tls_cert.as_deref(), key: args.tls_key.as_deref(), client_ca: args.tls_client_ca.as_deref(), insecure: args.insecure };
    let tls = auth::tls_config(tls_files, address)?;
    let api_keys = match &args.api_keys {
        Some(path) => ApiKeys::load(path)?,
        None => ApiKeys::default(),
    };
    let pipeline_slot: Arc<OnceLock<Pipeline>> = Arc::new(OnceLock::new());
    let limits = Limits {
        max_message_bytes: args.max_message_bytes,
        max_streams: args.max_streams as usize,
        stream_idle_timeout: Duration::from_secs(args.stream_idle_timeout_s),
        max_streams_per_client: match args.max_streams_per_key {
            Some(most) => Some(most as usize),
            None if api_keys.clients() > 1 => Some((args.max_streams as usize * 3 / 4).max(1)),
            None => None,
        },
    };
    let stopping = CancellationToken::new();
    let handlers = Arc::new(Triage::new(Arc::clone(&pipeline_slot), Arc::clone(&policy), limits, stopping.clone()));
    let json_api = JsonApi {
        triage: Arc::clone(&handlers),
        keys: api_keys.clone(),
        scheme: if args.tls_cert.is_some() { "https" } else { "http" },
        max_body: args.max_message_bytes,
    };
    let triage = TriageServer::from_arc(handlers)
        .max_decoding_message_size(args.max_message_bytes)
        .max_encoding_message_size(args.max_message_bytes.max(16 * 1024 * 1024));

    // Shutdown comes from the caller or from a failed start-up.
    let (abort_tx, abort_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_health = health.clone();
    let drain_started = stopping.clone();
    let shutdown_signal = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = abort_rx => {}
        }
        tracing::info!("shutting down: refusing new work, draining in-flight requests");
        drain_started.cancel();
        drain_health.set_not_serving::<TriageServer<Triage>>().await;
        drain_health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    };
    let drain_timeout = Duration::from_secs(args.drain_timeout_s);
    // HTTP/1.1 for the JSON API's clients and the console's gRPC-web; gRPC itself is HTTP/2.
    let idle = Duration::from_secs(args.connection_idle_timeout_s);
    let mut builder = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE_EVERY.min(idle / 3)))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .layer(AllowedHostsLayer(AllowedHosts::for_listener(address, &args.allowed_hosts)))
        .layer(BodyLimits::new(args.max_receiving_bytes as usize, Duration::from_secs(args.request_read_timeout_s)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("configuring TLS")?;
    }
    let (secure, keyed) = (args.tls_cert.is_some(), api_keys.is_enabled());
    let triage = tonic::service::interceptor::InterceptedService::new(triage, move |request| api_keys.check(request));
    let (triage, triage_web) = if args.console { (None, Some(tonic_web::GrpcWebLayer::new().layer(triage))) } else { (Some(triage), None) };
    let connections = ConnectionLimits { listener: "grpc", max_connections: args.max_connections as usize, first: FIRST_BYTES_TIMEOUT, idle: Some(idle) };
    let incoming = Guarded::new(listener, connections).into_stream();
    // The HTTP routes first: tonic adds its services to the same axum router.
    let http_routes = Routes::from(crate::http::routes::router(json_api, args.console));
    let mut server = tokio::spawn(
        builder
            .add_routes(http_routes)
            .add_service(health_service)
            .add_service(reflection)
            .add_optional_service(triage)
            .add_optional_service(triage_web)
            .serve_with_incoming_shutdown(incoming, shutdown_signal),
    );
    tracing::info!(%address, tls = secure, mutual_tls = args.tls_client_ca.is_some(), api_keys = keyed, console = args.console, "listening (NOT_SERVING until the model is warm)");
    if args.console {
        let scheme = if secure { "https" } else { "http" };
        tracing::info!("agent console at {scheme}://{address}{}", console::PATH);
    }

    let model = args.model.clone();
    let config = pipeline_config(args);
    let loading = tokio::task::spawn_blocking(move || -> anyhow::Result<Pipeline> {
        let started = Instant::now();
        let classifier = crate::model::Classifier::load_from(&model.base_dir(), &model.models, model.precision()).context("loading the model")?;
        let conduct = ConductModel::embedded(&classifier.extractor).context("embedding the agent-conduct examples")?;
        let kernel = classifier.extractor.precision.kernel();
        let pipeline = Pipeline::start(Arc::new(classifier), Arc::new(conduct), config);
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, kernel, "model loaded");
        Ok(pipeline)
    })
    .await;
    let loaded = loading.unwrap_or_else(|panic| Err(anyhow::anyhow!("the model loader panicked: {panic}")));
    let pipeline = match loaded {
        Ok(p) => p,
        Err(e) => {
            let _ = abort_tx.send(());
            let _ = server.await;
            return Err(e);
        }
    };
    let warm_started = Instant::now();
    let warmed = async {
        let admitted = pipeline.admit_wait().await?;
        pipeline.score(&admitted, WARM_UP, None).await.map(drop)
    };
    if let Err(e) = warmed.await {
        // Stop the listener before returning, as when loading fails.
        let _ = abort_tx.send(());
        let _ = server.await;
        return Err(anyhow::Error::new(e).context("warming up the model"));
    }
    tracing::info!(elapsed_ms = warm_started.elapsed().as_millis() as u64, "warm-up done");
    crate::heap::release_free_heap();
    let _ = pipeline_slot.set(pipeline);
    metrics::gauge!(m::READY).set(1.0);
    health.set_serving::<TriageServer<Triage>>().await;
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    tracing::info!("SERVING");

    // The drain ends when the last connection closes, or at the deadline: connections still
    // open then (a silent peer, a half-sent call) are dropped with the server task.
    let deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(drain_timeout).await;
    };
    let result = tokio::select! {
        finished = &mut server => finished.context("the server task panicked")?,
        () = deadline => {
            server.abort();
            tracing::warn!(drain_timeout_s = drain_timeout.as_secs(), "the drain deadline passed: closing the connections still open");
            Ok(())
        }
    };
    drop(abort_tx);
    result.context("serving gRPC")
}
