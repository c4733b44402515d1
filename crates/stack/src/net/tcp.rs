//! TCP sockets shaped like [`tokio::net::TcpListener`] and [`tokio::net::TcpStream`].

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use synack_tcp::endpoint::EPHEMERAL_PORTS;
use synack_tcp::time::Duration;
use synack_tcp::{
    ConnId, ConnectError, ConnectOptions, ConnectionError, ListenError, ListenerId, RecvError,
    SendError, State,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::host::{connect_ready, register};
use crate::net::{Stack, ToSocketAddr};

/// The accept queue of a listener (tokio's default backlog).
const BACKLOG: usize = 1024;

/// The `io::Error` an application sees for a connection that failed.
pub(crate) fn conn_error(e: ConnectionError) -> io::Error {
    let kind = match e {
        ConnectionError::Refused => io::ErrorKind::ConnectionRefused,
        ConnectionError::Reset => io::ErrorKind::ConnectionReset,
        ConnectionError::TimedOut => io::ErrorKind::TimedOut,
        ConnectionError::Unreachable => io::ErrorKind::HostUnreachable,
        ConnectionError::Aborted => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, e)
}

fn connect_error(e: ConnectError) -> io::Error {
    let kind = match e {
        ConnectError::NoEphemeralPort => io::ErrorKind::AddrNotAvailable,
        ConnectError::AddrInUse => io::ErrorKind::AddrInUse,
        ConnectError::InvalidAddress => io::ErrorKind::InvalidInput,
        ConnectError::TooManyConnections => io::ErrorKind::QuotaExceeded,
        ConnectError::NoBuffers => io::ErrorKind::OutOfMemory,
    };
    io::Error::new(kind, e)
}

fn listen_error(e: ListenError) -> io::Error {
    let kind = match e {
        ListenError::AddrInUse => io::ErrorKind::AddrInUse,
        ListenError::InvalidPort => io::ErrorKind::InvalidInput,
    };
    io::Error::new(kind, e)
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

/// A connection handle shared by a stream and its halves; the last one dropped closes it.
struct ConnRef {
    stack: Stack,
    id: ConnId,
    local: SocketAddr,
    peer: SocketAddr,
    linger: Mutex<Option<Duration>>,
    write_shut: AtomicBool,
}

impl ConnRef {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        let dst = buf.initialize_unfilled();
        let r = self.stack.with_host(|h, now| {
            match h.iface.tcp_mut().with_conn(now, id, |c| c.recv(dst)) {
                None => Err(not_connected()),
                Some(Ok(0)) => {
                    register(&mut h.waiters(id).read, cx.waker());
                    Ok(None)
                }
                Some(Ok(n)) => Ok(Some(n)),
                Some(Err(RecvError::Finished)) => Ok(Some(0)),
                Some(Err(RecvError::InvalidState)) => Err(not_connected()),
                Some(Err(RecvError::Connection(e))) => Err(conn_error(e)),
            }
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some(n))) => {
                if n > 0 {
                    // Reading may have opened the window: a window update may be due.
                    self.stack.kick();
                }
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        let r = self.stack.with_host(|h, now| {
            match h.iface.tcp_mut().with_conn(now, id, |c| c.send(buf)) {
                None => Err(not_connected()),
                Some(Ok(0)) => {
                    register(&mut h.waiters(id).write, cx.waker());
                    Ok(None)
                }
                Some(Ok(n)) => Ok(Some(n)),
                Some(Err(SendError::InvalidState)) => Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the connection's write side is closed",
                )),
                Some(Err(SendError::Connection(e))) => Err(conn_error(e)),
            }
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some(n))) => {
                self.stack.kick();
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Half-close: a FIN after the data queued (RFC 9293 §3.10.4). Returns at once, as the
    /// kernel's `shutdown(SHUT_WR)` does; reading goes on.
    fn shutdown_write(&self) -> io::Result<()> {
        let id = self.id;
        self.write_shut.store(true, Ordering::Relaxed);
        let r = self.stack.with_host(|h, now| {
            h.mark(id);
            h.iface.tcp_mut().with_conn(now, id, |c| match c.error() {
                Some(e) => Err(conn_error(e)),
                None => {
                    c.shutdown();
                    Ok(())
                }
            })
        })?;
        self.stack.kick();
        r.unwrap_or_else(|| Err(not_connected()))
    }

    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let r = self.stack.with_host(|h, _| {
            let Some(c) = h.iface.tcp().conn(id) else {
                return Err(not_connected());
            };
            if let Some(e) = c.error() {
                return Err(conn_error(e));
            }
            if c.is_established() {
                return Ok(true);
            }
            if connect_ready(c) {
                // CLOSED without an error: the open was abandoned.
                return Err(not_connected());
            }
            register(&mut h.waiters(id).connect, cx.waker());
            Ok(false)
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(true)) => Poll::Ready(Ok(())),
            Ok(Ok(false)) => Poll::Pending,
        }
    }

    fn abort(&self) {
        let id = self.id;
        self.stack.with_host_even_if_dead(|h, _| {
            h.mark(id);
            h.iface.tcp_mut().abort(id)
        });
        self.stack.kick();
    }
}

impl Drop for ConnRef {
    fn drop(&mut self) {
        let id = self.id;
        let linger_zero =
            *self.linger.lock().unwrap_or_else(PoisonError::into_inner) == Some(Duration::ZERO);
        self.stack.with_host_even_if_dead(|h, now| {
            h.forget(id);
            let tcp = h.iface.tcp_mut();
            if linger_zero {
                tcp.abort(id);
                tcp.release(id);
            } else {
                tcp.close(now, id);
            }
        });
        self.stack.kick();
    }
}

/// A TCP connection on a [`Stack`], shaped like [`tokio::net::TcpStream`].
///
/// Reads and writes follow tokio's contracts: `poll_read` is pending until data, the end of
/// the stream (a read of 0 bytes) or an error; `poll_write` takes as much as fits in the send
/// buffer and is pending while it is full, and the writer is woken when a quarter of it is
/// free again. `poll_flush` has nothing to do (the driver sends as soon as the window allows);
/// `poll_shutdown` is a half-close (FIN after the data, RFC 9293 §3.10.4) and returns at once.
/// Dropping the stream closes the connection gracefully (`close()`: RFC 9293 §3.10.4, or a RST
/// if unread data remains, RFC 1122 §4.2.2.13); with [`set_linger`](Self::set_linger)`(Some(0))`
/// or after [`abort`](Self::abort) it resets it (RFC 9293 §3.10.5).
///
/// Errors: `ConnectionRefused` (a RST answered the SYN), `ConnectionReset` (the peer reset),
/// `TimedOut` (retransmissions or the user timeout gave up), `HostUnreachable` (an ICMP hard
/// error), `ConnectionAborted` (aborted here), `BrokenPipe` (a write after shutdown),
/// `NotConnected` (the connection never opened).
pub struct TcpStream {
    conn: Arc<ConnRef>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.conn.local)
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl TcpStream {
    fn from_parts(stack: Stack, id: ConnId, local: SocketAddr, peer: SocketAddr) -> TcpStream {
        TcpStream {
            conn: Arc::new(ConnRef {
                stack,
                id,
                local,
                peer,
                linger: Mutex::new(None),
                write_shut: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a connection from `stack` to `addr` (an active open, RFC 9293 §3.5) and waits for
    /// the handshake. The source address is the stack's first address of `addr`'s family, the
    /// port an ephemeral one (RFC 6056).
    pub async fn connect<A: ToSocketAddr>(stack: &Stack, addr: A) -> io::Result<TcpStream> {
        TcpStream::open(stack, addr, None).await
    }

    /// Opens a connection with TCP Fast Open (RFC 7413) and `data` as its first bytes, and
    /// waits for the handshake. With a cookie cached for the server (from an earlier
    /// connection to it), the SYN carries the cookie and as much of `data` as fits, and a Fast
    /// Open server reads it before the handshake completes: a repeat visit's request costs no
    /// round trip. Without one, the SYN asks for a cookie and `data` follows the handshake
    /// (RFC 7413 §4.1.3); so it does when the server ignores the data (§4.2.2). The stack's
    /// Fast Open client must be on (`Config::fast_open.client`, as Linux's default), else this
    /// is [`connect`](Self::connect) followed by a write of `data`.
    ///
    /// `data` must fit the send buffer (`Config::send_buffer`): it is queued before the SYN
    /// leaves. Returns the stream once the handshake completes, `data` queued or sent.
    pub async fn connect_with_data<A: ToSocketAddr>(
        stack: &Stack,
        addr: A,
        data: &[u8],
    ) -> io::Result<TcpStream> {
        TcpStream::open(stack, addr, Some(data)).await
    }

    /// Opens a connection with TCP Fast Open as Linux's `TCP_FASTOPEN_CONNECT` does: with a
    /// cookie cached for the server, it returns at once, and the SYN leaves with the first
    /// write's bytes (RFC 7413 §3), so a request written at once costs no round trip before
    /// it reaches a Fast Open server. Without a cookie it waits for the handshake, whose SYN
    /// asks for one (§4.1.1), as [`connect`](Self::connect) does.
    pub async fn connect_fast_open<A: ToSocketAddr>(
        stack: &Stack,
        addr: A,
    ) -> io::Result<TcpStream> {
        TcpStream::open_with(stack, addr, None, true).await
    }

    async fn open<A: ToSocketAddr>(
        stack: &Stack,
        addr: A,
        data: Option<&[u8]>,
    ) -> io::Result<TcpStream> {
        TcpStream::open_with(stack, addr, data, false).await
    }

    async fn open_with<A: ToSocketAddr>(
        stack: &Stack,
        addr: A,
        data: Option<&[u8]>,
        defer_syn: bool,
    ) -> io::Result<TcpStream> {
        let remote = addr.to_socket_addr()?;
        // On a stack of several shards the connection goes to the next shard in turn, from a
        // local port whose flow hashes to that shard, so that the SYN-ACK comes back to it.
        let stack = &stack.next_shard();
        let shards = (stack.workers() > 1).then(|| (stack.shard_index(), stack.workers()));
        let (id, local, deferred) = stack.with_host(|h, now| {
            let ip = h.iface.addr_for(remote.ip()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("the stack has no address of {remote}'s family"),
                )
            })?;
            let tcp = h.iface.tcp_mut();
            let options = ConnectOptions {
                fast_open: data.is_some() || defer_syn,
                defer_syn,
            };
            let id = match shards {
                None => tcp.connect_with(now, ip, None, remote, options),
                Some((shard, n)) => connect_on_shard(h, now, ip, remote, options, shard, n),
            }
            .map_err(connect_error)?;
            let tcp = h.iface.tcp_mut();
            if let Some(data) = data {
                // Queued before the driver polls the SYN out, so that the SYN may carry it.
                let queued = tcp.with_conn(now, id, |c| c.send(data));
                if queued != Some(Ok(data.len())) {
                    tcp.abort(id);
                    tcp.release(id);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the first data does not fit the send buffer",
                    ));
                }
            }
            let (local, deferred) = tcp
                .conn(id)
                .map(|c| (c.tuple().local, c.is_syn_deferred()))
                .ok_or_else(not_connected)?;
            Ok::<_, io::Error>((id, local, deferred))
        })??;
        stack.kick();
        // Made before waiting, so that a cancelled connect (a timeout) closes the connection.
        let stream = TcpStream::from_parts(stack.clone(), id, local, remote);
        if !deferred {
            poll_fn(|cx| stream.conn.poll_connected(cx)).await?;
        }
        Ok(stream)
    }

    /// As [`connect`](Self::connect), giving up after `timeout` with `TimedOut` (the
    /// half-open connection is then dropped).
    pub async fn connect_timeout<A: ToSocketAddr>(
        stack: &Stack,
        addr: A,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        match tokio::time::timeout(timeout, TcpStream::connect(stack, addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            )),
        }
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.local)
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.peer)
    }

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 §3.7.4; `TCP_NODELAY`).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        let id = self.conn.id;
        let r = self.conn.stack.with_host(|h, now| {
            h.iface
                .tcp_mut()
                .with_conn(now, id, |c| c.set_nodelay(nodelay))
        })?;
        self.conn.stack.kick();
        r.ok_or_else(not_connected)
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        let id = self.conn.id;
        self.conn
            .stack
            .with_host(|h, _| h.iface.tcp().conn(id).map(|c| c.nodelay()))?
            .ok_or_else(not_connected)
    }

    /// `SO_LINGER`: `Some(Duration::ZERO)` makes dropping the stream reset the connection
    /// instead of closing it. Other values are remembered but do not make the drop wait: the
    /// stack always finishes a graceful close in the background.
    pub fn set_linger(&self, dur: Option<Duration>) -> io::Result<()> {
        *self
            .conn
            .linger
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = dur;
        Ok(())
    }

    /// `SO_LINGER` of zero (tokio's name for it): dropping the stream resets the connection.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.set_linger(Some(Duration::ZERO))
    }

    /// The value set by [`set_linger`](Self::set_linger).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(*self
            .conn
            .linger
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Resets the connection now (RFC 9293 §3.10.5): a RST goes to the peer, whose reads and
    /// writes then fail with `ConnectionReset`; ours fail with `ConnectionAborted`.
    pub fn abort(&self) {
        self.conn.abort();
    }

    /// The connection's state (RFC 9293 §3.3.2), or `None` if the endpoint forgot it.
    pub fn state(&self) -> Option<State> {
        let id = self.conn.id;
        self.conn
            .stack
            .with_host_even_if_dead(|h, _| h.iface.tcp().conn(id).map(|c| c.state()))
    }

    /// The endpoint's handle of the connection (for [`Stack::with_interface`]).
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The stack the connection lives on.
    pub fn stack(&self) -> &Stack {
        &self.conn.stack
    }

    /// Splits the stream into halves borrowing it.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (
            ReadHalf { conn: &self.conn },
            WriteHalf { conn: &self.conn },
        )
    }

    /// Splits the stream into owned halves. Dropping the write half shuts the write side
    /// down, as tokio's does; the connection closes when both halves are gone.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf {
                conn: self.conn.clone(),
            },
            OwnedWriteHalf { conn: self.conn },
        )
    }
}

/// The read half of a [`TcpStream`], borrowed by [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a> {
    conn: &'a ConnRef,
}

/// The write half of a [`TcpStream`], borrowed by [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a> {
    conn: &'a ConnRef,
}

/// The read half of a [`TcpStream`], owned, from [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    conn: Arc<ConnRef>,
}

/// The write half of a [`TcpStream`], owned, from [`TcpStream::into_split`]. Dropping it
/// shuts the write side down (a FIN).
#[derive(Debug)]
pub struct OwnedWriteHalf {
    conn: Arc<ConnRef>,
}

impl fmt::Debug for ConnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

impl OwnedReadHalf {
    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.local)
    }
    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.peer)
    }
}

impl OwnedWriteHalf {
    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.local)
    }
    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.peer)
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if !self.conn.write_shut.load(Ordering::Relaxed) {
            let _ = self.conn.shutdown_write();
        }
    }
}

macro_rules! read_half {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.conn.poll_read(cx, buf)
            }
        }
    };
}

macro_rules! write_half {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.conn.poll_write(cx, buf)
            }
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.conn.shutdown_write())
            }
        }
    };
}

// The stream and its halves read and write through the same shared connection.
read_half!(TcpStream);
write_half!(TcpStream);
read_half!(ReadHalf<'_>);
read_half!(OwnedReadHalf);
write_half!(WriteHalf<'_>);
write_half!(OwnedWriteHalf);

/// A TCP listening socket on a [`Stack`], shaped like [`tokio::net::TcpListener`].
///
/// Connections are accepted once their handshake completes (RFC 9293 §3.5); up to 1024 wait
/// in the accept queue, and SYNs beyond the backlog are dropped. Dropping the listener resets
/// the connections not yet accepted.
pub struct TcpListener {
    stack: Stack,
    id: ListenerId,
    local: SocketAddr,
    /// The same listener on the other shards of a stack of several (each shard takes the
    /// connections whose flows hash to it).
    others: Vec<(Stack, ListenerId)>,
    /// The shard whose accept queue is looked at first (round robin).
    next: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr`: one of the stack's addresses or the unspecified address (every
    /// address of the family), and a port (0 picks a free one of the ephemeral range).
    pub async fn bind<A: ToSocketAddr>(stack: &Stack, addr: A) -> io::Result<TcpListener> {
        let addr = addr.to_socket_addr()?;
        let shards = stack.listen_shards();
        let stack = &shards[0];
        let (id, local) = stack.with_host(|h, _| {
            if !addr.ip().is_unspecified() && !h.iface.addrs().contains(&addr.ip()) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{} is not an address of this host", addr.ip()),
                ));
            }
            let bound = if addr.port() != 0 {
                if h.tcp_port_taken(addr) {
                    return Err(listen_error(ListenError::AddrInUse));
                }
                h.iface
                    .tcp_mut()
                    .listen(addr, BACKLOG)
                    .map(|id| (id, addr))
                    .map_err(listen_error)?
            } else {
                let first = u32::from(*EPHEMERAL_PORTS.start());
                let count = u32::from(*EPHEMERAL_PORTS.end() - *EPHEMERAL_PORTS.start()) + 1;
                let start = pick_start(addr.ip(), count);
                let mut found = None;
                for i in 0..count {
                    let port = (first + (start + i) % count) as u16;
                    let a = SocketAddr::new(addr.ip(), port);
                    if h.tcp_port_taken(a) {
                        continue;
                    }
                    if let Ok(id) = h.iface.tcp_mut().listen(a, BACKLOG) {
                        found = Some((id, a));
                        break;
                    }
                }
                found.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrInUse, "no free port to listen on")
                })?
            };
            h.tcp_bound.push(bound.1);
            Ok(bound)
        })??;
        let mut listener = TcpListener {
            stack: stack.clone(),
            id,
            local,
            others: Vec::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
        };
        for shard in shards.into_iter().skip(1) {
            let id = shard.with_host(|h, _| {
                if h.tcp_port_taken(local) {
                    return Err(listen_error(ListenError::AddrInUse));
                }
                let id = h
                    .iface
                    .tcp_mut()
                    .listen(local, BACKLOG)
                    .map_err(listen_error)?;
                h.tcp_bound.push(local);
                Ok(id)
            })??;
            listener.others.push((shard, id));
        }
        Ok(listener)
    }

    fn parts(&self) -> impl Iterator<Item = (&Stack, ListenerId)> {
        std::iter::once((&self.stack, self.id)).chain(self.others.iter().map(|(s, id)| (s, *id)))
    }

    /// Waits for the next connection whose handshake completed; returns it and the peer's
    /// address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Takes the next established connection, or registers the task to be woken when one is.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        if self.others.is_empty() {
            return Self::poll_accept_on(&self.stack, self.id, cx);
        }
        let n = self.others.len() + 1;
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let parts: Vec<_> = self.parts().collect();
        for i in 0..n {
            let (stack, lid) = parts[(first + i) % n];
            if let Poll::Ready(r) = Self::poll_accept_on(stack, lid, cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    }

    /// [`poll_accept`](Self::poll_accept) on one shard.
    fn poll_accept_on(
        stack: &Stack,
        lid: ListenerId,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let r = stack.with_host(|h, _| {
            let tcp = h.iface.tcp_mut();
            // A connection that completed its handshake and died before it was accepted (a
            // RST, a peer that gave up) is skipped, as Linux's accept() skips it: the
            // listener itself goes on.
            while let Some(id) = tcp.accept(lid) {
                match tcp.conn(id).map(|c| c.tuple()) {
                    Some(t) => return Ok(Some((id, t))),
                    None => tcp.release(id),
                }
            }
            if tcp.listener_addr(lid).is_none() {
                return Err(not_connected());
            }
            match h.listeners.get_mut(&lid) {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => {
                    h.listeners.insert(lid, cx.waker().clone());
                }
            }
            Ok(None)
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some((id, t)))) => Poll::Ready(Ok((
                TcpStream::from_parts(stack.clone(), id, t.local, t.remote),
                t.remote,
            ))),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Takes TCP Fast Open (RFC 7413) on this listener, with at most `qlen` connections still
    /// in their handshake having taken data from their SYN (RFC 7413 §5.1); 0 turns it off.
    /// Such connections are accepted at once, their first data readable, before the
    /// handshake's ACK. The stack's Fast Open server must be on (`Config::fast_open.server`).
    /// Linux's `TCP_FASTOPEN` socket option.
    pub fn set_fast_open(&self, qlen: usize) -> io::Result<()> {
        for (stack, id) in self.parts() {
            stack.with_host(|h, _| h.iface.tcp_mut().set_fast_open(id, qlen))?;
        }
        Ok(())
    }

    /// The stack the listener lives on.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
}

/// An active open on shard `shard` of `n`: RFC 6056's search of the ephemeral range (from a
/// per-destination offset plus a counter), keeping only the ports whose flow to `remote`
/// hashes to this shard (about one in `n`) and are free with `remote`.
fn connect_on_shard(
    h: &mut crate::net::host::Host,
    now: synack_tcp::Instant,
    ip: IpAddr,
    remote: SocketAddr,
    options: ConnectOptions,
    shard: usize,
    n: usize,
) -> Result<ConnId, ConnectError> {
    let first = u32::from(*EPHEMERAL_PORTS.start());
    let count = u32::from(*EPHEMERAL_PORTS.end() - *EPHEMERAL_PORTS.start()) + 1;
    let offset = pick_start(remote.ip(), count) ^ u32::from(remote.port());
    let start = offset.wrapping_add(h.port_cursor);
    for i in 0..count {
        let port = (first + start.wrapping_add(i) % count) as u16;
        let local = SocketAddr::new(ip, port);
        if crate::net::shard_of(local, remote, n) != shard || h.tcp_port_taken(local) {
            continue;
        }
        match h
            .iface
            .tcp_mut()
            .connect_with(now, ip, Some(port), remote, options)
        {
            Err(ConnectError::AddrInUse) => continue,
            r => {
                h.port_cursor = h.port_cursor.wrapping_add(i + 1);
                return r;
            }
        }
    }
    Err(ConnectError::AddrInUse)
}

/// Where to start looking for a free port: varies with the address so that two listeners
/// asking for port 0 at once do not collide on the first try.
fn pick_start(ip: IpAddr, count: u32) -> u32 {
    let seed = match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a) as u64,
    };
    (crate::sim::rng::mix64(seed) % u64::from(count)) as u32
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let local = self.local;
        for (stack, id) in self.parts() {
            stack.with_host_even_if_dead(|h, _| {
                h.listeners.remove(&id);
                if let Some(i) = h.tcp_bound.iter().position(|a| *a == local) {
                    h.tcp_bound.swap_remove(i);
                }
                h.iface.tcp_mut().unlisten(id);
            });
            stack.kick();
        }
    }
}
