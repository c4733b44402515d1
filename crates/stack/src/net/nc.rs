//! `synack listen` and `synack connect`: netcat over a TUN device, as library functions the
//! CLI calls.
//!
//! `listen` creates the TUN device, gives the kernel's side of it the first host address of
//! the subnet (or `peer_ip`), takes `ip` for the synack stack, and serves on `ip:port`: by
//! default it echoes what each connection sends, for any number of connections; with `stdio`
//! it accepts one connection, writes its standard input to it and prints what arrives, as
//! netcat does. `connect` is the client side, always on standard input and output.
//!
//! ```text
//! synack listen  --tun tun0 --ip 198.18.0.2/24 --port 7000
//! synack connect --tun tun0 --ip 198.18.0.2/24 198.18.0.1:7000
//! ```

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use synack_tcp::time::Duration;
use synack_tcp::{Config, TraceEvent};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::net::{Stack, StackConfig, TcpListener, TcpStream};
use crate::pcap::{LiveFile, PcapWriter};
use crate::tun::{TunConfig, TunDevice, TunOptions};

/// How long the commands wait, before returning, for closing connections to finish.
const LINGER: Duration = Duration::from_secs(10);

/// An address with its prefix length: `198.18.0.2/24`, `2001:2::2/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<Cidr> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{s:?} is not ADDRESS/PREFIX (e.g. 198.18.0.2/24)"),
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn same_family(&self, v: u128) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    /// The `n`th address of the subnet (0 is the network address), if the subnet has it.
    /// The IPv4 broadcast address is not a host.
    pub fn host(&self, n: u128) -> Option<IpAddr> {
        let host_bits = self.bits() - u32::from(self.prefix);
        let size = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let usable_end = if self.addr.is_ipv4() && host_bits >= 2 {
            size - 1
        } else {
            size
        };
        if n == 0 || n >= usable_end {
            return None;
        }
        let mask = if host_bits >= 128 { 0 } else { !(size - 1) };
        Some(self.same_family((Self::to_u128(self.addr) & mask) + n))
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let host_bits = self.bits() - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        Self::to_u128(ip) & mask == Self::to_u128(self.addr) & mask
    }

    /// The kernel side's address when none is given: the first host address of the subnet,
    /// or the second if the first is ours.
    pub fn default_peer(&self) -> io::Result<IpAddr> {
        let first = self.host(1);
        let pick = if first == Some(self.addr) {
            self.host(2)
        } else {
            first
        };
        pick.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{self} has no room for the kernel's address: give --peer-ip"),
            )
        })
    }
}

/// The TUN side of both commands.
#[derive(Debug, Clone)]
pub struct TunOpts {
    /// The TUN device to create or attach to (`--tun`).
    pub tun: String,
    /// The synack stack's address and the subnet (`--ip 198.18.0.2/24`).
    pub ip: Cidr,
    /// The kernel side's address (`--peer-ip`); default [`Cidr::default_peer`].
    pub peer_ip: Option<IpAddr>,
    /// The device's and the stack's MTU.
    pub mtu: u16,
    /// Capture what the stack sends and receives (`--pcap FILE`).
    pub pcap: Option<PathBuf>,
    /// Print each connection's state changes to standard error (`-v`).
    pub verbose: bool,
    /// How the device moves packets (batches, offloads); one packet per system call by
    /// default.
    pub device: TunOptions,
    /// Workers (`--workers`): shards of the stack, each on its own queue of a multiqueue TUN
    /// device (`IFF_MULTI_QUEUE`); 1 by default.
    pub workers: usize,
}

impl TunOpts {
    /// `tun` with `ip`, MTU 1500, no capture, quiet.
    pub fn new(tun: &str, ip: Cidr) -> TunOpts {
        TunOpts {
            tun: tun.to_owned(),
            ip,
            peer_ip: None,
            mtu: 1500,
            pcap: None,
            verbose: false,
            device: TunOptions::default(),
            workers: 1,
        }
    }
}

/// Options of `synack listen`.
#[derive(Debug, Clone)]
pub struct ListenOpts {
    pub tun: TunOpts,
    /// The port to serve on (`--port`).
    pub port: u16,
    /// Serve one connection on standard input and output instead of echoing (`--stdio`).
    pub stdio: bool,
    /// Stop after this many connections have been served (`None`: serve forever).
    pub max_conns: Option<usize>,
}

/// Options of `synack connect`.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    pub tun: TunOpts,
    /// Where to connect.
    pub remote: SocketAddr,
    /// How long the handshake may take.
    pub timeout: Duration,
}

/// Whether this process runs in the host's initial network namespace: the one whose inode
/// Linux numbers `PROC_NET_INIT_INO` (0xEFFFFFF9, fixed since Linux 3.8), or, where that
/// is not it (a container's), the one pid 1 is in, when pid 1's can be read.
pub fn in_root_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let Some(own) = ns("/proc/thread-self/ns/net") else {
        return false;
    };
    own.1 == PROC_NET_INIT_INO || ns("/proc/1/ns/net") == Some(own)
}

/// Creates the TUN device of `opts` and a stack over it, with the capture and the state
/// printing asked for.
pub fn open_stack(opts: &TunOpts) -> io::Result<Stack> {
    if in_root_netns() {
        eprintln!(
            "synack: warning: the TUN device {} is made in the host's own network namespace; \
             run synack inside one of your own (`ip netns add NAME`, then `ip netns exec NAME \
             synack ...`) to keep its addresses off the host's network",
            opts.tun
        );
    }
    let peer = match opts.peer_ip {
        Some(p) => p,
        None => opts.ip.default_peer()?,
    };
    if peer == opts.ip.addr || peer.is_ipv4() != opts.ip.addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the kernel's address {peer} must differ from {} and be of its family",
                opts.ip.addr
            ),
        ));
    }
    let workers = opts.workers.max(1);
    let queues = TunDevice::create_queues(
        &TunConfig {
            name: opts.tun.clone(),
            mtu: opts.mtu,
            addrs: vec![(peer, opts.ip.prefix)],
        },
        opts.device,
        workers,
    )?;
    let mut config = StackConfig::new(&[opts.ip.addr]);
    config.workers = workers;
    config.tcp = Config {
        mtu: usize::from(opts.mtu),
        ..Config::default()
    };
    if let Some(path) = &opts.pcap {
        // Written by a thread of its own, whole records within 100 ms: the file can be read
        // while the command runs, and holds everything up to a signal that stops it.
        let file = LiveFile::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating the capture {}: {e}", path.display()),
            )
        })?;
        let w: Box<dyn Write + Send> = Box::new(file);
        config.pcap = Some(PcapWriter::new(w)?);
    }
    let stack = Stack::new_multiqueue(queues, config)?;
    if opts.verbose {
        for shard in stack.shards() {
            shard.set_trace_hook(Some(Box::new(|r| {
                if let TraceEvent::State { tuple, from, to } = r.event {
                    // A closed standard error must not bring the stack down.
                    let _ = writeln!(io::stderr(), "{} {tuple}: {from} -> {to}", r.time);
                }
            })));
        }
    }
    Ok(stack)
}

/// How long closing connections get, after a stop, before the command returns anyway.
const STOP_LINGER: Duration = Duration::from_secs(1);

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It did what it was asked.
    Done,
    /// The stop future completed first (a signal, say); its connections were closed.
    Stopped,
}

/// `e` with the address it is about: "listening on 198.18.0.2:80: address in use".
pub fn naming(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("listening on {addr}: {e}"))
}

/// `synack listen`. See the [module documentation](self).
pub async fn listen(opts: ListenOpts) -> io::Result<()> {
    listen_until(opts, std::future::pending()).await.map(|_| ())
}

/// `synack listen` until `stop` completes: then the connections are closed (given a second
/// to finish), the capture is flushed, and it returns [`Ended::Stopped`].
pub async fn listen_until(opts: ListenOpts, stop: impl Future<Output = ()>) -> io::Result<Ended> {
    let stack = open_stack(&opts.tun)?;
    let work = async {
        let listener = TcpListener::bind(&stack, SocketAddr::new(opts.tun.ip.addr, opts.port))
            .await
            .map_err(|e| naming(SocketAddr::new(opts.tun.ip.addr, opts.port), e))?;
        if opts.tun.verbose {
            let _ = writeln!(io::stderr(), "listening on {}", listener.local_addr()?);
        }
        if opts.stdio {
            let (s, peer) = listener.accept().await?;
            if opts.tun.verbose {
                let _ = writeln!(io::stderr(), "connection from {peer}");
            }
            drop(listener);
            pipe(s, Stdin::spawn(), io::stdout()).await
        } else {
            serve_echo(&listener, opts.max_conns).await
        }
    };
    finish(&stack, work, stop).await
}

/// Runs `work` until it ends or `stop` completes, lets the closes finish (FINs sent and
/// acknowledged) before the caller's runtime goes, and flushes the capture.
async fn finish(
    stack: &Stack,
    work: impl Future<Output = io::Result<()>>,
    stop: impl Future<Output = ()>,
) -> io::Result<Ended> {
    let (r, ended) = tokio::select! {
        r = work => (r, Ended::Done),
        () = stop => (Ok(()), Ended::Stopped),
    };
    let linger = match ended {
        Ended::Done => LINGER,
        Ended::Stopped => STOP_LINGER,
    };
    stack.wait_idle(linger).await;
    let flushed = stack.flush_pcap();
    r.and(flushed).map(|()| ended)
}

/// `synack connect`. See the [module documentation](self).
pub async fn connect(opts: ConnectOpts) -> io::Result<()> {
    connect_until(opts, std::future::pending())
        .await
        .map(|_| ())
}

/// `synack connect` until `stop` completes (as [`listen_until`]).
pub async fn connect_until(opts: ConnectOpts, stop: impl Future<Output = ()>) -> io::Result<Ended> {
    let stack = open_stack(&opts.tun)?;
    let work = async {
        let s = TcpStream::connect_timeout(&stack, opts.remote, opts.timeout).await?;
        if opts.tun.verbose {
            let _ = writeln!(io::stderr(), "connected to {}", opts.remote);
        }
        pipe(s, Stdin::spawn(), io::stdout()).await
    };
    finish(&stack, work, stop).await
}

/// Echoes every connection of `listener` back to its sender until the sender half-closes,
/// then half-closes too. Serves connections concurrently; returns after `max` of them have
/// finished (never, with `None`), or on an accept error.
pub async fn serve_echo(listener: &TcpListener, max: Option<usize>) -> io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut accepted = 0usize;
    while max.is_none_or(|m| accepted < m) {
        tokio::select! {
            r = listener.accept() => {
                let (s, _) = r?;
                accepted += 1;
                tasks.spawn(echo(s));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Writes back everything `s` reads, then half-closes once the peer has.
pub async fn echo(s: TcpStream) -> io::Result<u64> {
    let (mut rd, mut wr) = s.into_split();
    let n = tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await?;
    Ok(n)
}

/// netcat's loop: `input` goes to the connection (half-closed at its end), what arrives goes
/// to `output`, until both directions are done.
pub async fn pipe<R, W>(s: TcpStream, mut input: R, mut output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: Write,
{
    let (mut rd, mut wr) = s.into_split();
    let up = async {
        tokio::io::copy(&mut input, &mut wr).await?;
        wr.shutdown().await
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return output.flush();
            }
            output.write_all(&buf[..n])?;
        }
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

/// Standard input as an `AsyncRead`, read by a thread of its own (tokio's `io-std` is not
/// among this crate's features, and stdin cannot be made non-blocking portably).
pub struct Stdin {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Stdin {
    /// Starts the reading thread.
    pub fn spawn() -> Stdin {
        let (tx, rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Stdin {
            rx,
            pending: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.pending.len() {
                let n = (self.pending.len() - self.pos).min(buf.remaining());
                let start = self.pos;
                buf.put_slice(&self.pending[start..start + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(v))) => {
                    self.pending = v;
                    self.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => self.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts() {
        let c: Cidr = "198.18.0.2/24".parse().unwrap();
        assert_eq!(
            c.default_peer().unwrap(),
            "198.18.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.host(254), Some("198.18.0.254".parse().unwrap()));
        assert_eq!(c.host(255), None); // broadcast
        let me: Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(
            me.default_peer().unwrap(),
            "198.18.0.2".parse::<IpAddr>().unwrap()
        );
        let v6: Cidr = "2001:2::2/64".parse().unwrap();
        assert_eq!(
            v6.default_peer().unwrap(),
            "2001:2::1".parse::<IpAddr>().unwrap()
        );
        assert!(v6.contains("2001:2::ffff".parse().unwrap()));
        assert!(!c.contains("198.19.0.1".parse().unwrap()));
        let host: Cidr = "198.18.0.2/32".parse().unwrap();
        assert!(host.default_peer().is_err());
        assert!("198.18.0.2/33".parse::<Cidr>().is_err());
        assert!("198.18.0.2".parse::<Cidr>().is_err());
    }
}
