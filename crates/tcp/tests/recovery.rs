//! Targeted tests of loss recovery, flow control and the ACK and send policies
//! (RFC 5681, RFC 6582, RFC 6675, RFC 6298, RFC 7323, RFC 9293 §3.8).

mod harness;

use harness::*;
use synack_tcp::{Config, ConnectionError, Duration, Keepalive, State, Timer};
use synack_wire::{SackBlock, TcpOptions, Timestamp};

fn mss_opts(mss: u16, sack: bool) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        sack_permitted: sack,
        ..TcpOptions::default()
    }
}

#[test]
fn three_duplicate_acks_trigger_a_fast_retransmit() {
    let cfg = Config {
        congestion: synack_tcp::Algorithm::NewReno,
        ..plain()
    };
    let mut c = established_with(&cfg, mss_opts(1000, false));
    assert_eq!(c.send(&[7u8; 5000]), Ok(5000));
    let out = output(&mut c, t(20));
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|s| s.data.len() == 1000));
    // Segment 2 (rel seq 1000) is lost; 3, 4, 5 each draw a duplicate ACK of 1000.
    input(&mut c, t(30), &peer_ack(1000));
    assert!(output(&mut c, t(30)).is_empty());
    input(&mut c, t(31), &peer_ack(1000));
    input(&mut c, t(32), &peer_ack(1000));
    assert!(
        output(&mut c, t(32)).is_empty(),
        "two duplicates are not enough"
    );
    input(&mut c, t(33), &peer_ack(1000));
    let out = output(&mut c, t(33));
    assert_eq!(keys(&out)[0], (A, ISS + 1 + 1000, IRS + 1, 1000));
    // ssthresh = FlightSize/2 (RFC 5681 eq. 4): 4000/2.
    assert_eq!(c.ssthresh(), 2000);
    // The full ACK ends recovery.
    input(&mut c, t(40), &peer_ack(5000));
    assert_eq!(c.cwnd(), 2000);
}

#[test]
fn newreno_partial_ack_retransmits_the_next_hole() {
    let cfg = plain();
    let mut c = established_with(&cfg, mss_opts(1000, false));
    c.send(&[1u8; 6000]).unwrap();
    output(&mut c, t(20));
    // Segments at 1000 and 3000 lost.
    for i in 0..4 {
        input(&mut c, t(30 + i), &peer_ack(1000));
    }
    let out = output(&mut c, t(34));
    assert_eq!(out[0].seq, ISS + 1 + 1000);
    // Partial ACK up to 3000 (RFC 6582 §3.2 step 4): resend 3000 at once.
    input(&mut c, t(60), &peer_ack(3000));
    let out = output(&mut c, t(60));
    assert_eq!(keys(&out)[0], (A, ISS + 1 + 3000, IRS + 1, 1000));
}

#[test]
fn sack_repairs_several_holes_in_one_round_trip() {
    let cfg = Config {
        sack: true,
        ..plain()
    };
    let mut c = established_with(&cfg, mss_opts(1000, true));
    assert!(c.sack_enabled());
    c.send(&[3u8; 10_000]).unwrap();
    let out = output(&mut c, t(20));
    assert_eq!(out.len(), 10);
    // Lost: segments starting at 1000, 4000 and 7000. The peer SACKs what it holds.
    let base = ISS + 1;
    let b = |l: u32, r: u32| SackBlock {
        left: base + l,
        right: base + r,
    };
    let dup = |blocks: &[SackBlock]| {
        let mut s = peer_ack(1000);
        for &x in blocks {
            s.options.push_sack(x);
        }
        s
    };
    input(&mut c, t(30), &peer_ack(1000));
    let arrivals = [
        vec![b(2000, 3000)],
        vec![b(2000, 4000)],
        vec![b(5000, 6000), b(2000, 4000)],
        vec![b(5000, 7000), b(2000, 4000)],
        vec![b(8000, 9000), b(5000, 7000), b(2000, 4000)],
        vec![b(8000, 10_000), b(5000, 7000), b(2000, 4000)],
    ];
    let mut retransmitted = Vec::new();
    for (i, blocks) in arrivals.iter().enumerate() {
        input(&mut c, t(31 + i as u64), &dup(blocks));
        for s in output(&mut c, t(31 + i as u64)) {
            retransmitted.push((s.seq - base, s.data.len()));
        }
    }
    // All three holes went out again before any of them could be acknowledged.
    assert_eq!(
        retransmitted,
        vec![(1000, 1000), (4000, 1000), (7000, 1000)]
    );
    // The three arrive; one cumulative ACK covers everything.
    input(&mut c, t(60), &peer_ack(10_000));
    assert_eq!(c.send_queued(), 0);
    assert!(c.timer(Timer::Retransmit).is_none());
}

#[test]
fn rto_doubles_on_each_timeout_and_resets_on_a_new_ack() {
    let cfg = plain();
    let mut c = established(&cfg);
    // The handshake measured 10 ms: RTO = max(200 ms floor, 10 + 4*5) = 200 ms.
    assert_eq!(c.rto(), Duration::from_millis(200));
    c.send(b"x").unwrap();
    output(&mut c, t(20));
    let mut fired = Vec::new();
    let mut now = t(20);
    for _ in 0..4 {
        now = c.timer(Timer::Retransmit).unwrap();
        c.handle_timeout(now);
        let out = output(&mut c, now);
        assert_eq!(keys(&out), vec![(P | A, ISS + 1, IRS + 1, 1)]);
        fired.push(now.as_millis());
    }
    assert_eq!(fired, vec![220, 620, 1420, 3020]);
    assert_eq!(c.rto(), Duration::from_millis(3200));
    input(&mut c, now + Duration::from_millis(5), &peer_ack(1));
    assert_eq!(c.rto(), Duration::from_millis(200));
}

#[test]
fn a_zero_window_is_probed_with_backoff_and_reopened() {
    let cfg = plain();
    let mut c = established(&cfg);
    // The peer closes its window.
    input(&mut c, t(20), &peer_ack(0).win(0));
    c.send(b"blocked").unwrap();
    assert!(output(&mut c, t(21)).is_empty());
    let first = c.timer(Timer::Persist).expect("persist timer armed");
    assert_eq!(first, t(21) + Duration::from_millis(200));
    c.handle_timeout(first);
    // The probe: <SEQ=SND.UNA-1>, no data.
    assert_eq!(keys(&output(&mut c, first)), vec![(A, ISS, IRS + 1, 0)]);
    input(&mut c, first, &peer_ack(0).win(0));
    let second = c.timer(Timer::Persist).unwrap();
    assert_eq!(second - first, Duration::from_millis(400));
    c.handle_timeout(second);
    assert_eq!(keys(&output(&mut c, second)), vec![(A, ISS, IRS + 1, 0)]);
    // The window opens: the data goes.
    input(&mut c, second, &peer_ack(0).win(1000));
    assert_eq!(
        keys(&output(&mut c, second)),
        vec![(P | A, ISS + 1, IRS + 1, 7)]
    );
    assert!(c.timer(Timer::Persist).is_none());
}

#[test]
fn nagle_coalesces_small_writes() {
    let cfg = plain();
    let mut c = established(&cfg);
    c.send(b"a").unwrap();
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(P | A, ISS + 1, IRS + 1, 1)]
    );
    for w in [b"b", b"c", b"d"] {
        c.send(w).unwrap();
        assert!(
            output(&mut c, t(21)).is_empty(),
            "held while 'a' is unacknowledged"
        );
    }
    input(&mut c, t(30), &peer_ack(1));
    let out = output(&mut c, t(30));
    assert_eq!(keys(&out), vec![(P | A, ISS + 2, IRS + 1, 3)]);
    assert_eq!(out[0].data, b"bcd");
}

#[test]
fn nodelay_sends_every_write_at_once() {
    let cfg = plain();
    let mut c = established(&cfg);
    c.set_nodelay(true);
    let mut sent = Vec::new();
    for (i, w) in [b"a", b"b", b"c"].iter().enumerate() {
        c.send(*w).unwrap();
        sent.extend(keys(&output(&mut c, t(20 + i as u64))));
    }
    assert_eq!(
        sent,
        vec![
            (P | A, ISS + 1, IRS + 1, 1),
            (P | A, ISS + 2, IRS + 1, 1),
            (P | A, ISS + 3, IRS + 1, 1)
        ]
    );
}

#[test]
fn delayed_ack_acks_every_second_full_segment_or_after_the_timeout() {
    let cfg = Config {
        delayed_ack: Some(Duration::from_millis(40)),
        ..plain()
    };
    let mut c = established_with(&cfg, mss_opts(1000, false));
    // Our MSS toward the peer is 1460 (MTU 1500): full segments are 1460 bytes.
    let seg = |rel: u32| Seg::new(A, IRS + 1 + rel, ISS + 1).data(&[9u8; 1460]);
    input(&mut c, t(20), &seg(0));
    assert!(
        output(&mut c, t(20)).is_empty(),
        "one segment: the ACK waits"
    );
    input(&mut c, t(21), &seg(1460));
    assert_eq!(
        keys(&output(&mut c, t(21))),
        vec![(A, ISS + 1, IRS + 1 + 2920, 0)]
    );
    input(&mut c, t(30), &seg(2920));
    assert!(output(&mut c, t(30)).is_empty());
    assert_eq!(c.timer(Timer::DelayedAck), Some(t(70)));
    c.handle_timeout(t(70));
    assert_eq!(
        keys(&output(&mut c, t(70))),
        vec![(A, ISS + 1, IRS + 1 + 4380, 0)]
    );
    // Out-of-order data is acknowledged at once.
    input(&mut c, t(80), &seg(5840));
    assert_eq!(
        keys(&output(&mut c, t(80))),
        vec![(A, ISS + 1, IRS + 1 + 4380, 0)]
    );
}

#[test]
fn keepalive_finds_a_vanished_peer() {
    let cfg = Config {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            count: 3,
        }),
        ..plain()
    };
    let mut c = established(&cfg);
    let mut probes = Vec::new();
    while let Some(at) = c.poll_timeout() {
        c.handle_timeout(at);
        for s in output(&mut c, at) {
            probes.push((at.as_millis(), s.key()));
        }
        if c.state() == State::Closed {
            break;
        }
    }
    assert_eq!(
        probes,
        vec![
            (10_010, (A, ISS, IRS + 1, 0)),
            (11_010, (A, ISS, IRS + 1, 0)),
            (12_010, (A, ISS, IRS + 1, 0)),
            // Given up: a RST tells the peer, in case it is still there.
            (13_010, (R | A, ISS + 1, IRS + 1, 0)),
        ]
    );
    assert_eq!(c.error(), Some(ConnectionError::TimedOut));
}

#[test]
fn keepalive_answered_keeps_the_connection() {
    let cfg = Config {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            count: 3,
        }),
        ..plain()
    };
    let mut c = established(&cfg);
    for round in 0..5u64 {
        let at = c.timer(Timer::Keepalive).unwrap();
        c.handle_timeout(at);
        assert_eq!(keys(&output(&mut c, at)), vec![(A, ISS, IRS + 1, 0)]);
        // The peer answers the probe with an ACK.
        input(&mut c, at + Duration::from_millis(10), &peer_ack(0));
        assert_eq!(c.state(), State::Established, "round {round}");
    }
}

#[test]
fn paws_drops_an_old_duplicate() {
    let cfg = Config {
        timestamps: true,
        ..plain()
    };
    let ts = |v: u32| TcpOptions {
        timestamp: Some(Timestamp { tsval: v, tsecr: 0 }),
        ..TcpOptions::default()
    };
    let mut opts = mss_opts(1000, false);
    opts.timestamp = Some(Timestamp {
        tsval: 5000,
        tsecr: 1,
    });
    let mut c = established_with(&cfg, opts);
    assert!(c.timestamps_enabled());
    let mut fresh = Seg::new(P | A, IRS + 1, ISS + 1).data(b"new");
    fresh.options = ts(6000);
    input(&mut c, t(20), &fresh);
    let out = output(&mut c, t(20));
    assert_eq!(out[0].ack, IRS + 4);
    assert_eq!(out[0].options.timestamp.unwrap().tsecr, 6000);
    // An old duplicate from an earlier incarnation: sequence space fits, timestamp is older.
    let mut old = Seg::new(P | A, IRS + 4, ISS + 1).data(b"OLD");
    old.options = ts(5500);
    input(&mut c, t(21), &old);
    let out = output(&mut c, t(21));
    assert_eq!(
        keys(&out),
        vec![(A, ISS + 1, IRS + 4, 0)],
        "dropped, answered by an ACK"
    );
    assert_eq!(c.recv_available(), 3);
}

#[test]
fn receive_window_never_shrinks_and_opens_when_the_reader_drains() {
    let cfg = Config {
        recv_buffer: 4000,
        ..plain()
    };
    let mut c = established_with(&cfg, mss_opts(1000, false));
    let seg = |rel: u32, n: usize| Seg::new(A, IRS + 1 + rel, ISS + 1).data(&vec![5u8; n]);
    input(&mut c, t(20), &seg(0, 1460));
    input(&mut c, t(20), &seg(1460, 1460));
    let out = output(&mut c, t(20));
    assert_eq!(out.last().unwrap().win, 4000 - 2920);
    input(&mut c, t(21), &seg(2920, 1080));
    let out = output(&mut c, t(21));
    assert_eq!(out.last().unwrap().win, 0);
    // More data than the window: dropped, answered with the same window.
    input(&mut c, t(22), &seg(4000, 100));
    assert_eq!(
        keys(&output(&mut c, t(22))),
        vec![(A, ISS + 1, IRS + 1 + 4000, 0)]
    );
    // The reader drains: a window update.
    let mut buf = vec![0u8; 4000];
    assert_eq!(c.recv(&mut buf), Ok(4000));
    let out = output(&mut c, t(23));
    assert_eq!(keys(&out), vec![(A, ISS + 1, IRS + 1 + 4000, 0)]);
    assert_eq!(out[0].win, 4000);
}

#[test]
fn a_lost_tail_is_probed_before_the_retransmission_timeout() {
    // RFC 8985 §7: with SACK, when a flight's last ACKs stop coming, a probe (the last segment
    // again) goes out after 2·SRTT, so the peer's SACK can trigger fast recovery instead of the
    // RTO firing.
    let cfg = Config {
        sack: true,
        ..plain()
    };
    let mut c = established_with(&cfg, mss_opts(1000, true));
    // The handshake measured SRTT = 10 ms.
    c.send(&[4u8; 3000]).unwrap();
    assert_eq!(output(&mut c, t(20)).len(), 3);
    let pto = c.timer(Timer::Probe).expect("probe timer armed");
    let rto = c.timer(Timer::Retransmit).unwrap();
    assert!(pto < rto, "the probe comes first ({pto:?} vs {rto:?})");
    assert_eq!(pto, t(20) + Duration::from_millis(20));
    c.handle_timeout(pto);
    let out = output(&mut c, pto);
    // The last segment again.
    assert_eq!(keys(&out), vec![(P | A, ISS + 1 + 2000, IRS + 1, 1000)]);
    // One probe per flight: no second one before the RTO.
    assert!(c.timer(Timer::Probe).is_none());
    // The peer had lost the first two: its SACK of the probe starts recovery at once.
    let mut sack = peer_ack(0);
    sack.options.push_sack(SackBlock {
        left: ISS + 1 + 2000,
        right: ISS + 1 + 3000,
    });
    input(&mut c, pto + Duration::from_millis(10), &sack);
    let out = output(&mut c, pto + Duration::from_millis(10));
    assert_eq!(out[0].seq, ISS + 1);
}

/// RFC 8985 §6.2, the reordering window (`Config::reorder_window`): three duplicates start no
/// recovery at once. If the hole fills within a quarter of the RTT it was reordering and
/// nothing is resent; if it is still open when the window ends, fast retransmit.
#[test]
fn the_reordering_window_waits_before_fast_retransmit() {
    for late_arrives in [true, false] {
        let cfg = Config {
            reorder_window: true,
            ..plain()
        };
        let mut c = established_with(&cfg, mss_opts(1000, false));
        // The handshake measured SRTT = 10 ms: the window is 2.5 ms.
        c.send(&[1u8; 5000]).unwrap();
        assert_eq!(output(&mut c, t(20)).len(), 5);
        for _ in 0..3 {
            input(&mut c, t(30), &peer_ack(0));
        }
        assert!(output(&mut c, t(30)).is_empty(), "no retransmission yet");
        let window = c.timer(Timer::Reorder).expect("the reordering window runs");
        assert_eq!(window, t(30) + Duration::from_micros(2500));
        if late_arrives {
            input(&mut c, t(31), &peer_ack(5000));
            assert!(c.timer(Timer::Reorder).is_none());
            assert!(output(&mut c, t(31)).is_empty());
        } else {
            c.handle_timeout(window);
            let out = output(&mut c, window);
            assert_eq!(keys(&out)[0], (A, ISS + 1, IRS + 1, 1000));
        }
    }
}
