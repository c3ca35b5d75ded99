//! The agent console (`calmline serve --console`): a small static page built into the binary and
//! served under `/console/` on the gRPC port, where it calls the service over gRPC-web. One
//! origin, so no CORS; nothing is fetched from elsewhere, so it works offline. The message
//! schema it encodes with is generated from the .proto by `build.rs`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tonic::body::Body;
use tonic::server::NamedService;

/// Where the console lives: `http://<listen>/console` sends the browser on to the page.
pub const PATH: &str = "/console";
const PAGE: &str = "/console/index.html";

/// The page's files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../console/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../console/console.css")),
    // Named by the page, so the browser asks for it here and not for a /favicon.ico nobody serves.
    ("favicon.svg", "image/svg+xml", include_str!("../../console/favicon.svg")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../console/app.js")),
    ("grpc-web.js", "text/javascript; charset=utf-8", include_str!("../../console/grpc-web.js")),
    ("protobuf.js", "text/javascript; charset=utf-8", include_str!("../../console/protobuf.js")),
    ("i18n.js", "text/javascript; charset=utf-8", include_str!("../../console/i18n.js")),
    ("transcripts.js", "text/javascript; charset=utf-8", include_str!("../../console/transcripts.js")),
    ("schema.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/console_schema.js"))),
];

/// Serves [`ASSETS`]; routed by tonic under `/console/*` (its [`NamedService::NAME`]).
#[derive(Debug, Clone, Default)]
pub struct ConsoleAssets;

impl NamedService for ConsoleAssets {
    const NAME: &'static str = "console";
}

impl tower_service::Service<Request<Body>> for ConsoleAssets {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        ready(Ok(respond(request.method(), request.uri().path())))
    }
}

fn respond(method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "the console is read with GET");
    }
    let Some(name) = path.strip_prefix(PATH).and_then(|rest| rest.strip_prefix('/')).filter(|name| !name.is_empty()) else {
        return to_the_page();
    };
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, content)) => {
            let mut response = Response::new(Body::new(Full::new(Bytes::from_static(content.as_bytes()))));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // The page is built into this binary: a new binary may bring a new page.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
            );
            response
        }
        None => plain(StatusCode::NOT_FOUND, "no such file in the console"),
    }
}

fn to_the_page() -> Response<Body> {
    let mut response = plain(StatusCode::TEMPORARY_REDIRECT, "the console is at /console/index.html");
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(PAGE));
    response
}

/// A layer in front of the router: refuses a request naming a host the service does not answer
/// for (`http::hosts`, against DNS rebinding), and sends `/`, `/console` and `/console/` to the
/// page (tonic's router only matches `/console/<file>`); with `enabled` false the rest passes
/// through.
#[derive(Debug, Clone)]
pub struct EntryLayer {
    pub enabled: bool,
    /// The hosts the HTTP side answers for (`http::hosts`).
    pub hosts: crate::http::hosts::AllowedHosts,
}

impl<S> tower_layer::Layer<S> for EntryLayer {
    type Service = Entry<S>;

    fn layer(&self, inner: S) -> Entry<S> {
        Entry { inner, enabled: self.enabled, hosts: self.hosts.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Entry<S> {
    inner: S,
    enabled: bool,
    hosts: crate::http::hosts::AllowedHosts,
}

impl<S, ResBody> tower_service::Service<Request<Body>> for Entry<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !self.hosts.admits(&request) {
            return Box::pin(ready(Ok(plain(StatusCode::FORBIDDEN, "calmline does not answer for this Host; name it with --allowed-host\n"))));
        }
        if self.enabled && request.method() == Method::GET && matches!(request.uri().path(), "/" | "/console" | "/console/") {
            return Box::pin(ready(Ok(to_the_page())));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map(|response| response.map(Body::new)) })
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(message.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_every_asset_with_its_type_and_refuses_the_rest() {
        for (name, content_type, _) in ASSETS {
            let response = respond(&Method::GET, &format!("{PATH}/{name}"));
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *content_type);
        }
        let bare = respond(&Method::GET, "/console/");
        assert_eq!(bare.status(), StatusCode::TEMPORARY_REDIRECT, "the folder sends the browser to the page");
        assert_eq!(bare.headers()[header::LOCATION], PAGE);
        assert_eq!(respond(&Method::GET, "/console/../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(respond(&Method::GET, "/console/nothing.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(respond(&Method::POST, "/console/index.html").status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_schema_is_generated_from_the_contract() {
        let schema = ASSETS.iter().find(|(name, _, _)| *name == "schema.js").unwrap().2;
        for expected in [r#"".calmline.v1.AnalyzeRequest""#, r#""calmline.v1.Triage/Analyze""#, r#""ACTION_SET_BOUNDARY": 5"#] {
            assert!(schema.contains(expected), "{expected} missing from the generated schema");
        }
    }
}
