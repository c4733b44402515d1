//! Persistent connections on the simulated network (50 ms RTT), in virtual time: how many
//! connections (handshakes) each policy costs, counted by the client, by the server, and by
//! both TCP endpoints, which must agree.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::CONNECTION;
use http::Request;
use synack_http::headers::KeepAlive;
use synack_http::{ClientConfig, PoolConfig, RequestInfo, ServerConfig};
use synack_stack::net::Stack;
use tokio::time::Instant;

fn info(r: &http::Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}

/// Handshakes as both TCP endpoints count them: the client's active opens and the
/// server's accepted connections.
fn tcp_handshakes(a: &Stack, b: &Stack) -> (u64, u64) {
    (a.tcp_stats().connects, b.tcp_stats().accepted)
}

#[tokio::test(start_paused = true)]
async fn hundred_requests_share_one_keepalive_connection() {
    let (_net, a, b) = two_hosts(1, RTT);
    let (srv, counts) = server(&b, ServerConfig::default()).await;
    let c = client(&a, ClientConfig::default());
    let t0 = Instant::now();
    for i in 0..100 {
        let r = c.get(&url("/")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.body().as_ref(), b"GET / 0\n");
        let inf = info(&r);
        assert_eq!(inf.connection, 1);
        assert_eq!(inf.reused, i > 0);
        assert_eq!(inf.handshake.is_some(), i == 0);
        assert_eq!(inf.request_on_connection, i + 1);
        // No Keep-Alive header unless asked for (nginx's default).
        assert_eq!(inf.keep_alive, None);
    }
    // One handshake (1 RTT), then one RTT per request.
    assert_eq!(t0.elapsed(), RTT * 101);
    let m = c.metrics();
    assert_eq!(m.connections_opened, 1);
    assert_eq!(m.handshakes, 1);
    assert_eq!(m.handshake_time, RTT);
    assert_eq!(m.requests, 100);
    assert_eq!(m.responses, 100);
    assert_eq!(m.reused, 99);
    assert_eq!(m.retries, 0);
    assert_eq!(m.failures, 0);
    assert!((m.reuse_ratio() - 0.99).abs() < 1e-9);
    assert_eq!(m.requests_per_connection(), 100.0);
    let s = srv.stats();
    assert_eq!((s.connections, s.requests), (1, 100));
    assert_eq!(s.max_requests_per_connection, 100);
    assert_eq!(counts.gets(), 100);
    assert_eq!(tcp_handshakes(&a, &b), (1, 1));
    let json = m.to_json();
    assert!(json.starts_with("{\"connections_opened\":1,"), "{json}");
    assert!(json.contains("\"requests\":100,"), "{json}");
    assert!(json.contains("\"reused\":99,"), "{json}");
    assert!(json.contains("\"retries\":0,"), "{json}");
}

#[tokio::test(start_paused = true)]
async fn hundred_requests_with_connection_close_open_hundred_connections() {
    let (_net, a, b) = two_hosts(2, RTT);
    let (srv, _) = server(&b, ServerConfig::default()).await;
    let c = client(&a, ClientConfig::default());
    let t0 = Instant::now();
    for i in 0..100u64 {
        let req = Request::get(url("/"))
            .header(CONNECTION, "close")
            .body(Bytes::new())
            .unwrap();
        let r = c.request(req).await.unwrap();
        assert_eq!(r.headers()[CONNECTION], "close");
        let inf = info(&r);
        assert_eq!(inf.connection, i + 1);
        assert!(!inf.reused && inf.closed_after);
        assert_eq!(inf.handshake, Some(RTT));
    }
    // Each call: handshake + request, 2 RTTs (the close overlaps the next handshake).
    assert_eq!(t0.elapsed(), RTT * 200);
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.requests, m.reused), (100, 100, 0));
    let s = srv.stats();
    assert_eq!((s.connections, s.requests), (100, 100));
    assert_eq!(s.closed_by_client_request, 100);
    assert_eq!(tcp_handshakes(&a, &b), (100, 100));
}

#[tokio::test(start_paused = true)]
async fn keepalive_requests_10_gives_10_connections() {
    let (_net, a, b) = two_hosts(3, RTT);
    let config = ServerConfig {
        keepalive_requests: 10,
        keepalive_header: true,
        keepalive_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let (srv, _) = server(&b, config).await;
    let c = client(&a, ClientConfig::default());
    for i in 0..100u64 {
        let r = c.get(&url("/")).await.unwrap();
        let inf = info(&r);
        let nth = i % 10 + 1;
        assert_eq!(inf.connection, i / 10 + 1);
        assert_eq!(inf.request_on_connection, nth);
        if nth < 10 {
            assert_eq!(r.headers()[CONNECTION], "keep-alive");
            let expect = format!("timeout=5, max={}", 10 - nth);
            assert_eq!(r.headers()["keep-alive"], expect.as_str());
            assert_eq!(
                inf.keep_alive,
                Some(KeepAlive {
                    timeout: Some(Duration::from_secs(5)),
                    max: Some(10 - nth)
                })
            );
            assert!(!inf.closed_after);
        } else {
            // RFC 9112 §9.6: the last response says close.
            assert_eq!(r.headers()[CONNECTION], "close");
            assert!(r.headers().get("keep-alive").is_none());
            assert!(inf.closed_after);
        }
    }
    let m = c.metrics();
    assert_eq!(m.connections_opened, 10);
    assert_eq!(m.reused, 90);
    assert_eq!(m.retired_by_server, 10);
    assert_eq!(m.retries + m.failures, 0);
    let s = srv.stats();
    assert_eq!((s.connections, s.requests), (10, 100));
    assert_eq!(s.closed_max_requests, 10);
    assert_eq!(s.max_requests_per_connection, 10);
    assert_eq!(tcp_handshakes(&a, &b), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn a_request_after_the_idle_timeout_opens_a_new_connection() {
    let (_net, a, b) = two_hosts(4, RTT);
    // No Keep-Alive header: the client cannot know the timeout, and must notice the FIN.
    let config = ServerConfig {
        keepalive_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let (srv, _) = server(&b, config).await;
    let c = client(&a, ClientConfig::default());
    c.get(&url("/")).await.unwrap();
    c.get(&url("/")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        srv.stats().closed_idle,
        1,
        "the server closed the idle connection"
    );
    let r = c.get(&url("/")).await.unwrap();
    let inf = info(&r);
    assert_eq!(inf.connection, 2);
    assert!(!inf.reused && !inf.retried);
    let m = c.metrics();
    assert_eq!(m.connections_opened, 2);
    assert_eq!(m.peer_closed, 1, "the FIN was noticed before reuse");
    assert_eq!(m.retries + m.failures, 0);
    assert_eq!(tcp_handshakes(&a, &b), (2, 2));

    // Within the timeout, the connection is reused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = c.get(&url("/")).await.unwrap();
    assert!(info(&r).reused);
    assert_eq!(c.metrics().connections_opened, 2);
}

#[tokio::test(start_paused = true)]
async fn the_client_retires_a_connection_before_the_announced_timeout() {
    let (_net, a, b) = two_hosts(5, RTT);
    let config = ServerConfig {
        keepalive_timeout: Duration::from_secs(5),
        keepalive_header: true,
        ..ServerConfig::default()
    };
    let (srv, _) = server(&b, config).await;
    let c = client(&a, ClientConfig::default());
    c.get(&url("/")).await.unwrap();
    let t1 = Instant::now();
    // timeout=5: the client closes at 5 s − (1 s + one handshake) = 3.95 s idle.
    tokio::time::sleep(Duration::from_millis(3900)).await;
    let origin = synack_http::Origin::from_uri(&url("/").parse().unwrap()).unwrap();
    assert_eq!(c.idle_connections(&origin), 1);
    tokio::time::sleep_until(t1 + Duration::from_millis(3960)).await;
    assert_eq!(c.idle_connections(&origin), 0, "retired at 3.95 s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = srv.stats();
    assert_eq!(s.closed_by_peer, 1, "the client's FIN closed it");
    assert_eq!(s.closed_idle, 0, "before the server's timeout");
    let r = c.get(&url("/")).await.unwrap();
    assert_eq!(info(&r).connection, 2);
    let m = c.metrics();
    assert_eq!(m.retired_keepalive, 1);
    assert_eq!(m.connections_opened, 2);
}

#[tokio::test(start_paused = true)]
async fn pool_concurrency_c_gives_c_connections() {
    for conc in [1usize, 2, 4, 8] {
        let (_net, a, b) = two_hosts(6 + conc as u64, RTT);
        let (srv, _) = server(&b, ServerConfig::default()).await;
        let config = ClientConfig {
            pool: PoolConfig {
                max_per_origin: conc,
                max_idle_per_origin: conc,
                ..PoolConfig::default()
            },
            ..ClientConfig::default()
        };
        let c = client(&a, config);
        // 5·C requests at once, each taking 100 ms at the server.
        let tasks: Vec<_> = (0..5 * conc)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.get(&url("/delay/100")).await })
            })
            .collect();
        let mut conns = std::collections::BTreeSet::new();
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            conns.insert(info(&r).connection);
        }
        let m = c.metrics();
        assert_eq!(m.connections_opened, conc as u64, "C = {conc}");
        assert_eq!(conns.len(), conc);
        assert_eq!(m.requests, 5 * conc as u64);
        assert_eq!(m.reused, 4 * conc as u64);
        assert_eq!(m.pool_waits, 4 * conc as u64);
        assert_eq!(srv.stats().connections, conc as u64);
        assert_eq!(tcp_handshakes(&a, &b), (conc as u64, conc as u64));
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_times_out_waiting() {
    let (_net, a, b) = two_hosts(20, RTT);
    let (_srv, _) = server(&b, ServerConfig::default()).await;
    let config = ClientConfig {
        pool: PoolConfig {
            max_per_origin: 1,
            pool_wait_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        },
        ..ClientConfig::default()
    };
    let c = client(&a, config);
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.get(&url("/delay/2000")).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let t0 = Instant::now();
    let e = c.get(&url("/")).await.unwrap_err();
    assert!(matches!(e, synack_http::Error::Pool(_)), "{e}");
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
    assert!(slow.await.unwrap().is_ok());
    let m = c.metrics();
    assert_eq!((m.pool_waits, m.pool_wait_timeouts), (1, 1));
    assert_eq!(m.connections_opened, 1);
}

#[tokio::test(start_paused = true)]
async fn the_idle_limit_and_the_client_idle_timeout() {
    let (_net, a, b) = two_hosts(21, RTT);
    let (srv, _) = server(&b, ServerConfig::default()).await;
    let config = ClientConfig {
        pool: PoolConfig {
            max_per_origin: 4,
            max_idle_per_origin: 2,
            idle_timeout: Duration::from_secs(2),
            ..PoolConfig::default()
        },
        ..ClientConfig::default()
    };
    let c = client(&a, config);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get(&url("/delay/100")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let origin = synack_http::Origin::from_uri(&url("/").parse().unwrap()).unwrap();
    assert_eq!(
        c.idle_connections(&origin),
        2,
        "two closed beyond the idle limit"
    );
    assert_eq!(c.metrics().evicted_idle, 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        c.idle_connections(&origin),
        0,
        "the idle timeout closed the rest"
    );
    assert_eq!(c.metrics().evicted_idle, 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(srv.stats().closed_by_peer, 4);
    assert_eq!(srv.stats().active_connections, 0);
}

#[tokio::test(start_paused = true)]
async fn keepalive_time_limits_a_connections_life() {
    let (_net, a, b) = two_hosts(22, RTT);
    let config = ServerConfig {
        keepalive_time: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let (srv, _) = server(&b, config).await;
    let c = client(&a, ClientConfig::default());
    let mut closes = Vec::new();
    for i in 0..10 {
        let r = c.get(&url("/")).await.unwrap();
        if info(&r).closed_after {
            closes.push(i);
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    // Requests every 500 ms (450 ms + 1 RTT); the connection is 2 s old at the 5th
    // response (1 RTT handshake + 4·500 ms + ...).
    assert_eq!(closes, vec![4, 9]);
    assert_eq!(srv.stats().closed_max_time, 2);
    assert_eq!(c.metrics().connections_opened, 2);
}

#[tokio::test(start_paused = true)]
async fn keepalive_timeout_zero_disables_persistence() {
    let (_net, a, b) = two_hosts(23, RTT);
    let config = ServerConfig {
        keepalive_timeout: Duration::ZERO,
        ..ServerConfig::default()
    };
    let (srv, _) = server(&b, config).await;
    let c = client(&a, ClientConfig::default());
    for _ in 0..5 {
        let r = c.get(&url("/")).await.unwrap();
        assert_eq!(r.headers()[CONNECTION], "close");
    }
    assert_eq!(c.metrics().connections_opened, 5);
    assert_eq!(srv.stats().connections, 5);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let (_net, a, b) = two_hosts(24, RTT);
    let (srv, counts) = server(&b, ServerConfig::default()).await;
    let c = client(&a, ClientConfig::default());
    // An idle connection, and one with a request in flight.
    c.get(&url("/")).await.unwrap();
    let c2 = client(&a, ClientConfig::default());
    let slow = tokio::spawn(async move { c2.get(&url("/delay/1000")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = srv.shutdown(Duration::from_secs(10)).await;
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref(), b"GET /delay/1000 0\n");
    assert_eq!(r.headers()[CONNECTION], "close");
    assert_eq!(counts.gets(), 2);
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.active_connections, 0);
    assert_eq!(stats.errors, 0);
    // The listener is gone: a new request is refused.
    let e = client(&a, ClientConfig::default())
        .get(&url("/"))
        .await
        .unwrap_err();
    assert!(matches!(e, synack_http::Error::Connect { .. }), "{e}");
}

#[tokio::test(start_paused = true)]
async fn header_read_timeout_and_max_header_size() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_net, a, b) = two_hosts(25, RTT);
    let config = ServerConfig {
        header_read_timeout: Duration::from_secs(3),
        max_header_size: 1024,
        ..ServerConfig::default()
    };
    let (srv, counts) = server(&b, config).await;
    let to = std::net::SocketAddr::new(ip(SERVER), 80);
    // Half a request head, then nothing: closed 3 s after its first byte arrived.
    let mut s = synack_stack::net::TcpStream::connect(&a, to).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(3) + RTT);
    assert!(buf.is_empty());
    assert_eq!(srv.stats().header_timeouts, 1);

    // A head over 1 KiB: 431, and the connection closes.
    let mut s = synack_stack::net::TcpStream::connect(&a, to).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    s.write_all(big.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let head = String::from_utf8_lossy(&buf);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(counts.gets(), 0);
}
