//! The `Alt-Svc` upgrade (RFC 7838, RFC 9114 §3.1.1) on the simulated network, in virtual
//! time: the first call to an `https://` origin goes over TCP and TLS (HTTP/2 by ALPN), its
//! response says `Alt-Svc: h3=":443"`, and the later calls go over HTTP/3 as streams of one
//! QUIC connection; an alternative expires after its `ma`; one whose QUIC handshake does not
//! complete is marked broken and the calls fall back to TCP.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use synack_http::h3::{self, AltSvc, AltSvcClient, H3Client, H3Config, H3ServerStats, Via};
use synack_http::routes::{pattern_byte, Routes};
use synack_http::tls::SelfSigned;
use synack_http::{
    serve, CertVerification, Client, ClientConfig, Protocol, RequestInfo, ServerConfig,
    ServerHandle, SynackConnector, TlsClientConfig, TlsServerConfig,
};
use synack_stack::net::{SimNet, TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long the client gives a QUIC handshake before it calls the alternative broken.
const QUIC_TIMEOUT: Duration = Duration::from_secs(1);

struct World {
    _net: SimNet,
    client: Arc<AltSvcClient>,
    tcp_server: ServerHandle,
    h3_server: Arc<H3ServerStats>,
    h3_endpoint: quinn::Endpoint,
}

/// A server speaking HTTPS on TCP 443 whose responses advertise HTTP/3 on UDP `alt_port`
/// for `ma` seconds, and HTTP/3 on UDP 443; a client that follows `Alt-Svc`.
async fn world(seed: u64, alt_port: u16, ma: u64) -> World {
    let (net, a, b) = two_hosts(seed, RTT);
    let cert = SelfSigned::generate_ed25519(&[SERVER.to_string()]).unwrap();
    let addr: SocketAddr = format!("{SERVER}:443").parse().unwrap();
    let routes = Routes::new().with_virtual_date(std::time::UNIX_EPOCH);
    let listener = TcpListener::bind(&b, addr).await.unwrap();
    let tcp_server = serve(
        listener,
        ServerConfig {
            tls: Some(TlsServerConfig::with_self_signed(&cert).unwrap()),
            ..ServerConfig::default()
        },
        AltSvc::new(routes.clone(), Some(alt_port), ma),
    );
    let scfg = h3::server_config(
        vec![cert.cert.clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        &H3Config::default(),
    )
    .unwrap();
    let ssock = UdpSocket::bind(&b, addr).await.unwrap();
    let (h3_endpoint, _) = h3::synack_endpoint_seeded(ssock, Some(scfg), Some(seed)).unwrap();
    let h3_server = Arc::new(H3ServerStats::default());
    tokio::spawn(h3::serve_h3(
        h3_endpoint.clone(),
        routes,
        false,
        h3_server.clone(),
    ));

    let tls = TlsClientConfig {
        verification: CertVerification::ca_pem(cert.cert_pem.as_bytes()).unwrap(),
    };
    let tcp = Client::new(
        SynackConnector::new(&a),
        ClientConfig {
            tls: tls.clone(),
            ..ClientConfig::default()
        },
    );
    let csock = UdpSocket::bind(&a, "0.0.0.0:0").await.unwrap();
    let (cep, _) = h3::synack_endpoint_seeded(csock, None, Some(seed ^ 1)).unwrap();
    let h3c = H3Client::new(cep, h3::client_config(&tls, false).unwrap(), false);
    World {
        _net: net,
        client: Arc::new(AltSvcClient::new(tcp, h3c, QUIC_TIMEOUT)),
        tcp_server,
        h3_server,
        h3_endpoint,
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(600), f)
        .await
        .expect("virtual time limit")
}

/// GET /bytes/`n` from the server, checked byte for byte; how it came.
async fn get(c: &AltSvcClient, n: usize) -> (Via, Option<Protocol>) {
    let req = Request::get(format!("https://{SERVER}/bytes/{n}"))
        .body(Bytes::new())
        .unwrap();
    let (r, via) = c.request(req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().len(), n);
    assert!(r
        .body()
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern_byte(i as u64)));
    let proto = r.extensions().get::<RequestInfo>().map(|i| i.protocol);
    (via, proto)
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

async fn finish(w: World) {
    w.client.h3().close().await;
    w.h3_endpoint.close(0u32.into(), b"");
    w.tcp_server.shutdown(Duration::from_secs(5)).await;
}

/// Call 1 over TCP and TLS (HTTP/2 by ALPN) learns `h3=":443"`; calls 2..10 one after
/// another, then 20 at once, go over HTTP/3: one TCP connection, one TLS handshake, one
/// QUIC connection carrying 29 streams, on the client and on the server alike.
#[tokio::test(start_paused = true)]
async fn the_first_call_goes_over_tcp_the_later_ones_over_one_quic_connection() {
    let w = world(61, 443, 86_400).await;
    let c = w.client.clone();
    let t0 = Instant::now();
    assert_eq!(
        bounded(get(&c, 100)).await,
        (Via::Tcp, Some(Protocol::Http2))
    );
    // TCP's handshake, TLS's, then the request: three round trips.
    assert!(t0.elapsed() >= RTT * 3 && t0.elapsed() < RTT * 3 + RTT / 5);
    let t1 = Instant::now();
    for _ in 2..=10 {
        let (via, proto) = bounded(get(&c, 1000)).await;
        assert_eq!(
            (via, proto),
            (
                Via::Http3 {
                    port: 443,
                    early: false
                },
                None
            )
        );
    }
    // Call 2 opened the QUIC connection (one round trip, transport and TLS together) and
    // the 9 calls took one round trip each.
    let took = t1.elapsed();
    assert!(took >= RTT * 10 && took < RTT * 10 + RTT / 2, "{took:?}");
    let mut set = JoinSet::new();
    for _ in 0..20 {
        let c = c.clone();
        set.spawn(async move { bounded(get(&c, 5000)).await.0 });
    }
    while let Some(v) = set.join_next().await {
        assert!(matches!(v.unwrap(), Via::Http3 { port: 443, .. }));
    }
    let tcp = c.tcp().metrics();
    assert_eq!(
        (tcp.connections_opened, tcp.tls_handshakes, tcp.requests),
        (1, 1, 1)
    );
    let h3 = c.h3().stats();
    assert_eq!((load(&h3.connections), load(&h3.requests)), (1, 29));
    let s = c.stats();
    assert_eq!(
        (
            load(&s.learned),
            load(&s.over_tcp),
            load(&s.over_h3),
            load(&s.broken)
        ),
        (1, 1, 29, 0)
    );
    let served = w.tcp_server.stats();
    assert_eq!((served.connections, served.requests), (1, 1));
    assert_eq!(
        (
            load(&w.h3_server.connections),
            load(&w.h3_server.requests),
            load(&w.h3_server.failed)
        ),
        (1, 29, 0)
    );
    finish(w).await;
}

/// `ma=60`: 60 s after it was learned the alternative is gone, the next call goes over TCP
/// again and learns it anew; the QUIC connection closed at its idle timeout meanwhile, so
/// the call after it opens a second one.
#[tokio::test(start_paused = true)]
async fn an_alternative_expires_after_its_max_age() {
    let w = world(62, 443, 60).await;
    let c = w.client.clone();
    assert_eq!(bounded(get(&c, 10)).await.0, Via::Tcp);
    assert!(matches!(bounded(get(&c, 10)).await.0, Via::Http3 { .. }));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(matches!(bounded(get(&c, 10)).await.0, Via::Http3 { .. }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bounded(get(&c, 10)).await.0, Via::Tcp);
    assert!(matches!(bounded(get(&c, 10)).await.0, Via::Http3 { .. }));
    let s = c.stats();
    assert_eq!(
        (load(&s.learned), load(&s.over_tcp), load(&s.over_h3)),
        (2, 2, 3)
    );
    // The QUIC connection idled out (30 s) between calls 2 and 3.
    assert_eq!(load(&c.h3().stats().connections), 2);
    assert_eq!(load(&w.h3_server.requests), 3);
    finish(w).await;
}

/// The server advertises HTTP/3 on UDP 8443, where nothing listens: call 2 waits
/// `QUIC_TIMEOUT` for a handshake, marks the alternative broken and goes over TCP on the
/// kept connection; call 3 goes straight over TCP, trying no QUIC at all.
#[tokio::test(start_paused = true)]
async fn a_dead_alternative_falls_back_to_tcp_and_is_left_alone() {
    let w = world(63, 8443, 86_400).await;
    let c = w.client.clone();
    assert_eq!(bounded(get(&c, 10)).await.0, Via::Tcp);
    let t = Instant::now();
    assert_eq!(bounded(get(&c, 10)).await.0, Via::Tcp);
    let took = t.elapsed();
    assert!(
        took >= QUIC_TIMEOUT + RTT && took < QUIC_TIMEOUT + RTT * 2,
        "{took:?}"
    );
    let t = Instant::now();
    assert_eq!(bounded(get(&c, 10)).await.0, Via::Tcp);
    assert!(t.elapsed() < RTT * 2);
    let s = c.stats();
    assert_eq!(
        (
            load(&s.over_tcp),
            load(&s.over_h3),
            load(&s.broken),
            load(&s.fell_back)
        ),
        (3, 0, 1, 1)
    );
    assert_eq!(load(&c.h3().stats().connections), 1, "one QUIC attempt");
    let tcp = c.tcp().metrics();
    assert_eq!((tcp.connections_opened, tcp.requests), (1, 3));
    assert_eq!(load(&w.h3_server.connections), 0);
    finish(w).await;
}
