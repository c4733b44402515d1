//! Scenarios: ways for a client to get a reply from a server, each run on a fresh simulated
//! network and reported as an [`Outcome`].

use std::io::Write;

use synack_tcp::{Config, Duration, Instant};
use synack_trace::ladder::{LadderBuilder, LineRenderer, Phases, Row, Summary};

use super::app::{response_head, Client, Server};
use super::world::{World, CLIENT_IP, SERVER_IP};
use super::{fmt_duration, DemoError, Progress, Settings};

/// One way of making the call. Each scenario builds its own [`World`] from the settings, so
/// scenarios are independent and each is deterministic for a seed.
pub trait Scenario {
    /// A short name for the results table ("one connection", "calls: pool, concurrency 4").
    fn name(&self) -> String;
    /// One line on what the client does, with the numbers the settings give.
    fn description(&self, settings: &Settings) -> String;
    /// Runs it to the end (every connection CLOSED, TIME-WAIT included, or the time limit
    /// reached with only TIME-WAIT left), drawing its ladder to `ladder` if given.
    fn run(
        &self,
        settings: &Settings,
        ladder: Option<&mut dyn Write>,
    ) -> Result<Outcome, DemoError>;
}

/// What a scenario did.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Milestones of the (first) connection.
    pub phases: Phases,
    /// Segment and handshake counts.
    pub summary: Summary,
    /// Requests made.
    pub requests: usize,
    /// Request bytes the server read.
    pub request_bytes: u64,
    /// Reply head bytes the client read.
    pub head_bytes: u64,
    /// Reply body bytes the client read and checked against the pattern.
    pub body_bytes: u64,
    /// 2·MSL, the length of TIME-WAIT.
    pub time_wait: Duration,
    /// When the network went idle (the last timer, normally the end of TIME-WAIT), or the
    /// time limit, if a TIME-WAIT was still running then.
    pub end: Instant,
    /// A TIME-WAIT was still running at the time limit: the run stopped there.
    pub cut_by_limit: bool,
    /// Packets written to the capture, if one was asked for.
    pub captured: Option<u64>,
    /// Where the capture went, when not to `--pcap FILE` itself.
    pub capture_path: Option<std::path::PathBuf>,
    /// Time the client spent in handshakes (SYN sent -> ESTABLISHED), handshakes in
    /// parallel counted once; `None`: the first connection's, from `phases`.
    pub handshake_time: Option<Duration>,
    /// Per-call figures of an API-call scenario.
    pub calls: Option<super::keepalive::CallStats>,
    /// The most trace records and ladder rows held at once while it ran.
    #[cfg_attr(not(test), allow(dead_code))]
    pub held_peak: usize,
}

/// Steps of the network between two drains of the traces into the ladder.
const DRAIN_EVERY: u64 = 64;

/// A connection per call: connect, one request, one reply, close.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneConnection;

/// The ladder of a run, drawn as it goes.
struct Drawing<'a> {
    builder: LadderBuilder,
    out: Option<&'a mut dyn Write>,
    lines: LineRenderer,
    held_peak: usize,
}

impl Drawing<'_> {
    /// Takes what the hosts traced since the last call and draws the rows now settled.
    fn feed(&mut self, w: &mut World, progress: &Progress) -> Result<(), DemoError> {
        let (c, s) = w.drain_traces();
        self.builder.push(0, c);
        self.builder.push(1, s);
        self.held_peak = self.held_peak.max(self.builder.held());
        self.builder.advance(w.now());
        self.held_peak = self.held_peak.max(self.builder.held());
        let rows = self.builder.take_rows();
        draw(&mut self.out, &mut self.lines, &rows, progress)
    }
}

/// Writes `rows` as ladder lines to `out`, if there is one.
pub fn draw(
    out: &mut Option<&mut dyn Write>,
    lines: &mut LineRenderer,
    rows: &[Row],
    progress: &Progress,
) -> Result<(), DemoError> {
    if let Some(out) = out.as_mut() {
        progress.suspend(|| {
            rows.iter()
                .try_for_each(|r| writeln!(out, "{}", lines.line(r)))
        })?;
    }
    Ok(())
}

/// The hosts every scenario draws, in ladder column order.
pub(crate) const HOSTS: [&str; 2] = ["client", "server"];

/// The ladder builder of a scenario on the demo's client and server, as the settings ask
/// (relative numbers, folding, and the path's loss horizon to settle lost segments).
pub(crate) fn ladder_builder(settings: &Settings) -> LadderBuilder {
    let builder = LadderBuilder::new(&HOSTS)
        .relative(!settings.absolute)
        .fold(settings.fold)
        .fold_keep_events(settings.fold_events)
        .host_addr(0, CLIENT_IP)
        .host_addr(1, SERVER_IP);
    match settings.path.max_transit(Config::default().mtu) {
        Some(h) => builder.loss_horizon(h),
        None => builder,
    }
}

impl Scenario for OneConnection {
    fn name(&self) -> String {
        "one connection".into()
    }

    fn description(&self, settings: &Settings) -> String {
        format!(
            "connect, GET /bytes/{}, read the reply, close: one handshake per call",
            settings.bytes
        )
    }

    fn run(
        &self,
        settings: &Settings,
        ladder: Option<&mut dyn Write>,
    ) -> Result<Outcome, DemoError> {
        let mut w = World::new(settings, settings.pcap.as_deref())?;
        let builder = ladder_builder(settings);
        // One connection: no ports in the ladder.
        let mut drawing = Drawing {
            builder,
            out: ladder,
            lines: LineRenderer::new(&HOSTS, false, Instant::ZERO),
            held_peak: 0,
        };
        let head = response_head(settings.bytes).len() as u64;
        let progress = Progress::new(settings, settings.bytes + head);
        let addr = w.server_addr();
        let mut server = Server::listen(w.server_tcp(), addr)?;
        let now = w.now();
        let mut client = Client::connect(w.client_tcp(), now, CLIENT_IP, addr, settings.bytes)?;
        let limit = w.deadline;
        let mut steps = 0u64;
        loop {
            let now = w.now();
            client.poll(w.net.host_mut(w.client).tcp_mut(), now)?;
            server.poll(w.net.host_mut(w.server).tcp_mut(), now)?;
            if client.is_done() && server.is_done() {
                break;
            }
            // What the applications made the endpoints send goes out now, at this instant.
            w.net.flush();
            steps += 1;
            if steps == DRAIN_EVERY {
                steps = 0;
                drawing.feed(&mut w, &progress)?;
                progress.set(client.received, w.now());
            }
            match w.net.next_event() {
                Some(t) if t <= limit => {
                    w.net.step();
                }
                Some(_) => {
                    w.net.run_until(limit);
                    return Err(DemoError::Run(format!(
                        "gave up after {} of virtual time (--time-limit): the exchange did not \
                         finish: the client had {} of the {} reply bytes; {}; raise \
                         --time-limit",
                        fmt_duration(settings.time_limit),
                        client.received,
                        settings.bytes + head,
                        w.describe_connections(),
                    )));
                }
                None => {
                    return Err(DemoError::Run(
                        "the network went idle before the exchange finished".into(),
                    ))
                }
            }
        }
        progress.set(client.received, w.now());
        let finished = w.now();
        // Both sides have closed; let the close and TIME-WAIT run out.
        let mut cut_by_limit = false;
        if !w.net.run_until_idle(limit) {
            // Only a TIME-WAIT left is no failure: the exchange is complete, and TIME-WAIT
            // only keeps the 4-tuple from being reused too soon (RFC 9293 §3.6.1).
            if !w.only_time_wait() {
                return Err(DemoError::Run(format!(
                    "gave up after {} of virtual time (--time-limit): the exchange finished \
                     at t={finished}s, but {}; raise --time-limit",
                    fmt_duration(settings.time_limit),
                    w.describe_connections(),
                )));
            }
            cut_by_limit = true;
        }
        let end = w.now();
        let left = w.client_tcp().connection_count() + w.server_tcp().connection_count();
        if left != 0 && !cut_by_limit {
            return Err(DemoError::Run(format!(
                "{left} connection(s) still open when the network went idle"
            )));
        }
        progress.finish();
        let captured = match settings.pcap.as_deref() {
            Some(p) => w.finish_capture(p)?,
            None => None,
        };
        drawing.feed(&mut w, &progress)?;
        let Drawing {
            builder,
            mut out,
            mut lines,
            held_peak,
        } = drawing;
        let built = builder.finish();
        draw(&mut out, &mut lines, &built.rows, &progress)?;
        Ok(Outcome {
            name: self.name(),
            phases: built.phases,
            summary: built.summary,
            requests: 1,
            request_bytes: server.received,
            head_bytes: head,
            body_bytes: client.received - head,
            time_wait: Config::default().msl * 2,
            end,
            cut_by_limit,
            captured,
            capture_path: None,
            handshake_time: None,
            held_peak,
            calls: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::demo::DemoArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn settings(args: &[&str]) -> Settings {
        let argv = std::iter::once("demo").chain(args.iter().copied());
        Settings::from_args(&Cli::parse_from(argv).demo).expect("valid flags")
    }

    /// The most trace records and ladder rows the demo may hold at once.
    const BOUND: usize = 4096;

    #[test]
    fn a_long_reply_is_drawn_in_bounded_memory() {
        let s = settings(&["--bytes", "64MiB", "--loss", "1%"]);
        let mut out = Vec::new();
        let o = OneConnection.run(&s, Some(&mut out)).expect("the run");
        assert_eq!(o.body_bytes, 64 << 20);
        let segments: usize = o.summary.flows.iter().map(|f| f.segments).sum();
        assert!(segments > 10 * BOUND, "{segments} segments");
        assert!(o.held_peak < BOUND, "held {} at once", o.held_peak);
        // Its ladder: the handshake, one folded line, the close.
        let text = String::from_utf8(out).expect("UTF-8");
        let folded = text
            .lines()
            .filter(|l| l.contains(" data segments, "))
            .count();
        assert_eq!(folded, 1, "{text}");
        assert!(text.lines().count() < 40, "{text}");
    }

    #[test]
    fn an_unfolded_ladder_is_written_as_it_goes() {
        let s = settings(&["--bytes", "48MiB", "--no-fold"]);
        let mut out = Vec::new();
        let o = OneConnection.run(&s, Some(&mut out)).expect("the run");
        let lines = String::from_utf8(out).expect("UTF-8").lines().count();
        assert!(lines > 10 * BOUND, "{lines} lines");
        assert!(o.held_peak < BOUND, "held {} at once", o.held_peak);
    }
}
