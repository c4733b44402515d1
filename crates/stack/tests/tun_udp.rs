//! synack's UDP against the Linux kernel's over a TUN device, inside a network namespace each
//! test makes for itself (root and /dev/net/tun needed: skipped with a message otherwise,
//! failed when CI=true): datagrams byte-exact both ways, and ICMP port unreachable both ways,
//! delivered to a connected socket as `ECONNREFUSED` (RFC 1122 §4.1.3.3) — the kernel's ICMP
//! to synack's socket, and synack's ICMP to the kernel's socket.

mod tun_support;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use synack_stack::net::{Stack, StackConfig, UdpSocket};
use synack_stack::tun::{TunConfig, TunDevice};
use synack_tcp::Config;
use tokio::time::timeout;
use tun_support::{privileged, wait_for, Netns};

const TUN: &str = "synack0";
const KERNEL_V4: &str = "198.18.0.1";
const OURS_V4: &str = "198.18.0.2";
const KERNEL_V6: &str = "2001:2::1";
const OURS_V6: &str = "2001:2::2";
const WAIT: Duration = Duration::from_secs(30);

fn open_stack() -> Stack {
    let dev = TunDevice::create(&TunConfig {
        name: TUN.into(),
        mtu: 1500,
        addrs: vec![
            (KERNEL_V4.parse().unwrap(), 24),
            (KERNEL_V6.parse().unwrap(), 64),
        ],
    })
    .expect("create the TUN device");
    wait_for(
        "the kernel's addresses on the TUN device",
        Duration::from_secs(10),
        || {
            [KERNEL_V4, KERNEL_V6]
                .iter()
                .all(|a| std::net::UdpSocket::bind(SocketAddr::new(a.parse().unwrap(), 0)).is_ok())
        },
    );
    let mut config = StackConfig::new(&[OURS_V4.parse().unwrap(), OURS_V6.parse().unwrap()]);
    config.tcp = Config::default();
    Stack::new(dev, config).expect("stack")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {WAIT:?}"),
    }
}

fn payload(k: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + k * 7) as u8).collect()
}

fn udp_with_the_kernel(kernel: IpAddr, ours: IpAddr, tag: &str) {
    let ns = Netns::new(tag);
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack();
            let k = std::net::UdpSocket::bind(SocketAddr::new(kernel, 0)).unwrap();
            k.set_read_timeout(Some(WAIT)).unwrap();
            let kaddr = k.local_addr().unwrap();
            let s = UdpSocket::bind(&stack, SocketAddr::new(ours, 5353))
                .await
                .unwrap();
            let saddr = s.local_addr().unwrap();
            // synack -> kernel, sizes up to what the MTU takes without fragments.
            let max = if kernel.is_ipv4() {
                1500 - 28
            } else {
                1500 - 48
            };
            let sizes = [0, 1, 100, 1200, max];
            for (i, n) in sizes.iter().enumerate() {
                let p = payload(i, *n);
                bounded("send_to", s.send_to(&p, kaddr)).await.unwrap();
                let mut buf = vec![0; 2000];
                let (got, from) = tokio::task::block_in_place(|| k.recv_from(&mut buf)).unwrap();
                assert_eq!((&buf[..got], from), (&p[..], saddr));
            }
            // One byte more does not fit: refused, not fragmented.
            let e = s.send_to(&vec![0; max + 1], kaddr).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            // kernel -> synack.
            for (i, n) in sizes.iter().enumerate() {
                let p = payload(i + 10, *n);
                k.send_to(&p, saddr).unwrap();
                let mut buf = vec![0; 2000];
                let (got, from) = bounded("recv_from", s.recv_from(&mut buf)).await.unwrap();
                assert_eq!((&buf[..got], from), (&p[..], kaddr));
            }

            // synack's connected socket -> a closed kernel port: the kernel's ICMP port
            // unreachable comes back as ECONNREFUSED on the next receive.
            let closed = std::net::UdpSocket::bind(SocketAddr::new(kernel, 0)).unwrap();
            let closed_addr = closed.local_addr().unwrap();
            drop(closed);
            let c = UdpSocket::bind(&stack, SocketAddr::new(ours, 0))
                .await
                .unwrap();
            c.connect(closed_addr).await.unwrap();
            c.send(b"anyone?").await.unwrap();
            let mut buf = [0; 64];
            let e = bounded("recv after ICMP", c.recv(&mut buf))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

            // The kernel's connected socket -> a closed synack port: synack answers with ICMP
            // port unreachable, and the kernel's socket gets ECONNREFUSED.
            let kc = std::net::UdpSocket::bind(SocketAddr::new(kernel, 0)).unwrap();
            kc.set_read_timeout(Some(WAIT)).unwrap();
            kc.connect(SocketAddr::new(ours, 5999)).unwrap();
            kc.send(b"anyone?").unwrap();
            let e = tokio::task::block_in_place(|| kc.recv(&mut buf)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            let st = stack.udp_stats();
            assert_eq!(
                (st.icmp_unreachable_sent, st.icmp_errors_delivered),
                (1, 1),
                "{st:?}"
            );
        })
    });
}

#[test]
fn udp_v4_with_the_kernel_datagrams_and_refused() {
    if privileged("udp_v4_with_the_kernel_datagrams_and_refused") {
        udp_with_the_kernel(KERNEL_V4.parse().unwrap(), OURS_V4.parse().unwrap(), "udp4");
    }
}

#[test]
fn udp_v6_with_the_kernel_datagrams_and_refused() {
    if privileged("udp_v6_with_the_kernel_datagrams_and_refused") {
        udp_with_the_kernel(KERNEL_V6.parse().unwrap(), OURS_V6.parse().unwrap(), "udp6");
    }
}
