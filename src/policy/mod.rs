//! From label scores to what matters to people: severity now, the guidance ladder next.

pub mod severity;

pub use severity::Severity;
