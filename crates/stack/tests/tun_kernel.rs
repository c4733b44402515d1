//! synack against the Linux kernel's TCP, over a TUN device inside a network namespace each
//! test makes for itself (root and /dev/net/tun needed: skipped with a message otherwise,
//! failed when CI=true).
//!
//! In the namespace, `synack0` is a TUN device whose kernel side is 198.18.0.1/24 and
//! 2001:2::1/64; the synack stack is 198.18.0.2 and 2001:2::2. Every wait is bounded.
//! `SYNACK_TUN_MIB` sets the bytes sent each way by the transfer tests (default 100 MiB).

mod tun_support;

use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use synack_stack::net::{nc, Stack, StackConfig, TcpListener, TcpStream};
use synack_stack::sim::PathConfig;
use synack_stack::tun::{TunConfig, TunDevice, TunOptions};
use synack_tcp::{Config, State};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tun_support::{
    asynch, check, have_tool, pattern_buf, privileged, read_pattern, signalled, wait_for,
    wait_until, write_pattern, write_pattern_range, Netns,
};

const TUN: &str = "synack0";
const KERNEL_V4: &str = "198.18.0.1";
const OURS_V4: &str = "198.18.0.2";
const KERNEL_V6: &str = "2001:2::1";
const OURS_V6: &str = "2001:2::2";
/// Bound of any single wait.
const WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn kernel(self) -> IpAddr {
        match self {
            Fam::V4 => KERNEL_V4.parse().unwrap(),
            Fam::V6 => KERNEL_V6.parse().unwrap(),
        }
    }
    fn ours(self) -> IpAddr {
        match self {
            Fam::V4 => OURS_V4.parse().unwrap(),
            Fam::V6 => OURS_V6.parse().unwrap(),
        }
    }
}

fn transfer_bytes() -> u64 {
    let mib: u64 = std::env::var("SYNACK_TUN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    mib << 20
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The TUN device and a stack over it, inside the current namespace.
fn open_stack(impair: Option<PathConfig>) -> Stack {
    open_stack_with(impair, TunOptions::default())
}

fn open_stack_with(impair: Option<PathConfig>, options: TunOptions) -> Stack {
    let dev = TunDevice::create_with(
        &TunConfig {
            name: TUN.into(),
            mtu: 1500,
            addrs: vec![
                (KERNEL_V4.parse().unwrap(), 24),
                (KERNEL_V6.parse().unwrap(), 64),
            ],
        },
        options,
    )
    .expect("create the TUN device");
    assert_eq!(dev.name(), TUN);
    // The device is up when the kernel can use its addresses (an IPv6 one takes a moment).
    wait_for(
        "the kernel's addresses on the TUN device",
        Duration::from_secs(10),
        || {
            [KERNEL_V4, KERNEL_V6].iter().all(|a| {
                std::net::TcpListener::bind(SocketAddr::new(a.parse().unwrap(), 0)).is_ok()
            })
        },
    );
    let mut config = StackConfig::new(&[OURS_V4.parse().unwrap(), OURS_V6.parse().unwrap()]);
    config.tcp = Config::default();
    if let Some(p) = impair {
        config.impair_rx = Some(p.clone());
        config.impair_tx = Some(p);
        config.impair_seed = 4;
    }
    Stack::new(dev, config).expect("stack")
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {WAIT:?}"),
    }
}

/// Waits in async code for a kernel-side thread's signal that an event happened there.
async fn bounded_signal(what: &str, rx: std::sync::mpsc::Receiver<()>) {
    let what2 = what.to_owned();
    bounded(
        what,
        tokio::task::spawn_blocking(move || signalled(&what2, &rx, WAIT)),
    )
    .await
    .unwrap();
}

/// A kernel client of `to` that signals once its connect has returned, then blocks reading:
/// the read must fail (the test resets the connection).
fn reader_of_reset(
    to: SocketAddr,
) -> (
    std::thread::JoinHandle<io::Result<()>>,
    std::sync::mpsc::Receiver<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        tx.send(()).unwrap();
        let mut buf = [0u8; 16];
        s.read(&mut buf).map(|_| ())
    });
    (h, rx)
}

/// Joins a kernel-side thread from async code.
async fn join<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    bounded(
        "kernel thread",
        tokio::task::spawn_blocking(move || h.join().expect("kernel thread panicked")),
    )
    .await
    .unwrap()
}

/// The kernel side of a transfer: send `total` bytes of the pattern and half-close, while
/// reading (and checking) the peer's bytes to their end. Returns the bytes received.
fn kernel_exchange(s: std::net::TcpStream, total: u64) -> io::Result<u64> {
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || -> io::Result<()> {
        write_pattern(&mut w, total)?;
        w.shutdown(Shutdown::Write)
    });
    let got = read_pattern(&mut &s)?;
    writer.join().expect("writer panicked")?;
    Ok(got)
}

/// synack's side of the same.
async fn synack_exchange(s: TcpStream, total: u64) -> io::Result<u64> {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        asynch::write_pattern(&mut wr, total).await?;
        wr.shutdown().await?;
        Ok::<_, io::Error>(wr)
    });
    let got = asynch::read_pattern(&mut rd).await?;
    let wr = writer.await.expect("writer panicked")?;
    drop((rd, wr));
    Ok(got)
}

/// A kernel client to a synack listener, then a synack client to a kernel listener: each
/// moves `total` bytes each way, checked byte for byte, and half-closes after sending while
/// reading on to the peer's FIN.
fn transfer(fam: Fam, impair: Option<PathConfig>, tag: &str) {
    transfer_with(fam, impair, tag, TunOptions::default())
}

fn transfer_with(fam: Fam, impair: Option<PathConfig>, tag: &str, options: TunOptions) {
    let total = transfer_bytes();
    let ns = Netns::new(tag);
    let tag = tag.to_owned();
    ns.run(move || {
        runtime().block_on(async move {
            let impaired = impair.is_some();
            let stack = open_stack_with(impair, options);
            // Kernel client → synack listener.
            let listener = TcpListener::bind(&stack, (fam.ours(), 7000)).await.unwrap();
            let to = SocketAddr::new(fam.ours(), 7000);
            let client = std::thread::spawn(move || {
                let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
                kernel_exchange(s, total)
            });
            let (s, peer) = bounded("accept", listener.accept()).await.unwrap();
            assert_eq!(peer.ip(), fam.kernel());
            let got = bounded("synack side", synack_exchange(s, total))
                .await
                .unwrap();
            assert_eq!(got, total, "kernel → synack");
            assert_eq!(join(client).await.unwrap(), total, "synack → kernel");

            // synack client → kernel listener.
            let kl = std::net::TcpListener::bind(SocketAddr::new(fam.kernel(), 7001)).unwrap();
            let server = std::thread::spawn(move || {
                let (s, _) = kl.accept()?;
                kernel_exchange(s, total)
            });
            let s = bounded("connect", TcpStream::connect(&stack, (fam.kernel(), 7001)))
                .await
                .unwrap();
            assert_eq!(s.local_addr().unwrap().ip(), fam.ours());
            let got = bounded("synack side", synack_exchange(s, total))
                .await
                .unwrap();
            assert_eq!(got, total, "kernel → synack");
            assert_eq!(join(server).await.unwrap(), total, "synack → kernel");
            let st = stack.tcp_stats();
            let dev = stack.device_stats().unwrap();
            let ifs = stack.iface_stats();
            eprintln!(
                "{fam:?} {tag}: tcp {st:?}\ndevice {dev:?}\niface {ifs:?}\nimpairment {:?}",
                stack.impairment_stats()
            );
            if options.offload {
                // The kernel's GSO packets reached TCP whole (through the receive impairment
                // too), and without a send impairment synack sent super-segments (TSO).
                assert!(ifs.rx_super_segments > 0, "no super-segment received whole");
                if !impaired {
                    assert!(ifs.tx_super_segments > 0, "no super-segment sent");
                }
            }
        })
    });
}

fn set_linger_zero(s: &std::net::TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// Refused connections both ways, and resets both ways.
fn abort_and_refused(fam: Fam, tag: &str) {
    let ns = Netns::new(tag);
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack(None);
            // Kernel → a closed synack port: our RST makes it ECONNREFUSED.
            let closed = SocketAddr::new(fam.ours(), 7999);
            let e =
                std::net::TcpStream::connect_timeout(&closed, Duration::from_secs(10)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            // synack → a closed kernel port: the kernel's RST.
            let e = bounded("connect", TcpStream::connect(&stack, (fam.kernel(), 7999)))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

            // synack aborts: the kernel's read gets ECONNRESET.
            let listener = TcpListener::bind(&stack, (fam.ours(), 7000)).await.unwrap();
            let to = SocketAddr::new(fam.ours(), 7000);
            let (client, connected) = reader_of_reset(to);
            let (s, _) = bounded("accept", listener.accept()).await.unwrap();
            // The kernel's connect has returned: the RST hits an open socket, not a connect.
            bounded_signal("the kernel's connect", connected).await;
            s.abort();
            let e = join(client).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");

            // The kernel aborts (SO_LINGER 0 and close): synack's read gets ConnectionReset.
            let (accepted_tx, accepted) = std::sync::mpsc::channel();
            let client = std::thread::spawn(move || -> io::Result<()> {
                let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
                // Reset only once synack has accepted (a RST while the connection waits in the
                // accept queue would take it out of the queue).
                signalled("synack's accept", &accepted, WAIT);
                set_linger_zero(&s);
                drop(s);
                Ok(())
            });
            let (mut s, _) = bounded("accept", listener.accept()).await.unwrap();
            accepted_tx.send(()).unwrap();
            let mut buf = [0u8; 16];
            let e = bounded("read", tokio::io::AsyncReadExt::read(&mut s, &mut buf))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
            join(client).await.unwrap();

            // And synack's write after the kernel's abort fails too.
            let e = s.write_all(b"late").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
        })
    });
}

/// Bytes the half-closing side sends before its FIN, and bytes the other side sends, half of
/// them only after it has read that FIN.
const HALF_CLOSE_FIRST: u64 = 1 << 20;
const HALF_CLOSE_OTHER: u64 = 16 << 20;

/// The synack connection's smoothed RTT.
fn srtt(stack: &Stack, id: synack_tcp::ConnId) -> Duration {
    stack
        .with_interface(|i| i.tcp().conn(id).and_then(|c| c.srtt()))
        .expect("an RTT sample")
}

/// The kernel half-closes first (RFC 9293 §3.6, "half-closed" connections): a kernel client
/// sends `HALF_CLOSE_FIRST` bytes and shuts down its writing side, and goes on reading; synack
/// reads to the FIN (CLOSE-WAIT) while sending, and after the FIN sends on — the second half of
/// `HALF_CLOSE_OTHER` bytes, many RTTs' worth — then closes. The kernel reads all of it,
/// byte-exact, the last byte more than one RTT after synack saw the FIN.
fn kernel_half_closes_first(fam: Fam) {
    let (first, other) = (HALF_CLOSE_FIRST, HALF_CLOSE_OTHER);
    runtime().block_on(async move {
        let stack = open_stack(None);
        let listener = TcpListener::bind(&stack, (fam.ours(), 7100)).await.unwrap();
        let to = SocketAddr::new(fam.ours(), 7100);
        let kernel = std::thread::spawn(move || -> io::Result<(u64, std::time::Instant)> {
            let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            s.set_write_timeout(Some(Duration::from_secs(120)))?;
            let mut w = s.try_clone()?;
            let writer = std::thread::spawn(move || -> io::Result<()> {
                write_pattern(&mut w, first)?;
                w.shutdown(Shutdown::Write)
            });
            let got = read_pattern(&mut &s)?;
            let done = std::time::Instant::now();
            writer.join().expect("writer panicked")?;
            Ok((got, done))
        });
        let (s, _) = bounded("accept", listener.accept()).await.unwrap();
        let id = s.id();
        let (mut rd, mut wr) = s.into_split();
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn(async move {
            asynch::write_pattern_range(&mut wr, 0, other / 2).await?;
            let _: () = eof_rx.await.expect("the reader ended without the FIN");
            asynch::write_pattern_range(&mut wr, other / 2, other).await?;
            wr.shutdown().await?;
            Ok::<_, io::Error>(wr)
        });
        let got = bounded("synack reads to the FIN", asynch::read_pattern(&mut rd))
            .await
            .unwrap();
        let fin_seen = std::time::Instant::now();
        assert_eq!(got, first, "kernel → synack before the FIN");
        let state = stack.with_interface(|i| i.tcp().conn(id).map(|c| c.state()));
        assert_eq!(
            state,
            Some(State::CloseWait),
            "synack after the kernel's FIN"
        );
        eof_tx.send(()).unwrap();
        let wr = bounded("synack writes on", writer).await.unwrap().unwrap();
        let (got, done) = join(kernel).await.unwrap();
        assert_eq!(got, other, "synack → kernel, after the kernel's FIN too");
        let rtt = srtt(&stack, id);
        assert!(
            done - fin_seen > rtt,
            "data flowed {:?} after the FIN, RTT {rtt:?}",
            done - fin_seen
        );
        // Our FIN is acknowledged: LAST-ACK → CLOSED.
        assert!(stack.wait_idle(WAIT).await, "synack's close never finished");
        let state = stack.with_interface(|i| i.tcp().conn(id).map(|c| c.state()));
        assert_eq!(
            state,
            Some(State::Closed),
            "synack after the ACK of its FIN"
        );
        eprintln!(
            "{fam:?}: flowed {:?} after the FIN, RTT {rtt:?}",
            done - fin_seen
        );
        drop((rd, wr));
    });
}

/// synack half-closes first: a synack client sends `HALF_CLOSE_FIRST` bytes and shuts down its
/// writing side, and goes on reading (FIN-WAIT-2 once the FIN is acknowledged); the kernel reads
/// to the FIN while sending, and after it sends on — the second half of `HALF_CLOSE_OTHER`
/// bytes — then closes. synack reads all of it, byte-exact, in FIN-WAIT-2 when the bytes sent
/// after the FIN arrive, for more than one RTT, and ends in TIME-WAIT.
fn synack_half_closes_first(fam: Fam) {
    let (first, other) = (HALF_CLOSE_FIRST, HALF_CLOSE_OTHER);
    runtime().block_on(async move {
        let stack = open_stack(None);
        let kl = std::net::TcpListener::bind(SocketAddr::new(fam.kernel(), 7101)).unwrap();
        let kernel = std::thread::spawn(move || -> io::Result<u64> {
            let (s, _) = kl.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            s.set_write_timeout(Some(Duration::from_secs(120)))?;
            let mut w = s.try_clone()?;
            let (eof_tx, eof_rx) = std::sync::mpsc::channel();
            let writer = std::thread::spawn(move || -> io::Result<()> {
                write_pattern_range(&mut w, 0, other / 2)?;
                signalled("the kernel reads synack's FIN", &eof_rx, WAIT);
                write_pattern_range(&mut w, other / 2, other)?;
                w.shutdown(Shutdown::Write)
            });
            let got = read_pattern(&mut &s)?;
            eof_tx.send(()).unwrap();
            writer.join().expect("writer panicked")?;
            Ok(got)
        });
        let s = bounded("connect", TcpStream::connect(&stack, (fam.kernel(), 7101)))
            .await
            .unwrap();
        let id = s.id();
        let state = || stack.with_interface(|i| i.tcp().conn(id).map(|c| c.state()));
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            asynch::write_pattern(&mut wr, first).await?;
            wr.shutdown().await?;
            Ok::<_, io::Error>(wr)
        });
        // Read and check the kernel's bytes; note the state and time when the first byte the
        // kernel sent after our FIN arrives, and when the last does.
        let expect = pattern_buf();
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        let mut after_fin = None;
        loop {
            let n = bounded("read", tokio::io::AsyncReadExt::read(&mut rd, &mut buf))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            check(&expect, off, &buf[..n]).unwrap();
            off += n as u64;
            if off > other / 2 && after_fin.is_none() {
                after_fin = Some((std::time::Instant::now(), state()));
            }
        }
        let last = std::time::Instant::now();
        assert_eq!(off, other, "kernel → synack, after synack's FIN too");
        let (first_after, state_then) = after_fin.unwrap();
        assert_eq!(
            state_then,
            Some(State::FinWait2),
            "synack when the bytes sent after its FIN arrive"
        );
        assert_eq!(
            state(),
            Some(State::TimeWait),
            "synack after the kernel's FIN"
        );
        let wr = bounded("synack's writer", writer).await.unwrap().unwrap();
        assert_eq!(join(kernel).await.unwrap(), first, "synack → kernel");
        let rtt = srtt(&stack, id);
        assert!(
            last - first_after > rtt,
            "data flowed {:?} after the FIN, RTT {rtt:?}",
            last - first_after
        );
        eprintln!(
            "{fam:?}: flowed {:?} after the FIN, RTT {rtt:?}",
            last - first_after
        );
        drop((rd, wr));
    });
}

#[test]
fn tcp_half_close_by_the_kernel_while_synack_sends_on() {
    if privileged("tcp_half_close_by_the_kernel_while_synack_sends_on") {
        Netns::new("hc-kernel").run(|| {
            kernel_half_closes_first(Fam::V4);
        });
        Netns::new("hc-kernel6").run(|| {
            kernel_half_closes_first(Fam::V6);
        });
    }
}

#[test]
fn tcp_half_close_by_synack_while_the_kernel_sends_on() {
    if privileged("tcp_half_close_by_synack_while_the_kernel_sends_on") {
        Netns::new("hc-synack").run(|| {
            synack_half_closes_first(Fam::V4);
        });
        Netns::new("hc-synack6").run(|| {
            synack_half_closes_first(Fam::V6);
        });
    }
}

#[test]
fn tcp_v4_transfer_both_ways() {
    if privileged("tcp_v4_transfer_both_ways") {
        transfer(Fam::V4, None, "v4");
    }
}

#[test]
fn tcp_v6_transfer_both_ways() {
    if privileged("tcp_v6_transfer_both_ways") {
        transfer(Fam::V6, None, "v6");
    }
}

#[test]
fn tcp_v4_abort_and_refused() {
    if privileged("tcp_v4_abort_and_refused") {
        abort_and_refused(Fam::V4, "rst4");
    }
}

#[test]
fn tcp_v6_abort_and_refused() {
    if privileged("tcp_v6_abort_and_refused") {
        abort_and_refused(Fam::V6, "rst6");
    }
}

/// The same transfer with 2 % loss and 2 % reordering both ways in the impairment layer.
#[test]
fn tcp_v4_transfer_with_loss_and_reordering() {
    if privileged("tcp_v4_transfer_with_loss_and_reordering") {
        let hostile = PathConfig::default()
            .with_loss(0.02)
            .with_reorder(0.02)
            .with_reorder_delay(synack_tcp::Duration::from_millis(2));
        transfer(Fam::V4, Some(hostile), "lossy");
    }
}

/// The same transfers, byte-exact, through the TUN offloads (IFF_VNET_HDR with GSO/GRO:
/// segments split and coalesced by the device layer) and batched writes, with loss on top.
#[test]
fn tcp_v4_transfer_with_offload_and_loss() {
    if privileged("tcp_v4_transfer_with_offload_and_loss") {
        let options = TunOptions {
            offload: true,
            batch: 64,
        };
        transfer_with(Fam::V4, None, "offload", options);
        let hostile = PathConfig::default().with_loss(0.01);
        transfer_with(Fam::V4, Some(hostile), "offload-lossy", options);
    }
}

/// The same over IPv6 (GSO_TCPV6 both ways), and over IPv4 with offloads but one write per
/// packet (super-segments both ways, no batch).
#[test]
fn tcp_transfer_with_offload_v6_and_unbatched() {
    if privileged("tcp_transfer_with_offload_v6_and_unbatched") {
        let options = TunOptions {
            offload: true,
            batch: 64,
        };
        transfer_with(Fam::V6, None, "offload-v6", options);
        let unbatched = TunOptions {
            offload: true,
            batch: 1,
        };
        transfer_with(Fam::V4, None, "offload-b1", unbatched);
    }
}

/// RSTs from synack's addresses in a capture file being written (0 if unreadable yet).
fn count_resets(file: &Path) -> usize {
    Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args([
            "-Y",
            "(ip.src == 198.18.0.2 || ipv6.src == 2001:2::2) && tcp.flags.reset == 1",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Kills (SIGINT) and reaps a child process this test started, waiting at most `limit`.
fn stop(child: &mut std::process::Child, limit: Duration) {
    // SAFETY: signals our own child, by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    if !wait_until(limit, || matches!(child.try_wait(), Ok(Some(_)))) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// tshark, capturing on the TUN device during transfers over IPv4 and IPv6, refused
/// connections and resets, finds no malformed packet and no bad checksum among the packets
/// synack sent.
#[test]
fn tshark_finds_no_malformed_packet_of_ours() {
    let test = "tshark_finds_no_malformed_packet_of_ours";
    if !privileged(test) || !have_tool("tshark", test) {
        return;
    }
    let ns = Netns::new("tshark");
    let file = std::env::temp_dir().join(format!("synack-tun-{}.pcapng", std::process::id()));
    let path = file.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack(None);
            let mut tshark = Command::new("tshark")
                .args(["-i", TUN, "-q", "-w"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start tshark");
            // Wait until it captures.
            let stderr = tshark.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Capturing on") {
                        let _ = tx.send(());
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(30))
                .expect("tshark did not start capturing");
            // "Capturing on" comes before packets really reach the file: knock on a closed
            // port until synack's RST shows up in it, so nothing after this is missed.
            let knock = SocketAddr::new(Fam::V4.ours(), 7998);
            asynch::wait_for("the capture to start", Duration::from_secs(20), || {
                let _ = std::net::TcpStream::connect_timeout(&knock, Duration::from_secs(1));
                count_resets(&path) > 0
            })
            .await;
            let knocks = count_resets(&path);

            for fam in [Fam::V4, Fam::V6] {
                let listener = TcpListener::bind(&stack, (fam.ours(), 7000)).await.unwrap();
                let to = SocketAddr::new(fam.ours(), 7000);
                let client = std::thread::spawn(move || {
                    let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
                    kernel_exchange(s, 2 << 20)
                });
                let (s, _) = bounded("accept", listener.accept()).await.unwrap();
                synack_exchange(s, 2 << 20).await.unwrap();
                join(client).await.unwrap();
                let e = std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(fam.ours(), 7999),
                    Duration::from_secs(10),
                )
                .unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
                let (client, connected) = reader_of_reset(to);
                let (s, _) = bounded("accept", listener.accept()).await.unwrap();
                bounded_signal("the kernel's connect", connected).await;
                s.abort();
                join(client).await.unwrap_err();
            }
            // Wait until the last packets are in the capture file (dumpcap writes in its own
            // time, slower on a loaded machine): the 4 RSTs of the refused and aborted
            // connections after the knocks. Then stop it.
            asynch::wait_for(
                "the capture of the last RSTs",
                Duration::from_secs(30),
                || count_resets(&path) >= knocks + 4,
            )
            .await;
            stop(&mut tshark, Duration::from_secs(20));
        })
    });
    let ours = "(ip.src == 198.18.0.2 || ipv6.src == 2001:2::2)";
    let read = |filter: &str| -> Vec<String> {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            // Port 7000 is Gryphon's: our test bytes are not Gryphon messages.
            .args(["--disable-protocol", "gryphon"])
            .args([
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "_ws.col.Info",
            ])
            .output()
            .expect("run tshark -r");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let all = read(ours);
    let bad = read(&format!(
        "{ours} && (_ws.malformed || _ws.expert.severity == \"Error\" || \
         tcp.checksum.status == \"Bad\" || ip.checksum.status == \"Bad\")"
    ));
    let rst = read(&format!("{ours} && tcp.flags.reset == 1"));
    // The checksums were verified, not skipped.
    let good = read(&format!("{ours} && tcp.checksum.status == \"Good\""));
    if bad.is_empty() {
        let _ = std::fs::remove_file(&file);
    }
    assert!(
        all.len() > 1000,
        "only {} packets of ours captured",
        all.len()
    );
    assert!(rst.len() >= 4, "refused and aborted connections: {rst:?}");
    assert_eq!(
        good.len(),
        all.len(),
        "every TCP checksum of ours verified good"
    );
    assert!(bad.is_empty(), "malformed or bad checksums: {bad:#?}");
}

/// curl gets a page from hyper's server on synack, and hyper's client on synack gets one from
/// hyper's server on the kernel's sockets.
#[test]
fn http_curl_to_synack_and_hyper_to_kernel() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    let test = "http_curl_to_synack_and_hyper_to_kernel";
    if !privileged(test) {
        return;
    }
    let curl = have_tool("curl", test);
    let ns = Netns::new("http");
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack(None);
            let body = Bytes::from(tun_support::pattern_buf()[..100 * 1024].to_vec());
            let service = {
                let body = body.clone();
                hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
                })
            };
            // hyper on synack, curl from the kernel.
            let listener = TcpListener::bind(&stack, (Fam::V4.ours(), 8080))
                .await
                .unwrap();
            let svc = service.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let svc = svc.clone();
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc),
                    );
                }
            });
            if curl {
                let out = tokio::task::spawn_blocking(|| {
                    Command::new("curl")
                        .args(["-sS", "--max-time", "30", "http://198.18.0.2:8080/object"])
                        .output()
                })
                .await
                .unwrap()
                .expect("run curl");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(out.stdout == body, "curl got {} bytes", out.stdout.len());
            }

            // hyper on the kernel's sockets, hyper's client on synack.
            let kl = tokio::net::TcpListener::bind((Fam::V4.kernel(), 8081))
                .await
                .unwrap();
            let svc = service.clone();
            tokio::spawn(async move {
                let (s, _) = kl.accept().await.unwrap();
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await
            });
            let s = bounded(
                "connect",
                TcpStream::connect(&stack, (Fam::V4.kernel(), 8081)),
            )
            .await
            .unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            let req = Request::get("/object")
                .header("host", KERNEL_V4)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = bounded("request", sender.send_request(req)).await.unwrap();
            assert_eq!(res.status(), 200);
            let got = bounded("body", res.into_body().collect())
                .await
                .unwrap()
                .to_bytes();
            assert!(got == body, "hyper got {} bytes", got.len());
        })
    });
}

/// `synack listen` (echo mode, two connections) serves kernel clients, with a capture;
/// `synack connect`'s loop pipes bytes to a kernel echo server.
#[test]
fn nc_listen_echoes_and_connect_pipes() {
    if !privileged("nc_listen_echoes_and_connect_pipes") {
        return;
    }
    let ns = Netns::new("nc");
    let pcap = std::env::temp_dir().join(format!("synack-nc-{}.pcap", std::process::id()));
    let pcap2 = pcap.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let mut tun = nc::TunOpts::new("synack1", "198.18.2.2/24".parse().unwrap());
            tun.pcap = Some(pcap2);
            let server = tokio::spawn(nc::listen(nc::ListenOpts {
                tun,
                port: 7000,
                stdio: false,
                max_conns: Some(2),
            }));
            let total = 1u64 << 20;
            let clients = std::thread::spawn(move || -> io::Result<()> {
                let to: SocketAddr = "198.18.2.2:7000".parse().unwrap();
                // The device appears when `listen` has made it: wait until the port accepts.
                let mut first = None;
                wait_for("synack listen accepting", Duration::from_secs(20), || {
                    first = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok();
                    first.is_some()
                });
                let first = first.unwrap();
                let second = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
                for s in [first, second] {
                    assert_eq!(kernel_exchange(s, total)?, total);
                }
                Ok(())
            });
            join(clients).await.unwrap();
            bounded("listen", server).await.unwrap().unwrap();

            // The client side's loop, over a second device, against a kernel echo server.
            let tun = nc::TunOpts::new("synack2", "198.18.3.2/24".parse().unwrap());
            let stack = nc::open_stack(&tun).unwrap();
            let kl = std::net::TcpListener::bind("198.18.3.1:7002").unwrap();
            let echo = std::thread::spawn(move || -> io::Result<()> {
                let (mut s, _) = kl.accept()?;
                s.set_read_timeout(Some(Duration::from_secs(30)))?;
                let mut r = s.try_clone()?;
                io::copy(&mut r, &mut s)?;
                s.shutdown(Shutdown::Write)
            });
            let s = bounded("connect", TcpStream::connect(&stack, "198.18.3.1:7002"))
                .await
                .unwrap();
            let input = b"hello from synack connect\n".repeat(1000);
            let mut output = Vec::new();
            bounded("pipe", nc::pipe(s, &input[..], &mut output))
                .await
                .unwrap();
            assert!(output == input);
            join(echo).await.unwrap();
        })
    });
    let bytes = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_file(&pcap);
    let packets = synack_stack::pcap::PcapReader::read_all(&bytes).unwrap();
    assert!(packets.len() > 100, "{} packets captured", packets.len());
}
