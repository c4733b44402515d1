//! Counts the HTTP/2 frames of a connection as they pass, below hyper and h2: the streams a
//! client opens and resets, and the `GOAWAY`s, `RST_STREAM`s and `PING`s the server sends.
//! The frames are read by [`FrameReader`] (RFC 9113 §4.1; the error codes of `GOAWAY`, §6.8,
//! and `RST_STREAM`, §6.4); payloads are skipped, nothing is copied or held.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use synack_wire::h2::{kind, Event, FrameReader};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::{inc, ServerCounters};

/// A connection's stream with its frames counted into the server's counters.
pub(crate) struct FrameCounter<S> {
    inner: S,
    counters: Arc<ServerCounters>,
    rx: FrameReader,
    tx: FrameReader,
    /// The highest stream id a client's HEADERS has opened.
    last_opened: u32,
}

impl<S> FrameCounter<S> {
    pub(crate) fn new(inner: S, counters: Arc<ServerCounters>) -> FrameCounter<S> {
        FrameCounter {
            inner,
            counters,
            rx: FrameReader::client(),
            tx: FrameReader::frames(),
            last_opened: 0,
        }
    }

    fn received(&mut self, data: &[u8]) {
        let c = &self.counters;
        let last = &mut self.last_opened;
        self.rx.feed(data, |e| {
            let Event::Frame(f) = e else { return };
            let h = f.header;
            match h.kind {
                // RFC 9113 §5.1.1: a new stream's id is larger than any the client opened.
                kind::HEADERS if h.stream > *last && h.stream % 2 == 1 => {
                    *last = h.stream;
                    inc(&c.h2_streams);
                }
                kind::RST_STREAM => inc(&c.h2_resets_received),
                _ => {}
            }
        });
    }

    fn sent(&mut self, data: &[u8]) {
        let c = &self.counters;
        self.tx.feed(data, |e| {
            let Event::Frame(f) = e else { return };
            match f.header.kind {
                kind::GOAWAY => {
                    inc(&c.goaways_sent);
                    if f.code.is_some_and(|c| c != 0) {
                        inc(&c.goaway_errors);
                    }
                }
                kind::RST_STREAM => inc(&c.h2_resets_sent),
                kind::PING if !f.header.is_ack() => inc(&c.h2_pings_sent),
                _ => {}
            }
        });
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameCounter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let me = &mut *self;
            me.received(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameCounter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.sent(&buf[..n]);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = left.min(b.len());
                self.sent(&b[..k]);
                left -= k;
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
    use std::sync::atomic::Ordering;
    use synack_wire::h2::PREFACE;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[kind, flags]);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_are_counted_across_any_split() {
        let mut rx = PREFACE.to_vec();
        rx.extend(frame(kind::SETTINGS, 0, 0, &[0; 12]));
        rx.extend(frame(kind::HEADERS, 0x5, 1, b"hpack"));
        rx.extend(frame(kind::HEADERS, 0x4, 1, b"trailers"));
        rx.extend(frame(kind::DATA, 0x1, 1, &[7; 300]));
        rx.extend(frame(kind::HEADERS, 0x5, 3, b"hpack"));
        rx.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        let mut tx = frame(kind::SETTINGS, 0, 0, &[]);
        let mut goaway = 7u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0xbu32.to_be_bytes());
        goaway.extend_from_slice(b"calm down");
        tx.extend(frame(kind::GOAWAY, 0, 0, &goaway));
        tx.extend(frame(kind::PING, 0, 0, &[1; 8]));
        tx.extend(frame(kind::PING, 0x1, 0, &[1; 8]));
        for step in [1, 2, 5, 9, 17, 1000] {
            let counters = Arc::new(ServerCounters::default());
            let mut fc = FrameCounter::new((), counters.clone());
            rx.chunks(step).for_each(|p| fc.received(p));
            tx.chunks(step).for_each(|p| fc.sent(p));
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let c = &counters;
            assert_eq!(get(&c.h2_streams), 2, "step {step}");
            assert_eq!(get(&c.h2_resets_received), 1, "step {step}");
            assert_eq!(get(&c.goaways_sent), 1, "step {step}");
            assert_eq!(get(&c.goaway_errors), 1, "step {step}");
            assert_eq!(get(&c.h2_pings_sent), 1, "step {step}");
        }
    }
}
