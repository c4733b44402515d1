//! Devices the driver moves IP packets through, and the impairment layer that may sit between
//! a device and the stack.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::task::{Context, Poll};

use synack_tcp::time::Duration;
use synack_tcp::Instant;
use tokio::sync::mpsc;

use crate::sim::rng::Xoshiro256StarStar;
use crate::sim::{PathConfig, PathStats};
use crate::{RxMeta, TxMeta};

/// A packet device: raw IP packets in and out, one per call (a TUN device, a pipe).
///
/// Both calls follow tokio's poll conventions: `Poll::Pending` means "not now", and the device
/// wakes the task of `cx` when it may be ready. The driver also calls them with a no-op waker
/// to drain what is ready without blocking.
pub trait Device: Send + 'static {
    /// Receives one packet into `buf`; returns its length. A packet longer than `buf` may be
    /// truncated. An error is fatal: the driver stops and the sockets fail with it.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Sends one packet. An error drops that packet (and is counted); the driver goes on.
    ///
    /// A batching device may keep the packet and send it with the next ones: the driver calls
    /// [`flush`](Self::flush) once it has handed over everything the stack had to send.
    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>>;

    /// Sends what a batching device still holds from [`poll_send`](Self::poll_send). A device
    /// that sends each packet at once has nothing to do (the default). An error drops what
    /// was held (counted once); the driver goes on.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// What the device does about transport checksums: by default nothing, so the stack
    /// computes and verifies them all ([`ChecksumCaps::FULL`](crate::ChecksumCaps::FULL)).
    fn checksum_caps(&self) -> crate::ChecksumCaps {
        crate::ChecksumCaps::FULL
    }

    /// What the device knows of the packet the last [`poll_recv`](Self::poll_recv) returned
    /// (asked right after it): a checksum it vouches for, a TCP super-segment (GRO). By
    /// default nothing.
    fn rx_meta(&self) -> RxMeta {
        RxMeta::default()
    }

    /// The largest TCP payload the device takes in one packet and cuts into segments itself
    /// (TCP segmentation offload); 0, the default, for none. When above the MSS, the driver
    /// lets TCP send super-segments of up to this many bytes, through
    /// [`poll_send_with`](Self::poll_send_with).
    fn tso_max(&self) -> usize {
        0
    }

    /// As [`poll_send`](Self::poll_send), with what the device is to do with the packet: a
    /// [`TxMeta::gso_size`] above 0 (only when [`tso_max`](Self::tso_max) is) asks it to cut
    /// a TCP super-segment into segments of that payload size. By default `poll_send`.
    fn poll_send_with(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        meta: TxMeta,
    ) -> Poll<io::Result<()>> {
        let _ = meta;
        self.poll_send(cx, packet)
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        (**self).poll_recv(cx, buf)
    }
    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        (**self).poll_send(cx, packet)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn checksum_caps(&self) -> crate::ChecksumCaps {
        (**self).checksum_caps()
    }
    fn rx_meta(&self) -> RxMeta {
        (**self).rx_meta()
    }
    fn tso_max(&self) -> usize {
        (**self).tso_max()
    }
    fn poll_send_with(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        meta: TxMeta,
    ) -> Poll<io::Result<()>> {
        (**self).poll_send_with(cx, packet, meta)
    }
}

/// One end of an in-memory point-to-point link made by [`pipe`].
pub struct PipeDevice {
    /// The other end's queues: one, or one per shard for [`pipe_multiqueue`].
    tx: Vec<mpsc::Sender<Vec<u8>>>,
    rx: mpsc::Receiver<Vec<u8>>,
    dropped: u64,
}

/// Two devices joined back to back: what one sends, the other receives, in order and at once.
/// Each direction holds up to `capacity` packets; a packet sent to a full direction is
/// tail-dropped, as an interface queue would (TCP recovers). Lets two [`Stack`](super::Stack)s
/// run over the device driver, with its impairment layer, without privileges.
pub fn pipe(capacity: usize) -> (PipeDevice, PipeDevice) {
    let (a_tx, b_rx) = mpsc::channel(capacity.max(1));
    let (b_tx, a_rx) = mpsc::channel(capacity.max(1));
    (
        PipeDevice {
            tx: vec![a_tx],
            rx: a_rx,
            dropped: 0,
        },
        PipeDevice {
            tx: vec![b_tx],
            rx: b_rx,
            dropped: 0,
        },
    )
}

/// Two multiqueue devices joined back to back, `queues` queues each (one per worker of a
/// [`Stack::new_multiqueue`](super::Stack::new_multiqueue)): a packet sent on any queue of one
/// end arrives on the queue of the other end that [`rx_shard`](super::rx_shard) picks, as a
/// NIC's receive-side scaling steers by flow hash, so that each flow stays on one queue at
/// both ends. Each queue holds up to `capacity` packets (tail-dropped beyond).
pub fn pipe_multiqueue(queues: usize, capacity: usize) -> (Vec<PipeDevice>, Vec<PipeDevice>) {
    let queues = queues.max(1);
    let (a_tx, b_rx): (Vec<_>, Vec<_>) =
        (0..queues).map(|_| mpsc::channel(capacity.max(1))).unzip();
    let (b_tx, a_rx): (Vec<_>, Vec<_>) =
        (0..queues).map(|_| mpsc::channel(capacity.max(1))).unzip();
    let end = |tx: &Vec<mpsc::Sender<Vec<u8>>>, rx: Vec<mpsc::Receiver<Vec<u8>>>| {
        rx.into_iter()
            .map(|rx| PipeDevice {
                tx: tx.clone(),
                rx,
                dropped: 0,
            })
            .collect::<Vec<_>>()
    };
    (end(&a_tx, a_rx), end(&b_tx, b_rx))
}

impl PipeDevice {
    /// Packets tail-dropped because the other end's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Device for PipeDevice {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(p)) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the pipe is gone",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send(&mut self, _cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        let q = if self.tx.len() > 1 {
            super::flow::rx_shard(packet, self.tx.len())
        } else {
            0
        };
        match self.tx[q].try_send(packet.to_vec()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                Poll::Ready(Ok(()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the pipe is gone",
            ))),
        }
    }
}

/// A packet held back by the impairment layer.
struct Held {
    at: Instant,
    seq: u64,
    bytes: Vec<u8>,
    meta: RxMeta,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One direction of the impairment layer between a real device and the stack: the
/// [`PathConfig`] fields `delay`, `jitter`, `loss`, `reorder` (with `reorder_delay`),
/// `duplicate` and `corrupt`, with the same meaning as on the simulator's paths, drawn from a
/// seeded xoshiro256** stream (six draws per packet whatever the configuration).
/// `bandwidth_bps`, `queue_limit_bytes` and `gilbert_elliott` are not applied here.
pub(crate) struct Impairment {
    cfg: PathConfig,
    rng: Xoshiro256StarStar,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    pub(crate) stats: PathStats,
}

impl Impairment {
    pub(crate) fn new(cfg: PathConfig, seed: u64) -> Impairment {
        Impairment {
            cfg,
            rng: Xoshiro256StarStar::seed_from_u64(seed),
            held: BinaryHeap::new(),
            seq: 0,
            stats: PathStats::default(),
        }
    }

    /// A packet enters the path at `now`.
    pub(crate) fn offer(&mut self, now: Instant, packet: &[u8]) {
        self.offer_with(now, packet, RxMeta::default());
    }

    /// A packet enters the path at `now` with what its device knew of it (kept, but a
    /// corrupted packet's checksum is no longer vouched for).
    pub(crate) fn offer_with(&mut self, now: Instant, packet: &[u8], meta: RxMeta) {
        self.stats.sent += 1;
        let loss = self.rng.next_f64();
        let corrupt = self.rng.next_f64();
        let corrupt_bit = self.rng.next_u64();
        let reorder = self.rng.next_f64();
        let jitter = self.rng.next_u64();
        let duplicate = self.rng.next_f64();
        if loss < self.cfg.loss {
            self.stats.dropped_loss += 1;
            return;
        }
        let mut at = now + self.cfg.delay;
        let jitter_us = self.cfg.jitter.as_micros() as u64;
        if jitter_us > 0 {
            at += Duration::from_micros(jitter % jitter_us);
        }
        if reorder < self.cfg.reorder {
            at += self.cfg.effective_reorder_delay();
            self.stats.reordered += 1;
        }
        let mut bytes = packet.to_vec();
        // An intact copy, delivered right after the original (taken before corruption, as
        // netem does).
        let copy = (duplicate < self.cfg.duplicate).then(|| bytes.clone());
        let mut first = meta;
        if corrupt < self.cfg.corrupt && !bytes.is_empty() {
            let bit = corrupt_bit % (bytes.len() as u64 * 8);
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
            first.csum_trusted = false;
        }
        self.push(at, bytes, first);
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            self.push(at, copy, meta);
        }
    }

    fn push(&mut self, at: Instant, bytes: Vec<u8>, meta: RxMeta) {
        self.seq += 1;
        self.held.push(Reverse(Held {
            at,
            seq: self.seq,
            bytes,
            meta,
        }));
    }

    /// The next packet due at `now`, in (due time, arrival) order.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.pop_due_with(now).map(|(p, _)| p)
    }

    /// As `pop_due`, with what the device knew of the packet.
    pub(crate) fn pop_due_with(&mut self, now: Instant) -> Option<(Vec<u8>, RxMeta)> {
        if self.held.peek()?.0.at > now {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        self.stats.delivered += 1;
        self.stats.bytes_delivered += h.bytes.len() as u64;
        Some((h.bytes, h.meta))
    }

    /// When the next held packet is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|h| h.0.at)
    }
}
