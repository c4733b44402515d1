//! One connection's state, shared by its driver (`h1.rs`, `h2.rs`), its service and its
//! response bodies: requests counted, responses in flight, when it is idle, why it closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::guard::GuardState;
use crate::headers::{wants_close, KeepAlive, KEEP_ALIVE};
use crate::io::IoState;
use crate::metrics::{inc, ServerCounters};

use super::{BoxError, ServerConfig};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Http1,
    Http2,
}

/// Why a connection is closing after its current response (HTTP/1.1) or stream (HTTP/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Last {
    ClientAsked,
    MaxRequests,
    MaxTime,
    Disabled,
    Shutdown,
    /// The guard refused a request (its response says why).
    Rejected,
}

pub(crate) struct CtlState {
    /// Responses produced and not yet fully written.
    pub active: usize,
    pub idle_since: Instant,
    pub requests: u64,
    pub last: Option<Last>,
}

/// What a driver waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// `keepalive_timeout` between requests.
    Idle,
    /// `header_read_timeout`: a request head (or, on HTTP/2, the first stream).
    Header,
    /// `send_timeout`: responses wait and the client takes none of their bytes.
    Send,
    /// HTTP/2: a `GOAWAY` was sent, no stream is open, and the client has not let the
    /// connection end.
    Grace,
}

/// One connection's state.
pub(crate) struct ConnCtl {
    pub config: Arc<ServerConfig>,
    pub counters: Arc<ServerCounters>,
    pub io: Arc<IoState>,
    pub guard: Arc<GuardState>,
    pub proto: Proto,
    pub born: Instant,
    pub shutting: AtomicBool,
    /// The guard's refusal was counted.
    pub rejected: AtomicBool,
    pub state: Mutex<CtlState>,
    /// The connection driver's one wake-up, shared with the HTTP/1.1 guard: whatever may
    /// bring the deadline earlier or end the connection notifies it.
    pub notify: Arc<Notify>,
    /// When the driver's [`Alarm`] goes off, in nanoseconds since `born` plus one (0: it is
    /// not armed). A change that brings a deadline no earlier than this needs no wake-up:
    /// the driver looks at its deadline again when the alarm goes off.
    alarm_at: AtomicU64,
    /// Response bodies that gave hyper data (or were made) and have not been asked for more
    /// since: they wait for the client to take bytes.
    waiting: AtomicUsize,
    /// When hyper last asked a response body for data, in nanoseconds since `born`.
    progress: AtomicU64,
}

impl ConnCtl {
    pub(crate) fn new(
        config: Arc<ServerConfig>,
        counters: Arc<ServerCounters>,
        io: Arc<IoState>,
        guard: Arc<GuardState>,
        notify: Arc<Notify>,
        proto: Proto,
    ) -> ConnCtl {
        let now = Instant::now();
        ConnCtl {
            config,
            counters,
            io,
            guard,
            proto,
            born: now,
            shutting: AtomicBool::new(false),
            rejected: AtomicBool::new(false),
            state: Mutex::new(CtlState {
                active: 0,
                idle_since: now,
                requests: 0,
                last: None,
            }),
            notify,
            alarm_at: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, CtlState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An HTTP/1.1 request head was read: the connection is busy.
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
        // The header and idle timeouts stop while a request is served: a deadline that goes
        // away needs no wake-up (the alarm going off finds nothing due).
        st.requests
    }

    /// The driver armed its alarm for `at` (`None`: unarmed).
    pub(crate) fn alarm_set(&self, at: Option<Instant>) {
        let v = at.map_or(0, |t| self.since_born(t));
        self.alarm_at.store(v, Ordering::SeqCst);
    }

    /// How old the connection is (by the [coarse](crate::io::now) clock).
    fn age(&self) -> Duration {
        crate::io::now().saturating_duration_since(self.born)
    }

    fn since_born(&self, t: Instant) -> u64 {
        crate::io::stamp(self.born, t)
    }

    /// Wakes the driver if a deadline at `at` comes before its alarm.
    fn wake_for(&self, at: Option<Instant>) {
        let Some(at) = at else { return };
        let armed = self.alarm_at.load(Ordering::SeqCst);
        if armed == 0 || self.since_born(at) < armed {
            self.notify.notify_one();
        }
    }

    /// An HTTP/2 stream's request arrived. `None`: it comes after the connection's last
    /// allowed stream and is refused (the `GOAWAY` saying so is on its way).
    fn begin_stream(&self) -> Option<u64> {
        let cfg = &self.config;
        let mut st = self.lock();
        if matches!(st.last, Some(Last::MaxRequests | Last::MaxTime)) {
            drop(st);
            inc(&self.counters.h2_refused_streams);
            return None;
        }
        st.active += 1;
        st.requests += 1;
        inc(&self.counters.requests);
        self.counters
            .max_requests_per_connection
            .fetch_max(st.requests, Ordering::Relaxed);
        let was_last = st.last.is_some();
        if st.last.is_none() && !self.shutting.load(Ordering::Acquire) {
            // nginx: the stream that reaches keepalive_requests (or comes after
            // keepalive_time) is served, and the connection sends GOAWAY.
            st.last = if st.requests >= cfg.keepalive_requests.max(1) {
                inc(&self.counters.closed_max_requests);
                Some(Last::MaxRequests)
            } else if self.age() >= cfg.keepalive_time {
                inc(&self.counters.closed_max_time);
                Some(Last::MaxTime)
            } else {
                None
            };
        }
        let n = st.requests;
        let now_last = st.last.is_some();
        drop(st);
        if now_last != was_last {
            // The driver sends the GOAWAY.
            self.notify.notify_one();
        }
        Some(n)
    }

    /// Counts the guard's refusal of a request, once.
    pub(crate) fn count_reject(&self) {
        if !self.rejected.swap(true, Ordering::AcqRel) {
            inc(&self.counters.rejected_requests);
        }
    }

    /// A response is done (written, or abandoned).
    fn end(&self) {
        let mut st = self.lock();
        st.active = st.active.saturating_sub(1);
        if st.active > 0 {
            return;
        }
        let now = crate::io::now();
        st.idle_since = now;
        if self.proto == Proto::Http1 {
            self.io.arm();
        }
        let closing = st.last.is_some() || self.shutting.load(Ordering::Acquire);
        drop(st);
        if closing || self.guard.refused() {
            // The connection ends (HTTP/2: the grace period after GOAWAY starts; HTTP/1.1:
            // a refused request waited for the responses before it).
            self.notify.notify_one();
        } else {
            // The header or idle timeout starts, whichever comes first.
            let cfg = &self.config;
            self.wake_for(Some(
                now + cfg.keepalive_timeout.min(cfg.header_read_timeout),
            ));
        }
    }

    /// Hyper asked a response body for data: the client took what came before.
    fn progressed(&self) {
        let t = self.age().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.progress.fetch_max(t, Ordering::Relaxed);
    }

    fn start_waiting(&self) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
            self.wake_for(self.send_deadline().map(|d| d.0));
        }
    }

    fn stop_waiting(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// When responses that wait for the client have waited too long (`send_timeout`).
    pub(crate) fn send_deadline(&self) -> Option<(Instant, Timeout)> {
        let t = self.config.send_timeout;
        if t.is_zero() || self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let last = self.born + Duration::from_nanos(self.progress.load(Ordering::Relaxed));
        Some((last + t, Timeout::Send))
    }

    /// Sets the persistence headers of the `n`th HTTP/1.1 response.
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
            } else if self.age() >= cfg.keepalive_time {
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

    /// HTTP/1.1: when the driver must close the connection, if nothing happens first.
    pub(crate) fn deadline(&self) -> Option<(Instant, Timeout)> {
        let st = self.lock();
        if st.active > 0 || st.last.is_some() {
            drop(st);
            return self.send_deadline();
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

    /// HTTP/2: the same, `closing_since` being when the connection's first `GOAWAY` went out
    /// (if it did).
    pub(crate) fn stream_deadline(
        &self,
        closing_since: Option<Instant>,
        grace: Duration,
    ) -> Option<(Instant, Timeout)> {
        let st = self.lock();
        if st.active > 0 {
            drop(st);
            return self.send_deadline();
        }
        if let Some(t) = closing_since {
            return Some((t + grace, Timeout::Grace));
        }
        let cfg = &self.config;
        if st.requests == 0 {
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

pin_project_lite::pin_project! {
    /// A response body that marks the connection idle once hyper has written it all (and
    /// dropped it): the service's, or the server's own when it refused the request. It also
    /// notes when hyper asks it for more (the client took what came before), for
    /// `send_timeout`. The service's body is held in place, not boxed.
    pub struct TrackedBody<B> {
        #[pin]
        inner: Inner<B>,
        activity: Activity,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Service { #[pin] body: B },
        Own { body: Option<Bytes> },
    }
}

/// A response's activity: whether its body waits for the client, and the guard that ends
/// the response when dropped (after the waiting stops).
struct Activity {
    /// It gave hyper data (or was just made) and has not been asked for more since.
    waiting: bool,
    guard: ActiveGuard,
}

impl Activity {
    fn set_waiting(&mut self, w: bool) {
        if w != self.waiting {
            self.waiting = w;
            if w {
                self.guard.0.start_waiting();
            } else {
                self.guard.0.stop_waiting();
            }
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if self.waiting {
            self.guard.0.stop_waiting();
        }
    }
}

impl<B> TrackedBody<B> {
    fn new(inner: Inner<B>, guard: ActiveGuard) -> TrackedBody<B> {
        guard.0.progressed();
        guard.0.start_waiting();
        TrackedBody {
            inner,
            activity: Activity {
                waiting: true,
                guard,
            },
        }
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let me = self.project();
        me.activity.guard.0.progressed();
        let r = match me.inner.project() {
            InnerProj::Service { body } => body.poll_frame(cx),
            InnerProj::Own { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        };
        me.activity
            .set_waiting(matches!(r, Poll::Ready(Some(Ok(_)))));
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Service { body } => body.is_end_stream(),
            Inner::Own { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Service { body } => body.size_hint(),
            Inner::Own { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The service of one connection: counts requests and applies the persistence policy.
pub(crate) struct KeepAliveService<S> {
    pub inner: S,
    pub ctl: Arc<ConnCtl>,
}

/// A response of the server's own: `status`, a line of text.
fn own_response(status: StatusCode, body: Bytes) -> http::response::Parts {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            crate::guard::reason_phrase(status).as_bytes(),
        ));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp.into_parts().0
}

/// What [`ServiceFuture`] does with the service's response.
enum Then<B> {
    /// The `n`th HTTP/1.1 request's: the persistence headers, or the guard's refusal.
    Http1 { n: u64, guard: ActiveGuard },
    /// An HTTP/2 stream's: tracked as it is.
    Http2 { guard: ActiveGuard },
    /// No service call: this answer.
    Ready(Result<Response<TrackedBody<B>>, BoxError>),
}

pin_project_lite::pin_project! {
    /// [`KeepAliveService`]'s response future: the service's future held in place (no box
    /// per request), then the policy applied to its response.
    pub(crate) struct ServiceFuture<F, B> {
        #[pin]
        call: Option<F>,
        then: Option<Then<B>>,
    }
}

impl<F, B> ServiceFuture<F, B> {
    fn ready(r: Result<Response<TrackedBody<B>>, BoxError>) -> ServiceFuture<F, B> {
        ServiceFuture {
            call: None,
            then: Some(Then::Ready(r)),
        }
    }
}

impl<F, B, E> Future for ServiceFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<TrackedBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        let r = match me.call.as_pin_mut() {
            Some(f) => Some(std::task::ready!(f.poll(cx))),
            None => None,
        };
        Poll::Ready(match (me.then.take(), r) {
            (Some(Then::Ready(out)), _) => out,
            (Some(Then::Http1 { n, guard }), Some(r)) => http1_response(n, guard, r),
            (Some(Then::Http2 { guard }), Some(r)) => {
                let (parts, body) = r.map_err(Into::into)?.into_parts();
                Ok(Response::from_parts(
                    parts,
                    TrackedBody::new(Inner::Service { body }, guard),
                ))
            }
            _ => Err("a response future polled after it completed".into()),
        })
    }
}

/// The `n`th HTTP/1.1 response, from the service's.
fn http1_response<B, E: Into<BoxError>>(
    n: u64,
    guard: ActiveGuard,
    r: Result<Response<B>, E>,
) -> Result<Response<TrackedBody<B>>, BoxError> {
    let ctl = &guard.0;
    // The guard cut this request's body (malformed, or over the limit): the service saw it
    // fail; the client gets the reason, whatever the service said.
    let (mut parts, inner) = match (ctl.guard.body_reject(n), r) {
        (Some(rej), _) => {
            ctl.lock().last = Some(Last::Rejected);
            ctl.count_reject();
            let body = rej.body();
            (
                own_response(rej.status, body.clone()),
                Inner::Own { body: Some(body) },
            )
        }
        (None, Ok(resp)) => {
            let (parts, body) = resp.into_parts();
            (parts, Inner::Service { body })
        }
        (None, Err(e)) => return Err(e.into()),
    };
    ctl.decorate(&mut parts.headers, n);
    Ok(Response::from_parts(parts, TrackedBody::new(inner, guard)))
}

impl<S, B> KeepAliveService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
{
    fn call_http1(&self, req: Request<Incoming>) -> ServiceFuture<S::Future, B> {
        let n = self.ctl.begin(&req);
        let guard = ActiveGuard(self.ctl.clone());
        ServiceFuture {
            call: Some(self.inner.call(req)),
            then: Some(Then::Http1 { n, guard }),
        }
    }

    fn call_http2(&self, req: Request<Incoming>) -> ServiceFuture<S::Future, B> {
        if self.ctl.begin_stream().is_none() {
            // RFC 9113 §8.7: REFUSED_STREAM says the request was not processed at all, so
            // the client may retry it on another connection whatever its method.
            return ServiceFuture::ready(Err(Box::new(h2::Error::from(
                h2::Reason::REFUSED_STREAM,
            ))));
        }
        let guard = ActiveGuard(self.ctl.clone());
        let max = self.ctl.config.client_max_body_size;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if max > 0 && declared.is_some_and(|n| n > max) {
            // RFC 9110 §15.5.14, before any of the body is read (h2 itself holds the stream
            // to its Content-Length, RFC 9113 §8.1.1).
            self.ctl.count_reject();
            let body = Bytes::from(format!(
                "{}: the body ({} bytes) is over the limit of {max} bytes\n",
                crate::guard::reason_phrase(StatusCode::PAYLOAD_TOO_LARGE),
                declared.unwrap_or(0)
            ));
            let parts = own_response(StatusCode::PAYLOAD_TOO_LARGE, body.clone());
            return ServiceFuture::ready(Ok(Response::from_parts(
                parts,
                TrackedBody::new(Inner::Own { body: Some(body) }, guard),
            )));
        }
        ServiceFuture {
            call: Some(self.inner.call(req)),
            then: Some(Then::Http2 { guard }),
        }
    }
}

impl<S, B> Service<Request<Incoming>> for KeepAliveService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = BoxError;
    type Future = ServiceFuture<S::Future, B>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        match self.ctl.proto {
            Proto::Http1 => self.call_http1(req),
            Proto::Http2 => self.call_http2(req),
        }
    }
}

/// Whether a connection's error is the client leaving mid-exchange (a reset, or the end of
/// its stream inside a message) rather than something the server did or could fix.
pub(crate) fn aborted_by_peer(e: &hyper::Error) -> bool {
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

/// A connection driver's one timer. It is armed at the earliest deadline it was given and
/// moved only when a deadline comes earlier than that, or after it fired (the driver then
/// looks at its deadline again and re-arms). So a deadline that only moves later, as the
/// idle timeout does with every request, costs no timer operation per request.
pub(crate) struct Alarm {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl Alarm {
    pub(crate) fn new() -> Alarm {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// Makes sure the alarm goes off no later than `at`.
    pub(crate) fn arm(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            if self.armed.is_none_or(|a| at < a) {
                self.sleep.as_mut().reset(at);
                self.armed = Some(at);
            }
        }
    }

    /// Completes when the armed instant has come (never, if unarmed); then it is unarmed.
    pub(crate) async fn fired(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }

    /// When it goes off, if armed.
    pub(crate) fn armed(&self) -> Option<Instant> {
        self.armed
    }
}
