//! The HTTP/JSON API's routes on the gRPC listener (`http::json` for calmline's own RPCs,
//! `http::perspective` for the Perspective drop-in); tonic adds its gRPC services to the same
//! router.

use axum::Router;
use axum::routing::{get, post};

use super::json::{self, JsonApi};
use super::perspective;

/// The routes, ready for tonic to add its services to (`Routes::from`).
pub fn router(api: JsonApi) -> Router {
    Router::new()
        .route("/v1/analyze", post(json::analyze))
        .route("/v1/info", get(json::info).post(json::info))
        .route(perspective::ANALYZE_PATH, post(perspective::analyze))
        .route(perspective::DISCOVERY_PATH, get(perspective::discovery))
        .fallback(json::unknown_route)
        .with_state(api)
}
