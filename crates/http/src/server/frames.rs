//! Counts the HTTP/2 frames of a connection as they pass, below hyper and h2: the streams a
//! client opens and resets, and the `GOAWAY`s, `RST_STREAM`s and `PING`s the server sends.
//! Only frame headers are parsed (RFC 9113 §4.1), and the error code of `GOAWAY` (§6.8) and
//! `RST_STREAM` (§6.4); payloads are skipped, nothing is copied or held.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::{inc, ServerCounters};

use super::detect::PREFACE;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// A frame as far as it was read: its header and, for `GOAWAY` and `RST_STREAM`, its error
/// code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub len: u32,
    /// `GOAWAY`'s last stream id.
    pub last_stream: Option<u32>,
    /// The error code of `GOAWAY` or `RST_STREAM`.
    pub code: Option<u32>,
}

/// Follows a byte stream of frames fed to it in pieces of any size.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    /// Bytes to pass over: the rest of a payload (or the client's preface).
    skip: u64,
    head: [u8; 9],
    head_len: usize,
    /// A frame whose first payload bytes are being read.
    pending: Option<FrameHead>,
    body: [u8; 8],
    body_len: usize,
    body_want: usize,
}

impl Scanner {
    /// A scanner of what a client sends: the preface, then frames.
    pub(crate) fn client() -> Scanner {
        Scanner {
            skip: PREFACE.len() as u64,
            ..Scanner::default()
        }
    }

    /// Feeds `data`, calling `on` for each frame whose header (and error code) is complete.
    pub(crate) fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(&FrameHead)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            if let Some(mut f) = self.pending {
                let n = (self.body_want - self.body_len).min(data.len());
                self.body[self.body_len..self.body_len + n].copy_from_slice(&data[..n]);
                self.body_len += n;
                data = &data[n..];
                if self.body_len == self.body_want {
                    let word = |i: usize| {
                        u32::from_be_bytes([
                            self.body[i],
                            self.body[i + 1],
                            self.body[i + 2],
                            self.body[i + 3],
                        ])
                    };
                    match f.kind {
                        GOAWAY => {
                            f.last_stream = Some(word(0) & 0x7fff_ffff);
                            f.code = Some(word(4));
                        }
                        _ => f.code = Some(word(0)),
                    }
                    self.pending = None;
                    self.skip = u64::from(f.len) - self.body_want as u64;
                    on(&f);
                }
                continue;
            }
            let n = (9 - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
            self.head_len += n;
            data = &data[n..];
            if self.head_len < 9 {
                continue;
            }
            self.head_len = 0;
            let h = &self.head;
            let f = FrameHead {
                len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                last_stream: None,
                code: None,
            };
            let want = match f.kind {
                GOAWAY => 8,
                RST_STREAM => 4,
                _ => 0,
            };
            if want > 0 && f.len as usize >= want {
                self.pending = Some(f);
                self.body_len = 0;
                self.body_want = want;
            } else {
                // A malformed GOAWAY or RST_STREAM is h2's to refuse; it is counted as seen.
                self.skip = u64::from(f.len);
                on(&f);
            }
        }
    }
}

/// A connection's stream with its frames counted into the server's counters.
pub(crate) struct FrameCounter<S> {
    inner: S,
    counters: Arc<ServerCounters>,
    rx: Scanner,
    tx: Scanner,
    /// The highest stream id a client's HEADERS has opened.
    last_opened: u32,
}

impl<S> FrameCounter<S> {
    pub(crate) fn new(inner: S, counters: Arc<ServerCounters>) -> FrameCounter<S> {
        FrameCounter {
            inner,
            counters,
            rx: Scanner::client(),
            tx: Scanner::default(),
            last_opened: 0,
        }
    }

    fn received(&mut self, data: &[u8]) {
        let c = &self.counters;
        let last = &mut self.last_opened;
        self.rx.feed(data, |f| match f.kind {
            // RFC 9113 §5.1.1: a new stream's id is larger than any the client opened.
            HEADERS if f.stream > *last && f.stream % 2 == 1 => {
                *last = f.stream;
                inc(&c.h2_streams);
            }
            RST_STREAM => inc(&c.h2_resets_received),
            _ => {}
        });
    }

    fn sent(&mut self, data: &[u8]) {
        let c = &self.counters;
        self.tx.feed(data, |f| match f.kind {
            GOAWAY => {
                inc(&c.goaways_sent);
                if f.code.is_some_and(|c| c != 0) {
                    inc(&c.goaway_errors);
                }
            }
            RST_STREAM => inc(&c.h2_resets_sent),
            PING if f.flags & ACK == 0 => inc(&c.h2_pings_sent),
            _ => {}
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

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[kind, flags]);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_are_followed_across_any_split() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0; 12]));
        bytes.extend(frame(HEADERS, 0x5, 1, b"hpack"));
        bytes.extend(frame(0x0, 0x1, 1, &[7; 300]));
        bytes.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        let mut goaway = 7u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0xbu32.to_be_bytes());
        goaway.extend_from_slice(b"calm down");
        bytes.extend(frame(GOAWAY, 0, 0, &goaway));
        bytes.extend(frame(PING, ACK, 0, &[1; 8]));
        for step in [1, 2, 5, 9, 17, 1000] {
            let mut s = Scanner::client();
            let mut seen = Vec::new();
            for piece in bytes.chunks(step) {
                s.feed(piece, |f| seen.push(*f));
            }
            let kinds: Vec<(u8, u32, Option<u32>)> =
                seen.iter().map(|f| (f.kind, f.stream, f.code)).collect();
            assert_eq!(
                kinds,
                [
                    (0x4, 0, None),
                    (HEADERS, 1, None),
                    (0x0, 1, None),
                    (RST_STREAM, 3, Some(8)),
                    (GOAWAY, 0, Some(0xb)),
                    (PING, 0, None)
                ],
                "step {step}"
            );
            assert_eq!(seen[4].last_stream, Some(7));
        }
    }
}
