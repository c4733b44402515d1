//! Which protocol a cleartext connection speaks: HTTP/2 with prior knowledge starts with the
//! client connection preface (RFC 9113 §3.4), which no HTTP/1.1 request can start with
//! (`PRI` is no method a server of ours accepts, and `HTTP/2.0` no HTTP/1.x version).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use synack_wire::h2::PREFACE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// The whole preface: HTTP/2.
    Http2,
    /// Anything else (HTTP/1.x, or garbage the HTTP/1.1 guard answers): HTTP/1.1.
    Http1,
    /// The client closed before sending a byte.
    Closed,
}

/// Reads from `io` until the bytes read differ from the preface or hold all of it, and
/// returns what they say with every byte read (to be read again by the protocol's server).
pub(crate) async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(Sniffed, Bytes)> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = io.read_buf(&mut buf).await?;
        let k = buf.len().min(PREFACE.len());
        if buf[..k] != PREFACE[..k] {
            return Ok((Sniffed::Http1, buf.freeze()));
        }
        if k == PREFACE.len() {
            return Ok((Sniffed::Http2, buf.freeze()));
        }
        if n == 0 {
            let what = if buf.is_empty() {
                Sniffed::Closed
            } else {
                Sniffed::Http1
            };
            return Ok((what, buf.freeze()));
        }
    }
}

/// A stream whose first bytes are `prefix` (already read from `inner`), then `inner`'s.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
    use tokio::io::AsyncWriteExt;

    async fn sniffed(pieces: &[&[u8]], close: bool) -> (Sniffed, Vec<u8>, Vec<u8>) {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in pieces {
                a.write_all(&p).await.unwrap();
                tokio::task::yield_now().await;
            }
            if close {
                a.shutdown().await.unwrap();
            }
            a
        });
        let mut b = b;
        let (what, prefix) = sniff(&mut b).await.unwrap();
        let _a = writer.await.unwrap();
        drop(_a);
        // Everything read is given back, then the rest of the stream.
        let mut all = Vec::new();
        Prefixed::new(prefix.clone(), b)
            .read_to_end(&mut all)
            .await
            .unwrap();
        (what, prefix.to_vec(), all)
    }

    #[tokio::test]
    async fn the_preface_in_pieces_is_http2_and_nothing_is_lost() {
        let (what, _, all) = sniffed(
            &[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n", b"\0\0\0\x04"],
            true,
        )
        .await;
        assert_eq!(what, Sniffed::Http2);
        assert_eq!(all, [&PREFACE[..], b"\0\0\0\x04"].concat());
    }

    #[tokio::test]
    async fn an_http1_request_is_decided_at_its_first_differing_byte() {
        let (what, prefix, all) = sniffed(&[b"P", b"OST / HTTP/1.1\r\n\r\n"], true).await;
        assert_eq!(what, Sniffed::Http1);
        // Read up to the differing byte at least, and given back whole.
        assert!(prefix.len() >= 2 && b"POST / HTTP/1.1\r\n\r\n".starts_with(&prefix));
        assert_eq!(all, b"POST / HTTP/1.1\r\n\r\n");
        let (what, _, _) = sniffed(&[b"GET / HTTP/1.1\r\n\r\n"], false).await;
        assert_eq!(what, Sniffed::Http1);
    }

    #[tokio::test]
    async fn a_close_before_or_inside_the_preface() {
        assert_eq!(sniffed(&[], true).await.0, Sniffed::Closed);
        let (what, prefix, _) = sniffed(&[b"PRI * HTTP/2"], true).await;
        assert_eq!(
            (what, prefix.as_slice()),
            (Sniffed::Http1, &b"PRI * HTTP/2"[..])
        );
    }
}
