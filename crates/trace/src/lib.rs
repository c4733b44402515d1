//! Traces drawn for humans: the ladder of a connection's segments and states, and what real
//! captures show — `synack trace`.
//!
//! - [`ladder`]: synack's own traces (the [`TraceRecord`](synack_tcp::TraceRecord)s of its
//!   endpoints) drawn as a ladder, with the phases of the first connection; the demo uses it.
//! - [`capture`]: pcap and pcapng files (any of tcpdump's, Wireshark's, `synack --pcap`'s), and
//!   the link-layer headers before IP (Ethernet, Linux cooked v1 and v2, raw IP, loopback).
//! - [`decode`]: what the payload carries — HTTP/1.1 request and status lines, HTTP/2 frames,
//!   TLS records and hellos, QUIC long headers — for annotating ladders.
//! - [`Analyzer`]: a capture, packet by packet, into [`ConnTrace`]s (one per TCP connection:
//!   its ladder of handshake and close, each side's inferred states, the phase costs in RTTs,
//!   retransmissions, zero windows, RSTs, the TIME-WAIT side, HTTP requests and streams, TLS)
//!   and [`QuicSummary`]s, in bounded memory: data segments between handshake and close are
//!   counted, not kept, and connections are handed out as they finish.
//! - [`report`]: the ladders, tables per connection and per host pair, and JSON.
//! - [`live`]: capturing from an interface (Linux `AF_PACKET`).
//! - [`html`]: the report as one self-contained HTML page (`--html`): tables, a sequence
//!   diagram per connection, plots over time, waterfalls of calls.
//!
//! ```no_run
//! use synack_trace::{capture::CaptureReader, report, Analyzer};
//!
//! let file = std::fs::File::open("capture.pcapng").unwrap();
//! let mut frames = CaptureReader::new(std::io::BufReader::new(file)).unwrap();
//! let mut analyzer = Analyzer::new();
//! while let Some(frame) = frames.next_frame() {
//!     analyzer.push_frame(&frame.unwrap());
//! }
//! let done = analyzer.finish();
//! let mut rep = report::Report::new();
//! for c in &done.connections {
//!     print!("{}", report::connection_block(c, true, &report::Filter::default(), done.stats.first_time));
//!     rep.add(&c.summary);
//! }
//! print!("{}", rep.tables());
//! ```
//!
//! # How a capture is read
//!
//! A TCP connection is a four-tuple from a SYN on (a SYN with a new ISN on the same
//! four-tuple starts the next one, RFC 9293 §3.4.1); without its SYN in the capture, the side
//! with the higher port is taken as the client. Each side's state follows RFC 9293 §3.3.2 from
//! the segments it sends and receives, both at the time the capture saw them. A segment is a
//! retransmission when part of its sequence range was seen before in its direction. The RTT is
//! the time from the client's SYN to its ACK of the SYN-ACK, which is one round trip wherever
//! the capture was taken; the phases are measured in it. Payload is decoded in sequence order
//! (out-of-order segments are held, up to 256 KiB per direction). Checksums are not verified
//! (captures on a sending host show them before offload fills them in).
//!
//! # JSON schema (`synack trace --json`, schema `synack-trace/1`)
//!
//! Times are microseconds: `*_us` are durations; `milestones` are microseconds since the
//! epoch (the capture's clock). A missing value is `null`.
//!
//! ```text
//! {
//!   "schema": "synack-trace/1",
//!   "format": "pcap" | "pcapng",
//!   "link_types": [1, 276, …],                 // LINKTYPE_* numbers seen
//!   "stats": { "frames", "ip_packets", "tcp_segments", "udp_datagrams", "other_ip",
//!              "first_time", "last_time",
//!              "drops": { "unsupported_link", "link_truncated", "not_ip", "snap_truncated",
//!                         "bad_ip", "fragments", "bad_tcp", "bad_udp" } },
//!   "connections": [ {                         // TCP, by "id" (1, 2, … in order of first packet)
//!       "id", "client": "ip:port", "server": "ip:port", "handshake_seen": bool,
//!       "rtt_us",
//!       "milestones": { "first_packet", "last_packet", "syn", "syn_ack", "handshake_ack",
//!                       "client_hello", "tls_done", "first_request", "first_response",
//!                       "last_response", "close_start", "closed" },
//!       "costs": { "handshake" | "tls" | "request_to_first_byte" | "response" | "close":
//!                    { "us", "rtts" } | null,
//!                  "total": { "us", "rtts" } },
//!       "client_state", "server_state",        // RFC 9293 names: "TIME-WAIT", "CLOSED", …
//!       "active_closer", "time_wait": "client" | "server" | null, "reset": bool,
//!       "client_to_server", "server_to_client": { "segments", "data_segments", "bytes",
//!                         "retransmissions", "zero_windows", "resets" },
//!       "retransmissions", "zero_windows", "resets",
//!       "protocol": "unknown" | "http1" | "h2c" | "tls" | "other",
//!       "http1_requests", "http1_responses", "h2_streams", "h2_frames",
//!       "tls": null | { "client_hellos", "server_hellos", "sni", "alpn_offered": [..],
//!                       "alpn", "version", "client_records", "server_records" },
//!                       // records: [ChangeCipherSpec, Alert, Handshake, ApplicationData]
//!       "undecoded_gaps" } ],
//!   "quic": [ { "client", "server", "connections", "initial", "zero_rtt", "handshake",
//!               "retry", "datagrams", "first_time", "last_time" } ],
//!   "pairs": [ {                               // per client address and server socket
//!       "client": "ip", "server": "ip:port", "connections", "handshakes",
//!       "http1_requests", "requests_per_connection": { "min", "mean", "max" },
//!       "h2_streams", "streams_per_connection": null | { "min", "mean", "max" },
//!       "tls_handshakes", "alpn": [..], "quic_connections",
//!       "quic_packets": [Initial, 0-RTT, Handshake, Retry],
//!       "handshake_cost": { "tcp_us", "tcp_rtts", "tls_us", "tls_rtts" },
//!       "retransmissions", "zero_windows", "resets",
//!       "time_wait_client", "time_wait_server" } ]
//! }
//! ```
//!
//! Filters (`--conn`, `--port`, `--host`, `--only`) apply to the JSON as to the tables.

pub mod analyze;
pub mod capture;
pub mod conn;
pub mod decode;
pub mod html;
pub mod ladder;
pub mod live;
pub mod quic_ladder;
pub mod report;

pub use analyze::{Analyzer, Drops, Finished, QuicSummary, Stats};
pub use conn::{ConnSummary, ConnTrace, Phase, RowKind, TraceRow};
pub use report::{Filter, Only, Report};
