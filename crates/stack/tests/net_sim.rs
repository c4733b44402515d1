//! The tokio-shaped sockets of `synack_stack::net` on the simulated network, under tokio's
//! paused clock: deterministic, no privileges, virtual time only.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::Poll;

use synack_stack::net::{pipe, SimNet, Stack, StackConfig, TcpListener, TcpStream, UdpSocket};
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, Duration, State};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

/// Bytes that reveal a lost, duplicated or shifted range: position modulo a prime.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Two hosts, `A` and `B`, with `rtt` split evenly between the directions.
fn two_hosts(seed: u64, rtt: Duration, config: Config) -> (SimNet, Stack, Stack) {
    let net = SimNet::new(seed);
    let a = net.add_host("a", &[ip(A)], config.clone());
    let b = net.add_host("b", &[ip(B)], config);
    let half = PathConfig::delay(rtt / 2);
    net.link(&a, &b, half.clone(), half);
    (net, a, b)
}

/// Every await of a test is bounded by this much virtual time.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    timeout(LIMIT, f).await.expect("virtual time limit")
}

#[tokio::test(start_paused = true)]
async fn echo_1mib_over_50ms_rtt() {
    let rtt = Duration::from_millis(50);
    let (_net, a, b) = two_hosts(1, rtt, Config::default());
    let listener = TcpListener::bind(&b, sa(B, 7)).await.unwrap();
    assert_eq!(listener.local_addr().unwrap(), sa(B, 7));
    let server = tokio::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), ip(A));
        assert_eq!(s.peer_addr().unwrap(), peer);
        assert_eq!(s.local_addr().unwrap(), sa(B, 7));
        let (mut rd, mut wr) = s.into_split();
        let n = tokio::io::copy(&mut rd, &mut wr).await.unwrap();
        wr.shutdown().await.unwrap();
        n
    });

    let t0 = Instant::now();
    let s = bounded(TcpStream::connect(&a, sa(B, 7))).await.unwrap();
    assert_eq!(t0.elapsed(), rtt, "the handshake takes exactly one RTT");
    assert_eq!(s.peer_addr().unwrap(), sa(B, 7));
    assert_eq!(s.local_addr().unwrap().ip(), ip(A));
    assert_eq!(s.state(), Some(State::Established));

    let data = pattern(1 << 20);
    let (mut rd, mut wr) = tokio::io::split(s);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::new();
    bounded(rd.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the echo differs from what was sent");
    let wr = writer.await.unwrap();
    assert_eq!(bounded(server).await.unwrap(), 1 << 20);
    let s = rd.unsplit(wr);
    // We closed first, so the 4-way close leaves us in TIME-WAIT (RFC 9293 §3.6).
    assert_eq!(s.state(), Some(State::TimeWait));
}

#[tokio::test(start_paused = true)]
async fn back_pressure_with_a_slow_reader() {
    let config = Config {
        send_buffer: 16 * 1024,
        recv_buffer: 16 * 1024,
        ..Config::default()
    };
    let (_net, a, b) = two_hosts(2, Duration::from_millis(10), config);
    let listener = TcpListener::bind(&b, sa(B, 9)).await.unwrap();
    let total = 256 * 1024;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
            // A slow application: 1 KiB per 5 ms (virtual), well under the path's rate.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let mut s = bounded(TcpStream::connect(&a, sa(B, 9))).await.unwrap();
    let data = pattern(total);
    let mut off = 0;
    let mut pendings = 0u32;
    let mut resumed_after_pending = 0u32;
    let mut was_pending = false;
    while off < data.len() {
        let n = bounded(poll_fn(|cx| {
            match Pin::new(&mut s).poll_write(cx, &data[off..(off + 8192).min(data.len())]) {
                Poll::Pending => {
                    if !was_pending {
                        pendings += 1;
                    }
                    was_pending = true;
                    Poll::Pending
                }
                r => r,
            }
        }))
        .await
        .unwrap();
        assert!(n > 0);
        if was_pending {
            resumed_after_pending += 1;
            was_pending = false;
        }
        off += n;
    }
    s.shutdown().await.unwrap();
    let got = bounded(reader).await.unwrap();
    assert!(got == data, "data lost or reordered under back-pressure");
    assert!(
        pendings > 5,
        "the writer should have been held back (pending {pendings} times)"
    );
    assert_eq!(
        resumed_after_pending, pendings,
        "every pending write resumed"
    );
}

#[tokio::test(start_paused = true)]
async fn connect_to_a_closed_port_is_refused() {
    let rtt = Duration::from_millis(50);
    let (_net, a, _b) = two_hosts(3, rtt, Config::default());
    let t0 = Instant::now();
    let e = bounded(TcpStream::connect(&a, sa(B, 81)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(t0.elapsed(), rtt, "the RST answers the SYN one RTT later");
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_gives_up_on_time() {
    let (net, a, b) = two_hosts(4, Duration::from_millis(50), Config::default());
    // Everything from a to b is lost: the SYNs go unanswered.
    net.set_path(&a, &b, PathConfig::default().with_loss(1.0));
    let _l = TcpListener::bind(&b, sa(B, 80)).await.unwrap();
    let t0 = Instant::now();
    let e = TcpStream::connect_timeout(&a, sa(B, 80), Duration::from_secs(3))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert!(
        net.path_stats(&a, &b).unwrap().dropped_loss >= 2,
        "SYN and a retransmission"
    );
}

#[tokio::test(start_paused = true)]
async fn abort_reaches_the_peer_as_a_reset() {
    let (_net, a, b) = two_hosts(5, Duration::from_millis(20), Config::default());
    let listener = TcpListener::bind(&b, sa(B, 80)).await.unwrap();

    // abort(): the peer's pending read fails with ConnectionReset.
    let c = bounded(TcpStream::connect(&a, sa(B, 80))).await.unwrap();
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        s.read(&mut buf).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    c.abort();
    let e = bounded(reader).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    let mut c = c;
    let mut buf = [0u8; 1];
    let e = c.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    let e = c.write(b"x").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);

    // set_linger(Some(0)) and drop: tokio's spelling of the same.
    let c = bounded(TcpStream::connect(&a, sa(B, 80))).await.unwrap();
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    c.set_linger(Some(Duration::ZERO)).unwrap();
    assert_eq!(c.linger().unwrap(), Some(Duration::ZERO));
    drop(c);
    let mut buf = [0u8; 16];
    let e = bounded(s.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    let e = s.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn half_close_keeps_the_other_direction_open() {
    let (_net, a, b) = two_hosts(6, Duration::from_millis(20), Config::default());
    let listener = TcpListener::bind(&b, sa(B, 80)).await.unwrap();
    let mut c = bounded(TcpStream::connect(&a, sa(B, 80))).await.unwrap();
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(
        c.write(b"more").await.unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );
    let mut got = Vec::new();
    bounded(s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"request");
    assert_eq!(s.state(), Some(State::CloseWait));
    // The server still writes after the client's FIN, then closes its side.
    s.write_all(b"response").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    bounded(c.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"response");
    assert_eq!(c.state(), Some(State::TimeWait));
}

#[tokio::test(start_paused = true)]
async fn nodelay_and_addresses() {
    let (_net, a, b) = two_hosts(7, Duration::from_millis(20), Config::default());
    let listener = TcpListener::bind(&b, "0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_ne!(port, 0);
    let c = bounded(TcpStream::connect(&a, (ip(B), port)))
        .await
        .unwrap();
    assert!(!c.nodelay().unwrap());
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    let (s, peer) = bounded(listener.accept()).await.unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(s.local_addr().unwrap(), sa(B, port));
    // Binding someone else's address fails.
    let e = TcpListener::bind(&a, sa(B, 1)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    let e = TcpListener::bind(&b, sa(B, port)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
}

#[tokio::test(start_paused = true)]
async fn hyper_http1_client_and_server() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    let (_net, a, b) = two_hosts(8, Duration::from_millis(30), Config::default());
    let body = Bytes::from(pattern(100 * 1024));
    let listener = TcpListener::bind(&b, sa(B, 80)).await.unwrap();
    let served = body.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let body = served.clone();
            async move {
                assert_eq!(req.uri().path(), "/object");
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), service)
            .await
    });

    let s = bounded(TcpStream::connect(&a, sa(B, 80))).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    let client_conn = tokio::spawn(conn);
    let req = Request::get("/object")
        .header("host", B)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = bounded(sender.send_request(req)).await.unwrap();
    assert_eq!(res.status(), 200);
    let got = bounded(res.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(got.len(), body.len());
    assert!(got == body);
    drop(sender);
    bounded(client_conn).await.unwrap().unwrap();
    bounded(server).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn udp_send_to_and_recv_from() {
    let (_net, a, b) = two_hosts(9, Duration::from_millis(20), Config::default());
    let ua = UdpSocket::bind(&a, sa(A, 5000)).await.unwrap();
    let ub = UdpSocket::bind(&b, "0.0.0.0:6000").await.unwrap();
    let t0 = Instant::now();
    assert_eq!(ua.send_to(b"ping", sa(B, 6000)).await.unwrap(), 4);
    let mut buf = [0u8; 64];
    let (n, from) = bounded(ub.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from, sa(A, 5000));
    assert_eq!(t0.elapsed(), Duration::from_millis(10), "one way");
    ub.send_to(b"pong", from).await.unwrap();
    let (n, from) = bounded(ua.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, sa(B, 6000));

    // Connected sockets: send/recv.
    let uc = UdpSocket::bind(&a, "0.0.0.0:0").await.unwrap();
    uc.connect(sa(B, 6000)).await.unwrap();
    uc.send(b"hello").await.unwrap();
    let (n, from) = bounded(ub.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.port(), uc.local_addr().unwrap().port());
    ub.send_to(b"back", from).await.unwrap();
    let n = bounded(uc.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"back");

    // A datagram to a port nobody bound: ICMP port unreachable (RFC 1122 §4.1.3.1).
    ua.send_to(b"nobody", sa(B, 6001)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let st = b.udp_stats();
    assert_eq!(st.rx_no_port, 1);
    assert_eq!(st.icmp_unreachable_sent, 1);
    assert_eq!(st.rx_datagrams, 2);
    // Too big for the MTU: refused, never fragmented.
    let big = vec![0u8; 1500];
    let e = ua.send_to(&big, sa(B, 6000)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

/// Two stacks over the device driver (an in-memory pipe) with 2 % loss and 2 % reordering in
/// the impairment layer, both ways: 1 MiB each way arrives byte-exact.
#[tokio::test(start_paused = true)]
async fn device_driver_over_an_impaired_pipe() {
    let (da, db) = pipe(4096);
    let hostile = PathConfig::default()
        .with_delay(Duration::from_millis(1))
        .with_loss(0.02)
        .with_reorder(0.02)
        .with_reorder_delay(Duration::from_millis(3));
    let mut ca = StackConfig::new(&[ip(A)]);
    ca.secret = Some([1; 16]);
    ca.impair_rx = Some(hostile.clone());
    ca.impair_tx = Some(hostile.clone());
    ca.impair_seed = 11;
    let mut cb = StackConfig::new(&[ip(B)]);
    cb.secret = Some([2; 16]);
    let a = Stack::new(da, ca).unwrap();
    let b = Stack::new(db, cb).unwrap();
    let listener = TcpListener::bind(&b, sa(B, 7)).await.unwrap();
    let data = pattern(1 << 20);
    let expect = data.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let w = tokio::spawn(async move {
            wr.write_all(&expect).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        w.await.unwrap();
        got
    });
    let c = bounded(TcpStream::connect(&a, sa(B, 7))).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    let sent = data.clone();
    let w = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    bounded(rd.read_to_end(&mut got)).await.unwrap();
    bounded(w).await.unwrap();
    assert!(got == data, "server → client differs");
    let got = bounded(server).await.unwrap();
    assert!(got == data, "client → server differs");
    let (rx, tx) = a.impairment_stats();
    let (rx, tx) = (rx.unwrap(), tx.unwrap());
    assert!(rx.dropped_loss > 0 && tx.dropped_loss > 0, "{rx:?} {tx:?}");
    assert!(rx.reordered > 0 && tx.reordered > 0);
    assert!(a.tcp_stats().segments_sent > 700);
    assert!(a.device_stats().unwrap().rx_packets > 0);
}

/// The driver's cost per wake-up does not grow with idle connections: with 300 connections
/// idle (each with a task blocked reading), 50 round trips on one more connection make the
/// driver look at a handful of connections each, not at the 300.
#[tokio::test(start_paused = true)]
async fn idle_connections_are_not_looked_at() {
    let (_net, a, b) = two_hosts(11, Duration::from_millis(2), Config::default());
    let l = TcpListener::bind(&b, sa(B, 7)).await.unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
            }));
        }
    });
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&a, sa(B, 7)).await.unwrap());
    }
    let mut readers = Vec::new();
    for mut s in idle {
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
        }));
    }
    let mut s = TcpStream::connect(&a, sa(B, 7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ea, eb) = (a.conns_examined(), b.conns_examined());
    for i in 0..50u8 {
        s.write_all(&[i; 64]).await.unwrap();
        let mut back = [0u8; 64];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [i; 64]);
    }
    let (da, db) = (a.conns_examined() - ea, b.conns_examined() - eb);
    assert!(da <= 50 * 6 && db <= 50 * 6, "looked at {da} and {db}");
    server.abort();
    for r in readers {
        r.abort();
    }
}
