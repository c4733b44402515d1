//! The keep-alive race: the server closes an idle connection after 5 s while the client sends
//! its next request at 5 s ± δ, for δ every millisecond from −60 ms to +60 ms over a 50 ms
//! RTT. For −50 ms < δ < 0 the request is on its way while the server's FIN is on its way
//! back: it reaches a closed connection. No GET may fail (each is retried once on a fresh
//! connection); a POST either succeeds or fails with `Error::MaybeProcessed`, and the server
//! processed exactly as many POSTs as succeeded (none was sent twice).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use synack_http::{ClientConfig, Error, RequestInfo, ServerConfig};
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(5);

fn server_config(header: bool) -> ServerConfig {
    ServerConfig {
        keepalive_timeout: IDLE,
        keepalive_header: header,
        ..ServerConfig::default()
    }
}

/// One round: a first GET opens the connection; the second request leaves at 5 s + δ after
/// the first response arrived.
async fn round(
    c: &synack_http::Client,
    delta_ms: i64,
    post: bool,
) -> Result<http::Response<Bytes>, Error> {
    c.get(&url("/")).await.expect("the first GET");
    let t1 = Instant::now();
    let at = if delta_ms >= 0 {
        t1 + IDLE + Duration::from_millis(delta_ms as u64)
    } else {
        t1 + IDLE - Duration::from_millis((-delta_ms) as u64)
    };
    tokio::time::sleep_until(at).await;
    let req = if post {
        Request::post(url("/submit")).body(Bytes::from_static(b"order #1"))
    } else {
        Request::get(url("/")).body(Bytes::new())
    };
    c.request(req.unwrap()).await
}

#[tokio::test(start_paused = true)]
async fn no_get_fails_across_the_servers_fin() {
    let (_net, a, b) = two_hosts(31, RTT);
    // The client is not told the timeout: it must survive the race itself.
    let (srv, counts) = server(&b, server_config(false)).await;
    let mut raced = Vec::new();
    let mut fin_seen = Vec::new();
    for delta in -60i64..=60 {
        let c = client(&a, ClientConfig::default());
        let r = round(&c, delta, false)
            .await
            .unwrap_or_else(|e| panic!("δ = {delta} ms: GET failed: {e}"));
        assert_eq!(r.status(), 200);
        let inf = r.extensions().get::<RequestInfo>().unwrap().clone();
        let m = c.metrics();
        assert_eq!(m.failures, 0);
        if inf.retried {
            raced.push(delta);
            assert_eq!(m.retries, 1);
            assert_eq!(m.connections_opened, 2);
        } else if inf.reused {
            assert!(
                delta < 0,
                "δ = {delta}: reused a connection the server had closed"
            );
        } else {
            fin_seen.push(delta);
            assert_eq!(
                m.peer_closed, 1,
                "δ = {delta}: the FIN was noticed before reuse"
            );
        }
    }
    eprintln!("GET retried for δ in {raced:?}; FIN noticed before sending for δ in {fin_seen:?}");
    // The request crossed the FIN for every δ in (−50 ms, 0): one RTT's worth.
    assert_eq!(raced, (-49..=-1).collect::<Vec<i64>>());
    assert_eq!(fin_seen, (0..=60).collect::<Vec<i64>>());
    assert_eq!(counts.gets(), 121 * 2);
    assert_eq!(srv.stats().errors, 0);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_sent_twice() {
    let (_net, a, b) = two_hosts(32, RTT);
    let (_srv, counts) = server(&b, server_config(false)).await;
    let (mut ok, mut maybe) = (0u64, Vec::new());
    for delta in -60i64..=60 {
        let c = client(&a, ClientConfig::default());
        match round(&c, delta, true).await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                assert_eq!(r.body().as_ref(), b"POST /submit 8\n");
                assert!(!r.extensions().get::<RequestInfo>().unwrap().retried);
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_maybe_processed(), "δ = {delta}: {e}");
                let msg = e.to_string();
                assert!(msg.contains("may not have been processed"), "{msg}");
                maybe.push(delta);
            }
        }
        let m = c.metrics();
        assert_eq!(m.retries, 0, "a POST is never retried");
    }
    eprintln!("POST: {ok} succeeded; may not have been processed for δ in {maybe:?}");
    assert_eq!(
        counts.posts(),
        ok,
        "the server processed exactly the POSTs that succeeded"
    );
    assert_eq!(ok + maybe.len() as u64, 121);
    assert_eq!(maybe, (-49..=-1).collect::<Vec<i64>>());
}

/// With `Keep-Alive: timeout=5` announced, the client retires the connection 1.05 s early:
/// nothing races at all.
#[tokio::test(start_paused = true)]
async fn the_announced_timeout_avoids_the_race() {
    let (_net, a, b) = two_hosts(33, RTT);
    let (srv, counts) = server(&b, server_config(true)).await;
    let mut ok = 0;
    for delta in -60i64..=60 {
        let c = client(&a, ClientConfig::default());
        let post = delta % 2 == 0;
        let r = round(&c, delta, post).await.unwrap();
        let inf = r.extensions().get::<RequestInfo>().unwrap().clone();
        assert!(!inf.reused && !inf.retried, "δ = {delta}");
        let m = c.metrics();
        assert_eq!((m.retired_keepalive, m.retries, m.failures), (1, 0, 0));
        ok += u64::from(post);
    }
    assert_eq!(counts.posts(), ok);
    let s = srv.stats();
    assert_eq!(s.closed_idle, 0, "the client always closed first");
    assert_eq!(s.errors, 0);
}
