//! The HTTP adapter: the Prometheus endpoint, the agent console's static page, and the
//! HTTP/JSON API (calmline's unary RPCs and the Perspective drop-in) on the gRPC listener.

pub mod bodies;
pub mod console;
pub mod error;
pub mod hosts;
pub mod json;
pub mod metrics;
pub mod perspective;
pub mod routes;
