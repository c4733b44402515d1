//! An HTTP/2 connection: hyper's `server::conn::http2` (which runs h2), with the settings of
//! [`Http2Config`](super::Http2Config) and the keep-alive policy of [`ServerConfig`] applied
//! to streams:
//!
//! - idle (no stream open) for `keepalive_timeout` (or `header_read_timeout` before the
//!   first stream): a graceful close;
//! - the `keepalive_requests`th stream (or the first after `keepalive_time`) is served, and
//!   the connection closes gracefully after it; streams the client opens after it, before
//!   it reads the `GOAWAY`, are refused with `REFUSED_STREAM` (RFC 9113 §8.7: not
//!   processed, safe to retry);
//! - [`ServerHandle::shutdown`](super::ServerHandle::shutdown): a graceful close.
//!
//! A graceful close is RFC 9113 §6.8's two steps, as h2 does them: `GOAWAY` with the last
//! stream id 2^31-1 and a `PING`; when the `PING` comes back (a round trip later, so every
//! stream the client opened before it read the first `GOAWAY` has arrived), `GOAWAY` with
//! the last stream id processed; the streams up to it finish, then the connection closes.
//! A client that never answers the `PING` gets [`CLOSE_GRACE`] once no stream is open.
//! A client that takes no response bytes for `send_timeout` while responses wait (a zero
//! flow-control window, or a full TCP window) has its connection closed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::guard::GuardState;
use crate::io::IoState;
use crate::metrics::{inc, ServerCounters};

use super::conn::{aborted_by_peer, Alarm, ConnCtl, KeepAliveService, Last, Proto, Timeout};
use super::frames::FrameCounter;
use super::{BoxError, BoxIo, ServerConfig, FRAME_SIZES, MAX_WINDOW};

/// How long a connection that sent its `GOAWAY` and has no stream open waits for the
/// client's part of the graceful close (its `PING` ack, or its FIN) before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn serve<S, B>(
    io: BoxIo,
    config: Arc<ServerConfig>,
    service: S,
    counters: Arc<ServerCounters>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    inc(&counters.h2_connections);
    let io = FrameCounter::new(io, counters.clone());
    let ctl = Arc::new(ConnCtl::new(
        config.clone(),
        counters.clone(),
        Arc::new(IoState::default()),
        Arc::new(GuardState::default()),
        Arc::new(Notify::new()),
        Proto::Http2,
    ));
    let h = &config.http2;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(h.max_concurrent_streams)
        // Out-of-range values are brought in range (h2 would panic on them); see
        // `Http2Config::validate`.
        .initial_stream_window_size(h.initial_stream_window.min(MAX_WINDOW))
        .initial_connection_window_size(h.initial_connection_window.min(MAX_WINDOW))
        .max_frame_size(
            h.max_frame_size
                .clamp(*FRAME_SIZES.start(), *FRAME_SIZES.end()),
        )
        .max_header_list_size(h.max_header_list_size)
        .max_pending_accept_reset_streams(h.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h.max_local_error_reset_streams)
        .max_send_buf_size(h.max_send_buf_size.min(u32::MAX as usize))
        .keep_alive_interval(h.ping_interval)
        .keep_alive_timeout(h.ping_timeout);
    let conn = builder.serve_connection(
        TokioIo::new(io),
        KeepAliveService {
            inner: service,
            ctl: ctl.clone(),
        },
    );
    let mut conn = std::pin::pin!(conn);
    // When the first GOAWAY went out.
    let mut closing: Option<Instant> = None;
    let mut detached = false;
    let mut alarm = Alarm::new();
    let outcome = loop {
        if closing.is_none() {
            let shutting = *shutdown.borrow();
            if shutting {
                ctl.shutting.store(true, Ordering::Release);
                ctl.lock().last.get_or_insert(Last::Shutdown);
            }
            if shutting || ctl.lock().last.is_some() {
                conn.as_mut().graceful_shutdown();
                closing = Some(crate::io::now());
            }
        }
        let deadline = ctl.stream_deadline(closing, CLOSE_GRACE);
        if let Some((at, why)) = deadline {
            if at <= crate::io::now() {
                match why {
                    Timeout::Idle | Timeout::Header => {
                        inc(if why == Timeout::Idle {
                            &counters.closed_idle
                        } else {
                            &counters.header_timeouts
                        });
                        // nginx closes an idle HTTP/2 connection with a GOAWAY too.
                        conn.as_mut().graceful_shutdown();
                        closing = Some(crate::io::now());
                        continue;
                    }
                    Timeout::Send => {
                        inc(&counters.send_timeouts);
                        break None;
                    }
                    Timeout::Grace => break None,
                }
            }
        }
        alarm.arm(deadline.map(|d| d.0));
        ctl.alarm_set(alarm.armed());
        tokio::select! {
            biased;
            r = conn.as_mut() => break Some(r),
            _ = ctl.notify.notified() => {}
            r = shutdown.changed(), if closing.is_none() && !detached => {
                if r.is_err() {
                    detached = true;
                }
            }
            // Unarmed until the deadline is looked at again: meanwhile every change wakes.
            _ = alarm.fired() => ctl.alarm_set(None),
        }
    };
    match outcome {
        Some(Ok(())) if closing.is_none() => inc(&counters.closed_by_peer),
        Some(Ok(())) => {}
        Some(Err(e)) if e.is_timeout() => inc(&counters.h2_ping_timeouts),
        Some(Err(e)) if aborted_by_peer(&e) || is_peer_h2_error(&e) => {
            inc(&counters.aborted_by_peer)
        }
        Some(Err(_)) => inc(&counters.errors),
        None => {}
    }
}

/// Whether hyper's error is h2's: the client broke the protocol or a limit (h2 sent a
/// `GOAWAY` with an error code, counted in `goaway_errors`), or went away with one.
fn is_peer_h2_error(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<h2::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}
