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
