//! The TCP endpoint of one host: demultiplexing segments to connections by 4-tuple and to
//! listeners by port, passive opens with a bounded backlog, ephemeral ports, RSTs for segments
//! that match nothing, and one timer queue for every connection. Still sans-IO: the stack hands
//! it parsed segments and `now`, and polls it for segments and its next deadline.

use core::hash::BuildHasher;
use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use synack_wire::checksum;
use synack_wire::tcp::fill_checksum;
use synack_wire::{FastOpen, TcpFlags, TcpOptions, TcpRepr};

use crate::config::Config;
use crate::conn::{Connection, Event, MarksStorage, TimeWait};
use crate::fastopen::{ClientCache, FastOpenKey};
use crate::hash::TupleHashBuilder;
use crate::isn::IsnGenerator;
use crate::segbuf::{SegmentBuf, SliceBuf};
use crate::seq::SeqNum;
use crate::state::{ConnectionError, FourTuple, State};
use crate::table::ConnTable;
use crate::time::Instant;
use crate::trace::{Direction, SegmentInfo, TraceEvent, TraceRecord};

/// A connection of this endpoint. Stale handles (to a slot reused since) are detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

/// A listening socket of this endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(NonZeroU32);

impl core::fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ListenerId").field(&self.index()).finish()
    }
}

impl ListenerId {
    /// Listener `index` (stored plus one, so that `Option<ListenerId>` takes 4 bytes).
    fn from_index(index: usize) -> ListenerId {
        ListenerId(NonZeroU32::MIN.saturating_add(index as u32))
    }

    #[inline]
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// How an active open starts (see [`Endpoint::connect_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Use TCP Fast Open (RFC 7413) if the endpoint's client side is on: the SYN carries the
    /// cached cookie and as much of the data queued before it leaves as fits (see
    /// [`Connection::fast_open_syn_room`]), or asks for a cookie when none is cached.
    pub fast_open: bool,
    /// With `fast_open` and a cookie to use: hold the SYN until the first `send`, so that it
    /// carries that data (Linux's `TCP_FASTOPEN_CONNECT`).
    pub defer_syn: bool,
}

/// Why `listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenError {
    /// Another listener has the address and port.
    AddrInUse,
    /// Port 0 cannot be listened on.
    InvalidPort,
}

/// Why `connect` failed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// Every ephemeral port to that destination is taken.
    NoEphemeralPort,
    /// The requested local port is in use with that peer.
    AddrInUse,
    /// Local and remote address families differ, or the remote is unspecified.
    InvalidAddress,
    /// The endpoint holds `Config::max_connections` already.
    TooManyConnections,
    /// The endpoint's buffers hold `Config::max_buffer_bytes` already.
    NoBuffers,
}

impl core::fmt::Display for ListenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ListenError::AddrInUse => "address in use",
            ListenError::InvalidPort => "invalid port",
        })
    }
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConnectError::NoEphemeralPort => "no ephemeral port free",
            ConnectError::AddrInUse => "address in use",
            ConnectError::InvalidAddress => "invalid address",
            ConnectError::TooManyConnections => "connection limit reached (max_connections)",
            ConnectError::NoBuffers => "buffer memory limit reached (max_buffer_bytes)",
        })
    }
}

impl std::error::Error for ListenError {}
impl std::error::Error for ConnectError {}

/// Counters of what the endpoint did and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub segments_received: u64,
    pub segments_sent: u64,
    /// Active opens started.
    pub connects: u64,
    /// Passive opens that reached ESTABLISHED.
    pub accepted: u64,
    /// RSTs sent for segments that matched no connection or listener.
    pub resets_sent: u64,
    /// SYNs dropped because the listener's backlog or accept queue was full.
    pub syn_dropped: u64,
    /// Connections refused (active opens failed, SYNs dropped) at `max_connections`.
    pub over_connection_limit: u64,
    /// Connections refused (active opens failed, SYNs dropped) at `max_buffer_bytes`.
    pub over_buffer_limit: u64,
    /// Segments to a closed port or unknown connection dropped without reply (e.g. RSTs).
    pub dropped: u64,
    /// TIME-WAIT connections replaced by a new SYN (RFC 1122 §4.2.2.13).
    pub time_wait_reused: u64,
    /// Challenge ACKs withheld by the endpoint-wide limit (RFC 5961 §7).
    pub challenge_acks_limited: u64,
    /// SYN-ACKs sent with a SYN cookie (the SYN queue was full), keeping no state.
    pub syn_cookies_sent: u64,
    /// Fast Open SYNs whose data was taken (RFC 7413 §4.2.2): children accepted at once.
    pub fast_open_accepted: u64,
    /// Fast Open cookies sent to clients that asked (or whose cookie was wrong).
    pub fast_open_cookies_sent: u64,
    /// Fast Open SYNs refused because the listener's Fast Open queue was full (RFC 7413
    /// §5.1): answered as plain SYNs.
    pub fast_open_queue_full: u64,
    /// Connections opened from a valid cookie in the handshake's ACK.
    pub syn_cookies_accepted: u64,
    /// ACKs to a listener whose cookie did not check (answered with a RST).
    pub syn_cookies_rejected: u64,
}

/// The endpoint-wide budget of challenge ACKs: `limit` per second of virtual time.
#[derive(Debug, Default)]
struct ChallengeBudget {
    second: u64,
    sent: u32,
}

impl ChallengeBudget {
    fn take(&mut self, now: Instant, limit: u32) -> bool {
        let second = now.as_millis() / 1000;
        if second != self.second {
            self.second = second;
            self.sent = 0;
        }
        if self.sent >= limit {
            return false;
        }
        self.sent += 1;
        true
    }
}

/// The first and last ports handed out for active opens (Linux's default range).
pub const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 32768..=60999;

struct Listener {
    addr: SocketAddr,
    backlog: usize,
    accept_queue: VecDeque<ConnId>,
    /// Connections of this listener still in SYN-RECEIVED.
    half_open: usize,
    /// When its SYN queue last overflowed into SYN cookies: ACKs are checked as cookies only
    /// for a while after (two cookie periods), as Linux does.
    cookies_since: Option<Instant>,
    /// Fast Open children still in SYN-RECEIVED this listener may hold (Linux's
    /// `TCP_FASTOPEN` queue length, RFC 7413 §5.1); 0: Fast Open off on this listener.
    fo_qlen: usize,
    /// Fast Open children of this listener still in SYN-RECEIVED.
    fo_pending: usize,
    /// This listener's own key and backup (Linux's `TCP_FASTOPEN_KEY` on the socket).
    fo_key: Option<(FastOpenKey, Option<FastOpenKey>)>,
}

/// A SYN-ACK carrying a SYN cookie, sent without a connection.
struct CookieSynAck {
    src: SocketAddr,
    dst: SocketAddr,
    iss: u32,
    ack: u32,
    options: TcpOptions,
    window: u16,
}

/// Most stateless replies (RSTs, cookie SYN-ACKs) queued at once: a flood beyond is dropped
/// and counted, so it cannot grow memory.
const MAX_STATELESS_REPLIES: usize = 1024;

struct Slot {
    generation: u32,
    /// Boxed, so that a slot is a few words of hot metadata and a connection moves as a
    /// pointer; the boxes of dropped connections are reused.
    conn: Option<Box<Connection>>,
    /// The listener a passive connection belongs to until accepted.
    listener: Option<ListenerId>,
    /// Established and in its listener's accept queue (else still SYN-RECEIVED).
    in_accept_queue: bool,
    /// A Fast Open child still counted in its listener's `fo_pending`.
    fo_pending: bool,
    /// An application holds a handle (returned by `connect` or `accept`).
    held: bool,
    /// The earliest deadline this connection has in the timer heap.
    in_heap: HeapMark,
    /// Its ring storage, as last counted into `Endpoint::buffer_bytes` (a connection counts
    /// for at most 4 GiB there: 4 bytes here, not 8, keep the slot at 48).
    buffer_bytes: u32,
    /// Queued in `ready`.
    queued: bool,
    /// In TIME-WAIT, compacted (`conn` is then `None`): see [`TimeWait`].
    tw: Option<Box<TimeWait>>,
    /// The TCB of a compacted TIME-WAIT rebuilt for [`Endpoint::conn`], on demand.
    view: OnceCell<Box<Connection>>,
}

/// A slot's earliest deadline in the timer heap, in 8 bytes (`u64::MAX`: none; no deadline
/// is ever that late: timers saturate below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeapMark(u64);

impl HeapMark {
    const NONE: HeapMark = HeapMark(u64::MAX);

    #[inline]
    fn at(at: Instant) -> HeapMark {
        HeapMark(at.as_micros())
    }

    #[inline]
    fn get(self) -> Option<Instant> {
        (self != HeapMark::NONE).then_some(Instant::from_micros(self.0))
    }
}

/// A reply to a segment that matched nothing: RFC 9293 §3.10.7.1.
struct Reset {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
}

/// Where a segment leaves from and goes to, and its length in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub len: usize,
    /// The IP header's ECN field (RFC 3168 §5): ECT(0) (2) for new data of a connection that
    /// agreed to ECN, else 0.
    pub ecn: u8,
    /// For a super-segment of [`Endpoint::poll_transmit_tso`]: the payload size the device
    /// cuts it into segments of (TSO's `gso_size`, the MSS); 0 for a plain segment.
    pub gso_size: u16,
}

/// The TCP of one host.
pub struct Endpoint {
    config: Config,
    isn: IsnGenerator,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connections by 4-tuple: slot indices under the tuple's keyed hash, each confirmed
    /// against the tuple its slot holds (see [`ConnTable`]).
    by_tuple: ConnTable,
    /// The connection table's hash (keyed by the secret, RFC 6056's concern for ports applies
    /// to buckets too: a peer must not be able to aim at one).
    tuple_hash: TupleHashBuilder,
    /// The last tuple `handle_segment` found there: segments come in runs of one connection
    /// (a transfer, an exchange, a handshake), and a hit skips the hash and the table's
    /// memory, which among many connections is a cache miss. Cleared whenever a tuple is
    /// added or removed.
    last_found: Option<(FourTuple, ConnId)>,
    listeners: Vec<Option<Listener>>,
    /// Listeners by local address and port, keyed as tuples with an unspecified remote: the
    /// lookup shares the connection table's hash and code.
    by_port: HashMap<FourTuple, ListenerId, TupleHashBuilder>,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    ready: VecDeque<ConnId>,
    resets: VecDeque<Reset>,
    cookies: VecDeque<CookieSynAck>,
    next_ephemeral: u32,
    /// The last destination's RFC 6056 offset (a pure function of it and the key).
    last_port_offset: Option<(IpAddr, SocketAddr, u32)>,
    trace: Option<Vec<TraceRecord>>,
    stats: Stats,
    challenge_budget: ChallengeBudget,
    /// Ring storage held by every connection (`Config::max_buffer_bytes`).
    buffer_bytes: usize,
    /// Ring storage of dropped connections, lent to new ones: connection churn allocates
    /// nothing in the steady state.
    spare: Vec<Vec<u8>>,
    /// Boxes of dropped connections, for the next ones (kept boxed: the allocation is what is
    /// reused).
    #[allow(clippy::vec_box)]
    spare_conns: Vec<Box<Connection>>,
    /// The Fast Open client's cookies and MSS per server (RFC 7413 §4.1.3).
    fo_cache: ClientCache,
    /// The Fast Open server key when the configuration names none (from the secret).
    fo_default_key: FastOpenKey,
    /// Compact TIME-WAIT entries of expired ones, for the next.
    #[allow(clippy::vec_box)]
    spare_tw: Vec<Box<TimeWait>>,
    /// Write-queue storage of connections whose queues drained, lent to the next write (as
    /// `spare` is for rings): a write allocates nothing in the steady state.
    spare_marks: Vec<MarksStorage>,
    /// Fill in TCP checksums of what we send (see [`set_tx_checksum`](Self::set_tx_checksum)).
    tx_checksum: bool,
    /// Connections held as compact TIME-WAIT entries.
    compact_time_waits: usize,
}

/// Most spare ring storages kept, and the largest kept (big ones go back to the allocator).
const SPARE_MAX: usize = 256;
const SPARE_MAX_BYTES: usize = 64 * 1024;

impl Endpoint {
    /// An endpoint whose ISNs and port choices are keyed by `secret` (RFC 6528, RFC 6056).
    pub fn new(config: Config, secret: [u8; 16]) -> Endpoint {
        Endpoint {
            config,
            isn: IsnGenerator::new(secret),
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: ConnTable::default(),
            tuple_hash: TupleHashBuilder::new(secret),
            last_found: None,
            listeners: Vec::new(),
            by_port: HashMap::with_hasher(TupleHashBuilder::new(secret)),
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            resets: VecDeque::new(),
            cookies: VecDeque::new(),
            next_ephemeral: 0,
            last_port_offset: None,
            trace: None,
            stats: Stats::default(),
            challenge_budget: ChallengeBudget::default(),
            buffer_bytes: 0,
            spare: Vec::new(),
            spare_conns: Vec::new(),
            fo_cache: ClientCache::default(),
            fo_default_key: FastOpenKey::from_bytes(IsnGenerator::new(secret).derive_key(3)),
            spare_tw: Vec::new(),
            spare_marks: Vec::new(),
            tx_checksum: true,
            compact_time_waits: 0,
        }
    }

    /// Whether the segments this endpoint writes carry their TCP checksum (on by default):
    /// off for a device that computes it (checksum offload) or needs none (an in-memory
    /// link). Applies to connections made from now on and to stateless replies.
    pub fn set_tx_checksum(&mut self, on: bool) {
        self.tx_checksum = on;
    }

    pub fn tx_checksum(&self) -> bool {
        self.tx_checksum
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Record trace events (segments, state changes, retransmissions) from now on.
    pub fn set_tracing(&mut self, on: bool) {
        self.trace = if on { Some(Vec::new()) } else { None };
        if on {
            // Compact TIME-WAIT entries keep no events: they become full TCBs again.
            for index in 0..self.slots.len() {
                if self.slots[index].tw.is_some() {
                    let generation = self.slots[index].generation;
                    self.rehydrate(
                        Instant::ZERO,
                        ConnId {
                            index: index as u32,
                            generation,
                        },
                    );
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(c) = slot.conn.as_mut() {
                c.set_events(on);
            }
        }
    }

    /// Take the trace recorded so far.
    pub fn drain_trace(&mut self) -> Vec<TraceRecord> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    #[cold]
    #[inline(never)]
    fn record(&mut self, time: Instant, event: TraceEvent) {
        if let Some(t) = self.trace.as_mut() {
            t.push(TraceRecord { time, event });
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sockets.

    /// Listen on `addr` (an unspecified IP listens on every address of the host).
    pub fn listen(&mut self, addr: SocketAddr, backlog: usize) -> Result<ListenerId, ListenError> {
        if addr.port() == 0 {
            return Err(ListenError::InvalidPort);
        }
        let key = listen_key(addr.ip(), addr.port());
        if self.by_port.contains_key(&key) {
            return Err(ListenError::AddrInUse);
        }
        let id = ListenerId::from_index(self.listeners.len());
        // Linux's `TFO_SERVER_WO_SOCKOPT1`: Fast Open on every listener, as deep as its backlog.
        let fo = self.config.fast_open;
        let fo_qlen = if fo.server && fo.server_all_listeners {
            backlog
        } else {
            0
        };
        self.listeners.push(Some(Listener {
            addr,
            backlog: backlog.max(1),
            accept_queue: VecDeque::new(),
            half_open: 0,
            cookies_since: None,
            fo_qlen,
            fo_pending: 0,
            fo_key: None,
        }));
        self.by_port.insert(key, id);
        Ok(id)
    }

    /// Stop listening; every connection not yet accepted is reset and forgotten, whether it
    /// waits in the accept queue or is still in SYN-RECEIVED (as Linux's close of a listener).
    pub fn unlisten(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(id.index()).and_then(Option::take) else {
            return;
        };
        self.by_port.remove(&listen_key(l.addr.ip(), l.addr.port()));
        let children: Vec<ConnId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.listener == Some(id) && s.conn.is_some())
            .map(|(i, s)| ConnId {
                index: i as u32,
                generation: s.generation,
            })
            .collect();
        for c in children {
            self.slots[c.index as usize].listener = None;
            self.abort(c);
            self.release(c);
        }
    }

    /// The listener a segment to `ip` and `port` goes to: one on that address, else one on
    /// the unspecified address.
    fn listener_for(&self, ip: IpAddr, port: u16) -> Option<ListenerId> {
        let exact = self.by_port.get(&listen_key(ip, port));
        exact
            .or_else(|| self.by_port.get(&listen_key(unspecified(ip), port)))
            .copied()
    }

    pub fn listener_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.listener(id).map(|l| l.addr)
    }

    fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(id.index()).and_then(Option::as_ref)
    }

    /// Enable TCP Fast Open on a listener (RFC 7413), or disable it (`qlen` 0): at most `qlen`
    /// of its Fast Open children may still be in SYN-RECEIVED (RFC 7413 §5.1); beyond, SYNs
    /// are answered as plain ones. Data in SYNs is taken only while the endpoint's server side
    /// is on (`Config::fast_open.server`). Linux's `TCP_FASTOPEN` socket option.
    pub fn set_fast_open(&mut self, id: ListenerId, qlen: usize) {
        if let Some(l) = self.listeners.get_mut(id.index()).and_then(Option::as_mut) {
            l.fo_qlen = qlen;
        }
    }

    /// A listener's Fast Open queue length (0: off).
    pub fn fast_open_qlen(&self, id: ListenerId) -> usize {
        self.listener(id).map_or(0, |l| l.fo_qlen)
    }

    /// Give a listener its own Fast Open key (and a backup still accepted), instead of the
    /// endpoint's. Linux's `TCP_FASTOPEN_KEY` socket option.
    pub fn set_fast_open_key(
        &mut self,
        id: ListenerId,
        key: FastOpenKey,
        backup: Option<FastOpenKey>,
    ) {
        if let Some(l) = self.listeners.get_mut(id.index()).and_then(Option::as_mut) {
            l.fo_key = Some((key, backup));
        }
    }

    /// The Fast Open key a listener uses (its own, else the endpoint's).
    pub fn fast_open_key(&self, id: Option<ListenerId>) -> FastOpenKey {
        id.and_then(|id| self.listener(id))
            .and_then(|l| l.fo_key)
            .map(|(k, _)| k)
            .or(self.config.fast_open.key)
            .unwrap_or(self.fo_default_key)
    }

    /// The Fast Open cookie and server MSS cached for `server` (RFC 7413 §4.1.3), if any.
    pub fn fast_open_cached(&self, server: IpAddr) -> Option<(Option<FastOpen>, Option<u16>)> {
        self.fo_cache.get(server)
    }

    /// Put a cookie (and the server's MSS) in the Fast Open cache, or take it out (`None`).
    pub fn set_fast_open_cached(
        &mut self,
        server: IpAddr,
        cookie: Option<FastOpen>,
        mss: Option<u16>,
    ) {
        self.fo_cache.set(server, cookie, mss);
    }

    /// Forget every cached Fast Open cookie (Linux's `ip tcp_metrics flush`).
    pub fn clear_fast_open_cache(&mut self) {
        self.fo_cache.clear();
    }

    /// Connections waiting in a listener's accept queue.
    pub fn pending(&self, id: ListenerId) -> usize {
        self.listener(id).map_or(0, |l| l.accept_queue.len())
    }

    /// Take the next established connection from a listener's accept queue.
    pub fn accept(&mut self, id: ListenerId) -> Option<ConnId> {
        let l = self.listeners.get_mut(id.index())?.as_mut()?;
        let c = l.accept_queue.pop_front()?;
        let slot = &mut self.slots[c.index as usize];
        slot.held = true;
        slot.listener = None;
        Some(c)
    }

    /// Start an active open from `local_ip` (and `local_port`, or an ephemeral one) to `remote`.
    pub fn connect(
        &mut self,
        now: Instant,
        local_ip: IpAddr,
        local_port: Option<u16>,
        remote: SocketAddr,
    ) -> Result<ConnId, ConnectError> {
        self.connect_with(now, local_ip, local_port, remote, ConnectOptions::default())
    }

    /// [`connect`](Self::connect) with options: TCP Fast Open (RFC 7413). Data queued with
    /// `send` before the SYN leaves (before the next `poll_transmit`, or at any time with
    /// `defer_syn`) rides the SYN as far as it fits, when a cookie for `remote` is cached;
    /// without one the SYN asks for a cookie and the data follows the handshake. The SYN-ACK's
    /// cookie and MSS go to the cache.
    pub fn connect_with(
        &mut self,
        now: Instant,
        local_ip: IpAddr,
        local_port: Option<u16>,
        remote: SocketAddr,
        options: ConnectOptions,
    ) -> Result<ConnId, ConnectError> {
        if local_ip.is_ipv4() != remote.is_ipv4()
            || remote.ip().is_unspecified()
            || remote.port() == 0
        {
            return Err(ConnectError::InvalidAddress);
        }
        if self.at_connection_limit() {
            return Err(ConnectError::TooManyConnections);
        }
        if self.at_buffer_limit() {
            return Err(ConnectError::NoBuffers);
        }
        let port = match local_port {
            Some(p) => {
                let tuple = FourTuple {
                    local: SocketAddr::new(local_ip, p),
                    remote,
                };
                if self.lookup(&tuple).is_some() {
                    return Err(ConnectError::AddrInUse);
                }
                p
            }
            None => self.ephemeral_port(local_ip, remote)?,
        };
        let tuple = FourTuple {
            local: SocketAddr::new(local_ip, port),
            remote,
        };
        self.stats.connects += 1;
        let plan = (options.fast_open && self.config.fast_open.client).then(|| {
            self.fo_cache
                .plan(remote.ip(), self.config.fast_open.client_no_cookie)
        });
        let id = self.insert(now, tuple, None, true, |c, config| {
            c.start_connect(config, now);
            if let Some(plan) = plan {
                c.set_fast_open_plan(plan, options.defer_syn);
            }
        });
        self.after(now, id);
        Ok(id)
    }

    /// RFC 6056 §3.3.3 (algorithm 3): a keyed per-destination offset plus a counter, skipping
    /// ports in use with that destination (live or in TIME-WAIT) and listening ports.
    fn ephemeral_port(
        &mut self,
        local_ip: IpAddr,
        remote: SocketAddr,
    ) -> Result<u16, ConnectError> {
        let first = *EPHEMERAL_PORTS.start() as u32;
        let count = (*EPHEMERAL_PORTS.end() - *EPHEMERAL_PORTS.start()) as u32 + 1;
        // F depends only on the destination: a client that keeps connecting to one server
        // (a pool, an API) computes it once.
        let offset = match self.last_port_offset {
            Some((ip, r, offset)) if ip == local_ip && r == remote => offset,
            _ => {
                let offset = self.isn.port_offset(local_ip, remote);
                self.last_port_offset = Some((local_ip, remote, offset));
                offset
            }
        };
        for _ in 0..count {
            let port = (first + offset.wrapping_add(self.next_ephemeral) % count) as u16;
            self.next_ephemeral = self.next_ephemeral.wrapping_add(1);
            let tuple = FourTuple {
                local: SocketAddr::new(local_ip, port),
                remote,
            };
            if self.listener_for(local_ip, port).is_none() && self.lookup(&tuple).is_none() {
                return Ok(port);
            }
        }
        Err(ConnectError::NoEphemeralPort)
    }

    /// A new connection for `tuple` (its ISN drawn here), in a reused box when there is one,
    /// with reused ring storage, opened by `open` (active or passive).
    fn insert(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        listener: Option<ListenerId>,
        held: bool,
        open: impl FnOnce(&mut Connection, &Config),
    ) -> ConnId {
        self.insert_with(now, tuple, listener, held, None, open)
    }

    /// As [`insert`](Self::insert), with the ISS given (a SYN cookie's) or drawn.
    fn insert_with(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        listener: Option<ListenerId>,
        held: bool,
        given_iss: Option<SeqNum>,
        open: impl FnOnce(&mut Connection, &Config),
    ) -> ConnId {
        // Only `open` differs between callers: the rest is one copy, not one per caller.
        let mut conn = self.new_conn(now, tuple, given_iss);
        open(&mut conn, &self.config);
        self.place(conn, tuple, listener, held)
    }

    /// A fresh TCB for `tuple` (in a reused box when there is one), its ISS given or drawn.
    #[inline(never)]
    fn new_conn(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        given_iss: Option<SeqNum>,
    ) -> Box<Connection> {
        let (drawn, ts) = self.isn.isn_and_ts_offset(now, tuple.local, tuple.remote);
        let iss = given_iss.unwrap_or(drawn);
        let mut conn = match self.spare_conns.pop() {
            Some(mut b) => {
                b.reset(&self.config, now, tuple, iss, ts);
                b
            }
            None => Box::new(Connection::new(&self.config, tuple, iss, ts, now)),
        };
        conn.set_tx_checksum(self.tx_checksum);
        // Events only feed the trace: the accept queue follows states.
        conn.set_events(self.trace.is_some());
        conn
    }

    /// Give `conn` a slot and enter its tuple in the table.
    #[inline(never)]
    fn place(
        &mut self,
        conn: Box<Connection>,
        tuple: FourTuple,
        listener: Option<ListenerId>,
        held: bool,
    ) -> ConnId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    listener: None,
                    in_accept_queue: false,
                    fo_pending: false,
                    held: false,
                    in_heap: HeapMark::NONE,
                    buffer_bytes: 0,
                    queued: false,
                    tw: None,
                    view: OnceCell::new(),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.conn = Some(conn);
        slot.listener = listener;
        slot.in_accept_queue = false;
        slot.fo_pending = false;
        slot.held = held;
        slot.in_heap = HeapMark::NONE;
        slot.queued = false;
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        let hash = self.tuple_hash.hash_one(tuple);
        let slots = &self.slots;
        self.by_tuple
            .insert(hash, index, |i| slot_is(slots, i, &tuple));
        self.last_found = None;
        id
    }

    /// The connection behind a handle. A compacted TIME-WAIT entry is shown as the TCB it
    /// stands for (rebuilt on demand: what TIME-WAIT keeps is exact, counters start over).
    pub fn conn(&self, id: ConnId) -> Option<&Connection> {
        let s = self
            .slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        if let Some(c) = s.conn.as_deref() {
            return Some(c);
        }
        let tw = s.tw.as_deref()?;
        Some(
            s.view
                .get_or_init(|| self.restored(tw, Instant::ZERO, None)),
        )
    }

    /// The full TCB a compact TIME-WAIT entry stands for, in `reuse` if given.
    fn restored(
        &self,
        tw: &TimeWait,
        now: Instant,
        reuse: Option<Box<Connection>>,
    ) -> Box<Connection> {
        let t = tw.tuple();
        let (_, ts_offset) = self.isn.isn_and_ts_offset(now, t.local, t.remote);
        let mut c = match reuse {
            Some(c) => c,
            None => Box::new(Connection::new(&self.config, t, SeqNum(0), ts_offset, now)),
        };
        c.restore_time_wait(&self.config, tw, ts_offset, now);
        c.set_tx_checksum(self.tx_checksum);
        c.set_events(self.trace.is_some());
        if let Some(cap) = self.config.max_buffer_bytes {
            c.set_memory_pressure(self.buffer_bytes >= cap);
        }
        c
    }

    /// Make a compact TIME-WAIT entry a full TCB again (a segment or a command for it).
    #[cold]
    #[inline(never)]
    fn rehydrate(&mut self, now: Instant, id: ConnId) {
        let Some(slot) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        let Some(tw) = slot.tw.take() else {
            return;
        };
        self.compact_time_waits -= 1;
        let reuse = slot.view.take().or_else(|| self.spare_conns.pop());
        let conn = self.restored(&tw, now, reuse);
        self.slots[id.index as usize].conn = Some(conn);
        if self.spare_tw.len() < SPARE_MAX {
            self.spare_tw.push(tw);
        }
    }

    /// Free the TCB of a connection nobody holds that sits quietly in TIME-WAIT, keeping a
    /// compact entry (see [`TimeWait`]) in its slot. Not while tracing: the trace shows the
    /// TCB's events, which the entry does not keep.
    fn compact(&mut self, id: ConnId) {
        if self.trace.is_some() {
            return;
        }
        let slot = &mut self.slots[id.index as usize];
        let Some(tw) = slot
            .conn
            .as_deref()
            .filter(|c| c.state() == State::TimeWait)
            .and_then(|c| c.compact_time_wait(&self.config))
        else {
            return;
        };
        let expiry = tw.expiry();
        let entry = match self.spare_tw.pop() {
            Some(mut b) => {
                *b = tw;
                b
            }
            None => Box::new(tw),
        };
        slot.tw = Some(entry);
        slot.view = OnceCell::new();
        self.compact_time_waits += 1;
        let mut conn = slot.conn.take().expect("checked above");
        self.buffer_bytes -= std::mem::take(&mut slot.buffer_bytes) as usize;
        if slot.in_heap.get().is_none_or(|h| expiry < h) {
            slot.in_heap = HeapMark::at(expiry);
            self.timers.push(Reverse((expiry, id)));
        }
        for storage in conn.take_storage() {
            self.give_spare(storage);
        }
        if self.spare_conns.len() < SPARE_MAX {
            self.spare_conns.push(conn);
        }
    }

    /// Keep ring storage for the next connection that needs some, within bounds.
    fn give_spare(&mut self, storage: Vec<u8>) {
        if self.spare.len() < SPARE_MAX && !storage.is_empty() && storage.len() <= SPARE_MAX_BYTES {
            self.spare.push(storage);
        }
    }

    /// Run an application command on a connection; output and timers are brought up to date.
    pub fn with_conn<R>(
        &mut self,
        now: Instant,
        id: ConnId,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Option<R> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        if slot.tw.is_some() {
            self.rehydrate(now, id);
        }
        let slot = &mut self.slots[id.index as usize];
        let conn = slot.conn.as_mut()?;
        // Drained rings were given back to the pool: data the application writes now goes
        // into storage from it.
        conn.lend_storage(&mut self.spare, true);
        conn.lend_marks(&mut self.spare_marks);
        let r = f(conn);
        self.after(now, id);
        Some(r)
    }

    /// Close a connection gracefully (FIN after the data) and let go of the handle: the
    /// endpoint finishes the close on its own and forgets the connection once CLOSED.
    pub fn close(&mut self, now: Instant, id: ConnId) {
        self.with_conn(now, id, |c| {
            c.close();
            c.orphan(now);
        });
        self.release(id);
    }

    /// Reset a connection (RFC 9293 §3.10.5). The handle stays valid until released.
    pub fn abort(&mut self, id: ConnId) {
        self.rehydrate(Instant::ZERO, id);
        if let Some(slot) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
        {
            if let Some(c) = slot.conn.as_mut() {
                c.abort();
            }
            self.mark_ready(id);
        }
    }

    /// Let go of a handle without closing (the connection goes on until it is CLOSED).
    pub fn release(&mut self, id: ConnId) {
        if let Some(slot) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
        {
            slot.held = false;
            if let Some(c) = slot.conn.as_mut() {
                if c.state() != State::Closed && !c.is_orphaned() {
                    // Nobody will read what arrives: treat it as closed for reading.
                    c.orphan(Instant::ZERO);
                }
            }
            self.mark_ready(id);
            self.maybe_reap(id);
        }
    }

    /// The connection of `tuple`, if the table has one.
    #[inline]
    fn lookup(&self, tuple: &FourTuple) -> Option<ConnId> {
        let hash = self.tuple_hash.hash_one(tuple);
        let slots = &self.slots;
        let index = self.by_tuple.find(hash, |i| slot_is(slots, i, tuple))?;
        Some(ConnId {
            index,
            generation: slots[index as usize].generation,
        })
    }

    /// Number of connection slots in use (any state).
    pub fn connection_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// Connections in TIME-WAIT kept as compact entries (their full TCB freed; see
    /// [`TimeWait`]), among [`connection_count`](Self::connection_count).
    pub fn compact_time_waits(&self) -> usize {
        self.compact_time_waits
    }

    /// Every live connection handle.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.by_tuple.indices().map(|index| ConnId {
            index,
            generation: self.slots[index as usize].generation,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Inputs.

    /// [`lookup`](Self::lookup), remembering the last connection found: the segments of a
    /// burst mostly belong to one connection.
    fn lookup_cached(&mut self, tuple: FourTuple) -> Option<ConnId> {
        match self.last_found {
            Some((t, id)) if t == tuple => Some(id),
            _ => {
                let found = self.lookup(&tuple);
                if let Some(id) = found {
                    self.last_found = Some((tuple, id));
                }
                found
            }
        }
    }

    /// A TCP segment from `src` to `dst` (already checksummed and parsed by the stack).
    pub fn handle_segment(&mut self, now: Instant, src: IpAddr, dst: IpAddr, seg: &TcpRepr<'_>) {
        self.handle_segment_ecn(now, src, dst, 0, seg)
    }

    /// [`handle_segment`](Self::handle_segment) with the ECN field of its IP header (RFC 3168
    /// §5): 3, Congestion Experienced, makes a connection that agreed to ECN echo it.
    pub fn handle_segment_ecn(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ecn: u8,
        seg: &TcpRepr<'_>,
    ) {
        self.handle_segment_inner(now, src, dst, ecn, seg, false)
    }

    /// [`handle_segment_ecn`](Self::handle_segment_ecn) for a segment whose TCP checksum is
    /// not verified yet: `header_sum` is the partial sum (RFC 1071) of its pseudo-header and
    /// its TCP header, checksum field included. When the segment carries the next in-order
    /// bytes of an established connection, its payload is checked as it is copied into the
    /// receive buffer ([`Connection::place_payload`]: one pass over the bytes, not two);
    /// otherwise it is summed here first. Returns `false`, having changed nothing, when the
    /// checksum is wrong: the segment is dropped (RFC 9293 §3.1), and the caller counts it.
    pub fn handle_segment_unverified(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ecn: u8,
        seg: &TcpRepr<'_>,
        header_sum: u64,
    ) -> bool {
        let mut placed = None;
        if !seg.payload.is_empty() {
            let tuple = FourTuple {
                local: SocketAddr::new(dst, seg.dst_port),
                remote: SocketAddr::new(src, seg.src_port),
            };
            let found = self.lookup_cached(tuple);
            if let Some(id) = found {
                let slot = &mut self.slots[id.index as usize];
                if slot.tw.is_none() {
                    if let Some(c) = slot.conn.as_mut() {
                        placed = c.place_payload(seg, header_sum);
                    }
                }
            }
        }
        match placed {
            Some(false) => false,
            Some(true) => {
                self.handle_segment_inner(now, src, dst, ecn, seg, true);
                true
            }
            None => {
                let (s, carry) =
                    header_sum.overflowing_add(checksum::ones_complement_sum(seg.payload, 0));
                if checksum::fold(s + u64::from(carry)) != 0xffff {
                    return false;
                }
                self.handle_segment_inner(now, src, dst, ecn, seg, false);
                true
            }
        }
    }

    /// `placed`: the payload is in the connection's receive ring already
    /// ([`Connection::place_payload`]).
    fn handle_segment_inner(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ecn: u8,
        seg: &TcpRepr<'_>,
        placed: bool,
    ) {
        self.stats.segments_received += 1;
        let tuple = FourTuple {
            local: SocketAddr::new(dst, seg.dst_port),
            remote: SocketAddr::new(src, seg.src_port),
        };
        if self.trace.is_some() {
            self.record(
                now,
                TraceEvent::Segment {
                    dir: Direction::Received,
                    tuple,
                    seg: SegmentInfo::from_repr(seg),
                },
            );
        }
        let found = self.lookup_cached(tuple);
        if let Some(id) = found {
            if self.slots[id.index as usize].tw.is_some() {
                self.rehydrate(now, id);
            }
            // A CLOSED connection an application still holds (or a listener still queues)
            // is no connection to the network: what arrives for it is answered as CLOSED or
            // LISTEN (RFC 9293 §3.10.7.1), as Linux unhashes a socket when it closes.
            let closed = self.slots[id.index as usize]
                .conn
                .as_ref()
                .is_none_or(|c| c.state() == State::Closed);
            if !closed && !self.reopen_time_wait(id, seg) {
                if let Some(c) = self.slots[id.index as usize].conn.as_mut() {
                    if !seg.payload.is_empty() {
                        c.lend_storage(&mut self.spare, false);
                    }
                    c.set_rx_ce(ecn == 3);
                    if placed {
                        c.handle_segment_placed(now, seg);
                    } else {
                        c.handle_segment(now, seg);
                    }
                }
                self.after(now, id);
                return;
            }
        }
        match self.listener_for(dst, seg.dst_port) {
            Some(l) => self.on_listen_segment(now, l, tuple, seg),
            None => self.on_closed_segment(tuple, seg),
        }
    }

    /// RFC 9293 §3.10.7.4 with RFC 6191: a SYN may reopen a connection in TIME-WAIT when a
    /// listener waits on its port and the SYN cannot be an old duplicate: its timestamp is
    /// newer than TS.Recent when the old connection used timestamps (RFC 6191 §2), else its
    /// sequence number is above RCV.NXT (RFC 1122 §4.2.2.13). Any other SYN goes to the
    /// TIME-WAIT connection, which answers it with an ACK (RFC 5961 §4).
    fn reopen_time_wait(&mut self, id: ConnId, seg: &TcpRepr<'_>) -> bool {
        let Some(c) = self.slots[id.index as usize].conn.as_ref() else {
            return false;
        };
        let is_syn = seg.flags.contains(TcpFlags::SYN)
            && !seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.contains(TcpFlags::RST);
        if c.state() != State::TimeWait || !is_syn {
            return false;
        }
        let newer = match (c.timestamps_enabled(), seg.options.timestamp) {
            (true, Some(ts)) => (ts.tsval.wrapping_sub(c.ts_recent()) as i32) > 0,
            _ => SeqNum(seg.seq).gt(c.rcv_nxt()),
        };
        if !newer {
            return false;
        }
        let local = c.tuple().local;
        if self.listener_for(local.ip(), local.port()).is_none() {
            return false;
        }
        self.stats.time_wait_reused += 1;
        // The old incarnation ends here, without a segment: forget it now, before the new
        // SYN makes a connection for the same tuple.
        self.remove(id);
        true
    }

    /// RFC 9293 §3.10.7.2, LISTEN.
    fn on_listen_segment(
        &mut self,
        now: Instant,
        l: ListenerId,
        tuple: FourTuple,
        seg: &TcpRepr<'_>,
    ) {
        let f = seg.flags;
        if f.contains(TcpFlags::RST) {
            // "An incoming RST segment could not be valid ... it should be ignored."
            self.stats.dropped += 1;
            return;
        }
        if f.contains(TcpFlags::ACK) {
            if !f.contains(TcpFlags::SYN) && self.accept_cookie(now, l, tuple, seg) {
                return;
            }
            // "Any acknowledgment is bad if it arrives on a connection still in the LISTEN
            // state. An acceptable reset segment should be formed: <SEQ=SEG.ACK><CTL=RST>".
            self.queue_reset(tuple, seg);
            return;
        }
        if !f.contains(TcpFlags::SYN) {
            self.stats.dropped += 1;
            return;
        }
        let (syn_queue_full, accept_queue_full) = {
            let Some(listener) = self.listener(l) else {
                return;
            };
            (
                listener.half_open >= self.config.syn_backlog,
                listener.accept_queue.len() >= listener.backlog,
            )
        };
        if self.at_connection_limit() || self.at_buffer_limit() {
            return;
        }
        if accept_queue_full || (syn_queue_full && !self.config.syn_cookies) {
            self.stats.syn_dropped += 1;
            return;
        }
        if syn_queue_full {
            self.send_cookie(now, l, tuple, seg);
            return;
        }
        let (child, synack_option) = self.fast_open_syn(l, tuple, seg);
        if synack_option.is_some() {
            self.stats.fast_open_cookies_sent += 1;
        }
        if child {
            // RFC 7413 §4.2.2: the SYN's data is taken and the connection handed to the
            // application now, before the handshake completes.
            self.stats.fast_open_accepted += 1;
            let id = self.insert(now, tuple, Some(l), false, |c, _| {
                c.start_accept(seg);
                c.start_accept_fast_open(now, seg);
                c.set_synack_fast_open(synack_option);
            });
            let slot = &mut self.slots[id.index as usize];
            slot.in_accept_queue = true;
            slot.fo_pending = true;
            if let Some(listener) = self.listeners[l.index()].as_mut() {
                listener.fo_pending += 1;
                listener.accept_queue.push_back(id);
            }
            self.after(now, id);
            return;
        }
        if let Some(listener) = self.listeners[l.index()].as_mut() {
            listener.half_open += 1;
        }
        let id = self.insert(now, tuple, Some(l), false, |c, _| {
            c.start_accept(seg);
            c.set_synack_fast_open(synack_option);
        });
        self.after(now, id);
    }

    /// RFC 7413 §4.1.2 and §4.2.2, as Linux's `tcp_try_fastopen`: whether a SYN to listener
    /// `l` makes a Fast Open child (its data taken), and the Fast Open option of the SYN-ACK.
    ///
    /// Fast Open applies when the server side is on, the listener enabled it and its queue of
    /// Fast Open children in SYN-RECEIVED has room (§5.1), and the SYN carries data or the
    /// option. Then: without cookies required (0x200), a child; a cookie request gets a
    /// cookie (in the option kind asked in) and a plain handshake; a valid cookie makes a
    /// child (one valid under the backup key also gets the current cookie back); a wrong
    /// cookie gets a plain handshake and a fresh cookie; data without the option, a plain
    /// handshake (the data is ignored, to be sent again).
    fn fast_open_syn(
        &mut self,
        l: ListenerId,
        tuple: FourTuple,
        seg: &TcpRepr<'_>,
    ) -> (bool, Option<FastOpen>) {
        let fo = self.config.fast_open;
        let Some(listener) = self.listener(l) else {
            return (false, None);
        };
        let syn_data = !seg.payload.is_empty() || seg.flags.contains(TcpFlags::FIN);
        let option = seg.options.fast_open;
        if !fo.server || listener.fo_qlen == 0 || !(syn_data || option.is_some()) {
            return (false, None);
        }
        if listener.fo_pending >= listener.fo_qlen {
            self.stats.fast_open_queue_full += 1;
            return (false, None);
        }
        if fo.server_no_cookie {
            return (true, None);
        }
        let Some(option) = option else {
            return (false, None);
        };
        let (key, backup) = listener
            .fo_key
            .unwrap_or((fo.key.unwrap_or(self.fo_default_key), fo.backup_key));
        let (client, server) = (tuple.remote.ip(), tuple.local.ip());
        let fresh = FastOpen {
            cookie: key.cookie(client, server),
            experimental: option.experimental,
        };
        if option.cookie.is_request() {
            return (false, Some(fresh));
        }
        if option.cookie == fresh.cookie {
            return (true, None);
        }
        if backup.is_some_and(|b| b.cookie(client, server) == option.cookie) {
            return (true, Some(fresh));
        }
        (false, Some(fresh))
    }

    /// Whether `max_connections` are held (and count a refusal if so).
    fn at_connection_limit(&mut self) -> bool {
        let full = self
            .config
            .max_connections
            .is_some_and(|m| self.by_tuple.len() >= m);
        if full {
            self.stats.over_connection_limit += 1;
        }
        full
    }

    /// Whether `max_buffer_bytes` are held (and count a refusal if so).
    fn at_buffer_limit(&mut self) -> bool {
        let full = self
            .config
            .max_buffer_bytes
            .is_some_and(|m| self.buffer_bytes >= m);
        if full {
            self.stats.over_buffer_limit += 1;
        }
        full
    }

    /// Bytes of ring storage every connection holds together.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Answer a SYN with a SYN cookie (RFC 4987 §3.6): a SYN-ACK whose ISS encodes what the
    /// connection needs, and nothing kept.
    #[cold]
    fn send_cookie(&mut self, now: Instant, l: ListenerId, tuple: FourTuple, seg: &TcpRepr<'_>) {
        if self.cookies.len() >= MAX_STATELESS_REPLIES {
            self.stats.syn_dropped += 1;
            return;
        }
        let ipv6 = tuple.local.is_ipv6();
        let peer_mss = seg.options.mss.unwrap_or(if ipv6 { 1220 } else { 536 });
        let our_mss = self.config.announced_mss(ipv6);
        let (iss, _) = crate::syncookie::make(
            &self.isn,
            now,
            tuple.local,
            tuple.remote,
            seg.seq,
            peer_mss.min(our_mss as u16),
        );
        // Window scale and SACK only where the echoed timestamp can bring them back: its low
        // bits keep the peer's scale (ours follows from the buffer) and SACK.
        let mut options = TcpOptions {
            mss: Some(our_mss.min(65535) as u16),
            ..TcpOptions::default()
        };
        if let (true, Some(ts)) = (self.config.timestamps, seg.options.timestamp) {
            let peer_scale = seg
                .options
                .window_scale
                .filter(|_| self.config.window_scaling)
                .map(|s| s.min(14));
            let sack = self.config.sack && seg.options.sack_permitted;
            let (_, offset) = self.isn.isn_and_ts_offset(now, tuple.local, tuple.remote);
            let ts_now = (now.as_millis() as u32).wrapping_add(offset);
            options.timestamp = Some(synack_wire::Timestamp {
                tsval: crate::syncookie::encode_ts(ts_now, peer_scale, sack),
                tsecr: ts.tsval,
            });
            options.window_scale =
                peer_scale.map(|_| crate::conn::wscale_for(self.config.recv_buffer));
            options.sack_permitted = sack;
        }
        if let Some(listener) = self.listeners[l.index()].as_mut() {
            listener.cookies_since = Some(now);
        }
        self.stats.syn_cookies_sent += 1;
        self.cookies.push_back(CookieSynAck {
            src: tuple.local,
            dst: tuple.remote,
            iss: iss.0,
            ack: seg.seq.wrapping_add(1),
            options,
            window: self.config.recv_buffer.min(65535) as u16,
        });
    }

    /// The handshake's ACK to a listener with no connection: if it carries a valid cookie,
    /// the connection is made now, ESTABLISHED, as if its SYN had been queued.
    #[cold]
    fn accept_cookie(
        &mut self,
        now: Instant,
        l: ListenerId,
        tuple: FourTuple,
        seg: &TcpRepr<'_>,
    ) -> bool {
        let Some(listener) = self.listener(l) else {
            return false;
        };
        let recent = listener
            .cookies_since
            .is_some_and(|t| now < t + crate::time::Duration::from_secs(128));
        if !recent || seg.flags.contains(TcpFlags::RST) {
            return false;
        }
        if listener.accept_queue.len() >= listener.backlog || self.at_connection_limit() {
            self.stats.syn_dropped += 1;
            return true;
        }
        let peer_isn = seg.seq.wrapping_sub(1);
        let cookie = seg.ack.wrapping_sub(1);
        let Some(mss) =
            crate::syncookie::check(&self.isn, now, tuple.local, tuple.remote, peer_isn, cookie)
        else {
            self.stats.syn_cookies_rejected += 1;
            return false;
        };
        // The SYN as the cookie remembers it.
        let mut options = TcpOptions {
            mss: Some(mss),
            ..TcpOptions::default()
        };
        if let (true, Some(ts)) = (self.config.timestamps, seg.options.timestamp) {
            let (peer_scale, sack) = crate::syncookie::decode_ts(ts.tsecr);
            options.window_scale = peer_scale.filter(|_| self.config.window_scaling);
            options.sack_permitted = sack && self.config.sack;
            options.timestamp = Some(ts);
        }
        let syn = TcpRepr {
            src_port: seg.src_port,
            dst_port: seg.dst_port,
            seq: peer_isn,
            ack: 0,
            flags: TcpFlags::SYN,
            window: seg.window,
            urgent: 0,
            options,
            payload: &[],
        };
        let window = self.config.recv_buffer.min(65535);
        self.stats.syn_cookies_accepted += 1;
        if let Some(listener) = self.listeners[l.index()].as_mut() {
            listener.half_open += 1;
        }
        let id = self.insert_with(now, tuple, Some(l), false, Some(SeqNum(cookie)), |c, _| {
            c.start_accept_cookie(&syn, window)
        });
        if let Some(c) = self.slots[id.index as usize].conn.as_mut() {
            c.handle_segment(now, seg);
        }
        self.after(now, id);
        true
    }

    /// RFC 9293 §3.10.7.1, CLOSED: "all data in the incoming segment is discarded. An incoming
    /// segment containing a RST is discarded. An incoming segment not containing a RST causes a
    /// RST to be sent in response."
    #[cold]
    fn on_closed_segment(&mut self, tuple: FourTuple, seg: &TcpRepr<'_>) {
        if seg.flags.contains(TcpFlags::RST) {
            self.stats.dropped += 1;
            return;
        }
        self.queue_reset(tuple, seg);
    }

    #[cold]
    fn queue_reset(&mut self, tuple: FourTuple, seg: &TcpRepr<'_>) {
        let reset = if seg.flags.contains(TcpFlags::ACK) {
            // <SEQ=SEG.ACK><CTL=RST>
            Reset {
                src: tuple.local,
                dst: tuple.remote,
                seq: seg.ack,
                ack: None,
            }
        } else {
            // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
            Reset {
                src: tuple.local,
                dst: tuple.remote,
                seq: 0,
                ack: Some(seg.seq.wrapping_add(seg.seq_len() as u32)),
            }
        };
        // A flood of segments to closed ports must not grow memory without bound.
        if self.resets.len() < MAX_STATELESS_REPLIES {
            self.resets.push_back(reset);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// An ICMP error quoting a segment from `local` to `remote` with sequence number `seq`.
    pub fn handle_icmp_error(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        err: crate::conn::IcmpError,
        seq: u32,
    ) {
        let tuple = FourTuple { local, remote };
        let Some(id) = self.lookup(&tuple) else {
            self.stats.dropped += 1;
            return;
        };
        if let Some(c) = self.slots[id.index as usize].conn.as_mut() {
            c.handle_icmp_error(now, err, seq);
        }
        self.after(now, id);
    }

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(id.index as usize) else {
                continue;
            };
            if slot.generation != id.generation || slot.in_heap.get() != Some(at) {
                continue;
            }
            slot.in_heap = HeapMark::NONE;
            if let Some(tw) = slot.tw.as_deref() {
                // A compact TIME-WAIT: 2·MSL ran out, or was restarted since this deadline.
                let expiry = tw.expiry();
                if expiry <= now {
                    self.remove(id);
                } else {
                    slot.in_heap = HeapMark::at(expiry);
                    self.timers.push(Reverse((expiry, id)));
                }
                continue;
            }
            if let Some(c) = slot.conn.as_mut() {
                c.handle_timeout(now);
            }
            self.after(now, id);
        }
        self.shrink_timers();
    }

    /// A burst of connections (a million handshakes) leaves the timer heap's storage behind
    /// once their timers are gone: give most of it back.
    fn shrink_timers(&mut self) {
        let (len, cap) = (self.timers.len(), self.timers.capacity());
        if cap > 4096 && len < cap / 4 {
            self.timers.shrink_to(len * 2);
        }
    }

    /// The next deadline of any connection.
    #[inline]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            let valid = self
                .slots
                .get(id.index as usize)
                .is_some_and(|s| s.generation == id.generation && s.in_heap.get() == Some(at));
            if valid {
                return Some(at);
            }
            self.timers.pop();
            if self.timers.is_empty() {
                self.shrink_timers();
            }
        }
        None
    }

    // ---------------------------------------------------------------------------------------
    // Outputs.

    /// Write the next TCP segment into `buf` (header, payload and checksum). Returns its
    /// addresses and length, or `None` when nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.transmit_into(now, &mut SliceBuf(buf), 0)
    }

    /// As [`poll_transmit`](Self::poll_transmit), for a device that cuts TCP super-segments
    /// into segments itself (TSO): a connection's new data may go as one segment of up to
    /// `max_payload` bytes (see [`Connection::poll_transmit_tso`]), its
    /// [`Transmit::gso_size`] the size to cut it at. `buf` must hold it.
    pub fn poll_transmit_tso(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_payload: usize,
    ) -> Option<Transmit> {
        self.transmit_into(now, &mut SliceBuf(buf), max_payload)
    }

    /// [`poll_transmit`](Self::poll_transmit) into a [`SegmentBuf`]: the segment is written
    /// into `buf.segment(len)` once its length is known (a device's own packet buffer, say),
    /// `buf.room()` bounding it.
    pub fn poll_transmit_to(&mut self, now: Instant, buf: &mut dyn SegmentBuf) -> Option<Transmit> {
        self.transmit_into(now, buf, 0)
    }

    /// The one transmit path behind the three above.
    fn transmit_into(
        &mut self,
        now: Instant,
        buf: &mut dyn SegmentBuf,
        max_payload: usize,
    ) -> Option<Transmit> {
        if let Some(r) = self.resets.pop_front() {
            return Some(self.emit_reset(now, r, buf));
        }
        if let Some(c) = self.cookies.pop_front() {
            return Some(self.emit_cookie(now, c, buf));
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(slot) = self.slots.get_mut(id.index as usize) else {
                continue;
            };
            if slot.generation != id.generation {
                continue;
            }
            slot.queued = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            if conn.take_challenge()
                && !self
                    .challenge_budget
                    .take(now, self.config.challenge_ack_limit)
            {
                conn.cancel_challenge();
                self.stats.challenge_acks_limited += 1;
            }
            match conn.transmit_into(now, buf, max_payload) {
                Some(len) => {
                    let ecn = if conn.last_segment_ect() { 2 } else { 0 };
                    let gso_size = conn.last_segment_gso();
                    let t = conn.tuple();
                    let (src, dst) = (t.local.ip(), t.remote.ip());
                    let tuple = if self.trace.is_some() { Some(t) } else { None };
                    self.stats.segments_sent += 1;
                    // Round robin: the connection goes to the back if it may send again.
                    if self.after_quiet(now, id) {
                        self.mark_ready(id);
                    } else {
                        self.maybe_reap(id);
                    }
                    if let Some(tuple) = tuple {
                        self.record_sent(now, tuple, buf.segment(len));
                    }
                    return Some(Transmit {
                        src,
                        dst,
                        len,
                        ecn,
                        gso_size,
                    });
                }
                None => {
                    self.after_quiet(now, id);
                    self.maybe_reap(id);
                }
            }
        }
        None
    }

    #[cold]
    #[inline(never)]
    fn record_sent(&mut self, now: Instant, tuple: FourTuple, segment: &[u8]) {
        if let Ok(seg) = TcpRepr::parse(segment, None) {
            let info = SegmentInfo::from_repr(&seg);
            self.record(
                now,
                TraceEvent::Segment {
                    dir: Direction::Sent,
                    tuple,
                    seg: info,
                },
            );
        }
    }

    fn emit_cookie(&mut self, now: Instant, c: CookieSynAck, buf: &mut dyn SegmentBuf) -> Transmit {
        let repr = TcpRepr {
            src_port: c.src.port(),
            dst_port: c.dst.port(),
            seq: c.iss,
            ack: c.ack,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: c.window,
            urgent: 0,
            options: c.options,
            payload: &[],
        };
        self.emit_stateless(now, c.src, c.dst, &repr, buf)
    }

    /// Write a segment that belongs to no connection (a RST, a cookie's SYN-ACK) and trace it.
    fn emit_stateless(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
        repr: &TcpRepr<'_>,
        buf: &mut dyn SegmentBuf,
    ) -> Transmit {
        let len = repr.header_len();
        let buf = buf.segment(len);
        repr.emit_header(buf);
        if self.tx_checksum {
            fill_checksum(buf, src.ip(), dst.ip());
        }
        self.stats.segments_sent += 1;
        if self.trace.is_some() {
            self.record(
                now,
                TraceEvent::Segment {
                    dir: Direction::Sent,
                    tuple: FourTuple {
                        local: src,
                        remote: dst,
                    },
                    seg: SegmentInfo::from_repr(repr),
                },
            );
        }
        Transmit {
            src: src.ip(),
            dst: dst.ip(),
            len,
            ecn: 0,
            gso_size: 0,
        }
    }

    fn emit_reset(&mut self, now: Instant, r: Reset, buf: &mut dyn SegmentBuf) -> Transmit {
        let mut flags = TcpFlags::RST;
        if r.ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let repr = TcpRepr {
            src_port: r.src.port(),
            dst_port: r.dst.port(),
            seq: r.seq,
            ack: r.ack.unwrap_or(0),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        self.stats.resets_sent += 1;
        self.emit_stateless(now, r.src, r.dst, &repr, buf)
    }

    // ---------------------------------------------------------------------------------------
    // Bookkeeping after anything touched a connection.

    fn mark_ready(&mut self, id: ConnId) {
        if let Some(slot) = self.slots.get_mut(id.index as usize) {
            if slot.generation == id.generation && !slot.queued {
                slot.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// After an input or command: the connection may have output, new timers and events.
    /// Not inlined: every generic `with_conn` shares this one copy.
    #[inline(never)]
    fn after(&mut self, now: Instant, id: ConnId) {
        if self.after_quiet(now, id) {
            self.mark_ready(id);
        } else {
            // A connection that closed with nothing to send is forgotten here (if unheld).
            self.maybe_reap(id);
        }
    }

    /// Drain events, keep the accept queue and the timer heap up to date.
    /// Returns whether the connection may have a segment to send now.
    fn after_quiet(&mut self, now: Instant, id: ConnId) -> bool {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return false;
        };
        if let Some(t) = self.trace.as_mut() {
            while let Some(ev) = conn.poll_event() {
                record_conn_event(t, now, conn, ev);
            }
        }
        // An idle connection holds no ring storage: drained rings go back to the pool.
        let spare = &mut self.spare;
        conn.release_drained(
            SPARE_MAX_BYTES,
            &mut |storage| {
                if spare.len() < SPARE_MAX {
                    spare.push(storage);
                }
            },
            &mut self.spare_marks,
        );
        let bytes = conn.buffer_bytes().min(u32::MAX as usize) as u32;
        self.buffer_bytes = self.buffer_bytes + bytes as usize - slot.buffer_bytes as usize;
        slot.buffer_bytes = bytes;
        if let Some(cap) = self.config.max_buffer_bytes {
            conn.set_memory_pressure(self.buffer_bytes >= cap);
        }
        let may_transmit = conn.may_transmit();
        let next = conn.poll_timeout();
        if let Some(at) = next {
            if slot.in_heap.get().is_none_or(|h| at < h) {
                slot.in_heap = HeapMark::at(at);
                self.timers.push(Reverse((at, id)));
            }
        }
        if let Some(outcome) = conn.take_fast_open_outcome() {
            self.fo_cache.update(conn.tuple().remote.ip(), outcome);
        }
        if slot.listener.is_some() {
            self.after_passive(id);
        }
        may_transmit
    }

    /// [`after_quiet`](Self::after_quiet) for a passive connection not yet accepted: its
    /// place in its listener's queues. Out of line: most calls are for other connections.
    #[inline(never)]
    fn after_passive(&mut self, id: ConnId) {
        let slot = &mut self.slots[id.index as usize];
        let (Some(l), Some(conn)) = (slot.listener, slot.conn.as_ref()) else {
            return;
        };
        // A passive connection: queued for accept once synchronized (it may have moved
        // past ESTABLISHED within one segment), dropped from its listener when CLOSED —
        // unless it is queued with data to read or is a Fast Open child, which Linux
        // still hands to accept() (its data readable, then its error).
        let state = conn.state();
        let closed = state == State::Closed;
        let queued = slot.in_accept_queue;
        let listener = self.listeners.get_mut(l.index()).and_then(Option::as_mut);
        if slot.fo_pending && (closed || state.is_synchronized()) {
            slot.fo_pending = false;
            if let Some(listener) = listener {
                listener.fo_pending = listener.fo_pending.saturating_sub(1);
            }
        }
        let listener = self.listeners.get_mut(l.index()).and_then(Option::as_mut);
        let keep = conn.recv_available() > 0 || conn.is_fast_open_child();
        if !queued && (closed || state.is_synchronized()) {
            if closed {
                slot.listener = None;
            } else {
                slot.in_accept_queue = true;
            }
            if let Some(listener) = listener {
                listener.half_open = listener.half_open.saturating_sub(1);
                if !closed {
                    listener.accept_queue.push_back(id);
                    self.stats.accepted += 1;
                }
            }
        } else if queued && closed && !keep {
            slot.listener = None;
            slot.in_accept_queue = false;
            if let Some(listener) = listener {
                listener.accept_queue.retain(|&c| c != id);
            }
        }
    }

    /// Forget a CLOSED connection nobody holds, once it has nothing left to send.
    fn maybe_reap(&mut self, id: ConnId) {
        let Some(slot) = self.slots.get(id.index as usize) else {
            return;
        };
        if slot.generation != id.generation || slot.held || slot.queued || slot.listener.is_some() {
            return;
        }
        match slot.conn.as_ref() {
            Some(c) if c.state() == State::Closed => self.remove(id),
            Some(c) if c.state() == State::TimeWait => self.compact(id),
            _ => {}
        }
    }

    /// Forget a connection: its tuple, its timers and its slot (freed exactly once: a stale
    /// or already removed handle does nothing).
    fn remove(&mut self, id: ConnId) {
        let Some(slot) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && (s.conn.is_some() || s.tw.is_some()))
        else {
            return;
        };
        slot.view = OnceCell::new();
        if let Some(tw) = slot.tw.take() {
            self.compact_time_waits -= 1;
            let tuple = tw.tuple();
            self.last_found = None;
            self.by_tuple
                .remove(self.tuple_hash.hash_one(tuple), id.index);
            if self.spare_tw.len() < SPARE_MAX {
                self.spare_tw.push(tw);
            }
        }
        if let Some(mut c) = slot.conn.take() {
            // The tuple may belong to a newer connection by now (this one closed, and a new
            // SYN for the same tuple came): only our own entry goes.
            self.last_found = None;
            self.by_tuple
                .remove(self.tuple_hash.hash_one(c.tuple()), id.index);
            for storage in c.take_storage() {
                if self.spare.len() < SPARE_MAX
                    && !storage.is_empty()
                    && storage.len() <= SPARE_MAX_BYTES
                {
                    self.spare.push(storage);
                }
            }
            if self.spare_conns.len() < SPARE_MAX {
                self.spare_conns.push(c);
            }
        }
        if let Some(l) = slot.listener.take() {
            if let Some(listener) = self.listeners.get_mut(l.index()).and_then(Option::as_mut) {
                listener.accept_queue.retain(|&c| c != id);
            }
        }
        slot.held = false;
        slot.in_heap = HeapMark::NONE;
        slot.queued = false;
        self.buffer_bytes -= std::mem::take(&mut slot.buffer_bytes) as usize;
        self.free.push(id.index);
    }

    /// The error a connection ended with, for handles kept after CLOSED.
    pub fn error(&self, id: ConnId) -> Option<ConnectionError> {
        self.conn(id).and_then(Connection::error)
    }
}

#[cold]
#[inline(never)]
fn record_conn_event(trace: &mut Vec<TraceRecord>, time: Instant, conn: &Connection, ev: Event) {
    trace.push(TraceRecord {
        time,
        event: TraceEvent::from_conn(conn.tuple(), ev),
    });
}

/// Whether slot `index` holds the connection of `tuple` (live or a compact TIME-WAIT).
#[inline]
fn slot_is(slots: &[Slot], index: u32, tuple: &FourTuple) -> bool {
    let Some(s) = slots.get(index as usize) else {
        return false;
    };
    match (s.conn.as_deref(), s.tw.as_deref()) {
        (Some(c), _) => c.has_tuple(tuple),
        (None, Some(tw)) => tw.tuple() == *tuple,
        (None, None) => false,
    }
}

/// The `by_port` key of a listener on `ip` and `port`.
fn listen_key(ip: IpAddr, port: u16) -> FourTuple {
    FourTuple {
        local: SocketAddr::new(ip, port),
        remote: SocketAddr::new(unspecified(ip), 0),
    }
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What an idle established connection costs the endpoint, by type: the TCB (boxed), its
    /// slot, and (in the table) 8 bytes a bucket. Issue 15 asks for at most 1 KiB a connection
    /// all told; these bounds catch a field that makes it grow back. Raise them only on
    /// purpose, with `cargo bench -p synack-stack --bench idle_memory` to show what it costs.
    #[test]
    fn a_connection_stays_small() {
        assert!(
            // 936 + 8: the one pointer to PRR's and the pacer's state (`conn::pacing`); + 8:
            // the one pointer to the path MTU and probing state (`conn::mtuprobe`), boxed and
            // allocated only where a setting asks for it. 952 + 48 + 8 = 1008 bytes all told.
            core::mem::size_of::<Connection>() <= 952,
            "Connection is {} bytes",
            core::mem::size_of::<Connection>()
        );
        assert!(core::mem::size_of::<Slot>() <= 48);
        assert!(core::mem::size_of::<TimeWait>() <= 64);
        assert_eq!(core::mem::size_of::<Option<ListenerId>>(), 4);
    }
}
