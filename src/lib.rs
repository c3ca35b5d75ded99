//! calmline: detects frustration, rudeness and abuse in contact-center conversations and tells
//! the agent what to do next.
//!
//! The layers, bottom up: `domain` (labels, languages, texts, conversations, policy, conduct) and
//! `model` (encoder, tokenizer, head) know nothing of transports or the command line; `infer`
//! runs the model for many callers at once; `qa` reads and reports transcripts; `train` makes
//! the model's files. `grpc`, `http` and `cli` are the only adapters; `server` puts the service
//! together. `config` is the command line as data. Tests check these rules (`tests/it/layering.rs`).

pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod fuzzing;
pub mod grpc;
pub mod heap;
pub mod http;
pub mod infer;
pub mod lines;
pub mod metrics;
pub mod model;
pub mod qa;
pub mod server;
pub mod shutdown;
pub mod train;

pub use error::Error;
pub use server::run;
