//! HTTP/2 test servers on the simulated network, made in the tests (not synack's server):
//! one from hyper's `server::conn::http2`, and a raw one that writes frames by hand to act
//! as a server hyper would not (a one-step GOAWAY after K streams as nginx sends it, refused
//! streams, resets after processing, PINGs left unanswered).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use synack_stack::net::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// What a test server counts.
#[derive(Debug, Default)]
pub struct ServerCounts {
    pub connections: AtomicU64,
    /// Requests the handler processed.
    pub requests: AtomicU64,
    pub posts: AtomicU64,
    /// Streams in flight at once, at most.
    pub peak_streams: AtomicU64,
    pub in_flight: AtomicU64,
    /// Graceful shutdowns begun (hyper server) or GOAWAYs sent (raw server).
    pub goaways: AtomicU64,
    /// Streams refused, or reset or left hanging (raw server).
    pub refused: AtomicU64,
    pub reset: AtomicU64,
    /// PINGs received (raw server).
    pub pings: AtomicU64,
    /// HEADERS frames received, processed or not (raw server).
    pub headers: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::SeqCst)
}

impl ServerCounts {
    pub fn connections(&self) -> u64 {
        get(&self.connections)
    }
    pub fn requests(&self) -> u64 {
        get(&self.requests)
    }
    pub fn posts(&self) -> u64 {
        get(&self.posts)
    }
    pub fn peak_streams(&self) -> u64 {
        get(&self.peak_streams)
    }
    pub fn goaways(&self) -> u64 {
        get(&self.goaways)
    }
    pub fn refused(&self) -> u64 {
        get(&self.refused)
    }
    pub fn reset(&self) -> u64 {
        get(&self.reset)
    }
    pub fn pings(&self) -> u64 {
        get(&self.pings)
    }
    pub fn headers(&self) -> u64 {
        get(&self.headers)
    }
}

/// Settings of the hyper test server.
#[derive(Debug, Clone, Default)]
pub struct H2ServerConfig {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default otherwise).
    pub max_concurrent_streams: Option<u32>,
    /// Begin a graceful shutdown (GOAWAY with 2^31-1, PING, GOAWAY with the last stream,
    /// RFC 9113 §6.8) of a connection when its K-th request arrives.
    pub shutdown_after: Option<u64>,
}

/// `GET /delay/MS` answers after MS ms; anything else at once. The body says
/// `METHOD PATH N` (N: the request body's length).
async fn handle(req: Request<Incoming>, counts: Arc<ServerCounts>) -> Response<Full<Bytes>> {
    let n = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counts.peak_streams.fetch_max(n, Ordering::SeqCst);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    counts.requests.fetch_add(1, Ordering::SeqCst);
    if method == Method::POST {
        counts.posts.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
    let n = body.map(|b| b.len()).unwrap_or(0);
    Response::new(Full::new(Bytes::from(format!("{method} {path} {n}\n"))))
}

/// A hyper HTTP/2 server on `stack` at `addr`, until the returned handle is dropped... it
/// runs for the test's life.
pub async fn hyper_h2_server(
    stack: &Stack,
    addr: SocketAddr,
    config: H2ServerConfig,
) -> Arc<ServerCounts> {
    let listener = TcpListener::bind(stack, addr).await.unwrap();
    let counts = Arc::new(ServerCounts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            // As servers do (nginx's tcp_nodelay): small frames go at once.
            stream.set_nodelay(true).unwrap();
            tokio::spawn(hyper_conn(stream, config.clone(), c.clone()));
        }
    });
    counts
}

async fn hyper_conn(stream: TcpStream, config: H2ServerConfig, counts: Arc<ServerCounts>) {
    let seen = Arc::new(AtomicU64::new(0));
    let limit_hit = Arc::new(Notify::new());
    let (s, hit, c) = (seen.clone(), limit_hit.clone(), counts.clone());
    let limit = config.shutdown_after;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let n = s.fetch_add(1, Ordering::SeqCst) + 1;
        if limit == Some(n) {
            hit.notify_one();
        }
        let c = c.clone();
        async move { Ok::<_, Infallible>(handle(req, c).await) }
    });
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new());
    if let Some(m) = config.max_concurrent_streams {
        b.max_concurrent_streams(m);
    }
    let conn = b.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = limit_hit.notified() => {}
    }
    counts.goaways.fetch_add(1, Ordering::SeqCst);
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// How the raw server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// Answers every stream.
    Normal,
    /// Answers K streams per connection, then sends GOAWAY with the K-th stream's id as the
    /// last-stream-id (NO_ERROR) at once, as nginx does after `keepalive_requests`, and
    /// leaves the streams above it unprocessed.
    GoAwayAfter(u64),
    /// Refuses the first N streams of each connection (RST_STREAM REFUSED_STREAM on their
    /// HEADERS, before processing them).
    RefuseFirst(u64),
    /// Processes the first N requests (over all connections) and resets their streams
    /// (RST_STREAM INTERNAL_ERROR) instead of answering.
    ResetFirst(u64),
    /// Answers streams but never a PING.
    IgnorePings,
    /// Processes the first N requests (over all connections) without ever answering them,
    /// and from then on answers no PING on their connection (a server that hangs).
    HangFirst(u64),
}

/// A raw HTTP/2 server (frames written by hand) on `stack` at `addr`.
pub async fn raw_h2_server(stack: &Stack, addr: SocketAddr, mode: RawMode) -> Arc<ServerCounts> {
    let listener = TcpListener::bind(stack, addr).await.unwrap();
    let counts = Arc::new(ServerCounts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            stream.set_nodelay(true).unwrap();
            tokio::spawn(raw_conn(stream, mode, c.clone()));
        }
    });
    counts
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn raw_conn(mut s: TcpStream, mode: RawMode, counts: Arc<ServerCounts>) {
    let mut preface = [0u8; 24];
    if s.read_exact(&mut preface).await.is_err() || preface != PREFACE {
        return;
    }
    // Our SETTINGS (none changed), then frames.
    if s.write_all(&frame(4, 0, 0, &[])).await.is_err() {
        return;
    }
    let mut streams_seen = 0u64;
    let mut answered = 0u64;
    let mut last_allowed: Option<u32> = None;
    let mut frozen = false;
    // Method of each open stream, by its first HPACK byte (0x82 GET, 0x83 POST).
    let mut methods = std::collections::HashMap::<u32, u8>::new();
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return;
        }
        let mut out = Vec::new();
        let mut end_of: Option<u32> = None;
        match kind {
            // SETTINGS (not an ACK): acknowledge.
            4 if flags & 1 == 0 => out.extend(frame(4, 1, 0, &[])),
            // PING (not an ACK): answer, unless told not to.
            6 if flags & 1 == 0 => {
                counts.pings.fetch_add(1, Ordering::SeqCst);
                if mode != RawMode::IgnorePings && !frozen {
                    out.extend(frame(6, 1, 0, &payload));
                }
            }
            // HEADERS.
            1 => {
                counts.headers.fetch_add(1, Ordering::SeqCst);
                if last_allowed.is_some_and(|l| id > l) {
                    continue; // Above the GOAWAY's last-stream-id: not processed.
                }
                streams_seen += 1;
                if let RawMode::RefuseFirst(n) = mode {
                    if streams_seen <= n {
                        counts.refused.fetch_add(1, Ordering::SeqCst);
                        out.extend(frame(3, 0, id, &7u32.to_be_bytes()));
                        let _ = s.write_all(&out).await;
                        continue;
                    }
                }
                methods.insert(id, payload.first().copied().unwrap_or(0));
                if flags & 1 != 0 {
                    end_of = Some(id);
                }
            }
            // DATA that ends a request.
            0 if flags & 1 != 0 && methods.contains_key(&id) => end_of = Some(id),
            _ => {}
        }
        if let Some(id) = end_of.filter(|&id| last_allowed.is_none_or(|l| id <= l)) {
            let method = methods.remove(&id).unwrap_or(0);
            let n = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
            if method == 0x83 {
                counts.posts.fetch_add(1, Ordering::SeqCst);
            }
            match mode {
                RawMode::HangFirst(k) if n <= k => {
                    counts.reset.fetch_add(1, Ordering::SeqCst);
                    frozen = true;
                }
                RawMode::ResetFirst(k) if n <= k => {
                    counts.reset.fetch_add(1, Ordering::SeqCst);
                    out.extend(frame(3, 0, id, &2u32.to_be_bytes()));
                }
                _ => {
                    // :status 200 (HPACK static index 8), then the body.
                    out.extend(frame(1, 4, id, &[0x88]));
                    out.extend(frame(0, 1, id, format!("ok {id}\n").as_bytes()));
                }
            }
            answered += 1;
            if let RawMode::GoAwayAfter(k) = mode {
                if answered == k && last_allowed.is_none() {
                    last_allowed = Some(id);
                    counts.goaways.fetch_add(1, Ordering::SeqCst);
                    let mut p = id.to_be_bytes().to_vec();
                    p.extend_from_slice(&0u32.to_be_bytes());
                    out.extend(frame(7, 0, 0, &p));
                }
            }
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses) and its key.
pub struct TestCert {
    pub pem: String,
    pub der: rustls_pki_types::CertificateDer<'static>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

pub fn self_signed(names: &[&str]) -> TestCert {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    TestCert {
        pem: ck.cert.pem(),
        der: ck.cert.der().clone(),
        key: rustls_pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
    }
}

/// A TLS server on `stack` at `addr` with `cert`, offering `alpn` (none: no ALPN), that
/// serves HTTP/2 when ALPN picked `h2` and HTTP/1.1 (keep-alive) otherwise.
pub async fn tls_server(
    stack: &Stack,
    addr: SocketAddr,
    cert: &TestCert,
    alpn: &[&[u8]],
) -> Arc<TlsCounts> {
    tls_server_switching(stack, addr, cert, alpn, u64::MAX, alpn).await
}

fn acceptor(cert: &TestCert, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// [`tls_server`] offering `alpn` on its first `n` connections and `then` on the others (a
/// server reconfigured, or a fleet behind one name).
pub async fn tls_server_switching(
    stack: &Stack,
    addr: SocketAddr,
    cert: &TestCert,
    alpn: &[&[u8]],
    n: u64,
    then: &[&[u8]],
) -> Arc<TlsCounts> {
    let (first, later) = (acceptor(cert, alpn), acceptor(cert, then));
    let listener = TcpListener::bind(stack, addr).await.unwrap();
    let counts = Arc::new(TlsCounts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            stream.set_nodelay(true).unwrap();
            let k = c.http.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = if k < n { first.clone() } else { later.clone() };
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    c.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                c.handshakes.fetch_add(1, Ordering::SeqCst);
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                c.sni.lock().unwrap().push(sni);
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let counts = Arc::new(ServerCounts::default());
                let http = c.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (counts, http) = (counts.clone(), http.clone());
                    async move {
                        let r = handle(req, counts).await;
                        http.http.requests.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(r)
                    }
                });
                if h2 {
                    c.h2_connections.fetch_add(1, Ordering::SeqCst);
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    counts
}

/// What the TLS server counts.
#[derive(Debug, Default)]
pub struct TlsCounts {
    /// TCP connections and requests.
    pub http: ServerCounts,
    pub handshakes: AtomicU64,
    pub failed_handshakes: AtomicU64,
    pub h2_connections: AtomicU64,
    /// The server name each handshake's ClientHello asked for (SNI), if any.
    pub sni: std::sync::Mutex<Vec<Option<String>>>,
}

impl TlsCounts {
    pub fn handshakes(&self) -> u64 {
        get(&self.handshakes)
    }
    pub fn failed_handshakes(&self) -> u64 {
        get(&self.failed_handshakes)
    }
    pub fn h2_connections(&self) -> u64 {
        get(&self.h2_connections)
    }
}
