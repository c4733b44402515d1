//! UDP sockets for the async driver, shaped like [`tokio::net::UdpSocket`], over the sans-IO
//! UDP table of the host's [`Interface`](crate::Interface) ([`crate::udp`]): datagrams by
//! 4-tuple, ICMP port unreachable for closed ports, ICMP errors delivered to connected
//! sockets as `ECONNREFUSED` (RFC 1122 §4.1.3.3). This layer only keeps the wakers of the
//! tasks waiting on the sockets.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

pub use crate::udp::{Coalesced, UdpStats};

use crate::net::host::register;
use crate::net::{Stack, ToSocketAddr};
use crate::udp::UdpTable;

/// The wakers of the tasks waiting on a host's UDP sockets.
#[derive(Default)]
pub(crate) struct UdpLayer {
    readers: BTreeMap<SocketAddr, Waker>,
    send_waiters: Vec<Waker>,
}

impl UdpLayer {
    pub(crate) fn wake_ready(&mut self, table: &UdpTable) {
        self.readers.retain(|local, w| {
            if table.readable(*local) {
                w.wake_by_ref();
                false
            } else {
                true
            }
        });
        if table.writable() {
            for w in self.send_waiters.drain(..) {
                w.wake();
            }
        }
    }

    pub(crate) fn wake_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.readers) {
            w.wake();
        }
        for w in self.send_waiters.drain(..) {
            w.wake();
        }
    }
}

/// A UDP socket on a [`Stack`], shaped like [`tokio::net::UdpSocket`].
///
/// Datagrams are never fragmented: a payload that does not fit the interface MTU is refused
/// with `InvalidInput`. A datagram longer than the buffer given to `recv_from` is truncated,
/// as with the kernel's sockets.
pub struct UdpSocket {
    stack: Stack,
    local: SocketAddr,
    peer: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .finish()
    }
}

impl UdpSocket {
    /// Binds to `addr` on `stack`: one of its addresses or the unspecified address of a
    /// family, and a port (0 picks a free ephemeral port).
    pub async fn bind<A: ToSocketAddr>(stack: &Stack, addr: A) -> io::Result<UdpSocket> {
        let addr = addr.to_socket_addr()?;
        // UDP lives on the first shard, where every shard's queue steers it.
        let stack = &stack.shard(0);
        let local = stack.with_host(|h, _| h.iface.udp_mut().bind(addr))??;
        Ok(UdpSocket {
            stack: stack.clone(),
            local,
            peer: Mutex::new(None),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The peer set by [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Sets the default destination of [`send`](Self::send) and receives only from it.
    pub async fn connect<A: ToSocketAddr>(&self, addr: A) -> io::Result<()> {
        let addr = addr.to_socket_addr()?;
        if addr.is_ipv4() != self.local.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address family differs from the socket's",
            ));
        }
        let local = self.local;
        self.stack
            .with_host(|h, _| h.iface.udp_mut().connect(local, addr))??;
        *self
            .peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
        Ok(())
    }

    /// Sends `buf` as one datagram to `target`; returns its length.
    pub async fn send_to<A: ToSocketAddr>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = target.to_socket_addr()?;
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }

    /// Sends `buf` to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        poll_fn(|cx| self.poll_send_to(cx, buf, peer)).await
    }

    /// Receives one datagram into `buf` (truncating it to `buf`'s length) and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from_slice(cx, buf)).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peer_addr()?;
        poll_fn(|cx| self.poll_recv_from_slice(cx, buf))
            .await
            .map(|(n, _)| n)
    }

    /// Sends one datagram now, or fails with `WouldBlock` while the driver has no room.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let local = self.local;
        let n = self
            .stack
            .with_host(|h, _| h.iface.udp_mut().send_to(local, target, buf))??;
        self.stack.kick();
        Ok(n)
    }

    /// Sends one datagram, or registers the task to be woken when the driver has room.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let local = self.local;
        let r = self
            .stack
            .with_host(|h, _| match h.iface.udp_mut().send_to(local, target, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    h.udp.send_waiters.push(cx.waker().clone());
                    Ok(None)
                }
                Err(e) => Err(e),
                Ok(n) => Ok(Some(n)),
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

    fn poll_recv_from_slice(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut out = [None];
        match self.poll_recv_coalesced(cx, &mut [IoSliceMut::new(buf)], 1, &mut out) {
            Poll::Ready(Ok(_)) => {
                let c = out[0].expect("one run received");
                Poll::Ready(Ok((c.len, c.from)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Receives what is queued, under one lock of the stack: into each buffer of `bufs` in
    /// turn a run of up to `max_segments` datagrams of one 4-tuple and one size (see
    /// [`UdpTable::recv_coalesced`]), described in the same slot of `out`; returns how many
    /// buffers were filled, or registers the task to be woken when a datagram arrives. A
    /// pending ICMP error is returned once, when it is first in line (after the datagrams
    /// received before it).
    pub fn poll_recv_coalesced(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        max_segments: usize,
        out: &mut [Option<Coalesced>],
    ) -> Poll<io::Result<usize>> {
        let local = self.local;
        let slots = bufs.len().min(out.len());
        let max_segments = max_segments.max(1);
        let r = self.stack.with_host(|h, _| {
            let table = h.iface.udp_mut();
            let mut n = 0;
            while n < slots {
                if n > 0 && table.error_pending(local) {
                    break;
                }
                match table.recv_coalesced(local, &mut bufs[n], max_segments) {
                    Ok(c) => {
                        out[n] = Some(c);
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if n == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            if n == 0 && slots > 0 {
                let mut slot = h.udp.readers.remove(&local);
                register(&mut slot, cx.waker());
                h.udp.readers.extend(slot.map(|w| (local, w)));
            }
            Ok(n)
        });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(0)) if slots > 0 => Poll::Pending,
            Ok(Ok(n)) => Poll::Ready(Ok(n)),
        }
    }

    /// Receives one whole datagram (with its source and destination addresses), or registers
    /// the task to be woken when one arrives. A pending ICMP error is returned once instead.
    pub fn poll_recv_datagram(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<crate::udp::Datagram>> {
        let local = self.local;
        let r = self
            .stack
            .with_host(|h, _| match h.iface.udp_mut().recv(local) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut slot = h.udp.readers.remove(&local);
                    register(&mut slot, cx.waker());
                    h.udp.readers.extend(slot.map(|w| (local, w)));
                    Ok(None)
                }
                Err(e) => Err(e),
                Ok(d) => Ok(Some(d)),
            });
        match r {
            Err(e) | Ok(Err(e)) => Poll::Ready(Err(e)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Ok(Some(v))) => Poll::Ready(Ok(v)),
        }
    }

    /// Whether a send would be taken now, or registers the task to be woken when one would.
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.stack.with_host(|h, _| {
            if h.iface.udp().writable() {
                true
            } else {
                h.udp.send_waiters.push(cx.waker().clone());
                false
            }
        });
        match r {
            Err(e) => Poll::Ready(Err(e)),
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => Poll::Pending,
        }
    }

    /// The stack this socket lives on.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Receives one datagram into `buf`, or registers the task to be woken when one arrives.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        match self.poll_recv_from_slice(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok((n, from))) => {
                buf.advance(n);
                Poll::Ready(Ok(from))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let local = self.local;
        self.stack.with_host_even_if_dead(|h, _| {
            h.iface.udp_mut().unbind(local);
            if let Some(w) = h.udp.readers.remove(&local) {
                w.wake();
            }
        });
    }
}
