//! The client's TLS on the simulated network (50 ms RTT), in virtual time, against a
//! rustls server made in the test: certificates checked against given roots, the system's
//! (which refuse a self-signed one) or none (`InsecureAcceptAnyCertificate`); ALPN picks
//! HTTP/2 or HTTP/1.1 (RFC 7301, RFC 9113 §3.2), and HTTP/1.1 over TLS goes through the
//! keep-alive pool; each connection costs one TCP and one TLS handshake (TLS 1.3: one
//! round trip, RFC 8446 §2).

mod common;
mod h2_client_support;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use h2_client_support::*;
use http::header::CONNECTION;
use http::Request;
use synack_http::connector::ConnectFuture;
use synack_http::{
    CertVerification, Client, ClientConfig, Connector, Error, Origin, PoolConfig, Protocol,
    RequestInfo, SynackConnector, TlsClientConfig,
};
use tokio::task::JoinSet;
use tokio::time::Instant;

const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

fn info(r: &http::Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}

fn addr() -> SocketAddr {
    format!("{SERVER}:443").parse().unwrap()
}

fn https(path: &str) -> String {
    format!("https://{SERVER}{path}")
}

fn trusting(cert: &TestCert) -> ClientConfig {
    ClientConfig {
        tls: TlsClientConfig {
            verification: CertVerification::ca_pem(cert.pem.as_bytes()).unwrap(),
        },
        ..ClientConfig::default()
    }
}

async fn concurrent(c: &Client, n: usize) -> Vec<RequestInfo> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        set.spawn(async move {
            let r = c
                .get(&https(&format!("/{i}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.status(), 200);
            assert_eq!(r.body(), format!("GET /{i} 0\n").as_bytes());
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
async fn https_speaks_h2_by_alpn_on_one_connection_with_a_given_root() {
    let (_net, a, b) = two_hosts(41, RTT);
    let cert = self_signed(&[SERVER]);
    let srv = tls_server(&b, addr(), &cert, H2_H1).await;
    let c = client(&a, trusting(&cert));
    let t0 = Instant::now();
    let infos = concurrent(&c, 20).await;
    // TCP handshake, TLS 1.3 handshake, then the calls: three round trips.
    assert_eq!(t0.elapsed(), RTT * 3);
    assert!(infos
        .iter()
        .all(|i| i.connection == 1 && i.protocol == Protocol::Http2 && i.new_connection));
    let opener = infos.iter().find(|i| i.handshake.is_some()).unwrap();
    assert_eq!(
        (opener.handshake, opener.tls_handshake),
        (Some(RTT), Some(RTT))
    );
    let tls = opener.tls.clone().unwrap();
    assert_eq!(
        (tls.version.as_str(), tls.alpn.as_deref()),
        ("TLSv1.3", Some("h2"))
    );
    let m = c.metrics();
    assert_eq!(
        (m.connections_opened, m.tls_handshakes, m.h2_connections),
        (1, 1, 1)
    );
    assert_eq!(
        (m.tls_handshake_time, m.h2_streams, m.responses),
        (RTT, 20, 20)
    );
    assert_eq!((srv.handshakes(), srv.h2_connections()), (1, 1));
    assert_eq!(srv.http.requests(), 20);
    let json = m.to_json();
    assert!(json.contains("\"tls_handshakes\":1,"), "{json}");
    assert!(json.ends_with(",\"tls_handshake_ms\":50.000}"), "{json}");
    assert_eq!(
        c.protocol(&synack_http::Origin::parse(&https("/")).unwrap().1),
        Some(Protocol::Http2)
    );
}

#[tokio::test(start_paused = true)]
async fn https_1_1_goes_through_the_keepalive_pool() {
    let (_net, a, b) = two_hosts(42, RTT);
    let cert = self_signed(&[SERVER]);
    let srv = tls_server(&b, addr(), &cert, H1_ONLY).await;
    let mut config = trusting(&cert);
    config.pool = PoolConfig {
        max_per_origin: 4,
        ..PoolConfig::default()
    };
    let c = client(&a, config);
    // Eight at once while the origin's protocol is unknown: the first connection tells
    // (http/1.1), and the others then take up to 4 connections.
    let infos = concurrent(&c, 8).await;
    assert!(infos.iter().all(|i| i.protocol == Protocol::Http1));
    let tls = infos[0].tls.clone().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    let m = c.metrics();
    assert_eq!(
        (m.connections_opened, m.tls_handshakes, m.h2_connections),
        (4, 4, 0)
    );
    // Sequential calls then reuse them: no handshake of either kind.
    for i in 0..10 {
        let r = c.get(&https(&format!("/s{i}"))).await.unwrap();
        let inf = info(&r);
        assert!(inf.reused && inf.handshake.is_none() && inf.tls_handshake.is_none());
        assert!(inf.tls.is_some());
    }
    let m = c.metrics();
    assert_eq!(
        (m.connections_opened, m.tls_handshakes, m.requests),
        (4, 4, 18)
    );
    assert_eq!((srv.handshakes(), srv.http.requests()), (4, 18));

    // A new connection per call: a TCP and a TLS handshake each, three round trips a call.
    let c = client(&a, trusting(&cert));
    let t0 = Instant::now();
    for i in 0..5 {
        let req = Request::get(https(&format!("/c{i}")))
            .header(CONNECTION, "close")
            .body(Bytes::new())
            .unwrap();
        let r = c.request(req).await.unwrap();
        assert!(info(&r).closed_after);
    }
    assert_eq!(t0.elapsed(), RTT * 5 * 3);
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.tls_handshakes), (5, 5));
    assert_eq!(m.tls_handshake_time, RTT * 5);
    assert_eq!(srv.handshakes(), 4 + 5);
}

#[tokio::test(start_paused = true)]
async fn without_alpn_h2_the_client_speaks_http_1_1() {
    let (_net, a, b) = two_hosts(43, RTT);
    let cert = self_signed(&[SERVER]);
    let srv = tls_server(&b, addr(), &cert, H2_H1).await;
    let mut config = trusting(&cert);
    config.http2.alpn = false;
    let c = client(&a, config);
    let r = c.get(&https("/")).await.unwrap();
    let i = info(&r);
    assert_eq!(i.protocol, Protocol::Http1);
    assert_eq!(i.tls.unwrap().alpn.as_deref(), Some("http/1.1"));
    assert_eq!(srv.h2_connections(), 0);

    // A server without ALPN: HTTP/1.1.
    let (_net, a, b) = two_hosts(44, RTT);
    let srv = tls_server(&b, addr(), &cert, &[]).await;
    let c = client(&a, trusting(&cert));
    let r = c.get(&https("/")).await.unwrap();
    let i = info(&r);
    assert_eq!((i.protocol, i.tls.unwrap().alpn), (Protocol::Http1, None));
    assert_eq!(srv.handshakes(), 1);
}

#[tokio::test(start_paused = true)]
async fn certificates_are_checked_or_insecurely_not() {
    let (_net, a, b) = two_hosts(45, RTT);
    let cert = self_signed(&[SERVER]);
    let srv = tls_server(&b, addr(), &cert, H2_H1).await;
    // The system's roots do not know a self-signed certificate.
    let c = client(&a, ClientConfig::default());
    let e = c.get(&https("/")).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("invalid peer certificate"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    let m = c.metrics();
    assert_eq!(
        (m.tls_failures, m.connect_errors, m.tls_handshakes),
        (1, 1, 0)
    );

    // -k: accepted, whatever it is.
    let c = client(
        &a,
        ClientConfig {
            tls: TlsClientConfig {
                verification: CertVerification::InsecureAcceptAnyCertificate,
            },
            ..ClientConfig::default()
        },
    );
    let r = c.get(&https("/")).await.unwrap();
    assert_eq!(info(&r).protocol, Protocol::Http2);
    assert_eq!(srv.handshakes(), 1);

    // A root that signed a certificate for another name: refused.
    let other = self_signed(&["other.example"]);
    let (_net, a, b) = two_hosts(46, RTT);
    tls_server(&b, addr(), &other, H2_H1).await;
    let c = client(&a, trusting(&other));
    let e = c.get(&https("/")).await.unwrap_err().to_string();
    assert!(e.contains("not valid for name \"198.18.0.2\""), "{e}");

    // A PEM file without a certificate is refused up front.
    let e = CertVerification::ca_pem(b"nothing here").unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
}

/// Connects to names as if a resolver said `SERVER` for every one (synack's stack has none).
struct AllNamesAreTheServer(SynackConnector);

impl Connector for AllNamesAreTheServer {
    fn connect<'a>(&'a self, origin: &'a Origin) -> ConnectFuture<'a> {
        Box::pin(async move {
            let mut at = origin.clone();
            at.host = SERVER.to_owned();
            self.0.connect(&at).await
        })
    }
}

/// The URL's host is the name the certificate must carry and the SNI the server sees
/// (RFC 6066 §3); an IP address is checked against the certificate's addresses and sends
/// no SNI.
#[tokio::test(start_paused = true)]
async fn the_url_host_is_the_sni_and_the_name_checked() {
    let (_net, a, b) = two_hosts(47, RTT);
    let cert = self_signed(&["api.example.test", SERVER]);
    let srv = tls_server(&b, addr(), &cert, H2_H1).await;
    let c = Client::new(
        AllNamesAreTheServer(SynackConnector::new(&a)),
        trusting(&cert),
    );
    let r = c.get("https://api.example.test/x").await.unwrap();
    assert_eq!(r.body().as_ref(), b"GET /x 0\n");
    let r = c.get(&https("/y")).await.unwrap();
    assert_eq!(info(&r).connection, 2, "another origin, another connection");
    let e = c
        .get("https://other.example.test/")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not valid for name \"other.example.test\""),
        "{e}"
    );
    // The refused one never completed its handshake on the server either.
    assert_eq!(
        *srv.sni.lock().unwrap(),
        [Some("api.example.test".to_owned()), None]
    );
}

/// The origin spoke HTTP/1.1; a later connection's ALPN picks h2: that connection goes to
/// the HTTP/2 pool, and the origin's requests follow it.
#[tokio::test(start_paused = true)]
async fn an_origin_that_starts_picking_h2_moves_to_the_http2_pool() {
    let (_net, a, b) = two_hosts(48, RTT);
    let cert = self_signed(&[SERVER]);
    let srv = tls_server_switching(&b, addr(), &cert, H1_ONLY, 1, H2_H1).await;
    let c = client(&a, trusting(&cert));
    let origin = Origin::parse(&https("/")).unwrap().1;
    let req = Request::get(https("/1"))
        .header(CONNECTION, "close")
        .body(Bytes::new())
        .unwrap();
    let i = info(&c.request(req).await.unwrap());
    assert_eq!((i.protocol, i.connection), (Protocol::Http1, 1));
    assert_eq!(c.protocol(&origin), Some(Protocol::Http1));
    let i = info(&c.get(&https("/2")).await.unwrap());
    assert_eq!((i.protocol, i.connection), (Protocol::Http2, 2));
    assert!(i.new_connection && i.handshake == Some(RTT) && i.tls_handshake == Some(RTT));
    assert_eq!(c.protocol(&origin), Some(Protocol::Http2));
    let infos = concurrent(&c, 10).await;
    assert!(infos
        .iter()
        .all(|i| i.connection == 2 && i.protocol == Protocol::Http2));
    let m = c.metrics();
    assert_eq!(
        (m.connections_opened, m.h2_connections, m.tls_handshakes),
        (2, 1, 2)
    );
    assert_eq!((srv.handshakes(), srv.h2_connections()), (2, 1));
}
