//! Property tests: no parser panics on any input, and TCP segments round-trip.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use synack_wire::icmp::{Icmpv4Repr, Icmpv6Repr};
use synack_wire::{
    checksum, FastOpen, FastOpenCookie, IpProtocol, IpRepr, SackBlock, TcpFlags, TcpOptions,
    TcpRepr, Timestamp, UdpRepr,
};

fn v4_pair() -> (IpAddr, IpAddr) {
    (
        Ipv4Addr::new(192, 0, 2, 1).into(),
        Ipv4Addr::new(198, 51, 100, 2).into(),
    )
}

fn v6_pair() -> (Ipv6Addr, Ipv6Addr) {
    (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    )
}

/// Feeds `bytes` to every parser, as an IP packet and as each transport message. The results
/// do not matter; only that nothing panics. Whatever parses is also re-emitted, which must not
/// panic either given a buffer of the stated length.
fn parse_everything(bytes: &[u8]) {
    let (s4, d4) = v4_pair();
    let (s6, d6) = v6_pair();
    if let Ok((ip, payload)) = IpRepr::parse(bytes) {
        assert_eq!(ip.payload_len(), payload.len());
        let mut buf = vec![0u8; ip.header_len()];
        ip.emit(&mut buf);
        let addrs = Some((ip.src(), ip.dst()));
        match ip.protocol() {
            IpProtocol::Tcp => {
                let _ = TcpRepr::parse(payload, addrs);
            }
            IpProtocol::Udp => {
                let _ = UdpRepr::parse(payload, addrs);
            }
            IpProtocol::Icmp => {
                let _ = Icmpv4Repr::parse(payload);
            }
            IpProtocol::Icmpv6 => {
                if let (IpAddr::V6(s), IpAddr::V6(d)) = (ip.src(), ip.dst()) {
                    let _ = Icmpv6Repr::parse(payload, s, d);
                }
            }
            IpProtocol::Other(_) => {}
        }
    }
    for addrs in [None, Some((s4, d4)), Some((s6.into(), d6.into()))] {
        if let Ok(tcp) = TcpRepr::parse(bytes, addrs) {
            assert!(tcp.header_len() <= 60);
            let mut buf = vec![0u8; tcp.buffer_len()];
            tcp.emit(&mut buf, s4, d4);
        }
        if let Ok(udp) = UdpRepr::parse(bytes, addrs) {
            let mut buf = vec![0u8; udp.buffer_len()];
            udp.emit(&mut buf, s4, d4);
        }
    }
    if let Ok(icmp) = Icmpv4Repr::parse(bytes) {
        let mut buf = vec![0u8; icmp.buffer_len()];
        icmp.emit(&mut buf);
    }
    if let Ok(icmp) = Icmpv6Repr::parse(bytes, s6, d6) {
        let mut buf = vec![0u8; icmp.buffer_len()];
        icmp.emit(&mut buf, s6, d6);
    }
    let _ = TcpOptions::parse(bytes);
    let _ = checksum::checksum(bytes, u64::MAX);
}

/// A valid Fast Open option: a request or a cookie of an even length from 4 to 16, in kind 34
/// or 254.
fn fast_open() -> impl Strategy<Value = FastOpen> {
    (
        prop_oneof![Just(0usize), (2usize..=8).prop_map(|n| 2 * n)],
        proptest::collection::vec(any::<u8>(), 16),
        any::<bool>(),
    )
        .prop_map(|(len, bytes, experimental)| FastOpen {
            cookie: FastOpenCookie::new(&bytes[..len]).unwrap(),
            experimental,
        })
}

/// Valid TCP options, with only the SACK blocks that emission keeps (so they round-trip).
fn tcp_options() -> impl Strategy<Value = TcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
        proptest::option::of(fast_open()),
    )
        .prop_map(
            |(mss, window_scale, sack_permitted, ts, blocks, fast_open)| {
                let mut o = TcpOptions {
                    mss,
                    window_scale,
                    sack_permitted,
                    timestamp: ts.map(|(tsval, tsecr)| Timestamp { tsval, tsecr }),
                    fast_open,
                    ..TcpOptions::default()
                };
                for (left, right) in blocks {
                    assert!(o.push_sack(SackBlock { left, right }));
                }
                let keep = o.emitted_sack_blocks();
                let mut sack = [SackBlock::default(); 4];
                sack[..keep].copy_from_slice(&o.sack[..keep]);
                o.sack = sack;
                o.sack_len = keep as u8;
                o
            },
        )
}

prop_compose! {
    fn tcp_fields()(
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        window in any::<u16>(),
        urgent in any::<u16>(),
        options in tcp_options(),
        payload in proptest::collection::vec(any::<u8>(), 0..120),
    ) -> (u16, u16, u32, u32, u8, u16, u16, TcpOptions, Vec<u8>) {
        (src_port, dst_port, seq, ack, flags, window, urgent, options, payload)
    }
}

fn make_tcp(fields: &(u16, u16, u32, u32, u8, u16, u16, TcpOptions, Vec<u8>)) -> TcpRepr<'_> {
    let (src_port, dst_port, seq, ack, flags, window, urgent, options, ref payload) = *fields;
    TcpRepr {
        src_port,
        dst_port,
        seq,
        ack,
        flags: TcpFlags(flags),
        window,
        urgent,
        options,
        payload,
    }
}

/// A valid IP packet carrying one of TCP, UDP, ICMPv4 or ICMPv6 (ICMP in its own family).
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        0u8..4,
        tcp_fields(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(v6, kind, fields, ttl, word)| {
            let (s4, d4) = v4_pair();
            let (s6, d6) = v6_pair();
            let (src, dst): (IpAddr, IpAddr) = if v6 { (s6.into(), d6.into()) } else { (s4, d4) };
            let payload = &fields.8;
            let mut transport;
            let protocol;
            match kind {
                0 => {
                    let tcp = make_tcp(&fields);
                    transport = vec![0u8; tcp.buffer_len()];
                    tcp.emit(&mut transport, src, dst);
                    protocol = IpProtocol::Tcp;
                }
                1 => {
                    let udp = UdpRepr {
                        src_port: fields.0,
                        dst_port: fields.1,
                        payload,
                    };
                    transport = vec![0u8; udp.buffer_len()];
                    udp.emit(&mut transport, src, dst);
                    protocol = IpProtocol::Udp;
                }
                _ if v6 => {
                    let icmp = match kind {
                        2 => Icmpv6Repr::EchoRequest {
                            ident: fields.0,
                            seq: fields.1,
                            data: payload,
                        },
                        _ => Icmpv6Repr::PacketTooBig {
                            mtu: word,
                            invoking: payload,
                        },
                    };
                    transport = vec![0u8; icmp.buffer_len()];
                    icmp.emit(&mut transport, s6, d6);
                    protocol = IpProtocol::Icmpv6;
                }
                _ => {
                    let icmp = match kind {
                        2 => Icmpv4Repr::EchoReply {
                            ident: fields.0,
                            seq: fields.1,
                            data: payload,
                        },
                        _ => Icmpv4Repr::DstUnreachable {
                            code: fields.4,
                            next_hop_mtu: fields.5,
                            invoking: payload,
                        },
                    };
                    transport = vec![0u8; icmp.buffer_len()];
                    icmp.emit(&mut transport);
                    protocol = IpProtocol::Icmp;
                }
            }
            let ip = IpRepr::new(src, dst, protocol, transport.len(), ttl).unwrap();
            let mut packet = vec![0u8; ip.header_len()];
            ip.emit(&mut packet);
            packet.extend_from_slice(&transport);
            packet
        })
}

/// One change to a valid packet.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Extend { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(|bytes| Mutation::Extend { bytes }),
    ]
}

fn apply(packet: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { at, mask } if !packet.is_empty() => {
            let i = at % packet.len();
            packet[i] ^= mask;
        }
        Mutation::Set { at, value } if !packet.is_empty() => {
            let i = at % packet.len();
            packet[i] = *value;
        }
        Mutation::Truncate { len } => packet.truncate(len % (packet.len() + 1)),
        Mutation::Extend { bytes } => packet.extend_from_slice(bytes),
        _ => {}
    }
}

/// Recomputes an IPv4 header checksum so that mutations reach the checks behind it.
fn fix_ipv4_checksum(packet: &mut [u8]) {
    if packet.first().map(|b| b >> 4) != Some(4) {
        return;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || ihl > packet.len() {
        return;
    }
    packet[10] = 0;
    packet[11] = 0;
    let c = checksum::checksum(&packet[..ihl], 0);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The transport part of an emitted packet (after its fixed IP header).
fn transport_of(packet: &[u8]) -> &[u8] {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(20..).unwrap_or_default(),
        Some(6) => packet.get(40..).unwrap_or_default(),
        _ => packet,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_everything(&bytes);
        // With a plausible first byte, to get past the version checks.
        for first in [0x45u8, 0x4f, 0x60] {
            let mut b = bytes.clone();
            if let Some(x) = b.first_mut() {
                *x = first;
            }
            parse_everything(&b);
            fix_ipv4_checksum(&mut b);
            parse_everything(&b);
        }
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        packet in valid_packet(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        fix in any::<bool>(),
    ) {
        // The unmutated packet parses.
        let (ip, payload) = IpRepr::parse(&packet).unwrap();
        prop_assert_eq!(payload.len(), ip.payload_len());

        let mut p = packet.clone();
        for m in &mutations {
            apply(&mut p, m);
        }
        if fix {
            fix_ipv4_checksum(&mut p);
        }
        parse_everything(&p);
        parse_everything(transport_of(&p));

        // Mutating only the transport part exercises option and field parsing without the
        // checksum getting in the way (parse_everything tries `None` too).
        let header_len = packet.len() - transport_of(&packet).len();
        let mut t = packet[header_len..].to_vec();
        for m in &mutations {
            apply(&mut t, m);
        }
        parse_everything(&t);
    }

    #[test]
    fn tcp_round_trip(fields in tcp_fields(), v6 in any::<bool>()) {
        let tcp = make_tcp(&fields);
        let (src, dst) = if v6 {
            let (s, d) = v6_pair();
            (s.into(), d.into())
        } else {
            v4_pair()
        };
        prop_assert_eq!(tcp.header_len() % 4, 0);
        prop_assert!(tcp.header_len() <= 60);
        let mut buf = vec![0u8; tcp.buffer_len()];
        tcp.emit(&mut buf, src, dst);
        prop_assert_eq!(TcpRepr::parse(&buf, Some((src, dst))), Ok(tcp));

        // Carried in IP as well.
        let ip = IpRepr::new(src, dst, IpProtocol::Tcp, buf.len(), 64).unwrap();
        let mut packet = vec![0u8; ip.header_len()];
        ip.emit(&mut packet);
        packet.extend_from_slice(&buf);
        let (ip2, payload) = IpRepr::parse(&packet).unwrap();
        prop_assert_eq!(ip2, ip);
        prop_assert_eq!(TcpRepr::parse(payload, Some((ip2.src(), ip2.dst()))), Ok(tcp));
    }

    #[test]
    fn checksum_chaining_matches_whole(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        split in any::<usize>(),
        initial in any::<u64>(),
    ) {
        let split = (split % (data.len() + 1)) & !1;
        let (a, b) = data.split_at(split);
        let chained = checksum::ones_complement_sum(b, checksum::ones_complement_sum(a, initial));
        prop_assert_eq!(
            checksum::fold(chained),
            checksum::fold(checksum::ones_complement_sum(&data, initial))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Every valid Fast Open option round-trips through emit and parse, in either kind, beside
    /// any SYN options; the bytes are a multiple of 4 and at most 40.
    #[test]
    fn fast_open_round_trip(fo in fast_open(), syn in any::<bool>()) {
        let o = TcpOptions {
            mss: syn.then_some(1460),
            window_scale: syn.then_some(8),
            sack_permitted: syn,
            timestamp: syn.then_some(Timestamp { tsval: 7, tsecr: 0 }),
            fast_open: Some(fo),
            ..TcpOptions::default()
        };
        let mut buf = vec![0u8; o.len()];
        prop_assert_eq!(o.emit(&mut buf), o.len());
        prop_assert_eq!(o.len() % 4, 0);
        prop_assert!(o.len() <= TcpOptions::MAX_LEN);
        prop_assert_eq!(TcpOptions::parse(&buf).unwrap(), o);
    }

    /// A Fast Open option of any length and contents never panics, and is kept only when its
    /// cookie is empty or of an even length from 4 to 16.
    #[test]
    fn fast_open_any_length(body in proptest::collection::vec(any::<u8>(), 0..38), exp in any::<bool>()) {
        let mut bytes = if exp { vec![254, (body.len() + 4) as u8, 0xf9, 0x89] } else { vec![34, (body.len() + 2) as u8] };
        bytes.extend_from_slice(&body);
        let parsed = TcpOptions::parse(&bytes).unwrap();
        let n = body.len();
        let valid = n == 0 || ((4..=16).contains(&n) && n.is_multiple_of(2));
        prop_assert_eq!(parsed.fast_open.is_some(), valid);
        if let Some(fo) = parsed.fast_open {
            prop_assert_eq!(fo.cookie.as_bytes(), &body[..]);
            prop_assert_eq!(fo.experimental, exp);
        }
    }
}
