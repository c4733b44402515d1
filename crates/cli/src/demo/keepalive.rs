//! The cost of a connection per API call: N calls (`--calls`) made with a new connection per
//! call (`Connection: close`), over one keep-alive connection, and through a pool with
//! concurrency C (`--concurrency`), each on a fresh simulated network with the demo's path.
//! The client and server are `synack-http`'s (hyper over synack's sockets), run on a tokio
//! runtime with a paused clock, so times are virtual and the runs deterministic.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::Request;
use synack_http::routes::{pattern_byte, Routes};
use synack_http::server::Listener;
use synack_http::{serve, Client, ClientConfig, PoolConfig, ServerConfig, SynackConnector};
use synack_stack::ladder::Ladder;
use synack_stack::net::{SimNet, Stack, TcpListener, TcpStream};
use synack_tcp::{Config, Instant, State, TraceEvent, TraceRecord};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::scenario::{Outcome, Scenario};
use super::world::{CLIENT_IP, SERVER_IP, SERVER_PORT};
use super::{DemoError, Settings};

/// How the calls are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new connection per call (`Connection: close`).
    ConnPerCall,
    /// One keep-alive connection, calls one after another.
    KeepAlive,
    /// Through the pool, C calls at a time.
    Pool,
}

/// N API calls made one way.
#[derive(Debug, Clone, Copy)]
pub struct ApiCalls {
    pub mode: Mode,
    pub calls: usize,
    pub concurrency: usize,
    /// The reply body of each call.
    pub reply_bytes: u64,
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

type Trace = Arc<Mutex<Vec<TraceRecord>>>;

fn hook(stack: &Stack) -> Trace {
    let t: Trace = Arc::default();
    let sink = t.clone();
    stack.set_trace_hook(Some(Box::new(move |r| {
        sink.lock().unwrap_or_else(PoisonError::into_inner).push(*r)
    })));
    t
}

/// Sum over the client's connections of SYN sent → ESTABLISHED.
fn handshake_time(client: &[TraceRecord]) -> Duration {
    let mut open = std::collections::HashMap::new();
    let mut total = Duration::ZERO;
    for r in client {
        if let TraceEvent::State { tuple, from, to } = r.event {
            if to == State::SynSent {
                open.insert(tuple, r.time);
            } else if from == State::SynSent && to == State::Established {
                if let Some(t0) = open.remove(&tuple) {
                    total += r.time - t0;
                }
            }
        }
    }
    total
}

struct Run {
    client_trace: Vec<TraceRecord>,
    server_trace: Vec<TraceRecord>,
    last_byte: Instant,
    closed: Instant,
    end: Instant,
    request_bytes: u64,
    reply_bytes: u64,
    body_bytes: u64,
}

impl ApiCalls {
    async fn calls(&self, client: &Client, origin_url: &str) -> Result<u64, DemoError> {
        let url = format!("{origin_url}/bytes/{}", self.reply_bytes);
        let close = self.mode == Mode::ConnPerCall;
        let expect = self.reply_bytes;
        let one = move |client: Client, url: String| async move {
            let mut req = Request::get(url.as_str());
            if close {
                req = req.header(CONNECTION, "close");
            }
            let req = req
                .body(Bytes::new())
                .map_err(|e| DemoError::Run(e.to_string()))?;
            let r = client
                .request(req)
                .await
                .map_err(|e| DemoError::Run(format!("GET {url}: {e}")))?;
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
            Ok::<u64, DemoError>(body.len() as u64)
        };
        let lanes = match self.mode {
            Mode::Pool => self.concurrency.max(1),
            _ => 1,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..lanes {
            // Lane k makes calls k, k + C, k + 2C, ...
            let n = (self.calls + lanes - 1 - lane) / lanes;
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                // Lanes start 1 ms apart (tokio's timer resolution): no two connections have
                // events at the same instant, whose order would depend on the stack's hash map
                // of wakers, which differs from run to run.
                tokio::time::sleep(Duration::from_millis(lane as u64)).await;
                let mut got = 0;
                for _ in 0..n {
                    got += one(client.clone(), url.clone()).await?;
                }
                Ok::<u64, DemoError>(got)
            });
        }
        let mut body = 0;
        while let Some(r) = tasks.join_next().await {
            body += r.map_err(|e| DemoError::Run(format!("a client task failed: {e}")))??;
        }
        Ok(body)
    }

    async fn run_async(&self, settings: &Settings) -> Result<Run, DemoError> {
        let net = SimNet::new(settings.seed);
        let c = net.add_host("client", &[CLIENT_IP], Config::default());
        let s = net.add_host("server", &[SERVER_IP], Config::default());
        net.link(&c, &s, settings.path.clone(), settings.path.clone());
        let (ct, st) = (hook(&c), hook(&s));
        let epoch = net.now();
        let listener = TcpListener::bind(&s, SocketAddr::new(SERVER_IP, SERVER_PORT))
            .await
            .map_err(|e| DemoError::Run(format!("listen: {e}")))?;
        let bytes = Arc::new(Bytes2::default());
        let server = serve(
            Counting {
                inner: listener,
                bytes: bytes.clone(),
            },
            ServerConfig::default(),
            Routes::new(),
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
            SynackConnector::new(&c),
            ClientConfig {
                pool,
                request_timeout: settings.time_limit,
                connect_timeout: settings.time_limit,
                ..ClientConfig::default()
            },
        );
        let url = format!("http://{SERVER_IP}:{SERVER_PORT}");
        let body = self.calls(&client, &url).await?;
        let last_byte = net.now();
        // The client closes its idle connections, the server its side.
        tokio::time::sleep(IDLE_CLOSE * 2).await;
        drop(client);
        // The server closes each connection when the client's FIN arrives.
        while server.stats().active_connections > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.shutdown(Duration::from_secs(10)).await;
        let open = c.wait_idle(settings.time_limit).await && s.wait_idle(settings.time_limit).await;
        if !open {
            return Err(DemoError::Run("the connections did not close".into()));
        }
        let closed = net.now();
        // TIME-WAIT runs out.
        tokio::time::sleep(Config::default().msl * 2 + Duration::from_millis(1)).await;
        let end = net.now();
        let take =
            |t: &Trace| std::mem::take(&mut *t.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = epoch;
        Ok(Run {
            client_trace: take(&ct),
            server_trace: take(&st),
            last_byte,
            closed,
            end,
            request_bytes: bytes.read.load(Ordering::Relaxed),
            reply_bytes: bytes.written.load(Ordering::Relaxed),
            body_bytes: body,
        })
    }
}

impl Scenario for ApiCalls {
    fn name(&self) -> &'static str {
        match self.mode {
            Mode::ConnPerCall => "calls: new connection each",
            Mode::KeepAlive => "calls: one keep-alive connection",
            Mode::Pool => "calls: pool, concurrency C",
        }
    }

    fn description(&self) -> &'static str {
        match self.mode {
            Mode::ConnPerCall => {
                "N calls of GET /bytes/M one after another, each with Connection: close: a \
                 handshake per call"
            }
            Mode::KeepAlive => {
                "N calls one after another on one persistent connection: one handshake"
            }
            Mode::Pool => "N calls through the pool, C at a time: C connections, C handshakes",
        }
    }

    fn run(&self, settings: &Settings) -> Result<Outcome, DemoError> {
        let rt = synack_http::virtual_runtime()
            .map_err(|e| DemoError::Io("starting the runtime".into(), e))?;
        let limit = settings.time_limit;
        let run = rt.block_on(async {
            match tokio::time::timeout(limit, self.run_async(settings)).await {
                Ok(r) => r,
                Err(_) => Err(DemoError::Run(format!(
                    "gave up after {} of virtual time (--time-limit)",
                    super::fmt_duration(limit)
                ))),
            }
        })?;
        let hs = handshake_time(&run.client_trace);
        let traces = [
            ("client".to_owned(), run.client_trace),
            ("server".to_owned(), run.server_trace),
        ];
        let ladder = Ladder::new(&traces)
            .relative(!settings.absolute)
            .fold(settings.fold)
            .time_origin(Instant::ZERO);
        let mut phases = ladder.phases();
        // The whole run: from the first SYN to the last call's last byte, and to the moment
        // every connection was closed.
        phases.last_response_byte = Some(run.last_byte);
        phases.closed = Some(run.closed);
        let summary = ladder.summary();
        let calls = self.calls;
        Ok(Outcome {
            name: self.name(),
            ladder,
            phases,
            summary,
            requests: calls,
            request_bytes: run.request_bytes,
            head_bytes: run.reply_bytes.saturating_sub(run.body_bytes),
            body_bytes: run.body_bytes,
            time_wait: Config::default().msl * 2,
            end: run.end,
            captured: None,
            handshake_time: Some(hs),
        })
    }
}
