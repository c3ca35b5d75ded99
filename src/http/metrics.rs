//! The Prometheus endpoint: `GET /metrics` (and `/`) on its own listener, so it can stay internal.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::connections::Guarded;

/// How often the recorder's histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Serves the metrics until this future is dropped (the server aborts its task on shutdown);
/// the recorder's upkeep stops with it.
pub async fn serve(listener: Guarded, handle: PrometheusHandle) {
    let upkeep = handle.clone();
    let _upkeep = AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    }));
    let app = Router::new().route("/metrics", get(render)).route("/", get(render)).with_state(handle);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

/// Aborts a background task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
