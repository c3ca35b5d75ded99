//! The one error type of calmline's core.

use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's input cannot be analysed (empty, malformed, wrong encoding ...).
    #[error("invalid input: {0}")]
    Validation(String),
    /// The model could not be loaded or could not run.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
