//! A keep-alive HTTP/1.1 and HTTP/2 server: hyper's `server::conn::http1` and
//! `server::conn::http2` on each connection, with synack's persistence policy around them,
//! over TLS or in cleartext, on any [`Listener`].
//!
//! # Which protocol
//!
//! - Cleartext, [`ServerConfig::h2c`] off (the default, as nginx without `http2`): HTTP/1.1.
//! - Cleartext, `h2c` on: the first bytes of every connection are read before any protocol
//!   sees them; the client connection preface (RFC 9113 §3.4, "prior knowledge") makes it
//!   HTTP/2, anything else HTTP/1.1 on the same port. The detection is always on with
//!   `h2c`: it costs one read of at most 24 bytes, which HTTP/1.1 then reads again. The
//!   `Upgrade: h2c` dance of RFC 7540 §3.2 is not offered (RFC 9113 §3.1 deprecates it).
//! - TLS ([`ServerConfig::tls`]): ALPN picks (RFC 7301): `h2` is HTTP/2 (RFC 9113 §3.2),
//!   `http/1.1` or no ALPN is HTTP/1.1. The handshake must complete within
//!   `tls_handshake_timeout` (nginx `ssl_handshake_timeout`).
//!
//! # HTTP/1.1
//!
//! Connections are persistent by default (RFC 9112 §9.3). The policy follows nginx's settings
//! of the same names:
//! - `keepalive_timeout`: an idle connection (its last response written, no byte of a next
//!   request yet) is closed with a FIN after this long. Zero turns persistence off: every
//!   response carries `Connection: close`.
//! - `keepalive_requests`: the connection's last allowed request gets `Connection: close`
//!   (RFC 9112 §9.6) and the connection closes after its response.
//! - `keepalive_time`: the first response completed after the connection is this old gets
//!   `Connection: close`.
//! - `header_read_timeout`: once the first byte of a request arrives (or the connection is
//!   accepted, for its first request), its head must be complete within this long, or the
//!   connection is closed.
//! - `max_header_size`: a larger request head is refused with 431 and the connection
//!   closed.
//! - `client_max_body_size`: a larger request body is refused with 413 (RFC 9110 §15.5.14)
//!   and the connection closed: at once when its `Content-Length` says so, before any of it
//!   is read, or as soon as its chunks add up to more. Zero: no limit.
//! - `keepalive_header`: responses that keep the connection open carry
//!   `Connection: keep-alive` and `Keep-Alive: timeout=T, max=N` (N: requests the connection
//!   has left), so that a client can retire the connection before the server does.
//! - `send_timeout`: a client that takes no bytes of a response for this long (its TCP
//!   window stays full) has its connection closed.
//!
//! A client's `Connection: close` (or an HTTP/1.0 request without `keep-alive`) is honoured:
//! the response says `Connection: close` and the connection closes after it. A client that
//! half-closes after its request (its FIN) still gets the response.
//!
//! Every request is checked before hyper parses it (see `guard.rs`): a malformed one — bad
//! request line or header field, both `Content-Length` and `Transfer-Encoding`, differing
//! lengths, no `Host` in HTTP/1.1, a malformed chunked body — is answered with 400 (431, 414,
//! 413 or 505 where they fit) and `Connection: close`, after the responses to the requests
//! before it, and the connection closes with a lingering close, as nginx does (RFC 9112 §3.2,
//! §6.3, §9.6; RFC 9110 §7.2). Bodies stream both ways: the server holds at most what hyper
//! buffers of a request or a response, never a whole body.
//!
//! # HTTP/2
//!
//! The same settings apply to streams (see `h2.rs`): `keepalive_timeout` to a connection
//! with no stream open, `keepalive_requests` and `keepalive_time` end the connection with a
//! graceful `GOAWAY` after the stream that reaches them, `client_max_body_size` answers a
//! larger `Content-Length` with 413, `send_timeout` closes a connection whose client keeps
//! its flow-control window shut. [`Http2Config`] holds the protocol's own settings, and the
//! limits that bound a hostile client (see its fields).
//!
//! [`ServerHandle::shutdown`] is graceful: the listener stops, idle connections close, and
//! requests in flight finish (HTTP/1.1 responses say `Connection: close`; HTTP/2 connections
//! get the two-step `GOAWAY` of RFC 9113 §6.8) before the connections close.

mod conn;
mod detect;
mod frames;
mod h1;
mod h2;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::{inc, ServerCounters, ServerStats};
use crate::tls::{TlsServerConfig, ALPN_H2, ALPN_HTTP11};

pub use conn::TrackedBody;
pub use h2::CLOSE_GRACE;

/// A boxed error, as hyper takes from services and bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A byte stream a connection runs on: the listener's, a TLS stream over it, or either with
/// bytes read ahead put back.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxIo = Box<dyn Io>;

/// The server's settings. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Idle time allowed between requests (nginx `keepalive_timeout`, default 75 s); on
    /// HTTP/2, with no stream open. Zero: no persistent connections.
    pub keepalive_timeout: Duration,
    /// Requests allowed on one connection (nginx `keepalive_requests`, default 1000); on
    /// HTTP/2, streams.
    pub keepalive_requests: u64,
    /// Longest life of a connection (nginx `keepalive_time`, default 1 h).
    pub keepalive_time: Duration,
    /// Time allowed for a request head, from its first byte (nginx
    /// `client_header_timeout`, default 60 s); on HTTP/2, for the preface and the first
    /// stream.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (default 16 KiB); 431 beyond. (HTTP/2:
    /// [`Http2Config::max_header_list_size`].)
    pub max_header_size: usize,
    /// Largest request body accepted, in bytes (nginx `client_max_body_size`, default
    /// 1 MiB); 413 beyond. Zero: no limit.
    pub client_max_body_size: u64,
    /// Send `Connection: keep-alive` and `Keep-Alive: timeout=T, max=N` (default off, as
    /// nginx without the header parameter).
    pub keepalive_header: bool,
    /// How long responses may wait for the client to take any of their bytes (nginx
    /// `send_timeout`, default 60 s) before the connection is closed. Zero: forever.
    pub send_timeout: Duration,
    /// Serve HTTP/2 with prior knowledge on cleartext connections, next to HTTP/1.1 on the
    /// same port (default off, as nginx without `http2`).
    pub h2c: bool,
    /// HTTP/2's settings and limits.
    pub http2: Http2Config,
    /// Serve TLS on every connection, with these certificates and ALPN list.
    pub tls: Option<TlsServerConfig>,
    /// Time allowed for a TLS handshake (nginx `ssl_handshake_timeout`, default 60 s).
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            keepalive_time: Duration::from_secs(3600),
            header_read_timeout: Duration::from_secs(60),
            max_header_size: 16 * 1024,
            client_max_body_size: 1024 * 1024,
            keepalive_header: false,
            send_timeout: Duration::from_secs(60),
            h2c: false,
            http2: Http2Config::default(),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    fn persistent(&self) -> bool {
        !self.keepalive_timeout.is_zero() && self.keepalive_requests > 1
    }
}

/// HTTP/2's settings (RFC 9113 §6.5.2) and the limits that bound a hostile client, named as
/// nginx names them where it has the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (nginx `http2_max_concurrent_streams`, default
    /// 128): streams a client may have open at once; h2 refuses more with
    /// `REFUSED_STREAM`.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: how many bytes of each request body the client may
    /// send ahead (default 1 MiB).
    pub initial_stream_window: u32,
    /// The connection's receive window, opened with a `WINDOW_UPDATE` on stream 0 (RFC 9113
    /// §6.9.2; default 1 MiB).
    pub initial_connection_window: u32,
    /// `SETTINGS_MAX_FRAME_SIZE`: the largest frame payload the server takes (16384 to
    /// 16777215; default 16384).
    pub max_frame_size: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` (default 16 KiB): a larger request header list is
    /// answered with 431 and its stream reset; one over four times this (an HPACK bomb)
    /// ends the connection with `ENHANCE_YOUR_CALM`, and so does a header block in more
    /// `CONTINUATION` frames than it needs (at least 5), without decoding more of it.
    pub max_header_list_size: u32,
    /// Send a `PING` after this long without a frame from the client, to learn whether it
    /// is still there (default: none, as nginx).
    pub ping_interval: Option<Duration>,
    /// Close the connection when a `PING` is not answered within this long (default 20 s).
    pub ping_timeout: Duration,
    /// Streams a client opened and reset before the server took them, allowed at once
    /// (default 20); one more ends the connection with `ENHANCE_YOUR_CALM`. This bounds
    /// Rapid Reset (CVE-2023-44487).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server had to reset because the client broke a rule (and streams
    /// refused over `max_concurrent_streams`), allowed per connection (default 1024); one
    /// more ends the connection with `ENHANCE_YOUR_CALM`.
    pub max_local_error_reset_streams: usize,
    /// Response bytes buffered per stream ahead of the client's flow-control window
    /// (default 400 KiB).
    pub max_send_buf_size: usize,
}

/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The smallest and largest `SETTINGS_MAX_FRAME_SIZE` (RFC 9113 §6.5.2).
pub const FRAME_SIZES: std::ops::RangeInclusive<u32> = 16_384..=16_777_215;

impl Http2Config {
    /// Whether every setting is one RFC 9113 allows: windows of at most 2^31-1 bytes, a
    /// frame size from 16384 to 16777215, a send buffer that fits in 32 bits. The server
    /// brings an invalid value to the nearest valid one; this says what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_stream_window > MAX_WINDOW {
            return Err(format!(
                "the initial stream window must be at most {MAX_WINDOW} bytes (RFC 9113 §6.9.1)"
            ));
        }
        if self.initial_connection_window > MAX_WINDOW {
            return Err(format!(
                "the connection window must be at most {MAX_WINDOW} bytes (RFC 9113 §6.9.1)"
            ));
        }
        if !FRAME_SIZES.contains(&self.max_frame_size) {
            return Err(format!(
                "the max frame size must be from {} to {} bytes (RFC 9113 §6.5.2)",
                FRAME_SIZES.start(),
                FRAME_SIZES.end()
            ));
        }
        if u32::try_from(self.max_send_buf_size).is_err() {
            return Err("the send buffer must be less than 4 GiB".into());
        }
        Ok(())
    }
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: 128,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16_384,
            max_header_list_size: 16 * 1024,
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_send_buf_size: 400 * 1024,
        }
    }
}

/// Where connections come from: synack's [`TcpListener`](synack_stack::net::TcpListener),
/// tokio's, or anything that accepts byte streams.
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Waits for the next connection and its peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send + '_;
    /// The address it listens on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for synack_stack::net::TcpListener {
    type Io = synack_stack::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (s, peer) = synack_stack::net::TcpListener::accept(self).await?;
        // Responses go out at once, not held by Nagle behind the previous segment's ACK.
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        synack_stack::net::TcpListener::local_addr(self)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (s, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// A running server: its counters, and graceful shutdown.
#[derive(Debug)]
pub struct ServerHandle {
    counters: Arc<ServerCounters>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    local_addr: Option<SocketAddr>,
}

impl ServerHandle {
    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// The address the listener was bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Graceful shutdown: stops accepting, closes idle connections, lets requests in flight
    /// finish (their responses carry `Connection: close`), and waits for every connection to
    /// close, at most `limit` (the rest are then dropped). Returns the final counters.
    pub async fn shutdown(self, limit: Duration) -> ServerStats {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        self.counters.snapshot()
    }

    /// Waits until the server stops by itself (the listener failed), forever otherwise.
    pub async fn wait(self) -> ServerStats {
        let _ = self.task.await;
        self.counters.snapshot()
    }
}

/// Serves `service` on every connection of `listener` with the persistence policy of
/// `config`, on a task of the current tokio runtime.
///
/// # Panics
/// Outside a tokio runtime.
pub fn serve<L, S, B>(listener: L, config: ServerConfig, service: S) -> ServerHandle
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let counters = Arc::new(ServerCounters::default());
    let (tx, rx) = watch::channel(false);
    let local_addr = listener.local_addr().ok();
    let task = tokio::spawn(accept_loop(
        listener,
        Arc::new(config),
        service,
        counters.clone(),
        rx,
    ));
    ServerHandle {
        counters,
        shutdown: tx,
        task,
        local_addr,
    }
}

async fn accept_loop<L, S, B>(
    mut listener: L,
    config: Arc<ServerConfig>,
    service: S,
    counters: Arc<ServerCounters>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut conns = JoinSet::new();
    let mut detached = false;
    loop {
        tokio::select! {
            biased;
            r = shutdown.changed(), if !detached => match r {
                Ok(()) if *shutdown.borrow() => break,
                Ok(()) => {}
                // The handle is gone: serve on, unsupervised.
                Err(_) => detached = true,
            },
            r = listener.accept() => match r {
                Ok((io, _peer)) => {
                    inc(&counters.connections);
                    inc(&counters.active_connections);
                    // The connection's timeouts read the clock once per poll of its task.
                    conns.spawn(crate::io::Coarse::new(connection(
                        io,
                        config.clone(),
                        service.clone(),
                        counters.clone(),
                        shutdown.clone(),
                    )));
                }
                // synack's listener says NotConnected only when it is closed or its stack
                // stopped; tokio's never does.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                // One connection died between its handshake and accept(): the listener is
                // fine, and the next connection is served at once.
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
                Err(_) => {
                    // Out of descriptors and the like: back off a little, as servers do.
                    inc(&counters.errors);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Serves one connection to its end, then counts it closed.
async fn connection<I, S, B>(
    io: I,
    config: Arc<ServerConfig>,
    service: S,
    counters: Arc<ServerCounters>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Some((proto, io)) = open(Box::new(io), &config, &counters, &mut shutdown).await {
        match proto {
            conn::Proto::Http1 => h1::serve(io, config, service, counters.clone(), shutdown).await,
            conn::Proto::Http2 => h2::serve(io, config, service, counters.clone(), shutdown).await,
        }
    }
    counters
        .active_connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// What `open` waited for.
enum Opening {
    Done(io::Result<(conn::Proto, BoxIo)>),
    TimedOut,
    Shutdown,
}

/// The TLS handshake and ALPN, or the preface detection: which protocol the connection
/// speaks, and its stream. `None`: it closed (or failed, or timed out) before.
async fn open(
    io: BoxIo,
    config: &ServerConfig,
    counters: &ServerCounters,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(conn::Proto, BoxIo)> {
    type Step<'a> =
        std::pin::Pin<Box<dyn Future<Output = io::Result<(conn::Proto, BoxIo)>> + Send + 'a>>;
    let (limit, step): (Duration, Step<'_>) = match &config.tls {
        Some(tls) => (
            config.tls_handshake_timeout,
            Box::pin(handshake(io, tls.clone(), counters)),
        ),
        None if config.h2c => (config.header_read_timeout, Box::pin(detect(io))),
        None => return Some((conn::Proto::Http1, io)),
    };
    let outcome = tokio::select! {
        r = step => Opening::Done(r),
        _ = tokio::time::sleep(limit) => Opening::TimedOut,
        _ = wait_shutdown(shutdown) => Opening::Shutdown,
    };
    let tls = config.tls.is_some();
    match outcome {
        Opening::Done(Ok(v)) => return Some(v),
        Opening::Done(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof && !tls => {
            // Closed before a byte: as an idle HTTP/1.1 connection the client closes.
            inc(&counters.closed_by_peer);
        }
        Opening::Done(Err(_)) if tls => inc(&counters.tls_handshake_failures),
        Opening::Done(Err(_)) => inc(&counters.aborted_by_peer),
        Opening::TimedOut if tls => inc(&counters.tls_handshake_failures),
        Opening::TimedOut => inc(&counters.header_timeouts),
        Opening::Shutdown => {}
    }
    None
}

/// Resolves when the server shuts down (never, if its handle is gone).
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A TLS handshake, and the protocol its ALPN chose.
async fn handshake(
    io: BoxIo,
    tls: TlsServerConfig,
    counters: &ServerCounters,
) -> io::Result<(conn::Proto, BoxIo)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls().clone());
    let stream = acceptor.accept(io).await?;
    inc(&counters.tls_handshakes);
    let proto = match stream.get_ref().1.alpn_protocol() {
        Some(p) if p == ALPN_H2 => {
            inc(&counters.alpn_h2);
            conn::Proto::Http2
        }
        Some(p) if p == ALPN_HTTP11 => {
            inc(&counters.alpn_http11);
            conn::Proto::Http1
        }
        // rustls refuses a handshake whose ALPN list has nothing in common with ours: no
        // ALPN at all (or a configuration of `from_rustls` with other protocols).
        _ => {
            inc(&counters.alpn_none);
            conn::Proto::Http1
        }
    };
    Ok((proto, Box::new(stream)))
}

/// The preface detection of h2c with prior knowledge.
async fn detect(mut io: BoxIo) -> io::Result<(conn::Proto, BoxIo)> {
    let (what, read) = detect::sniff(&mut io).await?;
    let proto = match what {
        detect::Sniffed::Http2 => conn::Proto::Http2,
        detect::Sniffed::Http1 => conn::Proto::Http1,
        detect::Sniffed::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
    };
    Ok((proto, Box::new(detect::Prefixed::new(read, io))))
}
