//! UDP in the sans-IO core ([`synack_stack::udp`], inside the [`Interface`]) and the
//! tokio-shaped `UdpSocket` on top of it on the simulated network: exact datagrams, ICMP port
//! unreachable answered for closed ports, and ICMP errors delivered to connected sockets as
//! `ECONNREFUSED` (RFC 1122 §4.1.3.3).

use std::io;
use std::net::{IpAddr, SocketAddr};

use synack_stack::net::{SimNet, Stack, UdpSocket};
use synack_stack::sim::PathConfig;
use synack_stack::Interface;
use synack_tcp::{Config, Duration, Instant};
use synack_wire::icmp::Icmpv4Repr;
use synack_wire::{IpProtocol, IpRepr, UdpRepr};

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

fn drain(i: &mut Interface, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    i.transmit(now, &mut |p| out.push(p.to_vec()));
    out
}

/// The sans-IO table: a datagram goes out byte-exact, is delivered by 4-tuple, a closed port
/// is answered with ICMP port unreachable quoting it, and that error reaches the connected
/// sender once as `ConnectionRefused` (an unconnected one ignores it, as Linux).
#[test]
fn sans_io_datagrams_icmp_and_refused() {
    let now = Instant::from_micros(0);
    let mut a = Interface::new(Config::default(), &[ip(A)], [1; 16]);
    let mut b = Interface::new(Config::default(), &[ip(B)], [2; 16]);
    let la = a.udp_mut().bind(sa(A, 5000)).unwrap();
    let lb = b.udp_mut().bind("0.0.0.0:6000".parse().unwrap()).unwrap();
    assert_eq!(
        a.udp_mut().bind(sa(A, 5000)).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    assert_eq!(
        a.udp_mut().bind(sa(B, 1)).unwrap_err().kind(),
        io::ErrorKind::AddrNotAvailable
    );

    assert_eq!(a.udp_mut().send_to(la, sa(B, 6000), b"ping").unwrap(), 4);
    let out = drain(&mut a, now);
    assert_eq!(out.len(), 1);
    let (iph, payload) = IpRepr::parse(&out[0]).unwrap();
    assert_eq!((iph.src(), iph.dst()), (ip(A), ip(B)));
    assert_eq!(iph.protocol(), IpProtocol::Udp);
    assert_eq!(out[0].len(), 20 + 8 + 4);
    let u = UdpRepr::parse(payload, Some((ip(A), ip(B)))).unwrap();
    assert_eq!(
        (u.src_port, u.dst_port, u.payload),
        (5000, 6000, &b"ping"[..])
    );

    b.receive(now, &out[0]);
    let d = b.udp_mut().recv(lb).unwrap();
    assert_eq!(
        (d.from, d.to, &d.data[..]),
        (sa(A, 5000), sa(B, 6000), &b"ping"[..])
    );
    assert_eq!(
        b.udp_mut().recv(lb).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert!(
        drain(&mut b, now).is_empty(),
        "nothing answers a delivered datagram"
    );

    // To a closed port: ICMP port unreachable, quoting the datagram whole.
    a.udp_mut().connect(la, sa(B, 6001)).unwrap();
    a.udp_mut().send_to(la, sa(B, 6001), b"anyone?").unwrap();
    let sent = drain(&mut a, now).remove(0);
    b.receive(now, &sent);
    let icmp = drain(&mut b, now);
    assert_eq!(icmp.len(), 1);
    let (iph, payload) = IpRepr::parse(&icmp[0]).unwrap();
    assert_eq!(
        (iph.src(), iph.dst(), iph.protocol()),
        (ip(B), ip(A), IpProtocol::Icmp)
    );
    match Icmpv4Repr::parse(payload).unwrap() {
        Icmpv4Repr::DstUnreachable { code, invoking, .. } => {
            assert_eq!(code, Icmpv4Repr::PORT_UNREACHABLE);
            assert_eq!(invoking, &sent[..]);
        }
        other => panic!("not port unreachable: {other:?}"),
    }
    assert_eq!(b.udp().stats().rx_no_port, 1);
    assert_eq!(b.udp().stats().icmp_unreachable_sent, 1);

    // The connected sender gets ECONNREFUSED once, then goes on.
    assert!(!a.udp().readable(la));
    a.receive(now, &icmp[0]);
    assert!(a.udp().readable(la));
    assert_eq!(
        a.udp_mut().recv(la).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    assert_eq!(
        a.udp_mut().recv(la).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(a.udp().stats().icmp_errors_delivered, 1);
    assert_eq!(
        a.tcp().stats(),
        Interface::new(Config::default(), &[ip(A)], [1; 16])
            .tcp()
            .stats()
    );

    // Unconnected: the same error is ignored.
    let lc = a.udp_mut().bind(sa(A, 5001)).unwrap();
    a.udp_mut().send_to(lc, sa(B, 6002), b"x").unwrap();
    let sent = drain(&mut a, now).remove(0);
    b.receive(now, &sent);
    let icmp = drain(&mut b, now).remove(0);
    a.receive(now, &icmp);
    assert!(!a.udp().readable(lc));
    assert_eq!(a.udp().stats().icmp_errors_ignored, 1);

    // Bad input: a corrupted datagram is counted, never delivered nor answered.
    a.udp_mut().send_to(la, sa(B, 6000), b"ping").unwrap();
    let mut bad = drain(&mut a, now).remove(0);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    b.receive(now, &bad);
    assert_eq!(b.udp().stats().rx_bad_checksum, 1);
    assert!(drain(&mut b, now).is_empty());
    // Too big for the MTU: refused, never fragmented.
    let big = vec![0u8; 1500 - 28 + 1];
    assert_eq!(
        a.udp_mut()
            .send_to(la, sa(B, 6000), &big)
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(a.udp_mut().send_to(la, sa(B, 6000), &big[1..]).is_ok());
}

fn two_hosts(seed: u64, rtt: Duration) -> (SimNet, Stack, Stack) {
    let net = SimNet::new(seed);
    let a = net.add_host("a", &[ip(A)], Config::default());
    let b = net.add_host("b", &[ip(B)], Config::default());
    let half = PathConfig::delay(rtt / 2);
    net.link(&a, &b, half.clone(), half);
    (net, a, b)
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("virtual time limit")
}

/// On the simulator: a connected `UdpSocket` that sends to a closed port gets
/// `ConnectionRefused` from `recv` one round trip later (the ICMP error), exactly one
/// datagram and one ICMP message having crossed the network.
#[tokio::test(start_paused = true)]
async fn connected_socket_gets_econnrefused_on_the_simulator() {
    let (net, a, b) = two_hosts(3, Duration::from_millis(40));
    let u = UdpSocket::bind(&a, "0.0.0.0:0").await.unwrap();
    u.connect(sa(B, 9)).await.unwrap();
    let t0 = tokio::time::Instant::now();
    u.send(b"hello?").await.unwrap();
    let mut buf = [0u8; 16];
    let e = bounded(u.recv(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(
        t0.elapsed(),
        std::time::Duration::from_millis(40),
        "one RTT"
    );
    assert_eq!(b.udp_stats().icmp_unreachable_sent, 1);
    assert_eq!(a.udp_stats().icmp_errors_delivered, 1);
    assert_eq!(a.udp_stats().tx_datagrams, 1);
    let st = net.stats();
    assert_eq!(st.emitted, 2, "{st:?}");

    // A server on the port now: the same socket works again.
    let s = UdpSocket::bind(&b, sa(B, 9)).await.unwrap();
    u.send(b"hello").await.unwrap();
    let (n, from) = bounded(s.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    s.send_to(b"hi", from).await.unwrap();
    let n = bounded(u.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"hi");
}
