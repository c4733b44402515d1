//! Proportional Rate Reduction (RFC 6937) in SACK fast recovery, as Linux runs it: the exact
//! segments each ACK of a recovery releases.

mod harness;

use harness::*;
use synack_tcp::{Config, Connection};
use synack_wire::{SackBlock, TcpOptions};

fn sack_conn() -> Connection {
    let cfg = Config {
        sack: true,
        ..plain()
    };
    let opts = TcpOptions {
        mss: Some(1000),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    established_with(&cfg, opts)
}

/// An ACK of `ack` (relative) carrying SACK blocks (relative `[l, r)`).
fn sack(ack: u32, blocks: &[(u32, u32)]) -> Seg {
    let mut s = peer_ack(ack);
    for &(l, r) in blocks {
        s.options.push_sack(SackBlock {
            left: ISS + 1 + l,
            right: ISS + 1 + r,
        });
    }
    s
}

/// (relative seq, len) of what the connection sends now.
fn sent(c: &mut Connection, ms: u64) -> Vec<(u32, usize)> {
    output(c, t(ms))
        .iter()
        .filter(|s| !s.data.is_empty())
        .map(|s| (s.seq - (ISS + 1), s.data.len()))
        .collect()
}

/// Ten segments out, segments 0, 3..=7 lost or late; cwnd 10, so CUBIC's ssthresh is 7.
/// Entering recovery on the third SACK, PRR sends only the fast retransmission (one
/// segment delivered, pipe 1 below ssthresh: conservation), not the burst of every hole that
/// RFC 6675 alone would allow with pipe far below cwnd = ssthresh. The ACK that then advances
/// SND.UNA by two delivered segments releases three (PRR-SSRB: delivered + 1). An old ACK
/// below SND.UNA that SACKs two of those lets two more go, by the window of the last ACK.
#[test]
fn prr_paces_recovery_by_delivered_data() {
    let mut c = sack_conn();
    c.send(&[5u8; 10_000]).unwrap();
    assert_eq!(sent(&mut c, 20).len(), 10);
    input(&mut c, t(30), &sack(0, &[(1000, 2000)]));
    input(&mut c, t(30), &sack(0, &[(1000, 3000)]));
    assert!(sent(&mut c, 30).is_empty());
    input(&mut c, t(30), &sack(0, &[(1000, 3000), (8000, 9000)]));
    assert_eq!(sent(&mut c, 30), vec![(0, 1000)]);
    assert_eq!(c.ssthresh(), 7000);
    assert_eq!(c.cwnd(), 2000, "pipe 1 + sndcnt 1");

    input(&mut c, t(42), &sack(4000, &[(8000, 9000)]));
    assert_eq!(
        sent(&mut c, 42),
        vec![(4000, 1000), (5000, 1000), (6000, 1000)]
    );
    assert_eq!(c.cwnd(), 4000);
    c.send(&[6u8; 10_000]).unwrap();
    assert_eq!(sent(&mut c, 42), vec![], "the window is full");

    // Reordered: an ACK below SND.UNA, SACKing 5000..7000 (sent again above).
    input(&mut c, t(44), &sack(3000, &[(5000, 7000)]));
    assert_eq!(sent(&mut c, 44), vec![(7000, 1000), (10_000, 1000)]);
}

/// tcpi_lost and tcpi_reordering as Linux counts them: the holes below the highest SACKed
/// byte are lost in recovery; a hole SACKed by its first transmission below the highest
/// SACKed byte shows reordering that deep.
#[test]
fn lost_and_reordering_follow_the_scoreboard() {
    let mut c = sack_conn();
    c.send(&[5u8; 10_000]).unwrap();
    sent(&mut c, 20);
    input(&mut c, t(30), &sack(0, &[(2000, 3000)]));
    input(&mut c, t(31), &sack(0, &[(2000, 3000), (6000, 7000)]));
    input(
        &mut c,
        t(32),
        &sack(0, &[(2000, 3000), (6000, 7000), (8000, 9000)]),
    );
    assert_eq!(c.ca_state(), 3);
    assert_eq!(c.lost_out(), 6);
    assert_eq!(c.sacked_out(), 3);
    assert_eq!(sent(&mut c, 32), vec![(0, 1000)]);
    input(
        &mut c,
        t(39),
        &sack(0, &[(2000, 4000), (6000, 7000), (8000, 9000)]),
    );
    assert_eq!(sent(&mut c, 39), vec![(1000, 1000)]);
    assert_eq!(c.lost_out(), 5);
    assert_eq!(c.reordering(), 6, "9000 - 3000 bytes deep");
    input(&mut c, t(200), &peer_ack(10_000));
    assert_eq!((c.ca_state(), c.lost_out(), c.sacked_out()), (0, 0, 0));
}

/// RACK (RFC 8985 §6.2): one SACKed segment above a hole is below DupThresh, yet the hole is
/// lost once the reordering window has passed: min_RTT / 4 (the handshake's 10 ms: 2.5 ms,
/// rounded up to 3) plus 2 ms of timer slack. Then the recovery sends the hole alone.
#[test]
fn rack_reorder_timer_recovers_below_dupthresh() {
    let mut c = sack_conn();
    c.send(&[5u8; 4000]).unwrap();
    assert_eq!(sent(&mut c, 20).len(), 4);
    input(&mut c, t(30), &sack(0, &[(2000, 3000)]));
    assert!(sent(&mut c, 30).is_empty());
    assert_eq!(c.timer(synack_tcp::Timer::Reorder), Some(t(35)));
    c.handle_timeout(t(34));
    assert!(sent(&mut c, 34).is_empty());
    c.handle_timeout(t(35));
    assert_eq!(c.ca_state(), 3);
    assert_eq!(sent(&mut c, 35), vec![(0, 1000)]);
    // The hole's ACK (one segment delivered, SND.UNA advanced): PRR-SSRB sends the next.
    input(&mut c, t(45), &sack(1000, &[(2000, 3000)]));
    assert_eq!(sent(&mut c, 45), vec![(1000, 1000)]);
}

/// A hole filled before the window passes was reordering, not loss: no recovery.
#[test]
fn rack_reorder_timer_stops_when_the_hole_fills() {
    let mut c = sack_conn();
    c.send(&[5u8; 4000]).unwrap();
    sent(&mut c, 20);
    input(&mut c, t(30), &sack(0, &[(2000, 3000)]));
    input(&mut c, t(32), &sack(3000, &[]));
    c.handle_timeout(t(35));
    assert_eq!(c.ca_state(), 0);
    assert!(sent(&mut c, 35).is_empty());
}
