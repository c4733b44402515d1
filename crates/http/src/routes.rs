//! The service `synack serve` runs:
//!
//! - `/`: a short text (or, with a directory, its `index.html` or a listing);
//! - `/bytes/N`: N bytes (at most 256 MiB) of a pattern, byte `i` being `i mod 251`;
//! - `/delay/MS`: a short text after MS milliseconds (at most 10 minutes);
//! - anything else, with a directory: the file under it (no `..`), else 404.
//!
//! A request body (POST, PUT) is read and its length reported.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::Service;

/// The largest `/bytes/N`.
pub const MAX_BYTES: u64 = 256 << 20;
/// The longest `/delay/MS`.
pub const MAX_DELAY_MS: u64 = 600_000;

/// Byte `i` of a `/bytes/N` body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// The routes, optionally over a directory.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    dir: Option<PathBuf>,
}

impl Routes {
    /// `/`, `/bytes/N` and `/delay/MS` only.
    pub fn new() -> Routes {
        Routes { dir: None }
    }

    /// The same, and the files under `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Routes {
        Routes {
            dir: Some(dir.into()),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
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

async fn file_or_listing(path: PathBuf, shown: &str) -> Response<Full<Bytes>> {
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
    match tokio::fs::read(&path).await {
        Ok(b) => {
            let mut r = text(StatusCode::OK, b);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Err(_) => text(StatusCode::FORBIDDEN, "cannot read\n"),
    }
}

impl Routes {
    async fn handle(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        // Read any request body, so that the connection stays usable.
        let got = match req.into_body().collect().await {
            Ok(b) => b.to_bytes().len(),
            Err(_) => return text(StatusCode::BAD_REQUEST, "bad request body\n"),
        };
        if method == Method::POST || method == Method::PUT {
            return text(StatusCode::OK, format!("received {got} bytes\n"));
        }
        let head = method == Method::HEAD;
        if method != Method::GET && !head {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match number(n) {
                Some(n) if n <= MAX_BYTES => {
                    let body: Vec<u8> = (0..n).map(pattern_byte).collect();
                    let mut r = text(StatusCode::OK, body);
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
            };
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            return match number(ms) {
                Some(ms) if ms <= MAX_DELAY_MS => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    text(StatusCode::OK, format!("delayed {ms} ms\n"))
                }
                _ => text(
                    StatusCode::BAD_REQUEST,
                    format!("/delay/MS: MS must be a number of at most {MAX_DELAY_MS}\n"),
                ),
            };
        }
        match &self.dir {
            Some(dir) => match under(dir, &path) {
                Some(p) => file_or_listing(p, &path).await,
                None => text(StatusCode::FORBIDDEN, "forbidden\n"),
            },
            None if path == "/" => text(StatusCode::OK, "hello from synack\n"),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl Service<Request<Incoming>> for Routes {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { Ok(me.handle(req).await) })
    }
}
