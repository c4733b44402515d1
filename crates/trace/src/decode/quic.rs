//! QUIC long-header packets in UDP datagrams (RFC 9000 §17.2; QUIC version 2, RFC 9369 §3.2),
//! the packets that open a connection: Initial, 0-RTT, Handshake and Retry, with their
//! connection IDs. A datagram may carry several coalesced packets (RFC 9000 §12.2); each is
//! found by its Length field. Short-header (1-RTT) packets end the walk: their length is the
//! rest of the datagram.

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 1;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;

/// The type of a long-header packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl LongType {
    /// Its name as RFC 9000 §17.2 writes it.
    pub fn name(self) -> &'static str {
        match self {
            LongType::Initial => "Initial",
            LongType::ZeroRtt => "0-RTT",
            LongType::Handshake => "Handshake",
            LongType::Retry => "Retry",
        }
    }
}

/// A long-header packet (its protected parts unread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub version: u32,
    pub kind: LongType,
    /// Destination connection ID.
    pub dcid: &'a [u8],
    /// Source connection ID.
    pub scid: &'a [u8],
}

/// Whether `v` is a QUIC version this parser knows the packet types of: 1, 2, and the
/// drafts that became version 1 (0xff0000xx, types numbered as in version 1).
pub fn known_version(v: u32) -> bool {
    v == VERSION_1 || v == VERSION_2 || (v & 0xffff_ff00) == 0xff00_0000
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// The long-header packets at the start of a UDP payload, coalesced ones included. Returns
/// nothing if the first byte is not a long header of a [known version](known_version) (a
/// version negotiation packet, version 0, is not one either).
///
/// ```
/// use synack_trace::decode::quic::{long_headers, LongType};
///
/// // An Initial: version 1, DCID 8 bytes, SCID 0, token 0, length 2, then 2 bytes.
/// let mut d = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 2, 0xaa, 0xbb];
/// let p = long_headers(&d);
/// assert_eq!(p.len(), 1);
/// assert_eq!(p[0].kind, LongType::Initial);
/// assert_eq!(p[0].dcid, [1, 2, 3, 4, 5, 6, 7, 8]);
/// ```
pub fn long_headers(mut d: &[u8]) -> Vec<LongHeader<'_>> {
    let mut out = Vec::new();
    while let Some((h, rest)) = one(d) {
        out.push(h);
        d = rest;
        if out.len() >= 16 {
            break;
        }
    }
    out
}

/// What one QUIC packet of a datagram is, as far as the wire shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Long(LongType),
    /// A short-header packet (RFC 9000 §17.3): 1-RTT, to the end of the datagram.
    OneRtt,
}

impl PacketKind {
    pub fn name(self) -> &'static str {
        match self {
            PacketKind::Long(t) => t.name(),
            PacketKind::OneRtt => "1-RTT",
        }
    }
}

/// The packets of a UDP datagram, each with its size in bytes: the long-header ones found by
/// their Length fields (RFC 9000 §12.2: coalesced packets), then a short-header packet taking
/// the rest. Bytes after the long headers that are all zero are padding, not a packet. Empty
/// when the datagram does not start with a QUIC packet of a [known version](known_version)
/// and is not a short header either (a short header has no version: any datagram whose
/// first bit is 0 reads as one, so call this on a flow known to be QUIC).
pub fn packets(mut d: &[u8]) -> Vec<(PacketKind, usize)> {
    let mut out = Vec::new();
    while let Some((h, rest)) = one(d) {
        out.push((PacketKind::Long(h.kind), d.len() - rest.len()));
        d = rest;
        if out.len() >= 16 {
            return out;
        }
    }
    if !d.is_empty() && d[0] & 0x80 == 0 && d.iter().any(|b| *b != 0) {
        out.push((PacketKind::OneRtt, d.len()));
    }
    out
}

/// A datagram's packets in a few words: `Initial 1252`, `Initial 133 + Handshake 1119
/// (coalesced)`, `1-RTT 45`; `not QUIC` when nothing reads as a packet.
pub fn describe(d: &[u8]) -> String {
    let p = packets(d);
    if p.is_empty() {
        return "not QUIC".into();
    }
    let parts: Vec<String> = p.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
    let mut s = parts.join(" + ");
    if p.len() > 1 {
        s.push_str(" (coalesced)");
    }
    s
}

fn one(d: &[u8]) -> Option<(LongHeader<'_>, &[u8])> {
    let first = *d.first()?;
    // Header Form 1: a long header (RFC 9000 §17.2). The Fixed Bit is not checked: a peer
    // that announced `grease_quic_bit` lets the other side send it as 0 (RFC 9287 §3), as
    // quinn does, even in a return visit's Initial; the version tells QUIC apart instead.
    if first & 0x80 == 0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    if !known_version(version) {
        return None;
    }
    let bits = (first >> 4) & 0x3;
    let kind = if version == VERSION_2 {
        // RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
        match bits {
            1 => LongType::Initial,
            2 => LongType::ZeroRtt,
            3 => LongType::Handshake,
            _ => LongType::Retry,
        }
    } else {
        match bits {
            0 => LongType::Initial,
            1 => LongType::ZeroRtt,
            2 => LongType::Handshake,
            _ => LongType::Retry,
        }
    };
    let mut at = 5;
    let dlen = usize::from(*d.get(at)?);
    // RFC 9000 §17.2: a v1 connection ID is at most 20 bytes.
    if dlen > 20 {
        return None;
    }
    let dcid = d.get(at + 1..at + 1 + dlen)?;
    at += 1 + dlen;
    let slen = usize::from(*d.get(at)?);
    if slen > 20 {
        return None;
    }
    let scid = d.get(at + 1..at + 1 + slen)?;
    at += 1 + slen;
    let header = LongHeader {
        version,
        kind,
        dcid,
        scid,
    };
    if kind == LongType::Retry {
        return Some((header, &[]));
    }
    if kind == LongType::Initial {
        let (tlen, n) = varint(d.get(at..)?)?;
        at = at
            .checked_add(n)?
            .checked_add(usize::try_from(tlen).ok()?)?;
    }
    let (len, n) = varint(d.get(at..)?)?;
    let end = at.checked_add(n)?.checked_add(usize::try_from(len).ok()?)?;
    let rest = d.get(end..).unwrap_or_default();
    Some((header, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_initial_and_handshake() {
        let mut d = vec![0xc0, 0, 0, 0, 1, 2, 9, 9, 1, 7, 0, 0x40, 3, 1, 2, 3];
        d.extend_from_slice(&[0xe0, 0, 0, 0, 1, 2, 9, 9, 1, 7, 1, 0]);
        d.extend_from_slice(&[0x40, 1, 2, 3]); // a short header packet: ends the walk
        let p = long_headers(&d);
        let kinds: Vec<LongType> = p.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [LongType::Initial, LongType::Handshake]);
        assert_eq!(p[1].scid, [7]);
    }

    /// RFC 9287: a greased Fixed Bit (0) still makes a long header; both packets of a
    /// coalesced Initial and 0-RTT are seen.
    #[test]
    fn greased_fixed_bit() {
        let mut d = vec![0x85, 0, 0, 0, 1, 2, 9, 9, 1, 7, 1, 0xaa, 0x40, 3, 1, 2, 3];
        d.extend_from_slice(&[0x95, 0, 0, 0, 1, 2, 9, 9, 1, 7, 1, 0]);
        let p = long_headers(&d);
        let kinds: Vec<LongType> = p.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [LongType::Initial, LongType::ZeroRtt]);
    }

    #[test]
    fn packets_and_their_sizes() {
        let mut d = vec![0xc0, 0, 0, 0, 1, 2, 9, 9, 1, 7, 0, 0x40, 3, 1, 2, 3];
        d.extend_from_slice(&[0xe0, 0, 0, 0, 1, 2, 9, 9, 1, 7, 1, 0]);
        d.extend_from_slice(&[0x40, 1, 2, 3]);
        assert_eq!(
            packets(&d),
            [
                (PacketKind::Long(LongType::Initial), 16),
                (PacketKind::Long(LongType::Handshake), 12),
                (PacketKind::OneRtt, 4)
            ]
        );
        assert_eq!(
            describe(&d),
            "Initial 16 + Handshake 12 + 1-RTT 4 (coalesced)"
        );
        // Padding after an Initial is no packet; a short header alone is one.
        let mut p = vec![0xc0, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa];
        p.extend_from_slice(&[0; 20]);
        assert_eq!(describe(&p), "Initial 10");
        assert_eq!(describe(&[0x41, 5, 6]), "1-RTT 3");
        assert_eq!(describe(&[]), "not QUIC");
        for n in 0..d.len() {
            let _ = packets(&d[..n]);
        }
    }

    #[test]
    fn not_quic() {
        assert!(long_headers(&[0x12, 0x34, 1, 0, 0, 1]).is_empty());
        assert!(long_headers(&[0xc0, 0, 0, 0, 0, 0, 0]).is_empty()); // version negotiation
        assert!(long_headers(&[0xc0, 0, 0, 0, 1, 30]).is_empty());
        for n in 0..12 {
            let _ = long_headers(&[0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6][..n]);
        }
    }
}
