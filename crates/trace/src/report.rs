//! What `synack trace` prints: each connection's ladder, a table of connections, a table per
//! host pair, and the same numbers as JSON (schema in the [crate documentation](crate)).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use synack_tcp::Instant;

use crate::analyze::{QuicSummary, Stats};
use crate::conn::{ConnSummary, ConnTrace, Phase, RowKind, TraceRow, NAMES};
use crate::ladder::LineRenderer;

/// The JSON schema's name and version.
pub const SCHEMA: &str = "synack-trace/1";

/// Which rows of each ladder `--only` keeps (and which connections: those that have some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The rows of the opening handshake.
    Handshakes,
    /// Retransmitted segments (and folded runs with retransmissions).
    Retransmissions,
    /// The rows from the first FIN or RST on.
    Closes,
}

impl std::str::FromStr for Only {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "handshakes" | "handshake" => Ok(Only::Handshakes),
            "retransmissions" | "retransmission" => Ok(Only::Retransmissions),
            "closes" | "close" => Ok(Only::Closes),
            other => Err(format!(
                "`{other}`: expected handshakes, retransmissions or closes"
            )),
        }
    }
}

/// Which connections and rows to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only connection number N.
    pub conn: Option<u64>,
    /// Only connections with this port on either side.
    pub port: Option<u16>,
    /// Only connections with this address on either side.
    pub host: Option<IpAddr>,
    pub only: Option<Only>,
}

impl Filter {
    fn sockets(&self, a: SocketAddr, b: SocketAddr) -> bool {
        self.port.is_none_or(|p| a.port() == p || b.port() == p)
            && self.host.is_none_or(|h| a.ip() == h || b.ip() == h)
    }

    /// Whether a connection passes.
    pub fn matches(&self, s: &ConnSummary) -> bool {
        self.conn.is_none_or(|n| s.id == n)
            && self.sockets(s.client, s.server)
            && match self.only {
                None => true,
                Some(Only::Handshakes) => s.handshake_seen,
                Some(Only::Retransmissions) => s.retransmissions > 0,
                Some(Only::Closes) => s.milestones.close_start.is_some(),
            }
    }

    /// Whether a QUIC flow passes (never with `--conn`, which numbers TCP connections).
    pub fn matches_quic(&self, q: &QuicSummary) -> bool {
        self.conn.is_none() && self.only.is_none() && self.sockets(q.client, q.server)
    }

    /// Whether a ladder row is shown.
    pub fn keep_row(&self, r: &TraceRow) -> bool {
        match self.only {
            None => true,
            Some(Only::Handshakes) => r.phase == Phase::Open,
            Some(Only::Closes) => r.phase == Phase::Close,
            Some(Only::Retransmissions) => r.is_retransmission(),
        }
    }
}

/// Microseconds as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

fn rtts(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |r| format!("{r:.1}"))
}

/// The heading line of a connection's ladder.
pub fn heading(s: &ConnSummary, capture_start: Option<u64>) -> String {
    let mut t = format!("connection {}: {} -> {}", s.id, s.client, s.server);
    let mut what = vec![s.protocol.name().to_owned()];
    if s.http1_requests > 0 {
        what.push(plural(s.http1_requests, "HTTP/1 request"));
    }
    if s.h2_streams > 0 {
        what.push(plural(s.h2_streams, "HTTP/2 stream"));
    }
    if let Some(tls) = &s.tls {
        if let Some(sni) = &tls.sni {
            what.push(format!("SNI {sni}"));
        }
        if let Some(a) = &tls.alpn {
            what.push(format!("ALPN {a}"));
        }
    }
    if !s.handshake_seen {
        what.push("handshake not in the capture".to_owned());
    }
    let at = capture_start.map_or(0, |c| s.milestones.first_packet.saturating_sub(c));
    let _ = write!(
        t,
        " ({}), from {} s",
        what.join(", "),
        format_args!("{}.{:06}", at / 1_000_000, at % 1_000_000)
    );
    t
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The phases line under a ladder: the RTT, each phase's cost, the counters and the
/// TIME-WAIT side.
pub fn phases_line(s: &ConnSummary) -> String {
    let mut parts = Vec::new();
    match s.rtt_us {
        Some(r) => parts.push(format!("RTT {} ms (SYN to the ACK of SYN-ACK)", ms(r))),
        None => parts.push("RTT unknown (no handshake)".to_owned()),
    }
    let c = &s.costs;
    for (name, cost) in [
        ("handshake", c.handshake),
        ("TLS handshake", c.tls),
        ("request to first byte", c.request_to_first_byte),
        ("response", c.response),
        ("close", c.close),
    ] {
        if let Some(p) = cost {
            match p.rtts {
                Some(r) => parts.push(format!("{name} {r:.1} RTT ({} ms)", ms(p.us))),
                None => parts.push(format!("{name} {} ms", ms(p.us))),
            }
        }
    }
    let mut line = format!("  {}", parts.join(", "));
    let _ = write!(
        line,
        "\n  {} retransmitted, {} with a zero window, {} RST; states at the end: client {}, server {}",
        plural(s.retransmissions, "segment"),
        plural(s.zero_windows, "segment"),
        plural(s.resets, "segment"),
        s.client_state,
        s.server_state
    );
    match &s.time_wait {
        Some(side) => {
            let _ = write!(line, "; TIME-WAIT: {side}");
        }
        None => line.push_str("; TIME-WAIT: neither"),
    }
    line
}

/// The ladder of one connection as lines (times from its first packet). `relative` numbers
/// each direction from its ISN.
pub fn ladder_lines(t: &ConnTrace, relative: bool, filter: &Filter) -> Vec<String> {
    let origin = Instant::from_micros(t.summary.milestones.first_packet);
    let mut r = LineRenderer::new(&NAMES, false, origin);
    t.rows(relative)
        .iter()
        .filter(|row| filter.keep_row(row))
        .map(|row| match &row.kind {
            RowKind::Ladder(l) => r.line(l),
            RowKind::App(a) => r.annotation(a.time, &a.from, &a.to, &a.text),
            RowKind::Elided(e) => r.text(e.time, &e.text),
        })
        .collect()
}

/// The whole text block of one connection: heading, ladder, phases.
pub fn connection_block(
    t: &ConnTrace,
    relative: bool,
    filter: &Filter,
    capture_start: Option<u64>,
) -> String {
    let mut out = heading(&t.summary, capture_start);
    out.push('\n');
    for l in ladder_lines(t, relative, filter) {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(&phases_line(&t.summary));
    out.push('\n');
    out
}

/// Minimum, mean and maximum of a count per connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerConnection {
    pub min: u64,
    pub mean: f64,
    pub max: u64,
}

/// What the handshakes of a host pair cost, added up over its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HandshakeCost {
    /// TCP handshakes: SYN to the ACK of SYN-ACK, summed.
    pub tcp_us: u64,
    /// The same in RTTs (each connection's own RTT), summed.
    pub tcp_rtts: f64,
    /// TLS handshakes: ClientHello to the client's first encrypted data, summed.
    pub tls_us: u64,
    pub tls_rtts: f64,
}

/// The numbers of a host pair: a client address and a server socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairSummary {
    pub client: IpAddr,
    pub server: SocketAddr,
    /// TCP connections (with or without their handshake in the capture).
    pub connections: u64,
    /// Connections whose opening handshake is in the capture.
    pub handshakes: u64,
    pub http1_requests: u64,
    /// HTTP/1 requests per TCP connection.
    pub requests_per_connection: PerConnection,
    pub h2_streams: u64,
    /// HTTP/2 streams per connection, over the connections that spoke HTTP/2.
    pub streams_per_connection: Option<PerConnection>,
    /// ClientHellos.
    pub tls_handshakes: u64,
    /// ALPN protocols chosen (or, when the choice is encrypted, offered first).
    pub alpn: Vec<String>,
    pub quic_connections: u64,
    /// QUIC long-header packets: Initial, 0-RTT, Handshake, Retry.
    pub quic_packets: [u64; 4],
    pub handshake_cost: HandshakeCost,
    pub retransmissions: u64,
    pub zero_windows: u64,
    pub resets: u64,
    /// Connections whose client, and whose server, went to TIME-WAIT.
    pub time_wait_client: u64,
    pub time_wait_server: u64,
}

#[derive(Debug, Default)]
struct PairAcc {
    connections: u64,
    handshakes: u64,
    requests: Vec<u64>,
    streams: Vec<u64>,
    tls: u64,
    alpn: Vec<String>,
    quic_conns: u64,
    quic_packets: [u64; 4],
    cost: HandshakeCost,
    retrans: u64,
    zero: u64,
    resets: u64,
    tw: [u64; 2],
}

/// One of the report's tables: its title, column names and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableData {
    pub title: &'static str,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// Per-connection numbers kept for the tables: a few words each (the ladder rows are not).
#[derive(Debug, Default)]
pub struct Report {
    conns: Vec<ConnSummary>,
    quic: Vec<QuicSummary>,
    pairs: BTreeMap<(IpAddr, SocketAddr), PairAcc>,
    stats: Stats,
    link_types: Vec<u32>,
    format: Option<String>,
}

/// The JSON document (see the crate documentation for the schema).
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub schema: &'static str,
    pub format: Option<&'a str>,
    pub link_types: &'a [u32],
    pub stats: &'a Stats,
    pub connections: &'a [ConnSummary],
    pub quic: &'a [QuicSummary],
    pub pairs: Vec<PairSummary>,
}

fn per_conn(v: &[u64]) -> PerConnection {
    if v.is_empty() {
        return PerConnection::default();
    }
    PerConnection {
        min: v.iter().copied().min().unwrap_or(0),
        max: v.iter().copied().max().unwrap_or(0),
        mean: v.iter().sum::<u64>() as f64 / v.len() as f64,
    }
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Adds a connection (that passed the filter).
    pub fn add(&mut self, s: &ConnSummary) {
        let p = self.pairs.entry((s.client.ip(), s.server)).or_default();
        p.connections += 1;
        p.handshakes += u64::from(s.handshake_seen);
        p.requests.push(s.http1_requests);
        if s.h2_streams > 0 || s.protocol == crate::decode::Protocol::H2c {
            p.streams.push(s.h2_streams);
        }
        if let Some(tls) = &s.tls {
            p.tls += tls.client_hellos;
            let a = tls
                .alpn
                .clone()
                .or_else(|| tls.alpn_offered.first().cloned());
            if let Some(a) = a {
                if !p.alpn.contains(&a) {
                    p.alpn.push(a);
                }
            }
        }
        if let Some(h) = s.costs.handshake {
            p.cost.tcp_us += h.us;
            p.cost.tcp_rtts += h.rtts.unwrap_or(0.0);
        }
        if let Some(t) = s.costs.tls {
            p.cost.tls_us += t.us;
            p.cost.tls_rtts += t.rtts.unwrap_or(0.0);
        }
        p.retrans += s.retransmissions;
        p.zero += s.zero_windows;
        p.resets += s.resets;
        match s.time_wait.as_deref() {
            Some("client") => p.tw[0] += 1,
            Some("server") => p.tw[1] += 1,
            _ => {}
        }
        self.conns.push(s.clone());
    }

    /// Adds a QUIC flow (that passed the filter).
    pub fn add_quic(&mut self, q: &QuicSummary) {
        let p = self.pairs.entry((q.client.ip(), q.server)).or_default();
        p.quic_conns += q.connections;
        p.quic_packets[0] += q.initial;
        p.quic_packets[1] += q.zero_rtt;
        p.quic_packets[2] += q.handshake;
        p.quic_packets[3] += q.retry;
        self.quic.push(q.clone());
    }

    /// Sets the capture's counters, container format and link types.
    pub fn set_capture(&mut self, stats: Stats, format: Option<String>, link_types: Vec<u32>) {
        self.stats = stats;
        self.format = format;
        self.link_types = link_types;
    }

    /// The connections added, in the order added.
    pub fn connections(&self) -> &[ConnSummary] {
        &self.conns
    }

    /// The host pairs, ordered by client address then server socket.
    pub fn pairs(&self) -> Vec<PairSummary> {
        self.pairs
            .iter()
            .map(|((client, server), p)| PairSummary {
                client: *client,
                server: *server,
                connections: p.connections,
                handshakes: p.handshakes,
                http1_requests: p.requests.iter().sum(),
                requests_per_connection: per_conn(&p.requests),
                h2_streams: p.streams.iter().sum(),
                streams_per_connection: (!p.streams.is_empty()).then(|| per_conn(&p.streams)),
                tls_handshakes: p.tls,
                alpn: p.alpn.clone(),
                quic_connections: p.quic_conns,
                quic_packets: p.quic_packets,
                handshake_cost: p.cost,
                retransmissions: p.retrans,
                zero_windows: p.zero,
                resets: p.resets,
                time_wait_client: p.tw[0],
                time_wait_server: p.tw[1],
            })
            .collect()
    }

    /// The JSON document.
    pub fn json(&self) -> String {
        let mut conns = self.conns.clone();
        conns.sort_by_key(|c| c.id);
        let doc = JsonReport {
            schema: SCHEMA,
            format: self.format.as_deref(),
            link_types: &self.link_types,
            stats: &self.stats,
            connections: &conns,
            quic: &self.quic,
            pairs: self.pairs(),
        };
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The tables: connections (by number), QUIC flows, host pairs.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.table_data().iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(t.title);
            out.push('\n');
            out.push_str(&table(&t.header, &t.rows));
        }
        out
    }

    /// The tables [`tables`](Self::tables) prints, as data: connections, QUIC flows, host
    /// pairs (those that have rows).
    pub fn table_data(&self) -> Vec<TableData> {
        let mut out = Vec::new();
        let mut conns: Vec<&ConnSummary> = self.conns.iter().collect();
        conns.sort_by_key(|c| c.id);
        if !conns.is_empty() {
            let title = "connections (phases in RTTs; RTT = SYN to the ACK of SYN-ACK)";
            let head = vec![
                "#",
                "client",
                "server",
                "proto",
                "RTT ms",
                "handshake",
                "TLS",
                "req→1st byte",
                "response",
                "close",
                "HTTP/1 reqs",
                "h2 streams",
                "retrans",
                "zero win",
                "RST",
                "TIME-WAIT",
            ];
            let rows: Vec<Vec<String>> = conns
                .iter()
                .map(|c| {
                    let k = &c.costs;
                    vec![
                        c.id.to_string(),
                        c.client.to_string(),
                        c.server.to_string(),
                        c.protocol.name().to_owned(),
                        c.rtt_us.map_or("-".into(), ms),
                        rtts(k.handshake.and_then(|p| p.rtts)),
                        rtts(k.tls.and_then(|p| p.rtts)),
                        rtts(k.request_to_first_byte.and_then(|p| p.rtts)),
                        rtts(k.response.and_then(|p| p.rtts)),
                        rtts(k.close.and_then(|p| p.rtts)),
                        c.http1_requests.to_string(),
                        c.h2_streams.to_string(),
                        c.retransmissions.to_string(),
                        c.zero_windows.to_string(),
                        c.resets.to_string(),
                        c.time_wait.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out.push(TableData {
                title,
                header: head,
                rows,
            });
        }
        if !self.quic.is_empty() {
            let title = "QUIC flows (long-header packets)";
            let head = vec![
                "client",
                "server",
                "connections",
                "Initial",
                "0-RTT",
                "Handshake",
                "Retry",
                "datagrams",
            ];
            let rows: Vec<Vec<String>> = self
                .quic
                .iter()
                .map(|q| {
                    vec![
                        q.client.to_string(),
                        q.server.to_string(),
                        q.connections.to_string(),
                        q.initial.to_string(),
                        q.zero_rtt.to_string(),
                        q.handshake.to_string(),
                        q.retry.to_string(),
                        q.datagrams.to_string(),
                    ]
                })
                .collect();
            out.push(TableData {
                title,
                header: head,
                rows,
            });
        }
        let pairs = self.pairs();
        if !pairs.is_empty() {
            let title = "per host pair";
            let head = vec![
                "client",
                "server",
                "connections",
                "handshakes",
                "HTTP/1 reqs",
                "reqs/conn",
                "h2 streams",
                "streams/conn",
                "TLS handshakes",
                "QUIC conns",
                "handshakes cost",
            ];
            let rows: Vec<Vec<String>> = pairs
                .iter()
                .map(|p| {
                    let rpc = &p.requests_per_connection;
                    let spc = p.streams_per_connection.map_or("-".to_owned(), |s| {
                        format!("{:.1} ({}–{})", s.mean, s.min, s.max)
                    });
                    let mut cost = format!(
                        "{} ms ({:.1} RTT)",
                        ms(p.handshake_cost.tcp_us),
                        p.handshake_cost.tcp_rtts
                    );
                    if p.handshake_cost.tls_us > 0 {
                        let _ = write!(
                            cost,
                            " + TLS {} ms ({:.1} RTT)",
                            ms(p.handshake_cost.tls_us),
                            p.handshake_cost.tls_rtts
                        );
                    }
                    let mut tls = p.tls_handshakes.to_string();
                    if !p.alpn.is_empty() {
                        let _ = write!(tls, " ({})", p.alpn.join(","));
                    }
                    vec![
                        p.client.to_string(),
                        p.server.to_string(),
                        p.connections.to_string(),
                        p.handshakes.to_string(),
                        p.http1_requests.to_string(),
                        if p.connections == 0 {
                            "-".into()
                        } else {
                            format!("{:.1} ({}–{})", rpc.mean, rpc.min, rpc.max)
                        },
                        p.h2_streams.to_string(),
                        spc,
                        tls,
                        p.quic_connections.to_string(),
                        cost,
                    ]
                })
                .collect();
            out.push(TableData {
                title,
                header: head,
                rows,
            });
        }
        out
    }

    /// The one-line summary of the capture.
    pub fn capture_line(&self, name: &str) -> String {
        let s = &self.stats;
        let mut t = format!(
            "{name}: {}, {} frames",
            self.format.as_deref().unwrap_or("capture"),
            s.frames
        );
        if !self.link_types.is_empty() {
            let names: Vec<String> = self.link_types.iter().map(|l| link_name(*l)).collect();
            let _ = write!(t, " ({})", names.join(", "));
        }
        let _ = write!(
            t,
            ", {} TCP segments, {} UDP datagrams; {}, {}",
            s.tcp_segments,
            s.udp_datagrams,
            plural(self.conns.len() as u64, "TCP connection"),
            plural(self.quic.len() as u64, "QUIC flow")
        );
        let d = &s.drops;
        if d.total() > 0 {
            let mut why = Vec::new();
            for (n, what) in [
                (d.unsupported_link, "of an unsupported link type"),
                (d.link_truncated, "cut inside the link header"),
                (d.not_ip, "not IP"),
                (d.snap_truncated, "cut by the snap length"),
                (d.bad_ip, "with a malformed IP header"),
                (d.fragments, "IP fragments"),
                (d.bad_tcp, "with a malformed TCP header"),
                (d.bad_udp, "with a malformed UDP header"),
            ] {
                if n > 0 {
                    why.push(format!("{n} {what}"));
                }
            }
            let _ = write!(t, "; {} not analyzed: {}", d.total(), why.join(", "));
        }
        t
    }
}

/// A link type's name (see [`crate::capture::linktype`]).
pub fn link_name(l: u32) -> String {
    use crate::capture::linktype::*;
    match l {
        NULL => "BSD loopback".into(),
        ETHERNET => "Ethernet".into(),
        DLT_RAW_12 | DLT_RAW_14 | RAW => "raw IP".into(),
        IPV4 => "raw IPv4".into(),
        IPV6 => "raw IPv6".into(),
        LOOP => "OpenBSD loopback".into(),
        LINUX_SLL => "Linux cooked".into(),
        LINUX_SLL2 => "Linux cooked v2".into(),
        other => format!("link type {other}"),
    }
}

/// A text table: headers, then rows, columns padded (numbers right-aligned).
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let n = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let numeric = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_digit()) && !s.contains(':') && !s.contains(' ')
    };
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if numeric(c) {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
            l.push_str("  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
