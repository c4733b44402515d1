//! Two endpoints wired back to back: demultiplexing, listeners, TIME-WAIT reuse and the
//! bookkeeping of connection slots, with every segment between them visible.

use std::net::{IpAddr, SocketAddr};

use synack_tcp::{Config, ConnId, Duration, Endpoint, Instant, ListenerId, State};
use synack_wire::{TcpFlags, TcpRepr};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

/// A segment that crossed the wire, as the test sees it.
#[derive(Debug, Clone)]
struct Wire {
    from_client: bool,
    src_port: u16,
    flags: TcpFlags,
}

struct Pair {
    now: Instant,
    client: Endpoint,
    server: Endpoint,
    listener: ListenerId,
    log: Vec<Wire>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Pair {
    fn new(config: Config) -> Pair {
        let client = Endpoint::new(config.clone(), [1; 16]);
        let mut server = Endpoint::new(config, [2; 16]);
        let listener = server.listen(SocketAddr::new(ip(SERVER), 80), 64).unwrap();
        Pair {
            now: Instant::ZERO,
            client,
            server,
            listener,
            log: Vec::new(),
        }
    }

    /// Move every segment due now across (both ways, instantly), until both are quiet.
    fn exchange(&mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now, &mut buf) {
                moved = true;
                let seg = TcpRepr::parse(&buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.log.push(wire(true, &seg));
                self.server.handle_segment(self.now, t.src, t.dst, &seg);
            }
            while let Some(t) = self.server.poll_transmit(self.now, &mut buf) {
                moved = true;
                let seg = TcpRepr::parse(&buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.log.push(wire(false, &seg));
                self.client.handle_segment(self.now, t.src, t.dst, &seg);
            }
            if !moved {
                break;
            }
        }
    }

    /// Advance virtual time by `d`, firing timers on the way and exchanging what they send.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.exchange();
                }
                _ => break,
            }
        }
        self.now = end;
        self.exchange();
    }

    fn connect(&mut self, port: u16) -> ConnId {
        let id = self
            .client
            .connect(
                self.now,
                ip(CLIENT),
                Some(port),
                SocketAddr::new(ip(SERVER), 80),
            )
            .unwrap();
        self.exchange();
        id
    }

    /// Accept the next connection, answer one byte and close from the server first.
    fn serve_one_and_close(&mut self) -> ConnId {
        let id = self
            .server
            .accept(self.listener)
            .expect("a connection to accept");
        self.server
            .with_conn(self.now, id, |c| c.send(b"x").unwrap());
        self.server.close(self.now, id);
        self.exchange();
        id
    }

    /// Queue what fits of `data` on connection `id` of the client or the server.
    fn send(&mut self, client: bool, id: ConnId, data: &[u8]) -> usize {
        let now = self.now;
        let ep = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        ep.with_conn(now, id, |c| c.send(data).unwrap_or(0))
            .unwrap()
    }

    /// Append what has arrived on connection `id` of the client or the server to `out`.
    fn recv_into(&mut self, client: bool, id: ConnId, out: &mut Vec<u8>) {
        let now = self.now;
        let ep = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        let mut b = vec![0u8; 65536];
        let n = ep
            .with_conn(now, id, |c| c.recv(&mut b).unwrap_or(0))
            .unwrap();
        out.extend_from_slice(&b[..n]);
    }

    fn fins_from_client(&self, port: u16) -> usize {
        self.log
            .iter()
            .filter(|w| w.from_client && w.src_port == port && w.flags.contains(TcpFlags::FIN))
            .count()
    }
}

fn wire(from_client: bool, seg: &TcpRepr<'_>) -> Wire {
    Wire {
        from_client,
        src_port: seg.src_port,
        flags: seg.flags,
    }
}

fn quick() -> Config {
    Config {
        delayed_ack: None,
        ..Config::default()
    }
}

/// One connection from `port`: the server answers and closes first (so it holds TIME-WAIT),
/// the client reads, closes, and must see its FIN acknowledged once.
fn server_closes_first(p: &mut Pair, port: u16) -> ConnId {
    let c = p.connect(port);
    p.serve_one_and_close();
    let mut b = [0u8; 8];
    p.client.with_conn(p.now, c, |c| {
        assert_eq!(c.recv(&mut b), Ok(1));
    });
    p.client.close(p.now, c);
    p.exchange();
    c
}

/// Defect: a SYN that reopened a TIME-WAIT tuple freed its connection slot twice, so two later
/// connections shared one slot, and segments of one (the client's FIN among them) went to the
/// other: the FIN was never acknowledged and the kernel peer retransmitted it until it gave up.
#[test]
fn fins_after_time_wait_reuse_are_each_acknowledged_once() {
    let mut p = Pair::new(quick());
    server_closes_first(&mut p, 40000);
    assert_eq!(p.fins_from_client(40000), 1);
    p.advance(Duration::from_millis(100));
    // The same 4-tuple again while the server holds it in TIME-WAIT (RFC 6191: the new SYN's
    // sequence number is above the old RCV.NXT, the clock-driven ISN sees to that).
    server_closes_first(&mut p, 40000);
    assert_eq!(p.server.stats().time_wait_reused, 1);
    // Then several connections side by side, each closed by the server first.
    let ports: Vec<u16> = (40001..40009).collect();
    let conns: Vec<ConnId> = ports.iter().map(|&port| p.connect(port)).collect();
    for _ in &ports {
        p.serve_one_and_close();
    }
    for &c in &conns {
        let mut b = [0u8; 8];
        p.client
            .with_conn(p.now, c, |c| assert_eq!(c.recv(&mut b), Ok(1)));
        p.client.close(p.now, c);
    }
    p.exchange();
    p.advance(Duration::from_secs(5));
    for &port in &ports {
        assert_eq!(
            p.fins_from_client(port),
            1,
            "the client's FIN from port {port} was retransmitted: the server never acked it"
        );
    }
    // Every client connection is gone (LAST-ACK ended by the server's ACK), and the server
    // holds exactly one TIME-WAIT per tuple it closed first.
    assert_eq!(p.client.connection_count(), 0);
    let time_wait = p
        .server
        .connections()
        .filter(|&id| p.server.conn(id).map(|c| c.state()) == Some(State::TimeWait))
        .count();
    assert_eq!(time_wait, 1 + ports.len());
    assert_eq!(p.server.connection_count(), 1 + ports.len());
}

/// RFC 6191 §2: with timestamps, a SYN to a tuple in TIME-WAIT reopens it only when its TSval
/// is newer than the old connection's TS.Recent; an older one is answered with an ACK of the
/// old connection (RFC 5961 §4) and TIME-WAIT stays.
#[test]
fn time_wait_reopens_only_for_a_newer_timestamp() {
    let mut p = Pair::new(quick());
    server_closes_first(&mut p, 40000);
    let tw = p
        .server
        .connections()
        .find(|&id| p.server.conn(id).map(|c| c.state()) == Some(State::TimeWait))
        .expect("the server holds TIME-WAIT");
    let (ts_recent, rcv_nxt) = {
        let c = p.server.conn(tw).unwrap();
        assert!(c.timestamps_enabled());
        (c.ts_recent(), c.rcv_nxt().0)
    };
    let syn = |tsval: u32, seq: u32| {
        let mut options = synack_wire::TcpOptions {
            mss: Some(1460),
            ..Default::default()
        };
        options.timestamp = Some(synack_wire::tcp::Timestamp { tsval, tsecr: 0 });
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options,
            payload: &[],
        }
    };
    // A higher sequence number but an older timestamp: an old duplicate.
    let old = syn(ts_recent.wrapping_sub(1), rcv_nxt.wrapping_add(100_000));
    p.server.handle_segment(p.now, ip(CLIENT), ip(SERVER), &old);
    let mut buf = [0u8; 128];
    let t = p.server.poll_transmit(p.now, &mut buf).expect("an ACK");
    let ack = TcpRepr::parse(&buf[..t.len], None).unwrap();
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!(ack.ack, rcv_nxt);
    assert_eq!(p.server.stats().time_wait_reused, 0);
    assert_eq!(p.server.conn(tw).unwrap().state(), State::TimeWait);
    // A newer timestamp reopens it, whatever the sequence number.
    let new = syn(ts_recent.wrapping_add(1), rcv_nxt.wrapping_sub(100_000));
    p.server.handle_segment(p.now, ip(CLIENT), ip(SERVER), &new);
    assert_eq!(p.server.stats().time_wait_reused, 1);
    let t = p.server.poll_transmit(p.now, &mut buf).expect("a SYN-ACK");
    let synack = TcpRepr::parse(&buf[..t.len], None).unwrap();
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.ack, rcv_nxt.wrapping_sub(100_000).wrapping_add(1));
}

/// RFC 5961 §7: challenge ACKs are capped across the endpoint too (`challenge_ack_limit` per
/// second), however many connections the forged segments aim at.
#[test]
fn challenge_acks_are_capped_across_connections() {
    let mut p = Pair::new(Config {
        challenge_ack_limit: 5,
        ..quick()
    });
    let ports: Vec<u16> = (41000..41020).collect();
    for &port in &ports {
        p.connect(port);
    }
    let mut buf = [0u8; 128];
    let mut challenges = 0;
    for &port in &ports {
        let id = p
            .server
            .connections()
            .find(|&id| p.server.conn(id).unwrap().tuple().remote.port() == port)
            .unwrap();
        let rcv_nxt = p.server.conn(id).unwrap().rcv_nxt().0;
        let rst = TcpRepr {
            src_port: port,
            dst_port: 80,
            seq: rcv_nxt.wrapping_add(100),
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            urgent: 0,
            options: Default::default(),
            payload: &[],
        };
        p.server.handle_segment(p.now, ip(CLIENT), ip(SERVER), &rst);
        while p.server.poll_transmit(p.now, &mut buf).is_some() {
            challenges += 1;
        }
    }
    assert_eq!(challenges, 5);
    assert_eq!(p.server.stats().challenge_acks_limited, 15);
    // Every connection is still established: an in-window RST only draws a challenge.
    assert!(p
        .server
        .connections()
        .all(|id| p.server.conn(id).unwrap().state() == State::Established));
}

/// Closing a listener resets and forgets every child it owns: those in its accept queue and
/// those still in SYN-RECEIVED. None lingers, and the port refuses new SYNs.
#[test]
fn closing_a_listener_leaves_no_child_behind() {
    let mut p = Pair::new(quick());
    // Two established children, waiting to be accepted.
    p.connect(42000);
    p.connect(42001);
    // Three half-open ones: SYNs whose SYN-ACKs are never answered.
    for port in 42002..42005u16 {
        let syn = TcpRepr {
            src_port: port,
            dst_port: 80,
            seq: 1000,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options: Default::default(),
            payload: &[],
        };
        p.server.handle_segment(p.now, ip(CLIENT), ip(SERVER), &syn);
    }
    let mut buf = [0u8; 128];
    while p.server.poll_transmit(p.now, &mut buf).is_some() {}
    assert_eq!(p.server.pending(p.listener), 2);
    assert_eq!(p.server.connection_count(), 5);
    p.server.unlisten(p.listener);
    let mut resets = Vec::new();
    while let Some(t) = p.server.poll_transmit(p.now, &mut buf) {
        let seg = TcpRepr::parse(&buf[..t.len], None).unwrap();
        assert!(seg.flags.contains(TcpFlags::RST), "{seg:?}");
        resets.push(seg.dst_port);
    }
    resets.sort();
    assert_eq!(resets, (42000..42005).collect::<Vec<_>>());
    assert_eq!(p.server.connection_count(), 0, "no child lingers");
    p.advance(Duration::from_secs(200));
    assert_eq!(p.server.connection_count(), 0);
}

fn spoofed_syn(port: u16, seq: u32) -> TcpRepr<'static> {
    TcpRepr {
        src_port: port,
        dst_port: 80,
        seq,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 65535,
        urgent: 0,
        options: synack_wire::TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(synack_wire::Timestamp { tsval: 5, tsecr: 0 }),
            ..Default::default()
        },
        payload: &[],
    }
}

/// RFC 4987 §3.6: with the SYN queue full of spoofed SYNs, a real client is answered with a SYN
/// cookie, completes its handshake with window scale, SACK and timestamps intact, and moves
/// data both ways; the flood beyond the queue leaves no state; a forged cookie is refused.
#[test]
fn syn_cookies_serve_a_real_client_through_a_full_syn_queue() {
    let mut p = Pair::new(Config {
        syn_backlog: 4,
        ..quick()
    });
    let mut buf = [0u8; 256];
    for port in 0..1000u16 {
        let spoofed = "198.18.0.100".parse().unwrap();
        p.server
            .handle_segment(p.now, spoofed, ip(SERVER), &spoofed_syn(1024 + port, 1));
        while p.server.poll_transmit(p.now, &mut buf).is_some() {}
    }
    let stats = p.server.stats();
    assert_eq!(
        p.server.connection_count(),
        4,
        "only the SYN queue holds state"
    );
    assert_eq!(stats.syn_cookies_sent, 996);
    // A real client: its handshake completes through a cookie.
    let c = p.connect(43000);
    assert_eq!(p.server.stats().syn_cookies_accepted, 1);
    assert_eq!(p.client.conn(c).unwrap().state(), State::Established);
    let s = p
        .server
        .accept(p.listener)
        .expect("the cookie connection is accepted");
    {
        let sc = p.server.conn(s).unwrap();
        assert_eq!(sc.state(), State::Established);
        assert!(sc.timestamps_enabled() && sc.sack_enabled());
        let cc = p.client.conn(c).unwrap();
        assert_eq!(
            sc.window_scales(),
            (cc.window_scales().1, cc.window_scales().0)
        );
        assert_eq!(sc.mss(), 1460 - 12);
    }
    // 200 KiB each way, byte-exact (windows beyond 64 KiB need the scale the cookie kept).
    let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let down: Vec<u8> = (0..200_000u32).map(|i| (i * 13) as u8).collect();
    let (mut sent_up, mut sent_down, mut got_up, mut got_down) = (0, 0, Vec::new(), Vec::new());
    for _ in 0..10_000 {
        sent_up += p.send(true, c, &up[sent_up..]);
        sent_down += p.send(false, s, &down[sent_down..]);
        p.exchange();
        p.recv_into(false, s, &mut got_up);
        p.recv_into(true, c, &mut got_down);
        if got_up.len() == up.len() && got_down.len() == down.len() {
            break;
        }
        p.advance(Duration::from_millis(1));
    }
    assert!(got_up == up && got_down == down, "bytes differ");
    // A forged cookie (an ACK nobody was sent a SYN-ACK for) is refused with a RST.
    let forged = TcpRepr {
        src_port: 44000,
        dst_port: 80,
        seq: 1000,
        ack: 0x1234_5678,
        flags: TcpFlags::ACK,
        window: 1000,
        urgent: 0,
        options: Default::default(),
        payload: &[],
    };
    let before = p.server.connection_count();
    p.server
        .handle_segment(p.now, ip(CLIENT), ip(SERVER), &forged);
    let t = p.server.poll_transmit(p.now, &mut buf).expect("a RST");
    assert!(TcpRepr::parse(&buf[..t.len], None)
        .unwrap()
        .flags
        .contains(TcpFlags::RST));
    assert_eq!(p.server.stats().syn_cookies_rejected, 1);
    assert_eq!(p.server.connection_count(), before);
}

/// `max_connections` caps what an endpoint holds: connects beyond fail with a clear error,
/// SYNs beyond are dropped and counted, and room comes back as connections go.
#[test]
fn the_connection_limit_refuses_clearly_and_frees_up() {
    let mut p = Pair::new(Config {
        max_connections: Some(3),
        ..quick()
    });
    let ids: Vec<ConnId> = (45000..45003).map(|port| p.connect(port)).collect();
    let err = p
        .client
        .connect(
            p.now,
            ip(CLIENT),
            Some(45003),
            SocketAddr::new(ip(SERVER), 80),
        )
        .unwrap_err();
    assert_eq!(err, synack_tcp::ConnectError::TooManyConnections);
    assert_eq!(
        err.to_string(),
        "connection limit reached (max_connections)"
    );
    // The server holds 3 too: a 4th SYN (from another client endpoint) is dropped.
    let syn = spoofed_syn(45100, 1);
    p.server.handle_segment(p.now, ip(CLIENT), ip(SERVER), &syn);
    let mut buf = [0u8; 128];
    assert!(p.server.poll_transmit(p.now, &mut buf).is_none());
    assert_eq!(p.server.stats().over_connection_limit, 1);
    assert_eq!(p.server.connection_count(), 3);
    // One connection aborted on both sides frees a place.
    p.client.abort(ids[0]);
    p.client.release(ids[0]);
    p.exchange();
    assert_eq!(p.client.connection_count(), 2);
    assert!(p
        .client
        .connect(
            p.now,
            ip(CLIENT),
            Some(45003),
            SocketAddr::new(ip(SERVER), 80)
        )
        .is_ok());
}

/// `max_buffer_bytes` caps the rings of all connections together: senders into unread
/// receivers fill it and then wait, new connections are refused with a clear error, and when
/// the readers drain every byte arrives, none lost.
#[test]
fn the_buffer_limit_holds_and_loses_nothing() {
    const CAP: usize = 256 * 1024;
    let mut p = Pair::new(Config {
        max_buffer_bytes: Some(CAP),
        ..quick()
    });
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let conns: Vec<ConnId> = (46000..46002).map(|port| p.connect(port)).collect();
    let servers: Vec<ConnId> = conns
        .iter()
        .map(|_| p.server.accept(p.listener).unwrap())
        .collect();
    let mut sent = [0usize; 2];
    let mut got = [Vec::new(), Vec::new()];
    let mut peak = 0;
    // Nobody reads for a while: the server's rings fill up to the limit, no further.
    for _ in 0..2000 {
        for (i, &c) in conns.iter().enumerate() {
            sent[i] += p.send(true, c, &data[sent[i]..]);
        }
        p.exchange();
        p.advance(Duration::from_millis(5));
        peak = peak.max(p.server.buffer_bytes());
    }
    assert!(peak <= 2 * CAP, "server rings peaked at {peak} bytes");
    assert!(p.server.buffer_bytes() >= CAP / 2, "the limit was reached");
    let err = p
        .server
        .connect(
            p.now,
            ip(SERVER),
            Some(5000),
            SocketAddr::new(ip(CLIENT), 9),
        )
        .unwrap_err();
    assert_eq!(err, synack_tcp::ConnectError::NoBuffers);
    assert_eq!(
        err.to_string(),
        "buffer memory limit reached (max_buffer_bytes)"
    );
    // Now the readers drain: everything arrives, byte for byte.
    for _ in 0..20_000 {
        for (i, &c) in conns.iter().enumerate() {
            sent[i] += p.send(true, c, &data[sent[i]..]);
            p.recv_into(false, servers[i], &mut got[i]);
        }
        p.exchange();
        if got.iter().all(|g| g.len() == data.len()) {
            break;
        }
        p.advance(Duration::from_millis(5));
        peak = peak.max(p.server.buffer_bytes());
    }
    assert!(
        got.iter().all(|g| *g == data),
        "bytes differ or are missing"
    );
    assert!(peak <= 2 * CAP, "server rings peaked at {peak} bytes");
}
