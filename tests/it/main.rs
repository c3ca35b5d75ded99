//! Every integration test, in one test binary: twenty of them each linked the whole service at
//! opt-level 3, which cost a fresh `make test` minutes of compiling. One module per area, named
//! as before: `cargo test --test it behaviour::` runs what `--test behaviour` did.

mod common;

mod accept;
mod access;
mod analyze;
mod behaviour;
mod blob;
mod conduct;
mod console;
mod drain;
mod fairness;
mod faults;
mod fuzz_regressions;
mod golden;
mod interop;
mod layering;
mod limits;
mod loadgen;
mod memory;
mod perspective;
mod privacy;
mod score;
mod service;
mod tokenizer;
