//! Explicit Congestion Notification (RFC 3168), segment by segment: the ECN-setup handshake
//! both ways, ECT(0) on new data only, the echo of a CE mark until CWR, and the once-per-window
//! reduction for ECE.

mod harness;

use harness::*;
use synack_tcp::{Config, Connection, Ecn, SeqNum, State};
use synack_wire::{TcpFlags, TcpOptions, TcpRepr};

const E: TcpFlags = TcpFlags::ECE;
const W: TcpFlags = TcpFlags::CWR;

fn with(ecn: Ecn) -> Config {
    Config { ecn, ..plain() }
}

fn accept(cfg: &Config, flags: TcpFlags) -> Connection {
    let syn = TcpRepr {
        src_port: remote().port(),
        dst_port: local().port(),
        seq: IRS,
        ack: 0,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    Connection::accept(cfg, t(0), tuple(), SeqNum(ISS), 0, &syn)
}

/// RFC 3168 §6.1.1: an ECN-setup SYN (ECE and CWR) gets an ECN-setup SYN-ACK (ECE alone),
/// unless ECN is off; a plain SYN a plain SYN-ACK.
#[test]
fn passive_open_agrees_to_an_ecn_setup_syn() {
    for (mode, syn, want) in [
        (Ecn::Passive, S | E | W, S | A | E),
        (Ecn::On, S | E | W, S | A | E),
        (Ecn::Off, S | E | W, S | A),
        (Ecn::Passive, S, S | A),
        (Ecn::Passive, S | E, S | A),
    ] {
        let mut c = accept(&with(mode), syn);
        let out = output(&mut c, t(0));
        assert_eq!(out[0].flags, want, "{mode:?} {syn}");
        assert_eq!(c.ecn_enabled(), want.contains(E));
    }
}

/// RFC 3168 §6.1.1: with ECN on, our SYN has ECE and CWR (a retransmitted one not), and only
/// an ECN-setup SYN-ACK (ECE without CWR) agrees.
#[test]
fn active_open_asks_and_agrees() {
    let cfg = with(Ecn::On);
    let mut c = Connection::connect(&cfg, t(0), tuple(), SeqNum(ISS), 0);
    assert_eq!(output(&mut c, t(0))[0].flags, S | E | W);
    c.handle_timeout(t(1000));
    assert_eq!(
        output(&mut c, t(1000))[0].flags,
        S,
        "the SYN again asks no more"
    );

    for (synack, agreed) in [(S | A | E, true), (S | A | E | W, false), (S | A, false)] {
        let mut c = Connection::connect(&cfg, t(0), tuple(), SeqNum(ISS), 0);
        let _ = output(&mut c, t(0));
        input(&mut c, t(10), &Seg::new(synack, IRS, ISS + 1));
        assert_eq!(c.state(), State::Established);
        assert_eq!(c.ecn_enabled(), agreed, "{synack}");
    }
    // Passive mode does not ask.
    let mut c = Connection::connect(&with(Ecn::Passive), t(0), tuple(), SeqNum(ISS), 0);
    assert_eq!(output(&mut c, t(0))[0].flags, S);
}

fn ecn_established() -> Connection {
    let cfg = with(Ecn::On);
    let mut c = Connection::connect(&cfg, t(0), tuple(), SeqNum(ISS), 0);
    let _ = output(&mut c, t(0));
    input(&mut c, t(10), &Seg::new(S | A | E, IRS, ISS + 1));
    assert!(!c.last_segment_ect());
    assert_eq!(keys(&output(&mut c, t(10))), vec![(A, ISS + 1, IRS + 1, 0)]);
    assert!(
        !c.last_segment_ect(),
        "a pure ACK is not ECN-capable (§6.1.4)"
    );
    c
}

/// The next segment's length and whether it goes out ECN-capable.
fn next(c: &mut Connection, now: synack_tcp::Instant) -> (usize, bool) {
    let mut buf = [0u8; 1600];
    let n = c.poll_transmit(now, &mut buf).expect("a segment");
    (n, c.last_segment_ect())
}

/// RFC 3168 §6.1.2 and §6.1.5: new data is sent ECT(0), a retransmission not.
#[test]
fn new_data_is_ect_retransmissions_not() {
    let mut c = ecn_established();
    c.send(&[1u8; 100]).unwrap();
    assert_eq!(next(&mut c, t(20)), (120, true));
    let rto = c.poll_timeout().unwrap();
    c.handle_timeout(rto);
    assert_eq!(next(&mut c, rto), (120, false));
}

/// RFC 3168 §6.1.3: a CE mark is acknowledged at once with ECE, and every ACK carries ECE
/// until a segment with CWR arrives.
#[test]
fn ce_is_echoed_until_cwr() {
    let mut c = ecn_established();
    c.set_rx_ce(true);
    input(&mut c, t(20), &Seg::new(A, IRS + 1, ISS + 1).data(&[0; 10]));
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(A | E, ISS + 1, IRS + 11, 0)]
    );
    input(
        &mut c,
        t(30),
        &Seg::new(A, IRS + 11, ISS + 1).data(&[0; 10]),
    );
    assert_eq!(output(&mut c, t(30))[0].flags, A | E, "still echoed");
    input(
        &mut c,
        t(40),
        &Seg::new(A | W, IRS + 21, ISS + 1).data(&[0; 10]),
    );
    assert_eq!(output(&mut c, t(40))[0].flags, A, "CWR ends the echo");
}

/// RFC 3168 §6.1.2: ECE halves the window (once per window of data), nothing is resent, and
/// the next new data carries CWR.
#[test]
fn ece_reduces_once_per_window_and_cwr_follows() {
    let mut c = ecn_established();
    c.send(&vec![1u8; 4000]).unwrap();
    let out = output(&mut c, t(20));
    assert!(out.len() >= 2);
    let cwnd = c.cwnd();
    input(&mut c, t(30), &Seg::new(A | E, IRS + 1, ISS + 1001));
    assert!(c.cwnd() < cwnd, "{} < {cwnd}", c.cwnd());
    let ssthresh = c.ssthresh();
    input(&mut c, t(31), &Seg::new(A | E, IRS + 1, ISS + 2001));
    assert_eq!(
        c.ssthresh(),
        ssthresh,
        "no second reduction in the same window"
    );
    c.set_nodelay(true);
    c.send(&[2u8; 10]).unwrap();
    let out = output(&mut c, t(32));
    let first_new = out.iter().find(|s| !s.data.is_empty()).unwrap();
    assert!(first_new.flags.contains(W), "{:?}", first_new.flags);
    assert_eq!(
        out.iter().filter(|s| s.flags.contains(W)).count(),
        1,
        "CWR once"
    );
}
