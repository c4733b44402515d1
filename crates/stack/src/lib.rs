//! The synack host: IP over the sans-IO TCP, the devices it runs on, and what they record.
//!
//! - [`iface`]: the IP layer of one host over its TCP [`Endpoint`](synack_tcp::Endpoint);
//! - [`sim`]: the deterministic simulated network (virtual clock, seeded impairments);
//! - [`pcap`]: a capture tap for any device (captures are read, and traces drawn as ladders,
//!   by the `synack-trace` crate).

pub mod iface;
pub mod net;
pub mod pcap;
pub mod sim;
pub mod tun;
pub mod udp;

pub use iface::{ChecksumCaps, IfaceStats, Interface, RxMeta, TxMeta, TxQueue};
