//! The HTTP/3 client: one QUIC connection per origin (RFC 9114 §3.3: "Clients SHOULD NOT open
//! more than one HTTP/3 connection to a given IP address and UDP port"), every call a
//! request stream on it; a new connection resumes the last session and, when the client
//! allows early data and the server took it, sends its first requests in 0-RTT (RFC 9001
//! §4.6.1). Only idempotent requests go in 0-RTT; a `425 Too Early` is retried once after the
//! handshake (RFC 8470 §5.2).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use tokio::sync::Mutex;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One response, its body read whole.
#[derive(Debug, Clone)]
pub struct H3Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the request went out in 0-RTT.
    pub early: bool,
    /// When the response's head (its HEADERS frame) arrived, on tokio's clock (virtual time
    /// on the simulator): the time to the first response byte.
    pub head_at: tokio::time::Instant,
}

/// What an HTTP/3 client did.
#[derive(Debug, Default)]
pub struct H3ClientStats {
    /// QUIC connections opened (one handshake each).
    pub connections: AtomicU64,
    /// Of those, the ones that sent 0-RTT (a resumed session with early data).
    pub zero_rtt_attempted: AtomicU64,
    /// The ones whose 0-RTT the server accepted.
    pub zero_rtt_accepted: AtomicU64,
    /// Requests sent (streams opened).
    pub requests: AtomicU64,
    /// Requests retried after `425 Too Early` or a refused 0-RTT.
    pub retried: AtomicU64,
    /// Time in QUIC handshakes, summed, in microseconds: from the first Initial to the
    /// connection's establishment (to the end of the handshake when 0-RTT was sent).
    pub handshake_us: AtomicU64,
    /// Packets the client's QUIC declared lost (RFC 9002 §6), over the closed connections.
    pub lost_packets: AtomicU64,
}

/// Where a client writes what its QUIC connections did, each with its time on tokio's clock
/// (virtual on the simulator): the handshake done (or 0-RTT accepted or refused), each
/// request stream opened and closed, and the packets quinn declared lost (RFC 9002 §6), as
/// seen when a stream closes or the connection does.
pub type EventLog = Arc<std::sync::Mutex<Vec<(tokio::time::Instant, String)>>>;

#[derive(Clone)]
struct Conn {
    quic: quinn::Connection,
    /// Packets quinn had declared lost when last looked at.
    lost_seen: Arc<AtomicU64>,
    send: SendRequest,
    /// Set once the handshake is confirmed (or when 0-RTT was not used at all).
    confirmed: Arc<tokio::sync::watch::Receiver<Option<bool>>>,
}

/// An HTTP/3 client on one quinn endpoint.
pub struct H3Client {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    early_data: bool,
    conns: Mutex<HashMap<(SocketAddr, String), Conn>>,
    stats: Arc<H3ClientStats>,
    events: Option<EventLog>,
}

fn log(events: &Option<EventLog>, what: String) {
    if let Some(e) = events {
        if let Ok(mut v) = e.lock() {
            v.push((tokio::time::Instant::now(), what));
        }
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl H3Client {
    /// A client on `endpoint` using `config` (see [`super::client_config`]); with
    /// `early_data`, resumed connections send idempotent requests in 0-RTT.
    pub fn new(endpoint: quinn::Endpoint, config: quinn::ClientConfig, early_data: bool) -> Self {
        H3Client {
            endpoint,
            config,
            early_data,
            conns: Mutex::new(HashMap::new()),
            stats: Arc::new(H3ClientStats::default()),
            events: None,
        }
    }

    /// Records what the connections do in `log` (see [`EventLog`]).
    pub fn with_events(mut self, log: EventLog) -> Self {
        self.events = Some(log);
        self
    }

    /// Notes packets quinn declared lost on `c` since last looked at.
    fn note_lost(&self, c: &Conn) {
        let now = c.quic.stats().path.lost_packets;
        let before = c.lost_seen.swap(now, Ordering::Relaxed);
        if now > before {
            log(
                &self.events,
                format!(
                    "loss detected: {} packets declared lost (RFC 9002 §6.1), {now} so far",
                    now - before
                ),
            );
        }
    }

    pub fn stats(&self) -> &Arc<H3ClientStats> {
        &self.stats
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The QUIC connection to `addr`, if one is open (for its statistics).
    pub async fn connection(&self, addr: SocketAddr, host: &str) -> Option<quinn::Connection> {
        let conns = self.conns.lock().await;
        conns.get(&(addr, host.to_string())).map(|c| c.quic.clone())
    }

    /// Closes every connection (CONNECTION_CLOSE with H3_NO_ERROR, RFC 9114 §8.1).
    pub async fn close(&self) {
        for (_, c) in self.conns.lock().await.drain() {
            self.note_lost(&c);
            log(
                &self.events,
                "connection closed: CONNECTION_CLOSE H3_NO_ERROR".into(),
            );
            c.quic.close(quinn::VarInt::from_u32(0x100), b"");
            self.stats
                .lost_packets
                .fetch_add(c.quic.stats().path.lost_packets, Ordering::Relaxed);
        }
    }

    /// Opens the QUIC connection to `addr` (TLS name `host`) unless one is open: returns once
    /// its handshake is done, or at once when it resumed a session in 0-RTT.
    pub async fn connect(&self, addr: SocketAddr, host: &str) -> io::Result<()> {
        self.conn(addr, host).await.map(|_| ())
    }

    async fn conn(&self, addr: SocketAddr, host: &str) -> io::Result<Conn> {
        let key = (addr, host.to_string());
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&key) {
            if c.quic.close_reason().is_none() {
                return Ok(c.clone());
            }
            conns.remove(&key);
        }
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, host)
            .map_err(other)?;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        log(
            &self.events,
            format!("connecting to {addr}: Initial with the TLS ClientHello"),
        );
        let t0 = tokio::time::Instant::now();
        let took = |stats: &H3ClientStats| {
            let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.handshake_us.fetch_add(us, Ordering::Relaxed);
        };
        let (tx, rx) = tokio::sync::watch::channel(None);
        let quic = if self.early_data {
            match connecting.into_0rtt() {
                Ok((quic, accepted)) => {
                    self.stats
                        .zero_rtt_attempted
                        .fetch_add(1, Ordering::Relaxed);
                    let stats = self.stats.clone();
                    log(
                        &self.events,
                        "resuming a session: requests may go in 0-RTT".into(),
                    );
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let ok = accepted.await;
                        log(
                            &events,
                            if ok {
                                "handshake done: 0-RTT accepted".into()
                            } else {
                                "handshake done: 0-RTT refused, early streams to resend".into()
                            },
                        );
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        stats.handshake_us.fetch_add(us, Ordering::Relaxed);
                        if ok {
                            stats.zero_rtt_accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = tx.send(Some(ok));
                    });
                    quic
                }
                Err(connecting) => {
                    let q = connecting.await.map_err(other)?;
                    log(&self.events, "handshake done (no session to resume)".into());
                    took(&self.stats);
                    let _ = tx.send(Some(true));
                    q
                }
            }
        } else {
            let q = connecting.await.map_err(other)?;
            log(
                &self.events,
                "handshake done: transport and TLS 1.3 in one round trip".into(),
            );
            took(&self.stats);
            let _ = tx.send(Some(true));
            q
        };
        // No GREASE (RFC 9114 §7.2.8), so that runs on the simulator repeat byte for byte.
        let (mut driver, send) = h3::client::builder()
            .send_grease(false)
            .build(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(other)?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let c = Conn {
            lost_seen: Arc::new(AtomicU64::new(0)),
            quic,
            send,
            confirmed: Arc::new(rx),
        };
        conns.insert(key, c.clone());
        Ok(c)
    }

    /// Sends `method` for `path` to `host` at `addr` and reads the whole response. In 0-RTT
    /// only GET and HEAD are sent early; anything else waits for the handshake.
    pub async fn request(
        &self,
        method: Method,
        addr: SocketAddr,
        host: &str,
        path: &str,
        body: Bytes,
    ) -> io::Result<H3Response> {
        let mut c = self.conn(addr, host).await?;
        let idempotent = matches!(method, Method::GET | Method::HEAD);
        let mut confirmed = (*c.confirmed).clone();
        if !idempotent && confirmed.borrow().is_none() {
            let _ = confirmed.wait_for(Option::is_some).await;
        }
        let early = confirmed.borrow().is_none();
        let r = self
            .send_once(
                &mut c,
                method.clone(),
                host,
                addr,
                path,
                body.clone(),
                early,
            )
            .await;
        // A refused 0-RTT loses the early streams (RFC 9001 §4.6.2); a 425 asks for a retry
        // after the handshake (RFC 8470 §5.2).
        let refused = early && r.is_err();
        let too_early = matches!(&r, Ok(res) if res.status == StatusCode::TOO_EARLY);
        if refused || too_early {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            let _ = confirmed.wait_for(Option::is_some).await;
            let mut c = self.conn(addr, host).await?;
            return self
                .send_once(&mut c, method, host, addr, path, body, false)
                .await;
        }
        r
    }

    /// `GET path` (see [`request`](Self::request)).
    pub async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> io::Result<H3Response> {
        self.request(Method::GET, addr, host, path, Bytes::new())
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        c: &mut Conn,
        method: Method,
        host: &str,
        addr: SocketAddr,
        path: &str,
        body: Bytes,
        early: bool,
    ) -> io::Result<H3Response> {
        let authority = if host.parse::<std::net::IpAddr>().is_ok() && addr.is_ipv6() {
            format!("[{host}]:{}", addr.port())
        } else {
            format!("{host}:{}", addr.port())
        };
        let uri = format!("https://{authority}{path}");
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut stream = c.send.send_request(req).await.map_err(other)?;
        // The QUIC stream ID (RFC 9000 §2.1): 0, 4, 8, ... for a client's requests.
        let id = stream.id().into_inner();
        log(
            &self.events,
            format!(
                "stream {id} opened: request{}",
                if early { " in 0-RTT" } else { "" }
            ),
        );
        if !body.is_empty() {
            stream.send_data(body).await.map_err(other)?;
        }
        stream.finish().await.map_err(other)?;
        let res = stream.recv_response().await.map_err(other)?;
        let head_at = tokio::time::Instant::now();
        let mut buf = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(other)? {
            buf.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        log(
            &self.events,
            format!(
                "stream {id} closed: {} with {} body bytes",
                res.status().as_u16(),
                buf.len()
            ),
        );
        self.note_lost(c);
        Ok(H3Response {
            status: res.status(),
            headers: res.headers().clone(),
            body: buf.freeze(),
            early,
            head_at,
        })
    }
}
