//! `synack demo`: a client and a server on the simulated network, the connection's life drawn
//! as a ladder, and what each phase cost.
//!
//! The demo is a list of [`Scenario`]s run on identical fresh networks (same seed, same
//! paths); each reports an [`Outcome`] and the outcomes share one results table, so ways of
//! making API calls (a connection per call, keep-alive, a pool, ...) can be set side by side.

mod app;
mod export;
mod keepalive;
mod quic;
mod report;
mod scenario;
mod world;

use std::cell::Cell;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use synack_stack::sim::units::{parse_duration, parse_percent, parse_rate, parse_size};
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, Duration};
use synack_trace::ladder::fmt_bytes;

pub use scenario::{OneConnection, Scenario};

/// The long help of `synack demo`.
pub const LONG_ABOUT: &str = "\
Run a client and a server on a simulated network and show the connection's life.

The client (198.18.0.1) connects to the server (198.18.0.2), sends a small HTTP-like request \
(GET /bytes/N), and reads the N-byte reply, which it checks byte for byte; then it closes, \
and the server closes when it reads the end of the stream. The output is the ladder of every \
segment (the 3-way handshake, the exchange with bulk data folded into summary lines, the \
4-way close) with each side's TCP states beside it, a table of how long each phase took in \
milliseconds and round trips, and the counts of segments, handshakes and retransmissions.

Then --calls API calls (GET /bytes/--call-bytes) are made each way there is, each on a fresh \
network: a new connection per call (with and without TCP Fast Open), one keep-alive \
connection, a pool of --concurrency connections, the streams of one HTTP/2 connection \
(cleartext, and over TLS 1.3), HTTPS/1.1 with a connection per call, HTTP/2 with small flow \
control windows and one slow reader, the pool and HTTP/2 at 2 % loss (head-of-line blocking), \
and HTTP/3 over QUIC (first visit, 0-RTT return visit, 2 % loss). Each prints per-call figures \
and the whole run's spans; a table compares them all: handshakes (TCP+TLS) and their round \
trips, time per call, time to the last byte, segments and retransmissions.

Everything runs in virtual time on a seeded simulator: no privileges, no real network, and \
the same flags always print the same output. The impairment flags apply to both directions.";

/// Examples shown after the help of `synack demo`.
pub const EXAMPLES: &str = "\
Examples:
  synack demo                                  1 KiB over a 50 ms round trip
  synack demo --rtt 80ms --bytes 1MiB          a bulk reply, folded into one line
  synack demo --loss 2% --bytes 1MiB           lost segments, each resent once
  synack demo --bandwidth 10mbit --queue 32KiB a slower link whose short queue overflows
  synack demo --pcap demo.pcap --no-fold       every segment, and a capture for Wireshark
  synack demo --calls 5 --html report.html     a page: diagrams, plots, a waterfall of calls
  synack demo --json                           the tables' numbers (schema synack-demo/1)";

/// Flags of `synack demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Round-trip time of the path (half of it each way), e.g. 80ms, 1.5s.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    pub rtt: Duration,

    /// Seed of the simulator's randomness (impairments, ISNs, ports).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Size of the reply body, e.g. 1000, 64KiB, 1MiB, 2MB.
    #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = parse_size)]
    pub bytes: u64,

    /// Write the client's packets (both directions, each once) to FILE as a pcap
    /// (LINKTYPE_RAW), for Wireshark or tshark: the first scenario to FILE, each calls
    /// scenario to a file beside it named for it (demo.pcap: demo-per-call.pcap,
    /// demo-keepalive.pcap, demo-pool.pcap, demo-http2.pcap, demo-http3.pcap, ...).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Print raw sequence numbers instead of relative ones (ISN = 0).
    #[arg(long)]
    pub absolute: bool,

    /// Print the numbers of the tables as one JSON document instead of the text (schema
    /// synack-demo/1: per scenario the results row, the phase rows, segments per direction,
    /// and each API call's timing).
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one self-contained HTML page to FILE (opens from disk, no
    /// network): the results table, a sequence diagram of every connection, plots of bytes
    /// in flight, RTT and goodput, and a waterfall of the API calls.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Draw every segment instead of folding bulk data into summary lines.
    #[arg(long)]
    pub no_fold: bool,

    /// Fold bulk data, but draw each retransmitted segment, each retransmission event (fast
    /// retransmit, timeout, tail loss probe) and each congestion event as its own row.
    #[arg(long, conflicts_with = "no_fold")]
    pub fold_events: bool,

    /// Draw the ladders of the API-call scenarios too (by default only the first scenario's
    /// ladder is drawn; the others print their phase tables and counts).
    #[arg(long)]
    pub all_ladders: bool,

    /// API calls made by each of the keep-alive scenarios (a new connection per call, one
    /// keep-alive connection, a pool).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub calls: u64,

    /// Calls in flight at once in the pool scenario (its connections).
    #[arg(long, value_name = "C", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub concurrency: u64,

    /// Reply body of each API call, e.g. 100, 1KiB.
    #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = parse_size)]
    pub call_bytes: u64,

    /// Give up (with an error) after this much virtual time. A --bytes that cannot arrive in
    /// this time at the link's rate is refused before the run; a TIME-WAIT still running at
    /// the limit ends the run without an error (the exchange is complete).
    #[arg(long, value_name = "DURATION", default_value = "10min", value_parser = parse_duration)]
    pub time_limit: Duration,

    /// Show progress on standard error: a bar on a terminal, a line a second otherwise
    /// (without this flag, a bar shows on a terminal for replies of 8 MiB and more).
    #[arg(long)]
    pub progress: bool,

    /// Lose this share of packets, independently (e.g. 2%, 0.02).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, help_heading = "Impairments (both directions)")]
    pub loss: Option<f64>,

    /// Hold back this share of packets by twice the one-way delay (10 ms without delay), so
    /// later ones overtake them [default with no value: 1%].
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "1%", value_parser = parse_percent, help_heading = "Impairments (both directions)")]
    pub reorder: Option<f64>,

    /// Deliver a second copy of this share of packets.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, help_heading = "Impairments (both directions)")]
    pub duplicate: Option<f64>,

    /// Flip one bit in this share of packets (the receiver's checksums drop them).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, help_heading = "Impairments (both directions)")]
    pub corrupt: Option<f64>,

    /// Add a uniform random extra delay in [0, DURATION) to each packet.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Impairments (both directions)")]
    pub jitter: Option<Duration>,

    /// The link's rate, e.g. 10mbit, 1gbit, or `unlimited` (a whole flight leaves at one
    /// instant).
    #[arg(long, value_name = "RATE", default_value = "100mbit", value_parser = parse_link_rate, help_heading = "Link (both directions)")]
    pub bandwidth: LinkRate,

    /// Bytes that may wait for the link before packets are tail-dropped, e.g. 64KiB
    /// [default: one bandwidth-delay product, at least 64 KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Link (both directions)")]
    pub queue: Option<u64>,
}

/// The rate of the demo's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRate {
    /// Bits per second.
    Bps(u64),
    /// No serialization: packets leave the instant they are sent.
    Unlimited,
}

/// `100mbit`, `1gbit`, or `unlimited` (also `inf`, `none`).
fn parse_link_rate(s: &str) -> Result<LinkRate, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "unlimited" | "inf" | "infinite" | "none" => Ok(LinkRate::Unlimited),
        _ => parse_rate(s).map(LinkRate::Bps),
    }
}

/// The smallest default queue.
const MIN_QUEUE: u64 = 64 * 1024;

/// What went wrong in a demo run.
#[derive(Debug)]
pub enum DemoError {
    /// The flags do not make sense together.
    Usage(String),
    /// Writing the output or the capture failed.
    Io(String, io::Error),
    /// The simulated exchange failed (connection error, wrong bytes, time limit).
    Run(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Usage(m) | DemoError::Run(m) => f.write_str(m),
            DemoError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for DemoError {}

impl DemoError {
    /// The reader of the output went away (`synack demo | head`): nothing to report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, DemoError::Io(_, e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<io::Error> for DemoError {
    fn from(e: io::Error) -> Self {
        DemoError::Io("writing the output".into(), e)
    }
}

/// The settings every scenario runs with, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rtt: Duration,
    pub seed: u64,
    pub bytes: u64,
    pub pcap: Option<PathBuf>,
    pub absolute: bool,
    pub fold: bool,
    /// Fold, but keep retransmissions and congestion events as rows.
    pub fold_events: bool,
    pub time_limit: Duration,
    /// Draw a progress bar even when standard error is not a terminal.
    pub progress: bool,
    /// The path each way (both directions alike).
    pub path: PathConfig,
    /// Where the scenarios keep what `--json` and `--html` need, when asked for.
    pub recorder: Option<export::Recorder>,
}

impl Settings {
    pub fn from_args(a: &DemoArgs) -> Result<Settings, DemoError> {
        let mut path = PathConfig::delay(a.rtt / 2);
        path.loss = a.loss.unwrap_or(0.0);
        path.reorder = a.reorder.unwrap_or(0.0);
        path.duplicate = a.duplicate.unwrap_or(0.0);
        path.corrupt = a.corrupt.unwrap_or(0.0);
        path.jitter = a.jitter.unwrap_or_default();
        match a.bandwidth {
            LinkRate::Unlimited => {
                if a.queue.is_some() {
                    return Err(DemoError::Usage(
                        "--queue limits the queue in front of the link: it needs a link rate \
                         (--bandwidth unlimited has none)"
                            .into(),
                    ));
                }
            }
            LinkRate::Bps(bps) => {
                path.bandwidth_bps = Some(bps);
                let q = a.queue.unwrap_or_else(|| default_queue(bps, a.rtt));
                path.queue_limit_bytes = Some(usize::try_from(q).map_err(|_| {
                    DemoError::Usage(format!("--queue {q}: too large for this machine"))
                })?);
            }
        }
        let s = Settings {
            rtt: a.rtt,
            seed: a.seed,
            bytes: a.bytes,
            pcap: a.pcap.clone(),
            absolute: a.absolute,
            fold: !a.no_fold,
            fold_events: a.fold_events,
            time_limit: a.time_limit,
            progress: a.progress,
            path,
            recorder: (a.json || a.html.is_some()).then(|| export::Recorder::new(a.html.is_some())),
        };
        s.check_time("--bytes", a.bytes, "the reply needs")?;
        s.check_time(
            "--calls x --call-bytes",
            a.calls.saturating_mul(a.call_bytes),
            "the replies to the calls need",
        )?;
        Ok(s)
    }

    /// The fastest the server's data can flow, in bytes per second: the link's rate (less
    /// the headers of each full-sized packet) or a full window per round trip, whichever is
    /// lower, and whether it is the window; `None` when neither bounds it (an unlimited link
    /// with no delay).
    fn max_goodput(&self) -> Option<(f64, bool)> {
        let config = Config::default();
        let packet = config.mtu as f64;
        // IPv4 and TCP headers with the timestamp option (RFC 7323 §3).
        let payload = packet - 20.0 - 20.0 - 12.0;
        let by_rate = self
            .path
            .bandwidth_bps
            .map(|bps| bps as f64 / 8.0 * payload / packet);
        let by_window = (!self.rtt.is_zero())
            .then(|| config.recv_buffer.min(config.send_buffer) as f64 / self.rtt.as_secs_f64());
        match (by_rate, by_window) {
            (Some(r), Some(w)) if w < r => Some((w, true)),
            (Some(r), _) => Some((r, false)),
            (None, Some(w)) => Some((w, true)),
            (None, None) => None,
        }
    }

    /// Refuses `bytes` (given by `flag`) that cannot arrive within the time limit even at the
    /// fastest the path allows: the run would only fail at its end.
    fn check_time(&self, flag: &str, bytes: u64, what: &str) -> Result<(), DemoError> {
        let Some((goodput, by_window)) = self.max_goodput() else {
            return Ok(());
        };
        // The handshake's round trip, then the bytes at the fastest rate.
        let need = self.rtt.as_secs_f64() + bytes as f64 / goodput;
        if need <= self.time_limit.as_secs_f64() {
            return Ok(());
        }
        let config = Config::default();
        let window = config.recv_buffer.min(config.send_buffer);
        let how = if by_window {
            format!(
                "at one {} window per {} round trip (--rtt)",
                fmt_bytes(window as u64),
                fmt_duration(self.rtt)
            )
        } else {
            format!(
                "at {} (the link's rate, --bandwidth)",
                fmt_rate(self.path.bandwidth_bps.unwrap_or(0))
            )
        };
        let minutes = (need / 60.0).ceil().max(1.0);
        Err(DemoError::Usage(format!(
            "{flag} {bytes} ({}) cannot arrive within --time-limit {}: {what} at least {} \
             {how}; raise --time-limit (to more than {minutes}min){}, or ask for fewer bytes",
            fmt_bytes(bytes),
            fmt_duration(self.time_limit),
            fmt_span(need),
            if by_window { "" } else { " or --bandwidth" },
        )))
    }

    /// The link, as flags would spell it: `100mbit (queue 611 KiB)`, `unlimited`.
    pub fn link(&self) -> String {
        match (self.path.bandwidth_bps, self.path.queue_limit_bytes) {
            (Some(bps), Some(q)) => format!("{} (queue {})", fmt_rate(bps), fmt_bytes(q as u64)),
            (Some(bps), None) => fmt_rate(bps),
            (None, _) => "unlimited".into(),
        }
    }

    /// The impairments, as flags would spell them, or "none".
    pub fn impairments(&self) -> String {
        let p = &self.path;
        let mut parts = Vec::new();
        let pct = |x: f64| format!("{}%", trim_float(x * 100.0));
        if p.loss > 0.0 {
            parts.push(format!("loss {}", pct(p.loss)));
        }
        if p.reorder > 0.0 {
            parts.push(format!("reorder {}", pct(p.reorder)));
        }
        if p.duplicate > 0.0 {
            parts.push(format!("duplicate {}", pct(p.duplicate)));
        }
        if p.corrupt > 0.0 {
            parts.push(format!("corrupt {}", pct(p.corrupt)));
        }
        if !p.jitter.is_zero() {
            parts.push(format!("jitter {}", fmt_duration(p.jitter)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The default queue of a link: one bandwidth-delay product (what keeps a window-limited
/// sender's link busy without dropping), rounded up to a KiB, and at least [`MIN_QUEUE`].
fn default_queue(bps: u64, rtt: Duration) -> u64 {
    let bdp = u128::from(bps) * rtt.as_micros() / 8 / 1_000_000;
    let bdp = u64::try_from(bdp).unwrap_or(u64::MAX);
    bdp.div_ceil(1024).saturating_mul(1024).max(MIN_QUEUE)
}

/// A long span of seconds for humans: `42.5s`, `12min 30s`, `22h 13min`.
fn fmt_span(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{}s", trim_float((secs * 10.0).ceil() / 10.0));
    }
    let s = secs.ceil() as u64;
    if s < 3600 {
        format!("{}min {}s", s / 60, s % 60)
    } else {
        format!("{}h {}min", s / 3600, (s % 3600).div_ceil(60))
    }
}

/// A float without trailing zeros: 2, 0.5, 0.125.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// `80ms`, `1.5s`, `250us`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0ms".into()
    } else if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{}ms", trim_float(us as f64 / 1000.0))
    } else {
        format!("{}s", trim_float(us as f64 / 1e6))
    }
}

/// `10mbit`, `1.5gbit`, `500kbit`.
fn fmt_rate(bps: u64) -> String {
    for (unit, name) in [
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
    ] {
        if bps >= unit {
            return format!("{}{name}", trim_float(bps as f64 / unit as f64));
        }
    }
    format!("{bps}bit")
}

/// The least reply per call in the flow-control scenario: four stream windows.
const SLOW_REPLY: u64 = 64 * 1024;

/// The most calls of the flow-control scenario: few enough that the slow one stands out.
const SLOW_CALLS: usize = 4;

/// The loss rate of the head-of-line blocking scenarios.
const HOL_LOSS: f64 = 0.02;

/// The least reply per call in the head-of-line blocking scenarios: some 45 segments, so
/// that losses fall inside replies.
const HOL_REPLY: u64 = 64 * 1024;

/// The pace of the staggered head-of-line blocking scenarios: one call every 5 ms.
const STAGGER: Duration = Duration::from_millis(5);

/// The most reply per call in the staggered scenarios: one packet each way per call, so
/// that the calls in flight (some ten at 50 ms RTT) never fill a congestion window, and a
/// call is held up only by a lost packet.
const STAGGER_REPLY: u64 = 100;

/// The least number of calls of the staggered scenarios: enough that a few packets of the
/// run are lost at [`HOL_LOSS`].
const STAGGER_MIN_CALLS: usize = 100;

/// Runs the demo's scenarios and prints their ladders, phase tables and the results table.
pub fn run(args: &DemoArgs, to: &mut dyn Write) -> Result<(), DemoError> {
    let settings = Settings::from_args(args)?;
    // With --json, the JSON instead of the text.
    let mut sink = io::sink();
    let out: &mut dyn Write = if args.json { &mut sink } else { &mut *to };
    let calls = |mode| keepalive::ApiCalls {
        mode,
        calls: args.calls as usize,
        concurrency: args.concurrency as usize,
        reply_bytes: args.call_bytes,
        loss: None,
        stagger: None,
    };
    // Head-of-line blocking: the same calls with replies of several segments each, at
    // HOL_LOSS, over HTTP/2's one connection and over the pool's C connections.
    let lossy = |mode| keepalive::ApiCalls {
        reply_bytes: args.call_bytes.max(HOL_REPLY),
        loss: Some(HOL_LOSS),
        ..calls(mode)
    };
    let stagger_calls = (args.calls as usize).max(STAGGER_MIN_CALLS);
    let stagger_bytes = args.call_bytes.min(STAGGER_REPLY);
    let scenarios: Vec<Box<dyn Scenario>> = vec![
        Box::new(OneConnection),
        Box::new(calls(keepalive::Mode::ConnPerCall)),
        Box::new(calls(keepalive::Mode::ConnPerCallFastOpen)),
        Box::new(calls(keepalive::Mode::KeepAlive)),
        Box::new(calls(keepalive::Mode::Pool)),
        Box::new(calls(keepalive::Mode::Http2)),
        Box::new(calls(keepalive::Mode::Http2Tls)),
        Box::new(calls(keepalive::Mode::Https1PerCall)),
        Box::new(keepalive::ApiCalls {
            calls: (args.calls as usize).min(SLOW_CALLS),
            reply_bytes: args.call_bytes.max(SLOW_REPLY),
            ..calls(keepalive::Mode::Http2SlowReader)
        }),
        Box::new(lossy(keepalive::Mode::Pool)),
        Box::new(lossy(keepalive::Mode::Http2)),
        Box::new(quic::H3Calls {
            calls: args.calls as usize,
            reply_bytes: args.call_bytes,
            zero_rtt: false,
            loss: None,
            stagger: None,
        }),
        Box::new(quic::H3Calls {
            calls: args.calls as usize,
            reply_bytes: args.call_bytes,
            zero_rtt: true,
            loss: None,
            stagger: None,
        }),
        Box::new(quic::H3Calls {
            calls: args.calls as usize,
            reply_bytes: args.call_bytes.max(HOL_REPLY),
            zero_rtt: false,
            loss: Some(HOL_LOSS),
            stagger: None,
        }),
        // Head-of-line blocking call by call: a steady stream of small calls at HOL_LOSS,
        // over HTTP/2's one TCP connection and over HTTP/3's one QUIC connection.
        Box::new(keepalive::ApiCalls {
            calls: stagger_calls,
            reply_bytes: stagger_bytes,
            loss: Some(HOL_LOSS),
            stagger: Some(STAGGER),
            ..calls(keepalive::Mode::Http2)
        }),
        Box::new(quic::H3Calls {
            calls: stagger_calls,
            reply_bytes: stagger_bytes,
            zero_rtt: false,
            loss: Some(HOL_LOSS),
            stagger: Some(STAGGER),
        }),
    ];
    writeln!(
        out,
        "synack demo: rtt {} ({} each way), link {}, seed {}, reply {} ({} bytes), \
         impairments: {}",
        fmt_duration(settings.rtt),
        fmt_duration(settings.rtt / 2),
        settings.link(),
        settings.seed,
        fmt_bytes(settings.bytes),
        settings.bytes,
        settings.impairments(),
    )?;
    writeln!(
        out,
        "client 198.18.0.1 <-> server 198.18.0.2 on a simulated path; times in seconds of \
         virtual time, sequence numbers {}",
        if settings.absolute {
            "absolute"
        } else {
            "relative (ISN = 0)"
        }
    )?;
    let mut outcomes = Vec::new();
    let mut recorded = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        writeln!(out)?;
        writeln!(
            out,
            "== scenario: {} ({})",
            scenario.name(),
            scenario.description(&settings)
        )?;
        writeln!(out)?;
        let draw = (i == 0 || args.all_ladders) && !args.json;
        let outcome = scenario.run(&settings, if draw { Some(&mut *out) } else { None })?;
        if draw {
            writeln!(out)?;
        }
        report::print_outcome(out, &settings, &outcome)?;
        outcomes.push(outcome);
        recorded.push(export::take(&settings, scenario.description(&settings)));
    }
    writeln!(out)?;
    report::print_results(out, &settings, &outcomes)?;
    export::finish(args, &settings, &outcomes, recorded, to)
}

/// Replies at least this long get a progress bar when standard error is a terminal.
const AUTO_PROGRESS_BYTES: u64 = 8 << 20;

/// Progress on standard error: the reply bytes the client has, and the virtual time. A bar
/// when standard error is a terminal and the reply is long, or when asked for (`--progress`);
/// asked for where standard error is not a terminal, a line every second instead.
pub struct Progress {
    bar: ProgressBar,
    /// Plain lines instead of a bar.
    lines: Option<ProgressLines>,
}

/// Progress as plain lines: the total, and when the last line was written and for how many
/// bytes.
struct ProgressLines {
    total: u64,
    last: Cell<Option<(std::time::Instant, u64)>>,
}

impl Progress {
    pub fn new(settings: &Settings, total: u64) -> Progress {
        let terminal = io::stderr().is_terminal();
        if !terminal && settings.progress {
            return Progress {
                bar: ProgressBar::hidden(),
                lines: Some(ProgressLines {
                    total,
                    last: Cell::new(None),
                }),
            };
        }
        let target = if terminal && (settings.progress || total >= AUTO_PROGRESS_BYTES) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) \
             virtual {msg}",
        ) {
            bar.set_style(style);
        }
        Progress { bar, lines: None }
    }

    /// A bar that is never drawn.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            lines: None,
        }
    }

    /// The client has `bytes` at virtual time `now`.
    pub fn set(&self, bytes: u64, now: synack_tcp::Instant) {
        if let Some(ProgressLines { total, last }) = &self.lines {
            let t = std::time::Instant::now();
            let due = match last.get() {
                None => true,
                Some((_, b)) if b == bytes => false,
                Some((l, _)) => {
                    bytes == *total || t.duration_since(l) >= std::time::Duration::from_secs(1)
                }
            };
            if due {
                last.set(Some((t, bytes)));
                eprintln!(
                    "synack demo: {} of {} ({:.1}%) at virtual t={now}s",
                    fmt_bytes(bytes),
                    fmt_bytes(*total),
                    bytes as f64 * 100.0 / (*total).max(1) as f64
                );
            }
        } else if !self.bar.is_hidden() {
            self.bar.set_position(bytes);
            self.bar.set_message(format!("t={now}s"));
        }
    }

    /// Runs `f` (which writes to the terminal) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
