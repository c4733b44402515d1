//! A deterministic simulated IP network, run in virtual time.
//!
//! Hosts are [`Node`]s: they take IP packets in, hand IP packets out, and ask for a deadline.
//! A [`Network`] routes each packet by its destination address to the host that owns it, over
//! the point-to-point [path](PathConfig) between the two, where it may be delayed, queued behind
//! a bottleneck, lost (independently or in [Gilbert-Elliott](GilbertElliott) bursts),
//! reordered, duplicated or corrupted.
//!
//! Nothing here reads a clock, sleeps or spawns a thread. The network keeps one queue of
//! packets in flight ordered by `(deliver_at, seq)`, where `seq` counts packets in the order
//! they were put on a path, so packets due at the same instant are always delivered in the
//! same order. Each direction of each link draws its randomness from its own
//! [xoshiro256**](rng::Xoshiro256StarStar) stream, derived from the network's seed and the
//! ordered pair of host ids, so the same seed and the same calls give the same deliveries bit
//! for bit, and impairing one path does not change the draws of any other.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use synack_stack::sim::{Network, Node, PathConfig};
//! use synack_tcp::time::{Duration, Instant};
//!
//! /// Answers every IPv4 packet by swapping its source and destination addresses.
//! #[derive(Default)]
//! struct Echo { out: Vec<Vec<u8>> }
//! impl Node for Echo {
//!     fn receive(&mut self, _now: Instant, packet: &[u8]) {
//!         let mut p = packet.to_vec();
//!         if p.len() >= 20 {
//!             let (src, dst) = p[12..20].split_at_mut(4);
//!             src.swap_with_slice(dst);
//!             self.out.push(p);
//!         }
//!     }
//!     fn transmit(&mut self, _now: Instant, send: &mut dyn FnMut(&[u8])) {
//!         for p in self.out.drain(..) {
//!             send(&p);
//!         }
//!     }
//!     fn poll_timeout(&mut self) -> Option<Instant> { None }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//! }
//!
//! let a_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
//! let b_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
//! let mut net = Network::new(42);
//! let a = net.add_host("a", &[a_ip], Echo::default());
//! let b = net.add_host("b", &[b_ip], Echo::default());
//! let d = PathConfig::delay(Duration::from_millis(10));
//! net.link(a, b, d.clone(), d);
//!
//! // A hand-made IPv4 header from a to b; b echoes it back, a echoes it again, and so on.
//! let mut p = vec![0u8; 20];
//! p[0] = 0x45;
//! p[12..16].copy_from_slice(&[10, 0, 0, 1]);
//! p[16..20].copy_from_slice(&[10, 0, 0, 2]);
//! net.host_mut(a).out.push(p);
//! net.flush();
//! net.run_until(Instant::from_millis(35));
//! assert_eq!(net.path_stats(a, b).unwrap().delivered, 2); // at 10 ms and 30 ms
//! assert_eq!(net.path_stats(b, a).unwrap().delivered, 1); // at 20 ms
//! ```

#![warn(missing_docs)]

mod path;
pub mod rng;
mod tap;
pub mod units;

pub use path::{GilbertElliott, PathConfig, PathStats};
pub use tap::{Direction, LoggedPacket, PacketLog, Tap};

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use synack_tcp::time::Instant;

use path::Path;
use rng::{mix64, SplitMix64};

/// What the simulator needs of a host: IP packets in, IP packets out, and a deadline.
pub trait Node {
    /// An IP packet (raw bytes, starting at the IP header) arrives at `now`.
    fn receive(&mut self, now: Instant, packet: &[u8]);
    /// Hand every packet the node wants to send at `now` to `send`, one call per packet.
    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8]));
    /// The next instant at which the node wants `handle_timeout`, if any.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// Time has reached a deadline the node asked for.
    fn handle_timeout(&mut self, now: Instant);
}

/// Boxed nodes are nodes, so one network can hold hosts of different types
/// (`Network<Box<dyn Node>>`).
impl<T: Node + ?Sized> Node for Box<T> {
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        (**self).receive(now, packet);
    }
    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        (**self).transmit(now, send);
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
}

/// A host of a [`Network`]: an index, in the order hosts were added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub usize);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host#{}", self.0)
    }
}

/// Network-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets the hosts emitted (each is tapped as [`Direction::Tx`]).
    pub emitted: u64,
    /// Packets dropped because their header was unparsable, no host owns the destination
    /// address, or there is no link from the sender to that host (a host never has a path to
    /// itself, so packets a host sends to its own address are dropped here too).
    pub dropped_no_route: u64,
    /// The sum of every path's counters.
    pub paths: PathStats,
}

/// The destination address of an IP packet, read from the raw header: bytes 16..20 for IPv4,
/// 24..40 for IPv6, the version taken from the first nibble. `None` for anything else or a
/// packet too short to hold the address. Never panics.
pub fn destination_addr(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The source address of an IP packet (IPv4 bytes 12..16, IPv6 bytes 8..24), like
/// [`destination_addr`]. Never panics.
pub fn source_addr(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// A packet on its way.
struct InFlight {
    at: Instant,
    seq: u64,
    from: HostId,
    to: HostId,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Ordered by `(at, seq)` only; `seq` is unique, so this is a total order.
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Host<N> {
    name: String,
    addrs: Vec<IpAddr>,
    node: N,
}

/// Everything but the nodes, so that a node can be borrowed while its packets are routed.
struct Fabric {
    seed: u64,
    now: Instant,
    owners: BTreeMap<IpAddr, HostId>,
    paths: BTreeMap<(HostId, HostId), Path>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    emitted: u64,
    dropped_no_route: u64,
    taps: Vec<Vec<Box<dyn Tap>>>,
}

impl Fabric {
    /// A packet `from` emitted at `now`: tap it, route it, put it on its path.
    fn emit(&mut self, from: HostId, packet: &[u8]) {
        let now = self.now;
        self.emitted += 1;
        if let Some(taps) = self.taps.get_mut(from.0) {
            for tap in taps {
                tap.packet(now, Direction::Tx, packet);
            }
        }
        let route = destination_addr(packet)
            .and_then(|dst| self.owners.get(&dst).copied())
            .and_then(|to| Some((to, self.paths.get_mut(&(from, to))?)));
        let Some((to, path)) = route else {
            self.dropped_no_route += 1;
            return;
        };
        let in_flight = &mut self.in_flight;
        let next_seq = &mut self.next_seq;
        path.offer(now, packet, |at, bytes| {
            in_flight.push(Reverse(InFlight {
                at,
                seq: *next_seq,
                from,
                to,
                bytes,
            }));
            *next_seq += 1;
        });
    }

    /// The per-path stream seed: a mix of the network seed and the ordered host pair, so it
    /// does not depend on the order links were made in.
    fn path_seed(&self, from: HostId, to: HostId) -> u64 {
        let base = SplitMix64::new(self.seed).next_u64();
        let k = mix64(base ^ mix64((from.0 as u64).wrapping_add(0x5bd1_e995)));
        mix64(k ^ mix64((to.0 as u64).wrapping_add(0xc2b2_ae35_27d4_eb4f)))
    }
}

/// A simulated network of hosts of type `N`, stepped in virtual time. See the
/// [module documentation](self).
pub struct Network<N: Node> {
    hosts: Vec<Host<N>>,
    fabric: Fabric,
    livelock_limit: u64,
    steps_without_progress: u64,
}

impl<N: Node> fmt::Debug for Network<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.fabric.seed)
            .field("now", &self.fabric.now)
            .field(
                "hosts",
                &self.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .field("in_flight", &self.fabric.in_flight.len())
            .finish()
    }
}

/// How many steps in a row may leave virtual time where it is before the network declares a
/// livelock (see [`Network::set_livelock_limit`]).
pub const DEFAULT_LIVELOCK_LIMIT: u64 = 1_000_000;

impl<N: Node> Network<N> {
    /// An empty network at [`Instant::ZERO`] whose randomness all derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            hosts: Vec::new(),
            fabric: Fabric {
                seed,
                now: Instant::ZERO,
                owners: BTreeMap::new(),
                paths: BTreeMap::new(),
                in_flight: BinaryHeap::new(),
                next_seq: 0,
                emitted: 0,
                dropped_no_route: 0,
                taps: Vec::new(),
            },
            livelock_limit: DEFAULT_LIVELOCK_LIMIT,
            steps_without_progress: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.fabric.now
    }

    /// The seed the network was made with.
    pub fn seed(&self) -> u64 {
        self.fabric.seed
    }

    /// Adds a host that owns `addrs` (packets to these addresses are delivered to it).
    ///
    /// # Panics
    /// If another host already owns one of the addresses: that is a mistake in the test's
    /// topology, not something a packet can cause.
    pub fn add_host(&mut self, name: &str, addrs: &[IpAddr], node: N) -> HostId {
        let id = HostId(self.hosts.len());
        for addr in addrs {
            if let Some(owner) = self.fabric.owners.get(addr) {
                panic!(
                    "address {addr} of host {name:?} is already owned by host {:?}",
                    self.hosts[owner.0].name
                );
            }
        }
        for addr in addrs {
            self.fabric.owners.insert(*addr, id);
        }
        self.hosts.push(Host {
            name: name.to_owned(),
            addrs: addrs.to_vec(),
            node,
        });
        self.fabric.taps.push(Vec::new());
        id
    }

    /// The host's node.
    ///
    /// # Panics
    /// If `id` was not returned by this network's [`add_host`](Self::add_host).
    pub fn host(&self, id: HostId) -> &N {
        &self.hosts[id.0].node
    }

    /// The host's node, mutably (to start a connection, say; call [`flush`](Self::flush) or
    /// step afterwards so what it wants to send goes out at the current instant).
    ///
    /// # Panics
    /// If `id` is not a host of this network.
    pub fn host_mut(&mut self, id: HostId) -> &mut N {
        &mut self.hosts[id.0].node
    }

    /// The name the host was added with.
    ///
    /// # Panics
    /// If `id` is not a host of this network.
    pub fn host_name(&self, id: HostId) -> &str {
        &self.hosts[id.0].name
    }

    /// The addresses the host owns.
    ///
    /// # Panics
    /// If `id` is not a host of this network.
    pub fn host_addrs(&self, id: HostId) -> &[IpAddr] {
        &self.hosts[id.0].addrs
    }

    /// The host that owns `addr`, if any.
    pub fn host_by_addr(&self, addr: IpAddr) -> Option<HostId> {
        self.fabric.owners.get(&addr).copied()
    }

    /// Every host, in the order they were added.
    pub fn host_ids(&self) -> impl Iterator<Item = HostId> {
        (0..self.hosts.len()).map(HostId)
    }

    /// Links `a` and `b` point to point: `a_to_b` shapes what `a` sends to `b`, `b_to_a` the
    /// reverse. Linking an already linked pair replaces both configurations, keeping the
    /// counters, the random streams and the packets already in flight.
    ///
    /// # Panics
    /// If `a == b` (a host has no path to itself) or either is not a host of this network.
    pub fn link(&mut self, a: HostId, b: HostId, a_to_b: PathConfig, b_to_a: PathConfig) {
        assert_ne!(a, b, "a host cannot be linked to itself");
        assert!(
            a.0 < self.hosts.len() && b.0 < self.hosts.len(),
            "link({a}, {b}): no such host"
        );
        self.set_path(a, b, a_to_b);
        self.set_path(b, a, b_to_a);
    }

    /// Sets (or creates) the path `from → to` alone. Changing a path mid-run keeps its
    /// counters, its random stream, the packets in flight and the serializer's backlog.
    ///
    /// # Panics
    /// As [`link`](Self::link).
    pub fn set_path(&mut self, from: HostId, to: HostId, config: PathConfig) {
        assert_ne!(from, to, "a host cannot be linked to itself");
        assert!(
            from.0 < self.hosts.len() && to.0 < self.hosts.len(),
            "set_path({from}, {to}): no such host"
        );
        let seed = self.fabric.path_seed(from, to);
        self.fabric
            .paths
            .entry((from, to))
            .and_modify(|p| p.config = config.clone())
            .or_insert_with(|| Path::new(config, seed));
    }

    /// The configuration of the path `from → to`, if linked.
    pub fn path_config(&self, from: HostId, to: HostId) -> Option<&PathConfig> {
        self.fabric.paths.get(&(from, to)).map(|p| &p.config)
    }

    /// The counters of the path `from → to`, if linked.
    pub fn path_stats(&self, from: HostId, to: HostId) -> Option<&PathStats> {
        self.fabric.paths.get(&(from, to)).map(|p| &p.stats)
    }

    /// Bytes waiting for the serializer of `from → to` now, excluding the packet on the wire.
    pub fn queued_bytes(&mut self, from: HostId, to: HostId) -> Option<usize> {
        let now = self.fabric.now;
        self.fabric
            .paths
            .get_mut(&(from, to))
            .map(|p| p.queued_bytes(now))
    }

    /// Network-wide counters, with the sum over all paths.
    pub fn stats(&self) -> NetStats {
        let mut paths = PathStats::default();
        for p in self.fabric.paths.values() {
            paths.add(&p.stats);
        }
        NetStats {
            emitted: self.fabric.emitted,
            dropped_no_route: self.fabric.dropped_no_route,
            paths,
        }
    }

    /// Packets put on a path and not yet delivered (including those held back or queued).
    pub fn in_flight(&self) -> usize {
        self.fabric.in_flight.len()
    }

    /// Attaches a tap to the host's interface; a host may have several, called in the order
    /// attached.
    ///
    /// # Panics
    /// If `host` is not a host of this network.
    pub fn tap(&mut self, host: HostId, tap: Box<dyn Tap>) {
        assert!(host.0 < self.hosts.len(), "tap({host}): no such host");
        self.fabric.taps[host.0].push(tap);
    }

    /// Detaches and returns the host's taps (to flush or drop them), in the order attached.
    /// An unknown host has none.
    pub fn take_taps(&mut self, host: HostId) -> Vec<Box<dyn Tap>> {
        self.fabric
            .taps
            .get_mut(host.0)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How many steps in a row may leave virtual time unchanged before [`step`](Self::step)
    /// panics (nodes that keep answering each other over zero-delay paths, or a deadline that
    /// is never cleared, would otherwise hang the test). Default [`DEFAULT_LIVELOCK_LIMIT`].
    pub fn set_livelock_limit(&mut self, steps: u64) {
        self.livelock_limit = steps;
    }

    /// Collects what every host wants to send at the current instant (in host order) and puts
    /// it on its paths, without advancing time.
    pub fn flush(&mut self) {
        let now = self.fabric.now;
        let fabric = &mut self.fabric;
        for (i, host) in self.hosts.iter_mut().enumerate() {
            host.node
                .transmit(now, &mut |packet: &[u8]| fabric.emit(HostId(i), packet));
        }
    }

    /// The instant of the next event (a delivery or a host deadline), not earlier than now, or
    /// `None` if the network is idle. Asks every host's `poll_timeout`.
    pub fn next_event(&mut self) -> Option<Instant> {
        let mut next = self.fabric.in_flight.peek().map(|Reverse(p)| p.at);
        for host in &mut self.hosts {
            if let Some(t) = host.node.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next.map(|t| t.max(self.fabric.now))
    }

    /// Flushes, then advances to the next event and handles it: every packet due delivered in
    /// `(deliver_at, seq)` order, then `handle_timeout` on every host whose deadline has come
    /// (in host order), then another flush. Returns false, doing nothing more, if the network
    /// is idle.
    ///
    /// # Panics
    /// When more than the [livelock limit](Self::set_livelock_limit) steps in a row happen
    /// without time advancing.
    pub fn step(&mut self) -> bool {
        self.flush();
        match self.next_event() {
            Some(t) => {
                self.advance_to(t);
                true
            }
            None => false,
        }
    }

    /// Runs every event up to and including `t`, then sets the clock to `t` (if later).
    pub fn run_until(&mut self, t: Instant) {
        loop {
            self.flush();
            match self.next_event() {
                Some(e) if e <= t => self.advance_to(e),
                _ => break,
            }
        }
        self.fabric.now = self.fabric.now.max(t);
    }

    /// Runs until the network is idle or the next event is after `limit`. Returns true if it
    /// went idle (the clock then stays at the last event); otherwise the clock is set to
    /// `limit` and false is returned.
    pub fn run_until_idle(&mut self, limit: Instant) -> bool {
        loop {
            self.flush();
            match self.next_event() {
                None => return true,
                Some(e) if e <= limit => self.advance_to(e),
                Some(_) => {
                    self.fabric.now = self.fabric.now.max(limit);
                    return false;
                }
            }
        }
    }

    /// Steps while `cond` holds and the next event is not after `limit`. Returns true if `cond`
    /// became false, false if the limit (or idleness, after which nothing can change) came
    /// first; in that case the clock is set to `limit` and `cond` is asked one last time.
    pub fn run_while(&mut self, limit: Instant, mut cond: impl FnMut(&mut Self) -> bool) -> bool {
        loop {
            if !cond(self) {
                return true;
            }
            self.flush();
            match self.next_event() {
                Some(e) if e <= limit => self.advance_to(e),
                _ => {
                    self.fabric.now = self.fabric.now.max(limit);
                    return !cond(self);
                }
            }
        }
    }

    /// Moves the clock to `t` (>= now) and handles everything due then.
    fn advance_to(&mut self, t: Instant) {
        if t > self.fabric.now {
            self.fabric.now = t;
            self.steps_without_progress = 0;
        } else {
            self.steps_without_progress += 1;
            assert!(
                self.steps_without_progress <= self.livelock_limit,
                "livelock: {} steps at {} without virtual time advancing (nodes answering each \
                 other over zero-delay paths, or a deadline that handle_timeout never clears?)",
                self.steps_without_progress,
                self.fabric.now,
            );
        }
        let now = self.fabric.now;
        while let Some(Reverse(p)) = self.fabric.in_flight.peek() {
            if p.at > now {
                break;
            }
            let Some(Reverse(p)) = self.fabric.in_flight.pop() else {
                break;
            };
            if let Some(path) = self.fabric.paths.get_mut(&(p.from, p.to)) {
                path.stats.delivered += 1;
                path.stats.bytes_delivered += p.bytes.len() as u64;
            }
            if let Some(taps) = self.fabric.taps.get_mut(p.to.0) {
                for tap in taps {
                    tap.packet(now, Direction::Rx, &p.bytes);
                }
            }
            if let Some(host) = self.hosts.get_mut(p.to.0) {
                host.node.receive(now, &p.bytes);
            }
        }
        for host in &mut self.hosts {
            if host.node.poll_timeout().is_some_and(|d| d <= now) {
                host.node.handle_timeout(now);
            }
        }
        self.flush();
    }
}
