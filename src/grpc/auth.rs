//! Who may talk to the service: TLS (optionally mutual) from PEM files, and API keys.
//!
//! API keys are stored hashed (SHA-256, one `name sha256:<hex>` line each) and compared in
//! constant time; only a key's name ever reaches logs and metrics. A key travels as
//! `authorization: Bearer <key>` or `x-api-key: <key>` (and, on the HTTP/JSON API, as Google's
//! APIs take it: `?key=<key>`). Health and reflection stay open, so load balancers can probe
//! without a key.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::metrics as m;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(
        "refusing to listen on {0} without TLS: give --tls-cert and --tls-key, listen on a loopback address, or pass --insecure to serve plaintext on purpose"
    )]
    PlaintextOnNetwork(SocketAddr),
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("--tls-client-ca needs --tls-cert and --tls-key")]
    ClientCaWithoutTls,
}

/// One API key as stored: its name and the SHA-256 of the key.
#[derive(Clone)]
struct StoredKey {
    name: String,
    hash: [u8; 32],
}

/// The API keys the service accepts (none configured: every caller is let in).
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<Vec<StoredKey>>,
    /// Refusals of unknown keys are logged at most once per `REFUSAL_LOG_EVERY` (a flood of bad
    /// keys must not flood the log; the metric counts every one).
    refusals: Arc<RefusalLog>,
}

/// How often a refusal of an unknown key may reach the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals and says when one may be logged, with how many went unlogged before it.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    /// `Some(unlogged before this one)` when this refusal may be logged at `now`.
    fn record(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, unlogged) = &mut *state;
        if last.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(unlogged))
    }
}

/// The credentials of an `authorization` header: `Bearer <key>`, the scheme in any case (RFC 7235).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim_start())
}

/// `sha256:<hex>` of a key, the form the keys file stores (`calmline hash-key`).
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.trim().as_bytes());
    let hex = hex::encode(digest);
    format!("sha256:{hex}")
}

impl ApiKeys {
    /// Reads `name sha256:<hex>` lines; `#` starts a comment.
    pub fn load(path: &Path) -> Result<ApiKeys, AccessError> {
        let fail = |message: String| AccessError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(fail(format!("line {}: expected `name sha256:<64 hex digits>`", n + 1)));
            };
            let hex = hash
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64)
                .ok_or_else(|| fail(format!("line {}: the hash must be sha256:<64 hex digits> (see `calmline hash-key`)", n + 1)))?;
            let mut bytes = [0u8; 32];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| fail(format!("line {}: not hexadecimal", n + 1)))?;
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(fail(format!("line {}: a key name may hold letters, digits, '-', '_' and '.' only (it becomes a metric label)", n + 1)));
            }
            keys.push(StoredKey { name: name.to_string(), hash: bytes });
        }
        if keys.is_empty() {
            return Err(fail("no keys in the file".into()));
        }
        Ok(ApiKeys { keys: Arc::new(keys), refusals: Arc::default() })
    }

    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// How many clients (distinct key names) there are.
    pub fn clients(&self) -> usize {
        self.keys.iter().map(|k| k.name.as_str()).collect::<std::collections::HashSet<_>>().len()
    }

    /// The name of the stored key equal to `key`. Every stored key is compared, in constant
    /// time, so timing tells nothing about which or how much matched.
    fn find(&self, key: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        let mut found = None;
        for stored in self.keys.iter() {
            if bool::from(stored.hash.ct_eq(&digest)) {
                found = Some(stored.name.as_str());
            }
        }
        found
    }

    /// Lets a caller in by the key it presented (every caller when no keys are configured),
    /// counting and rate-limit-logging refusals. Shared by the gRPC interceptor and the
    /// HTTP/JSON API.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Option<&str>, Refusal> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let Some(presented) = presented else {
            metrics::counter!(m::AUTH_FAILURES_TOTAL, "reason" => "missing").increment(1);
            return Err(Refusal::Missing);
        };
        match self.find(presented) {
            Some(name) => {
                metrics::counter!(m::AUTHENTICATED_TOTAL, "client" => name.to_string()).increment(1);
                tracing::debug!(client = %name, "authenticated");
                Ok(Some(name))
            }
            None => {
                metrics::counter!(m::AUTH_FAILURES_TOTAL, "reason" => "unknown").increment(1);
                if let Some(unlogged) = self.refusals.record(Instant::now()) {
                    tracing::info!(unlogged_since_last = unlogged, "refused a request with an unknown API key");
                }
                Err(Refusal::Unknown)
            }
        }
    }

    /// The interceptor in front of the Triage service; the handlers find the key's name in
    /// the request's extensions ([`Client`]).
    pub fn check(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata();
        let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let presented = presented_key(header("authorization"), header("x-api-key"));
        match self.authenticate(presented) {
            Ok(name) => {
                let client = name.map(|n| Client(n.to_string()));
                if let Some(client) = client {
                    request.extensions_mut().insert(client);
                }
                Ok(request)
            }
            Err(Refusal::Missing) => Err(Status::unauthenticated("an API key is required: send `authorization: Bearer <key>` or `x-api-key: <key>`")),
            Err(Refusal::Unknown) => Err(Status::unauthenticated("unknown API key")),
        }
    }
}

/// The name of the API key a request came with (not the key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client(pub String);

/// Why a caller was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
}

/// The key a caller presented: `authorization: Bearer <key>`, else `x-api-key: <key>`.
pub fn presented_key<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    authorization.and_then(bearer).or(x_api_key)
}

/// The TLS files of `--tls-cert`, `--tls-key` and `--tls-client-ca`, and `--insecure`.
pub struct TlsFiles<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub client_ca: Option<&'a Path>,
    /// Plaintext on a non-loopback address is meant.
    pub insecure: bool,
}

/// The TLS configuration from the serve flags, or None for plaintext — which is refused on a
/// non-loopback address unless `--insecure` says it is meant.
pub fn tls_config(files: TlsFiles, listening_on: SocketAddr) -> Result<Option<ServerTlsConfig>, AccessError> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| AccessError::File { path: path.display().to_string(), message: e.to_string() });
    match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)).timeout(crate::connections::FIRST_BYTES_TIMEOUT);
            if let Some(ca) = files.client_ca {
                config = config.client_ca_root(Certificate::from_pem(read(ca)?));
            }
            Ok(Some(config))
        }
        (None, None) => {
            if files.client_ca.is_some() {
                return Err(AccessError::ClientCaWithoutTls);
            }
            if !listening_on.ip().is_loopback() && !files.insecure {
                return Err(AccessError::PlaintextOnNetwork(listening_on));
            }
            Ok(None)
        }
        _ => Err(AccessError::HalfTls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_by_hash_and_only_the_name_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# platform keys\nacme {}\nqa-team {}  # the QA scorer\n", hash_key("s3cret-acme"), hash_key("s3cret-qa"))).unwrap();
        let keys = ApiKeys::load(&path).unwrap();
        assert_eq!(keys.find("s3cret-qa"), Some("qa-team"));
        assert_eq!(keys.find("s3cret-acme"), Some("acme"));
        assert_eq!(keys.find("s3cret"), None);
        assert_eq!(keys.find(""), None);
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer("Bearer k1"), Some("k1"));
        assert_eq!(bearer("BEARER k1"), Some("k1"));
        assert_eq!(bearer("bEaReR  k1"), Some("k1"));
        assert_eq!(bearer("Basic k1"), None);
        assert_eq!(bearer("Bearerk1"), None);
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period_with_the_count_in_between() {
        let log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.record(start), Some(0));
        for i in 1..=1000 {
            assert_eq!(log.record(start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.record(start + REFUSAL_LOG_EVERY), Some(1000));
        assert_eq!(log.record(start + REFUSAL_LOG_EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_bad_keys_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        for (body, expect) in [
            ("acme plaintext-key\n", "line 1"),
            ("acme sha256:zz\n", "line 1"),
            (&format!("ok {}\nbad name {}\n", hash_key("a"), hash_key("b")), "line 2"),
            ("# only comments\n", "no keys"),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = ApiKeys::load(&path).err().expect(body).to_string();
            assert!(err.contains(expect), "{body:?}: {err}");
        }
    }
}
