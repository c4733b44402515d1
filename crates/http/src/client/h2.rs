//! The pool's policy for HTTP/2 (RFC 9113): one connection per origin carries every
//! concurrent request, each as a stream.
//!
//! A request takes a stream on a usable connection to its origin that has room: fewer
//! streams in flight than the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (§5.1.2), or, until
//! its SETTINGS arrive, than what the client assumes (the limit learned from the origin's
//! other connections, else `initial_max_concurrent_streams`; §6.5.2 recommends servers
//! allow at least 100). When every connection is at its limit the request waits for a
//! stream to end (§9.1: "clients SHOULD NOT open more than one HTTP/2 connection to a given
//! host and port pair"), or, with `enable_multiple_connections`, the pool opens another
//! connection (Go's `StrictMaxConcurrentStreams = false`, .NET's
//! `EnableMultipleHttp2Connections`), counting each connection being opened as room for
//! the streams it is expected to carry, so that N waiting requests open N / limit
//! connections, not N. Only one connection is opened at a time when there is none to use:
//! the requests that arrive meanwhile wait for it (and share its failure, if it fails).
//!
//! A connection is not used for new streams once a GOAWAY arrived on it (§6.8), once a
//! PING went unanswered (hyper's keep-alive timeout closes it), or once it closed; its
//! streams in flight finish on it. An idle connection is closed after the pool's idle
//! timeout.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::frames::PeerState;
use super::ConnMeta;
use crate::connector::Origin;
use crate::metrics::{inc, ClientCounters};

/// What the HTTP/2 pool needs of the client's settings.
#[derive(Debug, Clone)]
pub(crate) struct H2PoolConfig {
    pub multiple_connections: bool,
    pub max_connections: usize,
    pub initial_max_concurrent_streams: u32,
    pub idle_timeout: Duration,
    pub wait_timeout: Duration,
}

/// One HTTP/2 connection, shared by the requests whose streams it carries.
pub(crate) struct H2Conn {
    pub(crate) id: u64,
    pub(crate) sender: SendRequest<Full<Bytes>>,
    pub(crate) peer: Arc<PeerState>,
    pub(crate) meta: ConnMeta,
    /// When its handshakes ended (it could carry streams from then on).
    pub(crate) ready_at: Instant,
    /// Streams assumed allowed until the server's SETTINGS arrive.
    expected: u32,
    in_flight: AtomicUsize,
    streams: AtomicU64,
    idle_since: Mutex<Instant>,
    /// The origin's waiters, woken when a stream ends.
    notify: Arc<Notify>,
}

impl H2Conn {
    pub(crate) fn new(
        id: u64,
        sender: SendRequest<Full<Bytes>>,
        peer: Arc<PeerState>,
        meta: ConnMeta,
        expected: u32,
        notify: Arc<Notify>,
    ) -> H2Conn {
        let now = Instant::now();
        H2Conn {
            id,
            sender,
            peer,
            meta,
            ready_at: now,
            expected,
            in_flight: AtomicUsize::new(0),
            streams: AtomicU64::new(0),
            idle_since: Mutex::new(now),
            notify,
        }
    }

    /// Whether it may carry new streams.
    pub(crate) fn usable(&self) -> bool {
        !self.peer.is_closed()
            && !self.peer.ping_failed()
            && self.peer.goaway().is_none()
            && !self.sender.is_closed()
    }

    /// Streams allowed in flight at once.
    fn limit(&self) -> usize {
        self.peer.max_concurrent_streams().unwrap_or(self.expected) as usize
    }

    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < self.limit()
    }

    /// Counts a new stream on it; its number on the connection (1 for the first).
    pub(crate) fn next_stream(&self) -> u64 {
        self.streams.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Streams in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream taken on a connection; dropping it gives the stream back.
pub(crate) struct StreamLease {
    conn: Arc<H2Conn>,
    reaper: Arc<Notify>,
}

impl StreamLease {
    pub(crate) fn conn(&self) -> &Arc<H2Conn> {
        &self.conn
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        *self
            .conn
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.reaper.notify_one();
        }
        self.conn.notify.notify_waiters();
    }
}

#[derive(Default)]
struct Entry {
    /// Usable connections (those that stopped being usable are dropped at the next look).
    conns: Vec<Arc<H2Conn>>,
    /// Connections being opened.
    connecting: usize,
    /// Requests waiting for a stream or a connection.
    waiting: usize,
    /// Connection attempts that failed, and the last one's error.
    failures: u64,
    last_error: Option<(io::ErrorKind, String)>,
    /// The server's limit as last seen on one of its connections.
    learned: Option<u32>,
    /// A connection opened for HTTP/2 negotiated HTTP/1.1 (ALPN): the waiters go there.
    speaks_http1: bool,
    notify: Arc<Notify>,
}

struct Shared {
    config: H2PoolConfig,
    entries: Mutex<HashMap<Origin, Entry>>,
    reaper: Arc<Notify>,
    counters: Arc<ClientCounters>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<Origin, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lease(&self, conn: &Arc<H2Conn>) -> StreamLease {
        let n = conn.in_flight.fetch_add(1, Ordering::AcqRel) as u64 + 1;
        self.counters
            .h2_max_concurrent_streams
            .fetch_max(n, Ordering::Relaxed);
        StreamLease {
            conn: conn.clone(),
            reaper: self.reaper.clone(),
        }
    }

    /// Drops idle connections past the idle timeout and unusable ones; returns the next
    /// idle deadline.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut dropped = Vec::new();
        {
            let mut entries = self.lock();
            for e in entries.values_mut() {
                e.conns.retain(|c| {
                    if !c.usable() {
                        dropped.push(c.clone());
                        return false;
                    }
                    if c.in_flight() == 0 {
                        let d = c.idle_since() + self.config.idle_timeout;
                        if d <= now {
                            inc(&self.counters.evicted_idle);
                            dropped.push(c.clone());
                            return false;
                        }
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                    true
                });
            }
            // Entries stay (one per origin the client ever spoke HTTP/2 to): a connection
            // keeps its origin's notifier for its whole life.
        }
        drop(dropped);
        next
    }
}

/// What a request gets from the pool.
pub(crate) enum Acquired {
    /// A stream on a connection.
    Stream(StreamLease),
    /// The right (and duty) to open a connection: [`Ticket::fill`] it.
    Open(Ticket),
    /// The origin turned out to speak HTTP/1.1 only.
    Http1,
}

/// Why no stream could be had.
#[derive(Debug)]
pub(crate) enum AcquireError {
    /// Nothing came free within the pool's wait timeout.
    Timeout(Duration),
    /// The connection the request waited for could not be opened.
    Connect(io::ErrorKind, String),
}

/// How a request waited.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Waited {
    /// It waited at all.
    pub any: bool,
    /// It waited because every connection was at its stream limit.
    pub for_stream: bool,
}

/// A connection being opened for an origin; dropping it unfilled gives up the attempt.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    origin: Origin,
    armed: bool,
}

impl Ticket {
    /// The connection is open: it joins the pool, with a stream for the opener.
    pub(crate) fn fill(mut self, conn: H2Conn) -> StreamLease {
        self.armed = false;
        let conn = Arc::new(conn);
        let lease = self.shared.lease(&conn);
        let mut entries = self.shared.lock();
        let e = entries.entry(self.origin.clone()).or_default();
        e.connecting = e.connecting.saturating_sub(1);
        e.speaks_http1 = false;
        e.conns.push(conn);
        e.notify.notify_waiters();
        lease
    }

    /// The connection could not be opened: the requests that waited for it fail too.
    pub(crate) fn failed(mut self, kind: io::ErrorKind, message: String) {
        self.armed = false;
        let mut entries = self.shared.lock();
        let e = entries.entry(self.origin.clone()).or_default();
        e.connecting = e.connecting.saturating_sub(1);
        e.failures += 1;
        e.last_error = Some((kind, message));
        e.notify.notify_waiters();
    }

    /// The connection negotiated HTTP/1.1: the waiters go to the HTTP/1.1 pool.
    pub(crate) fn speaks_http1(mut self) {
        self.armed = false;
        let mut entries = self.shared.lock();
        let e = entries.entry(self.origin.clone()).or_default();
        e.connecting = e.connecting.saturating_sub(1);
        e.speaks_http1 = true;
        e.notify.notify_waiters();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.armed {
            let mut entries = self.shared.lock();
            if let Some(e) = entries.get_mut(&self.origin) {
                e.connecting = e.connecting.saturating_sub(1);
                e.notify.notify_waiters();
            }
        }
    }
}

/// Takes a request off an origin's wait count when it stops waiting (woken, timed out, or
/// cancelled).
struct WaitGuard<'a> {
    shared: &'a Shared,
    origin: &'a Origin,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.shared.lock().get_mut(self.origin) {
            e.waiting = e.waiting.saturating_sub(1);
        }
    }
}

/// The HTTP/2 connections of a client, by origin.
pub(crate) struct H2Pool {
    shared: Arc<Shared>,
}

impl H2Pool {
    /// Inside a tokio runtime, a reaper task closes idle connections as they pass the idle
    /// timeout.
    pub(crate) fn new(config: H2PoolConfig, counters: Arc<ClientCounters>) -> H2Pool {
        let shared = Arc::new(Shared {
            config,
            entries: Mutex::new(HashMap::new()),
            reaper: Arc::new(Notify::new()),
            counters,
        });
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(reaper(Arc::downgrade(&shared), shared.reaper.clone()));
        }
        H2Pool { shared }
    }

    /// Usable HTTP/2 connections to `origin` now (not counting those going away).
    pub(crate) fn connections(&self, origin: &Origin) -> usize {
        self.shared
            .lock()
            .get(origin)
            .map_or(0, |e| e.conns.iter().filter(|c| c.usable()).count())
    }

    /// Streams in flight to `origin` now, on its usable connections.
    pub(crate) fn streams_in_flight(&self, origin: &Origin) -> usize {
        self.shared.lock().get(origin).map_or(0, |e| {
            e.conns
                .iter()
                .filter(|c| c.usable())
                .map(|c| c.in_flight())
                .sum()
        })
    }

    /// Adds a connection opened elsewhere (an HTTP/1.1 checkout whose ALPN said `h2`).
    pub(crate) fn adopt(&self, origin: &Origin, conn: H2Conn) {
        let mut entries = self.shared.lock();
        let e = entries.entry(origin.clone()).or_default();
        e.speaks_http1 = false;
        e.conns.push(Arc::new(conn));
        e.notify.notify_waiters();
        drop(entries);
        self.shared.reaper.notify_one();
    }

    /// The reaper's notifier (a connection that stops being usable wakes it).
    pub(crate) fn reaper(&self) -> Arc<Notify> {
        self.shared.reaper.clone()
    }

    /// The origin's waiters' notifier (a connection's frames wake them).
    pub(crate) fn notify(&self, origin: &Origin) -> Arc<Notify> {
        self.shared
            .lock()
            .entry(origin.clone())
            .or_default()
            .notify
            .clone()
    }

    /// Streams to assume allowed on a new connection to `origin` until its SETTINGS arrive.
    pub(crate) fn expected_streams(&self, origin: &Origin) -> u32 {
        self.shared
            .lock()
            .get(origin)
            .and_then(|e| e.learned)
            .unwrap_or(self.shared.config.initial_max_concurrent_streams)
            .max(1)
    }

    /// A stream on a connection to `origin` (not connection `avoid`), or the duty to open a
    /// connection, waiting as the policy says (see the [module documentation](self)).
    pub(crate) async fn acquire(
        &self,
        origin: &Origin,
        avoid: Option<u64>,
        waited: &mut Waited,
    ) -> Result<Acquired, AcquireError> {
        let shared = &*self.shared;
        let config = &shared.config;
        let deadline = Instant::now() + config.wait_timeout;
        let mut failures_before: Option<u64> = None;
        loop {
            let (notified, guard) = {
                let mut entries = shared.lock();
                let e = entries.entry(origin.clone()).or_default();
                if e.speaks_http1 {
                    return Ok(Acquired::Http1);
                }
                e.conns.retain(|c| c.usable());
                if let Some(m) = e
                    .conns
                    .iter()
                    .rev()
                    .find_map(|c| c.peer.max_concurrent_streams())
                {
                    e.learned = Some(m);
                }
                let usable = || e.conns.iter().filter(|c| Some(c.id) != avoid);
                // The oldest connection with room first: streams gather on few connections.
                if let Some(c) = usable().find(|c| c.has_room()) {
                    return Ok(Acquired::Stream(shared.lease(c)));
                }
                let any_usable = usable().next().is_some();
                let before = *failures_before.get_or_insert(e.failures);
                if e.failures > before && !any_usable && e.connecting == 0 {
                    if let Some((kind, m)) = &e.last_error {
                        return Err(AcquireError::Connect(*kind, m.clone()));
                    }
                }
                let expected = e
                    .learned
                    .unwrap_or(config.initial_max_concurrent_streams)
                    .max(1) as usize;
                let open = if !any_usable && e.connecting == 0 {
                    true
                } else if config.multiple_connections
                    && e.conns.len() + e.connecting < config.max_connections.max(1)
                {
                    // Demand (the waiting, those opening, and this request) beyond what
                    // the connections being opened are expected to carry.
                    e.waiting + e.connecting + 1 > e.connecting * expected
                } else {
                    false
                };
                if open {
                    e.connecting += 1;
                    return Ok(Acquired::Open(Ticket {
                        shared: self.shared.clone(),
                        origin: origin.clone(),
                        armed: true,
                    }));
                }
                if any_usable && !waited.for_stream {
                    waited.for_stream = true;
                    inc(&shared.counters.h2_stream_waits);
                }
                waited.any = true;
                e.waiting += 1;
                let mut notified = Box::pin(e.notify.clone().notified_owned());
                notified.as_mut().enable();
                (notified, WaitGuard { shared, origin })
            };
            let r = tokio::time::timeout_at(deadline, notified).await;
            drop(guard);
            if r.is_err() {
                return Err(AcquireError::Timeout(config.wait_timeout));
            }
        }
    }
}

impl Drop for H2Pool {
    fn drop(&mut self) {
        // Lets the reaper notice when the last handle is gone.
        self.shared.reaper.notify_one();
    }
}

/// Closes idle connections as they pass the idle timeout, until the pool is gone.
async fn reaper(pool: Weak<Shared>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(p) = pool.upgrade() else { return };
            p.reap(Instant::now())
        };
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            _ = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
