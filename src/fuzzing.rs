//! The parsers that read untrusted bytes, as the fuzz targets (`fuzz/`) and their regression
//! test (`tests/it/fuzz_regressions.rs`) drive them: each must return errors, never panic, hang or
//! read out of bounds, whatever the input.

use crate::domain::policy::Policy;
use crate::model::blob::Blob;
use crate::qa::transcripts::{CsvReader, JsonlReader};

/// Transcript JSON lines: every record read, good or bad.
pub fn transcripts_jsonl(data: &[u8]) {
    for (_, transcript) in JsonlReader::new(data).flatten() {
        let _ = transcript.validate();
    }
}

/// Transcript CSV: every record read, good or bad.
pub fn transcripts_csv(data: &[u8]) {
    for (_, transcript) in CsvReader::new(data).flatten() {
        let _ = transcript.validate();
    }
}

/// A policy file.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse(text, "fuzz");
    }
}

/// The model blob's header, tokenizer section and tensor directory; then every tensor's bytes
/// and the first values of each (dequantised where Q4_0).
pub fn blob(data: &[u8]) {
    if let Ok(blob) = Blob::from_bytes(data.to_vec()) {
        let names: Vec<String> = blob.tensor_names().map(String::from).collect();
        for name in names {
            let _ = blob.raw(&name);
            let _ = blob.f32_prefix(&name, 64);
        }
    }
}
