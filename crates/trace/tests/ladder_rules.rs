//! The ladder's rules on hand-made traces: merge order, numbering, window scaling, SACK blocks,
//! lost and retransmitted segments, folding and notes.

use std::net::SocketAddr;

use synack_tcp::{
    Direction, FourTuple, Instant, RetransmitCause, SegmentInfo, SeqNum, State, TraceEvent,
    TraceRecord,
};
use synack_trace::ladder::{FoldedRow, Ladder, NoteKind, Row};
use synack_wire::{SackBlock, TcpFlags, TcpOptions};

const C: &str = "198.18.0.1:40000";
const S: &str = "198.18.0.2:80";
const CISN: u32 = 1000;
const SISN: u32 = 5000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tuple(local: &str, remote: &str) -> FourTuple {
    FourTuple {
        local: addr(local),
        remote: addr(remote),
    }
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

fn flags(names: &[&str]) -> TcpFlags {
    let mut f = TcpFlags(0);
    for n in names {
        f |= match *n {
            "SYN" => TcpFlags::SYN,
            "ACK" => TcpFlags::ACK,
            "FIN" => TcpFlags::FIN,
            "PSH" => TcpFlags::PSH,
            "RST" => TcpFlags::RST,
            _ => unreachable!(),
        };
    }
    f
}

fn info(seq: u32, ack: u32, f: &[&str], len: usize) -> SegmentInfo {
    SegmentInfo {
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags: flags(f),
        window: 1000,
        len,
        options: TcpOptions::default(),
    }
}

fn rec(t: u64, event: TraceEvent) -> TraceRecord {
    TraceRecord { time: ms(t), event }
}

/// A segment `local` sent to `remote`, and the record of its arrival `delay` ms later at the
/// other end (unless `lost`): `(sender's record, receiver's record)`.
fn seg(
    t: u64,
    local: &str,
    remote: &str,
    s: SegmentInfo,
    lost: bool,
) -> (TraceRecord, Option<TraceRecord>) {
    let sent = rec(
        t,
        TraceEvent::Segment {
            dir: Direction::Sent,
            tuple: tuple(local, remote),
            seg: s,
        },
    );
    let recv = (!lost).then(|| {
        rec(
            t + 10,
            TraceEvent::Segment {
                dir: Direction::Received,
                tuple: tuple(remote, local),
                seg: s,
            },
        )
    });
    (sent, recv)
}

/// Client and server traces being built.
#[derive(Default)]
struct Traces {
    c: Vec<TraceRecord>,
    s: Vec<TraceRecord>,
}

impl Traces {
    fn c2s(&mut self, t: u64, s: SegmentInfo) -> &mut Self {
        self.c2s_maybe_lost(t, s, false)
    }

    fn c2s_maybe_lost(&mut self, t: u64, s: SegmentInfo, lost: bool) -> &mut Self {
        let (a, b) = seg(t, C, S, s, lost);
        self.c.push(a);
        self.s.extend(b);
        self
    }

    fn s2c(&mut self, t: u64, s: SegmentInfo) -> &mut Self {
        let (a, b) = seg(t, S, C, s, false);
        self.s.push(a);
        self.c.extend(b);
        self
    }

    fn state(&mut self, client: bool, t: u64, from: State, to: State) -> &mut Self {
        let (list, tp) = if client {
            (&mut self.c, tuple(C, S))
        } else {
            (&mut self.s, tuple(S, C))
        };
        list.push(rec(
            t,
            TraceEvent::State {
                tuple: tp,
                from,
                to,
            },
        ));
        self
    }

    /// Client SYN at 0 (wscale 2), server SYN-ACK at 10 (wscale 3), client ACK at 20.
    fn handshake(&mut self) -> &mut Self {
        let mut syn = info(CISN, 0, &["SYN"], 0);
        syn.options.mss = Some(1460);
        syn.options.window_scale = Some(2);
        syn.options.sack_permitted = true;
        let mut synack = info(SISN, CISN + 1, &["SYN", "ACK"], 0);
        synack.options.mss = Some(1400);
        synack.options.window_scale = Some(3);
        self.c2s(0, syn)
            .s2c(10, synack)
            .c2s(20, info(CISN + 1, SISN + 1, &["ACK"], 0))
    }

    /// Sorts each host's records by time (the builders push them out of order).
    fn ladder(&mut self) -> Ladder {
        self.c.sort_by_key(|r| r.time);
        self.s.sort_by_key(|r| r.time);
        Ladder::new(&[("client", &self.c), ("server", &self.s)])
    }
}

fn lines(l: &Ladder) -> Vec<String> {
    l.lines()
}

fn folded(rows: &[Row]) -> Vec<FoldedRow> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Folded(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn relative_numbers_scaled_windows_and_syn_options() {
    let mut t = Traces::default();
    t.handshake();
    t.c2s(30, info(CISN + 1, SISN + 1, &["PSH", "ACK"], 100));
    t.s2c(40, info(SISN + 1, CISN + 101, &["ACK"], 0));
    assert_eq!(
        lines(&t.ladder()),
        [
            "  0.000000  client --> server : SYN, seq=0, win=1000, mss=1460, wscale=2, sackOK",
            "  0.010000  server --> client : SYN-ACK, seq=0, ack=1, win=1000, mss=1400, wscale=3",
            // The window of every non-SYN segment is scaled by its sender's shift.
            "  0.020000  client --> server : ACK, seq=1, ack=1, win=4000",
            "  0.030000  client --> server : PSH-ACK, seq=1, ack=1, len=100, win=4000",
            "  0.040000  server --> client : ACK, seq=1, ack=101, win=8000",
        ]
    );
    assert_eq!(
        lines(&t.ladder().relative(false))[3],
        "  0.030000  client --> server : PSH-ACK, seq=1001, ack=5001, len=100, win=4000"
    );
}

#[test]
fn equal_times_keep_host_order_client_first() {
    let mut t = Traces::default();
    t.handshake();
    // Both send at 30 ms; the server's record is pushed first but the client's prints first.
    t.s2c(30, info(SISN + 1, CISN + 1, &["PSH", "ACK"], 10));
    t.c2s(30, info(CISN + 1, SISN + 1, &["PSH", "ACK"], 20));
    t.state(false, 30, State::Established, State::Established);
    let l = lines(&t.ladder());
    assert_eq!(
        &l[3..],
        [
            "  0.030000  client --> server : PSH-ACK, seq=1, ack=1, len=20, win=4000",
            "            server --> client : PSH-ACK, seq=1, ack=1, len=10, win=8000",
            "                                              server   ESTABLISHED -> ESTABLISHED",
        ]
    );
}

#[test]
fn sack_blocks_are_numbered_like_the_ack() {
    let mut t = Traces::default();
    t.handshake();
    let mut a = info(CISN + 1, SISN + 101, &["ACK"], 0);
    a.options.sack[0] = SackBlock {
        left: SISN + 201,
        right: SISN + 301,
    };
    a.options.sack[1] = SackBlock {
        left: SISN + 401,
        right: SISN + 501,
    };
    a.options.sack_len = 2;
    t.c2s(30, a);
    let rows = t.ladder().rows();
    let Row::Segment(s) = &rows[3] else {
        panic!("{:?}", rows[3])
    };
    assert_eq!(s.sack, [(201, 301), (401, 501)]);
    assert_eq!(
        lines(&t.ladder())[3],
        "  0.030000  client --> server : ACK, seq=1, ack=101, win=4000, SACK=201-301,401-501"
    );
}

#[test]
fn lost_and_retransmitted_segments_are_marked() {
    let mut t = Traces::default();
    t.handshake();
    let d = info(CISN + 1, SISN + 1, &["PSH", "ACK"], 100);
    t.c2s_maybe_lost(30, d, true);
    t.c.push(rec(
        230,
        TraceEvent::Retransmit {
            tuple: tuple(C, S),
            seq: SeqNum(CISN + 1),
            len: 100,
            cause: RetransmitCause::Timeout,
        },
    ));
    t.c2s(230, d);
    let l = lines(&t.ladder());
    assert_eq!(
        &l[3..],
        [
            "  0.030000  client --> server : PSH-ACK, seq=1, ack=1, len=100, win=4000 (lost)",
            "  0.230000  client   retransmit seq=1, len=100 (timeout)",
            "            client --> server : PSH-ACK, seq=1, ack=1, len=100, win=4000 (retransmission)",
        ]
    );
    let s = t.ladder().summary();
    assert_eq!((s.flows[0].retransmitted, s.flows[0].lost), (1, 1));
    assert_eq!(s.retransmit_events, 1);
}

#[test]
fn without_the_receivers_trace_nothing_is_called_lost() {
    let mut t = Traces::default();
    t.handshake();
    t.c2s_maybe_lost(30, info(CISN + 1, SISN + 1, &["PSH", "ACK"], 100), true);
    t.c.sort_by_key(|r| r.time);
    let only_client = Ladder::new(&[("client", &t.c)]);
    let l = only_client.lines();
    // The SYN-ACK the client received is not drawn: the server's trace would draw it.
    assert_eq!(l.len(), 3);
    assert_eq!(
        l[2],
        "  0.030000  client --> 198.18.0.2:80 : PSH-ACK, seq=1, ack=1, len=100, win=4000"
    );
}

/// Client sends `n` data segments of 100 bytes from 30 ms, 1 ms apart, the server ACKs every
/// second one.
fn bulk(t: &mut Traces, n: u32) {
    for i in 0..n {
        t.c2s(
            30 + u64::from(i),
            info(CISN + 1 + 100 * i, SISN + 1, &["ACK"], 100),
        );
        if i % 2 == 1 {
            t.s2c(
                41 + u64::from(i),
                info(SISN + 1, CISN + 1 + 100 * (i + 1), &["ACK"], 0),
            );
        }
    }
}

#[test]
fn three_data_segments_stay_unfolded() {
    let mut t = Traces::default();
    t.handshake();
    bulk(&mut t, 3);
    let rows = t.ladder().rows();
    assert!(folded(&rows).is_empty());
    assert_eq!(rows.len(), 3 + 3 + 1);
}

#[test]
fn four_data_segments_and_their_acks_fold() {
    let mut t = Traces::default();
    t.handshake();
    bulk(&mut t, 4);
    t.c2s(60, info(CISN + 401, SISN + 1, &["FIN", "ACK"], 0));
    let l = t.ladder();
    let rows = l.rows();
    let f = folded(&rows);
    assert_eq!(f.len(), 1);
    let f = &f[0];
    assert_eq!((f.segments, f.acks, f.seq_start, f.seq_end), (4, 2, 1, 401));
    assert_eq!((f.start, f.end), (ms(30), ms(44)));
    assert_eq!(rows.len(), 3 + 1 + 1);
    assert_eq!(
        &lines(&l)[3..],
        [
            "  0.030000  client --> server : 4 data segments, seq=1..401 (400 B) in 14.000 ms; 2 ACKs back",
            "  0.060000  client --> server : FIN-ACK, seq=401, ack=1, win=4000",
        ]
    );
    // fold_min raises the bar; fold(false) turns folding off.
    assert!(folded(&l.clone().fold_min(5).rows()).is_empty());
    assert!(folded(&l.clone().fold(false).rows()).is_empty());
}

#[test]
fn control_flags_state_changes_and_reverse_data_end_a_run() {
    // A FIN on the fifth segment: the first four fold, the FIN is drawn.
    let mut t = Traces::default();
    t.handshake();
    bulk(&mut t, 4);
    t.c2s(34, info(CISN + 401, SISN + 1, &["FIN", "PSH", "ACK"], 100));
    let rows = t.ladder().rows();
    assert!(matches!(&rows[3], Row::Folded(f) if f.segments == 4 && f.acks == 0));
    assert!(matches!(&rows[4], Row::Segment(s) if s.flags.contains(TcpFlags::FIN)));
    // The ACKs after the FIN are drawn one by one.
    assert!(matches!(&rows[5], Row::Segment(s) if s.flags == TcpFlags::ACK));
    assert_eq!(rows.len(), 7);

    // A state change in the middle splits the run into two short ones: nothing folds.
    let mut t = Traces::default();
    t.handshake();
    for i in 0..6u32 {
        t.c2s(
            30 + u64::from(i),
            info(CISN + 1 + 100 * i, SISN + 1, &["ACK"], 100),
        );
    }
    t.state(true, 32, State::Established, State::FinWait1);
    // (State records at 32 ms come after the segment sent at 32 ms: push order.)
    let rows = t.ladder().rows();
    assert!(folded(&rows).is_empty(), "{rows:?}");

    // Data flowing back splits it too.
    let mut t = Traces::default();
    t.handshake();
    for i in 0..6u32 {
        t.c2s(
            30 + u64::from(i),
            info(CISN + 1 + 100 * i, SISN + 1, &["ACK"], 100),
        );
    }
    t.s2c(32, info(SISN + 1, CISN + 1, &["PSH", "ACK"], 5));
    assert!(folded(&t.ladder().rows()).is_empty());
}

#[test]
fn events_inside_a_run_are_counted_and_retransmissions_summed() {
    let mut t = Traces::default();
    t.handshake();
    // Six segments, the second lost; a fast retransmit of it inside the run.
    for i in 0..6u32 {
        t.c2s_maybe_lost(
            30 + u64::from(i),
            info(CISN + 1 + 100 * i, SISN + 1, &["ACK"], 100),
            i == 1,
        );
    }
    t.s2c(41, info(SISN + 1, CISN + 101, &["ACK"], 0));
    t.s2c(42, info(SISN + 1, CISN + 101, &["ACK"], 0));
    t.c.push(rec(
        52,
        TraceEvent::Retransmit {
            tuple: tuple(C, S),
            seq: SeqNum(CISN + 101),
            len: 100,
            cause: RetransmitCause::FastRetransmit,
        },
    ));
    t.c.push(rec(
        52,
        TraceEvent::Congestion {
            tuple: tuple(C, S),
            cwnd: 300,
            ssthresh: 300,
        },
    ));
    t.c2s(52, info(CISN + 101, SISN + 1, &["ACK"], 100));
    t.s2c(62, info(SISN + 1, CISN + 601, &["ACK"], 0));
    // After the run: a note prints on its own line.
    t.c.push(rec(
        90,
        TraceEvent::Congestion {
            tuple: tuple(C, S),
            cwnd: 600,
            ssthresh: 300,
        },
    ));
    let l = t.ladder();
    let rows = l.rows();
    let f = &folded(&rows)[0];
    assert_eq!((f.segments, f.retransmitted, f.lost, f.acks), (7, 1, 1, 3));
    assert_eq!((f.retransmit_events, f.congestion_events), (1, 1));
    assert_eq!((f.seq_start, f.seq_end, f.bytes_sent), (1, 601, 700));
    assert!(matches!(
        rows.last(),
        Some(Row::Note(n)) if n.kind == NoteKind::Congestion { cwnd: 600, ssthresh: 300 }
    ));
    assert_eq!(
        &lines(&l)[3..],
        [
            "  0.030000  client --> server : 7 data segments, seq=1..601 (600 B) in 32.000 ms, 1 retransmitted, 1 lost; 3 ACKs back",
            "  0.090000  client   congestion: cwnd=600, ssthresh=300",
        ]
    );
}

#[test]
fn two_connections_show_ports() {
    let mut t = Traces::default();
    t.handshake();
    let c2 = "198.18.0.1:40001";
    let (a, b) = seg(50, c2, S, info(7, 0, &["SYN"], 0), false);
    t.c.push(a);
    t.s.extend(b);
    let l = lines(&t.ladder());
    assert_eq!(
        l[0],
        "  0.000000  client:40000 --> server:80 : SYN, seq=0, win=1000, mss=1460, wscale=2, sackOK"
    );
    assert_eq!(
        l[3],
        "  0.050000  client:40001 --> server:80 : SYN, seq=0, win=1000"
    );
    assert_eq!(t.ladder().summary().handshakes, 2);
}

#[test]
fn phases_from_a_hand_made_trace() {
    let mut t = Traces::default();
    t.handshake();
    t.state(true, 20, State::SynSent, State::Established);
    t.c2s(20, info(CISN + 1, SISN + 1, &["PSH", "ACK"], 10));
    // The reply in two segments; the first is lost and resent, so the client has everything
    // only when the resend arrives (at 100 + 10 ms).
    let (a, _) = seg(40, S, C, info(SISN + 1, CISN + 11, &["ACK"], 100), true);
    t.s.push(a);
    t.s2c(41, info(SISN + 101, CISN + 11, &["PSH", "ACK"], 100));
    t.s2c(100, info(SISN + 1, CISN + 11, &["ACK"], 100));
    t.c2s(120, info(CISN + 11, SISN + 201, &["FIN", "ACK"], 0));
    t.state(true, 120, State::Established, State::FinWait1);
    t.s2c(130, info(SISN + 201, CISN + 12, &["FIN", "ACK"], 0));
    t.state(false, 130, State::Established, State::LastAck);
    t.state(true, 140, State::FinWait1, State::TimeWait);
    t.c2s(140, info(CISN + 12, SISN + 202, &["ACK"], 0));
    t.state(false, 150, State::LastAck, State::Closed);
    let p = t.ladder().phases();
    assert_eq!(p.client.as_deref(), Some("client"));
    assert_eq!(p.server.as_deref(), Some("server"));
    assert_eq!(p.connect_start, Some(ms(0)));
    assert_eq!(p.handshake_done, Some(ms(20)));
    assert_eq!(p.request_sent, Some(ms(20)));
    assert_eq!(p.first_response_byte, Some(ms(51)));
    assert_eq!(p.last_response_byte, Some(ms(110)));
    assert_eq!(p.close_start, Some(ms(120)));
    assert_eq!(p.active_closer.as_deref(), Some("client"));
    assert_eq!(p.time_wait_start, Some(ms(140)));
    assert_eq!(p.closed, Some(ms(150)));
    assert_eq!(p.time_wait_end, None);
}

#[test]
fn empty_and_odd_traces_do_not_panic() {
    let none: Vec<TraceRecord> = Vec::new();
    let l = Ladder::new(&[("a", &none)]);
    assert_eq!(l.render(), "");
    assert_eq!(l.phases(), Default::default());
    // A RST out of nowhere, an ACK with no SYN seen, a wrapped sequence number.
    let mut t = Traces::default();
    t.c2s(0, info(u32::MAX - 10, 77, &["ACK"], 50));
    t.c2s(1, info((u32::MAX - 10).wrapping_add(50), 77, &["ACK"], 50));
    t.s2c(2, info(77, 0, &["RST"], 0));
    let l = t.ladder();
    assert_eq!(
        lines(&l),
        [
            "  0.000000  client --> server : ACK, seq=0, ack=0, len=50, win=1000",
            "  0.001000  client --> server : ACK, seq=50, ack=0, len=50, win=1000",
            "  0.002000  server --> client : RST, seq=0, win=1000",
        ]
    );
    assert_eq!(l.phases().connect_start, None);
}

#[test]
fn zero_delay_segments_arrive_after_they_leave() {
    // Over a path of zero delay everything happens at 0 ms. The server's records come second
    // in host order, but its reception of the SYN must print before its SYN-ACK reaches the
    // client, and that before the client's ACK.
    let syn = info(CISN, 0, &["SYN"], 0);
    let synack = info(SISN, CISN + 1, &["SYN", "ACK"], 0);
    let ack = info(CISN + 1, SISN + 1, &["ACK"], 0);
    let ev = |dir, local, remote, seg| {
        rec(
            0,
            TraceEvent::Segment {
                dir,
                tuple: tuple(local, remote),
                seg,
            },
        )
    };
    let c = vec![
        rec(
            0,
            TraceEvent::State {
                tuple: tuple(C, S),
                from: State::Closed,
                to: State::SynSent,
            },
        ),
        ev(Direction::Sent, C, S, syn),
        ev(Direction::Received, C, S, synack),
        rec(
            0,
            TraceEvent::State {
                tuple: tuple(C, S),
                from: State::SynSent,
                to: State::Established,
            },
        ),
        ev(Direction::Sent, C, S, ack),
    ];
    let s = vec![
        ev(Direction::Received, S, C, syn),
        rec(
            0,
            TraceEvent::State {
                tuple: tuple(S, C),
                from: State::Listen,
                to: State::SynReceived,
            },
        ),
        ev(Direction::Sent, S, C, synack),
        ev(Direction::Received, S, C, ack),
        rec(
            0,
            TraceEvent::State {
                tuple: tuple(S, C),
                from: State::SynReceived,
                to: State::Established,
            },
        ),
    ];
    let l = Ladder::new(&[("client", c), ("server", s)]);
    assert_eq!(
        l.lines(),
        [
            "  0.000000  client   CLOSED -> SYN-SENT",
            "            client --> server : SYN, seq=0, win=1000",
            "                                              server   LISTEN -> SYN-RECEIVED",
            "            server --> client : SYN-ACK, seq=0, ack=1, win=1000",
            "            client   SYN-SENT -> ESTABLISHED",
            "            client --> server : ACK, seq=1, ack=1, win=1000",
            "                                              server   SYN-RECEIVED -> ESTABLISHED",
        ]
    );
    assert!(l.summary().flows.iter().all(|f| f.lost == 0));
}
