//! An IP interface: raw packets in and out, checksums verified, TCP segments handed to the
//! sans-IO [`Endpoint`], ICMP echo answered. Like the core, it owns no clock and no device: a
//! driver (the simulator, a TUN loop, packetdrill's shim) feeds it packets and `now`.

use std::collections::VecDeque;
use std::net::IpAddr;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use synack_tcp::{Config, Endpoint, FastOpenConfig, IcmpError, Instant, SegmentBuf};
use synack_wire::checksum;
use synack_wire::icmp::{Icmpv4Repr, Icmpv6Repr};
use synack_wire::{Error as WireError, IpProtocol, IpRepr, TcpRepr};

/// Counters of packets in and out, and of every reason a packet was dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfaceStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Malformed IP headers (truncated, bad version, bad length, bad header checksum).
    pub rx_malformed_ip: u64,
    /// TCP, UDP or ICMP checksums that did not verify (corruption in flight).
    pub rx_bad_checksum: u64,
    /// Malformed transport headers (bad data offset, bad options).
    pub rx_malformed_transport: u64,
    /// Packets for an address that is not ours.
    pub rx_not_ours: u64,
    /// Packets of a protocol we do not speak, or fragments.
    pub rx_unsupported: u64,
    /// ICMP echo requests answered.
    pub icmp_echo_replies: u64,
    /// ICMP errors about our TCP segments handed to the TCP endpoint.
    pub icmp_errors: u64,
    /// TCP super-segments received whole (several segments the kernel coalesced, GRO, or
    /// never cut, GSO: see [`RxMeta`]).
    pub rx_super_segments: u64,
    /// TCP super-segments sent for the device to cut (TSO: see [`Interface::set_tso_max`]).
    pub tx_super_segments: u64,
}

/// What a device knows of a packet it hands over beyond its bytes (a TUN device with
/// offloads reads it from the packet's virtio-net header). The default, nothing, is a plain
/// packet whose checksums are verified as [`ChecksumCaps::rx`] says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The transport checksum is not to be verified: the packet never crossed a wire (the
    /// kernel made it and left its checksum partial, virtio-net's `NEEDS_CSUM`) or the
    /// device verified it (`DATA_VALID`).
    pub csum_trusted: bool,
    /// For a TCP super-segment, the size of the segments it stands for (virtio-net's
    /// `gso_size`); 0 for a plain packet.
    pub gso_size: u16,
}

/// What goes with a packet [`Interface::transmit_with`] hands out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// For a TCP super-segment (TSO), the payload size the device is to cut it into
    /// segments of; 0 for a plain packet.
    pub gso_size: u16,
}

/// What a device does about transport checksums (TCP and UDP; the IPv4 header checksum is
/// always computed and verified, and ICMP's too).
///
/// A device that computes them on the way out and verifies them on the way in (a NIC or a TUN
/// with `IFF_VNET_HDR` checksum offload), or a link that cannot corrupt (an in-memory pair),
/// lets the interface skip both: [`ChecksumCaps::OFFLOADED`]. The default is
/// [`ChecksumCaps::FULL`]: every checksum computed and verified (RFC 9293 §3.1, RFC 768).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumCaps {
    /// Compute TCP checksums on transmit. (UDP's, on a rare path, are always computed.)
    pub tx: bool,
    /// Verify TCP and UDP checksums on receive.
    pub rx: bool,
}

impl ChecksumCaps {
    /// Compute and verify every checksum.
    pub const FULL: ChecksumCaps = ChecksumCaps { tx: true, rx: true };
    /// Neither compute nor verify transport checksums: the device does, or none is needed.
    pub const OFFLOADED: ChecksumCaps = ChecksumCaps {
        tx: false,
        rx: false,
    };
}

impl Default for ChecksumCaps {
    fn default() -> ChecksumCaps {
        ChecksumCaps::FULL
    }
}

/// Room before the TCP segment in the scratch buffer (and in a [`TxQueue`]'s buffer): enough
/// for an IPv6 header.
pub const HEADROOM: usize = 40;

/// A device's transmit queue, for [`Interface::transmit_to`]: the interface builds each packet
/// straight into a buffer the queue hands out (a pooled NIC buffer, a queue entry allocated at
/// the packet's length), so no packet is copied on its way to the device.
pub trait TxQueue {
    /// A buffer of exactly `len` bytes for the next packet, its contents anything. A second
    /// call with the same `len` before [`send`](Self::send) returns the same buffer, as written.
    fn buffer(&mut self, len: usize) -> &mut [u8];

    /// Queue the packet in the buffer last handed out, from byte `start` to its end.
    fn send(&mut self, start: usize);
}

/// The endpoint's room for one TCP segment: [`HEADROOM`] bytes into a [`TxQueue`] buffer.
struct QueueSegment<'a> {
    queue: &'a mut dyn TxQueue,
    room: usize,
}

impl SegmentBuf for QueueSegment<'_> {
    fn room(&self) -> usize {
        self.room
    }

    fn segment(&mut self, len: usize) -> &mut [u8] {
        &mut self.queue.buffer(HEADROOM + len)[HEADROOM..]
    }
}

/// The longest TCP segment in one IP packet: IPv4's total length (65535) less its header.
const MAX_TCP_SEGMENT: usize = 65_535 - 20;

/// A host's IP layer over its TCP endpoint.
pub struct Interface {
    addrs: Vec<IpAddr>,
    mtu: usize,
    tcp: Endpoint,
    udp: crate::udp::UdpTable,
    /// Packets other than TCP waiting to go out (ICMP replies).
    queued: VecDeque<Vec<u8>>,
    scratch: Vec<u8>,
    stats: IfaceStats,
    ttl: u8,
    checksum: ChecksumCaps,
    /// The largest TCP payload sent as one super-segment (TSO); 0: none.
    tso_max: usize,
}

impl Interface {
    /// An interface with `addrs`, whose TCP uses `config` (its `mtu` is the interface's) and
    /// keys its ISNs with `secret`.
    pub fn new(config: Config, addrs: &[IpAddr], secret: [u8; 16]) -> Interface {
        let mtu = config.mtu;
        Interface {
            addrs: addrs.to_vec(),
            mtu,
            tcp: Endpoint::new(config, secret),
            udp: crate::udp::UdpTable::new(addrs, mtu),
            queued: VecDeque::new(),
            scratch: vec![0; mtu + HEADROOM],
            stats: IfaceStats::default(),
            ttl: 64,
            checksum: ChecksumCaps::FULL,
            tso_max: 0,
        }
    }

    /// Lets TCP send new data in super-segments of up to `max_payload` bytes (at most what
    /// one IP packet holds), for a device that cuts them into segments itself (TCP
    /// segmentation offload: a TUN device with `IFF_VNET_HDR` and `TUN_F_TSO4/6`); each goes
    /// out of [`transmit_with`](Self::transmit_with) with the size to cut it at. 0 (the
    /// default) turns it off.
    pub fn set_tso_max(&mut self, max_payload: usize) {
        self.tso_max = max_payload.min(MAX_TCP_SEGMENT - 60);
        let room = if self.tso_max > 0 {
            MAX_TCP_SEGMENT.max(self.mtu)
        } else {
            self.mtu
        };
        self.scratch.resize(HEADROOM + room, 0);
    }

    /// See [`set_tso_max`](Self::set_tso_max).
    pub fn tso_max(&self) -> usize {
        self.tso_max
    }

    /// What the device does about checksums (see [`ChecksumCaps`]); a driver sets it from
    /// `Device::checksum_caps`. TCP segments written from now on follow `caps.tx`
    /// (connections already open included); packets received from now on, `caps.rx`.
    pub fn set_checksum(&mut self, caps: ChecksumCaps) {
        self.checksum = caps;
        self.tcp.set_tx_checksum(caps.tx);
        self.udp.set_verify_checksum(caps.rx);
    }

    pub fn checksum(&self) -> ChecksumCaps {
        self.checksum
    }

    pub fn tcp(&self) -> &Endpoint {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut Endpoint {
        &mut self.tcp
    }

    pub fn udp(&self) -> &crate::udp::UdpTable {
        &self.udp
    }

    pub fn udp_mut(&mut self) -> &mut crate::udp::UdpTable {
        &mut self.udp
    }

    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// The first address of the family of `peer` (the source for connections to it).
    pub fn addr_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == peer.is_ipv4())
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The TCP Fast Open settings (RFC 7413): client and server switches and the server's key.
    pub fn fast_open(&self) -> FastOpenConfig {
        self.tcp.config().fast_open
    }

    /// Change the TCP Fast Open settings; connections and listeners made from now on use them.
    pub fn set_fast_open(&mut self, fo: FastOpenConfig) {
        self.tcp.config_mut().fast_open = fo;
    }

    pub fn stats(&self) -> IfaceStats {
        self.stats
    }

    fn is_ours(&self, dst: IpAddr) -> bool {
        self.addrs.contains(&dst)
    }

    /// An IP packet arrived.
    pub fn receive(&mut self, now: Instant, packet: &[u8]) {
        self.receive_with(now, packet, RxMeta::default());
    }

    /// An IP packet arrived with what the device knows of it: a TCP super-segment (GRO) is
    /// handed to TCP whole, as one segment longer than the MSS (nothing in RFC 9293 bounds a
    /// received segment but the window); a checksum the device vouches for is not verified.
    pub fn receive_with(&mut self, now: Instant, packet: &[u8], meta: RxMeta) {
        self.stats.rx_packets += 1;
        let (ip, payload) = match IpRepr::parse(packet) {
            Ok(p) => p,
            Err(WireError::Unsupported) => {
                self.stats.rx_unsupported += 1;
                return;
            }
            Err(_) => {
                self.stats.rx_malformed_ip += 1;
                return;
            }
        };
        if !self.is_ours(ip.dst()) {
            self.stats.rx_not_ours += 1;
            return;
        }
        match ip.protocol() {
            IpProtocol::Tcp if self.checksum.rx && !meta.csum_trusted => {
                self.receive_tcp_unverified(now, &ip, payload, meta.gso_size)
            }
            IpProtocol::Tcp => match TcpRepr::parse(payload, None) {
                Ok(seg) => {
                    if meta.gso_size > 0 && seg.payload.len() > usize::from(meta.gso_size) {
                        self.stats.rx_super_segments += 1;
                    }
                    self.tcp
                        .handle_segment_ecn(now, ip.src(), ip.dst(), ip.ecn(), &seg)
                }
                Err(_) => self.stats.rx_malformed_transport += 1,
            },
            IpProtocol::Udp => {
                let end = payload.as_ptr() as usize - packet.as_ptr() as usize + payload.len();
                self.udp.receive(now, &ip, payload, &packet[..end]);
            }
            IpProtocol::Icmp => self.receive_icmpv4(now, &ip, payload),
            IpProtocol::Icmpv6 => self.receive_icmpv6(now, &ip, payload),
            _ => self.stats.rx_unsupported += 1,
        }
    }

    /// A TCP segment whose checksum is to be verified (RFC 9293 §3.1): the header and the
    /// pseudo-header are summed here, the payload by the endpoint as it copies it into the
    /// receive buffer when it can (one pass over the bytes). Counted as a bad checksum and
    /// dropped when the sum is wrong, as if it had been verified first.
    fn receive_tcp_unverified(&mut self, now: Instant, ip: &IpRepr, segment: &[u8], gso_size: u16) {
        let (src, dst) = (ip.src(), ip.dst());
        let seg = match TcpRepr::parse(segment, None) {
            Ok(seg) => seg,
            // A checksum that does not verify takes precedence, as `parse` checks it first.
            Err(_) => match TcpRepr::parse(segment, Some((src, dst))) {
                Err(WireError::BadChecksum) => return self.stats.rx_bad_checksum += 1,
                _ => return self.stats.rx_malformed_transport += 1,
            },
        };
        let Ok(len) = u32::try_from(segment.len()) else {
            self.stats.rx_bad_checksum += 1;
            return;
        };
        if gso_size > 0 && seg.payload.len() > usize::from(gso_size) {
            self.stats.rx_super_segments += 1;
        }
        let header = &segment[..segment.len() - seg.payload.len()];
        let pseudo = checksum::pseudo_header_sum(src, dst, 6, len);
        let header_sum = checksum::ones_complement_sum(header, pseudo);
        if !self
            .tcp
            .handle_segment_unverified(now, src, dst, ip.ecn(), &seg, header_sum)
        {
            self.stats.rx_bad_checksum += 1;
        }
    }

    fn receive_icmpv4(&mut self, now: Instant, ip: &IpRepr, payload: &[u8]) {
        match Icmpv4Repr::parse(payload) {
            Ok(Icmpv4Repr::EchoRequest { ident, seq, data }) => {
                let reply = Icmpv4Repr::EchoReply { ident, seq, data };
                let len = reply.buffer_len();
                if let Some(hdr) = IpRepr::new(ip.dst(), ip.src(), IpProtocol::Icmp, len, self.ttl)
                {
                    let mut out = vec![0u8; hdr.header_len() + len];
                    hdr.emit(&mut out);
                    reply.emit(&mut out[hdr.header_len()..]);
                    self.queue(out);
                    self.stats.icmp_echo_replies += 1;
                }
            }
            Ok(Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                invoking,
            }) => {
                let err = match code {
                    Icmpv4Repr::PORT_UNREACHABLE => IcmpError::PortUnreachable,
                    Icmpv4Repr::PROTOCOL_UNREACHABLE | 9 | 10 | 13 => IcmpError::Hard,
                    Icmpv4Repr::FRAG_NEEDED => IcmpError::PacketTooBig {
                        mtu: u32::from(next_hop_mtu),
                    },
                    _ => IcmpError::Soft,
                };
                self.icmp_to_tcp(now, err, invoking);
            }
            Ok(Icmpv4Repr::TimeExceeded { invoking, .. }) => {
                self.icmp_to_tcp(now, IcmpError::Soft, invoking)
            }
            Ok(_) => {}
            Err(WireError::BadChecksum) => self.stats.rx_bad_checksum += 1,
            Err(_) => self.stats.rx_malformed_transport += 1,
        }
    }

    /// Hand an ICMP error to the TCP connection whose segment it quotes.
    fn icmp_to_tcp(&mut self, now: Instant, err: IcmpError, invoking: &[u8]) {
        if self.udp.handle_icmp_error(err, invoking) {
            return;
        }
        let Some((local, remote, seq)) = quoted_tcp(invoking) else {
            return;
        };
        if !self.is_ours(local.ip()) {
            return;
        }
        self.stats.icmp_errors += 1;
        self.tcp.handle_icmp_error(now, local, remote, err, seq);
    }

    fn receive_icmpv6(&mut self, now: Instant, ip: &IpRepr, payload: &[u8]) {
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src(), ip.dst()) else {
            return;
        };
        match Icmpv6Repr::parse(payload, src, dst) {
            Ok(Icmpv6Repr::EchoRequest { ident, seq, data }) => {
                let reply = Icmpv6Repr::EchoReply { ident, seq, data };
                let len = reply.buffer_len();
                if let Some(hdr) =
                    IpRepr::new(ip.dst(), ip.src(), IpProtocol::Icmpv6, len, self.ttl)
                {
                    let mut out = vec![0u8; hdr.header_len() + len];
                    hdr.emit(&mut out);
                    reply.emit(&mut out[hdr.header_len()..], dst, src);
                    self.queue(out);
                    self.stats.icmp_echo_replies += 1;
                }
            }
            Ok(Icmpv6Repr::DstUnreachable { code, invoking }) => {
                let err = match code {
                    Icmpv6Repr::PORT_UNREACHABLE => IcmpError::PortUnreachable,
                    Icmpv6Repr::ADMIN_PROHIBITED => IcmpError::Hard,
                    _ => IcmpError::Soft,
                };
                self.icmp_to_tcp(now, err, invoking);
            }
            Ok(Icmpv6Repr::PacketTooBig { mtu, invoking }) => {
                self.icmp_to_tcp(now, IcmpError::PacketTooBig { mtu }, invoking)
            }
            Ok(Icmpv6Repr::TimeExceeded { invoking, .. }) => {
                self.icmp_to_tcp(now, IcmpError::Soft, invoking)
            }
            Ok(_) => {}
            Err(WireError::BadChecksum) => self.stats.rx_bad_checksum += 1,
            Err(_) => self.stats.rx_malformed_transport += 1,
        }
    }

    fn queue(&mut self, packet: Vec<u8>) {
        // Replies are bounded: a flood of requests cannot grow memory without end.
        if self.queued.len() < 256 {
            self.queued.push_back(packet);
        }
    }

    /// Hand every packet due now to `send`, one call per packet.
    pub fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        self.transmit_with(now, &mut |p, _| send(p));
    }

    /// As [`transmit`](Self::transmit), each packet with what the device is to do with it
    /// (cut a TCP super-segment: [`set_tso_max`](Self::set_tso_max)).
    pub fn transmit_with(&mut self, now: Instant, send: &mut dyn FnMut(&[u8], TxMeta)) {
        while let Some(p) = self.queued.pop_front() {
            self.stats.tx_packets += 1;
            send(&p, TxMeta::default());
        }
        while let Some(p) = self.udp.poll_transmit() {
            self.stats.tx_packets += 1;
            send(&p, TxMeta::default());
        }
        while let Some((start, end, gso_size)) = self.transmit_one(now) {
            self.stats.tx_packets += 1;
            if gso_size > 0 {
                self.stats.tx_super_segments += 1;
            }
            send(&self.scratch[start..end], TxMeta { gso_size });
        }
    }

    /// Hand every packet due now to `queue`, each built in a buffer the queue hands out: TCP
    /// segments are written there by the endpoint, behind room for the IP header, and the IP
    /// header in front of them (other packets, rare, are copied in). The packets and their
    /// order are those of [`transmit`](Self::transmit).
    pub fn transmit_to(&mut self, now: Instant, queue: &mut dyn TxQueue) {
        while let Some(p) = self.queued.pop_front() {
            self.stats.tx_packets += 1;
            queue.buffer(p.len()).copy_from_slice(&p);
            queue.send(0);
        }
        while let Some(p) = self.udp.poll_transmit() {
            self.stats.tx_packets += 1;
            queue.buffer(p.len()).copy_from_slice(&p);
            queue.send(0);
        }
        let room = self.mtu;
        loop {
            let mut seg = QueueSegment {
                queue: &mut *queue,
                room,
            };
            let Some(t) = self.tcp.poll_transmit_to(now, &mut seg) else {
                break;
            };
            let Some(mut ip) = IpRepr::new(t.src, t.dst, IpProtocol::Tcp, t.len, self.ttl) else {
                // No IP header fits these addresses (never for a connection's own): as
                // `transmit` does, stop here without sending the segment.
                break;
            };
            self.stats.tx_packets += 1;
            ip.set_ecn(t.ecn);
            let start = HEADROOM - ip.header_len();
            ip.emit(&mut queue.buffer(HEADROOM + t.len)[start..HEADROOM]);
            queue.send(start);
        }
    }

    /// Write the next TCP packet into the scratch buffer; returns its range there and the
    /// size to cut it at (0: a plain segment).
    fn transmit_one(&mut self, now: Instant) -> Option<(usize, usize, u16)> {
        let Interface {
            tcp,
            scratch,
            ttl,
            tso_max,
            mtu,
            ..
        } = self;
        let t = if *tso_max > 0 {
            tcp.poll_transmit_tso(now, &mut scratch[HEADROOM..], *tso_max)?
        } else {
            tcp.poll_transmit(now, &mut scratch[HEADROOM..HEADROOM + *mtu])?
        };
        let mut ip = IpRepr::new(t.src, t.dst, IpProtocol::Tcp, t.len, *ttl)?;
        // ECT(0) on the new data of a connection that agreed to ECN (RFC 3168 §6.1.2).
        ip.set_ecn(t.ecn);
        let start = HEADROOM - ip.header_len();
        ip.emit(&mut scratch[start..HEADROOM]);
        Some((start, HEADROOM + t.len, t.gso_size))
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.tcp.poll_timeout()
    }

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tcp.handle_timeout(now);
    }
}

impl crate::sim::Node for Interface {
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        Interface::receive(self, now, packet)
    }

    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        Interface::transmit(self, now, send)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        Interface::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant) {
        Interface::handle_timeout(self, now)
    }
}

/// The addresses, ports and sequence number of the TCP segment an ICMP error quotes: its IP
/// header and at least 8 bytes of TCP (RFC 792), which is usually all there is, so this reads
/// the fields directly rather than parsing a whole packet.
fn quoted_tcp(invoking: &[u8]) -> Option<(SocketAddr, SocketAddr, u32)> {
    let (src, dst, tcp) = quoted(invoking, 6)?;
    let t = tcp.get(4..8)?;
    Some((src, dst, u32::from_be_bytes([t[0], t[1], t[2], t[3]])))
}

/// The source and destination (address and port) of the `protocol` (TCP or UDP) packet an ICMP
/// error quotes, and its transport header from the ports on: the quote holds the IP header and
/// at least 8 bytes of what follows (RFC 792, RFC 4443 §2.4).
pub(crate) fn quoted(invoking: &[u8], protocol: u8) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let version = invoking.first()? >> 4;
    let (src, dst, proto, transport): (IpAddr, IpAddr, u8, &[u8]) = match version {
        4 => {
            let ihl = usize::from(invoking[0] & 0x0f) * 4;
            let h = invoking.get(..20)?;
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            (src.into(), dst.into(), h[9], invoking.get(ihl.max(20)..)?)
        }
        6 => {
            let h = invoking.get(..40)?;
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            (
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                h[6],
                &invoking[40..],
            )
        }
        _ => return None,
    };
    if proto != protocol {
        return None;
    }
    let p = transport.get(..4)?;
    let sport = u16::from_be_bytes([p[0], p[1]]);
    let dport = u16::from_be_bytes([p[2], p[3]]);
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        transport,
    ))
}
