//! Wire formats for synack: IPv4, IPv6, TCP, UDP and ICMP, and HTTP/2's frame layer as read
//! off a byte stream ([`h2`]).
//!
//! Every parser takes untrusted bytes and returns a value or an [`Error`]; none panics, whatever
//! the input. Parsing is zero-copy: a parsed `*Repr` borrows its payload from the packet.
//! Emitting writes into a caller's buffer whose size the caller learned from `header_len` /
//! `buffer_len`, so the hot path allocates nothing.
//!
//! The layout follows smoltcp's contract: a `Repr` with `parse`, a length, and `emit`.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod copy_sum;
pub mod h2;
pub mod icmp;
pub mod ip;
pub mod tcp;
pub mod udp;

pub use ip::{IpProtocol, IpRepr, Ipv4Repr, Ipv6Repr, ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT};
pub use tcp::{FastOpen, FastOpenCookie, SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamp};
pub use udp::UdpRepr;

/// Why bytes could not be parsed. A malformed packet is a value, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Fewer bytes than the header or the length fields claim.
    Truncated,
    /// The IP version nibble is neither 4 nor 6 (or not the one expected).
    BadVersion,
    /// A header length field is below its minimum or beyond the packet.
    BadHeaderLength,
    /// A length field disagrees with the packet (e.g. UDP length, IPv4 total length).
    BadLength,
    /// The checksum does not verify.
    BadChecksum,
    /// A TCP option is malformed (a length below 2, or running past the header).
    BadOption,
    /// A field value that is well-formed but not handled (e.g. an IP fragment).
    Unsupported,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Error::Truncated => "truncated packet",
            Error::BadVersion => "bad IP version",
            Error::BadHeaderLength => "bad header length",
            Error::BadLength => "bad length field",
            Error::BadChecksum => "bad checksum",
            Error::BadOption => "malformed TCP option",
            Error::Unsupported => "unsupported packet",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;
