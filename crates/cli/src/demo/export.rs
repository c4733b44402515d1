//! The demo's numbers as JSON (`--json`) and its report as an HTML page (`--html FILE`).
//!
//! A [`Recorder`] in the [`Settings`] keeps what the scenarios trace (both hosts'
//! [`TraceRecord`]s, for the diagrams and plots, up to [`MAX_RECORDS`] a scenario) and, for
//! the API-call scenarios, each call's start, end and [`RequestInfo`] (for the waterfall and
//! the JSON's `calls`).
//!
//! # JSON schema (`synack demo --json`, schema `synack-demo/1`)
//!
//! The numbers of the text's tables. Times are microseconds: `*_us` are durations, `from_us`
//! and `to_us` instants of virtual time since the scenario's start; `*_rtts` are the same
//! durations over the path's RTT (`null` with a zero RTT). A missing value is `null`.
//!
//! ```text
//! {
//!   "schema": "synack-demo/1",
//!   "settings": { "rtt_us", "seed", "bytes", "bandwidth_bps" | null, "queue_bytes" | null,
//!                 "loss", "reorder", "duplicate", "corrupt", "jitter_us",   // shares 0..1
//!                 "calls", "concurrency", "call_bytes", "time_limit_us" },
//!   "scenarios": [ {
//!       "name", "description",
//!       // the results table's row
//!       "handshakes", "handshake_us", "handshake_rtts", "requests",
//!       "to_last_byte_us", "to_last_byte_rtts", "to_closed_us",
//!       "to_first_byte_us", "to_first_byte_rtts",  // scenario start to first response byte
//!       "tls_handshakes", "tls_handshake_us", "tls_handshake_rtts",  // the API-call scenarios
//!       "connections", "streams", "retries",                          // (else null)
//!       "held_up",   // staggered scenarios: calls slower than 1.5 RTTs (else null)
//!       "call_us": { "median", "p90", "max" } | null,  // each call: start to last byte
//!       "segments", "retransmitted", "lost",
//!       // the phase table, in its order: "handshake", "request_to_first_byte",
//!       // "reply_transfer", "close", "total"
//!       "phases": [ { "phase", "label", "from_us", "to_us", "us", "rtts" } ],
//!       "flows": [ { "from", "to", "segments", "data_segments", "bytes_sent",
//!                    "retransmitted", "lost" } ],
//!       "delivered": { "request_bytes", "head_bytes", "body_bytes" },
//!       "time_wait": { "side", "from_us", "until_us" } | null,
//!       "end_us", "cut_by_limit",
//!       "capture": { "path", "packets" } | null,
//!       // the API-call scenarios: each call, in the order they started
//!       "calls": [ { "call", "connection", "local_port", "reused", "waited", "retried",
//!                    "request_on_connection", "start_us", "end_us", "us",
//!                    "handshake_us" } ] } ]
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Value};
use synack_http::RequestInfo;
use synack_stack::net::Stack;
use synack_tcp::{Direction, Duration, Instant, State, TraceEvent, TraceRecord};
use synack_trace::html::{self, Bar, BarKind, Block, Page, Section, Table, Waterfall};
use synack_trace::html::{records, WaterfallRow};
use synack_trace::ladder::fmt_bytes;

use super::scenario::{Outcome, HOSTS};
use super::{fmt_duration, DemoArgs, DemoError, Settings};

/// The most trace records kept per scenario for the HTML report (about 100 bytes each);
/// past it the diagrams and plots stop where the records do, and say so.
pub const MAX_RECORDS: usize = 1_000_000;
/// The most connections drawn per scenario.
const MAX_DIAGRAMS: usize = 100;
/// The most calls in a waterfall.
const MAX_CALLS: usize = 400;

/// One API call, as the client saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub start: Instant,
    pub end: Instant,
    pub info: Option<RequestInfo>,
}

#[derive(Debug, Default)]
struct Recording {
    keep_records: bool,
    records: Vec<(usize, TraceRecord)>,
    /// Records stopped being kept at this time.
    truncated_at: Option<Instant>,
    calls: Vec<CallRecord>,
}

/// What a scenario recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    pub records: Vec<(usize, TraceRecord)>,
    pub truncated_at: Option<Instant>,
    pub calls: Vec<CallRecord>,
}

/// Where the scenarios put what the report needs (see the module documentation). Cloning
/// shares it.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Recording>>);

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    /// A recorder of calls, and of trace records when `keep_records` (for the HTML report).
    pub fn new(keep_records: bool) -> Recorder {
        Recorder(Arc::new(Mutex::new(Recording {
            keep_records,
            ..Recording::default()
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Trace records of host `host` (0: the client, 1: the server).
    pub fn records(&self, host: usize, records: &[TraceRecord]) {
        let mut r = self.lock();
        if !r.keep_records || r.truncated_at.is_some() {
            return;
        }
        for rec in records {
            if r.records.len() >= MAX_RECORDS {
                r.truncated_at = Some(rec.time);
                return;
            }
            r.records.push((host, *rec));
        }
    }

    /// A log of calls whose clock is `stack`'s.
    pub fn call_log(&self, stack: &Stack) -> CallLog {
        CallLog {
            recorder: self.clone(),
            stack: stack.clone(),
        }
    }

    /// What was recorded since the last call, leaving it empty for the next scenario.
    pub fn take(&self) -> Recorded {
        let mut r = self.lock();
        Recorded {
            records: std::mem::take(&mut r.records),
            truncated_at: r.truncated_at.take(),
            calls: std::mem::take(&mut r.calls),
        }
    }
}

/// Where an API-call scenario notes its calls.
#[derive(Clone, Debug)]
pub struct CallLog {
    recorder: Recorder,
    stack: Stack,
}

impl CallLog {
    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.stack.now()
    }

    /// A call that started at `start` got its whole response now.
    pub fn done<B>(&self, start: Instant, response: &http::Response<B>) {
        let end = self.now();
        let info = response.extensions().get::<RequestInfo>().cloned();
        self.recorder
            .lock()
            .calls
            .push(CallRecord { start, end, info });
    }
}

/// What the scenario just run recorded, with its description (nothing without `--json` or
/// `--html`).
pub fn take(settings: &Settings, description: String) -> (String, Recorded) {
    let rec = settings.recorder.as_ref().map(Recorder::take);
    (description, rec.unwrap_or_default())
}

/// Writes the `--html` report and prints the `--json` document to `out`, as asked.
pub fn finish(
    args: &DemoArgs,
    settings: &Settings,
    outcomes: &[Outcome],
    recorded: Vec<(String, Recorded)>,
    out: &mut dyn std::io::Write,
) -> Result<(), DemoError> {
    let exported: Vec<Exported<'_>> = outcomes
        .iter()
        .zip(recorded)
        .map(|(outcome, (description, recorded))| Exported {
            description,
            outcome,
            recorded,
        })
        .collect();
    if let Some(path) = &args.html {
        let page = html(settings, &header(settings), &exported);
        std::fs::write(path, page)
            .map_err(|e| DemoError::Io(format!("writing {}", path.display()), e))?;
        if !args.json {
            writeln!(out, "\nreport: {} (open it in a browser)", path.display())?;
        }
    }
    if args.json {
        writeln!(out, "{}", json(args, settings, &exported))?;
    }
    Ok(())
}

/// The lines under the page's title: the path and what runs on it.
fn header(s: &Settings) -> Vec<String> {
    vec![
        format!(
            "rtt {} ({} each way), link {}, seed {}, reply {} ({} bytes), impairments: {}",
            fmt_duration(s.rtt),
            fmt_duration(s.rtt / 2),
            s.link(),
            s.seed,
            fmt_bytes(s.bytes),
            s.bytes,
            s.impairments(),
        ),
        format!(
            "client 198.18.0.1 ↔ server 198.18.0.2 on a simulated path; times are virtual, \
             sequence numbers {}",
            if s.absolute {
                "absolute"
            } else {
                "relative (ISN = 0)"
            }
        ),
    ]
}

/// A scenario's outcome with what it recorded.
pub struct Exported<'a> {
    pub description: String,
    pub outcome: &'a Outcome,
    pub recorded: Recorded,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn rtts(d: Duration, rtt: Duration) -> Value {
    if rtt.is_zero() {
        Value::Null
    } else {
        json!(d.as_micros() as f64 / rtt.as_micros() as f64)
    }
}

/// The phase table's rows: key, label, from, to.
fn phase_rows(o: &Outcome) -> [(&'static str, &'static str, Option<Instant>, Option<Instant>); 5] {
    let p = &o.phases;
    [
        (
            "handshake",
            "handshake (SYN -> ESTABLISHED)",
            p.connect_start,
            p.handshake_done,
        ),
        (
            "request_to_first_byte",
            "request -> first reply byte",
            p.request_sent,
            p.first_response_byte,
        ),
        (
            "reply_transfer",
            "reply transfer (first -> last byte)",
            p.first_response_byte,
            p.last_response_byte,
        ),
        (
            "close",
            "close (first FIN -> both closed)",
            p.close_start,
            p.closed,
        ),
        (
            "total",
            "total (SYN -> both closed)",
            p.connect_start,
            p.closed,
        ),
    ]
}

/// The numbers of the results table's row of `o`.
struct ResultRow {
    handshakes: usize,
    handshake: Option<Duration>,
    requests: usize,
    to_last_byte: Option<Duration>,
    to_closed: Option<Duration>,
    segments: usize,
    retransmitted: usize,
    lost: usize,
    to_first_byte: Option<Duration>,
}

fn result_row(o: &Outcome) -> ResultRow {
    let p = &o.phases;
    let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    ResultRow {
        handshakes: o.summary.handshakes,
        handshake: o.handshake_time.or(span(p.connect_start, p.handshake_done)),
        requests: o.requests,
        to_last_byte: span(p.connect_start, p.last_response_byte),
        to_closed: span(p.connect_start, p.closed),
        segments: o.summary.flows.iter().map(|f| f.segments).sum(),
        retransmitted: o.summary.flows.iter().map(|f| f.retransmitted).sum(),
        lost: o.summary.flows.iter().map(|f| f.lost).sum(),
        to_first_byte: super::report::to_first_byte(o),
    }
}

/// The `--json` document (schema `synack-demo/1`).
pub fn json(args: &DemoArgs, settings: &Settings, scenarios: &[Exported<'_>]) -> String {
    let rtt = settings.rtt;
    let p = &settings.path;
    let list: Vec<Value> = scenarios
        .iter()
        .map(|e| {
            let o = e.outcome;
            let r = result_row(o);
            let opt_us = |d: Option<Duration>| d.map_or(Value::Null, |d| json!(us(d)));
            let opt_rtts = |d: Option<Duration>| d.map_or(Value::Null, |d| rtts(d, rtt));
            let phases: Vec<Value> = phase_rows(o)
                .iter()
                .map(|&(key, label, from, to)| match (from, to) {
                    (Some(a), Some(b)) => json!({
                        "phase": key, "label": label,
                        "from_us": a.as_micros(), "to_us": b.as_micros(),
                        "us": us(b - a), "rtts": rtts(b - a, rtt),
                    }),
                    _ => json!({
                        "phase": key, "label": label, "from_us": null, "to_us": null,
                        "us": null, "rtts": null,
                    }),
                })
                .collect();
            let flows: Vec<Value> = o
                .summary
                .flows
                .iter()
                .map(|f| {
                    json!({
                        "from": f.from, "to": f.to, "segments": f.segments,
                        "data_segments": f.data_segments, "bytes_sent": f.bytes_sent,
                        "retransmitted": f.retransmitted, "lost": f.lost,
                    })
                })
                .collect();
            let ph = &o.phases;
            let time_wait = match (&ph.active_closer, ph.time_wait_start) {
                (Some(side), Some(a)) => json!({
                    "side": side, "from_us": a.as_micros(),
                    "until_us": (a + o.time_wait).as_micros(),
                }),
                _ => Value::Null,
            };
            let capture = match (
                o.captured,
                o.capture_path.as_ref().or(settings.pcap.as_ref()),
            ) {
                (Some(n), Some(path)) => {
                    json!({ "path": path.display().to_string(), "packets": n })
                }
                _ => Value::Null,
            };
            let calls: Vec<Value> = e
                .recorded
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let info = c.info.as_ref();
                    json!({
                        "call": i + 1,
                        "connection": info.map(|i| i.connection),
                        "local_port": info.and_then(|i| i.local_addr).map(|a| a.port()),
                        "reused": info.map(|i| i.reused),
                        "waited": info.map(|i| i.waited),
                        "retried": info.map(|i| i.retried),
                        "request_on_connection": info.map(|i| i.request_on_connection),
                        "start_us": c.start.as_micros(),
                        "end_us": c.end.as_micros(),
                        "us": c.end.as_micros().saturating_sub(c.start.as_micros()),
                        "handshake_us": info.and_then(|i| i.handshake).map(us),
                    })
                })
                .collect();
            json!({
                "name": o.name,
                "description": e.description,
                "handshakes": r.handshakes,
                "handshake_us": opt_us(r.handshake),
                "handshake_rtts": opt_rtts(r.handshake),
                "requests": r.requests,
                "to_last_byte_us": opt_us(r.to_last_byte),
                "to_last_byte_rtts": opt_rtts(r.to_last_byte),
                "to_closed_us": opt_us(r.to_closed),
                "to_first_byte_us": opt_us(r.to_first_byte),
                "to_first_byte_rtts": opt_rtts(r.to_first_byte),
                "tls_handshakes": o.calls.as_ref().map_or(0, |c| c.tls_handshakes),
                "tls_handshake_us": o.calls.as_ref().map(|c| us(c.tls_handshake_time)),
                "tls_handshake_rtts": o.calls.as_ref().map(|c| rtts(c.tls_handshake_time, rtt)),
                "connections": o.calls.as_ref().map(|c| c.connections),
                "streams": o.calls.as_ref().map(|c| c.streams),
                "retries": o.calls.as_ref().map(|c| c.retries),
                "held_up": o.calls.as_ref().and_then(|c| {
                    c.paced?;
                    Some(c.slower_than(super::report::held_up_limit(rtt)))
                }),
                "call_us": o.calls.as_ref().and_then(|c| {
                    Some(json!({
                        "median": us(c.quantile(0.5)?),
                        "p90": us(c.quantile(0.9)?),
                        "max": us(c.quantile(1.0)?),
                    }))
                }),
                "segments": r.segments,
                "retransmitted": r.retransmitted,
                "lost": r.lost,
                "phases": phases,
                "flows": flows,
                "delivered": {
                    "request_bytes": o.request_bytes,
                    "head_bytes": o.head_bytes,
                    "body_bytes": o.body_bytes,
                },
                "time_wait": time_wait,
                "end_us": o.end.as_micros(),
                "cut_by_limit": o.cut_by_limit,
                "capture": capture,
                "calls": calls,
            })
        })
        .collect();
    let doc = json!({
        "schema": "synack-demo/1",
        "settings": {
            "rtt_us": us(settings.rtt),
            "seed": settings.seed,
            "bytes": settings.bytes,
            "bandwidth_bps": p.bandwidth_bps,
            "queue_bytes": p.queue_limit_bytes,
            "loss": p.loss,
            "reorder": p.reorder,
            "duplicate": p.duplicate,
            "corrupt": p.corrupt,
            "jitter_us": us(p.jitter),
            "calls": args.calls,
            "concurrency": args.concurrency,
            "call_bytes": args.call_bytes,
            "time_limit_us": us(settings.time_limit),
        },
        "scenarios": list,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// `12.345` milliseconds.
fn ms(d: Duration) -> String {
    let u = d.as_micros();
    format!("{}.{:03}", u / 1000, u % 1000)
}

fn rtts_text(d: Duration, rtt: Duration) -> String {
    if rtt.is_zero() {
        "-".into()
    } else {
        format!("{:.2}", d.as_micros() as f64 / rtt.as_micros() as f64)
    }
}

fn anchor(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The `--html` page.
pub fn html(settings: &Settings, header: &[String], scenarios: &[Exported<'_>]) -> String {
    let rtt = settings.rtt;
    let mut page = Page {
        title: "synack demo".into(),
        lines: header.to_vec(),
        sections: Vec::new(),
    };
    // The comparison table, as the text prints it.
    let mut results = Table {
        caption: Some("Each scenario on a fresh network with the same path and seed".into()),
        header: [
            "scenario",
            "handshakes TCP+TLS",
            "their RTTs",
            "requests",
            "ms per call (median/max)",
            "ms to last byte",
            "RTTs",
            "ms to closed",
            "segments",
            "retransmitted",
        ]
        .map(String::from)
        .to_vec(),
        text_columns: 1,
        ..Table::default()
    };
    for e in scenarios {
        let o = e.outcome;
        let r = result_row(o);
        let dash = || "-".to_owned();
        let tcp_rtts = r.handshake.map_or_else(dash, |d| rtts_text(d, rtt));
        let (handshakes, their_rtts) = match &o.calls {
            Some(c) if c.tls_handshakes > 0 => (
                format!("{}+{}", r.handshakes, c.tls_handshakes),
                format!("{tcp_rtts}+{}", rtts_text(c.tls_handshake_time, rtt)),
            ),
            _ => (r.handshakes.to_string(), tcp_rtts),
        };
        let per_call = match o.calls.as_ref().map(|c| (c.quantile(0.5), c.quantile(1.0))) {
            Some((Some(a), Some(b))) => format!(
                "{:.1}/{:.1}",
                a.as_micros() as f64 / 1000.0,
                b.as_micros() as f64 / 1000.0
            ),
            _ => dash(),
        };
        results.rows.push(vec![
            o.name.clone(),
            handshakes,
            their_rtts,
            r.requests.to_string(),
            per_call,
            r.to_last_byte.map_or_else(dash, ms),
            r.to_last_byte.map_or_else(dash, |d| rtts_text(d, rtt)),
            r.to_closed.map_or_else(dash, ms),
            r.segments.to_string(),
            r.retransmitted.to_string(),
        ]);
        results.links.push(Some(format!("#{}", anchor(&o.name))));
    }
    page.sections.push(Section {
        id: "results".into(),
        title: "Results".into(),
        blocks: vec![
            Block::Table(results),
            Block::Text(
                "Each scenario below has its phase table, a waterfall of its calls, plots over \
                 time where a connection carried enough data, and the sequence diagram of every \
                 connection: one arrow per segment from the sender's lifeline when it left to \
                 the receiver's when it arrived (hover for the times). Red: a retransmission; \
                 a dashed arrow ending in a cross: a segment lost on the way."
                    .into(),
            ),
        ],
    });
    for e in scenarios {
        page.sections.push(scenario_section(settings, e));
    }
    html::render(&page)
}

fn scenario_section(settings: &Settings, e: &Exported<'_>) -> Section {
    let o = e.outcome;
    let rtt = settings.rtt;
    let r = result_row(o);
    let mut blocks = vec![Block::Text(e.description.clone())];
    let dash = || "-".to_owned();
    blocks.push(Block::Figures(vec![
        ("handshakes".into(), r.handshakes.to_string()),
        ("requests".into(), r.requests.to_string()),
        (
            "ms to last byte".into(),
            r.to_last_byte.map_or_else(dash, ms),
        ),
        (
            "RTTs to last byte".into(),
            r.to_last_byte.map_or_else(dash, |d| rtts_text(d, rtt)),
        ),
        ("segments".into(), r.segments.to_string()),
        ("retransmitted".into(), r.retransmitted.to_string()),
        ("lost".into(), r.lost.to_string()),
    ]));
    let mut phases = Table {
        caption: Some(
            "Phases (of the first connection; the last byte and the close: of the whole run)"
                .into(),
        ),
        header: ["phase", "from (s)", "to (s)", "ms", "RTTs"]
            .map(String::from)
            .to_vec(),
        text_columns: 1,
        ..Table::default()
    };
    for (_, label, from, to) in phase_rows(o) {
        phases.rows.push(match (from, to) {
            (Some(a), Some(b)) => vec![
                label.into(),
                a.to_string(),
                b.to_string(),
                ms(b - a),
                rtts_text(b - a, rtt),
            ],
            _ => vec![label.into(), dash(), dash(), dash(), dash()],
        });
    }
    blocks.push(Block::Table(phases));
    let mut flows = Table {
        caption: Some("Segments".into()),
        header: [
            "from",
            "to",
            "segments",
            "with data",
            "payload",
            "retransmitted",
            "lost",
        ]
        .map(String::from)
        .to_vec(),
        text_columns: 2,
        ..Table::default()
    };
    for f in &o.summary.flows {
        flows.rows.push(vec![
            f.from.clone(),
            f.to.clone(),
            f.segments.to_string(),
            f.data_segments.to_string(),
            fmt_bytes(f.bytes_sent),
            f.retransmitted.to_string(),
            f.lost.to_string(),
        ]);
    }
    blocks.push(Block::Table(flows));
    blocks.push(Block::Text(format!(
        "Delivered: request {} B; reply {} B ({} B head + {} body, checked byte for byte).{}",
        o.request_bytes,
        o.head_bytes + o.body_bytes,
        o.head_bytes,
        fmt_bytes(o.body_bytes),
        match (&o.phases.active_closer, o.phases.time_wait_start) {
            (Some(who), Some(a)) => format!(
                " TIME-WAIT: the {who} from {a} s for 2·MSL = {}.",
                fmt_duration(o.time_wait)
            ),
            _ => String::new(),
        }
    )));

    let rec = &e.recorded;
    let views = records::connections(
        &rec.records,
        HOSTS,
        records::Options {
            relative: !settings.absolute,
            fold_above: if settings.fold { 600 } else { usize::MAX },
            origin: Instant::ZERO,
            rtt_us: us(settings.rtt),
        },
    );
    if !rec.calls.is_empty() {
        blocks.push(Block::Waterfall(waterfall(&rec.calls, &rec.records)));
        if rec.calls.len() > MAX_CALLS {
            blocks.push(Block::Text(format!(
                "The waterfall shows the first {MAX_CALLS} of {} calls.",
                rec.calls.len()
            )));
        }
    }
    if let Some(t) = rec.truncated_at {
        blocks.push(Block::Text(format!(
            "The diagrams and plots stop at t={t} s: the report keeps at most {MAX_RECORDS} \
             trace records a scenario."
        )));
    }
    for v in views.iter().filter(|v| !v.plots.is_empty()).take(4) {
        blocks.push(Block::Text(format!(
            "Over time, connection {} → {}:",
            v.tuple.local, v.tuple.remote
        )));
        blocks.push(Block::Plots(v.plots.clone()));
    }
    if views.is_empty() && rec.records.is_empty() {
        blocks.push(Block::Text(
            "No trace was recorded for this scenario.".into(),
        ));
    }
    let n = views.len();
    for (i, v) in views.into_iter().take(MAX_DIAGRAMS).enumerate() {
        let rtt_text = v
            .rtt_us
            .map(|r| format!(", handshake {} ms", ms(Duration::from_micros(r))))
            .unwrap_or_default();
        blocks.push(Block::Fold {
            summary: format!(
                "connection {}: {} → {} ({} segments{rtt_text})",
                i + 1,
                v.tuple.local,
                v.tuple.remote,
                v.segments
            ),
            open: i == 0,
            blocks: vec![Block::Diagram(v.diagram)],
        });
    }
    if n > MAX_DIAGRAMS {
        blocks.push(Block::Text(format!(
            "The first {MAX_DIAGRAMS} of {n} connections are drawn."
        )));
    }
    Section {
        id: anchor(&o.name),
        title: o.name.clone(),
        blocks,
    }
}

/// What the client's trace says about one connection, in time order.
#[derive(Debug, Clone, Copy)]
enum ClientEvent {
    Syn(Instant),
    Established(Instant),
    DataSent(Instant),
    DataReceived(Instant),
}

/// Each call's parts: waiting for a connection, the handshake, the request until the first
/// byte of the response, the response. From the call's start and end as the client saw them
/// and the client's trace of its connection (found by the local port in its `RequestInfo`).
fn waterfall(calls: &[CallRecord], recs: &[(usize, TraceRecord)]) -> Waterfall {
    let mut by_port: HashMap<u16, Vec<ClientEvent>> = HashMap::new();
    for (h, r) in recs {
        if *h != 0 {
            continue;
        }
        let ev = match r.event {
            TraceEvent::State {
                to: State::SynSent, ..
            } => (r.event_port(), ClientEvent::Syn(r.time)),
            TraceEvent::State {
                from: State::SynSent,
                to: State::Established,
                ..
            } => (r.event_port(), ClientEvent::Established(r.time)),
            TraceEvent::Segment { dir, seg, .. } if seg.len > 0 => (
                r.event_port(),
                if dir == Direction::Sent {
                    ClientEvent::DataSent(r.time)
                } else {
                    ClientEvent::DataReceived(r.time)
                },
            ),
            _ => continue,
        };
        by_port.entry(ev.0).or_default().push(ev.1);
    }
    let mut cursor: HashMap<u16, usize> = HashMap::new();
    let mut order: Vec<usize> = (0..calls.len()).collect();
    order.sort_by_key(|&i| calls[i].start);
    let mut rows = Vec::new();
    for (n, &i) in order.iter().enumerate().take(MAX_CALLS) {
        let c = &calls[i];
        let info = c.info.as_ref();
        let port = info.and_then(|i| i.local_addr).map(|a| a.port());
        let reused = info.is_some_and(|i| i.reused);
        let (mut syn, mut est, mut req, mut first) = (None, None, None, None);
        if let Some(evs) = port.and_then(|p| by_port.get(&p)) {
            let cur = cursor.entry(port.unwrap_or(0)).or_insert(0);
            // Skip what happened before this call (earlier calls on the connection).
            while *cur < evs.len() && time(evs[*cur]) < c.start {
                *cur += 1;
            }
            let mut j = *cur;
            while j < evs.len() && time(evs[j]) <= c.end {
                match evs[j] {
                    ClientEvent::Syn(t) if !reused && syn.is_none() => syn = Some(t),
                    ClientEvent::Established(t) if syn.is_some() && est.is_none() => est = Some(t),
                    ClientEvent::DataSent(t) if req.is_none() => req = Some(t),
                    ClientEvent::DataReceived(t) if req.is_some() && first.is_none() => {
                        first = Some(t)
                    }
                    _ => {}
                }
                j += 1;
            }
            *cur = j;
        }
        let s = c.start.as_micros();
        let mut bars = Vec::new();
        let mut push = |kind, a: u64, b: u64| {
            if b > a {
                bars.push(Bar {
                    kind,
                    start: a,
                    end: b,
                });
            }
        };
        match (req, first) {
            (Some(req), Some(first)) => {
                let opened = syn.map_or(req.as_micros(), |t| t.as_micros());
                push(BarKind::Queue, s, opened);
                if let (Some(a), Some(b)) = (syn, est) {
                    push(BarKind::Handshake, a.as_micros(), b.as_micros());
                }
                push(BarKind::Request, req.as_micros(), first.as_micros());
                push(BarKind::Response, first.as_micros(), c.end.as_micros());
            }
            _ => {
                // No trace: the handshake from the client's own measure, then the rest.
                let hs = info.and_then(|i| i.handshake).map_or(0, us);
                push(BarKind::Handshake, s, s + hs);
                push(BarKind::Response, s + hs, c.end.as_micros());
            }
        }
        let conn = info.map_or("?".to_owned(), |i| i.connection.to_string());
        let mut note = match info {
            Some(i) if i.reused => format!("reused (request {})", i.request_on_connection),
            Some(_) => "new connection".to_owned(),
            None => String::new(),
        };
        if info.is_some_and(|i| i.waited) {
            note.push_str(", waited");
        }
        let total = c.end.saturating_duration_since(c.start);
        note = format!("{:.1} ms, {note}", total.as_micros() as f64 / 1000.0);
        rows.push(WaterfallRow {
            label: format!("call {} · connection {conn}", n + 1),
            bars,
            note,
        });
    }
    Waterfall {
        title: "calls".into(),
        rows,
    }
}

fn time(e: ClientEvent) -> Instant {
    match e {
        ClientEvent::Syn(t)
        | ClientEvent::Established(t)
        | ClientEvent::DataSent(t)
        | ClientEvent::DataReceived(t) => t,
    }
}

/// The client's port of a record's connection.
trait EventPort {
    fn event_port(&self) -> u16;
}

impl EventPort for TraceRecord {
    fn event_port(&self) -> u16 {
        match self.event {
            TraceEvent::Segment { tuple, .. }
            | TraceEvent::State { tuple, .. }
            | TraceEvent::Retransmit { tuple, .. }
            | TraceEvent::Congestion { tuple, .. } => tuple.local.port(),
        }
    }
}
