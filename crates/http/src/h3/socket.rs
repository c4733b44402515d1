//! quinn on synack's UDP: [`SynackUdp`] is a [`quinn::AsyncUdpSocket`] over a
//! [`synack_stack::net::UdpSocket`], so a QUIC endpoint runs on a simulated host (under
//! tokio's paused clock, whose time quinn's `TokioRuntime` reads) or over TUN as on the
//! kernel's sockets. By default a `Transmit` carries one datagram; [`SynackUdp::with_segments`]
//! lets quinn hand over up to N datagrams of one size at once (as to a kernel socket with
//! UDP GSO), which the stack queues together, so that a batching TUN device
//! ([`synack_stack::tun::TunOptions`]) writes them in one system call, coalesced with UDP
//! segmentation offload where the kernel has it.

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

/// A synack UDP socket as quinn's abstract socket.
pub struct SynackUdp {
    socket: UdpSocket,
    counters: Arc<SocketCounters>,
    segments: usize,
}

impl SynackUdp {
    /// One datagram per `Transmit`.
    pub fn new(socket: UdpSocket) -> (Arc<SynackUdp>, Arc<SocketCounters>) {
        SynackUdp::with_segments(socket, 1)
    }

    /// Up to `segments` datagrams of one size per `Transmit` (quinn's GSO batches).
    pub fn with_segments(
        socket: UdpSocket,
        segments: usize,
    ) -> (Arc<SynackUdp>, Arc<SocketCounters>) {
        let counters = Arc::new(SocketCounters::default());
        (
            Arc::new(SynackUdp {
                socket,
                counters: counters.clone(),
                segments: segments.max(1),
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
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            match self.socket.poll_recv_datagram(cx) {
                Poll::Ready(Ok(d)) => {
                    let len = d.data.len().min(bufs[n].len());
                    bufs[n][..len].copy_from_slice(&d.data[..len]);
                    meta[n] = RecvMeta {
                        addr: d.from,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: Some(d.to.ip()),
                    };
                    self.counters.rx_datagrams.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .rx_bytes
                        .fetch_add(len as u64, Ordering::Relaxed);
                    n += 1;
                }
                // An ICMP error (the socket is not connected, so only in odd cases): quinn
                // goes on after ConnectionReset, as after the kernel's.
                Poll::Ready(Err(e)) if n == 0 => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        e.to_string(),
                    )))
                }
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        if n == 0 {
            Poll::Pending
        } else {
            Poll::Ready(Ok(n))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn may_fragment(&self) -> bool {
        false
    }

    fn max_receive_segments(&self) -> usize {
        1
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
