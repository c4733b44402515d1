//! TCP Fast Open (RFC 7413) and ECN (RFC 3168) between synack and the Linux kernel, over a TUN
//! device in a network namespace the test makes (root and /dev/net/tun needed: skipped with a
//! message otherwise, failed when CI=true). The kernel's `net.ipv4.tcp_fastopen` is 3 there.
//!
//! Both ways, a first connection gets a cookie and a second one carries its request in the
//! SYN; synack's connections ask for ECN, which the kernel accepts. A capture of what the
//! stack saw is read back with tshark (when installed): SYNs with data and the Fast Open
//! cookie option, an ECN-setup SYN-ACK and ECT(0) data.

mod tun_support;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Command;
use std::time::Duration;

use synack_stack::net::{Stack, StackConfig, TcpListener, TcpStream};
use synack_stack::pcap::PcapWriter;
use synack_stack::tun::{TunConfig, TunDevice, TunOptions};
use synack_tcp::{Config, Ecn, FastOpenConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tun_support::{have_tool, privileged, wait_for, Netns};

const TUN: &str = "synack0";
const KERNEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const WAIT: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {WAIT:?}"),
    }
}

fn set_int(fd: i32, level: i32, name: i32, v: i32) {
    // SAFETY: a valid socket and an int option.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// A kernel client's request with `sendto(MSG_FASTOPEN)` (blocking: it returns once the
/// request is written, in the SYN when a cookie is cached), then its 5-byte answer.
fn kernel_fastopen_request(to: SocketAddr, req: &[u8]) -> io::Result<Vec<u8>> {
    let SocketAddr::V4(to) = to else {
        unreachable!()
    };
    // SAFETY: plain socket calls with valid arguments; the descriptor is owned by the stream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let mut s = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    s.set_read_timeout(Some(WAIT))?;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid buffer and address of the size given.
    let n = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            libc::MSG_FASTOPEN,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(n as usize, req.len());
    let mut answer = vec![0u8; 5];
    s.read_exact(&mut answer)?;
    Ok(answer)
}

fn tshark_lines(file: &str, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut c = Command::new("tshark");
    c.args(["-r", file, "-Y", filter, "-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn fast_open_and_ecn_with_the_kernel_both_ways() {
    if !privileged("fast_open_and_ecn_with_the_kernel_both_ways") {
        return;
    }
    let tshark = have_tool("tshark", "fast_open_and_ecn_with_the_kernel_both_ways");
    let ns = Netns::new("tfo");
    let ok = ns
        .command("sysctl")
        .args(["-qw", "net.ipv4.tcp_fastopen=3", "net.ipv4.tcp_ecn=2"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "sysctl in the namespace");
    let pcap = format!("/tmp/synack-tun-fastopen-{}.pcap", std::process::id());
    let file = pcap.clone();
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let dev = TunDevice::create_with(
                &TunConfig {
                    name: TUN.into(),
                    mtu: 1500,
                    addrs: vec![(IpAddr::V4(KERNEL), 24)],
                },
                TunOptions::default(),
            )
            .expect("create the TUN device");
            wait_for("the kernel's address", Duration::from_secs(10), || {
                std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(KERNEL), 0)).is_ok()
            });
            let mut config = StackConfig::new(&[IpAddr::V4(OURS)]);
            config.tcp = Config {
                fast_open: FastOpenConfig::from_linux_sysctl(3),
                ecn: Ecn::On,
                ..Config::default()
            };
            let w: Box<dyn Write + Send> = Box::new(std::fs::File::create(&file).unwrap());
            config.pcap = Some(PcapWriter::new(w).unwrap());
            let stack = Stack::new(dev, config).expect("stack");

            // The kernel's clients → a synack Fast Open listener.
            let listener = TcpListener::bind(&stack, (IpAddr::V4(OURS), 7000))
                .await
                .unwrap();
            listener.set_fast_open(16).unwrap();
            let to = SocketAddr::new(IpAddr::V4(OURS), 7000);
            let client = std::thread::spawn(move || -> io::Result<()> {
                for _ in 0..2 {
                    assert_eq!(kernel_fastopen_request(to, b"ping")?, b"pong!");
                }
                Ok(())
            });
            for _ in 0..2 {
                let (mut s, _) = bounded("accept", listener.accept()).await.unwrap();
                let mut req = [0u8; 4];
                bounded("request", s.read_exact(&mut req)).await.unwrap();
                assert_eq!(&req, b"ping");
                s.write_all(b"pong!").await.unwrap();
                s.shutdown().await.unwrap();
            }
            client.join().unwrap().unwrap();
            let st = stack.tcp_stats();
            assert_eq!(
                (st.fast_open_cookies_sent, st.fast_open_accepted),
                (1, 1),
                "the first visit got a cookie, the second's data was taken from its SYN"
            );

            // synack's clients → a kernel Fast Open listener.
            let kl =
                std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(KERNEL), 7001)).unwrap();
            set_int(kl.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_FASTOPEN, 16);
            let server = std::thread::spawn(move || -> io::Result<()> {
                for _ in 0..2 {
                    let (mut s, _) = kl.accept()?;
                    s.set_read_timeout(Some(WAIT))?;
                    let mut req = [0u8; 4];
                    s.read_exact(&mut req)?;
                    assert_eq!(&req, b"ping");
                    s.write_all(b"pong!")?;
                }
                Ok(())
            });
            let mut taken = Vec::new();
            for _ in 0..2 {
                let to = SocketAddr::new(IpAddr::V4(KERNEL), 7001);
                let mut s = bounded("connect", TcpStream::connect_with_data(&stack, to, b"ping"))
                    .await
                    .unwrap();
                let mut answer = [0u8; 5];
                bounded("answer", s.read_exact(&mut answer)).await.unwrap();
                assert_eq!(&answer, b"pong!");
                let id = s.id();
                taken.push(stack.with_interface(|i| {
                    let c = i.tcp().conn(id).unwrap();
                    (c.syn_data_acked(), c.ecn_enabled())
                }));
            }
            server.join().unwrap().unwrap();
            assert_eq!(
                taken,
                [(false, true), (true, true)],
                "the second SYN's data was taken; ECN agreed on both"
            );
            drop(listener);
            drop(stack);
        })
    });
    if tshark {
        let syn_data = tshark_lines(
            &pcap,
            "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.len > 0",
            &["ip.src", "tcp.options.tfo.cookie"],
        );
        eprintln!("SYNs with data (source, cookie): {syn_data:?}");
        assert_eq!(
            syn_data.len(),
            2,
            "one SYN with data each way: {syn_data:?}"
        );
        assert!(
            syn_data
                .iter()
                .all(|l| l.split('\t').nth(1).is_some_and(|c| !c.is_empty())),
            "each with its cookie: {syn_data:?}"
        );
        let synack_ece = tshark_lines(
            &pcap,
            "tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.flags.ece == 1",
            &["ip.src"],
        );
        assert_eq!(
            synack_ece,
            ["198.18.0.1", "198.18.0.1"],
            "the kernel agreed to ECN"
        );
        let ect_data = tshark_lines(
            &pcap,
            "ip.src == 198.18.0.2 && ip.dsfield.ecn == 2 && tcp.len > 0",
            &["tcp.len"],
        );
        assert!(!ect_data.is_empty(), "synack's data went out ECT(0)");
    }
    let _ = std::fs::remove_file(&pcap);
}
