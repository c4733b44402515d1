//! Malformed requests and request bodies over the limit get a response, never silence: the
//! exact status, `Connection: close`, then the connection closes (RFC 9112 §3.2, §6.3, §9.6;
//! RFC 9110 §7.2, §15.5.14). Over the simulator (virtual time) and over kernel sockets on
//! loopback, writing raw bytes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_http::routes::Routes;
use synack_http::{serve, ServerConfig, ServerHandle};
use synack_stack::net::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The request body limit of these tests' servers.
const LIMIT: u64 = 1000;

fn config() -> ServerConfig {
    ServerConfig {
        client_max_body_size: LIMIT,
        ..ServerConfig::default()
    }
}

/// One response read off the wire.
#[derive(Debug)]
struct Resp {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The responses in `b`, one after another (each framed by its `Content-Length`).
fn responses(mut b: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(b)));
        let head = std::str::from_utf8(&b[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        let r = Resp {
            status_line,
            headers,
            body: String::new(),
        };
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        let body = &b[end + 4..end + 4 + len];
        out.push(Resp {
            body: String::from_utf8_lossy(body).into_owned(),
            ..r
        });
        b = &b[end + 4 + len..];
    }
    out
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// The status lines expected, in order (the last one refuses the bad request).
    statuses: &'static [&'static str],
    /// In the last response's body.
    why: &'static str,
    /// Whether the service saw the refused request (its head was good, its body was not).
    in_body: bool,
}

fn case(
    name: &'static str,
    request: impl Into<Vec<u8>>,
    statuses: &'static [&'static str],
    why: &'static str,
    in_body: bool,
) -> Case {
    Case {
        name,
        request: request.into(),
        statuses,
        why,
        in_body,
    }
}

const E400: &[&str] = &["HTTP/1.1 400 Bad Request"];

fn cases() -> Vec<Case> {
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("258\r\n{}\r\n", "a".repeat(600));
    vec![
        case(
            "Content-Length and Transfer-Encoding",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
            E400,
            "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)",
            false,
        ),
        case(
            "no Host",
            "GET / HTTP/1.1\r\n\r\n",
            E400,
            "no Host header field (RFC 9112 §3.2)",
            false,
        ),
        case(
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            E400,
            "more than one Host header field",
            false,
        ),
        case(
            "bad request line",
            "GARBAGE\r\n\r\n",
            E400,
            "malformed request head",
            false,
        ),
        case(
            "invalid header name",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
            E400,
            "malformed request head (invalid header name)",
            false,
        ),
        case(
            "invalid header value byte",
            &b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n"[..],
            E400,
            "malformed request head",
            false,
        ),
        case(
            "differing Content-Length",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            E400,
            "Content-Length fields that differ",
            false,
        ),
        case(
            "invalid Content-Length",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            E400,
            "invalid Content-Length",
            false,
        ),
        case(
            "unknown transfer coding",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            E400,
            "last coding is not chunked",
            false,
        ),
        case(
            "oversized head",
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
            &["HTTP/1.1 431 Request Header Fields Too Large"],
            "the request head is larger than 16384 bytes",
            false,
        ),
        case(
            "HTTP/2.0 request line",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            &["HTTP/1.1 505 HTTP Version Not Supported"],
            "only HTTP/1.0 and HTTP/1.1",
            false,
        ),
        case(
            "HTTP/2 preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            &["HTTP/1.1 505 HTTP Version Not Supported"],
            "only HTTP/1.0 and HTTP/1.1",
            false,
        ),
        case(
            "Content-Length over the limit",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
                LIMIT + 1,
                "a".repeat(LIMIT as usize + 1)
            ),
            &["HTTP/1.1 413 Content Too Large"],
            "the request body (1001 bytes) is larger than 1000 bytes",
            false,
        ),
        case(
            "Content-Length over the limit, expecting 100-continue",
            "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
            &["HTTP/1.1 413 Content Too Large"],
            "the request body (5000 bytes) is larger than 1000 bytes",
            false,
        ),
        case(
            "chunks over the limit",
            format!("{chunked}{chunk}{chunk}0\r\n\r\n"),
            &["HTTP/1.1 413 Content Too Large"],
            "the request body is larger than 1000 bytes",
            true,
        ),
        case(
            "malformed chunk",
            format!("{chunked}5\r\nhelloXX0\r\n\r\n"),
            E400,
            "malformed chunked body: no CRLF after chunk data",
            true,
        ),
        case(
            "good requests, then a bad one",
            "GET /delay/30 HTTP/1.1\r\nHost: x\r\n\r\n\
             POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
             GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &[
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 400 Bad Request",
            ],
            "no Host header field",
            false,
        ),
    ]
}

/// Writes the request (then half-closes), reads to the end; what was read, and how the
/// connection ended (`Ok` for a FIN).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> (Vec<u8>, std::io::Result<()>) {
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got).await.map(|_| ());
    (got, end)
}

/// Checks what came back for `c`: every expected status, in order; the last response says
/// `Connection: close` and why; then the connection ended with a FIN.
fn check(c: &Case, got: &[u8], end: std::io::Result<()>) {
    let name = c.name;
    assert!(end.is_ok(), "{name}: closed with {end:?}, not a FIN");
    let rs = responses(got);
    let lines: Vec<&str> = rs.iter().map(|r| r.status_line.as_str()).collect();
    assert_eq!(
        lines,
        c.statuses,
        "{name}: {}",
        String::from_utf8_lossy(got)
    );
    let last = rs.last().unwrap();
    assert_eq!(last.header("connection"), Some("close"), "{name}: {last:?}");
    assert!(last.body.contains(c.why), "{name}: {:?} in {last:?}", c.why);
    assert!(last.header("date").is_some(), "{name}: {last:?}");
    for r in &rs[..rs.len() - 1] {
        assert_eq!(r.header("connection"), None, "{name}: {r:?}");
    }
}

/// Checks the server's counters after `c`, on a connection of its own.
fn check_stats(c: &Case, h: &ServerHandle, before: synack_http::ServerStats) {
    let s = h.stats();
    let name = c.name;
    assert_eq!(s.rejected_requests - before.rejected_requests, 1, "{name}");
    let served = c.statuses.len() as u64 - 1 + u64::from(c.in_body);
    assert_eq!(s.requests - before.requests, served, "{name}");
    assert_eq!(s.errors, before.errors, "{name}");
}

async fn sim_server(b: &Stack, config: ServerConfig) -> ServerHandle {
    let l = TcpListener::bind(b, SocketAddr::new(ip(SERVER), 80))
        .await
        .unwrap();
    serve(l, config, Routes::new())
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_a_status_and_close_over_the_simulator() {
    let (_net, a, b) = two_hosts(41, RTT);
    let srv = sim_server(&b, config()).await;
    let to = SocketAddr::new(ip(SERVER), 80);
    for c in cases() {
        let before = srv.stats();
        let s = TcpStream::connect(&a, to).await.unwrap();
        let (got, end) = exchange(s, &c.request).await;
        check(&c, &got, end);
        // The server's side of the connection is gone too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(srv.stats().active_connections, 0, "{}", c.name);
        check_stats(&c, &srv, before);
    }
}

#[tokio::test]
async fn malformed_requests_get_a_status_and_close_over_kernel_loopback() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = l.local_addr().unwrap();
    let srv = serve(l, config(), Routes::new());
    for c in cases() {
        let before = srv.stats();
        let s = tokio::net::TcpStream::connect(to).await.unwrap();
        let (got, end) = tokio::time::timeout(Duration::from_secs(10), exchange(s, &c.request))
            .await
            .unwrap_or_else(|_| panic!("{}: no end within 10 s", c.name));
        check(&c, &got, end);
        // Wait (at most 10 s) for the server to finish the connection.
        let t0 = std::time::Instant::now();
        while srv.stats().active_connections > 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "{}", c.name);
            tokio::task::yield_now().await;
        }
        check_stats(&c, &srv, before);
    }
}

/// A client that goes on sending a body the server refused: the server reads and discards it
/// (a lingering close) instead of closing with unread bytes, which would reset the connection
/// under the client's feet; the client sends all of it, reads the 413 and the FIN.
async fn refused_body_is_drained<S>(s: S) -> (Vec<u8>, std::io::Result<()>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    const BODY: usize = 64 << 20;
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n");
        w.write_all(head.as_bytes()).await?;
        let block = vec![b'a'; 64 * 1024];
        for _ in 0..BODY / block.len() {
            w.write_all(&block).await?;
        }
        w.shutdown().await
    });
    let mut got = Vec::new();
    let end = r.read_to_end(&mut got).await.map(|_| ());
    let sent = writer.await.unwrap();
    assert!(sent.is_ok(), "the whole body went out: {sent:?}");
    (got, end)
}

fn check_refused_body(got: &[u8], end: std::io::Result<()>) {
    assert!(end.is_ok(), "{end:?}");
    let rs = responses(got);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status_line, "HTTP/1.1 413 Content Too Large");
    assert_eq!(rs[0].header("connection"), Some("close"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_body_is_drained_not_reset_over_the_simulator() {
    let (_net, a, b) = two_hosts(42, RTT);
    let srv = sim_server(&b, ServerConfig::default()).await;
    let s = TcpStream::connect(&a, SocketAddr::new(ip(SERVER), 80))
        .await
        .unwrap();
    let (got, end) = refused_body_is_drained(s).await;
    check_refused_body(&got, end);
    assert_eq!(srv.stats().rejected_requests, 1);
}

#[tokio::test]
async fn a_refused_body_is_drained_not_reset_over_kernel_loopback() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = l.local_addr().unwrap();
    let srv = serve(l, ServerConfig::default(), Routes::new());
    let s = tokio::net::TcpStream::connect(to).await.unwrap();
    let (got, end) = tokio::time::timeout(Duration::from_secs(20), refused_body_is_drained(s))
        .await
        .expect("done within 20 s");
    check_refused_body(&got, end);
    assert_eq!(srv.stats().rejected_requests, 1);
}

/// A request followed at once by the client's FIN (a half-close, as `nc -q` does) is
/// answered; the response is not dropped at the FIN.
#[tokio::test(start_paused = true)]
async fn a_request_then_the_clients_fin_is_answered_over_the_simulator() {
    let (_net, a, b) = two_hosts(43, RTT);
    let srv = sim_server(&b, config()).await;
    let to = SocketAddr::new(ip(SERVER), 80);
    for request in [
        &b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ] {
        let s = TcpStream::connect(&a, to).await.unwrap();
        let (got, end) = exchange(s, request).await;
        assert!(end.is_ok(), "{end:?}");
        let rs = responses(&got);
        assert_eq!(rs.len(), 1, "{}", String::from_utf8_lossy(&got));
        assert_eq!(rs[0].status_line, "HTTP/1.1 200 OK");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = srv.stats();
    assert_eq!((s.requests, s.errors, s.active_connections), (3, 0, 0));
}
