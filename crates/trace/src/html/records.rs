//! Diagrams and plots from synack's own traces: the [`TraceRecord`]s of both ends of each
//! connection, so every segment's sending and arrival time is known exactly, and the sender's
//! congestion events are there to plot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use synack_tcp::{Direction, FourTuple, Instant, RetransmitCause, SegmentInfo, SeqNum, State};
use synack_tcp::{TraceEvent, TraceRecord};
use synack_wire::{TcpFlags, TcpOptions};

use super::{Arrow, Band, Diagram, Event, Plot, Series, SeriesKind, Side};
use crate::ladder::{Ladder, LineRenderer, NoteKind, Row};

/// How the diagrams are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Relative sequence numbers (each direction's ISN is 0).
    pub relative: bool,
    /// Connections with more segments than this have their bulk data folded into bands.
    pub fold_above: usize,
    /// Times on the diagrams and plots count from here.
    pub origin: Instant,
    /// The path's round trip, for drawing lost segments (and when a connection has no
    /// handshake to measure one from).
    pub rtt_us: u64,
}

/// One connection of a trace: its diagram and plots.
#[derive(Debug, Clone)]
pub struct ConnView {
    /// Seen from the client (the host at the left).
    pub tuple: FourTuple,
    /// When its first record was.
    pub first: Instant,
    /// The client's SYN to its ESTABLISHED, if the trace has both.
    pub rtt_us: Option<u64>,
    pub diagram: Diagram,
    /// Segments drawn: arrows, plus what the bands stand for.
    pub segments: usize,
    /// Plots of the direction that carried the most data, when it carried enough to plot.
    pub plots: Vec<Plot>,
}

/// A connection regardless of direction.
fn conn_key(t: &FourTuple) -> (SocketAddr, SocketAddr) {
    if t.local <= t.remote {
        (t.local, t.remote)
    } else {
        (t.remote, t.local)
    }
}

fn tuple_of(e: &TraceEvent) -> FourTuple {
    match *e {
        TraceEvent::Segment { tuple, .. }
        | TraceEvent::State { tuple, .. }
        | TraceEvent::Retransmit { tuple, .. }
        | TraceEvent::Congestion { tuple, .. } => tuple,
    }
}

/// A segment's identity, for matching its sending to its arrival.
type WireKey = (SocketAddr, SocketAddr, u32, u32, u8, u16, usize, TcpOptions);

fn wire_key(from: SocketAddr, to: SocketAddr, s: &SegmentInfo) -> WireKey {
    (
        from, to, s.seq.0, s.ack.0, s.flags.0, s.window, s.len, s.options,
    )
}

/// A sent segment as a ladder row shows it (host, sockets, time, flags, length).
type RowKey = (usize, SocketAddr, SocketAddr, u64, u8, usize);

fn cause(c: RetransmitCause) -> &'static str {
    match c {
        RetransmitCause::Timeout => "timeout",
        RetransmitCause::FastRetransmit => "fast retransmit",
        RetransmitCause::Sack => "SACK recovery",
        RetransmitCause::TailLossProbe => "tail loss probe",
    }
}

/// The diagrams and plots of every connection in `records` (host index and record; host 0 is
/// drawn at the left, host 1 at the right; `hosts` are their names), in the order the
/// connections started.
pub fn connections(
    records: &[(usize, TraceRecord)],
    hosts: [&str; 2],
    opts: Options,
) -> Vec<ConnView> {
    let mut per_host: [Vec<TraceRecord>; 2] = [Vec::new(), Vec::new()];
    for (h, r) in records {
        if *h < 2 {
            per_host[*h].push(*r);
        }
    }
    for list in &mut per_host {
        list.sort_by_key(|r| r.time);
    }
    let sent = per_host
        .iter()
        .flatten()
        .filter(|r| {
            matches!(
                r.event,
                TraceEvent::Segment {
                    dir: Direction::Sent,
                    ..
                }
            )
        })
        .count();
    let rows = Ladder::new(&[(hosts[0], &per_host[0]), (hosts[1], &per_host[1])])
        .relative(opts.relative)
        .fold(sent > opts.fold_above)
        .rows();
    let arrivals = arrivals(&per_host);

    // Group the rows and records by connection, in order of first appearance.
    let mut order: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut rows_of: HashMap<(SocketAddr, SocketAddr), Vec<Row>> = HashMap::new();
    for row in rows {
        let t = match &row {
            Row::Segment(s) => s.tuple,
            Row::State(s) => s.tuple,
            Row::Note(n) => n.tuple,
            Row::Folded(f) => f.tuple,
        };
        let k = conn_key(&t);
        if !rows_of.contains_key(&k) {
            order.push(k);
        }
        rows_of.entry(k).or_default().push(row);
    }
    let mut recs_of: HashMap<(SocketAddr, SocketAddr), [Vec<TraceRecord>; 2]> = HashMap::new();
    for (h, list) in per_host.iter().enumerate() {
        for r in list {
            recs_of.entry(conn_key(&tuple_of(&r.event))).or_default()[h].push(*r);
        }
    }
    let mut arrivals = arrivals;
    let mut views = Vec::new();
    for k in order {
        let rows = rows_of.remove(&k).unwrap_or_default();
        let recs = recs_of.remove(&k).unwrap_or_default();
        views.push(view(&rows, &recs, hosts, &opts, &mut arrivals));
    }
    views.sort_by_key(|v| v.first);
    views
}

/// For each sent segment (by the key its row will have), when it arrived, in sending order.
fn arrivals(per_host: &[Vec<TraceRecord>; 2]) -> HashMap<RowKey, VecDeque<Option<Instant>>> {
    // Every segment record, sendings before arrivals of the same instant.
    let mut all: Vec<(Instant, bool, usize, TraceRecord)> = Vec::new();
    for (h, list) in per_host.iter().enumerate() {
        for r in list {
            if let TraceEvent::Segment { dir, .. } = r.event {
                all.push((r.time, dir == Direction::Received, h, *r));
            }
        }
    }
    all.sort_by_key(|x| (x.0, x.1));
    let mut slots: Vec<Option<Instant>> = Vec::new();
    let mut keys: Vec<RowKey> = Vec::new();
    let mut unmatched: HashMap<WireKey, VecDeque<usize>> = HashMap::new();
    for (time, received, h, r) in all {
        let TraceEvent::Segment { tuple, seg, .. } = r.event else {
            continue;
        };
        if received {
            let k = wire_key(tuple.remote, tuple.local, &seg);
            if let Some(i) = unmatched.get_mut(&k).and_then(VecDeque::pop_front) {
                slots[i] = Some(time);
            }
        } else {
            unmatched
                .entry(wire_key(tuple.local, tuple.remote, &seg))
                .or_default()
                .push_back(slots.len());
            slots.push(None);
            keys.push((
                h,
                tuple.local,
                tuple.remote,
                time.as_micros(),
                seg.flags.0,
                seg.len,
            ));
        }
    }
    let mut out: HashMap<RowKey, VecDeque<Option<Instant>>> = HashMap::new();
    for (k, a) in keys.into_iter().zip(slots) {
        out.entry(k).or_default().push_back(a);
    }
    out
}

fn view(
    rows: &[Row],
    recs: &[Vec<TraceRecord>; 2],
    hosts: [&str; 2],
    opts: &Options,
    arrivals: &mut HashMap<RowKey, VecDeque<Option<Instant>>>,
) -> ConnView {
    let side_of = |name: &str| {
        if name == hosts[0] {
            Side::Left
        } else {
            Side::Right
        }
    };
    let host_of = |name: &str| usize::from(name != hosts[0]);
    // The connection seen from the left host.
    let tuple = rows
        .iter()
        .find_map(|r| match r {
            Row::Segment(s) => Some(if s.from == hosts[0] {
                s.tuple
            } else {
                FourTuple {
                    local: s.tuple.remote,
                    remote: s.tuple.local,
                }
            }),
            _ => None,
        })
        .or_else(|| recs[0].first().map(|r| tuple_of(&r.event)))
        .unwrap_or(FourTuple {
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        });
    // The handshake's round trip, seen by the client.
    let mut syn_at = None;
    let mut rtt_us = None;
    for r in &recs[0] {
        if let TraceEvent::State { from, to, .. } = r.event {
            if to == State::SynSent && syn_at.is_none() {
                syn_at = Some(r.time);
            } else if from == State::SynSent && to == State::Established && rtt_us.is_none() {
                rtt_us = syn_at.map(|s| r.time.saturating_duration_since(s).as_micros() as u64);
            }
        }
    }
    let rtt = rtt_us.filter(|r| *r > 0).unwrap_or(opts.rtt_us.max(1));
    let one_way = rtt / 2;
    let first = recs
        .iter()
        .filter_map(|l| l.first().map(|r| r.time))
        .min()
        .unwrap_or(Instant::ZERO);

    let mut lines = LineRenderer::new(&hosts, false, opts.origin);
    let mut events = Vec::new();
    let mut segments = 0;
    for row in rows {
        match row {
            Row::Segment(s) => {
                let h = host_of(&s.from);
                let key = (
                    h,
                    s.tuple.local,
                    s.tuple.remote,
                    s.time.as_micros(),
                    s.flags.0,
                    s.len,
                );
                let arrived = arrivals
                    .get_mut(&key)
                    .and_then(VecDeque::pop_front)
                    .flatten();
                let line = lines.line(row);
                let label = line
                    .split_once(" : ")
                    .map_or(line.as_str(), |x| x.1)
                    .to_owned();
                segments += 1;
                events.push(Event::Segment(Arrow {
                    from: side_of(&s.from),
                    sent: s.time.as_micros(),
                    arrived: arrived.map_or(s.time.as_micros() + one_way, |a| a.as_micros()),
                    estimated: false,
                    lost: s.lost || arrived.is_none(),
                    retransmission: s.retransmission,
                    label,
                }));
            }
            Row::State(s) => events.push(Event::State {
                side: side_of(&s.host),
                t: s.time.as_micros(),
                text: format!("{} → {}", s.from, s.to),
            }),
            Row::Note(n) => {
                let text = match n.kind {
                    NoteKind::Retransmit { seq, len, cause: c } => {
                        format!("retransmit seq={seq}, len={len} ({})", cause(c))
                    }
                    NoteKind::Congestion { cwnd, ssthresh } => {
                        format!("cwnd={cwnd}, ssthresh={}", fmt_ssthresh(ssthresh))
                    }
                };
                events.push(Event::Note {
                    side: side_of(&n.host),
                    t: n.time.as_micros(),
                    text,
                });
            }
            Row::Folded(f) => {
                let line = lines.line(row);
                let label = line
                    .split_once(" : ")
                    .map_or(line.as_str(), |x| x.1)
                    .to_owned();
                segments += f.segments + f.acks;
                // The arrows folded into it are taken off the queue of arrivals.
                let (start, end) = (f.start.as_micros(), f.end.as_micros());
                events.push(Event::Band(Band {
                    from: side_of(&f.from),
                    start,
                    end,
                    arrive_start: start + one_way,
                    arrive_end: end + one_way,
                    label,
                    segments: f.segments + f.acks,
                    retransmitted: f.retransmitted,
                }));
            }
        }
    }
    let diagram = Diagram {
        title: format!("{} → {}", tuple.local, tuple.remote),
        left: format!("{} {}", hosts[0], tuple.local),
        right: format!("{} {}", hosts[1], tuple.remote),
        rtt_us: Some(rtt),
        origin_us: opts.origin.as_micros(),
        events,
    };
    let plots = plots(recs, tuple, opts.origin, rtt);
    ConnView {
        tuple,
        first,
        rtt_us,
        diagram,
        segments,
        plots,
    }
}

fn fmt_ssthresh(s: usize) -> String {
    if s >= u32::MAX as usize {
        "∞".into()
    } else {
        s.to_string()
    }
}

/// Sequence numbers as 64-bit offsets from a direction's first one (so a transfer past
/// 4 GiB keeps counting).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unwrap {
    base: Option<(u32, u64)>,
}

impl Unwrap {
    pub(crate) fn at(&mut self, s: u32) -> u64 {
        match self.base {
            None => {
                self.base = Some((s, 1 << 32));
                1 << 32
            }
            Some((last, off)) => {
                let d = SeqNum(s).diff(SeqNum(last)) as i64;
                let v = (off as i64 + d).max(0) as u64;
                self.base = Some((s, v));
                v
            }
        }
    }
}

/// In-order bytes: how far the receiver (or the capture) has everything, from segments.
#[derive(Debug, Default)]
pub(crate) struct InOrder {
    next: Option<u64>,
    held: BTreeMap<u64, u64>,
}

impl InOrder {
    /// Adds [s0, s1) and returns the bytes now newly in order.
    pub(crate) fn add(&mut self, s0: u64, s1: u64) -> u64 {
        let next = *self.next.get_or_insert(s0);
        if s1 <= next {
            return 0;
        }
        if s0 > next {
            let e = self.held.entry(s0).or_insert(s1);
            *e = (*e).max(s1);
            if self.held.len() > 4096 {
                // Too much out of order to follow: count from the first hole's end.
                if let Some((&a, _)) = self.held.iter().next() {
                    self.next = Some(a);
                }
            }
            return 0;
        }
        let mut n = s1;
        while let Some((&a, &b)) = self.held.iter().next() {
            if a > n {
                break;
            }
            self.held.remove(&a);
            n = n.max(b);
        }
        self.next = Some(n);
        n - next
    }
}

/// Bytes counted at instants, as a rate per window: Mbit/s at the end of each window.
pub(crate) fn rate(points: &[(u64, u64)], origin: u64, rtt: u64) -> Vec<(f64, f64)> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let span = last.0.saturating_sub(first.0).max(1);
    let w = rtt.max(span / 60).max(1000);
    let mut out = Vec::new();
    let mut bucket = first.0 / w;
    let mut bytes = 0u64;
    out.push((secs(bucket * w, origin), 0.0));
    for &(t, b) in points {
        let k = t / w;
        while k > bucket {
            out.push((
                secs((bucket + 1) * w, origin),
                bytes as f64 * 8.0 / w as f64,
            ));
            bytes = 0;
            bucket += 1;
        }
        bytes += b;
    }
    out.push((
        secs((bucket + 1) * w, origin),
        bytes as f64 * 8.0 / w as f64,
    ));
    out
}

pub(crate) fn secs(us: u64, origin: u64) -> f64 {
    us.saturating_sub(origin) as f64 / 1e6
}

/// Plots of the direction that carried the most payload: the sender's bytes in flight and
/// congestion window, its RTT samples, and the receiver's goodput.
fn plots(recs: &[Vec<TraceRecord>; 2], tuple: FourTuple, origin: Instant, rtt: u64) -> Vec<Plot> {
    let origin = origin.as_micros();
    // Payload each host sent.
    let mut sent = [0u64; 2];
    let mut data_segments = [0usize; 2];
    for (h, list) in recs.iter().enumerate() {
        for r in list {
            if let TraceEvent::Segment {
                dir: Direction::Sent,
                seg,
                ..
            } = r.event
            {
                sent[h] += seg.len as u64;
                data_segments[h] += usize::from(seg.len > 0);
            }
        }
    }
    let s = usize::from(sent[1] > sent[0]);
    if data_segments[s] < 4 {
        return Vec::new();
    }
    let (sender, receiver) = (&recs[s], &recs[1 - s]);
    let names = ["client", "server"];

    let mut flight = Vec::new();
    let mut cwnd = Vec::new();
    let mut ssthresh = Vec::new();
    let mut rtts = Vec::new();
    let (mut snd, mut ack) = (Unwrap::default(), Unwrap::default());
    let mut snd_max: Option<u64> = None;
    let mut snd_una: Option<u64> = None;
    // Sent new data not yet acknowledged: (end, when), for RTT samples (not after a
    // retransmission of it: Karn's rule, RFC 6298 §3).
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    for r in sender {
        match r.event {
            TraceEvent::Segment {
                dir: Direction::Sent,
                seg,
                ..
            } => {
                let s0 = snd.at(seg.seq.0);
                let s1 = s0 + seg.seq_len() as u64;
                if snd_una.is_none() {
                    // Acks count from the same base: the peer acknowledges our numbers.
                    ack = snd;
                }
                let new = snd_max.is_none_or(|m| s1 > m);
                if seg.len > 0 {
                    if new && snd_max.is_none_or(|m| s0 >= m) {
                        pending.push_back((s1, r.time));
                    } else {
                        pending.retain(|p| p.0 <= s0);
                    }
                }
                if new {
                    snd_max = Some(s1);
                }
            }
            TraceEvent::Segment {
                dir: Direction::Received,
                seg,
                ..
            } if seg.flags.contains(TcpFlags::ACK) => {
                if snd_max.is_none() {
                    continue;
                }
                let a = ack.at(seg.ack.0);
                if snd_una.is_none_or(|u| a > u) {
                    snd_una = Some(a);
                    let mut sample = None;
                    while pending.front().is_some_and(|p| p.0 <= a) {
                        sample = pending.pop_front().map(|p| p.1);
                    }
                    if let Some(t) = sample {
                        let us = r.time.saturating_duration_since(t).as_micros() as f64;
                        rtts.push((secs(r.time.as_micros(), origin), us / 1000.0));
                    }
                }
            }
            TraceEvent::Congestion {
                cwnd: c,
                ssthresh: t,
                ..
            } => {
                let x = secs(r.time.as_micros(), origin);
                cwnd.push((x, c as f64 / 1024.0));
                if t < u32::MAX as usize {
                    ssthresh.push((x, t as f64 / 1024.0));
                }
            }
            _ => continue,
        }
        if let (Some(m), Some(u)) = (snd_max, snd_una) {
            let v = m.saturating_sub(u) as f64 / 1024.0;
            let x = secs(r.time.as_micros(), origin);
            if flight.last() != Some(&(x, v)) {
                flight.push((x, v));
            }
        }
    }

    // Goodput: payload the receiver had in order.
    let mut rcv = Unwrap::default();
    let mut in_order = InOrder::default();
    let mut delivered: Vec<(u64, u64)> = Vec::new();
    for r in receiver {
        if let TraceEvent::Segment {
            dir: Direction::Received,
            seg,
            ..
        } = r.event
        {
            let s0 = rcv.at(seg.seq.0) + u64::from(seg.flags.contains(TcpFlags::SYN));
            if seg.len > 0 {
                let n = in_order.add(s0, s0 + seg.len as u64);
                if n > 0 {
                    delivered.push((r.time.as_micros(), n));
                }
            } else if seg.flags.contains(TcpFlags::SYN) {
                in_order.add(s0, s0);
            }
        }
    }
    let range = {
        let times = recs
            .iter()
            .flatten()
            .map(|r| secs(r.time.as_micros(), origin));
        let (a, b) = times.fold((f64::MAX, f64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        (a <= b).then_some((a, b))
    };
    let from = names[s];
    let to = names[1 - s];
    let dir = if s == 0 {
        format!("{} → {}", tuple.local, tuple.remote)
    } else {
        format!("{} → {}", tuple.remote, tuple.local)
    };
    let mut flight_plot = Plot {
        x_range: range,
        title: format!("bytes in flight, {from} → {to}"),
        unit: "KiB".into(),
        series: vec![Series {
            name: "in flight".into(),
            kind: SeriesKind::Step,
            points: flight,
        }],
        note: Some(format!(
            "{dir}: sent and not yet acknowledged, at the {from}; the congestion window as \
             the {from}'s TCP reported it when it changed after a loss"
        )),
    };
    if !cwnd.is_empty() {
        flight_plot.series.push(Series {
            name: "cwnd".into(),
            kind: SeriesKind::Step,
            points: cwnd,
        });
    }
    if !ssthresh.is_empty() {
        flight_plot.series.push(Series {
            name: "ssthresh".into(),
            kind: SeriesKind::Step,
            points: ssthresh,
        });
    }
    let mut out = vec![flight_plot];
    if !rtts.is_empty() {
        out.push(Plot {
            x_range: range,
            title: format!("RTT samples at the {from}"),
            unit: "ms".into(),
            series: vec![Series {
                name: "RTT".into(),
                kind: SeriesKind::Dots,
                points: rtts,
            }],
            note: Some(
                "new data sent to the first ACK covering it; not for resent data (Karn's rule, \
                 RFC 6298 §3)"
                    .into(),
            ),
        });
    }
    let goodput = rate(&delivered, origin, rtt);
    if !goodput.is_empty() {
        out.push(Plot {
            x_range: range,
            title: format!("goodput at the {to}"),
            unit: "Mbit/s".into(),
            series: vec![Series {
                name: "in-order payload".into(),
                kind: SeriesKind::Step,
                points: goodput,
            }],
            note: Some(format!(
                "payload the {to} had in order, per {} window",
                window_name(&delivered, rtt)
            )),
        });
    }
    out
}

fn window_name(points: &[(u64, u64)], rtt: u64) -> String {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.0.saturating_sub(a.0),
        _ => 0,
    };
    let w = rtt.max(span / 60).max(1000);
    format!("{:.1} ms", w as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_counts_past_the_wrap() {
        let mut u = Unwrap::default();
        let a = u.at(u32::MAX - 10);
        let b = u.at(5);
        assert_eq!(b - a, 16);
        assert_eq!(u.at(u32::MAX - 20), a - 10);
    }

    #[test]
    fn in_order_bytes_wait_for_the_hole() {
        let mut r = InOrder::default();
        assert_eq!(r.add(0, 100), 100);
        assert_eq!(r.add(200, 300), 0);
        assert_eq!(r.add(100, 200), 200);
        assert_eq!(r.add(50, 150), 0);
    }

    #[test]
    fn rate_is_bytes_per_window() {
        // 1250 bytes every ms for 100 ms: 10 Mbit/s.
        let pts: Vec<(u64, u64)> = (0..100).map(|i| (i * 1000, 1250)).collect();
        let r = rate(&pts, 0, 10_000);
        let mid = r[r.len() / 2].1;
        assert!((mid - 10.0).abs() < 0.01, "{r:?}");
    }
}
