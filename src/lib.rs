//! calmline: detects frustration, rudeness and abuse in contact-center conversations and tells
//! the agent what to do next. The core (`model`, `policy`, `analyze`, `train`) knows nothing of
//! the command line or transport; `main.rs` is a thin adapter over it.

pub mod analyze;
pub mod config;
pub mod error;
pub mod labels;
pub mod lang;
pub mod model;
pub mod policy;
pub mod train;

pub use error::Error;
