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
//!
//! A [`Ladder`] is drawn from whole traces. A [`LadderBuilder`] draws the same ladder while the
//! trace is being recorded: it takes records as they are drained from the endpoints, settles
//! each sent segment's fate (arrived, or lost once no path could still deliver it), folds bulk
//! runs into their summary line as they go and hands out finished rows, so a transfer of any
//! length is drawn in memory bounded by what is in flight. A [`LineRenderer`] prints rows as
//! they come.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use synack_tcp::{Direction, Duration, FourTuple, Instant, RetransmitCause, SegmentInfo};
use synack_tcp::{SeqNum, State};
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

/// The options a ladder is drawn with.
#[derive(Debug, Clone, Copy)]
struct Options {
    relative: bool,
    fold: bool,
    fold_min: usize,
    /// Folding leaves retransmissions, timer firings and congestion events out of the runs.
    keep_events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relative: true,
            fold: true,
            fold_min: 4,
            keep_events: false,
        }
    }
}

/// A ladder diagram over the traces of one or more hosts. See the [module documentation](self).
///
/// `Ladder` keeps the records it is given and draws them on demand; to draw a trace as it is
/// recorded, in bounded memory, use a [`LadderBuilder`] (which `Ladder` runs on its records).
///
/// ```
/// use synack_trace::ladder::Ladder;
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
    traces: Vec<Vec<TraceRecord>>,
    opts: Options,
    origin: Option<Instant>,
}

impl Ladder {
    /// A ladder over `traces`: each host's name and the records drained from its endpoint.
    /// Relative numbering and folding are on.
    pub fn new<N: AsRef<str>, T: AsRef<[TraceRecord]>>(traces: &[(N, T)]) -> Ladder {
        Ladder {
            hosts: traces.iter().map(|(n, _)| n.as_ref().to_owned()).collect(),
            traces: traces.iter().map(|(_, t)| t.as_ref().to_vec()).collect(),
            opts: Options::default(),
            origin: None,
        }
    }

    /// Relative sequence numbers (each direction's ISN is 0; the default) or raw ones.
    pub fn relative(mut self, on: bool) -> Self {
        self.opts.relative = on;
        self
    }

    /// Raw sequence numbers: the same as `relative(!on)`.
    pub fn absolute(self, on: bool) -> Self {
        self.relative(!on)
    }

    /// Fold runs of data segments into summary lines (the default) or draw every segment.
    pub fn fold(mut self, on: bool) -> Self {
        self.opts.fold = on;
        self
    }

    /// The fewest data segments a run must have to be folded (default 4; at least 1).
    pub fn fold_min(mut self, segments: usize) -> Self {
        self.opts.fold_min = segments.max(1);
        self
    }

    /// While folding, still draw every retransmitted segment, every retransmission event
    /// (fast retransmit, RTO, TLP firings) and every congestion event (entering and leaving
    /// recovery) as a row of its own: each ends the run it falls in, and the data after it
    /// starts a new one. Default off: runs count them.
    pub fn fold_keep_events(mut self, on: bool) -> Self {
        self.opts.keep_events = on;
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
            .or_else(|| self.traces.iter().flatten().map(|r| r.time).min())
            .unwrap_or(Instant::ZERO)
    }

    /// Runs a builder over every record.
    fn build(&self) -> BuiltLadder {
        let mut b = LadderBuilder::new(&self.hosts);
        b.opts = self.opts;
        for (h, t) in self.traces.iter().enumerate() {
            b.push(h, t.iter().copied());
        }
        b.finish()
    }

    /// The rows of the ladder, folded or not as asked.
    pub fn rows(&self) -> Vec<Row> {
        self.build().rows
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
    /// the previous line's; ports are shown when the trace holds more than one connection.
    pub fn lines(&self) -> Vec<String> {
        let built = self.build();
        let mut r = LineRenderer::new(&self.hosts, built.connections > 1, self.origin());
        built.rows.iter().map(|row| r.line(row)).collect()
    }

    /// Totals per direction, handshakes and events over the whole trace.
    pub fn summary(&self) -> Summary {
        self.build().summary
    }

    /// The milestones of the first connection opened in the trace (the first SYN without
    /// ACK): when it started, finished its handshake, sent its request, got its response,
    /// and closed. Missing milestones are `None`.
    pub fn phases(&self) -> Phases {
        self.build().phases
    }
}

/// Turns rows into the ladder's text lines, one row at a time.
#[derive(Debug, Clone)]
pub struct LineRenderer {
    hosts: Vec<String>,
    name_width: usize,
    ports: bool,
    origin: Instant,
    last_time: Option<Instant>,
}

impl LineRenderer {
    /// A renderer for rows between `hosts` (their names, in column order), printing times
    /// since `origin`, and ports after the host names when `ports` (for traces of more than
    /// one connection).
    pub fn new<N: AsRef<str>>(hosts: &[N], ports: bool, origin: Instant) -> LineRenderer {
        let hosts: Vec<String> = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        LineRenderer {
            name_width: hosts.iter().map(String::len).max().unwrap_or(0),
            hosts,
            ports,
            origin,
            last_time: None,
        }
    }

    /// The line of `row` (without a newline). Its time is left blank when it equals the
    /// previous row's.
    pub fn line(&mut self, row: &Row) -> String {
        let body = self.row_text(row);
        self.with_time(row.time(), &body)
    }

    /// A line saying what a segment's payload carried (an HTTP request, an HTTP/2 frame, a
    /// TLS record), drawn between the hosts with a wavy arrow: `from ~~> to : text`. Its
    /// time is left blank when it equals the previous line's.
    pub fn annotation(&mut self, time: Instant, from: &str, to: &str, text: &str) -> String {
        let w = self.name_width;
        let body = format!("{from:>w$} ~~> {to:<w$} : {text}");
        self.with_time(time, &body)
    }

    /// A line of free text after the time column (blank when it equals the previous line's).
    pub fn text(&mut self, time: Instant, text: &str) -> String {
        self.with_time(time, text)
    }

    fn with_time(&mut self, t: Instant, body: &str) -> String {
        let time = if self.last_time == Some(t) {
            String::new()
        } else {
            fmt_secs(t.saturating_duration_since(self.origin).as_micros() as u64)
        };
        self.last_time = Some(t);
        format!("{time:>10}  {body}").trim_end().to_owned()
    }

    /// The text of one row after the time column.
    fn row_text(&self, row: &Row) -> String {
        let name_width = self.name_width;
        let arrow = |from: &str, to: &str, t: &FourTuple| {
            if self.ports {
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
}

/// What a [`LadderBuilder`] leaves when finished.
#[derive(Debug, Clone, Default)]
pub struct BuiltLadder {
    /// The rows not taken with [`LadderBuilder::take_rows`] before finishing.
    pub rows: Vec<Row>,
    /// Totals over the whole trace.
    pub summary: Summary,
    /// The milestones of the first connection.
    pub phases: Phases,
    /// Distinct connections seen.
    pub connections: usize,
}

/// What the analysis learned about one sent segment.
#[derive(Debug, Clone, Copy, Default)]
struct SentInfo {
    /// Index of the receiving host, if its trace was given.
    to: Option<usize>,
    rel_seq: u32,
    /// Base of the other direction (for the ack and SACK blocks), if known when it was sent;
    /// otherwise the first sequence number seen in that direction, looked up later.
    ack_base: Option<u32>,
    window: u32,
    retransmission: bool,
    lost: bool,
    /// Index in the summary's flows.
    flow: usize,
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
    /// Whether its fate is known (always, except for sent segments to a host whose trace is
    /// given, until their arrival or their loss is certain).
    resolved: bool,
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

/// A segment's identity for matching a received record to the sent one.
type SegKey = (DirKey, u32, u32, u8, u16, usize, TcpOptions);

fn seg_key(d: DirKey, s: &SegmentInfo) -> SegKey {
    (d, s.seq.0, s.ack.0, s.flags.0, s.window, s.len, s.options)
}

/// A run of bulk data being folded (see [`Ladder`]'s rules).
#[derive(Debug)]
struct Run {
    fwd: DirKey,
    rev: DirKey,
    conn: DirKey,
    /// Data segments so far.
    data: usize,
    /// Until the run has `fold_min` data segments: all its items. Afterwards: the notes after
    /// its last segment (they belong to the run only if another segment of it follows).
    held: Vec<Item>,
    /// The summary line, once the run is long enough to fold.
    row: Option<FoldedRow>,
    lo: Option<SeqNum>,
    hi: Option<SeqNum>,
}

/// The milestones of the first connection, followed record by record.
#[derive(Debug, Default)]
struct PhaseTracker {
    p: Phases,
    /// The client host and the connection, once its first SYN is seen.
    first: Option<(usize, FourTuple)>,
    server: Option<usize>,
    /// Another incarnation of the 4-tuple started: later records are not this connection's.
    over: bool,
    isn: Option<SeqNum>,
    done: [Option<Instant>; 2],
    /// The client received server data (its received segments are in the trace).
    client_sees_data: bool,
    /// Reassembly of the server's data as the client received it, and as the server sent it
    /// (used when the client's received segments are not in the trace).
    received: Reassembly,
    sent: Reassembly,
}

/// In-order reassembly of one direction, to find when all of it was there.
#[derive(Debug, Default)]
struct Reassembly {
    first: Option<Instant>,
    rcv_nxt: Option<SeqNum>,
    ooo: Vec<(SeqNum, SeqNum)>,
    data_end: Option<SeqNum>,
    reached: Option<Instant>,
}

impl Reassembly {
    fn add(&mut self, time: Instant, s0: SeqNum, s1: SeqNum) {
        self.first.get_or_insert(time);
        self.data_end = Some(self.data_end.map_or(s1, |e| e.max(s1)));
        let next = self.rcv_nxt.get_or_insert(s0);
        if s0.le(*next) && s1.gt(*next) {
            *next = s1;
            // Absorb the out-of-order ranges now contiguous.
            loop {
                let n = *next;
                let before = self.ooo.len();
                self.ooo.retain(|&(a, b)| {
                    if a.le(n) {
                        if b.gt(*next) {
                            *next = b;
                        }
                        false
                    } else {
                        true
                    }
                });
                if self.ooo.len() == before {
                    break;
                }
            }
            self.reached = Some(time);
        } else if s0.gt(*next) {
            self.ooo.push((s0, s1));
        }
    }

    /// When everything up to the highest byte seen was there.
    fn complete(&self) -> Option<Instant> {
        match (self.rcv_nxt, self.data_end) {
            (Some(next), Some(end)) if next.ge(end) => self.reached,
            _ => None,
        }
    }
}

/// Builds a ladder as the trace is recorded, in memory bounded by what is in flight rather
/// than by the length of the trace.
///
/// Records are [pushed](Self::push) per host as they are drained from the endpoints;
/// [`advance`](Self::advance) merges every record older than a given instant (the caller
/// promises no host will record anything older), numbers and matches them, and turns those
/// whose fate is known into [rows](Self::take_rows). A bulk run is summed into its
/// [`FoldedRow`] as it goes, so a transfer of any length holds one row. A sent segment's fate
/// (arrived, or lost) is known when its arrival is merged, or, with a
/// [loss horizon](Self::loss_horizon), once that long has passed without it;
/// [`finish`](Self::finish) settles the rest. The rows, the summary and the phases are those
/// [`Ladder`] gives for the same records (it runs a builder over them), as long as every
/// segment that arrives does so within the horizon.
///
/// ```
/// use synack_trace::ladder::LadderBuilder;
/// use synack_tcp::{Duration, Instant};
///
/// let mut b = LadderBuilder::new(&["client", "server"]).loss_horizon(Duration::from_secs(1));
/// // ... b.push(0, client.drain_trace()); b.push(1, server.drain_trace()); b.advance(now);
/// b.advance(Instant::from_millis(10));
/// assert!(b.take_rows().is_empty());
/// let done = b.finish();
/// assert_eq!(done.connections, 0);
/// ```
#[derive(Debug)]
pub struct LadderBuilder {
    hosts: Vec<String>,
    opts: Options,
    horizon: Option<Duration>,
    /// Pushed records not merged yet, per host, in time order.
    pending: Vec<VecDeque<TraceRecord>>,
    /// Which host owns which address: the local addresses in its records.
    owner: HashMap<IpAddr, usize>,
    /// Hosts whose trace holds received segments (only those can tell a segment was lost).
    traced_rx: Vec<bool>,
    /// The first sequence number seen in each direction: the base of acks sent before that
    /// direction's first segment shows up.
    first_seen: HashMap<DirKey, u32>,
    dirs: HashMap<DirKey, DirState>,
    conns: HashSet<DirKey>,
    /// Sent segments to a traced host not matched by an arrival yet: (time, item number).
    unmatched: HashMap<SegKey, VecDeque<(Instant, u64)>>,
    /// Merged records waiting for their fate (and those behind them), oldest first.
    queue: VecDeque<Item>,
    /// The number of `queue[0]`.
    queue_base: u64,
    run: Option<Run>,
    rows: Vec<Row>,
    summary: Summary,
    opened: HashSet<DirKey>,
    phases: PhaseTracker,
}

impl LadderBuilder {
    /// A builder for the traces of `hosts` (names, in column order; records are pushed by
    /// index into this list). Relative numbering and folding are on; no loss horizon.
    pub fn new<N: AsRef<str>>(hosts: &[N]) -> LadderBuilder {
        let hosts: Vec<String> = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        let n = hosts.len();
        LadderBuilder {
            hosts,
            opts: Options::default(),
            horizon: None,
            pending: vec![VecDeque::new(); n],
            owner: HashMap::new(),
            traced_rx: vec![false; n],
            first_seen: HashMap::new(),
            dirs: HashMap::new(),
            conns: HashSet::new(),
            unmatched: HashMap::new(),
            queue: VecDeque::new(),
            queue_base: 0,
            run: None,
            rows: Vec::new(),
            summary: Summary::default(),
            opened: HashSet::new(),
            phases: PhaseTracker::default(),
        }
    }

    /// Relative sequence numbers (the default) or raw ones.
    pub fn relative(mut self, on: bool) -> Self {
        self.opts.relative = on;
        self
    }

    /// Fold runs of data segments (the default) or make a row of every segment.
    pub fn fold(mut self, on: bool) -> Self {
        self.opts.fold = on;
        self
    }

    /// The fewest data segments a run must have to be folded (default 4; at least 1).
    pub fn fold_min(mut self, segments: usize) -> Self {
        self.opts.fold_min = segments.max(1);
        self
    }

    /// While folding, still draw every retransmitted segment, every retransmission event
    /// (fast retransmit, RTO, TLP firings) and every congestion event (entering and leaving
    /// recovery) as a row of its own: each ends the run it falls in, and the data after it
    /// starts a new one. Default off: runs count them.
    pub fn fold_keep_events(mut self, on: bool) -> Self {
        self.opts.keep_events = on;
        self
    }

    /// A sent segment whose arrival has not been merged `horizon` after it was sent is lost:
    /// no path delivers later (see [`PathConfig::max_transit`](synack_stack::sim::PathConfig::max_transit)).
    /// Without a horizon, fates are settled only by arrivals and by [`finish`](Self::finish),
    /// and every record sent after a lost segment stays held until then.
    pub fn loss_horizon(mut self, horizon: Duration) -> Self {
        self.horizon = Some(horizon);
        self
    }

    /// Declares that `host` (an index into the names given) owns `addr`, so that segments to
    /// it are attributed before its first record arrives.
    pub fn host_addr(mut self, host: usize, addr: IpAddr) -> Self {
        if host < self.hosts.len() {
            self.owner.entry(addr).or_insert(host);
        }
        self
    }

    /// The host names, in column order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Adds records of host `host` (an index into the names given), as drained from its
    /// endpoint: in time order, and none older than an instant already passed to
    /// [`advance`](Self::advance). Records of an unknown host are ignored.
    pub fn push(&mut self, host: usize, records: impl IntoIterator<Item = TraceRecord>) {
        let Some(list) = self.pending.get_mut(host) else {
            return;
        };
        for r in records {
            let local = match r.event {
                TraceEvent::Segment { tuple, dir, .. } => {
                    if dir == Direction::Received {
                        self.traced_rx[host] = true;
                    }
                    tuple.local
                }
                TraceEvent::State { tuple, .. }
                | TraceEvent::Retransmit { tuple, .. }
                | TraceEvent::Congestion { tuple, .. } => tuple.local,
            };
            self.owner.entry(local.ip()).or_insert(host);
            // Keep the list sorted by time, equal times in push order.
            let at = list
                .iter()
                .rposition(|x| x.time <= r.time)
                .map_or(0, |i| i + 1);
            list.insert(at, r);
        }
    }

    /// Merges every pushed record older than `now` and makes rows of those whose fate is
    /// known. The caller promises that no record older than `now` will be pushed later (the
    /// simulator's clock, after draining every host's trace, is such an instant).
    pub fn advance(&mut self, now: Instant) {
        self.merge(Some(now));
        let cutoff = self.horizon.map(|h| {
            let us = u64::try_from(h.as_micros()).unwrap_or(u64::MAX);
            Instant::from_micros(now.as_micros().saturating_sub(us))
        });
        self.settle(cutoff);
    }

    /// Rows made so far and not taken yet.
    pub fn take_rows(&mut self) -> Vec<Row> {
        std::mem::take(&mut self.rows)
    }

    /// Records and rows held: pushed records not merged yet, merged ones waiting for their
    /// fate, the items of a run not yet long enough to fold, and rows not taken. What a
    /// builder holds besides these grows with the number of connections, not with their
    /// length.
    pub fn held(&self) -> usize {
        self.pending.iter().map(VecDeque::len).sum::<usize>()
            + self.queue.len()
            + self.run.as_ref().map_or(0, |r| r.held.len())
            + self.rows.len()
    }

    /// The totals so far (losses count once known).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Merges everything, settles every fate (a segment to a traced host that never arrived
    /// is lost) and closes the last run.
    pub fn finish(mut self) -> BuiltLadder {
        self.merge(None);
        self.settle(Some(Instant::MAX));
        self.close_run();
        let phases = self.phases.finish();
        self.summary.handshakes = self.opened.len();
        BuiltLadder {
            rows: self.rows,
            summary: self.summary,
            phases,
            connections: self.conns.len(),
        }
    }

    fn host_name(&self, i: usize) -> String {
        self.hosts[i].clone()
    }

    /// The key of the arrival a received record is, if it is one.
    fn received_key(r: &TraceRecord) -> Option<SegKey> {
        match r.event {
            TraceEvent::Segment {
                dir: Direction::Received,
                tuple,
                seg,
            } => Some(seg_key((tuple.remote, tuple.local), &seg)),
            _ => None,
        }
    }

    /// Merges the hosts' records by time, up to `until` (exclusive) or all of them. Among
    /// records of equal time, the first host's come first, except that a received segment
    /// waits until the record of its sending is out: with a path of zero delay, a segment is
    /// sent and received in the same instant, and the ladder must not show it arriving before
    /// it left. Within a host, records keep their order.
    fn merge(&mut self, until: Option<Instant>) {
        loop {
            let Some(t) = self
                .pending
                .iter()
                .filter_map(|l| l.front())
                .map(|r| r.time)
                .min()
            else {
                return;
            };
            if until.is_some_and(|u| t >= u) {
                return;
            }
            let due = |h: &usize| self.pending[*h].front().is_some_and(|r| r.time == t);
            let ready = |h: &usize| {
                self.pending[*h].front().is_some_and(|r| {
                    Self::received_key(r).is_none_or(|k| self.unmatched.contains_key(&k))
                })
            };
            let hosts = 0..self.pending.len();
            let Some(h) = hosts
                .clone()
                .filter(due)
                .find(ready)
                .or_else(|| hosts.clone().find(due))
            else {
                return;
            };
            let Some(rec) = self.pending[h].pop_front() else {
                return;
            };
            self.take(h, rec);
        }
    }

    /// Analyzes one merged record: numbers sent segments, finds retransmissions, matches
    /// arrivals to sendings, follows the phases, and queues what becomes a row.
    fn take(&mut self, host: usize, rec: TraceRecord) {
        self.phases.take(host, &rec, &self.hosts);
        let mut item = Item {
            host,
            rec,
            sent: None,
            seq_base: 0,
            resolved: true,
        };
        match rec.event {
            TraceEvent::Segment { dir, tuple, seg } => {
                self.conns.insert(conn_key(&tuple));
                let d = match dir {
                    Direction::Sent => (tuple.local, tuple.remote),
                    Direction::Received => (tuple.remote, tuple.local),
                };
                self.first_seen.entry(d).or_insert(seg.seq.0);
                let rev = (d.1, d.0);
                let st = self.dirs.entry(d).or_default();
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
                    // It arrived: the latest identical segment sent and not matched yet is
                    // the one (a retransmission is usually what arrives when the original
                    // was lost).
                    let key = seg_key(d, &seg);
                    if let Some(list) = self.unmatched.get_mut(&key) {
                        if let Some((_, n)) = list.pop_back() {
                            if let Some(it) = self.queue.get_mut((n - self.queue_base) as usize) {
                                it.resolved = true;
                            }
                        }
                        if list.is_empty() {
                            self.unmatched.remove(&key);
                        }
                    }
                    return;
                }
                let end = seg.seq + seg.seq_len();
                let retransmission = seg.seq_len() > 0 && st.max_end.is_some_and(|m| seg.seq.lt(m));
                if seg.seq_len() > 0 {
                    st.max_end = Some(st.max_end.map_or(end, |m| m.max(end)));
                }
                let my_scale = st.wscale;
                let my_syn = st.syn;
                let r = self.dirs.get(&rev).copied().unwrap_or_default();
                let window = match (seg.flags.contains(TcpFlags::SYN), my_syn && r.syn) {
                    (false, true) => match (my_scale, r.wscale) {
                        (Some(s), Some(_)) => u32::from(seg.window) << s.min(MAX_WSCALE),
                        _ => u32::from(seg.window),
                    },
                    _ => u32::from(seg.window),
                };
                let to = self.owner.get(&tuple.remote.ip()).copied();
                if seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK) {
                    self.opened.insert(conn_key(&tuple));
                }
                let from_name = self.host_name(host);
                let to_name = match to {
                    Some(h) => self.host_name(h),
                    None => tuple.remote.to_string(),
                };
                let flow = match self
                    .summary
                    .flows
                    .iter()
                    .position(|f| f.from == from_name && f.to == to_name)
                {
                    Some(i) => i,
                    None => {
                        self.summary.flows.push(Flow {
                            from: from_name,
                            to: to_name,
                            ..Flow::default()
                        });
                        self.summary.flows.len() - 1
                    }
                };
                let f = &mut self.summary.flows[flow];
                f.segments += 1;
                f.data_segments += (seg.len > 0) as usize;
                f.bytes_sent += seg.len as u64;
                f.retransmitted += retransmission as usize;
                item.sent = Some(SentInfo {
                    to,
                    rel_seq: seg.seq.0.wrapping_sub(base),
                    ack_base: r.base,
                    window,
                    retransmission,
                    lost: false,
                    flow,
                });
                if to.is_some() {
                    // Its fate is known when it arrives, or when it cannot arrive any more.
                    item.resolved = false;
                    let n = self.queue_base + self.queue.len() as u64;
                    self.unmatched
                        .entry(seg_key(d, &seg))
                        .or_default()
                        .push_back((rec.time, n));
                }
            }
            TraceEvent::Retransmit { tuple, .. } => {
                let d = (tuple.local, tuple.remote);
                item.seq_base = self.dirs.get(&d).and_then(|s| s.base).unwrap_or(0);
                self.summary.retransmit_events += 1;
            }
            TraceEvent::Congestion { .. } => self.summary.congestion_events += 1,
            TraceEvent::State { .. } => {}
        }
        self.queue.push_back(item);
    }

    /// Makes rows of the queued records whose fate is known, oldest first; sent segments
    /// older than `cutoff` that have not arrived are lost.
    fn settle(&mut self, cutoff: Option<Instant>) {
        while let Some(front) = self.queue.front() {
            if !front.resolved {
                if cutoff.is_none_or(|c| front.rec.time >= c) {
                    return;
                }
                self.expire_front();
            }
            let Some(mut it) = self.queue.pop_front() else {
                return;
            };
            self.queue_base += 1;
            if let (Some(info), TraceEvent::Segment { tuple, .. }) =
                (it.sent.as_mut(), it.rec.event)
            {
                if info.ack_base.is_none() {
                    let rev = (tuple.remote, tuple.local);
                    info.ack_base = Some(self.first_seen.get(&rev).copied().unwrap_or(0));
                }
            }
            self.place(it);
        }
    }

    /// The front of the queue never arrived: it is lost (if its receiver's trace could have
    /// shown its arrival).
    fn expire_front(&mut self) {
        let n = self.queue_base;
        let Some(it) = self.queue.front_mut() else {
            return;
        };
        it.resolved = true;
        let TraceEvent::Segment { tuple, seg, .. } = it.rec.event else {
            return;
        };
        let Some(info) = it.sent.as_mut() else {
            return;
        };
        let lost = info
            .to
            .is_some_and(|to| self.traced_rx.get(to).copied().unwrap_or(false));
        info.lost = lost;
        if lost {
            self.summary.flows[info.flow].lost += 1;
        }
        let key = seg_key((tuple.local, tuple.remote), &seg);
        if let Some(list) = self.unmatched.get_mut(&key) {
            // Older identical segments have arrived or expired already: this is the first.
            if let Some(i) = list.iter().position(|&(_, m)| m == n) {
                list.remove(i);
            }
            if list.is_empty() {
                self.unmatched.remove(&key);
            }
        }
    }

    /// One settled record, in order, into the rows: folded into the current run, or a row of
    /// its own.
    fn place(&mut self, it: Item) {
        if !self.opts.fold {
            let row = self.plain_row(&it);
            self.rows.push(row);
            return;
        }
        if matches!(
            it.rec.event,
            TraceEvent::Segment {
                dir: Direction::Received,
                ..
            }
        ) {
            return;
        }
        if self.opts.keep_events {
            let event = match it.rec.event {
                TraceEvent::Retransmit { .. } | TraceEvent::Congestion { .. } => true,
                TraceEvent::Segment { .. } => it.sent.is_some_and(|s| s.retransmission),
                TraceEvent::State { .. } => false,
            };
            if event {
                self.close_run();
                let row = self.plain_row(&it);
                self.rows.push(row);
                return;
            }
        }
        if let Some(run) = self.run.as_mut() {
            let continues = match it.rec.event {
                TraceEvent::Segment {
                    tuple: t, seg: s, ..
                } => {
                    let d = (t.local, t.remote);
                    (d == run.fwd && is_bulk_data(&s)) || (d == run.rev && is_pure_ack(&s))
                }
                TraceEvent::Retransmit { tuple: t, .. }
                | TraceEvent::Congestion { tuple: t, .. } => conn_key(&t) == run.conn,
                TraceEvent::State { .. } => false,
            };
            if continues {
                self.extend_run(it);
                return;
            }
            self.close_run();
        }
        match it.rec.event {
            TraceEvent::Segment { tuple, seg, .. } if is_bulk_data(&seg) => {
                let fwd = (tuple.local, tuple.remote);
                self.run = Some(Run {
                    fwd,
                    rev: (fwd.1, fwd.0),
                    conn: conn_key(&tuple),
                    data: 0,
                    held: Vec::new(),
                    row: None,
                    lo: None,
                    hi: None,
                });
                self.extend_run(it);
            }
            _ => {
                let row = self.plain_row(&it);
                self.rows.push(row);
            }
        }
    }

    /// Adds a record that continues the current run.
    fn extend_run(&mut self, it: Item) {
        let fold_min = self.opts.fold_min;
        let Some(mut run) = self.run.take() else {
            return;
        };
        let is_data = matches!(it.rec.event, TraceEvent::Segment { seg, .. } if seg.len > 0);
        let is_segment = matches!(it.rec.event, TraceEvent::Segment { .. });
        if run.row.is_none() {
            run.held.push(it);
            run.data += is_data as usize;
            if run.data >= fold_min {
                // Long enough: from now on the run is one summary line.
                let held = std::mem::take(&mut run.held);
                let first = held[0];
                let TraceEvent::Segment { tuple, .. } = first.rec.event else {
                    unreachable!("a run starts with a data segment")
                };
                run.row = Some(FoldedRow {
                    start: first.rec.time,
                    end: first.rec.time,
                    from: self.host_name(first.host),
                    to: self.peer_name(&first),
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
                });
                for h in held {
                    self.add_to_run(&mut run, &h);
                }
            }
        } else if is_segment {
            // The notes since the last segment were inside the run after all.
            for h in std::mem::take(&mut run.held) {
                self.add_to_run(&mut run, &h);
            }
            self.add_to_run(&mut run, &it);
            run.data += is_data as usize;
        } else {
            run.held.push(it);
        }
        self.run = Some(run);
    }

    /// Counts one record into a folded run's line.
    fn add_to_run(&self, run: &mut Run, it: &Item) {
        let Some(row) = run.row.as_mut() else {
            return;
        };
        match it.rec.event {
            TraceEvent::Segment {
                tuple: t, seg: s, ..
            } => {
                let info = it.sent.unwrap_or_default();
                row.end = it.rec.time;
                if (t.local, t.remote) == run.fwd {
                    let (seq, _) = self.numbers(it);
                    let s0 = SeqNum(seq);
                    let s1 = s0 + s.len;
                    run.lo = Some(run.lo.map_or(s0, |l| l.min(s0)));
                    run.hi = Some(run.hi.map_or(s1, |h| h.max(s1)));
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

    /// Ends the current run: its summary line (then the notes after its last segment), or,
    /// if it is too short to fold, a row for each of its records.
    fn close_run(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        if let Some(mut row) = run.row {
            row.seq_start = run.lo.map_or(0, |s| s.0);
            row.seq_end = run.hi.map_or(0, |s| s.0);
            self.rows.push(Row::Folded(row));
        }
        for it in &run.held {
            let row = self.plain_row(it);
            self.rows.push(row);
        }
    }

    /// `(seq, ack)` of a sent segment in the ladder's numbering.
    fn numbers(&self, it: &Item) -> (u32, u32) {
        let TraceEvent::Segment { seg, .. } = it.rec.event else {
            return (0, 0);
        };
        match (self.opts.relative, it.sent) {
            (true, Some(info)) => (
                info.rel_seq,
                seg.ack.0.wrapping_sub(info.ack_base.unwrap_or(0)),
            ),
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
                let sack_base = if self.opts.relative {
                    info.ack_base.unwrap_or(0)
                } else {
                    0
                };
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
                let seq = if self.opts.relative {
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
}

impl PhaseTracker {
    /// Follows one merged record.
    fn take(&mut self, host: usize, rec: &TraceRecord, hosts: &[String]) {
        if self.over {
            return;
        }
        let time = rec.time;
        let Some((client, tuple)) = self.first else {
            if let TraceEvent::Segment {
                dir: Direction::Sent,
                tuple,
                seg,
            } = rec.event
            {
                if seg.flags.contains(TcpFlags::SYN) && !seg.flags.contains(TcpFlags::ACK) {
                    self.first = Some((host, tuple));
                    self.p.connect_start = Some(time);
                    self.p.client = Some(hosts[host].clone());
                    self.p.tuple = Some(tuple);
                    self.take(host, rec, hosts);
                }
            }
            return;
        };
        let conn = conn_key(&tuple);
        let c2s = (tuple.local, tuple.remote);
        let s2c = (tuple.remote, tuple.local);
        let (t, is_segment) = match rec.event {
            TraceEvent::Segment { tuple: t, .. } => (t, true),
            TraceEvent::State { tuple: t, .. } => (t, false),
            _ => return,
        };
        if host != client && (t.local, t.remote) == s2c && self.server.is_none() {
            self.server = Some(host);
            self.p.server = Some(hosts[host].clone());
        }
        if conn_key(&t) != conn {
            return;
        }
        match rec.event {
            TraceEvent::Segment { dir, seg, .. } if is_segment => {
                let d = match dir {
                    Direction::Sent => (t.local, t.remote),
                    Direction::Received => (t.remote, t.local),
                };
                if dir == Direction::Sent
                    && d == c2s
                    && seg.flags.contains(TcpFlags::SYN)
                    && !seg.flags.contains(TcpFlags::ACK)
                {
                    // A SYN with another ISN opens a new incarnation of the 4-tuple: that
                    // is another connection.
                    if *self.isn.get_or_insert(seg.seq) != seg.seq {
                        self.over = true;
                        return;
                    }
                }
                if dir == Direction::Sent
                    && seg.flags.contains(TcpFlags::FIN)
                    && self.p.close_start.is_none()
                {
                    self.p.close_start = Some(time);
                    self.p.active_closer = Some(hosts[host].clone());
                }
                if dir == Direction::Sent && d == c2s && seg.len > 0 {
                    self.p.request_sent.get_or_insert(time);
                }
                if d == s2c && seg.flags.contains(TcpFlags::SYN) {
                    // The server's first data byte follows its ISN.
                    for r in [&mut self.received, &mut self.sent] {
                        if r.rcv_nxt.is_none() {
                            r.rcv_nxt = Some(seg.seq + 1);
                        }
                    }
                }
                if d == s2c && seg.len > 0 {
                    let (s0, s1) = (seg.seq, seg.seq + seg.len);
                    if dir == Direction::Received && host == client {
                        self.client_sees_data = true;
                        self.received.add(time, s0, s1);
                    } else if dir == Direction::Sent {
                        self.sent.add(time, s0, s1);
                    }
                }
            }
            TraceEvent::State { from, to, .. } => {
                if host == client && to == State::Established {
                    self.p.handshake_done.get_or_insert(time);
                }
                let side = if host == client { 0 } else { 1 };
                if self.p.close_start.is_some()
                    && matches!(to, State::Closed | State::TimeWait)
                    && self.done[side].is_none()
                {
                    self.done[side] = Some(time);
                }
                if to == State::TimeWait {
                    self.p.time_wait_start.get_or_insert(time);
                }
                if from == State::TimeWait && to == State::Closed {
                    self.p.time_wait_end.get_or_insert(time);
                }
            }
            _ => {}
        }
    }

    fn finish(self) -> Phases {
        let mut p = self.p;
        // What the client received, or what the server sent when the client's received
        // segments are not in the trace.
        let r = if self.client_sees_data {
            &self.received
        } else {
            &self.sent
        };
        p.first_response_byte = r.first;
        p.last_response_byte = r.complete();
        // Both sides, or the only side traced.
        p.closed = match (self.done[0], self.done[1], self.server.is_some()) {
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
        "{} data segment{}, seq={}..{} ({})",
        f.segments,
        if f.segments == 1 { "" } else { "s" },
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
        let _ = write!(
            t,
            "; {} ACK{} back",
            f.acks,
            if f.acks == 1 { "" } else { "s" }
        );
        if f.acks_lost > 0 {
            let _ = write!(t, " ({} lost)", f.acks_lost);
        }
    }
    t
}
