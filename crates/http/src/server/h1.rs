//! An HTTP/1.1 connection: hyper's `server::conn::http1` behind the request guard, with the
//! keep-alive policy of [`ServerConfig`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Notify};

use crate::guard::{Guarded, Limits};
use crate::io::Tracked;
use crate::metrics::{inc, ServerCounters};

use super::conn::{aborted_by_peer, Alarm, ConnCtl, KeepAliveService, Last, Proto, Timeout};
use super::{BoxError, BoxIo, ServerConfig};

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
    let (io, io_state) = Tracked::new(io);
    let notify = Arc::new(Notify::new());
    let (io, guard) = Guarded::new(
        io,
        Limits {
            max_header_size: config.max_header_size.max(1),
            max_body: config.client_max_body_size,
        },
        notify.clone(),
    );
    let ctl = Arc::new(ConnCtl::new(
        config.clone(),
        counters.clone(),
        io_state.clone(),
        guard.clone(),
        notify,
        Proto::Http1,
    ));
    io_state.arm();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(config.persistent())
        // A client may send its request and then its FIN (a half-close): it is still
        // answered, as nginx does, instead of the response being dropped at the FIN.
        .half_close(true)
        .header_read_timeout(None)
        .max_header_size(config.max_header_size.max(1));
    let conn = builder.serve_connection(
        TokioIo::new(io),
        KeepAliveService {
            inner: service,
            ctl: ctl.clone(),
        },
    );
    let mut conn = std::pin::pin!(conn);
    let mut graceful = *shutdown.borrow();
    if graceful {
        ctl.shutting.store(true, Ordering::Release);
        conn.as_mut().graceful_shutdown();
    }
    let mut detached = false;
    let mut rejecting = false;
    let mut alarm = Alarm::new();
    let outcome = loop {
        if !rejecting {
            // A refused request head: once the responses before it are out, close; the
            // guard writes the refusal before the FIN.
            if let Some(r) = guard.reject() {
                let mut st = ctl.lock();
                if r.in_body {
                    rejecting = true;
                } else if st.active == 0 {
                    st.last = Some(Last::Rejected);
                    drop(st);
                    ctl.count_reject();
                    rejecting = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        let deadline = ctl.deadline();
        if let Some((at, why)) = deadline {
            if at <= crate::io::now() {
                match why {
                    Timeout::Idle => inc(&counters.closed_idle),
                    Timeout::Header => inc(&counters.header_timeouts),
                    Timeout::Send => inc(&counters.send_timeouts),
                    Timeout::Grace => {}
                }
                // Dropping the connection closes the stream: a FIN, as it is idle (or a RST
                // if a request's bytes arrived unread, as the kernel does).
                break None;
            }
        }
        alarm.arm(deadline.map(|d| d.0));
        ctl.alarm_set(alarm.armed());
        tokio::select! {
            biased;
            r = conn.as_mut() => break Some(r),
            // The first byte of a request, a refused request, a request begun or ended.
            _ = ctl.notify.notified() => {}
            r = shutdown.changed(), if !graceful && !detached => match r {
                Ok(()) if *shutdown.borrow() => {
                    graceful = true;
                    ctl.shutting.store(true, Ordering::Release);
                    conn.as_mut().graceful_shutdown();
                }
                Ok(()) => {}
                Err(_) => detached = true,
            },
            // The deadline is looked at again: it may have moved meanwhile.
            // Unarmed until the deadline is looked at again: meanwhile every change wakes.
            _ = alarm.fired() => ctl.alarm_set(None),
        }
    };
    let last = ctl.lock().last;
    if guard.reject().is_some() {
        ctl.count_reject();
    }
    match outcome {
        Some(Ok(())) if last.is_none() && !graceful => inc(&counters.closed_by_peer),
        Some(Ok(())) => {}
        Some(Err(e)) if aborted_by_peer(&e) => inc(&counters.aborted_by_peer),
        Some(Err(_)) => inc(&counters.errors),
        None => {}
    }
}
