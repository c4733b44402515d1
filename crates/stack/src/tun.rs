//! A Linux TUN device as a [`Device`] for the async driver (through the tun-rs crate).
//!
//! A TUN device is a point-to-point IP interface whose other end is a file descriptor: the
//! kernel routes packets for the device's subnet to it, and what the driver writes there is
//! received by the kernel as if it came off a wire. The kernel's side of the link gets the
//! addresses in [`TunConfig::addrs`] (198.18.0.1/24, say); the synack stack uses other
//! addresses of the same subnet (198.18.0.2) as its own.
//!
//! Creating a device needs `CAP_NET_ADMIN` and `/dev/net/tun`. Opening a name that exists
//! attaches to that device (a persistent one, made by `ip tuntap add`); the device made here is
//! not persistent and disappears with the descriptor.

use std::io;
use std::net::IpAddr;
use std::task::{Context, Poll};

use crate::net::Device;

/// How to create (or attach to) a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// The interface name (at most 15 bytes), e.g. `synack0`.
    pub name: String,
    /// The interface MTU; give the stack's TCP the same one.
    pub mtu: u16,
    /// The kernel side's addresses, each with its prefix length (e.g. 198.18.0.1/24,
    /// 2001:2::1/64). Addresses the device already has are kept.
    pub addrs: Vec<(IpAddr, u8)>,
}

impl TunConfig {
    /// A device named `name` with an MTU of 1500 and no address yet.
    pub fn new(name: &str) -> TunConfig {
        TunConfig {
            name: name.to_owned(),
            mtu: 1500,
            addrs: Vec::new(),
        }
    }
}

/// An open TUN device (layer 3, no packet information header): one IP packet per read or
/// write.
pub struct TunDevice {
    dev: tun_rs::AsyncDevice,
    name: String,
    mtu: u16,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish()
    }
}

fn already_there(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::EEXIST)
}

impl TunDevice {
    /// Creates the device `config.name` (or attaches to it if it exists), sets its MTU, adds
    /// the kernel side's addresses and brings it up. Must run inside a tokio runtime (the
    /// descriptor is registered with its reactor).
    pub fn create(config: &TunConfig) -> io::Result<TunDevice> {
        if config.name.is_empty() || config.name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {:?} (1 to 15 bytes)", config.name),
            ));
        }
        let dev = tun_rs::DeviceBuilder::new()
            .name(&config.name)
            .mtu(config.mtu)
            .packet_information(false)
            .build_async()?;
        for &(addr, prefix) in &config.addrs {
            let r = match addr {
                IpAddr::V4(a) => dev.add_address_v4(a, prefix),
                IpAddr::V6(a) => dev.add_address_v6(a, prefix),
            };
            match r {
                Ok(()) => {}
                Err(e) if already_there(&e) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("adding {addr}/{prefix} to {}: {e}", config.name),
                    ))
                }
            }
        }
        dev.enabled(true)?;
        let name = dev.name().unwrap_or_else(|_| config.name.clone());
        Ok(TunDevice {
            dev,
            name,
            mtu: config.mtu,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MTU set on the interface.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The tun-rs device, for what this wrapper does not offer.
    pub fn inner(&self) -> &tun_rs::AsyncDevice {
        &self.dev
    }
}

impl Device for TunDevice {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.dev.poll_recv(cx, buf)
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        match self.dev.poll_send(cx, packet) {
            Poll::Ready(r) => Poll::Ready(r.map(|_| ())),
            Poll::Pending => Poll::Pending,
        }
    }
}
