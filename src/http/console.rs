//! The agent console (`calmline serve --console`): a small static page built into the binary and
//! served under `/console/` on the gRPC port (axum routes beside the JSON API's), where it calls
//! the service over gRPC-web. One
//! origin, so no CORS; nothing is fetched from elsewhere, so it works offline. The message
//! schema it encodes with is generated from the .proto by `build.rs`.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

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

/// The console's routes, merged into the HTTP router with `--console`: its files under
/// `/console/`, and `/`, `/console` and `/console/` sending the browser to the page. GET (and
/// HEAD, which axum answers from it) only; other methods get 405.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(to_the_page)).route(PATH, get(to_the_page)).route("/console/", get(to_the_page)).route("/console/{file}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, content)) = ASSETS.iter().find(|(asset, _, _)| *asset == name) else {
        return (StatusCode::NOT_FOUND, "no such file in the console").into_response();
    };
    let mut response = content.into_response();
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

async fn to_the_page() -> Redirect {
    Redirect::temporary(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use http::{Method, Request};
    use tower_service::Service;

    async fn get(method: Method, path: &str) -> Response {
        let mut router = routes::<()>().into_service::<Body>();
        router.call(Request::builder().method(method).uri(path).body(Body::empty()).unwrap()).await.unwrap().into_response()
    }

    #[tokio::test]
    async fn serves_every_asset_with_its_type_and_refuses_the_rest() {
        for (name, content_type, content) in ASSETS {
            let response = get(Method::GET, &format!("{PATH}/{name}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *content_type);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            assert_eq!(body.len(), content.len(), "{name}");
        }
        for folder in ["/", "/console", "/console/"] {
            let response = get(Method::GET, folder).await;
            assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT, "{folder} sends the browser to the page");
            assert_eq!(response.headers()[header::LOCATION], PAGE);
        }
        assert_eq!(get(Method::HEAD, "/console/app.js").await.status(), StatusCode::OK);
        assert_eq!(get(Method::GET, "/console/../Cargo.toml").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(Method::GET, "/console/nothing.js").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(Method::POST, "/console/index.html").await.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_schema_is_generated_from_the_contract() {
        let schema = ASSETS.iter().find(|(name, _, _)| *name == "schema.js").unwrap().2;
        for expected in [r#"".calmline.v1.AnalyzeRequest""#, r#""calmline.v1.Triage/Analyze""#, r#""ACTION_SET_BOUNDARY": 5"#] {
            assert!(schema.contains(expected), "{expected} missing from the generated schema");
        }
    }
}
