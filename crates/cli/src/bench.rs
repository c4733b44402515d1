//! `synack bench`: what synack's stack does through its driver, on 1 and more workers.
//!
//! Four workloads, each bounded in count and in time:
//! - `churn`: connections opened, one byte each way after the handshake, closed by the server;
//! - `bulk`: bytes sent one way over 4 connections at once;
//! - `pingpong`: 64-byte messages on one connection, one in flight;
//! - `http`: HTTP/1.1 keep-alive requests (`GET /`) to synack's HTTP server (synack-http).
//!
//! On three kinds of device:
//! - `pipe` (the default, no privileges): a client stack and a server stack of `W` workers
//!   each, over an in-memory multiqueue pipe, on a runtime of `W` threads;
//! - `sim`: the deterministic simulated network under virtual time (one worker: a simulated
//!   network is one task); rates are per virtual second, counts exact and repeatable;
//! - `tun` (root): synack over a multiqueue TUN device (one queue per worker) against the
//!   kernel's sockets, inside a network namespace the bench creates and removes (addresses
//!   in 198.18.0.0/15); the same workloads run kernel to kernel over a veth pair in a second
//!   namespace for comparison.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use synack_http::routes::Routes;
use synack_http::server::{serve, Listener, ServerConfig};
use synack_stack::net::{pipe_multiqueue, SimNet, Stack, StackConfig, TcpListener, TcpStream};
use synack_stack::sim::units::{parse_duration, parse_size};
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const EXAMPLES: &str = "Examples:
  synack bench                                  # pipe: 1 and 2 workers, every workload
  synack bench --device sim --json              # simulated network, virtual time, exact counts
  synack bench --only churn,http --workers 1,2  # some workloads
  sudo synack bench --device tun                # synack over TUN vs the kernel over veth";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// Two synack stacks over an in-memory multiqueue pipe (real time, no privileges).
    Pipe,
    /// The deterministic simulated network (virtual time, one worker).
    Sim,
    /// synack over a multiqueue TUN device against the kernel, in a network namespace (root).
    Tun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    Churn,
    Bulk,
    Pingpong,
    Http,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Churn => "churn",
            Workload::Bulk => "bulk",
            Workload::Pingpong => "pingpong",
            Workload::Http => "http",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Churn => "conn/s",
            Workload::Bulk => "MB/s",
            Workload::Pingpong => "rtt/s",
            Workload::Http => "req/s",
        }
    }
}

/// `synack bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where synack runs.
    #[arg(long, value_enum, default_value = "pipe")]
    pub device: DeviceKind,
    /// Worker counts to run (shards of each stack, and runtime threads).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Workloads to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Workload>,
    /// Connections opened and closed by `churn`.
    #[arg(long, default_value_t = 20_000)]
    pub conns: u64,
    /// Bytes sent by `bulk` (over 4 connections).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub bytes: u64,
    /// Round trips of `pingpong`.
    #[arg(long, default_value_t = 20_000)]
    pub pings: u64,
    /// Requests made by `http`.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Clients at once for `churn` and `http`.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Rounds: every workload on every worker count, in turn, this many times; each row is the
    /// round of median rate.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Longest a workload may run (it stops early, its count then short of the target).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time_limit: Duration,
    /// Print the results as JSON (schema synack-bench/1).
    #[arg(long)]
    pub json: bool,
    /// Run inside the network namespace already made (internal: `--device tun` re-runs
    /// itself there).
    #[arg(long, hide = true)]
    pub in_netns: Option<String>,
}

/// One run of a workload.
#[derive(Debug, Clone)]
struct Run {
    stack: &'static str,
    workload: Workload,
    workers: usize,
    target: u64,
    done: u64,
    errors: u64,
    seconds: f64,
    /// CPU time the process used during the run (user and system, every thread), when known.
    cpu: Option<f64>,
    /// The rounds this run is the median of.
    rounds: usize,
}

impl Run {
    /// Cores busy on average: CPU time over wall time (what the machine's other load left).
    fn cores(&self) -> Option<f64> {
        self.cpu
            .filter(|_| self.seconds > 0.0)
            .map(|c| c / self.seconds)
    }

    /// Units per CPU second: the cost of the work, whatever share of the machine it got.
    fn per_cpu(&self) -> Option<f64> {
        let per = if self.workload == Workload::Bulk {
            self.done as f64 / 1e6
        } else {
            self.done as f64
        };
        self.cpu.filter(|c| *c > 0.0).map(|c| per / c)
    }

    fn rate(&self) -> f64 {
        let per = if self.workload == Workload::Bulk {
            self.done as f64 / 1e6
        } else {
            self.done as f64
        };
        if self.seconds > 0.0 {
            per / self.seconds
        } else {
            0.0
        }
    }
}

const SERVER: &str = "198.18.0.2";
const CLIENT: &str = "198.18.0.1";
const PORT_ECHO: u16 = 7;
const PORT_HTTP: u16 = 80;
const BULK_STREAMS: u64 = 4;
/// Over TUN and veth, each churn run of a process uses its own server port from here on: the
/// kernel keeps the TIME-WAIT of the last run's connections, and reusing their 4-tuples would
/// measure its TIME-WAIT handling instead.
const PORT_CHURN_BASE: u16 = 9000;
/// The port `churn` connects to.
static CHURN_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(PORT_ECHO + 2);
/// Churn runs so far in this process (over TUN and veth).
static CHURN_RUNS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Before a churn run over TUN or veth: its own port.
fn next_churn_port() {
    let run = CHURN_RUNS.fetch_add(1, Ordering::Relaxed);
    CHURN_PORT.store(PORT_CHURN_BASE + run, Ordering::Relaxed);
}
const PING: usize = 64;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

pub fn run(args: &BenchArgs, out: &mut dyn Write) -> io::Result<()> {
    if args.workers.is_empty() || args.workers.iter().any(|&w| w == 0 || w > 64) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--workers takes counts from 1 to 64",
        ));
    }
    let mut workloads = if args.only.is_empty() {
        vec![
            Workload::Churn,
            Workload::Bulk,
            Workload::Pingpong,
            Workload::Http,
        ]
    } else {
        args.only.clone()
    };
    workloads.sort();
    workloads.dedup();
    match (args.device, args.in_netns.as_deref()) {
        (DeviceKind::Tun, None) => return tun_outer(args, out),
        (_, Some("veth-server")) => return veth_server(args),
        _ => {}
    }
    let workers: Vec<usize> = if args.device == DeviceKind::Sim {
        vec![1]
    } else {
        args.workers.clone()
    };
    let load_before = loadavg();
    let rounds = args.rounds.max(1);
    let total: u64 = workloads.iter().map(|w| target(args, *w)).sum::<u64>()
        * workers.len() as u64
        * rounds as u64
        * if args.device == DeviceKind::Tun { 2 } else { 1 };
    let bar = if args.json || args.in_netns.is_some() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>18} [{bar:30}] {percent:>3}% {elapsed}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    };
    let progress = Progress { bar: bar.clone() };
    let mut all = Vec::new();
    for round in 0..rounds {
        for &w in &workloads {
            // Interleaved: the worker counts in turn, the first one moving each round.
            for k in 0..workers.len() {
                let n = workers[(k + round) % workers.len()];
                bar.set_message(format!("{} x{n}", w.name()));
                let cpu0 = cpu_time();
                let mut r = match args.device {
                    DeviceKind::Sim => run_sim(args, w, &progress)?,
                    DeviceKind::Pipe => run_pipe(args, w, n, &progress)?,
                    DeviceKind::Tun => run_tun(args, w, n, &progress)?,
                };
                if args.device != DeviceKind::Sim {
                    if let (Some(a), Some(b), [one]) = (cpu0, cpu_time(), &mut r[..]) {
                        one.cpu = Some(b - a);
                    }
                }
                all.extend(r);
            }
        }
    }
    bar.finish_and_clear();
    let runs = medians(&workloads, &workers, all);
    let load_after = loadavg();
    if args.in_netns.is_some() {
        // The outer process prints: hand it the runs.
        return write_json(args, &runs, load_before, load_after, out);
    }
    if args.json {
        write_json(args, &runs, load_before, load_after, out)
    } else {
        write_table(args, &runs, load_before, load_after, out)
    }
}

fn target(args: &BenchArgs, w: Workload) -> u64 {
    match w {
        Workload::Churn => args.conns,
        Workload::Bulk => args.bytes,
        Workload::Pingpong => args.pings,
        Workload::Http => args.requests,
    }
}

/// CPU time used by this process so far (user and system, all threads), from
/// `/proc/self/stat` (in clock ticks of 10 ms).
fn cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The 1-, 5- and 15-minute load averages (Linux), to say how busy the machine was.
fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Clone)]
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
}

/// What a workload's clients reached: units done and errors.
#[derive(Default)]
struct Tally {
    done: AtomicU64,
    errors: AtomicU64,
    /// Units handed out to clients (each takes the next until the target).
    taken: AtomicU64,
}

impl Tally {
    /// The next unit of work, if any is left and time remains.
    fn take(&self, target: u64, deadline: tokio::time::Instant) -> bool {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        self.taken.fetch_add(1, Ordering::Relaxed) < target
    }
}

// ---------------------------------------------------------------------------------------------
// Servers (on any stream type) and clients.

/// Echo: what arrives goes back; for churn, one byte back and then the server closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, close_after_one: bool) {
    // Churn's server reads one byte per connection: a 64 KiB buffer zero-filled for each
    // would cost more than the connection's TCP work (13 % of a churn profile).
    let mut buf = vec![0u8; if close_after_one { 64 } else { 64 * 1024 }];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if close_after_one {
                    let _ = s.write_all(&buf[..1]).await;
                    return;
                }
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sink: counts what arrives, answers one byte at the end.
async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = s.write_all(b"k").await;
}

/// The ports the servers of a synack stack listen on: echo (and sink on echo+1, and churn on
/// echo+2) and HTTP.
async fn synack_servers(stack: &Stack) -> io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let any = IpAddr::from([0, 0, 0, 0]);
    let bind = |port| TcpListener::bind(stack, (any, port));
    let tcp = [
        bind(PORT_ECHO).await?,
        bind(PORT_ECHO + 1).await?,
        bind(PORT_ECHO + 2).await?,
    ];
    Ok(servers(tcp, bind(PORT_HTTP).await?))
}

/// The servers of every workload, on whichever stack `L` listens: echo (ping-pong), sink
/// (bulk), echo-one-then-close (churn), and synack's HTTP server (HTTP).
fn servers<L: Listener>(tcp: [L; 3], http: L) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (kind, mut l) in tcp.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // The listener sets TCP_NODELAY on what it accepts.
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    match kind {
                        0 => echo(s, false).await,
                        1 => sink(s).await,
                        _ => echo(s, true).await,
                    }
                });
            }
        }));
    }
    let config = ServerConfig {
        keepalive_requests: u64::MAX,
        ..ServerConfig::default()
    };
    let handle = serve(http, config, Routes::new());
    tasks.push(tokio::spawn(async move {
        let _ = handle.wait().await;
    }));
    tasks
}

/// How a client opens a connection (over synack or the kernel).
trait Connector: Clone + Send + Sync + 'static {
    type S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn connect(
        &self,
        to: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<Self::S>> + Send;
}

#[derive(Clone)]
struct SynackConnector(Stack);

impl Connector for SynackConnector {
    type S = TcpStream;
    async fn connect(&self, to: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect(&self.0, to).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

#[derive(Clone)]
struct KernelConnector;

impl Connector for KernelConnector {
    type S = tokio::net::TcpStream;
    async fn connect(&self, to: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let s = tokio::net::TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Runs `w` from `c` against servers at `server`, on the current runtime; returns (done,
/// errors, seconds).
async fn client<C: Connector>(
    args: &BenchArgs,
    w: Workload,
    c: C,
    server: IpAddr,
    progress: &Progress,
) -> (u64, u64, f64) {
    let start = tokio::time::Instant::now();
    let deadline = start + args.time_limit;
    let (done, errors) = client_part(
        w,
        c,
        server,
        target(args, w),
        clients(args, w),
        deadline,
        progress,
    )
    .await;
    (done, errors, start.elapsed().as_secs_f64())
}

/// The clients at once of `w`.
fn clients(args: &BenchArgs, w: Workload) -> u64 {
    match w {
        Workload::Churn | Workload::Http => args.concurrency.max(1),
        Workload::Bulk => BULK_STREAMS,
        Workload::Pingpong => 1,
    }
}

/// Part `part` of `parts` of `total`, the first parts one more when it does not divide.
fn share(total: u64, part: usize, parts: usize) -> u64 {
    let (part, parts) = (part as u64, parts as u64);
    total / parts + u64::from(part < total % parts)
}

/// `clients` clients of `w` doing `target` units between them (bulk: bytes, split among the
/// streams); returns (done, errors).
async fn client_part<C: Connector>(
    w: Workload,
    c: C,
    server: IpAddr,
    target: u64,
    clients: u64,
    deadline: tokio::time::Instant,
    progress: &Progress,
) -> (u64, u64) {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (c, tally, progress) = (c.clone(), tally.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            match w {
                Workload::Churn => {
                    churn_client(c, server, target, deadline, &tally, &progress).await
                }
                Workload::Http => http_client(c, server, target, deadline, &tally, &progress).await,
                Workload::Pingpong => {
                    ping_client(c, server, target, deadline, &tally, &progress).await
                }
                Workload::Bulk => {
                    let bytes = share(target, i as usize, clients as usize);
                    bulk_client(c, server, bytes, deadline, &tally, &progress).await
                }
            }
        }));
    }
    for t in tasks {
        if t.await.is_err() {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    (
        tally.done.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    )
}

/// Worker threads, each running a current-thread runtime (thread per core): what is spawned
/// on worker `i` stays on its thread.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Where the main thread waits for the workers' tasks.
    main: tokio::runtime::Runtime,
}

impl Workers {
    fn new(n: usize) -> io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
            main: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        };
        for i in 0..n {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let t = std::thread::Builder::new()
                .name(format!("synack-bench-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = htx.send(Err(e));
                            return;
                        }
                    };
                    let _ = htx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                    rt.shutdown_background();
                })?;
            w.threads.push(t);
            w.stops.push(stop);
            let h = hrx
                .recv()
                .map_err(|_| io::Error::other("a worker thread died"))??;
            w.handles.push(h);
        }
        Ok(w)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn churn_client<C: Connector>(
    c: C,
    server: IpAddr,
    target: u64,
    deadline: tokio::time::Instant,
    tally: &Tally,
    progress: &Progress,
) {
    let to = SocketAddr::new(server, CHURN_PORT.load(Ordering::Relaxed));
    while tally.take(target, deadline) {
        let ok = async {
            let mut s = c.connect(to).await?;
            s.write_all(b"x").await?;
            let mut b = [0u8; 2];
            s.read_exact(&mut b[..1]).await?;
            // The server closes: wait for its FIN, then close.
            let n = s.read(&mut b).await?;
            io::Result::Ok(n == 0 && b[0] == b'x')
        }
        .await;
        if matches!(ok, Ok(true)) {
            tally.done.fetch_add(1, Ordering::Relaxed);
            progress.inc(1);
        } else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn ping_client<C: Connector>(
    c: C,
    server: IpAddr,
    target: u64,
    deadline: tokio::time::Instant,
    tally: &Tally,
    progress: &Progress,
) {
    let Ok(mut s) = c.connect(SocketAddr::new(server, PORT_ECHO)).await else {
        tally.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut msg = [0u8; PING];
    let mut back = [0u8; PING];
    let mut since = 0;
    while tally.take(target, deadline) {
        msg[0] = msg[0].wrapping_add(1);
        let ok = s.write_all(&msg).await.is_ok() && s.read_exact(&mut back).await.is_ok();
        if !ok || back != msg {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tally.done.fetch_add(1, Ordering::Relaxed);
        since += 1;
        if since == 100 {
            progress.inc(since);
            since = 0;
        }
    }
    progress.inc(since);
}

async fn bulk_client<C: Connector>(
    c: C,
    server: IpAddr,
    bytes: u64,
    deadline: tokio::time::Instant,
    tally: &Tally,
    progress: &Progress,
) {
    let Ok(mut s) = c.connect(SocketAddr::new(server, PORT_ECHO + 1)).await else {
        tally.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 && tokio::time::Instant::now() < deadline {
        let n = left.min(chunk.len() as u64) as usize;
        if s.write_all(&chunk[..n]).await.is_err() {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        left -= n as u64;
        progress.inc(n as u64);
    }
    // Every byte is counted once the server has read them all and answered.
    let mut k = [0u8; 1];
    let ok = s.shutdown().await.is_ok() && s.read_exact(&mut k).await.is_ok() && k == *b"k";
    if ok {
        tally.done.fetch_add(bytes - left, Ordering::Relaxed);
    } else {
        tally.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads one HTTP/1.1 response of `s` (its head and a `Content-Length` body); returns its
/// status and whether the server closes after it.
async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a malformed response");
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad())?;
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(bad)?;
            let mut len = 0usize;
            let mut close = false;
            for l in lines {
                let Some((k, v)) = l.split_once(':') else {
                    continue;
                };
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(|_| bad())?;
                } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                    close = true;
                }
            }
            let total = end + 4 + len;
            while buf.len() < total {
                let mut more = [0u8; 4096];
                let n = s.read(&mut more).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&more[..n]);
            }
            buf.drain(..total);
            return Ok((status, close));
        }
        let mut more = [0u8; 4096];
        let n = s.read(&mut more).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&more[..n]);
    }
}

async fn http_client<C: Connector>(
    c: C,
    server: IpAddr,
    target: u64,
    deadline: tokio::time::Instant,
    tally: &Tally,
    progress: &Progress,
) {
    let to = SocketAddr::new(server, PORT_HTTP);
    let req = format!("GET / HTTP/1.1\r\nHost: {server}\r\n\r\n");
    let mut conn: Option<C::S> = None;
    let mut buf = Vec::new();
    while tally.take(target, deadline) {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match c.connect(to).await {
                Ok(s) => {
                    buf.clear();
                    conn.insert(s)
                }
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let r = async {
            s.write_all(req.as_bytes()).await?;
            read_response(s, &mut buf).await
        }
        .await;
        match r {
            Ok((200, close)) => {
                tally.done.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
                if close {
                    conn = None;
                }
            }
            _ => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Devices.

fn stack_config(addr: &str, workers: usize, secret: u8) -> StackConfig {
    let mut c = StackConfig::new(&[ip(addr)]);
    c.secret = Some([secret; 16]);
    c.workers = workers;
    c.tcp = bench_tcp();
    c
}

/// TCP settings for the bench: the defaults, with an MTU of 1500 as on a real link.
fn bench_tcp() -> Config {
    Config::default()
}

fn run_pipe(args: &BenchArgs, w: Workload, workers: usize, p: &Progress) -> io::Result<Vec<Run>> {
    let pool = Workers::new(workers)?;
    let (qc, qs) = pipe_multiqueue(workers, 4096);
    let client_stack =
        Stack::new_multiqueue_on(qc, stack_config(CLIENT, workers, 1), &pool.handles)?;
    let server_stack =
        Stack::new_multiqueue_on(qs, stack_config(SERVER, workers, 2), &pool.handles)?;
    let (done, errors, seconds) = pool.main.block_on(async {
        // Each worker serves on its own shard and runs its share of the clients from its own
        // shard: a connection's packets and tasks stay on one thread.
        let mut servers = Vec::new();
        for (i, h) in pool.handles.iter().enumerate() {
            let s = server_stack.shard(i);
            servers.push(h.spawn(async move { synack_servers(&s).await }).await??);
        }
        let start = tokio::time::Instant::now();
        let deadline = start + args.time_limit;
        let mut parts = Vec::new();
        for (i, h) in pool.handles.iter().enumerate() {
            let (target, clients) = match w {
                Workload::Pingpong if i > 0 => (0, 0),
                Workload::Pingpong => (target(args, w), 1),
                Workload::Bulk => {
                    let streams = share(BULK_STREAMS, i, workers);
                    let bytes = (0..streams)
                        .map(|k| {
                            share(
                                target(args, w),
                                k as usize * workers + i,
                                BULK_STREAMS as usize,
                            )
                        })
                        .sum();
                    (bytes, streams)
                }
                _ => (
                    share(target(args, w), i, workers),
                    share(args.concurrency.max(workers as u64), i, workers),
                ),
            };
            let c = SynackConnector(client_stack.shard(i));
            let p = p.clone();
            parts.push(h.spawn(async move {
                client_part(w, c, ip(SERVER), target, clients, deadline, &p).await
            }));
        }
        let (mut done, mut errors) = (0, 0);
        for part in parts {
            match part.await {
                Ok((d, e)) => {
                    done += d;
                    errors += e;
                }
                Err(_) => errors += 1,
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        for t in servers.into_iter().flatten() {
            t.abort();
        }
        io::Result::Ok((done, errors, seconds))
    })?;
    drop(client_stack);
    drop(server_stack);
    drop(pool);
    Ok(vec![Run {
        stack: "synack",
        workload: w,
        workers,
        target: target(args, w),
        done,
        errors,
        seconds,
        cpu: None,
        rounds: 1,
    }])
}

fn run_sim(args: &BenchArgs, w: Workload, p: &Progress) -> io::Result<Vec<Run>> {
    let rt = synack_http::virtual_runtime()?;
    let (done, errors, seconds) = rt.block_on(async {
        let net = SimNet::new(1);
        let c = net.add_host("client", &[ip(CLIENT)], bench_tcp());
        let s = net.add_host("server", &[ip(SERVER)], bench_tcp());
        // A LAN: 50 us each way, 10 Gbit/s.
        let mut half = PathConfig::delay(Duration::from_micros(50));
        half.bandwidth_bps = Some(10_000_000_000);
        net.link(&c, &s, half.clone(), half);
        let servers = synack_servers(&s).await?;
        let r = client(args, w, SynackConnector(c), ip(SERVER), p).await;
        for t in servers {
            t.abort();
        }
        io::Result::Ok(r)
    })?;
    Ok(vec![Run {
        stack: "synack-sim",
        workload: w,
        workers: 1,
        target: target(args, w),
        done,
        errors,
        seconds,
        cpu: None,
        rounds: 1,
    }])
}

// ---------------------------------------------------------------------------------------------
// TUN against the kernel, and the kernel over veth, in network namespaces of our own.

const NS_TUN: &str = "synack-bench-tun";
const NS_VETH_A: &str = "synack-bench-va";
const NS_VETH_B: &str = "synack-bench-vb";

fn sh(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Removes the namespaces (and with them the devices in them).
fn cleanup_netns() {
    for ns in [NS_TUN, NS_VETH_A, NS_VETH_B] {
        let _ = sh(&["ip", "netns", "del", ns]);
    }
}

/// `--device tun`: makes the namespaces, re-runs this command inside the TUN one (where the
/// TUN device and the kernel's sockets live) and inside the veth one, then removes them.
fn tun_outer(args: &BenchArgs, out: &mut dyn Write) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "--device tun needs root (it creates network namespaces and a TUN device); \
             without root use --device pipe or sim",
        ));
    }
    cleanup_netns();
    let r = tun_outer_inner(args, out);
    cleanup_netns();
    r
}

fn tun_outer_inner(args: &BenchArgs, out: &mut dyn Write) -> io::Result<()> {
    sh(&["ip", "netns", "add", NS_TUN])?;
    sh(&["ip", "-n", NS_TUN, "link", "set", "lo", "up"])?;
    sh(&["ip", "netns", "add", NS_VETH_A])?;
    sh(&["ip", "netns", "add", NS_VETH_B])?;
    sh(&[
        "ip", "link", "add", "sbva", "netns", NS_VETH_A, "type", "veth", "peer", "name", "sbvb",
        "netns", NS_VETH_B,
    ])?;
    for (ns, dev, addr) in [
        (NS_VETH_A, "sbva", "198.18.0.1/24"),
        (NS_VETH_B, "sbvb", "198.18.0.2/24"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
        sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    let exe = std::env::current_exe()?;
    let mut common: Vec<String> = vec![
        "bench".into(),
        "--device".into(),
        "tun".into(),
        "--workers".into(),
        args.workers
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "--conns".into(),
        args.conns.to_string(),
        "--bytes".into(),
        args.bytes.to_string(),
        "--pings".into(),
        args.pings.to_string(),
        "--requests".into(),
        args.requests.to_string(),
        "--concurrency".into(),
        args.concurrency.to_string(),
        "--rounds".into(),
        args.rounds.to_string(),
        "--time-limit".into(),
        format!("{}ms", args.time_limit.as_millis()),
    ];
    if !args.only.is_empty() {
        common.push("--only".into());
        common.push(
            args.only
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let eprint_bar = !args.json;
    if eprint_bar {
        eprintln!("synack bench: synack over TUN in netns {NS_TUN}...");
    }
    let synack = in_netns(&exe, &common, NS_TUN, "tun").output()?;
    if !synack.status.success() {
        return Err(io::Error::other(format!(
            "the run inside {NS_TUN} failed: {}",
            String::from_utf8_lossy(&synack.stderr).trim()
        )));
    }
    if eprint_bar {
        eprintln!("synack bench: the kernel over veth in {NS_VETH_A}/{NS_VETH_B}...");
    }
    // The kernel's servers in one namespace, its clients (this same command) in the other.
    let mut server = in_netns(&exe, &common, NS_VETH_B, "veth-server")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let server_pid = server.id();
    // Wait until it says its listeners are bound (it says nothing else; no line: it failed).
    let ready = server.stdout.take().and_then(|o| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(o), &mut line).ok()?;
        (line.trim() == VETH_READY).then_some(())
    });
    let kernel = match ready {
        Some(()) => in_netns(&exe, &common, NS_VETH_A, "veth-client").output(),
        None => Err(io::Error::other(format!(
            "the kernel's servers in {NS_VETH_B} did not start"
        ))),
    };
    // Stop the server by its pid (never by name).
    let _ = sh(&["kill", &server_pid.to_string()]);
    let _ = server.wait();
    let kernel = kernel?;
    if !kernel.status.success() {
        return Err(io::Error::other(format!(
            "the kernel run over veth failed: {}",
            String::from_utf8_lossy(&kernel.stderr).trim()
        )));
    }
    let mut runs = parse_runs(&synack.stdout)?;
    runs.extend(parse_runs(&kernel.stdout)?);
    let load = loadavg();
    if args.json {
        write_json(args, &runs, load, load, out)
    } else {
        write_table(args, &runs, load, load, out)
    }
}

/// This same command in network namespace `ns`, playing `role` there (`--in-netns`).
fn in_netns(exe: &std::path::Path, common: &[String], ns: &str, role: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(exe)
        .args(common)
        .args(["--in-netns", role]);
    c
}

/// What `veth-server` prints once every listener is bound.
const VETH_READY: &str = "ready";

fn parse_runs(json: &[u8]) -> io::Result<Vec<Run>> {
    let doc: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| io::Error::other(format!("the inner run's JSON: {e}")))?;
    let mut runs = Vec::new();
    for r in doc["runs"].as_array().into_iter().flatten() {
        let workload = match r["workload"].as_str() {
            Some("churn") => Workload::Churn,
            Some("bulk") => Workload::Bulk,
            Some("pingpong") => Workload::Pingpong,
            _ => Workload::Http,
        };
        let stack = match r["stack"].as_str() {
            Some("kernel-veth") => "kernel-veth",
            _ => "synack-tun",
        };
        runs.push(Run {
            stack,
            workload,
            workers: r["workers"].as_u64().unwrap_or(1) as usize,
            target: r["target"].as_u64().unwrap_or(0),
            done: r["done"].as_u64().unwrap_or(0),
            errors: r["errors"].as_u64().unwrap_or(0),
            seconds: r["seconds"].as_f64().unwrap_or(0.0),
            cpu: r["cpu_seconds"].as_f64(),
            rounds: r["rounds"].as_u64().unwrap_or(1) as usize,
        });
    }
    Ok(runs)
}

/// Inside a namespace: `tun` runs synack over TUN against kernel servers in the same
/// namespace; `veth-server` serves on kernel sockets until killed; `veth-client` runs the
/// clients on kernel sockets.
fn run_tun(args: &BenchArgs, w: Workload, workers: usize, p: &Progress) -> io::Result<Vec<Run>> {
    let role = args.in_netns.as_deref().unwrap_or("tun");
    if w == Workload::Churn {
        next_churn_port();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let r = rt.block_on(async {
        match role {
            "veth-client" => {
                let (done, errors, seconds) = client(args, w, KernelConnector, ip(SERVER), p).await;
                io::Result::Ok(("kernel-veth", done, errors, seconds))
            }
            _ => {
                // synack (the clients) over TUN; the kernel's servers on the TUN's address.
                let mut tc = synack_stack::tun::TunConfig::new("sbtun0");
                tc.addrs = vec![(ip(SERVER), 24)];
                let queues = synack_stack::tun::TunDevice::create_queues(
                    &tc,
                    synack_stack::tun::TunOptions::default(),
                    workers,
                )?;
                let servers = kernel_servers(ip(SERVER)).await?;
                let stack = Stack::new_multiqueue(queues, stack_config(CLIENT, workers, 1))?;
                let (done, errors, seconds) =
                    client(args, w, SynackConnector(stack.clone()), ip(SERVER), p).await;
                stack.wait_idle(Duration::from_secs(2)).await;
                drop(servers);
                io::Result::Ok(("synack-tun", done, errors, seconds))
            }
        }
    })?;
    // The device goes with its descriptors: wait for it, so that the next run makes it anew.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    for _ in 0..200 {
        if !std::path::Path::new("/sys/class/net/sbtun0").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(vec![Run {
        stack: r.0,
        workload: w,
        workers,
        target: target(args, w),
        done: r.1,
        errors: r.2,
        seconds: r.3,
        cpu: None,
        rounds: 1,
    }])
}

/// The kernel's servers of the veth comparison, until killed (at most the time limit of
/// every run and then some).
fn veth_server(args: &BenchArgs) -> io::Result<()> {
    let threads = args.workers.iter().copied().max().unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let runs = (4 * args.workers.len() * args.rounds.max(1)) as u32;
    let limit = args.time_limit * (runs + 1);
    rt.block_on(async {
        let _servers = kernel_servers(ip(SERVER)).await?;
        // Every churn run's port.
        let mut churn = Vec::new();
        for r in 0..(args.rounds.max(1) * args.workers.len()) as u16 {
            let l = tokio::net::TcpListener::bind((ip(SERVER), PORT_CHURN_BASE + r)).await?;
            churn.push(tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(echo(s, true));
                }
            }));
        }
        println!("{VETH_READY}");
        tokio::time::sleep(limit).await;
        io::Result::Ok(())
    })
}

/// The same servers on kernel sockets at `addr` (churn on this run's own port).
async fn kernel_servers(addr: IpAddr) -> io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let bind = |port| tokio::net::TcpListener::bind((addr, port));
    let churn = CHURN_PORT.load(Ordering::Relaxed);
    let tcp = [
        bind(PORT_ECHO).await?,
        bind(PORT_ECHO + 1).await?,
        bind(churn).await?,
    ];
    Ok(servers(tcp, bind(PORT_HTTP).await?))
}

// ---------------------------------------------------------------------------------------------
// Output.

/// Of the rounds of each stack, workload and worker count, the one of median rate, in the
/// order of `workloads` and `workers`.
fn medians(workloads: &[Workload], workers: &[usize], mut all: Vec<Run>) -> Vec<Run> {
    all.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let mut stacks: Vec<&'static str> = Vec::new();
    for r in &all {
        if !stacks.contains(&r.stack) {
            stacks.push(r.stack);
        }
    }
    stacks.sort();
    let mut out = Vec::new();
    for stack in stacks {
        for &w in workloads {
            for &n in workers {
                let same: Vec<&Run> = all
                    .iter()
                    .filter(|r| r.stack == stack && r.workload == w && r.workers == n)
                    .collect();
                if let Some(r) = same.get(same.len() / 2) {
                    let mut r = (*r).clone();
                    r.rounds = same.len();
                    out.push(r);
                }
            }
        }
    }
    out
}

/// The rate of `r` over the same stack and workload on one worker.
fn speedup(runs: &[Run], r: &Run) -> Option<f64> {
    let base = runs
        .iter()
        .find(|b| b.stack == r.stack && b.workload == r.workload && b.workers == 1)?;
    (base.rate() > 0.0 && r.workers != 1).then(|| r.rate() / base.rate())
}

fn write_table(
    args: &BenchArgs,
    runs: &[Run],
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let load = |l: Option<[f64; 3]>| l.map_or("-".into(), |l| format!("{:.2}", l[0]));
    writeln!(
        out,
        "synack bench: device {:?}, {} CPUs, load average {} before, {} after{}",
        args.device,
        cpus(),
        load(load_before),
        load(load_after),
        if args.device == DeviceKind::Sim {
            " (virtual time: rates per simulated second)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "{}  {:<12} {:<9} {:>7} {:>12} {:>12} {:>7} {:>9} {:>14} {:>8} {:>6} {:>12}",
        if args.rounds > 1 {
            format!("  (each row: the median-rate round of {})\n", args.rounds)
        } else {
            String::new()
        },
        "stack",
        "workload",
        "workers",
        "target",
        "done",
        "errors",
        "seconds",
        "rate",
        "vs 1",
        "cores",
        "per cpu-s"
    )?;
    for r in runs {
        writeln!(
            out,
            "  {:<12} {:<9} {:>7} {:>12} {:>12} {:>7} {:>9.3} {:>14} {:>8} {:>6} {:>12}",
            r.stack,
            r.workload.name(),
            r.workers,
            r.target,
            r.done,
            r.errors,
            r.seconds,
            format!("{:.0} {}", r.rate(), r.workload.unit()),
            speedup(runs, r).map_or("-".into(), |s| format!("{s:.2}x")),
            r.cores().map_or("-".into(), |c| format!("{c:.2}")),
            r.per_cpu().map_or("-".into(), |c| format!("{c:.0}")),
        )?;
    }
    Ok(())
}

fn write_json(
    args: &BenchArgs,
    runs: &[Run],
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let doc = json!({
        "schema": "synack-bench/1",
        "device": format!("{:?}", args.device).to_lowercase(),
        "virtual_time": args.device == DeviceKind::Sim,
        "cpus": cpus(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "runs": runs.iter().map(|r| json!({
            "stack": r.stack,
            "workload": r.workload.name(),
            "workers": r.workers,
            "target": r.target,
            "done": r.done,
            "errors": r.errors,
            "seconds": r.seconds,
            "rate": r.rate(),
            "unit": r.workload.unit(),
            "speedup_vs_1": speedup(runs, r),
            "cpu_seconds": r.cpu,
            "rounds": r.rounds,
            "cores": r.cores(),
            "per_cpu_second": r.per_cpu(),
        })).collect::<Vec<_>>(),
    });
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).map_err(io::Error::other)?
    )
}
