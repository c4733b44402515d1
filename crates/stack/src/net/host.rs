//! One host as the async driver sees it: the sans-IO [`Interface`] (with its TCP endpoint and
//! UDP table) and the wakers of the tasks waiting on its sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::task::Waker;

use synack_tcp::{ConnId, Connection, Instant, ListenerId, State, TraceRecord};

use crate::net::udp::UdpLayer;
use crate::sim::Node;
use crate::Interface;

/// A callback the driver hands every trace record of a host to (with tracing switched on):
/// segments, state changes, retransmissions, congestion events.
pub type TraceHook = Box<dyn FnMut(&TraceRecord) + Send>;

/// The tasks waiting on one connection.
#[derive(Default)]
pub(crate) struct ConnWaiters {
    pub(crate) read: Option<Waker>,
    pub(crate) write: Option<Waker>,
    pub(crate) connect: Option<Waker>,
}

/// A host: its IP layer and the wakers of its sockets.
pub(crate) struct Host {
    pub(crate) iface: Interface,
    pub(crate) udp: UdpLayer,
    pub(crate) conns: BTreeMap<ConnId, ConnWaiters>,
    pub(crate) listeners: BTreeMap<ListenerId, Waker>,
    /// The addresses TCP listeners are bound to (for `EADDRINUSE` between an unspecified
    /// and a specific address, which the endpoint allows).
    pub(crate) tcp_bound: Vec<SocketAddr>,
    pub(crate) trace_hook: Option<TraceHook>,
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
            listeners: BTreeMap::new(),
            tcp_bound: Vec::new(),
            trace_hook: None,
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

    /// Wakes every task whose socket became ready, and hands new trace records to the hook.
    pub(crate) fn wake_ready(&mut self) {
        let tcp = self.iface.tcp();
        for (id, w) in self.conns.iter_mut() {
            let conn = tcp.conn(*id);
            if w.read.is_some() && conn.is_none_or(Connection::is_readable) {
                wake(&mut w.read);
            }
            if w.write.is_some() && conn.is_none_or(write_ready) {
                wake(&mut w.write);
            }
            if w.connect.is_some() && conn.is_none_or(connect_ready) {
                wake(&mut w.connect);
            }
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
        self.iface.receive(now, packet);
    }

    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        self.iface.transmit(now, send);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.iface.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.iface.handle_timeout(now);
    }
}
