//! `synack demo`: a client and a server on the simulated network, the connection's life drawn
//! as a ladder, and what each phase cost.
//!
//! The demo is a list of [`Scenario`]s run on identical fresh networks (same seed, same
//! paths); each reports an [`Outcome`] and the outcomes share one results table, so ways of
//! making API calls (a connection per call, keep-alive, a pool, ...) can be set side by side.

mod app;
mod keepalive;
mod report;
mod scenario;
mod world;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use synack_stack::ladder::fmt_bytes;
use synack_stack::sim::units::{parse_duration, parse_percent, parse_rate, parse_size};
use synack_stack::sim::PathConfig;
use synack_tcp::Duration;

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

Everything runs in virtual time on a seeded simulator: no privileges, no real network, and \
the same flags always print the same output. The impairment flags apply to both directions.";

/// Examples shown after the help of `synack demo`.
pub const EXAMPLES: &str = "\
Examples:
  synack demo                                  1 KiB over a 50 ms round trip
  synack demo --rtt 80ms --bytes 1MiB          a bulk reply, folded into one line
  synack demo --loss 5% --bytes 1MiB           retransmissions
  synack demo --pcap demo.pcap --no-fold       every segment, and a capture for Wireshark";

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
    /// (LINKTYPE_RAW), for Wireshark or tshark.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Print raw sequence numbers instead of relative ones (ISN = 0).
    #[arg(long)]
    pub absolute: bool,

    /// Draw every segment instead of folding bulk data into summary lines.
    #[arg(long)]
    pub no_fold: bool,

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

    /// Give up (with an error) after this much virtual time.
    #[arg(long, value_name = "DURATION", default_value = "10min", value_parser = parse_duration)]
    pub time_limit: Duration,

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

    /// Serialize packets at this rate, e.g. 10mbit, 1gbit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, help_heading = "Impairments (both directions)")]
    pub bandwidth: Option<u64>,

    /// Bytes that may wait for the serializer before packets are tail-dropped (needs
    /// --bandwidth), e.g. 64KiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Impairments (both directions)")]
    pub queue: Option<u64>,
}

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
    pub time_limit: Duration,
    /// The path each way (both directions alike).
    pub path: PathConfig,
}

impl Settings {
    pub fn from_args(a: &DemoArgs) -> Result<Settings, DemoError> {
        if a.queue.is_some() && a.bandwidth.is_none() {
            return Err(DemoError::Usage(
                "--queue limits the queue in front of the serializer: it needs --bandwidth".into(),
            ));
        }
        let mut path = PathConfig::delay(a.rtt / 2);
        path.loss = a.loss.unwrap_or(0.0);
        path.reorder = a.reorder.unwrap_or(0.0);
        path.duplicate = a.duplicate.unwrap_or(0.0);
        path.corrupt = a.corrupt.unwrap_or(0.0);
        path.jitter = a.jitter.unwrap_or_default();
        path.bandwidth_bps = a.bandwidth;
        path.queue_limit_bytes = match a.queue {
            Some(q) => Some(usize::try_from(q).map_err(|_| {
                DemoError::Usage(format!("--queue {q}: too large for this machine"))
            })?),
            None => None,
        };
        Ok(Settings {
            rtt: a.rtt,
            seed: a.seed,
            bytes: a.bytes,
            pcap: a.pcap.clone(),
            absolute: a.absolute,
            fold: !a.no_fold,
            time_limit: a.time_limit,
            path,
        })
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
        if let Some(bps) = p.bandwidth_bps {
            parts.push(format!("bandwidth {}", fmt_rate(bps)));
        }
        if let Some(q) = p.queue_limit_bytes {
            parts.push(format!("queue {}", fmt_bytes(q as u64)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
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

/// Runs the demo's scenarios and prints their ladders, phase tables and the results table.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), DemoError> {
    let settings = Settings::from_args(args)?;
    let calls = |mode| keepalive::ApiCalls {
        mode,
        calls: args.calls as usize,
        concurrency: args.concurrency as usize,
        reply_bytes: args.call_bytes,
    };
    let scenarios: Vec<Box<dyn Scenario>> = vec![
        Box::new(OneConnection),
        Box::new(calls(keepalive::Mode::ConnPerCall)),
        Box::new(calls(keepalive::Mode::KeepAlive)),
        Box::new(calls(keepalive::Mode::Pool)),
    ];
    writeln!(
        out,
        "synack demo: rtt {} ({} each way), seed {}, reply {} ({} bytes), impairments: {}",
        fmt_duration(settings.rtt),
        fmt_duration(settings.rtt / 2),
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
    for (i, scenario) in scenarios.iter().enumerate() {
        writeln!(out)?;
        writeln!(
            out,
            "== scenario: {} ({})",
            scenario.name(),
            scenario.description()
        )?;
        writeln!(out)?;
        let outcome = scenario.run(&settings)?;
        let ladder = i == 0 || args.all_ladders;
        report::print_outcome(out, &settings, &outcome, ladder)?;
        outcomes.push(outcome);
    }
    writeln!(out)?;
    report::print_results(out, &settings, &outcomes)?;
    Ok(())
}
