//! synack's server over TLS, in memory and in paused time: ALPN picks HTTP/2 or HTTP/1.1
//! (or no ALPN: HTTP/1.1), HTTP/1.1 over TLS keeps the keep-alive policy and the request
//! guard, and failed or stalled handshakes are counted and bounded.

mod common;
mod h2_server_support;

use std::sync::Arc;
use std::time::Duration;

use common::{counting_service, Counts};
use h2_server_support::*;
use rustls_pki_types::ServerName;
use synack_http::tls::{fingerprint_sha256, SelfSigned, TlsServerConfig};
use synack_http::{serve, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

struct Tls {
    srv: ServerHandle,
    conn: Connector,
    counts: Arc<Counts>,
    cert: SelfSigned,
}

fn start(config: ServerConfig) -> Tls {
    let (tls, cert) = TlsServerConfig::self_signed("127.0.0.1".parse().unwrap()).unwrap();
    let (l, conn) = mem_listener();
    let counts = Arc::new(Counts::default());
    let config = ServerConfig {
        tls: Some(tls),
        ..config
    };
    let srv = serve(l, config, counting_service(counts.clone()));
    Tls {
        srv,
        conn,
        counts,
        cert,
    }
}

/// A TLS client trusting `cert` only, offering `alpn`.
async fn connect(t: &Tls, alpn: &[&[u8]]) -> TlsStream<DuplexStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(t.cert.cert.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(synack_http::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let c = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    c.connect(name, t.conn.connect())
        .await
        .expect("TLS handshake")
}

/// ALPN `h2`: HTTP/2 (two streams on one connection); `http/1.1`: HTTP/1.1 with keep-alive
/// (two requests on one connection); no ALPN: HTTP/1.1. Each counted by what ALPN chose.
#[tokio::test(start_paused = true)]
async fn alpn_chooses_http2_or_http1() {
    let t = start(ServerConfig::default());
    let s = connect(&t, &[b"h2", b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut send = h2_client(s).await;
    assert_eq!(
        h2_get(&mut send, "/one").await,
        (200, b"GET /one 0\n".to_vec())
    );
    assert_eq!(
        h2_get(&mut send, "/two").await,
        (200, b"GET /two 0\n".to_vec())
    );

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut s = connect(&t, alpn).await;
        s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        // The server's close_notify ends the stream.
        s.read_to_string(&mut text).await.unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.contains("GET /a 0\n") && text.contains("GET /b 0\n"));
    }
    drop(send);
    let st = t.srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (st.connections, st.tls_handshakes, st.tls_handshake_failures),
        (3, 3, 0)
    );
    assert_eq!((st.alpn_h2, st.alpn_http11, st.alpn_none), (1, 1, 1));
    assert_eq!((st.h2_connections, st.h2_streams, st.requests), (1, 2, 6));
    assert_eq!(t.counts.gets(), 6);
    assert_eq!(st.errors, 0);
}

/// HTTP/1.1 over TLS keeps the policy: the `keepalive_requests`th response says
/// `Connection: close` and `Keep-Alive` counts down; a malformed request gets 400 from the
/// guard.
#[tokio::test(start_paused = true)]
async fn http1_over_tls_keeps_the_keepalive_policy_and_the_guard() {
    let t = start(ServerConfig {
        keepalive_requests: 2,
        keepalive_header: true,
        keepalive_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    });
    let mut s = connect(&t, &[b"http/1.1"]).await;
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("keep-alive: timeout=5, max=1"), "{text}");
    assert_eq!(lower.matches("connection: close").count(), 1, "{text}");

    let mut s = connect(&t, &[b"http/1.1"]).await;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request"), "{text}");
    let st = t.srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (st.requests, st.closed_max_requests, st.rejected_requests),
        (2, 1, 1)
    );
    assert_eq!(st.alpn_http11, 2);
}

/// A client that sends no TLS (plain HTTP to the TLS port) fails its handshake; one that
/// sends nothing is dropped after `tls_handshake_timeout`. Both counted; neither is a
/// request.
#[tokio::test(start_paused = true)]
async fn bad_and_stalled_handshakes_are_counted_and_bounded() {
    let t = start(ServerConfig {
        tls_handshake_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    });
    let mut plain = t.conn.connect();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk).await;
    let mut silent = t.conn.connect();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = silent.read_to_end(&mut buf).await;
    assert_eq!(since(t0), Duration::from_secs(10));
    assert!(buf.is_empty());
    let st = t.srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!((st.tls_handshakes, st.tls_handshake_failures), (0, 2));
    assert_eq!((st.requests, st.active_connections), (0, 0));
}

/// Certificates from PEM files serve the same; the fingerprint is the SHA-256 of the DER
/// certificate the client received.
#[tokio::test(start_paused = true)]
async fn a_certificate_from_pem_files() {
    let cert = SelfSigned::for_addr("127.0.0.1".parse().unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("synack-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cp, kp) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cp, &cert.cert_pem).unwrap();
    std::fs::write(&kp, &cert.key_pem).unwrap();
    let tls = TlsServerConfig::from_pem_files(&cp, &kp).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(tls.fingerprint(), Some(cert.fingerprint().as_str()));
    let (l, conn) = mem_listener();
    let counts = Arc::new(Counts::default());
    let srv = serve(
        l,
        ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        },
        counting_service(counts.clone()),
    );
    let t = Tls {
        srv,
        conn,
        counts,
        cert,
    };
    let s = connect(&t, &[b"h2"]).await;
    let seen = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(fingerprint_sha256(&seen), t.cert.fingerprint());
    let mut send = h2_client(s).await;
    assert_eq!(h2_get(&mut send, "/").await.0, 200);
    drop(send);
    let st = t.srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!((st.alpn_h2, st.requests), (1, 1));
}
