//! Scenarios: ways for a client to get a reply from a server, each run on a fresh simulated
//! network and reported as an [`Outcome`].

use synack_stack::ladder::{Ladder, Phases, Summary};
use synack_tcp::{Config, Duration, Instant};

use super::app::{response_head, Client, Server};
use super::world::{World, CLIENT_IP};
use super::{DemoError, Settings};

/// One way of making the call. Each scenario builds its own [`World`] from the settings, so
/// scenarios are independent and each is deterministic for a seed.
pub trait Scenario {
    /// A short name for the results table ("one connection").
    fn name(&self) -> &'static str;
    /// One line on what the client does.
    fn description(&self) -> &'static str;
    /// Runs it to the end (every connection CLOSED, TIME-WAIT included).
    fn run(&self, settings: &Settings) -> Result<Outcome, DemoError>;
}

/// What a scenario did.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    /// The trace of both hosts.
    pub ladder: Ladder,
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
    /// When the network went idle (the last timer, normally the end of TIME-WAIT).
    pub end: Instant,
    /// Packets written to the capture, if one was asked for.
    pub captured: Option<u64>,
    /// Time the client spent in handshakes (SYN sent -> ESTABLISHED), summed over its
    /// connections; `None`: the first connection's, from `phases`.
    pub handshake_time: Option<Duration>,
}

/// A connection per call: connect, one request, one reply, close.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneConnection;

impl Scenario for OneConnection {
    fn name(&self) -> &'static str {
        "one connection"
    }

    fn description(&self) -> &'static str {
        "connect, GET /bytes/N, read the reply, close: one handshake per call"
    }

    fn run(&self, settings: &Settings) -> Result<Outcome, DemoError> {
        let mut w = World::new(settings, settings.pcap.as_deref())?;
        let addr = w.server_addr();
        let mut server = Server::listen(w.server_tcp(), addr)?;
        let now = w.now();
        let mut client = Client::connect(w.client_tcp(), now, CLIENT_IP, addr, settings.bytes)?;
        let limit = w.deadline;
        loop {
            let now = w.now();
            client.poll(w.net.host_mut(w.client).tcp_mut(), now)?;
            server.poll(w.net.host_mut(w.server).tcp_mut(), now)?;
            if client.is_done() && server.is_done() {
                break;
            }
            // What the applications made the endpoints send goes out now, at this instant.
            w.net.flush();
            match w.net.next_event() {
                Some(t) if t <= limit => {
                    w.net.step();
                }
                Some(_) => {
                    return Err(DemoError::Run(format!(
                        "gave up after {} of virtual time (--time-limit): the exchange did not \
                         finish",
                        super::fmt_duration(settings.time_limit)
                    )))
                }
                None => {
                    return Err(DemoError::Run(
                        "the network went idle before the exchange finished".into(),
                    ))
                }
            }
        }
        // Both sides have closed; let the close and TIME-WAIT run out.
        if !w.net.run_until_idle(limit) {
            return Err(DemoError::Run(format!(
                "gave up after {} of virtual time (--time-limit): the connections did not \
                 close",
                super::fmt_duration(settings.time_limit)
            )));
        }
        let end = w.now();
        let left = w.client_tcp().connection_count() + w.server_tcp().connection_count();
        if left != 0 {
            return Err(DemoError::Run(format!(
                "{left} connection(s) still open when the network went idle"
            )));
        }
        let captured = match settings.pcap.as_deref() {
            Some(p) => w.finish_capture(p)?,
            None => None,
        };
        let traces = w.traces();
        let ladder = Ladder::new(&traces)
            .relative(!settings.absolute)
            .fold(settings.fold)
            .time_origin(Instant::ZERO);
        let phases = ladder.phases();
        let summary = ladder.summary();
        let head_bytes = response_head(settings.bytes).len() as u64;
        Ok(Outcome {
            name: self.name(),
            ladder,
            phases,
            summary,
            requests: 1,
            request_bytes: server.received,
            head_bytes,
            body_bytes: client.received - head_bytes,
            time_wait: Config::default().msl * 2,
            end,
            captured,
            handshake_time: None,
        })
    }
}
