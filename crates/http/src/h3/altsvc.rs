//! HTTP Alternative Services (RFC 7838) for HTTP/3 (RFC 9114 §3.1.1): a client that makes its
//! first call to an `https://` origin over TCP (HTTP/1.1 or HTTP/2, as ALPN picks), reads the
//! `Alt-Svc: h3=":PORT"; ma=SECS` header of the response, and sends the later calls to that
//! origin over HTTP/3 on UDP `PORT`, as streams of one QUIC connection, for `ma` seconds.
//!
//! - [`parse`] reads a header value (RFC 7838 §3): `clear`, or alternatives with their
//!   parameters; anything it cannot read is an error, never a panic.
//! - [`AltSvcCache`] keeps, per origin, the HTTP/3 alternative and when it expires (`ma`,
//!   24 hours when absent, RFC 7838 §3.1); `clear` forgets it. Only alternatives on the
//!   origin's own host are kept: the certificate is checked for the origin's name either way
//!   (RFC 7838 §2.1), and a client that follows only these goes nowhere it was not sent.
//! - [`AltSvcClient`] puts the TCP [`Client`] and an [`H3Client`] behind one `request`. A
//!   QUIC connection that cannot be opened within `quic_timeout` marks the alternative broken
//!   for [`BROKEN_FOR`] (RFC 7838 §2.4: a client falls back to the origin when an
//!   alternative fails) and the call goes over TCP, as the calls after it do. An idempotent
//!   request whose HTTP/3 exchange fails is sent again over TCP; any other gets the error
//!   (it may have been processed).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use tokio::time::Instant;

use super::client::H3Client;
use crate::client::{Client, Error};
use crate::connector::{Origin, Scheme};

/// `ma` when an alternative gives none: 24 hours (RFC 7838 §3.1).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// How long an alternative that failed is left alone before it is tried again.
pub const BROKEN_FOR: Duration = Duration::from_secs(300);

/// One alternative of an `Alt-Svc` header (RFC 7838 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The ALPN protocol id, percent-decoded (`h3`).
    pub protocol: String,
    /// The host, empty for the origin's own.
    pub host: String,
    pub port: u16,
    /// How long it may be used (`ma`).
    pub max_age: Duration,
    /// `persist=1`: kept across network changes (kept here as read; nothing uses it).
    pub persist: bool,
}

/// A parsed `Alt-Svc` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltSvcValue {
    /// `clear`: forget every alternative of the origin (RFC 7838 §3).
    Clear,
    Alternatives(Vec<Alternative>),
}

/// Reads an `Alt-Svc` value: `clear`, or `1#( protocol-id "=" alt-authority *( OWS ";" OWS
/// parameter ) )` (RFC 7838 §3), `alt-authority` a quoted `[host] ":" port`. Unknown
/// parameters are ignored (RFC 7838 §3: "Unknown parameters MUST be ignored").
pub fn parse(value: &str) -> Result<AltSvcValue, String> {
    let v = value.trim();
    if v == "clear" {
        return Ok(AltSvcValue::Clear);
    }
    let mut out = Vec::new();
    for item in split_outside_quotes(v, ',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mut parts = split_outside_quotes(item, ';').into_iter();
        let first = parts.next().unwrap_or_default();
        let (proto, authority) = first
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: no protocol-id=\"host:port\""))?;
        let protocol = percent_decode(proto.trim())?;
        if protocol.is_empty() {
            return Err(format!("{item:?}: an empty protocol-id"));
        }
        let authority = unquote(authority.trim())
            .ok_or_else(|| format!("{item:?}: the alt-authority is not a quoted string"))?;
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?}: the alt-authority has no port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?}: port {port:?} is not 1 to 65535"))?;
        let mut alt = Alternative {
            protocol,
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            max_age: DEFAULT_MAX_AGE,
            persist: false,
        };
        for p in parts {
            let Some((name, val)) = p.split_once('=') else {
                continue;
            };
            let val = val.trim();
            let val = unquote(val).unwrap_or_else(|| val.to_owned());
            match name.trim().to_ascii_lowercase().as_str() {
                "ma" => {
                    let secs: u64 = val
                        .parse()
                        .map_err(|_| format!("{item:?}: ma={val:?} is not a number of seconds"))?;
                    alt.max_age = Duration::from_secs(secs);
                }
                "persist" => alt.persist = val == "1",
                _ => {}
            }
        }
        out.push(alt);
    }
    if out.is_empty() {
        return Err(format!("{value:?}: no alternative"));
    }
    Ok(AltSvcValue::Alternatives(out))
}

/// `s` split at `sep` where it is not inside a quoted string (with `\` escapes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// The content of a quoted string (RFC 9110 §5.6.4), or `None` if `s` is not one.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A protocol-id is percent-encoded where it is not a token (RFC 7838 §3).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?}: a bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?}: not UTF-8"))
}

/// The origin as the cache keys it.
fn key(o: &Origin) -> (String, u16) {
    (o.host.clone(), o.port)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u16,
    expires: Instant,
    broken_until: Option<Instant>,
}

/// What the cache did.
#[derive(Debug, Default)]
pub struct AltSvcStats {
    /// `Alt-Svc` headers read that named an HTTP/3 alternative on the origin's host.
    pub learned: AtomicU64,
    /// Alternatives ignored: another host, another protocol, or a header that does not parse.
    pub ignored: AtomicU64,
    /// `clear` received.
    pub cleared: AtomicU64,
    /// Requests sent over HTTP/3 because of an alternative.
    pub over_h3: AtomicU64,
    /// Requests sent over TCP (none known, expired, broken, or fallen back).
    pub over_tcp: AtomicU64,
    /// Alternatives that failed (QUIC could not connect in time, or the exchange failed),
    /// and requests that went over TCP instead because of it.
    pub broken: AtomicU64,
    pub fell_back: AtomicU64,
}

/// HTTP/3 alternatives per origin, with their expiry, on tokio's clock (virtual on the
/// simulator).
#[derive(Debug, Default)]
pub struct AltSvcCache {
    entries: HashMap<(String, u16), Entry>,
}

impl AltSvcCache {
    /// Reads the `Alt-Svc` value `value` of a response from `origin` received at `now`:
    /// the first `h3` alternative on the origin's host replaces what was known (RFC 7838
    /// §3.1: a new header replaces the cached alternatives); `clear` forgets them, as does
    /// a header with no usable alternative.
    pub fn learn(&mut self, origin: &Origin, value: &str, now: Instant, stats: &AltSvcStats) {
        if origin.scheme != Scheme::Https {
            // HTTP/3 is for https origins only (RFC 9114 §3.1).
            stats.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match parse(value) {
            Ok(AltSvcValue::Clear) => {
                stats.cleared.fetch_add(1, Ordering::Relaxed);
                self.entries.remove(&key(origin));
            }
            Ok(AltSvcValue::Alternatives(alts)) => {
                let h3 = alts
                    .iter()
                    .find(|a| a.protocol == "h3" && (a.host.is_empty() || a.host == origin.host));
                let ignored = alts.len() - usize::from(h3.is_some());
                stats.ignored.fetch_add(ignored as u64, Ordering::Relaxed);
                match h3 {
                    Some(a) if !a.max_age.is_zero() => {
                        stats.learned.fetch_add(1, Ordering::Relaxed);
                        let broken_until = self
                            .entries
                            .get(&key(origin))
                            .filter(|e| e.port == a.port)
                            .and_then(|e| e.broken_until);
                        self.entries.insert(
                            key(origin),
                            Entry {
                                port: a.port,
                                expires: now + a.max_age,
                                broken_until,
                            },
                        );
                    }
                    _ => {
                        self.entries.remove(&key(origin));
                    }
                }
            }
            Err(_) => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The UDP port of `origin`'s HTTP/3 alternative, if one is known, fresh, and not
    /// marked broken at `now`.
    pub fn lookup(&mut self, origin: &Origin, now: Instant) -> Option<u16> {
        let k = key(origin);
        let e = *self.entries.get(&k)?;
        if now >= e.expires {
            self.entries.remove(&k);
            return None;
        }
        match e.broken_until {
            Some(t) if now < t => None,
            _ => Some(e.port),
        }
    }

    /// Marks `origin`'s alternative broken until `now + BROKEN_FOR`.
    pub fn mark_broken(&mut self, origin: &Origin, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key(origin)) {
            e.broken_until = Some(now + BROKEN_FOR);
        }
    }
}

/// How a response came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Over TCP (HTTP/1.1 or HTTP/2; the response's [`crate::RequestInfo`] says which).
    Tcp,
    /// Over HTTP/3, on the alternative's UDP port; `early` when the request went in 0-RTT.
    Http3 { port: u16, early: bool },
}

/// Why a call failed.
#[derive(Debug)]
pub enum AltSvcError {
    /// Over TCP.
    Tcp(Error),
    /// Over HTTP/3, for a request that is not sent again (not idempotent).
    Http3(io::Error),
}

impl std::fmt::Display for AltSvcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AltSvcError::Tcp(e) => write!(f, "{e}"),
            AltSvcError::Http3(e) => write!(
                f,
                "over HTTP/3: {e} (not idempotent, so not sent again; it may have been \
                 processed)"
            ),
        }
    }
}

impl std::error::Error for AltSvcError {}

/// A client that follows `Alt-Svc` to HTTP/3 (see the module's documentation).
pub struct AltSvcClient {
    tcp: Client,
    h3: H3Client,
    cache: Mutex<AltSvcCache>,
    quic_timeout: Duration,
    stats: Arc<AltSvcStats>,
}

impl AltSvcClient {
    /// `tcp` for the first calls, `h3` for the calls to origins that advertised HTTP/3; a
    /// QUIC connection not open within `quic_timeout` means the alternative is broken.
    pub fn new(tcp: Client, h3: H3Client, quic_timeout: Duration) -> AltSvcClient {
        AltSvcClient {
            tcp,
            h3,
            cache: Mutex::new(AltSvcCache::default()),
            quic_timeout,
            stats: Arc::new(AltSvcStats::default()),
        }
    }

    pub fn tcp(&self) -> &Client {
        &self.tcp
    }

    pub fn h3(&self) -> &H3Client {
        &self.h3
    }

    pub fn stats(&self) -> &Arc<AltSvcStats> {
        &self.stats
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, AltSvcCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` (an absolute URI) and reads the whole response: over HTTP/3 when its
    /// origin advertised an alternative that is still fresh and not broken, else over TCP,
    /// whose response's `Alt-Svc` is then read.
    pub async fn request(
        &self,
        req: Request<Bytes>,
    ) -> Result<(Response<Bytes>, Via), AltSvcError> {
        let origin =
            Origin::from_uri(req.uri()).map_err(|e| AltSvcError::Tcp(Error::InvalidRequest(e)))?;
        let port = self.cache().lookup(&origin, Instant::now());
        if let Some(port) = port {
            match self.over_h3(&origin, port, &req).await {
                Ok(r) => {
                    self.stats.over_h3.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Err((e, sent)) => {
                    self.stats.broken.fetch_add(1, Ordering::Relaxed);
                    self.cache().mark_broken(&origin, Instant::now());
                    let idempotent = matches!(
                        *req.method(),
                        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
                    );
                    if sent && !idempotent {
                        return Err(AltSvcError::Http3(e));
                    }
                    self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.stats.over_tcp.fetch_add(1, Ordering::Relaxed);
        let r = self.tcp.request(req).await.map_err(AltSvcError::Tcp)?;
        if let Some(v) = r
            .headers()
            .get(http::header::ALT_SVC)
            .and_then(|v| v.to_str().ok())
        {
            self.cache().learn(&origin, v, Instant::now(), &self.stats);
        }
        Ok((r, Via::Tcp))
    }

    /// The exchange over HTTP/3; on failure, whether the request may have been sent.
    async fn over_h3(
        &self,
        origin: &Origin,
        port: u16,
        req: &Request<Bytes>,
    ) -> Result<(Response<Bytes>, Via), (io::Error, bool)> {
        let ip = match origin.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((origin.host.as_str(), port))
                .await
                .map_err(|e| (e, false))?
                .next()
                .ok_or_else(|| (io::Error::other("no address"), false))?
                .ip(),
        };
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(self.quic_timeout, self.h3.connect(addr, &origin.host)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((e, false)),
            Err(_) => {
                return Err((
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no QUIC handshake with {addr} within {:?}",
                            self.quic_timeout
                        ),
                    ),
                    false,
                ))
            }
        }
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let r = self
            .h3
            .request(
                req.method().clone(),
                addr,
                &origin.host,
                &path,
                req.body().clone(),
            )
            .await
            .map_err(|e| (e, true))?;
        let early = r.early;
        let mut res = Response::new(r.body);
        *res.status_mut() = r.status;
        *res.headers_mut() = r.headers;
        Ok((res, Via::Http3 { port, early }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(port: u16, ma: u64) -> Alternative {
        Alternative {
            protocol: "h3".into(),
            host: String::new(),
            port,
            max_age: Duration::from_secs(ma),
            persist: false,
        }
    }

    #[test]
    fn parses_what_servers_send() {
        assert_eq!(
            parse("h3=\":443\"; ma=86400"),
            Ok(AltSvcValue::Alternatives(vec![alt(443, 86400)]))
        );
        assert_eq!(parse(" clear "), Ok(AltSvcValue::Clear));
        // Several, with unknown parameters, a host, quoted values, persist.
        let v =
            parse("h3-29=\":8443\", h3=\"example.com:443\";ma=\"60\";x=1;persist=1, h2=\":8443\"")
                .unwrap();
        let AltSvcValue::Alternatives(v) = v else {
            panic!("{v:?}")
        };
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].protocol.as_str(), v[0].port), ("h3-29", 8443));
        assert_eq!(v[1].host, "example.com");
        assert_eq!(v[1].max_age, Duration::from_secs(60));
        assert!(v[1].persist);
        // A percent-encoded protocol-id (RFC 7838 §3: "w=x:y" is w%3Dx%3Ay).
        let AltSvcValue::Alternatives(v) = parse("w%3Dx%3Ay=\":1\"").unwrap() else {
            panic!()
        };
        assert_eq!(v[0].protocol, "w=x:y");
        // An IPv6 host in brackets; a comma inside quotes does not split.
        let AltSvcValue::Alternatives(v) = parse("h3=\"[::1]:443\";x=\"a,b\"").unwrap() else {
            panic!()
        };
        assert_eq!((v.len(), v[0].host.as_str()), (1, "::1"));
    }

    #[test]
    fn rejects_what_it_cannot_read_without_panicking() {
        for bad in [
            "",
            "h3",
            "h3=:443",
            "h3=\":0\"",
            "h3=\":65536\"",
            "h3=\":443",
            "h3=\"443\"",
            "=\":443\"",
            "h3=\":443\"; ma=soon",
            "%zz=\":1\"",
            "%",
            ",,,",
            "h3=\"\\",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Arbitrary bytes: an error or a value, never a panic.
        let mut x: u32 = 1;
        for _ in 0..2000 {
            let s: String = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let alphabet = b"h3=\":;,%\\ a1ma";
                    alphabet[x as usize % alphabet.len()] as char
                })
                .collect();
            let _ = parse(&s);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_keeps_an_alternative_for_its_max_age() {
        let stats = AltSvcStats::default();
        let mut c = AltSvcCache::default();
        let (_, o) = Origin::parse("https://198.18.0.2/").unwrap();
        let t0 = Instant::now();
        c.learn(&o, "h3=\":443\"; ma=60", t0, &stats);
        assert_eq!(c.lookup(&o, t0), Some(443));
        assert_eq!(c.lookup(&o, t0 + Duration::from_secs(59)), Some(443));
        assert_eq!(c.lookup(&o, t0 + Duration::from_secs(60)), None);
        // Another host's alternative is not followed; clear forgets.
        c.learn(&o, "h3=\"other.example:443\"", t0, &stats);
        assert_eq!(c.lookup(&o, t0), None);
        c.learn(&o, "h3=\":8443\"", t0, &stats);
        assert_eq!(c.lookup(&o, t0 + Duration::from_secs(86_399)), Some(8443));
        c.mark_broken(&o, t0);
        assert_eq!(c.lookup(&o, t0 + BROKEN_FOR / 2), None);
        assert_eq!(c.lookup(&o, t0 + BROKEN_FOR), Some(8443));
        c.learn(&o, "clear", t0, &stats);
        assert_eq!(c.lookup(&o, t0), None);
        // Plain http:// origins get no HTTP/3.
        let (_, plain) = Origin::parse("http://198.18.0.2/").unwrap();
        c.learn(&plain, "h3=\":443\"", t0, &stats);
        assert_eq!(c.lookup(&plain, t0), None);
        assert_eq!(stats.learned.load(Ordering::Relaxed), 2);
        assert_eq!(stats.cleared.load(Ordering::Relaxed), 1);
        assert_eq!(stats.ignored.load(Ordering::Relaxed), 2);
    }
}
