//! A spoofed SYN flood over TUN against a synack listener, with a legitimate kernel client at
//! the same time (root needed: skipped with a message otherwise, failed when CI=true).
//!
//! The flooder is a raw socket in the test's own namespace sending SYNs from random addresses
//! of 198.18.1.0/24 (routed to the TUN device) as fast as this host can, for a bounded time.
//! With the SYN queue full, synack answers with SYN cookies and keeps no state per spoofed SYN
//! (RFC 4987 §3.6); the kernel client's connections complete through cookies and carry data.
//! `-- --nocapture` prints connections per second with and without the flood, and the peak
//! number of synack connections and the process's peak memory.

mod tun_support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synack_stack::net::nc::{self, TunOpts};
use synack_stack::net::TcpListener;
use synack_wire::{TcpFlags, TcpOptions, TcpRepr, Timestamp};
use tun_support::{privileged, Netns};

const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PHASE: Duration = Duration::from_secs(3);

/// Kernel connections (connect, 1 KiB each way, close) completed in `PHASE`.
fn legit_clients(stop: Instant) -> u64 {
    let to = SocketAddr::V4(SocketAddrV4::new(OURS, 80));
    let mut done = 0;
    let msg = [0x42u8; 1024];
    while Instant::now() < stop {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(&msg).is_err() {
            continue;
        }
        let mut back = [0u8; 1024];
        if s.read_exact(&mut back).is_ok() && back == msg {
            done += 1;
        }
    }
    done
}

/// Spoofed SYNs through a raw socket until `stop`; returns how many were sent.
fn flood(stop: Arc<AtomicBool>) -> u64 {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let mut sent = 0u64;
    let mut buf = [0u8; 80];
    let mut x = 0x9e37_79b9u32;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = Ipv4Addr::new(198, 18, 1, (x % 250) as u8 + 3);
        let tcp = TcpRepr {
            src_port: 1024 + (x >> 16) as u16 % 60000,
            dst_port: 80,
            seq: x,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some(Timestamp { tsval: x, tsecr: 0 }),
                ..TcpOptions::default()
            },
            payload: &[],
        };
        let tlen = tcp.header_len();
        let ip = synack_wire::Ipv4Repr {
            src,
            dst: OURS,
            protocol: synack_wire::IpProtocol::Tcp,
            ttl: 64,
            tos: 0,
            ident: x as u16,
            dont_frag: true,
            payload_len: tlen,
        };
        let hlen = synack_wire::Ipv4Repr::HEADER_LEN;
        ip.emit(&mut buf[..hlen]);
        tcp.emit_header(&mut buf[hlen..hlen + tlen]);
        synack_wire::tcp::fill_checksum(&mut buf[hlen..hlen + tlen], src.into(), OURS.into());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(OURS).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `buf` and `addr` outlive the call; lengths are theirs.
        let n = unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                hlen + tlen,
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n > 0 {
            sent += 1;
        }
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    sent
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_spoofed_syn_flood_does_not_lock_out_a_kernel_client() {
    if !privileged("a_spoofed_syn_flood_does_not_lock_out_a_kernel_client") {
        return;
    }
    let ns = Netns::new("flood");
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let opts = TunOpts::new("synflood0", "198.18.0.2/16".parse().unwrap());
            let stack = nc::open_stack(&opts).expect("TUN device and stack");
            let l = TcpListener::bind(&stack, (IpAddr::V4(OURS), 80))
                .await
                .unwrap();
            // An echo server: 1 KiB back per connection.
            let server = tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        break;
                    };
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut b = [0u8; 1024];
                        if s.read_exact(&mut b).await.is_ok() {
                            let _ = s.write_all(&b).await;
                            let _ = s.shutdown().await;
                        }
                    });
                }
            });
            let peak_conns = Arc::new(AtomicU64::new(0));
            let watch = {
                let stack = stack.clone();
                let peak = peak_conns.clone();
                tokio::spawn(async move {
                    loop {
                        let n = stack.with_interface(|i| {
                            let tcp = i.tcp();
                            tcp.connections()
                                .filter(|&id| {
                                    tcp.conn(id).map(|c| c.state())
                                        == Some(synack_tcp::State::SynReceived)
                                })
                                .count()
                        }) as u64;
                        peak.fetch_max(n, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            };
            let rss_before = peak_rss_kib();
            // Without a flood.
            let calm = tokio::task::spawn_blocking(|| legit_clients(Instant::now() + PHASE))
                .await
                .unwrap();
            let calm_peak = peak_conns.swap(0, Ordering::Relaxed);
            // With one.
            let stop = Arc::new(AtomicBool::new(false));
            let flooder = {
                let stop = stop.clone();
                std::thread::spawn(move || flood(stop))
            };
            let during = tokio::task::spawn_blocking(|| legit_clients(Instant::now() + PHASE))
                .await
                .unwrap();
            stop.store(true, Ordering::Relaxed);
            let spoofed = flooder.join().unwrap();
            let flood_peak = peak_conns.load(Ordering::Relaxed);
            let st = stack.tcp_stats();
            let rss_after = peak_rss_kib();
            watch.abort();
            server.abort();
            let secs = PHASE.as_secs_f64();
            eprintln!(
                "legitimate connections/s: {:.0} without a flood, {:.0} during it; spoofed SYNs \
                 sent {spoofed} ({:.0}/s); cookies sent {}, accepted {}, SYNs dropped {}; \
                 peak synack connections in SYN-RECEIVED {calm_peak} calm, {flood_peak} \
                 flooded; peak RSS {rss_before} KiB before, {rss_after} KiB after",
                calm as f64 / secs,
                during as f64 / secs,
                spoofed as f64 / secs,
                st.syn_cookies_sent,
                st.syn_cookies_accepted,
                st.syn_dropped,
            );
            assert!(calm > 0, "no connection completed without a flood");
            assert!(spoofed > 1000, "the flood ran ({spoofed} SYNs)");
            assert!(
                st.syn_cookies_sent > 0,
                "the SYN queue overflowed into cookies"
            );
            assert!(during > 0, "the legitimate client was locked out");
            // No state per spoofed SYN once the SYN queue (128) is full: cookies hold none.
            let syn_backlog = synack_tcp::Config::default().syn_backlog as u64;
            assert!(
                flood_peak <= syn_backlog,
                "{flood_peak} connections in SYN-RECEIVED during the flood"
            );
        });
    });
}
