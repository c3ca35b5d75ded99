//! calmline: detects frustration, rudeness and abuse in contact-center conversations and tells
//! the agent what to do next.
//!
//! The core (`model`, `infer`, `policy`, `conversation`, `analyze`, `train`) knows nothing of
//! tonic; `grpc` and the CLI in `main.rs` are thin adapters over it, so the same pipeline serves
//! the RPCs, the batch commands and the evaluator. `console` is the browser page `serve --console`
//! adds, a client of the same RPCs over gRPC-web.

pub mod access;
pub mod analyze;
pub mod conduct;
pub mod console;
pub mod config;
pub mod conversation;
pub mod error;
pub mod fuzzing;
pub mod grpc;
pub mod infer;
pub mod labels;
pub mod lang;
pub mod lines;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod qa;
pub mod server;
pub mod train;

pub use error::Error;
pub use server::run;
