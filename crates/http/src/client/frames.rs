//! What the server says in its HTTP/2 frames, read off the stream below hyper: the pool's
//! policy needs the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2) and whether a
//! `GOAWAY` (§6.8) arrived, and the metrics count `GOAWAY` and `RST_STREAM` (§6.4) frames.
//! The client's own PINGs (§6.7) are followed on the way out, and their ACKs on the way in,
//! so that a connection that hyper closed for an unanswered PING is known as such.
//!
//! The frames are read by [`FrameReader`] (RFC 9113 §4.1) as reads return, so a frame may
//! be split anywhere across reads. It only observes: it never changes a byte, and whatever
//! the bytes are it never panics (a malformed frame is h2's to reject).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use synack_wire::h2::{kind, Event, FrameReader};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{inc, ClientCounters};

/// `SETTINGS_MAX_CONCURRENT_STREAMS` (§6.5.2).
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// The `REFUSED_STREAM` error code (§7).
pub(crate) const REFUSED_STREAM: u32 = 0x7;

/// What one connection's peer has said so far; shared by the stream (writer) and the pool
/// (reader). `notify` wakes the pool's waiters for the origin when something changes that
/// may free or take away room for streams.
#[derive(Debug)]
pub(crate) struct PeerState {
    settings_seen: AtomicBool,
    /// The peer's `SETTINGS_MAX_CONCURRENT_STREAMS`; `u32::MAX` until it sets one (the
    /// initial value is unlimited, §6.5.2).
    max_concurrent_streams: AtomicU32,
    goaway: AtomicBool,
    goaway_last_stream: AtomicU32,
    goaway_code: AtomicU32,
    goaways: AtomicU64,
    refused_streams: AtomicU64,
    resets: AtomicU64,
    /// The connection's end: its task returned.
    closed: AtomicBool,
    /// The connection ended because a PING went unanswered (hyper's keep-alive timeout).
    ping_failed: AtomicBool,
    /// The peer closed its side (a read returned the end of the stream).
    eof: AtomicBool,
    pings_sent: AtomicU64,
    pings_acked: AtomicU64,
    /// When the last PING was sent.
    ping_sent_at: Mutex<Option<Instant>>,
    notify: Arc<Notify>,
    /// The pool's reaper, which drops connections that stopped being usable.
    reaper: Arc<Notify>,
    /// The client's counters (GOAWAY and REFUSED_STREAM are counted as they arrive).
    counters: Arc<ClientCounters>,
}

impl PeerState {
    pub(crate) fn new(
        notify: Arc<Notify>,
        reaper: Arc<Notify>,
        counters: Arc<ClientCounters>,
    ) -> PeerState {
        PeerState {
            settings_seen: AtomicBool::new(false),
            max_concurrent_streams: AtomicU32::new(u32::MAX),
            goaway: AtomicBool::new(false),
            goaway_last_stream: AtomicU32::new(0),
            goaway_code: AtomicU32::new(0),
            goaways: AtomicU64::new(0),
            refused_streams: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ping_failed: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            pings_sent: AtomicU64::new(0),
            pings_acked: AtomicU64::new(0),
            ping_sent_at: Mutex::new(None),
            notify,
            reaper,
            counters,
        }
    }

    /// Whether the peer's first SETTINGS frame has arrived.
    pub(crate) fn settings_seen(&self) -> bool {
        self.settings_seen.load(Ordering::Acquire)
    }

    /// The peer's limit on concurrent streams, once its SETTINGS arrived.
    pub(crate) fn max_concurrent_streams(&self) -> Option<u32> {
        self.settings_seen()
            .then(|| self.max_concurrent_streams.load(Ordering::Acquire))
    }

    /// The last GOAWAY's last-stream-id and error code, if one arrived.
    pub(crate) fn goaway(&self) -> Option<(u32, u32)> {
        self.goaway.load(Ordering::Acquire).then(|| {
            (
                self.goaway_last_stream.load(Ordering::Acquire),
                self.goaway_code.load(Ordering::Acquire),
            )
        })
    }

    /// GOAWAY frames received on this connection.
    #[cfg(test)]
    pub(crate) fn goaways(&self) -> u64 {
        self.goaways.load(Ordering::Acquire)
    }

    /// RST_STREAM frames received with REFUSED_STREAM.
    #[cfg(test)]
    pub(crate) fn refused_streams(&self) -> u64 {
        self.refused_streams.load(Ordering::Acquire)
    }

    /// RST_STREAM frames received, any code.
    #[cfg(test)]
    pub(crate) fn resets(&self) -> u64 {
        self.resets.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn ping_failed(&self) -> bool {
        self.ping_failed.load(Ordering::Acquire)
    }

    /// Whether the peer closed its side of the stream.
    pub(crate) fn peer_eof(&self) -> bool {
        self.eof.load(Ordering::Acquire)
    }

    /// PINGs the client sent (not ACKs), and ACKs of them received.
    pub(crate) fn pings(&self) -> (u64, u64) {
        (
            self.pings_sent.load(Ordering::Acquire),
            self.pings_acked.load(Ordering::Acquire),
        )
    }

    /// Since when a PING has gone unanswered, if one has.
    pub(crate) fn ping_outstanding_since(&self) -> Option<Instant> {
        let (sent, acked) = self.pings();
        if sent > acked {
            *self
                .ping_sent_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        } else {
            None
        }
    }

    /// The connection's task ended. It ended for an unanswered PING when one was
    /// outstanding for at least `ping_timeout` and the peer had not closed the stream
    /// (hyper then closes the connection from its side); returns whether it did.
    pub(crate) fn set_closed(&self, ping_timeout: Option<Duration>) -> bool {
        let ping = match (ping_timeout, self.ping_outstanding_since()) {
            (Some(t), Some(since)) => !self.peer_eof() && since.elapsed() >= t,
            _ => false,
        };
        if ping {
            self.ping_failed.store(true, Ordering::Release);
        }
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.reaper.notify_one();
        ping
    }

    fn on_ping_sent(&self) {
        *self
            .ping_sent_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.pings_sent.fetch_add(1, Ordering::AcqRel);
    }

    fn on_ping_ack(&self) {
        // An ACK the client did not ask for is not counted (it cannot answer a PING).
        let sent = self.pings_sent.load(Ordering::Acquire);
        let _ = self
            .pings_acked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a < sent).then_some(a + 1)
            });
    }

    fn on_setting(&self, id: u16, value: u32) {
        if id == MAX_CONCURRENT_STREAMS {
            self.max_concurrent_streams.store(value, Ordering::Release);
        }
    }

    fn on_settings_end(&self) {
        self.settings_seen.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn on_goaway(&self, last_stream: u32, code: u32) {
        self.goaway_last_stream
            .store(last_stream, Ordering::Release);
        self.goaway_code.store(code, Ordering::Release);
        self.goaway.store(true, Ordering::Release);
        self.goaways.fetch_add(1, Ordering::AcqRel);
        inc(&self.counters.goaways_received);
        self.notify.notify_waiters();
        self.reaper.notify_one();
    }

    fn on_reset(&self, code: u32) {
        self.resets.fetch_add(1, Ordering::AcqRel);
        if code == REFUSED_STREAM {
            self.refused_streams.fetch_add(1, Ordering::AcqRel);
            inc(&self.counters.refused_streams);
        }
    }
}

/// Follows one direction of the connection into a [`PeerState`]: what the server sent
/// (`inbound`), or what the client sent (`outbound`, where only the client's PINGs count).
#[derive(Debug)]
struct Follower {
    reader: FrameReader,
    outbound: bool,
}

impl Follower {
    /// The server's frames (its connection preface is a SETTINGS frame, §3.4).
    fn inbound() -> Follower {
        Follower {
            reader: FrameReader::frames(),
            outbound: false,
        }
    }

    /// The client's preface and frames.
    fn outbound() -> Follower {
        Follower {
            reader: FrameReader::client(),
            outbound: true,
        }
    }

    fn feed(&mut self, data: &[u8], peer: &PeerState) {
        let outbound = self.outbound;
        self.reader.feed(data, |e| match e {
            Event::Frame(f) if outbound && f.header.kind == kind::PING && !f.header.is_ack() => {
                peer.on_ping_sent()
            }
            _ if outbound => {}
            Event::Frame(f) => match (f.header.kind, f.value, f.code) {
                (kind::PING, ..) if f.header.is_ack() => peer.on_ping_ack(),
                (kind::GOAWAY, Some(last), Some(code)) => peer.on_goaway(last, code),
                (kind::RST_STREAM, _, Some(code)) => peer.on_reset(code),
                _ => {}
            },
            Event::Setting { id, value } => peer.on_setting(id, value),
            Event::End(h) if h.kind == kind::SETTINGS && !h.is_ack() => peer.on_settings_end(),
            _ => {}
        });
    }
}

/// A client's HTTP/2 stream, watched: every byte read, and every byte written, goes through
/// a parser into a [`PeerState`]. (The server's connection preface is a SETTINGS frame,
/// §3.4, so the inbound parse starts at the first byte.)
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    parser: Follower,
    out: Follower,
    peer: Arc<PeerState>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, peer: Arc<PeerState>) -> Watched<S> {
        Watched {
            inner,
            parser: Follower::inbound(),
            out: Follower::outbound(),
            peer,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let me = &mut *self;
            let got = &buf.filled()[before..];
            if got.is_empty() && buf.remaining() > 0 {
                me.peer.eof.store(true, Ordering::Release);
            }
            me.parser.feed(got, &me.peer);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            let me = &mut *self;
            me.out.feed(&buf[..n.min(buf.len())], &me.peer);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            let me = &mut *self;
            for b in bufs {
                if n == 0 {
                    break;
                }
                let k = n.min(b.len());
                me.out.feed(&b[..k], &me.peer);
                n -= k;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerState {
        PeerState::new(Arc::default(), Arc::default(), Arc::default())
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn wire() -> Vec<u8> {
        let mut w = Vec::new();
        // SETTINGS: HEADER_TABLE_SIZE 4096, MAX_CONCURRENT_STREAMS 10.
        w.extend(frame(4, 0, 0, &[0, 1, 0, 0, 16, 0, 0, 3, 0, 0, 0, 10]));
        w.extend(frame(4, 1, 0, &[]));
        w.extend(frame(1, 4, 1, &[0x88]));
        w.extend(frame(0, 1, 1, &[b'x'; 300]));
        w.extend(frame(3, 0, 3, &7u32.to_be_bytes()));
        w.extend(frame(3, 0, 5, &8u32.to_be_bytes()));
        w.extend(frame(
            7,
            0,
            0,
            &[0x80, 0, 0, 9, 0, 0, 0, 0, b'b', b'y', b'e'],
        ));
        w
    }

    fn check(p: &PeerState) {
        assert_eq!(p.max_concurrent_streams(), Some(10));
        assert_eq!(p.goaway(), Some((9, 0)), "the reserved bit is ignored");
        assert_eq!((p.goaways(), p.refused_streams(), p.resets()), (1, 1, 2));
    }

    #[test]
    fn frames_are_followed_whole_and_split_at_every_byte() {
        let w = wire();
        let p = peer();
        assert_eq!(p.max_concurrent_streams(), None);
        Follower::inbound().feed(&w, &p);
        check(&p);
        for chunk in 1..w.len() {
            let p = peer();
            let mut parser = Follower::inbound();
            for c in w.chunks(chunk) {
                parser.feed(c, &p);
            }
            check(&p);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_are_followed_out_and_acks_in() {
        let p = peer();
        let mut out = Follower::outbound();
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(4, 0, 0, &[]));
        wire.extend(frame(6, 0, 0, &[1; 8]));
        // An ACK of the server's PING is not one of the client's.
        wire.extend(frame(6, 1, 0, &[2; 8]));
        for c in wire.chunks(5) {
            out.feed(c, &p);
        }
        assert_eq!(p.pings(), (1, 0));
        let sent = Instant::now();
        assert_eq!(p.ping_outstanding_since(), Some(sent));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut inp = Follower::inbound();
        inp.feed(&frame(6, 1, 0, &[1; 8]), &p);
        inp.feed(&frame(6, 1, 0, &[1; 8]), &p);
        assert_eq!(p.pings(), (1, 1), "an unasked ACK is not counted");
        assert_eq!(p.ping_outstanding_since(), None);
        assert!(!p.set_closed(Some(Duration::from_secs(1))));
        let q = peer();
        Follower::outbound().feed(&wire, &q);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            q.set_closed(Some(Duration::from_secs(1))),
            "unanswered for 2 s"
        );
        assert!(q.ping_failed() && q.is_closed());
    }

    #[test]
    fn any_bytes_are_observed_without_panicking() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let p = peer();
        let mut parser = Follower::inbound();
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            parser.feed(&bytes[..(x % 9) as usize], &p);
        }
        // A truncated GOAWAY or RST_STREAM is not taken for one.
        let p = peer();
        Follower::inbound().feed(&frame(7, 0, 0, &[0, 0, 0, 1]), &p);
        Follower::inbound().feed(&frame(3, 0, 1, &[0, 0]), &p);
        assert_eq!((p.goaway(), p.resets()), (None, 0));
    }
}
