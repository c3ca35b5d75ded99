//! What the two listeners (gRPC and metrics) accept, and for how long a connection may stay
//! silent. tonic's and axum's own accept loops give none of this: tonic retries a failed accept
//! at once (out of file descriptors that spins a core and logs nothing), and neither caps
//! connections or times out a peer that connects and never speaks.
//!
//! - **Back-off**: after a failed accept (EMFILE, ENFILE, ENOBUFS …) the loop pauses, 10 ms
//!   doubling to 1 s, and says so once per streak of failures.
//! - **A connection cap**: past it, a new connection is closed at once (the client sees it, and
//!   the connections already open keep being served).
//! - **A read deadline** per connection: the first bytes (HTTP/2 preface, TLS hello, request line)
//!   must come within `first`; after that, on the gRPC port, any `idle` period without a byte
//!   read closes it — HTTP/2 keepalive pings (answered by every live client) keep a quiet but
//!   healthy connection reading. Without `idle` the first deadline is the connection's whole
//!   lifetime (the metrics port: a scrape takes milliseconds; a client feeding a request one byte
//!   every few seconds is cut off).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics as m;

/// How long a new connection has for its first bytes (HTTP/2 preface, TLS hello, request line)
/// and for the TLS handshake.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// The first pause after a failed accept; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// How many connections a listener keeps, and how long they may stay silent.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The listener's name in logs and metric labels.
    pub listener: &'static str,
    pub max_connections: usize,
    /// Until the first bytes arrive.
    pub first: Duration,
    /// Between reads after that; `None`: `first` is the whole lifetime.
    pub idle: Option<Duration>,
}

/// The listener with its limits; hands out [`Connection`]s.
pub struct Guarded {
    listener: TcpListener,
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
}

impl Guarded {
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => limits.listener).set(0.0);
        metrics::counter!(m::REFUSED_CONNECTIONS_TOTAL, "listener" => limits.listener).increment(0);
        Guarded { listener, limits, open: Arc::new(AtomicUsize::new(0)) }
    }

    /// The next connection within the cap; failed accepts pause the loop, connections over the
    /// cap are closed at once.
    pub async fn next(&self) -> (Connection, SocketAddr) {
        let mut pause = FIRST_PAUSE;
        let mut failures = 0u64;
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    if failures > 0 {
                        tracing::info!(listener = self.limits.listener, failures, "accepting connections again");
                        failures = 0;
                        pause = FIRST_PAUSE;
                    }
                    match self.admit(stream) {
                        Some(connection) => return (connection, address),
                        None => metrics::counter!(m::REFUSED_CONNECTIONS_TOTAL, "listener" => self.limits.listener).increment(1),
                    }
                }
                // The peer gave up between SYN and accept: nothing is wrong with the listener.
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {}
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(listener = self.limits.listener, error = %e, "accepting a connection failed (out of file descriptors?); pausing before the next accept");
                    }
                    failures += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            }
        }
    }

    fn admit(&self, stream: TcpStream) -> Option<Connection> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = Slot { open: Arc::clone(&self.open), listener: self.limits.listener };
        if open > self.limits.max_connections {
            return None; // dropping the slot and the stream closes it
        }
        metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => self.limits.listener).set(open as f64);
        // TCP_NODELAY: with Nagle's algorithm a small reply waits for the client's delayed ACK,
        // ~40 ms on Linux loopback — more than the whole inference of a turn.
        let _ = stream.set_nodelay(true);
        Some(Connection { stream, deadline: Box::pin(tokio::time::sleep(self.limits.first)), idle: self.limits.idle, _slot: slot })
    }

    /// The connections as tonic's `serve_with_incoming` takes them. The accept task ends when
    /// tonic drops the stream (it stops accepting at shutdown), closing the listening socket.
    pub fn into_stream(self) -> ReceiverStream<io::Result<Connection>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    (connection, _) = self.next() => {
                        if sender.send(Ok(connection)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Frees a place under the cap when its connection closes.
struct Slot {
    open: Arc<AtomicUsize>,
    listener: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => self.listener).set(open as f64);
    }
}

/// An accepted TCP connection that fails its reads once the peer has been silent too long.
pub struct Connection {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    idle: Option<Duration>,
    _slot: Slot,
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(idle) = this.idle
                    && buf.filled().len() > before
                {
                    this.deadline.as_mut().reset(Instant::now() + idle);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stayed silent past the connection's read deadline"))),
                Poll::Pending => Poll::Pending,
            },
            failed => failed,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The peer's address for tonic (`Request::remote_addr`), as for a bare `TcpStream`.
impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn listener(max_connections: usize, idle: Option<Duration>) -> (Guarded, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = ConnectionLimits { listener: "test", max_connections, first: Duration::from_millis(300), idle };
        (Guarded::new(listener, limits), address)
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_is_closed_and_a_freed_place_is_taken_again() {
        let (guarded, address) = listener(1, None).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let (kept, _) = guarded.next().await;
        let mut second = TcpStream::connect(address).await.unwrap();
        // The second is accepted and closed at once: nothing is handed out.
        assert!(tokio::time::timeout(Duration::from_millis(300), guarded.next()).await.is_err());
        let mut byte = [0u8; 1];
        assert_eq!(second.read(&mut byte).await.unwrap_or(0), 0, "the refused connection is closed");
        // The first closes: the next connection takes its place.
        drop(kept);
        let third = TcpStream::connect(address).await.unwrap();
        let (_taken, peer) = guarded.next().await;
        assert_eq!(peer, third.local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_silent_peer_is_cut_off_and_a_talking_one_is_not() {
        let (guarded, address) = listener(8, Some(Duration::from_millis(300))).await;
        let _silent = TcpStream::connect(address).await.unwrap();
        let (mut silent, _) = guarded.next().await;
        let started = Instant::now();
        let error = silent.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));

        let mut talking = TcpStream::connect(address).await.unwrap();
        let (mut connection, _) = guarded.next().await;
        let writer = tokio::spawn(async move {
            for _ in 0..6 {
                talking.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        // Six bytes over ~900 ms, each within the 300 ms idle limit: all arrive.
        let mut received = 0;
        while received < 6 {
            received += connection.read(&mut [0u8; 8]).await.unwrap();
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn without_an_idle_limit_the_first_deadline_is_the_whole_lifetime() {
        let (guarded, address) = listener(8, None).await;
        let mut trickling = TcpStream::connect(address).await.unwrap();
        let (mut connection, _) = guarded.next().await;
        tokio::spawn(async move {
            for _ in 0..10 {
                if trickling.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = Instant::now();
        let outcome = loop {
            match connection.read(&mut [0u8; 8]).await {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(900), "cut off at the first deadline, not after the trickle");
    }
}
