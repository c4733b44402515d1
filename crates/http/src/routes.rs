//! The service `synack serve` runs:
//!
//! - `/`: a short text (or, with a directory, its `index.html` or a listing);
//! - `/bytes/N`: N bytes (at most 256 MiB) of a pattern, byte `i` being `i mod 251`;
//! - `/delay/MS`: a short text after MS milliseconds (at most 10 minutes);
//! - anything else, with a directory: the file under it (no `..`), else 404.
//!
//! A request body (POST, PUT) is read as it arrives and its length reported.
//!
//! Large bodies stream: `/bytes/N` and files go out in chunks of at most [`CHUNK`] bytes, made
//! (or read) only when hyper asks for the next one, so a response holds one chunk in memory
//! whatever its length; its `Content-Length` is known up front.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::Service;
use tokio::io::{AsyncRead, ReadBuf};

/// The largest `/bytes/N`.
pub const MAX_BYTES: u64 = 256 << 20;
/// The longest `/delay/MS`.
pub const MAX_DELAY_MS: u64 = 600_000;

/// The largest piece of a streamed body.
pub const CHUNK: usize = 64 * 1024;

/// The period of the `/bytes/N` pattern.
const PERIOD: u64 = 251;

/// Byte `i` of a `/bytes/N` body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PERIOD) as u8
}

/// [`CHUNK`] + [`PERIOD`] bytes of the pattern, from byte 0: any chunk of the pattern is a
/// slice of it (shared, not copied).
fn pattern_table() -> &'static Bytes {
    static TABLE: OnceLock<Bytes> = OnceLock::new();
    TABLE.get_or_init(|| (0..(CHUNK as u64 + PERIOD)).map(pattern_byte).collect())
}

/// The body of a response of [`Routes`]: a short text in one piece, or a stream of chunks.
pub struct RouteBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    /// Bytes `next..end` of the pattern.
    Pattern {
        next: u64,
        end: u64,
    },
    /// The `left` bytes still to read of a file (boxed: every response's body would
    /// otherwise be as large as a file's state).
    File {
        file: Box<tokio::fs::File>,
        left: u64,
    },
}

impl RouteBody {
    /// `b` in one piece.
    pub fn full(b: impl Into<Bytes>) -> RouteBody {
        let b = b.into();
        RouteBody {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
        }
    }

    /// Bytes `0..n` of the `/bytes/N` pattern, made [`CHUNK`] bytes at a time.
    pub fn pattern(n: u64) -> RouteBody {
        RouteBody {
            kind: Kind::Pattern { next: 0, end: n },
        }
    }

    /// The first `len` bytes of `file`, read [`CHUNK`] bytes at a time (fewer bytes in the
    /// file is an error).
    pub fn file(file: tokio::fs::File, len: u64) -> RouteBody {
        RouteBody {
            kind: Kind::File {
                file: Box::new(file),
                left: len,
            },
        }
    }

    fn remaining(&self) -> u64 {
        match &self.kind {
            Kind::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Kind::Pattern { next, end } => end - next,
            Kind::File { left, .. } => *left,
        }
    }
}

impl Body for RouteBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Pattern { next, end } => {
                if next == end {
                    return Poll::Ready(None);
                }
                let n = (*end - *next).min(CHUNK as u64) as usize;
                let from = (*next % PERIOD) as usize;
                *next += n as u64;
                Poll::Ready(Some(Ok(Frame::data(pattern_table().slice(from..from + n)))))
            }
            Kind::File { file, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(CHUNK as u64) as usize;
                let mut buf = BytesMut::zeroed(n);
                let mut rb = ReadBuf::new(&mut buf);
                std::task::ready!(Pin::new(&mut **file).poll_read(cx, &mut rb))?;
                let got = rb.filled().len();
                if got == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than when the response began",
                    ))));
                }
                buf.truncate(got);
                *left -= got as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

/// The routes, optionally over a directory.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    dir: Option<PathBuf>,
    /// The `Date` of responses, from a clock of the runtime's time (see
    /// [`Routes::with_virtual_date`]).
    clock: Option<(std::time::SystemTime, tokio::time::Instant)>,
}

impl Routes {
    /// `/`, `/bytes/N` and `/delay/MS` only.
    pub fn new() -> Routes {
        Routes {
            dir: None,
            clock: None,
        }
    }

    /// The same, and the files under `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Routes {
        Routes {
            dir: Some(dir.into()),
            clock: None,
        }
    }

    /// Responses carry a `Date` (RFC 9110 §6.6.1) read from the runtime's clock as if it
    /// showed `epoch` now, instead of the one hyper adds from the wall clock: on a simulated
    /// network with virtual time, the same run then sends the same bytes whenever it is run
    /// (HPACK codes a changed `Date` anew, so a second boundary passed during a run would
    /// change its HTTP/2 byte counts).
    pub fn with_virtual_date(mut self, epoch: std::time::SystemTime) -> Routes {
        self.clock = Some((epoch, tokio::time::Instant::now()));
        self
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<RouteBody> {
    with_body(status, RouteBody::full(body))
}

fn with_body(status: StatusCode, body: RouteBody) -> Response<RouteBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `rel` under `dir`, refusing anything that climbs out of it.
fn under(dir: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = dir.to_path_buf();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(p)
}

async fn file_or_listing(path: PathBuf, shown: &str) -> Response<RouteBody> {
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(_) => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if meta.is_dir() {
        let index = path.join("index.html");
        if let Ok(b) = tokio::fs::read(&index).await {
            let mut r = text(StatusCode::OK, b);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return r;
        }
        let mut names = Vec::new();
        if let Ok(mut rd) = tokio::fs::read_dir(&path).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                let mut n = e.file_name().to_string_lossy().into_owned();
                if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                    n.push('/');
                }
                names.push(n);
            }
        }
        names.sort();
        let mut out = format!("index of {shown}\n");
        for n in names {
            out.push_str(&n);
            out.push('\n');
        }
        return text(StatusCode::OK, out);
    }
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let mut r = with_body(StatusCode::OK, RouteBody::file(f, meta.len()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Err(_) => text(StatusCode::FORBIDDEN, "cannot read\n"),
    }
}

/// What a request gets: an answer at once, or one that waits (a delay, a file).
enum Plan {
    Now(Response<RouteBody>),
    Delay(u64),
    Dir(PathBuf),
}

impl Routes {
    /// The answer to `method` on `path`, after a request body of `got` bytes.
    fn plan(&self, method: &Method, path: &str, got: u64) -> Plan {
        if method == Method::POST || method == Method::PUT {
            return Plan::Now(text(StatusCode::OK, format!("received {got} bytes\n")));
        }
        if method != Method::GET && method != Method::HEAD {
            return Plan::Now(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return Plan::Now(match number(n) {
                Some(n) if n <= MAX_BYTES => {
                    let mut r = with_body(StatusCode::OK, RouteBody::pattern(n));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    r
                }
                _ => text(
                    StatusCode::BAD_REQUEST,
                    format!("/bytes/N: N must be a number of at most {MAX_BYTES}\n"),
                ),
            });
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            return match number(ms) {
                Some(ms) if ms <= MAX_DELAY_MS => Plan::Delay(ms),
                _ => Plan::Now(text(
                    StatusCode::BAD_REQUEST,
                    format!("/delay/MS: MS must be a number of at most {MAX_DELAY_MS}\n"),
                )),
            };
        }
        match &self.dir {
            Some(dir) => match under(dir, path) {
                Some(p) => Plan::Dir(p),
                None => Plan::Now(text(StatusCode::FORBIDDEN, "forbidden\n")),
            },
            None if path == "/" => Plan::Now(text(
                StatusCode::OK,
                Bytes::from_static(b"hello from synack\n"),
            )),
            None => Plan::Now(text(StatusCode::NOT_FOUND, "not found\n")),
        }
    }

    async fn handle<B>(self, req: Request<B>) -> Response<RouteBody>
    where
        B: Body + Unpin,
    {
        let (parts, mut body) = req.into_parts();
        let path = parts.uri.path();
        // Read any request body as it comes (counting it, not keeping it), so that the
        // connection stays usable.
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got += f.data_ref().map_or(0, |d| bytes::Buf::remaining(d) as u64),
                Err(_) => return text(StatusCode::BAD_REQUEST, "bad request body\n"),
            }
        }
        match self.plan(&parts.method, path, got) {
            Plan::Now(r) => r,
            Plan::Delay(ms) => {
                // Boxed: the timer would otherwise make every request's future larger.
                Box::pin(tokio::time::sleep(Duration::from_millis(ms))).await;
                text(StatusCode::OK, format!("delayed {ms} ms\n"))
            }
            Plan::Dir(p) => Box::pin(file_or_listing(p, path)).await,
        }
    }

    /// Dates `r` by the virtual clock, if there is one.
    fn dated(
        clock: Option<(std::time::SystemTime, tokio::time::Instant)>,
        r: &mut Response<RouteBody>,
    ) {
        if let Some((epoch, start)) = clock {
            let now = epoch + start.elapsed();
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
                r.headers_mut().insert(http::header::DATE, v);
            }
        }
    }
}

/// The response future of [`Routes`]: ready at once when the request has no body and its
/// answer needs no waiting (no allocation then), boxed otherwise.
pub struct RoutesFuture(Step);

enum Step {
    Ready(Option<Response<RouteBody>>),
    Boxed(Pin<Box<dyn Future<Output = Response<RouteBody>> + Send>>),
}

impl Future for RoutesFuture {
    type Output = Result<Response<RouteBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Step::Ready(r) => match r.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Ready(Ok(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "polled after completion\n",
                ))),
            },
            Step::Boxed(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

/// Any request body: hyper's `Incoming`, or one HTTP/3 collected ([`crate::h3::server`]).
impl<B> Service<Request<B>> for Routes
where
    B: Body + Send + Unpin + 'static,
{
    type Response = Response<RouteBody>;
    type Error = Infallible;
    type Future = RoutesFuture;

    fn call(&self, req: Request<B>) -> Self::Future {
        if req.body().is_end_stream() {
            if let Plan::Now(mut r) = self.plan(req.method(), req.uri().path(), 0) {
                Routes::dated(self.clock, &mut r);
                return RoutesFuture(Step::Ready(Some(r)));
            }
        }
        let me = self.clone();
        RoutesFuture(Step::Boxed(Box::pin(async move {
            let clock = me.clock;
            let mut r = me.handle(req).await;
            Routes::dated(clock, &mut r);
            r
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(mut b: RouteBody) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            out.push(f.unwrap().into_data().unwrap());
        }
        out
    }

    /// With a virtual date, responses are dated by the runtime's clock from the epoch given,
    /// whatever the wall clock says: the same run sends the same bytes.
    #[tokio::test(start_paused = true)]
    async fn a_virtual_date_follows_the_runtime_clock() {
        let epoch = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let routes = Routes::new().with_virtual_date(epoch);
        let get = || {
            Request::get("/bytes/1")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap()
        };
        let r = routes.call(get()).await.unwrap();
        assert_eq!(
            r.headers()[http::header::DATE],
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
        tokio::time::sleep(Duration::from_millis(61_500)).await;
        let r = routes.call(get()).await.unwrap();
        assert_eq!(
            r.headers()[http::header::DATE],
            "Thu, 01 Jan 2026 00:01:01 GMT"
        );
        // Without it, the date is hyper's to add, from the wall clock.
        let r = Routes::new().call(get()).await.unwrap();
        assert!(r.headers().get(http::header::DATE).is_none());
    }

    /// A request without a body whose answer needs no waiting is answered by a future that
    /// is ready at once (no box); a body to read, a delay or a file take the boxed path,
    /// and both give the same responses.
    #[tokio::test(start_paused = true)]
    async fn answers_without_waiting_are_not_boxed() {
        let routes = Routes::new();
        let req = |m: Method, path: &str, body: &'static str| {
            Request::builder()
                .method(m)
                .uri(path)
                .body(http_body_util::Full::new(Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap()
        };
        let cases = [
            (Method::GET, "/", "", true, "hello from synack\n"),
            (Method::GET, "/nope", "", true, "not found\n"),
            (Method::POST, "/", "", true, "received 0 bytes\n"),
            (Method::POST, "/", "abc", false, "received 3 bytes\n"),
            (Method::GET, "/delay/1", "", false, "delayed 1 ms\n"),
        ];
        for (m, path, body, ready, text) in cases {
            let fut = routes.call(req(m, path, body));
            assert_eq!(matches!(fut.0, Step::Ready(_)), ready, "{path} {body:?}");
            let r = fut.await.unwrap();
            assert_eq!(frames(r.into_body()).await.concat(), text.as_bytes());
        }
    }

    #[tokio::test]
    async fn the_pattern_comes_in_chunks_and_is_exact() {
        for n in [
            0,
            1,
            250,
            251,
            252,
            CHUNK as u64,
            CHUNK as u64 + 1,
            3 * CHUNK as u64 + 777,
        ] {
            let b = RouteBody::pattern(n);
            assert_eq!(b.size_hint().exact(), Some(n));
            assert_eq!(b.is_end_stream(), n == 0);
            let fr = frames(b).await;
            assert!(fr.iter().all(|f| !f.is_empty() && f.len() <= CHUNK), "{n}");
            assert_eq!(fr.len() as u64, n.div_ceil(CHUNK as u64));
            let all: Vec<u8> = fr.concat();
            assert_eq!(all.len() as u64, n);
            assert!(all
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(i as u64)));
        }
    }

    #[tokio::test]
    async fn files_come_in_chunks() {
        let dir = std::env::temp_dir().join(format!("synack-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..(2 * CHUNK + 5)).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = tokio::fs::File::open(&p).await.unwrap();
        let fr = frames(RouteBody::file(f, data.len() as u64)).await;
        assert!(fr.iter().all(|f| f.len() <= CHUNK));
        assert_eq!(fr.concat(), data);
        // A file shorter than announced is an error, not a short body.
        let f = tokio::fs::File::open(&p).await.unwrap();
        let mut b = RouteBody::file(f, data.len() as u64 + 1);
        let mut err = None;
        while let Some(f) = b.frame().await {
            if let Err(e) = f {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err.unwrap().kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
