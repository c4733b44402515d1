//! TIME-WAIT as a compact entry: an endpoint that does not trace frees the TCB of a connection
//! that settles in TIME-WAIT and keeps a small entry; one that traces keeps the TCB. Both must
//! answer every segment byte for byte alike (RFC 9293 §3.10.7.4, RFC 6191, RFC 5961, RFC 7323
//! PAWS) and expire at the same instant.

use std::net::{IpAddr, SocketAddr};

use synack_tcp::{Config, ConnId, Duration, Endpoint, Instant, RecvError, State};
use synack_wire::{TcpFlags, TcpOptions, TcpRepr, Timestamp};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
const CPORT: u16 = 40000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A client and a server endpoint joined back to back.
struct World {
    client: Endpoint,
    server: Endpoint,
    now: Instant,
}

impl World {
    fn new(trace: bool) -> World {
        let config = Config {
            delayed_ack: None,
            ..Config::default()
        };
        let client = Endpoint::new(config.clone(), [1; 16]);
        let mut server = Endpoint::new(config, [2; 16]);
        server.set_tracing(trace);
        World {
            client,
            server,
            now: Instant::from_millis(1000),
        }
    }

    fn exchange(&mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now, &mut buf) {
                moved = true;
                let seg = TcpRepr::parse(&buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.server.handle_segment(self.now, t.src, t.dst, &seg);
            }
            while let Some(t) = self.server.poll_transmit(self.now, &mut buf) {
                moved = true;
                let seg = TcpRepr::parse(&buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.client.handle_segment(self.now, t.src, t.dst, &seg);
            }
            if !moved {
                break;
            }
        }
    }

    /// One connection with a byte each way, the server closing first: the server ends in
    /// TIME-WAIT. Returns its handle there.
    fn server_time_wait(&mut self) -> ConnId {
        let l = self
            .server
            .listen(SocketAddr::new(ip(SERVER), 80), 16)
            .unwrap();
        let c = self
            .client
            .connect(
                self.now,
                ip(CLIENT),
                Some(CPORT),
                SocketAddr::new(ip(SERVER), 80),
            )
            .unwrap();
        self.exchange();
        let s = self.server.accept(l).expect("accepted");
        let now = self.now;
        self.client
            .with_conn(now, c, |c| c.send(b"q"))
            .unwrap()
            .unwrap();
        self.exchange();
        self.server
            .with_conn(now, s, |c| {
                let mut b = [0u8; 1];
                assert_eq!(c.recv(&mut b), Ok(1));
                c.send(&b).unwrap();
            })
            .unwrap();
        self.server.close(now, s);
        self.exchange();
        self.client
            .with_conn(now, c, |c| {
                let mut b = [0u8; 1];
                assert_eq!(c.recv(&mut b), Ok(1));
                assert_eq!(c.recv(&mut b), Err(RecvError::Finished));
            })
            .unwrap();
        self.client.close(now, c);
        self.exchange();
        assert_eq!(self.client.connection_count(), 0);
        assert_eq!(self.server.connection_count(), 1);
        let tw = self.server.connections().next().unwrap();
        assert_eq!(self.server.conn(tw).unwrap().state(), State::TimeWait);
        tw
    }

    /// Hand the server a segment from the client's old address; return what it answers.
    fn inject(&mut self, seg: &TcpRepr<'_>) -> Vec<Vec<u8>> {
        self.server
            .handle_segment(self.now, ip(CLIENT), ip(SERVER), seg);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Some(t) = self.server.poll_transmit(self.now, &mut buf) {
            out.push(buf[..t.len].to_vec());
        }
        out
    }

    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        for ep in [&mut self.client, &mut self.server] {
            if ep.poll_timeout().is_some_and(|t| t <= at) {
                ep.handle_timeout(at);
            }
        }
    }
}

/// What the server's TIME-WAIT remembers, read through `conn` (rebuilt from the compact entry
/// when there is one).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    snd_nxt: u32,
    rcv_nxt: u32,
    ts_recent: u32,
    timestamps: bool,
    sack: bool,
    expiry: Option<Instant>,
}

fn seen(ep: &Endpoint, id: ConnId) -> Seen {
    let c = ep.conn(id).unwrap();
    Seen {
        snd_nxt: c.snd_nxt().0,
        rcv_nxt: c.rcv_nxt().0,
        ts_recent: c.ts_recent(),
        timestamps: c.timestamps_enabled(),
        sack: c.sack_enabled(),
        expiry: c.poll_timeout(),
    }
}

fn segment(flags: TcpFlags, seq: u32, ack: u32, tsval: u32, payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port: CPORT,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 502,
        urgent: 0,
        options: TcpOptions {
            timestamp: Some(Timestamp { tsval, tsecr: 0 }),
            ..TcpOptions::default()
        },
        payload,
    }
}

/// The two worlds, one compacting its TIME-WAIT and one keeping the TCB (it traces).
fn both() -> [(World, ConnId); 2] {
    let mut compact = World::new(false);
    let mut full = World::new(true);
    let a = compact.server_time_wait();
    let b = full.server_time_wait();
    assert_eq!(compact.server.compact_time_waits(), 1, "compacted");
    assert_eq!(
        full.server.compact_time_waits(),
        0,
        "a tracing endpoint keeps the TCB"
    );
    assert_eq!(seen(&compact.server, a), seen(&full.server, b));
    [(compact, a), (full, b)]
}

#[test]
fn compact_time_wait_answers_like_the_full_tcb() {
    let [(mut a, ida), (mut b, idb)] = both();
    let s = seen(&a.server, ida);
    let fin_seq = s.rcv_nxt.wrapping_sub(1);
    let ts = s.ts_recent;
    let steps: Vec<(&str, TcpRepr<'_>, Duration, usize)> = vec![
        (
            "a retransmitted FIN: ACK, 2·MSL restarts",
            segment(
                TcpFlags::FIN | TcpFlags::ACK,
                fin_seq,
                s.snd_nxt,
                ts + 5,
                b"",
            ),
            Duration::from_secs(3),
            1,
        ),
        (
            "an old duplicate SYN (older TSval): an ACK",
            segment(
                TcpFlags::SYN,
                s.rcv_nxt.wrapping_add(9),
                0,
                ts.wrapping_sub(100),
                b"",
            ),
            Duration::from_millis(1),
            1,
        ),
        (
            "data beyond the window: an ACK",
            segment(
                TcpFlags::ACK,
                s.rcv_nxt.wrapping_add(50_000_000),
                s.snd_nxt,
                ts + 6,
                b"zz",
            ),
            Duration::from_millis(1),
            1,
        ),
        (
            "a pure ACK beyond the window, soon after: paced, no answer",
            segment(
                TcpFlags::ACK,
                s.rcv_nxt.wrapping_add(50_000_000),
                s.snd_nxt,
                ts + 6,
                b"",
            ),
            Duration::from_secs(1),
            0,
        ),
        (
            "an in-window RST off RCV.NXT: a challenge ACK",
            segment(TcpFlags::RST, s.rcv_nxt.wrapping_add(10), 0, ts + 7, b""),
            Duration::from_secs(1),
            1,
        ),
        (
            "an ACK past SND.NXT: an ACK",
            segment(
                TcpFlags::ACK,
                s.rcv_nxt,
                s.snd_nxt.wrapping_add(1000),
                ts + 8,
                b"",
            ),
            Duration::from_secs(1),
            1,
        ),
        (
            "a PAWS-failing FIN: an ACK",
            segment(
                TcpFlags::FIN | TcpFlags::ACK,
                fin_seq,
                s.snd_nxt,
                ts.wrapping_sub(1),
                b"",
            ),
            Duration::from_secs(1),
            1,
        ),
    ];
    for (what, seg, then, replies) in steps {
        let got_a = a.inject(&seg);
        let got_b = b.inject(&seg);
        assert_eq!(got_a, got_b, "{what}");
        assert_eq!(got_a.len(), replies, "{what}");
        assert_eq!(seen(&a.server, ida), seen(&b.server, idb), "{what}");
        assert_eq!(a.server.compact_time_waits(), 1, "{what}: compacted again");
        let at = a.now + then;
        a.advance_to(at);
        b.advance_to(at);
    }
    // The exact RST ends TIME-WAIT in both (as the full TCB does).
    let rst = segment(TcpFlags::RST, s.rcv_nxt, 0, ts + 20, b"");
    assert_eq!(a.inject(&rst), b.inject(&rst));
    assert_eq!(a.server.connection_count(), 0);
    assert_eq!(b.server.connection_count(), 0);
    assert_eq!(a.server.compact_time_waits(), 0);
}

#[test]
fn compact_time_wait_expires_when_the_full_one_does() {
    let [(mut a, ida), (mut b, _)] = both();
    let s = seen(&a.server, ida);
    let expiry = s.expiry.unwrap();
    // A retransmitted FIN 10 s in restarts 2·MSL.
    let t = a.now + Duration::from_secs(10);
    a.advance_to(t);
    b.advance_to(t);
    let fin = segment(
        TcpFlags::FIN | TcpFlags::ACK,
        s.rcv_nxt.wrapping_sub(1),
        s.snd_nxt,
        s.ts_recent + 1,
        b"",
    );
    assert_eq!(a.inject(&fin), b.inject(&fin));
    let restarted = seen(&a.server, ida).expiry.unwrap();
    assert!(restarted > expiry);
    for at in [expiry, Instant::from_micros(restarted.as_micros() - 1)] {
        a.advance_to(at);
        b.advance_to(at);
        assert_eq!(a.server.connection_count(), 1);
        assert_eq!(b.server.connection_count(), 1);
    }
    a.advance_to(restarted);
    b.advance_to(restarted);
    assert_eq!(a.server.connection_count(), 0);
    assert_eq!(b.server.connection_count(), 0);
    assert_eq!(a.server.compact_time_waits(), 0);
    assert_eq!(a.server.poll_timeout(), None);
}

#[test]
fn a_newer_syn_reopens_a_compact_time_wait() {
    let [(mut a, ida), (mut b, _)] = both();
    let s = seen(&a.server, ida);
    let mut syn = segment(
        TcpFlags::SYN,
        s.rcv_nxt.wrapping_add(1000),
        0,
        s.ts_recent + 1,
        b"",
    );
    syn.options.mss = Some(1460);
    let got_a = a.inject(&syn);
    let got_b = b.inject(&syn);
    assert_eq!(got_a, got_b);
    assert_eq!(got_a.len(), 1);
    let synack = TcpRepr::parse(&got_a[0], None).unwrap();
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(a.server.stats().time_wait_reused, 1);
    assert_eq!(a.server.compact_time_waits(), 0);
    assert_eq!(a.server.connection_count(), 1);
}
