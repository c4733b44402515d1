//! One host as the async driver sees it: the sans-IO [`Interface`] (with its TCP endpoint and
//! UDP table) and the wakers of the tasks waiting on its sockets.
//!
//! This is where a packet enters and leaves the stack, for every driver (a device shard, the
//! simulator): [`Host::receive`], [`Host::transmit`] and [`Host::handle_timeout`]. Each marks
//! the connections it touched (by the packet's flow, or the timers that came due) in a ready
//! set, and [`Host::wake_ready`] looks at those alone: the cost of a wake-up grows with the
//! connections that had something happen, not with the connections open.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::task::Waker;

use synack_tcp::{ConnId, Connection, Instant, ListenerId, State, TraceRecord};

use crate::net::flow;
use crate::net::udp::UdpLayer;
use crate::sim::Node;
use crate::{Interface, RxMeta, TxMeta};

/// A callback the driver hands every trace record of a host to (with tracing switched on):
/// segments, state changes, retransmissions, congestion events.
pub type TraceHook = Box<dyn FnMut(&TraceRecord) + Send>;

/// The tasks waiting on one connection.
#[derive(Default)]
pub(crate) struct ConnWaiters {
    pub(crate) read: Option<Waker>,
    pub(crate) write: Option<Waker>,
    pub(crate) connect: Option<Waker>,
    /// The connection's next deadline as last put in `Host::deadlines`.
    deadline: Option<Instant>,
    tuple: Option<(SocketAddr, SocketAddr)>,
}

/// A host: its IP layer and the wakers of its sockets.
pub(crate) struct Host {
    pub(crate) iface: Interface,
    pub(crate) udp: UdpLayer,
    /// The connections a socket holds, and the tasks waiting on them.
    conns: BTreeMap<ConnId, ConnWaiters>,
    /// Those connections by flow `(local, remote)`, to mark the one a packet touches.
    by_flow: HashMap<(SocketAddr, SocketAddr), ConnId>,
    /// The connections touched since the last [`wake_ready`](Host::wake_ready).
    dirty: Vec<ConnId>,
    /// The next deadline of each connection a socket holds: when one comes due its timers ran
    /// and it is looked at.
    deadlines: BinaryHeap<Reverse<(Instant, ConnId)>>,
    pub(crate) listeners: BTreeMap<ListenerId, Waker>,
    /// The addresses TCP listeners are bound to (for `EADDRINUSE` between an unspecified
    /// and a specific address, which the endpoint allows).
    pub(crate) tcp_bound: Vec<SocketAddr>,
    pub(crate) trace_hook: Option<TraceHook>,
    /// Connections looked at by [`wake_ready`](Host::wake_ready), in total.
    pub(crate) examined: u64,
    /// RFC 6056's counter for the ports of active opens on a shard of several.
    pub(crate) port_cursor: u32,
}

/// Replaces `slot` with `cx`'s waker unless it already holds an equivalent one.
pub(crate) fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

/// Whether a blocked writer should be woken: there is a quarter of the send buffer free (the
/// low-water mark, so that a writer does not wake for every acknowledged segment, as Linux's
/// `sk_stream_write_space`), or a write would fail.
pub(crate) fn write_ready(c: &Connection) -> bool {
    let cap = c.send_capacity();
    let lowat = ((cap + c.send_queued()) / 4).max(1);
    cap >= lowat || !c.state().may_send() || c.error().is_some()
}

/// Whether a task waiting for the end of the handshake should be woken.
pub(crate) fn connect_ready(c: &Connection) -> bool {
    c.is_established() || c.error().is_some() || c.state() == State::Closed
}

impl Host {
    pub(crate) fn new(iface: Interface) -> Host {
        Host {
            iface,
            udp: UdpLayer::default(),
            conns: BTreeMap::new(),
            by_flow: HashMap::new(),
            dirty: Vec::new(),
            deadlines: BinaryHeap::new(),
            listeners: BTreeMap::new(),
            tcp_bound: Vec::new(),
            trace_hook: None,
            port_cursor: 0,
            examined: 0,
        }
    }

    /// Whether a listener bound to `addr` would clash with one already bound: the same port
    /// and family, and the same address or either one unspecified (as Linux without
    /// `SO_REUSEADDR`).
    pub(crate) fn tcp_port_taken(&self, addr: SocketAddr) -> bool {
        self.tcp_bound.iter().any(|k| {
            k.port() == addr.port()
                && k.is_ipv4() == addr.is_ipv4()
                && (k.ip() == addr.ip() || k.ip().is_unspecified() || addr.ip().is_unspecified())
        })
    }

    /// Whether a connection is still open or closing (anything but CLOSED and TIME-WAIT):
    /// the driver keeps running for it even when no handle is left, as the kernel finishes
    /// a close after the process is gone.
    pub(crate) fn busy(&self) -> bool {
        let tcp = self.iface.tcp();
        tcp.connections().any(|id| {
            tcp.conn(id)
                .is_some_and(|c| !matches!(c.state(), State::Closed | State::TimeWait))
        })
    }

    /// The waiters of a connection a socket holds (made on first use); the connection is
    /// marked, so that the driver looks at it (and learns its deadline) on its next turn.
    pub(crate) fn waiters(&mut self, id: ConnId) -> &mut ConnWaiters {
        self.dirty.push(id);
        let w = self.conns.entry(id).or_default();
        if w.tuple.is_none() {
            if let Some(t) = self.iface.tcp().conn(id).map(|c| c.tuple()) {
                w.tuple = Some((t.local, t.remote));
                self.by_flow.insert((t.local, t.remote), id);
            }
        }
        w
    }

    /// The socket of a connection is gone: its waiters are forgotten.
    pub(crate) fn forget(&mut self, id: ConnId) {
        if let Some(w) = self.conns.remove(&id) {
            if let Some(t) = w.tuple {
                self.by_flow.remove(&t);
            }
        }
    }

    /// Marks a connection a command changed outside the packet paths (an abort).
    pub(crate) fn mark(&mut self, id: ConnId) {
        self.dirty.push(id);
    }

    /// Marks every connection a socket holds (after arbitrary changes to the interface).
    pub(crate) fn mark_all(&mut self) {
        self.dirty.extend(self.conns.keys().copied());
    }

    /// Marks the connection of `flow`, if a socket holds it.
    fn touch(&mut self, flow: Option<(SocketAddr, SocketAddr)>) {
        if let Some(id) = flow.and_then(|f| self.by_flow.get(&f)) {
            self.dirty.push(*id);
        }
    }

    /// An IP packet arrives (the one way in).
    pub(crate) fn receive(&mut self, now: Instant, packet: &[u8]) {
        self.receive_with(now, packet, RxMeta::default());
    }

    /// An IP packet arrives with what its device knows of it (a TCP super-segment, a
    /// checksum the device vouches for).
    pub(crate) fn receive_with(&mut self, now: Instant, packet: &[u8], meta: RxMeta) {
        self.touch(flow::rx_flow(packet));
        self.iface.receive_with(now, packet, meta);
    }

    /// Every packet due now goes to `send` (the one way out).
    pub(crate) fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        self.transmit_with(now, &mut |p, _| send(p));
    }

    /// As [`transmit`](Self::transmit), each packet with what the device is to do with it
    /// (cut a TCP super-segment).
    pub(crate) fn transmit_with(&mut self, now: Instant, send: &mut dyn FnMut(&[u8], TxMeta)) {
        let Host {
            iface,
            by_flow,
            dirty,
            ..
        } = self;
        iface.transmit_with(now, &mut |p: &[u8], meta| {
            if let Some(id) = flow::tx_flow(p).and_then(|f| by_flow.get(&f)) {
                dirty.push(*id);
            }
            send(p, meta)
        });
    }

    /// Runs the timers due at `now`; the connections whose deadline came are marked.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.iface.handle_timeout(now);
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.conns.get(&id).is_some_and(|w| w.deadline == Some(at)) {
                self.dirty.push(id);
            }
        }
    }

    /// Wakes every task whose socket became ready, and hands new trace records to the hook.
    /// Looks only at the connections marked since the last call (in handle order, so that a
    /// simulated run wakes its tasks in a fixed order), and at the listeners and UDP sockets
    /// (a handful).
    pub(crate) fn wake_ready(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let tcp = self.iface.tcp();
        self.examined += dirty.len() as u64;
        for id in dirty.drain(..) {
            let Some(w) = self.conns.get_mut(&id) else {
                continue;
            };
            let conn = tcp.conn(id);
            if w.read.is_some() && conn.is_none_or(Connection::is_readable) {
                wake(&mut w.read);
            }
            if w.write.is_some() && conn.is_none_or(write_ready) {
                wake(&mut w.write);
            }
            if w.connect.is_some() && conn.is_none_or(connect_ready) {
                wake(&mut w.connect);
            }
            let next = conn.and_then(Connection::poll_timeout);
            if next != w.deadline {
                w.deadline = next;
                if let Some(at) = next {
                    self.deadlines.push(Reverse((at, id)));
                }
            }
        }
        // Keep the allocation.
        self.dirty = dirty;
        if self.deadlines.len() > 2 * self.conns.len() + 64 {
            // Drop stale entries now and then (amortised: the heap at most doubles).
            let conns = &self.conns;
            self.deadlines
                .retain(|Reverse((at, id))| conns.get(id).is_some_and(|w| w.deadline == Some(*at)));
        }
        self.listeners.retain(|id, w| {
            if tcp.pending(*id) > 0 || tcp.listener_addr(*id).is_none() {
                w.wake_by_ref();
                false
            } else {
                true
            }
        });
        self.udp.wake_ready(self.iface.udp());
        if let Some(hook) = self.trace_hook.as_mut() {
            for r in self.iface.tcp_mut().drain_trace() {
                hook(&r);
            }
        }
    }

    /// Wakes every waiting task whatever its readiness (the device failed).
    pub(crate) fn wake_all(&mut self) {
        for w in self.conns.values_mut() {
            wake(&mut w.read);
            wake(&mut w.write);
            wake(&mut w.connect);
        }
        for (_, w) in std::mem::take(&mut self.listeners) {
            w.wake();
        }
        self.udp.wake_all();
    }
}

impl Node for Host {
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        Host::receive(self, now, packet);
    }

    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        Host::transmit(self, now, send);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.iface.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        Host::handle_timeout(self, now);
    }
}
