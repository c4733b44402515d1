//! TCP scenarios on the simulated network: whole connections between two synack hosts.

mod common;

use std::net::SocketAddr;

use common::*;
use synack_stack::sim::{Direction as TapDirection, Network, PacketLog, PathConfig};
use synack_stack::Interface;
use synack_tcp::{Config, ConnectionError, Direction, Duration, State, TraceEvent};
use synack_wire::{IpRepr, TcpFlags, TcpRepr};

#[test]
fn ten_mib_each_way_byte_exact() {
    let mut p = Pair::with_paths(
        7,
        Config::default(),
        Config::default(),
        PathConfig::delay(Duration::from_millis(20)).with_bandwidth(100_000_000),
        PathConfig::delay(Duration::from_millis(20)).with_bandwidth(100_000_000),
    );
    let (c, s) = p.open(80, Duration::from_secs(1)).unwrap();
    let up = pattern(1, 10 << 20);
    let down = pattern(2, 10 << 20);
    let mut cf = Flow::new(up.clone());
    let mut sf = Flow::new(down.clone());
    assert!(p.exchange(c, s, &mut cf, &mut sf, Duration::from_secs(60)));
    assert_eq!(cf.error, None);
    assert_eq!(sf.error, None);
    assert!(sf.got == up, "client->server bytes differ");
    assert!(cf.got == down, "server->client bytes differ");
    // 2 x 10 MiB over 100 Mbit/s each way (in parallel) takes at least ~0.84 s.
    assert!(p.now() > synack_tcp::Instant::from_millis(800));
}

#[test]
fn client_sends_data_one_rtt_after_connect_began() {
    let mut p = Pair::new(3, Duration::from_millis(50), Config::default());
    let l = p.listen(80);
    let c = p.connect(80);
    let now = p.now();
    p.net
        .host_mut(p.client)
        .tcp_mut()
        .with_conn(now, c, |c| c.send(b"GET / HTTP/1.1\r\n\r\n").unwrap());
    p.net.flush();
    let server = p.server;
    let mut got = Vec::new();
    let mut s = None;
    assert!(p.run_until(Duration::from_secs(1), |p| {
        let now = p.now();
        let ep = p.net.host_mut(server).tcp_mut();
        if s.is_none() {
            s = ep.accept(l);
        }
        if let Some(s) = s {
            let mut buf = [0u8; 64];
            let n = ep.with_conn(now, s, |c| c.recv(&mut buf).unwrap()).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        !got.is_empty()
    }));
    // The request left at 1 RTT (50 ms) with the handshake's ACK and arrived 25 ms later.
    let sent: Vec<_> = p
        .client_trace()
        .into_iter()
        .filter_map(|r| match r.event {
            TraceEvent::Segment {
                dir: Direction::Sent,
                seg,
                ..
            } => Some((r.time.as_millis(), seg.flags, seg.len)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (0, TcpFlags::SYN, 0),
            (50, TcpFlags::PSH | TcpFlags::ACK, 18)
        ]
    );
    assert_eq!(p.now().as_millis(), 75);
    assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn connecting_to_a_port_with_no_listener_is_refused() {
    let mut p = Pair::new(4, Duration::from_millis(10), Config::default());
    let c = p.connect(9);
    let client = p.client;
    assert!(p.run_until(Duration::from_secs(1), |p| {
        p.net.host(client).tcp().conn(c).unwrap().state() == State::Closed
    }));
    assert_eq!(
        p.net.host(client).tcp().error(c),
        Some(ConnectionError::Refused)
    );
    assert_eq!(p.net.host(p.server).tcp().stats().resets_sent, 1);
    // SYN, then RST-ACK <SEQ=0><ACK=ISS+1>.
    let trace = p.server_trace();
    let rst = trace
        .iter()
        .find_map(|r| match r.event {
            TraceEvent::Segment {
                dir: Direction::Sent,
                seg,
                ..
            } => Some(seg),
            _ => None,
        })
        .unwrap();
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(rst.seq.0, 0);
}

#[test]
fn abort_reaches_the_peer_as_a_reset() {
    let mut p = Pair::new(5, Duration::from_millis(10), Config::default());
    let (c, s) = p.open(80, Duration::from_secs(1)).unwrap();
    p.net.host_mut(p.client).tcp_mut().abort(c);
    p.net.flush();
    let server = p.server;
    assert!(p.run_until(Duration::from_secs(1), |p| {
        p.net.host(server).tcp().conn(s).unwrap().state() == State::Closed
    }));
    assert_eq!(
        p.net.host(server).tcp().error(s),
        Some(ConnectionError::Reset)
    );
}

fn trace_of(seed: u64) -> Vec<String> {
    let mut p = Pair::new(seed, Duration::from_millis(30), Config::default());
    let (c, s) = p.open(80, Duration::from_secs(1)).unwrap();
    let mut cf = Flow::new(pattern(1, 100_000));
    let mut sf = Flow::new(pattern(2, 50_000));
    assert!(p.exchange(c, s, &mut cf, &mut sf, Duration::from_secs(10)));
    let mut out: Vec<String> = p
        .client_trace()
        .iter()
        .map(|r| format!("c {} {:?}", r.time, r.event))
        .collect();
    out.extend(
        p.server_trace()
            .iter()
            .map(|r| format!("s {} {:?}", r.time, r.event)),
    );
    out
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = trace_of(11);
    let b = trace_of(11);
    assert!(a.len() > 50);
    assert_eq!(a, b);
    assert_ne!(a, trace_of(12), "a different seed gives different ISNs");
}

/// The SYNs a fresh client stack keyed by `secret` puts on the wire at time zero when it
/// connects from each of `ports` to the server's port 80: (source port, destination port, ISN),
/// read back from the IP packets its interface emitted.
fn syns_on_the_wire(secret: [u8; 16], ports: &[u16]) -> Vec<(u16, u16, u32)> {
    let mut net = Network::new(1);
    let c = Interface::new(Config::default(), &[ip(CLIENT_IP)], secret);
    let s = Interface::new(Config::default(), &[ip(SERVER_IP)], [0xee; 16]);
    let client = net.add_host("client", &[ip(CLIENT_IP)], c);
    let server = net.add_host("server", &[ip(SERVER_IP)], s);
    net.link(client, server, PathConfig::perfect(), PathConfig::perfect());
    let log = PacketLog::new();
    net.tap(client, Box::new(log.clone()));
    let remote = SocketAddr::new(ip(SERVER_IP), 80);
    for &port in ports {
        let now = net.now();
        net.host_mut(client)
            .tcp_mut()
            .connect(now, ip(CLIENT_IP), Some(port), remote)
            .unwrap();
    }
    net.flush();
    assert_eq!(net.now(), synack_tcp::Instant::ZERO);
    let syns: Vec<_> = log
        .packets()
        .iter()
        .filter(|p| p.dir == TapDirection::Tx)
        .map(|p| {
            let (iph, payload) = IpRepr::parse(&p.bytes).unwrap();
            assert_eq!((iph.src(), iph.dst()), (ip(CLIENT_IP), ip(SERVER_IP)));
            let seg = TcpRepr::parse(payload, Some((iph.src(), iph.dst()))).unwrap();
            assert_eq!(seg.flags, TcpFlags::SYN, "the first segment of an open");
            (seg.src_port, seg.dst_port, seg.seq)
        })
        .collect();
    assert_eq!(syns.len(), ports.len(), "one SYN per connect: {syns:?}");
    syns
}

#[test]
fn isns_differ_across_tuples_and_across_stacks() {
    // RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey). Two stacks
    // with their own secrets, opening the same 4-tuples at the same instant (the same M), put
    // different ISNs on the wire; a stack with the same secret puts the same ones.
    let ports: Vec<u16> = (40_000..40_016).collect();
    let a = syns_on_the_wire([0x11; 16], &ports);
    let b = syns_on_the_wire([0x22; 16], &ports);
    let a_again = syns_on_the_wire([0x11; 16], &ports);
    assert_eq!(
        a, a_again,
        "the ISN is a function of secret, tuple and clock"
    );
    for ((sa, da, isn_a), (sb, db, isn_b)) in a.iter().zip(&b) {
        assert_eq!((sa, da), (sb, db), "the same 4-tuple on both stacks");
        assert_ne!(isn_a, isn_b, "port {sa}: two secrets, one ISN");
    }
    // And within one stack, each tuple gets its own ISN.
    let mut isns: Vec<u32> = a.iter().map(|s| s.2).collect();
    isns.sort_unstable();
    isns.dedup();
    assert_eq!(isns.len(), ports.len(), "{a:?}");
}

#[test]
fn ephemeral_ports_skip_live_and_time_wait_tuples() {
    let mut p = Pair::new(31, Duration::from_millis(10), Config::default());
    let (c, s) = p.open(80, Duration::from_secs(1)).unwrap();
    let first = p.net.host(p.client).tcp().conn(c).unwrap().tuple();
    // Close so the client holds the tuple in TIME-WAIT.
    let now = p.now();
    p.net.host_mut(p.client).tcp_mut().close(now, c);
    p.net.host_mut(p.server).tcp_mut().close(now, s);
    p.net.flush();
    p.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(
        p.net.host(p.client).tcp().connection_count(),
        1,
        "TIME-WAIT remains"
    );
    // Many more connections to the same server: none reuses the TIME-WAIT tuple.
    let remote = SocketAddr::new(ip(SERVER_IP), 80);
    for _ in 0..200 {
        let now = p.now();
        let id = p
            .net
            .host_mut(p.client)
            .tcp_mut()
            .connect(now, ip(CLIENT_IP), None, remote)
            .unwrap();
        let t = p.net.host(p.client).tcp().conn(id).unwrap().tuple();
        assert_ne!(t, first);
    }
}

#[test]
fn time_wait_ends_after_exactly_two_msl_of_virtual_time() {
    let cfg = Config {
        msl: Duration::from_secs(5),
        ..Config::default()
    };
    let mut p = Pair::new(41, Duration::from_millis(10), cfg);
    let (c, s) = p.open(80, Duration::from_secs(1)).unwrap();
    let now = p.now();
    p.net.host_mut(p.client).tcp_mut().close(now, c);
    p.net.flush();
    let client = p.client;
    let server = p.server;
    p.run_until(Duration::from_secs(1), |p| {
        let now = p.now();
        let ep = p.net.host_mut(server).tcp_mut();
        if ep.conn(s).is_some_and(|c| c.state() == State::CloseWait) {
            ep.close(now, s);
        }
        false
    });
    let trace = p.client_trace();
    let entered = trace
        .iter()
        .find(|r| {
            matches!(
                r.event,
                TraceEvent::State {
                    to: State::TimeWait,
                    ..
                }
            )
        })
        .unwrap()
        .time;
    p.run_until(Duration::from_secs(20), |_| false);
    let left = p
        .client_trace()
        .iter()
        .find(|r| {
            matches!(
                r.event,
                TraceEvent::State {
                    from: State::TimeWait,
                    to: State::Closed,
                    ..
                }
            )
        })
        .unwrap()
        .time;
    assert_eq!(left - entered, Duration::from_secs(10));
    assert_eq!(p.net.host(client).tcp().connection_count(), 0);
}

#[test]
fn many_sequential_connections_each_one_byte_each_way() {
    // Connection churn: every connection's rings come from the ones before it.
    let cfg = Config {
        msl: Duration::from_millis(100),
        ..Config::default()
    };
    let mut p = Pair::new(51, Duration::from_millis(2), cfg);
    p.net.host_mut(p.client).tcp_mut().set_tracing(false);
    p.net.host_mut(p.server).tcp_mut().set_tracing(false);
    let l = p.listen(80);
    for i in 0..300u32 {
        let byte = (i % 251) as u8;
        let c = p.connect(80);
        let mut cf = Flow::new(vec![byte]);
        let mut sf: Option<(synack_tcp::ConnId, Flow)> = None;
        let (client, server) = (p.client, p.server);
        let done = p.run_until(Duration::from_secs(5), |p| {
            let now = p.now();
            if sf.is_none() {
                if let Some(s) = p.net.host_mut(server).tcp_mut().accept(l) {
                    sf = Some((s, Flow::new(vec![byte ^ 0xff])));
                }
            }
            cf.pump(p.net.host_mut(client).tcp_mut(), now, c);
            if let Some((s, f)) = sf.as_mut() {
                f.pump(p.net.host_mut(server).tcp_mut(), now, *s);
            }
            p.net.flush();
            cf.done() && sf.as_ref().is_some_and(|(_, f)| f.done())
        });
        assert!(done, "connection {i} did not finish");
        assert_eq!(cf.got, vec![byte ^ 0xff], "connection {i}");
        assert_eq!(sf.as_ref().unwrap().1.got, vec![byte], "connection {i}");
        let now = p.now();
        p.net.host_mut(client).tcp_mut().close(now, c);
        let s = sf.unwrap().0;
        p.net.host_mut(server).tcp_mut().close(now, s);
        p.net.flush();
    }
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(p.net.host(p.client).tcp().connection_count(), 0);
    assert_eq!(p.net.host(p.server).tcp().connection_count(), 0);
}
