//! One trace vocabulary from the core to the CLI: what a test asserts, the ladder prints and the
//! pcap shows are the same events.

use synack_wire::{TcpFlags, TcpOptions, TcpRepr};

use crate::conn::{Event, RetransmitCause};
use crate::seq::SeqNum;
use crate::state::{FourTuple, State};
use crate::time::Instant;

/// Which way a segment went, seen from the host that recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Sent,
    Received,
}

/// The header of a segment, without its payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: TcpFlags,
    pub window: u16,
    pub len: usize,
    pub options: TcpOptions,
}

impl SegmentInfo {
    pub fn from_repr(seg: &TcpRepr<'_>) -> SegmentInfo {
        SegmentInfo {
            seq: SeqNum(seg.seq),
            ack: SeqNum(seg.ack),
            flags: seg.flags,
            window: seg.window,
            len: seg.payload.len(),
            options: seg.options,
        }
    }

    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn seq_len(&self) -> usize {
        self.len
            + self.flags.contains(TcpFlags::SYN) as usize
            + self.flags.contains(TcpFlags::FIN) as usize
    }
}

/// Something that happened in a TCP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    Segment {
        dir: Direction,
        tuple: FourTuple,
        seg: SegmentInfo,
    },
    State {
        tuple: FourTuple,
        from: State,
        to: State,
    },
    Retransmit {
        tuple: FourTuple,
        seq: SeqNum,
        len: usize,
        cause: RetransmitCause,
    },
    Congestion {
        tuple: FourTuple,
        cwnd: usize,
        ssthresh: usize,
    },
}

impl TraceEvent {
    pub fn from_conn(tuple: FourTuple, ev: Event) -> TraceEvent {
        match ev {
            Event::StateChanged { from, to } => TraceEvent::State { tuple, from, to },
            Event::Retransmit { seq, len, cause } => TraceEvent::Retransmit {
                tuple,
                seq,
                len,
                cause,
            },
            Event::Congestion { cwnd, ssthresh } => TraceEvent::Congestion {
                tuple,
                cwnd,
                ssthresh,
            },
        }
    }
}

/// A trace event with the time it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    pub time: Instant,
    pub event: TraceEvent,
}
