//! No bytes make the interface panic: random packets, and valid packets (TCP, ICMP errors
//! quoting our segments, echo requests) with random mutations, at a host with a listener and
//! live connections, with time moving between them.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use synack_stack::Interface;
use synack_tcp::{Config, Instant};
use synack_wire::icmp::Icmpv4Repr;
use synack_wire::{IpProtocol, IpRepr, TcpFlags, TcpOptions, TcpRepr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn host() -> Interface {
    let me = ip("198.18.0.2");
    let mut i = Interface::new(Config::default(), &[me, ip("2001:2::2")], [9; 16]);
    i.tcp_mut()
        .listen(SocketAddr::new(me, 80), 8)
        .expect("listen");
    i.tcp_mut()
        .connect(
            Instant::ZERO,
            me,
            None,
            SocketAddr::new(ip("198.18.0.1"), 443),
        )
        .expect("connect");
    i
}

fn tcp_packet(seq: u32, ack: u32, flags: u8, port: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (ip("198.18.0.1"), ip("198.18.0.2"));
    let seg = TcpRepr {
        src_port: 40000,
        dst_port: port,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 1000,
        urgent: 0,
        options: TcpOptions::default(),
        payload,
    };
    let hdr = IpRepr::new(src, dst, IpProtocol::Tcp, seg.buffer_len(), 64).unwrap();
    let mut p = vec![0u8; hdr.header_len() + seg.buffer_len()];
    hdr.emit(&mut p);
    seg.emit(&mut p[hdr.header_len()..], src, dst);
    p
}

fn icmp_error(quoted: &[u8], code: u8) -> Vec<u8> {
    let msg = Icmpv4Repr::DstUnreachable {
        code,
        next_hop_mtu: 500,
        invoking: quoted,
    };
    let hdr = IpRepr::new(
        ip("198.18.0.9"),
        ip("198.18.0.2"),
        IpProtocol::Icmp,
        msg.buffer_len(),
        64,
    )
    .unwrap();
    let mut p = vec![0u8; hdr.header_len() + msg.buffer_len()];
    hdr.emit(&mut p);
    msg.emit(&mut p[hdr.header_len()..]);
    p
}

#[derive(Debug, Clone)]
enum Input {
    Raw(Vec<u8>),
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        port: u16,
        len: usize,
        flips: Vec<(usize, u8)>,
    },
    Icmp {
        code: u8,
        cut: usize,
        flips: Vec<(usize, u8)>,
    },
    Advance(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120).prop_map(Input::Raw),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            prop_oneof![Just(80u16), Just(81u16), any::<u16>()],
            0usize..64,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3)
        )
            .prop_map(|(seq, ack, flags, port, len, flips)| Input::Tcp {
                seq,
                ack,
                flags,
                port,
                len,
                flips
            }),
        (
            any::<u8>(),
            0usize..80,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3)
        )
            .prop_map(|(code, cut, flips)| Input::Icmp { code, cut, flips }),
        (0u64..3_000_000).prop_map(Input::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn no_input_makes_the_interface_panic(inputs in proptest::collection::vec(input(), 1..40)) {
        let mut i = host();
        let mut now = Instant::ZERO;
        let mut sent: Vec<Vec<u8>> = Vec::new();
        i.transmit(now, &mut |p| sent.push(p.to_vec()));
        for inp in inputs {
            match inp {
                Input::Raw(b) => i.receive(now, &b),
                Input::Tcp { seq, ack, flags, port, len, flips } => {
                    let mut p = tcp_packet(seq, ack, flags, port, &vec![7u8; len]);
                    for (at, x) in flips {
                        let n = p.len();
                        p[at % n] ^= x;
                    }
                    i.receive(now, &p);
                }
                Input::Icmp { code, cut, flips } => {
                    // Quote one of our own packets (or garbage), cut anywhere.
                    let mut q = sent.last().cloned().unwrap_or_else(|| vec![0x45; 40]);
                    q.truncate(cut);
                    for (at, x) in flips {
                        if !q.is_empty() {
                            let n = q.len();
                            q[at % n] ^= x;
                        }
                    }
                    i.receive(now, &icmp_error(&q, code % 16));
                }
                Input::Advance(us) => {
                    now += std::time::Duration::from_micros(us);
                    i.handle_timeout(now);
                }
            }
            let mut n = 0;
            i.transmit(now, &mut |p| {
                n += 1;
                sent.push(p.to_vec());
            });
            prop_assert!(n < 10_000, "runaway output");
            prop_assert!(IpRepr::parse(sent.last().map(Vec::as_slice).unwrap_or(&[0x45; 20])).is_ok() || sent.is_empty());
        }
    }
}
