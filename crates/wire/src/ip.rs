//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::{Error, Result};

/// An upper-layer protocol number (the IPv4 Protocol field, the IPv6 Next Header field).
///
/// [`From<u8>`] never yields `Other` for a number that has a named variant, so values made by
/// parsing compare equal as expected; do not construct e.g. `Other(6)` by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP for IPv4, 1 (RFC 792).
    Icmp,
    /// TCP, 6 (RFC 9293).
    Tcp,
    /// UDP, 17 (RFC 768).
    Udp,
    /// ICMPv6, 58 (RFC 4443).
    Icmpv6,
    /// Any other protocol number.
    Other(u8),
}

impl From<u8> for IpProtocol {
    fn from(n: u8) -> Self {
        match n {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Other(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Other(n) => n,
        }
    }
}

/// IPv4 flag bits in the flags/fragment-offset word (RFC 791 §3.1).
const IPV4_DF: u16 = 0x4000;
const IPV4_MF: u16 = 0x2000;
const IPV4_FRAG_OFFSET: u16 = 0x1fff;

/// A parsed IPv4 header (RFC 791 §3.1), options excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub ttl: u8,
    /// The whole second byte: DSCP and ECN (RFC 2474, RFC 3168).
    pub tos: u8,
    pub ident: u16,
    /// The Don't Fragment flag.
    pub dont_frag: bool,
    /// Bytes after the header: total length minus header length.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The length of the header [`emit`](Self::emit) writes (no options).
    pub const HEADER_LEN: usize = 20;

    /// Parses an IPv4 packet and returns the header and the payload.
    ///
    /// The payload is bounded by the Total Length field: bytes past it (Ethernet padding) are
    /// ignored. Options are skipped. Checks, in order:
    /// * empty input → [`Error::Truncated`]; version ≠ 4 → [`Error::BadVersion`];
    /// * fewer than 20 bytes → [`Error::Truncated`];
    /// * IHL < 5, or a header longer than the input → [`Error::BadHeaderLength`];
    /// * header checksum (RFC 791 §3.1, RFC 1071) → [`Error::BadChecksum`];
    /// * Total Length below the header length → [`Error::BadLength`], beyond the input →
    ///   [`Error::Truncated`];
    /// * a fragment (MF set or a non-zero offset) → [`Error::Unsupported`]: synack does not
    ///   reassemble (it sends with DF and relies on path MTU discovery, RFC 1191).
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Repr, &[u8])> {
        let first = *packet.first().ok_or(Error::Truncated)?;
        if first >> 4 != 4 {
            return Err(Error::BadVersion);
        }
        let hdr: &[u8; 20] = packet.first_chunk().ok_or(Error::Truncated)?;
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < Self::HEADER_LEN {
            return Err(Error::BadHeaderLength);
        }
        let full_header = packet.get(..header_len).ok_or(Error::BadHeaderLength)?;
        let sum = if header_len == Self::HEADER_LEN {
            checksum::checksum20(hdr)
        } else {
            checksum::checksum(full_header, 0)
        };
        if sum != 0 {
            return Err(Error::BadChecksum);
        }
        let total_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        if total_len < header_len {
            return Err(Error::BadLength);
        }
        let payload = packet.get(header_len..total_len).ok_or(Error::Truncated)?;
        let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
        if frag & IPV4_MF != 0 || frag & IPV4_FRAG_OFFSET != 0 {
            return Err(Error::Unsupported);
        }
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]),
            dst: Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]),
            protocol: IpProtocol::from(hdr[9]),
            ttl: hdr[8],
            tos: hdr[1],
            ident: u16::from_be_bytes([hdr[4], hdr[5]]),
            dont_frag: frag & IPV4_DF != 0,
            payload_len: payload.len(),
        };
        Ok((repr, payload))
    }

    /// Writes a 20-byte header (no options) into `buf[..20]`, with Total Length
    /// `20 + payload_len` and the header checksum filled in.
    ///
    /// # Panics
    /// If `buf` is shorter than 20 bytes or `payload_len` exceeds `65535 - 20`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let total_len = u16::try_from(Self::HEADER_LEN + self.payload_len)
            .expect("IPv4 payload_len too large for the Total Length field");
        let hdr = &mut buf[..Self::HEADER_LEN];
        hdr[0] = 0x45;
        hdr[1] = self.tos;
        hdr[2..4].copy_from_slice(&total_len.to_be_bytes());
        hdr[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let frag = if self.dont_frag { IPV4_DF } else { 0 };
        hdr[6..8].copy_from_slice(&frag.to_be_bytes());
        hdr[8] = self.ttl;
        hdr[9] = self.protocol.into();
        hdr[10..12].copy_from_slice(&[0, 0]);
        hdr[12..16].copy_from_slice(&self.src.octets());
        hdr[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum20((&*hdr).try_into().expect("20 bytes"));
        hdr[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// IPv6 extension headers skipped by their length on parse (RFC 8200 §4).
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_NO_NEXT_HEADER: u8 = 59;
const IPV6_DEST_OPTIONS: u8 = 60;

/// A parsed IPv6 header (RFC 8200 §3), with extension headers skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol, after any skipped extension headers.
    pub next_header: IpProtocol,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// The 20-bit flow label (RFC 6437); emit writes its low 20 bits.
    pub flow_label: u32,
    /// The upper-layer payload length: on parse, the Payload Length field minus any skipped
    /// extension headers; on emit, written as the Payload Length field.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// The length of the fixed header (RFC 8200 §3).
    pub const HEADER_LEN: usize = 40;

    /// Parses an IPv6 packet and returns the header and the upper-layer payload.
    ///
    /// The payload is bounded by the Payload Length field (trailing bytes are ignored).
    /// Hop-by-Hop Options (0), Routing (43) and Destination Options (60) headers are skipped by
    /// their Hdr Ext Len (RFC 8200 §4.3, §4.4, §4.6) and `next_header` is what follows them.
    /// Errors:
    /// * empty input or fewer than 40 bytes → [`Error::Truncated`]; version ≠ 6 →
    ///   [`Error::BadVersion`];
    /// * Payload Length beyond the input, or an extension header running past the payload →
    ///   [`Error::Truncated`];
    /// * a Fragment header (44) or No Next Header (59) → [`Error::Unsupported`]. A jumbogram
    ///   (RFC 2675, Payload Length 0 with a Jumbo Payload option) is not supported either: its
    ///   Hop-by-Hop header runs past the (empty) payload and gives [`Error::Truncated`].
    ///
    /// Other next-header values, including ESP/AH and the rarer extension headers, are taken
    /// as the upper-layer protocol.
    pub fn parse(packet: &[u8]) -> Result<(Ipv6Repr, &[u8])> {
        let first = *packet.first().ok_or(Error::Truncated)?;
        if first >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        let hdr: &[u8; 40] = packet.first_chunk().ok_or(Error::Truncated)?;
        let payload_field = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
        let mut payload = packet
            .get(Self::HEADER_LEN..Self::HEADER_LEN + payload_field)
            .ok_or(Error::Truncated)?;
        let mut next = hdr[6];
        loop {
            match next {
                IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTIONS => {
                    let &[following, ext_len, ..] = payload else {
                        return Err(Error::Truncated);
                    };
                    // Hdr Ext Len counts 8-octet units after the first 8 octets.
                    let len = (usize::from(ext_len) + 1) * 8;
                    payload = payload.get(len..).ok_or(Error::Truncated)?;
                    next = following;
                }
                IPV6_FRAGMENT | IPV6_NO_NEXT_HEADER => return Err(Error::Unsupported),
                _ => break,
            }
        }
        let mut src = [0u8; 16];
        src.copy_from_slice(&hdr[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&hdr[24..40]);
        let repr = Ipv6Repr {
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
            next_header: IpProtocol::from(next),
            hop_limit: hdr[7],
            traffic_class: (hdr[0] << 4) | (hdr[1] >> 4),
            flow_label: (u32::from(hdr[1] & 0x0f) << 16)
                | (u32::from(hdr[2]) << 8)
                | u32::from(hdr[3]),
            payload_len: payload.len(),
        };
        Ok((repr, payload))
    }

    /// Writes the 40-byte fixed header (no extension headers) into `buf[..40]`, with Payload
    /// Length `payload_len` and Next Header `next_header`.
    ///
    /// # Panics
    /// If `buf` is shorter than 40 bytes or `payload_len` exceeds 65535 (jumbograms are not
    /// supported).
    pub fn emit(&self, buf: &mut [u8]) {
        let payload_len =
            u16::try_from(self.payload_len).expect("IPv6 payload_len too large (no jumbograms)");
        let hdr = &mut buf[..Self::HEADER_LEN];
        let word =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xfffff);
        hdr[0..4].copy_from_slice(&word.to_be_bytes());
        hdr[4..6].copy_from_slice(&payload_len.to_be_bytes());
        hdr[6] = self.next_header.into();
        hdr[7] = self.hop_limit;
        hdr[8..24].copy_from_slice(&self.src.octets());
        hdr[24..40].copy_from_slice(&self.dst.octets());
    }
}

/// ECN codepoints of the IP header (RFC 3168 §5): not ECN-capable.
pub const ECN_NOT_ECT: u8 = 0;
/// ECN-capable transport, ECT(1).
pub const ECN_ECT1: u8 = 1;
/// ECN-capable transport, ECT(0): what TCP sends (RFC 3168 §6.1.2).
pub const ECN_ECT0: u8 = 2;
/// Congestion experienced: a router marked the packet instead of dropping it.
pub const ECN_CE: u8 = 3;

/// An IPv4 or IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpRepr {
    /// A header for an upper-layer payload of `payload_len` bytes, or `None` if `src` and `dst`
    /// are of different families.
    ///
    /// IPv4 gets TOS 0, identification 0 and Don't Fragment set (synack does path MTU discovery,
    /// RFC 1191, and never fragments; RFC 6864 §4.1 allows any identification on atomic
    /// datagrams). IPv6 gets traffic class 0 and flow label 0.
    #[inline]
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        protocol: IpProtocol,
        payload_len: usize,
        ttl_or_hop_limit: u8,
    ) -> Option<IpRepr> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(IpRepr::V4(Ipv4Repr {
                src,
                dst,
                protocol,
                ttl: ttl_or_hop_limit,
                tos: 0,
                ident: 0,
                dont_frag: true,
                payload_len,
            })),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(IpRepr::V6(Ipv6Repr {
                src,
                dst,
                next_header: protocol,
                hop_limit: ttl_or_hop_limit,
                traffic_class: 0,
                flow_label: 0,
                payload_len,
            })),
            _ => None,
        }
    }

    /// Parses an IPv4 or IPv6 packet according to its version nibble: empty input →
    /// [`Error::Truncated`], a version other than 4 or 6 → [`Error::BadVersion`]; otherwise as
    /// [`Ipv4Repr::parse`] or [`Ipv6Repr::parse`].
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<(IpRepr, &[u8])> {
        let first = *packet.first().ok_or(Error::Truncated)?;
        match first >> 4 {
            4 => Ipv4Repr::parse(packet).map(|(r, p)| (IpRepr::V4(r), p)),
            6 => Ipv6Repr::parse(packet).map(|(r, p)| (IpRepr::V6(r), p)),
            _ => Err(Error::BadVersion),
        }
    }

    /// The ECN field (RFC 3168 §5): the low two bits of the IPv4 TOS byte or the IPv6 traffic
    /// class, one of [`ECN_NOT_ECT`], [`ECN_ECT1`], [`ECN_ECT0`], [`ECN_CE`].
    pub fn ecn(&self) -> u8 {
        match self {
            IpRepr::V4(r) => r.tos & 3,
            IpRepr::V6(r) => r.traffic_class & 3,
        }
    }

    /// Set the ECN field (RFC 3168 §5), keeping the DSCP bits.
    pub fn set_ecn(&mut self, ecn: u8) {
        match self {
            IpRepr::V4(r) => r.tos = (r.tos & !3) | (ecn & 3),
            IpRepr::V6(r) => r.traffic_class = (r.traffic_class & !3) | (ecn & 3),
        }
    }

    /// The source address.
    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.src),
            IpRepr::V6(r) => IpAddr::V6(r.src),
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.dst),
            IpRepr::V6(r) => IpAddr::V6(r.dst),
        }
    }

    /// The upper-layer protocol.
    pub fn protocol(&self) -> IpProtocol {
        match self {
            IpRepr::V4(r) => r.protocol,
            IpRepr::V6(r) => r.next_header,
        }
    }

    /// The upper-layer payload length.
    pub fn payload_len(&self) -> usize {
        match self {
            IpRepr::V4(r) => r.payload_len,
            IpRepr::V6(r) => r.payload_len,
        }
    }

    /// The length of the header [`emit`](Self::emit) writes: 20 or 40.
    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => Ipv4Repr::HEADER_LEN,
            IpRepr::V6(_) => Ipv6Repr::HEADER_LEN,
        }
    }

    /// `header_len() + payload_len()`: the whole packet.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len()
    }

    /// The TTL or hop limit.
    pub fn hop_limit(&self) -> u8 {
        match self {
            IpRepr::V4(r) => r.ttl,
            IpRepr::V6(r) => r.hop_limit,
        }
    }

    /// Writes the header into `buf[..header_len()]`.
    ///
    /// # Panics
    /// As [`Ipv4Repr::emit`] / [`Ipv6Repr::emit`].
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            IpRepr::V4(r) => r.emit(buf),
            IpRepr::V6(r) => r.emit(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(192, 168, 7, 200),
            protocol: IpProtocol::Tcp,
            ttl: 64,
            tos: 0xb8,
            ident: 0x1c46,
            dont_frag: true,
            payload_len: 5,
        }
    }

    fn v6() -> Ipv6Repr {
        Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8:ffff::2".parse().unwrap(),
            next_header: IpProtocol::Udp,
            hop_limit: 255,
            traffic_class: 0xa5,
            flow_label: 0xabcde,
            payload_len: 5,
        }
    }

    fn emit_v4(r: &Ipv4Repr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + payload.len()];
        r.emit(&mut buf);
        buf[20..].copy_from_slice(payload);
        buf
    }

    /// Recomputes the header checksum after a test edits a header.
    fn fix_checksum(pkt: &mut [u8]) {
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&pkt[..ihl], 0);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn ecn_field_is_the_low_two_bits() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for (a, b) in [(v4, v4), (v6, v6)] {
            let mut r = IpRepr::new(a, b, IpProtocol::Tcp, 0, 64).unwrap();
            assert_eq!(r.ecn(), ECN_NOT_ECT);
            r.set_ecn(ECN_ECT0);
            assert_eq!(r.ecn(), ECN_ECT0);
            let mut buf = vec![0u8; r.header_len()];
            r.emit(&mut buf);
            // IPv4: TOS 0x02; IPv6: traffic class 0x02 (bits 20..27 of the first word).
            match r {
                IpRepr::V4(_) => assert_eq!(buf[1], 0x02),
                IpRepr::V6(_) => assert_eq!((buf[0] & 0x0f, buf[1] >> 4), (0, 0x2)),
            }
            assert_eq!(IpRepr::parse(&buf).unwrap().0.ecn(), ECN_ECT0);
            r.set_ecn(ECN_CE);
            assert_eq!(r.ecn(), ECN_CE);
        }
    }

    #[test]
    fn protocol_numbers() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
        assert_eq!(IpProtocol::from(1), IpProtocol::Icmp);
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
        assert_eq!(IpProtocol::from(132), IpProtocol::Other(132));
    }

    #[test]
    fn v4_round_trip() {
        for dont_frag in [false, true] {
            let r = Ipv4Repr { dont_frag, ..v4() };
            let pkt = emit_v4(&r, b"hello");
            let (parsed, payload) = Ipv4Repr::parse(&pkt).unwrap();
            assert_eq!(parsed, r);
            assert_eq!(payload, b"hello");
            let (ip, payload) = IpRepr::parse(&pkt).unwrap();
            assert_eq!(ip, IpRepr::V4(r));
            assert_eq!(payload, b"hello");
        }
    }

    #[test]
    fn v4_known_bytes() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: IpProtocol::Udp,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            payload_len: 0x73 - 20,
        };
        let mut buf = [0u8; 20];
        r.emit(&mut buf);
        assert_eq!(
            buf,
            [
                0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
                0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
            ]
        );
    }

    #[test]
    fn v4_trailing_padding_ignored() {
        let mut pkt = emit_v4(&v4(), b"hello");
        pkt.extend_from_slice(&[0; 20]);
        let (parsed, payload) = Ipv4Repr::parse(&pkt).unwrap();
        assert_eq!(parsed, v4());
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn v4_options_skipped() {
        let pkt = emit_v4(&v4(), b"hello");
        // Insert 4 bytes of options (NOP NOP NOP EOL) and fix IHL, length and checksum.
        let mut with = Vec::new();
        with.extend_from_slice(&pkt[..20]);
        with.extend_from_slice(&[1, 1, 1, 0]);
        with.extend_from_slice(&pkt[20..]);
        with[0] = 0x46;
        with[2..4].copy_from_slice(&29u16.to_be_bytes());
        fix_checksum(&mut with);
        let (parsed, payload) = Ipv4Repr::parse(&with).unwrap();
        assert_eq!(parsed, v4());
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn v4_errors() {
        let good = emit_v4(&v4(), b"hello");
        assert_eq!(Ipv4Repr::parse(&[]), Err(Error::Truncated));
        assert_eq!(IpRepr::parse(&[]), Err(Error::Truncated));
        assert_eq!(Ipv4Repr::parse(&good[..19]), Err(Error::Truncated));
        assert_eq!(Ipv4Repr::parse(&good[..1]), Err(Error::Truncated));

        let mut p = good.clone();
        p[0] = 0x55;
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadVersion));
        assert_eq!(IpRepr::parse(&p), Err(Error::BadVersion));
        p[0] = 0x65;
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadVersion));

        let mut p = good.clone();
        p[0] = 0x44;
        fix_checksum(&mut p[..]);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadHeaderLength));
        // IHL 15 = 60 bytes, beyond the 25-byte packet.
        let mut p = good.clone();
        p[0] = 0x4f;
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadHeaderLength));

        let mut p = good.clone();
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        fix_checksum(&mut p);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadLength));
        let mut p = good.clone();
        p[2..4].copy_from_slice(&26u16.to_be_bytes());
        fix_checksum(&mut p);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Truncated));
        // The payload being cut short is Truncated too.
        assert_eq!(Ipv4Repr::parse(&good[..24]), Err(Error::Truncated));

        for bit in 0..160 {
            let mut p = good.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            let r = Ipv4Repr::parse(&p);
            assert!(r.is_err(), "bit {bit} flipped yet parsed: {r:?}");
        }
        let mut p = good.clone();
        p[13] ^= 0x01; // a source-address bit
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadChecksum));
    }

    #[test]
    fn v4_fragments_unsupported() {
        for frag in [IPV4_MF, 1, IPV4_MF | 5, IPV4_DF | 0x100] {
            let mut p = emit_v4(&v4(), b"hello");
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            fix_checksum(&mut p);
            assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported), "{frag:#x}");
        }
    }

    fn emit_v6(r: &Ipv6Repr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 40 + payload.len()];
        r.emit(&mut buf);
        buf[40..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn v6_round_trip() {
        let r = v6();
        let pkt = emit_v6(&r, b"hello");
        assert_eq!(pkt[0], 0x6a);
        assert_eq!(pkt[1], 0x5a);
        let (parsed, payload) = Ipv6Repr::parse(&pkt).unwrap();
        assert_eq!(parsed, r);
        assert_eq!(payload, b"hello");
        let (ip, payload) = IpRepr::parse(&pkt).unwrap();
        assert_eq!(ip, IpRepr::V6(r));
        assert_eq!(payload, b"hello");
        // Trailing bytes are ignored.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0xee; 7]);
        assert_eq!(Ipv6Repr::parse(&padded).unwrap(), (r, &b"hello"[..]));
    }

    #[test]
    fn v6_extension_headers_skipped() {
        // Hop-by-hop (8 bytes: next=60, len 0, PadN) then destination options (16 bytes:
        // next=UDP, len 1) then the payload.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(b"hello");
        let outer = Ipv6Repr {
            next_header: IpProtocol::Other(IPV6_HOP_BY_HOP),
            payload_len: ext.len(),
            ..v6()
        };
        let pkt = emit_v6(&outer, &ext);
        let (parsed, payload) = Ipv6Repr::parse(&pkt).unwrap();
        assert_eq!(parsed, v6());
        assert_eq!(payload, b"hello");

        // A routing header running past the payload.
        let ext = [17, 2, 0, 0, 0, 0, 0, 0];
        let outer = Ipv6Repr {
            next_header: IpProtocol::Other(IPV6_ROUTING),
            payload_len: ext.len(),
            ..v6()
        };
        assert_eq!(
            Ipv6Repr::parse(&emit_v6(&outer, &ext)),
            Err(Error::Truncated)
        );
        // An extension header with only one byte.
        let outer = Ipv6Repr {
            next_header: IpProtocol::Other(IPV6_DEST_OPTIONS),
            payload_len: 1,
            ..v6()
        };
        assert_eq!(
            Ipv6Repr::parse(&emit_v6(&outer, &[17])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn v6_errors() {
        let good = emit_v6(&v6(), b"hello");
        assert_eq!(Ipv6Repr::parse(&[]), Err(Error::Truncated));
        assert_eq!(Ipv6Repr::parse(&good[..39]), Err(Error::Truncated));
        assert_eq!(Ipv6Repr::parse(&good[..44]), Err(Error::Truncated));
        let mut p = good.clone();
        p[0] = 0x4a;
        assert_eq!(Ipv6Repr::parse(&p), Err(Error::BadVersion));
        p[0] = 0x0a;
        assert_eq!(IpRepr::parse(&p), Err(Error::BadVersion));
        for nh in [IPV6_FRAGMENT, IPV6_NO_NEXT_HEADER] {
            let mut p = good.clone();
            p[6] = nh;
            assert_eq!(Ipv6Repr::parse(&p), Err(Error::Unsupported));
        }
    }

    #[test]
    fn ip_repr_new_and_accessors() {
        let s4 = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let d4 = IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8));
        let s6: IpAddr = "::1".parse().unwrap();
        assert_eq!(IpRepr::new(s4, s6, IpProtocol::Tcp, 0, 64), None);
        assert_eq!(IpRepr::new(s6, s4, IpProtocol::Tcp, 0, 64), None);

        let r = IpRepr::new(s4, d4, IpProtocol::Tcp, 7, 64).unwrap();
        assert_eq!((r.src(), r.dst()), (s4, d4));
        assert_eq!(r.protocol(), IpProtocol::Tcp);
        assert_eq!(
            (r.header_len(), r.payload_len(), r.buffer_len()),
            (20, 7, 27)
        );
        assert_eq!(r.hop_limit(), 64);
        let mut buf = [0u8; 27];
        r.emit(&mut buf);
        assert_eq!(IpRepr::parse(&buf).unwrap(), (r, &[0u8; 7][..]));

        let r = IpRepr::new(s6, s6, IpProtocol::Icmpv6, 3, 255).unwrap();
        assert_eq!((r.header_len(), r.payload_len()), (40, 3));
        assert_eq!(r.protocol(), IpProtocol::Icmpv6);
        let mut buf = [0u8; 43];
        r.emit(&mut buf);
        assert_eq!(IpRepr::parse(&buf).unwrap(), (r, &[0u8; 3][..]));
    }
}
