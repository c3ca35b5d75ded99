//! Which `Host` the gRPC port's HTTP side answers for: the console, gRPC-web and the JSON API.
//!
//! DNS rebinding: a web page on `attacker.example` re-points its own name at 127.0.0.1, and the
//! victim's browser, thinking it talks to the page's own origin, drives a console listening on
//! loopback — no CORS check stands in the way. The browser still sends `Host:
//! attacker.example:50051`, so a service on loopback answers only for its own address, names of
//! loopback, and the names given with `--allowed-host`. On any other address the names a
//! Service or an Ingress gives it cannot be known, so every host is answered unless names are
//! given. Native gRPC (HTTP/2, `application/grpc`) is left alone: a browser cannot send it.

use std::future::{Future, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use tonic::body::Body;

/// The hosts answered for; `None`: any.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Option<Vec<String>>);

impl AllowedHosts {
    /// For a service bound to `addr`, with the names given by `--allowed-host`.
    pub fn for_listener(addr: SocketAddr, given: &[String]) -> AllowedHosts {
        let port = addr.port();
        let mut names: Vec<String> = given.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        if addr.ip().is_loopback() {
            names.extend([format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]);
        } else if names.is_empty() {
            return AllowedHosts(None);
        }
        names.push(match addr {
            SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
        });
        // A browser leaves the default port out of `Host`.
        if port == 80 || port == 443 {
            let suffix = format!(":{port}");
            let bare: Vec<String> = names.iter().filter_map(|n| n.strip_suffix(&suffix).map(str::to_string)).collect();
            names.extend(bare);
        }
        names.sort();
        names.dedup();
        AllowedHosts(Some(names))
    }

    /// Whether `request` may be answered: native gRPC always; anything else only for an allowed
    /// host (`Host`, or the HTTP/2 authority).
    pub fn admits<B>(&self, request: &Request<B>) -> bool {
        let Some(names) = &self.0 else { return true };
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if request.version() == Version::HTTP_2 && content_type.starts_with("application/grpc") && !content_type.starts_with("application/grpc-web") {
            return true;
        }
        let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| request.uri().authority().map(|a| a.as_str()));
        host.is_some_and(|h| names.iter().any(|n| n.eq_ignore_ascii_case(h.trim())))
    }
}

/// A layer in front of everything on the gRPC port: refuses a request naming a host the service
/// does not answer for (against DNS rebinding, above) with 403 before any route sees it.
#[derive(Debug, Clone)]
pub struct AllowedHostsLayer(pub AllowedHosts);

impl<S> tower_layer::Layer<S> for AllowedHostsLayer {
    type Service = HostCheck<S>;

    fn layer(&self, inner: S) -> HostCheck<S> {
        HostCheck { inner, hosts: self.0.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct HostCheck<S> {
    inner: S,
    hosts: AllowedHosts,
}

impl<S, ResBody> tower_service::Service<Request<Body>> for HostCheck<S>
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
            let message = "calmline does not answer for this Host; name it with --allowed-host\n";
            let mut refusal = Response::new(Body::new(Full::new(Bytes::from_static(message.as_bytes()))));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            refusal.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            return Box::pin(ready(Ok(refusal)));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map(|response| response.map(Body::new)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, host: Option<&str>, content_type: &str) -> Request<()> {
        let mut builder = Request::builder().version(version).uri("/console/index.html").header(header::CONTENT_TYPE, content_type);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_service_on_loopback_answers_only_for_its_own_names() {
        let hosts = AllowedHosts::for_listener("127.0.0.1:50051".parse().unwrap(), &["Console.Example:8443".into()]);
        for host in ["127.0.0.1:50051", "localhost:50051", "LOCALHOST:50051", "[::1]:50051", "console.example:8443"] {
            assert!(hosts.admits(&request(Version::HTTP_11, Some(host), "text/html")), "{host}");
        }
        for host in [Some("attacker.example:50051"), Some("localhost:8080"), Some("127.0.0.1"), None] {
            assert!(!hosts.admits(&request(Version::HTTP_11, host, "application/grpc-web+proto")), "{host:?}");
        }
        // Native gRPC carries its own authority, and no browser can send it.
        assert!(hosts.admits(&request(Version::HTTP_2, Some("anything:1"), "application/grpc")));
        assert!(!hosts.admits(&request(Version::HTTP_2, Some("attacker.example:50051"), "application/grpc-web+proto")));
    }

    #[test]
    fn a_service_on_another_address_answers_any_host_unless_names_are_given() {
        let open = AllowedHosts::for_listener("0.0.0.0:50051".parse().unwrap(), &[]);
        assert!(open.admits(&request(Version::HTTP_11, Some("calmline.svc.cluster.local:50051"), "application/json")));
        let named = AllowedHosts::for_listener("0.0.0.0:80".parse().unwrap(), &["calmline.example".into()]);
        assert!(named.admits(&request(Version::HTTP_11, Some("calmline.example"), "application/json")));
        assert!(!named.admits(&request(Version::HTTP_11, Some("attacker.example"), "application/json")));
    }
}
