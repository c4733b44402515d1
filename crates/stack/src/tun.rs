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

/// How a [`TunDevice`] moves packets. The default, [`TunOptions::default`], is one IP packet
/// per read and per write system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunOptions {
    /// Opens the device with `IFF_VNET_HDR` and the TCP offloads (`TUN_F_CSUM`, `TUN_F_TSO4`,
    /// `TUN_F_TSO6`), as virtio-net does: the kernel may hand over one TCP segment of up to
    /// 64 KiB with a partial checksum, which is split here into MTU-sized segments with
    /// complete checksums before the stack sees them; and consecutive segments the stack
    /// sends in one batch are coalesced here into one such segment, which the kernel takes in
    /// one write.
    pub offload: bool,
    /// At most this many packets the stack sends are held and written together when the
    /// driver has emitted everything it had (or when the batch is full); 1 writes each packet
    /// at once. Without `offload` a batch is still one write per packet.
    pub batch: usize,
}

impl Default for TunOptions {
    fn default() -> TunOptions {
        TunOptions {
            offload: false,
            batch: 1,
        }
    }
}

/// Buffers of a batching or offloading device.
struct Batch {
    offload: bool,
    limit: usize,
    /// Room before each packet: the virtio-net header when offloading.
    headroom: usize,
    /// Packets waiting to be written (the first `tx_len` of `tx`; the rest are spare buffers).
    tx: Vec<Vec<u8>>,
    tx_len: usize,
    gro: tun_rs::GROTable,
    /// One raw read: the virtio-net header and a packet of up to 64 KiB.
    rx_raw: Vec<u8>,
    /// The segments of the last read, `rx_sizes[i]` bytes each; `rx_next..rx_count` are not
    /// handed to the stack yet.
    rx: Vec<Vec<u8>>,
    rx_sizes: Vec<usize>,
    rx_next: usize,
    rx_count: usize,
    /// Reads dropped because the packet could not be split (malformed offload metadata).
    rx_dropped: u64,
}

/// An open TUN device (layer 3, no packet information header): by default one IP packet per
/// read or write; see [`TunOptions`] for batching and offloads.
pub struct TunDevice {
    dev: tun_rs::AsyncDevice,
    name: String,
    mtu: u16,
    batch: Option<Box<Batch>>,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish()
    }
}

/// Packets the kernel may queue on the device for synack to read.
pub const TX_QUEUE_LEN: u32 = 2000;

fn already_there(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::EEXIST)
}

impl TunDevice {
    /// Creates the device `config.name` (or attaches to it if it exists), sets its MTU, adds
    /// the kernel side's addresses and brings it up. Must run inside a tokio runtime (the
    /// descriptor is registered with its reactor).
    pub fn create(config: &TunConfig) -> io::Result<TunDevice> {
        TunDevice::create_with(config, TunOptions::default())
    }

    /// As [`create`](Self::create), with batched writes and/or offloads.
    pub fn create_with(config: &TunConfig, options: TunOptions) -> io::Result<TunDevice> {
        let mut queues = TunDevice::create_queues(config, options, 1)?;
        Ok(queues.remove(0))
    }

    /// As [`create_with`](Self::create_with), a device of `queues` queues (`IFF_MULTI_QUEUE`
    /// when more than one): one descriptor each, for the workers of a
    /// [`Stack::new_multiqueue`](crate::net::Stack::new_multiqueue). The kernel picks the
    /// queue of a packet toward synack by its flow: the queue it last wrote that flow on, else
    /// its own hash of the flow (Linux's `tun_automq_select_queue`).
    pub fn create_queues(
        config: &TunConfig,
        options: TunOptions,
        queues: usize,
    ) -> io::Result<Vec<TunDevice>> {
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TUN device needs at least one queue",
            ));
        }
        if config.name.is_empty() || config.name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {:?} (1 to 15 bytes)", config.name),
            ));
        }
        let dev = tun_rs::DeviceBuilder::new()
            .name(&config.name)
            .mtu(config.mtu)
            // The kernel's queue toward us holds a whole receive window's burst (1 MiB is
            // about 720 packets of 1500 bytes): with the default 500, a full window sent at
            // once overflows the queue before synack reads it, and the kernel retransmits.
            .tx_queue_len(TX_QUEUE_LEN)
            .packet_information(false)
            .offload(options.offload)
            .multi_queue(queues > 1)
            .build_async()
            .map_err(|e| {
                let busy = e.raw_os_error() == Some(libc::EBUSY);
                io::Error::new(
                    e.kind(),
                    format!(
                        "creating TUN device {}: {e}{}",
                        config.name,
                        if busy {
                            " (the name is busy: another program has that device open)"
                        } else {
                            ""
                        }
                    ),
                )
            })?;
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
        let batch = || (options.offload || options.batch > 1).then(|| Self::batch(config, options));
        let mut devs = Vec::with_capacity(queues);
        for _ in 1..queues {
            devs.push(TunDevice {
                dev: dev.try_clone()?,
                name: name.clone(),
                mtu: config.mtu,
                batch: batch(),
            });
        }
        devs.insert(
            0,
            TunDevice {
                dev,
                name,
                mtu: config.mtu,
                batch: batch(),
            },
        );
        Ok(devs)
    }

    fn batch(config: &TunConfig, options: TunOptions) -> Box<Batch> {
        {
            let headroom = if options.offload {
                tun_rs::VIRTIO_NET_HDR_LEN
            } else {
                0
            };
            let segs = if options.offload {
                tun_rs::IDEAL_BATCH_SIZE
            } else {
                0
            };
            Box::new(Batch {
                offload: options.offload,
                limit: options.batch.max(1),
                headroom,
                tx: Vec::new(),
                tx_len: 0,
                gro: tun_rs::GROTable::default(),
                rx_raw: vec![
                    0;
                    if options.offload {
                        headroom + 65_535
                    } else {
                        0
                    }
                ],
                rx: vec![vec![0; usize::from(config.mtu).max(1280)]; segs],
                rx_sizes: vec![0; segs],
                rx_next: 0,
                rx_count: 0,
                rx_dropped: 0,
            })
        }
    }

    /// Received packets dropped because their offload metadata was unusable (0 without
    /// offloads).
    pub fn rx_dropped(&self) -> u64 {
        self.batch.as_ref().map_or(0, |b| b.rx_dropped)
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

/// Whether an error of a read is the descriptor's (fatal) rather than the packet's: tun-rs
/// reports a packet whose virtio-net header it cannot use as an error without an OS code.
fn os_error(e: &io::Error) -> bool {
    e.raw_os_error().is_some()
}

impl Batch {
    /// Hands over the next segment of the last read, if any.
    fn pop_rx(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.rx_next >= self.rx_count {
            return None;
        }
        let i = self.rx_next;
        self.rx_next += 1;
        let n = self.rx_sizes[i].min(buf.len());
        buf[..n].copy_from_slice(&self.rx[i][..n]);
        Some(n)
    }

    /// Writes the packets held, coalesced when offloading.
    fn flush(&mut self, dev: &tun_rs::AsyncDevice) -> io::Result<()> {
        if self.tx_len == 0 {
            return Ok(());
        }
        let n = std::mem::take(&mut self.tx_len);
        // The device descriptor is non-blocking and a TUN write does not wait for room (the
        // kernel queues or drops the packet), so this does not block the runtime.
        let sync: &tun_rs::DeviceImpl = dev;
        sync.send_multiple(&mut self.gro, &mut self.tx[..n], self.headroom)
            .map(|_| ())
    }
}

impl Device for TunDevice {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Some(b) = self.batch.as_mut().filter(|b| b.offload) else {
            return self.dev.poll_recv(cx, buf);
        };
        if let Some(n) = b.pop_rx(buf) {
            return Poll::Ready(Ok(n));
        }
        loop {
            match self
                .dev
                .try_recv_multiple(&mut b.rx_raw, &mut b.rx, &mut b.rx_sizes, 0)
            {
                Ok(count) => {
                    b.rx_next = 0;
                    b.rx_count = count;
                    if let Some(n) = b.pop_rx(buf) {
                        return Poll::Ready(Ok(n));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.dev.poll_readable(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if os_error(&e) => return Poll::Ready(Err(e)),
                Err(_) => b.rx_dropped += 1,
            }
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        let Some(b) = self.batch.as_mut() else {
            return match self.dev.poll_send(cx, packet) {
                Poll::Ready(r) => Poll::Ready(r.map(|_| ())),
                Poll::Pending => Poll::Pending,
            };
        };
        if b.tx_len >= b.limit {
            b.flush(&self.dev)?;
        }
        if b.tx.len() == b.tx_len {
            // tun-rs coalesces a segment into the first of its flow only if that buffer can
            // already hold the result (it does not reallocate): room for 64 KiB.
            let cap = if b.offload {
                2 * b.headroom + 65_535
            } else {
                0
            };
            b.tx.push(Vec::with_capacity(cap));
        }
        let slot = &mut b.tx[b.tx_len];
        slot.clear();
        slot.resize(b.headroom, 0);
        slot.extend_from_slice(packet);
        b.tx_len += 1;
        Poll::Ready(Ok(()))
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.batch.as_mut() {
            Some(b) => b.flush(&self.dev),
            None => Ok(()),
        }
    }
}
