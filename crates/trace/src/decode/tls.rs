//! TLS records in a byte stream (RFC 8446 §5.1; RFC 5246 §6.2): each record's content type,
//! and, while the handshake is in the clear, the handshake messages in them (RFC 8446 §4)
//! with what a ClientHello and a ServerHello say: the server name (RFC 6066 §3), the ALPN
//! protocols (RFC 7301 §3.1) and the version chosen (RFC 8446 §4.2.1).
//!
//! Record bodies are skipped except for handshake messages of the two hellos, which are kept
//! up to [`MAX_HELLO`] bytes to read their extensions. In TLS 1.3 everything after the
//! ServerHello is encrypted (as application data records); in TLS 1.2 what follows a
//! ChangeCipherSpec is: [`TlsStream`] stops reading handshake messages there.

/// Record content types (RFC 8446 §5.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    pub const HEARTBEAT: u8 = 24;
}

/// Handshake message types (RFC 8446 §4, RFC 5246 §7.4).
pub mod handshake {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const NEW_SESSION_TICKET: u8 = 4;
    pub const END_OF_EARLY_DATA: u8 = 5;
    pub const ENCRYPTED_EXTENSIONS: u8 = 8;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    pub const CERTIFICATE_REQUEST: u8 = 13;
    pub const SERVER_HELLO_DONE: u8 = 14;
    pub const CERTIFICATE_VERIFY: u8 = 15;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub const FINISHED: u8 = 20;
    pub const KEY_UPDATE: u8 = 24;
}

/// The largest hello message kept to read its extensions.
pub const MAX_HELLO: usize = 64 * 1024;

/// The largest record length accepted (RFC 8446 §5.2: 2^14 + 256 for ciphertext; TLS 1.2
/// allowed 2^14 + 2048).
pub const MAX_RECORD: u16 = (1 << 14) + 2048;

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    /// The legacy record version (0x0301 for TLS 1.0 … 0x0303).
    pub version: u16,
    pub len: u16,
}

/// Parses a record header, or `None` if the bytes cannot be one (an unknown content type, a
/// major version other than 3, an oversized length).
///
/// ```
/// use synack_trace::decode::tls::parse_record_header;
///
/// let h = parse_record_header(&[22, 3, 1, 0, 200]).unwrap();
/// assert_eq!((h.content_type, h.version, h.len), (22, 0x0301, 200));
/// assert!(parse_record_header(b"GET /").is_none());
/// ```
pub fn parse_record_header(b: &[u8; 5]) -> Option<RecordHeader> {
    let h = RecordHeader {
        content_type: b[0],
        version: u16::from_be_bytes([b[1], b[2]]),
        len: u16::from_be_bytes([b[3], b[4]]),
    };
    let ok = (content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT).contains(&h.content_type)
        && b[1] == 3
        && b[2] <= 4
        && h.len <= MAX_RECORD;
    ok.then_some(h)
}

/// The name of a content type (`ApplicationData`, …).
pub fn content_name(t: u8) -> String {
    match t {
        content::CHANGE_CIPHER_SPEC => "ChangeCipherSpec".into(),
        content::ALERT => "Alert".into(),
        content::HANDSHAKE => "Handshake".into(),
        content::APPLICATION_DATA => "ApplicationData".into(),
        content::HEARTBEAT => "Heartbeat".into(),
        other => format!("content({other})"),
    }
}

/// The name of a handshake message type (`ClientHello`, …).
pub fn handshake_name(t: u8) -> String {
    use handshake::*;
    match t {
        CLIENT_HELLO => "ClientHello".into(),
        SERVER_HELLO => "ServerHello".into(),
        NEW_SESSION_TICKET => "NewSessionTicket".into(),
        END_OF_EARLY_DATA => "EndOfEarlyData".into(),
        ENCRYPTED_EXTENSIONS => "EncryptedExtensions".into(),
        CERTIFICATE => "Certificate".into(),
        SERVER_KEY_EXCHANGE => "ServerKeyExchange".into(),
        CERTIFICATE_REQUEST => "CertificateRequest".into(),
        SERVER_HELLO_DONE => "ServerHelloDone".into(),
        CERTIFICATE_VERIFY => "CertificateVerify".into(),
        CLIENT_KEY_EXCHANGE => "ClientKeyExchange".into(),
        FINISHED => "Finished".into(),
        KEY_UPDATE => "KeyUpdate".into(),
        other => format!("handshake({other})"),
    }
}

/// The name of a TLS version number (`TLS 1.3`, …).
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// What a ClientHello or ServerHello says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The legacy version field.
    pub legacy_version: u16,
    /// server_name (ClientHello).
    pub sni: Option<String>,
    /// ALPN protocols: those offered (ClientHello) or the one chosen (ServerHello, TLS 1.2:
    /// in TLS 1.3 the choice travels encrypted in EncryptedExtensions).
    pub alpn: Vec<String>,
    /// supported_versions: offered (ClientHello) or the one chosen (ServerHello).
    pub versions: Vec<u16>,
}

impl Hello {
    /// The version a ServerHello chose: supported_versions if present, else the legacy field.
    pub fn chosen_version(&self) -> u16 {
        self.versions
            .first()
            .copied()
            .unwrap_or(self.legacy_version)
    }
}

/// A cursor over a hello's bytes; every read is bounds-checked.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Parses a ClientHello body (after the 4-byte handshake header; RFC 8446 §4.1.2).
pub fn parse_client_hello(body: &[u8]) -> Option<Hello> {
    let mut c = Cur(body);
    let legacy_version = c.u16()?;
    c.take(32)?; // random
    c.vec8()?; // legacy_session_id
    c.vec16()?; // cipher_suites
    c.vec8()?; // legacy_compression_methods
    let mut hello = Hello {
        legacy_version,
        ..Hello::default()
    };
    let Some(exts) = c.vec16() else {
        return Some(hello); // no extensions (old clients)
    };
    extensions(exts, true, &mut hello);
    Some(hello)
}

/// Parses a ServerHello body (RFC 8446 §4.1.3).
pub fn parse_server_hello(body: &[u8]) -> Option<Hello> {
    let mut c = Cur(body);
    let legacy_version = c.u16()?;
    c.take(32)?;
    c.vec8()?;
    c.u16()?; // cipher_suite
    c.u8()?; // legacy_compression_method
    let mut hello = Hello {
        legacy_version,
        ..Hello::default()
    };
    if let Some(exts) = c.vec16() {
        extensions(exts, false, &mut hello);
    }
    Some(hello)
}

fn extensions(exts: &[u8], client: bool, hello: &mut Hello) {
    let mut e = Cur(exts);
    while let (Some(kind), Some(data)) = (e.u16(), e.vec16()) {
        let mut d = Cur(data);
        match kind {
            EXT_SERVER_NAME if client => {
                // ServerNameList: a list of (type, HostName).
                if let Some(list) = d.vec16() {
                    let mut l = Cur(list);
                    while let (Some(t), Some(name)) = (l.u8(), l.vec16()) {
                        if t == 0 {
                            hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                            break;
                        }
                    }
                }
            }
            EXT_ALPN => {
                if let Some(list) = d.vec16() {
                    let mut l = Cur(list);
                    while let Some(p) = l.vec8() {
                        hello.alpn.push(String::from_utf8_lossy(p).into_owned());
                    }
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                if client {
                    if let Some(list) = d.vec8() {
                        let mut l = Cur(list);
                        while let Some(v) = l.u16() {
                            hello.versions.push(v);
                        }
                    }
                } else if let Some(v) = d.u16() {
                    hello.versions.push(v);
                }
            }
            _ => {}
        }
    }
}

/// What a [`TlsStream`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    /// A record header.
    Record(RecordHeader),
    /// A handshake message in the clear (type, and for the hellos what they say).
    Handshake { kind: u8, hello: Option<Hello> },
    /// The bytes are not TLS records (the stream stops).
    Lost,
}

#[derive(Debug, Clone)]
enum St {
    Header { got: usize, buf: [u8; 5] },
    Body { header: RecordHeader, left: usize },
    Done,
}

/// One direction of a TLS connection, read in order. See the [module documentation](self).
///
/// ```
/// use synack_trace::decode::tls::{TlsEvent, TlsStream};
///
/// let mut s = TlsStream::new();
/// let mut out = Vec::new();
/// s.feed(&[23, 3, 3, 0, 2, 0xab, 0xcd], &mut out);
/// assert!(matches!(out[0], TlsEvent::Record(h) if h.content_type == 23 && h.len == 2));
/// ```
#[derive(Debug, Clone)]
pub struct TlsStream {
    st: St,
    /// A ChangeCipherSpec was seen: handshake records are encrypted from here on.
    encrypted: bool,
    /// The handshake message being read across records: its header bytes, its type and
    /// length, and its body if it is a hello (bounded by [`MAX_HELLO`]).
    hs_header: Vec<u8>,
    hs_left: usize,
    hs_kind: u8,
    hs_body: Vec<u8>,
}

impl Default for TlsStream {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsStream {
    pub fn new() -> TlsStream {
        TlsStream {
            st: St::Header {
                got: 0,
                buf: [0; 5],
            },
            encrypted: false,
            hs_header: Vec::new(),
            hs_left: 0,
            hs_kind: 0,
            hs_body: Vec::new(),
        }
    }

    /// Whether the stream stopped (bytes that are not records).
    pub fn is_done(&self) -> bool {
        matches!(self.st, St::Done)
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<TlsEvent>) {
        while !data.is_empty() {
            match &mut self.st {
                St::Done => return,
                St::Header { got, buf } => {
                    let k = (5 - *got).min(data.len());
                    buf[*got..*got + k].copy_from_slice(&data[..k]);
                    *got += k;
                    data = &data[k..];
                    if *got == 5 {
                        let Some(header) = parse_record_header(buf) else {
                            self.st = St::Done;
                            out.push(TlsEvent::Lost);
                            return;
                        };
                        out.push(TlsEvent::Record(header));
                        if header.content_type == content::CHANGE_CIPHER_SPEC {
                            self.encrypted = true;
                        }
                        self.st = St::Body {
                            header,
                            left: usize::from(header.len),
                        };
                    }
                }
                St::Body { header, left } => {
                    let k = (*left).min(data.len());
                    let chunk = &data[..k];
                    *left -= k;
                    data = &data[k..];
                    let header = *header;
                    let done = *left == 0;
                    if header.content_type == content::HANDSHAKE && !self.encrypted {
                        self.handshake_bytes(chunk, out);
                    }
                    if done {
                        self.st = St::Header {
                            got: 0,
                            buf: [0; 5],
                        };
                    }
                }
            }
        }
    }

    /// Bytes of the handshake protocol (messages may span records, RFC 8446 §5.1).
    fn handshake_bytes(&mut self, mut data: &[u8], out: &mut Vec<TlsEvent>) {
        while !data.is_empty() {
            if self.hs_left == 0 && self.hs_header.len() < 4 {
                let k = (4 - self.hs_header.len()).min(data.len());
                self.hs_header.extend_from_slice(&data[..k]);
                data = &data[k..];
                if self.hs_header.len() == 4 {
                    let h = &self.hs_header;
                    self.hs_kind = h[0];
                    self.hs_left =
                        usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
                    self.hs_body.clear();
                    if self.hs_left == 0 {
                        self.message_done(out);
                    }
                }
                continue;
            }
            let k = self.hs_left.min(data.len());
            let is_hello = matches!(
                self.hs_kind,
                handshake::CLIENT_HELLO | handshake::SERVER_HELLO
            );
            if is_hello && self.hs_body.len() + k <= MAX_HELLO {
                self.hs_body.extend_from_slice(&data[..k]);
            }
            self.hs_left -= k;
            data = &data[k..];
            if self.hs_left == 0 {
                self.message_done(out);
            }
        }
    }

    fn message_done(&mut self, out: &mut Vec<TlsEvent>) {
        let hello = match self.hs_kind {
            handshake::CLIENT_HELLO => parse_client_hello(&self.hs_body),
            handshake::SERVER_HELLO => parse_server_hello(&self.hs_body),
            _ => None,
        };
        out.push(TlsEvent::Handshake {
            kind: self.hs_kind,
            hello,
        });
        self.hs_header.clear();
        self.hs_body = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with SNI `example.com`, ALPN h2 and http/1.1, versions 1.3 and 1.2.
    pub(crate) fn client_hello() -> Vec<u8> {
        let mut exts = Vec::new();
        let name = b"example.com";
        let mut sni = vec![];
        sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        exts.extend(sni);
        let alpn = b"\x02h2\x08http/1.1";
        exts.extend_from_slice(&16u16.to_be_bytes());
        exts.extend_from_slice(&((alpn.len() + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        exts.extend_from_slice(alpn);
        exts.extend_from_slice(&43u16.to_be_bytes());
        exts.extend_from_slice(&5u16.to_be_bytes());
        exts.extend_from_slice(&[4, 3, 4, 3, 3]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }

    #[test]
    fn client_hello_fields_byte_by_byte() {
        let rec = client_hello();
        let mut s = TlsStream::new();
        let mut out = Vec::new();
        for b in rec.chunks(1) {
            s.feed(b, &mut out);
        }
        let TlsEvent::Handshake {
            kind: 1,
            hello: Some(h),
        } = &out[1]
        else {
            panic!("{out:?}")
        };
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, ["h2", "http/1.1"]);
        assert_eq!(h.versions, [0x0304, 0x0303]);
    }

    #[test]
    fn not_tls() {
        let mut s = TlsStream::new();
        let mut out = Vec::new();
        s.feed(b"GET / HTTP/1.1\r\n", &mut out);
        assert_eq!(out, [TlsEvent::Lost]);
    }
}
