//! The HTTP routes on the gRPC listener: the JSON API (`http::json` for calmline's own RPCs,
//! `http::perspective` for the Perspective drop-in) and, with `--console`, the agent console's
//! page (`http::console`); tonic adds its gRPC services to the same router.

use axum::Router;
use axum::routing::{get, post};

use super::json::{self, JsonApi};
use super::{console, perspective};

/// The routes, ready for tonic to add its services to (`Routes::from`).
pub fn router(api: JsonApi, with_console: bool) -> Router {
    let routes = if with_console { console::routes() } else { Router::new() };
    routes
        .route("/v1/analyze", post(json::analyze))
        .route("/v1/info", get(json::info).post(json::info))
        .route(perspective::ANALYZE_PATH, post(perspective::analyze))
        .route(perspective::DISCOVERY_PATH, get(perspective::discovery))
        .fallback(json::unknown_route)
        .with_state(api)
}
