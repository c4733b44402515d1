//! Per-transition tests of the connection state machine, RFC 9293 §3.10, with exact segments.
//! ISS = 1000 (ours) and IRS = 2000 (the peer's), no options, immediate ACKs.

mod harness;

use harness::*;
use synack_tcp::{Config, Connection, ConnectionError, RecvError, SendError, SeqNum, State};

// ---- Opening ---------------------------------------------------------------------------------

#[test]
fn active_open_three_way_handshake() {
    let cfg = plain();
    let mut c = Connection::connect(&cfg, t(0), tuple(), SeqNum(ISS), 0);
    assert_eq!(c.state(), State::SynSent);
    // SYN(seq=x)
    assert_eq!(keys(&output(&mut c, t(0))), vec![(S, ISS, 0, 0)]);
    // SYN-ACK(seq=y, ack=x+1) -> ESTABLISHED, ACK(seq=x+1, ack=y+1)
    input(&mut c, t(50), &Seg::new(S | A, IRS, ISS + 1));
    assert_eq!(c.state(), State::Established);
    assert_eq!(keys(&output(&mut c, t(50))), vec![(A, ISS + 1, IRS + 1, 0)]);
    // The handshake measured one RTT.
    assert_eq!(
        c.srtt(),
        Some(secs(0) + std::time::Duration::from_millis(50))
    );
}

#[test]
fn passive_open_three_way_handshake() {
    let cfg = plain();
    let mut c = syn_received(&cfg);
    input(&mut c, t(50), &Seg::new(A, IRS + 1, ISS + 1));
    assert_eq!(c.state(), State::Established);
    assert!(output(&mut c, t(50)).is_empty());
}

#[test]
fn data_queued_in_syn_sent_leaves_with_the_third_segment() {
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    assert_eq!(c.send(b"GET / HTTP/1.1\r\n\r\n"), Ok(18));
    assert!(
        output(&mut c, t(1)).is_empty(),
        "nothing before the SYN-ACK"
    );
    input(&mut c, t(50), &Seg::new(S | A, IRS, ISS + 1));
    // One RTT after connect began, the request leaves, carrying the handshake's ACK.
    assert_eq!(
        keys(&output(&mut c, t(50))),
        vec![(P | A, ISS + 1, IRS + 1, 18)]
    );
}

#[test]
fn simultaneous_open() {
    // RFC 9293 §3.5 figure 8: both SYNs cross; each side answers SYN-ACK from its ISS.
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    input(&mut c, t(10), &Seg::new(S, IRS, 0));
    assert_eq!(c.state(), State::SynReceived);
    assert_eq!(keys(&output(&mut c, t(10))), vec![(S | A, ISS, IRS + 1, 0)]);
    input(&mut c, t(20), &Seg::new(S | A, IRS, ISS + 1));
    assert_eq!(c.state(), State::Established);
    // The peer's SYN-ACK repeats its SYN, which is old: acknowledged at once, as a duplicate
    // is (and as Linux does; with SACK, the ACK reports it as a D-SACK, RFC 2883).
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 1, 0)]);
}

/// Two connections wired back to back, and a log of every segment each sends and receives
/// with both sides' states right after it.
struct Two {
    a: Connection,
    b: Connection,
    a_tuple: synack_tcp::FourTuple,
    b_tuple: synack_tcp::FourTuple,
    log: Vec<Step>,
}

/// One step of a [`Two`]: `who` sent (`Sent`) or received (`Got`) the segment `key`, after which
/// side a is in `a` and side b in `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    who: char,
    dir: Dir,
    key: (synack_wire::TcpFlags, u32, u32, usize),
    a: State,
    b: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Sent,
    Got,
}

fn step(
    who: char,
    dir: Dir,
    key: (synack_wire::TcpFlags, u32, u32, usize),
    a: State,
    b: State,
) -> Step {
    Step {
        who,
        dir,
        key,
        a,
        b,
    }
}

impl Two {
    /// Both sides connect at once: a with ISS, b with IRS (so a's peer has IRS, as elsewhere).
    fn connecting(cfg: &Config) -> Two {
        let a_tuple = tuple();
        let b_tuple = synack_tcp::FourTuple {
            local: a_tuple.remote,
            remote: a_tuple.local,
        };
        Two {
            a: Connection::connect(cfg, t(0), a_tuple, SeqNum(ISS), 0),
            b: Connection::connect(cfg, t(0), b_tuple, SeqNum(IRS), 0),
            a_tuple,
            b_tuple,
            log: Vec::new(),
        }
    }

    /// Until neither side has anything to send: both send what they have at `now`, then each
    /// receives what the other sent (a's segments reach b first). Every segment is logged with
    /// both states after it.
    fn exchange(&mut self, now: synack_tcp::Instant) {
        for _ in 0..100 {
            let from_a = output_on(&mut self.a, now, self.a_tuple);
            let (a, b) = (self.a.state(), self.b.state());
            self.log
                .extend(from_a.iter().map(|s| step('a', Dir::Sent, s.key(), a, b)));
            let from_b = output_on(&mut self.b, now, self.b_tuple);
            let (a, b) = (self.a.state(), self.b.state());
            self.log
                .extend(from_b.iter().map(|s| step('b', Dir::Sent, s.key(), a, b)));
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for s in &from_a {
                input_on(&mut self.b, now, s, self.b_tuple);
                let (a, b) = (self.a.state(), self.b.state());
                self.log.push(step('b', Dir::Got, s.key(), a, b));
            }
            for s in &from_b {
                input_on(&mut self.a, now, s, self.a_tuple);
                let (a, b) = (self.a.state(), self.b.state());
                self.log.push(step('a', Dir::Got, s.key(), a, b));
            }
        }
        panic!("the two connections never went quiet");
    }
}

#[test]
fn simultaneous_open_between_two_connections() {
    // RFC 9293 §3.5 figure 8, both ends at once: each SYN-SENT side gets the other's SYN and
    // goes to SYN-RECEIVED, answers SYN-ACK from its own ISS, and the SYN-ACK it gets back
    // acknowledges its SYN: ESTABLISHED. The SYN that SYN-ACK repeats is a duplicate, which
    // each acknowledges (as Linux does); the ACKs need no answer.
    use Dir::{Got, Sent};
    use State::{Established as Est, SynReceived as SynRcvd, SynSent};
    let cfg = plain();
    let mut two = Two::connecting(&cfg);
    assert_eq!((two.a.state(), two.b.state()), (SynSent, SynSent));
    two.exchange(t(10));
    assert_eq!(
        two.log,
        vec![
            step('a', Sent, (S, ISS, 0, 0), SynSent, SynSent),
            step('b', Sent, (S, IRS, 0, 0), SynSent, SynSent),
            step('b', Got, (S, ISS, 0, 0), SynSent, SynRcvd),
            step('a', Got, (S, IRS, 0, 0), SynRcvd, SynRcvd),
            step('a', Sent, (S | A, ISS, IRS + 1, 0), SynRcvd, SynRcvd),
            step('b', Sent, (S | A, IRS, ISS + 1, 0), SynRcvd, SynRcvd),
            step('b', Got, (S | A, ISS, IRS + 1, 0), SynRcvd, Est),
            step('a', Got, (S | A, IRS, ISS + 1, 0), Est, Est),
            step('a', Sent, (A, ISS + 1, IRS + 1, 0), Est, Est),
            step('b', Sent, (A, IRS + 1, ISS + 1, 0), Est, Est),
            step('b', Got, (A, ISS + 1, IRS + 1, 0), Est, Est),
            step('a', Got, (A, IRS + 1, ISS + 1, 0), Est, Est),
        ]
    );
}

#[test]
fn simultaneous_close_between_two_connections() {
    // RFC 9293 §3.6 figure 13: both close at once. Each FIN-WAIT-1 side gets the other's FIN
    // before the ACK of its own: CLOSING, and it acknowledges the FIN. The ACK of its own FIN
    // then takes it to TIME-WAIT, which lasts 2·MSL on both sides before CLOSED.
    use Dir::{Got, Sent};
    use State::{Closing, Established as Est, FinWait1, TimeWait};
    let cfg = plain();
    let mut two = Two::connecting(&cfg);
    two.exchange(t(10));
    assert_eq!((two.a.state(), two.b.state()), (Est, Est));
    two.log.clear();

    two.a.close();
    assert_eq!((two.a.state(), two.b.state()), (FinWait1, Est));
    two.b.close();
    assert_eq!((two.a.state(), two.b.state()), (FinWait1, FinWait1));
    two.exchange(t(100));
    assert_eq!(
        two.log,
        vec![
            step('a', Sent, (F | A, ISS + 1, IRS + 1, 0), FinWait1, FinWait1),
            step('b', Sent, (F | A, IRS + 1, ISS + 1, 0), FinWait1, FinWait1),
            step('b', Got, (F | A, ISS + 1, IRS + 1, 0), FinWait1, Closing),
            step('a', Got, (F | A, IRS + 1, ISS + 1, 0), Closing, Closing),
            step('a', Sent, (A, ISS + 2, IRS + 2, 0), Closing, Closing),
            step('b', Sent, (A, IRS + 2, ISS + 2, 0), Closing, Closing),
            step('b', Got, (A, ISS + 2, IRS + 2, 0), Closing, TimeWait),
            step('a', Got, (A, IRS + 2, ISS + 2, 0), TimeWait, TimeWait),
        ]
    );

    // TIME-WAIT: 2·MSL from the ACK that ended CLOSING, then CLOSED, with nothing sent.
    let end = t(100) + cfg.msl * 2;
    assert_eq!(two.a.poll_timeout(), Some(end));
    assert_eq!(two.b.poll_timeout(), Some(end));
    let just_before = t(99) + cfg.msl * 2;
    two.a.handle_timeout(just_before);
    two.b.handle_timeout(just_before);
    assert_eq!((two.a.state(), two.b.state()), (TimeWait, TimeWait));
    two.a.handle_timeout(end);
    assert_eq!((two.a.state(), two.b.state()), (State::Closed, TimeWait));
    two.b.handle_timeout(end);
    assert_eq!(
        (two.a.state(), two.b.state()),
        (State::Closed, State::Closed)
    );
    two.log.clear();
    two.exchange(end);
    assert!(two.log.is_empty(), "sent after TIME-WAIT: {:?}", two.log);
    assert_eq!((two.a.error(), two.b.error()), (None, None));
}

#[test]
fn syn_is_retransmitted_with_exponential_backoff_then_times_out() {
    let cfg = Config {
        syn_retries: 3,
        ..plain()
    };
    let mut c = syn_sent(&cfg);
    // RTO 1 s, then 2 s, 4 s: SYNs at 1, 3, 7 s; the open fails at 15 s.
    let mut sent_at = Vec::new();
    let mut now = t(0);
    while let Some(next) = c.poll_timeout() {
        now = next;
        c.handle_timeout(now);
        for s in output(&mut c, now) {
            assert_eq!(s.key(), (S, ISS, 0, 0));
            sent_at.push(now.as_millis());
        }
    }
    assert_eq!(sent_at, vec![1000, 3000, 7000]);
    assert_eq!(now.as_millis(), 15_000);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::TimedOut));
    assert_eq!(
        c.send(b"x"),
        Err(SendError::Connection(ConnectionError::TimedOut))
    );
}

#[test]
fn connect_timeout_surfaces_as_timed_out() {
    let cfg = Config {
        connect_timeout: Some(secs(2)),
        ..plain()
    };
    let mut c = syn_sent(&cfg);
    c.handle_timeout(t(1000));
    output(&mut c, t(1000));
    c.handle_timeout(t(2000));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::TimedOut));
}

#[test]
fn syn_ack_is_retransmitted_when_the_ack_is_lost() {
    let cfg = plain();
    let mut c = syn_received(&cfg);
    c.handle_timeout(t(1000));
    assert_eq!(
        keys(&output(&mut c, t(1000))),
        vec![(S | A, ISS, IRS + 1, 0)]
    );
    // A retransmitted SYN also draws the SYN-ACK again.
    input(&mut c, t(1100), &Seg::new(S, IRS, 0));
    assert_eq!(
        keys(&output(&mut c, t(1100))),
        vec![(S | A, ISS, IRS + 1, 0)]
    );
}

// ---- Closing ---------------------------------------------------------------------------------

#[test]
fn active_close_four_way_and_time_wait_lasts_two_msl() {
    let cfg = plain(); // MSL 30 s
    let mut c = established(&cfg);
    c.shutdown();
    assert_eq!(c.state(), State::FinWait1);
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(F | A, ISS + 1, IRS + 1, 0)]
    );
    input(&mut c, t(70), &Seg::new(A, IRS + 1, ISS + 2));
    assert_eq!(c.state(), State::FinWait2);
    input(&mut c, t(80), &Seg::new(F | A, IRS + 1, ISS + 2));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(keys(&output(&mut c, t(80))), vec![(A, ISS + 2, IRS + 2, 0)]);
    // Exactly 2·MSL = 60 s of virtual time.
    assert_eq!(c.poll_timeout(), Some(t(80) + secs(60)));
    c.handle_timeout(t(80) + (secs(60) - std::time::Duration::from_micros(1)));
    assert_eq!(c.state(), State::TimeWait);
    c.handle_timeout(t(80) + secs(60));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), None);
}

#[test]
fn passive_close() {
    let cfg = plain();
    let mut c = close_wait(&cfg);
    let mut buf = [0u8; 10];
    assert_eq!(c.recv(&mut buf), Err(RecvError::Finished));
    c.shutdown();
    assert_eq!(c.state(), State::LastAck);
    assert_eq!(
        keys(&output(&mut c, t(30))),
        vec![(F | A, ISS + 1, IRS + 2, 0)]
    );
    input(&mut c, t(80), &Seg::new(A, IRS + 2, ISS + 2));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), None);
    assert!(c.poll_timeout().is_none());
}

#[test]
fn half_close_keeps_reading_while_the_peer_sends() {
    let cfg = plain();
    let mut c = fin_wait_2(&cfg);
    // The peer keeps sending after our FIN.
    input(
        &mut c,
        t(40),
        &Seg::new(P | A, IRS + 1, ISS + 2).data(b"more data"),
    );
    assert_eq!(
        keys(&output(&mut c, t(40))),
        vec![(A, ISS + 2, IRS + 10, 0)]
    );
    input(
        &mut c,
        t(50),
        &Seg::new(P | A, IRS + 10, ISS + 2).data(b" and more"),
    );
    assert_eq!(
        keys(&output(&mut c, t(50))),
        vec![(A, ISS + 2, IRS + 19, 0)]
    );
    let mut buf = [0u8; 64];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"more data and more");
    // Writing is over.
    assert_eq!(c.send(b"x"), Err(SendError::InvalidState));
    input(&mut c, t(60), &Seg::new(F | A, IRS + 19, ISS + 2));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(
        keys(&output(&mut c, t(60))),
        vec![(A, ISS + 2, IRS + 20, 0)]
    );
    assert_eq!(c.recv(&mut buf), Err(RecvError::Finished));
}

#[test]
fn half_close_by_the_peer_and_we_keep_sending() {
    let cfg = plain();
    let mut c = close_wait(&cfg);
    assert_eq!(c.send(b"reply"), Ok(5));
    assert_eq!(
        keys(&output(&mut c, t(30))),
        vec![(P | A, ISS + 1, IRS + 2, 5)]
    );
    input(&mut c, t(40), &Seg::new(A, IRS + 2, ISS + 6));
    c.shutdown();
    assert_eq!(
        keys(&output(&mut c, t(40))),
        vec![(F | A, ISS + 6, IRS + 2, 0)]
    );
    input(&mut c, t(50), &Seg::new(A, IRS + 2, ISS + 7));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn simultaneous_close_through_closing() {
    let cfg = plain();
    let mut c = closing(&cfg);
    input(&mut c, t(50), &Seg::new(A, IRS + 2, ISS + 2));
    assert_eq!(c.state(), State::TimeWait);
    assert!(output(&mut c, t(50)).is_empty());
    assert_eq!(c.poll_timeout(), Some(t(50) + secs(60)));
}

#[test]
fn fin_and_ack_together_from_fin_wait_1_go_straight_to_time_wait() {
    let cfg = plain();
    let mut c = fin_wait_1(&cfg);
    input(&mut c, t(30), &Seg::new(F | A, IRS + 1, ISS + 2));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(keys(&output(&mut c, t(30))), vec![(A, ISS + 2, IRS + 2, 0)]);
}

#[test]
fn fin_is_retransmitted() {
    let cfg = plain();
    let mut c = fin_wait_1(&cfg);
    let rto = c.timer(synack_tcp::Timer::Retransmit).unwrap();
    c.handle_timeout(rto);
    assert_eq!(
        keys(&output(&mut c, rto)),
        vec![(F | A, ISS + 1, IRS + 1, 0)]
    );
}

#[test]
fn time_wait_reacknowledges_a_retransmitted_fin_and_restarts_the_timer() {
    let cfg = plain();
    let mut c = time_wait(&cfg);
    // RFC 9293 §3.10.7.4: "The only thing that can arrive in this state is a retransmission of
    // the remote FIN. Acknowledge it, and restart the 2 MSL timeout."
    input(&mut c, t(10_000), &Seg::new(F | A, IRS + 1, ISS + 2));
    assert_eq!(
        keys(&output(&mut c, t(10_000))),
        vec![(A, ISS + 2, IRS + 2, 0)]
    );
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.poll_timeout(), Some(t(10_000) + secs(60)));
}

#[test]
fn time_wait_answers_an_old_segment_with_an_ack_and_a_reset_closes_it() {
    let cfg = plain();
    let mut c = time_wait(&cfg);
    input(
        &mut c,
        t(1000),
        &Seg::new(A, IRS - 500, ISS + 2).data(b"old"),
    );
    assert_eq!(
        keys(&output(&mut c, t(1000))),
        vec![(A, ISS + 2, IRS + 2, 0)]
    );
    assert_eq!(c.state(), State::TimeWait);
    input(&mut c, t(2000), &Seg::new(R, IRS + 2, 0));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn close_with_unread_data_resets() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(
        &mut c,
        t(20),
        &Seg::new(P | A, IRS + 1, ISS + 1).data(b"unread"),
    );
    output(&mut c, t(20));
    c.close();
    assert_eq!(
        keys(&output(&mut c, t(21))),
        vec![(R | A, ISS + 1, IRS + 7, 0)]
    );
    assert_eq!(c.state(), State::Closed);
}

// ---- Resets (RFC 9293 §3.10.7, RFC 5961) ------------------------------------------------------

#[test]
fn rst_in_syn_sent_is_connection_refused() {
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    input(&mut c, t(50), &Seg::new(R | A, 0, ISS + 1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::Refused));
    let mut buf = [0u8; 4];
    assert_eq!(
        c.recv(&mut buf),
        Err(RecvError::Connection(ConnectionError::Refused))
    );
}

#[test]
fn rst_in_syn_sent_with_a_bad_ack_is_ignored() {
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    input(&mut c, t(50), &Seg::new(R | A, 0, ISS + 5));
    assert_eq!(c.state(), State::SynSent);
    assert!(output(&mut c, t(50)).is_empty());
}

#[test]
fn syn_sent_answers_a_bad_ack_with_a_reset() {
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    // <SEQ=SEG.ACK><CTL=RST>
    input(&mut c, t(50), &Seg::new(S | A, IRS, ISS + 77));
    assert_eq!(keys(&output(&mut c, t(50))), vec![(R, ISS + 77, 0, 0)]);
    assert_eq!(c.state(), State::SynSent);
}

#[test]
fn exact_rst_resets_an_established_connection() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(&mut c, t(20), &Seg::new(R, IRS + 1, 0));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::Reset));
    assert!(output(&mut c, t(20)).is_empty());
}

#[test]
fn rst_in_window_but_not_exact_draws_a_challenge_ack() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(&mut c, t(20), &Seg::new(R, IRS + 100, 0));
    assert_eq!(c.state(), State::Established);
    // RFC 5961 §3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 1, 0)]);
}

#[test]
fn rst_outside_the_window_is_ignored() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(&mut c, t(20), &Seg::new(R, IRS + 1 + 200_000, 0));
    input(&mut c, t(20), &Seg::new(R, IRS - 10, 0));
    assert_eq!(c.state(), State::Established);
    assert!(output(&mut c, t(20)).is_empty());
}

#[test]
fn syn_on_an_established_connection_draws_a_challenge_ack() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(&mut c, t(20), &Seg::new(S, IRS + 50, 0));
    assert_eq!(c.state(), State::Established);
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 1, 0)]);
}

#[test]
fn rst_in_syn_received_from_a_passive_open_returns_it_to_listen() {
    let cfg = plain();
    let mut c = syn_received(&cfg);
    input(&mut c, t(20), &Seg::new(R, IRS + 1, 0));
    assert_eq!(c.state(), State::Closed);
    assert!(output(&mut c, t(20)).is_empty());
}

#[test]
fn bad_ack_in_syn_received_draws_a_reset() {
    let cfg = plain();
    let mut c = syn_received(&cfg);
    input(&mut c, t(20), &Seg::new(A, IRS + 1, ISS + 999));
    assert_eq!(keys(&output(&mut c, t(20))), vec![(R, ISS + 999, 0, 0)]);
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn abort_sends_rst_and_closes() {
    let cfg = plain();
    let mut c = established(&cfg);
    c.abort();
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(R | A, ISS + 1, IRS + 1, 0)]
    );
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::Aborted));
}

#[test]
fn ack_of_unsent_data_is_answered_and_dropped() {
    let cfg = plain();
    let mut c = established(&cfg);
    // RFC 5961 §5.2 / RFC 9293: an ACK for something not yet sent: send an ACK, drop.
    input(&mut c, t(20), &Seg::new(A, IRS + 1, ISS + 500).data(b"zzz"));
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 1, 0)]);
    assert_eq!(c.recv_available(), 0);
}

// ---- Data ------------------------------------------------------------------------------------

#[test]
fn data_both_ways_with_cumulative_acks() {
    let cfg = plain();
    let mut c = established(&cfg);
    assert_eq!(c.send(b"hello"), Ok(5));
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(P | A, ISS + 1, IRS + 1, 5)]
    );
    input(
        &mut c,
        t(70),
        &Seg::new(P | A, IRS + 1, ISS + 6).data(b"world!"),
    );
    assert_eq!(keys(&output(&mut c, t(70))), vec![(A, ISS + 6, IRS + 7, 0)]);
    let mut buf = [0u8; 16];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"world!");
    assert_eq!(c.send_queued(), 0);
}

#[test]
fn out_of_order_data_is_held_and_delivered_once_the_hole_fills() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(&mut c, t(20), &Seg::new(A, IRS + 6, ISS + 1).data(b"world"));
    // A duplicate ACK at once.
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 1, 0)]);
    assert_eq!(c.recv_available(), 0);
    input(&mut c, t(21), &Seg::new(A, IRS + 1, ISS + 1).data(b"hello"));
    assert_eq!(
        keys(&output(&mut c, t(21))),
        vec![(A, ISS + 1, IRS + 11, 0)]
    );
    let mut buf = [0u8; 16];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"helloworld");
}

#[test]
fn out_of_order_fin_waits_for_the_data_before_it() {
    let cfg = plain();
    let mut c = established(&cfg);
    input(
        &mut c,
        t(20),
        &Seg::new(F | A, IRS + 4, ISS + 1).data(b"def"),
    );
    assert_eq!(c.state(), State::Established);
    output(&mut c, t(20));
    input(&mut c, t(21), &Seg::new(A, IRS + 1, ISS + 1).data(b"abc"));
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(keys(&output(&mut c, t(21))), vec![(A, ISS + 1, IRS + 8, 0)]);
    let mut buf = [0u8; 16];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"abcdef");
    assert_eq!(c.recv(&mut buf), Err(RecvError::Finished));
}

#[test]
fn a_peer_without_window_scaling_gets_one_ack_not_a_stream_of_updates() {
    // Regression: with a 1 MiB buffer and no window scaling the field caps at 65535; that cap
    // must not look like a window worth updating forever.
    let cfg = Config {
        recv_buffer: 1 << 20,
        ..Config::default()
    };
    let mut c = syn_sent(&cfg);
    input(&mut c, t(10), &Seg::new(S | A, IRS, ISS + 1));
    let out = output(&mut c, t(10));
    assert_eq!(keys(&out), vec![(A, ISS + 1, IRS + 1, 0)]);
    assert_eq!(out[0].win, 65535);
    assert!(output(&mut c, t(11)).is_empty());
}

#[test]
fn shutdown_during_the_handshake_sends_the_data_then_the_fin() {
    // A write and a half-close before the SYN-ACK: nothing is lost, the FIN follows the data.
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    assert_eq!(c.send(b"bye"), Ok(3));
    c.shutdown();
    assert_eq!(c.state(), State::SynSent);
    input(&mut c, t(50), &Seg::new(S | A, IRS, ISS + 1));
    assert_eq!(c.state(), State::FinWait1);
    assert_eq!(
        keys(&output(&mut c, t(50))),
        vec![(F | P | A, ISS + 1, IRS + 1, 3)]
    );
}

#[test]
fn close_in_syn_sent_with_nothing_queued_deletes_the_tcb() {
    let cfg = plain();
    let mut c = syn_sent(&cfg);
    c.close();
    assert_eq!(c.state(), State::Closed);
    assert!(output(&mut c, t(1)).is_empty());
}
