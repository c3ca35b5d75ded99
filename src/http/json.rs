//! The HTTP/JSON API on the gRPC listener, for clients without gRPC: calmline's own unary RPCs
//! in the proto3 JSON mapping (`POST /v1/analyze`, `GET /v1/info`), and the Perspective
//! `comments:analyze` drop-in (`http::perspective`). Every route is a thin transcoder in front
//! of the same `Triage` handlers the gRPC clients reach, so validation, admission (429 when
//! full), deadlines, metrics and the no-text-in-logs rule are the same; only the key check is
//! done here, where the key may also come as Google's `?key=`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use super::error::ApiError;
use crate::grpc::Triage;
use crate::grpc::auth::{ApiKeys, Refusal, presented_key};
use crate::grpc::pb;
use crate::grpc::pb::triage_server::Triage as TriageRpc;

/// What every route shares.
#[derive(Clone)]
pub struct JsonApi {
    pub triage: Arc<Triage>,
    pub keys: ApiKeys,
    /// "https" when the listener speaks TLS: the discovery document names its own root URL.
    pub scheme: &'static str,
    /// Largest request body, in bytes (the gRPC message limit).
    pub max_body: usize,
}

/// The query parameters of a call, as name/value pairs.
pub type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// How a route answers a caller without a valid key.
#[derive(Debug, Clone, Copy)]
pub enum KeyErrors {
    /// calmline's own: 401 UNAUTHENTICATED, as on gRPC.
    Calmline,
    /// Google's: 403 for a missing key, 400 for a wrong one, with Google's messages.
    Google,
}

impl JsonApi {
    /// Lets the caller in by `?key=`, `authorization: Bearer` or `x-api-key`.
    pub fn check_key(&self, headers: &HeaderMap, params: &[(String, String)], errors: KeyErrors) -> Result<(), ApiError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let query_key = params.iter().find(|(name, _)| name == "key").map(|(_, value)| value.as_str());
        let presented = query_key.or_else(|| presented_key(get("authorization"), get("x-api-key")));
        self.keys.authenticate(presented).map(drop).map_err(|refusal| match (errors, refusal) {
            (KeyErrors::Calmline, Refusal::Missing) => {
                ApiError::new(Code::Unauthenticated, "an API key is required: send `?key=<key>`, `authorization: Bearer <key>` or `x-api-key: <key>`")
            }
            (KeyErrors::Calmline, Refusal::Unknown) => ApiError::new(Code::Unauthenticated, "unknown API key"),
            (KeyErrors::Google, Refusal::Missing) => ApiError::new(Code::PermissionDenied, "The request is missing a valid API key."),
            (KeyErrors::Google, Refusal::Unknown) => ApiError::invalid("API key not valid. Please pass a valid API key."),
        })
    }
}

/// The query parameters, or 400 when they are not `name=value` pairs.
pub fn params(params: Params) -> Result<Vec<(String, String)>, ApiError> {
    params.map(|Query(pairs)| pairs).map_err(|e| ApiError::invalid(format!("the query string is malformed: {}", e.body_text())))
}

/// The request body as JSON of type `T`: 413 over the size limit — at once when the declared
/// length says so, before a byte is read (a client that sent `Expect: 100-continue` never sends
/// it) — and 400 when malformed, with serde's message saying where.
pub async fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body, limit: usize) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(Code::OutOfRange, format!("the request body is over {limit} bytes, the most this server takes (--max-message-bytes)"))
            .with_http(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else if let Some(status) = status_in(&e) {
            // The server's own limits on bodies (`http::bodies`): the budget, the read deadline.
            ApiError::new(status.code(), status.message())
        } else {
            ApiError::invalid("the request body could not be read")
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// The gRPC status somewhere in an error's chain of sources.
fn status_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a tonic::Status> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(status) = e.downcast_ref::<tonic::Status>() {
            return Some(status);
        }
        source = e.source();
    }
    None
}

/// A gRPC request carrying the caller's deadline: Google's `X-Server-Timeout` header (seconds)
/// becomes `grpc-timeout`, which the handlers honour.
pub fn grpc_request<T>(message: T, headers: &HeaderMap) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers.get("x-server-timeout") {
        let seconds: f64 = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| ApiError::invalid("X-Server-Timeout must be a positive number of seconds"))?;
        let millis = (seconds * 1000.0).ceil().min(99_999_999.0) as u64;
        request.metadata_mut().insert("grpc-timeout", format!("{millis}m").parse().expect("digits and a unit are a valid header value"));
    }
    Ok(request)
}

/// A JSON answer (200).
pub fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a JSON response");
            ApiError::new(Code::Internal, "the response could not be encoded").into_response()
        }
    }
}

/// `POST /v1/analyze`: an `AnalyzeRequest` in, an `AnalyzeResponse` out (proto3 JSON mapping).
pub async fn analyze(State(api): State<JsonApi>, headers: HeaderMap, query: Params, body: Body) -> Response {
    let result = async {
        api.check_key(&headers, &params(query)?, KeyErrors::Calmline)?;
        let request: pb::AnalyzeRequest = json_body(&headers, body, api.max_body).await?;
        let response = TriageRpc::analyze(&*api.triage, grpc_request(request, &headers)?).await?;
        Ok::<_, ApiError>(json_response(response.get_ref()))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/info`: the `GetInfoResponse` (labels, languages, versions, limits).
pub async fn info(State(api): State<JsonApi>, headers: HeaderMap, query: Params) -> Response {
    let result = async {
        api.check_key(&headers, &params(query)?, KeyErrors::Calmline)?;
        let response = TriageRpc::get_info(&*api.triage, tonic::Request::new(pb::GetInfoRequest {})).await?;
        Ok::<_, ApiError>(json_response(response.get_ref()))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Anything else: a gRPC client gets UNIMPLEMENTED as gRPC (as tonic's own fallback answers),
/// anyone else a JSON 404.
pub async fn unknown_route(request: Request<Body>) -> Response {
    let grpc = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http::<Body>();
    }
    let method = request.method();
    let message = if method == Method::GET || method == Method::POST {
        format!("no such method: {method} {}", request.uri().path())
    } else {
        format!("{method} is not served here")
    };
    ApiError::new(Code::NotFound, message).into_response()
}
