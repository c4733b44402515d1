//! `Interface::transmit_to`, which builds each packet straight into a device's buffer, sends
//! exactly the packets `Interface::transmit` sends (byte for byte, in the same order), with
//! every TCP checksum (computed while the payload is copied out of the send buffer) verifying.

use std::net::{IpAddr, SocketAddr};

use synack_stack::{ChecksumCaps, Interface, TxQueue};
use synack_tcp::{Config, ConnId, Duration, Instant, ListenerId};
use synack_wire::icmp::Icmpv4Repr;
use synack_wire::tcp::verify_checksum;
use synack_wire::{IpProtocol, IpRepr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A transmit queue that, like a device allocating per packet, hands out a new buffer of the
/// packet's length, filled with 0xee so that a byte left unwritten shows.
#[derive(Default)]
struct Queue {
    pending: Option<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    handed_out: usize,
}

impl TxQueue for Queue {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        if self.pending.as_ref().map(Vec::len) != Some(len) {
            self.handed_out += 1;
            self.pending = Some(vec![0xee; len]);
        }
        self.pending.as_mut().unwrap()
    }

    fn send(&mut self, start: usize) {
        let p = self.pending.take().expect("send without a buffer");
        self.sent.push(p[start..].to_vec());
    }
}

/// One client and one server interface.
struct World {
    client: Interface,
    server: Interface,
    queue: bool,
}

impl World {
    fn new(config: &Config, caps: ChecksumCaps, queue: bool) -> (World, ListenerId) {
        let mut client = Interface::new(config.clone(), &[ip("198.18.0.1")], [1; 16]);
        let mut server = Interface::new(config.clone(), &[ip("198.18.0.2")], [2; 16]);
        client.set_checksum(caps);
        server.set_checksum(caps);
        let l = server
            .tcp_mut()
            .listen(SocketAddr::new(ip("198.18.0.2"), 80), 8)
            .unwrap();
        (
            World {
                client,
                server,
                queue,
            },
            l,
        )
    }

    fn out(&mut self, server: bool, now: Instant) -> Vec<Vec<u8>> {
        let i = if server {
            &mut self.server
        } else {
            &mut self.client
        };
        if self.queue {
            let mut q = Queue::default();
            i.transmit_to(now, &mut q);
            assert_eq!(
                q.handed_out,
                q.sent.len(),
                "a buffer handed out was not sent"
            );
            q.sent
        } else {
            let mut v = Vec::new();
            i.transmit(now, &mut |p| v.push(p.to_vec()));
            v
        }
    }
}

/// Every TCP packet's checksum verifies (with checksums on) over the non-fused code.
/// Returns the TCP payload bytes seen.
fn check_tcp(packets: &[Vec<u8>], caps: ChecksumCaps) -> usize {
    let mut data = 0;
    for p in packets {
        let (h, seg) = IpRepr::parse(p).expect("a well-formed IP packet");
        if h.protocol() == IpProtocol::Tcp {
            if caps.tx {
                assert!(verify_checksum(seg, h.src(), h.dst()), "bad TCP checksum");
            }
            data += seg.len() - usize::from(seg[12] >> 4) * 4;
        }
    }
    data
}

fn run(mtu: usize, caps: ChecksumCaps) {
    const TOTAL: usize = 3_000_017;
    let config = Config {
        mtu,
        send_buffer: 256 << 10,
        recv_buffer: 256 << 10,
        ..Config::default()
    };
    let (mut a, la) = World::new(&config, caps, false);
    let (mut b, lb) = World::new(&config, caps, true);
    let payload: Vec<u8> = (0..TOTAL).map(|i| (i * 7 + i / 1000) as u8).collect();
    let mut now = Instant::ZERO;
    let dst = SocketAddr::new(ip("198.18.0.2"), 80);
    let ca = a
        .client
        .tcp_mut()
        .connect(now, ip("198.18.0.1"), None, dst)
        .unwrap();
    let cb = b
        .client
        .tcp_mut()
        .connect(now, ip("198.18.0.1"), None, dst)
        .unwrap();
    assert_eq!(ca, cb);
    let (mut sa, mut sb): (Option<ConnId>, Option<ConnId>) = (None, None);
    let (mut sent, mut got) = (0usize, Vec::<u8>::with_capacity(TOTAL));
    let mut data_bytes = 0;
    let mut pinged = false;
    for round in 0..200_000 {
        now += Duration::from_micros(50);
        for w in [&mut a, &mut b] {
            for i in [&mut w.client, &mut w.server] {
                if i.poll_timeout().is_some_and(|t| t <= now) {
                    i.handle_timeout(now);
                }
            }
        }
        // The application: the client writes, the server reads (the same in both worlds).
        if sent < TOTAL {
            let na = a
                .client
                .tcp_mut()
                .with_conn(now, ca, |c| c.send(&payload[sent..]));
            let nb = b
                .client
                .tcp_mut()
                .with_conn(now, cb, |c| c.send(&payload[sent..]));
            assert_eq!(na, nb);
            if let Some(Ok(n)) = na {
                sent += n;
            }
        }
        sa = sa.or_else(|| a.server.tcp_mut().accept(la));
        sb = sb.or_else(|| b.server.tcp_mut().accept(lb));
        if let (Some(sa), Some(sb)) = (sa, sb) {
            let mut buf = [0u8; 70_000];
            let mut buf2 = [0u8; 70_000];
            let na = a.server.tcp_mut().with_conn(now, sa, |c| c.recv(&mut buf));
            let nb = b.server.tcp_mut().with_conn(now, sb, |c| c.recv(&mut buf2));
            assert_eq!(na, nb);
            if let Some(Ok(n)) = na {
                assert_eq!(buf[..n], buf2[..n]);
                got.extend_from_slice(&buf[..n]);
            }
        }
        if round == 10 && !pinged {
            // An ICMP echo: its reply is queued by the interface and copied into the queue.
            pinged = true;
            let msg = Icmpv4Repr::EchoRequest {
                ident: 1,
                seq: 2,
                data: b"ping",
            };
            let hdr = IpRepr::new(ip("198.18.0.1"), ip("198.18.0.2"), IpProtocol::Icmp, 12, 64);
            let hdr = hdr.unwrap();
            let mut p = vec![0u8; hdr.header_len() + msg.buffer_len()];
            hdr.emit(&mut p);
            msg.emit(&mut p[hdr.header_len()..]);
            a.server.receive(now, &p);
            b.server.receive(now, &p);
        }
        loop {
            let (up_a, up_b) = (a.out(false, now), b.out(false, now));
            assert_eq!(up_a, up_b, "client packets differ");
            data_bytes += check_tcp(&up_b, caps);
            let (down_a, down_b) = (a.out(true, now), b.out(true, now));
            assert_eq!(down_a, down_b, "server packets differ");
            check_tcp(&down_b, caps);
            if up_a.is_empty() && down_a.is_empty() {
                break;
            }
            for p in &up_a {
                a.server.receive(now, p);
                b.server.receive(now, p);
            }
            for p in &down_a {
                a.client.receive(now, p);
                b.client.receive(now, p);
            }
        }
        if got.len() == TOTAL {
            break;
        }
    }
    assert_eq!(got, payload, "payload differs");
    assert!(data_bytes >= TOTAL);
    for i in [&a.client, &a.server, &b.client, &b.server] {
        assert_eq!(i.stats().rx_bad_checksum, 0);
    }
    assert_eq!(b.server.stats().icmp_echo_replies, 1);
    assert_eq!(a.server.stats(), b.server.stats());
    assert_eq!(a.client.stats(), b.client.stats());
}

#[test]
fn same_packets_as_transmit_checksums_on() {
    run(1500, ChecksumCaps::FULL);
    run(9000, ChecksumCaps::FULL);
}

#[test]
fn same_packets_as_transmit_checksums_off() {
    run(1500, ChecksumCaps::OFFLOADED);
    run(65535, ChecksumCaps::OFFLOADED);
}
