//! HTTP/1.1 messages in a byte stream (RFC 9112): request lines and status lines, with the
//! message bodies skipped by their framing, so that every message of a persistent connection
//! is found.
//!
//! [`Http1Stream`] reads one direction of a connection in order. It finds each message's start
//! line (RFC 9112 §3 for requests, §4 for responses), reads the header fields for the body's
//! length (§6: `Transfer-Encoding: chunked`, `Content-Length`), and skips the body (chunked
//! bodies chunk by chunk, §7.1). A response to HEAD, a 1xx, 204 or 304 response has no body
//! (§6.3); a response without a length runs to the end of the connection. A request line
//! `PRI * HTTP/2.0` is the HTTP/2 connection preface (RFC 9113 §3.4), and a `101` response to
//! a request with `Upgrade: h2c` switches the connection to HTTP/2: both are reported as
//! [`Http1Event::SwitchToH2`]. A line longer than [`MAX_LINE`] or a malformed start line stops
//! the stream ([`Http1Event::Lost`]): memory stays bounded whatever the peer sends.

use std::collections::VecDeque;

/// The longest start line or header field line kept (longer ones stop the stream).
pub const MAX_LINE: usize = 16 * 1024;

/// The longest request target kept in an event (longer ones are cut, with `…`).
pub const MAX_TARGET: usize = 120;

/// A request line: `method SP request-target SP HTTP-version` (RFC 9112 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
}

/// Parses a request line (without its CRLF). The method must be a token (RFC 9110 §5.6.2)
/// and the version `HTTP/x.y`.
///
/// ```
/// use synack_trace::decode::http1::parse_request_line;
///
/// let r = parse_request_line(b"GET /index.html HTTP/1.1").unwrap();
/// assert_eq!((r.method, r.target, r.version), ("GET", "/index.html", "HTTP/1.1"));
/// assert!(parse_request_line(b"\x16\x03\x01").is_none());
/// ```
pub fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(is_tchar)
        || target.is_empty()
        || !is_version(version)
    {
        return None;
    }
    Some(RequestLine {
        method,
        target,
        version,
    })
}

/// A status line: `HTTP-version SP status-code SP [reason-phrase]` (RFC 9112 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    pub version: &'a str,
    pub status: u16,
    pub reason: &'a str,
}

/// Parses a status line (without its CRLF).
///
/// ```
/// use synack_trace::decode::http1::parse_status_line;
///
/// let s = parse_status_line(b"HTTP/1.1 404 Not Found").unwrap();
/// assert_eq!((s.status, s.reason), (404, "Not Found"));
/// ```
pub fn parse_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let (version, rest) = line.split_once(' ')?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_version(version) || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(StatusLine {
        version,
        status: code.parse().ok()?,
        reason,
    })
}

fn is_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 8
        && v.starts_with("HTTP/")
        && b[5].is_ascii_digit()
        && b[6] == b'.'
        && b[7].is_ascii_digit()
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Which side of the connection a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: requests.
    Client,
    /// The server: responses.
    Server,
}

/// What an [`Http1Stream`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Event {
    /// A request (reported at the end of its header fields; the target cut to
    /// [`MAX_TARGET`] characters), and whether it asked to upgrade to h2c (RFC 7540 §3.2).
    Request {
        method: String,
        target: String,
        version: String,
        upgrade_h2c: bool,
    },
    /// A status line.
    Response { status: u16, reason: String },
    /// From here on the stream is HTTP/2 frames (after a `PRI * HTTP/2.0` preface line, whose
    /// remaining 8 bytes `\r\nSM\r\n\r\n` the stream consumed, or after a 101 response).
    SwitchToH2,
    /// The stream could not be followed any further (why).
    Lost(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum St {
    /// Reading a start line.
    Start,
    /// Reading header lines.
    Headers,
    /// Skipping `n` body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    ChunkCrlf,
    /// Reading trailer lines until the empty one.
    Trailers,
    /// A body to the end of the connection, an upgrade, or lost: nothing more to find.
    Done,
    /// The `\r\nSM\r\n\r\n` after `PRI * HTTP/2.0\r\n`.
    Preface(usize),
}

/// The rest of the HTTP/2 preface after its first line.
const PREFACE_TAIL: &[u8] = b"\r\nSM\r\n\r\n";

/// One direction of an HTTP/1.1 connection, read in order. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct Http1Stream {
    side: Side,
    st: St,
    line: Vec<u8>,
    /// For the message being read: its body length, chunked, and (responses) status.
    content_length: Option<u64>,
    chunked: bool,
    status: u16,
    upgrade_h2c: bool,
    /// The request line of the request whose header fields are being read.
    request: Option<(String, String, String)>,
    /// Request methods (client) whose responses are still due (server), oldest first; and
    /// whether a request asked for an h2c upgrade.
    pending: VecDeque<(bool, bool)>,
}

/// Requests remembered for matching responses (HEAD, Upgrade); older ones are forgotten.
const MAX_PENDING: usize = 256;

impl Http1Stream {
    /// A stream of `side`'s messages.
    pub fn new(side: Side) -> Http1Stream {
        Http1Stream {
            side,
            st: St::Start,
            line: Vec::new(),
            content_length: None,
            chunked: false,
            status: 0,
            upgrade_h2c: false,
            request: None,
            pending: VecDeque::new(),
        }
    }

    /// Whether the stream has stopped (lost, a body to the end, or switched protocols).
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// Tells a server stream of a request the client sent: whether it was HEAD and whether
    /// it asked to upgrade to h2c (so the response's body and a 101 are read right).
    pub fn expect_response(&mut self, head: bool, upgrade_h2c: bool) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((head, upgrade_h2c));
    }

    /// Reads `data`, the next bytes of the stream, and returns the bytes consumed: all of
    /// them, except after a [`Http1Event::SwitchToH2`], where the rest is HTTP/2.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Http1Event>) -> usize {
        let total = data.len();
        while !data.is_empty() {
            match self.st.clone() {
                St::Done => return total,
                St::Body(n) => {
                    let k = (n.min(data.len() as u64)) as usize;
                    data = &data[k..];
                    self.st = if n - k as u64 == 0 {
                        St::Start
                    } else {
                        St::Body(n - k as u64)
                    };
                }
                St::ChunkData(n) => {
                    let k = (n.min(data.len() as u64)) as usize;
                    data = &data[k..];
                    self.st = if n - k as u64 == 0 {
                        St::ChunkCrlf
                    } else {
                        St::ChunkData(n - k as u64)
                    };
                }
                St::Preface(got) => {
                    let want = &PREFACE_TAIL[got..];
                    let k = want.len().min(data.len());
                    if data[..k] != want[..k] {
                        self.lose("a bad HTTP/2 preface", out);
                        return total;
                    }
                    data = &data[k..];
                    if got + k == PREFACE_TAIL.len() {
                        self.st = St::Done;
                        out.push(Http1Event::SwitchToH2);
                        return total - data.len();
                    }
                    self.st = St::Preface(got + k);
                }
                St::Start | St::Headers | St::ChunkSize | St::ChunkCrlf | St::Trailers => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        if self.line.len() + data.len() > MAX_LINE {
                            self.lose("a line too long", out);
                            return total;
                        }
                        self.line.extend_from_slice(data);
                        return total;
                    };
                    if self.line.len() + nl > MAX_LINE {
                        self.lose("a line too long", out);
                        return total;
                    }
                    self.line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let switched = self.line_done(&line, out);
                    if switched {
                        return total - data.len();
                    }
                }
            }
        }
        total
    }

    fn lose(&mut self, why: &'static str, out: &mut Vec<Http1Event>) {
        self.st = St::Done;
        self.line = Vec::new();
        out.push(Http1Event::Lost(why));
    }

    /// One whole line in state `self.st`; returns whether the stream switched to HTTP/2.
    fn line_done(&mut self, line: &[u8], out: &mut Vec<Http1Event>) -> bool {
        match self.st {
            St::Start => {
                if line.is_empty() {
                    // RFC 9112 §2.2: at least one empty line before a request-line is ignored.
                    return false;
                }
                self.content_length = None;
                self.chunked = false;
                self.upgrade_h2c = false;
                match self.side {
                    Side::Client => {
                        let Some(r) = parse_request_line(line) else {
                            self.lose("not an HTTP/1 request line", out);
                            return false;
                        };
                        if r.method == "PRI" && r.target == "*" && r.version == "HTTP/2.0" {
                            self.st = St::Preface(0);
                            return false;
                        }
                        let mut target: String = r.target.chars().take(MAX_TARGET).collect();
                        if target.len() < r.target.len() {
                            target.push('…');
                        }
                        self.request = Some((r.method.to_owned(), target, r.version.to_owned()));
                        self.status = 0;
                    }
                    Side::Server => {
                        let Some(s) = parse_status_line(line) else {
                            self.lose("not an HTTP/1 status line", out);
                            return false;
                        };
                        out.push(Http1Event::Response {
                            status: s.status,
                            reason: s.reason.chars().take(MAX_TARGET).collect(),
                        });
                        self.status = s.status;
                    }
                }
                self.st = St::Headers;
                false
            }
            St::Headers => {
                if !line.is_empty() {
                    self.header(line);
                    return false;
                }
                self.end_of_headers(out)
            }
            St::ChunkSize => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size).ok().map(str::trim);
                match size.and_then(|s| u64::from_str_radix(s, 16).ok()) {
                    Some(0) => self.st = St::Trailers,
                    Some(n) => self.st = St::ChunkData(n),
                    None => self.lose("a bad chunk size", out),
                }
                false
            }
            St::ChunkCrlf => {
                if line.is_empty() {
                    self.st = St::ChunkSize;
                } else {
                    self.lose("no CRLF after a chunk", out);
                }
                false
            }
            St::Trailers => {
                if line.is_empty() {
                    self.st = St::Start;
                }
                false
            }
            _ => false,
        }
    }

    fn header(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_h2c |= value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("h2c"));
        }
    }

    /// The empty line after the header fields: what body follows.
    fn end_of_headers(&mut self, out: &mut Vec<Http1Event>) -> bool {
        match self.side {
            Side::Client => {
                if let Some((method, target, version)) = self.request.take() {
                    out.push(Http1Event::Request {
                        method,
                        target,
                        version,
                        upgrade_h2c: self.upgrade_h2c,
                    });
                }
                // RFC 9112 §6.3: a request without a length has no body.
                self.st = if self.chunked {
                    St::ChunkSize
                } else {
                    match self.content_length {
                        Some(n) if n > 0 => St::Body(n),
                        _ => St::Start,
                    }
                };
                false
            }
            Side::Server => {
                let status = self.status;
                if (100..200).contains(&status) {
                    if status == 101 {
                        let h2c = self.pending.front().is_some_and(|p| p.1);
                        self.st = St::Done;
                        if h2c {
                            out.push(Http1Event::SwitchToH2);
                            return true;
                        }
                        return false;
                    }
                    // An interim response: the final one follows for the same request.
                    self.st = St::Start;
                    return false;
                }
                let (head, _) = self.pending.pop_front().unwrap_or((false, false));
                self.st = if head || status == 204 || status == 304 {
                    St::Start
                } else if self.chunked {
                    St::ChunkSize
                } else {
                    match self.content_length {
                        Some(0) => St::Start,
                        Some(n) => St::Body(n),
                        // Read until the connection closes (RFC 9112 §6.3 item 8).
                        None => St::Done,
                    }
                };
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(chunks: &[&[u8]]) -> Vec<Http1Event> {
        let mut s = Http1Stream::new(Side::Client);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn pipelined_requests_with_bodies_in_pieces() {
        let all = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
        let whole = requests(&[all]);
        let bytewise: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(whole, requests(&bytewise));
        let targets: Vec<String> = whole
            .iter()
            .map(|e| match e {
                Http1Event::Request { method, target, .. } => format!("{method} {target}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(targets, ["GET /a", "POST /b", "PUT /c", "GET /d"]);
    }

    #[test]
    fn preface_switches_to_h2() {
        let mut s = Http1Stream::new(Side::Client);
        let mut out = Vec::new();
        let data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04";
        let used = s.feed(data, &mut out);
        assert_eq!(used, 24);
        assert_eq!(out, [Http1Event::SwitchToH2]);
    }

    #[test]
    fn responses_skip_bodies_and_know_head() {
        let mut s = Http1Stream::new(Side::Server);
        s.expect_response(false, false);
        s.expect_response(true, false);
        s.expect_response(false, false);
        let mut out = Vec::new();
        s.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            &mut out,
        );
        let st: Vec<u16> = out
            .iter()
            .filter_map(|e| match e {
                Http1Event::Response { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(st, [200, 200, 404]);
    }

    #[test]
    fn garbage_and_long_lines_stop_the_stream() {
        assert_eq!(
            requests(&[b"\x16\x03\x01\x02\x00\n"]),
            [Http1Event::Lost("not an HTTP/1 request line")]
        );
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(requests(&[&long]), [Http1Event::Lost("a line too long")]);
    }
}
