//! A keep-alive HTTP/1.1 server: hyper's `server::conn::http1` on each connection, with
//! synack's persistence policy around it.
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
//! [`ServerHandle::shutdown`] is graceful: the listener stops, idle connections close, and
//! requests in flight finish (their responses say `Connection: close`) before the
//! connections close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::guard::{GuardState, Guarded, Limits};
use crate::headers::{wants_close, KeepAlive, KEEP_ALIVE};
use crate::io::{IoState, Tracked};
use crate::metrics::{inc, ServerCounters, ServerStats};

/// A boxed error, as hyper takes from services and bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server's persistence settings. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Idle time allowed between requests (nginx `keepalive_timeout`, default 75 s). Zero:
    /// no persistent connections.
    pub keepalive_timeout: Duration,
    /// Requests allowed on one connection (nginx `keepalive_requests`, default 1000).
    pub keepalive_requests: u64,
    /// Longest life of a connection (nginx `keepalive_time`, default 1 h).
    pub keepalive_time: Duration,
    /// Time allowed for a request head, from its first byte (nginx
    /// `client_header_timeout`, default 60 s).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (default 16 KiB); 431 beyond.
    pub max_header_size: usize,
    /// Largest request body accepted, in bytes (nginx `client_max_body_size`, default
    /// 1 MiB); 413 beyond. Zero: no limit.
    pub client_max_body_size: u64,
    /// Send `Connection: keep-alive` and `Keep-Alive: timeout=T, max=N` (default off, as
    /// nginx without the header parameter).
    pub keepalive_header: bool,
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
        }
    }
}

impl ServerConfig {
    fn persistent(&self) -> bool {
        !self.keepalive_timeout.is_zero() && self.keepalive_requests > 1
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
                    conns.spawn(serve_connection(
                        io,
                        config.clone(),
                        service.clone(),
                        counters.clone(),
                        shutdown.clone(),
                    ));
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

/// Why a connection is closing after its current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    ClientAsked,
    MaxRequests,
    MaxTime,
    Disabled,
    Shutdown,
    /// The guard refused a request (its response says why).
    Rejected,
}

struct CtlState {
    /// Responses produced and not yet fully written.
    active: usize,
    idle_since: Instant,
    requests: u64,
    last: Option<Last>,
}

/// One connection's state, shared by its driver, its service and its response bodies.
struct ConnCtl {
    config: Arc<ServerConfig>,
    counters: Arc<ServerCounters>,
    io: Arc<IoState>,
    guard: Arc<GuardState>,
    born: Instant,
    shutting: AtomicBool,
    /// The guard's refusal was counted.
    rejected: AtomicBool,
    state: Mutex<CtlState>,
    notify: Notify,
}

/// What the driver waits for.
#[derive(Debug, Clone, Copy)]
enum Timeout {
    Idle,
    Header,
}

impl ConnCtl {
    fn lock(&self) -> std::sync::MutexGuard<'_, CtlState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request head was read: the connection is busy.
    fn begin<T>(&self, req: &Request<T>) -> u64 {
        self.io.disarm();
        let mut st = self.lock();
        st.active += 1;
        st.requests += 1;
        if st.last.is_none() && wants_close(req.version(), req.headers()) {
            st.last = Some(Last::ClientAsked);
            inc(&self.counters.closed_by_client_request);
        }
        inc(&self.counters.requests);
        self.counters
            .max_requests_per_connection
            .fetch_max(st.requests, Ordering::Relaxed);
        st.requests
    }

    /// Counts the guard's refusal of a request, once.
    fn count_reject(&self) {
        if !self.rejected.swap(true, Ordering::AcqRel) {
            inc(&self.counters.rejected_requests);
        }
    }

    /// A response is done (written, or abandoned).
    fn end(&self) {
        let mut st = self.lock();
        st.active = st.active.saturating_sub(1);
        if st.active == 0 {
            st.idle_since = Instant::now();
            self.io.arm();
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Sets the persistence headers of the `n`th response.
    fn decorate(&self, headers: &mut http::HeaderMap, n: u64) {
        let cfg = &self.config;
        let mut st = self.lock();
        if st.last.is_none() {
            st.last = if !cfg.persistent() {
                Some(Last::Disabled)
            } else if self.shutting.load(Ordering::Acquire) {
                Some(Last::Shutdown)
            } else if n >= cfg.keepalive_requests {
                Some(Last::MaxRequests)
            } else if self.born.elapsed() >= cfg.keepalive_time {
                Some(Last::MaxTime)
            } else {
                None
            };
            match st.last {
                Some(Last::MaxRequests) => inc(&self.counters.closed_max_requests),
                Some(Last::MaxTime) => inc(&self.counters.closed_max_time),
                _ => {}
            }
        }
        if st.last.is_some() {
            // RFC 9112 §9.6: the last response says so, and the connection closes after it.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
            headers.remove(KEEP_ALIVE);
        } else if crate::headers::connection_has(headers, "close") {
            // The service itself asked to close.
            st.last = Some(Last::Disabled);
        } else if cfg.keepalive_header {
            headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
            let ka = KeepAlive {
                timeout: Some(cfg.keepalive_timeout),
                max: Some(cfg.keepalive_requests.saturating_sub(n)),
            };
            headers.insert(KEEP_ALIVE, ka.to_value());
        }
    }

    /// When the driver must close the connection, if nothing happens first.
    fn deadline(&self) -> Option<(Instant, Timeout)> {
        let st = self.lock();
        if st.active > 0 || st.last.is_some() {
            return None;
        }
        let cfg = &self.config;
        if let Some(t) = self.io.first_byte() {
            return Some((t + cfg.header_read_timeout, Timeout::Header));
        }
        if st.requests == 0 {
            // nginx waits `client_header_timeout` for the first request.
            return Some((st.idle_since + cfg.header_read_timeout, Timeout::Header));
        }
        Some((st.idle_since + cfg.keepalive_timeout, Timeout::Idle))
    }
}

/// Ends a response's activity when dropped (with its body, or with the service's future).
struct ActiveGuard(Arc<ConnCtl>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that marks the connection idle once hyper has written it all (and
/// dropped it): the service's, or the server's own when it refused the request.
pub struct TrackedBody<B> {
    inner: Inner<B>,
    _guard: ActiveGuard,
}

enum Inner<B> {
    Service(Pin<Box<B>>),
    Own(Option<Bytes>),
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.inner {
            Inner::Service(b) => b.as_mut().poll_frame(cx),
            Inner::Own(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Service(b) => b.is_end_stream(),
            Inner::Own(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Service(b) => b.size_hint(),
            Inner::Own(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// The service of one connection: counts requests and sets the persistence headers.
struct KeepAliveService<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
}

impl<S, B> Service<Request<Incoming>> for KeepAliveService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let n = self.ctl.begin(&req);
        let guard = ActiveGuard(self.ctl.clone());
        let ctl = self.ctl.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            // The guard cut this request's body (malformed, or over the limit): the service
            // saw it fail; the client gets the reason, whatever the service said.
            let (mut parts, inner) = match (ctl.guard.body_reject(n), r) {
                (Some(rej), _) => {
                    ctl.lock().last = Some(Last::Rejected);
                    ctl.count_reject();
                    let body = rej.body();
                    let mut resp = Response::new(());
                    *resp.status_mut() = rej.status;
                    resp.extensions_mut()
                        .insert(hyper::ext::ReasonPhrase::from_static(
                            crate::guard::reason_phrase(rej.status).as_bytes(),
                        ));
                    let h = resp.headers_mut();
                    h.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                    (resp.into_parts().0, Inner::Own(Some(body)))
                }
                (None, Ok(resp)) => {
                    let (parts, body) = resp.into_parts();
                    (parts, Inner::Service(Box::pin(body)))
                }
                (None, Err(e)) => return Err(e),
            };
            ctl.decorate(&mut parts.headers, n);
            Ok(Response::from_parts(
                parts,
                TrackedBody {
                    inner,
                    _guard: guard,
                },
            ))
        })
    }
}

/// Whether a connection's error is the client leaving mid-exchange (a reset, or the end of
/// its stream inside a message) rather than something the server did or could fix.
fn aborted_by_peer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn serve_connection<I, S, B>(
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
    let (io, io_state) = Tracked::new(io);
    let (io, guard) = Guarded::new(
        io,
        Limits {
            max_header_size: config.max_header_size.max(1),
            max_body: config.client_max_body_size,
        },
    );
    let now = Instant::now();
    let ctl = Arc::new(ConnCtl {
        config: config.clone(),
        counters: counters.clone(),
        io: io_state.clone(),
        guard: guard.clone(),
        born: now,
        shutting: AtomicBool::new(false),
        rejected: AtomicBool::new(false),
        state: Mutex::new(CtlState {
            active: 0,
            idle_since: now,
            requests: 0,
            last: None,
        }),
        notify: Notify::new(),
    });
    io_state.arm();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(config.persistent())
        // A client may send its request and then its FIN (a half-close): it is still
        // answered, as nginx does, instead of the response being dropped at the FIN.
        .half_close(true)
        .header_read_timeout(None)
        .max_header_size(config.max_header_size.max(1));
    let conn = builder.serve_connection(
        TokioIo::new(io),
        KeepAliveService {
            inner: service,
            ctl: ctl.clone(),
        },
    );
    let mut conn = std::pin::pin!(conn);
    let mut graceful = *shutdown.borrow();
    if graceful {
        ctl.shutting.store(true, Ordering::Release);
        conn.as_mut().graceful_shutdown();
    }
    let mut detached = false;
    let mut rejecting = false;
    let outcome = loop {
        if !rejecting {
            // A refused request head: once the responses before it are out, close; the
            // guard writes the refusal before the FIN.
            if let Some(r) = guard.reject() {
                let mut st = ctl.lock();
                if r.in_body {
                    rejecting = true;
                } else if st.active == 0 {
                    st.last = Some(Last::Rejected);
                    drop(st);
                    ctl.count_reject();
                    rejecting = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        let deadline = ctl.deadline();
        tokio::select! {
            biased;
            r = conn.as_mut() => break Some(r),
            _ = ctl.notify.notified() => {}
            _ = io_state.notify().notified() => {}
            _ = guard.notify().notified(), if !rejecting => {}
            r = shutdown.changed(), if !graceful && !detached => match r {
                Ok(()) if *shutdown.borrow() => {
                    graceful = true;
                    ctl.shutting.store(true, Ordering::Release);
                    conn.as_mut().graceful_shutdown();
                }
                Ok(()) => {}
                Err(_) => detached = true,
            },
            _ = sleep_until(deadline.map(|d| d.0)) => {
                match deadline.map(|d| d.1) {
                    Some(Timeout::Idle) => inc(&counters.closed_idle),
                    Some(Timeout::Header) => inc(&counters.header_timeouts),
                    None => {}
                }
                // Dropping the connection closes the stream: a FIN, as it is idle (or a RST
                // if a request's bytes arrived unread, as the kernel does).
                break None;
            }
        }
    };
    let last = ctl.lock().last;
    if guard.reject().is_some() {
        ctl.count_reject();
    }
    match outcome {
        Some(Ok(())) if last.is_none() && !graceful => inc(&counters.closed_by_peer),
        Some(Ok(())) => {}
        Some(Err(e)) if aborted_by_peer(&e) => inc(&counters.aborted_by_peer),
        Some(Err(_)) => inc(&counters.errors),
        None => {}
    }
    counters.active_connections.fetch_sub(1, Ordering::Relaxed);
}
