//! Bodies stream: a 64 MiB `/bytes/N` goes out in chunks made one at a time, with a bounded
//! amount of body memory alive on the server whatever the length, and the client hands it to
//! its user as it arrives. Over the simulator, in virtual time.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use synack_http::routes::{pattern_byte, RouteBody, Routes, CHUNK};
use synack_http::{serve, ClientConfig, RequestInfo, ServerConfig};
use synack_stack::net::TcpListener;

/// What the server's response bodies have made, and how much of it is alive at once.
#[derive(Debug, Default)]
struct Live {
    /// Body bytes made so far.
    made: AtomicU64,
    /// Body bytes made and not yet dropped (by hyper, after writing them).
    alive: AtomicUsize,
    peak: AtomicUsize,
    largest_frame: AtomicUsize,
    frames: AtomicU64,
}

/// One frame's bytes, counted alive until the last reference to them is dropped.
struct Counted {
    data: Vec<u8>,
    live: Arc<Live>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.alive.fetch_sub(self.data.len(), Ordering::SeqCst);
    }
}

/// A response body that passes on its inner body's frames as [`Counted`] bytes.
struct Counting {
    inner: Pin<Box<RouteBody>>,
    live: Arc<Live>,
}

impl Body for Counting {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let live = self.live.clone();
        self.inner.as_mut().poll_frame(cx).map(|f| {
            f.map(|f| {
                f.map(|f| {
                    f.map_data(|d| {
                        let n = d.len();
                        live.made.fetch_add(n as u64, Ordering::SeqCst);
                        live.frames.fetch_add(1, Ordering::SeqCst);
                        live.largest_frame.fetch_max(n, Ordering::SeqCst);
                        let now = live.alive.fetch_add(n, Ordering::SeqCst) + n;
                        live.peak.fetch_max(now, Ordering::SeqCst);
                        Bytes::from_owner(Counted {
                            data: d.to_vec(),
                            live: live.clone(),
                        })
                    })
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A server on `b` running [`Routes`], its response bodies counted into the returned [`Live`].
async fn counted_server(b: &synack_stack::net::Stack) -> (synack_http::ServerHandle, Arc<Live>) {
    let l = TcpListener::bind(b, SocketAddr::new(ip(SERVER), 80))
        .await
        .unwrap();
    let live = Arc::new(Live::default());
    let l2 = live.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let live = l2.clone();
        async move {
            let r = hyper::service::Service::call(&Routes::new(), req).await?;
            let (parts, body) = r.into_parts();
            Ok::<_, Infallible>(Response::from_parts(
                parts,
                Counting {
                    inner: Box::pin(body),
                    live,
                },
            ))
        }
    });
    (serve(l, ServerConfig::default(), service), live)
}

/// Checks that `chunk`, found at `offset` of a `/bytes/N` body, is the pattern.
fn check_pattern(offset: u64, chunk: &[u8]) {
    for (i, b) in chunk.iter().enumerate() {
        let at = offset + i as u64;
        assert_eq!(*b, pattern_byte(at), "byte {at}");
    }
}

const BIG: u64 = 64 << 20;

#[tokio::test(start_paused = true)]
async fn a_64_mib_body_streams_byte_exact_in_bounded_memory() {
    let (_net, a, b) = two_hosts(51, RTT);
    let (_srv, live) = counted_server(&b).await;
    let c = client(&a, ClientConfig::default());
    let r = c
        .send(
            Request::get(url(&format!("/bytes/{BIG}")))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], BIG.to_string().as_str());
    let mut body = r.into_body();
    let mut got = 0u64;
    let mut made_at_first = None;
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk.unwrap();
        made_at_first.get_or_insert(live.made.load(Ordering::SeqCst));
        check_pattern(got, &chunk);
        got += chunk.len() as u64;
    }
    assert_eq!(got, BIG, "byte-exact length");
    // The server made the body a chunk at a time, never more than two chunks alive at once
    // (before, one frame of 64 MiB).
    assert_eq!(live.made.load(Ordering::SeqCst), BIG);
    assert_eq!(live.largest_frame.load(Ordering::SeqCst), CHUNK);
    assert_eq!(live.frames.load(Ordering::SeqCst), BIG / CHUNK as u64);
    let peak = live.peak.load(Ordering::SeqCst);
    assert!(
        peak <= 2 * CHUNK,
        "peak body bytes alive on the server: {peak}"
    );
    assert_eq!(live.alive.load(Ordering::SeqCst), 0);
    // The client had the first bytes when the server had made a few MiB of the 64, at most
    // (its send buffer, the window, hyper's buffers): it did not wait for the whole body.
    let first = made_at_first.unwrap();
    assert!(
        first <= 8 << 20,
        "made when the first chunk arrived: {first}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_gives_its_connection_back_when_read_and_closes_it_when_dropped() {
    let (_net, a, b) = two_hosts(52, RTT);
    let (_srv, _live) = counted_server(&b).await;
    let c = client(&a, ClientConfig::default());
    let get = |path: &str| Request::get(url(path)).body(Bytes::new()).unwrap();
    let info = |r: &Response<synack_http::ResponseBody>| {
        r.extensions().get::<RequestInfo>().unwrap().clone()
    };
    // Read to the end: the connection goes back to the pool and carries the next request.
    let r = c.send(get("/bytes/300000")).await.unwrap();
    assert_eq!(info(&r).connection, 1);
    let mut body = r.into_body();
    let mut n = 0;
    while let Some(ch) = body.chunk().await {
        n += ch.unwrap().len();
    }
    assert_eq!(n, 300_000);
    assert_eq!(c.metrics().responses, 1);
    let r = c.send(get("/bytes/300000")).await.unwrap();
    let i = info(&r);
    assert_eq!((i.connection, i.reused), (1, true));
    // Dropped half read: the connection cannot carry another request and is closed.
    let mut body = r.into_body();
    body.chunk().await.unwrap().unwrap();
    drop(body);
    let r = c.get(&url("/bytes/10")).await.unwrap();
    let i = info_of(&r);
    assert_eq!((i.connection, i.reused), (2, false));
    assert_eq!(r.body().len(), 10);
    let m = c.metrics();
    assert_eq!((m.connections_opened, m.responses, m.failures), (2, 2, 0));
    // An empty body is done at once.
    let r = c.send(get("/bytes/0")).await.unwrap();
    assert!(r.body().is_end_stream());
    assert_eq!(c.metrics().responses, 3);
    let r = c.get(&url("/bytes/1")).await.unwrap();
    assert_eq!(info_of(&r).connection, 2);
}

fn info_of(r: &Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}
