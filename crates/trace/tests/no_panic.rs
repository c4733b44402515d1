//! No bytes make the capture reader, the analysis, the decoders or the report panic: random
//! files, random packets, random segment sequences, every prefix of a real capture and every
//! bit flipped in one.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use synack_stack::pcap::PcapWriter;
use synack_tcp::Instant;
use synack_trace::capture::CaptureReader;
use synack_trace::decode::{quic, tls, AppStream, Side};
use synack_trace::report::{connection_block, Filter, Only, Report};
use synack_trace::Analyzer;
use synack_wire::{IpProtocol, IpRepr, TcpFlags, TcpOptions, TcpRepr};

/// Reads `file` to the end (or its first error) and renders everything, as `synack trace`.
fn run(file: &[u8]) {
    let Ok(mut r) = CaptureReader::new(file) else {
        return;
    };
    let mut a = Analyzer::new();
    while let Some(Ok(f)) = r.next_frame() {
        a.push_frame(&f);
    }
    render(a);
}

fn render(a: Analyzer) {
    let done = a.finish();
    let mut rep = Report::new();
    for only in [
        None,
        Some(Only::Handshakes),
        Some(Only::Closes),
        Some(Only::Retransmissions),
    ] {
        let f = Filter {
            only,
            ..Filter::default()
        };
        for c in &done.connections {
            let _ = connection_block(c, true, &f, done.stats.first_time);
            let _ = connection_block(c, false, &f, None);
        }
    }
    for c in &done.connections {
        rep.add(&c.summary);
    }
    for q in &done.quic {
        rep.add_quic(q);
    }
    rep.set_capture(done.stats, None, done.link_types);
    let _ = rep.tables();
    let _ = rep.capture_line("x");
    let _ = rep.json();
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// An IPv4 packet carrying a TCP segment.
fn packet(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: win,
        urgent: 0,
        options: TcpOptions::default(),
        payload,
    };
    let ipr = IpRepr::new(src.0, dst.0, IpProtocol::Tcp, tcp.buffer_len(), 64).unwrap();
    let mut buf = vec![0u8; ipr.buffer_len()];
    ipr.emit(&mut buf);
    let h = ipr.header_len();
    tcp.emit(&mut buf[h..], src.0, dst.0);
    buf
}

/// A small capture of one HTTP/1.1 exchange, opened and closed (raw IP link type).
fn sample_capture() -> Vec<u8> {
    let c = (ip([198, 18, 0, 1]), 40000);
    let s = (ip([198, 18, 0, 2]), 80);
    let req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (syn, ack, psh, fin) = (0x02, 0x10, 0x08, 0x01);
    let segs = [
        packet(c, s, syn, 100, 0, 65535, &[]),
        packet(s, c, syn | ack, 500, 101, 65535, &[]),
        packet(c, s, ack, 101, 501, 65535, &[]),
        packet(c, s, psh | ack, 101, 501, 65535, req),
        packet(s, c, psh | ack, 501, 101 + req.len() as u32, 65535, resp),
        packet(
            c,
            s,
            fin | ack,
            101 + req.len() as u32,
            501 + resp.len() as u32,
            65535,
            &[],
        ),
        packet(
            s,
            c,
            fin | ack,
            501 + resp.len() as u32,
            102 + req.len() as u32,
            65535,
            &[],
        ),
        packet(
            c,
            s,
            ack,
            102 + req.len() as u32,
            502 + resp.len() as u32,
            65535,
            &[],
        ),
    ];
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for (i, p) in segs.iter().enumerate() {
        w.write_packet(Instant::from_micros(1_000 * i as u64), p)
            .unwrap();
    }
    w.into_inner()
}

#[test]
fn the_sample_is_one_closed_connection_with_one_request() {
    let file = sample_capture();
    let mut r = CaptureReader::new(&file[..]).unwrap();
    let mut a = Analyzer::new();
    while let Some(f) = r.next_frame() {
        a.push_frame(&f.unwrap());
    }
    let done = a.finish();
    assert_eq!(done.connections.len(), 1);
    let s = &done.connections[0].summary;
    assert_eq!((s.http1_requests, s.http1_responses), (1, 1));
    assert_eq!(s.rtt_us, Some(2_000));
    assert_eq!(s.time_wait.as_deref(), Some("client"));
    assert_eq!(
        (s.client_state.as_str(), s.server_state.as_str()),
        ("TIME-WAIT", "CLOSED")
    );
}

#[test]
fn every_prefix_and_every_bit_flip() {
    let file = sample_capture();
    for n in 0..=file.len() {
        run(&file[..n]);
    }
    for i in 0..file.len() * 8 {
        let mut f = file.clone();
        f[i / 8] ^= 1 << (i % 8);
        run(&f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_pcap_bodies(body in proptest::collection::vec(any::<u8>(), 0..2048), link in prop_oneof![Just(0u32), Just(1), Just(12), Just(101), Just(108), Just(113), Just(276), any::<u32>()]) {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&link.to_le_bytes());
        f.extend_from_slice(&body);
        run(&f);
    }

    #[test]
    fn random_pcapng_bodies(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // A section header block (little-endian, no options), then random blocks.
        let mut f = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
        f.extend_from_slice(&[0xff; 8]);
        f.extend_from_slice(&[28, 0, 0, 0]);
        f.extend_from_slice(&body);
        run(&f);
    }

    #[test]
    fn random_files(f in proptest::collection::vec(any::<u8>(), 0..512)) {
        run(&f);
    }

    #[test]
    fn random_ip_packets(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..40)) {
        let mut a = Analyzer::new();
        for (i, mut p) in pkts.into_iter().enumerate() {
            if let Some(b) = p.first_mut() {
                *b = (*b & 0x0f) | if i % 2 == 0 { 0x40 } else { 0x60 };
            }
            a.push_ip(Instant::from_micros(i as u64), &p);
        }
        render(a);
    }

    /// Any sequence of segments between two sockets, with payloads that look like each
    /// protocol the decoders know.
    #[test]
    fn random_segment_sequences(
        segs in proptest::collection::vec(
            (any::<bool>(), any::<u8>(), 0u32..4000, 0u32..4000, prop_oneof![Just(0u16), any::<u16>()], 0usize..5, proptest::collection::vec(any::<u8>(), 0..64)),
            0..60,
        )
    ) {
        let c = (ip([10, 0, 0, 1]), 5555);
        let s = (ip([10, 0, 0, 2]), 443);
        let prefixes: [&[u8]; 5] = [b"", b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[22, 3, 1, 0, 40, 1, 0, 0, 36], b"HTTP/1.1 200 OK\r\n"];
        let mut a = Analyzer::new();
        for (i, (to_server, flags, seq, ack, win, pre, body)) in segs.into_iter().enumerate() {
            let mut payload = prefixes[pre].to_vec();
            payload.extend_from_slice(&body);
            let (src, dst) = if to_server { (c, s) } else { (s, c) };
            let p = packet(src, dst, flags, seq, ack, win, &payload);
            a.push_ip(Instant::from_micros(i as u64 * 10), &p);
        }
        render(a);
    }

    #[test]
    fn decoders_on_random_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10), first in 0usize..4) {
        let starts: [&[u8]; 4] = [b"", b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[22, 3, 3]];
        for side in [Side::Client, Side::Server] {
            let mut st = AppStream::new(side);
            let mut out = Vec::new();
            st.feed(starts[first], &mut out);
            for c in &chunks {
                st.feed(c, &mut out);
            }
            for e in &out {
                let _ = e.label();
            }
        }
        for c in &chunks {
            let _ = quic::long_headers(c);
            let _ = tls::parse_client_hello(c);
            let _ = tls::parse_server_hello(c);
        }
    }
}
