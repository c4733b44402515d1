//! UDP (RFC 768) in the sans-IO core: the table of a host's UDP sockets, beside the TCP
//! endpoint in the [`Interface`](crate::Interface).
//!
//! Sockets are keyed by their local address (a specific address or the unspecified address of
//! a family, and a port) and may be *connected* to one peer, which makes them receive only
//! from it and makes ICMP errors about their datagrams reach them (as Linux does without
//! `IP_RECVERR`). Like the rest of the core it owns no clock and no device: the interface
//! hands it the datagrams addressed to the host and takes what it queues to send.
//!
//! - a datagram to a bound port is queued to its socket (bounded, as `rmem`);
//! - one to a port nobody bound is answered with ICMP port unreachable (RFC 1122 §4.1.3.1,
//!   RFC 792, RFC 4443 §3.1), rate limited (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f));
//! - an ICMP error quoting one of our datagrams is delivered to the connected socket that
//!   sent it: port unreachable as `ECONNREFUSED` (RFC 1122 §4.1.3.3: "UDP MUST pass to the
//!   application layer all ICMP error messages that it receives from the IP layer"), the
//!   next send or receive on the socket reports it once.
//!
//! Receiving is cheap on the bulk path: a datagram's bytes go into a buffer from the table's
//! pool ([`BufferPool`]) rather than a fresh allocation, and
//! [`recv_coalesced`](UdpTable::recv_coalesced) hands a run of queued datagrams of one
//! 4-tuple and one size over as one buffer with their segment size, as Linux's UDP GRO does
//! (`UDP_GRO`, `udp_gro_receive`), so that a QUIC endpoint takes a burst in one call.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use synack_tcp::endpoint::EPHEMERAL_PORTS;
use synack_tcp::{IcmpError, Instant};
use synack_wire::icmp::{Icmpv4Repr, Icmpv6Repr};
use synack_wire::{Error as WireError, IpProtocol, IpRepr, UdpRepr};

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
    /// ICMP errors about our datagrams delivered to a connected socket.
    pub icmp_errors_delivered: u64,
    /// ICMP errors about our datagrams that no connected socket could take (ignored).
    pub icmp_errors_ignored: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
}

/// Bytes a socket may hold unread before datagrams are dropped (Linux's default `rmem`).
pub const RX_LIMIT_BYTES: usize = 212_992;
/// Packets waiting for the driver before a send is refused with `WouldBlock`.
pub const OUT_LIMIT: usize = 1024;
/// ICMP error rate limit: a token bucket of this many messages, one more per millisecond.
const ICMP_BURST: u64 = 50;
const ICMP_REFILL_US: u64 = 1000;
const TTL: u8 = 64;

/// Buffers the pool keeps for datagrams received: a queue's worth (the receive queue holds at
/// most [`RX_LIMIT_BYTES`], about 145 full-sized datagrams).
pub const POOL_BUFFERS: usize = 256;

/// Recycled datagram buffers, so that receiving a datagram does not allocate once the pool
/// is warm. A buffer keeps its capacity (the interface MTU) between uses; one that grew past
/// [`BufferPool::MAX_CAPACITY`] or finds the pool full is freed instead.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    limit: usize,
    capacity: usize,
    allocated: u64,
    reused: u64,
}

impl BufferPool {
    /// Buffers larger than this are not kept (a jumbo datagram's buffer is freed after use).
    pub const MAX_CAPACITY: usize = 65_536;

    /// A pool keeping at most `limit` free buffers, each allocated with `capacity` bytes.
    pub fn new(limit: usize, capacity: usize) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            limit,
            capacity,
            allocated: 0,
            reused: 0,
        }
    }

    /// A buffer holding a copy of `bytes`: a recycled one if there is one.
    pub fn take_copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut v = match self.free.pop() {
            Some(v) => {
                self.reused += 1;
                v
            }
            None => {
                self.allocated += 1;
                Vec::with_capacity(self.capacity.max(bytes.len()))
            }
        };
        v.clear();
        v.extend_from_slice(bytes);
        v
    }

    /// Gives a buffer back for reuse.
    pub fn put(&mut self, v: Vec<u8>) {
        if self.free.len() < self.limit && v.capacity() <= Self::MAX_CAPACITY {
            self.free.push(v);
        }
    }

    /// Free buffers held now.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    /// Buffers allocated (the pool had none free) and buffers reused, since it was made.
    pub fn counts(&self) -> (u64, u64) {
        (self.allocated, self.reused)
    }
}

/// A run of datagrams handed over in one buffer by
/// [`UdpTable::recv_coalesced`]: `segments` datagrams from `from` to `to`, laid end to end in
/// `len` bytes, each `stride` bytes long but the last, which may be shorter (Linux's
/// `UDP_GRO` contract, and what `quinn_udp::RecvMeta::stride` means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub len: usize,
    pub stride: usize,
    pub segments: usize,
}

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its source.
    pub from: SocketAddr,
    /// Its destination address (the socket may be bound to the unspecified address).
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

struct Sock {
    rx: VecDeque<Datagram>,
    rx_bytes: usize,
    peer: Option<SocketAddr>,
    /// An error from ICMP not yet reported to the application (`sk_err`).
    error: Option<io::ErrorKind>,
}

/// The UDP sockets of one host and the datagrams waiting to be sent.
pub struct UdpTable {
    addrs: Vec<IpAddr>,
    mtu: usize,
    sockets: BTreeMap<SocketAddr, Sock>,
    out: VecDeque<Vec<u8>>,
    stats: UdpStats,
    next_port: u32,
    icmp_tokens: u64,
    icmp_last: Option<Instant>,
    /// Verify checksums of datagrams received (off when the device did: `ChecksumCaps`).
    verify: bool,
    /// Buffers for the datagrams received.
    pool: BufferPool,
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

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

impl UdpTable {
    /// The UDP table of a host with `addrs` and an interface MTU of `mtu`.
    pub fn new(addrs: &[IpAddr], mtu: usize) -> UdpTable {
        UdpTable {
            addrs: addrs.to_vec(),
            mtu,
            sockets: BTreeMap::new(),
            out: VecDeque::new(),
            stats: UdpStats::default(),
            next_port: 0,
            icmp_tokens: 0,
            icmp_last: None,
            verify: true,
            pool: BufferPool::new(POOL_BUFFERS, mtu),
        }
    }

    /// Whether checksums of datagrams received are verified (see `Interface::set_checksum`).
    pub fn set_verify_checksum(&mut self, on: bool) {
        self.verify = on;
    }

    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// The pool of receive buffers.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Gives the buffer of a datagram taken with [`recv`](Self::recv) back for reuse.
    pub fn recycle(&mut self, data: Vec<u8>) {
        self.pool.put(data);
    }

    /// The bound sockets' local addresses.
    pub fn sockets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sockets.keys().copied()
    }

    fn in_use(&self, addr: SocketAddr) -> bool {
        self.sockets.keys().any(|k| {
            k.port() == addr.port()
                && k.is_ipv4() == addr.is_ipv4()
                && (k.ip() == addr.ip() || k.ip().is_unspecified() || addr.ip().is_unspecified())
        })
    }

    /// Binds a socket to `addr`: one of the host's addresses or an unspecified one, and a port
    /// (0 picks a free one of the ephemeral range). Returns the address bound.
    pub fn bind(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        if !addr.ip().is_unspecified() && !self.addrs.contains(&addr.ip()) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{} is not an address of this host", addr.ip()),
            ));
        }
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
                error: None,
            },
        );
        Ok(addr)
    }

    /// Closes the socket bound to `local`; its unread datagrams are dropped.
    pub fn unbind(&mut self, local: SocketAddr) {
        if let Some(s) = self.sockets.remove(&local) {
            for d in s.rx {
                self.pool.put(d.data);
            }
        }
    }

    /// Connects the socket bound to `local` to `peer`: it receives only from `peer` (what it
    /// had queued from others is dropped, as on Linux) and takes ICMP errors about what it
    /// sends there.
    pub fn connect(&mut self, local: SocketAddr, peer: SocketAddr) -> io::Result<()> {
        if peer.is_ipv4() != local.is_ipv4() {
            return Err(invalid("address family differs from the socket's"));
        }
        let s = self
            .sockets
            .get_mut(&local)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        s.peer = Some(peer);
        s.error = None;
        let pool = &mut self.pool;
        s.rx.retain_mut(|d| {
            if d.from == peer {
                return true;
            }
            pool.put(std::mem::take(&mut d.data));
            false
        });
        s.rx_bytes = s.rx.iter().map(|d| d.data.len()).sum();
        Ok(())
    }

    /// The peer the socket bound to `local` is connected to.
    pub fn peer(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.sockets.get(&local).and_then(|s| s.peer)
    }

    /// Whether a receive on `local` would return now (a datagram or an error is waiting).
    pub fn readable(&self, local: SocketAddr) -> bool {
        self.sockets
            .get(&local)
            .is_none_or(|s| !s.rx.is_empty() || s.error.is_some())
    }

    /// Whether a send would be taken now.
    pub fn writable(&self) -> bool {
        self.out.len() < OUT_LIMIT
    }

    /// Whether an ICMP error waits to be reported on the socket bound to `local`.
    pub fn error_pending(&self, local: SocketAddr) -> bool {
        self.sockets.get(&local).is_some_and(|s| s.error.is_some())
    }

    fn take_error(&mut self, local: SocketAddr) -> io::Result<()> {
        let s = self
            .sockets
            .get_mut(&local)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        match s.error.take() {
            Some(kind) => Err(io::Error::from(kind)),
            None => Ok(()),
        }
    }

    /// Queues `payload` as one datagram from the socket bound to `local` to `target`.
    ///
    /// Fails with a pending ICMP error (once), `InvalidInput` for a datagram that does not fit
    /// the MTU (never fragmented) or a bad destination, `WouldBlock` while the queue to the
    /// device is full.
    pub fn send_to(
        &mut self,
        local: SocketAddr,
        target: SocketAddr,
        payload: &[u8],
    ) -> io::Result<usize> {
        self.take_error(local)?;
        if target.is_ipv4() != local.is_ipv4() {
            return Err(invalid("address family differs from the socket's"));
        }
        if target.ip().is_unspecified() || target.port() == 0 {
            return Err(invalid("invalid destination"));
        }
        let src = if local.ip().is_unspecified() {
            self.addrs
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == target.is_ipv4())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrNotAvailable, "no source address")
                })?
        } else {
            local.ip()
        };
        let repr = UdpRepr {
            src_port: local.port(),
            dst_port: target.port(),
            payload,
        };
        let ip = IpRepr::new(src, target.ip(), IpProtocol::Udp, repr.buffer_len(), TTL)
            .ok_or_else(|| invalid("datagram too long"))?;
        if ip.buffer_len() > self.mtu {
            return Err(invalid(&format!(
                "datagram of {} bytes does not fit the MTU of {} (no fragmentation)",
                payload.len(),
                self.mtu
            )));
        }
        if self.out.len() >= OUT_LIMIT {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let mut p = vec![0u8; ip.buffer_len()];
        ip.emit(&mut p);
        repr.emit(&mut p[ip.header_len()..], src, target.ip());
        self.out.push_back(p);
        self.stats.tx_datagrams += 1;
        Ok(payload.len())
    }

    /// The next datagram for the socket bound to `local`, or the pending ICMP error;
    /// `WouldBlock` when there is neither.
    pub fn recv(&mut self, local: SocketAddr) -> io::Result<Datagram> {
        self.take_error(local)?;
        let s = self
            .sockets
            .get_mut(&local)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let d =
            s.rx.pop_front()
                .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        s.rx_bytes -= d.data.len();
        Ok(d)
    }

    /// The next datagram for the socket bound to `local` copied into `buf` (truncated to its
    /// length, as a kernel socket does), and the datagrams queued behind it from the same
    /// source to the same destination, end to end, while they have the first one's size and
    /// fit, up to `max_segments` in all; a shorter datagram is taken as the last of the run
    /// (RFC 9000 §14.2 lets the last packet of a burst be smaller; Linux's UDP GRO coalesces
    /// the same way). A datagram of another 4-tuple or a longer one stays queued for the next
    /// call. Errors as [`recv`](Self::recv): the pending ICMP error once, else `WouldBlock`
    /// when nothing is queued.
    pub fn recv_coalesced(
        &mut self,
        local: SocketAddr,
        buf: &mut [u8],
        max_segments: usize,
    ) -> io::Result<Coalesced> {
        self.take_error(local)?;
        let s = self
            .sockets
            .get_mut(&local)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let d =
            s.rx.pop_front()
                .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        s.rx_bytes -= d.data.len();
        let stride = d.data.len().min(buf.len());
        buf[..stride].copy_from_slice(&d.data[..stride]);
        let mut c = Coalesced {
            from: d.from,
            to: d.to,
            len: stride,
            stride,
            segments: 1,
        };
        // A truncated or empty datagram ends the run (an empty one cannot be a segment).
        let mut open = stride == d.data.len() && stride > 0;
        self.pool.put(d.data);
        while open && c.segments < max_segments {
            let Some(next) = s.rx.front() else { break };
            let n = next.data.len();
            if next.from != c.from
                || next.to != c.to
                || n > stride
                || n == 0
                || c.len + n > buf.len()
            {
                break;
            }
            let next = s.rx.pop_front().expect("front exists");
            s.rx_bytes -= n;
            buf[c.len..c.len + n].copy_from_slice(&next.data);
            c.len += n;
            c.segments += 1;
            open = n == stride;
            self.pool.put(next.data);
        }
        Ok(c)
    }

    /// A UDP datagram (`payload` of the IP packet `ip`) addressed to one of the host's
    /// addresses; `packet` is the IP packet as received, up to its total length (quoted in an
    /// ICMP error if nobody listens).
    pub fn receive(&mut self, now: Instant, ip: &IpRepr, payload: &[u8], packet: &[u8]) {
        let udp = match UdpRepr::parse(payload, self.verify.then(|| (ip.src(), ip.dst()))) {
            Ok(u) => u,
            Err(WireError::BadChecksum) => {
                self.stats.rx_bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.stats.rx_malformed += 1;
                return;
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
                        to,
                        data: self.pool.take_copy(udp.payload),
                    });
                    self.stats.rx_datagrams += 1;
                }
            }
            None => {
                self.stats.rx_no_port += 1;
                self.port_unreachable(now, ip, packet);
            }
        }
    }

    /// An ICMP error quoting `invoking` (the IP header and the first bytes of what we sent).
    /// Returns false if it does not quote a UDP datagram (the interface then gives it to TCP).
    pub fn handle_icmp_error(&mut self, err: IcmpError, invoking: &[u8]) -> bool {
        let Some((local, remote)) = quoted_udp(invoking) else {
            return false;
        };
        let kind = match err {
            IcmpError::PortUnreachable => Some(io::ErrorKind::ConnectionRefused),
            IcmpError::Hard => Some(io::ErrorKind::HostUnreachable),
            // Soft errors and "packet too big" leave the socket as it is (the application
            // sizes its datagrams; QUIC probes the path itself, RFC 9000 §14.3).
            _ => None,
        };
        let exact = self
            .sockets
            .get_mut(&local)
            .filter(|s| s.peer == Some(remote));
        let sock = match exact {
            Some(s) => Some(s),
            None => self
                .sockets
                .get_mut(&SocketAddr::new(unspecified(local.ip()), local.port()))
                .filter(|s| s.peer == Some(remote)),
        };
        match (sock, kind) {
            (Some(s), Some(kind)) => {
                s.error = Some(kind);
                self.stats.icmp_errors_delivered += 1;
            }
            _ => self.stats.icmp_errors_ignored += 1,
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

    /// The next packet queued to go out (a datagram or an ICMP error).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
}

/// The local and remote addresses of the UDP datagram an ICMP error quotes (its IP header and
/// at least the 8 bytes of the UDP header, RFC 792).
fn quoted_udp(invoking: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    crate::iface::quoted(invoking, u8::from(IpProtocol::Udp)).map(|(src, dst, _)| (src, dst))
}
