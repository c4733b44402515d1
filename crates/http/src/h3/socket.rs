//! quinn on synack's UDP: [`SynackUdp`] is a [`quinn::AsyncUdpSocket`] over a
//! [`synack_stack::net::UdpSocket`], so a QUIC endpoint runs on a simulated host (under
//! tokio's paused clock, whose time quinn's `TokioRuntime` reads) or over TUN as on the
//! kernel's sockets. By default a `Transmit` carries one datagram; [`SynackUdp::with_segments`]
//! lets quinn hand over up to N datagrams of one size at once (as to a kernel socket with
//! UDP GSO), which the stack queues together, so that a batching TUN device
//! ([`synack_stack::tun::TunOptions`]) writes them in one system call, coalesced with UDP
//! segmentation offload where the kernel has it. With it comes the receiving half, as on a
//! kernel socket with `UDP_GRO`: each buffer quinn offers is filled with a run of queued
//! datagrams of one 4-tuple and one size (`RecvMeta::stride`, which quinn splits by), every
//! buffer in one lock of the stack, so that a burst costs quinn one copy and one allocation
//! per run rather than per datagram.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use synack_stack::net::UdpSocket;

/// Datagrams and bytes a QUIC endpoint sent and received through its socket.
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub tx_datagrams: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_datagrams: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Datagrams the stack refused (too big for the MTU, no route): quinn counts them lost.
    pub tx_errors: AtomicU64,
}

/// A snapshot of [`SocketCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_errors: u64,
}

impl SocketCounters {
    pub fn snapshot(&self) -> SocketStats {
        SocketStats {
            tx_datagrams: self.tx_datagrams.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            rx_datagrams: self.rx_datagrams.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
        }
    }
}

/// Datagrams coalesced into one of quinn's receive buffers when GSO is on (Linux's UDP GRO
/// also coalesces up to 64, `UDP_GRO_CNT_MAX`).
pub const GRO_SEGMENTS: usize = 64;

/// Receive buffers filled per `poll_recv` at most (quinn offers `quinn_udp::BATCH_SIZE`, 32
/// on Linux).
const MAX_SLOTS: usize = 64;

/// A synack UDP socket as quinn's abstract socket.
pub struct SynackUdp {
    socket: UdpSocket,
    counters: Arc<SocketCounters>,
    segments: usize,
    receive_segments: usize,
}

impl SynackUdp {
    /// One datagram per `Transmit`.
    pub fn new(socket: UdpSocket) -> (Arc<SynackUdp>, Arc<SocketCounters>) {
        SynackUdp::with_segments(socket, 1)
    }

    /// Up to `segments` datagrams of one size per `Transmit` (quinn's GSO batches), and when
    /// that is more than one, up to [`GRO_SEGMENTS`] datagrams per receive buffer (as a kernel
    /// socket offers GSO and GRO together); with 1, one datagram per buffer each way.
    pub fn with_segments(
        socket: UdpSocket,
        segments: usize,
    ) -> (Arc<SynackUdp>, Arc<SocketCounters>) {
        let receive = if segments > 1 { GRO_SEGMENTS } else { 1 };
        SynackUdp::with_batches(socket, segments, receive)
    }

    /// Up to `transmit` datagrams per `Transmit` and up to `receive` per receive buffer.
    pub fn with_batches(
        socket: UdpSocket,
        transmit: usize,
        receive: usize,
    ) -> (Arc<SynackUdp>, Arc<SocketCounters>) {
        let counters = Arc::new(SocketCounters::default());
        (
            Arc::new(SynackUdp {
                socket,
                counters: counters.clone(),
                segments: transmit.max(1),
                receive_segments: receive.max(1),
            }),
            counters,
        )
    }
}

impl fmt::Debug for SynackUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SynackUdp")
            .field("local", &self.socket.local_addr().ok())
            .finish()
    }
}

struct Poller(Arc<SynackUdp>);

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Poller")
    }
}

impl UdpPoller for Poller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.socket.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for SynackUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller(self))
    }

    fn try_send(&self, t: &Transmit) -> io::Result<()> {
        let seg = t.segment_size.unwrap_or(t.contents.len()).max(1);
        for chunk in t.contents.chunks(seg) {
            match self.socket.try_send_to(chunk, t.destination) {
                Ok(n) => {
                    self.counters.tx_datagrams.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .tx_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                // Lost, as far as QUIC is concerned (RFC 9000 §14: a datagram too big for the
                // path is simply not delivered); quinn recovers.
                Err(_) => {
                    self.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let slots = bufs.len().min(meta.len()).min(MAX_SLOTS);
        if slots == 0 {
            return Poll::Pending;
        }
        let mut runs = [None; MAX_SLOTS];
        let n = match self.socket.poll_recv_coalesced(
            cx,
            &mut bufs[..slots],
            self.receive_segments,
            &mut runs[..slots],
        ) {
            Poll::Ready(Ok(n)) => n,
            // An ICMP error (the socket is not connected, so only in odd cases): quinn goes
            // on after ConnectionReset, as after the kernel's.
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    e.to_string(),
                )))
            }
            Poll::Pending => return Poll::Pending,
        };
        let (mut datagrams, mut bytes) = (0, 0);
        for (m, run) in meta.iter_mut().zip(&runs[..n]) {
            let c = run.expect("a filled slot");
            *m = RecvMeta {
                addr: c.from,
                len: c.len,
                stride: c.stride,
                ecn: None,
                dst_ip: Some(c.to.ip()),
            };
            datagrams += c.segments as u64;
            bytes += c.len as u64;
        }
        self.counters
            .rx_datagrams
            .fetch_add(datagrams, Ordering::Relaxed);
        self.counters.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn may_fragment(&self) -> bool {
        false
    }

    fn max_receive_segments(&self) -> usize {
        self.receive_segments
    }

    fn max_transmit_segments(&self) -> usize {
        self.segments
    }
}

/// The local address to give `remote`'s endpoint: synack's socket may be bound to the
/// unspecified address; quinn is happy with that.
pub fn any_addr(remote: SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("valid"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use synack_stack::net::{SimNet, Stack};
    use synack_stack::sim::PathConfig;
    use synack_tcp::{Config, Duration};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn two_hosts() -> (SimNet, Stack, Stack) {
        let net = SimNet::new(7);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = net.add_host("a", &[ip("198.18.0.1")], Config::default());
        let b = net.add_host("b", &[ip("198.18.0.2")], Config::default());
        let half = PathConfig::delay(Duration::from_millis(5));
        net.link(&a, &b, half.clone(), half);
        (net, a, b)
    }

    fn payload(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag ^ (i as u8)).collect()
    }

    /// What quinn's endpoint gets from one `poll_recv` once `count` datagrams are queued:
    /// per filled buffer, its source, stride and bytes.
    async fn receive(sock: &SynackUdp, count: u64) -> Vec<(SocketAddr, usize, Vec<u8>)> {
        let mut store = vec![vec![0u8; 64 * 1472]; 32];
        let mut meta = [RecvMeta::default(); 32];
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut bufs: Vec<IoSliceMut> = store.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = std::future::poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut meta))
            .await
            .unwrap();
        assert_eq!(sock.counters.snapshot().rx_datagrams, count);
        (0..n)
            .map(|i| {
                (
                    meta[i].addr,
                    meta[i].stride,
                    bufs[i][..meta[i].len].to_vec(),
                )
            })
            .collect()
    }

    /// With GSO on, quinn gets the datagrams queued for it coalesced: five of 1200 bytes and
    /// a shorter one from one peer in one buffer with a stride of 1200, byte-exact, and the
    /// next peer's datagram in the next buffer; without, one datagram per buffer. Either way
    /// every datagram queued is handed over in one call.
    #[tokio::test(start_paused = true)]
    async fn poll_recv_hands_quinn_gro_runs() {
        let (_net, a, b) = two_hosts();
        let p1 = UdpSocket::bind(&b, "198.18.0.2:7001").await.unwrap();
        let p2 = UdpSocket::bind(&b, "198.18.0.2:7002").await.unwrap();
        let data: Vec<Vec<u8>> = (0..5).map(|i| payload(i, 1200)).collect();
        let last = payload(9, 800);
        let other = payload(10, 1200);
        for (gso, port) in [(10, 4433), (1, 4434)] {
            let local = UdpSocket::bind(&a, SocketAddr::new(sa("198.18.0.1:0").ip(), port))
                .await
                .unwrap();
            let (sock, _) = SynackUdp::with_segments(local, gso);
            assert_eq!(
                sock.max_receive_segments(),
                if gso > 1 { GRO_SEGMENTS } else { 1 }
            );
            let to = sock.local_addr().unwrap();
            for d in &data {
                p1.send_to(d, to).await.unwrap();
            }
            p1.send_to(&last, to).await.unwrap();
            p2.send_to(&other, to).await.unwrap();
            let got = receive(&sock, 7).await;
            let mut run = data.concat();
            run.extend_from_slice(&last);
            if gso > 1 {
                assert_eq!(
                    got,
                    vec![
                        (sa("198.18.0.2:7001"), 1200, run),
                        (sa("198.18.0.2:7002"), 1200, other.clone()),
                    ]
                );
            } else {
                let mut each: Vec<_> = data
                    .iter()
                    .map(|d| (sa("198.18.0.2:7001"), 1200, d.clone()))
                    .collect();
                each.push((sa("198.18.0.2:7001"), 800, last.clone()));
                each.push((sa("198.18.0.2:7002"), 1200, other.clone()));
                assert_eq!(got, each);
            }
        }
    }
}
