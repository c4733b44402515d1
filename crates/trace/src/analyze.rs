//! The analysis of a capture, packet by packet: TCP connections (see [`crate::conn`]), QUIC
//! flows over UDP, and counters of everything that could not be read.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Serialize;
use synack_tcp::Instant;
use synack_wire::{Error as WireError, IpProtocol, IpRepr, TcpFlags, TcpRepr, UdpRepr};

use crate::capture::{ip_packet, Frame, LinkDrop};
use crate::conn::{Conn, ConnTrace};
use crate::decode::quic::{self, LongType};

/// A finished connection is kept this long (capture time) for late segments, such as a
/// retransmitted last ACK, before it is handed out.
const LINGER_US: u64 = 2_000_000;
/// A connection silent this long (capture time) is handed out as it is.
const IDLE_US: u64 = 600_000_000;
/// Packets between two sweeps for finished and idle connections.
const SWEEP_EVERY: u64 = 4096;
/// Connection IDs a QUIC flow remembers (to tell a new connection from a known one).
const QUIC_CIDS: usize = 64;

/// Why packets were not analyzed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// Frames of a link type the reader does not know.
    pub unsupported_link: u64,
    /// Frames that end inside their link-layer header.
    pub link_truncated: u64,
    /// Frames carrying something other than IP (ARP, …).
    pub not_ip: u64,
    /// IP packets cut short by the capture's snap length.
    pub snap_truncated: u64,
    /// IP headers that do not parse (bad version, length or header checksum).
    pub bad_ip: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// TCP headers that do not parse.
    pub bad_tcp: u64,
    /// UDP headers that do not parse.
    pub bad_udp: u64,
}

impl Drops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.unsupported_link
            + self.link_truncated
            + self.not_ip
            + self.snap_truncated
            + self.bad_ip
            + self.fragments
            + self.bad_tcp
            + self.bad_udp
    }
}

/// Counters of the whole capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames read.
    pub frames: u64,
    /// IP packets parsed.
    pub ip_packets: u64,
    pub tcp_segments: u64,
    pub udp_datagrams: u64,
    /// IP packets of other protocols (ICMP, …).
    pub other_ip: u64,
    /// First and last frame times, in microseconds since the epoch.
    pub first_time: Option<u64>,
    pub last_time: Option<u64>,
    pub drops: Drops,
}

/// QUIC seen between a client and a server over UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuicSummary {
    /// The side that sent the first Initial.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Connections: client Initials with a destination connection ID not seen before and
    /// not one the server chose (RFC 9000 §7.2).
    pub connections: u64,
    pub initial: u64,
    pub zero_rtt: u64,
    pub handshake: u64,
    pub retry: u64,
    /// Datagrams of the flow, long-header or not.
    pub datagrams: u64,
    pub first_time: u64,
    pub last_time: u64,
}

#[derive(Debug)]
struct QuicFlow {
    s: QuicSummary,
    client_dcids: Vec<Vec<u8>>,
    server_scids: Vec<Vec<u8>>,
}

fn remember(list: &mut Vec<Vec<u8>>, id: &[u8]) {
    if !list.iter().any(|x| x == id) {
        if list.len() >= QUIC_CIDS {
            list.remove(0);
        }
        list.push(id.to_vec());
    }
}

/// A direction-free key of a flow: its two sockets in order.
fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// What an analysis leaves at the end.
#[derive(Debug)]
pub struct Finished {
    /// The connections not yet handed out, by number.
    pub connections: Vec<ConnTrace>,
    /// QUIC flows, in the order they appeared.
    pub quic: Vec<QuicSummary>,
    pub stats: Stats,
    /// The link types of the frames, in the order first seen.
    pub link_types: Vec<u32>,
}

/// Follows every TCP connection and QUIC flow of a capture, packet by packet, in memory
/// bounded by the connections open at once (not by the capture's length).
///
/// Connections are handed out by [`take_finished`](Self::take_finished) once closed (a little
/// later, for late segments) or silent for ten minutes of capture time, and by
/// [`finish`](Self::finish) at the end.
///
/// ```
/// use synack_trace::Analyzer;
/// use synack_tcp::Instant;
///
/// let mut a = Analyzer::new();
/// a.push_ip(Instant::ZERO, &[0x45, 0, 0]); // too short: counted, not analyzed
/// let done = a.finish();
/// assert_eq!(done.stats.drops.bad_ip, 1);
/// assert!(done.connections.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Analyzer {
    conns: HashMap<(SocketAddr, SocketAddr), Conn>,
    next_id: u64,
    finished: Vec<ConnTrace>,
    quic: HashMap<(SocketAddr, SocketAddr), QuicFlow>,
    quic_order: Vec<(SocketAddr, SocketAddr)>,
    stats: Stats,
    since_sweep: u64,
    link_types: Vec<u32>,
}

impl Analyzer {
    pub fn new() -> Analyzer {
        Analyzer::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connections being followed.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// One captured frame.
    pub fn push_frame(&mut self, frame: &Frame) {
        self.stats.frames += 1;
        if !self.link_types.contains(&frame.link) {
            self.link_types.push(frame.link);
        }
        match ip_packet(frame.link, &frame.data) {
            Ok(ip) => {
                let cut = (frame.orig_len as usize) > frame.data.len();
                self.push_ip_inner(frame.time, ip, cut);
            }
            Err(LinkDrop::UnsupportedLink(_)) => self.stats.drops.unsupported_link += 1,
            Err(LinkDrop::Truncated) => self.stats.drops.link_truncated += 1,
            Err(LinkDrop::NotIp) => self.stats.drops.not_ip += 1,
        }
    }

    /// One IP packet (IPv4 or IPv6, from its first header byte).
    pub fn push_ip(&mut self, time: Instant, packet: &[u8]) {
        self.push_ip_inner(time, packet, false);
    }

    fn push_ip_inner(&mut self, time: Instant, packet: &[u8], cut: bool) {
        let t = time.as_micros();
        self.stats.first_time.get_or_insert(t);
        self.stats.last_time = Some(self.stats.last_time.map_or(t, |l| l.max(t)));
        let (ip, payload) = match IpRepr::parse(packet) {
            Ok(x) => x,
            Err(WireError::Truncated) if cut => {
                self.stats.drops.snap_truncated += 1;
                return;
            }
            Err(WireError::Unsupported) => {
                self.stats.drops.fragments += 1;
                return;
            }
            Err(_) => {
                self.stats.drops.bad_ip += 1;
                return;
            }
        };
        self.stats.ip_packets += 1;
        match ip.protocol() {
            IpProtocol::Tcp => {
                // Checksums are not verified: captures on the sending host show them before
                // the NIC fills them in (checksum offload).
                match TcpRepr::parse(payload, None) {
                    Ok(tcp) => {
                        self.stats.tcp_segments += 1;
                        let src = SocketAddr::new(ip.src(), tcp.src_port);
                        let dst = SocketAddr::new(ip.dst(), tcp.dst_port);
                        self.tcp(time, src, dst, &tcp);
                    }
                    Err(_) => self.stats.drops.bad_tcp += 1,
                }
            }
            IpProtocol::Udp => match UdpRepr::parse(payload, None) {
                Ok(udp) => {
                    self.stats.udp_datagrams += 1;
                    let src = SocketAddr::new(ip.src(), udp.src_port);
                    let dst = SocketAddr::new(ip.dst(), udp.dst_port);
                    self.udp(t, src, dst, udp.payload);
                }
                Err(_) => self.stats.drops.bad_udp += 1,
            },
            _ => self.stats.other_ip += 1,
        }
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(t);
        }
    }

    fn tcp(&mut self, time: Instant, src: SocketAddr, dst: SocketAddr, tcp: &TcpRepr<'_>) {
        let k = key(src, dst);
        let syn_only = tcp.flags.contains(TcpFlags::SYN) && !tcp.flags.contains(TcpFlags::ACK);
        if syn_only {
            if let Some(c) = self.conns.get(&k) {
                if c.is_new_incarnation(src, tcp.seq) {
                    // A new connection on the same four-tuple: the old one is over.
                    if let Some(old) = self.conns.remove(&k) {
                        self.finished.push(old.finish());
                    }
                }
            }
        }
        let next_id = &mut self.next_id;
        let c = self.conns.entry(k).or_insert_with(|| {
            *next_id += 1;
            Conn::new(*next_id, time, src, dst, tcp.flags)
        });
        c.segment(time, src, tcp);
    }

    fn udp(&mut self, t: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let k = key(src, dst);
        let headers = quic::long_headers(payload);
        let f = match self.quic.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                // A flow is QUIC from its first Initial on.
                if !headers.iter().any(|h| h.kind == LongType::Initial) {
                    return;
                }
                self.quic_order.push(k);
                e.insert(QuicFlow {
                    s: QuicSummary {
                        client: src,
                        server: dst,
                        connections: 0,
                        initial: 0,
                        zero_rtt: 0,
                        handshake: 0,
                        retry: 0,
                        datagrams: 0,
                        first_time: t,
                        last_time: t,
                    },
                    client_dcids: Vec::new(),
                    server_scids: Vec::new(),
                })
            }
        };
        f.s.datagrams += 1;
        f.s.last_time = f.s.last_time.max(t);
        let from_client = src == f.s.client;
        for h in headers {
            match h.kind {
                LongType::Initial => f.s.initial += 1,
                LongType::ZeroRtt => f.s.zero_rtt += 1,
                LongType::Handshake => f.s.handshake += 1,
                LongType::Retry => f.s.retry += 1,
            }
            if from_client {
                if h.kind == LongType::Initial
                    && !f.client_dcids.iter().any(|x| x == h.dcid)
                    && !f.server_scids.iter().any(|x| x == h.dcid)
                {
                    f.s.connections += 1;
                    remember(&mut f.client_dcids, h.dcid);
                }
            } else {
                remember(&mut f.server_scids, h.scid);
            }
        }
    }

    /// Hands out connections closed a while ago or silent for long.
    fn sweep(&mut self, now: u64) {
        let done: Vec<(SocketAddr, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.closed_at()
                    .is_some_and(|t| now.saturating_sub(t.as_micros()) > LINGER_US)
                    || now.saturating_sub(c.last_time().as_micros()) > IDLE_US
            })
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<Conn> = done.iter().filter_map(|k| self.conns.remove(k)).collect();
        out.sort_by_key(Conn::id);
        self.finished.extend(out.into_iter().map(Conn::finish));
    }

    /// Hands out the connections closed more than two seconds before `now`, or silent for ten
    /// minutes (live captures call this while no packet comes: the analyzer otherwise looks
    /// every few thousand packets).
    pub fn flush_closed(&mut self, now: Instant) {
        self.sweep(now.as_micros());
    }

    /// Connections finished since the last call, in the order they were handed out.
    pub fn take_finished(&mut self) -> Vec<ConnTrace> {
        std::mem::take(&mut self.finished)
    }

    /// Ends the analysis: every connection left, by number, the QUIC flows and the counters.
    pub fn finish(mut self) -> Finished {
        let mut conns = std::mem::take(&mut self.finished);
        let mut rest: Vec<Conn> = self.conns.into_values().collect();
        rest.sort_by_key(Conn::id);
        conns.extend(rest.into_iter().map(Conn::finish));
        let mut quic = Vec::new();
        for k in &self.quic_order {
            if let Some(f) = self.quic.remove(k) {
                quic.push(f.s);
            }
        }
        Finished {
            connections: conns,
            quic,
            stats: self.stats,
            link_types: self.link_types,
        }
    }
}
