//! What the HTTP/2 server tests share: a [`Listener`] of in-memory streams (so that time can
//! be tokio's paused clock), a raw HTTP/2 client that writes and reads frames by hand (RFC
//! 9113 §4, HPACK of RFC 7541 for the few fields it needs), and h2's own client.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use synack_http::server::Listener;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The largest stream id: the first `GOAWAY` of a graceful close (RFC 9113 §6.8).
pub const MAX_STREAM: u32 = (1 << 31) - 1;

/// A listener whose connections are in-memory pipes made by [`MemListener::connect`].
pub struct MemListener {
    rx: mpsc::UnboundedReceiver<DuplexStream>,
}

/// Makes connections to a [`MemListener`].
#[derive(Clone)]
pub struct Connector {
    tx: mpsc::UnboundedSender<DuplexStream>,
    buf: usize,
}

impl Connector {
    /// A new connection; `buf` bytes may be in flight each way.
    pub fn connect(&self) -> DuplexStream {
        let (a, b) = tokio::io::duplex(self.buf);
        self.tx.send(b).expect("the server is running");
        a
    }

    /// The same with a pipe of `buf` bytes each way.
    pub fn connect_with(&self, buf: usize) -> DuplexStream {
        let (a, b) = tokio::io::duplex(buf);
        self.tx.send(b).expect("the server is running");
        a
    }
}

/// A listener, and how to connect to it (pipes of 256 KiB each way).
pub fn mem_listener() -> (MemListener, Connector) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        MemListener { rx },
        Connector {
            tx,
            buf: 256 * 1024,
        },
    )
}

impl Listener for MemListener {
    type Io = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
        match self.rx.recv().await {
            Some(s) => Ok((s, "127.0.0.1:40000".parse().unwrap())),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok("127.0.0.1:80".parse().unwrap())
    }
}

/// A frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Bytes,
}

impl Frame {
    fn word(&self, i: usize) -> u32 {
        u32::from_be_bytes(self.payload[i..i + 4].try_into().unwrap())
    }

    /// `GOAWAY`'s last stream id and error code.
    pub fn goaway(&self) -> (u32, u32) {
        assert_eq!(self.kind, GOAWAY, "{self:?}");
        (self.word(0) & MAX_STREAM, self.word(4))
    }

    /// `RST_STREAM`'s error code.
    pub fn reset_code(&self) -> u32 {
        assert_eq!(self.kind, RST_STREAM, "{self:?}");
        self.word(0)
    }

    /// `SETTINGS`' parameters, in order.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        assert_eq!(self.kind, SETTINGS, "{self:?}");
        self.payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }

    /// `WINDOW_UPDATE`'s increment.
    pub fn increment(&self) -> u32 {
        assert_eq!(self.kind, WINDOW_UPDATE, "{self:?}");
        self.word(0) & MAX_STREAM
    }

    /// The `:status` of a response's `HEADERS` (see [`status`]).
    pub fn status(&self) -> Option<u16> {
        assert_eq!(self.kind, HEADERS, "{self:?}");
        status(&self.payload)
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + payload.len());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A `SETTINGS` frame with `params`.
pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `first` (RFC 7541 §5.1).
pub fn hpack_int(first: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
pub fn hpack_str(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(0, 7, s.len(), out);
    out.extend_from_slice(s);
}

/// A request's header block: `:method`, `:scheme http`, `:path`, `:authority`, then
/// `extra` fields, all literal without indexing (RFC 7541 §6.2.2) but the static-table
/// ones.
pub fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    match method {
        "GET" => b.push(0x82),
        "POST" => b.push(0x83),
        m => {
            hpack_int(0x00, 4, 2, &mut b);
            hpack_str(m.as_bytes(), &mut b);
        }
    }
    b.push(0x86); // :scheme http
    if path == "/" {
        b.push(0x84);
    } else {
        hpack_int(0x00, 4, 4, &mut b);
        hpack_str(path.as_bytes(), &mut b);
    }
    hpack_int(0x00, 4, 1, &mut b);
    hpack_str(b"example.test", &mut b);
    for (n, v) in extra {
        b.push(0x00);
        hpack_str(n.as_bytes(), &mut b);
        hpack_str(v.as_bytes(), &mut b);
    }
    b
}

/// The `:status` of a response header block whose first field is it: indexed from the
/// static table (RFC 7541 Appendix A), or a literal with the static name, as h2 writes it
/// (its value Huffman-coded, digits only). `None` for anything else.
pub fn status(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    let indexed = [
        (0x88, 200),
        (0x89, 204),
        (0x8a, 206),
        (0x8b, 304),
        (0x8c, 400),
        (0x8d, 404),
        (0x8e, 500),
    ];
    if let Some((_, s)) = indexed.iter().find(|(b, _)| *b == first) {
        return Some(*s);
    }
    // Literal with incremental indexing (0x40), without (0x00) or never (0x10), name 8.
    if !matches!(first, 0x48 | 0x08 | 0x18) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let len = (len_byte & 0x7f) as usize;
    let val = block.get(2..2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(val)?
    } else {
        String::from_utf8(val.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B: `0`-`2` have 5-bit
/// codes 0-2, `3`-`9` 6-bit codes 0x19-0x1f); `None` for anything else.
fn huffman_digits(b: &[u8]) -> Option<String> {
    let mut bits: Vec<u8> = Vec::new();
    for byte in b {
        for i in (0..8).rev() {
            bits.push((byte >> i) & 1);
        }
    }
    let mut out = String::new();
    let mut i = 0;
    let val = |from: usize, n: usize| {
        bits[from..from + n]
            .iter()
            .fold(0u32, |a, b| a << 1 | *b as u32)
    };
    while i < bits.len() {
        let left = bits.len() - i;
        if left < 8 && bits[i..].iter().all(|b| *b == 1) {
            break; // padding
        }
        if left >= 5 && val(i, 5) <= 2 {
            out.push((b'0' + val(i, 5) as u8) as char);
            i += 5;
        } else if left >= 6 && (0x19..=0x1f).contains(&val(i, 6)) {
            out.push((b'3' + (val(i, 6) - 0x19) as u8) as char);
            i += 6;
        } else {
            return None;
        }
    }
    Some(out)
}

/// A client that writes and reads HTTP/2 frames by hand.
pub struct Raw<S> {
    pub io: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    pub fn new(io: S) -> Raw<S> {
        Raw {
            io,
            buf: BytesMut::new(),
        }
    }

    /// The preface and a `SETTINGS` frame with `params`.
    pub async fn start(&mut self, params: &[(u16, u32)]) {
        let mut b = PREFACE.to_vec();
        b.extend(settings(params));
        self.write(&b).await;
    }

    /// `start`, then reads up to the server's `SETTINGS` (answering it) and returns it.
    pub async fn handshake(&mut self, params: &[(u16, u32)]) -> Frame {
        self.start(params).await;
        let f = self.next().await.expect("the server's SETTINGS");
        assert_eq!((f.kind, f.flags & ACK), (SETTINGS, 0), "{f:?}");
        self.write(&frame(SETTINGS, ACK, 0, &[])).await;
        f
    }

    /// A reader of what follows (with what was read ahead), and the writing half.
    pub fn split(
        self,
    ) -> (
        Raw<tokio::io::Join<tokio::io::ReadHalf<S>, tokio::io::Sink>>,
        tokio::io::WriteHalf<S>,
    ) {
        let (rd, wr) = tokio::io::split(self.io);
        (
            Raw {
                io: tokio::io::join(rd, tokio::io::sink()),
                buf: self.buf,
            },
            wr,
        )
    }

    pub async fn write(&mut self, b: &[u8]) {
        self.io.write_all(b).await.expect("write");
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.write(&frame(kind, flags, stream, payload)).await;
    }

    /// A `GET path` with no body on `stream`.
    pub async fn get(&mut self, stream: u32, path: &str) {
        let b = request_block("GET", path, &[]);
        self.send(HEADERS, END_HEADERS | END_STREAM, stream, &b)
            .await;
    }

    /// The next frame, or `None` at the end of the stream (or a reset).
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let stream =
                        u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & MAX_STREAM;
                    self.buf.advance(9);
                    let payload = self.buf.split_to(len).freeze();
                    return Some(Frame {
                        kind,
                        flags,
                        stream,
                        payload,
                    });
                }
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame that is not a `SETTINGS` ack, `WINDOW_UPDATE` or `PING` ack.
    pub async fn next_significant(&mut self) -> Option<Frame> {
        loop {
            let f = self.next().await?;
            match (f.kind, f.flags & ACK) {
                (SETTINGS, ACK) | (PING, ACK) => {}
                (WINDOW_UPDATE, _) => {}
                _ => return Some(f),
            }
        }
    }

    /// Reads frames until the end of the stream, answering `PING`s; returns them all.
    pub async fn drain(&mut self) -> Vec<Frame> {
        let mut all = Vec::new();
        while let Some(f) = self.next().await {
            if f.kind == PING && f.flags & ACK == 0 {
                let p = f.payload.clone();
                // The server may have closed its read side already.
                let _ = self.io.write_all(&frame(PING, ACK, 0, &p)).await;
            }
            all.push(f);
        }
        all
    }
}

/// The responses in `frames`: per stream, its status, the body bytes, and whether it
/// ended (`END_STREAM`) or was reset (with the code).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Option<u16>,
    pub body: Vec<u8>,
    pub ended: bool,
    pub reset: Option<u32>,
}

pub fn replies(frames: &[Frame]) -> std::collections::BTreeMap<u32, Reply> {
    let mut m: std::collections::BTreeMap<u32, Reply> = Default::default();
    for f in frames.iter().filter(|f| f.stream != 0) {
        let r = m.entry(f.stream).or_default();
        match f.kind {
            HEADERS => {
                if r.status.is_none() {
                    r.status = f.status();
                }
                r.ended |= f.flags & END_STREAM != 0;
            }
            DATA => {
                r.body.extend_from_slice(&f.payload);
                r.ended |= f.flags & END_STREAM != 0;
            }
            RST_STREAM => r.reset = Some(f.reset_code()),
            _ => {}
        }
    }
    m
}

/// The `GOAWAY`s in `frames`: (last stream id, error code).
pub fn goaways(frames: &[Frame]) -> Vec<(u32, u32)> {
    frames
        .iter()
        .filter(|f| f.kind == GOAWAY)
        .map(Frame::goaway)
        .collect()
}

/// h2's client on `io`: the request sender, with its connection driven on a task.
pub async fn h2_client<S>(io: S) -> h2::client::SendRequest<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// `GET path` through h2's client: the status and the body.
pub async fn h2_get(send: &mut h2::client::SendRequest<Bytes>, path: &str) -> (u16, Vec<u8>) {
    let req = http::Request::get(format!("http://example.test{path}"))
        .body(())
        .unwrap();
    let mut s = send.clone().ready().await.expect("ready");
    let (resp, _) = s.send_request(req, true).expect("send");
    let resp = resp.await.expect("response");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, out)
}

/// A paused clock's `now`, as a duration since `t0`.
pub fn since(t0: tokio::time::Instant) -> Duration {
    tokio::time::Instant::now() - t0
}
