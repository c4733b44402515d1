//! UDP (RFC 768) for the async driver: datagram sockets bound to a local address, and ICMP
//! port unreachable for datagrams to ports nobody bound (RFC 1122 §4.1.3.1, RFC 792,
//! RFC 4443 §3.1).
//!
//! The [`Interface`](crate::Interface) has no UDP yet, so the driver gives every packet to
//! [`UdpLayer::intercept`] first: UDP to one of the host's addresses is consumed here, the
//! rest goes on to the interface. When the interface grows UDP, this layer moves into it.

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use synack_tcp::endpoint::EPHEMERAL_PORTS;
use synack_tcp::Instant;
use synack_wire::icmp::{Icmpv4Repr, Icmpv6Repr};
use synack_wire::{Error as WireError, IpProtocol, IpRepr, UdpRepr};

use crate::net::host::register;
use crate::net::{Stack, ToSocketAddr};

/// Counters of the UDP layer of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams queued to a socket.
    pub rx_datagrams: u64,
    /// Datagrams dropped because the socket's receive queue was full.
    pub rx_dropped_full: u64,
    /// Datagrams whose checksum did not verify.
    pub rx_bad_checksum: u64,
    /// Datagrams with a bad length field.
    pub rx_malformed: u64,
    /// Datagrams to a port nobody bound.
    pub rx_no_port: u64,
    /// Datagrams to a connected socket from another address (dropped, as Linux does).
    pub rx_wrong_peer: u64,
    /// ICMP port unreachable messages sent.
    pub icmp_unreachable_sent: u64,
    /// ICMP errors not sent because of the rate limit (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f))
    /// or because the source may not be answered (RFC 1122 §3.2.2).
    pub icmp_suppressed: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
}

/// Bytes a socket may hold unread before datagrams are dropped (Linux's default `rmem`).
const RX_LIMIT_BYTES: usize = 212_992;
/// Packets waiting for the driver before `send_to` waits.
const OUT_LIMIT: usize = 1024;
/// ICMP error rate limit: a token bucket of this many messages, one more per millisecond.
const ICMP_BURST: u64 = 50;
const ICMP_REFILL_US: u64 = 1000;
const TTL: u8 = 64;

struct Datagram {
    from: SocketAddr,
    data: Vec<u8>,
}

struct Sock {
    rx: VecDeque<Datagram>,
    rx_bytes: usize,
    peer: Option<SocketAddr>,
    waker: Option<Waker>,
}

/// The UDP sockets of one host and the datagrams waiting to be sent.
#[derive(Default)]
pub(crate) struct UdpLayer {
    sockets: BTreeMap<SocketAddr, Sock>,
    out: VecDeque<Vec<u8>>,
    send_waiters: Vec<Waker>,
    stats: UdpStats,
    next_port: u32,
    icmp_tokens: u64,
    icmp_last: Option<Instant>,
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// RFC 1122 §3.2.2: no ICMP error about a datagram whose source is not a single host.
fn answerable(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

impl UdpLayer {
    pub(crate) fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Consumes `packet` if it is UDP to one of `addrs`: queues it to the bound socket, or
    /// answers with ICMP port unreachable. Returns false for anything else (the interface
    /// then counts it).
    pub(crate) fn intercept(&mut self, now: Instant, packet: &[u8], addrs: &[IpAddr]) -> bool {
        let proto = match packet.first().map(|b| b >> 4) {
            Some(4) => packet.get(9),
            Some(6) => packet.get(6),
            _ => None,
        };
        if proto != Some(&u8::from(IpProtocol::Udp)) {
            return false;
        }
        let Ok((ip, payload)) = IpRepr::parse(packet) else {
            return false;
        };
        if !addrs.contains(&ip.dst()) {
            return false;
        }
        let udp = match UdpRepr::parse(payload, Some((ip.src(), ip.dst()))) {
            Ok(u) => u,
            Err(WireError::BadChecksum) => {
                self.stats.rx_bad_checksum += 1;
                return true;
            }
            Err(_) => {
                self.stats.rx_malformed += 1;
                return true;
            }
        };
        let from = SocketAddr::new(ip.src(), udp.src_port);
        let to = SocketAddr::new(ip.dst(), udp.dst_port);
        let key = if self.sockets.contains_key(&to) {
            to
        } else {
            SocketAddr::new(unspecified(to.ip()), to.port())
        };
        match self.sockets.get_mut(&key) {
            Some(sock) => {
                if sock.peer.is_some_and(|p| p != from) {
                    self.stats.rx_wrong_peer += 1;
                } else if sock.rx_bytes + udp.payload.len() > RX_LIMIT_BYTES {
                    self.stats.rx_dropped_full += 1;
                } else {
                    sock.rx_bytes += udp.payload.len();
                    sock.rx.push_back(Datagram {
                        from,
                        data: udp.payload.to_vec(),
                    });
                    self.stats.rx_datagrams += 1;
                }
            }
            None => {
                self.stats.rx_no_port += 1;
                // The invoking packet as received, up to its IP total length.
                let end = (payload.as_ptr() as usize - packet.as_ptr() as usize) + payload.len();
                self.port_unreachable(now, &ip, &packet[..end.min(packet.len())]);
            }
        }
        true
    }

    /// RFC 1122 §4.1.3.1: "If a datagram arrives addressed to a UDP port for which there is no
    /// pending LISTEN call, UDP SHOULD send an ICMP Port Unreachable message." The message
    /// carries as much of the datagram as fits in 576 bytes over IPv4 (RFC 1812 §4.3.2.3) and
    /// in the minimum MTU of 1280 over IPv6 (RFC 4443 §2.4(c)); errors are rate limited.
    fn port_unreachable(&mut self, now: Instant, ip: &IpRepr, invoking: &[u8]) {
        if !answerable(ip.src()) || !self.icmp_token(now) || self.out.len() >= OUT_LIMIT {
            self.stats.icmp_suppressed += 1;
            return;
        }
        let packet = match (ip.dst(), ip.src()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let invoking = &invoking[..invoking.len().min(576 - 28)];
                let icmp = Icmpv4Repr::DstUnreachable {
                    code: Icmpv4Repr::PORT_UNREACHABLE,
                    next_hop_mtu: 0,
                    invoking,
                };
                let Some(hdr) =
                    IpRepr::new(ip.dst(), ip.src(), IpProtocol::Icmp, icmp.buffer_len(), TTL)
                else {
                    return;
                };
                let mut out = vec![0u8; hdr.buffer_len()];
                hdr.emit(&mut out);
                icmp.emit(&mut out[hdr.header_len()..]);
                out
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let invoking = &invoking[..invoking.len().min(1280 - 48)];
                let icmp = Icmpv6Repr::DstUnreachable {
                    code: Icmpv6Repr::PORT_UNREACHABLE,
                    invoking,
                };
                let Some(hdr) = IpRepr::new(
                    ip.dst(),
                    ip.src(),
                    IpProtocol::Icmpv6,
                    icmp.buffer_len(),
                    TTL,
                ) else {
                    return;
                };
                let mut out = vec![0u8; hdr.buffer_len()];
                hdr.emit(&mut out);
                icmp.emit(&mut out[hdr.header_len()..], src, dst);
                out
            }
            _ => return,
        };
        self.out.push_back(packet);
        self.stats.icmp_unreachable_sent += 1;
    }

    fn icmp_token(&mut self, now: Instant) -> bool {
        let earned = match self.icmp_last {
            None => ICMP_BURST,
            Some(last) => now.saturating_duration_since(last).as_micros() as u64 / ICMP_REFILL_US,
        };
        if earned > 0 || self.icmp_last.is_none() {
            self.icmp_tokens = (self.icmp_tokens + earned).min(ICMP_BURST);
            self.icmp_last = Some(now);
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    /// Hands the queued datagrams and ICMP errors to `send`.
    pub(crate) fn transmit(&mut self, send: &mut dyn FnMut(&[u8])) {
        while let Some(p) = self.out.pop_front() {
            send(&p);
        }
    }

    pub(crate) fn wake_ready(&mut self) {
        for s in self.sockets.values_mut() {
            if !s.rx.is_empty() {
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        if self.out.len() < OUT_LIMIT {
            for w in self.send_waiters.drain(..) {
                w.wake();
            }
        }
    }

    pub(crate) fn wake_all(&mut self) {
        for s in self.sockets.values_mut() {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        for w in self.send_waiters.drain(..) {
            w.wake();
        }
    }

    fn in_use(&self, addr: SocketAddr) -> bool {
        self.sockets.keys().any(|k| {
            k.port() == addr.port()
                && k.is_ipv4() == addr.is_ipv4()
                && (k.ip() == addr.ip() || k.ip().is_unspecified() || addr.ip().is_unspecified())
        })
    }

    fn bind(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let addr = if addr.port() == 0 {
            let first = u32::from(*EPHEMERAL_PORTS.start());
            let count = u32::from(*EPHEMERAL_PORTS.end() - *EPHEMERAL_PORTS.start()) + 1;
            let mut found = None;
            for _ in 0..count {
                let port = (first + self.next_port % count) as u16;
                self.next_port = self.next_port.wrapping_add(1);
                let a = SocketAddr::new(addr.ip(), port);
                if !self.in_use(a) {
                    found = Some(a);
                    break;
                }
            }
            found.ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free UDP port"))?
        } else {
            if self.in_use(addr) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("UDP {addr} is in use"),
                ));
            }
            addr
        };
        self.sockets.insert(
            addr,
            Sock {
                rx: VecDeque::new(),
                rx_bytes: 0,
                peer: None,
                waker: None,
            },
        );
        Ok(addr)
    }

    fn unbind(&mut self, addr: SocketAddr) {
        if let Some(mut s) = self.sockets.remove(&addr) {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

/// A UDP socket on a [`Stack`], shaped like [`tokio::net::UdpSocket`].
///
/// Datagrams are never fragmented: a payload that does not fit the interface MTU is refused
/// with `InvalidInput`. A datagram longer than the buffer given to `recv_from` is truncated,
/// as with the kernel's sockets.
pub struct UdpSocket {
    stack: Stack,
    local: SocketAddr,
    peer: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .finish()
    }
}

impl UdpSocket {
    /// Binds to `addr` on `stack`: one of its addresses or the unspecified address of a
    /// family, and a port (0 picks a free ephemeral port).
    pub async fn bind<A: ToSocketAddr>(stack: &Stack, addr: A) -> io::Result<UdpSocket> {
        let addr = addr.to_socket_addr()?;
        let local = stack.with_host(|h, _| {
            if !addr.ip().is_unspecified() && !h.iface.addrs().contains(&addr.ip()) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{} is not an address of this host", addr.ip()),
                ));
            }
            h.udp.bind(addr)
        })??;
        Ok(UdpSocket {
            stack: stack.clone(),
            local,
            peer: Mutex::new(None),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The peer set by [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Sets the default destination of [`send`](Self::send) and receives only from it.
    pub async fn connect<A: ToSocketAddr>(&self, addr: A) -> io::Result<()> {
        let addr = addr.to_socket_addr()?;
        if addr.is_ipv4() != self.local.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address family differs from the socket's",
            ));
        }
        *self
            .peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
        let local = self.local;
        self.stack.with_host(|h, _| {
            if let Some(s) = h.udp.sockets.get_mut(&local) {
                s.peer = Some(addr);
                // Datagrams queued from other sources are dropped, as on Linux.
                s.rx.retain(|d| d.from == addr);
                s.rx_bytes = s.rx.iter().map(|d| d.data.len()).sum();
            }
        })
    }

    /// Sends `buf` as one datagram to `target`; returns its length.
    pub async fn send_to<A: ToSocketAddr>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = target.to_socket_addr()?;
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }

    /// Sends `buf` to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        poll_fn(|cx| self.poll_send_to(cx, buf, peer)).await
    }

    /// Receives one datagram into `buf` (truncating it to `buf`'s length) and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from_slice(cx, buf)).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peer_addr()?;
        poll_fn(|cx| self.poll_recv_from_slice(cx, buf))
            .await
            .map(|(n, _)| n)
    }

    /// Sends one datagram, or registers the task to be woken when the driver has room.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let local = self.local;
        let r = self.stack.with_host(|h, _| {
            if target.is_ipv4() != local.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "address family differs from the socket's",
                ));
            }
            if target.ip().is_unspecified() || target.port() == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "invalid destination",
                ));
            }
            let src = if local.ip().is_unspecified() {
                h.iface.addr_for(target.ip()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrNotAvailable, "no source address")
                })?
            } else {
                local.ip()
            };
            let repr = UdpRepr {
                src_port: local.port(),
                dst_port: target.port(),
                payload: buf,
            };
            let Some(ip) = IpRepr::new(src, target.ip(), IpProtocol::Udp, repr.buffer_len(), TTL)
            else {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            };
            if ip.buffer_len() > h.iface.mtu() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "datagram of {} bytes does not fit the MTU of {} (no fragmentation)",
                        buf.len(),
                        h.iface.mtu()
                    ),
                ));
            }
            if h.udp.out.len() >= OUT_LIMIT {
                h.udp.send_waiters.push(cx.waker().clone());
                return Ok(None);
            }
            let mut p = vec![0u8; ip.buffer_len()];
            ip.emit(&mut p);
            repr.emit(&mut p[ip.header_len()..], src, target.ip());
            h.udp.out.push_back(p);
            h.udp.stats.tx_datagrams += 1;
            Ok(Some(buf.len()))
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some(n))) => {
                self.stack.kick();
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_recv_from_slice(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let local = self.local;
        let r = self.stack.with_host(|h, _| {
            let Some(s) = h.udp.sockets.get_mut(&local) else {
                return Err(io::Error::from(io::ErrorKind::NotConnected));
            };
            match s.rx.pop_front() {
                Some(d) => {
                    s.rx_bytes -= d.data.len();
                    let n = d.data.len().min(buf.len());
                    buf[..n].copy_from_slice(&d.data[..n]);
                    Ok(Some((n, d.from)))
                }
                None => {
                    register(&mut s.waker, cx.waker());
                    Ok(None)
                }
            }
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some(v))) => Poll::Ready(Ok(v)),
        }
    }

    /// Receives one datagram into `buf`, or registers the task to be woken when one arrives.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        match self.poll_recv_from_slice(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok((n, from))) => {
                buf.advance(n);
                Poll::Ready(Ok(from))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let local = self.local;
        self.stack
            .with_host_even_if_dead(|h, _| h.udp.unbind(local));
    }
}
