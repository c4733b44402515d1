//! TCP Fast Open (RFC 7413): the server's keyed cookies and the client's cookie cache.
//!
//! The server (RFC 7413 §4.1.2) gives each client address a cookie, a MAC of that address under
//! a secret key, and accepts data in a later SYN only with a valid one; it keeps no state per
//! client. Our cookie is Linux's, so that a client (or a script) written against Linux sees the
//! same bytes: SipHash-2-4 over the SYN's IP source address followed by its destination address
//! (4 + 4 bytes, or 16 + 16), its 8-byte result stored little-endian. The key is 16 bytes, as
//! Linux's `TCP_FASTOPEN_KEY` socket option takes them; its `net.ipv4.tcp_fastopen_key` sysctl
//! writes the same key as four 32-bit words in hexadecimal, each stored little-endian.
//!
//! The client (RFC 7413 §4.1.3) caches, per server address, the last cookie and MSS the server
//! sent (Linux's `tcp_metrics`), and whether to ask in the experimental option next time.

use core::net::IpAddr;
use std::collections::HashMap;

use synack_wire::{FastOpen, FastOpenCookie};

use crate::isn::siphash24;

/// A Fast Open server key: the 16 bytes of SipHash-2-4's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FastOpenKey([u8; 16]);

impl core::fmt::Debug for FastOpenKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FastOpenKey(<secret>)")
    }
}

impl FastOpenKey {
    /// A key from its 16 bytes, in the layout of Linux's `TCP_FASTOPEN_KEY` socket option.
    pub const fn from_bytes(bytes: [u8; 16]) -> FastOpenKey {
        FastOpenKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the `net.ipv4.tcp_fastopen_key` format: four 32-bit hexadecimal words joined by
    /// `-` (`a0bf63f7-ed803d81-cd641d30-cebc4a90`), each stored little-endian.
    pub fn parse_linux(s: &str) -> Option<FastOpenKey> {
        let mut bytes = [0u8; 16];
        let mut words = s.trim().split('-');
        for chunk in bytes.chunks_exact_mut(4) {
            let w = words.next()?;
            if w.is_empty() || w.len() > 8 {
                return None;
            }
            let v = u32::from_str_radix(w, 16).ok()?;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        words.next().is_none().then_some(FastOpenKey(bytes))
    }

    /// The key in the sysctl's format (the inverse of [`parse_linux`](Self::parse_linux)).
    pub fn to_linux_string(&self) -> String {
        let w =
            |i: usize| u32::from_le_bytes([self.0[i], self.0[i + 1], self.0[i + 2], self.0[i + 3]]);
        format!("{:08x}-{:08x}-{:08x}-{:08x}", w(0), w(4), w(8), w(12))
    }

    /// The cookie of a client (RFC 7413 §4.1.2): SipHash-2-4 of the SYN's source address
    /// (`client`) then its destination (`server`), as Linux's
    /// `__tcp_fastopen_cookie_gen_cipher`. Both addresses are of one family.
    pub fn cookie(&self, client: IpAddr, server: IpAddr) -> FastOpenCookie {
        let mut msg = [0u8; 32];
        let len = match (client, server) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                msg[..4].copy_from_slice(&c.octets());
                msg[4..8].copy_from_slice(&s.octets());
                8
            }
            (c, s) => {
                msg[..16].copy_from_slice(&to_v6(c));
                msg[16..].copy_from_slice(&to_v6(s));
                32
            }
        };
        let mac = siphash24(&self.0, &msg[..len]).to_le_bytes();
        FastOpenCookie::new(&mac).unwrap_or_default()
    }
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Parses the whole sysctl value: a primary key, and optionally a backup one after a comma
/// (cookies made under the backup are still accepted, and answered with the primary's).
pub fn parse_linux_keys(s: &str) -> Option<(FastOpenKey, Option<FastOpenKey>)> {
    let mut parts = s.trim().split(',');
    let primary = FastOpenKey::parse_linux(parts.next()?)?;
    let backup = match parts.next() {
        Some(b) => Some(FastOpenKey::parse_linux(b)?),
        None => None,
    };
    parts.next().is_none().then_some((primary, backup))
}

/// Fast Open settings of an endpoint, as Linux's `net.ipv4.tcp_fastopen` bits and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastOpenConfig {
    /// Active opens may use Fast Open (bit 0x1; Linux's default is 1).
    pub client: bool,
    /// Listeners that enabled it (a queue length, `TCP_FASTOPEN`) accept data in SYNs (0x2).
    pub server: bool,
    /// The client sends data in the SYN without a cookie (0x4).
    pub client_no_cookie: bool,
    /// The server accepts data in a SYN without a cookie (0x200).
    pub server_no_cookie: bool,
    /// Every listener takes Fast Open without the socket option, its queue as long as its
    /// backlog (0x400).
    pub server_all_listeners: bool,
    /// The server's key; `None`: one derived from the endpoint's secret.
    pub key: Option<FastOpenKey>,
    /// A previous key still accepted (Linux's second key).
    pub backup_key: Option<FastOpenKey>,
}

impl Default for FastOpenConfig {
    /// Linux's defaults: client on, server off.
    fn default() -> FastOpenConfig {
        FastOpenConfig::from_linux_sysctl(1)
    }
}

impl FastOpenConfig {
    pub const CLIENT: u32 = 0x1;
    pub const SERVER: u32 = 0x2;
    pub const CLIENT_NO_COOKIE: u32 = 0x4;
    pub const SERVER_NO_COOKIE: u32 = 0x200;
    pub const SERVER_ALL_LISTENERS: u32 = 0x400;

    /// The settings of a `net.ipv4.tcp_fastopen` value (other bits are ignored, as recent
    /// Linux ignores them); no key.
    pub fn from_linux_sysctl(bits: u32) -> FastOpenConfig {
        FastOpenConfig {
            client: bits & Self::CLIENT != 0,
            server: bits & Self::SERVER != 0,
            client_no_cookie: bits & Self::CLIENT_NO_COOKIE != 0,
            server_no_cookie: bits & Self::SERVER_NO_COOKIE != 0,
            server_all_listeners: bits & Self::SERVER_ALL_LISTENERS != 0,
            key: None,
            backup_key: None,
        }
    }

    /// Apply a `net.ipv4.tcp_fastopen` value, keeping the keys.
    pub fn set_linux_sysctl(&mut self, bits: u32) {
        *self = FastOpenConfig {
            key: self.key,
            backup_key: self.backup_key,
            ..FastOpenConfig::from_linux_sysctl(bits)
        };
    }

    /// The settings as `net.ipv4.tcp_fastopen` bits.
    pub fn linux_sysctl(&self) -> u32 {
        let mut b = 0;
        for (on, bit) in [
            (self.client, Self::CLIENT),
            (self.server, Self::SERVER),
            (self.client_no_cookie, Self::CLIENT_NO_COOKIE),
            (self.server_no_cookie, Self::SERVER_NO_COOKIE),
            (self.server_all_listeners, Self::SERVER_ALL_LISTENERS),
        ] {
            if on {
                b |= bit;
            }
        }
        b
    }
}

/// What a client's SYN carries (decided at `connect` from the cache, RFC 7413 §4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientPlan {
    /// The option on the first SYN: a cookie, a request, or none (cookie-less mode).
    pub option: Option<FastOpen>,
    /// Data may ride the SYN: a cookie is known, or cookies are not needed.
    pub data: bool,
    /// The server's MSS as cached.
    pub mss: Option<u16>,
}

/// What the SYN-ACK taught a client about its server (Linux's `tcp_fastopen_cache_set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientOutcome {
    pub mss: u16,
    pub cookie: Option<FastOpen>,
    /// The SYN with data (or its SYN-ACK) was lost: only a plain SYN got through.
    pub syn_lost: bool,
    /// Ask in the experimental option next time (1), or back in kind 34 for good (2).
    pub try_exp: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct CacheEntry {
    mss: u16,
    cookie: Option<FastOpen>,
    try_exp: u8,
    syn_loss: u32,
}

/// The client's cache: per server address, the last cookie and MSS (RFC 7413 §4.1.3: "the
/// client caches the cookie ... and the server's MSS").
#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    entries: HashMap<IpAddr, CacheEntry>,
}

/// Most servers remembered; beyond, the cache is cleared and starts over (a bound, not an
/// eviction policy worth more code: Linux's metrics table is bounded the same way).
const CACHE_MAX: usize = 4096;

impl ClientCache {
    /// What a SYN to `server` carries (Linux's `tcp_fastopen_cookie_check`).
    pub fn plan(&self, server: IpAddr, no_cookie: bool) -> ClientPlan {
        let e = self.entries.get(&server).copied().unwrap_or_default();
        let mss = (e.mss != 0).then_some(e.mss);
        if no_cookie {
            return ClientPlan {
                option: None,
                data: true,
                mss,
            };
        }
        match e.cookie {
            Some(c) => ClientPlan {
                option: Some(c),
                data: true,
                mss,
            },
            None => ClientPlan {
                option: Some(FastOpen::request(e.try_exp == 1)),
                data: false,
                mss,
            },
        }
    }

    pub fn update(&mut self, server: IpAddr, o: ClientOutcome) {
        if self.entries.len() >= CACHE_MAX && !self.entries.contains_key(&server) {
            self.entries.clear();
        }
        let e = self.entries.entry(server).or_default();
        if o.mss != 0 {
            e.mss = o.mss;
        }
        match o.cookie {
            Some(c) if !c.cookie.is_request() => e.cookie = Some(c),
            _ => {
                if o.try_exp > e.try_exp && e.cookie.is_none() {
                    e.try_exp = o.try_exp;
                }
            }
        }
        e.syn_loss = if o.syn_lost { e.syn_loss + 1 } else { 0 };
    }

    pub fn get(&self, server: IpAddr) -> Option<(Option<FastOpen>, Option<u16>)> {
        self.entries
            .get(&server)
            .map(|e| (e.cookie, (e.mss != 0).then_some(e.mss)))
    }

    pub fn set(&mut self, server: IpAddr, cookie: Option<FastOpen>, mss: Option<u16>) {
        let e = self.entries.entry(server).or_default();
        e.cookie = cookie;
        e.mss = mss.unwrap_or(0);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Linux's cookies, as packetdrill's Fast Open scripts expect them.
    #[test]
    fn cookies_match_linux() {
        let k = FastOpenKey::parse_linux("a0bf63f7-ed803d81-cd641d30-cebc4a90").unwrap();
        let c = k.cookie(ip("10.248.0.2"), ip("192.168.0.2"));
        assert_eq!(format!("{c:?}"), "FastOpenCookie(00abaaabe8e954c2)");
        // The sockopt's bytes for the same key.
        assert_eq!(
            k.as_bytes(),
            b"\xf7\x63\xbf\xa0\x81\x3d\x80\xed\x30\x1d\x64\xcd\x90\x4a\xbc\xce"
        );
        assert_eq!(k.to_linux_string(), "a0bf63f7-ed803d81-cd641d30-cebc4a90");
        // The suite's default key, remote 192.0.2.1 to local 192.168.0.1: its TFO_COOKIE.
        let k = FastOpenKey::parse_linux("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4").unwrap();
        let c = k.cookie(ip("192.0.2.1"), ip("192.168.0.1"));
        assert_eq!(format!("{c:?}"), "FastOpenCookie(3021b9d889017eeb)");
        // The all-zero key (sockopt-fastopen-key.pkt).
        let k = FastOpenKey::parse_linux("00000000-00000000-00000000-00000000").unwrap();
        let c = k.cookie(ip("10.248.0.2"), ip("192.168.0.2"));
        assert_eq!(format!("{c:?}"), "FastOpenCookie(93b7aa4f550f8a1a)");
    }

    #[test]
    fn key_parsing() {
        assert!(FastOpenKey::parse_linux("1-2-3").is_none());
        assert!(FastOpenKey::parse_linux("1-2-3-4-5").is_none());
        assert!(FastOpenKey::parse_linux("1-2-3-x").is_none());
        assert!(FastOpenKey::parse_linux("1-2-3-123456789").is_none());
        let k = FastOpenKey::parse_linux("1-2-3-4").unwrap();
        assert_eq!(k.to_linux_string(), "00000001-00000002-00000003-00000004");
        let (p, b) = parse_linux_keys("1-2-3-4,5-6-7-8\n").unwrap();
        assert_eq!(p, k);
        assert_eq!(b, FastOpenKey::parse_linux("5-6-7-8"));
        assert!(parse_linux_keys("1-2-3-4,5-6-7-8,9-9-9-9").is_none());
    }

    #[test]
    fn sysctl_bits() {
        let c = FastOpenConfig::from_linux_sysctl(0x70403);
        assert!(c.client && c.server && c.server_all_listeners);
        assert!(!c.client_no_cookie && !c.server_no_cookie);
        assert_eq!(c.linux_sysctl(), 0x403);
        assert_eq!(FastOpenConfig::default().linux_sysctl(), 1);
        assert_eq!(
            FastOpenConfig::from_linux_sysctl(0x205).linux_sysctl(),
            0x205
        );
    }

    /// The cache follows Linux: a cookie replaces the last one, a request answered without
    /// one asks in the experimental kind next, and if that fails too, in kind 34 for good.
    #[test]
    fn cache_fallback_to_experimental_and_back() {
        let s = ip("192.0.2.1");
        let mut c = ClientCache::default();
        let p = c.plan(s, false);
        assert_eq!(p.option, Some(FastOpen::request(false)));
        assert!(!p.data);
        let miss = |try_exp| ClientOutcome {
            mss: 1460,
            cookie: None,
            syn_lost: false,
            try_exp,
        };
        c.update(s, miss(1));
        assert_eq!(c.plan(s, false).option, Some(FastOpen::request(true)));
        c.update(s, miss(2));
        assert_eq!(c.plan(s, false).option, Some(FastOpen::request(false)));
        c.update(s, miss(1));
        assert_eq!(c.plan(s, false).option, Some(FastOpen::request(false)));
        let fo = FastOpen {
            cookie: FastOpenCookie::new(&[1, 2, 3, 4]).unwrap(),
            experimental: true,
        };
        c.update(
            s,
            ClientOutcome {
                mss: 940,
                cookie: Some(fo),
                syn_lost: false,
                try_exp: 0,
            },
        );
        let p = c.plan(s, false);
        assert_eq!((p.option, p.data, p.mss), (Some(fo), true, Some(940)));
        // Cookie-less mode sends data and no option.
        let p = c.plan(ip("192.0.2.9"), true);
        assert_eq!((p.option, p.data, p.mss), (None, true, None));
    }
}
