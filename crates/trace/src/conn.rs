//! One TCP connection as a capture shows it: both sides' states inferred from the segments,
//! the phases and their costs, counters, what the payload carried, and the ladder rows of its
//! handshake and close. Memory per connection is bounded: data segments between the
//! handshake and the close are counted into one summary row per direction, not kept.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use synack_tcp::{FourTuple, Instant, SeqNum, State};
use synack_wire::{TcpFlags, TcpRepr};

use crate::decode::http1::Http1Event;
use crate::decode::tls::{self, TlsEvent};
use crate::decode::{h2, AppEvent, AppStream, Protocol, Side};
use crate::ladder::{FoldedRow, Row, SegmentRow, StateRow};

/// The client's index in per-side arrays.
pub(crate) const CLIENT: usize = 0;
/// The server's index.
pub(crate) const SERVER: usize = 1;

/// Host names in ladders.
pub(crate) const NAMES: [&str; 2] = ["client", "server"];

/// Segments kept as rows while the connection opens (then counted).
const OPEN_ROWS: usize = 12;
/// Segments kept as rows from the first FIN or RST on.
const CLOSE_ROWS: usize = 16;
/// Retransmissions, zero windows and other notable segments kept between handshake and close.
const EVENT_ROWS: usize = 16;
/// Payload annotations kept (HTTP messages, HTTP/2 frames, TLS records).
const APP_ROWS: usize = 40;
/// Of those, TLS application data records and HTTP/2 DATA frames per direction.
const BULK_APP_ROWS: usize = 4;
/// Out-of-order payload held for in-order decoding, per direction.
const MAX_OOO: usize = 256 * 1024;

/// The part of a connection's life a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// From the first SYN until the server reached ESTABLISHED.
    Open,
    /// Between the handshake and the first FIN or RST.
    Data,
    /// From the first FIN or RST on.
    Close,
}

/// A line of payload annotation: what a segment's bytes carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// When the segment completing it was captured.
    pub time: Instant,
    /// `client` or `server`: who sent it.
    pub from: String,
    pub to: String,
    /// `GET /a HTTP/1.1`, `HEADERS stream=3`, `TLS ClientHello (…)`.
    pub text: String,
}

/// A line saying how much was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElidedRow {
    pub time: Instant,
    pub text: String,
}

/// What a row of a capture's ladder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKind {
    /// A segment, a state change or a folded run, as [`crate::ladder`] draws them.
    Ladder(Row),
    /// What the payload carried.
    App(AppRow),
    /// What was left out.
    Elided(ElidedRow),
}

/// A row of a connection's ladder, with the phase it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub phase: Phase,
    pub kind: RowKind,
}

impl TraceRow {
    /// When it happened.
    pub fn time(&self) -> Instant {
        match &self.kind {
            RowKind::Ladder(r) => r.time(),
            RowKind::App(a) => a.time,
            RowKind::Elided(e) => e.time,
        }
    }

    /// Whether it is a retransmitted segment (or a folded run with retransmissions).
    pub fn is_retransmission(&self) -> bool {
        match &self.kind {
            RowKind::Ladder(Row::Segment(s)) => s.retransmission,
            RowKind::Ladder(Row::Folded(f)) => f.retransmitted > 0,
            _ => false,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirCounts {
    /// Segments sent.
    pub segments: u64,
    /// Segments with payload.
    pub data_segments: u64,
    /// Payload bytes, retransmissions included.
    pub bytes: u64,
    /// Segments whose sequence range was sent before (RFC 9293 §3.4 counts SYN and FIN).
    pub retransmissions: u64,
    /// Segments advertising a zero window (RFC 9293 §3.8.6.1).
    pub zero_windows: u64,
    /// Segments with RST.
    pub resets: u64,
}

/// When each milestone of a connection was captured, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Milestones {
    /// The first packet of the connection.
    pub first_packet: u64,
    /// The last packet.
    pub last_packet: u64,
    /// The client's first SYN.
    pub syn: Option<u64>,
    /// The server's first SYN-ACK.
    pub syn_ack: Option<u64>,
    /// The client's ACK of the SYN-ACK: the handshake is done.
    pub handshake_ack: Option<u64>,
    /// The client's ClientHello (TLS).
    pub client_hello: Option<u64>,
    /// The client's first application data record after the server's ChangeCipherSpec or
    /// first encrypted record: the TLS handshake is done for the client.
    pub tls_done: Option<u64>,
    /// The client's first payload byte.
    pub first_request: Option<u64>,
    /// The server's first payload byte.
    pub first_response: Option<u64>,
    /// The last segment carrying new server payload.
    pub last_response: Option<u64>,
    /// The first FIN or RST.
    pub close_start: Option<u64>,
    /// Both sides reached CLOSED or TIME-WAIT.
    pub closed: Option<u64>,
}

/// What each phase took, in microseconds (and, when the RTT is known, in RTTs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PhaseCost {
    pub us: u64,
    /// `us` over the connection's RTT.
    pub rtts: Option<f64>,
}

/// The phases of a connection and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Costs {
    /// SYN to the ACK of the SYN-ACK (1 RTT by the RTT's definition).
    pub handshake: Option<PhaseCost>,
    /// ClientHello to the client's first encrypted application data.
    pub tls: Option<PhaseCost>,
    /// First request byte to first response byte.
    pub request_to_first_byte: Option<PhaseCost>,
    /// First to last response byte.
    pub response: Option<PhaseCost>,
    /// First FIN or RST to both sides closed (or in TIME-WAIT).
    pub close: Option<PhaseCost>,
    /// First to last packet.
    pub total: PhaseCost,
}

/// What a connection's TLS handshake showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub client_hellos: u64,
    pub server_hellos: u64,
    /// server_name from the ClientHello.
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    pub alpn_offered: Vec<String>,
    /// The ALPN protocol the server chose, if visible (TLS 1.2 ServerHello).
    pub alpn: Option<String>,
    /// The version the ServerHello chose (`TLS 1.3`).
    pub version: Option<String>,
    /// Records by content type, client to server and back: `[ChangeCipherSpec, Alert,
    /// Handshake, ApplicationData]`.
    pub client_records: [u64; 4],
    pub server_records: [u64; 4],
}

/// The numbers of one connection (what the tables and `--json` show).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnSummary {
    /// Connections are numbered from 1 in the order their first packet appears.
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The client's SYN is in the capture (else the client is guessed: the higher port).
    pub handshake_seen: bool,
    /// Client's SYN to its ACK of the SYN-ACK, in microseconds.
    pub rtt_us: Option<u64>,
    pub milestones: Milestones,
    pub costs: Costs,
    /// Each side's state at the end, as inferred from the segments.
    pub client_state: String,
    pub server_state: String,
    /// The side that sent the first FIN (`client` or `server`), if any.
    pub active_closer: Option<String>,
    /// The side that went to TIME-WAIT, if any.
    pub time_wait: Option<String>,
    /// Whether a RST ended it.
    pub reset: bool,
    pub client_to_server: DirCounts,
    pub server_to_client: DirCounts,
    pub retransmissions: u64,
    pub zero_windows: u64,
    pub resets: u64,
    /// What the client's payload was.
    pub protocol: Protocol,
    /// HTTP/1.x requests the client sent.
    pub http1_requests: u64,
    /// HTTP/1.x responses the server sent.
    pub http1_responses: u64,
    /// HTTP/2 streams the client opened (HEADERS frames on a new odd stream, RFC 9113 §5.1.1).
    pub h2_streams: u64,
    /// HTTP/2 frames, both ways.
    pub h2_frames: u64,
    pub tls: Option<TlsInfo>,
    /// Payload bytes that could not be decoded in order (a gap in the capture, or more
    /// out-of-order data than is held).
    pub undecoded_gaps: u64,
    /// FINs missing from the capture, inferred from the ACK that acknowledged them (a capture
    /// can lose packets: `tcpdump -i any` on the loopback device sometimes does).
    pub inferred_fins: u64,
}

/// A finished connection: its numbers and its ladder.
#[derive(Debug, Clone)]
pub struct ConnTrace {
    pub summary: ConnSummary,
    /// The rows, in time order, numbered absolutely (see [`ConnTrace::rows`]).
    rows: Vec<TraceRow>,
    /// Each direction's base for relative numbering (its ISN, or first sequence number).
    bases: [u32; 2],
}

impl ConnTrace {
    /// The ladder's rows, with sequence numbers relative to each direction's ISN (as the demo
    /// and Wireshark show them) or absolute.
    pub fn rows(&self, relative: bool) -> Vec<TraceRow> {
        if !relative {
            return self.rows.clone();
        }
        let side = |name: &str| usize::from(name != NAMES[CLIENT]);
        self.rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                match &mut r.kind {
                    RowKind::Ladder(Row::Segment(s)) => {
                        let d = side(&s.from);
                        s.seq = s.seq.wrapping_sub(self.bases[d]);
                        if let Some(a) = s.ack.as_mut() {
                            *a = a.wrapping_sub(self.bases[1 - d]);
                        }
                        for b in &mut s.sack {
                            b.0 = b.0.wrapping_sub(self.bases[1 - d]);
                            b.1 = b.1.wrapping_sub(self.bases[1 - d]);
                        }
                    }
                    RowKind::Ladder(Row::Folded(f)) => {
                        let d = side(&f.from);
                        f.seq_start = f.seq_start.wrapping_sub(self.bases[d]);
                        f.seq_end = f.seq_end.wrapping_sub(self.bases[d]);
                    }
                    _ => {}
                }
                r
            })
            .collect()
    }

    /// The four-tuple seen from the client.
    pub fn tuple(&self) -> FourTuple {
        FourTuple {
            local: self.summary.client,
            remote: self.summary.server,
        }
    }
}

/// One direction of a connection.
#[derive(Debug)]
struct Dir {
    /// The sequence number of this direction's SYN.
    isn: Option<SeqNum>,
    /// The ISN, or the first sequence number seen.
    base: Option<u32>,
    wscale: Option<u8>,
    syn: bool,
    /// One past the highest sequence number sent.
    max_end: Option<SeqNum>,
    /// The sequence number of this direction's FIN.
    fin: Option<SeqNum>,
    counts: DirCounts,
    /// The next payload byte the decoder wants, and what arrived beyond it.
    next: Option<SeqNum>,
    ooo: BTreeMap<u32, Vec<u8>>,
    ooo_bytes: usize,
    app: AppStream,
    /// The payload cannot be decoded any more (a gap that was never filled).
    app_lost: bool,
    /// TLS application data records and HTTP/2 DATA frames drawn so far.
    bulk_rows: usize,
    fold: Fold,
}

/// A direction's data between handshake and close, counted into one row.
#[derive(Debug, Default, Clone, Copy)]
struct Fold {
    start: Option<Instant>,
    end: Option<Instant>,
    segments: usize,
    bytes: u64,
    retransmitted: usize,
    /// Pure ACKs the other side sent while this side's data flowed.
    acks: usize,
    lo: Option<SeqNum>,
    hi: Option<SeqNum>,
}

impl Dir {
    fn new(side: Side) -> Dir {
        Dir {
            isn: None,
            base: None,
            wscale: None,
            syn: false,
            max_end: None,
            fin: None,
            counts: DirCounts::default(),
            next: None,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            app: AppStream::new(side),
            app_lost: false,
            bulk_rows: 0,
            fold: Fold::default(),
        }
    }
}

/// A connection being followed.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    client: SocketAddr,
    server: SocketAddr,
    dirs: [Dir; 2],
    states: [State; 2],
    handshake_seen: bool,
    /// The server reached ESTABLISHED (or no handshake was seen).
    opened: bool,
    closing: bool,
    ms: Milestones,
    rows: Vec<TraceRow>,
    open_rows: usize,
    close_rows: usize,
    event_rows: usize,
    app_rows: usize,
    elided: [usize; 4],
    active_closer: Option<usize>,
    time_wait: Option<usize>,
    reset: bool,
    http1_requests: u64,
    http1_responses: u64,
    h2_streams: u64,
    h2_frames: u64,
    h2_max_client_stream: u32,
    tls: Option<TlsInfo>,
    /// The server sent a ChangeCipherSpec or encrypted record.
    server_encrypted: bool,
    undecoded_gaps: u64,
    /// FINs the capture missed, known from the ACK that acknowledged them.
    inferred_fins: u64,
    /// The first ack value seen from each side: the base of the other direction when that
    /// direction has not been seen.
    first_ack: [Option<u32>; 2],
}

impl Conn {
    /// A connection whose first captured segment went from `from` to `to` with `flags`.
    pub(crate) fn new(
        id: u64,
        time: Instant,
        from: SocketAddr,
        to: SocketAddr,
        flags: TcpFlags,
    ) -> Conn {
        let syn = flags.contains(TcpFlags::SYN);
        let ack = flags.contains(TcpFlags::ACK);
        // Who opened it: the sender of a SYN, the receiver of a SYN-ACK; otherwise guess the
        // side with the higher (ephemeral) port.
        let from_is_client = match (syn, ack) {
            (true, false) => true,
            (true, true) => false,
            _ => from.port() >= to.port(),
        };
        let (client, server) = if from_is_client {
            (from, to)
        } else {
            (to, from)
        };
        let handshake_seen = syn && !ack;
        let states = if handshake_seen {
            [State::Closed, State::Listen]
        } else if syn {
            [State::SynSent, State::Listen]
        } else {
            [State::Established, State::Established]
        };
        Conn {
            id,
            client,
            server,
            dirs: [Dir::new(Side::Client), Dir::new(Side::Server)],
            states,
            handshake_seen,
            opened: !syn,
            closing: false,
            ms: Milestones {
                first_packet: time.as_micros(),
                last_packet: time.as_micros(),
                ..Milestones::default()
            },
            rows: Vec::new(),
            open_rows: 0,
            close_rows: 0,
            event_rows: 0,
            app_rows: 0,
            elided: [0; 4],
            active_closer: None,
            time_wait: None,
            reset: false,
            http1_requests: 0,
            http1_responses: 0,
            h2_streams: 0,
            h2_frames: 0,
            h2_max_client_stream: 0,
            tls: None,
            server_encrypted: false,
            undecoded_gaps: 0,
            inferred_fins: 0,
            first_ack: [None; 2],
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn last_time(&self) -> Instant {
        Instant::from_micros(self.ms.last_packet)
    }

    pub(crate) fn closed_at(&self) -> Option<Instant> {
        self.ms.closed.map(Instant::from_micros)
    }

    /// Whether a SYN from the client with sequence number `seq` starts a new connection on
    /// this four-tuple (a new ISN, RFC 9293 §3.4.1), rather than repeating the SYN.
    pub(crate) fn is_new_incarnation(&self, from: SocketAddr, seq: u32) -> bool {
        if from != self.client {
            return true;
        }
        self.dirs[CLIENT].isn.is_none_or(|isn| isn.0 != seq)
    }

    fn tuple(&self, d: usize) -> FourTuple {
        if d == CLIENT {
            FourTuple {
                local: self.client,
                remote: self.server,
            }
        } else {
            FourTuple {
                local: self.server,
                remote: self.client,
            }
        }
    }

    fn phase(&self) -> Phase {
        if self.closing {
            Phase::Close
        } else if !self.opened {
            Phase::Open
        } else {
            Phase::Data
        }
    }

    fn set_state(&mut self, time: Instant, side: usize, to: State) {
        let from = self.states[side];
        if from == to {
            return;
        }
        self.states[side] = to;
        if to == State::TimeWait && self.time_wait.is_none() {
            self.time_wait = Some(side);
        }
        let phase = self.phase();
        self.rows.push(TraceRow {
            phase,
            kind: RowKind::Ladder(Row::State(StateRow {
                time,
                host: NAMES[side].to_owned(),
                tuple: self.tuple(side),
                from,
                to,
            })),
        });
    }

    /// Follows one segment from `from`.
    pub(crate) fn segment(&mut self, time: Instant, from: SocketAddr, tcp: &TcpRepr<'_>) {
        let d = usize::from(from != self.client);
        let r = 1 - d;
        let t = time.as_micros();
        self.ms.last_packet = self.ms.last_packet.max(t);
        let flags = tcp.flags;
        let syn = flags.contains(TcpFlags::SYN);
        let fin = flags.contains(TcpFlags::FIN);
        let rst = flags.contains(TcpFlags::RST);
        let has_ack = flags.contains(TcpFlags::ACK);
        let seq = SeqNum(tcp.seq);
        let len = tcp.payload.len();
        let seq_len = tcp.seq_len();

        if has_ack && !rst {
            self.infer_missing_fin(time, d, SeqNum(tcp.ack));
        }

        // Numbering and retransmissions.
        {
            let dir = &mut self.dirs[d];
            if syn {
                if dir.isn.is_some_and(|i| i != seq) {
                    dir.max_end = None;
                }
                dir.isn = Some(seq);
                dir.base = Some(seq.0);
                dir.wscale = tcp.options.window_scale;
                dir.syn = true;
                dir.next = Some(seq + 1);
            }
            dir.base.get_or_insert(seq.0);
        }
        if has_ack {
            self.first_ack[d].get_or_insert(tcp.ack);
        }
        let end = seq + seq_len;
        let retransmission = seq_len > 0 && self.dirs[d].max_end.is_some_and(|m| seq.lt(m));
        if seq_len > 0 {
            let m = &mut self.dirs[d].max_end;
            *m = Some(m.map_or(end, |m| m.max(end)));
        }
        let window = {
            let (me, peer) = (&self.dirs[d], &self.dirs[r]);
            match (syn, me.syn && peer.syn, me.wscale, peer.wscale) {
                (false, true, Some(s), Some(_)) => u32::from(tcp.window) << s.min(14),
                _ => u32::from(tcp.window),
            }
        };
        let zero_window = window == 0 && !rst && !syn;
        {
            let c = &mut self.dirs[d].counts;
            c.segments += 1;
            c.data_segments += u64::from(len > 0);
            c.bytes += len as u64;
            c.retransmissions += u64::from(retransmission);
            c.zero_windows += u64::from(zero_window);
            c.resets += u64::from(rst);
        }

        // Milestones.
        if syn && !has_ack && d == CLIENT {
            self.ms.syn.get_or_insert(t);
        }
        if syn && has_ack && d == SERVER {
            self.ms.syn_ack.get_or_insert(t);
        }
        if len > 0 {
            if d == CLIENT {
                self.ms.first_request.get_or_insert(t);
            } else {
                self.ms.first_response.get_or_insert(t);
                if !retransmission {
                    self.ms.last_response = Some(t);
                }
            }
        }
        if (fin || rst) && self.ms.close_start.is_none() {
            self.ms.close_start = Some(t);
            if fin {
                self.active_closer = Some(d);
            }
        }

        // The row of the segment, in the phase it belongs to (before the states move on:
        // the segment that completes the handshake is part of it).
        let phase_before = self.phase();
        if fin || rst {
            self.closing = true;
        }
        let phase = if self.closing {
            Phase::Close
        } else {
            phase_before
        };
        let notable = retransmission || zero_window || rst;
        let keep = match phase {
            Phase::Open => {
                self.open_rows += 1;
                self.open_rows <= OPEN_ROWS
            }
            Phase::Close => {
                self.close_rows += 1;
                self.close_rows <= CLOSE_ROWS
            }
            Phase::Data => {
                if notable {
                    self.event_rows += 1;
                }
                notable && self.event_rows <= EVENT_ROWS
            }
        };
        if phase == Phase::Data {
            self.fold(time, d, tcp, retransmission);
        }
        self.sender_states(time, d, tcp);
        if keep {
            let sack = tcp.options.sack[..usize::from(tcp.options.sack_len.min(4))]
                .iter()
                .map(|b| (b.left, b.right))
                .collect();
            self.rows.push(TraceRow {
                phase,
                kind: RowKind::Ladder(Row::Segment(SegmentRow {
                    time,
                    from: NAMES[d].to_owned(),
                    to: NAMES[r].to_owned(),
                    tuple: self.tuple(d),
                    flags,
                    seq: tcp.seq,
                    ack: has_ack.then_some(tcp.ack),
                    len,
                    window,
                    options: tcp.options,
                    sack,
                    retransmission,
                    lost: false,
                })),
            });
        } else {
            let i = match phase {
                Phase::Open => 0,
                Phase::Close => 1,
                Phase::Data => 2,
            };
            if phase != Phase::Data || notable {
                self.elided[i] += 1;
            }
        }

        self.receiver_states(time, d, tcp);

        // Payload, in order, to the decoders.
        if len > 0 {
            self.payload(time, d, seq, tcp.payload);
        }
    }

    /// A segment from `d` acknowledging one past everything the other side sent, which sent
    /// no FIN in the capture: that FIN was sent and the capture lost it (RFC 9293 §3.4: a FIN
    /// takes one sequence number). It is drawn as a note, and both sides' states move as if
    /// it had been seen.
    fn infer_missing_fin(&mut self, time: Instant, d: usize, ack: SeqNum) {
        let r = 1 - d;
        let Some(m) = self.dirs[r].max_end else {
            return;
        };
        if self.dirs[r].fin.is_some() || ack != m + 1 || !self.states[r].is_synchronized() {
            return;
        }
        self.inferred_fins += 1;
        self.dirs[r].fin = Some(m);
        self.dirs[r].max_end = Some(m + 1);
        self.closing = true;
        if self.ms.close_start.is_none() {
            self.ms.close_start = Some(time.as_micros());
            self.active_closer = Some(r);
        }
        self.rows.push(TraceRow {
            phase: Phase::Close,
            kind: RowKind::Elided(ElidedRow {
                time,
                text: format!(
                    "({}'s FIN is not in the capture: the {} acknowledges it)",
                    NAMES[r], NAMES[d]
                ),
            }),
        });
        match self.states[r] {
            State::Established | State::SynReceived => self.set_state(time, r, State::FinWait1),
            State::CloseWait => self.set_state(time, r, State::LastAck),
            _ => {}
        }
        match self.states[d] {
            State::Established | State::SynReceived => self.set_state(time, d, State::CloseWait),
            State::FinWait1 => self.set_state(time, d, State::Closing),
            State::FinWait2 => self.set_state(time, d, State::TimeWait),
            _ => {}
        }
    }

    /// The sender's state changes: they happen as it sends (RFC 9293 §3.10.1, §3.10.4,
    /// §3.10.7.1), so they are drawn before the segment.
    fn sender_states(&mut self, time: Instant, d: usize, tcp: &TcpRepr<'_>) {
        let flags = tcp.flags;
        let syn = flags.contains(TcpFlags::SYN);
        let fin = flags.contains(TcpFlags::FIN);
        let rst = flags.contains(TcpFlags::RST);
        let has_ack = flags.contains(TcpFlags::ACK);
        if rst {
            if self.states[d] != State::Listen {
                self.set_state(time, d, State::Closed);
            }
            self.reset = true;
            return;
        }
        if syn && !has_ack && self.states[d] == State::Closed {
            self.set_state(time, d, State::SynSent);
        }
        if syn && has_ack && matches!(self.states[d], State::Listen | State::Closed) {
            self.set_state(time, d, State::SynReceived);
        }
        if fin {
            match self.states[d] {
                State::Established | State::SynReceived => self.set_state(time, d, State::FinWait1),
                State::CloseWait => self.set_state(time, d, State::LastAck),
                _ => {}
            }
            let fin_seq = SeqNum(tcp.seq) + tcp.payload.len() + usize::from(syn);
            self.dirs[d].fin.get_or_insert(fin_seq);
        }
    }

    /// The receiver's state changes as the segment arrives (RFC 9293 §3.10.7): its ACK field
    /// first, then a SYN or FIN.
    fn receiver_states(&mut self, time: Instant, d: usize, tcp: &TcpRepr<'_>) {
        let r = 1 - d;
        let flags = tcp.flags;
        let syn = flags.contains(TcpFlags::SYN);
        let fin = flags.contains(TcpFlags::FIN);
        let rst = flags.contains(TcpFlags::RST);
        let has_ack = flags.contains(TcpFlags::ACK);
        let ack = SeqNum(tcp.ack);
        let t = time.as_micros();
        if rst {
            if !matches!(self.states[r], State::Listen | State::TimeWait) {
                self.set_state(time, r, State::Closed);
            }
        } else {
            // A listener's SYN-RECEIVED is drawn when it answers with its SYN-ACK (a RST
            // instead, "connection refused", leaves it listening).
            if syn && has_ack && self.states[r] == State::SynSent {
                self.set_state(time, r, State::Established);
            }
            if has_ack && !syn {
                // The receiver's SYN or FIN acknowledged.
                if self.states[r] == State::SynReceived
                    && self.dirs[r].isn.is_some_and(|i| ack.ge(i + 1))
                {
                    self.set_state(time, r, State::Established);
                    if r == SERVER {
                        self.ms.handshake_ack.get_or_insert(t);
                    }
                    self.opened = true;
                }
                if let Some(f) = self.dirs[r].fin {
                    if ack.ge(f + 1) {
                        match self.states[r] {
                            State::FinWait1 => self.set_state(time, r, State::FinWait2),
                            State::Closing => self.set_state(time, r, State::TimeWait),
                            State::LastAck => self.set_state(time, r, State::Closed),
                            _ => {}
                        }
                    }
                }
            }
            if fin {
                match self.states[r] {
                    State::Established | State::SynReceived => {
                        self.set_state(time, r, State::CloseWait)
                    }
                    State::FinWait1 => self.set_state(time, r, State::Closing),
                    State::FinWait2 => self.set_state(time, r, State::TimeWait),
                    _ => {}
                }
            }
        }
        // A server we never saw open: the first segment after the handshake opens it.
        if !self.opened && self.states[SERVER] == State::Established {
            self.opened = true;
        }
        let done = |s: State| matches!(s, State::Closed | State::TimeWait);
        if self.ms.closed.is_none()
            && self.ms.close_start.is_some()
            && done(self.states[CLIENT])
            && (done(self.states[SERVER]) || (self.reset && self.states[SERVER] == State::Listen))
        {
            self.ms.closed = Some(t);
        }
    }

    /// Counts a segment between handshake and close into its direction's summary row.
    fn fold(&mut self, time: Instant, d: usize, tcp: &TcpRepr<'_>, retransmission: bool) {
        let flags = tcp.flags;
        let plain = flags.0 & !(TcpFlags::ACK.0 | TcpFlags::PSH.0) == 0;
        if !tcp.payload.is_empty() && plain {
            let f = &mut self.dirs[d].fold;
            let s0 = SeqNum(tcp.seq);
            let s1 = s0 + tcp.payload.len();
            f.start.get_or_insert(time);
            f.end = Some(time);
            f.segments += 1;
            f.bytes += tcp.payload.len() as u64;
            f.retransmitted += usize::from(retransmission);
            f.lo = Some(f.lo.map_or(s0, |l| l.min(s0)));
            f.hi = Some(f.hi.map_or(s1, |h| h.max(s1)));
        } else if tcp.payload.is_empty() && flags == TcpFlags::ACK {
            let f = &mut self.dirs[1 - d].fold;
            if f.segments > 0 {
                f.acks += 1;
                f.end = Some(time);
            }
        }
    }

    /// Hands payload to the direction's decoder in sequence order.
    fn payload(&mut self, time: Instant, d: usize, seq: SeqNum, data: &[u8]) {
        if self.dirs[d].app_lost {
            return;
        }
        let next = *self.dirs[d].next.get_or_insert(seq);
        let end = seq + data.len();
        if end.le(next) {
            return; // all seen before
        }
        if seq.gt(next) {
            // A gap: hold it until the bytes before it come.
            let dir = &mut self.dirs[d];
            if dir.ooo_bytes + data.len() > MAX_OOO {
                dir.app_lost = true;
                dir.ooo.clear();
                dir.ooo_bytes = 0;
                self.undecoded_gaps += 1;
                return;
            }
            let key = seq.0.wrapping_sub(dir.base.unwrap_or(seq.0));
            if let Some(old) = dir.ooo.insert(key, data.to_vec()) {
                dir.ooo_bytes -= old.len();
            }
            dir.ooo_bytes += data.len();
            return;
        }
        let skip = next.since(seq);
        self.deliver(time, d, &data[skip..]);
        self.dirs[d].next = Some(end);
        // What was held and is now in order.
        loop {
            let dir = &mut self.dirs[d];
            let base = dir.base.unwrap_or(0);
            let Some((&key, _)) = dir.ooo.iter().next() else {
                break;
            };
            let s = SeqNum(base.wrapping_add(key));
            let next = dir.next.unwrap_or(s);
            if s.gt(next) {
                break;
            }
            let Some(chunk) = dir.ooo.remove(&key) else {
                break;
            };
            dir.ooo_bytes -= chunk.len();
            let e = s + chunk.len();
            if e.gt(next) {
                let skip = next.since(s);
                self.deliver(time, d, &chunk[skip..]);
                self.dirs[d].next = Some(e);
            }
        }
    }

    fn deliver(&mut self, time: Instant, d: usize, bytes: &[u8]) {
        let mut events = Vec::new();
        self.dirs[d].app.feed(bytes, &mut events);
        for e in events {
            self.app_event(time, d, e);
        }
    }

    fn app_event(&mut self, time: Instant, d: usize, e: AppEvent) {
        let t = time.as_micros();
        let mut bulk = false;
        match &e {
            AppEvent::Http1(Http1Event::Request {
                method,
                upgrade_h2c,
                ..
            }) => {
                self.http1_requests += 1;
                let head = method == "HEAD";
                self.dirs[SERVER].app.expect_response(head, *upgrade_h2c);
            }
            AppEvent::Http1(Http1Event::Response { status, .. })
                if *status >= 200 || *status == 101 =>
            {
                self.http1_responses += 1;
            }
            AppEvent::Http1(Http1Event::SwitchToH2) if d == CLIENT => {
                self.dirs[SERVER].app.switch_to_h2();
            }
            AppEvent::H2(h2::H2Event::Frame(f)) => {
                self.h2_frames += 1;
                let h = f.header;
                if d == CLIENT
                    && h.kind == h2::kind::HEADERS
                    && h.stream % 2 == 1
                    && h.stream > self.h2_max_client_stream
                {
                    self.h2_max_client_stream = h.stream;
                    self.h2_streams += 1;
                }
                bulk = h.kind == h2::kind::DATA;
            }
            AppEvent::H2(h2::H2Event::Preface) if d == CLIENT => {
                self.dirs[SERVER].app.switch_to_h2();
            }
            AppEvent::Tls(te) => {
                let info = self.tls.get_or_insert_with(TlsInfo::default);
                match te {
                    TlsEvent::Record(h) => {
                        let i = usize::from(h.content_type.saturating_sub(20)).min(3);
                        if d == CLIENT {
                            info.client_records[i] += 1;
                        } else {
                            info.server_records[i] += 1;
                        }
                        match (d, h.content_type) {
                            (SERVER, tls::content::CHANGE_CIPHER_SPEC)
                            | (SERVER, tls::content::APPLICATION_DATA) => {
                                self.server_encrypted = true;
                            }
                            (CLIENT, tls::content::APPLICATION_DATA)
                                if self.server_encrypted && self.ms.tls_done.is_none() =>
                            {
                                self.ms.tls_done = Some(t);
                            }
                            _ => {}
                        }
                        bulk = h.content_type == tls::content::APPLICATION_DATA;
                    }
                    TlsEvent::Handshake { kind, hello } => {
                        if *kind == tls::handshake::CLIENT_HELLO && d == CLIENT {
                            info.client_hellos += 1;
                            if let Some(h) = hello {
                                info.sni = h.sni.clone().or(info.sni.take());
                                info.alpn_offered = h.alpn.clone();
                            }
                            self.ms.client_hello.get_or_insert(t);
                        }
                        if *kind == tls::handshake::SERVER_HELLO && d == SERVER {
                            info.server_hellos += 1;
                            if let Some(h) = hello {
                                info.version = Some(tls::version_name(h.chosen_version()));
                                if let Some(a) = h.alpn.first() {
                                    info.alpn = Some(a.clone());
                                }
                            }
                        }
                    }
                    TlsEvent::Lost => {}
                }
            }
            _ => {}
        }
        let Some(text) = e.label() else {
            return;
        };
        if bulk {
            self.dirs[d].bulk_rows += 1;
            if self.dirs[d].bulk_rows > BULK_APP_ROWS {
                self.elided[3] += 1;
                return;
            }
        }
        self.app_rows += 1;
        if self.app_rows > APP_ROWS {
            self.elided[3] += 1;
            return;
        }
        let phase = self.phase();
        self.rows.push(TraceRow {
            phase,
            kind: RowKind::App(AppRow {
                time,
                from: NAMES[d].to_owned(),
                to: NAMES[1 - d].to_owned(),
                text,
            }),
        });
    }

    /// The connection's numbers and ladder, as far as the capture shows it.
    pub(crate) fn finish(mut self) -> ConnTrace {
        // The summary rows of the data between handshake and close.
        for d in [CLIENT, SERVER] {
            let f = self.dirs[d].fold;
            let Some(start) = f.start else {
                continue;
            };
            let row = FoldedRow {
                start,
                end: f.end.unwrap_or(start),
                from: NAMES[d].to_owned(),
                to: NAMES[1 - d].to_owned(),
                tuple: self.tuple(d),
                segments: f.segments,
                seq_start: f.lo.map_or(0, |s| s.0),
                seq_end: f.hi.map_or(0, |s| s.0),
                bytes_sent: f.bytes,
                retransmitted: f.retransmitted,
                lost: 0,
                acks: f.acks,
                acks_lost: 0,
                retransmit_events: 0,
                congestion_events: 0,
            };
            self.rows.push(TraceRow {
                phase: Phase::Data,
                kind: RowKind::Ladder(Row::Folded(row)),
            });
        }
        let last = Instant::from_micros(self.ms.last_packet);
        let what = [
            "segments of the handshake",
            "segments of the close",
            "retransmitted, zero-window or reset segments",
            "payload annotations (HTTP messages, HTTP/2 frames, TLS records)",
        ];
        for (i, n) in self.elided.iter().enumerate() {
            if *n > 0 {
                self.rows.push(TraceRow {
                    phase: [Phase::Open, Phase::Close, Phase::Data, Phase::Data][i],
                    kind: RowKind::Elided(ElidedRow {
                        time: last,
                        text: format!("… {n} more {} not drawn", what[i]),
                    }),
                });
            }
        }
        // Time order; a folded run first among rows of its instant (its data came before
        // what followed it), rows of equal time otherwise in the order they were made.
        self.rows
            .sort_by_key(|r| (r.time(), !matches!(r.kind, RowKind::Ladder(Row::Folded(_)))));
        for d in [CLIENT, SERVER] {
            self.undecoded_gaps += u64::from(!self.dirs[d].ooo.is_empty());
        }

        let ms = self.ms;
        let rtt = match (ms.syn, ms.handshake_ack) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        let cost = |a: Option<u64>, b: Option<u64>| -> Option<PhaseCost> {
            let (a, b) = (a?, b?);
            let us = b.checked_sub(a)?;
            Some(PhaseCost {
                us,
                rtts: rtt.filter(|&r| r > 0).map(|r| us as f64 / r as f64),
            })
        };
        let costs = Costs {
            handshake: cost(ms.syn, ms.handshake_ack),
            tls: cost(ms.client_hello, ms.tls_done),
            request_to_first_byte: cost(ms.first_request, ms.first_response)
                .filter(|_| ms.first_response >= ms.first_request),
            response: cost(ms.first_response, ms.last_response),
            close: cost(ms.close_start, ms.closed),
            total: cost(Some(ms.first_packet), Some(ms.last_packet)).unwrap_or_default(),
        };
        let c2s = self.dirs[CLIENT].counts;
        let s2c = self.dirs[SERVER].counts;
        let protocol = match self.dirs[CLIENT].app.protocol() {
            Protocol::Unknown => self.dirs[SERVER].app.protocol(),
            p => p,
        };
        let bases = [
            self.dirs[CLIENT]
                .base
                .or(self.first_ack[SERVER])
                .unwrap_or(0),
            self.dirs[SERVER]
                .base
                .or(self.first_ack[CLIENT])
                .unwrap_or(0),
        ];
        let summary = ConnSummary {
            id: self.id,
            client: self.client,
            server: self.server,
            handshake_seen: self.handshake_seen,
            rtt_us: rtt,
            milestones: ms,
            costs,
            client_state: self.states[CLIENT].name().to_owned(),
            server_state: self.states[SERVER].name().to_owned(),
            active_closer: self.active_closer.map(|s| NAMES[s].to_owned()),
            time_wait: self.time_wait.map(|s| NAMES[s].to_owned()),
            reset: self.reset,
            client_to_server: c2s,
            server_to_client: s2c,
            retransmissions: c2s.retransmissions + s2c.retransmissions,
            zero_windows: c2s.zero_windows + s2c.zero_windows,
            resets: c2s.resets + s2c.resets,
            protocol,
            http1_requests: self.http1_requests,
            http1_responses: self.http1_responses,
            h2_streams: self.h2_streams,
            h2_frames: self.h2_frames,
            tls: self.tls,
            undecoded_gaps: self.undecoded_gaps,
            inferred_fins: self.inferred_fins,
        };
        ConnTrace {
            summary,
            rows: self.rows,
            bases,
        }
    }
}
