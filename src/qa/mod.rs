//! QA batch scoring: transcript files in, reports out. The readers stream (one conversation in
//! memory at a time) and never stop at a bad record: it becomes an error with its line number.

pub mod transcripts;
