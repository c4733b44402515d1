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

/// The packets of datagrams `payloads` sent from `from` (a socket of `a`) to `to`.
fn packets(
    a: &mut Interface,
    from: SocketAddr,
    to: SocketAddr,
    payloads: &[&[u8]],
) -> Vec<Vec<u8>> {
    for p in payloads {
        a.udp_mut().send_to(from, to, p).unwrap();
    }
    drain(a, Instant::from_micros(0))
}

/// A payload of `len` bytes that says which datagram it is (`tag`) in every byte.
fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// GRO-like receive (`recv_coalesced`): five queued datagrams of one size from one source
/// come out as one run with that size as its stride, byte-exact and in order; a datagram
/// from another source, a longer one, a run limit, or a buffer too small for the next end a
/// run, and a shorter one is taken as the last of it (as Linux's UDP GRO does).
#[test]
fn recv_coalesced_runs_of_one_flow_and_size() {
    let now = Instant::from_micros(0);
    let mut a = Interface::new(Config::default(), &[ip(A)], [1; 16]);
    let mut b = Interface::new(Config::default(), &[ip(B)], [2; 16]);
    let la = a.udp_mut().bind(sa(A, 5000)).unwrap();
    let la2 = a.udp_mut().bind(sa(A, 5001)).unwrap();
    let lb = b.udp_mut().bind(sa(B, 6000)).unwrap();
    let to = sa(B, 6000);

    let five: Vec<Vec<u8>> = (0..5).map(|i| payload(i, 1200)).collect();
    let refs: Vec<&[u8]> = five.iter().map(|v| &v[..]).collect();
    for p in packets(&mut a, la, to, &refs) {
        b.receive(now, &p);
    }
    let mut buf = vec![0u8; 64 * 1500];
    let c = b.udp_mut().recv_coalesced(lb, &mut buf, 64).unwrap();
    assert_eq!(
        (c.from, c.to, c.len, c.stride, c.segments),
        (sa(A, 5000), to, 5 * 1200, 1200, 5)
    );
    assert_eq!(buf[..c.len], five.concat()[..], "byte-exact, in order");
    assert_eq!(
        b.udp_mut()
            .recv_coalesced(lb, &mut buf, 64)
            .unwrap_err()
            .kind(),
        io::ErrorKind::WouldBlock
    );

    // 2 x 1000 from 5000, 1 x 1000 from 5001, 1 x 1000 from 5000, then 1300 (longer),
    // 700 (shorter: last of a run), 700.
    let mut pk = packets(&mut a, la, to, &[&payload(10, 1000), &payload(11, 1000)]);
    pk.extend(packets(&mut a, la2, to, &[&payload(12, 1000)]));
    pk.extend(packets(
        &mut a,
        la,
        to,
        &[
            &payload(13, 1000),
            &payload(14, 1300),
            &payload(15, 700),
            &payload(16, 700),
        ],
    ));
    for p in &pk {
        b.receive(now, p);
    }
    let mut runs = Vec::new();
    while let Ok(c) = b.udp_mut().recv_coalesced(lb, &mut buf, 64) {
        runs.push((c.from.port(), c.stride, c.segments, buf[..c.len].to_vec()));
    }
    let cat = |v: &[Vec<u8>]| v.concat();
    assert_eq!(
        runs,
        vec![
            (5000, 1000, 2, cat(&[payload(10, 1000), payload(11, 1000)])),
            (5001, 1000, 1, payload(12, 1000)),
            (5000, 1000, 1, payload(13, 1000)),
            (5000, 1300, 2, cat(&[payload(14, 1300), payload(15, 700)])),
            (5000, 700, 1, payload(16, 700)),
        ]
    );

    // The run limit and the buffer's room end a run; a buffer shorter than the first
    // datagram truncates it (as a kernel socket does) and ends the run there.
    for p in packets(&mut a, la, to, &refs) {
        b.receive(now, &p);
    }
    let c = b.udp_mut().recv_coalesced(lb, &mut buf, 3).unwrap();
    assert_eq!((c.len, c.segments), (3 * 1200, 3));
    assert_eq!(buf[..c.len], five[..3].concat()[..]);
    let mut small = [0u8; 2000];
    let c = b.udp_mut().recv_coalesced(lb, &mut small, 64).unwrap();
    assert_eq!(
        (c.len, c.stride, c.segments),
        (1200, 1200, 1),
        "no room for two"
    );
    assert_eq!(small[..1200], five[3][..]);
    let mut tiny = [0u8; 500];
    let c = b.udp_mut().recv_coalesced(lb, &mut tiny, 64).unwrap();
    assert_eq!((c.len, c.stride, c.segments), (500, 500, 1));
    assert_eq!(tiny[..], five[4][..500]);
    assert_eq!(
        b.udp_mut()
            .recv_coalesced(lb, &mut buf, 64)
            .unwrap_err()
            .kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(b.udp().stats().rx_datagrams, 17);
}

/// The receive buffer pool: once warm, receiving allocates nothing; buffers come back from
/// `recv_coalesced`, from `recycle` after `recv`, from a socket closed with datagrams queued
/// and from what `connect` drops; the pool keeps at most `POOL_BUFFERS`, and a buffer that
/// grew too large is not kept.
#[test]
fn receive_buffers_are_pooled() {
    use synack_stack::udp::{BufferPool, POOL_BUFFERS};
    let now = Instant::from_micros(0);
    let mut a = Interface::new(Config::default(), &[ip(A)], [1; 16]);
    let mut b = Interface::new(Config::default(), &[ip(B)], [2; 16]);
    let la = a.udp_mut().bind(sa(A, 5000)).unwrap();
    let lb = b.udp_mut().bind(sa(B, 6000)).unwrap();
    let to = sa(B, 6000);
    let data: Vec<Vec<u8>> = (0..8).map(|i| payload(i, 100 + usize::from(i))).collect();
    let refs: Vec<&[u8]> = data.iter().map(|v| &v[..]).collect();
    let pk = packets(&mut a, la, to, &refs);
    for p in &pk {
        b.receive(now, p);
    }
    assert_eq!(b.udp().pool().counts(), (8, 0), "a cold pool allocates");
    let mut buf = [0u8; 1500];
    let mut got = Vec::new();
    while let Ok(c) = b.udp_mut().recv_coalesced(lb, &mut buf, 64) {
        got.push(buf[..c.len].to_vec());
    }
    assert_eq!(got, data, "sizes differ: one datagram per run, byte-exact");
    assert_eq!(b.udp().pool().len(), 8);
    for round in 0..3 {
        for p in &pk {
            b.receive(now, p);
        }
        assert_eq!(
            b.udp().pool().counts(),
            (8, 8 * (round + 1)),
            "warm: no allocation"
        );
        for d in &data {
            let r = b.udp_mut().recv(lb).unwrap();
            assert_eq!(&r.data, d);
            b.udp_mut().recycle(r.data);
        }
    }
    assert_eq!(b.udp().pool().len(), 8);

    // Unread datagrams come back when the socket closes, and when connect drops them.
    for p in &pk {
        b.receive(now, p);
    }
    assert_eq!(b.udp().pool().len(), 0);
    b.udp_mut().unbind(lb);
    assert_eq!(b.udp().pool().len(), 8);
    let lb = b.udp_mut().bind(sa(B, 6000)).unwrap();
    for p in &pk {
        b.receive(now, p);
    }
    b.udp_mut().connect(lb, sa(A, 9999)).unwrap();
    assert_eq!(b.udp().pool().len(), 8, "datagrams from others dropped");
    assert_eq!(
        b.udp().pool().counts().0,
        8,
        "never allocated past the first eight"
    );

    // Bounds.
    let mut pool = BufferPool::new(2, 64);
    let x = pool.take_copy(b"x");
    assert!(x.capacity() >= 64);
    for _ in 0..3 {
        pool.put(Vec::with_capacity(64));
    }
    assert_eq!(pool.len(), 2, "at most the limit kept");
    let mut pool = BufferPool::new(POOL_BUFFERS, 64);
    pool.put(Vec::with_capacity(BufferPool::MAX_CAPACITY + 1));
    assert!(pool.is_empty(), "an oversized buffer is freed");
    assert_eq!(
        pool.take_copy(&[7; 100]),
        vec![7; 100],
        "grows past its capacity"
    );
}
