//! Printing outcomes: the ladder, the phase table, the counts, and the results table.

use std::io::Write;

use synack_tcp::{Duration, Instant};
use synack_trace::ladder::fmt_bytes;

use super::scenario::Outcome;
use super::{fmt_duration, DemoError, Settings};

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A plain text table: a header row, then rows, columns padded to their widest cell.
struct Table {
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str], align: &[Align]) -> Table {
        Table {
            align: align.to_vec(),
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let cols = self.align.len();
        let mut width = vec![0; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        for r in &self.rows {
            let mut line = String::from("  ");
            for (i, c) in r.iter().enumerate().take(cols) {
                let pad = width[i] - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                match self.align[i] {
                    Align::Left => {
                        line.push_str(c);
                        line.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(c);
                    }
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `S.UUUUUU`, as the ladder prints times.
fn secs(t: Instant) -> String {
    t.to_string()
}

/// Milliseconds with microsecond precision: `80.000`.
fn ms(d: Duration) -> String {
    let us = d.as_micros();
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// Milliseconds, one decimal: `102.1`.
fn ms_short(d: Duration) -> String {
    format!("{:.1}", d.as_micros() as f64 / 1000.0)
}

/// `d` in round trips, two decimals.
fn rtts(d: Duration, rtt: Duration) -> String {
    if rtt.is_zero() {
        return "-".into();
    }
    format!("{:.2}", d.as_micros() as f64 / rtt.as_micros() as f64)
}

/// A paced call slower than this was held up: 1.5 round trips, where a call alone on the
/// path takes one.
pub fn held_up_limit(rtt: Duration) -> Duration {
    rtt * 3 / 2
}

/// From the scenario's start (its first SYN or QUIC Initial, which its first call sends) to
/// the first byte of the first response: the calls' first response head, or for the one
/// connection, the first reply byte the ladder saw.
pub fn to_first_byte(o: &Outcome) -> Option<Duration> {
    if let Some(c) = &o.calls {
        return c.first_byte;
    }
    match (o.phases.connect_start, o.phases.first_response_byte) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    }
}

/// The phase table and the counts of one outcome (its ladder is drawn as it runs).
pub fn print_outcome(
    out: &mut dyn Write,
    settings: &Settings,
    o: &Outcome,
) -> Result<(), DemoError> {
    if o.calls.is_some() {
        print_calls(out, settings, o)?;
    } else {
        print_phases(out, settings, o)?;
    }
    print_counts(out, settings, o)
}

/// The first connection's phases, for a scenario of one connection.
fn print_phases(out: &mut dyn Write, settings: &Settings, o: &Outcome) -> Result<(), DemoError> {
    let p = &o.phases;
    let mut t = Table::new(
        &["phase", "from", "to", "ms", "RTTs"],
        &[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
    );
    let phases: [(&str, Option<Instant>, Option<Instant>); 5] = [
        (
            "handshake (SYN -> ESTABLISHED)",
            p.connect_start,
            p.handshake_done,
        ),
        (
            "request -> first reply byte",
            p.request_sent,
            p.first_response_byte,
        ),
        (
            "reply transfer (first -> last byte)",
            p.first_response_byte,
            p.last_response_byte,
        ),
        ("close (first FIN -> both closed)", p.close_start, p.closed),
        ("total (SYN -> both closed)", p.connect_start, p.closed),
    ];
    for (name, from, to) in phases {
        let cells = match (from, to) {
            (Some(a), Some(b)) => vec![
                name.to_owned(),
                secs(a),
                secs(b),
                ms(b - a),
                rtts(b - a, settings.rtt),
            ],
            _ => vec![
                name.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        t.row(cells);
    }
    t.write(out)?;
    writeln!(out)?;
    Ok(())
}

/// An API-call scenario: what a call costs (each call timed from its start to its last reply
/// byte), then the whole run, each labelled as such.
fn print_calls(out: &mut dyn Write, settings: &Settings, o: &Outcome) -> Result<(), DemoError> {
    let Some(c) = &o.calls else { return Ok(()) };
    let n = c.times.len();
    let right = [Align::Left, Align::Right, Align::Right, Align::Right];
    let mut t = Table::new(
        &[&format!("per call ({n} calls)"), "median", "p90", "max"],
        &right,
    );
    let q = [c.quantile(0.5), c.quantile(0.9), c.quantile(1.0)];
    let cell = |f: &dyn Fn(Duration) -> String| -> Vec<String> {
        q.iter().map(|d| d.map_or("-".into(), f)).collect()
    };
    let mut row = vec!["time from call to last reply byte, ms".to_owned()];
    row.extend(cell(&ms));
    t.row(row);
    let mut row = vec!["... in RTTs".to_owned()];
    row.extend(cell(&|d| rtts(d, settings.rtt)));
    t.row(row);
    t.write(out)?;
    writeln!(out)?;

    let per = |x: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", x as f64 / n as f64)
        }
    };
    let mut t = Table::new(&["per call", ""], &[Align::Left, Align::Right]);
    let quic = c.quic;
    t.row(vec![
        if quic {
            "QUIC handshakes (transport and TLS together)"
        } else {
            "TCP handshakes"
        }
        .into(),
        per(o.summary.handshakes as u64),
    ]);
    if c.tls_handshakes > 0 {
        t.row(vec!["TLS handshakes".into(), per(c.tls_handshakes)]);
    }
    let reqs_per_conn = if c.connections == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}", o.requests as f64 / c.connections as f64)
    };
    t.row(vec!["requests per connection".into(), reqs_per_conn]);
    if c.streams > 0 {
        let what = if quic { "HTTP/3" } else { "HTTP/2" };
        t.row(vec![format!("{what} streams per connection"), {
            format!("{:.2}", c.streams as f64 / c.connections.max(1) as f64)
        }]);
    }
    t.write(out)?;
    writeln!(out)?;

    let p = &o.phases;
    let mut t = Table::new(
        &["whole run", "from", "to", "ms", "RTTs"],
        &[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
    );
    let span = |name: &str, a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => vec![
            name.to_owned(),
            secs(a),
            secs(b),
            ms(b - a),
            rtts(b - a, settings.rtt),
        ],
        _ => vec![
            name.to_owned(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
    };
    t.row(span(
        "first SYN -> last call's last reply byte",
        p.connect_start,
        p.last_response_byte,
    ));
    if let Some(d) = c.first_byte {
        t.row(vec![
            "first call -> first response byte".into(),
            "".into(),
            "".into(),
            ms(d),
            rtts(d, settings.rtt),
        ]);
    }
    t.row(span(
        "last reply byte -> every connection closed",
        p.last_response_byte,
        p.closed,
    ));
    if let Some(h) = o.handshake_time {
        t.row(vec![
            if c.quic {
                "in QUIC handshakes (parallel ones once)"
            } else {
                "in TCP handshakes (parallel ones once)"
            }
            .into(),
            "".into(),
            "".into(),
            ms(h),
            rtts(h, settings.rtt),
        ]);
    }
    if c.tls_handshakes > 0 {
        let h = c.tls_handshake_time;
        t.row(vec![
            "in TLS handshakes".into(),
            "".into(),
            "".into(),
            ms(h),
            rtts(h, settings.rtt),
        ]);
    }
    t.write(out)?;
    writeln!(out)?;
    if let Some(every) = c.paced {
        // A call alone on the path takes one round trip; one that waits for a lost packet's
        // repair takes at least one more.
        writeln!(
            out,
            "  held up:     {} of {n} calls took over 1.5 RTTs ({} ms); one call every {}",
            c.slower_than(held_up_limit(settings.rtt)),
            ms(held_up_limit(settings.rtt)),
            fmt_duration(every),
        )?;
    }
    if c.retries > 0 {
        writeln!(
            out,
            "  resent:      {} requests (refused streams, GOAWAY)",
            c.retries
        )?;
    }
    Ok(())
}

/// Segments, handshakes, bytes delivered and TIME-WAIT.
fn print_counts(out: &mut dyn Write, settings: &Settings, o: &Outcome) -> Result<(), DemoError> {
    let p = &o.phases;
    let s = &o.summary;
    let flows: Vec<String> = s
        .flows
        .iter()
        .map(|f| {
            format!(
                "{} -> {} {} ({} with data)",
                f.from, f.to, f.segments, f.data_segments
            )
        })
        .collect();
    let total: usize = s.flows.iter().map(|f| f.segments).sum();
    let retransmitted: usize = s.flows.iter().map(|f| f.retransmitted).sum();
    let lost: usize = s.flows.iter().map(|f| f.lost).sum();
    writeln!(out, "  segments:    {}; {total} in all", flows.join(", "))?;
    writeln!(
        out,
        "  handshakes:  {}; retransmitted segments: {retransmitted}; lost or dropped: {lost}",
        s.handshakes
    )?;
    // Besides the body, the bytes on the connection are heads, and HTTP/2's frames and TLS's
    // records where those carry the calls.
    let besides = match &o.calls {
        Some(c) if c.tls_handshakes > 0 && c.streams > 0 => "heads, HTTP/2 frames and TLS",
        Some(c) if c.tls_handshakes > 0 => "heads and TLS",
        Some(c) if c.streams > 0 => "heads and HTTP/2 frames",
        _ => "head",
    };
    writeln!(
        out,
        "  delivered:   request {} B; reply {} B ({} B {besides} + {} body, checked byte for \
         byte)",
        o.request_bytes,
        o.head_bytes + o.body_bytes,
        o.head_bytes,
        fmt_bytes(o.body_bytes),
    )?;
    if let Some(n) = o.captured {
        if let Some(path) = o.capture_path.as_ref().or(settings.pcap.as_ref()) {
            writeln!(
                out,
                "  capture:     {n} packets of the client's interface in {}",
                path.display()
            )?;
        }
    }
    match (&p.active_closer, p.time_wait_start, p.time_wait_end) {
        (Some(who), Some(a), None) if o.cut_by_limit => writeln!(
            out,
            "  TIME-WAIT:   {who} from {} until {} (2*MSL = {}), past --time-limit {}: the \
             run stopped at {} with the exchange complete",
            secs(a),
            secs(a + o.time_wait),
            fmt_duration(o.time_wait),
            fmt_duration(settings.time_limit),
            secs(o.end),
        )?,
        (Some(who), Some(a), Some(b)) => writeln!(
            out,
            "  TIME-WAIT:   {who} from {} until {} (2*MSL = {}); the 4-tuple is free again \
             then",
            secs(a),
            secs(b),
            fmt_duration(o.time_wait),
        )?,
        // No side went through TIME-WAIT: the connections ended with RSTs (or, for QUIC, there
        // is none); say when every connection was closed, not when the run stopped.
        _ => match p.closed {
            Some(closed) => writeln!(
                out,
                "  TIME-WAIT:   none (every connection closed by {})",
                secs(closed)
            )?,
            None => writeln!(
                out,
                "  TIME-WAIT:   none (the network went idle at {})",
                secs(o.end)
            )?,
        },
    }
    Ok(())
}

/// The table comparing the scenarios.
pub fn print_results(
    out: &mut dyn Write,
    settings: &Settings,
    outcomes: &[Outcome],
) -> Result<(), DemoError> {
    writeln!(out, "results:")?;
    let mut t = Table::new(
        &[
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
            "RTTs to 1st byte",
        ],
        &[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
    );
    for o in outcomes {
        let handshake =
            o.handshake_time
                .or(match (o.phases.connect_start, o.phases.handshake_done) {
                    (Some(a), Some(b)) => Some(b - a),
                    _ => None,
                });
        let p = &o.phases;
        let to_last = match (p.connect_start, p.last_response_byte) {
            (Some(a), Some(b)) => (ms(b - a), rtts(b - a, settings.rtt)),
            _ => ("-".into(), "-".into()),
        };
        let closed = match (p.connect_start, p.closed) {
            (Some(a), Some(b)) => ms(b - a),
            _ => "-".into(),
        };
        let segments: usize = o.summary.flows.iter().map(|f| f.segments).sum();
        let retransmitted: usize = o.summary.flows.iter().map(|f| f.retransmitted).sum();
        let tcp_rtts = handshake.map_or("-".into(), |d| rtts(d, settings.rtt));
        let (handshakes, their_rtts) = match &o.calls {
            Some(c) if c.tls_handshakes > 0 => (
                format!("{}+{}", o.summary.handshakes, c.tls_handshakes),
                format!("{tcp_rtts}+{}", rtts(c.tls_handshake_time, settings.rtt)),
            ),
            _ => (o.summary.handshakes.to_string(), tcp_rtts),
        };
        let per_call = match o.calls.as_ref().map(|c| (c.quantile(0.5), c.quantile(1.0))) {
            Some((Some(a), Some(b))) => format!("{}/{}", ms_short(a), ms_short(b)),
            _ => "-".into(),
        };
        t.row(vec![
            o.name.clone(),
            handshakes,
            their_rtts,
            o.requests.to_string(),
            per_call,
            to_last.0,
            to_last.1,
            closed,
            segments.to_string(),
            retransmitted.to_string(),
            to_first_byte(o).map_or("-".into(), |d| rtts(d, settings.rtt)),
        ]);
    }
    t.write(out)?;
    Ok(())
}
