//! The client's HTTP/2 pool on the simulated network (50 ms RTT), in virtual time, against
//! HTTP/2 servers made in the test: how many connections concurrent calls take, what the
//! peer's `SETTINGS_MAX_CONCURRENT_STREAMS` does to them (wait, or open more connections),
//! and that GOAWAY, `REFUSED_STREAM`, resets and unanswered PINGs lose no request and
//! duplicate none (RFC 9113 §5.1.2, §6.8, §8.7, §9.1).

mod common;
mod h2_client_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use h2_client_support::*;
use http::{Method, Request};
use synack_http::{
    Client, ClientConfig, Http2ClientConfig, Metrics, Origin, PoolConfig, Protocol, RequestInfo,
    RetryReason,
};
use synack_stack::net::Stack;
use tokio::task::JoinSet;
use tokio::time::Instant;

fn info(r: &http::Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}

fn addr() -> SocketAddr {
    format!("{SERVER}:80").parse().unwrap()
}

fn origin() -> Origin {
    Origin::parse(&url("/")).unwrap().1
}

/// A client speaking HTTP/2 with prior knowledge.
fn h2_config() -> ClientConfig {
    ClientConfig {
        http2: Http2ClientConfig {
            prior_knowledge: true,
            ..Http2ClientConfig::default()
        },
        ..ClientConfig::default()
    }
}

/// Sends `n` requests at once (`POST` with a body when `post`), and returns each one's
/// outcome, in order.
async fn concurrent(
    c: &Client,
    n: usize,
    path: &str,
    post: bool,
) -> Vec<Result<http::Response<Bytes>, synack_http::Error>> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let path = path.to_owned();
        set.spawn(async move {
            let b = Request::builder()
                .method(if post { Method::POST } else { Method::GET })
                .uri(url(&path));
            let body = if post {
                Bytes::from(format!("call {i}"))
            } else {
                Bytes::new()
            };
            (i, c.request(b.body(body).unwrap()).await)
        });
    }
    let mut out: Vec<_> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.unwrap();
        out[i] = Some(r);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn all_ok(rs: Vec<Result<http::Response<Bytes>, synack_http::Error>>) -> Vec<RequestInfo> {
    rs.into_iter()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.status(), 200);
            info(&r)
        })
        .collect()
}

fn tcp(a: &Stack, b: &Stack) -> (u64, u64) {
    (a.tcp_stats().connects, b.tcp_stats().accepted)
}

/// Every send accounted for: each one the server did not process was resent, once per
/// GOAWAY or refusal.
fn nothing_lost_or_doubled(m: &Metrics, served: u64) {
    assert_eq!(
        m.requests,
        served + m.retries_goaway + m.retries_refused,
        "{m:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_calls_open_exactly_one_connection() {
    let (_net, a, b) = two_hosts(21, RTT);
    let srv = hyper_h2_server(&b, addr(), H2ServerConfig::default()).await;
    let c = client(&a, h2_config());
    let t0 = Instant::now();
    let infos = all_ok(concurrent(&c, 100, "/delay/10", false).await);
    // The handshake, then every call in one round trip (and the server's 10 ms).
    assert_eq!(t0.elapsed(), RTT * 2 + Duration::from_millis(10));
    assert!(infos
        .iter()
        .all(|i| i.connection == 1 && i.protocol == Protocol::Http2));
    assert_eq!(infos.iter().filter(|i| i.handshake.is_some()).count(), 1);
    assert!(
        infos.iter().all(|i| i.new_connection),
        "all waited for the handshake"
    );
    let mut nth: Vec<u64> = infos.iter().map(|i| i.request_on_connection).collect();
    nth.sort();
    assert_eq!(nth, (1..=100).collect::<Vec<_>>());
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.h2_connections), (1, 1));
    assert_eq!((m.requests, m.responses, m.h2_streams), (100, 100, 100));
    assert_eq!(m.h2_max_concurrent_streams, 100);
    assert_eq!(m.reused, 99);
    assert_eq!(
        m.retries + m.failures + m.refused_streams + m.goaways_received,
        0
    );
    assert_eq!((srv.connections(), srv.requests()), (1, 100));
    assert_eq!(srv.peak_streams(), 100);
    assert_eq!(tcp(&a, &b), (1, 1));
    let json = m.to_json();
    assert!(json.starts_with("{\"connections_opened\":1,"), "{json}");
    assert!(
        json.contains("\"h2_connections\":1,\"h2_streams\":100,"),
        "{json}"
    );

    // Later calls reuse it.
    let r = c.get(&url("/again")).await.unwrap();
    let i = info(&r);
    assert_eq!((i.connection, i.reused, i.new_connection), (1, true, false));
    assert_eq!(c.http2_connections(&origin()), 1);
    assert_eq!(c.streams_in_flight(&origin()), 0);
}

/// Server limit 10, the client not knowing it yet: it sends what it assumes (100), the
/// server refuses 90 streams (REFUSED_STREAM), and the client resends them on the same
/// connection, 10 at a time.
#[tokio::test(start_paused = true)]
async fn max_concurrent_streams_10_cold_refused_streams_are_resent_on_one_connection() {
    let (_net, a, b) = two_hosts(22, RTT);
    let config = H2ServerConfig {
        max_concurrent_streams: Some(10),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, h2_config());
    let infos = all_ok(concurrent(&c, 100, "/delay/100", false).await);
    assert!(infos.iter().all(|i| i.connection == 1));
    let refused: Vec<_> = infos.iter().filter(|i| i.retried).collect();
    assert_eq!(refused.len(), 90);
    assert!(refused
        .iter()
        .all(|i| i.retry_reasons == [RetryReason::RefusedStream]));
    let m = c.metrics();
    assert_eq!(m.connections_opened, 1);
    assert_eq!(
        (m.refused_streams, m.retries_refused, m.retries),
        (90, 90, 90)
    );
    assert_eq!((m.responses, m.failures), (100, 0));
    nothing_lost_or_doubled(&m, srv.requests());
    assert_eq!((srv.connections(), srv.requests()), (1, 100));
    assert_eq!(srv.peak_streams(), 10);
}

/// Server limit 10, known from a first call: 100 calls wait for streams on the one
/// connection (RFC 9113 §9.1), 10 in flight at a time, none refused.
#[tokio::test(start_paused = true)]
async fn max_concurrent_streams_10_known_calls_wait_for_streams_on_one_connection() {
    let (_net, a, b) = two_hosts(23, RTT);
    let config = H2ServerConfig {
        max_concurrent_streams: Some(10),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, h2_config());
    c.get(&url("/")).await.unwrap();
    let t0 = Instant::now();
    let infos = all_ok(concurrent(&c, 100, "/delay/100", false).await);
    // Ten rounds of (one round trip + 100 ms).
    assert_eq!(t0.elapsed(), (RTT + Duration::from_millis(100)) * 10);
    assert!(infos.iter().all(|i| i.connection == 1 && !i.retried));
    assert_eq!(infos.iter().filter(|i| i.waited).count(), 90);
    let m = c.metrics();
    assert_eq!(m.connections_opened, 1);
    assert_eq!(m.h2_stream_waits, 90);
    assert_eq!(m.h2_max_concurrent_streams, 10);
    assert_eq!(m.refused_streams + m.retries + m.failures, 0);
    assert_eq!((srv.connections(), srv.requests()), (1, 101));
    assert_eq!(srv.peak_streams(), 10);
    assert_eq!(tcp(&a, &b), (1, 1));
}

fn multiple(max_per_origin: usize) -> ClientConfig {
    let mut c = h2_config();
    c.http2.enable_multiple_connections = true;
    c.pool = PoolConfig {
        max_per_origin,
        ..PoolConfig::default()
    };
    c
}

/// With `enable_multiple_connections`, 100 calls against a limit of 10 take 10
/// connections, 10 streams each, all at once.
#[tokio::test(start_paused = true)]
async fn max_concurrent_streams_10_with_multiple_connections_opens_10() {
    let (_net, a, b) = two_hosts(24, RTT);
    let config = H2ServerConfig {
        max_concurrent_streams: Some(10),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, multiple(16));
    c.get(&url("/")).await.unwrap();
    let t0 = Instant::now();
    let infos = all_ok(concurrent(&c, 100, "/delay/100", false).await);
    // One handshake for the new connections, one round trip and the delay.
    assert_eq!(t0.elapsed(), RTT * 2 + Duration::from_millis(100));
    let mut per_conn = std::collections::BTreeMap::new();
    for i in &infos {
        *per_conn.entry(i.connection).or_insert(0) += 1;
    }
    assert_eq!(per_conn.len(), 10, "{per_conn:?}");
    assert!(per_conn.values().all(|&n| n == 10), "{per_conn:?}");
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.h2_connections), (10, 10));
    assert_eq!(m.refused_streams + m.retries + m.failures, 0);
    assert_eq!((srv.connections(), srv.requests()), (10, 101));
    assert_eq!(tcp(&a, &b), (10, 10));

    // Cold (the limit not known): 90 refused on the first connection, resent on 9 more.
    let (_net, a, b) = two_hosts(25, RTT);
    let config = H2ServerConfig {
        max_concurrent_streams: Some(10),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, multiple(16));
    let infos = all_ok(concurrent(&c, 100, "/delay/100", false).await);
    let conns: std::collections::BTreeSet<u64> = infos.iter().map(|i| i.connection).collect();
    assert_eq!(conns.len(), 10);
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.retries_refused), (10, 90));
    nothing_lost_or_doubled(&m, srv.requests());
    assert_eq!((srv.connections(), srv.requests()), (10, 100));

    // The pool's limit still holds: 4 connections at most, the rest wait.
    let (_net, a, b) = two_hosts(26, RTT);
    let config = H2ServerConfig {
        max_concurrent_streams: Some(10),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, multiple(4));
    c.get(&url("/")).await.unwrap();
    all_ok(concurrent(&c, 100, "/delay/100", false).await);
    assert_eq!(c.metrics().connections_opened, 4);
    assert_eq!(srv.requests(), 101);
}

/// hyper's graceful shutdown (GOAWAY 2^31-1, PING, GOAWAY last-stream-id; RFC 9113 §6.8)
/// after 50 requests on each connection, with 20 calls always in flight (GETs and POSTs):
/// every call succeeds once, the server processed exactly what the client got answers to.
#[tokio::test(start_paused = true)]
async fn graceful_goaway_mid_run_loses_and_doubles_nothing() {
    let (_net, a, b) = two_hosts(27, RTT);
    let config = H2ServerConfig {
        shutdown_after: Some(50),
        ..H2ServerConfig::default()
    };
    let srv = hyper_h2_server(&b, addr(), config).await;
    let c = client(&a, h2_config());
    let mut set = JoinSet::new();
    for lane in 0..20 {
        let c = c.clone();
        set.spawn(async move {
            let mut posts = 0;
            for k in 0..10 {
                let post = (lane + k) % 2 == 0;
                let req = Request::builder()
                    .method(if post { Method::POST } else { Method::GET })
                    .uri(url(&format!("/delay/{}", 10 * (lane % 3))))
                    .body(Bytes::from_static(b"data"))
                    .unwrap();
                let r = c.request(req).await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(r.status(), 200);
                posts += post as u64;
            }
            posts
        });
    }
    let mut posts = 0;
    while let Some(p) = set.join_next().await {
        posts += p.unwrap();
    }
    let m = c.metrics();
    assert_eq!((m.responses, m.failures, m.maybe_processed), (200, 0, 0));
    assert_eq!(srv.requests(), 200, "each call processed once");
    assert_eq!(srv.posts(), posts);
    nothing_lost_or_doubled(&m, srv.requests());
    // At least 50 requests a connection (those sent before the client saw the first GOAWAY
    // are processed too).
    assert!((2..=4).contains(&srv.goaways()), "{}", srv.goaways());
    assert_eq!(m.connections_opened, srv.connections());
    assert_eq!(m.connections_opened, srv.goaways() + 1);
    // The first GOAWAY of each shutdown; the second too if it came before the client,
    // its streams done, closed the connection.
    assert!(
        (srv.goaways()..=2 * srv.goaways()).contains(&m.goaways_received),
        "{m:?}"
    );
    // No stream was above a last-stream-id: the two-step GOAWAY let them all in.
    assert_eq!(m.retries_goaway, 0);
    assert_eq!(tcp(&a, &b), (m.connections_opened, m.connections_opened));
}

/// A one-step GOAWAY (as nginx sends after `keepalive_requests`): the server answers 30
/// streams per connection and says GOAWAY with the 30th's id; of 100 POSTs sent at once,
/// the 70 above it are resent on a new connection (they were not processed, whatever
/// their method), then 40, then 10. Each POST processed exactly once.
#[tokio::test(start_paused = true)]
async fn streams_above_the_goaway_last_stream_id_are_resent_whatever_the_method() {
    let (_net, a, b) = two_hosts(28, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::GoAwayAfter(30)).await;
    let c = client(&a, h2_config());
    let infos = all_ok(concurrent(&c, 100, "/", true).await);
    let m = c.metrics();
    assert_eq!(srv.posts(), 100, "every POST processed once");
    assert_eq!((srv.connections(), srv.goaways()), (4, 3));
    assert_eq!(m.connections_opened, 4);
    assert_eq!(m.goaways_received, 3);
    assert_eq!((m.retries_goaway, m.retries), (70 + 40 + 10, 120));
    assert_eq!((m.responses, m.failures, m.maybe_processed), (100, 0, 0));
    nothing_lost_or_doubled(&m, srv.requests());
    let mut by_conn = [0; 4];
    for i in &infos {
        by_conn[i.connection as usize - 1] += 1;
        let goaways = i.retry_reasons.len();
        assert!(i.retry_reasons.iter().all(|r| *r == RetryReason::GoAway));
        assert_eq!(goaways, i.connection as usize - 1, "one resend per GOAWAY");
        assert!(!i.closed_after || i.connection < 4);
    }
    assert_eq!(by_conn, [30, 30, 30, 10]);
}

/// A connection that got a GOAWAY takes no new stream: the next call opens a connection
/// (and was not sent on the old one, so it is no resend).
#[tokio::test(start_paused = true)]
async fn a_connection_that_got_goaway_takes_no_new_streams() {
    let (_net, a, b) = two_hosts(35, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::GoAwayAfter(1)).await;
    let c = client(&a, h2_config());
    let i = info(&c.get(&url("/1")).await.unwrap());
    assert_eq!(i.connection, 1);
    assert!(i.closed_after, "the GOAWAY came with the response");
    assert_eq!(c.http2_connections(&origin()), 0);
    for n in 2..=3 {
        let i = info(&c.get(&url("/more")).await.unwrap());
        assert_eq!((i.connection, i.retried), (n, false));
    }
    assert_eq!(
        srv.headers(),
        3,
        "one stream on each connection, none after a GOAWAY"
    );
    let m = c.metrics();
    assert_eq!(
        (m.goaways_received, m.retries, m.connections_opened),
        (3, 0, 3)
    );
}

/// The one-step GOAWAY at 2 % loss each way: TCP repairs the losses, and still every POST
/// is processed exactly once.
#[tokio::test(start_paused = true)]
async fn goaway_at_two_percent_loss_loses_and_doubles_nothing() {
    let net = synack_stack::net::SimNet::new(36);
    let a = net.add_host("client", &[ip(CLIENT)], synack_tcp::Config::default());
    let b = net.add_host("server", &[ip(SERVER)], synack_tcp::Config::default());
    let mut path = synack_stack::sim::PathConfig::delay(RTT / 2);
    path.loss = 0.02;
    net.link(&a, &b, path.clone(), path);
    let srv = raw_h2_server(&b, addr(), RawMode::GoAwayAfter(30)).await;
    let c = client(&a, h2_config());
    all_ok(concurrent(&c, 100, "/", true).await);
    let m = c.metrics();
    assert_eq!(srv.posts(), 100);
    assert_eq!((m.responses, m.failures), (100, 0));
    assert_eq!(m.connections_opened, 4);
    nothing_lost_or_doubled(&m, srv.requests());
    assert!(
        net.stats().paths.dropped_loss > 0,
        "packets were lost, and repaired"
    );
}

/// `REFUSED_STREAM` (RFC 9113 §8.7): the request was not processed, and is resent (any
/// method), on the same connection if it can take it.
#[tokio::test(start_paused = true)]
async fn refused_streams_are_resent() {
    let (_net, a, b) = two_hosts(29, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::RefuseFirst(5)).await;
    let c = client(&a, h2_config());
    let infos = all_ok(concurrent(&c, 20, "/", true).await);
    let m = c.metrics();
    assert_eq!((srv.refused(), srv.posts()), (5, 20));
    assert_eq!((m.refused_streams, m.retries_refused, m.retries), (5, 5, 5));
    assert_eq!(m.connections_opened, 1);
    assert_eq!((m.responses, m.failures), (20, 0));
    nothing_lost_or_doubled(&m, srv.requests());
    let refused: Vec<_> = infos.iter().filter(|i| i.retried).collect();
    assert_eq!(refused.len(), 5);
    assert!(refused
        .iter()
        .all(|i| i.retry_reasons == [RetryReason::RefusedStream] && i.connection == 1));
}

/// A stream reset for another reason after the server processed it: a POST gets
/// `MaybeProcessed` (not resent), a GET is resent once on another connection.
#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_failing_otherwise_may_have_been_processed() {
    let (_net, a, b) = two_hosts(30, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::ResetFirst(2)).await;
    let c = client(&a, h2_config());
    let post = Request::post(url("/order"))
        .body(Bytes::from_static(b"one"))
        .unwrap();
    let e = c.request(post).await.unwrap_err();
    assert!(e.is_maybe_processed(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("POST is not idempotent, so it was not sent again"),
        "{msg}"
    );
    assert_eq!((srv.posts(), srv.reset()), (1, 1), "it was processed, once");
    let r = c.get(&url("/x")).await.unwrap();
    let i = info(&r);
    assert_eq!(i.retry_reasons, [RetryReason::Idempotent]);
    assert_eq!(i.connection, 2, "resent on another connection");
    let m = c.metrics();
    assert_eq!(
        (m.maybe_processed, m.retries_idempotent, m.failures),
        (1, 1, 1)
    );
    assert_eq!((srv.requests(), srv.reset()), (3, 2));
}

fn pinging() -> ClientConfig {
    let mut c = h2_config();
    c.http2.keep_alive_interval = Some(Duration::from_secs(1));
    c.http2.keep_alive_timeout = Duration::from_secs(1);
    c.http2.keep_alive_while_idle = true;
    c
}

/// A connection whose PING went unanswered is closed and not reused; one whose PINGs are
/// answered stays.
#[tokio::test(start_paused = true)]
async fn a_ping_timeout_makes_the_connection_not_reused() {
    let (_net, a, b) = two_hosts(31, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::IgnorePings).await;
    let c = client(&a, pinging());
    assert_eq!(info(&c.get(&url("/")).await.unwrap()).connection, 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = c.metrics();
    assert_eq!(m.ping_timeouts, 1);
    assert_eq!(c.http2_connections(&origin()), 0);
    let i = info(&c.get(&url("/")).await.unwrap());
    assert_eq!((i.connection, i.reused, i.new_connection), (2, false, true));
    assert!(srv.pings() >= 1);
    assert_eq!((srv.connections(), srv.requests()), (2, 2));

    let (_net, a, b) = two_hosts(32, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::Normal).await;
    let c = client(&a, pinging());
    c.get(&url("/")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let i = info(&c.get(&url("/")).await.unwrap());
    assert_eq!((i.connection, i.reused), (1, true));
    assert_eq!(c.metrics().ping_timeouts, 0);
    assert!(srv.pings() >= 3, "PINGed while idle");
}

/// A server that hangs: the PINGs go unanswered, hyper closes the connection, and its
/// streams fail. The POST may have been processed (it was: not resent); the GET is resent
/// once, on a new connection (which hangs too, then a third answers).
#[tokio::test(start_paused = true)]
async fn a_ping_timeout_fails_the_streams_in_flight_by_the_rules() {
    let (_net, a, b) = two_hosts(37, RTT);
    let srv = raw_h2_server(&b, addr(), RawMode::HangFirst(2)).await;
    let mut config = pinging();
    config.http2.keep_alive_while_idle = false;
    let c = client(&a, config);
    let t0 = Instant::now();
    let post = Request::post(url("/order"))
        .body(Bytes::from_static(b"one"))
        .unwrap();
    let e = c.request(post).await.unwrap_err();
    assert!(e.is_maybe_processed(), "{e}");
    // A PING a second after the stream opened, unanswered for a second.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let r = c.get(&url("/x")).await.unwrap();
    let i = info(&r);
    assert_eq!(
        (i.connection, i.retry_reasons.clone()),
        (3, vec![RetryReason::Idempotent])
    );
    let m = c.metrics();
    assert_eq!(
        (m.ping_timeouts, m.maybe_processed, m.retries_idempotent),
        (2, 1, 1)
    );
    assert_eq!((srv.posts(), srv.requests(), srv.connections()), (1, 3, 3));
}

/// An idle HTTP/2 connection is closed after the pool's idle timeout.
#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (_net, a, b) = two_hosts(33, RTT);
    let srv = hyper_h2_server(&b, addr(), H2ServerConfig::default()).await;
    let mut config = h2_config();
    config.pool.idle_timeout = Duration::from_secs(2);
    let c = client(&a, config);
    c.get(&url("/")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.http2_connections(&origin()), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.http2_connections(&origin()), 0);
    assert_eq!(c.metrics().evicted_idle, 1);
    let i = info(&c.get(&url("/")).await.unwrap());
    assert_eq!(i.connection, 2);
    assert_eq!(srv.connections(), 2);
}

/// Connecting fails: the calls that waited for the connection fail with it, and none
/// opens a connection of its own after it.
#[tokio::test(start_paused = true)]
async fn a_failed_connect_fails_the_calls_waiting_for_it() {
    let (_net, a, _b) = two_hosts(34, RTT);
    let c = client(&a, h2_config());
    let rs = concurrent(&c, 10, "/", false).await;
    for r in &rs {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, synack_http::Error::Connect { .. }), "{e}");
    }
    let m = c.metrics();
    assert_eq!((m.connect_errors, m.failures), (1, 10));
    assert_eq!(a.tcp_stats().connects, 1, "one attempt");
}
