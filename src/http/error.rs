//! Errors of the HTTP/JSON API in the shape Google's JSON APIs use (and so Perspective's
//! clients parse): `{"error": {"code": <HTTP status>, "message": …, "status": <gRPC code name>,
//! "details": […]}}`, with the HTTP status Google maps each gRPC code to
//! (<https://cloud.google.com/apis/design/errors#handling_errors>).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;

use crate::grpc::status::code_label;

/// One refusal: its gRPC code, the message for the client, and Perspective's `errorType` where
/// Perspective names the case (e.g. `COMMENT_EMPTY`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub error_type: Option<&'static str>,
    /// The HTTP status when it is not the code's usual one (413 for a body over the limit).
    pub http: Option<StatusCode>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), error_type: None, http: None }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidArgument, message)
    }

    /// Tags the error with Perspective's name for the case.
    pub fn typed(mut self, error_type: &'static str) -> ApiError {
        self.error_type = Some(error_type);
        self
    }

    pub fn with_http(mut self, status: StatusCode) -> ApiError {
        self.http = Some(status);
        self
    }

    pub fn http_status(&self) -> StatusCode {
        self.http.unwrap_or_else(|| http_status(self.code))
    }
}

/// Google's HTTP status for each gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // 499 "client closed request": not in the http crate's table, but a valid status.
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status code"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError::new(status.code(), status.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let details: Vec<serde_json::Value> =
            self.error_type.map(|t| json!({"@type": "type.googleapis.com/google.commentanalyzer.v1alpha1.Error", "errorType": t})).into_iter().collect();
        let body = json!({"error": {"code": status.as_u16(), "message": self.message, "status": code_label(self.code), "details": details}});
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_gets_googles_status_and_shape() {
        for (code, http) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
        let response = ApiError::invalid("Comment must be non-empty.").typed("COMMENT_EMPTY").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
