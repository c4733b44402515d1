//! An HTTP/1.1 and HTTP/2 client over a connection pool ([`crate::pool`]) and a
//! [`Connector`], in cleartext or over TLS ([`crate::tls::client`]).
//!
//! Which protocol an origin gets: `http://` speaks HTTP/1.1, or HTTP/2 with prior
//! knowledge (h2c, RFC 9113 §3.3) when [`Http2ClientConfig::prior_knowledge`] is set; `https://`
//! offers `h2` and `http/1.1` by ALPN (RFC 9113 §3.2, RFC 7301) and speaks what the server
//! picked (only `http/1.1` is offered when [`Http2ClientConfig::alpn`] is off). Until an
//! `https://` origin's first connection has said which, the requests that arrive wait for
//! it; an origin found to speak HTTP/1.1 then goes through the keep-alive pool below, and
//! one found to speak HTTP/2 through the HTTP/2 pool: one connection per origin carries
//! every concurrent request as a stream; at the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! requests wait for a stream to end, or open another connection (see [`Http2ClientConfig`]).
//! A connection that got a GOAWAY, or whose PING went unanswered, takes no new stream.
//!
//! HTTP/1.1: each request goes, in order of preference, on an idle connection to its
//! origin, on a new connection if the origin is under `max_per_origin`, or waits (FIFO, at
//! most `pool_wait_timeout`) for one of those to come free. The client reads each response's
//! `Connection` and `Keep-Alive` headers: `Connection: close` or `Keep-Alive: max=0` retires
//! the connection after the response (RFC 9112 §9.6), and `Keep-Alive: timeout=T` makes the
//! pool close the idle connection before the server would, a margin ahead of `T` (the larger
//! of `keepalive_margin` and `keepalive_margin_ratio`·T, plus the handshake's duration as an
//! estimate of the round trip, at most T/2). Before an idle connection is reused, the pool
//! checks that the peer has not closed it (hyper's view of the connection and a probe of the
//! socket).
//!
//! A server may still close an idle connection while a request is on its way (the keep-alive
//! race). When a *reused* connection fails before any byte of the response arrived, the
//! request is sent once more on a fresh connection if its method is idempotent (RFC 9110
//! §9.2.2, RFC 9112 §9.3.1); otherwise the caller gets [`Error::MaybeProcessed`], never a
//! silent second copy.
//!
//! HTTP/2: a request the server did not process is sent again on another connection,
//! whatever its method: a stream above a GOAWAY's last-stream-id, or one opened after it
//! (RFC 9113 §6.8), at most 8 times. `REFUSED_STREAM` (§8.7) likewise, on any usable
//! connection. Any other failure before the response head is retried once on another
//! connection for an idempotent method, and gives [`Error::MaybeProcessed`] for the others.
//!
//! Response bodies stream: [`Client::send`] returns once the response head has arrived, with
//! a [`ResponseBody`] that yields the body as it comes and gives the connection (or the
//! HTTP/2 stream) back to the pool when it ends. [`Client::request`] and [`Client::get`]
//! read the whole body for callers that want it in one piece.

mod frames;
pub(crate) mod h2;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::{Instant, Sleep};

use self::frames::{PeerState, Watched};
use self::h2::{AcquireError, Acquired, H2Conn, H2Pool, H2PoolConfig, StreamLease, Waited};
use crate::connector::{Connector, Io, Origin, PeerClosedProbe, Scheme};
use crate::headers::{is_idempotent, wants_close, KeepAlive};
use crate::io::{IoState, Tracked};
use crate::metrics::{inc, ClientCounters, Metrics};
use crate::pool::{Checkout, Eviction, Pool, PoolConfig, PoolError, Poolable, Pooled};
use crate::tls::client::{self as tls, TlsClientConfig, TlsInfo};
use crate::tls::{ALPN_H2, ALPN_HTTP11};

/// Resends of a request that was not processed (never sent, GOAWAY, REFUSED_STREAM) allowed.
const MAX_UNPROCESSED_RESENDS: u32 = 8;

/// The client's HTTP/2 settings (RFC 9113).
#[derive(Debug, Clone, PartialEq)]
pub struct Http2ClientConfig {
    /// Speak HTTP/2 on `http://` origins without asking (h2c with prior knowledge, RFC 9113
    /// §3.3). Default off: HTTP/1.1.
    pub prior_knowledge: bool,
    /// Offer `h2` (before `http/1.1`) by ALPN on `https://` origins. Default on.
    pub alpn: bool,
    /// When every connection to an origin is at the server's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, open another connection (up to the pool's
    /// `max_per_origin`) instead of waiting for a stream to end. Default off: requests wait
    /// (RFC 9113 §9.1). This is Go's `StrictMaxConcurrentStreams = false` and .NET's
    /// `EnableMultipleHttp2Connections = true`.
    pub enable_multiple_connections: bool,
    /// Streams assumed allowed on a new connection until the server's SETTINGS arrive, when
    /// no connection to the origin has told its limit yet (default 100: RFC 9113 §6.5.2
    /// recommends no less; what hyper and Go assume). Streams beyond the server's real limit
    /// are refused (`REFUSED_STREAM`) and resent.
    pub initial_max_concurrent_streams: u32,
    /// Send a PING this often to check the connection (default off); one unanswered within
    /// `keep_alive_timeout` closes the connection (its streams fail), and it is not reused.
    pub keep_alive_interval: Option<Duration>,
    /// How long a PING may go unanswered (default 20 s).
    pub keep_alive_timeout: Duration,
    /// PING idle connections too (default false: only while streams are open).
    pub keep_alive_while_idle: bool,
    /// Each stream's receive window: the `SETTINGS_INITIAL_WINDOW_SIZE` the client sends
    /// (RFC 9113 §6.9.2; `None`: hyper's default, 2 MiB).
    pub initial_stream_window_size: Option<u32>,
    /// The connection's receive window, opened by a WINDOW_UPDATE on stream 0 (§6.9; `None`:
    /// hyper's default, 5 MiB).
    pub initial_connection_window_size: Option<u32>,
    /// `SETTINGS_MAX_FRAME_SIZE` the client sends (default: hyper's, 16 384).
    pub max_frame_size: Option<u32>,
}

impl Default for Http2ClientConfig {
    fn default() -> Self {
        Http2ClientConfig {
            prior_knowledge: false,
            alpn: true,
            enable_multiple_connections: false,
            initial_max_concurrent_streams: 100,
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            keep_alive_while_idle: false,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            max_frame_size: None,
        }
    }
}

/// The protocol a request was carried by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 (RFC 9112).
    Http1,
    /// HTTP/2 (RFC 9113).
    Http2,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        })
    }
}

/// Why a request was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// An idempotent request (RFC 9110 §9.2.2) that failed before its response: the
    /// HTTP/1.1 keep-alive race, an HTTP/2 connection lost or a stream reset (sent once
    /// more, on another connection).
    Idempotent,
    /// A GOAWAY said the server did not process it (its stream was above the last-stream-id,
    /// or was opened after the GOAWAY; RFC 9113 §6.8).
    GoAway,
    /// The server refused its stream (`REFUSED_STREAM`, RFC 9113 §8.7).
    RefusedStream,
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryReason::Idempotent => "failed before the response (idempotent)",
            RetryReason::GoAway => "GOAWAY",
            RetryReason::RefusedStream => "REFUSED_STREAM",
        })
    }
}

/// The client's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The pool's limits and idle timeout.
    pub pool: PoolConfig,
    /// How long opening a connection (the TCP handshake) may take; for `https://`, the TLS
    /// handshake then gets as long again.
    pub connect_timeout: Duration,
    /// How long a request may take, from checkout to the last byte of the response, retry
    /// included.
    pub request_timeout: Duration,
    /// Retire an idle connection at least this long before the server's announced
    /// `Keep-Alive: timeout` (default 1 s).
    pub keepalive_margin: Duration,
    /// ... or this share of it, if larger (default 10 %).
    pub keepalive_margin_ratio: f64,
    /// Read the server's `Keep-Alive` header at all (default true).
    pub honor_keep_alive: bool,
    /// Retry idempotent requests once when a reused connection fails before the response
    /// (default true).
    pub retry_idempotent: bool,
    /// HTTP/2: prior knowledge, ALPN, the pool's policy, PINGs, windows.
    pub http2: Http2ClientConfig,
    /// TLS for `https://`: how the server's certificate is checked.
    pub tls: TlsClientConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            pool: PoolConfig::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keepalive_margin: Duration::from_secs(1),
            keepalive_margin_ratio: 0.1,
            honor_keep_alive: true,
            retry_idempotent: true,
            http2: Http2ClientConfig::default(),
            tls: TlsClientConfig::default(),
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// The URL is not an absolute `http://` or `https://` URL, or the request cannot be
    /// built.
    InvalidRequest(String),
    /// Opening a connection failed (TCP, or the TLS handshake: a certificate not accepted).
    Connect { origin: String, source: io::Error },
    /// Opening a connection took longer than `connect_timeout`.
    ConnectTimeout { origin: String, timeout: Duration },
    /// No connection came free in time.
    Pool(PoolError),
    /// The request took longer than `request_timeout` (it may have been processed).
    Timeout(Duration),
    /// A non-idempotent request was sent and its connection failed before a complete
    /// response: the server may or may not have processed it. It was not sent again.
    MaybeProcessed {
        method: Method,
        uri: Uri,
        reused: bool,
        source: hyper::Error,
    },
    /// The exchange failed (an idempotent request, after its one retry if any).
    Http(hyper::Error),
}

impl Error {
    /// Whether this is [`Error::MaybeProcessed`].
    pub fn is_maybe_processed(&self) -> bool {
        matches!(self, Error::MaybeProcessed { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::Connect { origin, source } => write!(f, "connecting to {origin}: {source}"),
            Error::ConnectTimeout { origin, timeout } => {
                write!(f, "connecting to {origin}: no handshake within {timeout:?}")
            }
            Error::Pool(e) => write!(f, "{e}"),
            Error::Timeout(d) => write!(
                f,
                "the request took longer than {d:?} (it may have been processed)"
            ),
            Error::MaybeProcessed {
                method,
                uri,
                reused,
                source,
            } => write!(
                f,
                "{method} {uri}: the {} connection failed after the request was sent and \
                 before a complete response ({source}); the request may not have been \
                 processed, or may have been: {method} is not idempotent, so it was not \
                 sent again",
                if *reused { "reused" } else { "new" }
            ),
            Error::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::MaybeProcessed { source, .. } | Error::Http(source) => Some(source),
            Error::Pool(e) => Some(e),
            _ => None,
        }
    }
}

/// How a request was carried, attached to each response as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The connection's number in this client (1, 2, ...).
    pub connection: u64,
    /// Whether the connection had carried a request before (no handshake paid).
    pub reused: bool,
    /// The handshake's duration, when this request opened the connection.
    pub handshake: Option<Duration>,
    /// Whether the request was sent a second time after a reused connection failed.
    pub retried: bool,
    /// This request's number on its connection (1 for the first).
    pub request_on_connection: u64,
    /// Whether the request waited in the pool's queue.
    pub waited: bool,
    pub local_addr: Option<std::net::SocketAddr>,
    pub peer_addr: Option<std::net::SocketAddr>,
    /// The server's `Keep-Alive` parameters on this response.
    pub keep_alive: Option<KeepAlive>,
    /// Whether the connection was retired after this response (`Connection: close`,
    /// `max=0`, or the client's own `Connection: close`; for HTTP/2, a GOAWAY received or
    /// the connection closed).
    pub closed_after: bool,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// Whether the request's time includes its connection's handshakes: it opened the
    /// connection, or waited for the one being opened (HTTP/2).
    pub new_connection: bool,
    /// The connection's TLS session (`https://`).
    pub tls: Option<TlsInfo>,
    /// The TLS handshake's duration, when this request opened the connection.
    pub tls_handshake: Option<Duration>,
    /// Why the request was sent again, once per resend (empty if it was sent once).
    pub retry_reasons: Vec<RetryReason>,
    /// When this request opened a new HTTP/1.1 connection: the number of the origin's
    /// previous connection and why it was no longer used (`synack get -v` says it).
    pub previous_closed: Option<(u64, &'static str)>,
}

/// What is known of a connection once it is open.
#[derive(Debug, Clone)]
pub(crate) struct ConnMeta {
    pub local_addr: Option<std::net::SocketAddr>,
    pub peer_addr: Option<std::net::SocketAddr>,
    /// The TCP handshake's duration.
    pub handshake: Duration,
    pub tls: Option<TlsInfo>,
}

/// One HTTP/1.1 connection in the pool.
pub(crate) struct HttpConn {
    id: u64,
    origin: Origin,
    sender: SendRequest<Full<Bytes>>,
    io: Arc<IoState>,
    probe: Option<PeerClosedProbe>,
    local_addr: Option<std::net::SocketAddr>,
    peer_addr: Option<std::net::SocketAddr>,
    handshake: Duration,
    tls: Option<TlsInfo>,
    requests: u64,
    /// The pool retires it at this instant (the server's keep-alive timeout less a margin).
    retire_at: Option<Instant>,
}

impl Poolable for HttpConn {
    fn is_reusable(&self, now: Instant) -> bool {
        // Not `is_ready()`: right after a response, hyper's task may not have marked the
        // connection ready yet; the request waits for `ready()` instead.
        !self.sender.is_closed()
            && !self.io.eof()
            && self.retire_at.is_none_or(|t| t > now)
            && !self.probe.as_ref().is_some_and(|p| p())
    }

    fn expires_at(&self) -> Option<Instant> {
        self.retire_at
    }
}

/// A connection just opened.
enum Opened {
    H1(HttpConn),
    H2(H2Conn),
}

struct Inner {
    connector: Box<dyn Connector>,
    pool: Pool<Origin, HttpConn>,
    h2: H2Pool,
    config: ClientConfig,
    counters: Arc<ClientCounters>,
    next_id: AtomicU64,
    /// What each `https://` origin picked by ALPN.
    learned: Mutex<HashMap<Origin, Protocol>>,
    /// Per origin, the last HTTP/1.1 connection that went out of use, and why.
    gone: Arc<Mutex<HashMap<Origin, (u64, &'static str)>>>,
    /// The rustls configurations, made on the first `https://` connection: offering `h2`
    /// and `http/1.1`, or `http/1.1` only.
    tls_h2: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    tls_h1: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

/// Notes that `origin`'s connection `id` went out of use, and why.
fn note_gone(
    gone: &Mutex<HashMap<Origin, (u64, &'static str)>>,
    origin: &Origin,
    id: u64,
    reason: &'static str,
) {
    gone.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(origin.clone(), (id, reason));
}

/// How far one attempt at a request got.
enum Step {
    Done(Box<(http::response::Parts, Incoming, Lease)>),
    /// Try again (another protocol, connection, or a resend).
    Again,
}

/// What a request's attempts have used up so far.
struct Attempts {
    idempotent: bool,
    /// The one resend of an idempotent request after a failure is used.
    retried: bool,
    /// Resends of a request that was not processed.
    unsent: u32,
    reasons: Vec<RetryReason>,
    /// An HTTP/2 connection not to use again.
    avoid: Option<u64>,
    /// An HTTP/1.1 connection opened while the origin's protocol was unknown.
    preopened: Option<HttpConn>,
    /// An HTTP/2 connection this request opened on its way through the HTTP/1.1 pool (ALPN
    /// picked `h2`): its handshakes are this request's.
    opened_h2: Option<u64>,
    started: Instant,
}

/// A pooled HTTP/1.1 and HTTP/2 client. Cheap to clone (a handle); see the [module
/// documentation](self).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// The margin by which the client retires a connection ahead of the server's timeout `t`.
fn retire_margin(config: &ClientConfig, t: Duration, rtt: Duration) -> Duration {
    let m = config
        .keepalive_margin
        .max(t.mul_f64(config.keepalive_margin_ratio.clamp(0.0, 1.0)))
        + rtt;
    m.min(t / 2)
}

impl Client {
    /// A client opening its connections with `connector`. Call it inside a tokio runtime
    /// (the pool's reaper and the connections' tasks run on it).
    pub fn new(connector: impl Connector, config: ClientConfig) -> Client {
        let counters = Arc::new(ClientCounters::default());
        let hook_counters = counters.clone();
        let gone: Arc<Mutex<HashMap<Origin, (u64, &'static str)>>> = Arc::default();
        let hook_gone = gone.clone();
        let hook: crate::pool::EvictHook<HttpConn> = Box::new(move |c: &HttpConn, why, now| {
            let reason = match why {
                Eviction::NotReusable if c.retire_at.is_some_and(|t| t <= now) => {
                    inc(&hook_counters.retired_keepalive);
                    "retired ahead of the server's Keep-Alive timeout"
                }
                Eviction::NotReusable => {
                    inc(&hook_counters.peer_closed);
                    "closed by the server while idle"
                }
                Eviction::Idle => {
                    inc(&hook_counters.evicted_idle);
                    "idle past the pool's idle timeout"
                }
                Eviction::MadeRoom => {
                    inc(&hook_counters.evicted_idle);
                    "closed to make room for another origin's"
                }
            };
            note_gone(&hook_gone, &c.origin, c.id, reason);
        });
        let pool = Pool::with_evict_hook(config.pool.clone(), Some(hook));
        let h2 = H2Pool::new(
            H2PoolConfig {
                multiple_connections: config.http2.enable_multiple_connections,
                max_connections: config.pool.max_per_origin,
                initial_max_concurrent_streams: config.http2.initial_max_concurrent_streams,
                idle_timeout: config.pool.idle_timeout,
                wait_timeout: config.pool.pool_wait_timeout,
            },
            counters.clone(),
        );
        Client {
            inner: Arc::new(Inner {
                connector: Box::new(connector),
                pool,
                h2,
                config,
                counters,
                next_id: AtomicU64::new(1),
                learned: Mutex::new(HashMap::new()),
                gone,
                tls_h2: OnceLock::new(),
                tls_h1: OnceLock::new(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The counters so far.
    pub fn metrics(&self) -> Metrics {
        self.inner.counters.snapshot()
    }

    /// Idle connections to `origin` in the pool now.
    pub fn idle_connections(&self, origin: &Origin) -> usize {
        self.inner.pool.idle_count(origin)
    }

    /// Connections to `origin` open now (HTTP/1.1 idle, busy, or being opened; HTTP/2
    /// usable).
    pub fn open_connections(&self, origin: &Origin) -> usize {
        self.inner.pool.open_count(origin) + self.inner.h2.connections(origin)
    }

    /// HTTP/2 connections to `origin` that can carry new streams now (not those going away).
    pub fn http2_connections(&self, origin: &Origin) -> usize {
        self.inner.h2.connections(origin)
    }

    /// HTTP/2 streams in flight to `origin` now.
    pub fn streams_in_flight(&self, origin: &Origin) -> usize {
        self.inner.h2.streams_in_flight(origin)
    }

    /// The protocol `origin` gets, as far as known now: `None` for an `https://` origin
    /// whose ALPN choice is not known yet (it is learned from its first connection).
    pub fn protocol(&self, origin: &Origin) -> Option<Protocol> {
        let h2 = &self.inner.config.http2;
        match origin.scheme {
            Scheme::Http if h2.prior_knowledge => Some(Protocol::Http2),
            Scheme::Http => Some(Protocol::Http1),
            Scheme::Https if !h2.alpn => Some(Protocol::Http1),
            Scheme::Https => self
                .inner
                .learned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(origin)
                .copied(),
        }
    }

    fn learn(&self, origin: &Origin, p: Protocol) {
        if origin.scheme == Scheme::Https {
            self.inner
                .learned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(origin.clone(), p);
        }
    }

    /// `GET url`, the whole body.
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>, Error> {
        let (uri, _) = Origin::parse(url).map_err(Error::InvalidRequest)?;
        let req = Request::get(uri)
            .body(Bytes::new())
            .map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
        self.request(req).await
    }

    /// Sends `req` (its URI absolute: `http[s]://host[:port]/path`) and reads the whole
    /// response. The response carries a [`RequestInfo`] extension.
    pub async fn request(&self, req: Request<Bytes>) -> Result<Response<Bytes>, Error> {
        let (parts, mut body) = self.send(req).await?.into_parts();
        let mut buf = bytes::BytesMut::with_capacity(
            body.size_hint()
                .exact()
                .map_or(0, |n| n.min(16 << 20) as usize),
        );
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                buf.extend_from_slice(d);
            }
        }
        Ok(Response::from_parts(parts, buf.freeze()))
    }

    /// Sends `req` (its URI absolute: `http[s]://host[:port]/path`) and returns as soon as
    /// the response head has arrived; the body streams in as the [`ResponseBody`] is read. The
    /// response carries a [`RequestInfo`] extension. `request_timeout` covers the body too:
    /// a body still unread when it passes fails with [`Error::Timeout`].
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<ResponseBody>, Error> {
        let limit = self.inner.config.request_timeout;
        let deadline = Instant::now() + limit;
        let r = match tokio::time::timeout_at(deadline, self.request_inner(req)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(limit)),
        };
        match r {
            Ok((head, incoming, lease)) => {
                let body = ResponseBody {
                    incoming,
                    lease: Some(lease),
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    limit,
                    counters: self.inner.counters.clone(),
                };
                let body = if body.incoming.is_end_stream() {
                    body.finished()
                } else {
                    body
                };
                Ok(Response::from_parts(head, body))
            }
            Err(e) => {
                inc(&self.inner.counters.failures);
                Err(e)
            }
        }
    }

    /// The rustls configuration offering `h2` (if `h2`) and `http/1.1`.
    fn tls_config(&self, h2: bool) -> Result<Arc<rustls::ClientConfig>, io::Error> {
        let inner = &*self.inner;
        let (cell, alpn): (_, &[&[u8]]) = if h2 {
            (&inner.tls_h2, &[ALPN_H2, ALPN_HTTP11])
        } else {
            (&inner.tls_h1, &[ALPN_HTTP11])
        };
        cell.get_or_init(|| tls::rustls_config(&inner.config.tls, alpn).map_err(|e| e.to_string()))
            .clone()
            .map_err(io::Error::other)
    }

    /// Opens a connection to `origin`: the TCP handshake, the TLS handshake for `https://`,
    /// then HTTP/1.1 or HTTP/2 as prior knowledge or ALPN says.
    async fn open(&self, origin: &Origin) -> Result<Opened, Error> {
        let inner = &*self.inner;
        let t0 = Instant::now();
        let connect_failed = |source: io::Error| {
            inc(&inner.counters.connect_errors);
            Error::Connect {
                origin: origin.to_string(),
                source,
            }
        };
        let timed_out = || {
            inc(&inner.counters.connect_errors);
            Error::ConnectTimeout {
                origin: origin.to_string(),
                timeout: inner.config.connect_timeout,
            }
        };
        let c = match tokio::time::timeout(
            inner.config.connect_timeout,
            inner.connector.connect(origin),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => return Err(connect_failed(source)),
            Err(_) => return Err(timed_out()),
        };
        let handshake = t0.elapsed();
        inc(&inner.counters.connections_opened);
        inner
            .counters
            .handshake_us
            .fetch_add(handshake.as_micros() as u64, Ordering::Relaxed);
        let h2 = &inner.config.http2;
        let (io, tls_info, protocol): (Box<dyn Io>, _, _) = match origin.scheme {
            Scheme::Http => {
                let p = if h2.prior_knowledge {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                };
                (c.io, None, p)
            }
            Scheme::Https => {
                let config = self.tls_config(h2.alpn).map_err(connect_failed)?;
                let handshake = tokio::time::timeout(
                    inner.config.connect_timeout,
                    tls::connect(config, &origin.host, c.io),
                )
                .await;
                let (stream, info) = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        inc(&inner.counters.tls_failures);
                        return Err(connect_failed(e));
                    }
                    Err(_) => {
                        inc(&inner.counters.tls_failures);
                        return Err(timed_out());
                    }
                };
                inc(&inner.counters.tls_handshakes);
                inner
                    .counters
                    .tls_handshake_us
                    .fetch_add(info.handshake.as_micros() as u64, Ordering::Relaxed);
                let p = if info.alpn.as_deref() == Some("h2") {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                };
                (Box::new(stream), Some(info), p)
            }
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = ConnMeta {
            local_addr: c.local_addr,
            peer_addr: c.peer_addr,
            handshake,
            tls: tls_info,
        };
        match protocol {
            Protocol::Http1 => {
                let (io, state) = Tracked::new(io);
                let (sender, conn) = hyper::client::conn::http1::Builder::new()
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(Error::Http)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Opened::H1(HttpConn {
                    id,
                    origin: origin.clone(),
                    sender,
                    io: state,
                    probe: c.peer_closed,
                    local_addr: meta.local_addr,
                    peer_addr: meta.peer_addr,
                    handshake,
                    tls: meta.tls,
                    requests: 0,
                    retire_at: None,
                }))
            }
            Protocol::Http2 => {
                let expected = inner.h2.expected_streams(origin);
                let peer = Arc::new(PeerState::new(
                    inner.h2.notify(origin),
                    inner.h2.reaper(),
                    inner.counters.clone(),
                ));
                let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
                b.timer(TokioTimer::new())
                    .initial_max_send_streams(expected as usize)
                    .keep_alive_interval(h2.keep_alive_interval)
                    .keep_alive_timeout(h2.keep_alive_timeout)
                    .keep_alive_while_idle(h2.keep_alive_while_idle);
                if let Some(w) = h2.initial_stream_window_size {
                    b.initial_stream_window_size(w);
                }
                if let Some(w) = h2.initial_connection_window_size {
                    b.initial_connection_window_size(w);
                }
                if let Some(f) = h2.max_frame_size {
                    b.max_frame_size(f);
                }
                let (sender, conn) = b
                    .handshake::<_, Full<Bytes>>(TokioIo::new(Watched::new(io, peer.clone())))
                    .await
                    .map_err(Error::Http)?;
                inc(&inner.counters.h2_connections);
                let watch = peer.clone();
                let counters = inner.counters.clone();
                let ping_timeout = h2.keep_alive_interval.map(|_| h2.keep_alive_timeout);
                tokio::spawn(async move {
                    let _ = conn.await;
                    if watch.set_closed(ping_timeout) {
                        inc(&counters.ping_timeouts);
                    }
                });
                Ok(Opened::H2(H2Conn::new(
                    id,
                    sender,
                    peer,
                    meta,
                    expected,
                    inner.h2.notify(origin),
                )))
            }
        }
    }

    async fn request_inner(
        &self,
        req: Request<Bytes>,
    ) -> Result<(http::response::Parts, Incoming, Lease), Error> {
        let origin = Origin::from_uri(req.uri()).map_err(Error::InvalidRequest)?;
        let (parts, body) = req.into_parts();
        let mut at = Attempts {
            idempotent: is_idempotent(&parts.method),
            retried: false,
            unsent: 0,
            reasons: Vec::new(),
            avoid: None,
            preopened: None,
            opened_h2: None,
            started: Instant::now(),
        };
        loop {
            let step = match self.protocol(&origin) {
                Some(Protocol::Http1) => self.attempt_h1(&origin, &parts, &body, &mut at).await?,
                // HTTP/2, or not known yet: the first connection tells.
                Some(Protocol::Http2) | None => {
                    self.attempt_h2(&origin, &parts, &body, &mut at).await?
                }
            };
            if let Step::Done(done) = step {
                return Ok(*done);
            }
        }
    }

    /// One attempt over HTTP/1.1, through the keep-alive pool.
    async fn attempt_h1(
        &self,
        origin: &Origin,
        parts: &http::request::Parts,
        body: &Bytes,
        at: &mut Attempts,
    ) -> Result<Step, Error> {
        let inner = &*self.inner;
        let client_close = wants_close(Version::HTTP_11, &parts.headers);
        let mut waited = false;
        let fresh = at.retried || at.unsent >= 2 || at.preopened.is_some();
        let checkout = inner.pool.checkout(origin, fresh, &mut waited).await;
        if waited {
            inc(&inner.counters.pool_waits);
        }
        let (mut pooled, handshake, tls_handshake) = match checkout {
            Ok(Checkout::Reused(p)) => (p, None, None),
            Ok(Checkout::Connect(slot)) => {
                let conn = match at.preopened.take() {
                    Some(c) => c,
                    None => match self.open(origin).await? {
                        Opened::H1(c) => c,
                        Opened::H2(c) => {
                            // The server now picks h2: this origin goes to the HTTP/2 pool.
                            drop(slot);
                            self.learn(origin, Protocol::Http2);
                            at.opened_h2 = Some(c.id);
                            inner.h2.adopt(origin, c);
                            return Ok(Step::Again);
                        }
                    },
                };
                let hs = conn.handshake;
                let tls_hs = conn.tls.as_ref().map(|t| t.handshake);
                (slot.fill(conn), Some(hs), tls_hs)
            }
            Err(e) => {
                inc(&inner.counters.pool_wait_timeouts);
                return Err(Error::Pool(e));
            }
        };
        let request = build_request(parts, body, origin)?;
        let conn = pooled.get_mut();
        let reused = conn.requests > 0;
        let read_before = conn.io.read();
        conn.requests += 1;
        inc(&inner.counters.requests);
        if reused {
            inc(&inner.counters.reused);
        }
        // Waits for hyper's task to be ready for the next request (at once, normally); a
        // closed connection fails here and the request goes back unsent.
        let _ = conn.sender.ready().await;
        let sent = conn.sender.try_send_request(request).await;
        let response = match sent {
            Ok(r) => r,
            Err(mut e) => {
                let got_bytes = pooled.get().io.read() != read_before;
                if e.take_message().is_some() {
                    // Never written: the connection had closed. Any method may go on
                    // another connection.
                    pooled.get_mut().requests -= 1;
                    inner.counters.requests.fetch_sub(1, Ordering::Relaxed);
                    if reused {
                        inner.counters.reused.fetch_sub(1, Ordering::Relaxed);
                    }
                    drop(pooled);
                    inc(&inner.counters.peer_closed);
                    at.unsent += 1;
                    if at.unsent > MAX_UNPROCESSED_RESENDS {
                        return Err(Error::Http(e.into_error()));
                    }
                    return Ok(Step::Again);
                }
                drop(pooled);
                let err = e.into_error();
                if reused
                    && !got_bytes
                    && at.idempotent
                    && !at.retried
                    && inner.config.retry_idempotent
                {
                    at.retried = true;
                    at.reasons.push(RetryReason::Idempotent);
                    inc(&inner.counters.retries);
                    inc(&inner.counters.retries_idempotent);
                    return Ok(Step::Again);
                }
                if !at.idempotent {
                    inc(&inner.counters.maybe_processed);
                    return Err(Error::MaybeProcessed {
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        reused,
                        source: err,
                    });
                }
                return Err(Error::Http(err));
            }
        };
        let (mut rparts, incoming) = response.into_parts();
        let now = Instant::now();
        let ka = if inner.config.honor_keep_alive {
            KeepAlive::parse(&rparts.headers)
        } else {
            None
        };
        let server_close =
            wants_close(rparts.version, &rparts.headers) || ka.is_some_and(|k| k.max == Some(0));
        let conn = pooled.get_mut();
        conn.retire_at = ka
            .and_then(|k| k.timeout)
            .map(|t| now + t - retire_margin(&inner.config, t, conn.handshake));
        let closed_after = server_close || client_close || conn.sender.is_closed();
        if server_close && !client_close {
            inc(&inner.counters.retired_by_server);
        }
        let previous_closed = match handshake {
            Some(_) => inner
                .gone
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(origin)
                .copied()
                .filter(|(id, _)| *id != conn.id),
            None => None,
        };
        if closed_after {
            let reason = if client_close {
                "the request said Connection: close"
            } else if ka.is_some_and(|k| k.max == Some(0)) {
                "the server's Keep-Alive: max=0 (its last request)"
            } else if server_close {
                "the server said Connection: close"
            } else {
                "closed by the server"
            };
            note_gone(&inner.gone, origin, conn.id, reason);
        }
        let info = RequestInfo {
            connection: conn.id,
            reused,
            handshake,
            retried: !at.reasons.is_empty(),
            request_on_connection: conn.requests,
            waited,
            local_addr: conn.local_addr,
            peer_addr: conn.peer_addr,
            keep_alive: ka,
            closed_after,
            protocol: Protocol::Http1,
            new_connection: handshake.is_some(),
            tls: conn.tls.clone(),
            tls_handshake,
            retry_reasons: at.reasons.clone(),
            previous_closed,
        };
        rparts.extensions.insert(info);
        let lease = Lease::H1 {
            pooled,
            reusable: !closed_after,
        };
        Ok(Step::Done(Box::new((rparts, incoming, lease))))
    }

    /// One attempt over HTTP/2: a stream on a pooled connection (the policy is `h2`'s).
    async fn attempt_h2(
        &self,
        origin: &Origin,
        parts: &http::request::Parts,
        body: &Bytes,
        at: &mut Attempts,
    ) -> Result<Step, Error> {
        let inner = &*self.inner;
        let mut waited = Waited::default();
        let acquired = match inner.h2.acquire(origin, at.avoid, &mut waited).await {
            Ok(a) => a,
            Err(AcquireError::Timeout(d)) => {
                inc(&inner.counters.pool_wait_timeouts);
                return Err(Error::Pool(PoolError::WaitTimeout(d)));
            }
            Err(AcquireError::Connect(kind, message)) => {
                return Err(Error::Connect {
                    origin: origin.to_string(),
                    source: io::Error::new(kind, message),
                })
            }
        };
        if waited.any {
            inc(&inner.counters.pool_waits);
        }
        let (lease, opened) = match acquired {
            Acquired::Stream(l) => (l, false),
            Acquired::Http1 => return Ok(Step::Again),
            Acquired::Open(ticket) => match self.open(origin).await {
                Ok(Opened::H2(c)) => {
                    self.learn(origin, Protocol::Http2);
                    (ticket.fill(c), true)
                }
                Ok(Opened::H1(c)) => {
                    // ALPN picked HTTP/1.1: this request takes the connection to the
                    // keep-alive pool, and the waiters follow.
                    self.learn(origin, Protocol::Http1);
                    ticket.speaks_http1();
                    at.preopened = Some(c);
                    return Ok(Step::Again);
                }
                Err(e) => {
                    let (kind, message) = match &e {
                        Error::Connect { source, .. } => (source.kind(), source.to_string()),
                        Error::ConnectTimeout { .. } => (io::ErrorKind::TimedOut, e.to_string()),
                        other => (io::ErrorKind::Other, other.to_string()),
                    };
                    ticket.failed(kind, message);
                    return Err(e);
                }
            },
        };
        let conn = lease.conn().clone();
        let opened = opened || at.opened_h2 == Some(conn.id);
        let request = build_h2_request(parts, body, origin)?;
        let nth = conn.next_stream();
        let reused = nth > 1;
        inc(&inner.counters.requests);
        inc(&inner.counters.h2_streams);
        if reused {
            inc(&inner.counters.reused);
        }
        let mut sender = conn.sender.clone();
        let response = match sender.try_send_request(request).await {
            Ok(r) => r,
            Err(mut e) => {
                drop(lease);
                if e.take_message().is_some() {
                    // Never handed to h2: the connection had closed.
                    inner.counters.requests.fetch_sub(1, Ordering::Relaxed);
                    inner.counters.h2_streams.fetch_sub(1, Ordering::Relaxed);
                    if reused {
                        inner.counters.reused.fetch_sub(1, Ordering::Relaxed);
                    }
                    at.avoid = Some(conn.id);
                    at.unsent += 1;
                    if at.unsent > MAX_UNPROCESSED_RESENDS {
                        return Err(Error::Http(e.into_error()));
                    }
                    return Ok(Step::Again);
                }
                let err = e.into_error();
                if let Some(reason) = not_processed(&err) {
                    if at.unsent < MAX_UNPROCESSED_RESENDS {
                        at.unsent += 1;
                        at.reasons.push(reason);
                        inc(&inner.counters.retries);
                        match reason {
                            RetryReason::GoAway => {
                                at.avoid = Some(conn.id);
                                inc(&inner.counters.retries_goaway);
                            }
                            _ => inc(&inner.counters.retries_refused),
                        }
                        return Ok(Step::Again);
                    }
                    return Err(Error::Http(err));
                }
                if at.idempotent && !at.retried && inner.config.retry_idempotent {
                    at.retried = true;
                    at.avoid = Some(conn.id);
                    at.reasons.push(RetryReason::Idempotent);
                    inc(&inner.counters.retries);
                    inc(&inner.counters.retries_idempotent);
                    return Ok(Step::Again);
                }
                if !at.idempotent {
                    inc(&inner.counters.maybe_processed);
                    return Err(Error::MaybeProcessed {
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        reused,
                        source: err,
                    });
                }
                return Err(Error::Http(err));
            }
        };
        let (mut rparts, incoming) = response.into_parts();
        let info = RequestInfo {
            connection: conn.id,
            reused,
            handshake: opened.then_some(conn.meta.handshake),
            retried: !at.reasons.is_empty(),
            request_on_connection: nth,
            waited: waited.any,
            local_addr: conn.meta.local_addr,
            peer_addr: conn.meta.peer_addr,
            keep_alive: None,
            closed_after: !conn.usable(),
            protocol: Protocol::Http2,
            new_connection: opened || (waited.any && conn.ready_at > at.started),
            tls: conn.meta.tls.clone(),
            tls_handshake: if opened {
                conn.meta.tls.as_ref().map(|t| t.handshake)
            } else {
                None
            },
            retry_reasons: at.reasons.clone(),
            // (HTTP/2's pool keeps one connection per origin; GOAWAYs are counted instead.)
            previous_closed: None,
        };
        rparts.extensions.insert(info);
        Ok(Step::Done(Box::new((rparts, incoming, Lease::H2(lease)))))
    }
}

/// Whether an HTTP/2 request's failure says the server did not process it: the h2 error
/// of a GOAWAY from the peer (h2 gives it to the streams above the last-stream-id, and to
/// those opened after the GOAWAY, never to the others: RFC 9113 §6.8), or a `RST_STREAM`
/// from the peer with `REFUSED_STREAM` (§8.7).
fn not_processed(e: &hyper::Error) -> Option<RetryReason> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<::h2::Error>() {
            if h.is_go_away() && h.is_remote() {
                return Some(RetryReason::GoAway);
            }
            if h.is_reset() && h.is_remote() && h.reason() == Some(::h2::Reason::REFUSED_STREAM) {
                return Some(RetryReason::RefusedStream);
            }
            return None;
        }
        source = s.source();
    }
    None
}

/// What a response holds until its body has been read: an HTTP/1.1 connection, or an
/// HTTP/2 stream. (Made once per response and kept in its body: its size does not matter.)
#[allow(clippy::large_enum_variant)]
enum Lease {
    H1 {
        pooled: Pooled<Origin, HttpConn>,
        reusable: bool,
    },
    H2(StreamLease),
}

impl Lease {
    /// The body was read to its end: the connection goes back to the pool if it can carry
    /// another request (the stream ends).
    fn release(self) {
        match self {
            Lease::H1 { pooled, reusable } => {
                let reusable = reusable && !pooled.get().sender.is_closed();
                pooled.release(reusable);
            }
            Lease::H2(stream) => drop(stream),
        }
    }
}

/// A response body as it arrives (see [`Client::send`]): a [`Body`] of [`Bytes`] frames.
/// Reading it to its end gives its connection back to the pool; dropping it before closes
/// the connection (its unread bytes would be in the way of the next response).
pub struct ResponseBody {
    incoming: Incoming,
    lease: Option<Lease>,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    counters: Arc<ClientCounters>,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("done", &self.lease.is_none())
            .finish()
    }
}

impl ResponseBody {
    /// The next piece of the body as it arrives; `None` at its end (trailers are skipped).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            match self.frame().await? {
                Ok(f) => match f.into_data() {
                    Ok(d) if d.is_empty() => continue,
                    Ok(d) => return Some(Ok(d)),
                    Err(_) => continue,
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn finished(mut self) -> Self {
        if let Some(l) = self.lease.take() {
            l.release();
            inc(&self.counters.responses);
        }
        self
    }

    fn failed(&mut self) {
        if self.lease.take().is_some() {
            inc(&self.counters.failures);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let me = &mut *self;
        if me.lease.is_none() {
            // Ended (or failed): hyper's body has nothing more either.
            return Poll::Ready(None);
        }
        match Pin::new(&mut me.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if me.incoming.is_end_stream() {
                    if let Some(l) = me.lease.take() {
                        l.release();
                        inc(&me.counters.responses);
                    }
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                if let Some(l) = me.lease.take() {
                    l.release();
                    inc(&me.counters.responses);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                me.failed();
                Poll::Ready(Some(Err(Error::Http(e))))
            }
            Poll::Pending => {
                if me.deadline.as_mut().poll(cx).is_ready() {
                    me.failed();
                    return Poll::Ready(Some(Err(Error::Timeout(me.limit))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none() || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// The request as sent: origin-form target (RFC 9112 §3.2.1), a `Host` header, HTTP/1.1.
fn build_request(
    parts: &http::request::Parts,
    body: &Bytes,
    origin: &Origin,
) -> Result<Request<Full<Bytes>>, Error> {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .version(Version::HTTP_11)
        .body(Full::new(body.clone()))
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    *req.headers_mut() = parts.headers.clone();
    if !req.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(&origin.host_header())
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        req.headers_mut().insert(HOST, host);
    }
    Ok(req)
}

/// The request as sent over HTTP/2: the target as `:scheme`, `:authority` and `:path`
/// (RFC 9113 §8.3.1; hyper takes them from the absolute URI), no `Host` header (the
/// authority replaces it), and none of HTTP/1.1's connection-specific fields (§8.2.2:
/// hyper leaves them out).
fn build_h2_request(
    parts: &http::request::Parts,
    body: &Bytes,
    origin: &Origin,
) -> Result<Request<Full<Bytes>>, Error> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = format!(
        "{}://{}{target}",
        origin.scheme.as_str(),
        origin.host_header()
    )
    .parse()
    .map_err(|e: http::uri::InvalidUri| Error::InvalidRequest(e.to_string()))?;
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(Version::HTTP_2)
        .body(Full::new(body.clone()))
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    *req.headers_mut() = parts.headers.clone();
    req.headers_mut().remove(HOST);
    Ok(req)
}
