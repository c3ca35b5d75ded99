//! The one error type of calmline's core. The gRPC layer maps each variant to a status code
//! (`grpc::status`), exhaustively.

use crate::model::error::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's input cannot be analysed (empty, oversized, malformed, unknown enum …).
    #[error("invalid input: {0}")]
    Validation(String),
    /// Admission is full: refused at once rather than queued without bound.
    #[error("server is at capacity ({0} requests in flight); retry with backoff")]
    Overloaded(usize),
    /// The caller's deadline passed before the work was done.
    #[error("deadline exceeded before the turn was scored")]
    DeadlineExceeded,
    /// The model is still being loaded and warmed up.
    #[error("the model is still loading; retry shortly")]
    Loading,
    /// The pipeline has stopped.
    #[error("not ready: {0}")]
    Unavailable(String),
    /// The drain has begun: a stream waiting for its next message ends with this, so that the
    /// client reconnects to another instance.
    #[error("server shutting down; reconnect")]
    ShuttingDown,
    /// A limit on open streams is reached: refused at once, like `Overloaded`.
    #[error("{0}; retry later")]
    StreamsFull(StreamLimit),
    /// A stream's client sent nothing for the idle limit.
    #[error("nothing received for {} s: the stream is closed (idle limit)", .0.as_secs())]
    StreamIdle(std::time::Duration),
    /// The model could not be loaded or could not run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The encoder failed on a batch: every text in it gets this; the cause is in the server's
    /// log only (it can name internals no client should see).
    #[error("inference failed; see the server log")]
    BatchFailed,
}

/// Which limit on open streams refused one more.
#[derive(Debug, thiserror::Error)]
pub enum StreamLimit {
    #[error("{0} streams are open, the most this server takes")]
    Server(usize),
    #[error("the key {key:?} has {most} streams open, the most one client may hold")]
    Client { key: String, most: usize },
}

impl Error {
    /// The same error with a validation message placed: "turn 3: text is empty".
    pub fn at(self, place: &str) -> Error {
        match self {
            Error::Validation(message) => Error::Validation(format!("{place}: {message}")),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_validation_message_is_placed_once_and_other_errors_pass_through() {
        let placed = Error::Validation("text is empty".into()).at("turn 3");
        assert_eq!(placed.to_string(), "invalid input: turn 3: text is empty");
        assert!(matches!(Error::DeadlineExceeded.at("turn 3"), Error::DeadlineExceeded));
    }
}
