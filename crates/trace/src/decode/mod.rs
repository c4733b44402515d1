//! Decoders of what TCP and UDP carry, for annotating ladders: HTTP/1.1 request and status
//! lines ([`http1`]), HTTP/2 frames ([`h2`]), TLS records and hellos ([`tls`]) and QUIC long
//! headers ([`quic`]). Each reads a byte stream in order, in pieces of any size, in bounded
//! memory, and never panics on any bytes: input that is not its protocol stops it with an
//! event saying so.
//!
//! [`AppStream`] puts them together for one direction of a TCP connection: it tells the
//! protocol from the first bytes (a TLS record header, an HTTP/1 request or status line, the
//! HTTP/2 preface) and hands the rest to that decoder.
//!
//! ```
//! use synack_trace::decode::{AppEvent, AppStream, Protocol, Side};
//!
//! let mut client = AppStream::new(Side::Client);
//! let mut events = Vec::new();
//! client.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n", &mut events);
//! assert_eq!(client.protocol(), Protocol::Http1);
//! let labels: Vec<String> = events.iter().filter_map(AppEvent::label).collect();
//! assert_eq!(labels, ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]);
//! ```

pub mod h2;
pub mod http1;
pub mod quic;
pub mod tls;

pub use http1::Side;

use h2::{H2Event, H2Stream};
use http1::{Http1Event, Http1Stream};
use tls::{TlsEvent, TlsStream};

/// The protocol an [`AppStream`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// No byte seen yet.
    Unknown,
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 over cleartext TCP (prior knowledge or upgrade).
    H2c,
    /// TLS.
    Tls,
    /// Something else.
    Other,
}

impl Protocol {
    /// How tables show it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Unknown => "-",
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "h2c",
            Protocol::Tls => "TLS",
            Protocol::Other => "other",
        }
    }
}

/// What an [`AppStream`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    Http1(Http1Event),
    H2(H2Event),
    Tls(TlsEvent),
}

impl AppEvent {
    /// The text a ladder shows for it (`GET /a HTTP/1.1`, `HTTP/1.1 200 OK`,
    /// `HEADERS stream=3`, `TLS ClientHello (SNI x, ALPN h2,http/1.1)`, `TLS ApplicationData
    /// len=517`), or `None` for what is not worth a line (a TLS handshake record header,
    /// whose messages get lines of their own).
    pub fn label(&self) -> Option<String> {
        Some(match self {
            AppEvent::Http1(Http1Event::Request {
                method,
                target,
                version,
                ..
            }) => format!("{method} {target} {version}"),
            AppEvent::Http1(Http1Event::Response { status, reason }) => {
                format!("HTTP/1.1 {status} {reason}").trim_end().to_owned()
            }
            AppEvent::Http1(Http1Event::SwitchToH2) => "(HTTP/2 from here)".to_owned(),
            AppEvent::Http1(Http1Event::Lost(why)) => format!("(HTTP/1 not followed: {why})"),
            AppEvent::H2(H2Event::Preface) => "h2 preface".to_owned(),
            AppEvent::H2(H2Event::Frame(f)) => f.to_string(),
            AppEvent::H2(H2Event::Lost) => "(not HTTP/2)".to_owned(),
            AppEvent::Tls(TlsEvent::Record(h)) => {
                if h.content_type == tls::content::HANDSHAKE {
                    return None;
                }
                format!("TLS {} len={}", tls::content_name(h.content_type), h.len)
            }
            AppEvent::Tls(TlsEvent::Handshake { kind, hello }) => {
                let mut t = format!("TLS {}", tls::handshake_name(*kind));
                if let Some(h) = hello {
                    let mut parts = Vec::new();
                    if let Some(sni) = &h.sni {
                        parts.push(format!("SNI {sni}"));
                    }
                    if *kind == tls::handshake::SERVER_HELLO {
                        parts.push(tls::version_name(h.chosen_version()));
                    }
                    if !h.alpn.is_empty() {
                        parts.push(format!("ALPN {}", h.alpn.join(",")));
                    }
                    if !parts.is_empty() {
                        t = format!("{t} ({})", parts.join(", "));
                    }
                }
                t
            }
            AppEvent::Tls(TlsEvent::Lost) => "(not TLS)".to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Sniff,
    Http1(Box<Http1Stream>),
    H2(H2Stream),
    Tls(Box<TlsStream>),
    Other,
}

/// One direction of a TCP connection's payload, read in order, its protocol told from its
/// first bytes. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct AppStream {
    side: Side,
    inner: Inner,
    /// A server stream told the client switched to HTTP/2: its bytes are frames.
    h2: bool,
    /// Responses a server stream expects (head, upgrade) before its protocol is known.
    pending: Vec<(bool, bool)>,
}

impl AppStream {
    /// A stream of `side`'s bytes.
    pub fn new(side: Side) -> AppStream {
        AppStream {
            side,
            inner: Inner::Sniff,
            h2: false,
            pending: Vec::new(),
        }
    }

    /// The protocol found so far.
    pub fn protocol(&self) -> Protocol {
        match &self.inner {
            Inner::Sniff => Protocol::Unknown,
            Inner::Http1(_) => Protocol::Http1,
            Inner::H2(_) => Protocol::H2c,
            Inner::Tls(_) => Protocol::Tls,
            Inner::Other => Protocol::Other,
        }
    }

    /// Tells a server stream that the client's stream switched to HTTP/2 (prior knowledge):
    /// the server's bytes are frames from now on.
    pub fn switch_to_h2(&mut self) {
        if matches!(self.inner, Inner::Sniff) {
            self.h2 = true;
        }
    }

    /// Tells a server stream of a request the client made (see
    /// [`Http1Stream::expect_response`]).
    pub fn expect_response(&mut self, head: bool, upgrade_h2c: bool) {
        match &mut self.inner {
            Inner::Http1(s) => s.expect_response(head, upgrade_h2c),
            Inner::Sniff if self.pending.len() < 256 => self.pending.push((head, upgrade_h2c)),
            _ => {}
        }
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<AppEvent>) {
        while !data.is_empty() {
            match &mut self.inner {
                Inner::Sniff => {
                    let first = data[0];
                    self.inner = if self.h2 {
                        Inner::H2(H2Stream::frames())
                    } else if (tls::content::CHANGE_CIPHER_SPEC..=tls::content::HEARTBEAT)
                        .contains(&first)
                    {
                        Inner::Tls(Box::default())
                    } else if first.is_ascii_uppercase() {
                        let mut s = Http1Stream::new(self.side);
                        for (head, up) in self.pending.drain(..) {
                            s.expect_response(head, up);
                        }
                        Inner::Http1(Box::new(s))
                    } else {
                        Inner::Other
                    };
                }
                Inner::Http1(s) => {
                    let mut ev = Vec::new();
                    let used = s.feed(data, &mut ev);
                    let switched = ev.contains(&Http1Event::SwitchToH2);
                    // A client's switch is its preface, reported as such below.
                    let client = self.side == Side::Client;
                    out.extend(
                        ev.into_iter()
                            .filter(|e| !(client && *e == Http1Event::SwitchToH2))
                            .map(AppEvent::Http1),
                    );
                    if !switched {
                        return;
                    }
                    data = &data[used..];
                    if self.side == Side::Client {
                        out.push(AppEvent::H2(H2Event::Preface));
                    }
                    self.inner = Inner::H2(H2Stream::frames());
                }
                Inner::H2(s) => {
                    let mut ev = Vec::new();
                    s.feed(data, &mut ev);
                    out.extend(ev.into_iter().map(AppEvent::H2));
                    return;
                }
                Inner::Tls(s) => {
                    let mut ev = Vec::new();
                    s.feed(data, &mut ev);
                    out.extend(ev.into_iter().map(AppEvent::Tls));
                    return;
                }
                Inner::Other => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_prior_knowledge_client_and_server() {
        let mut c = AppStream::new(Side::Client);
        let mut out = Vec::new();
        let mut data = h2::PREFACE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
        data.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]); // HEADERS stream=1
        c.feed(&data, &mut out);
        assert_eq!(c.protocol(), Protocol::H2c);
        let labels: Vec<String> = out.iter().filter_map(AppEvent::label).collect();
        assert_eq!(labels, ["h2 preface", "SETTINGS", "HEADERS stream=1 end"]);
        let mut s = AppStream::new(Side::Server);
        s.switch_to_h2();
        let mut out = Vec::new();
        s.feed(&[0, 0, 0, 4, 1, 0, 0, 0, 0], &mut out);
        let labels: Vec<String> = out.iter().filter_map(AppEvent::label).collect();
        assert_eq!(labels, ["SETTINGS ack"]);
    }

    #[test]
    fn h2c_upgrade() {
        let mut c = AppStream::new(Side::Client);
        let mut s = AppStream::new(Side::Server);
        let mut out = Vec::new();
        c.feed(
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n",
            &mut out,
        );
        let Some(AppEvent::Http1(Http1Event::Request { upgrade_h2c, .. })) = out.first() else {
            panic!("{out:?}")
        };
        assert!(upgrade_h2c);
        s.expect_response(false, true);
        let mut sout = Vec::new();
        s.feed(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            &mut sout,
        );
        let labels: Vec<String> = sout.iter().filter_map(AppEvent::label).collect();
        assert_eq!(
            labels,
            [
                "HTTP/1.1 101 Switching Protocols",
                "(HTTP/2 from here)",
                "SETTINGS"
            ]
        );
        assert_eq!(s.protocol(), Protocol::H2c);
        let mut out = Vec::new();
        let mut pre = h2::PREFACE.to_vec();
        pre.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        c.feed(&pre, &mut out);
        let labels: Vec<String> = out.iter().filter_map(AppEvent::label).collect();
        assert_eq!(labels, ["h2 preface", "SETTINGS"]);
    }
}
