//! Reading capture files: pcap and pcapng (through the `pcap-file` crate), and the link-layer
//! headers in front of the IP packets.
//!
//! A [`CaptureReader`] streams frames from any [`Read`]er: the file is never held whole, only
//! `pcap-file`'s read buffer and the current frame. [`ip_packet`] strips the link-layer header
//! of a frame and returns the IP packet inside, for the link types captures of IP traffic use:
//!
//! | link type | what precedes the IP header |
//! |---|---|
//! | `LINKTYPE_ETHERNET` (1) | 14 bytes (destination, source, EtherType), plus 4 per 802.1Q/802.1ad tag |
//! | `LINKTYPE_LINUX_SLL` (113) | 16 bytes, protocol at 14 (`tcpdump -i any` before 4.99) |
//! | `LINKTYPE_LINUX_SLL2` (276) | 20 bytes, protocol at 0 (`tcpdump -i any` from 4.99) |
//! | `LINKTYPE_RAW` (101), `DLT_RAW` (12 on most systems, 14 on OpenBSD), `LINKTYPE_IPV4` (228), `LINKTYPE_IPV6` (229) | nothing (synack's own captures are 101) |
//! | `LINKTYPE_NULL` (0) | 4 bytes, the address family in the capturing host's byte order |
//! | `LINKTYPE_LOOP` (108) | 4 bytes, the address family in network byte order |
//!
//! pcapng timestamps follow each interface's `if_tsresol` (default microseconds, pcapng
//! draft §4.2); pcap timestamps are microseconds or nanoseconds by the magic number. Times are
//! returned in microseconds since the epoch, as the [`Instant`]s of synack's traces.

use std::fmt;
use std::io::{self, Read};

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{PcapError, TsResolution};
use synack_tcp::Instant;

/// The link types [`ip_packet`] understands (the `LINKTYPE_*` numbers of the tcpdump.org
/// registry, as written in capture files).
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II.
    pub const ETHERNET: u32 = 1;
    /// `DLT_RAW` as most systems number it.
    pub const DLT_RAW_12: u32 = 12;
    /// `DLT_RAW` as OpenBSD numbers it.
    pub const DLT_RAW_14: u32 = 14;
    /// Raw IP: the packet starts at its IPv4 or IPv6 header.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libpcap's classic format.
    Pcap,
    /// pcapng.
    PcapNg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        })
    }
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When it was captured, in microseconds since the epoch.
    pub time: Instant,
    /// Its link type (see [`linktype`]).
    pub link: u32,
    /// The bytes captured (at most the snap length).
    pub data: Vec<u8>,
    /// Its length on the wire.
    pub orig_len: u32,
}

/// Why a capture could not be read.
#[derive(Debug)]
pub enum CaptureError {
    /// Reading the file failed.
    Io(io::Error),
    /// The first bytes are neither a pcap nor a pcapng magic number.
    UnknownFormat {
        /// The first four bytes (fewer if the file is shorter).
        magic: Vec<u8>,
    },
    /// The file is malformed at frame `frame` (counting from 1), or ends inside it.
    Malformed {
        /// The container format.
        format: Format,
        /// The frame (or block) being read.
        frame: u64,
        /// What `pcap-file` said.
        reason: String,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "reading the capture: {e}"),
            CaptureError::UnknownFormat { magic } => write!(
                f,
                "not a pcap or pcapng capture (it starts with {})",
                if magic.is_empty() {
                    "nothing: the file is empty".to_owned()
                } else {
                    magic
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            ),
            CaptureError::Malformed {
                format,
                frame,
                reason,
            } => write!(f, "malformed {format} capture at frame {frame}: {reason}"),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// A reader that first yields some bytes already read, then the rest of the stream: the magic
/// number is sniffed without seeking.
struct Prefixed<R> {
    head: Vec<u8>,
    at: usize,
    rest: R,
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.rest.read(buf)
    }
}

/// An interface of a pcapng section: its link type and how many units a second its
/// timestamps count.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: u32,
    units_per_sec: u64,
}

enum Inner<R: Read> {
    Pcap {
        reader: PcapReader<Prefixed<R>>,
        link: u32,
        nanos: bool,
    },
    PcapNg {
        reader: PcapNgReader<Prefixed<R>>,
        interfaces: Vec<Interface>,
    },
}

/// Frames of a pcap or pcapng capture, streamed. After an error it yields nothing more.
///
/// ```
/// use synack_trace::capture::CaptureReader;
///
/// // A pcap header (little-endian, microseconds, link type 101) and one 1-byte record.
/// let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// file.extend_from_slice(&65535u32.to_le_bytes());
/// file.extend_from_slice(&101u32.to_le_bytes());
/// file.extend_from_slice(&[1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x45]);
/// let mut r = CaptureReader::new(&file[..]).unwrap();
/// let frame = r.next_frame().unwrap().unwrap();
/// assert_eq!(frame.time.as_micros(), 1_000_005);
/// assert_eq!(frame.data, [0x45]);
/// assert!(r.next_frame().is_none());
/// ```
pub struct CaptureReader<R: Read> {
    inner: Inner<R>,
    format: Format,
    frames: u64,
    failed: bool,
}

impl<R: Read> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("frames", &self.frames)
            .finish()
    }
}

/// The pcapng Section Header Block type, which a pcapng file starts with.
const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn malformed(format: Format, frame: u64, e: PcapError) -> CaptureError {
    let reason = match e {
        PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the file ends inside it (truncated capture)".to_owned()
        }
        PcapError::IoError(e) => return CaptureError::Io(e),
        other => other.to_string(),
    };
    CaptureError::Malformed {
        format,
        frame,
        reason,
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header of `r` (pcap or pcapng, told apart by the magic number).
    pub fn new(mut r: R) -> Result<Self, CaptureError> {
        let mut head = vec![0u8; 4];
        let mut got = 0;
        while got < 4 {
            match r.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        head.truncate(got);
        let magic: [u8; 4] = match head.as_slice().try_into() {
            Ok(m) => m,
            Err(_) => return Err(CaptureError::UnknownFormat { magic: head }),
        };
        let src = Prefixed {
            head,
            at: 0,
            rest: r,
        };
        let pcap_magic = matches!(
            u32::from_le_bytes(magic),
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1
        );
        if magic == PCAPNG_SHB {
            let reader = PcapNgReader::new(src).map_err(|e| malformed(Format::PcapNg, 0, e))?;
            Ok(CaptureReader {
                inner: Inner::PcapNg {
                    reader,
                    interfaces: Vec::new(),
                },
                format: Format::PcapNg,
                frames: 0,
                failed: false,
            })
        } else if pcap_magic {
            let reader = PcapReader::new(src).map_err(|e| malformed(Format::Pcap, 0, e))?;
            let h = reader.header();
            Ok(CaptureReader {
                inner: Inner::Pcap {
                    link: u32::from(h.datalink) & 0x0fff_ffff,
                    nanos: h.ts_resolution == TsResolution::NanoSecond,
                    reader,
                },
                format: Format::Pcap,
                frames: 0,
                failed: false,
            })
        } else {
            Err(CaptureError::UnknownFormat {
                magic: magic.to_vec(),
            })
        }
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame, `None` at the end of the file, or the error that ends reading.
    pub fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
        if self.failed {
            return None;
        }
        let r = self.read_frame();
        match r {
            Some(Ok(_)) => self.frames += 1,
            Some(Err(_)) => self.failed = true,
            None => {}
        }
        r
    }

    fn read_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
        let n = self.frames + 1;
        match &mut self.inner {
            Inner::Pcap {
                reader,
                link,
                nanos,
            } => {
                let p = match reader.next_raw_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(malformed(Format::Pcap, n, e))),
                };
                let frac = u64::from(p.ts_frac);
                let micros = if *nanos {
                    frac / 1000
                } else {
                    frac.min(999_999)
                };
                Some(Ok(Frame {
                    time: Instant::from_micros(u64::from(p.ts_sec) * 1_000_000 + micros),
                    link: *link,
                    data: p.data.into_owned(),
                    orig_len: p.orig_len,
                }))
            }
            Inner::PcapNg { reader, interfaces } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(malformed(Format::PcapNg, n, e))),
                };
                match block {
                    Block::SectionHeader(_) => interfaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        let mut units_per_sec = 1_000_000;
                        for o in &idb.options {
                            if let pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(r) = o {
                                units_per_sec = tsresol_units(*r);
                            }
                        }
                        interfaces.push(Interface {
                            link: u32::from(idb.linktype) & 0x0fff_ffff,
                            units_per_sec,
                        });
                    }
                    Block::EnhancedPacket(epb) => {
                        let Some(iface) = interfaces.get(epb.interface_id as usize).copied() else {
                            return Some(Err(CaptureError::Malformed {
                                format: Format::PcapNg,
                                frame: n,
                                reason: format!(
                                    "a packet of interface {} which no block describes",
                                    epb.interface_id
                                ),
                            }));
                        };
                        // pcap-file reads the 64-bit timestamp as nanoseconds; it counts
                        // units of the interface's resolution.
                        let units = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        return Some(Ok(Frame {
                            time: Instant::from_micros(units_to_micros(units, iface.units_per_sec)),
                            link: iface.link,
                            data: epb.data.into_owned(),
                            orig_len: epb.original_len,
                        }));
                    }
                    Block::SimplePacket(spb) => {
                        let link = interfaces.first().map_or(linktype::ETHERNET, |i| i.link);
                        return Some(Ok(Frame {
                            time: Instant::ZERO,
                            link,
                            data: spb.data.into_owned(),
                            orig_len: spb.original_len,
                        }));
                    }
                    Block::Packet(pb) => {
                        let iface = interfaces.get(usize::from(pb.interface_id)).copied();
                        let Some(iface) = iface else {
                            return Some(Err(CaptureError::Malformed {
                                format: Format::PcapNg,
                                frame: n,
                                reason: format!(
                                    "a packet of interface {} which no block describes",
                                    pb.interface_id
                                ),
                            }));
                        };
                        return Some(Ok(Frame {
                            time: Instant::from_micros(units_to_micros(
                                pb.timestamp,
                                iface.units_per_sec,
                            )),
                            link: iface.link,
                            data: pb.data.into_owned(),
                            orig_len: pb.original_len,
                        }));
                    }
                    _ => {}
                }
            },
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame()
    }
}

/// Units per second of a pcapng `if_tsresol` value: the high bit set means a negative power
/// of two, clear a negative power of ten. Out-of-range values give microseconds.
fn tsresol_units(r: u8) -> u64 {
    let exp = u32::from(r & 0x7f);
    let units = if r & 0x80 != 0 {
        1u64.checked_shl(exp)
    } else {
        10u64.checked_pow(exp)
    };
    units.filter(|&u| u > 0).unwrap_or(1_000_000)
}

fn units_to_micros(units: u64, per_sec: u64) -> u64 {
    let micros = u128::from(units) * 1_000_000 / u128::from(per_sec.max(1));
    u64::try_from(micros).unwrap_or(u64::MAX)
}

/// Why a frame holds no IP packet [`ip_packet`] can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDrop {
    /// A link type [`ip_packet`] does not know.
    UnsupportedLink(u32),
    /// The frame ends inside its link-layer header.
    Truncated,
    /// The frame carries something other than IPv4 or IPv6 (ARP, LLDP, …).
    NotIp,
}

/// EtherTypes.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;

fn ether(proto: u16, rest: &[u8]) -> Result<&[u8], LinkDrop> {
    match proto {
        ETH_IPV4 | ETH_IPV6 => Ok(rest),
        _ => Err(LinkDrop::NotIp),
    }
}

/// The IP packet in a frame of link type `link`, after the link-layer header (see the
/// [module documentation](self)).
pub fn ip_packet(link: u32, data: &[u8]) -> Result<&[u8], LinkDrop> {
    let be16 = |b: &[u8], at: usize| -> Result<u16, LinkDrop> {
        b.get(at..at + 2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or(LinkDrop::Truncated)
    };
    match link {
        linktype::ETHERNET => {
            let mut at = 12;
            let mut proto = be16(data, at)?;
            // 802.1Q / 802.1ad tags: 4 bytes each.
            while proto == ETH_VLAN || proto == ETH_QINQ {
                at += 4;
                proto = be16(data, at)?;
            }
            ether(proto, &data[at + 2..])
        }
        linktype::LINUX_SLL => {
            let proto = be16(data, 14)?;
            ether(proto, data.get(16..).ok_or(LinkDrop::Truncated)?)
        }
        linktype::LINUX_SLL2 => {
            let proto = be16(data, 0)?;
            ether(proto, data.get(20..).ok_or(LinkDrop::Truncated)?)
        }
        linktype::RAW | linktype::DLT_RAW_12 | linktype::DLT_RAW_14 => {
            match data.first().map(|b| b >> 4) {
                Some(4 | 6) => Ok(data),
                Some(_) => Err(LinkDrop::NotIp),
                None => Err(LinkDrop::Truncated),
            }
        }
        linktype::IPV4 | linktype::IPV6 => {
            if data.is_empty() {
                Err(LinkDrop::Truncated)
            } else {
                Ok(data)
            }
        }
        linktype::NULL | linktype::LOOP => {
            let h: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(LinkDrop::Truncated)?;
            // The family is in the capturing host's byte order for NULL: accept either.
            let fam = if link == linktype::LOOP {
                u32::from_be_bytes(h)
            } else {
                let le = u32::from_le_bytes(h);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(h)
                }
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD),
            // 28 (FreeBSD), 30 (macOS).
            match fam {
                2 | 10 | 24 | 28 | 30 => Ok(&data[4..]),
                _ => Err(LinkDrop::NotIp),
            }
        }
        other => Err(LinkDrop::UnsupportedLink(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol() {
        assert_eq!(tsresol_units(6), 1_000_000);
        assert_eq!(tsresol_units(9), 1_000_000_000);
        assert_eq!(tsresol_units(0x80 | 10), 1024);
        assert_eq!(tsresol_units(0x7f), 1_000_000);
        assert_eq!(units_to_micros(1_500_000_000, 1_000_000_000), 1_500_000);
    }

    #[test]
    fn link_headers() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(ip_packet(linktype::ETHERNET, &eth), Ok(&ip[..]));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd]);
        sll.extend_from_slice(&ip);
        assert_eq!(ip_packet(linktype::LINUX_SLL, &sll), Ok(&ip[..]));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(ip_packet(linktype::LINUX_SLL2, &sll2), Ok(&ip[..]));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(ip_packet(linktype::NULL, &null), Ok(&ip[..]));
        let mut lo = 24u32.to_be_bytes().to_vec();
        lo.extend_from_slice(&ip);
        assert_eq!(ip_packet(linktype::LOOP, &lo), Ok(&ip[..]));
        assert_eq!(ip_packet(12, &ip), Ok(&ip[..]));
        assert_eq!(ip_packet(147, &ip), Err(LinkDrop::UnsupportedLink(147)));
        assert_eq!(
            ip_packet(linktype::ETHERNET, &eth[..13]),
            Err(LinkDrop::Truncated)
        );
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(ip_packet(linktype::ETHERNET, &arp), Err(LinkDrop::NotIp));
    }
}
