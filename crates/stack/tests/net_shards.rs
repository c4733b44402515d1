//! A stack of several shards (workers): every segment of a connection is handled by the shard
//! its flow hashes to — the SYN-ACKs that answer our own connects and the ICMP errors about our
//! segments included — whatever queue the device delivered it on. Under tokio's paused clock.

mod shards_support;

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};

use shards_support::{check_on_its_shard, echo_server};
use synack_stack::net::{
    pipe, pipe_multiqueue, Device, PipeDevice, Stack, StackConfig, TcpListener, TcpStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Port `port` on every address.
fn any(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)
}

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(addr: &str, workers: usize, secret: u8) -> StackConfig {
    let mut c = StackConfig::new(&[ip(addr)]);
    c.secret = Some([secret; 16]);
    c.workers = workers;
    c
}

/// `count` connections from `from` to `to:port`, each sending 3000 distinct bytes and reading
/// them back exactly.
async fn clients(from: &Stack, to: SocketAddr, count: usize) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let from = from.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&from, to).await.unwrap();
            check_on_its_shard(&s);
            let msg: Vec<u8> = (0..3000).map(|j| ((i * 7 + j) % 251) as u8).collect();
            s.write_all(&msg).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, msg, "connection {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

struct Totals {
    rx_packets: u64,
    forwarded: u64,
    from_shards: u64,
    per_shard_conns: Vec<u64>,
    resets: u64,
    dropped: u64,
}

fn totals(s: &Stack) -> Totals {
    let mut t = Totals {
        rx_packets: 0,
        forwarded: 0,
        from_shards: 0,
        per_shard_conns: Vec::new(),
        resets: 0,
        dropped: 0,
    };
    for shard in s.shards() {
        let d = shard.device_stats().unwrap();
        let tcp = shard.tcp_stats();
        t.rx_packets += d.rx_packets;
        t.forwarded += d.rx_forwarded;
        t.from_shards += d.rx_from_shards;
        t.per_shard_conns.push(tcp.connects + tcp.accepted);
        t.resets += tcp.resets_sent;
        t.dropped += tcp.dropped;
    }
    t
}

/// Two stacks of two shards over a multiqueue pipe that steers by flow hash, as a NIC's RSS:
/// connections both ways spread over both shards, every one on its flow's shard, and no
/// segment arrives at a shard that does not know its connection (no RST, no drop, nothing to
/// hand on).
#[tokio::test(start_paused = true)]
async fn connections_both_ways_stay_on_their_flows_shard() {
    let (qa, qb) = pipe_multiqueue(2, 4096);
    let a = Stack::new_multiqueue(qa, config(A, 2, 1)).unwrap();
    let b = Stack::new_multiqueue(qb, config(B, 2, 2)).unwrap();
    assert_eq!((a.workers(), b.workers()), (2, 2));
    let sb = echo_server(&b, any(7), 16).await;
    let sa = echo_server(&a, any(8), 16).await;
    let (ab, ba) = tokio::join!(
        clients(&a, SocketAddr::new(ip(B), 7), 16),
        clients(&b, SocketAddr::new(ip(A), 8), 16)
    );
    let _ = (ab, ba);
    sb.await.unwrap();
    sa.await.unwrap();
    assert!(a.wait_idle(std::time::Duration::from_secs(5)).await);
    assert!(b.wait_idle(std::time::Duration::from_secs(5)).await);
    for s in [&a, &b] {
        let t = totals(s);
        assert!(t.rx_packets > 0);
        assert_eq!(t.forwarded, 0, "a flow-hashing device needs no handing on");
        assert_eq!(t.from_shards, 0);
        assert_eq!(t.per_shard_conns.iter().sum::<u64>(), 32);
        assert!(
            t.per_shard_conns.iter().all(|&n| n >= 4),
            "{:?}",
            t.per_shard_conns
        );
        assert_eq!((t.resets, t.dropped), (0, 0));
    }
}

/// A device of two queues that delivers every packet to the queue whose shard does NOT own its
/// flow (the worst a kernel's own queue choice can do).
struct Crossed {
    queues: Vec<PipeDevice>,
    next: usize,
}

impl Device for Crossed {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        for i in 0..self.queues.len() {
            let q = (self.next + i) % self.queues.len();
            if let Poll::Ready(r) = self.queues[q].poll_recv(cx, buf) {
                self.next = q + 1;
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        let wrong = 1 - synack_stack::net::rx_shard(packet, 2);
        self.queues[wrong].poll_send(cx, packet)
    }
}

/// Two in-memory pipes: the two queues of a two-shard stack, and the other ends.
fn two_queues() -> (Vec<PipeDevice>, Vec<PipeDevice>) {
    let (a0, b0) = pipe(4096);
    let (a1, b1) = pipe(4096);
    (vec![a0, a1], vec![b0, b1])
}

/// Every packet arrives on the wrong queue: each is handed to its owner, and every
/// connection — ours (whose SYN-ACKs come back on the wrong queue) and the peer's — completes
/// with its bytes exact, on its flow's shard.
#[tokio::test(start_paused = true)]
async fn packets_on_the_wrong_queue_reach_their_flows_shard() {
    let (qa, qb) = two_queues();
    let a = Stack::new_multiqueue(qa, config(A, 2, 3)).unwrap();
    let b = Stack::new(
        Crossed {
            queues: qb,
            next: 0,
        },
        config(B, 1, 4),
    )
    .unwrap();
    let sb = echo_server(&b, any(7), 8).await;
    let sa = echo_server(&a, any(8), 8).await;
    tokio::join!(
        clients(&a, SocketAddr::new(ip(B), 7), 8),
        clients(&b, SocketAddr::new(ip(A), 8), 8)
    );
    sb.await.unwrap();
    sa.await.unwrap();
    assert!(a.wait_idle(std::time::Duration::from_secs(5)).await);
    let t = totals(&a);
    assert!(t.rx_packets >= 16 * 5, "{}", t.rx_packets);
    assert_eq!(
        t.forwarded, t.rx_packets,
        "every packet came on the wrong queue"
    );
    assert_eq!(t.from_shards, t.forwarded);
    assert_eq!(t.per_shard_conns.iter().sum::<u64>(), 16);
    assert_eq!((t.resets, t.dropped), (0, 0));
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMPv4 port unreachable from `B` quoting `packet` (its IP header and first 8 bytes).
fn port_unreachable(packet: &[u8]) -> Vec<u8> {
    let quote = &packet[..28];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let len = (20 + icmp.len()) as u16;
    let mut ip4 = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    ip4[2..4].copy_from_slice(&len.to_be_bytes());
    ip4.extend_from_slice(&[198, 18, 0, 2, 198, 18, 0, 1]);
    let c = checksum(&ip4);
    ip4[10..12].copy_from_slice(&c.to_be_bytes());
    ip4.extend_from_slice(&icmp);
    ip4
}

/// An ICMP error about our SYN, delivered on the other shard's queue, is handed to the shard
/// of the flow it quotes, which fails the connect as refused (RFC 1122 §4.2.3.9).
#[tokio::test(start_paused = true)]
async fn an_icmp_error_reaches_the_shard_of_the_flow_it_quotes() {
    let (qa, mut qb) = two_queues();
    let a = Stack::new_multiqueue(qa, config(A, 2, 5)).unwrap();
    let connect = {
        let a = a.clone();
        tokio::spawn(async move { TcpStream::connect(&a, (ip(B), 9)).await })
    };
    let mut buf = vec![0u8; 2048];
    let (q, n) = poll_fn(|cx| {
        for (q, dev) in qb.iter_mut().enumerate() {
            if let Poll::Ready(r) = dev.poll_recv(cx, &mut buf) {
                return Poll::Ready((q, r.unwrap()));
            }
        }
        Poll::Pending
    })
    .await;
    let syn = buf[..n].to_vec();
    assert_eq!(syn[9], 6, "a TCP SYN first");
    let owner = synack_stack::net::tx_shard(&syn, 2);
    assert_eq!(q, owner, "a shard sends on its own queue");
    let other = 1 - owner;
    let icmp = port_unreachable(&syn);
    poll_fn(|cx| qb[other].poll_send(cx, &icmp)).await.unwrap();
    let err = connect.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let d_other = a.shard(other).device_stats().unwrap();
    let d_owner = a.shard(owner).device_stats().unwrap();
    assert_eq!((d_other.rx_packets, d_other.rx_forwarded), (0, 1));
    assert_eq!((d_owner.rx_packets, d_owner.rx_from_shards), (1, 1));
    assert_eq!(a.shard(owner).iface_stats().icmp_errors, 1);
}

/// The worker count and the queues given must agree.
#[tokio::test]
async fn a_worker_count_without_queues_is_refused() {
    let (qa, _qb) = pipe_multiqueue(2, 16);
    let e = Stack::new_multiqueue(qa, config(A, 3, 1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let (d, _) = pipe(16);
    let e = Stack::new(d, config(A, 2, 1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

/// Thread per core: sockets made through a pinned shard handle live on that shard alone — a
/// listener per shard takes exactly the connections whose flows hash to it, and a connect
/// through shard `i` is made on shard `i`.
#[tokio::test(start_paused = true)]
async fn pinned_shard_handles_keep_their_sockets_on_their_shard() {
    let (qa, qb) = pipe_multiqueue(2, 4096);
    let a = Stack::new_multiqueue(qa, config(A, 2, 7)).unwrap();
    let b = Stack::new_multiqueue(qb, config(B, 2, 8)).unwrap();
    let mut servers = Vec::new();
    for i in 0..2 {
        let l = TcpListener::bind(&b.shard(i), (ip(B), 7)).await.unwrap();
        servers.push(tokio::spawn(async move {
            for _ in 0..5 {
                let (s, _) = l.accept().await.unwrap();
                assert_eq!(s.stack().shard_index(), i);
                check_on_its_shard(&s);
            }
        }));
    }
    let mut kept = Vec::new();
    for i in 0..2 {
        for _ in 0..5 {
            let s = TcpStream::connect(&a.shard(i), (ip(B), 7)).await.unwrap();
            assert_eq!(s.stack().shard_index(), i);
            kept.push(s);
        }
    }
    for s in servers {
        s.await.unwrap();
    }
    for i in 0..2 {
        let t = b.shard(i).tcp_stats();
        assert_eq!((t.accepted, t.resets_sent), (5, 0));
        assert_eq!(a.shard(i).tcp_stats().connects, 5);
    }
}
