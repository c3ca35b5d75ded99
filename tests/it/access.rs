//! Access control on the real server: API keys (hashed, by name in metrics, never the key), TLS
//! and mutual TLS with certificates made here, and plaintext refused off loopback.

use crate::common;

use std::time::Duration;

use crate::common::TriageClient;
use calmline::grpc::auth::hash_key;
use calmline::grpc::pb;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[tokio::test]
async fn api_keys_let_in_only_known_keys_and_metrics_show_only_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {}\nqa {}\n", hash_key("acme-Xy7-secret"), hash_key("qa-secret"))).unwrap();
    let server = common::start(&["--api-keys", keys.to_str().unwrap()]).await; // health needs no key
    let mut client = server.client().await;

    let refused = client.get_info(pb::GetInfoRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("API key"));

    let mut wrong = tonic::Request::new(pb::GetInfoRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer acme-Xy7-secreT".parse().unwrap());
    assert_eq!(client.get_info(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);

    let mut bearer = tonic::Request::new(pb::GetInfoRequest {});
    bearer.metadata_mut().insert("authorization", "Bearer acme-Xy7-secret".parse().unwrap());
    assert!(!client.get_info(bearer).await.unwrap().into_inner().labels.is_empty());
    // The scheme is case-insensitive (RFC 7235).
    let mut shouted = tonic::Request::new(pb::GetInfoRequest {});
    shouted.metadata_mut().insert("authorization", "BEARER acme-Xy7-secret".parse().unwrap());
    assert!(client.get_info(shouted).await.is_ok());
    let mut header = tonic::Request::new(pb::AnalyzeRequest { turn: Some(common::customer("Where is my parcel?")), ..Default::default() });
    header.metadata_mut().insert("x-api-key", "qa-secret".parse().unwrap());
    assert!(client.analyze(header).await.is_ok());

    let metrics = server.scrape().await;
    assert!(metrics.contains("calmline_authenticated_requests_total{client=\"acme\"} 2"), "{metrics}");
    assert!(metrics.contains("calmline_authenticated_requests_total{client=\"qa\"} 1"));
    assert!(metrics.contains("calmline_auth_failures_total{reason=\"missing\"} 1"));
    assert!(metrics.contains("calmline_auth_failures_total{reason=\"unknown\"} 1"));
    assert!(!metrics.contains("secret") && !metrics.contains("Xy7"), "a key leaked into the metrics");
    server.stop().await.unwrap();
}

/// A Converse stream opened with a key; the sender keeps it open.
async fn open_stream(
    client: &mut TriageClient<Channel>,
    key: &str,
) -> Result<(tokio::sync::mpsc::Sender<pb::ConverseRequest>, tonic::Streaming<pb::Assessment>), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let mut stream = client.converse(request).await?.into_inner();
    tx.send(pb::ConverseRequest { turn: Some(common::customer("Where is my parcel?")), locale: "en".into() }).await.unwrap();
    stream.message().await?;
    Ok((tx, stream))
}

#[tokio::test]
async fn one_key_cannot_hold_every_stream_slot() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {}\nqa {}\n", hash_key("acme-secret"), hash_key("qa-secret"))).unwrap();
    // Two clients: by default a key may hold three quarters of the streams, 3 of 4.
    let server = common::start(&["--api-keys", keys.to_str().unwrap(), "--max-streams", "4"]).await;
    let mut client = server.client().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_stream(&mut client, "acme-secret").await.unwrap());
    }
    let refused = open_stream(&mut client, "acme-secret").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("the most one client may hold"), "{}", refused.message());
    // The other client still gets the slot left; then the server is full for everyone.
    let other = open_stream(&mut client, "qa-secret").await.unwrap();
    let full = open_stream(&mut client, "qa-secret").await.unwrap_err();
    assert!(full.message().contains("the most this server takes"), "{}", full.message());
    // A stream that ends gives its key's place back.
    drop(held.pop());
    let started = std::time::Instant::now();
    while open_stream(&mut client, "acme-secret").await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "the closed stream's place never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(other);
    server.stop().await.unwrap();
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("platform-client");
    let stranger = rcgen::generate_simple_self_signed(vec!["stranger".to_string()]).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert: stranger.cert.pem(),
        stranger_key: stranger.signing_key.serialize_pem(),
    }
}

async fn tls_channel(addr: std::net::SocketAddr, ca: &str, identity: Option<(&str, &str)>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?.connect_timeout(Duration::from_secs(5)).connect().await
}

async fn get_info_over(channel: Channel) -> Result<pb::GetInfoResponse, tonic::Status> {
    let mut client = TriageClient::new(channel);
    // The model loads after the listener opens: retry while UNAVAILABLE.
    for _ in 0..300 {
        match client.get_info(pb::GetInfoRequest {}).await {
            Ok(r) if !r.get_ref().model_version.is_empty() => return Ok(r.into_inner()),
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("loading") => {}
            Err(s) => return Err(s),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never ready");
}

#[tokio::test]
async fn mutual_tls_admits_clients_of_the_ca_only() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (cert, key, ca) = (file("server.pem", &p.server_cert), file("server.key", &p.server_key), file("ca.pem", &p.ca));
    let server = common::spawn(&["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca]).await;

    let good = tls_channel(server.addr, &p.ca, Some((&p.client_cert, &p.client_key))).await.unwrap();
    assert!(!get_info_over(good).await.unwrap().model_version.is_empty());

    // No client certificate, a certificate from another CA, or plaintext: no service.
    for identity in [None, Some((p.stranger_cert.as_str(), p.stranger_key.as_str()))] {
        let outcome = match tls_channel(server.addr, &p.ca, identity).await {
            Err(_) => Err(()),
            Ok(ch) => TriageClient::new(ch).get_info(pb::GetInfoRequest {}).await.map(|_| ()).map_err(|_| ()),
        };
        assert!(outcome.is_err(), "a client without a certificate of the CA got through");
    }
    let plain = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await;
    if let Ok(ch) = plain {
        assert!(TriageClient::new(ch).get_info(pb::GetInfoRequest {}).await.is_err());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plaintext_off_loopback_is_refused_unless_insecure_is_given() {
    let args = common::serve_args(&[]);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = calmline::run(&args, listener, None, async {}).await.unwrap_err();
    assert!(format!("{err:#}").contains("refusing to listen"), "{err:#}");

    let args = common::serve_args(&["--tls-cert", "/nonexistent/cert.pem"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = calmline::run(&args, listener, None, async {}).await.unwrap_err();
    assert!(format!("{err:#}").contains("--tls-cert and --tls-key go together"), "{err:#}");

    let args = common::serve_args(&["--insecure"]);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    calmline::run(&args, listener, None, async {}).await.unwrap();
}
