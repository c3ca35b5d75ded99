//! The model's errors, in one file that imports nothing of the crate: the core's `Error` wraps
//! `ModelError` without depending on the model's code (so the import levels stay few), and each
//! file of `model` re-exports the errors it raises.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path} is missing: run `make setup` (models/fetch.sh) to fetch the model files")]
    Missing { path: String },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Adapters(#[from] AdapterError),
    #[error(transparent)]
    Spans(#[from] SpanHeadError),
    /// `--precision int8` asked of a CPU without the instructions its kernels use.
    #[error("int8 needs a CPU with AVX-512 VNNI, and this one has none: use --precision f32 (or auto)")]
    NoInt8,
    /// The int8 weights replace the f32 ones, so the f32 path cannot be restored in place.
    #[error("an int8 encoder cannot go back to f32; load it again")]
    NoWayBackToF32,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot open model blob {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("not an E5S1 model blob (magic bytes are {0:?})")]
    BadMagic([u8; 4]),
    #[error("model blob is truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated { what: String, start: usize, end: usize, len: usize },
    #[error("model blob header is invalid: {0}")]
    BadHeader(String),
    #[error("model blob tensor `{name}` is invalid: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("model blob has no tensor `{0}`")]
    MissingTensor(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("model shape mismatch: {0}")]
    Shape(String),
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("sequence of {len} tokens exceeds the {max} positions of the model")]
    TooLong { len: usize, max: usize },
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("head file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("head is invalid: {0}")]
    Invalid(String),
}

/// Why a folder's adapters could not be merged or read; each keeps its cause, where there is
/// one, as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapters: reading {}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("adapters: {} is not valid adapter settings", .path.display())]
    Settings { path: PathBuf, source: serde_json::Error },
    #[error("adapters: {}: rank must be at least 1", .path.display())]
    Rank { path: PathBuf },
    #[error("adapters: reading the tensors of {}", .path.display())]
    Tensors { path: PathBuf, source: candle_core::Error },
    #[error("adapters: l{layer}.{projection}.{part} is missing")]
    Missing { layer: usize, projection: &'static str, part: &'static str },
    #[error("adapters: l{layer}.{projection}: B·A")]
    Product { layer: usize, projection: &'static str, source: candle_core::Error },
    #[error("adapters: merging into l{layer}.{projection}")]
    Merge { layer: usize, projection: &'static str, source: EncoderError },
}

/// Why a span head cannot be used; each keeps its cause, where there is one, as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum SpanHeadError {
    #[error("span head: reading {}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("span head: {} is not a span head", .path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("span head: {}: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: &'static str },
    #[error("span head: expects {expects} features per token, the encoder gives {gives}")]
    Width { expects: usize, gives: usize },
}
