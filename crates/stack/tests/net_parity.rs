//! Compile-only parity with `tokio::net` (in the style of turmoil's): every method our
//! `TcpStream`, `TcpListener` and `UdpSocket` offer under a tokio name has tokio's signature,
//! so code written against tokio's sockets compiles against ours unchanged, apart from the
//! constructors, which take the `&Stack` first.
#![allow(dead_code, deprecated, clippy::type_complexity)]

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use synack_stack::net as ours;
use tokio::io::ReadBuf;
use tokio::net as theirs;

/// `$ty::$m` coerces to the same function pointer type `$sig` for both, where `S` names the
/// socket type and `T` the stream type of that side.
macro_rules! same_signature {
    ($ty:ident :: $m:ident : $sig:ty) => {{
        {
            #[allow(unused)]
            type S = ours::$ty;
            #[allow(unused)]
            type T = ours::TcpStream;
            let _: $sig = ours::$ty::$m;
        }
        {
            #[allow(unused)]
            type S = theirs::$ty;
            #[allow(unused)]
            type T = theirs::TcpStream;
            let _: $sig = theirs::$ty::$m;
        }
    }};
}

#[test]
fn signatures() {
    same_signature!(TcpStream::local_addr: fn(&S) -> io::Result<SocketAddr>);
    same_signature!(TcpStream::peer_addr: fn(&S) -> io::Result<SocketAddr>);
    same_signature!(TcpStream::set_nodelay: fn(&S, bool) -> io::Result<()>);
    same_signature!(TcpStream::nodelay: fn(&S) -> io::Result<bool>);
    same_signature!(TcpStream::set_linger: fn(&S, Option<Duration>) -> io::Result<()>);
    same_signature!(TcpStream::set_zero_linger: fn(&S) -> io::Result<()>);
    same_signature!(TcpStream::linger: fn(&S) -> io::Result<Option<Duration>>);
    same_signature!(TcpListener::local_addr: fn(&S) -> io::Result<SocketAddr>);
    same_signature!(
        TcpListener::poll_accept: fn(&S, &mut Context<'_>) -> Poll<io::Result<(T, SocketAddr)>>
    );
    same_signature!(UdpSocket::local_addr: fn(&S) -> io::Result<SocketAddr>);
    same_signature!(UdpSocket::peer_addr: fn(&S) -> io::Result<SocketAddr>);
    same_signature!(
        UdpSocket::poll_send_to:
            fn(&S, &mut Context<'_>, &[u8], SocketAddr) -> Poll<io::Result<usize>>
    );
    same_signature!(
        UdpSocket::poll_recv_from:
            fn(&S, &mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<SocketAddr>>
    );
}

/// The same code, word for word, compiled once against each side's types.
macro_rules! same_code {
    ($($body:tt)*) => {
        mod on_ours {
            #![allow(unused)]
            use super::*;
            type TcpStream = ours::TcpStream;
            type TcpListener = ours::TcpListener;
            type UdpSocket = ours::UdpSocket;
            $($body)*
        }
        mod on_tokio {
            #![allow(unused)]
            use super::*;
            type TcpStream = theirs::TcpStream;
            type TcpListener = theirs::TcpListener;
            type UdpSocket = theirs::UdpSocket;
            $($body)*
        }
    };
}

same_code! {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    fn is_io<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static>(_: &S) {}
    fn is_send_sync<S: Send + Sync + 'static>(_: &S) {}

    pub async fn stream(mut s: TcpStream) -> io::Result<()> {
        is_io(&s);
        let _: SocketAddr = s.local_addr()?;
        let _: SocketAddr = s.peer_addr()?;
        s.set_nodelay(true)?;
        let _: bool = s.nodelay()?;
        s.write_all(b"request").await?;
        s.flush().await?;
        let mut buf = [0u8; 16];
        let _: usize = s.read(&mut buf).await?;
        {
            let (mut r, mut w) = s.split();
            w.write_all(b"x").await?;
            r.read_exact(&mut buf[..1]).await?;
        }
        let (mut r, mut w) = s.into_split();
        let _: SocketAddr = r.peer_addr()?;
        let _: SocketAddr = w.local_addr()?;
        w.write_all(b"x").await?;
        w.shutdown().await?;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await?;
        Ok(())
    }

    pub async fn listener(l: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        is_send_sync(l);
        let _: SocketAddr = l.local_addr()?;
        let (s, peer) = l.accept().await?;
        s.set_zero_linger()?;
        Ok((s, peer))
    }

    pub async fn udp(u: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
        is_send_sync(u);
        let (n, from) = u.recv_from(buf).await?;
        let _: usize = u.send_to(&buf[..n], from).await?;
        u.connect(from).await?;
        let _: SocketAddr = u.peer_addr()?;
        let _: usize = u.send(b"x").await?;
        let _: usize = u.recv(buf).await?;
        Ok(())
    }
}

/// The constructors: ours take the stack first, then what tokio's take.
async fn constructors(stack: &ours::Stack, addr: SocketAddr) -> io::Result<()> {
    let _: ours::TcpListener = ours::TcpListener::bind(stack, addr).await?;
    let _: theirs::TcpListener = theirs::TcpListener::bind(addr).await?;
    let _: ours::TcpStream = ours::TcpStream::connect(stack, addr).await?;
    let _: theirs::TcpStream = theirs::TcpStream::connect(addr).await?;
    let _: ours::UdpSocket = ours::UdpSocket::bind(stack, addr).await?;
    let _: theirs::UdpSocket = theirs::UdpSocket::bind(addr).await?;
    // Strings too (literal addresses; no name resolution on our side).
    let _ = ours::TcpStream::connect(stack, "198.18.0.2:80").await?;
    let _ = theirs::TcpStream::connect("198.18.0.2:80").await?;
    Ok(())
}
