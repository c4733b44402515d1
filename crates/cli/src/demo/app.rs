//! The applications of the demo: an HTTP/1.1-like client asking for `GET /bytes/N` and a
//! server answering with N bytes of a deterministic pattern. Both are polled after every step
//! of the network and drive their connection through the endpoint's handle API.

use std::net::SocketAddr;

use synack_tcp::{ConnId, Endpoint, Instant, ListenerId, RecvError, SendError};

use super::DemoError;

/// The longest request or response head either side accepts.
const MAX_HEAD: usize = 8 * 1024;

/// The most bytes handed to `send` or taken from `recv` at once.
const CHUNK: usize = 64 * 1024;

/// Byte `i` of the reply body: 16-byte records, each its own offset as 15 hex digits and a
/// newline (`000000000000000\n000000000000010\n...`), so any misplaced byte shows where it
/// belongs.
pub fn pattern_byte(i: u64) -> u8 {
    let record = i & !15;
    match i & 15 {
        15 => b'\n',
        pos => {
            let shift = 4 * (14 - pos);
            b"0123456789abcdef"[((record >> shift) & 15) as usize]
        }
    }
}

/// Fills `buf` with the pattern from offset `start`.
pub fn fill_pattern(start: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(start + k as u64);
    }
}

/// The request for `n` body bytes.
pub fn request(n: u64) -> Vec<u8> {
    format!("GET /bytes/{n} HTTP/1.1\r\nHost: server\r\n\r\n").into_bytes()
}

/// The response head for `n` body bytes.
pub fn response_head(n: u64) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes()
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn conn_gone() -> DemoError {
    DemoError::Run("the connection vanished from the endpoint".into())
}

fn recv_error(who: &str, e: RecvError) -> DemoError {
    DemoError::Run(format!("{who}: receive failed: {e}"))
}

fn send_error(who: &str, e: SendError) -> DemoError {
    DemoError::Run(format!("{who}: send failed: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStep {
    Connecting,
    Sending { sent: usize },
    ReadingHead,
    ReadingBody { got: u64, len: u64 },
    Done,
}

/// Connects, sends one request, reads and checks the reply, then closes (first).
pub struct Client {
    conn: ConnId,
    step: ClientStep,
    request: Vec<u8>,
    expect: u64,
    head: Vec<u8>,
    /// Reply bytes read (head and body).
    pub received: u64,
}

impl Client {
    /// Opens a connection from `local` to `server` asking for `expect` bytes.
    pub fn connect(
        tcp: &mut Endpoint,
        now: Instant,
        local: std::net::IpAddr,
        server: SocketAddr,
        expect: u64,
    ) -> Result<Client, DemoError> {
        let conn = tcp
            .connect(now, local, None, server)
            .map_err(|e| DemoError::Run(format!("client: connect failed: {e}")))?;
        Ok(Client {
            conn,
            step: ClientStep::Connecting,
            request: request(expect),
            expect,
            head: Vec::new(),
            received: 0,
        })
    }

    pub fn is_done(&self) -> bool {
        self.step == ClientStep::Done
    }

    /// Does what can be done now.
    pub fn poll(&mut self, tcp: &mut Endpoint, now: Instant) -> Result<(), DemoError> {
        loop {
            let before = (self.step, self.received);
            self.poll_once(tcp, now)?;
            if (self.step, self.received) == before || self.step == ClientStep::Done {
                return Ok(());
            }
        }
    }

    fn poll_once(&mut self, tcp: &mut Endpoint, now: Instant) -> Result<(), DemoError> {
        let id = self.conn;
        match self.step {
            ClientStep::Connecting => {
                let (established, error) = tcp
                    .with_conn(now, id, |c| (c.is_established(), c.error()))
                    .ok_or_else(conn_gone)?;
                if let Some(e) = error {
                    return Err(DemoError::Run(format!("client: connect failed: {e}")));
                }
                if established {
                    self.step = ClientStep::Sending { sent: 0 };
                }
            }
            ClientStep::Sending { sent } => {
                let rest = &self.request[sent..];
                let n = tcp
                    .with_conn(now, id, |c| c.send(rest))
                    .ok_or_else(conn_gone)?
                    .map_err(|e| send_error("client", e))?;
                let sent = sent + n;
                self.step = if sent == self.request.len() {
                    ClientStep::ReadingHead
                } else {
                    ClientStep::Sending { sent }
                };
            }
            ClientStep::ReadingHead | ClientStep::ReadingBody { .. } => {
                let mut buf = vec![0u8; CHUNK];
                let r = tcp
                    .with_conn(now, id, |c| c.recv(&mut buf))
                    .ok_or_else(conn_gone)?;
                match r {
                    Ok(0) => {}
                    Ok(n) => {
                        self.received += n as u64;
                        self.take(&buf[..n], tcp, now)?;
                    }
                    Err(RecvError::Finished) => {
                        return Err(DemoError::Run(format!(
                            "client: the server closed the connection after {} reply bytes, \
                             before the whole reply",
                            self.received
                        )));
                    }
                    Err(e) => return Err(recv_error("client", e)),
                }
            }
            ClientStep::Done => {}
        }
        Ok(())
    }

    /// Reply bytes, in order.
    fn take(&mut self, mut data: &[u8], tcp: &mut Endpoint, now: Instant) -> Result<(), DemoError> {
        if self.step == ClientStep::ReadingHead {
            let old = self.head.len();
            self.head.extend_from_slice(data);
            let Some(end) = head_end(&self.head) else {
                if self.head.len() > MAX_HEAD {
                    return Err(DemoError::Run(format!(
                        "client: no end of the reply head in its first {MAX_HEAD} bytes"
                    )));
                }
                return Ok(());
            };
            let len = parse_reply_head(&self.head[..end])?;
            if len != self.expect {
                return Err(DemoError::Run(format!(
                    "client: asked for {} bytes, the reply announces {len}",
                    self.expect
                )));
            }
            data = &data[end - old..];
            self.head.truncate(end);
            self.step = ClientStep::ReadingBody { got: 0, len };
        }
        if let ClientStep::ReadingBody { got, len } = self.step {
            if data.len() as u64 > len - got {
                return Err(DemoError::Run(format!(
                    "client: {} bytes more than the {len} announced",
                    data.len() as u64 - (len - got)
                )));
            }
            for (k, &b) in data.iter().enumerate() {
                let at = got + k as u64;
                let want = pattern_byte(at);
                if b != want {
                    return Err(DemoError::Run(format!(
                        "client: reply body byte {at} is {b:#04x}, expected {want:#04x}"
                    )));
                }
            }
            let got = got + data.len() as u64;
            if got == len {
                // The whole reply is here and correct: the client closes first.
                tcp.close(now, self.conn);
                self.step = ClientStep::Done;
            } else {
                self.step = ClientStep::ReadingBody { got, len };
            }
        }
        Ok(())
    }
}

/// The body length a reply head announces.
fn parse_reply_head(head: &[u8]) -> Result<u64, DemoError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| DemoError::Run("client: the reply head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(DemoError::Run(format!(
            "client: unexpected reply status {status:?}"
        )));
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                return value.trim().parse().map_err(|_| {
                    DemoError::Run(format!("client: bad Content-Length {:?}", value.trim()))
                });
            }
        }
    }
    Err(DemoError::Run(
        "client: the reply has no Content-Length".into(),
    ))
}

/// The body length a request asks for: `GET /bytes/N HTTP/1.1`.
fn parse_request_head(head: &[u8]) -> Result<u64, DemoError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| DemoError::Run("server: the request is not UTF-8".into()))?;
    let line = text.split("\r\n").next().unwrap_or_default();
    line.strip_prefix("GET /bytes/")
        .and_then(|r| r.strip_suffix(" HTTP/1.1"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DemoError::Run(format!("server: unexpected request line {line:?}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerStep {
    Accepting,
    ReadingRequest,
    Sending { sent: u64, total: u64, head: usize },
    AwaitingEof,
    Done,
}

/// Accepts one connection, answers one request, and closes when the client has closed.
pub struct Server {
    listener: ListenerId,
    conn: Option<ConnId>,
    step: ServerStep,
    head: Vec<u8>,
    /// Request bytes read.
    pub received: u64,
}

impl Server {
    pub fn listen(tcp: &mut Endpoint, addr: SocketAddr) -> Result<Server, DemoError> {
        let listener = tcp
            .listen(addr, 16)
            .map_err(|e| DemoError::Run(format!("server: listen on {addr} failed: {e}")))?;
        Ok(Server {
            listener,
            conn: None,
            step: ServerStep::Accepting,
            head: Vec::new(),
            received: 0,
        })
    }

    pub fn is_done(&self) -> bool {
        self.step == ServerStep::Done
    }

    /// Does what can be done now.
    pub fn poll(&mut self, tcp: &mut Endpoint, now: Instant) -> Result<(), DemoError> {
        loop {
            let before = (self.step, self.received);
            self.poll_once(tcp, now)?;
            if (self.step, self.received) == before || self.step == ServerStep::Done {
                return Ok(());
            }
        }
    }

    fn poll_once(&mut self, tcp: &mut Endpoint, now: Instant) -> Result<(), DemoError> {
        if self.step == ServerStep::Accepting {
            if let Some(id) = tcp.accept(self.listener) {
                self.conn = Some(id);
                self.step = ServerStep::ReadingRequest;
                tcp.unlisten(self.listener);
            }
            return Ok(());
        }
        let Some(id) = self.conn else {
            return Ok(());
        };
        match self.step {
            ServerStep::Accepting | ServerStep::Done => {}
            ServerStep::ReadingRequest => {
                let mut buf = vec![0u8; CHUNK];
                let r = tcp
                    .with_conn(now, id, |c| c.recv(&mut buf))
                    .ok_or_else(conn_gone)?;
                match r {
                    Ok(0) => {}
                    Ok(n) => {
                        self.received += n as u64;
                        self.head.extend_from_slice(&buf[..n]);
                        if let Some(end) = head_end(&self.head) {
                            if end != self.head.len() {
                                return Err(DemoError::Run(
                                    "server: bytes after the request".into(),
                                ));
                            }
                            let len = parse_request_head(&self.head)?;
                            let head = response_head(len).len();
                            self.step = ServerStep::Sending {
                                sent: 0,
                                total: head as u64 + len,
                                head,
                            };
                        } else if self.head.len() > MAX_HEAD {
                            return Err(DemoError::Run(format!(
                                "server: no end of the request in its first {MAX_HEAD} bytes"
                            )));
                        }
                    }
                    Err(RecvError::Finished) => {
                        return Err(DemoError::Run(
                            "server: the client closed before sending a whole request".into(),
                        ));
                    }
                    Err(e) => return Err(recv_error("server", e)),
                }
            }
            ServerStep::Sending { sent, total, head } => {
                let room = tcp
                    .with_conn(now, id, |c| c.send_capacity())
                    .ok_or_else(conn_gone)?;
                let n = (total - sent).min(room.min(CHUNK) as u64) as usize;
                if n > 0 {
                    let mut buf = vec![0u8; n];
                    // The head (while `sent` is inside it), then the body's pattern.
                    let head_bytes = response_head(total - head as u64);
                    let from_head = head.saturating_sub(sent as usize).min(n);
                    if from_head > 0 {
                        let at = sent as usize;
                        buf[..from_head].copy_from_slice(&head_bytes[at..at + from_head]);
                    }
                    let body_at = (sent + from_head as u64) - head as u64;
                    fill_pattern(body_at, &mut buf[from_head..]);
                    let taken = tcp
                        .with_conn(now, id, |c| c.send(&buf))
                        .ok_or_else(conn_gone)?
                        .map_err(|e| send_error("server", e))?;
                    let sent = sent + taken as u64;
                    self.step = if sent == total {
                        ServerStep::AwaitingEof
                    } else {
                        ServerStep::Sending { sent, total, head }
                    };
                }
            }
            ServerStep::AwaitingEof => {
                let mut buf = [0u8; 512];
                let r = tcp
                    .with_conn(now, id, |c| c.recv(&mut buf))
                    .ok_or_else(conn_gone)?;
                match r {
                    Ok(0) => {}
                    Ok(_) => {
                        return Err(DemoError::Run(
                            "server: the client sent bytes after its request".into(),
                        ));
                    }
                    Err(RecvError::Finished) => {
                        // The client closed: close our side too.
                        tcp.close(now, id);
                        self.step = ServerStep::Done;
                    }
                    Err(e) => return Err(recv_error("server", e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_records_spell_their_offsets() {
        let mut b = [0u8; 48];
        fill_pattern(0, &mut b);
        assert_eq!(&b, b"000000000000000\n000000000000010\n000000000000020\n");
        let mut b = [0u8; 16];
        fill_pattern(0x12340, &mut b);
        assert_eq!(&b, b"000000000012340\n");
        assert_eq!(pattern_byte(0x1234a), b'1');
        assert_eq!(pattern_byte(0x1234d), b'4');
    }

    #[test]
    fn heads_parse() {
        assert_eq!(parse_request_head(&request(1234)).unwrap(), 1234);
        assert_eq!(parse_reply_head(&response_head(77)).unwrap(), 77);
        assert!(parse_request_head(b"POST / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_reply_head(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
