//! A hostile peer: a tiny MSS (CVE-2019-11479) and floods of segments that draw challenge
//! ACKs (RFC 5961 §7).

mod harness;

use harness::*;
use synack_tcp::conn::MIN_SND_MSS;
use synack_tcp::{Config, Duration};
use synack_wire::TcpOptions;

/// A peer announcing MSS 1 gets segments of MIN_SND_MSS bytes (less timestamps), not one-byte
/// slivers, and the data still goes through.
#[test]
fn a_tiny_peer_mss_is_raised_to_the_floor() {
    for ts in [false, true] {
        let cfg = Config {
            timestamps: ts,
            nagle: false,
            ..plain()
        };
        let opts = TcpOptions {
            mss: Some(1),
            timestamp: ts.then_some(synack_wire::Timestamp { tsval: 1, tsecr: 0 }),
            ..TcpOptions::default()
        };
        let mut c = established_with(&cfg, opts);
        let per_seg = MIN_SND_MSS - if ts { 12 } else { 0 };
        assert_eq!(c.mss(), per_seg);
        c.send(&[7u8; 1000]).unwrap();
        let out = output(&mut c, t(20));
        assert!(!out.is_empty());
        assert!(out.iter().all(|s| s.data.len() == per_seg), "{out:?}");
    }
}

/// In-window RSTs and SYNs draw one challenge ACK per 500 ms on a connection, however many
/// arrive; the next interval draws one again.
#[test]
fn challenge_acks_are_rate_limited_per_connection() {
    let mut c = established(&plain());
    let mut acks = 0;
    for i in 0..100u32 {
        // An in-window RST that is not at RCV.NXT, and an in-window SYN.
        input(&mut c, t(20 + u64::from(i)), &Seg::new(R, IRS + 10 + i, 0));
        input(&mut c, t(20 + u64::from(i)), &Seg::new(S, IRS + 10 + i, 0));
        acks += output(&mut c, t(20 + u64::from(i))).len();
    }
    assert_eq!(acks, 1, "one challenge ACK in the first 120 ms");
    assert_eq!(c.challenges_limited(), 199);
    input(&mut c, t(600), &Seg::new(R, IRS + 5, 0));
    let out = output(&mut c, t(600));
    assert_eq!(keys(&out), vec![(A, ISS + 1, IRS + 1, 0)], "a new interval");
    // Data below the window is always acknowledged (the peer is retransmitting).
    input(
        &mut c,
        t(601),
        &Seg::new(A, IRS - 100, ISS + 1).data(b"old"),
    );
    assert_eq!(output(&mut c, t(601)).len(), 1);
    let _ = Duration::ZERO;
}

/// After a timeout rewound SND.NXT, a pure ACK is numbered SND.MAX: the peer has seen bytes up
/// to there, and an ACK numbered below its RCV.NXT would be unacceptable to it (each side
/// then answers the other's ACKs with ACKs it drops in turn, until a timeout).
#[test]
fn pure_acks_after_a_timeout_are_numbered_from_the_highest_sent() {
    let mut c = established(&plain());
    c.send(&[1u8; 3000]).unwrap();
    let out = output(&mut c, t(20));
    assert_eq!(out.len(), 6, "536-byte segments");
    let snd_max = ISS + 1 + 3000;
    // No ACK: the retransmission timer fires and SND.NXT goes back to SND.UNA.
    let rto = c.timer(synack_tcp::Timer::Retransmit).unwrap();
    c.handle_timeout(rto);
    let resent = output(&mut c, rto);
    assert_eq!(resent[0].seq, ISS + 1, "the first segment again");
    // The peer (which got everything) sends data: our ACK carries SEQ = SND.MAX.
    input(&mut c, rto, &Seg::new(A, IRS + 1, ISS + 1).data(b"hello"));
    let acks: Vec<Seg> = output(&mut c, rto)
        .into_iter()
        .filter(|s| s.data.is_empty())
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].seq, snd_max);
    assert_eq!(acks[0].ack, IRS + 1 + 5);
}

/// One byte at the edge of a 1 MiB window does not make the receive ring allocate 1 MiB: it
/// is dropped (and would be sent again), while out-of-order data that follows a hole
/// segment by segment is kept as usual.
#[test]
fn out_of_order_data_grows_the_ring_only_with_what_is_held() {
    let cfg = Config {
        recv_buffer: 1 << 20,
        ..plain()
    };
    let mut c = established(&cfg);
    input(
        &mut c,
        t(20),
        &Seg::new(A, IRS + 1 + 900_000, ISS + 1).data(b"x"),
    );
    let _ = output(&mut c, t(20));
    assert!(
        c.buffer_bytes() < 1024,
        "{} bytes allocated",
        c.buffer_bytes()
    );
    assert_eq!(c.ooo_dropped(), 1);
    // A hole of one segment, then 300 segments after it: all kept, then delivered in order.
    let seg = vec![9u8; 500];
    for i in 1..=300u32 {
        input(
            &mut c,
            t(30),
            &Seg::new(A, IRS + 1 + i * 500, ISS + 1).data(&seg),
        );
    }
    assert_eq!(c.ooo_dropped(), 1);
    input(&mut c, t(40), &Seg::new(A, IRS + 1, ISS + 1).data(&seg));
    assert_eq!(c.recv_available(), 301 * 500);
}

/// An abort after a timeout rewound SND.NXT is numbered SND.MAX too: the peer's RCV.NXT is
/// there, and a RST below it would only draw a challenge ACK (RFC 5961 §3.2).
#[test]
fn an_abort_after_a_timeout_is_numbered_from_the_highest_sent() {
    let mut c = established(&plain());
    c.send(&[1u8; 3000]).unwrap();
    let _ = output(&mut c, t(20));
    let rto = c.timer(synack_tcp::Timer::Retransmit).unwrap();
    c.handle_timeout(rto);
    let _ = output(&mut c, rto);
    c.abort();
    let out = output(&mut c, rto);
    assert_eq!(keys(&out), vec![(R | A, ISS + 1 + 3000, IRS + 1, 0)]);
}

/// After a timeout, data sent again skips what the peer SACKed, and a short hole before a
/// SACKed block goes out whole (it is no silly-window sliver): found as a stall, with the
/// hole never resent and no timer left running.
#[test]
fn after_a_timeout_only_the_unsacked_hole_is_sent_again() {
    let cfg = Config {
        sack: true,
        ..plain()
    };
    let opts = TcpOptions {
        mss: Some(1000),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    let mut c = established_with(&cfg, opts);
    c.send(&[3u8; 3000]).unwrap();
    let out = output(&mut c, t(20));
    assert_eq!(out.len(), 3);
    // The peer holds everything but the first 352 bytes.
    let mut ack = Seg::new(A, IRS + 1, ISS + 1);
    ack.options.push_sack(synack_wire::SackBlock {
        left: ISS + 1 + 352,
        right: ISS + 1 + 3000,
    });
    input(&mut c, t(30), &ack);
    let _ = output(&mut c, t(30));
    let rto = c.timer(synack_tcp::Timer::Retransmit).unwrap();
    c.handle_timeout(rto);
    let resent = output(&mut c, rto);
    assert_eq!(keys(&resent), vec![(A, ISS + 1, IRS + 1, 352)]);
    assert!(c.timer(synack_tcp::Timer::Retransmit).is_some());
}
