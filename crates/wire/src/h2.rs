//! The HTTP/2 frame layer as it passes on a byte stream (RFC 9113): the client connection
//! preface (§3.4), the 9-byte frame headers (§4.1), the entries of a SETTINGS frame (§6.5.1)
//! and the few payload bytes that say what a control frame did (a WINDOW_UPDATE's increment,
//! §6.9; a GOAWAY's last stream and error code, §6.8; a RST_STREAM's error code, §6.4).
//!
//! [`FrameReader`] follows one direction of a connection fed in pieces of any size, in
//! constant memory: payloads are skipped, never buffered. The HTTP client and server watch
//! their connections with it (PINGs, GOAWAYs, resets, the peer's settings), and the trace
//! decoder draws the frames it reports.

use core::fmt;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

/// The ACK flag of SETTINGS and PING.
pub const FLAG_ACK: u8 = 0x1;
/// END_STREAM of DATA and HEADERS.
pub const FLAG_END_STREAM: u8 = 0x1;

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHeader {
    /// Parses a 9-byte frame header.
    pub fn parse(b: &[u8; 9]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether the ACK flag is set on a SETTINGS or PING frame.
    pub fn is_ack(&self) -> bool {
        matches!(self.kind, kind::SETTINGS | kind::PING) && self.flags & FLAG_ACK != 0
    }
}

/// A frame as [`FrameReader`] reports it: the header and the values a control frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// WINDOW_UPDATE: the increment; GOAWAY: the last stream id; RST_STREAM: the error code.
    /// `None` if the payload was too short to hold it.
    pub value: Option<u32>,
    /// The error code of a GOAWAY or RST_STREAM (`None` if too short, or another type).
    pub code: Option<u32>,
}

impl Frame {
    /// The type's name, as RFC 9113 §6 spells it (`UNKNOWN(n)` for others).
    pub fn kind_name(&self) -> String {
        let k = self.header.kind;
        match k {
            kind::DATA => "DATA",
            kind::HEADERS => "HEADERS",
            kind::PRIORITY => "PRIORITY",
            kind::RST_STREAM => "RST_STREAM",
            kind::SETTINGS => "SETTINGS",
            kind::PUSH_PROMISE => "PUSH_PROMISE",
            kind::PING => "PING",
            kind::GOAWAY => "GOAWAY",
            kind::WINDOW_UPDATE => "WINDOW_UPDATE",
            kind::CONTINUATION => "CONTINUATION",
            _ => return format!("UNKNOWN({k})"),
        }
        .to_owned()
    }
}

/// `HEADERS stream=3`, `DATA stream=3 len=16384`, `WINDOW_UPDATE stream=0 +65535`,
/// `SETTINGS`, `SETTINGS ack`, `PING`, `GOAWAY last=7`, `RST_STREAM stream=1 code=8`.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let stream_and = |f: &mut fmt::Formatter<'_>, what: &str| match self.value {
            Some(v) => write!(f, "{} stream={} {what}{v}", self.kind_name(), h.stream),
            None => write!(f, "{} stream={}", self.kind_name(), h.stream),
        };
        match h.kind {
            kind::SETTINGS | kind::PING => {
                let ack = if h.is_ack() { " ack" } else { "" };
                write!(f, "{}{ack}", self.kind_name())
            }
            kind::GOAWAY => match self.value {
                Some(v) => write!(f, "GOAWAY last={v}"),
                None => write!(f, "GOAWAY"),
            },
            kind::WINDOW_UPDATE => stream_and(f, "+"),
            kind::RST_STREAM => stream_and(f, "code="),
            kind::DATA | kind::HEADERS => {
                write!(f, "{} stream={}", self.kind_name(), h.stream)?;
                if h.kind == kind::DATA {
                    write!(f, " len={}", h.len)?;
                }
                if h.flags & FLAG_END_STREAM != 0 {
                    f.write_str(" end")?;
                }
                Ok(())
            }
            _ => write!(f, "{} stream={}", self.kind_name(), h.stream),
        }
    }
}

/// What a [`FrameReader`] found, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The client connection preface.
    Preface,
    /// A frame, reported once its header and the values it carries are read (before the
    /// rest of its payload).
    Frame(Frame),
    /// One entry of a SETTINGS frame that is not an ACK (RFC 9113 §6.5.1).
    Setting { id: u16, value: u32 },
    /// The last byte of a frame's payload has passed (right after [`Event::Frame`] for an
    /// empty payload).
    End(FrameHeader),
    /// The preface did not match: the stream is not HTTP/2, and nothing more is reported.
    Lost,
}

#[derive(Debug, Clone, Copy)]
enum St {
    Preface(usize),
    Header,
    /// Reading the first `want` payload bytes of a frame (at most 8).
    Value {
        want: usize,
    },
    /// Passing over the rest of a payload; SETTINGS entries are read on the way.
    Payload {
        left: u64,
    },
    Done,
}

/// One direction of an HTTP/2 connection, read in order: the client's starts with the
/// preface, the server's with frames.
///
/// ```
/// use synack_wire::h2::{Event, FrameReader, PREFACE};
///
/// let mut r = FrameReader::client();
/// let mut data = PREFACE.to_vec();
/// // WINDOW_UPDATE on stream 0, increment 65535.
/// data.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
/// let mut out = Vec::new();
/// r.feed(&data, |e| out.push(e));
/// assert_eq!(out[0], Event::Preface);
/// let Event::Frame(f) = out[1] else { panic!() };
/// assert_eq!(f.to_string(), "WINDOW_UPDATE stream=0 +65535");
/// assert!(matches!(out[2], Event::End(_)));
/// ```
#[derive(Debug, Clone)]
pub struct FrameReader {
    st: St,
    header: FrameHeader,
    /// The frame header, or the value bytes, or a SETTINGS entry, as far as read.
    buf: [u8; 9],
    got: usize,
}

impl FrameReader {
    /// The client's direction: the preface first.
    pub fn client() -> FrameReader {
        FrameReader::starting(St::Preface(0))
    }

    /// A direction of frames only (the server's, or the client's after the preface was
    /// consumed elsewhere).
    pub fn frames() -> FrameReader {
        FrameReader::starting(St::Header)
    }

    fn starting(st: St) -> FrameReader {
        FrameReader {
            st,
            header: FrameHeader {
                len: 0,
                kind: 0,
                flags: 0,
                stream: 0,
            },
            buf: [0; 9],
            got: 0,
        }
    }

    /// Whether the reader stopped (the preface did not match).
    pub fn is_done(&self) -> bool {
        matches!(self.st, St::Done)
    }

    /// Takes up to `want - got` bytes of `data` into `buf`; whether `want` are there.
    fn fill(&mut self, data: &mut &[u8], want: usize) -> bool {
        let k = (want - self.got).min(data.len());
        self.buf[self.got..self.got + k].copy_from_slice(&data[..k]);
        self.got += k;
        *data = &data[k..];
        self.got == want
    }

    fn word(&self, i: usize) -> u32 {
        u32::from_be_bytes([
            self.buf[i],
            self.buf[i + 1],
            self.buf[i + 2],
            self.buf[i + 3],
        ])
    }

    /// Reports the frame read so far and moves on to the rest of its payload.
    fn frame(&mut self, value_len: usize, on: &mut impl FnMut(Event)) {
        let h = self.header;
        let (mut value, mut code) = (None, None);
        if value_len >= 4 {
            let v = self.word(0);
            value = Some(if h.kind == kind::RST_STREAM {
                v
            } else {
                v & 0x7fff_ffff
            });
        }
        match h.kind {
            kind::RST_STREAM => code = value,
            kind::GOAWAY if value_len >= 8 => code = Some(self.word(4)),
            _ => {}
        }
        on(Event::Frame(Frame {
            header: h,
            value,
            code,
        }));
        self.got = 0;
        self.st = St::Payload {
            left: u64::from(h.len) - value_len as u64,
        };
        self.end_if_done(on);
    }

    fn end_if_done(&mut self, on: &mut impl FnMut(Event)) {
        if let St::Payload { left: 0 } = self.st {
            on(Event::End(self.header));
            self.got = 0;
            self.st = St::Header;
        }
    }

    /// Reads the next bytes of the stream, reporting what they complete to `on`.
    pub fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(Event)) {
        while !data.is_empty() {
            match self.st {
                St::Done => return,
                St::Preface(got) => {
                    let want = &PREFACE[got..];
                    let k = want.len().min(data.len());
                    if data[..k] != want[..k] {
                        self.st = St::Done;
                        on(Event::Lost);
                        return;
                    }
                    data = &data[k..];
                    self.st = if got + k == PREFACE.len() {
                        on(Event::Preface);
                        St::Header
                    } else {
                        St::Preface(got + k)
                    };
                }
                St::Header => {
                    if !self.fill(&mut data, 9) {
                        continue;
                    }
                    let h = FrameHeader::parse(&self.buf);
                    self.header = h;
                    self.got = 0;
                    let want = match h.kind {
                        kind::GOAWAY => 8,
                        kind::WINDOW_UPDATE | kind::RST_STREAM => 4,
                        _ => 0,
                    };
                    // A payload too short for its values is h2's to refuse; the frame is
                    // reported without them.
                    if want > 0 && h.len as usize >= want {
                        self.st = St::Value { want };
                    } else {
                        self.frame(0, &mut on);
                    }
                }
                St::Value { want } => {
                    if self.fill(&mut data, want) {
                        self.frame(want, &mut on);
                    }
                }
                St::Payload { left } => {
                    let k = left.min(data.len() as u64) as usize;
                    let h = self.header;
                    if h.kind == kind::SETTINGS && !h.is_ack() {
                        let mut chunk = &data[..k];
                        while !chunk.is_empty() {
                            if self.fill(&mut chunk, 6) {
                                let id = u16::from_be_bytes([self.buf[0], self.buf[1]]);
                                on(Event::Setting {
                                    id,
                                    value: self.word(2),
                                });
                                self.got = 0;
                            }
                        }
                    }
                    data = &data[k..];
                    self.st = St::Payload {
                        left: left - k as u64,
                    };
                    self.end_if_done(&mut on);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn read(r: &mut FrameReader, data: &[u8], chunk: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            r.feed(c, |e| out.push(e));
        }
        out
    }

    #[test]
    fn frames_byte_by_byte_and_whole_agree() {
        let mut data = PREFACE.to_vec();
        data.extend(frame(
            kind::SETTINGS,
            0,
            0,
            &[0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0],
        ));
        data.extend(frame(kind::HEADERS, 5, 1, &[0x82; 10]));
        data.extend(frame(kind::DATA, 1, 3, &[0; 100]));
        data.extend(frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 2, 9, 9]));
        data.extend(frame(kind::PING, 1, 0, &[0; 8]));
        data.extend(frame(kind::RST_STREAM, 0, 5, &[0, 0, 0, 8]));
        data.extend(frame(kind::SETTINGS, 1, 0, &[]));
        let whole = read(&mut FrameReader::client(), &data, data.len());
        for chunk in [1, 2, 5, 7] {
            assert_eq!(whole, read(&mut FrameReader::client(), &data, chunk));
        }
        let shown: Vec<String> = whole
            .iter()
            .map(|e| match e {
                Event::Frame(f) => f.to_string(),
                Event::Setting { id, value } => format!("setting {id}={value}"),
                Event::End(h) => format!("end {}", h.kind),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "Preface",
                "SETTINGS",
                "setting 3=100",
                "setting 4=65536",
                "end 4",
                "HEADERS stream=1 end",
                "end 1",
                "DATA stream=3 len=100 end",
                "end 0",
                "GOAWAY last=7",
                "end 7",
                "PING ack",
                "end 6",
                "RST_STREAM stream=5 code=8",
                "end 3",
                "SETTINGS ack",
                "end 4",
            ]
        );
        let goaway = whole.iter().find_map(|e| match e {
            Event::Frame(f) if f.header.kind == kind::GOAWAY => Some(f.code),
            _ => None,
        });
        assert_eq!(goaway, Some(Some(2)));
    }

    #[test]
    fn short_control_frames_are_reported_without_values() {
        let data = frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 7]);
        let out = read(&mut FrameReader::frames(), &data, 1);
        let Event::Frame(f) = out[0] else { panic!() };
        assert_eq!((f.value, f.code), (None, None));
        assert!(matches!(out[1], Event::End(_)));
    }

    #[test]
    fn not_a_preface() {
        let mut r = FrameReader::client();
        assert_eq!(read(&mut r, b"GET / HTTP/1.1\r\n", 3), [Event::Lost]);
        assert!(r.is_done());
    }

    #[test]
    fn any_bytes_are_read_without_panicking() {
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let data: Vec<u8> = (0..300)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            read(&mut FrameReader::frames(), &data, 7);
        }
    }
}
