//! Counters of the client and of the server, and their JSON form.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a [`Client`](crate::Client) did, as counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Connections whose TCP handshake completed (each one cost a handshake).
    pub connections_opened: u64,
    /// Completed TCP handshakes, as the connector reported them (equal to
    /// `connections_opened`: kept apart so a test can cross-check it with a TCP trace).
    pub handshakes: u64,
    /// Total time spent in handshakes (connect calls that succeeded).
    pub handshake_time: Duration,
    /// Connect attempts that failed or timed out.
    pub connect_errors: u64,
    /// Requests sent (a retried request counts each time it is sent).
    pub requests: u64,
    /// Requests that got a complete response.
    pub responses: u64,
    /// Requests sent on a connection that had already carried one (no handshake paid).
    pub reused: u64,
    /// Requests resent on a fresh connection after a reused one failed before any response
    /// byte (idempotent methods only).
    pub retries: u64,
    /// Requests that failed with an error returned to the caller.
    pub failures: u64,
    /// Of `failures`: non-idempotent requests whose connection failed after they were sent
    /// ([`Error::MaybeProcessed`](crate::Error::MaybeProcessed)).
    pub maybe_processed: u64,
    /// Idle connections found closed by the peer (FIN or RST) and dropped before reuse.
    pub peer_closed: u64,
    /// Idle connections retired before the server's `Keep-Alive: timeout` ran out.
    pub retired_keepalive: u64,
    /// Connections retired because the server's `Keep-Alive: max` or `Connection: close`
    /// said no more requests.
    pub retired_by_server: u64,
    /// Idle connections closed by the client's own idle timeout or idle limit.
    pub evicted_idle: u64,
    /// Requests that waited in the pool's queue for a connection.
    pub pool_waits: u64,
    /// Of those, the ones that gave up after `pool_wait_timeout`.
    pub pool_wait_timeouts: u64,
    /// Of `retries`: idempotent requests resent after their connection failed before a
    /// response (the HTTP/1.1 keep-alive race, an HTTP/2 connection lost).
    pub retries_idempotent: u64,
    /// Of `retries`: requests resent because a GOAWAY said the server did not process them
    /// (a stream above its last-stream-id, or one opened after it; RFC 9113 §6.8), any
    /// method.
    pub retries_goaway: u64,
    /// Of `retries`: requests resent because the server refused their stream
    /// (`RST_STREAM` with `REFUSED_STREAM`: not processed, RFC 9113 §8.7), any method.
    pub retries_refused: u64,
    /// Of `connections_opened`: connections that speak HTTP/2 (prior knowledge or ALPN `h2`).
    pub h2_connections: u64,
    /// HTTP/2 streams opened: one per HTTP/2 request sent (a resent request counts again).
    pub h2_streams: u64,
    /// Most streams the client had in flight at once on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u64,
    /// HTTP/2 requests that waited for a stream because every connection to their origin was
    /// at the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §5.1.2, §9.1).
    pub h2_stream_waits: u64,
    /// GOAWAY frames received (RFC 9113 §6.8).
    pub goaways_received: u64,
    /// `RST_STREAM` frames received with `REFUSED_STREAM` (RFC 9113 §8.7).
    pub refused_streams: u64,
    /// HTTP/2 connections closed because a PING went unanswered (the keep-alive timeout).
    pub ping_timeouts: u64,
    /// Completed TLS handshakes (one per `https://` connection, after its TCP handshake).
    pub tls_handshakes: u64,
    /// Total time spent in TLS handshakes.
    pub tls_handshake_time: Duration,
    /// TLS handshakes that failed (a certificate not accepted, no common protocol, ...);
    /// also counted in `connect_errors`.
    pub tls_failures: u64,
}

impl Metrics {
    /// Share of requests sent on a reused connection, in [0, 1].
    pub fn reuse_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.reused as f64 / self.requests as f64
        }
    }

    /// Mean requests sent per connection opened.
    pub fn requests_per_connection(&self) -> f64 {
        if self.connections_opened == 0 {
            0.0
        } else {
            self.requests as f64 / self.connections_opened as f64
        }
    }

    /// The metrics as one JSON object on one line.
    pub fn to_json(&self) -> String {
        // The HTTP/2 and TLS counters follow the HTTP/1.1 ones, so that the line starts as
        // it always did.
        let mut s = String::from("{");
        let ints: [(&str, u64); 15] = [
            ("connections_opened", self.connections_opened),
            ("handshakes", self.handshakes),
            ("connect_errors", self.connect_errors),
            ("requests", self.requests),
            ("responses", self.responses),
            ("reused", self.reused),
            ("retries", self.retries),
            ("failures", self.failures),
            ("maybe_processed", self.maybe_processed),
            ("peer_closed", self.peer_closed),
            ("retired_keepalive", self.retired_keepalive),
            ("retired_by_server", self.retired_by_server),
            ("evicted_idle", self.evicted_idle),
            ("pool_waits", self.pool_waits),
            ("pool_wait_timeouts", self.pool_wait_timeouts),
        ];
        for (i, (k, v)) in ints.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{k}\":{v}");
        }
        let _ = write!(
            s,
            ",\"handshake_ms\":{:.3},\"requests_per_connection\":{:.3},\"reuse_ratio\":{:.4}",
            self.handshake_time.as_secs_f64() * 1000.0,
            self.requests_per_connection(),
            self.reuse_ratio()
        );
        let more: [(&str, u64); 12] = [
            ("retries_idempotent", self.retries_idempotent),
            ("retries_goaway", self.retries_goaway),
            ("retries_refused", self.retries_refused),
            ("h2_connections", self.h2_connections),
            ("h2_streams", self.h2_streams),
            ("h2_max_concurrent_streams", self.h2_max_concurrent_streams),
            ("h2_stream_waits", self.h2_stream_waits),
            ("goaways_received", self.goaways_received),
            ("refused_streams", self.refused_streams),
            ("ping_timeouts", self.ping_timeouts),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_failures", self.tls_failures),
        ];
        for (k, v) in more {
            let _ = write!(s, ",\"{k}\":{v}");
        }
        let _ = write!(
            s,
            ",\"tls_handshake_ms\":{:.3}}}",
            self.tls_handshake_time.as_secs_f64() * 1000.0
        );
        s
    }
}

/// The client's live counters.
#[derive(Debug, Default)]
pub(crate) struct ClientCounters {
    pub connections_opened: AtomicU64,
    pub handshake_us: AtomicU64,
    pub connect_errors: AtomicU64,
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    pub reused: AtomicU64,
    pub retries: AtomicU64,
    pub failures: AtomicU64,
    pub maybe_processed: AtomicU64,
    pub peer_closed: AtomicU64,
    pub retired_keepalive: AtomicU64,
    pub retired_by_server: AtomicU64,
    pub evicted_idle: AtomicU64,
    pub pool_waits: AtomicU64,
    pub pool_wait_timeouts: AtomicU64,
    pub retries_idempotent: AtomicU64,
    pub retries_goaway: AtomicU64,
    pub retries_refused: AtomicU64,
    pub h2_connections: AtomicU64,
    pub h2_streams: AtomicU64,
    pub h2_max_concurrent_streams: AtomicU64,
    pub h2_stream_waits: AtomicU64,
    pub goaways_received: AtomicU64,
    pub refused_streams: AtomicU64,
    pub ping_timeouts: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_us: AtomicU64,
    pub tls_failures: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl ClientCounters {
    pub(crate) fn snapshot(&self) -> Metrics {
        let opened = get(&self.connections_opened);
        Metrics {
            connections_opened: opened,
            handshakes: opened,
            handshake_time: Duration::from_micros(get(&self.handshake_us)),
            connect_errors: get(&self.connect_errors),
            requests: get(&self.requests),
            responses: get(&self.responses),
            reused: get(&self.reused),
            retries: get(&self.retries),
            failures: get(&self.failures),
            maybe_processed: get(&self.maybe_processed),
            peer_closed: get(&self.peer_closed),
            retired_keepalive: get(&self.retired_keepalive),
            retired_by_server: get(&self.retired_by_server),
            evicted_idle: get(&self.evicted_idle),
            pool_waits: get(&self.pool_waits),
            pool_wait_timeouts: get(&self.pool_wait_timeouts),
            retries_idempotent: get(&self.retries_idempotent),
            retries_goaway: get(&self.retries_goaway),
            retries_refused: get(&self.retries_refused),
            h2_connections: get(&self.h2_connections),
            h2_streams: get(&self.h2_streams),
            h2_max_concurrent_streams: get(&self.h2_max_concurrent_streams),
            h2_stream_waits: get(&self.h2_stream_waits),
            goaways_received: get(&self.goaways_received),
            refused_streams: get(&self.refused_streams),
            ping_timeouts: get(&self.ping_timeouts),
            tls_handshakes: get(&self.tls_handshakes),
            tls_handshake_time: Duration::from_micros(get(&self.tls_handshake_us)),
            tls_failures: get(&self.tls_failures),
        }
    }
}

/// What a [`Server`](crate::server) did, as counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections still open.
    pub active_connections: u64,
    /// Requests handed to the service.
    pub requests: u64,
    /// Most requests served on one connection.
    pub max_requests_per_connection: u64,
    /// Connections closed by the idle timeout (`keepalive_timeout`) between requests.
    pub closed_idle: u64,
    /// Connections closed after their last allowed request (`keepalive_requests`).
    pub closed_max_requests: u64,
    /// Connections closed after a request past their maximum life (`keepalive_time`).
    pub closed_max_time: u64,
    /// Connections closed because the client asked (`Connection: close`, or HTTP/1.0).
    pub closed_by_client_request: u64,
    /// Connections the client closed (its FIN) between requests.
    pub closed_by_peer: u64,
    /// Connections closed because a request head did not arrive in `header_read_timeout`.
    pub header_timeouts: u64,
    /// Requests refused before the service saw them, or whose body was cut (malformed, or
    /// over `client_max_body_size`): answered with a 4xx and `Connection: close`.
    pub rejected_requests: u64,
    /// Connections the client reset or cut off in the middle of a request or response (its
    /// RST, or its FIN before the whole exchange): the client's doing, as when a load
    /// generator stops with requests in flight.
    pub aborted_by_peer: u64,
    /// Connections that ended with any other HTTP or I/O error.
    pub errors: u64,
    /// Connections that spoke HTTP/2: h2c with prior knowledge, or `h2` chosen by ALPN.
    pub h2_connections: u64,
    /// HTTP/2 streams the clients opened (HEADERS frames that opened one), including those
    /// refused or reset before the service saw them.
    pub h2_streams: u64,
    /// Streams refused with `REFUSED_STREAM` (RFC 9113 §8.7: not processed, safe to retry)
    /// because they came after their connection's last allowed one (`keepalive_requests`,
    /// `keepalive_time`).
    pub h2_refused_streams: u64,
    /// `RST_STREAM` frames received from clients.
    pub h2_resets_received: u64,
    /// `RST_STREAM` frames sent.
    pub h2_resets_sent: u64,
    /// `GOAWAY` frames sent: a graceful close sends two (RFC 9113 §6.8).
    pub goaways_sent: u64,
    /// Of those, `GOAWAY`s with an error code (`ENHANCE_YOUR_CALM`, `PROTOCOL_ERROR`, ...):
    /// the client broke a rule or a limit.
    pub goaway_errors: u64,
    /// `PING` frames sent (liveness checks, and the round trip of a graceful close).
    pub h2_pings_sent: u64,
    /// HTTP/2 connections closed because a `PING` went unanswered (`ping_timeout`).
    pub h2_ping_timeouts: u64,
    /// Connections closed because the client took no response bytes for `send_timeout`
    /// while responses waited for it.
    pub send_timeouts: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: u64,
    /// TLS connections whose ALPN chose `h2`.
    pub alpn_h2: u64,
    /// TLS connections whose ALPN chose `http/1.1`.
    pub alpn_http11: u64,
    /// TLS connections without ALPN (served as HTTP/1.1).
    pub alpn_none: u64,
}

impl ServerStats {
    /// Mean requests per accepted connection.
    pub fn requests_per_connection(&self) -> f64 {
        if self.connections == 0 {
            0.0
        } else {
            self.requests as f64 / self.connections as f64
        }
    }

    /// The counters as one JSON object on one line.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"connections\":{},\"active_connections\":{},\"requests\":{},\
             \"max_requests_per_connection\":{},\"closed_idle\":{},\"closed_max_requests\":{},\
             \"closed_max_time\":{},\"closed_by_client_request\":{},\"closed_by_peer\":{},\
             \"header_timeouts\":{},\"rejected_requests\":{},\"aborted_by_peer\":{},\"errors\":{},\
             \"requests_per_connection\":{:.3},{}}}",
            self.connections,
            self.active_connections,
            self.requests,
            self.max_requests_per_connection,
            self.closed_idle,
            self.closed_max_requests,
            self.closed_max_time,
            self.closed_by_client_request,
            self.closed_by_peer,
            self.header_timeouts,
            self.rejected_requests,
            self.aborted_by_peer,
            self.errors,
            self.requests_per_connection(),
            self.h2_tls_json()
        )
    }

    /// The HTTP/2 and TLS counters, as JSON members.
    fn h2_tls_json(&self) -> String {
        let fields: [(&str, u64); 15] = [
            ("h2_connections", self.h2_connections),
            ("h2_streams", self.h2_streams),
            ("h2_refused_streams", self.h2_refused_streams),
            ("h2_resets_received", self.h2_resets_received),
            ("h2_resets_sent", self.h2_resets_sent),
            ("goaways_sent", self.goaways_sent),
            ("goaway_errors", self.goaway_errors),
            ("h2_pings_sent", self.h2_pings_sent),
            ("h2_ping_timeouts", self.h2_ping_timeouts),
            ("send_timeouts", self.send_timeouts),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_handshake_failures", self.tls_handshake_failures),
            ("alpn_h2", self.alpn_h2),
            ("alpn_http11", self.alpn_http11),
            ("alpn_none", self.alpn_none),
        ];
        let mut s = String::new();
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{k}\":{v}");
        }
        s
    }
}

/// The server's live counters.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    pub connections: AtomicU64,
    pub active_connections: AtomicU64,
    pub requests: AtomicU64,
    pub max_requests_per_connection: AtomicU64,
    pub closed_idle: AtomicU64,
    pub closed_max_requests: AtomicU64,
    pub closed_max_time: AtomicU64,
    pub closed_by_client_request: AtomicU64,
    pub closed_by_peer: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub rejected_requests: AtomicU64,
    pub aborted_by_peer: AtomicU64,
    pub errors: AtomicU64,
    pub h2_connections: AtomicU64,
    pub h2_streams: AtomicU64,
    pub h2_refused_streams: AtomicU64,
    pub h2_resets_received: AtomicU64,
    pub h2_resets_sent: AtomicU64,
    pub goaways_sent: AtomicU64,
    pub goaway_errors: AtomicU64,
    pub h2_pings_sent: AtomicU64,
    pub h2_ping_timeouts: AtomicU64,
    pub send_timeouts: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub alpn_h2: AtomicU64,
    pub alpn_http11: AtomicU64,
    pub alpn_none: AtomicU64,
}

impl ServerCounters {
    pub(crate) fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: get(&self.connections),
            active_connections: get(&self.active_connections),
            requests: get(&self.requests),
            max_requests_per_connection: get(&self.max_requests_per_connection),
            closed_idle: get(&self.closed_idle),
            closed_max_requests: get(&self.closed_max_requests),
            closed_max_time: get(&self.closed_max_time),
            closed_by_client_request: get(&self.closed_by_client_request),
            closed_by_peer: get(&self.closed_by_peer),
            header_timeouts: get(&self.header_timeouts),
            rejected_requests: get(&self.rejected_requests),
            aborted_by_peer: get(&self.aborted_by_peer),
            errors: get(&self.errors),
            h2_connections: get(&self.h2_connections),
            h2_streams: get(&self.h2_streams),
            h2_refused_streams: get(&self.h2_refused_streams),
            h2_resets_received: get(&self.h2_resets_received),
            h2_resets_sent: get(&self.h2_resets_sent),
            goaways_sent: get(&self.goaways_sent),
            goaway_errors: get(&self.goaway_errors),
            h2_pings_sent: get(&self.h2_pings_sent),
            h2_ping_timeouts: get(&self.h2_ping_timeouts),
            send_timeouts: get(&self.send_timeouts),
            tls_handshakes: get(&self.tls_handshakes),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            alpn_h2: get(&self.alpn_h2),
            alpn_http11: get(&self.alpn_http11),
            alpn_none: get(&self.alpn_none),
        }
    }
}
