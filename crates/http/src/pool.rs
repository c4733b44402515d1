//! A connection pool, apart from any wire protocol: connections of type `T` keyed by `K`
//! (for HTTP, the origin), with a limit of connections per key, a limit of idle ones, an idle
//! timeout, and a FIFO queue of waiters with a timeout when every connection is busy.
//!
//! A checkout yields either an idle connection ([`Checkout::Reused`]) or the right to open a
//! new one ([`Checkout::Connect`], a [`Slot`] counted against the limit until it is filled or
//! dropped). A connection in use is a [`Pooled`]: [`Pooled::release`] gives it back, reusable
//! or not; dropping it discards it. Idle connections are handed out most recently used first
//! (so that the others age out), and a waiter gets a connection the moment one is released.
//! A reaper task closes idle connections when their deadline passes, so that the client
//! closes before the server does.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// The pool's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections (idle, busy or being opened) per key at most.
    pub max_per_origin: usize,
    /// Idle connections kept per key at most (the oldest beyond it are closed).
    pub max_idle_per_origin: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// A checkout waits this long at most for a connection when the key is at its limit.
    pub pool_wait_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_per_origin: 8,
            max_idle_per_origin: 8,
            idle_timeout: Duration::from_secs(90),
            pool_wait_timeout: Duration::from_secs(30),
        }
    }
}

/// What the pool asks of a connection.
pub trait Poolable: Send + 'static {
    /// Whether this idle connection can carry another request now (still open, not past a
    /// deadline of its own).
    fn is_reusable(&self, now: Instant) -> bool;
    /// When it stops being reusable by the passing of time alone (the peer's keep-alive
    /// timeout, less a margin), if ever.
    fn expires_at(&self) -> Option<Instant>;
}

/// Why a checkout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Every connection stayed busy for the whole `pool_wait_timeout`.
    WaitTimeout(Duration),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::WaitTimeout(d) => write!(
                f,
                "no connection became free within the pool wait timeout ({d:?})"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

/// Why an idle connection left the pool without being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It was no longer reusable (closed by the peer, or past its own deadline).
    NotReusable,
    /// The pool's idle timeout, or the idle limit.
    Idle,
    /// Its slot went to a checkout that needed a fresh connection.
    MadeRoom,
}

/// Called with each connection the pool drops, and why.
pub type EvictHook<T> = Box<dyn Fn(&T, Eviction, Instant) + Send + Sync>;

/// The result of a checkout.
pub enum Checkout<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    /// An idle connection.
    Reused(Pooled<K, T>),
    /// Open a new connection and [`fill`](Slot::fill) the slot with it.
    Connect(Slot<K, T>),
}

/// The right to open one connection for a key; dropping it unfilled frees it.
pub struct Slot<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    pool: Arc<Shared<K, T>>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Slot<K, T> {
    /// The new connection, now in use.
    pub fn fill(mut self, conn: T) -> Pooled<K, T> {
        let key = self.key.take().expect("an unfilled slot has its key");
        Pooled {
            pool: self.pool.clone(),
            key,
            conn: Some(conn),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Drop for Slot<K, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.pool.put(key, None);
        }
    }
}

/// A connection in use. [`release`](Self::release) it when the exchange is over; dropping
/// it discards the connection (closing it).
pub struct Pooled<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    pool: Arc<Shared<K, T>>,
    key: K,
    conn: Option<T>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Pooled<K, T> {
    /// The connection.
    pub fn get(&self) -> &T {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until released")
    }

    /// The connection, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until released")
    }

    /// Gives the connection back: kept for reuse if `reusable`, else closed (dropped).
    pub fn release(mut self, reusable: bool) {
        let conn = self.conn.take();
        let key = self.key.clone();
        if reusable {
            self.pool.put(key, conn);
        } else {
            drop(conn);
            self.pool.put(key, None);
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Drop for Pooled<K, T> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            drop(c);
            self.pool.put(self.key.clone(), None);
        }
    }
}

/// What a waiter is handed.
enum Grant<T> {
    Conn(T),
    Slot,
}

/// A grant in flight to a waiter: if the waiter is gone (timed out, cancelled) before taking
/// it, dropping it gives it back to the pool.
struct Granted<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    pool: Weak<Shared<K, T>>,
    key: K,
    grant: Option<Grant<T>>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Drop for Granted<K, T> {
    fn drop(&mut self) {
        if let (Some(g), Some(pool)) = (self.grant.take(), self.pool.upgrade()) {
            match g {
                Grant::Conn(c) => pool.put(self.key.clone(), Some(c)),
                Grant::Slot => pool.put(self.key.clone(), None),
            }
        }
    }
}

struct Waiter<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    tx: oneshot::Sender<Granted<K, T>>,
    /// Wants a new connection, not an idle one.
    fresh: bool,
}

struct Idle<T> {
    conn: T,
    since: Instant,
}

struct Entry<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    /// Oldest first.
    idle: VecDeque<Idle<T>>,
    /// Connections counted against the limit: idle, in use, or being opened.
    open: usize,
    waiters: VecDeque<Waiter<K, T>>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Default for Entry<K, T> {
    fn default() -> Self {
        Entry {
            idle: VecDeque::new(),
            open: 0,
            waiters: VecDeque::new(),
        }
    }
}

struct Shared<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    config: PoolConfig,
    entries: Mutex<HashMap<K, Entry<K, T>>>,
    reaper: Arc<Notify>,
    on_evict: Option<EvictHook<T>>,
}

/// A pool of connections `T` keyed by `K`. Cheap to clone (a handle).
pub struct Pool<K: Eq + Hash + Clone + Send + 'static, T: Poolable> {
    shared: Arc<Shared<K, T>>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Clone for Pool<K, T> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> fmt::Debug for Pool<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Shared<K, T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<K, T>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deadline(&self, idle: &Idle<T>) -> Instant {
        let own = idle.conn.expires_at();
        let pool = idle.since + self.config.idle_timeout;
        own.map_or(pool, |t| t.min(pool))
    }

    fn evicted(&self, dropped: Vec<(T, Eviction)>) {
        let now = Instant::now();
        for (c, why) in dropped {
            if let Some(h) = &self.on_evict {
                h(&c, why, now);
            }
            drop(c);
        }
    }

    /// A connection comes back (`Some`), or a counted connection or slot is gone (`None`).
    fn put(self: &Arc<Self>, key: K, conn: Option<T>) {
        enum Unit<T> {
            Conn(T),
            Free,
            Handed,
        }
        let mut dropped = Vec::new();
        {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(&key) else {
                return;
            };
            let mut unit = match conn {
                Some(c) => Unit::Conn(c),
                None => Unit::Free,
            };
            // A waiter first, in arrival order.
            while let Some(w) = e.waiters.pop_front() {
                let mut closing = None;
                let grant = match std::mem::replace(&mut unit, Unit::Handed) {
                    Unit::Conn(c) if !w.fresh => Grant::Conn(c),
                    Unit::Conn(c) => {
                        // It wants a new connection: this one closes to make room.
                        closing = Some(c);
                        Grant::Slot
                    }
                    Unit::Free | Unit::Handed => Grant::Slot,
                };
                let g = Granted {
                    pool: Arc::downgrade(self),
                    key: key.clone(),
                    grant: Some(grant),
                };
                match w.tx.send(g) {
                    Ok(()) => {
                        if let Some(c) = closing {
                            dropped.push((c, Eviction::MadeRoom));
                        }
                        break;
                    }
                    Err(mut g) => {
                        // The waiter left: take the grant back (so that dropping it does
                        // not come back here) and try the next one.
                        unit = match (g.grant.take(), closing) {
                            (Some(Grant::Conn(c)), _) => Unit::Conn(c),
                            (_, Some(c)) => Unit::Conn(c),
                            _ => Unit::Free,
                        };
                    }
                }
            }
            match unit {
                Unit::Handed => {}
                Unit::Conn(c) => {
                    e.idle.push_back(Idle {
                        conn: c,
                        since: Instant::now(),
                    });
                    while e.idle.len() > self.config.max_idle_per_origin {
                        if let Some(old) = e.idle.pop_front() {
                            e.open = e.open.saturating_sub(1);
                            dropped.push((old.conn, Eviction::Idle));
                        }
                    }
                }
                Unit::Free => e.open = e.open.saturating_sub(1),
            }
            if e.open == 0 && e.idle.is_empty() && e.waiters.is_empty() {
                entries.remove(&key);
            }
        }
        self.reaper.notify_one();
        self.evicted(dropped);
    }

    /// Closes the idle connections past their deadline; returns the next deadline.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let mut dropped = Vec::new();
        let mut next: Option<Instant> = None;
        {
            let mut entries = self.lock();
            for e in entries.values_mut() {
                let mut keep = VecDeque::with_capacity(e.idle.len());
                while let Some(i) = e.idle.pop_front() {
                    let d = self.deadline(&i);
                    if d <= now {
                        e.open = e.open.saturating_sub(1);
                        let why = if i.conn.expires_at().is_some_and(|t| t <= now) {
                            Eviction::NotReusable
                        } else {
                            Eviction::Idle
                        };
                        dropped.push((i.conn, why));
                    } else {
                        next = Some(next.map_or(d, |n| n.min(d)));
                        keep.push_back(i);
                    }
                }
                e.idle = keep;
            }
            entries.retain(|_, e| e.open > 0 || !e.idle.is_empty() || !e.waiters.is_empty());
        }
        self.evicted(dropped);
        next
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Pool<K, T> {
    /// A pool with these limits. Inside a tokio runtime, a reaper task closes idle
    /// connections as their deadlines pass; outside one, they are only dropped when found
    /// expired at a checkout.
    pub fn new(config: PoolConfig) -> Pool<K, T> {
        Pool::with_evict_hook(config, None)
    }

    /// As [`new`](Self::new), calling `hook` with every connection dropped while idle.
    pub fn with_evict_hook(config: PoolConfig, hook: Option<EvictHook<T>>) -> Pool<K, T> {
        let shared = Arc::new(Shared {
            config,
            entries: Mutex::new(HashMap::new()),
            reaper: Arc::new(Notify::new()),
            on_evict: hook,
        });
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(reaper(Arc::downgrade(&shared), shared.reaper.clone()));
        }
        Pool { shared }
    }

    /// The limits.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Idle connections of `key` now.
    pub fn idle_count(&self, key: &K) -> usize {
        self.shared.lock().get(key).map_or(0, |e| e.idle.len())
    }

    /// Connections of `key` counted against the limit now (idle, busy, being opened).
    pub fn open_count(&self, key: &K) -> usize {
        self.shared.lock().get(key).map_or(0, |e| e.open)
    }

    /// An idle connection of `key` (most recently used first), or the right to open one if
    /// the key is under its limit, or else the first of either that comes free, waiting in
    /// line at most `pool_wait_timeout`. With `fresh`, only the right to open a new
    /// connection will do (an idle one is closed to make room if the key is at its limit).
    /// `waited` is set when the checkout had to queue.
    pub async fn checkout(
        &self,
        key: &K,
        fresh: bool,
        waited: &mut bool,
    ) -> Result<Checkout<K, T>, PoolError> {
        let shared = &self.shared;
        let mut dropped = Vec::new();
        let rx = {
            let mut entries = shared.lock();
            let e = entries.entry(key.clone()).or_default();
            let now = Instant::now();
            let mut found = None;
            if !fresh {
                while let Some(i) = e.idle.pop_back() {
                    let expired = shared.deadline(&i) <= now;
                    if !expired && i.conn.is_reusable(now) {
                        found = Some(i.conn);
                        break;
                    }
                    e.open = e.open.saturating_sub(1);
                    let why = if expired && i.since + shared.config.idle_timeout <= now {
                        Eviction::Idle
                    } else {
                        Eviction::NotReusable
                    };
                    dropped.push((i.conn, why));
                }
            }
            let r = if let Some(c) = found {
                Ok(Checkout::Reused(Pooled {
                    pool: shared.clone(),
                    key: key.clone(),
                    conn: Some(c),
                }))
            } else if e.open < shared.config.max_per_origin.max(1) {
                e.open += 1;
                Ok(Checkout::Connect(Slot {
                    pool: shared.clone(),
                    key: Some(key.clone()),
                }))
            } else if let (true, Some(old)) = (fresh, e.idle.pop_front()) {
                // Make room: the oldest idle connection's count goes to the new one.
                dropped.push((old.conn, Eviction::MadeRoom));
                Ok(Checkout::Connect(Slot {
                    pool: shared.clone(),
                    key: Some(key.clone()),
                }))
            } else {
                let (tx, rx) = oneshot::channel();
                e.waiters.push_back(Waiter { tx, fresh });
                Err(rx)
            };
            drop(entries);
            match r {
                Ok(c) => {
                    shared.evicted(dropped);
                    return Ok(c);
                }
                Err(rx) => rx,
            }
        };
        shared.evicted(dropped);
        *waited = true;
        let mut rx = rx;
        let got = match tokio::time::timeout(shared.config.pool_wait_timeout, &mut rx).await {
            Ok(Ok(g)) => Some(g),
            Ok(Err(_)) => None,
            Err(_) => {
                // A grant may have been sent just as the time ran out: take it if so.
                rx.close();
                rx.try_recv().ok()
            }
        };
        let Some(mut g) = got else {
            return Err(PoolError::WaitTimeout(shared.config.pool_wait_timeout));
        };
        match g.grant.take() {
            Some(Grant::Conn(c)) => Ok(Checkout::Reused(Pooled {
                pool: shared.clone(),
                key: key.clone(),
                conn: Some(c),
            })),
            Some(Grant::Slot) | None => Ok(Checkout::Connect(Slot {
                pool: shared.clone(),
                key: Some(key.clone()),
            })),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Poolable> Drop for Pool<K, T> {
    fn drop(&mut self) {
        // Lets the reaper notice when the last handle is gone.
        self.shared.reaper.notify_one();
    }
}

/// Closes idle connections as their deadlines pass, until the pool is gone. It holds the
/// pool weakly, so that dropping the last handle (and lease) drops the idle connections.
async fn reaper<K: Eq + Hash + Clone + Send + 'static, T: Poolable>(
    pool: Weak<Shared<K, T>>,
    notify: Arc<Notify>,
) {
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
