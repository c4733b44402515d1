//! HTTP/3 over QUIC (quinn, h3) on synack's UDP, on the simulated network in virtual time:
//! one QUIC handshake carries transport and TLS together (one round trip, RFC 9001 §4.1), N
//! requests ride one connection as N streams, a second connection resumes with 0-RTT and its
//! first request goes in the first flight (RFC 9001 §4.6.1), and the same seed gives the
//! same datagram counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use synack_http::h3::{self, H3Client, H3Config, H3ServerStats, SocketStats};
use synack_http::routes::{pattern_byte, Routes};
use synack_http::tls::SelfSigned;
use synack_http::{CertVerification, TlsClientConfig};
use synack_stack::net::{SimNet, Stack, UdpSocket};
use synack_stack::sim::PathConfig;
use synack_tcp::Config;
use tokio::task::JoinSet;
use tokio::time::Instant;

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
const RTT: Duration = Duration::from_millis(50);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn server_addr() -> SocketAddr {
    SocketAddr::new(ip(SERVER), 443)
}

fn two_hosts(seed: u64) -> (SimNet, Stack, Stack) {
    let net = SimNet::new(seed);
    let a = net.add_host("client", &[ip(CLIENT)], Config::default());
    let b = net.add_host("server", &[ip(SERVER)], Config::default());
    let half = PathConfig::delay(RTT / 2);
    net.link(&a, &b, half.clone(), half);
    (net, a, b)
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("virtual time limit")
}

struct Setup {
    net: SimNet,
    client_stack: Stack,
    client: H3Client,
    client_sock: Arc<synack_http::h3::SocketCounters>,
    server_sock: Arc<synack_http::h3::SocketCounters>,
    server: Arc<H3ServerStats>,
    config: quinn::ClientConfig,
}

async fn setup(seed: u64, early_data: bool) -> Setup {
    let (net, a, b) = two_hosts(seed);
    // Ed25519: signatures of one size, so every run sends the same number of bytes.
    let cert = SelfSigned::generate_ed25519(&[SERVER.to_string()]).unwrap();
    let cfg = H3Config {
        early_data,
        ..H3Config::default()
    };
    let scfg = h3::server_config(
        vec![cert.cert.clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        &cfg,
    )
    .unwrap();
    let ssock = UdpSocket::bind(&b, server_addr()).await.unwrap();
    let (sep, server_sock) = h3::synack_endpoint_seeded(ssock, Some(scfg), Some(seed)).unwrap();
    let server = Arc::new(H3ServerStats::default());
    tokio::spawn(h3::serve_h3(
        sep,
        Routes::new().with_virtual_date(std::time::UNIX_EPOCH),
        early_data,
        server.clone(),
    ));
    let tls = TlsClientConfig {
        verification: CertVerification::ca_pem(cert.cert_pem.as_bytes()).unwrap(),
    };
    let config = h3::client_config(&tls, early_data).unwrap();
    let (client, client_sock) = new_client(&a, &config, early_data, seed).await;
    Setup {
        net,
        client_stack: a,
        client,
        client_sock,
        server_sock,
        server,
        config,
    }
}

async fn new_client(
    a: &Stack,
    config: &quinn::ClientConfig,
    early: bool,
    seed: u64,
) -> (H3Client, Arc<synack_http::h3::SocketCounters>) {
    let csock = UdpSocket::bind(a, "0.0.0.0:0").await.unwrap();
    let (cep, counters) = h3::synack_endpoint_seeded(csock, None, Some(seed ^ 1)).unwrap();
    (H3Client::new(cep, config.clone(), early), counters)
}

fn check_body(body: &[u8], n: usize) {
    assert_eq!(body.len(), n);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern_byte(i as u64)));
}

/// A GET, then 100 concurrent GETs: one QUIC connection (one handshake), 101 streams, every
/// body exact;
/// the first response arrives two round trips after the start (one for QUIC's handshake,
/// transport and TLS together, one for the request), where TCP+TLS needs three.
async fn run_calls(seed: u64) -> (SocketStats, SocketStats, Duration) {
    let s = setup(seed, false).await;
    let client = Arc::new(s.client);
    let t0 = Instant::now();
    let first = bounded(client.get(server_addr(), SERVER, "/bytes/100"))
        .await
        .unwrap();
    let ttfb = t0.elapsed();
    assert_eq!(first.status, 200);
    check_body(&first.body, 100);
    let mut set = JoinSet::new();
    for i in 0..100usize {
        let c = client.clone();
        set.spawn(async move {
            let n = 1000 + i * 10;
            let r = c
                .get(server_addr(), SERVER, &format!("/bytes/{n}"))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            check_body(&r.body, n);
        });
    }
    while let Some(r) = bounded(set.join_next()).await {
        r.unwrap();
    }
    assert_eq!(
        s.server.connections.load(Ordering::Relaxed),
        1,
        "one handshake"
    );
    assert_eq!(
        s.server.requests.load(Ordering::Relaxed),
        101,
        "101 streams"
    );
    let st = client.stats();
    assert_eq!(st.connections.load(Ordering::Relaxed), 1);
    assert_eq!(st.requests.load(Ordering::Relaxed), 101);
    let q = client.connection(server_addr(), SERVER).await.unwrap();
    // Streams 0, 4, ..., 400: the client's bidirectional streams, one per request.
    assert!(q.stats().frame_rx.stream > 0);
    client.close().await;
    bounded(client.endpoint().wait_idle()).await;
    drop(s.client_stack);
    let _ = s.net;
    (s.client_sock.snapshot(), s.server_sock.snapshot(), ttfb)
}

#[tokio::test(start_paused = true)]
async fn h3_get_one_handshake_many_streams() {
    let (c, s, ttfb) = run_calls(7).await;
    // One round trip of handshake, one of request: 2 RTTs plus the transmission time of the
    // server's first flight (no bandwidth limit here: zero).
    assert!(
        ttfb >= RTT * 2 && ttfb < RTT * 2 + Duration::from_millis(5),
        "{ttfb:?}"
    );
    assert_eq!(c.tx_datagrams, s.rx_datagrams, "no loss: all arrive");
    assert_eq!(s.tx_datagrams, c.rx_datagrams);
    assert_eq!(c.tx_errors + s.tx_errors, 0);
    // Deterministic at this seed (quinn seeded, Ed25519 certificate, no GREASE): the
    // datagrams each way, the handshake's and the 101 requests' and replies' together.
    assert_eq!((c.tx_datagrams, s.tx_datagrams), (28, 125));
    assert_eq!((c.tx_bytes, s.tx_bytes), (12_164, 166_131));
    println!("client {c:?}\nserver {s:?}\nttfb {ttfb:?}");
}

/// The same seed, the same run: the same numbers of datagrams and bytes each way.
#[tokio::test(start_paused = true)]
async fn h3_same_seed_same_datagram_counts() {
    let a = run_calls(11).await;
    let b = run_calls(11).await;
    assert_eq!(a, b);
}

/// A second client endpoint with the first's configuration (its session tickets) resumes:
/// its GET goes in 0-RTT with the first flight and the answer comes one round trip after
/// the start; the server counts the request as early. A POST is never sent early.
#[tokio::test(start_paused = true)]
async fn h3_return_visit_with_0rtt() {
    let s = setup(5, true).await;
    let t0 = Instant::now();
    let r = bounded(s.client.get(server_addr(), SERVER, "/bytes/10"))
        .await
        .unwrap();
    let first = t0.elapsed();
    assert_eq!(r.status, 200);
    assert!(!r.early);
    assert!(first >= RTT * 2, "{first:?}");
    // Let the session ticket arrive, then leave.
    tokio::time::sleep(RTT).await;
    s.client.close().await;
    bounded(s.client.endpoint().wait_idle()).await;

    let (again, _) = new_client(&s.client_stack, &s.config, true, 99).await;
    let t0 = Instant::now();
    let r = bounded(again.get(server_addr(), SERVER, "/bytes/10"))
        .await
        .unwrap();
    let second = t0.elapsed();
    assert_eq!(r.status, 200);
    check_body(&r.body, 10);
    assert!(r.early, "sent in 0-RTT");
    assert!(
        second >= RTT && second < RTT + Duration::from_millis(5),
        "{second:?}"
    );
    let st = again.stats();
    assert_eq!(st.zero_rtt_attempted.load(Ordering::Relaxed), 1);
    let post = bounded(again.request(
        http::Method::POST,
        server_addr(),
        SERVER,
        "/upload",
        bytes::Bytes::from_static(b"abc"),
    ))
    .await
    .unwrap();
    assert_eq!(post.status, 200);
    assert!(!post.early);
    assert_eq!(&post.body[..], b"received 3 bytes\n");
    assert_eq!(s.server.connections.load(Ordering::Relaxed), 2);
    assert_eq!(s.server.early_requests.load(Ordering::Relaxed), 1);
    assert_eq!(s.server.zero_rtt.load(Ordering::Relaxed), 1);
    assert_eq!(st.zero_rtt_accepted.load(Ordering::Relaxed), 1);
    println!("first visit {first:?}, return visit {second:?}");
}
