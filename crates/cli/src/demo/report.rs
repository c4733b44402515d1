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

/// `d` in round trips, two decimals.
fn rtts(d: Duration, rtt: Duration) -> String {
    if rtt.is_zero() {
        return "-".into();
    }
    format!("{:.2}", d.as_micros() as f64 / rtt.as_micros() as f64)
}

/// The phase table and the counts of one outcome (its ladder is drawn as it runs).
pub fn print_outcome(
    out: &mut dyn Write,
    settings: &Settings,
    o: &Outcome,
) -> Result<(), DemoError> {
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
    writeln!(
        out,
        "  delivered:   request {} B; reply {} B ({} B head + {} body, checked byte for byte)",
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
        _ => writeln!(
            out,
            "  TIME-WAIT:   none (the network went idle at {})",
            secs(o.end)
        )?,
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
            "handshakes",
            "handshake RTTs",
            "requests",
            "ms to last byte",
            "RTTs",
            "ms to closed",
            "segments",
            "retransmitted",
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
        t.row(vec![
            o.name.clone(),
            o.summary.handshakes.to_string(),
            handshake.map_or("-".into(), |d| rtts(d, settings.rtt)),
            o.requests.to_string(),
            to_last.0,
            to_last.1,
            closed,
            segments.to_string(),
            retransmitted.to_string(),
        ]);
    }
    t.write(out)?;
    Ok(())
}
