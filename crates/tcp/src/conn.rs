//! One TCP connection: the transmission control block and its state machine (RFC 9293 §3.3,
//! event processing §3.10).
//!
//! Methods fall in four groups, as in quinn-proto:
//! - getters: [`state`](Connection::state), [`tuple`](Connection::tuple), [`error`](Connection::error), ...
//! - inputs: [`handle_segment`](Connection::handle_segment) and
//!   [`handle_timeout`](Connection::handle_timeout), each with the current `now`;
//! - application commands: [`send`](Connection::send), [`recv`](Connection::recv),
//!   [`shutdown`](Connection::shutdown), [`close`](Connection::close), [`abort`](Connection::abort);
//! - outputs, polled after any input or command: [`poll_transmit`](Connection::poll_transmit)
//!   until it returns `None`, then [`poll_timeout`](Connection::poll_timeout), then
//!   [`poll_event`](Connection::poll_event).
//!
//! Time passed in must never go backwards.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};

use synack_wire::tcp::fill_checksum_with_payload_sum;
use synack_wire::{FastOpen, SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamp};

use crate::assembler::Assembler;
use crate::buffer::RingBuffer;
use crate::cc::{initial_window, Algorithm, CongestionControl, Controller};
use crate::config::{Config, Ecn, Keepalive};
use crate::fastopen::{ClientOutcome, ClientPlan};
use crate::rtt::RttEstimator;
use crate::segbuf::{SegmentBuf, SliceBuf};
use crate::seq::SeqNum;
use crate::state::{ConnectionError, FourTuple, RecvError, SendError, State};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TimerTable};

/// What a connection reports besides segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The state changed.
    StateChanged { from: State, to: State },
    /// A segment is being sent again.
    Retransmit {
        seq: SeqNum,
        len: usize,
        cause: RetransmitCause,
    },
    /// The congestion window or slow-start threshold changed.
    Congestion { cwnd: usize, ssthresh: usize },
}

/// Why a segment is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetransmitCause {
    /// The retransmission timer expired (RFC 6298 §5.4).
    Timeout,
    /// Three duplicate ACKs (RFC 5681 §3.2) or a partial ACK in recovery (RFC 6582).
    FastRetransmit,
    /// SACK loss recovery (RFC 6675).
    Sack,
    /// A tail loss probe sent again the last segment (RFC 8985 §7.3).
    TailLossProbe,
}

pub(crate) mod mtuprobe;
mod pacing;
mod prr;
mod timewait;
use pacing::RateState;
use prr::Prr;
pub use timewait::TimeWait;

/// How soon an ACK is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AckDue {
    None,
    Delayed,
    Now,
}

/// How one write hands its bytes over ([`Connection::send_with`]), as the flags of Linux's
/// `sendmsg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendFlags {
    /// More follows at once (`MSG_MORE`): no push mark at the end of this write, and a short
    /// last segment waits, as under `TCP_CORK`, until the next ACK or push.
    pub more: bool,
    /// The end of a record (`MSG_EOR`): no later write's bytes share a segment with this
    /// one's, sent first or again.
    pub eor: bool,
    /// Close the write-queue buffer after this write however short it is, with no push mark
    /// of its own (Linux closes an skb when its page fragments run out, as a run of
    /// `MSG_ZEROCOPY` sends does): later bytes never share a segment with it.
    pub seal: bool,
}

/// One buffer of the write queue as Linux builds it (an skb), by where it ends: a write fills
/// the last unsent buffer up to the size goal, then starts new ones. Segments take their PSH
/// flag from here (RFC 9293 §3.9.1, "PUSH"): a segment that reaches the end of a pushed buffer
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendMark {
    end: SeqNum,
    /// The end of a write (but `MSG_MORE`): PSH on the segment that ends here, sent first or
    /// again.
    push: bool,
    /// A buffer a write filled to the size goal: PSH on the first transmission of the segment
    /// that ends here (a retransmission of it, cut out of a larger one, has none in Linux).
    filled: bool,
    /// No segment, new or sent again, spans this end (`MSG_EOR`, or a sealed buffer).
    hard: bool,
}

/// The write queue's buffers ([`SendMark`]), allocated only while some are kept: an idle
/// connection holds one word for them. Reads of none see an empty queue.
#[derive(Debug, Default)]
// Boxed on purpose: one word while empty, not a `VecDeque`'s four.
#[allow(clippy::box_collection)]
struct SendMarks(Option<Box<VecDeque<SendMark>>>);

static NO_MARKS: VecDeque<SendMark> = VecDeque::new();

impl core::ops::Deref for SendMarks {
    type Target = VecDeque<SendMark>;
    #[inline]
    fn deref(&self) -> &VecDeque<SendMark> {
        self.0.as_deref().unwrap_or(&NO_MARKS)
    }
}

impl core::ops::DerefMut for SendMarks {
    #[inline]
    fn deref_mut(&mut self) -> &mut VecDeque<SendMark> {
        self.0.get_or_insert_default()
    }
}

/// The storage of a write queue that holds nothing, kept by the endpoint for the next
/// connection that writes (as drained rings are): a write then allocates nothing.
pub(crate) type MarksStorage = Box<VecDeque<SendMark>>;

/// Most empty write-queue storages an endpoint keeps.
pub(crate) const SPARE_MARKS_MAX: usize = 256;

impl SendMarks {
    /// The queue's storage, once it holds nothing (the connection keeps one word).
    #[inline]
    fn take_empty(&mut self) -> Option<MarksStorage> {
        if self.0.as_ref().is_some_and(|q| q.is_empty()) {
            self.0.take()
        } else {
            None
        }
    }
}

/// `TCP_NOTSENT_LOWAT` in 4 bytes (`u32::MAX`: none).
fn lowat_mark(lowat: Option<usize>) -> u32 {
    lowat.map_or(u32::MAX, |l| l.min(u32::MAX as usize - 1) as u32)
}

/// A `Duration` in 8 bytes instead of 16: nanoseconds, exact below 584 years (longer ones
/// saturate there, which no timer reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nanos(u64);

impl Nanos {
    const ZERO: Nanos = Nanos(0);

    #[inline]
    fn new(d: Duration) -> Nanos {
        // As `d.as_nanos()` saturated below `u64::MAX`, without 128-bit arithmetic.
        Nanos(crate::time::duration_nanos(d).min(u64::MAX - 1))
    }

    #[inline]
    fn get(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

/// An `Option<Duration>` in 8 bytes (see [`Nanos`]; `u64::MAX` is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OptNanos(u64);

impl OptNanos {
    #[inline]
    fn new(d: Option<Duration>) -> OptNanos {
        OptNanos(d.map_or(u64::MAX, |d| Nanos::new(d).0))
    }

    #[inline]
    fn get(self) -> Option<Duration> {
        (self.0 != u64::MAX).then(|| Duration::from_nanos(self.0))
    }
}

/// The 4-tuple as a connection keeps it: 12 bytes for IPv4 (two `SocketAddrV4`s), an IPv6 one
/// boxed (flow labels and scope ids kept), instead of 64 bytes inline for either.
#[derive(Debug, Clone)]
enum TupleStore {
    V4 {
        local: SocketAddrV4,
        remote: SocketAddrV4,
    },
    Other(Box<FourTuple>),
}

impl TupleStore {
    fn new(t: FourTuple) -> TupleStore {
        match (t.local, t.remote) {
            (SocketAddr::V4(local), SocketAddr::V4(remote)) => TupleStore::V4 { local, remote },
            _ => TupleStore::Other(Box::new(t)),
        }
    }

    #[inline]
    fn get(&self) -> FourTuple {
        match self {
            TupleStore::V4 { local, remote } => FourTuple {
                local: SocketAddr::V4(*local),
                remote: SocketAddr::V4(*remote),
            },
            TupleStore::Other(t) => **t,
        }
    }

    #[inline]
    fn is(&self, t: &FourTuple) -> bool {
        match (self, t.local, t.remote) {
            (TupleStore::V4 { local, remote }, SocketAddr::V4(l), SocketAddr::V4(r)) => {
                *local == l && *remote == r
            }
            (TupleStore::Other(mine), ..) => **mine == *t,
            _ => false,
        }
    }
}

/// What the sender is doing, for Linux's chronographs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chrono {
    Idle,
    Busy,
    RwndLimited,
}

#[derive(Debug, Clone, Copy)]
struct ChronoStats {
    kind: Chrono,
    since: Instant,
    /// Microseconds (whole: spans between `Instant`s), 8 bytes each instead of a `Duration`'s 16.
    busy: u64,
    rwnd_limited: u64,
}

/// At most this many write-queue buffers are tracked; past it a write joins the last one
/// (a writer of one-byte records cannot make the connection hold unbounded bookkeeping).
const MAX_SEND_MARKS: usize = 4096;

/// What Linux charges a socket's send buffer for one write-queue skb beyond its data
/// (`truesize`: the `sk_buff`, its header room and shared info), in bytes: about 1.25 KiB.
pub const SKB_TRUESIZE_OVERHEAD: usize = 1280;

/// Events waiting for the endpoint, which drains them after every call, in order, none lost.
/// Nobody may want them (an endpoint that does not trace): `off` skips the queueing, and the
/// queue then never allocates (an idle connection keeps 16 bytes for it: the queue is made on
/// the first event and dropped once drained).
#[derive(Debug, Default)]
struct EventQueue {
    // Boxed on purpose: one word while empty, not a `VecDeque`'s four.
    #[allow(clippy::box_collection)]
    queue: Option<Box<VecDeque<Event>>>,
    off: bool,
}

impl EventQueue {
    #[inline]
    fn push(&mut self, e: Event) {
        if !self.off {
            self.queue.get_or_insert_default().push_back(e);
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<Event> {
        let q = self.queue.as_mut()?;
        let e = q.pop_front();
        if q.is_empty() {
            self.queue = None;
        }
        e
    }

    fn is_empty(&self) -> bool {
        self.queue.is_none()
    }
}

/// HyStart++ (RFC 9406 §4.2): leave slow start when the round trip grows, i.e. when a queue
/// starts to build, before slow start overfills it. Rounds are delimited by `SND.NXT`; the RTT
/// samples are the echoed timestamps of each ACK. (The conservative slow start phase of §4.2 is
/// folded into going straight to congestion avoidance.)
#[derive(Debug, Clone, Copy)]
struct HyStart {
    window_end: Option<SeqNum>,
    /// Round minima in microseconds (samples are whole milliseconds), [`NO_RTT`]: none yet.
    last_round_min: u64,
    current_round_min: u64,
    samples: u32,
}

/// No RTT sample in a round yet.
const NO_RTT: u64 = u64::MAX;

impl Default for HyStart {
    fn default() -> HyStart {
        HyStart {
            window_end: None,
            last_round_min: NO_RTT,
            current_round_min: NO_RTT,
            samples: 0,
        }
    }
}

/// RFC 9406 §4.3 constants.
const HS_MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const HS_MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const HS_N_RTT_SAMPLE: u32 = 8;

impl HyStart {
    /// One ACK in slow start; returns true when slow start should end.
    fn on_ack(&mut self, ack: SeqNum, snd_nxt: SeqNum, rtt: Option<Duration>) -> bool {
        if self.window_end.is_none_or(|end| ack.ge(end)) {
            self.last_round_min = self.current_round_min;
            self.current_round_min = NO_RTT;
            self.samples = 0;
            self.window_end = Some(snd_nxt);
        }
        let Some(rtt) = rtt else { return false };
        let us = crate::time::duration_micros(rtt).min(NO_RTT - 1);
        self.current_round_min = self.current_round_min.min(us);
        self.samples += 1;
        if self.samples < HS_N_RTT_SAMPLE || self.last_round_min == NO_RTT {
            return false;
        }
        let (cur, last) = (
            Duration::from_micros(self.current_round_min),
            Duration::from_micros(self.last_round_min),
        );
        let thresh = (last / 8).clamp(HS_MIN_RTT_THRESH, HS_MAX_RTT_THRESH);
        cur >= last + thresh
    }
}

/// The SACK scoreboard of the sender (RFC 6675 §3): ranges above `SND.UNA` the peer holds.
#[derive(Debug, Default, Clone)]
struct Scoreboard {
    /// Sorted, disjoint `[left, right)` ranges.
    blocks: Blocks,
}

/// The scoreboard's ranges, allocated only while the peer SACKs something: an idle connection
/// keeps one word for them. Reads of none see an empty list.
#[derive(Debug, Default, Clone)]
// Boxed on purpose: one word while empty, not a `Vec`'s three.
#[allow(clippy::box_collection)]
struct Blocks(Option<Box<Vec<(SeqNum, SeqNum)>>>);

static NO_BLOCKS: Vec<(SeqNum, SeqNum)> = Vec::new();

impl core::ops::Deref for Blocks {
    type Target = Vec<(SeqNum, SeqNum)>;
    #[inline]
    fn deref(&self) -> &Vec<(SeqNum, SeqNum)> {
        self.0.as_deref().unwrap_or(&NO_BLOCKS)
    }
}

impl core::ops::DerefMut for Blocks {
    #[inline]
    fn deref_mut(&mut self) -> &mut Vec<(SeqNum, SeqNum)> {
        self.0.get_or_insert_default()
    }
}

impl<'a> IntoIterator for &'a Blocks {
    type Item = &'a (SeqNum, SeqNum);
    type IntoIter = core::slice::Iter<'a, (SeqNum, SeqNum)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Blocks {
    /// Free the list once it holds nothing.
    #[inline]
    fn tidy(&mut self) {
        if self.0.as_ref().is_some_and(|b| b.is_empty()) {
            self.0 = None;
        }
    }
}

impl Scoreboard {
    fn add(&mut self, left: SeqNum, right: SeqNum) {
        if !left.lt(right) {
            return;
        }
        let (mut l, mut r) = (left, right);
        self.blocks.retain(|&(s, e)| {
            if e.lt(l) || s.gt(r) {
                true
            } else {
                l = l.min(s);
                r = r.max(e);
                false
            }
        });
        let at = self
            .blocks
            .iter()
            .position(|&(s, _)| s.gt(l))
            .unwrap_or(self.blocks.len());
        self.blocks.insert(at, (l, r));
        if self.blocks.len() > 64 {
            // Keep the blocks nearest SND.UNA: the next retransmissions are decided there.
            self.blocks.pop();
        }
    }

    fn trim(&mut self, una: SeqNum) {
        if self.blocks.is_empty() {
            return;
        }
        self.blocks.retain_mut(|b| {
            if b.1.le(una) {
                return false;
            }
            b.0 = b.0.max(una);
            true
        });
        self.blocks.tidy();
    }

    /// The end of the SACKed range holding `seq`, if any.
    fn sacked_until(&self, seq: SeqNum) -> Option<SeqNum> {
        self.blocks
            .iter()
            .find(|&&(s, e)| seq.in_range(s, e))
            .map(|b| b.1)
    }

    fn highest(&self) -> Option<SeqNum> {
        self.blocks.last().map(|b| b.1)
    }

    fn sacked_bytes(&self) -> usize {
        self.blocks.iter().map(|&(s, e)| e.since(s)).sum()
    }

    fn clear(&mut self) {
        self.blocks = Blocks::default();
    }
}

/// The smallest MSS a peer may make us use (Linux's `tcp_min_snd_mss`): with timestamps,
/// 36 bytes of data still fit in each segment.
pub const MIN_SND_MSS: usize = 48;

/// Out-of-order data may make the receive ring's storage grow this far beyond twice what it
/// holds (see `process_text`).
const OOO_GROWTH_ALLOWANCE: usize = 64 * 1024;

/// DupThresh never grows past this many segments (Linux's `tcp_max_reordering`).
pub const MAX_REORDERING: usize = 300;

/// The congestion state before a fast recovery and the timestamp of its first
/// retransmission: an ACK of that segment echoing an older timestamp acknowledges the original
/// transmission, so the retransmission was spurious (RFC 3522 §3, the Eifel detection) and
/// the window reduction is undone (RFC 4015 §3).
#[derive(Debug, Clone)]
struct Undo {
    cc: Controller,
    /// The first retransmitted sequence number.
    seq: SeqNum,
    /// Our TSval when recovery began (its retransmission goes out then).
    tsval: u32,
}

/// A TCP connection.
pub struct Connection {
    tuple: TupleStore,
    state: State,
    /// Opened from LISTEN (RFC 9293 §3.10.7.4: a RST in SYN-RECEIVED returns it there).
    passive: bool,

    // Send sequence space, RFC 9293 §3.3.1.
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// The highest sequence number sent so far (`SND.NXT` may go back on a timeout).
    snd_max: SeqNum,
    snd_wnd: usize,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    max_snd_wnd: usize,
    /// The shift the peer's windows are scaled by.
    snd_wscale: u8,

    // Receive sequence space.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// The right edge of the widest window advertised so far (RFC 9293 §3.8.6.2.2: it never
    /// moves left). Meaningful once `RCV.NXT` is known; set to it then.
    rcv_adv: SeqNum,
    /// Bytes the receive ring holds beyond the configured buffer, for the rounding of scaled
    /// windows: keeping the right edge in place means rounding the window field up, and each
    /// such rounding may push the edge up to one unit of our scale further while data sits
    /// unread (RFC 7323 Appendix F). The slack is what those roundings may spend.
    rcv_slack: usize,
    /// The shift applied to the windows we advertise.
    rcv_wscale: u8,
    /// Our window-scale offer, kept until the peer's SYN says whether it applies.
    wscale_offer: Option<u8>,
    /// Both SYNs carried window scale (RFC 7323 §2.2).
    window_scaling_agreed: bool,

    /// Payload bytes per full segment we send (options already taken off).
    snd_mss: usize,
    /// Bytes of TCP options and payload a segment may carry: the peer's MSS, bounded by our MTU
    /// and the path MTU (RFC 9293 §3.7.1: the options of each segment come out of it).
    seg_budget: usize,
    /// The MSS we announce on our SYN: the MTU less the IP and TCP headers.
    adv_mss: usize,
    /// Payload bytes per full segment we expect from the peer (options taken off).
    rcv_mss: usize,
    /// The path MTU and RFC 4821 probing (`conn::mtuprobe`); boxed, and only where a setting
    /// asks for them.
    path: Option<Box<mtuprobe::PathMtu>>,

    ts_enabled: bool,
    ts_offer: bool,
    ts_recent: u32,
    ts_offset: u32,
    last_ack_sent: SeqNum,
    sack_enabled: bool,
    sack_offer: bool,

    send_buf: RingBuffer,
    /// The sequence number of `send_buf[0]`.
    send_buf_seq: SeqNum,
    /// The application shut the write side; a FIN follows the data.
    fin_queued: bool,
    recv_buf: RingBuffer,
    assembler: Assembler,
    /// Sequence number of a FIN received out of order.
    ooo_fin: Option<SeqNum>,
    fin_received: bool,
    /// The application closed the read side too: new data now draws a RST.
    read_closed: bool,

    timers: TimerTable,
    rtt: RttEstimator,
    /// The segment being timed for RTT (RFC 6298 §3, Karn): its end and when it was sent.
    rtt_timed: Option<(SeqNum, Instant)>,
    /// Consecutive retransmission timeouts.
    rto_count: u32,
    syn_count: u32,
    persist_backoff: u32,
    keepalive_probes: u32,

    cc: Controller,
    cc_algorithm: Algorithm,
    /// The configured initial window in segments (`u32`: a few fit in any window).
    iw_segments: u32,
    dupacks: u32,
    /// RFC 6582 `recover`: set on entering recovery, recovery ends when it is acknowledged.
    recover: Option<SeqNum>,
    /// The highest sequence number sent when recovery or a timeout last began: duplicate ACKs
    /// start a new recovery only once `SND.UNA` has passed it (RFC 6582 §3.2 step 2 and §4.1).
    recover_mark: SeqNum,
    /// Partial ACKs in this NewReno recovery: only the first restarts the retransmission
    /// timer (RFC 6582 §4.2, the "Impatient" variant), so a window with many losses falls back
    /// to a timeout and slow start instead of one repair per round trip.
    partial_acks: u32,
    hystart: HyStart,
    /// A tail loss probe is due (its timer fired).
    tlp_due: bool,
    /// `SND.MAX` when the last probe went out: one probe per episode (RFC 8985 §7.2).
    tlp_high: Option<SeqNum>,
    /// Window inflation during NewReno recovery (RFC 5681 §3.2 steps 3–4).
    inflation: usize,
    /// A segment to send again before anything new.
    retransmit_at: Option<(SeqNum, RetransmitCause)>,
    scoreboard: Scoreboard,
    /// RFC 6675 `HighRxt`: the highest sequence number retransmitted in this recovery.
    high_rxt: SeqNum,
    /// Proportional Rate Reduction (RFC 6937) during a SACK recovery, and pacing
    /// (`Config::pacing`, `SO_MAX_PACING_RATE`) when on: boxed, only while either is.
    rate: RateState,
    /// The end of the highest segment sent again, by any cause: below it, what is neither
    /// acknowledged nor SACKed is out a second time (Linux's `retrans_out`).
    rexmit_high: SeqNum,
    /// DupThresh, in segments: 3 (RFC 5681 §3.2) until the path shows reordering, then the
    /// depth of the deepest reordering seen (as Linux's `tp->reordering`), at most
    /// [`MAX_REORDERING`].
    reordering: usize,
    /// What a fast recovery changed, kept to undo it if the retransmission proves spurious
    /// (boxed: only during a recovery).
    undo: Option<Box<Undo>>,
    /// Fast recoveries undone because the original segment arrived after all.
    spurious_retransmits: u64,
    /// Wait a reordering window before recovering (`Config::reorder_window`).
    reorder_window: bool,
    /// SND.UNA when the reordering window started: the hole it waits on.
    reorder_head: Option<SeqNum>,
    /// Out-of-order segments dropped because keeping them would have grown the receive ring
    /// far beyond what it holds.
    ooo_dropped: u32,
    /// When the last challenge or out-of-window ACK was owed (RFC 5961 §7 rate limit).
    /// Microseconds; `u64::MAX`: never.
    last_oow_ack: u64,
    challenge_ack_interval: Nanos,
    /// The ACK owed now is a challenge (the endpoint's global limit applies).
    challenge_pending: bool,
    challenges_limited: u32,

    ack_due: AckDue,
    bytes_unacked: usize,
    /// The peer's segment size as seen: the largest payload received (Linux's `rcv_mss`
    /// estimate), for "acknowledge at least every second full-sized segment".
    rcv_mss_seen: u32,
    /// The application read since the last ACK: a window update may be due.
    read_since_ack: bool,
    /// The urgent byte the peer last marked (URG), while not yet read past.
    urg_seq: Option<SeqNum>,
    /// The end of the last less-than-full segment sent (Minshall's variant of Nagle).
    snd_sml: SeqNum,
    /// The write queue's buffers over the send buffer, oldest first (see [`SendMark`]).
    send_marks: SendMarks,
    /// `TCP_CORK`: a short last segment waits until uncorked (or the persist timer's probe).
    cork: bool,
    /// The last write said `MSG_MORE`: a short last segment waits for the next ACK or push.
    more_hold: bool,
    /// Send what a cork holds once (`TCP_NODELAY` set while corked).
    push_once: bool,
    /// `TCP_NOTSENT_LOWAT`: at most about this many bytes queued and not yet sent.
    /// `u32::MAX`: none (marks beyond 4 GiB act as that, beyond any send buffer).
    notsent_lowat: u32,
    /// Busy and receive-window-limited time (see `update_chrono`).
    chrono: ChronoStats,
    /// The persist timer fired on data a cork or `MSG_MORE` held with nothing in flight:
    /// send it now, pushed (Linux's `tcp_write_wakeup`).
    wakeup_due: bool,
    /// A reset to send, and then the TCB is gone.
    send_rst: bool,
    /// That reset answers a segment: `<SEQ=SND.UNA><CTL=RST>`, no ACK.
    rst_as_reply: bool,
    /// A reply to an unacceptable segment that is not ours to answer with the TCB's numbers
    /// (RFC 9293 §3.10.7.3: `<SEQ=SEG.ACK><CTL=RST>`).
    rst_reply: Option<SeqNum>,
    /// Send a zero-window probe or keepalive probe (`<SEQ=SND.UNA-1>`, no data).
    probe_due: bool,

    error: Option<ConnectionError>,
    /// The last soft error an ICMP message reported (RFC 5927 §4, RFC 1122 §4.2.3.9): reported
    /// instead of `TimedOut` if the connection later gives up.
    soft_error: Option<ConnectionError>,
    events: EventQueue,

    nagle: bool,
    delayed_ack: OptNanos,
    user_timeout: OptNanos,
    max_retransmissions: u32,
    syn_retries: u32,
    synack_retries: u32,
    msl: Nanos,
    /// Boxed: most connections run without.
    keepalive: Option<Box<Keepalive>>,
    fin_wait2_timeout: Nanos,
    /// The application no longer holds this connection.
    orphaned: bool,

    // Linux's quick-ACK mode (`Config::quick_ack`).
    quick_ack: bool,
    /// ACKs still to send at once (Linux's `icsk_ack.quick`).
    quick: u32,
    /// The ACK timeout estimate (Linux's `icsk_ack.ato`); zero until the first data arrives.
    ato: Nanos,
    /// When data last arrived.
    lrcvtime: Instant,
    /// Interactive: we sent data within `ato` of receiving some, so ACKs wait to ride it.
    pingpong: bool,

    // TCP Fast Open (RFC 7413).
    /// Client: what the first SYN carries; taken when it goes out.
    fo_plan: Option<Box<ClientPlan>>,
    /// Client: the SYN waits for the first `send` (Linux's `TCP_FASTOPEN_CONNECT`).
    defer_syn: bool,
    /// Client: the first SYN carried a Fast Open option (`Some(experimental)`).
    syn_fastopen: Option<bool>,
    /// Client: bytes of data the first SYN carried.
    syn_data: u32,
    /// Data rode the SYN and was taken with it: the SYN-ACK acknowledged all of ours
    /// (client), or the SYN's data was accepted (server). Linux's `TCPI_OPT_SYN_DATA`.
    syn_data_acked: bool,
    /// Server: made by a Fast Open SYN: in the accept queue, readable and writable while still
    /// in SYN-RECEIVED (RFC 7413 §4.2.2).
    fast_open_child: bool,
    /// Server: the option of the first SYN-ACK (a cookie for the client).
    synack_fast_open: Option<Box<FastOpen>>,
    /// Client: what the SYN-ACK said, for the endpoint's cookie cache.
    fo_outcome: Option<Box<ClientOutcome>>,
    /// Our TSval on the first SYN: a SYN-ACK must echo one from then on (as Linux checks).
    syn_tsval: Option<u32>,
    /// Client: the end of the SYN's data the SYN-ACK did not take, while it is sent again.
    fo_resend_end: Option<SeqNum>,
    /// A duplicate to report in the next ACK's first SACK block (RFC 2883).
    dsack: Option<(SeqNum, SeqNum)>,

    // Explicit Congestion Notification (RFC 3168).
    ecn_mode: Ecn,
    /// Our SYN asked for ECN (ECE and CWR set, RFC 3168 §6.1.1).
    ecn_setup_sent: bool,
    /// ECN was agreed: new data goes out ECN-capable, ECE and CWR mean congestion.
    ecn: bool,
    /// A CE mark arrived: our ACKs carry ECE until the peer's CWR (RFC 3168 §6.1.3).
    ecn_echo: bool,
    /// The window was reduced for an ECE: the next new data segment carries CWR.
    ecn_cwr_due: bool,
    /// ECE is answered once per window: not again before this is acknowledged.
    ecn_high: Option<SeqNum>,
    /// The segment being handled came with CE (set by the endpoint around the call).
    rx_ce: bool,
    /// The segment `poll_transmit` just wrote is to be sent ECN-capable (ECT(0)).
    tx_ect: bool,
    /// The segment size to cut the super-segment `poll_transmit_tso` just wrote at (0: a
    /// plain segment).
    tx_gso: u16,
    /// While [`handle_segment_placed`](Self::handle_segment_placed) runs: the segment's
    /// payload is already in the receive ring at the in-order end (written and summed by
    /// [`place_payload`](Self::place_payload)), so the seventh step commits it without copying
    /// it again. (It came at RCV.NXT: what the window leaves of it is a prefix of what was
    /// placed.)
    placed: bool,

    /// Fill in the TCP checksum of what we send (off when the device computes it or needs
    /// none: [`set_tx_checksum`](Self::set_tx_checksum)).
    tx_checksum: bool,

    // Counters, as Linux's `tcp_info` reports them.
    stats: ConnStats,
}

/// What a connection counted, for reporting (Linux's `TCP_INFO` has the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Segments the peer acknowledged (the SYN or SYN-ACK counts as one; data in a SYN rides
    /// it), estimated in MSS-sized segments (Linux's `tcpi_delivered`).
    pub delivered: u32,
    /// Segments sent again, SYNs included (`tcpi_total_retrans`).
    pub total_retrans: u32,
    /// Payload bytes acknowledged by the peer (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Payload bytes received in order (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Segments received and sent (`tcpi_segs_in`, `tcpi_segs_out`).
    pub segs_in: u32,
    pub segs_out: u32,
    /// When in-order data last arrived (`tcpi_last_data_recv` counts from it).
    pub last_data_recv: Option<Instant>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("tuple", &self.tuple())
            .field("state", &self.state)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish_non_exhaustive()
    }
}

/// The window-scale shift that lets `buffer` bytes be advertised (RFC 7323 §2.3), at most 14.
pub fn wscale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (buffer >> shift) > 65535 {
        shift += 1;
    }
    shift
}

/// The MSS we announce for an MTU: the MTU less the IP and TCP fixed headers.
pub fn mss_for_mtu(mtu: usize, ipv6: bool) -> usize {
    mtu.saturating_sub(if ipv6 { 60 } else { 40 })
        .clamp(64, 65495)
}

impl Connection {
    pub(crate) fn new(
        config: &Config,
        tuple: FourTuple,
        iss: SeqNum,
        ts_offset: u32,
        now: Instant,
    ) -> Self {
        let ipv6 = tuple.local.is_ipv6();
        let rcv_mss = config.announced_mss(ipv6);
        // Until the peer's SYN says otherwise, RFC 9293 §3.7.1's default send MSS.
        let snd_mss = if ipv6 { 1220 } else { 536 };
        let cc = config
            .congestion
            .controller(snd_mss, initial_window(snd_mss, config.initial_window));
        let wscale_offer = config.window_scaling.then(|| {
            config
                .window_scale
                .map_or_else(|| wscale_for(config.recv_buffer), |s| s.min(14))
        });
        let rcv_slack = wscale_offer.map_or(0, |s| {
            let unit = 1usize << s;
            (config.recv_buffer / 16)
                .next_multiple_of(unit)
                .max(2 * unit)
        });
        Connection {
            tuple: TupleStore::new(tuple),
            state: State::Closed,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            snd_wscale: 0,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            rcv_slack,
            rcv_wscale: 0,
            wscale_offer,
            window_scaling_agreed: false,
            snd_mss,
            seg_budget: snd_mss,
            adv_mss: rcv_mss,
            rcv_mss,
            path: mtuprobe::PathMtu::for_config(config, ipv6),
            ts_enabled: false,
            ts_offer: config.timestamps,
            ts_recent: 0,
            ts_offset,
            last_ack_sent: SeqNum(0),
            sack_enabled: false,
            sack_offer: config.sack,
            send_buf: RingBuffer::new(config.send_buffer),
            send_buf_seq: iss + 1,
            fin_queued: false,
            recv_buf: RingBuffer::new(config.recv_buffer + rcv_slack),
            assembler: Assembler::default(),
            ooo_fin: None,
            fin_received: false,
            read_closed: false,
            timers: TimerTable::default(),
            rtt: {
                let mut r = RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto);
                r.set_linux(config.linux_rto);
                r
            },
            rtt_timed: None,
            rto_count: 0,
            syn_count: 0,
            persist_backoff: 0,
            keepalive_probes: 0,
            cc,
            cc_algorithm: config.congestion,
            iw_segments: config.initial_window.min(u32::MAX as usize) as u32,
            dupacks: 0,
            recover: None,
            recover_mark: iss,
            partial_acks: 0,
            hystart: HyStart::default(),
            tlp_due: false,
            tlp_high: None,
            inflation: 0,
            retransmit_at: None,
            scoreboard: Scoreboard::default(),
            rate: if config.pacing {
                RateState::with_pacer()
            } else {
                RateState::default()
            },
            high_rxt: iss,
            rexmit_high: iss,
            reordering: 3,
            undo: None,
            spurious_retransmits: 0,
            reorder_window: config.reorder_window,
            reorder_head: None,
            ooo_dropped: 0,
            last_oow_ack: u64::MAX,
            challenge_ack_interval: Nanos::new(config.challenge_ack_interval),
            challenge_pending: false,
            challenges_limited: 0,
            ack_due: AckDue::None,
            bytes_unacked: 0,
            rcv_mss_seen: 536,
            read_since_ack: false,
            urg_seq: None,
            snd_sml: iss,
            send_marks: SendMarks::default(),
            cork: false,
            more_hold: false,
            push_once: false,
            notsent_lowat: lowat_mark(config.notsent_lowat),
            chrono: ChronoStats {
                kind: Chrono::Idle,
                since: now,
                busy: 0,
                rwnd_limited: 0,
            },
            wakeup_due: false,
            send_rst: false,
            rst_as_reply: false,
            rst_reply: None,
            probe_due: false,
            error: None,
            soft_error: None,
            events: EventQueue::default(),
            nagle: config.nagle,
            delayed_ack: OptNanos::new(config.delayed_ack),
            user_timeout: OptNanos::new(config.user_timeout),
            max_retransmissions: config.max_retransmissions,
            syn_retries: config.syn_retries,
            synack_retries: config.synack_retries.unwrap_or(config.syn_retries),
            msl: Nanos::new(config.msl),
            keepalive: config.keepalive.map(Box::new),
            fin_wait2_timeout: Nanos::new(config.fin_wait2_timeout),
            orphaned: false,
            quick_ack: config.quick_ack,
            quick: 0,
            ato: Nanos::ZERO,
            lrcvtime: now,
            pingpong: false,
            fo_plan: None,
            defer_syn: false,
            syn_fastopen: None,
            syn_data: 0,
            syn_data_acked: false,
            fast_open_child: false,
            synack_fast_open: None,
            fo_outcome: None,
            syn_tsval: None,
            fo_resend_end: None,
            dsack: None,
            ecn_mode: config.ecn,
            ecn_setup_sent: false,
            ecn: false,
            ecn_echo: false,
            ecn_cwr_due: false,
            ecn_high: None,
            rx_ce: false,
            tx_ect: false,
            tx_gso: 0,
            placed: false,
            tx_checksum: true,
            stats: ConnStats::default(),
        }
    }

    /// An active open (RFC 9293 §3.10.1): the TCB enters SYN-SENT and its SYN is ready to send.
    pub fn connect(
        config: &Config,
        now: Instant,
        tuple: FourTuple,
        iss: SeqNum,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(config, tuple, iss, ts_offset, now);
        c.start_connect(config, now);
        c
    }

    /// A passive open: a SYN arrived at a listener (RFC 9293 §3.10.7.2). The TCB enters
    /// SYN-RECEIVED with `RCV.NXT = SEG.SEQ+1` and its SYN-ACK ready to send.
    pub fn accept(
        config: &Config,
        now: Instant,
        tuple: FourTuple,
        iss: SeqNum,
        ts_offset: u32,
        syn: &TcpRepr<'_>,
    ) -> Connection {
        let mut c = Connection::new(config, tuple, iss, ts_offset, now);
        c.start_accept(syn);
        c
    }

    /// A fresh TCB in place of this one (the endpoint reuses boxes: one copy, not a move per
    /// call level). Start it with [`start_connect`](Self::start_connect) or
    /// [`start_accept`](Self::start_accept).
    pub(crate) fn reset(
        &mut self,
        config: &Config,
        now: Instant,
        tuple: FourTuple,
        iss: SeqNum,
        ts_offset: u32,
    ) {
        *self = Connection::new(config, tuple, iss, ts_offset, now);
    }

    pub(crate) fn start_connect(&mut self, config: &Config, now: Instant) {
        self.set_state(State::SynSent);
        if let Some(t) = config.connect_timeout {
            self.timers.set(Timer::Connect, now + t);
        }
    }

    pub(crate) fn start_accept(&mut self, syn: &TcpRepr<'_>) {
        self.passive = true;
        // The listener was in LISTEN; the new TCB is born there (no event for it).
        self.state = State::Listen;
        self.irs = SeqNum(syn.seq);
        self.rcv_nxt = self.irs + 1;
        self.rcv_adv = self.rcv_nxt;
        self.negotiate(&syn.options);
        // RFC 3168 §6.1.1: an "ECN-setup SYN" has ECE and CWR; we agree (ECE in the SYN-ACK)
        // unless ECN is off here.
        self.ecn = self.ecn_mode != Ecn::Off && syn.flags.contains(TcpFlags::ECE | TcpFlags::CWR);
        self.snd_wnd = syn.window as usize; // never scaled on a SYN (RFC 7323 §2.2)
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.set_state(State::SynReceived);
    }

    /// A passive open rebuilt from a SYN cookie (RFC 4987 §3.6): `syn` is the SYN as the
    /// cookie remembers it, our SYN-ACK (ISS `iss`, window `window`) went out statelessly, and
    /// the handshake's ACK is next. The TCB is in SYN-RECEIVED with that SYN-ACK outstanding.
    pub(crate) fn start_accept_cookie(&mut self, syn: &TcpRepr<'_>, window: usize) {
        self.start_accept(syn);
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_nxt;
        self.syn_count = 1;
        self.rcv_adv = self.rcv_nxt + window;
        self.last_ack_sent = self.rcv_nxt;
    }

    // ---------------------------------------------------------------------------------------
    // Getters.

    pub fn state(&self) -> State {
        self.state
    }

    #[inline]
    pub fn tuple(&self) -> FourTuple {
        self.tuple.get()
    }

    /// Whether this connection's tuple is `t` (without building it).
    #[inline]
    pub fn has_tuple(&self, t: &FourTuple) -> bool {
        self.tuple.is(t)
    }

    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<ConnectionError> {
        self.error
    }

    /// Bytes ready for [`recv`](Self::recv).
    pub fn recv_available(&self) -> usize {
        self.recv_buf.len()
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        if self.state.may_send() && !self.fin_queued {
            self.send_buf.growable_free()
        } else {
            0
        }
    }

    /// Bytes queued but not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.send_buf.len()
    }

    /// The peer has closed its side and every byte was read.
    pub fn is_read_finished(&self) -> bool {
        self.fin_received && self.recv_buf.is_empty()
    }

    /// Whether a `recv` would return something other than `Ok(0)`.
    pub fn is_readable(&self) -> bool {
        !self.recv_buf.is_empty()
            || self.fin_received
            || self.error.is_some()
            || self.state == State::Closed
    }

    /// Whether a `send` would accept bytes or fail (rather than return `Ok(0)`). Under
    /// `TCP_NOTSENT_LOWAT`, once less than half the mark is left unsent (Linux's
    /// `tcp_stream_memory_free` as `poll` asks it).
    pub fn is_writable(&self) -> bool {
        let lowat_ok = self.notsent_lowat().is_none_or(|l| 2 * self.unsent() < l);
        (self.send_capacity() > 0 && lowat_ok) || !self.state.may_send() || self.error.is_some()
    }

    #[inline]
    fn notsent_lowat(&self) -> Option<usize> {
        (self.notsent_lowat != u32::MAX).then_some(self.notsent_lowat as usize)
    }

    /// `TCP_NOTSENT_LOWAT` (`None`: no limit): a write queues new buffers only while fewer
    /// than `lowat` bytes wait unsent, and the socket polls writable below half of it.
    pub fn set_notsent_lowat(&mut self, lowat: Option<usize>) {
        self.notsent_lowat = lowat_mark(lowat);
    }

    /// How much of a `want`-byte write `TCP_NOTSENT_LOWAT` lets in, as Linux's
    /// `tcp_sendmsg` does: it fills buffers of the size goal (half the peer's largest window,
    /// within 64 KiB, in whole segments), sends what the windows allow as each fills, and
    /// opens a new buffer only while fewer than `lowat` bytes wait unsent.
    fn lowat_room(&self, want: usize) -> usize {
        let Some(lowat) = self.notsent_lowat() else {
            return want;
        };
        let mss = self.snd_mss.max(1);
        let goal = ((self.max_snd_wnd / 2).min(65536) / mss * mss).max(mss);
        let flight = self.snd_max.since(self.snd_una);
        let by_rwnd = self.snd_wnd.saturating_sub(flight);
        // Linux counts the congestion window in segments.
        let cwnd = self.cc.cwnd() / mss * mss;
        let mut room_now = cwnd.saturating_sub(flight).min(by_rwnd);
        let mut notsent = self.unsent();
        let mut tail = if notsent == 0 {
            0
        } else {
            (notsent - 1) % goal + 1
        };
        let mut taken = 0;
        while taken < want {
            let take = if tail > 0 && tail < goal {
                (goal - tail).min(want - taken)
            } else if notsent < lowat {
                tail = 0;
                goal.min(want - taken)
            } else {
                break;
            };
            taken += take;
            tail += take;
            notsent += take;
            if tail >= goal {
                let sent = room_now.min(notsent);
                room_now -= sent;
                notsent -= sent;
                tail -= sent.min(tail);
            }
        }
        taken
    }

    /// The handshake has finished (or the connection got past it).
    pub fn is_established(&self) -> bool {
        self.state.is_synchronized()
    }

    pub fn iss(&self) -> SeqNum {
        self.iss
    }

    pub fn irs(&self) -> SeqNum {
        self.irs
    }

    /// The sequence number just past the last byte queued (Linux's `write_seq`): once
    /// `snd_una` reaches it, everything written so far is acknowledged.
    /// The highest sequence number sent so far (RFC 6675's `HighData`, before a FIN).
    pub fn snd_max(&self) -> SeqNum {
        self.snd_max
    }

    pub fn write_seq(&self) -> SeqNum {
        self.fin_seq()
    }

    pub fn snd_una(&self) -> SeqNum {
        self.snd_una
    }

    pub fn snd_nxt(&self) -> SeqNum {
        self.snd_nxt
    }

    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv_nxt
    }

    /// The send MSS in payload bytes per segment.
    pub fn mss(&self) -> usize {
        self.snd_mss
    }

    /// The congestion window sending is bounded by now: during a SACK fast recovery PRR's
    /// (RFC 6937; what Linux reports as `tcpi_snd_cwnd` then), else the controller's.
    pub fn cwnd(&self) -> usize {
        self.send_cwnd()
    }

    /// Linux's `tcpi_sacked`: segments above `SND.UNA` the peer SACKed.
    pub fn sacked_out(&self) -> u32 {
        let mss = self.snd_mss.max(1);
        self.scoreboard
            .blocks
            .iter()
            .map(|&(l, r)| r.since(l).div_ceil(mss) as u32)
            .sum()
    }

    /// Linux's `tcpi_lost`: segments taken for lost. In a fast recovery, the holes below the
    /// highest SACKed byte (RFC 6675 §4 with RACK's view that all were sent before it, RFC
    /// 8985 §6.2), retransmitted or not, until acknowledged; after a timeout, all not SACKed
    /// (RFC 6675 §5.1); else none.
    pub fn lost_out(&self) -> u32 {
        let end = match self.ca_state() {
            3 => match self.scoreboard.highest() {
                Some(h) => h,
                None => return 0,
            },
            4 => self.snd_max,
            _ => return 0,
        };
        let mss = self.snd_mss.max(1);
        let mut cursor = self.snd_una;
        let mut lost = 0u32;
        for &(l, r) in &self.scoreboard.blocks {
            if l.gt(cursor) && cursor.lt(end) {
                lost += l.min(end).since(cursor).div_ceil(mss) as u32;
            }
            cursor = cursor.max(r);
        }
        if end.gt(cursor) {
            lost += end.since(cursor).div_ceil(mss) as u32;
        }
        lost
    }

    pub fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }

    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    pub fn timestamps_enabled(&self) -> bool {
        self.ts_enabled
    }

    /// DupThresh in segments: 3, or the deepest reordering the path has shown since.
    pub fn reordering(&self) -> usize {
        self.reordering
    }

    /// Out-of-order segments dropped rather than grow the receive ring to hold them.
    pub fn ooo_dropped(&self) -> u64 {
        u64::from(self.ooo_dropped)
    }

    /// Under the endpoint's memory pressure (`Config::max_buffer_bytes` reached), the rings
    /// keep the storage they have (at least 4 KiB each, so the connection still moves) and
    /// grow no more: writes wait for acknowledgments to free room, the window opens no
    /// further, and data beyond what the ring holds is dropped, to be sent again.
    pub(crate) fn set_memory_pressure(&mut self, on: bool) {
        const FLOOR: usize = 4096;
        let send = on.then(|| self.send_buf.allocated().max(FLOOR));
        let recv = on.then(|| self.recv_buf.allocated().max(FLOOR));
        self.send_buf.set_limit(send);
        self.recv_buf.set_limit(recv);
    }

    /// Bytes of ring storage allocated for this connection (send and receive).
    pub fn buffer_bytes(&self) -> usize {
        self.send_buf.allocated() + self.recv_buf.allocated()
    }

    /// Fast retransmissions found spurious by their ACK's timestamp (RFC 3522), whose window
    /// reduction was undone (with the reordering window, reordering rarely gets that far).
    pub fn spurious_retransmits(&self) -> u64 {
        self.spurious_retransmits
    }

    /// The peer's most recent timestamp kept for PAWS (RFC 7323 §4.3, `TS.Recent`).
    pub fn ts_recent(&self) -> u32 {
        self.ts_recent
    }

    pub fn sack_enabled(&self) -> bool {
        self.sack_enabled
    }

    /// The shifts in use: (ours, the peer's).
    pub fn window_scales(&self) -> (u8, u8) {
        (self.rcv_wscale, self.snd_wscale)
    }

    /// The peer's window, in bytes.
    pub fn send_window(&self) -> usize {
        self.snd_wnd
    }

    pub fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers.get(t)
    }

    pub fn is_orphaned(&self) -> bool {
        self.orphaned
    }

    pub fn nodelay(&self) -> bool {
        !self.nagle
    }

    /// Data rode the SYN and was taken with it: the SYN-ACK acknowledged all the data our SYN
    /// carried (an active open), or the SYN's data was accepted (a passive one). Linux reports
    /// this as `TCPI_OPT_SYN_DATA`.
    pub fn syn_data_acked(&self) -> bool {
        self.syn_data_acked
    }

    /// What the connection counted.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Linux's congestion-avoidance state (`tcpi_ca_state`): 0 open, 1 disorder (duplicate
    /// ACKs or SACKs seen), 3 recovery (fast recovery), 4 loss (after a timeout).
    pub fn ca_state(&self) -> u8 {
        if self.rto_count > 0 && self.snd_una.lt(self.recover_mark) {
            4
        } else if self.recover.is_some() {
            3
        } else if self.dupacks > 0 || !self.scoreboard.blocks.is_empty() {
            1
        } else {
            0
        }
    }

    /// ECN was agreed in the handshake (RFC 3168 §6.1.1).
    pub fn ecn_enabled(&self) -> bool {
        self.ecn
    }

    /// Whether the segment [`poll_transmit`](Self::poll_transmit) wrote last goes out
    /// ECN-capable, ECT(0) in its IP header: new data of a connection that agreed to ECN (RFC
    /// 3168 §6.1.2; not SYNs, pure ACKs or retransmissions, §6.1.4–6.1.5).
    pub fn last_segment_ect(&self) -> bool {
        self.tx_ect
    }

    /// The segment size the super-segment [`poll_transmit_tso`](Self::poll_transmit_tso)
    /// wrote last is to be cut at by the device (TSO), or 0 for a plain segment.
    pub fn last_segment_gso(&self) -> u16 {
        self.tx_gso
    }

    /// The IP header of the next segment handed to [`handle_segment`](Self::handle_segment)
    /// said Congestion Experienced (RFC 3168 §5).
    pub fn set_rx_ce(&mut self, ce: bool) {
        self.rx_ce = ce;
    }

    /// Consecutive retransmission timeouts (`tcpi_retransmits`, `tcpi_backoff`).
    pub fn rto_count(&self) -> u32 {
        self.rto_count
    }

    /// Made by a Fast Open SYN (RFC 7413 §4.2.2): accepted at once, readable and writable
    /// while still in SYN-RECEIVED.
    pub fn is_fast_open_child(&self) -> bool {
        self.fast_open_child
    }

    /// An active open whose SYN waits for the first [`send`](Self::send), to carry its data
    /// (Linux's `TCP_FASTOPEN_CONNECT`).
    pub fn is_syn_deferred(&self) -> bool {
        self.defer_syn
    }

    /// How many bytes of data the SYN of this active open can carry, if it is still to be
    /// sent and Fast Open lets data ride it (a cookie is cached, or none is needed): the
    /// server's cached MSS (or ours) less 40 bytes for options, as Linux's
    /// `tcp_send_syn_data` leaves room for any a middlebox adds. `None` otherwise.
    pub fn fast_open_syn_room(&self) -> Option<usize> {
        let plan = self.fo_plan.as_deref().copied().filter(|p| p.data)?;
        (self.state == State::SynSent && self.syn_count == 0).then(|| {
            let clamp = plan.mss.map_or(self.adv_mss, usize::from);
            self.adv_mss.min(clamp).saturating_sub(40)
        })
    }

    /// An active open with Fast Open: what its first SYN carries, and whether it waits for
    /// data. Only a SYN that may carry data waits (Linux sends a cookie request at once).
    pub(crate) fn set_fast_open_plan(&mut self, plan: ClientPlan, defer: bool) {
        self.fo_plan = Some(Box::new(plan));
        self.defer_syn = defer && plan.data;
    }

    /// What the SYN-ACK taught about the server, once.
    pub(crate) fn take_fast_open_outcome(&mut self) -> Option<ClientOutcome> {
        self.fo_outcome.take().map(|o| *o)
    }

    /// The option of the first SYN-ACK of a passive open: a cookie the client asked for (or
    /// a fresh one for a wrong cookie), RFC 7413 §4.1.2.
    pub(crate) fn set_synack_fast_open(&mut self, fo: Option<FastOpen>) {
        self.synack_fast_open = fo.map(Box::new);
    }

    /// A passive open from a Fast Open SYN (RFC 7413 §4.2.2): the SYN's data is taken now,
    /// so the SYN-ACK acknowledges it and the application may read it before the handshake
    /// completes.
    pub(crate) fn start_accept_fast_open(&mut self, now: Instant, syn: &TcpRepr<'_>) {
        self.fast_open_child = true;
        let data = syn.payload;
        if data.is_empty() {
            return;
        }
        let n = self.recv_buf.write_at(0, data);
        self.recv_buf.commit(n);
        self.rcv_nxt += n;
        self.stats.bytes_received += n as u64;
        self.stats.last_data_recv = Some(now);
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt);
        self.syn_data_acked = n > 0;
        self.rcv_mss_seen = self.rcv_mss_seen.max(n.min(self.rcv_mss) as u32);
        self.note_data_received(now);
    }

    // ---------------------------------------------------------------------------------------
    // Application commands.

    /// Queue bytes to send; returns how many fit (`Ok(0)` when the buffer is full).
    /// Bytes may be queued in SYN-SENT and SYN-RECEIVED (RFC 9293 §3.10.2) and leave with the
    /// handshake's last ACK.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.send_with(data, SendFlags::default())
    }

    /// [`send`](Self::send) with `sendmsg`'s flags: whether the write ends pushed
    /// (`MSG_MORE`), ends a record (`MSG_EOR`), or closes its buffer (see [`SendFlags`]).
    pub fn send_with(&mut self, data: &[u8], flags: SendFlags) -> Result<usize, SendError> {
        if let Some(e) = self.error {
            return Err(SendError::Connection(e));
        }
        if !self.state.may_send() || self.fin_queued {
            return Err(SendError::InvalidState);
        }
        // A SYN held for data (TCP_FASTOPEN_CONNECT) goes with the first write, even an empty
        // one, as Linux's `tcp_sendmsg_fastopen`.
        self.defer_syn = false;
        self.push_once = false;
        self.path_refresh();
        let start = self.fin_seq();
        let data = &data[..self.lowat_room(data.len())];
        let n = self.send_buf.push(data);
        self.mark_write(start, n, flags);
        // MSG_MORE holds a short tail for this write only: the next write, ACK or push
        // decides afresh.
        self.more_hold = flags.more && n > 0;
        Ok(n)
    }

    /// Record a write of `n` bytes from `start` in the write queue's buffers, as Linux's
    /// `tcp_sendmsg` builds skbs: the last buffer, if some of it is unsent and it ends no
    /// record, takes bytes up to the size goal (two segments, as Linux's GSO size goal works
    /// out on a TUN path) and loses its push mark; then new buffers follow. A buffer a write
    /// fills goes out pushed, and so does the last one at the end of the write unless
    /// `MSG_MORE` said more follows (Linux's `tcp_push`, `tcp_mark_push`).
    fn mark_write(&mut self, start: SeqNum, n: usize, flags: SendFlags) {
        if n == 0 {
            return;
        }
        // Before the handshake the segment size is not known: what is written then is one
        // buffer (Linux's SYN-data skb, or a write that waited for the connection).
        let goal = if self.state.is_synchronized() {
            self.size_goal()
        } else {
            n
        };
        let end = start + n;
        let mut pos = start;
        let mut first = true;
        while pos.lt(end) {
            let crowded = self.send_marks.len() >= MAX_SEND_MARKS;
            let sent_edge = self.snd_max.max(self.send_buf_seq);
            let prev_end = match self.send_marks.len() {
                0 | 1 => self.send_buf_seq,
                k => self.send_marks[k - 2].end,
            };
            let mut take = 0;
            if let Some(m) = self.send_marks.back_mut() {
                if m.end == pos && (crowded || (!m.hard && m.end.gt(sent_edge))) {
                    let unsent = m.end.since(prev_end.max(sent_edge));
                    let room = if crowded {
                        end.since(pos)
                    } else {
                        goal.saturating_sub(unsent)
                    };
                    if room > 0 {
                        if first {
                            m.push = false;
                        }
                        take = room.min(end.since(pos));
                        m.end += take;
                    }
                }
            }
            if take == 0 {
                take = goal.min(end.since(pos));
                self.send_marks.push_back(SendMark {
                    end: pos + take,
                    push: false,
                    filled: false,
                    hard: false,
                });
            }
            pos += take;
            first = false;
            if pos.lt(end) {
                // A buffer this write filled goes out pushed. Where half the peer's largest
                // window is less than two segments (the size goal is cut to it), only once
                // more than that half was written since the last push (Linux's
                // `forced_push`); a larger window pushes each two-segment buffer, as Linux's
                // segments on a TUN path show.
                // (A passive open's Linux socket keeps the handshake ACK's window unscaled
                // as its `max_window`: there, every buffer.)
                let half = if self.passive {
                    0
                } else {
                    self.max_snd_wnd / 2
                };
                let forced = half >= 2 * self.snd_mss.max(1) || pos.gt(self.pushed_seq() + half);
                if let Some(m) = self.send_marks.back_mut() {
                    m.filled = forced;
                }
            }
        }
        if let Some(m) = self.send_marks.back_mut() {
            if !flags.more {
                m.push = true;
            }
            if flags.eor || flags.seal {
                m.hard = true;
            }
        }
    }

    /// Where the write queue was last marked for a push (Linux's `pushed_seq`): the end of the
    /// last buffer pushed, else of what the peer acknowledged.
    fn pushed_seq(&self) -> SeqNum {
        let last = self.send_marks.iter().rev().find(|m| m.push || m.filled);
        last.map_or(self.send_buf_seq.max(self.iss + 1), |m| m.end)
    }

    /// The size a write-queue buffer grows to (Linux's `tcp_xmit_size_goal`): two segments,
    /// but no more than half the largest window the peer offered (`tcp_bound_to_half_wnd`),
    /// in whole segments, and at least one.
    fn size_goal(&self) -> usize {
        if let Some(goal) = self.unoffloaded_size_goal() {
            return goal;
        }
        let mss = self.snd_mss.max(1);
        let mut goal = 2 * mss;
        if self.max_snd_wnd > 536 {
            goal = goal.min(self.max_snd_wnd / 2);
        }
        (goal / mss).max(1) * mss
    }

    /// How many of `n` more bytes a write may queue when the socket's send buffer is
    /// `sndbuf` bytes of memory accounted as Linux does (`SO_SNDBUF` doubled, at least
    /// `SOCK_MIN_SNDBUF`; the caller passes the result): every write-queue buffer not yet
    /// acknowledged costs its unacknowledged bytes plus [`SKB_TRUESIZE_OVERHEAD`]; the last
    /// buffer, if unsent, takes bytes up to the size goal; a new buffer is begun only while
    /// the memory charged is below `sndbuf` (`sk_stream_memory_free`), and takes up to the
    /// size goal. So a write may go past `sndbuf` by most of one buffer, as in Linux.
    pub fn send_room_linux(&self, sndbuf: usize, n: usize) -> usize {
        if !self.state.is_synchronized() {
            return n;
        }
        let goal = self.size_goal();
        let mut charged = self.send_buf.len() + self.send_marks.len() * SKB_TRUESIZE_OVERHEAD;
        let mut room = 0;
        // The tail buffer, unsent and no record's end, grows without a new charge check.
        let sent_edge = self.snd_max.max(self.send_buf_seq);
        if let Some(m) = self.send_marks.back() {
            let k = self.send_marks.len();
            let start = if k >= 2 {
                self.send_marks[k - 2].end
            } else {
                self.send_buf_seq
            };
            if !m.hard && m.end.gt(sent_edge) && m.end == self.fin_seq() {
                let take = goal
                    .saturating_sub(m.end.since(start.max(sent_edge)))
                    .min(n);
                room += take;
                charged += take;
            }
        }
        while room < n && charged < sndbuf {
            let take = goal.min(n - room);
            room += take;
            charged += take + SKB_TRUESIZE_OVERHEAD;
        }
        room
    }

    /// Once the handshake sets the segment size, cut what was written before it and not yet
    /// sent into buffers of the size goal, as written now: Linux's SYN-data skb keeps what
    /// the SYN carried, and a blocking Fast Open `sendto` writes the rest once connected.
    #[cold]
    fn rechunk_unsent(&mut self) {
        let from = self.snd_max.max(self.send_buf_seq);
        let end = self.fin_seq();
        let Some(&last) = self.send_marks.back() else {
            return;
        };
        if !end.gt(from) || !last.end.gt(from) {
            return;
        }
        let keep = self.send_marks.partition_point(|m| m.end.le(from));
        self.send_marks.truncate(keep);
        if from.gt(self.send_buf_seq) && self.send_marks.back().is_none_or(|m| m.end != from) {
            self.send_marks.push_back(SendMark {
                end: from,
                push: true,
                filled: false,
                hard: false,
            });
        }
        let flags = SendFlags {
            more: !last.push,
            eor: last.hard,
            seal: false,
        };
        self.mark_write(from, end.since(from), flags);
    }

    /// Forget the write-queue buffers the peer acknowledged whole.
    fn trim_marks(&mut self) {
        let una = self.send_buf_seq;
        while self.send_marks.front().is_some_and(|m| m.end.le(una)) {
            self.send_marks.pop_front();
        }
        // An empty queue keeps its storage until `release_drained` gives it to the endpoint
        // for the next write.
    }

    /// Whether a pushed buffer ends within `(from, to]`: the segment covering it carries PSH
    /// (`again`: a retransmission, pushed only at the end of a write).
    fn push_mark_in(&self, from: SeqNum, to: SeqNum, again: bool) -> bool {
        let i = self.send_marks.partition_point(|m| m.end.le(from));
        self.send_marks
            .range(i..)
            .take_while(|m| m.end.le(to))
            .any(|m| m.push || (m.filled && !again))
    }

    /// Where a segment starting at `seq` must end at the latest: the end of its buffer if
    /// that ends a record (`MSG_EOR`) or was sealed.
    fn hard_end_after(&self, seq: SeqNum) -> Option<SeqNum> {
        let i = self.send_marks.partition_point(|m| m.end.le(seq));
        self.send_marks.get(i).filter(|m| m.hard).map(|m| m.end)
    }

    /// `SO_MAX_PACING_RATE`: pace this connection (as Linux's internal pacing, which the option
    /// turns on) at no more than `max` bytes per second; `None` lifts the cap (pacing stays
    /// on if it was).
    pub fn set_max_pacing_rate(&mut self, max: Option<u64>) {
        if max.is_none() && self.rate.pacer().is_none() {
            return;
        }
        self.rate.pacer_or_default().max_rate = max.unwrap_or(0);
    }

    /// `TCP_CORK`: while on, a short last segment waits (until uncorked, `TCP_NODELAY`, or
    /// the persist timer's probe: Linux's 200 ms ceiling); turning it off sends what waits.
    pub fn set_cork(&mut self, on: bool) {
        self.cork = on;
        if !on {
            self.more_hold = false;
        }
    }

    /// Whether `TCP_CORK` is on.
    pub fn cork(&self) -> bool {
        self.cork
    }

    /// Read received bytes. `Ok(0)` means none are ready yet; `Err(Finished)` is the end of the
    /// stream.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if !self.recv_buf.is_empty() {
            // A window update, if reading opened enough room, goes out with the next
            // `poll_transmit` (see `window_update_due`).
            self.read_since_ack = true;
            return Ok(self.recv_buf.pop(buf));
        }
        if let Some(e) = self.error {
            return Err(RecvError::Connection(e));
        }
        if self.fin_received {
            return Err(RecvError::Finished);
        }
        if self.read_closed {
            return Err(RecvError::InvalidState);
        }
        match self.state {
            State::Closed | State::Listen => Err(RecvError::InvalidState),
            _ => Ok(0),
        }
    }

    /// The sequence number of the next byte `recv` returns.
    fn read_seq(&self) -> SeqNum {
        self.rcv_nxt - (self.recv_buf.len() + self.fin_received as usize)
    }

    /// Bytes readable before the urgent byte the peer marked (URG), if one is ahead: a reader
    /// that leaves urgent data out of band stops there (Linux's `tcp_read_sock`, splice).
    pub fn urgent_mark(&self) -> Option<usize> {
        let read = self.read_seq();
        self.urg_seq.filter(|u| u.ge(read)).map(|u| u.since(read))
    }

    /// Copy received bytes without consuming them.
    pub fn peek(&self, buf: &mut [u8]) -> usize {
        self.recv_buf.copy_out(0, buf)
    }

    /// Shut the write side (a half-close): queue a FIN behind the data (RFC 9293 §3.10.4).
    /// Reading goes on.
    pub fn shutdown(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::SynSent | State::SynReceived => {
                // RFC 9293 §3.10.4: "queue for processing after entering ESTABLISHED state" —
                // the bytes already queued, then the FIN, once the handshake is done.
                self.fin_queued = true;
            }
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => {}
        }
    }

    /// Close both sides, as the `close()` system call does. Unread data, or data arriving
    /// later, makes it an abort (RFC 1122 §4.2.2.13, RFC 2525 §2.17).
    pub fn close(&mut self) {
        self.read_closed = true;
        if self.state == State::SynSent && self.send_buf.is_empty() {
            // Nothing was synchronized or queued: the TCB goes (RFC 9293 §3.10.4, SYN-SENT).
            self.timers.stop_all();
            self.set_state(State::Closed);
            return;
        }
        if !self.recv_buf.is_empty()
            && (self.state.is_synchronized() || self.state == State::SynReceived)
        {
            self.abort();
            return;
        }
        self.shutdown();
    }

    /// Mark that no application holds the connection any more. It still finishes its close.
    pub fn orphan(&mut self, now: Instant) {
        self.orphaned = true;
        if self.state == State::FinWait2 {
            self.timers
                .set(Timer::Close, now + self.fin_wait2_timeout.get());
        }
    }

    /// Abort: send a RST if the connection is synchronized, and go to CLOSED
    /// (RFC 9293 §3.10.5).
    pub fn abort(&mut self) {
        match self.state {
            State::Closed | State::Listen | State::TimeWait => {}
            State::SynSent => self.set_state(State::Closed),
            _ => self.send_rst = true,
        }
        if self.error.is_none() {
            self.error = Some(ConnectionError::Aborted);
        }
        self.timers.stop_all();
        if !self.send_rst {
            self.set_state(State::Closed);
        }
    }

    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nagle = !nodelay;
        if nodelay {
            // Linux's TCP_NODELAY pushes what waits at once, even past a cork
            // (`TCP_NAGLE_PUSH`), though the cork stays on.
            self.more_hold = false;
            self.push_once = self.unsent() > 0;
        }
    }

    pub fn set_keepalive(&mut self, now: Instant, keepalive: Option<Keepalive>) {
        self.keepalive = keepalive.map(Box::new);
        self.keepalive_probes = 0;
        self.arm_keepalive(now);
    }

    pub fn set_user_timeout(&mut self, t: Option<Duration>) {
        self.user_timeout = OptNanos::new(t);
    }

    /// SYN retransmissions before an active open fails, from now on (Linux's `TCP_SYNCNT`).
    pub fn set_syn_retries(&mut self, n: u32) {
        self.syn_retries = n;
    }

    pub fn set_delayed_ack(&mut self, d: Option<Duration>) {
        self.delayed_ack = OptNanos::new(d);
    }

    // ---------------------------------------------------------------------------------------
    // Outputs.

    /// Take the rings' storage back for a pool (the connection is being dropped).
    pub(crate) fn take_storage(&mut self) -> [Vec<u8>; 2] {
        [self.send_buf.take_storage(), self.recv_buf.take_storage()]
    }

    /// Lend storage from `spare` to the send ring (`send`) or the receive ring (`!send`) if it
    /// has none, before data may arrive in it: drained rings go back to the pool (see
    /// [`release_drained`](Self::release_drained)), and come back from it without an
    /// allocation.
    #[inline]
    pub(crate) fn lend_storage(&mut self, spare: &mut Vec<Vec<u8>>, send: bool) {
        let ring = if send {
            &mut self.send_buf
        } else {
            &mut self.recv_buf
        };
        if ring.allocated() == 0 {
            if let Some(s) = spare.pop() {
                ring.adopt(s);
            }
        }
    }

    /// Lend an empty write queue's storage from `spare` before the application may write
    /// (see [`release_drained`](Self::release_drained)).
    #[inline]
    pub(crate) fn lend_marks(&mut self, spare: &mut Vec<MarksStorage>) {
        if self.send_marks.0.is_none() {
            self.send_marks.0 = spare.pop();
        }
    }

    /// Hand the storage of each ring that holds nothing (everything sent was acknowledged;
    /// everything received was read, nothing out of order) and is at most `max` bytes to
    /// `give`: an idle connection keeps no buffer memory. Larger rings (a connection moving
    /// bulk data) are kept. So is the write queue's storage once it holds nothing, to `marks`
    /// (up to [`SPARE_MARKS_MAX`] there; the rest is freed).
    #[inline]
    pub(crate) fn release_drained(
        &mut self,
        max: usize,
        give: &mut impl FnMut(Vec<u8>),
        marks: &mut Vec<MarksStorage>,
    ) {
        let a = self.send_buf.allocated();
        if a > 0 && a <= max && self.send_buf.is_empty() {
            give(self.send_buf.take_storage());
        }
        if let Some(m) = self.send_marks.take_empty() {
            if marks.len() < SPARE_MARKS_MAX {
                marks.push(m);
            }
        }
        let a = self.recv_buf.allocated();
        if a > 0 && a <= max && self.recv_buf.is_empty() && self.assembler.is_empty() {
            give(self.recv_buf.take_storage());
        }
    }

    /// Copy the payload of `seg`, whose checksum is not yet verified, into the receive ring
    /// where the next in-order bytes go, summing it on the way (one pass for the copy and the
    /// checksum, RFC 1071 §2(D)), and check the segment's checksum: `header_sum` is the partial
    /// sum of the pseudo-header and the TCP header (checksum field included).
    ///
    /// Only for the common case: data at RCV.NXT in a synchronized state, nothing held out of
    /// order, room for all of it in the storage the ring already has. Otherwise `None`: nothing
    /// was written, and the caller verifies the checksum itself. `Some(false)`: the checksum is
    /// wrong; the ring holds exactly the bytes it held (nothing is readable until committed),
    /// and the segment is to be dropped (RFC 9293 §3.1). `Some(true)`: the checksum is right;
    /// hand the same segment to [`handle_segment_placed`](Self::handle_segment_placed) next.
    pub fn place_payload(&mut self, seg: &TcpRepr<'_>, header_sum: u64) -> Option<bool> {
        let data = seg.payload;
        if data.is_empty()
            || data.len() > usize::from(u16::MAX)
            || !matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
            || self.read_closed
            || !self.assembler.is_empty()
            || SeqNum(seg.seq) != self.rcv_nxt
            || seg.flags.contains(TcpFlags::SYN)
            || seg.flags.contains(TcpFlags::RST)
        {
            return None;
        }
        let sum = self.recv_buf.write_at_and_sum(0, data)?;
        let (s, carry) = header_sum.overflowing_add(sum);
        Some(synack_wire::checksum::fold(s + u64::from(carry)) == 0xffff)
    }

    /// [`handle_segment`](Self::handle_segment) for a segment whose payload
    /// [`place_payload`](Self::place_payload) has just put in the receive ring (and found its
    /// checksum right): the same processing, without copying the payload again.
    pub fn handle_segment_placed(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        self.placed = true;
        self.handle_segment(now, seg);
        self.placed = false;
    }

    /// Whether segments we send carry their TCP checksum (on by default). Off when the
    /// device computes it (checksum offload) or none is needed (an in-memory link).
    pub fn set_tx_checksum(&mut self, on: bool) {
        self.tx_checksum = on;
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) may have a segment now. A cheap,
    /// conservative test (it may say yes when the windows or Nagle then hold data back, never
    /// no when a segment is due), so drivers poll only connections that can send.
    pub fn may_transmit(&self) -> bool {
        if self.rst_reply.is_some() || self.send_rst || self.probe_due || self.tlp_due {
            return true;
        }
        match self.state {
            State::Closed | State::Listen => false,
            State::SynSent | State::SynReceived
                if !(self.fast_open_child && self.snd_nxt != self.iss) =>
            {
                (self.snd_nxt == self.iss && !self.defer_syn) || self.ack_due == AckDue::Now
            }
            _ => {
                self.ack_due == AckDue::Now
                    || self.retransmit_at.is_some()
                    || self.snd_nxt.lt(self.snd_max)
                    || self.fin_seq().gt(self.snd_nxt)
                    || (self.fin_queued && self.snd_nxt.le(self.fin_seq()))
                    || (self.recover.is_some() && self.sack_enabled)
                    || self.window_update_due()
                    || self.path_repair_due()
            }
        }
    }

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (
            self.timers.next(),
            self.rate.pacer().and_then(|p| p.wake_at()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the application or the trace.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Whether events are queued for [`poll_event`](Self::poll_event): on for a new
    /// connection; an endpoint that does not trace turns them off (it needs none).
    pub fn set_events(&mut self, on: bool) {
        self.events.off = !on;
        if !on {
            while self.events.pop().is_some() {}
        }
    }

    fn set_state(&mut self, to: State) {
        let from = self.state;
        if from != to {
            self.state = to;
            self.events.push(Event::StateChanged { from, to });
        }
    }

    #[cold]
    fn fail(&mut self, e: ConnectionError) {
        let e = match (e, self.soft_error) {
            (ConnectionError::TimedOut, Some(soft)) => soft,
            _ => e,
        };
        if self.error.is_none() {
            self.error = Some(e);
        }
        // Giving up on a synchronized peer (retransmissions, user timeout, keepalive): tell it
        // with a RST, as Linux does on a keepalive timeout, so it need not wait in turn.
        if matches!(e, ConnectionError::TimedOut | ConnectionError::Unreachable)
            && self.state.is_synchronized()
        {
            self.send_rst = true;
        }
        self.timers.stop_all();
        self.set_state(State::Closed);
    }

    /// Bytes the receive ring can hold (the buffer as configured, and the slack that rounding
    /// scaled windows may spend): no advertised window reaches past it.
    pub fn recv_ring_capacity(&self) -> usize {
        self.recv_buf.capacity()
    }

    /// The receive buffer as configured (the ring holds `rcv_slack` more).
    fn rcv_capacity(&self) -> usize {
        self.recv_buf.capacity() - self.rcv_slack
    }

    /// The receive window we can offer now: the free receive buffer, as configured.
    fn rcv_window(&self) -> usize {
        self.recv_buf
            .free()
            .saturating_sub(self.rcv_slack)
            .min(self.recv_buf.growable_free())
    }

    /// What is still open of the window advertised so far (0 once the peer filled it).
    fn rcv_advertised(&self) -> usize {
        self.rcv_adv.since(self.rcv_nxt)
    }

    /// The window field for an outgoing segment, and the right edge it advertises. The right
    /// edge never moves left (RFC 9293 §3.8.6.2.2, "shrinking the window") and never past what
    /// the receive ring can hold, and it moves right only by a worthwhile step. With a window
    /// scale the field counts units of 2^shift: the edge is rounded down to a unit, or up
    /// when rounding down would move it left. Only if the ring's slack were spent (a peer
    /// sending tiny segments into an unread buffer) would the edge retract, by less than one
    /// unit (RFC 7323 Appendix F); what the peer sent up to the old edge is still accepted.
    fn window_to_advertise(&self) -> (u16, SeqNum) {
        let free = self.rcv_window();
        let current = self.rcv_advertised();
        let threshold = (self.rcv_capacity() / 2).min(self.rcv_mss);
        let shift = self.rcv_wscale;
        let max = 65535usize << shift;
        let wnd = if free >= current + threshold || self.rcv_adv.lt(self.rcv_nxt) {
            free
        } else {
            current
        };
        let mut field = wnd.min(max) >> shift;
        if (field << shift) < current {
            let up = current.div_ceil(1 << shift);
            if (up << shift) <= self.recv_buf.growable_free().min(max) {
                field = up;
            }
        }
        (field as u16, self.rcv_nxt + (field << shift))
    }

    fn tsval(&self, now: Instant) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Options on a SYN or SYN-ACK: MSS always; the others as offered (and, on a SYN-ACK, only
    /// where the peer's SYN offered them too, RFC 7323 §2.2, RFC 2018 §2).
    fn syn_options(&self, now: Instant) -> TcpOptions {
        let mut o = TcpOptions {
            mss: Some(self.adv_mss.min(65535) as u16),
            ..TcpOptions::default()
        };
        let synack = self.state == State::SynReceived;
        if synack {
            if self.ts_enabled {
                o.timestamp = Some(Timestamp {
                    tsval: self.tsval(now),
                    tsecr: self.ts_recent,
                });
            }
            o.sack_permitted = self.sack_enabled;
            if self.window_scaling_agreed {
                o.window_scale = Some(self.rcv_wscale);
            }
            // The cookie goes on the first SYN-ACK only; Linux's retransmissions carry none.
            if self.syn_count == 0 {
                o.fast_open = self.synack_fast_open.as_deref().copied();
            }
        } else {
            if self.ts_offer {
                o.timestamp = Some(Timestamp {
                    tsval: self.tsval(now),
                    tsecr: 0,
                });
            }
            o.sack_permitted = self.sack_offer;
            o.window_scale = self.wscale_offer;
            // RFC 7413 §4.1.3: the cookie (or a request for one) on the first SYN; a
            // retransmitted SYN is a plain one, as Linux's (the option or the data may be what
            // a middlebox drops).
            if self.syn_count == 0 {
                o.fast_open = self.fo_plan.as_deref().and_then(|p| p.option);
            }
        }
        o
    }

    /// Apply the options of the peer's SYN (or SYN-ACK) to this TCB.
    fn negotiate(&mut self, opts: &TcpOptions) {
        let ipv6 = self.tuple().local.is_ipv6();
        let peer_mss = opts
            .mss
            .map(|m| m as usize)
            .unwrap_or(if ipv6 { 1220 } else { 536 });
        self.ts_enabled = self.ts_offer && opts.timestamp.is_some();
        if let Some(ts) = opts.timestamp {
            self.ts_recent = ts.tsval;
        }
        self.sack_enabled = self.sack_offer && opts.sack_permitted;
        match (self.wscale_offer, opts.window_scale) {
            (Some(ours), Some(theirs)) => {
                self.window_scaling_agreed = true;
                self.rcv_wscale = ours;
                // RFC 7323 §2.3: a shift above 14 is used as 14.
                self.snd_wscale = theirs.min(14);
            }
            _ => {
                self.window_scaling_agreed = false;
                self.rcv_wscale = 0;
                self.snd_wscale = 0;
            }
        }
        let ts_len = if self.ts_enabled { 12 } else { 0 };
        // A peer's tiny MSS cannot make us send slivers (CVE-2019-11479): at least
        // MIN_SND_MSS bytes of options and data per segment, as Linux's `tcp_min_snd_mss`.
        self.seg_budget = peer_mss.max(MIN_SND_MSS).min(self.adv_mss);
        self.snd_mss = self.seg_budget.saturating_sub(ts_len).max(1);
        self.path_on_negotiated(peer_mss);
        self.rcv_mss = self.adv_mss.saturating_sub(ts_len).max(1);
        self.cc.set_mss(self.snd_mss);
        let iw = initial_window(self.snd_mss, self.iw_segments as usize);
        // The initial window is set once the MSS is known (RFC 5681 §3.1, RFC 6928).
        if self.cc.cwnd() != iw {
            self.cc = self.cc_algorithm.controller(self.snd_mss, iw);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Inputs: segments.

impl Connection {
    /// A segment for this connection arrived. RFC 9293 §3.10.7.3 in SYN-SENT, §3.10.7.4 in the
    /// other states; LISTEN and CLOSED are the endpoint's.
    pub fn handle_segment(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        // A super-segment (GRO) counts as the segments it stands for, as Linux's `gso_segs`.
        let len = seg.payload.len();
        let pieces = if len > self.rcv_mss {
            len.div_ceil(self.rcv_mss.max(1)) as u32
        } else {
            1
        };
        self.stats.segs_in = self.stats.segs_in.wrapping_add(pieces);
        if self.ecn && self.state.is_synchronized() {
            // RFC 3168 §6.1.3: the peer's CWR ends our echo; a CE mark (again) starts it, and
            // is acknowledged at once (as Linux).
            if seg.flags.contains(TcpFlags::CWR) {
                self.ecn_echo = false;
            }
            if std::mem::take(&mut self.rx_ce) && !seg.flags.contains(TcpFlags::RST) {
                self.ecn_echo = true;
                self.ack_due = AckDue::Now;
            }
        }
        self.rx_ce = false;
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_segment_syn_sent(now, seg),
            _ => {
                self.on_segment_synchronized(now, seg);
                if self.state.is_synchronized() && self.state != State::TimeWait {
                    self.keepalive_probes = 0;
                    self.arm_keepalive(now);
                }
            }
        }
        if self.ack_due == AckDue::Delayed && !self.timers.is_set(Timer::DelayedAck) {
            match self.delayed_ack.get() {
                Some(d) => self.timers.set(Timer::DelayedAck, now + d),
                None => self.ack_due = AckDue::Now,
            }
        }
        self.update_chrono(now);
    }

    /// Linux's send chronographs (`tcp_chrono_*`): the connection is busy while data waits or
    /// is in flight, and limited by the receive window while unsent data does not fit the
    /// peer's window; the time in each is accumulated for `tcpi_busy_time` and
    /// `tcpi_rwnd_limited`.
    fn update_chrono(&mut self, now: Instant) {
        if !self.state.is_synchronized() {
            return;
        }
        let unsent = self.unsent();
        let kind = if unsent == 0 && self.snd_max == self.snd_una {
            Chrono::Idle
        } else {
            let room = (self.snd_una + self.snd_wnd).since(self.snd_max);
            if unsent > 0 && room < unsent.min(self.snd_mss) {
                Chrono::RwndLimited
            } else {
                Chrono::Busy
            }
        };
        if kind == self.chrono.kind {
            return;
        }
        let spent = now
            .as_micros()
            .saturating_sub(self.chrono.since.as_micros());
        match self.chrono.kind {
            Chrono::Idle => {}
            Chrono::Busy => self.chrono.busy = self.chrono.busy.saturating_add(spent),
            Chrono::RwndLimited => {
                self.chrono.rwnd_limited = self.chrono.rwnd_limited.saturating_add(spent)
            }
        }
        self.chrono.kind = kind;
        self.chrono.since = now;
    }

    /// Time spent sending (`tcpi_busy_time`: busy or limited) and limited by the peer's
    /// receive window (`tcpi_rwnd_limited`), up to `now`.
    pub fn chrono_times(&self, now: Instant) -> (Duration, Duration) {
        let c = &self.chrono;
        let running = now.saturating_duration_since(c.since);
        let (busy, rwnd) = (
            Duration::from_micros(c.busy),
            Duration::from_micros(c.rwnd_limited),
        );
        let (busy, rwnd) = match c.kind {
            Chrono::Idle => (busy, rwnd),
            Chrono::Busy => (busy + running, rwnd),
            Chrono::RwndLimited => (busy, rwnd + running),
        };
        (busy + rwnd, rwnd)
    }

    /// RFC 9293 §3.10.7.3, SYN-SENT.
    fn on_segment_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let f = seg.flags;
        let ack = SeqNum(seg.ack);
        let has_ack = f.contains(TcpFlags::ACK);
        // First, the ACK bit: "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the
        // RST bit is set, if so drop the segment and return) <SEQ=SEG.ACK><CTL=RST>".
        if has_ack && (ack.le(self.iss) || ack.gt(self.snd_max)) {
            if !f.contains(TcpFlags::RST) {
                self.rst_reply = Some(ack);
            }
            return;
        }
        // Second, the RST bit: with an acceptable ACK the peer refused us (RFC 5961 §3.2 keeps
        // this rule for SYN-SENT); without an ACK, drop.
        if f.contains(TcpFlags::RST) {
            if has_ack {
                self.fail(ConnectionError::Refused);
            }
            return;
        }
        // Fourth, the SYN bit.
        if !f.contains(TcpFlags::SYN) {
            return;
        }
        // A SYN-ACK must echo a timestamp of ours from the first SYN on (RFC 7323 §3.2 says
        // what TSecr holds; Linux resets the open when it echoes anything else, as a
        // protection against an old or forged SYN-ACK): answer it like an unacceptable ACK.
        if has_ack && self.ts_offer {
            if let (Some(first), Some(ts)) = (self.syn_tsval, seg.options.timestamp) {
                let since_first = ts.tsecr.wrapping_sub(first);
                let until_now = self.tsval(now).wrapping_sub(first);
                if ts.tsecr != 0 && since_first > until_now {
                    self.rst_reply = Some(ack);
                    return;
                }
            }
        }
        self.irs = SeqNum(seg.seq);
        self.rcv_nxt = self.irs + 1;
        // RFC 3168 §6.1.1: ECN is agreed by an ECN-setup SYN-ACK (ECE, not CWR) to our
        // ECN-setup SYN.
        self.ecn = self.ecn_setup_sent
            && has_ack
            && f.contains(TcpFlags::ECE)
            && !f.contains(TcpFlags::CWR);
        // Nothing advertised yet beyond RCV.NXT (our SYN carried no ACK): the first window
        // is measured from here, whatever half of the sequence space the peer's ISN is in.
        self.rcv_adv = self.rcv_nxt;
        self.negotiate(&seg.options);
        // RFC 7323 §2.2: the window of a segment with SYN is never scaled.
        self.snd_wnd = seg.window as usize;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = ack;
        if has_ack {
            // Our SYN is acknowledged: ESTABLISHED, and the handshake's third segment is owed.
            // Data our SYN carried (RFC 7413) may be acknowledged with it, in whole or in part.
            let data_acked = ack.since(self.send_buf_seq).min(self.send_buf.len());
            self.send_buf.discard(data_acked);
            self.send_buf_seq += data_acked;
            self.trim_marks();
            self.snd_una = ack;
            self.stats.delivered += 1;
            self.stats.bytes_acked += data_acked as u64;
            self.on_fast_open_synack(seg, ack);
            if self.snd_nxt.lt(ack) {
                self.snd_nxt = ack;
            }
            if let Some((end, at)) = self.rtt_timed.take() {
                if ack.ge(end) && self.syn_count == 1 {
                    self.rtt.sample(now - at);
                }
            }
            if self.rtt.srtt().is_none() && self.syn_count > 1 {
                // RFC 6298 §5.7: the SYN timed out and no RTT was measured: start data at 3 s.
                self.rtt.set_base(Duration::from_secs(3));
            }
            self.rtt.reset_backoff();
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::Connect);
            self.ack_due = AckDue::Now;
            self.lrcvtime = now;
            // Linux counts `tcpi_last_data_recv` from the handshake until data arrives.
            self.stats.last_data_recv = Some(now);
            let unsent = self.fin_seq().gt(self.snd_max);
            if self.quick_ack && unsent && self.fo_resend_end.is_none() {
                // Data waits to go with the handshake's ACK (Linux: a writer is pending, it
                // "saves one ACK" and enters quick-ACK mode); sent at once, it makes the
                // exchange interactive (see `emit`), so replies to it are ACKed with a delay.
                self.ato = Nanos::new(Duration::from_millis(40));
                self.pingpong = false;
                self.incr_quickack();
            }
            self.enter_established(now);
            if self.snd_max.gt(ack) {
                // Sent data (in the SYN) is outstanding: the retransmission timer guards it.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
            // RFC 9293 §3.10.7.3: "If there are other controls or text in the segment, then
            // continue processing at the sixth step" — data in a SYN-ACK (a Fast Open server
            // may send some, RFC 7413 §4.2.2) is taken, and so is a FIN.
            if !seg.payload.is_empty() {
                self.process_text(now, 0, seg.payload);
            }
            if f.contains(TcpFlags::FIN) && self.state != State::Closed {
                self.process_fin(now);
            }
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8): answer with SYN-ACK from the ISS.
            self.snd_nxt = self.iss;
            self.set_state(State::SynReceived);
        }
    }

    /// RFC 7413 §4.2.2, the client's side of a SYN-ACK: data of the SYN the server did not
    /// take is sent again at once, not after a timeout ("the client MUST retransmit"), and
    /// what the SYN-ACK says of the server (its MSS, a cookie) is kept for the cache, as Linux's
    /// `tcp_rcv_fastopen_synack`.
    #[cold]
    fn on_fast_open_synack(&mut self, seg: &TcpRepr<'_>, ack: SeqNum) {
        if self.syn_fastopen.is_none() && self.syn_data == 0 {
            return;
        }
        let all_data = self.iss + 1 + self.syn_data as usize;
        let cookie = match (self.syn_fastopen, seg.options.fast_open) {
            // A cookie we did not ask for is not cached (RFC 7413 §4.1.3).
            (Some(_), Some(fo)) if !fo.cookie.is_request() => Some(fo),
            _ => None,
        };
        let retransmitted = self.syn_count > 1;
        let unacked = ack.lt(all_data);
        // The SYN timed out and the SYN-ACK has neither a cookie nor our data: the SYN with
        // data (or its answer) was probably lost on the way.
        let syn_lost = self.syn_fastopen.is_some() && retransmitted && cookie.is_none() && unacked;
        // A request answered without a cookie: ask in the other kind next time (once).
        let try_exp = match self.syn_fastopen {
            Some(exp) if !retransmitted && cookie.is_none() && self.syn_data == 0 => {
                if exp {
                    2
                } else {
                    1
                }
            }
            _ => 0,
        };
        self.fo_outcome = Some(Box::new(ClientOutcome {
            mss: seg.options.mss.unwrap_or(self.adv_mss.min(65535) as u16),
            cookie,
            syn_lost,
            try_exp,
        }));
        if self.syn_data > 0 && unacked {
            // Send what the server did not take from SND.UNA, now.
            self.snd_nxt = ack;
            self.fo_resend_end = Some(all_data);
        } else {
            self.syn_data_acked = self.syn_data > 0;
        }
    }

    fn enter_established(&mut self, now: Instant) {
        self.timers.stop(Timer::Connect);
        if self.fin_queued {
            // A shutdown was asked for during the handshake (RFC 9293 §3.10.4).
            self.set_state(State::Established);
            self.set_state(State::FinWait1);
        } else {
            self.set_state(State::Established);
        }
        self.path_on_established(now);
        self.rechunk_unsent();
        self.arm_keepalive(now);
    }

    /// RFC 9293 §3.10.7.4: SYN-RECEIVED and every synchronized state.
    fn on_segment_synchronized(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let f = seg.flags;
        let rst = f.contains(TcpFlags::RST);
        let mut syn = f.contains(TcpFlags::SYN);
        let fin = f.contains(TcpFlags::FIN);
        let mut seq = SeqNum(seg.seq);
        // Simultaneous open (RFC 9293 §3.5, figure 8, line 6): the peer's SYN-ACK repeats a
        // SYN we already hold. Its SYN is old and trimmed; the rest is an ACK of ours (of
        // our SYN, and of data it carried, RFC 7413). The duplicate SYN is acknowledged at
        // once, reported as a duplicate (RFC 2883 D-SACK), as Linux does.
        if self.state == State::SynReceived
            && syn
            && !rst
            && f.contains(TcpFlags::ACK)
            && seq + 1 == self.rcv_nxt
            && SeqNum(seg.ack).gt(self.snd_una)
            && SeqNum(seg.ack).le(self.snd_max)
        {
            syn = false;
            if self.sack_enabled {
                self.dsack = Some((seq, seq + 1));
            }
            self.ack_due = AckDue::Now;
            seq += 1;
        }
        let seg_len = seg.payload.len() + syn as usize + fin as usize;

        // A retransmitted SYN while our SYN-ACK is unacknowledged: send the SYN-ACK again.
        if self.state == State::SynReceived
            && syn
            && !rst
            && seq == self.irs
            && !f.contains(TcpFlags::ACK)
        {
            self.snd_nxt = self.iss;
            return;
        }

        // TIME-WAIT: "The only thing that can arrive in this state is a retransmission of the
        // remote FIN. Acknowledge it, and restart the 2 MSL timeout."
        if self.state == State::TimeWait
            && fin
            && !rst
            && seq + seg.payload.len() + 1 == self.rcv_nxt
        {
            self.ack_due = AckDue::Now;
            self.timers.set(Timer::Close, now + self.msl.get() * 2);
            return;
        }

        // RFC 7323 §5.3, PAWS: a segment whose TSval is older than TS.Recent is an old duplicate
        // and draws an ACK. Except a pure ACK at RCV.NXT: one the network reordered behind a
        // later one carries an older TSval but no data that could be an old duplicate, and its
        // acknowledgment and SACK blocks still count; it is used, not answered (Linux's
        // "disordered ACK"), so reordering costs neither information nor an ACK storm.
        if self.ts_enabled && !rst {
            if let Some(ts) = seg.options.timestamp {
                if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    let pure_ack = f.contains(TcpFlags::ACK)
                        && !syn
                        && !fin
                        && seg.payload.is_empty()
                        && seq == self.rcv_nxt
                        && self.state != State::SynReceived;
                    if pure_ack {
                        self.process_ack(now, seg);
                    } else {
                        self.out_of_window_ack(now, seg);
                    }
                    return;
                }
            }
        }

        // First, the sequence number (four cases of RFC 9293 §3.10.7.4).
        // RCV.WND: what the peer may send now, the window advertised so far or what has
        // opened since, within what the ring can hold.
        let wnd = self
            .rcv_advertised()
            .max(self.rcv_window())
            .min(self.recv_buf.free());
        let end = self.rcv_nxt + wnd;
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_range(self.rcv_nxt, end),
            (_, 0) => false,
            (n, _) => {
                seq.in_range(self.rcv_nxt, end) || (seq + (n - 1)).in_range(self.rcv_nxt, end)
            }
        };
        if !acceptable {
            if rst {
                return;
            }
            // "If an incoming segment is not acceptable, an acknowledgment should be sent in
            // reply (unless the RST bit is set)" — and with a zero window, valid ACKs still count.
            self.out_of_window_ack(now, seg);
            if wnd == 0 && seq == self.rcv_nxt && f.contains(TcpFlags::ACK) && !syn {
                self.process_ack(now, seg);
            }
            return;
        }
        // Keep TS.Recent (RFC 7323 §4.3): from a segment that covers Last.ACK.sent.
        if self.ts_enabled {
            if let Some(ts) = seg.options.timestamp {
                if seq.le(self.last_ack_sent) {
                    self.ts_recent = ts.tsval;
                }
            }
        }

        // Second, the RST bit (RFC 5961 §3.2): exact match resets, in-window draws a challenge.
        if rst {
            if seq != self.rcv_nxt {
                self.challenge_ack(now);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => {
                    // "return this connection to the LISTEN state": the listener never saw it.
                    self.timers.stop_all();
                    self.error = Some(ConnectionError::Reset);
                    self.set_state(State::Closed);
                }
                State::SynReceived => self.fail(ConnectionError::Refused),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(ConnectionError::Reset)
                }
                _ => {
                    self.timers.stop_all();
                    self.set_state(State::Closed);
                }
            }
            return;
        }

        // Fourth, the SYN bit (RFC 5961 §4): a challenge ACK, except that a passive open in
        // SYN-RECEIVED goes back to LISTEN.
        if syn {
            if self.state == State::SynReceived && self.passive {
                self.timers.stop_all();
                self.set_state(State::Closed);
            } else {
                self.challenge_ack(now);
            }
            return;
        }

        // Fifth, the ACK field.
        if !f.contains(TcpFlags::ACK) {
            return;
        }
        if !self.process_ack(now, seg) || self.state == State::Closed {
            return;
        }

        // Sixth, the URG bit (RFC 9293 §3.10.7.4): the urgent byte is marked (as BSD and Linux
        // read the pointer, RFC 6093 §2: it names the byte after the urgent one).
        if f.contains(TcpFlags::URG) && seg.urgent > 0 {
            let byte = seq + (seg.urgent as usize - 1);
            if byte.ge(self.read_seq()) {
                self.urg_seq = Some(byte);
            }
        }

        // Seventh, the segment text.
        let skip = self.rcv_nxt.since(seq);
        if seg.payload.len() > skip {
            let offset = seq.since(self.rcv_nxt);
            self.process_text(now, offset, &seg.payload[skip..]);
            if self.state == State::Closed {
                return;
            }
        }

        // Eighth, the FIN bit, once everything before it has arrived.
        if fin {
            let fin_seq = seq + seg.payload.len();
            if fin_seq == self.rcv_nxt {
                self.process_fin(now);
            } else if fin_seq.gt(self.rcv_nxt) {
                self.ooo_fin = Some(fin_seq);
                self.ack_due = AckDue::Now;
            }
        }
        if self.ooo_fin == Some(self.rcv_nxt) && !self.fin_received {
            self.ooo_fin = None;
            self.process_fin(now);
        }
    }

    /// The fifth check of RFC 9293 §3.10.7.4. Returns false when the segment is to be dropped.
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        let ack = SeqNum(seg.ack);
        let seq = SeqNum(seg.seq);
        // An ACK sends what waits by the socket's own Nagle and cork, whatever MSG_MORE the
        // last write said (Linux's `tcp_data_snd_check`).
        self.more_hold = false;
        if self.state == State::SynReceived {
            // "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state ... If the segment
            // acknowledgment is not acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST>".
            if ack.gt(self.snd_una) && ack.le(self.snd_max) {
                self.snd_wnd = (seg.window as usize) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                self.stats.delivered += 1;
                self.stats.last_data_recv.get_or_insert(now);
                self.enter_established(now);
            } else {
                self.rst_reply = Some(ack);
                return false;
            }
        }
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
        if ack.gt(self.snd_max) || ack.lt(self.snd_una - self.max_snd_wnd.max(1)) {
            self.challenge_ack(now);
            return false;
        }
        let wnd = (seg.window as usize) << self.snd_wscale;
        // What this ACK delivers, for PRR (RFC 6937 §3 `DeliveredData`): the change in
        // SND.UNA plus the change in SACKed bytes.
        let una_before = self.snd_una;
        let sacked_before = self.scoreboard.sacked_bytes();
        let fack_before = self.scoreboard.highest().unwrap_or(self.snd_una);
        if self.ecn
            && seg.flags.contains(TcpFlags::ECE)
            && !seg.flags.contains(TcpFlags::SYN)
            && self.recover.is_none()
            && self.ecn_high.is_none_or(|h| ack.ge(h))
            && self.snd_max.gt(self.snd_una)
        {
            // RFC 3168 §6.1.2: congestion was experienced: halve the window as for a loss,
            // at most once per window of data, resend nothing, and say so with CWR.
            let flight = self.snd_max.since(self.snd_una);
            self.cc.on_congestion_event(now, flight);
            self.ecn_high = Some(self.snd_max);
            self.ecn_cwr_due = true;
            self.push_congestion_event();
        }
        if ack.gt(self.snd_una) {
            self.on_new_ack(now, seg, ack);
        } else if ack == self.snd_una {
            // RFC 5681 §2, a duplicate ACK: data outstanding, no data or SYN/FIN in it, the
            // same acknowledgment and the same window.
            let dup = self.snd_max.gt(self.snd_una)
                && seg.payload.is_empty()
                && !seg.flags.contains(TcpFlags::FIN)
                && wnd == self.snd_wnd;
            // RFC 6675 §5: the scoreboard learns from every ACK; and with SACK, an ACK that
            // SACKs bytes not SACKed before is a duplicate ACK whatever its window says
            // (RFC 6675 §2, "DupAck") — a receiver that opens its window as it reads, or that
            // acknowledges a whole flight at once, still signals the loss.
            self.check_reneging();
            let sacked = self.scoreboard.sacked_bytes();
            self.record_sack(seg);
            let new_sack = self.scoreboard.sacked_bytes() > sacked;
            if dup || new_sack {
                self.on_dup_ack(now);
            }
        } else {
            // An ACK overtaken by a later one: its SACK blocks may still be news. (It moves
            // no window: Linux sends what they free by the window of the last ACK.)
            self.record_sack(seg);
        }
        if self.recover.is_some() && self.sack_enabled && ack.ge(una_before) {
            let delivered = (ack.since(una_before) + self.scoreboard.sacked_bytes())
                .saturating_sub(sacked_before);
            let fack = self.scoreboard.highest().unwrap_or(self.snd_una);
            let from = fack_before.max(self.snd_una);
            let newly_lost = fack.gt(from) && self.unsacked_between(from, fack) > 0;
            let pipe = self.pipe();
            if self.rate.prr().is_none() {
                self.rate.set_prr(Some(Prr::start(0, pipe)));
            }
            let ssthresh = self.cc.ssthresh();
            let mss = self.snd_mss;
            let prr = self.rate.prr_mut().expect("set above");
            prr.on_ack(
                delivered,
                pipe,
                ssthresh,
                ack.gt(una_before),
                newly_lost,
                mss,
            );
        }
        self.arm_rack_reorder(now);
        // Window update: "If SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)".
        if self.snd_wl1.lt(seq) || (self.snd_wl1 == seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = wnd;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
            if wnd > 0 {
                self.timers.stop(Timer::Persist);
                self.persist_backoff = 0;
            }
        }
        match self.state {
            State::FinWait1 if self.fin_acked() => {
                self.set_state(State::FinWait2);
                if self.orphaned {
                    self.timers
                        .set(Timer::Close, now + self.fin_wait2_timeout.get());
                }
            }
            State::Closing if self.fin_acked() => self.enter_time_wait(now),
            State::LastAck if self.fin_acked() => {
                self.timers.stop_all();
                self.set_state(State::Closed);
            }
            _ => {}
        }
        true
    }

    fn record_sack(&mut self, seg: &TcpRepr<'_>) {
        if !self.sack_enabled {
            return;
        }
        let fack_before = self.scoreboard.highest();
        // The lowest byte newly SACKed by this ACK that was never sent again.
        let mut reord: Option<SeqNum> = None;
        for b in seg.options.sack_blocks() {
            let (l, r) = (SeqNum(b.left), SeqNum(b.right));
            if l.ge(self.snd_una) && r.le(self.snd_max) {
                if let Some(low) = self.first_unsacked_in(l, r) {
                    if low.ge(self.rexmit_high) && reord.is_none_or(|x| low.lt(x)) {
                        reord = Some(low);
                    }
                }
                self.scoreboard.add(l, r);
            }
        }
        // A hole below the highest SACKed byte filled by its first transmission: the path
        // reordered (RFC 4737), as deep as from it to the highest SACKed byte (Linux's
        // `tcp_check_sack_reordering`). DupThresh grows to match.
        if let (Some(low), Some(prior), Some(fack)) =
            (reord, fack_before, self.scoreboard.highest())
        {
            let mss = self.snd_mss.max(1);
            if low.lt(prior) && self.rto_count == 0 && fack.since(low) > self.reordering * mss {
                self.reordering = fack.since(low).div_ceil(mss).min(MAX_REORDERING);
            }
        }
    }

    /// The first byte of `[l, r)` not SACKed yet.
    fn first_unsacked_in(&self, l: SeqNum, r: SeqNum) -> Option<SeqNum> {
        let mut cursor = l;
        while let Some(end) = self.scoreboard.sacked_until(cursor) {
            cursor = end;
        }
        cursor.lt(r).then_some(cursor)
    }

    /// The sequence number our FIN occupies (meaningful once a FIN is queued).
    fn fin_seq(&self) -> SeqNum {
        self.send_buf_seq + self.send_buf.len()
    }

    fn fin_acked(&self) -> bool {
        self.fin_queued && self.snd_una.gt(self.fin_seq())
    }

    fn on_new_ack(&mut self, now: Instant, seg: &TcpRepr<'_>, ack: SeqNum) {
        let acked = ack.since(self.snd_una);
        // Reordering (RFC 4737 §4.1, as Linux measures it): bytes never retransmitted are
        // acknowledged below the highest SACKed byte, so segments sent after them arrived
        // first. DupThresh grows to the depth seen, so the next such reordering is no loss.
        if let Some(fack) = self.scoreboard.highest() {
            if self.recover.is_none() && self.rto_count == 0 && fack.gt(self.snd_una) {
                self.note_reordering(fack.since(self.snd_una));
            }
        }
        // The hole the reordering window waits on is filled: it was late, not lost.
        if self.reorder_head.is_some_and(|h| ack.gt(h)) {
            self.reorder_head = None;
            self.timers.stop(Timer::Reorder);
        }
        // The first ACK of the first retransmitted segment decides whether it was needed.
        if let Some(u) = self.undo.as_ref().filter(|u| ack.gt(u.seq)) {
            let echoes_original = seg
                .options
                .timestamp
                .is_some_and(|ts| (ts.tsecr.wrapping_sub(u.tsval) as i32) < 0);
            if echoes_original {
                self.undo_recovery();
            } else {
                self.undo = None;
            }
        }
        let data_end = self.fin_seq();
        let data_acked = ack.min(data_end).since(self.send_buf_seq);
        self.stats.bytes_acked += data_acked as u64;
        self.stats.delivered = self
            .stats
            .delivered
            .wrapping_add(data_acked.div_ceil(self.snd_mss.max(1)) as u32);
        self.send_buf.discard(data_acked);
        self.send_buf_seq += data_acked;
        self.trim_marks();
        self.snd_una = ack;
        if self.snd_nxt.lt(ack) {
            self.snd_nxt = ack;
        }
        self.scoreboard.trim(ack);
        self.check_reneging();
        self.record_sack(seg);

        // RTT: the timed segment (Karn's rule keeps retransmitted ones out), else the echoed
        // timestamp (RFC 7323 §4).
        let mut sample = None;
        if let Some((end, at)) = self.rtt_timed {
            if ack.ge(end) {
                sample = Some(now - at);
                self.rtt_timed = None;
            }
        }
        if sample.is_none() && self.ts_enabled {
            if let Some(ts) = seg.options.timestamp {
                let ms = self.tsval(now).wrapping_sub(ts.tsecr);
                if ts.tsecr != 0 && ms < (1 << 31) {
                    sample = Some(Duration::from_millis(ms as u64));
                }
            }
        }
        if let Some(r) = sample {
            self.rtt.sample(r);
        }
        self.rtt.reset_backoff();
        self.rto_count = 0;
        // Every ACK's echoed timestamp, for HyStart++ (the estimator above takes one sample
        // per round trip when a timed segment is acknowledged).
        let ts_rtt = self.ts_enabled.then_some(()).and_then(|()| {
            let ts = seg.options.timestamp?;
            let ms = self.tsval(now).wrapping_sub(ts.tsecr);
            (ts.tsecr != 0 && ms < (1 << 31)).then(|| Duration::from_millis(u64::from(ms)))
        });

        let flight = self.snd_max.since(self.snd_una);
        match self.recover {
            Some(recover) if ack.ge(recover) => {
                // Full acknowledgment: recovery ends (RFC 6582 §3.2 step 3, RFC 6675 §5).
                self.recover = None;
                self.rate.set_prr(None);
                self.inflation = 0;
                self.dupacks = 0;
                self.cc.on_recovery_end(now);
                self.push_congestion_event();
            }
            Some(_) => {
                // Partial acknowledgment (RFC 6582 §3.2 step 4): resend the next hole, deflate.
                self.partial_acks += 1;
                if !self.sack_enabled {
                    self.retransmit_at = Some((self.snd_una, RetransmitCause::FastRetransmit));
                    self.inflation = self.inflation.saturating_sub(acked);
                    if acked >= self.snd_mss {
                        self.inflation += self.snd_mss;
                    }
                }
                // (With SACK, PRR sets the window on each ACK: no inflation.)
            }
            None => {
                self.dupacks = 0;
                let before = (self.cc.cwnd(), self.cc.ssthresh());
                if self.cc.cwnd() < self.cc.ssthresh()
                    && self.hystart.on_ack(ack, self.snd_nxt, ts_rtt)
                {
                    self.cc.exit_slow_start();
                }
                self.cc.on_ack(now, acked, flight, sample);
                if before.1 != self.cc.ssthresh() {
                    self.push_congestion_event();
                }
            }
        }
        if self.tlp_high.is_some_and(|h| ack.ge(h)) {
            self.tlp_high = None;
        }
        self.path_on_ack();
        if flight == 0 {
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::UserTimeout);
            self.timers.stop(Timer::Probe);
        } else {
            // RFC 5482: the user timeout counts from the last progress, whatever the
            // retransmission timer does.
            if let Some(t) = self.user_timeout.get() {
                self.timers.set(Timer::UserTimeout, now + t);
            }
            if self.recover.is_none() || self.sack_enabled || self.partial_acks <= 1 {
                // RFC 6298 §5.3: restart the timer when new data is acknowledged.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                self.arm_tlp(now);
            }
        }
    }

    /// A peer that SACKed the bytes at SND.UNA yet acknowledges only up to them has dropped
    /// what it SACKed (reneged, RFC 2018 §8): the scoreboard is forgotten, so that what it
    /// claimed is sent again rather than skipped.
    fn check_reneging(&mut self) {
        if self
            .scoreboard
            .blocks
            .first()
            .is_some_and(|&(s, _)| s.le(self.snd_una))
        {
            self.scoreboard.clear();
        }
    }

    /// A challenge ACK (RFC 5961 §3.2, §4.2, §5.2), at most one per
    /// [`Config::challenge_ack_interval`] on this connection (RFC 5961 §7; Linux's
    /// `tcp_invalid_ratelimit`). The endpoint also caps them across connections
    /// (`challenge_ack_limit`), so a blind attacker learns nothing from counting them and a
    /// flood of forged segments draws no flood of ACKs.
    #[cold]
    fn challenge_ack(&mut self, now: Instant) {
        if self.oow_ack_allowed(now) {
            self.challenge_pending = true;
            self.ack_due = AckDue::Now;
        }
    }

    /// The per-connection pace of challenge and out-of-window ACKs: one per
    /// `challenge_ack_interval`; what comes sooner is counted and not answered.
    fn oow_ack_allowed(&mut self, now: Instant) -> bool {
        let last = (self.last_oow_ack != u64::MAX).then(|| Instant::from_micros(self.last_oow_ack));
        if last.is_some_and(|t| now < t + self.challenge_ack_interval.get()) {
            self.challenges_limited = self.challenges_limited.saturating_add(1);
            return false;
        }
        self.last_oow_ack = now.as_micros();
        true
    }

    /// The ACK owed to an unacceptable segment (RFC 9293 §3.10.7.4). A segment with data gets
    /// it always (a zero-window probe, a retransmission below the window); one without, which
    /// could be half of an ACK loop, at the challenge ACKs' pace, as Linux does.
    #[cold]
    fn out_of_window_ack(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let syn = seg.flags.contains(TcpFlags::SYN);
        if (!seg.payload.is_empty() && !syn) || self.oow_ack_allowed(now) {
            self.ack_due = AckDue::Now;
        }
    }

    /// Whether the ACK about to go is a challenge the endpoint's global limit applies to.
    pub(crate) fn take_challenge(&mut self) -> bool {
        std::mem::take(&mut self.challenge_pending)
    }

    /// Withdraw the pending challenge ACK (the endpoint's global limit was reached).
    pub(crate) fn cancel_challenge(&mut self) {
        if self.ack_due == AckDue::Now {
            self.ack_due = AckDue::None;
        }
        self.challenges_limited = self.challenges_limited.saturating_add(1);
    }

    /// Challenge and out-of-window ACKs not sent because of the rate limits (RFC 5961 §7).
    pub fn challenges_limited(&self) -> u64 {
        u64::from(self.challenges_limited)
    }

    /// The path reordered `depth` bytes: DupThresh covers that many segments from now on.
    #[cold]
    fn note_reordering(&mut self, depth: usize) {
        let segments = depth.div_ceil(self.snd_mss.max(1)) + 1;
        self.reordering = self.reordering.max(segments).min(MAX_REORDERING);
    }

    /// The fast retransmission was spurious (RFC 3522): the original arrived, only late.
    /// Restore the congestion state from before the recovery (RFC 4015 §3) and leave it.
    #[cold]
    fn undo_recovery(&mut self) {
        let Some(u) = self.undo.take() else {
            return;
        };
        let u = *u;
        match self.scoreboard.highest() {
            Some(fack) => self.note_reordering(fack.since(u.seq)),
            // Without SACK the depth is unknown: one more duplicate is tolerated next time.
            None => self.reordering = (self.reordering + 1).min(MAX_REORDERING),
        }
        self.cc = u.cc;
        self.recover = None;
        self.rate.set_prr(None);
        self.inflation = 0;
        self.dupacks = 0;
        self.partial_acks = 0;
        self.retransmit_at = None;
        self.high_rxt = self.snd_una;
        self.spurious_retransmits += 1;
        self.push_congestion_event();
    }

    #[cold]
    fn on_dup_ack(&mut self, now: Instant) {
        self.dupacks += 1;
        if self.recover.is_some() {
            if !self.sack_enabled {
                // RFC 5681 §3.2 step 4: each further duplicate inflates the window.
                self.inflation += self.snd_mss;
            }
            return;
        }
        // Loss is inferred on the third duplicate, or with SACK once more than
        // (DupThresh - 1) * SMSS bytes above SND.UNA are SACKed (RFC 6675 §5 IsLost).
        let dupthresh = self.reordering;
        let sack_says_lost =
            self.sack_enabled && self.scoreboard.sacked_bytes() > (dupthresh - 1) * self.snd_mss;
        // The tail loss probe arrived (it is SACKed) while bytes sent before it were not: as
        // RACK would (RFC 8985 §6.2, §7.4), those are lost — recover now, not at the RTO.
        let probe_says_lost = self.sack_enabled
            && self
                .tlp_high
                .zip(self.scoreboard.highest())
                .is_some_and(|(probe, sacked)| sacked.ge(probe));
        // Duplicates of data sent before the last recovery or timeout began say nothing new.
        let fresh = self.snd_una.gt(self.recover_mark) || self.recover_mark == self.iss;
        if fresh && (self.dupacks as usize >= dupthresh || sack_says_lost || probe_says_lost) {
            // The reordering window: the hole may only be late. Recovery starts if it is still
            // there when the window runs out (`on_timer`); a probe's SACK is no reordering.
            if let (true, false, Some(srtt)) =
                (self.reorder_window, probe_says_lost, self.rtt.srtt())
            {
                if self.reorder_head != Some(self.snd_una) {
                    self.reorder_head = Some(self.snd_una);
                    let wait = (srtt / 4).max(Duration::from_millis(1));
                    self.timers.set(Timer::Reorder, now + wait);
                }
                return;
            }
            self.enter_recovery(now);
        }
    }

    /// RACK's loss detection below DupThresh (RFC 8985 §6.2, as Linux's `tcp_rack_mark_lost`):
    /// SACKed bytes above a hole at `SND.UNA` were sent after it, so the hole is lost once it
    /// has gone unacknowledged for the reordering window, a quarter of the RTT (RFC 8985's
    /// `min_RTT / 4`; SRTT here, as the reordering window of `Config::reorder_window`, which
    /// keeps the TCB from growing for another estimator), past what the SACKed data took: the `Reorder` timer then starts the recovery, which sends
    /// the hole again. (Enough SACKed bytes for DupThresh start it at once, `on_dup_ack`.)
    /// Without per-segment send times the hole is taken as sent with the SACKed data; the
    /// timer has Linux's slack, 2 ms past the window rounded up to a millisecond
    /// (`TCP_TIMEOUT_MIN`).
    fn arm_rack_reorder(&mut self, now: Instant) {
        let hole_at_una = self
            .scoreboard
            .blocks
            .first()
            .is_some_and(|&(l, _)| l.gt(self.snd_una));
        let fresh = self.snd_una.gt(self.recover_mark) || self.recover_mark == self.iss;
        if !self.sack_enabled
            || !hole_at_una
            || !fresh
            || self.recover.is_some()
            || self.rto_count > 0
            || self.reorder_head == Some(self.snd_una)
            || !self.state.is_synchronized()
        {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let reo_wnd = srtt / 4;
        let ms = reo_wnd.as_micros().div_ceil(1000) as u64;
        self.reorder_head = Some(self.snd_una);
        self.timers
            .set(Timer::Reorder, now + Duration::from_millis(ms + 2));
    }

    /// Fast retransmit and recovery begin (RFC 5681 §3.2, RFC 6675 §5, RFC 6582 §3.2).
    #[cold]
    fn enter_recovery(&mut self, now: Instant) {
        if self.path_probe_lost() {
            return;
        }
        let flight = self.snd_nxt.since(self.snd_una);
        // Holes the last recovery already sent again (below its HighRxt) are in flight,
        // not lost anew: this recovery starts above them. And Eifel's test only means
        // something for a segment sent once before: not for one already resent.
        // (Without SACK there is no scoreboard to say which holes those were: NewReno
        // starts from SND.UNA every time.)
        if !self.sack_enabled {
            self.high_rxt = self.snd_una;
        }
        let head_resent = self.high_rxt.gt(self.snd_una);
        self.undo = (self.ts_enabled && !head_resent).then(|| {
            Box::new(Undo {
                cc: self.cc.clone(),
                seq: self.snd_una,
                tsval: self.tsval(now),
            })
        });
        self.recover_mark = self.snd_max;
        let prior_cwnd = self.cc.cwnd();
        self.cc.on_congestion_event(now, flight);
        self.recover = Some(self.snd_max);
        self.high_rxt = self.high_rxt.max(self.snd_una);
        let prr = self
            .sack_enabled
            .then(|| Prr::start(prior_cwnd, self.pipe()));
        self.rate.set_prr(prr);
        if !head_resent {
            self.retransmit_at = Some((self.snd_una, RetransmitCause::FastRetransmit));
        }
        self.rtt_timed = None;
        // RFC 5681 §3.2 step 3: inflate by the segments that have left the network, one per
        // duplicate so far (three, unless the reordering window saw more arrive).
        self.inflation = if self.sack_enabled {
            0
        } else {
            (self.dupacks.max(3) as usize) * self.snd_mss
        };
        self.timers.stop(Timer::Probe);
        self.tlp_due = false;
        self.push_congestion_event();
    }

    #[cold]
    fn push_congestion_event(&mut self) {
        self.events.push(Event::Congestion {
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
        });
    }

    /// The seventh step: in-order bytes go to the reader, out-of-order bytes wait in the ring.
    fn process_text(&mut self, now: Instant, offset: usize, data: &[u8]) {
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        if self.read_closed {
            // Data for a connection the application has closed: reset (RFC 1122 §4.2.2.13).
            // As Linux answers it (`tcp_v4_send_reset` for the segment, the socket gone):
            // <SEQ=SEG.ACK><CTL=RST>, the segment's acknowledgment being SND.UNA now.
            self.send_rst = true;
            self.rst_as_reply = true;
            self.timers.stop_all();
            return;
        }
        if offset > 0 {
            // Out of order: it waits in the ring at its offset, and a duplicate ACK (with SACK
            // blocks) goes out at once (RFC 9293 §3.8.6.3, RFC 5681 §4.2). The ring's storage
            // grows with what is actually held, not to the window's edge for one segment
            // there: past twice the bytes held (and 64 KiB), the segment is dropped, to be
            // sent again once the hole before it fills.
            let end = self.recv_buf.len() + offset + data.len();
            let held = self.recv_buf.len() + self.assembler.held() + data.len();
            if end > self.recv_buf.allocated() && end > 2 * held + OOO_GROWTH_ALLOWANCE {
                self.ooo_dropped = self.ooo_dropped.saturating_add(1);
                self.ack_due = AckDue::Now;
                return;
            }
            let n = self.recv_buf.write_at(offset, data);
            if n > 0 {
                self.assembler.add(offset, n);
            }
            self.ack_due = AckDue::Now;
            return;
        }
        let had_holes = !self.assembler.is_empty();
        let n = if !had_holes && std::mem::take(&mut self.placed) {
            // Already in the ring (`place_payload`), at the in-order end: what the window
            // kept of it is a prefix of what was placed there.
            data.len()
        } else {
            self.recv_buf.write_at(0, data)
        };
        if !had_holes {
            self.recv_buf.commit(n);
            self.rcv_nxt += n;
            self.stats.bytes_received += n as u64;
            self.stats.last_data_recv = Some(now);
            self.bytes_unacked += n;
            self.rcv_mss_seen = self.rcv_mss_seen.max(n.min(self.rcv_mss) as u32);
            let quick = self.note_data_received(now);
            // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: at least every second full-sized segment,
            // sized as the peer sends them; and at once if not everything fit, or in
            // quick-ACK mode.
            if self.bytes_unacked > self.rcv_mss_seen as usize || n < data.len() || quick {
                self.ack_due = AckDue::Now;
            } else if self.ack_due < AckDue::Delayed {
                self.ack_due = AckDue::Delayed;
            }
        } else {
            // This fills (part of) the first hole: acknowledge at once (RFC 9293 §3.8.6.3).
            let k = self.assembler.fill_front(n);
            self.recv_buf.commit(k);
            self.rcv_nxt += k;
            self.stats.bytes_received += k as u64;
            self.stats.last_data_recv = Some(now);
            self.ack_due = AckDue::Now;
        }
    }

    /// In-order data arrived: Linux's `tcp_event_data_recv`, which decides quick-ACK mode.
    /// The first data of a connection, and data after a silence longer than the RTO, enter it
    /// (for up to 16 ACKs, fewer if the window is small); the ACK-timeout estimate follows the
    /// gaps between arrivals. Returns whether this data is to be acknowledged at once.
    fn note_data_received(&mut self, now: Instant) -> bool {
        if !self.quick_ack {
            return false;
        }
        const ATO_MIN: Duration = Duration::from_millis(40);
        let ato = self.ato.get();
        if ato.is_zero() {
            self.incr_quickack();
            self.ato = Nanos::new(ATO_MIN);
        } else {
            let m = now.saturating_duration_since(self.lrcvtime);
            let rto = self.rtt.rto();
            if m <= ATO_MIN / 2 {
                self.ato = Nanos::new(ato / 2 + ATO_MIN / 2);
            } else if m < ato {
                self.ato = Nanos::new((ato / 2 + m).min(rto));
            } else if m > rto {
                self.incr_quickack();
            }
        }
        self.lrcvtime = now;
        self.quick > 0 && !self.pingpong
    }

    /// Linux's `tcp_incr_quickack`: as many quick ACKs as half the window holds segments of
    /// the peer's size, at least 2, at most 16.
    fn incr_quickack(&mut self) {
        let mss = (self.rcv_mss_seen as usize).clamp(1, 536);
        let n = (self.rcv_window() / (2 * mss)).clamp(2, 16) as u32;
        self.quick = self.quick.max(n);
    }

    /// The eighth step: the FIN.
    fn process_fin(&mut self, now: Instant) {
        self.rcv_nxt += 1;
        self.fin_received = true;
        self.ack_due = AckDue::Now;
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            State::TimeWait => self.timers.set(Timer::Close, now + self.msl.get() * 2),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.timers.stop_all();
        self.set_state(State::TimeWait);
        // RFC 9293 §3.10.7.4: "Start the time-wait timer, turn off the other timers."
        self.timers.set(Timer::Close, now + self.msl.get() * 2);
    }

    fn arm_keepalive(&mut self, now: Instant) {
        match self.keepalive.as_deref() {
            Some(k) if self.state.is_synchronized() && self.state != State::TimeWait => {
                self.timers.set(Timer::Keepalive, now + k.idle)
            }
            _ => self.timers.stop(Timer::Keepalive),
        }
    }
}

/// What an ICMP error says about a connection's path (RFC 5927, RFC 1122 §4.2.3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Port unreachable: nothing listens there.
    PortUnreachable,
    /// Protocol unreachable or administratively prohibited: a hard error.
    Hard,
    /// Network or host unreachable, time exceeded: a soft error, the path may recover.
    Soft,
    /// The packet was too big for a link (RFC 1191, RFC 8201): the path MTU.
    PacketTooBig { mtu: u32 },
}

impl Connection {
    /// An ICMP error quoting one of our segments whose sequence number was `seq`.
    ///
    /// RFC 5927 §4.1: the quoted sequence number must lie in `[SND.UNA, SND.MAX)`, or the
    /// message is ignored (it may be forged). A hard error aborts only an opening connection;
    /// in synchronized states errors are soft (RFC 5461) and only change the error a later
    /// timeout reports. Packet Too Big lowers the MSS and resends (RFC 1191 §6.3).
    ///
    /// A passive open still in SYN-RECEIVED is Linux's request socket: a network or host
    /// unreachable (and time exceeded) quoting its SYN-ACK drops it silently, and other errors
    /// leave it be. A Fast Open child, already handed to the application, fails with the error
    /// instead, as Linux's does (it stays to be accepted, its data readable).
    pub fn handle_icmp_error(&mut self, _now: Instant, err: IcmpError, seq: u32) {
        let seq = SeqNum(seq);
        if !(seq.ge(self.snd_una) && seq.lt(self.snd_max.max(self.snd_una + 1))) {
            return;
        }
        if self.state == State::SynReceived && self.passive {
            match err {
                IcmpError::PacketTooBig { .. } => {}
                IcmpError::PortUnreachable if self.fast_open_child => {
                    return self.fail(ConnectionError::Refused)
                }
                IcmpError::Hard | IcmpError::Soft if self.fast_open_child => {
                    return self.fail(ConnectionError::Unreachable)
                }
                IcmpError::Soft => {
                    self.timers.stop_all();
                    self.error = Some(ConnectionError::Unreachable);
                    self.set_state(State::Closed);
                    return;
                }
                _ => return,
            }
        }
        let opening = matches!(self.state, State::SynSent | State::SynReceived);
        match err {
            IcmpError::PortUnreachable if opening => self.fail(ConnectionError::Refused),
            IcmpError::Hard if opening => self.fail(ConnectionError::Unreachable),
            IcmpError::PortUnreachable | IcmpError::Hard | IcmpError::Soft => {
                self.soft_error = Some(ConnectionError::Unreachable)
            }
            IcmpError::PacketTooBig { mtu } => {
                let ipv6 = self.tuple().local.is_ipv6();
                let floor = if ipv6 { 1280 } else { 576 };
                let ts = if self.ts_enabled { 12 } else { 0 };
                let budget = mss_for_mtu((mtu as usize).max(floor), ipv6);
                if self.state == State::SynSent {
                    // The SYN (or SYN with data) was too big: send the SYN again at once,
                    // plain, announcing the MSS the path allows (as Linux, whose advertised
                    // MSS follows the route's MTU). The data goes after the handshake.
                    if budget < self.adv_mss {
                        self.adv_mss = budget;
                        self.rcv_mss = budget;
                        self.snd_nxt = self.snd_una;
                        self.rtt_timed = None;
                    }
                    return;
                }
                self.path_on_too_big((mtu as usize).max(floor) as u32);
                if budget < self.seg_budget {
                    self.seg_budget = budget;
                    self.snd_mss = budget.saturating_sub(ts).max(1);
                    self.cc.set_mss(self.snd_mss);
                    // Resend what is outstanding in segments that fit.
                    self.snd_nxt = self.snd_una;
                    self.rtt_timed = None;
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// Inputs: time.

impl Connection {
    /// Run every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = self.rate.pacer_mut() {
            p.on_timeout(now);
        }
        while let Some(t) = self.timers.take_expired(now) {
            self.on_timer(now, t);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Retransmit => self.on_rto(now),
            Timer::Persist => {
                // RFC 9293 §3.8.6.1: probe the zero window, backing off like the RTO.
                if self.snd_wnd == 0 && self.unsent() > 0 {
                    self.probe_due = true;
                    self.persist_backoff = (self.persist_backoff + 1).min(16);
                    self.arm_persist(now);
                } else if self.unsent() > 0 && self.snd_max == self.snd_una {
                    // Data a cork held, with nothing in flight: it goes now, pushed.
                    self.wakeup_due = true;
                }
            }
            Timer::DelayedAck => {
                if self.ack_due == AckDue::Delayed {
                    self.ack_due = AckDue::Now;
                    // The ACK waited in vain for data to ride: not interactive after all.
                    self.pingpong = false;
                }
            }
            Timer::Keepalive => {
                let Some(k) = self.keepalive.as_deref().copied() else {
                    return;
                };
                if self.snd_max != self.snd_una || self.unsent() > 0 {
                    // Data in flight: the retransmission timer watches the peer instead.
                    self.timers.set(Timer::Keepalive, now + k.idle);
                    return;
                }
                if self.keepalive_probes >= k.count {
                    self.fail(ConnectionError::TimedOut);
                    return;
                }
                self.keepalive_probes += 1;
                self.probe_due = true;
                self.timers.set(Timer::Keepalive, now + k.interval);
            }
            Timer::Close => {
                // TIME-WAIT's 2·MSL ran out (or an orphan sat in FIN-WAIT-2 too long).
                self.timers.stop_all();
                self.set_state(State::Closed);
            }
            Timer::Connect => {
                if matches!(self.state, State::SynSent | State::SynReceived) {
                    self.fail(ConnectionError::TimedOut);
                }
            }
            Timer::UserTimeout => {
                if self.snd_max != self.snd_una {
                    self.fail(ConnectionError::TimedOut);
                }
            }
            Timer::Reorder => {
                // The hole outlived the reordering window: it is lost.
                if self.reorder_head.take() == Some(self.snd_una)
                    && self.recover.is_none()
                    && self.snd_max.gt(self.snd_una)
                    && self.state.is_synchronized()
                {
                    self.enter_recovery(now);
                }
            }
            Timer::Probe => {
                if self.state.is_synchronized() && self.snd_max.gt(self.snd_una) {
                    self.tlp_due = true;
                }
            }
        }
    }

    /// RFC 8985 §7.2: arm the tail loss probe after sending, while no recovery or timeout is
    /// under way and no probe of this flight is out. PTO = 2·SRTT, plus the peer's worst-case
    /// delayed ACK when one segment is in flight, and never later than the RTO.
    fn arm_tlp(&mut self, now: Instant) {
        let open = self.recover.is_none() && self.rto_count == 0 && self.tlp_high.is_none();
        // In microseconds: this runs on every segment of new data sent.
        let Some(srtt) = self.rtt.srtt_us() else {
            return;
        };
        if !self.sack_enabled || !open || self.snd_max == self.snd_una {
            return;
        }
        let mut pto = srtt.saturating_mul(2);
        if self.snd_max.since(self.snd_una) <= self.snd_mss {
            pto = pto.saturating_add(200_000);
        }
        let pto = pto.max(10_000);
        let at = Instant::from_micros(now.as_micros().saturating_add(pto));
        match self.timers.get(Timer::Retransmit) {
            // "If the RTO formula yields an earlier time, then use that time" (Linux's
            // `tcp_schedule_loss_probe`, RFC 8985 §7.2's PTO never later than the RTO): the
            // probe goes when the RTO would have, and the RTO, re-armed after it, waits one
            // more period behind it.
            Some(rto) if rto <= at => {
                self.timers.set(Timer::Probe, rto);
                self.timers.set(Timer::Retransmit, rto + self.rtt.rto());
            }
            _ => self.timers.set(Timer::Probe, at),
        }
    }

    /// RFC 6298 §5.4–5.6: retransmit the earliest unacknowledged segment, back off the timer.
    #[cold]
    fn on_rto(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::SynReceived => {
                let retries = if self.passive {
                    self.synack_retries
                } else {
                    self.syn_retries
                };
                if self.syn_count > retries {
                    if self.passive {
                        self.timers.stop_all();
                        self.error = Some(ConnectionError::TimedOut);
                        self.set_state(State::Closed);
                    } else {
                        self.fail(ConnectionError::TimedOut);
                    }
                    return;
                }
                self.rtt.back_off();
                self.rtt_timed = None;
                self.snd_nxt = self.iss;
                self.events.push(Event::Retransmit {
                    seq: self.iss,
                    len: 0,
                    cause: RetransmitCause::Timeout,
                });
            }
            State::Closed | State::Listen | State::TimeWait => {}
            _ => {
                if self.snd_max == self.snd_una {
                    return;
                }
                self.rto_count += 1;
                if self.rto_count > self.max_retransmissions {
                    self.fail(ConnectionError::TimedOut);
                    return;
                }
                self.path_on_rto(now);
                let flight = self.snd_max.since(self.snd_una);
                self.cc.on_rto(now, flight);
                self.rtt.back_off();
                // RFC 6298 §5.5–5.6: the timer runs again, with the backed-off RTO, whether or
                // not anything can be sent at once.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                self.rtt_timed = None;
                self.timers.stop(Timer::Probe);
                self.tlp_due = false;
                // Go back to SND.UNA and send again within the loss window, skipping what the
                // peer SACKed (RFC 6675 §5.1 allows keeping the scoreboard, and Linux does; a
                // peer that reneges is caught in `process_ack`). Duplicate ACKs of what was
                // sent before start no new recovery (RFC 6582 §4.1).
                self.snd_nxt = self.snd_una;
                self.recover_mark = self.snd_max;
                self.recover = None;
                self.rate.set_prr(None);
                self.dupacks = 0;
                self.inflation = 0;
                self.retransmit_at = None;
                self.high_rxt = self.snd_una;
                self.reorder_head = None;
                self.timers.stop(Timer::Reorder);
                self.check_reneging();
                self.events.push(Event::Retransmit {
                    seq: self.snd_una,
                    len: flight.min(self.snd_mss),
                    cause: RetransmitCause::Timeout,
                });
                self.push_congestion_event();
            }
        }
    }

    #[cold]
    fn arm_persist(&mut self, now: Instant) {
        let base = self.rtt.rto();
        let t = base
            .saturating_mul(1 << self.persist_backoff.min(16))
            .min(Duration::from_secs(60));
        self.timers.set(Timer::Persist, now + t);
    }

    /// Segments sent again and not yet acknowledged or SACKed (Linux's `tcpi_retrans`), in
    /// segments of the send MSS.
    pub fn retrans_out(&self) -> u32 {
        let high = self.rexmit_high.min(self.snd_max);
        if !high.gt(self.snd_una) {
            return 0;
        }
        let sacked: usize = self
            .scoreboard
            .blocks
            .iter()
            .map(|&(l, r)| {
                let (l, r) = (l.max(self.snd_una), r.min(high));
                if r.gt(l) {
                    r.since(l)
                } else {
                    0
                }
            })
            .sum();
        let bytes = high.since(self.snd_una).saturating_sub(sacked);
        bytes.div_ceil(self.snd_mss.max(1)) as u32
    }

    /// Bytes queued that have never been sent (from `SND.MAX`).
    fn unsent(&self) -> usize {
        self.fin_seq().since(self.snd_max)
    }
}

// -------------------------------------------------------------------------------------------
// Outputs: segments.

/// What the next data-bearing segment is.
struct Planned {
    seq: SeqNum,
    len: usize,
    fin: bool,
    retransmit: Option<RetransmitCause>,
    /// A tail loss probe.
    probe: bool,
    /// Set PSH though more data follows (the end of what a SYN carried, as Linux marks it).
    push: bool,
}

impl Connection {
    /// Write the next segment to send into `buf` — the whole TCP segment, header, options,
    /// payload and checksum — and return its length; `None` when nothing is due. `buf` bounds
    /// the segment (the caller passes the room the MTU leaves after the IP header).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.transmit_into(now, &mut SliceBuf(buf), 0)
    }

    /// As [`poll_transmit`](Self::poll_transmit), for a device that segments TCP itself
    /// (TSO): new data of up to `max_payload` bytes may go as one super-segment, exactly the
    /// concatenation of the segments of [`last_segment_gso`](Self::last_segment_gso) bytes
    /// that `poll_transmit` would have sent one after another (the same sequence numbers,
    /// flags for the last of them, PSH if any of them had it). Everything else (retransmissions,
    /// probes, control segments) goes as it would have. `max_payload` at or below the segment
    /// size (0, say) is `poll_transmit`.
    pub fn poll_transmit_tso(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_payload: usize,
    ) -> Option<usize> {
        self.transmit_into(now, &mut SliceBuf(buf), max_payload)
    }

    /// [`poll_transmit`](Self::poll_transmit) into a [`SegmentBuf`]: the segment is written
    /// into `buf.segment(len)` once its length is known; `buf.room()` bounds it.
    pub fn poll_transmit_to(&mut self, now: Instant, buf: &mut dyn SegmentBuf) -> Option<usize> {
        self.transmit_into(now, buf, 0)
    }

    /// The one transmit path behind the three above.
    pub(crate) fn transmit_into(
        &mut self,
        now: Instant,
        buf: &mut dyn SegmentBuf,
        max_payload: usize,
    ) -> Option<usize> {
        self.tx_ect = false;
        self.tx_gso = 0;
        if let Some(seq) = self.rst_reply.take() {
            return Some(self.emit(now, buf, TcpFlags::RST, seq, false, 0, 0));
        }
        if self.send_rst {
            // RFC 9293 §3.10.5 ABORT: <SEQ=SND.NXT><CTL=RST>; like Linux we acknowledge too.
            // SND.NXT as the peer knows it: the highest sent (a timeout may have rewound
            // ours), or the RST would fall below the peer's RCV.NXT and only draw a challenge.
            self.send_rst = false;
            let n = if std::mem::take(&mut self.rst_as_reply) {
                self.emit(now, buf, TcpFlags::RST, self.snd_una, false, 0, 0)
            } else {
                self.emit(
                    now,
                    buf,
                    TcpFlags::RST | TcpFlags::ACK,
                    self.snd_max,
                    true,
                    0,
                    0,
                )
            };
            self.timers.stop_all();
            self.set_state(State::Closed);
            return Some(n);
        }
        match self.state {
            State::Closed | State::Listen => None,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    if self.defer_syn {
                        return None;
                    }
                    let synack = self.state == State::SynReceived;
                    let mut flags = if synack {
                        TcpFlags::SYN | TcpFlags::ACK
                    } else {
                        TcpFlags::SYN
                    };
                    // RFC 3168 §6.1.1: an ECN-setup SYN has ECE and CWR, an ECN-setup SYN-ACK
                    // ECE alone. A SYN sent again asks no more (as Linux: ECN may be what the
                    // path drops).
                    if !synack && self.syn_count == 0 && self.ecn_mode == Ecn::On {
                        flags |= TcpFlags::ECE | TcpFlags::CWR;
                        self.ecn_setup_sent = true;
                    } else if synack && self.ecn {
                        flags |= TcpFlags::ECE;
                    }
                    // RFC 7413 §4.2.1: the first SYN of a Fast Open carries what fits of the
                    // data queued (and a cookie, or the endpoint's cookie-less mode).
                    let data = if synack {
                        0
                    } else {
                        self.fast_open_syn_room()
                            .map_or(0, |room| room.min(self.send_buf.len()))
                    };
                    let data = data.min(buf.room().saturating_sub(20 + TcpOptions::MAX_LEN));
                    if !synack && self.syn_count == 0 {
                        self.syn_fastopen = self
                            .fo_plan
                            .as_deref()
                            .and_then(|p| p.option)
                            .map(|o| o.experimental);
                        self.syn_data = data as u32;
                        if self.ts_offer {
                            self.syn_tsval = Some(self.tsval(now));
                        }
                    }
                    if self.syn_count > 0 {
                        self.stats.total_retrans += 1;
                    }
                    let n = self.emit(now, buf, flags, self.iss, synack, 0, data);
                    self.snd_nxt = self.iss + 1 + data;
                    self.snd_max = self.snd_max.max(self.snd_nxt);
                    self.syn_count += 1;
                    if self.syn_count == 1 {
                        // The SYN itself is timed, so a SYN-ACK that takes only part of the
                        // data still measures the round trip.
                        self.rtt_timed = Some((self.iss + 1, now));
                    }
                    self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                    Some(n)
                } else if self.fast_open_child && self.state == State::SynReceived {
                    // RFC 7413 §4.2.2: a Fast Open server may send data before the
                    // handshake's ACK.
                    self.poll_transmit_synchronized(now, buf, 0)
                } else if self.state == State::SynReceived && self.ack_due == AckDue::Now {
                    Some(self.emit(now, buf, TcpFlags::ACK, self.snd_nxt, true, 0, 0))
                } else {
                    None
                }
            }
            _ => self.poll_transmit_synchronized(now, buf, max_payload),
        }
    }

    fn poll_transmit_synchronized(
        &mut self,
        now: Instant,
        buf: &mut dyn SegmentBuf,
        tso: usize,
    ) -> Option<usize> {
        self.update_chrono(now);
        // Pacing holds data back until the next buffer's time (pure ACKs still go).
        let paced = self.rate.pacer_mut().filter(|p| !p.may_send(now));
        let planned = if let Some(p) = paced {
            p.hold();
            None
        } else {
            // Room for the largest TCP header (60 bytes) in front of a super-segment.
            self.plan(
                now,
                self.payload_room(buf.room()),
                buf.room(),
                tso.min(buf.room().saturating_sub(60)),
            )
        };
        if let Some(p) = planned {
            let mut flags = TcpFlags::ACK;
            if p.fin {
                flags |= TcpFlags::FIN;
            }
            let again = p.retransmit.is_some();
            let full = self.payload_room(buf.room());
            // A super-segment (`plan` set `tx_gso`; not an MTU probe, one segment longer than
            // the MSS) has the PSH of its last segment (which the device keeps on that
            // segment alone).
            let gso = usize::from(self.tx_gso);
            let last = p.seq
                + p.len
                    .saturating_sub(1)
                    .checked_div(gso)
                    .map_or(0, |k| k * gso);
            let burst_end = self.burst_push(p.seq, p.len, !again);
            if p.len > 0 && (p.push || burst_end || self.push_mark_in(last, p.seq + p.len, again)) {
                flags |= TcpFlags::PSH;
            }
            // RFC 3168 §6.1.2: new data is ECN-capable, and the first new data after a
            // window reduction for ECE carries CWR; retransmissions neither (§6.1.5).
            let new_data = p.len > 0 && p.retransmit.is_none();
            if self.ecn && new_data && self.ecn_cwr_due {
                flags |= TcpFlags::CWR;
                self.ecn_cwr_due = false;
            }
            let offset = p.seq.since(self.send_buf_seq);
            if gso > 0 {
                // A super-segment: the device cuts it and fills in each segment's checksum
                // (so `emit` leaves it); its segments count one each, as Linux's
                // `tcp_skb_pcount`.
                let pieces = p.len.div_ceil(gso) as u32;
                self.stats.segs_out = self.stats.segs_out.wrapping_add(pieces - 1);
            }
            let n = self.emit(now, buf, flags, p.seq, true, offset, p.len);
            self.tx_ect = self.ecn && new_data;
            // Minshall's mark follows new data only: a short retransmission (or the data a SYN
            // carried, sent again) holds nothing back, as Linux's `tcp_minshall_update`. (A
            // super-segment's short last segment counts.)
            if (p.len < full || (gso > 0 && p.len % gso != 0)) && p.retransmit.is_none() {
                self.snd_sml = self.snd_sml.max(p.seq + p.len);
            }
            let end = p.seq + p.len + p.fin as usize;
            if self.recover.is_some() {
                if let Some(prr) = self.rate.prr_mut() {
                    prr.on_send(end.since(p.seq));
                }
            }
            if self.rate.pacer().is_some() && p.len > 0 {
                let data_end = p.seq + p.len;
                let i = self.send_marks.partition_point(|m| m.end.lt(data_end));
                let buffer_end = self.send_marks.get(i).is_none_or(|m| m.end == data_end);
                let rate = pacing::rate(
                    self.cc.cwnd(),
                    self.cc.ssthresh(),
                    self.snd_max.max(end).since(self.snd_una),
                    self.rtt.srtt(),
                );
                if let Some(pacer) = self.rate.pacer_mut() {
                    pacer.on_send(now, p.len, buffer_end, rate);
                }
            }
            match p.retransmit {
                Some(cause) => {
                    self.rtt_timed = None;
                    self.stats.total_retrans += 1;
                    self.rexmit_high = self.rexmit_high.max(end);
                    if cause != RetransmitCause::Timeout {
                        // HighRxt follows recovery's retransmissions (RFC 6675), not a probe's.
                        if cause != RetransmitCause::TailLossProbe {
                            self.high_rxt = self.high_rxt.max(end);
                        }
                        self.events.push(Event::Retransmit {
                            seq: p.seq,
                            len: p.len,
                            cause,
                        });
                    }
                    if p.seq == self.snd_nxt {
                        self.snd_nxt = end;
                    }
                }
                None => {
                    if self.rtt_timed.is_none() && p.seq.ge(self.snd_max) {
                        self.rtt_timed = Some((end, now));
                    }
                    self.snd_nxt = end;
                }
            }
            if self.snd_nxt.gt(self.snd_max) {
                self.snd_max = self.snd_nxt;
            }
            if p.probe {
                // RFC 8985 §7.3: after the probe, the RTO guards the flight again.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            } else {
                if !self.timers.is_set(Timer::Retransmit) {
                    self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                }
                self.arm_tlp(now);
            }
            if let Some(t) = self.user_timeout.get() {
                if !self.timers.is_set(Timer::UserTimeout) {
                    self.timers.set(Timer::UserTimeout, now + t);
                }
            }
            return Some(n);
        }
        // Data waiting with nothing in flight — a zero window, a window too small for it, or a
        // cork: the persist timer probes (Linux's `tcp_check_probe_timer`; TCP_CORK's 200 ms
        // ceiling).
        self.push_once = false;
        if self.unsent() > 0 && self.snd_max == self.snd_una && !self.timers.is_set(Timer::Persist)
        {
            self.arm_persist(now);
        }
        if self.probe_due {
            // Zero-window and keepalive probes: <SEQ=SND.UNA-1>, which the peer must
            // acknowledge (RFC 9293 §3.8.4; this is what Linux sends).
            self.probe_due = false;
            let seq = self.snd_una - 1;
            return Some(self.emit(now, buf, TcpFlags::ACK, seq, true, 0, 0));
        }
        if self.ack_due == AckDue::Now || self.window_update_due() {
            // SEQ = SND.MAX, not SND.NXT: after a timeout rewound SND.NXT, an ACK numbered
            // below what the peer already received would be unacceptable to it (RFC 9293
            // §3.10.7.4) and draw an ACK that is unacceptable to us in turn, an ACK ping-pong
            // until a timeout. BSD and Linux number pure ACKs from the highest sent.
            return Some(self.emit(now, buf, TcpFlags::ACK, self.snd_max, true, 0, 0));
        }
        None
    }

    /// Payload bytes the next data segment can carry: the segment budget less this segment's
    /// options (timestamps, and SACK blocks while we hold out-of-order data), within `buf_len`.
    fn payload_room(&self, buf_len: usize) -> usize {
        let mut opts = if self.ts_enabled { 12 } else { 0 };
        if self.sack_enabled && !self.assembler.is_empty() {
            let max_blocks = if self.ts_enabled { 3 } else { 4 };
            let n = self.assembler.ranges().count().min(max_blocks);
            opts += 4 + 8 * n;
        }
        self.seg_budget
            .min(buf_len.saturating_sub(20))
            .saturating_sub(opts)
    }

    /// Whether reading has opened the window enough that the peer should hear of it: once the
    /// window still advertised has fallen to half of the largest we can offer, and the window
    /// now possible is at least twice it (receiver-side SWS avoidance, RFC 9293 §3.8.6.2.2, in
    /// the form Linux uses, so no update goes out while the window is mostly open).
    ///
    /// Not in SYN-RECEIVED, where only the SYN-ACK has advertised a window (a Fast Open child
    /// reading the SYN's data): Linux opens its window from there gradually and sends no update
    /// for such a read; the next segment out carries the new window anyway.
    fn window_update_due(&self) -> bool {
        if !self.read_since_ack
            || !self.state.may_receive()
            || self.fin_received
            || self.state == State::SynReceived
        {
            return false;
        }
        let advertised = self.rcv_advertised();
        let clamp = self.rcv_capacity().min(65535 << self.rcv_wscale);
        let possible = self.max_advertisable();
        2 * advertised <= clamp && possible >= (2 * advertised).max(self.rcv_mss)
    }

    /// The largest window the window field can carry now: the free buffer, capped by
    /// 65535 << scale (RFC 7323 §2.3).
    fn max_advertisable(&self) -> usize {
        self.rcv_window().min(65535 << self.rcv_wscale)
    }

    /// Decide the next segment that carries data or a FIN, if any may go now. With `tso` above
    /// the segment size, new data that would go as several segments in a row goes as one
    /// super-segment of up to `tso` bytes instead (see `poll_transmit_tso`).
    fn plan(&mut self, now: Instant, room: usize, buf_len: usize, tso: usize) -> Option<Planned> {
        let mss = self.snd_mss.min(room);
        if mss == 0 {
            return None;
        }
        let data_end = self.fin_seq();
        let fin_allowed = self.fin_queued
            && matches!(
                self.state,
                State::FinWait1 | State::Closing | State::LastAck
            );
        // 0. A tail loss probe (RFC 8985 §7.3): new data if the peer's window has room for it,
        // else the last segment again; either way outside the congestion window.
        if std::mem::take(&mut self.tlp_due) && self.snd_max.gt(self.snd_una) {
            self.tlp_high = Some(self.snd_max);
            let unsent = data_end.since(self.snd_max);
            let by_rwnd = (self.snd_una + self.snd_wnd).since(self.snd_max);
            if unsent > 0 && by_rwnd > 0 && self.snd_nxt == self.snd_max {
                let len = unsent.min(by_rwnd).min(mss);
                return Some(Planned {
                    seq: self.snd_max,
                    len,
                    fin: fin_allowed && self.snd_max + len == data_end,
                    retransmit: None,
                    probe: true,
                    push: false,
                });
            }
            let fin_sent = fin_allowed && self.snd_max.gt(data_end);
            let last = if fin_sent { data_end } else { self.snd_max };
            let len = last.since(self.snd_una).min(mss);
            let seq = last - len;
            if len > 0 || fin_sent {
                return Some(Planned {
                    seq,
                    len,
                    fin: fin_sent,
                    retransmit: Some(RetransmitCause::TailLossProbe),
                    probe: true,
                    push: false,
                });
            }
        }
        // A lost MTU probe's bytes, in segments of the current size (`conn::mtuprobe`).
        if let Some((seq, end)) = self.path_repair_next(mss) {
            return Some(Planned {
                seq,
                len: end.since(seq),
                fin: false,
                retransmit: Some(RetransmitCause::FastRetransmit),
                probe: false,
                push: false,
            });
        }
        // 1. A retransmission asked for by fast retransmit or a partial ACK.
        if let Some((seq, cause)) = self.retransmit_at.take() {
            if seq.ge(self.snd_una) && seq.lt(self.snd_max) {
                let mut end = (seq + mss).min(data_end);
                if let Some(next) = self.next_sacked_after(seq) {
                    end = end.min(next);
                }
                if let Some(hard) = self.hard_end_after(seq) {
                    end = end.min(hard);
                }
                let len = end.since(seq);
                let fin = fin_allowed && end == data_end && self.snd_max.gt(data_end);
                if len > 0 || fin {
                    return Some(Planned {
                        seq,
                        len,
                        fin,
                        retransmit: Some(cause),
                        probe: false,
                        push: false,
                    });
                }
            }
        }
        // 2. SACK recovery (RFC 6675 §5): fill holes below the highest SACKed byte while the
        // pipe leaves room in the congestion window.
        if self.recover.is_some() && self.sack_enabled {
            let cwnd = self.send_cwnd();
            if self.pipe() + mss <= cwnd.max(mss) {
                if let Some((seq, end)) = self.next_hole(mss, data_end) {
                    let fin = fin_allowed && end == data_end && self.snd_max.gt(data_end);
                    return Some(Planned {
                        seq,
                        len: end.since(seq),
                        fin,
                        retransmit: Some(RetransmitCause::Sack),
                        probe: false,
                        push: false,
                    });
                }
            }
        }
        // 3. New data (or data again after a timeout) within both windows; data sent again
        // skips what the peer SACKed.
        while self.snd_nxt.lt(self.snd_max) {
            match self.scoreboard.sacked_until(self.snd_nxt) {
                Some(end) => self.snd_nxt = end.min(self.snd_max),
                None => break,
            }
        }
        let seq = self.snd_nxt;
        let in_flight = if self.recover.is_some() && self.sack_enabled {
            self.pipe()
        } else {
            self.snd_nxt.since(self.snd_una)
        };
        // RFC 4821 §7.3: an MTU probe built from the head of the new data (`conn::mtuprobe`).
        match self.mtu_probe_plan(now, seq, buf_len) {
            mtuprobe::ProbePlan::Continue => {}
            mtuprobe::ProbePlan::Wait => return None,
            mtuprobe::ProbePlan::Send(len) => {
                return Some(Planned {
                    seq,
                    len,
                    fin: false,
                    retransmit: None,
                    probe: false,
                    push: false,
                })
            }
        }
        let cwnd = self.send_cwnd() + self.inflation;
        let by_cwnd = cwnd.saturating_sub(in_flight);
        let by_rwnd = (self.snd_una + self.snd_wnd).since(seq);
        let mut avail = data_end.since(seq);
        // The data a SYN carried and the SYN-ACK did not take goes again as the SYN carried
        // it, one piece (as Linux resends its SYN-data buffer), then new data follows.
        let mut fo_piece = false;
        match self.fo_resend_end {
            Some(end) if seq.lt(end) => {
                fo_piece = end.since(seq) <= avail.min(mss);
                avail = avail.min(end.since(seq));
            }
            Some(_) => self.fo_resend_end = None,
            None => {}
        }
        // A hole before SACKed bytes is sent whole, however short: it is no sliver.
        let mut fills_hole = false;
        if seq.lt(self.snd_max) {
            if let Some(next) = self.next_sacked_after(seq) {
                fills_hole = next.since(seq) <= avail;
                avail = avail.min(next.since(seq));
            }
        }
        // A record's end (MSG_EOR) is no segment's middle; a segment ending there goes
        // whatever Nagle says, as Linux sends any write-queue buffer but the last.
        let mut record_end = false;
        if let Some(hard) = self.hard_end_after(seq) {
            if hard.since(seq) <= avail {
                record_end = hard != data_end;
                avail = hard.since(seq);
            }
        }
        let wakeup = std::mem::take(&mut self.wakeup_due);
        let len = avail.min(by_cwnd).min(by_rwnd).min(mss);
        let fin = fin_allowed && seq.le(data_end) && seq + len == data_end;
        if len == 0 && !fin {
            return None;
        }
        let resend = seq.lt(self.snd_max);
        // TCP_CORK, or MSG_MORE on the last write: a short tail waits (Linux's
        // `TCP_NAGLE_CORK`), unless pushed once, probed, or a FIN goes with it.
        let held = (self.cork || self.more_hold) && !self.push_once && !wakeup;
        if len > 0 {
            // Sender-side silly window avoidance and Nagle (RFC 9293 §3.8.6.2.1, §3.7.4), for
            // new data and for data sent again alike: a full segment; or everything queued
            // when nothing is in flight (or Nagle is off, or a FIN goes with it); or half the
            // largest window the peer ever offered; or, sending again with nothing in flight,
            // all the peer's window allows. Never a sliver that only the congestion window cut
            // short, and no new data cut short by the peer's window alone: as Linux
            // (`tcp_snd_wnd_test`), that waits for the window to open or for the persist
            // timer's probe, which sends what fits.
            let full = len >= mss;
            let all = seq + len == data_end;
            let nothing_in_flight = in_flight == 0;
            let half_window = self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2;
            let whole_rwnd = nothing_in_flight && len == by_rwnd && resend;
            // Minshall's Nagle (as Linux): a short tail waits only while an earlier short
            // segment is unacknowledged.
            let small_in_flight = self.snd_sml.gt(self.snd_una);
            let tail = all && (!self.nagle || !small_in_flight || fin_allowed || resend);
            let hole = fills_hole && len == avail;
            let piece = fo_piece && len == avail;
            let record = record_end && len == avail;
            if held && !(full || fin_allowed || resend || record) {
                return None;
            }
            if !(full || half_window || whole_rwnd || tail || hole || piece || record || wakeup) {
                return None;
            }
            // TSO: the full segments that would follow this one in a row go with it; a short
            // last one too if it would go after them (the end of what is queued, sent as
            // Nagle allows, or the end of a record or of a hole), and not behind a cork.
            // Never the CWR segment (the flag belongs to its first segment alone: RFC 3168
            // §6.1.2) nor a resend.
            let cwr = self.ecn && self.ecn_cwr_due;
            if full && tso > mss && !resend && !wakeup && !cwr && !fo_piece {
                let mut ext = avail.min(by_cwnd).min(by_rwnd).min(tso);
                // It ends with the segment that ends a write (PSH: the device sets it on its
                // last segment alone). The PSH of a buffer filled inside it goes, as with
                // Linux's buffers, which TSO makes 64 KiB long and marks as a whole.
                let i = self.send_marks.partition_point(|m| m.end.le(seq));
                if let Some(m) = self
                    .send_marks
                    .range(i..)
                    .take_while(|m| m.end.lt(seq + ext))
                    .find(|m| m.push)
                {
                    ext = ext.min(m.end.since(seq).div_ceil(mss) * mss);
                }
                let whole = ext / mss * mss;
                let rest_goes = ext > whole
                    && ext == avail
                    && !held
                    && (record_end
                        || fills_hole
                        || (seq + ext == data_end
                            && (!self.nagle || !small_in_flight || fin_allowed)));
                let len = if rest_goes { ext } else { whole };
                if len > mss {
                    self.tx_gso = mss as u16;
                    return Some(Planned {
                        seq,
                        len,
                        fin: fin_allowed && seq + len == data_end,
                        retransmit: None,
                        probe: false,
                        push: false,
                    });
                }
            }
        }
        Some(Planned {
            seq,
            len,
            fin,
            retransmit: resend.then_some(RetransmitCause::Timeout),
            probe: false,
            push: wakeup || (fo_piece && len == avail),
        })
    }

    /// RFC 6675 §4 `pipe`: bytes believed in the network. Holes below the highest SACKed byte
    /// count as lost unless retransmitted (up to `HighRxt`); SACKed bytes are out.
    fn pipe(&self) -> usize {
        // After a timeout SND.NXT went back: what lies above it is not in flight any more.
        let Some(high_sacked) = self.scoreboard.highest() else {
            return self.snd_nxt.since(self.snd_una);
        };
        let above = self.snd_nxt.since(high_sacked);
        let mut retransmitted = 0;
        let mut cursor = self.snd_una;
        for &(s, e) in &self.scoreboard.blocks {
            // The hole [cursor, s): its part below HighRxt is in flight again.
            let hole_end = s.min(self.high_rxt);
            retransmitted += hole_end.since(cursor);
            cursor = e;
        }
        above + retransmitted
    }

    /// The window sending is bounded by: PRR's during a SACK recovery (RFC 6937), else the
    /// congestion controller's.
    fn send_cwnd(&self) -> usize {
        if self.recover.is_some() && self.sack_enabled {
            self.rate.prr().map_or(0, |p| p.cwnd())
        } else {
            self.cc.cwnd()
        }
    }

    /// Bytes in `[from, to)` the peer has not SACKed.
    fn unsacked_between(&self, from: SeqNum, to: SeqNum) -> usize {
        let sacked: usize = self
            .scoreboard
            .blocks
            .iter()
            .map(|&(l, r)| {
                let (l, r) = (l.max(from), r.min(to));
                if r.gt(l) {
                    r.since(l)
                } else {
                    0
                }
            })
            .sum();
        to.since(from).saturating_sub(sacked)
    }

    /// The next unSACKed range at or after `HighRxt` below the highest SACKed byte.
    fn next_hole(&self, mss: usize, data_end: SeqNum) -> Option<(SeqNum, SeqNum)> {
        let high = self.scoreboard.highest()?;
        let mut seq = self.high_rxt.max(self.snd_una);
        while seq.lt(high) {
            if let Some(end) = self.scoreboard.sacked_until(seq) {
                seq = end;
                continue;
            }
            let mut end = (seq + mss).min(high).min(data_end.max(seq + 1));
            if let Some(next) = self.next_sacked_after(seq) {
                end = end.min(next);
            }
            if let Some(hard) = self.hard_end_after(seq) {
                end = end.min(hard);
            }
            if end.gt(seq) {
                return Some((seq, end));
            }
            return None;
        }
        None
    }

    /// The start of the first SACKed block above `seq`.
    fn next_sacked_after(&self, seq: SeqNum) -> Option<SeqNum> {
        self.scoreboard
            .blocks
            .iter()
            .map(|b| b.0)
            .find(|s| s.gt(seq))
    }

    /// Build and write one segment. `offset`/`len` select payload from the send buffer.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        now: Instant,
        buf: &mut dyn SegmentBuf,
        flags: TcpFlags,
        seq: SeqNum,
        with_ack: bool,
        offset: usize,
        len: usize,
    ) -> usize {
        let syn = flags.contains(TcpFlags::SYN);
        let rst = flags.contains(TcpFlags::RST);
        let mut flags = flags;
        if self.ecn && self.ecn_echo && with_ack && !syn && !rst {
            // RFC 3168 §6.1.3: ECE on every ACK until the peer's CWR.
            flags |= TcpFlags::ECE;
        }
        let mut options = TcpOptions::default();
        let (window, edge) = if syn {
            options = self.syn_options(now);
            // RFC 7323 §2.2: the window of a SYN is never scaled.
            let w = self.rcv_window().min(65535);
            (w as u16, self.rcv_nxt + w)
        } else if rst {
            // A reset we send on our own connection (an abort) carries our timestamp, as
            // Linux's does (RFC 7323 §3.2: on every segment once negotiated); a reply to a
            // stray segment (no ACK of ours) carries none.
            if self.ts_enabled && with_ack {
                options.timestamp = Some(Timestamp {
                    tsval: self.tsval(now),
                    tsecr: self.ts_recent,
                });
            }
            (0, self.rcv_adv)
        } else {
            if self.ts_enabled {
                options.timestamp = Some(Timestamp {
                    tsval: self.tsval(now),
                    tsecr: self.ts_recent,
                });
            }
            if let Some((l, r)) = self.dsack.take().filter(|_| with_ack) {
                // RFC 2883 §4: a D-SACK block first.
                options.push_sack(SackBlock {
                    left: l.0,
                    right: r.0,
                });
            }
            if self.sack_enabled && with_ack && !self.assembler.is_empty() {
                let mut blocks = [(SeqNum(0), SeqNum(0)); 4];
                let n = self.assembler.sack_blocks(self.rcv_nxt, &mut blocks);
                for &(l, r) in &blocks[..n] {
                    options.push_sack(SackBlock {
                        left: l.0,
                        right: r.0,
                    });
                }
            }
            self.window_to_advertise()
        };
        let tuple = self.tuple();
        let repr = TcpRepr {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq: seq.0,
            ack: if with_ack { self.rcv_nxt.0 } else { 0 },
            flags,
            window,
            urgent: 0,
            options,
            payload: &[],
        };
        let hlen = repr.header_len();
        let total = hlen + len;
        self.stats.segs_out = self.stats.segs_out.wrapping_add(1);
        let buf = buf.segment(total);
        repr.write_header(buf);
        if self.tx_checksum && self.tx_gso == 0 {
            // The payload is summed as it is copied out of the send buffer: one pass over it.
            let (header, payload) = buf[..total].split_at_mut(hlen);
            let (_, sum) = self.send_buf.copy_out_and_sum(offset, payload);
            fill_checksum_with_payload_sum(header, tuple.local.ip(), tuple.remote.ip(), total, sum);
        } else if len > 0 {
            self.send_buf.copy_out(offset, &mut buf[hlen..total]);
        }
        if len > 0 && !syn && now.saturating_duration_since(self.lrcvtime) < self.ato.get() {
            // Data sent within the ACK timeout of data received: an interactive exchange,
            // whose ACKs ride the replies (Linux's `tcp_event_data_sent`, "ping-pong").
            self.pingpong = true;
        }
        if with_ack && !rst {
            if self.quick > 0 && self.ack_due != AckDue::None {
                self.quick -= 1;
            }
            self.last_ack_sent = self.rcv_nxt;
            self.ack_due = AckDue::None;
            self.bytes_unacked = 0;
            self.read_since_ack = false;
            self.timers.stop(Timer::DelayedAck);
            if edge.gt(self.rcv_adv) || syn {
                self.rcv_adv = edge;
            }
        }
        total
    }
}
