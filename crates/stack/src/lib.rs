//! The synack host: IP over the sans-IO TCP, the devices it runs on, and what they record.
//!
//! - [`iface`]: the IP layer of one host over its TCP [`Endpoint`](synack_tcp::Endpoint);
//! - [`sim`]: the deterministic simulated network (virtual clock, seeded impairments);
//! - [`pcap`]: a capture tap for any device;
//! - [`ladder`]: the trace rendered as a ladder diagram.

pub mod iface;
pub mod ladder;
pub mod net;
pub mod pcap;
pub mod sim;
pub mod tun;

pub use iface::{IfaceStats, Interface};
