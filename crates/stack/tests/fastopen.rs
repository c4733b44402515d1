//! TCP Fast Open (RFC 7413) through the tokio-shaped sockets, on the simulated network under
//! tokio's paused clock: the first visit gets a cookie; the repeat visit's request rides the
//! SYN and its answer comes back one round trip after the SYN left.

use std::net::{IpAddr, SocketAddr};

use synack_stack::net::{SimNet, Stack, TcpListener, TcpStream};
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, Duration, FastOpenConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn two_hosts(rtt: Duration) -> (SimNet, Stack, Stack) {
    let config = Config {
        // Client and server sides on (Linux's net.ipv4.tcp_fastopen = 3).
        fast_open: FastOpenConfig::from_linux_sysctl(3),
        ..Config::default()
    };
    let net = SimNet::new(1);
    let a = net.add_host("a", &[ip(A)], config.clone());
    let b = net.add_host("b", &[ip(B)], config);
    let half = PathConfig::delay(rtt / 2);
    net.link(&a, &b, half.clone(), half);
    (net, a, b)
}

const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A server answering each 4-byte request with "pong".
async fn serve(listener: TcpListener, connections: usize) {
    for _ in 0..connections {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await.unwrap();
        assert_eq!(&req, b"ping");
        s.write_all(b"pong").await.unwrap();
    }
}

/// One request: the time from the connect call until the answer is read.
async fn visit(a: &Stack) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_with_data(a, SocketAddr::new(ip(B), 80), b"ping")
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn repeat_visit_saves_the_handshake_round_trip() {
    let rtt = Duration::from_millis(100);
    let (_net, a, b) = two_hosts(rtt);
    let listener = TcpListener::bind(&b, SocketAddr::new(ip(B), 80))
        .await
        .unwrap();
    listener.set_fast_open(16).unwrap();
    let server = tokio::spawn(serve(listener, 2));

    // First visit: the SYN asks for a cookie; the request follows the handshake: 2 RTTs.
    let first = timeout(LIMIT, visit(&a)).await.unwrap();
    assert_eq!(first, rtt * 2);
    assert!(a.with_interface(|i| i.tcp().fast_open_cached(ip(B)).unwrap().0.is_some()));

    // Repeat visit: the request rides the SYN, the answer rides after the SYN-ACK: 1 RTT.
    let second = timeout(LIMIT, visit(&a)).await.unwrap();
    assert_eq!(second, rtt);
    timeout(LIMIT, server).await.unwrap().unwrap();
    let stats = b.with_interface(|i| i.tcp().stats());
    assert_eq!(
        (stats.fast_open_accepted, stats.fast_open_cookies_sent),
        (1, 1)
    );
}

/// A listener without Fast Open: the data in the SYN is ignored and sent again after the
/// handshake; the exchange still completes, in two round trips.
#[tokio::test(start_paused = true)]
async fn a_server_without_fast_open_costs_the_round_trip_but_loses_nothing() {
    let rtt = Duration::from_millis(100);
    let (_net, a, b) = two_hosts(rtt);
    let listener = TcpListener::bind(&b, SocketAddr::new(ip(B), 80))
        .await
        .unwrap();
    let server = tokio::spawn(serve(listener, 2));
    assert_eq!(timeout(LIMIT, visit(&a)).await.unwrap(), rtt * 2);
    assert_eq!(timeout(LIMIT, visit(&a)).await.unwrap(), rtt * 2);
    timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(b.with_interface(|i| i.tcp().stats()).fast_open_accepted, 0);
}
