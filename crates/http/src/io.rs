//! A byte-counting wrapper around a connection's stream.
//!
//! The client needs to know whether *any* response byte arrived on a connection before it
//! failed (a request is retried only when none did), and the server needs to know when the
//! first byte of the next request arrives (its header read timeout starts then). Both are
//! read off the stream here, below hyper, so they do not depend on how hyper classifies
//! errors.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What a [`Tracked`] stream has seen, shared with its owner.
#[derive(Debug)]
pub(crate) struct IoState {
    read: AtomicU64,
    eof: AtomicBool,
    /// When set, the next read of at least one byte records its time in `first_byte` (the
    /// server arms it when a connection becomes idle).
    armed: AtomicBool,
    /// When that byte came, in nanoseconds since `born` plus one; 0: it has not.
    first_byte: AtomicU64,
    born: Instant,
}

impl Default for IoState {
    fn default() -> IoState {
        IoState {
            read: AtomicU64::new(0),
            eof: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            first_byte: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl IoState {
    /// Bytes read from the stream so far.
    pub(crate) fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    /// Whether a read returned the end of the stream (the peer's FIN).
    pub(crate) fn eof(&self) -> bool {
        self.eof.load(Ordering::Acquire)
    }

    /// Forgets the last first byte and waits for the next one.
    pub(crate) fn arm(&self) {
        self.first_byte.store(0, Ordering::Release);
        self.armed.store(true, Ordering::Release);
    }

    /// Stops waiting for a first byte.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
        self.first_byte.store(0, Ordering::Release);
    }

    /// When the first byte after [`arm`](Self::arm) arrived, if it did.
    pub(crate) fn first_byte(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.born + std::time::Duration::from_nanos(n - 1)),
        }
    }

    fn note_first_byte(&self) {
        self.first_byte
            .store(stamp(self.born, now()), Ordering::Release);
    }
}

thread_local! {
    /// The time of the current poll of a [`Coarse`] future: `None` outside one, `Some(None)`
    /// inside one before anybody asked.
    static POLL_TIME: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// The time, for timeouts of a connection (keep-alive, header, send timeouts, all in
/// seconds): inside a [`Coarse`] future's poll, the clock is read once, the first time it is
/// asked for, and that reading is the answer for the rest of the poll, as nginx caches its
/// time once per turn of its event loop. Outside one, the clock itself.
pub(crate) fn now() -> Instant {
    POLL_TIME.with(|c| match c.get() {
        None => Instant::now(),
        Some(Some(t)) => t,
        Some(None) => {
            let t = Instant::now();
            c.set(Some(Some(t)));
            t
        }
    })
}

/// Restores the outer poll's time when a [`Coarse`] poll ends (or unwinds).
struct PollTimeScope(Option<Option<Instant>>);

impl Drop for PollTimeScope {
    fn drop(&mut self) {
        POLL_TIME.with(|c| c.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// A future (a connection's task) during each poll of which [`now`] reads the clock at
    /// most once. A poll lasts microseconds; the deadlines it serves are seconds away.
    pub(crate) struct Coarse<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Coarse<F> {
    pub(crate) fn new(inner: F) -> Coarse<F> {
        Coarse { inner }
    }
}

impl<F: Future> Future for Coarse<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = PollTimeScope(POLL_TIME.with(|c| c.replace(Some(None))));
        self.project().inner.poll(cx)
    }
}

/// `t` as nanoseconds since `base` plus one, for an atomic where 0 means "none".
pub(crate) fn stamp(base: Instant, t: Instant) -> u64 {
    let n = t.saturating_duration_since(base).as_nanos();
    u64::try_from(n).unwrap_or(u64::MAX - 1) + 1
}

/// A stream that counts what passes through it into an [`IoState`].
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    state: Arc<IoState>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S) -> (Tracked<S>, Arc<IoState>) {
        let state = Arc::new(IoState::default());
        (
            Tracked {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = (buf.filled().len() - before) as u64;
            let st = &self.state;
            if n == 0 {
                if buf.remaining() > 0 {
                    st.eof.store(true, Ordering::Release);
                }
            } else {
                st.read.fetch_add(n, Ordering::AcqRel);
                // The server's header timeout starts here; it comes no earlier than the
                // deadline the server armed when the connection went idle, so nobody needs
                // waking.
                if st.armed.load(Ordering::Relaxed) && st.armed.swap(false, Ordering::AcqRel) {
                    st.note_first_byte();
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
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

    /// Spins (no sleep) until the clock has moved past `t`.
    fn clock_passes(t: Instant) {
        while Instant::now() <= t {
            std::hint::spin_loop();
        }
    }

    /// Inside one poll of a `Coarse` future, `now()` is one reading of the clock however
    /// often it is asked and however long the poll takes; the next poll reads it anew.
    #[tokio::test]
    async fn the_clock_is_read_once_per_poll() {
        let (a, b, c) = Coarse::new(async {
            let a = now();
            clock_passes(a);
            let b = now();
            tokio::task::yield_now().await;
            clock_passes(a);
            (a, b, now())
        })
        .await;
        assert_eq!(a, b);
        assert!(c > a);
        // Outside one, `now()` is the clock (and the scope was left as it was found).
        let t = now();
        clock_passes(t);
        assert!(now() > t);
    }
}
