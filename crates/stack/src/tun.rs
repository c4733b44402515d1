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

use std::io::{self, IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::task::{Context, Poll};

use tun_rs::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};

use crate::net::Device;
use crate::{RxMeta, TxMeta};

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
    /// `TUN_F_TSO6`), as virtio-net does. The kernel may then hand over one TCP segment of up
    /// to 64 KiB with a partial checksum (GSO, or segments it coalesced: GRO), which goes to
    /// the stack's TCP whole, in one read and no copy (see [`classify_rx`]); what cannot go
    /// whole (ECN's CE or CWR on it, UDP) is split here into MTU-sized packets with complete
    /// checksums. The other way, the stack's TCP sends new data in super-segments of up to
    /// 64 KiB ([`Device::tso_max`]), written with a virtio-net header that has the kernel cut
    /// them (TSO); consecutive plain segments the stack sends in one batch are coalesced
    /// here into one such segment.
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
    /// The segments of the last read, `rx_sizes[i]` bytes each; `rx_next..rx_count` are not
    /// handed to the stack yet.
    rx: Vec<Vec<u8>>,
    rx_sizes: Vec<usize>,
    rx_next: usize,
    rx_count: usize,
    /// Reads dropped because the packet could not be split (malformed offload metadata).
    rx_dropped: u64,
    /// What the device knows of the packet handed over last.
    rx_meta: RxMeta,
    /// TCP super-segments handed over whole, and reads split.
    rx_whole: u64,
    rx_split: u64,
    /// Super-segments written for the kernel to cut (TSO).
    tx_tso: u64,
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
                rx: vec![vec![0; usize::from(config.mtu).max(1280)]; segs],
                rx_sizes: vec![0; segs],
                rx_next: 0,
                rx_count: 0,
                rx_dropped: 0,
                rx_meta: RxMeta::default(),
                rx_whole: 0,
                rx_split: 0,
                tx_tso: 0,
            })
        }
    }

    /// Received packets dropped because their offload metadata was unusable (0 without
    /// offloads).
    pub fn rx_dropped(&self) -> u64 {
        self.batch.as_ref().map_or(0, |b| b.rx_dropped)
    }

    /// What the offloads did so far: (TCP super-segments handed to the stack whole, reads
    /// split into packets here, super-segments written for the kernel to cut).
    pub fn offload_counts(&self) -> (u64, u64, u64) {
        self.batch
            .as_ref()
            .map_or((0, 0, 0), |b| (b.rx_whole, b.rx_split, b.tx_tso))
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
        b.rx_meta = RxMeta::default();
        if let Some(n) = b.pop_rx(buf) {
            return Poll::Ready(Ok(n));
        }
        loop {
            // The virtio-net header apart, the packet straight into the driver's buffer.
            let mut hdr = [0u8; VIRTIO_NET_HDR_LEN];
            let read = self
                .dev
                .try_recv_vectored(&mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)]);
            match read {
                Ok(len) => {
                    let n = len.saturating_sub(VIRTIO_NET_HDR_LEN);
                    let hdr = VirtioNetHdr::decode(&hdr)?;
                    match classify_rx(&hdr, &mut buf[..n]) {
                        RxAction::Whole(meta) => {
                            if meta.gso_size > 0 {
                                b.rx_whole += 1;
                            }
                            b.rx_meta = meta;
                            return Poll::Ready(Ok(n));
                        }
                        RxAction::Split(hdr) => {
                            b.rx_split += 1;
                            let v6 = buf[0] >> 4 == 6;
                            match tun_rs::gso_split(
                                &mut buf[..n],
                                hdr,
                                &mut b.rx,
                                &mut b.rx_sizes,
                                0,
                                v6,
                            ) {
                                Ok(count) => {
                                    b.rx_next = 0;
                                    b.rx_count = count;
                                    if let Some(n) = b.pop_rx(buf) {
                                        return Poll::Ready(Ok(n));
                                    }
                                }
                                Err(_) => b.rx_dropped += 1,
                            }
                        }
                        RxAction::Drop => b.rx_dropped += 1,
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

    fn rx_meta(&self) -> RxMeta {
        self.batch.as_ref().map_or(RxMeta::default(), |b| b.rx_meta)
    }

    fn tso_max(&self) -> usize {
        if self.batch.as_ref().is_some_and(|b| b.offload) {
            64 * 1024
        } else {
            0
        }
    }

    fn poll_send_with(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        meta: TxMeta,
    ) -> Poll<io::Result<()>> {
        let Some(b) = self
            .batch
            .as_mut()
            .filter(|b| b.offload && meta.gso_size > 0)
        else {
            return self.poll_send(cx, packet);
        };
        let Some(tso) = tso_header(packet, meta.gso_size) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TCP super-segment whose headers cannot be read",
            )));
        };
        // What the batch holds was sent before this.
        b.flush(&self.dev)?;
        let mut vnet = [0u8; VIRTIO_NET_HDR_LEN];
        tso.hdr.encode(&mut vnet)?;
        let at = tso.csum_at;
        loop {
            // Four pieces, so that the stack's buffer is written as it is: the virtio-net
            // header, the packet up to the checksum, the pseudo-header's sum in its place, the
            // rest.
            let iov = [
                IoSlice::new(&vnet),
                IoSlice::new(&packet[..at]),
                IoSlice::new(&tso.partial),
                IoSlice::new(&packet[at + 2..]),
            ];
            match self.dev.try_send_vectored(&iov) {
                Ok(_) => {
                    b.tx_tso += 1;
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.dev.poll_writable(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
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

/// virtio-net header flags and GSO types (Linux's `include/uapi/linux/virtio_net.h`).
const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

/// What to do with a packet read with its virtio-net header.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RxAction {
    /// Hand it to the stack as it is (its checksum completed here if it was partial and not
    /// TCP's), with this metadata.
    Whole(RxMeta),
    /// Cut it into packets here (tun-rs's `gso_split`), with this header (its `hdr_len`
    /// computed from the packet).
    Split(VirtioNetHdr),
    /// Unusable offload metadata: a counted drop.
    Drop,
}

/// The IP header's length and protocol, and the offset of the transport header: IPv4 with
/// its options, IPv6 without extension headers (the kernel's GSO packets have none).
fn ip_layout(p: &[u8]) -> Option<(u8, usize, u8)> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            (ihl >= 20 && p.len() >= ihl).then(|| (4, ihl, p[9]))
        }
        6 => (p.len() >= 40).then(|| (6, 40, p[6])),
        _ => None,
    }
}

/// What to do with packet `p` the kernel handed over with virtio-net header `hdr`.
///
/// A TCP GSO packet (`gso_type` TCPV4/TCPV6 with a `gso_size`, `NEEDS_CSUM`: its checksum
/// partial, never crossed a wire) goes to TCP whole, one segment of up to 64 KiB, as Linux's
/// GRO hands a coalesced segment up; its checksum is not verified (the kernel made it). Cut
/// here instead: one with CE in its IP header or `GSO_ECN` (ECN counts marks per segment;
/// CWR belongs to the first segment alone), one whose IP length disagrees with what was read
/// or whose TCP header is not right after the IP header (IPv6 extension headers), and UDP (the stack's UDP layer coalesces datagrams again itself). A packet without GSO and
/// with a partial checksum is TCP's as it is (checksum trusted), or anything else's with the
/// checksum completed here. Metadata that does not fit the packet is a drop, never a panic.
pub(crate) fn classify_rx(hdr: &VirtioNetHdr, p: &mut [u8]) -> RxAction {
    let Some((version, ip_len, proto)) = ip_layout(p) else {
        return RxAction::Drop;
    };
    let needs_csum = hdr.flags & F_NEEDS_CSUM != 0;
    let csum_start = usize::from(hdr.csum_start);
    let csum_at = csum_start + usize::from(hdr.csum_offset);
    if needs_csum && csum_at + 2 > p.len() {
        return RxAction::Drop;
    }
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        if !needs_csum {
            return RxAction::Whole(RxMeta {
                csum_trusted: hdr.flags & F_DATA_VALID != 0,
                gso_size: 0,
            });
        }
        if proto == 6 && csum_start == ip_len && hdr.csum_offset == 16 {
            return RxAction::Whole(RxMeta {
                csum_trusted: true,
                gso_size: 0,
            });
        }
        // Complete the checksum: it covers csum_start on, starting from the pseudo-header's
        // sum the kernel left in the field (virtio 1.1 §5.1.6.2.1).
        let initial = u64::from(u16::from_be_bytes([p[csum_at], p[csum_at + 1]]));
        p[csum_at] = 0;
        p[csum_at + 1] = 0;
        let sum = synack_wire::checksum::checksum(&p[csum_start..], initial);
        p[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
        return RxAction::Whole(RxMeta::default());
    }
    let tcp = match gso {
        GSO_TCPV4 => version == 4,
        GSO_TCPV6 => version == 6,
        GSO_UDP_L4 => false,
        _ => return RxAction::Drop,
    };
    // The transport header starts at csum_start: right after the IP header, or after IPv6
    // extension headers (then the packet is cut here, by tun-rs, which reads it there too).
    if hdr.gso_size == 0 || !needs_csum || csum_start < ip_len {
        return RxAction::Drop;
    }
    let l4_len = if tcp {
        if hdr.csum_offset != 16 || (csum_start == ip_len && proto != 6) {
            return RxAction::Drop;
        }
        match p.get(csum_start + 12) {
            Some(&b) if (20..=60).contains(&(usize::from(b >> 4) * 4)) => usize::from(b >> 4) * 4,
            _ => return RxAction::Drop,
        }
    } else {
        if hdr.csum_offset != 6 || (csum_start == ip_len && proto != 17) {
            return RxAction::Drop;
        }
        8
    };
    let hdr_len = csum_start + l4_len;
    if p.len() < hdr_len {
        return RxAction::Drop;
    }
    let mut split = *hdr;
    split.hdr_len = hdr_len as u16;
    let ip_total = if version == 4 {
        usize::from(u16::from_be_bytes([p[2], p[3]]))
    } else {
        40 + usize::from(u16::from_be_bytes([p[4], p[5]]))
    };
    let ce = if version == 4 {
        p[1] & 3 == 3
    } else {
        (p[1] >> 4) & 3 == 3
    };
    if !tcp || ce || hdr.gso_type & GSO_ECN != 0 || ip_total != p.len() || csum_start != ip_len {
        return RxAction::Split(split);
    }
    RxAction::Whole(RxMeta {
        csum_trusted: true,
        gso_size: hdr.gso_size,
    })
}

/// The virtio-net header of a TCP super-segment to write, and its checksum field.
pub(crate) struct TsoHeader {
    pub(crate) hdr: VirtioNetHdr,
    /// Where the TCP checksum is in the packet.
    pub(crate) csum_at: usize,
    /// What goes there: the pseudo-header's folded sum, which the kernel completes per
    /// segment (a partial checksum, `NEEDS_CSUM`).
    pub(crate) partial: [u8; 2],
}

/// The virtio-net header that has the kernel cut TCP packet `p` into segments of `gso_size`
/// payload bytes (TSO: `GSO_TCPV4`/`GSO_TCPV6`, `hdr_len` the IP and TCP headers,
/// `csum_start`/`csum_offset` the TCP checksum, `NEEDS_CSUM`). `None` if `p` is no TCP
/// packet.
pub(crate) fn tso_header(p: &[u8], gso_size: u16) -> Option<TsoHeader> {
    let (version, ip_len, proto) = ip_layout(p)?;
    let tcp_len = usize::from(p.get(ip_len + 12)? >> 4) * 4;
    if proto != 6 || tcp_len < 20 || p.len() < ip_len + tcp_len {
        return None;
    }
    let (src, dst): (IpAddr, IpAddr) = if version == 4 {
        (
            <[u8; 4]>::try_from(&p[12..16]).ok()?.into(),
            <[u8; 4]>::try_from(&p[16..20]).ok()?.into(),
        )
    } else {
        (
            <[u8; 16]>::try_from(&p[8..24]).ok()?.into(),
            <[u8; 16]>::try_from(&p[24..40]).ok()?.into(),
        )
    };
    let seg_len = u32::try_from(p.len() - ip_len).ok()?;
    let sum = synack_wire::checksum::pseudo_header_sum(src, dst, 6, seg_len);
    let partial = synack_wire::checksum::fold(sum).to_be_bytes();
    Some(TsoHeader {
        hdr: VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if version == 4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: (ip_len + tcp_len) as u16,
            gso_size,
            csum_start: ip_len as u16,
            csum_offset: 16,
        },
        csum_at: ip_len + 16,
        partial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP packet of `payload` bytes (20-byte IP header, 32-byte TCP header with the
    /// timestamp option), ECN field `ecn`.
    fn tcp4(payload: usize, ecn: u8) -> Vec<u8> {
        let total = 20 + 32 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[1] = ecn;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 18, 0, 2]);
        p[20 + 12] = 8 << 4;
        p[20 + 13] = 0x18;
        for (i, b) in p[52..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn gso4(gso_size: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn tcp_gso_goes_whole_with_its_segment_size() {
        let mut p = tcp4(10 * 1448, 0);
        match classify_rx(&gso4(1448), &mut p) {
            RxAction::Whole(m) => assert_eq!(
                m,
                RxMeta {
                    csum_trusted: true,
                    gso_size: 1448
                }
            ),
            a => panic!("{a:?}"),
        }
        // ECT(0) is no reason to cut it.
        let mut p = tcp4(3000, 2);
        assert!(matches!(
            classify_rx(&gso4(1448), &mut p),
            RxAction::Whole(_)
        ));
    }

    #[test]
    fn ce_ecn_flag_length_mismatch_and_udp_are_split() {
        let mut p = tcp4(3000, 3);
        let RxAction::Split(h) = classify_rx(&gso4(1448), &mut p) else {
            panic!("CE: split");
        };
        assert_eq!(h.hdr_len, 52);
        let mut h = gso4(1448);
        h.gso_type |= GSO_ECN;
        assert!(matches!(
            classify_rx(&h, &mut tcp4(3000, 0)),
            RxAction::Split(_)
        ));
        let mut p = tcp4(3000, 0);
        p[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(
            classify_rx(&gso4(1448), &mut p),
            RxAction::Split(_)
        ));
        let mut u = tcp4(3000, 0);
        u[9] = 17;
        let h = VirtioNetHdr {
            gso_type: GSO_UDP_L4,
            csum_offset: 6,
            ..gso4(1200)
        };
        let RxAction::Split(h) = classify_rx(&h, &mut u) else {
            panic!("UDP: split");
        };
        assert_eq!(h.hdr_len, 28);
    }

    #[test]
    fn plain_packets_keep_or_complete_their_checksum() {
        // No offload metadata: verified by the stack.
        let none = VirtioNetHdr::default();
        assert!(matches!(
            classify_rx(&none, &mut tcp4(100, 0)),
            RxAction::Whole(RxMeta {
                csum_trusted: false,
                gso_size: 0
            })
        ));
        // DATA_VALID: the device verified it.
        let valid = VirtioNetHdr {
            flags: F_DATA_VALID,
            ..none
        };
        assert!(matches!(
            classify_rx(&valid, &mut tcp4(100, 0)),
            RxAction::Whole(RxMeta {
                csum_trusted: true,
                ..
            })
        ));
        // TCP, partial: trusted as it is.
        let partial = VirtioNetHdr {
            gso_type: GSO_NONE,
            gso_size: 0,
            ..gso4(0)
        };
        assert!(matches!(
            classify_rx(&partial, &mut tcp4(100, 0)),
            RxAction::Whole(RxMeta {
                csum_trusted: true,
                gso_size: 0
            })
        ));
        // UDP, partial: the checksum is completed here and then verifies.
        let mut u = tcp4(100, 0);
        u[9] = 17;
        let ulen = (u.len() - 20) as u16;
        u[24..26].copy_from_slice(&ulen.to_be_bytes());
        let pseudo = synack_wire::checksum::pseudo_header_sum(
            [198, 18, 0, 1].into(),
            [198, 18, 0, 2].into(),
            17,
            u32::from(ulen),
        );
        let folded = synack_wire::checksum::fold(pseudo);
        u[26..28].copy_from_slice(&folded.to_be_bytes());
        let h = VirtioNetHdr {
            csum_offset: 6,
            ..partial
        };
        assert!(matches!(
            classify_rx(&h, &mut u),
            RxAction::Whole(RxMeta {
                csum_trusted: false,
                ..
            })
        ));
        assert_eq!(synack_wire::checksum::checksum(&u[20..], pseudo), 0);
    }

    #[test]
    fn malformed_metadata_is_a_drop_never_a_panic() {
        let p = tcp4(3000, 0);
        let drops: Vec<(&str, VirtioNetHdr, Vec<u8>)> = vec![
            ("gso_size 0", gso4(0), p.clone()),
            (
                "no NEEDS_CSUM",
                VirtioNetHdr {
                    flags: 0,
                    ..gso4(1448)
                },
                p.clone(),
            ),
            (
                "csum_start inside the IP header",
                VirtioNetHdr {
                    csum_start: 16,
                    ..gso4(1448)
                },
                p.clone(),
            ),
            (
                "csum beyond the packet",
                VirtioNetHdr {
                    csum_start: 60_000,
                    ..gso4(1448)
                },
                p.clone(),
            ),
            (
                "TCPV6 on IPv4",
                VirtioNetHdr {
                    gso_type: GSO_TCPV6,
                    ..gso4(1448)
                },
                p.clone(),
            ),
            (
                "unknown GSO type",
                VirtioNetHdr {
                    gso_type: 3,
                    ..gso4(1448)
                },
                p.clone(),
            ),
            ("empty", gso4(1448), Vec::new()),
            ("IP version 5", gso4(1448), {
                let mut q = p.clone();
                q[0] = 0x55;
                q
            }),
            ("TCP data offset 4", gso4(1448), {
                let mut q = p.clone();
                q[32] = 4 << 4;
                q
            }),
            ("truncated TCP header", gso4(1448), p[..30].to_vec()),
        ];
        for (what, h, mut q) in drops {
            assert!(
                matches!(classify_rx(&h, &mut q), RxAction::Drop),
                "{what}: a drop"
            );
        }
        // Every header over every prefix of the packet: no panic.
        for gso_type in [0, 1, 3, 4, 5, 0x81, 0xff] {
            for flags in [0, 1, 2, 3] {
                for csum_start in [0, 19, 20, 40, 51, 52, 0xffff] {
                    for csum_offset in [0, 6, 16, 0xffff] {
                        let h = VirtioNetHdr {
                            flags,
                            gso_type,
                            hdr_len: 52,
                            gso_size: 1448,
                            csum_start,
                            csum_offset,
                        };
                        for len in [0, 1, 20, 33, 52, 60, p.len()] {
                            let mut q = p[..len].to_vec();
                            let _ = classify_rx(&h, &mut q);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tso_header_fields() {
        let p = tcp4(5 * 1448 + 100, 0);
        let t = tso_header(&p, 1448).unwrap();
        assert_eq!(t.hdr.flags, F_NEEDS_CSUM);
        assert_eq!(t.hdr.gso_type, GSO_TCPV4);
        assert_eq!(t.hdr.gso_size, 1448);
        assert_eq!(t.hdr.hdr_len, 52);
        assert_eq!(t.hdr.csum_start, 20);
        assert_eq!(t.hdr.csum_offset, 16);
        assert_eq!(t.csum_at, 36);
        // The partial checksum: the pseudo-header's folded sum, so that summing the segment
        // from csum_start on (with it in place) gives the full checksum, as the kernel does.
        let mut q = p.clone();
        q[36..38].copy_from_slice(&t.partial);
        let full = synack_wire::checksum::checksum(&q[20..], 0);
        q[36..38].copy_from_slice(&full.to_be_bytes());
        assert!(synack_wire::tcp::verify_checksum(
            &q[20..],
            [198, 18, 0, 1].into(),
            [198, 18, 0, 2].into()
        ));
        // What the kernel reads back: the same header through its encoding.
        let mut raw = [0u8; VIRTIO_NET_HDR_LEN];
        t.hdr.encode(&mut raw).unwrap();
        let back = VirtioNetHdr::decode(&raw).unwrap();
        assert_eq!((back.gso_type, back.gso_size), (GSO_TCPV4, 1448));
        // IPv6.
        let mut v6 = vec![0u8; 40 + 20 + 3000];
        v6[0] = 0x60;
        v6[6] = 6;
        v6[40 + 12] = 5 << 4;
        let t6 = tso_header(&v6, 1220).unwrap();
        assert_eq!(
            (
                t6.hdr.gso_type,
                t6.hdr.hdr_len,
                t6.hdr.csum_start,
                t6.csum_at
            ),
            (GSO_TCPV6, 60, 40, 56)
        );
        // Not TCP, or cut short: none.
        let mut u = p.clone();
        u[9] = 17;
        assert!(tso_header(&u, 1448).is_none());
        assert!(tso_header(&p[..40], 1448).is_none());
        assert!(tso_header(&[], 1448).is_none());
    }
}
