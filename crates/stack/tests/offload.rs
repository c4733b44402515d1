//! TCP segmentation and receive offloads, in memory (no device, no root): a super-segment
//! handed to TCP whole (GRO) gives the receiver the same bytes and the same final ACK, SACK
//! blocks and window as its segments one by one; a super-segment TCP sends for the device
//! to cut (TSO) is exactly the concatenation of the segments it would have sent; and a bulk
//! transfer through the device driver with super-segments both ways is byte-exact.

use std::net::{IpAddr, SocketAddr};

use synack_stack::{Interface, RxMeta, TxMeta};
use synack_tcp::{Config, ConnId, Duration, Instant};
use synack_wire::tcp::fill_checksum;
use synack_wire::TcpRepr;

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";
const PORT: u16 = 7000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(7) as u8)
        .collect()
}

/// A packet out of an interface, with what goes with it.
#[derive(Clone)]
struct Out {
    bytes: Vec<u8>,
    gso_size: u16,
}

fn drain(iface: &mut Interface, now: Instant) -> Vec<Out> {
    let mut out = Vec::new();
    iface.transmit_with(now, &mut |p, meta: TxMeta| {
        out.push(Out {
            bytes: p.to_vec(),
            gso_size: meta.gso_size,
        })
    });
    out
}

/// The TCP segment of an IPv4 packet.
fn tcp_of(p: &[u8]) -> TcpRepr<'_> {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    TcpRepr::parse(&p[ihl..], None).unwrap()
}

/// Bytes `[from, to)` of the payload of IPv4 TCP packet `p` as a packet of their own, as the
/// kernel's segmentation makes it: the headers copied, the sequence number moved, FIN and PSH
/// kept only on the piece that ends the original, lengths and checksums made anew.
fn piece(p: &[u8], from: usize, to: usize) -> Vec<u8> {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let thl = usize::from(p[ihl + 12] >> 4) * 4;
    let hdr = ihl + thl;
    let payload_len = p.len() - hdr;
    let mut out = Vec::with_capacity(hdr + to - from);
    out.extend_from_slice(&p[..hdr]);
    out.extend_from_slice(&p[hdr + from..hdr + to]);
    let total = out.len() as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[10..12].copy_from_slice(&[0, 0]);
    let sum = synack_wire::checksum::checksum(&out[..ihl], 0);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    let seq = u32::from_be_bytes(p[ihl + 4..ihl + 8].try_into().unwrap()).wrapping_add(from as u32);
    out[ihl + 4..ihl + 8].copy_from_slice(&seq.to_be_bytes());
    if to != payload_len {
        // FIN (0x01) and PSH (0x08) belong to the last piece.
        out[ihl + 13] &= !0x09;
    }
    fill_checksum(&mut out[ihl..], ip(A), ip(B));
    out
}

/// Two interfaces joined back to back, a connection between them.
struct Two {
    a: Interface,
    b: Interface,
    now: Instant,
    ca: ConnId,
    cb: ConnId,
}

impl Two {
    /// The same every time: fixed keys, a fixed clock. `tso` on A's side.
    fn new(tso: bool) -> Two {
        let mut a = Interface::new(Config::default(), &[ip(A)], [1; 16]);
        let mut b = Interface::new(Config::default(), &[ip(B)], [2; 16]);
        if tso {
            a.set_tso_max(64 * 1024);
        }
        let now = Instant::from_micros(1_000_000);
        let l = b
            .tcp_mut()
            .listen(SocketAddr::new(ip(B), PORT), 16)
            .unwrap();
        let ca = a
            .tcp_mut()
            .connect(now, ip(A), Some(40000), SocketAddr::new(ip(B), PORT))
            .unwrap();
        let mut two = Two {
            a,
            b,
            now,
            ca,
            cb: ca,
        };
        two.settle();
        two.cb = two.b.tcp_mut().accept(l).expect("accepted");
        two
    }

    /// Moves packets both ways, whole, until neither side sends.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.now += Duration::from_micros(10);
            let from_a = drain(&mut self.a, self.now);
            let from_b = drain(&mut self.b, self.now);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for p in from_a {
                self.b.receive_with(self.now, &p.bytes, meta_of(&p));
            }
            for p in from_b {
                self.a.receive_with(self.now, &p.bytes, meta_of(&p));
            }
        }
        panic!("the two sides never went quiet");
    }

    fn send(&mut self, data: &[u8]) -> usize {
        let (now, id) = (self.now, self.ca);
        self.a
            .tcp_mut()
            .with_conn(now, id, |c| c.send(data).unwrap())
            .unwrap()
    }

    fn read_b(&mut self) -> Vec<u8> {
        let (now, id) = (self.now, self.cb);
        let mut buf = vec![0u8; 1 << 20];
        let n = self
            .b
            .tcp_mut()
            .with_conn(now, id, |c| c.recv(&mut buf).unwrap_or(0))
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn mss(&self) -> usize {
        self.a.tcp().conn(self.ca).unwrap().mss()
    }
}

/// What the device says of a packet: a super-segment's checksum is partial, as the kernel's.
fn meta_of(p: &Out) -> RxMeta {
    RxMeta {
        csum_trusted: p.gso_size > 0,
        gso_size: p.gso_size,
    }
}

/// (ack, window, SACK blocks) of the last segment of `out`.
fn last_ack(out: &[Out]) -> (u32, u16, Vec<(u32, u32)>) {
    let t = tcp_of(&out.last().expect("an ACK").bytes);
    let sack = t
        .options
        .sack_blocks()
        .iter()
        .map(|b| (b.left, b.right))
        .collect();
    (t.ack, t.window, sack)
}

/// TSO: the super-segment A sends is the concatenation of the segments A sends without TSO
/// at the same moment in the same state: the same first sequence number, the same header
/// (ports, ACK, window, timestamps), the flags of the last segment, payloads end to end;
/// `gso_size` is the MSS; the data end to end arrives byte-exact.
#[test]
fn tso_super_segment_is_the_concatenation_of_the_segments() {
    // 5.5 segments: five full ones and a short tail (which Nagle lets go: nothing small is
    // in flight), and 10 segments (the initial window) and more: the window cuts the flight.
    for segments_x2 in [11usize, 20, 41] {
        let mut plain = Two::new(false);
        let mut tso = Two::new(true);
        let mss = plain.mss();
        assert_eq!(mss, tso.mss());
        let data = pattern(segments_x2 * mss / 2);
        assert_eq!(plain.send(&data), data.len());
        assert_eq!(tso.send(&data), data.len());
        let segs = drain(&mut plain.a, plain.now);
        let supers = drain(&mut tso.a, tso.now);
        assert!(segs.len() > 1);
        assert!(segs.iter().all(|s| s.gso_size == 0));
        assert_eq!(supers.len(), 1, "one super-segment for the whole flight");
        let sup = &supers[0];
        assert_eq!(usize::from(sup.gso_size), mss);
        let st = tcp_of(&sup.bytes);
        let first = tcp_of(&segs[0].bytes);
        let last = tcp_of(&segs.last().unwrap().bytes);
        assert_eq!(st.seq, first.seq);
        assert_eq!(
            (st.src_port, st.dst_port, st.ack, st.window, st.options),
            (
                first.src_port,
                first.dst_port,
                first.ack,
                first.window,
                first.options
            )
        );
        assert_eq!(st.flags, last.flags, "the flags of the last segment");
        let concat: Vec<u8> = segs
            .iter()
            .flat_map(|s| tcp_of(&s.bytes).payload.to_vec())
            .collect();
        assert_eq!(st.payload, &concat[..]);
        assert!(segs[..segs.len() - 1]
            .iter()
            .all(|s| tcp_of(&s.bytes).payload.len() == mss));
        // The IP header says the super-segment's length.
        assert_eq!(
            usize::from(u16::from_be_bytes([sup.bytes[2], sup.bytes[3]])),
            sup.bytes.len()
        );
        // The kernel's cut: the same packets as without TSO, checksums and all (IP ID 0 with
        // DF on both), but for the PSH synack puts inside a flight on each filled two-segment
        // buffer (as Linux without TSO): with TSO a buffer is the super-segment, as Linux's.
        let mut at = 0;
        for (k, s) in segs.iter().enumerate() {
            let n = tcp_of(&s.bytes).payload.len();
            let cut = piece(&sup.bytes, at, at + n);
            let mut plain = s.bytes.clone();
            if k + 1 < segs.len() && plain[20 + 13] & 0x08 != 0 {
                plain[20 + 13] &= !0x08;
                fill_checksum(&mut plain[20..], ip(A), ip(B));
            }
            assert_eq!(cut, plain, "piece at {at}");
            at += n;
        }
        // Delivered whole, then everything: B reads the data byte-exact.
        tso.b.receive_with(tso.now, &sup.bytes, meta_of(sup));
        tso.settle();
        let mut got = tso.read_b();
        for _ in 0..100 {
            if got.len() >= data.len() {
                break;
            }
            tso.settle();
            got.extend(tso.read_b());
        }
        assert_eq!(got, data);
        assert!(tso.a.stats().tx_super_segments >= 1);
        assert!(tso.b.stats().rx_super_segments >= 1);
    }
}

/// GRO: a super-segment handed to B whole, and the same bytes as MSS segments one by one
/// (cut as the kernel would), leave B with the same bytes to read and the same last ACK
/// (acknowledgment number and SACK blocks; the window within two units of its scale) once its
/// delayed ACK is out, also when the
/// second half arrives first (out of order, SACKed); whole, B acknowledges each super-segment
/// at once (more than one segment's worth of data: RFC 9293 §3.8.6.3, as Linux acknowledges
/// a GRO packet), so no ACK is left for later.
#[test]
fn gro_super_segment_gives_the_same_bytes_and_acks_as_its_segments() {
    for out_of_order in [false, true] {
        let mut whole = Two::new(true);
        let mut split = Two::new(true);
        let mss = whole.mss();
        let data = pattern(10 * mss);
        whole.send(&data);
        split.send(&data);
        let sup = drain(&mut whole.a, whole.now);
        let sup2 = drain(&mut split.a, split.now);
        assert_eq!(sup.len(), 1);
        assert_eq!(
            sup[0].bytes, sup2[0].bytes,
            "the same state, the same segment"
        );
        let p = &sup[0].bytes;
        let halves = if out_of_order {
            [(5 * mss, 10 * mss), (0, 5 * mss)]
        } else {
            [(0, 5 * mss), (5 * mss, 10 * mss)]
        };
        let mut now = whole.now + Duration::from_micros(50);
        let mut acks_whole = Vec::new();
        let mut acks_split = Vec::new();
        for (from, to) in halves {
            // Whole: each half one super-segment, its checksum partial (not verified).
            let mut half = piece(p, from, to);
            half[20 + 16..20 + 18].copy_from_slice(&[0xde, 0xad]);
            whole.b.receive_with(
                now,
                &half,
                RxMeta {
                    csum_trusted: true,
                    gso_size: mss as u16,
                },
            );
            acks_whole.extend(drain(&mut whole.b, now));
            // Split: its segments one by one, with complete checksums.
            for k in (from..to).step_by(mss) {
                split.b.receive(now, &piece(p, k, k + mss));
                acks_split.extend(drain(&mut split.b, now));
            }
            // A delayed ACK still due goes (split: every second segment is acknowledged at
            // once, the odd one out later).
            now += Duration::from_millis(500);
            for (b, acks) in [
                (&mut whole.b, &mut acks_whole),
                (&mut split.b, &mut acks_split),
            ] {
                b.handle_timeout(now);
                acks.extend(drain(b, now));
            }
            let (w, s) = (last_ack(&acks_whole), last_ack(&acks_split));
            assert_eq!((w.0, &w.2), (s.0, &s.2), "after [{from}, {to})");
            // The window's right edge is rounded to a unit of the scale, never left of the
            // last one advertised: after different ACKs it may differ by a unit or two.
            assert!(w.1.abs_diff(s.1) <= 2, "windows {} and {}", w.1, s.1);
        }
        let end = tcp_of(p).seq.wrapping_add(data.len() as u32);
        assert_eq!(last_ack(&acks_whole).0, end);
        assert!(last_ack(&acks_whole).2.is_empty());
        assert_eq!(acks_whole.len(), 2, "one ACK per super-segment");
        assert!(acks_split.len() >= 5, "{} ACKs", acks_split.len());
        assert_eq!(whole.read_b(), data);
        assert_eq!(split.read_b(), data);
        // Each side counts the ten segments in (tcpi_segs_in), whole or not.
        let segs_in = |t: &Two| t.b.tcp().conn(t.cb).unwrap().stats().segs_in;
        assert_eq!(segs_in(&whole), segs_in(&split));
        let ws = whole.b.stats();
        assert_eq!(ws.rx_super_segments, 2);
        assert_eq!(ws.rx_bad_checksum, 0);
        assert_eq!(split.b.stats().rx_super_segments, 0);
    }
}

/// A super-segment whose checksum is partial is a bad checksum unless the device vouches for
/// it: without `csum_trusted` it is a counted drop.
#[test]
fn partial_checksum_without_the_device_is_a_counted_drop() {
    let mut two = Two::new(true);
    let mss = two.mss();
    two.send(&pattern(4 * mss));
    let sup = drain(&mut two.a, two.now);
    assert_eq!(sup.len(), 1);
    let now = two.now;
    two.b.receive(now, &sup[0].bytes);
    assert_eq!(two.b.stats().rx_bad_checksum, 1);
    assert!(two.read_b().is_empty());
    two.b.receive_with(now, &sup[0].bytes, meta_of(&sup[0]));
    assert_eq!(two.read_b(), pattern(4 * mss));
}

/// A super-segment the device does not vouch for, its checksum complete, is verified (in the
/// copy into the receive ring) and still counted as a super-segment received whole.
#[test]
fn a_super_segment_verified_here_is_counted_too() {
    let mut two = Two::new(true);
    let mss = two.mss();
    two.send(&pattern(4 * mss));
    let sup = drain(&mut two.a, two.now);
    assert_eq!(sup.len(), 1);
    let mut p = sup[0].bytes.clone();
    fill_checksum(&mut p[20..], ip(A), ip(B));
    let meta = RxMeta {
        csum_trusted: false,
        gso_size: mss as u16,
    };
    let now = two.now;
    two.b.receive_with(now, &p, meta);
    assert_eq!(two.read_b(), pattern(4 * mss));
    let st = two.b.stats();
    assert_eq!((st.rx_super_segments, st.rx_bad_checksum), (1, 0));
}

// ---------------------------------------------------------------------------------------------
// Through the device driver: an in-memory link that passes super-segments on whole, as a TUN
// device with offloads and the kernel's GRO do.

mod driver {
    use std::io;
    use std::task::{Context, Poll};

    use synack_stack::net::{Device, Stack, StackConfig, TcpListener, TcpStream};
    use synack_stack::{RxMeta, TxMeta};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::{ip, pattern, A, B};

    /// One end of the link: packets with their `gso_size`, both ways, and TSO up to 64 KiB.
    struct OffloadPipe {
        tx: mpsc::Sender<(Vec<u8>, u16)>,
        rx: mpsc::Receiver<(Vec<u8>, u16)>,
        last: RxMeta,
    }

    fn link() -> (OffloadPipe, OffloadPipe) {
        let (atx, brx) = mpsc::channel(1024);
        let (btx, arx) = mpsc::channel(1024);
        let end = |tx, rx| OffloadPipe {
            tx,
            rx,
            last: RxMeta::default(),
        };
        (end(atx, arx), end(btx, brx))
    }

    impl Device for OffloadPipe {
        fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some((p, gso_size))) => {
                    buf[..p.len()].copy_from_slice(&p);
                    // A super-segment's checksum is partial: the device vouches for it.
                    self.last = RxMeta {
                        csum_trusted: gso_size > 0,
                        gso_size,
                    };
                    Poll::Ready(Ok(p.len()))
                }
                Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Poll::Pending => Poll::Pending,
            }
        }

        fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
            self.poll_send_with(cx, packet, TxMeta::default())
        }

        fn poll_send_with(
            &mut self,
            _cx: &mut Context<'_>,
            packet: &[u8],
            meta: TxMeta,
        ) -> Poll<io::Result<()>> {
            // A full queue drops the packet, as an interface's would (TCP recovers).
            let _ = self.tx.try_send((packet.to_vec(), meta.gso_size));
            Poll::Ready(Ok(()))
        }

        fn rx_meta(&self) -> RxMeta {
            self.last
        }

        fn tso_max(&self) -> usize {
            64 * 1024
        }
    }

    fn config(addr: &str, secret: u8) -> StackConfig {
        let mut c = StackConfig::new(&[ip(addr)]);
        c.secret = Some([secret; 16]);
        c
    }

    /// 4 MiB each way through two stacks over the offloading link: byte-exact, and both
    /// stacks sent super-segments and received them whole; no checksum failed.
    #[tokio::test(start_paused = true)]
    async fn bulk_both_ways_with_super_segments_is_byte_exact() {
        let (da, db) = link();
        let a = Stack::new(da, config(A, 1)).unwrap();
        let b = Stack::new(db, config(B, 2)).unwrap();
        let len = 4 << 20;
        let l = TcpListener::bind(&b, (ip(B), 7000)).await.unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let (mut r, mut w) = s.split();
            let send = async {
                w.write_all(&pattern(len)).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            got
        });
        let mut s = TcpStream::connect(&a, (ip(B), 7000)).await.unwrap();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&pattern(len)).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let recv = r.read_to_end(&mut got);
        let (_, n) = tokio::join!(send, recv);
        n.unwrap();
        assert_eq!(got, pattern(len), "b → a");
        assert_eq!(server.await.unwrap(), pattern(len), "a → b");
        for (who, st) in [("a", a.iface_stats()), ("b", b.iface_stats())] {
            assert!(st.tx_super_segments > 0, "{who}: {st:?}");
            assert!(st.rx_super_segments > 0, "{who}: {st:?}");
            assert_eq!(st.rx_bad_checksum, 0, "{who}");
        }
    }
}
