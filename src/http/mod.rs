//! The HTTP adapter: the Prometheus endpoint and the agent console's static page.

pub mod console;
pub mod metrics;
