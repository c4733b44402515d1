//! ICMP at the interface: echo replies, and errors quoting our TCP segments (RFC 5927).

use std::net::{IpAddr, SocketAddr};

use synack_stack::Interface;
use synack_tcp::{Config, ConnectionError, Instant, State};
use synack_wire::icmp::{Icmpv4Repr, Icmpv6Repr};
use synack_wire::{IpProtocol, IpRepr, TcpRepr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn drain(i: &mut Interface, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    i.transmit(now, &mut |p| {
        out.push(p.to_vec());
        assert!(out.len() < 1000, "runaway");
    });
    out
}

fn icmpv4(src: IpAddr, dst: IpAddr, msg: Icmpv4Repr<'_>) -> Vec<u8> {
    let len = msg.buffer_len();
    let hdr = IpRepr::new(src, dst, IpProtocol::Icmp, len, 64).unwrap();
    let mut p = vec![0u8; hdr.header_len() + len];
    hdr.emit(&mut p);
    msg.emit(&mut p[hdr.header_len()..]);
    p
}

#[test]
fn echo_requests_are_answered_v4_and_v6() {
    let me4 = ip("198.18.0.2");
    let me6 = ip("2001:2::2");
    let mut i = Interface::new(Config::default(), &[me4, me6], [1; 16]);
    let req = icmpv4(
        ip("198.18.0.1"),
        me4,
        Icmpv4Repr::EchoRequest {
            ident: 7,
            seq: 1,
            data: b"ping",
        },
    );
    i.receive(Instant::ZERO, &req);
    let out = drain(&mut i, Instant::ZERO);
    assert_eq!(out.len(), 1);
    let (hdr, payload) = IpRepr::parse(&out[0]).unwrap();
    assert_eq!((hdr.src(), hdr.dst()), (me4, ip("198.18.0.1")));
    assert_eq!(
        Icmpv4Repr::parse(payload).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq: 1,
            data: b"ping"
        }
    );

    let (peer6, me6a) = match (ip("2001:2::1"), me6) {
        (IpAddr::V6(a), IpAddr::V6(b)) => (a, b),
        _ => unreachable!(),
    };
    let msg = Icmpv6Repr::EchoRequest {
        ident: 9,
        seq: 2,
        data: b"ping6",
    };
    let len = msg.buffer_len();
    let hdr = IpRepr::new(peer6.into(), me6, IpProtocol::Icmpv6, len, 64).unwrap();
    let mut req6 = vec![0u8; hdr.header_len() + len];
    hdr.emit(&mut req6);
    msg.emit(&mut req6[hdr.header_len()..], peer6, me6a);
    i.receive(Instant::ZERO, &req6);
    let out = drain(&mut i, Instant::ZERO);
    let (hdr, payload) = IpRepr::parse(&out[0]).unwrap();
    assert_eq!(hdr.protocol(), IpProtocol::Icmpv6);
    assert_eq!(
        Icmpv6Repr::parse(payload, me6a, peer6).unwrap(),
        Icmpv6Repr::EchoReply {
            ident: 9,
            seq: 2,
            data: b"ping6"
        }
    );
    assert_eq!(i.stats().icmp_echo_replies, 2);
}

fn client() -> (Interface, synack_tcp::ConnId, Vec<u8>) {
    let me = ip("198.18.0.1");
    let mut i = Interface::new(Config::default(), &[me], [2; 16]);
    let id = i
        .tcp_mut()
        .connect(
            Instant::ZERO,
            me,
            None,
            SocketAddr::new(ip("198.18.0.2"), 80),
        )
        .unwrap();
    let syn = drain(&mut i, Instant::ZERO).remove(0);
    (i, id, syn)
}

#[test]
fn port_unreachable_quoting_our_syn_refuses_the_connection() {
    let (mut i, id, syn) = client();
    // A router (or the host) answers with port unreachable quoting the IP header + 8 bytes.
    let quoted = &syn[..28];
    let err = icmpv4(
        ip("198.18.0.2"),
        ip("198.18.0.1"),
        Icmpv4Repr::DstUnreachable {
            code: Icmpv4Repr::PORT_UNREACHABLE,
            next_hop_mtu: 0,
            invoking: quoted,
        },
    );
    i.receive(Instant::from_millis(10), &err);
    let c = i.tcp().conn(id).unwrap();
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(ConnectionError::Refused));
}

#[test]
fn an_icmp_error_quoting_a_sequence_number_we_never_sent_is_ignored() {
    let (mut i, id, syn) = client();
    let mut quoted = syn[..28].to_vec();
    // Flip the quoted sequence number (bytes 24..28): a blind forgery.
    quoted[24] ^= 0x80;
    let err = icmpv4(
        ip("198.18.0.2"),
        ip("198.18.0.1"),
        Icmpv4Repr::DstUnreachable {
            code: Icmpv4Repr::PORT_UNREACHABLE,
            next_hop_mtu: 0,
            invoking: &quoted,
        },
    );
    i.receive(Instant::from_millis(10), &err);
    assert_eq!(i.tcp().conn(id).unwrap().state(), State::SynSent);
}

#[test]
fn host_unreachable_is_soft_and_names_the_timeout() {
    let cfg = Config {
        syn_retries: 1,
        ..Config::default()
    };
    let me = ip("198.18.0.1");
    let mut i = Interface::new(cfg, &[me], [3; 16]);
    let id = i
        .tcp_mut()
        .connect(
            Instant::ZERO,
            me,
            None,
            SocketAddr::new(ip("198.18.0.2"), 80),
        )
        .unwrap();
    let syn = drain(&mut i, Instant::ZERO).remove(0);
    let err = icmpv4(
        ip("198.18.0.254"),
        me,
        Icmpv4Repr::DstUnreachable {
            code: Icmpv4Repr::HOST_UNREACHABLE,
            next_hop_mtu: 0,
            invoking: &syn[..28],
        },
    );
    i.receive(Instant::from_millis(10), &err);
    assert_eq!(i.tcp().conn(id).unwrap().state(), State::SynSent);
    while let Some(now) = i.poll_timeout() {
        i.handle_timeout(now);
        drain(&mut i, now);
    }
    assert_eq!(i.tcp().error(id), Some(ConnectionError::Unreachable));
}

#[test]
fn fragmentation_needed_lowers_the_segment_size() {
    let me = ip("198.18.0.1");
    let peer = ip("198.18.0.2");
    let mut i = Interface::new(Config::default(), &[me], [4; 16]);
    let id = i
        .tcp_mut()
        .connect(Instant::ZERO, me, None, SocketAddr::new(peer, 80))
        .unwrap();
    let syn = drain(&mut i, Instant::ZERO).remove(0);
    let (_, tcp) = IpRepr::parse(&syn).unwrap();
    let synr = TcpRepr::parse(tcp, None).unwrap();
    // The peer answers with a SYN-ACK announcing MSS 1460.
    let synack = TcpRepr {
        src_port: 80,
        dst_port: synr.src_port,
        seq: 5000,
        ack: synr.seq.wrapping_add(1),
        flags: synack_wire::TcpFlags::SYN | synack_wire::TcpFlags::ACK,
        window: 65535,
        urgent: 0,
        options: synack_wire::TcpOptions {
            mss: Some(1460),
            ..Default::default()
        },
        payload: &[],
    };
    let len = synack.buffer_len();
    let hdr = IpRepr::new(peer, me, IpProtocol::Tcp, len, 64).unwrap();
    let mut pkt = vec![0u8; hdr.header_len() + len];
    hdr.emit(&mut pkt);
    synack.emit(&mut pkt[hdr.header_len()..], peer, me);
    i.receive(Instant::from_millis(10), &pkt);
    drain(&mut i, Instant::from_millis(10));
    i.tcp_mut().with_conn(Instant::from_millis(10), id, |c| {
        c.send(&[0u8; 3000]).unwrap()
    });
    let first = drain(&mut i, Instant::from_millis(10));
    assert_eq!(first[0].len(), 1500);
    // A router on the path has an MTU of 1000.
    let err = icmpv4(
        ip("198.18.0.254"),
        me,
        Icmpv4Repr::DstUnreachable {
            code: Icmpv4Repr::FRAG_NEEDED,
            next_hop_mtu: 1000,
            invoking: &first[0][..28],
        },
    );
    i.receive(Instant::from_millis(20), &err);
    let again = drain(&mut i, Instant::from_millis(20));
    assert!(!again.is_empty());
    assert!(
        again.iter().all(|p| p.len() <= 1000),
        "{:?}",
        again.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
