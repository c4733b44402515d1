//! synack's client against synack's own server, both HTTP/2, on the simulated network
//! (50 ms RTT), in virtual time: h2c with prior knowledge and h2 by ALPN over TLS (the
//! server's self-signed certificate as the client's only root); the server's
//! `keepalive_requests` ends a connection with GOAWAY after N streams, as nginx does, and
//! every request is still processed exactly once.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use synack_http::{
    serve, CertVerification, Client, ClientConfig, Http2ClientConfig, Protocol, RequestInfo,
    ServerConfig, TlsClientConfig, TlsServerConfig,
};
use synack_stack::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

fn info(r: &http::Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}

async fn posts(c: &Client, base: &str, n: usize) -> Vec<RequestInfo> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let (c, url) = (c.clone(), format!("{base}/p{i}"));
        set.spawn(async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri(&url)
                .body(Bytes::from(format!("call {i}")))
                .unwrap();
            let r = c
                .request(req)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(r.status(), 200);
            let want = format!("POST /p{i} {}\n", format!("call {i}").len());
            assert_eq!(r.body(), want.as_bytes());
            info(&r)
        });
    }
    let mut v = Vec::new();
    while let Some(r) = set.join_next().await {
        v.push(r.unwrap());
    }
    v
}

#[tokio::test(start_paused = true)]
async fn h2c_against_synack_serve_one_connection_then_goaway_after_n_streams() {
    let (_net, a, b) = two_hosts(51, RTT);
    let addr: SocketAddr = format!("{SERVER}:80").parse().unwrap();
    let listener = TcpListener::bind(&b, addr).await.unwrap();
    let counts = std::sync::Arc::new(Counts::default());
    let srv = serve(
        listener,
        ServerConfig {
            h2c: true,
            keepalive_requests: 30,
            ..ServerConfig::default()
        },
        counting_service(counts.clone()),
    );
    let c = client(
        &a,
        ClientConfig {
            http2: Http2ClientConfig {
                prior_knowledge: true,
                ..Http2ClientConfig::default()
            },
            ..ClientConfig::default()
        },
    );
    // 20 at once: one connection, all its streams.
    let t0 = Instant::now();
    let infos = posts(&c, &url(""), 20).await;
    assert_eq!(t0.elapsed(), RTT * 2);
    assert!(infos
        .iter()
        .all(|i| i.connection == 1 && i.protocol == Protocol::Http2));
    // 100 more at once: the server allows 30 streams a connection, then GOAWAY.
    posts(&c, &url(""), 100).await;
    let m = c.metrics();
    assert_eq!(counts.posts(), 120, "each POST processed once");
    assert_eq!((m.responses, m.failures, m.maybe_processed), (120, 0, 0));
    assert_eq!(
        m.requests,
        120 + m.retries_goaway + m.retries_refused,
        "{m:?}"
    );
    assert_eq!(m.connections_opened, 4, "{m:?}");
    let s = srv.stats();
    assert_eq!((s.connections, s.requests), (4, 120));
}

#[tokio::test(start_paused = true)]
async fn h2_by_alpn_against_synack_serve_tls() {
    let (_net, a, b) = two_hosts(52, RTT);
    let addr: SocketAddr = format!("{SERVER}:443").parse().unwrap();
    let listener = TcpListener::bind(&b, addr).await.unwrap();
    let (tls, cert) = TlsServerConfig::self_signed(ip(SERVER)).unwrap();
    let counts = std::sync::Arc::new(Counts::default());
    let srv = serve(
        listener,
        ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        },
        counting_service(counts.clone()),
    );
    let c = client(
        &a,
        ClientConfig {
            tls: TlsClientConfig {
                verification: CertVerification::ca_pem(cert.cert_pem.as_bytes()).unwrap(),
            },
            ..ClientConfig::default()
        },
    );
    let t0 = Instant::now();
    let infos = posts(&c, &format!("https://{SERVER}"), 20).await;
    // TCP, TLS 1.3, the calls: three round trips.
    assert_eq!(t0.elapsed(), RTT * 3);
    assert!(infos.iter().all(|i| i.connection == 1
        && i.protocol == Protocol::Http2
        && i.tls
            .as_ref()
            .is_some_and(|t| t.alpn.as_deref() == Some("h2"))));
    let m = c.metrics();
    assert_eq!(
        (m.connections_opened, m.tls_handshakes, m.h2_streams),
        (1, 1, 20)
    );
    let s = srv.stats();
    assert_eq!((s.connections, s.requests), (1, 20));
    assert_eq!(counts.posts(), 20);
}
