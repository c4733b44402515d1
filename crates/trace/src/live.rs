//! Capturing from a network interface as it runs: a Linux `AF_PACKET` socket (packet(7)),
//! which needs root (CAP_NET_RAW). Frames come with their link-layer header: Ethernet on
//! Ethernet devices and on the loopback device, none on a TUN device (raw IP).
//!
//! On the loopback device every packet passes the capture point twice (sent, then received);
//! as libpcap does, only the received copy is kept.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use synack_tcp::Instant;

use crate::capture::{linktype, Frame};

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `PACKET_OUTGOING` in `sll_pkttype`.
const PACKET_OUTGOING: u8 = 4;
/// The largest frame read (a loopback device's MTU is 65536, plus its header).
const MAX_FRAME: usize = 65536 + 64;

/// A live capture on one interface.
#[derive(Debug)]
pub struct LiveCapture {
    fd: OwnedFd,
    link: u32,
    loopback: bool,
    buf: Vec<u8>,
}

/// ARPHRD_* hardware types (from `/sys/class/net/IFACE/type`).
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;
const ARPHRD_NONE: u32 = 65534;

impl LiveCapture {
    /// Opens a capture on `iface` (root only).
    pub fn open(iface: &str) -> io::Result<LiveCapture> {
        let name = std::ffi::CString::new(iface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {iface}"),
            ));
        }
        let kind: u32 = std::fs::read_to_string(format!("/sys/class/net/{iface}/type"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(ARPHRD_ETHER);
        let link = match kind {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => linktype::ETHERNET,
            ARPHRD_NONE => linktype::RAW,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{iface}: hardware type {other} is not Ethernet, loopback or raw IP"),
                ))
            }
        };
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("capturing on {iface} needs root (CAP_NET_RAW): {e}"),
            ));
        }
        // SAFETY: a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: binding our socket to a valid sockaddr_ll of the right length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LiveCapture {
            fd,
            link,
            loopback: kind == ARPHRD_LOOPBACK,
            buf: vec![0; MAX_FRAME],
        })
    }

    /// The link type of the frames.
    pub fn link_type(&self) -> u32 {
        self.link
    }

    /// The next frame, or `None` if none came within `wait`.
    pub fn next_frame(&mut self, wait: Duration) -> io::Result<Option<Frame>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: the buffer and address are ours and sized as passed; MSG_TRUNC makes
            // the return value the frame's real length.
            let got = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    return Ok(None);
                }
                return Err(e);
            }
            if self.loopback && from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let orig = got as usize;
            let kept = orig.min(self.buf.len());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            return Ok(Some(Frame {
                time: Instant::from_micros(u64::try_from(now.as_micros()).unwrap_or(u64::MAX)),
                link: self.link,
                data: self.buf[..kept].to_vec(),
                orig_len: u32::try_from(orig).unwrap_or(u32::MAX),
            }));
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag that [`stop_requested`] reads, instead of killing the
/// process, so that a capture can be written out whole.
pub fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT or SIGTERM came since [`stop_on_signals`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
