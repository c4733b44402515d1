//! An HTTP/1.1 client over a connection pool ([`crate::pool`]) and a [`Connector`].
//!
//! Each request goes, in order of preference, on an idle connection to its origin, on a new
//! connection if the origin is under `max_per_origin`, or waits (FIFO, at most
//! `pool_wait_timeout`) for one of those to come free. The client reads each response's
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
//! Response bodies stream: [`Client::send`] returns once the response head has arrived, with
//! a [`ResponseBody`] that yields the body as it comes and gives the connection back to the
//! pool when it ends. [`Client::request`] and [`Client::get`] read the whole body for callers
//! that want it in one piece.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

use crate::connector::{Connector, Origin, PeerClosedProbe};
use crate::headers::{is_idempotent, wants_close, KeepAlive};
use crate::io::{IoState, Tracked};
use crate::metrics::{inc, ClientCounters, Metrics};
use crate::pool::{Checkout, Eviction, Pool, PoolConfig, PoolError, Poolable, Pooled};

/// The client's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The pool's limits and idle timeout.
    pub pool: PoolConfig,
    /// How long opening a connection (the TCP handshake) may take.
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
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// The URL is not an absolute `http://` URL, or the request cannot be built.
    InvalidRequest(String),
    /// Opening a connection failed.
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
    /// `max=0`, or the client's own `Connection: close`).
    pub closed_after: bool,
}

/// One HTTP/1.1 connection in the pool.
pub(crate) struct HttpConn {
    id: u64,
    sender: SendRequest<Full<Bytes>>,
    io: Arc<IoState>,
    probe: Option<PeerClosedProbe>,
    local_addr: Option<std::net::SocketAddr>,
    peer_addr: Option<std::net::SocketAddr>,
    handshake: Duration,
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

struct Inner {
    connector: Box<dyn Connector>,
    pool: Pool<Origin, HttpConn>,
    config: ClientConfig,
    counters: Arc<ClientCounters>,
    next_id: AtomicU64,
}

/// A pooled HTTP/1.1 client. Cheap to clone (a handle); see the [module documentation](self).
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
        let hook: crate::pool::EvictHook<HttpConn> =
            Box::new(move |c: &HttpConn, why, now| match why {
                Eviction::NotReusable if c.retire_at.is_some_and(|t| t <= now) => {
                    inc(&hook_counters.retired_keepalive)
                }
                Eviction::NotReusable => inc(&hook_counters.peer_closed),
                Eviction::Idle | Eviction::MadeRoom => inc(&hook_counters.evicted_idle),
            });
        let pool = Pool::with_evict_hook(config.pool.clone(), Some(hook));
        Client {
            inner: Arc::new(Inner {
                connector: Box::new(connector),
                pool,
                config,
                counters,
                next_id: AtomicU64::new(1),
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

    /// Connections to `origin` open now (idle, busy, or being opened).
    pub fn open_connections(&self, origin: &Origin) -> usize {
        self.inner.pool.open_count(origin)
    }

    /// `GET url`, the whole body.
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>, Error> {
        let (uri, _) = Origin::parse(url).map_err(Error::InvalidRequest)?;
        let req = Request::get(uri)
            .body(Bytes::new())
            .map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
        self.request(req).await
    }

    /// Sends `req` (its URI absolute: `http://host[:port]/path`) and reads the whole
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

    /// Sends `req` (its URI absolute: `http://host[:port]/path`) and returns as soon as the
    /// response head has arrived; the body streams in as the [`ResponseBody`] is read. The
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

    async fn open(&self, origin: &Origin) -> Result<HttpConn, Error> {
        let inner = &*self.inner;
        let t0 = Instant::now();
        let c = match tokio::time::timeout(
            inner.config.connect_timeout,
            inner.connector.connect(origin),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => {
                inc(&inner.counters.connect_errors);
                return Err(Error::Connect {
                    origin: origin.to_string(),
                    source,
                });
            }
            Err(_) => {
                inc(&inner.counters.connect_errors);
                return Err(Error::ConnectTimeout {
                    origin: origin.to_string(),
                    timeout: inner.config.connect_timeout,
                });
            }
        };
        let handshake = t0.elapsed();
        inc(&inner.counters.connections_opened);
        inner
            .counters
            .handshake_us
            .fetch_add(handshake.as_micros() as u64, Ordering::Relaxed);
        let (io, state) = Tracked::new(c.io);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(Error::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConn {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            sender,
            io: state,
            probe: c.peer_closed,
            local_addr: c.local_addr,
            peer_addr: c.peer_addr,
            handshake,
            requests: 0,
            retire_at: None,
        })
    }

    async fn request_inner(
        &self,
        req: Request<Bytes>,
    ) -> Result<(http::response::Parts, Incoming, Lease), Error> {
        let inner = &*self.inner;
        let origin = Origin::from_uri(req.uri()).map_err(Error::InvalidRequest)?;
        let (parts, body) = req.into_parts();
        let idempotent = is_idempotent(&parts.method);
        let client_close = wants_close(Version::HTTP_11, &parts.headers);
        let mut retried = false;
        // Connections found closed before the request could be written (nothing sent).
        let mut unsent = 0;
        loop {
            let mut waited = false;
            let fresh = retried || unsent >= 2;
            let checkout = inner.pool.checkout(&origin, fresh, &mut waited).await;
            if waited {
                inc(&inner.counters.pool_waits);
            }
            let (mut pooled, handshake) = match checkout {
                Ok(Checkout::Reused(p)) => (p, None),
                Ok(Checkout::Connect(slot)) => {
                    let conn = self.open(&origin).await?;
                    let hs = conn.handshake;
                    (slot.fill(conn), Some(hs))
                }
                Err(e) => {
                    inc(&inner.counters.pool_wait_timeouts);
                    return Err(Error::Pool(e));
                }
            };
            let request = build_request(&parts, &body, &origin)?;
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
                        unsent += 1;
                        if unsent > 8 {
                            return Err(Error::Http(e.into_error()));
                        }
                        continue;
                    }
                    drop(pooled);
                    let err = e.into_error();
                    if reused
                        && !got_bytes
                        && idempotent
                        && !retried
                        && inner.config.retry_idempotent
                    {
                        retried = true;
                        inc(&inner.counters.retries);
                        continue;
                    }
                    if !idempotent {
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
            let server_close = wants_close(rparts.version, &rparts.headers)
                || ka.is_some_and(|k| k.max == Some(0));
            let conn = pooled.get_mut();
            conn.retire_at = ka
                .and_then(|k| k.timeout)
                .map(|t| now + t - retire_margin(&inner.config, t, conn.handshake));
            let closed_after = server_close || client_close || conn.sender.is_closed();
            if server_close && !client_close {
                inc(&inner.counters.retired_by_server);
            }
            let info = RequestInfo {
                connection: conn.id,
                reused,
                handshake,
                retried,
                request_on_connection: conn.requests,
                waited,
                local_addr: conn.local_addr,
                peer_addr: conn.peer_addr,
                keep_alive: ka,
                closed_after,
            };
            rparts.extensions.insert(info);
            let lease = Lease {
                pooled,
                reusable: !closed_after,
            };
            return Ok((rparts, incoming, lease));
        }
    }
}

/// A connection lent to a response until its body has been read.
struct Lease {
    pooled: Pooled<Origin, HttpConn>,
    reusable: bool,
}

impl Lease {
    /// The body was read to its end: the connection goes back to the pool if it can carry
    /// another request.
    fn release(self) {
        let reusable = self.reusable && !self.pooled.get().sender.is_closed();
        self.pooled.release(reusable);
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
