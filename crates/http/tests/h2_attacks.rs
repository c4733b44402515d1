//! synack's HTTP/2 server against the known attacks, each bounded by a named setting, with
//! a hand-written hostile client over in-memory connections in tokio's paused time; an
//! honest client on another connection is served throughout.
//!
//! | attack | bound | what the client sees |
//! |---|---|---|
//! | Rapid Reset (CVE-2023-44487) | `max_pending_accept_reset_streams` (20) | GOAWAY `ENHANCE_YOUR_CALM` |
//! | CONTINUATION flood (CVE-2024-27316 class) | header list size / frame size, at least 5 `CONTINUATION`s | GOAWAY `ENHANCE_YOUR_CALM` |
//! | HPACK header-list bomb | `max_header_list_size`: 431 and RST over it, GOAWAY over 4× | 431 / GOAWAY `ENHANCE_YOUR_CALM` |
//! | PING or SETTINGS flood | one pending ACK: h2 reads no frame before its ACK is written | its writes stall; every ACK arrives once it reads |
//! | zero-window peer holding streams | `max_concurrent_streams`, `send_timeout` | REFUSED_STREAM past the limit; closed after `send_timeout` |

mod common;
mod h2_server_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{counting_service, Counts};
use h2_server_support::*;
use synack_http::routes::Routes;
use synack_http::{serve, Http2Config, ServerConfig, ServerHandle};
use tokio::io::AsyncWriteExt;
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

/// An honest client making `n` requests on its own connection, all answered.
async fn honest(c: &Connector, n: usize) {
    let mut send = h2_client(c.connect()).await;
    for i in 0..n {
        let (status, body) = h2_get(&mut send, &format!("/honest/{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("GET /honest/{i} 0\n").as_bytes());
    }
}

/// Rapid Reset: a client writes HEADERS + RST_STREAM(CANCEL) pairs as fast as it can, up to
/// 100 000 streams. Streams reset before the server took them count against
/// `max_pending_accept_reset_streams` (20): at the 21st the server sends GOAWAY
/// ENHANCE_YOUR_CALM and closes, having read a small part of the flood, and the service saw
/// almost none of it. An honest client's 50 requests on another connection all complete.
#[tokio::test(start_paused = true)]
async fn rapid_reset_ends_with_enhance_your_calm() {
    let (srv, c, counts) = start(h2c_config());
    let honest_task = {
        let c = c.clone();
        tokio::spawn(async move { honest(&c, 50).await })
    };
    let mut raw = Raw::new(c.connect_with(64 * 1024));
    raw.handshake(&[]).await;
    let (mut rd, mut wr) = raw.split();
    const STREAMS: u32 = 100_000;
    let writer = tokio::spawn(async move {
        let block = request_block("GET", "/delay/10000", &[]);
        let mut sent = 0u32;
        while sent < STREAMS {
            let mut batch = Vec::new();
            for _ in 0..100 {
                let id = 2 * sent + 1;
                batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
                batch.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
                sent += 1;
            }
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
        sent
    });
    let frames = rd.drain().await;
    let sent = writer.await.unwrap();
    let g = goaways(&frames);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].1, ENHANCE_YOUR_CALM, "{g:?}");
    honest_task.await.unwrap();
    let st = srv.shutdown(Duration::from_secs(5)).await;
    let attacker_requests = st.requests - 50;
    assert!(
        sent < STREAMS,
        "the flood was cut off: {sent} streams written"
    );
    assert!(
        st.h2_streams < 5_000,
        "streams read before the GOAWAY: {}",
        st.h2_streams
    );
    assert!(
        attacker_requests <= 21,
        "attacker streams the service saw: {attacker_requests}"
    );
    assert_eq!(counts.gets(), st.requests);
    assert_eq!((st.goaway_errors, st.h2_connections), (1, 2));
    eprintln!(
        "rapid reset: {sent} streams written, {} read, {attacker_requests} served, GOAWAY {:?}",
        st.h2_streams,
        goaways(&frames)
    );
}

/// CONTINUATION flood: a HEADERS without END_HEADERS, then CONTINUATION frames that never
/// end the block. h2 allows the frames the header list size needs (16 KiB / 16 KiB frames:
/// 1, at least 5) and ends the connection with GOAWAY ENHANCE_YOUR_CALM at the next,
/// before the request exists.
#[tokio::test(start_paused = true)]
async fn a_continuation_flood_ends_with_enhance_your_calm() {
    let (srv, c, counts) = start(h2c_config());
    let mut raw = Raw::new(c.connect_with(1 << 20));
    raw.handshake(&[]).await;
    let mut flood = frame(HEADERS, END_STREAM, 1, &request_block("GET", "/", &[]));
    for _ in 0..10_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let (mut rd, mut wr) = raw.split();
    let writer = tokio::spawn(async move { wr.write_all(&flood).await.is_ok() });
    let frames = rd.drain().await;
    let _ = writer.await;
    assert_eq!(goaways(&frames), [(0, ENHANCE_YOUR_CALM)]);
    assert!(replies(&frames).is_empty(), "{frames:?}");
    honest(&c, 5).await;
    let st = srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!(counts.gets(), 5);
    assert_eq!((st.goaway_errors, st.requests), (1, 5));
}

/// The request block of an HPACK bomb: a 4000-byte field added to the dynamic table (RFC
/// 7541 §6.2.1), then referenced `refs` more times at one byte each (index 62, §2.3.3).
fn bomb(refs: usize) -> Vec<u8> {
    let mut b = request_block("GET", "/", &[]);
    b.push(0x40);
    hpack_str(b"x-bomb", &mut b);
    hpack_str(&[b'a'; 4000], &mut b);
    b.extend(std::iter::repeat_n(0xbe, refs));
    b
}

/// HPACK header-list bomb, bounded by `max_header_list_size` (16 KiB): a block decoding to
/// 20 KB (5 × 4038 B from 4.1 KB on the wire) is answered 431 and its stream reset, and
/// the connection goes on (the next stream is served); one decoding past four times the
/// limit (21 × 4038 B from 4.1 KB) ends the connection with GOAWAY ENHANCE_YOUR_CALM
/// without decoding the rest.
#[tokio::test(start_paused = true)]
async fn an_hpack_bomb_gets_431_then_enhance_your_calm() {
    let (srv, c, counts) = start(h2c_config());
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[]).await;
    raw.send(HEADERS, END_HEADERS | END_STREAM, 1, &bomb(4))
        .await;
    raw.get(3, "/after").await;
    let mut got = Vec::new();
    while replies(&got).get(&3).is_none_or(|r| !r.ended) {
        got.push(raw.next().await.expect("frames"));
    }
    let r = replies(&got);
    assert_eq!(r[&1].status, Some(431), "{:?}", r[&1]);
    assert!(r[&1].ended && r[&1].body.is_empty());
    assert_eq!(
        (r[&3].status, r[&3].body.as_slice()),
        (Some(200), &b"GET /after 0\n"[..])
    );
    assert_eq!(counts.gets(), 1);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 5, &bomb(20))
        .await;
    let frames = raw.drain().await;
    assert_eq!(goaways(&frames), [(3, ENHANCE_YOUR_CALM)]);
    honest(&c, 3).await;
    let st = srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!((counts.gets(), st.goaway_errors), (4, 1));
}

/// A flood of PINGs (or SETTINGS) from a client that reads nothing: h2 answers each before
/// it reads the next frame, so once the client's receive pipe is full the server reads no
/// more, and the flood stalls in the client's own writes (the server holds no growing queue
/// of ACKs). An honest client is served meanwhile. When the client reads, every ACK
/// arrives, exactly one per frame, and the connection still serves a request.
async fn flood_stalls_the_flooder(kind: u8, n: usize) {
    let (srv, c, counts) = start(h2c_config());
    const PIPE: usize = 64 * 1024;
    let mut raw = Raw::new(c.connect_with(PIPE));
    raw.handshake(&[]).await;
    let (mut rd, mut wr) = raw.split();
    let one = match kind {
        PING => frame(PING, 0, 0, &[7; 8]),
        _ => settings(&[(SETTINGS_HEADER_TABLE_SIZE, 4096)]),
    };
    let one_len = one.len();
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let writer = tokio::spawn(async move {
        let batch: Vec<u8> = one.repeat(100);
        for _ in 0..n / 100 {
            wr.write_all(&batch).await.unwrap();
            w.fetch_add(100, Ordering::SeqCst);
        }
        wr
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stalled_at = written.load(Ordering::SeqCst);
    // What can have left the flooder: a pipe of its frames, a pipe of ACKs (9 + 8 bytes
    // for PING, 9 for SETTINGS), and 32 KiB of h2's read and write buffers: a bound that
    // does not grow with the flood.
    let ack_len = if kind == PING { 17 } else { 9 };
    let bound = PIPE / one_len + (PIPE + 32 * 1024) / ack_len;
    assert!(
        stalled_at <= bound && stalled_at < n,
        "{stalled_at} of {n} frames written while the flooder read nothing (bound {bound})"
    );
    honest(&c, 3).await;
    // (And the ACK of the SETTINGS the client began with.)
    let want = if kind == SETTINGS { n + 1 } else { n };
    let mut acks = 0;
    while acks < want {
        let f = rd.next().await.expect("an ACK per frame");
        if f.kind == kind && f.flags & ACK != 0 {
            acks += 1;
        }
    }
    let mut wr = writer.await.unwrap();
    assert_eq!(written.load(Ordering::SeqCst), n);
    let block = request_block("GET", "/after", &[]);
    wr.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .unwrap();
    let mut got = Vec::new();
    while replies(&got).get(&1).is_none_or(|r| !r.ended) {
        got.push(rd.next().await.expect("the response"));
    }
    assert_eq!(replies(&got)[&1].body, b"GET /after 0\n");
    // Nothing more came: exactly one ACK per frame.
    assert!(got.iter().all(|f| f.kind != kind || f.flags & ACK == 0));
    let st = srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!((counts.gets(), st.goaway_errors), (4, 0));
    eprintln!("flood of {n} frames of type {kind}: stalled after {stalled_at} written");
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_stalls_the_flooder() {
    flood_stalls_the_flooder(PING, 100_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_settings_flood_stalls_the_flooder() {
    flood_stalls_the_flooder(SETTINGS, 100_000).await;
}

/// A zero-window peer: SETTINGS_INITIAL_WINDOW_SIZE 0, then streams for 1 MB each. The
/// server holds at most `max_concurrent_streams` (4) of them (the 5th is refused with
/// REFUSED_STREAM), makes none of their bodies (h2 asks for data only when the window
/// has room), and closes the connection `send_timeout` (10 s) after the responses began
/// waiting. A client that opens its window but never reads the connection meets the same
/// bound once its pipe is full. An honest client gets 1 MB meanwhile.
#[tokio::test(start_paused = true)]
async fn a_zero_window_peer_is_closed_after_send_timeout() {
    let config = ServerConfig {
        send_timeout: Duration::from_secs(10),
        http2: Http2Config {
            max_concurrent_streams: 4,
            ..Http2Config::default()
        },
        ..h2c_config()
    };
    let (l, c) = mem_listener();
    let srv = serve(l, config, Routes::new());
    let mut raw = Raw::new(c.connect());
    raw.handshake(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]).await;
    let t0 = Instant::now();
    for id in [1, 3, 5, 7, 9] {
        raw.get(id, "/bytes/1000000").await;
    }
    let mut send = h2_client(c.connect()).await;
    let (status, body) = h2_get(&mut send, "/bytes/1000000").await;
    assert_eq!((status, body.len()), (200, 1_000_000));
    let frames = raw.drain().await;
    assert_eq!(since(t0), Duration::from_secs(10));
    let r = replies(&frames);
    for id in [1, 3, 5, 7] {
        assert_eq!((r[&id].status, r[&id].body.len()), (Some(200), 0), "{id}");
    }
    assert_eq!(r[&9].reset, Some(REFUSED_STREAM));

    // A full pipe instead of a shut window.
    let mut deaf = Raw::new(c.connect_with(16 * 1024));
    deaf.handshake(&[]).await;
    deaf.get(1, "/bytes/100000000").await;
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut n = 0u64;
    while let Some(f) = deaf.next().await {
        n += f.payload.len() as u64;
    }
    assert!(n < 4 << 20, "{n} bytes reached the client of 100 MB");
    let st = srv.shutdown(Duration::from_secs(5)).await;
    assert_eq!(st.send_timeouts, 2, "{st:?}");
    assert!(since(t1) >= Duration::from_secs(10));
    // The 5th stream was refused by h2 (over the limit), not by the keep-alive policy.
    assert_eq!(st.h2_refused_streams, 0);
    assert!(st.h2_resets_sent >= 1);
}
