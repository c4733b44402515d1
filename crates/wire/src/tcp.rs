//! TCP header and options (RFC 9293 §3.1; options: RFC 9293 §3.2, RFC 7323, RFC 2018, and the
//! Fast Open cookie of RFC 7413 §4.1.1 in both its kinds, 34 and the experimental 254 of
//! RFC 6994).

use core::net::IpAddr;

use crate::checksum;
use crate::{Error, Result};

/// The control bits of a TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    // (helper: contains, insert, remove, is_empty, BitOr/BitOrAssign, and Display as the ladder
    // names them: "SYN", "SYN-ACK", "ACK", "FIN-ACK", "PSH-ACK", "RST", "RST-ACK", ...)

    /// Whether every flag set in `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    #[inline]
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    #[inline]
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }

    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl core::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

/// As a ladder diagram names a segment: the set flags joined by `-` in the order SYN, FIN, RST,
/// PSH, ACK, URG, ECE, CWR (`"SYN-ACK"`, `"FIN-ACK"`, `"PSH-ACK"`, `"RST"`), or `"none"`.
impl core::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::URG, "URG"),
            (TcpFlags::ECE, "ECE"),
            (TcpFlags::CWR, "CWR"),
        ];
        if self.is_empty() {
            return f.pad("none");
        }
        // The longest name, all eight flags, is 31 bytes; build it on the stack so that width
        // and alignment (`{:>8}`) apply to the whole name.
        let mut buf = [0u8; 32];
        let mut len = 0;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                let sep: &[u8] = if len == 0 { b"" } else { b"-" };
                for &b in sep.iter().chain(name.as_bytes()) {
                    buf[len] = b;
                    len += 1;
                }
            }
        }
        f.pad(core::str::from_utf8(&buf[..len]).map_err(|_| core::fmt::Error)?)
    }
}

/// One SACK block, RFC 2018 §3: `left` is the first sequence number of the block, `right` the
/// sequence number just past its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackBlock {
    pub left: u32,
    pub right: u32,
}

/// The timestamps option, RFC 7323 §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamp {
    pub tsval: u32,
    pub tsecr: u32,
}

/// A TCP Fast Open cookie (RFC 7413 §4.1.1): empty (a cookie request) or 4 to 16 bytes.
///
/// RFC 7413 allows any length from 4 to 16; Linux (`tcp_parse_fastopen_option`) takes only
/// even lengths, and so do we, so that a cookie we accept is one Linux would send.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FastOpenCookie {
    bytes: [u8; 16],
    len: u8,
}

impl FastOpenCookie {
    /// The shortest cookie (RFC 7413 §4.1.1).
    pub const MIN_LEN: usize = 4;
    /// The longest cookie (RFC 7413 §4.1.1).
    pub const MAX_LEN: usize = 16;

    /// The empty cookie: a request for one (RFC 7413 §4.1.1).
    pub const REQUEST: FastOpenCookie = FastOpenCookie {
        bytes: [0; 16],
        len: 0,
    };

    /// A cookie of `bytes`, if their length is valid: 0 (a request) or an even number from 4
    /// to 16.
    pub fn new(bytes: &[u8]) -> Option<FastOpenCookie> {
        let n = bytes.len();
        let valid = n == 0 || ((Self::MIN_LEN..=Self::MAX_LEN).contains(&n) && n.is_multiple_of(2));
        if !valid {
            return None;
        }
        let mut c = FastOpenCookie {
            bytes: [0; 16],
            len: n as u8,
        };
        c.bytes[..n].copy_from_slice(bytes);
        Some(c)
    }

    /// The cookie's bytes (empty for a request).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(16)]
    }

    /// Whether this is a request (no cookie bytes).
    pub fn is_request(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        usize::from(self.len).min(16)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for FastOpenCookie {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FastOpenCookie(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The Fast Open option (RFC 7413 §4.1.1): a cookie or a cookie request, in the kind a peer
/// used, 34, or the experimental kind 254 with the magic 0xF989 (RFC 6994 §3) that Linux still
/// speaks to servers that predate kind 34.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FastOpen {
    pub cookie: FastOpenCookie,
    /// Sent (or to be sent) as kind 254 with magic 0xF989 rather than kind 34.
    pub experimental: bool,
}

impl FastOpen {
    /// A cookie request in kind 34 (`experimental: false`) or 254.
    pub fn request(experimental: bool) -> FastOpen {
        FastOpen {
            cookie: FastOpenCookie::REQUEST,
            experimental,
        }
    }

    /// Bytes of the option itself: kind, length, (magic,) cookie.
    fn option_len(&self) -> usize {
        let base = if self.experimental { 4 } else { 2 };
        base + self.cookie.len()
    }

    /// Bytes written, padding with NOPs to a multiple of 4 included (as Linux aligns it).
    fn padded_len(&self) -> usize {
        (self.option_len() + 3) & !3
    }
}

/// The options synack understands; others are skipped by their length on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2), SYN only.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3), SYN only. Parsed as sent; the receiver clamps to 14.
    pub window_scale: Option<u8>,
    /// SACK-permitted (kind 4), SYN only.
    pub sack_permitted: bool,
    /// SACK blocks (kind 5); `sack_len` of them are valid.
    pub sack: [SackBlock; 4],
    pub sack_len: u8,
    /// Timestamps (kind 8).
    pub timestamp: Option<Timestamp>,
    /// TCP Fast Open (kind 34, or 254 with magic 0xF989), SYN and SYN-ACK only (RFC 7413).
    pub fast_open: Option<FastOpen>,
}

/// A parsed TCP segment, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

/// Option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018).
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
/// Timestamps alone: `NOP, NOP, kind 8, length 10`, then TSval and TSecr (RFC 7323 Appendix A).
const TIMESTAMP_ONLY_PREFIX: [u8; 4] = [OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10];
const TIMESTAMP_ONLY_LEN: usize = 12;
const OPT_MSS: u8 = 2;
const OPT_WINDOW_SCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;
/// TCP Fast Open, RFC 7413 §4.1.1.
const OPT_FAST_OPEN: u8 = 34;
/// The experimental kind shared by magic number (RFC 6994 §3), and Fast Open's magic.
const OPT_EXPERIMENTAL: u8 = 254;
const FAST_OPEN_MAGIC: [u8; 2] = [0xf9, 0x89];

impl TcpOptions {
    /// The most option bytes a header can carry: data offset 15 × 4 − 20 (RFC 9293 §3.1).
    pub const MAX_LEN: usize = 40;

    /// The valid SACK blocks: the first `sack_len` (at most 4) of `sack`.
    #[inline]
    pub fn sack_blocks(&self) -> &[SackBlock] {
        let n = usize::from(self.sack_len).min(self.sack.len());
        &self.sack[..n]
    }

    /// Appends a SACK block; returns `false` (and changes nothing) if four are already held.
    /// Emission may still drop some: see [`emitted_sack_blocks`](Self::emitted_sack_blocks).
    #[inline]
    pub fn push_sack(&mut self, block: SackBlock) -> bool {
        let n = usize::from(self.sack_len);
        match self.sack.get_mut(n) {
            Some(slot) => {
                *slot = block;
                self.sack_len += 1;
                true
            }
            None => false,
        }
    }

    /// Removes all SACK blocks (and zeroes the unused slots, so that equality with a parsed
    /// value holds).
    #[inline]
    pub fn clear_sack(&mut self) {
        self.sack = [SackBlock::default(); 4];
        self.sack_len = 0;
    }

    /// The timestamps, when they are the only option to write.
    #[inline]
    fn timestamp_only(&self) -> Option<Timestamp> {
        let only = self.mss.is_none()
            && self.window_scale.is_none()
            && !self.sack_permitted
            && self.sack_len == 0
            && self.fast_open.is_none();
        self.timestamp.filter(|_| only)
    }

    /// Bytes of the options written before any SACK blocks.
    #[inline]
    fn fixed_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4; // MSS
        }
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) => 12,  // SACK_PERM, TS
            (false, true) => 12, // NOP, NOP, TS
            (true, false) => 4,  // NOP, NOP, SACK_PERM
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4; // NOP, WS
        }
        if let Some(fo) = self.fast_open {
            n += fo.padded_len(); // FO (or EXP, magic), cookie, NOPs
        }
        n
    }

    /// How many SACK blocks [`emit`](Self::emit) writes: the first ones of
    /// [`sack_blocks`](Self::sack_blocks) that fit, after the other options and a NOP, NOP
    /// prefix, in the 40 option bytes (RFC 2018 §3: at most 3 with timestamps, 4 without).
    #[inline]
    pub fn emitted_sack_blocks(&self) -> usize {
        let room = Self::MAX_LEN.saturating_sub(self.fixed_len()); // fixed_len() <= 40
        let held = self.sack_blocks().len();
        if held == 0 || room < 4 + 8 {
            0
        } else {
            held.min((room - 4) / 8)
        }
    }

    /// The number of option bytes [`emit`](Self::emit) writes: a multiple of 4, at most 40.
    #[inline]
    pub fn len(&self) -> usize {
        let mut n = self.fixed_len();
        let blocks = self.emitted_sack_blocks();
        if blocks > 0 {
            n += 4 + 8 * blocks; // NOP, NOP, SACK
        }
        (n + 3) & !3
    }

    /// Whether [`emit`](Self::emit) writes nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options into `buf[..self.len()]` and returns that length.
    ///
    /// The layout matches Linux's `tcp_options_write` byte for byte, so that captures compare:
    /// * MSS (kind 2, RFC 9293 §3.2);
    /// * SACK-permitted and timestamps together as `04 02 08 0a <tsval> <tsecr>`; timestamps
    ///   alone as `01 01 08 0a ...`; SACK-permitted alone as `01 01 04 02` (RFC 7323 §3,
    ///   RFC 2018 §2, and RFC 7323 Appendix A on alignment);
    /// * window scale as `01 03 03 <shift>` (RFC 7323 §2.2);
    /// * SACK blocks as `01 01 05 <len> <left> <right>...`, as many as fit (RFC 2018 §3);
    /// * Fast Open as `22 <len> <cookie>` or `fe <len> f9 89 <cookie>`, then NOPs to a multiple
    ///   of 4 (RFC 7413 §4.1.1, RFC 6994 §3; Linux's `tcp_options_write` puts it last);
    /// * zero (EOL) padding to a multiple of 4.
    ///
    /// Every option that is set is written: the TCP layer sets MSS, window scale and
    /// SACK-permitted on SYN segments only (RFC 9293 §3.7.1, RFC 7323 §2.2, RFC 2018 §2).
    /// A SYN with all of them gives Linux's `02 04 05 b4 04 02 08 0a <tsval> <tsecr> 01 03 03 07`.
    ///
    /// # Panics
    /// If `buf` is shorter than `self.len()`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        if let Some(ts) = self.timestamp_only() {
            // The common case, every segment after the handshake: one fixed layout.
            let out = &mut buf[..TIMESTAMP_ONLY_LEN];
            out[..4].copy_from_slice(&TIMESTAMP_ONLY_PREFIX);
            out[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            out[8..].copy_from_slice(&ts.tsecr.to_be_bytes());
            return TIMESTAMP_ONLY_LEN;
        }
        let len = self.len();
        let buf = &mut buf[..len];
        let mut w = 0;
        let mut put = |bytes: &[u8]| {
            buf[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[OPT_MSS, 4, hi, lo]);
        }
        match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) => put(&[OPT_SACK_PERMITTED, 2]),
            (false, true) => put(&[OPT_NOP, OPT_NOP]),
            (true, false) => put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]),
            (false, false) => {}
        }
        if let Some(ts) = self.timestamp {
            put(&[OPT_TIMESTAMP, 10]);
            put(&ts.tsval.to_be_bytes());
            put(&ts.tsecr.to_be_bytes());
        }
        if let Some(shift) = self.window_scale {
            put(&[OPT_NOP, OPT_WINDOW_SCALE, 3, shift]);
        }
        let blocks = self.emitted_sack_blocks();
        if blocks > 0 {
            // At most 4 blocks: 2 + 32 fits in a byte.
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, (2 + 8 * blocks) as u8]);
            for b in &self.sack[..blocks] {
                put(&b.left.to_be_bytes());
                put(&b.right.to_be_bytes());
            }
        }
        if let Some(fo) = self.fast_open {
            // Option lengths are at most 4 + 16: they fit in a byte.
            let olen = fo.option_len() as u8;
            if fo.experimental {
                put(&[
                    OPT_EXPERIMENTAL,
                    olen,
                    FAST_OPEN_MAGIC[0],
                    FAST_OPEN_MAGIC[1],
                ]);
            } else {
                put(&[OPT_FAST_OPEN, olen]);
            }
            put(fo.cookie.as_bytes());
            for _ in fo.option_len()..fo.padded_len() {
                put(&[OPT_NOP]);
            }
        }
        buf[w..].fill(OPT_EOL);
        len
    }

    /// Parses the option bytes of a TCP header (everything after the first 20 bytes, up to the
    /// data offset), following RFC 9293 §3.2:
    /// * End of Option List (0) ends parsing; No-Operation (1) is skipped;
    /// * any other kind has a length byte counting the kind and length bytes: a missing length,
    ///   a length below 2 or one running past `options` → [`Error::BadOption`];
    /// * MSS (2, length 4), window scale (3, length 3; stored as sent, RFC 7323 §2.3 has the
    ///   receiver clamp it to 14), SACK-permitted (4, length 2), SACK (5, length 2 + 8n, n ≥ 1;
    ///   RFC 2018 §3) and timestamps (8, length 10) are recorded;
    /// * a known kind with any other length, and every unknown kind, is skipped by its length
    ///   (RFC 9293 §3.2: "be prepared to handle an illegal option length");
    /// * Fast Open (34, and 254 with magic 0xF989: RFC 7413 §4.1.1, RFC 6994 §3) is recorded
    ///   when its cookie is empty (a request) or of an even length from 4 to 16; a cookie of
    ///   any other length is ignored, as Linux ignores it; kind 254 with another magic is
    ///   someone else's experiment, skipped;
    /// * SACK blocks beyond the fourth are ignored; a later occurrence of MSS, window scale,
    ///   timestamps or Fast Open replaces an earlier one.
    #[inline]
    pub fn parse(options: &[u8]) -> Result<TcpOptions> {
        // RFC 7323 Appendix A's layout, which Linux and synack send on every segment after the
        // handshake, read without the general loop (as Linux's `tcp_fast_parse_options`).
        if let Some((prefix, ts)) = options.split_first_chunk::<4>() {
            if *prefix == TIMESTAMP_ONLY_PREFIX && ts.len() == 8 {
                let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                return Ok(TcpOptions {
                    timestamp: Some(Timestamp {
                        tsval: word(&ts[..4]),
                        tsecr: word(&ts[4..]),
                    }),
                    ..TcpOptions::default()
                });
            }
        }
        let mut out = TcpOptions::default();
        let mut rest = options;
        while let Some((&kind, after_kind)) = rest.split_first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    rest = after_kind;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*after_kind.first().ok_or(Error::BadOption)?);
            if len < 2 {
                return Err(Error::BadOption);
            }
            let (option, tail) = rest.split_at_checked(len).ok_or(Error::BadOption)?;
            let body = option.get(2..).unwrap_or_default();
            match (kind, body) {
                (OPT_MSS, &[hi, lo]) => out.mss = Some(u16::from_be_bytes([hi, lo])),
                (OPT_WINDOW_SCALE, &[shift]) => out.window_scale = Some(shift),
                (OPT_SACK_PERMITTED, &[]) => out.sack_permitted = true,
                (OPT_SACK, blocks) if !blocks.is_empty() && blocks.len() % 8 == 0 => {
                    for block in blocks.chunks_exact(8) {
                        let (left, right) = block.split_at(4);
                        let block = SackBlock {
                            left: be32(left),
                            right: be32(right),
                        };
                        if !out.push_sack(block) {
                            break;
                        }
                    }
                }
                (OPT_TIMESTAMP, ts) if ts.len() == 8 => {
                    let (tsval, tsecr) = ts.split_at(4);
                    out.timestamp = Some(Timestamp {
                        tsval: be32(tsval),
                        tsecr: be32(tsecr),
                    });
                }
                (OPT_FAST_OPEN, cookie) => {
                    if let Some(cookie) = FastOpenCookie::new(cookie) {
                        out.fast_open = Some(FastOpen {
                            cookie,
                            experimental: false,
                        });
                    }
                }
                (OPT_EXPERIMENTAL, [m0, m1, cookie @ ..]) if [*m0, *m1] == FAST_OPEN_MAGIC => {
                    if let Some(cookie) = FastOpenCookie::new(cookie) {
                        out.fast_open = Some(FastOpen {
                            cookie,
                            experimental: true,
                        });
                    }
                }
                _ => {}
            }
            rest = tail;
        }
        Ok(out)
    }
}

/// A big-endian `u32` from a 4-byte slice (0 if it is not 4 bytes; callers pass 4).
#[inline]
fn be32(bytes: &[u8]) -> u32 {
    bytes
        .first_chunk::<4>()
        .map_or(0, |b| u32::from_be_bytes(*b))
}

/// Offset of the checksum field in the TCP header.
const CHECKSUM_AT: usize = 16;

impl<'a> TcpRepr<'a> {
    /// The length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Parses a whole TCP segment (header and payload: exactly the IP payload, RFC 9293 §3.1).
    ///
    /// Errors, in the order checked:
    /// * fewer than 20 bytes → [`Error::Truncated`];
    /// * data offset below 5, or a header longer than `segment` → [`Error::BadHeaderLength`];
    /// * with `checksum: Some((src, dst))`, a checksum that does not verify over the
    ///   pseudo-header and the segment (RFC 9293 §3.1) → [`Error::BadChecksum`]. Pass `None`
    ///   when the checksum has already been verified (or offloaded);
    /// * malformed options → [`Error::BadOption`] (see [`TcpOptions::parse`]).
    ///
    /// The reserved bits next to the data offset are ignored; all eight control bits are kept.
    ///
    /// ```
    /// use core::net::{IpAddr, Ipv4Addr};
    /// use synack_wire::{TcpFlags, TcpOptions, TcpRepr};
    ///
    /// let (src, dst) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    /// let syn = TcpRepr {
    ///     src_port: 41668,
    ///     dst_port: 80,
    ///     seq: 1,
    ///     ack: 0,
    ///     flags: TcpFlags::SYN,
    ///     window: 64240,
    ///     urgent: 0,
    ///     options: TcpOptions { mss: Some(1460), window_scale: Some(7), ..TcpOptions::default() },
    ///     payload: &[],
    /// };
    /// let mut buf = [0u8; 60];
    /// let len = syn.buffer_len();
    /// syn.emit(&mut buf[..len], src, dst);
    /// assert_eq!(TcpRepr::parse(&buf[..len], Some((src, dst))), Ok(syn));
    /// assert_eq!(syn.seq_len(), 1);
    /// ```
    #[inline]
    pub fn parse(segment: &'a [u8], checksum: Option<(IpAddr, IpAddr)>) -> Result<TcpRepr<'a>> {
        let hdr: &[u8; 20] = segment.first_chunk().ok_or(Error::Truncated)?;
        let header_len = usize::from(hdr[12] >> 4) * 4;
        if header_len < Self::MIN_HEADER_LEN {
            return Err(Error::BadHeaderLength);
        }
        let (header, payload) = segment
            .split_at_checked(header_len)
            .ok_or(Error::BadHeaderLength)?;
        if let Some((src, dst)) = checksum {
            if !verify_checksum(segment, src, dst) {
                return Err(Error::BadChecksum);
            }
        }
        let options = TcpOptions::parse(header.get(Self::MIN_HEADER_LEN..).unwrap_or_default())?;
        Ok(TcpRepr {
            src_port: u16::from_be_bytes([hdr[0], hdr[1]]),
            dst_port: u16::from_be_bytes([hdr[2], hdr[3]]),
            seq: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
            ack: u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
            flags: TcpFlags(hdr[13]),
            window: u16::from_be_bytes([hdr[14], hdr[15]]),
            urgent: u16::from_be_bytes([hdr[18], hdr[19]]),
            options,
            payload,
        })
    }

    /// The header length: 20 plus [`TcpOptions::len`].
    #[inline]
    pub fn header_len(&self) -> usize {
        Self::MIN_HEADER_LEN + self.options.len()
    }

    /// The whole segment's length: header and payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// The sequence space the segment occupies: the payload, plus one for SYN and one for FIN
    /// (RFC 9293 §3.4).
    #[inline]
    pub fn seq_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.flags.contains(TcpFlags::SYN))
            + usize::from(self.flags.contains(TcpFlags::FIN))
    }

    /// Writes the header and options into `buf[..self.header_len()]`, with a zero checksum
    /// field. The payload is not written; finish with [`fill_checksum`] over the whole segment
    /// once it is in place.
    ///
    /// # Panics
    /// If `buf` is shorter than `self.header_len()`.
    #[inline]
    pub fn emit_header(&self, buf: &mut [u8]) {
        let header_len = self.header_len();
        let hdr = &mut buf[..header_len];
        hdr[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        hdr[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        hdr[4..8].copy_from_slice(&self.seq.to_be_bytes());
        hdr[8..12].copy_from_slice(&self.ack.to_be_bytes());
        // header_len <= 60, so the data offset fits in the high nibble.
        hdr[12] = ((header_len / 4) as u8) << 4;
        hdr[13] = self.flags.0;
        hdr[14..16].copy_from_slice(&self.window.to_be_bytes());
        hdr[16..18].copy_from_slice(&[0, 0]);
        hdr[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        self.options.emit(&mut hdr[Self::MIN_HEADER_LEN..]);
    }

    /// [`emit_header`](Self::emit_header) into the front of `buf`, returning the header's
    /// length: the same bytes, with the length worked out once, and the layout of every
    /// segment after the handshake (no options, or timestamps alone: RFC 7323 Appendix A)
    /// written without the general option writer.
    ///
    /// # Panics
    /// If `buf` is shorter than the header.
    #[inline]
    pub fn write_header(&self, buf: &mut [u8]) -> usize {
        let o = &self.options;
        let plain = o.mss.is_none()
            && o.window_scale.is_none()
            && !o.sack_permitted
            && o.sack_len == 0
            && o.fast_open.is_none();
        if !plain {
            let header_len = self.header_len();
            self.emit_header(&mut buf[..header_len]);
            return header_len;
        }
        let header_len = match o.timestamp {
            Some(_) => Self::MIN_HEADER_LEN + TIMESTAMP_ONLY_LEN,
            None => Self::MIN_HEADER_LEN,
        };
        let hdr = &mut buf[..header_len];
        hdr[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        hdr[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        hdr[4..8].copy_from_slice(&self.seq.to_be_bytes());
        hdr[8..12].copy_from_slice(&self.ack.to_be_bytes());
        hdr[12] = ((header_len / 4) as u8) << 4;
        hdr[13] = self.flags.0;
        hdr[14..16].copy_from_slice(&self.window.to_be_bytes());
        hdr[16..18].copy_from_slice(&[0, 0]);
        hdr[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        if let Some(ts) = o.timestamp {
            let out = &mut hdr[Self::MIN_HEADER_LEN..];
            out[..4].copy_from_slice(&TIMESTAMP_ONLY_PREFIX);
            out[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            out[8..].copy_from_slice(&ts.tsecr.to_be_bytes());
        }
        header_len
    }

    /// Writes the header, options and payload into `buf[..self.buffer_len()]` and fills in the
    /// checksum over the pseudo-header of `src` and `dst` (RFC 9293 §3.1).
    ///
    /// # Panics
    /// If `buf` is shorter than `self.buffer_len()`.
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        let header_len = self.header_len();
        let segment = &mut buf[..header_len + self.payload.len()];
        self.emit_header(segment);
        segment[header_len..].copy_from_slice(self.payload);
        fill_checksum(segment, src, dst);
    }
}

/// Computes the checksum of a whole emitted segment (header, options and payload) over the
/// pseudo-header of `src` and `dst` (RFC 9293 §3.1) and stores it; the checksum field is zeroed
/// first, so any previous value is ignored.
///
/// # Panics
/// If `segment` is shorter than 20 bytes or longer than `u32::MAX`.
#[inline]
pub fn fill_checksum(segment: &mut [u8], src: IpAddr, dst: IpAddr) {
    segment[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&[0, 0]);
    let len = u32::try_from(segment.len()).expect("TCP segment longer than u32::MAX");
    let pseudo = checksum::pseudo_header_sum(src, dst, TCP_PROTOCOL, len);
    let sum = checksum::checksum(segment, pseudo);
    segment[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Stores the checksum of a segment whose payload was summed as it was copied in
/// ([`copy_and_sum`](crate::copy_sum::copy_and_sum) from `0`, giving `payload_sum`): `header`
/// is the emitted header with its options (a multiple of four bytes, so the payload's words
/// pair up as in the whole segment), `len` the whole segment's length, header included (RFC
/// 9293 §3.1). The result is what [`fill_checksum`] over the whole segment stores.
///
/// # Panics
/// If `header` is shorter than 20 bytes or `len` longer than `u32::MAX`.
#[inline]
pub fn fill_checksum_with_payload_sum(
    header: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    len: usize,
    payload_sum: u64,
) {
    header[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&[0, 0]);
    let len = u32::try_from(len).expect("TCP segment longer than u32::MAX");
    let pseudo = checksum::pseudo_header_sum(src, dst, TCP_PROTOCOL, len);
    let (s, carry) = pseudo.overflowing_add(payload_sum);
    let sum = checksum::checksum(header, s + u64::from(carry));
    header[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Whether a received segment's checksum verifies over the pseudo-header of `src` and `dst`
/// (RFC 9293 §3.1). A segment longer than `u32::MAX` does not.
#[inline]
pub fn verify_checksum(segment: &[u8], src: IpAddr, dst: IpAddr) -> bool {
    let Ok(len) = u32::try_from(segment.len()) else {
        return false;
    };
    let pseudo = checksum::pseudo_header_sum(src, dst, TCP_PROTOCOL, len);
    checksum::checksum(segment, pseudo) == 0
}

/// TCP's IP protocol number.
const TCP_PROTOCOL: u8 = 6;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::{IpProtocol, Ipv4Repr};
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// A Linux SYN, built by hand: IPv4 10.0.0.1 → 10.0.0.2, ident 0x3a5c, DF, TTL 64; TCP
    /// 41668 → 80, seq 0x6b8b4567, window 64240, options MSS 1460, SACK_PERM, TS
    /// (1000000, 0), NOP, WS 7. Checksums computed independently.
    const LINUX_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x3a, 0x5c, 0x40, 0x00, 0x40, 0x06, 0xec, 0x5d, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, // IPv4
        0xa2, 0xc4, 0x00, 0x50, 0x6b, 0x8b, 0x45, 0x67, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xa2, 0xb6, 0x00, 0x00, // TCP
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07, // options
    ];

    fn v4_addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(10, 0, 0, 2).into(),
        )
    }

    fn v6_addrs() -> (IpAddr, IpAddr) {
        (
            "2001:db8::a".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8:1::b".parse::<Ipv6Addr>().unwrap().into(),
        )
    }

    fn syn_options() -> TcpOptions {
        TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(Timestamp {
                tsval: 1_000_000,
                tsecr: 0,
            }),
            ..TcpOptions::default()
        }
    }

    fn sack(n: u32) -> SackBlock {
        SackBlock {
            left: n * 1000,
            right: n * 1000 + 500,
        }
    }

    fn emit_opts(o: &TcpOptions) -> Vec<u8> {
        let mut buf = vec![0xee; o.len()];
        assert_eq!(o.emit(&mut buf), o.len());
        buf
    }

    /// A segment with the given option bytes (data offset set accordingly) and no payload.
    fn segment_with_options(opts: &[u8]) -> Vec<u8> {
        assert_eq!(opts.len() % 4, 0);
        let mut seg = vec![0u8; 20];
        seg[12] = (((20 + opts.len()) / 4) as u8) << 4;
        seg[13] = TcpFlags::ACK.0;
        seg.extend_from_slice(opts);
        seg
    }

    #[test]
    fn flags_helpers_and_display() {
        let mut f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN));
        assert!(f.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::FIN));
        assert_eq!(f & TcpFlags::ACK, TcpFlags::ACK);
        f.remove(TcpFlags::SYN);
        assert_eq!(f, TcpFlags::ACK);
        f.insert(TcpFlags::FIN);
        assert_eq!(f, TcpFlags(0x11));
        f |= TcpFlags::PSH;
        assert_eq!(f.0, 0x19);
        assert!(TcpFlags::default().is_empty());
        assert!(!f.is_empty());

        let show = |f: TcpFlags| f.to_string();
        assert_eq!(show(TcpFlags::SYN), "SYN");
        assert_eq!(show(TcpFlags::SYN | TcpFlags::ACK), "SYN-ACK");
        assert_eq!(show(TcpFlags::ACK), "ACK");
        assert_eq!(show(TcpFlags::FIN | TcpFlags::ACK), "FIN-ACK");
        assert_eq!(show(TcpFlags::PSH | TcpFlags::ACK), "PSH-ACK");
        assert_eq!(show(TcpFlags::RST), "RST");
        assert_eq!(show(TcpFlags::RST | TcpFlags::ACK), "RST-ACK");
        assert_eq!(show(TcpFlags::default()), "none");
        assert_eq!(show(TcpFlags(0xff)), "SYN-FIN-RST-PSH-ACK-URG-ECE-CWR");
        assert_eq!(
            show(TcpFlags::CWR | TcpFlags::ECE | TcpFlags::SYN),
            "SYN-ECE-CWR"
        );
        assert_eq!(
            format!("{:>8}|", TcpFlags::SYN | TcpFlags::ACK),
            " SYN-ACK|"
        );
        assert_eq!(format!("{:<5}|", TcpFlags::default()), "none |");
    }

    #[test]
    fn syn_option_layouts_match_linux() {
        let ts = [0, 0x0f, 0x42, 0x40, 0, 0, 0, 0];
        let all = syn_options();
        let mut want = vec![2, 4, 5, 0xb4, 4, 2, 8, 10];
        want.extend_from_slice(&ts);
        want.extend_from_slice(&[1, 3, 3, 7]);
        assert_eq!(emit_opts(&all), want);
        assert_eq!(all.len(), 20);

        let ts_only = TcpOptions {
            sack_permitted: false,
            ..all
        };
        let mut want = vec![2, 4, 5, 0xb4, 1, 1, 8, 10];
        want.extend_from_slice(&ts);
        want.extend_from_slice(&[1, 3, 3, 7]);
        assert_eq!(emit_opts(&ts_only), want);

        let sack_only = TcpOptions {
            timestamp: None,
            ..all
        };
        assert_eq!(
            emit_opts(&sack_only),
            [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]
        );

        let mss_only = TcpOptions {
            mss: Some(536),
            ..TcpOptions::default()
        };
        assert_eq!(emit_opts(&mss_only), [2, 4, 2, 0x18]);
        assert_eq!(emit_opts(&TcpOptions::default()), [0u8; 0]);
        assert!(TcpOptions::default().is_empty());
    }

    #[test]
    fn non_syn_option_layouts_match_linux() {
        let mut o = TcpOptions {
            timestamp: Some(Timestamp {
                tsval: 0x01020304,
                tsecr: 0x05060708,
            }),
            ..TcpOptions::default()
        };
        assert_eq!(emit_opts(&o), [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(o.push_sack(SackBlock {
            left: 0x11223344,
            right: 0x55667788
        }));
        assert_eq!(
            emit_opts(&o),
            [
                1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 5, 10, 0x11, 0x22, 0x33, 0x44, 0x55,
                0x66, 0x77, 0x88
            ]
        );
        o.timestamp = None;
        assert_eq!(
            emit_opts(&o),
            [1, 1, 5, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
    }

    #[test]
    fn sack_emission_caps() {
        let mut o = TcpOptions {
            timestamp: Some(Timestamp { tsval: 1, tsecr: 2 }),
            ..TcpOptions::default()
        };
        for i in 1..=4 {
            assert!(o.push_sack(sack(i)));
        }
        assert!(!o.push_sack(sack(5)), "a fifth block is refused");
        assert_eq!(o.sack_blocks().len(), 4);
        // With timestamps only three fit: 12 + 4 + 24 = 40.
        assert_eq!(o.emitted_sack_blocks(), 3);
        assert_eq!(o.len(), 40);
        let bytes = emit_opts(&o);
        assert_eq!(&bytes[12..16], &[1, 1, 5, 26]);
        let parsed = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(parsed.sack_blocks(), &[sack(1), sack(2), sack(3)]);
        assert_eq!(parsed.timestamp, o.timestamp);

        // Without timestamps all four: 4 + 32 = 36.
        o.timestamp = None;
        assert_eq!(o.emitted_sack_blocks(), 4);
        assert_eq!(o.len(), 36);
        let parsed = TcpOptions::parse(&emit_opts(&o)).unwrap();
        assert_eq!(parsed, o);

        // With every SYN option (20 bytes) two fit.
        let mut o = syn_options();
        for i in 1..=4 {
            o.push_sack(sack(i));
        }
        assert_eq!(o.emitted_sack_blocks(), 2);
        assert_eq!(o.len(), 40);
        let parsed = TcpOptions::parse(&emit_opts(&o)).unwrap();
        assert_eq!(parsed.sack_blocks(), &[sack(1), sack(2)]);

        // A bogus sack_len beyond 4 is clamped.
        let o = TcpOptions {
            sack_len: 9,
            ..TcpOptions::default()
        };
        assert_eq!(o.sack_blocks().len(), 4);
        assert_eq!(o.len(), 36);

        let mut o = o;
        o.clear_sack();
        assert_eq!(o, TcpOptions::default());
    }

    #[test]
    fn option_parsing_edge_cases() {
        // Unknown option (kind 30, length 6) skipped, then MSS.
        let o = TcpOptions::parse(&[30, 6, 1, 2, 3, 4, 2, 4, 0x05, 0xb4]).unwrap();
        assert_eq!(o.mss, Some(1460));
        // EOL stops parsing: what follows, even garbage, is not read.
        let o = TcpOptions::parse(&[1, 0, 2, 4, 5, 0xb4, 0xff, 0]).unwrap();
        assert_eq!(o, TcpOptions::default());
        let o = TcpOptions::parse(&[2, 4, 5, 0xb4, 0, 0, 0, 0]).unwrap();
        assert_eq!(o.mss, Some(1460));
        // NOP padding around options.
        let o = TcpOptions::parse(&[1, 1, 1, 3, 3, 14, 1, 1, 1, 1, 4, 2]).unwrap();
        assert_eq!(o.window_scale, Some(14));
        assert!(o.sack_permitted);
        // Window scale is stored as sent, not clamped.
        let o = TcpOptions::parse(&[3, 3, 200, 0]).unwrap();
        assert_eq!(o.window_scale, Some(200));
        // Option lengths 0 and 1.
        assert_eq!(TcpOptions::parse(&[2, 0, 0, 0]), Err(Error::BadOption));
        assert_eq!(TcpOptions::parse(&[2, 1, 0, 0]), Err(Error::BadOption));
        assert_eq!(TcpOptions::parse(&[99, 1]), Err(Error::BadOption));
        // A kind without its length byte.
        assert_eq!(TcpOptions::parse(&[1, 1, 1, 2]), Err(Error::BadOption));
        // Running past the header.
        assert_eq!(TcpOptions::parse(&[1, 1, 8, 10, 0]), Err(Error::BadOption));
        assert_eq!(TcpOptions::parse(&[30, 5, 0, 0]), Err(Error::BadOption));
        // Known kinds with the wrong length are skipped by their length, not errors.
        let o = TcpOptions::parse(&[2, 3, 5, 2, 4, 5, 0xb4, 1]).unwrap();
        assert_eq!(
            o.mss,
            Some(1460),
            "MSS of length 3 skipped, the next one read"
        );
        let o = TcpOptions::parse(&[
            2, 6, 5, 0xb4, 0, 0, 3, 4, 7, 0, 4, 3, 0, 8, 6, 0, 0, 0, 0, 0,
        ])
        .unwrap();
        assert_eq!(o, TcpOptions::default());
        // SACK whose length is not 2 + 8n, or empty, is skipped.
        let o = TcpOptions::parse(&[5, 2, 5, 6, 0, 0, 0, 1, 0, 0, 0, 2]).unwrap();
        assert_eq!(o.sack_len, 0);
        // Four SACK blocks.
        let mut bytes = vec![1, 1, 5, 34];
        for i in 1..=4 {
            bytes.extend_from_slice(&sack(i).left.to_be_bytes());
            bytes.extend_from_slice(&sack(i).right.to_be_bytes());
        }
        let o = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(o.sack_blocks(), &[sack(1), sack(2), sack(3), sack(4)]);
        // Blocks beyond four (here in a second SACK option) are ignored.
        bytes.extend_from_slice(&[1, 1, 5, 10, 0, 0, 0, 9, 0, 0, 0, 10]);
        let o = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(o.sack_blocks(), &[sack(1), sack(2), sack(3), sack(4)]);
        // A five-block SACK option (too long for a real header, but parseable here).
        let mut five = vec![5, 42];
        for i in 1..=5 {
            five.extend_from_slice(&sack(i).left.to_be_bytes());
            five.extend_from_slice(&sack(i).right.to_be_bytes());
        }
        let o = TcpOptions::parse(&five).unwrap();
        assert_eq!(o.sack_blocks(), &[sack(1), sack(2), sack(3), sack(4)]);
        assert_eq!(TcpOptions::parse(&[]).unwrap(), TcpOptions::default());
    }

    fn cookie(bytes: &[u8]) -> FastOpenCookie {
        FastOpenCookie::new(bytes).unwrap()
    }

    #[test]
    fn fast_open_layouts_match_linux() {
        // `<mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>`: a request in kind 34.
        let syn = TcpOptions {
            mss: Some(1460),
            window_scale: Some(8),
            sack_permitted: true,
            fast_open: Some(FastOpen::request(false)),
            ..TcpOptions::default()
        };
        assert_eq!(
            emit_opts(&syn),
            [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 8, 34, 2, 1, 1]
        );
        // `...,FO abcd1234,nop,nop>`: a 4-byte cookie, two NOPs to align.
        let with = TcpOptions {
            fast_open: Some(FastOpen {
                cookie: cookie(&[0xab, 0xcd, 0x12, 0x34]),
                experimental: false,
            }),
            ..syn
        };
        assert_eq!(
            &emit_opts(&with)[12..],
            [34, 6, 0xab, 0xcd, 0x12, 0x34, 1, 1]
        );
        // `<mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 8,FOEXP 00abaaabe8e954c2>`: kind 254,
        // magic 0xF989, 8 bytes, aligned already.
        let exp = TcpOptions {
            timestamp: Some(Timestamp { tsval: 1, tsecr: 0 }),
            fast_open: Some(FastOpen {
                cookie: cookie(&[0x00, 0xab, 0xaa, 0xab, 0xe8, 0xe9, 0x54, 0xc2]),
                experimental: true,
            }),
            ..syn
        };
        let bytes = emit_opts(&exp);
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            &bytes[20..],
            [254, 12, 0xf9, 0x89, 0x00, 0xab, 0xaa, 0xab, 0xe8, 0xe9, 0x54, 0xc2]
        );
        assert_eq!(TcpOptions::parse(&bytes).unwrap(), exp);
        // An experimental request: `fe 04 f9 89`.
        let req = TcpOptions {
            fast_open: Some(FastOpen::request(true)),
            ..TcpOptions::default()
        };
        assert_eq!(emit_opts(&req), [254, 4, 0xf9, 0x89]);
        assert_eq!(TcpOptions::parse(&[254, 4, 0xf9, 0x89]).unwrap(), req);
        // The longest: 16 bytes in kind 34 with every SYN option fills the 40 bytes.
        let full = TcpOptions {
            timestamp: Some(Timestamp { tsval: 1, tsecr: 0 }),
            fast_open: Some(FastOpen {
                cookie: cookie(&[7; 16]),
                experimental: false,
            }),
            ..syn
        };
        assert_eq!(full.len(), 40);
        assert_eq!(TcpOptions::parse(&emit_opts(&full)).unwrap(), full);
    }

    #[test]
    fn fast_open_malformed_is_ignored() {
        // Odd, too short and too long cookies are ignored, as Linux ignores them.
        for body in [&[1u8][..], &[1, 2], &[1, 2, 3], &[1, 2, 3, 4, 5], &[9; 18]] {
            let mut b = vec![34, (body.len() + 2) as u8];
            b.extend_from_slice(body);
            assert_eq!(TcpOptions::parse(&b).unwrap().fast_open, None, "{body:?}");
            let mut b = vec![254, (body.len() + 4) as u8, 0xf9, 0x89];
            b.extend_from_slice(body);
            assert_eq!(TcpOptions::parse(&b).unwrap().fast_open, None, "{body:?}");
        }
        // Kind 254 with another magic is another experiment; a short one is skipped too.
        let o = TcpOptions::parse(&[254, 6, 0x12, 0x34, 1, 2, 2, 4, 5, 0xb4]).unwrap();
        assert_eq!((o.fast_open, o.mss), (None, Some(1460)));
        assert_eq!(
            TcpOptions::parse(&[254, 3, 0xf9, 1]).unwrap().fast_open,
            None
        );
        assert_eq!(TcpOptions::parse(&[254, 2]).unwrap().fast_open, None);
        // A later option replaces an earlier one.
        let o = TcpOptions::parse(&[34, 2, 34, 6, 1, 2, 3, 4]).unwrap();
        assert_eq!(o.fast_open.unwrap().cookie.as_bytes(), [1, 2, 3, 4]);
        // A length past the header is an error like any other option's.
        assert_eq!(TcpOptions::parse(&[34, 10, 1, 2]), Err(Error::BadOption));
        assert_eq!(FastOpenCookie::new(&[0; 17]), None);
        assert_eq!(
            format!("{:?}", cookie(&[0xab, 0xcd, 0x12, 0x34])),
            "FastOpenCookie(abcd1234)"
        );
    }

    #[test]
    fn option_errors_through_segment_parse() {
        let seg = segment_with_options(&[2, 0, 0, 0]);
        assert_eq!(TcpRepr::parse(&seg, None), Err(Error::BadOption));
        let seg = segment_with_options(&[1, 1, 8, 10]);
        assert_eq!(TcpRepr::parse(&seg, None), Err(Error::BadOption));
        // An option that would fit in the payload but runs past the header.
        let mut seg = segment_with_options(&[1, 1, 1, 2]);
        seg.extend_from_slice(&[4, 5, 0xb4, 0]);
        assert_eq!(TcpRepr::parse(&seg, None), Err(Error::BadOption));
        let seg = segment_with_options(&[30, 2, 1, 1, 2, 4, 1, 0]);
        assert_eq!(TcpRepr::parse(&seg, None).unwrap().options.mss, Some(0x100));
    }

    #[test]
    fn linux_syn_known_bytes() {
        let (ip, segment) = Ipv4Repr::parse(&LINUX_SYN).unwrap();
        assert_eq!(ip.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dst, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(ip.protocol, IpProtocol::Tcp);
        assert_eq!(
            (ip.ttl, ip.tos, ip.ident, ip.dont_frag),
            (64, 0, 0x3a5c, true)
        );
        assert_eq!(ip.payload_len, 40);

        let addrs = v4_addrs();
        let tcp = TcpRepr::parse(segment, Some(addrs)).unwrap();
        assert_eq!(tcp.src_port, 41668);
        assert_eq!(tcp.dst_port, 80);
        assert_eq!(tcp.seq, 0x6b8b4567);
        assert_eq!(tcp.ack, 0);
        assert_eq!(tcp.flags, TcpFlags::SYN);
        assert_eq!(tcp.flags.to_string(), "SYN");
        assert_eq!(tcp.window, 64240);
        assert_eq!(tcp.urgent, 0);
        assert_eq!(tcp.options, syn_options());
        assert_eq!(tcp.payload, b"");
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.buffer_len(), 40);
        assert_eq!(tcp.seq_len(), 1);

        let mut out = [0u8; 60];
        ip.emit(&mut out);
        tcp.emit(&mut out[20..], addrs.0, addrs.1);
        assert_eq!(out, LINUX_SYN);

        // emit_header + fill_checksum gives the same bytes.
        let mut out2 = [0xaau8; 40];
        tcp.emit_header(&mut out2);
        assert_eq!(&out2[16..18], &[0, 0]);
        fill_checksum(&mut out2, addrs.0, addrs.1);
        assert_eq!(&out2[..], &LINUX_SYN[20..]);
    }

    #[test]
    fn write_header_matches_emit_header() {
        let ts = Some(Timestamp {
            tsval: 0x0102_0304,
            tsecr: 0xa0b0_c0d0,
        });
        let mut with_sack = TcpOptions {
            timestamp: ts,
            ..TcpOptions::default()
        };
        with_sack.push_sack(sack(5));
        let option_sets = [
            TcpOptions::default(),
            TcpOptions {
                timestamp: ts,
                ..TcpOptions::default()
            },
            with_sack,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: ts,
                ..TcpOptions::default()
            },
            TcpOptions {
                fast_open: Some(FastOpen {
                    cookie: cookie(&[1, 2, 3, 4, 5, 6, 7, 8]),
                    experimental: false,
                }),
                ..TcpOptions::default()
            },
        ];
        for options in option_sets {
            let mut repr = data_segment(&[]);
            repr.options = options;
            repr.urgent = 0x1234;
            let len = repr.header_len();
            let mut a = [0xeeu8; 80];
            let mut b = [0x55u8; 80];
            repr.emit_header(&mut a[..len]);
            assert_eq!(repr.write_header(&mut b), len, "{options:?}");
            assert_eq!(a[..len], b[..len], "{options:?}");
            // Nothing past the header is touched.
            assert!(b[len..].iter().all(|&x| x == 0x55));
        }
    }

    fn data_segment(payload: &[u8]) -> TcpRepr<'_> {
        let mut options = TcpOptions {
            timestamp: Some(Timestamp {
                tsval: 0xdeadbeef,
                tsecr: 0x01020304,
            }),
            ..TcpOptions::default()
        };
        options.push_sack(sack(3));
        options.push_sack(sack(7));
        TcpRepr {
            src_port: 80,
            dst_port: 41668,
            seq: 0xffff_fff0,
            ack: 0x6b8b4568,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window: 501,
            urgent: 0,
            options,
            payload,
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for addrs in [v4_addrs(), v6_addrs()] {
            for payload in [&b""[..], b"x", b"hello, world", &[0xffu8; 1461]] {
                let r = data_segment(payload);
                let mut buf = vec![0u8; r.buffer_len()];
                r.emit(&mut buf, addrs.0, addrs.1);
                assert_eq!(TcpRepr::parse(&buf, Some(addrs)), Ok(r));
                assert_eq!(TcpRepr::parse(&buf, None), Ok(r));
                assert_eq!(r.seq_len(), payload.len());
                // The wrong pseudo-header does not verify.
                assert_eq!(
                    TcpRepr::parse(&buf, Some((addrs.0, addrs.0))),
                    Err(Error::BadChecksum)
                );
            }
            let fin = TcpRepr {
                flags: TcpFlags::FIN | TcpFlags::ACK,
                options: TcpOptions::default(),
                ..data_segment(b"bye")
            };
            assert_eq!(fin.seq_len(), 4);
            assert_eq!(fin.header_len(), 20);
            let mut buf = vec![0u8; fin.buffer_len()];
            fin.emit(&mut buf, addrs.0, addrs.1);
            assert_eq!(TcpRepr::parse(&buf, Some(addrs)), Ok(fin));
        }
    }

    #[test]
    fn fill_checksum_ignores_previous_value() {
        let (src, dst) = v6_addrs();
        let r = data_segment(b"payload");
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, src, dst);
        let good = buf.clone();
        buf[16] ^= 0x5a;
        fill_checksum(&mut buf, src, dst);
        assert_eq!(buf, good);
        assert!(verify_checksum(&buf, src, dst));
    }

    #[test]
    fn checksum_from_a_payload_sum_matches_fill_checksum() {
        for (src, dst) in [v4_addrs(), v6_addrs()] {
            for len in [0usize, 1, 2, 7, 33, 1448, 1449] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
                let r = data_segment(&payload);
                let mut want = vec![0u8; r.buffer_len()];
                r.emit(&mut want, src, dst);
                let hlen = r.header_len();
                let mut got = vec![0xeeu8; r.buffer_len()];
                r.emit_header(&mut got[..hlen]);
                let (h, p) = got.split_at_mut(hlen);
                let sum = crate::copy_sum::copy_and_sum(p, &payload, 0);
                fill_checksum_with_payload_sum(h, src, dst, hlen + len, sum);
                assert_eq!(got, want, "len {len}");
            }
        }
    }

    #[test]
    fn segment_errors() {
        let (src, dst) = v4_addrs();
        let r = data_segment(b"data");
        let mut good = vec![0u8; r.buffer_len()];
        r.emit(&mut good, src, dst);

        assert_eq!(TcpRepr::parse(&[], None), Err(Error::Truncated));
        assert_eq!(TcpRepr::parse(&good[..19], None), Err(Error::Truncated));
        // Data offset 4 (below 5) and 15 (beyond the segment).
        let mut p = good.clone();
        p[12] = 0x40;
        assert_eq!(TcpRepr::parse(&p, None), Err(Error::BadHeaderLength));
        p[12] = 0xf0;
        assert_eq!(TcpRepr::parse(&p, None), Err(Error::BadHeaderLength));
        // A header longer than what was received.
        assert_eq!(
            TcpRepr::parse(&good[..30], None),
            Err(Error::BadHeaderLength)
        );
        // Every single-bit flip is caught by the checksum.
        for bit in 0..good.len() * 8 {
            let mut p = good.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            assert!(TcpRepr::parse(&p, Some((src, dst))).is_err(), "bit {bit}");
        }
        let mut p = good.clone();
        p[4] ^= 0x80; // a sequence-number bit
        assert_eq!(
            TcpRepr::parse(&p, Some((src, dst))),
            Err(Error::BadChecksum)
        );
        let flipped = TcpRepr::parse(&p, None).unwrap();
        assert_eq!(flipped.seq, r.seq ^ 0x8000_0000);
    }

    #[test]
    fn reserved_bits_ignored_and_all_flags_kept() {
        let r = TcpRepr {
            flags: TcpFlags(0xff),
            urgent: 0x1234,
            ..data_segment(b"")
        };
        let (src, dst) = v4_addrs();
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, src, dst);
        buf[12] |= 0x0f;
        let parsed = TcpRepr::parse(&buf, None).unwrap();
        assert_eq!(parsed, r);
        assert_eq!(parsed.seq_len(), 2);
    }
}
