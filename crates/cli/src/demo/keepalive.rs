//! The cost of a connection per API call: N calls (`--calls`) made with a new connection per
//! call (`Connection: close`), over one keep-alive connection, and through a pool with
//! concurrency C (`--concurrency`), each on a fresh simulated network with the demo's path;
//! the headers and the results table print the numbers.
//! The client and server are `synack-http`'s (hyper over synack's sockets), run on a tokio
//! runtime with a paused clock, so times are virtual and the runs deterministic.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::Request;
use http_body_util::BodyExt;
use synack_http::routes::{pattern_byte, Routes};
use synack_http::server::Listener;
use synack_http::tls::cert::SelfSigned;
use synack_http::{
    serve, CertVerification, Client, ClientConfig, Http2ClientConfig, PoolConfig, ServerConfig,
    SynackConnector, TlsClientConfig, TlsServerConfig,
};
use synack_stack::net::{SimNet, Stack, TcpListener, TcpStream};
use synack_stack::pcap::PcapTap;
use synack_stack::sim::{Direction as TapDirection, Tap};
use synack_tcp::{Config, FastOpenConfig, FourTuple, Instant, State, TraceEvent, TraceRecord};
use synack_trace::ladder::{fmt_bytes, LadderBuilder, LineRenderer, Row};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::scenario::{ladder_builder, Outcome, Scenario, HOSTS};
use super::world::{CLIENT_IP, SERVER_IP, SERVER_PORT};
use super::{DemoError, Progress, Settings};

/// How the calls are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new connection per call (`Connection: close`).
    ConnPerCall,
    /// A new connection per call with TCP Fast Open (RFC 7413): after the first connection
    /// brings a cookie, each SYN carries its request.
    ConnPerCallFastOpen,
    /// One keep-alive connection, calls one after another.
    KeepAlive,
    /// Through the pool, C calls at a time.
    Pool,
    /// Every call at once, each a stream of one cleartext HTTP/2 connection (h2c with prior
    /// knowledge, RFC 9113 §3.3).
    Http2,
    /// Every call at once on one HTTP/2 connection over TLS (`h2` by ALPN, RFC 9113 §3.2).
    Http2Tls,
    /// HTTPS/1.1 with a new connection per call: a TCP and a TLS handshake each.
    Https1PerCall,
    /// Every call at once on one HTTP/2 connection whose client grants small windows
    /// ([`SLOW_STREAM_WINDOW`], [`SLOW_CONN_WINDOW`]), and whose first call reads its reply
    /// only after [`SLOW_READ_AFTER`]: flow control (RFC 9113 §5.2) at work.
    Http2SlowReader,
}

/// What the server's clock shows when a scenario starts, in seconds since 1970:
/// 2026-01-01 00:00:00 UTC.
const DEMO_EPOCH_SECS: u64 = 1_767_225_600;

/// The stream window of [`Mode::Http2SlowReader`]'s client (`SETTINGS_INITIAL_WINDOW_SIZE`).
pub const SLOW_STREAM_WINDOW: u32 = 16 * 1024;
/// Its connection window.
pub const SLOW_CONN_WINDOW: u32 = 64 * 1024;
/// How long its slow reader leaves its reply unread.
pub const SLOW_READ_AFTER: Duration = Duration::from_millis(500);

impl Mode {
    fn tls(self) -> bool {
        matches!(self, Mode::Http2Tls | Mode::Https1PerCall)
    }

    fn http2(self) -> bool {
        matches!(self, Mode::Http2 | Mode::Http2Tls | Mode::Http2SlowReader)
    }
}

/// N API calls made one way.
#[derive(Debug, Clone, Copy)]
pub struct ApiCalls {
    pub mode: Mode,
    pub calls: usize,
    pub concurrency: usize,
    /// The reply body of each call.
    pub reply_bytes: u64,
    /// A loss rate for this scenario's path instead of the demo's (`--loss`).
    pub loss: Option<f64>,
    /// Calls one at a time as a steady stream: the first call opens the connection, then
    /// call k starts (k - 2) * this after the first one ended, whether or not the calls
    /// before it are done (HTTP/2 only). Under loss this shows head-of-line blocking call by
    /// call: a lost segment holds up the replies of every call after it on the connection.
    pub stagger: Option<Duration>,
}

/// What the calls of a scenario cost, call by call and in all.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    /// Each call's time from its start to its last reply byte, in the order they ended.
    pub times: Vec<Duration>,
    /// Connections the client opened (TCP, or QUIC).
    pub connections: u64,
    /// HTTP/2 (or HTTP/3) streams the client opened.
    pub streams: u64,
    /// TLS handshakes the client completed, and their time summed (each from the end of
    /// its TCP handshake to the end of the TLS handshake).
    pub tls_handshakes: u64,
    pub tls_handshake_time: Duration,
    /// Requests sent again (refused streams, GOAWAY, keep-alive races).
    pub retries: u64,
    /// From the first call's start to the first response head any call received: the time
    /// to the first response byte (the head comes in the first bytes of a response).
    pub first_byte: Option<Duration>,
    /// The pace of a staggered scenario (one call every this long), if it is one.
    pub paced: Option<Duration>,
    /// The calls went over QUIC (HTTP/3): its handshakes are QUIC's, its streams HTTP/3's.
    pub quic: bool,
}

impl CallStats {
    /// The `q`-quantile of the calls' times (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut t = self.times.clone();
        t.sort();
        let n = t.len();
        (n > 0).then(|| t[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    }

    /// The calls that took longer than `limit`.
    pub fn slower_than(&self, limit: Duration) -> usize {
        self.times.iter().filter(|t| **t > limit).count()
    }
}

/// Bytes read and written by the server's connections.
#[derive(Debug, Default)]
struct Bytes2 {
    read: AtomicU64,
    written: AtomicU64,
}

/// The server's listener, counting what its connections carry.
struct Counting {
    inner: TcpListener,
    bytes: Arc<Bytes2>,
}

struct CountingStream {
    inner: TcpStream,
    bytes: Arc<Bytes2>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.bytes.read.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Listener for Counting {
    type Io = CountingStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (s, peer) = Listener::accept(&mut self.inner).await?;
        Ok((
            CountingStream {
                inner: s,
                bytes: self.bytes.clone(),
            },
            peer,
        ))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Listener::local_addr(&self.inner)
    }
}

/// How long the demo's client keeps an idle connection.
const IDLE_CLOSE: Duration = Duration::from_millis(10);

/// Where both hosts' trace hooks put their records: a ladder builder fed as the run goes,
/// and the client's handshake times.
struct Feed {
    builder: LadderBuilder,
    /// The time of the last record of each host (client, server).
    last: [Option<Instant>; 2],
    /// Records pushed since the builder last advanced.
    since_advance: usize,
    /// Keep the rows (to draw them); otherwise they are dropped as they come.
    keep_rows: bool,
    rows: Vec<Row>,
    held_peak: usize,
    /// The client's connections in SYN-SENT, since when.
    connecting: HashMap<FourTuple, Instant>,
    /// The client's handshakes: SYN sent -> ESTABLISHED, one interval per connection.
    handshakes: Vec<(Instant, Instant)>,
    /// Where `--html` keeps the records.
    recorder: Option<super::export::Recorder>,
}

/// Records pushed between two advances of the builder.
const ADVANCE_EVERY: usize = 256;

impl Feed {
    fn take(&mut self, host: usize, r: &TraceRecord) {
        if host == 0 {
            if let TraceEvent::State { tuple, from, to } = r.event {
                if to == State::SynSent {
                    self.connecting.insert(tuple, r.time);
                } else if from == State::SynSent && to == State::Established {
                    if let Some(t0) = self.connecting.remove(&tuple) {
                        self.handshakes.push((t0, r.time));
                    }
                }
            }
        }
        self.builder.push(host, [*r]);
        if let Some(rec) = &self.recorder {
            rec.records(host, std::slice::from_ref(r));
        }
        self.last[host] = Some(r.time);
        self.since_advance += 1;
        if self.since_advance >= ADVANCE_EVERY {
            self.since_advance = 0;
            self.held_peak = self.held_peak.max(self.builder.held());
            // Each host records in time order, so neither will record anything older than
            // the later of what both have recorded last.
            if let [Some(a), Some(b)] = self.last {
                self.builder.advance(a.min(b));
            }
            self.take_rows();
        }
    }

    fn take_rows(&mut self) {
        let rows = self.builder.take_rows();
        if self.keep_rows {
            self.rows.extend(rows);
        }
    }
}

type SharedFeed = Arc<Mutex<Feed>>;

fn lock(f: &SharedFeed) -> std::sync::MutexGuard<'_, Feed> {
    f.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hook(stack: &Stack, feed: &SharedFeed, host: usize) {
    let feed = feed.clone();
    stack.set_trace_hook(Some(Box::new(move |r| lock(&feed).take(host, r))));
}

/// The connections `stack` still holds, for an error message.
fn describe(who: &str, stack: &Stack) -> Vec<String> {
    stack.with_interface(|iface| {
        let tcp = iface.tcp();
        tcp.connections()
            .filter_map(|id| tcp.conn(id))
            .map(|c| format!("the {who}'s connection {} in {}", c.tuple(), c.state()))
            .collect()
    })
}

struct Run {
    /// Packets written to this scenario's capture, and its file.
    captured: Option<(u64, std::path::PathBuf)>,
    last_byte: Instant,
    closed: Instant,
    end: Instant,
    cut_by_limit: bool,
    request_bytes: u64,
    reply_bytes: u64,
    body_bytes: u64,
    stats: CallStats,
}

impl ApiCalls {
    async fn calls(
        &self,
        client: &Client,
        origin_url: &str,
        log: Option<super::export::CallLog>,
    ) -> Result<(u64, Vec<Duration>, Option<Duration>), DemoError> {
        let url = format!("{origin_url}/bytes/{}", self.reply_bytes);
        let close = matches!(
            self.mode,
            Mode::ConnPerCall | Mode::ConnPerCallFastOpen | Mode::Https1PerCall
        );
        let expect = self.reply_bytes;
        let one = move |client: Client,
                        url: String,
                        slow: bool,
                        log: Option<super::export::CallLog>| async move {
            let started = tokio::time::Instant::now();
            let start = log.as_ref().map(super::export::CallLog::now);
            let mut req = Request::get(url.as_str());
            if close {
                req = req.header(CONNECTION, "close");
            }
            let req = req
                .body(Bytes::new())
                .map_err(|e| DemoError::Run(e.to_string()))?;
            let failed = |e: synack_http::Error| DemoError::Run(format!("GET {url}: {e}"));
            let r = client.send(req).await.map_err(failed)?;
            let head = tokio::time::Instant::now();
            if slow {
                // The head has come; the reply's DATA fills the stream's window and stops
                // there until this reader reads (and its WINDOW_UPDATEs open the window).
                tokio::time::sleep(SLOW_READ_AFTER).await;
            }
            let (parts, mut body) = r.into_parts();
            let mut got = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Some(d) = frame.map_err(failed)?.data_ref() {
                    got.extend_from_slice(d);
                }
            }
            let r = http::Response::from_parts(parts, Bytes::from(got));
            let body = r.body();
            if r.status() != 200
                || body.len() as u64 != expect
                || body
                    .iter()
                    .enumerate()
                    .any(|(i, b)| *b != pattern_byte(i as u64))
            {
                return Err(DemoError::Run(format!(
                    "GET {url}: a wrong reply ({}, {} bytes)",
                    r.status(),
                    body.len()
                )));
            }
            if let (Some(log), Some(start)) = (&log, start) {
                log.done(start, &r);
            }
            Ok::<(u64, Duration, tokio::time::Instant), DemoError>((
                body.len() as u64,
                started.elapsed(),
                head,
            ))
        };
        let t0 = tokio::time::Instant::now();
        let mut first_head: Option<tokio::time::Instant> = None;
        let mut body = 0;
        let mut times = Vec::with_capacity(self.calls);
        if let Some(every) = self.stagger {
            // The first call opens the connection; the others follow it at a steady pace.
            let (bytes, took, head) = one(client.clone(), url.clone(), false, log.clone()).await?;
            body += bytes;
            times.push(took);
            first_head = Some(head);
            let mut tasks = tokio::task::JoinSet::new();
            for k in 1..self.calls {
                let (client, url, log) = (client.clone(), url.clone(), log.clone());
                tasks.spawn(async move {
                    tokio::time::sleep(every * (k as u32 - 1)).await;
                    one(client, url, false, log).await
                });
            }
            while let Some(r) = tasks.join_next().await {
                let (bytes, took, _) =
                    r.map_err(|e| DemoError::Run(format!("a client task failed: {e}")))??;
                body += bytes;
                times.push(took);
            }
            return Ok((body, times, first_head.map(|h| h - t0)));
        }
        let lanes = match self.mode {
            Mode::Pool => self.concurrency.max(1),
            // Every call at once: HTTP/2 multiplexes them on one connection.
            Mode::Http2 | Mode::Http2Tls | Mode::Http2SlowReader => self.calls.max(1),
            _ => 1,
        };
        let stagger = self.mode == Mode::Pool;
        let mode = self.mode;
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..lanes {
            // Lane k makes calls k, k + C, k + 2C, ...
            let n = (self.calls + lanes - 1 - lane) / lanes;
            let (client, url, log) = (client.clone(), url.clone(), log.clone());
            tasks.spawn(async move {
                // Lanes start 1 ms apart (tokio's timer resolution): no two connections have
                // events at the same instant, whose order would depend on the stack's hash map
                // of wakers, which differs from run to run.
                // (Streams of one HTTP/2 connection need no such care: they start together.)
                if stagger {
                    tokio::time::sleep(Duration::from_millis(lane as u64)).await;
                }
                let mut got = (0, Vec::with_capacity(n), None);
                // The first call of the slow-reader scenario is the slow one.
                let slow = lane == 0 && mode == Mode::Http2SlowReader;
                for _ in 0..n {
                    let (bytes, took, head) =
                        one(client.clone(), url.clone(), slow, log.clone()).await?;
                    got.0 += bytes;
                    got.1.push(took);
                    got.2 = got.2.or(Some(head));
                }
                Ok::<(u64, Vec<Duration>, Option<tokio::time::Instant>), DemoError>(got)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (bytes, took, head) =
                r.map_err(|e| DemoError::Run(format!("a client task failed: {e}")))??;
            body += bytes;
            times.extend(took);
            first_head = match (first_head, head) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok((body, times, first_head.map(|h| h - t0)))
    }

    async fn run_async(&self, settings: &Settings, feed: &SharedFeed) -> Result<Run, DemoError> {
        let net = SimNet::new(settings.seed);
        let deadline = tokio::time::Instant::now() + settings.time_limit;
        let c = net.add_host("client", &[CLIENT_IP], Config::default());
        let mut server_config = Config::default();
        if self.mode == Mode::ConnPerCallFastOpen {
            // Fast Open for clients and servers alike (Linux's `tcp_fastopen = 3`).
            server_config.fast_open = FastOpenConfig::from_linux_sysctl(3);
        }
        let s = net.add_host("server", &[SERVER_IP], server_config);
        let mut path = settings.path.clone();
        if let Some(loss) = self.loss {
            path.loss = loss;
        }
        net.link(&c, &s, path.clone(), path);
        let capture = match &settings.pcap {
            Some(base) => {
                let path = capture_path(base, self.mode, self.stagger.is_some(), self.loss);
                let file = std::fs::File::create(&path)
                    .map_err(|e| DemoError::Io(format!("creating {}", path.display()), e))?;
                let tap = PcapTap::new(std::io::BufWriter::new(file))
                    .map_err(|e| DemoError::Io(format!("writing {}", path.display()), e))?;
                let shared = Arc::new(Mutex::new(tap));
                net.tap(&c, SharedTap(shared.clone()));
                Some((path, shared))
            }
            None => None,
        };
        hook(&c, feed, 0);
        hook(&s, feed, 1);
        // HTTPS on its own port (RFC 9110 §4.2.2), HTTP on the demo's.
        let port = if self.mode.tls() { 443 } else { SERVER_PORT };
        let listener = TcpListener::bind(&s, SocketAddr::new(SERVER_IP, port))
            .await
            .map_err(|e| DemoError::Run(format!("listen: {e}")))?;
        if self.mode == Mode::ConnPerCallFastOpen {
            // A Fast Open server (Linux's TCP_FASTOPEN with a queue of 128).
            listener
                .set_fast_open(128)
                .map_err(|e| DemoError::Run(format!("listen: {e}")))?;
        }
        let bytes = Arc::new(Bytes2::default());
        // TLS: a certificate made for the server's address, which the client trusts alone;
        // Ed25519, so that every run's handshakes have the same sizes.
        let tls = match self.mode.tls() {
            true => {
                let failed =
                    |e: std::io::Error| DemoError::Run(format!("making a certificate: {e}"));
                let cert =
                    SelfSigned::generate_ed25519(&[SERVER_IP.to_string()]).map_err(failed)?;
                let config = TlsServerConfig::with_self_signed(&cert).map_err(failed)?;
                Some((config, cert))
            }
            false => None,
        };
        let server = serve(
            Counting {
                inner: listener,
                bytes: bytes.clone(),
            },
            ServerConfig {
                h2c: matches!(self.mode, Mode::Http2 | Mode::Http2SlowReader),
                tls: tls.as_ref().map(|t| t.0.clone()),
                ..ServerConfig::default()
            },
            // Dates from virtual time: each run sends the same bytes.
            Routes::new().with_virtual_date(
                std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(DEMO_EPOCH_SECS),
            ),
        );
        let pool = PoolConfig {
            max_per_origin: match self.mode {
                Mode::Pool => self.concurrency.max(1),
                _ => 1,
            },
            max_idle_per_origin: self.concurrency.max(1),
            // The client closes each connection 10 ms after its last call: one by one (the
            // lanes end 1 ms apart), so that the closes too happen at distinct instants.
            idle_timeout: IDLE_CLOSE,
            ..PoolConfig::default()
        };
        let client = Client::new(
            SynackConnector::new(&c).fast_open(self.mode == Mode::ConnPerCallFastOpen),
            ClientConfig {
                pool,
                request_timeout: settings.time_limit,
                connect_timeout: settings.time_limit,
                http2: Http2ClientConfig {
                    prior_knowledge: matches!(self.mode, Mode::Http2 | Mode::Http2SlowReader),
                    initial_stream_window_size: (self.mode == Mode::Http2SlowReader)
                        .then_some(SLOW_STREAM_WINDOW),
                    initial_connection_window_size: (self.mode == Mode::Http2SlowReader)
                        .then_some(SLOW_CONN_WINDOW),
                    // HTTPS/1.1: the client offers only http/1.1.
                    alpn: self.mode.http2(),
                    ..Http2ClientConfig::default()
                },
                tls: TlsClientConfig {
                    verification: match &tls {
                        Some((_, cert)) => CertVerification::Roots(vec![cert.cert.clone()]),
                        None => CertVerification::default(),
                    },
                },
                ..ClientConfig::default()
            },
        );
        let scheme = if self.mode.tls() { "https" } else { "http" };
        let url = format!("{scheme}://{SERVER_IP}:{port}");
        let gave_up = |what: String| {
            DemoError::Run(format!(
                "gave up after {} of virtual time (--time-limit): {what}; raise --time-limit",
                super::fmt_duration(settings.time_limit)
            ))
        };
        let log = settings.recorder.as_ref().map(|r| r.call_log(&c));
        let (body, times, first_byte) =
            match tokio::time::timeout_at(deadline, self.calls(&client, &url, log)).await {
                Ok(r) => r?,
                Err(_) => {
                    let mut open = describe("client", &c);
                    open.extend(describe("server", &s));
                    return Err(gave_up(format!(
                        "the calls did not finish ({})",
                        if open.is_empty() {
                            "no connection open".to_owned()
                        } else {
                            open.join(", ")
                        }
                    )));
                }
            };
        let last_byte = net.now();
        let m = client.metrics();
        let stats = CallStats {
            times,
            connections: m.connections_opened,
            streams: m.h2_streams,
            tls_handshakes: m.tls_handshakes,
            tls_handshake_time: m.tls_handshake_time,
            retries: m.retries,
            first_byte,
            quic: false,
            paced: self.stagger,
        };
        let close = async {
            // The client closes its idle connections, the server its side.
            tokio::time::sleep(IDLE_CLOSE * 2).await;
            drop(client);
            // The server closes each connection when the client's FIN arrives.
            while server.stats().active_connections > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            server.shutdown(Duration::from_secs(10)).await;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            c.wait_idle(left).await && s.wait_idle(left).await
        };
        let closed_in_time = matches!(tokio::time::timeout_at(deadline, close).await, Ok(true));
        if !closed_in_time {
            // TIME-WAIT does not count (wait_idle ignores it): something else was open.
            let mut open = describe("client", &c);
            open.extend(describe("server", &s));
            return Err(gave_up(format!(
                "the calls were done at t={last_byte}s, but at t={}s {}",
                net.now(),
                open.join(", ")
            )));
        }
        let closed = net.now();
        // TIME-WAIT runs out, unless the time limit comes first: the exchange is complete,
        // so that is no failure.
        let time_wait_end =
            tokio::time::Instant::now() + Config::default().msl * 2 + Duration::from_millis(1);
        tokio::time::sleep_until(time_wait_end.min(deadline)).await;
        let end = net.now();
        let captured = match capture {
            Some((path, tap)) => {
                let mut tap = tap.lock().unwrap_or_else(|p| p.into_inner());
                tap.flush()
                    .map_err(|e| DemoError::Io(format!("writing {}", path.display()), e))?;
                Some((tap.written(), path))
            }
            None => None,
        };
        Ok(Run {
            captured,
            last_byte,
            closed,
            end,
            cut_by_limit: time_wait_end > deadline,
            request_bytes: bytes.read.load(Ordering::Relaxed),
            reply_bytes: bytes.written.load(Ordering::Relaxed),
            body_bytes: body,
            stats,
        })
    }
}

/// The time during which at least one of `spans` was running: handshakes made in parallel
/// count once, not as if one followed another.
fn time_covered(mut spans: Vec<(Instant, Instant)>) -> Duration {
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (a, b) in spans {
        match current {
            Some((ca, cb)) if a <= cb => current = Some((ca, cb.max(b))),
            _ => {
                if let Some((ca, cb)) = current {
                    total += cb - ca;
                }
                current = Some((a, b));
            }
        }
    }
    if let Some((ca, cb)) = current {
        total += cb - ca;
    }
    total
}

/// Where a calls scenario's capture goes: beside `--pcap FILE`, named for the scenario
/// (`demo.pcap` gives `demo-per-call.pcap`, `demo-keepalive.pcap`, `demo-pool.pcap`).
fn capture_path(
    base: &std::path::Path,
    mode: Mode,
    stagger: bool,
    mode_loss: Option<f64>,
) -> std::path::PathBuf {
    let tag = match mode {
        Mode::ConnPerCall => "per-call",
        Mode::ConnPerCallFastOpen => "per-call-fast-open",
        Mode::KeepAlive => "keepalive",
        Mode::Pool => "pool",
        Mode::Http2 => "http2",
        Mode::Http2Tls => "http2-tls",
        Mode::Https1PerCall => "https-per-call",
        Mode::Http2SlowReader => "http2-slow-reader",
    };
    let tag = if stagger {
        format!("{tag}-staggered")
    } else {
        tag.to_owned()
    };
    let tag = match loss_tag(mode_loss) {
        Some(l) => format!("{tag}-loss{l}"),
        None => tag,
    };
    let stem = base
        .file_stem()
        .map_or("capture".into(), |s| s.to_string_lossy());
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{tag}"),
    };
    base.with_file_name(name)
}

/// A capture the network writes to and the scenario reads back at the end.
struct SharedTap(Arc<Mutex<PcapTap<std::io::BufWriter<std::fs::File>>>>);

impl Tap for SharedTap {
    fn packet(&mut self, now: synack_tcp::Instant, dir: TapDirection, packet: &[u8]) {
        if let Ok(mut t) = self.0.lock() {
            t.packet(now, dir, packet);
        }
    }
}

/// `2` for 2 %, `0.5` for 0.5 %.
fn loss_tag(loss: Option<f64>) -> Option<String> {
    loss.map(|l| super::trim_float(l * 100.0))
}

impl Scenario for ApiCalls {
    fn name(&self) -> String {
        let name = match self.mode {
            Mode::ConnPerCall => "calls: new connection each".into(),
            Mode::ConnPerCallFastOpen => "calls: new connection each, TCP Fast Open".into(),
            Mode::KeepAlive => "calls: one keep-alive connection".into(),
            Mode::Pool => format!("calls: pool, concurrency {}", self.concurrency),
            Mode::Http2 => "calls: HTTP/2, one connection".into(),
            Mode::Http2Tls => "calls: HTTP/2 over TLS".into(),
            Mode::Https1PerCall => "calls: HTTPS/1.1, new connection each".into(),
            Mode::Http2SlowReader => "calls: HTTP/2, small windows, a slow reader".into(),
        };
        let name = match self.stagger {
            Some(every) => format!("calls: HTTP/2, one every {}", super::fmt_duration(every)),
            None => name,
        };
        match loss_tag(self.loss) {
            Some(l) => format!("{name}, {l}% loss"),
            None => name,
        }
    }

    fn description(&self, _settings: &Settings) -> String {
        let (n, m, c) = (self.calls, self.reply_bytes, self.concurrency);
        if let Some(every) = self.stagger {
            return format!(
                "{n} calls of GET /bytes/{m} on one cleartext HTTP/2 connection: the first \
                 opens it, then one call every {} whether or not the earlier ones are done",
                super::fmt_duration(every)
            );
        }
        match self.mode {
            Mode::ConnPerCall => format!(
                "{n} calls of GET /bytes/{m} one after another, each with Connection: close: \
                 a handshake per call"
            ),
            Mode::ConnPerCallFastOpen => format!(
                "{n} calls of GET /bytes/{m} one after another, each on a new connection whose \
                 SYN carries the request once the first has brought a Fast Open cookie"
            ),
            Mode::KeepAlive => format!(
                "{n} calls of GET /bytes/{m} one after another on one persistent connection: \
                 one handshake"
            ),
            Mode::Pool => {
                let conns = c.min(n);
                format!(
                    "{n} calls of GET /bytes/{m} through the pool, {c} at a time: {conns} \
                     connections, {conns} handshakes"
                )
            }
            Mode::Http2 => format!(
                "{n} calls of GET /bytes/{m} all at once, each a stream of one cleartext HTTP/2 \
                 connection: one handshake"
            ),
            Mode::Http2Tls => format!(
                "{n} calls of GET /bytes/{m} all at once on one HTTP/2 connection over TLS 1.3: \
                 one TCP and one TLS handshake"
            ),
            Mode::Https1PerCall => format!(
                "{n} calls of GET /bytes/{m} one after another over HTTPS/1.1, each with \
                 Connection: close: a TCP and a TLS handshake per call"
            ),
            Mode::Http2SlowReader => format!(
                "{n} calls of GET /bytes/{m} at once on one HTTP/2 connection whose client \
                 grants {} per stream and {} per connection; call 1 reads its reply only after \
                 {}: its stream stops when its window is full while the others flow, all within \
                 the connection's window",
                fmt_bytes(SLOW_STREAM_WINDOW as u64),
                fmt_bytes(SLOW_CONN_WINDOW as u64),
                super::fmt_duration(SLOW_READ_AFTER),
            ),
        }
    }

    fn run(
        &self,
        settings: &Settings,
        mut ladder: Option<&mut dyn Write>,
    ) -> Result<Outcome, DemoError> {
        let rt = synack_http::virtual_runtime()
            .map_err(|e| DemoError::Io("starting the runtime".into(), e))?;
        let builder = ladder_builder(settings);
        let feed: SharedFeed = Arc::new(Mutex::new(Feed {
            builder,
            last: [None, None],
            since_advance: 0,
            keep_rows: ladder.is_some(),
            rows: Vec::new(),
            held_peak: 0,
            connecting: HashMap::new(),
            handshakes: Vec::new(),
            recorder: settings.recorder.clone(),
        }));
        let run = rt.block_on(self.run_async(settings, &feed));
        drop(rt);
        let run = run?;
        let Ok(feed) =
            Arc::try_unwrap(feed).map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        else {
            return Err(DemoError::Run("the trace hooks outlived the run".into()));
        };
        let Feed {
            builder,
            mut rows,
            held_peak,
            handshakes,
            keep_rows,
            ..
        } = feed;
        let held_peak = held_peak.max(builder.held());
        let built = builder.finish();
        if keep_rows {
            rows.extend(built.rows.iter().cloned());
            // Ports tell the connections apart when there are several.
            let mut lines = LineRenderer::new(&HOSTS, built.connections > 1, Instant::ZERO);
            super::scenario::draw(&mut ladder, &mut lines, &rows, &Progress::hidden())?;
        }
        let mut phases = built.phases;
        // The whole run: from the first SYN to the last call's last byte, and to the moment
        // every connection was closed.
        phases.last_response_byte = Some(run.last_byte);
        phases.closed = Some(run.closed);
        let calls = self.calls;
        Ok(Outcome {
            name: self.name(),
            phases,
            summary: built.summary,
            requests: calls,
            request_bytes: run.request_bytes,
            head_bytes: run.reply_bytes.saturating_sub(run.body_bytes),
            body_bytes: run.body_bytes,
            time_wait: Config::default().msl * 2,
            end: run.end,
            cut_by_limit: run.cut_by_limit,
            captured: run.captured.as_ref().map(|c| c.0),
            capture_path: run.captured.map(|c| c.1),
            handshake_time: Some(time_covered(handshakes)),
            held_peak,
            calls: Some(run.stats),
        })
    }
}
