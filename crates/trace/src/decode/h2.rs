//! HTTP/2 frames in a byte stream (RFC 9113): the client's connection preface (§3.4) and the
//! 9-byte frame headers (§4.1), with the few payload bytes that say what a control frame did
//! (a WINDOW_UPDATE's increment, §6.9; a GOAWAY's last stream, §6.8; a RST_STREAM's error
//! code, §6.4). Payloads are skipped, never buffered: a stream of any length is read in
//! constant memory.

use std::fmt;

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

/// The ACK flag of SETTINGS and PING; END_STREAM of DATA and HEADERS.
pub const FLAG_ACK: u8 = 0x1;
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

/// Parses a 9-byte frame header.
pub fn parse_frame_header(b: &[u8; 9]) -> FrameHeader {
    FrameHeader {
        len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
        kind: b[3],
        flags: b[4],
        stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
    }
}

/// A frame as [`H2Stream`] reports it: the header, and the value a control frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// WINDOW_UPDATE: the increment; GOAWAY: the last stream id; RST_STREAM: the error code.
    /// `None` if the payload was too short.
    pub value: Option<u32>,
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
        let ack = h.flags & FLAG_ACK != 0;
        match h.kind {
            kind::SETTINGS | kind::PING => {
                write!(f, "{}{}", self.kind_name(), if ack { " ack" } else { "" })
            }
            kind::GOAWAY => match self.value {
                Some(v) => write!(f, "GOAWAY last={v}"),
                None => write!(f, "GOAWAY"),
            },
            kind::WINDOW_UPDATE => match self.value {
                Some(v) => write!(f, "WINDOW_UPDATE stream={} +{v}", h.stream),
                None => write!(f, "WINDOW_UPDATE stream={}", h.stream),
            },
            kind::RST_STREAM => match self.value {
                Some(v) => write!(f, "RST_STREAM stream={} code={v}", h.stream),
                None => write!(f, "RST_STREAM stream={}", h.stream),
            },
            kind::DATA => {
                write!(f, "DATA stream={} len={}", h.stream, h.len)?;
                if h.flags & FLAG_END_STREAM != 0 {
                    f.write_str(" end")?;
                }
                Ok(())
            }
            kind::HEADERS => {
                write!(f, "HEADERS stream={}", h.stream)?;
                if h.flags & FLAG_END_STREAM != 0 {
                    f.write_str(" end")?;
                }
                Ok(())
            }
            _ => write!(f, "{} stream={}", self.kind_name(), h.stream),
        }
    }
}

/// What an [`H2Stream`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Event {
    /// The client connection preface.
    Preface,
    /// A frame (reported when its header and the value bytes it carries are read).
    Frame(Frame),
    /// The preface did not match: the stream is not HTTP/2.
    Lost,
}

#[derive(Debug, Clone, Copy)]
enum St {
    Preface(usize),
    Header {
        got: usize,
        buf: [u8; 9],
    },
    /// Reading the first `want` payload bytes of `header` (at most 4).
    Value {
        header: FrameHeader,
        got: usize,
        want: usize,
        buf: [u8; 4],
    },
    Skip(u64),
    Done,
}

/// One direction of an HTTP/2 connection, read in order: the client's starts with the
/// preface, the server's with frames.
///
/// ```
/// use synack_trace::decode::h2::{H2Event, H2Stream, PREFACE};
///
/// let mut s = H2Stream::client();
/// let mut data = PREFACE.to_vec();
/// // WINDOW_UPDATE on stream 0, increment 65535.
/// data.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
/// let mut out = Vec::new();
/// s.feed(&data, &mut out);
/// assert_eq!(out[0], H2Event::Preface);
/// let H2Event::Frame(f) = out[1] else { panic!() };
/// assert_eq!(f.to_string(), "WINDOW_UPDATE stream=0 +65535");
/// ```
#[derive(Debug, Clone)]
pub struct H2Stream {
    st: St,
}

impl H2Stream {
    /// The client's direction: the preface first.
    pub fn client() -> H2Stream {
        H2Stream { st: St::Preface(0) }
    }

    /// A direction of frames only (the server's, or the client's after an HTTP/1 reader
    /// consumed the preface).
    pub fn frames() -> H2Stream {
        H2Stream {
            st: St::Header {
                got: 0,
                buf: [0; 9],
            },
        }
    }

    /// Whether the stream stopped (its preface did not match).
    pub fn is_done(&self) -> bool {
        matches!(self.st, St::Done)
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<H2Event>) {
        while !data.is_empty() {
            match &mut self.st {
                St::Done => return,
                St::Preface(got) => {
                    let want = &PREFACE[*got..];
                    let k = want.len().min(data.len());
                    if data[..k] != want[..k] {
                        self.st = St::Done;
                        out.push(H2Event::Lost);
                        return;
                    }
                    data = &data[k..];
                    *got += k;
                    if *got == PREFACE.len() {
                        out.push(H2Event::Preface);
                        self.st = St::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    }
                }
                St::Header { got, buf } => {
                    let k = (9 - *got).min(data.len());
                    buf[*got..*got + k].copy_from_slice(&data[..k]);
                    *got += k;
                    data = &data[k..];
                    if *got == 9 {
                        let header = parse_frame_header(buf);
                        let want = match header.kind {
                            kind::WINDOW_UPDATE | kind::GOAWAY | kind::RST_STREAM => {
                                (header.len as usize).min(4)
                            }
                            _ => 0,
                        };
                        if want == 4 {
                            self.st = St::Value {
                                header,
                                got: 0,
                                want,
                                buf: [0; 4],
                            };
                        } else {
                            out.push(H2Event::Frame(Frame {
                                header,
                                value: None,
                            }));
                            self.st = St::Skip(u64::from(header.len));
                        }
                    }
                }
                St::Value {
                    header,
                    got,
                    want,
                    buf,
                } => {
                    let k = (*want - *got).min(data.len());
                    buf[*got..*got + k].copy_from_slice(&data[..k]);
                    *got += k;
                    data = &data[k..];
                    if *got == *want {
                        let mut v = u32::from_be_bytes(*buf);
                        if header.kind != kind::RST_STREAM {
                            v &= 0x7fff_ffff;
                        }
                        let header = *header;
                        out.push(H2Event::Frame(Frame {
                            header,
                            value: Some(v),
                        }));
                        self.st = St::Skip(u64::from(header.len) - 4);
                    }
                }
                St::Skip(n) => {
                    let k = (*n).min(data.len() as u64) as usize;
                    *n -= k as u64;
                    data = &data[k..];
                    if *n == 0 {
                        self.st = St::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    }
                }
            }
        }
        if let St::Skip(0) = self.st {
            self.st = St::Header {
                got: 0,
                buf: [0; 9],
            };
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

    #[test]
    fn frames_byte_by_byte_and_whole_agree() {
        let mut data = PREFACE.to_vec();
        data.extend(frame(kind::SETTINGS, 0, 0, &[0; 6]));
        data.extend(frame(kind::HEADERS, 5, 1, &[0x82; 10]));
        data.extend(frame(kind::DATA, 1, 3, &[0; 100]));
        data.extend(frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0]));
        data.extend(frame(kind::PING, 1, 0, &[0; 8]));
        data.extend(frame(kind::RST_STREAM, 0, 5, &[0, 0, 0, 8]));
        let mut a = H2Stream::client();
        let mut whole = Vec::new();
        a.feed(&data, &mut whole);
        let mut b = H2Stream::client();
        let mut bytewise = Vec::new();
        for c in data.chunks(1) {
            b.feed(c, &mut bytewise);
        }
        assert_eq!(whole, bytewise);
        let names: Vec<String> = whole
            .iter()
            .filter_map(|e| match e {
                H2Event::Frame(f) => Some(f.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "SETTINGS",
                "HEADERS stream=1 end",
                "DATA stream=3 len=100 end",
                "GOAWAY last=7",
                "PING ack",
                "RST_STREAM stream=5 code=8"
            ]
        );
    }

    #[test]
    fn not_a_preface() {
        let mut s = H2Stream::client();
        let mut out = Vec::new();
        s.feed(b"GET / HTTP/1.1\r\n", &mut out);
        assert_eq!(out, [H2Event::Lost]);
        assert!(s.is_done());
    }
}
