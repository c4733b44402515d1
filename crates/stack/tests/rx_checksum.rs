//! Receiving with checksums on: in-order data is checked as it is copied into the receive
//! ring (one pass), everything else before it is handled. A segment whose checksum is wrong is
//! counted as such and dropped, and leaves the receive buffer as it was, wherever the ring's
//! wrap falls (odd segment sizes put it at odd offsets); the good copy then goes in byte-exact.

use std::net::{IpAddr, SocketAddr};

use synack_stack::Interface;
use synack_tcp::{Config, ConnId, Duration, Instant};
use synack_wire::{IpProtocol, IpRepr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn drain(i: &mut Interface, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    i.transmit(now, &mut |p| out.push(p.to_vec()));
    out
}

/// The offset of the TCP payload in an IPv4 packet, and its length.
fn payload_range(p: &[u8]) -> (usize, usize) {
    let (h, seg) = IpRepr::parse(p).unwrap();
    assert_eq!(h.protocol(), IpProtocol::Tcp);
    let hlen = usize::from(seg[12] >> 4) * 4;
    (p.len() - seg.len() + hlen, seg.len() - hlen)
}

struct Pair {
    client: Interface,
    server: Interface,
    now: Instant,
    c: ConnId,
    s: ConnId,
}

fn pair(mtu: usize, recv_buffer: usize) -> Pair {
    let config = Config {
        mtu,
        recv_buffer,
        send_buffer: 1 << 20,
        ..Config::default()
    };
    let mut client = Interface::new(config.clone(), &[ip("198.18.0.1")], [1; 16]);
    let mut server = Interface::new(config, &[ip("198.18.0.2")], [2; 16]);
    let dst = SocketAddr::new(ip("198.18.0.2"), 80);
    let l = server.tcp_mut().listen(dst, 8).unwrap();
    let mut now = Instant::ZERO;
    let c = client
        .tcp_mut()
        .connect(now, ip("198.18.0.1"), None, dst)
        .unwrap();
    let mut s = None;
    while s.is_none() {
        now += Duration::from_millis(1);
        for p in drain(&mut client, now) {
            server.receive(now, &p);
        }
        for p in drain(&mut server, now) {
            client.receive(now, &p);
        }
        s = server.tcp_mut().accept(l);
    }
    Pair {
        client,
        server,
        now,
        c,
        s: s.unwrap(),
    }
}

/// Every data segment arrives first with one payload byte (or a header byte) flipped, then
/// intact; the reader drains part of the ring now and then so its wrap moves around.
fn corrupt_then_deliver(mtu: usize, recv_buffer: usize, total: usize) {
    let mut p = pair(mtu, recv_buffer);
    let data: Vec<u8> = (0..total).map(|i| (i * 131 + i / 7) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let mut corrupted = 0u64;
    let mut placed_in_order = 0;
    for round in 0..100_000 {
        p.now += Duration::from_micros(200);
        let now = p.now;
        for i in [&mut p.client, &mut p.server] {
            if i.poll_timeout().is_some_and(|t| t <= now) {
                i.handle_timeout(now);
            }
        }
        if sent < total {
            let c = p.c;
            if let Some(Ok(n)) = p
                .client
                .tcp_mut()
                .with_conn(now, c, |c| c.send(&data[sent..]))
            {
                sent += n;
            }
        }
        for pkt in drain(&mut p.client, now) {
            let (at, len) = payload_range(&pkt);
            if len > 0 {
                // What the server has to say about the segments before this one goes first.
                for reply in drain(&mut p.server, now) {
                    p.client.receive(now, &reply);
                }
                let s = p.s;
                let before = p.server.tcp().conn(s).unwrap().recv_available();
                let stats = p.server.stats();
                let mut bad = pkt.clone();
                // A payload byte, or (every fifth) a byte of the TCP header.
                let k = if corrupted % 5 == 4 {
                    at - 9
                } else {
                    at + (corrupted as usize * 7) % len
                };
                bad[k] ^= 0x10;
                p.server.receive(now, &bad);
                corrupted += 1;
                let after = p.server.stats();
                assert_eq!(after.rx_bad_checksum, stats.rx_bad_checksum + 1);
                assert_eq!(p.server.tcp().conn(s).unwrap().recv_available(), before);
                assert!(
                    drain(&mut p.server, now).is_empty(),
                    "a bad segment drew a reply"
                );
                placed_in_order += 1;
            }
            p.server.receive(now, &pkt);
        }
        for pkt in drain(&mut p.server, now) {
            p.client.receive(now, &pkt);
        }
        // Read a little, sometimes: the ring's head wanders, and its storage fills and wraps.
        if round % 3 == 0 {
            let s = p.s;
            let mut buf = vec![0u8; 1000 + round % 777];
            if let Some(Ok(n)) = p.server.tcp_mut().with_conn(now, s, |c| c.recv(&mut buf)) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == total {
            break;
        }
    }
    assert_eq!(got.len(), total);
    assert!(got == data, "payload differs");
    assert_eq!(p.server.stats().rx_bad_checksum, corrupted);
    assert!(placed_in_order > 20);
}

#[test]
fn bad_segments_are_counted_and_leave_the_ring_alone() {
    // MSS 1449 with timestamps: odd segment sizes, so the wrap falls at odd offsets.
    corrupt_then_deliver(1501, 8192, 200_003);
    corrupt_then_deliver(1500, 65536, 300_000);
}

#[test]
fn out_of_order_bad_segments_are_counted_too() {
    let mut p = pair(1500, 65536);
    let now = p.now;
    let c = p.c;
    let data = vec![0x5au8; 4000];
    assert_eq!(
        p.client.tcp_mut().with_conn(now, c, |c| c.send(&data)),
        Some(Ok(4000))
    );
    let pkts = drain(&mut p.client, now);
    assert!(pkts.len() >= 2);
    // The second segment first (out of order), corrupted: dropped, no SACK for it.
    let mut bad = pkts[1].clone();
    let (at, _) = payload_range(&bad);
    bad[at] ^= 1;
    p.server.receive(now, &bad);
    assert_eq!(p.server.stats().rx_bad_checksum, 1);
    assert!(drain(&mut p.server, now).is_empty());
    for pkt in &pkts {
        p.server.receive(now, pkt);
    }
    let s = p.s;
    assert_eq!(p.server.tcp().conn(s).unwrap().recv_available(), 4000);
    assert_eq!(p.server.stats().rx_bad_checksum, 1);
}
