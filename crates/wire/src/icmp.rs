//! ICMP for IPv4 (RFC 792) and ICMPv6 (RFC 4443).
//!
//! Every message starts with type, code and checksum, followed by a 4-byte field whose meaning
//! depends on the type, so a message is at least 8 bytes. In error messages the rest is the
//! *invoking packet*: the original IP header and as many leading bytes of its payload as the
//! sender included (RFC 792: at least 8; RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c): as much as
//! fits in 576 or 1280 bytes). It is returned as is, unparsed: pass it to
//! [`IpRepr::parse`](crate::IpRepr::parse) knowing that it is usually cut short.

use core::net::{IpAddr, Ipv6Addr};

use crate::checksum;
use crate::{Error, Result};

/// ICMPv6's next-header value in the pseudo-header (RFC 4443 §2.3).
const ICMPV6_PROTOCOL: u8 = 58;

/// The 8-byte header: type, code, checksum and the type-specific word.
struct Header {
    msg_type: u8,
    code: u8,
    /// The type-specific word, bytes 4..8.
    rest: [u8; 4],
}

impl Header {
    /// Splits a message into its header and body. Fewer than 8 bytes → [`Error::Truncated`].
    fn split(packet: &[u8]) -> Result<(Header, &[u8])> {
        let (hdr, body) = packet.split_first_chunk::<8>().ok_or(Error::Truncated)?;
        let header = Header {
            msg_type: hdr[0],
            code: hdr[1],
            rest: [hdr[4], hdr[5], hdr[6], hdr[7]],
        };
        Ok((header, body))
    }

    fn hi16(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }

    fn lo16(&self) -> u16 {
        u16::from_be_bytes([self.rest[2], self.rest[3]])
    }

    fn word(&self) -> u32 {
        u32::from_be_bytes(self.rest)
    }

    /// Writes the header (checksum zero) and `body` into `buf[..8 + body.len()]` and returns
    /// that slice, ready for the checksum.
    fn emit<'b>(&self, buf: &'b mut [u8], body: &[u8]) -> &'b mut [u8] {
        let msg = &mut buf[..8 + body.len()];
        msg[0] = self.msg_type;
        msg[1] = self.code;
        msg[2..4].copy_from_slice(&[0, 0]);
        msg[4..8].copy_from_slice(&self.rest);
        msg[8..].copy_from_slice(body);
        msg
    }
}

/// Packs two 16-bit values into the type-specific word.
fn pair(hi: u16, lo: u16) -> [u8; 4] {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    [a, b, c, d]
}

/// An ICMPv4 message (RFC 792), borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo (type 8).
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Echo Reply (type 0).
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Destination Unreachable (type 3). `next_hop_mtu` is meaningful with
    /// [`FRAG_NEEDED`](Self::FRAG_NEEDED) (RFC 1191 §4) and 0 otherwise.
    DstUnreachable {
        code: u8,
        next_hop_mtu: u16,
        invoking: &'a [u8],
    },
    /// Time Exceeded (type 11).
    TimeExceeded { code: u8, invoking: &'a [u8] },
    /// Any other type; `rest` is bytes 4..8, `data` what follows.
    Other {
        msg_type: u8,
        code: u8,
        rest: u32,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Destination Unreachable codes (RFC 792).
    pub const NET_UNREACHABLE: u8 = 0;
    pub const HOST_UNREACHABLE: u8 = 1;
    pub const PROTOCOL_UNREACHABLE: u8 = 2;
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191 §4).
    pub const FRAG_NEEDED: u8 = 4;
    /// Time Exceeded code: time to live exceeded in transit (RFC 792).
    pub const TTL_EXCEEDED: u8 = 0;

    const ECHO_REPLY: u8 = 0;
    const DST_UNREACHABLE: u8 = 3;
    const ECHO_REQUEST: u8 = 8;
    const TIME_EXCEEDED: u8 = 11;

    /// Parses an ICMPv4 message (the whole IP payload). Fewer than 8 bytes →
    /// [`Error::Truncated`]; a checksum over the message (RFC 792) that does not verify →
    /// [`Error::BadChecksum`]. The code of an echo message is ignored (RFC 792 has it 0).
    pub fn parse(packet: &'a [u8]) -> Result<Icmpv4Repr<'a>> {
        let (hdr, body) = Header::split(packet)?;
        if checksum::checksum(packet, 0) != 0 {
            return Err(Error::BadChecksum);
        }
        Ok(match hdr.msg_type {
            Self::ECHO_REQUEST => Icmpv4Repr::EchoRequest {
                ident: hdr.hi16(),
                seq: hdr.lo16(),
                data: body,
            },
            Self::ECHO_REPLY => Icmpv4Repr::EchoReply {
                ident: hdr.hi16(),
                seq: hdr.lo16(),
                data: body,
            },
            Self::DST_UNREACHABLE => Icmpv4Repr::DstUnreachable {
                code: hdr.code,
                next_hop_mtu: hdr.lo16(),
                invoking: body,
            },
            Self::TIME_EXCEEDED => Icmpv4Repr::TimeExceeded {
                code: hdr.code,
                invoking: body,
            },
            msg_type => Icmpv4Repr::Other {
                msg_type,
                code: hdr.code,
                rest: hdr.word(),
                data: body,
            },
        })
    }

    /// The header and the data or invoking packet.
    fn parts(&self) -> (Header, &'a [u8]) {
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq, data } => (
                Header {
                    msg_type: Self::ECHO_REQUEST,
                    code: 0,
                    rest: pair(ident, seq),
                },
                data,
            ),
            Icmpv4Repr::EchoReply { ident, seq, data } => (
                Header {
                    msg_type: Self::ECHO_REPLY,
                    code: 0,
                    rest: pair(ident, seq),
                },
                data,
            ),
            Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                invoking,
            } => (
                Header {
                    msg_type: Self::DST_UNREACHABLE,
                    code,
                    rest: pair(0, next_hop_mtu),
                },
                invoking,
            ),
            Icmpv4Repr::TimeExceeded { code, invoking } => (
                Header {
                    msg_type: Self::TIME_EXCEEDED,
                    code,
                    rest: [0; 4],
                },
                invoking,
            ),
            Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => (
                Header {
                    msg_type,
                    code,
                    rest: rest.to_be_bytes(),
                },
                data,
            ),
        }
    }

    /// The message's length: 8 plus the data or invoking packet.
    pub fn buffer_len(&self) -> usize {
        8 + self.parts().1.len()
    }

    /// Writes the message into `buf[..self.buffer_len()]` with its checksum (RFC 792). Echo
    /// messages get code 0; unused fields are zero.
    ///
    /// # Panics
    /// If `buf` is shorter than `self.buffer_len()`.
    pub fn emit(&self, buf: &mut [u8]) {
        let (hdr, body) = self.parts();
        let msg = hdr.emit(buf, body);
        let sum = checksum::checksum(msg, 0);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// An ICMPv6 message (RFC 4443), borrowing its data. Neighbor Discovery and MLD messages come
/// out as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
    /// Echo Request (type 128, RFC 4443 §4.1).
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Echo Reply (type 129, RFC 4443 §4.2).
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Destination Unreachable (type 1, RFC 4443 §3.1).
    DstUnreachable { code: u8, invoking: &'a [u8] },
    /// Packet Too Big (type 2, RFC 4443 §3.2).
    PacketTooBig { mtu: u32, invoking: &'a [u8] },
    /// Time Exceeded (type 3, RFC 4443 §3.3).
    TimeExceeded { code: u8, invoking: &'a [u8] },
    /// Parameter Problem (type 4, RFC 4443 §3.4).
    ParamProblem {
        code: u8,
        pointer: u32,
        invoking: &'a [u8],
    },
    /// Any other type; `rest` is bytes 4..8, `data` what follows.
    Other {
        msg_type: u8,
        code: u8,
        rest: u32,
        data: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Destination Unreachable codes (RFC 4443 §3.1).
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACHABLE: u8 = 3;
    pub const PORT_UNREACHABLE: u8 = 4;
    /// Time Exceeded code: hop limit exceeded in transit (RFC 4443 §3.3).
    pub const HOP_LIMIT_EXCEEDED: u8 = 0;

    const DST_UNREACHABLE: u8 = 1;
    const PACKET_TOO_BIG: u8 = 2;
    const TIME_EXCEEDED: u8 = 3;
    const PARAM_PROBLEM: u8 = 4;
    const ECHO_REQUEST: u8 = 128;
    const ECHO_REPLY: u8 = 129;

    /// Parses an ICMPv6 message (the upper-layer payload of an IPv6 packet from `src` to
    /// `dst`). Fewer than 8 bytes → [`Error::Truncated`]; a checksum that does not verify over
    /// the pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1, next header 58) and the message →
    /// [`Error::BadChecksum`]. The codes of echo and Packet Too Big messages are ignored
    /// (RFC 4443 §3.2, §4.1).
    pub fn parse(packet: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Icmpv6Repr<'a>> {
        let (hdr, body) = Header::split(packet)?;
        let len = u32::try_from(packet.len()).map_err(|_| Error::BadLength)?;
        let pseudo =
            checksum::pseudo_header_sum(IpAddr::V6(src), IpAddr::V6(dst), ICMPV6_PROTOCOL, len);
        if checksum::checksum(packet, pseudo) != 0 {
            return Err(Error::BadChecksum);
        }
        Ok(match hdr.msg_type {
            Self::ECHO_REQUEST => Icmpv6Repr::EchoRequest {
                ident: hdr.hi16(),
                seq: hdr.lo16(),
                data: body,
            },
            Self::ECHO_REPLY => Icmpv6Repr::EchoReply {
                ident: hdr.hi16(),
                seq: hdr.lo16(),
                data: body,
            },
            Self::DST_UNREACHABLE => Icmpv6Repr::DstUnreachable {
                code: hdr.code,
                invoking: body,
            },
            Self::PACKET_TOO_BIG => Icmpv6Repr::PacketTooBig {
                mtu: hdr.word(),
                invoking: body,
            },
            Self::TIME_EXCEEDED => Icmpv6Repr::TimeExceeded {
                code: hdr.code,
                invoking: body,
            },
            Self::PARAM_PROBLEM => Icmpv6Repr::ParamProblem {
                code: hdr.code,
                pointer: hdr.word(),
                invoking: body,
            },
            msg_type => Icmpv6Repr::Other {
                msg_type,
                code: hdr.code,
                rest: hdr.word(),
                data: body,
            },
        })
    }

    /// The header and the data or invoking packet.
    fn parts(&self) -> (Header, &'a [u8]) {
        let (msg_type, code, rest, body) = match *self {
            Icmpv6Repr::EchoRequest { ident, seq, data } => {
                (Self::ECHO_REQUEST, 0, pair(ident, seq), data)
            }
            Icmpv6Repr::EchoReply { ident, seq, data } => {
                (Self::ECHO_REPLY, 0, pair(ident, seq), data)
            }
            Icmpv6Repr::DstUnreachable { code, invoking } => {
                (Self::DST_UNREACHABLE, code, [0; 4], invoking)
            }
            Icmpv6Repr::PacketTooBig { mtu, invoking } => {
                (Self::PACKET_TOO_BIG, 0, mtu.to_be_bytes(), invoking)
            }
            Icmpv6Repr::TimeExceeded { code, invoking } => {
                (Self::TIME_EXCEEDED, code, [0; 4], invoking)
            }
            Icmpv6Repr::ParamProblem {
                code,
                pointer,
                invoking,
            } => (Self::PARAM_PROBLEM, code, pointer.to_be_bytes(), invoking),
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => (msg_type, code, rest.to_be_bytes(), data),
        };
        (
            Header {
                msg_type,
                code,
                rest,
            },
            body,
        )
    }

    /// The message's length: 8 plus the data or invoking packet.
    pub fn buffer_len(&self) -> usize {
        8 + self.parts().1.len()
    }

    /// Writes the message into `buf[..self.buffer_len()]` with its checksum over the
    /// pseudo-header of `src` and `dst` (RFC 4443 §2.3). Echo and Packet Too Big messages get
    /// code 0; unused fields are zero.
    ///
    /// # Panics
    /// If `buf` is shorter than `self.buffer_len()`, or the message exceeds `u32::MAX` bytes.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let (hdr, body) = self.parts();
        let msg = hdr.emit(buf, body);
        let len = u32::try_from(msg.len()).expect("ICMPv6 message longer than u32::MAX");
        let pseudo =
            checksum::pseudo_header_sum(IpAddr::V6(src), IpAddr::V6(dst), ICMPV6_PROTOCOL, len);
        let sum = checksum::checksum(msg, pseudo);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVOKING: &[u8] = &[
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 53,
        0, 8, 0, 0,
    ];

    fn v4_cases() -> Vec<Icmpv4Repr<'static>> {
        vec![
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq: 7,
                data: b"abcdefgh",
            },
            Icmpv4Repr::EchoReply {
                ident: 0xffff,
                seq: 0,
                data: b"",
            },
            Icmpv4Repr::DstUnreachable {
                code: Icmpv4Repr::PORT_UNREACHABLE,
                next_hop_mtu: 0,
                invoking: INVOKING,
            },
            Icmpv4Repr::DstUnreachable {
                code: Icmpv4Repr::FRAG_NEEDED,
                next_hop_mtu: 1400,
                invoking: INVOKING,
            },
            Icmpv4Repr::TimeExceeded {
                code: Icmpv4Repr::TTL_EXCEEDED,
                invoking: &INVOKING[..20],
            },
            Icmpv4Repr::Other {
                msg_type: 13,
                code: 0,
                rest: 0xdead_beef,
                data: b"odd",
            },
        ]
    }

    #[test]
    fn v4_round_trip() {
        for r in v4_cases() {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf);
            assert_eq!(Icmpv4Repr::parse(&buf), Ok(r));
        }
    }

    #[test]
    fn v4_known_bytes() {
        // Echo request, ident 1, seq 1, data "abcd": sum 0800 + 0001 + 0001 + 6162 + 6364
        // = 0xccc8, checksum 0x3337.
        let pkt = [8, 0, 0x33, 0x37, 0, 1, 0, 1, b'a', b'b', b'c', b'd'];
        let r = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: b"abcd",
        };
        assert_eq!(Icmpv4Repr::parse(&pkt), Ok(r));
        let mut buf = [0u8; 12];
        r.emit(&mut buf);
        assert_eq!(buf, pkt);
    }

    #[test]
    fn v4_errors() {
        assert_eq!(Icmpv4Repr::parse(&[]), Err(Error::Truncated));
        assert_eq!(
            Icmpv4Repr::parse(&[8, 0, 0xf7, 0xff, 0, 0, 0]),
            Err(Error::Truncated)
        );
        for r in v4_cases() {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf);
            for bit in 0..buf.len() * 8 {
                let mut p = buf.clone();
                p[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Icmpv4Repr::parse(&p),
                    Err(Error::BadChecksum),
                    "{r:?} bit {bit}"
                );
            }
        }
    }

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("fe80::1".parse().unwrap(), "2001:db8::42".parse().unwrap())
    }

    fn v6_cases() -> Vec<Icmpv6Repr<'static>> {
        vec![
            Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq: 7,
                data: b"abcdefgh",
            },
            Icmpv6Repr::EchoReply {
                ident: 1,
                seq: 0xffff,
                data: b"x",
            },
            Icmpv6Repr::DstUnreachable {
                code: Icmpv6Repr::PORT_UNREACHABLE,
                invoking: INVOKING,
            },
            Icmpv6Repr::PacketTooBig {
                mtu: 1280,
                invoking: INVOKING,
            },
            Icmpv6Repr::TimeExceeded {
                code: Icmpv6Repr::HOP_LIMIT_EXCEEDED,
                invoking: b"",
            },
            Icmpv6Repr::ParamProblem {
                code: 1,
                pointer: 40,
                invoking: INVOKING,
            },
            Icmpv6Repr::Other {
                msg_type: 135,
                code: 0,
                rest: 0,
                data: &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
        ]
    }

    #[test]
    fn v6_round_trip() {
        let (src, dst) = addrs();
        for r in v6_cases() {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf, src, dst);
            assert_eq!(Icmpv6Repr::parse(&buf, src, dst), Ok(r));
            // The pseudo-header counts: other addresses do not verify.
            assert_eq!(
                Icmpv6Repr::parse(&buf, src, "2001:db8::43".parse().unwrap()),
                Err(Error::BadChecksum)
            );
        }
    }

    #[test]
    fn v6_known_bytes() {
        // Echo request ::1 -> ::1, ident 0x1234 seq 1, no data. Pseudo-header: 0001 + 0001 +
        // length 0008 + next header 003a = 0x0044; message 8000 + 1234 + 0001 = 0x9235;
        // total 0x9279, checksum 0x6d86.
        let lo = Ipv6Addr::LOCALHOST;
        let pkt = [128, 0, 0x6d, 0x86, 0x12, 0x34, 0, 1];
        let r = Icmpv6Repr::EchoRequest {
            ident: 0x1234,
            seq: 1,
            data: b"",
        };
        assert_eq!(Icmpv6Repr::parse(&pkt, lo, lo), Ok(r));
        let mut buf = [0u8; 8];
        r.emit(&mut buf, lo, lo);
        assert_eq!(buf, pkt);
    }

    #[test]
    fn v6_errors() {
        let (src, dst) = addrs();
        assert_eq!(Icmpv6Repr::parse(&[], src, dst), Err(Error::Truncated));
        assert_eq!(
            Icmpv6Repr::parse(&[128, 0, 0, 0, 0, 0, 0], src, dst),
            Err(Error::Truncated)
        );
        for r in v6_cases() {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf, src, dst);
            for bit in 0..buf.len() * 8 {
                let mut p = buf.clone();
                p[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Icmpv6Repr::parse(&p, src, dst),
                    Err(Error::BadChecksum),
                    "{r:?} bit {bit}"
                );
            }
        }
    }
}
