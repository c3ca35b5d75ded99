//! Request bodies as they arrive, for every route of the gRPC listener (gRPC, gRPC-web, the
//! JSON API). tonic buffers each message until it is whole, up to the message limit, so a
//! client opening many streams that each send most of a large message and never finish held
//! hundreds of MB (issue 17, item 2). Here:
//!
//! - **A server-wide budget** of bytes held in messages not yet whole (`--max-receiving-bytes`):
//!   gRPC and gRPC-web bodies are followed frame by frame (the 5-byte length prefix says where a
//!   message ends; its bytes are released then), other bodies until they end. A frame over the
//!   budget fails its request with `RESOURCE_EXHAUSTED`; the others go on.
//! - **A read deadline** for the bodies of non-streaming calls (`--request-read-timeout-s`): a
//!   half-sent unary call fails with `DEADLINE_EXCEEDED` instead of holding its bytes and its
//!   stream. Streams are bounded by their own idle limit.
//! - Once the bytes held fall back to zero after a peak, the freed heap is returned to the
//!   system (glibc keeps it otherwise: 526 MB stayed after such a client left).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls whose request body is a stream of messages: no read deadline, they have an idle limit.
const STREAMING: [&str; 3] =
    ["/calmline.v1.Triage/Converse", "/calmline.v1.Triage/ScoreTranscripts", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"];

/// A peak of bytes held after which the heap is trimmed once they are released.
const TRIM_AFTER: usize = 16 * 1024 * 1024;

/// The bytes held by all request bodies together.
#[derive(Debug)]
struct Budget {
    max: usize,
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl Budget {
    fn take(&self, bytes: usize) -> bool {
        let held = self.held.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if held > self.max {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        self.peak.fetch_max(held, Ordering::AcqRel);
        true
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let held = self.held.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if held == 0 && self.peak.swap(0, Ordering::AcqRel) >= TRIM_AFTER {
            trim_heap_soon();
        }
    }
}

/// Returns the freed heap to the system a moment from now, when the buffers of the messages
/// just released (tonic's, hyper's) have been dropped too.
fn trim_heap_soon() {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = tokio::task::spawn_blocking(crate::heap::release_free_heap).await;
        });
    }
}

/// The layer for tonic's `Server::layer`.
#[derive(Clone, Debug)]
pub struct BodyLimits {
    budget: Arc<Budget>,
    read_timeout: Duration,
}

impl BodyLimits {
    pub fn new(max_receiving_bytes: usize, read_timeout: Duration) -> Self {
        BodyLimits { budget: Arc::new(Budget { max: max_receiving_bytes, held: AtomicUsize::new(0), peak: AtomicUsize::new(0) }), read_timeout }
    }

    fn meter(&self, request: Request<Body>) -> Request<Body> {
        let streaming = STREAMING.contains(&request.uri().path());
        let content_type = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        // grpc-web-text is base64: its bytes do not show the framing; held until the body ends.
        let framed = content_type.starts_with("application/grpc") && !content_type.contains("text");
        let budget = Arc::clone(&self.budget);
        let deadline = (!streaming).then(|| Box::pin(tokio::time::sleep(self.read_timeout)));
        let read_timeout = self.read_timeout;
        request.map(|inner| Body::new(Metered { inner, budget, held: 0, framing: framed.then(Framing::default), deadline, read_timeout }))
    }
}

impl<S> tower_layer::Layer<S> for BodyLimits {
    type Service = Metering<S>;

    fn layer(&self, inner: S) -> Metering<S> {
        Metering { inner, limits: self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Metering<S> {
    inner: S,
    limits: BodyLimits,
}

impl<S> tower_service::Service<Request<Body>> for Metering<S>
where
    S: tower_service::Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> S::Future {
        self.inner.call(self.limits.meter(request))
    }
}

/// Where a gRPC body is in its current message: the 5-byte prefix (flag, big-endian length),
/// then the payload.
#[derive(Default, Debug)]
struct Framing {
    prefix: [u8; 5],
    prefix_len: usize,
    payload_left: usize,
    /// Bytes of the current message so far, prefix included.
    message: usize,
}

impl Framing {
    /// Follows `data`; returns the bytes of the messages it completed.
    fn consume(&mut self, mut data: &[u8]) -> usize {
        let mut completed = 0;
        while !data.is_empty() {
            if self.prefix_len < 5 {
                let n = (5 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                self.message += n;
                data = &data[n..];
                if self.prefix_len < 5 {
                    break;
                }
                self.payload_left = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as usize;
            }
            let n = self.payload_left.min(data.len());
            self.payload_left -= n;
            self.message += n;
            data = &data[n..];
            if self.payload_left == 0 {
                completed += self.message;
                *self = Framing::default();
            }
        }
        completed
    }
}

struct Metered {
    inner: Body,
    budget: Arc<Budget>,
    /// Bytes this body holds in the budget now.
    held: usize,
    framing: Option<Framing>,
    deadline: Option<Pin<Box<Sleep>>>,
    read_timeout: Duration,
}

impl Metered {
    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.budget.release(std::mem::take(&mut self.held));
        self.deadline = None;
        Poll::Ready(Some(Err(Box::new(status))))
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !this.budget.take(data.len()) {
                        let message = format!(
                            "the server is receiving all it takes at once ({} MiB of messages not yet whole); retry later",
                            this.budget.max / (1024 * 1024)
                        );
                        return this.fail(Status::resource_exhausted(message));
                    }
                    this.held += data.len();
                    if let Some(framing) = &mut this.framing {
                        let completed = framing.consume(data).min(this.held);
                        this.held -= completed;
                        this.budget.release(completed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.budget.release(std::mem::take(&mut this.held));
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => {
                let expired = this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    let message = format!("the request did not arrive whole within {} s", this.read_timeout.as_secs());
                    return this.fail(Status::deadline_exceeded(message));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(payload as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, payload));
        m
    }

    #[test]
    fn framing_releases_a_message_when_it_is_whole_however_it_is_cut() {
        let stream: Vec<u8> = [message(10), message(0), message(300)].concat();
        for cut in [1, 3, 5, 7, 64, 1000] {
            let mut framing = Framing::default();
            let released: usize = stream.chunks(cut).map(|chunk| framing.consume(chunk)).sum();
            assert_eq!(released, stream.len(), "cut every {cut} bytes");
            assert_eq!(framing.message, 0);
        }
        let mut framing = Framing::default();
        assert_eq!(framing.consume(&message(300)[..200]), 0, "half a message is held");
        assert_eq!(framing.message, 200);
    }

    #[test]
    fn the_budget_refuses_what_goes_over_it_and_takes_again_once_released() {
        let budget = Budget { max: 100, held: AtomicUsize::new(0), peak: AtomicUsize::new(0) };
        assert!(budget.take(60));
        assert!(!budget.take(50));
        assert_eq!(budget.held.load(Ordering::Acquire), 60);
        budget.release(60);
        assert!(budget.take(100));
    }
}
