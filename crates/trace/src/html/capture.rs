//! Diagrams and plots from a capture: each [`ConnTrace`]'s rows as a sequence diagram, and
//! per connection the bytes in flight, RTT samples and goodput derived from its packets by a
//! [`FlowCollector`] that reads the same frames as the [`Analyzer`](crate::Analyzer).
//!
//! A capture sees each packet at one place (the capture point), so when it left and when it
//! arrived are estimated from the handshake: the SYN to the SYN-ACK is the round trip from
//! the capture point to the server and back, the SYN-ACK to the client's ACK the one to the
//! client and back; half of each is taken as the one-way delay on that side.

use std::collections::HashMap;
use std::net::SocketAddr;

use synack_tcp::Instant;
use synack_wire::{IpProtocol, IpRepr, TcpFlags, TcpRepr};

use super::records::{rate, secs, InOrder, Unwrap};
use super::{Arrow, Band, Diagram, Event, Plot, Series, SeriesKind, Side};
use crate::capture::{ip_packet, Frame};
use crate::conn::{ConnTrace, RowKind};
use crate::ladder::{LineRenderer, Row};
use crate::report::Filter;

/// One-way delays on each side of the capture point, from the handshake: (client side,
/// server side), in microseconds.
fn delays(t: &ConnTrace) -> (u64, u64) {
    let m = &t.summary.milestones;
    match (m.syn, m.syn_ack, m.handshake_ack) {
        (Some(a), Some(b), Some(c)) if a <= b && b <= c => ((c - b) / 2, (b - a) / 2),
        _ => (0, 0),
    }
}

/// The sequence diagram of a connection of a capture, its rows filtered as the text ladder's
/// are; times count from `origin_us` (the capture's first packet).
pub fn diagram(t: &ConnTrace, relative: bool, filter: &Filter, origin_us: u64) -> Diagram {
    let (d_client, d_server) = delays(t);
    let s = &t.summary;
    let rows: Vec<_> = t
        .rows(relative)
        .into_iter()
        .filter(|r| filter.keep_row(r))
        .collect();
    let side = |name: &str| {
        if name == "client" {
            Side::Left
        } else {
            Side::Right
        }
    };
    // (delay from the sender to the capture point, from the capture point to the receiver)
    let legs = |from: Side| match from {
        Side::Left => (d_client, d_server),
        Side::Right => (d_server, d_client),
    };
    let mut lines = LineRenderer::new(&["client", "server"], false, Instant::ZERO);
    let mut events = Vec::new();
    // Who sent the segment a state change came with: the next segment of the same instant
    // (the change was made as it was sent), else the previous one (as it was received).
    let seg_side = |i: usize| {
        let t = rows[i].time();
        let sender = |r: &crate::conn::TraceRow| match &r.kind {
            RowKind::Ladder(Row::Segment(sg)) => Some(side(&sg.from)),
            _ => None,
        };
        rows[i..]
            .iter()
            .take_while(|r| r.time() == t)
            .find_map(sender)
            .or_else(|| {
                rows[..i]
                    .iter()
                    .rev()
                    .take_while(|r| r.time() == t)
                    .find_map(sender)
            })
    };
    for (i, r) in rows.iter().enumerate() {
        let t_us = r.time().as_micros();
        match &r.kind {
            RowKind::Ladder(Row::Segment(sg)) => {
                let from = side(&sg.from);
                let (before, after) = legs(from);
                let line = lines.line(&Row::Segment(sg.clone()));
                let label = line
                    .split_once(" : ")
                    .map_or(line.as_str(), |x| x.1)
                    .to_owned();
                events.push(Event::Segment(Arrow {
                    from,
                    sent: t_us.saturating_sub(before),
                    arrived: t_us + after,
                    estimated: true,
                    lost: false,
                    retransmission: sg.retransmission,
                    label,
                }));
            }
            RowKind::Ladder(Row::Folded(f)) => {
                let from = side(&f.from);
                let (before, after) = legs(from);
                let line = lines.line(&Row::Folded(f.clone()));
                let label = line
                    .split_once(" : ")
                    .map_or(line.as_str(), |x| x.1)
                    .to_owned();
                let (a, b) = (f.start.as_micros(), f.end.as_micros());
                events.push(Event::Band(Band {
                    from,
                    start: a.saturating_sub(before),
                    end: b.saturating_sub(before),
                    arrive_start: a + after,
                    arrive_end: b + after,
                    label,
                    segments: f.segments + f.acks,
                    retransmitted: f.retransmitted,
                }));
            }
            RowKind::Ladder(Row::State(st)) => {
                let host = side(&st.host);
                // Sent by this host: it changed state as it sent (before the capture saw
                // it); received: as it arrived (after).
                let t_host = match seg_side(i) {
                    Some(s) if s == host => t_us.saturating_sub(legs(host).0),
                    Some(_) => t_us + legs(host.other()).1,
                    None => t_us,
                };
                events.push(Event::State {
                    side: host,
                    t: t_host,
                    text: format!("{} → {}", st.from, st.to),
                });
            }
            RowKind::Ladder(Row::Note(n)) => events.push(Event::Note {
                side: side(&n.host),
                t: t_us,
                text: format!("{:?}", n.kind),
            }),
            RowKind::App(a) => events.push(Event::Annotation {
                from: side(&a.from),
                t: t_us,
                text: a.text.clone(),
            }),
            RowKind::Elided(e) => events.push(Event::Elided {
                t: t_us,
                text: e.text.clone(),
            }),
        }
    }
    // Keep the events in time order of where they are drawn.
    events.sort_by_key(|e| e.time());
    Diagram {
        title: format!("connection {}: {} → {}", s.id, s.client, s.server),
        left: format!("client {}", s.client),
        right: format!("server {}", s.server),
        rtt_us: s.rtt_us.filter(|r| *r > 0),
        origin_us,
        events,
    }
}

/// The most connections a [`FlowCollector`] follows.
pub const MAX_FLOWS: usize = 500;
/// Points kept per series before thinning.
const MAX_POINTS: usize = 4000;

/// A series that halves its resolution when it grows past [`MAX_POINTS`].
#[derive(Debug, Default)]
struct Thinned<T> {
    points: Vec<T>,
    /// Keep one point in `every`.
    every: u64,
    seen: u64,
}

impl<T: Copy> Thinned<T> {
    fn push(&mut self, p: T) {
        self.every = self.every.max(1);
        self.seen += 1;
        if !self.seen.is_multiple_of(self.every) {
            return;
        }
        self.points.push(p);
        if self.points.len() >= MAX_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 0
            });
            self.every *= 2;
        }
    }
}

/// One direction of a followed connection, as the capture point saw it.
#[derive(Debug, Default)]
struct FlowDir {
    seq: Unwrap,
    ack: Unwrap,
    /// One past the highest sequence number seen.
    max: Option<u64>,
    /// The highest acknowledgment the other side sent for this direction.
    acked: Option<u64>,
    in_order: InOrder,
    payload: u64,
    /// New data not yet acknowledged: (end, when seen), for RTT samples.
    pending: std::collections::VecDeque<(u64, u64)>,
    /// (when, one past the highest sequence number seen) and (when, the highest
    /// acknowledgment seen): both grow.
    maxes: Thinned<(u64, u64)>,
    acks: Thinned<(u64, u64)>,
    /// (when, microseconds from the data to its ACK at the capture point).
    half_rtt: Thinned<(u64, u64)>,
    /// (when, bytes newly in order).
    delivered: Vec<(u64, u64)>,
    /// Bytes in order not yet put in `delivered` (it is bucketed at 1 ms).
    acc: (u64, u64),
}

/// A followed connection: client (the sender of the first SYN, or the higher port) first.
#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    first: u64,
    last: u64,
    syn_seq: Option<u32>,
    dirs: [FlowDir; 2],
}

/// Reads a capture's frames alongside the [`Analyzer`](crate::Analyzer) and keeps, per
/// connection (the first [`MAX_FLOWS`] that pass the filter's port and host), bounded series
/// of bytes in flight, RTT samples and goodput.
#[derive(Debug, Default)]
pub struct FlowCollector {
    filter: Filter,
    flows: Vec<Flow>,
    open: HashMap<(SocketAddr, SocketAddr), usize>,
    /// Connections seen past the limit.
    pub skipped: u64,
}

impl FlowCollector {
    /// Follows connections that pass `filter`'s port and host.
    pub fn new(filter: Filter) -> FlowCollector {
        FlowCollector {
            filter,
            ..FlowCollector::default()
        }
    }

    /// One captured frame (what it cannot parse is ignored: the analyzer counts it).
    pub fn push_frame(&mut self, f: &Frame) {
        let Ok(ip) = ip_packet(f.link, &f.data) else {
            return;
        };
        let Ok((ip, payload)) = IpRepr::parse(ip) else {
            return;
        };
        if ip.protocol() != IpProtocol::Tcp {
            return;
        }
        let Ok(tcp) = TcpRepr::parse(payload, None) else {
            return;
        };
        let src = SocketAddr::new(ip.src(), tcp.src_port);
        let dst = SocketAddr::new(ip.dst(), tcp.dst_port);
        let pass = self
            .filter
            .port
            .is_none_or(|p| src.port() == p || dst.port() == p)
            && self
                .filter
                .host
                .is_none_or(|h| src.ip() == h || dst.ip() == h);
        if !pass {
            return;
        }
        self.tcp(f.time.as_micros(), src, dst, &tcp);
    }

    fn tcp(&mut self, t: u64, src: SocketAddr, dst: SocketAddr, tcp: &TcpRepr<'_>) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let syn_only = tcp.flags.contains(TcpFlags::SYN) && !tcp.flags.contains(TcpFlags::ACK);
        let mut idx = self.open.get(&key).copied();
        if let Some(i) = idx {
            let f = &self.flows[i];
            if syn_only && f.client == src && f.syn_seq.is_some_and(|s| s != tcp.seq) {
                idx = None;
            }
        }
        let i = match idx {
            Some(i) => i,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    self.skipped += 1;
                    self.open.remove(&key);
                    return;
                }
                let src_is_client = match (syn_only, tcp.flags.contains(TcpFlags::SYN)) {
                    (true, _) => true,
                    (false, true) => false,
                    _ => src.port() >= dst.port(),
                };
                let (client, server) = if src_is_client {
                    (src, dst)
                } else {
                    (dst, src)
                };
                self.flows.push(Flow {
                    client,
                    server,
                    first: t,
                    last: t,
                    syn_seq: None,
                    dirs: [FlowDir::default(), FlowDir::default()],
                });
                self.open.insert(key, self.flows.len() - 1);
                self.flows.len() - 1
            }
        };
        let f = &mut self.flows[i];
        f.last = t;
        let d = usize::from(src != f.client);
        if syn_only && d == 0 {
            f.syn_seq.get_or_insert(tcp.seq);
        }
        // This direction's data.
        {
            let dir = &mut f.dirs[d];
            let s0 = dir.seq.at(tcp.seq);
            let syn = u64::from(tcp.flags.contains(TcpFlags::SYN));
            let len = tcp.payload.len() as u64;
            let s1 = s0 + syn + len + u64::from(tcp.flags.contains(TcpFlags::FIN));
            if dir.max.is_none() {
                // The other side acknowledges these numbers.
                dir.ack = dir.seq;
            }
            if len > 0 {
                dir.payload += len;
                let new = dir.max.is_none_or(|m| s0 + syn >= m);
                if new {
                    dir.pending.push_back((s1, t));
                    if dir.pending.len() > 4096 {
                        dir.pending.pop_front();
                    }
                } else {
                    let from = s0 + syn;
                    dir.pending.retain(|p| p.0 <= from);
                }
                let n = dir.in_order.add(s0 + syn, s0 + syn + len);
                if n > 0 {
                    if dir.acc.1 > 0 && t / 1000 != dir.acc.0 / 1000 {
                        let a = dir.acc;
                        push_delivered(&mut dir.delivered, a);
                        dir.acc = (t, 0);
                    }
                    if dir.acc.1 == 0 {
                        dir.acc.0 = t;
                    }
                    dir.acc.1 += n;
                }
            } else if syn > 0 {
                dir.in_order.add(s0 + 1, s0 + 1);
            }
            if dir.max.is_none_or(|m| s1 > m) {
                dir.max = Some(s1);
                dir.maxes.push((t, s1));
            }
        }
        // The other direction's acknowledgment.
        if tcp.flags.contains(TcpFlags::ACK) {
            let other = &mut f.dirs[1 - d];
            if other.max.is_some() {
                let a = other.ack.at(tcp.ack);
                if other.acked.is_none_or(|x| a > x) {
                    other.acked = Some(a);
                    let mut sample = None;
                    while other.pending.front().is_some_and(|p| p.0 <= a) {
                        sample = other.pending.pop_front().map(|p| p.1);
                    }
                    if let Some(s) = sample {
                        other.half_rtt.push((t, t.saturating_sub(s)));
                    }
                    other.acks.push((t, a));
                }
            }
        }
    }

    /// The plots of connection `t` (matched by its sockets and first packet), if it carried
    /// data enough to plot; times count from `origin_us`.
    pub fn plots(&mut self, t: &ConnTrace, origin_us: u64) -> Vec<Plot> {
        let s = &t.summary;
        let Some(f) = self.flows.iter_mut().find(|f| {
            f.client == s.client
                && f.server == s.server
                && f.first <= s.milestones.first_packet
                && f.last >= s.milestones.first_packet
        }) else {
            return Vec::new();
        };
        for d in &mut f.dirs {
            if d.acc.1 > 0 {
                let a = d.acc;
                push_delivered(&mut d.delivered, a);
                d.acc = (0, 0);
            }
        }
        let d = usize::from(f.dirs[1].payload > f.dirs[0].payload);
        if f.dirs[d].payload == 0 {
            return Vec::new();
        }
        let (d_client, d_server) = delays(t);
        let names = ["client", "server"];
        let (from, to) = (names[d], names[1 - d]);
        // The capture point to the receiver and back is measured; the sender's side is the
        // handshake's.
        let other_half = 2 * if d == 0 { d_client } else { d_server };
        let dir = &f.dirs[d];
        let range = Some((secs(f.first, origin_us), secs(f.last, origin_us)));
        // The sender's bytes in flight at (capture) time t: what it had sent by then reaches
        // the capture point one way later; what it knew acknowledged left it one way before.
        let one_way = if d == 0 { d_client } else { d_server };
        let step = |v: &[(u64, u64)], t: u64| {
            let i = v.partition_point(|p| p.0 <= t);
            if i == 0 {
                None
            } else {
                Some(v[i - 1].1)
            }
        };
        let (maxes, acks) = (&dir.maxes.points, &dir.acks.points);
        let mut times: Vec<u64> = maxes
            .iter()
            .map(|p| p.0.saturating_sub(one_way))
            .chain(acks.iter().map(|p| p.0 + one_way))
            .collect();
        times.sort_unstable();
        times.dedup();
        let mut flight: Vec<(f64, f64)> = Vec::new();
        for t in times {
            let (Some(m), Some(a)) = (
                step(maxes, t + one_way),
                step(acks, t.saturating_sub(one_way)),
            ) else {
                continue;
            };
            let v = (secs(t, origin_us), m.saturating_sub(a) as f64 / 1024.0);
            if flight.last().is_none_or(|l| l.1 != v.1) {
                flight.push(v);
            }
        }
        let rtts: Vec<(f64, f64)> = dir
            .half_rtt
            .points
            .iter()
            .map(|&(t, v)| (secs(t, origin_us), (v + other_half) as f64 / 1000.0))
            .collect();
        let rtt = s.rtt_us.unwrap_or(10_000).max(1);
        let goodput = rate(&dir.delivered, origin_us, rtt);
        let mut out = Vec::new();
        if flight.len() >= 2 {
            out.push(Plot {
                x_range: range,
                title: format!("bytes in flight, {from} → {to}"),
                unit: "KiB".into(),
                series: vec![Series {
                    name: "in flight".into(),
                    kind: SeriesKind::Step,
                    points: flight,
                }],
                note: Some(format!(
                    "sent and not yet acknowledged at the {from}, estimated from the capture: \
                     the data seen up to {} ms later, less the ACKs seen up to {} ms before (the \
                     {from}'s one-way delay to the capture point; the congestion window is not \
                     on the wire){}",
                    one_way as f64 / 1000.0,
                    one_way as f64 / 1000.0,
                    thinned(dir.maxes.every.max(dir.acks.every))
                )),
            });
        }
        if !rtts.is_empty() {
            out.push(Plot {
                x_range: range,
                title: format!("RTT samples of the {from}'s data"),
                unit: "ms".into(),
                series: vec![Series {
                    name: "RTT".into(),
                    kind: SeriesKind::Dots,
                    points: rtts,
                }],
                note: Some(format!(
                    "new data to the first ACK covering it at the capture point, plus the \
                     {from}'s side of the handshake ({} ms); not for resent data (Karn's rule)",
                    other_half as f64 / 1000.0
                )),
            });
        }
        if goodput.len() > 2 {
            out.push(Plot {
                x_range: range,
                title: format!("goodput, {from} → {to}"),
                unit: "Mbit/s".into(),
                series: vec![Series {
                    name: "in-order payload".into(),
                    kind: SeriesKind::Step,
                    points: goodput,
                }],
                note: Some("payload in order at the capture point, per window".into()),
            });
        }
        out
    }
}

/// Adds a 1 ms bucket of delivered bytes, halving the resolution when there are too many.
fn push_delivered(v: &mut Vec<(u64, u64)>, p: (u64, u64)) {
    v.push(p);
    if v.len() >= 4 * MAX_POINTS {
        let merged: Vec<(u64, u64)> = v
            .chunks(2)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|x| x.1).sum()))
            .collect();
        *v = merged;
    }
}

fn thinned(every: u64) -> String {
    if every > 1 {
        format!("; one point in {every} kept")
    } else {
        String::new()
    }
}
