//! UDP datagrams (RFC 768; over IPv6: RFC 8200 §8.1).

use core::net::IpAddr;

use crate::checksum;
use crate::{Error, Result};

/// UDP's IP protocol number.
const UDP_PROTOCOL: u8 = 17;

/// A parsed UDP datagram, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// The length of the UDP header.
    pub const HEADER_LEN: usize = 8;

    /// Parses a UDP datagram (the whole IP payload).
    ///
    /// The payload is bounded by the Length field; bytes past it are ignored. Errors:
    /// * fewer than 8 bytes → [`Error::Truncated`];
    /// * a Length field below 8 or beyond `datagram` → [`Error::BadLength`] (so IPv6
    ///   jumbograms, RFC 2675, are not supported);
    /// * with `checksum: Some((src, dst))`: a checksum that does not verify over the
    ///   pseudo-header and the datagram → [`Error::BadChecksum`]. A checksum field of 0 means
    ///   "no checksum" over IPv4 and is accepted (RFC 768), but is invalid over IPv6 and gives
    ///   [`Error::BadChecksum`] (RFC 8200 §8.1). The family is IPv6 if either address is.
    ///   Pass `None` when the checksum was verified elsewhere.
    pub fn parse(datagram: &'a [u8], checksum: Option<(IpAddr, IpAddr)>) -> Result<UdpRepr<'a>> {
        let hdr: &[u8; 8] = datagram.first_chunk().ok_or(Error::Truncated)?;
        let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
        if len < Self::HEADER_LEN {
            return Err(Error::BadLength);
        }
        let datagram = datagram.get(..len).ok_or(Error::BadLength)?;
        if let Some((src, dst)) = checksum {
            let field = u16::from_be_bytes([hdr[6], hdr[7]]);
            if field == 0 {
                if src.is_ipv6() || dst.is_ipv6() {
                    return Err(Error::BadChecksum);
                }
            } else {
                // len <= 65535 fits in u32.
                let pseudo = checksum::pseudo_header_sum(src, dst, UDP_PROTOCOL, len as u32);
                if checksum::checksum(datagram, pseudo) != 0 {
                    return Err(Error::BadChecksum);
                }
            }
        }
        Ok(UdpRepr {
            src_port: u16::from_be_bytes([hdr[0], hdr[1]]),
            dst_port: u16::from_be_bytes([hdr[2], hdr[3]]),
            payload: datagram.get(Self::HEADER_LEN..).unwrap_or_default(),
        })
    }

    /// The whole datagram's length: 8 plus the payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.payload.len()
    }

    /// Writes the header and payload into `buf[..self.buffer_len()]` and the checksum over the
    /// pseudo-header of `src` and `dst`. A computed checksum of 0 is sent as `0xffff` (RFC 768;
    /// RFC 8200 §8.1), since 0 would mean "none".
    ///
    /// # Panics
    /// If `buf` is shorter than `self.buffer_len()` or the datagram exceeds 65535 bytes.
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        let len = u16::try_from(self.buffer_len()).expect("UDP datagram longer than 65535");
        let datagram = &mut buf[..usize::from(len)];
        datagram[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        datagram[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        datagram[4..6].copy_from_slice(&len.to_be_bytes());
        datagram[6..8].copy_from_slice(&[0, 0]);
        datagram[Self::HEADER_LEN..].copy_from_slice(self.payload);
        let pseudo = checksum::pseudo_header_sum(src, dst, UDP_PROTOCOL, u32::from(len));
        let sum = match checksum::checksum(datagram, pseudo) {
            0 => 0xffff,
            sum => sum,
        };
        datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn v4_addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::new(198, 51, 100, 7).into(),
        )
    }

    fn v6_addrs() -> (IpAddr, IpAddr) {
        (
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
        )
    }

    fn emit(r: &UdpRepr, (src, dst): (IpAddr, IpAddr)) -> Vec<u8> {
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, src, dst);
        buf
    }

    const REPR: UdpRepr<'static> = UdpRepr {
        src_port: 5353,
        dst_port: 53,
        payload: b"query",
    };

    #[test]
    fn round_trip_v4_and_v6() {
        for addrs in [v4_addrs(), v6_addrs()] {
            let pkt = emit(&REPR, addrs);
            assert_eq!(pkt.len(), 13);
            assert_eq!(&pkt[4..6], &[0, 13]);
            assert_eq!(UdpRepr::parse(&pkt, Some(addrs)), Ok(REPR));
            assert_eq!(UdpRepr::parse(&pkt, None), Ok(REPR));
            let empty = UdpRepr {
                payload: &[],
                ..REPR
            };
            assert_eq!(UdpRepr::parse(&emit(&empty, addrs), Some(addrs)), Ok(empty));
        }
    }

    #[test]
    fn known_bytes() {
        // Checksum computed by hand: pseudo-header c000 + 0201 + c633 + 6407 + 0011 + 000d,
        // header 14e9 + 0035 + 000d, payload 7175 + 6572 + 7900.
        let pkt = emit(&REPR, v4_addrs());
        let mut sum: u32 = [
            0xc000u32, 0x0201, 0xc633, 0x6407, 0x0011, 0x000d, 0x14e9, 0x0035, 0x000d, 0x7175,
            0x6572, 0x7900,
        ]
        .iter()
        .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let expected = !(sum as u16);
        assert_eq!(
            pkt,
            [
                0x14,
                0xe9,
                0x00,
                0x35,
                0x00,
                0x0d,
                (expected >> 8) as u8,
                expected as u8,
                b'q',
                b'u',
                b'e',
                b'r',
                b'y'
            ]
        );
    }

    #[test]
    fn trailing_bytes_ignored() {
        let mut pkt = emit(&REPR, v4_addrs());
        pkt.extend_from_slice(&[0xaa; 5]);
        assert_eq!(UdpRepr::parse(&pkt, Some(v4_addrs())), Ok(REPR));
    }

    #[test]
    fn errors() {
        let addrs = v4_addrs();
        let pkt = emit(&REPR, addrs);
        assert_eq!(UdpRepr::parse(&pkt[..7], None), Err(Error::Truncated));
        assert_eq!(UdpRepr::parse(&[], None), Err(Error::Truncated));
        let mut p = pkt.clone();
        p[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpRepr::parse(&p, None), Err(Error::BadLength));
        p[4..6].copy_from_slice(&14u16.to_be_bytes());
        assert_eq!(UdpRepr::parse(&p, None), Err(Error::BadLength));
        for bit in 0..pkt.len() * 8 {
            let mut p = pkt.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            assert!(UdpRepr::parse(&p, Some(addrs)).is_err(), "bit {bit}");
        }
        let mut p = pkt.clone();
        p[9] ^= 0x10;
        assert_eq!(UdpRepr::parse(&p, Some(addrs)), Err(Error::BadChecksum));
        assert!(UdpRepr::parse(&p, None).is_ok());
        // The wrong addresses do not verify.
        assert_eq!(
            UdpRepr::parse(&pkt, Some((Ipv4Addr::new(192, 0, 2, 2).into(), addrs.1))),
            Err(Error::BadChecksum)
        );
    }

    #[test]
    fn zero_checksum() {
        let mut pkt = emit(&REPR, v4_addrs());
        pkt[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(UdpRepr::parse(&pkt, Some(v4_addrs())), Ok(REPR));
        let mut pkt = emit(&REPR, v6_addrs());
        pkt[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(
            UdpRepr::parse(&pkt, Some(v6_addrs())),
            Err(Error::BadChecksum)
        );
        assert_eq!(UdpRepr::parse(&pkt, None), Ok(REPR));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word that makes the checksum come out 0: the sum must be 0xffff.
        let addrs = v4_addrs();
        let base = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload: &[0, 0],
        };
        let pkt = emit(&base, addrs);
        // With payload 0000 the checksum is c; payload word w = !(!c) adjusts the sum to ffff.
        let c = u16::from_be_bytes([pkt[6], pkt[7]]);
        let w = c.to_be_bytes();
        let r = UdpRepr {
            payload: &w,
            ..base
        };
        let pkt = emit(&r, addrs);
        assert_eq!(&pkt[6..8], &[0xff, 0xff]);
        assert_eq!(UdpRepr::parse(&pkt, Some(addrs)), Ok(r));
    }
}
