//! The HTTP/3 server: every QUIC connection an endpoint accepts runs an `h3` server
//! connection, each request stream answered by the [`Routes`] of `synack serve`.
//!
//! Requests that arrive in 0-RTT (before the handshake completes) may be replays (RFC 9001
//! §9.2, RFC 8446 §8): GET and HEAD are answered; any other method gets `425 Too Early`
//! (RFC 8470 §5.2), which the client retries after the handshake (RFC 9114 §4.2.2 leaves the
//! choice of what is safe to the server).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::Service;

use crate::routes::Routes;

/// The most request body the HTTP/3 server reads (larger is answered with 413).
pub const MAX_BODY: usize = 1 << 20;

/// What an HTTP/3 server did.
#[derive(Debug, Default)]
pub struct H3ServerStats {
    /// QUIC connections accepted (one TLS handshake each).
    pub connections: AtomicU64,
    /// Connections whose handshake failed or that the endpoint refused.
    pub failed: AtomicU64,
    /// Connections that carried requests in 0-RTT (a resumed session whose early data was
    /// accepted).
    pub zero_rtt: AtomicU64,
    /// Requests answered (one stream each).
    pub requests: AtomicU64,
    /// Requests answered before the handshake completed (they came in 0-RTT).
    pub early_requests: AtomicU64,
    /// Requests refused with 425 Too Early.
    pub too_early: AtomicU64,
    /// Packets the server's QUIC declared lost (RFC 9002 §6), over the ended connections.
    pub lost_packets: AtomicU64,
}

/// Accepts connections on `endpoint` until it is closed, answering them with `routes`.
/// With `early_data`, a resumed client's 0-RTT requests are read before the handshake ends.
pub async fn serve_h3(
    endpoint: quinn::Endpoint,
    routes: Routes,
    early_data: bool,
    stats: Arc<H3ServerStats>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let routes = routes.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let confirmed = Arc::new(AtomicBool::new(!early_data));
            let conn = if early_data {
                match connecting.into_0rtt() {
                    Ok((conn, accepted)) => {
                        let c = confirmed.clone();
                        tokio::spawn(async move {
                            // On a server its value means nothing: it resolves when the
                            // handshake completes.
                            let _ = accepted.await;
                            c.store(true, Ordering::Release);
                        });
                        conn
                    }
                    Err(connecting) => match connecting.await {
                        Ok(c) => c,
                        Err(_) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                }
            } else {
                match connecting.await {
                    Ok(c) => c,
                    Err(_) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            };
            stats.connections.fetch_add(1, Ordering::Relaxed);
            serve_connection(conn.clone(), routes, confirmed, stats.clone()).await;
            stats
                .lost_packets
                .fetch_add(conn.stats().path.lost_packets, Ordering::Relaxed);
        });
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    routes: Routes,
    confirmed: Arc<AtomicBool>,
    stats: Arc<H3ServerStats>,
) {
    let mut counted_early = false;
    let Ok(mut h3c) =
        // No GREASE (RFC 9114 §7.2.8): its random ids and lengths would make two runs on
        // the simulator differ by a few bytes.
        h3::server::builder()
            .send_grease(false)
            .build::<_, Bytes>(h3_quinn::Connection::new(conn))
            .await
    else {
        return;
    };
    loop {
        let resolver = match h3c.accept().await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        let early = !confirmed.load(Ordering::Acquire);
        if early && !counted_early {
            counted_early = true;
            stats.zero_rtt.fetch_add(1, Ordering::Relaxed);
        }
        let routes = routes.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok((req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if early {
                stats.early_requests.fetch_add(1, Ordering::Relaxed);
            }
            let idempotent = matches!(*req.method(), Method::GET | Method::HEAD);
            let response = if early && !idempotent {
                stats.too_early.fetch_add(1, Ordering::Relaxed);
                simple(
                    StatusCode::TOO_EARLY,
                    "too early: retry after the handshake\n",
                )
            } else {
                let mut body = BytesMut::new();
                let mut too_big = false;
                while let Ok(Some(mut chunk)) = stream.recv_data().await {
                    if body.len() + chunk.remaining() > MAX_BODY {
                        too_big = true;
                        break;
                    }
                    body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
                }
                if too_big {
                    simple(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
                } else {
                    let (parts, ()) = req.into_parts();
                    let req = Request::from_parts(parts, Full::new(body.freeze()));
                    match routes.call(req).await {
                        Ok(r) => r.map(|b| b.boxed_unsync()),
                        Err(never) => match never {},
                    }
                }
            };
            let (parts, mut body) = response.into_parts();
            if stream
                .send_response(Response::from_parts(parts, ()))
                .await
                .is_err()
            {
                return;
            }
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return };
                if let Ok(data) = frame.into_data() {
                    if stream.send_data(data).await.is_err() {
                        return;
                    }
                }
            }
            let _ = stream.finish().await;
        });
    }
}

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn simple(status: StatusCode, text: &'static str) -> Response<Boxed> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

/// A service that adds `Alt-Svc: h3=":PORT"; ma=SECS` (RFC 7838 §3, RFC 9114 §3.1.1) to
/// every response of `inner`: an HTTP/1.1 or HTTP/2 client learns that the same origin
/// speaks HTTP/3 on that UDP port. With no port it adds nothing.
#[derive(Debug, Clone)]
pub struct AltSvc<S> {
    inner: S,
    value: Option<http::HeaderValue>,
}

impl<S> AltSvc<S> {
    /// Advertises HTTP/3 on UDP `port` for `max_age` seconds; `None` advertises nothing.
    pub fn new(inner: S, port: Option<u16>, max_age: u64) -> AltSvc<S> {
        let value = port
            .and_then(|p| http::HeaderValue::from_str(&format!("h3=\":{p}\"; ma={max_age}")).ok());
        AltSvc { inner, value }
    }
}

impl<S, Req, B> Service<Req> for AltSvc<S>
where
    S: Service<Req, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = AltSvcFuture<S::Future>;

    fn call(&self, req: Req) -> Self::Future {
        AltSvcFuture {
            inner: self.inner.call(req),
            value: self.value.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`AltSvc`]'s response: the inner service's, with the header added (no allocation per
    /// request).
    pub struct AltSvcFuture<F> {
        #[pin]
        inner: F,
        value: Option<http::HeaderValue>,
    }
}

impl<F, B, E> std::future::Future for AltSvcFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let me = self.project();
        let mut r = std::task::ready!(me.inner.poll(cx))?;
        if let Some(v) = me.value.take() {
            r.headers_mut().insert(http::header::ALT_SVC, v);
        }
        std::task::Poll::Ready(Ok(r))
    }
}
