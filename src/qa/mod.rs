//! QA batch scoring: transcript files in, reports out. The readers stream (one conversation in
//! memory at a time) and never stop at a bad record: it becomes an error with its line number.
//! Scoring goes through the service's own core (`Pipeline::score_transcript`); the
//! `calmline score` command that drives a run is `cli::score`.

pub mod output;
pub mod report;
pub mod scoring;
pub mod shard;
pub mod transcripts;
