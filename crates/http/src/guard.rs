//! A check of request framing in front of hyper's HTTP/1.1 parser.
//!
//! hyper answers most malformed request heads with a 4xx itself, but not all: a request with
//! both `Content-Length` and `Transfer-Encoding` is processed by its transfer coding (hyper
//! drops the length, so a service cannot even see that it was there), a request without
//! `Host` is served, and the HTTP/2 preface is met with a silent close. [`Guarded`] reads
//! the client's bytes before hyper does, follows the framing of every request (its head, then
//! a body of `Content-Length` bytes or chunks until the last one, RFC 9112 §6 and §7.1), and
//! hands hyper only requests that are well formed. At the first bad one it stops:
//!
//! - A bad request head is not handed over. The server lets the responses to the requests
//!   before it go out, then closes the connection gracefully, and the response to the bad
//!   head is written just before the FIN: the status, `Connection: close`, a line saying
//!   why (RFC 9112 §9.6). That is 400 for a malformed request line or header field, both
//!   `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 item 3), a `Transfer-Encoding`
//!   whose last coding is not `chunked` or in an HTTP/1.0 request (§6.3 item 4, §6.1), an
//!   invalid or differing `Content-Length` (§6.3 item 5), a missing, repeated or invalid
//!   `Host` in HTTP/1.1 (§3.2, RFC 9110 §7.2); 431 for a head larger than
//!   `max_header_size` (RFC 6585 §5); 414 for a target longer than hyper takes; 505 for an
//!   HTTP version other than 1.x (RFC 9110 §15.6.6); and 413 for a `Content-Length` above
//!   `client_max_body_size` (RFC 9110 §15.5.14), before any of the body is read.
//! - A bad body (a malformed chunk, or chunks adding up to more than `client_max_body_size`)
//!   is cut where it goes wrong: hyper sees the end of the stream there, the service sees
//!   its body fail, and the server answers that request with 400 or 413 and
//!   `Connection: close` whatever the service said (a service that answered before reading
//!   its body has its answer sent, and the connection closes after it).
//!
//! Either way the connection then closes with a *lingering close*, as nginx does: after the
//! FIN, what the client still sends is read and discarded (until its FIN, 5 s without data,
//! or 30 s in all), so that unread request bytes do not make the kernel answer with a reset
//! that could destroy the response before the client reads it (RFC 9112 §9.6).
//!
//! A request that may switch protocols (`CONNECT`, or `Upgrade` with `Connection: upgrade`)
//! ends the checking: what follows it on the connection is passed through untouched, since it
//! is not HTTP/1.1 if the service agrees to the switch.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Header fields in a head or a trailer section at most (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// The longest request target hyper takes.
const MAX_TARGET: usize = u16::MAX as usize - 1;
/// Bytes of chunk extensions in one body at most (hyper's limit too).
const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;
/// Lingering close: give up after this long without data (nginx `lingering_timeout`)...
const LINGER_IDLE: Duration = Duration::from_secs(5);
/// ... or this long in all (nginx `lingering_time`).
const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// What the guard enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest request head, in bytes (and trailer section).
    pub max_header_size: usize,
    /// Largest request body, in bytes; 0: no limit.
    pub max_body: u64,
}

/// A request the guard refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The status it is answered with.
    pub status: StatusCode,
    /// Why, for the response's body.
    pub reason: String,
    /// The request's number on its connection (1 for the first).
    pub request: u64,
    /// Whether its head was good and its body is what went wrong (the head went to the
    /// service).
    pub in_body: bool,
}

/// The reason phrase of `status`, as RFC 9110 §15 names it.
pub(crate) fn reason_phrase(status: StatusCode) -> &'static str {
    match status {
        // RFC 9110 §15.5.14 renamed it from "Payload Too Large".
        StatusCode::PAYLOAD_TOO_LARGE => "Content Too Large",
        s => s.canonical_reason().unwrap_or(""),
    }
}

impl Reject {
    /// The whole response the guard writes for a refused head: status line, `Date`,
    /// `Connection: close`, and the reason as a line of text.
    pub(crate) fn response(&self) -> Bytes {
        self.response_at(std::time::SystemTime::now())
    }

    fn response_at(&self, now: std::time::SystemTime) -> Bytes {
        let body = self.body();
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
             connection: close\r\ndate: {}\r\n\r\n",
            self.status.as_u16(),
            reason_phrase(self.status),
            body.len(),
            httpdate::fmt_http_date(now)
        );
        let mut out = BytesMut::from(head.as_bytes());
        out.extend_from_slice(&body);
        out.freeze()
    }

    /// The response body: the reason as one line.
    pub(crate) fn body(&self) -> Bytes {
        Bytes::from(format!("{}: {}\n", reason_phrase(self.status), self.reason))
    }
}

/// What the guard tells the server: the refused request, when there is one.
#[derive(Debug, Default)]
pub(crate) struct GuardState {
    reject: Mutex<Option<Reject>>,
    /// Whether `reject` is set: every request asks, and the lock is taken only when it is.
    refused: AtomicBool,
    notify: Arc<Notify>,
}

impl GuardState {
    /// The refused request, if any.
    pub(crate) fn reject(&self) -> Option<Reject> {
        if !self.refused() {
            return None;
        }
        self.reject
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a request was refused.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    /// The refusal of request `n`'s body, if that is what happened.
    pub(crate) fn body_reject(&self, n: u64) -> Option<Reject> {
        self.reject().filter(|r| r.in_body && r.request == n)
    }

    /// A state that wakes `notify` when a request is refused.
    pub(crate) fn notifying(notify: Arc<Notify>) -> GuardState {
        GuardState {
            reject: Mutex::default(),
            refused: AtomicBool::new(false),
            notify,
        }
    }

    fn set(&self, r: Reject) {
        *self.reject.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        self.refused.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Where the framer is in the stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests or in a head.
    Head,
    /// In a body of this many more bytes.
    Length(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// After a request that may switch protocols: no more checks.
    Transparent,
    /// After a refused request: nothing more goes to hyper.
    Stopped,
}

/// Where a chunked body is (RFC 9112 §7.1), step by step as hyper's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkStep {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    step: ChunkStep,
    /// The size of the chunk being read, then what is left of it.
    size: u64,
    /// Data bytes of the body so far.
    total: u64,
    extensions: u64,
    trailer_bytes: usize,
    trailer_fields: usize,
}

/// The framing of a good head.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Transparent,
}

/// Follows the requests in the client's bytes. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Framer {
    limits: Limits,
    state: State,
    /// An incomplete head (or one that began in an earlier read), withheld from hyper.
    head: Vec<u8>,
    /// The trailer section of a chunked body, to be checked as header fields.
    trailers: Vec<u8>,
    /// Heads seen, good or not.
    requests: u64,
    reject: Option<Reject>,
}

/// Where the framer's output goes: a prefix of the input left in place, then copies.
struct Out<'a> {
    data: &'a [u8],
    in_place: usize,
    contiguous: bool,
    copied: &'a mut BytesMut,
}

impl Out<'_> {
    fn pass(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        if self.contiguous && from == self.in_place {
            self.in_place = to;
        } else {
            self.contiguous = false;
            self.copied.extend_from_slice(&self.data[from..to]);
        }
    }

    fn pass_bytes(&mut self, b: &[u8]) {
        self.contiguous = false;
        self.copied.extend_from_slice(b);
    }
}

fn bad(reason: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, reason.into())
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), as hyper reads it.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9110 §7.2); empty is allowed.
fn valid_host(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    if v.contains(&b'@') {
        return false;
    }
    plain_host(v) || http::uri::Authority::try_from(v).is_ok()
}

/// A host name or IPv4 address with an optional port (`example.com`, `10.0.0.1:8080`):
/// the usual `Host`, accepted without the allocation of `http`'s full parser (which accepts
/// every value this does, and is asked about the rest).
fn plain_host(v: &[u8]) -> bool {
    let (host, port) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some()
        })
}

/// An origin-form request target of common characters (`/`, `/bytes/10?x=1`): accepted
/// without the allocation of `http`'s full parser (which accepts every target this does,
/// and is asked about the rest).
fn plain_target(t: &str) -> bool {
    let b = t.as_bytes();
    b.first() == Some(&b'/')
        && b.get(1) != Some(&b'/')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"/-._~?=&%+:@!$'()*,;".contains(&c))
}

/// `HTTP/x.y` with x other than 1 at the end of a request line that httparse refused.
fn other_version(head: &[u8]) -> bool {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n');
    let Some(start) = start else { return false };
    let line = &head[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    match &line[sp + 1..] {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1'
        }
        [b'H', b'T', b'T', b'P', b'/', major] => major.is_ascii_digit() && *major != b'1',
        _ => false,
    }
}

impl Framer {
    pub(crate) fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            state: State::Head,
            head: Vec::new(),
            trailers: Vec::new(),
            requests: 0,
            reject: None,
        }
    }

    /// Whether the stream is between requests (nothing of a request left unread), or past
    /// checking.
    pub(crate) fn at_boundary(&self) -> bool {
        match self.state {
            State::Head => self.head.is_empty(),
            State::Transparent => true,
            _ => false,
        }
    }

    /// The refused request, if any.
    #[cfg(test)]
    pub(crate) fn reject(&self) -> Option<&Reject> {
        self.reject.as_ref()
    }

    /// Takes the client's next bytes. What may go to hyper is the first `n` bytes of `data`
    /// (the return value), then what was appended to `copied`, in that order; the rest is
    /// withheld (an incomplete head) or dropped (after a refused request).
    pub(crate) fn feed(&mut self, data: &[u8], copied: &mut BytesMut) -> usize {
        let mut out = Out {
            data,
            in_place: 0,
            contiguous: copied.is_empty(),
            copied,
        };
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Stopped => break,
                State::Transparent => {
                    out.pass(i, data.len());
                    i = data.len();
                }
                State::Head => i = self.head_bytes(data, i, &mut out),
                State::Length(rem) => {
                    let n = (data.len() - i).min(usize::try_from(rem).unwrap_or(usize::MAX));
                    out.pass(i, i + n);
                    i += n;
                    let rem = rem - n as u64;
                    self.state = if rem == 0 {
                        State::Head
                    } else {
                        State::Length(rem)
                    };
                }
                State::Chunked(c) => {
                    let (end, ok) = self.chunk_bytes(c, data, i);
                    out.pass(i, end);
                    i = end;
                    if !ok {
                        break;
                    }
                }
            }
        }
        out.in_place
    }

    fn stop(&mut self, status: StatusCode, reason: String, in_body: bool) {
        self.state = State::Stopped;
        self.head = Vec::new();
        self.reject = Some(Reject {
            status,
            reason,
            request: self.requests,
            in_body,
        });
    }

    /// Reads a head from `data[i..]` (after what is withheld in `self.head`).
    fn head_bytes(&mut self, data: &[u8], i: usize, out: &mut Out<'_>) -> usize {
        let fresh = self.head.is_empty();
        let before = self.head.len();
        if !fresh {
            self.head.extend_from_slice(&data[i..]);
        }
        let buf: &[u8] = if fresh { &data[i..] } else { &self.head };
        match self.check_head(buf) {
            Ok(None) => {
                // Incomplete: withhold it.
                if fresh {
                    self.head.extend_from_slice(&data[i..]);
                }
                if self.head.len() >= self.limits.max_header_size.max(1) {
                    self.requests += 1;
                    self.stop(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        format!(
                            "the request head is larger than {} bytes",
                            self.limits.max_header_size
                        ),
                        false,
                    );
                }
                data.len()
            }
            Ok(Some((len, framing))) => {
                self.requests += 1;
                let next = if fresh {
                    out.pass(i, i + len);
                    i + len
                } else {
                    // The head ends in `data`: it was incomplete without it.
                    debug_assert!(len > before);
                    out.pass_bytes(&self.head[..len]);
                    self.head = Vec::new();
                    i + len.saturating_sub(before)
                };
                self.state = match framing {
                    Framing::None | Framing::Length(0) => State::Head,
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::Chunked(Chunk {
                        step: ChunkStep::Start,
                        size: 0,
                        total: 0,
                        extensions: 0,
                        trailer_bytes: 0,
                        trailer_fields: 0,
                    }),
                    Framing::Transparent => State::Transparent,
                };
                next
            }
            Err((status, reason)) => {
                self.requests += 1;
                self.stop(status, reason, false);
                data.len()
            }
        }
    }

    /// Parses and checks a request head at the start of `buf`: `Ok(None)` if incomplete,
    /// its length and framing if good.
    #[allow(clippy::type_complexity)]
    fn check_head(&self, buf: &[u8]) -> Result<Option<(usize, Framing)>, (StatusCode, String)> {
        // Left uninitialized: httparse writes the fields it finds (hyper does the same), and
        // every request does not pay for clearing 100 of them.
        let mut fields =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Partial) => return Ok(None),
            Ok(httparse::Status::Complete(len)) => len,
            Err(httparse::Error::TooManyHeaders) => {
                return Err((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("more than {MAX_HEADERS} header fields"),
                ))
            }
            Err(httparse::Error::Version) if other_version(buf) => {
                return Err((
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "only HTTP/1.0 and HTTP/1.1 are served".into(),
                ))
            }
            Err(e) => return Err(bad(format!("malformed request head ({e})"))),
        };
        if len > self.limits.max_header_size {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request head is larger than {} bytes",
                    self.limits.max_header_size
                ),
            ));
        }
        let method = req.method.unwrap_or_default();
        let target = req.path.unwrap_or_default();
        if target.len() > MAX_TARGET {
            return Err((
                StatusCode::URI_TOO_LONG,
                format!("the request target is longer than {MAX_TARGET} bytes"),
            ));
        }
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(bad("invalid method"));
        }
        if !plain_target(target) && http::Uri::try_from(target).is_err() {
            return Err(bad("invalid request target"));
        }
        let http11 = req.version == Some(1);
        let mut length: Option<u64> = None;
        let mut lengths = 0;
        let mut codings: Vec<&[u8]> = Vec::new();
        let mut hosts = 0;
        let (mut upgrade, mut connection_upgrade) = (false, false);
        for f in req.headers.iter() {
            let name = f.name;
            // Only the names of these lengths can matter: most fields are passed over at one
            // comparison.
            if !matches!(name.len(), 4 | 7 | 10 | 14 | 17) {
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                let n = content_length(f.value).ok_or_else(|| bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("Content-Length fields that differ"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                codings.push(f.value);
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                if !valid_host(f.value) {
                    return Err(bad("invalid Host"));
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            } else if name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= std::str::from_utf8(f.value).is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                });
            }
        }
        if http11 && hosts == 0 {
            return Err(bad("no Host header field (RFC 9112 §3.2)"));
        }
        if hosts > 1 {
            return Err(bad("more than one Host header field (RFC 9112 §3.2)"));
        }
        let framing = if !codings.is_empty() {
            if lengths > 0 {
                return Err(bad(
                    "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)",
                ));
            }
            if !http11 {
                return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
            }
            let last = codings
                .last()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim);
            if !last.is_some_and(|c| c.eq_ignore_ascii_case("chunked")) {
                return Err(bad("a Transfer-Encoding whose last coding is not chunked"));
            }
            Framing::Chunked
        } else {
            match length {
                Some(n) if n > u64::MAX - 2 => return Err(bad("invalid Content-Length")),
                Some(n) => Framing::Length(n),
                None => Framing::None,
            }
        };
        if let (Framing::Length(n), max) = (&framing, self.limits.max_body) {
            if max > 0 && *n > max {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body ({n} bytes) is larger than {max} bytes"),
                ));
            }
        }
        // A request that may switch protocols (RFC 9110 §7.8, §9.3.6): if the service
        // agrees, what follows is no longer HTTP/1.1.
        let switching = method == "CONNECT" || (http11 && upgrade && connection_upgrade);
        Ok(Some((
            len,
            if switching {
                Framing::Transparent
            } else {
                framing
            },
        )))
    }

    /// Reads chunked body bytes from `data[i..]`: where it stopped, and false if it refused
    /// the body there (the bytes before are good).
    fn chunk_bytes(&mut self, mut c: Chunk, data: &[u8], mut i: usize) -> (usize, bool) {
        use ChunkStep::*;
        while i < data.len() {
            if c.step == Data {
                let n = (data.len() - i).min(usize::try_from(c.size).unwrap_or(usize::MAX));
                i += n;
                c.size -= n as u64;
                c.total += n as u64;
                if c.size == 0 {
                    c.step = DataCr;
                }
                continue;
            }
            let b = data[i];
            let next = match (c.step, b) {
                (Start, _) => match (b as char).to_digit(16) {
                    Some(d) => {
                        c.size = u64::from(d);
                        Ok(Size)
                    }
                    None => Err("invalid chunk size"),
                },
                (Size, _) if b.is_ascii_hexdigit() => {
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    match c.size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                        Some(s) => {
                            c.size = s;
                            Ok(Size)
                        }
                        None => Err("chunk size overflow"),
                    }
                }
                (Size | SizeLws, b'\t' | b' ') => Ok(SizeLws),
                (Size | SizeLws, b';') => Ok(Extension),
                (Size | SizeLws, b'\r') => Ok(SizeLf),
                (Size | SizeLws, _) => Err("invalid chunk size"),
                (Extension, b'\r') => Ok(SizeLf),
                (Extension, b'\n') => Err("a chunk extension contains a newline"),
                (Extension, _) => {
                    c.extensions += 1;
                    if c.extensions >= MAX_CHUNK_EXTENSIONS {
                        Err("chunk extensions over the limit")
                    } else {
                        Ok(Extension)
                    }
                }
                (SizeLf, b'\n') if c.size == 0 => Ok(EndCr),
                (SizeLf, b'\n') => {
                    let max = self.limits.max_body;
                    if max > 0 && c.total.saturating_add(c.size) > max {
                        self.stop(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the request body is larger than {max} bytes"),
                            true,
                        );
                        return (i, false);
                    }
                    Ok(Data)
                }
                (SizeLf, _) => Err("invalid chunk size line"),
                (Data, _) => unreachable!("data is consumed above"),
                (DataCr, b'\r') => Ok(DataLf),
                (DataCr, _) => Err("no CRLF after chunk data"),
                (DataLf, b'\n') => Ok(Start),
                (DataLf, _) => Err("no CRLF after chunk data"),
                (EndCr, b'\r') => Ok(EndLf),
                (EndCr | Trailer, _) => {
                    c.trailer_bytes += 1;
                    self.trailers.push(b);
                    if c.trailer_bytes > self.limits.max_header_size {
                        Err("the trailer section is too large")
                    } else if b == b'\r' {
                        Ok(TrailerLf)
                    } else {
                        Ok(Trailer)
                    }
                }
                (TrailerLf, b'\n') => {
                    c.trailer_fields += 1;
                    self.trailers.push(b);
                    if c.trailer_fields > MAX_HEADERS {
                        Err("too many trailer fields")
                    } else {
                        Ok(EndCr)
                    }
                }
                (TrailerLf, _) => Err("invalid trailer line"),
                (EndLf, b'\n') => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    self.trailers.extend_from_slice(b"\r\n");
                    let ok = self.trailers.len() == 2
                        || matches!(
                            httparse::parse_headers(&self.trailers, &mut fields),
                            Ok(httparse::Status::Complete(_))
                        );
                    self.trailers = Vec::new();
                    if ok {
                        self.state = State::Head;
                        return (i + 1, true);
                    }
                    Err("malformed trailer fields")
                }
                (EndLf, _) => Err("invalid end of a chunked body"),
            };
            match next {
                Ok(s) => {
                    c.step = s;
                    i += 1;
                }
                Err(why) => {
                    self.trailers = Vec::new();
                    self.stop(
                        StatusCode::BAD_REQUEST,
                        format!("malformed chunked body: {why}"),
                        true,
                    );
                    return (i, false);
                }
            }
        }
        self.state = State::Chunked(c);
        (i, true)
    }
}

/// Closing the connection, in [`Guarded::poll_shutdown`].
enum Closing {
    Open,
    Writing(Bytes),
    Shutdown,
    Linger {
        idle: Pin<Box<Sleep>>,
        until: Instant,
        scratch: Vec<u8>,
    },
    Done,
}

/// The client's stream as hyper sees it through the guard. See the
/// [module documentation](self).
pub(crate) struct Guarded<S> {
    inner: S,
    framer: Framer,
    /// Bytes ready for hyper, ahead of what is read next.
    ready: BytesMut,
    state: Arc<GuardState>,
    closing: Closing,
}

impl<S> Guarded<S> {
    /// Guards `inner`; `notify` is woken when a request is refused.
    pub(crate) fn new(
        inner: S,
        limits: Limits,
        notify: Arc<Notify>,
    ) -> (Guarded<S>, Arc<GuardState>) {
        let state = Arc::new(GuardState::notifying(notify));
        (
            Guarded {
                inner,
                framer: Framer::new(limits),
                ready: BytesMut::new(),
                state: state.clone(),
                closing: Closing::Open,
            },
            state,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if !me.ready.is_empty() {
                let n = me.ready.len().min(buf.remaining());
                buf.put_slice(&me.ready[..n]);
                me.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(r) = &me.framer.reject {
                return if r.in_body {
                    // The end of the stream, where the body went wrong.
                    Poll::Ready(Ok(()))
                } else {
                    // Nothing more: the server closes the connection once the responses
                    // before it are written.
                    Poll::Pending
                };
            }
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut me.inner).poll_read(cx, buf))?;
            let got = buf.filled().len() - before;
            if got == 0 {
                return Poll::Ready(Ok(()));
            }
            let keep = me.framer.feed(&buf.filled()[before..], &mut me.ready);
            buf.set_filled(before + keep);
            if let Some(r) = &me.framer.reject {
                me.state.set(r.clone());
            }
            if keep > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Passed through, so that hyper writes a response's head and body with one `writev`
    /// instead of copying the body behind the head.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Writes the response to a refused head if there is one, sends the FIN, and lingers if
    /// request bytes may still be coming.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            match &mut me.closing {
                Closing::Open => {
                    me.closing = match &me.framer.reject {
                        Some(r) if !r.in_body => Closing::Writing(r.response()),
                        _ => Closing::Shutdown,
                    };
                }
                Closing::Writing(b) => {
                    while !b.is_empty() {
                        let n = std::task::ready!(Pin::new(&mut me.inner).poll_write(cx, b))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        b.advance(n);
                    }
                    std::task::ready!(Pin::new(&mut me.inner).poll_flush(cx))?;
                    me.closing = Closing::Shutdown;
                }
                Closing::Shutdown => {
                    std::task::ready!(Pin::new(&mut me.inner).poll_shutdown(cx))?;
                    let linger = me.framer.reject.is_some()
                        || !me.framer.at_boundary()
                        || !me.ready.is_empty();
                    me.closing = if linger {
                        let now = Instant::now();
                        Closing::Linger {
                            idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                            until: now + LINGER_TOTAL,
                            scratch: vec![0; 4096],
                        }
                    } else {
                        Closing::Done
                    };
                }
                Closing::Linger {
                    idle,
                    until,
                    scratch,
                } => {
                    let mut rb = ReadBuf::new(scratch);
                    match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                            let next = (Instant::now() + LINGER_IDLE).min(*until);
                            idle.as_mut().reset(next);
                            continue;
                        }
                        // The client's FIN, or an error: done.
                        Poll::Ready(_) => me.closing = Closing::Done,
                        Poll::Pending => {
                            std::task::ready!(idle.as_mut().poll(cx));
                            me.closing = Closing::Done;
                        }
                    }
                }
                Closing::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allocation-free checks accept nothing that `http`'s parsers refuse: every target
    /// and host of their alphabets up to a few bytes (and longer ones from a fixed
    /// generator), where they say yes, `http` says yes too.
    #[test]
    fn the_fast_checks_accept_only_what_http_accepts() {
        let t_alpha: Vec<u8> = (b'a'..=b'c')
            .chain(b'0'..=b'1')
            .chain(b"/-._~?=&%+:@!$'()*,;#[]{}| \"".iter().copied())
            .collect();
        let h_alpha: Vec<u8> = b"a0-.:9@[]_".to_vec();
        let mut seen = (0, 0);
        let mut check = |t: &[u8], host: bool| {
            let s = std::str::from_utf8(t).unwrap();
            if host {
                if plain_host(t) {
                    seen.1 += 1;
                    assert!(http::uri::Authority::try_from(t).is_ok(), "{s:?}");
                }
            } else if plain_target(s) {
                seen.0 += 1;
                assert!(http::Uri::try_from(s).is_ok(), "{s:?}");
            }
        };
        // Every string of up to 4 bytes after "/", and every host of up to 5 bytes.
        let mut stack: Vec<Vec<u8>> = vec![b"/".to_vec()];
        while let Some(t) = stack.pop() {
            check(&t, false);
            if t.len() < 5 {
                for &c in &t_alpha {
                    let mut n = t.clone();
                    n.push(c);
                    stack.push(n);
                }
            }
        }
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(t) = stack.pop() {
            check(&t, true);
            if t.len() < 5 {
                for &c in &h_alpha {
                    let mut n = t.clone();
                    n.push(c);
                    stack.push(n);
                }
            }
        }
        // Longer ones, and ports around the limit.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut t = vec![b'/'];
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push(t_alpha[(x % t_alpha.len() as u64) as usize]);
            }
            check(&t, false);
        }
        for p in ["0", "1", "80", "65535", "65536", "99999", "123456", ""] {
            check(format!("example.com:{p}").as_bytes(), true);
        }
        assert!(seen.0 > 1000 && seen.1 > 100, "{seen:?}");
        assert!(plain_target("/bytes/10?x=1") && plain_host(b"example.com:8080"));
        assert!(!plain_target("//x") && !plain_host(b"example.com:65536"));
    }
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_header_size: 1024,
        max_body: 100,
    };

    /// Feeds `input` in pieces of `step` bytes; returns what hyper gets and the refusal.
    fn run(limits: Limits, input: &[u8], step: usize) -> (Vec<u8>, Option<Reject>) {
        let mut f = Framer::new(limits);
        let mut ready = BytesMut::new();
        let mut got = Vec::new();
        for piece in input.chunks(step.max(1)) {
            let n = f.feed(piece, &mut ready);
            got.extend_from_slice(&piece[..n]);
            got.extend_from_slice(&ready);
            ready.clear();
        }
        (got, f.reject().cloned())
    }

    /// Every split of `input` gives the same result.
    fn check(limits: Limits, input: &[u8]) -> (Vec<u8>, Option<Reject>) {
        let whole = run(limits, input, input.len());
        for step in [1, 2, 3, 7, 16, 100] {
            assert_eq!(run(limits, input, step), whole, "step {step}");
        }
        whole
    }

    fn refused(input: &[u8]) -> Reject {
        let (got, r) = check(LIMITS, input);
        assert!(got.is_empty(), "nothing goes to hyper: {got:?}");
        r.expect("refused")
    }

    #[test]
    fn good_requests_pass_untouched() {
        let input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            \r\nPUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n3 \r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
            GET /10 HTTP/1.0\r\n\r\n";
        let (got, r) = check(LIMITS, input);
        assert_eq!(r, None);
        assert_eq!(got, input);
        let mut f = Framer::new(LIMITS);
        let n = f.feed(input, &mut BytesMut::new());
        assert_eq!(n, input.len(), "all in place");
        assert_eq!(f.requests, 4);
        assert!(f.at_boundary());
    }

    #[test]
    fn an_incomplete_head_is_withheld() {
        let mut f = Framer::new(LIMITS);
        let mut ready = BytesMut::new();
        assert_eq!(f.feed(b"GET / HTTP/1.1\r\nHo", &mut ready), 0);
        assert!(ready.is_empty() && !f.at_boundary());
        assert_eq!(f.feed(b"st: a\r\n\r\nGET", &mut ready), 0);
        assert_eq!(&ready[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(f.head, b"GET");
    }

    #[test]
    fn both_lengths_are_refused() {
        for input in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        ] {
            let r = refused(input);
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert!(r.reason.contains("both Content-Length and Transfer-Encoding"));
            assert_eq!((r.request, r.in_body), (1, false));
        }
    }

    #[test]
    fn bad_heads_get_their_status() {
        use StatusCode as S;
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(1100)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS)
        );
        for (input, status, why) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], S::BAD_REQUEST, "no Host"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                S::BAD_REQUEST,
                "more than one Host",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                S::BAD_REQUEST,
                "invalid Host",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
                S::BAD_REQUEST,
                "invalid Host",
            ),
            (b"GARBAGE\r\n\r\n", S::BAD_REQUEST, "malformed request head"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: y\r\n\r\n",
                S::BAD_REQUEST,
                "malformed",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
                S::BAD_REQUEST,
                "malformed",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                S::BAD_REQUEST,
                "differ",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                S::BAD_REQUEST,
                "invalid Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                S::BAD_REQUEST,
                "invalid Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                S::BAD_REQUEST,
                "invalid Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                S::BAD_REQUEST,
                "not chunked",
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                S::BAD_REQUEST,
                "HTTP/1.0",
            ),
            (
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                S::HTTP_VERSION_NOT_SUPPORTED,
                "HTTP/1.0 and HTTP/1.1",
            ),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                S::HTTP_VERSION_NOT_SUPPORTED,
                "HTTP/1.0 and HTTP/1.1",
            ),
            (
                b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
                S::BAD_REQUEST,
                "malformed",
            ),
            (
                big.as_bytes(),
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "larger than 1024 bytes",
            ),
            (
                many.as_bytes(),
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "more than 100 header fields",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
                S::PAYLOAD_TOO_LARGE,
                "(101 bytes) is larger than 100 bytes",
            ),
        ] {
            let r = refused(input);
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(input));
            assert!(r.reason.contains(why), "{why:?} in {r:?}");
            assert!(!r.in_body);
        }
        // An incomplete head that has already passed the limit.
        let (got, r) = check(LIMITS, &big.as_bytes()[..1050]);
        assert!(got.is_empty());
        assert_eq!(r.unwrap().status, S::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // HTTP/1.0 needs no Host; an empty Host is allowed.
        assert_eq!(check(LIMITS, b"GET / HTTP/1.0\r\n\r\n").1, None);
        assert_eq!(check(LIMITS, b"GET / HTTP/1.1\r\nHost:\r\n\r\n").1, None);
        assert_eq!(
            check(LIMITS, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").1,
            None
        );
    }

    #[test]
    fn the_requests_before_a_bad_one_pass() {
        let good = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        let mut input = good.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (got, r) = check(LIMITS, &input);
        assert_eq!(got, good);
        let r = r.unwrap();
        assert_eq!(
            (r.status, r.request, r.in_body),
            (StatusCode::BAD_REQUEST, 3, false)
        );
    }

    #[test]
    fn chunked_bodies_are_checked() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, good, why) in [
            (&b"zz\r\n"[..], 0, "invalid chunk size"),
            (b"5\r\nhelloX", 8, "no CRLF after chunk data"),
            (b"5\nhello\r\n", 1, "invalid chunk size"),
            (b"5;a\nb\r\n", 3, "newline"),
            (b"fffffffffffffffff\r\n", 16, "overflow"),
            (b"0\r\nBad Trailer: 1\r\n\r\n", 20, "malformed trailer"),
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(body);
            let (got, r) = check(LIMITS, &input);
            assert_eq!(got, input[..head.len() + good], "{why}");
            let r = r.unwrap();
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert!(r.reason.contains(why), "{why:?} in {r:?}");
            assert_eq!((r.request, r.in_body), (1, true));
        }
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        // 60 + 40 bytes: at the limit.
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut ok = head.to_vec();
        ok.extend_from_slice(
            format!(
                "3c\r\n{}\r\n28\r\n{}\r\n0\r\n\r\n",
                "a".repeat(60),
                "b".repeat(40)
            )
            .as_bytes(),
        );
        assert_eq!(check(LIMITS, &ok), (ok.clone(), None));
        // One more byte: refused when its chunk's size line is complete.
        let mut over = head.to_vec();
        let first = format!("3c\r\n{}\r\n", "a".repeat(60));
        over.extend_from_slice(first.as_bytes());
        over.extend_from_slice(format!("29\r\n{}\r\n0\r\n\r\n", "b".repeat(41)).as_bytes());
        let (got, r) = check(LIMITS, &over);
        assert_eq!(got, over[..head.len() + first.len() + 3]);
        let r = r.unwrap();
        assert_eq!((r.status, r.in_body), (StatusCode::PAYLOAD_TOO_LARGE, true));
        assert!(r.reason.contains("larger than 100 bytes"));
        // No limit.
        let unlimited = Limits {
            max_body: 0,
            ..LIMITS
        };
        assert_eq!(check(unlimited, &over).1, None);
        let big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n";
        assert_eq!(check(unlimited, big).1, None);
        assert_eq!(
            check(
                LIMITS,
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
            )
            .1,
            None
        );
    }

    #[test]
    fn upgrades_end_the_checks() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: keep-alive, Upgrade\r\n\r\nGARBAGE\r\n\r\n";
        assert_eq!(check(LIMITS, input), (input.to_vec(), None));
        let input = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nGARBAGE\r\n\r\n";
        assert_eq!(check(LIMITS, input), (input.to_vec(), None));
        // Upgrade without the connection option is an ordinary request.
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\n\r\nGARBAGE\r\n\r\n";
        assert_eq!(
            check(LIMITS, input).1.unwrap().status,
            StatusCode::BAD_REQUEST
        );
    }

    /// What hyper gets from `input` fed in pieces of the given sizes (cycled).
    fn run_split(limits: Limits, input: &[u8], splits: &[usize]) -> (Vec<u8>, Framer) {
        let mut f = Framer::new(limits);
        let mut ready = BytesMut::new();
        let mut got = Vec::new();
        let (mut i, mut k) = (0, 0);
        while i < input.len() {
            let n = splits[k % splits.len()].clamp(1, input.len() - i);
            k += 1;
            let piece = &input[i..i + n];
            let kept = f.feed(piece, &mut ready);
            got.extend_from_slice(&piece[..kept]);
            got.extend_from_slice(&ready);
            ready.clear();
            i += n;
        }
        (got, f)
    }

    /// A well-formed request: a method, a body framed by length or chunks, or none.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        (
            0..3u8,
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(1..70usize, 1..5),
            any::<bool>(),
        )
            .prop_map(|(kind, body, chunks, trailer)| {
                let mut r = Vec::new();
                match kind {
                    0 => r.extend_from_slice(b"GET /a?b=c HTTP/1.1\r\nHost: h:8\r\nX: y\r\n\r\n"),
                    1 => {
                        r.extend_from_slice(
                            format!(
                                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        );
                        r.extend_from_slice(&body);
                    }
                    _ => {
                        r.extend_from_slice(
                            b"PUT / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: Chunked\r\n\r\n",
                        );
                        let mut rest = &body[..];
                        for n in chunks.iter().cycle() {
                            if rest.is_empty() {
                                break;
                            }
                            let n = (*n).min(rest.len());
                            r.extend_from_slice(format!("{n:x};e=1\r\n").as_bytes());
                            r.extend_from_slice(&rest[..n]);
                            r.extend_from_slice(b"\r\n");
                            rest = &rest[n..];
                        }
                        r.extend_from_slice(b"0\r\n");
                        if trailer {
                            r.extend_from_slice(b"X-T: 1\r\n");
                        }
                        r.extend_from_slice(b"\r\n");
                    }
                }
                r
            })
    }

    proptest! {
        /// Any bytes, in any pieces: no panic, and hyper gets a prefix of them, unchanged.
        #[test]
        fn hyper_gets_a_prefix_of_any_bytes(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            splits in proptest::collection::vec(1..300usize, 1..8),
        ) {
            let (got, _) = run_split(LIMITS, &input, &splits);
            prop_assert_eq!(&got[..], &input[..got.len()]);
        }

        /// The same with a well-formed start, so that the bytes get past the first head.
        #[test]
        fn hyper_gets_a_prefix_of_requests_then_noise(
            reqs in proptest::collection::vec(request(), 1..4),
            noise in proptest::collection::vec(any::<u8>(), 0..200),
            splits in proptest::collection::vec(1..300usize, 1..8),
        ) {
            let mut input = reqs.concat();
            let good = input.len();
            input.extend_from_slice(&noise);
            let limits = Limits { max_header_size: 1024, max_body: 0 };
            let (got, _) = run_split(limits, &input, &splits);
            prop_assert_eq!(&got[..], &input[..got.len()]);
            prop_assert!(got.len() >= good);
        }

        /// Well-formed requests, in any pieces, all go to hyper, each counted once.
        #[test]
        fn well_formed_requests_pass_whole(
            reqs in proptest::collection::vec(request(), 1..6),
            splits in proptest::collection::vec(1..300usize, 1..8),
        ) {
            let input = reqs.concat();
            let limits = Limits { max_header_size: 1024, max_body: 0 };
            let (got, f) = run_split(limits, &input, &splits);
            prop_assert_eq!(f.reject(), None);
            prop_assert_eq!(got, input);
            prop_assert_eq!(f.requests, reqs.len() as u64);
            prop_assert!(f.at_boundary());
        }
    }

    #[test]
    fn the_response_to_a_refused_head() {
        let r = Reject {
            status: StatusCode::BAD_REQUEST,
            reason: "no Host header field (RFC 9112 §3.2)".into(),
            request: 1,
            in_body: false,
        };
        let body = "Bad Request: no Host header field (RFC 9112 §3.2)\n";
        let want = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\
             date: Sun, 09 Sep 2001 01:46:40 GMT\r\n\r\n{body}",
            body.len()
        );
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(r.response_at(t), want.as_bytes());
        let r = Reject {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..r
        };
        assert!(r
            .response_at(t)
            .starts_with(b"HTTP/1.1 413 Content Too Large\r\n"));
    }
}
