//! The one mapping from calmline's errors to gRPC statuses: exhaustive, no catch-all arm, so a
//! new error kind cannot reach a client without a decision about its code.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Validation(_) => Status::invalid_argument(e.to_string()),
            Error::Overloaded(_) | Error::StreamsFull(_) => Status::resource_exhausted(e.to_string()),
            Error::DeadlineExceeded | Error::StreamIdle(_) => Status::deadline_exceeded(e.to_string()),
            Error::Loading | Error::Unavailable(_) | Error::ShuttingDown => Status::unavailable(e.to_string()),
            // Internal details stay in the server's log; the client gets the kind only.
            Error::Model(_) | Error::BatchFailed => Status::internal("inference failed; see the server log"),
        }
    }
}

/// The status code's name as a metric label (closed set).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The caller's deadline from the `grpc-timeout` header ("<digits><H|M|S|m|u|n>"), if any,
/// brought forward by a small margin (a tenth, at least 5 ms, at most half): tonic's transport
/// enforces the same header and answers CANCELLED when it fires; finishing first lets the
/// caller get the status gRPC specifies, DEADLINE_EXCEEDED.
pub fn deadline(metadata: &tonic::metadata::MetadataMap, start: std::time::Instant) -> Option<std::time::Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => std::time::Duration::from_secs(amount.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(amount.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(amount),
        "m" => std::time::Duration::from_millis(amount),
        "u" => std::time::Duration::from_micros(amount),
        "n" => std::time::Duration::from_nanos(amount),
        _ => return None,
    };
    let margin = (timeout / 10).max(std::time::Duration::from_millis(5)).min(timeout / 2);
    start.checked_add(timeout - margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamLimit;

    #[test]
    fn internal_failures_reach_the_client_as_a_fixed_message() {
        let detail = crate::model::ModelError::from(crate::model::adapters::AdapterError::Rank { path: "/srv/secret/models/adapters.json".into() });
        for e in [Error::Model(detail), Error::BatchFailed] {
            let status = Status::from(e);
            assert_eq!(status.code(), Code::Internal);
            assert_eq!(status.message(), "inference failed; see the server log");
        }
    }

    #[test]
    fn stream_limits_loading_and_idle_streams_have_their_codes() {
        let server = Status::from(Error::StreamsFull(StreamLimit::Server(64)));
        assert_eq!(server.code(), Code::ResourceExhausted);
        assert_eq!(server.message(), "64 streams are open, the most this server takes; retry later");
        let client = Status::from(Error::StreamsFull(StreamLimit::Client { key: "qa-team".into(), most: 4 }));
        assert_eq!(client.code(), Code::ResourceExhausted);
        assert_eq!(client.message(), "the key \"qa-team\" has 4 streams open, the most one client may hold; retry later");
        let loading = Status::from(Error::Loading);
        assert_eq!((loading.code(), loading.message()), (Code::Unavailable, "the model is still loading; retry shortly"));
        let idle = Status::from(Error::StreamIdle(std::time::Duration::from_secs(300)));
        assert_eq!(idle.code(), Code::DeadlineExceeded);
        assert_eq!(idle.message(), "nothing received for 300 s: the stream is closed (idle limit)");
    }

    #[test]
    fn grpc_timeout_header_is_parsed() {
        let start = std::time::Instant::now();
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(deadline(&md, start), None);
        md.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(deadline(&md, start), Some(start + std::time::Duration::from_millis(225)));
        md.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(deadline(&md, start), Some(start + std::time::Duration::from_millis(1800)));
        md.insert("grpc-timeout", "20m".parse().unwrap());
        assert_eq!(deadline(&md, start), Some(start + std::time::Duration::from_millis(15)));
        md.insert("grpc-timeout", "2m".parse().unwrap());
        assert_eq!(deadline(&md, start), Some(start + std::time::Duration::from_millis(1)));
        md.insert("grpc-timeout", "12X".parse().unwrap());
        assert_eq!(deadline(&md, start), None);
    }
}
