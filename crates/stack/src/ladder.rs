//! The trace rendered for humans: a ladder diagram of the segments between hosts, with each
//! host's state changes beside it.
//!
//! Input is the [`TraceRecord`]s drained from each host's
//! [`Endpoint`](synack_tcp::Endpoint), tagged with the host's name. They are merged in time
//! order; records of equal time keep the order of the hosts as given (the first host first) and,
//! within a host, the order they were recorded in.
//!
//! ```text
//!   0.000000  client   CLOSED -> SYN-SENT
//!             client --> server : SYN, seq=0, win=65535, mss=1460, wscale=5, sackOK, TS
//!   0.025000                                    server   LISTEN -> SYN-RECEIVED
//!             server --> client : SYN-ACK, seq=0, ack=1, win=65535, mss=1460, wscale=5, sackOK, TS
//!   0.050000  client   SYN-SENT -> ESTABLISHED
//!             client --> server : ACK, seq=1, ack=1, win=1048576
//!             client --> server : PSH-ACK, seq=1, ack=1, len=45, win=1048576
//!   0.075000                                    server   SYN-RECEIVED -> ESTABLISHED
//!             server --> client : ACK, seq=1, ack=46, win=1048512
//!             server --> client : 729 data segments, seq=1..1048621 (1.00 MiB) in 1150.000 ms; 46 ACKs back
//!   1.250000  client   ESTABLISHED -> FIN-WAIT-1
//!             client --> server : FIN-ACK, seq=46, ack=1048621, win=1048288
//! ```
//!
//! The time is printed when it differs from the line above. Segments go from the sender's
//! name to the receiver's (with ports when the trace holds more than one connection); a state
//! change or note is printed in its host's column, the first host's at the left and each next
//! one further right.
//!
//! Rules:
//! - A segment is drawn once, from the sending host's [`Direction::Sent`] record. Received
//!   records are not drawn; they tell which sent segments never arrived (`(lost)`: dropped in
//!   the network or discarded by the receiver's checksum check). Only segments to a host whose
//!   trace was given can be marked lost.
//! - Sequence numbers are relative by default, as Wireshark shows them: in each direction of
//!   each connection the ISN (the sequence number of that direction's SYN, RFC 9293 §3.4.1) is
//!   0, so the first data byte is 1. Without a SYN in the trace, the first sequence number seen
//!   in that direction is the base. [`Ladder::relative(false)`](Ladder::relative) prints raw
//!   numbers.
//! - `win` is the window in bytes: the header field shifted by the sender's window scale once
//!   both SYNs negotiated scaling (RFC 7323 §2.3); the window of a SYN is never scaled.
//! - A segment is a retransmission when part of its sequence range was sent before in the same
//!   direction (RFC 9293 §3.4 counts SYN and FIN in the sequence space, so a repeated SYN or
//!   FIN is one too).
//! - Folding: a run of [`fold_min`](Ladder::fold_min) (default 4) or more data-bearing segments
//!   in one direction carrying no flag but ACK and PSH, with the pure ACKs flowing the other way
//!   between them, becomes one summary line. Retransmit and congestion events of that
//!   connection inside the run are counted, not printed; elsewhere they print as notes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use synack_tcp::{Direction, FourTuple, Instant, RetransmitCause, SegmentInfo, SeqNum, State};
use synack_tcp::{TraceEvent, TraceRecord};
use synack_wire::{TcpFlags, TcpOptions};

/// How far each host's state column is indented from the previous host's.
const COLUMN: usize = 34;

/// The largest window scale shift RFC 7323 §2.3 allows.
const MAX_WSCALE: u8 = 14;

/// One line of a ladder, structured. [`Ladder::rows`] returns them; [`Ladder::render`] prints
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A segment, drawn from the host that sent it.
    Segment(SegmentRow),
    /// A host's connection changed state.
    State(StateRow),
    /// A retransmission or congestion event outside a folded run.
    Note(NoteRow),
    /// A run of data segments (and the ACKs answering them) summarized in one line.
    Folded(FoldedRow),
}

impl Row {
    /// When the row happened (for a folded run: when its first segment was sent).
    pub fn time(&self) -> Instant {
        match self {
            Row::Segment(r) => r.time,
            Row::State(r) => r.time,
            Row::Note(r) => r.time,
            Row::Folded(r) => r.start,
        }
    }
}

/// A segment as the ladder shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    /// When it was sent.
    pub time: Instant,
    /// The sending host's name.
    pub from: String,
    /// The receiving host's name, or its socket address when its trace was not given.
    pub to: String,
    /// The connection, seen from the sender (`local` sent it to `remote`).
    pub tuple: FourTuple,
    pub flags: TcpFlags,
    /// Sequence number, relative or absolute as the ladder was asked.
    pub seq: u32,
    /// Acknowledgment number (numbered like the other direction's `seq`), when ACK is set.
    pub ack: Option<u32>,
    /// Payload bytes.
    pub len: usize,
    /// The window in bytes (scaled once both SYNs negotiated window scaling).
    pub window: u32,
    /// The options as sent (raw numbers).
    pub options: TcpOptions,
    /// SACK blocks, numbered like `ack`.
    pub sack: Vec<(u32, u32)>,
    /// Part of its sequence range was sent before.
    pub retransmission: bool,
    /// It never reached the receiving host's TCP.
    pub lost: bool,
}

/// A state change of one host's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub time: Instant,
    /// The host's name.
    pub host: String,
    /// The host's connection, seen from the host.
    pub tuple: FourTuple,
    pub from: State,
    pub to: State,
}

/// What a note says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// The host is about to send `len` bytes from `seq` again (`seq` numbered like segments).
    Retransmit {
        seq: u32,
        len: usize,
        cause: RetransmitCause,
    },
    /// The host's congestion window or slow-start threshold changed after a loss.
    Congestion { cwnd: usize, ssthresh: usize },
}

/// A retransmission or congestion event of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRow {
    pub time: Instant,
    pub host: String,
    pub tuple: FourTuple,
    pub kind: NoteKind,
}

/// A folded run: data segments one way and the pure ACKs coming back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedRow {
    /// When the first segment of the run was sent.
    pub start: Instant,
    /// When the last segment of the run (data or ACK) was sent.
    pub end: Instant,
    /// The host sending the data.
    pub from: String,
    /// The host receiving the data.
    pub to: String,
    /// The connection, seen from the data sender.
    pub tuple: FourTuple,
    /// Data segments in the run.
    pub segments: usize,
    /// The lowest sequence number the data covered.
    pub seq_start: u32,
    /// One past the highest sequence number the data covered.
    pub seq_end: u32,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Data segments whose range had been sent before.
    pub retransmitted: usize,
    /// Data segments that never reached the receiver.
    pub lost: usize,
    /// Pure ACKs the receiver sent back during the run.
    pub acks: usize,
    /// ACKs of those that never reached the sender.
    pub acks_lost: usize,
    /// Retransmit events of the connection inside the run.
    pub retransmit_events: usize,
    /// Congestion events of the connection inside the run.
    pub congestion_events: usize,
}

impl FoldedRow {
    /// Distinct bytes of sequence space the run covered (`seq_end - seq_start`).
    pub fn span(&self) -> u64 {
        u64::from(self.seq_end.wrapping_sub(self.seq_start))
    }
}

/// Segment counts of one direction between two hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// The sending host.
    pub from: String,
    /// The receiving host (or its address).
    pub to: String,
    /// Segments sent.
    pub segments: usize,
    /// Segments with payload.
    pub data_segments: usize,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Segments whose sequence range had been sent before.
    pub retransmitted: usize,
    /// Segments that never reached the receiver's TCP.
    pub lost: usize,
}

/// Totals over the whole trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per direction, in order of first appearance.
    pub flows: Vec<Flow>,
    /// Active opens: connections for which a SYN without ACK was sent.
    pub handshakes: usize,
    /// Retransmit events reported by the hosts' TCPs.
    pub retransmit_events: usize,
    /// Congestion events reported by the hosts' TCPs.
    pub congestion_events: usize,
}

/// The milestones of the first connection in a trace; see [`Ladder::phases`]. Times are the
/// trace's own (not shifted by the ladder's time origin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phases {
    /// The active opener (the host that sent the first SYN).
    pub client: Option<String>,
    /// The passive side.
    pub server: Option<String>,
    /// The connection, seen from the client.
    pub tuple: Option<FourTuple>,
    /// The client sent its first SYN.
    pub connect_start: Option<Instant>,
    /// The client reached ESTABLISHED.
    pub handshake_done: Option<Instant>,
    /// The client sent its first data segment.
    pub request_sent: Option<Instant>,
    /// The first server data reached the client (the server sent it, when the client's
    /// received segments are not in the trace).
    pub first_response_byte: Option<Instant>,
    /// The client had received every server byte in order (or: the server sent its last new
    /// byte, as above).
    pub last_response_byte: Option<Instant>,
    /// The first FIN was sent, by either side.
    pub close_start: Option<Instant>,
    /// Both sides reached CLOSED or TIME-WAIT.
    pub closed: Option<Instant>,
    /// The host that sent the first FIN (the active closer).
    pub active_closer: Option<String>,
    /// The active closer entered TIME-WAIT.
    pub time_wait_start: Option<Instant>,
    /// TIME-WAIT ended (2·MSL later, RFC 9293 §3.4.2), if the trace reaches that far.
    pub time_wait_end: Option<Instant>,
}

/// A direction of a connection: from one socket to another.
type DirKey = (SocketAddr, SocketAddr);

/// A connection regardless of direction: its two sockets, in ascending order.
fn conn_key(t: &FourTuple) -> DirKey {
    if t.local <= t.remote {
        (t.local, t.remote)
    } else {
        (t.remote, t.local)
    }
}

/// What the analysis learned about one sent segment.
#[derive(Debug, Clone, Copy, Default)]
struct SentInfo {
    /// Index of the receiving host, if its trace was given.
    to: Option<usize>,
    rel_seq: u32,
    rel_ack: u32,
    /// Base of the other direction (for SACK blocks).
    ack_base: u32,
    window: u32,
    retransmission: bool,
    lost: bool,
}

/// One trace record, placed in the merged order.
#[derive(Debug, Clone, Copy)]
struct Item {
    host: usize,
    rec: TraceRecord,
    /// For sent segments.
    sent: Option<SentInfo>,
    /// For retransmit notes: the base of the host's sending direction.
    seq_base: u32,
}

/// A ladder diagram over the traces of one or more hosts. See the [module documentation](self).
///
/// ```
/// use synack_stack::ladder::Ladder;
/// use synack_tcp::TraceRecord;
///
/// let client: Vec<TraceRecord> = Vec::new();
/// let server: Vec<TraceRecord> = Vec::new();
/// let ladder = Ladder::new(&[("client", client), ("server", server)])
///     .relative(true)
///     .fold(true);
/// assert_eq!(ladder.render(), "");
/// ```
#[derive(Debug, Clone)]
pub struct Ladder {
    hosts: Vec<String>,
    items: Vec<Item>,
    /// Number of distinct connections in the trace.
    connections: usize,
    relative: bool,
    fold: bool,
    fold_min: usize,
    origin: Option<Instant>,
}

impl Ladder {
    /// A ladder over `traces`: each host's name and the records drained from its endpoint.
    /// Relative numbering and folding are on.
    pub fn new<N: AsRef<str>, T: AsRef<[TraceRecord]>>(traces: &[(N, T)]) -> Ladder {
        let hosts: Vec<String> = traces.iter().map(|(n, _)| n.as_ref().to_owned()).collect();
        let mut items = merge(traces);
        let connections = analyze(&mut items, hosts.len());
        Ladder {
            hosts,
            items,
            connections,
            relative: true,
            fold: true,
            fold_min: 4,
            origin: None,
        }
    }

    /// Relative sequence numbers (each direction's ISN is 0; the default) or raw ones.
    pub fn relative(mut self, on: bool) -> Self {
        self.relative = on;
        self
    }

    /// Raw sequence numbers: the same as `relative(!on)`.
    pub fn absolute(self, on: bool) -> Self {
        self.relative(!on)
    }

    /// Fold runs of data segments into summary lines (the default) or draw every segment.
    pub fn fold(mut self, on: bool) -> Self {
        self.fold = on;
        self
    }

    /// The fewest data segments a run must have to be folded (default 4; at least 1).
    pub fn fold_min(mut self, segments: usize) -> Self {
        self.fold_min = segments.max(1);
        self
    }

    /// The instant printed as time 0. Default: the first record's time.
    pub fn time_origin(mut self, t: Instant) -> Self {
        self.origin = Some(t);
        self
    }

    /// The host names, in the order given.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    fn origin(&self) -> Instant {
        self.origin
            .or_else(|| self.items.first().map(|i| i.rec.time))
            .unwrap_or(Instant::ZERO)
    }

    fn host_name(&self, i: usize) -> String {
        self.hosts[i].clone()
    }

    /// The rows of the ladder, folded or not as asked.
    pub fn rows(&self) -> Vec<Row> {
        // Candidates: sent segments, state changes and notes (received segments are not drawn).
        let cands: Vec<&Item> = self
            .items
            .iter()
            .filter(|it| {
                !matches!(
                    it.rec.event,
                    TraceEvent::Segment {
                        dir: Direction::Received,
                        ..
                    }
                )
            })
            .collect();
        let mut rows = Vec::with_capacity(cands.len());
        let mut i = 0;
        while i < cands.len() {
            if self.fold {
                if let Some((row, next)) = self.try_fold(&cands, i) {
                    rows.push(Row::Folded(row));
                    i = next;
                    continue;
                }
            }
            rows.push(self.plain_row(cands[i]));
            i += 1;
        }
        rows
    }

    /// The run starting at `cands[start]`, if it is long enough to fold: the row and the index
    /// after the run.
    fn try_fold(&self, cands: &[&Item], start: usize) -> Option<(FoldedRow, usize)> {
        let first = cands[start];
        let TraceEvent::Segment { tuple, seg, .. } = first.rec.event else {
            return None;
        };
        if !is_bulk_data(&seg) {
            return None;
        }
        let fwd = (tuple.local, tuple.remote);
        let rev = (tuple.remote, tuple.local);
        let conn = conn_key(&tuple);
        // Find the end of the run: the last data segment or ACK before anything else.
        let mut data = 0;
        let mut last = start;
        for (k, it) in cands.iter().enumerate().skip(start) {
            match it.rec.event {
                TraceEvent::Segment {
                    tuple: t, seg: s, ..
                } => {
                    let d = (t.local, t.remote);
                    if d == fwd && is_bulk_data(&s) {
                        data += 1;
                        last = k;
                    } else if d == rev && is_pure_ack(&s) {
                        last = k;
                    } else {
                        break;
                    }
                }
                TraceEvent::Retransmit { tuple: t, .. }
                | TraceEvent::Congestion { tuple: t, .. }
                    if conn_key(&t) == conn => {}
                _ => break,
            }
        }
        if data < self.fold_min {
            return None;
        }
        let mut row = FoldedRow {
            start: first.rec.time,
            end: cands[last].rec.time,
            from: self.host_name(first.host),
            to: self.peer_name(first),
            tuple,
            segments: 0,
            seq_start: 0,
            seq_end: 0,
            bytes_sent: 0,
            retransmitted: 0,
            lost: 0,
            acks: 0,
            acks_lost: 0,
            retransmit_events: 0,
            congestion_events: 0,
        };
        let mut lo: Option<SeqNum> = None;
        let mut hi: Option<SeqNum> = None;
        for it in &cands[start..=last] {
            match it.rec.event {
                TraceEvent::Segment {
                    tuple: t, seg: s, ..
                } => {
                    let info = it.sent.unwrap_or_default();
                    if (t.local, t.remote) == fwd {
                        let (seq, _) = self.numbers(it);
                        let s0 = SeqNum(seq);
                        let s1 = s0 + s.len;
                        lo = Some(lo.map_or(s0, |l| l.min(s0)));
                        hi = Some(hi.map_or(s1, |h| h.max(s1)));
                        row.segments += 1;
                        row.bytes_sent += s.len as u64;
                        row.retransmitted += info.retransmission as usize;
                        row.lost += info.lost as usize;
                    } else {
                        row.acks += 1;
                        row.acks_lost += info.lost as usize;
                    }
                }
                TraceEvent::Retransmit { .. } => row.retransmit_events += 1,
                TraceEvent::Congestion { .. } => row.congestion_events += 1,
                TraceEvent::State { .. } => {}
            }
        }
        row.seq_start = lo.map_or(0, |s| s.0);
        row.seq_end = hi.map_or(0, |s| s.0);
        Some((row, last + 1))
    }

    /// `(seq, ack)` of a sent segment in the ladder's numbering.
    fn numbers(&self, it: &Item) -> (u32, u32) {
        let TraceEvent::Segment { seg, .. } = it.rec.event else {
            return (0, 0);
        };
        match (self.relative, it.sent) {
            (true, Some(info)) => (info.rel_seq, info.rel_ack),
            _ => (seg.seq.0, seg.ack.0),
        }
    }

    fn peer_name(&self, it: &Item) -> String {
        match (it.sent.and_then(|s| s.to), it.rec.event) {
            (Some(h), _) => self.host_name(h),
            (None, TraceEvent::Segment { tuple, .. }) => tuple.remote.to_string(),
            _ => String::new(),
        }
    }

    fn plain_row(&self, it: &Item) -> Row {
        let time = it.rec.time;
        let host = self.host_name(it.host);
        match it.rec.event {
            TraceEvent::Segment { tuple, seg, .. } => {
                let info = it.sent.unwrap_or_default();
                let (seq, ack) = self.numbers(it);
                let sack_base = if self.relative { info.ack_base } else { 0 };
                let sack = seg.options.sack[..usize::from(seg.options.sack_len.min(4))]
                    .iter()
                    .map(|b| {
                        (
                            b.left.wrapping_sub(sack_base),
                            b.right.wrapping_sub(sack_base),
                        )
                    })
                    .collect();
                Row::Segment(SegmentRow {
                    time,
                    from: host,
                    to: self.peer_name(it),
                    tuple,
                    flags: seg.flags,
                    seq,
                    ack: seg.flags.contains(TcpFlags::ACK).then_some(ack),
                    len: seg.len,
                    window: info.window,
                    options: seg.options,
                    sack,
                    retransmission: info.retransmission,
                    lost: info.lost,
                })
            }
            TraceEvent::State { tuple, from, to } => Row::State(StateRow {
                time,
                host,
                tuple,
                from,
                to,
            }),
            TraceEvent::Retransmit {
                tuple,
                seq,
                len,
                cause,
            } => {
                let seq = if self.relative {
                    seq.0.wrapping_sub(it.seq_base)
                } else {
                    seq.0
                };
                Row::Note(NoteRow {
                    time,
                    host,
                    tuple,
                    kind: NoteKind::Retransmit { seq, len, cause },
                })
            }
            TraceEvent::Congestion {
                tuple,
                cwnd,
                ssthresh,
            } => Row::Note(NoteRow {
                time,
                host,
                tuple,
                kind: NoteKind::Congestion { cwnd, ssthresh },
            }),
        }
    }

    /// The ladder as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The ladder as lines (without newlines). The time is printed only when it differs from
    /// the previous line's.
    pub fn lines(&self) -> Vec<String> {
        let origin = self.origin();
        let name_width = self.hosts.iter().map(String::len).max().unwrap_or(0);
        let ports = self.connections > 1;
        let mut last_time = None;
        let mut lines = Vec::new();
        for row in self.rows() {
            let t = row.time();
            let time = if last_time == Some(t) {
                String::new()
            } else {
                fmt_secs(t.saturating_duration_since(origin).as_micros() as u64)
            };
            last_time = Some(t);
            let body = self.row_text(&row, name_width, ports);
            lines.push(format!("{time:>10}  {body}").trim_end().to_owned());
        }
        lines
    }

    /// The text of one row after the time column.
    fn row_text(&self, row: &Row, name_width: usize, ports: bool) -> String {
        let arrow = |from: &str, to: &str, t: &FourTuple| {
            if ports {
                format!("{from}:{} --> {to}:{}", t.local.port(), t.remote.port())
            } else {
                format!("{from:>name_width$} --> {to:<name_width$}")
            }
        };
        let column = |host: &str| {
            let i = self.hosts.iter().position(|h| h == host).unwrap_or(0);
            format!("{}{host:<name_width$}   ", " ".repeat(i * COLUMN))
        };
        match row {
            Row::Segment(s) => format!("{} : {}", arrow(&s.from, &s.to, &s.tuple), segment_text(s)),
            Row::State(s) => format!("{}{} -> {}", column(&s.host), s.from, s.to),
            Row::Note(n) => {
                let what = match n.kind {
                    NoteKind::Retransmit { seq, len, cause } => {
                        format!("retransmit seq={seq}, len={len} ({})", cause_name(cause))
                    }
                    NoteKind::Congestion { cwnd, ssthresh } => {
                        format!("congestion: cwnd={cwnd}, ssthresh={ssthresh}")
                    }
                };
                format!("{}{what}", column(&n.host))
            }
            Row::Folded(f) => format!("{} : {}", arrow(&f.from, &f.to, &f.tuple), folded_text(f)),
        }
    }

    /// Totals per direction, handshakes and events over the whole trace.
    pub fn summary(&self) -> Summary {
        let mut sum = Summary::default();
        let mut opened: BTreeSet<DirKey> = BTreeSet::new();
        for it in &self.items {
            match it.rec.event {
                TraceEvent::Segment {
                    dir: Direction::Sent,
                    tuple,
                    seg,
                } => {
                    let info = it.sent.unwrap_or_default();
                    if seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK) {
                        opened.insert(conn_key(&tuple));
                    }
                    let from = self.host_name(it.host);
                    let to = self.peer_name(it);
                    let pos = sum
                        .flows
                        .iter()
                        .position(|f| f.from == from && f.to == to)
                        .unwrap_or_else(|| {
                            sum.flows.push(Flow {
                                from,
                                to,
                                ..Flow::default()
                            });
                            sum.flows.len() - 1
                        });
                    let f = &mut sum.flows[pos];
                    f.segments += 1;
                    f.data_segments += (seg.len > 0) as usize;
                    f.bytes_sent += seg.len as u64;
                    f.retransmitted += info.retransmission as usize;
                    f.lost += info.lost as usize;
                }
                TraceEvent::Retransmit { .. } => sum.retransmit_events += 1,
                TraceEvent::Congestion { .. } => sum.congestion_events += 1,
                _ => {}
            }
        }
        sum.handshakes = opened.len();
        sum
    }

    /// The milestones of the first connection opened in the trace (the first SYN without
    /// ACK): when it started, finished its handshake, sent its request, got its response,
    /// and closed. Missing milestones are `None`.
    pub fn phases(&self) -> Phases {
        let mut p = Phases::default();
        let Some((client, tuple)) = self.items.iter().find_map(|it| match it.rec.event {
            TraceEvent::Segment {
                dir: Direction::Sent,
                tuple,
                seg,
            } if seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK) => {
                p.connect_start = Some(it.rec.time);
                Some((it.host, tuple))
            }
            _ => None,
        }) else {
            return p;
        };
        let conn = conn_key(&tuple);
        let c2s = (tuple.local, tuple.remote);
        let s2c = (tuple.remote, tuple.local);
        p.client = Some(self.host_name(client));
        p.tuple = Some(tuple);
        let server = self.items.iter().find_map(|it| match it.rec.event {
            TraceEvent::Segment { tuple: t, .. } | TraceEvent::State { tuple: t, .. }
                if it.host != client && (t.local, t.remote) == s2c =>
            {
                Some(it.host)
            }
            _ => None,
        });
        p.server = server.map(|h| self.host_name(h));
        let client_sees_data = self.items.iter().any(|it| {
            it.host == client
                && matches!(it.rec.event, TraceEvent::Segment { dir: Direction::Received, tuple, seg }
                    if (tuple.remote, tuple.local) == s2c && seg.len > 0)
        });
        // In-order reassembly of server data, to find when the client had all of it.
        let mut rcv_nxt: Option<SeqNum> = None;
        let mut ooo: Vec<(SeqNum, SeqNum)> = Vec::new();
        let mut data_end: Option<SeqNum> = None;
        let mut reached: Option<Instant> = None;
        let mut done: [Option<Instant>; 2] = [None, None];
        let mut isn: Option<SeqNum> = None;
        for it in &self.items {
            let time = it.rec.time;
            match it.rec.event {
                TraceEvent::Segment { dir, tuple: t, seg } => {
                    let d = match dir {
                        Direction::Sent => (t.local, t.remote),
                        Direction::Received => (t.remote, t.local),
                    };
                    if conn_key(&t) != conn {
                        continue;
                    }
                    if dir == Direction::Sent
                        && d == c2s
                        && seg.flags.contains(TcpFlags::SYN)
                        && !seg.flags.contains(TcpFlags::ACK)
                    {
                        // A SYN with another ISN opens a new incarnation of the 4-tuple: that
                        // is another connection.
                        if *isn.get_or_insert(seg.seq) != seg.seq {
                            break;
                        }
                    }
                    if dir == Direction::Sent
                        && seg.flags.contains(TcpFlags::FIN)
                        && p.close_start.is_none()
                    {
                        p.close_start = Some(time);
                        p.active_closer = Some(self.host_name(it.host));
                    }
                    if dir == Direction::Sent && d == c2s && seg.len > 0 {
                        p.request_sent.get_or_insert(time);
                    }
                    if d == s2c && seg.flags.contains(TcpFlags::SYN) && rcv_nxt.is_none() {
                        // The server's first data byte follows its ISN.
                        rcv_nxt = Some(seg.seq + 1);
                    }
                    if d == s2c && seg.len > 0 {
                        let counts = if client_sees_data {
                            dir == Direction::Received && it.host == client
                        } else {
                            dir == Direction::Sent
                        };
                        if counts {
                            p.first_response_byte.get_or_insert(time);
                            let s0 = seg.seq;
                            let s1 = s0 + seg.len;
                            data_end = Some(data_end.map_or(s1, |e| e.max(s1)));
                            let next = rcv_nxt.get_or_insert(s0);
                            if s0.le(*next) && s1.gt(*next) {
                                *next = s1;
                                // Absorb the out-of-order ranges now contiguous.
                                loop {
                                    let n = *next;
                                    let before = ooo.len();
                                    ooo.retain(|&(a, b)| {
                                        if a.le(n) {
                                            if b.gt(*next) {
                                                *next = b;
                                            }
                                            false
                                        } else {
                                            true
                                        }
                                    });
                                    if ooo.len() == before {
                                        break;
                                    }
                                }
                                reached = Some(time);
                            } else if s0.gt(*next) {
                                ooo.push((s0, s1));
                            }
                        }
                    }
                }
                TraceEvent::State { tuple: t, from, to } => {
                    if conn_key(&t) != conn {
                        continue;
                    }
                    if it.host == client && to == State::Established {
                        p.handshake_done.get_or_insert(time);
                    }
                    let side = if it.host == client { 0 } else { 1 };
                    if p.close_start.is_some()
                        && matches!(to, State::Closed | State::TimeWait)
                        && done[side].is_none()
                    {
                        done[side] = Some(time);
                    }
                    if to == State::TimeWait {
                        p.time_wait_start.get_or_insert(time);
                    }
                    if from == State::TimeWait && to == State::Closed {
                        p.time_wait_end.get_or_insert(time);
                    }
                }
                _ => {}
            }
        }
        if let (Some(next), Some(end)) = (rcv_nxt, data_end) {
            if next.ge(end) {
                p.last_response_byte = reached;
            }
        }
        // Both sides, or the only side traced.
        p.closed = match (done[0], done[1], server.is_some()) {
            (Some(a), Some(b), _) => Some(a.max(b)),
            (Some(a), None, false) => Some(a),
            _ => None,
        };
        p
    }
}

/// Data that a bulk run may contain: payload, and no flag but ACK and PSH.
fn is_bulk_data(seg: &SegmentInfo) -> bool {
    seg.len > 0 && seg.flags.0 & !(TcpFlags::ACK.0 | TcpFlags::PSH.0) == 0
}

fn is_pure_ack(seg: &SegmentInfo) -> bool {
    seg.len == 0 && seg.flags == TcpFlags::ACK
}

fn cause_name(c: RetransmitCause) -> &'static str {
    match c {
        RetransmitCause::Timeout => "timeout",
        RetransmitCause::FastRetransmit => "fast retransmit",
        RetransmitCause::Sack => "SACK recovery",
        RetransmitCause::TailLossProbe => "tail loss probe",
    }
}

/// `S.UUUUUU` seconds.
fn fmt_secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Bytes for humans: `78 B`, `1 KiB`, `1.50 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, name) in UNITS {
        if n >= size {
            return if (n / size) * size == n {
                format!("{} {name}", n / size)
            } else {
                format!("{:.2} {name}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} B")
}

fn segment_text(s: &SegmentRow) -> String {
    let mut t = format!("{}, seq={}", s.flags, s.seq);
    if let Some(ack) = s.ack {
        let _ = write!(t, ", ack={ack}");
    }
    if s.len > 0 {
        let _ = write!(t, ", len={}", s.len);
    }
    let _ = write!(t, ", win={}", s.window);
    let o = &s.options;
    if s.flags.contains(TcpFlags::SYN) {
        if let Some(mss) = o.mss {
            let _ = write!(t, ", mss={mss}");
        }
        if let Some(ws) = o.window_scale {
            let _ = write!(t, ", wscale={ws}");
        }
        if o.sack_permitted {
            t.push_str(", sackOK");
        }
        if o.timestamp.is_some() {
            t.push_str(", TS");
        }
    }
    if !s.sack.is_empty() {
        t.push_str(", SACK=");
        for (i, (l, r)) in s.sack.iter().enumerate() {
            if i > 0 {
                t.push(',');
            }
            let _ = write!(t, "{l}-{r}");
        }
    }
    if s.retransmission {
        t.push_str(" (retransmission)");
    }
    if s.lost {
        t.push_str(" (lost)");
    }
    t
}

fn folded_text(f: &FoldedRow) -> String {
    let mut t = format!(
        "{} data segments, seq={}..{} ({})",
        f.segments,
        f.seq_start,
        f.seq_end,
        fmt_bytes(f.span())
    );
    let us = f.end.saturating_duration_since(f.start).as_micros() as u64;
    let _ = write!(t, " in {}.{:03} ms", us / 1000, us % 1000);
    if f.retransmitted > 0 {
        let _ = write!(t, ", {} retransmitted", f.retransmitted);
    }
    if f.lost > 0 {
        let _ = write!(t, ", {} lost", f.lost);
    }
    if f.acks > 0 {
        let _ = write!(t, "; {} ACKs back", f.acks);
        if f.acks_lost > 0 {
            let _ = write!(t, " ({} lost)", f.acks_lost);
        }
    }
    t
}

/// Merges the hosts' records by time. Among records of equal time, the first host's come first,
/// except that a received segment waits until the record of its sending is out: with a path
/// of zero delay, a segment is sent and received in the same instant, and the ladder must not
/// show it arriving before it left. Within a host, records keep their order.
fn merge<N, T: AsRef<[TraceRecord]>>(traces: &[(N, T)]) -> Vec<Item> {
    let lists: Vec<Vec<TraceRecord>> = traces
        .iter()
        .map(|(_, recs)| {
            let mut v = recs.as_ref().to_vec();
            v.sort_by_key(|r| r.time); // stable: equal times keep their order
            v
        })
        .collect();
    let total = lists.iter().map(Vec::len).sum();
    let mut next = vec![0usize; lists.len()];
    // Segments sent (emitted already) and not yet matched by a reception.
    let mut in_flight: HashMap<SegKey, usize> = HashMap::new();
    let mut items = Vec::with_capacity(total);
    let received_key = |r: &TraceRecord| match r.event {
        TraceEvent::Segment {
            dir: Direction::Received,
            tuple,
            seg,
        } => Some(seg_key((tuple.remote, tuple.local), &seg)),
        _ => None,
    };
    while items.len() < total {
        let heads = || {
            lists
                .iter()
                .zip(&next)
                .enumerate()
                .filter_map(|(h, (l, &i))| l.get(i).map(|r| (h, r)))
        };
        let Some(t) = heads().map(|(_, r)| r.time).min() else {
            break;
        };
        let ready = |r: &TraceRecord| {
            received_key(r).is_none_or(|k| in_flight.get(&k).copied().unwrap_or(0) > 0)
        };
        let due = || heads().filter(|(_, r)| r.time == t);
        let Some((h, rec)) = due()
            .find(|(_, r)| ready(r))
            .or_else(|| due().next())
            .map(|(h, r)| (h, *r))
        else {
            break;
        };
        next[h] += 1;
        match rec.event {
            TraceEvent::Segment {
                dir: Direction::Sent,
                tuple,
                seg,
            } => {
                *in_flight
                    .entry(seg_key((tuple.local, tuple.remote), &seg))
                    .or_default() += 1
            }
            TraceEvent::Segment {
                dir: Direction::Received,
                ..
            } => {
                if let Some(n) = received_key(&rec).and_then(|k| in_flight.get_mut(&k)) {
                    *n = n.saturating_sub(1);
                }
            }
            _ => {}
        }
        items.push(Item {
            host: h,
            rec,
            sent: None,
            seq_base: 0,
        });
    }
    items
}

/// What the analysis keeps per direction of a connection.
#[derive(Debug, Clone, Copy, Default)]
struct DirState {
    /// The ISN (or first sequence number seen).
    base: Option<u32>,
    /// The window scale offered in this direction's SYN.
    wscale: Option<u8>,
    /// A SYN was seen in this direction.
    syn: bool,
    /// One past the highest sequence number sent.
    max_end: Option<SeqNum>,
}

/// Numbers every sent segment, finds retransmissions and lost segments. Returns the number of
/// distinct connections.
fn analyze(items: &mut [Item], hosts: usize) -> usize {
    // Which host owns which address: the local addresses in its records.
    let mut owner: HashMap<IpAddr, usize> = HashMap::new();
    let mut traced_rx = vec![false; hosts];
    for it in items.iter() {
        let t = match it.rec.event {
            TraceEvent::Segment { tuple, dir, .. } => {
                if dir == Direction::Received {
                    traced_rx[it.host] = true;
                }
                tuple
            }
            TraceEvent::State { tuple, .. }
            | TraceEvent::Retransmit { tuple, .. }
            | TraceEvent::Congestion { tuple, .. } => tuple,
        };
        owner.entry(t.local.ip()).or_insert(it.host);
    }
    // The first sequence number seen in each direction: the base of acks sent before that
    // direction's first segment shows up in the trace.
    let mut first_seen: HashMap<DirKey, u32> = HashMap::new();
    for it in items.iter() {
        if let TraceEvent::Segment { dir, tuple, seg } = it.rec.event {
            let d = match dir {
                Direction::Sent => (tuple.local, tuple.remote),
                Direction::Received => (tuple.remote, tuple.local),
            };
            first_seen.entry(d).or_insert(seg.seq.0);
        }
    }
    let mut dirs: HashMap<DirKey, DirState> = HashMap::new();
    let mut conns: BTreeSet<DirKey> = BTreeSet::new();
    for it in items.iter_mut() {
        match it.rec.event {
            TraceEvent::Segment { dir, tuple, seg } => {
                conns.insert(conn_key(&tuple));
                let d = match dir {
                    Direction::Sent => (tuple.local, tuple.remote),
                    Direction::Received => (tuple.remote, tuple.local),
                };
                let rev = (d.1, d.0);
                let st = dirs.entry(d).or_default();
                if seg.flags.contains(TcpFlags::SYN) {
                    if st.base != Some(seg.seq.0) {
                        // A new ISN: a new incarnation of this 4-tuple.
                        st.max_end = None;
                    }
                    st.base = Some(seg.seq.0);
                    st.wscale = seg.options.window_scale;
                    st.syn = true;
                }
                let base = *st.base.get_or_insert(seg.seq.0);
                if dir == Direction::Received {
                    continue;
                }
                let end = seg.seq + seg.seq_len();
                let retransmission = seg.seq_len() > 0 && st.max_end.is_some_and(|m| seg.seq.lt(m));
                if seg.seq_len() > 0 {
                    st.max_end = Some(st.max_end.map_or(end, |m| m.max(end)));
                }
                let my_scale = st.wscale;
                let my_syn = st.syn;
                let r = dirs.get(&rev).copied().unwrap_or_default();
                let ack_base = r
                    .base
                    .or_else(|| first_seen.get(&rev).copied())
                    .unwrap_or(0);
                let window = match (seg.flags.contains(TcpFlags::SYN), my_syn && r.syn) {
                    (false, true) => match (my_scale, r.wscale) {
                        (Some(s), Some(_)) => u32::from(seg.window) << s.min(MAX_WSCALE),
                        _ => u32::from(seg.window),
                    },
                    _ => u32::from(seg.window),
                };
                it.sent = Some(SentInfo {
                    to: owner.get(&tuple.remote.ip()).copied(),
                    rel_seq: seg.seq.0.wrapping_sub(base),
                    rel_ack: seg.ack.0.wrapping_sub(ack_base),
                    ack_base,
                    window,
                    retransmission,
                    lost: false,
                });
            }
            TraceEvent::Retransmit { tuple, .. } => {
                let d = (tuple.local, tuple.remote);
                it.seq_base = dirs.get(&d).and_then(|s| s.base).unwrap_or(0);
            }
            _ => {}
        }
    }
    mark_lost(items, &traced_rx);
    conns.len()
}

/// A segment's identity for matching a received record to the sent one.
type SegKey = (DirKey, u32, u32, u8, u16, usize, TcpOptions);

fn seg_key(d: DirKey, s: &SegmentInfo) -> SegKey {
    (d, s.seq.0, s.ack.0, s.flags.0, s.window, s.len, s.options)
}

/// Marks sent segments to a traced host that no received record matches. Each received
/// record matches the latest identical segment sent no later than it arrived and not matched
/// yet (a retransmission is usually what arrives when the original was lost).
fn mark_lost(items: &mut [Item], traced_rx: &[bool]) {
    let mut sent: HashMap<SegKey, Vec<usize>> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        if let TraceEvent::Segment {
            dir: Direction::Sent,
            tuple,
            seg,
        } = it.rec.event
        {
            sent.entry(seg_key((tuple.local, tuple.remote), &seg))
                .or_default()
                .push(i);
        }
    }
    let mut matched = vec![false; items.len()];
    for it in items.iter() {
        if let TraceEvent::Segment {
            dir: Direction::Received,
            tuple,
            seg,
        } = it.rec.event
        {
            let key = seg_key((tuple.remote, tuple.local), &seg);
            if let Some(list) = sent.get_mut(&key) {
                if let Some(pos) = list
                    .iter()
                    .rposition(|&i| items[i].rec.time <= it.rec.time && !matched[i])
                {
                    matched[list[pos]] = true;
                    list.remove(pos);
                }
            }
        }
    }
    for (i, it) in items.iter_mut().enumerate() {
        if let Some(info) = it.sent.as_mut() {
            if let Some(to) = info.to {
                info.lost = traced_rx.get(to).copied().unwrap_or(false) && !matched[i];
            }
        }
    }
}
