//! synack as a packetdrill shared object.
//!
//! packetdrill (`--so_filename=libsynack_packetdrill.so --so_flags=...`) loads this library,
//! calls [`packetdrill_interface_init`](ffi::packetdrill_interface_init) and from then on makes
//! every socket call, injects every scripted inbound packet, sniffs every outbound one and reads
//! and moves the clock through the function table. Behind the table ([`shim`]) is one synack
//! host: an [`Interface`](synack_stack::Interface) over the sans-IO TCP, a virtual clock that
//! only the table moves, and a descriptor table of sockets and epoll instances. Nothing touches
//! a device, a network or the wall clock.
//!
//! - [`ffi`]: the C ABI (`struct packetdrill_interface`), errno, panics kept out of C;
//! - [`shim`]: the socket calls, blocking, the clock and the netdev queue;
//! - [`flags`]: the `--so_flags` words;
//! - [`sysctl`], [`route`]: the namespace's TCP settings and its route to the peer;
//! - [`script`]: a runner for the subset of packetdrill's script language our own scripts use
//!   (`tests/packetdrill/*.pkt`), so the same scenarios run in CI without packetdrill.

pub mod ffi;
pub mod flags;
pub mod route;
pub mod script;
pub mod shim;
pub mod sockaddr;
pub mod sysctl;
pub mod tcpinfo;

pub use ffi::{packetdrill_interface_init, PacketdrillInterface};
pub use flags::ShimConfig;
pub use shim::{Errno, Shim};
