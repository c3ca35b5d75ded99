//! Metric names in one place, their descriptions, and the Prometheus recorder (served by
//! `http::metrics`).
//!
//! Label values come from closed sets only (RPC names, status codes, stages, label names,
//! language codes from the detector's fixed list, actions): never customer text.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests by `rpc` and gRPC `code`.
pub const REQUESTS_TOTAL: &str = "calmline_requests_total";
/// End-to-end handling time by `rpc`.
pub const REQUEST_SECONDS: &str = "calmline_request_duration_seconds";
/// Time per text in each `stage`: queue, tokenize, inference, spans (flagged turns only).
pub const STAGE_SECONDS: &str = "calmline_stage_duration_seconds";
/// Windows (texts, or 512-token pieces of a long one) per encoder batch, within
/// `--max-batch-texts` and `--max-batch-tokens`.
pub const BATCH_SIZE: &str = "calmline_batch_size";
/// Texts waiting for a tokenizer worker.
pub const QUEUE_DEPTH: &str = "calmline_queue_depth";
/// Requests admitted and not yet answered.
pub const IN_FLIGHT: &str = "calmline_in_flight_requests";
/// Texts dropped from a batch because their caller had gone or their deadline had passed.
pub const DROPPED_TOTAL: &str = "calmline_dropped_texts_total";
/// Flagged labels on customer turns, by `label` and `language`.
pub const DETECTIONS_TOTAL: &str = "calmline_detections_total";
/// Guidance given, by `action`.
pub const GUIDANCE_TOTAL: &str = "calmline_guidance_total";
/// 1 once the model is loaded and warm.
pub const READY: &str = "calmline_ready";
/// Requests let in by an API key, by the key's name (never the key).
pub const AUTHENTICATED_TOTAL: &str = "calmline_authenticated_requests_total";
/// Requests refused for a missing or unknown API key, by reason.
pub const AUTH_FAILURES_TOTAL: &str = "calmline_auth_failures_total";

/// Connections open, by `listener` (grpc, metrics).
pub const OPEN_CONNECTIONS: &str = "calmline_open_connections";
/// Connections closed at once because the listener had its most, by `listener`.
pub const REFUSED_CONNECTIONS_TOTAL: &str = "calmline_refused_connections_total";

/// Every metric name, for documentation and tests.
pub const ALL: [&str; 14] = [
    REQUESTS_TOTAL,
    REQUEST_SECONDS,
    STAGE_SECONDS,
    BATCH_SIZE,
    QUEUE_DEPTH,
    IN_FLIGHT,
    DROPPED_TOTAL,
    DETECTIONS_TOTAL,
    GUIDANCE_TOTAL,
    READY,
    AUTHENTICATED_TOTAL,
    AUTH_FAILURES_TOTAL,
    OPEN_CONNECTIONS,
    REFUSED_CONNECTIONS_TOTAL,
];

/// The metrics only a service started with `--api-keys` records.
pub const WITH_API_KEYS: [&str; 2] = [AUTHENTICATED_TOTAL, AUTH_FAILURES_TOTAL];

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes))
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    // Unlabelled series exist from the start, so dashboards and alerts see zeros, not gaps.
    metrics::counter!(DROPPED_TOTAL).increment(0);
    metrics::gauge!(QUEUE_DEPTH).set(0.0);
    metrics::gauge!(IN_FLIGHT).set(0.0);
    describe_counter!(REQUESTS_TOTAL, Unit::Count, "gRPC requests by rpc and status code");
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "request handling time by rpc");
    describe_histogram!(STAGE_SECONDS, Unit::Seconds, "time per text in each pipeline stage");
    describe_histogram!(BATCH_SIZE, Unit::Count, "windows (texts or pieces of long ones) per encoder batch");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "texts waiting for a tokenizer worker");
    describe_gauge!(IN_FLIGHT, Unit::Count, "requests admitted and not yet answered");
    describe_counter!(DROPPED_TOTAL, Unit::Count, "texts dropped because the caller had gone or the deadline passed");
    describe_counter!(DETECTIONS_TOTAL, Unit::Count, "flagged labels on customer turns by label and language");
    describe_counter!(GUIDANCE_TOTAL, Unit::Count, "guidance given by action");
    describe_counter!(AUTHENTICATED_TOTAL, Unit::Count, "requests let in by an API key, by the key's name");
    describe_counter!(AUTH_FAILURES_TOTAL, Unit::Count, "requests refused for a missing or unknown API key, by reason");
    describe_gauge!(READY, Unit::Count, "1 once the model is loaded and warm");
    describe_gauge!(OPEN_CONNECTIONS, Unit::Count, "connections open, by listener");
    describe_counter!(REFUSED_CONNECTIONS_TOTAL, Unit::Count, "connections closed at once because the listener had its most, by listener");
}

/// A language code safe as a metric label: the detector's own codes pass, anything a client
/// sent as a hint that is not one of them becomes "other".
pub fn language_label(code: &str) -> &'static str {
    crate::domain::lang::KNOWN_CODES.iter().copied().find(|&c| c == code).unwrap_or("other")
}
