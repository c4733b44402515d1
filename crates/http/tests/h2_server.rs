//! synack's server speaking HTTP/2 over in-memory connections, in tokio's paused time: h2c
//! with prior knowledge next to HTTP/1.1 on one port, the SETTINGS it sends, GOAWAY after
//! `keepalive_requests` streams, the two-step GOAWAY of a graceful shutdown, the idle
//! timeout, PING liveness and the body limit.

mod common;
mod h2_server_support;

use std::sync::Arc;
use std::time::Duration;

use common::{counting_service, Counts};
use h2_server_support::*;
use synack_http::{serve, Http2Config, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn h2c_config() -> ServerConfig {
    ServerConfig {
        h2c: true,
        ..ServerConfig::default()
    }
}

fn start(config: ServerConfig) -> (ServerHandle, Connector, Arc<Counts>) {
    let (l, c) = mem_listener();
    let counts = Arc::new(Counts::default());
    let h = serve(l, config, counting_service(counts.clone()));
    (h, c, counts)
}

/// One port, both protocols: h2's client sends three requests at once on one connection
/// (three streams), and an HTTP/1.1 client two on another; every one is answered.
#[tokio::test(start_paused = true)]
async fn h2c_prior_knowledge_and_http1_share_one_port() {
    let (srv, c, counts) = start(h2c_config());
    let mut send = h2_client(c.connect()).await;
    let mut tasks = Vec::new();
    for path in ["/a", "/b", "/delay/50"] {
        let mut s = send.clone();
        tasks.push(tokio::spawn(async move { h2_get(&mut s, path).await }));
    }
    for (t, path) in tasks.into_iter().zip(["/a", "/b", "/delay/50"]) {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, format!("GET {path} 0\n").as_bytes());
    }
    // HTTP/1.1 on the same listener: detected by its first bytes, served as before.
    let mut h1 = c.connect();
    h1.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\nGET /y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    h1.read_to_string(&mut text).await.unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(
        text.contains("GET /x 0\n") && text.contains("GET /y 0\n"),
        "{text}"
    );
    let _ = h2_get(&mut send, "/last").await;
    drop(send);
    let st = srv.shutdown(Duration::from_secs(10)).await;
    assert_eq!((st.connections, st.h2_connections), (2, 1));
    assert_eq!((st.h2_streams, st.requests), (4, 6));
    assert_eq!(counts.gets(), 6);
    assert_eq!(st.max_requests_per_connection, 4);
    assert_eq!((st.tls_handshakes, st.errors), (0, 0));
}

/// Without `h2c` the preface is what it is to HTTP/1.1: a request with version 2.0, answered
/// 505 by the guard and closed; no HTTP/2.
#[tokio::test(start_paused = true)]
async fn without_h2c_the_preface_gets_an_http1_answer() {
    let (srv, c, _) = start(ServerConfig::default());
    let mut io = c.connect();
    io.write_all(PREFACE).await.unwrap();
    io.write_all(&settings(&[])).await.unwrap();
    let mut text = Vec::new();
    io.read_to_end(&mut text).await.unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("HTTP/1.1 505 "), "{text}");
    let st = srv.shutdown(Duration::from_secs(1)).await;
    assert_eq!((st.h2_connections, st.rejected_requests), (0, 1));
}

/// The server's first frame is its SETTINGS (RFC 9113 §3.4) with the configured values,
/// then a WINDOW_UPDATE on stream 0 opening the connection window to its size (§6.9.2).
#[tokio::test(start_paused = true)]
async fn the_settings_sent_are_the_configured_ones() {
    let config = ServerConfig {
        http2: Http2Config {
            max_concurrent_streams: 10,
            initial_stream_window: 100_000,
            initial_connection_window: 1_000_000,
            max_frame_size: 32_768,
            max_header_list_size: 8_192,
            ..Http2Config::default()
        },
        ..h2c_config()
    };
    let (srv, c, _) = start(config);
    let mut raw = Raw::new(c.connect());
    let s = raw.handshake(&[]).await;
    let got: std::collections::BTreeMap<u16, u32> = s.settings().into_iter().collect();
    assert_eq!(got.get(&SETTINGS_MAX_CONCURRENT_STREAMS), Some(&10));
    assert_eq!(got.get(&SETTINGS_INITIAL_WINDOW_SIZE), Some(&100_000));
    assert_eq!(got.get(&SETTINGS_MAX_FRAME_SIZE), Some(&32_768));
    assert_eq!(got.get(&SETTINGS_MAX_HEADER_LIST_SIZE), Some(&8_192));
    let wu = loop {
        let f = raw.next().await.unwrap();
        if f.kind == WINDOW_UPDATE {
            break f;
        }
    };
    assert_eq!((wu.stream, wu.increment()), (0, 1_000_000 - 65_535));
    drop(raw);
    srv.shutdown(Duration::from_secs(1)).await;
    // And the defaults: 128 streams (nginx's http2_max_concurrent_streams), 16 KiB lists.
    let (srv, c, _) = start(h2c_config());
    let mut raw = Raw::new(c.connect());
    let got: std::collections::BTreeMap<u16, u32> =
        raw.handshake(&[]).await.settings().into_iter().collect();
    assert_eq!(got.get(&SETTINGS_MAX_CONCURRENT_STREAMS), Some(&128));
    assert_eq!(got.get(&SETTINGS_MAX_HEADER_LIST_SIZE), Some(&16_384));
    drop(raw);
    srv.shutdown(Duration::from_secs(1)).await;
}

/// `keepalive_requests` = 3 and five streams sent at once: the first three are served, the
/// connection announces its end with GOAWAY (NO_ERROR) after the third, and the two the
/// client opened before reading it are refused with REFUSED_STREAM (not processed: safe to
/// retry); then the second GOAWAY, and the connection closes.
#[tokio::test(start_paused = true)]
async fn goaway_after_keepalive_requests_streams() {
    let config = ServerConfig {
        keepalive_requests: 3,
        ..h2c_config()
    };
    let (srv, c, counts) = start(config);
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[]).await;
    let mut burst = Vec::new();
    for id in [1u32, 3, 5, 7, 9] {
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("GET", &format!("/{id}"), &[]),
        ));
    }
    raw.write(&burst).await;
    let frames = raw.drain().await;
    let r = replies(&frames);
    for id in [1, 3, 5] {
        assert_eq!(r[&id].status, Some(200), "stream {id}: {:?}", r[&id]);
        assert_eq!(r[&id].body, format!("GET /{id} 0\n").as_bytes());
    }
    for id in [7, 9] {
        assert_eq!(
            (r[&id].status, r[&id].reset),
            (None, Some(REFUSED_STREAM)),
            "{id}"
        );
    }
    let g = goaways(&frames);
    assert_eq!(g, [(MAX_STREAM, NO_ERROR), (9, NO_ERROR)]);
    assert_eq!(counts.gets(), 3);
    let st = srv.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        (st.requests, st.h2_streams, st.h2_refused_streams),
        (3, 5, 2)
    );
    assert_eq!(
        (st.closed_max_requests, st.goaways_sent, st.goaway_errors),
        (1, 2, 0)
    );
    assert_eq!((st.h2_resets_sent, st.active_connections), (2, 0));
}

/// Graceful shutdown with a stream in flight: GOAWAY(2^31-1) and a PING; a stream the client
/// opened before it read them is still served; after the PING's answer the second GOAWAY
/// names it as the last; both streams complete, then the connection closes.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_is_a_two_step_goaway_and_in_flight_streams_complete() {
    let (srv, c, counts) = start(h2c_config());
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[]).await;
    raw.get(1, "/delay/1000").await;
    while counts.gets() < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let t0 = Instant::now();
    let shutdown = tokio::spawn(srv.shutdown(Duration::from_secs(30)));
    let g1 = raw.next_significant().await.unwrap();
    assert_eq!(g1.goaway(), (MAX_STREAM, NO_ERROR));
    let ping = raw.next_significant().await.unwrap();
    assert_eq!((ping.kind, ping.flags & ACK), (PING, 0));
    // In flight: opened before the client "read" the GOAWAY.
    raw.get(3, "/delay/10").await;
    raw.send(PING, ACK, 0, &ping.payload).await;
    let frames = raw.drain().await;
    let r = replies(&frames);
    assert_eq!(goaways(&frames), [(3, NO_ERROR)]);
    assert_eq!((r[&1].status, r[&1].ended), (Some(200), true));
    assert_eq!(r[&1].body, b"GET /delay/1000 0\n");
    assert_eq!((r[&3].status, r[&3].ended), (Some(200), true));
    assert!(since(t0) >= Duration::from_millis(990), "{:?}", since(t0));
    let st = shutdown.await.unwrap();
    assert_eq!(
        (st.requests, st.goaways_sent, st.h2_refused_streams),
        (2, 2, 0)
    );
    assert_eq!((st.active_connections, st.errors), (0, 0));
}

/// An HTTP/2 connection with no stream open for `keepalive_timeout` is closed gracefully
/// (GOAWAY, PING, GOAWAY) at that instant; one whose client does not answer the PING is
/// dropped `CLOSE_GRACE` later. Before its first stream, `header_read_timeout` applies.
#[tokio::test(start_paused = true)]
async fn the_idle_timeout_closes_an_http2_connection() {
    let config = ServerConfig {
        keepalive_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(7),
        ..h2c_config()
    };
    let (srv, c, _) = start(config);
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[]).await;
    raw.get(1, "/delay/100").await;
    let mut t_done = None;
    while t_done.is_none() {
        let f = raw.next_significant().await.unwrap();
        if f.stream == 1 && f.flags & END_STREAM != 0 {
            t_done = Some(Instant::now());
        }
    }
    let g = raw.next_significant().await.unwrap();
    assert_eq!(g.goaway(), (MAX_STREAM, NO_ERROR));
    assert_eq!(since(t_done.unwrap()), Duration::from_secs(5));
    let frames = raw.drain().await;
    assert_eq!(goaways(&frames), [(1, NO_ERROR)]);
    // No stream ever, and a client that answers nothing: 7 s, then 5 s of grace.
    let mut silent = Raw::new(c.connect());
    let t0 = Instant::now();
    silent.start(&[]).await;
    let mut seen = Vec::new();
    while let Some(f) = silent.next().await {
        seen.push(f);
    }
    assert_eq!(goaways(&seen), [(MAX_STREAM, NO_ERROR)]);
    assert_eq!(
        since(t0),
        Duration::from_secs(7) + synack_http::server::CLOSE_GRACE
    );
    let st = srv.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        (st.closed_idle, st.header_timeouts, st.h2_connections),
        (1, 1, 2)
    );
}

/// PING liveness: with a 10 s interval and a 3 s timeout, a client that stops answering is
/// sent a PING 10 s after its last frame and closed 3 s later; one that answers stays.
#[tokio::test(start_paused = true)]
async fn an_unanswered_ping_closes_the_connection() {
    let config = ServerConfig {
        http2: Http2Config {
            ping_interval: Some(Duration::from_secs(10)),
            ping_timeout: Duration::from_secs(3),
            ..Http2Config::default()
        },
        keepalive_timeout: Duration::from_secs(3600),
        header_read_timeout: Duration::from_secs(3600),
        ..h2c_config()
    };
    let (srv, c, _) = start(config);
    // h2's client answers PINGs: still served after a minute of quiet.
    let mut send = h2_client(c.connect()).await;
    assert_eq!(h2_get(&mut send, "/").await.0, 200);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h2_get(&mut send, "/again").await.0, 200);
    // A raw client that never answers.
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[]).await;
    let t0 = Instant::now();
    let mut ping_at = None;
    while let Some(f) = raw.next().await {
        if f.kind == PING && f.flags & ACK == 0 {
            ping_at.get_or_insert(since(t0));
        }
    }
    let ping_at = ping_at.expect("a PING");
    assert!(
        ping_at >= Duration::from_secs(10) && ping_at < Duration::from_secs(11),
        "{ping_at:?}"
    );
    assert!(
        since(t0) >= ping_at + Duration::from_secs(3),
        "{:?}",
        since(t0)
    );
    assert!(
        since(t0) < ping_at + Duration::from_secs(4),
        "{:?}",
        since(t0)
    );
    drop(send);
    let st = srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!(st.h2_ping_timeouts, 1);
    assert!(st.h2_pings_sent >= 2, "{st:?}");
}

/// `client_max_body_size` on HTTP/2: a Content-Length over it is answered 413 before the
/// service sees the request; one under it is served.
#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_refused_with_413() {
    let config = ServerConfig {
        client_max_body_size: 1000,
        ..h2c_config()
    };
    let (srv, c, counts) = start(config);
    let send = h2_client(c.connect()).await;
    for (len, want) in [(2000usize, 413u16), (1000, 200)] {
        let req = http::Request::post("http://example.test/up")
            .header("content-length", len)
            .body(())
            .unwrap();
        let mut s = send.clone().ready().await.unwrap();
        let (resp, mut body) = s.send_request(req, false).unwrap();
        if want == 200 {
            body.send_data(bytes::Bytes::from(vec![b'x'; len]), true)
                .unwrap();
        }
        let resp = resp.await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{len}");
    }
    assert_eq!(counts.posts(), 1);
    let st = srv.shutdown(Duration::from_secs(1)).await;
    assert_eq!((st.rejected_requests, st.requests), (1, 2));
}
